"""csv_targets.py NNC OUTDIR: a CSV file with several named target columns.

One file holds the input's columns and two targets' columns interleaved (a, mass, b, spin, c);
`csv("d.csv", mass = "mass", spin = 3)` names one target's column by its header and the other's
by its index, and the columns left over are the input, in order.  Checks: the model trains to
per-head RMSEs near the noise (0.1); its metrics.jsonl equals, line for line (timing apart), a
twin's that reads the same float32 values from npy(x = ..., mass = ..., spin = ...), so every
column went where it belongs; a target column the header lacks fails with a message naming the
file and the column; the columns of two targets that overlap fail likewise."""
import json
import os
import subprocess
import sys

import numpy as np

from checks import check, finish  # tests/train/checks.py

nnc, out = sys.argv[1], os.path.abspath(sys.argv[2])
rng = np.random.default_rng(1)
n = 600
x = rng.normal(size=(n, 3)).astype(np.float32)
mass = (x @ np.array([1, 2, -1], np.float32) + 0.1 * rng.normal(size=n)).astype(np.float32)
spin = (0.5 * x[:, 0] - x[:, 2] + 0.1 * rng.normal(size=n)).astype(np.float32)
with open(f"{out}/d.csv", "w") as f:
    f.write("a,mass,b,spin,c\n")
    for i in range(n):  # %.9g gives every float32 back exactly
        f.write(",".join("%.9g" % v for v in (x[i, 0], mass[i], x[i, 1], spin[i], x[i, 2])) + "\n")
np.save(f"{out}/x.npy", x)
np.save(f"{out}/mass.npy", mass[:, None])
np.save(f"{out}/spin.npy", spin[:, None])
MODEL = """model mc
input  x    : f32[3]
target mass : f32[1]
target spin : f32[1]
h = x -> dense(16) -> relu
m = h -> dense(1)
s = h -> dense(1)
loss   mse(m, mass) + mse(s, spin)
metric rmse(m, mass), rmse(s, spin)
train {
  data      DATA
  valid     0.2 of train
  epochs    30
  optimizer adam(lr = 0.01)
}
"""
sources = {"csv": 'csv("d.csv", mass = "mass", spin = 3)', "npy": 'npy(x = "x.npy", mass = "mass.npy", spin = "spin.npy")',
           "nocol": 'csv("d.csv", mass = "mass", spin = "spinn")', "overlap": 'csv("d.csv", mass = "mass", spin = 1)'}
runs = {}
for name, src in sources.items():
    with open(f"{out}/{name}.nn", "w") as f:
        f.write(MODEL.replace("DATA", src))
    r = subprocess.run([nnc, "train", f"{out}/{name}.nn", "--out", f"{out}/{name}", "--no-progress"], capture_output=True, text=True)
    lines = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl")] if r.returncode == 0 else []
    runs[name] = (r, [{k: v for k, v in l.items() if k not in ("samples_per_s", "time_s")} for l in lines])

r, lines = runs["csv"]
valid = [l for l in lines if l.get("split") == "valid"]
check(r.returncode == 0 and len(valid) == 30, f"csv with two named target columns trains (exit {r.returncode}) {r.stderr[-300:]}")
if valid:
    check(valid[-1]["mass.rmse"] < 0.2 and valid[-1]["spin.rmse"] < 0.2,
          f"per-head RMSE near the noise: mass {valid[-1]['mass.rmse']:.4f}, spin {valid[-1]['spin.rmse']:.4f}")
check(lines and lines == runs["npy"][1], "the same metrics.jsonl as the npy twin, line for line")
r = runs["nocol"][0]
check(r.returncode != 0 and f"{out}/d.csv:1: the header has no column named 'spinn'" in r.stderr,
      f"a column the header lacks: {r.stderr.strip()[-200:]}")
r = runs["overlap"][0]
check(r.returncode != 0 and f"{out}/d.csv: column 1 holds both target 'mass' and target 'spin'" in r.stderr,
      f"overlapping target columns: {r.stderr.strip()[-200:]}")
finish()
