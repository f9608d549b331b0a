/* philox.h: the counter-based random generator of the kernels, Philox-4x32-10 (Salmon,
 * Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011), in plain C.
 * A value is a pure function of (seed, stream, step, element index), so the LLVM and CUDA
 * backends (which emit the same rounds as code) give the same bits, and pruning or resuming
 * needs no generator state.  This version is the reference (runtime/ref.c) and is checked
 * against the published known-answer vectors (tests/ops/math_test.c).
 *
 * nnc's use: counter = (element index, stream, step, 0), key = (seed, NNC_PHILOX_KEY1); the
 * first output word's top 24 bits give a uniform float in [0, 1). */
#ifndef NNC_PHILOX_H
#define NNC_PHILOX_H

#include <stdint.h>

enum { NNC_PHILOX_KEY1 = 0x6e6e6300u }; /* "nnc\0": the second key word */

static inline void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0, hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* The uniform value in [0, 1) (a multiple of 2^-24) of element `index` of stream `stream` at
 * step `step` under `seed`. */
static inline float nnc_philox_uniform(uint32_t index, uint32_t stream, uint32_t step, uint32_t seed) {
    uint32_t ctr[4] = {index, stream, step, 0}, key[2] = {seed, NNC_PHILOX_KEY1}, out[4];
    philox4x32_10(ctr, key, out);
    return (float)(out[0] >> 8) * (1.0f / 16777216.0f);
}

#endif
