"""bayes_hmc.py NNC OUTDIR [hmc|nuts|sgld|psgld]: HMC (or NUTS, or SGLD) against posteriors known
in closed form, and its diagnostics against an independent NumPy implementation.

SGLD takes 60 times as many steps, thinned by 60, on minibatches of 100 in part 1 (lr 2e-5,
so that its discretisation inflates the posterior variance by about lr H / 4 < 1 %, H ~ 1700
the largest curvature) and on the full data in part 2 (lr 0.01).  psgld is SGLD with RMSprop's
preconditioner (lr 2e-6, 120 times the steps, alpha 0.9999: with the default 0.99 the
preconditioner follows each minibatch's gradient and, without the correction term Li et al.
also leave out, widened the posterior by up to 7 %), on part 1 and 3 only (see part 2).

1. Bayesian linear regression, prior N(0, 0.1^2) on the weights and the bias, known noise 0.5:
   the posterior is N(m, S), S = (X'X / sigma^2 + I / tau^2)^-1, m = S X'y / sigma^2.  Four chains
   of 1000 draws.  Every coordinate's mean must be within 4 Monte Carlo standard errors
   (sd / sqrt(ESS), the ESS from part 3's code) of m.  The covariance: each standard deviation
   within 6 % of S's (the relative standard error of an sd estimated from ESS >= 1000
   effective draws is at most 1 / sqrt(2 ESS) = 2.2 %, so 6 % is about 3 of them), each
   correlation within 0.1 of S's (its standard error is at most (1 - r^2) / sqrt(ESS) <= 0.032).
   The prior moves m by many standard errors from least squares, so a prior scaled wrongly
   fails.
2. Priors alone: the weights of three dense layers read an input that is always 0, so the data
   says nothing about them and they must be drawn from their priors: Cauchy(0, 1),
   Laplace(0, 1) and Student-t(4, 0, 1); and, in a model of its own, Cauchy(0, 1) in its
   non-centred form (w = z exp(log_tau / 2), z and log_tau sampled: their w must be Cauchy).  Each family's draws (four weights, four chains),
   thinned to about one draw per effective sample, pass a Kolmogorov-Smirnov test against the
   prior's distribution function at p > 0.01.
4. (hmc and nuts) A prior on a learned noise sigma, with its change of variable: the
   posterior of sigma for five values with a half-Cauchy prior, by quadrature (part 4 below).
3. split R-hat, bulk ESS and tail ESS of part 1's draws, computed here from the definitions of
   Vehtari et al. (2021) with NumPy (FFT autocovariances, statistics.NormalDist for the normal
   quantiles), must equal summary.json's to 1e-6."""
import json
import math
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint"))
from checks import linear_csv  # noqa: E402
from mcmc_np import ess_bulk, ess_tail, rhat  # noqa: E402
from st_numpy import read  # noqa: E402

nnc, out = sys.argv[1], sys.argv[2]
kind = sys.argv[3] if len(sys.argv) > 3 else "hmc"
fails = []


def sampler(samples, burnin, sgld_lr):
    if kind in ("sgld", "psgld"):  # far more, far cheaper steps: thinned to as many draws as the others keep
        extra, thin = (", rmsprop = true, alpha = 0.9999", 120) if kind == "psgld" else ("", 60)
        return f"sampler sgld(lr = {sgld_lr}, samples = {samples * thin}, burnin = {burnin * 8}, thin = {thin}, chains = 4{extra})"
    steps = "leapfrog = 10, " if kind == "hmc" else ""
    return f"sampler {kind}({steps}samples = {samples}, burnin = {burnin}, chains = 4)"


def run(name, text):
    with open(f"{out}/{name}.nn", "w") as f:
        f.write(text)
    subprocess.run([nnc, "train", f"{out}/{name}.nn", "--out", f"{out}/{name}", "--no-progress"], check=True)


def draws(name, chains):
    """{weight: array [chains, draws, ...]} from draws_chain<c>.safetensors."""
    per = [read(f"{out}/{name}/draws_chain{c + 1}.safetensors")[0] for c in range(chains)]
    return {k: np.stack([p[k] for p in per]).astype(np.float64) for k in per[0]}


# ---- 1. Bayesian linear regression ----
N, D, SIGMA, TAU = 400, 6, 0.5, 0.1
linear_csv(f"{out}/lin.csv", 5, N, D, SIGMA)
run("lin", f"""model lin
input  x : f32[{D}]
target y : f32[1]
prior  out ~ normal(0, {TAU})
out  = x -> dense(1)
loss gaussian_nll(out, y, sigma = {SIGMA})
train {{ data csv("lin.csv", target = last) batch {N if "sgld" not in kind else N // 4} seed 3
        {sampler(1000, 500, 2e-5 if kind == "sgld" else 2e-6)} }}
""")
data = np.loadtxt(f"{out}/lin.csv", delimiter=",")
xa, t = np.c_[data[:, :D], np.ones(N)], data[:, D]
cov = np.linalg.inv(xa.T @ xa / SIGMA**2 + np.eye(D + 1) / TAU**2)
mean = cov @ xa.T @ t / SIGMA**2
lsq = np.linalg.lstsq(xa, t, rcond=None)[0]
d = draws("lin", 4)
q = np.concatenate([d["out.weight"].reshape(4, -1, D), d["out.bias"]], axis=2)  # [chains, draws, 7]
sd = np.sqrt(np.diag(cov))
flat = q.reshape(-1, D + 1)
for i in range(D + 1):
    e = ess_bulk(q[:, :, i])
    mcse = sd[i] / math.sqrt(e)
    z = (flat[:, i].mean() - mean[i]) / mcse
    print(f"coordinate {i}: mean {flat[:, i].mean():+.5f}, exact {mean[i]:+.5f} ({z:+.2f} MCSE, ESS {e:.0f}); "
          f"sd {flat[:, i].std():.5f}, exact {sd[i]:.5f}")
    if abs(z) > 4:
        fails.append(f"coordinate {i}: the posterior mean is {z:.2f} Monte Carlo standard errors off")
    if abs(flat[:, i].std() / sd[i] - 1) > 0.06:
        fails.append(f"coordinate {i}: sd {flat[:, i].std()}, exact {sd[i]}")
    if e < 1000:
        fails.append(f"coordinate {i}: bulk ESS {e:.0f} < 1000 for a Gaussian posterior")
corr = np.corrcoef(flat.T)
exact_corr = cov / np.outer(sd, sd)
print(f"correlations: worst difference {np.max(np.abs(corr - exact_corr)):.4f}")
if np.max(np.abs(corr - exact_corr)) > 0.1:
    fails.append(f"correlations differ by {np.max(np.abs(corr - exact_corr)):.3f}")
if np.max(np.abs(mean - lsq) / sd) < 0.5:
    fails.append("the prior hardly moves the posterior: the test could not tell")

# ---- 3. diagnostics against summary.json ----
summary = json.load(open(f"{out}/lin/summary.json"))["quantities"]
names = [f"out.weight[{i}]" for i in range(D)] + ["out.bias[0]"]
pot = d["sampler.potential"]
worst = 0
for i, name in enumerate(names + ["potential"]):
    v = q[:, :, i] if i < len(names) else pot
    mine = {"rhat": rhat(v), "ess_bulk": ess_bulk(v), "ess_tail": ess_tail(v)}
    for k, val in mine.items():
        rel = abs(summary[name][k] - val) / abs(val)
        worst = max(worst, rel)
        if rel > 1e-6:
            fails.append(f"{name} {k}: nnc {summary[name][k]}, NumPy {val}")
print(f"R-hat, bulk and tail ESS of 8 quantities: worst relative difference to NumPy {worst:.1e}")

# ---- 4. a prior on a learned noise sigma ----
if kind in ("hmc", "nuts"):
    # y_i ~ N(b, sigma), five values, b held at 0 by a N(0, 0.001) prior, sigma = softplus(raw)
    # with a half-Cauchy(0, 1) prior: the posterior of sigma is one-dimensional, computed here
    # by quadrature.  Without the change of variable's log Jacobian (log sigmoid(raw)) its mean
    # would be 0.79 instead of 0.85, about 14 Monte Carlo standard errors away.
    ys = np.array([0.3, -1.1, 0.6, -0.2, 0.9])
    np.savetxt(f"{out}/sig.csv", np.c_[np.zeros(5), ys], delimiter=",", fmt="%g")
    run("sig", f"""model sig
input  x : f32[1]
target y : f32[1]
prior  out.weight ~ normal(0, 1)
prior  out.bias ~ normal(0, 0.001)
prior  y.sigma ~ cauchy(0, 1)
out  = x -> dense(1)
loss gaussian_nll(out, y, sigma = learned)
train {{ data csv("sig.csv", target = last) batch 5 seed 4
        {sampler(4000, 1000, 0)} }}
""")
    s = np.linspace(1e-4, 60, 600001)

    def sigma_posterior(log_prior):
        lp = log_prior - 5 * np.log(s) - (ys**2).sum() / (2 * s * s)
        w = np.exp(lp - lp.max())
        w /= w.sum()
        m = (w * s).sum()
        return m, math.sqrt((w * (s - m) ** 2).sum())

    exact, exact_sd = sigma_posterior(-np.log1p(s * s))
    wrong, _ = sigma_posterior(-np.log1p(s * s) - np.log(-np.expm1(-s)))
    sig = np.logaddexp(0, draws("sig", 4)["y.sigma_raw"].reshape(4, -1))
    e = ess_bulk(sig)
    mcse = exact_sd / math.sqrt(e)
    z = (sig.mean() - exact) / mcse
    print(f"sigma with a half-Cauchy prior: mean {sig.mean():.4f}, exact {exact:.4f} ({z:+.2f} MCSE, ESS {e:.0f}); sd {sig.std():.4f}, "
          f"exact {exact_sd:.4f}; without the Jacobian the mean would be {wrong:.4f}")
    if abs(z) > 4:
        fails.append(f"sigma: the posterior mean is {z:.2f} Monte Carlo standard errors off")
    if abs(sig.std() / exact_sd - 1) > 0.06:
        fails.append(f"sigma: sd {sig.std()}, exact {exact_sd}")
    if abs(wrong - exact) / mcse < 6:
        fails.append("sigma: the test could not tell a missing Jacobian")

# ---- 2. priors alone ----
if kind == "psgld":  # without the correction term for a preconditioner that varies with the
    # position (Li et al. 2016 drop it too), pSGLD is biased where the curvature changes over the
    # distribution, as across a heavy-tailed prior's range: part 1 alone checks it
    for f_ in fails:
        print("FAIL", f_)
    sys.exit(1 if fails else 0)
np.savetxt(f"{out}/zeros.csv", np.zeros((50, 5)), delimiter=",", fmt="%g")
run("prior", f"""model prior_only
input  x : f32[4]
target y : f32[1]
prior  a.weight ~ cauchy(0, 1)
prior  b.weight ~ laplace(0, 1)
prior  c.weight ~ student_t(4, 0, 1)
prior  biases ~ normal(0, 1)
a = x -> dense(1)
b = x -> dense(1)
c = x -> dense(1)
loss gaussian_nll(a, y, sigma = 1000) + gaussian_nll(b, y, sigma = 1000) + gaussian_nll(c, y, sigma = 1000)
train {{ data csv("zeros.csv", target = last) batch 50 seed 2
        {sampler(4000, 1000, 0.01)} }}
""")
p = draws("prior", 4)
run("prior_nc", f"""model prior_noncentred
input  x : f32[4]
target y : f32[1]
prior  d.weight ~ cauchy(0, 1, noncentred = true)
prior  biases ~ normal(0, 1)
d = x -> dense(1)
loss gaussian_nll(d, y, sigma = 1000)
train {{ data csv("zeros.csv", target = last) batch 50 seed 2
        {sampler(4000, 1000, 0.01)} }}
""")
nc = draws("prior_nc", 4)
p["d.weight"] = nc["d.weight.z"] * np.exp(nc["d.weight.log_tau"] / 2)  # the non-centred form's weight
cdfs = {
    "a.weight": ("Cauchy(0, 1)", lambda v: 0.5 + np.arctan(v) / np.pi),
    "b.weight": ("Laplace(0, 1)", lambda v: np.where(v < 0, 0.5 * np.exp(np.minimum(v, 0)), 1 - 0.5 * np.exp(-np.maximum(v, 0)))),
    "c.weight": ("Student-t(4, 0, 1)", lambda v: 0.5 + 3 / 8 * v / np.sqrt(1 + v * v / 4) * (1 - v * v / (12 * (1 + v * v / 4)))),
    "d.weight": ("Cauchy(0, 1), non-centred", lambda v: 0.5 + np.arctan(v) / np.pi),
}


def ks_p(n, dstat):  # Kolmogorov's limit with Stephens' small-sample correction
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * dstat
    return min(1.0, max(0.0, 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))))


for name, (label, cdf) in cdfs.items():
    w = p[name].reshape(4, p[name].shape[1], -1)  # [chains, draws, 4]
    kept = []
    for j in range(w.shape[2]):
        e = ess_bulk(w[:, :, j])
        step = max(1, int(round(w.shape[0] * w.shape[1] / e)))
        kept.append(w[:, ::step, j].ravel())
    v = np.sort(np.concatenate(kept))
    n = v.size
    f = cdf(v)
    dstat = max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))
    pval = ks_p(n, dstat)
    print(f"{name} ~ {label}: {n} thinned draws, KS D = {dstat:.4f}, p = {pval:.3f}")
    if pval < 0.01:
        fails.append(f"{name}: the draws do not follow {label} (KS p = {pval:.4f})")

for f_ in fails:
    print("FAIL", f_)
sys.exit(1 if fails else 0)
