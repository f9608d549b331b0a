/* plan.c: graph IR -> kernel plan (kernel.h).  Gives every value a buffer (views share their
 * source's), computes live ranges in node order, places weights, optimiser state and inputs
 * first in one arena and temporaries after them by first fit over live ranges, builds one
 * kernel per computing node, and lists per program (train, grad, eval) the kernels it needs.
 * Runs after autodiff/update (and fusion, later); its output is what renderers consume. */
#include <stdlib.h>
#include <string.h>

#include "kernel.h"

enum { ALIGN = 64 };

static int64_t align_up(int64_t v) { return (v + ALIGN - 1) / ALIGN * ALIGN; }

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

/* Mark what each program needs, walking back from its roots. */
static void need(const Graph *g, bool *mask, int root) {
    if (root < 0 || mask[root]) return;
    mask[root] = true;
    for (int i = 0; i < g->node[root].nin; i++) need(g, mask, g->node[root].in[i]);
}

static void place_temporaries(Plan *p) {
    /* first fit in order of first use: a buffer may reuse bytes of buffers dead before it */
    int64_t top = p->persistent_bytes;
    for (int i = 0; i < p->nbuf; i++) {
        Buffer *b = &p->buf[i];
        if (b->kind != BUF_TEMP) continue;
        int64_t off = p->persistent_bytes;
        for (bool moved = true; moved;) {
            moved = false;
            for (int j = 0; j < i; j++) {
                const Buffer *o = &p->buf[j];
                if (o->kind != BUF_TEMP || o->last < b->first || b->last < o->first) continue;
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

int64_t plan_cuda_blocks(const Kernel *k, int64_t rows) {
    int64_t r = k->rows_batch ? rows : 1;
    int64_t work = k->cuda.sched == CS_ELEM ? r * k->cols : k->cuda.sched == CS_COL ? k->cols : r;
    int64_t b = (work + k->cuda.threads - 1) / k->cuda.threads;
    return b < 1 ? 1 : b > k->cuda.max_blocks ? k->cuda.max_blocks : b;
}

Plan *plan_graph(Arena *arena, const Graph *g, int64_t max_batch) {
    Plan *p = arena_alloc(arena, sizeof *p);
    p->g = g;
    p->path = "model";
    p->max_batch = max_batch;
    p->node_buf = arena_alloc(arena, sizeof(int) * (size_t)g->nnode);
    /* buffers: persistent ones first so they sit at the start of the arena */
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        p->node_buf[id] = -1;
        if (n->op == OP_WEIGHT)
            p->node_buf[id] = new_buffer(p, id, g->weight[n->ref].kind == W_PARAM ? BUF_WEIGHT : BUF_STATE);
        else if (n->op == OP_INPUT)
            p->node_buf[id] = new_buffer(p, id, BUF_INPUT);
    }
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        OpClass cls = op_info[n->op].cls;
        if (cls == OC_LEAF) continue;
        p->node_buf[id] = cls == OC_VIEW ? p->node_buf[n->in[0]] : new_buffer(p, id, BUF_TEMP);
    }
    /* live ranges: to the last reader; outputs and gradients live to the end */
    for (int id = 0; id < g->nnode; id++)
        for (int i = 0; i < g->node[id].nin; i++) {
            int b = p->node_buf[g->node[id].in[i]];
            if (b >= 0 && p->buf[b].last < id) p->buf[b].last = id;
        }
    for (int i = 0; i < g->noutput; i++) p->buf[p->node_buf[g->output[i].node]].last = g->nnode;
    for (int id = 0; id < g->nnode; id++) /* the gradient-finite flags */
        if (op_info[g->node[id].op].cls == OC_UPDATE) p->buf[p->node_buf[id]].last = g->nnode;
    for (int i = 0; i < g->nweight; i++)
        if (g->weight[i].grad >= 0 && p->node_buf[g->weight[i].grad] >= 0)
            p->buf[p->node_buf[g->weight[i].grad]].last = g->nnode;
    for (int i = 0; i < g->ninput; i++)
        if (g->input[i].grad >= 0 && p->node_buf[g->input[i].grad] >= 0)
            p->buf[p->node_buf[g->input[i].grad]].last = g->nnode;
    int64_t off = 0;
    for (int i = 0; i < p->nbuf; i++) {
        Buffer *b = &p->buf[i];
        p->bytes_by_kind[b->kind] += b->bytes;
        if (b->kind == BUF_TEMP) continue;
        b->offset = off;
        off += align_up(b->bytes);
    }
    p->persistent_bytes = off;
    place_temporaries(p);
    /* kernels */
    int *node_kernel = util_calloc((size_t)g->nnode, sizeof(int));
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        OpClass cls = op_info[n->op].cls;
        node_kernel[id] = -1;
        if (cls == OC_LEAF || cls == OC_VIEW) continue;
        Kernel k = {.node = id, .op = n->op, .loc = n->loc};
        k.name = arena_printf(g->arena, "k%d_%s", p->nkernel, op_info[n->op].name);
        ARENA_GROW(arena, p->kernel, p->nkernel, p->capkernel);
        p->kernel[p->nkernel] = k;
        Kernel *kp = &p->kernel[p->nkernel];
        KBuilder kb = {.plan = p, .k = kp};
        if (cls == OC_GEMM) {
            const Node *a = &g->node[n->in[0]], *bn = &g->node[n->in[1]];
            kp->kind = K_GEMM;
            kp->ta = n->attr[0] != 0;
            kp->tb = n->attr[1] != 0;
            kb_arg(&kb, p->node_buf[n->in[0]], true, false);
            kb_arg(&kb, p->node_buf[n->in[1]], true, false);
            kb_arg(&kb, p->node_buf[id], false, true);
            /* a matrix operand: batched [B,k] is (B x k); unbatched [r,c] is (r x c) */
            KDim ar = a->shape.batched ? (KDim){0, true} : (KDim){a->shape.dim[0], false};
            KDim ac = {a->shape.batched ? shape_numel(a->shape) : a->shape.dim[1], false};
            KDim bc = bn->shape.batched ? (KDim){shape_numel(bn->shape), false} : (KDim){bn->shape.dim[1], false};
            KDim br = bn->shape.batched ? (KDim){0, true} : (KDim){bn->shape.dim[0], false};
            kp->m = kp->ta ? ac : ar;
            kp->k = kp->ta ? ar : ac;
            kp->n = kp->tb ? br : bc;
        } else {
            kp->kind = K_LOOP;
            opk_build(&kb, id);
            kp->cuda = cuda_launch(kp);
            int64_t ws = (int64_t)kp->cuda.nsum * kp->cuda.max_blocks;
            if (ws > p->cuda_workspace) p->cuda_workspace = ws;
        }
        node_kernel[id] = p->nkernel++;
    }
    /* programs */
    bool *mask = util_calloc((size_t)g->nnode, sizeof(bool));
    for (int pr = 0; pr < PROG_COUNT; pr++) {
        memset(mask, 0, (size_t)g->nnode);
        if (pr == PROG_EVAL) {
            for (int i = 0; i < g->noutput; i++) need(g, mask, g->output[i].node);
        } else if (pr == PROG_GRAD) {
            need(g, mask, g->loss);
            for (int i = 0; i < g->nweight; i++) need(g, mask, g->weight[i].grad);
            for (int i = 0; i < g->ninput; i++) need(g, mask, g->input[i].grad);
        } else {
            for (int id = 0; id < g->nnode; id++) mask[id] = op_info[g->node[id].op].cls == OC_UPDATE;
        }
        ProgramPlan *pp = &p->prog[pr];
        pp->kernel = arena_alloc(arena, sizeof(int) * (size_t)(p->nkernel + 1));
        for (int id = 0; id < g->nnode; id++)
            if (mask[id] && node_kernel[id] >= 0) pp->kernel[pp->nkernel++] = node_kernel[id];
    }
    free(mask);
    free(node_kernel);
    return p;
}
