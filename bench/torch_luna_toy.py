"""torch_luna_toy.py: models/luna_toy.nn's training in PyTorch, the peer for bench/luna_toy.py.

The same network (1 -> 50 -> 50 ReLU, 50 auxiliary heads), the same loss: every head's mse
against y (the heads predicting y / 30), plus lambda times the mean over the batch and over
pairs of heads of the squared cosine between the normals (g_m, -1) of the heads' graphs, g_m
the head's input-gradient by central finite differences (the network run again at x +- 1e-3,
as the LUNA authors took theirs by finite differences); Adam with L2 weight decay 2 gamma;
full batch (100 samples); subnormal floats flushed to zero as nnc does (--keep-denormals: not,
PyTorch's default).  Prints one JSON line: steps, seconds, steps/s and the last loss.
    python torch_luna_toy.py --train models/data/luna_toy_train.csv --steps 2000 --threads 2
"""
import argparse
import json
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lam", type=float, default=100.0)
    ap.add_argument("--gamma", type=float, default=0.1)
    ap.add_argument("--heads", type=int, default=50)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--keep-denormals", action="store_true",
                    help="PyTorch's default; without it subnormal floats are flushed to zero, as nnc does (the weights "
                         "that weight decay drives toward 0 become subnormal and slow every product)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(not a.keep_denormals)
    torch.manual_seed(1)
    d = np.loadtxt(a.train, delimiter=",", skiprows=1, dtype=np.float32)
    x, y = torch.from_numpy(d[:, :1]), torch.from_numpy(d[:, 1:])
    f = torch.nn.Sequential(torch.nn.Linear(1, 50), torch.nn.ReLU(), torch.nn.Linear(50, 50), torch.nn.ReLU())
    aux = torch.nn.Linear(50, a.heads)
    params = list(f.parameters()) + list(aux.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=2 * a.gamma)
    M = a.heads

    def loss_fn():
        fit = torch.mean((aux(f(x)) * 30 - y) ** 2)
        g = (aux(f(x + a.eps)) - aux(f(x - a.eps))) / (2 * a.eps)          # [B, M]: each head's slope
        n = torch.stack([g, torch.ones_like(g)], -1)                        # the graphs' normals (g, 1)
        n = n / torch.sqrt((n * n).sum(-1, keepdim=True))
        c = torch.einsum("bmi,bki->bmk", n, n) ** 2                         # squared cosines, per sample
        pairs = (c.sum((1, 2)) - torch.diagonal(c, dim1=1, dim2=2).sum(1)) / (M * (M - 1))
        return fit + a.lam * pairs.mean()

    for _ in range(20):  # warm-up, not timed
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    print(json.dumps({"steps": a.steps, "seconds": dt, "steps_per_s": a.steps / dt, "loss": float(loss.detach()), "flush_denormal": not a.keep_denormals}))


if __name__ == "__main__":
    main()
