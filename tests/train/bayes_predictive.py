"""bayes_predictive.py NNC OUTDIR: the posterior predictive of a sampled model against NumPy.

models/diabetes_bnn.nn (10-20-1 PReLU, Cauchy priors, learned sigma), shortened to 2 NUTS
chains of 100 draws with a 10 % validation split, is sampled by `nnc train` and built into a
trainer by `nnc build`.  Then, with the network's forward pass written out here in NumPy
(float64) on the draws files:
1. `predict --draws RUN` (NPY and CSV): per test sample, the mean, sd (ddof 1), 5 % and 95 %
   quantiles (NumPy's default interpolation) of f(x) over all 200 draws, within 1e-4 of
   NumPy's (float32 GEMMs against float64: their differences are about 1e-6 here); the CSV
   holds the same numbers as the NPY; a single chain's file gives that chain's 100 draws.
2. The posterior predictive's metrics, in summary.json's "predictive" after sampling: test and
   validation RMSE of the predictive mean, and NLL = -mean_i log (1/S sum_s N(y_i; f_s(x_i),
   sigma_s)), sigma_s = softplus(y.sigma_raw), within 1e-5 relative of NumPy's; a prior
   scaled wrongly or an NLL averaged the wrong way round (mean of log instead of log of mean)
   differs by far more.  `eval --draws RUN` prints the same numbers as the sampling run.
3. A classifier (three blobs, a softmax layer, NUTS): predict --draws gives each class
   probability's mean, sd and quantiles over the draws and the most probable class; the test
   accuracy and NLL of the predictive are NumPy's.
4. Errors: `--checkpoint` on a sampled model, `--draws` on an optimizer's, draws of another
   version of the model, a directory without draws; each exits 1 with its message."""
import json
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint"))
from checks import check, finish  # noqa: E402  tests/train/checks.py
from st_numpy import read  # noqa: E402

nnc, out = sys.argv[1], os.path.abspath(sys.argv[2])
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

text = open(os.path.join(root, "models", "diabetes_bnn.nn")).read()
text = re.sub(r"sampler nuts\([^)]*\)", "sampler nuts(samples = 100, burnin = 100, max_depth = 6, chains = 2)", text)
text = text.replace('"data/', f'"{root}/models/data/').replace("batch   352", "batch   352\n  valid   0.1 of train")
model = f"{out}/diabetes_short.nn"
with open(model, "w") as f:
    f.write(text)
run = f"{out}/run"
train_out = subprocess.run([nnc, "train", model, "--out", run, "--no-progress"], check=True, capture_output=True, text=True).stdout
print(train_out)
trainer = f"{out}/diabetes_trainer"
subprocess.run([nnc, "build", model, "-o", trainer], check=True)

test = np.loadtxt(f"{root}/models/data/diabetes_test.csv", delimiter=",")
train = np.loadtxt(f"{root}/models/data/diabetes_train.csv", delimiter=",")
np.savetxt(f"{out}/test_x.csv", test[:, :10], delimiter=",", fmt="%.7g")


def draws(paths):
    per = [read(p)[0] for p in paths]
    return {k: np.concatenate([p[k] for p in per]).astype(np.float64) for k in per[0]}


def forward(w, x):
    """f(x) at every draw: [draws, samples]."""
    z = np.einsum("sod,nd->sno", w["out.dense1.weight"], x) + w["out.dense1.bias"][:, None, :]
    h = np.maximum(z, 0) + w["out.slope"][:, None, :] * np.minimum(z, 0)
    return np.einsum("so,sno->sn", w["out.dense2.weight"][:, 0, :], h) + w["out.dense2.bias"]


def stats(f):
    return np.stack([f.mean(0), f.std(0, ddof=1), np.quantile(f, 0.05, axis=0), np.quantile(f, 0.95, axis=0)], -1)


chains = [f"{run}/draws_chain{c}.safetensors" for c in (1, 2)]
w = draws(chains)
check(w["out.dense1.weight"].shape == (200, 20, 10), "200 draws of out.dense1.weight [20, 10]")

# 1. predict
subprocess.run([trainer, "predict", "--draws", run, "--input", f"{out}/test_x.csv", "--output", f"{out}/p.npy"], check=True)
subprocess.run([trainer, "predict", "--draws", run, "--input", f"{out}/test_x.csv", "--output", f"{out}/p.csv"], check=True)
subprocess.run([trainer, "predict", "--draws", chains[1], "--input", f"{out}/test_x.csv", "--output", f"{out}/p2.npy"], check=True)
got, want = np.load(f"{out}/p.npy"), stats(forward(w, test[:, :10]))
check(got.shape == (90, 1, 4), f"predict NPY shape [90, 1, 4] (got {list(got.shape)})")
err = np.abs(got[:, 0, :] - want).max()
check(err < 1e-4, f"predict: mean, sd, 5 % and 95 % quantiles within 1e-4 of NumPy's (max difference {err:.2e})")
csv = np.loadtxt(f"{out}/p.csv", delimiter=",", skiprows=1)
header = open(f"{out}/p.csv").readline().strip()
check(header == "out0_mean,out0_sd,out0_q5,out0_q95", f"predict CSV header ({header})")
check(np.array_equal(csv.astype(np.float32), got[:, 0, :]), "predict: the CSV holds the NPY's values")
one = draws(chains[1:])
err = np.abs(np.load(f"{out}/p2.npy")[:, 0, :] - stats(forward(one, test[:, :10]))).max()
check(err < 1e-4, f"predict of one chain's file: its 100 draws (max difference {err:.2e})")


# 2. metrics of the posterior predictive
def metrics(x, y):
    f = forward(w, x)
    sigma = np.logaddexp(0, w["y.sigma_raw"])[:, None]
    ll = -0.5 * ((y[None, :] - f) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    top = ll.max(0)
    lpd = top + np.log(np.exp(ll - top).mean(0))
    return {"rmse": float(np.sqrt(np.mean((f.mean(0) - y) ** 2))), "nll": float(-lpd.mean())}


# the test split exactly (the validation split's rows are the seeded order's, not known here:
# it is checked to be there, and eval to print the same numbers as the sampling run)
summary = json.load(open(f"{run}/summary.json"))["predictive"]
want = metrics(test[:, :10], test[:, 10])
for k in ("rmse", "nll"):
    rel = abs(summary["test"][k] - want[k]) / abs(want[k])
    check(rel < 1e-5, f"test {k} of the posterior predictive: nnc {summary['test'][k]:.6f}, NumPy {want[k]:.6f}")
mean_of_log = float(-np.mean(np.mean(-0.5 * ((test[None, :, 10] - forward(w, test[:, :10])) / np.logaddexp(0, w["y.sigma_raw"])[:, None]) ** 2
                                     - np.log(np.logaddexp(0, w["y.sigma_raw"]))[:, None] - 0.5 * np.log(2 * np.pi), 0)))
check(abs(mean_of_log - want["nll"]) > 1e-3, f"the check tells log-mean-exp from a mean of logs ({mean_of_log:.4f} vs {want['nll']:.4f})")
check("valid" in summary, "summary.json has the validation split's predictive metrics")
line = [l for l in train_out.splitlines() if l.startswith("posterior predictive of 200 draws")]
check(len(line) == 1, "the sampling run prints the posterior predictive line")
ev = subprocess.run([trainer, "eval", "--draws", run], check=True, capture_output=True, text=True).stdout
print(ev)
check(bool(line) and line[0] in ev, "eval --draws prints what the sampling run printed")
check(f"test rmse {summary['test']['rmse']:.4f} nll {summary['test']['nll']:.4f}" in ev, "eval's test metrics are summary.json's")

# 3. a classifier: three Gaussian blobs in 2-D, a softmax layer sampled by NUTS; the predictive
# is the mean of each draw's probabilities, its class the most probable one, and its NLL
# -mean_i log (1/S sum_s p_s(y_i))
rng = np.random.default_rng(8)
centres = np.array([[0.0, 1.5], [1.3, -0.8], [-1.3, -0.8]])
lab = np.arange(240) % 3
pts = centres[lab] + rng.normal(size=(240, 2))
np.savetxt(f"{out}/blobs_train.csv", np.c_[pts[:180], lab[:180]], delimiter=",", fmt=["%.6f", "%.6f", "%d"])
np.savetxt(f"{out}/blobs_test.csv", np.c_[pts[180:], lab[180:]], delimiter=",", fmt=["%.6f", "%.6f", "%d"])
np.savetxt(f"{out}/blobs_x.csv", pts[180:], delimiter=",", fmt="%.6f")
blobs = """model blobs
input  x : f32[2]
target label : class[3]
prior  out ~ normal(0, 3)
out    = x -> dense(3)
loss   cross_entropy(out, label)
metric accuracy(out, label), nll(out, label)
train {
  data    csv("blobs_train.csv", target = last)
  test    csv("blobs_test.csv", target = last)
  batch   180
  SAMPLER
}
"""
with open(f"{out}/blobs.nn", "w") as f:
    f.write(blobs.replace("SAMPLER", "sampler nuts(samples = 100, burnin = 100, chains = 2)"))
subprocess.run([nnc, "train", f"{out}/blobs.nn", "--out", f"{out}/blobs", "--no-progress"], check=True, capture_output=True)
subprocess.run([nnc, "build", f"{out}/blobs.nn", "-o", f"{out}/blobs_trainer"], check=True)
subprocess.run([f"{out}/blobs_trainer", "predict", "--draws", f"{out}/blobs", "--input", f"{out}/blobs_x.csv", "--output",
                f"{out}/blobs_p.csv"], check=True)
b = draws([f"{out}/blobs/draws_chain{c}.safetensors" for c in (1, 2)])
z = np.einsum("scd,nd->snc", b["out.weight"], pts[180:]) + b["out.bias"][:, None, :]
prob = np.exp(z - z.max(2, keepdims=True))
prob /= prob.sum(2, keepdims=True)  # [draws, samples, classes]
got = np.loadtxt(f"{out}/blobs_p.csv", delimiter=",", skiprows=1)
header = open(f"{out}/blobs_p.csv").readline().strip()
check(header.startswith("class,out0_mean,out0_sd,out0_q5,out0_q95,out1_mean"), f"classifier CSV header ({header[:40]}...)")
want = np.concatenate([stats(prob[:, :, k])[:, None, :] for k in range(3)], axis=1).reshape(60, 12)
err = np.abs(got[:, 1:] - want).max()
check(err < 1e-4, f"classifier: each class probability's mean, sd, 5 % and 95 % over the draws (max difference {err:.2e})")
mean_p = prob.mean(0)
check(np.array_equal(got[:, 0].astype(int), mean_p.argmax(1)), "classifier: the class is the most probable on average")
bs = json.load(open(f"{out}/blobs/summary.json"))["predictive"]["test"]
acc = float(np.mean(mean_p.argmax(1) == lab[180:]))
nll = float(-np.mean(np.log(mean_p[np.arange(60), lab[180:]])))
check(abs(bs["accuracy"] - acc) < 1e-9, f"classifier: test accuracy of the predictive, nnc {bs['accuracy']:.4f}, NumPy {acc:.4f}")
check(abs(bs["nll"] - nll) / nll < 1e-5, f"classifier: test nll of the predictive, nnc {bs['nll']:.6f}, NumPy {nll:.6f}")


# 4. errors
def fails_with(args, message):
    r = subprocess.run(args, capture_output=True, text=True)
    check(r.returncode == 1 and message in r.stderr, f"{' '.join(os.path.basename(a) for a in args[1:3])}: exit 1, '{message}' ({r.returncode}: {r.stderr.strip()})")


fails_with([trainer, "eval", "--checkpoint", f"{run}/draws_chain1.safetensors"], "is sampled, not trained: give --draws D")
with open(f"{out}/diabetes_other.nn", "w") as f:
    f.write(text.replace("cauchy(0, 1)", "cauchy(0, 2)", 1) + "# another version (a comment alone would not be one)\n")
subprocess.run([nnc, "build", f"{out}/diabetes_other.nn", "-o", f"{out}/other_trainer"], check=True)
fails_with([f"{out}/other_trainer", "eval", "--draws", run], "was written by another version of model 'diabetes_bnn'")
os.makedirs(f"{out}/empty", exist_ok=True)
fails_with([trainer, "eval", "--draws", f"{out}/empty"], "holds no draws_chain1.safetensors")
with open(f"{out}/blobs_adam.nn", "w") as f:
    f.write(blobs.replace("SAMPLER", "epochs  1\n  optimizer adam(lr = 0.01)").replace("prior  out ~ normal(0, 3)\n", ""))
subprocess.run([nnc, "build", f"{out}/blobs_adam.nn", "-o", f"{out}/adam_trainer"], check=True)
fails_with([f"{out}/adam_trainer", "eval", "--draws", f"{out}/blobs"],
           "nnc: error: --draws: model 'blobs' is trained by an optimizer, not sampled: give its --checkpoint instead")

finish()
