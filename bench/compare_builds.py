"""compare_builds.py: training speed of two nnc binaries (say, before and after a refactor), interleaved.

For each model, runs `NNC train MODEL --set epochs=E --no-progress --out TMP` with each binary
in turn, --repeat times (A B A B ...), and reports every epoch's training samples/s (from
metrics.jsonl: the step loop, data gathering included, evaluation excluded), the medians per
binary and epoch and the ratio B/A.  Threads: OPENBLAS_NUM_THREADS (default 2).  Run from the
repository root:
    python3 bench/compare_builds.py A/nnc B/nnc [--repeat 5] [--model models/fashion_mlp.nn:1] ...
Each --model is PATH:EPOCHS (default: fashion_mlp for 1 epoch, fashion_sparse for 2).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def train(nnc, model, epochs, env):
    out = tempfile.mkdtemp(prefix="nnc-cmp-")
    cmd = [nnc, "train", model, "--set", f"epochs={epochs}", "--no-progress", "--out", out]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    lines = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    return [l["samples_per_s"] for l in lines if l.get("split") == "train"]


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", action="append", default=None)
    ap.add_argument("--threads", default=os.environ.get("OPENBLAS_NUM_THREADS", "2"))
    a = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS=a.threads)
    models = a.model or ["models/fashion_mlp.nn:1", "models/fashion_sparse.nn:2"]
    for spec in models:
        path, epochs = spec.rsplit(":", 1)
        runs = {"A": [], "B": []}
        for i in range(a.repeat):
            for k, nnc in (("A", a.a), ("B", a.b)):
                runs[k].append(train(nnc, path, int(epochs), env))
                print(f"{os.path.basename(path)} run {i + 1} {k}: " + ", ".join(f"{s:.0f}" for s in runs[k][-1]) +
                      " samples/s", flush=True)
        print(f"\n{os.path.basename(path)}, median of {a.repeat} (samples/s; paired: the median of B/A over the"
              " A-B pairs run back to back, which cancels slow drifts in the machine's load):")
        print("| epoch | A | B | B / A | paired B / A | A runs | B runs |")
        print("|---|---|---|---|---|---|---|")
        for e in range(int(epochs)):
            ma, mb = med([r[e] for r in runs["A"]]), med([r[e] for r in runs["B"]])
            pair = med([rb[e] / ra[e] for ra, rb in zip(runs["A"], runs["B"])])
            print(f"| {e + 1} | {ma:.0f} | {mb:.0f} | {mb / ma:.3f} | {pair:.3f} | " +
                  " ".join(f"{r[e]:.0f}" for r in runs["A"]) + " | " + " ".join(f"{r[e]:.0f}" for r in runs["B"]) + " |")
        print(flush=True)


if __name__ == "__main__":
    main()
