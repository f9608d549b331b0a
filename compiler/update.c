/* update.c: appends the optimiser step (or a sampler's leapfrog ops) to a differentiated graph: one update node per trained
 * weight (sgd, sgd_momentum, adam), with optimiser state weights named after the weight
 * (h1.weight.momentum, h1.weight.adam_m, h1.weight.adam_v, h1.weight.rmsprop_v, h1.weight.adagrad_sum) and run-time scalar slots for the
 * learning rate and Adam's bias corrections, which the runtime sets before every step.  A
 * weight with an L1 penalty applied proximally (a gate) gets the threshold lr * lambda.  Each
 * model statistic (W_STAT, batch_norm's running mean and variance) gets a running_avg node
 * that moves it toward the batch's value, in the same update program. */
#include <string.h>

#include "lower.h"

/* An optimiser state tensor of weight wi; grad_power: it is a sum of the gradient's powers of
 * that degree (a momentum 1, a second moment 2; 0: neither). */
static int state(Graph *g, const Weight *w, int wi, const char *suffix, int grad_power) {
    int id = ir_weight(g, arena_printf(g->arena, "%s.%s", w->name, suffix), W_STATE, w->shape, INIT_ZERO, w->loc);
    g->weight[g->node[id].ref].of = wi;
    g->weight[g->node[id].ref].grad_power = grad_power;
    memcpy(g->weight[g->node[id].ref].space, w->space, sizeof w->space);
    memcpy(g->weight[g->node[id].ref].space_inner, w->space_inner, sizeof w->space_inner);
    return id;
}

void update_graph(Graph *g, const OptSpec *opt) {
    NNC_ASSERT(g->has_backward);
    int nw = g->nweight;
    g->phase = PH_UPDATE;
    int lr = -1, step = -1, bc2 = -1;
    for (int wi = 0; wi < nw; wi++) {
        Weight w = g->weight[wi];
        if (w.kind != W_PARAM || w.grad < 0) continue;
        if (lr < 0) {
            lr = ir_scalar(g, "lr", SC_LR, opt->lr, opt->loc);
            if (opt->kind == OPT_ADAM || opt->kind == OPT_ADAMW) {
                step = ir_scalar(g, "adam_step", SC_ADAM_STEP, opt->lr, opt->loc);
                bc2 = ir_scalar(g, "adam_bc2_sqrt", SC_ADAM_BC2_SQRT, 1.0, opt->loc);
            }
        }
        int in[8] = {w.node, w.grad};
        Op op;
        int nin;
        if ((opt->kind == OPT_SGD && opt->momentum == 0) || opt->kind == OPT_PRE_SGD) {
            op = OP_SGD;
            in[2] = lr;
            nin = 4;
        } else if (opt->kind == OPT_SGD) {
            op = OP_SGD_MOMENTUM;
            in[2] = state(g, &w, wi, "momentum", 1);
            in[3] = lr;
            nin = 5;
        } else if (opt->kind == OPT_RMSPROP) {
            in[2] = state(g, &w, wi, "rmsprop_v", 2);
            if (opt->momentum > 0) {
                op = OP_RMSPROP_MOMENTUM;
                in[3] = state(g, &w, wi, "momentum", 1);
                in[4] = lr;
                nin = 6;
            } else {
                op = OP_RMSPROP;
                in[3] = lr;
                nin = 5;
            }
        } else if (opt->kind == OPT_ADAGRAD) {
            op = OP_ADAGRAD;
            in[2] = state(g, &w, wi, "adagrad_sum", 2);
            if (opt->initial_accumulator != 0) {
                Weight *sw = &g->weight[g->node[in[2]].ref];
                sw->init = INIT_CONST;
                sw->init_value = opt->initial_accumulator;
            }
            in[3] = lr;
            nin = 5;
        } else {
            op = OP_ADAM;
            in[2] = state(g, &w, wi, "adam_m", 1);
            in[3] = state(g, &w, wi, "adam_v", 2);
            in[4] = lr;
            in[5] = step;
            in[6] = bc2;
            nin = 8;
        }
        in[nin - 1] = w.prox >= 0 ? ir_add2(g, OP_MUL, shape_scalar(), lr, w.prox, w.loc) : ir_const(g, 0, w.loc);
        int id = ir_add(g, op, DT_F32, shape_scalar(), in, nin, w.loc);
        if (opt->kind == OPT_PRE_SGD && opt->pre == PRE_FULL) /* the preconditioner's eigenvectors (runtime/precondition.c) */
            for (int k = 1; k <= opt->rank; k++) state(g, &w, wi, arena_printf(g->arena, "pre_q%d", k), 0);
        Node *n = &g->node[id];
        n->name = w.name;
        if (op == OP_RMSPROP || op == OP_RMSPROP_MOMENTUM) {
            n->attr[0] = opt->alpha;
            n->attr[1] = opt->eps;
            n->attr[2] = opt->weight_decay;
            n->attr[3] = opt->momentum;
        } else if (op == OP_ADAGRAD) {
            n->attr[0] = opt->eps;
            n->attr[1] = opt->weight_decay;
        } else if (op == OP_ADAM) {
            n->attr[0] = opt->beta1;
            n->attr[1] = opt->beta2;
            n->attr[2] = opt->eps;
            n->attr[3] = opt->kind == OPT_ADAMW;
            n->attr[4] = opt->weight_decay;
        } else {
            n->attr[0] = opt->momentum;
            n->attr[1] = opt->nesterov;
            n->attr[2] = opt->weight_decay;
        }
    }
    for (int wi = 0; wi < g->nweight; wi++) { /* running averages of batch statistics */
        Weight w = g->weight[wi];
        if (w.kind != W_STAT) continue;
        int id = ir_add2(g, OP_RUNNING_AVG, shape_scalar(), w.node, w.stat, w.loc);
        g->node[id].attr[0] = w.momentum;
        g->node[id].name = w.name;
    }
    ir_verify(g, "update");
}

/* SGLD's step per trained weight, in the update program: sgld (or sgld_rms with the RMSprop
 * state p.sgld_v), reading the scalars sgld.drift = lr N / 2, sgld.noise = sqrt(lr), and the
 * generator's seed and step (set by the sampler per iteration); each weight draws its noise from
 * a stream of its own (SGLD_STREAM + its index). */
enum { SGLD_STREAM = 1 << 16 };
static void sgld_graph(Graph *g, const SamplerSpec *sp) {
    static const char *const names[5] = {"sgld.drift", "sgld.noise", "rng.seed", "rng.step_lo", "rng.step_hi"};
    static const ScalarKind kinds[5] = {SC_SGLD_DRIFT, SC_SGLD_NOISE, SC_SEED, SC_STEP_LO, SC_STEP_HI};
    int sc[5] = {-1}, nw = g->nweight;
    for (int wi = 0; wi < nw; wi++) {
        Weight w = g->weight[wi];
        if (w.kind != W_PARAM || w.grad < 0) continue;
        if (sc[0] < 0)
            for (int k = 0; k < 5; k++) sc[k] = ir_scalar(g, names[k], kinds[k], 0, sp->loc);
        int in[8] = {w.node, w.grad}, n = 2;
        if (sp->precondition) in[n++] = state(g, &w, wi, "sgld_v", 0);
        for (int k = 0; k < 5; k++) in[n++] = sc[k];
        int id = ir_add(g, sp->precondition ? OP_SGLD_RMS : OP_SGLD, DT_F32, shape_scalar(), in, n, w.loc);
        g->node[id].name = w.name;
        g->node[id].attr[0] = SGLD_STREAM + wi;
        g->node[id].attr[1] = sp->alpha;
        g->node[id].attr[2] = sp->lambda;
    }
}

/* HMC's leapfrog ops in place of the optimiser's: per trained weight p, its momentum r
 * (p.hmc_r) and diagonal inverse mass minv (p.hmc_minv, starting at 1), state weights that the
 * sampler sets; hmc_kick r -= c g after the gradient (the update program) and hmc_drift
 * p += eps minv r (the `drift` program, programs.c), c and eps set by the sampler per step.
 * NUTS needs none: it moves between the ends of its trajectory, so its leapfrog steps run in
 * the runtime (runtime/nuts.c) on the gradients the `grad` program leaves. */
void sampler_graph(Graph *g, const SamplerSpec *sp) {
    NNC_ASSERT(g->has_backward);
    int nw = g->nweight;
    g->phase = PH_UPDATE;
    if (sp->kind == SAMPLER_NUTS) nw = 0;
    if (sp->kind == SAMPLER_SGLD) {
        sgld_graph(g, sp);
        nw = 0;
    }
    int kick = -1, step = -1;
    for (int wi = 0; wi < nw; wi++) {
        Weight w = g->weight[wi];
        if (w.kind != W_PARAM || w.grad < 0) continue;
        if (kick < 0) {
            kick = ir_scalar(g, "hmc.kick", SC_HMC_KICK, 0, sp->loc);
            step = ir_scalar(g, "hmc.step", SC_HMC_STEP, sp->step, sp->loc);
        }
        int r = state(g, &w, wi, "hmc_r", 0), minv = state(g, &w, wi, "hmc_minv", 0);
        g->weight[g->node[minv].ref].init = INIT_ONE;
        g->node[ir_add3(g, OP_HMC_KICK, shape_scalar(), r, w.grad, kick, w.loc)].name = w.name;
        int in[4] = {w.node, r, minv, step};
        g->node[ir_add(g, OP_HMC_DRIFT, DT_F32, shape_scalar(), in, 4, w.loc)].name = w.name;
    }
    ir_verify(g, "sampler");
}