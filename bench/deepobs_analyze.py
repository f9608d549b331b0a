"""deepobs_analyze.py: DeepOBS 1.1.2's own analyzer on an `nnc sweep` directory.

Run by bench/deepobs_analyze.sh inside a virtual environment that has deepobs 1.1.2 from PyPI.
DeepOBS imports TensorFlow when it loads, though its analyzer never uses it: a stub module
stands in for it (workloads.md allows either).  Its LaTeX export (matplotlib2tikz, texify_*)
fails with current matplotlib and pandas, so those three functions are replaced by no-ops.
What it draws and prints is DeepOBS's: for every test problem and optimizer in the directory,
the performance plot (test and training loss and accuracy against the epoch, the setting with
the most runs) and the learning-rate sensitivity, and the benchmark table (performance, speed,
tuneability); for DeepOBS's own benchmark problems (fmnist_2c2d, quadratic_deep) also its
top-level plot_lr_sensitivity, plot_performance and plot_table.
    python deepobs_analyze.py SWEEP_DIR FIGURE_DIR
"""
import os
import sys
import types
import warnings

warnings.simplefilter("ignore")
tf = types.ModuleType("tensorflow")  # the only import-time use: tensorflow/config.py's float32
tf.float32 = "float32"
sys.modules["tensorflow"] = tf

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.show = lambda *a, **k: None
from deepobs.analyzer import analyze, analyze_utils  # noqa: E402

for name in ("texify_lr_sensitivity", "texify_plot_performance", "texify_plot_table"):
    setattr(analyze_utils, name, lambda *a, **k: None)

sweep, figures = sys.argv[1], sys.argv[2]
os.makedirs(figures, exist_ok=True)
A = analyze_utils.Analyzer(sweep)
print(f"DeepOBS {getattr(__import__('deepobs'), '__version__', '1.1.2')} analyzer on {sweep}: "
      f"{', '.join(f'{tp} ({len(A.testproblems[tp].optimizers)} optimizers)' for tp in A.testproblems)}")
drawn = []
for tp, prob in A.testproblems.items():
    for oname, opt in prob.optimizers.items():
        fig, ax = plt.subplots(4, 1, sharex=True, figsize=(7, 10))
        opt.plot_performance(ax, mode="most")  # test loss, train loss, test accuracy, train accuracy
        for a, t in zip(ax, ("test loss", "train loss", "test accuracy", "train accuracy")):
            a.set_ylabel(t)
        ax[-1].set_xlabel("epoch")
        fig.suptitle(f"DeepOBS analyzer: {tp}, {oname} (setting with the most runs)")
        path = os.path.join(figures, f"{tp}__{oname}__performance.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        drawn.append(path)
        fig, ax = plt.subplots(figsize=(7, 4))
        opt.plot_lr_sensitivity(ax, mode="final")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("final performance / best")
        ax.set_title(f"DeepOBS analyzer: {tp}, {oname}, learning-rate sensitivity")
        fig.tight_layout()
        path = os.path.join(figures, f"{tp}__{oname}__lr_sensitivity.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        drawn.append(path)
        table = opt.get_bm_table({"Performance": {}, "Speed": {}, "Tuneability": {}}, mode="most")
        print(f"\n{tp} / {oname}: DeepOBS's benchmark table")
        analyze_utils.beautify_plot_table({tp: table})
    if tp in ("fmnist_2c2d", "quadratic_deep", "mnist_vae", "fmnist_vae", "cifar10_3c3d", "cifar100_allcnnc",
              "svhn_wrn164", "tolstoi_char_rnn"):
        best = analyze.get_best_run(A)
        print(f"\nget_best_run: {best}")
        for fn in ("plot_lr_sensitivity", "plot_performance"):
            getattr(analyze, fn)(A)
            path = os.path.join(figures, f"analyze__{fn}.png")
            plt.gcf().savefig(path, dpi=100)
            plt.close("all")
            drawn.append(path)
        analyze.plot_table(A)
print("\nfigures:\n  " + "\n  ".join(drawn))
