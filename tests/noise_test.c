/*
 * tests/noise_test.c — the DP noise generator (privacy/noise.h): ChaCha20
 * known answer, moments of 10^6 normals and uniforms within their confidence
 * intervals, independence of generators, reproducibility of keyed ones.
 *
 * Statistical bounds are 5 standard errors: a correct generator fails one of
 * them with probability below 1e-5 per run.
 */
#include <stdint.h>
#include <string.h>

#include "privacy/noise.h"
#include "tests/test.h"

#define NDRAWS 1000000

/* The first keystream bytes of ChaCha20 (20 rounds) with an all-zero key and
 * nonce, block counter 0: RFC 7539 appendix A.1, test vector #1 (the same
 * for the original 64-bit-nonce variant). The keyed generator's first nonce
 * is 0, so its first bytes must be these. */
static void test_chacha20_known_answer(void)
{
	static const uint8_t want[32] = {0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90,
	                                 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86, 0xbd, 0x28,
	                                 0xbd, 0xd2, 0x19, 0xb8, 0xa0, 0x8d, 0xed, 0x1a,
	                                 0xa8, 0x36, 0xef, 0xcc, 0x8b, 0x77, 0x0d, 0xc7};
	uint8_t key[32] = {0}, got[32];
	priv_noise *n = NULL;
	CHECK_RC(priv_noise_new_keyed(&n, key));
	if (!n)
		return;
	priv_noise_seed_bytes(n, got);
	CHECK(memcmp(got, want, 32) == 0);
	priv_noise_free(n);
}

static void test_normal_moments(void)
{
	priv_noise *n = NULL;
	double *x = malloc(NDRAWS * sizeof *x);
	CHECK_RC(priv_noise_new(&n));
	if (!n || !x) {
		free(x);
		priv_noise_free(n);
		CHECK(0);
		return;
	}
	priv_noise_normal(n, x, NDRAWS);
	double s = 0, s2 = 0, s3 = 0, s4 = 0;
	long in1 = 0;
	for (long i = 0; i < NDRAWS; i++) {
		double v = x[i];
		CHECK(isfinite(v));
		s += v;
		s2 += v * v;
		s3 += v * v * v;
		s4 += v * v * v * v;
		in1 += fabs(v) < 1.0;
	}
	double mean = s / NDRAWS, var = s2 / NDRAWS - mean * mean;
	/* SE(mean) = 1/sqrt(n); SE(var) = sqrt(2/n); SE(skew) = sqrt(6/n);
	 * SE(E x^4) = sqrt((105 - 9)/n) */
	CHECK_NEAR(mean, 0.0, 5 / sqrt(NDRAWS), 0);
	CHECK_NEAR(var, 1.0, 5 * sqrt(2.0 / NDRAWS), 0);
	CHECK_NEAR(s3 / NDRAWS, 0.0, 5 * sqrt(15.0 / NDRAWS), 0);
	CHECK_NEAR(s4 / NDRAWS, 3.0, 5 * sqrt(96.0 / NDRAWS), 0);
	/* P(|Z| < 1) = erf(1/sqrt 2) = 0.682689...; binomial SE */
	double p = erf(1 / sqrt(2.0));
	CHECK_NEAR((double)in1 / NDRAWS, p, 5 * sqrt(p * (1 - p) / NDRAWS), 0);
	free(x);
	priv_noise_free(n);
}

static void test_uniform_moments(void)
{
	priv_noise *n = NULL;
	CHECK_RC(priv_noise_new(&n));
	if (!n)
		return;
	double s = 0, s2 = 0, lo = 1, hi = 0;
	long bins[16] = {0};
	for (long i = 0; i < NDRAWS; i++) {
		double u = priv_noise_uniform(n);
		CHECK(u >= 0 && u < 1);
		s += u;
		s2 += u * u;
		lo = fmin(lo, u);
		hi = fmax(hi, u);
		bins[(int)(u * 16)]++;
	}
	double mean = s / NDRAWS, var = s2 / NDRAWS - mean * mean;
	CHECK_NEAR(mean, 0.5, 5 * sqrt(1.0 / 12 / NDRAWS), 0);
	CHECK_NEAR(var, 1.0 / 12, 5 * sqrt(1.0 / 180 / NDRAWS), 0);
	CHECK(lo < 1e-4 && hi > 1 - 1e-4);
	/* chi-square with 15 degrees of freedom: P(chi2 > 50) < 2e-5 */
	double chi2 = 0, e = NDRAWS / 16.0;
	for (int b = 0; b < 16; b++)
		chi2 += (bins[b] - e) * (bins[b] - e) / e;
	CHECK(chi2 < 50);
	priv_noise_free(n);
}

/* priv_noise_add adds noise of the requested standard deviation. */
static void test_add_scale(void)
{
	priv_noise *n = NULL;
	float *x = malloc(NDRAWS * sizeof *x);
	CHECK_RC(priv_noise_new(&n));
	if (!n || !x) {
		free(x);
		priv_noise_free(n);
		CHECK(0);
		return;
	}
	for (long i = 0; i < NDRAWS; i++)
		x[i] = 3.0f;
	priv_noise_add(n, x, NDRAWS, 0.25);
	double s = 0, s2 = 0;
	for (long i = 0; i < NDRAWS; i++) {
		s += x[i] - 3.0;
		s2 += (x[i] - 3.0) * (x[i] - 3.0);
	}
	double mean = s / NDRAWS, var = s2 / NDRAWS - mean * mean;
	CHECK_NEAR(mean, 0.0, 5 * 0.25 / sqrt(NDRAWS), 0);
	CHECK_NEAR(var, 0.0625, 5 * 0.0625 * sqrt(2.0 / NDRAWS), 0);
	free(x);
	priv_noise_free(n);
}

/* Two OS-keyed generators draw different noise; keyed ones reproduce. */
static void test_independent_and_keyed(void)
{
	priv_noise *a = NULL, *b = NULL;
	double xa[64], xb[64];
	CHECK_RC(priv_noise_new(&a));
	CHECK_RC(priv_noise_new(&b));
	if (!a || !b)
		goto out;
	priv_noise_normal(a, xa, 64);
	priv_noise_normal(b, xb, 64);
	int same = 0;
	for (int i = 0; i < 64; i++)
		same += xa[i] == xb[i];
	CHECK(same == 0);
	priv_noise_free(a);
	priv_noise_free(b);
	a = b = NULL;

	uint8_t k1[32], k2[32];
	for (int i = 0; i < 32; i++) {
		k1[i] = (uint8_t)(7 * i + 1);
		k2[i] = k1[i];
	}
	k2[31] ^= 1;
	CHECK_RC(priv_noise_new_keyed(&a, k1));
	CHECK_RC(priv_noise_new_keyed(&b, k1));
	if (!a || !b)
		goto out;
	/* more than one keystream block, so the nonce counter is exercised */
	for (int r = 0; r < 100; r++) {
		priv_noise_normal(a, xa, 64);
		priv_noise_normal(b, xb, 64);
		CHECK(memcmp(xa, xb, sizeof xa) == 0);
	}
	priv_noise_free(b);
	b = NULL;
	CHECK_RC(priv_noise_new_keyed(&b, k2));
	if (!b)
		goto out;
	priv_noise_free(a);
	a = NULL;
	CHECK_RC(priv_noise_new_keyed(&a, k1));
	if (!a)
		goto out;
	priv_noise_normal(a, xa, 64);
	priv_noise_normal(b, xb, 64);
	same = 0;
	for (int i = 0; i < 64; i++)
		same += xa[i] == xb[i];
	CHECK(same == 0);
out:
	priv_noise_free(a);
	priv_noise_free(b);
}

/* Successive keystream blocks differ (the nonce advances): no repetition
 * across a block boundary. */
static void test_no_block_reuse(void)
{
	uint8_t key[32] = {1};
	priv_noise *n = NULL;
	uint8_t blk[4][32];
	CHECK_RC(priv_noise_new_keyed(&n, key));
	if (!n)
		return;
	/* 512 words per block; seed_bytes takes 4 words: 128 calls per block */
	for (int b = 0; b < 4; b++) {
		priv_noise_seed_bytes(n, blk[b]);
		for (int i = 0; i < 127; i++) {
			uint8_t tmp[32];
			priv_noise_seed_bytes(n, tmp);
		}
	}
	for (int i = 0; i < 4; i++)
		for (int j = i + 1; j < 4; j++)
			CHECK(memcmp(blk[i], blk[j], 32) != 0);
	priv_noise_free(n);
}

static void test_bad_args(void)
{
	CHECK(priv_noise_new(NULL) == FL_EINVAL);
	priv_noise *n = NULL;
	CHECK(priv_noise_new_keyed(&n, NULL) == FL_EINVAL);
	CHECK(n == NULL);
	priv_noise_free(NULL);
}

static const test_case cases[] = {
    TEST(test_chacha20_known_answer),
    TEST(test_normal_moments),
    TEST(test_uniform_moments),
    TEST(test_add_scale),
    TEST(test_independent_and_keyed),
    TEST(test_no_block_reuse),
    TEST(test_bad_args),
    {0},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
