"""mpi_test.py CASE NNC OUTDIR: data-parallel training under mpirun (runtime/dist.h).

Every run has one thread per rank (NNC_THREADS=1, OPENBLAS_NUM_THREADS=1), so that two runs
differ only in how the batch was split and summed.  Cases:
  identity       fashion_mlp, 200 steps on 1, 2 and 4 ranks: every step's loss within 1e-5
                 (relative) of one process's over the first 20 steps (reordered float sums then
                 grow through training, as they do in one process that splits its batch: the
                 200-step maxima are printed); 2 ranks' all-reduce gives the bits of one process
                 that sums two half batches (--deterministic-reduce=2), also in buckets of
                 0.5 MiB summed during the backward pass; a trainer built by
                 `nnc build` under mpirun gives the bits of nnc.
  deterministic  --deterministic-reduce=4 on 1, 2 and 4 ranks: bit-identical checkpoints and
                 losses; a checkpoint of 2 ranks resumed by 4 and by 1 ends bit-identical to
                 the run of one process straight through; with the plain all-reduce, 2
                 ranks resumed end bit-identical to 2 ranks straight through.
  prune          fashion_sparse, 2 epochs, pruning after each: 2 ranks prune to exactly the widths
                 of 1 process (deterministic reduce, bit-identical checkpoints).
  faults         a rank killed mid-epoch: the job exits non-zero, mpirun names the rank, and the
                 last checkpoint resumes on one process; a rank that stops: the others end the
                 job after --collective-timeout, naming the collective.
  samplers       hmc with 3 chains on 2 ranks (chain c on rank c % 2): the draws files of one
                 process bit for bit, its summary and metrics but for times.
  bad_input      each refused before any step, with its reason: a batch that 2 ranks cannot share,
                 shards that the ranks cannot share, ranks with different model files, a rank
                 whose data is missing, --device cuda without a GPU, --resume of a sampler; an MPI plug-in that
                 is not one; without mpirun nothing loads MPI.
Exits 77 (skipped) when mpirun or the plug-in is missing."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
from checks import check, finish  # noqa: E402  (tests/train/checks.py)

case, nnc, out = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
plugin = os.path.join(os.path.dirname(nnc), "libnnc_mpi.so")
if not shutil.which("mpirun") or not os.path.exists(plugin):
    print("skipped: no mpirun or no MPI plug-in (install openmpi-bin and libopenmpi-dev, and rebuild)")
    sys.exit(77)
out = os.path.join(out, case)
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
env = dict(os.environ, NNC_THREADS="1", OPENBLAS_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"  # MPI's own allocations live to exit
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-x", "NNC_THREADS", "-x", "OPENBLAS_NUM_THREADS",
          "-x", "ASAN_OPTIONS"]
MLP = os.path.join(root, "models", "fashion_mlp.nn")


def run(n, args, tag, extra_env=None, timeout=900):
    """nnc (or a trainer) on n ranks (n = 0: one process without mpirun); its step losses are in
    OUT/tag.losses, its run in OUT/tag.  Returns (exit status, stdout + stderr)."""
    e = dict(env, NNC_STEP_LOSSES=f"{out}/{tag}.losses", **(extra_env or {}))
    cmd = list(args) + ["--out", f"{out}/{tag}", "--no-progress"]
    if n:
        fwd = []
        for k in (extra_env or {}):
            fwd += ["-x", k]
        cmd = MPIRUN + fwd + ["-x", "NNC_STEP_LOSSES", "-np", str(n)] + cmd
    t0 = time.time()
    p = subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    print(f"# {tag}: {' '.join(cmd[-8:])} -> exit {p.returncode} in {time.time() - t0:.1f} s")
    return p.returncode, p.stdout


def losses(tag):
    with open(f"{out}/{tag}.losses") as f:
        return [float(line.split()[1]) for line in f]


def same_file(a, b):
    with open(a, "rb") as f, open(b, "rb") as g:
        return f.read() == g.read()


def ckpt(tag):
    return f"{out}/{tag}/checkpoint.safetensors"


def rel(a, b):
    return max(abs(x - y) / abs(x) for x, y in zip(a, b))


if case == "identity":
    train = [nnc, "train", MLP, "--set", "iterations=200"]
    rc, text = run(0, train, "one")
    check(rc == 0, "one process trains 200 steps")
    one = losses("one")
    rc, text = run(0, train + ["--deterministic-reduce=2"], "halves")
    check(rc == 0, "one process in two halves")
    for n in (2, 4):
        rc, text = run(n, train, f"ranks{n}")
        check(rc == 0 and f"64 per rank on 2 ranks" in text if n == 2 else rc == 0 and "32 per rank on 4 ranks" in text,
              f"{n} ranks train, and the start line says how many")
        check(re.search(r"data parallel: [0-9.]+ s of the steps' [0-9.]+ s \([0-9.]+ %\) waiting for the gradient's all-reduce", text)
              is not None, f"{n} ranks report the all-reduce's share of the step")
        mine = losses(f"ranks{n}")
        check(len(mine) == 200, f"{n} ranks: 200 step losses, from rank 0 alone")
        first = rel(one[:20], mine[:20])
        check(first <= 1e-5, f"{n} ranks: steps 1-20 within {first:.2e} of one process (bound 1e-5); "
              f"all 200 steps within {rel(one, mine):.2e} (reordered sums, grown by training)")
    check(losses("ranks2") == losses("halves"), "2 ranks' all-reduce: the bits of one process summing two half batches")
    rc, text = run(2, train, "buckets2", {"NNC_ALLREDUCE_BUCKET": "0.5"})
    check(rc == 0 and losses("buckets2") == losses("ranks2") and same_file(ckpt("buckets2"), ckpt("ranks2")),
          "buckets of 0.5 MiB summed during the backward pass: the same bits as one all-reduce after it")
    with open(f"{out}/one/metrics.jsonl") as f, open(f"{out}/ranks2/metrics.jsonl") as g:
        check(len(f.readlines()) == len(g.readlines()) and os.path.exists(f"{out}/ranks2/result.json"),
              "rank 0 alone writes metrics.jsonl (as many lines as one process's) and result.json")
    trainer = f"{out}/fashion_mlp_trainer"
    b = subprocess.run([nnc, "build", MLP, "-o", trainer], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    check(b.returncode == 0, "nnc build makes a trainer")
    rc, text = run(2, [trainer, "train", "--set", "iterations=200"], "trainer2")
    check(rc == 0 and losses("trainer2") == losses("ranks2"), "mpirun -np 2 ./trainer train: the bits of nnc on 2 ranks")
elif case == "deterministic":
    train = [nnc, "train", MLP, "--set", "iterations=200", "--deterministic-reduce"]
    runs = {}
    for n in (0, 2, 4):
        rc, text = run(n, train, f"det{n}")
        check(rc == 0 and "in 4 shards of 32" in text, f"--deterministic-reduce on {max(n, 1)} rank(s)")
        runs[n] = losses(f"det{n}")
    for n in (2, 4):
        check(runs[n] == runs[0], f"{n} ranks: every step's loss bit-identical to one process's")
        check(same_file(ckpt(f"det{n}"), ckpt("det0")), f"{n} ranks: the checkpoint bit-identical to one process's")
    # 2 epochs of a subset: a checkpoint after epoch 1 by 2 ranks, resumed by 4 and by 1
    two = [nnc, "train", MLP, "--set", "epochs=2", "--deterministic-reduce", "--data", f"{out}/small.csv"]
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(1024, 784)) / 255
    np.savetxt(f"{out}/small.csv", np.c_[x, rng.integers(0, 10, size=1024)], delimiter=",", fmt="%.4g")
    rc, _ = run(0, two, "straight")
    check(rc == 0, "one process, 2 epochs straight through")
    for n, m in ((2, 4), (2, 1)):
        tag = f"resume{n}to{m}"
        rc, _ = run(n, two[:4] + ["epochs=1"] + two[5:], tag)
        rc2, text = run(m if m > 1 else 0, two + ["--resume"], tag)
        check(rc == 0 and rc2 == 0 and "resuming from" in text and same_file(ckpt(tag), ckpt("straight")),
              f"a checkpoint of {n} ranks resumed by {m}: bit-identical to one process straight through")
    plain = [arg for arg in two if arg != "--deterministic-reduce"]
    rc, _ = run(2, plain, "plain_straight")
    rc1, _ = run(2, plain[:4] + ["epochs=1"] + plain[5:], "plain_resumed")
    rc2, text = run(2, plain + ["--resume"], "plain_resumed")
    check(rc == 0 and rc1 == 0 and rc2 == 0 and "resuming from" in text and same_file(ckpt("plain_resumed"), ckpt("plain_straight")),
          "the plain all-reduce: 2 ranks resumed after epoch 1 end bit-identical to 2 ranks straight through")
elif case == "prune":
    train = [nnc, "train", os.path.join(root, "models", "fashion_sparse.nn"), "--set", "epochs=2", "--deterministic-reduce=2"]
    widths = {}
    for n in (0, 2):
        rc, text = run(n, train, f"sparse{n}")
        widths[n] = re.findall(r"pruned after epoch \d+: (.*) \(rebuilt", text)
        check(rc == 0 and len(widths[n]) == 1, f"fashion_sparse on {max(n, 1)} rank(s) prunes once: {widths[n]}")
    check(widths[0] == widths[2], "2 ranks prune to exactly the widths of one process")
    check(same_file(ckpt("sparse0"), ckpt("sparse2")), "and end with a bit-identical checkpoint")
    rc, text = run(2, train[:-1], "sparse2plain")
    w = re.findall(r"pruned after epoch \d+: (.*) \(rebuilt", text)
    check(rc == 0 and len(w) == 1, f"with the plain all-reduce, 2 ranks prune too: {w} (rounding may move a gate)")
elif case == "faults":
    train = [nnc, "train", MLP, "--set", "epochs=2", "--checkpoint-every", "1"]
    t0 = time.time()
    rc, text = run(2, train, "killed", {"NNC_TEST_RANK_SIGNAL": "1:2:50:KILL"}, timeout=300)
    took = time.time() - t0
    check(rc != 0 and re.search(r"rank 1 .*(exited on signal 9|killed)", text, re.S | re.I) is not None,
          f"rank 1 killed at epoch 2, step 50: the job exits {rc} in {took:.1f} s, and mpirun names rank 1")
    check("epoch 2/2" not in text, "no rank went on to finish the epoch")
    rc, text = run(0, [nnc, "train", MLP, "--set", "epochs=2", "--resume"], "killed")
    check(rc == 0 and "resuming from" in text and "epoch 2, step 469" in text and "epoch 2/2" in text,
          "the last checkpoint (after epoch 1) resumes on one process and finishes")
    t0 = time.time()
    rc, text = run(2, train + ["--collective-timeout", "3"], "stopped", {"NNC_TEST_RANK_SIGNAL": "1:1:20:STOP"}, timeout=300)
    took = time.time() - t0
    check(rc != 0 and re.search(r"rank 0: the (gradient all-reduce|step's losses): no answer from the other ranks in 3 s", text)
          is not None and took < 60, f"rank 1 stopped: rank 0 ends the job after the 3 s timeout (exit {rc}, {took:.1f} s)")
elif case == "samplers":
    train = [nnc, "train", os.path.join(root, "models", "xsec_bnn.nn"), "--set", "samples=100", "--set", "burnin=100",
             "--set", "chains=3", "--set", "parallel=0"]
    rc1, one = run(0, train, "chains1")
    rc2, two = run(2, train, "chains2")
    check(rc1 == 0 and rc2 == 0, "hmc, 3 chains: one process, and 2 ranks (chains 1 and 3 on rank 0, chain 2 on rank 1)")
    for c in (1, 2, 3):
        check(same_file(f"{out}/chains1/draws_chain{c}.safetensors", f"{out}/chains2/draws_chain{c}.safetensors"),
              f"chain {c}'s draws bit-identical (rank 0 writes every chain's file)")

    def untimed(path):
        text = open(path).read()
        return re.sub(r'"(seconds|time_s)":\s*[0-9.e+-]+', "", text)
    check(untimed(f"{out}/chains1/summary.json") == untimed(f"{out}/chains2/summary.json"), "summary.json the same but for times")
    check(untimed(f"{out}/chains1/metrics.jsonl") == untimed(f"{out}/chains2/metrics.jsonl"),
          "metrics.jsonl: every chain's lines, in chain order, the same but for times")
    table = [line for line in one.splitlines() if line.startswith("  ")]
    check(len(table) > 4 and table == [line for line in two.splitlines() if line.startswith("  ")], "the printed summary table the same")
    json.loads(open(f"{out}/chains2/summary.json").read())
elif case == "bad_input":
    def refused(n, args, pattern, what, tag, extra=None):
        rc, text = run(n, args, tag, extra, timeout=300)
        ok = rc != 0 and re.search(pattern, text) is not None and "epoch 1/" not in text and not os.path.exists(f"{out}/{tag}.losses")
        check(ok, f"{what}: refused before any step")
        if not ok:
            print(text[-3000:])
    refused(2, [nnc, "train", MLP, "--set", "batch=127"], r"the batch of 127 does not divide into 2 ranks' equal shares",
            "batch 127 on 2 ranks", "batch")
    refused(2, [nnc, "train", MLP, "--deterministic-reduce=3"], r"--deterministic-reduce=3 cannot be shared by 2 ranks",
            "3 shards on 2 ranks", "shards")
    other = f"{out}/other.nn"
    with open(MLP) as f:
        open(other, "w").write(f.read().replace("lr = 1e-3", "lr = 2e-3"))
    p = subprocess.run(MPIRUN + ["-np", "1", nnc, "train", MLP, "--out", f"{out}/differ", ":", "-np", "1", nnc, "train", other,
                                 "--out", f"{out}/differ"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=300)
    check(p.returncode != 0 and "rank 1 has another model file or other settings than rank 0" in p.stdout
          and "epoch 1/" not in p.stdout, "ranks with different model files: refused before any step")
    for d in ("a", "b"):  # the same model text in two directories; b lacks its data
        os.makedirs(f"{out}/{d}", exist_ok=True)
        shutil.copy(os.path.join(root, "models", "luna_toy.nn"), f"{out}/{d}/luna_toy.nn")
    os.makedirs(f"{out}/a/data", exist_ok=True)
    for fname in ("luna_toy_train.csv", "luna_toy_test.csv"):
        shutil.copy(os.path.join(root, "models", "data", fname), f"{out}/a/data/")
    p = subprocess.run(MPIRUN + ["-np", "1", nnc, "train", f"{out}/a/luna_toy.nn", "--out", f"{out}/data", ":", "-np", "1", nnc,
                                 "train", f"{out}/b/luna_toy.nn", "--out", f"{out}/data"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=300)
    check(p.returncode != 0 and re.search(r"rank 1: .*luna_toy_train\.csv", p.stdout) is not None
          and "rank 1 cannot load its data" in p.stdout and "step 1000/" not in p.stdout,
          "a data file missing on rank 1: rank 1 names it, rank 0 says no rank trains")
    if p.returncode == 0 or "rank 1 cannot load" not in p.stdout:
        print(p.stdout[-3000:])
    refused(2, [nnc, "train", MLP, "--device", "cuda"], r"error: .*(cuda|CUDA|GPU)", "--device cuda on ranks without a GPU", "cuda")
    refused(2, [nnc, "train", os.path.join(root, "models", "xsec_bnn.nn"), "--resume"], r"keeps no checkpoint: --resume a sampling run on one process",
            "--resume of a sampler on 2 ranks", "sampler")
    refused(2, [nnc, "train", MLP], r"is not an MPI plug-in of this nnc", "NNC_MPI_PLUGIN naming another library", "plugin",
            {"NNC_MPI_PLUGIN": "/lib/x86_64-linux-gnu/libz.so.1"})
    rc, text = run(0, [nnc, "train", MLP, "--set", "iterations=2"], "alone", {"NNC_MPI_PLUGIN": "/nonexistent.so"})
    check(rc == 0 and "rank" not in text, "without mpirun, nnc trains without looking for MPI")
    ldd = subprocess.run(["ldd", nnc], stdout=subprocess.PIPE, text=True).stdout
    check("libmpi" not in ldd, "nnc is not linked with MPI (the plug-in is loaded under mpirun only)")
else:
    sys.exit(f"unknown case {case}")
finish()
