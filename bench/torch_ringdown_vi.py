"""torch_ringdown_vi.py: the PyTorch twin of models/ringdown_vi.nn (and, with --dense, of
models/ringdown_dense.nn), for bench/ringdown_vi.py.

The root: six stages of Conv1d(k, padding "same") - ReLU - MaxPool1d(2) with (filters, kernel)
(16, 7), (16, 7), (32, 5), (32, 5), (64, 3), (64, 3), then Conv1d(64, 3, "same") - ReLU, flatten
(16 x 64 = 1024 features, channel-major here, length-major in nnc), dropout 0.1.  Two heads (mass,
spin), each Linear(1024, 64) - ReLU - BayesLinear(64, 16) - BayesLinear(16, 1), no activation
between the two variational layers; --dense makes those two plain Linear layers.  BayesLinear is
written here (Bayes by backprop, as nnc's bayes_dense): a weight mean mu (uniform in
+-1/sqrt(fan_in), PyTorch's default and nnc's) and rho (-5), w = mu + softplus(rho) eps with eps ~
N(0, 1) drawn at every step (the posterior mean in evaluation), a plain bias, and the closed-form
KL(q || N(0, 1)) summed over its weights.  Loss: per head gaussian_nll with a learned noise sigma,
softplus of one trained scalar starting at sigma = 1 as nnc's (log sigma + ((y - pred) / sigma)^2
/ 2 + log(2 pi) / 2, mean over the batch), the two heads summed, plus KL / N_train.  Adam lr 8e-4,
batch 64.

Data: models/data/ringdown_{train,test}_{x,mass,spin}.npy (models/data/make_ringdown.py writes
them), x [n, 1024, 1] read as [n, 1, 1024] (a view: one channel), held once; 10 % of the
training rows (a seeded choice) are the validation split, as nnc's `valid 0.1 of train`; the
rest are walked in a seeded random order each epoch, the last batch short (7373 rows: 116 steps).

Prints one JSON line per epoch: steps, training seconds (the step loop only: batch gathering,
forward, backward, Adam), steps/s, the last batch's loss and the validation and test losses
after it, and the number of trained parameters.  Epoch 1 is the warm-up; ringdown_vi.py times
the later ones.  Threads: torch.set_num_threads(BENCH_THREADS, default 2); the caller sets
OMP_WAIT_POLICY.
Usage: torch_ringdown_vi.py [--epochs N] [--dense] [--data models/data]
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


class BayesLinear(torch.nn.Module):
    """A linear layer whose weight is a mean-field Gaussian N(mu, softplus(rho)^2), prior N(0, 1)."""

    def __init__(self, n_in, n_out, rho0=-5.0):
        super().__init__()
        bound = 1 / math.sqrt(n_in)
        self.mu = torch.nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.rho = torch.nn.Parameter(torch.full((n_out, n_in), rho0))
        self.bias = torch.nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))
        self.kl = None

    def forward(self, x):
        sigma = F.softplus(self.rho)
        w = self.mu + sigma * torch.randn_like(sigma) if self.training else self.mu
        # KL(N(mu, sigma^2) || N(0, 1)) = -log sigma + (sigma^2 + mu^2) / 2 - 1/2, summed
        self.kl = (0.5 * (sigma * sigma + self.mu * self.mu) - torch.log(sigma) - 0.5).sum()
        return F.linear(x, w, self.bias)


def head(dense):
    last = [torch.nn.Linear(64, 16), torch.nn.Linear(16, 1)] if dense else [BayesLinear(64, 16), BayesLinear(16, 1)]
    return torch.nn.Sequential(torch.nn.Linear(1024, 64), torch.nn.ReLU(), *last)


class Net(torch.nn.Module):
    def __init__(self, dense):
        super().__init__()
        layers, c = [], 1
        for f, k in [(16, 7), (16, 7), (32, 5), (32, 5), (64, 3), (64, 3)]:
            layers += [torch.nn.Conv1d(c, f, k, padding="same"), torch.nn.ReLU(), torch.nn.MaxPool1d(2)]
            c = f
        layers += [torch.nn.Conv1d(64, 64, 3, padding="same"), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Dropout(0.1)]
        self.root = torch.nn.Sequential(*layers)
        self.mass, self.spin = head(dense), head(dense)
        # each head's noise sigma = softplus(raw), raw starting at log(e - 1): sigma = 1
        self.mass_sigma_raw = torch.nn.Parameter(torch.tensor(math.log(math.expm1(1.0))))
        self.spin_sigma_raw = torch.nn.Parameter(torch.tensor(math.log(math.expm1(1.0))))

    def forward(self, x):
        f = self.root(x)
        return self.mass(f), self.spin(f)

    def kl(self):
        return sum(m.kl for m in self.modules() if isinstance(m, BayesLinear))


def gaussian_nll(pred, y, raw):
    sigma = F.softplus(raw)
    return (torch.log(sigma) + 0.5 * ((y - pred) / sigma) ** 2).mean() + 0.5 * math.log(2 * math.pi)


def loss_fn(model, xb, mb, sb, n_train):
    pm, ps = model(xb)
    loss = gaussian_nll(pm, mb, model.mass_sigma_raw) + gaussian_nll(ps, sb, model.spin_sigma_raw)
    kl = model.kl()
    return loss + kl / n_train if torch.is_tensor(kl) else loss


def load(data, split):
    arr = [torch.from_numpy(np.load(os.path.join(data, f"ringdown_{split}_{n}.npy"))) for n in ("x", "mass", "spin")]
    return arr[0].view(arr[0].shape[0], 1, arr[0].shape[1]), arr[1], arr[2]  # [n, 1024, 1] as [n, 1, 1024]: a view


def evaluate(model, x, m, s, rows, n_train):
    model.eval()
    with torch.no_grad():
        total = sum(loss_fn(model, x[b], m[b], s[b], n_train).item() * len(b) for b in rows.split(64))
    model.train()
    return total / len(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dense", action="store_true", help="the twin of models/ringdown_dense.nn: plain Linear heads")
    ap.add_argument("--data", default=os.path.join(HERE, "..", "models", "data"))
    a = ap.parse_args()
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    x, m, s = load(a.data, "train")
    xt, mt, st = load(a.data, "test")
    perm = torch.randperm(x.shape[0])
    n_valid = x.shape[0] // 10
    valid, train = perm[:n_valid], perm[n_valid:]
    n_train = train.shape[0]
    model = Net(a.dense)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=8e-4)
    step = 0
    for epoch in range(1, a.epochs + 1):
        order = train[torch.randperm(n_train)]
        steps = 0
        t0 = time.perf_counter()
        for i in range(0, n_train, 64):
            b = order[i:i + 64]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, x[b], m[b], s[b], n_train)
            loss.backward()
            opt.step()
            steps += 1
        train_s = time.perf_counter() - t0
        step += steps
        print(json.dumps({"epoch": epoch, "step": step, "steps": steps, "train_s": train_s,
                          "steps_per_s": steps / train_s, "loss": loss.item(),
                          "valid_loss": evaluate(model, x, m, s, valid, n_train),
                          "test_loss": evaluate(model, xt, mt, st, torch.arange(xt.shape[0]), n_train),
                          "params": params, "threads": threads, "dense": a.dense}), flush=True)


if __name__ == "__main__":
    main()
