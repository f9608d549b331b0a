/* nuts.h: one transition of the no-U-turn sampler (Hoffman and Gelman 2014) with multinomial
 * sampling of the trajectory and the generalised U-turn criterion checked across the merged
 * subtrees, as Stan's base_nuts does (Betancourt 2017), over a potential U and its gradient
 * given by a callback.  sample.c calls it with the model's gradient program; the leapfrog
 * steps run here, in double precision, with every position rounded to float so that the
 * potential is evaluated at exactly the position kept. */
#ifndef NNC_NUTS_H
#define NNC_NUTS_H

#include <stdbool.h>
#include <stdint.h>

#include "rng.h"

/* U(q) into *u and grad U(q) into g; non-zero after an error (already reported). */
typedef int (*NutsGradient)(void *ctx, const double *q, double *g, double *u);

typedef struct NutsWork NutsWork;
typedef struct {
    int64_t dim;
    int max_depth;
    const float *minv; /* the diagonal inverse mass matrix */
    Rng *rng;
    NutsGradient grad;
    void *ctx;
    NutsWork *w; /* the trees' vectors, allocated by nuts_init */
} Nuts;

typedef struct {
    double accept_stat;  /* the mean Metropolis acceptance over the trajectory's points */
    double energy_error; /* of the last point built (H - H0) */
    int depth;           /* the tree's depth: 2^depth - 1 leapfrog steps at most */
    int64_t leapfrogs;
    bool divergent;
} NutsInfo;

void nuts_init(Nuts *n);
void nuts_free(Nuts *n);
/* One transition from (q, g = grad U(q), u = U(q)), which it replaces by the draw. */
int nuts_transition(Nuts *n, double eps, double *q, double *g, double *u, NutsInfo *info);
/* One leapfrog step of size eps from q with a fresh momentum: *dh = H0 - H1 (-inf when the
 * end is not finite).  q, g and u are left as they were (for the step-size heuristic). */
int nuts_probe(Nuts *n, double eps, const double *q, const double *g, double u, double *dh);

#endif
