"""fashion_data.py: Debian's Fashion-MNIST files as torch tensors, for the PyTorch twins (and
as NumPy arrays for the JAX one).

load() returns (x, y, x_test, y_test): images flattened to 784 floats scaled to [0, 1], labels
as int64; load_numpy() the same as NumPy arrays.  The directory is NNC_FASHION_MNIST_DIR, else
Debian's dataset-fashion-mnist path.
"""
import gzip
import os

import numpy as np


def idx(path):
    """An IDX file (gzip-compressed, unsigned bytes) as a numpy array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_numpy():
    d = os.environ.get("NNC_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    images = lambda split: idx(f"{d}/{split}-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255
    labels = lambda split: idx(f"{d}/{split}-labels-idx1-ubyte.gz").astype(np.int64)
    return images("train"), labels("train"), images("t10k"), labels("t10k")


def load():
    import torch

    return tuple(torch.from_numpy(a) for a in load_numpy())
