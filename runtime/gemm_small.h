/* gemm_small.h: GEMMs too small for OpenBLAS (gemm_small.c says how and why). */
#ifndef NNC_GEMM_SMALL_H
#define NNC_GEMM_SMALL_H

#include <stdbool.h>

/* Whether this CPU runs gemm_small (AVX2 and FMA). */
bool gemm_small_available(void);
/* C[m x n] = op(A)[m x k] op(B)[k x n], row-major (lda, ldb, ldc as cblas_sgemm's), alpha 1,
 * beta 0; false, with C untouched, when the CPU cannot (the caller uses BLAS). */
bool gemm_small(bool ta, bool tb, int m, int n, int k, const float *A, int lda, const float *B, int ldb, float *C,
                int ldc);

#endif
