/* train.c: the training loop (see train.h).  One step is the gradient program, a look at the
 * loss, then the update program and a look at the gradient flags; evaluation runs the eval
 * program over fixed batches.  Randomness comes from rng.h streams of the model's seed, so a
 * seed fixes the initialisation, the validation split and every epoch's order. */
#include "train.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prune.h"
#include "rng.h"
#include "schedule.h"

/* ---- data ---- */

int train_load_data(const Model *m, const Graph *g, ModelData *d, char *err, size_t nerr) {
    memset(d, 0, sizeof *d);
    const Input *in = NULL, *tg = NULL;
    for (int i = 0; i < g->ninput; i++) {
        const Input *x = &g->input[i];
        if ((x->is_target ? tg : in) != NULL) {
            snprintf(err, nerr, "%s: the model declares more than one %s; data sets with several inputs or targets are not implemented yet",
                     m->path, x->is_target ? "target" : "input");
            return -1;
        }
        if (x->is_target)
            tg = x;
        else
            in = x;
    }
    DataExpect *ex = &d->expect;
    ex->input_name = in->name;
    ex->target_name = tg->name;
    ex->nfeat = shape_numel(in->shape);
    ex->input_rank = in->shape.rank;
    memcpy(ex->input_dim, in->shape.dim, sizeof ex->input_dim);
    ex->target_class = tg->is_class;
    ex->nclass = tg->nclass;
    ex->ntarget = tg->is_class ? 1 : shape_numel(tg->shape);
    const TrainSpec *t = &m->train;
    const DataSpec *specs[2] = {&t->data, &t->test};
    Dataset *sets[2] = {&d->train, &d->test};
    for (int s = 0; s < 2; s++) {
        const DataSpec *ds = specs[s];
        int rc = 0;
        const char *split = s == 0 ? "train" : "t10k";
        switch (ds->kind) {
        case DATA_NONE:
            if (s == 1 && (t->data.kind == DATA_FASHION_MNIST || (t->data.kind == DATA_IDX && t->data.dir))) {
                /* the built-in set and idx("dir") carry their own test split */
                ds = &t->data;
                rc = ds->kind == DATA_FASHION_MNIST ? data_load_idx_dir(data_fashion_mnist_dir(), split, ex, sets[s], err, nerr)
                                                    : data_load_idx_dir(ds->dir, split, ex, sets[s], err, nerr);
                d->has_test = rc == 0;
            }
            break;
        case DATA_FASHION_MNIST: rc = data_load_idx_dir(data_fashion_mnist_dir(), split, ex, sets[s], err, nerr); break;
        case DATA_IDX:
            rc = ds->dir ? data_load_idx_dir(ds->dir, split, ex, sets[s], err, nerr)
                         : data_load_idx(ds->images, ds->labels, ex, sets[s], err, nerr);
            break;
        case DATA_CSV: {
            CsvOptions co = {ds->target_col, ds->target_name, ds->header};
            rc = data_load_csv(ds->path, &co, ex, sets[s], err, nerr);
            break;
        }
        }
        if (rc) {
            if (ds->kind == DATA_FASHION_MNIST && strstr(err, "No such file"))
                snprintf(err + strlen(err), nerr - strlen(err), " (install Debian's dataset-fashion-mnist package)");
            train_free_data(d);
            return -1;
        }
        if (s == 1 && ds->kind != DATA_NONE) d->has_test = true;
    }
    return 0;
}

void train_free_data(ModelData *d) {
    data_free(&d->train);
    data_free(&d->test);
}

/* ---- weights ---- */

void train_init_weights(Exec *e, uint64_t seed) {
    const Plan *plan = e->plan;
    const Graph *g = e->g;
    Rng rng;
    rng_seed(&rng, seed, RNG_INIT);
    for (int i = 0; i < plan->nbuf; i++) {
        const Buffer *b = &plan->buf[i];
        if (b->kind != BUF_WEIGHT && b->kind != BUF_STATE) continue;
        const Weight *w = &g->weight[b->weight];
        float *v = util_calloc((size_t)b->elems, sizeof(float));
        for (int64_t k = 0; k < b->elems; k++) {
            switch (w->init) {
            case INIT_ZERO: v[k] = 0; break;
            case INIT_ONE: v[k] = 1; break;
            case INIT_CONST: v[k] = (float)w->init_value; break;
            case INIT_UNIFORM_FANIN: {
                double bound = 1.0 / sqrt((double)w->fan_in);
                v[k] = (float)((2 * rng_uniform(&rng) - 1) * bound);
                break;
            }
            }
        }
        exec_write(e, b->node, v, sizeof(float) * (size_t)b->elems);
        free(v);
    }
}

/* ---- the session: batches in, values out ---- */

typedef struct {
    const TrainConfig *cfg;
    const Graph *g;
    const Plan *plan;
    Exec *exec;
    int x_node, target_node; /* the input and target buffers */
    bool class_target;
    float *x;                /* host staging for a batch */
    int32_t *label;
    float *target;
    int64_t batch;
    /* NaN search */
    int bad_kernel;
    int64_t rows;
} Session;

/* The session runs `e` from now on (at the start, and after pruning recompiled the model). */
static void session_bind(Session *s, Exec *e) {
    s->exec = e;
    s->g = e->g;
    s->plan = e->plan;
    for (int i = 0; i < s->g->ninput; i++) {
        const Input *in = &s->g->input[i];
        if (!in->is_target) s->x_node = in->node;
        if (in->is_target) {
            s->target_node = in->node;
            s->class_target = in->is_class;
        }
    }
}

static float read1(const Session *s, int node) {
    float v = NAN;
    exec_read(s->exec, node, &v, sizeof v);
    return v;
}

void train_step_scalars(const Model *m, Exec *e, int64_t t, int64_t steps_per_epoch, int64_t total_steps, double *lr_out,
                        double *param_out) {
    const Graph *g = e->g;
    const TrainSpec *ts = &m->train;
    const OptSpec *o = &ts->opt;
    double *param = util_calloc((size_t)m->nparam + 1, sizeof(double));
    for (int i = 0; i < m->nparam; i++) param[i] = m->param[i].value;
    double lr = o->lr;
    SchedContext c = {.step = t - 1, .steps_per_epoch = steps_per_epoch > 0 ? steps_per_epoch : 1,
                      .total_steps = total_steps, .param = param};
    for (int i = 0; i < ts->nsched; i++) { /* in the order they are written */
        const ScheduleSpec *sp = &ts->sched[i];
        c.base = sp->param >= 0 ? m->param[sp->param].value : o->lr;
        double v = schedule_eval(sp, &c);
        if (sp->param >= 0)
            param[sp->param] = v;
        else
            lr = v;
    }
    float *sc = e->scalars;
    for (int i = 0; i < g->nscalar; i++) {
        switch (g->scalar[i].kind) {
        case SC_PARAM:
            for (int k = 0; k < m->nparam; k++)
                if (!strcmp(m->param[k].name, g->scalar[i].name)) sc[i] = (float)param[k];
            break;
        case SC_LR: sc[i] = (float)lr; break;
        case SC_ADAM_STEP: sc[i] = (float)(lr / (1 - pow(o->beta1, (double)t))); break;
        case SC_ADAM_BC2_SQRT: sc[i] = (float)sqrt(1 - pow(o->beta2, (double)t)); break;
        }
    }
    if (lr_out) *lr_out = lr;
    if (param_out) memcpy(param_out, param, sizeof(double) * (size_t)m->nparam);
    free(param);
}

/* Gather the samples into the input and target buffers (directly on host-memory devices). */
static void load_batch(Session *s, const Dataset *d, const int64_t *idx, int64_t n) {
    const Exec *e = s->exec;
    if (e->dev->host_memory) {
        data_gather(d, idx, n, exec_buf(e, s->x_node), s->class_target ? exec_buf(e, s->target_node) : NULL,
                    s->class_target ? NULL : exec_buf(e, s->target_node));
        return;
    }
    data_gather(d, idx, n, s->x, s->label, s->target);
    exec_write(e, s->x_node, s->x, sizeof(float) * (size_t)(n * d->nfeat));
    if (s->class_target)
        exec_write(e, s->target_node, s->label, sizeof(int32_t) * (size_t)n);
    else
        exec_write(e, s->target_node, s->target, sizeof(float) * (size_t)(n * d->ntarget));
}

static bool all_finite(const Session *s, int buf, int64_t rows) {
    const Buffer *b = &s->plan->buf[buf];
    int64_t n = b->elems * (b->batched ? rows : 1);
    float *v = util_calloc((size_t)n, sizeof(float));
    s->exec->dev->download(s->exec->dev, v, s->exec->arena + b->offset, sizeof(float) * (size_t)n);
    bool ok = true;
    for (int64_t i = 0; i < n && ok; i++) ok = isfinite(v[i]);
    free(v);
    return ok;
}

/* After kernel k of a checked run: remember the first kernel that wrote a non-finite value. */
static void nan_hook(void *ctx, int k) {
    Session *s = ctx;
    if (s->bad_kernel >= 0) return;
    const Kernel *kn = &s->plan->kernel[k];
    for (int a = 0; a < kn->narg; a++)
        if (kn->arg[a].write && kn->arg[a].dtype == DT_F32 && !all_finite(s, kn->arg[a].buf, s->rows)) {
            s->bad_kernel = k;
            return;
        }
}

static void report_nonfinite(Session *s, int64_t epoch, int64_t step, float loss) {
    const TrainConfig *cfg = s->cfg;
    const Graph *g = s->g;
    /* weights that are already non-finite came from the previous update */
    for (int i = 0; i < s->plan->nbuf; i++) {
        const Buffer *b = &s->plan->buf[i];
        if (b->kind == BUF_WEIGHT && !all_finite(s, i, 1)) {
            diag_error(cfg->diag, g->weight[b->weight].loc,
                       "training stopped at epoch %lld, step %lld: weight '%s' is not finite after the previous update",
                       (long long)epoch, (long long)step, b->name);
            return;
        }
    }
    s->bad_kernel = -1;
    exec_run_checked(s->exec, PROG_GRAD, s->rows, nan_hook, s);
    if (s->bad_kernel < 0) {
        diag_error(cfg->diag, (SrcLoc){0}, "training stopped at epoch %lld, step %lld: the loss is %g", (long long)epoch,
                   (long long)step, (double)loss);
        return;
    }
    const Kernel *k = &s->plan->kernel[s->bad_kernel];
    const Node *n = &g->node[k->node];
    diag_error(cfg->diag, n->loc, "training stopped at epoch %lld, step %lld: '%s'%s%s%s produced %s (the loss is %g)",
               (long long)epoch, (long long)step, op_info[n->op].name, n->name ? " in layer '" : "", n->name ? n->name : "",
               n->name ? "'" : "", isnan(loss) ? "NaN" : "an infinity", (double)loss);
}

/* ---- evaluation ---- */

enum { MAX_METRICS = 16 };
typedef struct {
    double loss, metric[MAX_METRICS];
    int nmetric;
    GateStat *gate; /* per gated layer */
} Eval;

/* The graph's scalar outputs (loss, metrics) come first; then per-neuron sums (AGG_VECTOR). */
static int scalar_outputs(const Graph *g) {
    int n = 0;
    while (n < g->noutput && g->output[n].agg != AGG_VECTOR) n++;
    return n;
}

static int evaluate(Session *s, const Dataset *d, const int64_t *idx, int64_t n, Eval *e) {
    const Graph *g = s->g;
    GateStat *gate = e->gate;
    memset(e, 0, sizeof *e);
    e->gate = gate;
    int nscalar = scalar_outputs(g);
    NNC_ASSERT(nscalar <= MAX_METRICS);
    double sums[MAX_METRICS] = {0}, **vec = util_calloc((size_t)g->noutput + 1, sizeof(double *));
    float *tmp = NULL;
    int64_t most = 0;
    for (int o = nscalar; o < g->noutput; o++) {
        int64_t m = shape_numel(g->node[g->output[o].node].shape);
        vec[o] = util_calloc((size_t)m, sizeof(double));
        most = m > most ? m : most;
    }
    tmp = util_calloc((size_t)most + 1, sizeof(float));
    int rc = 0;
    for (int64_t at = 0; at < n && rc == 0; at += s->batch) {
        int64_t rows = n - at < s->batch ? n - at : s->batch;
        load_batch(s, d, idx + at, rows);
        if (exec_run(s->exec, PROG_EVAL, rows)) {
            rc = -1;
            break;
        }
        for (int o = 0; o < nscalar; o++) {
            double v = read1(s, g->output[o].node);
            sums[o] += g->output[o].agg == AGG_MEAN ? v * (double)rows : v;
        }
        for (int o = nscalar; o < g->noutput; o++) {
            int64_t m = shape_numel(g->node[g->output[o].node].shape);
            exec_read(s->exec, g->output[o].node, tmp, sizeof(float) * (size_t)m);
            for (int64_t j = 0; j < m; j++) vec[o][j] += tmp[j];
        }
    }
    if (rc == 0) {
        e->loss = sums[0] / (double)n;
        for (int o = 1; o < nscalar; o++) {
            double f = sums[o] / (double)n;
            e->metric[o - 1] = g->output[o].agg == AGG_ONE_MINUS_FRACTION ? 1 - f : f;
        }
        e->nmetric = nscalar - 1;
        if (g->ngate) {
            gate_counts(s->exec, e->gate);
            gate_variances(s->exec, vec, n, e->gate);
        }
    }
    for (int o = 0; o < g->noutput; o++) free(vec[o]);
    free(vec);
    free(tmp);
    return rc;
}

/* ---- output ---- */

static int make_dirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) return -1;
            *p = '/';
        }
    if (mkdir(buf, 0777) && errno != EEXIST) return -1;
    return 0;
}

/* One line of metrics.jsonl: begun with its position, ended (written, flushed) by line_end. */
static cJSON *line_begin(int64_t epoch, int64_t step, const char *split) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "epoch", (double)epoch);
    cJSON_AddNumberToObject(o, "step", (double)step);
    if (split) cJSON_AddStringToObject(o, "split", split);
    return o;
}

static void line_end(FILE *f, cJSON *o) {
    if (f) {
        char *text = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", text);
        fflush(f);
        free(text);
    }
    cJSON_Delete(o);
}

static void add_eval(cJSON *o, const Graph *g, const Eval *e) {
    cJSON_AddNumberToObject(o, "loss", e->loss);
    for (int i = 0; i < e->nmetric; i++) cJSON_AddNumberToObject(o, g->output[i + 1].name, e->metric[i]);
    for (int i = 0; i < g->ngate; i++) { /* h1.width, h1.live, h1.dead, h1.var_mean, h1.var_q10 ... */
        const GateStat *st = &e->gate[i];
        const char *l = g->gate[i].layer;
        char key[256];
#define GATE_FIELD(name, v) (snprintf(key, sizeof key, "%s." name, l), cJSON_AddNumberToObject(o, key, (double)(v)))
        GATE_FIELD("width", st->width);
        GATE_FIELD("live", st->live);
        GATE_FIELD("dead", st->dead);
        GATE_FIELD("var_mean", st->var_mean);
        GATE_FIELD("var_q10", st->var_q10);
        GATE_FIELD("var_q50", st->var_q50);
        GATE_FIELD("var_q90", st->var_q90);
#undef GATE_FIELD
    }
}

static void add_timing(cJSON *o, double sps, double time_s) {
    cJSON_AddNumberToObject(o, "samples_per_s", round(sps * 10) / 10);
    cJSON_AddNumberToObject(o, "time_s", round(time_s * 1000) / 1000);
}

/* The latest evaluations, for the stopping rule. */
typedef struct {
    const Graph *g;
    double train_loss;
    Eval valid, test;
    bool has_valid, has_test;
} Latest;

static double latest_metric(void *ctx, const char *split, const char *metric) {
    const Latest *l = ctx;
    if (!strcmp(split, "train")) return !strcmp(metric, "loss") ? l->train_loss : NAN;
    const Eval *e = !strcmp(split, "valid") ? (l->has_valid ? &l->valid : NULL) : (l->has_test ? &l->test : NULL);
    if (!e) return NAN;
    if (!strcmp(metric, "loss")) return e->loss;
    for (int i = 0; i < e->nmetric; i++)
        if (!strcmp(l->g->output[i + 1].name, metric)) return e->metric[i];
    return NAN;
}

static void print_eval(FILE *out, const Graph *g, const char *split, const Eval *e) {
    fprintf(out, " | %s loss %.4f", split, e->loss);
    for (int i = 0; i < e->nmetric; i++) fprintf(out, " %s %.4f", g->output[i + 1].name, e->metric[i]);
}

static void progress_line(FILE *out, int64_t epoch, int64_t epochs, int64_t done, int64_t total, double loss,
                          double sps, double eta) {
    int width = 24, filled = total ? (int)(width * done / total) : width;
    fprintf(out, "\repoch %lld/%lld [", (long long)epoch, (long long)epochs);
    for (int i = 0; i < width; i++) fputc(i < filled ? '=' : i == filled ? '>' : ' ', out);
    fprintf(out, "] %lld/%lld  loss %.4f  %.0f samples/s  ETA %.0fs   ", (long long)done, (long long)total, loss, sps, eta);
    fflush(out);
}

/* One line per evaluation about the gated layers: live widths and activation variance. */
static void print_gates(FILE *out, const Graph *g, const Eval *e, const char *split) {
    if (!g->ngate) return;
    fprintf(out, "  gates (%s):", split);
    for (int i = 0; i < g->ngate; i++) {
        const GateStat *st = &e->gate[i];
        fprintf(out, "%s %s %lld live of %lld, variance mean %.3g median %.3g", i ? ";" : "", g->gate[i].layer,
                (long long)st->live, (long long)st->width, st->var_mean, st->var_q50);
    }
    fputc('\n', out);
}

/* Physical pruning between epochs: decide, recompile at the new widths, move the weights and
 * optimiser state, and switch the session over.  0, or 1 after reporting an error. */
static int prune_now(Session *s, WidthOverride *widths, int64_t epoch, int64_t step, FILE *metrics, bool *reported_min,
                     int64_t *arena_peak) {
    const TrainConfig *cfg = s->cfg;
    FILE *out = cfg->out ? cfg->out : stdout;
    const Graph *g = s->g;
    PruneDecision d;
    if (!prune_decide(s->exec, &d)) {
        for (int i = 0; i < g->ngate; i++) /* a layer can sit at its minimum with nothing to cut */
            if (d.at_min[i] && !reported_min[i]) {
                fprintf(out, "pruning: '%s' is at its minimum width %lld\n", g->gate[i].layer, (long long)g->gate[i].min_width);
                reported_min[i] = true;
            }
        prune_free(&d);
        return 0;
    }
    for (int sp = 0; sp < g->nspace; sp++) widths[sp] = (WidthOverride){g->space[sp].layer, d.width[sp]};
    double t0 = util_now();
    Exec *next = cfg->rebuild(cfg->rebuild_ctx, widths, g->nspace);
    if (!next) {
        prune_free(&d);
        return 1;
    }
    char err[512];
    int64_t both = s->plan->arena_bytes + next->plan->arena_bytes; /* while the weights move */
    if (both > *arena_peak) *arena_peak = both;
    if (prune_transfer(s->exec, next, &d, err, sizeof err)) {
        fprintf(cfg->diag->out, "nnc: error: pruning after epoch %lld: %s\n", (long long)epoch, err);
        cfg->retire(cfg->rebuild_ctx, next);
        prune_free(&d);
        return 1;
    }
    double took = util_now() - t0;
    cJSON *line = line_begin(epoch, step, NULL);
    cJSON_AddStringToObject(line, "event", "prune");
    cJSON *w = cJSON_AddObjectToObject(line, "widths");
    fprintf(out, "pruned after epoch %lld:", (long long)epoch);
    for (int sp = 0, first = 1; sp < g->nspace; sp++) {
        if (!d.keep[sp]) continue;
        fprintf(out, "%s %s %lld -> %lld", first ? "" : ",", g->space[sp].layer, (long long)g->space[sp].width,
                (long long)d.width[sp]);
        cJSON_AddNumberToObject(w, g->space[sp].layer, (double)d.width[sp]);
        first = 0;
    }
    fprintf(out, " (rebuilt and moved in %.2f s)\n", took);
    cJSON_AddNumberToObject(line, "rebuild_s", round(took * 1000) / 1000);
    for (int i = 0; i < g->ngate; i++)
        if (d.at_min[i] && !reported_min[i]) {
            fprintf(out, "pruning: '%s' reached its minimum width %lld\n", g->gate[i].layer, (long long)g->gate[i].min_width);
            cJSON_AddStringToObject(line, "at_minimum", g->gate[i].layer);
            reported_min[i] = true;
        }
    line_end(metrics, line);
    fflush(out);
    cfg->retire(cfg->rebuild_ctx, s->exec);
    session_bind(s, next);
    prune_free(&d);
    return 0;
}

int train_run(const TrainConfig *cfg, TrainResult *res) {
    const Model *m = cfg->model;
    const TrainSpec *t = &m->train;
    FILE *out = cfg->out ? cfg->out : stdout;
    memset(res, 0, sizeof *res);
    char err[1024];
    ModelData data;
    if (train_load_data(m, cfg->exec->g, &data, err, sizeof err)) {
        fprintf(cfg->diag->out, "nnc: error: %s\n", err);
        return 1;
    }
    if (t->prune_every && (!cfg->rebuild || !cfg->retire)) {
        fprintf(cfg->diag->out, "nnc: error: this trainer cannot recompile the model, so it cannot prune\n");
        train_free_data(&data);
        return 1;
    }
    FILE *metrics = NULL;
    if (cfg->out_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->out_dir);
        if (make_dirs(cfg->out_dir) || !(metrics = fopen(path, "w"))) {
            fprintf(cfg->diag->out, "nnc: error: cannot write %s: %s\n", path, strerror(errno));
            train_free_data(&data);
            return 1;
        }
    }
    Session s = {.cfg = cfg, .batch = cfg->exec->plan->max_batch, .bad_kernel = -1};
    session_bind(&s, cfg->exec);
    int64_t baseline_rss = cfg->exec->baseline_rss;
    s.x = util_calloc((size_t)(s.batch * data.expect.nfeat), sizeof(float));
    s.label = util_calloc((size_t)s.batch, sizeof(int32_t));
    s.target = util_calloc((size_t)(s.batch * data.expect.ntarget), sizeof(float));
    train_init_weights(s.exec, t->seed);
    int64_t arena_peak = s.plan->arena_bytes;

    /* validation split: a seeded permutation, the last part held out */
    int64_t n_all = data.train.n;
    int64_t *perm = util_calloc((size_t)n_all, sizeof(int64_t));
    for (int64_t i = 0; i < n_all; i++) perm[i] = i;
    int64_t n_valid = (int64_t)llround(t->valid_fraction * (double)n_all);
    if (n_valid > 0) {
        Rng split;
        rng_seed(&split, t->seed, RNG_SPLIT);
        rng_shuffle(&split, perm, n_all);
    }
    int64_t n_train = n_all - n_valid;
    if (n_train <= 0) {
        fprintf(cfg->diag->out, "nnc: error: the validation split leaves no training data\n");
        return 1;
    }
    int64_t *order = util_calloc((size_t)n_train, sizeof(int64_t));
    int64_t *test_idx = NULL;
    if (data.has_test) {
        test_idx = util_calloc((size_t)data.test.n, sizeof(int64_t));
        for (int64_t i = 0; i < data.test.n; i++) test_idx[i] = i;
    }
    int64_t steps_per_epoch = (n_train + s.batch - 1) / s.batch;
    fprintf(out, "training %s: %lld training samples%s", m->name, (long long)n_train, "");
    if (n_valid) fprintf(out, ", %lld validation", (long long)n_valid);
    if (data.has_test) fprintf(out, ", %lld test", (long long)data.test.n);
    fprintf(out, "; batch %lld, %lld steps per epoch, %lld epochs (%s)\n", (long long)s.batch,
            (long long)steps_per_epoch, (long long)t->epochs, cfg->backend ? cfg->backend : "cpu");
    fflush(out);
    bool tty = cfg->progress == 1 || (cfg->progress < 0 && isatty(fileno(out)));
    Rng shuffle;
    rng_seed(&shuffle, t->seed, RNG_SHUFFLE);
    double t0 = util_now(), train_time = 0;
    int64_t step = 0, total_steps = steps_per_epoch * t->epochs;
    int rc = 0;
    double lr_used = t->opt.lr, *param_used = util_calloc((size_t)m->nparam + 1, sizeof(double));
    StopState stop;
    stop_init(&stop);
    int ngate = s.g->ngate; /* the same in every recompilation */
    Latest latest = {.g = s.g};
    latest.valid.gate = util_calloc((size_t)ngate + 1, sizeof(GateStat));
    latest.test.gate = util_calloc((size_t)ngate + 1, sizeof(GateStat));
    WidthOverride *widths = util_calloc((size_t)s.g->nspace + 1, sizeof(WidthOverride));
    bool *reported_min = util_calloc((size_t)ngate + 1, sizeof(bool));
    bool stopped = false;
    for (int64_t epoch = 1; epoch <= t->epochs && rc == 0 && !stopped; epoch++) {
        Exec *ex = s.exec;
        const Graph *g = s.g;
        memcpy(order, perm, sizeof(int64_t) * (size_t)n_train);
        rng_shuffle(&shuffle, order, n_train);
        double e0 = util_now(), loss_sum = 0, last_print = 0;
        for (int64_t at = 0, k = 0; at < n_train; at += s.batch, k++) {
            int64_t rows = n_train - at < s.batch ? n_train - at : s.batch;
            load_batch(&s, &data.train, order + at, rows);
            step++;
            train_step_scalars(m, ex, step, steps_per_epoch, total_steps, &lr_used, param_used);
            s.rows = rows;
            if (exec_run(ex, PROG_GRAD, rows)) {
                fprintf(cfg->diag->out, "nnc: error: %s: %s\n", ex->dev->name, ex->dev->err);
                rc = 1;
                break;
            }
            float loss = read1(&s, g->loss);
            if (!isfinite(loss)) {
                report_nonfinite(&s, epoch, step, loss);
                rc = 1;
                break;
            }
            if (exec_run(ex, PROG_UPDATE, rows)) {
                fprintf(cfg->diag->out, "nnc: error: %s: %s\n", ex->dev->name, ex->dev->err);
                rc = 1;
                break;
            }
            for (int id = 0; id < g->nnode; id++) {
                if (op_info[g->node[id].op].cls != OC_UPDATE || isfinite(read1(&s, id))) continue;
                const Weight *w = &g->weight[g->node[g->node[id].in[0]].ref];
                diag_error(cfg->diag, w->loc, "training stopped at epoch %lld, step %lld: the gradient of '%s' holds NaN or an infinity",
                           (long long)epoch, (long long)step, w->name);
                rc = 1;
            }
            if (rc) break;
            loss_sum += (double)loss * (double)rows;
            double now = util_now();
            if (tty && (now - last_print > 0.2 || at + rows >= n_train)) {
                double el = now - e0, sps = (double)(at + rows) / el;
                progress_line(out, epoch, t->epochs, k + 1, steps_per_epoch, loss_sum / (double)(at + rows), sps,
                              (double)(n_train - at - rows) / sps);
                last_print = now;
            }
        }
        if (rc) break;
        double e_train = util_now() - e0;
        train_time += e_train;
        double sps = (double)n_train / e_train;
        double train_loss = loss_sum / (double)n_train;
        if (tty) fprintf(out, "\r\033[K");
        fprintf(out, "epoch %lld/%lld  train loss %.4f", (long long)epoch, (long long)t->epochs, train_loss);
        cJSON *line = line_begin(epoch, step, "train");
        cJSON_AddNumberToObject(line, "loss", train_loss);
        cJSON_AddNumberToObject(line, "lr", lr_used); /* the values the last step used */
        for (int i = 0; i < m->nparam; i++) cJSON_AddNumberToObject(line, m->param[i].name, param_used[i]);
        for (int i = 0; i < ngate; i++) { /* the widths this epoch trained at */
            char key[256];
            snprintf(key, sizeof key, "%s.width", g->gate[i].layer);
            cJSON_AddNumberToObject(line, key, (double)shape_numel(g->node[g->gate[i].node].shape));
        }
        add_timing(line, sps, util_now() - t0);
        line_end(metrics, line);
        res->train_loss = latest.train_loss = train_loss;
        latest.g = g;
        latest.has_valid = n_valid && evaluate(&s, &data.train, perm + n_train, n_valid, &latest.valid) == 0;
        if (latest.has_valid) {
            print_eval(out, g, "valid", &latest.valid);
            line = line_begin(epoch, step, "valid");
            add_eval(line, g, &latest.valid);
            add_timing(line, 0, util_now() - t0);
            line_end(metrics, line);
            res->valid_loss = latest.valid.loss;
        }
        double v0 = util_now();
        latest.has_test = data.has_test && evaluate(&s, &data.test, test_idx, data.test.n, &latest.test) == 0;
        if (latest.has_test) {
            print_eval(out, g, "test", &latest.test);
            line = line_begin(epoch, step, "test");
            add_eval(line, g, &latest.test);
            add_timing(line, (double)data.test.n / (util_now() - v0), util_now() - t0);
            line_end(metrics, line);
            res->test_loss = latest.test.loss;
            memcpy(res->test_metric, latest.test.metric, sizeof res->test_metric);
        }
        fprintf(out, " | %.1f s, %.0f samples/s\n", e_train, sps);
        if (latest.has_valid || latest.has_test)
            print_gates(out, g, latest.has_valid ? &latest.valid : &latest.test, latest.has_valid ? "valid" : "test");
        char why[512];
        if (stop_check(&t->stop, &stop, latest_metric, &latest, why, sizeof why)) {
            fprintf(out, "stopping after epoch %lld of %lld: %s\n", (long long)epoch, (long long)t->epochs, why);
            line = line_begin(epoch, step, NULL);
            cJSON_AddStringToObject(line, "event", "stop");
            cJSON_AddStringToObject(line, "reason", why);
            line_end(metrics, line);
            stopped = true;
        }
        fflush(out);
        res->epochs = epoch;
        if (!stopped && t->prune_every && epoch % t->prune_every == 0 && epoch < t->epochs) {
            rc = prune_now(&s, widths, epoch, step, metrics, reported_min, &arena_peak);
        }
    }
    free(param_used);
    free(widths);
    free(reported_min);
    free(latest.valid.gate);
    free(latest.test.gate);
    res->steps = step;
    res->seconds = util_now() - t0;
    {   /* what the memory plan promised against what the process used */
        double mib = 1 << 20, data_bytes = (double)(data.train.n + data.test.n) * (double)data.expect.nfeat *
                                                (data.train.u8 ? 1 : 4);
        double expected = (double)arena_peak + data_bytes + (double)baseline_rss;
        double peak = (double)util_peak_rss_bytes();
        res->peak_rss = peak;
        res->expected_rss = expected;
        fprintf(out, "memory: peak RSS %.0f MiB = %.2f x (plan %.1f MiB + data %.1f MiB + runtime baseline %.1f MiB)\n",
                peak / mib, peak / expected, (double)arena_peak / mib, data_bytes / mib, (double)baseline_rss / mib);
    }
    res->samples_per_s = train_time > 0 ? (double)(n_train * res->epochs) / train_time : 0;
    if (metrics) fclose(metrics);
    free(order);
    free(perm);
    free(test_idx);
    free(s.x);
    free(s.label);
    free(s.target);
    train_free_data(&data);
    return rc;
}
