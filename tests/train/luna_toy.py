"""luna_toy.py NNC OUTDIR: workload 4 end to end, LUNA against the neural linear model.

Trains models/luna_toy.nn (50 auxiliary heads, the diversity of their finite-difference
input-gradients) and models/nlm_toy.nn (one head) for their 10,000 iterations, each then fitting
its bayes_linear head; a trainer built from each predicts the head's mean and sd on the test grid
over [-5, 5] (models/data/luna_toy_grid.csv).  Checks: each head fits the data (training RMSE
below 4, the noise's sd being 3); the head's own uncertainty, sqrt(sd^2 - 1 / beta) (the
predictive sd less the noise), is at least twice NLM's inside the gap (-2, 2) and at most 1.5
times NLM's on the data; the run's metrics.jsonl holds the head's line.  (bench/luna_toy.py
reports the same figures, with the predictive sd and a plot.)"""
import json
import os
import subprocess
import sys

import numpy as np

from checks import check, finish  # tests/train/checks.py

nnc, out = sys.argv[1], os.path.abspath(sys.argv[2])
root = os.getcwd()  # the repository
grid = np.loadtxt(f"{root}/models/data/luna_toy_grid.csv", skiprows=1)
gap, data = np.abs(grid) < 2, (np.abs(grid) >= 2) & (np.abs(grid) <= 4)
result = {}
for name in ("luna_toy", "nlm_toy"):
    model, run, trainer = f"{root}/models/{name}.nn", f"{out}/{name}", f"{out}/{name}.tr"
    r = subprocess.run([nnc, "train", model, "--out", run, "--no-progress", "--checkpoint-every", "0"], capture_output=True, text=True)
    check(r.returncode == 0, f"{name} trains and fits its head (exit {r.returncode}) {r.stderr[-400:]}")
    if r.returncode:
        continue
    head = [json.loads(line) for line in open(f"{run}/metrics.jsonl") if '"event":"head"' in line]
    check(len(head) == 1 and head[0]["train_rmse"] < 4, f"{name}: the head fits the data: training RMSE "
          f"{head[0]['train_rmse'] if head else None}")
    subprocess.run([nnc, "build", model, "-o", trainer], check=True, capture_output=True)
    p = subprocess.run([trainer, "predict", "--checkpoint", f"{run}/checkpoint.safetensors", "--input",
                        f"{root}/models/data/luna_toy_grid.csv", "--output", f"{out}/{name}.csv"], capture_output=True, text=True)
    check(p.returncode == 0, f"{name}: predict on the grid {p.stderr[-300:]}")
    if p.returncode == 0:
        sd = np.loadtxt(f"{out}/{name}.csv", delimiter=",", skiprows=1)[:, 1]
        epistemic = np.sqrt(np.maximum(sd ** 2 - 1 / head[0]["beta"], 0))
        result[name] = (epistemic[gap].mean(), epistemic[data].mean(), sd[gap].mean(), sd[data].mean())
if len(result) == 2:
    (lg, ld, lsg, lsd), (ng, nd, nsg, nsd) = result["luna_toy"], result["nlm_toy"]
    check(lg >= 2 * ng, f"inside the gap LUNA's head is at least twice as uncertain as NLM's: {lg:.3f} against {ng:.3f} "
          f"({lg / ng:.2f}x; with the noise, sd {lsg:.3f} against {nsg:.3f})")
    check(ld <= 1.5 * nd, f"on the data at most 1.5 times: {ld:.3f} against {nd:.3f} ({ld / nd:.2f}x; sd {lsd:.3f} against {nsd:.3f})")
finish()
