/* bayes_linear.c: Bayesian linear regression on a network's features, fitted in closed form
 * (see bayes_linear.h).  OpenBLAS provides the products (cblas) and LAPACK's dpotrf and dsyev,
 * called through their Fortran symbols. */
#include "bayes_linear.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (in OpenBLAS), column-major; the trailing lengths are the Fortran strings'. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
                   const int *lwork, int *info, size_t jobz_len, size_t uplo_len);

void blr_stats_init(BlrStats *s, int64_t P, int64_t T) {
    *s = (BlrStats){.P = P, .T = T};
    s->ptp = util_calloc((size_t)(P * P), sizeof(double));
    s->pty = util_calloc((size_t)(P * T), sizeof(double));
    s->yy = util_calloc((size_t)T, sizeof(double));
}

void blr_stats_add(BlrStats *s, const float *f, const float *y, int64_t rows) {
    int64_t P = s->P, T = s->T, F = P - 1;
    double *phi = util_calloc((size_t)(rows * P) + 1, sizeof(double)), *yd = util_calloc((size_t)(rows * T) + 1, sizeof(double));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < F; j++) phi[r * P + j] = f[r * F + j];
        phi[r * P + F] = 1;
        for (int64_t t = 0; t < T; t++) {
            yd[r * T + t] = y[r * T + t];
            s->yy[t] += yd[r * T + t] * yd[r * T + t];
        }
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)P, (int)P, (int)rows, 1.0, phi, (int)P, phi, (int)P, 1.0, s->ptp, (int)P);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)P, (int)T, (int)rows, 1.0, phi, (int)P, yd, (int)T, 1.0, s->pty, (int)T);
    s->n += rows;
    free(phi);
    free(yd);
}

void blr_stats_free(BlrStats *s) {
    free(s->ptp);
    free(s->pty);
    free(s->yy);
    memset(s, 0, sizeof *s);
}

/* L L^T = alpha I + beta Phi^T Phi (L lower, row-major, zeros above), and the posterior mean
 * m = beta A^-1 Phi^T y by L z = beta Phi^T y, L^T m = z.  -1 when A is not positive definite. */
static int factor_and_solve(BayesLinear *h, const BlrStats *s) {
    int64_t P = s->P, T = s->T;
    for (int64_t i = 0; i < P; i++)
        for (int64_t j = 0; j < P; j++) h->chol[i * P + j] = h->beta * s->ptp[i * P + j] + (i == j ? h->alpha : 0);
    /* dpotrf's upper factor U (A = U^T U, column-major) is, read row-major, L = U^T */
    int n = (int)P, info = 0;
    dpotrf_("U", &n, h->chol, &n, &info, 1);
    if (info != 0) return -1;
    for (int64_t i = 0; i < P; i++)
        for (int64_t j = i + 1; j < P; j++) h->chol[i * P + j] = 0;
    for (int64_t k = 0; k < P * T; k++) h->mean[k] = h->beta * s->pty[k];
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)P, (int)T, 1.0, h->chol, (int)P, h->mean, (int)T);
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, (int)P, (int)T, 1.0, h->chol, (int)P, h->mean, (int)T);
    return 0;
}

/* Summed over the outputs: |m_t|^2 and |y_t - Phi m_t|^2 = y^T y - 2 m^T Phi^T y + m^T Phi^T Phi m. */
static void residuals(const BayesLinear *h, const BlrStats *s, double *mm, double *rss) {
    int64_t P = s->P, T = s->T;
    *mm = *rss = 0;
    for (int64_t t = 0; t < T; t++) {
        double quad = 0, cross = 0;
        for (int64_t i = 0; i < P; i++) {
            double mi = h->mean[i * T + t], row = 0;
            *mm += mi * mi;
            cross += mi * s->pty[i * T + t];
            for (int64_t j = 0; j < P; j++) row += s->ptp[i * P + j] * h->mean[j * T + t];
            quad += mi * row;
        }
        double r = s->yy[t] - 2 * cross + quad;
        *rss += r > 0 ? r : 0;
    }
}

int blr_fit(BayesLinear *h, const BlrStats *s, double alpha, double beta, bool alpha_evidence, bool beta_evidence,
            char *err, size_t nerr) {
    int64_t P = s->P, T = s->T;
    *h = (BayesLinear){.P = P, .T = T, .n = s->n, .alpha = alpha, .beta = beta};
    h->mean = util_calloc((size_t)(P * T), sizeof(double));
    h->chol = util_calloc((size_t)(P * P), sizeof(double));
    double *eig = NULL;
    if (alpha_evidence || beta_evidence) { /* the eigenvalues of Phi^T Phi, once */
        double *a = util_calloc((size_t)(P * P), sizeof(double)), query;
        memcpy(a, s->ptp, sizeof(double) * (size_t)(P * P));
        eig = util_calloc((size_t)P, sizeof(double));
        int n = (int)P, lwork = -1, info = 0;
        dsyev_("N", "U", &n, a, &n, eig, &query, &lwork, &info, 1, 1);
        lwork = (int)query;
        double *work = util_calloc((size_t)lwork + 1, sizeof(double));
        dsyev_("N", "U", &n, a, &n, eig, work, &lwork, &info, 1, 1);
        free(work);
        free(a);
        if (info != 0) {
            free(eig);
            return util_fail(err, nerr, "the eigenvalues of the features' Gram matrix did not converge (LAPACK dsyev: %d)", info);
        }
    }
    for (int it = 0;; it++) {
        if (factor_and_solve(h, s))
            return util_fail(err, nerr, "alpha I + beta Phi^T Phi is not positive definite (alpha %g, beta %g): are the features finite?",
                             h->alpha, h->beta);
        if (!eig || it == 1000) break;
        /* gamma = sum_i beta l_i / (alpha + beta l_i): the well-determined directions */
        double gamma = 0, mm, rss;
        for (int64_t i = 0; i < P; i++) {
            double l = h->beta * (eig[i] > 0 ? eig[i] : 0);
            gamma += l / (h->alpha + l);
        }
        residuals(h, s, &mm, &rss);
        double a = alpha_evidence && mm > 0 ? (double)T * gamma / mm : h->alpha;
        double b = beta_evidence && rss > 0 && (double)s->n > gamma ? (double)T * ((double)s->n - gamma) / rss : h->beta;
        bool done = fabs(a - h->alpha) <= 1e-10 * h->alpha && fabs(b - h->beta) <= 1e-10 * h->beta;
        h->alpha = a, h->beta = b;
        h->iterations = it + 1;
        if (done) break;
    }
    free(eig);
    /* ln p(y) = sum_t [P/2 ln alpha + N/2 ln beta - beta/2 |y_t - Phi m_t|^2 - alpha/2 |m_t|^2 - 1/2 ln |A| - N/2 ln 2 pi] */
    double mm, rss, logdet = 0;
    residuals(h, s, &mm, &rss);
    for (int64_t i = 0; i < P; i++) logdet += 2 * log(h->chol[i * P + i]);
    double n = (double)s->n;
    h->log_evidence = (double)T * (0.5 * (double)P * log(h->alpha) + 0.5 * n * log(h->beta) - 0.5 * logdet - 0.5 * n * log(2 * M_PI)) -
                      0.5 * h->beta * rss - 0.5 * h->alpha * mm;
    return 0;
}

void blr_predict(const BayesLinear *h, const float *f, double *mean, double *sd) {
    int64_t P = h->P, T = h->T;
    double *phi = util_calloc((size_t)P, sizeof(double));
    for (int64_t j = 0; j < P - 1; j++) phi[j] = f[j];
    phi[P - 1] = 1;
    for (int64_t t = 0; t < T; t++) {
        double m = 0;
        for (int64_t j = 0; j < P; j++) m += phi[j] * h->mean[j * T + t];
        mean[t] = m;
    }
    /* phi^T A^-1 phi = |L^-1 phi|^2 */
    cblas_dtrsv(CblasRowMajor, CblasLower, CblasNoTrans, CblasNonUnit, (int)P, h->chol, (int)P, phi, 1);
    double q = 0;
    for (int64_t j = 0; j < P; j++) q += phi[j] * phi[j];
    *sd = sqrt(1 / h->beta + q);
    free(phi);
}

void blr_free(BayesLinear *h) {
    if (!h) return;
    free(h->mean);
    free(h->chol);
    memset(h, 0, sizeof *h);
}

int blr_features_node(const Graph *g) {
    for (int o = 0; o < g->noutput; o++)
        if (g->output[o].agg == AGG_FEATURES) return g->output[o].node;
    return -1;
}

int blr_target_input(const Graph *g, const Model *m) {
    if (!m->head.on) return -1;
    for (int i = 0; i < g->ninput; i++)
        if (!strcmp(g->input[i].name, m->io[m->head.target].name)) return i;
    return -1;
}

/* Runs the eval program on samples idx[at, at + rows) of d; the features (and the targets, when
 * y is given) into f and y. */
static int head_batch(Exec *e, int feat, int target, const Dataset *d, const int64_t *idx, int64_t rows, float *f, float *y) {
    int rc = exec_feed(e, d, idx, rows);
    if (rc == 0) rc = exec_run(e, PROG_EVAL, rows);
    if (rc == 0) rc = exec_read(e, feat, f, sizeof(float) * (size_t)(rows * shape_numel(e->g->node[feat].shape)));
    if (rc == 0 && y)
        rc = exec_read(e, e->g->input[target].node, y, sizeof(float) * (size_t)(rows * shape_numel(e->g->input[target].shape)));
    return rc;
}

int blr_collect(Exec *e, const Model *m, const Dataset *d, const int64_t *idx, int64_t n, BlrStats *s) {
    const Graph *g = e->g;
    int feat = blr_features_node(g), target = blr_target_input(g, m);
    NNC_ASSERT(feat >= 0 && target >= 0);
    int64_t F = shape_numel(g->node[feat].shape), T = shape_numel(g->input[target].shape), batch = e->plan->max_batch;
    blr_stats_init(s, F + 1, T);
    float *f = util_calloc((size_t)(batch * F) + 1, sizeof(float)), *y = util_calloc((size_t)(batch * T) + 1, sizeof(float));
    int rc = 0;
    for (int64_t at = 0; at < n && rc == 0; at += batch) {
        int64_t rows = n - at < batch ? n - at : batch;
        rc = head_batch(e, feat, target, d, idx + at, rows, f, y);
        if (rc == 0) blr_stats_add(s, f, y, rows);
    }
    free(f);
    free(y);
    return rc;
}

int blr_evaluate(Exec *e, const Model *m, const BayesLinear *h, const Dataset *d, const int64_t *idx, int64_t n,
                 double *rmse, double *nll) {
    const Graph *g = e->g;
    int feat = blr_features_node(g), target = blr_target_input(g, m);
    int64_t F = h->P - 1, T = h->T, batch = e->plan->max_batch;
    float *f = util_calloc((size_t)(batch * F) + 1, sizeof(float)), *y = util_calloc((size_t)(batch * T) + 1, sizeof(float));
    double *mean = util_calloc((size_t)T, sizeof(double)), sq = 0, nl = 0, sd;
    int rc = 0;
    for (int64_t at = 0; at < n && rc == 0; at += batch) {
        int64_t rows = n - at < batch ? n - at : batch;
        rc = head_batch(e, feat, target, d, idx + at, rows, f, y);
        for (int64_t r = 0; r < rows && rc == 0; r++) {
            blr_predict(h, f + r * F, mean, &sd);
            for (int64_t t = 0; t < T; t++) {
                double dev = y[r * T + t] - mean[t];
                sq += dev * dev;
                nl += 0.5 * log(2 * M_PI * sd * sd) + dev * dev / (2 * sd * sd);
            }
        }
    }
    double count = (double)(n * T);
    *rmse = n > 0 ? sqrt(sq / count) : NAN;
    *nll = n > 0 ? nl / count : NAN;
    free(f);
    free(y);
    free(mean);
    return rc;
}

int blr_predict_all(Exec *e, const BayesLinear *h, const Dataset *d, const int64_t *idx, int64_t n, float *out) {
    int feat = blr_features_node(e->g);
    int64_t F = h->P - 1, T = h->T, batch = e->plan->max_batch;
    float *f = util_calloc((size_t)(batch * F) + 1, sizeof(float));
    double *mean = util_calloc((size_t)T, sizeof(double)), sd;
    int rc = 0;
    for (int64_t at = 0; at < n && rc == 0; at += batch) {
        int64_t rows = n - at < batch ? n - at : batch;
        rc = head_batch(e, feat, -1, d, idx + at, rows, f, NULL);
        for (int64_t r = 0; r < rows && rc == 0; r++) {
            blr_predict(h, f + r * F, mean, &sd);
            for (int64_t t = 0; t < T; t++) {
                out[((at + r) * T + t) * 2] = (float)mean[t];
                out[((at + r) * T + t) * 2 + 1] = (float)sd;
            }
        }
    }
    free(f);
    free(mean);
    return rc;
}
