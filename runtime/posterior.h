/* posterior.h: using a sampled posterior (runtime/; after sample.c, for a trainer's eval and
 * predict, and for the sampling run's own last report).  A model sampled by `sampler hmc` or
 * `nuts` leaves one draws_chain<c>.safetensors file per chain; the posterior predictive runs
 * the model's eval program at every draw and combines the answers:
 *   - per sample and output, the mean, standard deviation and 5 / 95 % quantiles of the
 *     prediction over the draws (of the softmax probabilities for a classifier);
 *   - RMSE of the predictive mean, accuracy of its most probable class, and the negative log
 *     likelihood of the posterior predictive, -log (1/S sum_s p(y | x, w_s)) per sample, from
 *     the model's own `nll` metric evaluated one sample at a time. */
#ifndef NNC_POSTERIOR_H
#define NNC_POSTERIOR_H

#include "checkpoint.h"
#include "data.h"
#include "exec.h"
#include "model.h"
#include "train.h"

enum { DRAWS_MAX_CHAINS = 256 };

/* Draws of every trained weight (those with a gradient), in the graph's weight order, each
 * draw one flat vector of `dim` floats: weight p at off[p], n[p] values. */
typedef struct Draws {
    const Graph *g;
    int npar;
    int *weight;  /* index into g->weight */
    int64_t *n, *off;
    int64_t dim;
    int nchain;
    float *q[DRAWS_MAX_CHAINS]; /* chain c's draws, kept[c] x dim */
    int64_t kept[DRAWS_MAX_CHAINS];
    int64_t ndraw;              /* all chains' draws */
    bool owned;                 /* q was allocated by draws_load */
} Draws;

/* The layout of g's trained weights (node, n, off, dim), with no draws yet. */
void draws_layout(const Graph *g, Draws *d);
/* Reads a sampling run's draws: `path` is one draws_chain<c>.safetensors file, or a run's
 * output directory (every draws_chain1, 2, ... there).  Each file must belong to model `id`
 * (name and source hash) and hold every trained weight as float32 [draws, shape...].  -1 with
 * the file and what is wrong in err. */
int draws_load(const char *path, const Graph *g, const RunIdentity *id, Draws *d, char *err, size_t nerr);
void draws_free(Draws *d);

/* The eval program at every draw on samples idx[0..n) of `data` (inputs only), a chunk of
 * samples at a time.  stats (n x cols x 4, or NULL): per sample and output, mean, sd, 5 % and
 * 95 % quantile over the draws, of the softmax probabilities when `softmax` (all the draws'
 * values of a chunk are held for the quantiles; without stats, one draw's batch at a time).
 * mean (n x cols, or NULL): the mean alone, in double.  draw_rmse (ndraw, or NULL): each
 * draw's RMSE against data's real-valued targets.  The prediction has `cols` values per
 * sample.  0, or -1 after a device error (in e->dev->err). */
int posterior_predictive(Exec *e, const Draws *d, const Dataset *data, const int64_t *idx, int64_t n, bool softmax,
                         float *stats, double *mean, double *draw_rmse);

/* The model's metrics (m->metric order) of the posterior predictive on samples idx[0..n) of
 * `data`: rmse of the predictive mean, accuracy and error of its most probable class, nll of
 * the predictive distribution.  0, or -1 after a device error. */
int posterior_metrics(Exec *e, const Model *m, const Draws *d, const Dataset *data, const int64_t *idx, int64_t n,
                      double *metric);

/* posterior_metrics on the validation split (valid_idx[0..n_valid) of data->train) and the
 * test data, printed on one line to `out` and added to `json` (when not NULL) as
 * {"valid": {metric: value}, "test": {...}}.  0, or -1 after a device error (reported). */
typedef struct cJSON cJSON;
int posterior_report(Exec *e, const Model *m, const Draws *d, const ModelData *data, const int64_t *valid_idx, int64_t n_valid,
                     FILE *out, cJSON *json);

/* The prediction node's values per sample (the first loss's first argument). */
int64_t posterior_cols(const Exec *e);

#endif
