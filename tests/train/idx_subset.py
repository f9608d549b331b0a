"""idx_subset.py: the first N training and M test records of an IDX data set (Fashion-MNIST's
four gzip files) written as a smaller IDX data set, for tests and benchmarks that train on a
part of it through `nnc train --data DIR`.
    python3 tests/train/idx_subset.py SRC DST N_TRAIN N_TEST
"""
import gzip
import os
import sys


def subset(src, dst, n_train, n_test):
    """The first n images and labels of each split, as gzip IDX files in dst."""
    os.makedirs(dst, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        for kind, dims, per in (("images", 3, 784), ("labels", 1, 1)):
            name = f"{split}-{kind}-idx{dims}-ubyte.gz"
            with gzip.open(os.path.join(src, name), "rb") as f:
                data = f.read()
            hdr = 4 + 4 * dims
            total = int.from_bytes(data[4:8], "big")
            if n > total:
                sys.exit(f"{name} has {total} records, fewer than {n}")
            head = bytearray(data[:hdr])
            head[4:8] = n.to_bytes(4, "big")
            with gzip.open(os.path.join(dst, name), "wb", compresslevel=1) as f:
                f.write(bytes(head) + data[hdr:hdr + n * per])


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    subset(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
