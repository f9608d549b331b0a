"""blr_exact.py NNC OUTDIR: the head bayes_linear against NumPy's closed form on the same features.

The features are made exact: inputs on a grid of 1/8, first-layer weights (given by --init) on a
grid of 1/16, so every feature relu(x W^T + b) is the same float in nnc's kernels and in NumPy;
one SGD step of lr 1e-30 leaves the weights as they were.  Two targets (T = 2).  Checks, with
alpha = 0.5, beta = 4 given: the checkpoint's posterior mean (head.mean) and Cholesky factor
(head.chol) against NumPy's m = beta A^-1 Phi^T y and cholesky(A), A = alpha I + beta Phi^T Phi,
to 1e-9; a trainer's `predict` (mean and sd per output) against phi^T m and
sqrt(1 / beta + phi^T A^-1 phi) to 1e-6 (float32 output); its `eval` rmse and nll on the test
set.  With alpha = evidence and beta = evidence: the values the fixed point reaches, and the log
evidence, against NumPy's own iteration of MacKay's updates (Bishop 3.92, 3.95) to 1e-6."""
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint"))
import st_numpy  # noqa: E402  (tests/checkpoint/st_numpy.py)
from checks import check, finish  # noqa: E402  (tests/train/checks.py)

nnc, out = sys.argv[1], os.path.abspath(sys.argv[2])
rng = np.random.default_rng(5)
N, NT, D, F, T = 64, 30, 2, 6, 2
x = (rng.integers(-16, 17, size=(N, D)) / 8).astype(np.float32)
xt = (rng.integers(-24, 25, size=(NT, D)) / 8).astype(np.float32)


def target(x):
    return np.stack([np.sin(x[:, 0]) + 0.5 * x[:, 1], x[:, 0] * x[:, 1]], 1)


y = (target(x) + 0.3 * rng.normal(size=(N, T))).astype(np.float32)
yt = (target(xt) + 0.3 * rng.normal(size=(NT, T))).astype(np.float32)
for name, a in (("x", x), ("y", y), ("xt", xt), ("yt", yt)):
    np.save(f"{out}/{name}.npy", a)
def nonzero(size, top):  # on a grid of 1/16, never 0 (an SGD step of 1e-30 would move a 0)
    return (rng.choice([-1, 1], size=size) * rng.integers(1, top + 1, size=size) / 16).astype(np.float32)


W, b = nonzero((F, D), 16), nonzero(F, 8)
st_numpy.write(f"{out}/init.safetensors", {"f.weight": W, "f.bias": b, "out.weight": rng.normal(size=(T, F)) * 0.1,
                                           "out.bias": np.zeros(T)}, "F32")

MODEL = """model blr
input  x : f32[2]
target y : f32[2]
f   = x -> dense(6) -> relu
out = f -> dense(2)
loss mse(out, y)
head bayes_linear(f, y, alpha = ALPHA, beta = BETA)
train {
  data       npy(x = "x.npy", y = "y.npy")
  test       npy(x = "xt.npy", y = "yt.npy")
  batch      16
  iterations 1
  optimizer  sgd(lr = 1e-30)
}
"""


def run(name, alpha, beta):
    path = f"{out}/{name}.nn"
    with open(path, "w") as f:
        f.write(MODEL.replace("ALPHA", alpha).replace("BETA", beta))
    r = subprocess.run([nnc, "train", path, "--out", f"{out}/{name}", "--init", f"{out}/init.safetensors", "--no-progress"],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"{name}: trains and fits its head (exit {r.returncode}) {r.stderr[-400:]}")
    return r


def features(x):
    return np.hstack([np.maximum(x.astype(np.float64) @ W.T.astype(np.float64) + b, 0), np.ones((len(x), 1))])


Phi, Pt = features(x), features(xt)


def posterior(alpha, beta):
    A = alpha * np.eye(F + 1) + beta * Phi.T @ Phi
    return A, beta * np.linalg.solve(A, Phi.T @ y.astype(np.float64))


# alpha and beta given
r = run("given", "0.5", "4")
tensors, meta = st_numpy.read(f"{out}/given/checkpoint.safetensors")
check(np.array_equal(tensors["f.weight"], W) and np.array_equal(tensors["f.bias"], b),
      "the first layer's weights are the ones given (so nnc's features are NumPy's)")
A, m = posterior(0.5, 4.0)
L = np.linalg.cholesky(A)
em = np.abs(tensors["head.mean"] - m).max() / np.abs(m).max()
el = np.abs(tensors["head.chol"] - L).max() / np.abs(L).max()
check(em < 1e-9 and el < 1e-9, f"posterior mean and Cholesky factor as NumPy's: relative {em:.2e}, {el:.2e}")
trainer = f"{out}/given.tr"
subprocess.run([nnc, "build", f"{out}/given.nn", "-o", trainer], check=True, capture_output=True)
p = subprocess.run([trainer, "predict", "--checkpoint", f"{out}/given/checkpoint.safetensors", "--input", f"{out}/xt.npy",
                    "--output", f"{out}/pred.npy"], capture_output=True, text=True)
check(p.returncode == 0 and "as the predictive mean and sd" in p.stdout, f"predict writes the head's mean and sd: {p.stdout}{p.stderr}")
mean = Pt @ m
sd = np.sqrt(1 / 4.0 + np.einsum("ij,ji->i", Pt, np.linalg.solve(A, Pt.T)))
if p.returncode == 0:
    pr = np.load(f"{out}/pred.npy")
    check(pr.shape == (NT, T, 2), f"predictions [n, outputs, (mean, sd)]: {pr.shape}")
    emu = np.abs(pr[:, :, 0] - mean).max() / np.abs(mean).max()
    esd = np.abs(pr[:, :, 1] - sd[:, None]).max() / sd.max()
    check(emu < 1e-6 and esd < 1e-6, f"predictive mean and sd as NumPy's: relative {emu:.2e}, {esd:.2e}")
rmse = np.sqrt(np.mean((yt - mean) ** 2))
nll = np.mean(0.5 * np.log(2 * np.pi * sd[:, None] ** 2) + (yt - mean) ** 2 / (2 * sd[:, None] ** 2))
e = subprocess.run([trainer, "eval", "--checkpoint", f"{out}/given/checkpoint.safetensors"], capture_output=True, text=True,
                   cwd=out)
got = re.search(r"test rmse ([0-9.e+-]+) nll ([0-9.e+-]+)", e.stdout)
check(got and abs(float(got.group(1)) / rmse - 1) < 1e-5 and abs(float(got.group(2)) / nll - 1) < 1e-5,
      f"eval's head rmse and nll on the test set: {got.groups() if got else e.stdout + e.stderr} against {rmse:.6g}, {nll:.6g}")

# alpha and beta by the evidence
run("evidence", "evidence", "evidence")
c = subprocess.run([nnc, "check", f"{out}/evidence.nn"], capture_output=True, text=True)
check("head: bayes_linear on f's 6 features and a bias, fitted after training on the training split; alpha (the prior's "
      "precision) by the evidence, beta (the noise's) by the evidence" in c.stdout, "nnc check describes the head")
tensors, meta = st_numpy.read(f"{out}/evidence/checkpoint.safetensors")
alpha_nnc, beta_nnc, logev_nnc = (float.fromhex(v) for v in meta["head"].split()[:3])
alpha, beta = 1.0, 100.0  # where nnc starts: bayes_linear's defaults
eig = np.linalg.eigvalsh(Phi.T @ Phi)
for _ in range(1000):
    A, m = posterior(alpha, beta)
    gamma = np.sum(beta * eig / (alpha + beta * eig))
    rss = np.sum((y - Phi @ m) ** 2)
    a2, b2 = T * gamma / np.sum(m * m), T * (N - gamma) / rss
    done = abs(a2 - alpha) <= 1e-10 * alpha and abs(b2 - beta) <= 1e-10 * beta
    alpha, beta = a2, b2
    if done:
        break
A, m = posterior(alpha, beta)
rss = np.sum((y - Phi @ m) ** 2)
logev = T * (0.5 * (F + 1) * np.log(alpha) + 0.5 * N * np.log(beta) - 0.5 * np.linalg.slogdet(A)[1] - 0.5 * N * np.log(2 * np.pi)) \
    - 0.5 * beta * rss - 0.5 * alpha * np.sum(m * m)
check(abs(alpha_nnc / alpha - 1) < 1e-6 and abs(beta_nnc / beta - 1) < 1e-6 and abs(logev_nnc / logev - 1) < 1e-6,
      f"evidence: alpha {alpha_nnc:.8g} (NumPy {alpha:.8g}), beta {beta_nnc:.8g} ({beta:.8g}), "
      f"log evidence {logev_nnc:.8g} ({logev:.8g})")
finish()
