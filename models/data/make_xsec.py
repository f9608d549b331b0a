"""make_xsec.py: writes xsec_train.csv (1000 rows) and xsec_test.csv (500 rows) beside itself,
the data of models/xsec_bnn.nn: 19 inputs and one target, a stand-in for the log cross-section
regression of workload 2, whose physics data is not public (docs/data.md describes it).

Each input is uniform on [-1, 1] (standardised model parameters).  The target is a smooth,
nonlinear function of them, with a dominant threshold-like term, interactions, and inputs of
decreasing importance down to some that do not matter, plus Gaussian noise of sd 0.05:
    y = 1 - 2.2 softplus(1.5 (x0 + 0.5 x1)) + 0.6 tanh(2 x2) x3 + 0.4 cos(1.5 x4) - 0.3 x5^2
        + sum_{k=6..15} 0.3 / (k - 4) x_k + 0.2 x6 x7 + noise.
Inputs 16, 17 and 18 do not enter.  Pure Python (random.Random, seeded): the same files on any
machine.  Run it with `python3 models/data/make_xsec.py`."""
import math
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def target(x, rng):
    y = 1 - 2.2 * math.log1p(math.exp(1.5 * (x[0] + 0.5 * x[1])))
    y += 0.6 * math.tanh(2 * x[2]) * x[3] + 0.4 * math.cos(1.5 * x[4]) - 0.3 * x[5] ** 2
    y += sum(0.3 / (k - 4) * x[k] for k in range(6, 16)) + 0.2 * x[6] * x[7]
    return y + rng.gauss(0, 0.05)


def write(name, n, seed):
    rng = random.Random(seed)
    with open(os.path.join(HERE, name), "w") as f:
        for _ in range(n):
            x = [rng.uniform(-1, 1) for _ in range(19)]
            f.write(",".join(f"{v:.6f}" for v in x + [target(x, rng)]) + "\n")


write("xsec_train.csv", 1000, 2019)
write("xsec_test.csv", 500, 2020)
