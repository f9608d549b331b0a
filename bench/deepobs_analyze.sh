#!/bin/sh
# bench/deepobs_analyze.sh: proof that DeepOBS's own tools read what nnc writes.  Installs DeepOBS
# 1.1.2 from PyPI (with what its analyzer needs: matplotlib, pandas, seaborn, matplotlib2tikz,
# and scipy and six, which its package imports) in a virtual environment, then runs its analyzer
# (bench/deepobs_analyze.py) on an `nnc sweep` directory: the performance plots, the
# learning-rate sensitivity and the benchmark table.  Figures go to FIGURES.
#   sh bench/deepobs_analyze.sh SWEEP_DIR [FIGURES]   (VENV=/tmp/deepobs-venv)
set -eu
sweep=$1
figures=${2:-$sweep.deepobs}
venv=${VENV:-/tmp/deepobs-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import deepobs' 2> /dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet deepobs==1.1.2 scipy six
fi
"$venv/bin/python" "$(dirname "$0")/deepobs_analyze.py" "$sweep" "$figures"
