"""torch_fashion_sparse_cnn.py: the PyTorch twin of models/fashion_sparse_cnn.nn, for
bench/fashion_sparse_cnn.py.

conv 5x5 64 same, ReLU, a gate per channel, maxpool 2; conv 5x5 128 same, ReLU, gate, maxpool
2; dense 2048, ReLU, gate per unit; dense 10 (NCHW, PyTorch's default initialisation).  Adam
lr 1e-3, batch 128, cross entropy, inputs in [0, 1], 10 % of the training images held out for
validation.  The gates' L1 penalties (lambda_c = 5e-3 on channels, lambda = 2e-3 on units,
each times 0.7 ^ epoch) act as in nnc, by a proximal step in Adam's metric after each step
(bench/torch_fashion_sparse.py's prox_gates), so dead gates are exactly 0.  After every epoch
but the last, dead channels and units are masked out for good: PyTorch keeps the full-size
tensors, where nnc removes them.

Prints one JSON line per epoch (live widths, training samples/s, test accuracy, time since
training started).  Threads: torch.set_num_threads from BENCH_THREADS (default 2); the caller
sets OMP_WAIT_POLICY.  Usage: torch_fashion_sparse_cnn.py [EPOCHS [STOP_AT [PENALTY_EPOCHS [MASK_EVERY]]]]:
with STOP_AT, it stops after the first epoch whose test accuracy reaches it; with PENALTY_EPOCHS
(not 0), the penalties end after that many epochs and the gates then fold into their layers
(nnc's `gate(fold = true)` with `schedule lambda = step(every = PENALTY_EPOCHS epochs, gamma = 0) *
0.7 ^ epoch`); with MASK_EVERY, dead neurons are masked every MASK_EVERY steps, not epochs (nnc's
`prune gates every MASK_EVERY steps`).
"""
import sys

import torch

from torch_fashion_sparse import train_masked


class GatedCNN(torch.nn.Module):
    def __init__(self, c1=64, c2=128, units=2048):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, c1, 5, padding=2)
        self.conv2 = torch.nn.Conv2d(c1, c2, 5, padding=2)
        self.dense = torch.nn.Linear(c2 * 49, units)
        self.out = torch.nn.Linear(units, 10)
        self.gates = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(w)) for w in (c1, c2, units)])
        self.masks = [torch.ones(w) for w in (c1, c2, units)]

    def gate(self, i):
        return self.gates[i] * self.masks[i]

    def forward(self, x):
        x = x.view(-1, 1, 28, 28)
        x = torch.max_pool2d(torch.relu(self.conv1(x)) * self.gate(0).view(1, -1, 1, 1), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)) * self.gate(1).view(1, -1, 1, 1), 2)
        x = torch.relu(self.dense(x.flatten(1))) * self.gate(2)
        return self.out(x)


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    stop_at = float(sys.argv[2]) if len(sys.argv) > 2 else None
    penalty_epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    mask_every = int(sys.argv[4]) if len(sys.argv) > 4 else None
    torch.manual_seed(1)
    model = GatedCNN()
    decay = lambda epoch: 0.7 ** epoch if not penalty_epochs or epoch < penalty_epochs else 0.0
    train_masked(model, epochs, lambda epoch: [5e-3 * decay(epoch), 5e-3 * decay(epoch), 2e-3 * decay(epoch)], stop_at,
                 fold=[model.conv1, model.conv2, model.dense] if penalty_epochs else None, mask_every=mask_every)


if __name__ == "__main__":
    main()
