/* op_test.c: every op, checked numerically.
 *  1. Gradients: for each case a small graph ends in a scalar loss (sum(y * r) for a random r),
 *     autodiff builds the backward graph, and ref.c's double-precision gradients of every
 *     weight and input are compared with central finite differences of the loss.
 *  2. Backends: the same graph, planned and compiled for a device (the CPU's LLVM backend,
 *     or the CUDA backend, emulated or real), runs in float on the same values; every node it
 *     computes (forward, backward, update) is compared with ref.c as its kernel finishes, and,
 *     on a device other than the CPU, with what the CPU's kernel wrote (to float rounding).
 *  3. Coverage: every op of ops.def must have been compared by (2), and every differentiable
 *     op checked by (1); a new op without a case fails this test.
 * Usage: test_ops [--device cpu|cuda-emu|cuda] [--fuse] [CASE-NAME-SUBSTRING]
 * By default every op is its own kernel, so every value is checked; with --fuse the fusion
 * pass groups them and the values kernels store are checked (no coverage check then).
 * On a device other than the CPU the finite-difference half is skipped (it runs on the
 * reference alone); with --device cuda and no GPU the test exits 77, CTest's skip. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "lower.h"
#include "ref.h"
#include "rng.h"

enum { ROWS = 3, N = 5, C = 4 };
static const SrcLoc NOLOC = {0};

static bool compared[OP_COUNT], fd_checked[OP_COUNT];
static int failures;
static const char *device = "cpu";
static bool fuse; /* --fuse: kernels as the fusion pass groups them (only stored values compared) */

/* ---- graph building helpers ---- */

static int in_f(Graph *g, const char *name, int64_t n) { return ir_input(g, name, false, false, 0, shape_vec(n, true), NOLOC); }
static int in_lab(Graph *g, int64_t ncls) {
    return ir_input(g, "label", true, true, ncls, (Shape){.rank = 0, .batched = true}, NOLOC);
}
static int w_vec(Graph *g, const char *name, int64_t n) { return ir_weight(g, name, W_PARAM, shape_vec(n, false), INIT_ZERO, NOLOC); }
static int w_mat(Graph *g, const char *name, int64_t r, int64_t c) {
    return ir_weight(g, name, W_PARAM, (Shape){.rank = 2, .dim = {r, c}}, INIT_ZERO, NOLOC);
}
/* A convolution's weight [F, C, K] (K = kh kw) as its patches' GEMM reads it, [F, K C],
 * the way lower.c builds it. */
static int patch_weight(Graph *g, const char *name, int64_t F, int64_t Cin, int64_t K) {
    int w = w_mat(g, name, F, Cin * K);
    w = ir_add1(g, OP_RESHAPE, (Shape){.rank = 3, .dim = {F, Cin, K}}, w, NOLOC);
    w = ir_add1(g, OP_TRANSPOSE, (Shape){.rank = 3, .dim = {F, K, Cin}}, w, NOLOC);
    return ir_add1(g, OP_RESHAPE, (Shape){.rank = 2, .dim = {F, K * Cin}}, w, NOLOC);
}
static int w_scalar(Graph *g, const char *name) { return ir_weight(g, name, W_PARAM, shape_scalar(), INIT_ZERO, NOLOC); }
static int op1(Graph *g, Op op, int a, double attr) {
    int id = ir_add1(g, op, g->node[a].shape, a, NOLOC);
    g->node[id].attr[0] = attr;
    return id;
}
static int op2(Graph *g, Op op, Shape s, int a, int b) { return ir_add2(g, op, s, a, b, NOLOC); }
static int matmul(Graph *g, int a, int b, bool ta, bool tb) {
    /* batched [B,...,k] is a (B*... x k) matrix; a batched result keeps a's leading dims */
    Shape sa = g->node[a].shape, sb = g->node[b].shape;
    int64_t al = sa.rank ? sa.dim[sa.rank - 1] : 1, bl = sb.rank ? sb.dim[sb.rank - 1] : 1;
    int64_t ar = sa.batched ? -1 : sa.dim[0], ac = sa.batched ? al : sa.dim[1];
    int64_t br = sb.batched ? -1 : sb.dim[0], bc = sb.batched ? bl : sb.dim[1];
    int64_t rows = ta ? ac : ar, cols = tb ? br : bc;
    Shape s = (Shape){.rank = 2, .dim = {rows, cols}};
    if (rows < 0) {
        s = sa;
        s.dim[s.rank - 1] = cols;
    }
    int id = op2(g, OP_MATMUL, s, a, b);
    g->node[id].attr[0] = ta;
    g->node[id].attr[1] = tb;
    return id;
}
#define X(n) in_f(g, "x", n)
#define BX shape_vec(N, true)

/* ---- cases: each returns the output node ---- */

#define OPT_SAMPLER ((OptKind)100) /* a Case's `opt`: the sampler's leapfrog ops instead */
#define OPT_SGLD ((OptKind)101)    /* sgld's step (momentum != 0: with RMSprop's preconditioner) */
typedef struct {
    const char *name;
    int (*build)(Graph *g);
    OptKind opt; /* with an update step: OPT_SGD..; -1 none */
    double momentum, wd;
    bool nesterov;
} Case;

static int c_add(Graph *g) { return op2(g, OP_ADD, BX, X(N), in_f(g, "y", N)); }
static int c_sub(Graph *g) { return op2(g, OP_SUB, BX, X(N), in_f(g, "y", N)); }
static int c_mul(Graph *g) { return op2(g, OP_MUL, BX, X(N), in_f(g, "y", N)); }
static int c_div(Graph *g) { return op2(g, OP_DIV, BX, X(N), in_f(g, "y", N)); }
static int c_add_scalar(Graph *g) { return op2(g, OP_ADD, BX, X(N), w_scalar(g, "s")); }
static int c_sub_scalar(Graph *g) { return op2(g, OP_SUB, BX, w_scalar(g, "s"), X(N)); }
static int c_mul_scalar(Graph *g) { return op2(g, OP_MUL, BX, w_scalar(g, "s"), X(N)); }
static int c_div_scalar(Graph *g) { return op2(g, OP_DIV, BX, X(N), w_scalar(g, "s")); }
static int c_neg(Graph *g) { return op1(g, OP_NEG, X(N), 0); }
static int c_broadcast(Graph *g) { return ir_add1(g, OP_BROADCAST, BX, w_scalar(g, "s"), NOLOC); }
static int c_reshape(Graph *g) {
    int x = ir_input(g, "x", false, false, 0, (Shape){.rank = 2, .dim = {2, 3}, .batched = true}, NOLOC);
    return op1(g, OP_RELU, ir_add1(g, OP_RESHAPE, shape_vec(6, true), x, NOLOC), 0);
}
static int c_bias_add(Graph *g) { return op2(g, OP_BIAS_ADD, BX, X(N), w_vec(g, "b", N)); }
static int c_gate(Graph *g) { return op2(g, OP_GATE, BX, X(N), w_vec(g, "g", N)); }
static int c_relu(Graph *g) { return op1(g, OP_RELU, X(N), 0); }
static int c_leaky_relu(Graph *g) { return op1(g, OP_LEAKY_RELU, X(N), 0.1); }
static int c_elu(Graph *g) { return op1(g, OP_ELU, X(N), 0.7); }
static int c_tanh(Graph *g) { return op1(g, OP_TANH, X(N), 0); }
static int c_sigmoid(Graph *g) { return op1(g, OP_SIGMOID, X(N), 0); }
static int c_softplus(Graph *g) { return op1(g, OP_SOFTPLUS, X(N), 0); }
static int c_gelu(Graph *g) { return op1(g, OP_GELU, X(N), 0); }
static int c_exp(Graph *g) { return op1(g, OP_EXP, X(N), 0); }
static int c_rsqrt(Graph *g) { return op1(g, OP_RSQRT, op1(g, OP_EXP, X(N), 0), 0); } /* of positive values */
static int c_log(Graph *g) { return op1(g, OP_LOG, op1(g, OP_EXP, X(N), 0), 0); }
/* log densities of weights (a prior) and of inputs; Student's t with nu = 1 (the Cauchy) and 3.5 */
static int c_logp_normal(Graph *g) { return op1(g, OP_LOGP_NORMAL, X(N), 0); }
static int c_logp_laplace(Graph *g) { return op1(g, OP_LOGP_LAPLACE, w_mat(g, "w", C, N), 0); }
static int c_logp_cauchy(Graph *g) { return op1(g, OP_LOGP_STUDENT_T, w_vec(g, "w", N), 1); }
static int c_logp_student_t(Graph *g) { return op1(g, OP_LOGP_STUDENT_T, X(N), 3.5); }
/* the training value in the gradient program, the other in the evaluation program */
static int c_train_select(Graph *g) {
    return ir_add3(g, OP_TRAIN_SELECT, BX, X(N), in_f(g, "y", N), ir_scalar(g, "train", SC_TRAIN, 1, NOLOC), NOLOC);
}
/* a running average (a model statistic, updated with each step) of a batch's column means,
 * which scales the input in evaluation: sum over the batch of x / B, then the update */
static int c_running_avg(Graph *g) {
    int x = X(N);
    int mean = op2(g, OP_MUL, shape_vec(N, false), ir_add1(g, OP_COLSUM, shape_vec(N, false), op1(g, OP_BATCH_MEAN, x, 0), NOLOC),
                   ir_const(g, 2, NOLOC));
    int avg = ir_weight(g, "avg", W_STAT, shape_vec(N, false), INIT_ONE, NOLOC);
    g->weight[g->node[avg].ref].stat = mean;
    g->weight[g->node[avg].ref].momentum = 0.25;
    int used = ir_add3(g, OP_TRAIN_SELECT, shape_vec(N, false), mean, avg, ir_scalar(g, "train", SC_TRAIN, 1, NOLOC), NOLOC);
    return op2(g, OP_GATE, BX, op2(g, OP_BIAS_ADD, BX, x, w_vec(g, "b", N)), used);
}
static int c_softmax(Graph *g) { return ir_add1(g, OP_SOFTMAX, BX, X(N), NOLOC); }
static int c_batch_mean(Graph *g) { return op1(g, OP_BATCH_MEAN, X(N), 0); }
/* dropout: in training a mask from the counter-based generator (the gradient program and the
 * finite differences), in evaluation the identity (the evaluation program); the step 2^24 + 7
 * uses both halves of the step */
static int dropout(Graph *g, int x, double p) {
    int in[5] = {x, ir_scalar(g, "train", SC_TRAIN, 1, NOLOC), ir_scalar(g, "seed", SC_SEED, 4242, NOLOC),
                 ir_scalar(g, "step_lo", SC_STEP_LO, 7, NOLOC), ir_scalar(g, "step_hi", SC_STEP_HI, 1, NOLOC)};
    int id = ir_add(g, OP_DROPOUT, DT_F32, g->node[x].shape, in, 5, NOLOC);
    g->node[id].attr[0] = p;
    g->node[id].attr[1] = 3; /* the stream */
    return id;
}
static int c_dropout(Graph *g) { return dropout(g, X(N), 0.3); }
static int c_dropout_map(Graph *g) {
    return dropout(g, ir_input(g, "x", false, false, 0, (Shape){.rank = 3, .dim = {3, 4, 5}, .batched = true}, NOLOC), 0.5);
}
static int c_prelu(Graph *g) { return op2(g, OP_PRELU, BX, X(N), w_vec(g, "a", N)); }
static int c_colsum(Graph *g) { return ir_add1(g, OP_COLSUM, shape_vec(N, false), X(N), NOLOC); }
static int c_rowsum(Graph *g) { return ir_add1(g, OP_ROWSUM, shape_vec(1, true), X(N), NOLOC); }
static int c_sum(Graph *g) { return ir_add1(g, OP_SUM, shape_scalar(), X(N), NOLOC); }
static int c_l1(Graph *g) { return ir_add1(g, OP_L1, shape_scalar(), w_vec(g, "g", N), NOLOC); }
static int c_mse(Graph *g) { return op2(g, OP_MSE, shape_scalar(), X(N), in_f(g, "t", N)); }
static int c_mse_heads(Graph *g) { return op2(g, OP_MSE, shape_scalar(), X(N), in_f(g, "t", 1)); }
/* a variational dense layer's weight, mu + softplus(rho) eps, eps from the kernel generator,
 * and its KL term: the noise is a function of (seed, step, element), so the gradients by mu and
 * rho are checked with it held fixed */
static int c_bayes_dense(Graph *g) {
    Shape ws = {.rank = 2, .dim = {C, N}};
    int sc[4] = {ir_scalar(g, "train", SC_TRAIN, 1, NOLOC), ir_scalar(g, "seed", SC_SEED, 4242, NOLOC),
                 ir_scalar(g, "step_lo", SC_STEP_LO, 7, NOLOC), ir_scalar(g, "step_hi", SC_STEP_HI, 1, NOLOC)};
    int eps = ir_add(g, OP_NORMAL_NOISE, DT_F32, ws, sc, 4, NOLOC);
    g->node[eps].attr[0] = 5; /* the stream */
    int mu = w_mat(g, "mu", C, N), rho = w_mat(g, "rho", C, N);
    int sigma = ir_add1(g, OP_SOFTPLUS, ws, rho, NOLOC);
    int w = op2(g, OP_ADD, ws, mu, op2(g, OP_MUL, ws, sigma, eps));
    int y = matmul(g, X(N), w, false, true);
    int q = op2(g, OP_ADD, ws, op2(g, OP_MUL, ws, sigma, sigma), op2(g, OP_MUL, ws, mu, mu));
    int kl = ir_add1(g, OP_SUM, shape_scalar(), op2(g, OP_SUB, ws, q, ir_add1(g, OP_LOG, ws, sigma, NOLOC)), NOLOC);
    return op2(g, OP_ADD, shape_scalar(), op2(g, OP_CROSS_ENTROPY, shape_scalar(), y, in_lab(g, C)), kl);
}
static int c_relative_error(Graph *g) { /* a metric beside a loss: the output is checked, not differentiated */
    int x = X(N), t = in_f(g, "t", N);
    ir_add_output(g, "relative_error", op2(g, OP_RELATIVE_ERROR, shape_scalar(), x, t), AGG_MEAN);
    return op2(g, OP_MSE, shape_scalar(), x, t);
}
static int c_mse_unbatched(Graph *g) { return op2(g, OP_MSE, shape_scalar(), w_vec(g, "a", N), w_vec(g, "b", N)); }
static int c_cross_entropy(Graph *g) {
    int z = X(C), lab = in_lab(g, C);
    ir_add_output(g, "accuracy", op2(g, OP_ACCURACY, shape_scalar(), z, lab), AGG_FRACTION);
    return op2(g, OP_CROSS_ENTROPY, shape_scalar(), z, lab);
}
static int c_matmul_nt(Graph *g) { return matmul(g, X(N), w_mat(g, "w", C, N), false, true); }
static int c_matmul_nn(Graph *g) { return matmul(g, X(N), w_mat(g, "w", N, C), false, false); }
static int c_matmul_tn(Graph *g) { return matmul(g, w_mat(g, "a", N, C), w_mat(g, "b", N, 2), true, false); }
static int c_matmul_tt(Graph *g) { return matmul(g, w_mat(g, "a", N, C), w_mat(g, "b", 2, N), true, true); }
static int c_matmul_batch_inner(Graph *g) { return matmul(g, in_f(g, "a", C), X(N), true, false); }
/* a small network: dense + gate + relu + cross entropy, with an optimiser step */
static int c_net(Graph *g) {
    int x = X(N), lab = in_lab(g, C);
    int h = op2(g, OP_BIAS_ADD, shape_vec(C, true), matmul(g, x, w_mat(g, "w", C, N), false, true), w_vec(g, "b", C));
    h = op2(g, OP_GATE, shape_vec(C, true), op1(g, OP_RELU, h, 0), w_vec(g, "g", C));
    int pen = op2(g, OP_MUL, shape_scalar(), ir_const(g, 0.01, NOLOC), ir_add1(g, OP_L1, shape_scalar(), g->node[h].in[1], NOLOC));
    return op2(g, OP_ADD, shape_scalar(), op2(g, OP_CROSS_ENTROPY, shape_scalar(), h, lab), pen);
}

/* size gate: factors sigmoid(k (x0 - j)) of a learned boundary x0; gated input plus the
 * penalty sum_j factor_j; a steep slope checks that the gradient stays finite and exact */
static int size_factor(Graph *g, double slope) {
    int f = ir_add1(g, OP_SIZE_GATE_FACTOR, shape_vec(N, false), w_scalar(g, "b"), NOLOC);
    g->node[f].attr[0] = slope;
    g->node[f].attr[1] = 2; /* x0 = 2 b */
    return f;
}
static int c_size_gate_factor(Graph *g) { return size_factor(g, 1.5); }
static int c_size_gated(Graph *g) {
    int f = size_factor(g, 3);
    int y = ir_add1(g, OP_SUM, shape_scalar(), op2(g, OP_GATE, BX, X(N), f), NOLOC);
    return op2(g, OP_ADD, shape_scalar(), y, op2(g, OP_MUL, shape_scalar(), ir_const(g, 0.5, NOLOC), ir_add1(g, OP_SUM, shape_scalar(), f, NOLOC)));
}
static int c_size_gate_steep(Graph *g) { return size_factor(g, 40); }

/* ---- sliding windows over [B,H,W,C] ---- */
static Shape map3(int64_t h, int64_t w, int64_t c) { return (Shape){.rank = 3, .dim = {h, w, c}, .batched = true}; }
static int in_map(Graph *g, const char *name, int64_t h, int64_t w, int64_t c) {
    return ir_input(g, name, false, false, 0, map3(h, w, c), NOLOC);
}
typedef struct {
    int64_t H, W, C, kh, kw, stride, dil, pt, pb, pl, pr;
} Geom;
static int64_t out_h(const Geom *q) { return (q->H + q->pt + q->pb - q->dil * (q->kh - 1) - 1) / q->stride + 1; }
static int64_t out_w(const Geom *q) { return (q->W + q->pl + q->pr - q->dil * (q->kw - 1) - 1) / q->stride + 1; }
static int win(Graph *g, Op op, Shape s, int a, int b, const Geom *q) {
    int id = b < 0 ? ir_add1(g, op, s, a, NOLOC) : ir_add2(g, op, s, a, b, NOLOC);
    double at[6] = {(double)q->kh, (double)q->kw, (double)q->stride, (double)q->dil, (double)q->pt, (double)q->pl};
    memcpy(g->node[id].attr, at, sizeof at);
    return id;
}
static const Geom G_SAME = {5, 4, 2, 3, 3, 1, 1, 1, 1, 1, 1};    /* 3x3, stride 1, padding 1 */
static const Geom G_STRIDED = {7, 6, 3, 3, 2, 2, 1, 1, 1, 0, 0}; /* 3x2, stride 2, odd sizes */
static const Geom G_DILATED = {7, 7, 1, 3, 3, 1, 2, 2, 2, 2, 2}; /* dilation 2 */
static const Geom P_2X2 = {4, 6, 3, 2, 2, 2, 1, 0, 0, 0, 0};
static const Geom P_OVERLAP = {5, 5, 2, 3, 3, 2, 1, 0, 0, 0, 0}; /* 3x3 windows, stride 2 */
static const Geom P_ODD = {5, 7, 2, 2, 2, 2, 1, 0, 0, 0, 0};     /* the last row and column are left out */
/* at least 8 channels: the CPU renders these reductions with the channel loop innermost
 * (render_llvm.c, channel_innermost) */
static const Geom G_WIDE = {5, 4, 11, 3, 3, 2, 1, 1, 1, 1, 1};  /* col2im: strided, padded, 11 channels */
static const Geom P_WIDE = {5, 5, 9, 3, 3, 2, 1, 0, 0, 0, 0};   /* overlapping pools over 9 channels */
static int im2col_case(Graph *g, const Geom *q) {
    return win(g, OP_IM2COL, map3(out_h(q), out_w(q), q->C * q->kh * q->kw), in_map(g, "x", q->H, q->W, q->C), -1, q);
}
static int col2im_case(Graph *g, const Geom *q) {
    return win(g, OP_COL2IM, map3(q->H, q->W, q->C), in_map(g, "d", out_h(q), out_w(q), q->C * q->kh * q->kw), -1, q);
}
static int pool_case(Graph *g, Op op, const Geom *q) {
    return win(g, op, map3(out_h(q), out_w(q), q->C), in_map(g, "x", q->H, q->W, q->C), -1, q);
}
static int c_im2col_same(Graph *g) { return im2col_case(g, &G_SAME); }
static int c_im2col_strided(Graph *g) { return im2col_case(g, &G_STRIDED); }
static int c_im2col_dilated(Graph *g) { return im2col_case(g, &G_DILATED); }
static int c_col2im_same(Graph *g) { return col2im_case(g, &G_SAME); }
static int c_col2im_strided(Graph *g) { return col2im_case(g, &G_STRIDED); }
static int c_col2im_dilated(Graph *g) { return col2im_case(g, &G_DILATED); }
static int c_col2im_wide(Graph *g) { return col2im_case(g, &G_WIDE); }
static int c_transpose(Graph *g) {
    int w = ir_weight(g, "w", W_PARAM, (Shape){.rank = 3, .dim = {3, 4, 5}}, INIT_ZERO, NOLOC);
    return ir_add1(g, OP_TRANSPOSE, (Shape){.rank = 3, .dim = {3, 5, 4}}, w, NOLOC);
}
static int c_maxpool_2x2(Graph *g) { return pool_case(g, OP_MAXPOOL, &P_2X2); }
static int c_maxpool_wide(Graph *g) { return pool_case(g, OP_MAXPOOL, &P_WIDE); }
static int c_avgpool_wide(Graph *g) { return pool_case(g, OP_AVGPOOL, &P_WIDE); }
static int c_maxpool_overlap(Graph *g) { return pool_case(g, OP_MAXPOOL, &P_OVERLAP); }
static int c_maxpool_odd(Graph *g) { return pool_case(g, OP_MAXPOOL, &P_ODD); }
static int c_avgpool_2x2(Graph *g) { return pool_case(g, OP_AVGPOOL, &P_2X2); }
static int c_avgpool_overlap(Graph *g) { return pool_case(g, OP_AVGPOOL, &P_OVERLAP); }
static int c_avgpool_grad(Graph *g) {
    const Geom *q = &P_OVERLAP;
    return win(g, OP_AVGPOOL_GRAD, map3(q->H, q->W, q->C), in_map(g, "dy", out_h(q), out_w(q), q->C), -1, q);
}
/* maxpool's adjoint pair as forward ops, at the maxima of another input */
static int maxpool_grad_case(Graph *g, const Geom *q) {
    int arg = pool_case(g, OP_MAXPOOL_ARG, q);
    return win(g, OP_MAXPOOL_GRAD, map3(q->H, q->W, q->C), in_map(g, "dy", out_h(q), out_w(q), q->C), arg, q);
}
static int c_maxpool_grad(Graph *g) { return maxpool_grad_case(g, &P_OVERLAP); }
static int c_maxpool_grad_wide(Graph *g) { return maxpool_grad_case(g, &P_WIDE); }
static int maxpool_pick_case(Graph *g, const Geom *q) {
    int arg = pool_case(g, OP_MAXPOOL_ARG, q);
    return win(g, OP_MAXPOOL_PICK, map3(out_h(q), out_w(q), q->C), in_map(g, "g", q->H, q->W, q->C), arg, q);
}
static int c_maxpool_pick(Graph *g) { return maxpool_pick_case(g, &P_ODD); }
static int c_maxpool_pick_wide(Graph *g) { return maxpool_pick_case(g, &P_WIDE); }
static int c_avgpool_grad_wide(Graph *g) {
    const Geom *q = &P_WIDE;
    return win(g, OP_AVGPOOL_GRAD, map3(q->H, q->W, q->C), in_map(g, "dy", out_h(q), out_w(q), q->C), -1, q);
}
/* a gated convolutional network: conv 3x3 same -> bias, relu, gate per channel -> maxpool
 * 2x2 -> flatten -> dense -> cross entropy, with an optimiser step */
static int c_conv_net(Graph *g) {
    const Geom q = {6, 6, 2, 3, 3, 1, 1, 1, 1, 1, 1};
    int F = 4, lab = in_lab(g, C);
    int cols = im2col_case(g, &q);
    int z = matmul(g, cols, patch_weight(g, "w", F, q.C, q.kh * q.kw), false, true);
    z = op2(g, OP_BIAS_ADD, map3(6, 6, F), z, w_vec(g, "b", F));
    int h = op2(g, OP_GATE, map3(6, 6, F), op1(g, OP_RELU, z, 0), w_vec(g, "g", F));
    const Geom p = {6, 6, F, 2, 2, 2, 1, 0, 0, 0, 0};
    h = win(g, OP_MAXPOOL, map3(3, 3, F), h, -1, &p);
    h = ir_add1(g, OP_RESHAPE, shape_vec(9 * F, true), h, NOLOC);
    return op2(g, OP_CROSS_ENTROPY, shape_scalar(), matmul(g, h, w_mat(g, "w2", C, 9 * F), false, true), lab);
}

/* per-sample tensors through their own index maps: axis sums and broadcasts, and fd_grad's
 * finite differences (3 inputs, 2 heads; central K = 6 points, forward and backward K = 4) */
static Shape per2(int64_t a, int64_t b) { return (Shape){.rank = 2, .dim = {a, b}, .batched = true}; }
static int in2(Graph *g, const char *name, int64_t a, int64_t b) { return ir_input(g, name, false, false, 0, per2(a, b), NOLOC); }
static int indexed(Graph *g, Op op, Shape s, int x, double a0, double a1) {
    int id = ir_add1(g, op, s, x, NOLOC);
    g->node[id].attr[0] = a0;
    g->node[id].attr[1] = a1;
    return id;
}
static int c_axis_sum0(Graph *g) { return indexed(g, OP_AXIS_SUM, shape_vec(4, true), in2(g, "x", 3, 4), 0, 0); }
static int c_axis_sum1(Graph *g) { return indexed(g, OP_AXIS_SUM, shape_vec(3, true), in2(g, "x", 3, 4), 1, 0); }
static int c_axis_broadcast0(Graph *g) { return indexed(g, OP_AXIS_BROADCAST, per2(3, 4), X(4), 0, 0); }
static int c_axis_broadcast1(Graph *g) { return indexed(g, OP_AXIS_BROADCAST, per2(3, 4), X(3), 1, 0); }
static int64_t fd_points(int method, int64_t D) { return method == 0 ? 2 * D : D + 1; }
static int fd_perturb_case(Graph *g, int method) { return indexed(g, OP_FD_PERTURB, per2(fd_points(method, 3), 3), X(3), 0.25, method); }
static int fd_diff_case(Graph *g, int method) { return indexed(g, OP_FD_DIFF, per2(2, 3), in2(g, "h", fd_points(method, 3), 2), 0.25, method); }
static int fd_diff_t_case(Graph *g, int method) { return indexed(g, OP_FD_DIFF_T, per2(fd_points(method, 3), 2), in2(g, "dg", 2, 3), 0.25, method); }
static int c_fd_perturb_central(Graph *g) { return fd_perturb_case(g, 0); }
static int c_fd_perturb_forward(Graph *g) { return fd_perturb_case(g, 1); }
static int c_fd_perturb_backward(Graph *g) { return fd_perturb_case(g, 2); }
static int c_fd_diff_central(Graph *g) { return fd_diff_case(g, 0); }
static int c_fd_diff_forward(Graph *g) { return fd_diff_case(g, 1); }
static int c_fd_diff_backward(Graph *g) { return fd_diff_case(g, 2); }
static int c_fd_diff_t_central(Graph *g) { return fd_diff_t_case(g, 0); }
static int c_fd_diff_t_forward(Graph *g) { return fd_diff_t_case(g, 1); }
static int c_fd_diff_t_backward(Graph *g) { return fd_diff_t_case(g, 2); }
/* A network's input-gradients by finite differences, as fd_grad lowers them: x [B, 3] at 6
 * points, tanh(x W1^T + b) W2^T for 2 heads, differenced to [B, 2, 3]; weights differentiated
 * through it all */
static int c_fd_net(Graph *g) {
    int x = X(3);
    int pts = indexed(g, OP_FD_PERTURB, per2(6, 3), x, 0.25, 0);
    int h = matmul(g, pts, w_mat(g, "w1", 4, 3), false, true);
    h = op1(g, OP_TANH, op2(g, OP_BIAS_ADD, per2(6, 4), h, w_vec(g, "b1", 4)), 0);
    h = matmul(g, h, w_mat(g, "w2", 2, 4), false, true);
    return indexed(g, OP_FD_DIFF, per2(2, 3), h, 0.25, 0);
}

#define FWD(name, f) {name, f, (OptKind)-1, 0, 0, false}
/* the same network whose gate is shrunk by a proximal L1 step after each update (the penalty
 * itself is left out of the loss, so finite differences see what autodiff differentiates) */
static int c_net_prox(Graph *g) {
    int x = X(N), lab = in_lab(g, C);
    int gate = w_vec(g, "g", C);
    int h = op2(g, OP_BIAS_ADD, shape_vec(C, true), matmul(g, x, w_mat(g, "w", C, N), false, true), w_vec(g, "b", C));
    h = op2(g, OP_GATE, shape_vec(C, true), op1(g, OP_RELU, h, 0), gate);
    g->weight[g->node[gate].ref].prox = ir_const(g, 8.0, NOLOC); /* lr 0.05: shrinks by 0.4 */
    return op2(g, OP_CROSS_ENTROPY, shape_scalar(), h, lab);
}

static const Case cases[] = {
    FWD("add", c_add), FWD("sub", c_sub), FWD("mul", c_mul), FWD("div", c_div),
    FWD("add_scalar", c_add_scalar), FWD("sub_scalar", c_sub_scalar), FWD("mul_scalar", c_mul_scalar),
    FWD("div_scalar", c_div_scalar), FWD("neg", c_neg), FWD("broadcast", c_broadcast),
    FWD("reshape", c_reshape), FWD("bias_add", c_bias_add), FWD("gate", c_gate),
    FWD("relu", c_relu), FWD("leaky_relu", c_leaky_relu), FWD("elu", c_elu), FWD("tanh", c_tanh),
    FWD("sigmoid", c_sigmoid), FWD("softplus", c_softplus), FWD("gelu", c_gelu), FWD("prelu", c_prelu),
    FWD("exp", c_exp), FWD("rsqrt", c_rsqrt), FWD("log", c_log), FWD("logp_normal", c_logp_normal),
    FWD("logp_laplace", c_logp_laplace), FWD("logp_cauchy", c_logp_cauchy), FWD("logp_student_t", c_logp_student_t), FWD("train_select", c_train_select),
    {"running_avg", c_running_avg, OPT_SGD, 0, 0, false}, FWD("softmax", c_softmax), FWD("batch_mean", c_batch_mean),
    FWD("dropout", c_dropout), FWD("dropout_map", c_dropout_map),
    FWD("im2col_same", c_im2col_same), FWD("im2col_strided", c_im2col_strided), FWD("im2col_dilated", c_im2col_dilated),
    FWD("col2im_same", c_col2im_same), FWD("col2im_strided", c_col2im_strided), FWD("col2im_dilated", c_col2im_dilated),
    FWD("maxpool_2x2", c_maxpool_2x2), FWD("maxpool_overlap", c_maxpool_overlap), FWD("maxpool_odd", c_maxpool_odd),
    FWD("avgpool_2x2", c_avgpool_2x2), FWD("avgpool_overlap", c_avgpool_overlap), FWD("avgpool_grad", c_avgpool_grad),
    FWD("maxpool_grad", c_maxpool_grad), FWD("maxpool_pick", c_maxpool_pick),
    FWD("conv_net", c_conv_net), {"conv_net_adam", c_conv_net, OPT_ADAM, 0, 0, false},
    FWD("colsum", c_colsum), FWD("rowsum", c_rowsum), FWD("sum", c_sum), FWD("l1", c_l1), FWD("mse", c_mse),
    FWD("mse_heads", c_mse_heads), FWD("mse_unbatched", c_mse_unbatched), FWD("cross_entropy", c_cross_entropy),
    FWD("matmul_nt", c_matmul_nt), FWD("matmul_nn", c_matmul_nn), FWD("matmul_tn", c_matmul_tn),
    FWD("matmul_tt", c_matmul_tt), FWD("matmul_batch_inner", c_matmul_batch_inner),
    FWD("size_gate_factor", c_size_gate_factor), FWD("size_gated", c_size_gated), FWD("size_gate_steep", c_size_gate_steep),
    {"net_sgd", c_net, OPT_SGD, 0, 0, false}, {"net_sgd_wd", c_net, OPT_SGD, 0, 0.01, false},
    {"net_momentum", c_net, OPT_SGD, 0.9, 0, false}, {"net_nesterov_wd", c_net, OPT_SGD, 0.9, 0.01, true},
    {"net_adam", c_net, OPT_ADAM, 0, 0, false}, {"net_adam_wd", c_net, OPT_ADAM, 0, 0.01, false},
    {"net_adamw", c_net, OPT_ADAMW, 0, 0.01, false},
    {"net_prox_sgd", c_net_prox, OPT_SGD, 0.9, 0, false}, {"net_prox_adam", c_net_prox, OPT_ADAM, 0, 0, false},
    {"net_hmc", c_net, OPT_SAMPLER, 0, 0, false}, /* a leapfrog step's kick and drift */
    {"net_sgld", c_net, OPT_SGLD, 0, 0, false},   /* a Langevin step, its noise from the kernel generator */
    {"net_sgld_rms", c_net, OPT_SGLD, 1, 0, false},
    /* (added last: a case's data comes from its index) */
    FWD("transpose", c_transpose), FWD("col2im_wide", c_col2im_wide), FWD("maxpool_wide", c_maxpool_wide), FWD("avgpool_wide", c_avgpool_wide),
    FWD("avgpool_grad_wide", c_avgpool_grad_wide), FWD("maxpool_grad_wide", c_maxpool_grad_wide),
    FWD("maxpool_pick_wide", c_maxpool_pick_wide), FWD("relative_error", c_relative_error), FWD("bayes_dense", c_bayes_dense),
    FWD("axis_sum0", c_axis_sum0), FWD("axis_sum1", c_axis_sum1), FWD("axis_broadcast0", c_axis_broadcast0),
    FWD("axis_broadcast1", c_axis_broadcast1), FWD("fd_perturb_central", c_fd_perturb_central),
    FWD("fd_perturb_forward", c_fd_perturb_forward), FWD("fd_perturb_backward", c_fd_perturb_backward),
    FWD("fd_diff_central", c_fd_diff_central), FWD("fd_diff_forward", c_fd_diff_forward), FWD("fd_diff_backward", c_fd_diff_backward),
    FWD("fd_diff_t_central", c_fd_diff_t_central), FWD("fd_diff_t_forward", c_fd_diff_t_forward),
    FWD("fd_diff_t_backward", c_fd_diff_t_backward), FWD("fd_net", c_fd_net),
    {"net_rmsprop", c_net, OPT_RMSPROP, 0, 0, false}, {"net_rmsprop_momentum_wd", c_net, OPT_RMSPROP, 0.9, 0.01, false},
    {"net_adagrad_wd", c_net, OPT_ADAGRAD, 0, 0.01, false}, {"net_prox_rmsprop", c_net_prox, OPT_RMSPROP, 0, 0, false},
    {"net_prox_adagrad", c_net_prox, OPT_ADAGRAD, 0, 0, false},
};

/* ---- values ---- */

/* Away from 0 (kinks of relu, l1) and of either sign. */
static double draw(Rng *r, bool label, int64_t ncls) {
    if (label) return (double)rng_below(r, (uint64_t)ncls);
    double v = 0.2 + rng_uniform(r);
    return rng_next(r) & 1 ? v : -v;
}

static int64_t leaf_size(const RefState *r, int node) { return ref_size(r, node); }

static void fill(RefState *ref, Rng *rng) {
    const Graph *g = ref->g;
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        if (n->op != OP_INPUT && n->op != OP_WEIGHT) continue;
        bool label = n->op == OP_INPUT && g->input[n->ref].is_class;
        bool state = n->op == OP_WEIGHT && g->weight[n->ref].kind != W_PARAM;
        for (int64_t i = 0; i < leaf_size(ref, id); i++) {
            double v = draw(rng, label, label ? g->input[n->ref].nclass : 0);
            if (state) v = fabs(v) * 0.1; /* optimiser state and statistics: Adam's v, a variance >= 0 */
            ref->val[id][i] = (double)(float)v;
        }
    }
}

static double forward_loss(RefState *ref, const bool *fwd) {
    ref_run(ref, fwd);
    return ref->val[ref->g->loss][0];
}

/* ---- 1. finite differences ---- */

static void check_fd(const Case *cs, RefState *ref, const bool *fwd) {
    const Graph *g = ref->g;
    int nleaf = 0;
    bool *no_update = util_calloc((size_t)g->nnode, sizeof(bool));
    for (int id = 0; id < g->nnode; id++) no_update[id] = g->node[id].phase != PH_UPDATE;
    ref_run(ref, no_update); /* the analytic gradients */
    free(no_update);
    for (int id = 0; id < g->nforward; id++) {
        const Node *n = &g->node[id];
        int grad = -1;
        if (n->op == OP_WEIGHT && g->weight[n->ref].kind == W_PARAM) grad = g->weight[n->ref].grad;
        if (n->op == OP_INPUT) grad = g->input[n->ref].grad;
        if (grad < 0) continue;
        nleaf++;
        double worst = 0;
        for (int64_t i = 0; i < ref_size(ref, id); i++) {
            double v = ref->val[id][i], h = 1e-6 * fmax(1.0, fabs(v));
            ref->val[id][i] = v + h;
            double lp = forward_loss(ref, fwd);
            ref->val[id][i] = v - h;
            double lm = forward_loss(ref, fwd);
            ref->val[id][i] = v;
            double fd = (lp - lm) / (2 * h), an = ref->val[grad][i];
            double err = fabs(fd - an) / (1e-6 + fabs(an) + fabs(fd));
            if (err > worst) worst = err;
            if (fabs(fd - an) > 1e-7 + 1e-6 * fabs(an)) {
                printf("FAIL %s: d loss / d %s[%lld]: autodiff %.12g, finite difference %.12g\n", cs->name,
                       n->op == OP_WEIGHT ? g->weight[n->ref].name : g->input[n->ref].name, (long long)i, an, fd);
                failures++;
                return;
            }
        }
        (void)worst;
    }
    if (nleaf == 0) {
        printf("FAIL %s: nothing to differentiate\n", cs->name);
        failures++;
    }
    for (int id = 0; id < g->nforward; id++) fd_checked[g->node[id].op] = true;
}

/* ---- 2. LLVM vs ref ---- */

/* Kernel outputs are compared as each kernel finishes: the memory plan reuses the buffers
 * of dead values, so they cannot all be read at the end. */
typedef struct {
    const Case *cs;
    Exec *ex;
    RefState *ref;
    bool failed;
    bool recording;  /* the CPU run that other devices are compared with */
    float **cpu_out; /* per program, kernel and argument: what the CPU wrote */
    int prog;        /* the program running */
} Cmp;

enum { ARG_SLOTS = 16 };

static void compare_kernel(void *ctx, int kernel) {
    Cmp *c = ctx;
    if (c->failed) return;
    if (c->recording) {
        const Kernel *k = &c->ex->plan->kernel[kernel];
        for (int a = 0; a < k->narg; a++) {
            if (!k->arg[a].write) continue;
            int id = c->ex->plan->buf[k->arg[a].buf].node;
            int64_t cnt = ref_size(c->ref, id);
            float *f = util_calloc((size_t)cnt, sizeof(float));
            exec_read(c->ex, id, f, sizeof(float) * (size_t)cnt);
            int slot = (c->prog * c->ex->plan->nkernel + kernel) * ARG_SLOTS + a;
            free(c->cpu_out[slot]);
            c->cpu_out[slot] = f;
        }
        return;
    }
    const Graph *g = c->ref->g;
    const Kernel *k = &c->ex->plan->kernel[kernel];
    for (int a = 0; a < k->narg; a++) {
        if (!k->arg[a].write) continue;
        const Buffer *b = &c->ex->plan->buf[k->arg[a].buf];
        int id = b->node;
        const Node *n = &g->node[id];
        int64_t cnt = ref_size(c->ref, id);
        float *f = util_calloc((size_t)cnt, sizeof(float));
        exec_read(c->ex, id, f, sizeof(float) * (size_t)cnt);
        const double *d = c->ref->val[id];
        double scale = 0;
        for (int64_t i = 0; i < cnt; i++) scale = fmax(scale, fabs(d[i]));
        if (op_info[n->op].cls == OC_SUM) { /* a total: its rounding follows the size of its terms */
            double terms = 0;
            for (int64_t i = 0; i < ref_size(c->ref, n->in[0]); i++) terms += fabs(c->ref->val[n->in[0]][i]);
            scale = fmax(scale, terms);
        }
        const float *cpu = c->cpu_out ? c->cpu_out[(c->prog * c->ex->plan->nkernel + kernel) * ARG_SLOTS + a] : NULL;
        /* a total sum adds its terms in another order on each backend (the CUDA device per
         * block, then the blocks in order): it is held to the reference's tolerance only */
        for (int o = 0; o < k->nout; o++)
            if (k->out[o].kind == KO_SUM && k->out[o].arg == a) cpu = NULL;
        for (int64_t i = 0; cpu && i < cnt; i++) {
            double tol = 1e-6 * fabs((double)cpu[i]) + 1e-6 * scale + 1e-9;
            if (!(fabs((double)f[i] - cpu[i]) <= tol)) {
                printf("FAIL %s: kernel %s, node %%%d (%s) element %lld: %s %.9g, cpu %.9g\n", c->cs->name, k->name, id,
                       n->op == OP_WEIGHT ? g->weight[n->ref].name : op_info[n->op].name, (long long)i, device,
                       (double)f[i], (double)cpu[i]);
                failures++;
                c->failed = true;
                free(f);
                return;
            }
        }
        for (int64_t i = 0; i < cnt; i++) {
            double tol = 2e-6 * fabs(d[i]) + 1e-5 * scale + 1e-7;
            if (!(fabs((double)f[i] - d[i]) <= tol)) {
                printf("FAIL %s: kernel %s, node %%%d (%s) element %lld: %s %.9g, reference %.9g\n", c->cs->name,
                       k->name, id, n->op == OP_WEIGHT ? g->weight[n->ref].name : op_info[n->op].name, (long long)i,
                       device, (double)f[i], d[i]);
                failures++;
                c->failed = true;
                free(f);
                return;
            }
        }
        free(f);
        compared[n->op] = true;
    }
    compared[k->op] = true;
    const Node *kn = &g->node[k->node]; /* views have no kernel: they count when read through */
    for (int i = 0; i < kn->nin; i++)
        if (op_info[g->node[kn->in[i]].op].cls == OC_VIEW) compared[g->node[kn->in[i]].op] = true;
}

/* Run every program on `dev` from the pre-update leaves, calling compare_kernel after each
 * kernel; 0, or -1 after reporting a failure. */
static int run_on(const char *dev, const Plan *plan, Cmp *c, double **leaf0) {
    const Graph *g = c->ref->g;
    Exec ex;
    char err[1024];
    if (exec_new(&ex, plan, dev, NULL, err, sizeof err)) {
        printf("FAIL %s: %s\n", c->cs->name, err);
        failures++;
        return -1;
    }
    for (int id = 0; id < g->nnode; id++) {
        if (!leaf0[id]) continue;
        int64_t n = ref_size(c->ref, id);
        float *v = util_calloc((size_t)n, sizeof(float)); /* 4-byte elements, f32 or i32 */
        for (int64_t i = 0; i < n; i++) {
            if (g->node[id].dtype == DT_I32)
                ((int32_t *)v)[i] = (int32_t)leaf0[id][i];
            else
                v[i] = (float)leaf0[id][i];
        }
        exec_write(&ex, id, v, sizeof(float) * (size_t)n);
        free(v);
    }
    for (int s = 0; s < g->nscalar; s++) ex.scalars[s] = (float)c->ref->scalar[s];
    c->ex = &ex;
    /* the evaluation program runs in evaluation mode (exec_run sets SC_TRAIN to 0): its
     * reference is the forward pass from the same leaves in that mode */
    RefState *train_ref = c->ref, *eval_ref = ref_new(g, ROWS);
    for (int id = 0; id < g->nnode; id++)
        if (leaf0[id]) memcpy(eval_ref->val[id], leaf0[id], sizeof(double) * (size_t)ref_size(eval_ref, id));
    for (int s = 0; s < g->nscalar; s++) eval_ref->scalar[s] = g->scalar[s].kind == SC_TRAIN ? 0 : train_ref->scalar[s];
    bool *fwd = util_calloc((size_t)g->nnode, sizeof(bool));
    for (int id = 0; id < g->nforward; id++) fwd[id] = true;
    ref_run(eval_ref, fwd);
    free(fwd);
    int order[PROGRAMS_MAX] = {PROG_EVAL, PROG_GRAD, PROG_UPDATE}, nord = 3; /* then a sampler's drift */
    for (int pr = PROG_EVAL + 1; pr < g->nprog; pr++) order[nord++] = pr;
    int rc = 0;
    for (int pr = 0; pr < nord && !c->failed; pr++) {
        c->ref = order[pr] == PROG_EVAL ? eval_ref : train_ref;
        c->prog = order[pr];
        if (exec_run_checked(&ex, order[pr], ROWS, compare_kernel, c)) {
            printf("FAIL %s: %s\n", c->cs->name, ex.dev->err);
            failures++;
            rc = -1;
            break;
        }
    }
    c->ref = train_ref;
    ref_free(eval_ref);
    exec_free(&ex);
    return c->failed ? -1 : rc;
}

static void check_backend(const Case *cs, RefState *ref, double **leaf0) {
    const Plan *plan = plan_graph(ref->g->arena, ref->g, ROWS, fuse);
    Cmp c = {.cs = cs, .ref = ref};
    if (strcmp(device, "cpu")) { /* first what the CPU writes, for comparing with */
        c.cpu_out = util_calloc((size_t)plan->nprog * plan->nkernel * ARG_SLOTS, sizeof(float *));
        c.recording = true;
        if (run_on("cpu", plan, &c, leaf0) == 0) {
            c.recording = false;
            run_on(device, plan, &c, leaf0);
        }
        for (int i = 0; i < plan->nprog * plan->nkernel * ARG_SLOTS; i++) free(c.cpu_out[i]);
        free(c.cpu_out);
        return;
    }
    run_on(device, plan, &c, leaf0);
}

static void set_scalars(RefState *ref) {
    /* the run-time scalars of a third optimiser step, rounded as the float backend sees them */
    const Graph *g = ref->g;
    double t = 3, lr = 0.05;
    for (int s = 0; s < g->nscalar; s++) {
        const Scalar *sc = &g->scalar[s];
        double v = sc->kind == SC_LR            ? lr
                   : sc->kind == SC_ADAM_STEP    ? lr / (1 - pow(0.9, t))
                   : sc->kind == SC_ADAM_BC2_SQRT ? sqrt(1 - pow(0.999, t))
                   : sc->kind == SC_HMC_KICK     ? 0.3
                   : sc->kind == SC_HMC_STEP     ? 0.2
                   : sc->kind == SC_SGLD_DRIFT   ? 0.05
                   : sc->kind == SC_SGLD_NOISE   ? 0.3
                   : sc->kind == SC_SEED         ? 1234567
                   : sc->kind == SC_STEP_LO      ? 3
                   : sc->kind == SC_STEP_HI      ? 2
                                                 : sc->value;
        ref->scalar[s] = (double)(float)v;
    }
}

static void run_case(const Case *cs, uint64_t seed) {
    Arena *arena = arena_new();
    Graph *g = ir_new(arena);
    int y = cs->build(g);
    /* loss = y for a scalar y, else sum(y * r) with a fixed random r */
    int loss = y;
    if (g->node[y].shape.rank != 0 || g->node[y].shape.batched) {
        Shape s = g->node[y].shape;
        int r = s.batched ? ir_input(g, "r", false, false, 0, s, NOLOC) : ir_weight(g, "r", W_STATE, s, INIT_ZERO, NOLOC);
        loss = ir_add1(g, OP_SUM, shape_scalar(), op2(g, OP_MUL, s, y, r), NOLOC);
    }
    g->loss = loss;
    ir_add_output(g, "loss", loss, AGG_MEAN);
    Output last = g->output[g->noutput - 1]; /* the loss comes first */
    memmove(g->output + 1, g->output, sizeof(Output) * (size_t)(g->noutput - 1));
    g->output[0] = last;
    g->nforward = g->nnode;
    g->input_grads = true;
    ir_verify(g, "op_test build");
    autodiff_graph(g);
    if (cs->opt == OPT_SAMPLER || cs->opt == OPT_SGLD) {
        SamplerSpec sp = {.kind = cs->opt == OPT_SGLD ? SAMPLER_SGLD : SAMPLER_HMC, .step = 0.2, .precondition = cs->momentum != 0,
                          .alpha = 0.9, .lambda = 1e-3};
        sampler_graph(g, &sp);
    } else if ((int)cs->opt >= 0) {
        OptSpec o = {.kind = cs->opt, .lr = 0.05, .momentum = cs->momentum, .nesterov = cs->nesterov,
                     .weight_decay = cs->wd, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .alpha = 0.9,
                     .initial_accumulator = 0.1};
        update_graph(g, &o);
    }
    programs_build(g);
    bool *fwd = util_calloc((size_t)g->nnode, sizeof(bool));
    for (int id = 0; id < g->nforward; id++) fwd[id] = true;
    RefState *ref = ref_new(g, ROWS);
    Rng rng;
    rng_seed(&rng, seed, 7);
    fill(ref, &rng);
    set_scalars(ref);
    int before = failures;
    if (!strcmp(device, "cpu")) check_fd(cs, ref, fwd);
    if (failures == before) {
        double **leaf0 = util_calloc((size_t)g->nnode, sizeof(double *));
        for (int id = 0; id < g->nnode; id++)
            if (g->node[id].op == OP_INPUT || g->node[id].op == OP_WEIGHT) {
                size_t bytes = sizeof(double) * (size_t)ref_size(ref, id);
                leaf0[id] = util_realloc(NULL, bytes);
                memcpy(leaf0[id], ref->val[id], bytes);
            }
        ref_run(ref, NULL);
        check_backend(cs, ref, leaf0);
        for (int id = 0; id < g->nnode; id++) free(leaf0[id]);
        free(leaf0);
    }
    free(fwd);
    ref_free(ref);
    arena_free(arena);
}

/* Convolution as nnc lowers it (im2col, then a GEMM with the [F, C, kh, kw] weight transposed) against
 * the direct seven-loop definition, on the reference, for each geometry (stride, padding,
 * dilation, odd sizes). */
static void check_conv_direct(void) {
    const Geom *geoms[] = {&G_SAME, &G_STRIDED, &G_DILATED};
    for (size_t t = 0; t < sizeof geoms / sizeof *geoms; t++) {
        const Geom *q = geoms[t];
        int64_t F = 3, OH = out_h(q), OW = out_w(q), K = q->C * q->kh * q->kw;
        Arena *arena = arena_new();
        Graph *g = ir_new(arena);
        int x = in_map(g, "x", q->H, q->W, q->C);
        int cols = win(g, OP_IM2COL, map3(OH, OW, K), x, -1, q);
        int wt = patch_weight(g, "w", F, q->C, q->kh * q->kw);
        int w = g->node[g->node[g->node[wt].in[0]].in[0]].in[0]; /* the [F, C kh kw] weight */
        int y = matmul(g, cols, wt, false, true);
        g->loss = ir_add1(g, OP_SUM, shape_scalar(), y, NOLOC);
        g->nforward = g->nnode;
        ir_verify(g, "conv_direct");
        RefState *ref = ref_new(g, ROWS);
        Rng rng;
        rng_seed(&rng, 5, t);
        fill(ref, &rng);
        ref_run(ref, NULL);
        double worst = 0;
        for (int64_t b = 0; b < ROWS; b++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++)
                    for (int64_t f = 0; f < F; f++) {
                        double s = 0;
                        for (int64_t c = 0; c < q->C; c++)
                            for (int64_t i = 0; i < q->kh; i++)
                                for (int64_t j = 0; j < q->kw; j++) {
                                    int64_t ih = oh * q->stride + i * q->dil - q->pt, iw = ow * q->stride + j * q->dil - q->pl;
                                    if (ih < 0 || ih >= q->H || iw < 0 || iw >= q->W) continue;
                                    s += ref->val[x][((b * q->H + ih) * q->W + iw) * q->C + c] * ref->val[w][f * K + (c * q->kh + i) * q->kw + j];
                                }
                        double got = ref->val[y][((b * OH + oh) * OW + ow) * F + f];
                        worst = fmax(worst, fabs(got - s));
                    }
        bool ok = worst < 1e-12;
        printf("%s conv_direct_%zu (%lldx%lld kernel, stride %lld, dilation %lld, %lldx%lld -> %lldx%lld): worst %.1e\n",
               ok ? "ok  " : "FAIL", t, (long long)q->kh, (long long)q->kw, (long long)q->stride, (long long)q->dil,
               (long long)q->H, (long long)q->W, (long long)OH, (long long)OW, worst);
        if (!ok) failures++;
        ref_free(ref);
        arena_free(arena);
    }
}

int main(int argc, char **argv) {
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc)
            device = argv[++i];
        else if (!strcmp(argv[i], "--fuse"))
            fuse = true;
        else
            only = argv[i];
    }
    if (!strcmp(device, "cuda")) { /* a real GPU: skip when there is none */
        char err[1024];
        Arena *a = arena_new();
        Graph *g = ir_new(a);
        int x = ir_input(g, "x", false, false, 0, shape_vec(1, true), NOLOC);
        g->loss = ir_add1(g, OP_SUM, shape_scalar(), x, NOLOC);
        g->nforward = g->nnode;
        programs_build(g);
        Device *d = device_open("cuda", plan_graph(a, g, 1, false), NULL, err, sizeof err);
        arena_free(a);
        if (!d) {
            printf("skipped: %s\n", err);
            return 77;
        }
        device_close(d);
    }
    int ncase = (int)(sizeof cases / sizeof *cases), ran = 0;
    for (int i = 0; i < ncase; i++) {
        if (only && !strstr(cases[i].name, only)) continue;
        int before = failures;
        run_case(&cases[i], 1000 + (uint64_t)i);
        printf("%s %s\n", failures == before ? "ok  " : "FAIL", cases[i].name);
        ran++;
    }
    if (!only && !fuse) {
        for (int op = 0; op < OP_COUNT; op++) {
            if (op_info[op].cls == OC_LEAF) continue;
            if (!compared[op]) {
                printf("FAIL coverage: op '%s' was never compared between %s and the reference\n", op_info[op].name, device);
                failures++;
            }
            bool differentiable = op_info[op].cls != OC_UPDATE && !op_has((Op)op, OF_NOGRAD) && !strstr(op_info[op].name, "_grad");
            if (differentiable && !fd_checked[op] && !strcmp(device, "cpu")) {
                printf("FAIL coverage: op '%s' has no finite-difference gradient check\n", op_info[op].name);
                failures++;
            }
        }
    }
    if (!only) check_conv_direct();
    printf("%d cases, %d failures\n", ran, failures);
    return failures ? 1 : 0;
}
