/* opkernels.c: how each op is computed, as a loop kernel description (kernel.h).
 * One definition per op serves every backend; ref.c is written separately, in double
 * precision, as the oracle these definitions are tested against.  Elementwise math is
 * written so that no branch can produce a NaN the select would then hide: both sides of a
 * select are finite or the unused side is discarded, never multiplied by a 0/1 mask. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "elementwise.h"

#define C(v) kb_const(kb, (v))
#define U(op, a) kb_un(kb, KX_##op, (a))
#define B(op, a, b) kb_bin(kb, KX_##op, (a), (b))
#define SEL(c, a, b) kb_select(kb, (c), (a), (b))
#define LAST_INDEX kb_index(kb, kb->k->ndim - 1)   /* j: the column, neuron or class */
#define LAST_EXTENT kb_extent(kb, kb->k->ndim - 1) /* the number of columns */

/* Elementwise ops: the output value from the input values. */
static int map_expr(KBuilder *kb, const Node *n, const int *in) {
    int x = in[0], y = n->nin > 1 ? in[1] : -1, z = n->nin > 2 ? in[2] : -1; /* NOLINT */
    double alpha = n->attr[0];
    switch (n->op) {
    case OP_ADD: return B(ADD, x, y);
    case OP_SUB: return B(SUB, x, y);
    case OP_MUL:
    case OP_MATMUL: return B(MUL, x, y); /* matmul: an outer product x[B,1] w (ir_class) */
    case OP_DIV: return B(DIV, x, y);
    case OP_NEG: return U(NEG, x);
    case OP_BATCH_MEAN: return B(DIV, x, kb_rows(kb));
    case OP_DROPOUT: { /* x / (1 - p) where u >= p, else 0; x when not training */
        int u = kb_random(kb, in[2], in[3], in[4], (int)n->attr[1]);
        int kept = SEL(B(GE, u, C(alpha)), B(MUL, x, C(1 / (1 - alpha))), C(0));
        return SEL(y, kept, x);
    }
    case OP_NORMAL_NOISE: /* x is the train flag */
        return SEL(x, elem_normal_kx(kb, kb_random(kb, in[1], in[2], in[3], (int)n->attr[0])), C(0));
    case OP_BROADCAST: return x;
    case OP_TRAIN_SELECT: return SEL(z, x, y);
    case OP_BIAS_ADD: return B(ADD, x, y);
    case OP_GATE: return B(MUL, x, y);
    case OP_PRELU: return SEL(B(GT, x, C(0)), x, B(MUL, y, x));
    case OP_SIZE_GATE_FACTOR: return elem_sigmoid_kx(kb, B(MUL, C(alpha), B(SUB, B(MUL, C(n->attr[1]), x), LAST_INDEX)));
    /* gradients: x is dy, y is the forward input */
    case OP_PRELU_GRAD: return SEL(B(GT, y, C(0)), x, B(MUL, x, z));
    case OP_L1_GRAD: return SEL(B(GT, y, C(0)), x, SEL(B(LT, y, C(0)), U(NEG, x), C(0)));
    case OP_MSE_GRAD: {
        /* dl * 2 (a - b) / numel, numel = rows * cols */
        int scale = kb_per_element(kb, C(2));
        return B(MUL, B(MUL, x, scale), B(SUB, y, z));
    }
    default: {
        const ElemFn *f = elem_fn(n->op);
        if (!f) NNC_BUG("'%s' is not an elementwise op", op_info[n->op].name);
        return n->op == f->op ? f->kx(kb, x, alpha) : f->dkx(kb, x, y, alpha);
    }
    }
}


static int out_arg(KBuilder *kb, int node) { return kb_arg(kb, kb->plan->node_buf[node], false, true); }

/* Row reductions; in[] are the node's input values inside the kernel. */
static void build_row(KBuilder *kb, const Node *n, int node, const int *in, bool store) {
    if (n->op == OP_ROWSUM) {
        kb_out(kb, KO_STORE_ROW, out_arg(kb, node), kb_red(kb, KR_SUM, in[0]));
        return;
    }
    bool grad = n->op == OP_CROSS_ENTROPY_GRAD;
    int z = grad ? in[1] : in[0];
    int m = kb_red(kb, KR_MAX, z);
    if (n->op == OP_SOFTMAX) {
        int e = U(EXP, B(SUB, z, m));
        kb_out(kb, KO_STORE, out_arg(kb, node), B(DIV, e, kb_red(kb, KR_SUM, e)));
        return;
    }
    int label = grad ? in[2] : in[1];
    int is_label = B(EQ, LAST_INDEX, label);
    switch (n->op) {
    case OP_CROSS_ENTROPY: {
        int sum = kb_red(kb, KR_SUM, U(EXP, B(SUB, z, m)));
        int zl = kb_red(kb, KR_SUM, SEL(is_label, z, C(0)));
        int row = B(SUB, B(ADD, U(LOG, sum), m), zl);
        kb_out(kb, KO_SUM, out_arg(kb, node), B(DIV, row, kb_rows(kb)));
        break;
    }
    case OP_CROSS_ENTROPY_GRAD: {
        int e = U(EXP, B(SUB, z, m));
        int sum = kb_red(kb, KR_SUM, e);
        int p = B(DIV, e, sum);
        int d = B(SUB, p, SEL(is_label, C(1), C(0)));
        if (store) kb_out(kb, KO_STORE, out_arg(kb, node), B(MUL, B(DIV, in[0], kb_rows(kb)), d));
        break;
    }
    case OP_ACCURACY: {
        int first = kb_red(kb, KR_MIN, SEL(B(EQ, z, m), LAST_INDEX, LAST_EXTENT));
        kb_out(kb, KO_SUM, out_arg(kb, node), SEL(B(EQ, first, label), C(1), C(0)));
        break;
    }
    default: NNC_BUG("row op");
    }
}

/* The proximal step of an L1 penalty: sign(p) max(|p| - t, 0); none when t is the constant 0.
 * Adam's step is preconditioned by 1 / den per element, and so is its proximal step: t / den. */
static int shrink(KBuilder *kb, const Node *n, int p, int den) {
    const Node *t = &kb->plan->g->node[n->in[n->nin - 1]];
    if (t->op == OP_CONST && t->attr[0] == 0) return p;
    int thr = kb_node(kb, n->in[n->nin - 1]);
    if (den >= 0) thr = B(DIV, thr, den);
    int rest = B(SUB, U(ABS, p), thr);
    return SEL(B(GT, rest, C(0)), SEL(B(GT, p, C(0)), rest, U(NEG, rest)), C(0));
}

static void build_update(KBuilder *kb, const Node *n, int node) {
    int pa = kb_arg(kb, kb->plan->node_buf[n->in[0]], true, true);
    int p = kb_load_arg(kb, pa, IX_ELEM), gr = kb_node(kb, n->in[1]);
    kb_out(kb, KO_SUM, out_arg(kb, node), B(SUB, gr, gr)); /* 0, or NaN for a non-finite gradient */
    switch (n->op) {
    case OP_RUNNING_AVG: /* gr is the batch statistic */
        kb_out(kb, KO_STORE, pa, B(ADD, p, B(MUL, C(n->attr[0]), B(SUB, gr, p))));
        break;
    case OP_SGD: {
        int d = n->attr[2] != 0 ? B(ADD, gr, B(MUL, C(n->attr[2]), p)) : gr;
        kb_out(kb, KO_STORE, pa, shrink(kb, n, B(SUB, p, B(MUL, kb_node(kb, n->in[2]), d)), -1));
        break;
    }
    case OP_SGD_MOMENTUM: {
        double mom = n->attr[0];
        int d = n->attr[2] != 0 ? B(ADD, gr, B(MUL, C(n->attr[2]), p)) : gr;
        int ba = kb_arg(kb, kb->plan->node_buf[n->in[2]], true, true);
        int buf = B(ADD, B(MUL, C(mom), kb_load_arg(kb, ba, IX_ELEM)), d);
        int step = n->attr[1] != 0 ? B(ADD, d, B(MUL, C(mom), buf)) : buf;
        kb_out(kb, KO_STORE, ba, buf);
        kb_out(kb, KO_STORE, pa, shrink(kb, n, B(SUB, p, B(MUL, kb_node(kb, n->in[3]), step)), -1));
        break;
    }
    case OP_ADAM: {
        double b1 = n->attr[0], b2 = n->attr[1], eps = n->attr[2], wd = n->attr[4];
        bool decoupled = n->attr[3] != 0;
        int lr = kb_node(kb, n->in[4]), step = kb_node(kb, n->in[5]), bc2 = kb_node(kb, n->in[6]);
        int p0 = p, d = gr;
        if (wd != 0 && decoupled) p0 = B(MUL, p, B(SUB, C(1), B(MUL, lr, C(wd))));
        if (wd != 0 && !decoupled) d = B(ADD, gr, B(MUL, C(wd), p));
        int ma = kb_arg(kb, kb->plan->node_buf[n->in[2]], true, true);
        int va = kb_arg(kb, kb->plan->node_buf[n->in[3]], true, true);
        int m = B(ADD, B(MUL, C(b1), kb_load_arg(kb, ma, IX_ELEM)), B(MUL, C(1 - b1), d));
        int v = B(ADD, B(MUL, C(b2), kb_load_arg(kb, va, IX_ELEM)), B(MUL, C(1 - b2), B(MUL, d, d)));
        int den = B(ADD, B(DIV, U(SQRT, v), bc2), C(eps));
        kb_out(kb, KO_STORE, ma, m);
        kb_out(kb, KO_STORE, va, v);
        kb_out(kb, KO_STORE, pa, shrink(kb, n, B(SUB, p0, B(DIV, B(MUL, step, m), den)), den));
        break;
    }
    case OP_RMSPROP: case OP_RMSPROP_MOMENTUM: case OP_ADAGRAD: {
        bool ada = n->op == OP_ADAGRAD;
        double eps = n->attr[ada ? 0 : 1], wd = n->attr[ada ? 1 : 2], alpha = n->attr[0];
        int d = wd != 0 ? B(ADD, gr, B(MUL, C(wd), p)) : gr;
        int va = kb_arg(kb, kb->plan->node_buf[n->in[2]], true, true), v0 = kb_load_arg(kb, va, IX_ELEM);
        int v = ada ? B(ADD, v0, B(MUL, d, d)) : B(ADD, B(MUL, C(alpha), v0), B(MUL, C(1 - alpha), B(MUL, d, d)));
        int den = B(ADD, U(SQRT, v), C(eps)), lr = kb_node(kb, n->in[n->nin - 2]);
        int step = B(DIV, d, den);
        kb_out(kb, KO_STORE, va, v);
        if (n->op == OP_RMSPROP_MOMENTUM) {
            int ba = kb_arg(kb, kb->plan->node_buf[n->in[3]], true, true);
            step = B(ADD, B(MUL, C(n->attr[3]), kb_load_arg(kb, ba, IX_ELEM)), step);
            kb_out(kb, KO_STORE, ba, step);
        }
        kb_out(kb, KO_STORE, pa, shrink(kb, n, B(SUB, p, B(MUL, lr, step)), den));
        break;
    }
    case OP_HMC_KICK: /* p is the momentum r */
        kb_out(kb, KO_STORE, pa, B(SUB, p, B(MUL, kb_node(kb, n->in[2]), gr)));
        break;
    case OP_HMC_DRIFT: /* gr is the momentum r */
        kb_out(kb, KO_STORE, pa, B(ADD, p, B(MUL, kb_node(kb, n->in[3]), B(MUL, kb_node(kb, n->in[2]), gr))));
        break;
    case OP_SGLD: case OP_SGLD_RMS: { /* the scalars c, s, seed, step_lo, step_hi are the last five inputs */
        int at = n->nin - 5, c = kb_node(kb, n->in[at]), s = kb_node(kb, n->in[at + 1]);
        int z = elem_normal_kx(kb, kb_random(kb, kb_node(kb, n->in[at + 2]), kb_node(kb, n->in[at + 3]),
                                             kb_node(kb, n->in[at + 4]), (int)n->attr[0]));
        if (n->op == OP_SGLD) {
            kb_out(kb, KO_STORE, pa, B(ADD, B(SUB, p, B(MUL, c, gr)), B(MUL, s, z)));
            break;
        }
        double alpha = n->attr[1], lambda = n->attr[2];
        int va = kb_arg(kb, kb->plan->node_buf[n->in[2]], true, true);
        int v = B(ADD, B(MUL, C(alpha), kb_load_arg(kb, va, IX_ELEM)), B(MUL, C(1 - alpha), B(MUL, gr, gr)));
        int G = B(DIV, C(1), B(ADD, C(lambda), U(SQRT, v)));
        kb_out(kb, KO_STORE, va, v);
        kb_out(kb, KO_STORE, pa, B(ADD, B(SUB, p, B(MUL, c, B(MUL, G, gr))), B(MUL, s, B(MUL, U(SQRT, G), z))));
        break;
    }
    default: NNC_BUG("update op");
    }
}

/* ---- sliding windows over [B,H,W,C] (channels last) ---- */

/* One index of an access: sum of coef * domain index + off, over extent ext. */
static KIdx axis(int64_t ext) { return (KIdx){.div = 1, .ext = {ext, false, false}}; }

/* A [B, d1, d2, d3] access of `arg` from four indices (the batch first). */
static int access4(KBuilder *kb, int arg, KIdx a, KIdx b, KIdx c, KIdx d) {
    KAccess ac = {.arg = arg, .rank = 4, .idx = {a, b, c, d}};
    return kb_access(kb, &ac);
}

static KIdx batch_axis(void) {
    KIdx x = {.div = 1, .ext = {1, true, false}};
    x.coef[0] = 1;
    return x;
}
static KIdx dim_axis(int d, int64_t ext) {
    KIdx x = axis(ext);
    x.coef[d] = 1;
    return x;
}

/* The domains: over the small side [B | OH, OW, C, kh, kw] (pooling: [B, OH, OW, C | kh, kw],
 * reduced over the window), or over the big side [B, H, W, C | kh, kw] (the adjoints: each
 * input element gathers the windows that cover it, at oh = (h + pad - i d) / stride where
 * that divides).  im2col's is [B | OH, OW, kh, kw, C], its output in order: dims 3 and 4 are
 * the window's, 5 the channel (patches_domain).  Extents are constants. */
static void const_domain(KBuilder *kb, bool batched, const int64_t *inner, int ninner, int nouter) {
    kb_domain(kb, batched, inner, ninner, nouter);
    for (int d = 0; d < kb->k->ndim; d++) kb->k->dim[d].cols = false; /* no run-time column count */
}

static void window_domain(KBuilder *kb, const Window *w, bool big, int nouter) {
    int64_t inner[5] = {big ? w->H : w->OH, big ? w->W : w->OW, w->C, w->kh, w->kw};
    const_domain(kb, true, inner, 5, nouter);
}

static void patches_domain(KBuilder *kb, const Window *w) {
    int64_t inner[5] = {w->OH, w->OW, w->kh, w->kw, w->C};
    const_domain(kb, true, inner, 5, 1);
}

/* Over the small side: the big-side element at window position (i, j) = dims (wi, wi + 1),
 * channel dim c. */
static int big_at_window(KBuilder *kb, int arg, const Window *w, int wi, int c) {
    KIdx h = axis(w->H), v = axis(w->W);
    h.coef[1] = w->stride, h.coef[wi] = w->dilation, h.off = -w->pad_top, h.bounded = true;
    v.coef[2] = w->stride, v.coef[wi + 1] = w->dilation, v.off = -w->pad_left, v.bounded = true;
    return access4(kb, arg, batch_axis(), h, v, dim_axis(c, w->C));
}

/* Over the big side: the small-side element whose window holds (h, w) at position (i, j):
 * oh = (h + pad_top - i d) / stride, when exact and in range; the last index is given. */
static int small_covering(KBuilder *kb, int arg, const Window *w, KIdx last) {
    KIdx oh = axis(w->OH), ow = axis(w->OW);
    oh.coef[1] = 1, oh.coef[4] = -w->dilation, oh.off = w->pad_top, oh.div = w->stride, oh.bounded = true;
    ow.coef[2] = 1, ow.coef[5] = -w->dilation, ow.off = w->pad_left, ow.div = w->stride, ow.bounded = true;
    return access4(kb, arg, batch_axis(), oh, ow, last);
}

/* The outer point [b, y, x, c] of a domain with four outer dims. */
static int outer_point(KBuilder *kb, int arg, int64_t H, int64_t W, int64_t C) {
    return access4(kb, arg, batch_axis(), dim_axis(1, H), dim_axis(2, W), dim_axis(3, C));
}

static void build_window(KBuilder *kb, const Node *n, int node) {
    const Plan *p = kb->plan;
    Window w = ir_window(p->g, n);
    int x = kb_arg(kb, p->node_buf[n->in[0]], true, false);
    int out = out_arg(kb, node);
    switch (n->op) {
    case OP_IM2COL: { /* every (b, oh, ow, i, j, c): the output is the domain, in order */
        patches_domain(kb, &w);
        kb_out_at(kb, KO_STORE, kb_std_access(kb, out, IX_ELEM), kb_load(kb, big_at_window(kb, x, &w, 3, 5)));
        return;
    }
    case OP_COL2IM: { /* dx[b,h,w,c] = sum over (i, j) of d[b, oh, ow, (i kw + j) C + c] */
        window_domain(kb, &w, true, 4);
        KIdx col = axis(w.C * w.kh * w.kw);
        col.coef[3] = 1, col.coef[4] = w.kw * w.C, col.coef[5] = w.C;
        int sum = kb_red(kb, KR_SUM, kb_load(kb, small_covering(kb, x, &w, col)));
        kb_out_at(kb, KO_STORE_ROW, outer_point(kb, out, w.H, w.W, w.C), sum);
        return;
    }
    default: break;
    }
    bool big = n->op == OP_MAXPOOL_GRAD || n->op == OP_AVGPOOL_GRAD;
    window_domain(kb, &w, big, 4);
    int pos = B(ADD, B(MUL, kb_index(kb, 4), C((double)w.kw)), kb_index(kb, 5)); /* i kw + j in the window */
    int64_t H = big ? w.H : w.OH, W = big ? w.W : w.OW;
    int res;
    switch (n->op) {
    case OP_MAXPOOL: res = kb_red(kb, KR_MAX, kb_load(kb, big_at_window(kb, x, &w, 4, 3))); break;
    case OP_MAXPOOL_ARG: { /* the first position holding the maximum */
        int v = kb_load(kb, big_at_window(kb, x, &w, 4, 3));
        int m = kb_red(kb, KR_MAX, v);
        res = kb_red(kb, KR_MIN, SEL(B(EQ, v, m), pos, C((double)(w.kh * w.kw))));
        break;
    }
    case OP_AVGPOOL: res = B(DIV, kb_red(kb, KR_SUM, kb_load(kb, big_at_window(kb, x, &w, 4, 3))), C((double)(w.kh * w.kw))); break;
    case OP_MAXPOOL_PICK: { /* g at the window's recorded maximum */
        int arg = kb_load(kb, outer_point(kb, kb_arg(kb, p->node_buf[n->in[1]], true, false), w.OH, w.OW, w.C));
        res = kb_red(kb, KR_SUM, SEL(B(EQ, arg, pos), kb_load(kb, big_at_window(kb, x, &w, 4, 3)), C(0)));
        break;
    }
    case OP_MAXPOOL_GRAD: { /* each covering window's dy where its maximum is here */
        int arg = kb_load(kb, small_covering(kb, kb_arg(kb, p->node_buf[n->in[1]], true, false), &w, dim_axis(3, w.C)));
        int dy = kb_load(kb, small_covering(kb, x, &w, dim_axis(3, w.C)));
        res = kb_red(kb, KR_SUM, SEL(B(EQ, arg, pos), dy, C(0)));
        break;
    }
    case OP_AVGPOOL_GRAD:
        res = B(DIV, kb_red(kb, KR_SUM, kb_load(kb, small_covering(kb, x, &w, dim_axis(3, w.C)))), C((double)(w.kh * w.kw)));
        break;
    default: NNC_BUG("window op '%s'", op_info[n->op].name);
    }
    kb_out_at(kb, KO_STORE_ROW, outer_point(kb, out, H, W, w.C), res);
}

/* transpose: over the output [A, N, M] (one row), each element read from [a, i, j] of [A, M, N]. */
static void build_transpose(KBuilder *kb, const Node *n, int node) {
    const Plan *p = kb->plan;
    int64_t A = n->shape.dim[0], N = n->shape.dim[1], M = n->shape.dim[2];
    int64_t inner[3] = {A, N, M};
    const_domain(kb, false, inner, 3, 1);
    int x = kb_arg(kb, p->node_buf[n->in[0]], true, false);
    KAccess ac = {.arg = x, .rank = 3, .idx = {dim_axis(1, A), dim_axis(3, M), dim_axis(2, N)}};
    kb_out_at(kb, KO_STORE, kb_std_access(kb, out_arg(kb, node), IX_ELEM), kb_load(kb, kb_access(kb, &ac)));
}

/* ---- per-sample tensors through their own index maps (OC_INDEXED) ---- */

/* Domain dim 0: the batch rows (or the one row of an unbatched value). */
static KIdx row_axis(bool batched) {
    KIdx x = {.div = 1, .ext = {1, batched, false}};
    x.coef[0] = 1;
    return x;
}

/* An access of `arg`, a per-sample [d0, d1, ...] tensor: row, then one index per dim. */
static int access_rows(KBuilder *kb, int arg, bool batched, const KIdx *idx, int rank) {
    KAccess ac = {.arg = arg, .rank = rank + 1};
    ac.idx[0] = row_axis(batched);
    for (int d = 0; d < rank; d++) ac.idx[d + 1] = idx[d];
    return kb_access(kb, &ac);
}

static void build_indexed(KBuilder *kb, const Node *n, int node) {
    const Plan *p = kb->plan;
    const Shape is = p->g->node[n->in[0]].shape, s = n->shape;
    bool batched = s.batched;
    int x = kb_arg(kb, p->node_buf[n->in[0]], true, false), out = out_arg(kb, node);
    double eps = n->attr[0];
    int method = (int)n->attr[1];
    KIdx idx[K_MAX_DIMS];
    switch (n->op) {
    case OP_AXIS_SUM: { /* [B | the other dims | the axis]: a sum per outer point */
        int axis = (int)n->attr[0], r = is.rank;
        int64_t inner[K_MAX_DIMS];
        for (int d = 0, o = 0; d < r; d++)
            if (d != axis) inner[o++] = is.dim[d];
        inner[r - 1] = is.dim[axis];
        const_domain(kb, batched, inner, r, r);
        for (int d = 0; d < r; d++) idx[d] = dim_axis(d < axis ? 1 + d : d == axis ? r : d, is.dim[d]);
        int sum = kb_red(kb, KR_SUM, kb_load(kb, access_rows(kb, x, batched, idx, r)));
        for (int d = 0; d < r - 1; d++) idx[d] = dim_axis(1 + d, s.dim[d]);
        kb_out_at(kb, KO_STORE_ROW, access_rows(kb, out, batched, idx, r - 1), sum);
        return;
    }
    case OP_AXIS_BROADCAST: { /* over the output, reading x without the axis */
        int axis = (int)n->attr[0];
        const_domain(kb, batched, s.dim, s.rank, 1);
        for (int d = 0; d < is.rank; d++) idx[d] = dim_axis(1 + (d < axis ? d : d + 1), is.dim[d]);
        kb_out_at(kb, KO_STORE, kb_std_access(kb, out, IX_ELEM), kb_load(kb, access_rows(kb, x, batched, idx, is.rank)));
        return;
    }
    case OP_FD_PERTURB: { /* [B, K, D]: x[b, j] plus the point's shift */
        int64_t K = s.dim[0], D = s.dim[1];
        const_domain(kb, batched, s.dim, 2, 1);
        idx[0] = dim_axis(2, D);
        int xv = kb_load(kb, access_rows(kb, x, batched, idx, 1));
        int k = kb_index(kb, 1), j = kb_index(kb, 2), shift;
        if (method == 0) /* row 2j: +eps, row 2j + 1: -eps */
            shift = SEL(B(EQ, k, B(MUL, C(2), j)), C(eps), SEL(B(EQ, k, B(ADD, B(MUL, C(2), j), C(1))), C(-eps), C(0)));
        else
            shift = SEL(B(EQ, k, B(ADD, j, C(1))), C(method == 1 ? eps : -eps), C(0));
        (void)K;
        kb_out_at(kb, KO_STORE, kb_std_access(kb, out, IX_ELEM), B(ADD, xv, shift));
        return;
    }
    case OP_FD_DIFF: { /* [B, M, D]: two rows of h[B, K, M] */
        int64_t M = s.dim[0], D = s.dim[1], K = is.dim[0];
        const_domain(kb, batched, s.dim, 2, 1);
        KIdx hi = axis(K), lo = axis(K);
        if (method == 0) hi.coef[2] = 2, lo.coef[2] = 2, lo.off = 1; /* rows 2d and 2d + 1 */
        else hi.coef[2] = 1, hi.off = 1;                               /* rows 1 + d and 0 */
        idx[1] = dim_axis(1, M);
        idx[0] = hi;
        int vh = kb_load(kb, access_rows(kb, x, batched, idx, 2));
        idx[0] = lo;
        int vl = kb_load(kb, access_rows(kb, x, batched, idx, 2));
        int diff = method == 2 ? B(SUB, vl, vh) : B(SUB, vh, vl);
        (void)D;
        kb_out_at(kb, KO_STORE, kb_std_access(kb, out, IX_ELEM), B(DIV, diff, C(method == 0 ? 2 * eps : eps)));
        return;
    }
    case OP_FD_DIFF_T: { /* fd_diff's adjoint: [B, K, M] from dg[B, M, D] */
        int64_t M = is.dim[0], D = is.dim[1], K = s.dim[0];
        if (method == 0) { /* over [B, D, 2, M]: row 2d + s of the output gets +-dg[m, d] / (2 eps) */
            int64_t inner[3] = {D, 2, M};
            const_domain(kb, batched, inner, 3, 1);
            idx[0] = dim_axis(3, M), idx[1] = dim_axis(1, D);
            int v = kb_load(kb, access_rows(kb, x, batched, idx, 2));
            KIdx k = axis(K);
            k.coef[1] = 2, k.coef[2] = 1;
            idx[0] = k, idx[1] = dim_axis(3, M);
            int val = B(DIV, SEL(B(EQ, kb_index(kb, 2), C(0)), v, U(NEG, v)), C(2 * eps));
            kb_out_at(kb, KO_STORE, access_rows(kb, out, batched, idx, 2), val);
            return;
        }
        /* forward, backward: over [B, K, M | D]; row 0 is minus the sum over d, row 1 + d is dg[m, d] */
        int64_t inner[3] = {K, M, D};
        const_domain(kb, batched, inner, 3, 3);
        idx[0] = dim_axis(2, M), idx[1] = dim_axis(3, D);
        int sum = kb_red(kb, KR_SUM, kb_load(kb, access_rows(kb, x, batched, idx, 2)));
        KIdx d = axis(D);
        d.coef[1] = 1, d.off = -1, d.bounded = true; /* k - 1: row 0 reads nothing (0) */
        idx[1] = d;
        int direct = kb_load(kb, access_rows(kb, x, batched, idx, 2));
        int val = SEL(B(EQ, kb_index(kb, 1), C(0)), U(NEG, sum), direct);
        val = B(DIV, val, C(method == 1 ? eps : -eps));
        idx[0] = dim_axis(1, K), idx[1] = dim_axis(2, M);
        kb_out_at(kb, KO_STORE_ROW, access_rows(kb, out, batched, idx, 2), val);
        return;
    }
    default: NNC_BUG("indexed op '%s'", op_info[n->op].name);
    }
}

void opk_build_group(KBuilder *kb, const int *member, int nmember, const bool *stored) {
    const Graph *g = kb->plan->g;
    kb_domain_of(kb, ir_domain(g, &g->node[member[0]]));
    int *value = util_calloc((size_t)g->nnode, sizeof(int));
    for (int i = 0; i < g->nnode; i++) value[i] = -1;
    for (int k = 0; k < nmember; k++) {
        int node = member[k];
        const Node *n = &g->node[node];
        if (op_info[n->op].cls == OC_WINDOW) { /* its own domain and index maps */
            NNC_ASSERT(nmember == 1);
            build_window(kb, n, node);
            break;
        }
        if (op_info[n->op].cls == OC_PERMUTE) {
            NNC_ASSERT(nmember == 1);
            build_transpose(kb, n, node);
            break;
        }
        if (op_info[n->op].cls == OC_INDEXED) {
            NNC_ASSERT(nmember == 1);
            build_indexed(kb, n, node);
            break;
        }
        int in[IR_MAX_IN] = {0};
        for (int i = 0; i < n->nin; i++) { /* a member's value in registers, also through a reshape of it */
            int src = ir_view_source(g, n->in[i]);
            in[i] = value[src] >= 0 ? value[src] : kb_node(kb, n->in[i]);
        }
        switch (ir_class(g, n)) {
        case OC_MAP:
            value[node] = map_expr(kb, n, in);
            if (stored[node]) kb_out(kb, KO_STORE, out_arg(kb, node), value[node]);
            break;
        case OC_COLSUM:
        case OC_SUM: {
            int e;
            switch (n->op) {
            case OP_COLSUM: case OP_SUM: e = in[0]; break;
            case OP_MATMUL: /* a^T b with a unit side (ir_class) */
            case OP_GATE_GRAD: e = B(MUL, in[0], in[1]); break;
            case OP_PRELU_SLOPE_GRAD: e = SEL(B(GT, in[1], C(0)), C(0), B(MUL, in[0], in[1])); break;
            case OP_L1: e = U(ABS, in[0]); break;
            case OP_SIZE_GATE_FACTOR_GRAD: { /* df k w s (1 - s) = df k w e / (1 + e)^2, e = exp(-|k (w b - j)|) */
                double slope = n->attr[0], w = n->attr[1];
                int u = B(MUL, C(slope), B(SUB, B(MUL, C(w), in[1]), LAST_INDEX));
                int ex = U(EXP, U(NEG, U(ABS, u)));
                int d = B(ADD, C(1), ex);
                e = B(MUL, B(MUL, in[0], C(slope * w)), B(DIV, ex, B(MUL, d, d)));
                break;
            }
            case OP_MSE: {
                int d = B(SUB, in[0], in[1]);
                int inv = kb_per_element(kb, C(1));
                e = B(MUL, B(MUL, d, d), inv);
                break;
            }
            case OP_RELATIVE_ERROR: {
                int d = U(ABS, B(SUB, in[0], in[1])), den = B(MAX, U(ABS, in[1]), C(FLT_MIN));
                e = B(MUL, B(DIV, d, den), kb_per_element(kb, C(1)));
                break;
            }
            default: NNC_BUG("reduction op '%s'", op_info[n->op].name);
            }
            kb_out(kb, ir_class(g, n) == OC_COLSUM ? KO_COLSUM : KO_SUM, out_arg(kb, node), e);
            break;
        }
        case OC_ROW: build_row(kb, n, node, in, stored[node]); break;
        case OC_UPDATE:
            NNC_ASSERT(nmember == 1);
            build_update(kb, n, node);
            break;

        default: NNC_BUG("op '%s' has no loop kernel", op_info[n->op].name);
        }
    }
    free(value);
}
