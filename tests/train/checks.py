"""checks.py: what the sampler tests (tests/train/bayes_*.py) share: one `ok` or `FAIL` line per
check, the exit status at the end, and the linear-regression data several of them sample."""
import sys

import numpy as np

fails = []


def check(cond, what):
    """Prints the check's line; a failed one is remembered for finish()."""
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        fails.append(what)


def finish():
    """Exits 1 when any check failed, 0 otherwise, saying which."""
    if fails:
        print(f"{len(fails)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


def linear_csv(path, seed, n=400, d=6, sigma=0.5):
    """Writes n rows of y = x w + 0.2 + noise of sd sigma (x and w standard and 0.3-scaled
    normals from `seed`), d inputs then the target, as CSV; returns x and y as written."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(scale=0.3, size=d) + 0.2 + sigma * rng.normal(size=n)
    np.savetxt(path, np.c_[x, y], delimiter=",", fmt="%.7f")
    return x, y
