/*
 * privacy/noise.c — Gaussian noise for differential privacy (see
 * privacy/noise.h).
 *
 * The generator is the ChaCha20 keystream (libsodium crypto_stream_chacha20,
 * 256-bit key, 64-bit nonce) under a key drawn from randombytes_buf. The
 * keystream is produced in blocks of NOISE_BUF_WORDS 64-bit words; each block
 * uses a fresh nonce (a counter), so no keystream byte is ever reused. Uniform
 * doubles take the top 53 bits of a word; normals come from Marsaglia's polar
 * method in double precision, both outputs of a pair used.
 *
 * Deliberately not here: thread safety (one generator per thread), floats
 * (noise is always computed in double, only the final sum is rounded), and any
 * fast-math shortcut: log and sqrt are the libm ones.
 *
 * The key and the buffered keystream are secrets: priv_noise_free wipes them
 * with sodium_memzero before freeing. They are never logged.
 */
#include "privacy/noise.h"

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#define NOISE_KEY_BYTES 32
#define NOISE_BUF_WORDS 8192 /* 64 KiB of keystream per refill: amortizes the per-call cost */

_Static_assert(NOISE_KEY_BYTES == crypto_stream_chacha20_KEYBYTES, "ChaCha20 key size");
_Static_assert(crypto_stream_chacha20_NONCEBYTES == 8, "ChaCha20 (original) nonce is 64-bit");

struct priv_noise {
	uint8_t key[NOISE_KEY_BYTES];
	uint64_t nonce;                /* next nonce for a keystream block */
	uint64_t buf[NOISE_BUF_WORDS]; /* keystream words not used yet */
	size_t pos;                    /* next unused word in buf */
	double spare;                  /* second output of the polar method */
	int have_spare;
};

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;

static void sodium_init_once(void)
{
	sodium_ok = sodium_init() >= 0;
}

/* sodium_init() exactly once per process; 0 or FL_ECRYPTO. */
static int noise_sodium_init(void)
{
	pthread_once(&sodium_once, sodium_init_once);
	return sodium_ok ? 0 : FL_ECRYPTO;
}

static void noise_refill(priv_noise *n)
{
	uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
	for (int i = 0; i < 8; i++)
		nonce[i] = (uint8_t)(n->nonce >> (8 * i));
	n->nonce++;
	crypto_stream_chacha20((unsigned char *)n->buf, sizeof n->buf, nonce, n->key);
	n->pos = 0;
}

static inline uint64_t noise_u64(priv_noise *n)
{
	if (n->pos == NOISE_BUF_WORDS)
		noise_refill(n);
	return n->buf[n->pos++];
}

static int noise_alloc(priv_noise **out, const uint8_t *key)
{
	int rv;
	priv_noise *n;

	if (!out)
		return FL_EINVAL;
	*out = NULL;
	if ((rv = noise_sodium_init()) != 0)
		return rv;
	n = calloc(1, sizeof *n);
	if (!n)
		return FL_ENOMEM;
	if (key)
		memcpy(n->key, key, NOISE_KEY_BYTES);
	else
		randombytes_buf(n->key, NOISE_KEY_BYTES);
	n->nonce = 0;
	n->pos = NOISE_BUF_WORDS; /* refill on first use */
	*out = n;
	return 0;
}

int priv_noise_new(priv_noise **out)
{
	return noise_alloc(out, NULL);
}

int priv_noise_new_keyed(priv_noise **out, const uint8_t key[32])
{
	if (!key)
		return FL_EINVAL;
	return noise_alloc(out, key);
}

void priv_noise_free(priv_noise *n)
{
	if (!n)
		return;
	sodium_memzero(n, sizeof *n);
	free(n);
}

double priv_noise_uniform(priv_noise *n)
{
	return (double)(noise_u64(n) >> 11) * 0x1.0p-53;
}

/* Marsaglia's polar method: (u, v) uniform in the unit disc (rejection,
 * acceptance pi/4), both outputs u f and v f with f = sqrt(-2 ln s / s) are
 * independent standard normals. Exact like Box-Muller, without the sin/cos. */
static inline double noise_gauss(priv_noise *n)
{
	double u, v, s, f;

	if (n->have_spare) {
		n->have_spare = 0;
		return n->spare;
	}
	do {
		u = 2.0 * priv_noise_uniform(n) - 1.0;
		v = 2.0 * priv_noise_uniform(n) - 1.0;
		s = u * u + v * v;
	} while (s >= 1.0 || s == 0.0);
	f = sqrt(-2.0 * log(s) / s);
	n->spare = v * f;
	n->have_spare = 1;
	return u * f;
}

void priv_noise_normal(priv_noise *n, double *out, size_t count)
{
	for (size_t i = 0; i < count; i++)
		out[i] = noise_gauss(n);
}

void priv_noise_add(priv_noise *n, float *x, size_t count, double std)
{
	for (size_t i = 0; i < count; i++)
		x[i] = (float)((double)x[i] + std * noise_gauss(n));
}

void priv_noise_seed_bytes(priv_noise *n, uint8_t out[32])
{
	for (int i = 0; i < 4; i++) {
		uint64_t w = noise_u64(n);
		for (int b = 0; b < 8; b++)
			out[8 * i + b] = (uint8_t)(w >> (8 * b));
	}
}
