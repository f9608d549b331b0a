/* hvp.c: the exact Hessian-vector product as a program of the graph.  Runs after programs.c,
 * when a command or an optimiser asks for it (CompileOptions.hvp).
 *
 * Reverse over reverse: the grad program already computes G_w = dL/dw for every trained
 * weight w.  This pass adds, per trained weight, a direction v_w (a scratch state weight,
 * `<w>.hvp_dir`, that the runtime writes before each product and checkpoints never keep) and,
 * by autodiff_vjp_seeded with the gradients as roots and the directions as their cotangents
 * (autodiff.c is closed: every op it emits has a rule), d/dw sum_w <G_w, v_w> = H v, without
 * forming the sum or copying the directions.  The program `hvp` runs right after `grad` on the same batch
 * and reads its values instead of computing them again, so one product costs about one more
 * backward pass of the backward pass; it may run several times after one `grad` (plan.c keeps
 * what it reads alive), which Lanczos and pre_sgd's several directions rely on.
 *
 * hvp_check refuses a loss that is not twice differentiable where the weights are: an L1
 * penalty or a Laplace prior has a kink at 0, exactly where the weights it shrinks end up.
 * Activations with a kink (relu) are accepted: a pre-activation is almost never exactly 0,
 * and elsewhere their second derivative is 0, as in every framework's HVP. */
#include <stdlib.h>
#include <string.h>

#include "hvp.h"
#include "lower.h"

bool hvp_check(const Graph *g, Diag *diag, const char *why) {
    NNC_ASSERT(g->loss >= 0);
    bool *in_loss = util_calloc((size_t)g->nnode + 1, sizeof(bool)), *on_weights = util_calloc((size_t)g->nnode + 1, sizeof(bool));
    in_loss[g->loss] = true;
    for (int id = g->loss; id >= 0; id--)
        if (in_loss[id])
            for (int i = 0; i < g->node[id].nin; i++) in_loss[g->node[id].in[i]] = true;
    bool ok = true;
    for (int id = 0; id <= g->loss && ok; id++) {
        const Node *n = &g->node[id];
        on_weights[id] = n->op == OP_WEIGHT && g->weight[n->ref].kind == W_PARAM;
        for (int i = 0; i < n->nin; i++) on_weights[id] |= on_weights[n->in[i]];
        if (!in_loss[id] || !on_weights[id] || (n->op != OP_L1 && n->op != OP_LOGP_LAPLACE)) continue;
        diag_error(diag, n->loc,
                   "%s needs a loss that is twice differentiable at the weights, but this %s is not "
                   "differentiable at 0, where the weights it shrinks end up",
                   why, n->op == OP_L1 ? "L1 penalty" : "Laplace prior");
        diag_note(diag, n->loc, "train without it (or with a normal prior, an L2 penalty) to take Hessian-vector products");
        ok = false;
    }
    free(in_loss);
    free(on_weights);
    return ok;
}

void hvp_graph(Graph *g) {
    NNC_ASSERT(g->has_backward && programs_find(g, "grad") == PROG_GRAD && programs_find(g, "hvp") < 0);
    int nw = g->nweight, n = 0;
    int *wnode = util_calloc((size_t)nw + 1, sizeof(int)), *hv = util_calloc((size_t)nw + 1, sizeof(int));
    int *gnode = util_calloc((size_t)nw + 1, sizeof(int)), *dnode = util_calloc((size_t)nw + 1, sizeof(int));
    for (int wi = 0; wi < nw; wi++) {
        Weight w = g->weight[wi];
        if (w.kind != W_PARAM || w.grad < 0) continue;
        int dir = ir_weight(g, arena_printf(g->arena, "%s.hvp_dir", w.name), W_STATE, w.shape, INIT_ZERO, w.loc);
        Weight *d = &g->weight[g->node[dir].ref];
        d->of = wi;
        d->scratch = true;
        memcpy(d->space, w.space, sizeof w.space);
        memcpy(d->space_inner, w.space_inner, sizeof w.space_inner);
        g->weight[wi].dir = dir;
        wnode[n] = w.node;
        gnode[n] = w.grad;
        dnode[n++] = dir;
    }
    /* d/dw of sum_w <G_w, v_w>: the gradients' vjp with the directions as their cotangents */
    if (n > 0) autodiff_vjp_seeded(g, gnode, dnode, n, wnode, n, hv);
    int prog = programs_add(g, "hvp", true, PROG_GRAD);
    for (int wi = 0, k = 0; wi < nw; wi++) {
        if (g->weight[wi].dir < 0) continue;
        g->weight[wi].hvp = hv[k++];
        programs_root(g, prog, g->weight[wi].hvp);
    }
    free(wnode);
    free(hv);
    free(gnode);
    free(dnode);
    ir_verify(g, "hvp");
}
