#!/bin/sh
# build_test.sh CASE NNC CHECK_METRICS OUTDIR: one scenario of `nnc build`.
set -eu
case_name=$1 nnc=$2 check=$3 out=$4/$1
rm -rf "$out"
mkdir -p "$out"

case $case_name in
every_model)
  # every model builds and the trainer describes itself (how long a build takes is measured in
  # bench/README.md, not asserted here: a sanitized build on a loaded machine is slower)
  for m in models/*.nn; do
    name=$(basename "$m" .nn)
    "$nnc" build "$m" -o "$out/$name"
    "$out/$name" info | grep -q "^model $name "
  done
  # a portable baseline, with every stage of the generated code kept for inspection
  "$nnc" build models/fashion_mlp.nn -o "$out/portable" --target-cpu x86-64-v3 --keep-kernels "$out/kept"
  for f in model.ir plan.txt kernels.ll kernels.s kernels.cu; do test -s "$out/kept/$f"; done
  "$out/portable" info | grep -q '"target_cpu":.*"x86-64-v3"' ;;
portable_same_metrics)
  # the trainer needs no LLVM and nothing from the build tree: run a copy elsewhere
  "$nnc" build models/fashion_mlp.nn -o "$out/fmlp"
  if ldd "$out/fmlp" | grep -i llvm; then echo "FAIL: the trainer links LLVM"; exit 1; fi
  mkdir -p "$out/elsewhere"
  cp "$out/fmlp" "$out/elsewhere/fmlp"
  rm "$out/fmlp"
  (cd "$out/elsewhere" && env -i PATH=/usr/bin:/bin HOME="$out" ./fmlp train --set epochs=1 --out run --no-progress)
  "$nnc" train models/fashion_mlp.nn --set epochs=1 --out "$out/nnc" --no-progress
  "$check" --same "$out/elsewhere/run/metrics.jsonl" "$out/nnc/metrics.jsonl" ;;
pruning_without_llvm)
  # pruning re-plans at the new widths and runs the ahead-of-time kernels: the same as nnc
  "$nnc" build tests/train/models/prune_small.nn -o "$out/ps"
  "$out/ps" train --epochs 2 --out "$out/a" --no-progress | tee "$out/stdout"
  grep -q "^pruned after epoch 1: h1 96 -> " "$out/stdout"
  "$nnc" train tests/train/models/prune_small.nn --set epochs=2 --out "$out/b" --no-progress
  "$check" --same "$out/a/metrics.jsonl" "$out/b/metrics.jsonl" ;;
hvp_trainer)
  # a trainer built with --hvp has nnc hvp's command, on its ahead-of-time kernels: the same
  # eigenvalues as nnc hvp (which compiles them now); without --hvp it says how to get one
  "$nnc" build models/nlm_toy.nn -o "$out/nlm" --hvp
  "$nnc" build models/nlm_toy.nn -o "$out/plain"
  # (a trainer's data paths are relative to the current directory)
  (cd models && "$out/nlm" train --epochs 2 --out "$out/run" --no-progress > /dev/null)
  (cd models && "$out/nlm" hvp --checkpoint "$out/run/checkpoint.safetensors" --iterations 20 --top 3 > "$out/trainer.txt")
  "$nnc" hvp models/nlm_toy.nn --checkpoint "$out/run/checkpoint.safetensors" --iterations 20 --top 3 > "$out/nnc.txt"
  cat "$out/trainer.txt"
  grep -v "^exact Hessian-vector products" "$out/trainer.txt" | tail -n +2 > "$out/a" # (the data path: relative to the model for nnc)
  grep -v "^exact Hessian-vector products" "$out/nnc.txt" | tail -n +2 > "$out/b"
  diff "$out/a" "$out/b"
  grep -q "^condition number estimate" "$out/a"
  (cd models && "$out/nlm" train --epochs 2 --out "$out/run2" --no-progress > /dev/null)
  "$check" --same "$out/run/metrics.jsonl" "$out/run2/metrics.jsonl"
  "$nnc" train models/nlm_toy.nn --set epochs=2 --out "$out/run3" --no-progress > /dev/null
  "$check" --same "$out/run/metrics.jsonl" "$out/run3/metrics.jsonl"
  status=0
  (cd models && "$out/plain" hvp --top 3) 2> "$out/err" || status=$?
  [ $status = 1 ] && grep -q "this trainer has no kernels for Hessian-vector products; build it with nnc build --hvp" "$out/err" || {
    echo "FAIL: a trainer without --hvp (status $status):"; cat "$out/err"; exit 1; }
  status=0
  "$out/nlm" hvp --method newton 2> "$out/err" || status=$?
  [ $status = 2 ] && grep -q "error: --method must be exact or fd, not 'newton'" "$out/err" || {
    echo "FAIL: a bad --method (status $status):"; cat "$out/err"; exit 1; } ;;
pruned_conv_refused)
  # a trainer's kernels fix a convolution's channel count: pruning gated channels stops the run
  # with the reason (nnc train prunes them)
  /usr/bin/python3 tests/train/idx_subset.py /usr/share/datasets/fashion-mnist "$out/fm" 512 128
  "$nnc" build models/fashion_sparse_cnn.nn -o "$out/cnn" > /dev/null
  status=0
  "$out/cnn" train --epochs 2 --data "$out/fm" --out "$out/run" --no-progress > /dev/null 2> "$out/err" || status=$?
  cat "$out/err"
  [ $status = 1 ] && grep -qF "nnc: error: this trainer cannot run the pruned model: a pruned convolution's channel count is part of its kernels' code (a dense layer's width is not); prune this model with nnc train, or train without pruning here" "$out/err" || {
    echo "FAIL: status $status"; exit 1; } ;;
installed)
  # `cmake --install` into a fresh prefix: the installed nnc finds its block library and the
  # trainers' runtime there (not in the build tree), builds a trainer of a model that calls a
  # library block, outside the source tree, and the trainer trains; pkg-config describes the
  # runtime and its headers, and a program compiles against them; the manual page is in place
  build=$(dirname "$nnc")
  cmake --install "$build" --prefix "$out/prefix" > "$out/install.log"
  prefix=$(cd "$out/prefix" && pwd)
  for f in bin/nnc lib/nnc/libnnc_rt.a lib/pkgconfig/nnc.pc share/nnc/stdlib/mlp.nn share/nnc/plot_sweep.py \
           share/man/man1/nnc.1 include/nnc/util.h include/nnc/run.h; do
    test -s "$prefix/$f" || { echo "FAIL: not installed: $f"; exit 1; }
  done
  grep -q '^\.TH NNC 1' "$prefix/share/man/man1/nnc.1"
  "$prefix/bin/nnc" --version > "$out/version"
  cat "$out/version"
  grep -q "^block library: $prefix/bin/../share/nnc/stdlib\$" "$out/version"
  grep -q "^trainers' runtime: $prefix/bin/../lib/nnc/libnnc_rt.a\$" "$out/version"
  mkdir -p "$out/work"
  awk 'BEGIN { srand(3); for (i = 0; i < 400; i++) { c = i % 2; printf "%.4f,%.4f,%d\n", (c ? 1 : -1) + rand() - 0.5, rand() - 0.5, c } }' \
    > "$out/work/blobs.csv"
  cat > "$out/work/m.nn" <<'NN'
model installed
input  x : f32[2]
target y : class[2]
logits = x -> mlp(16, 2)
loss   cross_entropy(logits, y)
metric accuracy(logits, y)
train  { data csv("blobs.csv") valid 0.25 of train batch 32 epochs 3 optimizer adam(lr = 0.01) }
NN
  (cd "$out/work" && env -u NNC_STDLIB "$prefix/bin/nnc" build m.nn -o trainer && ./trainer train --out run --no-progress)
  # the trainer looks for the MPI plug-in where the installed nnc has it, not in the build tree
  if [ -e "$prefix/lib/nnc/libnnc_mpi.so" ]; then
    "$out/work/trainer" info > "$out/info"
    grep -qF "\"mpi_plugin\":	\"$prefix/bin/../lib/nnc/libnnc_mpi.so\"" "$out/info" || { echo "FAIL: the trainer's MPI plug-in:"; grep mpi_plugin "$out/info"; exit 1; }
  fi
  "$check" "$out/work/run/metrics.jsonl" valid accuracy 0.9
  cat > "$out/work/uses.c" <<'C'
#include <stdio.h>
#include "util.h"
int main(void) { printf("%d\n", util_edit_distance("dense", "dens", 3)); return 0; }
C
  flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs --static nnc)
  echo "pkg-config: $flags"
  echo "$flags" | grep -q -- "-I$prefix/include/nnc" && echo "$flags" | grep -q -- "-lnnc_rt"
  cc -o "$out/work/uses" "$out/work/uses.c" $flags ${NNC_SANITIZED:+-fsanitize=address,undefined}
  [ "$("$out/work/uses")" = 1 ] ;;
usage_errors)
  "$nnc" build models/fashion_mlp.nn -o "$out/t"
  # each usage error: exit status 2 and its exact message
  usage() { # expected-message command...
    want=$1; shift
    set +e
    "$@" > /dev/null 2> "$out/err"; rc=$?
    set -e
    head -1 "$out/err"
    test $rc = 2 || { echo "FAIL: exit status $rc from: $*"; exit 1; }
    test "$(head -1 "$out/err")" = "$want" || { echo "FAIL: expected: $want"; exit 1; }
  }
  usage "$out/t: error: no command given" "$out/t"
  usage "$out/t: error: unknown command frobnicate" "$out/t" frobnicate
  usage "$out/t: error: unknown option --bogus" "$out/t" train --bogus
  usage "$out/t: error: eval needs --checkpoint C (a trained model) or --draws D (a sampled one)" "$out/t" eval
  usage "$out/t: error: predict needs --checkpoint C (a trained model) or --draws D (a sampled one)" "$out/t" predict --checkpoint a --draws b
  usage "$out/t: error: predict needs --input X and --output Y" "$out/t" predict --checkpoint c.safetensors
  usage "$out/t: error: unknown device 'gpu': use cpu, cuda, cuda-emu or auto" "$out/t" train --device gpu
  usage "$out/t: error: --checkpoint-every needs a whole number of epochs >= 0, not 'x'" "$out/t" train --checkpoint-every x
  usage "$out/t: error: --epochs needs a value" "$out/t" train --epochs
  usage "nnc: error: build needs -o NAME, the executable to write" "$nnc" build models/fashion_mlp.nn
  usage "nnc: error: unknown --target-cpu 'pentium': use host, x86-64, x86-64-v2, x86-64-v3 or x86-64-v4" \
    "$nnc" build models/fashion_mlp.nn -o "$out/u" --target-cpu pentium
  set -e
  # a --set that changes the kernels' code needs a rebuild, and says so
  cat > "$out/leaky.nn" <<'NN'
model leaky
input  x : f32[4]
target y : class[2]
param  slope = 0.1
logits = x -> dense(8) -> leaky_relu(slope = slope) -> dense(2)
loss   cross_entropy(logits, y)
train  { data csv("none.csv") }
NN
  "$nnc" build "$out/leaky.nn" -o "$out/leaky"
  if "$out/leaky" train --set slope=0.2 2> "$out/err"; then echo "FAIL: expected an error"; exit 1; fi
  cat "$out/err"
  grep -q "compiled for another plan.*rebuild it with nnc build" "$out/err" ;;
*) echo "unknown case $case_name"; exit 2 ;;
esac
