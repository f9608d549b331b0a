/* posterior.c: the posterior predictive over a sampling run's draws (see posterior.h).
 *
 * Predictions are held for a chunk of samples at every draw at once (at most CHUNK_VALUES
 * floats), so that the quantiles are exact order statistics whatever the number of samples;
 * the weights of each draw are written to the device once per chunk.  Quantiles interpolate
 * linearly between order statistics (NumPy's default), the standard deviation divides by
 * S - 1.  The predictive NLL needs p(y | x, w_s) per sample and draw, for a batch at a time:
 * the eval program's nll_rows output (gaussian_nll), or a classifier's log softmax at the label;
 * its log-mean-exp over the draws is kept running per sample. */
#include "posterior.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { CHUNK_VALUES = 1 << 24 };

void draws_layout(const Graph *g, Draws *d) {
    memset(d, 0, sizeof *d);
    d->g = g;
    d->weight = util_calloc((size_t)g->nweight + 1, sizeof(int));
    d->n = util_calloc((size_t)g->nweight + 1, sizeof(int64_t));
    d->off = util_calloc((size_t)g->nweight + 1, sizeof(int64_t));
    for (int wi = 0; wi < g->nweight; wi++) {
        const Weight *w = &g->weight[wi];
        if (w->kind != W_PARAM || w->grad < 0) continue;
        d->weight[d->npar] = wi;
        d->n[d->npar] = shape_numel(w->shape);
        d->off[d->npar] = d->dim;
        d->dim += d->n[d->npar++];
    }
}

void draws_free(Draws *d) {
    if (d->owned)
        for (int c = 0; c < d->nchain; c++) free(d->q[c]);
    free(d->weight);
    free(d->n);
    free(d->off);
    memset(d, 0, sizeof *d);
}

/* One chain's file into d->q[d->nchain]. */
static int load_chain(const char *path, const RunIdentity *id, Draws *d, char *err, size_t nerr) {
    const Graph *g = d->g;
    SafeTensors *st = st_open(path, err, nerr);
    if (!st) return -1;
    const char *model = st_meta(st, "model"), *hash = st_meta(st, "model_hash");
    int rc = 0;
    int64_t kept = -1;
    if (!model || !hash)
        rc = util_fail(err, nerr, "%s has no model name and source hash in its metadata: it is not a draws file of nnc's sampler", path);
    else if (strcmp(model, id->model))
        rc = util_fail(err, nerr, "%s holds draws of model '%s', not '%s'", path, model, id->model);
    else if (!checkpoint_hash_matches(id, hash))
        rc = util_fail(err, nerr, "%s was written by another version of model '%s' (source hash %s, this one %s)", path, model,
                       hash, id->hash);
    for (int p = 0; p < d->npar && rc == 0; p++) {
        const Weight *w = &g->weight[d->weight[p]];
        const StTensor *t = st_find(st, w->name);
        char want[128];
        shape_str(want, sizeof want, DT_F32, w->shape);
        if (!t) {
            rc = util_fail(err, nerr, "%s: no tensor '%s' (the draws of a trained weight, f32[draws,%s)", path, w->name, want + 4);
            break;
        }
        bool ok = t->dtype == ST_F32 && t->rank == w->shape.rank + 1 && (kept < 0 || t->shape[0] == kept);
        for (int k = 0; ok && k < w->shape.rank; k++) ok = t->shape[k + 1] == w->shape.dim[k];
        if (!ok) {
            rc = util_fail(err, nerr, "%s: tensor '%s' is not f32[draws,%s%s", path, w->name, want + 4,
                           kept >= 0 ? " with as many draws as the tensors before it" : "");
            break;
        }
        if (kept < 0) {
            kept = t->shape[0];
            if (kept == 0) {
                rc = util_fail(err, nerr, "%s holds no draws", path);
                break;
            }
            d->q[d->nchain] = util_calloc((size_t)(kept * d->dim), sizeof(float));
        }
        const char *src = t->data; /* not necessarily aligned: copied by memcpy */
        for (int64_t k = 0; k < kept; k++)
            memcpy(d->q[d->nchain] + k * d->dim + d->off[p], src + sizeof(float) * (size_t)(k * d->n[p]),
                   sizeof(float) * (size_t)d->n[p]);
    }
    if (rc == 0 && kept < 0) rc = util_fail(err, nerr, "%s: the model has no trained weights", path);
    if (rc == 0) {
        d->kept[d->nchain++] = kept;
        d->ndraw += kept;
    } else if (kept > 0) {
        free(d->q[d->nchain]);
        d->q[d->nchain] = NULL;
    }
    st_close(st);
    return rc;
}

int draws_load(const char *path, const Graph *g, const RunIdentity *id, Draws *d, char *err, size_t nerr) {
    draws_layout(g, d);
    d->owned = true;
    struct stat sb;
    if (stat(path, &sb)) return util_fail(err, nerr, "cannot read %s: %s", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return load_chain(path, id, d, err, nerr);
    char file[4200];
    for (int c = 0;; c++) {
        snprintf(file, sizeof file, "%s/draws_chain%d.safetensors", path, c + 1);
        if (access(file, F_OK)) break;
        if (c == DRAWS_MAX_CHAINS) return util_fail(err, nerr, "%s: more than %d chains", path, DRAWS_MAX_CHAINS);
        if (load_chain(file, id, d, err, nerr)) return -1;
    }
    if (d->nchain == 0)
        return util_fail(err, nerr, "%s holds no draws_chain1.safetensors: give the output directory of a sampling run, or one of "
                         "its draws files", path);
    return 0;
}

/* The data column of the target, the graph input it is (a sampled model has one target). */
static int target_col(const Graph *g) {
    for (int i = 0; i < g->ninput; i++)
        if (g->input[i].is_target) return i;
    return -1;
}

int64_t posterior_cols(const Exec *e) { return shape_numel(e->g->node[ir_prediction(e->g)].shape); }

/* Draw s's weights onto the device. */
static int put_draw(Exec *e, const Draws *d, int64_t s) {
    int c = 0;
    while (s >= d->kept[c]) s -= d->kept[c++];
    const float *q = d->q[c] + s * d->dim;
    for (int p = 0; p < d->npar; p++)
        if (exec_write(e, d->g->weight[d->weight[p]].node, q + d->off[p], sizeof(float) * (size_t)d->n[p])) return -1;
    return 0;
}

static void softmax_rows(float *y, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; i++, y += cols) {
        float top = y[0];
        for (int64_t j = 1; j < cols; j++) top = y[j] > top ? y[j] : top;
        double sum = 0;
        for (int64_t j = 0; j < cols; j++) sum += exp((double)y[j] - top);
        for (int64_t j = 0; j < cols; j++) y[j] = (float)(exp((double)y[j] - top) / sum);
    }
}

/* log softmax(y)[k] of one row of cols logits, in double. */
static double log_softmax_at(const float *y, int64_t cols, int32_t k) {
    double top = y[0], sum = 0;
    for (int64_t j = 1; j < cols; j++) top = y[j] > top ? y[j] : top;
    for (int64_t j = 0; j < cols; j++) sum += exp((double)y[j] - top);
    return (double)y[k] - top - log(sum);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Quantile p of sorted v[0..n) with linear interpolation between order statistics. */
static double quantile(const float *v, int64_t n, double p) {
    double h = p * (double)(n - 1);
    int64_t lo = (int64_t)floor(h);
    if (lo >= n - 1) return v[n - 1];
    return v[lo] + (h - (double)lo) * ((double)v[lo + 1] - v[lo]);
}

int posterior_predictive(Exec *e, const Draws *d, const Dataset *data, const int64_t *idx, int64_t n, bool softmax,
                         float *stats, double *mean, double *draw_rmse) {
    const Graph *g = e->g;
    int pred = ir_prediction(g), tc = target_col(g);
    int64_t cols = shape_numel(g->node[pred].shape), batch = e->plan->max_batch, S = d->ndraw;
    int64_t chunk = CHUNK_VALUES / (S * cols), held = stats ? S : 1; /* without quantiles, one draw's values at a time */
    chunk -= chunk % batch;
    if (chunk < batch || !stats) chunk = batch;
    if (chunk > n) chunk = n;
    if (mean) memset(mean, 0, sizeof(double) * (size_t)(n * cols));
    float *y = util_calloc((size_t)(held * chunk * cols) + 1, sizeof(float)), *v = util_calloc((size_t)S + 1, sizeof(float));
    float *t = draw_rmse ? util_calloc((size_t)(batch * data->col[tc].width) + 1, sizeof(float)) : NULL;
    double *se = util_calloc((size_t)S + 1, sizeof(double));
    int rc = 0;
    for (int64_t at = 0; at < n && rc == 0; at += chunk) {
        int64_t in_chunk = n - at < chunk ? n - at : chunk;
        for (int64_t s = 0; s < S && rc == 0; s++) {
            rc = put_draw(e, d, s);
            for (int64_t b = 0; b < in_chunk && rc == 0; b += batch) {
                int64_t rows = in_chunk - b < batch ? in_chunk - b : batch;
                float *ys = y + ((stats ? s : 0) * chunk + b) * cols;
                if (t) data_gather(data, tc, idx + at + b, rows, t);
                rc = exec_feed(e, data, idx + at + b, rows) || exec_run(e, PROG_EVAL, rows) ||
                     exec_read(e, pred, ys, sizeof(float) * (size_t)(rows * cols));
                if (rc) break;
                if (softmax) softmax_rows(ys, rows, cols);
                for (int64_t i = 0; mean && i < rows * cols; i++) mean[(at + b) * cols + i] += (double)ys[i] / (double)S;
                if (draw_rmse)
                    for (int64_t i = 0; i < rows * cols; i++) se[s] += ((double)ys[i] - t[i]) * ((double)ys[i] - t[i]);
            }
        }
        for (int64_t i = 0; stats && rc == 0 && i < in_chunk * cols; i++) {
            double sum = 0, ss = 0;
            for (int64_t s = 0; s < S; s++) sum += v[s] = y[s * chunk * cols + i];
            double mu = sum / (double)S;
            for (int64_t s = 0; s < S; s++) ss += ((double)v[s] - mu) * ((double)v[s] - mu);
            qsort(v, (size_t)S, sizeof(float), cmp_float);
            float *o = stats + (at * cols + i) * 4;
            o[0] = (float)mu;
            o[1] = S > 1 ? (float)sqrt(ss / (double)(S - 1)) : 0.0f;
            o[2] = (float)quantile(v, S, 0.05);
            o[3] = (float)quantile(v, S, 0.95);
        }
    }
    for (int64_t s = 0; draw_rmse && s < S; s++) draw_rmse[s] = sqrt(se[s] / (double)(n * cols));
    free(y);
    free(v);
    free(t);
    free(se);
    return rc ? -1 : 0;
}

/* The graph's per-sample nll output (nll_rows, lower.c), or -1 (a classifier's). */
static int nll_rows_node(const Graph *g) {
    for (int o = 0; o < g->noutput; o++)
        if (g->output[o].agg == AGG_ROWS && !strcmp(g->output[o].name, "nll_rows")) return g->output[o].node;
    return -1;
}

/* -mean over the samples of log (1/S sum_s exp(-nll_s)), nll_s the model's nll metric on that
 * one sample at draw s, a batch at a time: from the eval program's nll_rows where the graph has
 * it (gaussian_nll); for a classifier (cross_entropy), minus the log softmax of the prediction
 * at the label, in double; else the `nll` output `node` of the eval program run on each sample
 * alone. */
static int predictive_nll(Exec *e, const Draws *d, const Dataset *data, const int64_t *idx, int64_t n, int node, double *nll) {
    const Graph *g = e->g;
    int tc = target_col(g), rows_node = nll_rows_node(g), pred = ir_prediction(g);
    bool classes = rows_node < 0 && data->col[tc].is_class && pred >= 0;
    int64_t batch = rows_node >= 0 || classes ? e->plan->max_batch : 1, cols = classes ? shape_numel(g->node[pred].shape) : 1;
    float *logits = classes ? util_calloc((size_t)(batch * cols) + 1, sizeof(float)) : NULL;
    float *value = util_calloc((size_t)batch + 1, sizeof(float));
    int32_t *label = util_calloc((size_t)batch + 1, sizeof(int32_t));
    double *top = util_calloc((size_t)n + 1, sizeof(double)), *sum = util_calloc((size_t)n + 1, sizeof(double));
    int rc = 0;
    for (int64_t s = 0; s < d->ndraw && rc == 0; s++) {
        rc = put_draw(e, d, s);
        for (int64_t at = 0; at < n && rc == 0; at += batch) {
            int64_t rows = n - at < batch ? n - at : batch;
            if (classes) data_gather(data, tc, idx + at, rows, label);
            rc = exec_feed(e, data, idx + at, rows) || exec_run(e, PROG_EVAL, rows) ||
                 (classes ? exec_read(e, pred, logits, sizeof(float) * (size_t)(rows * cols))
                          : exec_read(e, rows_node >= 0 ? rows_node : node, value, sizeof(float) * (size_t)rows));
            for (int64_t r = 0; r < rows && rc == 0; r++) {
                int64_t i = at + r;
                double lp = classes ? log_softmax_at(logits + r * cols, cols, label[r])
                                    : -(double)value[r]; /* log p(y_i | x_i, w_s), summed as log-sum-exp */
                if (s == 0 || lp > top[i]) {
                    sum[i] = s == 0 ? 1 : sum[i] * exp(top[i] - lp) + 1;
                    top[i] = lp;
                } else {
                    sum[i] += exp(lp - top[i]);
                }
            }
        }
    }
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += log((double)d->ndraw) - (top[i] + log(sum[i]));
    *nll = total / (double)n;
    free(value);
    free(logits);
    free(label);
    free(top);
    free(sum);
    return rc ? -1 : 0;
}

int posterior_metrics(Exec *e, const Model *m, const Draws *d, const Dataset *data, const int64_t *idx, int64_t n,
                      double *metric) {
    const Graph *g = e->g;
    int64_t cols = posterior_cols(e), batch = e->plan->max_batch;
    double *mean = util_calloc((size_t)(n * cols) + 1, sizeof(double));
    int tc = target_col(g);
    bool classes = data->col[tc].is_class;
    int rc = posterior_predictive(e, d, data, idx, n, classes, NULL, mean, NULL);
    float *t = util_calloc((size_t)(batch * data->col[tc].width) + 1, sizeof(float));
    int32_t *label = util_calloc((size_t)batch + 1, sizeof(int32_t));
    double se = 0, rel = 0;
    int64_t right = 0;
    for (int64_t at = 0; at < n && rc == 0; at += batch) { /* the targets, against the predictive mean */
        int64_t rows = n - at < batch ? n - at : batch;
        data_gather(data, tc, idx + at, rows, classes ? (void *)label : t);
        for (int64_t i = 0; i < rows; i++) {
            const double *o = mean + (at + i) * cols;
            if (classes) {
                int64_t best = 0;
                for (int64_t j = 1; j < cols; j++)
                    if (o[j] > o[best]) best = j;
                right += best == label[i];
            } else {
                for (int64_t j = 0; j < cols; j++) {
                    double y = t[i * cols + j];
                    se += (o[j] - y) * (o[j] - y);
                    rel += fabs(o[j] - y) / fmax(fabs(y), FLT_MIN);
                }
            }
        }
    }
    for (int i = 0; i < m->nmetric && rc == 0; i++) {
        switch (m->metric[i].kind) {
        case METRIC_RMSE: metric[i] = sqrt(se / (double)(n * cols)); break;
        case METRIC_RELATIVE_ERROR: metric[i] = rel / (double)(n * cols); break;
        case METRIC_ACCURACY: metric[i] = (double)right / (double)n; break;
        case METRIC_ERROR: metric[i] = 1.0 - (double)right / (double)n; break;
        case METRIC_NLL: rc = predictive_nll(e, d, data, idx, n, g->output[i + 1].node, &metric[i]); break;
        }
    }
    free(mean);
    free(t);
    free(label);
    return rc ? -1 : 0;
}

int posterior_report(Exec *e, const Model *m, const Draws *d, const ModelData *data, const int64_t *valid_idx, int64_t n_valid,
                     FILE *out, cJSON *json) {
    if (!m->nmetric) return 0;
    const Graph *g = e->g;
    int64_t *test_idx = train_iota(data->test.n);
    double *metric = util_calloc((size_t)m->nmetric, sizeof(double));
    int rc = 0;
    fprintf(out, "posterior predictive of %lld draws", (long long)d->ndraw);
    for (int split = 0; split < 2 && rc == 0; split++) {
        int64_t n = split ? (data->has_test ? data->test.n : 0) : n_valid;
        if (n == 0) continue;
        rc = posterior_metrics(e, m, d, split ? &data->test : &data->train, split ? test_idx : valid_idx, n, metric);
        if (rc) break;
        cJSON *o = json ? cJSON_AddObjectToObject(json, split ? "test" : "valid") : NULL;
        fprintf(out, " | %s", split ? "test" : "valid");
        for (int i = 0; i < m->nmetric; i++) {
            fprintf(out, " %s %.4f", g->output[i + 1].name, metric[i]);
            if (o) cJSON_AddNumberToObject(o, g->output[i + 1].name, metric[i]);
        }
    }
    fputc('\n', out);
    if (!n_valid && !data->has_test) fprintf(out, "nothing to evaluate: the model has no validation or test data\n");
    if (rc) fprintf(stderr, "nnc: error: %s: %s\n", e->dev->name, e->dev->err);
    free(test_idx);
    free(metric);
    return rc;
}
