#!/bin/sh
# fmt_test.sh CASE NNC SCRATCH: `nnc fmt` (compiler/format.c).
#   every_file  every .nn of the repository (models/, stdlib/, tests/train/models/, tests/diag/)
#               and every example of docs/language.md: formatting is idempotent, and the
#               formatted file means the same: the same syntax tree (emit --ast) and, for each
#               file that compiles, the same IR and memory plan (emit --ir, --plan), source
#               positions aside; a file that does not parse gets located errors and no output
#   layout      tests/fmt/layout_in.nn formats to exactly tests/fmt/layout_out.nn; CRLF line
#               endings and tabs
#   cli         --check, --write and standard input; errors and usage
# Run from the source tree.
set -u
case=$1 nnc=$2 dir=$3/fmt_$1
rm -rf "$dir"; mkdir -p "$dir"
fail=0
no_pos='s/^( *)[0-9]+:[0-9]+ /\1/; s/# ([^ ]*):[0-9]+:[0-9]+/# \1/g'

case $case in
every_file)
  sh tests/docs/language_examples.sh "$dir/docs" || exit 1
  count=0 compiled=0 refused=0
  for f in models/*.nn stdlib/*.nn tests/train/models/*.nn tests/diag/*.nn "$dir"/docs/*.nn; do
    name=$(echo "$f" | tr / _)
    a=$dir/a/$name b=$dir/b/$name
    mkdir -p "$dir/a/$name" "$dir/b/$name"
    base=$(basename "$f")
    cp "$f" "$a/$base"
    if ! "$nnc" fmt "$f" > "$b/$base" 2> "$b/err"; then
      # only a file that does not parse is refused, with its errors located and no output
      if "$nnc" emit --ast "$f" > /dev/null 2>&1; then echo "FAIL $f: parses, but fmt refused it:"; cat "$b/err"; fail=1; fi
      grep -q "^$f:[0-9]*:[0-9]*: error: " "$b/err" || { echo "FAIL $f: fmt's errors are not located:"; cat "$b/err"; fail=1; }
      [ -s "$b/$base" ] && { echo "FAIL $f: output despite errors"; fail=1; }
      refused=$((refused + 1))
      continue
    fi
    count=$((count + 1))
    "$nnc" fmt "$b/$base" > "$b/again.nn" || fail=1
    cmp -s "$b/$base" "$b/again.nn" || { echo "FAIL $f: formatting it again changes it:"; diff "$b/$base" "$b/again.nn"; fail=1; }
    for what in ast ir plan; do
      (cd "$a" && "$nnc" emit --$what "$base") > "$a/$what" 2> /dev/null; rca=$?
      (cd "$b" && "$nnc" emit --$what "$base") > "$b/$what" 2> /dev/null; rcb=$?
      [ $rca = $rcb ] || { echo "FAIL $f: emit --$what exits $rca before formatting, $rcb after"; fail=1; continue; }
      [ $rca = 0 ] || continue
      [ $what = plan ] && compiled=$((compiled + 1))
      sed -E "$no_pos" "$a/$what" > "$a/$what.np"; sed -E "$no_pos" "$b/$what" > "$b/$what.np"
      cmp -s "$a/$what.np" "$b/$what.np" || { echo "FAIL $f: its $what changed:"; diff "$a/$what.np" "$b/$what.np" | head -20; fail=1; }
    done
  done
  echo "$count files formatted ($compiled compile to a plan), $refused refused"
  [ $count -ge 200 ] && [ $compiled -ge 50 ] && [ $refused -ge 5 ] || { echo "FAIL: too few files"; fail=1; }
  ;;
layout)
  "$nnc" fmt tests/fmt/layout_in.nn > "$dir/out.nn" || fail=1
  diff -u tests/fmt/layout_out.nn "$dir/out.nn" || { echo "FAIL: layout_in.nn formats otherwise"; fail=1; }
  "$nnc" fmt tests/fmt/layout_out.nn | cmp -s - tests/fmt/layout_out.nn || { echo "FAIL: layout_out.nn is not in the layout"; fail=1; }
  # CRLF line endings and tabs: LF, spaces
  printf 'model m\r\ninput\tx : f32[2]\t# in\r\n\r\n\r\ny\t=\tx -> dense(1)\r\nloss mse(y,\r\n\t0)\r\n' > "$dir/crlf.nn"
  printf 'model m\ninput x : f32[2]  # in\n\ny = x -> dense(1)\nloss mse(y,\n         0)\n' > "$dir/crlf_want.nn"
  "$nnc" fmt "$dir/crlf.nn" > "$dir/crlf_out.nn" || fail=1
  diff -u "$dir/crlf_want.nn" "$dir/crlf_out.nn" || { echo "FAIL: CRLF and tabs"; fail=1; }
  # a file of comments only, and an empty one
  printf '\n\n# just\n\n\n#   a comment   \n\n' > "$dir/comments.nn"
  printf '# just\n\n#   a comment\n' > "$dir/comments_want.nn"
  "$nnc" fmt "$dir/comments.nn" | diff -u "$dir/comments_want.nn" - || { echo "FAIL: comments only"; fail=1; }
  : > "$dir/empty.nn"
  [ "$("$nnc" fmt "$dir/empty.nn" | wc -c)" = 0 ] || { echo "FAIL: an empty file"; fail=1; }
  ;;
cli)
  cd "$dir" || exit 1
  cp "$OLDPWD/tests/fmt/layout_in.nn" messy.nn; cp "$OLDPWD/tests/fmt/layout_out.nn" tidy.nn
  chmod 640 messy.nn
  # --check names the files that are not in the layout, exit status 1
  "$nnc" fmt --check tidy.nn > out || { echo "FAIL: --check refused a formatted file"; fail=1; }
  [ -s out ] && { echo "FAIL: --check named a formatted file"; fail=1; }
  "$nnc" fmt --check tidy.nn messy.nn > out; rc=$?
  [ $rc = 1 ] && [ "$(cat out)" = messy.nn ] || { echo "FAIL: --check: exit $rc, printed:"; cat out; fail=1; }
  cmp -s messy.nn "$OLDPWD/tests/fmt/layout_in.nn" || { echo "FAIL: --check changed a file"; fail=1; }
  # --write rewrites in place, keeping the file's mode, and leaves formatted files alone
  touch -d '2020-01-01' tidy.nn
  "$nnc" fmt --write messy.nn tidy.nn > out 2>&1 || { echo "FAIL: --write"; cat out; fail=1; }
  cmp -s messy.nn tidy.nn || { echo "FAIL: --write wrote otherwise"; diff messy.nn tidy.nn; fail=1; }
  [ "$(stat -c %a messy.nn)" = 640 ] || { echo "FAIL: --write changed the mode to $(stat -c %a messy.nn)"; fail=1; }
  [ "$(stat -c %Y tidy.nn)" = "$(date -d 2020-01-01 +%s)" ] || { echo "FAIL: --write touched a formatted file"; fail=1; }
  ls | grep -q tmp && { echo "FAIL: a temporary file is left"; ls; fail=1; }
  # a file that does not parse: its errors, nothing written, exit status 1
  printf 'model bad\ninput x : f32[2]\ny = x -> \n' > bad.nn
  cp bad.nn bad_before.nn
  "$nnc" fmt --write bad.nn 2> err; rc=$?
  cat err
  [ $rc = 1 ] && grep -q "^bad.nn:4:1: error: unexpected end of file" err || { echo "FAIL: a file that does not parse (exit $rc)"; fail=1; }
  cmp -s bad.nn bad_before.nn || { echo "FAIL: a file that does not parse was changed"; fail=1; }
  "$nnc" fmt missing.nn 2> err; rc=$?
  [ $rc = 1 ] && grep -qx "nnc: error: cannot read 'missing.nn': No such file or directory" err || { echo "FAIL: a missing file (exit $rc)"; cat err; fail=1; }
  # standard input, as an editor pipes its buffer
  printf 'model m input x:f32[1]\n# end' | "$nnc" fmt - > out || { echo "FAIL: fmt -"; fail=1; }
  printf 'model m\ninput x : f32[1]\n# end\n' | cmp -s - out || { echo "FAIL: fmt - printed:"; cat out; fail=1; }
  printf 'y =' | "$nnc" fmt - > out 2> err; rc=$?
  [ $rc = 1 ] && grep -q "^<stdin>:1:4: error: unexpected end of file" err || { echo "FAIL: fmt - of a bad file (exit $rc)"; cat err; fail=1; }
  [ "$(cat out)" = "y =" ] || { echo "FAIL: fmt - of a bad file must give the text back, not:"; cat out; fail=1; }
  "$nnc" fmt --write - 2> err < /dev/null; rc=$?
  [ $rc = 2 ] && grep -qx "nnc: error: fmt --write needs files, not '-'" err || { echo "FAIL: fmt --write - (exit $rc)"; cat err; fail=1; }
  printf 'model   m\n' > untidy.nn && cp untidy.nn untidy_before.nn
  "$nnc" fmt --write untidy.nn - 2> err < /dev/null; rc=$?  # refused before any file is written
  [ $rc = 2 ] && cmp -s untidy.nn untidy_before.nn || { echo "FAIL: fmt --write FILE - wrote FILE (exit $rc)"; fail=1; }
  # usage
  "$nnc" fmt 2> err; rc=$?
  [ $rc = 2 ] && grep -qx "nnc: error: 'fmt' needs a model file" err || { echo "FAIL: no file (exit $rc)"; cat err; fail=1; }
  "$nnc" fmt --check --write tidy.nn 2> err; rc=$?
  [ $rc = 2 ] && grep -qx "nnc: error: fmt takes --check or --write, not both" err || { echo "FAIL: both modes (exit $rc)"; cat err; fail=1; }
  "$nnc" fmt --diff tidy.nn 2> err; rc=$?
  [ $rc = 2 ] && grep -qx "nnc: error: unknown option '--diff' (fmt takes --check or --write)" err || { echo "FAIL: unknown option (exit $rc)"; cat err; fail=1; }
  ;;
*)
  echo "unknown case $case"; exit 2 ;;
esac
[ $fail = 0 ] && echo "ok: $case"
exit $fail
