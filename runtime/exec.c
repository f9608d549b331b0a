/* exec.c: JIT, arena and scalar slots of a planned graph (see exec.h). */
#include "exec.h"

#include <stdlib.h>
#include <string.h>

int exec_new(Exec *e, const Plan *plan, char *err, size_t nerr) {
    memset(e, 0, sizeof *e);
    e->plan = plan;
    e->g = plan->g;
    double t0 = util_now();
    LlvmModule *m = llvm_render(plan, err, nerr);
    if (!m) return -1;
    e->jit = llvm_jit(m, &e->fn, err, nerr);
    if (!e->jit) return -1;
    e->compile_s = util_now() - t0;
    size_t bytes = (size_t)((plan->arena_bytes + 63) / 64 * 64);
    e->arena = aligned_alloc(64, bytes ? bytes : 64);
    if (!e->arena) NNC_BUG("out of memory for a %zu-byte arena", bytes);
    memset(e->arena, 0, bytes);
    e->scalars = util_calloc((size_t)e->g->nscalar + 1, sizeof(float));
    exec_reset_scalars(e);
    return 0;
}

void exec_reset_scalars(Exec *e) {
    for (int i = 0; i < e->g->nscalar; i++) e->scalars[i] = (float)e->g->scalar[i].value;
}

void exec_free(Exec *e) {
    llvm_jit_free(e->jit);
    free(e->arena);
    free(e->scalars);
    memset(e, 0, sizeof *e);
}

void *exec_buf(const Exec *e, int node) {
    int b = e->plan->node_buf[node];
    NNC_ASSERT(b >= 0);
    return e->arena + e->plan->buf[b].offset;
}

int64_t exec_numel(const Exec *e, int node, int64_t rows) {
    Shape s = e->g->node[node].shape;
    return shape_numel(s) * (s.batched ? rows : 1);
}

void exec_run(const Exec *e, int prog, int64_t rows) {
    NNC_ASSERT(rows >= 1 && rows <= e->plan->max_batch);
    e->fn.step[prog](e->arena, e->scalars, rows);
}
