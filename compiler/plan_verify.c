/* plan_verify.c: checks a kernel plan (kernel.h).  Called at the end of plan_graph, so that
 * every plan is checked before a renderer or device sees it, the re-plans after pruning too.
 * A broken plan is an internal error (NNC_BUG) naming the kernel, the buffers and what is
 * wrong.  The invariants:
 *   - each program lists valid kernels in increasing order; each argument is a valid buffer;
 *   - every buffer lies within the arena;
 *   - no kernel writes a buffer that shares bytes with another of its arguments (what the
 *     `noalias` arguments of the generated code rely on); a buffer read and written in place
 *     is one argument, and fine;
 *   - a kernel uses only buffers live at it (live ranges are kernel positions) and reads only
 *     persistent buffers (weights, optimiser state, inputs) or ones a kernel before it wrote,
 *     in kernel order and in each program's run (update runs after grad);
 *   - no two buffers live at the same time share bytes (persistent ones are always live), so
 *     every saved activation and temporary survives until its last reader;
 *   - the gradient block holds every weight's gradient and nothing else, and the grad program
 *     writes each of them (a data-parallel all-reduce sums the block between grad and update).
 * It costs O(kernels * args^2 + buffers^2). */
#include <stdio.h>
#include <stdlib.h>

#include "kernel.h"

static bool persistent(const Buffer *b) { return b->kind < BUF_GRAD; }
static long long lo_of(const Buffer *b) { return (long long)b->offset; }
static long long hi_of(const Buffer *b) { return (long long)(b->offset + b->bytes); }
static bool share_bytes(const Buffer *a, const Buffer *b) {
    return a->bytes > 0 && b->bytes > 0 && lo_of(a) < hi_of(b) && lo_of(b) < hi_of(a);
}

/* "live k3..k9" as emit --plan prints it (the end of the step is the last kernel), or "persistent". */
static const char *live_str(char *s, size_t n, const Plan *p, const Buffer *b) {
    if (persistent(b))
        snprintf(s, n, "persistent");
    else
        snprintf(s, n, "live k%d..k%d", b->first, b->last < p->nkernel ? b->last : p->nkernel - 1);
    return s;
}

/* The first kernel position at which both are live, or -1. */
static int both_live(const Buffer *a, const Buffer *b) {
    if (persistent(a)) return persistent(b) ? 0 : b->first;
    if (persistent(b)) return a->first;
    int lo = a->first > b->first ? a->first : b->first, hi = a->last < b->last ? a->last : b->last;
    return lo <= hi ? lo : -1;
}

static void check_structure(const Plan *p) {
    for (int pr = 0; pr < p->nprog; pr++)
        for (int i = 0; i < p->prog[pr].nkernel; i++) {
            int k = p->prog[pr].kernel[i];
            if (k < 0 || k >= p->nkernel)
                NNC_BUG("plan_verify: program %s lists kernel %d, but the plan has %d kernels", p->prog[pr].name, k, p->nkernel);
            if (i > 0 && k <= p->prog[pr].kernel[i - 1])
                NNC_BUG("plan_verify: program %s lists kernel %s after %s, not in increasing order", p->prog[pr].name,
                        p->kernel[k].name, p->kernel[p->prog[pr].kernel[i - 1]].name);
        }
    for (int k = 0; k < p->nkernel; k++)
        for (int a = 0; a < p->kernel[k].narg; a++)
            if (p->kernel[k].arg[a].buf < 0 || p->kernel[k].arg[a].buf >= p->nbuf)
                NNC_BUG("plan_verify: kernel %s argument %d is buffer %d, but the plan has %d buffers", p->kernel[k].name, a,
                        p->kernel[k].arg[a].buf, p->nbuf);
    for (int i = 0; i < p->nbuf; i++) {
        const Buffer *b = &p->buf[i];
        if (b->offset >= 0 && b->bytes >= 0 && b->offset + b->bytes <= p->arena_bytes) continue;
        const char *user = NULL;
        for (int k = 0; k < p->nkernel && !user; k++)
            for (int a = 0; a < p->kernel[k].narg; a++)
                if (p->kernel[k].arg[a].buf == i) user = p->kernel[k].name;
        NNC_BUG("plan_verify: buffer '%s' [%lld, %lld) lies outside the arena [0, %lld) (used by kernel %s)", b->name,
                lo_of(b), hi_of(b), (long long)p->arena_bytes, user ? user : "none");
    }
}

/* Kernel k's arguments: no written one shares bytes with another, all are live at k. */
static void check_kernel(const Plan *p, int k) {
    const Kernel *kn = &p->kernel[k];
    for (int a = 0; a < kn->narg; a++) {
        const Buffer *b = &p->buf[kn->arg[a].buf];
        char ls[48];
        if (!persistent(b) && (k < b->first || k > b->last))
            NNC_BUG("plan_verify: kernel %s %s '%s' outside its live range (%s)", kn->name,
                    kn->arg[a].read ? "reads" : "writes", b->name, live_str(ls, sizeof ls, p, b));
        if (!kn->arg[a].write) continue;
        for (int o = 0; o < kn->narg; o++) {
            const Buffer *c = &p->buf[kn->arg[o].buf];
            if (o == a || !share_bytes(b, c)) continue;
            NNC_BUG("plan_verify: kernel %s writes '%s' [%lld, %lld) which overlaps its %s '%s' [%lld, %lld)", kn->name,
                    b->name, lo_of(b), hi_of(b), kn->arg[o].read ? "input" : "output", c->name, lo_of(c), hi_of(c));
        }
    }
}

/* Runs kernels `ks` (all of them when NULL) in order: each reads only persistent buffers and
 * ones written before it; `done` holds what was written, from earlier programs too. */
static void check_order(const Plan *p, const int *ks, int n, bool *done, const char *where) {
    for (int i = 0; i < n; i++) {
        const Kernel *kn = &p->kernel[ks ? ks[i] : i];
        for (int a = 0; a < kn->narg; a++) {
            const Buffer *b = &p->buf[kn->arg[a].buf];
            if (kn->arg[a].read && !persistent(b) && !done[kn->arg[a].buf])
                NNC_BUG("plan_verify: kernel %s reads '%s', which no kernel before it writes%s", kn->name, b->name, where);
        }
        for (int a = 0; a < kn->narg; a++)
            if (kn->arg[a].write) done[kn->arg[a].buf] = true;
    }
}

static void check_gradient_block(const Plan *p) {
    const Graph *g = p->g;
    int64_t lo = p->grad_offset, hi = p->grad_offset + p->grad_bytes;
    for (int i = 0; i < p->nbuf; i++) {
        const Buffer *b = &p->buf[i];
        bool inside = b->bytes > 0 && b->offset < hi && lo < b->offset + b->bytes;
        if (b->grad_block != inside || (inside && (b->offset < lo || b->offset + b->bytes > hi)))
            NNC_BUG("plan_verify: buffer '%s' [%lld, %lld) is %sa weight's gradient but lies %s the gradient block [%lld, %lld)",
                    b->name, lo_of(b), hi_of(b), b->grad_block ? "" : "not ", inside ? "in" : "outside", (long long)lo,
                    (long long)hi);
    }
    bool *written = util_calloc((size_t)p->nbuf + 1, sizeof(bool));
    const ProgramPlan *gp = &p->prog[PROG_GRAD];
    for (int i = 0; i < gp->nkernel; i++)
        for (int a = 0; a < p->kernel[gp->kernel[i]].narg; a++)
            if (p->kernel[gp->kernel[i]].arg[a].write) written[p->kernel[gp->kernel[i]].arg[a].buf] = true;
    for (int w = 0; w < g->nweight; w++) {
        int id = g->weight[w].grad, b = id >= 0 ? p->node_buf[id] : -1;
        if (id < 0) continue;
        if (b < 0 || !p->buf[b].grad_block || !written[b])
            NNC_BUG("plan_verify: the gradient of weight '%s' is %s", g->weight[w].name,
                    b < 0 ? "not stored" : !p->buf[b].grad_block ? "not in the gradient block" : "not written by the grad program");
    }
    free(written);
}

void plan_verify(const Plan *p) {
    check_gradient_block(p);
    check_structure(p);
    for (int k = 0; k < p->nkernel; k++) check_kernel(p, k);
    bool *done = util_calloc((size_t)p->nbuf + 1, sizeof(bool));
    check_order(p, NULL, p->nkernel, done, "");
    for (int pr = 0; pr < p->nprog; pr++) { /* each from scratch, or after the program it follows */
        memset(done, 0, (size_t)p->nbuf + 1);
        char where[160] = "";
        int chain[PROGRAMS_MAX], n = 0;
        for (int q = pr; q >= 0 && n < PROGRAMS_MAX; q = p->prog[q].after) chain[n++] = q;
        for (int i = n - 1; i >= 0; i--)
            snprintf(where + strlen(where), sizeof where - strlen(where), "%s%s", i == n - 1 ? (n > 1 ? " in programs " : " in program ") : " and ",
                     p->prog[chain[i]].name);
        for (int i = n - 1; i >= 1; i--) check_order(p, p->prog[chain[i]].kernel, p->prog[chain[i]].nkernel, done, where);
        check_order(p, p->prog[pr].kernel, p->prog[pr].nkernel, done, where);
    }
    free(done);
    for (int i = 0; i < p->nbuf; i++)
        for (int j = i + 1; j < p->nbuf; j++) {
            const Buffer *a = &p->buf[i], *b = &p->buf[j];
            int at = both_live(a, b);
            if (at < 0 || !share_bytes(a, b)) continue;
            char la[48], lb[48];
            NNC_BUG("plan_verify: buffers '%s' [%lld, %lld) (%s) and '%s' [%lld, %lld) (%s) share bytes while both "
                    "are live, at kernel %s",
                    a->name, lo_of(a), hi_of(a), live_str(la, sizeof la, p, a), b->name, lo_of(b), hi_of(b),
                    live_str(lb, sizeof lb, p, b), at < p->nkernel ? p->kernel[at].name : "(after the last)");
        }
}
