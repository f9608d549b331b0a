/* gemm_small_test.c: runtime/gemm_small.c, the register-tiled GEMM that small products (a
 * tiny network's layers) use instead of OpenBLAS, and device_sgemm, which chooses.
 *   - Every shape with m up to 9, n up to 30 (tiles of 24 columns, a matrix-vector product,
 *     the masked edge columns, edge tiles of 1 to 4 rows, A^T B done as its transpose where that
 *     uses the lanes better), several k, both transposes of both operands, and leading
 *     dimensions wider than the matrices: each element of C bit for bit equal to its model, a
 *     chain of correctly rounded fused multiply-adds (fmaf) in k order, or for one column the
 *     8-lane dot product summed in its fixed order; and within the forward error bound of a
 *     double-precision product.
 *   - Nothing outside C's m x n elements is written (a guard value around and between rows).
 *   - device_sgemm on a small and on a big GEMM (which goes to OpenBLAS) against double, and
 *     on tall ones (a convolution's) both ways device_tall_in_gemm_small may send them: in
 *     gemm_small, whose rows the threads share, the bits of one gemm_small call over all the
 *     rows, whatever the number of threads; in OpenBLAS, in the error bound.
 * Exits 77 (skipped) on a CPU without AVX2 and FMA, where OpenBLAS does every GEMM. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "gemm_small.h"

static int failures;

static float rnd(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static float opa(const float *A, int lda, bool ta, int i, int p) { return ta ? A[p * lda + i] : A[i * lda + p]; }
static float opb(const float *B, int ldb, bool tb, int p, int j) { return tb ? B[j * ldb + p] : B[p * ldb + j]; }

/* the value gemm_small promises for C[i, j] */
static float model(const float *A, int lda, bool ta, const float *B, int ldb, bool tb, int n, int k, int i, int j) {
    if (n == 1 && !ta) { /* 8 lanes along k, then (l0+l4 + l2+l6) + (l1+l5 + l3+l7) */
        float lane[8] = {0};
        for (int p = 0; p < k; p++) lane[p % 8] = fmaf(opa(A, lda, ta, i, p), opb(B, ldb, tb, p, j), lane[p % 8]);
        float s[4];
        for (int l = 0; l < 4; l++) s[l] = lane[l] + lane[l + 4];
        return (s[0] + s[2]) + (s[1] + s[3]);
    }
    float c = 0;
    for (int p = 0; p < k; p++) c = fmaf(opa(A, lda, ta, i, p), opb(B, ldb, tb, p, j), c);
    return c;
}

static void check_shape(bool ta, bool tb, int m, int n, int k, int pad, unsigned *seed) {
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    int arows = ta ? k : m, brows = tb ? n : k;
    float *A = malloc(sizeof(float) * (size_t)(arows * lda)), *B = malloc(sizeof(float) * (size_t)(brows * ldb));
    float *C = malloc(sizeof(float) * (size_t)(m * ldc + 16));
    for (int i = 0; i < arows * lda; i++) A[i] = rnd(seed);
    for (int i = 0; i < brows * ldb; i++) B[i] = rnd(seed);
    const float guard = 12345.0f;
    for (int i = 0; i < m * ldc + 16; i++) C[i] = guard;
    if (!gemm_small(ta, tb, m, n, k, A, lda, B, ldb, C, ldc)) {
        printf("FAIL gemm_small refused ta=%d tb=%d %dx%dx%d\n", ta, tb, m, n, k);
        failures++;
    }
    int bad = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) {
            float got = C[i * ldc + j];
            if (j >= n) {
                if (got != guard && !bad++)
                    printf("FAIL ta=%d tb=%d %dx%dx%d pad %d: wrote outside C at [%d, %d]\n", ta, tb, m, n, k, pad, i, j);
                continue;
            }
            float want = model(A, lda, ta, B, ldb, tb, n, k, i, j);
            double exact = 0, mag = 0;
            for (int p = 0; p < k; p++) {
                double t = (double)opa(A, lda, ta, i, p) * opb(B, ldb, tb, p, j);
                exact += t, mag += fabs(t);
            }
            bool bound = fabs((double)got - exact) <= (k + 1) * 0x1p-24 * mag + 1e-30;
            if ((memcmp(&got, &want, sizeof got) || !bound) && !bad++)
                printf("FAIL ta=%d tb=%d %dx%dx%d pad %d: C[%d, %d] = %.9g, model %.9g, double %.9g\n", ta, tb, m, n, k,
                       pad, i, j, got, want, exact);
        }
    for (int i = m * ldc; i < m * ldc + 16; i++)
        if (C[i] != guard && !bad++) printf("FAIL ta=%d tb=%d %dx%dx%d: wrote past C\n", ta, tb, m, n, k);
    failures += bad != 0;
    free(A);
    free(B);
    free(C);
}

/* device_sgemm against double, for a GEMM under the small bound and one over it */
static void check_device_sgemm(int m, int n, int k, bool ta, bool tb, bool tall) {
    GemmShape s = {.m = m, .n = n, .k = k, .ta = ta, .tb = tb, .lda = ta ? m : k, .ldb = tb ? k : n, .ldc = n};
    unsigned seed = 7;
    float *A = malloc(sizeof(float) * (size_t)m * k), *B = malloc(sizeof(float) * (size_t)k * n),
          *C = malloc(sizeof(float) * (size_t)m * n);
    for (int i = 0; i < m * k; i++) A[i] = rnd(&seed);
    for (int i = 0; i < k * n; i++) B[i] = rnd(&seed);
    device_sgemm(s, A, B, C);
    double worst = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double exact = 0, mag = 0;
            for (int p = 0; p < k; p++) {
                double t = (double)opa(A, s.lda, ta, i, p) * opb(B, s.ldb, tb, p, j);
                exact += t, mag += fabs(t);
            }
            double e = fabs(C[i * n + j] - exact) / mag;
            if (e > worst) worst = e;
        }
    bool ok = worst <= (k + 1) * 0x1p-24;
    if (tall) { /* the rows shared by the threads: one gemm_small call's bits */
        float *one = malloc(sizeof(float) * (size_t)m * n);
        gemm_small(ta, tb, m, n, k, A, s.lda, B, s.ldb, one, s.ldc);
        ok &= !memcmp(one, C, sizeof(float) * (size_t)m * n);
        free(one);
    }
    printf("%s device_sgemm %dx%dx%d ta=%d tb=%d: worst error %.2g of sum |a b|%s\n", ok ? "ok  " : "FAIL", m, n, k, ta,
           tb, worst, tall ? ", the bits of one gemm_small call" : "");
    failures += !ok;
    free(A);
    free(B);
    free(C);
}

int main(void) {
    if (!gemm_small_available()) {
        printf("skipped: this CPU has no AVX2 and FMA; OpenBLAS does every GEMM\n");
        return 77;
    }
    unsigned seed = 1;
    int shapes = 0;
    const int ks[] = {1, 2, 7, 8, 9, 19, 33};
    for (int t = 0; t < 4; t++)
        for (int m = 1; m <= 9; m++)
            for (int n = 1; n <= 30; n++)
                for (size_t q = 0; q < sizeof ks / sizeof *ks; q++) {
                    check_shape(t & 1, t >> 1, m, n, ks[q], (m + n + ks[q]) % 3, &seed);
                    shapes++;
                }
    /* xsec_bnn's five */
    check_shape(false, true, 1000, 20, 19, 0, &seed);
    check_shape(false, true, 1000, 1, 20, 0, &seed);
    check_shape(false, false, 1000, 20, 1, 0, &seed);
    check_shape(true, false, 1, 20, 1000, 0, &seed);
    check_shape(true, false, 20, 19, 1000, 0, &seed);
    check_shape(false, true, 5003, 64, 100, 1, &seed); /* tall: several blocks of rows */
    /* diabetes_bnn's: dW = dZ^T X is done as its transpose (20 of 24 lanes), X W^T as it is */
    check_shape(true, false, 20, 10, 352, 0, &seed);
    check_shape(false, true, 352, 20, 10, 0, &seed);
    check_shape(true, false, 30, 70, 9, 2, &seed); /* A^T B whose transpose would not fit the stack buffer */
    printf("%s gemm_small: %d shapes, each element the model's bits, in the error bound, nothing else written\n",
           failures ? "FAIL" : "ok  ", shapes + 9);
    check_device_sgemm(100, 20, 19, false, true, false); /* small: gemm_small */
    check_device_sgemm(300, 200, 100, true, false, false); /* 6M multiply-adds: OpenBLAS */
    /* tall: gemm_small, rows over the threads (NNC_TALL_GEMM=small: the choice on CPUs without
     * AVX-512), and OpenBLAS in parts (=blas, the choice with AVX-512) */
    setenv("NNC_TALL_GEMM", "small", 1);
    check_device_sgemm(5003, 64, 200, false, true, true);
    check_device_sgemm(4099, 203, 64, false, false, true);
    setenv("NNC_TALL_GEMM", "blas", 1);
    check_device_sgemm(5003, 64, 200, false, true, false);
    check_device_sgemm(4099, 203, 64, false, false, false);
    if (failures) printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
