/* sample.c: HMC, NUTS and SGLD over a model's trained weights (see sample.h).
 *
 * The potential is U(q) = sum over the training split's batches of rows x mean loss (the loss
 * holds the negative log prior / N, so the batches add up to it once).  A gradient pass runs
 * the `grad` program on every batch and, after each, the `update` program's hmc_kick with
 * c = (the step, or half of it) x rows: the momentum's kick is linear in the gradient, so the
 * batches need no gradient buffer of their own.  With the whole split in one batch (batch >=
 * N) the data is loaded once for the run.
 *
 * A trajectory: r ~ N(0, M) with M = diag(1 / minv); a half kick, then L times a drift
 * (q += eps minv r) and a kick (whole, the last one half), L drawn uniformly from
 * [ceil((1 - jitter) leapfrog), leapfrog] (a fixed L can make the trajectory a whole or half
 * turn of a Gaussian direction, which returns to the start or its mirror image every time).  H = U + r' minv r / 2 before
 * and after; the proposal is accepted with probability min(1, exp(H0 - H1)).  An energy error
 * above 1000 or a potential that is not finite is a divergence: rejected, counted and reported
 * with the chain and iteration; the position returns to where it was, so no NaN stays.
 *
 * Warm-up (`burnin` iterations) adapts the step size by dual averaging toward target_accept
 * (Hoffman and Gelman 2014, with Stan's constants gamma 0.05, t0 10, kappa 0.75; mu = log(10
 * eps), eps first found by doubling or halving until one leapfrog step's acceptance crosses
 * 0.8), and a diagonal inverse mass matrix from the positions' variance over Stan's windows (a
 * first buffer of 75 iterations, windows of 25, 50, 100, ... and a last buffer of 50; 15 %,
 * 75 % and 10 % of a warm-up shorter than 150), regularised as Stan does: (n var + 5e-3) /
 * (n + 5).  After each window the step size is found again and its adaptation restarts.
 * Sampling runs `samples` iterations at the final step size, keeping every thin-th position.
 * Chain c (from 0) is seeded with seed + c: its initial weights and all its random draws (and
 * sgld's data order starts from the split's for every chain), so chains are independent of
 * each other and run one after another or, for small models, at once (run_parallel) with the
 * same results.  NUTS (nuts.c) takes the same warm-up; SGLD (sgld_step) none: one
 * step per minibatch at its fixed lr, its noise from the kernels' generator; a step whose loss
 * is not finite is skipped, and a whole pass of them in a row stops the run. */
#include "sample.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lower.h"
#include "mcmc.h"
#include "nuts.h"
#include "posterior.h"
#include "rng.h"
#include "dist.h"
#include "safetensors.h"
#include "sample_internal.h"


const char *sample_name(SamplerKind k) {
    static const char *const name[] = {[SAMPLER_HMC] = "hmc", [SAMPLER_NUTS] = "nuts", [SAMPLER_SGLD] = "sgld"};
    return name[k];
}

int sample_flat_io(Hmc *h, int which, float *v, bool put) {
    for (int p = 0; p < h->npar; p++) {
        const Param *pa = &h->par[p];
        int node = which == WHICH_Q ? pa->w->node : which == WHICH_R ? pa->r : which == WHICH_MINV ? pa->minv : pa->w->grad;
        size_t bytes = sizeof(float) * (size_t)pa->n;
        if (put ? exec_write(h->e, node, v + pa->off, bytes) : exec_read(h->e, node, v + pa->off, bytes)) return -1;
    }
    return 0;
}

static int64_t load_batch(Hmc *h, int64_t k) {
    int64_t at = k * h->batch, rows = h->n_train - at < h->batch ? h->n_train - at : h->batch;
    exec_feed(h->e, &h->data.train, h->idx + at, rows);
    return rows;
}

/* U at the current position into *u, and, when c != 0, the momentum kicked by c grad U.  -1
 * after a device error (reported). */
static int pass(Hmc *h, double c, double *u) {
    *u = 0;
    for (int64_t k = 0; k < h->nbatch; k++) {
        int64_t rows = h->resident ? h->n_train : load_batch(h, k);
        h->e->scalars[h->kick_slot] = (float)(c * (double)rows);
        float loss = NAN;
        if (exec_run(h->e, PROG_GRAD, rows) || exec_read(h->e, h->g->loss, &loss, sizeof loss) ||
            (c != 0 && exec_run(h->e, PROG_UPDATE, rows))) {
            fprintf(h->cfg->diag->out, "nnc: error: %s: %s\n", h->e->dev->name, h->e->dev->err);
            return -1;
        }
        *u += (double)rows * loss;
    }
    h->grads++;
    return 0;
}

/* nuts's gradient: U(q) and grad U(q), summed over the batches from the `grad` program's
 * gradients of the mean loss. */
static int full_gradient(void *ctx, const double *q, double *g, double *u) {
    Hmc *h = ctx;
    for (int64_t i = 0; i < h->dim; i++) h->gbuf[i] = (float)q[i];
    if (sample_flat_io(h, WHICH_Q, h->gbuf, true)) return -1;
    memset(g, 0, sizeof(double) * (size_t)h->dim);
    *u = 0;
    for (int64_t k = 0; k < h->nbatch; k++) {
        int64_t rows = h->resident ? h->n_train : load_batch(h, k);
        float loss = NAN;
        if (exec_run(h->e, PROG_GRAD, rows) || exec_read(h->e, h->g->loss, &loss, sizeof loss) || sample_flat_io(h, WHICH_GRAD, h->gbuf, false)) {
            fprintf(h->cfg->diag->out, "nnc: error: %s: %s\n", h->e->dev->name, h->e->dev->err);
            return -1;
        }
        *u += (double)rows * loss;
        for (int64_t i = 0; i < h->dim; i++) g[i] += (double)rows * h->gbuf[i];
    }
    h->grads++;
    return 0;
}

static double kinetic(const Hmc *h) {
    double k = 0;
    for (int64_t i = 0; i < h->dim; i++) k += 0.5 * (double)h->minv[i] * (double)h->r[i] * (double)h->r[i];
    return k;
}

/* One trajectory of `steps` leapfrog steps of size eps from the current position, with a fresh
 * momentum; the position is left at its end.  *h0, *h1: the energy before and after (h1 is
 * +inf when the potential stopped being finite on the way).  -1 after a device error. */
static int trajectory(Hmc *h, double eps, int64_t steps, double *h0, double *h1, double *u_start, double *u_end) {
    for (int64_t i = 0; i < h->dim; i++) h->r[i] = (float)(rng_normal(&h->rng) / sqrt((double)h->minv[i]));
    double k0 = kinetic(h), u0, u = 0;
    if (sample_flat_io(h, WHICH_R, h->r, true)) return -1;
    h->e->scalars[h->step_slot] = (float)eps;
    if (pass(h, eps / 2, &u0)) return -1;
    *h0 = u0 + k0;
    *h1 = *u_end = INFINITY;
    *u_start = u0;
    if (!isfinite(u0)) return 0;
    for (int64_t l = 1; l <= steps; l++) {
        if (exec_run(h->e, h->drift, 1)) {
            fprintf(h->cfg->diag->out, "nnc: error: %s: %s\n", h->e->dev->name, h->e->dev->err);
            return -1;
        }
        if (pass(h, l < steps ? eps : eps / 2, &u)) return -1;
        if (!isfinite(u)) return 0;
    }
    if (sample_flat_io(h, WHICH_R, h->r, false)) return -1;
    double k1 = kinetic(h);
    *h1 = isfinite(k1) ? u + k1 : INFINITY;
    *u_end = u;
    return 0;
}

/* One SGLD step on the next minibatch (the training split reshuffled by the chain's generator at
 * the start of each pass): the gradient program, whose mean loss times N estimates U here
 * (h->u; with the kept position h->q when h->keep), then the update program's sgld ops with
 * c = lr N / 2, s = sqrt(lr) and the generator's counter at this step.  A non-finite loss
 * skips the step (*divergent, the position unchanged); a non-finite gradient behind a finite
 * loss stops the run, naming the weight, as training does.  -1 after an error (reported). */
static int sgld_step(Hmc *h, bool *divergent) {
    const SamplerSpec *sp = h->sp;
    if (!h->resident && h->sgld_batch == h->nbatch) h->sgld_batch = 0;
    if (!h->resident && h->sgld_batch == 0) rng_shuffle(&h->rng, h->idx, h->n_train);
    int64_t rows = h->resident ? h->n_train : load_batch(h, h->sgld_batch++);
    uint64_t step = (uint64_t)++h->sgld_step;
    exec_set_scalars(h->e, SC_SGLD_DRIFT, sp->lr * (double)h->n_train / 2);
    exec_set_scalars(h->e, SC_SGLD_NOISE, sqrt(sp->lr));
    exec_set_scalars(h->e, SC_STEP_LO, (double)(step & 0xFFFFFF));
    exec_set_scalars(h->e, SC_STEP_HI, (double)((step >> 24) & 0xFFFFFF));
    float loss = NAN;
    h->grads++;
    if (exec_run(h->e, PROG_GRAD, rows) || exec_read(h->e, h->g->loss, &loss, sizeof loss) ||
        (h->keep && sample_flat_io(h, WHICH_Q, h->q, false))) {
        fprintf(h->cfg->diag->out, "nnc: error: %s: %s\n", h->e->dev->name, h->e->dev->err);
        return -1;
    }
    h->u = (double)h->n_train * loss;
    *divergent = !isfinite(loss);
    if (*divergent) { /* skipped; a whole pass of them: the position itself is broken */
        if (++h->sgld_skips >= h->nbatch) {
            diag_error(h->cfg->diag, sp->loc,
                       "sampling stopped at sgld step %lld: the loss has not been finite on any minibatch for a whole pass over "
                       "the training split (%lld step%s): the position has run off (lr %g too large?), or the data "
                       "overflows the model",
                       (long long)step, (long long)h->sgld_skips, h->sgld_skips == 1 ? "" : "s", sp->lr);
            return -1;
        }
        return 0;
    }
    h->sgld_skips = 0;
    if (exec_run(h->e, PROG_UPDATE, rows)) {
        fprintf(h->cfg->diag->out, "nnc: error: %s: %s\n", h->e->dev->name, h->e->dev->err);
        return -1;
    }
    const Graph *g = h->g;
    int id = train_bad_update(h->e, 0);
    if (id >= 0) {
        const Weight *w = &g->weight[g->node[g->node[id].in[0]].ref];
        diag_error(h->cfg->diag, w->loc, "sampling stopped at sgld step %lld: the gradient of '%s' holds NaN or an infinity",
                   (long long)step, w->name);
        return -1;
    }
    return 0;
}

/* Back to h->q, the position before a rejected proposal. */
static int restore(Hmc *h) { return sample_flat_io(h, WHICH_Q, h->q, true); }

/* One Metropolis-adjusted trajectory (nuts: one transition; *depth its tree's depth).
 * *accept_stat: min(1, exp(H0 - H1)) (nuts: its mean over the tree); *divergent. */
static int iterate(Hmc *h, double eps, int64_t steps, double *accept_stat, bool *divergent, double *energy_error, int *depth) {
    if (h->sp->kind == SAMPLER_SGLD) {
        *depth = 0;
        *energy_error = 0;
        *accept_stat = 1;
        return sgld_step(h, divergent);
    }
    if (h->sp->kind == SAMPLER_NUTS) {
        NutsInfo info;
        if (nuts_transition(&h->nuts, eps, h->qd, h->gd, &h->u, &info)) return -1;
        for (int64_t i = 0; i < h->dim; i++) h->q[i] = (float)h->qd[i];
        *accept_stat = info.accept_stat;
        *divergent = info.divergent;
        *energy_error = info.energy_error;
        *depth = info.depth;
        return 0;
    }
    *depth = 0;
    double h0, h1, u0, u1;
    if (trajectory(h, eps, steps, &h0, &h1, &u0, &u1)) return -1;
    *energy_error = h1 - h0;
    *divergent = !isfinite(h1) || h1 - h0 > 1000;
    *accept_stat = *divergent ? 0 : fmin(1, exp(h0 - h1));
    if (!*divergent && rng_uniform(&h->rng) < *accept_stat) {
        h->u = u1;
        return sample_flat_io(h, WHICH_Q, h->q, false);
    }
    h->u = u0;
    return restore(h);
}

/* A first step size: doubled or halved until one leapfrog step's acceptance crosses 0.8
 * (Stan's heuristic).  The position is unchanged. */
static int one_step(Hmc *h, double eps, double *dh) {
    if (h->sp->kind == SAMPLER_NUTS) return nuts_probe(&h->nuts, eps, h->qd, h->gd, h->u, dh);
    double h0, h1, u0, u1;
    if (trajectory(h, eps, 1, &h0, &h1, &u0, &u1) || restore(h)) return -1;
    *dh = isfinite(h1) ? h0 - h1 : -INFINITY;
    return 0;
}

static int find_step(Hmc *h, double *eps) {
    double dh;
    if (one_step(h, *eps, &dh)) return -1;
    int dir = dh > log(0.8) ? 1 : -1;
    for (int k = 0; k < 100; k++) {
        double next = dir > 0 ? 2 * *eps : *eps / 2;
        if (next < 1e-12 || next > 1e6) break;
        if (one_step(h, next, &dh)) return -1;
        bool above = dh > log(0.8);
        if (dir > 0 && !above) break;
        *eps = next;
        if (dir < 0 && above) break;
    }
    return 0;
}

/* Dual averaging of log eps toward the target acceptance. */

static void dual_restart(DualAvg *d, double eps) { *d = (DualAvg){.mu = log(10 * eps), .log_eps = log(eps)}; }

static double dual_update(DualAvg *d, double accept, double target) {
    d->t++;
    double eta = 1.0 / ((double)d->t + 10);
    d->hbar = (1 - eta) * d->hbar + eta * (target - accept);
    d->log_eps = d->mu - sqrt((double)d->t) / 0.05 * d->hbar;
    double w = pow((double)d->t, -0.75);
    d->log_eps_bar = w * d->log_eps + (1 - w) * d->log_eps_bar;
    return exp(d->log_eps);
}

/* Stan's mass-matrix windows over a warm-up of w iterations: [start[k], end[k]). */
static int mass_windows(int64_t w, int64_t *start, int64_t *end, int cap) {
    int64_t init = 75, term = 50, base = 25;
    if (w < 20) return 0;
    if (init + term + base > w) {
        init = (int64_t)(0.15 * (double)w);
        term = (int64_t)(0.1 * (double)w);
        base = w - init - term;
    }
    int n = 0;
    for (int64_t s = init, size = base; s < w - term && n < cap; size *= 2) {
        int64_t e = s + size;
        if (e + 2 * size > w - term) e = w - term;
        start[n] = s;
        end[n++] = e;
        s = e;
    }
    return n;
}

/* ---- output ---- */

static void line(Hmc *h, cJSON *o) {
    if (h->metrics) {
        char *text = cJSON_PrintUnformatted(o);
        fprintf(h->metrics, "%s\n", text);
        fflush(h->metrics);
        free(text);
    }
    cJSON_Delete(o);
}


/* draws_chain<c>.safetensors: each weight [kept, shape...], then the potential per draw. */
static int write_draws(Hmc *h, const Chain *ch, int c) {
    if (!h->cfg->out_dir) return 0; /* a rank other than 0: rank 0 writes it (run_ranks) */
    StTensor *t = util_calloc((size_t)h->npar + 1, sizeof(StTensor));
    float *cols = util_calloc((size_t)(ch->kept * h->dim) + 1, sizeof(float));
    double *pot = util_calloc((size_t)ch->kept + 1, sizeof(double)); /* in double, as summarised */
    for (int p = 0; p < h->npar; p++) {
        const Param *pa = &h->par[p];
        float *dst = cols + ch->kept * pa->off;
        for (int64_t d = 0; d < ch->kept; d++) memcpy(dst + d * pa->n, ch->q + d * h->dim + pa->off, sizeof(float) * (size_t)pa->n);
        t[p] = (StTensor){.name = pa->w->name, .dtype = ST_F32, .rank = pa->w->shape.rank + 1, .data = dst,
                          .bytes = sizeof(float) * (size_t)(ch->kept * pa->n)};
        t[p].shape[0] = ch->kept;
        for (int k = 0; k < pa->w->shape.rank; k++) t[p].shape[k + 1] = pa->w->shape.dim[k];
    }
    memcpy(pot, ch->potential, sizeof(double) * (size_t)ch->kept);
    t[h->npar] = (StTensor){.name = "sampler.potential", .dtype = ST_F64, .rank = 1, .shape = {ch->kept}, .data = pot,
                            .bytes = sizeof(double) * (size_t)ch->kept};
    char path[4200], err[1024], step[64], acc[64];
    snprintf(path, sizeof path, "%s/draws_chain%d.safetensors", h->cfg->out_dir, c + 1);
    snprintf(step, sizeof step, "%.9g", ch->step);
    snprintf(acc, sizeof acc, "%.6f", ch->accept);
    const RunIdentity *id = h->cfg->identity;
    const char *keys[] = {"sampler", "step_size", "accept_rate", "model", "model_hash"};
    const char *vals[] = {sample_name(h->sp->kind), step, acc, id ? id->model : NULL, id ? id->hash : NULL};
    int rc = st_write_atomic(path, t, h->npar + 1, keys, vals, id ? 5 : 3, err, sizeof err);
    if (rc) fprintf(h->cfg->diag->out, "nnc: error: %s\n", err);
    free(t);
    free(cols);
    free(pot);
    return rc;
}

/* The chains' draws as posterior.c takes them (pointing into the chains). */
static void chain_draws(const Hmc *h, const Chain *ch, int m, Draws *d) {
    draws_layout(h->g, d);
    NNC_ASSERT(d->dim == h->dim && m <= DRAWS_MAX_CHAINS);
    for (int c = 0; c < m; c++) {
        d->q[c] = ch[c].q;
        d->kept[c] = ch[c].kept;
        d->ndraw += ch[c].kept;
    }
    d->nchain = m;
}

static void print_row(FILE *out, const char *name, const McmcSummary *s) {
    fprintf(out, "  %-24s %10.4g %10.4g %10.4g %10.4g %10.4g %9.0f %9.0f %7.3f\n", name, s->mean, s->sd, s->q5, s->q50, s->q95,
            s->ess_bulk, s->ess_tail, s->rhat);
}

/* A quantity's summary, added to summary.json (and printed as a row when `print`). */
static McmcSummary summarise(FILE *out, cJSON *all, const char *name, const double *x, int m, int64_t n, bool print) {
    McmcSummary s;
    mcmc_summary(x, m, n, &s);
    if (print) print_row(out, name, &s);
    cJSON *o = cJSON_AddObjectToObject(all, name);
    double v[] = {s.mean, s.sd, s.q5, s.q50, s.q95, s.ess_bulk, s.ess_tail, s.rhat};
    static const char *const k[] = {"mean", "sd", "q5", "q50", "q95", "ess_bulk", "ess_tail", "rhat"};
    for (int i = 0; i < 8; i++) {
        if (isfinite(v[i]))
            cJSON_AddNumberToObject(o, k[i], v[i]);
        else
            cJSON_AddNullToObject(o, k[i]);
    }
    return s;
}

typedef struct {
    double rhat;
    int64_t i;
} Worst;
static int cmp_worst(const void *a, const void *b) {
    double x = ((const Worst *)a)->rhat, y = ((const Worst *)b)->rhat;
    return x > y ? -1 : x < y; /* largest first; NaN last */
}

/* The summary table and summary.json over all chains. */
static int report(Hmc *h, const Chain *ch, int m) {
    int64_t n = ch[0].kept;
    FILE *out = h->out;
    cJSON *root = cJSON_CreateObject(), *q = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "chains", m);
    cJSON_AddNumberToObject(root, "draws_per_chain", (double)n);
    cJSON *chains = cJSON_AddArrayToObject(root, "chain");
    for (int c = 0; c < m; c++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "accept_rate", ch[c].accept);
        cJSON_AddNumberToObject(o, "step_size", ch[c].step);
        cJSON_AddNumberToObject(o, "divergences", (double)ch[c].divergences);
        cJSON_AddNumberToObject(o, "warmup_divergences", (double)ch[c].warm_divergences);
        cJSON_AddNumberToObject(o, "gradients", (double)ch[c].grads);
        if (h->sp->kind == SAMPLER_NUTS) {
            cJSON_AddNumberToObject(o, "mean_tree_depth", ch[c].mean_depth);
            cJSON_AddNumberToObject(o, "max_depth_hits", (double)ch[c].max_depth_hits);
        }
        cJSON_AddNumberToObject(o, "seconds", ch[c].seconds);
        cJSON_AddItemToArray(chains, o);
    }
    cJSON_AddItemToObject(root, "quantities", q);
    Draws d;
    chain_draws(h, ch, m, &d);
    int rc = 0;
    if (n < 4) {
        fprintf(out, "summary: %lld draws per chain are too few for R-hat and ESS (4 at least)\n", (long long)n);
    } else {
        double *x = util_calloc((size_t)(m * n) + 1, sizeof(double));
        fprintf(out, "  %-24s %10s %10s %10s %10s %10s %9s %9s %7s\n", "quantity", "mean", "sd", "5%", "50%", "95%", "ess_bulk",
                "ess_tail", "r_hat");
        for (int c = 0; c < m; c++) memcpy(x + c * n, ch[c].potential, sizeof(double) * (size_t)n);
        summarise(out, q, "potential", x, m, n, true);
        for (int p = 0; p < h->npar; p++) { /* a learned noise sigma: softplus of its raw weight */
            const char *name = h->par[p].w->name;
            if (!util_ends_with(name, "." SIGMA_RAW)) continue;
            size_t len = strlen(name), raw = strlen(SIGMA_RAW);
            for (int c = 0; c < m; c++)
                for (int64_t k = 0; k < n; k++) {
                    double v = ch[c].q[k * h->dim + h->par[p].off];
                    x[c * n + k] = v > 0 ? v + log1p(exp(-v)) : log1p(exp(v));
                }
            char label[256];
            snprintf(label, sizeof label, "%.*ssigma", (int)(len - raw), name);
            summarise(out, q, label, x, m, n, true);
        }
        const Dataset *eval_set = h->data.has_test ? &h->data.test : &h->data.train;
        if (!h->class_target) { /* each draw's RMSE: the summary of the predictive performance */
            int64_t *idx = train_iota(eval_set->n);
            rc = posterior_predictive(h->e, &d, eval_set, idx, eval_set->n, false, NULL, NULL, x);
            if (rc) fprintf(h->cfg->diag->out, "nnc: error: %s: %s\n", h->e->dev->name, h->e->dev->err);
            else summarise(out, q, h->data.has_test ? "test.rmse" : "train.rmse", x, m, n, true);
            free(idx);
        }
        Worst *worst = util_calloc((size_t)h->dim + 1, sizeof(Worst));
        McmcSummary *each = util_calloc((size_t)h->dim + 1, sizeof(McmcSummary));
        char (*label)[256] = util_calloc((size_t)h->dim + 1, sizeof *label);
        for (int p = 0; p < h->npar; p++)
            for (int64_t i = 0; i < h->par[p].n; i++) {
                int64_t j = h->par[p].off + i;
                for (int c = 0; c < m; c++)
                    for (int64_t k = 0; k < n; k++) x[c * n + k] = ch[c].q[k * h->dim + j];
                snprintf(label[j], sizeof label[j], "%s[%lld]", h->par[p].w->name, (long long)i);
                each[j] = summarise(out, q, label[j], x, m, n, false);
                worst[j] = (Worst){isnan(each[j].rhat) ? -1 : each[j].rhat, j};
            }
        qsort(worst, (size_t)h->dim, sizeof(Worst), cmp_worst);
        fprintf(out, "  the weights with the worst R-hat (all are in summary.json):\n");
        for (int64_t k = 0; k < h->dim && k < 5; k++) print_row(out, label[worst[k].i], &each[worst[k].i]);
        free(each);
        free(label);
        free(worst);
        free(x);
    }
    if (rc == 0 && posterior_report(h->e, h->cfg->model, &d, &h->data, h->order0 + h->n_train, h->data.train.n - h->n_train, out,
                                    cJSON_AddObjectToObject(root, "predictive")))
        rc = 1;
    draws_free(&d);
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", h->cfg->out_dir);
    char *text = cJSON_Print(root);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0 || fclose(f)) {
        fprintf(h->cfg->diag->out, "nnc: error: cannot write %s: %s\n", path, strerror(errno));
        rc = 1;
    }
    free(text);
    cJSON_Delete(root);
    return rc;
}

/* ---- a chain ---- */

/* Chain c from its start: the weights and generator seeded with seed + c, minv = 1, the
 * first step size, and room for its draws.  -1 after an error (reported). */
static int start_chain(Hmc *h, int c, Chain *ch) {
    const SamplerSpec *sp = h->sp;
    const TrainSpec *t = &h->cfg->model->train;
    if (train_init_weights(h->e, t->seed + (uint64_t)c)) return -1; /* the weights, and minv = 1 */
    rng_seed(&h->rng, t->seed + (uint64_t)c, RNG_SAMPLE);
    if (sample_flat_io(h, WHICH_Q, h->q, false)) return -1;
    h->sgld_step = h->sgld_batch = h->sgld_skips = 0;
    memcpy(h->idx, h->order0, sizeof(int64_t) * (size_t)h->data.train.n); /* sgld's data order: the chain's own */
    ch->nkeep = (sp->samples + sp->thin - 1) / sp->thin;
    ch->q = util_calloc((size_t)(ch->nkeep * h->dim) + 1, sizeof(float));
    ch->potential = util_calloc((size_t)ch->nkeep + 1, sizeof(double));
    ch->mean = util_calloc((size_t)h->dim + 1, sizeof(double));
    ch->m2 = util_calloc((size_t)h->dim + 1, sizeof(double));
    ch->grads_start = h->grads;
    if (sp->kind == SAMPLER_SGLD) {
        h->u = NAN;
    } else if (sp->kind == SAMPLER_NUTS) { /* minv = 1 on the host; the position and its gradient in double */
        for (int64_t i = 0; i < h->dim; i++) h->minv[i] = 1, h->qd[i] = h->q[i];
        if (full_gradient(h, h->qd, h->gd, &h->u)) return -1;
    } else if (sample_flat_io(h, WHICH_MINV, h->minv, false)) {
        return -1;
    }
    ch->eps = sp->kind == SAMPLER_SGLD ? sp->lr : sp->step;
    if (sp->adapt_step && sp->burnin > 0 && find_step(h, &ch->eps)) return -1;
    dual_restart(&ch->da, ch->eps);
    return 0;
}

static bool progress_bar(const Hmc *h) {
    return !h->progress && (h->cfg->progress == 1 || (h->cfg->progress < 0 && isatty(fileno(h->out))));
}

/* One iteration's bookkeeping in warm-up: the step size's dual averaging, the positions'
 * variance in the current mass-matrix window, and at the window's end the new inverse mass and
 * a fresh step size.  -1 after an error. */
static int adapt(Hmc *h, Chain *ch, double accept, const int64_t *wstart, const int64_t *wend, int nwin) {
    const SamplerSpec *sp = h->sp;
    int64_t it = ch->it;
    if (sp->adapt_step) ch->eps = dual_update(&ch->da, accept, sp->target_accept);
    if (ch->win < nwin && it >= wstart[ch->win] && it < wend[ch->win]) { /* Welford over the window's positions */
        ch->wn++;
        for (int64_t i = 0; i < h->dim; i++) {
            double d = h->q[i] - ch->mean[i];
            ch->mean[i] += d / (double)ch->wn;
            ch->m2[i] += d * (h->q[i] - ch->mean[i]);
        }
    }
    if (ch->win < nwin && it == wend[ch->win] - 1) {
        for (int64_t i = 0; i < h->dim; i++) {
            double var = ch->wn > 1 ? ch->m2[i] / (double)(ch->wn - 1) : 1;
            h->minv[i] = (float)(((double)ch->wn * var + 1e-3 * 5) / ((double)ch->wn + 5));
        }
        if (sp->kind == SAMPLER_HMC && sample_flat_io(h, WHICH_MINV, h->minv, true)) return -1;
        memset(ch->mean, 0, sizeof(double) * (size_t)h->dim);
        memset(ch->m2, 0, sizeof(double) * (size_t)h->dim);
        ch->wn = 0;
        ch->win++;
        if (sp->adapt_step) {
            if (find_step(h, &ch->eps)) return -1;
            dual_restart(&ch->da, ch->eps);
        }
    }
    if (it == sp->burnin - 1 && sp->adapt_step) ch->eps = exp(ch->da.log_eps_bar);
    return 0;
}

/* The metrics line and progress bar of the 100 iterations ending at ch->it (the last ones
 * fewer). */
static void window_line(Hmc *h, int c, Chain *ch, bool warm, double t0) {
    const SamplerSpec *sp = h->sp;
    int64_t it = ch->it, total = sp->burnin + sp->samples, span = (it % 100) + 1;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "chain", c + 1);
    cJSON_AddStringToObject(o, "phase", warm ? "warmup" : "sampling");
    cJSON_AddNumberToObject(o, "iteration", (double)(it + 1));
    cJSON_AddNumberToObject(o, "accept", ch->window_acc / (double)span);
    cJSON_AddNumberToObject(o, "step_size", ch->eps);
    cJSON_AddNumberToObject(o, "divergences", (double)ch->window_div);
    if (sp->kind == SAMPLER_NUTS) cJSON_AddNumberToObject(o, "tree_depth", ch->window_depth / (double)span);
    cJSON_AddNumberToObject(o, "time_s", round((util_now() - t0) * 1000) / 1000);
    line(h, o);
    if (progress_bar(h)) {
        fprintf(h->out, "\rchain %d/%lld %s %lld/%lld  accept %.2f  step %.3g  divergences %lld   ", c + 1, (long long)sp->chains,
                warm ? "warm-up" : "sampling", (long long)(it + 1), (long long)total, ch->window_acc / (double)span, ch->eps,
                (long long)(ch->divergences + ch->warm_divergences));
        fflush(h->out);
    }
    if (h->progress) { /* chains at once: for the run's bar (read by another thread) */
        struct ChainProgress *pr = &h->progress[c];
        double acc = ch->window_acc / (double)span;
        int64_t div = ch->divergences + ch->warm_divergences;
        __atomic_store(&pr->acc, &acc, __ATOMIC_RELAXED);
        __atomic_store_n(&pr->div, div, __ATOMIC_RELAXED);
        __atomic_store_n(&pr->it, it + 1, __ATOMIC_RELEASE);
    }
    ch->window_acc = 0;
    ch->window_div = 0;
    ch->window_depth = 0;
}

/* Chain c from ch->it (0, or where a checkpoint left it) to its end, then its draws file.  A
 * checkpoint every CHECKPOINT_ITERATIONS iterations (unless --checkpoint-every 0) and after
 * SIGINT or SIGTERM, which then end the run: 128 + the signal.  0, or 1 after an error. */
enum { CHECKPOINT_ITERATIONS = 1000 };
static int run_chain(Hmc *h, Chain *chains, int c) {
    Chain *ch = &chains[c];
    const SamplerSpec *sp = h->sp;
    const TrainSpec *t = &h->cfg->model->train;
    int64_t total = sp->burnin + sp->samples, signal_chain, signal_it;
    double t0 = util_now() - ch->seconds;
    bool nuts = sp->kind == SAMPLER_NUTS, sgld = sp->kind == SAMPLER_SGLD;
    exec_set_scalars(h->e, SC_SEED, (double)((t->seed + (uint64_t)c) & 0xFFFFFF)); /* sgld's noise */
    int64_t wstart[64], wend[64];
    int nwin = sp->adapt_mass ? mass_windows(sp->burnin, wstart, wend, 64) : 0, rc = 0;
    train_test_signal_at(&signal_chain, &signal_it);
    for (; ch->it < total && rc == 0; ch->it++) {
        int64_t it = ch->it;
        bool warm = it < sp->burnin;
        double a, err;
        bool div;
        int depth;
        int64_t lo = (int64_t)ceil((1 - sp->jitter) * (double)sp->leapfrog);
        int64_t steps = nuts || sgld ? 0 : lo + (int64_t)rng_below(&h->rng, (uint64_t)(sp->leapfrog - lo + 1));
        h->keep = !warm && (it - sp->burnin) % sp->thin == 0;
        if (iterate(h, ch->eps, steps, &a, &div, &err, &depth)) {
            rc = 1;
            break;
        }
        ch->window_acc += a;
        ch->window_depth += depth;
        if (div) {
            ch->window_div++;
            if (warm)
                ch->warm_divergences++;
            else if (h->divergences++, ch->divergences++, ch->reported++ >= 10) /* (warm-up ones, while the step size is still searched for, are counted) */
                ;
            else if (sgld)
                fprintf(h->out, "divergence: chain %d, iteration %lld (sampling): the loss is not finite; step skipped\n", c + 1,
                        (long long)it + 1);
            else
                fprintf(h->out, "divergence: chain %d, iteration %lld (sampling): energy error %.4g; proposal rejected\n", c + 1,
                        (long long)it + 1, err);
        }
        if (warm) {
            if (adapt(h, ch, a, wstart, wend, nwin)) {
                rc = 1;
                break;
            }
        } else {
            ch->acc_sum += a;
            ch->depth_sum += depth;
            ch->max_depth_hits += depth == sp->max_depth;
            if ((it - sp->burnin) % sp->thin == 0) {
                if (ch->kept == 0 && c == 0) h->first_draw_s = util_now() - h->t0;
                memcpy(ch->q + ch->kept * h->dim, h->q, sizeof(float) * (size_t)h->dim);
                ch->potential[ch->kept++] = h->u;
            }
        }
        if ((it + 1) % 100 == 0 || it + 1 == total) window_line(h, c, ch, warm, t0);
        if (c + 1 == signal_chain && it + 1 == signal_it) raise(SIGTERM);
        int sig = train_signal();
        if (sig && h->progress) return 128 + sig; /* a worker: the run keeps the chains that finished (run_parallel) */
        if (!h->progress && (sig || (h->cfg->checkpoint_every && (it + 1) % CHECKPOINT_ITERATIONS == 0 && it + 1 < total))) {
            ch->it++; /* (the loop's increment, before the checkpoint) */
            ch->seconds = util_now() - t0;
            rc = sample_checkpoint(h, chains, c) ? 1 : 0;
            if (sig) {
                if (progress_bar(h)) fputc('\n', h->out);
                fprintf(h->out, "interrupted by %s at chain %d, iteration %lld%s\n", sig == SIGINT ? "SIGINT" : "SIGTERM", c + 1,
                        (long long)ch->it, rc ? "" : "; checkpoint written, --resume continues from it");
                return rc ? rc : 128 + sig;
            }
            ch->it--;
        }
    }
    ch->accept = sp->samples ? ch->acc_sum / (double)sp->samples : 0;
    ch->step = ch->eps;
    ch->mean_depth = sp->samples ? ch->depth_sum / (double)sp->samples : 0;
    ch->grads = h->grads - ch->grads_start;
    ch->seconds = util_now() - t0;
    if (rc) return rc;
    if (progress_bar(h)) fputc('\n', h->out);
    if (sgld) {
        fprintf(h->out, "chain %d: %lld draws kept, lr %.4g, %lld steps skipped for a non-finite loss (%lld in warm-up), %lld "
                "minibatch gradients in %.2f s (%.0f/s)\n", c + 1, (long long)ch->kept, sp->lr, (long long)ch->divergences,
                (long long)ch->warm_divergences, (long long)ch->grads, ch->seconds, (double)ch->grads / ch->seconds);
    } else {
        fprintf(h->out, "chain %d: %lld draws kept, acceptance %.3f, step size %.4g, %lld divergences (%lld in warm-up), "
                "%lld gradients in %.2f s (%.0f/s)\n", c + 1, (long long)ch->kept, ch->accept, ch->step, (long long)ch->divergences,
                (long long)ch->warm_divergences, (long long)ch->grads, ch->seconds, (double)ch->grads / ch->seconds);
        if (nuts)
            fprintf(h->out, "chain %d: tree depth %.2f on average while sampling, %lld tree%s stopped at max_depth %d\n", c + 1,
                    ch->mean_depth, (long long)ch->max_depth_hits, ch->max_depth_hits == 1 ? "" : "s", sp->max_depth);
    }
    return write_draws(h, ch, c);
}

/* ---- a chain's buffers ---- */

/* What a chain walks with, h->dim and the batch given: the position, momentum and inverse mass,
 * its data order (the split's to start with: sgld shuffles it),
 * and nuts's trees. */
static void chain_buffers(Hmc *h) {
    h->q = util_calloc((size_t)h->dim + 1, sizeof(float));
    h->r = util_calloc((size_t)h->dim + 1, sizeof(float));
    h->minv = util_calloc((size_t)h->dim + 1, sizeof(float));
    h->idx = util_calloc((size_t)h->data.train.n + 1, sizeof(int64_t));
    memcpy(h->idx, h->order0, sizeof(int64_t) * (size_t)h->data.train.n);
    h->qd = h->gd = NULL, h->gbuf = NULL, h->nuts = (Nuts){0};
    if (h->sp->kind == SAMPLER_NUTS) { /* the position and its gradient in double */
        h->qd = util_calloc((size_t)h->dim + 1, sizeof(double));
        h->gd = util_calloc((size_t)h->dim + 1, sizeof(double));
        h->gbuf = util_calloc((size_t)h->dim + 1, sizeof(float));
        h->nuts = (Nuts){.dim = h->dim, .max_depth = h->sp->max_depth, .minv = h->minv, .rng = &h->rng, .grad = full_gradient, .ctx = h};
        nuts_init(&h->nuts);
    }
}

static void chain_buffers_free(Hmc *h) {
    free(h->q), free(h->r), free(h->minv), free(h->idx);
    free(h->qd), free(h->gd), free(h->gbuf);
    nuts_free(&h->nuts);
}

/* ---- chains at once ---- */

/* How many chains run at once: one per core (device_cpu_threads: NNC_THREADS, else OpenBLAS's
 * count) on the CPU device, when the sampler allows it (parallel = true), no chain is half done
 * (a sequential run's checkpoint), and every GEMM of the plan is small: then a chain never uses
 * a second core itself (small GEMMs run on one thread, and loop kernels this small are not
 * split), so two chains on two cores take the time of one.  Else 1: one after another. */
static int chain_workers(const Hmc *h, int c0, bool started) {
    const SamplerSpec *sp = h->sp;
    int64_t left = sp->chains - c0;
    if (!sp->parallel || started || left < 2 || strcmp(h->e->dev->name, "cpu")) return 1;
    const Plan *p = h->e->plan;
    for (int k = 0; k < p->nkernel; k++) {
        if (p->kernel[k].kind != K_GEMM) continue;
        GemmShape s = device_gemm_shape(&p->kernel[k], p->max_batch);
        if (!device_gemm_small(s.m, s.n, s.k)) return 1;
    }
    int w = device_cpu_threads();
    return (int)(left < w ? left : w);
}

typedef struct {
    Hmc h;                      /* its own copy: buffers, generator, counters, executor */
    Exec e;                     /* that executor, its own but for worker 0 (the run's) */
    const Exec *from;           /* the run's, whose scalars it starts with */
    Chain *chains;
    int first, stride, nchain;  /* it runs chains first, first + stride, ... < nchain */
    FILE **out, **metrics;      /* per chain: where its lines go (buffers) */
    int *rc;                    /* per chain: 0 finished, else why not (-1: not run) */
    int *finished;              /* workers done, counted atomically */
    pthread_t id;
} ChainWorker;

/* A worker's chains, one after another; first its executor, if it has its own. */
static void worker_chains(ChainWorker *w) {
    Hmc *h = &w->h;
    if (h->e == &w->e) { /* its own executor: compiled (or the trainer's kernels), the run's scalars, the data */
        char err[1024];
        if (exec_new(&w->e, w->from->plan, "cpu", NULL, err, sizeof err)) {
            fprintf(h->cfg->diag->out, "nnc: error: %s\n", err);
            return;
        }
        memcpy(w->e.scalars, w->from->scalars, sizeof(float) * (size_t)h->g->nscalar);
        if (h->resident && load_batch(h, 0) < 0) return;
    }
    for (int c = w->first; c < w->nchain; c += w->stride) {
        h->out = w->out[c], h->metrics = w->metrics[c];
        int rc = start_chain(h, c, &w->chains[c]) ? 1 : 0;
        if (rc == 0) rc = run_chain(h, w->chains, c);
        fflush(h->out);
        fflush(h->metrics);
        w->rc[c] = rc;
        if (rc) break;
    }
}

static void *chain_worker_main(void *arg) {
    ChainWorker *w = arg;
    worker_chains(w);
    __atomic_add_fetch(w->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Chains c0.. at once on `nw` threads, chain c on thread (c - c0) % nw, each thread with its
 * own executor and buffers.  Their lines (stdout, metrics.jsonl) are held per chain and written
 * in chain order as each finishes in turn, so the output is the same as one after another; so
 * are the draws, whose randomness is each chain's own (seed + c).  A checkpoint is written when
 * a chain has finished and all before it; after SIGINT or SIGTERM the run keeps those, and
 * --resume runs the others from their start again (to the same draws).  A worker whose thread
 * cannot start runs its chains on the calling thread once the others are done: the same draws,
 * later. */
static int run_parallel(Hmc *h, Chain *ch, int c0, int nw) {
    int C = (int)h->sp->chains, rc = 0;
    ChainWorker *w = util_calloc((size_t)nw, sizeof(ChainWorker));
    FILE **out = util_calloc((size_t)C, sizeof(FILE *)), **met = util_calloc((size_t)C, sizeof(FILE *));
    char **obuf = util_calloc((size_t)C, sizeof(char *)), **mbuf = util_calloc((size_t)C, sizeof(char *));
    size_t *olen = util_calloc((size_t)C, sizeof(size_t)), *mlen = util_calloc((size_t)C, sizeof(size_t));
    int *crc = util_calloc((size_t)C, sizeof(int)), finished = 0;
    struct ChainProgress *prog = util_calloc((size_t)C, sizeof(struct ChainProgress));
    for (int c = c0; c < C; c++) {
        out[c] = open_memstream(&obuf[c], &olen[c]);
        met[c] = open_memstream(&mbuf[c], &mlen[c]);
        crc[c] = -1;
        if (!out[c] || !met[c]) NNC_BUG("open_memstream: %s", strerror(errno));
    }
    int started = 0, create_err = 0;
    bool *running = util_calloc((size_t)nw, sizeof(bool));
    for (int k = 0; k < nw; k++) {
        ChainWorker *cw = &w[k];
        *cw = (ChainWorker){.h = *h, .from = h->e, .chains = ch, .first = c0 + k, .stride = nw, .nchain = C, .out = out,
                            .metrics = met, .rc = crc, .finished = &finished};
        Hmc *x = &cw->h;
        x->progress = prog; /* (which makes it a worker) */
        x->e = k == 0 ? h->e : &cw->e;
        x->grads = x->divergences = 0;
        chain_buffers(x);
    }
    for (int k = 0; k < nw; k++) {
        int e = pthread_create(&w[k].id, NULL, chain_worker_main, &w[k]);
        running[k] = !e, started += !e, create_err = e ? e : create_err;
    }
    if (started == nw)
        fprintf(h->out, "chains %d to %lld run at once on %d threads\n", c0 + 1, (long long)C, nw);
    else /* a worker without a thread: its chains run here, after the others */
        fprintf(h->out, "chains %d to %lld: cannot start %d of %d threads (%s): %s\n", c0 + 1, (long long)C, nw - started, nw,
                strerror(create_err),
                started ? "the chains of those run after the others, on this thread" : "the chains run one after another");
    fflush(h->out);
    if (progress_bar(h)) { /* every chain's iterations, acceptance and divergences, until all are done */
        while (__atomic_load_n(&finished, __ATOMIC_ACQUIRE) < started) {
            fputc('\r', h->out);
            for (int c = c0; c < C; c++) {
                int64_t it = __atomic_load_n(&prog[c].it, __ATOMIC_ACQUIRE), total = h->sp->burnin + h->sp->samples;
                double acc;
                __atomic_load(&prog[c].acc, &acc, __ATOMIC_RELAXED);
                fprintf(h->out, "%schain %d %s %lld/%lld acc %.2f div %lld", c > c0 ? " | " : "", c + 1,
                        it < h->sp->burnin ? "warm-up" : "sampling", (long long)it, (long long)total, acc,
                        (long long)__atomic_load_n(&prog[c].div, __ATOMIC_RELAXED));
            }
            fputs("   ", h->out);
            fflush(h->out);
            nanosleep(&(struct timespec){.tv_nsec = 200000000}, NULL);
        }
        fputc('\n', h->out);
    }
    for (int k = 0; k < nw; k++)
        if (running[k]) pthread_join(w[k].id, NULL);
    for (int k = 0; k < nw; k++)
        if (!running[k] && !train_signal()) worker_chains(&w[k]);
    int done = c0;
    while (done < C && crc[done] == 0) done++;
    for (int c = c0; c < C; c++) {
        fclose(out[c]);
        fclose(met[c]);
        if (c < done) { /* in order: as if one after another */
            fwrite(obuf[c], 1, olen[c], h->out);
            if (h->metrics) fwrite(mbuf[c], 1, mlen[c], h->metrics);
            ch[c].grads_start = h->grads; /* as if one after another: the run's count when it began */
            h->grads += ch[c].grads;
            h->divergences += ch[c].divergences;
        }
        free(obuf[c]);
        free(mbuf[c]);
    }
    if (h->metrics) fflush(h->metrics);
    if (c0 == 0 && done > 0) h->first_draw_s = w[0].h.first_draw_s;
    int sig = train_signal();
    if (done > c0 && sample_checkpoint(h, ch, done - 1)) rc = 1;
    if (rc == 0 && done < C) {
        rc = 1;
        for (int c = done; c < C; c++)
            if (crc[c] > 128) rc = crc[c];
        if (sig && rc > 128) {
            char left[64];
            if (done + 1 == C)
                snprintf(left, sizeof left, "chain %d", C);
            else
                snprintf(left, sizeof left, "chains %d to %d", done + 1, C);
            fprintf(h->out, "interrupted by %s with %s unfinished (chains ran at once): %s\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
                    left, done > 0 ? "the chains before are in the checkpoint; --resume runs the rest again from their start"
                                   : "no chain had finished, so there is nothing to resume from");
        }
    }
    for (int k = 0; k < nw; k++) {
        chain_buffers_free(&w[k].h);
        if (k > 0 && w[k].e.plan) exec_free(&w[k].e);
    }
    free(w), free(out), free(met), free(obuf), free(mbuf), free(olen), free(mlen), free(crc), free(prog), free(running);
    return rc;
}

/* ---- chains on ranks ---- */

/* Sends chain c (its counts, draws and held lines) from the rank that ran it to every rank. */
static int share_chain(Hmc *h, Chain *ch, int c, char **obuf, size_t *olen, char **mbuf, size_t *mlen) {
    int owner = c % dist.size;
    Chain mine = ch[c];
    if (dist_bcast(&ch[c], sizeof ch[c], owner, "a chain's results")) return -1;
    if (dist.rank != owner) {
        ch[c].mean = ch[c].m2 = NULL; /* (the owner's pointers) */
        ch[c].q = util_calloc((size_t)(ch[c].kept * h->dim) + 1, sizeof(float));
        ch[c].potential = util_calloc((size_t)ch[c].kept + 1, sizeof(double));
    } else {
        ch[c] = mine;
    }
    int64_t len[2] = {(int64_t)olen[c], (int64_t)mlen[c]};
    if (dist_bcast(ch[c].q, (int64_t)sizeof(float) * ch[c].kept * h->dim, owner, "a chain's draws") ||
        dist_bcast(ch[c].potential, (int64_t)sizeof(double) * ch[c].kept, owner, "a chain's draws") ||
        dist_bcast(len, sizeof len, owner, "a chain's lines"))
        return -1;
    if (dist.rank != owner) {
        free(obuf[c]);
        free(mbuf[c]);
        obuf[c] = util_calloc((size_t)len[0] + 1, 1);
        mbuf[c] = util_calloc((size_t)len[1] + 1, 1);
        olen[c] = (size_t)len[0], mlen[c] = (size_t)len[1];
    }
    return dist_bcast(obuf[c], len[0], owner, "a chain's lines") || dist_bcast(mbuf[c], len[1], owner, "a chain's lines") ? -1 : 0;
}

/* Data parallel (dist.h) with a sampler: chain c runs on rank c % ranks, the chains of a rank one
 * after another, their lines held per chain.  Then each chain's counts, draws and lines go to
 * every rank, and rank 0 writes them in chain order (lines, draws files): the output of one
 * process running the chains one after another, since chain c's randomness is its own (seed +
 * c).  No checkpoint is kept (a chain's position is on its rank alone). */
static int run_ranks(Hmc *h, Chain *ch) {
    int C = (int)h->sp->chains, rc = 0;
    FILE *out0 = h->out, *met0 = h->metrics;
    char **obuf = util_calloc((size_t)C, sizeof(char *)), **mbuf = util_calloc((size_t)C, sizeof(char *));
    size_t *olen = util_calloc((size_t)C, sizeof(size_t)), *mlen = util_calloc((size_t)C, sizeof(size_t));
    struct ChainProgress *prog = util_calloc((size_t)C, sizeof(struct ChainProgress));
    h->progress = prog; /* as in a worker: no checkpoint, a signal ends the chain */
    int64_t grads0 = h->grads;
    for (int c = dist.rank; c < C && rc == 0; c += dist.size) {
        FILE *o = open_memstream(&obuf[c], &olen[c]), *m = open_memstream(&mbuf[c], &mlen[c]);
        if (!o || !m) NNC_BUG("open_memstream: %s", strerror(errno));
        h->out = o, h->metrics = m;
        rc = start_chain(h, c, &ch[c]) ? 1 : 0;
        if (rc == 0) rc = run_chain(h, ch, c);
        fclose(o);
        fclose(m);
    }
    h->out = out0, h->metrics = met0, h->progress = NULL;
    int bad = dist_first_failed(rc == 0, "the chains' end");
    if (bad >= 0 && dist.rank == 0 && rc == 0)
        fprintf(stderr, "nnc: error: rank %d could not finish its chains (its message says why); sampling on several ranks keeps "
                "no checkpoint\n", bad);
    h->grads = grads0;
    for (int c = 0; c < C && bad < 0; c++) {
        if (share_chain(h, ch, c, obuf, olen, mbuf, mlen)) {
            bad = dist.rank;
            break;
        }
        ch[c].grads_start = h->grads; /* as if one after another */
        h->grads += ch[c].grads;
        h->divergences += ch[c].divergences;
        if (dist.rank == 0) {
            fwrite(obuf[c], 1, olen[c], h->out);
            if (h->metrics) fwrite(mbuf[c], 1, mlen[c], h->metrics);
            if (c % dist.size && write_draws(h, &ch[c], c)) bad = 0; /* rank 0 ran its own chains' */
        }
    }
    if (h->metrics) fflush(h->metrics);
    for (int c = 0; c < C; c++) {
        free(obuf[c]);
        free(mbuf[c]);
    }
    free(obuf), free(mbuf), free(olen), free(mlen), free(prog);
    return bad >= 0 ? (rc ? rc : 1) : 0;
}

/* ---- the run ---- */

static int setup(Hmc *h, const TrainConfig *cfg) {
    const Graph *g = h->g;
    char err[1024];
    if (train_load_data(cfg->model, g, &h->data, err, sizeof err)) {
        fprintf(cfg->diag->out, "nnc: error: %s\n", err);
        return 1;
    }
    int64_t n_valid; /* the training split: the validation samples are held out as training does */
    h->order0 = train_split_order(&cfg->model->train, h->data.train.n, &n_valid);
    h->n_train = h->data.train.n - n_valid;
    if (h->n_train <= 0) {
        fprintf(cfg->diag->out, "nnc: error: the validation split leaves no training data\n");
        return 1;
    }
    h->batch = h->e->plan->max_batch;
    h->nbatch = (h->n_train + h->batch - 1) / h->batch;
    h->resident = h->nbatch == 1;
    for (int i = 0; i < g->ninput; i++)
        if (g->input[i].is_target) h->class_target = g->input[i].is_class;
    exec_set_scalars(h->e, SC_DATA_INV_N, 1.0 / (double)h->n_train);
    bool hmc = h->sp->kind == SAMPLER_HMC;
    if (hmc) {
        h->kick_slot = ir_find_scalar(g, "hmc.kick");
        h->step_slot = ir_find_scalar(g, "hmc.step");
        h->drift = programs_find(g, "drift");
        NNC_ASSERT(h->kick_slot >= 0 && h->step_slot >= 0 && h->drift >= 0);
    }
    h->par = util_calloc((size_t)g->nweight + 1, sizeof(Param));
    for (int wi = 0; wi < g->nweight; wi++) {
        const Weight *w = &g->weight[wi];
        if (w->kind != W_PARAM || w->grad < 0) continue;
        Param p = {.w = w, .r = -1, .minv = -1, .n = shape_numel(w->shape), .off = h->dim};
        for (int k = 0; k < g->nweight; k++)
            if (g->weight[k].kind == W_STATE && g->weight[k].of == wi) {
                if (util_ends_with(g->weight[k].name, ".hmc_r")) p.r = g->weight[k].node;
                if (util_ends_with(g->weight[k].name, ".hmc_minv")) p.minv = g->weight[k].node;
            }
        NNC_ASSERT(!hmc || (p.r >= 0 && p.minv >= 0));
        h->par[h->npar++] = p;
        h->dim += p.n;
    }
    chain_buffers(h);
    if (h->resident) load_batch(h, 0);
    return 0;
}

int sample_run(const TrainConfig *cfg, TrainResult *res) {
    memset(res, 0, sizeof *res);
    const SamplerSpec *sp = &cfg->model->train.sampler;
    Hmc h = {.cfg = cfg, .sp = sp, .e = cfg->exec, .g = cfg->exec->g, .out = cfg->out ? cfg->out : stdout, .t0 = util_now()};
    if (!cfg->out_dir && dist.rank == 0) {
        fprintf(cfg->diag->out, "nnc: error: sampling needs an output directory for its draws\n");
        return 1;
    }
    int rc = setup(&h, cfg), c0 = 0;
    if (dist.size > 1 && dist_first_failed(rc == 0, "loading the data") >= 0) rc = 1;
    bool started = false; /* chain c0 is under way (a checkpoint's) */
    Chain *ch = util_calloc((size_t)sp->chains, sizeof(Chain));
    if (rc == 0 && cfg->resume_sampling && sample_resume(&h, ch, &c0, &started)) rc = 1;
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->out_dir);
    if (rc == 0 && cfg->out_dir && (train_make_dirs(cfg->out_dir) || (started && sample_trim_metrics(path, c0 + 1, ch[c0].it)) ||
                    !(h.metrics = fopen(path, started ? "a" : "w")))) {
        fprintf(cfg->diag->out, "nnc: error: cannot write %s: %s\n", path, strerror(errno));
        rc = 1;
    }
    if (rc == 0) {
        char steps[160];
        if (sp->kind == SAMPLER_NUTS)
            snprintf(steps, sizeof steps, "trees of depth %d at most", sp->max_depth);
        else if (sp->kind == SAMPLER_SGLD)
            snprintf(steps, sizeof steps, "one step of lr %g per minibatch of %lld%s", sp->lr, (long long)h.batch,
                     sp->precondition ? ", preconditioned by RMSprop" : "");
        else
            snprintf(steps, sizeof steps, "%lld leapfrog steps each", (long long)sp->leapfrog);
        fprintf(h.out, "sampling %s by %s: %lld training samples (%s), %lld weights; %lld chain%s of %lld warm-up and %lld "
                "sampling iterations, %s, every %lld%s kept (%s)\n",
                cfg->model->name, sample_name(sp->kind), (long long)h.n_train,
                h.resident ? "one batch, loaded once" : "in batches", (long long)h.dim, (long long)sp->chains, sp->chains > 1 ? "s" : "",
                (long long)sp->burnin, (long long)sp->samples, steps, (long long)sp->thin, sp->thin == 1 ? "st" : sp->thin == 2 ? "nd" : sp->thin == 3 ? "rd" : "th",
                cfg->backend ? cfg->backend : "cpu");
        fflush(h.out);
    }
    struct sigaction old_sig[2]; /* SIGINT and SIGTERM end the run at an iteration's end, with a checkpoint */
    train_signals_catch(old_sig);
    if (rc == 0 && started && ch[c0].it >= sp->burnin + sp->samples) { /* the checkpoint's chain had finished: its */
        rc = run_chain(&h, ch, c0);                                   /* lines and draws again, then the others */
        c0++, started = false;
    }
    int nw = rc == 0 && dist.size == 1 ? chain_workers(&h, c0, started) : 1;
    if (rc == 0 && dist.size > 1) {
        rc = run_ranks(&h, ch);
        nw = 0;
    }
    if (nw > 1) rc = run_parallel(&h, ch, c0, nw);
    for (int c = c0; nw == 1 && rc == 0 && c < sp->chains; c++) {
        if (!(started && c == c0)) rc = start_chain(&h, c, &ch[c]) ? 1 : 0;
        if (rc == 0) rc = run_chain(&h, ch, c);
        if (rc == 0) rc = sample_checkpoint(&h, ch, c) ? 1 : 0; /* chain c done: --resume goes on with the next */
    }
    train_signals_restore(old_sig);
    if (rc == 0 && dist.rank == 0) rc = report(&h, ch, (int)sp->chains);
    res->seconds = util_now() - h.t0;
    if (rc == 0) {
        double mib = 1 << 20, peak = (double)util_peak_rss_bytes();
        res->peak_rss = peak;
        fprintf(h.out, "sampling took %.2f s (first draw after %.2f s), %lld gradient%s (%.0f/s), %lld divergences while sampling; peak RSS %.1f MiB\n",
                res->seconds, h.first_draw_s, (long long)h.grads,
                sp->kind == SAMPLER_SGLD ? "s of minibatches" : " passes over the training split", (double)h.grads / res->seconds,
                (long long)h.divergences, peak / mib);
        fprintf(h.out, "draws written to %s/draws_chain*.safetensors, summary to %s/summary.json\n", cfg->out_dir, cfg->out_dir);
    }
    for (int c = 0; c < sp->chains; c++) {
        free(ch[c].q);
        free(ch[c].potential);
        free(ch[c].mean);
        free(ch[c].m2);
    }
    free(ch);
    if (h.metrics) fclose(h.metrics);
    free(h.par);
    if (h.q) chain_buffers_free(&h);
    free((void *)h.order0);
    train_free_data(&h.data);
    return rc;
}
