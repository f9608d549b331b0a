/* checkpoint.c: training state to and from safetensors files (see checkpoint.h).  Numbers
 * that must come back exactly (the shuffle state, the partial loss, the patience bests) are
 * written as hexadecimal text (%a for doubles), so a resumed run continues bit for bit; the
 * one timing value (a partial epoch's training time) is decimal and only in mid-epoch ones. */
#include "checkpoint.h"

#include "bayes_linear.h"

#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Parameters and optimiser state; not a scratch state (a Hessian-vector product's direction). */
static bool stored(const Plan *p, const Buffer *b) {
    return b->kind == BUF_WEIGHT || (b->kind == BUF_STATE && !p->g->weight[b->weight].scratch);
}

/* ---- writing ---- */

static void *doubles(const double *v, int64_t n) {
    double *c = util_calloc((size_t)n + 1, sizeof(double));
    memcpy(c, v, sizeof(double) * (size_t)n);
    return c;
}

int checkpoint_write(const char *path, const Exec *e, const TrainState *s, const RunIdentity *id, char *err,
                     size_t nerr) {
    const Plan *p = e->plan;
    const Graph *g = e->g;
    StTensor *t = util_calloc((size_t)p->nbuf + 3, sizeof(StTensor));
    int n = 0;
    for (int i = 0; i < p->nbuf; i++) {
        const Buffer *b = &p->buf[i];
        if (!stored(p, b)) continue;
        const Weight *w = &g->weight[b->weight];
        StTensor *x = &t[n++];
        x->name = b->name;
        x->dtype = ST_F32;
        x->rank = w->shape.rank;
        for (int d = 0; d < w->shape.rank; d++) x->shape[d] = w->shape.dim[d];
        x->bytes = sizeof(float) * (size_t)b->elems;
        void *data = util_calloc((size_t)b->elems + 1, sizeof(float));
        exec_read(e, b->node, data, x->bytes);
        x->data = data;
    }
    /* a fitted post-training head: its posterior mean and Cholesky factor, in double */
    const BayesLinear *h = e->head;
    char head[256] = "";
    if (h) {
        t[n++] = (StTensor){.name = "head.mean", .dtype = ST_F64, .rank = 2, .shape = {h->P, h->T},
                            .data = doubles(h->mean, h->P * h->T), .bytes = sizeof(double) * (size_t)(h->P * h->T)};
        t[n++] = (StTensor){.name = "head.chol", .dtype = ST_F64, .rank = 2, .shape = {h->P, h->P},
                            .data = doubles(h->chol, h->P * h->P), .bytes = sizeof(double) * (size_t)(h->P * h->P)};
        snprintf(head, sizeof head, "%a %a %a %lld %d", h->alpha, h->beta, h->log_evidence, (long long)h->n, h->iterations);
    }
    /* the metadata, as strings */
    char epoch[32], epoch_step[32], step[32], shuffle[80], loss[64], train_s[64], finished[8], minimum[CKPT_MAX_GATES + 1];
    snprintf(epoch, sizeof epoch, "%" PRId64, s->epoch);
    snprintf(epoch_step, sizeof epoch_step, "%" PRId64, s->epoch_step);
    snprintf(step, sizeof step, "%" PRId64, s->step);
    snprintf(shuffle, sizeof shuffle, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, s->shuffle[0], s->shuffle[1],
             s->shuffle[2], s->shuffle[3]);
    snprintf(loss, sizeof loss, "%a", s->loss_sum);
    snprintf(train_s, sizeof train_s, "%.6f", s->train_s);
    snprintf(finished, sizeof finished, "%s", s->finished ? "true" : "false");
    int ng = g->ngate < CKPT_MAX_GATES ? g->ngate : CKPT_MAX_GATES;
    for (int i = 0; i < ng; i++) minimum[i] = s->reported_min[i] ? '1' : '0';
    minimum[ng] = 0;
    StrBuf stop = {0};
    for (int i = 0; i < 16; i++) sb_printf(&stop, "%s%a/%d", i ? " " : "", s->stop.best[i], s->stop.since[i]);
    cJSON *wj = cJSON_CreateObject();
    for (int i = 0; i < g->nspace; i++) cJSON_AddNumberToObject(wj, g->space[i].layer, (double)g->space[i].width);
    char *wtext = cJSON_PrintUnformatted(wj);
    cJSON_Delete(wj);
    const char *keys[16] = {"format", "nnc", "model", "model_hash", "settings", "epoch", "epoch_step", "step",
                            "shuffle", "loss_sum", "stop", "finished", "min_width_reported", "widths"};
    const char *vals[16] = {"nnc-checkpoint-1", NNC_VERSION, id->model, id->hash, id->settings, epoch, epoch_step, step,
                            shuffle, loss, sb_str(&stop), finished, minimum, wtext};
    int nkeys = 14;
    if (s->epoch_step > 0) keys[nkeys] = "epoch_train_s", vals[nkeys++] = train_s; /* a time only mid-epoch */
    if (h) keys[nkeys] = "head", vals[nkeys++] = head; /* alpha beta log_evidence n iterations */
    if (s->pre[0]) keys[nkeys] = "pre_sgd", vals[nkeys++] = s->pre; /* alpha prior_w noise estimates lambda.. */
    int rc = st_write_atomic(path, t, n, keys, vals, nkeys, err, nerr);
    for (int i = 0; i < n; i++) free((void *)t[i].data);
    free(t);
    free(wtext);
    sb_free(&stop);
    return rc;
}

/* ---- reading ---- */

static const char *need_meta(const Checkpoint *c, const char *path, const char *key, char *err, size_t nerr) {
    const char *v = st_meta(c->st, key);
    if (!v) util_fail(err, nerr, "%s: not an nnc checkpoint: its metadata has no '%s'", path, key);
    return v;
}

static int parse_int(const char *path, const char *key, const char *v, int64_t *out, char *err, size_t nerr) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v || x < 0) return util_fail(err, nerr, "%s: metadata '%s' is '%s', not a count", path, key, v);
    *out = x;
    return 0;
}

static int parse_double(const char *path, const char *key, const char *v, double *out, char *err, size_t nerr) {
    char *end;
    *out = strtod(v, &end);
    if (*end || end == v) return util_fail(err, nerr, "%s: metadata '%s' is '%s', not a number", path, key, v);
    return 0;
}

bool checkpoint_hash_matches(const RunIdentity *id, const char *hash) {
    return !strcmp(hash, id->hash) || (id->text_hash && !strcmp(hash, id->text_hash));
}

int checkpoint_open(const char *path, const RunIdentity *expect, Checkpoint *c, char *err, size_t nerr) {
    memset(c, 0, sizeof *c);
    c->st = st_open(path, err, nerr);
    if (!c->st) return -1;
    const char *format = need_meta(c, path, "format", err, nerr);
    if (!format) goto bad;
    if (strcmp(format, "nnc-checkpoint-1")) {
        util_fail(err, nerr, "%s: checkpoint format '%s' is not one this nnc reads (nnc-checkpoint-1)", path, format);
        goto bad;
    }
    const char *model = need_meta(c, path, "model", err, nerr), *hash = need_meta(c, path, "model_hash", err, nerr);
    const char *settings = need_meta(c, path, "settings", err, nerr);
    if (!model || !hash || !settings) goto bad;
    if (expect && strcmp(model, expect->model)) {
        util_fail(err, nerr, "%s is a checkpoint of model '%s', not '%s'", path, model, expect->model);
        goto bad;
    }
    if (expect && !checkpoint_hash_matches(expect, hash)) {
        util_fail(err, nerr, "%s was written by another version of model '%s' (source hash %s, this one %s)", path, model, hash,
             expect->hash);
        goto bad;
    }
    if (expect && expect->settings && strcmp(settings, expect->settings)) {
        util_fail(err, nerr, "%s was written with --set %s, this run has --set %s; resume with the same settings", path,
             settings[0] ? settings : "(none)", expect->settings[0] ? expect->settings : "(none)");
        goto bad;
    }
    TrainState *s = &c->state;
    const char *v;
    if (!(v = need_meta(c, path, "epoch", err, nerr)) || parse_int(path, "epoch", v, &s->epoch, err, nerr)) goto bad;
    if (!(v = need_meta(c, path, "epoch_step", err, nerr)) || parse_int(path, "epoch_step", v, &s->epoch_step, err, nerr))
        goto bad;
    if (!(v = need_meta(c, path, "step", err, nerr)) || parse_int(path, "step", v, &s->step, err, nerr)) goto bad;
    if (!(v = need_meta(c, path, "shuffle", err, nerr))) goto bad;
    if (strlen(v) != 64) {
        util_fail(err, nerr, "%s: metadata 'shuffle' must be 64 hexadecimal digits", path);
        goto bad;
    }
    for (int i = 0; i < 4; i++) {
        char part[17];
        memcpy(part, v + 16 * i, 16);
        part[16] = 0;
        char *end;
        s->shuffle[i] = strtoull(part, &end, 16);
        if (*end) {
            util_fail(err, nerr, "%s: metadata 'shuffle' must be 64 hexadecimal digits", path);
            goto bad;
        }
    }
    if (!(v = need_meta(c, path, "loss_sum", err, nerr)) || parse_double(path, "loss_sum", v, &s->loss_sum, err, nerr))
        goto bad;
    if ((v = st_meta(c->st, "epoch_train_s")) && parse_double(path, "epoch_train_s", v, &s->train_s, err, nerr))
        goto bad; /* optional: only checkpoints taken mid-epoch have it */
    if (!(v = need_meta(c, path, "stop", err, nerr))) goto bad;
    {
        const char *q = v;
        for (int i = 0; i < 16; i++) {
            char *end;
            s->stop.best[i] = strtod(q, &end);
            if (end == q || *end != '/') {
                util_fail(err, nerr, "%s: metadata 'stop' is malformed", path);
                goto bad;
            }
            s->stop.since[i] = (int)strtol(end + 1, &end, 10);
            q = end;
        }
    }
    if ((v = st_meta(c->st, "pre_sgd"))) snprintf(s->pre, sizeof s->pre, "%s", v); /* optional: pre_sgd's estimate */
    if (!(v = need_meta(c, path, "finished", err, nerr))) goto bad;
    s->finished = !strcmp(v, "true");
    if (!(v = need_meta(c, path, "min_width_reported", err, nerr))) goto bad;
    for (int i = 0; v[i] && i < CKPT_MAX_GATES; i++) s->reported_min[i] = v[i] == '1';
    if (!(v = need_meta(c, path, "widths", err, nerr))) goto bad;
    cJSON *wj = cJSON_Parse(v);
    if (!cJSON_IsObject(wj)) {
        cJSON_Delete(wj);
        util_fail(err, nerr, "%s: metadata 'widths' is not a JSON object", path);
        goto bad;
    }
    for (cJSON *it = wj->child; it && c->nwidth < 64; it = it->next) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble != floor(it->valuedouble)) {
            util_fail(err, nerr, "%s: metadata 'widths': '%s' is not a width", path, it->string); /* (before the delete) */
            cJSON_Delete(wj);
            goto bad;
        }
        snprintf(c->layer[c->nwidth], sizeof c->layer[c->nwidth], "%s", it->string);
        c->width[c->nwidth] = (WidthOverride){c->layer[c->nwidth], (int64_t)it->valuedouble};
        c->nwidth++;
    }
    cJSON_Delete(wj);
    if (s->epoch < 1) {
        util_fail(err, nerr, "%s: metadata 'epoch' must be at least 1", path);
        goto bad;
    }
    return 0;
bad:
    checkpoint_close(c);
    return -1;
}

/* The tensor for buffer b as float32 of the buffer's weight shape, or a reason. */
static const StTensor *matching(const SafeTensors *st, const Exec *e, const Buffer *b, const char *path, char *err,
                                size_t nerr) {
    const StTensor *t = st_find(st, b->name);
    if (!t) {
        util_fail(err, nerr, "%s has no tensor '%s'", path, b->name);
        return NULL;
    }
    const Shape *s = &e->g->weight[b->weight].shape;
    bool same = t->rank == s->rank;
    for (int d = 0; same && d < s->rank; d++) same = t->shape[d] == s->dim[d];
    if (!same) {
        char want[96], got[96];
        size_t k = 0;
        k += (size_t)snprintf(want, sizeof want, "[");
        for (int d = 0; d < s->rank; d++) k += (size_t)snprintf(want + k, sizeof want - k, "%s%lld", d ? "," : "", (long long)s->dim[d]);
        snprintf(want + k, sizeof want - k, "]");
        k = (size_t)snprintf(got, sizeof got, "[");
        for (int d = 0; d < t->rank && k < sizeof got; d++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        if (k < sizeof got) snprintf(got + k, sizeof got - k, "]");
        util_fail(err, nerr, "%s: tensor '%s' is %s, but the model's is %s", path, b->name, got, want);
        return NULL;
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F64) {
        util_fail(err, nerr, "%s: tensor '%s' is %s; weights must be F32 (or F64)", path, b->name, st_dtype_name(t->dtype));
        return NULL;
    }
    return t;
}

/* Copies t (F32 or F64, possibly unaligned) into buffer b. */
static void upload(Exec *e, const Buffer *b, const StTensor *t) {
    float *v = util_calloc((size_t)b->elems + 1, sizeof(float));
    const unsigned char *src = t->data;
    for (int64_t i = 0; i < b->elems; i++) {
        if (t->dtype == ST_F32) {
            memcpy(&v[i], src + 4 * i, 4);
        } else {
            double d;
            memcpy(&d, src + 8 * i, 8);
            v[i] = (float)d;
        }
    }
    exec_write(e, b->node, v, sizeof(float) * (size_t)b->elems);
    free(v);
}

int checkpoint_load(const Checkpoint *c, Exec *e, bool params_only, char *err, size_t nerr) {
    const Plan *p = e->plan;
    for (int i = 0; i < p->nbuf; i++) {
        const Buffer *b = &p->buf[i];
        if (!stored(p, b) || (params_only && b->kind != BUF_WEIGHT)) continue;
        const StTensor *t = matching(c->st, e, b, "the checkpoint", err, nerr);
        if (!t) return -1;
        if (t->dtype != ST_F32) return util_fail(err, nerr, "the checkpoint: tensor '%s' is not F32", b->name);
        upload(e, b, t);
    }
    return 0;
}

int checkpoint_load_head(const Checkpoint *c, const char *path, BayesLinear *h, char *err, size_t nerr) {
    const char *meta = st_meta(c->st, "head");
    const StTensor *mean = st_find(c->st, "head.mean"), *chol = st_find(c->st, "head.chol");
    if (!meta && !mean && !chol) return 0;
    memset(h, 0, sizeof *h);
    long long n = 0;
    if (!meta || !mean || !chol || sscanf(meta, "%la %la %la %lld %d", &h->alpha, &h->beta, &h->log_evidence, &n, &h->iterations) != 5)
        return util_fail(err, nerr, "%s: its head is incomplete: it needs head.mean, head.chol and the metadata 'head'", path);
    h->n = n;
    h->P = chol->rank == 2 ? chol->shape[0] : 0;
    h->T = mean->rank == 2 ? mean->shape[1] : 0;
    if (mean->dtype != ST_F64 || chol->dtype != ST_F64 || h->P < 1 || chol->shape[1] != h->P || mean->shape[0] != h->P ||
        h->T < 1 || !(h->alpha > 0) || !(h->beta > 0))
        return util_fail(err, nerr, "%s: head.mean must be F64 [P, T] and head.chol F64 [P, P], with positive alpha and beta", path);
    h->mean = util_calloc((size_t)(h->P * h->T), sizeof(double));
    h->chol = util_calloc((size_t)(h->P * h->P), sizeof(double));
    memcpy(h->mean, mean->data, mean->bytes);
    memcpy(h->chol, chol->data, chol->bytes);
    return 1;
}

void checkpoint_close(Checkpoint *c) {
    st_close(c->st);
    c->st = NULL;
}

int weights_load(const char *path, Exec *e, FILE *report) {
    char err[1024];
    SafeTensors *st = st_open(path, err, sizeof err);
    if (!st) {
        fprintf(report, "nnc: error: %s\n", err);
        return -1;
    }
    const Plan *p = e->plan;
    int problems = 0, loaded = 0;
    for (int i = 0; i < p->nbuf; i++) { /* check everything before changing anything */
        const Buffer *b = &p->buf[i];
        if (b->kind == BUF_WEIGHT && !matching(st, e, b, path, err, sizeof err)) {
            fprintf(report, "nnc: error: %s\n", err);
            problems++;
        }
    }
    for (int i = 0; i < st_count(st); i++) { /* tensors the model does not have */
        const StTensor *t = st_get(st, i);
        bool known = !strncmp(t->name, "head.", 5); /* a fitted head: not a weight, refitted after training */
        for (int k = 0; k < p->nbuf && !known; k++) known = stored(p, &p->buf[k]) && !strcmp(p->buf[k].name, t->name);
        if (!known) {
            fprintf(report, "nnc: error: %s: tensor '%s' is not a weight of this model\n", path, t->name);
            problems++;
        }
    }
    if (problems) {
        fprintf(report, "nnc: error: %s: %d mismatch%s with the model; no weights loaded from it\n", path, problems,
                problems > 1 ? "es" : "");
        st_close(st);
        return -1;
    }
    for (int i = 0; i < p->nbuf; i++) {
        const Buffer *b = &p->buf[i];
        if (b->kind != BUF_WEIGHT) continue;
        upload(e, b, matching(st, e, b, path, err, sizeof err));
        loaded++;
    }
    st_close(st);
    printf("initial weights: %d tensors from %s\n", loaded, path);
    return 0;
}
