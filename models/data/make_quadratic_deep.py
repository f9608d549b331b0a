"""make_quadratic_deep.py: writes the data of models/quadratic_deep.nn beside itself: DeepOBS's
quadratic_deep test problem (workload 5), the loss 0.5 (theta - x)^T Q (theta - x) in 100
dimensions, with the numbers DeepOBS 1.1.2 draws, so that a run here and a run there see the same
problem.  docs/data.md describes it.

The Hessian Q = R^T D R: D holds 90 eigenvalues uniform on (0, 1) and 10 uniform on (30, 60),
R is a rotation uniform on SO(100) (Haar measure), built by the subgroup algorithm of Diaconis
and Shahshahani (1987): start from a uniform rotation of the plane, and for d = 2 .. 99 embed the
rotation so far in one more dimension and reflect it through the hyperplane that takes the first
axis to a uniform point v of the sphere S^d; the result is negated.  Both come from one NumPy
legacy RandomState seeded 42, in this order (eigenvalues, then the angle, then each v), as in
DeepOBS.  The data x are 1000 draws of normal(0, 0.6^2 I) per split: RandomState(42) for the
training set and RandomState(43) for the test set, rounded to float32.

Files, NPY: quadratic_deep_{train,test}_x.npy (float32 [1000, 100]); quadratic_deep_sqrt_q.npy
(float32 [100, 100]), S = D^(1/2) R, so that S^T S = Q and the loss is 0.5 |S (theta - x)|^2
(the model's fixed dense layer); and, for tests, quadratic_deep_q.npy (float64 Q) and
quadratic_deep_eigenvalues.npy (float64, D's diagonal, ascending).  NumPy's legacy streams never
change between versions: the same files on any machine.  Run it with
`python3 models/data/make_quadratic_deep.py [OUTDIR]` (the default is this directory); it needs
numpy (Debian's python3-numpy) and takes under a second."""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DIM = 100
N = 1000
NOISE = 0.6


def haar_rotation(dim, rng):
    """A rotation uniform on SO(dim), by the subgroup algorithm (reflections of growing size)."""
    angle = 2 * np.pi * rng.uniform()
    rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    for d in range(2, dim):
        v = rng.normal(size=(d + 1, 1))
        v /= np.sqrt(float(v.T @ v))
        e1 = np.zeros((d + 1, 1))
        e1[0, 0] = 1.0
        u = (e1 - v) / np.sqrt(float((e1 - v).T @ (e1 - v)))  # the reflection's normal
        grown = np.eye(d + 1)
        grown[1:, 1:] = rot
        rot = grown - 2 * u @ (u.T @ grown)
    return -rot


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(42)
    eig = np.concatenate((rng.uniform(0.0, 1.0, 90), rng.uniform(30.0, 60.0, 10)))
    rot = haar_rotation(DIM, rng)
    q = rot.T @ np.diag(eig) @ rot
    sqrt_q = np.diag(np.sqrt(eig)) @ rot
    files = {
        "quadratic_deep_train_x.npy": np.float32(np.random.RandomState(42).normal(0.0, NOISE, (N, DIM))),
        "quadratic_deep_test_x.npy": np.float32(np.random.RandomState(43).normal(0.0, NOISE, (N, DIM))),
        "quadratic_deep_sqrt_q.npy": np.float32(sqrt_q),
        "quadratic_deep_q.npy": q,
        "quadratic_deep_eigenvalues.npy": np.sort(eig),
    }
    for name, value in files.items():
        np.save(os.path.join(out, name), value)
    print("wrote %s to %s (eigenvalues %.4f .. %.4f, condition number %.1f)"
          % (", ".join(files), out, eig.min(), eig.max(), eig.max() / eig.min()))


if __name__ == "__main__":
    main()
