/* summary.c: the report `nnc check` prints: the layer table with output shapes, parameter
 * counts and bytes, the training setup with every default made explicit, and the memory plan. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "driver.h"
#include "lower.h"
#include "npy.h" /* runtime/: an npy source's header, for N */

static void human_bytes(char *buf, size_t n, double bytes) {
    if (bytes >= 1 << 30)
        snprintf(buf, n, "%.2f GiB", bytes / (1 << 30));
    else if (bytes >= 1 << 20)
        snprintf(buf, n, "%.2f MiB", bytes / (1 << 20));
    else if (bytes >= 1 << 10)
        snprintf(buf, n, "%.1f KiB", bytes / (1 << 10));
    else
        snprintf(buf, n, "%.0f B", bytes);
}

static void data_str(StrBuf *b, const DataSpec *d) {
    switch (d->kind) {
    case DATA_NONE: sb_puts(b, "none"); break;
    case DATA_FASHION_MNIST: sb_puts(b, "fashion_mnist"); break;
    case DATA_IDX:
        if (d->dir)
            sb_printf(b, "idx(\"%s\")", d->dir);
        else
            sb_printf(b, "idx(images = \"%s\", labels = \"%s\")", d->images, d->labels);
        break;
    case DATA_CSV:
        sb_printf(b, "csv(\"%s\"", d->path);
        for (int i = 0; i < d->narray; i++) {
            if (d->array[i].path) sb_printf(b, ", %s = \"%s\"", d->array[i].name, d->array[i].path);
            else sb_printf(b, ", %s = %d", d->array[i].name, d->array[i].col);
        }
        sb_puts(b, ")");
        break;
    case DATA_NPY:
        sb_puts(b, "npy(");
        for (int i = 0; i < d->narray; i++) sb_printf(b, "%s%s = \"%s\"", i ? ", " : "", d->array[i].name, d->array[i].path);
        sb_puts(b, ")");
        break;
    }
}

/* N, the training samples, where the data's header says it without loading the data: the rows
 * of an npy source's first array, or Fashion-MNIST's 60000, less the validation split (rounded
 * as train_split_order rounds it); -1 for csv and idx sources, counted when loaded.  `from`
 * says where N comes from. */
static int64_t training_samples(const TrainSpec *t, char *from, size_t nfrom) {
    int64_t n = -1;
    if (t->data.kind == DATA_FASHION_MNIST) {
        n = 60000;
        snprintf(from, nfrom, "Fashion-MNIST's 60000 training images");
    } else if (t->data.kind == DATA_NPY && t->data.narray) {
        int rank = 0;
        int64_t shape[NPY_MAX_RANK];
        char err[512];
        if (npy_read_shape(t->data.array[0].path, &rank, shape, err, sizeof err) == 0 && rank >= 1) {
            n = shape[0];
            snprintf(from, nfrom, "%lld rows in %s", (long long)n, t->data.array[0].path);
        }
    }
    if (n < 0) return -1;
    int64_t valid = (int64_t)llround(t->valid_fraction * (double)n);
    if (valid > 0) snprintf(from + strlen(from), nfrom - strlen(from), ", %lld held out for validation", (long long)valid);
    return n - valid;
}

/* The variational layers: their weights' means and rhos, how their KL term is scaled, and how
 * evaluation uses them. */
static void print_variational(StrBuf *b, const Model *m, const Graph *g) {
    int n = 0;
    for (int i = 0; i < g->nweight; i++) n += g->weight[i].variational;
    if (!n) return;
    int64_t S = m->train.eval_samples;
    sb_puts(b, "variational layers: weights mu + softplus(rho) eps, eps ~ normal(0, 1) drawn at every step;\n");
    if (S)
        sb_printf(b, "  evaluation and predict: over %lld draws (the predictive mean and sd)\n", (long long)S);
    else
        sb_puts(b, "  evaluation and predict: the posterior mean (eps = 0)\n");
    char from[4200];
    int64_t N = training_samples(&m->train, from, sizeof from);
    if (N > 0)
        sb_printf(b, "  the loss adds KL(q || prior) / N (in closed form for normal priors, else estimated at each step's draw), "
                     "N = %lld training samples (%s): a scale of %.6g\n", (long long)N, from, 1.0 / (double)N);
    else
        sb_puts(b, "  the loss adds KL(q || prior) / N (in closed form for normal priors, else estimated at each step's draw), "
                   "N the training samples, counted when the data is loaded\n");
    for (int i = 0; i < g->nweight; i++) {
        const Weight *w = &g->weight[i];
        char sh[96];
        if (w->variational) sb_printf(b, "  %-24s %s\n", w->name, shape_str(sh, sizeof sh, DT_F32, w->shape));
    }
}

/* How the loss's terms are scaled, and which weights each prior covers. */
static void print_priors(StrBuf *b, const Model *m, const Graph *g) {
    sb_puts(b, "loss: per sample (likelihoods and other losses: means over the batch) + the negative log prior / N,\n"
               "  N the training samples; N x loss is the potential, the negative log posterior density\n");
    sb_puts(b, "priors:\n");
    char sh[96];
    for (int p = 0; p < m->nprior; p++) {
        const PriorDef *pd = &m->prior[p];
        int64_t n = 0;
        sb_printf(b, "  %s ~ %s:", pd->target, pd->text);
        for (int wi = 0; wi < g->nweight; wi++)
            if (g->weight[wi].prior == p && util_ends_with(g->weight[wi].name, "." SIGMA_RAW)) {
                sb_printf(b, " softplus(%s), with the log Jacobian log sigmoid(%s)", g->weight[wi].name, g->weight[wi].name);
                n += 1;
            } else if (g->weight[wi].prior == p) {
                sb_printf(b, " %s %s", g->weight[wi].name, shape_str(sh, sizeof sh, DT_F32, g->weight[wi].shape));
                n += shape_numel(g->weight[wi].shape);
            }
        if (n)
            sb_printf(b, " (%lld values)\n", (long long)n);
        else
            sb_puts(b, " none (more specific priors cover its weights)\n");
    }
}

void summary_print(StrBuf *b, const Compilation *c) {
    const Model *m = c->model;
    char sh[96], by[32];
    sb_printf(b, "model %s (%s)\n\n", m->name, m->path);
    int wn = 12, wl = 16, wo = 16; /* the name, layer and output columns: 12, 16, 16 wide, or wider for long entries */
    for (int i = 0; i < m->nrow; i++) {
        int n = (int)strlen(m->row[i].owner), l = (int)strlen(m->row[i].desc),
            o = (int)strlen(shape_str(sh, sizeof sh, DT_F32, m->row[i].shape));
        if (n > wn) wn = n;
        if (l > wl) wl = l;
        if (o > wo) wo = o;
    }
    for (int i = 0; i < m->nio; i++)
        if ((int)strlen(m->io[i].name) > wn) wn = (int)strlen(m->io[i].name);
    sb_printf(b, "  %-*s %-*s %-*s %12s %12s\n", wn, "name", wl, "layer", wo, "output", "params", "bytes");
    for (int i = 0; i < m->nio; i++) {
        const IoDef *io = &m->io[i];
        if (io->is_class)
            snprintf(sh, sizeof sh, "class[%lld]", (long long)io->nclass);
        else
            shape_str(sh, sizeof sh, DT_F32, io->shape);
        sb_printf(b, "  %-*s %-*s %-*s %12s %12s\n", wn, io->name, wl, io->is_target ? "target" : "input", wo, sh, "", "");
    }
    int64_t total = 0, fixed = 0;
    for (int i = 0; i < m->nrow; i++) {
        const LayerRow *r = &m->row[i];
        total += r->nparams;
        if (r->fixed) fixed += r->nparams;
        human_bytes(by, sizeof by, (double)r->nparams * 4);
        char np[32] = "";
        if (r->nparams) snprintf(np, sizeof np, "%lld", (long long)r->nparams);
        sb_printf(b, "  %-*s %-*s %-*s %12s %12s\n", wn, r->owner, wl, r->desc, wo, shape_str(sh, sizeof sh, DT_F32, r->shape),
                  np, r->nparams ? by : "");
    }
    human_bytes(by, sizeof by, (double)total * 4);
    sb_printf(b, "  %-*s %-*s %-*s %12lld %12s\n", wn, "total", wl, "", wo, "", (long long)total, by);
    if (fixed) sb_printf(b, "  %lld trained, %lld fixed (trainable = false)\n", (long long)(total - fixed), (long long)fixed);
    sb_putc(b, '\n');
    if (m->nparam) {
        sb_puts(b, "params:");
        for (int i = 0; i < m->nparam; i++)
            sb_printf(b, " %s = %g%s", m->param[i].name, m->param[i].value, m->param[i].overridden ? " (--set)" : "");
        sb_putc(b, '\n');
    }
    const TrainSpec *t = &m->train;
    sb_puts(b, "training: data ");
    data_str(b, &t->data);
    if (t->test.kind != DATA_NONE) {
        sb_puts(b, ", test ");
        data_str(b, &t->test);
    }
    if (t->valid_fraction > 0) sb_printf(b, ", valid %g of train", t->valid_fraction);
    if (t->sampler.kind == SAMPLER_SGLD)
        sb_printf(b, ", batch %lld (sgld's minibatch: one step each, grad U estimated as N x its mean loss's gradient), seed %llu\n",
                  (long long)t->batch, (unsigned long long)t->seed);
    else if (t->sampler.kind != SAMPLER_NONE)
        sb_printf(b, ", batch %lld (a sampler's gradient sums its batches over the whole training split), seed %llu\n",
                  (long long)t->batch, (unsigned long long)t->seed);
    else if (t->iterations)
        sb_printf(b, ", batch %lld, %lld iterations, seed %llu\n", (long long)t->batch, (long long)t->iterations,
                  (unsigned long long)t->seed);
    else
        sb_printf(b, ", batch %lld, %lld epochs, seed %llu\n", (long long)t->batch, (long long)t->epochs,
                  (unsigned long long)t->seed);
    if (t->sampler.kind == SAMPLER_NONE) {
        if (t->eval_every)
            sb_printf(b, "evaluation: every %lld steps and after the last", (long long)t->eval_every);
        else
            sb_puts(b, "evaluation: after every epoch");
        sb_printf(b, "%s%s\n", t->eval_initial ? ", and before training (epoch 0)" : "",
                  t->eval_train ? "; also a training subset as large as the test split (train_eval)" : "");
    }
    if (m->head.on) { /* fitted after training (runtime/bayes_linear.c) */
        const HeadSpec *h = &m->head;
        char alpha[48], beta[48];
        snprintf(alpha, sizeof alpha, h->alpha_evidence ? "by the evidence" : "%g", h->alpha);
        snprintf(beta, sizeof beta, h->beta_evidence ? "by the evidence" : "%g", h->beta);
        sb_printf(b, "head: bayes_linear on %s's %lld features and a bias, fitted after training on the training split; "
                     "alpha (the prior's precision) %s, beta (the noise's) %s\n",
                  h->features_name, (long long)shape_numel(h->features->shape), alpha, beta);
    }
    const OptSpec *o = &t->opt;
    const SamplerSpec *sp = &t->sampler;
    if (sp->kind == SAMPLER_HMC)
        sb_printf(b, "sampler: hmc(step = %g, leapfrog = %lld, samples = %lld, burnin = %lld, thin = %lld, chains = %lld, "
                     "target_accept = %g, adapt_step = %s, adapt_mass = %s, jitter = %g, parallel = %s)\n",
                  sp->step, (long long)sp->leapfrog, (long long)sp->samples, (long long)sp->burnin, (long long)sp->thin,
                  (long long)sp->chains, sp->target_accept, sp->adapt_step ? "true" : "false", sp->adapt_mass ? "true" : "false",
                  sp->jitter, sp->parallel ? "true" : "false");
    else if (sp->kind == SAMPLER_NUTS)
        sb_printf(b, "sampler: nuts(samples = %lld, burnin = %lld, max_depth = %d, thin = %lld, chains = %lld, step = %g, "
                     "target_accept = %g, adapt_step = %s, adapt_mass = %s, parallel = %s)\n",
                  (long long)sp->samples, (long long)sp->burnin, sp->max_depth, (long long)sp->thin, (long long)sp->chains, sp->step,
                  sp->target_accept, sp->adapt_step ? "true" : "false", sp->adapt_mass ? "true" : "false",
                  sp->parallel ? "true" : "false");
    else if (sp->kind == SAMPLER_SGLD)
        sb_printf(b, "sampler: sgld(lr = %g, samples = %lld, burnin = %lld, thin = %lld, chains = %lld, rmsprop = %s, alpha = %g, "
                     "lambda = %g, parallel = %s)\n",
                  sp->lr, (long long)sp->samples, (long long)sp->burnin, (long long)sp->thin, (long long)sp->chains,
                  sp->precondition ? "true" : "false", sp->alpha, sp->lambda, sp->parallel ? "true" : "false");
    else {
        char hp[256];
        sb_printf(b, "optimizer: %s(%s)\n", o->kind == OPT_SGD ? "sgd" : opt_name(o), opt_hyperparams(o, hp, sizeof hp));
    }
    if (m->nmetric) {
        sb_puts(b, "metrics:");
        for (int i = 0; i < m->nmetric; i++) sb_printf(b, " %s", m->metric[i].name);
        sb_putc(b, '\n');
    }
    const Graph *g = c->graph;
    if (g && m->nprior) print_priors(b, m, g);
    if (g) print_variational(b, m, g);
    if (g && g->ngate) {
        sb_puts(b, "gated layers:\n");
        for (int i = 0; i < g->ngate; i++) {
            const GateInfo *gi = &g->gate[i];
            sb_printf(b, "  %-12s %-9s %lld %s, min width %lld: %s%s%s\n", gi->layer, gi->kind == GATE_SIZE ? "size_gate" : "gate",
                      (long long)gate_width(g, gi), g->node[gi->node].shape.rank > 1 ? "channels" : "wide", (long long)gi->min_width,
                      gi->fixed ? "cannot shrink, " : "can shrink", gi->fixed ? gi->fixed : "",
                      gi->fold ? "; folds into the layer when its penalty ends" : "");
        }
        if (t->prune_every)
            sb_printf(b, "pruning: every %lld %s%s\n", (long long)t->prune_every, t->prune_steps ? "step" : "epoch",
                      t->prune_every > 1 ? "s" : "");
    }
    const Plan *p = c->plan;
    if (p) {
        human_bytes(by, sizeof by, (double)p->arena_bytes);
        sb_printf(b, "memory plan (batch %lld): one arena of %s\n  ", (long long)p->max_batch, by);
        plan_print_memory(b, p, "\n  ");
        sb_putc(b, '\n');
        int drift = programs_find(g, "drift"); /* a sampler's position steps */
        if (drift >= 0)
            sb_printf(b, "kernels per leapfrog step: %d (gradient %d, momentum %d, position %d); per evaluation batch: %d\n",
                      p->prog[PROG_GRAD].nkernel + p->prog[PROG_UPDATE].nkernel + p->prog[drift].nkernel,
                      p->prog[PROG_GRAD].nkernel, p->prog[PROG_UPDATE].nkernel, p->prog[drift].nkernel,
                      p->prog[PROG_EVAL].nkernel);
        else if (t->sampler.kind == SAMPLER_NUTS)
            sb_printf(b, "kernels per leapfrog step: %d (the gradient; nuts moves the position and momentum itself); per evaluation "
                         "batch: %d\n", p->prog[PROG_GRAD].nkernel, p->prog[PROG_EVAL].nkernel);
        else
            sb_printf(b, "kernels per training step: %d (gradient %d, update %d); per evaluation batch: %d\n",
                      p->prog[PROG_GRAD].nkernel + p->prog[PROG_UPDATE].nkernel, p->prog[PROG_GRAD].nkernel,
                      p->prog[PROG_UPDATE].nkernel, p->prog[PROG_EVAL].nkernel);
    }
}
