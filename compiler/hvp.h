/* hvp.h: the exact Hessian-vector product as the graph's `hvp` program (hvp.c). */
#ifndef NNC_HVP_H
#define NNC_HVP_H

#include "diag.h"
#include "ir.h"

/* Whether the loss is twice differentiable at the weights; else a located error that begins
 * with `why` ("a Hessian-vector product", "pre_sgd") and false. */
bool hvp_check(const Graph *g, Diag *diag, const char *why);
/* Adds the direction weights (<w>.hvp_dir, Weight.dir), H v (Weight.hvp) and the program
 * `hvp`, run after `grad`.  After programs_build. */
void hvp_graph(Graph *g);

#endif
