/* prune.c: live counts, activation variances and physical pruning of gated layers (see
 * prune.h).  A neuron is dead when its gate is exactly 0 (the proximal step of the L1 penalty
 * makes real zeros) or, for a size gate, when its factor sigmoid(k (x0 - j)) is below the
 * threshold.  Everything here runs on the host, between epochs, on copies of the weights. */
#include "prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *read_weight(const Exec *e, int weight, int64_t *n) {
    const Weight *w = &e->g->weight[weight];
    *n = shape_numel(w->shape);
    float *v = util_calloc((size_t)*n, sizeof(float));
    exec_read(e, w->node, v, sizeof(float) * (size_t)*n);
    return v;
}


/* The size gate's factor for neuron j, in double precision. */
static double size_factor(const GateInfo *gi, double b, int64_t j) {
    double u = gi->slope * (gi->scale * b - (double)j);
    return u >= 0 ? 1 / (1 + exp(-u)) : exp(u) / (1 + exp(u));
}

/* alive[j] for every neuron of the gate; also |g| (l1) or the factor (size) into `mag`. */
static int64_t gate_alive(const Exec *e, const GateInfo *gi, bool *alive, double *mag) {
    int64_t width = gate_width(e->g, gi), n, live = 0;
    float *v = read_weight(e, gi->weight, &n);
    for (int64_t j = 0; j < width; j++) {
        double m = gi->kind == GATE_SIZE ? size_factor(gi, v[0], j) : fabs((double)v[j]);
        alive[j] = gi->kind == GATE_SIZE ? m >= gi->threshold : m != 0;
        if (mag) mag[j] = m;
        live += alive[j];
    }
    free(v);
    return live;
}

void gate_counts(const Exec *e, GateStat *out) {
    const Graph *g = e->g;
    for (int i = 0; i < g->ngate; i++) {
        int64_t width = gate_width(g, &g->gate[i]);
        bool *alive = util_calloc((size_t)width, sizeof(bool));
        out[i].width = width;
        out[i].live = gate_alive(e, &g->gate[i], alive, NULL);
        out[i].dead = width - out[i].live;
        free(alive);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *sorted, int64_t n, double p) {
    if (n == 0) return NAN;
    double at = p * (double)(n - 1);
    int64_t lo = (int64_t)floor(at);
    int64_t hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - (double)lo);
}

/* The variance of each live neuron's activation over the samples; for a channel gate, over
 * the samples and the channel's positions (the sums hold one entry per element of a sample,
 * channels last). */
void gate_variances(const Exec *e, double *const *sums, int64_t n, GateStat *out) {
    const Graph *g = e->g;
    for (int i = 0; i < g->ngate; i++) {
        const GateInfo *gi = &g->gate[i];
        int64_t width = gate_width(g, gi), m = 0;
        int64_t positions = shape_numel(g->node[gi->node].shape) / width;
        double count = (double)n * (double)positions;
        bool *alive = util_calloc((size_t)width, sizeof(bool));
        double *var = util_calloc((size_t)width + 1, sizeof(double));
        gate_alive(e, gi, alive, NULL);
        double total = 0;
        for (int64_t j = 0; j < width; j++) {
            if (!alive[j]) continue;
            double sum = 0, sumsq = 0;
            for (int64_t p = 0; p < positions; p++) {
                sum += sums[gi->out_sum][p * width + j];
                sumsq += sums[gi->out_sumsq][p * width + j];
            }
            double mean = sum / count;
            double v = sumsq / count - mean * mean;
            var[m++] = v > 0 ? v : 0;
            total += var[m - 1];
        }
        qsort(var, (size_t)m, sizeof(double), cmp_double);
        out[i].var_mean = m ? total / (double)m : NAN;
        out[i].var_q10 = quantile(var, m, 0.1);
        out[i].var_q50 = quantile(var, m, 0.5);
        out[i].var_q90 = quantile(var, m, 0.9);
        free(alive);
        free(var);
    }
}

/* ---- deciding ---- */

static const double *sort_key;
static int by_magnitude(const void *a, const void *b) { /* larger first; ties by index */
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    if (sort_key[i] != sort_key[j]) return sort_key[i] > sort_key[j] ? -1 : 1;
    return (i > j) - (i < j);
}
static int by_index(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    return (i > j) - (i < j);
}

bool prune_decide(const Exec *e, PruneDecision *d) {
    const Graph *g = e->g;
    memset(d, 0, sizeof *d);
    d->nspace = g->nspace;
    d->keep = util_calloc((size_t)g->nspace + 1, sizeof(int64_t *));
    d->width = util_calloc((size_t)g->nspace + 1, sizeof(int64_t));
    d->at_min = util_calloc((size_t)g->ngate + 1, sizeof(bool));
    for (int s = 0; s < g->nspace; s++) d->width[s] = g->space[s].width;
    bool any = false;
    for (int i = 0; i < g->ngate; i++) {
        const GateInfo *gi = &g->gate[i];
        if (gi->fixed) continue;
        int64_t width = gate_width(g, gi);
        bool *alive = util_calloc((size_t)width, sizeof(bool));
        double *mag = util_calloc((size_t)width, sizeof(double));
        int64_t live = gate_alive(e, gi, alive, mag);
        int64_t keep_n = live < gi->min_width ? gi->min_width : live;
        if (keep_n < width) {
            int64_t *keep = util_calloc((size_t)width, sizeof(int64_t));
            for (int64_t j = 0; j < width; j++) keep[j] = j;
            if (live < gi->min_width) { /* the strongest gates; a size gate's first neurons */
                sort_key = mag;
                qsort(keep, (size_t)width, sizeof(int64_t), by_magnitude);
                qsort(keep, (size_t)keep_n, sizeof(int64_t), by_index);
                d->at_min[i] = true;
            } else {
                int64_t k = 0;
                for (int64_t j = 0; j < width; j++)
                    if (alive[j]) keep[k++] = j;
            }
            d->keep[gi->space] = keep;
            d->width[gi->space] = keep_n;
            any = true;
        }
        d->at_min[i] |= keep_n == gi->min_width && live <= gi->min_width;
        free(alive);
        free(mag);
    }
    return any;
}

void prune_free(PruneDecision *d) {
    for (int s = 0; s < d->nspace; s++) free(d->keep[s]);
    free(d->keep);
    free(d->width);
    free(d->at_min);
    memset(d, 0, sizeof *d);
}

/* ---- moving the weights ---- */

static int find_buffer(const Plan *p, const char *name) {
    for (int i = 0; i < p->nbuf; i++)
        if ((p->buf[i].kind == BUF_WEIGHT || p->buf[i].kind == BUF_STATE) && !strcmp(p->buf[i].name, name)) return i;
    return -1;
}

int prune_transfer(const Exec *from, Exec *to, const PruneDecision *d, char *err, size_t nerr) {
    const Graph *fg = from->g, *tg = to->g;
    if (fg->nspace != tg->nspace) {
        snprintf(err, nerr, "the recompiled model has %d neuron spaces, not %d", tg->nspace, fg->nspace);
        return -1;
    }
    for (int s = 0; s < tg->nspace; s++)
        if (strcmp(fg->space[s].layer, tg->space[s].layer) || tg->space[s].width != d->width[s]) {
            snprintf(err, nerr, "the recompiled model's layer '%s' is %lld wide, not %lld", tg->space[s].layer,
                     (long long)tg->space[s].width, (long long)d->width[s]);
            return -1;
        }
    const Plan *tp = to->plan;
    for (int b = 0; b < tp->nbuf; b++) {
        const Buffer *tb = &tp->buf[b];
        if (tb->kind != BUF_WEIGHT && tb->kind != BUF_STATE) continue;
        int fb = find_buffer(from->plan, tb->name);
        if (fb < 0) {
            snprintf(err, nerr, "the recompiled model has a weight '%s' the running one lacks", tb->name);
            return -1;
        }
        const Weight *tw = &tg->weight[tb->weight], *fw = &fg->weight[from->plan->buf[fb].weight];
        int64_t n;
        float *old = read_weight(from, from->plan->buf[fb].weight, &n);
        /* both as matrices [dim 0, the rest]; a column space's entries are blocks of `inner`
         * consecutive columns, repeated across the rest (spaces.c) */
        int64_t rows = tw->shape.rank >= 1 ? tw->shape.dim[0] : 1, cols = shape_numel(tw->shape) / rows;
        int64_t frows = fw->shape.rank >= 1 ? fw->shape.dim[0] : 1, fcols = n / frows;
        const int64_t *kr = tw->shape.rank >= 1 && tw->space[0] >= 0 ? d->keep[tw->space[0]] : NULL;
        const int64_t *kc = tw->shape.rank >= 2 && tw->space[1] >= 0 ? d->keep[tw->space[1]] : NULL;
        int64_t *colmap = util_calloc((size_t)cols, sizeof(int64_t));
        for (int64_t j = 0; j < cols; j++) colmap[j] = j;
        if (kc) {
            int64_t q = tw->space_inner[1], fwidth = fg->space[tw->space[1]].width, width = d->width[tw->space[1]];
            int64_t rep = fcols / (fwidth * q);
            NNC_ASSERT(rep * fwidth * q == fcols && rep * width * q == cols);
            for (int64_t o = 0; o < rep; o++)
                for (int64_t c = 0; c < width; c++)
                    for (int64_t i = 0; i < q; i++) colmap[(o * width + c) * q + i] = (o * fwidth + kc[c]) * q + i;
        }
        NNC_ASSERT(kr || rows == frows);
        NNC_ASSERT(kc || cols == fcols);
        float *v = util_calloc((size_t)(rows * cols), sizeof(float));
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                int64_t fi = kr ? kr[i] : i, fj = colmap[j];
                NNC_ASSERT(fi < frows && fj < fcols);
                v[i * cols + j] = old[fi * fcols + fj];
            }
        free(colmap);
        exec_write(to, tb->node, v, sizeof(float) * (size_t)(rows * cols));
        free(v);
        free(old);
    }
    return 0;
}

/* ---- folding gates into their layers ---- */

/* Multiplies row j of weight wi (its matrix view [dim 0, the rest]; dim 0 is the gate's
 * neurons) by f[j]^power; rows whose f is 0 are left alone. */
static void scale_rows(Exec *e, int wi, const double *f, int power) {
    const Weight *w = &e->g->weight[wi];
    int64_t n;
    float *v = read_weight(e, wi, &n);
    int64_t rows = w->shape.rank ? w->shape.dim[0] : 1, cols = n / rows;
    for (int64_t r = 0; r < rows; r++) {
        if (f[r] == 0) continue;
        double m = pow(f[r], power);
        for (int64_t c = 0; c < cols; c++) v[r * cols + c] = (float)(v[r * cols + c] * m);
    }
    exec_write(e, w->node, v, sizeof(float) * (size_t)n);
    free(v);
}

int prune_fold(Exec *e, const double *param, const char **folded) {
    const Graph *g = e->g;
    int nfolded = 0;
    for (int i = 0; i < g->ngate; i++) {
        const GateInfo *gi = &g->gate[i];
        if (gi->kind != GATE_L1 || !gi->fold || gi->nofold || sval_value(NULL, gi->coef, param, NULL) != 0) continue;
        int64_t n;
        float *gate = read_weight(e, gi->weight, &n);
        double *mag = util_calloc((size_t)n, sizeof(double));
        for (int64_t j = 0; j < n; j++) mag[j] = fabs((double)gate[j]);
        for (int k = 0; k < 2; k++)
            if (gi->fold_weight[k] >= 0) scale_rows(e, gi->fold_weight[k], mag, 1);
        for (int64_t j = 0; j < n; j++)
            if (gate[j] != 0) gate[j] = gate[j] > 0 ? 1.0f : -1.0f;
        exec_write(e, g->weight[gi->weight].node, gate, sizeof(float) * (size_t)n);
        /* d loss / d w_j scales by 1 / |g_j| where w_j scales by |g_j|; d loss / d g_j by |g_j| */
        for (int w = 0; w < g->nweight; w++) {
            const Weight *st = &g->weight[w];
            if (st->kind != W_STATE || st->scratch || !st->grad_power) continue;
            if (st->of == gi->fold_weight[0] || st->of == gi->fold_weight[1]) scale_rows(e, w, mag, -st->grad_power);
            if (st->of == gi->weight) scale_rows(e, w, mag, st->grad_power);
        }
        free(mag);
        free(gate);
        folded[nfolded++] = gi->layer;
    }
    return nfolded;
}
