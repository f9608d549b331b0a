"""several_inputs.py NNC OUTDIR: a model with two inputs, trained and predicted.

The inputs a and b meet by tensor arithmetic (a + b * 0.5) before a small network; the data
comes from npy(a = ..., b = ..., y = ...).  Checks: it trains (test RMSE below 0.3, the noise
0.1); a built trainer's `predict --input a=A.npy --input b=B.npy` writes predictions whose RMSE
NumPy computes equal to training's test RMSE; the arrays reach their inputs by name (a and b
swapped predict otherwise); a plain --input, a name the model lacks, a name given twice and an
input left out are refused, naming the inputs; `--data DIR` reads the arrays from another
directory by name, to the same metrics."""
import json
import os
import subprocess
import sys

import numpy as np

from checks import check, finish  # tests/train/checks.py

nnc, out = sys.argv[1], os.path.abspath(sys.argv[2])
rng = np.random.default_rng(7)
for split, n in (("", 600), ("t", 200)):
    a = rng.normal(size=(n, 3)).astype(np.float32)
    b = rng.normal(size=(n, 3)).astype(np.float32)
    y = (np.tanh(a + 0.5 * b) @ np.array([1.0, -1.0, 0.5]) + 0.1 * rng.normal(size=n)).astype(np.float32)[:, None]
    for name, v in (("a", a), ("b", b), ("y", y)):
        np.save(f"{out}/{split}{name}.npy", v)
with open(f"{out}/two.nn", "w") as f:
    f.write("""model two_inputs
input  a : f32[3]
input  b : f32[3]
target y : f32[1]
h   = (a + b * 0.5) -> dense(32) -> tanh
out = h -> dense(1)
loss   mse(out, y)
metric rmse(out, y)
train {
  data      npy(a = "a.npy", b = "b.npy", y = "y.npy")
  test      npy(a = "ta.npy", b = "tb.npy", y = "ty.npy")
  batch     50
  epochs    40
  optimizer adam(lr = 0.01)
}
""")
r = subprocess.run([nnc, "train", f"{out}/two.nn", "--out", f"{out}/run", "--no-progress"], capture_output=True, text=True)
test = [json.loads(l) for l in open(f"{out}/run/metrics.jsonl") if '"test"' in l] if r.returncode == 0 else []
check(r.returncode == 0 and test and test[-1]["rmse"] < 0.3, f"two inputs train: test rmse {test[-1]['rmse'] if test else None} "
      f"{r.stderr[-300:]}")
subprocess.run([nnc, "build", f"{out}/two.nn", "-o", f"{out}/trainer"], check=True, capture_output=True)


def predict(*inputs, output="pred.npy"):
    args = [f"{out}/trainer", "predict", "--checkpoint", f"{out}/run/checkpoint.safetensors", "--output", f"{out}/{output}"]
    for i in inputs:
        args += ["--input", i]
    return subprocess.run(args, capture_output=True, text=True)


r = predict(f"a={out}/ta.npy", f"b={out}/tb.npy")
p = np.load(f"{out}/pred.npy")[:, 0] if r.returncode == 0 else np.zeros(200)
ty = np.load(f"{out}/ty.npy")[:, 0]
rmse = float(np.sqrt(np.mean((p - ty) ** 2)))
check(r.returncode == 0 and test and abs(rmse - test[-1]["rmse"]) <= 1e-5,
      f"predict with --input a=... --input b=...: NumPy's rmse {rmse:.7f} is training's {test[-1]['rmse'] if test else None}")
r = predict(f"b={out}/ta.npy", f"a={out}/tb.npy", output="swapped.npy")
check(r.returncode == 0 and not np.allclose(np.load(f"{out}/swapped.npy")[:, 0], p), "the arrays reach their inputs by name")
r = predict(f"{out}/ta.npy")
check(r.returncode != 0 and "the model has 2 inputs (a, b): give each as --input NAME=FILE.npy" in r.stderr,
      f"a plain --input: {r.stderr.strip()}")
r = predict(f"a={out}/ta.npy", f"c={out}/tb.npy")
check(r.returncode != 0 and "'c' is not an input of the model, or is given twice (its inputs: a, b)" in r.stderr,
      f"an unknown input: {r.stderr.strip()}")
r = predict(f"a={out}/ta.npy", f"a={out}/tb.npy")
check(r.returncode != 0 and "'a' is not an input of the model, or is given twice" in r.stderr, f"an input twice: {r.stderr.strip()}")
# --data DIR: the same arrays from another directory, by their inputs' and target's names
os.makedirs(f"{out}/other", exist_ok=True)
for name in ("a", "b", "y"):
    np.save(f"{out}/other/{name}.npy", np.load(f"{out}/{name}.npy"))
r = subprocess.run([nnc, "train", f"{out}/two.nn", "--data", f"{out}/other", "--out", f"{out}/other_run", "--no-progress"],
                   capture_output=True, text=True)
other = [json.loads(l) for l in open(f"{out}/other_run/metrics.jsonl") if '"test"' in l] if r.returncode == 0 else []
check(r.returncode == 0 and [t["rmse"] for t in other] == [t["rmse"] for t in test],
      f"--data DIR reads a.npy, b.npy and y.npy there: the same test metrics {r.stderr[-200:]}")
os.remove(f"{out}/other/b.npy")
r = subprocess.run([nnc, "train", f"{out}/two.nn", "--data", f"{out}/other", "--out", f"{out}/other_run2"], capture_output=True,
                   text=True)
check(r.returncode != 0 and f"--data {out}/other: no array for 'b': {out}/other/b.npy does not exist" in r.stderr, f"--data DIR without one of the arrays: {r.stderr.strip()}")
r = predict(f"a={out}/ta.npy")
check(r.returncode != 0 and "predict has no array for input 'b'; add --input b=FILE.npy" in r.stderr,
      f"an input missing: {r.stderr.strip()}")
finish()
