/*
 * core/rng.h — deterministic pseudo-random numbers for reproducible work:
 * synthetic data, weight init, client sampling in simulations, data splits.
 *
 * xoshiro256** seeded through splitmix64. NOT for privacy noise or keys:
 * those come from privacy/noise.h (libsodium / ChaCha20).
 */
#ifndef FL_CORE_RNG_H
#define FL_CORE_RNG_H

#include <stdint.h>

typedef struct fl_rng {
	uint64_t s[4];
} fl_rng;

/* Seeds from (seed, stream): different streams give independent sequences. */
void fl_rng_init(fl_rng *r, uint64_t seed, uint64_t stream);
uint64_t fl_rng_u64(fl_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double fl_rng_uniform(fl_rng *r);
/* Uniform integer in [0, n); n > 0. */
uint64_t fl_rng_below(fl_rng *r, uint64_t n);
/* Standard normal (Box-Muller, double precision). */
double fl_rng_normal(fl_rng *r);

#endif
