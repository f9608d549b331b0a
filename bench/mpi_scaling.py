"""mpi_scaling.py NNC [ROUNDS]: data-parallel training on this machine, and on paper beyond it.

Measured: samples/s of training (the epoch line's, evaluation left out) for fashion_mlp and the
gated CNN (fashion_sparse_cnn) as 1 rank x 1 thread, 1 rank x 2 threads and 2 ranks x 1 thread
(mpirun --oversubscribe -np 2, NNC_THREADS=1 OPENBLAS_NUM_THREADS=1), the last with the gradient
block summed in one call after the backward pass and in buckets of 4 MiB during it; for 2 ranks,
the seconds per step spent waiting for the sums after the gradient program, and their share of
the step.  The configurations are
interleaved, ROUNDS times (default 3), and medians are quoted.

On paper (docs/parallel.md): the step time at N nodes of this kind, each training its own batch
of the model's size (weak scaling, as Horovod's figures are), from the measured step time of one
node (1 rank x 2 threads), the gradient block's bytes (`nnc emit --plan`) and a ring all-reduce on
a stated network: 2 (N - 1) / N * bytes / bandwidth + 2 (N - 1) * latency.  Efficiency is the
one-node step time over the N-node step time, with the all-reduce after the backward pass, and
with it overlapped with the backward pass (taken as 2/3 of the step) as nnc's buckets are on the
CPU, at best."""
import os
import re
import statistics
import subprocess
import sys

nnc = os.path.abspath(sys.argv[1])
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = {"fashion_mlp": 400, "fashion_sparse_cnn": 60}  # steps per run
CONFIGS = [("1 rank x 1 thread", 0, "1", None), ("1 rank x 2 threads", 0, "2", None),
           ("2 ranks x 1 thread, one all-reduce after the backward", 2, "1", "0"),
           ("2 ranks x 1 thread, buckets of 4 MiB during the backward", 2, "1", "4")]


def run(model, steps, ranks, threads, bucket):
    env = dict(os.environ, NNC_THREADS=threads, OPENBLAS_NUM_THREADS=threads, NNC_ALLREDUCE_BUCKET=bucket or "0")
    cmd = [nnc, "train", f"{root}/models/{model}.nn", "--set", f"iterations={steps}", "--out", f"/tmp/mpi_scaling_{model}",
           "--no-progress", "--checkpoint-every", "0"]
    if ranks:
        cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-x", "NNC_THREADS", "-x", "OPENBLAS_NUM_THREADS", "-x",
               "NNC_ALLREDUCE_BUCKET", "-np", str(ranks)] + cmd
    text = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True).stdout
    sps = float(re.search(r"([0-9.]+) samples/s", text).group(1))
    m = re.search(r"data parallel: ([0-9.]+) s of the steps' ([0-9.]+) s", text)
    return sps, (float(m.group(1)) / steps if m else None), (float(m.group(1)) / float(m.group(2)) if m else None)


def grad_bytes(model):
    plan = subprocess.run([nnc, "emit", "--plan", f"{root}/models/{model}.nn"], stdout=subprocess.PIPE, text=True, check=True).stdout
    return int(re.search(r"gradient block .*: @\d+ \+(\d+)", plan).group(1))


cpu = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")][0]
print(f"# {cpu}, {os.cpu_count()} cores; medians of {rounds} interleaved rounds")
step_s = {}
for model, steps in MODELS.items():
    res = {c[0]: [] for c in CONFIGS}
    for _ in range(rounds):
        for name, ranks, threads, bucket in CONFIGS:
            res[name].append(run(model, steps, ranks, threads, bucket))
    print(f"\n{model} ({steps} steps, gradient block {grad_bytes(model) / 2**20:.2f} MiB)")
    print("| configuration | samples/s | waiting for the all-reduce, per step | its share of the step |")
    print("|---|---:|---:|---:|")
    for name, _, _, _ in CONFIGS:
        sps = statistics.median(r[0] for r in res[name])
        ar = [r[1] for r in res[name] if r[1] is not None]
        share = [r[2] for r in res[name] if r[2] is not None]
        print(f"| {name} | {sps:.0f} | {statistics.median(ar) * 1e3:.2f} ms | {statistics.median(share) * 100:.1f} % |" if ar
              else f"| {name} | {sps:.0f} | - | - |")
    batch = int(re.search(r"batch\s+(\d+)", open(f"{root}/models/{model}.nn").read()).group(1))
    step_s[model] = batch / statistics.median(r[0] for r in res["1 rank x 2 threads"])

# on paper: a node of this kind, a 25 Gb/s network with 5 us latency
BW, LAT = 25e9 / 8, 5e-6
for model in list(step_s) + ["ringdown_vi"]:
    if model not in step_s:  # measured here on one node, 1 rank x 2 threads
        text = subprocess.run([nnc, "train", f"{root}/models/{model}.nn", "--set", "iterations=300", "--set", "eval_every=100000",
                               "--out", "/tmp/mpi_scaling_rd", "--no-progress", "--checkpoint-every", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True).stdout
        batch = int(re.search(r"batch (\d+)", text).group(1))
        step_s[model] = batch / float(re.search(r"([0-9.]+) samples/s", text).group(1))
    b = grad_bytes(model)
    print(f"\n{model}: one node's step {step_s[model] * 1e3:.2f} ms, gradient block {b / 2**20:.2f} MiB; ring all-reduce on "
          f"25 Gb/s, 5 us")
    print("| nodes | all-reduce | efficiency (after the backward) | (overlapped with the backward) |")
    print("|---:|---:|---:|---:|")
    for n in (2, 16, 128, 1024):
        ar = 2 * (n - 1) / n * b / BW + 2 * (n - 1) * LAT
        t = step_s[model]
        print(f"| {n} | {ar * 1e3:.2f} ms | {t / (t + ar) * 100:.0f} % | {t / (t + max(0.0, ar - 2 * t / 3)) * 100:.0f} % |")
