#!/bin/sh
# callgrind_split.sh FILE.out: a callgrind profile's self Ir (instructions) grouped: OpenBLAS sgemm kernel, its
# packing copies, sgemm_beta, nnc's kernels (named k<N>_... in a `nnc build` trainer; unnamed JIT code
# under `nnc train`), memset (including OpenBLAS's zeroing of C for beta = 0), weight init, zlib, the rest.
f=$1
callgrind_annotate --threshold=100 $f 2>/dev/null | sed -n '/file:function/,$p' | awk '
NF>=2 && $1 ~ /^[0-9,]+$/ { n=$1; gsub(",","",n); fn=$0;
  g="other";
  if (fn ~ /sgemm_kernel/) g="openblas sgemm_kernel";
  else if (fn ~ /sgemm_beta/) g="openblas sgemm_beta";
  else if (fn ~ /sgemm_(in|on|it|ot)copy/) g="openblas copy (pack)";
  else if (fn ~ /libopenblas/) g="openblas other";
  else if (fn ~ /\?\?\?:k[0-9]+_/ ) g="nnc kernels (AOT)";
  else if (fn ~ /\?\?\?:0x/ && fn ~ /\[\?\?\?\]/) g="JIT code (unnamed)";
  else if (fn ~ /memset/) g="memset";
  else if (fn ~ /train_init_weights|rng_/) g="init weights";
  else if (fn ~ /libz|inflate|crc32/) g="zlib (data, checkpoint)";
  s[g]+=n; t+=n }
END { for (g in s) printf "%-26s %14.0f %6.2f%%\n", g, s[g], 100*s[g]/t; printf "%-26s %14.0f\n", "total", t }' | sort -k1,1
