#!/bin/sh
# bench/seed_experiment.sh: the seed's experiment at small scale (workload 5): a learning-rate
# sensitivity sweep of SGD on one of DeepOBS's test problems (fmnist_mlp by default), against the
# learning rate pre_sgd picks by itself.  Both run as nnc sweeps into one DeepOBS tree (OUT), with
# DeepOBS's protocol; pre_sgd's rate, chosen at the start of every epoch, is read from its runs'
# metrics.  The figure marks the rate pre_sgd chose first on SGD's curve.  Runs that diverge are
# marked FAILED by the sweep (large learning rates do) and left out.  Results: bench/README.md.
#   sh bench/seed_experiment.sh [OUT]
#   (NNC=build/nnc, MODEL=models/fmnist_mlp.nn, EPOCHS=5, SEEDS=3, GRID='logspace(1e-3,1,7)', PRE=pre_sgd)
set -eu
nnc=${NNC:-build/nnc}
model=${MODEL:-models/fmnist_mlp.nn}
name=$(basename "$model" .nn)
out=${1:-bench/out/seed_experiment}
epochs=${EPOCHS:-5}
seeds=${SEEDS:-3}
grid=${GRID:-logspace(1e-3,1,7)}
pre=${PRE:-pre_sgd}
mkdir -p "$(dirname "$out")"
# (status 1: some runs diverged, marked FAILED; the others are published)
"$nnc" sweep "$model" --grid "lr=$grid" --seeds "$seeds" --set epochs="$epochs" --out "$out" --no-progress || [ $? = 1 ]
# the same test problem with pre_sgd in place of sgd (the model's name, and so its folder, stays)
sed "s/^  optimizer .*/  optimizer $pre/" "$model" > "$(dirname "$model")/.$name.pre_sgd.nn"
"$nnc" sweep "$(dirname "$model")/.$name.pre_sgd.nn" --grid scale=1 --seeds "$seeds" --set epochs="$epochs" --out "$out" \
  --no-progress || [ $? = 1 ]
rm -f "$(dirname "$model")/.$name.pre_sgd.nn"
/usr/bin/python3 - "$out" "$name" <<'PY'
import glob, json, statistics, sys
out, name = sys.argv[1], sys.argv[2]
lrs = {}
for f in sorted(glob.glob(f"{out}.runs/{name}/pre_sgd/*/seed_*/metrics.jsonl")):
    for line in open(f):
        o = json.loads(line)
        if o.get("split") == "train":
            lrs.setdefault(o["epoch"], []).append(o["lr"])
print("pre_sgd's learning rate by epoch (mean over seeds):",
      ", ".join(f"{e}: {statistics.mean(v):.4g}" for e, v in sorted(lrs.items())))
open(f"{out}.pre_sgd_lr", "w").write(f"{statistics.mean(lrs[min(lrs)]):.6g}\n")
PY
/usr/bin/python3 runtime/plot_sweep.py "$out" --mark "$(cat "$out.pre_sgd_lr")" --title "$name, $epochs epochs, $seeds seeds"
