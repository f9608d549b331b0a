"""fashion_2c2d.py: training speed of models/fashion_2c2d.nn (DeepOBS's fmnist_2c2d) in nnc
against the same network in PyTorch (bench/torch_fashion_2c2d.py), eager and, on request,
torch.compile'd, and in JAX (bench/jax_fashion_2c2d.py, jit'd; --torch jax --jax-python P).

Both train on the same data: the first --train images of Debian's Fashion-MNIST training set
and the first --test test images, written as IDX files to a temporary directory (nnc reads it
through --data, PyTorch through NNC_FASHION_MNIST_DIR and bench/fashion_data.py).  Each runs
--epochs epochs over them (default 2 of 100 steps at batch 128); the first epoch is the warm-up
(page faults of nnc's arena, PyTorch's allocator caches, torch.compile's compilation), and
training steps/s are counted over the later epochs: steps / seconds of the step loop (batch
gathering, forward, backward, Adam; not the evaluation).  The frameworks alternate, each run in
its own child process, whose peak RSS is its own.  Equal threads (2: OpenBLAS for nnc;
torch.set_num_threads with OMP_WAIT_POLICY=passive for PyTorch).  Run from the repository root:
    python3 bench/fashion_2c2d.py [--repeat N] [--nnc build/nnc] [--python /path/to/python-with-torch]
                                  [--train 12800] [--test 1000] [--epochs 2] [--torch eager,compile,channels_last]
                                  [--baseline other/build/nnc]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from peak_rss import child  # bench/peak_rss.py (Python puts the script's folder on sys.path)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "train"))
from idx_subset import subset  # noqa: E402  tests/train/idx_subset.py


def run_nnc(nnc, data, epochs, n_train, env):
    out = tempfile.mkdtemp(prefix="nnc-bench-")
    _, rss = child([nnc, "train", "models/fashion_2c2d.nn", "--data", data, "--set", f"epochs={epochs}",
                    "--out", out, "--no-progress", "--checkpoint-every", "0"], env)
    lines = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    train = [l for l in lines if l["split"] == "train"]
    test = [l for l in lines if l["split"] == "test"]
    steps_per_epoch = (n_train + 127) // 128
    timed = train[1:] or train
    secs = sum(n_train / l["samples_per_s"] for l in timed)
    return {"steps_per_s": steps_per_epoch * len(timed) / secs,
            "warmup_steps_per_s": steps_per_epoch / (n_train / train[0]["samples_per_s"]),
            "test_accuracy": test[-1]["accuracy"], "rss_mib": rss}


def run_torch(python, variant, data, epochs, env):
    if variant == "jax":  # the JAX twin, in --jax-python
        out, rss = child([python, "bench/jax_fashion_2c2d.py", "--epochs", str(epochs)], dict(env, NNC_FASHION_MNIST_DIR=data))
    else:
        flags = {"eager": [], "compile": ["--compile"], "channels_last": ["--channels-last"]}[variant]
        out, rss = child([python, "bench/torch_fashion_2c2d.py", "--epochs", str(epochs)] + flags,
                         dict(env, NNC_FASHION_MNIST_DIR=data))
    lines = [json.loads(l) for l in out.strip().splitlines() if l.startswith("{")]
    timed = lines[1:] or lines
    return {"steps_per_s": sum(l["steps"] for l in timed) / sum(l["train_s"] for l in timed),
            "warmup_steps_per_s": lines[0]["steps_per_s"], "test_accuracy": lines[-1]["test_accuracy"],
            "rss_mib": rss}


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def name(k):
    return {"nnc": "nnc", "baseline": "nnc (baseline)", "jax": "JAX (jit)"}.get(k, "PyTorch " + k)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nnc", default="build/nnc")
    ap.add_argument("--baseline", default=None, help="another nnc (an older build), run alongside: before and after")
    ap.add_argument("--python", default=sys.executable, help="the interpreter that has torch")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--train", type=int, default=12800, help="training images (12800: 100 steps an epoch)")
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2, help="the first is the warm-up")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch", default="eager", help="comma-separated: eager, compile, channels_last, jax (the JAX twin)")
    ap.add_argument("--jax-python", default=None, help="the interpreter that has jax (default: --python)")
    a = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads),
               OMP_WAIT_POLICY="passive", BENCH_THREADS=str(a.threads))
    src = os.environ.get("NNC_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    data = tempfile.mkdtemp(prefix="nnc-bench-2c2d-")
    subset(src, data, a.train, a.test)
    variants = [v for v in a.torch.split(",") if v]
    rows = {k: [] for k in ["nnc"] + (["baseline"] if a.baseline else []) + variants}
    for i in range(a.repeat):
        rows["nnc"].append(run_nnc(a.nnc, data, a.epochs, a.train, env))
        if a.baseline:
            rows["baseline"].append(run_nnc(a.baseline, data, a.epochs, a.train, env))
        for v in variants:
            rows[v].append(run_torch(a.jax_python or a.python if v == "jax" else a.python, v, data, a.epochs, env))
        n = rows["nnc"][-1]
        msg = (f"run {i + 1}: nnc {n['steps_per_s']:.2f} steps/s (warm-up epoch {n['warmup_steps_per_s']:.2f}), "
               f"{n['rss_mib']:.0f} MiB")
        for v in (["baseline"] if a.baseline else []) + variants:
            t = rows[v][-1]
            msg += (f"; {name(v)} {t['steps_per_s']:.2f} steps/s (warm-up epoch {t['warmup_steps_per_s']:.2f}), "
                    f"{t['rss_mib']:.0f} MiB, ratio {n['steps_per_s'] / t['steps_per_s']:.2f}")
        msg += "; test accuracy " + ", ".join(f"{k} {r[-1]['test_accuracy']:.4f}" for k, r in rows.items())
        print(msg, flush=True)
    ns = med([r["steps_per_s"] for r in rows["nnc"]])
    print(f"\nmedian of {a.repeat}, steps/s over epochs 2-{a.epochs} of {(a.train + 127) // 128} steps:")
    print("| framework | steps/s | nnc / it | peak RSS (median) |")
    print("|---|---|---|---|")
    for k, r in rows.items():
        s = med([x["steps_per_s"] for x in r])
        print(f"| {name(k)} | {s:.2f} | {ns / s:.2f} | "
              f"{med([x['rss_mib'] for x in r]):.0f} MiB |")


if __name__ == "__main__":
    main()
