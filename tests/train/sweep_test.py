"""sweep_test.py NNC OUTDIR: `nnc sweep` writes what DeepOBS reads, resumes, and refuses bad grids.

A two-blob classifier (CSV) swept over lr = 0.01, 0.1 with 2 seeds for 2 epochs.  Every run file
is checked against tests/train/deepobs_schema.json (written from DeepOBS's sources): its keys and
their types, num_epochs + 1 values per list, the setting folder's and the file's names, nothing
else in the tree.  Then: a second sweep skips every run; a sweep stopped by SIGTERM in its first
run resumes it and ends with the same losses as the uninterrupted sweep; an unknown key (with the
nearest name), an empty grid and a non-positive learning rate are refused before anything runs; a
run that diverges is marked FAILED and the sweep goes on.  The sweep draws its two figures as PNG
when /usr/bin/python3 has matplotlib, and otherwise says how.
Standard library only."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish  # noqa: E402

nnc, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
schema = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "deepobs_schema.json")))
rows = []
for i in range(240):  # two blobs in 2-D, deterministic
    c = i % 2
    x, y = ((i * 7919) % 97) / 97 - 0.5, ((i * 104729) % 89) / 89 - 0.5
    rows.append(f"{x + (1.2 if c else -1.2):.5f},{y + (0.8 if c else -0.8):.5f},{c}")
open(f"{out}/blobs.csv", "w").write("\n".join(rows) + "\n")
open(f"{out}/blobs.nn", "w").write("""model blobs
input  x : f32[2]
target y : class[2]
logits = x -> dense(8) -> tanh -> dense(2)
loss   cross_entropy(logits, y)
metric accuracy(logits, y)
train {
  data csv("blobs.csv", target = last)
  test csv("blobs.csv", target = last)
  batch 16
  epochs 2
  optimizer momentum(lr = 0.01)
  seed 42
}
""")


def sweep(where, *extra, env=None):
    return subprocess.run([nnc, "sweep", f"{out}/blobs.nn", "--grid", "lr=0.01,0.1", "--seeds", "2", "--out", where, *extra],
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def typed(v, t):
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "number or null":
        return v is None or typed(v, "number")
    if t == "object":
        return isinstance(v, dict)
    if t == "list or null":
        return v is None or isinstance(v, list)
    if t == "list of numbers":
        return isinstance(v, list) and all(typed(x, "number") for x in v)
    raise ValueError(t)


r = sweep(f"{out}/full")
check(r.returncode == 0, f"the sweep runs (status {r.returncode}){r.stderr[-300:]}")
files, stray = [], []
for root, dirs, names in os.walk(f"{out}/full"):
    depth = os.path.relpath(root, f"{out}/full").count(os.sep) + (root != f"{out}/full")
    for n in names:
        if depth == 0 and n in ("blobs_learning_curves.png", "blobs_lr_sensitivity.png"):
            continue  # the figures (below)
        (files if depth == 3 else stray).append(os.path.join(root, n))
    if depth == 3:
        stray += [os.path.join(root, d) for d in dirs]
check(len(files) == 4 and not stray, f"4 run files, each at <testproblem>/<optimizer>/<setting>/ and nothing else ({len(files)}, {stray})")
want = {"num_epochs__2__batch_size__16__lr__1.e-02__momentum__9.e-01__nesterov__False__weight_decay__0.e+00",
        "num_epochs__2__batch_size__16__lr__1.e-01__momentum__9.e-01__nesterov__False__weight_decay__0.e+00"}
got = {os.path.basename(os.path.dirname(f)) for f in files}
check(got == want, f"the setting folders' names, sorted by key, float2str values ({sorted(got)})")
for f in files:
    tp, opt, setting, name = f.split(os.sep)[-4:]
    d = json.load(open(f))
    bad = [k for k, t in {**schema["required"], **schema["with_accuracy"]}.items() if k not in d or not typed(d[k], t)]
    lengths = {k: len(d[k]) for k in schema["per_epoch"]}
    ok = (not bad and all(n == d["num_epochs"] + 1 for n in lengths.values()) and re.match(schema["setting"], setting)
          and re.match(schema["file"], name) and tp == d["testproblem"] == "blobs" and opt == d["optimizer"] == "momentum"
          and "lr" not in d["hyperparams"] and d["optimizer_hyperparams"]["lr"] == d["learning_rate"]
          and name.startswith(f"random_seed__{d['random_seed']}__") and d["random_seed"] in (42, 43))
    check(ok, f"{os.path.relpath(f, out)}: the schema's keys and types, {lengths}, its names ({bad})")

plotting = subprocess.run(["/usr/bin/python3", "-c", "import matplotlib, numpy"], capture_output=True).returncode == 0
pngs = [f"{out}/full/blobs_{k}.png" for k in ("learning_curves", "lr_sensitivity")]
if plotting:
    check(all(os.path.exists(p) and open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in pngs) and "wrote " in r.stdout,
          "the sweep draws its figures: learning curves and learning-rate sensitivity, as PNG")
else:
    check(not any(os.path.exists(p) for p in pngs) and "figures: not drawn: they need /usr/bin/python3 with matplotlib" in r.stdout,
          "without matplotlib the sweep says how to draw its figures")
r = sweep(f"{out}/nofig", env={**os.environ, "NNC_PYTHON": "/nonexistent/python3"})
check(r.returncode == 0 and "figures: not drawn: they need /nonexistent/python3 with matplotlib" in r.stdout
      and not os.path.exists(f"{out}/nofig/blobs_lr_sensitivity.png"), "an interpreter that is missing: a note, not a failure")

r = sweep(f"{out}/full")
check(r.returncode == 0 and "0 runs done now, 4 done before" in r.stdout, "a second sweep skips every finished run")

r = sweep(f"{out}/part", env={"NNC_TEST_SIGNAL_AT": "1:3"})
again = sweep(f"{out}/part")
check(r.returncode == 143 and "(resuming)" in again.stdout and again.returncode == 0,
      f"stopped in its first run (status {r.returncode}), the sweep resumes it and finishes")


def losses(where):
    res = {}
    for root, _, names in os.walk(where):
        for n in (n for n in names if n.endswith(".json")):
            d = json.load(open(os.path.join(root, n)))
            res[(os.path.basename(root), d["random_seed"])] = (d["train_losses"], d["test_losses"], d["test_accuracies"])
    return res


check(losses(f"{out}/full") == losses(f"{out}/part"), "the resumed sweep's losses and accuracies equal the uninterrupted one's")

# a run that diverges is noted (FAILED) and the sweep goes on; started again, it is not retried
div = [nnc, "sweep", f"{out}/blobs.nn", "--grid", "lr=0.01,1e37", "--out", f"{out}/div"]
r1 = subprocess.run(div, capture_output=True, text=True)
r2 = subprocess.run(div, capture_output=True, text=True)
jsons = [n for _, _, names in os.walk(f"{out}/div") for n in names if n.endswith(".json")]
empty = [r for r, ds, ns in os.walk(f"{out}/div") if not ds and not ns]
check(r1.returncode == 1 and "failed (status 1" in r1.stdout and "NaN" in r1.stderr and len(jsons) == 1 and
      r2.returncode == 1 and "failed before" in r2.stdout and not empty,
      f"lr=1e37 diverges: noted, the other run published, no empty setting folder (DeepOBS's analyzer fails on one), "
      f"not retried ({r1.returncode}, {r2.returncode}, {len(jsons)} file, {empty})")

for grid, msg in (("momentm=0.5", "did you mean 'momentum'?"), ("lr=", "the grid is empty"),
                  ("lr=logspace(1e-3,1,0)", "the grid is empty"), ("lr=0,0.1", "the learning rate must be positive, got 0")):
    r = subprocess.run([nnc, "sweep", f"{out}/blobs.nn", "--grid", grid, "--out", f"{out}/bad"], capture_output=True, text=True)
    check(r.returncode == 2 and msg in r.stderr and not os.path.exists(f"{out}/bad"),
          f"--grid {grid}: refused before any run: {r.stderr.strip()}")
finish()
