/* exec.h: a planned graph made runnable on the CPU: its JIT-compiled step functions, the
 * arena every buffer lives in, and the run-time scalar slots.  The training loop, gradcheck
 * and the tests all run models through this; a second device will slot in here. */
#ifndef NNC_EXEC_H
#define NNC_EXEC_H

#include "kernel.h"
#include "render_llvm.h"

typedef struct {
    const Plan *plan;
    const Graph *g;
    char *arena;
    float *scalars;
    StepTable fn;
    LlvmJit *jit;
    double compile_s;
} Exec;

/* Renders and JIT-compiles the plan and allocates a zeroed arena; -1 with a message. */
int exec_new(Exec *e, const Plan *plan, char *err, size_t nerr);
void exec_free(Exec *e);
/* The buffer of an IR node inside the arena. */
void *exec_buf(const Exec *e, int node);
/* Element count of node's buffer at a batch of `rows`. */
int64_t exec_numel(const Exec *e, int node, int64_t rows);
void exec_run(const Exec *e, int prog, int64_t rows);
/* Scalar slots from the graph's table (param values, learning rate). */
void exec_reset_scalars(Exec *e);

#endif
