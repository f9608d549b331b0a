/* exec.h: a planned graph made runnable on a device: the arena every buffer lives in, the
 * run-time scalar slots, each kernel's argument pointers, and the one orchestration loop that
 * runs a program (grad, update, eval) kernel by kernel on any device.  The training loop,
 * gradcheck and the tests all run models through this. */
#ifndef NNC_EXEC_H
#define NNC_EXEC_H

#include <stdio.h>

#include "data.h"
#include "device.h"
#include "kernel.h"

/* Called after kernel k of a checked run (an index into Plan.kernel). */
typedef void (*KernelHook)(void *ctx, int kernel);

typedef struct {
    const Plan *plan;
    const Graph *g;
    Device *dev;
    char *arena;        /* device address of the arena */
    float *scalars;     /* host copy of the scalar slots; uploaded before every run */
    float *scalars_dev; /* the device's copy (the same pointer on host-memory devices) */
    void ***args;       /* per kernel: device addresses of its arguments */
    double compile_s;
    int64_t baseline_rss; /* resident bytes before the arena: the runtime's own fixed cost */
    double *prof_s;       /* NNC_PROFILE: per kernel, seconds in it and calls (else NULL) */
    int64_t *prof_calls;
    void *staging;        /* exec_feed's host batch, on devices with memory of their own */
    size_t staging_bytes;
    bool draw_in_eval;    /* the eval program draws variational weights (SC_NOISE 1) instead of
                             using their means: an evaluation over draws (vi_eval.c) sets it */
    struct BayesLinear *head; /* the model's post-training head once fitted (bayes_linear.c), or
                                 NULL; checkpoints keep it */
} Exec;

/* Compiles for `device` ("cpu", "cuda", "cuda-emu", "auto"; NULL is "cpu") and allocates a
 * zeroed arena.  -1 with a one-line reason. */
int exec_new(Exec *e, const Plan *plan, const char *device, FILE *note, char *err, size_t nerr);
void exec_free(Exec *e);
/* The device address of a node's buffer (a host address when dev->host_memory). */
void *exec_buf(const Exec *e, int node);
/* Element count of node's buffer at a batch of `rows`. */
int64_t exec_numel(const Exec *e, int node, int64_t rows);
int exec_write(const Exec *e, int node, const void *src, size_t bytes);
int exec_read(const Exec *e, int node, void *dst, size_t bytes);
/* Loads samples idx[0..rows) of d into the graph's inputs and targets (d's columns are the
 * graph's inputs in order; a column the data set lacks is fed zeros).  0, or -1 with the
 * reason in e->dev->err. */
int exec_feed(Exec *e, const Dataset *d, const int64_t *idx, int64_t rows);
/* Scalar slots from the graph's table (param values, learning rate). */
void exec_reset_scalars(Exec *e);
/* Sets every scalar slot of one kind (SC_DATA_INV_N, once the data is known). */
void exec_set_scalars(Exec *e, ScalarKind kind, double value);
/* Runs a program; 0, or -1 with the reason in e->dev->err. */
int exec_run(Exec *e, int prog, int64_t rows);
int exec_run_checked(Exec *e, int prog, int64_t rows, KernelHook hook, void *ctx);

#endif
