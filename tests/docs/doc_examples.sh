#!/bin/sh
# doc_examples.sh NNC SCRATCH: every ```nn block of docs/language.md is a complete model that
# `nnc check` accepts; every ```nn-todo block is rejected with a located "not implemented yet"
# error.  Keeps the language reference and the compiler in step.
set -u
nnc=$1 dir=$2/doc_examples
rm -rf "$dir"
sh tests/docs/language_examples.sh "$dir" || exit 1
fail=0 count=0
for f in "$dir"/*.nn; do
  count=$((count + 1))
  "$nnc" check "$f" > "$f.out" 2> "$f.err"; rc=$?
  case $f in
  *-ok.nn)
    if [ $rc != 0 ]; then echo "FAIL $f: expected it to compile"; cat "$f" "$f.err"; fail=1; fi ;;
  *-todo.nn)
    if [ $rc != 1 ] || ! grep -q "^$f:[0-9]*:[0-9]*: error: .*not implemented yet" "$f.err"; then
      echo "FAIL $f: expected a located 'not implemented yet' error"; cat "$f" "$f.err"; fail=1
    elif grep "error:" "$f.err" | grep -v "not implemented yet" | grep -q .; then
      echo "FAIL $f: errors besides 'not implemented yet':"; cat "$f.err"; fail=1
    fi ;;
  esac
done
[ $count -ge 15 ] || { echo "FAIL: only $count examples found"; fail=1; }
echo "$count examples checked"
exit $fail
