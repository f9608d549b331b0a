/* autodiff.c: reverse-mode automatic differentiation on the graph IR.  Walks the forward
 * nodes from the loss back to the weights and appends backward nodes, one rule per op.
 * Contributions to a value from several users are summed with `add`; a contribution to an
 * operand that was broadcast (a scalar, a row vector) is reduced back to its shape.
 * Runs after lower.c and before update.c; backward nodes carry the forward node's location.
 *
 * Rematerialisation: the backward pass does not read activations, gates and other cheap
 * elementwise results of the forward pass; it recomputes them (once each) from the values
 * they were computed from.  So the forward pass keeps only pre-activations (bias_add, GEMM
 * and similar outputs) alive for the backward pass: for `dense -> act -> gate` that is one
 * [B, width] tensor, z, instead of z, act(z) and the gated output. */
#include <stdlib.h>
#include <string.h>

#include "lower.h"

static int emit(Graph *g, Op op, Shape s, int a, int b, int c, SrcLoc loc, const Node *from) {
    int in[3] = {a, b, c};
    int n = op_info[op].nin;
    int id = ir_add(g, op, DT_F32, s, in, n, loc);
    g->node[id].name = from->name;
    return id;
}
#define E1(op, s, a) emit(g, op, s, a, -1, -1, n->loc, n)
#define E2(op, s, a, b) emit(g, op, s, a, b, -1, n->loc, n)
#define E3(op, s, a, b, c) emit(g, op, s, a, b, c, n->loc, n)

/* Reduce a gradient computed at the output's shape back to the operand's shape. */
static int unbroadcast(Graph *g, int d, Shape target, const Node *n) {
    Shape ds = g->node[d].shape;
    if (shape_eq(ds, target)) return d;
    if (target.rank == 0 && !target.batched) return E1(OP_SUM, target, d);
    if (!target.batched && ds.batched && shape_numel(target) == shape_numel(ds)) return E1(OP_COLSUM, target, d);
    if (target.batched && ds.batched && shape_numel(target) == 1) return E1(OP_ROWSUM, target, d);
    NNC_BUG("cannot reduce a gradient to its operand's shape");
}

static int64_t mat_dim(Shape s, int which, bool trans) {
    int64_t rows = s.batched ? -1 : s.dim[0];
    int64_t cols = s.batched ? shape_numel(s) : s.dim[1];
    return (which == 0) != trans ? rows : cols;
}

static int matmul(Graph *g, int a, int b, bool ta, bool tb, const Node *n) {
    int64_t rows = mat_dim(g->node[a].shape, 0, ta), cols = mat_dim(g->node[b].shape, 1, tb);
    NNC_ASSERT(cols > 0);
    Shape s = rows < 0 ? shape_vec(cols, true) : (Shape){.rank = 2, .dim = {rows, cols}};
    int id = E2(OP_MATMUL, s, a, b);
    g->node[id].attr[0] = ta;
    g->node[id].attr[1] = tb;
    return id;
}

/* Forward ops recomputed in the backward pass rather than kept alive. */
static bool recomputable(Op op) {
    switch (op) {
    case OP_RELU: case OP_LEAKY_RELU: case OP_ELU: case OP_TANH: case OP_SIGMOID: case OP_SOFTPLUS:
    case OP_GELU: case OP_PRELU: case OP_GATE:
        return true;
    default:
        return false;
    }
}

/* The value of forward node x as the backward pass uses it: x itself, or its recomputation. */
static int value(Graph *g, int *remat, int nfwd, int x) {
    if (x < 0 || x >= nfwd || !recomputable(g->node[x].op)) return x;
    if (remat[x] >= 0) return remat[x];
    Node src = g->node[x];
    int in[IR_MAX_IN];
    for (int i = 0; i < src.nin; i++) in[i] = value(g, remat, nfwd, src.in[i]);
    int id = ir_add(g, src.op, src.dtype, src.shape, in, src.nin, src.loc);
    Node *n = &g->node[id];
    memcpy(n->attr, src.attr, sizeof n->attr);
    n->name = src.name;
    n->remat_of = x;
    return remat[x] = id;
}

static void accumulate(Graph *g, int *grad, int target, int d, const Node *n) {
    d = unbroadcast(g, d, g->node[target].shape, n);
    grad[target] = grad[target] < 0 ? d : E2(OP_ADD, g->node[target].shape, grad[target], d);
}

void autodiff_graph(Graph *g) {
    NNC_ASSERT(!g->has_backward && g->loss >= 0);
    int nfwd = g->nnode;
    bool *needs = util_calloc((size_t)nfwd, sizeof(bool));
    int *grad = util_calloc((size_t)nfwd, sizeof(int));
    int *remat = util_calloc((size_t)nfwd, sizeof(int));
    for (int id = 0; id < nfwd; id++) {
        const Node *n = &g->node[id];
        grad[id] = -1;
        remat[id] = -1;
        if (n->op == OP_WEIGHT) needs[id] = g->weight[n->ref].kind == W_PARAM;
        if (n->op == OP_INPUT) needs[id] = g->input_grads && n->dtype == DT_F32;
        if (n->op == OP_ACCURACY || (n->op == OP_L1 && n->attr[0] != 0)) continue; /* not differentiated */
        for (int i = 0; i < n->nin; i++) needs[id] |= needs[n->in[i]];
    }
    g->has_backward = true;
    g->phase = PH_BACKWARD;
    if (needs[g->loss]) grad[g->loss] = ir_const(g, 1.0, g->node[g->loss].loc);
    for (int id = g->loss; id >= 0; id--) {
        if (grad[id] < 0 || !needs[id]) continue;
        const Node nd = g->node[id]; /* copy: g->node moves as nodes are added */
        const Node *n = &nd;
        int dy = grad[id], a = n->in[0], b = n->in[1], c = n->in[2];
        Shape sa = n->nin > 0 ? g->node[a].shape : shape_scalar();
        bool na = n->nin > 0 && needs[a], nb = n->nin > 1 && needs[b];
        double alpha = n->attr[0];
        int d;
#define V(x) value(g, remat, nfwd, (x)) /* a forward value, recomputed if cheap */
        switch (n->op) {
        case OP_INPUT: case OP_WEIGHT: case OP_PARAM: case OP_CONST: break;
        case OP_RESHAPE: accumulate(g, grad, a, E1(OP_RESHAPE, sa, dy), n); break;
        case OP_MATMUL: {
            bool ta = n->attr[0] != 0, tb = n->attr[1] != 0;
            if (na) accumulate(g, grad, a, ta ? matmul(g, V(b), dy, tb, true, n) : matmul(g, dy, V(b), false, !tb, n), n);
            if (nb) accumulate(g, grad, b, tb ? matmul(g, dy, V(a), true, ta, n) : matmul(g, V(a), dy, !ta, false, n), n);
            break;
        }
        case OP_ADD:
            if (na) accumulate(g, grad, a, dy, n);
            if (nb) accumulate(g, grad, b, dy, n);
            break;
        case OP_SUB:
            if (na) accumulate(g, grad, a, dy, n);
            if (nb) accumulate(g, grad, b, E1(OP_NEG, n->shape, dy), n);
            break;
        case OP_MUL:
            if (na) accumulate(g, grad, a, E2(OP_MUL, n->shape, dy, V(b)), n);
            if (nb) accumulate(g, grad, b, E2(OP_MUL, n->shape, dy, V(a)), n);
            break;
        case OP_DIV:
            if (na) accumulate(g, grad, a, E2(OP_DIV, n->shape, dy, V(b)), n);
            if (nb) {
                int q = E2(OP_DIV, n->shape, V(id), V(b)); /* a / b^2 = y / b */
                accumulate(g, grad, b, E1(OP_NEG, n->shape, E2(OP_MUL, n->shape, dy, q)), n);
            }
            break;
        case OP_NEG: accumulate(g, grad, a, E1(OP_NEG, sa, dy), n); break;
        case OP_BROADCAST: accumulate(g, grad, a, dy, n); break; /* reduced back to a's shape */
        case OP_COLSUM: accumulate(g, grad, a, E1(OP_BROADCAST, sa, dy), n); break;
        case OP_ROWSUM: accumulate(g, grad, a, E1(OP_BROADCAST, sa, dy), n); break;
        case OP_BIAS_ADD:
            if (na) accumulate(g, grad, a, dy, n);
            if (nb) accumulate(g, grad, b, E1(OP_COLSUM, g->node[b].shape, dy), n);
            break;
        case OP_GATE:
            if (na) accumulate(g, grad, a, E2(OP_GATE, sa, dy, V(b)), n);
            if (nb) accumulate(g, grad, b, E2(OP_GATE_GRAD, g->node[b].shape, dy, V(a)), n);
            break;
        case OP_RELU: case OP_LEAKY_RELU: case OP_ELU: case OP_TANH: case OP_SIGMOID:
        case OP_SOFTPLUS: case OP_GELU: {
            static const Op gop[OP_COUNT] = {
                [OP_RELU] = OP_RELU_GRAD, [OP_LEAKY_RELU] = OP_LEAKY_RELU_GRAD, [OP_ELU] = OP_ELU_GRAD,
                [OP_TANH] = OP_TANH_GRAD, [OP_SIGMOID] = OP_SIGMOID_GRAD,
                [OP_SOFTPLUS] = OP_SOFTPLUS_GRAD, [OP_GELU] = OP_GELU_GRAD,
            };
            d = E2(gop[n->op], sa, dy, V(a));
            g->node[d].attr[0] = alpha;
            accumulate(g, grad, a, d, n);
            break;
        }
        case OP_PRELU:
            if (na) accumulate(g, grad, a, E3(OP_PRELU_GRAD, sa, dy, V(a), V(b)), n);
            if (nb) accumulate(g, grad, b, E2(OP_PRELU_SLOPE_GRAD, g->node[b].shape, dy, V(a)), n);
            break;
        case OP_SIZE_GATE_FACTOR:
            d = E2(OP_SIZE_GATE_FACTOR_GRAD, sa, dy, V(a));
            g->node[d].attr[0] = alpha;
            g->node[d].attr[1] = n->attr[1];
            accumulate(g, grad, a, d, n);
            break;
        case OP_SUM: accumulate(g, grad, a, E1(OP_BROADCAST, sa, dy), n); break;
        case OP_L1: accumulate(g, grad, a, E2(OP_L1_GRAD, sa, dy, V(a)), n); break;
        case OP_MSE:
            d = E3(OP_MSE_GRAD, sa, dy, V(a), V(b));
            if (na) accumulate(g, grad, a, d, n);
            if (nb) accumulate(g, grad, b, E1(OP_NEG, sa, d), n);
            break;
        case OP_CROSS_ENTROPY: accumulate(g, grad, a, E3(OP_CROSS_ENTROPY_GRAD, sa, dy, V(a), V(b)), n); break;
        default:
            NNC_BUG("no gradient rule for '%s'", op_info[n->op].name);
        }
        (void)c;
    }
    for (int i = 0; i < g->nweight; i++) {
        Weight *w = &g->weight[i];
        if (w->kind == W_PARAM && w->node < nfwd) w->grad = grad[w->node];
    }
    for (int i = 0; i < g->ninput; i++) g->input[i].grad = g->input[i].node < nfwd ? grad[g->input[i].node] : -1;
#undef V
    free(needs);
    free(grad);
    free(remat);
    ir_verify(g, "autodiff");
}
