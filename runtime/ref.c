/* ref.c: plain C double-precision reference of every op (see ref.h).  Written for clarity,
 * not speed: this is what the LLVM and CUDA backends are compared against, and what the
 * finite-difference tests check autodiff against. */
#include "ref.h"

#include "elementwise.h"
#include "philox.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

RefState *ref_new(const Graph *g, int64_t rows) {
    RefState *r = util_calloc(1, sizeof *r);
    r->g = g;
    r->rows = rows;
    r->val = util_calloc((size_t)g->nnode, sizeof(double *));
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        if (n->op == OP_RESHAPE) continue; /* aliases its input, below */
        r->val[id] = util_calloc((size_t)ref_size(r, id), sizeof(double));
    }
    for (int id = 0; id < g->nnode; id++)
        if (g->node[id].op == OP_RESHAPE) r->val[id] = r->val[g->node[id].in[0]];
    r->scalar = util_calloc((size_t)(g->nscalar + 1), sizeof(double));
    ref_reset_scalars(r);
    return r;
}

void ref_reset_scalars(RefState *r) {
    for (int i = 0; i < r->g->nscalar; i++) r->scalar[i] = r->g->scalar[i].value;
}

void ref_free(RefState *r) {
    if (!r) return;
    for (int id = 0; id < r->g->nnode; id++)
        if (r->g->node[id].op != OP_RESHAPE) free(r->val[id]);
    free(r->val);
    free(r->scalar);
    free(r);
}

int64_t ref_size(const RefState *r, int id) {
    Shape s = r->g->node[id].shape;
    return shape_numel(s) * (s.batched ? r->rows : 1);
}

/* Element (i, j) of input `in` seen over an output of `cols` elements per row: the same
 * element, a scalar, a value per row, or (an unbatched vector) the entry of j's last index. */
static double at(const RefState *r, int in, int64_t i, int64_t j, int64_t cols) {
    const Node *n = &r->g->node[in];
    const double *v = r->val[in];
    int64_t per = shape_numel(n->shape);
    if (!n->shape.batched) return per == 1 && n->shape.rank == 0 ? v[0] : per == cols ? v[j] : v[j % per];
    if (per == cols) return v[i * cols + j];
    return v[i]; /* one value per row */
}

static double map_value(const Node *n, double x, double y, double z) {
    double a = n->attr[0];
    switch (n->op) {
    case OP_ADD: return x + y;
    case OP_SUB: return x - y;
    case OP_MUL: return x * y;
    case OP_DIV: return x / y;
    case OP_NEG: return -x;
    case OP_BROADCAST: return x;
    case OP_BIAS_ADD: return x + y;
    case OP_GATE: return x * y;
    case OP_TRAIN_SELECT: return z != 0 ? x : y;
    case OP_PRELU: return x > 0 ? x : y * x;
    case OP_PRELU_GRAD: return y > 0 ? x : x * z;
    case OP_L1_GRAD: return y > 0 ? x : y < 0 ? -x : 0;
    default: {
        const ElemFn *f = elem_fn(n->op);
        if (!f) NNC_BUG("'%s' is not elementwise", op_info[n->op].name);
        return n->op == f->op ? f->ref(x, a) : f->dref(x, y, a); /* derivative ops: x is dy */
    }
    }
}

static void matmul(RefState *r, const Node *n, double *out) {
    const Graph *g = r->g;
    const Node *a = &g->node[n->in[0]], *b = &g->node[n->in[1]];
    bool ta = n->attr[0] != 0, tb = n->attr[1] != 0;
    /* stored dimensions of each operand as a matrix */
    /* batched [B,...,k] is a (B*... x k) matrix */
    int64_t alast = a->shape.rank ? a->shape.dim[a->shape.rank - 1] : 1, blast = b->shape.rank ? b->shape.dim[b->shape.rank - 1] : 1;
    int64_t ar = a->shape.batched ? r->rows * (shape_numel(a->shape) / alast) : a->shape.dim[0];
    int64_t ac = a->shape.batched ? alast : a->shape.dim[1];
    int64_t br = b->shape.batched ? r->rows * (shape_numel(b->shape) / blast) : b->shape.dim[0];
    int64_t bc = b->shape.batched ? blast : b->shape.dim[1];
    int64_t M = ta ? ac : ar, K = ta ? ar : ac, N = tb ? br : bc;
    NNC_ASSERT(K == (tb ? bc : br));
    const double *A = r->val[n->in[0]], *Bv = r->val[n->in[1]];
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                double x = ta ? A[k * ac + i] : A[i * ac + k];
                double y = tb ? Bv[j * bc + k] : Bv[k * bc + j];
                s += x * y;
            }
            out[i * N + j] = s;
        }
}

static void row_op(RefState *r, const Node *n, double *out) {
    if (n->op == OP_SOFTMAX) {
        int64_t cols = shape_numel(r->g->node[n->in[0]].shape);
        for (int64_t i = 0; i < r->rows; i++) {
            const double *z = r->val[n->in[0]] + i * cols;
            double m = z[0], s = 0;
            for (int64_t j = 1; j < cols; j++) m = z[j] > m ? z[j] : m;
            for (int64_t j = 0; j < cols; j++) s += exp(z[j] - m);
            for (int64_t j = 0; j < cols; j++) out[i * cols + j] = exp(z[j] - m) / s;
        }
        return;
    }
    if (n->op == OP_ROWSUM) {
        int64_t cols = shape_numel(r->g->node[n->in[0]].shape);
        for (int64_t i = 0; i < r->rows; i++) {
            out[i] = 0;
            for (int64_t j = 0; j < cols; j++) out[i] += r->val[n->in[0]][i * cols + j];
        }
        return;
    }
    bool grad = n->op == OP_CROSS_ENTROPY_GRAD;
    int zi = grad ? n->in[1] : n->in[0], li = grad ? n->in[2] : n->in[1];
    int64_t C = shape_numel(r->g->node[zi].shape), R = r->rows;
    const double *z = r->val[zi], *lab = r->val[li];
    double total = 0;
    for (int64_t i = 0; i < R; i++) {
        const double *zr = z + i * C;
        int64_t label = (int64_t)lab[i], arg = 0;
        double m = zr[0];
        for (int64_t j = 1; j < C; j++)
            if (zr[j] > m) {
                m = zr[j];
                arg = j;
            }
        double s = 0;
        for (int64_t j = 0; j < C; j++) s += exp(zr[j] - m);
        switch (n->op) {
        case OP_CROSS_ENTROPY: total += log(s) + m - zr[label]; break;
        case OP_ACCURACY: total += arg == label; break;
        case OP_CROSS_ENTROPY_GRAD: {
            double dl = r->val[n->in[0]][0];
            for (int64_t j = 0; j < C; j++) out[i * C + j] = dl / (double)R * (exp(zr[j] - m) / s - (j == label));
            break;
        }
        default: NNC_BUG("row op");
        }
    }
    if (n->op == OP_CROSS_ENTROPY) out[0] = total / (double)R;
    if (n->op == OP_ACCURACY) out[0] = total;
}

/* The proximal step of an L1 penalty with threshold t. */
static double shrink(double p, double t) {
    double rest = fabs(p) - t;
    return rest > 0 ? (p > 0 ? rest : -rest) : 0;
}

static void update(RefState *r, const Node *n, double *flag) {
    const Graph *g = r->g;
    double *p = r->val[n->in[0]];
    const double *gr = r->val[n->in[1]];
    int64_t N = shape_numel(g->node[n->in[0]].shape);
    flag[0] = 0;
    for (int64_t i = 0; i < N; i++) flag[0] += gr[i] - gr[i];
    if (n->op == OP_RUNNING_AVG) { /* gr is the batch statistic */
        for (int64_t i = 0; i < N; i++) p[i] += n->attr[0] * (gr[i] - p[i]);
        return;
    }
    if (n->op == OP_HMC_KICK) { /* p is the momentum */
        double c = r->val[n->in[2]][0];
        for (int64_t i = 0; i < N; i++) p[i] -= c * gr[i];
        return;
    }
    if (n->op == OP_HMC_DRIFT) { /* gr is the momentum */
        const double *minv = r->val[n->in[2]];
        double eps = r->val[n->in[3]][0];
        for (int64_t i = 0; i < N; i++) p[i] += eps * minv[i] * gr[i];
        return;
    }
    if (n->op == OP_SGLD || n->op == OP_SGLD_RMS) { /* c, s, seed, step_lo, step_hi: the last five inputs */
        int at = n->nin - 5;
        double c = r->val[n->in[at]][0], s = r->val[n->in[at + 1]][0], seed = r->val[n->in[at + 2]][0];
        uint32_t step = (uint32_t)r->val[n->in[at + 3]][0] + ((uint32_t)r->val[n->in[at + 4]][0] << 24);
        double *v = n->op == OP_SGLD_RMS ? r->val[n->in[2]] : NULL, alpha = n->attr[1], lambda = n->attr[2];
        for (int64_t i = 0; i < N; i++) {
            double z = elem_normal_ref(nnc_philox_uniform((uint32_t)i, (uint32_t)n->attr[0], step, (uint32_t)seed)), G = 1;
            if (v) {
                v[i] = alpha * v[i] + (1 - alpha) * gr[i] * gr[i];
                G = 1 / (lambda + sqrt(v[i]));
            }
            p[i] += -c * G * gr[i] + s * sqrt(G) * z;
        }
        return;
    }
    double t = r->val[n->in[n->nin - 1]][0];
    bool prox = !(r->g->node[n->in[n->nin - 1]].op == OP_CONST && t == 0);
    if (n->op == OP_SGD || n->op == OP_SGD_MOMENTUM) {
        double mom = n->attr[0], wd = n->attr[2];
        double lr = r->val[n->in[n->op == OP_SGD ? 2 : 3]][0];
        double *buf = n->op == OP_SGD_MOMENTUM ? r->val[n->in[2]] : NULL;
        for (int64_t i = 0; i < N; i++) {
            double d = gr[i] + wd * p[i];
            if (buf) {
                buf[i] = mom * buf[i] + d;
                d = n->attr[1] != 0 ? d + mom * buf[i] : buf[i];
            }
            p[i] -= lr * d;
            if (prox) p[i] = shrink(p[i], t);
        }
        return;
    }
    if (n->op == OP_RMSPROP || n->op == OP_RMSPROP_MOMENTUM || n->op == OP_ADAGRAD) {
        bool ada = n->op == OP_ADAGRAD;
        double eps = n->attr[ada ? 0 : 1], wd = n->attr[ada ? 1 : 2], alpha = n->attr[0], mom = n->attr[3];
        double *v = r->val[n->in[2]], *buf = n->op == OP_RMSPROP_MOMENTUM ? r->val[n->in[3]] : NULL;
        double lr = r->val[n->in[n->nin - 2]][0];
        for (int64_t i = 0; i < N; i++) {
            double d = gr[i] + wd * p[i];
            v[i] = ada ? v[i] + d * d : alpha * v[i] + (1 - alpha) * d * d;
            double den = sqrt(v[i]) + eps, step = d / den;
            if (buf) step = buf[i] = mom * buf[i] + step;
            p[i] -= lr * step;
            if (prox) p[i] = shrink(p[i], t / den);
        }
        return;
    }
    NNC_ASSERT(n->op == OP_ADAM);
    double b1 = n->attr[0], b2 = n->attr[1], eps = n->attr[2], wd = n->attr[4];
    bool decoupled = n->attr[3] != 0;
    double *m = r->val[n->in[2]], *v = r->val[n->in[3]];
    double lr = r->val[n->in[4]][0], step = r->val[n->in[5]][0], bc2 = r->val[n->in[6]][0];
    for (int64_t i = 0; i < N; i++) {
        double d = gr[i];
        if (decoupled)
            p[i] *= 1 - lr * wd;
        else
            d += wd * p[i];
        m[i] = b1 * m[i] + (1 - b1) * d;
        v[i] = b2 * v[i] + (1 - b2) * d * d;
        double den = sqrt(v[i]) / bc2 + eps;
        p[i] -= step * m[i] / den;
        if (prox) p[i] = shrink(p[i], t / den); /* the prox step in Adam's metric */
    }
}

/* Sliding windows over [B,H,W,C], written plainly: every window, every position in it. */
static void window_op(RefState *r, const Node *n, double *out) {
    Window w = ir_window(r->g, n);
    const double *x = r->val[n->in[0]], *arg = n->nin > 1 ? r->val[n->in[1]] : NULL;
    int64_t B = r->rows, K = w.kh * w.kw, CK = w.C * K;
    bool big_out = n->op == OP_COL2IM || n->op == OP_MAXPOOL_GRAD || n->op == OP_AVGPOOL_GRAD;
    if (big_out)
        for (int64_t e = 0; e < B * w.H * w.W * w.C; e++) out[e] = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t oh = 0; oh < w.OH; oh++)
            for (int64_t ow = 0; ow < w.OW; ow++)
                for (int64_t c = 0; c < w.C; c++) {
                    int64_t small = ((b * w.OH + oh) * w.OW + ow) * w.C + c; /* pools: [B,OH,OW,C] */
                    double best = -INFINITY, sum = 0;
                    int64_t first = 0;
                    for (int64_t i = 0; i < w.kh; i++)
                        for (int64_t j = 0; j < w.kw; j++) {
                            int64_t h = oh * w.stride + i * w.dilation - w.pad_top, v = ow * w.stride + j * w.dilation - w.pad_left;
                            bool in = h >= 0 && h < w.H && v >= 0 && v < w.W;
                            int64_t big = ((b * w.H + h) * w.W + v) * w.C + c;
                            int64_t patch = ((b * w.OH + oh) * w.OW + ow) * CK + (i * w.kw + j) * w.C + c; /* im2col's */
                            switch (n->op) {
                            case OP_IM2COL: out[patch] = in ? x[big] : 0; break;
                            case OP_COL2IM: if (in) out[big] += x[patch]; break;
                            case OP_MAXPOOL: case OP_MAXPOOL_ARG:
                                if (x[big] > best) { best = x[big]; first = i * w.kw + j; }
                                break;
                            case OP_AVGPOOL: sum += x[big]; break;
                            case OP_AVGPOOL_GRAD: out[big] += x[small] / (double)K; break;
                            case OP_MAXPOOL_GRAD: if ((int64_t)arg[small] == i * w.kw + j) out[big] += x[small]; break;
                            case OP_MAXPOOL_PICK: if ((int64_t)arg[small] == i * w.kw + j) sum = x[big]; break;
                            default: NNC_BUG("window op");
                            }
                        }
                    if (n->op == OP_MAXPOOL) out[small] = best;
                    if (n->op == OP_MAXPOOL_ARG) out[small] = (double)first;
                    if (n->op == OP_AVGPOOL) out[small] = sum / (double)K;
                    if (n->op == OP_MAXPOOL_PICK) out[small] = sum;
                }
}

/* A per-sample shape seen around one axis: the elements before it, its extent, those after. */
static void around_axis(const Shape *s, int axis, int64_t *outer, int64_t *ext, int64_t *inner) {
    *outer = *inner = 1;
    for (int d = 0; d < s->rank; d++) {
        if (d < axis) *outer *= s->dim[d];
        if (d > axis) *inner *= s->dim[d];
    }
    *ext = s->dim[axis];
}

/* Axis sums and broadcasts, and fd_grad's finite differences, written plainly per sample. */
static void indexed_op(RefState *r, const Node *n, double *out) {
    const Shape is = r->g->node[n->in[0]].shape, s = n->shape;
    const double *x = r->val[n->in[0]];
    int64_t B = s.batched ? r->rows : 1, nin = shape_numel(is), nout = shape_numel(s);
    double eps = n->attr[0];
    int method = (int)n->attr[1];
    for (int64_t e = 0; e < B * nout; e++) out[e] = 0;
    for (int64_t b = 0; b < B; b++) {
        const double *xb = x + b * nin;
        double *ob = out + b * nout;
        switch (n->op) {
        case OP_AXIS_SUM: case OP_AXIS_BROADCAST: {
            int64_t outer, ext, inner;
            around_axis(n->op == OP_AXIS_SUM ? &is : &s, (int)n->attr[0], &outer, &ext, &inner);
            for (int64_t o = 0; o < outer; o++)
                for (int64_t k = 0; k < ext; k++)
                    for (int64_t i = 0; i < inner; i++) {
                        int64_t full = (o * ext + k) * inner + i, part = o * inner + i;
                        if (n->op == OP_AXIS_SUM) ob[part] += xb[full];
                        else ob[full] = xb[part];
                    }
            break;
        }
        case OP_FD_PERTURB: { /* [D] -> [K, D] */
            int64_t D = s.dim[1], K = s.dim[0];
            for (int64_t k = 0; k < K; k++)
                for (int64_t j = 0; j < D; j++) {
                    double shift = method == 0 ? (k == 2 * j ? eps : k == 2 * j + 1 ? -eps : 0)
                                               : (k == j + 1 ? (method == 1 ? eps : -eps) : 0);
                    ob[k * D + j] = xb[j] + shift;
                }
            break;
        }
        case OP_FD_DIFF: { /* [K, M] -> [M, D] */
            int64_t M = s.dim[0], D = s.dim[1];
            for (int64_t m = 0; m < M; m++)
                for (int64_t d = 0; d < D; d++)
                    ob[m * D + d] = method == 0 ? (xb[2 * d * M + m] - xb[(2 * d + 1) * M + m]) / (2 * eps)
                                    : method == 1 ? (xb[(1 + d) * M + m] - xb[m]) / eps
                                                  : (xb[m] - xb[(1 + d) * M + m]) / eps;
            break;
        }
        case OP_FD_DIFF_T: { /* [M, D] -> [K, M], fd_diff's adjoint */
            int64_t M = is.dim[0], D = is.dim[1];
            for (int64_t m = 0; m < M; m++)
                for (int64_t d = 0; d < D; d++) {
                    double v = xb[m * D + d];
                    if (method == 0) {
                        ob[2 * d * M + m] += v / (2 * eps);
                        ob[(2 * d + 1) * M + m] -= v / (2 * eps);
                    } else {
                        double sgn = method == 1 ? 1 : -1;
                        ob[(1 + d) * M + m] += sgn * v / eps;
                        ob[m] -= sgn * v / eps;
                    }
                }
            break;
        }
        default: NNC_BUG("indexed op");
        }
    }
}

static void run_node(RefState *r, int id) {
    const Graph *g = r->g;
    const Node *n = &g->node[id];
    double *out = r->val[id];
    Shape s = n->shape;
    switch (op_info[n->op].cls) {
    case OC_LEAF:
        if (n->op == OP_CONST) out[0] = n->attr[0];
        if (n->op == OP_PARAM) out[0] = r->scalar[n->ref];
        return;
    case OC_VIEW: return;
    case OC_GEMM: matmul(r, n, out); return;
    case OC_MAP: {
        int64_t rows = s.batched ? r->rows : 1, cols = shape_numel(s);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                double x = at(r, n->in[0], i, j, cols);
                double y = n->nin > 1 ? at(r, n->in[1], i, j, cols) : 0;
                double z = n->nin > 2 ? at(r, n->in[2], i, j, cols) : 0;
                if (n->op == OP_DROPOUT) { /* the element's index within the batch is the counter */
                    double train = y, seed = z, lo = r->val[n->in[3]][0], hi = r->val[n->in[4]][0];
                    double p = (float)n->attr[0]; /* the kernels compare with p as a float */
                    uint32_t step = (uint32_t)lo + ((uint32_t)hi << 24);
                    double u = nnc_philox_uniform((uint32_t)(i * cols + j), (uint32_t)n->attr[1], step, (uint32_t)seed);
                    out[i * cols + j] = train == 0 ? x : u >= p ? x * (1 / (1 - p)) : 0;
                } else if (n->op == OP_NORMAL_NOISE) { /* the element's index is the counter */
                    double train = x, seed = y, lo = z, hi = r->val[n->in[3]][0];
                    uint32_t step = (uint32_t)lo + ((uint32_t)hi << 24);
                    out[i * cols + j] =
                        train == 0 ? 0 : elem_normal_ref(nnc_philox_uniform((uint32_t)(i * cols + j), (uint32_t)n->attr[0], step, (uint32_t)seed));
                } else if (n->op == OP_BATCH_MEAN) {
                    out[i * cols + j] = x / (double)r->rows;
                } else if (n->op == OP_MSE_GRAD) {
                    double numel = (double)(cols * rows);
                    out[i * cols + j] = x * 2 * (y - z) / numel;
                } else if (n->op == OP_SIZE_GATE_FACTOR) {
                    out[i * cols + j] = elem_sigmoid_ref(n->attr[0] * (n->attr[1] * x - (double)j));
                } else {
                    out[i * cols + j] = map_value(n, x, y, z);
                }
            }
        return;
    }
    case OC_COLSUM: {
        const Shape is = g->node[n->in[0]].shape;
        int64_t cols = shape_numel(is), nout = shape_numel(s); /* per channel when nout < cols */
        for (int64_t j = 0; j < nout; j++) out[j] = 0;
        for (int64_t i = 0; i < r->rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                double dy = at(r, n->in[0], i, j, cols);
                double x = n->nin > 1 ? at(r, n->in[1], i, j, cols) : 0;
                switch (n->op) {
                case OP_COLSUM: out[j % nout] += dy; break;
                case OP_GATE_GRAD: out[j % nout] += dy * x; break;
                case OP_PRELU_SLOPE_GRAD: out[j % nout] += x > 0 ? 0 : dy * x; break;
                default: NNC_BUG("colsum op");
                }
            }
        return;
    }
    case OC_SUM: {
        const Shape is = g->node[n->in[0]].shape;
        int64_t rows = is.batched ? r->rows : 1, cols = shape_numel(is);
        double total = 0;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                double x = at(r, n->in[0], i, j, cols);
                switch (n->op) {
                case OP_SUM: total += x; break;
                case OP_L1: total += fabs(x); break;
                case OP_MSE: {
                    double d = x - at(r, n->in[1], i, j, cols);
                    total += d * d / (double)(rows * cols);
                    break;
                }
                case OP_RELATIVE_ERROR: {
                    double b = at(r, n->in[1], i, j, cols);
                    total += fabs(x - b) / fmax(fabs(b), FLT_MIN) / (double)(rows * cols);
                    break;
                }
                case OP_SIZE_GATE_FACTOR_GRAD: { /* d sigmoid(k (w b - j)) / d b = k w s (1 - s) */
                    double k = n->attr[0], w = n->attr[1];
                    double e = exp(-fabs(k * (w * at(r, n->in[1], i, j, cols) - (double)j)));
                    total += x * k * w * e / ((1 + e) * (1 + e));
                    break;
                }
                default: NNC_BUG("sum op");
                }
            }
        out[0] = total;
        return;
    }
    case OC_ROW: row_op(r, n, out); return;
    case OC_UPDATE: update(r, n, out); return;
    case OC_WINDOW: window_op(r, n, out); return;
    case OC_PERMUTE: { /* transpose [A, M, N] -> [A, N, M] */
        const double *x = r->val[n->in[0]];
        int64_t A = s.dim[0], N = s.dim[1], M = s.dim[2];
        for (int64_t a = 0; a < A; a++)
            for (int64_t j = 0; j < N; j++)
                for (int64_t i = 0; i < M; i++) out[(a * N + j) * M + i] = x[(a * M + i) * N + j];
        return;
    }
    case OC_INDEXED: indexed_op(r, n, out); return;
    case OC_COUNT: break;
    }
}

void ref_run(RefState *r, const bool *mask) {
    for (int id = 0; id < r->g->nnode; id++)
        if (!mask || mask[id]) run_node(r, id);
}
