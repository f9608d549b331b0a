/* fuse.c: the fusion pass.  Groups the graph's computing nodes into kernels: a group becomes
 * one loop kernel over one domain (rows x cols), computing its members' values in registers
 * and storing only those needed outside it.  Runs after autodiff and update, before plan.c,
 * which builds one kernel per group in the order chosen here.
 *
 * Two merges, applied greedily in a fixed order so that the result is deterministic:
 *   producer into consumer  an elementwise node joins the group that reads it, directly or
 *                           through a reshape (a view: the same elements in the same order):
 *                           elementwise chains, bias + activation + gate, the elementwise work
 *                           that feeds a column sum or a row reduction (its value is stored as
 *                           well when other kernels need it too);
 *   siblings                two groups over the same domain that read a common buffer, such as
 *                           a layer's backward kernel and the recomputation of its output.
 * A merge is allowed only when both sides have the same domain and are needed by the same
 * programs (grad, update, eval), the group graph stays acyclic, no member reads a reduction
 * of its own group, a group does not hold both row reductions and column sums (they want
 * different GPU schedules), and the kernel needs at most MAX_BUFFERS buffers.
 * Matrix products (BLAS) and optimiser updates stay kernels of their own; a product with a unit
 * dimension is not a BLAS call but an outer product or a column sum (ir_class), and fuses. */
#include <stdlib.h>
#include <string.h>

#include "kernel.h"

enum { MAX_BUFFERS = 15 }; /* render_cuda.h's CUDA_MAX_ARGS */

typedef struct {
    const Graph *g;
    int n;
    int *parent;    /* union-find over nodes; -1 for nodes in no group */
    int *useoff, *users; /* CSR lists of each node's users */
    uint32_t *progs;
    bool *output;   /* must be stored whatever the grouping */
    int *mark;      /* scratch for searches */
    int stamp;
} Fuser;

static bool fusable(OpClass c) { return c == OC_MAP || c == OC_COLSUM || c == OC_SUM || c == OC_ROW; }

/* The domain a node's kernel loops over: batched or not, its elements per row, and the
 * extent of the last dim when it is split off (kb_domain_of), 0 otherwise. */
static void domain(const Graph *g, int id, bool *batched, int64_t *cols, int64_t *last) {
    Shape s = ir_domain(g, &g->node[id]);
    *batched = s.batched;
    *cols = shape_numel(s);
    *last = s.batched && s.rank >= 2 ? s.dim[s.rank - 1] : 0;
}

static int find(Fuser *f, int x) {
    while (f->parent[x] != x) x = f->parent[x] = f->parent[f->parent[x]];
    return x;
}

/* The group that produces node x's value (views are their source), or -1. */
static int producer(Fuser *f, int x) {
    x = ir_view_source(f->g, x);
    return f->parent[x] < 0 ? -1 : find(f, x);
}

/* Pushes the groups that read node x (through views, which are their source's memory) other than
 * `skip` and those already marked; true when one of them is `to` (and stop_at_to). */
static bool push_readers(Fuser *f, int x, int skip, int to, bool stop_at_to, int *stack, int *sp) {
    for (int u = f->useoff[x]; u < f->useoff[x + 1]; u++) {
        int y = f->users[u];
        if (ir_class(f->g, &f->g->node[y]) == OC_VIEW) {
            if (push_readers(f, y, skip, to, stop_at_to, stack, sp)) return true;
            continue;
        }
        int gu = f->parent[y] < 0 ? -1 : find(f, y);
        if (gu == to && stop_at_to) return true;
        if (gu >= 0 && gu != skip && gu != to && f->mark[gu] != f->stamp) {
            f->mark[gu] = f->stamp;
            stack[(*sp)++] = gu;
        }
    }
    return false;
}

/* Is group `to` reachable from group `from` through at least one other group? */
static bool reaches(Fuser *f, int from, int to) {
    int *stack = util_calloc((size_t)f->n + 1, sizeof(int)), sp = 0;
    f->stamp++;
    bool found = false;
    for (int x = 0; x < f->n; x++) /* the groups `from` feeds, other than `to` */
        if (f->parent[x] >= 0 && find(f, x) == from) push_readers(f, x, from, to, false, stack, &sp);
    while (sp > 0 && !found) {
        int gr = stack[--sp];
        for (int x = 0; x < f->n && !found; x++)
            if (f->parent[x] >= 0 && find(f, x) == gr) found = push_readers(f, x, gr, to, true, stack, &sp);
    }
    free(stack);
    return found;
}

/* Does a node outside groups a and b read node x (directly or through views)? */
static bool reader_outside(Fuser *f, int x, int a, int b) {
    for (int u = f->useoff[x]; u < f->useoff[x + 1]; u++) {
        int y = f->users[u];
        if (ir_class(f->g, &f->g->node[y]) == OC_VIEW) {
            if (f->output[y] || reader_outside(f, y, a, b)) return true;
            continue;
        }
        int gy = f->parent[y] < 0 ? -1 : find(f, y);
        if (gy != a && gy != b) return true;
    }
    return false;
}

/* May groups a and b become one kernel? */
static bool can_merge(Fuser *f, int a, int b) {
    const Graph *g = f->g;
    bool ba = false, bb = false;
    int64_t ca = 0, cb = 0, la = 0, lb = 0;
    domain(g, a, &ba, &ca, &la);
    domain(g, b, &bb, &cb, &lb);
    if (ba != bb || ca != cb || la != lb || f->progs[a] != f->progs[b] || g->node[a].phase != g->node[b].phase) return false;
    bool row = false, colsum = false;
    int nbuf = 0;
    int *bufs = util_calloc((size_t)f->n + 1, sizeof(int));
    bool ok = true;
    for (int x = 0; x < f->n && ok; x++) {
        if (f->parent[x] < 0) continue;
        int gx = find(f, x);
        if (gx != a && gx != b) continue;
        const Node *n = &g->node[x];
        row |= ir_class(g, n) == OC_ROW;
        colsum |= ir_class(g, n) == OC_COLSUM;
        for (int i = 0; i < n->nin && ok; i++) {
            int in = n->in[i], root = ir_view_source(g, in), pin = producer(f, in);
            if ((pin == a || pin == b) && ir_class(g, &g->node[root]) != OC_MAP) ok = false; /* a reduction of its own group */
            const Node *src = &g->node[in];
            if (src->op == OP_CONST || src->op == OP_PARAM || pin == a || pin == b) continue;
            bool seen = false;
            for (int k = 0; k < nbuf; k++) seen |= bufs[k] == root;
            if (!seen) bufs[nbuf++] = root;
        }
        bool stored = f->output[x] || ir_class(g, n) != OC_MAP || reader_outside(f, x, a, b);
        if (stored) bufs[nbuf++] = -1 - x;
    }
    free(bufs);
    if (!ok || (row && colsum) || nbuf > MAX_BUFFERS) return false;
    return !reaches(f, a, b) && !reaches(f, b, a);
}

static void merge(Fuser *f, int a, int b) {
    /* the smaller id stays the root, so that domain() and the checks see a real member */
    if (a < b)
        f->parent[b] = a;
    else
        f->parent[a] = b;
}

/* Which programs need each node (bit p: Graph.prog[p]). */
static void need(const Graph *g, uint32_t *progs, int node, uint32_t bit) {
    if (node < 0 || (progs[node] & bit)) return;
    progs[node] |= bit;
    for (int i = 0; i < g->node[node].nin; i++) need(g, progs, g->node[node].in[i], bit);
}

void fuse_program_masks(const Graph *g, uint32_t *progs) {
    memset(progs, 0, sizeof(uint32_t) * (size_t)g->nnode);
    for (int p = 0; p < g->nprog; p++) /* programs that run first are complete before those after them */
        if (g->prog[p].after < 0)
            for (int r = 0; r < g->prog[p].nroot; r++) need(g, progs, g->prog[p].root[r], 1u << p);
    uint32_t *own = util_calloc((size_t)g->nnode + 1, sizeof(uint32_t));
    for (int p = 0; p < g->nprog; p++) {
        int after = g->prog[p].after;
        if (after < 0) continue;
        NNC_ASSERT(after < p);
        memset(own, 0, sizeof(uint32_t) * (size_t)g->nnode);
        for (int r = 0; r < g->prog[p].nroot; r++) need(g, own, g->prog[p].root[r], 1u << p);
        for (int id = 0; id < g->nnode; id++) /* what the program before it computed already */
            if (!(progs[id] & (1u << after))) progs[id] |= own[id];
    }
    free(own);
}

Fusion *fuse_graph(Arena *arena, const Graph *g, bool enabled) {
    Fuser f = {.g = g, .n = g->nnode};
    f.parent = util_calloc((size_t)f.n + 1, sizeof(int));
    f.progs = util_calloc((size_t)f.n + 1, sizeof(uint32_t));
    f.output = util_calloc((size_t)f.n + 1, sizeof(bool));
    f.mark = util_calloc((size_t)f.n + 1, sizeof(int));
    f.useoff = util_calloc((size_t)f.n + 2, sizeof(int));
    fuse_program_masks(g, f.progs);
    for (int id = 0; id < f.n; id++) {
        OpClass c = ir_class(g, &g->node[id]);
        f.parent[id] = c == OC_LEAF || c == OC_VIEW ? -1 : id;
        for (int i = 0; i < g->node[id].nin; i++) f.useoff[g->node[id].in[i] + 1]++;
    }
    for (int id = 0; id < f.n; id++) f.useoff[id + 1] += f.useoff[id];
    f.users = util_calloc((size_t)f.useoff[f.n] + 1, sizeof(int));
    int *fill = util_calloc((size_t)f.n + 1, sizeof(int));
    for (int id = 0; id < f.n; id++)
        for (int i = 0; i < g->node[id].nin; i++) {
            int in = g->node[id].in[i];
            f.users[f.useoff[in] + fill[in]++] = id;
        }
    free(fill);
    for (int i = 0; i < g->noutput; i++) f.output[g->output[i].node] = true;
    for (int p = 0; p < g->nprog; p++) /* what a program leaves for the runtime */
        for (int r = 0; r < g->prog[p].nroot; r++) f.output[g->prog[p].root[r]] = true;
    for (int i = 0; i < g->nweight; i++)
        if (g->weight[i].grad >= 0) f.output[g->weight[i].grad] = true;
    for (int i = 0; i < g->ninput; i++)
        if (g->input[i].grad >= 0) f.output[g->input[i].grad] = true;
    for (int id = 0; id < f.n; id++) /* an output that is a view is its source's buffer */
        if (f.output[id]) f.output[ir_view_source(g, id)] = true;

    if (enabled) {
        /* producer into consumer, consumers first */
        for (int c = f.n - 1; c >= 0; c--) {
            if (f.parent[c] < 0 || !fusable(ir_class(g, &g->node[c]))) continue;
            for (int i = 0; i < g->node[c].nin; i++) {
                int p = ir_view_source(g, g->node[c].in[i]); /* a reshape is the same elements in the same order */
                if (f.parent[p] < 0 || ir_class(g, &g->node[p]) != OC_MAP) continue;
                int gp = find(&f, p), gc = find(&f, c);
                if (gp != gc && can_merge(&f, gp, gc)) merge(&f, gp, gc);
            }
        }
        /* siblings over the same domain reading a common buffer */
        for (int x = 0; x < f.n; x++)
            for (int u = f.useoff[x]; u < f.useoff[x + 1]; u++)
                for (int v = u + 1; v < f.useoff[x + 1]; v++) {
                    int a = f.users[u], b = f.users[v];
                    if (f.parent[a] < 0 || f.parent[b] < 0) continue;
                    if (!fusable(ir_class(g, &g->node[a])) || !fusable(ir_class(g, &g->node[b]))) continue;
                    int ga = find(&f, a), gb = find(&f, b);
                    if (ga != gb && can_merge(&f, ga, gb)) merge(&f, ga, gb);
                }
    }

    /* groups, numbered by their first member */
    Fusion *fu = arena_alloc(arena, sizeof *fu);
    fu->group = arena_alloc(arena, sizeof(int) * (size_t)(f.n + 1));
    int *gid = util_calloc((size_t)f.n + 1, sizeof(int));
    for (int x = 0; x < f.n; x++) gid[x] = -1;
    for (int x = 0; x < f.n; x++) {
        fu->group[x] = -1;
        if (f.parent[x] < 0) continue;
        int r = find(&f, x);
        if (gid[r] < 0) gid[r] = fu->ngroup++;
        fu->group[x] = gid[r];
    }
    fu->nmember = arena_alloc(arena, sizeof(int) * (size_t)(fu->ngroup + 1));
    fu->member = arena_alloc(arena, sizeof(int *) * (size_t)(fu->ngroup + 1));
    for (int x = 0; x < f.n; x++)
        if (fu->group[x] >= 0) fu->nmember[fu->group[x]]++;
    for (int k = 0; k < fu->ngroup; k++) {
        fu->member[k] = arena_alloc(arena, sizeof(int) * (size_t)fu->nmember[k]);
        fu->nmember[k] = 0;
    }
    for (int x = 0; x < f.n; x++)
        if (fu->group[x] >= 0) fu->member[fu->group[x]][fu->nmember[fu->group[x]]++] = x;
    fu->stored = arena_alloc(arena, sizeof(bool) * (size_t)(f.n + 1));
    for (int x = 0; x < f.n; x++) {
        if (fu->group[x] < 0) continue;
        int r = find(&f, x);
        fu->stored[x] = f.output[x] || ir_class(g, &g->node[x]) != OC_MAP || reader_outside(&f, x, r, r);
    }
    /* execution order: a topological order of the groups, earliest first member first */
    fu->order = arena_alloc(arena, sizeof(int) * (size_t)(fu->ngroup + 1));
    int *indeg = util_calloc((size_t)fu->ngroup + 1, sizeof(int));
    bool *edge = util_calloc((size_t)fu->ngroup * (size_t)fu->ngroup + 1, sizeof(bool));
    for (int x = 0; x < f.n; x++) {
        if (fu->group[x] < 0) continue;
        for (int i = 0; i < g->node[x].nin; i++) {
            int p = producer(&f, g->node[x].in[i]);
            if (p < 0) continue;
            int gp = gid[p], gx = fu->group[x];
            if (gp != gx && !edge[(size_t)gp * (size_t)fu->ngroup + (size_t)gx]) {
                edge[(size_t)gp * (size_t)fu->ngroup + (size_t)gx] = true;
                indeg[gx]++;
            }
        }
    }
    bool *done = util_calloc((size_t)fu->ngroup + 1, sizeof(bool));
    for (int k = 0; k < fu->ngroup; k++) {
        int pick = -1;
        for (int c = 0; c < fu->ngroup && pick < 0; c++)
            if (!done[c] && indeg[c] == 0) pick = c;
        NNC_ASSERT(pick >= 0); /* acyclic by construction */
        done[pick] = true;
        fu->order[k] = pick;
        for (int c = 0; c < fu->ngroup; c++)
            if (edge[(size_t)pick * (size_t)fu->ngroup + (size_t)c]) indeg[c]--;
    }
    free(done);
    free(edge);
    free(indeg);
    free(gid);
    free(f.parent);
    free(f.progs);
    free(f.output);
    free(f.mark);
    free(f.useoff);
    free(f.users);
    return fu;
}
