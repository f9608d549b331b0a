"""bayes_cuda_emu.py NNC OUTDIR: the samplers on the emulated CUDA device against the CPU.

The CUDA backend's kernels give the CPU's bits for every gradient and every sampler step
(hmc_kick, hmc_drift, sgld_rms, its normal noise: tests/ops, tests/cuda).  Only the loss, a
reduction in another order (per-block partial sums), may differ in its last bits.  So:
- SGLD with RMSprop on minibatches must give the CPU's positions bit for bit, and potentials
  (N x the minibatch loss) within 1e-5 relative;
- HMC and NUTS at a fixed step size (no adaptation, which would carry the loss's last bits
  into the step size) must give the same positions bit for bit: the potential enters only
  through accept decisions and the trees' weights, which such a difference does not flip
  here (it would take a uniform draw within 1e-5 of its threshold)."""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint"))
from checks import check, finish, linear_csv  # noqa: E402  tests/train/checks.py
from st_numpy import read  # noqa: E402

nnc, out = sys.argv[1], os.path.abspath(sys.argv[2])

linear_csv(f"{out}/lin.csv", 3)
cases = [
    ("sgld", "sampler sgld(lr = 2e-5, samples = 300, burnin = 100, chains = 1, rmsprop = true)"),
    ("hmc", "sampler hmc(step = 0.02, leapfrog = 8, samples = 40, burnin = 0, adapt_step = false, adapt_mass = false)"),
    ("nuts", "sampler nuts(step = 0.02, samples = 25, burnin = 0, adapt_step = false, adapt_mass = false)"),
]
for name, sampler in cases:
    path = f"{out}/{name}.nn"
    with open(path, "w") as f:
        f.write(f"""model {name}
input  x : f32[6]
target y : f32[1]
prior  out.weight ~ cauchy(0, 1)
prior  out.bias ~ normal(0, 1)
out    = x -> dense(1)
loss   gaussian_nll(out, y, sigma = learned)
train {{
  data    csv("lin.csv", target = last)
  batch   100
  {sampler}
}}
""")
    got = {}
    for dev in ("cpu", "cuda-emu"):
        r = subprocess.run([nnc, "train", path, "--out", f"{out}/{name}_{dev}", "--no-progress", "--device", dev],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"{name} on {dev} (exit {r.returncode}) {r.stderr.strip()}")
        got[dev] = read(f"{out}/{name}_{dev}/draws_chain1.safetensors")[0] if r.returncode == 0 else {}
    a, b = got["cpu"], got["cuda-emu"]
    if not a or not b:
        continue
    weights = [k for k in a if k != "sampler.potential"]
    check(all(np.array_equal(a[k], b[k]) for k in weights),
          f"{name}: the positions on cuda-emu are the CPU's bit for bit ({', '.join(weights)}; {a[weights[0]].shape[0]} draws)")
    moved = np.mean(np.any(np.diff(a["out.weight"].reshape(a["out.weight"].shape[0], -1), axis=0) != 0, axis=1))
    check(moved > 0.5, f"{name}: the chain moves ({moved:.0%} of its draws differ from the one before)")
    rel = np.max(np.abs(a["sampler.potential"] - b["sampler.potential"]) / np.abs(a["sampler.potential"]))
    check(rel < 1e-5, f"{name}: potentials within 1e-5 relative (worst {rel:.1e})")

finish()
