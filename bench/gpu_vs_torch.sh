#!/bin/bash
# gpu_vs_torch.sh prepare NNC DIR | run DIR: nnc's CUDA backend against PyTorch on the same
# GPU, for a GPU machine with PyTorch but without nnc's build dependencies (bench/README.md,
# "fashion_mlp on CUDA").  prepare (on the build machine): trainers of fashion_mlp and
# fashion_2c2d, the libraries they need (xz), the full Fashion-MNIST, into DIR (about 37 MB).
# run (on the GPU machine, from the repository root): each model 2 epochs at batch 128 with
# nnc (--device cuda) and with its PyTorch twin (BENCH_DEVICE=cuda), 3 interleaved rounds, the
# lines into $OUT/bench.txt (default /tmp/gpu_bench), and a kernel profile of fashion_mlp.
set -u
case "${1:-}" in
prepare)
  nnc=$2 D=$3
  "$(dirname "$0")/../tests/cuda/gpu_trainers.sh" libs $D || exit 1
  mkdir -p $D/bin $D/data/fmnist_full
  cp ${NNC_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}/*-ubyte.gz $D/data/fmnist_full/
  for m in fashion_mlp fashion_2c2d; do $nnc build models/$m.nn -o $D/bin/$m --target-cpu x86-64-v3 || exit 1; done
  exit 0 ;;
run) D=$(cd "$2" && pwd) ;;
*) echo "usage: $0 prepare NNC DIR | run DIR" >&2; exit 2 ;;
esac
T=$D/bin OUT=${OUT:-/tmp/gpu_bench}
mkdir -p $OUT /tmp/gpu_lib && tar xJf $D/lib.tar.xz -C /tmp/gpu_lib
export LD_LIBRARY_PATH=/tmp/gpu_lib/lib:${LD_LIBRARY_PATH:-} NNC_FASHION_MNIST_DIR=$D/data/fmnist_full PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/bench.txt 2>&1
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda, 'tf32', torch.backends.cuda.matmul.allow_tf32)" >> $OUT/bench.txt 2>&1
for r in 1 2 3; do
  echo "=== round $r" >> $OUT/bench.txt
  timeout 120 $T/fashion_mlp train --device cuda --data $D/data/fmnist_full --set epochs=2 --checkpoint-every 0 --out /tmp/gpu_b1 \
    --no-progress 2>&1 | grep -E "^epoch|error" | sed 's/^/nnc mlp: /' >> $OUT/bench.txt
  (cd bench && BENCH_DEVICE=cuda timeout 120 python3 torch_fashion_mlp.py 2 2>&1 | tail -1 | sed 's/^/torch mlp: /') >> $OUT/bench.txt
  timeout 200 $T/fashion_2c2d train --device cuda --data $D/data/fmnist_full --set epochs=2 --checkpoint-every 0 --out /tmp/gpu_b2 \
    --no-progress 2>&1 | grep -E "^epoch|error" | sed 's/^/nnc 2c2d: /' >> $OUT/bench.txt
  (cd bench && BENCH_DEVICE=cuda timeout 120 python3 torch_fashion_2c2d.py --epochs 2 2>&1 | tail -2 | sed 's/^/torch 2c2d: /') >> $OUT/bench.txt
done
NNC_PROFILE=1 timeout 100 $T/fashion_mlp train --device cuda --data $D/data/fmnist_full --set epochs=1 --checkpoint-every 0 \
  --out /tmp/gpu_b3 --no-progress > $OUT/profile.txt 2>&1
cat $OUT/bench.txt
