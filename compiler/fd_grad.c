/* fd_grad.c: input-gradients by finite differences, and their cosine diversity, as graph IR
 * (workload 4, LUNA).  Called by lower.c for `fd_grad(heads, x, eps, method)` and the loss
 * `cosine_diversity(g)`.
 *
 * fd_grad evaluates the heads at K points per sample (fd_perturb: x +- eps e_d, or x and
 * x +- eps e_d) by cloning the forward nodes between x and the heads with one more per-sample
 * dimension, [K, ...]: a dense layer becomes a GEMM whose rows are B K, an activation maps
 * K times as many elements, and the weights are the same nodes.  fd_diff turns the heads'
 * values [K, M] into the gradient [M, D].  Everything is an ordinary op with a gradient rule,
 * so the result is differentiable by the weights (and autodiff stays closed).  Layers that mix
 * rows or draw random numbers per element (batch statistics, convolutions over [H, W, C],
 * dropout) cannot be evaluated at the extra points; they are refused, located. */
#include <stdlib.h>

#include "fd_grad.h"

/* s with a leading per-sample dimension k. */
static bool with_points(Shape s, int64_t k, Shape *out) {
    if (s.rank + 1 > IR_MAX_RANK) return false;
    Shape r = s;
    r.rank = s.rank + 1;
    r.dim[0] = k;
    for (int d = 0; d < s.rank; d++) r.dim[d + 1] = s.dim[d];
    *out = r;
    return true;
}

/* Why node n (which depends on x) cannot be evaluated at fd_grad's points, or NULL. */
static const char *unclonable(const Graph *g, const Node *n, const int *clone) {
    switch (n->op) {
    case OP_DROPOUT: return "dropout (every point would draw its own mask)";
    case OP_BATCH_MEAN: return "a mean over the batch";
    default: break;
    }
    switch (op_info[n->op].cls) {
    case OC_MAP: case OC_VIEW: break;
    case OC_GEMM:
        if (n->attr[0] != 0 || clone[n->in[1]] >= 0 || g->node[n->in[1]].shape.batched) return "a product of two data-dependent values";
        break;
    case OC_WINDOW: return "a convolution or pooling layer";
    case OC_COLSUM: return "statistics over the batch (batch_norm)";
    case OC_ROW: return "a reduction over each sample's values (layer_norm, softmax)";
    default: return "an op that cannot take an extra dimension of points";
    }
    for (int i = 0; i < n->nin; i++) /* a batched operand not computed from x: another input, per-row noise */
        if (clone[n->in[i]] < 0 && g->node[n->in[i]].shape.batched) return "a value of the batch that does not come from the input";
    return NULL;
}

int fd_grad_lower(Graph *g, int heads, int x, double eps, int method, SrcLoc loc, Diag *diag) {
    int64_t D = g->node[x].shape.dim[0], M = g->node[heads].shape.dim[0], K = method == 0 ? 2 * D : D + 1;
    NNC_ASSERT(g->node[x].op == OP_INPUT && g->node[x].shape.rank == 1 && g->node[heads].shape.rank == 1 && x < heads);
    /* the nodes between x and the heads: they depend on x, and the heads on them */
    bool *dep = util_calloc((size_t)heads + 1, sizeof(bool)), *need = util_calloc((size_t)heads + 1, sizeof(bool));
    dep[x] = true;
    for (int id = x + 1; id <= heads; id++)
        for (int i = 0; i < g->node[id].nin; i++) dep[id] |= dep[g->node[id].in[i]];
    need[heads] = true;
    for (int id = heads; id > x; id--)
        if (need[id])
            for (int i = 0; i < g->node[id].nin; i++) need[g->node[id].in[i]] = true;
    int *clone = util_calloc((size_t)heads + 1, sizeof(int));
    for (int id = 0; id <= heads; id++) clone[id] = -1;
    Shape ps;
    with_points(g->node[x].shape, K, &ps);
    clone[x] = ir_add1(g, OP_FD_PERTURB, ps, x, loc);
    g->node[clone[x]].attr[0] = eps;
    g->node[clone[x]].attr[1] = method;
    int result = -1;
    for (int id = x + 1; id <= heads; id++) {
        if (!dep[id] || !need[id]) continue;
        Node src = g->node[id]; /* a copy: g->node moves as nodes are added */
        const char *why = unclonable(g, &src, clone);
        Shape s;
        if (!why && !with_points(src.shape, K, &s)) why = "a tensor of too many dimensions";
        if (why) {
            diag_error(diag, loc, "fd_grad cannot evaluate its heads at the points around the input: they go through %s", why);
            if (src.loc.line > 0) diag_note(diag, src.loc, "that is here");
            goto done;
        }
        int in[IR_MAX_IN];
        for (int i = 0; i < src.nin; i++) in[i] = clone[src.in[i]] >= 0 ? clone[src.in[i]] : src.in[i];
        int c = ir_add(g, src.op, src.dtype, s, in, src.nin, src.loc);
        for (int a = 0; a < IR_MAX_ATTR; a++) g->node[c].attr[a] = src.attr[a];
        g->node[c].name = src.name;
        clone[id] = c;
    }
    result = ir_add1(g, OP_FD_DIFF, (Shape){.rank = 2, .dim = {M, D}, .batched = true}, clone[heads], loc);
    g->node[result].attr[0] = eps;
    g->node[result].attr[1] = method;
done:
    free(dep);
    free(need);
    free(clone);
    return result;
}

/* Per-sample helpers over [B, M, ...] values. */
static int axis_op(Graph *g, Op op, Shape s, int x, int axis, SrcLoc loc) {
    int id = ir_add1(g, op, s, x, loc);
    g->node[id].attr[0] = axis;
    return id;
}
/* sum over the batch of x, over B: a scalar */
static int batch_total(Graph *g, int x, SrcLoc loc) {
    return ir_add1(g, OP_SUM, shape_scalar(), ir_add1(g, OP_BATCH_MEAN, g->node[x].shape, x, loc), loc);
}
static int square(Graph *g, int x, SrcLoc loc) { return ir_add2(g, OP_MUL, g->node[x].shape, x, x, loc); }

int cosine_diversity_lower(Graph *g, int grads, double eps, bool graph, bool squared, SrcLoc loc) {
    Shape gs = g->node[grads].shape;
    int64_t M = gs.dim[0], D = gs.dim[1];
    Shape heads = shape_vec(M, true), point = shape_vec(D, true), row = {.rank = 0, .batched = true};
    Shape outer = {.rank = 3, .dim = {M, D, D}, .batched = true}, dd = {.rank = 2, .dim = {D, D}, .batched = true};
    NNC_ASSERT(gs.batched && gs.rank == 2 && M >= 2);
    /* each head's unit vector n_m: u_m = g_m r_m, r_m = 1 / sqrt(|g_m|^2 + c), and with `graph` the
     * extra coordinate r_m (the normal (g_m, 1) of the head's graph, c = 1); else c = eps^2 */
    int norm2 = axis_op(g, OP_AXIS_SUM, heads, square(g, grads, loc), 1, loc);
    int r = ir_add1(g, OP_RSQRT, heads, ir_add2(g, OP_ADD, heads, norm2, ir_const(g, graph ? 1 : eps * eps, loc), loc), loc);
    int spread = axis_op(g, OP_AXIS_BROADCAST, gs, r, 1, loc), unit = ir_add2(g, OP_MUL, gs, grads, spread, loc);
    int all, self;
    if (!squared) {
        /* sum over pairs m != m' of n_m . n_m' = |sum_m n_m|^2 - sum_m |n_m|^2 */
        all = batch_total(g, square(g, axis_op(g, OP_AXIS_SUM, point, unit, 0, loc), loc), loc);
        self = batch_total(g, square(g, unit, loc), loc);
        if (graph) {
            all = ir_add2(g, OP_ADD, shape_scalar(), all, batch_total(g, square(g, axis_op(g, OP_AXIS_SUM, row, r, 0, loc), loc), loc), loc);
            self = ir_add2(g, OP_ADD, shape_scalar(), self, batch_total(g, square(g, r, loc), loc), loc);
        }
    } else {
        /* sum over pairs of (n_m . n_m')^2 = |C|_F^2 - sum_m |n_m|^4, C = sum_m n_m n_m^T: its [D, D]
         * block of u u^T, with `graph` the column sum_m u_m r_m (twice) and the corner sum_m r_m^2 */
        int left = axis_op(g, OP_AXIS_BROADCAST, outer, unit, 2, loc), right = axis_op(g, OP_AXIS_BROADCAST, outer, unit, 1, loc);
        int c = axis_op(g, OP_AXIS_SUM, dd, ir_add2(g, OP_MUL, outer, left, right, loc), 0, loc);
        all = batch_total(g, square(g, c, loc), loc);
        int len2 = axis_op(g, OP_AXIS_SUM, heads, square(g, unit, loc), 1, loc); /* |u_m|^2 */
        if (graph) {
            int r2 = square(g, r, loc);
            int side = axis_op(g, OP_AXIS_SUM, point, ir_add2(g, OP_MUL, gs, unit, spread, loc), 0, loc);
            int corner = axis_op(g, OP_AXIS_SUM, row, r2, 0, loc);
            all = ir_add2(g, OP_ADD, shape_scalar(), all,
                          ir_add2(g, OP_ADD, shape_scalar(), ir_add2(g, OP_MUL, shape_scalar(), ir_const(g, 2, loc), batch_total(g, square(g, side, loc), loc), loc),
                                  batch_total(g, square(g, corner, loc), loc), loc), loc);
            len2 = ir_add2(g, OP_ADD, heads, len2, r2, loc);
        }
        self = batch_total(g, square(g, len2, loc), loc);
    }
    int pairs = ir_add2(g, OP_SUB, shape_scalar(), all, self, loc);
    return ir_add2(g, OP_MUL, shape_scalar(), pairs, ir_const(g, 1.0 / (double)(M * (M - 1)), loc), loc);
}
