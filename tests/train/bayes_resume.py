"""bayes_resume.py NNC OUTDIR: a sampling run stopped by SIGTERM and resumed gives the same
draws, bit for bit, as one never stopped.

For HMC (stopped twice: in chain 1's warm-up, inside a mass-matrix window, and again in
chain 2's sampling), NUTS, and SGLD with RMSprop on minibatches (its state: the shuffled order,
the running average, the generator's counter), the run is stopped with NNC_TEST_SIGNAL_AT
(chain:iteration) and continued with --resume.  Then every draws file must equal the
uninterrupted run's byte for byte, summary.json's quantities and per-chain figures (all but
the seconds) must be equal, and metrics.jsonl must hold the same lines (time_s aside: the
lines a killed run wrote after its checkpoint are dropped).  Chains run at once (parallel) give
the draws and lines of chains run one after another, and a run stopped while they ran resumes
to them too; when their threads cannot start, the chains run on the calling thread, to the
same draws.  Also: a finished run resumes to the same files; a resume with other --set
values is refused, naming both."""
import json
import os
import re
import subprocess
import sys

from checks import check, finish, linear_csv  # tests/train/checks.py

nnc, out = sys.argv[1], os.path.abspath(sys.argv[2])

linear_csv(f"{out}/lin.csv", 11)


def model(name, batch, sampler):
    path = f"{out}/{name}.nn"
    with open(path, "w") as f:
        f.write(f"""model {name}
param  s = 1
input  x : f32[6]
target y : f32[1]
prior  out.weight ~ cauchy(0, s)
prior  out.bias ~ normal(0, 1)
out    = x -> dense(1)
loss   gaussian_nll(out, y, sigma = learned)
train {{
  data    csv("lin.csv", target = last)
  batch   {batch}
  {sampler}
}}
""")
    return path


def run(path, outdir, signal=None, resume=False, extra=()):
    env = dict(os.environ)
    env.pop("NNC_TEST_SIGNAL_AT", None)
    if signal:
        env["NNC_TEST_SIGNAL_AT"] = signal
    args = [nnc, "train", path, "--out", outdir, "--no-progress", *extra] + (["--resume"] if resume else [])
    return subprocess.run(args, env=env, capture_output=True, text=True)


def same_run(a, b, chains, label):
    for c in range(1, chains + 1):
        da, db = open(f"{a}/draws_chain{c}.safetensors", "rb").read(), open(f"{b}/draws_chain{c}.safetensors", "rb").read()
        check(da == db, f"{label}: draws_chain{c}.safetensors is the same, byte for byte ({len(da)} bytes)")
    sa, sb = json.load(open(f"{a}/summary.json")), json.load(open(f"{b}/summary.json"))
    for s in (sa, sb):
        for ch in s["chain"]:
            ch.pop("seconds")
    check(sa == sb, f"{label}: summary.json the same but for the seconds")
    ma = [re.sub(r',"time_s":[0-9.e+-]+', "", l) for l in open(f"{a}/metrics.jsonl")]
    mb = [re.sub(r',"time_s":[0-9.e+-]+', "", l) for l in open(f"{b}/metrics.jsonl")]
    check(ma == mb, f"{label}: metrics.jsonl the same lines ({len(ma)} and {len(mb)})")


cases = [  # chains one after another: a checkpoint inside a chain
    ("hmc", 400, "sampler hmc(step = 0.01, leapfrog = 10, samples = 1500, burnin = 1200, chains = 2, parallel = false)", ["1:150", "2:1800"]),
    ("nuts", 400, "sampler nuts(samples = 1200, burnin = 300, chains = 2, parallel = false)", ["1:1234"]),
    ("sgld", 100, "sampler sgld(lr = 2e-5, samples = 3000, burnin = 500, thin = 2, chains = 2, rmsprop = true, parallel = false)", ["2:777"]),
]
for name, batch, sampler, stops in cases:
    path = model(name, batch, sampler)
    full, cut = f"{out}/{name}_full", f"{out}/{name}_cut"
    r = run(path, full)
    check(r.returncode == 0, f"{name}: the uninterrupted run ({r.returncode}) {r.stderr.strip()}")
    for k, stop in enumerate(stops):
        r = run(path, cut, signal=stop, resume=k > 0)
        chain, it = stop.split(":")
        check(r.returncode == 143 and f"interrupted by SIGTERM at chain {chain}, iteration {it}; checkpoint written" in r.stdout,
              f"{name}: stopped at chain {chain}, iteration {it} (exit {r.returncode})")
    r = run(path, cut, resume=True)
    chain, it = stops[-1].split(":")
    check(r.returncode == 0 and f"resuming from {cut}/checkpoint.safetensors: chain {chain}, iteration {it} of" in r.stdout,
          f"{name}: resumed from chain {chain}, iteration {it} (exit {r.returncode}) {r.stderr.strip()}")
    same_run(full, cut, 2, name)

# chains at once (parallel, the default: where there are two threads to run them on): the same
# draws as one after another; stopped while they run, the run keeps the chains that finished
# before the first unfinished one, and --resume runs the rest again from their start
par = model("par", 400, "sampler nuts(samples = 600, burnin = 300, chains = 3)")
seq_dir, par_dir, cut = f"{out}/par_seq", f"{out}/par_full", f"{out}/par_cut"
threads = {"OPENBLAS_NUM_THREADS": "2", "NNC_THREADS": "2"}
os.environ.update(threads)
r = run(par, seq_dir, extra=["--set", "parallel=0"])
check(r.returncode == 0 and "at once" not in r.stdout, f"par: one chain after another (exit {r.returncode}) {r.stderr.strip()}")
r = run(par, par_dir)
check(r.returncode == 0 and "chains 1 to 3 run at once on 2 threads" in r.stdout,
      f"par: chains at once (exit {r.returncode}) {r.stdout.strip()[:300]} {r.stderr.strip()}")
same_run(seq_dir, par_dir, 3, "par: at once and one after another")
def strip(text):  # times, rates, memory, the run's directory and the at-once line aside
    return [re.sub(r"[0-9.]+ s\b|\([0-9]+/s\)|peak RSS [0-9.]+ MiB", "", l) for l in text.splitlines() if "at once" not in l and "written to" not in l]
check(strip(run(par, seq_dir, extra=["--set", "parallel=0"]).stdout) == strip(r.stdout),
      "par: the same lines on stdout as one after another (times aside)")
# chain 3 runs after chain 1 on the same thread: chain 1 is done, chain 2 (on the other) may be
r = run(par, cut, signal="3:500")
kept = re.search(r"interrupted by SIGTERM with (chain 3|chains 2 to 3) unfinished \(chains ran at once\): the chains before are in "
                 r"the checkpoint; --resume runs the rest again from their start", r.stdout)
check(r.returncode == 143 and kept, f"par: stopped in chain 3 (exit {r.returncode}) {r.stdout.strip()[-300:]}")
last = 2 if kept and kept.group(1) == "chain 3" else 1
r = run(par, cut, resume=True)
check(r.returncode == 0 and f"resuming from {cut}/checkpoint.safetensors: chain {last}" in r.stdout,
      f"par: resumed after chain {last} (exit {r.returncode}) {r.stdout.strip()[:400]} {r.stderr.strip()}")
same_run(par_dir, cut, 3, "par: stopped and resumed")
r = run(par, f"{out}/par_cut0", signal="2:100")  # before any chain finished: nothing to resume from
check(r.returncode == 143 and "no chain had finished, so there is nothing to resume from" in r.stdout,
      f"par: stopped before a chain finished (exit {r.returncode}) {r.stdout.strip()[-300:]}")
# threads that cannot start (a stack limit so large that no thread's stack can be mapped): the
# run says so and its chains run on the calling thread, to the same draws and lines.  OpenBLAS
# on one thread: its own pool would fail to start in its library constructor and exit.
def huge_stack():
    import resource
    resource.setrlimit(resource.RLIMIT_STACK, (1 << 50, resource.getrlimit(resource.RLIMIT_STACK)[1]))
env = dict(os.environ, OPENBLAS_NUM_THREADS="1", NNC_THREADS="2")
r = subprocess.run([nnc, "train", par, "--out", f"{out}/par_nothread", "--no-progress"], env=env, capture_output=True,
                   text=True, preexec_fn=huge_stack)
if "cannot start" in r.stdout:
    check(r.returncode == 0 and "chains 1 to 3: cannot start 2 of 2 threads (" in r.stdout
          and "): the chains run one after another" in r.stdout,
          f"par: no thread can start: said, and run here (exit {r.returncode}) {r.stdout.strip()[:400]} {r.stderr.strip()}")
    same_run(par_dir, f"{out}/par_nothread", 3, "par: no thread could start")
    said = "\n".join(l for l in r.stdout.splitlines() if "cannot start" not in l)
    check(strip(run(par, seq_dir, extra=["--set", "parallel=0"]).stdout) == strip(said),
          "par: no thread could start: the same lines on stdout as one after another")
else:
    print(f"skip par: no thread could start: this machine maps a 2^50-byte thread stack (exit {r.returncode})")
for k in threads:
    os.environ.pop(k)

# a finished run resumes to the same files
r = run(f"{out}/nuts.nn", f"{out}/nuts_cut", resume=True)
check(r.returncode == 0 and "chain 2, iteration 1500 of 1500" in r.stdout, "a finished run resumes at its end")
same_run(f"{out}/nuts_full", f"{out}/nuts_cut", 2, "nuts, resumed when finished")
# other settings are refused
r = run(f"{out}/hmc.nn", f"{out}/hmc_cut", resume=True, extra=["--set", "s=2"])
check(r.returncode == 1 and "was written with --set (none), this run has --set s=2; resume with the same settings" in r.stderr,
      f"a resume with other --set values is refused (exit {r.returncode}): {r.stderr.strip()}")

finish()
