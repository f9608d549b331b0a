/* device.h: where kernels run.  A small vtable (alloc, free, upload, download, launch, gemm)
 * that exec.c's one orchestration loop drives for every device: the CPU (compiled kernels + OpenBLAS),
 * a CUDA GPU (NVRTC + driver API + cuBLAS, all loaded with dlopen), and the emulated CUDA
 * device that runs the same generated CUDA C on the host for testing.
 * GEMMs are given with row-major semantics (the plan's); a device maps them onto its BLAS. */
#ifndef NNC_DEVICE_H
#define NNC_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "kernel.h"

typedef struct Device Device;
struct Device {
    const char *name;   /* "cpu", "cuda", "cuda-emu" */
    char info[160];     /* what it is, for the training header */
    bool host_memory;   /* its buffers are ordinary host addresses */
    void *(*alloc)(Device *d, size_t bytes);
    void (*free)(Device *d, void *p);
    int (*upload)(Device *d, void *dst, const void *src, size_t bytes);
    int (*download)(Device *d, void *dst, const void *src, size_t bytes);
    /* run loop kernel k, the plan's kernel number `index`, on buffers args[]; the plan may be
     * a re-planned one with the same signature as the one the device was opened for */
    int (*launch)(Device *d, const Kernel *k, int index, void *const *args, const float *scalars, int64_t rows);
    /* C = op(A) op(B), row-major, for a GEMM kernel of the plan */
    int (*gemm)(Device *d, const Kernel *k, void *const *args, int64_t rows);
    int (*sync)(Device *d);
    void (*destroy)(Device *d);
    char err[1024]; /* the last failure */
};

/* "cpu", "cuda", "cuda-emu" or "auto" (CUDA when it works, else the CPU, saying why on
 * `note`).  NULL with a one-line reason in err. */
Device *device_open(const char *kind, const Plan *plan, FILE *note, char *err, size_t nerr);
Device *device_cpu_new(const Plan *plan, char *err, size_t nerr);

/* Where the CPU device's compiled kernels come from; the program that links the runtime
 * provides these.  nnc JIT-compiles the plan with LLVM (compiler/cpu_jit.c); a trainer built by
 * `nnc build` returns the table linked into it, after checking the plan's signature
 * (runtime/trainer_main.c).  NULL with a reason in err. */
const KernelEntry *cpu_kernels_open(const Plan *plan, void **handle, char *err, size_t nerr);
void cpu_kernels_close(void *handle);
Device *device_cuda_new(const Plan *plan, bool emulated, char *err, size_t nerr);
void device_close(Device *d);

/* The row-major GEMM of a plan kernel, as dimensions: C[m x n] = op(A)[m x k] op(B)[k x n]. */
typedef struct {
    int m, n, k, lda, ldb, ldc;
    bool ta, tb;
} GemmShape;
GemmShape device_gemm_shape(const Kernel *k, int64_t rows);
/* C = op(A) op(B) for shape s on the host: gemm_small or OpenBLAS (device_cpu.c says which). */
void device_sgemm(GemmShape s, const float *A, const float *B, float *C);
/* Whether a GEMM of m x n x k multiply-adds is small: one thread does it (see device_sgemm). */
bool device_gemm_small(int64_t m, int64_t n, int64_t k);
/* Whether tall GEMMs (a convolution's) go to gemm_small on this CPU (device_cpu.c says why). */
bool device_tall_in_gemm_small(void);
/* The threads the CPU device uses (NNC_THREADS, else OpenBLAS's count: the cores by default). */
int device_cpu_threads(void);
/* Sets the CPU device's threads (loop kernels and matrix products) to n before any device
 * exists, as if OPENBLAS_NUM_THREADS=n: several ranks on one machine share its cores. */
void device_cpu_set_threads(int n);

#endif
