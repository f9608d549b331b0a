#!/bin/sh
# bench/seed_experiment.sh: the seed's experiment at small scale (workload 5): a learning-rate
# sensitivity sweep of SGD on DeepOBS's fmnist_mlp, against the learning rate pre_sgd picks by
# itself.  Both run as nnc sweeps into one DeepOBS tree (OUT), with DeepOBS's protocol; pre_sgd's
# rate, chosen at the start of every epoch, is read from its runs' metrics.  The figure marks the
# rate pre_sgd chose first on SGD's curve.  Results: bench/README.md.
#   sh bench/seed_experiment.sh [OUT]   (NNC=build/nnc, EPOCHS=5, SEEDS=3, GRID='logspace(1e-3,1,7)')
set -eu
nnc=${NNC:-build/nnc}
out=${1:-bench/out/seed_experiment}
epochs=${EPOCHS:-5}
seeds=${SEEDS:-3}
grid=${GRID:-logspace(1e-3,1,7)}
mkdir -p "$(dirname "$out")"
"$nnc" sweep models/fmnist_mlp.nn --grid "lr=$grid" --seeds "$seeds" --set epochs="$epochs" --out "$out" --no-progress
# the same test problem with pre_sgd in place of sgd (the model's name, and so its folder, stays fmnist_mlp)
sed 's/^  optimizer .*/  optimizer pre_sgd/' models/fmnist_mlp.nn > "$out.pre_sgd.nn"
"$nnc" sweep "$out.pre_sgd.nn" --grid scale=1 --seeds "$seeds" --set epochs="$epochs" --out "$out" --no-progress
/usr/bin/python3 - "$out" <<'PY'
import glob, json, statistics, sys
out = sys.argv[1]
lrs = {}
for f in sorted(glob.glob(f"{out}.runs/fmnist_mlp/pre_sgd/*/seed_*/metrics.jsonl")):
    for line in open(f):
        o = json.loads(line)
        if o.get("split") == "train":
            lrs.setdefault(o["epoch"], []).append(o["lr"])
print("pre_sgd's learning rate by epoch (mean over seeds):",
      ", ".join(f"{e}: {statistics.mean(v):.4g}" for e, v in sorted(lrs.items())))
open(f"{out}.pre_sgd_lr", "w").write(f"{statistics.mean(lrs[min(lrs)]):.6g}\n")
PY
/usr/bin/python3 runtime/plot_sweep.py "$out" --mark "$(cat "$out.pre_sgd_lr")" --title "fmnist_mlp, $epochs epochs, $seeds seeds"
