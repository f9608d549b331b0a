"""plot_sweep.py: the figures of an `nnc sweep` directory (DeepOBS's layout), as PNG.  `nnc sweep`
runs it when a sweep ends (runtime/sweep.c); it also runs by hand, on any sweep directory.

For each test problem DIR/<testproblem>/, two figures in DIR (not inside the problem's folder,
where DeepOBS's analyzer takes every entry for an optimizer):
  <testproblem>_learning_curves.png  per setting (optimizer and hyperparameters), the test accuracy (or test
                       loss) and the training loss against the epoch: the mean over the seeds
                       and a band of one standard deviation;
  <testproblem>_lr_sensitivity.png   the final test accuracy (or loss) against the learning rate, per optimizer
                       (settings that differ in other hyperparameters are separate lines), with
                       the seeds' standard deviation as error bars; `--mark LR` draws a vertical
                       line there (pre_sgd's chosen rate, say).
Run with Debian's interpreter and python3-matplotlib:
    /usr/bin/python3 runtime/plot_sweep.py DIR [--mark LR] [--title TEXT]
"""
import argparse
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def settings(problem_dir):
    """(optimizer, setting folder, [result dicts]) for every setting with results."""
    out = []
    for opt in sorted(os.listdir(problem_dir)):
        od = os.path.join(problem_dir, opt)
        if not os.path.isdir(od) or opt.startswith("."):
            continue
        for st in sorted(os.listdir(od)):
            files = sorted(glob.glob(os.path.join(od, st, "random_seed__*.json")))
            if files:
                out.append((opt, st, [json.load(open(f)) for f in files]))
    return out


def metric(runs):
    """The per-epoch test metric of each run and its name: accuracies when every run has them."""
    if all(r.get("test_accuracies") for r in runs):
        return [r["test_accuracies"] for r in runs], "test accuracy"
    if all(r.get("test_losses") for r in runs):
        return [r["test_losses"] for r in runs], "test loss"
    return [r["train_losses"] for r in runs], "training loss"


def label(opt, setting):
    keys = setting.split("__")[4:]
    pairs = [f"{keys[i]}={keys[i + 1]}" for i in range(0, len(keys) - 1, 2) if keys[i] not in ("nesterov", "weight_decay")]
    return f"{opt} " + " ".join(pairs)


def plot_problem(problem_dir, mark, title):
    found = settings(problem_dir)
    if not found:
        return False
    name = os.path.basename(problem_dir.rstrip("/"))
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    for opt, st, runs in found:
        curves, what = metric(runs)
        n = min(len(c) for c in curves)
        m = np.array([c[:n] for c in curves], float)
        ep = np.arange(n)
        line, = ax[0].plot(ep, m.mean(0), label=label(opt, st))
        ax[0].fill_between(ep, m.mean(0) - m.std(0), m.mean(0) + m.std(0), color=line.get_color(), alpha=0.2)
        tl = np.array([r["train_losses"][:n] for r in runs], float)
        ax[1].plot(ep, tl.mean(0), color=line.get_color())
        ax[1].fill_between(ep, tl.mean(0) - tl.std(0), tl.mean(0) + tl.std(0), color=line.get_color(), alpha=0.2)
        ax[0].set_ylabel(what)
    ax[1].set_ylabel("training loss")
    ax[1].set_yscale("log")
    for a in ax:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    ax[0].legend(fontsize=7)
    fig.suptitle(f"{title or name}: mean and one standard deviation over seeds")
    fig.tight_layout()
    top = os.path.dirname(problem_dir.rstrip("/"))
    fig.savefig(os.path.join(top, f"{name}_learning_curves.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = {}
    for opt, st, runs in found:
        lr = runs[0]["optimizer_hyperparams"].get("lr")
        rest = st.split("__")[4:]
        key = (opt, tuple((rest[i], rest[i + 1]) for i in range(0, len(rest) - 1, 2) if rest[i] != "lr"))
        curves, what = metric(runs)
        finals = [c[-1] for c in curves]
        groups.setdefault(key, []).append((lr, np.mean(finals), np.std(finals), what))
    for (opt, rest), pts in sorted(groups.items()):
        pts.sort()
        if opt in ("pre_sgd", "adaptive_sgd", "only_adaptive_sgd"):  # picks its own rate: its result as a band
            m, sd = pts[0][1], pts[0][2]
            line = ax.axhline(m, ls=":", lw=1.5, label=f"{opt} (chooses its learning rate): {m:.4f}")
            ax.axhspan(m - sd, m + sd, color=line.get_color(), alpha=0.15)
            continue
        lab = opt + "".join(f" {k}={v}" for k, v in rest if k not in ("nesterov", "weight_decay"))
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3, label=lab)
        ax.set_ylabel("final " + pts[0][3])
    if mark:
        ax.axvline(mark, color="k", ls="--", lw=1, label=f"lr {mark:g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{title or name}: learning-rate sensitivity")
    fig.tight_layout()
    fig.savefig(os.path.join(top, f"{name}_lr_sensitivity.png"), dpi=110)
    plt.close(fig)
    print(f"wrote {top}/{name}_learning_curves.png and {name}_lr_sensitivity.png ({len(found)} settings)")
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--mark", type=float, default=None)
    ap.add_argument("--title", default=None)
    a = ap.parse_args()
    any_done = False
    for p in sorted(os.listdir(a.dir)):
        pd = os.path.join(a.dir, p)
        if os.path.isdir(pd) and not p.startswith("."):
            any_done |= plot_problem(pd, a.mark, a.title)
    if not any_done:
        sys.exit(f"{a.dir}: no sweep results (DIR/<testproblem>/<optimizer>/<setting>/random_seed__*.json)")


if __name__ == "__main__":
    main()
