"""fashion_sparse.py: workload 1 measured.  models/fashion_sparse.nn in nnc, and:

  speed    nnc (physical pruning) against PyTorch with the same gated network, the same
           proximal L1 step and a mask in place of removal (bench/torch_fashion_sparse.py):
           time from the start of training to the first epoch whose test accuracy is >= 0.87,
           median over --repeat runs of each, interleaved.  Also, per epoch, nnc's widths,
           training samples/s and the FLOPs per sample of the network it trained.
  static   a plain MLP of the widths fashion_sparse ended with, trained by nnc for the same
           epochs from the same seed: the test accuracy pruning should match.
  sweep    lambda in {1e-3, 2e-3, 4e-3}: final widths and test accuracy.
  digits   the same network, penalty and number of optimiser steps on sklearn's digits (8x8
           images, an easier problem) through `csv`: how many neurons it keeps.

Same machine, same run, equal threads, 2 by default (OpenBLAS for nnc; torch with
OMP_WAIT_POLICY=passive).  Run from the repository root with Debian's interpreter
(python3-torch, python3-sklearn):
    /usr/bin/python3 bench/fashion_sparse.py [--repeat N] [--threads T] [--nnc build/nnc]
                                             [--skip torch,static,sweep,digits]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

MODEL = "models/fashion_sparse.nn"
ENV = dict(os.environ, OMP_WAIT_POLICY="passive")


def set_threads(n):
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "BENCH_THREADS"):
        ENV[k] = str(n)


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def nnc_train(nnc, model, *sets):
    """Train with nnc; return the metrics.jsonl lines."""
    out = tempfile.mkdtemp(prefix="nnc-bench-")
    cmd = [nnc, "train", model, "--out", out, "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    return [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]


def split(lines, name):
    return [l for l in lines if l.get("split") == name]


def time_to(lines, acc):
    for l in split(lines, "test"):
        if l["accuracy"] >= acc:
            return l["time_s"], l["epoch"]
    return None, None


def flops_per_sample(w1, w2):
    """Multiply-adds of forward and backward (3x forward) per training sample, times 2."""
    return 2 * 3 * (784 * w1 + w1 * w2 + w2 * 10)


def torch_run():
    r = subprocess.run([sys.executable, "bench/torch_fashion_sparse.py", "10"], env=ENV, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"torch_fashion_sparse.py failed:\n{r.stderr}")
    return [json.loads(l) for l in r.stdout.splitlines()]


def speed(nnc, repeat, with_torch):
    runs, truns = [], []
    for i in range(repeat):
        runs.append(nnc_train(nnc, MODEL))
        t, e = time_to(runs[-1], 0.87)
        msg = f"run {i + 1}: nnc reaches 0.87 after epoch {e}, {t} s"
        if with_torch:
            truns.append(torch_run())
            tt = next(((l["time_s"], l["epoch"]) for l in truns[-1] if l["test_accuracy"] >= 0.87), (None, None))
            msg += f"; PyTorch (masked) after epoch {tt[1]}, {tt[0] and round(tt[0], 1)} s"
            if t and tt[0]:
                msg += f"; ratio {tt[0] / t:.2f}"
        print(msg, flush=True)
    print("\nnnc, run 1, per epoch:")
    print("| epoch | h1 width | h2 width | MFLOP/sample | samples/s | speed-up | FLOP ratio | test accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    tr, te = split(runs[0], "train"), split(runs[0], "test")
    f0 = flops_per_sample(tr[0]["h1.width"], tr[0]["h2.width"])
    for a, b in zip(tr, te):
        f = flops_per_sample(a["h1.width"], a["h2.width"])
        print(f"| {a['epoch']} | {a['h1.width']} | {a['h2.width']} | {f / 1e6:.2f} | {a['samples_per_s']:.0f} | "
              f"{a['samples_per_s'] / tr[0]['samples_per_s']:.1f}x | {f0 / f:.1f}x | {b['accuracy']:.4f} |")
    if with_torch:
        print("\nPyTorch (masked), run 1, per epoch:")
        print("| epoch | h1 live | h2 live | samples/s | test accuracy |")
        print("|---|---|---|---|---|")
        for l in truns[0]:
            print(f"| {l['epoch']} | {l['live'][0]} | {l['live'][1]} | {l['samples_per_s']:.0f} | {l['test_accuracy']:.4f} |")
        nt = [time_to(r, 0.87)[0] for r in runs]
        tt = [next((l["time_s"] for l in r if l["test_accuracy"] >= 0.87), None) for r in truns]
        if all(nt) and all(tt):
            print(f"\ntime to 0.87 test accuracy, median of {repeat}: nnc {med(nt):.1f} s, PyTorch {med(tt):.1f} s, "
                  f"ratio {med(tt) / med(nt):.2f}")
        else:
            print(f"\ntime to 0.87: nnc {nt}, PyTorch {tt} (a run never reached it)")
    return runs[0]


def final(lines):
    te = split(lines, "test")[-1]
    return te["h1.width"], te["h2.width"], te["accuracy"]


STATIC = """model static
input  image : f32[28, 28]
target label : class[10]
h1     = flatten(image) -> dense({w1}) -> relu
h2     = h1 -> dense({w2}) -> relu
logits = h2 -> dense(10)
loss   cross_entropy(logits, label)
metric accuracy(logits, label)
train {{
  data      fashion_mnist
  valid     0.1 of train
  batch     128
  epochs    10
  optimizer adam(lr = 1e-3)
  seed      1
}}
"""


def static(nnc, sparse):
    w1, w2, acc = final(sparse)
    d = tempfile.mkdtemp(prefix="nnc-bench-")
    path = os.path.join(d, "static.nn")
    with open(path, "w") as f:
        f.write(STATIC.format(w1=w1, w2=w2))
    s = split(nnc_train(nnc, path), "test")[-1]["accuracy"]
    print(f"\nstatic {w1}-{w2} network, 10 epochs: test accuracy {s:.4f}; fashion_sparse ending at {w1}-{w2}: "
          f"{acc:.4f} (difference {100 * (acc - s):+.2f} points)")


def sweep(nnc, sparse):
    print("\n| lambda | final h1 | final h2 | test accuracy |")
    print("|---|---|---|---|")
    for lam in ["1e-3", "2e-3", "4e-3"]:
        lines = sparse if lam == "2e-3" else nnc_train(nnc, MODEL, f"lambda={lam}")
        w1, w2, acc = final(lines)
        print(f"| {lam} | {w1} | {w2} | {acc:.4f} |", flush=True)


DIGITS = """model digits_sparse
input  pixels : f32[64]
target digit  : class[10]
param  lambda = 2e-3
h1     = pixels -> dense(2048) -> relu -> gate(l1 = lambda)
h2     = h1 -> dense(1024) -> relu -> gate(l1 = lambda)
logits = h2 -> dense(10)
loss   cross_entropy(logits, digit)
metric accuracy(logits, digit)
train {{
  data      csv("digits_train.csv")
  test      csv("digits_test.csv")
  batch     128
  epochs    {epochs}
  optimizer adam(lr = 1e-3)
  schedule  lambda = lambda * 0.7 ^ (step / 422)
  prune     gates every {every} epochs
  seed      1
}}
"""


def digits(nnc, sparse):
    from sklearn.datasets import load_digits
    d = tempfile.mkdtemp(prefix="nnc-bench-")
    x, y = load_digits(return_X_y=True)
    n_test = 297  # 1500 training images: 12 steps per epoch at batch 128
    for name, lo, hi in (("digits_train.csv", 0, len(y) - n_test), ("digits_test.csv", len(y) - n_test, len(y))):
        with open(os.path.join(d, name), "w") as f:
            for i in range(lo, hi):
                f.write(",".join(f"{v / 16:.4f}" for v in x[i]) + f",{y[i]}\n")
    # the same optimiser steps as fashion_sparse's 10 epochs of 422 (4220), lambda decaying per
    # 422 steps as there, pruning about as often
    path = os.path.join(d, "digits.nn")
    with open(path, "w") as f:
        f.write(DIGITS.format(epochs=352, every=35))
    lines = nnc_train(nnc, path)
    te = split(lines, "test")[-1]
    w1, w2, acc = final(sparse)
    print(f"\nsame network and lambda = 2e-3, 4224 steps: digits keeps {te['h1.width']}-{te['h2.width']} neurons "
          f"(test accuracy {te['accuracy']:.4f}); Fashion-MNIST keeps {w1}-{w2} ({acc:.4f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nnc", default="build/nnc")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip", default="")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    set_threads(a.threads)
    skip = set(a.skip.split(","))
    sparse = speed(a.nnc, a.repeat, "torch" not in skip)
    if "static" not in skip:
        static(a.nnc, sparse)
    if "sweep" not in skip:
        sweep(a.nnc, sparse)
    if "digits" not in skip:
        digits(a.nnc, sparse)


if __name__ == "__main__":
    main()
