"""torch_fashion_sparse.py: the PyTorch twin of models/fashion_sparse.nn, for bench/fashion_sparse.py.

784-2048-1024-10 ReLU MLP with a learned gate per hidden neuron (initially 1), Adam lr 1e-3,
batch 128, cross entropy, inputs scaled to [0, 1], 10 % of the training images held out for
validation.  The gates' L1 penalty lambda * sum |g| is applied as nnc applies it: a proximal
step after each Adam step, with the threshold lr * lambda divided by Adam's denominator
(sqrt(v_hat) + eps), so dead gates are exactly 0.  lambda = 2e-3 * 0.7 ^ epoch.  After every
epoch (but the last) the neurons whose gate is 0 are masked out for good: PyTorch keeps the
full-size matrices, where nnc removes the rows and columns.  Every epoch evaluates the
validation and the test split, as nnc does.

Prints one JSON line per epoch: live widths, training samples/s, test accuracy, and the time
since training started (training, evaluation and masking).  Threads: torch.set_num_threads
from BENCH_THREADS (default 2); the caller sets OMP_WAIT_POLICY.
Usage: torch_fashion_sparse.py [EPOCHS] [LAMBDA]
"""
import json
import math
import os
import sys
import time

import torch

import fashion_data


class Gated(torch.nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.dense = torch.nn.ModuleList()
        self.gates = torch.nn.ParameterList()
        prev = 784
        for w in widths:
            self.dense.append(torch.nn.Linear(prev, w))
            self.gates.append(torch.nn.Parameter(torch.ones(w)))
            prev = w
        self.out = torch.nn.Linear(prev, 10)
        self.masks = [torch.ones(w) for w in widths]

    def forward(self, x):
        for d, g, m in zip(self.dense, self.gates, self.masks):
            x = torch.relu(d(x)) * (g * m)
        return self.out(x)


def prox_gates(model, opt, lr, lam, beta2=0.999, eps=1e-8):
    """The L1 proximal step in Adam's metric, as nnc's update kernel does it; lam is one
    penalty for every gate, or a list of one per gate."""
    lams = lam if isinstance(lam, (list, tuple)) else [lam] * len(model.gates)
    with torch.no_grad():
        for g, m, lam in zip(model.gates, model.masks, lams):
            st = opt.state[g]
            den = st["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2 ** int(st["step"])) + eps
            rest = g.abs() - lr * lam / den
            g.copy_(torch.sign(g) * rest.clamp(min=0) * m)


def fold_gates(model, opt, layers):
    """nnc's `gate(fold = true)` once the penalty has ended: row j of each gated layer's weight
    and bias times |g_j|, g_j its sign, and Adam's moments rescaled as the gradients are (first
    moment by 1 / |g_j| for the layer, |g_j| for the gate; second moments by the squares).
    layers: the modules the gates belong to, in gate order.  Closed gates stay 0."""
    with torch.no_grad():
        for g, layer in zip(model.gates, layers):
            a = g.abs()
            a = torch.where(a == 0, torch.ones_like(a), a)
            for p in (layer.weight, layer.bias):
                shape = (-1,) + (1,) * (p.dim() - 1)
                p.mul_(a.view(shape))
                st = opt.state.get(p)
                if st:
                    st["exp_avg"].div_(a.view(shape))
                    st["exp_avg_sq"].div_((a * a).view(shape))
            st = opt.state.get(g)
            if st:
                st["exp_avg"].mul_(a)
                st["exp_avg_sq"].mul_(a * a)
            g.copy_(torch.sign(g))


def accuracy(model, x, y):
    with torch.no_grad():
        correct = 0
        for i in range(0, x.shape[0], 128):
            correct += (model(x[i:i + 128]).argmax(1) == y[i:i + 128]).sum().item()
    return correct / x.shape[0]


def mask_dead(model, opt, penalties, next_epoch, fold):
    """Masks the dead gates' neurons for good, after folding the gates (fold: their layers)
    when the penalties of next_epoch are all 0."""
    nxt = penalties(next_epoch)
    if fold is not None and all(l == 0 for l in (nxt if isinstance(nxt, (list, tuple)) else [nxt])):
        fold_gates(model, opt, fold)
    for g, m in zip(model.gates, model.masks):
        m.copy_((g.detach() != 0).float())


def train_masked(model, epochs, penalties, stop_at=None, fold=None, mask_every=None):
    """Adam lr 1e-3, batch 128, 10 % held out for validation; after each step the proximal step
    with penalties(epoch) (one for all gates, or one per gate); after each epoch but the last
    the dead gates' neurons are masked for good.  Prints one JSON line per epoch.  With stop_at,
    training ends after the first epoch whose test accuracy reaches it (a time-to-accuracy run
    need not train on).  With fold (the gated layers, in gate order), the gates fold into them
    after each epoch but the last when the next epoch's penalties are all 0, as nnc's
    `gate(fold = true)` does.  With mask_every, the masking (and folding) comes after every
    mask_every-th step but the last instead (nnc's `prune gates every N steps`)."""
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    x, y, xt, yt = fashion_data.load()
    perm = torch.randperm(x.shape[0])
    n_valid = x.shape[0] // 10
    xv, yv = x[perm[-n_valid:]], y[perm[-n_valid:]]
    x, y = x[perm[:-n_valid]], y[perm[:-n_valid]]
    lr = 1e-3
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps_per_epoch = (x.shape[0] + 127) // 128
    step, total = 0, steps_per_epoch * epochs
    t0 = time.perf_counter()
    for epoch in range(epochs):
        lam = penalties(epoch)
        order = torch.randperm(x.shape[0])
        e0 = time.perf_counter()
        for i in range(0, x.shape[0], 128):
            b = order[i:i + 128]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[b]), y[b])  # the penalty acts through the proximal step only
            loss.backward()
            opt.step()
            prox_gates(model, opt, lr, lam)
            step += 1
            if mask_every and step % mask_every == 0 and step < total:
                mask_dead(model, opt, penalties, step // steps_per_epoch, fold)
        train_s = time.perf_counter() - e0
        valid_acc = accuracy(model, xv, yv)
        test_acc = accuracy(model, xt, yt)
        live = [int((g != 0).sum()) for g in model.gates]
        if epoch + 1 < epochs and not mask_every:  # "prune": mask the dead neurons for good
            mask_dead(model, opt, penalties, epoch + 1, fold)
        print(json.dumps({"epoch": epoch + 1, "live": live, "samples_per_s": x.shape[0] / train_s,
                          "valid_accuracy": valid_acc, "test_accuracy": test_acc,
                          "time_s": time.perf_counter() - t0, "threads": threads}), flush=True)
        if stop_at is not None and test_acc >= stop_at:
            break


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    lam0 = float(sys.argv[2]) if len(sys.argv) > 2 else 2e-3
    torch.manual_seed(1)
    train_masked(Gated([2048, 1024]), epochs, lambda epoch: lam0 * 0.7 ** epoch)


if __name__ == "__main__":
    main()
