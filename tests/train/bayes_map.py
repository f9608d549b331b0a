"""bayes_map.py NNC OUTDIR: maximum a posteriori training against its closed form.

Bayesian linear regression with a normal prior N(0, tau^2) on every weight and the bias and
a known noise sigma has the posterior mode m = (X'X / sigma^2 + I / tau^2)^-1 X'y / sigma^2
(X with a column of ones).  nnc trains `prior out ~ normal(0, tau)` with gaussian_nll by
full-batch SGD; its weights must reach m, and the test split's rmse and nll (the likelihood
alone) must be those of m.  The prior moves m away from least squares by far more than the
tolerance, so a prior left out, or scaled by anything but 1/N, fails."""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint"))
from st_numpy import read  # noqa: E402

nnc, out = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(11)
N, D, SIGMA, TAU = 400, 6, 0.5, 0.1
x = rng.normal(size=(N, D))
y = x @ rng.normal(scale=0.3, size=D) + 0.2 + SIGMA * rng.normal(size=N)
np.savetxt(f"{out}/lin.csv", np.c_[x, y], delimiter=",", fmt="%.7f")
with open(f"{out}/lin.nn", "w") as f:
    f.write(f"""model lin
input  x : f32[{D}]
target y : f32[1]
prior  out ~ normal(0, {TAU})
out  = x -> dense(1)
loss gaussian_nll(out, y, sigma = {SIGMA})
metric rmse(out, y), nll(out, y)
train {{ data csv("lin.csv", target = last) test csv("lin.csv", target = last) batch {N} epochs 300
        optimizer sgd(lr = 0.2, momentum = 0.9) seed 1 }}
""")
subprocess.run([nnc, "train", f"{out}/lin.nn", "--out", f"{out}/run", "--no-progress"], check=True)

data = np.loadtxt(f"{out}/lin.csv", delimiter=",")  # the values nnc read
xa, t = np.c_[data[:, :D], np.ones(N)], data[:, D]
mode = np.linalg.solve(xa.T @ xa / SIGMA**2 + np.eye(D + 1) / TAU**2, xa.T @ t / SIGMA**2)
lsq = np.linalg.lstsq(xa, t, rcond=None)[0]

weights = read(f"{out}/run/checkpoint.safetensors")[0]
got = np.r_[weights["out.weight"].ravel(), weights["out.bias"]].astype(np.float64)

fails = []
err = np.max(np.abs(got - mode))
print(f"posterior mode: max |nnc - closed form| = {err:.2e}; the prior moves it {np.max(np.abs(mode - lsq)):.3f} from least squares")
if err > 1e-5:
    fails.append(f"weights {got} differ from the posterior mode {mode}")
if np.max(np.abs(mode - lsq)) < 100 * 1e-5:
    fails.append("the prior hardly moves the mode: the test could not tell")
r = xa @ mode - t
want = {"rmse": np.sqrt(np.mean(r**2)), "nll": np.mean(r**2) / (2 * SIGMA**2) + np.log(SIGMA) + 0.5 * np.log(2 * np.pi)}
last = [e for e in map(json.loads, open(f"{out}/run/metrics.jsonl")) if e.get("split") == "test"][-1]
for k, v in want.items():
    g = last[k]
    print(f"test {k}: nnc {g:.6f}, closed form {v:.6f}")
    if abs(g - v) > 1e-4 * max(1, abs(v)):
        fails.append(f"test {k} is {g}, the posterior mode's is {v}")
for f_ in fails:
    print("FAIL", f_)
sys.exit(1 if fails else 0)
