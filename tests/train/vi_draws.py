"""vi_draws.py NNC OUTDIR: `evaluate samples = S`, a variational model evaluated over S draws.

A linear regression whose one layer is bayes_dense(1): a prediction x . w + b with
w ~ N(mu, softplus(rho)^2) per element, so that over the draws its mean is x . mu + b and its
standard deviation sqrt(sum_j x_j^2 softplus(rho_j)^2), in closed form.  Checks:
  - a built trainer's `predict` writes per output the mean and sd over S = 2000 draws; against
    the closed form from the checkpoint's weights, every test row's mean is within 4 standard
    errors and its sd within 10 % (the sd of an sd estimate over 2000 draws is 1.6 %);
  - the test metrics that training reported (rmse and relative_error of the predictive mean,
    coverage95: the fraction of targets inside mean +- 1.96 sqrt(sd^2 + sigma^2), sigma the
    likelihood's learned noise) equal NumPy's over those predictions; the nll over the draws is
    the closed-form predictive density's, N(mean, sd^2 + sigma^2);
  - metrics.jsonl reports the KL apart: kl equals the closed form KL(q || normal(0, 1)) of the
    checkpoint's weights, loss_kl is kl / N, and loss_nll + loss_kl is the loss;
  - the same draws every time: predict twice gives the same bytes;
  - a laplace prior's Monte-Carlo KL: at the means, NumPy's -H(q) - log p(mu);
  - `nnc check` prints N (from the npy file's header), the KL's scale 1 / N and the draws;
  - `--set samples=N` changes S, a posterior-mean twin (no `evaluate`) reports other metrics;
  - bayes_dense(local = true), whose outputs are drawn, and bayes_conv1d's draws per output
    position, against the same closed form;
  - `evaluate every N steps`: evaluations at those steps, resumable bit for bit across them, and
    a stopping rule that ends the run mid-epoch."""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint"))
from checks import check, finish  # noqa: E402  tests/train/checks.py
from st_numpy import read  # noqa: E402

nnc, out = sys.argv[1], os.path.abspath(sys.argv[2])
rng = np.random.default_rng(5)
w_true = np.array([1.0, -2.0, 0.5, 3.0])
for name, n in (("train", 500), ("test", 400)):
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x @ w_true + 1 + 0.3 * rng.normal(size=n)).astype(np.float32)[:, None]
    np.save(f"{out}/{name}_x.npy", x)
    np.save(f"{out}/{name}_y.npy", y)
MODEL = """model vi_linear
input  x : f32[4]
target y : f32[1]
pred = x -> bayes_dense(1, rho = -1.5)
loss   gaussian_nll(pred, y, sigma = learned)
metric rmse(pred, y), relative_error(pred, y), nll(pred, y)
train {
  data      npy(x = "train_x.npy", y = "train_y.npy")
  test      npy(x = "test_x.npy", y = "test_y.npy")
  batch     50
  epochs    60
  optimizer adam(lr = 0.03)
  seed      3
EVALUATE}
"""
S = 2000
with open(f"{out}/vi_linear.nn", "w") as f:
    f.write(MODEL.replace("EVALUATE", f"  evaluate  samples = {S}\n"))
with open(f"{out}/vi_mean.nn", "w") as f:
    f.write(MODEL.replace("EVALUATE", ""))


def train(model, run, *extra):
    r = subprocess.run([nnc, "train", f"{out}/{model}.nn", "--out", f"{out}/{run}", "--no-progress", *extra],
                       capture_output=True, text=True)
    lines = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl")] if r.returncode == 0 else []
    return r, [l for l in lines if l.get("split") == "test"]


# nnc check knows N from the npy file's header and prints the KL's scale, and the draws
r = subprocess.run([nnc, "check", f"{out}/vi_linear.nn"], capture_output=True, text=True)
check(f"N = 500 training samples (500 rows in {out}/train_x.npy): a scale of 0.002\n" in r.stdout
      and "evaluation and predict: over 2000 draws" in r.stdout, "nnc check prints N, the KL's scale and the draws: "
      + " | ".join(l.strip() for l in r.stdout.splitlines() if "N = " in l or "draws" in l))

r, test = train("vi_linear", "run")
check(r.returncode == 0 and len(test) == 60, f"vi_linear trains 60 epochs (exit {r.returncode}) {r.stderr[-400:]}")
if r.returncode:
    finish()
last = test[-1]
w, _ = read(f"{out}/run/checkpoint.safetensors")


def softplus(v):
    return np.log1p(np.exp(-np.abs(v))) + np.maximum(v, 0)


mu, rho = w["pred.weight_mu"].astype(np.float64), w["pred.weight_rho"].astype(np.float64)
bias, sigma_w = w["pred.bias"].astype(np.float64), softplus(rho)
noise = float(softplus(w["y.sigma_raw"].astype(np.float64)).reshape(-1)[0])

# the KL apart from the likelihood
kl = float(np.sum(-np.log(sigma_w) + (sigma_w ** 2 + mu ** 2) / 2 - 0.5))
check(abs(last["kl"] - kl) <= 1e-4 * kl, f"kl {last['kl']:.6f} is the closed form {kl:.6f}")
check(abs(last["loss_kl"] - kl / 500) <= 1e-4 * kl / 500, f"loss_kl {last['loss_kl']:.8f} is kl / 500 = {kl / 500:.8f}")
check(abs(last["loss_nll"] + last["loss_kl"] - last["loss"]) <= 1e-9, "loss_nll + loss_kl is the loss")

# predict: mean and sd over the draws, against the closed form
trainer = f"{out}/trainer"
subprocess.run([nnc, "build", f"{out}/vi_linear.nn", "-o", trainer], check=True, capture_output=True)


def predict(path):
    return subprocess.run([trainer, "predict", "--checkpoint", f"{out}/run/checkpoint.safetensors", "--input",
                           f"{out}/test_x.npy", "--output", path], capture_output=True, text=True)


r = predict(f"{out}/pred.csv")
check(r.returncode == 0 and "over 2000 draws" in r.stdout, f"predict over the draws: {r.stdout.strip()} {r.stderr[-300:]}")
header = open(f"{out}/pred.csv").readline().strip()
check(header == "out0_mean,out0_sd", f"predict's columns are the mean and sd: {header}")
p = np.loadtxt(f"{out}/pred.csv", delimiter=",", skiprows=1, ndmin=2)
x, y = np.load(f"{out}/test_x.npy").astype(np.float64), np.load(f"{out}/test_y.npy").astype(np.float64)[:, 0]
mean_cf = x @ mu[0] + bias[0]
sd_cf = np.sqrt((x ** 2) @ (sigma_w[0] ** 2))
z = np.abs(p[:, 0] - mean_cf) / (sd_cf / np.sqrt(S))
ratio = p[:, 1] / sd_cf
check(z.max() < 4, f"the draws' means are the closed form's within 4 standard errors (largest {z.max():.2f})")
check(ratio.min() > 0.9 and ratio.max() < 1.1, f"the draws' sd is the closed form's within 10 % ({ratio.min():.4f} to {ratio.max():.4f})")

# training's test metrics are NumPy's over the predictions
rmse = np.sqrt(np.mean((p[:, 0] - y) ** 2))
rel = np.mean(np.abs(p[:, 0] - y) / np.abs(y))
cover = np.mean(np.abs(p[:, 0] - y) <= 1.96 * np.sqrt(p[:, 1] ** 2 + noise ** 2))
for key, mine in (("rmse", rmse), ("relative_error", rel)):
    check(abs(last[key] - mine) <= 1e-5 * max(1, abs(mine)), f"test {key} {last[key]:.7f} equals NumPy's {mine:.7f}")
check(abs(last["coverage95"] - cover) <= 1.5 / len(y), f"test coverage95 {last['coverage95']:.4f} equals NumPy's {cover:.4f}")
# the predictive nll over the draws: y's density under N(x . w + b, sigma^2), w drawn, is
# N(mean, sd^2 + sigma^2) in closed form; 2000 draws estimate it to about 1e-3 here
var = sd_cf ** 2 + noise ** 2
nll_cf = float(np.mean(0.5 * (y - mean_cf) ** 2 / var + 0.5 * np.log(2 * np.pi * var)))
check(abs(last["nll"] - nll_cf) <= 5e-3 * abs(nll_cf), f"test nll over the draws {last['nll']:.6f}, closed form {nll_cf:.6f}")
check(0.8 <= last["coverage95"] <= 0.99, f"coverage95 {last['coverage95']:.4f} is in [0.80, 0.99] (sigma {noise:.4f})")

r2 = predict(f"{out}/pred2.csv")
check(r2.returncode == 0 and open(f"{out}/pred.csv", "rb").read() == open(f"{out}/pred2.csv", "rb").read(),
      "predict twice: the same bytes")

# --set samples changes S; the posterior mean's evaluation is another
r, few = train("vi_linear", "few", "--set", "samples=4", "--set", "epochs=1")
check(r.returncode == 0 and few and few[-1]["rmse"] != test[0]["rmse"], "--set samples=4 evaluates over other draws")
r, mean_run = train("vi_mean", "mean")
check(r.returncode == 0 and mean_run and "coverage95" not in mean_run[-1] and mean_run[-1]["rmse"] != last["rmse"]
      and "kl" in mean_run[-1], "without `evaluate`, the posterior mean: no coverage, other metrics, the KL reported")

# the local reparameterisation draws each output from the same distribution: the same closed form
with open(f"{out}/vi_local.nn", "w") as f:
    f.write(MODEL.replace("bayes_dense(1, rho = -1.5)", "bayes_dense(1, rho = -1.5, local = true)")
            .replace("EVALUATE", f"  evaluate  samples = {S}\n"))
r, test_local = train("vi_local", "local")
subprocess.run([nnc, "build", f"{out}/vi_local.nn", "-o", f"{out}/local_trainer"], check=True, capture_output=True)
r = subprocess.run([f"{out}/local_trainer", "predict", "--checkpoint", f"{out}/local/checkpoint.safetensors", "--input",
                    f"{out}/test_x.npy", "--output", f"{out}/local_pred.npy"], capture_output=True, text=True)
wl, _ = read(f"{out}/local/checkpoint.safetensors")
mul, sgl = wl["pred.weight_mu"].astype(np.float64)[0], softplus(wl["pred.weight_rho"].astype(np.float64))[0]
pl = np.load(f"{out}/local_pred.npy")[:, 0, :] if r.returncode == 0 else np.zeros((400, 2))
sd_l = np.sqrt((x ** 2) @ (sgl ** 2))
zl = np.abs(pl[:, 0] - (x @ mul + wl["pred.bias"].astype(np.float64)[0])) / (sd_l / np.sqrt(S))
rl = pl[:, 1] / sd_l
check(r.returncode == 0 and zl.max() < 4 and 0.9 < rl.min() and rl.max() < 1.1 and test_local[-1]["rmse"] < 0.4,
      f"local = true over 2000 draws: means within {zl.max():.2f} standard errors of the closed form, sd ratios "
      f"{rl.min():.4f} to {rl.max():.4f}; test rmse {test_local[-1]['rmse'] if test_local else None}")

# a laplace prior: the KL is estimated at each step's draw, -H(q) - log p(w); evaluated (noise
# off) at the means, -H(q) - log p(mu), which NumPy computes from the checkpoint
with open(f"{out}/vi_laplace.nn", "w") as f:
    f.write(MODEL.replace("bayes_dense(1, rho = -1.5)", "bayes_dense(1, rho = -1.5, prior = laplace(0, 0.5))")
            .replace("EVALUATE", ""))
r, test_lap = train("vi_laplace", "laplace")
wp, _ = read(f"{out}/laplace/checkpoint.safetensors")
mup, sgp = wp["pred.weight_mu"].astype(np.float64), softplus(wp["pred.weight_rho"].astype(np.float64))
kl_mc = -(np.sum(np.log(sgp)) + mup.size / 2 * (1 + np.log(2 * np.pi))) - np.sum(-np.abs(mup) / 0.5 - np.log(2 * 0.5))
check(r.returncode == 0 and abs(test_lap[-1]["kl"] - kl_mc) <= 1e-4 * abs(kl_mc) and test_lap[-1]["rmse"] < 0.4,
      f"laplace prior: kl at the means {test_lap[-1]['kl'] if test_lap else None} is -H(q) - log p(mu) = {kl_mc:.6f}; "
      f"test rmse {test_lap[-1]['rmse'] if test_lap else None}")

# bayes_conv1d: the same closed form, per output position: mean sum_k mu_k x[t + k], variance
# sum_k sigma_k^2 x[t + k]^2 (one filter, one channel, no bias)
xc = rng.normal(size=(300, 6, 1)).astype(np.float32)
np.save(f"{out}/conv_x.npy", xc)
np.save(f"{out}/conv_y.npy", (xc[:, :4, 0] - xc[:, 2:, 0]).astype(np.float32))
with open(f"{out}/vi_conv.nn", "w") as f:
    f.write("""model vi_conv
input  x : f32[6, 1]
target y : f32[4]
pred = x -> bayes_conv1d(1, 3, bias = false, rho = -1) -> flatten
loss   gaussian_nll(pred, y, sigma = learned)
metric rmse(pred, y)
train {
  data      npy(x = "conv_x.npy", y = "conv_y.npy")
  batch     30
  epochs    5
  optimizer adam(lr = 0.05)
  evaluate  samples = 2000
}
""")
r = subprocess.run([nnc, "train", f"{out}/vi_conv.nn", "--out", f"{out}/conv", "--no-progress"], capture_output=True, text=True)
check(r.returncode == 0, f"vi_conv trains (exit {r.returncode}) {r.stderr[-300:]}")
subprocess.run([nnc, "build", f"{out}/vi_conv.nn", "-o", f"{out}/conv_trainer"], check=True, capture_output=True)
r = subprocess.run([f"{out}/conv_trainer", "predict", "--checkpoint", f"{out}/conv/checkpoint.safetensors", "--input",
                    f"{out}/conv_x.npy", "--output", f"{out}/conv_pred.npy"], capture_output=True, text=True)
wc, _ = read(f"{out}/conv/checkpoint.safetensors")
muc, sgc = wc["pred.weight_mu"].astype(np.float64).reshape(3), softplus(wc["pred.weight_rho"].astype(np.float64)).reshape(3)
win = np.stack([xc[:, k:k + 4, 0] for k in range(3)], axis=-1).astype(np.float64)  # [n, 4 positions, 3 taps]
pc = np.load(f"{out}/conv_pred.npy") if r.returncode == 0 else np.zeros((300, 4, 2))
sd_c = np.sqrt((win ** 2) @ (sgc ** 2))
zc = np.abs(pc[..., 0] - win @ muc) / (sd_c / np.sqrt(S))
rc_ = pc[..., 1] / sd_c
check(r.returncode == 0 and pc.shape == (300, 4, 2) and zc.max() < 4.5 and 0.9 < rc_.min() and rc_.max() < 1.1,
      f"bayes_conv1d over 2000 draws: means within {zc.max():.2f} standard errors of the closed form, sd ratios "
      f"{rc_.min():.4f} to {rc_.max():.4f}")

# `evaluate every N steps`: the splits after every N-th step and the last, not per epoch; a run
# stopped right after such an evaluation (or between two) resumes to the same lines and weights;
# a stopping rule ends the run at the evaluation that meets it, mid-epoch
every = MODEL.replace("  epochs    60\n", "  iterations 120\n").replace("EVALUATE", "  evaluate  every 25 steps, samples = 50\n")
with open(f"{out}/vi_every.nn", "w") as f:
    f.write(every)
with open(f"{out}/vi_stop.nn", "w") as f:
    f.write(every.replace("every 25 steps", "every 15 steps").replace("  seed      3\n", "  seed      3\n  stop      when test.rmse < 2.2\n"))


def lines_of(run):
    return [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl")]


def untimed(lines):
    return [{k: v for k, v in l.items() if k not in ("samples_per_s", "time_s")} for l in lines]


r = subprocess.run([nnc, "train", f"{out}/vi_every.nn", "--out", f"{out}/every", "--no-progress"], capture_output=True, text=True)
full = lines_of("every") if r.returncode == 0 else []
steps = [l["step"] for l in full if l.get("split") == "test"]
trains = [l["step"] for l in full if l.get("split") == "train"]
check(r.returncode == 0 and steps == [25, 50, 75, 100, 120] and trains == list(range(10, 121, 10)),
      f"evaluate every 25 steps: test lines at steps {steps}, train lines at {trains}")
check("step 25/120 (epoch 3) | test loss" in r.stdout,
      "a line per evaluation: " + next((l for l in r.stdout.splitlines() if l.startswith("step 25/")), "none"))
for at in ("3:5", "3:4", "11:eval", "5:3"):
    cut = f"cut{at.replace(':', '_')}"
    a = subprocess.run([nnc, "train", f"{out}/vi_every.nn", "--out", f"{out}/{cut}", "--no-progress"],
                       env=dict(os.environ, NNC_TEST_SIGNAL_AT=at), capture_output=True, text=True)
    b = subprocess.run([nnc, "train", f"{out}/vi_every.nn", "--out", f"{out}/{cut}", "--no-progress", "--resume"],
                       capture_output=True, text=True)
    same = a.returncode == 143 and b.returncode == 0 and untimed(lines_of(cut)) == untimed(full)
    same = same and open(f"{out}/{cut}/checkpoint.safetensors", "rb").read() == open(f"{out}/every/checkpoint.safetensors", "rb").read()
    check(same, f"stopped at {at} (exit {a.returncode}) and resumed (exit {b.returncode}): the same metrics.jsonl and checkpoint")
r = subprocess.run([nnc, "train", f"{out}/vi_stop.nn", "--out", f"{out}/stop", "--no-progress"], capture_output=True, text=True)
stop = [l for l in lines_of("stop") if l.get("event") == "stop"] if r.returncode == 0 else []
last_train = [l for l in lines_of("stop") if l.get("split") == "train"][-1] if stop else {}
check(len(stop) == 1 and stop[0]["step"] % 15 == 0 and stop[0]["step"] < 120 and last_train.get("step") == stop[0]["step"],
      f"a stopping rule checked every 15 steps ends the run at that step: {stop} {r.stdout.splitlines()[-3:]}")

# a fixed noise sigma (a constant of the model, with no buffer of its own): the evaluation over
# draws reads it for the nll and coverage (it stopped with an internal error before)
with open(f"{out}/vi_fixed.nn", "w") as f:
    f.write(MODEL.replace("sigma = learned", "sigma = 0.3").replace("epochs    60", "epochs    20")
            .replace("EVALUATE", "  evaluate  samples = 500\n"))
r, test = train("vi_fixed", "fixed")
if r.returncode == 0 and test:
    wf, _ = read(f"{out}/fixed/checkpoint.safetensors")
    mf, sf = wf["pred.weight_mu"].astype(np.float64)[0], softplus(wf["pred.weight_rho"].astype(np.float64))[0]
    varf = (x ** 2) @ (sf ** 2) + 0.3 ** 2
    nllf = float(np.mean(0.5 * (y - x @ mf - wf["pred.bias"].astype(np.float64)[0]) ** 2 / varf + 0.5 * np.log(2 * np.pi * varf)))
    check(abs(test[-1]["nll"] - nllf) <= 2e-2 * abs(nllf),
          f"sigma = 0.3 fixed: test nll over 500 draws {test[-1]['nll']:.5f}, closed form with sigma 0.3 {nllf:.5f}")
else:
    check(False, f"a variational model with a fixed sigma trains and evaluates (exit {r.returncode}) {r.stderr[-300:]}")
finish()
