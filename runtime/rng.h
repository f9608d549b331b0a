/* rng.h: the one random number generator of the runtime (xoshiro256**, seeded through
 * splitmix64).  Every random choice (initialisation, shuffling, the validation split) draws
 * from a stream derived from the model's seed and a purpose, so runs are reproducible and
 * one purpose's draws never shift another's. */
#ifndef NNC_RNG_H
#define NNC_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} Rng;

enum { RNG_INIT = 1, RNG_SPLIT = 2, RNG_SHUFFLE = 3, RNG_SAMPLE = 4, RNG_HESSIAN = 5 };

void rng_seed(Rng *r, uint64_t seed, uint64_t stream);
uint64_t rng_next(Rng *r);
double rng_uniform(Rng *r);              /* [0, 1) with 53 random bits */
double rng_normal(Rng *r);               /* standard normal (Box-Muller on two uniforms) */
uint64_t rng_below(Rng *r, uint64_t n);  /* uniform in [0, n), unbiased */
void rng_shuffle(Rng *r, int64_t *v, int64_t n);

#endif
