/* render_llvm.h: the CPU backend.  Renders a Plan as an LLVM module (one function per kernel,
 * and an entry wrapper per kernel, gathered in a table), optimises it at O3 for the
 * host CPU, prints it (IR or assembly), and JIT-compiles it with LLJIT.
 * The device layer (runtime/device_cpu.c) runs programs by calling kernels from the table. */
#ifndef NNC_RENDER_LLVM_H
#define NNC_RENDER_LLVM_H

#include "kernel.h"

/* The module exports the table `nnc_kernels` of KernelEntry (kernel.h), one per plan kernel
 * (NULL for GEMMs, which the device does itself). */
typedef struct LlvmModule LlvmModule;
typedef struct LlvmJit LlvmJit;

/* NULL with a message in err on failure (an LLVM or host problem, not a user error).  `cpu`
 * is the CPU to optimise for: NULL or "host" (this machine's CPU and features) or a name such
 * as "x86-64-v3" (llvm_known_cpu lists the ones nnc build accepts).  `planned_only`: the code
 * runs only the plan it is made for, at its planned column counts (the JIT, where pruning
 * recompiles); false for a trainer, which runs pruned dense layers' narrower rows through the
 * same code, so that every short-row kernel also needs its copy for any count. */
LlvmModule *llvm_render(const Plan *p, const char *cpu, bool planned_only, char *err, size_t nerr);
bool llvm_known_cpu(const char *cpu);
/* Whether kernel k's rows are short: its code has a copy for the planned column count, the
 * only copy when planned_only (so such code runs no other count). */
bool llvm_short_row(const Kernel *k);
/* Writes the module as an object file (for `nnc build`). */
int llvm_emit_object(LlvmModule *m, const char *path, char *err, size_t nerr);
/* An object file defining NUL-terminated constant strings names[i] = texts[i] and one
 * constant uint64_t, for the CPU `cpu`. */
int llvm_emit_data_object(const char *path, const char *cpu, const char *const *names, const char *const *texts,
                          int n, const char *u64_name, uint64_t u64, char *err, size_t nerr);
void llvm_module_free(LlvmModule *m);
char *llvm_print_ir(LlvmModule *m);                 /* malloc'd */
char *llvm_emit_asm(LlvmModule *m, char *err, size_t nerr); /* malloc'd */

/* Consumes the module; *table receives the kernel table (Plan.nkernel entries). */
LlvmJit *llvm_jit(LlvmModule *m, const KernelEntry **table, char *err, size_t nerr);
void llvm_jit_free(LlvmJit *j);

#endif
