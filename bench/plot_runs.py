"""plot_runs.py: learning curves of several training runs in one PNG.

Each RUN is a directory that `nnc train` or a built trainer wrote (it reads result.json, the
DeepOBS-style summary, or else metrics.jsonl).  Three panels against the epoch: training
loss, test loss, test accuracy (validation ones too where the run has them).  Run with
Debian's interpreter (python3-matplotlib):
    /usr/bin/python3 bench/plot_runs.py RUN [RUN ...] -o curves.png [--title TEXT]
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def load(run):
    """Per split, the losses and accuracies of each epoch."""
    result = os.path.join(run, "result.json")
    if os.path.exists(result):
        with open(result) as f:
            return json.load(f)
    r = {f"{s}_{k}": [] for s in ("train", "valid", "test") for k in ("losses", "accuracies")}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            o = json.loads(line)
            split = o.get("split")
            if split:
                r[f"{split}_losses"].append(o["loss"])
                if "accuracy" in o:
                    r[f"{split}_accuracies"].append(o["accuracy"])
    return r


def main():
    ap = argparse.ArgumentParser(description="learning curves of nnc runs")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("-o", "--output", default="curves.png")
    ap.add_argument("--title", default=None)
    a = ap.parse_args()
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("train_losses", "training loss"), ("test_losses", "test loss"), ("test_accuracies", "test accuracy")]
    for run in a.runs:
        try:
            r = load(run)
        except (OSError, ValueError, KeyError) as e:
            sys.exit(f"plot_runs.py: {run}: {e}")
        label = os.path.basename(os.path.normpath(run))
        for p, (key, title) in enumerate(panels):
            ys = r.get(key) or []
            if ys:
                line, = ax[p].plot(range(1, len(ys) + 1), ys, marker="o", markersize=3, label=label)
                valid = r.get(key.replace("test", "valid")) if key.startswith("test") else None
                if valid:
                    ax[p].plot(range(1, len(valid) + 1), valid, linestyle="--", color=line.get_color(), alpha=0.6)
            ax[p].set_title(title + (" (dashed: validation)" if key.startswith("test") else ""))
            ax[p].set_xlabel("epoch")
            ax[p].xaxis.set_major_locator(MaxNLocator(integer=True))
            ax[p].grid(alpha=0.3)
    ax[0].legend(fontsize=8)
    if a.title:
        fig.suptitle(a.title)
    fig.tight_layout()
    fig.savefig(a.output, dpi=110)
    print(f"wrote {a.output}: {len(a.runs)} runs")


if __name__ == "__main__":
    main()
