/* vi_eval.c: a variational model evaluated over S draws of its weights (see vi_eval.h).  A
 * batch is fed once and the eval program run once per draw; each output's mean and squared
 * deviations are kept in double (Welford's update) for the batch, then written out as float. */
#include "vi_eval.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vi_heads(const Graph *g, ViHead *h, int cap) {
    int n = 0;
    int64_t from = 0;
    for (int o = 0; o < g->noutput && n < cap; o++) {
        if (g->output[o].agg != AGG_PREDICT) continue;
        ViHead k = {.name = g->output[o].name, .output = o, .target = -1, .sigma_output = -1, .from = from,
                    .cols = shape_numel(g->node[g->output[o].node].shape)};
        bool one = !strcmp(k.name, "prediction");
        for (int i = 0; i < g->ninput; i++)
            if (g->input[i].is_target && (one || !strcmp(g->input[i].name, k.name))) {
                k.target = i;
                k.classes = g->input[i].is_class;
            }
        char sigma[160];
        snprintf(sigma, sizeof sigma, "%s%ssigma", one ? "" : k.name, one ? "" : ".");
        for (int w = 0; w < g->noutput; w++)
            if (g->output[w].agg == AGG_WEIGHTS && !strcmp(g->output[w].name, sigma)) k.sigma_output = w;
        from += k.cols;
        h[n++] = k;
    }
    return n;
}

static void softmax_row(float *y, int64_t cols) {
    float top = y[0];
    for (int64_t j = 1; j < cols; j++) top = y[j] > top ? y[j] : top;
    double sum = 0;
    for (int64_t j = 0; j < cols; j++) sum += exp((double)y[j] - top);
    for (int64_t j = 0; j < cols; j++) y[j] = (float)(exp((double)y[j] - top) / sum);
}

/* Sets the generator's step to draw s's (the step scalars hold 24 bits each). */
static void draw_step(Exec *e, int64_t s) {
    uint64_t t = (uint64_t)(VI_DRAW_STEP - s);
    exec_set_scalars(e, SC_STEP_LO, (double)(t & 0xFFFFFF));
    exec_set_scalars(e, SC_STEP_HI, (double)((t >> 24) & 0xFFFFFF));
}

/* Adds log p to the running log-sum-exp (top, sum) of one sample's draws; the first draw starts it. */
static void lse_add(double *top, double *sum, double lp, bool first) {
    if (first || lp > *top) {
        *sum = first ? 1 : *sum * exp(*top - lp) + 1;
        *top = lp;
    } else {
        *sum += exp(lp - *top);
    }
}

int vi_predict(Exec *e, int64_t S, const Dataset *d, const int64_t *idx, int64_t n, float *stats, double *loss, double *nll) {
    const Graph *g = e->g;
    ViHead h[VI_MAX_HEADS];
    int nh = vi_heads(g, h, VI_MAX_HEADS);
    int64_t cols = nh ? h[nh - 1].from + h[nh - 1].cols : 0, batch = e->plan->max_batch, most = 0;
    for (int k = 0; k < nh; k++) most = h[k].cols > most ? h[k].cols : most;
    float *saved = util_calloc((size_t)g->nscalar + 1, sizeof(float)), *y = util_calloc((size_t)(batch * most) + 1, sizeof(float));
    float *t = util_calloc((size_t)(batch * cols) + 1, sizeof(float)); /* the heads' targets, for nll: a block each */
    memcpy(saved, e->scalars, sizeof(float) * (size_t)g->nscalar);
    double *mean = util_calloc((size_t)(batch * cols) + 1, sizeof(double)), *m2 = util_calloc((size_t)(batch * cols) + 1, sizeof(double));
    double *top = util_calloc((size_t)(batch * nh) + 1, sizeof(double)), *lsum = util_calloc((size_t)(batch * nh) + 1, sizeof(double));
    double loss_sum = 0, sigma[VI_MAX_HEADS];
    int rc = 0;
    for (int k = 0; k < nh && nll; k++) nll[k] = 0;
    e->draw_in_eval = true;
    for (int64_t at = 0; at < n && rc == 0; at += batch) {
        int64_t rows = n - at < batch ? n - at : batch;
        memset(mean, 0, sizeof(double) * (size_t)(rows * cols));
        memset(m2, 0, sizeof(double) * (size_t)(rows * cols));
        rc = exec_feed(e, d, idx + at, rows);
        for (int64_t s = 0; s < S && rc == 0; s++) {
            draw_step(e, s);
            rc = exec_run(e, PROG_EVAL, rows);
            float l = NAN;
            if (rc == 0) rc = exec_read(e, g->output[0].node, &l, sizeof l);
            loss_sum += (double)l * (double)rows;
            for (int k = 0; k < nh && rc == 0; k++) {
                rc = exec_read(e, g->output[h[k].output].node, y, sizeof(float) * (size_t)(rows * h[k].cols));
                /* a gaussian head's log density of its targets at this draw, for the predictive nll */
                bool dens = nll && !h[k].classes && h[k].sigma_output >= 0 && h[k].target >= 0;
                if (dens && s == 0) {
                    float v = NAN;
                    rc = rc || exec_read(e, g->output[h[k].sigma_output].node, &v, sizeof v);
                    sigma[k] = v;
                }
                float *tk = t + batch * h[k].from;
                if (dens && s == 0) data_gather(d, h[k].target, idx + at, rows, tk);
                for (int64_t r = 0; r < rows && rc == 0; r++) {
                    if (h[k].classes) softmax_row(y + r * h[k].cols, h[k].cols);
                    double lp = 0;
                    for (int64_t j = 0; j < h[k].cols; j++) {
                        int64_t i = r * cols + h[k].from + j;
                        double v = y[r * h[k].cols + j], before = mean[i];
                        mean[i] += (v - before) / (double)(s + 1);
                        m2[i] += (v - before) * (v - mean[i]);
                        if (dens) {
                            double z = ((double)tk[r * h[k].cols + j] - v) / sigma[k];
                            lp += -0.5 * z * z - log(sigma[k]) - 0.5 * log(2 * M_PI);
                        }
                    }
                    if (dens) lse_add(&top[r * nh + k], &lsum[r * nh + k], lp, s == 0);
                }
            }
        }
        for (int k = 0; k < nh && nll && rc == 0; k++) /* -log (1/S sum_s p_s), per sample */
            if (!h[k].classes && h[k].sigma_output >= 0 && h[k].target >= 0)
                for (int64_t r = 0; r < rows; r++) nll[k] += log((double)S) - (top[r * nh + k] + log(lsum[r * nh + k]));
        for (int64_t i = 0; i < rows * cols && rc == 0; i++) {
            stats[(at * cols + i) * 2] = (float)mean[i];
            stats[(at * cols + i) * 2 + 1] = (float)sqrt(m2[i] / (double)(S - 1));
        }
    }
    e->draw_in_eval = false;
    memcpy(e->scalars, saved, sizeof(float) * (size_t)g->nscalar);
    if (loss) *loss = loss_sum / (double)(S * n);
    for (int k = 0; k < nh && nll; k++) nll[k] /= (double)n;
    free(t);
    free(top);
    free(lsum);
    free(saved);
    free(y);
    free(mean);
    free(m2);
    return rc ? -1 : 0;
}

/* The head whose target is graph input `target`. */
static const ViHead *head_of(const ViHead *h, int nh, int target) {
    for (int k = 0; k < nh; k++)
        if (h[k].target == target) return &h[k];
    return NULL;
}

int vi_evaluate(Exec *e, const Model *m, int64_t S, const Dataset *d, const int64_t *idx, int64_t n, ViEval *out) {
    const Graph *g = e->g;
    ViHead h[VI_MAX_HEADS];
    int nh = vi_heads(g, h, VI_MAX_HEADS);
    int64_t cols = nh ? h[nh - 1].from + h[nh - 1].cols : 0;
    float *stats = util_calloc((size_t)(n * cols * 2) + 1, sizeof(float));
    memset(out, 0, sizeof *out);
    double nll[VI_MAX_HEADS] = {0};
    int rc = vi_predict(e, S, d, idx, n, stats, &out->loss, nll);
    out->nhead = nh;
    /* per head: squared error, relative error, right answers, log probability of the label,
     * targets inside the interval */
    double se[VI_MAX_HEADS] = {0}, rel[VI_MAX_HEADS] = {0}, logp[VI_MAX_HEADS] = {0}, sigma[VI_MAX_HEADS] = {0};
    int64_t right[VI_MAX_HEADS] = {0}, inside[VI_MAX_HEADS] = {0}, most = 1;
    for (int k = 0; k < nh && rc == 0; k++) {
        float v = NAN;
        if (h[k].sigma_output >= 0) rc = exec_read(e, g->output[h[k].sigma_output].node, &v, sizeof v);
        sigma[k] = v;
        most = h[k].cols > most ? h[k].cols : most;
    }
    float *t = util_calloc((size_t)most + 1, sizeof(float));
    for (int k = 0; k < nh && rc == 0; k++) {
        if (h[k].target < 0) continue;
        for (int64_t i = 0; i < n; i++) {
            const float *r = stats + (i * cols + h[k].from) * 2;
            data_gather(d, h[k].target, idx + i, 1, t);
            if (h[k].classes) {
                int32_t label = ((const int32_t *)t)[0];
                int64_t best = 0;
                for (int64_t j = 1; j < h[k].cols; j++)
                    if (r[j * 2] > r[best * 2]) best = j;
                right[k] += best == label;
                logp[k] += log(fmax((double)r[label * 2], DBL_MIN));
                continue;
            }
            for (int64_t j = 0; j < h[k].cols; j++) {
                double mu = r[j * 2], sd = r[j * 2 + 1], y = t[j];
                se[k] += (mu - y) * (mu - y);
                rel[k] += fabs(mu - y) / fmax(fabs(y), FLT_MIN);
                inside[k] += fabs(mu - y) <= 1.96 * sqrt(sd * sd + sigma[k] * sigma[k]);
            }
        }
    }
    for (int i = 0; i < m->nmetric && rc == 0; i++) {
        const ViHead *k = head_of(h, nh, m->metric[i].val->b->index); /* graph inputs are the model's io, in order */
        NNC_ASSERT(k); /* sema: with `evaluate samples`, every metric measures a head's prediction */
        int at = (int)(k - h);
        double values = (double)(n * k->cols);
        switch (m->metric[i].kind) {
        case METRIC_RMSE: out->metric[i] = sqrt(se[at] / values); break;
        case METRIC_RELATIVE_ERROR: out->metric[i] = rel[at] / values; break;
        case METRIC_ACCURACY: out->metric[i] = (double)right[at] / (double)n; break;
        case METRIC_ERROR: out->metric[i] = 1.0 - (double)right[at] / (double)n; break;
        case METRIC_NLL: out->metric[i] = k->classes ? -logp[at] / (double)n : nll[at]; break;
        }
    }
    for (int k = 0; k < nh; k++) {
        bool has = !h[k].classes && h[k].sigma_output >= 0;
        out->coverage[k] = has ? (double)inside[k] / (double)(n * h[k].cols) : NAN;
        bool one = !strcmp(h[k].name, "prediction");
        snprintf(out->coverage_name[k], sizeof out->coverage_name[k], "%s%scoverage95", one ? "" : h[k].name, one ? "" : ".");
    }
    free(t);
    free(stats);
    return rc ? -1 : 0;
}
