"""mcmc_np.py: split R-hat, bulk and tail ESS of Markov chains in NumPy, written from the
definitions of Vehtari, Gelman, Simpson, Carpenter and Buerkner (2021): an implementation
independent of nnc's (runtime/mcmc.c), for tests/train/bayes_hmc.py and bench/xsec_hmc.py.
Draws of one quantity are an array [chains, draws]."""
import math
import statistics

import numpy as np


def split(x):  # [m, n] -> [2m, n // 2]
    h = x.shape[1] // 2
    return np.concatenate([x[:, :h], x[:, x.shape[1] - h:]])


def z_scale(x):
    flat = x.ravel()
    order = np.argsort(flat, kind="stable")
    ranks = np.empty(flat.size)
    sorted_v = flat[order]
    i = 0
    while i < flat.size:  # average ranks of ties
        j = i
        while j + 1 < flat.size and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    nd = statistics.NormalDist()
    return np.array([nd.inv_cdf((r - 0.375) / (flat.size + 0.25)) for r in ranks]).reshape(x.shape)


def rhat_plain(x):
    m, n = x.shape
    b = n * np.var(x.mean(axis=1), ddof=1)
    w = np.mean(np.var(x, axis=1, ddof=1))
    return math.sqrt((b / w + n - 1) / n)


def rhat(x):
    s = split(x)
    return max(rhat_plain(z_scale(s)), rhat_plain(z_scale(np.abs(s - np.median(s)))))


def ess(x):
    m, n = x.shape
    c = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(c, n=2 * n, axis=1)
    acov = np.fft.irfft(f * np.conj(f), axis=1)[:, :n] / n
    mean_var = acov[:, 0].mean() * n / (n - 1)
    var_plus = mean_var * (n - 1) / n + (np.var(x.mean(axis=1), ddof=1) if m > 1 else 0)
    rho = 1 - (mean_var - acov.mean(axis=0)) / var_plus
    rho[0] = 1
    # Geyer: pairs summed while positive, then made monotone
    t, pairs = 0, []
    while t + 1 < n and rho[t] + rho[t + 1] > 0:
        pairs.append(rho[t] + rho[t + 1])
        t += 2
    for k in range(1, len(pairs)):
        pairs[k] = min(pairs[k], pairs[k - 1])
    tau = -1 + 2 * sum(pairs)
    if t < n and rho[t] > 0 and t + 1 < n:  # the last positive even autocorrelation
        tau += rho[t]
    tau = max(tau, 1 / math.log10(m * n))
    return m * n / tau


def ess_bulk(x):
    return ess(z_scale(split(x)))


def ess_tail(x):
    lo, hi = np.quantile(x, 0.05), np.quantile(x, 0.95)
    return min(ess(split((x <= lo).astype(float))), ess(split((x <= hi).astype(float))))
