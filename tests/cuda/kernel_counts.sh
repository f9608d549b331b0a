#!/bin/sh
# kernel_counts.sh NNC: the number of kernels per training step of every model, pinned, so a
# fusion regression (or an unintended extra kernel) shows.  Update the numbers here on purpose
# when the plan changes, with the reason in the commit.
set -u
nnc=$1 fail=0
check() { # model expected-line
  got=$("$nnc" emit --plan "$1" | grep "^; kernels per training step:")
  if [ "$got" != "$2" ]; then echo "FAIL $1"; echo "  expected: $2"; echo "  got:      $got"; fail=1; else echo "ok   $1: $got"; fi
}
check models/fashion_mlp.nn   "; kernels per training step: 26 (8 GEMMs, 18 loop kernels); CUDA launches per step: 33; kernels per evaluation batch: 10"
check models/fashion_gated.nn "; kernels per training step: 46 (8 GEMMs, 38 loop kernels); CUDA launches per step: 57; kernels per evaluation batch: 18"
[ $(ls models/*.nn | wc -l) = 2 ] || { echo "FAIL: a model without pinned kernel counts; add it here"; fail=1; }
exit $fail
