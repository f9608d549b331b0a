/* sample_checkpoint.c: a sampling run's checkpoint, written and read back (see
 * sample_internal.h; docs/formats.md describes the file).  One safetensors file,
 * checkpoint.safetensors in the run directory, written atomically like training's:
 *   - every weight of the plan (the position, and state such as sgld_rms's running average and
 *     hmc's inverse mass) under its name, as the device holds it;
 *   - sampler.minv, and for nuts sampler.qd / sampler.gd (the position and grad U in double);
 *   - sampler.welford [2, dim]: the current mass-matrix window's mean and sum of squares;
 *   - sampler.order: the training split's sample order (sgld reshuffles it every pass);
 *   - sampler.rng: the generator's four words; sampler.run: the run's counters;
 *   - per chain so far, sampler.chain<k>.draws [kept, dim], .potential [kept] and .state, the
 *     scalars of its walk (CHAIN_STATE below).
 * Metadata: format nnc-sampler-checkpoint-1, the model's name, source hash and --set values (a
 * resume must match all three, as training's does), the sampler, the chain and iteration. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sample_internal.h"

/* A chain's scalars in sampler.chain<k>.state, in this order (counts are exact in a double). */
enum { CHAIN_STATE = 26 };
static void chain_pack(const Chain *ch, double *v) {
    const double s[CHAIN_STATE] = {
        (double)ch->kept, (double)ch->nkeep, (double)ch->it, ch->eps, ch->da.mu, ch->da.hbar, ch->da.log_eps,
        ch->da.log_eps_bar, (double)ch->da.t, ch->win, (double)ch->wn, (double)ch->window_div, (double)ch->reported,
        ch->window_acc, ch->window_depth, ch->acc_sum, ch->depth_sum, (double)ch->grads_start, ch->seconds,
        (double)ch->divergences, (double)ch->warm_divergences, (double)ch->max_depth_hits, ch->accept, ch->step, ch->mean_depth,
        (double)ch->grads};
    memcpy(v, s, sizeof s);
}
static void chain_unpack(Chain *ch, const double *v) {
    ch->kept = (int64_t)v[0], ch->nkeep = (int64_t)v[1], ch->it = (int64_t)v[2], ch->eps = v[3];
    ch->da = (DualAvg){.mu = v[4], .hbar = v[5], .log_eps = v[6], .log_eps_bar = v[7], .t = (int64_t)v[8]};
    ch->win = (int)v[9], ch->wn = (int64_t)v[10], ch->window_div = (int64_t)v[11], ch->reported = (int64_t)v[12];
    ch->window_acc = v[13], ch->window_depth = v[14], ch->acc_sum = v[15], ch->depth_sum = v[16];
    ch->grads_start = (int64_t)v[17], ch->seconds = v[18], ch->divergences = (int64_t)v[19];
    ch->warm_divergences = (int64_t)v[20], ch->max_depth_hits = (int64_t)v[21], ch->accept = v[22], ch->step = v[23];
    ch->mean_depth = v[24], ch->grads = (int64_t)v[25];
}

enum { RUN_STATE = 6 }; /* sampler.run: u, grads, divergences, sgld_step, sgld_batch, first_draw_s */

typedef struct {
    StTensor *t;
    int n, cap;
    char **names; /* owned */
    void **owned;
    int nowned;
} Tensors;

static void add(Tensors *ts, const char *name, StDtype dt, const void *data, int rank, const int64_t *shape, bool own_data) {
    if (ts->n == ts->cap) {
        ts->cap = ts->cap ? 2 * ts->cap : 64;
        ts->t = util_realloc(ts->t, sizeof(StTensor) * (size_t)ts->cap);
        ts->names = util_realloc(ts->names, sizeof(char *) * (size_t)ts->cap);
        ts->owned = util_realloc(ts->owned, sizeof(void *) * (size_t)ts->cap);
    }
    StTensor *t = &ts->t[ts->n];
    *t = (StTensor){.dtype = dt, .rank = rank, .data = data, .bytes = st_dtype_size(dt)};
    for (int k = 0; k < rank; k++) t->shape[k] = shape[k], t->bytes *= (size_t)shape[k];
    ts->names[ts->n] = util_strdup(name);
    t->name = ts->names[ts->n++];
    if (own_data) ts->owned[ts->nowned++] = (void *)data;
}

static void tensors_free(Tensors *ts) {
    for (int i = 0; i < ts->n; i++) free(ts->names[i]);
    for (int i = 0; i < ts->nowned; i++) free(ts->owned[i]);
    free(ts->t);
    free(ts->names);
    free(ts->owned);
}

int sample_checkpoint(Hmc *h, const Chain *ch, int c) {
    const TrainConfig *cfg = h->cfg;
    if (!cfg->identity || !cfg->out_dir) return 0;
    const Graph *g = h->g;
    Tensors ts = {0};
    int rc = 0;
    for (int wi = 0; wi < g->nweight && rc == 0; wi++) { /* the device's weights and sampler state */
        const Weight *w = &g->weight[wi];
        int64_t n = shape_numel(w->shape), shape[1] = {n};
        float *v = util_calloc((size_t)n + 1, sizeof(float));
        rc = exec_read(h->e, w->node, v, sizeof(float) * (size_t)n);
        add(&ts, w->name, ST_F32, v, 1, shape, true);
    }
    int64_t dim[1] = {h->dim}, two[2] = {2, h->dim}, norder[1] = {h->data.train.n}, four[1] = {4}, nrun[1] = {RUN_STATE};
    add(&ts, "sampler.minv", ST_F32, h->minv, 1, dim, false);
    if (h->sp->kind == SAMPLER_NUTS) {
        add(&ts, "sampler.qd", ST_F64, h->qd, 1, dim, false);
        add(&ts, "sampler.gd", ST_F64, h->gd, 1, dim, false);
    }
    double *welford = util_calloc((size_t)(2 * h->dim) + 1, sizeof(double));
    memcpy(welford, ch[c].mean, sizeof(double) * (size_t)h->dim);
    memcpy(welford + h->dim, ch[c].m2, sizeof(double) * (size_t)h->dim);
    add(&ts, "sampler.welford", ST_F64, welford, 2, two, true);
    add(&ts, "sampler.order", ST_I64, h->idx, 1, norder, false);
    add(&ts, "sampler.rng", ST_I64, h->rng.s, 1, four, false);
    double *run = util_calloc(RUN_STATE, sizeof(double));
    run[0] = h->u, run[1] = (double)h->grads, run[2] = (double)h->divergences;
    run[3] = (double)h->sgld_step, run[4] = (double)h->sgld_batch, run[5] = h->first_draw_s;
    add(&ts, "sampler.run", ST_F64, run, 1, nrun, true);
    for (int k = 0; k <= c; k++) {
        char name[96];
        int64_t kd[2] = {ch[k].kept, h->dim}, kp[1] = {ch[k].kept}, ns[1] = {CHAIN_STATE};
        snprintf(name, sizeof name, "sampler.chain%d.draws", k + 1);
        add(&ts, name, ST_F32, ch[k].q, 2, kd, false);
        snprintf(name, sizeof name, "sampler.chain%d.potential", k + 1);
        add(&ts, name, ST_F64, ch[k].potential, 1, kp, false);
        double *state = util_calloc(CHAIN_STATE, sizeof(double));
        chain_pack(&ch[k], state);
        snprintf(name, sizeof name, "sampler.chain%d.state", k + 1);
        add(&ts, name, ST_F64, state, 1, ns, true);
    }
    char path[4200], err[1024], chain[32], iteration[32];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", cfg->out_dir);
    snprintf(chain, sizeof chain, "%d", c + 1);
    snprintf(iteration, sizeof iteration, "%" PRId64, ch[c].it);
    const RunIdentity *id = cfg->identity;
    const char *keys[] = {"format", "nnc", "model", "model_hash", "settings", "sampler", "chain", "iteration"};
    const char *vals[] = {"nnc-sampler-checkpoint-1", NNC_VERSION, id->model, id->hash, id->settings, sample_name(h->sp->kind), chain,
                          iteration};
    if (rc)
        fprintf(cfg->diag->out, "nnc: error: %s: %s\n", h->e->dev->name, h->e->dev->err);
    else if ((rc = st_write_atomic(path, ts.t, ts.n, keys, vals, 8, err, sizeof err)))
        fprintf(cfg->diag->out, "nnc: error: %s\n", err);
    tensors_free(&ts);
    return rc ? -1 : 0;
}

/* Tensor `name` of the file: `dt` with `n` elements, copied into dst. */
static int take(const SafeTensors *st, const char *path, const char *name, StDtype dt, int64_t n, void *dst, char *err, size_t nerr) {
    const StTensor *t = st_find(st, name);
    if (!t) return util_fail(err, nerr, "%s: no tensor '%s'", path, name);
    if (t->dtype != dt || t->bytes != st_dtype_size(dt) * (size_t)n)
        return util_fail(err, nerr, "%s: tensor '%s' is not %s with %" PRId64 " elements", path, name, st_dtype_name(dt), n);
    memcpy(dst, t->data, t->bytes);
    return 0;
}

static int resume_from(Hmc *h, SafeTensors *st, const char *path, Chain *ch, int *c, char *err, size_t nerr) {
    const RunIdentity *id = h->cfg->identity;
    const char *format = st_meta(st, "format"), *model = st_meta(st, "model"), *hash = st_meta(st, "model_hash");
    const char *settings = st_meta(st, "settings"), *chain = st_meta(st, "chain");
    if (!format || strcmp(format, "nnc-sampler-checkpoint-1"))
        return util_fail(err, nerr, "%s is not a sampling run's checkpoint (format %s)", path, format ? format : "missing");
    if (!model || strcmp(model, id->model)) return util_fail(err, nerr, "%s is a checkpoint of model '%s', not '%s'", path, model ? model : "?", id->model);
    if (!hash || !checkpoint_hash_matches(id, hash))
        return util_fail(err, nerr, "%s was written by another version of model '%s' (source hash %s, this one %s)", path, model,
                         hash ? hash : "missing", id->hash);
    if (!settings || strcmp(settings, id->settings))
        return util_fail(err, nerr, "%s was written with --set %s, this run has --set %s; resume with the same settings", path,
                         settings && settings[0] ? settings : "(none)", id->settings[0] ? id->settings : "(none)");
    char *end = NULL;
    long k = chain ? strtol(chain, &end, 10) : 0;
    if (!chain || *end || k < 1 || k > h->sp->chains)
        return util_fail(err, nerr, "%s: metadata 'chain' is '%s', not a chain of this run's %" PRId64, path, chain ? chain : "",
                         h->sp->chains);
    *c = (int)k - 1;
    const Graph *g = h->g;
    for (int wi = 0; wi < g->nweight; wi++) {
        const Weight *w = &g->weight[wi];
        int64_t n = shape_numel(w->shape);
        float *v = util_calloc((size_t)n + 1, sizeof(float));
        int rc = take(st, path, w->name, ST_F32, n, v, err, nerr) || exec_write(h->e, w->node, v, sizeof(float) * (size_t)n);
        free(v);
        if (rc) return -1;
    }
    double run[RUN_STATE];
    if (take(st, path, "sampler.minv", ST_F32, h->dim, h->minv, err, nerr) ||
        (h->sp->kind == SAMPLER_NUTS && (take(st, path, "sampler.qd", ST_F64, h->dim, h->qd, err, nerr) ||
                                         take(st, path, "sampler.gd", ST_F64, h->dim, h->gd, err, nerr))) ||
        take(st, path, "sampler.order", ST_I64, h->data.train.n, h->idx, err, nerr) ||
        take(st, path, "sampler.rng", ST_I64, 4, h->rng.s, err, nerr) || take(st, path, "sampler.run", ST_F64, RUN_STATE, run, err, nerr))
        return -1;
    h->u = run[0], h->grads = (int64_t)run[1], h->divergences = (int64_t)run[2];
    h->sgld_step = (int64_t)run[3], h->sgld_batch = (int64_t)run[4], h->first_draw_s = run[5];
    for (int j = 0; j <= *c; j++) {
        char name[96];
        double state[CHAIN_STATE];
        snprintf(name, sizeof name, "sampler.chain%d.state", j + 1);
        if (take(st, path, name, ST_F64, CHAIN_STATE, state, err, nerr)) return -1;
        chain_unpack(&ch[j], state);
        if (ch[j].kept < 0 || ch[j].nkeep != (h->sp->samples + h->sp->thin - 1) / h->sp->thin || ch[j].kept > ch[j].nkeep)
            return util_fail(err, nerr, "%s: chain %d's draws do not fit this run's samples and thin", path, j + 1);
        ch[j].q = util_calloc((size_t)(ch[j].nkeep * h->dim) + 1, sizeof(float));
        ch[j].potential = util_calloc((size_t)ch[j].nkeep + 1, sizeof(double));
        ch[j].mean = util_calloc((size_t)h->dim + 1, sizeof(double));
        ch[j].m2 = util_calloc((size_t)h->dim + 1, sizeof(double));
        snprintf(name, sizeof name, "sampler.chain%d.draws", j + 1);
        if (take(st, path, name, ST_F32, ch[j].kept * h->dim, ch[j].q, err, nerr)) return -1;
        snprintf(name, sizeof name, "sampler.chain%d.potential", j + 1);
        if (take(st, path, name, ST_F64, ch[j].kept, ch[j].potential, err, nerr)) return -1;
    }
    double *welford = util_calloc((size_t)(2 * h->dim) + 1, sizeof(double));
    int rc = take(st, path, "sampler.welford", ST_F64, 2 * h->dim, welford, err, nerr);
    if (rc == 0) {
        memcpy(ch[*c].mean, welford, sizeof(double) * (size_t)h->dim);
        memcpy(ch[*c].m2, welford + h->dim, sizeof(double) * (size_t)h->dim);
    }
    free(welford);
    if (rc) return -1;
    return sample_flat_io(h, WHICH_Q, h->q, false); /* the host's copy of the position */
}

int sample_resume(Hmc *h, Chain *ch, int *c, bool *started) {
    const TrainConfig *cfg = h->cfg;
    char path[4200], err[1024];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", cfg->out_dir);
    *c = 0;
    *started = false;
    if (access(path, F_OK) && errno == ENOENT) {
        fprintf(h->out, "no checkpoint in %s: starting from the beginning\n", cfg->out_dir);
        return 0;
    }
    SafeTensors *st = st_open(path, err, sizeof err);
    int rc = st ? resume_from(h, st, path, ch, c, err, sizeof err) : -1;
    st_close(st);
    if (rc) {
        fprintf(cfg->diag->out, "nnc: error: cannot resume: %s\n", err);
        return -1;
    }
    *started = true;
    fprintf(h->out, "resuming from %s: chain %d, iteration %" PRId64 " of %" PRId64 "\n", path, *c + 1, ch[*c].it,
            h->sp->burnin + h->sp->samples);
    return 0;
}

int sample_trim_metrics(const char *path, int chain, int64_t it) {
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? 0 : -1;
    char tmp[4300], line[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *o = fopen(tmp, "w");
    if (!o) {
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *jc = cJSON_GetObjectItem(j, "chain"), *ji = cJSON_GetObjectItem(j, "iteration");
        bool keep = cJSON_IsNumber(jc) && cJSON_IsNumber(ji) &&
                    (jc->valuedouble < chain || (jc->valuedouble == chain && ji->valuedouble <= (double)it));
        if (keep) fputs(line, o);
        cJSON_Delete(j);
    }
    fclose(f);
    if (fclose(o) || rename(tmp, path)) return -1;
    return 0;
}
