/*
 * privacy/dp.c — DP-SGD primitives (see privacy/dp.h).
 *
 * Flat loops over contiguous rows: one pass to get a row's norm (double
 * accumulators), one pass to scale or accumulate it. Noise is drawn in double
 * precision from the ChaCha20 generator and added before the division by the
 * expected batch size. Compiled without -ffast-math: a NaN gradient must stay
 * visible so that it can be zeroed instead of poisoning the step.
 */
#include "privacy/dp.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "core/err.h"

int priv_poisson_sample(priv_noise *n, long N, double q, long *idx, long *count)
{
	long c = 0;

	if (!n || !count || N < 0 || !(q >= 0.0 && q <= 1.0) || (N > 0 && !idx))
		return FL_EINVAL;
	for (long i = 0; i < N; i++)
		if (priv_noise_uniform(n) < q)
			idx[c++] = i;
	*count = c;
	return 0;
}

double priv_l2_norm(const float *x, size_t P)
{
	/* four partial sums: lets the compiler pipeline without reassociation */
	double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	size_t j = 0;

	for (; j + 4 <= P; j += 4) {
		double a = x[j], b = x[j + 1], c = x[j + 2], d = x[j + 3];
		s0 += a * a;
		s1 += b * b;
		s2 += c * c;
		s3 += d * d;
	}
	for (; j < P; j++)
		s0 += (double)x[j] * x[j];
	return sqrt((s0 + s1) + (s2 + s3));
}

/* Factor that clips a row of norm `norm` to C: 1 (unchanged), C/norm, or 0 for a
 * non-finite row. */
static inline double clip_scale(double norm, double C)
{
	if (!isfinite(norm))
		return 0.0;
	return norm > C ? C / norm : 1.0;
}

void priv_clip_rows(float *g, int nb, size_t P, double C, int *nclipped)
{
	int nc = 0;

	assert(C > 0 && nb >= 0);
	for (int i = 0; i < nb; i++) {
		float *row = g + (size_t)i * P;
		double s = clip_scale(priv_l2_norm(row, P), C);
		if (s == 1.0)
			continue;
		nc++;
		if (s == 0.0) {
			memset(row, 0, P * sizeof *row);
			continue;
		}
		float fs = (float)s;
		for (size_t j = 0; j < P; j++)
			row[j] *= fs;
	}
	if (nclipped)
		*nclipped = nc;
}

int priv_dpsgd_reduce_stats(const float *g, int nb, size_t P, double C, double sigma,
                            double expected_batch, priv_noise *n, float *out, int *nclipped)
{
	int nc = 0;

	if (!n || !out || (nb > 0 && !g) || nb < 0 || !(C > 0) || !isfinite(C) || !(sigma >= 0) ||
	    !isfinite(sigma) || !(expected_batch > 0) || !isfinite(expected_batch))
		return FL_EINVAL;
	memset(out, 0, P * sizeof *out);
	for (int i = 0; i < nb; i++) {
		const float *row = g + (size_t)i * P;
		double s = clip_scale(priv_l2_norm(row, P), C);
		if (s != 1.0)
			nc++;
		if (s == 0.0)
			continue;
		float fs = (float)s;
		for (size_t j = 0; j < P; j++)
			out[j] += fs * row[j];
	}
	/* noise on the sum, then one scale by 1/expected_batch */
	if (sigma > 0)
		priv_noise_add(n, out, P, sigma * C);
	float inv = (float)(1.0 / expected_batch);
	for (size_t j = 0; j < P; j++)
		out[j] *= inv;
	if (nclipped)
		*nclipped = nc;
	return 0;
}

int priv_dpsgd_reduce(const float *g, int nb, size_t P, double C, double sigma,
                      double expected_batch, priv_noise *n, float *out)
{
	return priv_dpsgd_reduce_stats(g, nb, P, C, sigma, expected_batch, n, out, NULL);
}
