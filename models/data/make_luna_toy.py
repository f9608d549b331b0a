"""make_luna_toy.py: writes the toy regression of LUNA (Thakur et al. 2020, "Uncertainty-aware
(UNA) bases for Bayesian regression using multi-headed auxiliary networks"), the data of
models/luna_toy.nn and models/nlm_toy.nn, beside itself:
  luna_toy_train.csv  100 rows x, y: x uniform on [-4, -2] (50 rows) and on [2, 4] (50 rows),
                      a gap in between; y = x^3 + noise, noise ~ N(0, 3^2);
  luna_toy_test.csv   201 rows: x on a grid of step 0.05 over [-5, 5], y = x^3 + noise as above
                      (the gap, and beyond the data on both sides);
  luna_toy_grid.csv   the same 201 x alone, for `predict`.
Pure Python (random.Random, seeded): the same files on any machine.  Run it with
`python3 models/data/make_luna_toy.py`."""
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, rows, header):
    with open(os.path.join(HERE, name), "w") as f:
        f.write(header + "\n")
        for r in rows:
            f.write(",".join(f"{v:.6f}" for v in r) + "\n")


rng = random.Random(2020)
train = []
for lo, hi in ((-4.0, -2.0), (2.0, 4.0)):
    for _ in range(50):
        x = rng.uniform(lo, hi)
        train.append((x, x ** 3 + rng.gauss(0, 3)))
grid = [-5 + 0.05 * i for i in range(201)]
write("luna_toy_train.csv", train, "x,y")
write("luna_toy_test.csv", [(x, x ** 3 + rng.gauss(0, 3)) for x in grid], "x,y")
write("luna_toy_grid.csv", [(x,) for x in grid], "x")
