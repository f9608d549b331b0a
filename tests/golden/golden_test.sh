#!/bin/sh
# tests/golden/golden_test.sh: golden dumps of every model in models/ (CTest golden.*).
# For each models/NAME.nn, three texts are pinned beside this script:
#   NAME.ir       `nnc emit --ir`: the graph IR after autodiff and the optimiser update
#   NAME.plan     `nnc emit --plan`: buffers, arena offsets, live ranges, every kernel's expression
#   NAME.kernels  the kernel list of each program (train step, update, eval), fused and with
#                 --fuse=none: what runs, in which order, reading and writing which buffers
# A refactor that must not change the compiled code keeps all three; one that changes the
# printed form of kernels keeps NAME.kernels and NAME.ir.  A model without goldens fails.
# Usage: golden_test.sh NNC KIND [--update]   (KIND: ir, plan or kernels; run from the
# repository root).  --update rewrites the goldens of that kind; read `git diff tests/golden`
# before committing them: a golden is reviewed, never accepted blindly.
set -u
nnc=$1 kind=$2 update=${3:-}
dir=tests/golden
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the program listings of a plan: from the first "; program" line up to "; kernels"
programs() { sed -n '/^; program /,/^; kernels$/p' | sed '$d'; }

dump() { # model -> stdout
  case $kind in
  ir)   "$nnc" emit --ir "$1" ;;
  plan) "$nnc" emit --plan "$1" ;;
  kernels)
    echo "; fused"; "$nnc" emit --plan "$1" | programs
    echo "; --fuse=none"; "$nnc" emit --plan --fuse=none "$1" | programs ;;
  *) echo "unknown kind '$kind'" >&2; return 2 ;;
  esac
}

failed=0 passed=0
for model in models/*.nn; do
  name=$(basename "$model" .nn)
  want=$dir/$name.$kind
  if ! dump "$model" > "$tmp/got" 2> "$tmp/err"; then
    echo "FAIL $model: nnc failed:"; cat "$tmp/err"; failed=$((failed + 1)); continue
  fi
  if [ "$update" = --update ]; then
    if ! cmp -s "$tmp/got" "$want"; then cp "$tmp/got" "$want"; echo "updated $want"; fi
    continue
  fi
  if [ ! -f "$want" ]; then
    echo "FAIL $model: no golden $want (write it with: sh $0 $nnc $kind --update, then read it)"
    failed=$((failed + 1)); continue
  fi
  if cmp -s "$tmp/got" "$want"; then
    passed=$((passed + 1))
  else
    echo "FAIL $model: output differs from $want:"
    diff -u "$want" "$tmp/got" | head -80
    failed=$((failed + 1))
  fi
done
[ "$update" = --update ] && exit 0
echo "golden $kind: $passed passed, $failed failed"
[ $failed = 0 ]
