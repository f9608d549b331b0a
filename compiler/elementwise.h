/* elementwise.h: the table of elementwise functions y = f(x; a).  One row per function gives
 * its forward op and the op of its derivative dy * f'(x), the kernel expressions of both (used
 * by opkernels.c for every backend) and their double-precision references (used by
 * runtime/ref.c, the oracle).  A new activation or log-density is one row here, one case in
 * tests/ops and, for its second derivative, one rule in autodiff.c. */
#ifndef NNC_ELEMENTWISE_H
#define NNC_ELEMENTWISE_H

#include "kernel.h"

typedef struct {
    Op op;   /* y = f(x; a), a = attr0 */
    Op grad; /* dy * f'(x; a), inputs (dy, x); OP_COUNT when autodiff writes it with other ops */
    int (*kx)(KBuilder *kb, int x, double a);          /* f as a kernel expression */
    int (*dkx)(KBuilder *kb, int dy, int x, double a); /* dy * f'(x) as a kernel expression */
    double (*ref)(double x, double a);                 /* f in double precision */
    double (*dref)(double dy, double x, double a);     /* dy * f'(x) in double precision */
} ElemFn;

/* The row of a function, found by its forward op or by its derivative op; NULL otherwise. */
const ElemFn *elem_fn(Op op);

/* Shared building blocks of stable forms, for other kernels (size gates, losses). */
int elem_sigmoid_kx(KBuilder *kb, int x);
double elem_sigmoid_ref(double x);
/* A standard normal from a kernel uniform in [0, 1) (elementwise.c says how), and its reference. */
int elem_normal_kx(KBuilder *kb, int u);
double elem_normal_ref(double u);

#endif
