/* small_gemms.c: the five matrix products of xsec_bnn's gradient (19-20-1 PReLU, batch 1000),
 * OpenBLAS's cblas_sgemm against nnc's gemm_small (runtime/gemm_small.c), on one thread,
 * interleaved; median microseconds per call of 7 rounds of 2000 calls each.
 * Build: cmake --build build --target bench_small_gemms; run OPENBLAS_NUM_THREADS=1
 * ./build/bench/bench_small_gemms */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "gemm_small.h"
#include "bench_common.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    if (!gemm_small_available()) {
        printf("this CPU has no AVX2 and FMA: gemm_small does not run here\n");
        return 0;
    }
    const struct {
        const char *what;
        int m, n, k;
        bool ta, tb;
    } g[] = {{"layer 1 forward  x W1^T", 1000, 20, 19, false, true}, {"layer 2 forward  h W2^T", 1000, 1, 20, false, true},
             {"layer 2 input grad  dy W2", 1000, 20, 1, false, false}, {"layer 2 weight grad  dy^T h", 1, 20, 1000, true, false},
             {"layer 1 weight grad  dh^T x", 20, 19, 1000, true, false}};
    float *A = malloc(sizeof(float) * 40000), *B = malloc(sizeof(float) * 40000), *C = malloc(sizeof(float) * 40000);
    for (int i = 0; i < 40000; i++) A[i] = (float)(i % 13) * 0.1f - 0.6f, B[i] = (float)(i % 7) * 0.1f - 0.3f;
    enum { ROUNDS = 7, CALLS = 2000 };
    double total[2] = {0, 0};
    printf("%-30s %16s %10s %10s %7s\n", "product", "m x n x k", "OpenBLAS", "gemm_small", "ratio");
    for (size_t q = 0; q < sizeof g / sizeof *g; q++) {
        int lda = g[q].ta ? g[q].m : g[q].k, ldb = g[q].tb ? g[q].k : g[q].n, ldc = g[q].n;
        double t[2][ROUNDS];
        for (int r = 0; r < ROUNDS; r++)
            for (int which = 0; which < 2; which++) {
                double t0 = bench_now();
                for (int c = 0; c < CALLS; c++)
                    if (which == 0)
                        cblas_sgemm(CblasRowMajor, g[q].ta ? CblasTrans : CblasNoTrans, g[q].tb ? CblasTrans : CblasNoTrans, g[q].m,
                                    g[q].n, g[q].k, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
                    else
                        gemm_small(g[q].ta, g[q].tb, g[q].m, g[q].n, g[q].k, A, lda, B, ldb, C, ldc);
                t[which][r] = (bench_now() - t0) / CALLS * 1e6;
            }
        qsort(t[0], ROUNDS, sizeof(double), cmp);
        qsort(t[1], ROUNDS, sizeof(double), cmp);
        double a = t[0][ROUNDS / 2], b = t[1][ROUNDS / 2];
        total[0] += a, total[1] += b;
        char shape[48];
        snprintf(shape, sizeof shape, "%d x %d x %d", g[q].m, g[q].n, g[q].k);
        printf("%-30s %16s %8.2f us %8.2f us %6.2fx\n", g[q].what, shape, a, b, a / b);
    }
    printf("%-30s %16s %8.2f us %8.2f us %6.2fx\n", "all five", "", total[0], total[1], total[0] / total[1]);
    free(A);
    free(B);
    free(C);
    return 0;
}
