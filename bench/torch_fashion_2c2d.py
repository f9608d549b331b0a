"""torch_fashion_2c2d.py: the PyTorch twin of models/fashion_2c2d.nn, for bench/fashion_2c2d.py.

DeepOBS's fmnist_2c2d: conv 5x5 32 (same) - relu - maxpool 2 - conv 5x5 64 (same) - relu -
maxpool 2 - dense 1024 relu - dense 10, PyTorch's default initialisation (uniform in
+-1/sqrt(fan_in), as nnc's), Adam lr 1e-3, batch 128, cross entropy, inputs scaled to [0, 1]
and read through bench/fashion_data.py (NNC_FASHION_MNIST_DIR, so a subset written there is
what both frameworks train on).  Feature maps are NCHW, as PyTorch wants them (nnc's are
NHWC); --channels-last switches PyTorch to its NHWC memory format.

Each epoch walks the training images in a seeded random order; prints one JSON line per epoch:
steps, training seconds (the step loop only: batch gathering, forward, backward, Adam),
steps/s and the test accuracy after it.  Epoch 1 is the warm-up (and, with --compile, the
torch.compile compilation); fashion_2c2d.py times the later ones.  Threads:
torch.set_num_threads(BENCH_THREADS, default 2); the caller sets OMP_WAIT_POLICY.
Usage: torch_fashion_2c2d.py [--epochs N] [--compile] [--channels-last]
"""
import argparse
import json
import os
import time

import torch

import fashion_data


def net():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 5, padding="same"), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 5, padding="same"), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(7 * 7 * 64, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile the training step's model")
    ap.add_argument("--channels-last", action="store_true")
    a = ap.parse_args()
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    dev = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))  # cuda: on the GPU, data too
    x, y, xt, yt = (t.to(dev) for t in fashion_data.load())
    x, xt = x.view(-1, 1, 28, 28), xt.view(-1, 1, 28, 28)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = net().to(dev).to(memory_format=fmt)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    fwd = torch.compile(model) if a.compile else model
    step = 0
    for epoch in range(1, a.epochs + 1):
        order = torch.randperm(x.shape[0], device=dev)
        steps = 0
        t0 = time.perf_counter()
        for i in range(0, x.shape[0], 128):
            b = order[i:i + 128]
            xb = x[b].contiguous(memory_format=fmt)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(fwd(xb), y[b])
            loss.backward()
            opt.step()
            steps += 1
        sync()
        train_s = time.perf_counter() - t0
        step += steps
        with torch.no_grad():
            correct = sum((fwd(xt[i:i + 1000].contiguous(memory_format=fmt)).argmax(1) == yt[i:i + 1000]).sum().item()
                          for i in range(0, xt.shape[0], 1000))
        print(json.dumps({"epoch": epoch, "step": step, "steps": steps, "train_s": train_s,
                          "steps_per_s": steps / train_s, "loss": loss.item(),
                          "test_accuracy": correct / xt.shape[0], "threads": threads,
                          "compile": a.compile, "channels_last": a.channels_last}), flush=True)


if __name__ == "__main__":
    main()
