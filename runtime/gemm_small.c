/* gemm_small.c: GEMMs too small for OpenBLAS, done in registers (AVX2 + FMA).
 *
 * A sampler lives on the gradients of tiny networks (xsec_bnn: 1000 x 19 x 20), where OpenBLAS
 * spends more time zeroing C, packing A and B and dispatching than multiplying: 68 of the
 * gradient's 107 us on a Zen 3, against about 20 us of multiply-adds.  Under a bound on
 * m * n * k (device_cpu.c's SMALL_GEMM) the CPU device, and the emulated CUDA device's cuBLAS,
 * call gemm_small instead; above it, or on a CPU without AVX2 and FMA, OpenBLAS.
 *
 * C[m x n] = op(A)[m x k] op(B)[k x n], row-major, alpha 1, beta 0.  Tiles of up to 4 rows x 24
 * columns of C are accumulated in registers over all of k, a row of op(B) loaded once per
 * step and each op(A) element broadcast; the edge columns use masked loads and partial
 * stores, so nothing outside the matrices is touched.  A^T B may be done as its transpose
 * B^T A, where that wastes fewer lanes (gemm_avx2).  op(B) = B^T is first copied out
 * transposed (B is then a weight, k x n floats).  A product with one column (a matrix-vector product) is a dot
 * product per row instead, vectorised along k.  Every element of C is a fixed sequence of
 * fused multiply-adds in k order (the dot product: 8 lanes, then their sum in a fixed order):
 * the same bits from run to run, for any tiling of the other dims, on every AVX2 machine. */
#include "gemm_small.h"

#include <stdlib.h>

#include "util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline)) AVX2

enum { MR = 4, NV = 3, BLOCK_FLOATS = 32768 }; /* a tile: MR rows x NV vectors of 8 columns */
enum { STACK_FLOATS = 2048 };                    /* a transposed operand or result this small stays on the stack */

/* lanes < n on, as a maskload/maskstore mask */
INLINE __m256i lane_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The first n (1..8) lanes of v to c: a 4-lane store and single ones (a masked store is slow on
 * some CPUs: a quarter of an outer product's time on a Zen 3). */
INLINE void store_first(float *c, __m256 v, int n) {
    __m128 h = _mm256_castps256_ps128(v);
    if (n >= 4) {
        _mm_storeu_ps(c, h);
        if (n == 8) {
            _mm_storeu_ps(c + 4, _mm256_extractf128_ps(v, 1));
            return;
        }
        c += 4, n -= 4, h = _mm256_extractf128_ps(v, 1);
    }
    if (n >= 2) {
        _mm_storel_pi((__m64 *)c, h);
        c += 2, n -= 2, h = _mm_movehl_ps(h, h);
    }
    if (n) _mm_store_ss(c, h);
}

/* One tile: C[0..mr, 0..8 nv) at C, op(A)(r, p) = A[r ai + p ap], op(B)(p, j) = B[p ldb + j];
 * the last vector has `nlast` of its columns (`last`, as a lane mask).  The 12 accumulators are named
 * variables (an array of them is kept in memory by GCC); rows past mr repeat row 0 and are
 * not stored; nv is a constant after inlining. */
#define ROW(r, ar)                                                                                                   \
    {                                                                                                                \
        __m256 x = _mm256_broadcast_ss((ar) + p * ap);                                                               \
        c##r##0 = _mm256_fmadd_ps(x, b0, c##r##0);                                                                   \
        if (nv > 1) c##r##1 = _mm256_fmadd_ps(x, b1, c##r##1);                                                       \
        if (nv > 2) c##r##2 = _mm256_fmadd_ps(x, b2, c##r##2);                                                       \
    }
#define STORE(r)                                                                                                     \
    if (mr > r) {                                                                                                    \
        float *c = C + r * ldc;                                                                                      \
        if (nv == 1) store_first(c, c##r##0, nlast);                                                                 \
        if (nv > 1) _mm256_storeu_ps(c, c##r##0);                                                                    \
        if (nv == 2) store_first(c + 8, c##r##1, nlast);                                                             \
        if (nv > 2) _mm256_storeu_ps(c + 8, c##r##1), store_first(c + 16, c##r##2, nlast);                           \
    }
INLINE void tile(int mr, int nv, bool full, const float *A, ptrdiff_t ai, ptrdiff_t ap, const float *B, ptrdiff_t ldb, int k,
                 float *C, ptrdiff_t ldc, __m256i last, int nlast) {
    const float *a0 = A, *a1 = mr > 1 ? A + ai : A, *a2 = mr > 2 ? A + 2 * ai : A, *a3 = mr > 3 ? A + 3 * ai : A;
    __m256 z = _mm256_setzero_ps();
    __m256 c00 = z, c01 = z, c02 = z, c10 = z, c11 = z, c12 = z, c20 = z, c21 = z, c22 = z, c30 = z, c31 = z, c32 = z;
    for (int p = 0; p < k; p++) {
        const float *b = B + p * ldb;
        __m256 b0 = nv == 1 && !full ? _mm256_maskload_ps(b, last) : _mm256_loadu_ps(b);
        __m256 b1 = nv == 2 && !full ? _mm256_maskload_ps(b + 8, last) : nv > 1 ? _mm256_loadu_ps(b + 8) : z;
        __m256 b2 = nv == 3 && !full ? _mm256_maskload_ps(b + 16, last) : nv > 2 ? _mm256_loadu_ps(b + 16) : z;
        ROW(0, a0)
        ROW(1, a1)
        ROW(2, a2)
        ROW(3, a3)
    }
    STORE(0)
    STORE(1)
    STORE(2)
    STORE(3)
}
#undef ROW
#undef STORE

/* tile() with its row count, vector count and edge kind as constants (rows past mr cost nothing) */
#define TILE_CASE(mr_, nv_)                                                                                          \
    case (mr_) * 4 + (nv_):                                                                                          \
        if (full)                                                                                                    \
            tile(mr_, nv_, true, A, ai, ap, B, ldb, k, C, ldc, last, nlast);                                         \
        else                                                                                                         \
            tile(mr_, nv_, false, A, ai, ap, B, ldb, k, C, ldc, last, nlast);                                        \
        break;
static AVX2 void tile_any(int mr, int nv, const float *A, ptrdiff_t ai, ptrdiff_t ap, const float *B, ptrdiff_t ldb,
                          int k, float *C, ptrdiff_t ldc, __m256i last, int nlast) {
    bool full = nlast == 8; /* the last vector whole: plain loads (a masked one is slow on some CPUs) */
    switch (mr * 4 + nv) {
        TILE_CASE(1, 1) TILE_CASE(1, 2) TILE_CASE(1, 3)
        TILE_CASE(2, 1) TILE_CASE(2, 2) TILE_CASE(2, 3)
        TILE_CASE(3, 1) TILE_CASE(3, 2) TILE_CASE(3, 3)
        TILE_CASE(4, 1) TILE_CASE(4, 2) TILE_CASE(4, 3)
    }
}
#undef TILE_CASE

/* C[m x n] = op(A) op(B) with op(A)(r, p) = A[r ai + p ap], op(B)(p, j) = B[p ldb + j], in tiles. */
static AVX2 void tiles(int m, int n, int k, const float *A, ptrdiff_t ai, ptrdiff_t ap, const float *B, ptrdiff_t ldb,
                       float *C, ptrdiff_t ldc) {
    /* rows in blocks of about 128 KiB of A, each multiplied by all of op(B) while it is in
     * the cache (a tall A, a convolution's patches, is read from memory once) */
    int rb = (int)(BLOCK_FLOATS / k) / MR * MR;
    rb = rb < MR ? MR : rb;
    for (int ib = 0; ib < m; ib += rb) {
        int iend = m - ib < rb ? m : ib + rb;
        for (int j0 = 0; j0 < n; j0 += 8 * NV) {
            int cols = n - j0 < 8 * NV ? n - j0 : 8 * NV, nv = (cols + 7) / 8;
            int nlast = cols - 8 * (nv - 1);
            __m256i last = lane_mask(nlast);
            for (int i0 = ib; i0 < iend; i0 += MR) {
                int mr = iend - i0 < MR ? iend - i0 : MR;
                tile_any(mr, nv, A + i0 * ai, ai, ap, B + j0, ldb, k, C + (ptrdiff_t)i0 * ldc + j0, ldc, last, nlast);
            }
        }
    }
}

/* Multiply-adds a product costs in tiles, in vector FMAs per step of k: rows x vectors a row */
static long tile_cost(int m, int n) { return (long)m * ((n + 7) / 8); }

/* The sums (l0+l4 + l2+l6) + (l1+l5 + l3+l7) of the lanes l of eight rows' accumulators, as one
 * vector: the fixed order of matvec's single row, done for eight rows at once (the halves
 * added, then the transposed pairs). */
INLINE __m256 lane_sums8(const __m256 acc[8]) {
    __m256 p[4];
    for (int r = 0; r < 4; r++) /* [s_r | s_r+4], s_r = low half + high half of row r */
        p[r] = _mm256_add_ps(_mm256_permute2f128_ps(acc[r], acc[r + 4], 0x20), _mm256_permute2f128_ps(acc[r], acc[r + 4], 0x31));
    /* [t0 t1 u0 u1 | t4 t5 u4 u5] with t = s0 + s2, u = s1 + s3; and rows 2, 3, 6, 7 */
    __m256 a = _mm256_add_ps(_mm256_unpacklo_ps(p[0], p[1]), _mm256_unpackhi_ps(p[0], p[1]));
    __m256 b = _mm256_add_ps(_mm256_unpacklo_ps(p[2], p[3]), _mm256_unpackhi_ps(p[2], p[3]));
    return _mm256_add_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}

/* C[i] = sum_p A[i lda + p] b[p]: 8 lanes along p, the tail masked, then the lanes summed
 * pairwise in a fixed order; eight rows at a time (b loaded once for them), then one by one. */
static AVX2 void matvec(int m, int k, const float *A, ptrdiff_t lda, const float *b, float *C, ptrdiff_t ldc) {
    __m256i tail = lane_mask(k % 8 ? k % 8 : 8);
    int body = (k - 1) / 8 * 8; /* whole vectors before the (possibly full) last one */
    int i = 0;
    for (; i + 8 <= m; i += 8) {
        __m256 acc[8];
        for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
        for (int p = 0; p < body; p += 8) {
            __m256 bv = _mm256_loadu_ps(b + p);
            for (int r = 0; r < 8; r++) acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(A + (i + r) * lda + p), bv, acc[r]);
        }
        __m256 bv = _mm256_maskload_ps(b + body, tail);
        for (int r = 0; r < 8; r++) acc[r] = _mm256_fmadd_ps(_mm256_maskload_ps(A + (i + r) * lda + body, tail), bv, acc[r]);
        __m256 sums = lane_sums8(acc);
        if (ldc == 1) {
            _mm256_storeu_ps(C + i, sums);
        } else {
            float v[8];
            _mm256_storeu_ps(v, sums);
            for (int r = 0; r < 8; r++) C[(i + r) * ldc] = v[r];
        }
    }
    for (; i < m; i++) {
        const float *a = A + i * lda;
        __m256 acc = _mm256_setzero_ps();
        for (int p = 0; p < body; p += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + p), _mm256_loadu_ps(b + p), acc);
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(a + body, tail), _mm256_maskload_ps(b + body, tail), acc);
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        C[i * ldc] = _mm_cvtss_f32(s);
    }
}

static AVX2 void gemm_avx2(bool ta, bool tb, int m, int n, int k, const float *A, int lda, const float *B, int ldb,
                           float *C, int ldc) {
    float stack[STACK_FLOATS], *bt = NULL;
    if (tb && n > 1) { /* op(B) = B^T: copy it out as k x n */
        bt = (size_t)k * (size_t)n <= STACK_FLOATS ? stack : util_calloc((size_t)k * (size_t)n, sizeof(float));
        for (int j = 0; j < n; j++)
            for (int p = 0; p < k; p++) bt[(size_t)p * (size_t)n + (size_t)j] = B[(size_t)j * (size_t)ldb + (size_t)p];
        B = bt, ldb = n;
    }
    if (n == 1 && !ta) { /* op(B) is one column: B[p ldb] (tb = 0) or B[p] (tb = 1) */
        if (!tb && ldb != 1) {
            bt = (size_t)k <= STACK_FLOATS ? stack : util_calloc((size_t)k, sizeof(float));
            for (int p = 0; p < k; p++) bt[p] = B[(size_t)p * (size_t)ldb];
            B = bt;
        }
        matvec(m, k, A, lda, B, C, ldc);
        if (bt != stack) free(bt);
        return;
    }
    if (n == 1 && tb) ldb = 1; /* B is 1 x k: column p of op(B) is B[p] */
    /* With op(A) = A^T, C^T = op(B)^T A is a product of the same kind (its A is B with its rows
     * read down, its B is A), the same fused multiply-adds in the same order; it is done that
     * way, into a buffer and then transposed, when its rows use the vector lanes better: a short
     * wide C with few columns (diabetes_bnn's dW = dZ^T X, 20 x 10 over 352 rows, is 20 rows of
     * 2 vectors of which 10 of 16 lanes count, against 10 rows of 3 vectors, 20 of 24) */
    if (ta && (size_t)m * (size_t)n <= STACK_FLOATS && 2 * tile_cost(n, m) * k + (long)m * n < 2 * tile_cost(m, n) * k) {
        float ct[STACK_FLOATS];
        tiles(n, m, k, B, 1, ldb, A, lda, ct, m);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) C[(ptrdiff_t)i * ldc + j] = ct[(size_t)j * (size_t)m + (size_t)i];
    } else {
        tiles(m, n, k, A, ta ? 1 : lda, ta ? lda : 1, B, ldb, C, ldc);
    }
    if (bt != stack) free(bt);
}

bool gemm_small_available(void) {
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return have;
}

bool gemm_small(bool ta, bool tb, int m, int n, int k, const float *A, int lda, const float *B, int ldb, float *C,
                int ldc) {
    if (!gemm_small_available() || m <= 0 || n <= 0 || k <= 0) return false;
    gemm_avx2(ta, tb, m, n, k, A, lda, B, ldb, C, ldc);
    return true;
}
#else
bool gemm_small_available(void) { return false; }
bool gemm_small(bool ta, bool tb, int m, int n, int k, const float *A, int lda, const float *B, int ldb, float *C,
                int ldc) {
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)A, (void)lda, (void)B, (void)ldb, (void)C, (void)ldc;
    return false;
}
#endif
