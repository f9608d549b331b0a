"""ringdown_vi.py: training speed and peak memory of models/ringdown_vi.nn (workload 3: a 1-D
convolutional root, two heads ending in variational layers) in nnc against the same network in
PyTorch with a hand-written Bayes-by-backprop layer (bench/torch_ringdown_vi.py); with
--model ringdown_dense, models/ringdown_dense.nn against the twin's plain Linear heads
(torch_ringdown_vi.py --dense).

Both train on the files models/data/make_ringdown.py writes into models/data (8192 training
rows, 10 % held out for validation: 7373 rows, 116 steps an epoch at batch 64; nnc reads them
through the model's npy() paths, PyTorch from the same folder).  Each runs --epochs epochs
(default 3; nnc through `--set iterations=116 x epochs`); the first is the warm-up (page faults of
nnc's arena, PyTorch's allocator caches and oneDNN's kernel choice), and training steps/s are
counted over the later ones: steps / seconds of the step loop (batch gathering, forward,
backward, Adam; not the evaluation).  nnc's seconds of an epoch are its training rows over the
samples/s of its metrics.jsonl line.  The frameworks alternate, each run in its own child
process, whose peak RSS is its own.  Equal threads (2: OpenBLAS for nnc; torch.set_num_threads
with OMP_WAIT_POLICY=passive for PyTorch).  The parameter counts of both are printed too (nnc's
from `nnc check`'s layer table, which leaves out the heads' two learned noise sigmas).  Run from
the repository root:
    python3 bench/ringdown_vi.py [--repeat N] [--nnc build/nnc] [--python /path/to/python-with-torch]
                                 [--model ringdown_vi|ringdown_dense] [--epochs 3] [--threads 2]
                                 [--model-file FILE.nn]
--model-file trains another copy of the model in nnc (an older nnc, such as a frozen copy, may not
parse the tree's current one: `git show HEAD:models/ringdown_vi.nn` into a folder with a link
`data` to models/data).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

from peak_rss import child  # bench/peak_rss.py (Python puts the script's folder on sys.path)

STEPS_PER_EPOCH = 116  # ceil(7373 / 64); checked against nnc's metrics.jsonl below


def run_nnc(nnc, path, epochs, env):
    out = tempfile.mkdtemp(prefix="nnc-bench-")
    stdout, rss = child([nnc, "train", path, "--set", f"iterations={STEPS_PER_EPOCH * epochs}",
                         "--out", out, "--no-progress", "--checkpoint-every", "0"], env)
    n_train = int(re.search(r"(\d+) training samples", stdout).group(1))
    lines = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    train = [l for l in lines if l["split"] == "train"]
    test = [l for l in lines if l["split"] == "test"]
    if train[0]["step"] != STEPS_PER_EPOCH or len(train) != epochs:
        sys.exit(f"nnc ran {len(train)} epochs of {train[0]['step']} steps, not {epochs} of {STEPS_PER_EPOCH}")
    timed = train[1:] or train
    secs = sum(n_train / l["samples_per_s"] for l in timed)
    return {"steps_per_s": STEPS_PER_EPOCH * len(timed) / secs,
            "warmup_steps_per_s": STEPS_PER_EPOCH / (n_train / train[0]["samples_per_s"]),
            "test_loss": test[-1]["loss"], "rss_mib": rss}


def run_torch(python, model, epochs, env):
    out, rss = child([python, "bench/torch_ringdown_vi.py", "--epochs", str(epochs)]
                     + (["--dense"] if model == "ringdown_dense" else []), env)
    lines = [json.loads(l) for l in out.strip().splitlines() if l.startswith("{")]
    timed = lines[1:] or lines
    return {"steps_per_s": sum(l["steps"] for l in timed) / sum(l["train_s"] for l in timed),
            "warmup_steps_per_s": lines[0]["steps_per_s"], "test_loss": lines[-1]["test_loss"],
            "params": lines[0]["params"], "rss_mib": rss}


def nnc_params(nnc, path, env):
    out = subprocess.run([nnc, "check", path], env=env, capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^\s*total\s+(\d+)", out, re.M).group(1))


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nnc", default="build/nnc")
    ap.add_argument("--python", default=sys.executable, help="the interpreter that has torch")
    ap.add_argument("--model", default="ringdown_vi", choices=["ringdown_vi", "ringdown_dense"])
    ap.add_argument("--model-file", default=None,
                    help="the .nn file nnc trains (default models/MODEL.nn; its npy paths are relative to it)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3, help="the first is the warm-up")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads),
               OMP_WAIT_POLICY="passive", BENCH_THREADS=str(a.threads))
    env.setdefault("NNC_STDLIB", os.path.abspath("stdlib"))  # a copy of nnc outside the tree finds the library
    path = a.model_file or f"models/{a.model}.nn"
    rows = {"nnc": [], "torch": []}
    for i in range(a.repeat):
        rows["nnc"].append(run_nnc(a.nnc, path, a.epochs, env))
        rows["torch"].append(run_torch(a.python, a.model, a.epochs, env))
        n, t = rows["nnc"][-1], rows["torch"][-1]
        print(f"run {i + 1}: nnc {n['steps_per_s']:.2f} steps/s (warm-up epoch {n['warmup_steps_per_s']:.2f}), "
              f"{n['rss_mib']:.0f} MiB; PyTorch {t['steps_per_s']:.2f} steps/s (warm-up epoch "
              f"{t['warmup_steps_per_s']:.2f}), {t['rss_mib']:.0f} MiB; ratio {n['steps_per_s'] / t['steps_per_s']:.2f}, "
              f"RSS ratio {n['rss_mib'] / t['rss_mib']:.2f}; test loss nnc {n['test_loss']:.4f}, "
              f"PyTorch {t['test_loss']:.4f}", flush=True)
    print(f"\nparameters: nnc {nnc_params(a.nnc, path, env)} (nnc check's table, without the two noise sigmas), "
          f"PyTorch {rows['torch'][0]['params']} (with them)")
    ns, ts = (med([x["steps_per_s"] for x in rows[k]]) for k in ("nnc", "torch"))
    nr, tr = (med([x["rss_mib"] for x in rows[k]]) for k in ("nnc", "torch"))
    print(f"{a.model}, median of {a.repeat}, steps/s over epochs 2-{a.epochs} of {STEPS_PER_EPOCH} steps:")
    print("| framework | steps/s | peak RSS |")
    print("|---|---|---|")
    print(f"| nnc | {ns:.2f} | {nr:.0f} MiB |")
    print(f"| PyTorch | {ts:.2f} | {tr:.0f} MiB |")
    print(f"| nnc / PyTorch | {ns / ts:.2f} | {nr / tr:.2f} |")


if __name__ == "__main__":
    main()
