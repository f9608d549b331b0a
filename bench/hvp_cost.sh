#!/bin/sh
# bench/hvp_cost.sh: what a Hessian-vector product costs against a gradient, exact (the hvp
# program: reverse over reverse) and by finite differences (two gradients), per batch of 128 on
# DeepOBS's fmnist_mlp, fmnist_2c2d and fmnist_logreg, at their initial weights; `nnc hvp` times
# its Lanczos products on one batch (the gradient pass once, then the products).  Run on a quiet
# machine; results in bench/README.md.
#   sh bench/hvp_cost.sh [NNC]   (default build/nnc)
set -eu
nnc=${1:-build/nnc}
grep -m1 'model name' /proc/cpuinfo
for m in fmnist_logreg fmnist_mlp fmnist_2c2d; do
  for method in exact fd; do
    printf '%s %s: ' "$m" "$method"
    "$nnc" hvp models/$m.nn --batches 1 --iterations 20 --method $method | grep -E 'Hessian-vector products' | sed 's/^[a-z-]* Hessian-vector products ([^)]*): //'
  done
done
