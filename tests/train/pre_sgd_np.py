"""pre_sgd_np.py NNC OUTDIR: pre_sgd's Hessian inference against a NumPy transcription with full
matrices, its variants, and its resume.

A 5-8-1 tanh network (57 weights) on synthetic regression data trains for one epoch with
pre_sgd(rank = 2, hvps = 3).  With NNC_TEST_PRE_DUMP, nnc writes the raw observations of its
estimate: the 4 gradients (as descent directions) with their Hessian-vector products that set
the prior, the gradients and directions s_i of the 3 active observations and y_i = H s_i.  From
those NumPy redoes the inference as de Roos and Hennig write it, with n x n covariance matrices
W = w I and noise L = lambda I and generalised eigendecompositions by Cholesky (none of nnc's
scalar shortcuts): the prior scalars alpha, w and lambda; each next direction B_i^-1 g_i; the
posterior mean's top eigenpairs.  nnc's (from the checkpoint's metadata and its pre_q state
tensors) must agree to 1e-4 relative (the dump is float32).  Then: adaptive_sgd estimates
every epoch and only_adaptive_sgd once; a pre_sgd run stopped mid-epoch resumes bit for bit."""
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint"))
from st_numpy import read  # noqa: E402
from checks import check, finish  # noqa: E402

nnc, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(3)
x = rng.normal(size=(256, 5))
y = np.tanh(x @ rng.normal(size=5)) + 0.3 * rng.normal(size=256)
np.savetxt(f"{out}/data.csv", np.c_[x, y], delimiter=",", fmt="%.6f")


def model(name, opt, epochs):
    with open(f"{out}/{name}.nn", "w") as f:
        f.write(f"""model {name}
input  x : f32[5]
target y : f32[1]
h   = x -> dense(8) -> tanh
out = h -> dense(1)
loss mse(out, y)
train {{
  data      csv("data.csv", target = last)
  batch     16
  epochs    {epochs}
  optimizer {opt}
  seed      4
}}
""")
    return f"{out}/{name}.nn"


def train(path, run, env=None, resume=False):
    args = [nnc, "train", path, "--out", run, "--no-progress"] + (["--resume"] if resume else [])
    return subprocess.run(args, env={**os.environ, **(env or {})}, capture_output=True, text=True)


def gen_eigh(a, b):
    """Generalised symmetric eigenproblem a v = d b v, b positive definite, by Cholesky;
    vectors normalised so that v' b v = I (as scipy.linalg.eigh does)."""
    r = np.linalg.cholesky(b)
    ri = np.linalg.inv(r)
    d, v = np.linalg.eigh(ri @ a @ ri.T)
    return d, ri.T @ v


def rel(a, b):
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / max(np.linalg.norm(np.ravel(b)), 1e-300))


# 1. the inference, redone
dump = f"{out}/dump"
os.makedirs(dump, exist_ok=True)
r = train(model("pre", "pre_sgd(rank = 2, hvps = 3)", 1), f"{out}/pre", {"NNC_TEST_PRE_DUMP": dump})
print(r.stdout, r.stderr)
check(r.returncode == 0, "pre_sgd trains one epoch")
tensors, meta = read(f"{out}/pre/checkpoint.safetensors")
est = [float.fromhex(v) for v in meta["pre_sgd"].split()]
alpha, w, lam, lambdas = est[0], est[1], est[2], est[4:]
G, HG = np.load(f"{dump}/prior_g.npy").astype(float), np.load(f"{dump}/prior_hg.npy").astype(float)
E, n = G.shape
sHs, sHHs, sTs = np.sum(G * HG), np.sum(HG * HG), np.sum(G * G)
alpha_np = np.sqrt(sHHs / sHs)
w_np = abs(sHs / sTs)
lam_np = np.median(np.abs(G.mean(0) ** 2 - (G * G).mean(0))) / (np.sqrt(sTs) / E)
for what, got, want in (("alpha", alpha, alpha_np), ("prior width w", w, w_np), ("noise lambda", lam, lam_np)):
    check(abs(got - want) <= 1e-4 * abs(want), f"step 1: {what} {got:.6g} (NumPy {want:.6g})")
Gi = np.load(f"{dump}/infer_g.npy").astype(float)
S, Y = np.load(f"{dump}/infer_s.npy").astype(float), np.load(f"{dump}/infer_y.npy").astype(float)
M = S.shape[0]
W, L = w * np.eye(n), lam * np.eye(n)
Dl, Vl = gen_eigh(W, L)
A0 = alpha * np.eye(n)
check(rel(S[0], Gi[0] / alpha) < 1e-4, f"step 2: the first direction is the gradient step of rate 1/alpha ({rel(S[0], Gi[0] / alpha):.1e})")
B = A0
for i in range(1, M + 1):
    Si, Yi = S[:i].T, Y[:i].T
    Dr, Vr = gen_eigh(Si.T @ W @ Si, np.diag(np.diag(Si.T @ L @ Si)))
    Delta = Yi - A0 @ Si
    X = Vl @ ((1.0 / (Dl[:, None] * Dr[None, :] + 1) * (Vl.T @ Delta @ Vr)) @ Vr.T)
    B = A0 + (W @ X) @ (W @ Si).T
    if i < M:
        nxt = np.linalg.solve(B, Gi[i])
        check(rel(S[i], nxt) < 1e-4, f"step 2: direction {i + 1} is B_{i}^-1 g_{i} ({rel(S[i], nxt):.1e})")
d, V = np.linalg.eigh((B + B.T) / 2)
top = [(d[k], V[:, k]) for k in range(n - 1, -1, -1) if d[k] > alpha * (1 + 1e-9)][:2]
check(len(top) == len(lambdas), f"step 3: {len(lambdas)} eigenvalues above alpha kept (NumPy {len(top)})")
names = [k[: -len(".pre_q1")] for k in tensors if k.endswith(".pre_q1")]
order = ["h.weight", "h.bias", "out.weight", "out.bias"]
check(sorted(names) == sorted(order), f"the eigenvectors are state tensors of every trained weight ({names})")
for k, (val, vec) in enumerate(top[: len(lambdas)]):
    q = np.concatenate([tensors[f"{name}.pre_q{k + 1}"].ravel() for name in order])
    cos = abs(q @ vec) / np.linalg.norm(q)
    check(abs(lambdas[k] - val) <= 1e-4 * val and cos > 1 - 1e-4,
          f"step 3: eigenvalue {k + 1}: {lambdas[k]:.6g} (NumPy {val:.6g}), |cos| between eigenvectors {cos:.6f}")

# 2. the variants: how often they estimate
for name, opt, lines in (("adaptive", "adaptive_sgd", 3), ("only", "only_adaptive_sgd", 1), ("every2", "pre_sgd(every = 2)", 2)):
    r = train(model(name, opt, 3), f"{out}/{name}")
    got = len(re.findall(r"^\w+: epoch \d+: learning rate", r.stdout, re.M))
    check(r.returncode == 0 and got == lines, f"{opt}: {got} estimate(s) in 3 epochs (expected {lines})")

# 3. resume: stopped at epoch 2, step 3, resumed: the uninterrupted run's checkpoint
path = model("res", "pre_sgd(rank = 2)", 3)
full = train(path, f"{out}/full")
part = train(path, f"{out}/part", {"NNC_TEST_SIGNAL_AT": "2:3"})
again = train(path, f"{out}/part", resume=True)
same = open(f"{out}/full/checkpoint.safetensors", "rb").read() == open(f"{out}/part/checkpoint.safetensors", "rb").read()
check(full.returncode == 0 and part.returncode == 143 and again.returncode == 0 and same,
      f"pre_sgd stopped at 2:3 (status {part.returncode}) and resumed: the same checkpoint bytes")
finish()
