/* kernel.c: the loop-kernel builder (with common-subexpression sharing, so fused bodies
 * compute each value once) and the plan printer used by `nnc emit --plan`. */
#include <math.h>
#include <string.h>

#include "kernel.h"

const char *const prog_name[PROG_COUNT] = {"grad", "update", "eval"};

int kb_arg(KBuilder *kb, int buf, bool read, bool write) {
    Kernel *k = kb->k;
    for (int i = 0; i < k->narg; i++)
        if (k->arg[i].buf == buf) {
            k->arg[i].read |= read;
            k->arg[i].write |= write;
            return i;
        }
    ARENA_GROW(kb->plan->g->arena, k->arg, k->narg, kb->caparg);
    k->arg[k->narg] = (KArg){buf, kb->plan->buf[buf].dtype, read, write};
    return k->narg++;
}

static int expr_phase(const Kernel *k, const KExpr *e) { /* operands' phases are final */
    int p = 0;
    if (e->op == KX_RED) return k->red[e->arg].phase + 1;
    const int ops[3] = {e->a, e->b, e->c};
    for (int i = 0; i < 3; i++)
        if (ops[i] >= 0 && k->x[ops[i]].phase > p) p = k->x[ops[i]].phase;
    return p;
}

static int add_expr(KBuilder *kb, KExpr e) {
    Kernel *k = kb->k;
    for (int i = 0; i < k->nx; i++) {
        const KExpr *o = &k->x[i];
        if (o->op == e.op && o->a == e.a && o->b == e.b && o->c == e.c && o->arg == e.arg &&
            o->ix == e.ix && memcmp(&o->imm, &e.imm, sizeof e.imm) == 0)
            return i;
    }
    int level = 0;
    switch (e.op) {
    case KX_LOAD: level = e.ix == IX_SCALAR ? 0 : e.ix == IX_COL ? 1 : 2; break;
    case KX_COLIDX: level = 2; break;
    case KX_RED: level = 1; break;
    default:
        if (e.a >= 0 && k->x[e.a].level > level) level = k->x[e.a].level;
        if (e.b >= 0 && k->x[e.b].level > level) level = k->x[e.b].level;
        if (e.c >= 0 && k->x[e.c].level > level) level = k->x[e.c].level;
    }
    e.level = level;
    e.phase = expr_phase(k, &e);
    ARENA_GROW(kb->plan->g->arena, k->x, k->nx, kb->capx);
    k->x[k->nx] = e;
    return k->nx++;
}

static KExpr leaf(KxOp op) { return (KExpr){.op = op, .a = -1, .b = -1, .c = -1, .arg = -1}; }

int kb_const(KBuilder *kb, double v) {
    KExpr e = leaf(KX_CONST);
    e.imm = (float)v;
    return add_expr(kb, e);
}

int kb_scalar(KBuilder *kb, int slot) {
    KExpr e = leaf(KX_SCALAR);
    e.arg = slot;
    return add_expr(kb, e);
}

int kb_colidx(KBuilder *kb) { return add_expr(kb, leaf(KX_COLIDX)); }
int kb_rows(KBuilder *kb) { return add_expr(kb, leaf(KX_ROWS)); }
int kb_cols(KBuilder *kb) { return add_expr(kb, leaf(KX_COLS)); }

int kb_load_arg(KBuilder *kb, int arg, IndexMode ix) {
    KExpr e = leaf(KX_LOAD);
    e.arg = arg;
    e.ix = ix;
    return add_expr(kb, e);
}

int kb_un(KBuilder *kb, KxOp op, int a) {
    KExpr e = leaf(op);
    e.a = a;
    return add_expr(kb, e);
}

int kb_bin(KBuilder *kb, KxOp op, int a, int b) {
    KExpr e = leaf(op);
    e.a = a;
    e.b = b;
    return add_expr(kb, e);
}

int kb_select(KBuilder *kb, int c, int a, int b) {
    KExpr e = leaf(KX_SELECT);
    e.a = c;
    e.b = a;
    e.c = b;
    return add_expr(kb, e);
}

int kb_red(KBuilder *kb, KRedOp op, int expr) {
    Kernel *k = kb->k;
    for (int i = 0; i < k->nred; i++)
        if (k->red[i].op == op && k->red[i].expr == expr) return kb_load_red(kb, i);
    ARENA_GROW(kb->plan->g->arena, k->red, k->nred, kb->capred);
    int phase = k->x[expr].phase;
    k->red[k->nred] = (KRed){op, expr, phase};
    if (phase + 1 > k->nphase) k->nphase = phase + 1;
    return kb_load_red(kb, k->nred++);
}

int kb_load_red(KBuilder *kb, int red) {
    KExpr e = leaf(KX_RED);
    e.arg = red;
    return add_expr(kb, e);
}

void kb_out(KBuilder *kb, KOutKind kind, int arg, int expr) {
    Kernel *k = kb->k;
    ARENA_GROW(kb->plan->g->arena, k->out, k->nout, kb->capout);
    k->out[k->nout++] = (KOut){kind, arg, expr};
    k->arg[arg].write = true;
}

/* The index mode for reading `in` inside a kernel over `out`'s domain. */
static IndexMode index_mode(Shape in, const Kernel *k) {
    int64_t n = shape_numel(in);
    if (!in.batched && in.rank == 0) return IX_SCALAR;
    if (in.batched == k->rows_batch && n == k->cols) return IX_ELEM;
    if (!in.batched && k->rows_batch && n == k->cols) return IX_ROW;
    if (in.batched && k->rows_batch && n == 1) return IX_COL;
    NNC_BUG("operand does not broadcast to the kernel's domain");
}

int kb_node(KBuilder *kb, int node) {
    const Graph *g = kb->plan->g;
    const Node *n = &g->node[node];
    if (n->op == OP_CONST) return kb_const(kb, n->attr[0]);
    if (n->op == OP_PARAM) return kb_scalar(kb, n->ref);
    int buf = kb->plan->node_buf[node];
    NNC_ASSERT(buf >= 0);
    return kb_load_arg(kb, kb_arg(kb, buf, true, false), index_mode(n->shape, kb->k));
}

/* ---- printing ---- */

const char *kx_name(KxOp op) {
    static const char *const names[KX_COUNT] = {
        [KX_CONST] = "const", [KX_LOAD] = "load", [KX_SCALAR] = "scalar", [KX_COLIDX] = "j",
        [KX_ROWS] = "rows", [KX_COLS] = "cols", [KX_RED] = "red", [KX_NEG] = "neg", [KX_ABS] = "abs", [KX_EXP] = "exp", [KX_EXPM1] = "expm1",
        [KX_LOG] = "log", [KX_LOG1P] = "log1p", [KX_SQRT] = "sqrt", [KX_TANH] = "tanh",
        [KX_ERFC] = "erfc", [KX_ADD] = "add", [KX_SUB] = "sub", [KX_MUL] = "mul", [KX_DIV] = "div",
        [KX_MAX] = "max", [KX_MIN] = "min", [KX_LT] = "lt", [KX_LE] = "le", [KX_GT] = "gt",
        [KX_GE] = "ge", [KX_EQ] = "eq", [KX_NE] = "ne", [KX_SELECT] = "select",
    };
    return names[op];
}

static void print_dim(StrBuf *b, KDim d) {
    if (d.batch)
        sb_puts(b, "B");
    else
        sb_printf(b, "%lld", (long long)d.n);
}

void plan_print_kernel(StrBuf *b, const Plan *p, const Kernel *k) {
    static const char *const ixn[] = {"[i,j]", "[j]", "[i]", "[0]"};
    static const char *const redn[] = {"sum", "max", "min"};
    static const char *const outn[] = {"store", "store_row", "colsum", "sum"};
    sb_printf(b, "kernel %s", k->name);
    if (k->kind == K_GEMM) {
        sb_printf(b, "  gemm%s%s M=", k->ta ? " A^T" : "", k->tb ? " B^T" : "");
        print_dim(b, k->m);
        sb_puts(b, " N=");
        print_dim(b, k->n);
        sb_puts(b, " K=");
        print_dim(b, k->k);
    } else {
        sb_printf(b, "  loop %s x %lld", k->rows_batch ? "B" : "1", (long long)k->cols);
    }
    if (k->loc.line > 0) sb_printf(b, "  # line %d", k->loc.line);
    sb_putc(b, '\n');
    for (int i = 0; i < k->narg; i++) {
        const Buffer *bf = &p->buf[k->arg[i].buf];
        sb_printf(b, "    arg%d %-5s %s\n", i, k->arg[i].read && k->arg[i].write ? "inout" : k->arg[i].write ? "out" : "in",
                  bf->name);
    }
    for (int i = 0; i < k->nx; i++) {
        const KExpr *e = &k->x[i];
        sb_printf(b, "    x%d = %s", i, kx_name(e->op));
        switch (e->op) {
        case KX_CONST: sb_printf(b, " %.9g", (double)e->imm); break;
        case KX_LOAD: sb_printf(b, " arg%d%s", e->arg, ixn[e->ix]); break;
        case KX_SCALAR: sb_printf(b, " %s", p->g->scalar[e->arg].name); break;
        case KX_RED: sb_printf(b, " r%d", e->arg); break;
        default:
            if (e->a >= 0) sb_printf(b, " x%d", e->a);
            if (e->b >= 0) sb_printf(b, ", x%d", e->b);
            if (e->c >= 0) sb_printf(b, ", x%d", e->c);
        }
        sb_putc(b, '\n');
    }
    for (int i = 0; i < k->nred; i++)
        sb_printf(b, "    r%d = %s_j x%d  (phase %d)\n", i, redn[k->red[i].op], k->red[i].expr, k->red[i].phase);
    for (int i = 0; i < k->nout; i++)
        sb_printf(b, "    %s arg%d = x%d\n", outn[k->out[i].kind], k->out[i].arg, k->out[i].expr);
}

/* "weights 7.12 MiB, ..." with each kind's bytes (and what is live at once, when planned). */
void plan_print_memory(StrBuf *b, const Plan *p, const char *sep) {
    for (int k = 0; k < BUF_KINDS; k++) {
        double mib = (double)p->bytes_by_kind[k] / (1 << 20), peak = (double)p->peak_by_kind[k] / (1 << 20);
        sb_printf(b, "%s%s %.2f MiB", k ? sep : "", buf_kind_name[k], mib);
        if (k >= BUF_GRAD && p->peak_by_kind[k] != p->bytes_by_kind[k]) sb_printf(b, " (at most %.2f MiB live at once)", peak);
    }
}

static void print_args(StrBuf *b, const Plan *p, const Kernel *k, bool write) {
    bool first = true;
    for (int a = 0; a < k->narg; a++) {
        if (k->arg[a].write != write && !(write && k->arg[a].read && k->arg[a].write)) continue;
        if (!write && !k->arg[a].read) continue;
        const Buffer *bf = &p->buf[k->arg[a].buf];
        sb_printf(b, "%s%s%s", first ? "" : ", ", bf->name, bf->kind == BUF_SAVED ? " (saved)" : "");
        first = false;
    }
    if (first) sb_puts(b, "-");
}

void plan_print(StrBuf *b, const Plan *p, const char *path) {
    sb_printf(b, "; plan for %s, batch up to %lld\n", path, (long long)p->max_batch);
    int gemm = 0, loop = 0, sums = 0, evalk = p->prog[PROG_EVAL].nkernel;
    for (int pr = PROG_GRAD; pr <= PROG_UPDATE; pr++)
        for (int i = 0; i < p->prog[pr].nkernel; i++) {
            const Kernel *k = &p->kernel[p->prog[pr].kernel[i]];
            gemm += k->kind == K_GEMM;
            loop += k->kind == K_LOOP;
            sums += k->kind == K_LOOP && k->cuda.nsum > 0;
        }
    sb_printf(b, "; kernels per training step: %d (%d GEMMs, %d loop kernels); CUDA launches per step: %d; "
                 "kernels per evaluation batch: %d\n",
              gemm + loop, gemm, loop, gemm + loop + sums, evalk);
    sb_printf(b, "; memory: arena %.2f MiB = ", (double)p->arena_bytes / (1 << 20));
    plan_print_memory(b, p, ", ");
    sb_puts(b, "\n; buffers (offset +bytes; live: the kernels between which it is used)\n");
    static const char *const kindn[BUF_KINDS] = {"weight", "state", "input", "grad", "saved", "work"};
    for (int i = 0; i < p->nbuf; i++) {
        const Buffer *bf = &p->buf[i];
        char sh[96];
        sb_printf(b, "  b%-3d %-6s %-28s %-16s @%lld +%lld", i, kindn[bf->kind], bf->name,
                  shape_str(sh, sizeof sh, bf->dtype, p->g->node[bf->node].shape), (long long)bf->offset,
                  (long long)bf->bytes);
        if (bf->kind >= BUF_GRAD) sb_printf(b, "  live k%d..k%d", bf->first, bf->last < p->nkernel ? bf->last : p->nkernel - 1);
        sb_putc(b, '\n');
    }
    for (int pr = 0; pr < PROG_COUNT; pr++) {
        sb_printf(b, "; program %s: %d kernels, in order (reads -> writes)\n", prog_name[pr], p->prog[pr].nkernel);
        for (int i = 0; i < p->prog[pr].nkernel; i++) {
            const Kernel *k = &p->kernel[p->prog[pr].kernel[i]];
            sb_printf(b, "  %-44s ", k->name);
            print_args(b, p, k, false);
            sb_puts(b, " -> ");
            print_args(b, p, k, true);
            sb_putc(b, '\n');
        }
    }
    sb_puts(b, "; kernels\n");
    for (int i = 0; i < p->nkernel; i++) plan_print_kernel(b, p, &p->kernel[i]);
}

/* ---- signature ---- */

#define MIX(h, v)                                                                                                  \
    do {                                                                                                           \
        int64_t v_ = (int64_t)(v);                                                                                 \
        h = util_hash(&v_, sizeof v_, h);                                                                          \
    } while (0)

uint64_t plan_signature(const Plan *p) {
    uint64_t h = util_hash("nnc plan", 8, 0);
    MIX(h, p->nkernel);
    for (int i = 0; i < p->nkernel; i++) {
        const Kernel *k = &p->kernel[i];
        h = util_hash(k->name, strlen(k->name), h);
        MIX(h, k->kind);
        MIX(h, k->rows_batch);
        MIX(h, k->narg);
        for (int a = 0; a < k->narg; a++) MIX(h, k->arg[a].dtype * 4 + k->arg[a].read * 2 + k->arg[a].write);
        if (k->kind == K_GEMM) {
            MIX(h, k->ta * 16 + k->tb * 8 + k->m.batch * 4 + k->n.batch * 2 + k->k.batch);
            continue;
        }
        MIX(h, k->nx);
        for (int x = 0; x < k->nx; x++) {
            const KExpr *e = &k->x[x];
            uint32_t bits;
            memcpy(&bits, &e->imm, sizeof bits);
            int64_t v[7] = {e->op, e->a, e->b, e->c, bits, e->arg, e->ix};
            h = util_hash(v, sizeof v, h);
        }
        MIX(h, k->nred);
        for (int r = 0; r < k->nred; r++) MIX(h, k->red[r].op * 1000003 + k->red[r].expr * 31 + k->red[r].phase);
        MIX(h, k->nout);
        for (int o = 0; o < k->nout; o++) MIX(h, k->out[o].kind * 1000003 + k->out[o].arg * 65537 + k->out[o].expr);
    }
    return h;
}
