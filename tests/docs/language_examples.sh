#!/bin/sh
# language_examples.sh DIR: writes every ```nn block of docs/language.md to DIR/NN-ok.nn and every
# ```nn-todo block (a construct not built yet) to DIR/NN-todo.nn, NN counting the blocks from 01.
# Run from the source tree.  Used by docs.language_examples, fmt.every_file and the fuzz tests.
set -u
mkdir -p "$1" || exit 1
awk -v dir="$1" '
  /^```nn(-todo)?$/ { n++; kind = ($0 ~ /todo/) ? "todo" : "ok"; file = sprintf("%s/%02d-%s.nn", dir, n, kind); inblock = 1; next }
  /^```$/ && inblock { inblock = 0; close(file); next }
  inblock { print > file }
' docs/language.md
