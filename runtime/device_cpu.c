/* device_cpu.c: the CPU device.  Kernels are the LLVM backend's compiled entries (JIT-compiled
 * by nnc, or linked into a built trainer: see cpu_kernels_open in device.h), GEMMs are
 * OpenBLAS's cblas_sgemm, memory is host memory. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"

typedef struct {
    Device d;
    void *kernels; /* cpu_kernels_open's handle */
    const KernelEntry *table;
} CpuDevice;

GemmShape device_gemm_shape(const Kernel *k, int64_t rows) {
    GemmShape s;
    s.m = (int)kdim_value(k->m, rows);
    s.n = (int)kdim_value(k->n, rows);
    s.k = (int)kdim_value(k->k, rows);
    s.ta = k->ta;
    s.tb = k->tb;
    s.lda = k->ta ? s.m : s.k;
    s.ldb = k->tb ? s.k : s.n;
    s.ldc = s.n;
    return s;
}

static void *cpu_alloc(Device *d, size_t bytes) {
    (void)d;
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p) memset(p, 0, bytes);
    return p;
}
static void cpu_free(Device *d, void *p) {
    (void)d;
    free(p);
}
static int cpu_copy(Device *d, void *dst, const void *src, size_t bytes) {
    (void)d;
    memcpy(dst, src, bytes);
    return 0;
}
static int cpu_launch(Device *d, const Kernel *k, int index, void *const *args, const float *scalars, int64_t rows) {
    ((CpuDevice *)d)->table[index](args, scalars, rows, kernel_cols(k));
    return 0;
}
static int cpu_gemm(Device *d, const Kernel *k, void *const *args, int64_t rows) {
    (void)d;
    GemmShape s = device_gemm_shape(k, rows);
    cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k, 1.0f,
                args[0], s.lda, args[1], s.ldb, 0.0f, args[2], s.ldc);
    return 0;
}
static int cpu_sync(Device *d) {
    (void)d;
    return 0;
}
static void cpu_destroy(Device *d) {
    cpu_kernels_close(((CpuDevice *)d)->kernels);
    free(d);
}

Device *device_cpu_new(const Plan *plan, char *err, size_t nerr) {
    CpuDevice *c = util_calloc(1, sizeof *c);
    if (!(c->table = cpu_kernels_open(plan, &c->kernels, err, nerr))) {
        free(c);
        return NULL;
    }
    Device *d = &c->d;
    d->name = "cpu";
    snprintf(d->info, sizeof d->info, "the host CPU: LLVM-compiled kernels, OpenBLAS GEMMs");
    d->host_memory = true;
    d->alloc = cpu_alloc;
    d->free = cpu_free;
    d->upload = cpu_copy;
    d->download = cpu_copy;
    d->launch = cpu_launch;
    d->gemm = cpu_gemm;
    d->sync = cpu_sync;
    d->destroy = cpu_destroy;
    return d;
}

void device_close(Device *d) {
    if (d) d->destroy(d);
}
