#!/bin/sh
# bench/valgrind.sh: memcheck on a short training run of every model in models/ (two steps, or a
# few sampler iterations, on a 512-image subset of Fashion-MNIST where the model reads it; the
# convolutional ones with batches of 8; the ringdown models on the first 256 and 64 signals of
# their data, two weight draws per evaluation) and on a trainer's predict.  A model's run is clean when valgrind reports no error and no definite
# leak (exit status 0 with --error-exitcode).  Results: the notes and bench/README.md.
#   sh bench/valgrind.sh [OUT]   (NNC=build/nnc, MODELS='models/a.nn ...' (default every model);
#   needs valgrind and the models' data:
#   /usr/bin/python3 models/data/make_ringdown.py and make_quadratic_deep.py first)
set -u
nnc=${NNC:-build/nnc}
out=${1:-bench/out/valgrind}
mkdir -p "$out"
vg="valgrind --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite -q"
/usr/bin/python3 tests/train/idx_subset.py /usr/share/datasets/fashion-mnist "$out/fm" 512 128
# the ringdown models read their arrays beside them: a copy of each model with the first signals
mkdir -p "$out/rd/data"
/usr/bin/python3 -c "
import numpy as np
for split, n in (('train', 256), ('test', 64)):
    for part in ('x', 'mass', 'spin'):
        a = np.load(f'models/data/ringdown_{split}_{part}.npy')[:n]
        np.save(f'$out/rd/data/ringdown_{split}_{part}.npy', a)" || exit 1
fail=0
for m in ${MODELS:-models/*.nn}; do
  name=$(basename "$m" .nn)
  set -- --set iterations=2
  grep -q "fashion_mnist" "$m" && set -- "$@" --data "$out/fm"
  grep -q "conv" "$m" && set -- "$@" --set batch=8
  case $name in ringdown_*) cp "$m" "$out/rd/$name.nn"; m=$out/rd/$name.nn ;; esac
  [ "$name" = ringdown_vi ] && set -- "$@" --set samples=2
  grep -q "sampler" "$m" && set -- --set samples=4 --set burnin=4 --set chains=1
  start=$(date +%s)
  $vg "$nnc" train "$m" "$@" --out "$out/$name" --no-progress > "$out/$name.log" 2>&1
  rc=$?
  echo "$name: status $rc in $(( $(date +%s) - start )) s"
  [ $rc = 0 ] || { fail=1; tail -30 "$out/$name.log"; }
done
# (x86-64-v3: valgrind does not run AVX-512, which a trainer for this host may use)
"$nnc" build models/fashion_mlp.nn -o "$out/fmlp" --target-cpu x86-64-v3 > /dev/null
"$out/fmlp" train --set iterations=2 --data "$out/fm" --out "$out/fmlp_run" --no-progress > /dev/null
/usr/bin/python3 -c "
import gzip, numpy as np
x = np.frombuffer(gzip.open('$out/fm/t10k-images-idx3-ubyte.gz').read()[16:], np.uint8).reshape(-1, 28, 28)
np.save('$out/x.npy', (x / 255).astype(np.float32))"
$vg "$out/fmlp" predict --checkpoint "$out/fmlp_run/checkpoint.safetensors" --input "$out/x.npy" --output "$out/p.npy" > "$out/predict.log" 2>&1
rc=$?
echo "trainer predict: status $rc"
[ $rc = 0 ] || { fail=1; tail -30 "$out/predict.log"; }
exit $fail
