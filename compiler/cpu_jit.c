/* cpu_jit.c: the CPU device's kernels in nnc itself: the plan rendered by the LLVM backend and
 * JIT-compiled for the host (see cpu_kernels_open in runtime/device.h).  Compiled kernels are
 * shared by every open plan with the same signature and the same short rows' column counts
 * (the JIT compiles short rows for their planned count only): after pruning, the re-planned
 * model at its new widths runs the code already compiled unless a short row narrowed.  A
 * trainer built by `nnc build` provides these two functions differently, from kernels
 * compiled ahead of time. */
#include "device.h"
#include "render_llvm.h"

typedef struct {
    uint64_t signature;
    LlvmJit *jit;
    const KernelEntry *table;
    int users;
} Compiled;

static Compiled compiled[16];

/* What compiled code a plan can share: its signature and its short rows' column counts. */
static uint64_t jit_key(const Plan *plan) {
    uint64_t h = plan_signature(plan);
    for (int i = 0; i < plan->nkernel; i++)
        if (llvm_short_row(&plan->kernel[i])) h = (h ^ (uint64_t)kernel_cols(&plan->kernel[i])) * 0x100000001b3ull;
    return h;
}

const KernelEntry *cpu_kernels_open(const Plan *plan, void **handle, char *err, size_t nerr) {
    uint64_t sig = jit_key(plan);
    Compiled *free_slot = NULL;
    for (int i = 0; i < 16; i++) {
        if (compiled[i].users && compiled[i].signature == sig) {
            compiled[i].users++;
            *handle = &compiled[i];
            return compiled[i].table;
        }
        if (!compiled[i].users && !free_slot) free_slot = &compiled[i];
    }
    const KernelEntry *table = NULL;
    LlvmModule *m = llvm_render(plan, NULL, true, err, nerr);
    LlvmJit *jit = m ? llvm_jit(m, &table, err, nerr) : NULL;
    if (!jit) return NULL;
    if (!free_slot) { /* more than 16 different plans open at once: not shared */
        *handle = jit;
        return table;
    }
    *free_slot = (Compiled){sig, jit, table, 1};
    *handle = free_slot;
    return table;
}

void cpu_kernels_close(void *handle) {
    for (int i = 0; i < 16; i++)
        if (handle == &compiled[i]) {
            if (--compiled[i].users == 0) llvm_jit_free(compiled[i].jit);
            return;
        }
    llvm_jit_free(handle);
}
