"""optimizers_np.py NNC OUTDIR: each optimizer's update against a NumPy transcription of its
definition, over 10 steps, and its state through a checkpoint.

A 5-4-1 tanh network on 64 rows of synthetic regression data, trained full-batch (one step an
epoch, so no shuffling) for 10 epochs from weights NumPy writes (--init).  NumPy computes the
same network's mean-squared-error gradient in float64 by hand and applies each optimizer as
PyTorch documents it (sgd with momentum, rmsprop with and without momentum and weight decay,
adagrad with an initial accumulator); nnc's weights and optimizer state after step 10 must match
to 1e-4 relative (float32 against float64 over 10 steps).  Then each run is stopped by SIGTERM
after step 5 and resumed: its checkpoint must equal the uninterrupted run's byte for byte."""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint"))
from st_numpy import read, write  # noqa: E402
from checks import check, finish  # noqa: E402

nnc, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(5)
n, d, h = 64, 5, 4
x = rng.normal(size=(n, d))
y = np.tanh(x @ rng.normal(size=d)) + 0.1 * rng.normal(size=n)
np.savetxt(f"{out}/data.csv", np.c_[x, y], delimiter=",", fmt="%.7f")
x = np.loadtxt(f"{out}/data.csv", delimiter=",")[:, :d]  # what nnc reads
y = np.loadtxt(f"{out}/data.csv", delimiter=",")[:, d]
init = {"h.weight": 0.5 * rng.normal(size=(h, d)), "h.bias": 0.1 * rng.normal(size=h),
        "out.weight": 0.5 * rng.normal(size=(1, h)), "out.bias": np.array([0.05])}
init = {k: v.astype(np.float32).astype(np.float64) for k, v in init.items()}
write(f"{out}/init.safetensors", init, "F32")


def grads(w):
    """The mean squared error's gradient of the 5-4-1 tanh network, by hand."""
    z = x @ w["h.weight"].T + w["h.bias"]
    a = np.tanh(z)
    pred = a @ w["out.weight"].T + w["out.bias"]
    dp = 2 * (pred[:, 0] - y)[:, None] / n
    da = dp @ w["out.weight"] * (1 - a * a)
    return {"out.weight": dp.T @ a, "out.bias": dp.sum(0), "h.weight": da.T @ x, "h.bias": da.sum(0)}


def momentum(w, g, s, o):
    buf = s.setdefault("momentum", {k: np.zeros_like(v) for k, v in w.items()})
    for k in w:
        dk = g[k] + o.get("weight_decay", 0) * w[k]
        buf[k] = o["momentum"] * buf[k] + dk
        w[k] = w[k] - o["lr"] * (dk + o["momentum"] * buf[k] if o.get("nesterov") else buf[k])


def rmsprop(w, g, s, o):
    v = s.setdefault("rmsprop_v", {k: np.zeros_like(a) for k, a in w.items()})
    buf = s.setdefault("momentum", {k: np.zeros_like(a) for k, a in w.items()}) if o.get("momentum") else None
    for k in w:
        dk = g[k] + o.get("weight_decay", 0) * w[k]
        v[k] = o["alpha"] * v[k] + (1 - o["alpha"]) * dk * dk
        step = dk / (np.sqrt(v[k]) + o["eps"])
        if buf is not None:
            buf[k] = o["momentum"] * buf[k] + step
            step = buf[k]
        w[k] = w[k] - o["lr"] * step


def adagrad(w, g, s, o):
    acc = s.setdefault("adagrad_sum", {k: np.full_like(a, o.get("initial_accumulator", 0)) for k, a in w.items()})
    for k in w:
        dk = g[k] + o.get("weight_decay", 0) * w[k]
        acc[k] = acc[k] + dk * dk
        w[k] = w[k] - o["lr"] * dk / (np.sqrt(acc[k]) + o["eps"])


CASES = [  # name, the .nn optimizer, the transcription, its hyperparameters
    ("momentum", "momentum(lr = 0.1)", momentum, {"lr": 0.1, "momentum": 0.9}),
    ("nesterov_wd", "momentum(lr = 0.05, nesterov = true, weight_decay = 0.01)", momentum,
     {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("rmsprop", "rmsprop(lr = 0.01)", rmsprop, {"lr": 0.01, "alpha": 0.99, "eps": 1e-8}),
    ("rmsprop_momentum_wd", "rmsprop(lr = 0.005, alpha = 0.9, eps = 1e-6, momentum = 0.8, weight_decay = 0.01)", rmsprop,
     {"lr": 0.005, "alpha": 0.9, "eps": 1e-6, "momentum": 0.8, "weight_decay": 0.01}),
    ("adagrad", "adagrad(lr = 0.1, initial_accumulator = 0.1)", adagrad,
     {"lr": 0.1, "eps": 1e-10, "initial_accumulator": 0.1}),
    ("adagrad_wd", "adagrad(lr = 0.05, weight_decay = 0.02)", adagrad, {"lr": 0.05, "eps": 1e-10, "weight_decay": 0.02}),
]

for name, spec, rule, hp in CASES:
    with open(f"{out}/{name}.nn", "w") as f:
        f.write(f"""model opt_{name}
input  x : f32[{d}]
target y : f32[1]
h   = x -> dense({h}) -> tanh
out = h -> dense(1)
loss mse(out, y)
train {{
  data      csv("data.csv", target = last)
  batch     {n}
  epochs    10
  optimizer {spec}
}}
""")
    run = f"{out}/{name}"
    subprocess.run([nnc, "train", f"{out}/{name}.nn", "--out", run, "--init", f"{out}/init.safetensors", "--no-progress"],
                   check=True, stdout=subprocess.DEVNULL)
    got, _ = read(f"{run}/checkpoint.safetensors")
    w, state = {k: v.copy() for k, v in init.items()}, {}
    for _ in range(10):
        rule(w, grads(w), state, hp)
    worst = 0.0
    for k in w:
        worst = max(worst, np.abs(got[k] - w[k]).max() / np.abs(w[k]).max())
        for sname, sv in state.items():
            worst = max(worst, np.abs(got[f"{k}.{sname}"] - sv[k]).max() / max(np.abs(sv[k]).max(), 1e-12))
    check(worst < 1e-4, f"{name}: weights and state after 10 steps against NumPy: worst relative difference {worst:.2e}")
    part = f"{out}/{name}_part"
    r = subprocess.run([nnc, "train", f"{out}/{name}.nn", "--out", part, "--init", f"{out}/init.safetensors",
                        "--no-progress"], env={**os.environ, "NNC_TEST_SIGNAL_AT": "5:1"}, stdout=subprocess.DEVNULL)
    subprocess.run([nnc, "train", f"{out}/{name}.nn", "--out", part, "--resume", "--no-progress"], check=True,
                   stdout=subprocess.DEVNULL)
    same = open(f"{run}/checkpoint.safetensors", "rb").read() == open(f"{part}/checkpoint.safetensors", "rb").read()
    check(r.returncode == 143 and same, f"{name}: stopped after step 5 (status {r.returncode}), resumed: the same checkpoint bytes")
finish()
