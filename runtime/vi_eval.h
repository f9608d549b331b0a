/* vi_eval.h: a variational model evaluated over S draws of its weights (runtime/; used by
 * train.c's evaluation and by a trainer's `predict` when the model says `evaluate samples = S`).
 *
 * Draw s runs the eval program with the variational layers' noise on (Exec.draw_in_eval) at the
 * random generator's step VI_DRAW_STEP - s, which no training run reaches: the same S weight
 * samples for every batch and for every evaluation of a run, so that epochs are compared on
 * the same draws.  Per sample and output of each head: the mean and standard deviation (over
 * S - 1) of the draws' predictions, of the softmax probabilities for a class head.  From them:
 * rmse and relative_error of the mean; accuracy and error of the mean probability's top class;
 * nll, -log of the mean probability of the label (class heads) or of the mean density of the
 * targets over the draws (gaussian_nll heads); and per real-valued head whose
 * loss is a gaussian_nll, coverage95: the fraction of targets inside mean +- 1.96 sd_total,
 * sd_total^2 = sd^2 + sigma^2 (the draws' spread and the likelihood's noise).  The loss is the
 * mean over the draws of the eval program's loss, the negative ELBO per sample. */
#ifndef NNC_VI_EVAL_H
#define NNC_VI_EVAL_H

#include "data.h"
#include "exec.h"
#include "model.h"

#define VI_DRAW_STEP ((int64_t)0xFFFFFFFFFFFF) /* 2^48 - 1: the largest step the scalars hold */

enum { VI_MAX_HEADS = 64 };

/* One head: its AGG_PREDICT output, its target (a graph input), its noise scale's output. */
typedef struct {
    const char *name;  /* the output's: the target's name, or "prediction" */
    int output, target, sigma_output; /* sigma_output: the AGG_WEIGHTS T.sigma, or -1 */
    int64_t from, cols; /* its columns in a row of all heads side by side */
    bool classes;
} ViHead;

/* The graph's heads in output order (as predict writes them); their number. */
int vi_heads(const Graph *g, ViHead *h, int cap);

/* The S draws on samples idx[0..n) of d: stats (n x cols x 2, cols all heads' columns side by
 * side) gets each output's mean and sd; *loss (or NULL) the draws' mean loss; nll (per head, or
 * NULL) a gaussian head's predictive negative log likelihood, -log (1/S sum_s N(y; pred_s,
 * sigma^2)) per sample (summed over its outputs), averaged.  0, or -1 after a device error (in
 * e->dev->err). */
int vi_predict(Exec *e, int64_t S, const Dataset *d, const int64_t *idx, int64_t n, float *stats, double *loss, double *nll);

typedef struct {
    double loss;
    double metric[64];               /* the model's metrics, in m->metric order */
    double coverage[VI_MAX_HEADS];   /* per head; NAN where it has none */
    char coverage_name[VI_MAX_HEADS][96]; /* coverage95, mass.coverage95 */
    int nhead;
} ViEval;

/* The model's metrics and the coverage of each head over S draws on samples idx[0..n) of d.
 * 0, or -1 after a device error. */
int vi_evaluate(Exec *e, const Model *m, int64_t S, const Dataset *d, const int64_t *idx, int64_t n, ViEval *out);

#endif
