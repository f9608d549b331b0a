/* precondition.h: pre_sgd, probabilistic preconditioning (de Roos and Hennig, AISTATS 2019), and
 * its variants adaptive_sgd and only_adaptive_sgd: a low-rank estimate of the Hessian inferred
 * from a few noisy Hessian-vector products, which sets SGD's learning rate (1 / alpha, the
 * scale of the spectrum's bulk) and damps the steps along its top eigenvectors.  The training
 * loop (train.c) calls precond_estimate at the start of an epoch and precond_apply on every
 * gradient; docs/optimizers.md gives the algorithm step by step. */
#ifndef NNC_PRECONDITION_H
#define NNC_PRECONDITION_H

#include "hessian.h"
#include "model.h"

typedef struct {
    const OptSpec *o;
    Exec *e;
    Hessian h;       /* products on the batch in the arena (h.n: the trained weights' elements) */
    /* the estimate */
    double alpha;    /* the prior's mean scale: B0 = alpha I; the learning rate is scale / alpha */
    double prior_w, noise; /* the prior's width and the gradients' noise, both scalar */
    int rank;        /* eigenpairs in use (those above alpha, at most o->rank) */
    double lambda[PRE_MAX_RANK];
    float *q;        /* rank x n: their eigenvectors, flat */
    int64_t estimates;
    double seconds;  /* spent estimating */
} Precond;

/* Feeds batch j (0-based) of an estimate into the arena's inputs; its row count, or -1. */
typedef int64_t (*PrecondFeed)(void *ctx, int j);

/* On e (compiled with the hvp program), batches of `rows`.  0, or -1 with the reason. */
int precond_open(Precond *p, Exec *e, const OptSpec *o, int64_t rows, char *err, size_t nerr);
void precond_close(Precond *p);
/* A new estimate at the current weights from o->estimate + o->hvps batches fed by `feed`
 * (o->estimate alone for the variants): alpha always, the eigenpairs for pre_sgd, whose
 * eigenvectors it also writes into the `<w>.pre_qK` state weights (so that checkpoints carry
 * them).  Leaves the arena's gradient that of the last batch fed. */
int precond_estimate(Precond *p, PrecondFeed feed, void *ctx, char *err, size_t nerr);
/* g <- g + sum_k (alpha / lambda_k - 1) q_k q_k^T g on the gradients in the arena, so that
 * sgd's step lr g is lr (I - Q Q^T) g + lr alpha Q Lambda^-1 Q^T g. */
int precond_apply(Precond *p, char *err, size_t nerr);
/* After a resume: alpha and the eigenvalues from the checkpoint (precond_format's text), the
 * eigenvectors from the state weights.  0, or -1 with the reason. */
int precond_restore(Precond *p, const char *text, char *err, size_t nerr);
/* "alpha prior_w noise estimates lambda_1 .. lambda_rank", exactly (%a), for a checkpoint. */
void precond_format(const Precond *p, char *buf, size_t n);

#endif
