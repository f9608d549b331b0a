"""fashion_sparse_cnn.py: workload 1 on a CNN, measured.  models/fashion_sparse_cnn.nn in nnc
(gated channels and units, dead ones removed after every epoch), and:

  torch    the same gated network in PyTorch with the same proximal L1 steps, penalty schedule
           and gate folding, and masks in place of removal (bench/torch_fashion_sparse_cnn.py):
           time from the start of training to the first epoch whose test accuracy is >= --target
           (0.90), where it stops, and peak RSS.
  static   the network at the widths fashion_sparse_cnn ended with, trained by nnc as long
           from the same seed with no penalty (its gates stay open and nothing is removed):
           the test accuracy pruning should match.

Per epoch it prints nnc's widths, training samples/s and test accuracy.  Same machine, same
run, equal threads (2 by default: OpenBLAS and nnc's row-parallel kernels; torch with
OMP_WAIT_POLICY=passive).  Run from the repository root:
    python3 bench/fashion_sparse_cnn.py [--epochs 10] [--nnc build/nnc] [--python PY-WITH-TORCH]
                                        [--skip torch,static]
"""
import argparse
import json
import re
import subprocess
import sys

from fashion_sparse import ENV, nnc_train, set_threads, split
from peak_rss import child

MODEL = "models/fashion_sparse_cnn.nn"
PENALTY_EPOCHS = 4  # the model's schedules end the penalties after 4 epochs; its gates then fold


def first_at(rows, acc, key_acc, key_time):
    return next(((r[key_time], r["epoch"]) for r in rows if r[key_acc] >= acc), (None, None))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--nnc", default="build/nnc")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", type=float, default=0.90)
    ap.add_argument("--skip", default="")
    a = ap.parse_args()
    set_threads(a.threads)
    skip = a.skip.split(",")

    out, rss = child([a.nnc, "train", MODEL, "--set", f"epochs={a.epochs}", "--out", "/tmp/nnc-bench-sparse-cnn",
                      "--no-progress"], ENV)
    lines = [json.loads(l) for l in open("/tmp/nnc-bench-sparse-cnn/metrics.jsonl")]
    mem = re.search(r"^memory: .*$", out, re.M)
    tr, te = split(lines, "train"), split(lines, "test")
    print(f"nnc: peak RSS {rss:.0f} MiB ({mem.group(0) if mem else ''})")
    print("| epoch | c1 | c2 | h | samples/s | speed-up | test accuracy | time since start (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for x, y in zip(tr, te):
        print(f"| {x['epoch']} | {x['c1.width']} | {x['c2.width']} | {x['h.width']} | {x['samples_per_s']:.0f} | "
              f"{x['samples_per_s'] / tr[0]['samples_per_s']:.1f}x | {y['accuracy']:.4f} | {y['time_s']:.1f} |")
    widths = (te[-1]["c1.width"], te[-1]["c2.width"], te[-1]["h.width"])
    t_nnc = first_at(te, a.target, "accuracy", "time_s")
    print(f"nnc ends at {widths[0]}-{widths[1]}-{widths[2]}, test accuracy {te[-1]['accuracy']:.4f}; "
          f"reaches {a.target} after epoch {t_nnc[1]}, {t_nnc[0]} s")

    if "torch" not in skip:
        tout, trss = child([a.python, "bench/torch_fashion_sparse_cnn.py", str(a.epochs), str(a.target), str(PENALTY_EPOCHS)],
                           ENV)
        rows = [json.loads(l) for l in tout.splitlines()]
        print(f"\nPyTorch (masked): peak RSS {trss:.0f} MiB")
        print("| epoch | c1 live | c2 live | h live | samples/s | test accuracy | time since start (s) |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['epoch']} | {r['live'][0]} | {r['live'][1]} | {r['live'][2]} | {r['samples_per_s']:.0f} | "
                  f"{r['test_accuracy']:.4f} | {r['time_s']:.1f} |")
        t_torch = first_at(rows, a.target, "test_accuracy", "time_s")
        ratio = f"{t_torch[0] / t_nnc[0]:.2f}" if t_torch[0] and t_nnc[0] else "n/a"
        print(f"time to {a.target}: nnc {t_nnc[0]} s (epoch {t_nnc[1]}), PyTorch {t_torch[0] and round(t_torch[0], 1)} s "
              f"(epoch {t_torch[1]}); ratio {ratio}")

    if "static" not in skip:
        s = nnc_train(a.nnc, MODEL, f"epochs={a.epochs}", f"channels1={widths[0]}", f"channels2={widths[1]}",
                      f"units={widths[2]}", "lambda=0", "lambda_c=0")
        acc = split(s, "test")[-1]["accuracy"]
        print(f"\nstatic {widths[0]}-{widths[1]}-{widths[2]} CNN, {a.epochs} epochs: test accuracy {acc:.4f}; "
              f"fashion_sparse_cnn: {te[-1]['accuracy']:.4f} (difference {100 * (te[-1]['accuracy'] - acc):+.2f} points)")


if __name__ == "__main__":
    main()
