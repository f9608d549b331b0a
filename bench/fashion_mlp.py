"""fashion_mlp.py: one epoch of models/fashion_mlp.nn in nnc against the same model in PyTorch.

Same machine, same run, same data and batch, equal threads (2: OpenBLAS for nnc; torch
with OMP_WAIT_POLICY=passive, without which it runs about 3x slower here).  Each framework
runs in its own child process so that its peak RSS is its own.  Reports steps/s (training
loop only), their ratio, test accuracy after the epoch, and peak RSS.  Run from the
repository root with Debian's interpreter:
    /usr/bin/python3 bench/fashion_mlp.py [--repeat N] [--nnc build/nnc]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


from peak_rss import child  # bench/peak_rss.py (Python puts the script's folder on sys.path)


def run_nnc(nnc, env):
    out = tempfile.mkdtemp(prefix="nnc-bench-")
    _, rss = child([nnc, "train", "models/fashion_mlp.nn", "--set", "epochs=1", "--out", out, "--no-progress"], env)
    lines = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    train = [l for l in lines if l["split"] == "train"][-1]
    test = [l for l in lines if l["split"] == "test"][-1]
    train_s = 60000 / train["samples_per_s"]  # one epoch of the 60,000 training images
    return {"steps_per_s": train["step"] / train_s, "train_s": train_s, "test_accuracy": test["accuracy"],
            "rss_mib": rss}


def run_torch(env):
    out, rss = child([sys.executable, "bench/torch_fashion_mlp.py", "1"], env)
    r = json.loads(out.strip().splitlines()[-1])
    r["rss_mib"] = rss
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nnc", default="build/nnc")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2", OMP_WAIT_POLICY="passive",
               BENCH_THREADS="2")
    rows = []
    for i in range(a.repeat):
        n = run_nnc(a.nnc, env)
        t = run_torch(env)
        rows.append((n, t))
        print(f"run {i + 1}: nnc {n['steps_per_s']:.1f} steps/s, PyTorch {t['steps_per_s']:.1f} steps/s, "
              f"ratio {n['steps_per_s'] / t['steps_per_s']:.2f}; test accuracy nnc {n['test_accuracy']:.4f}, "
              f"PyTorch {t['test_accuracy']:.4f}; peak RSS nnc {n['rss_mib']:.0f} MiB, PyTorch {t['rss_mib']:.0f} MiB",
              flush=True)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    ns, ts = med([r[0]["steps_per_s"] for r in rows]), med([r[1]["steps_per_s"] for r in rows])
    print(f"median: nnc {ns:.1f} steps/s, PyTorch {ts:.1f} steps/s, ratio {ns / ts:.2f}")


if __name__ == "__main__":
    main()
