/* hessian.h: Hessian-vector products of a model's training loss, and what is built on them:
 * Lanczos for the extreme eigenvalues, the dense Hessian of a small model.  Used by `nnc hvp`
 * and by the pre_sgd optimiser.
 *
 * The loss is the one the grad program computes (the mean over a batch, penalties and priors
 * as trained).  The Hessian over several batches is their product averaged, weighted by rows.
 * A vector is flat: the trained weights in the graph's order, each in its own layout. */
#ifndef NNC_HESSIAN_H
#define NNC_HESSIAN_H

#include "data.h"
#include "exec.h"

typedef enum { HVP_EXACT, HVP_FD } HvpMethod;
extern const char *const hvp_method_name[2];

typedef struct {
    Exec *e;
    HvpMethod method;
    double fd_step;  /* HVP_FD: the perturbation h v has this RMS per element (default 1e-3) */
    int64_t n;       /* elements of all trained weights */
    int nw;          /* trained weights */
    int *weight;     /* their indices in the graph */
    int64_t *off;    /* their offsets in a flat vector */
    float *tmp, *w0; /* scratch of n; HVP_FD: the weights */
    /* the batches: samples [0, nbatch * rows) of `data` (the last batch may be short) */
    const Dataset *data;
    int64_t nbatch, rows, nsamples;
    bool current;    /* one batch, whose grad program values are in the arena (HVP_EXACT) */
    int64_t products;
    double hvp_s, grad_s; /* seconds in products (past the gradient), in gradients */
    int64_t grads;
} Hessian;

/* On `e` (compiled with CompileOptions.hvp for HVP_EXACT), over batches of `rows` samples:
 * the first nbatch of `data` (nbatch <= 0: all of them), or with data NULL the batch of `rows`
 * already in the arena (the optimiser's; after an HVP_FD product its grad values are those of
 * a perturbed point, so the caller runs grad again).  0, or -1 with the reason. */
int hessian_open(Hessian *h, Exec *e, HvpMethod method, const Dataset *data, int64_t nbatch, int64_t rows, char *err,
                 size_t nerr);
void hessian_close(Hessian *h);

/* hv = H v.  0, or -1 with the reason. */
int hessian_apply(Hessian *h, const double *v, double *hv, char *err, size_t nerr);
/* The flat gradient at the current weights, averaged over the batches. */
int hessian_gradient(Hessian *h, double *g, char *err, size_t nerr);

/* Lanczos with full reorthogonalisation from a seeded random start, `iters` products (fewer if
 * it finds an invariant subspace).  ritz[0..*nritz) ascending, resid[i] the bound
 * |beta_m s_mi| on each Ritz pair's residual.  0, or -1 with the reason. */
int hessian_lanczos(Hessian *h, int iters, uint64_t seed, double *ritz, double *resid, int *nritz, char *err, size_t nerr);

/* The dense Hessian, column j = H e_j, symmetrised (H + H^T) / 2; n x n, row-major, malloc'd. */
double *hessian_dense(Hessian *h, char *err, size_t nerr);

#endif
