/* tall_gemms.c: the tall products of fashion_2c2d's conv2 (half the batch's rows: one thread's
 * share), nnc's gemm_small (runtime/gemm_small.c) against OpenBLAS's cblas_sgemm, each on one
 * thread, one after the other, best of 7 calls; then the same OpenBLAS product on two processes at once,
 * which shows whether the machine's two CPUs give two cores' arithmetic.  It decided where tall
 * products run (device_cpu.c, device_tall_in_gemm_small).
 * Build: cmake --build build --target bench_tall_gemms; run OPENBLAS_NUM_THREADS=1
 * ./build/bench/bench_tall_gemms */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gemm_small.h"
#include "bench_common.h"

typedef struct {
    const char *what;
    int m, n, k;
    bool ta, tb;
} Gemm;

/* best of 7 calls, in ms: gemm_small (small = true) or OpenBLAS */
static double best_ms(const Gemm *g, const float *A, const float *B, float *C, bool small) {
    int lda = g->ta ? g->m : g->k, ldb = g->tb ? g->k : g->n;
    double best = 1e9;
    for (int r = 0; r < 7; r++) {
        double t0 = bench_now();
        if (small)
            gemm_small(g->ta, g->tb, g->m, g->n, g->k, A, lda, B, ldb, C, g->n);
        else
            cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, g->m, g->n, g->k,
                        1.0f, A, lda, B, ldb, 0.0f, C, g->n);
        double t = (bench_now() - t0) * 1e3;
        if (t < best) best = t;
    }
    return best;
}

int main(void) {
    if (!gemm_small_available()) {
        printf("this CPU has no AVX2 and FMA: gemm_small does not run here\n");
        return 0;
    }
    const Gemm g[] = {{"conv2 forward: patches x W2^T", 12544, 64, 800, false, true},
                      {"conv2 patch gradient: dy W2", 12544, 800, 64, false, false}};
    printf("| product | m x n x k | gemm_small ms | OpenBLAS ms | OpenBLAS, two processes at once, ms |\n|---|---|---|---|---|\n");
    for (size_t q = 0; q < sizeof g / sizeof *g; q++) {
        const Gemm *p = &g[q];
        float *A = bench_filled((size_t)p->m * (size_t)p->k), *B = bench_filled((size_t)p->k * (size_t)p->n),
              *C = bench_filled((size_t)p->m * (size_t)p->n);
        double small = best_ms(p, A, B, C, true), blas = best_ms(p, A, B, C, false);
        int fd[2];
        if (pipe(fd)) return 1;
        pid_t child = fork();
        double mine = best_ms(p, A, B, C, false), theirs = 0;
        if (child == 0) {
            if (write(fd[1], &mine, sizeof mine) != sizeof mine) _exit(1);
            _exit(0);
        }
        if (read(fd[0], &theirs, sizeof theirs) != sizeof theirs) theirs = 0;
        waitpid(child, NULL, 0);
        close(fd[0]);
        close(fd[1]);
        printf("| %s | %d x %d x %d | %.2f | %.2f | %.2f and %.2f |\n", p->what, p->m, p->n, p->k, small, blas, mine, theirs);
        free(A);
        free(B);
        free(C);
    }
    return 0;
}
