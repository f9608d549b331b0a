/* programs.c: the programs of a training graph, as data.  A program is what one call of
 * exec_run computes: the nodes its roots need, run in one mode (training, or evaluation:
 * dropout off, batch_norm on its running statistics), possibly right after another program of
 * the same step whose values it reads instead of computing them again.  Runs after update.c;
 * plan.c gives each program its kernels and the runtime runs them by index or by name.
 *
 * A training graph has three, in this order: `grad` (the loss and the gradients of every
 * trained weight and differentiated input), `update` (the optimiser's update nodes and the
 * running averages, after `grad`), and `eval` (the loss, metrics and statistics outputs, in
 * evaluation mode).  With a sampler, `update` holds its momentum steps (hmc_kick) and a fourth
 * program, `drift`, its position steps (hmc_drift).  When asked for, hvp.c adds `hvp` (exact
 * Hessian-vector products, after `grad`). */
#include "lower.h"

int programs_add(Graph *g, const char *name, bool train, int after) {
    NNC_ASSERT(g->nprog < PROGRAMS_MAX && (after < 0 || after < g->nprog));
    ARENA_PUSH(g->arena, g->prog, g->nprog, g->capprog, ((ProgramDef){.name = name, .train = train, .after = after}));
    return g->nprog - 1;
}

void programs_root(Graph *g, int prog, int node) {
    if (node < 0) return;
    ProgramDef *p = &g->prog[prog];
    ARENA_PUSH(g->arena, p->root, p->nroot, p->caproot, node);
}

void programs_build(Graph *g) {
    NNC_ASSERT(g->nprog == 0);
    int grad = programs_add(g, "grad", true, -1), update = programs_add(g, "update", true, grad);
    int eval = programs_add(g, "eval", false, -1);
    NNC_ASSERT(grad == PROG_GRAD && update == PROG_UPDATE && eval == PROG_EVAL);
    programs_root(g, grad, g->loss);
    for (int i = 0; i < g->nweight; i++) programs_root(g, grad, g->weight[i].grad);
    for (int i = 0; i < g->ninput; i++) programs_root(g, grad, g->input[i].grad);
    int drift = -1; /* a sampler's position steps: a program of their own */
    for (int id = 0; id < g->nnode; id++) {
        if (g->node[id].op == OP_HMC_DRIFT && drift < 0) drift = programs_add(g, "drift", true, -1);
        if (op_info[g->node[id].op].cls == OC_UPDATE) programs_root(g, g->node[id].op == OP_HMC_DRIFT ? drift : update, id);
    }
    for (int i = 0; i < g->noutput; i++) programs_root(g, eval, g->output[i].node);
}

int programs_find(const Graph *g, const char *name) {
    for (int i = 0; i < g->nprog; i++)
        if (!strcmp(g->prog[i].name, name)) return i;
    return -1;
}
