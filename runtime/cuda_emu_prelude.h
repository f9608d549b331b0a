/* cuda_emu_prelude.h: lets the host C compiler build the CUDA C that render_cuda.c writes,
 * unchanged, for the emulated CUDA device (--device cuda-emu).  Included first (-include) when
 * runtime/device_cuda.c compiles the kernels into a shared object; never seen by NVRTC.
 *
 * What it emulates, and how:
 *   threadIdx, blockIdx, blockDim, gridDim   globals of the shared object (.x is used);
 *   a launch                                 nnc_emu_launch(): the blocks one after another;
 *   the threads of a block                   a plain loop over threadIdx.x when the kernel has
 *                                            no barrier; otherwise one fiber per thread, run
 *                                            round-robin, each until its next barrier;
 *   __syncthreads()                          the fiber yields to the block's scheduler; once
 *                                            every fiber has yielded, all resume: a barrier;
 *   __shared__                               static storage: one block runs at a time, and its
 *                                            fibers share it.
 * Fibers switch with a few instructions of x86-64 assembly (callee-saved registers and the
 * stack pointer), so a barrier costs nanoseconds.  Kernel arguments arrive as CUDA's
 * cuLaunchKernel passes them: an array of pointers to each parameter. */
#ifndef NNC_CUDA_EMU_PRELUDE_H
#define NNC_CUDA_EMU_PRELUDE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NNC_ARGS_SLOTS
#error "compile with -DNNC_ARGS_SLOTS=<slots>, as device_cuda.c does"
#endif

#define NNC_KERNEL
#define NNC_INF INFINITY
static inline float nnc_emu_as_float(int i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}
static inline int nnc_emu_as_int(float f) {
    int i;
    memcpy(&i, &f, sizeof i);
    return i;
}
#define NNC_AS_FLOAT(i) nnc_emu_as_float(i)
#define NNC_AS_INT(f) nnc_emu_as_int(f)
#define NNC_ARGS_DEFINED
typedef struct NncArgs {
    void *p[NNC_ARGS_SLOTS];
} NncArgs;

#define __global__
#define __device__
#define __shared__ static
#define __restrict__ __restrict

typedef struct {
    unsigned x, y, z;
} nnc_dim3;
static nnc_dim3 threadIdx, blockIdx, blockDim, gridDim;

typedef void (*nnc_kernel_fn)(long long rows, const float *scalars, NncArgs args);

enum { NNC_EMU_MAX_THREADS = 1024, NNC_EMU_STACK = 64 * 1024 };

static void *nnc_sched_sp;                         /* the scheduler's stack pointer */
static void *nnc_fiber_sp[NNC_EMU_MAX_THREADS];    /* each fiber's, while it waits */
static unsigned char nnc_fiber_done[NNC_EMU_MAX_THREADS];
static char *nnc_stacks;
static unsigned nnc_current;
static int nnc_in_fibers;
static nnc_kernel_fn nnc_fn;
static long long nnc_rows;
static const float *nnc_scalars;
static NncArgs nnc_args;

#if !defined(__x86_64__)
#error "the emulated CUDA device switches fibers with x86-64 assembly"
#endif

/* nnc_emu_switch(save, to): save the callee-saved registers on this stack and its pointer in
 * *save, then continue on the stack `to` (whose top holds registers saved the same way). */
void nnc_emu_switch(void **save, void *to);
__asm__(".text\n"
        ".globl nnc_emu_switch\n"
        ".type nnc_emu_switch, @function\n"
        "nnc_emu_switch:\n"
        "    pushq %rbp\n    pushq %rbx\n    pushq %r12\n    pushq %r13\n    pushq %r14\n    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    popq %r15\n    popq %r14\n    popq %r13\n    popq %r12\n    popq %rbx\n    popq %rbp\n"
        "    ret\n"
        ".size nnc_emu_switch, .-nnc_emu_switch\n");

__attribute__((destructor)) static void nnc_emu_unload(void) { free(nnc_stacks); }

static void nnc_fiber_main(void) {
    nnc_fn(nnc_rows, nnc_scalars, nnc_args);
    nnc_fiber_done[nnc_current] = 1;
    nnc_emu_switch(&nnc_fiber_sp[nnc_current], nnc_sched_sp); /* never resumed */
    abort();
}

static void nnc_emu_syncthreads(void) {
    if (!nnc_in_fibers) {
        fprintf(stderr, "nnc cuda-emu: __syncthreads() in a kernel launched without barrier support\n");
        abort();
    }
    nnc_emu_switch(&nnc_fiber_sp[nnc_current], nnc_sched_sp);
}
#define __syncthreads() nnc_emu_syncthreads()

/* A fresh fiber for thread t: its stack holds six zero registers and then the address the
 * first switch returns to, aligned as if nnc_fiber_main had been called. */
static void nnc_fiber_start(unsigned t) {
    uintptr_t top = ((uintptr_t)(nnc_stacks + (size_t)(t + 1) * NNC_EMU_STACK)) & ~(uintptr_t)15;
    void **s = (void **)top;
    *--s = NULL;                   /* nnc_fiber_main's return address (never used) */
    *--s = (void *)nnc_fiber_main; /* where the switch's `ret` goes */
    for (int r = 0; r < 6; r++) *--s = NULL;
    nnc_fiber_sp[t] = s;
    nnc_fiber_done[t] = 0;
}

/* Launch: grid blocks of `block` threads; params as for cuLaunchKernel (rows, scalars, args). */
int nnc_emu_launch(nnc_kernel_fn fn, unsigned grid, unsigned block, int barrier, void **params) {
    if (block == 0 || block > NNC_EMU_MAX_THREADS || grid == 0) return 1;
    nnc_fn = fn;
    nnc_rows = *(long long *)params[0];
    nnc_scalars = *(const float **)params[1];
    nnc_args = *(NncArgs *)params[2];
    blockDim = (nnc_dim3){block, 1, 1};
    gridDim = (nnc_dim3){grid, 1, 1};
    threadIdx = blockIdx = (nnc_dim3){0, 0, 0};
    if (barrier && !nnc_stacks && !(nnc_stacks = malloc((size_t)NNC_EMU_MAX_THREADS * NNC_EMU_STACK))) return 2;
    for (unsigned b = 0; b < grid; b++) {
        blockIdx.x = b;
        if (!barrier) {
            for (unsigned t = 0; t < block; t++) {
                threadIdx.x = t;
                fn(nnc_rows, nnc_scalars, nnc_args);
            }
            continue;
        }
        for (unsigned t = 0; t < block; t++) nnc_fiber_start(t);
        nnc_in_fibers = 1;
        for (unsigned left = block; left > 0;)
            for (unsigned t = 0; t < block; t++) {
                if (nnc_fiber_done[t]) continue;
                nnc_current = t;
                threadIdx.x = t;
                nnc_emu_switch(&nnc_sched_sp, nnc_fiber_sp[t]);
                if (nnc_fiber_done[t]) left--;
            }
        nnc_in_fibers = 0;
    }
    return 0;
}

#endif
