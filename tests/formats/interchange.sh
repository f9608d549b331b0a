#!/bin/sh
# tests/formats/interchange.sh: runs read_safetensors.py with Debian's /usr/bin/python3, which
# checks nnc's safetensors and .npy files against NumPy.  Exit 77 (skip) without python3 or numpy.
# usage: interchange.sh TEST_FORMATS SCRATCH_DIR
[ -x /usr/bin/python3 ] || { echo "skip: /usr/bin/python3 is missing"; exit 77; }
/usr/bin/python3 -c 'import numpy' 2>/dev/null || { echo "skip: numpy is missing for /usr/bin/python3"; exit 77; }
exec /usr/bin/python3 "$(dirname "$0")/read_safetensors.py" "$@"
