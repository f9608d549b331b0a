#!/bin/sh
# kernel_counts.sh NNC: the number of kernels per training step of every model, pinned, so a
# fusion regression (or an unintended extra kernel) shows.  Update the numbers here on purpose
# when the plan changes, with the reason in the commit.
set -u
nnc=$1 fail=0
check() { # model expected-line [options]
  got=$("$nnc" emit --plan "$1" ${3:-} | grep "^; kernels per training step:")
  if [ "$got" != "$2" ]; then echo "FAIL $1"; echo "  expected: $2"; echo "  got:      $got"; fail=1; else echo "ok   $1: $got"; fi
}
check models/fashion_mlp.nn   "; kernels per training step: 21 (8 GEMMs, 13 loop kernels); CUDA launches per step: 28; kernels per evaluation batch: 7"
check models/fashion_gated.nn "; kernels per training step: 27 (8 GEMMs, 19 loop kernels); CUDA launches per step: 38; kernels per evaluation batch: 12"
check models/fashion_sparse.nn "; kernels per training step: 27 (8 GEMMs, 19 loop kernels); CUDA launches per step: 38; kernels per evaluation batch: 12"
# a convolution is im2col + GEMM (+ bias/relu fused); backward recomputes the patches and maxima;
# a second conv's weight is transposed to the patches' order [F, kh kw C], and its gradient back
check models/fashion_2c2d.nn  "; kernels per training step: 44 (11 GEMMs, 33 loop kernels); CUDA launches per step: 53; kernels per evaluation batch: 14"
# the same with a gate per layer: its gradient's column sums, and the gates' statistics in evaluation
check models/fashion_sparse_cnn.nn "; kernels per training step: 52 (11 GEMMs, 41 loop kernels); CUDA launches per step: 67; kernels per evaluation batch: 21"
# hmc's leapfrog step: the gradient, the momentum kicks and the position drifts (6, a program of
# their own); the log priors each fuse into one summing kernel per weight; evaluation also
# gives the nll metric per sample (nll_rows: a row sum and a subtraction) for the predictive NLL
# (the output layer's products with a unit dimension, dL/dh = dL/dy w and dL/dw = (dL/dy)^T h, are
# loop kernels fused into the PReLU backward: 3 GEMMs, not 5)
check models/xsec_bnn.nn "; kernels per training step: 31 (3 GEMMs, 28 loop kernels); CUDA launches per step: 50; kernels per evaluation batch: 14"
# nuts leapfrogs in the runtime on the gradient alone: no kicks
check models/diabetes_bnn.nn "; kernels per training step: 19 (3 GEMMs, 16 loop kernels); CUDA launches per step: 26; kernels per evaluation batch: 14"
# seven conv1d layers (im2col + GEMM each) and two heads; a variational layer's weights are drawn
# each step (noise, softplus, multiply-add) and its KL summed, kernels over the weights alone;
# evaluation also gives the KL of both heads summed (the output kl)
check models/ringdown_vi.nn "; kernels per training step: 155 (34 GEMMs, 121 loop kernels); CUDA launches per step: 193; kernels per evaluation batch: 54"
check models/ringdown_dense.nn "; kernels per training step: 147 (34 GEMMs, 113 loop kernels); CUDA launches per step: 179; kernels per evaluation batch: 51"
# LUNA: the forward pass again at the 2 points per sample (2 GEMMs more per layer, forward and
# backward), the finite differences and their adjoint, the graphs' normals' squared cosines as
# axis sums and broadcasts (its own kernels: indexed ops do not fuse); evaluation computes the loss
check models/luna_toy.nn "; kernels per training step: 75 (14 GEMMs, 61 loop kernels); CUDA launches per step: 86; kernels per evaluation batch: 30"
# the neural linear model: a plain MLP; evaluation also gives the head's features
check models/nlm_toy.nn "; kernels per training step: 16 (4 GEMMs, 12 loop kernels); CUDA launches per step: 23; kernels per evaluation batch: 5"
# DeepOBS's test problems (workload 5)
check models/fmnist_mlp.nn "; kernels per training step: 28 (11 GEMMs, 17 loop kernels); CUDA launches per step: 37; kernels per evaluation batch: 9"
check models/fmnist_2c2d.nn "; kernels per training step: 44 (11 GEMMs, 33 loop kernels); CUDA launches per step: 53; kernels per evaluation batch: 14"
check models/fmnist_logreg.nn "; kernels per training step: 7 (2 GEMMs, 5 loop kernels); CUDA launches per step: 10; kernels per evaluation batch: 3"
# the noisy quadratic: -x + theta, the fixed layer's GEMM, the loss; backward one GEMM (no
# gradient for the fixed weight) and theta's column sum
check models/quadratic_deep.nn "; kernels per training step: 9 (2 GEMMs, 7 loop kernels); CUDA launches per step: 11; kernels per evaluation batch: 4"
# without fusion (--fuse=none): a kernel per op
check models/fashion_mlp.nn   "; kernels per training step: 28 (8 GEMMs, 20 loop kernels); CUDA launches per step: 35; kernels per evaluation batch: 10" --fuse=none
check models/fashion_gated.nn "; kernels per training step: 46 (8 GEMMs, 38 loop kernels); CUDA launches per step: 57; kernels per evaluation batch: 24" --fuse=none
check models/fashion_sparse.nn "; kernels per training step: 46 (8 GEMMs, 38 loop kernels); CUDA launches per step: 57; kernels per evaluation batch: 24" --fuse=none
check models/fashion_2c2d.nn  "; kernels per training step: 52 (11 GEMMs, 41 loop kernels); CUDA launches per step: 61; kernels per evaluation batch: 18" --fuse=none
check models/fashion_sparse_cnn.nn "; kernels per training step: 79 (11 GEMMs, 68 loop kernels); CUDA launches per step: 94; kernels per evaluation batch: 39" --fuse=none
check models/xsec_bnn.nn "; kernels per training step: 96 (3 GEMMs, 93 loop kernels); CUDA launches per step: 115; kernels per evaluation batch: 42" --fuse=none
check models/diabetes_bnn.nn "; kernels per training step: 84 (3 GEMMs, 81 loop kernels); CUDA launches per step: 91; kernels per evaluation batch: 42" --fuse=none
check models/ringdown_vi.nn "; kernels per training step: 347 (34 GEMMs, 313 loop kernels); CUDA launches per step: 387; kernels per evaluation batch: 137" --fuse=none
check models/ringdown_dense.nn "; kernels per training step: 215 (34 GEMMs, 181 loop kernels); CUDA launches per step: 247; kernels per evaluation batch: 78" --fuse=none
check models/luna_toy.nn "; kernels per training step: 153 (14 GEMMs, 139 loop kernels); CUDA launches per step: 164; kernels per evaluation batch: 56" --fuse=none
check models/nlm_toy.nn "; kernels per training step: 28 (4 GEMMs, 24 loop kernels); CUDA launches per step: 35; kernels per evaluation batch: 9" --fuse=none
check models/fmnist_mlp.nn "; kernels per training step: 38 (11 GEMMs, 27 loop kernels); CUDA launches per step: 47; kernels per evaluation batch: 13" --fuse=none
check models/fmnist_2c2d.nn "; kernels per training step: 52 (11 GEMMs, 41 loop kernels); CUDA launches per step: 61; kernels per evaluation batch: 18" --fuse=none
check models/fmnist_logreg.nn "; kernels per training step: 8 (2 GEMMs, 6 loop kernels); CUDA launches per step: 11; kernels per evaluation batch: 4" --fuse=none
check models/quadratic_deep.nn "; kernels per training step: 14 (2 GEMMs, 12 loop kernels); CUDA launches per step: 16; kernels per evaluation batch: 7" --fuse=none
# one fused forward and one fused backward kernel per gated layer
plan=$("$nnc" emit --plan models/fashion_gated.nn)
n=$(echo "$plan" | grep -c "^kernel k[0-9]*_bias_add_relu_gate ")
[ "$n" = 2 ] || { echo "FAIL: expected a fused forward kernel (bias_add_relu_gate) per gated layer, found $n"; fail=1; }
n=$(echo "$plan" | grep -c "^kernel k[0-9]*_relu_gate_gate_grad_relu_grad_colsum ")
[ "$n" = 2 ] || { echo "FAIL: expected a fused backward kernel per gated layer, found $n"; fail=1; }
[ $(ls models/*.nn | wc -l) = 15 ] || { echo "FAIL: a model without pinned kernel counts; add it here"; fail=1; }
exit $fail
