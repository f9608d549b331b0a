#!/bin/sh
# cli_test.sh CASE NNC SCRATCH: the command line contract: exit status 0 success, 1 an error in
# the model or data, 2 bad usage; messages name what was wrong; emitted code is deterministic.
set -u
case_name=$1 nnc=$2 tmp=$3/$1
rm -rf "$tmp"
mkdir -p "$tmp"
out=$tmp/stdout err=$tmp/stderr

run() { # expected-status args...
  want=$1; shift
  "$nnc" "$@" > "$out" 2> "$err"
  got=$?
  if [ "$got" != "$want" ]; then
    echo "nnc $*: exit status $got, expected $want"; echo "--- stdout"; cat "$out"; echo "--- stderr"; cat "$err"
    exit 1
  fi
}
has() { # file text
  if ! grep -qF -- "$2" "$1"; then echo "expected '$2' in:"; cat "$1"; exit 1; fi
}

case $case_name in
help)            run 0 --help; has "$out" "usage: nnc <command>"; has "$out" "gradcheck FILE" ;;
version)         run 0 --version; has "$out" "nnc "; has "$out" "LLVM 19" ;;
no_command)      run 2; has "$err" "no command given" ;;
unknown_command) run 2 fly models/fashion_mlp.nn; has "$err" "unknown command 'fly'" ;;
unknown_option)  run 2 check --fast models/fashion_mlp.nn; has "$err" "unknown option '--fast'" ;;
no_file)         run 2 check; has "$err" "'check' needs a model file" ;;
missing_file)    run 1 check "$tmp/none.nn"; has "$err" "cannot read '$tmp/none.nn': No such file or directory" ;;
set_syntax)      run 2 check models/fashion_mlp.nn --set epochs; has "$err" "--set needs name=value" ;;
set_not_number)  run 2 check models/fashion_mlp.nn --set epochs=many; has "$err" "'many' is not a number" ;;
set_unknown_key)
  run 2 check models/fashion_gated.nn --set lamda=1e-3
  has "$err" "the model has no param or train setting 'lamda'; did you mean 'lambda'?" ;;
set_bad_value)   run 1 check models/fashion_mlp.nn --set epochs=0.5; has "$err" "--set epochs=0.5: must be a whole number" ;;
set_applies)
  run 0 check models/fashion_gated.nn --set lambda=3e-4 --set epochs=2 --set batch=64
  has "$out" "lambda = 0.0003 (--set)"; has "$out" "batch 64, 2 epochs" ;;
model_error)
  printf 'model m\ninput x : f32[3]\ntarget y : class[2]\nh = x -> dens(4)\nloss cross_entropy(h, y)\ntrain { data fashion_mnist }\n' > "$tmp/m.nn"
  run 1 check "$tmp/m.nn"
  has "$err" "$tmp/m.nn:4:10: error: unknown layer 'dens'; did you mean 'dense'?" ;;
check_models)
  for m in models/*.nn; do # an optimizer's step, or a sampler's leapfrog step
    run 0 check "$m"
    if grep -q "^sampler: " "$out"; then has "$out" "kernels per leapfrog step"; else has "$out" "kernels per training step"; fi
  done ;;
emit_deterministic)
  for what in ast ir plan llvm asm cuda; do
    for m in models/*.nn; do
      run 0 emit --$what "$m"; cp "$out" "$tmp/first"
      [ -s "$tmp/first" ] || { echo "emit --$what $m printed nothing"; exit 1; }
      run 0 emit --$what "$m"
      cmp -s "$out" "$tmp/first" || { echo "emit --$what $m differs between two runs"; exit 1; }
    done
  done ;;
emit_vectorised)
  # the host's vector width varies (AVX2: 8 floats, AVX-512: 16); any vector loop will do, and
  # a named CPU baseline gives its own width whatever the host is
  run 0 emit --llvm models/fashion_mlp.nn
  has "$out" "@nnc_kernels = local_unnamed_addr constant"; has "$out" "define internal void @k1_bias_add_relu_entry(ptr"
  grep -Eq "<(4|8|16) x float>" "$out" || { echo "FAIL: no vector loop for the host CPU"; exit 1; }
  run 0 emit --llvm models/fashion_mlp.nn --target-cpu x86-64; has "$out" "<4 x float>"
  if grep -Eq "<(8|16) x float>" "$out"; then echo "FAIL: x86-64 (SSE2) has no 8- or 16-float vectors"; exit 1; fi
  run 0 emit --llvm models/fashion_mlp.nn --target-cpu x86-64-v3; has "$out" "<8 x float>"
  run 0 emit --asm models/fashion_mlp.nn --target-cpu x86-64-v3; has "$out" "%ymm"
  run 2 emit --llvm models/fashion_mlp.nn --target-cpu pentium9; has "$err" "unknown --target-cpu 'pentium9'" ;;
emit_short_rows)
  # a loop kernel over rows shorter than 32 columns gets a copy with its planned count as a
  # constant (fully unrolled); the entry takes it when the count is the planned one (the PReLU
  # backward, fused with the output layer's outer product and column sum).  The JIT (what emit
  # shows) has only that copy; a trainer, which runs pruned layers' narrower rows through the
  # same code, also has the general one
  run 0 emit --llvm models/xsec_bnn.nn
  grep -Eq "^define internal .*@k[0-9]+_matmul_prelu_prelu_grad_prelu_slope_grad_etc_c20\(" "$out" ||
    { echo "FAIL: no planned-width copy (_c20) of xsec_bnn's PReLU backward"; exit 1; }
  if grep -Eq "^define internal .*@k[0-9]+_matmul_prelu_prelu_grad_prelu_slope_grad_etc\(" "$out"; then
    echo "FAIL: a general copy of xsec_bnn's PReLU backward in the JIT's code"; exit 1; fi
  run 0 build models/xsec_bnn.nn -o "$tmp/xsec" --keep-kernels "$tmp/kept"
  grep -Eq "^define internal .*@k[0-9]+_matmul_prelu_prelu_grad_prelu_slope_grad_etc\(" "$tmp/kept/kernels.ll" ||
    { echo "FAIL: no general copy of xsec_bnn's PReLU backward in a trainer's kernels"; exit 1; }
  grep -Eq "^define internal .*@k[0-9]+_matmul_prelu_prelu_grad_prelu_slope_grad_etc_c20\(" "$tmp/kept/kernels.ll" ||
    { echo "FAIL: no planned-width copy (_c20) in a trainer's kernels"; exit 1; }
  run 0 emit --llvm models/fashion_mlp.nn # 10 classes: short; 256 units: long, no copy
  grep -Eq "^define internal .*_cross_entropy_c10\(" "$out" || { echo "FAIL: no _c10 copy of fashion_mlp's loss"; exit 1; }
  if grep -Eq "^define internal .*_relu_c[0-9]+\(" "$out"; then echo "FAIL: a copy of a 256-wide kernel"; exit 1; fi ;;
profile)
  # NNC_PROFILE: where a run's time went, per kernel
  export NNC_PROFILE=1; run 0 gradcheck models/xsec_bnn.nn; unset NNC_PROFILE
  has "$err" "kernel profile (NNC_PROFILE, device cpu):"; has "$err" "us/call  kernel"
  has "$err" " k0_matmul"; has "$err" "_matmul_prelu_prelu_grad_prelu_slope_grad_etc"
  run 0 gradcheck models/xsec_bnn.nn
  if grep -q "kernel profile" "$err"; then echo "FAIL: a profile without NNC_PROFILE"; exit 1; fi ;;
set_sampler)
  run 0 check models/diabetes_bnn.nn --set samples=100 --set burnin=50 --set chains=1 --set max_depth=3 --set step=0.1 --set thin=2
  has "$out" "sampler: nuts(samples = 100, burnin = 50, max_depth = 3, thin = 2, chains = 1, step = 0.1,"
  run 1 check models/xsec_bnn.nn --set max_depth=3; has "$err" "--set max_depth=3: only nuts has a tree depth"
  run 1 check models/diabetes_bnn.nn --set thin=0; has "$err" "--set thin=0: must be a whole number in [1, 1000000]"
  run 1 check models/fashion_mlp.nn --set samples=100
  has "$err" "--set samples=100: the model has no sampler; it trains with an optimizer"
  run 2 check models/xsec_bnn.nn --set sampels=100; has "$err" "no param or train setting 'sampels'; did you mean 'samples'?"
  run 1 check models/xsec_bnn.nn --set parallel=2
  has "$err" "--set parallel=2: 1 (chains at once, where they can) or 0 (one after another)"
  run 1 check models/xsec_bnn.nn --set step=0; has "$err" "--set step=0: the step must be positive"
  sed 's/sampler hmc(.*)/sampler sgld(lr = 1e-5)/' models/xsec_bnn.nn | sed 's|"data/|"models/data/|' > "$tmp/sgld.nn"
  run 0 check "$tmp/sgld.nn" --set parallel=0; has "$out" "parallel = false)"
  run 1 check "$tmp/sgld.nn" --set step=0.1; has "$err" "--set step=0.1: sgld has no step (its step size is lr)"
  # `evaluate samples = S` and `evaluate every N steps` of a variational model
  run 0 check models/ringdown_vi.nn --set samples=8 --set eval_every=100
  has "$out" "evaluation: every 100 steps and after the last"
  run 1 check models/ringdown_vi.nn --set samples=1; has "$err" "--set samples=1: the draws an evaluation averages, a whole number in [2, 100000]"
  run 1 check models/ringdown_vi.nn --set eval_every=-5; has "$err" "--set eval_every=-5: a whole number of steps (0: after every epoch)" ;;
emit_unknown)    run 2 emit --cobol models/fashion_mlp.nn; has "$err" "emit needs one of" ;;
emit_cuda)
  run 0 emit --cuda models/fashion_gated.nn
  has "$out" "NNC_KERNEL void k1_bias_add_relu_gate(long long rows, const float *__restrict__ scalars, NncArgs args)"
  has "$out" "/* k1_bias_add_relu_gate: bias_add at models/fashion_gated.nn:11:28 (layer h1), relu at models/fashion_gated.nn:11:43, gate at models/fashion_gated.nn:11:51 (layer h1)"
  has "$out" "a thread per element, 256 per block, at most 1024 blocks" ;;
emit_ptx)
  "$nnc" emit --ptx models/fashion_mlp.nn --arch sm_80 > "$out" 2> "$err"
  if [ $? != 0 ]; then
    if grep -q "NVRTC is not available" "$err"; then echo "skipped: no NVRTC"; exit 77; fi
    cat "$err"; exit 1
  fi
  has "$out" ".target sm_80"; has "$out" ".entry k1_bias_add_relu(" ;;
device_cuda_missing)
  "$nnc" train models/fashion_mlp.nn --device cuda --set epochs=1 --out "$tmp/run" > "$out" 2> "$err"
  rc=$?
  if [ $rc = 0 ]; then echo "skipped: a CUDA GPU is present"; exit 77; fi
  [ $rc = 1 ] || { echo "exit status $rc, expected 1"; cat "$err"; exit 1; }
  [ "$(wc -l < "$err")" = 1 ] || { echo "expected one line:"; cat "$err"; exit 1; }
  grep -qE "^nnc: error: (libcuda.so.1 was not found|cuInit failed|no CUDA GPU found|NVRTC is not available|cuBLAS is not available)" "$err" \
    || { echo "no reason given:"; cat "$err"; exit 1; } ;;
device_auto)
  printf '1,2,3,0\n4,5,6,1\n1,2,2,0\n5,5,6,1\n' > "$tmp/d.csv"
  printf 'model m\ninput x : f32[3]\ntarget y : class[2]\nh = x -> dense(2)\nloss cross_entropy(h, y)\ntrain { data csv("d.csv") epochs 2 }\n' > "$tmp/m.nn"
  run 0 train "$tmp/m.nn" --device auto --out "$tmp/run"
  has "$out" "epoch 2/2"
  grep -q "using the CPU" "$err" || grep -q "CUDA GPU" "$out" || { echo "auto said nothing about its device"; cat "$err"; exit 1; } ;;
set_optimizer)   # --set of an optimizer hyperparameter is checked against the model's optimizer
  run 1 check models/fmnist_logreg.nn --set beta1=0.5; has "$err" "models/fmnist_logreg.nn: error: --set beta1=0.5: sgd has no beta1"
  run 1 check models/fmnist_logreg.nn --set momentum=1; has "$err" "--set momentum=1: momentum must be in [0, 1)"
  run 1 check models/fmnist_logreg.nn --set train_eval=2; has "$err" "--set train_eval=2: 1 (on) or 0 (off)"
  run 0 check models/fmnist_logreg.nn --set momentum=0.9 --set weight_decay=1e-4
  has "$out" "optimizer: sgd(lr = 0.1, momentum = 0.9, nesterov = false, weight_decay = 0.0001)" ;;
hvp_usage)       # nnc hvp's options, and a model it cannot differentiate twice
  run 2 hvp models/fmnist_logreg.nn --method newton; has "$err" "nnc: error: --method must be exact or fd, not 'newton'"
  run 2 hvp models/fmnist_logreg.nn --batches 0; has "$err" "nnc: error: --batches needs a positive whole number or all, not '0'"
  run 2 hvp models/fmnist_logreg.nn --fd-step -1; has "$err" "nnc: error: --fd-step needs a positive number, not '-1'"
  run 1 hvp models/fmnist_mlp.nn --dense "$tmp/H.npy" --batches 1 --iterations 2
  has "$err" "nnc: error: --dense: the model has 1336610 trained weights; a dense Hessian is written for at most 20000"
  run 1 hvp models/fashion_sparse.nn --batches 1
  has "$err" "error: a Hessian-vector product needs a loss that is twice differentiable at the weights, but this L1 penalty is not differentiable at 0"
  run 0 hvp models/fmnist_logreg.nn --batches 1 --iterations 5 --top 2
  has "$out" "Lanczos, 5 iterations: the top eigenvalues" ;;
sweep_usage)     # nnc sweep's own errors (the grid's: tests/train/sweep_test.py)
  run 2 sweep models/fmnist_logreg.nn; has "$err" "nnc: error: sweep needs at least one --grid KEY=VALUES"
  run 2 sweep models/fmnist_logreg.nn --grid seed=1,2 --out "$tmp/s"; has "$err" "nnc: error: --grid seed=...: give the number of seeds with --seeds N"
  run 2 sweep models/fmnist_logreg.nn --grid lr=0.1 --seeds 0; has "$err" "nnc: error: --seeds needs a whole number from 1 to 10000, not '0'"
  run 1 sweep models/diabetes_bnn.nn --grid lr=0.1 --out "$tmp/s"; has "$err" "nnc: error: models/diabetes_bnn.nn: a sweep trains optimizers; this model samples its posterior"
  sed 's|^  test .*||; s|"data/|"'"$PWD"'/models/data/|' models/nlm_toy.nn > "$tmp/notest.nn"
  run 1 sweep "$tmp/notest.nn" --grid lr=0.1 --out "$tmp/s"
  has "$err" "a sweep's runs are measured on the test split (DeepOBS's test losses), and the model has no \`test\` data"
  [ ! -e "$tmp/s" ] || { echo "a refused sweep made its directory"; exit 1; } ;;
predict_export_usage) # nnc eval, predict and export's usage, the train options of this session, a missing init file
  run 2 predict models/fmnist_logreg.nn --input "$tmp/x.npy" --output "$tmp/y.npy"
  has "$err" "nnc: error: predict needs --checkpoint C (a trained model) or --draws D (a sampled one)"
  run 2 predict models/fmnist_logreg.nn --checkpoint "$tmp/c.safetensors"; has "$err" "nnc: error: predict needs --input X and --output Y"
  run 2 eval models/fmnist_logreg.nn; has "$err" "nnc: error: eval needs --checkpoint C (a trained model) or --draws D (a sampled one)"
  run 2 export models/fmnist_logreg.nn --checkpoint "$tmp/c.safetensors" -o "$tmp/m.onnx"; has "$err" "nnc: error: export needs a format: --onnx"
  run 2 export --onnx models/fmnist_logreg.nn --checkpoint "$tmp/c.safetensors"; has "$err" "nnc: error: export --onnx needs -o FILE.onnx, the file to write"
  run 2 train models/fmnist_logreg.nn --histograms x; has "$err" "nnc: error: --histograms needs a whole number of epochs >= 0, not 'x'"
  printf 'model m\ninput x : f32[3]\ntarget y : class[2]\nh = x -> dense(2, init = npy("none.npy"))\nloss cross_entropy(h, y)\ntrain { data csv("d.csv") }\n' > "$tmp/m.nn"
  printf '1,2,3,0\n4,5,6,1\n' > "$tmp/d.csv"
  run 1 train "$tmp/m.nn" --out "$tmp/run"
  has "$err" "nnc: error: the init of weight 'h.weight': $tmp/none.npy: cannot open: No such file or directory"
  run 1 train "$tmp/m.nn" --out "$tmp/run2" --tensorboard "$tmp/d.csv/tb"
  has "$err" "nnc: error: $tmp/d.csv/tb: cannot make the directory: Not a directory" ;;
device_unknown)  run 2 train models/fashion_mlp.nn --device tpu; has "$err" "unknown device 'tpu': use cpu, cuda, cuda-emu or auto" ;;
train_bad_data)
  printf '1,2,3,0\n4,x,6,1\n' > "$tmp/bad.csv"
  printf 'model m\ninput x : f32[3]\ntarget y : class[2]\nh = x -> dense(2)\nloss cross_entropy(h, y)\ntrain { data csv("bad.csv") }\n' > "$tmp/m.nn"
  run 1 train "$tmp/m.nn" --out "$tmp/run"
  has "$err" "$tmp/bad.csv:2: record 2: field 2 ('x') is not a finite number"
  # --data names a directory of arrays for a model whose data is npy(...), not one file
  run 1 train models/ringdown_vi.nn --data models/data/make_ringdown.py --out "$tmp/run2"
  has "$err" "--data models/data/make_ringdown.py: the model reads npy arrays; give a directory holding them" ;;
*) echo "unknown case $case_name"; exit 2 ;;
esac
echo "ok"
