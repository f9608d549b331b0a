/* fd_grad_test.c: fd_grad and cosine_diversity (compiler/fd_grad.c) against exact derivatives,
 * in double precision on the reference interpreter (CTest ops.fd_grad).
 *  1. A smooth network x [B, 3] -> dense(5) -> tanh -> dense(4 heads): fd_grad's gradients,
 *     projected on a random r [B, 4] (sum_m r_m G_m, [B, 3]), against autodiff's exact
 *     input-gradient of sum(r * heads), for eps = 1e-2 and 1e-3 and each method.  The error
 *     is the differences' truncation error: it must be small and shrink as eps^2 (central)
 *     or eps (forward, backward) from one eps to the other.
 *  2. cosine_diversity, plain and of the graphs' normals, of cosines and of their squares: its
 *     value against the pairwise cosines written out, and its gradient by its input against
 *     central finite differences, with a head whose gradient is near 0 (norm 3e-5, against
 *     eps = 1e-4), where it must stay finite and right.
 * (The float kernels are compared with the reference op by op in ops.gradients_and_llvm.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "fd_grad.h"
#include "lower.h"
#include "ref.h"
#include "rng.h"

enum { ROWS = 3, D = 3, H = 5, M = 4 };
static const SrcLoc NOLOC = {0};
static int failures;

static int weight(Graph *g, const char *name, Shape s) { return ir_weight(g, name, W_PARAM, s, INIT_ZERO, NOLOC); }
static Shape bvec(int64_t n) { return shape_vec(n, true); }
static int dense(Graph *g, int x, int64_t in, int64_t out, const char *w, const char *b) {
    int mm = ir_add2(g, OP_MATMUL, bvec(out), x, weight(g, w, (Shape){.rank = 2, .dim = {out, in}}), NOLOC);
    g->node[mm].attr[1] = 1;
    return ir_add2(g, OP_BIAS_ADD, bvec(out), mm, weight(g, b, shape_vec(out, false)), NOLOC);
}

static void fill(RefState *ref, const Graph *g, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 1);
    for (int id = 0; id < g->nnode; id++)
        if (g->node[id].op == OP_INPUT || g->node[id].op == OP_WEIGHT)
            for (int64_t i = 0; i < ref_size(ref, id); i++) ref->val[id][i] = 2 * rng_uniform(&rng) - 1;
}

/* The largest |projected fd_grad - exact| over the batch, for one eps and method. */
static double fd_error(double eps, int method) {
    Arena *arena = arena_new();
    Graph *g = ir_new(arena);
    int x = ir_input(g, "x", false, false, 0, bvec(D), NOLOC);
    int r = ir_input(g, "r", false, false, 0, bvec(M), NOLOC);
    int hid = dense(g, x, D, H, "w1", "b1");
    int heads = dense(g, ir_add1(g, OP_TANH, bvec(H), hid, NOLOC), H, M, "w2", "b2");
    int grad = fd_grad_lower(g, heads, x, eps, method, NOLOC, NULL);
    Shape gs = {.rank = 2, .dim = {M, D}, .batched = true};
    int rb = ir_add1(g, OP_AXIS_BROADCAST, gs, r, NOLOC);
    g->node[rb].attr[0] = 1;
    int proj = ir_add1(g, OP_AXIS_SUM, bvec(D), ir_add2(g, OP_MUL, gs, grad, rb, NOLOC), NOLOC); /* sum over heads */
    int root = ir_add1(g, OP_SUM, shape_scalar(), ir_add2(g, OP_MUL, bvec(M), heads, r, NOLOC), NOLOC);
    int exact;
    autodiff_vjp(g, root, &x, 1, &exact);
    ir_verify(g, "fd_grad_test");
    RefState *ref = ref_new(g, ROWS);
    fill(ref, g, 11);
    ref_run(ref, NULL);
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < ROWS * D; i++) {
        worst = fmax(worst, fabs(ref->val[proj][i] - ref->val[exact][i]));
        scale = fmax(scale, fabs(ref->val[exact][i]));
    }
    ref_free(ref);
    arena_free(arena);
    return worst / scale;
}

static void check_fd(void) {
    static const char *const name[] = {"central", "forward", "backward"};
    for (int method = 0; method < 3; method++) {
        double e2 = fd_error(1e-2, method), e3 = fd_error(1e-3, method);
        double order = method == 0 ? 2 : 1, ratio = e2 / e3;
        /* truncation error ~ eps^order: a ratio of 10^order between the two eps, within a factor of 2 */
        bool ok = e3 < (method == 0 ? 1e-6 : 1e-2) && ratio > pow(10, order) / 2 && ratio < pow(10, order) * 2;
        printf("%s fd_grad %-8s relative error vs autodiff: eps 1e-2 %.3e, eps 1e-3 %.3e (ratio %.1f, expected %.0f)\n",
               ok ? "ok  " : "FAIL", name[method], e2, e3, ratio, pow(10, order));
        failures += !ok;
    }
}

/* The mean over samples and pairs of heads of cos (or cos^2), written out. */
static double cosine_direct(const double *v, bool graph, bool squared) {
    double total = 0, eps = 1e-4;
    for (int b = 0; b < ROWS; b++)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < M; j++) {
                if (i == j) continue;
                const double *gi = v + (b * M + i) * D, *gj = v + (b * M + j) * D;
                double dot = graph ? 1 : 0, ni = graph ? 1 : eps * eps, nj = ni;
                for (int d = 0; d < D; d++) dot += gi[d] * gj[d], ni += gi[d] * gi[d], nj += gj[d] * gj[d];
                double c = dot / sqrt(ni * nj);
                total += squared ? c * c : c;
            }
    return total / (ROWS * M * (M - 1));
}

static void check_cosine(bool graph, bool squared) {
    Arena *arena = arena_new();
    Graph *g = ir_new(arena);
    Shape gs = {.rank = 2, .dim = {M, D}, .batched = true};
    int x = ir_input(g, "g", false, false, 0, gs, NOLOC);
    g->loss = cosine_diversity_lower(g, x, 1e-4, graph, squared, NOLOC);
    g->input_grads = true;
    autodiff_graph(g);
    ir_verify(g, "fd_grad_test");
    RefState *ref = ref_new(g, ROWS);
    fill(ref, g, 5);
    double *v = ref->val[x];
    for (int b = 0; b < ROWS; b++) /* head 1 of every sample: a gradient of norm about 3e-5 */
        for (int d = 0; d < D; d++) v[(b * M + 1) * D + d] = (d == 0 ? 2e-5 : -1.5e-5) * (b + 1);
    ref_run(ref, NULL);
    double direct = cosine_direct(v, graph, squared), value = ref->val[g->loss][0];
    int dx = g->input[0].grad;
    double worst = 0, scale = 0, h = 1e-9;
    for (int64_t i = 0; i < ROWS * M * D; i++) {
        double x0 = v[i];
        v[i] = x0 + h;
        ref_run(ref, NULL);
        double lp = ref->val[g->loss][0];
        v[i] = x0 - h;
        ref_run(ref, NULL);
        double lm = ref->val[g->loss][0];
        v[i] = x0;
        ref_run(ref, NULL);
        double fd = (lp - lm) / (2 * h), an = ref->val[dx][i];
        if (!isfinite(an)) worst = INFINITY;
        worst = fmax(worst, fabs(fd - an));
        scale = fmax(scale, fabs(an));
    }
    bool ok = isfinite(scale) && worst / scale < 1e-5 && fabs(value - direct) < 1e-12;
    printf("%s cosine_diversity%s%s: value %.12f (written out %.12f); gradient with a near-zero head: worst |autodiff - "
           "finite differences| %.3e of %.3e\n", ok ? "ok  " : "FAIL", graph ? ", graph" : "", squared ? ", squared" : "", value,
           direct, worst, scale);
    failures += !ok;
    ref_free(ref);
    arena_free(arena);
}

int main(void) {
    check_fd();
    for (int k = 0; k < 4; k++) check_cosine(k & 1, k & 2);
    printf("%d failures\n", failures);
    return failures != 0;
}
