"""bayes_divergence.py NNC OUTDIR: a potential that stops being finite never reaches a sampler's
state, and stops the run only where the position itself has run off.

The data has one row whose input, 1e30, overflows the Gaussian likelihood to infinity.
- SGLD on minibatches of one row: every step on that row is skipped and counted ("steps skipped
  for a non-finite loss"), about one in ten; the run ends normally and every drawn weight is
  finite.
- HMC and NUTS on the whole split: the potential is infinite everywhere, so every proposal is a
  divergence, rejected; the run ends normally, reports them with chain and iteration, and the
  draws are all the (finite) starting position.
- SGLD with an lr that throws the position off (1e30): every loss after is infinite, so after a
  whole pass of skipped steps the run stops with an error at the sampler's line.
- SGLD whose loss is finite but whose gradient is not: inputs of 0, no bias, targets of 1e-12
  and a noise sigma of 1e-30, so the standardised residual is 1e18 (its square, the loss, fits
  a float) and the residual's gradient 1e48 does not (times the inputs' 0: NaN); the run stops
  at the first step with an error at the layer, before the update reaches the position."""
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint"))
from checks import check, finish  # noqa: E402  tests/train/checks.py
from st_numpy import read  # noqa: E402

nnc, out = sys.argv[1], os.path.abspath(sys.argv[2])


def model(path, name, data, batch, sampler):
    """A one-input linear regression with a Gaussian likelihood, written to path."""
    with open(path, "w") as f:
        f.write(f"""model {name}
input  x : f32[1]
target y : f32[1]
prior  out ~ normal(0, 1)
out    = x -> dense(1)
loss   gaussian_nll(out, y, sigma = 1)
train {{
  data    csv("{data}", target = last)
  batch   {batch}
  sampler {sampler}
}}
""")
    return path


with open(f"{out}/d.csv", "w") as f:
    f.write("".join(f"{0.1 * i},{0.2 * i}\n" for i in range(9)) + "1e30,0\n")
for name, batch, sampler in [
    ("sgld", 1, "sgld(lr = 1e-3, samples = 300, burnin = 100)"),
    ("hmc", 10, "hmc(step = 0.01, leapfrog = 5, samples = 50, burnin = 20)"),
    ("nuts", 10, "nuts(step = 0.01, samples = 50, burnin = 20)"),
]:
    path = model(f"{out}/{name}.nn", name, "d.csv", batch, sampler)
    r = subprocess.run([nnc, "train", path, "--out", f"{out}/{name}", "--no-progress"], capture_output=True, text=True)
    check(r.returncode == 0, f"{name}: the run ends normally (exit {r.returncode}) {r.stderr.strip()[:200]}")
    if r.returncode:
        continue
    t = read(f"{out}/{name}/draws_chain1.safetensors")[0]
    w = np.concatenate([t["out.weight"].ravel(), t["out.bias"].ravel()])
    check(np.isfinite(w).all(), f"{name}: every drawn weight is finite ({w.size} values)")
    if name == "sgld":
        m = re.search(r"([0-9]+) steps skipped for a non-finite loss \(([0-9]+) in warm-up\)", r.stdout)
        skipped = int(m.group(1)) + int(m.group(2)) if m else 0
        check(m is not None and 10 <= skipped <= 80, f"sgld: steps on the overflowing row skipped and counted ({skipped} of 400)")
        check("the loss is not finite; step skipped" in r.stdout, "sgld: each (of the first ten) reported with chain and iteration")
    else:
        m = re.search(r"([0-9]+) divergences \(([0-9]+) in warm-up\)", r.stdout)
        check(m is not None and int(m.group(1)) == 50, f"{name}: every sampling iteration a divergence ({m.group(1) if m else '?'} of 50)")
        check("divergence: chain 1, iteration 21 (sampling)" in r.stdout, f"{name}: reported with chain and iteration")
        check(np.all(w.reshape(2, -1) == w.reshape(2, -1)[:, :1]), f"{name}: rejected: the draws stay at the start")

# sgld whose lr throws the position off: its loss stops being finite on every minibatch, and
# skipping cannot help (the position is not moved by a skipped step); the run stops with an
# error at the sampler, on minibatches after a whole pass of skips, on one batch at once (at
# the second step: the first, from the finite start, threw it off)
with open(f"{out}/finite.csv", "w") as f:  # the data without its overflowing row: 9 rows
    f.write("".join(f"{0.1 * i},{0.2 * i}\n" for i in range(9)))
for data, batch, steps in [("d", 1, 10), ("finite", 9, 1)]:
    path = model(f"{out}/runoff{batch}.nn", "runoff", f"{out}/{data}.csv", batch, "sgld(lr = 1e30, samples = 300, burnin = 100)")
    r = subprocess.run([nnc, "train", path, "--out", f"{out}/runoff{batch}", "--no-progress"], capture_output=True, text=True)
    want = (f"{path}:10:3: error: sampling stopped at sgld step ")
    tail = (f": the loss has not been finite on any minibatch for a whole pass over the training split ({steps} step"
            f"{'s' if steps > 1 else ''}): the position has run off (lr 1e+30 too large?), or the data overflows the model")
    check(r.returncode == 1 and want in r.stderr and tail in r.stderr,
          f"sgld, lr 1e30, batch {batch}: stopped after {steps} skipped step(s) in a row (exit {r.returncode}) {r.stderr.strip()[:300]}")

with open(f"{out}/zero.csv", "w") as f:
    f.write("0,0,0,1e-12\n" * 20)
with open(f"{out}/grad.nn", "w") as f:
    f.write("""model grad
input  x : f32[3]
target y : f32[1]
prior  weights ~ normal(0, 1)
out    = x -> dense(1, bias = false)
loss   gaussian_nll(out, y, sigma = 1e-30)
train {
  data    csv("zero.csv", target = last)
  batch   10
  sampler sgld(lr = 1e-6, samples = 10, burnin = 0)
}
""")
r = subprocess.run([nnc, "train", f"{out}/grad.nn", "--out", f"{out}/grad_run", "--no-progress"], capture_output=True, text=True)
want = f"{out}/grad.nn:5:15: error: sampling stopped at sgld step 1: the gradient of 'out.weight' holds NaN or an infinity"
check(r.returncode == 1 and want in r.stderr and "not finite" not in r.stdout,
      f"sgld, a finite loss with a non-finite gradient: stopped at step 1, at the layer (exit {r.returncode}) {r.stderr.strip()[:300]}")

finish()
