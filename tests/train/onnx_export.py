"""onnx_export.py NNC OUTDIR: `nnc export --onnx` against the model it came from.

Models are trained briefly (the Fashion models on 1024 images), exported, and the ONNX file is
run two ways on test inputs: by a NumPy interpreter of the operators the export writes
(written here from ONNX's operator definitions: Gemm, Conv, pooling, the activations, Reshape,
Transpose, ...), and, with ONNX_PYTHON naming an interpreter that has the `onnx` and
`onnxruntime` packages (PyPI), by onnxruntime after onnx.checker accepts the file.  Both must
match `nnc predict` to 1e-5 relative, and a classifier's accuracy from the ONNX outputs must
equal predict's.  Models: fashion_mlp; fashion_gated (its gates); fashion_sparse, pruned after
its first epoch (the pruned widths); fashion_2c2d (conv2d, max pooling, flatten of channels-last
maps); fashion_sparse_cnn (channel gates, pruned); and a model of the other layers (conv1d,
average pooling, batch_norm in evaluation, layer_norm, prelu, elu, leaky_relu, gelu, softplus,
sigmoid, size_gate, shift, dropout, a skip connection, a scaled tensor, a variational layer's
posterior mean, a fixed layer) with two heads; and a sampled model (--draws), whose initializers
must be the mean of its draws.  A model whose prediction takes input-gradients
(fd_grad) is refused with the reason; a missing --checkpoint and -o are usage errors."""
import json
import math
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from checks import check, finish  # noqa: E402
from pb_read import fields as pb_fields  # noqa: E402

nnc, out = sys.argv[1], sys.argv[2]
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
FASHION = "/usr/share/datasets/fashion-mnist"


def run(*args, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, **kw)
    if r.returncode:
        print(r.stdout[-2000:], r.stderr[-2000:])
    return r


# ---- a reader of the ONNX protocol buffers and a NumPy interpreter of the graph ----

def fields(b):
    return [(f, v) for f, _, v in pb_fields(b)]


def tensor(b):
    d = {"dims": []}
    for f, v in fields(b):
        if f == 1:
            d["dims"].append(v)
        elif f == 2:
            d["type"] = v
        elif f == 8:
            d["name"] = v.decode()
        elif f == 9:
            d["raw"] = v
    dt = np.float32 if d["type"] == 1 else np.int64
    return d["name"], np.frombuffer(d["raw"], dt).reshape(d["dims"])


def load(path):
    model = dict(fields(open(path, "rb").read()))
    g = fields(model[7])
    nodes, inits, inputs, outputs = [], {}, [], []
    for f, v in g:
        if f == 1:
            n = {"in": [], "out": [], "attr": {}}
            for ff, vv in fields(v):
                if ff == 1:
                    n["in"].append(vv.decode())
                elif ff == 2:
                    n["out"].append(vv.decode())
                elif ff == 4:
                    n["op"] = vv.decode()
                elif ff == 5:
                    a = fields(vv)
                    name = dict(a)[1].decode()
                    t = dict(a)[20]
                    n["attr"][name] = (struct.unpack("<f", dict(a)[2])[0] if t == 1 else dict(a)[3] if t == 2
                                       else [x for k, x in a if k == 8])
            nodes.append(n)
        elif f == 5:
            k, val = tensor(v)
            inits[k] = val
        elif f in (11, 12):
            (inputs if f == 11 else outputs).append(dict(fields(v))[1].decode())
    return nodes, inits, inputs, outputs


def conv(x, w, b, a):  # NCHW
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    s, d = a.get("strides", [1, 1]), a.get("dilations", [1, 1])
    p = a.get("pads", [0, 0, 0, 0])
    x = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    oh = (x.shape[2] - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (x.shape[3] - d[1] * (kw - 1) - 1) // s[1] + 1
    cols = np.empty((n, c, kh, kw, oh, ow), np.float64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i * d[0]:i * d[0] + s[0] * oh:s[0], j * d[1]:j * d[1] + s[1] * ow:s[1]]
    y = np.einsum("ncijhw,fcij->nfhw", cols, w.astype(np.float64))
    return y + (b.reshape(1, -1, 1, 1) if b is not None else 0)


def pool(x, a, op):
    k, s, p = a["kernel_shape"], a.get("strides", a["kernel_shape"]), a.get("pads", [0, 0, 0, 0])
    x = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])), constant_values=-np.inf if op == "MaxPool" else 0)
    oh, ow = (x.shape[2] - k[0]) // s[0] + 1, (x.shape[3] - k[1]) // s[1] + 1
    win = np.stack([x[:, :, i:i + s[0] * oh:s[0], j:j + s[1] * ow:s[1]] for i in range(k[0]) for j in range(k[1])])
    return win.max(0) if op == "MaxPool" else win.mean(0)


def interpret(path, feeds):
    nodes, inits, inputs, outputs = load(path)
    env = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in inits.items()}
    env.update({k: v.astype(np.float64) for k, v in feeds.items()})
    erf = np.vectorize(math.erf)
    for n in nodes:
        x = [env[i] for i in n["in"]]
        a, op = n["attr"], n["op"]
        if op == "Gemm":
            y = x[0] @ (x[1].T if a.get("transB") else x[1]) + (x[2] if len(x) > 2 else 0)
        elif op in ("Add", "Sub", "Mul", "Div"):
            y = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](x[0], x[1])
        elif op == "Neg":
            y = -x[0]
        elif op in ("Identity",):
            y = x[0]
        elif op == "Reshape":
            y = x[0].reshape([int(v) for v in x[1]])
        elif op == "Transpose":
            y = x[0].transpose(a["perm"])
        elif op == "Unsqueeze":
            y = np.expand_dims(x[0], [int(v) for v in x[1]])
        elif op == "Conv":
            y = conv(x[0], x[1], x[2] if len(x) > 2 else None, a)
        elif op in ("MaxPool", "AveragePool"):
            y = pool(x[0], a, op)
        elif op == "Relu":
            y = np.maximum(x[0], 0)
        elif op == "Tanh":
            y = np.tanh(x[0])
        elif op == "Sigmoid":
            y = 1 / (1 + np.exp(-x[0]))
        elif op == "Softplus":
            y = np.logaddexp(0, x[0])
        elif op == "Elu":
            y = np.where(x[0] > 0, x[0], a["alpha"] * np.expm1(np.minimum(x[0], 0)))
        elif op == "LeakyRelu":
            y = np.where(x[0] > 0, x[0], a["alpha"] * x[0])
        elif op == "PRelu":
            y = np.where(x[0] > 0, x[0], x[1] * x[0])
        elif op == "Erf":
            y = erf(x[0])
        elif op == "Sqrt":
            y = np.sqrt(x[0])
        elif op == "ReduceMean":
            y = x[0].mean(axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1)))
        else:
            raise ValueError(f"the interpreter has no {op}")
        env[n["out"][0]] = y
    return {o: env[o] for o in outputs}, inputs


def compare(name, model, onnx_path, feeds, predict_inputs, labels=None):
    pred = f"{out}/{name}_pred.npy"
    r = run(nnc, "predict", model, "--checkpoint", f"{out}/{name}/checkpoint.safetensors", *predict_inputs, "--output", pred)
    if r.returncode:
        check(False, f"{name}: predict runs")
        return
    want = np.load(pred).astype(np.float64)
    got, inputs = interpret(onnx_path, feeds)
    y = np.concatenate([got[k].reshape(len(want), -1) for k in got], axis=1)
    rel = np.abs(y - want).max() / max(np.abs(want).max(), 1e-30)
    check(rel < 1e-5, f"{name}: the NumPy interpreter of the ONNX graph matches predict: {rel:.1e} relative "
          f"({len(want)} samples, outputs {list(got)}, inputs {inputs})")
    if labels is not None:
        acc_onnx, acc_pred = (y.argmax(1) == labels).mean(), (want.argmax(1) == labels).mean()
        check(acc_onnx == acc_pred, f"{name}: the same accuracy, {acc_onnx:.4f} (ONNX) and {acc_pred:.4f} (predict)")
    py = os.environ.get("ONNX_PYTHON")
    if py:
        np.savez(f"{out}/{name}_feeds.npz", **feeds)
        probe = """
import sys, json, numpy as np, onnx, onnxruntime as ort
m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True)
feeds = dict(np.load(sys.argv[2]))
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
ys = s.run(None, feeds)
np.save(sys.argv[3], np.concatenate([y.reshape(len(y), -1) for y in ys], axis=1))
"""
        r = run(py, "-c", probe, onnx_path, f"{out}/{name}_feeds.npz", f"{out}/{name}_ort.npy")
        if r.returncode == 0:
            yo = np.load(f"{out}/{name}_ort.npy").astype(np.float64)
            rel = np.abs(yo - want).max() / max(np.abs(want).max(), 1e-30)
            check(rel < 1e-5, f"{name}: onnx.checker accepts it and onnxruntime matches predict: {rel:.1e} relative")
            if labels is not None:
                check((yo.argmax(1) == labels).mean() == (want.argmax(1) == labels).mean(),
                      f"{name}: onnxruntime's accuracy {(yo.argmax(1) == labels).mean():.4f} is predict's")
        else:
            check(False, f"{name}: onnx.checker and onnxruntime run it")


def export_and_compare(name, model, epochs, train_args, predict_inputs, feeds, labels=None):
    r = run(nnc, "train", model, "--set", f"epochs={epochs}", *train_args, "--out", f"{out}/{name}", "--no-progress")
    if r.returncode:
        check(False, f"{name}: trains")
        return
    onnx_path = f"{out}/{name}.onnx"
    r = run(nnc, "export", "--onnx", model, "--checkpoint", f"{out}/{name}/checkpoint.safetensors", "-o", onnx_path)
    check(r.returncode == 0 and os.path.getsize(onnx_path) > 0, f"{name}: exports ({r.stdout.strip()})")
    if r.returncode == 0:
        compare(name, model, onnx_path, feeds, predict_inputs, labels)


# ---- Fashion-MNIST models on a subset ----
if os.path.exists(f"{FASHION}/train-images-idx3-ubyte.gz"):
    run(sys.executable, os.path.join(HERE, "idx_subset.py"), FASHION, f"{out}/fm", "1024", "256")
    import gzip
    img = np.frombuffer(gzip.open(f"{out}/fm/t10k-images-idx3-ubyte.gz").read()[16:], np.uint8).reshape(-1, 28, 28)
    lab = np.frombuffer(gzip.open(f"{out}/fm/t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    x = (img / 255.0).astype(np.float32)
    np.save(f"{out}/fm_test.npy", x)
    for name, epochs, extra in (("fashion_mlp", 1, []), ("fashion_gated", 1, []), ("fashion_sparse", 2, []), ("fashion_2c2d", 1, []),
                                ("fashion_sparse_cnn", 2, [])):
        export_and_compare(name, f"models/{name}.nn", epochs, ["--data", f"{out}/fm", *extra], ["--input", f"{out}/fm_test.npy"],
                           {"image": x}, lab.astype(np.int64))
    for name in ("fashion_sparse", "fashion_sparse_cnn"):
        lines = [json.loads(line) for line in open(f"{out}/{name}/metrics.jsonl") if '"prune"' in line]
        check(len(lines) >= 1, f"{name}: pruned before it was exported ({[line['widths'] for line in lines]})")
else:
    print("(no Fashion-MNIST: the Fashion models are not exported here)")

# ---- the other layers, two heads ----
rng = np.random.default_rng(11)
n = 512
xs = rng.normal(size=(n, 16, 2)).astype(np.float32)
v = rng.normal(size=(n, 6)).astype(np.float32)
a = (xs[:, :, 0].mean(1, keepdims=True) + 0.3 * v[:, :1]).astype(np.float32)
b = np.tanh(xs[:, :4, 1].sum(1, keepdims=True) - v[:, 1:2]).astype(np.float32)
for k, arr in {"seq": xs, "vec": v, "a": a, "b": b}.items():
    np.save(f"{out}/{k}.npy", arr)
np.save(f"{out}/fixed.npy", rng.normal(size=(6, 6)).astype(np.float32))
open(f"{out}/layers.nn", "w").write("""model layers
input  seq : f32[16, 2]
input  vec : f32[6]
target a   : f32[1]
target b   : f32[1]
c      = seq -> conv1d(4, 3, padding = same) -> batch_norm -> elu -> avgpool1d(2) -> conv1d(3, 2, stride = 2) -> leaky_relu(slope = 0.2)
f      = flatten(c) -> dense(8) -> layer_norm -> gelu -> gate(l1 = 0.001)
u      = vec -> dense(6, bias = false, init = npy("fixed.npy"), trainable = false) -> shift(init = 0.5) -> softplus
w      = u -> dense(8) -> prelu -> size_gate(slope = 2, init = 6) -> dropout(0.1)
h      = f + 0.5 * (w -> dense(8) -> sigmoid) - f * (0.5 / 2)
ha     = h -> dense(8) -> tanh -> dense(1)
hb     = -h -> bayes_dense(1)
loss   mse(ha, a) + gaussian_nll(hb, b, sigma = 0.5)
train  { data npy(seq = "seq.npy", vec = "vec.npy", a = "a.npy", b = "b.npy") batch 64 optimizer adam(lr = 0.01) }
""")
export_and_compare("layers", f"{out}/layers.nn", 3, [], ["--input", f"seq={out}/seq.npy", "--input", f"vec={out}/vec.npy"],
                   {"seq": xs, "vec": v})
meta = open(f"{out}/layers.onnx", "rb").read() if os.path.exists(f"{out}/layers.onnx") else b""
check(b"posterior mean" in meta, "a variational layer's posterior mean is exported, and the metadata says so")

# ---- a sampled model: the posterior mean of its draws ----
sys.path.insert(0, os.path.join(HERE, "..", "checkpoint"))
from st_numpy import read  # noqa: E402
r = run(nnc, "train", "models/xsec_bnn.nn", "--set", "samples=20", "--set", "burnin=20", "--set", "chains=2", "--out", f"{out}/xsec",
        "--no-progress")
r = r if r.returncode else run(nnc, "export", "--onnx", "models/xsec_bnn.nn", "--draws", f"{out}/xsec", "-o", f"{out}/xsec.onnx")
if r.returncode == 0:
    draws = [read(f"{out}/xsec/draws_chain{c}.safetensors")[0] for c in (1, 2)]
    _, inits, _, _ = load(f"{out}/xsec.onnx")
    names = [k for k in inits if k in draws[0]]
    worst = max(np.abs(inits[k] - np.concatenate([d[k] for d in draws]).astype(np.float64).mean(0)).max() for k in names)
    nd = sum(len(d[names[0]]) for d in draws)
    check(len(names) >= 5 and worst < 1e-6 and f"posterior mean of the weights over {nd} draws of 2 chains".encode() in open(f"{out}/xsec.onnx", "rb").read(),
          f"a sampled model (--draws): its initializers are the mean of its {nd} draws ({len(names)} weights, {worst:.1e}), and the metadata says so")
else:
    check(False, "xsec_bnn samples and exports with --draws")

# a non-centred prior's parts (z, log_tau) are refused: their means do not make the weight's mean
open(f"{out}/nc.nn", "w").write("""model nc
input  x : f32[4]
target y : f32[1]
prior  d.weight ~ cauchy(0, 1, noncentred = true)
prior  biases ~ normal(0, 1)
d      = x -> dense(1)
loss   gaussian_nll(d, y, sigma = 1)
train  { data csv("nc.csv") batch 50 seed 2 sampler hmc(step = 0.01, leapfrog = 5, samples = 10, burnin = 10) }
""")
np.savetxt(f"{out}/nc.csv", rng.normal(size=(50, 5)), delimiter=",", fmt="%.5f")
r = run(nnc, "train", f"{out}/nc.nn", "--out", f"{out}/ncrun", "--no-progress")
r = r if r.returncode else run(nnc, "export", "--onnx", f"{out}/nc.nn", "--draws", f"{out}/ncrun", "-o", f"{out}/nc.onnx")
check(r.returncode == 1 and "nnc: error: 'd.weight.z' is part of a non-centred prior: the posterior mean of the weight it makes "
      "is not the weight its parts' means make, and is not exported" in r.stderr and not os.path.exists(f"{out}/nc.onnx"),
      f"a non-centred prior's parts are refused with the reason ({r.stderr.strip()[-200:]})")

# ---- refusals ----
r = run(nnc, "export", "--onnx", "models/luna_toy.nn", "-o", f"{out}/x.onnx")
check(r.returncode == 2 and "export --onnx needs --checkpoint C, the trained weights (or --draws D" in r.stderr, f"no --checkpoint: a usage error ({r.stderr.strip()[:120]})")
r = run(nnc, "export", "--onnx", "models/luna_toy.nn", "--checkpoint", "c.safetensors")
check(r.returncode == 2 and "export --onnx needs -o FILE.onnx" in r.stderr, "no -o: a usage error")
open(f"{out}/fd.nn", "w").write("""model fd
input  x : f32[1]
target y : f32[1]
f      = x -> dense(8) -> tanh
g      = fd_grad(f, x)
out    = flatten(g) -> dense(1)
loss   mse(out, y)
train  { data csv("fd.csv") epochs 1 }
""")
np.savetxt(f"{out}/fd.csv", rng.normal(size=(64, 2)), delimiter=",", fmt="%.5f")
r = run(nnc, "train", f"{out}/fd.nn", "--out", f"{out}/fdrun", "--no-progress")
r = run(nnc, "export", "--onnx", f"{out}/fd.nn", "--checkpoint", f"{out}/fdrun/checkpoint.safetensors", "-o", f"{out}/fd.onnx")
check(r.returncode == 1 and "fd_grad (input-gradients by finite differences) has no ONNX counterpart" in r.stderr
      and not os.path.exists(f"{out}/fd.onnx"), f"a prediction through fd_grad is refused with the reason ({r.stderr.strip()[:160]})")
finish()
