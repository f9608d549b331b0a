/* render_cuda.c: Plan -> CUDA C (see render_cuda.h).
 *
 * Each loop kernel follows the schedule the planner chose (Kernel.cuda):
 *   CS_ELEM  a grid-stride loop over the domain's elements, each dim's index derived from it;
 *   CS_COL   a grid-stride loop over the elements of the column sums, each thread walking the
 *            other dims in order, so a column sum adds its terms in a fixed order;
 *   CS_ROW   a grid-stride loop over the outer points (the rows), each thread running the
 *            reduction phases over the inner dims, then its element outputs.
 * Values are declared where their level says (kernel-invariant at the top, per row before the
 * loops that need them, per element inside), as `const float xN`, in expression order.
 * Total sums: each thread keeps a running sum, the block adds them in shared memory (a tree
 * of __syncthreads steps), thread 0 stores the block's partial in the workspace, and the
 * kernel NAME_sum adds the partials in block order: deterministic for a given batch size.
 * Only this subset of CUDA is used: __global__ and __device__ functions, threadIdx/blockIdx/
 * blockDim/gridDim .x, one __shared__ array, __syncthreads(), rintf, sqrtf, fabsf, and bit
 * casts between float and int.
 * The transcendental functions are not CUDA's: MATH below is the same sequence of float
 * operations, with the same constants, as render_llvm.c's inline math, so that with FMA
 * contraction off the two backends compute the same bits (tests/ops/math_test.c checks it). */
#include "render_cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    StrBuf *b;
    const Kernel *k;
    bool *done; /* expression declared in an enclosing scope */
} Ctx;

static void flit(StrBuf *b, double v) {
    if (isinf(v)) {
        sb_puts(b, v > 0 ? "NNC_INF" : "(-NNC_INF)");
        return;
    }
    if (isnan(v)) {
        sb_puts(b, "(NNC_INF - NNC_INF)");
        return;
    }
    char t[48];
    snprintf(t, sizeof t, "%.9g", v);
    sb_puts(b, t);
    if (!strpbrk(t, ".e")) sb_puts(b, ".0");
    sb_putc(b, 'f');
}

/* Domain dims are named as the plan prints them: i (the first), j (the last), m1, m2, ... */
static const char *dim_var(const Kernel *k, int d, char *buf, size_t n) {
    if (d == 0) return "i";
    if (d == k->ndim - 1) return "j";
    snprintf(buf, n, "m%d", d);
    return buf;
}

static void ext_text(StrBuf *b, KDim d) {
    if (d.cols) sb_puts(b, "cols");
    else if (d.batch && d.n == 1) sb_puts(b, "rows");
    else if (d.batch) sb_printf(b, "(rows * %lld)", (long long)d.n);
    else sb_printf(b, "%lldLL", (long long)d.n);
}

/* One index of an access, without its division. */
static void idx_text(StrBuf *b, const Kernel *k, const KIdx *x) {
    int terms = 0, single = -1;
    for (int d = 0; d < k->ndim; d++)
        if (x->coef[d]) {
            terms++;
            single = d;
        }
    char nm[16];
    if (terms == 1 && x->coef[single] == 1 && !x->off) {
        sb_puts(b, dim_var(k, single, nm, sizeof nm));
        return;
    }
    sb_putc(b, '(');
    bool first = true;
    for (int d = 0; d < k->ndim; d++) {
        if (!x->coef[d]) continue;
        sb_printf(b, "%s%lldLL * %s", first ? "" : " + ", (long long)x->coef[d], dim_var(k, d, nm, sizeof nm));
        first = false;
    }
    sb_printf(b, "%s%lldLL)", first ? "" : " + ", (long long)x->off);
}

/* The offset of access a's element: row-major over its indices (Horner's form). */
static void offset_text(StrBuf *b, const Kernel *k, const KAccess *a) {
    if (a->rank == 0) {
        sb_putc(b, '0');
        return;
    }
    StrBuf t = {0};
    for (int m = 0; m < a->rank; m++) {
        StrBuf ix = {0};
        if (a->idx[m].div > 1) {
            sb_putc(&ix, '(');
            idx_text(&ix, k, &a->idx[m]);
            sb_printf(&ix, " / %lldLL)", (long long)a->idx[m].div);
        } else {
            idx_text(&ix, k, &a->idx[m]);
        }
        if (m == 0) {
            sb_puts(&t, sb_str(&ix));
        } else {
            StrBuf u = {0};
            sb_printf(&u, "%s%s%s * ", m > 1 ? "(" : "", sb_str(&t), m > 1 ? ")" : "");
            ext_text(&u, a->idx[m].ext);
            sb_printf(&u, " + %s", sb_str(&ix));
            sb_free(&t);
            t = u;
        }
        sb_free(&ix);
    }
    sb_puts(b, sb_str(&t));
    sb_free(&t);
}

/* Whether access a's element exists, as a C condition; false when every one does. */
static bool valid_text(StrBuf *b, const Kernel *k, const KAccess *a) {
    bool any = false;
    for (int m = 0; m < a->rank; m++) {
        const KIdx *x = &a->idx[m];
        if (x->div > 1) {
            sb_printf(b, "%s", any ? " && " : "");
            idx_text(b, k, x);
            sb_printf(b, " %% %lldLL == 0", (long long)x->div);
            any = true;
        }
        if (x->bounded) {
            StrBuf ix = {0};
            if (x->div > 1) sb_putc(&ix, '(');
            idx_text(&ix, k, x);
            if (x->div > 1) sb_printf(&ix, " / %lldLL)", (long long)x->div);
            sb_printf(b, "%s%s >= 0 && %s < ", any ? " && " : "", sb_str(&ix), sb_str(&ix));
            ext_text(b, x->ext);
            sb_free(&ix);
            any = true;
        }
    }
    return any;
}

static void load(Ctx *c, const KExpr *e) {
    const KAccess *a = &c->k->acc[e->arg];
    bool i32 = c->k->arg[a->arg].dtype == DT_I32;
    StrBuf cond = {0};
    bool guarded = valid_text(&cond, c->k, a);
    if (guarded) sb_printf(c->b, "(%s ? ", sb_str(&cond));
    sb_printf(c->b, "%sa%d[", i32 ? "(float)" : "", a->arg);
    offset_text(c->b, c->k, a);
    sb_putc(c->b, ']');
    if (guarded) sb_puts(c->b, " : 0.0f)");
    sb_free(&cond);
}

static void expr_text(Ctx *c, int id) {
    const KExpr *e = &c->k->x[id];
    StrBuf *b = c->b;
    static const char *const fn[KX_COUNT] = {
        [KX_ABS] = "fabsf", [KX_EXP] = "nnc_exp", [KX_EXPM1] = "nnc_expm1", [KX_LOG] = "nnc_log",
        [KX_LOG1P] = "nnc_log1p", [KX_SQRT] = "sqrtf", [KX_TANH] = "nnc_tanh", [KX_ERFC] = "nnc_erfc",
    };
    static const char *const bin[KX_COUNT] = {
        [KX_ADD] = "+", [KX_SUB] = "-", [KX_MUL] = "*", [KX_DIV] = "/",
        [KX_LT] = "<", [KX_LE] = "<=", [KX_GT] = ">", [KX_GE] = ">=", [KX_EQ] = "==", [KX_NE] = "!=",
    };
    switch (e->op) {
    case KX_CONST: flit(b, (double)e->imm); return;
    case KX_LOAD: load(c, e); return;
    case KX_SCALAR: sb_printf(b, "scalars[%d]", e->arg); return;
    case KX_INDEX: {
        char nm[16];
        sb_printf(b, "(float)%s", dim_var(c->k, e->arg, nm, sizeof nm));
        return;
    }
    case KX_ROWS: sb_puts(b, "(float)rows"); return;
    case KX_EXTENT:
        sb_puts(b, "(float)");
        ext_text(b, c->k->dim[e->arg]);
        return;
    case KX_RED: sb_printf(b, "r%d", e->arg); return;
    case KX_RANDOM: { /* the element's row-major index in the domain is the counter */
        KAccess all = {.rank = c->k->ndim}; /* every dim in order: the row-major index */
        for (int d = 0; d < c->k->ndim; d++) {
            all.idx[d] = (KIdx){.div = 1, .ext = c->k->dim[d]};
            all.idx[d].coef[d] = 1;
        }
        sb_puts(b, "nnc_philox_u01((unsigned)(");
        offset_text(b, c->k, &all);
        sb_printf(b, "), %du, (unsigned)x%d + ((unsigned)x%d << 24), (unsigned)x%d)", e->arg, e->b, e->c, e->a);
        return;
    }
    case KX_NEG: sb_printf(b, "-x%d", e->a); return;
    case KX_ADD: case KX_SUB: case KX_MUL: case KX_DIV:
        sb_printf(b, "x%d %s x%d", e->a, bin[e->op], e->b);
        return;
    case KX_LT: case KX_LE: case KX_GT: case KX_GE: case KX_EQ: case KX_NE:
        sb_printf(b, "x%d %s x%d ? 1.0f : 0.0f", e->a, bin[e->op], e->b);
        return;
    case KX_MAX: sb_printf(b, "x%d > x%d ? x%d : x%d", e->a, e->b, e->a, e->b); return;
    case KX_MIN: sb_printf(b, "x%d < x%d ? x%d : x%d", e->a, e->b, e->a, e->b); return;
    case KX_SELECT: sb_printf(b, "x%d != 0.0f ? x%d : x%d", e->a, e->b, e->c); return;
    default:
        if (fn[e->op]) {
            sb_printf(b, "%s(x%d)", fn[e->op], e->a);
            return;
        }
    }
    NNC_BUG("expression op %d", e->op);
}

/* Mark what `root` needs. */
static void need(const Kernel *k, bool *mask, int root) {
    if (root < 0 || mask[root]) return;
    mask[root] = true;
    need(k, mask, k->x[root].a);
    need(k, mask, k->x[root].b);
    need(k, mask, k->x[root].c);
}

/* Declare, at the current point, every needed expression of `level` computable by `phase`
 * that no enclosing scope declared; `scoped` lists those declared here (undone afterwards). */
static void declare(Ctx *c, const bool *mask, int level, int phase, int indent, bool *scoped) {
    for (int id = 0; id < c->k->nx; id++) {
        const KExpr *e = &c->k->x[id];
        if (!mask[id] || c->done[id] || e->level != level || e->phase > phase) continue;
        sb_printf(c->b, "%*sconst float x%d = ", indent, "", id);
        expr_text(c, id);
        sb_puts(c->b, ";\n");
        c->done[id] = true;
        if (scoped) scoped[id] = true;
    }
}

static void leave(Ctx *c, bool *scoped) {
    for (int id = 0; id < c->k->nx; id++)
        if (scoped[id]) {
            c->done[id] = false;
            scoped[id] = false;
        }
}

static void grid_stride(StrBuf *b, const char *var, const char *count, int indent) {
    sb_printf(b, "%*sfor (long long %s = (long long)blockIdx.x * blockDim.x + threadIdx.x; %s < %s;\n"
                 "%*s     %s += (long long)gridDim.x * blockDim.x) {\n",
              indent, "", var, var, count, indent, "", var);
}

/* Element outputs and element-level sums, inside a loop where i and j are set. */
static void element_outputs(Ctx *c, int indent) {
    const Kernel *k = c->k;
    for (int o = 0, s = 0; o < k->nout; o++) {
        const KOut *out = &k->out[o];
        if (out->kind == KO_STORE) {
            sb_printf(c->b, "%*sa%d[", indent, "", out->arg);
            offset_text(c->b, k, &k->acc[out->acc]);
            sb_printf(c->b, "] = x%d;\n", out->expr);
        }
        if (out->kind == KO_COLSUM) sb_printf(c->b, "%*scol%d += x%d;\n", indent, "", o, out->expr);
        if (out->kind == KO_SUM) {
            if (k->x[out->expr].level == 2) sb_printf(c->b, "%*ssum%d += x%d;\n", indent, "", s, out->expr);
            s++;
        }
    }
}

static void row_outputs(Ctx *c, int indent) {
    const Kernel *k = c->k;
    for (int o = 0, s = 0; o < k->nout; o++) {
        const KOut *out = &k->out[o];
        if (out->kind == KO_STORE_ROW) {
            sb_printf(c->b, "%*sa%d[", indent, "", out->arg);
            offset_text(c->b, k, &k->acc[out->acc]);
            sb_printf(c->b, "] = x%d;\n", out->expr);
        }
        if (out->kind == KO_SUM) {
            if (k->x[out->expr].level < 2) sb_printf(c->b, "%*ssum%d += x%d;\n", indent, "", s, out->expr);
            s++;
        }
    }
}

static bool has_element_outputs(const Kernel *k) {
    for (int o = 0; o < k->nout; o++)
        if (k->out[o].kind == KO_STORE || k->out[o].kind == KO_COLSUM ||
            (k->out[o].kind == KO_SUM && k->x[k->out[o].expr].level == 2))
            return true;
    return false;
}

const char *cuda_sum_name(char *buf, size_t n, const Kernel *k) {
    snprintf(buf, n, "%s_sum", k->name);
    return buf;
}

/* for loops over domain dims [from, to), outermost first; returns the indent inside them */
static int open_loops(StrBuf *b, const Kernel *k, int from, int to, int indent) {
    for (int d = from; d < to; d++) {
        char nm[16];
        const char *v = dim_var(k, d, nm, sizeof nm);
        sb_printf(b, "%*sfor (long long %s = 0; %s < ", indent, "", v, v);
        ext_text(b, k->dim[d]);
        sb_printf(b, "; %s++) {\n", v);
        indent += 4;
    }
    return indent;
}

static int close_loops(StrBuf *b, int n, int indent) {
    for (int d = 0; d < n; d++) {
        indent -= 4;
        sb_printf(b, "%*s}\n", indent, "");
    }
    return indent;
}

/* Declares the dims `dims` (in order) from the flat index `var`, the last varying fastest. */
static void split_index(StrBuf *b, const Kernel *k, const int *dims, int n, const char *var, int indent) {
    char nm[16];
    if (n == 1) {
        sb_printf(b, "%*sconst long long %s = %s;\n", indent, "", dim_var(k, dims[0], nm, sizeof nm), var);
        return;
    }
    if (n == 2 && dims[0] == 0 && dims[1] == k->ndim - 1) { /* the 2-d form */
        sb_printf(b, "%*sconst long long i = %s / cols, j = %s - i * cols;\n", indent, "", var, var);
        return;
    }
    sb_printf(b, "%*slong long t_ = %s;\n", indent, "", var);
    for (int q = n - 1; q > 0; q--) {
        sb_printf(b, "%*sconst long long %s = t_ %% ", indent, "", dim_var(k, dims[q], nm, sizeof nm));
        ext_text(b, k->dim[dims[q]]);
        sb_puts(b, ";\n");
        sb_printf(b, "%*st_ /= ", indent, "");
        ext_text(b, k->dim[dims[q]]);
        sb_puts(b, ";\n");
    }
    sb_printf(b, "%*sconst long long %s = t_;\n", indent, "", dim_var(k, dims[0], nm, sizeof nm));
}

/* The number of work items of the schedule, as C text ("r" is the call's row count). */
static void work_text(StrBuf *b, const Kernel *k, const int *dims, int n) {
    for (int q = 0; q < n; q++) {
        if (q) sb_puts(b, " * ");
        KDim d = k->dim[dims[q]];
        if (dims[q] == 0 && d.n == 1) sb_puts(b, "rows"); /* 1 when the kernel is not batched */
        else ext_text(b, d);
    }
}

/* The domain dims a column sum's access is indexed by (each index is one dim, in order). */
static int colsum_dims(const Kernel *k, int *dims) {
    for (int o = 0; o < k->nout; o++) {
        if (k->out[o].kind != KO_COLSUM) continue;
        const KAccess *a = &k->acc[k->out[o].acc];
        for (int m = 0; m < a->rank; m++) {
            dims[m] = -1;
            for (int d = 0; d < k->ndim; d++)
                if (a->idx[m].coef[d]) {
                    NNC_ASSERT(dims[m] < 0 && a->idx[m].coef[d] == 1 && !a->idx[m].off);
                    dims[m] = d;
                }
            NNC_ASSERT(dims[m] >= 0 && (m == 0 || dims[m] > dims[m - 1]));
        }
        return a->rank;
    }
    NNC_BUG("no column sum");
}

static void render_kernel(StrBuf *b, const Plan *p, const Kernel *k, const char *path) {
    const Graph *g = p->g;
    static const char *const sched[] = {"a thread per element", "a thread per column", "a thread per row"};
    NNC_ASSERT(k->narg <= CUDA_MAX_ARGS);
    sb_printf(b, "/* %s:", k->name);
    for (int m = 0; m < k->nmember; m++) { /* each op it computes, with the model line it came from */
        const Node *n = &g->node[k->member[m]];
        sb_printf(b, "%s %s", m ? "," : "", op_info[n->op].name);
        if (n->loc.line > 0) sb_printf(b, " at %s:%d:%d", ir_loc_file(g, n->loc, path), n->loc.line, n->loc.col);
        if (n->name) sb_printf(b, " (layer %s)", n->name);
        if (n->remat_of >= 0) sb_puts(b, " (recomputed)");
    }
    sb_puts(b, "\n * ");
    for (int d = 0; d < k->ndim; d++) {
        if (d) sb_puts(b, d == k->nouter && k->nouter > 1 ? " | " : " x ");
        if (k->dim[d].batch) sb_puts(b, "B");
        else sb_printf(b, "%lld", (long long)(d == 0 ? 1 : k->dim[d].n));
    }
    sb_printf(b, "; %s, %d per block, at most %d blocks%s */\n", sched[k->cuda.sched], k->cuda.threads, k->cuda.max_blocks,
              k->cuda.nsum ? "; one partial sum per block" : "");
    sb_printf(b, "NNC_KERNEL void %s(long long rows, const float *__restrict__ scalars, NncArgs args) {\n", k->name);
    for (int a = 0; a < k->narg; a++) {
        const char *t = k->arg[a].dtype == DT_I32 ? "int" : "float";
        sb_printf(b, "    %s%s *__restrict__ a%d = (%s%s *)args.p[%d]; /* %s */\n", k->arg[a].write ? "" : "const ", t, a,
                  k->arg[a].write ? "" : "const ", t, a, p->buf[k->arg[a].buf].name);
    }
    sb_printf(b, "    const long long cols = %lld;\n", (long long)kernel_cols(k));
    if (!kernel_batched(k)) sb_puts(b, "    rows = 1;\n");
    bool *mask = util_calloc((size_t)k->nx + 1, sizeof(bool));
    bool *done = util_calloc((size_t)k->nx + 1, sizeof(bool));
    bool *scoped = util_calloc((size_t)k->nx + 1, sizeof(bool));
    for (int r = 0; r < k->nred; r++) need(k, mask, k->red[r].expr);
    for (int o = 0; o < k->nout; o++) need(k, mask, k->out[o].expr);
    Ctx c = {b, k, done};
    declare(&c, mask, 0, 0, 4, NULL);
    for (int s = 0; s < k->cuda.nsum; s++) sb_printf(b, "    float sum%d = 0.0f;\n", s);
    int all[K_MAX_DIMS];
    for (int d = 0; d < k->ndim; d++) all[d] = d;
    switch (k->cuda.sched) {
    case CS_ELEM: {
        StrBuf w = {0};
        work_text(&w, k, all, k->ndim);
        grid_stride(b, "e", sb_str(&w), 4);
        sb_free(&w);
        split_index(b, k, all, k->ndim, "e", 8);
        declare(&c, mask, 1, 0, 8, scoped);
        declare(&c, mask, 2, 0, 8, scoped);
        element_outputs(&c, 8);
        leave(&c, scoped);
        sb_puts(b, "    }\n");
        break;
    }
    case CS_COL: {
        int cd[K_MAX_DIMS], rest[K_MAX_DIMS], ncd = colsum_dims(k, cd), nrest = 0;
        for (int d = 0; d < k->ndim; d++) {
            bool in = false;
            for (int q = 0; q < ncd; q++) in |= cd[q] == d;
            if (!in) rest[nrest++] = d;
        }
        StrBuf w = {0};
        work_text(&w, k, cd, ncd);
        bool plain = ncd == 1 && cd[0] == k->ndim - 1; /* a thread per column j */
        grid_stride(b, plain ? "j" : "q", sb_str(&w), 4);
        sb_free(&w);
        if (!plain) split_index(b, k, cd, ncd, "q", 8);
        for (int o = 0; o < k->nout; o++)
            if (k->out[o].kind == KO_COLSUM) sb_printf(b, "        float col%d = 0.0f;\n", o);
        int ind = 8;
        for (int q = 0; q < nrest; q++) ind = open_loops(b, k, rest[q], rest[q] + 1, ind);
        declare(&c, mask, 1, 0, ind, scoped);
        declare(&c, mask, 2, 0, ind, scoped);
        element_outputs(&c, ind);
        leave(&c, scoped);
        close_loops(b, nrest, ind);
        for (int o = 0; o < k->nout; o++)
            if (k->out[o].kind == KO_COLSUM) {
                sb_printf(b, "        a%d[", k->out[o].arg);
                offset_text(b, k, &k->acc[k->out[o].acc]);
                sb_printf(b, "] = col%d;\n", o);
            }
        sb_puts(b, "    }\n");
        break;
    }
    case CS_ROW: {
        bool *rowscope = util_calloc((size_t)k->nx + 1, sizeof(bool));
        StrBuf w = {0};
        work_text(&w, k, all, k->nouter);
        grid_stride(b, k->nouter == 1 ? "i" : "o", sb_str(&w), 4);
        sb_free(&w);
        if (k->nouter > 1) split_index(b, k, all, k->nouter, "o", 8);
        int nin = k->ndim - k->nouter;
        for (int ph = 0; ph < k->nphase; ph++) {
            declare(&c, mask, 1, ph, 8, rowscope);
            for (int r = 0; r < k->nred; r++)
                if (k->red[r].phase == ph)
                    sb_printf(b, "        float r%d = %s;\n", r,
                              k->red[r].op == KR_SUM ? "0.0f" : k->red[r].op == KR_MAX ? "-NNC_INF" : "NNC_INF");
            int ind = open_loops(b, k, k->nouter, k->ndim, 8);
            bool *mk = util_calloc((size_t)k->nx + 1, sizeof(bool));
            for (int r = 0; r < k->nred; r++)
                if (k->red[r].phase == ph) need(k, mk, k->red[r].expr);
            declare(&c, mk, 2, ph, ind, scoped);
            for (int r = 0; r < k->nred; r++) {
                if (k->red[r].phase != ph) continue;
                int x = k->red[r].expr;
                if (k->red[r].op == KR_SUM)
                    sb_printf(b, "%*sr%d += x%d;\n", ind, "", r, x);
                else
                    sb_printf(b, "%*sr%d = x%d %s r%d ? x%d : r%d;\n", ind, "", r, x, k->red[r].op == KR_MAX ? ">" : "<", r, x, r);
            }
            leave(&c, scoped);
            free(mk);
            close_loops(b, nin, ind);
        }
        declare(&c, mask, 1, k->nphase, 8, rowscope);
        row_outputs(&c, 8);
        if (has_element_outputs(k)) {
            int ind = open_loops(b, k, k->nouter, k->ndim, 8);
            declare(&c, mask, 2, k->nphase, ind, scoped);
            element_outputs(&c, ind);
            leave(&c, scoped);
            close_loops(b, nin, ind);
        }
        leave(&c, rowscope);
        free(rowscope);
        sb_puts(b, "    }\n");
        break;
    }
    }
    if (k->cuda.nsum) {
        sb_printf(b, "    float *__restrict__ nnc_ws = (float *)args.p[%d];\n", CUDA_MAX_ARGS);
        sb_printf(b, "    __shared__ float nnc_part[%d];\n", k->cuda.threads);
        for (int s = 0; s < k->cuda.nsum; s++) {
            sb_printf(b, "    nnc_part[threadIdx.x] = sum%d;\n", s);
            sb_puts(b, "    __syncthreads();\n");
            sb_puts(b, "    for (unsigned h = blockDim.x / 2; h > 0; h >>= 1) {\n");
            sb_puts(b, "        if (threadIdx.x < h) nnc_part[threadIdx.x] += nnc_part[threadIdx.x + h];\n");
            sb_puts(b, "        __syncthreads();\n    }\n");
            sb_printf(b, "    if (threadIdx.x == 0) nnc_ws[%d + blockIdx.x] = nnc_part[0];\n", s * k->cuda.max_blocks);
            sb_puts(b, "    __syncthreads();\n");
        }
    }
    sb_puts(b, "}\n\n");
    if (k->cuda.nsum) {
        char name[96];
        sb_printf(b, "/* %s: adds %s's per-block partial sums, in block order (one thread) */\n",
                  cuda_sum_name(name, sizeof name, k), k->name);
        sb_printf(b, "NNC_KERNEL void %s(long long rows, const float *__restrict__ scalars, NncArgs args) {\n", name);
        sb_printf(b, "    const float *__restrict__ nnc_ws = (const float *)args.p[%d];\n", CUDA_MAX_ARGS);
        int cd[K_MAX_DIMS], n = k->cuda.sched == CS_ELEM ? k->ndim : k->nouter;
        if (k->cuda.sched == CS_COL) n = colsum_dims(k, cd);
        StrBuf w = {0};
        work_text(&w, k, k->cuda.sched == CS_COL ? cd : all, n);
        sb_printf(b, "    const long long cols = %lld;\n", (long long)kernel_cols(k));
        if (!kernel_batched(k)) sb_puts(b, "    rows = 1;\n");
        sb_printf(b, "    long long blocks = (%s + %d - 1) / %d;\n", sb_str(&w), k->cuda.threads, k->cuda.threads);
        sb_free(&w);
        sb_printf(b, "    if (blocks < 1) blocks = 1;\n    if (blocks > %d) blocks = %d;\n", k->cuda.max_blocks, k->cuda.max_blocks);
        sb_puts(b, "    if (blockIdx.x != 0 || threadIdx.x != 0) return;\n");
        for (int o = 0, s = 0; o < k->nout; o++) {
            if (k->out[o].kind != KO_SUM) continue;
            sb_printf(b, "    float t%d = 0.0f;\n", s);
            sb_printf(b, "    for (long long q = 0; q < blocks; q++) t%d += nnc_ws[%d + q];\n", s, s * k->cuda.max_blocks);
            sb_printf(b, "    ((float *)args.p[%d])[0] = t%d;\n", k->out[o].arg, s);
            s++;
        }
        sb_puts(b, "}\n\n");
    }
    free(mask);
    free(done);
    free(scoped);
}

/* exp, expm1, log, log1p, tanh, erfc: render_llvm.c's build_* functions, operation for operation
 * (constants written as (float)<double>, as LLVMConstReal rounds them). */
static const char MATH[] =
    "/* Philox-4x32-10, the same rounds as runtime/philox.h and render_llvm.c */\n"
    "__device__ static float nnc_philox_u01(unsigned c0, unsigned c1, unsigned c2, unsigned k0) {\n"
    "    unsigned c3 = 0u, k1 = 0x6e6e6300u;\n"
    "    for (int r = 0; r < 10; r++) {\n"
    "        if (r > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }\n"
    "        unsigned long long p0 = 0xD2511F53ull * c0, p1 = 0xCD9E8D57ull * c2;\n"
    "        unsigned hi0 = (unsigned)(p0 >> 32), lo0 = (unsigned)p0, hi1 = (unsigned)(p1 >> 32), lo1 = (unsigned)p1;\n"
    "        c0 = hi1 ^ c1 ^ k0; c1 = lo1; c2 = hi0 ^ c3 ^ k1; c3 = lo0;\n"
    "    }\n"
    "    return (float)(c0 >> 8) * (1.0f / 16777216.0f);\n"
    "}\n"
    "#ifndef NNC_AS_FLOAT\n"
    "#define NNC_AS_FLOAT(i) __int_as_float(i)\n"
    "#define NNC_AS_INT(f) __float_as_int(f)\n"
    "#endif\n"
    "#define NNC_F(c) ((float)(c))\n"
    "__device__ static float nnc_poly(float x, const float *c, int n) {\n"
    "    float acc = c[n - 1];\n"
    "    for (int i = n - 2; i >= 0; i--) acc = acc * x + c[i];\n"
    "    return acc;\n"
    "}\n"
    "__device__ static float nnc_pow2i(int n) { return NNC_AS_FLOAT((int)((unsigned)(n + 127) << 23)); }\n"
    "__device__ static float nnc_exp(float x) {\n"
    "    const float c[8] = {NNC_F(1.0), NNC_F(1.0), NNC_F(0.5), NNC_F(1.0 / 6), NNC_F(1.0 / 24), NNC_F(1.0 / 120),\n"
    "                        NNC_F(1.0 / 720), NNC_F(1.0 / 5040)};\n"
    "    float xc = x < NNC_F(-104.0) ? NNC_F(-104.0) : x;\n"
    "    xc = xc > NNC_F(89.0) ? NNC_F(89.0) : xc;\n"
    "    float nf = rintf(xc * NNC_F(1.4426950408889634));\n"
    "    float r = (xc - nf * NNC_F(0.693145751953125)) - nf * NNC_F(1.428606820309417e-06);\n"
    "    float p = nnc_poly(r, c, 8);\n"
    "    int n = (int)nf, h = n >> 1;\n"
    "    float res = (p * nnc_pow2i(h)) * nnc_pow2i(n - h);\n"
    "    res = x > NNC_F(88.72283935546875) ? NNC_INF : res;\n"
    "    res = x < NNC_F(-103.972084045410) ? NNC_F(0.0) : res;\n"
    "    return x != x ? x : res;\n"
    "}\n"
    "__device__ static float nnc_expm1(float x) {\n"
    "    const float c[8] = {NNC_F(1.0), NNC_F(0.5), NNC_F(1.0 / 6), NNC_F(1.0 / 24), NNC_F(1.0 / 120), NNC_F(1.0 / 720),\n"
    "                        NNC_F(1.0 / 5040), NNC_F(1.0 / 40320)};\n"
    "    float small = x * nnc_poly(x, c, 8);\n"
    "    float big = nnc_exp(x) - NNC_F(1.0);\n"
    "    return fabsf(x) < NNC_F(0.5) ? small : big;\n"
    "}\n"
    "__device__ static float nnc_log(float x) {\n"
    "    const float c[5] = {NNC_F(2.0), NNC_F(2.0 / 3), NNC_F(2.0 / 5), NNC_F(2.0 / 7), NNC_F(2.0 / 9)};\n"
    "    int tiny = x < NNC_F(1.1754943508222875e-38);\n"
    "    float xs = tiny ? x * NNC_F(8388608.0) : x;\n"
    "    unsigned bits = (unsigned)NNC_AS_INT(xs);\n"
    "    int e = (int)(bits >> 23) - 127;\n"
    "    e = tiny ? e - 23 : e;\n"
    "    float m = NNC_AS_FLOAT((int)((bits & 0x7fffffu) | 0x3f800000u));\n"
    "    int big = m > NNC_F(1.4142135623730951);\n"
    "    m = big ? m * NNC_F(0.5) : m;\n"
    "    e = big ? e + 1 : e;\n"
    "    float f = (m - NNC_F(1.0)) / (m + NNC_F(1.0));\n"
    "    float lm = f * nnc_poly(f * f, c, 5);\n"
    "    float ef = (float)e;\n"
    "    float res = ef * NNC_F(0.693145751953125) + (ef * NNC_F(1.428606820309417e-06) + lm);\n"
    "    res = x == NNC_F(0.0) ? -NNC_INF : res;\n"
    "    res = x == NNC_INF ? x : res;\n"
    "    return !(x >= NNC_F(0.0)) ? NNC_INF - NNC_INF : res;\n"
    "}\n"
    "__device__ static float nnc_log1p(float x) {\n"
    "    float u = x + NNC_F(1.0);\n"
    "    float res = (nnc_log(u) * x) / (u - NNC_F(1.0));\n"
    "    res = u == NNC_F(1.0) ? x : res;\n"
    "    res = u == NNC_INF ? u : res;\n"
    "    return u == NNC_F(0.0) ? -NNC_INF : res;\n"
    "}\n"
    "__device__ static float nnc_tanh(float x) {\n"
    "    const float c[5] = {NNC_F(1.0), NNC_F(-1.0 / 3), NNC_F(2.0 / 15), NNC_F(-17.0 / 315), NNC_F(62.0 / 2835)};\n"
    "    float ax = fabsf(x);\n"
    "    float t = nnc_exp(ax * NNC_F(-2.0));\n"
    "    float big = (NNC_F(1.0) - t) / (NNC_F(1.0) + t);\n"
    "    big = x < NNC_F(0.0) ? -big : big;\n"
    "    float small = x * nnc_poly(x * x, c, 5);\n"
    "    return ax < NNC_F(0.25) ? small : big;\n"
    "}\n"
    "__device__ static float nnc_erfc(float x) {\n"
    "    const float c[10] = {NNC_F(-1.26551223), NNC_F(1.00002368), NNC_F(0.37409196), NNC_F(0.09678418),\n"
    "                         NNC_F(-0.18628806), NNC_F(0.27886807), NNC_F(-1.13520398), NNC_F(1.48851587),\n"
    "                         NNC_F(-0.82215223), NNC_F(0.17087277)};\n"
    "    float z = fabsf(x);\n"
    "    float t = NNC_F(1.0) / (NNC_F(1.0) + NNC_F(0.5) * z);\n"
    "    float r = t * nnc_exp(-z * z + nnc_poly(t, c, 10));\n"
    "    r = x < NNC_F(0.0) ? NNC_F(2.0) - r : r;\n"
    "    return x != x ? x : r;\n"
    "}\n\n";

char *cuda_render(const Plan *p, const char *path) {
    StrBuf b = {0};
    int nloop = 0;
    for (int i = 0; i < p->nkernel; i++) nloop += p->kernel[i].kind == K_LOOP;
    sb_printf(&b, "/* CUDA C generated by nnc from %s: %d loop kernels (the plan's %d GEMMs run on cuBLAS).\n"
                  " * It uses only the subset of CUDA that docs/cuda.md describes, which the emulated device\n"
                  " * (--device cuda-emu) runs on the host with runtime/cuda_emu_prelude.h. */\n",
              path, nloop, p->nkernel - nloop);
    sb_puts(&b, "#ifndef NNC_KERNEL\n#define NNC_KERNEL extern \"C\" __global__\n#endif\n");
    sb_puts(&b, "#ifndef NNC_INF\n#define NNC_INF (1.0f / 0.0f)\n#endif\n");
    sb_printf(&b, "#ifndef NNC_ARGS_DEFINED\n#define NNC_ARGS_DEFINED\ntypedef struct NncArgs { void *p[%d]; } NncArgs;\n#endif\n\n",
              CUDA_MAX_ARGS + 1);
    sb_puts(&b, MATH);
    for (int i = 0; i < p->nkernel; i++)
        if (p->kernel[i].kind == K_LOOP) render_kernel(&b, p, &p->kernel[i], path);
    char *r = util_strdup(sb_str(&b));
    sb_free(&b);
    return r;
}
