"""multihead.py NNC OUTDIR: a model with several targets, end to end (workload 3's data).

models/data/make_ringdown.py writes its data into OUTDIR; models/ringdown_dense.nn and
models/ringdown_vi.nn (copied beside it) train for a few hundred steps from npy(...) sources of
three named arrays.  Checks: metrics.jsonl reports every metric per head (mass.rmse, ...) and
they fall from the first epoch to the last; a stopping rule on one head's metric stops the run;
a built trainer's `predict` writes both heads side by side, and the test relative error and RMSE computed from
those predictions by NumPy equal what training reported; a data file of the wrong shape and
one of the wrong length fail with texts that name the file, the target and what was expected."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from checks import check, finish  # tests/train/checks.py

nnc, out = sys.argv[1], os.path.abspath(sys.argv[2])
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
data = os.path.join(out, "data")
subprocess.run([sys.executable, os.path.join(root, "models/data/make_ringdown.py"), data], check=True)
for m in ("ringdown_dense", "ringdown_vi"):
    shutil.copy(os.path.join(root, f"models/{m}.nn"), out)


def train(model, run, *extra):
    r = subprocess.run([nnc, "train", f"{out}/{model}.nn", "--out", f"{out}/{run}", "--no-progress", *extra],
                       capture_output=True, text=True)
    lines = []
    if os.path.exists(f"{out}/{run}/metrics.jsonl"):
        lines = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl")]
    return r, lines


def evals(lines, split):
    return [l for l in lines if l.get("split") == split]


for model in ("ringdown_dense", "ringdown_vi"):
    # 3 epochs of 116 steps; ringdown_vi evaluated every epoch over 4 draws, not every 10 over 32
    # (tests/train/vi_draws.py tests the draws)
    r, lines = train(model, model, "--set", "iterations=348",
                     *(["--set", "samples=4", "--set", "eval_every=116"] if model == "ringdown_vi" else []))
    check(r.returncode == 0, f"{model} trains 348 steps (exit {r.returncode}) {r.stderr[-400:]}")
    valid = evals(lines, "valid")
    keys = ("mass.relative_error", "mass.rmse", "spin.relative_error", "spin.rmse")
    check(len(valid) == 3 and all(k in v and np.isfinite(v[k]) for v in valid for k in keys),
          f"{model}: every evaluation reports each head's metrics {list(valid[-1]) if valid else None}")
    if model == "ringdown_vi":
        check(all(0 < v[f"{h}.coverage95"] <= 1 for v in valid for h in ("mass", "spin")) and all(v["kl"] > 0 for v in valid),
              f"ringdown_vi: every evaluation reports each head's coverage95 and the KL {valid[-1] if valid else None}")
    if len(valid) == 3:
        first, last = valid[0], valid[-1]
        check(all(last[k] < first[k] for k in keys), f"{model}: each head's metrics fall over 3 epochs: "
              + ", ".join(f"{k} {first[k]:.4f} -> {last[k]:.4f}" for k in keys))
        check(last["mass.relative_error"] < 0.15 and last["spin.relative_error"] < 0.3,
              f"{model}: after 3 epochs mass relative error {last['mass.relative_error']:.4f} < 0.15, "
              f"spin {last['spin.relative_error']:.4f} < 0.3")

# predict writes both heads; NumPy's metrics of those predictions are training's test metrics
test = evals(train("ringdown_dense", "ringdown_dense", "--set", "iterations=348")[1], "test")
subprocess.run([nnc, "build", f"{out}/ringdown_dense.nn", "-o", f"{out}/trainer"], check=True, capture_output=True)
r = subprocess.run([f"{out}/trainer", "predict", "--checkpoint", f"{out}/ringdown_dense/checkpoint.safetensors", "--input",
                    f"{data}/ringdown_test_x.npy", "--output", f"{out}/pred.csv"], capture_output=True, text=True)
check(r.returncode == 0 and "mass in column 0, spin in column 1" in r.stdout, f"predict writes both heads: {r.stdout.strip()} {r.stderr[-300:]}")
if r.returncode == 0 and test:
    header = open(f"{out}/pred.csv").readline().strip()
    check(header == "mass.out0,spin.out0", f"the CSV header names each head's column: {header}")
    p = np.loadtxt(f"{out}/pred.csv", delimiter=",", skiprows=1)
    for k, name in enumerate(("mass", "spin")):
        y = np.load(f"{data}/ringdown_test_{name}.npy")[:, 0].astype(np.float64)
        rel = np.mean(np.abs(p[:, k] - y) / np.abs(y))
        rmse = np.sqrt(np.mean((p[:, k] - y) ** 2))
        t = test[-1]
        check(abs(rel - t[f"{name}.relative_error"]) < 1e-5 * max(1, rel) and abs(rmse - t[f"{name}.rmse"]) < 1e-5,
              f"{name}: NumPy on predict's output, relative error {rel:.6f} rmse {rmse:.6f}; training's test "
              f"{t[f'{name}.relative_error']:.6f} {t[f'{name}.rmse']:.6f}")

# a stopping rule on one head's metric
src = open(f"{out}/ringdown_dense.nn").read()
stop = src.replace("stop      when valid.mass.relative_error < 0.026 and valid.spin.relative_error < 0.0016 or patience 10",
                   "stop      when valid.mass.relative_error < 0.5")
assert stop != src
open(f"{out}/stop.nn", "w").write(stop)
r, lines = train("stop", "stop")
stops = [l for l in lines if l.get("event") == "stop"]
check(r.returncode == 0 and len(evals(lines, "valid")) == 1 and len(stops) == 1 and "mass.relative_error" in stops[0]["reason"],
      f"`stop when valid.mass.relative_error < 0.5` stops after the first epoch: {len(evals(lines, 'valid'))} evaluations, {stops}")

# bad arrays: the wrong number of values per sample, and the wrong number of samples
np.save(f"{data}/ringdown_train_mass.npy", np.zeros((8192, 2), np.float32))
r, _ = train("ringdown_dense", "bad1")
want = (f"nnc: error: {data}/ringdown_train_mass.npy: 8192 samples of shape [2] (2 values each), "
        f"but target 'mass' is f32[1] (1 value)")
check(r.returncode != 0 and r.stderr.strip() == want, f"a target array of the wrong shape: {r.stderr.strip()}")
np.save(f"{data}/ringdown_train_mass.npy", np.zeros((100, 1), np.float32))
r, _ = train("ringdown_dense", "bad2")
want = (f"nnc: error: {data}/ringdown_train_mass.npy: 100 samples, but {data}/ringdown_train_x.npy has 8192; "
        f"every array of a data set has one row per sample")
check(r.returncode != 0 and r.stderr.strip() == want, f"arrays of different lengths: {r.stderr.strip()}")
finish()
