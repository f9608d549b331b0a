"""jax_fashion_2c2d.py: the JAX twin of models/fashion_2c2d.nn, for bench/fashion_2c2d.py.

The same network as bench/torch_fashion_2c2d.py (DeepOBS's fmnist_2c2d: conv 5x5 32 (same) -
relu - maxpool 2 - conv 5x5 64 (same) - relu - maxpool 2 - dense 1024 relu - dense 10), written
with jax.lax (NHWC feature maps, as nnc keeps them), initialised uniform in +-1/sqrt(fan_in),
Adam lr 1e-3 (beta 0.9, 0.999, eps 1e-8) written out, batch 128, cross entropy; the whole
training step (forward, backward, Adam) is one jax.jit'd function.  Data through
bench/fashion_data.py's load_numpy (NNC_FASHION_MNIST_DIR).

Prints one JSON line per epoch, as the PyTorch twin does: steps, training seconds (the step
loop: batch gathering and the jitted step, waited for), steps/s, test accuracy.  Epoch 1 is
the warm-up (and jit's compilation).  Threads: XLA's CPU backend decides; the caller limits the
process with taskset-like OMP/XLA settings where it can (XLA_FLAGS from the environment).
Usage: jax_fashion_2c2d.py [--epochs N]
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import fashion_data


def init(key):
    shapes = {"c1": (5, 5, 1, 32), "c2": (5, 5, 32, 64), "d1": (7 * 7 * 64, 1024), "d2": (1024, 10)}
    params = {}
    for name, shape in shapes.items():
        key, kw, kb = jax.random.split(key, 3)
        fan_in = int(np.prod(shape[:-1]))
        bound = 1 / np.sqrt(fan_in)
        params[name] = (jax.random.uniform(kw, shape, minval=-bound, maxval=bound),
                        jax.random.uniform(kb, (shape[-1],), minval=-bound, maxval=bound))
    return params


def forward(params, x):
    dn = ("NHWC", "HWIO", "NHWC")
    for c in ("c1", "c2"):
        w, b = params[c]
        x = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn) + b
        x = jax.nn.relu(x)
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    x = x.reshape(x.shape[0], -1)
    w, b = params["d1"]
    x = jax.nn.relu(x @ w + b)
    w, b = params["d2"]
    return x @ w + b


def loss_fn(params, x, y):
    logits = forward(params, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


@jax.jit
def step(params, m, v, t, x, y):
    loss, g = jax.value_and_grad(loss_fn)(params, x, y)
    t = t + 1
    m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
    v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
    lr = 1e-3 * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
    params = jax.tree_util.tree_map(lambda p, m, v: p - lr * m / (jnp.sqrt(v) + 1e-8 * jnp.sqrt(1 - 0.999**t)), params, m, v)
    return params, m, v, t, loss


@jax.jit
def predict(params, x):
    return jnp.argmax(forward(params, x), axis=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()
    x, y, xt, yt = fashion_data.load_numpy()
    x, xt = x.reshape(-1, 28, 28, 1), xt.reshape(-1, 28, 28, 1)
    params = init(jax.random.PRNGKey(1))
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    t = jnp.zeros((), jnp.float32)
    rng = np.random.default_rng(1)
    total = 0
    for epoch in range(1, a.epochs + 1):
        order = rng.permutation(x.shape[0])
        steps = 0
        t0 = time.perf_counter()
        for i in range(0, x.shape[0] - 127, 128):  # whole batches: one compiled shape
            b = order[i:i + 128]
            params, m, v, t, loss = step(params, m, v, t, x[b], y[b])
            steps += 1
        loss.block_until_ready()
        train_s = time.perf_counter() - t0
        total += steps
        correct = sum(int((np.asarray(predict(params, xt[i:i + 1000])) == yt[i:i + 1000]).sum()) for i in range(0, xt.shape[0], 1000))
        print(json.dumps({"epoch": epoch, "step": total, "steps": steps, "train_s": train_s, "steps_per_s": steps / train_s,
                          "loss": float(loss), "test_accuracy": correct / xt.shape[0]}), flush=True)


if __name__ == "__main__":
    main()
