/* second_order_test.c: autodiff is closed (CTest ops.second_order).  For small models that
 * together use every op autodiff emits, the gradient G1 = dL/dw is built by autodiff_graph;
 * then autodiff_vjp differentiates L2 = sum_w <G1_w, r_w> for a fixed random direction r,
 * giving G2 = H r, the Hessian-vector product; and once more, L3 = sum_w <G2_w, r_w>, giving
 * G3.  Each level k+1 is compared, in double precision on the reference interpreter, with
 * central finite differences of level k along r:
 *     (G_k(w + h r) - G_k(w - h r)) / 2h  =  G_{k+1}(w).
 * A missing rule aborts (NNC_BUG) and fails the test; a wrong rule fails the comparison.
 * Coverage: every derivative op of ops.def (every op whose name ends in "_grad") must appear
 * in some case's first backward pass, so each has been differentiated. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fd_grad.h"
#include "lower.h"
#include "ref.h"
#include "rng.h"

enum { ROWS = 3, N = 4, H = 5, C = 3, LEVELS = 3 };
static const SrcLoc NOLOC = {0};
static bool emitted[OP_COUNT]; /* ops found in a first backward pass */
static int failures;

/* ---- building blocks ---- */
static int input(Graph *g, const char *name, int64_t n) { return ir_input(g, name, false, false, 0, shape_vec(n, true), NOLOC); }
static int labels(Graph *g) { return ir_input(g, "label", true, true, C, (Shape){.rank = 0, .batched = true}, NOLOC); }
static int weight(Graph *g, const char *name, Shape s) { return ir_weight(g, name, W_PARAM, s, INIT_ZERO, NOLOC); }
static Shape vec(int64_t n) { return shape_vec(n, false); }
static Shape mat(int64_t r, int64_t c) { return (Shape){.rank = 2, .dim = {r, c}}; }
static Shape bvec(int64_t n) { return shape_vec(n, true); }
static int un(Graph *g, Op op, int a, double attr) {
    int id = ir_add1(g, op, g->node[a].shape, a, NOLOC);
    g->node[id].attr[0] = attr;
    return id;
}
static int bin(Graph *g, Op op, Shape s, int a, int b) { return ir_add2(g, op, s, a, b, NOLOC); }
static int scalar_of(Graph *g, Op op, int a) { return ir_add1(g, op, shape_scalar(), a, NOLOC); }
/* x[B,in] -> dense(out): x w^T + b */
static int dense(Graph *g, int x, int64_t in, int64_t out, const char *w, const char *b) {
    int mm = bin(g, OP_MATMUL, bvec(out), x, weight(g, w, mat(out, in)));
    g->node[mm].attr[1] = 1;
    return bin(g, OP_BIAS_ADD, bvec(out), mm, weight(g, b, vec(out)));
}

/* ---- cases: each returns the scalar loss ---- */
typedef struct {
    const char *name;
    Op act;       /* activation of the hidden layer */
    double alpha; /* its attribute */
    int loss;     /* 0 cross entropy + L1 penalty on the gate, 1 mse, 2 mse against one value per row,
                     3 a convolutional network pooled by `act`, 4 normalisations, 5 priors and a
                     learned noise scale, 6 LUNA: heads fitted, their input-gradients by finite
                     differences made diverse */
} Case;

static int build(Graph *g, const Case *cs) {
    int x = input(g, "x", N);
    int h = dense(g, x, N, H, "w1", "b1");
    if (cs->act == OP_PRELU)
        h = bin(g, OP_PRELU, bvec(H), h, weight(g, "a", vec(H)));
    else
        h = un(g, cs->act, h, cs->alpha);
    int gate = weight(g, "g", vec(H));
    h = bin(g, OP_GATE, bvec(H), h, gate);
    if (cs->loss == 0) {
        int z = dense(g, h, H, C, "w2", "b2");
        int ce = bin(g, OP_CROSS_ENTROPY, shape_scalar(), z, labels(g));
        int pen = bin(g, OP_MUL, shape_scalar(), ir_const(g, 0.05, NOLOC), scalar_of(g, OP_L1, gate));
        return bin(g, OP_ADD, shape_scalar(), ce, pen);
    }
    int y = dense(g, h, H, cs->loss == 1 ? C : 1, "w2", "b2");
    return bin(g, OP_MSE, shape_scalar(), y, input(g, "t", cs->loss == 1 ? C : 1));
}

/* size gate, softmax, exp, division and batch_mean in the forward pass */
static int build_misc(Graph *g, const Case *cs) {
    int x = input(g, "x", N);
    int f = ir_add1(g, OP_SIZE_GATE_FACTOR, vec(N), weight(g, "b", shape_scalar()), NOLOC);
    g->node[f].attr[0] = 1.5;
    g->node[f].attr[1] = 2;
    int h = bin(g, OP_GATE, bvec(N), dense(g, x, N, N, "w1", "b1"), f);
    int p = ir_add1(g, OP_SOFTMAX, bvec(N), h, NOLOC);
    int e = un(g, OP_EXP, bin(g, OP_DIV, bvec(N), p, weight(g, "s", shape_scalar())), 0);
    int m = un(g, OP_BATCH_MEAN, e, 0);
    int loss = bin(g, OP_MSE, shape_scalar(), m, input(g, "t", N));
    int pen = bin(g, OP_MUL, shape_scalar(), ir_const(g, 0.3, NOLOC), scalar_of(g, OP_SUM, f));
    (void)cs;
    return bin(g, OP_ADD, shape_scalar(), loss, pen);
}

/* normalisations as lower.c writes them: per column over the batch, in training (batch_norm:
 * colsum, train_select against running averages, rsqrt), then per row (layer_norm: rowsum and
 * a per-row value broadcast), then tanh, dense, cross entropy */
static int build_norms(Graph *g, const Case *cs) {
    Shape row = {.rank = 0, .batched = true};
    int h = dense(g, input(g, "x", N), N, H, "w1", "b1");
    int train = ir_scalar(g, "mode.train", SC_TRAIN, 1, NOLOC);
    int mean = bin(g, OP_MUL, vec(H), ir_add1(g, OP_COLSUM, vec(H), un(g, OP_BATCH_MEAN, h, 0), NOLOC), ir_const(g, 1, NOLOC));
    mean = ir_add3(g, OP_TRAIN_SELECT, vec(H), mean, ir_weight(g, "rm", W_STAT, vec(H), INIT_ZERO, NOLOC), train, NOLOC);
    int c = bin(g, OP_BIAS_ADD, bvec(H), h, un(g, OP_NEG, mean, 0));
    int var = ir_add1(g, OP_COLSUM, vec(H), un(g, OP_BATCH_MEAN, bin(g, OP_MUL, bvec(H), c, c), 0), NOLOC);
    var = ir_add3(g, OP_TRAIN_SELECT, vec(H), var, ir_weight(g, "rv", W_STAT, vec(H), INIT_ONE, NOLOC), train, NOLOC);
    int r = un(g, OP_RSQRT, bin(g, OP_ADD, vec(H), var, ir_const(g, 0.1, NOLOC)), 0);
    int y = bin(g, OP_GATE, bvec(H), bin(g, OP_GATE, bvec(H), c, r), weight(g, "scale", vec(H)));
    int mu = bin(g, OP_MUL, row, ir_add1(g, OP_ROWSUM, row, y, NOLOC), ir_const(g, 1.0 / H, NOLOC));
    int c2 = bin(g, OP_SUB, bvec(H), y, mu);
    int var2 = bin(g, OP_MUL, row, ir_add1(g, OP_ROWSUM, row, bin(g, OP_MUL, bvec(H), c2, c2), NOLOC), ir_const(g, 1.0 / H, NOLOC));
    int z = bin(g, OP_MUL, bvec(H), c2, un(g, OP_RSQRT, bin(g, OP_ADD, row, var2, ir_const(g, 0.1, NOLOC)), 0));
    (void)cs;
    return bin(g, OP_CROSS_ENTROPY, shape_scalar(), dense(g, un(g, OP_TANH, z, 0), H, C, "w2", "b2"), labels(g));
}

/* a Bayesian regression net as lower.c writes it: gaussian_nll with a learned sigma
 * (softplus, log), and log priors on the weights (Student's t, Laplace, normal; each weight
 * scaled, the Laplace one shifted) */
static int build_priors(Graph *g, const Case *cs) {
    Shape sc = shape_scalar();
    int w1 = weight(g, "w1", mat(H, N)), w2 = weight(g, "w2", mat(1, H)), b1 = weight(g, "b1", vec(H));
    int mm = bin(g, OP_MATMUL, bvec(H), input(g, "x", N), w1);
    g->node[mm].attr[1] = 1;
    int h = un(g, OP_TANH, bin(g, OP_BIAS_ADD, bvec(H), mm, b1), 0);
    int y = bin(g, OP_MATMUL, bvec(1), h, w2);
    g->node[y].attr[1] = 1;
    int sigma = un(g, OP_SOFTPLUS, weight(g, "s", sc), 0);
    int z = bin(g, OP_DIV, bvec(1), bin(g, OP_SUB, bvec(1), y, input(g, "t", 1)), sigma);
    int lik = scalar_of(g, OP_SUM, un(g, OP_BATCH_MEAN, un(g, OP_LOGP_NORMAL, z, 0), 0));
    int nll = bin(g, OP_SUB, sc, scalar_of(g, OP_LOG, sigma), lik);
    int p1 = scalar_of(g, OP_SUM, un(g, OP_LOGP_STUDENT_T, bin(g, OP_DIV, mat(H, N), w1, ir_const(g, 0.7, NOLOC)), 3));
    int p2 = scalar_of(g, OP_SUM, un(g, OP_LOGP_LAPLACE, bin(g, OP_SUB, mat(1, H), w2, ir_const(g, 0.1, NOLOC)), 0));
    int p3 = scalar_of(g, OP_SUM, un(g, OP_LOGP_NORMAL, bin(g, OP_DIV, vec(H), b1, ir_const(g, 2, NOLOC)), 0));
    int cauchy = scalar_of(g, OP_SUM, un(g, OP_LOGP_STUDENT_T, b1, 1));
    int prior = bin(g, OP_ADD, sc, bin(g, OP_ADD, sc, p1, p2), bin(g, OP_ADD, sc, p3, cauchy));
    (void)cs;
    return bin(g, OP_SUB, sc, nll, bin(g, OP_MUL, sc, ir_const(g, 0.1, NOLOC), prior));
}

/* a convolution (im2col + GEMM with the transposed weight, padding 1), per-channel bias and gate, then max or average
 * pooling (3x3 windows, stride 2: they overlap), flatten, dense, cross entropy */
static Shape map3(int64_t h, int64_t w, int64_t c) { return (Shape){.rank = 3, .dim = {h, w, c}, .batched = true}; }
static int window(Graph *g, Op op, Shape s, int a, double kh, double kw, double stride, double pad) {
    int id = ir_add1(g, op, s, a, NOLOC);
    double at[6] = {kh, kw, stride, 1, pad, pad};
    memcpy(g->node[id].attr, at, sizeof at);
    return id;
}
static int build_conv(Graph *g, const Case *cs) {
    int x = ir_input(g, "x", false, false, 0, map3(5, 5, 2), NOLOC);
    int cols = window(g, OP_IM2COL, map3(5, 5, 18), x, 3, 3, 1, 1);
    /* the weight [3, 2, 3x3] in the patches' order, as lower.c reads it: transposed */
    int w1 = ir_add1(g, OP_RESHAPE, (Shape){.rank = 3, .dim = {3, 2, 9}}, weight(g, "w1", mat(3, 18)), NOLOC);
    w1 = ir_add1(g, OP_TRANSPOSE, (Shape){.rank = 3, .dim = {3, 9, 2}}, w1, NOLOC);
    int mm = bin(g, OP_MATMUL, map3(5, 5, 3), cols, ir_add1(g, OP_RESHAPE, mat(3, 18), w1, NOLOC));
    g->node[mm].attr[1] = 1;
    int h = bin(g, OP_BIAS_ADD, map3(5, 5, 3), mm, weight(g, "b1", vec(3)));
    h = bin(g, OP_GATE, map3(5, 5, 3), un(g, OP_TANH, h, 0), weight(g, "g", vec(3)));
    h = window(g, cs->act, map3(2, 2, 3), h, 3, 3, 2, 0);
    h = ir_add1(g, OP_RESHAPE, bvec(12), h, NOLOC);
    return bin(g, OP_CROSS_ENTROPY, shape_scalar(), dense(g, h, 12, C, "w2", "b2"), labels(g));
}

/* LUNA's loss as lower.c writes it: every head's mse against one target value per row, plus
 * the cosine diversity of the heads' input-gradients by central differences (fd_grad.c) */
static int build_luna(Graph *g, const Case *cs) {
    int x = input(g, "x", N);
    int heads = dense(g, un(g, cs->act, dense(g, x, N, H, "w1", "b1"), 0), H, C, "w2", "b2");
    int fit = bin(g, OP_MSE, shape_scalar(), heads, input(g, "t", 1));
    int grads = fd_grad_lower(g, heads, x, 0.05, 0, NOLOC, NULL);
    int div = cosine_diversity_lower(g, grads, 1e-3, false, false, NOLOC); /* plain, and of the graphs' normals squared */
    div = bin(g, OP_ADD, shape_scalar(), div, cosine_diversity_lower(g, grads, 1e-3, true, true, NOLOC));
    return bin(g, OP_ADD, shape_scalar(), fit, bin(g, OP_MUL, shape_scalar(), ir_const(g, 0.5, NOLOC), div));
}

static const Case cases[] = {
    {"relu_ce", OP_RELU, 0, 0},         {"leaky_relu_ce", OP_LEAKY_RELU, 0.1, 0}, {"elu_ce", OP_ELU, 0.7, 0},
    {"tanh_ce", OP_TANH, 0, 0},         {"sigmoid_mse", OP_SIGMOID, 0, 1},       {"softplus_mse", OP_SOFTPLUS, 0, 1},
    {"gelu_ce", OP_GELU, 0, 0},         {"prelu_mse_heads", OP_PRELU, 0, 2},     {"tanh_mse_heads", OP_TANH, 0, 2},
    {"misc", OP_COUNT, 0, 0},           {"conv_maxpool", OP_MAXPOOL, 0, 3},      {"conv_avgpool", OP_AVGPOOL, 0, 3},
    {"norms", OP_RSQRT, 0, 4},          {"priors", OP_LOGP_STUDENT_T, 0, 5},     {"luna", OP_TANH, 0, 6},
};

/* ---- values ---- */
static double draw(Rng *r) {
    double v = 0.2 + rng_uniform(r);
    return rng_next(r) & 1 ? v : -v;
}

/* G_level for every weight, evaluated at the current values (the whole graph is run). */
static void evaluate(RefState *ref, double **out, const int *gk, const int *wnode, int nw) {
    ref_run(ref, NULL);
    for (int k = 0; k < nw; k++)
        memcpy(out[k], ref->val[gk[k]], sizeof(double) * (size_t)ref_size(ref, wnode[k]));
}

static void run_case(const Case *cs) {
    Arena *arena = arena_new();
    Graph *g = ir_new(arena);
    g->loss = cs->act == OP_COUNT ? build_misc(g, cs) : cs->loss == 3 ? build_conv(g, cs) : cs->loss == 4 ? build_norms(g, cs) : cs->loss == 5 ? build_priors(g, cs) : cs->loss == 6 ? build_luna(g, cs) : build(g, cs);
    int nfwd = g->nnode;
    autodiff_graph(g);
    for (int id = nfwd; id < g->nnode; id++) emitted[g->node[id].op] = true;
    /* levels: grad[level][k] is the node of G_level for weight k */
    int wnode[16], nw = 0, grad[LEVELS + 1][16], dir[16];
    for (int i = 0; i < g->nweight; i++)
        if (g->weight[i].kind == W_PARAM) {
            wnode[nw] = g->weight[i].node;
            grad[1][nw++] = g->weight[i].grad;
        }
    for (int k = 0; k < nw; k++) { /* the direction r, a constant of the graph */
        char name[64];
        snprintf(name, sizeof name, "r.%s", g->weight[g->node[wnode[k]].ref].name);
        dir[k] = ir_weight(g, name, W_STATE, g->node[wnode[k]].shape, INIT_ZERO, NOLOC);
    }
    for (int level = 1; level < LEVELS; level++) {
        int total = -1;
        for (int k = 0; k < nw; k++) {
            if (grad[level][k] < 0) continue;
            Shape s = g->node[wnode[k]].shape;
            int dot = scalar_of(g, OP_SUM, bin(g, OP_MUL, s, grad[level][k], dir[k]));
            total = total < 0 ? dot : bin(g, OP_ADD, shape_scalar(), total, dot);
        }
        autodiff_vjp(g, total, wnode, nw, grad[level + 1]);
    }
    RefState *ref = ref_new(g, ROWS);
    Rng rng;
    rng_seed(&rng, 7, 1);
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        if (n->op != OP_INPUT && n->op != OP_WEIGHT) continue;
        bool label = n->op == OP_INPUT && g->input[n->ref].is_class;
        for (int64_t i = 0; i < ref_size(ref, id); i++)
            ref->val[id][i] = label ? (double)rng_below(&rng, C) : draw(&rng);
    }
    double *val[LEVELS + 1][16], *plus[16], *minus[16], *w0[16];
    for (int k = 0; k < nw; k++) {
        size_t sz = (size_t)ref_size(ref, wnode[k]);
        for (int l = 1; l <= LEVELS; l++) val[l][k] = util_calloc(sz, sizeof(double));
        plus[k] = util_calloc(sz, sizeof(double));
        minus[k] = util_calloc(sz, sizeof(double));
        w0[k] = util_calloc(sz, sizeof(double));
        memcpy(w0[k], ref->val[wnode[k]], sz * sizeof(double));
    }
    for (int l = 1; l <= LEVELS; l++) {
        bool all = true;
        for (int k = 0; k < nw; k++) all &= grad[l][k] >= 0;
        if (!all) {
            printf("FAIL %s: level %d: a weight has no gradient node\n", cs->name, l);
            failures++;
            goto done;
        }
        evaluate(ref, val[l], grad[l], wnode, nw);
    }
    const double h = 1e-5;
    for (int l = 1; l < LEVELS; l++) {
        for (int sign = 1; sign >= -1; sign -= 2) {
            for (int k = 0; k < nw; k++)
                for (int64_t i = 0; i < ref_size(ref, wnode[k]); i++)
                    ref->val[wnode[k]][i] = w0[k][i] + sign * h * ref->val[dir[k]][i];
            evaluate(ref, sign > 0 ? plus : minus, grad[l], wnode, nw);
        }
        for (int k = 0; k < nw; k++) memcpy(ref->val[wnode[k]], w0[k], sizeof(double) * (size_t)ref_size(ref, wnode[k]));
        double worst = 0, scale = 0;
        for (int k = 0; k < nw; k++)
            for (int64_t i = 0; i < ref_size(ref, wnode[k]); i++) scale = fmax(scale, fabs(val[l + 1][k][i]));
        for (int k = 0; k < nw; k++)
            for (int64_t i = 0; i < ref_size(ref, wnode[k]); i++) {
                double fd = (plus[k][i] - minus[k][i]) / (2 * h), an = val[l + 1][k][i];
                double err = fabs(fd - an) / (1e-3 + scale);
                if (err > worst) worst = err;
                if (err > 1e-6) {
                    printf("FAIL %s: level %d, %s[%lld]: autodiff %.12g, finite differences of level %d %.12g\n", cs->name,
                           l + 1, g->weight[g->node[wnode[k]].ref].name, (long long)i, an, l, fd);
                    failures++;
                    goto done;
                }
            }
        printf("ok   %-16s level %d vs finite differences of level %d: worst %.2e (of max |G| %.3g)\n", cs->name, l + 1, l,
               worst, scale);
    }
done:
    for (int k = 0; k < nw; k++) {
        for (int l = 1; l <= LEVELS; l++) free(val[l][k]);
        free(plus[k]);
        free(minus[k]);
        free(w0[k]);
    }
    ref_free(ref);
    arena_free(arena);
}

int main(void) {
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) run_case(&cases[c]);
    for (int op = 0; op < OP_COUNT; op++) {
        const char *name = op_info[op].name;
        size_t len = strlen(name);
        if (len > 5 && !strcmp(name + len - 5, "_grad") && !emitted[op]) {
            printf("FAIL coverage: '%s' never appears in a backward pass, so its rule is untested\n", name);
            failures++;
        }
    }
    printf("%zu cases, %d failures\n", sizeof cases / sizeof *cases, failures);
    return failures != 0;
}
