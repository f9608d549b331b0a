"""torch_fashion_mlp.py: the PyTorch twin of models/fashion_mlp.nn, for bench/fashion_mlp.py.

784-1024-1024-10 ReLU MLP, Adam lr 1e-3, batch 128, cross entropy, inputs scaled to [0, 1],
one epoch over the 60,000 Fashion-MNIST training images in a seeded random order, then the
test accuracy.  Prints one JSON line: training steps/s (training loop only), test accuracy.
Threads are set by the caller's environment (OMP_NUM_THREADS, OMP_WAIT_POLICY) and by
torch.set_num_threads(2) here.  BENCH_DEVICE=cuda runs it on the GPU (data on the GPU too); the
last epoch's steps/s is reported apart, the first one paying for CUDA's start.
"""
import json
import os
import sys
import time

import torch

import fashion_data


def main():
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    dev = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
    x, y, xt, yt = (t.to(dev) for t in fashion_data.load())
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 10)).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    steps = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], device=dev)
        e0, s0 = time.perf_counter(), steps
        for i in range(0, x.shape[0], 128):
            idx_b = order[i:i + 128]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx_b]), y[idx_b])
            loss.backward()
            opt.step()
            steps += 1
        sync()
        last = (steps - s0) / (time.perf_counter() - e0)
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    print(json.dumps({"steps": steps, "train_s": train_s, "steps_per_s": steps / train_s, "last_epoch_steps_per_s": last,
                      "test_accuracy": acc, "threads": threads, "device": str(dev)}))


if __name__ == "__main__":
    main()
