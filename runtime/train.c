/* train.c: the training loop (see train.h).  A run is a TrainSession (the position a
 * checkpoint saves, and this process's part), a step function and hooks called at fixed points:
 * after the gradients, after each step, at the end of each epoch (see "the loop" below).  The
 * optimiser's step is the gradient program, a look at the loss, then the update program and a
 * look at the gradient flags; evaluation runs the eval program over fixed batches.  Randomness
 * comes from rng.h streams of the model's seed, so a seed fixes the initialisation, the
 * validation split and every epoch's order.  Data parallel (dist.h, docs/parallel.md), each rank
 * takes its part of every batch and the parts' gradients are summed before the update
 * ("the batch in parts"); evaluation shares its batches out. */
#include "train.h"
#include "bayes_linear.h"
#include "vi_eval.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "precondition.h"
#include "dist.h"
#include "nccl.h"
#include "npy.h"
#include "prune.h"
#include "rng.h"
#include "sample.h"
#include "schedule.h"
#include "tensorboard.h"

/* ---- data ---- */

int train_load_data(const Model *m, const Graph *g, ModelData *d, char *err, size_t nerr) {
    memset(d, 0, sizeof *d);
    train_expect(g, &d->expect);
    const DataExpect *ex = &d->expect;
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
            CsvTarget *ct = util_calloc((size_t)ds->narray + 1, sizeof(CsvTarget));
            for (int i = 0; i < ds->narray; i++) ct[i] = (CsvTarget){ds->array[i].name, ds->array[i].path, ds->array[i].col};
            CsvOptions co = {.target_col = ds->target_col, .target_name = ds->target_name, .header = ds->header, .target = ct,
                             .ntarget = ds->narray};
            rc = data_load_csv(ds->path, &co, ex, sets[s], err, nerr);
            free(ct);
            break;
        }
        case DATA_NPY: {
            NpyArray *arr = util_calloc((size_t)ds->narray + 1, sizeof(NpyArray));
            for (int i = 0; i < ds->narray; i++) arr[i] = (NpyArray){ds->array[i].name, ds->array[i].path};
            rc = data_load_npy(arr, ds->narray, ex, false, sets[s], err, nerr);
            free(arr);
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
    data_expect_free(&d->expect);
}

void train_expect(const Graph *g, DataExpect *ex) {
    ex->nfield = g->ninput;
    ex->field = util_calloc((size_t)g->ninput + 1, sizeof(DataField));
    for (int i = 0; i < g->ninput; i++) {
        const Input *in = &g->input[i];
        DataField *f = &ex->field[i];
        f->name = in->name;
        f->is_target = in->is_target;
        f->is_class = in->is_class;
        f->nclass = in->nclass;
        f->width = in->is_class ? 1 : shape_numel(in->shape);
        f->rank = in->shape.rank;
        memcpy(f->dim, in->shape.dim, sizeof f->dim);
    }
}

/* ---- weights ---- */

/* A weight's values from its NPY file (`init = npy("...")`): the file holds the weight's shape,
 * as f32 or f64.  1 after printing which file and what was expected. */
static int init_from_file(const Weight *w, float **out) {
    char err[256], want[96], got[96];
    int rank;
    int64_t shape[NPY_MAX_RANK];
    if (npy_read_f32(w->init_path, out, &rank, shape, err, sizeof err)) {
        fprintf(stderr, "nnc: error: the init of weight '%s': %s\n", w->name, err); /* (err names the file) */
        return 1;
    }
    Shape s = {.rank = rank};
    memcpy(s.dim, shape, sizeof(int64_t) * (size_t)rank);
    if (!shape_eq(s, w->shape)) {
        fprintf(stderr, "nnc: error: %s: the init of weight '%s' must be %s, but the file holds %s\n", w->init_path, w->name,
                shape_str(want, sizeof want, DT_F32, w->shape), shape_str(got, sizeof got, DT_F32, s));
        free(*out);
        *out = NULL;
        return 1;
    }
    return 0;
}

int train_init_weights(Exec *e, uint64_t seed) {
    const Plan *plan = e->plan;
    const Graph *g = e->g;
    Rng rng;
    rng_seed(&rng, seed, RNG_INIT);
    for (int i = 0; i < plan->nbuf; i++) {
        const Buffer *b = &plan->buf[i];
        if (b->kind != BUF_WEIGHT && b->kind != BUF_STATE) continue;
        const Weight *w = &g->weight[b->weight];
        float *v = NULL;
        if (w->init == INIT_FILE) {
            if (init_from_file(w, &v)) return 1;
            exec_write(e, b->node, v, sizeof(float) * (size_t)b->elems);
            free(v);
            continue;
        }
        v = util_calloc((size_t)b->elems, sizeof(float));
        for (int64_t k = 0; k < b->elems; k++) {
            switch (w->init) {
            case INIT_ZERO: v[k] = 0; break;
            case INIT_ONE: v[k] = 1; break;
            case INIT_CONST: v[k] = (float)w->init_value; break;
            case INIT_NORMAL: v[k] = (float)(w->init_value * rng_normal(&rng)); break;
            case INIT_TRUNC_NORMAL: {
                double z;
                do z = rng_normal(&rng);
                while (fabs(z) > 2);
                v[k] = (float)(w->init_value * z);
                break;
            }
            case INIT_UNIFORM_FANIN: {
                double bound = 1.0 / sqrt((double)w->fan_in);
                v[k] = (float)((2 * rng_uniform(&rng) - 1) * bound);
                break;
            }
            case INIT_FILE: NNC_BUG("read above");
            }
        }
        exec_write(e, b->node, v, sizeof(float) * (size_t)b->elems);
        free(v);
    }
    return 0;
}

/* ---- the session: batches in, values out ---- */

typedef struct {
    const TrainConfig *cfg;
    const Graph *g;
    const Plan *plan;
    Exec *exec;
    int64_t batch;
    /* NaN search */
    int bad_kernel;
    int64_t rows;
    uint64_t fold_told; /* gates (bit i: gate i) whose folding was printed; later refolds are not */
} Session;

/* The session runs `e` from now on (at the start, and after pruning recompiled the model). */
static void session_bind(Session *s, Exec *e) {
    s->exec = e;
    s->g = e->g;
    s->plan = e->plan;
}

/* A session over cfg's model. */
static void session_open(Session *s, const TrainConfig *cfg) {
    *s = (Session){.cfg = cfg, .batch = cfg->exec->plan->max_batch, .bad_kernel = -1};
    session_bind(s, cfg->exec);
}

int64_t *train_iota(int64_t n) {
    int64_t *v = util_calloc((size_t)n + 1, sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) v[i] = i;
    return v;
}

/* The n training-data samples in the seeded order that holds the validation split out: the
 * last *n_valid of it are the validation samples (the same in training and evaluation). */
int64_t *train_split_order(const TrainSpec *t, int64_t n, int64_t *n_valid) {
    int64_t *perm = train_iota(n);
    *n_valid = (int64_t)llround(t->valid_fraction * (double)n);
    if (*n_valid > 0) {
        Rng split;
        rng_seed(&split, t->seed, RNG_SPLIT);
        rng_shuffle(&split, perm, n);
    }
    return perm;
}

int train_bad_update(Exec *e, int from) {
    const Graph *g = e->g;
    for (int id = from; id < g->nnode; id++) {
        float flag = NAN;
        if (op_info[g->node[id].op].cls != OC_UPDATE) continue;
        exec_read(e, id, &flag, sizeof flag);
        if (!isfinite(flag)) return id;
    }
    return -1;
}

static float read1(const Session *s, int node) {
    float v = NAN;
    exec_read(s->exec, node, &v, sizeof v);
    return v;
}

double train_schedule_at(const Model *m, int64_t t, int64_t steps_per_epoch, int64_t total_steps, double *param) {
    const TrainSpec *ts = &m->train;
    const OptSpec *o = &ts->opt;
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
    return lr;
}

void train_step_scalars(const Model *m, Exec *e, int64_t t, int64_t steps_per_epoch, int64_t total_steps, double *lr_out,
                        double *param_out) {
    const Graph *g = e->g;
    const OptSpec *o = &m->train.opt;
    double *param = util_calloc((size_t)m->nparam + 1, sizeof(double));
    double lr = train_schedule_at(m, t, steps_per_epoch, total_steps, param);
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
        case SC_TRAIN: case SC_NOISE: break; /* set per program by exec_run */
        case SC_SEED: sc[i] = (float)(m->train.seed & 0xFFFFFF); break; /* the random generator's key */
        case SC_STEP_LO: sc[i] = (float)((uint64_t)t & 0xFFFFFF); break; /* its counter: the step */
        case SC_STEP_HI: sc[i] = (float)(((uint64_t)t >> 24) & 0xFFFFFF); break;
        case SC_DATA_INV_N: break; /* set once the data is split (exec_set_scalars) */
        case SC_HMC_KICK: case SC_HMC_STEP: case SC_SGLD_DRIFT: case SC_SGLD_NOISE: break; /* set by the sampler */
        }
    }
    if (lr_out) *lr_out = lr;
    if (param_out) memcpy(param_out, param, sizeof(double) * (size_t)m->nparam);
    free(param);
}

/* Gather the samples into the input and target buffers. */
static void load_batch(Session *s, const Dataset *d, const int64_t *idx, int64_t n) { exec_feed(s->exec, d, idx, n); }

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
    bool has_kl;    /* a variational model: its KL(q || prior), and kl / N, the loss's share */
    double kl, loss_kl;
    ViEval draws;   /* `evaluate samples = S`: the coverage of each head (loss and metrics are
                       the draws', above) */
    bool has_draws;
} Eval;

/* The graph's scalar outputs (loss, metrics) come first; then per-neuron sums (AGG_VECTOR). */
static int scalar_outputs(const Graph *g) {
    int n = 0;
    while (n < g->noutput && output_is_scalar(&g->output[n])) n++;
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
        if (g->output[o].agg != AGG_VECTOR) continue;
        int64_t m = shape_numel(g->node[g->output[o].node].shape);
        vec[o] = util_calloc((size_t)m, sizeof(double));
        most = m > most ? m : most;
    }
    tmp = util_calloc((size_t)most + 1, sizeof(float));
    /* Each batch's tallies (the scalar outputs, then the vector ones) in a row of its own; the
     * ranks share the batches out, a sum over the ranks fills every row (each from one rank,
     * exactly), and the rows add up in batch order: the same sums however many ranks ran. */
    int64_t nb = (n + s->batch - 1) / s->batch, width = nscalar;
    for (int o = nscalar; o < g->noutput; o++)
        if (g->output[o].agg == AGG_VECTOR) width += shape_numel(g->node[g->output[o].node].shape);
    double *tally = util_calloc((size_t)(nb * width) + 1, sizeof(double));
    int rc = 0;
    for (int64_t k = dist.rank; k < nb && rc == 0; k += dist.size) {
        int64_t at = k * s->batch, rows = n - at < s->batch ? n - at : s->batch;
        double *row = tally + k * width;
        load_batch(s, d, idx + at, rows);
        if (exec_run(s->exec, PROG_EVAL, rows)) {
            rc = -1;
            break;
        }
        for (int o = 0; o < nscalar; o++) {
            double v = read1(s, g->output[o].node);
            row[o] = g->output[o].agg == AGG_MEAN || g->output[o].agg == AGG_RMS ? v * (double)rows : v;
        }
        double *at_vec = row + nscalar;
        for (int o = nscalar; o < g->noutput; o++) {
            if (g->output[o].agg != AGG_VECTOR) continue;
            int64_t m = shape_numel(g->node[g->output[o].node].shape);
            exec_read(s->exec, g->output[o].node, tmp, sizeof(float) * (size_t)m);
            for (int64_t j = 0; j < m; j++) at_vec[j] = tmp[j];
            at_vec += m;
        }
    }
    if (dist.size > 1) {
        if (rc) fprintf(stderr, "nnc: error: %s%s: %s\n", dist_who(), s->exec->dev->name, s->exec->dev->err);
        int bad = dist_first_failed(rc == 0, "the evaluation's check");
        rc = bad >= 0 || dist_sum_f64(tally, nb * width, "the evaluation's sums") ? -1 : 0;
        if (bad >= 0) snprintf(s->exec->dev->err, sizeof s->exec->dev->err, "evaluation failed on rank %d", bad);
    }
    for (int64_t k = 0; k < nb && rc == 0; k++) {
        const double *row = tally + k * width, *at_vec = row + nscalar;
        for (int o = 0; o < nscalar; o++) sums[o] += row[o];
        for (int o = nscalar; o < g->noutput; o++) {
            if (g->output[o].agg != AGG_VECTOR) continue;
            int64_t m = shape_numel(g->node[g->output[o].node].shape);
            for (int64_t j = 0; j < m; j++) vec[o][j] += at_vec[j];
            at_vec += m;
        }
    }
    free(tally);
    for (int o = nscalar; o < g->noutput && rc == 0; o++) /* the KL term: of the weights alone */
        if (g->output[o].agg == AGG_WEIGHTS && !strcmp(g->output[o].name, "kl")) {
            e->has_kl = true;
            e->kl = read1(s, g->output[o].node);
            for (int i = 0; i < g->nscalar; i++)
                if (g->scalar[i].kind == SC_DATA_INV_N) e->loss_kl = e->kl * (double)s->exec->scalars[i];
        }
    if (rc == 0) {
        e->loss = sums[0] / (double)n;
        for (int o = 1; o < nscalar; o++) {
            double f = sums[o] / (double)n;
            e->metric[o - 1] = g->output[o].agg == AGG_ONE_MINUS_FRACTION ? 1 - f : g->output[o].agg == AGG_RMS ? sqrt(f) : f;
        }
        e->nmetric = nscalar - 1;
        if (g->ngate) {
            gate_counts(s->exec, e->gate);
            gate_variances(s->exec, vec, n, e->gate);
        }
    }
    int64_t S = s->cfg->model->train.eval_samples;
    if (rc == 0 && S > 0) { /* over S draws of the variational weights: their loss and metrics */
        rc = vi_evaluate(s->exec, s->cfg->model, S, d, idx, n, &e->draws);
        e->has_draws = rc == 0;
        e->loss = e->draws.loss;
        for (int i = 0; i < e->nmetric; i++) e->metric[i] = e->draws.metric[i];
    }
    for (int o = 0; o < g->noutput; o++) free(vec[o]);
    free(vec);
    free(tmp);
    return rc;
}

/* ---- output ---- */

int train_make_dirs(const char *path) {
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

/* TensorBoard's histograms of the model's weights (its parameters, statistics and fixed
 * weights; not an optimizer's state), "weights/<name>", at `step`. */
static void weight_histograms_of(Tensorboard *tb, Exec *e, int64_t step) {
    const Plan *p = e->plan;
    for (int i = 0; i < p->nbuf; i++) {
        const Buffer *b = &p->buf[i];
        if (b->kind != BUF_WEIGHT) continue;
        float *v = util_calloc((size_t)b->elems, sizeof(float));
        char tag[512];
        if (exec_read(e, b->node, v, sizeof(float) * (size_t)b->elems) == 0) {
            snprintf(tag, sizeof tag, "weights/%s", e->g->weight[b->weight].name);
            tensorboard_histogram(tb, tag, step, v, b->elems);
        }
        free(v);
    }
}

/* One line of metrics.jsonl: begun with its position, ended (written, flushed) by line_end. */
static cJSON *line_begin(int64_t epoch, int64_t step, const char *split) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "epoch", (double)epoch);
    cJSON_AddNumberToObject(o, "step", (double)step);
    if (split) cJSON_AddStringToObject(o, "split", split);
    return o;
}

static void line_end(FILE *f, Tensorboard *tb, cJSON *o) {
    if (tb) tensorboard_line(tb, o);
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
    if (e->has_kl) { /* the loss as the likelihood's part and the KL's (kl / N) */
        cJSON_AddNumberToObject(o, "loss_nll", e->loss - e->loss_kl);
        cJSON_AddNumberToObject(o, "loss_kl", e->loss_kl);
        cJSON_AddNumberToObject(o, "kl", e->kl);
    }
    for (int i = 0; i < e->nmetric; i++) cJSON_AddNumberToObject(o, g->output[i + 1].name, e->metric[i]);
    for (int k = 0; e->has_draws && k < e->draws.nhead; k++)
        if (!isnan(e->draws.coverage[k])) cJSON_AddNumberToObject(o, e->draws.coverage_name[k], e->draws.coverage[k]);
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
    for (int k = 0; e->has_draws && k < e->draws.nhead; k++)
        if (!isnan(e->draws.coverage[k])) fprintf(out, " %s %.4f", e->draws.coverage_name[k], e->draws.coverage[k]);
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

/* Gates whose penalty ends (0 under `param`, the next step's params) and that ask for it fold
 * into their layers' weights (prune.c), reported in metrics.jsonl, and on the output the first
 * time in this process: every later pruning folds them again, as training moves the gates off
 * +-1. */
static void fold_now(Session *s, const double *param, const char *when, int64_t epoch, int64_t step, FILE *metrics,
                     Tensorboard *tb) {
    const Graph *g = s->g;
    const char **folded = util_calloc((size_t)g->ngate + 1, sizeof(char *));
    int n = prune_fold(s->exec, param, folded);
    if (n) {
        FILE *out = s->cfg->out ? s->cfg->out : stdout;
        cJSON *line = line_begin(epoch, step, NULL);
        cJSON_AddStringToObject(line, "event", "fold");
        cJSON *layers = cJSON_AddArrayToObject(line, "layers");
        uint64_t news = 0;
        for (int i = 0; i < n; i++) {
            cJSON_AddItemToArray(layers, cJSON_CreateString(folded[i]));
            for (int gi = 0; gi < g->ngate && gi < 64; gi++)
                if (!strcmp(g->gate[gi].layer, folded[i]) && !(s->fold_told >> gi & 1)) news |= 1ull << gi;
        }
        if (news) fprintf(out, "folded the gates into their layers %s:", when);
        for (int gi = 0, told = 0; gi < g->ngate && gi < 64; gi++)
            if (news >> gi & 1) fprintf(out, "%s %s", told++ ? "," : "", g->gate[gi].layer);
        if (news) fputc('\n', out);
        s->fold_told |= news;
        line_end(metrics, tb, line);
    }
    free(folded);
}

/* Physical pruning between epochs: fold the gates whose penalty has ended, decide, recompile at
 * the new widths, move the weights and optimiser state, and switch the session over.  0, or 1
 * after reporting an error. */
static int prune_now(Session *s, const double *param, const char *when, WidthOverride *widths, int64_t epoch, int64_t step,
                     FILE *metrics, Tensorboard *tb, bool *reported_min, int64_t *arena_peak) {
    const TrainConfig *cfg = s->cfg;
    FILE *out = cfg->out ? cfg->out : stdout;
    const Graph *g = s->g;
    fold_now(s, param, when, epoch, step, metrics, tb);
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
        fprintf(cfg->diag->out, "nnc: error: pruning %s: %s\n", when, err);
        cfg->retire(cfg->rebuild_ctx, next);
        prune_free(&d);
        return 1;
    }
    for (int i = 0; i < g->nscalar; i++) /* set once per run, not per step */
        if (g->scalar[i].kind == SC_DATA_INV_N) exec_set_scalars(next, SC_DATA_INV_N, s->exec->scalars[i]);
    double took = util_now() - t0;
    cJSON *line = line_begin(epoch, step, NULL);
    cJSON_AddStringToObject(line, "event", "prune");
    cJSON *w = cJSON_AddObjectToObject(line, "widths");
    fprintf(out, "pruned %s:", when);
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
    line_end(metrics, tb, line);
    fflush(out);
    cfg->retire(cfg->rebuild_ctx, s->exec);
    session_bind(s, next);
    prune_free(&d);
    return 0;
}

/* ---- checkpoints, signals, the results file ---- */

static volatile sig_atomic_t interrupted; /* the signal that asked training to stop, or 0 */
static volatile sig_atomic_t caught;      /* the same, before ranks agree on it (parts_gradient) */
static void on_signal(int sig) { interrupted = caught = sig; }

void train_signals_catch(struct sigaction old[2]) {
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, &old[0]);
    sigaction(SIGTERM, &sa, &old[1]);
}

void train_signals_restore(const struct sigaction old[2]) {
    sigaction(SIGINT, &old[0], NULL);
    sigaction(SIGTERM, &old[1], NULL);
}

int train_signal(void) { return interrupted; }

int64_t train_total_steps(const TrainSpec *t, int64_t steps_per_epoch) {
    return t->iterations ? t->iterations : steps_per_epoch * t->epochs;
}

int64_t train_epochs(const TrainSpec *t, int64_t steps_per_epoch) {
    return t->iterations ? (t->iterations + steps_per_epoch - 1) / (steps_per_epoch > 0 ? steps_per_epoch : 1) : t->epochs;
}

/* (train.h) */
void train_test_signal_at(int64_t *epoch, int64_t *step) {
    const char *v = getenv("NNC_TEST_SIGNAL_AT");
    char *end = NULL;
    *epoch = v ? strtoll(v, &end, 10) : 0;
    *step = end && *end == ':' ? (strcmp(end + 1, "eval") ? strtoll(end + 1, NULL, 10) : 0) : -1;
    if (*step < 0) *epoch = 0;
}

static int save_checkpoint(const TrainConfig *cfg, const Session *s, const TrainState *st) {
    if (!cfg->identity || !cfg->out_dir) return 0;
    char path[4096], err[1024];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", cfg->out_dir);
    if (checkpoint_write(path, s->exec, st, cfg->identity, err, sizeof err)) {
        fprintf(cfg->diag->out, "nnc: error: writing the checkpoint: %s\n", err);
        return 1;
    }
    return 0;
}

/* Resuming: keep metrics.jsonl's complete lines of epochs before the checkpoint's (a run killed
 * after writing a later epoch's lines but before its checkpoint would otherwise repeat them),
 * and, when the run evaluates (or prunes) every N steps, the evaluations and stop (the prune and
 * fold events) of its epoch at or before its step (written before the checkpoint: eval_every_hook
 * and prune_step_hook run before interrupt_hook). */
static int truncate_metrics(const char *path, const TrainState *at, bool mid_epoch_evals, bool mid_epoch_prunes) {
    size_t len;
    char *text = util_read_file(path, &len);
    if (!text) return errno == ENOENT ? 0 : -1;
    size_t keep = 0;
    for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        cJSON *o = cJSON_ParseWithLength(line, (size_t)(nl - line));
        cJSON *e = cJSON_GetObjectItem(o, "epoch"), *st = cJSON_GetObjectItem(o, "step");
        const char *split = cJSON_GetStringValue(cJSON_GetObjectItem(o, "split"));
        const char *event = cJSON_GetStringValue(cJSON_GetObjectItem(o, "event"));
        bool eval = (split && strcmp(split, "train")) || (event && !strcmp(event, "stop"));
        bool pruning = event && (!strcmp(event, "prune") || !strcmp(event, "fold"));
        bool at_step = (mid_epoch_evals && eval) || (mid_epoch_prunes && pruning); /* written after a step, not an epoch */
        bool before = cJSON_IsNumber(e) && (e->valuedouble < (double)at->epoch ||
                                            (at_step && e->valuedouble == (double)at->epoch && cJSON_IsNumber(st) &&
                                             st->valuedouble <= (double)at->step));
        cJSON_Delete(o);
        if (!before) break;
        keep = (size_t)(nl + 1 - text);
    }
    free(text);
    return truncate(path, (off_t)keep);
}

void train_opt_json(cJSON *hp, const OptSpec *o) {
    cJSON_AddNumberToObject(hp, "lr", o->lr);
    if (o->kind == OPT_SGD || (o->kind == OPT_RMSPROP && o->momentum > 0)) cJSON_AddNumberToObject(hp, "momentum", o->momentum);
    if (o->kind == OPT_SGD) cJSON_AddBoolToObject(hp, "nesterov", o->nesterov);
    if (o->kind == OPT_ADAM || o->kind == OPT_ADAMW) {
        cJSON_AddNumberToObject(hp, "beta1", o->beta1);
        cJSON_AddNumberToObject(hp, "beta2", o->beta2);
    }
    if (o->kind == OPT_RMSPROP) cJSON_AddNumberToObject(hp, "alpha", o->alpha);
    if (o->kind == OPT_ADAGRAD) cJSON_AddNumberToObject(hp, "initial_accumulator", o->initial_accumulator);
    if (o->kind == OPT_PRE_SGD) {
        cJSON_AddNumberToObject(hp, "scale", o->scale);
        if (o->pre == PRE_FULL) cJSON_AddNumberToObject(hp, "rank", o->rank);
    }
    if (o->kind != OPT_SGD && o->kind != OPT_PRE_SGD) cJSON_AddNumberToObject(hp, "eps", o->eps);
    cJSON_AddNumberToObject(hp, "weight_decay", o->weight_decay);
}

/* result.json, in the layout DeepOBS uses for optimizer benchmarks: per-epoch losses and
 * accuracies of each split, from metrics.jsonl, and the optimizer, test problem and seed. */
static void write_results(const TrainConfig *cfg) {
    if (!cfg->out_dir) return;
    const Model *m = cfg->model;
    const TrainSpec *t = &m->train;
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->out_dir);
    size_t len;
    char *text = util_read_file(path, &len);
    if (!text) return;
    cJSON *r = cJSON_CreateObject();
    static const char *const split[] = {"train", "valid", "test", "train_eval"};
    cJSON *loss[4], *acc[4];
    cJSON *eval_loss = cJSON_CreateArray(), *eval_acc = cJSON_CreateArray(); /* train_eval's, not in the file as such */
    for (int k = 0; k < 3; k++) {
        char key[32];
        snprintf(key, sizeof key, "%s_losses", split[k]);
        loss[k] = cJSON_AddArrayToObject(r, key);
        snprintf(key, sizeof key, "%s_accuracies", split[k]);
        acc[k] = cJSON_AddArrayToObject(r, key);
    }
    loss[3] = eval_loss;
    acc[3] = eval_acc;
    for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        cJSON *o = cJSON_ParseWithLength(line, (size_t)(nl - line));
        const char *sp = cJSON_GetStringValue(cJSON_GetObjectItem(o, "split"));
        for (int k = 0; sp && k < 4; k++) {
            if (strcmp(sp, split[k])) continue;
            cJSON *l = cJSON_GetObjectItem(o, "loss"), *a = cJSON_GetObjectItem(o, "accuracy");
            if (cJSON_IsNumber(l)) cJSON_AddItemToArray(loss[k], cJSON_CreateNumber(l->valuedouble));
            if (cJSON_IsNumber(a)) cJSON_AddItemToArray(acc[k], cJSON_CreateNumber(a->valuedouble));
        }
        cJSON_Delete(o);
    }
    free(text);
    if (cJSON_GetArraySize(eval_loss) > 0) { /* DeepOBS's train losses are its train eval's, epoch 0 and each epoch */
        cJSON_ReplaceItemInObject(r, "train_losses", eval_loss);
        cJSON_ReplaceItemInObject(r, "train_accuracies", eval_acc);
    } else {
        cJSON_Delete(eval_loss);
        cJSON_Delete(eval_acc);
    }
    const OptSpec *o = &t->opt;
    cJSON_AddStringToObject(r, "optimizer_name", opt_name(o));
    train_opt_json(cJSON_AddObjectToObject(r, "optimizer_hyperparams"), o);
    cJSON_AddStringToObject(r, "testproblem", m->name);
    cJSON_AddNumberToObject(r, "batch_size", (double)t->batch);
    cJSON_AddNumberToObject(r, "num_epochs", (double)t->epochs);
    if (t->iterations) cJSON_AddNumberToObject(r, "num_iterations", (double)t->iterations);
    cJSON_AddNumberToObject(r, "random_seed", (double)t->seed);
    cJSON_AddNullToObject(r, "l2_reg"); /* the model's own penalties are in its loss, not an L2 term */
    cJSON *params = cJSON_AddObjectToObject(r, "params");
    for (int i = 0; i < m->nparam; i++) cJSON_AddNumberToObject(params, m->param[i].name, m->param[i].value);
    char *json = cJSON_Print(r);
    cJSON_Delete(r);
    snprintf(path, sizeof path, "%s/result.json", cfg->out_dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(json, f) < 0 || fputc('\n', f) < 0 || fclose(f))
        fprintf(cfg->diag->out, "nnc: error: cannot write %s: %s\n", path, strerror(errno));
    free(json);
}

/* ---- the loop: a session, a step function and hooks ---- */

/* train_run reads like the schedule: for each epoch, for each batch, the step and then the
 * after-step hooks; after the epoch's last batch, the end-of-epoch hooks.  The step is a
 * function (the optimiser's; a sampler would be another), and everything around it is a hook
 * called at a fixed point, so that a new kind of step or a new thing to do between steps is
 * a function, not a branch in the loop. */

typedef struct TrainSession TrainSession;

/* A bucket of the gradient block: floats [lo, hi) of it, all written once kernel `ready` of
 * the gradient program has run; `req` its sum under way. */
typedef struct {
    int64_t lo, hi;
    int ready;
    void *req;
} Bucket;

/* One batch of an epoch (the step loads its samples), its step's scalars set. */
typedef struct {
    const int64_t *idx; /* its samples: indices into the training set */
    int64_t rows;       /* the batch size; less for the epoch's last */
    int64_t step;       /* the step it is, 1-based over the run */
} Batch;

typedef struct {
    double loss; /* the batch's mean loss; summed (times rows) into the epoch's training loss */
} StepResult;

/* A step: trains on one batch.  0, or the run's exit status after reporting why. */
typedef int (*TrainStep)(TrainSession *ts, const Batch *b, StepResult *out);

/* A hook: 0 to go on, or the run's exit status (1 after reporting an error, 128 + a signal),
 * which ends the run.  What a hook keeps between calls lives in the session. */
typedef int (*TrainHook)(TrainSession *ts);

typedef enum {
    AFTER_GRAD,   /* inside a step, when the gradients are there (summed over the ranks, when
                     the batch is in parts) and no weight has changed yet */
    AFTER_STEP,   /* after each step, its batch counted in the position: signals, progress */
    END_OF_EPOCH, /* after the epoch's last step: evaluation, stopping, pruning, checkpoint */
    NHOOK
} HookPoint;
enum { MAX_HOOKS = 8 };

struct TrainSession {
    const TrainConfig *cfg;
    const Model *m;
    const TrainSpec *t;
    FILE *out, *metrics;
    Tensorboard tb; /* its file NULL: none */
    TrainResult *res;
    Session s; /* batches in, values out, on the current (possibly pruned) model */
    ModelData data;
    int64_t *perm;     /* the split order: training samples first, then the n_valid validation ones */
    int64_t *order;    /* this epoch's order of the training samples */
    int64_t *test_idx; /* 0 .. test.n - 1 */
    int64_t n_train, n_valid, steps_per_epoch, total_steps;
    int64_t epochs; /* the run's (train_epochs): with an iterations budget, the last is cut short */
    /* The position, as a checkpoint saves it.  During an epoch st.epoch is that epoch,
     * st.epoch_step and st.step count the steps done, st.loss_sum sums their losses, st.shuffle
     * is the generator's state before the epoch's shuffle, st.train_s the seconds its steps took
     * before a resume. */
    TrainState st;
    Rng shuffle; /* the generator after this epoch's shuffle */
    /* this process's part of the run */
    double t0, train_time;  /* when training began here; seconds of training epochs */
    double e0, epoch_s;     /* when this epoch began here; seconds its steps took here */
    int64_t first_step;     /* st.epoch_step when this epoch began here (resuming into it) */
    double last_print;      /* the progress line's last time */
    int64_t samples_trained;
    double lr_used, *param_used; /* the schedule's values at the last step */
    Latest latest;
    WidthOverride *widths;
    int64_t arena_peak, baseline_rss;
    bool tty;
    int64_t signal_epoch, signal_step; /* NNC_TEST_SIGNAL_AT */
    struct sigaction old_sig[2]; /* SIGINT's and SIGTERM's handlers before training */
    TrainStep step;
    TrainHook hook[NHOOK][MAX_HOOKS];
    int nhook[NHOOK];
    /* the batch in parts (data parallel, or a deterministic reduce): a step computes parts
     * [part_lo, part_hi) of `parts` here; each part's gradient goes to slot[p] when the parts
     * are gathered (shards), else the ranks sum the gradient block */
    int64_t batch;   /* the global batch: the model's */
    int64_t parts, part_lo, part_hi;
    float *block;    /* the gradient block in host memory (the arena's, on a host-memory device) */
    float *slot, *slot_all; /* shards: this rank's parts' blocks, and every part's (parts x block floats) */
    double *record;  /* per rank: its parts' weighted losses, a failed part's rank, a signal */
    int64_t block_floats;
    double step_s, reduce_s; /* seconds in steps, and in their collectives */
    int agreed_signal;       /* a signal some rank caught, as the ranks agreed at the last step */
    FILE *step_log;          /* NNC_STEP_LOSSES: every step's loss, a line each (rank 0) */
    /* The gradient block in buckets, each summed as soon as the gradient program has written
     * it (while the rest of the backward pass runs): the plain all-reduce in host memory. */
    Bucket *bucket;
    int nbucket;
    const Plan *bucket_plan; /* the plan they were cut for (pruning replans) */
    float bucket_weight;     /* this rank's share of the batch, which scales each bucket */
    Nccl *nccl;              /* a GPU's gradient sum in device memory, or NULL (MPI, through host memory) */
    int64_t *train_eval_idx, train_eval_n; /* `evaluate train_eval = true`: the training subset */
    const Batch *now;        /* the batch of the step under way */
    Precond *pre;            /* pre_sgd's estimate, or NULL */
    int64_t *pre_idx;        /* the samples of its batches */
};

static void hook_add(TrainSession *ts, HookPoint at, TrainHook fn) {
    NNC_ASSERT(ts->nhook[at] < MAX_HOOKS);
    ts->hook[at][ts->nhook[at]++] = fn;
}

/* The hooks at one point, in the order they were added, up to the first that ends the run. */
static int run_hooks(TrainSession *ts, HookPoint at) {
    for (int i = 0; i < ts->nhook[at]; i++) {
        int rc = ts->hook[at][i](ts);
        if (rc) return rc;
    }
    return 0;
}

static int device_error(const TrainSession *ts) {
    const Exec *ex = ts->s.exec;
    fprintf(ts->cfg->diag->out, "nnc: error: %s: %s\n", ex->dev->name, ex->dev->err);
    return 1;
}

/* The optimiser's step: the gradient program (over the batch's parts, see parts_gradient);
 * a look at the loss (a non-finite one is traced to its op before any weight changes); the
 * after-gradient hooks; the update program; a look at the update's flags (a non-finite
 * gradient). */
static int parts_gradient(TrainSession *ts, const Batch *b, float *loss);

static int optimizer_step(TrainSession *ts, const Batch *b, StepResult *r) {
    Session *s = &ts->s;
    Exec *ex = s->exec;
    const Graph *g = s->g;
    double t0 = util_now();
    float loss;
    if (ts->parts > 1) {
        int rc = parts_gradient(ts, b, &loss);
        if (rc) return rc;
    } else {
        s->rows = b->rows;
        load_batch(s, &ts->data.train, b->idx, b->rows);
        if (exec_run(ex, PROG_GRAD, b->rows)) return device_error(ts);
        loss = read1(s, g->loss);
        if (!isfinite(loss)) {
            report_nonfinite(s, ts->st.epoch, b->step, loss);
            return 1;
        }
    }
    ts->now = b;
    int rc = run_hooks(ts, AFTER_GRAD);
    if (rc) return rc;
    if (exec_run(ex, PROG_UPDATE, s->rows)) return device_error(ts); /* (its kernels are not batched) */
    for (int id = train_bad_update(ex, 0); id >= 0; id = train_bad_update(ex, id + 1)) {
        const Weight *w = &g->weight[g->node[g->node[id].in[0]].ref];
        diag_error(ts->cfg->diag, w->loc, "training stopped at epoch %lld, step %lld: the gradient of '%s' holds NaN or an infinity",
                   (long long)ts->st.epoch, (long long)b->step, w->name);
        rc = 1;
    }
    if (ts->parts > 1 && dist_first_failed(rc == 0, "the update's check") >= 0) rc = 1; /* the same weights everywhere */
    r->loss = loss;
    ts->step_s += util_now() - t0;
    return rc;
}

/* ---- the batch in parts ---- */

/* The gradient block to host memory (a copy on a device with memory of its own), and back. */
static float *block_get(TrainSession *ts) {
    Exec *e = ts->s.exec;
    const Plan *p = ts->s.plan;
    if (e->dev->host_memory) return (float *)(e->arena + p->grad_offset);
    e->dev->download(e->dev, ts->block, e->arena + p->grad_offset, (size_t)p->grad_bytes);
    return ts->block;
}
static void block_put(TrainSession *ts, const float *v) {
    Exec *e = ts->s.exec;
    const Plan *p = ts->s.plan;
    if (e->dev->host_memory) {
        if (v != (const float *)(e->arena + p->grad_offset)) memcpy(e->arena + p->grad_offset, v, (size_t)p->grad_bytes);
    } else {
        e->dev->upload(e->dev, e->arena + p->grad_offset, v, (size_t)p->grad_bytes);
    }
}

/* The running averages of batch statistics (batch_norm's), which each rank updates from its own
 * rows: averaged over the ranks, so that every rank keeps the same model. */
static int average_statistics(TrainSession *ts) {
    Exec *e = ts->s.exec;
    const Plan *p = ts->s.plan;
    for (int i = 0; i < p->nbuf; i++) {
        const Buffer *b = &p->buf[i];
        if (b->kind != BUF_WEIGHT || ts->s.g->weight[b->weight].kind != W_STAT) continue;
        float *v = util_calloc((size_t)b->elems, sizeof(float));
        exec_read(e, b->node, v, sizeof(float) * (size_t)b->elems);
        int rc = dist_sum_f32(v, b->elems, "the batch statistics' average");
        for (int64_t k = 0; k < b->elems; k++) v[k] /= (float)dist.size;
        if (rc == 0) exec_write(e, b->node, v, sizeof(float) * (size_t)b->elems);
        free(v);
        if (rc) return 1;
    }
    return 0;
}

/* Cuts the plan's gradient block into buckets of about NNC_ALLREDUCE_BUCKET MiB:
 * the block's buffers lie in the order the gradient program writes them (plan.c), so a bucket
 * is ready after the last kernel of that program that writes or reads one of its buffers. */
static void cut_buckets(TrainSession *ts, double mib) {
    const Plan *p = ts->s.plan;
    const ProgramPlan *gp = &p->prog[PROG_GRAD];
    int64_t target = (int64_t)(mib * (1 << 20) / sizeof(float)), base = p->grad_offset / (int64_t)sizeof(float);
    free(ts->bucket);
    ts->bucket = util_calloc((size_t)p->nbuf + 1, sizeof(Bucket));
    ts->nbucket = 0;
    ts->bucket_plan = p;
    for (int i = 0; i < p->nbuf; i++) { /* (in offset order: place_gradient_block's) */
        const Buffer *b = &p->buf[i];
        if (!b->grad_block) continue;
        int writer = -1;
        for (int j = 0; j < gp->nkernel; j++)
            for (int a = 0; a < p->kernel[gp->kernel[j]].narg; a++)
                if (p->kernel[gp->kernel[j]].arg[a].buf == i) writer = gp->kernel[j]; /* its last writer or reader */
        int64_t lo = b->offset / (int64_t)sizeof(float) - base;
        Bucket *last = ts->nbucket ? &ts->bucket[ts->nbucket - 1] : NULL;
        if (!last || last->hi - last->lo >= target) {
            ts->bucket[ts->nbucket++] = (Bucket){.lo = last ? last->hi : 0, .hi = lo, .ready = writer};
            last = &ts->bucket[ts->nbucket - 1];
        }
        last->hi = lo + (b->bytes + 63) / 64 * 64 / (int64_t)sizeof(float);
        if (writer > last->ready) last->ready = writer;
    }
    if (ts->nbucket) ts->bucket[ts->nbucket - 1].hi = p->grad_bytes / (int64_t)sizeof(float);
}

/* Starts the sum of bucket b: scaled by this rank's share first. */
static void start_bucket(TrainSession *ts, Bucket *b) {
    float *v = (float *)(ts->s.exec->arena + ts->s.plan->grad_offset), w = ts->bucket_weight;
    for (int64_t i = b->lo; i < b->hi; i++) v[i] *= w;
    b->req = dist_isum_f32(v + b->lo, b->hi - b->lo, "a gradient bucket's all-reduce");
}

/* After kernel k of the gradient program: the buckets it completed are summed from now on;
 * those under way are driven on. */
static void bucket_hook(void *ctx, int k) {
    TrainSession *ts = ctx;
    for (int i = 0; i < ts->nbucket; i++)
        if (ts->bucket[i].ready == k && !ts->bucket[i].req) start_bucket(ts, &ts->bucket[i]);
        else if (ts->bucket[i].req) dist_progress(ts->bucket[i].req);
}

/* The random generator's key for part p: the seed's for part 0 (a run in one part draws what
 * it always drew), another for each other part, so that parts draw independently. */
static double part_key(const TrainSpec *t, int64_t p) { return (double)((t->seed + (uint64_t)p * 0x9E3779u) & 0xFFFFFF); }

/* The batch's gradient and loss from its parts: this rank computes its parts (each the gradient
 * program on its rows, the block scaled by the part's share of the rows), then every rank
 * gets the same sum: the ranks' blocks summed (an all-reduce), or (shards) every part's block
 * gathered and added in part order.  The parts' losses add up the same way, from one record
 * per rank that also says whether a part's loss was not finite (the rank that saw it traces
 * it to its op) and whether a signal came (every rank then stops at this step). */
static int parts_gradient(TrainSession *ts, const Batch *b, float *loss) {
    Session *s = &ts->s;
    Exec *ex = s->exec;
    const Graph *g = s->g;
    int64_t mine = ts->part_hi - ts->part_lo, nf = ts->s.plan->grad_bytes / (int64_t)sizeof(float), width = 2 + mine;
    if (nf != ts->block_floats) { /* the first step, or a pruned model's */
        free(ts->block);
        free(ts->slot);
        free(ts->slot_all);
        ts->block_floats = nf;
        ts->block = util_calloc((size_t)nf + 1, sizeof(float));
        ts->slot = ts->cfg->shards ? util_calloc((size_t)(nf * mine) + 1, sizeof(float)) : NULL;
        ts->slot_all = ts->cfg->shards ? util_calloc((size_t)(nf * ts->parts) + 1, sizeof(float)) : NULL;
    }
    if (!ts->record) ts->record = util_calloc((size_t)(dist.size * width), sizeof(double));
    double *rec = ts->record + (int64_t)dist.rank * width;
    memset(rec, 0, sizeof(double) * (size_t)width);
    float bad_loss = 0;
    /* Buckets when asked for (NNC_ALLREDUCE_BUCKET=MiB), else one blocking sum after the program:
     * Open MPI's non-blocking sum is slower than its blocking one, which the overlap did not make
     * up for on the machines measured (bench/README.md, "Data-parallel training"). */
    const char *env = getenv("NNC_ALLREDUCE_BUCKET");
    double mib = env ? atof(env) : 0;
    bool bucketed = mib > 0 && !ts->slot && dist.size > 1 && ex->dev->host_memory;
    if (bucketed && ts->bucket_plan != s->plan) cut_buckets(ts, mib);
    for (int64_t p = ts->part_lo; p < ts->part_hi; p++) {
        int64_t lo, hi;
        dist_share(b->rows, (int)p, (int)ts->parts, &lo, &hi);
        float *dst = ts->slot ? ts->slot + (p - ts->part_lo) * nf : NULL;
        if (hi == lo) { /* a last batch with fewer rows than parts */
            if (dst) memset(dst, 0, sizeof(float) * (size_t)nf);
            else block_put(ts, memset(ts->block, 0, sizeof(float) * (size_t)nf));
            ts->bucket_weight = 1;
            for (int i = 0; bucketed && i < ts->nbucket; i++) start_bucket(ts, &ts->bucket[i]);
            continue;
        }
        double w = (double)(hi - lo) / (double)b->rows;
        s->rows = hi - lo;
        ts->bucket_weight = (float)w;
        load_batch(s, &ts->data.train, b->idx + lo, hi - lo);
        exec_set_scalars(ex, SC_SEED, part_key(ts->t, p));
        if (exec_run_checked(ex, PROG_GRAD, hi - lo, bucketed ? bucket_hook : NULL, ts))
            return device_error(ts); /* (the others time out) */
        for (int i = 0; bucketed && i < ts->nbucket; i++) /* (none is left, as plan_verify holds) */
            if (!ts->bucket[i].req) start_bucket(ts, &ts->bucket[i]);
        float l = read1(s, g->loss);
        if (!isfinite(l)) {
            rec[0] = 1;
            bad_loss = l;
            break;
        }
        rec[2 + p - ts->part_lo] = w * l;
        if (bucketed || ts->nccl) continue; /* (scaled and under way; NCCL scales as it sums) */
        float *v = block_get(ts), fw = (float)w;
        if (!dst) dst = v;
        for (int64_t i = 0; i < nf; i++) dst[i] = v[i] * fw;
        if (!ts->slot) block_put(ts, dst);
    }
    rec[1] = caught;
    double t0 = util_now();
    double *mine_rec = util_calloc((size_t)width, sizeof(double));
    memcpy(mine_rec, rec, sizeof(double) * (size_t)width);
    int rc = dist_allgather(mine_rec, ts->record, (int64_t)sizeof(double) * width, "the step's losses");
    free(mine_rec);
    if (rc) return 1;
    double sum = 0;
    int bad_rank = -1, sig = 0;
    for (int r = 0; r < dist.size; r++) {
        const double *q = ts->record + (int64_t)r * width;
        if (q[0] && bad_rank < 0) bad_rank = r;
        if (q[1] && !sig) sig = (int)q[1];
        for (int64_t i = 0; i < mine; i++) sum += q[2 + i];
    }
    for (int i = 0; bucketed && i < ts->nbucket; i++) { /* the buckets' sums, finished */
        int rc_b = dist_wait(ts->bucket[i].req, "a gradient bucket's all-reduce");
        ts->bucket[i].req = NULL;
        if (rc_b) return 1;
    }
    if (bad_rank >= 0) {
        dist.failed = true;
        if (bad_rank == dist.rank) report_nonfinite(s, ts->st.epoch, b->step, bad_loss);
        else if (dist.rank == 0)
            fprintf(stderr, "nnc: error: training stopped at epoch %lld, step %lld: the loss on rank %d is not finite (its "
                    "message above says where)\n", (long long)ts->st.epoch, (long long)b->step, bad_rank);
        return 1;
    }
    ts->agreed_signal = sig; /* every rank stops at this step boundary */
    if (ts->slot) { /* every part's block, then their sum in part order */
        if (dist_allgather(ts->slot + 0, ts->slot_all, (int64_t)sizeof(float) * nf * mine, "the gradient parts")) return 1;
        float *acc = ts->block;
        memcpy(acc, ts->slot_all, sizeof(float) * (size_t)nf);
        for (int64_t p = 1; p < ts->parts; p++) {
            const float *v = ts->slot_all + p * nf;
            for (int64_t i = 0; i < nf; i++) acc[i] += v[i];
        }
        block_put(ts, acc);
    } else if (ts->nccl) {
        char err[512];
        if (nccl_sum(ts->nccl, ex->arena + s->plan->grad_offset, nf, ts->bucket_weight, err, sizeof err)) {
            fprintf(stderr, "nnc: error: %s%s\n", dist_who(), err);
            return 1;
        }
    } else if (!bucketed) {
        float *v = block_get(ts);
        if (dist_sum_f32(v, nf, "the gradient all-reduce")) return 1;
        block_put(ts, v);
    }
    if (dist.size > 1 && average_statistics(ts)) return 1;
    exec_set_scalars(ex, SC_SEED, part_key(ts->t, 0));
    ts->reduce_s += util_now() - t0;
    *loss = (float)sum;
    return 0;
}

/* The position at the start of the epoch after st's. */
static void next_epoch(TrainState *st, const Rng *shuffle) {
    st->epoch++;
    st->epoch_step = 0;
    st->loss_sum = 0;
    st->train_s = 0;
    memcpy(st->shuffle, shuffle->s, sizeof st->shuffle);
}

/* ---- the hooks ---- */

/* Test only (train_test_signal_at): SIGTERM right after step S of epoch E, or ("E:eval") after its
 * last step; either is handled at the next step boundary. */
static int test_signal_step(TrainSession *ts) {
    if (ts->st.epoch == ts->signal_epoch && ts->st.epoch_step == ts->signal_step) raise(SIGTERM);
    return 0;
}
/* Test only (tests/mpi): NNC_TEST_RANK_SIGNAL="R:E:S:KILL" (or STOP) kills (or stops) rank R
 * right after step S of epoch E: a rank that dies, or hangs, mid-epoch. */
static int test_rank_signal(TrainSession *ts) {
    int r, n = 0;
    long long e, st;
    char what[8] = "";
    const char *v = getenv("NNC_TEST_RANK_SIGNAL");
    if (v && sscanf(v, "%d:%lld:%lld:%7s%n", &r, &e, &st, what, &n) == 4 && r == dist.rank && e == ts->st.epoch && st == ts->st.epoch_step) {
        fprintf(stderr, "rank %d: test: SIG%s at epoch %lld, step %lld\n", r, what, e, st);
        fflush(stderr);
        raise(!strcmp(what, "STOP") ? SIGSTOP : SIGKILL);
    }
    return 0;
}
static int test_signal_eval(TrainSession *ts) {
    if (ts->st.epoch == ts->signal_epoch && ts->signal_step == 0) raise(SIGTERM);
    return 0;
}

/* After SIGINT or SIGTERM: a checkpoint at this step boundary, then the run ends. */
static int interrupt_hook(TrainSession *ts) {
    if (ts->parts > 1) interrupted = ts->agreed_signal; /* the same step on every rank */
    if (!interrupted) return 0;
    if (ts->tty) fprintf(ts->out, "\r\033[K");
    TrainState now = ts->st;
    now.train_s += util_now() - ts->e0;
    int rc = save_checkpoint(ts->cfg, &ts->s, &now);
    fprintf(ts->out, "interrupted by %s at epoch %lld, step %lld%s\n", interrupted == SIGINT ? "SIGINT" : "SIGTERM",
            (long long)ts->st.epoch, (long long)ts->st.step,
            rc == 0 && ts->cfg->identity ? "; checkpoint written; continue with --resume" : "");
    return rc ? rc : 128 + interrupted;
}

/* The training samples this epoch's steps so far took (all of them after its last step, fewer
 * when an iterations budget ends it early). */
static int64_t samples_done(const TrainSession *ts) {
    int64_t done = ts->st.epoch_step * ts->batch;
    return done < ts->n_train ? done : ts->n_train;
}

/* On a terminal: the progress bar, at most 5 times a second and after the epoch's last step. */
static int progress_hook(TrainSession *ts) {
    int64_t batch = ts->batch, done = samples_done(ts);
    double now = util_now();
    if (now - ts->last_print > 0.2 || done >= ts->n_train) {
        double el = now - ts->e0, sps = (double)(done - ts->first_step * batch) / el;
        progress_line(ts->out, ts->st.epoch, ts->epochs, ts->st.epoch_step, ts->steps_per_epoch,
                      ts->st.loss_sum / (double)done, sps, (double)(ts->n_train - done) / sps);
        ts->last_print = now;
    }
    return 0;
}

static void eval_splits(TrainSession *ts, int64_t epoch);

/* The epoch's line and metrics: its training loss and the schedule's values, then (unless the
 * run evaluates every N steps) an evaluation on the validation and test splits. */
static int report_hook(TrainSession *ts) {
    const Model *m = ts->m;
    const Graph *g = ts->s.g;
    FILE *out = ts->out;
    TrainResult *res = ts->res;
    Latest *latest = &ts->latest;
    int64_t epoch = ts->st.epoch, step = ts->st.step;
    double epoch_s = ts->st.train_s + ts->epoch_s; /* the whole epoch's, across a resume */
    int64_t done = samples_done(ts);
    double sps = (double)done / epoch_s;
    double train_loss = ts->st.loss_sum / (double)done;
    if (ts->tty) fprintf(out, "\r\033[K");
    fprintf(out, "epoch %lld/%lld  train loss %.4f", (long long)epoch, (long long)ts->epochs, train_loss);
    cJSON *line = line_begin(epoch, step, "train");
    cJSON_AddNumberToObject(line, "loss", train_loss);
    cJSON_AddNumberToObject(line, "lr", ts->lr_used); /* the values the last step used */
    for (int i = 0; i < m->nparam; i++) cJSON_AddNumberToObject(line, m->param[i].name, ts->param_used[i]);
    for (int i = 0; i < g->ngate; i++) { /* the widths this epoch trained at */
        char key[256];
        snprintf(key, sizeof key, "%s.width", g->gate[i].layer);
        cJSON_AddNumberToObject(line, key, (double)gate_width(g, &g->gate[i]));
    }
    add_timing(line, sps, util_now() - ts->t0);
    line_end(ts->metrics, &ts->tb, line);
    if (ts->tb.f && ts->cfg->histogram_every && epoch % ts->cfg->histogram_every == 0) weight_histograms_of(&ts->tb, ts->s.exec, step);
    res->train_loss = latest->train_loss = train_loss;
    if (!ts->t->eval_every) eval_splits(ts, ts->st.epoch);
    fprintf(out, " | %.1f s, %.0f samples/s\n", epoch_s, sps);
    if (!ts->t->eval_every && (latest->has_valid || latest->has_test))
        print_gates(out, g, latest->has_valid ? &latest->valid : &latest->test, latest->has_valid ? "valid" : "test");
    res->epochs = epoch;
    return 0;
}

/* The validation and test splits evaluated at the run's position (`epoch`: 0 before training):
 * printed on the current line, a line each in metrics.jsonl, and kept for the stopping rule;
 * with `evaluate train_eval = true` first the training subset, split "train_eval". */
static void eval_splits(TrainSession *ts, int64_t epoch) {
    const Graph *g = ts->s.g;
    FILE *out = ts->out;
    TrainResult *res = ts->res;
    Latest *latest = &ts->latest;
    int64_t step = ts->st.step;
    cJSON *line;
    if (ts->train_eval_n > 0) {
        Eval te;
        memset(&te, 0, sizeof te);
        te.gate = util_calloc((size_t)g->ngate + 1, sizeof(GateStat));
        if (evaluate(&ts->s, &ts->data.train, ts->train_eval_idx, ts->train_eval_n, &te) == 0) {
            print_eval(out, g, "train_eval", &te);
            line = line_begin(epoch, step, "train_eval");
            add_eval(line, g, &te);
            add_timing(line, 0, util_now() - ts->t0);
            line_end(ts->metrics, &ts->tb, line);
        }
        free(te.gate);
    }
    latest->g = g;
    latest->has_valid = ts->n_valid && evaluate(&ts->s, &ts->data.train, ts->perm + ts->n_train, ts->n_valid, &latest->valid) == 0;
    if (latest->has_valid) {
        print_eval(out, g, "valid", &latest->valid);
        line = line_begin(epoch, step, "valid");
        add_eval(line, g, &latest->valid);
        add_timing(line, 0, util_now() - ts->t0);
        line_end(ts->metrics, &ts->tb, line);
        res->valid_loss = latest->valid.loss;
    }
    const Dataset *test = &ts->data.test;
    double v0 = util_now();
    latest->has_test = ts->data.has_test && evaluate(&ts->s, test, ts->test_idx, test->n, &latest->test) == 0;
    if (latest->has_test) {
        print_eval(out, g, "test", &latest->test);
        line = line_begin(epoch, step, "test");
        add_eval(line, g, &latest->test);
        add_timing(line, (double)test->n / (util_now() - v0), util_now() - ts->t0);
        line_end(ts->metrics, &ts->tb, line);
        res->test_loss = latest->test.loss;
        memcpy(res->test_metric, latest->test.metric, sizeof res->test_metric);
    }
}

/* The stopping rule (`stop when ...`) on the latest evaluation: the run ends after this epoch
 * (or, evaluating every N steps, at this step). */
static int stop_hook(TrainSession *ts) {
    char why[512];
    if (stop_check(&ts->t->stop, &ts->st.stop, latest_metric, &ts->latest, why, sizeof why)) {
        if (ts->t->eval_every)
            fprintf(ts->out, "stopping at step %lld of %lld (epoch %lld): %s\n", (long long)ts->st.step, (long long)ts->total_steps,
                    (long long)ts->st.epoch, why);
        else
            fprintf(ts->out, "stopping after epoch %lld of %lld: %s\n", (long long)ts->st.epoch, (long long)ts->epochs, why);
        cJSON *line = line_begin(ts->st.epoch, ts->st.step, NULL);
        cJSON_AddStringToObject(line, "event", "stop");
        cJSON_AddStringToObject(line, "reason", why);
        line_end(ts->metrics, &ts->tb, line);
        ts->st.finished = true;
    }
    fflush(ts->out);
    return 0;
}

/* `evaluate every N steps`: the validation and test splits after every N-th step and the last,
 * each on a line of its own, then the stopping rule, which may end the run at this step.  (Before
 * the interrupt hook: a checkpoint at this step holds what this evaluation left.) */
static int eval_every_hook(TrainSession *ts) {
    int64_t step = ts->st.step;
    if (step % ts->t->eval_every && step != ts->total_steps) return 0;
    if (ts->tty) fprintf(ts->out, "\r\033[K");
    fprintf(ts->out, "step %lld/%lld (epoch %lld)", (long long)step, (long long)ts->total_steps, (long long)ts->st.epoch);
    double t0 = util_now();
    eval_splits(ts, ts->st.epoch);
    double took = util_now() - t0;
    ts->e0 += took; /* the epoch's step time (samples_per_s, a checkpoint's epoch_train_s) leaves it out */
    fprintf(ts->out, " | evaluated in %.1f s\n", took);
    const Latest *l = &ts->latest;
    if (l->has_valid || l->has_test) print_gates(ts->out, ts->s.g, l->has_valid ? &l->valid : &l->test, l->has_valid ? "valid" : "test");
    ts->last_print = 0;
    return stop_hook(ts);
}

/* Prunes now (`when` says where, for the output). */
static int prune_at(TrainSession *ts, const char *when) {
    if (dist.size > 1) { /* every rank decides on rank 0's gates: its weights and state, broadcast */
        Exec *e = ts->s.exec;
        size_t n = (size_t)ts->s.plan->persistent_bytes;
        char *v = util_calloc(n + 1, 1);
        e->dev->download(e->dev, v, e->arena, n);
        int rc = dist_bcast(v, (int64_t)n, 0, "rank 0's weights before pruning");
        if (rc == 0) e->dev->upload(e->dev, e->arena, v, n);
        free(v);
        if (rc) return 1;
    }
    double *param = util_calloc((size_t)ts->m->nparam + 1, sizeof(double)); /* the next step's */
    train_schedule_at(ts->m, ts->st.step + 1, ts->steps_per_epoch, ts->total_steps, param);
    int rc = prune_now(&ts->s, param, when, ts->widths, ts->st.epoch, ts->st.step, ts->metrics, &ts->tb, ts->st.reported_min,
                       &ts->arena_peak);
    free(param);
    return rc;
}

/* `prune gates every N epochs`: between epochs, so not after the last nor when stopping. */
static int prune_hook(TrainSession *ts) {
    int64_t epoch = ts->st.epoch;
    if (ts->st.finished || epoch % ts->t->prune_every || epoch >= ts->epochs) return 0;
    char when[64];
    snprintf(when, sizeof when, "after epoch %lld", (long long)epoch);
    return prune_at(ts, when);
}

/* `prune gates every N steps`: after every N-th step but the run's last, after an evaluation at
 * that step and before a checkpoint (so that one taken at this step resumes after the pruning);
 * its time is not the epoch's training time. */
static int prune_step_hook(TrainSession *ts) {
    int64_t step = ts->st.step;
    if (ts->st.finished || step % ts->t->prune_every || step >= ts->total_steps) return 0;
    char when[64];
    snprintf(when, sizeof when, "at step %lld (epoch %lld)", (long long)step, (long long)ts->st.epoch);
    double t0 = util_now();
    int rc = prune_at(ts, when);
    ts->e0 += util_now() - t0;
    return rc;
}

/* ---- pre_sgd (runtime/precondition.c) ---- */

static int64_t pre_feed(void *ctx, int j) {
    TrainSession *ts = ctx;
    int64_t rows = ts->pre->h.rows;
    return exec_feed(ts->s.exec, &ts->data.train, ts->pre_idx + (size_t)j * (size_t)rows, rows) ? -1 : rows;
}

/* After the gradient: at the first step of an epoch when one is due, a new estimate from
 * batches of its own (drawn from the seed and the epoch), and the step's gradient again; then
 * the learning rate scale / alpha (times a `schedule lr`) and the gradient preconditioned. */
static int pre_hook(TrainSession *ts) {
    Precond *p = ts->pre;
    const OptSpec *o = &ts->t->opt;
    Exec *ex = ts->s.exec;
    char err[1024];
    bool due = p->estimates == 0 ||
               (ts->st.epoch_step == 0 && o->pre != PRE_ONLY_ADAPTIVE && (ts->st.epoch - 1) % o->every == 0);
    if (due) {
        int64_t rows = p->h.rows, nb = o->estimate + (o->pre == PRE_FULL ? o->hvps : 0);
        Rng r;
        rng_seed(&r, ts->t->seed + (uint64_t)ts->st.epoch * 0x9E3779B97F4A7C15ull, RNG_HESSIAN);
        for (int64_t i = 0; i < nb * rows; i++) ts->pre_idx[i] = ts->perm[rng_below(&r, (uint64_t)ts->n_train)];
        double t0 = util_now();
        if (precond_estimate(p, pre_feed, ts, err, sizeof err)) {
            fprintf(ts->cfg->diag->out, "nnc: error: %s\n", err);
            return 1;
        }
        precond_format(p, ts->st.pre, sizeof ts->st.pre);
        load_batch(&ts->s, &ts->data.train, ts->now->idx, ts->now->rows); /* the step's own gradient again */
        if (exec_run(ex, PROG_GRAD, ts->now->rows)) return device_error(ts);
        StrBuf line = {0};
        sb_printf(&line, "%s: epoch %lld: learning rate %.6g (scale / alpha, alpha %.6g)", opt_name(o), (long long)ts->st.epoch,
                  o->scale / p->alpha, p->alpha);
        for (int k = 0; k < p->rank; k++) sb_printf(&line, "%s%.6g", k ? ", " : "; top eigenvalues ", p->lambda[k]);
        if (o->pre == PRE_FULL && p->rank == 0) sb_puts(&line, "; no eigenvalue above alpha");
        sb_printf(&line, " (%.2f s)\n", util_now() - t0);
        fputs(sb_str(&line), ts->out);
        sb_free(&line);
    }
    double lr = o->scale / p->alpha * ts->lr_used / o->lr;
    for (int i = 0; i < ex->g->nscalar; i++)
        if (ex->g->scalar[i].kind == SC_LR) ex->scalars[i] = (float)lr;
    ts->lr_used = lr;
    if (precond_apply(p, err, sizeof err)) {
        fprintf(ts->cfg->diag->out, "nnc: error: %s\n", err);
        return 1;
    }
    return 0;
}

static int pre_open(TrainSession *ts) {
    const OptSpec *o = &ts->t->opt;
    char err[1024];
    if (ts->parts > 1) {
        fprintf(ts->cfg->diag->out, "nnc: error: %s runs in one process: its Hessian estimate is not shared over ranks or shards\n",
                opt_name(o));
        return 1;
    }
    ts->pre = util_calloc(1, sizeof *ts->pre);
    int64_t rows = ts->batch < ts->n_train ? ts->batch : ts->n_train;
    ts->pre_idx = util_calloc((size_t)(o->estimate + o->hvps) * (size_t)rows + 1, sizeof(int64_t));
    int rc = precond_open(ts->pre, ts->s.exec, o, rows, err, sizeof err);
    if (rc == 0 && ts->st.pre[0]) rc = precond_restore(ts->pre, ts->st.pre, err, sizeof err);
    if (rc) fprintf(ts->cfg->diag->out, "nnc: error: %s\n", err);
    return rc ? 1 : 0;
}

/* A checkpoint every checkpoint_every epochs, after the last and when stopping: the position at
 * the next epoch's start. */
static int checkpoint_hook(TrainSession *ts) {
    int64_t epoch = ts->st.epoch, every = ts->cfg->checkpoint_every;
    if (!ts->st.finished && epoch != ts->epochs && !(every > 0 && epoch % every == 0)) return 0;
    TrainState next = ts->st;
    next_epoch(&next, &ts->shuffle);
    return save_checkpoint(ts->cfg, &ts->s, &next);
}

/* The step and the hooks of a run of this model.  (A step in parts, data parallel, reduces its
 * gradient itself, before its loss is looked at: parts_gradient.) */
static void install(TrainSession *ts) {
    ts->step = optimizer_step;
    if (ts->signal_epoch) hook_add(ts, AFTER_STEP, test_signal_step);
    if (getenv("NNC_TEST_RANK_SIGNAL")) hook_add(ts, AFTER_STEP, test_rank_signal);
    if (ts->t->eval_every) hook_add(ts, AFTER_STEP, eval_every_hook);
    if (ts->t->prune_every && ts->t->prune_steps) hook_add(ts, AFTER_STEP, prune_step_hook);
    hook_add(ts, AFTER_STEP, interrupt_hook);
    if (ts->tty) hook_add(ts, AFTER_STEP, progress_hook);
    if (ts->signal_epoch) hook_add(ts, END_OF_EPOCH, test_signal_eval);
    hook_add(ts, END_OF_EPOCH, report_hook);
    if (!ts->t->eval_every) hook_add(ts, END_OF_EPOCH, stop_hook);
    if (ts->t->prune_every && !ts->t->prune_steps) hook_add(ts, END_OF_EPOCH, prune_hook);
    hook_add(ts, END_OF_EPOCH, checkpoint_hook);
}

/* ---- the run ---- */

/* The data and metrics.jsonl (truncated to the checkpoint's epoch when resuming).  1 after
 * reporting an error; then nothing is open. */
static int train_open(TrainSession *ts, const TrainConfig *cfg, TrainResult *res) {
    *ts = (TrainSession){.cfg = cfg, .m = cfg->model, .t = &cfg->model->train, .res = res,
                         .out = cfg->out ? cfg->out : stdout};
    char err[1024];
    if (train_load_data(ts->m, cfg->exec->g, &ts->data, err, sizeof err)) {
        fprintf(cfg->diag->out, "nnc: error: %s%s\n", dist_who(), err);
        return 1;
    }
    NNC_ASSERT(!ts->t->prune_every || (cfg->rebuild && cfg->retire)); /* pruning rebuilds the model */
    if (cfg->out_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->out_dir);
        if (train_make_dirs(cfg->out_dir) || (cfg->resume && truncate_metrics(path, cfg->resume, ts->t->eval_every > 0, ts->t->prune_steps)) ||
            !(ts->metrics = fopen(path, cfg->resume ? "a" : "w"))) {
            fprintf(cfg->diag->out, "nnc: error: cannot write %s: %s\n", path, strerror(errno));
            train_free_data(&ts->data);
            return 1;
        }
        if (cfg->tensorboard && (train_make_dirs(cfg->tensorboard) || tensorboard_open(&ts->tb, cfg->tensorboard, err, sizeof err))) {
            if (!ts->tb.path[0]) snprintf(err, sizeof err, "%s: cannot make the directory: %s", cfg->tensorboard, strerror(errno));
            fprintf(cfg->diag->out, "nnc: error: %s\n", err);
            fclose(ts->metrics);
            train_free_data(&ts->data);
            return 1;
        }
    }
    return 0;
}

/* On GPUs (not with shards, which gather on the host): NCCL's sum of the gradient block in device
 * memory when every rank can open it (NNC_NCCL=0: never), else MPI's through host memory, with
 * a note saying why. */
static void open_nccl(TrainSession *ts) {
    char err[512] = "", version[32] = "";
    const char *env = getenv("NNC_NCCL");
    bool off = env && !strcmp(env, "0");
    Nccl *n = off ? NULL : nccl_load(version, sizeof version, err, sizeof err);
    if (off) snprintf(err, sizeof err, "NNC_NCCL=0");
    int bad = dist_first_failed(n != NULL, "loading NCCL");
    if (bad < 0) bad = dist_first_failed(nccl_join(n, err, sizeof err) == 0, "joining NCCL");
    dist.failed = false; /* (not a failure of the run) */
    if (bad < 0) {
        ts->nccl = n;
        fprintf(ts->out, "data parallel: the gradient summed by NCCL %s in device memory\n", version);
        return;
    }
    if (off) {
        if (dist.rank == 0) fprintf(ts->out, "data parallel: NCCL off (NNC_NCCL=0): the gradient is summed by MPI through host memory\n");
    } else {
        if (err[0]) fprintf(stderr, "nnc: note: %sNCCL: %s\n", dist_who(), err);
        if (dist.rank == 0)
            fprintf(ts->out, "data parallel: not NCCL (rank %d could not use it; its note says why): the gradient is summed by MPI "
                    "through host memory\n", bad);
    }
    nccl_close(n);
}

/* The weights (seeded, --init, or the checkpoint's), the split, the header line, the position
 * (fresh or the checkpoint's), the step and hooks, the signal handlers.  0, or 1 after
 * reporting an error (the run then ends at once). */
static int train_begin(TrainSession *ts) {
    const TrainConfig *cfg = ts->cfg;
    const Model *m = ts->m;
    const TrainSpec *t = ts->t;
    const TrainState *resume = cfg->resume;
    FILE *out = ts->out;
    Session *s = &ts->s;
    session_open(s, cfg);
    ts->baseline_rss = cfg->exec->baseline_rss;
    int rc = 0;
    if (!resume) { /* resuming, the weights came from the checkpoint */
        if (train_init_weights(s->exec, t->seed) || (cfg->init && weights_load(cfg->init, s->exec, cfg->diag->out))) rc = 1;
    }
    ts->arena_peak = s->plan->arena_bytes;
    ts->batch = t->batch;
    ts->parts = cfg->shards > 0 ? cfg->shards : dist.size;
    NNC_ASSERT(ts->batch % ts->parts == 0 && ts->parts % dist.size == 0); /* (run.c checked) */
    dist_share(ts->parts, dist.rank, dist.size, &ts->part_lo, &ts->part_hi);
    if (dist.size > 1 && !cfg->shards && !s->exec->dev->host_memory) open_nccl(ts);
    ts->perm = train_split_order(t, ts->data.train.n, &ts->n_valid);
    ts->n_train = ts->data.train.n - ts->n_valid;
    if (ts->n_train <= 0) {
        fprintf(cfg->diag->out, "nnc: error: the validation split leaves no training data\n");
        rc = 1;
    }
    ts->order = util_calloc((size_t)ts->n_train + 1, sizeof(int64_t));
    ts->test_idx = train_iota(ts->data.test.n);
    ts->steps_per_epoch = (ts->n_train + ts->batch - 1) / ts->batch;
    if (ts->n_train > 0) exec_set_scalars(s->exec, SC_DATA_INV_N, 1.0 / (double)ts->n_train);
    if (rc == 0) {
        fprintf(out, "training %s: %lld training samples%s", m->name, (long long)ts->n_train, "");
        if (ts->n_valid) fprintf(out, ", %lld validation", (long long)ts->n_valid);
        if (ts->data.has_test) fprintf(out, ", %lld test", (long long)ts->data.test.n);
        char budget[64] = "";
        if (t->iterations) snprintf(budget, sizeof budget, "%lld iterations: ", (long long)t->iterations);
        char parts[256] = "";
        if (cfg->shards > 0)
            snprintf(parts, sizeof parts, " in %lld shards of %lld, gathered and added in a fixed order (--deterministic-reduce), "
                     "%lld per rank on %d rank%s", (long long)ts->parts, (long long)(ts->batch / ts->parts),
                     (long long)(ts->parts / dist.size), dist.size, dist.size > 1 ? "s" : "");
        else if (dist.on) {
            char threads[48] = "";
            if (!strcmp(s->exec->dev->name, "cpu"))
                snprintf(threads, sizeof threads, ", %d thread%s each", device_cpu_threads(), device_cpu_threads() > 1 ? "s" : "");
            snprintf(parts, sizeof parts, " (%lld per rank on %d rank%s%s, %s)", (long long)(ts->batch / dist.size), dist.size,
                     dist.size > 1 ? "s" : "", threads, dist.library);
        }
        fprintf(out, "; batch %lld%s, %lld steps per epoch, %s%lld epochs (%s)\n", (long long)ts->batch, parts,
                (long long)ts->steps_per_epoch, budget, (long long)train_epochs(t, ts->steps_per_epoch),
                cfg->backend ? cfg->backend : "cpu");
        if (resume)
            fprintf(out, "resuming from %s/checkpoint.safetensors: epoch %lld, step %lld\n", cfg->out_dir,
                    (long long)resume->epoch, (long long)resume->step);
        fflush(out);
    }
    ts->tty = cfg->progress == 1 || (cfg->progress < 0 && isatty(fileno(out)));
    /* the run's position: fresh, or where the checkpoint left it */
    ts->st = (TrainState){.epoch = 1};
    rng_seed(&ts->shuffle, t->seed, RNG_SHUFFLE);
    stop_init(&ts->st.stop);
    if (resume) {
        ts->st = *resume;
        memcpy(ts->shuffle.s, resume->shuffle, sizeof ts->shuffle.s);
    }
    ts->t0 = util_now();
    ts->total_steps = train_total_steps(t, ts->steps_per_epoch);
    ts->epochs = train_epochs(t, ts->steps_per_epoch);
    ts->lr_used = t->opt.lr;
    ts->param_used = util_calloc((size_t)m->nparam + 1, sizeof(double));
    if (ts->st.step > 0) /* resumed: the last step's schedule values, for an epoch whose steps are all done */
        train_step_scalars(m, s->exec, ts->st.step, ts->steps_per_epoch, ts->total_steps, &ts->lr_used, ts->param_used);
    int ngate = s->g->ngate; /* the same in every recompilation */
    ts->latest = (Latest){.g = s->g};
    ts->latest.valid.gate = util_calloc((size_t)ngate + 1, sizeof(GateStat));
    ts->latest.test.gate = util_calloc((size_t)ngate + 1, sizeof(GateStat));
    ts->widths = util_calloc((size_t)s->g->nspace + 1, sizeof(WidthOverride));
    /* SIGINT and SIGTERM stop training at the next step boundary, with a checkpoint */
    train_signals_catch(ts->old_sig);
    train_test_signal_at(&ts->signal_epoch, &ts->signal_step);
    const char *log = getenv("NNC_STEP_LOSSES");
    if (log && *log && dist.rank == 0 && !(ts->step_log = fopen(log, "w")))
        fprintf(cfg->diag->out, "nnc: error: NNC_STEP_LOSSES: cannot write %s: %s\n", log, strerror(errno));
    install(ts);
    if (t->eval_train && ts->n_train > 0) { /* as many as the test split has (or the validation split, or all), evenly spread */
        int64_t want = ts->data.has_test ? ts->data.test.n : ts->n_valid ? ts->n_valid : ts->n_train;
        ts->train_eval_n = want < ts->n_train ? want : ts->n_train;
        ts->train_eval_idx = util_calloc((size_t)ts->train_eval_n + 1, sizeof(int64_t));
        for (int64_t k = 0; k < ts->train_eval_n; k++) ts->train_eval_idx[k] = ts->perm[k * ts->n_train / ts->train_eval_n];
    }
    if (rc == 0 && t->sampler.kind == SAMPLER_NONE && t->opt.kind == OPT_PRE_SGD) {
        rc = pre_open(ts);
        hook_add(ts, AFTER_GRAD, pre_hook);
    }
    return rc;
}

/* One epoch: its batches in a fresh shuffle (from the checkpoint's step when resuming into
 * it), each the step and then the after-step hooks; then the end-of-epoch hooks. */
static int train_epoch(TrainSession *ts) {
    TrainState *st = &ts->st;
    int64_t batch = ts->batch;
    memcpy(st->shuffle, ts->shuffle.s, sizeof st->shuffle); /* what a checkpoint in this epoch restores */
    memcpy(ts->order, ts->perm, sizeof(int64_t) * (size_t)ts->n_train);
    rng_shuffle(&ts->shuffle, ts->order, ts->n_train);
    ts->first_step = st->epoch_step;
    if (st->epoch_step == 0) st->loss_sum = st->train_s = 0;
    ts->e0 = util_now();
    ts->last_print = 0;
    for (int64_t at = st->epoch_step * batch; at < ts->n_train && st->step < ts->total_steps && !st->finished;
         at = st->epoch_step * batch) {
        Batch b = {.idx = ts->order + at, .rows = ts->n_train - at < batch ? ts->n_train - at : batch, .step = st->step + 1};
        train_step_scalars(ts->m, ts->s.exec, b.step, ts->steps_per_epoch, ts->total_steps, &ts->lr_used, ts->param_used);
        StepResult r;
        int rc = ts->step(ts, &b, &r);
        if (rc) return rc;
        st->loss_sum += r.loss * (double)b.rows;
        if (ts->step_log) fprintf(ts->step_log, "%lld %.9g\n", (long long)b.step, (double)r.loss);
        st->step = b.step;
        st->epoch_step++;
        ts->samples_trained += b.rows;
        if ((rc = run_hooks(ts, AFTER_STEP))) return rc;
    }
    ts->epoch_s = util_now() - ts->e0;
    ts->train_time += ts->epoch_s;
    int rc = run_hooks(ts, END_OF_EPOCH);
    if (rc == 0) next_epoch(st, &ts->shuffle);
    return rc;
}

/* A post-training head (`head bayes_linear`): fitted on the training samples (not the
 * validation ones) with the trained network's features, measured on the validation and test
 * splits, reported, and saved in the checkpoint beside the weights. */
static int fit_head(TrainSession *ts) {
    const HeadSpec *hs = &ts->m->head;
    Exec *e = ts->s.exec;
    char err[512];
    double t0 = util_now();
    BlrStats stats;
    BayesLinear *h = util_calloc(1, sizeof *h);
    int rc = blr_collect(e, ts->m, &ts->data.train, ts->perm, ts->n_train, &stats);
    if (rc == 0 && blr_fit(h, &stats, hs->alpha, hs->beta, hs->alpha_evidence, hs->beta_evidence, err, sizeof err)) {
        fprintf(ts->cfg->diag->out, "nnc: error: fitting the head bayes_linear(%s): %s\n", hs->features_name, err);
        rc = 1;
    } else if (rc) {
        fprintf(ts->cfg->diag->out, "nnc: error: %s: %s\n", e->dev->name, e->dev->err);
    }
    blr_stats_free(&stats);
    if (rc) {
        blr_free(h);
        free(h);
        return 1;
    }
    e->head = h;
    double fit_s = util_now() - t0;
    FILE *out = ts->out;
    fprintf(out, "head bayes_linear(%s): %lld features and a bias, fitted on %lld samples in %.3f s: alpha %.6g, beta %.6g%s, "
            "log evidence %.6g\n", hs->features_name, (long long)h->P - 1, (long long)h->n, fit_s, h->alpha, h->beta,
            h->iterations ? " (by the evidence)" : "", h->log_evidence);
    cJSON *line = line_begin(ts->st.epoch - 1, ts->st.step, NULL);
    cJSON_AddStringToObject(line, "event", "head");
    cJSON_AddNumberToObject(line, "alpha", h->alpha);
    cJSON_AddNumberToObject(line, "beta", h->beta);
    cJSON_AddNumberToObject(line, "log_evidence", h->log_evidence);
    cJSON_AddNumberToObject(line, "evidence_iterations", h->iterations);
    struct { const char *name; const Dataset *d; const int64_t *idx; int64_t n; } split[3] = {
        {"train", &ts->data.train, ts->perm, ts->n_train},
        {"valid", &ts->data.train, ts->perm + ts->n_train, ts->n_valid},
        {"test", &ts->data.test, ts->test_idx, ts->data.has_test ? ts->data.test.n : 0}};
    for (int k = 0; k < 3 && rc == 0; k++) {
        if (split[k].n == 0) continue;
        double rmse, nll;
        rc = blr_evaluate(e, ts->m, h, split[k].d, split[k].idx, split[k].n, &rmse, &nll);
        if (rc) break;
        fprintf(out, "  %s  head rmse %.6g  nll %.6g\n", split[k].name, rmse, nll);
        char key[64];
        snprintf(key, sizeof key, "%s_rmse", split[k].name);
        cJSON_AddNumberToObject(line, key, rmse);
        snprintf(key, sizeof key, "%s_nll", split[k].name);
        cJSON_AddNumberToObject(line, key, nll);
    }
    cJSON_AddNumberToObject(line, "fit_s", fit_s);
    line_end(ts->metrics, &ts->tb, line);
    if (rc) fprintf(ts->cfg->diag->out, "nnc: error: %s: %s\n", e->dev->name, e->dev->err);
    if (rc == 0) rc = save_checkpoint(ts->cfg, &ts->s, &ts->st);
    e->head = NULL; /* (the checkpoint has it; eval and predict load it from there) */
    blr_free(h);
    free(h);
    return rc ? 1 : 0;
}

/* Every rank ends with the weights and optimiser state of rank 0 (each step's sum is the same
 * on every rank): checked by a hash of the persistent part of the arena. */
static int check_same_weights(TrainSession *ts) {
    Exec *e = ts->s.exec;
    const Plan *p = ts->s.plan;
    char *v = util_calloc((size_t)p->persistent_bytes + 1, 1);
    e->dev->download(e->dev, v, e->arena, (size_t)p->persistent_bytes);
    for (int i = 0; i < p->nbuf; i++) /* the inputs hold each rank's own last batch */
        if (p->buf[i].kind == BUF_INPUT) memset(v + p->buf[i].offset, 0, (size_t)p->buf[i].bytes);
    uint64_t h = util_hash(v, (size_t)p->persistent_bytes, 0), h0 = h;
    free(v);
    if (dist_bcast(&h0, sizeof h0, 0, "the weights' check")) return 1;
    int bad = dist_first_failed(h == h0, "the weights' check");
    if (bad >= 0 && dist.rank == 0)
        fprintf(stderr, "nnc: error: rank %d ended training with other weights than rank 0's (an nnc bug: please report it)\n", bad);
    return bad >= 0;
}

/* The memory account and result.json (after a successful run), and everything freed. */
static int train_end(TrainSession *ts, int rc) {
    const TrainConfig *cfg = ts->cfg;
    TrainResult *res = ts->res;
    train_signals_restore(ts->old_sig);
    free(ts->param_used);
    free(ts->widths);
    free(ts->latest.valid.gate);
    free(ts->latest.test.gate);
    res->steps = ts->st.step;
    res->seconds = util_now() - ts->t0;
    if (rc == 0) { /* what the memory plan promised against what the process used */
        const ModelData *d = &ts->data;
        double mib = 1 << 20, data_bytes = (double)(data_bytes_held(&d->train) + data_bytes_held(&d->test));
        double expected = (double)ts->arena_peak + data_bytes + (double)ts->baseline_rss;
        double peak = (double)util_peak_rss_bytes();
        res->peak_rss = peak;
        res->expected_rss = expected;
        fprintf(ts->out, "memory: peak RSS %.0f MiB = %.2f x (plan %.1f MiB + data %.1f MiB + runtime baseline %.1f MiB)\n",
                peak / mib, peak / expected, (double)ts->arena_peak / mib, data_bytes / mib, (double)ts->baseline_rss / mib);
    }
    res->samples_per_s = ts->train_time > 0 ? (double)ts->samples_trained / ts->train_time : 0;
    if (rc == 0 && dist.size > 1) rc = check_same_weights(ts);
    if (rc == 0 && ts->parts > 1 && ts->step_s > 0)
        fprintf(ts->out, "%s: %.2f s of the steps' %.2f s (%.1f %%) waiting for the gradient's %s (%.2f MiB a step%s)\n",
                dist.size > 1 ? "data parallel" : "deterministic reduce", ts->reduce_s, ts->step_s, 100 * ts->reduce_s / ts->step_s,
                ts->cfg->shards ? "gathers and ordered sums" : "all-reduce",
                (double)ts->block_floats * sizeof(float) * (ts->cfg->shards ? (double)ts->parts : 1.0) / (1 << 20),
                ts->nbucket > 1 ? ", in buckets summed during the backward pass" : "");
    free(ts->block);
    free(ts->slot);
    free(ts->slot_all);
    free(ts->record);
    free(ts->bucket);
    nccl_close(ts->nccl);
    if (ts->step_log) fclose(ts->step_log);
    if (ts->metrics) fclose(ts->metrics);
    tensorboard_close(&ts->tb);
    if (rc == 0) write_results(cfg);
    if (ts->pre) {
        precond_close(ts->pre);
        free(ts->pre);
    }
    free(ts->pre_idx);
    free(ts->train_eval_idx);
    free(ts->order);
    free(ts->perm);
    free(ts->test_idx);
    train_free_data(&ts->data);
    return rc;
}

int train_run(const TrainConfig *cfg, TrainResult *res) {
    const TrainState *resume = cfg->resume;
    const TrainSpec *t = &cfg->model->train;
    memset(res, 0, sizeof *res);
    /* complete: past the last epoch's evaluation (a checkpoint between the last step and it
     * still has that epoch to finish) */
    bool spent = t->iterations ? resume && resume->step >= t->iterations && resume->epoch_step == 0 : resume && resume->epoch > t->epochs;
    if (resume && (resume->finished || spent)) {
        fprintf(cfg->out ? cfg->out : stdout, "the run in %s is complete (%lld epochs, %lld steps%s); nothing to resume\n",
                cfg->out_dir, (long long)resume->epoch - 1, (long long)resume->step,
                resume->finished ? ", ended by its stopping rule" : "");
        write_results(cfg);
        return 0;
    }
    if (cfg->model->train.sampler.kind != SAMPLER_NONE) return sample_run(cfg, res);
    TrainSession ts;
    int rc = train_open(&ts, cfg, res);
    int bad = dist.size > 1 ? dist_first_failed(rc == 0, "loading the data") : -1;
    if (bad >= 0 && rc == 0) { /* another rank could not: none trains */
        if (dist.rank == 0)
            fprintf(stderr, "nnc: error: rank %d cannot load its data (its message says why); no rank trains\n", bad);
        if (ts.metrics) fclose(ts.metrics);
        train_free_data(&ts.data);
        rc = 1;
    }
    if (rc) return 1;
    rc = train_begin(&ts);
    if (rc == 0 && t->eval_initial && ts.st.step == 0 && ts.st.epoch == 1 && ts.st.epoch_step == 0) {
        fprintf(ts.out, "epoch 0/%lld  before training", (long long)ts.epochs); /* DeepOBS's epoch 0 */
        eval_splits(&ts, 0);
        fputc('\n', ts.out);
    }
    while (rc == 0 && !ts.st.finished && ts.st.epoch <= ts.epochs) rc = train_epoch(&ts);
    if (rc == 0 && ts.m->head.on) rc = fit_head(&ts);
    return train_end(&ts, rc);
}

/* ---- a trained model: evaluation and prediction ---- */

int train_eval(const TrainConfig *cfg) {
    const Model *m = cfg->model;
    const TrainSpec *t = &m->train;
    FILE *out = cfg->out ? cfg->out : stdout;
    char err[1024];
    ModelData data;
    if (train_load_data(m, cfg->exec->g, &data, err, sizeof err)) {
        fprintf(cfg->diag->out, "nnc: error: %s\n", err);
        return 1;
    }
    Session s;
    session_open(&s, cfg);
    int64_t n_all = data.train.n, n_valid, *perm = train_split_order(t, n_all, &n_valid), *test_idx = train_iota(data.test.n);
    if (n_all > n_valid) exec_set_scalars(s.exec, SC_DATA_INV_N, 1.0 / (double)(n_all - n_valid));
    Eval valid = {.gate = util_calloc((size_t)s.g->ngate + 1, sizeof(GateStat))};
    Eval test = {.gate = util_calloc((size_t)s.g->ngate + 1, sizeof(GateStat))};
    int rc = 0;
    fprintf(out, "evaluating %s", m->name);
    if (n_valid > 0) {
        if (evaluate(&s, &data.train, perm + n_all - n_valid, n_valid, &valid)) rc = 1;
        print_eval(out, s.g, "valid", &valid);
    }
    if (rc == 0 && data.has_test) {
        if (evaluate(&s, &data.test, test_idx, data.test.n, &test)) rc = 1;
        print_eval(out, s.g, "test", &test);
    }
    fputc('\n', out);
    if (rc) fprintf(cfg->diag->out, "nnc: error: %s: %s\n", s.exec->dev->name, s.exec->dev->err);
    else if (n_valid > 0 || data.has_test)
        print_gates(out, s.g, n_valid > 0 ? &valid : &test, n_valid > 0 ? "valid" : "test");
    if (rc == 0 && n_valid == 0 && !data.has_test) fprintf(out, "nothing to evaluate: the model has no validation or test data\n");
    if (rc == 0 && m->head.on && !s.exec->head)
        fprintf(out, "head bayes_linear(%s): not fitted in this checkpoint (it is fitted after the last epoch)\n", m->head.features_name);
    if (rc == 0 && s.exec->head) { /* the head's predictions on the splits; on the training part too, where it was fitted */
        struct { const char *name; const Dataset *d; const int64_t *idx; int64_t n; } split[3] = {
            {"train", &data.train, perm, n_all - n_valid}, {"valid", &data.train, perm + n_all - n_valid, n_valid},
            {"test", &data.test, test_idx, data.has_test ? data.test.n : 0}};
        fprintf(out, "head bayes_linear(%s), alpha %.6g, beta %.6g:", m->head.features_name, s.exec->head->alpha, s.exec->head->beta);
        for (int k = 0; k < 3 && rc == 0; k++) {
            double rmse, nll;
            if (split[k].n == 0) continue;
            rc = blr_evaluate(s.exec, m, s.exec->head, split[k].d, split[k].idx, split[k].n, &rmse, &nll);
            if (rc == 0) fprintf(out, "  %s rmse %.6g nll %.6g", split[k].name, rmse, nll);
        }
        fputc('\n', out);
        if (rc) fprintf(cfg->diag->out, "nnc: error: %s: %s\n", s.exec->dev->name, s.exec->dev->err);
    }
    free(valid.gate);
    free(test.gate);
    free(perm);
    free(test_idx);
    train_free_data(&data);
    return rc;
}

float *train_predict(const TrainConfig *cfg, const Dataset *in, int64_t *ncols) {
    Session s;
    session_open(&s, cfg); /* no targets: the target buffers get zeros */
    const Graph *g = s.g;
    int64_t cols = 0, most = 0; /* every head's prediction, side by side in each row */
    for (int o = 0; o < g->noutput; o++) {
        if (g->output[o].agg != AGG_PREDICT) continue;
        int64_t c = shape_numel(g->node[g->output[o].node].shape);
        cols += c;
        most = c > most ? c : most;
    }
    NNC_ASSERT(cols > 0); /* sema requires a loss function, whose first argument is a prediction */
    float *y = util_calloc((size_t)(in->n * cols) + 1, sizeof(float)), *head = util_calloc((size_t)(s.batch * most) + 1, sizeof(float));
    int64_t *idx = util_calloc((size_t)s.batch, sizeof(int64_t));
    int rc = 0;
    for (int64_t at = 0; at < in->n && rc == 0; at += s.batch) {
        int64_t rows = in->n - at < s.batch ? in->n - at : s.batch, from = 0;
        for (int64_t k = 0; k < rows; k++) idx[k] = at + k;
        load_batch(&s, in, idx, rows);
        rc = exec_run(s.exec, PROG_EVAL, rows);
        for (int o = 0; o < g->noutput && rc == 0; o++) {
            if (g->output[o].agg != AGG_PREDICT) continue;
            int64_t c = shape_numel(g->node[g->output[o].node].shape);
            rc = exec_read(s.exec, g->output[o].node, head, sizeof(float) * (size_t)(rows * c));
            for (int64_t r = 0; r < rows; r++) memcpy(y + (at + r) * cols + from, head + r * c, sizeof(float) * (size_t)c);
            from += c;
        }
        if (rc) fprintf(cfg->diag->out, "nnc: error: %s: %s\n", s.exec->dev->name, s.exec->dev->err);
    }
    free(idx);
    free(head);
    if (rc) {
        free(y);
        return NULL;
    }
    *ncols = cols;
    return y;
}
