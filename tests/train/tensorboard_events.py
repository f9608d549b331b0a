"""tensorboard_events.py NNC OUTDIR: the TensorBoard event file `train` writes, read back.

A gated classifier (CSV blobs) trains 4 epochs with a learning-rate schedule and pruning.  The
event file in its run folder is parsed here from the format's definition, without TensorFlow:
TFRecords (length, masked CRC-32C of the length, payload, masked CRC-32C of the payload), each
payload an Event protocol buffer (decoded field by field).  Checks: every record's checksums;
the first event's file version; every number of every metrics.jsonl line is a scalar
"<split>/<key>" at the line's step with the same float32 value, and nothing else is; the
weights' histograms (one per weight per epoch) count every element, their buckets add up, and
the last epoch's extremes and sum are the checkpoint's; --histograms 0, --no-tensorboard and
--tensorboard DIR do what they say.  With TB_PYTHON naming an interpreter that has the
`tensorboard` package (PyPI), TensorBoard's own EventAccumulator loads the file too and must
see the same scalars and histogram counts (skipped, and said, otherwise)."""
import glob
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "checkpoint"))
from st_numpy import read  # noqa: E402
from checks import check, finish  # noqa: E402
from pb_read import fields  # noqa: E402

nnc, out = sys.argv[1], sys.argv[2]
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
rng = np.random.default_rng(5)
y = rng.integers(0, 2, 600)
x = rng.normal(size=(600, 3)) + 1.5 * (2 * y[:, None] - 1)
np.savetxt(f"{out}/blobs.csv", np.c_[x, y], delimiter=",", fmt=["%.5f"] * 3 + ["%d"])
open(f"{out}/m.nn", "w").write("""model tb
input  x : f32[3]
target y : class[2]
param  lambda = 0.3
h      = x -> dense(16) -> relu -> gate(l1 = lambda)
logits = h -> dense(2)
loss   cross_entropy(logits, y)
metric accuracy(logits, y)
train {
  data csv("blobs.csv") valid 0.2 of train batch 32 epochs 4 optimizer sgd(lr = 0.1)
  schedule lr = step(every = 2 epochs, gamma = 0.5)
  prune gates every epoch
}
""")


def crc32c(data):
    c = 0xFFFFFFFF
    for byte in data:
        c ^= byte
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def masked(c):
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def events(path):
    raw, i, bad, res = open(path, "rb").read(), 0, 0, []
    while i < len(raw):
        head = raw[i:i + 8]
        n = struct.unpack("<Q", head)[0]
        crc_len, = struct.unpack("<I", raw[i + 8:i + 12])
        data = raw[i + 12:i + 12 + n]
        crc_data, = struct.unpack("<I", raw[i + 12 + n:i + 16 + n])
        bad += masked(crc32c(head)) != crc_len or masked(crc32c(data)) != crc_data
        i += 16 + n
        ev = {"step": 0}
        for f, w, v in fields(data):
            if f == 1:
                ev["wall_time"] = struct.unpack("<d", v)[0]
            elif f == 2:
                ev["step"] = v
            elif f == 3:
                ev["file_version"] = v.decode()
            elif f == 5:
                for _, _, val in fields(v):  # Summary.value
                    d = {ff: vv for ff, _, vv in fields(val)}
                    ev["tag"] = d[1].decode()
                    if 2 in d:
                        ev["scalar"] = struct.unpack("<f", d[2])[0]
                    if 5 in d:
                        h = {ff: vv for ff, _, vv in fields(d[5])}
                        ev["histo"] = {k: struct.unpack("<d", h[j])[0] for j, k in enumerate(("min", "max", "num", "sum", "sum_squares"), 1)}
                        ev["histo"]["limits"] = list(struct.unpack(f"<{len(h[6]) // 8}d", h[6]))
                        ev["histo"]["counts"] = list(struct.unpack(f"<{len(h[7]) // 8}d", h[7]))
        res.append(ev)
    return res, bad


def train(run, *extra):
    return subprocess.run([nnc, "train", f"{out}/m.nn", "--out", run, "--no-progress", *extra], capture_output=True, text=True)


r = train(f"{out}/run")
check(r.returncode == 0, f"trains ({r.stderr[-300:]})")
files = glob.glob(f"{out}/run/events.out.tfevents.*")
check(len(files) == 1, f"one event file in the run folder: {[os.path.basename(f) for f in files]}")
evs, bad = events(files[0])
check(bad == 0 and len(evs) > 1, f"{len(evs)} records, every length and payload checksum right ({bad} wrong)")
check(evs[0].get("file_version") == "brain.Event:2", f"the first event gives the file version ({evs[0].get('file_version')})")

want = {}
for line in open(f"{out}/run/metrics.jsonl"):
    o = json.loads(line)
    prefix = o.get("split") or o.get("event") or ""

    def walk(d, pre):
        for k, v in d.items():
            tag = f"{pre}/{k}" if pre else k
            if isinstance(v, dict):
                walk(v, tag)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch", "step"):
                want[(tag, o["step"])] = float(np.float32(v))
    walk(o, prefix)
got = {(e["tag"], e["step"]): e["scalar"] for e in evs if "scalar" in e}
check(got == want, f"the scalars are metrics.jsonl's numbers, tag <split>/<key> at their step: {len(got)} of {len(want)} "
      f"(missing {sorted(set(want) - set(got))[:4]}, extra {sorted(set(got) - set(want))[:4]})")
tags = {t for t, _ in got}
check({"train/lr", "valid/accuracy", "valid/h.live", "train/loss", "prune/widths/h"} <= tags,
      f"among them the schedule's lr, a metric, the gate's live width and the pruning event ({sorted(tags)[:12]} ...)")

hist = [e for e in evs if "histo" in e]
weights, _ = read(f"{out}/run/checkpoint.safetensors")
names = sorted(k for k in weights if "." in k and not k.endswith(("_m", "_v", ".momentum")))
steps = sorted({e["step"] for e in hist})
check(len(steps) == 4 and {e["tag"] for e in hist} == {f"weights/{n}" for n in names},
      f"a histogram of each weight ({names}) after each of the 4 epochs (steps {steps})")
ok = all(h["histo"]["num"] == sum(h["histo"]["counts"]) and len(h["histo"]["limits"]) == len(h["histo"]["counts"]) for h in hist)
last = {e["tag"][8:]: e["histo"] for e in hist if e["step"] == steps[-1]}
for n in names:
    w = weights[n].astype(np.float64).ravel()
    h = last[n]
    ok &= h["num"] == w.size and h["min"] == w.min() and h["max"] == w.max() and abs(h["sum"] - w.sum()) <= 1e-6 * max(1, np.abs(w).sum())
check(ok, "every histogram counts every element in its buckets; the last ones' sizes, extremes and sums are the checkpoint's")

r = train(f"{out}/nohist", "--histograms", "0")
evs2, _ = events(glob.glob(f"{out}/nohist/events.out.tfevents.*")[0])
check(r.returncode == 0 and not any("histo" in e for e in evs2) and any("scalar" in e for e in evs2), "--histograms 0: scalars only")
r = train(f"{out}/none", "--no-tensorboard")
check(r.returncode == 0 and not glob.glob(f"{out}/none/events.out.tfevents.*"), "--no-tensorboard: no event file")
r = train(f"{out}/else", "--tensorboard", f"{out}/tb/else")
check(r.returncode == 0 and glob.glob(f"{out}/tb/else/events.out.tfevents.*") and not glob.glob(f"{out}/else/events.out.*"),
      "--tensorboard DIR: the event file goes there")

tb_python = os.environ.get("TB_PYTHON")
if tb_python:
    probe = """
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0})
acc.Reload()
sc = {f"{t}@{e.step}": e.value for t in acc.Tags()["scalars"] for e in acc.Scalars(t)}
hi = {f"{t}@{e.step}": e.histogram_value.num for t in acc.Tags()["histograms"] for e in acc.Histograms(t)}
print(json.dumps({"scalars": sc, "histograms": hi}))
"""
    p = subprocess.run([tb_python, "-c", probe, f"{out}/run"], capture_output=True, text=True)
    if p.returncode:
        print(p.stderr[-2000:])
    tbv = json.loads(p.stdout) if p.returncode == 0 else {"scalars": {}, "histograms": {}}
    mine = {f"{t}@{s}": v for (t, s), v in got.items()}
    check(tbv["scalars"] == mine, f"TensorBoard's EventAccumulator reads the same {len(tbv['scalars'])} scalars")
    check(tbv["histograms"] == {f"{e['tag']}@{e['step']}": e["histo"]["num"] for e in hist},
          f"and the same {len(tbv['histograms'])} histograms with their counts")
else:
    print("(TB_PYTHON unset: TensorBoard's own reader not run; bench/README.md records a run with it)")
finish()
