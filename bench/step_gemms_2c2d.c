/* step_gemms_2c2d.c: the eleven matrix products of one fashion_2c2d training step (batch 128),
 * as nnc issues them through OpenBLAS (shapes and transposes from `nnc emit --plan
 * models/fashion_2c2d.nn`: C[M,N] = op(A) op(B), row-major, beta = 0), each timed on its own:
 * the median of REPS calls, its GFLOP/s, and the sum, the floor under nnc's step.
 * Build: cmake --build build --target bench_step_gemms_2c2d; run ./build/bench/bench_step_gemms_2c2d
 * (OPENBLAS_NUM_THREADS sets the threads). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    const char *name, *what;
    int ta, tb, m, n, k;
} Gemm;

int main(void) {
    enum { B = 128, REPS = 15 };
    const Gemm g[] = {
        {"k1", "conv1 forward: patches x W1^T", 0, 1, B * 784, 32, 25},
        {"k5", "conv2 forward: patches x W2^T", 0, 1, B * 196, 64, 800},
        {"k8", "dense h forward", 0, 1, B, 1024, 3136},
        {"k10", "dense logits forward", 0, 1, B, 10, 1024},
        {"k15", "logits: dx = dy W", 0, 0, B, 1024, 10},
        {"k17", "logits: dW = dy^T x", 1, 0, 10, 1024, B},
        {"k18", "h: dx = dy W", 0, 0, B, 3136, 1024},
        {"k19", "h: dW = dy^T x", 1, 0, 1024, 3136, B},
        {"k24", "conv2: dpatches = dy W2", 0, 0, B * 196, 800, 64},
        {"k28", "conv2: dW2 = dy^T patches", 1, 0, 64, 800, B * 196},
        {"k34", "conv1: dW1 = dy^T patches", 1, 0, 32, 25, B * 784},
    };
    const int ng = (int)(sizeof g / sizeof g[0]);
    double total = 0, flops = 0;
    printf("| kernel | product | M | N | K | ms (median of %d) | GFLOP/s |\n|---|---|---|---|---|---|---|\n", REPS);
    for (int i = 0; i < ng; i++) {
        const Gemm *p = &g[i];
        float *a = bench_filled((size_t)p->m * (size_t)p->k), *b = bench_filled((size_t)p->k * (size_t)p->n),
              *c = bench_filled((size_t)p->m * (size_t)p->n);
        int lda = p->ta ? p->m : p->k, ldb = p->tb ? p->k : p->n;
        double t[REPS];
        for (int r = -2; r < REPS; r++) { /* two warm-up calls */
            double t0 = bench_now();
            cblas_sgemm(CblasRowMajor, p->ta ? CblasTrans : CblasNoTrans, p->tb ? CblasTrans : CblasNoTrans, p->m, p->n,
                        p->k, 1.0f, a, lda, b, ldb, 0.0f, c, p->n);
            if (r >= 0) t[r] = bench_now() - t0;
        }
        qsort(t, REPS, sizeof t[0], cmp);
        double f = 2.0 * p->m * p->n * p->k;
        printf("| %s | %s | %d | %d | %d | %.2f | %.1f |\n", p->name, p->what, p->m, p->n, p->k, t[REPS / 2] * 1e3,
               f / t[REPS / 2] * 1e-9);
        total += t[REPS / 2];
        flops += f;
        free(a);
        free(b);
        free(c);
    }
    printf("\nall %d: %.1f ms per step, %.2f GFLOP, %.1f GFLOP/s (%.2f steps/s at most)\n", ng, total * 1e3, flops * 1e-9,
           flops / total * 1e-9, 1 / total);
    return 0;
}
