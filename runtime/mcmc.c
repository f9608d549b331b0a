/* mcmc.c: R-hat, effective sample sizes and quantiles of Markov chains (see mcmc.h).
 * Following Vehtari et al. (2021), as Stan and ArviZ compute them:
 *   split:          each chain's first and last n/2 draws become two chains (a middle draw of
 *                   an odd n is dropped);
 *   rank-normalise: z = Phi^-1((r - 3/8) / (S + 1/4)), r the average rank among all S draws;
 *   R-hat:          sqrt(((n - 1)/n W + B/n) / W) over the split, rank-normalised chains, W the
 *                   mean within-chain variance, B/n the variance of the chain means; the larger
 *                   of it for the draws and for their distance to the median (folded);
 *   ESS:            m n / tau, tau = -1 + 2 sum of the autocorrelations rho_t (combined over
 *                   chains with the variance estimate var+), summed in pairs while a pair's sum
 *                   is positive and made monotone (Geyer's initial monotone sequence);
 *   bulk ESS:       the ESS of the split, rank-normalised draws;
 *   tail ESS:       the smaller ESS of the split indicators x <= q5 and x <= q95.
 * Autocovariances are computed directly, lag by lag, only as far as the sum needs them. */
#include "mcmc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- quantiles and the normal's inverse ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The p-quantile of n sorted values, interpolated linearly (NumPy's default). */
static double sorted_quantile(const double *v, int64_t n, double p) {
    double h = (double)(n - 1) * p;
    int64_t lo = (int64_t)floor(h);
    return lo + 1 < n ? v[lo] + (h - (double)lo) * (v[lo + 1] - v[lo]) : v[n - 1];
}

static double *sorted_copy(const double *x, int64_t n) {
    double *v = util_calloc((size_t)n + 1, sizeof(double));
    memcpy(v, x, sizeof(double) * (size_t)n);
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v;
}

double mcmc_quantile(const double *x, int64_t n, double p) {
    double *v = sorted_copy(x, n);
    double q = sorted_quantile(v, n, p);
    free(v);
    return q;
}

/* Phi^-1(p) by Newton's method on Phi(z) = erfc(-z / sqrt 2) / 2, which erfc keeps accurate in
 * the lower tail; the upper half by symmetry.  The start sqrt(-2 log p) corrected as in
 * Abramowitz and Stegun 26.2.23 is within 5e-4; three or four steps reach double precision. */
double mcmc_normal_quantile(double p) {
    if (!(p > 0 && p < 1)) return p == 0 ? -INFINITY : p == 1 ? INFINITY : NAN;
    if (p > 0.5) return -mcmc_normal_quantile(1 - p);
    double t = sqrt(-2 * log(p));
    double z = -(t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t));
    for (int k = 0; k < 50; k++) {
        double f = 0.5 * erfc(-z / M_SQRT2) - p, d = exp(-0.5 * z * z) / sqrt(2 * M_PI);
        double step = f / d;
        z -= step;
        if (fabs(step) <= 1e-15 * fmax(1, fabs(z))) break;
    }
    return z;
}

/* ---- the building blocks ---- */

/* x (m chains of n) split into 2m chains of n/2, into a new array; *n2 = n/2. */
static double *split_chains(const double *x, int m, int64_t n, int64_t *n2) {
    int64_t h = n / 2;
    double *y = util_calloc((size_t)(2 * m * h) + 1, sizeof(double));
    for (int c = 0; c < m; c++) {
        memcpy(y + (2 * c) * h, x + c * n, sizeof(double) * (size_t)h);
        memcpy(y + (2 * c + 1) * h, x + c * n + (n - h), sizeof(double) * (size_t)h);
    }
    *n2 = h;
    return y;
}

typedef struct {
    double v;
    int64_t i;
} Ranked;
static int cmp_ranked(const void *a, const void *b) { return cmp_double(&((const Ranked *)a)->v, &((const Ranked *)b)->v); }

/* Phi^-1((r - 3/8) / (S + 1/4)) for the whole ranks r = 1..S of the last S asked for: every
 * parameter of a run has the same S, and the inverse costs a few erfc calls. */
static double *rank_z;
static int64_t rank_z_n;
static const double *rank_scores(int64_t s) {
    if (rank_z_n != s) {
        free(rank_z);
        rank_z = util_calloc((size_t)s + 1, sizeof(double));
        for (int64_t r = 1; r <= s; r++) rank_z[r - 1] = mcmc_normal_quantile(((double)r - 0.375) / ((double)s + 0.25));
        rank_z_n = s;
    }
    return rank_z;
}

/* In place: each value replaced by Phi^-1((r - 3/8) / (S + 1/4)), r its average rank (1-based). */
static void rank_normalise(double *x, int64_t s) {
    const double *z = rank_scores(s);
    Ranked *r = util_calloc((size_t)s, sizeof(Ranked));
    for (int64_t i = 0; i < s; i++) r[i] = (Ranked){x[i], i};
    qsort(r, (size_t)s, sizeof(Ranked), cmp_ranked);
    for (int64_t a = 0; a < s;) {
        int64_t b = a;
        while (b + 1 < s && r[b + 1].v == r[a].v) b++;
        double rank = 0.5 * (double)(a + b) + 1; /* ties share their average rank */
        double score = a == b ? z[a] : mcmc_normal_quantile((rank - 0.375) / ((double)s + 0.25));
        for (int64_t k = a; k <= b; k++) x[r[k].i] = score;
        a = b + 1;
    }
    free(r);
}

static double chain_mean(const double *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s / (double)n;
}

/* The autocovariance at lag t of a chain with mean mu, divided by n (the biased estimate). */
static double autocov(const double *x, int64_t n, double mu, int64_t t) {
    double s = 0;
    for (int64_t i = 0; i + t < n; i++) s += (x[i] - mu) * (x[i + t] - mu);
    return s / (double)n;
}

/* The chains' mean autocovariance at lag t. */
static double acov_mean(const double *x, int m, int64_t n, const double *mu, int64_t t) {
    double s = 0;
    for (int c = 0; c < m; c++) s += autocov(x + c * n, n, mu[c], t);
    return s / m;
}

double mcmc_ess(const double *x, int m, int64_t n) {
    double *mu = util_calloc((size_t)m, sizeof(double));
    double mean_var = 0, grand = 0, between = 0;
    for (int c = 0; c < m; c++) {
        mu[c] = chain_mean(x + c * n, n);
        mean_var += autocov(x + c * n, n, mu[c], 0) * (double)n / (double)(n - 1) / m;
        grand += mu[c] / m;
    }
    for (int c = 0; c < m; c++) between += (mu[c] - grand) * (mu[c] - grand) / (m > 1 ? m - 1 : 1);
    double var_plus = mean_var * (double)(n - 1) / (double)n + (m > 1 ? between : 0);
    if (!(var_plus > 0)) { /* constant draws: nothing to estimate */
        free(mu);
        return NAN;
    }
    double *rho = util_calloc((size_t)n + 2, sizeof(double));
#define RHO(t) (1 - (mean_var - acov_mean(x, m, n, mu, (t))) / var_plus)
    rho[0] = 1;
    double even = 1, odd = RHO(1);
    rho[1] = odd;
    int64_t t = 1;
    while (t < n - 3 && even + odd > 0) {
        even = RHO(t + 1);
        odd = RHO(t + 2);
        if (even + odd >= 0) {
            rho[t + 1] = even;
            rho[t + 2] = odd;
        }
        t += 2;
    }
#undef RHO
    int64_t max_t = t - 2;
    if (even > 0) rho[max_t + 1] = even; /* the last positive one improves the estimate */
    for (t = 1; t <= max_t - 2; t += 2) /* monotone: no pair larger than the one before */
        if (rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]) rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2;
    double tau = -1;
    for (t = 0; t <= max_t; t++) tau += 2 * rho[t];
    tau += rho[max_t + 1];
    double total = (double)m * (double)n;
    tau = fmax(tau, 1 / log10(total));
    free(rho);
    free(mu);
    return total / tau;
}

/* R-hat of the chains as given. */
static double rhat_plain(const double *x, int m, int64_t n) {
    double grand = 0, within = 0, between = 0;
    double *mu = util_calloc((size_t)m, sizeof(double));
    for (int c = 0; c < m; c++) {
        mu[c] = chain_mean(x + c * n, n);
        grand += mu[c] / m;
        within += autocov(x + c * n, n, mu[c], 0) * (double)n / (double)(n - 1) / m;
    }
    for (int c = 0; c < m; c++) between += (mu[c] - grand) * (mu[c] - grand) / (m - 1);
    free(mu);
    between *= (double)n;
    return sqrt((between / within + (double)n - 1) / (double)n);
}

double mcmc_rhat(const double *x, int m, int64_t n) {
    int64_t h;
    double *y = split_chains(x, m, n, &h), *f = util_calloc((size_t)(2 * m * h) + 1, sizeof(double));
    int64_t s = 2 * m * h;
    double med = mcmc_quantile(y, s, 0.5);
    for (int64_t i = 0; i < s; i++) f[i] = fabs(y[i] - med);
    rank_normalise(y, s);
    rank_normalise(f, s);
    double bulk = rhat_plain(y, 2 * m, h), tail = rhat_plain(f, 2 * m, h);
    free(y);
    free(f);
    return fmax(bulk, tail);
}

void mcmc_summary(const double *x, int m, int64_t n, McmcSummary *out) {
    int64_t s = (int64_t)m * n, h;
    double mean = chain_mean(x, s), ss = 0;
    for (int64_t i = 0; i < s; i++) ss += (x[i] - mean) * (x[i] - mean);
    double *v = sorted_copy(x, s);
    *out = (McmcSummary){.mean = mean, .sd = sqrt(ss / (double)(s - 1)), .q5 = sorted_quantile(v, s, 0.05),
                         .q50 = sorted_quantile(v, s, 0.5), .q95 = sorted_quantile(v, s, 0.95)};
    free(v);
    double *y = split_chains(x, m, n, &h);
    int64_t s2 = 2 * m * h;
    double *ind = util_calloc((size_t)s2 + 1, sizeof(double));
    double tail = INFINITY;
    for (int k = 0; k < 2; k++) {
        double q = k == 0 ? out->q5 : out->q95;
        for (int64_t i = 0; i < s2; i++) ind[i] = y[i] <= q;
        tail = fmin(tail, mcmc_ess(ind, 2 * m, h));
    }
    rank_normalise(y, s2);
    out->ess_bulk = mcmc_ess(y, 2 * m, h);
    out->ess_tail = tail;
    out->rhat = mcmc_rhat(x, m, n);
    free(ind);
    free(y);
}
