/* bayes_linear.h: the head `head bayes_linear(features, y, alpha, beta)`, Bayesian linear
 * regression fitted in closed form on a trained network's features (runtime/; train.c fits it
 * after the last epoch, checkpoint.c keeps it, run.c's eval and predict use it).
 *
 * The model: y_t = phi(x)^T w_t + noise, noise ~ N(0, 1 / beta), w_t ~ N(0, I / alpha), for each
 * output t; phi(x) is the feature layer's value with a constant 1 appended (the bias feature).
 * With A = alpha I + beta Phi^T Phi = L L^T (a Cholesky factorisation, LAPACK's dpotrf), the
 * posterior mean is m = beta A^-1 Phi^T y, by two triangular solves, and the predictive
 * distribution at phi is N(phi^T m, 1 / beta + |L^-1 phi|^2): no inverse or determinant is
 * ever formed.  alpha = evidence and beta = evidence choose them by maximising the marginal
 * likelihood (MacKay's fixed point, as in Bishop's PRML section 3.5.2, with the eigenvalues of
 * Phi^T Phi from LAPACK's dsyev).  Everything is in double precision; the data enter as
 * sufficient statistics (Phi^T Phi, Phi^T y, y^T y, N) accumulated over batches. */
#ifndef NNC_BAYES_LINEAR_H
#define NNC_BAYES_LINEAR_H

#include <stdbool.h>
#include <stdint.h>

#include "data.h"
#include "exec.h"
#include "model.h"

/* The head's sufficient statistics over the training samples. */
typedef struct {
    int64_t P, T, n;  /* features with the bias feature, outputs, samples seen */
    double *ptp;      /* [P, P] Phi^T Phi */
    double *pty;      /* [P, T] Phi^T y */
    double *yy;       /* [T] y^T y */
} BlrStats;

typedef struct BayesLinear {
    int64_t P, T, n;       /* features (with the bias feature), outputs, training samples */
    double alpha, beta;    /* the prior's and the noise's precision */
    double *mean;          /* [P, T] the posterior mean */
    double *chol;          /* [P, P] L, lower triangular (zeros above), A = L L^T */
    double log_evidence;   /* ln p(y | alpha, beta), summed over the outputs */
    int iterations;        /* of the evidence fixed point (0: alpha and beta as given) */
} BayesLinear;

void blr_stats_init(BlrStats *s, int64_t P, int64_t T);
/* Adds `rows` samples: features f [rows, P - 1] (the bias feature is added here) and targets
 * y [rows, T], both float. */
void blr_stats_add(BlrStats *s, const float *f, const float *y, int64_t rows);
void blr_stats_free(BlrStats *s);

/* Fits the head; alpha and beta are the starting values when `*_evidence`.  0, or -1 with
 * the reason (a factorisation that failed: features that are not finite). */
int blr_fit(BayesLinear *h, const BlrStats *s, double alpha, double beta, bool alpha_evidence, bool beta_evidence,
            char *err, size_t nerr);
/* The predictive mean (T values) and standard deviation at features f (P - 1 floats). */
void blr_predict(const BayesLinear *h, const float *f, double *mean, double *sd);
void blr_free(BayesLinear *h);

/* The graph's head outputs: the feature node and the target input, or -1 when it has none. */
int blr_features_node(const Graph *g);
int blr_target_input(const Graph *g, const Model *m);

/* The head's statistics over samples idx[0..n) of d, by the eval program in batches. */
int blr_collect(Exec *e, const Model *m, const Dataset *d, const int64_t *idx, int64_t n, BlrStats *s);
/* rmse and nll (per sample and output, averaged) of the head's predictions on samples
 * idx[0..n) of d.  0, or -1 after a device error. */
int blr_evaluate(Exec *e, const Model *m, const BayesLinear *h, const Dataset *d, const int64_t *idx, int64_t n,
                 double *rmse, double *nll);
/* Predictions on samples idx[0..n): out [n, T, 2] (mean, sd) as float. */
int blr_predict_all(Exec *e, const BayesLinear *h, const Dataset *d, const int64_t *idx, int64_t n, float *out);

#endif
