/* render_llvm.h: the CPU backend.  Renders a Plan as an LLVM module (one function per kernel,
 * one step function per program: nnc_grad, nnc_update, nnc_eval, and a _checked variant of
 * each), optimises it at O3 for the
 * host CPU, prints it (IR or assembly), and JIT-compiles it with LLJIT.
 * A step function has the signature  void step(void *arena, const float *scalars, int64_t rows). */
#ifndef NNC_RENDER_LLVM_H
#define NNC_RENDER_LLVM_H

#include "kernel.h"

typedef void (*StepFn)(void *arena, const float *scalars, int64_t rows);
/* The same program calling hook(ctx, k) after kernel k (an index into Plan.kernel): used to
 * find the first kernel that produced a NaN or an infinity. */
typedef void (*KernelHook)(void *ctx, int kernel);
typedef void (*CheckedStepFn)(void *arena, const float *scalars, int64_t rows, KernelHook hook, void *ctx);

typedef struct {
    StepFn step[PROG_COUNT];
    CheckedStepFn checked[PROG_COUNT];
} StepTable;

typedef struct LlvmModule LlvmModule;
typedef struct LlvmJit LlvmJit;

/* NULL with a message in err on failure (an LLVM or host problem, not a user error). */
LlvmModule *llvm_render(const Plan *p, char *err, size_t nerr);
void llvm_module_free(LlvmModule *m);
char *llvm_print_ir(LlvmModule *m);                 /* malloc'd */
char *llvm_emit_asm(LlvmModule *m, char *err, size_t nerr); /* malloc'd */

/* Consumes the module; fills the step functions. */
LlvmJit *llvm_jit(LlvmModule *m, StepTable *fn, char *err, size_t nerr);
void llvm_jit_free(LlvmJit *j);

#endif
