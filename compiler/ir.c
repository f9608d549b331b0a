/* ir.c: graph construction helpers, the verifier (run after every pass) and the printer
 * (see ir.h).  The printer is the contract for `nnc emit --ir`: deterministic, one node per
 * line, with the model line each node came from. */
#include "ir.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const OpInfo op_info[OP_COUNT] = {
#define OP(e, name, nin, cls, dom, flags, operands, attrs, syn) [OP_##e] = {name, nin, cls, dom, flags, operands, attrs, syn},
#include "ops.def"
#undef OP
};

Window ir_window(const Graph *g, const Node *n) {
    bool big_out = n->op == OP_COL2IM || n->op == OP_MAXPOOL_GRAD || n->op == OP_AVGPOOL_GRAD;
    Shape big = big_out ? n->shape : g->node[n->in[0]].shape, small = big_out ? g->node[n->in[0]].shape : n->shape;
    bool conv = n->op == OP_IM2COL || n->op == OP_COL2IM;
    Window w = {big.dim[0], big.dim[1], big.dim[2], small.dim[0], small.dim[1], (int64_t)n->attr[0], (int64_t)n->attr[1],
                (int64_t)n->attr[2], conv ? (int64_t)n->attr[3] : 1, conv ? (int64_t)n->attr[4] : 0, conv ? (int64_t)n->attr[5] : 0};
    return w;
}

/* A matrix product with a unit dimension is a loop kernel, not a BLAS call: it fuses with its
 * neighbours, and a BLAS call's fixed cost is most of its time (xsec_bnn's output layer: 1000 x
 * 20 x 1 shapes, 2 us each).  Only plain operands, [B,k] and a weight [r,c]:
 *   x[B,1] op(w)  (k = 1)  an outer product, elementwise x[i] w[j]          -> OC_MAP
 *   a^T b, a or b [B,1]    a column sum over the batch, sum_i a[i,.] b[i,.]  -> OC_COLSUM
 * Both add in the same order on every backend (a column sum runs down the rows on the GPU too),
 * so the CPU and CUDA devices keep computing the same bits.  A product with one output column,
 * x[B,k] w, stays a GEMM (gemm_small's dot product per row): as a row sum, in column order, its
 * dependent additions are slower than the call. */
OpClass ir_class(const Graph *g, const Node *n) {
    OpClass c = op_info[n->op].cls;
    if (n->op != OP_MATMUL) return c;
    Shape a = g->node[n->in[0]].shape, b = g->node[n->in[1]].shape;
    bool ta = n->attr[0] != 0, tb = n->attr[1] != 0;
    if (!a.batched || a.rank != 1) return c;
    if (!ta && !b.batched && b.rank == 2 && a.dim[0] == 1) return OC_MAP;
    if (ta && !tb && b.batched && b.rank == 1 && (a.dim[0] == 1 || b.dim[0] == 1)) return OC_COLSUM;
    return c;
}

Shape ir_domain(const Graph *g, const Node *n) {
    if (n->op == OP_MATMUL && ir_class(g, n) == OC_COLSUM) { /* over the wider operand */
        Shape a = g->node[n->in[0]].shape, b = g->node[n->in[1]].shape;
        return a.dim[0] == 1 ? b : a;
    }
    int d = op_info[n->op].domain;
    return d < 0 ? n->shape : g->node[n->in[d]].shape;
}

int ir_view_source(const Graph *g, int x) {
    while (op_info[g->node[x].op].cls == OC_VIEW) x = g->node[x].in[0];
    return x;
}

bool op_operand_is_runtime(Op op, int i) {
    const char *s = op_info[op].operands;
    for (int k = 0; *s; k++) {
        while (*s == ' ') s++;
        if (k == i) return *s == '$';
        while (*s && *s != ' ') s++;
    }
    return false;
}

int64_t shape_numel(Shape s) {
    int64_t n = 1;
    for (int i = 0; i < s.rank; i++) n *= s.dim[i];
    return n;
}

bool shape_eq(Shape a, Shape b) {
    if (a.rank != b.rank || a.batched != b.batched) return false;
    for (int i = 0; i < a.rank; i++)
        if (a.dim[i] != b.dim[i]) return false;
    return true;
}

Shape shape_scalar(void) { return (Shape){0}; }

Shape shape_vec(int64_t n, bool batched) {
    Shape s = {.rank = 1, .batched = batched};
    s.dim[0] = n;
    return s;
}

const char *shape_str(char *buf, size_t n, DType dt, Shape s) {
    size_t k = (size_t)snprintf(buf, n, "%s[", dt == DT_I32 ? "i32" : "f32");
    bool first = true;
    if (s.batched && k < n) {
        k += (size_t)snprintf(buf + k, n - k, "B");
        first = false;
    }
    for (int i = 0; i < s.rank && k < n; i++) {
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", first ? "" : ",", (long long)s.dim[i]);
        first = false;
    }
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

Graph *ir_new(Arena *arena) {
    Graph *g = arena_alloc(arena, sizeof *g);
    g->arena = arena;
    g->loss = -1;
    return g;
}

int ir_add(Graph *g, Op op, DType dt, Shape shape, const int *in, int nin, SrcLoc loc) {
    Node n = {.op = op, .dtype = dt, .shape = shape, .nin = nin, .loc = loc, .ref = -1, .remat_of = -1};
    NNC_ASSERT(nin <= IR_MAX_IN);
    for (int i = 0; i < nin; i++) n.in[i] = in[i];
    n.phase = g->phase;
    ARENA_PUSH(g->arena, g->node, g->nnode, g->capnode, n);
    return g->nnode - 1;
}

int ir_add1(Graph *g, Op op, Shape shape, int a, SrcLoc loc) {
    return ir_add(g, op, DT_F32, shape, &a, 1, loc);
}
int ir_add2(Graph *g, Op op, Shape shape, int a, int b, SrcLoc loc) {
    int in[2] = {a, b};
    return ir_add(g, op, DT_F32, shape, in, 2, loc);
}
int ir_add3(Graph *g, Op op, Shape shape, int a, int b, int c, SrcLoc loc) {
    int in[3] = {a, b, c};
    return ir_add(g, op, DT_F32, shape, in, 3, loc);
}

int ir_const(Graph *g, double v, SrcLoc loc) {
    int id = ir_add(g, OP_CONST, DT_F32, shape_scalar(), NULL, 0, loc);
    g->node[id].attr[0] = v;
    return id;
}

int ir_input(Graph *g, const char *name, bool is_target, bool is_class, int64_t nclass, Shape shape, SrcLoc loc) {
    Input in = {.name = name, .is_target = is_target, .is_class = is_class, .nclass = nclass, .shape = shape,
                .grad = -1, .loc = loc};
    int id = ir_add(g, OP_INPUT, is_class ? DT_I32 : DT_F32, shape, NULL, 0, loc);
    g->node[id].ref = g->ninput;
    g->node[id].name = name;
    in.node = id;
    ARENA_PUSH(g->arena, g->input, g->ninput, g->capinput, in);
    return id;
}

int ir_weight(Graph *g, const char *name, WeightKind kind, Shape shape, InitKind init, SrcLoc loc) {
    Weight w = {.name = name, .kind = kind, .shape = shape, .init = init, .grad = -1, .of = -1, .dir = -1, .hvp = -1, .prox = -1, .stat = -1, .prior = -1,
                .space = {-1, -1}, .space_inner = {1, 1}, .loc = loc};
    int id = ir_add(g, OP_WEIGHT, DT_F32, shape, NULL, 0, loc);
    g->node[id].ref = g->nweight;
    g->node[id].name = name;
    w.node = id;
    ARENA_PUSH(g->arena, g->weight, g->nweight, g->capweight, w);
    return id;
}

int ir_find_scalar(const Graph *g, const char *name) {
    for (int i = 0; i < g->nscalar; i++)
        if (!strcmp(g->scalar[i].name, name)) return i;
    return -1;
}

int ir_prediction(const Graph *g) {
    for (int o = 0; o < g->noutput; o++)
        if (g->output[o].agg == AGG_PREDICT) return g->output[o].node;
    return -1;
}

int ir_scalar(Graph *g, const char *name, ScalarKind kind, double value, SrcLoc loc) {
    int slot = ir_find_scalar(g, name);
    for (int id = 0; slot >= 0 && id < g->nnode; id++)
        if (g->node[id].op == OP_PARAM && g->node[id].ref == slot) return id;
    if (slot < 0) {
        Scalar s = {.name = name, .kind = kind, .value = value};
        ARENA_PUSH(g->arena, g->scalar, g->nscalar, g->capscalar, s);
        slot = g->nscalar - 1;
    }
    int id = ir_add(g, OP_PARAM, DT_F32, shape_scalar(), NULL, 0, loc);
    g->node[id].ref = slot;
    g->node[id].name = g->scalar[slot].name;
    return id;
}

void ir_add_output(Graph *g, const char *name, int node, Aggregate agg) {
    Output o = {.name = name, .node = node, .agg = agg};
    ARENA_PUSH(g->arena, g->output, g->noutput, g->capoutput, o);
}

/* ---- verifier ---- */

static _Noreturn void fail(const Graph *g, int id, const char *pass, const char *what) {
    StrBuf b = {0};
    ir_print(&b, g, "<graph>");
    fprintf(stderr, "%s\n", sb_str(&b));
    sb_free(&b);
    NNC_BUG("IR verifier after '%s': node %%%d (%s): %s", pass, id,
            id >= 0 ? op_info[g->node[id].op].name : "-", what);
}

/* Can input shape `in` be read inside an elementwise loop over `out`? */
static bool broadcastable(Shape in, Shape out) {
    if (shape_eq(in, out)) return true;
    if (!in.batched && in.rank == 0) return true;                   /* scalar */
    if (!in.batched && in.rank == 1 && out.batched && out.rank >= 1 && in.dim[0] == out.dim[out.rank - 1])
        return true;                                                /* a vector over the last dim */
    if (in.batched && out.batched && shape_numel(in) == 1) return true; /* one value per row */
    return false;
}

static int64_t mat_dim(Shape s, int which, bool trans) {
    /* a matrix operand: batched [B,...,k] is (B*... x k), rows given as -(...); unbatched
     * [m,k] is (m x k) */
    int64_t last = s.rank ? s.dim[s.rank - 1] : 1;
    int64_t rows = s.batched ? -(shape_numel(s) / last) : s.dim[0];
    int64_t cols = s.batched ? last : s.dim[1];
    if (trans) {
        int64_t t = rows;
        rows = cols;
        cols = t;
    }
    return which == 0 ? rows : cols;
}

void ir_verify(const Graph *g, const char *pass) {
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        if (n->op < 0 || n->op >= OP_COUNT) fail(g, id, pass, "bad op");
        const OpInfo *oi = &op_info[n->op];
        if (n->nin != oi->nin) fail(g, id, pass, "wrong number of inputs");
        for (int i = 0; i < n->nin; i++) {
            if (n->in[i] < 0 || n->in[i] >= id) fail(g, id, pass, "input is not an earlier node");
            Shape s = g->node[n->in[i]].shape;
            if (op_operand_is_runtime(n->op, i) && (s.rank != 0 || s.batched))
                fail(g, id, pass, "a run-time scalar operand is not a scalar");
        }
        if (n->shape.rank < 0 || n->shape.rank > IR_MAX_RANK) fail(g, id, pass, "bad rank");
        for (int i = 0; i < n->shape.rank; i++)
            if (n->shape.dim[i] <= 0) fail(g, id, pass, "non-positive dimension");
        const Node *a = n->nin > 0 ? &g->node[n->in[0]] : NULL;
        const Node *b = n->nin > 1 ? &g->node[n->in[1]] : NULL;
        switch (oi->cls) {
        case OC_LEAF:
            if (n->op == OP_WEIGHT && (n->ref < 0 || n->ref >= g->nweight || g->weight[n->ref].node != id))
                fail(g, id, pass, "weight node and weight table disagree");
            if (n->op == OP_PARAM && (n->ref < 0 || n->ref >= g->nscalar)) fail(g, id, pass, "bad scalar slot");
            if (n->op == OP_INPUT && (n->ref < 0 || n->ref >= g->ninput)) fail(g, id, pass, "bad input");
            break;
        case OC_VIEW:
            if (shape_numel(n->shape) != shape_numel(a->shape) || n->shape.batched != a->shape.batched)
                fail(g, id, pass, "reshape changes the number of elements");
            break;
        case OC_GEMM: {
            bool ta = n->attr[0] != 0, tb = n->attr[1] != 0;
            int64_t am = mat_dim(a->shape, 0, ta), ak = mat_dim(a->shape, 1, ta);
            int64_t bk = mat_dim(b->shape, 0, tb), bn = mat_dim(b->shape, 1, tb);
            if ((!a->shape.batched && a->shape.rank != 2) || (!b->shape.batched && b->shape.rank != 2))
                fail(g, id, pass, "matmul operand is not a matrix");
            if (ak != bk) fail(g, id, pass, "matmul inner dimensions differ");
            int64_t nm = mat_dim(n->shape, 0, false), nn = mat_dim(n->shape, 1, false);
            if (nm != am || nn != bn) fail(g, id, pass, "matmul result shape is wrong");
            break;
        }
        case OC_MAP:
            if (n->op == OP_BATCH_MEAN && !n->shape.batched) fail(g, id, pass, "batch_mean of a value without a batch");
            for (int i = 0; i < n->nin; i++)
                if (!broadcastable(g->node[n->in[i]].shape, n->shape))
                    fail(g, id, pass, "map input does not broadcast to the output shape");
            break;
        case OC_COLSUM: /* [B, n] -> [n], or per channel: [B, ..., c] -> [c] */
            if (n->shape.batched || !a->shape.batched || n->shape.rank != 1 ||
                (shape_numel(n->shape) != shape_numel(a->shape) && (a->shape.rank < 2 || a->shape.dim[a->shape.rank - 1] != n->shape.dim[0])))
                fail(g, id, pass, "colsum shapes");
            break;
        case OC_SUM:
            if (n->shape.batched || n->shape.rank != 0) fail(g, id, pass, "sum must give a scalar");
            break;
        case OC_ROW: {
            if (n->op == OP_SOFTMAX) {
                if (!a->shape.batched || a->shape.rank != 1 || !shape_eq(n->shape, a->shape))
                    fail(g, id, pass, "softmax maps [B,n] to [B,n]");
                break;
            }
            if (n->op == OP_ROWSUM) {
                if (!a->shape.batched || !n->shape.batched || shape_numel(n->shape) != 1)
                    fail(g, id, pass, "rowsum gives one value per row");
                break;
            }
            int z = n->op == OP_CROSS_ENTROPY_GRAD ? n->in[1] : n->in[0];
            int lab = n->op == OP_CROSS_ENTROPY_GRAD ? n->in[2] : n->in[1];
            const Shape zs = g->node[z].shape;
            if (!zs.batched || zs.rank != 1) fail(g, id, pass, "row op wants [B,n] logits");
            if (g->node[lab].dtype != DT_I32 || !g->node[lab].shape.batched || g->node[lab].shape.rank != 0)
                fail(g, id, pass, "labels must be i32[B]");
            if (n->op == OP_CROSS_ENTROPY_GRAD && !shape_eq(n->shape, zs)) fail(g, id, pass, "gradient shape");
            break;
        }
        case OC_WINDOW: {
            bool big_out = n->op == OP_COL2IM || n->op == OP_MAXPOOL_GRAD || n->op == OP_AVGPOOL_GRAD;
            Shape big = big_out ? n->shape : a->shape, small = big_out ? a->shape : n->shape;
            if (!big.batched || !small.batched || big.rank != 3 || small.rank != 3) fail(g, id, pass, "window ops map [B,H,W,C] feature maps");
            Window w = ir_window(g, n);
            if (w.kh < 1 || w.kw < 1 || w.stride < 1 || w.dilation < 1 || w.pad_top < 0 || w.pad_left < 0)
                fail(g, id, pass, "bad window attributes");
            bool conv = n->op == OP_IM2COL || n->op == OP_COL2IM;
            if (small.dim[2] != (conv ? w.C * w.kh * w.kw : w.C)) fail(g, id, pass, "window channels");
            /* every window starts inside the input (with padding) and, for pooling, ends inside it */
            int64_t span_h = w.dilation * (w.kh - 1) + 1, span_w = w.dilation * (w.kw - 1) + 1;
            if ((w.OH - 1) * w.stride - w.pad_top > w.H - 1 || (w.OW - 1) * w.stride - w.pad_left > w.W - 1 ||
                (!conv && ((w.OH - 1) * w.stride + span_h > w.H || (w.OW - 1) * w.stride + span_w > w.W)))
                fail(g, id, pass, "windows outside the input");
            if (n->nin == 2 && !shape_eq(b->shape, n->op == OP_MAXPOOL_GRAD ? a->shape : n->shape))
                fail(g, id, pass, "maxpool's window positions have the pooled shape");
            break;
        }
        case OC_PERMUTE: /* transpose: [A, M, N] -> [A, N, M] */
            if (n->shape.batched || a->shape.batched || a->shape.rank != 3 || n->shape.rank != 3 ||
                n->shape.dim[0] != a->shape.dim[0] || n->shape.dim[1] != a->shape.dim[2] || n->shape.dim[2] != a->shape.dim[1])
                fail(g, id, pass, "transpose swaps the last two dims of an unbatched [A,M,N]");
            break;
        case OC_INDEXED: {
            Shape as = a->shape, ns = n->shape;
            if (as.batched != ns.batched) fail(g, id, pass, "an indexed op keeps the batch");
            if (n->op == OP_AXIS_SUM || n->op == OP_AXIS_BROADCAST) {
                Shape full = n->op == OP_AXIS_SUM ? as : ns, part = n->op == OP_AXIS_SUM ? ns : as;
                int axis = (int)n->attr[0];
                bool ok = axis >= 0 && axis < full.rank && part.rank == full.rank - 1;
                for (int d = 0; ok && d < part.rank; d++) ok = part.dim[d] == full.dim[d < axis ? d : d + 1];
                if (!ok) fail(g, id, pass, "axis_sum and axis_broadcast remove or insert one axis");
                break;
            }
            /* fd_perturb [D] -> [K, D]; fd_diff [K, M] -> [M, D]; fd_diff_t [M, D] -> [K, M] */
            int method = (int)n->attr[1];
            Shape pts = n->op == OP_FD_PERTURB || n->op == OP_FD_DIFF_T ? ns : as; /* [K, .] */
            Shape grad = n->op == OP_FD_DIFF ? ns : as;                            /* [M, D] or [D] */
            int64_t D = n->op == OP_FD_PERTURB ? as.dim[0] : grad.dim[1];
            bool ok = n->attr[0] > 0 && method >= 0 && method <= 2 && pts.rank == 2 && (n->op == OP_FD_PERTURB ? as.rank == 1 : grad.rank == 2) &&
                      pts.dim[0] == (method == 0 ? 2 * D : D + 1) &&
                      (n->op == OP_FD_PERTURB ? pts.dim[1] == D : pts.dim[1] == grad.dim[0]);
            if (!ok) fail(g, id, pass, "finite-difference shapes");
            break;
        }
        case OC_UPDATE:
            for (int i = 1; i < n->nin; i++)
                if (!shape_eq(g->node[n->in[i]].shape, shape_scalar()) && !shape_eq(g->node[n->in[i]].shape, a->shape))
                    fail(g, id, pass, "update operand shapes differ");
            if (a->op != OP_WEIGHT) fail(g, id, pass, "update target is not a weight");
            break;
        case OC_COUNT: fail(g, id, pass, "bad op class");
        }
        (void)b;
        if (n->dtype == DT_I32 && n->op != OP_INPUT) fail(g, id, pass, "only inputs are i32");
    }
    if (g->loss >= g->nnode) fail(g, -1, pass, "loss node out of range");
    for (int i = 0; i < g->nweight; i++)
        if (g->weight[i].grad >= g->nnode) fail(g, -1, pass, "grad out of range");
}

/* ---- printer ---- */

static void print_attr(StrBuf *b, double v) {
    if (v == floor(v) && fabs(v) < 1e15)
        sb_printf(b, "%.0f", v);
    else
        sb_printf(b, "%.9g", v);
}

void ir_print(StrBuf *b, const Graph *g, const char *path) {
    static const char *const phase_name[] = {"forward", "backward", "update"};
    int last_phase = -1;
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        if ((int)n->phase != last_phase) {
            sb_printf(b, "; %s\n", phase_name[n->phase]);
            last_phase = (int)n->phase;
        }
        char sh[96];
        StrBuf line = {0};
        sb_printf(&line, "  %%%d = %s", id, op_info[n->op].name);
        switch (n->op) {
        case OP_INPUT: sb_printf(&line, " %s", g->input[n->ref].name); break;
        case OP_WEIGHT: sb_printf(&line, " %s", g->weight[n->ref].name); break;
        case OP_PARAM: sb_printf(&line, " %s", g->scalar[n->ref].name); break;
        case OP_CONST: sb_putc(&line, ' '); print_attr(&line, n->attr[0]); break;
        default: break;
        }
        for (int i = 0; i < n->nin; i++) sb_printf(&line, "%s %%%d", i ? "," : "", n->in[i]);
        int nattr = 0;
        for (int i = 0; i < IR_MAX_ATTR; i++)
            if (n->attr[i] != 0) nattr = i + 1;
        if (n->op != OP_CONST && nattr) {
            sb_puts(&line, " [");
            for (int i = 0; i < nattr; i++) {
                if (i) sb_putc(&line, ',');
                print_attr(&line, n->attr[i]);
            }
            sb_putc(&line, ']');
        }
        sb_printf(&line, "  %s", shape_str(sh, sizeof sh, n->dtype, n->shape));
        sb_puts(b, sb_str(&line));
        sb_free(&line);
        if (n->loc.line > 0 || n->name) {
            sb_puts(b, "  #");
            if (n->loc.line > 0) sb_printf(b, " %s:%d:%d", ir_loc_file(g, n->loc, path), n->loc.line, n->loc.col);
            if (n->name && n->op != OP_WEIGHT && n->op != OP_PARAM) sb_printf(b, " %s", n->name);
        }
        if (n->remat_of >= 0) sb_printf(b, " (recomputes %%%d)", n->remat_of);
        sb_putc(b, '\n');
    }
    if (g->noutput) {
        sb_puts(b, "; outputs\n");
        for (int i = 0; i < g->noutput; i++)
            sb_printf(b, "  %s = %%%d\n", g->output[i].name, g->output[i].node);
    }
    bool header = false;
    for (int i = 0; i < g->nweight; i++)
        if (g->weight[i].grad >= 0) {
            if (!header) sb_puts(b, "; gradients\n");
            header = true;
            sb_printf(b, "  d %s = %%%d\n", g->weight[i].name, g->weight[i].grad);
        }
    for (int i = 0; i < g->ninput; i++)
        if (g->input[i].grad >= 0) {
            if (!header) sb_puts(b, "; gradients\n");
            header = true;
            sb_printf(b, "  d %s = %%%d\n", g->input[i].name, g->input[i].grad);
        }
}

const char *ir_loc_file(const Graph *g, SrcLoc loc, const char *path) {
    return loc.file > 0 && loc.file <= g->nlib ? g->lib_path[loc.file - 1] : path;
}
