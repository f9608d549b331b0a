"""luna_toy.py: workload 4's finding and speed (see bench/README.md, "luna_toy").

1. The finding.  Trains models/luna_toy.nn and models/nlm_toy.nn with built trainers (their
   10,000 iterations and the head's fit), predicts each head's mean and sd on the grid over
   [-5, 5], and reports, inside the gap (|x| < 2), on the data (2 <= |x| <= 4) and beyond it
   (|x| > 4), the mean predictive sd and the head's own part of it, sqrt(sd^2 - 1 / beta), with
   LUNA's over NLM's; and each head's RMSE on the training data.  --plot FILE.png draws both
   predictive bands (mean +- 2 sd) over the data and the true x^3 (Debian's python3-matplotlib).
2. Speed.  The whole LUNA run's wall time (10,000 iterations, evaluation every 1,000, the
   head's fit), with a checkpoint after every epoch (the default; an epoch is one step here)
   and with --checkpoint-every 0; and training steps/s against bench/torch_luna_toy.py (the
   same loss in PyTorch, finite differences included) over --steps steps, runs interleaved,
   --repeat times, medians.
    python3 bench/luna_toy.py --nnc build/nnc --python /tmp/tvenv/bin/python --plot luna_toy.png
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "models", "data")


def build(nnc, name, out):
    trainer = os.path.join(out, name + ".tr")
    subprocess.run([nnc, "build", os.path.join(ROOT, "models", name + ".nn"), "-o", trainer], check=True, capture_output=True)
    return trainer


def train(trainer, run, *extra):
    t0 = time.perf_counter()
    subprocess.run([trainer, "train", "--out", run, "--no-progress", *extra], check=True, capture_output=True,
                   cwd=os.path.join(ROOT, "models"))
    return time.perf_counter() - t0


def finding(nnc, out, plot):
    grid = np.loadtxt(os.path.join(DATA, "luna_toy_grid.csv"), skiprows=1)
    regions = {"gap": np.abs(grid) < 2, "data": (np.abs(grid) >= 2) & (np.abs(grid) <= 4), "beyond": np.abs(grid) > 4}
    res = {}
    for name in ("luna_toy", "nlm_toy"):
        trainer, run = build(nnc, name, out), os.path.join(out, name)
        train(trainer, run, "--checkpoint-every", "0")
        pred = os.path.join(out, name + ".csv")
        subprocess.run([trainer, "predict", "--checkpoint", os.path.join(run, "checkpoint.safetensors"), "--input",
                        os.path.join(DATA, "luna_toy_grid.csv"), "--output", pred], check=True, capture_output=True)
        p = np.loadtxt(pred, delimiter=",", skiprows=1)
        head = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl")) if '"event":"head"' in line][0]
        own = np.sqrt(np.maximum(p[:, 1] ** 2 - 1 / head["beta"], 0))
        res[name] = {"mean": p[:, 0], "sd": p[:, 1], "train_rmse": head["train_rmse"], "test_rmse": head["test_rmse"],
                     **{f"sd_{r}": float(p[m, 1].mean()) for r, m in regions.items()},
                     **{f"own_{r}": float(own[m].mean()) for r, m in regions.items()}}
    print("| model | training RMSE | sd gap | sd data | sd beyond | head's own sd gap | data | beyond |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {r['train_rmse']:.3f} | {r['sd_gap']:.3f} | {r['sd_data']:.3f} | {r['sd_beyond']:.3f} | "
              f"{r['own_gap']:.3f} | {r['own_data']:.3f} | {r['own_beyond']:.3f} |")
    l, n = res["luna_toy"], res["nlm_toy"]
    print(f"| LUNA / NLM | | {l['sd_gap'] / n['sd_gap']:.2f}x | {l['sd_data'] / n['sd_data']:.2f}x | "
          f"{l['sd_beyond'] / n['sd_beyond']:.2f}x | {l['own_gap'] / n['own_gap']:.2f}x | {l['own_data'] / n['own_data']:.2f}x | "
          f"{l['own_beyond'] / n['own_beyond']:.2f}x |")
    if plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        d = np.loadtxt(os.path.join(DATA, "luna_toy_train.csv"), delimiter=",", skiprows=1)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        for ax, (name, title) in zip(axes, (("nlm_toy", "NLM (one head)"), ("luna_toy", "LUNA (50 heads, diverse gradients)"))):
            r = res[name]
            ax.fill_between(grid, r["mean"] - 2 * r["sd"], r["mean"] + 2 * r["sd"], color="tab:blue", alpha=0.25,
                            label="predictive mean +- 2 sd")
            ax.plot(grid, r["mean"], color="tab:blue")
            ax.plot(grid, grid ** 3, color="black", lw=0.8, ls="--", label="x^3")
            ax.scatter(d[:, 0], d[:, 1], s=8, color="tab:red", label="training data")
            ax.set_title(title)
            ax.set_xlabel("x")
            ax.set_ylim(-150, 150)
        axes[0].set_ylabel("y")
        axes[0].legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"plot written to {plot}")


def speed(nnc, python, out, steps, repeat):
    trainer = build(nnc, "luna_toy", out)
    whole = {"default": [], "no_ckpt": []}
    nnc_sps, torch_sps = [], []
    for _ in range(repeat):
        whole["default"].append(train(trainer, os.path.join(out, "w1")))
        whole["no_ckpt"].append(train(trainer, os.path.join(out, "w2"), "--checkpoint-every", "0"))
        # steps/s: the same training loop for `steps` steps, no checkpoints; its startup and head fit
        # are measured by a run of 20 steps and subtracted
        t_short = train(trainer, os.path.join(out, "s0"), "--checkpoint-every", "0", "--set", "iterations=20")
        t_long = train(trainer, os.path.join(out, "s1"), "--checkpoint-every", "0", "--set", f"iterations={steps + 20}")
        nnc_sps.append(steps / (t_long - t_short))
        if python:
            r = subprocess.run([python, os.path.join(ROOT, "bench", "torch_luna_toy.py"), "--train",
                                os.path.join(DATA, "luna_toy_train.csv"), "--steps", str(steps), "--threads", "2"],
                               check=True, capture_output=True, text=True)
            torch_sps.append(json.loads(r.stdout.strip().splitlines()[-1])["steps_per_s"])
    med = statistics.median
    print(f"whole LUNA run (10,000 iterations and the head's fit): {med(whole['default']):.2f} s with a checkpoint after "
          f"every epoch, {med(whole['no_ckpt']):.2f} s without (medians of {repeat}: "
          f"{', '.join(f'{t:.2f}' for t in whole['default'])} / {', '.join(f'{t:.2f}' for t in whole['no_ckpt'])})")
    print(f"training steps/s over {steps} steps: nnc {med(nnc_sps):.0f} ({', '.join(f'{v:.0f}' for v in nnc_sps)})", end="")
    if torch_sps:
        print(f", PyTorch {med(torch_sps):.0f} ({', '.join(f'{v:.0f}' for v in torch_sps)}): nnc / PyTorch "
              f"{med(nnc_sps) / med(torch_sps):.2f}x")
    else:
        print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nnc", default=os.path.join(ROOT, "build", "nnc"))
    ap.add_argument("--python", help="an interpreter with torch, for the PyTorch peer")
    ap.add_argument("--plot", help="the bands' figure, a PNG")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-finding", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    a = ap.parse_args()
    out = tempfile.mkdtemp(prefix="luna_bench_")
    print(f"CPU: {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}")
    if not a.skip_finding:
        finding(os.path.abspath(a.nnc), out, a.plot)
    if not a.skip_speed:
        speed(os.path.abspath(a.nnc), a.python, out, a.steps, a.repeat)


if __name__ == "__main__":
    sys.exit(main())
