"""blocks.py NNC OUTDIR: blocks expand into the network written out by hand.

A model written with blocks (a block calling another, a number and a param passed through,
defaults, two calls of one block in a binding, a call with the input as its first argument)
and its twin with every call written out by hand train to the same losses and accuracies,
epoch by epoch, bit for bit: a block adds layers as the hand does, in the same order, so the
seeded initialisation and every step are the same.  Also: the block model's checkpoint names
its weights through the calls (trunk.r.weight, logits.pair1.a.weight, ...), `--init` takes
them back, `nnc check`'s layer table shows the instances, and `--set` reaches a param passed
into a block by name.  And the library (stdlib/): a model calling its mlp trains, names its
weights through the call, builds into a trainer that carries the library, and does not resume
a run after its library changed."""
import json
import os
import struct
import subprocess
import sys

from checks import check, finish  # tests/train/checks.py

nnc, out = sys.argv[1], os.path.abspath(sys.argv[2])

with open(f"{out}/blobs.csv", "w") as f:  # two blobs in 4-D, labels 0/1 (a fixed LCG)
    s = 12345
    for i in range(400):
        row = []
        for k in range(4):
            s = (s * 1103515245 + 12345) % 2**31
            row.append((1.2 if i % 2 else -1.2) + (s / 2**31 - 0.5) * 3)
        f.write(",".join(f"{v:.5f}" for v in row) + f",{i % 2}\n")

HEAD = """model {name}
param  lam = 0.001
input  x : f32[4]
target y : class[2]
"""
TAIL = """loss   cross_entropy(logits, y)
metric accuracy(logits, y)
train {
  data   csv("blobs.csv", target = last)
  valid  0.25 of train
  batch  32
  epochs 30
}
"""
blocks = HEAD.format(name="blocks") + """block layer(h, n, act_scale = 1) {
  return h -> dense(n * act_scale) -> tanh
}
block pair(h, n, l = lam) {
  a = h -> layer(n)
  b = a -> dense(n) -> gate(l1 = l) -> relu
  return b -> dense(n)
}
block r_then(h, width) {
  r = h -> dense(width) -> relu
  return r -> dense(width)
}
trunk  = x -> r_then(16)
logits = pair(trunk, 8) -> pair(6, l = 0.01) -> dense(2)
""" + TAIL
flat = HEAD.format(name="blocks") + """trunk_r = x -> dense(16) -> relu
trunk   = trunk_r -> dense(16)
p1_a    = trunk -> dense(8) -> tanh
p1_b    = p1_a -> dense(8) -> gate(l1 = lam) -> relu
p1      = p1_b -> dense(8)
p2_a    = p1 -> dense(6) -> tanh
p2_b    = p2_a -> dense(6) -> gate(l1 = 0.01) -> relu
p2      = p2_b -> dense(6)
logits  = p2 -> dense(2)
""" + TAIL
for name, text in (("blocks", blocks), ("flat", flat)):
    with open(f"{out}/{name}.nn", "w") as f:
        f.write(text)


def run(*args):
    return subprocess.run([nnc, *args], capture_output=True, text=True)


def metrics(path):
    keep = ("split", "epoch", "loss", "accuracy")
    return [{k: v for k, v in json.loads(l).items() if k in keep} for l in open(path)]


r = run("check", f"{out}/blocks.nn")
check(r.returncode == 0, f"nnc check of the block model (exit {r.returncode}) {r.stderr.strip()}")
table = [l.split()[0:2] for l in r.stdout.splitlines() if l.startswith("  ")]
for name, layer in (["trunk.r", "dense(16)"], ["trunk", "dense(16)"], ["logits.pair1.a", "dense(8)"],
                    ["logits.pair1.b", "dense(8)"], ["logits.pair1", "dense(8)"], ["logits.pair2.a", "dense(6)"],
                    ["logits", "dense(2)"]):
    check([name, layer] in table, f"check's layer table has {name} {layer}")

for name in ("blocks", "flat"):
    r = run("train", f"{out}/{name}.nn", "--out", f"{out}/{name}_run", "--no-progress")
    check(r.returncode == 0, f"{name} trains (exit {r.returncode}) {r.stderr.strip()}")
a, b = metrics(f"{out}/blocks_run/metrics.jsonl"), metrics(f"{out}/flat_run/metrics.jsonl")
check(len(a) > 4 and a == b, f"the block model and its hand-written twin: the same losses and accuracies ({len(a)} lines)")
last = [m for m in a if m["split"] == "valid"][-1]
check(last["accuracy"] > 0.8, f"the block model learns the blobs (valid accuracy {last['accuracy']})")

with open(f"{out}/blocks_run/checkpoint.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    names = set(json.loads(f.read(n)))
want = {"trunk.r.weight", "trunk.r.bias", "trunk.weight", "logits.pair1.a.weight", "logits.pair1.b.weight",
        "logits.pair1.weight", "logits.pair2.a.weight", "logits.pair2.b.bias", "logits.pair2.weight", "logits.weight"}
check(want <= names, f"the checkpoint names the weights through the calls (missing: {sorted(want - names)})")

r = run("train", f"{out}/blocks.nn", "--out", f"{out}/blocks_init", "--no-progress", "--set", "epochs=1",
        "--init", f"{out}/blocks_run/checkpoint.safetensors")
check(r.returncode == 0, f"--init takes the block model's checkpoint back (exit {r.returncode}) {r.stderr.strip()}")

r = run("check", f"{out}/blocks.nn", "--set", "lam=0.5")
check(r.returncode == 0 and "lam = 0.5 (--set)" in r.stdout, "--set reaches the param passed into a block by name")
r = run("train", f"{out}/blocks.nn", "--out", f"{out}/blocks_lam", "--no-progress", "--set", "lam=0.5")
moved = r.returncode == 0 and metrics(f"{out}/blocks_lam/metrics.jsonl")[0]["loss"] != a[0]["loss"]
check(moved, "--set lam=0.5 changes the block model's first-epoch loss (the gate's penalty inside the block)")
# the library: stdlib/mlp.nn called without a path; a built trainer carries it (it compiles the
# model again at run time, with no stdlib/ to read); the identity of a run covers the library
lib = HEAD.format(name="lib") + "logits = x -> mlp(16, 2)\n" + TAIL.replace("epochs 30", "epochs 3")
with open(f"{out}/lib.nn", "w") as f:
    f.write(lib)
empty = f"{out}/empty_stdlib"
os.makedirs(empty, exist_ok=True)
r = run("train", f"{out}/lib.nn", "--out", f"{out}/lib_run", "--no-progress")
check(r.returncode == 0, f"a model calling the library's mlp trains (exit {r.returncode}) {r.stderr.strip()}")
with open(f"{out}/lib_run/checkpoint.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    names = set(json.loads(f.read(n)))
check({"logits.h.weight", "logits.h.bias", "logits.weight", "logits.bias"} <= names,
      f"the library block's weights are named through the call ({sorted(k for k in names if '.' in k)[:6]})")
env = dict(os.environ, NNC_STDLIB=empty)
r = subprocess.run([nnc, "check", f"{out}/lib.nn"], capture_output=True, text=True, env=env)
check(r.returncode == 1 and "error: unknown layer 'mlp'" in r.stderr, f"NNC_STDLIB=DIR is where the library is read ({r.stderr.strip()})")
r = run("build", f"{out}/lib.nn", "-o", f"{out}/lib_trainer")
check(r.returncode == 0, f"nnc build of a model calling the library (exit {r.returncode}) {r.stderr.strip()}")
r = subprocess.run([f"{out}/lib_trainer", "train", "--out", f"{out}/lib_built", "--no-progress"], capture_output=True,
                   text=True, env=env, cwd=out)
check(r.returncode == 0 and metrics(f"{out}/lib_built/metrics.jsonl") == metrics(f"{out}/lib_run/metrics.jsonl"),
      f"the built trainer carries the library: it trains with none to read, as nnc train did (exit {r.returncode}) {r.stderr.strip()}")
changed = f"{out}/changed_stdlib"
os.makedirs(changed, exist_ok=True)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "stdlib", "mlp.nn")) as f:
    text = f.read()
with open(f"{changed}/mlp.nn", "w") as f:
    f.write(text.replace("-> relu", "-> tanh"))
r = subprocess.run([nnc, "train", f"{out}/lib.nn", "--out", f"{out}/lib_run", "--no-progress", "--resume", "--set", "epochs=4"],
                   capture_output=True, text=True, env=dict(os.environ, NNC_STDLIB=changed))
check(r.returncode != 0 and "checkpoint" in r.stderr, f"a run whose library changed does not resume (exit {r.returncode}) {r.stderr.strip()[:300]}")
r = run("train", f"{out}/lib.nn", "--out", f"{out}/lib_run", "--no-progress", "--resume", "--set", "epochs=4")
check(r.returncode == 0, f"with the same library it resumes (exit {r.returncode}) {r.stderr.strip()[:300]}")
# a library file holds blocks only: anything else is an error located in it
bad = f"{out}/bad_stdlib"
os.makedirs(bad, exist_ok=True)
with open(f"{bad}/mlp.nn", "w") as f:
    f.write("param k = 2\nblock mlp(x, hidden, out) {\n  return x -> dense(out)\n}\n")
r = subprocess.run([nnc, "check", f"{out}/lib.nn"], capture_output=True, text=True, env=dict(os.environ, NNC_STDLIB=bad))
want = f"{bad}/mlp.nn:1:1: error: a library file holds blocks only; 'param' cannot stand in one"
check(r.returncode == 1 and want in r.stderr, f"a library file with a param: {r.stderr.strip()[:300]}")
finish()
