/* kernel.c: the loop-kernel builder (with common-subexpression sharing, so fused bodies
 * compute each value once) and the plan printer used by `nnc emit --plan`. */
#include <math.h>
#include <string.h>

#include "kernel.h"
#include "lower.h"

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

/* The deepest loop level access `a` depends on: 0 none, 1 outer dims only, 2 inner dims. */
static int access_level(const Kernel *k, const KAccess *a) {
    int level = 0;
    for (int m = 0; m < a->rank; m++)
        for (int d = 0; d < k->ndim; d++)
            if (a->idx[m].coef[d] != 0 && (d < k->nouter ? 1 : 2) > level) level = d < k->nouter ? 1 : 2;
    return level;
}

static int add_expr(KBuilder *kb, KExpr e) {
    Kernel *k = kb->k;
    for (int i = 0; i < k->nx; i++) {
        const KExpr *o = &k->x[i];
        if (o->op == e.op && o->a == e.a && o->b == e.b && o->c == e.c && o->arg == e.arg &&
            memcmp(&o->imm, &e.imm, sizeof e.imm) == 0)
            return i;
    }
    int level = 0;
    switch (e.op) {
    case KX_LOAD: level = access_level(k, &k->acc[e.arg]); break;
    case KX_INDEX: level = e.arg < k->nouter ? 1 : 2; break;
    case KX_RED: level = 1; break;
    case KX_RANDOM: level = 2; break; /* per element, whatever its operands */
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

void kb_domain(KBuilder *kb, bool batched, const int64_t *inner, int ninner, int nouter) {
    Kernel *k = kb->k;
    NNC_ASSERT(ninner >= 1 && ninner < K_MAX_DIMS && nouter >= 1 && nouter <= ninner && k->nx == 0);
    k->ndim = ninner + 1;
    k->nouter = nouter;
    k->dim[0] = (KDim){1, batched, false};
    for (int d = 0; d < ninner; d++) k->dim[d + 1] = (KDim){inner[d], false, d == ninner - 1};
}

void kb_domain_of(KBuilder *kb, Shape s) {
    int64_t n = shape_numel(s);
    if (!s.batched || s.rank < 2) {
        kb_domain(kb, s.batched, &n, 1, 1);
        return;
    }
    int64_t last = s.dim[s.rank - 1], inner[2] = {n / last, last};
    kb_domain(kb, true, inner, 2, 1);
}

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

static int dim_leaf(KBuilder *kb, KxOp op, int dim) {
    NNC_ASSERT(dim >= 0 && dim < kb->k->ndim);
    KExpr e = leaf(op);
    e.arg = dim;
    return add_expr(kb, e);
}
int kb_index(KBuilder *kb, int dim) { return dim_leaf(kb, KX_INDEX, dim); }
int kb_extent(KBuilder *kb, int dim) { return dim_leaf(kb, KX_EXTENT, dim); }
int kb_rows(KBuilder *kb) { return add_expr(kb, leaf(KX_ROWS)); }

int kb_per_element(KBuilder *kb, int x) {
    const Kernel *k = kb->k;
    for (int d = k->ndim - 1; d >= 1; d--) x = kb_bin(kb, KX_DIV, x, kb_extent(kb, d));
    return kb_bin(kb, KX_DIV, x, kernel_batched(k) ? kb_rows(kb) : kb_const(kb, 1));
}

int kb_access(KBuilder *kb, const KAccess *a) {
    Kernel *k = kb->k;
    KAccess c = *a; /* canonical: unused entries zero, so equal accesses compare equal */
    for (int m = c.rank; m < K_MAX_DIMS; m++) memset(&c.idx[m], 0, sizeof c.idx[m]);
    for (int m = 0; m < c.rank; m++) {
        if (c.idx[m].div < 1) c.idx[m].div = 1;
        for (int d = k->ndim; d < K_MAX_DIMS; d++) NNC_ASSERT(c.idx[m].coef[d] == 0);
    }
    for (int i = 0; i < k->nacc; i++)
        if (!memcmp(&k->acc[i], &c, sizeof c)) return i;
    ARENA_GROW(kb->plan->g->arena, k->acc, k->nacc, kb->capacc);
    k->acc[k->nacc] = c;
    return k->nacc++;
}

int kb_std_access(KBuilder *kb, int arg, IndexMode ix) {
    const Kernel *k = kb->k;
    KAccess a = {.arg = arg};
    switch (ix) {
    case IX_ELEM: /* every domain dim, in order */
        a.rank = k->ndim;
        for (int d = 0; d < k->ndim; d++) {
            a.idx[d] = (KIdx){.div = 1, .ext = k->dim[d]};
            a.idx[d].coef[d] = 1;
        }
        break;
    case IX_ROW: /* the last dim */
        a.rank = 1;
        a.idx[0] = (KIdx){.div = 1, .ext = k->dim[k->ndim - 1]};
        a.idx[0].coef[k->ndim - 1] = 1;
        break;
    case IX_COL: /* the first dim */
        a.rank = 1;
        a.idx[0] = (KIdx){.coef[0] = 1, .div = 1, .ext = k->dim[0]};
        break;
    case IX_SCALAR: break;
    }
    return kb_access(kb, &a);
}

int kb_load(KBuilder *kb, int acc) {
    KExpr e = leaf(KX_LOAD);
    e.arg = acc;
    return add_expr(kb, e);
}

int kb_load_arg(KBuilder *kb, int arg, IndexMode ix) { return kb_load(kb, kb_std_access(kb, arg, ix)); }

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

int kb_random(KBuilder *kb, int seed, int step_lo, int step_hi, int stream) {
    KExpr e = leaf(KX_RANDOM);
    e.a = seed, e.b = step_lo, e.c = step_hi, e.arg = stream;
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

static void push_out(KBuilder *kb, KOut o) {
    Kernel *k = kb->k;
    ARENA_GROW(kb->plan->g->arena, k->out, k->nout, kb->capout);
    k->out[k->nout++] = o;
    k->arg[o.arg].write = true;
}

void kb_out_at(KBuilder *kb, KOutKind kind, int acc, int expr) {
    const KAccess *a = &kb->k->acc[acc];
    NNC_ASSERT(kind != KO_SUM);
    for (int m = 0; m < a->rank; m++) NNC_ASSERT(!a->idx[m].bounded && a->idx[m].div == 1);
    push_out(kb, (KOut){kind, a->arg, acc, expr});
}

void kb_out(KBuilder *kb, KOutKind kind, int arg, int expr) {
    static const int std[] = {[KO_STORE] = IX_ELEM, [KO_STORE_ROW] = IX_COL, [KO_COLSUM] = IX_ROW};
    if (kind == KO_SUM)
        push_out(kb, (KOut){KO_SUM, arg, -1, expr}); /* a total: no access */
    else
        kb_out_at(kb, kind, kb_std_access(kb, arg, (IndexMode)std[kind]), expr);
}

/* The standard access for reading `in` inside a kernel over the builder's domain. */
static IndexMode index_mode(Shape in, const Kernel *k) {
    int64_t n = shape_numel(in), per = 1;
    for (int d = 1; d < k->ndim; d++) per *= k->dim[d].n;
    if (!in.batched && in.rank == 0) return IX_SCALAR;
    if (in.batched == kernel_batched(k) && n == per) return IX_ELEM;
    if (!in.batched && kernel_batched(k) && n == kernel_cols(k)) return IX_ROW;
    if (in.batched && kernel_batched(k) && n == 1) return IX_COL;
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
        [KX_CONST] = "const", [KX_LOAD] = "load", [KX_SCALAR] = "scalar", [KX_INDEX] = "index",
        [KX_ROWS] = "rows", [KX_EXTENT] = "extent", [KX_RED] = "red", [KX_RANDOM] = "random", [KX_NEG] = "neg", [KX_ABS] = "abs", [KX_EXP] = "exp", [KX_EXPM1] = "expm1",
        [KX_LOG] = "log", [KX_LOG1P] = "log1p", [KX_SQRT] = "sqrt", [KX_TANH] = "tanh",
        [KX_ERFC] = "erfc", [KX_ADD] = "add", [KX_SUB] = "sub", [KX_MUL] = "mul", [KX_DIV] = "div",
        [KX_MAX] = "max", [KX_MIN] = "min", [KX_LT] = "lt", [KX_LE] = "le", [KX_GT] = "gt",
        [KX_GE] = "ge", [KX_EQ] = "eq", [KX_NE] = "ne", [KX_SELECT] = "select",
    };
    return names[op];
}

static void print_dim(StrBuf *b, KDim d) {
    if (d.batch && d.n == 1)
        sb_puts(b, "B");
    else if (d.batch)
        sb_printf(b, "B*%lld", (long long)d.n);
    else
        sb_printf(b, "%lld", (long long)d.n);
}

/* Domain dims print as i (the first), j (the last) and m1, m2, ... between. */
static void dim_name(char *buf, size_t n, const Kernel *k, int d) {
    if (d == 0)
        snprintf(buf, n, "i");
    else if (d == k->ndim - 1)
        snprintf(buf, n, "j");
    else
        snprintf(buf, n, "m%d", d);
}

static void print_access(StrBuf *b, const Kernel *k, const KAccess *a) {
    sb_printf(b, "arg%d[", a->arg);
    for (int m = 0; m < a->rank; m++) {
        const KIdx *x = &a->idx[m];
        StrBuf t = {0};
        for (int d = 0; d < k->ndim; d++) {
            if (!x->coef[d]) continue;
            char nm[16];
            dim_name(nm, sizeof nm, k, d);
            long long c = (long long)x->coef[d];
            if (t.len) sb_puts(&t, c < 0 ? " - " : " + ");
            else if (c < 0) sb_putc(&t, '-');
            if (c != 1 && c != -1) sb_printf(&t, "%lld*", c < 0 ? -c : c);
            sb_puts(&t, nm);
        }
        if (x->off || !t.len) sb_printf(&t, t.len ? (x->off < 0 ? " - %lld" : " + %lld") : "%lld",
                                        (long long)(t.len && x->off < 0 ? -x->off : x->off));
        if (x->div > 1) sb_printf(b, "%s(%s)/%lld", m ? "," : "", sb_str(&t), (long long)x->div);
        else sb_printf(b, "%s%s", m ? "," : "", sb_str(&t));
        if (x->bounded) {
            sb_puts(b, " in ");
            print_dim(b, x->ext);
        }
        sb_free(&t);
    }
    sb_putc(b, ']');
}

void plan_print_kernel(StrBuf *b, const Plan *p, const Kernel *k) {
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
        sb_puts(b, "  loop ");
        for (int d = 0; d < k->ndim; d++) {
        if (d) sb_puts(b, d == k->nouter && k->nouter > 1 ? " | " : " x ");
            print_dim(b, k->dim[d]);
        }
    }
    if (k->loc.line > 0 && k->loc.file > 0)
        sb_printf(b, "  # %s line %d", ir_loc_file(p->g, k->loc, ""), k->loc.line);
    else if (k->loc.line > 0)
        sb_printf(b, "  # line %d", k->loc.line);
    sb_putc(b, '\n');
    for (int i = 0; i < k->narg; i++) {
        const Buffer *bf = &p->buf[k->arg[i].buf];
        sb_printf(b, "    arg%d %-5s %s\n", i, k->arg[i].read && k->arg[i].write ? "inout" : k->arg[i].write ? "out" : "in",
                  bf->name);
    }
    for (int i = 0; i < k->nx; i++) {
        const KExpr *e = &k->x[i];
        char nm[16];
        sb_printf(b, "    x%d = %s", i, kx_name(e->op));
        switch (e->op) {
        case KX_CONST: sb_printf(b, " %.9g", (double)e->imm); break;
        case KX_LOAD: sb_putc(b, ' '); print_access(b, k, &k->acc[e->arg]); break;
        case KX_SCALAR: sb_printf(b, " %s", p->g->scalar[e->arg].name); break;
        case KX_RED: sb_printf(b, " r%d", e->arg); break;
        case KX_INDEX: case KX_EXTENT: dim_name(nm, sizeof nm, k, e->arg); sb_printf(b, " %s", nm); break;
        case KX_RANDOM: sb_printf(b, " stream %d, seed x%d, step x%d + 2^24 x%d", e->arg, e->a, e->b, e->c); break;
        default:
            if (e->a >= 0) sb_printf(b, " x%d", e->a);
            if (e->b >= 0) sb_printf(b, ", x%d", e->b);
            if (e->c >= 0) sb_printf(b, ", x%d", e->c);
        }
        sb_putc(b, '\n');
    }
    for (int i = 0; i < k->nred; i++)
        sb_printf(b, "    r%d = %s_inner x%d  (phase %d)\n", i, redn[k->red[i].op], k->red[i].expr, k->red[i].phase);
    for (int i = 0; i < k->nout; i++) {
        sb_printf(b, "    %s ", outn[k->out[i].kind]);
        if (k->out[i].acc >= 0) print_access(b, k, &k->acc[k->out[i].acc]);
        else sb_printf(b, "arg%d", k->out[i].arg);
        sb_printf(b, " = x%d\n", k->out[i].expr);
    }
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
    /* a step: the gradient and the update, and hmc's drift (a leapfrog step moves the position too) */
    const int step[3] = {PROG_GRAD, PROG_UPDATE, programs_find(p->g, "drift")};
    for (int s = 0; s < 3; s++)
        for (int i = 0; step[s] >= 0 && i < p->prog[step[s]].nkernel; i++) {
            const Kernel *k = &p->kernel[p->prog[step[s]].kernel[i]];
            gemm += k->kind == K_GEMM;
            loop += k->kind == K_LOOP;
            sums += k->kind == K_LOOP && k->cuda.nsum > 0;
        }
    sb_printf(b, "; kernels per training step: %d (%d GEMMs, %d loop kernels); CUDA launches per step: %d; "
                 "kernels per evaluation batch: %d\n",
              gemm + loop, gemm, loop, gemm + loop + sums, evalk);
    sb_printf(b, "; memory: arena %.2f MiB = ", (double)p->arena_bytes / (1 << 20));
    plan_print_memory(b, p, ", ");
    sb_printf(b, "\n; gradient block (what a data-parallel all-reduce sums): @%lld +%lld", (long long)p->grad_offset,
              (long long)p->grad_bytes);
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
    for (int pr = 0; pr < p->nprog; pr++) {
        sb_printf(b, "; program %s: %d kernels, in order (reads -> writes)\n", p->prog[pr].name, p->prog[pr].nkernel);
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
        MIX(h, k->narg);
        for (int a = 0; a < k->narg; a++) MIX(h, k->arg[a].dtype * 4 + k->arg[a].read * 2 + k->arg[a].write);
        if (k->kind == K_GEMM) {
            MIX(h, k->ta * 16 + k->tb * 8 + k->m.batch * 4 + k->n.batch * 2 + k->k.batch);
            continue;
        }
        /* the domain and the accesses, but not the run-time extents (rows, the last dim's cols) */
        MIX(h, k->ndim * 16 + k->nouter);
        for (int d = 0; d < k->ndim; d++) MIX(h, k->dim[d].batch * 2 + k->dim[d].cols + (k->dim[d].cols ? 0 : k->dim[d].n * 4));
        MIX(h, k->nacc);
        for (int a = 0; a < k->nacc; a++) {
            const KAccess *ac = &k->acc[a];
            MIX(h, ac->arg * 64 + ac->rank);
            for (int m = 0; m < ac->rank; m++) {
                const KIdx *x = &ac->idx[m];
                for (int d = 0; d < k->ndim; d++) MIX(h, x->coef[d]);
                MIX(h, x->off);
                MIX(h, x->div * 4 + x->bounded * 2 + x->ext.cols);
                MIX(h, x->ext.batch);
                if (!x->ext.cols) MIX(h, x->ext.n);
            }
        }
        MIX(h, k->nx);
        for (int x = 0; x < k->nx; x++) {
            const KExpr *e = &k->x[x];
            uint32_t bits;
            memcpy(&bits, &e->imm, sizeof bits);
            int64_t v[6] = {e->op, e->a, e->b, e->c, bits, e->arg};
            h = util_hash(v, sizeof v, h);
        }
        MIX(h, k->nred);
        for (int r = 0; r < k->nred; r++) MIX(h, k->red[r].op * 1000003 + k->red[r].expr * 31 + k->red[r].phase);
        MIX(h, k->nout);
        for (int o = 0; o < k->nout; o++)
            MIX(h, k->out[o].kind * 1000003 + k->out[o].arg * 65537 + k->out[o].expr + (k->out[o].acc + 1) * 7919);
    }
    return h;
}
