/* bench_common.h: what the C GEMM benchmarks of bench/ share: a monotonic clock and the
 * 64-byte-aligned operand arrays they time, filled with the same small repeating values. */
#ifndef NNC_BENCH_COMMON_H
#define NNC_BENCH_COMMON_H

#include <stdlib.h>
#include <time.h>

static inline double bench_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* n floats, aligned to 64 bytes (the size rounded up as aligned_alloc requires). */
static inline float *bench_filled(size_t n) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    for (size_t i = 0; i < n; i++) p[i] = (float)(i % 17) * 0.01f - 0.08f;
    return p;
}

#endif
