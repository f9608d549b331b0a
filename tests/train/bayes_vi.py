"""bayes_vi.py NNC OUTDIR: variational dense layers (bayes_dense) against NumPy.

A classifier of two bayes_dense layers (priors normal(0, 1) and normal(0.5, 2)) trains on two
blobs.  Its weights are w = mu + softplus(rho) eps with eps drawn at every step by the kernel
generator; evaluation uses the posterior mean (eps = 0).  From the checkpoint's mu, rho and
biases NumPy recomputes the last test loss: the cross-entropy of the mean network over the test
rows plus KL(q || prior) / N, N the training rows, each layer's KL in closed form,
    sum log s - log sigma + (sigma^2 + (mu - m)^2) / (2 s^2) - 1/2.
They must agree to float rounding (1e-5 relative).  Also: rho moved from its start (its
gradient flows through the noise), the model learns the blobs, a run stopped mid-epoch resumes
to the same metrics and checkpoint bytes, and another seed gives another run."""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint"))
from checks import check, finish  # noqa: E402  tests/train/checks.py
from st_numpy import read  # noqa: E402

nnc, out = sys.argv[1], os.path.abspath(sys.argv[2])
rng = np.random.default_rng(3)
n = 400
y = np.arange(n) % 2
x = rng.normal(size=(n, 4)) + np.where(y[:, None] == 1, 1.0, -1.0)
np.savetxt(f"{out}/blobs.csv", np.c_[x, y], delimiter=",", fmt="%.6f")
with open(f"{out}/vi.nn", "w") as f:
    f.write("""model vi
input  x : f32[4]
target y : class[2]
h      = x -> bayes_dense(16) -> tanh
logits = h -> bayes_dense(2, prior = normal(0.5, 2), rho = -4)
loss   cross_entropy(logits, y)
metric accuracy(logits, y)
train {
  data   csv("blobs.csv", target = last)
  test   csv("blobs.csv", target = last)
  batch  40
  epochs 15
  optimizer adam(lr = 1e-2)
}
""")


def run(outdir, *extra):
    return subprocess.run([nnc, "train", f"{out}/vi.nn", "--out", outdir, "--no-progress", *extra], capture_output=True, text=True)


r = run(f"{out}/run")
check(r.returncode == 0, f"vi trains (exit {r.returncode}) {r.stderr.strip()[:300]}")
lines = [json.loads(l) for l in open(f"{out}/run/metrics.jsonl")]
test = [l for l in lines if l["split"] == "test"][-1]
w, _ = read(f"{out}/run/checkpoint.safetensors")


def softplus(v):
    return np.log1p(np.exp(-np.abs(v))) + np.maximum(v, 0)


def kl(mu, rho, m, s):
    sig = softplus(rho.astype(np.float64))
    return np.sum(np.log(s) - np.log(sig) + (sig ** 2 + (mu - m) ** 2) / (2 * s * s) - 0.5)


mu1, mu2 = w["h.weight_mu"].astype(np.float64), w["logits.weight_mu"].astype(np.float64)
h = np.tanh(x.astype(np.float32).astype(np.float64) @ mu1.T + w["h.bias"])
z = h @ mu2.T + w["logits.bias"]
zmax = z.max(axis=1, keepdims=True)
ce = np.mean(np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0] - z[np.arange(n), y])
total_kl = kl(mu1, w["h.weight_rho"], 0.0, 1.0) + kl(mu2, w["logits.weight_rho"], 0.5, 2.0)
want = ce + total_kl / n
check(abs(test["loss"] - want) <= 1e-5 * abs(want),
      f"test loss {test['loss']:.7g} = the mean network's cross-entropy {ce:.7g} + KL {total_kl:.7g} / {n} ({want:.7g})")
acc = np.mean(z.argmax(axis=1) == y)
check(abs(test["accuracy"] - acc) < 1e-9 and acc > 0.9, f"test accuracy {test['accuracy']} of the posterior mean (NumPy {acc})")
moved = max(np.abs(w["h.weight_rho"] + 5).max(), np.abs(w["logits.weight_rho"] + 4).max())
check(moved > 1e-3, f"rho is trained through the noise (moved by up to {moved:.3g})")
# stopped mid-epoch and resumed: the noise is drawn again from its counters, so the run ends
# with the same metrics and checkpoint bytes
env = dict(os.environ, NNC_TEST_SIGNAL_AT="4:3")
r = subprocess.run([nnc, "train", f"{out}/vi.nn", "--out", f"{out}/cut", "--no-progress"], capture_output=True, text=True, env=env)
r3 = run(f"{out}/cut", "--resume")
strip = lambda path: [{k: v for k, v in json.loads(l).items() if k not in ("samples_per_s", "time_s")} for l in open(path)]
same = r.returncode == 143 and r3.returncode == 0 and strip(f"{out}/cut/metrics.jsonl") == strip(f"{out}/run/metrics.jsonl")
same = same and open(f"{out}/cut/checkpoint.safetensors", "rb").read() == open(f"{out}/run/checkpoint.safetensors", "rb").read()
check(same, f"stopped at epoch 4, step 3 and resumed: the same metrics and checkpoint bytes (exits {r.returncode}, {r3.returncode})")
r2 = run(f"{out}/seed2", "--set", "seed=2")
first = [l for l in lines if l["split"] == "train"][0]["loss"]
other = [json.loads(l) for l in open(f"{out}/seed2/metrics.jsonl") if '"split":"train"' in l][0]["loss"]
check(r2.returncode == 0 and first != other, f"another seed, another run: first train losses {first:.6g} and {other:.6g}")
finish()
