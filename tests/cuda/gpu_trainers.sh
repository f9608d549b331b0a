#!/bin/bash
# gpu_trainers.sh prepare NNC DIR | run DIR | libs DIR: the CUDA backend on a real GPU, checked from
# standalone trainers, for a GPU machine that has a driver and CUDA but not nnc's build
# dependencies (LLVM, flex, bison).  Not a CTest test (the suite's cuda.gpu_* tests need libnnc
# on the GPU machine); docs/cuda.md gives what it measured.
#   prepare (on the build machine): trainers of fashion_mlp, fashion_2c2d, fashion_sparse and
#     xsec_bnn for x86-64-v3, the MPI plug-in, the shared libraries the trainers need (xz), and
#     Fashion-MNIST's test split as a small training set, into DIR (about 17 MB).
#   run (on the GPU machine, from the repository root, DIR copied there): each model on the CPU
#     and on CUDA (fashion_mlp also with --deterministic-reduce=2, and on 2 ranks of one GPU
#     under mpirun when there is one); the logs and every step's loss in $OUT (default /tmp/gpu_out).
set -u
case "${1:-}" in
libs) # the shared libraries a trainer needs beyond libc and libz, as DIR/lib.tar.xz
  D=$2
  mkdir -p $D/lib
  cp -L /usr/lib/x86_64-linux-gnu/libopenblas.so.0 /lib/x86_64-linux-gnu/libgfortran.so.5 /lib/x86_64-linux-gnu/libquadmath.so.0 \
     /lib/x86_64-linux-gnu/libcjson.so.1 $D/lib/
  (cd $D && tar cJf lib.tar.xz lib && rm -rf lib)
  exit 0 ;;
prepare)
  nnc=$2 D=$3
  "$0" libs $D || exit 1
  mkdir -p $D/bin $D/data/fmnist
  f=${NNC_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
  for k in images-idx3 labels-idx1; do
    cp $f/t10k-$k-ubyte.gz $D/data/fmnist/ && cp $f/t10k-$k-ubyte.gz $D/data/fmnist/train-$k-ubyte.gz
  done
  for m in fashion_mlp fashion_2c2d fashion_sparse xsec_bnn; do $nnc build models/$m.nn -o $D/bin/$m --target-cpu x86-64-v3 || exit 1; done
  cp "$(dirname $nnc)/libnnc_mpi.so" $D/bin/ 2> /dev/null
  exit 0 ;;
run) D=$(cd "$2" && pwd) ;;
*) echo "usage: $0 prepare NNC DIR | run DIR | libs DIR" >&2; exit 2 ;;
esac
T=$D/bin F=$D/data/fmnist DEV=${DEV:-cuda} OUT=${OUT:-/tmp/gpu_out} L=/tmp/gpu_losses R=/tmp/gpu_runs
rm -rf $L $R && mkdir -p $OUT /tmp/gpu_lib $L $R && tar xJf $D/lib.tar.xz -C /tmp/gpu_lib
export LD_LIBRARY_PATH=/tmp/gpu_lib/lib:${LD_LIBRARY_PATH:-}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; lscpu | grep -E "Model name|^CPU\(s\)"; which mpirun; } > $OUT/probe.txt 2>&1
run() { n=$1; shift; echo "=== $n: $*" >> $OUT/log.txt; ( time timeout 240 "$@" ) >> $OUT/log.txt 2>&1; echo "=== $n rc=$?" >> $OUT/log.txt; }
mlp="$T/fashion_mlp train --data $F --set iterations=200 --no-progress"
NNC_STEP_LOSSES=$L/mlp_cpu run mlp_cpu $mlp --out $R/a
NNC_STEP_LOSSES=$L/mlp_gpu run mlp_gpu $mlp --device $DEV --out $R/b
NNC_STEP_LOSSES=$L/mlp_gpu_det2 run mlp_gpu_det2 $mlp --device $DEV --deterministic-reduce=2 --out $R/c
run mlp_gpu_3ep $T/fashion_mlp train --device $DEV --data $F --set epochs=3 --out $R/e --no-progress
run mlp_cpu_3ep $T/fashion_mlp train --data $F --set epochs=3 --out $R/f --no-progress
run mlp_gpu_eval $T/fashion_mlp eval --device $DEV --checkpoint $R/e/checkpoint.safetensors --data $F
NNC_STEP_LOSSES=$L/cnn_cpu run cnn_cpu $T/fashion_2c2d train --data $F --set iterations=60 --out $R/g --no-progress
NNC_STEP_LOSSES=$L/cnn_gpu run cnn_gpu $T/fashion_2c2d train --device $DEV --data $F --set iterations=60 --out $R/h --no-progress
run sparse_gpu $T/fashion_sparse train --device $DEV --data $F --set epochs=3 --out $R/i --no-progress
run sparse_cpu $T/fashion_sparse train --data $F --set epochs=3 --out $R/j --no-progress
(cd models && run xsec_gpu $T/xsec_bnn train --device $DEV --set samples=200 --set burnin=200 --set chains=2 --set parallel=0 --out $R/k --no-progress)
(cd models && run xsec_cpu $T/xsec_bnn train --set samples=200 --set burnin=200 --set chains=2 --set parallel=0 --out $R/l --no-progress)
if which mpirun > /dev/null 2>&1 && [ -e $T/libnnc_mpi.so ]; then
  export NNC_MPI_PLUGIN=$T/libnnc_mpi.so
  M="mpirun --allow-run-as-root --oversubscribe -x NNC_MPI_PLUGIN -x LD_LIBRARY_PATH -x NNC_STEP_LOSSES -np 2"
  NNC_STEP_LOSSES=$L/mlp_gpu_mpi2 run mlp_gpu_mpi2 $M $mlp --device $DEV --out $R/m
  NNC_STEP_LOSSES=$L/mlp_gpu_mpi2_det2 run mlp_gpu_mpi2_det2 $M $mlp --device $DEV --deterministic-reduce=2 --out $R/n
  cmp $R/c/checkpoint.safetensors $R/n/checkpoint.safetensors >> $OUT/log.txt 2>&1 && echo "det2: one GPU process = 2 ranks, bit for bit" >> $OUT/log.txt
fi
tar cf $OUT/losses.tar -C $L .
grep "rc=" $OUT/log.txt
