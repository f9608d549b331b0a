#!/bin/sh
# checkpoint_test.sh CASE NNC CHECK_METRICS OUTDIR: checkpoints and resuming, through a trainer
# built by `nnc build` (and nnc itself where it says so).
set -eu
case_name=$1 nnc=$2 check=$3 out=$4/$1
rm -rf "$out"
mkdir -p "$out"
py=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)

# two Gaussian blobs in 3-D (600 samples), and a model with a few megabytes of weights and Adam
# state, so that checkpoint writes take a real part of the run
blobs() {
  awk 'BEGIN { srand(7); for (i = 0; i < 600; i++) { c = i % 2;
    for (k = 0; k < 3; k++) { u = rand(); v = rand(); x[k] = (c ? 1.5 : -1.5) + sqrt(-2 * log(u + 1e-12)) * cos(6.283185 * v) }
    printf "%.5f,%.5f,%.5f,%d\n", x[0], x[1], x[2], c } }' > "$out/blobs.csv"
  cat > "$out/blobs.nn" <<'NN'
model blobs
input  x : f32[3]
target y : class[2]
param  lambda = 1e-3
h      = x -> dense(512) -> relu -> gate(l1 = lambda)
h2     = h -> dense(384) -> relu -> gate(l1 = lambda)
logits = h2 -> dense(2)
loss   cross_entropy(logits, y)
metric accuracy(logits, y)
train {
  data csv("blobs.csv") valid 0.2 of train batch 32 epochs 40 seed 5
  optimizer adam(lr = 1e-3)
  schedule lambda = lambda * 0.95 ^ epoch
  prune gates every 5 epochs
}
NN
  "$nnc" build "$out/blobs.nn" -o "$out/blobs" > /dev/null
}

# resumes_bit_for_bit TRAINER: stopped by SIGTERM mid-epoch (3:7) and on an epoch's last step
# (21:15), then resumed, TRAINER's run ends with the metrics and checkpoint bytes of its
# uninterrupted run in ./full (run from $out)
resumes_bit_for_bit() {
  for at in 3:7 21:15; do
    rc=0; NNC_TEST_SIGNAL_AT=$at ./$1 train --out "p$at" --no-progress > "p$at.log" 2>&1 || rc=$?
    test $rc = 143 || { cat "p$at.log"; echo "FAIL: $at: expected exit status 143 after SIGTERM, got $rc"; exit 1; }
    ./$1 train --out "p$at" --resume --no-progress > "r$at.log"
    "$check" --same full/metrics.jsonl "p$at/metrics.jsonl" > /dev/null || { echo "FAIL: resumed after $at"; exit 1; }
    cmp full/checkpoint.safetensors "p$at/checkpoint.safetensors"
    echo "$at: resumed bit for bit"
  done
}

case $case_name in
resume_after_sigterm_is_bit_exact)
  blobs
  cd "$out"
  ./blobs train --out full --no-progress > /dev/null
  # SIGTERM stops at the next step boundary with a checkpoint; --resume finishes the run
  ./blobs train --out part --no-progress > part.log 2>&1 &
  pid=$!
  until grep -q "^epoch 20/" part.log; do sleep 0.01; done # mid-run, after a pruning
  kill -TERM $pid
  rc=0; wait $pid || rc=$?
  cat part.log
  test $rc = 143 || { echo "FAIL: expected exit status 143 after SIGTERM, got $rc"; exit 1; }
  grep -q "^interrupted by SIGTERM at epoch [0-9]*, step [0-9]*; checkpoint written; continue with --resume" part.log
  ./blobs train --out part --resume --no-progress > resume.log
  grep "^resuming from part/checkpoint.safetensors: epoch" resume.log
  "$check" --same full/metrics.jsonl part/metrics.jsonl
  cmp full/checkpoint.safetensors part/checkpoint.safetensors
  # resuming a finished run does nothing
  ./blobs train --out part --resume --no-progress > again.log
  grep "is complete" again.log ;;
resume_at_every_position_is_bit_exact)
  blobs
  cd "$out"
  ./blobs train --out full --no-progress > /dev/null
  # NNC_TEST_SIGNAL_AT (test only) raises SIGTERM at an exact point; 480 training samples in
  # batches of 32 make 15 steps an epoch, and epochs 5, 10, ... end by pruning. Positions: mid
  # epoch; an epoch's first step; its last step (21:15, where a SIGTERM under load once landed);
  # after the last step, before the evaluation (the run stops at the next epoch's first step);
  # a pruning epoch's last step and its evaluation; the first step after a pruning; the run's
  # last step
  for at in 3:7 4:1 21:15 7:eval 5:15 10:eval 11:1 40:15; do
    rc=0; NNC_TEST_SIGNAL_AT=$at ./blobs train --out "p$at" --no-progress > "p$at.log" 2>&1 || rc=$?
    test $rc = 143 || { cat "p$at.log"; echo "FAIL: $at: expected exit status 143 after SIGTERM, got $rc"; exit 1; }
    echo "$at: $(grep "^interrupted by SIGTERM" "p$at.log")"
    grep -q "^interrupted by SIGTERM at epoch [0-9]*, step [0-9]*; checkpoint written; continue with --resume" "p$at.log"
    ./blobs train --out "p$at" --resume --no-progress > "r$at.log"
    "$check" --same full/metrics.jsonl "p$at/metrics.jsonl" > /dev/null || { echo "FAIL: resumed after $at"; exit 1; }
    cmp full/checkpoint.safetensors "p$at/checkpoint.safetensors"
    # (check_metrics ignores timing) every train line's throughput is measured, resumed or not
    if grep '"split":"train"' "p$at/metrics.jsonl" | grep '"samples_per_s":\(0[,}]\|-\)'; then
      echo "FAIL: resumed after $at: a train line without a throughput"; exit 1
    fi
  done ;;
prune_steps_resume_is_bit_exact)
  # `prune gates every 20 steps` (15 steps an epoch) with gates that fold once the penalty ends
  # (after epoch 10: the pruning at step 160, epoch 11's 10th step, folds them): stopped at a
  # pruning step, the step after it, the folding step and the one after, an epoch's last step
  # and the run's, then resumed, the run ends as the uninterrupted one, bit for bit
  blobs
  cd "$out"
  sed -e 's/gate(l1 = lambda)/gate(l1 = lambda, fold = true)/' -e 's/prune gates every 5 epochs/prune gates every 20 steps/' \
      -e 's/schedule lambda = lambda \* 0.95 ^ epoch/schedule lambda = step(every = 10 epochs, gamma = 0) * 0.95 ^ epoch/' \
      blobs.nn > steps.nn
  test "$(grep -c 'fold = true' steps.nn)" = 2
  grep -q "every 20 steps" steps.nn
  grep -q "gamma = 0" steps.nn
  "$nnc" build steps.nn -o steps > /dev/null
  ./steps train --out full --no-progress > full.log
  grep -q "^pruned at step 20 (epoch 2): h 512 -> " full.log
  grep -q "^folded the gates into their layers at step 160 (epoch 11): h, h2$" full.log
  if grep -q "^folded the gates into their layers at step 140 " full.log; then echo "FAIL: folded with the penalty on"; exit 1; fi
  for at in 2:5 2:6 11:10 11:11 21:15 40:15; do
    rc=0; NNC_TEST_SIGNAL_AT=$at ./steps train --out "p$at" --no-progress > "p$at.log" 2>&1 || rc=$?
    test $rc = 143 || { cat "p$at.log"; echo "FAIL: $at: expected exit status 143 after SIGTERM, got $rc"; exit 1; }
    ./steps train --out "p$at" --resume --no-progress > "r$at.log"
    "$check" --same full/metrics.jsonl "p$at/metrics.jsonl" > /dev/null || { echo "FAIL: resumed after $at"; exit 1; }
    cmp full/checkpoint.safetensors "p$at/checkpoint.safetensors"
    echo "$at: resumed bit for bit"
  done ;;
dropout_resume_is_bit_exact)
  # dropout's masks are a function of (seed, step, element): a run interrupted mid-epoch, or on
  # an epoch's last step, resumes to the same metrics and checkpoint bytes, with no generator
  # state in the checkpoint; and the masks differ from step to step (training is not the same
  # as without dropout)
  blobs
  cd "$out"
  sed 's/-> relu -> gate(l1 = lambda)$/-> relu -> dropout(0.3) -> gate(l1 = lambda)/' blobs.nn > drop.nn
  grep -q "dropout(0.3)" drop.nn
  "$nnc" build drop.nn -o drop > /dev/null
  ./drop train --out full --no-progress > /dev/null
  resumes_bit_for_bit drop
  ./blobs train --out plain --no-progress > /dev/null
  if "$check" --same plain/metrics.jsonl full/metrics.jsonl > /dev/null 2>&1; then
    echo "FAIL: training with dropout gave the same metrics as without"; exit 1
  fi
  # and it still learns (evaluation runs with dropout off)
  "$check" full/metrics.jsonl valid accuracy 0.9 ;;
survives_20_sigkills)
  blobs
  cd "$out"
  ./blobs train --out full --epochs 2000 --no-progress > /dev/null
  # 20 kills at random moments (checkpoint writes included: a checkpoint after every epoch);
  # every restart resumes from an intact checkpoint or, before the first one, starts over,
  # and says which
  i=0 in_write=0
  for delay in $(awk 'BEGIN { srand(11); for (i = 0; i < 20; i++) printf "%.3f ", 0.1 + 0.2 * rand() }'); do
    i=$((i + 1))
    ./blobs train --out part --epochs 2000 --resume --no-progress > "kill$i.log" 2>&1 &
    pid=$!
    sleep "$delay"
    kill -KILL $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    if grep -q "error" "kill$i.log"; then echo "FAIL: run $i:"; cat "kill$i.log"; exit 1; fi
    if grep -q "is complete" "kill$i.log"; then echo "FAIL: run $i finished before its kill; the test needs a longer run"; exit 1; fi
    ls part/checkpoint.safetensors.tmp.* > /dev/null 2>&1 && in_write=$((in_write + 1))
    printf "kill %d after %s s: %s\n" $i "$delay" "$(grep -h -e '^resuming' -e '^no checkpoint' "kill$i.log" | head -1)"
  done
  echo "$in_write of 20 kills interrupted a checkpoint write"
  ./blobs train --out part --epochs 2000 --resume --no-progress > final.log
  grep -e "^resuming" -e "^removed" final.log
  "$check" --same full/metrics.jsonl part/metrics.jsonl
  cmp full/checkpoint.safetensors part/checkpoint.safetensors
  echo "the final weights and every metrics line equal those of the uninterrupted run" ;;
refuses_bad_checkpoints)
  blobs
  cd "$out"
  ./blobs train --out a --epochs 2 --no-progress > /dev/null
  # truncated
  mkdir -p t && head -c 1000 a/checkpoint.safetensors > t/checkpoint.safetensors
  if ./blobs train --out t --resume 2> err; then echo "FAIL: resumed from a truncated checkpoint"; exit 1; fi
  cat err; grep -q "cannot resume: t/checkpoint.safetensors:" err
  # another model's
  "$nnc" build "$OLDPWD/models/fashion_mlp.nn" -o fmlp > /dev/null
  mkdir -p o && cp a/checkpoint.safetensors o/
  if ./fmlp train --out o --resume 2> err; then echo "FAIL: resumed another model's checkpoint"; exit 1; fi
  cat err; grep -q "is a checkpoint of model 'blobs', not 'fashion_mlp'" err
  # other settings
  if ./blobs train --out a --resume --set lambda=0.5 2> err; then echo "FAIL: resumed with other settings"; exit 1; fi
  cat err; grep -q "was written with --set (none), this run has --set lambda=0.5" err
  # a reformatted model (comments, spacing, line breaks, 1e-3 written 0.001) still resumes its
  # run: checkpoints name a model by its tokens
  { echo "# reformatted"; sed 's/  */ /g; s/1e-3/0.001/; s/^train {$/train\n{/' blobs.nn; echo "# the end"; } > spaced.nn
  "$nnc" build spaced.nn -o spaced > /dev/null
  ./spaced train --out a --epochs 3 --resume --no-progress > spaced.log
  cat spaced.log | head -3; grep -q "^resuming" spaced.log
  # and so does the model as `nnc fmt` lays it out
  "$nnc" fmt spaced.nn > tidy.nn
  cmp -s tidy.nn spaced.nn && { echo "FAIL: nnc fmt changed nothing"; exit 1; }
  "$nnc" build tidy.nn -o tidy > /dev/null
  ./tidy train --out a --epochs 4 --resume --no-progress > tidy.log
  cat tidy.log | head -3; grep -q "^resuming" tidy.log
  # a checkpoint of an edited model (a width changed)
  sed 's/dense(384)/dense(320)/' blobs.nn > edited.nn
  "$nnc" build edited.nn -o edited > /dev/null
  if ./edited train --out a --resume 2> err; then echo "FAIL: resumed from an edited model's checkpoint"; exit 1; fi
  cat err; grep -q "^nnc: error: cannot resume: a/checkpoint.safetensors was written by another version of model 'blobs' (source hash [0-9a-f]\{16\}, this one [0-9a-f]\{16\})$" err
  # --data that is neither an IDX directory nor a CSV file
  if ./blobs train --out d --data nowhere 2> err; then exit 1; fi
  cat err; grep -q "^nnc: error: --data nowhere: No such file or directory$" err
  if ./blobs train --out d --data blobs.nn 2> err; then exit 1; fi
  cat err; grep -q "^nnc: error: --data blobs.nn: give a directory holding the four standard IDX files, or a .csv file$" err
  # eval without anything to evaluate on
  ./blobs eval --checkpoint a/checkpoint.safetensors --set valid=0 > ev.log
  cat ev.log; grep -q "^nothing to evaluate: the model has no validation or test data$" ev.log
  # eval with a foreign checkpoint
  if ./fmlp eval --checkpoint a/checkpoint.safetensors 2> err; then echo "FAIL"; exit 1; fi
  cat err; grep -q "^nnc: error: a/checkpoint.safetensors is a checkpoint of model 'blobs', not 'fashion_mlp'$" err ;;
numpy_reads_checkpoint)
  "$py" -c "import numpy" 2>/dev/null || { echo "no numpy for /usr/bin/python3: skipped"; exit 77; }
  blobs
  cd "$out"
  ./blobs train --out a --epochs 1 --no-progress > /dev/null
  PYTHONPATH="$here" "$py" - a/checkpoint.safetensors <<'PY'
import json, sys
import numpy as np
import st_numpy
t, meta = st_numpy.read(sys.argv[1])
assert meta["model"] == "blobs" and meta["format"] == "nnc-checkpoint-1", meta
assert t["h.weight"].shape == (512, 3) and t["h.bias"].shape == (512,) and t["h.gate"].shape == (512,)
assert t["h2.weight"].shape == (384, 512) and t["logits.weight"].shape == (2, 384)
assert t["h.weight.adam_m"].shape == (512, 3) and t["h.weight.adam_v"].shape == (512, 3)
assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in t.values())
print(len(t), "tensors;", json.loads(meta["widths"]), "epoch", meta["epoch"])
try:
    from safetensors.numpy import load_file
    s = load_file(sys.argv[1])
    assert all((s[k] == t[k]).all() for k in t)
    print("and the safetensors package reads it the same")
except ImportError:
    print("(the safetensors package is not installed; read with NumPy alone)")
PY
  ;;
batch_norm_resume_and_eval)
  # batch_norm's running statistics are model state: saved in the checkpoint (as its own
  # tensors), pruned with their channels, restored bit for bit on resume, and used by eval,
  # which reproduces training's last evaluation exactly (its scheduled penalty included); the
  # same holds for the model without normalisation
  blobs
  cd "$out"
  sed -e 's/dense(512) -> relu/dense(512, bias = false) -> batch_norm -> relu/' \
      -e 's/dense(384) -> relu/dense(384) -> layer_norm -> relu/' blobs.nn > bn.nn
  grep -q "batch_norm" bn.nn && grep -q "layer_norm" bn.nn
  "$nnc" build bn.nn -o bn > /dev/null
  ./bn train --out full --no-progress > full.log
  grep -q '^pruned after epoch [0-9]*: h 512 -> ' full.log
  grep -q '"h.running_mean"' full/checkpoint.safetensors
  grep -q '"h.running_var"' full/checkpoint.safetensors
  resumes_bit_for_bit bn
  ./blobs train --out plain --no-progress > plain.log
  for run in bn:full blobs:plain; do
    m=${run%%:*} dir=${run#*:}
    last=$(sed -n 's/^epoch 40\/40 .*| valid \(loss [0-9.]* accuracy [0-9.]*\) |.*/\1/p' "$dir.log")
    test -n "$last"
    ./$m eval --checkpoint "$dir/checkpoint.safetensors" | tee "$m.eval"
    grep -q "| valid $last$" "$m.eval" || { echo "FAIL: $m: eval does not reproduce training's '$last'"; exit 1; }
  done ;;
eval_and_predict_reproduce_accuracy)
  "$py" -c "import numpy" 2>/dev/null || { echo "no numpy for /usr/bin/python3: skipped"; exit 77; }
  "$nnc" build models/fashion_mlp.nn -o "$out/fmlp" > /dev/null
  cd "$out"
  ./fmlp train --epochs 1 --out run --no-progress | tee train.log
  acc=$(sed -n 's/.*| test loss [0-9.]* accuracy \([0-9.]*\) .*/\1/p' train.log)
  ./fmlp eval --checkpoint run/checkpoint.safetensors | tee eval.log
  grep -q "| test loss [0-9.]* accuracy $acc$" eval.log
  images=$(ls /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte*) labels=$(ls /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte*)
  ./fmlp predict --checkpoint run/checkpoint.safetensors --input "$images" --output pred.npy
  ./fmlp predict --checkpoint run/checkpoint.safetensors --input "$images" --output pred.csv
  "$py" - pred.npy pred.csv "$labels" "$acc" <<'PY'
import gzip, sys
import numpy as np
p = np.load(sys.argv[1])
c = np.loadtxt(sys.argv[2], delimiter=",", skiprows=1)
raw = gzip.open(sys.argv[3]).read() if sys.argv[3].endswith(".gz") else open(sys.argv[3], "rb").read()
labels = np.frombuffer(raw, np.uint8, offset=8)
acc = (p.argmax(1) == labels).mean()
print(f"predict: {p.shape}, accuracy {acc:.4f}; training reported {sys.argv[4]}")
assert p.shape == (10000, 10) and abs(acc - float(sys.argv[4])) < 1e-9
assert (c[:, 0] == p.argmax(1)).all() and np.allclose(c[:, 1:], p, rtol=1e-6)
PY
  # inputs as NPY and CSV give the same predictions
  "$py" -c "
import gzip, sys, numpy as np
raw = gzip.open(sys.argv[1]).read() if sys.argv[1].endswith('.gz') else open(sys.argv[1], 'rb').read()
x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784)[:100].astype(np.float32) / 255
np.save('x.npy', x); np.savetxt('x.csv', x, delimiter=',', fmt='%.9g')" "$images"
  ./fmlp predict --checkpoint run/checkpoint.safetensors --input x.npy --output p1.npy > /dev/null
  ./fmlp predict --checkpoint run/checkpoint.safetensors --input x.csv --output p2.npy > /dev/null
  # (IDX bytes are scaled by a float multiply by 1/255, NumPy divided by 255: rounding apart)
  "$py" -c "import numpy as np; a, b, c = np.load('p1.npy'), np.load('p2.npy'), np.load('pred.npy')[:100]; assert (a == b).all() and np.allclose(a, c, rtol=1e-4, atol=1e-5); print('NPY, CSV and IDX inputs agree')"
  # a mislabelled input is refused
  cp x.npy wrong.csv
  if ./fmlp predict --checkpoint run/checkpoint.safetensors --input wrong.csv --output p3.npy 2> err; then exit 1; fi
  cat err; grep -q "wrong.csv: the name says CSV, but the content is an NPY file" err
  # inputs of the wrong size, a label file, a compressed NPY, an output format it cannot write
  "$py" -c "import numpy as np; np.save('x5.npy', np.zeros((100, 5), np.float32))"
  if ./fmlp predict --checkpoint run/checkpoint.safetensors --input x5.npy --output p3.npy 2> err; then exit 1; fi
  cat err; grep -q "^nnc: error: x5.npy: an array of 100 samples of 5 values, but input 'image' has 784 values per sample$" err
  if ./fmlp predict --checkpoint run/checkpoint.safetensors --input "$labels" --output p3.npy 2> err; then exit 1; fi
  cat err; grep -q "expected an image file (2 or more dimensions), but it has 1 dimension (a label file?)$" err
  gzip -c x.npy > x.npy.gz
  if ./fmlp predict --checkpoint run/checkpoint.safetensors --input x.npy.gz --output p3.npy 2> err; then exit 1; fi
  cat err; grep -q "^nnc: error: x.npy.gz: a gzip-compressed NPY file; decompress it first$" err
  set +e
  ./fmlp predict --checkpoint run/checkpoint.safetensors --input x.npy --output p3.txt 2> err; rc=$?
  set -e
  cat err; test $rc = 2; grep -q "^nnc: error: --output p3.txt: name it .npy or .csv, the format to write$" err ;;
init_from_weights)
  "$py" -c "import numpy" 2>/dev/null || { echo "no numpy for /usr/bin/python3: skipped"; exit 77; }
  blobs
  cd "$out"
  ./blobs train --out a --epochs 3 --no-progress > /dev/null
  # weights "exported from another framework": the trained parameters only, float64, by name
  PYTHONPATH="$here" "$py" - a/checkpoint.safetensors <<'PY'
import sys
import numpy as np
import st_numpy
t, _ = st_numpy.read(sys.argv[1])
w = {k: v for k, v in t.items() if not k.endswith(("adam_m", "adam_v"))}
st_numpy.write("exported.safetensors", w, "F64")
bad = dict(w); bad["h.weight"] = np.zeros((4, 3)); del bad["h2.bias"]; bad["extra"] = np.zeros(2)
st_numpy.write("bad.safetensors", bad, "F64")
PY
  ./blobs train --out b --epochs 1 --init exported.safetensors --no-progress | tee b.log
  grep -q "^initial weights: 8 tensors from exported.safetensors" b.log
  ./blobs eval --checkpoint a/checkpoint.safetensors > ea.log
  if ./blobs train --out c --init bad.safetensors 2> err; then echo "FAIL: trained from mismatched weights"; exit 1; fi
  cat err
  grep -q "bad.safetensors: tensor 'h.weight' is \[4,3\], but the model's is \[512,3\]" err
  grep -q "bad.safetensors has no tensor 'h2.bias'" err
  grep -q "bad.safetensors: tensor 'extra' is not a weight of this model" err ;;
*) echo "unknown case $case_name"; exit 2 ;;
esac
