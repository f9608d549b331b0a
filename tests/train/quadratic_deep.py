"""quadratic_deep.py NNC OUTDIR: DeepOBS's quadratic_deep test problem (models/quadratic_deep.nn)
against its closed form.

The loss 0.5 (theta - x)^T Q (theta - x), averaged over a batch, has the gradient Q (theta - xbar)
and the Hessian Q whatever theta is, so every number nnc reports is known exactly:
- the data: Q's spectrum is the one drawn (90 eigenvalues in (0, 1), 10 in (30, 60)), its rotation
  is in SO(100), and the fixed layer S has S^T S = Q;
- full-batch gradient descent (batch 1000, K steps of lr): theta_K = xbar + (I - lr Q)^K (1 - xbar),
  against the trained shift from the checkpoint, and the losses at epoch 0 and K on both splits
  against 0.5 mean_i (theta - x_i)^T Q (theta - x_i); S, not trained, is the file's bit for bit;
- the same steps on the emulated CUDA device;
- `nnc hvp` at the checkpoint: Lanczos's top eigenvalues, the smallest and the condition number
  are Q's;
- `nnc gradcheck`, and the model as shipped (minibatches of 128, DeepOBS's protocol) for 3 epochs;
- an init file of the wrong shape is refused, naming the file, the weight and both shapes."""
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "checkpoint"))
from st_numpy import read  # noqa: E402
from checks import check, finish  # noqa: E402

nnc, out = sys.argv[1], sys.argv[2]
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
root = os.path.join(HERE, "..", "..")
subprocess.run([sys.executable, os.path.join(root, "models/data/make_quadratic_deep.py"), f"{out}/data"], check=True)
shutil.copy(os.path.join(root, "models/quadratic_deep.nn"), f"{out}/quadratic_deep.nn")
model = f"{out}/quadratic_deep.nn"
d = {k: np.load(f"{out}/data/quadratic_deep_{k}.npy") for k in ("train_x", "test_x", "sqrt_q", "q", "eigenvalues")}
q, eig = d["q"], d["eigenvalues"]

# ---- the problem as DeepOBS defines it ----
check(np.sum((eig > 0) & (eig < 1)) == 90 and np.sum((eig > 30) & (eig < 60)) == 10, "90 eigenvalues in (0, 1), 10 in (30, 60)")
check(np.allclose(np.linalg.eigvalsh(q), eig, rtol=1e-10, atol=1e-12), "Q's spectrum is the drawn one")
s64 = d["sqrt_q"].astype(np.float64)
check(np.abs(s64.T @ s64 - q).max() < 1e-5 * np.abs(q).max(), "S^T S = Q (S float32)")
rows = s64 / np.linalg.norm(s64, axis=1, keepdims=True)  # S = D^1/2 R: R's rows, normalised
check(np.abs(rows @ rows.T - np.eye(100)).max() < 1e-5 and np.linalg.det(rows) > 0, "the rotation is orthogonal with det +1")
for k in ("train_x", "test_x"):
    x = d[k]
    check(x.shape == (1000, 100) and x.dtype == np.float32 and abs(x.std() - 0.6) < 0.01 and abs(x.mean()) < 0.01,
          f"{k}: 1000 draws of normal(0, 0.6^2 I) in 100 dimensions (sd {x.std():.4f})")


def loss(theta, x):
    r = theta[None, :] - x.astype(np.float64)
    return 0.5 * np.mean(np.einsum("bi,ij,bj->b", r, q, r))


def metrics(run):
    import json
    return [json.loads(line) for line in open(f"{run}/metrics.jsonl")]


def split_loss(lines, split, epoch):
    return next(m["loss"] for m in lines if m.get("split") == split and m.get("epoch") == epoch)


# ---- full-batch gradient descent, in closed form ----
K, lr = 12, 0.02
xbar = d["train_x"].astype(np.float64).mean(axis=0)
m = np.eye(100) - lr * q
theta_k = xbar + np.linalg.matrix_power(m, K) @ (np.ones(100) - xbar)
runs = {}
for dev in ("cpu", "cuda-emu"):
    run = f"{out}/gd_{dev}"
    subprocess.run([nnc, "train", model, "--set", "batch=1000", "--set", f"epochs={K}", "--set", f"lr={lr}", "--device", dev,
                    "--out", run, "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    w, _ = read(f"{run}/checkpoint.safetensors")
    runs[dev] = w
    theta = w["diff.shift"].astype(np.float64)
    err = np.abs(theta - theta_k).max() / np.abs(theta_k).max()
    check(err < 1e-5, f"{dev}: theta after {K} steps of full-batch GD matches (I - lr Q)^K: relative error {err:.2e}")
    check(np.array_equal(w["z.weight"], d["sqrt_q"]), f"{dev}: the fixed S is the file's, bit for bit, after training")
    check(sorted(w) == ["diff.shift", "z.weight"], f"{dev}: the checkpoint holds theta and S, no optimizer state for S")
    lines = metrics(run)
    for split, x in (("train_eval", d["train_x"]), ("test", d["test_x"])):
        for epoch, th in ((0, np.ones(100)), (K, theta_k)):
            got, want = split_loss(lines, split, epoch), loss(th, x)
            check(abs(got - want) < 1e-5 * want, f"{dev}: {split} loss at epoch {epoch}: {got:.6f}, closed form {want:.6f}")
diff = np.abs(runs["cpu"]["diff.shift"] - runs["cuda-emu"]["diff.shift"]).max()
check(diff < 1e-5, f"CPU and emulated CUDA agree on theta: {diff:.2e}")

# ---- the Hessian at the checkpoint is Q ----
hvp = subprocess.run([nnc, "hvp", model, "--checkpoint", f"{out}/gd_cpu/checkpoint.safetensors", "--batches", "all",
                      "--iterations", "100", "--top", "5"], check=True, capture_output=True, text=True).stdout
print(hvp)
top = [float(line.split()[1]) for line in hvp.splitlines() if line.strip()[:1].isdigit() and "+-" in line]
small = float(hvp.split("smallest Ritz value")[1].split()[0])
cond = float(hvp.split("lambda_max / lambda_min:")[1].split()[0])
check(len(top) == 5 and np.allclose(top, eig[::-1][:5], rtol=1e-5), f"Lanczos's top 5 eigenvalues are Q's: {top}")
check(abs(small - eig[0]) < 1e-3 * eig[0], f"the smallest: {small} (Q's {eig[0]:.6f})")
check(abs(cond - eig[-1] / eig[0]) < 1e-3 * eig[-1] / eig[0], f"the condition number: {cond} (Q's {eig[-1] / eig[0]:.1f})")
check("100 weights" in hvp, "the Hessian is over theta's 100 weights (S is not trained)")

# ---- gradcheck, and the model as shipped ----
gc = subprocess.run([nnc, "gradcheck", model], capture_output=True, text=True)
print(gc.stdout[-400:])
check(gc.returncode == 0, "nnc gradcheck passes")
run = f"{out}/shipped"
subprocess.run([nnc, "train", model, "--set", "epochs=3", "--out", run, "--no-progress"], check=True, stdout=subprocess.DEVNULL)
lines = metrics(run)
first, last = split_loss(lines, "test", 0), split_loss(lines, "test", 3)
floor = loss(xbar, d["test_x"])  # the test loss at the training set's optimum
check(first > 3 * floor and floor < last < 1.3 * floor, f"3 epochs of SGD (batch 128): test loss {first:.2f} -> {last:.2f} "
      f"(at the training optimum: {floor:.2f})")

# ---- an init file of the wrong shape ----
np.save(f"{out}/data/quadratic_deep_sqrt_q.npy", np.zeros((100, 99), np.float32))
bad = subprocess.run([nnc, "train", model, "--out", f"{out}/bad", "--no-progress"], capture_output=True, text=True)
want = (f"nnc: error: {out}/data/quadratic_deep_sqrt_q.npy: the init of weight 'z.weight' must be f32[100,100], "
        "but the file holds f32[100,99]")
print(bad.stderr.strip())
check(bad.returncode != 0 and want in bad.stderr and "Sanitizer" not in bad.stderr, "a wrong-shaped init file is refused")
finish()
