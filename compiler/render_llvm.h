/* render_llvm.h: the CPU backend.  Renders a Plan as an LLVM module (one function per kernel,
 * and an entry wrapper per kernel, gathered in a table), optimises it at O3 for the
 * host CPU, prints it (IR or assembly), and JIT-compiles it with LLJIT.
 * The device layer (runtime/device_cpu.c) runs programs by calling kernels from the table. */
#ifndef NNC_RENDER_LLVM_H
#define NNC_RENDER_LLVM_H

#include "kernel.h"

/* Every loop kernel k of the plan has an entry  void entry(void **args, const float *scalars,
 * int64_t rows)  taking its buffer pointers in argument order; the module exports the table
 * `nnc_kernels`, one entry per plan kernel (NULL for GEMMs, which the device does itself). */
typedef void (*KernelEntry)(void *const *args, const float *scalars, int64_t rows);

typedef struct LlvmModule LlvmModule;
typedef struct LlvmJit LlvmJit;

/* NULL with a message in err on failure (an LLVM or host problem, not a user error). */
LlvmModule *llvm_render(const Plan *p, char *err, size_t nerr);
void llvm_module_free(LlvmModule *m);
char *llvm_print_ir(LlvmModule *m);                 /* malloc'd */
char *llvm_emit_asm(LlvmModule *m, char *err, size_t nerr); /* malloc'd */

/* Consumes the module; *table receives the kernel table (Plan.nkernel entries). */
LlvmJit *llvm_jit(LlvmModule *m, const KernelEntry **table, char *err, size_t nerr);
void llvm_jit_free(LlvmJit *j);

#endif
