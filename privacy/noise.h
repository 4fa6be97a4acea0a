/*
 * privacy/noise.h — Gaussian noise for differential privacy from a
 * cryptographically secure source: a ChaCha20 keystream (libsodium) keyed from
 * randombytes_buf, turned into normals in double precision.
 *
 * Never rand(), never core/rng.h. A generator is not thread-safe; use one per
 * thread. priv_noise_free wipes the key. priv_noise_free(NULL) is a no-op.
 */
#ifndef FL_PRIVACY_NOISE_H
#define FL_PRIVACY_NOISE_H

#include <stddef.h>
#include <stdint.h>

typedef struct priv_noise priv_noise;

/* A generator keyed from the operating system's CSPRNG. */
int priv_noise_new(priv_noise **out);
/* A generator with a fixed 32-byte key: for reproducible tests only. */
int priv_noise_new_keyed(priv_noise **out, const uint8_t key[32]);
void priv_noise_free(priv_noise *n);
/* n standard normal draws into out. */
void priv_noise_normal(priv_noise *n, double *out, size_t count);
/* x[i] += std * N(0,1) for i < count (float data, double-precision noise). */
void priv_noise_add(priv_noise *n, float *x, size_t count, double std);
/* Uniform double in [0,1) (for Poisson sampling decisions in DP code). */
double priv_noise_uniform(priv_noise *n);
/* 32 fresh random bytes from the generator (e.g. to seed a GPU generator). */
void priv_noise_seed_bytes(priv_noise *n, uint8_t out[32]);

#endif
