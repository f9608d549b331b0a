"""xsec_hmc.py: models/xsec_bnn.nn (or, with --model diabetes, models/diabetes_bnn.nn) sampled
by nnc's HMC and NUTS against NumPyro's HMC and NUTS (JAX on the CPU), the same network,
priors, data and settings.

Reported per run: gradient evaluations per second; the ESS per second of the predictions f(x)
at 16 fixed inputs (the first 16 test rows: weight-space ESS means little under the hidden
units' permutation symmetry), the median over the 16 of the bulk ESS over all chains,
divided by the run's wall time, compilation and warm-up included; the time to the first
draw; divergences while sampling; peak RSS of the process.  ESS is computed by the same
NumPy code for both (tests/train/mcmc_np.py).

    python3 bench/xsec_hmc.py --nnc build/nnc --python /tmp/venv/bin/python [--chains 2] [--samples 1000] [--prior normal]
        [--model diabetes] [--which nnc-hmc,nnc-nuts,hmc,nuts] [--max-depth 10]

The NumPyro half runs in the given Python (a venv with numpyro and jax); this script itself
needs only NumPy."""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "train"))
sys.path.insert(0, os.path.join(ROOT, "tests", "checkpoint"))
from mcmc_np import ess_bulk  # noqa: E402
from st_numpy import read  # noqa: E402

NUMPYRO = r'''
import json, os, sys, time, resource
cfg = json.loads(sys.argv[1])
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
if cfg["chain_method"] == "parallel":  # a JAX CPU device per chain, so that pmap runs them at once
    os.environ["XLA_FLAGS"] += f" --xla_force_host_platform_device_count={cfg['chains']}"
import numpy as np
t0 = time.time()
import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
from numpyro.infer import HMC, MCMC, NUTS
tr = np.loadtxt(cfg["train"], delimiter=",", dtype=np.float32)
D = cfg["inputs"]
x, y = jnp.array(tr[:, :D]), jnp.array(tr[:, D])
def model(x, y):
    W = dist.Cauchy(0, 1) if cfg["prior"] == "cauchy" else dist.Normal(0, 1)
    w1 = numpyro.sample("w1", W.expand([D, 20]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0, 10).expand([20]).to_event(1))
    a = numpyro.sample("a", dist.Normal(0, 1).expand([20]).to_event(1))
    w2 = numpyro.sample("w2", W.expand([20, 1]).to_event(2))
    b2 = numpyro.sample("b2", dist.Normal(0, 10).expand([1]).to_event(1))
    raw = numpyro.sample("raw", dist.ImproperUniform(dist.constraints.real, (), ()))
    h = x @ w1 + b1
    h = jnp.where(h > 0, h, a * h)
    f = (h @ w2 + b2)[:, 0]
    numpyro.sample("y", dist.Normal(f, jax.nn.softplus(raw)), obs=y)
if cfg["kernel"] == "hmc":
    k = HMC(model, step_size=cfg["step"], num_steps=cfg["leapfrog"])
else:
    k = NUTS(model, step_size=cfg["step"], max_tree_depth=cfg["max_depth"])
mcmc = MCMC(k, num_warmup=cfg["burnin"], num_samples=cfg["samples"], num_chains=cfg["chains"],
            chain_method=cfg["chain_method"], progress_bar=False)
t1 = time.time()
mcmc.warmup(jax.random.PRNGKey(cfg["seed"]), x, y, extra_fields=("num_steps",), collect_warmup=False)
first = time.time() - t0
mcmc.run(mcmc.post_warmup_state.rng_key, x, y, extra_fields=("num_steps", "diverging"))
wall = time.time() - t0
s = mcmc.get_samples(group_by_chain=True)
ex = mcmc.get_extra_fields(group_by_chain=True)
out = {k: np.asarray(v).tolist() for k, v in s.items()}
print(json.dumps({"draws": out, "first_draw_s": first, "wall_s": wall, "sample_s": wall - (t1 - t0),
                  "grads": int(np.sum(ex["num_steps"])), "divergences": int(np.sum(ex["diverging"])),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def predict(w1, b1, a, w2, b2, x):
    """f(x) per draw: w1 [d, D, 20] (nnc's [20, D] transposed), x [16, D] -> [d, 16]."""
    h = np.einsum("ij,djk->dik", x, w1) + b1[:, None, :]
    h = np.where(h > 0, h, a[:, None, :] * h)
    return np.einsum("dik,dk->di", h, w2) + b2[:, None]


def run_nnc(args, kernel, x16):
    model = open(os.path.join(ROOT, "models", f"{args.model}_bnn.nn")).read()
    if kernel == "hmc":
        sampler = (f"sampler hmc(step = {args.step}, leapfrog = {args.leapfrog}, samples = {args.samples}, burnin = {args.burnin}, "
                   f"chains = {args.chains})")
    else:
        sampler = (f"sampler nuts(step = {args.step}, max_depth = {args.max_depth}, samples = {args.samples}, burnin = {args.burnin}, "
                   f"chains = {args.chains})")
    model = re.sub(r"sampler (hmc|nuts)\(.*\)", sampler, model)
    model = model.replace('"data/', f'"{ROOT}/models/data/')
    if args.prior == "normal":
        model = model.replace("prior  weights ~ cauchy(0, 1)", "prior  weights ~ normal(0, 1)")
    if args.prior == "cauchy-noncentred":
        model = model.replace("prior  weights ~ cauchy(0, 1)", "prior  weights ~ cauchy(0, 1, noncentred = true)")
    d = tempfile.mkdtemp(prefix="xsec_hmc_")
    with open(f"{d}/model.nn", "w") as f:
        f.write(model)
    t0 = time.time()
    p = subprocess.run(["/usr/bin/time", "-f", "peak_rss_kib %M", args.nnc, "train", f"{d}/model.nn", "--out", f"{d}/run",
                        "--no-progress", "--set", f"seed={args.seed}"], capture_output=True, text=True, check=True)
    wall = time.time() - t0
    text = p.stdout + p.stderr
    compiled = float(re.search(r"compiled in ([0-9.]+) s", text).group(1))
    first = float(re.search(r"first draw after ([0-9.]+) s", text).group(1))
    grads = int(re.search(r"([0-9]+) gradient passes", text).group(1))
    div = int(re.search(r"([0-9]+) divergences while sampling", text).group(1))
    rss = int(re.search(r"peak_rss_kib ([0-9]+)", text).group(1)) / 1024
    f = []
    for c in range(args.chains):
        t = {k: v.astype(np.float64) for k, v in read(f"{d}/run/draws_chain{c + 1}.safetensors")[0].items()}
        for w in ("out.dense1.weight", "out.dense2.weight"):
            if w not in t:  # the non-centred form: the weight from its z and log_tau
                t[w] = t[w + ".z"] * np.exp(t[w + ".log_tau"] / 2)
        w1 = np.transpose(t["out.dense1.weight"], (0, 2, 1))
        f.append(predict(w1, t["out.dense1.bias"], t["out.slope"], t["out.dense2.weight"][:, 0, :], t["out.dense2.bias"][:, 0], x16))
    return {"f": np.stack(f), "wall_s": wall, "first_draw_s": compiled + first, "grads": grads, "divergences": div,
            "peak_rss_mib": rss}


def run_numpyro(args, kernel, x16):
    cfg = {"kernel": kernel, "train": f"{ROOT}/models/data/{args.model}_train.csv", "step": args.step, "leapfrog": args.leapfrog,
           "samples": args.samples, "burnin": args.burnin, "chains": args.chains, "seed": args.seed, "prior": args.prior,
           "inputs": args.inputs, "max_depth": args.max_depth, "chain_method": args.numpyro_chains}
    p = subprocess.run([args.python, "-c", NUMPYRO, json.dumps(cfg)], capture_output=True, text=True, check=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
    r = json.loads(p.stdout.strip().splitlines()[-1])
    s = {k: np.array(v) for k, v in r.pop("draws").items()}
    f = []
    for c in range(args.chains):
        f.append(predict(s["w1"][c], s["b1"][c], s["a"][c], s["w2"][c][:, :, 0], s["b2"][c][:, 0], x16))
    r["f"] = np.stack(f)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nnc", required=True)
    ap.add_argument("--python", required=True, help="a Python with numpyro and jax")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--burnin", type=int, default=500)
    ap.add_argument("--step", type=float, default=5e-4)
    ap.add_argument("--leapfrog", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--numpyro-chains", default="sequential", choices=["sequential", "parallel"],
                    help="NumPyro's chain_method (parallel: a JAX CPU device per chain)")
    ap.add_argument("--vary-seed", action="store_true", help="repetition r runs seed r + 1 (both), not seed 1 every time")
    ap.add_argument("--which", default="nnc-hmc,hmc,nuts", help="nnc-hmc, nnc-nuts (nnc's), hmc, nuts (NumPyro's)")
    ap.add_argument("--model", default="xsec", choices=["xsec", "diabetes"])
    ap.add_argument("--max-depth", type=int, default=10, help="NUTS's deepest tree, both")
    ap.add_argument("--prior", default="cauchy", choices=["cauchy", "normal", "cauchy-noncentred"],
                    help="on the weights (the biases: normal(0, 10)); cauchy-noncentred: nnc's non-centred form (NumPyro's Cauchy stays centred)")
    args = ap.parse_args()
    args.inputs = 19 if args.model == "xsec" else 10
    x16 = np.loadtxt(f"{ROOT}/models/data/{args.model}_test.csv", delimiter=",")[:16, :args.inputs]
    print("| run (seed) | sampler | gradients/s | ESS/s of f(x) (median of 16) | median bulk ESS | wall s | first draw s | divergences | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rep in range(args.repeat):
        args.seed = rep + 1 if args.vary_seed else 1
        for which in args.which.split(","):
            r = run_nnc(args, which[4:], x16) if which.startswith("nnc-") else run_numpyro(args, which, x16)
            ess = np.median([ess_bulk(r["f"][:, :, i]) for i in range(16)])
            print(f"| {rep + 1} ({args.seed}) | {which.replace('nnc-', 'nnc ') if which.startswith('nnc-') else 'numpyro ' + which + (' (parallel)' if args.numpyro_chains == 'parallel' else '')} | {r['grads'] / r['wall_s']:.0f} | "
                  f"{ess / r['wall_s']:.1f} | {ess:.0f} | {r['wall_s']:.1f} | {r['first_draw_s']:.2f} | {r['divergences']} | "
                  f"{r['peak_rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
