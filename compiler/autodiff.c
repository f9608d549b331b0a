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
 * [B, width] tensor, z, instead of z, act(z) and the gated output.
 *
 * Closed: every op this pass emits has a rule of its own, so the pass can run again over a
 * graph that already holds a backward pass (autodiff_vjp): the gradient of a gradient, for
 * Hessian-vector products.  Second-order rules are written with existing ops (for example
 * d/dx of tanh_grad(dy, x) = -2 tanh_grad(dy tanh(x), x)), so no op needs a rule it lacks;
 * tests/ops/second_order_test.c checks them against finite differences of gradients. */
#include <stdlib.h>
#include <string.h>

#include "elementwise.h"
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
    if (!target.batched && ds.batched &&
        (shape_numel(target) == shape_numel(ds) || (target.rank == 1 && ds.rank >= 2 && ds.dim[ds.rank - 1] == target.dim[0])))
        return E1(OP_COLSUM, target, d); /* over the batch, and per channel over the positions too */
    if (target.batched && ds.batched && shape_numel(target) == 1) return E1(OP_ROWSUM, target, d);
    NNC_BUG("cannot reduce a gradient to its operand's shape");
}

/* A matrix operand: batched [B,...,k] is (B*... x k), its rows given as -(...); unbatched
 * [m,k] is (m x k). */
static int64_t mat_dim(Shape s, int which, bool trans) {
    int64_t last = s.rank ? s.dim[s.rank - 1] : 1;
    int64_t rows = s.batched ? -(shape_numel(s) / last) : s.dim[0];
    int64_t cols = s.batched ? last : s.dim[1];
    return (which == 0) != trans ? rows : cols;
}

static int matmul(Graph *g, int a, int b, bool ta, bool tb, const Node *n) {
    int64_t rows = mat_dim(g->node[a].shape, 0, ta), cols = mat_dim(g->node[b].shape, 1, tb);
    NNC_ASSERT(cols > 0);
    Shape s = (Shape){.rank = 2, .dim = {rows, cols}};
    if (rows < 0) { /* batched rows come from a, untransposed: its leading dims, then the columns */
        s = g->node[a].shape;
        s.dim[s.rank - 1] = cols;
    }
    int id = E2(OP_MATMUL, s, a, b);
    g->node[id].attr[0] = ta;
    g->node[id].attr[1] = tb;
    return id;
}

/* The value of forward node x as the backward pass uses it: x itself, or its recomputation. */
static int value(Graph *g, int *remat, int nfwd, int x) {
    if (x < 0 || x >= nfwd || !op_has(g->node[x].op, OF_RECOMPUTE)) return x;
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

/* An op like n: the same attributes (a window's geometry, a finite difference's eps and method). */
static int window(Graph *g, Op op, Shape s, int a, int b, const Node *n) {
    int id = b < 0 ? E1(op, s, a) : E2(op, s, a, b);
    memcpy(g->node[id].attr, n->attr, sizeof n->attr);
    return id;
}

/* A node like n with attr0 copied (the slope or alpha of an activation's derivative). */
static int with_attr(Graph *g, int id, const Node *n) {
    g->node[id].attr[0] = n->attr[0];
    return id;
}

/* One reverse sweep from `root` (a scalar) down to node 0, seeded with d root = `seed`.
 * needs[id]: the node depends on something being differentiated.  Forward nodes below
 * `nremat` that are cheap are recomputed rather than read (0: none).  grad[] is filled. */
static void sweep(Graph *g, int root, int seed, const bool *needs, int nremat, int *grad) {
    int *remat = util_calloc((size_t)root + 1, sizeof(int));
    for (int id = 0; id <= root; id++) remat[id] = -1;
    grad[root] = seed;
    for (int id = root; id >= 0; id--) {
        if (grad[id] < 0 || !needs[id]) continue;
        const Node nd = g->node[id]; /* copy: g->node moves as nodes are added */
        const Node *n = &nd;
        int dy = grad[id], a = n->in[0], b = n->in[1], c = n->in[2];
        Shape sa = n->nin > 0 ? g->node[a].shape : shape_scalar();
        bool na = n->nin > 0 && needs[a], nb = n->nin > 1 && needs[b], nc = n->nin > 2 && needs[c];
        int d;
#define V(x) value(g, remat, nremat, (x)) /* a forward value, recomputed if cheap */
#define ONE ir_const(g, 1.0, n->loc)
        switch (n->op) {
        case OP_INPUT: case OP_WEIGHT: case OP_PARAM: case OP_CONST: break;
        case OP_RESHAPE: accumulate(g, grad, a, E1(OP_RESHAPE, sa, dy), n); break;
        case OP_TRANSPOSE: accumulate(g, grad, a, E1(OP_TRANSPOSE, sa, dy), n); break;
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
        case OP_BATCH_MEAN: accumulate(g, grad, a, E1(OP_BATCH_MEAN, sa, dy), n); break;
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
        case OP_SOFTPLUS: case OP_GELU: case OP_LOGP_STUDENT_T:
            accumulate(g, grad, a, with_attr(g, E2(elem_fn(n->op)->grad, sa, dy, V(a)), n), n);
            break;
        case OP_EXP: accumulate(g, grad, a, E2(OP_MUL, sa, dy, V(id)), n); break;
        case OP_LOG: accumulate(g, grad, a, E2(OP_DIV, sa, dy, V(a)), n); break;
        case OP_LOGP_NORMAL: accumulate(g, grad, a, E1(OP_NEG, sa, E2(OP_MUL, sa, dy, V(a))), n); break;
        case OP_LOGP_LAPLACE: accumulate(g, grad, a, E1(OP_NEG, sa, E2(OP_L1_GRAD, sa, dy, V(a))), n); break;
        case OP_RSQRT: { /* -y^3 / 2 */
            int y = V(id);
            int y3 = E2(OP_MUL, sa, y, E2(OP_MUL, sa, y, y));
            accumulate(g, grad, a, E2(OP_MUL, sa, dy, E2(OP_MUL, sa, ir_const(g, -0.5, n->loc), y3)), n);
            break;
        }
        case OP_TRAIN_SELECT: { /* dy to the operand in use; the mode is not differentiated */
            int zero = ir_const(g, 0, n->loc);
            if (na) accumulate(g, grad, a, E3(OP_TRAIN_SELECT, n->shape, dy, zero, c), n);
            if (nb) accumulate(g, grad, b, E3(OP_TRAIN_SELECT, n->shape, zero, dy, c), n);
            break;
        }
        case OP_DROPOUT: { /* linear in x, with the same mask: dropout of dy */
            int in[5] = {dy, n->in[1], n->in[2], n->in[3], n->in[4]};
            d = ir_add(g, OP_DROPOUT, DT_F32, sa, in, 5, n->loc);
            memcpy(g->node[d].attr, n->attr, sizeof n->attr);
            g->node[d].name = n->name;
            accumulate(g, grad, a, d, n);
            break;
        }
        case OP_PRELU:
            if (na) accumulate(g, grad, a, E3(OP_PRELU_GRAD, sa, dy, V(a), V(b)), n);
            if (nb) accumulate(g, grad, b, E2(OP_PRELU_SLOPE_GRAD, g->node[b].shape, dy, V(a)), n);
            break;
        case OP_SIZE_GATE_FACTOR:
            d = E2(OP_SIZE_GATE_FACTOR_GRAD, sa, dy, V(a));
            g->node[d].attr[0] = n->attr[0];
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
        case OP_SOFTMAX: { /* p (dy - sum_j p dy) per row */
            Shape row = {.rank = 0, .batched = true};
            int p = V(id);
            int s = E1(OP_ROWSUM, row, E2(OP_MUL, sa, p, dy));
            accumulate(g, grad, a, E2(OP_MUL, sa, p, E2(OP_SUB, sa, dy, s)), n);
            break;
        }

        /* sliding windows: each linear op's adjoint, and maxpool through its recorded maxima */
        case OP_IM2COL: accumulate(g, grad, a, window(g, OP_COL2IM, sa, dy, -1, n), n); break;
        case OP_COL2IM: accumulate(g, grad, a, window(g, OP_IM2COL, sa, dy, -1, n), n); break;
        case OP_AVGPOOL: accumulate(g, grad, a, window(g, OP_AVGPOOL_GRAD, sa, dy, -1, n), n); break;
        case OP_AVGPOOL_GRAD: accumulate(g, grad, a, window(g, OP_AVGPOOL, sa, dy, -1, n), n); break;
        case OP_MAXPOOL: {
            int arg = window(g, OP_MAXPOOL_ARG, n->shape, V(a), -1, n);
            accumulate(g, grad, a, window(g, OP_MAXPOOL_GRAD, sa, dy, arg, n), n);
            break;
        }
        case OP_MAXPOOL_GRAD: /* linear in dy; the positions are piecewise constant */
            if (na) accumulate(g, grad, a, window(g, OP_MAXPOOL_PICK, sa, dy, V(b), n), n);
            break;
        case OP_MAXPOOL_PICK:
            if (na) accumulate(g, grad, a, window(g, OP_MAXPOOL_GRAD, sa, dy, V(b), n), n);
            break;

        /* indexed ops: each linear, its adjoint its rule (fd_perturb's shifts are constants) */
        case OP_FD_PERTURB: {
            d = E1(OP_AXIS_SUM, sa, dy);
            g->node[d].attr[0] = 0; /* over the points */
            accumulate(g, grad, a, d, n);
            break;
        }
        case OP_FD_DIFF: accumulate(g, grad, a, window(g, OP_FD_DIFF_T, sa, dy, -1, n), n); break;
        case OP_FD_DIFF_T: accumulate(g, grad, a, window(g, OP_FD_DIFF, sa, dy, -1, n), n); break;
        case OP_AXIS_SUM: accumulate(g, grad, a, window(g, OP_AXIS_BROADCAST, sa, dy, -1, n), n); break;
        case OP_AXIS_BROADCAST: accumulate(g, grad, a, window(g, OP_AXIS_SUM, sa, dy, -1, n), n); break;

        /* ---- the ops of a backward pass: second-order rules ---- */
        /* an activation's derivative dy f'(x) is linear in dy; by x it is dy f''(x) */
        case OP_RELU_GRAD: case OP_LEAKY_RELU_GRAD: /* f'' = 0 away from the kink */
            if (na) accumulate(g, grad, a, with_attr(g, E2(n->op, sa, dy, V(b)), n), n);
            break;
        case OP_ELU_GRAD: case OP_TANH_GRAD: case OP_SIGMOID_GRAD: case OP_SOFTPLUS_GRAD: case OP_GELU_GRAD: {
            Shape s = n->shape;
            if (na) accumulate(g, grad, a, with_attr(g, E2(n->op, s, dy, V(b)), n), n);
            if (!nb) break;
            int u = E2(OP_MUL, s, dy, V(a)), x = V(b); /* d(out) * dy */
            switch (n->op) {
            case OP_ELU_GRAD: /* x <= 0: dy a e^x, its own derivative; x > 0: 0 */
                d = E2(OP_SUB, s, with_attr(g, E2(OP_ELU_GRAD, s, u, x), n), E2(OP_RELU_GRAD, s, u, x));
                break;
            case OP_TANH_GRAD: /* sech^2' = -2 tanh sech^2 */
                d = E2(OP_MUL, s, ir_const(g, -2, n->loc), E2(OP_TANH_GRAD, s, E2(OP_MUL, s, u, E1(OP_TANH, s, x)), x));
                break;
            case OP_SIGMOID_GRAD: /* (s (1 - s))' = s (1 - s) (1 - 2 s) */
                d = E2(OP_SIGMOID_GRAD, s,
                       E2(OP_MUL, s, u, E2(OP_SUB, s, ONE, E2(OP_MUL, s, ir_const(g, 2, n->loc), E1(OP_SIGMOID, s, x)))), x);
                break;
            case OP_SOFTPLUS_GRAD: d = E2(OP_SIGMOID_GRAD, s, u, x); break; /* sigmoid' */
            default: { /* (Phi + x phi)' = phi (2 - x^2), phi(x) = exp(-x^2 / 2) / sqrt(2 pi) */
                int x2 = E2(OP_MUL, s, x, x);
                int phi = E2(OP_MUL, s, ir_const(g, 0.3989422804014327, n->loc),
                             E1(OP_EXP, s, E2(OP_MUL, s, ir_const(g, -0.5, n->loc), x2)));
                d = E2(OP_MUL, s, u, E2(OP_MUL, s, phi, E2(OP_SUB, s, ir_const(g, 2, n->loc), x2)));
            }
            }
            accumulate(g, grad, b, d, n);
            break;
        }
        case OP_PRELU_GRAD: /* dy (x > 0 ? 1 : a): linear in dy, 0 by x, dy [x <= 0] by a */
            if (na) accumulate(g, grad, a, E3(OP_PRELU_GRAD, sa, dy, V(b), V(c)), n);
            if (nc) {
                int u = E2(OP_MUL, sa, dy, V(a));
                accumulate(g, grad, c, E2(OP_SUB, sa, u, E2(OP_RELU_GRAD, sa, u, V(b))), n);
            }
            break;
        case OP_LOGP_STUDENT_T_GRAD: { /* dy -(nu + 1) z / (nu + z^2): by z, dy -(nu + 1) (nu - z^2) / (nu + z^2)^2 */
            Shape s = n->shape;
            double nu = n->attr[0];
            if (na) accumulate(g, grad, a, with_attr(g, E2(n->op, s, dy, V(b)), n), n);
            if (!nb) break;
            int z = V(b), z2 = E2(OP_MUL, s, z, z);
            int q = E2(OP_ADD, s, ir_const(g, nu, n->loc), z2);
            int num = E2(OP_MUL, s, ir_const(g, -(nu + 1), n->loc), E2(OP_SUB, s, ir_const(g, nu, n->loc), z2));
            accumulate(g, grad, b, E2(OP_MUL, s, E2(OP_MUL, s, dy, V(a)), E2(OP_DIV, s, num, E2(OP_MUL, s, q, q))), n);
            break;
        }
        case OP_GATE_GRAD: /* sum over rows of dy x: by dy, x g; by x, dy g */
            if (na) accumulate(g, grad, a, E2(OP_GATE, sa, V(b), dy), n);
            if (nb) accumulate(g, grad, b, E2(OP_GATE, sa, V(a), dy), n);
            break;
        case OP_PRELU_SLOPE_GRAD: /* sum over rows of dy min(x, 0): by dy, min(x, 0) g; by x, dy [x <= 0] g */
            if (na) accumulate(g, grad, a, E2(OP_GATE, sa, E2(OP_SUB, sa, V(b), E1(OP_RELU, sa, V(b))), dy), n);
            if (nb) accumulate(g, grad, b, E2(OP_GATE, sa, E2(OP_SUB, sa, V(a), E2(OP_RELU_GRAD, sa, V(a), V(b))), dy), n);
            break;
        case OP_L1_GRAD: /* dl sign(x): linear in dl, 0 by x */
            if (na) accumulate(g, grad, a, E2(OP_MUL, g->node[b].shape, dy, E2(OP_L1_GRAD, g->node[b].shape, ONE, V(b))), n);
            break;
        case OP_MSE_GRAD: { /* dl 2 (a - b) / numel: linear in dl and in a - b */
            Shape s = n->shape;
            if (na) accumulate(g, grad, a, E2(OP_MUL, s, dy, E3(OP_MSE_GRAD, s, ONE, V(b), V(c))), n);
            if (nb || nc) d = E3(OP_MSE_GRAD, s, V(a), dy, ir_const(g, 0, n->loc));
            if (nb) accumulate(g, grad, b, d, n);
            if (nc) accumulate(g, grad, c, E1(OP_NEG, s, d), n);
            break;
        }
        case OP_SIZE_GATE_FACTOR_GRAD: { /* sum_j df_j k w s_j (1 - s_j), s = sigmoid(k (w b - j)) */
            Shape s = g->node[a].shape;
            int f = E1(OP_SIZE_GATE_FACTOR, s, V(b));
            g->node[f].attr[0] = n->attr[0];
            g->node[f].attr[1] = n->attr[1];
            int ds = E2(OP_MUL, s, f, E2(OP_SUB, s, ONE, f)); /* s (1 - s) */
            double kw = n->attr[0] * n->attr[1];
            if (na) accumulate(g, grad, a, E2(OP_MUL, s, dy, E2(OP_MUL, s, ir_const(g, kw, n->loc), ds)), n);
            if (nb) { /* (s (1 - s))' by b = k w s (1 - s) (1 - 2 s) */
                int d2 = E2(OP_MUL, s, ds, E2(OP_SUB, s, ONE, E2(OP_MUL, s, ir_const(g, 2, n->loc), f)));
                accumulate(g, grad, b, E2(OP_MUL, s, E2(OP_MUL, s, dy, V(a)), E2(OP_MUL, s, ir_const(g, kw * kw, n->loc), d2)), n);
            }
            break;
        }
        case OP_CROSS_ENTROPY_GRAD: { /* dl (softmax(z) - onehot) / B */
            Shape s = n->shape;
            if (na) accumulate(g, grad, a, E2(OP_MUL, s, dy, E3(OP_CROSS_ENTROPY_GRAD, s, ONE, V(b), V(c))), n);
            if (nb) { /* by z: dl / B times the softmax's Jacobian p (v - sum p v) */
                Shape row = {.rank = 0, .batched = true};
                int p = E1(OP_SOFTMAX, s, V(b));
                int pv = E1(OP_ROWSUM, row, E2(OP_MUL, s, p, dy));
                int jv = E2(OP_MUL, s, p, E2(OP_SUB, s, dy, pv));
                accumulate(g, grad, b, E1(OP_BATCH_MEAN, s, E2(OP_MUL, s, V(a), jv)), n);
            }
            break;
        }
        default:
            NNC_BUG("no gradient rule for '%s'", op_info[n->op].name);
        }
#undef V
#undef ONE
    }
    free(remat);
}

/* needs[id] for the nodes up to root: whether they depend on a node marked in `wrt`. */
static bool *dependents(const Graph *g, int root, const bool *wrt) {
    bool *needs = util_calloc((size_t)root + 1, sizeof(bool));
    for (int id = 0; id <= root; id++) {
        const Node *n = &g->node[id];
        needs[id] = wrt[id];
        if (op_has(n->op, OF_NOGRAD) || (n->op == OP_L1 && n->attr[0] != 0)) continue; /* not differentiated */
        for (int i = 0; i < n->nin; i++) needs[id] |= needs[n->in[i]];
    }
    return needs;
}

void autodiff_graph(Graph *g) {
    NNC_ASSERT(!g->has_backward && g->loss >= 0);
    int nfwd = g->nnode;
    bool *wrt = util_calloc((size_t)nfwd, sizeof(bool));
    int *grad = util_calloc((size_t)nfwd, sizeof(int));
    for (int id = 0; id < nfwd; id++) {
        const Node *n = &g->node[id];
        grad[id] = -1;
        if (n->op == OP_WEIGHT) wrt[id] = g->weight[n->ref].kind == W_PARAM;
        if (n->op == OP_INPUT) wrt[id] = g->input_grads && n->dtype == DT_F32;
    }
    bool *needs = dependents(g, g->loss, wrt);
    g->has_backward = true;
    g->phase = PH_BACKWARD;
    if (needs[g->loss]) sweep(g, g->loss, ir_const(g, 1.0, g->node[g->loss].loc), needs, nfwd, grad);
    for (int i = 0; i < g->nweight; i++) {
        Weight *w = &g->weight[i];
        if (w->kind == W_PARAM && w->node < nfwd) w->grad = grad[w->node];
    }
    for (int i = 0; i < g->ninput; i++) g->input[i].grad = g->input[i].node < nfwd ? grad[g->input[i].node] : -1;
    free(needs);
    free(wrt);
    free(grad);
    ir_verify(g, "autodiff");
}

void autodiff_vjp(Graph *g, int root, const int *wrt, int nwrt, int *grad_out) {
    NNC_ASSERT(root >= 0 && root < g->nnode && g->node[root].shape.rank == 0 && !g->node[root].shape.batched);
    Phase was = g->phase;
    g->phase = PH_BACKWARD;
    int one = ir_const(g, 1.0, g->node[root].loc);
    g->phase = was;
    autodiff_vjp_seeded(g, &root, &one, 1, wrt, nwrt, grad_out);
}

void autodiff_vjp_seeded(Graph *g, const int *root, const int *seed, int nroot, const int *wrt, int nwrt, int *grad_out) {
    int top = -1;
    for (int k = 0; k < nroot; k++)
        if (root[k] > top) top = root[k];
    NNC_ASSERT(top >= 0 && top < g->nnode);
    bool *mark = util_calloc((size_t)top + 1, sizeof(bool));
    for (int k = 0; k < nwrt; k++) mark[wrt[k]] = wrt[k] <= top;
    bool *needs = dependents(g, top, mark);
    int *grad = util_calloc((size_t)top + 1, sizeof(int));
    for (int id = 0; id <= top; id++) grad[id] = -1;
    Phase was = g->phase;
    g->phase = PH_BACKWARD;
    for (int k = 0; k < nroot; k++) { /* each root starts with its cotangent (summed if a node is given twice) */
        const Node nd = g->node[root[k]]; /* copy: g->node moves as nodes are added */
        accumulate(g, grad, root[k], seed[k], &nd);
    }
    sweep(g, top, grad[top], needs, 0, grad); /* (it skips the nodes that do not depend on wrt) */
    g->phase = was;
    for (int k = 0; k < nwrt; k++) grad_out[k] = wrt[k] <= top ? grad[wrt[k]] : -1;
    free(mark);
    free(needs);
    free(grad);
    ir_verify(g, "autodiff_vjp_seeded");
}
