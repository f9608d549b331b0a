/* plan.c: graph IR -> kernel plan (kernel.h).  Gives every value that a kernel stores a
 * buffer (views share their source's), computes live ranges in kernel order, places weights,
 * optimiser state and inputs first in one arena, then the weights' gradients side by side
 * (the block a data-parallel all-reduce sums), and the rest after them by first fit over
 * live ranges, accounts memory by kind, lists per program (grad, update, eval) the kernels it
 * needs, and builds one kernel per fusion group (fuse.c), in its order.  Runs after autodiff,
 * update and fusion; its output is what renderers consume. */
#include <stdlib.h>
#include <string.h>

#include "kernel.h"

enum { ALIGN = 64 };

static int64_t align_up(int64_t v) { return (v + ALIGN - 1) / ALIGN * ALIGN; }

const char *const buf_kind_name[BUF_KINDS] = {"weights", "optimiser state", "inputs", "gradients",
                                               "saved activations", "workspace"};

static int new_buffer(Plan *p, int node, BufKind kind) {
    const Graph *g = p->g;
    const Node *n = &g->node[node];
    Buffer b = {.kind = kind, .dtype = n->dtype, .batched = n->shape.batched, .node = node,
                .weight = -1, .first = node, .last = node};
    b.elems = shape_numel(n->shape);
    b.bytes = b.elems * 4 * (b.batched ? p->max_batch : 1);
    if (n->op == OP_WEIGHT) {
        b.weight = n->ref;
        b.name = g->weight[n->ref].name;
    } else if (n->op == OP_INPUT) {
        b.name = g->input[n->ref].name;
    } else {
        b.name = arena_printf(g->arena, "%%%d.%s", node, op_info[n->op].name);
    }
    ARENA_PUSH(p->g->arena, p->buf, p->nbuf, p->capbuf, b);
    return p->nbuf - 1;
}

/* The weights' gradients side by side after the persistent buffers, live for the whole step. */
static void place_gradient_block(Plan *p) {
    int64_t off = p->persistent_bytes;
    p->grad_offset = off;
    for (int i = 0; i < p->nbuf; i++) {
        Buffer *b = &p->buf[i];
        if (!b->grad_block) continue;
        b->offset = off;
        b->first = 0;
        off += align_up(b->bytes);
    }
    p->grad_bytes = off - p->grad_offset;
}

static void place_temporaries(Plan *p) {
    /* first fit in order of first use: a buffer may reuse bytes of buffers dead before it */
    int64_t start = p->grad_offset + p->grad_bytes, top = start;
    for (int i = 0; i < p->nbuf; i++) {
        Buffer *b = &p->buf[i];
        if (b->kind < BUF_GRAD || b->grad_block) continue;
        int64_t off = start;
        for (bool moved = true; moved;) {
            moved = false;
            for (int j = 0; j < i; j++) {
                const Buffer *o = &p->buf[j];
                if (o->kind < BUF_GRAD || o->grad_block || o->last < b->first || b->last < o->first) continue;
                if (off < o->offset + align_up(o->bytes) && o->offset < off + align_up(b->bytes)) {
                    off = o->offset + align_up(o->bytes);
                    moved = true;
                }
            }
        }
        b->offset = off;
        if (off + align_up(b->bytes) > top) top = off + align_up(b->bytes);
    }
    p->arena_bytes = top;
}

enum { CUDA_MAX_BLOCKS = 1024 };

/* The GPU schedule of a loop kernel: column sums want a thread per column (their order over
 * rows then stays fixed), row reductions a thread per row, the rest a thread per element. */
static CudaLaunch cuda_launch(const Kernel *k) {
    CudaLaunch c = {.sched = CS_ELEM, .threads = 256, .max_blocks = CUDA_MAX_BLOCKS};
    for (int o = 0; o < k->nout; o++) {
        if (k->out[o].kind == KO_COLSUM) c.sched = CS_COL;
        if (k->out[o].kind == KO_SUM) c.nsum++;
    }
    bool row = k->nred > 0; /* and sums of per-row values, added once per row */
    for (int o = 0; o < k->nout; o++)
        row |= k->out[o].kind == KO_STORE_ROW || (k->out[o].kind == KO_SUM && k->x[k->out[o].expr].level < 2);
    NNC_ASSERT(!(row && c.sched == CS_COL));
    if (row) {
        c.sched = CS_ROW;
        c.threads = 128;
    }
    return c;
}

int64_t plan_cuda_work(const Kernel *k, int64_t rows) {
    int64_t work = 1;
    if (k->cuda.sched == CS_COL) { /* the elements of the column sums' access */
        const KAccess *a = NULL;
        for (int o = 0; o < k->nout && !a; o++)
            if (k->out[o].kind == KO_COLSUM) a = &k->acc[k->out[o].acc];
        for (int m = 0; m < a->rank; m++) work *= kdim_value(a->idx[m].ext, rows);
        return work;
    }
    int n = k->cuda.sched == CS_ELEM ? k->ndim : k->nouter;
    for (int d = 0; d < n; d++) work *= kdim_value(k->dim[d], rows);
    return work;
}

int64_t plan_cuda_blocks(const Kernel *k, int64_t rows) {
    int64_t work = plan_cuda_work(k, rows);
    int64_t b = (work + k->cuda.threads - 1) / k->cuda.threads;
    return b < 1 ? 1 : b > k->cuda.max_blocks ? k->cuda.max_blocks : b;
}

/* The rows and columns of a GEMM operand (see ir.h: batched [B,...,k] is (B*... x k)). */
static KDim mat_rows(Shape s) {
    int64_t last = s.rank ? s.dim[s.rank - 1] : 1;
    return s.batched ? (KDim){shape_numel(s) / last, true, false} : (KDim){s.dim[0], false, false};
}
static KDim mat_cols(Shape s) { return (KDim){s.batched ? (s.rank ? s.dim[s.rank - 1] : 1) : s.dim[1], false, false}; }

/* A kernel's name: k<index> and the distinct ops it computes, in order (at most 48 chars). */
static const char *kernel_name(Arena *arena, const Graph *g, int index, const int *member, int n) {
    StrBuf b = {0};
    sb_printf(&b, "k%d", index);
    for (int k = 0; k < n; k++) {
        const char *op = op_info[g->node[member[k]].op].name;
        bool seen = false;
        for (int j = 0; j < k; j++) seen |= g->node[member[j]].op == g->node[member[k]].op;
        if (seen) continue;
        if (b.len + strlen(op) + 1 > 48) {
            sb_puts(&b, "_etc");
            break;
        }
        sb_printf(&b, "_%s", op);
    }
    const char *r = arena_strdup(arena, sb_str(&b));
    sb_free(&b);
    return r;
}

/* Node id's buffer lives to the end of the step (the runtime reads it); fuse.c stores every
 * such node.  A constant or run-time scalar has none: the runtime reads its value (exec_read). */
static void live_to_end(Plan *p, int id, int end) {
    Op op = p->g->node[id].op;
    if (op == OP_CONST || op == OP_PARAM) return;
    if (p->node_buf[id] < 0) NNC_BUG("%%%d (%s) is read by the runtime but has no buffer", id, op_info[p->g->node[id].op].name);
    p->buf[p->node_buf[id]].last = end;
}

Plan *plan_graph(Arena *arena, const Graph *g, int64_t max_batch, bool fuse) {
    if (g->nprog == 0) NNC_BUG("plan_graph: the graph has no programs (programs_build defines them)");
    Plan *p = arena_alloc(arena, sizeof *p);
    p->g = g;
    p->path = "model";
    p->max_batch = max_batch;
    p->node_buf = arena_alloc(arena, sizeof(int) * (size_t)g->nnode);
    Fusion *fu = fuse_graph(arena, g, fuse);
    int *pos = util_calloc((size_t)fu->ngroup + 1, sizeof(int)); /* a group's place in the order */
    for (int k = 0; k < fu->ngroup; k++) pos[fu->order[k]] = k;
    /* buffers: persistent ones first so they sit at the start of the arena */
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        p->node_buf[id] = -1;
        if (n->op == OP_WEIGHT)
            p->node_buf[id] = new_buffer(p, id, g->weight[n->ref].kind == W_STATE ? BUF_STATE : BUF_WEIGHT);
        else if (n->op == OP_INPUT)
            p->node_buf[id] = new_buffer(p, id, BUF_INPUT);
    }
    bool *is_grad = util_calloc((size_t)g->nnode + 1, sizeof(bool));
    for (int i = 0; i < g->nweight; i++)
        if (g->weight[i].grad >= 0) is_grad[g->weight[i].grad] = true;
    for (int i = 0; i < g->ninput; i++)
        if (g->input[i].grad >= 0) is_grad[g->input[i].grad] = true;
    for (int k = 0; k < fu->ngroup; k++) {
        int gr = fu->order[k];
        for (int m = 0; m < fu->nmember[gr]; m++) {
            int id = fu->member[gr][m];
            if (fu->stored[id]) p->node_buf[id] = new_buffer(p, id, is_grad[id] ? BUF_GRAD : BUF_TEMP);
        }
    }
    for (int id = 0; id < g->nnode; id++)
        if (op_info[g->node[id].op].cls == OC_VIEW) p->node_buf[id] = p->node_buf[g->node[id].in[0]];
    for (int i = 0; i < g->nweight; i++) /* a weight's gradient, or the value it is a view of */
        if (g->weight[i].grad >= 0 && p->node_buf[g->weight[i].grad] >= 0) {
            Buffer *b = &p->buf[p->node_buf[g->weight[i].grad]];
            b->kind = BUF_GRAD;
            b->grad_block = true;
        }
    /* live ranges, in positions of the kernel order: from the producing kernel to the last
     * reader; outputs, gradients and update flags live to the end */
    for (int i = 0; i < p->nbuf; i++) {
        Buffer *b = &p->buf[i];
        int gr = fu->group[b->node];
        b->first = b->last = gr >= 0 ? pos[gr] : 0;
    }
    for (int id = 0; id < g->nnode; id++) {
        int gr = fu->group[id];
        if (gr < 0) continue;
        for (int i = 0; i < g->node[id].nin; i++) {
            int b = p->node_buf[g->node[id].in[i]];
            if (b < 0 || p->buf[b].kind < BUF_GRAD) continue;
            if (p->buf[b].last < pos[gr]) p->buf[b].last = pos[gr];
            /* a forward value read by a backward or update kernel is a saved activation */
            if (p->buf[b].kind == BUF_TEMP && g->node[p->buf[b].node].phase == PH_FORWARD && g->node[id].phase != PH_FORWARD)
                p->buf[b].kind = BUF_SAVED;
        }
    }
    int end = fu->ngroup;
    for (int i = 0; i < g->noutput; i++) live_to_end(p, g->output[i].node, end);
    for (int id = 0; id < g->nnode; id++)
        if (is_grad[id] || op_info[g->node[id].op].cls == OC_UPDATE) live_to_end(p, id, end);
    for (int pr = 0; pr < g->nprog; pr++) /* what a program leaves for the runtime to read */
        for (int r = 0; r < g->prog[pr].nroot; r++) live_to_end(p, g->prog[pr].root[r], end);
    /* A value that a program reads from the one it runs after lives to the end, so that the
     * later program may run again (hvp, once per direction) on what the earlier one left. */
    uint32_t *progs = util_calloc((size_t)g->nnode + 1, sizeof(uint32_t));
    fuse_program_masks(g, progs);
    for (int id = 0; id < g->nnode; id++) {
        if (fu->group[id] < 0) continue;
        for (int i = 0; i < g->node[id].nin; i++) {
            int in = g->node[id].in[i], b = p->node_buf[in];
            if (b >= 0 && p->buf[b].kind >= BUF_GRAD && (progs[id] & ~progs[p->buf[b].node])) p->buf[b].last = end;
        }
    }
    int64_t off = 0;
    for (int i = 0; i < p->nbuf; i++) {
        Buffer *b = &p->buf[i];
        p->bytes_by_kind[b->kind] += b->bytes;
        if (b->kind >= BUF_GRAD) continue;
        b->offset = off;
        off += align_up(b->bytes);
        p->peak_by_kind[b->kind] += b->bytes;
    }
    p->persistent_bytes = off;
    place_gradient_block(p);
    place_temporaries(p);
    for (int t = 0; t <= end; t++) { /* the most of each kind live at once */
        int64_t live[BUF_KINDS] = {0};
        for (int i = 0; i < p->nbuf; i++)
            if (p->buf[i].kind >= BUF_GRAD && p->buf[i].first <= t && t <= p->buf[i].last) live[p->buf[i].kind] += p->buf[i].bytes;
        for (int kd = BUF_GRAD; kd < BUF_KINDS; kd++)
            if (live[kd] > p->peak_by_kind[kd]) p->peak_by_kind[kd] = live[kd];
    }
    /* kernels, one per group, in order */
    p->nprog = g->nprog;
    p->prog = arena_alloc(arena, sizeof(ProgramPlan) * (size_t)(g->nprog + 1));
    for (int pr = 0; pr < p->nprog; pr++)
        p->prog[pr] = (ProgramPlan){.name = g->prog[pr].name, .train = g->prog[pr].train, .after = g->prog[pr].after,
                                    .kernel = arena_alloc(arena, sizeof(int) * (size_t)(fu->ngroup + 1))};
    for (int k = 0; k < fu->ngroup; k++) {
        int gr = fu->order[k];
        const int *mem = fu->member[gr];
        int nm = fu->nmember[gr], last = mem[nm - 1];
        const Node *n = &g->node[last];
        ARENA_GROW(arena, p->kernel, p->nkernel, p->capkernel);
        Kernel *kp = &p->kernel[p->nkernel];
        *kp = (Kernel){.node = last, .op = n->op, .loc = n->loc, .member = mem, .nmember = nm};
        kp->name = kernel_name(arena, g, p->nkernel, mem, nm);
        KBuilder kb = {.plan = p, .k = kp};
        if (ir_class(g, n) == OC_GEMM) {
            const Node *a = &g->node[n->in[0]], *bn = &g->node[n->in[1]];
            kp->kind = K_GEMM;
            kp->ta = n->attr[0] != 0;
            kp->tb = n->attr[1] != 0;
            kb_arg(&kb, p->node_buf[n->in[0]], true, false);
            kb_arg(&kb, p->node_buf[n->in[1]], true, false);
            kb_arg(&kb, p->node_buf[last], false, true);
            /* a matrix operand: batched [B,...,k] is (B*... x k); unbatched [r,c] is (r x c) */
            KDim ar = mat_rows(a->shape), ac = mat_cols(a->shape), br = mat_rows(bn->shape), bc = mat_cols(bn->shape);
            kp->m = kp->ta ? ac : ar;
            kp->k = kp->ta ? ar : ac;
            kp->n = kp->tb ? br : bc;
        } else {
            kp->kind = K_LOOP;
            opk_build_group(&kb, mem, nm, fu->stored);
            kp->cuda = cuda_launch(kp);
            int64_t ws = (int64_t)kp->cuda.nsum * kp->cuda.max_blocks;
            if (ws > p->cuda_workspace) p->cuda_workspace = ws;
        }
        for (int pr = 0; pr < p->nprog; pr++)
            if (progs[last] & (1u << pr)) p->prog[pr].kernel[p->prog[pr].nkernel++] = p->nkernel;
        p->nkernel++;
    }
    free(progs);
    free(is_grad);
    free(pos);
    plan_verify(p);
    return p;
}
