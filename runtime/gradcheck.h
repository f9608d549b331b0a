/* gradcheck.h: `nnc gradcheck`: a whole model's gradients checked three ways on a batch of
 * its real training data: autodiff (ref.c, double) against central finite differences of the
 * loss, the LLVM backend's gradients against ref.c's, and one optimiser step of both. */
#ifndef NNC_GRADCHECK_H
#define NNC_GRADCHECK_H

#include <stdio.h>

#include "exec.h"
#include "model.h"

typedef struct {
    int per_weight; /* finite-difference samples per weight tensor */
    FILE *out;
} GradcheckOptions;

/* 0 all checks pass, 1 a check failed, -1 the data could not be loaded (reported). */
int gradcheck_run(const Model *m, Exec *ex, const GradcheckOptions *o);

#endif
