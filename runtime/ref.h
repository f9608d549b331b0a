/* ref.h: the reference interpreter, the oracle of every test.  Executes a Graph node by node
 * in double precision with plain C loops, one hand-written case per op, sharing no code with
 * the kernel definitions the backends compile (elementwise functions use the double-precision
 * column of compiler/elementwise.c, written apart from its kernel column).  Weights, inputs and scalar slots are set by
 * the caller; update nodes change the weight values in place. */
#ifndef NNC_REF_H
#define NNC_REF_H

#include "ir.h"

typedef struct {
    const Graph *g;
    int64_t rows; /* batch size */
    double **val; /* per node */
    double *scalar; /* per scalar slot */
} RefState;

RefState *ref_new(const Graph *g, int64_t rows);
void ref_free(RefState *r);
/* Number of values node `id` holds at this batch size. */
int64_t ref_size(const RefState *r, int id);
/* Runs the nodes with mask[id] (all nodes when mask is NULL) in order.  Leaves are not
 * computed: INPUT and WEIGHT values are whatever the caller stored. */
void ref_run(RefState *r, const bool *mask);
/* Scalar slots start from the values in the graph's table. */
void ref_reset_scalars(RefState *r);

#endif
