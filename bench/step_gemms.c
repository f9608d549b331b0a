/* step_gemms.c: the floor under one fashion_mlp training step: only its matrix products
 * (3 forward, 3 weight gradients, 2 input gradients: eight, as nnc issues them), through OpenBLAS,
 * at batch 128.  Everything nnc adds on top of this is its own cost.
 * Build: cmake --build build --target bench_step_gemms; run ./build/bench/bench_step_gemms */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"

int main(void) {
    enum { B = 128, STEPS = 300 };
    const int d[4] = {784, 1024, 1024, 10};
    float *x[4], *dy[4], *w[3], *dw[3];
    for (int l = 0; l < 4; l++) {
        x[l] = bench_filled((size_t)B * (size_t)d[l]);
        dy[l] = bench_filled((size_t)B * (size_t)d[l]);
    }
    for (int l = 0; l < 3; l++) {
        w[l] = bench_filled((size_t)d[l] * (size_t)d[l + 1]);
        dw[l] = bench_filled((size_t)d[l] * (size_t)d[l + 1]);
    }
    for (int rep = 0; rep < 3; rep++) {
        double t0 = bench_now();
        for (int s = 0; s < STEPS; s++) {
            for (int l = 0; l < 3; l++) /* y = x W^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, d[l + 1], d[l], 1, x[l], d[l], w[l], d[l], 0,
                            x[l + 1], d[l + 1]);
            for (int l = 2; l >= 0; l--) {
                /* dW = dy^T x */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d[l + 1], d[l], B, 1, dy[l + 1], d[l + 1], x[l],
                            d[l], 0, dw[l], d[l]);
                if (l > 0) /* dx = dy W */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, d[l], d[l + 1], 1, dy[l + 1], d[l + 1],
                                w[l], d[l], 0, dy[l], d[l]);
            }
        }
        double ms = (bench_now() - t0) / STEPS * 1e3;
        printf("%.2f ms per step for the GEMMs alone (%.0f steps/s at most)\n", ms, 1e3 / ms);
    }
    return 0;
}
