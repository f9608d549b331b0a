#!/bin/sh
# stdlib_test.sh NNC SCRATCH: every block of stdlib/ is what its file promises and is in use:
# stdlib/NAME.nn defines block NAME and nothing but blocks, a model calling it compiles with
# `nnc check` (so its body is checked), docs/language.md names it in its table of the library,
# and a model in models/ or a test in tests/ calls it.
set -u
nnc=$1 dir=$2/stdlib_test
rm -rf "$dir"; mkdir -p "$dir"
fail=0 count=0
for f in stdlib/*.nn; do
  name=$(basename "$f" .nn) count=$((count + 1))
  grep -q "^block $name(" "$f" || { echo "FAIL $f: defines no block '$name'"; fail=1; }
  grep -q "^| \`$name(" docs/language.md || { echo "FAIL $f: docs/language.md's library table has no row for '$name'"; fail=1; }
  grep -rlq --include=*.nn --include=*.py --include=*.sh "$name(" models tests ||
    { echo "FAIL $f: no model or test calls '$name'"; fail=1; }
done
# a model calling each block with its first parameter piped in (a feature map [12, 12, 3], it
# flattened, or a flat vector of the first argument's width, 8) and only its required arguments, taken from the library table's call
# (`| `mlp(x, hidden, out)` | ...` -> mlp(8, 16))
grep '^| `[a-z_0-9]*(x' docs/language.md | sed 's/^| `\([a-z_0-9]*\)(\([^`]*\))`.*/\1 \2/' | while read -r name args; do
  call=$(echo "$args" | sed 's/^x,* *//; s/[a-z_]* = [^,]*,* *//g; s/, *$//' | awk -F', *' '{ for (i = 1; i <= NF; i++) printf "%s%d", (i > 1 ? ", " : ""), 8 * i; }')
  ok=0
  for input in image "flatten(image)" "flatten(image) -> dense(8)"; do # a feature map, a flat vector, or one 8 wide
    printf 'model use_%s\ninput  image : f32[12, 12, 3]\ntarget label : class[4]\nh      = %s -> %s(%s)\nlogits = flatten(h) -> dense(4)\nloss   cross_entropy(logits, label)\ntrain  { data fashion_mnist }\n' \
      "$name" "$input" "$name" "$call" > "$dir/$name.nn"
    "$nnc" check "$dir/$name.nn" > "$dir/$name.out" 2>&1 && ok=1 && break
  done
  [ $ok = 1 ] || { echo "FAIL $name: a model calling $name($call) does not compile"; cat "$dir/$name.out"; exit 1; }
  echo "ok   $name($call) compiles"
done || fail=1
[ $count -gt 0 ] || { echo "FAIL no stdlib/*.nn"; exit 1; }
[ $fail = 0 ] && echo "ok   $count library files: each defines its block, is documented and is used"
exit $fail
