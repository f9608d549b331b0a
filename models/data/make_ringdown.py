"""make_ringdown.py: writes the data of models/ringdown_vi.nn beside itself: 1-D signals like
workload 3's (a black hole's ringdown in detector noise), each labelled with the two physical
parameters that set its frequency and its damping.  docs/data.md describes it.

A signal is f32[1024, 1] (1024 time samples, one channel): zero until a start time t0, then a
damped sinusoid A exp(-(t - t0) / tau) cos(2 pi f (t - t0) + phi), plus white Gaussian noise of
sd 0.2.  Its labels are the remnant's mass M (uniform on [0.5, 1.5], in units of a reference
mass) and its dimensionless spin a (uniform on [0.3, 0.9]).  They set the fundamental l = m = 2
quasi-normal mode through the fits of Berti, Cardoso and Will (2006):
    F(a) = 1.5251 - 1.1568 (1 - a)^0.1292,   Q(a) = 0.7000 + 1.4187 (1 - a)^-0.4990,
    f = F(a) / (2 pi M) * 0.15 cycles per sample,   tau = Q(a) / (pi f) samples,
so a heavier remnant rings lower and longer, and a faster-spinning one higher and longer
(f from 0.0067 to 0.032 cycles per sample, tau from 38 to 155 samples).  The nuisance
parameters vary too: t0 uniform on [64, 192), A on [0.5, 1.5], phi on [0, 2 pi).

Files, NPY float32: ringdown_{train,test}_{x,mass,spin}.npy, x of shape [n, 1024, 1], mass
and spin [n, 1]; 8192 training and 2048 test signals.  NumPy's legacy RandomState, whose
streams never change between NumPy versions, seeded 3 (train) and 4 (test): the same files on
any machine.  Run it with `python3 models/data/make_ringdown.py [OUTDIR]` (the default is this
directory); it needs numpy (Debian's python3-numpy) and takes a few seconds."""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
LENGTH = 1024
NOISE = 0.2
FREQ_SCALE = 0.15


def mode(mass, spin):
    """Frequency (cycles per sample) and damping time (samples) of the l = m = 2 mode."""
    F = 1.5251 - 1.1568 * (1 - spin) ** 0.1292
    Q = 0.7000 + 1.4187 * (1 - spin) ** -0.4990
    f = F / (2 * np.pi * mass) * FREQ_SCALE
    return f, Q / (np.pi * f)


def make(n, seed):
    rng = np.random.RandomState(seed)
    mass = rng.uniform(0.5, 1.5, n)
    spin = rng.uniform(0.3, 0.9, n)
    t0 = rng.uniform(64, 192, n)
    amp = rng.uniform(0.5, 1.5, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    noise = rng.standard_normal((n, LENGTH)) * NOISE
    f, tau = mode(mass, spin)
    t = np.arange(LENGTH)[None, :] - t0[:, None]
    on = t >= 0
    tt = np.where(on, t, 0)
    ring = amp[:, None] * np.exp(-tt / tau[:, None]) * np.cos(2 * np.pi * f[:, None] * tt + phi[:, None])
    x = np.where(on, ring, 0) + noise
    return (x.astype(np.float32)[:, :, None], mass.astype(np.float32)[:, None], spin.astype(np.float32)[:, None])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    os.makedirs(out, exist_ok=True)
    for split, n, seed in (("train", 8192, 3), ("test", 2048, 4)):
        x, mass, spin = make(n, seed)
        for name, a in (("x", x), ("mass", mass), ("spin", spin)):
            np.save(os.path.join(out, "ringdown_%s_%s.npy" % (split, name)), a)
    print("wrote ringdown_{train,test}_{x,mass,spin}.npy (8192 and 2048 signals of 1024 samples) to %s" % out)


if __name__ == "__main__":
    main()
