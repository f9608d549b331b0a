/* prune.h: gated layers at run time.  Reads the gates of a running model to say how many of
 * each layer's neurons are alive, summarises their activations' variance from the evaluation
 * outputs spaces.c added, and performs physical pruning: decides which neurons of each
 * prunable layer survive, and copies every weight and optimiser-state tensor into a model
 * recompiled at the surviving widths, cutting the rows and columns of the removed neurons;
 * and folds gates whose penalty has ended into their layers' weights.
 * Used by train.c between epochs. */
#ifndef NNC_PRUNE_H
#define NNC_PRUNE_H

#include "exec.h"
#include "model.h"

/* One gated layer's state after an evaluation. */
typedef struct {
    int64_t width;  /* neurons the layer has now */
    int64_t live;   /* of which the gate is open (non-zero; a size gate: factor >= threshold) */
    int64_t dead;   /* width - live */
    double var_mean, var_q10, var_q50, var_q90; /* variance of each live neuron's activation */
} GateStat;

/* live / dead of every gate of e's graph (g->ngate entries), from the gate weights. */
void gate_counts(const Exec *e, GateStat *out);

/* The variance summary from evaluation outputs: per output of the graph, the sums over `n`
 * samples (sums[o] has the output's numel entries; only AGG_VECTOR outputs are used). */
void gate_variances(const Exec *e, double *const *sums, int64_t n, GateStat *out);

/* Which neurons survive, per space of the current graph. */
typedef struct {
    int nspace;
    int64_t **keep;   /* per space: the kept indices, ascending; NULL: the space is unchanged */
    int64_t *width;   /* per space: its width after pruning */
    bool *at_min;     /* per gate: fewer neurons are alive than its min_width; that many were kept */
} PruneDecision;

/* Decides from the gates; false when nothing would be removed.  Free with prune_free. */
bool prune_decide(const Exec *e, PruneDecision *d);
void prune_free(PruneDecision *d);

/* Copies every weight and optimiser-state tensor of `from` into `to` (compiled with the
 * decision's widths), keeping the surviving rows and columns.  -1 with a reason. */
int prune_transfer(const Exec *from, Exec *to, const PruneDecision *d, char *err, size_t nerr);

/* Folds into their layers the gates that ask for it (`gate(fold = true)`) and whose penalty is
 * 0 under these param values (one per model param): row j of the layer's weight and bias is
 * scaled by |g_j| and g_j becomes sign(g_j), which leaves the function and, with no penalty,
 * the objective unchanged (spaces.c); the optimiser state of those tensors is rescaled to
 * match (a momentum by the gradient's factor, a second moment by its square).  Closed gates
 * stay 0.  The layers folded, in gate order, go into `folded` (one per gate); returns their
 * number. */
int prune_fold(Exec *e, const double *param, const char **folded);

#endif
