/*
 * privacy/dp.c — DP-SGD primitives (see privacy/dp.h).
 *
 * Two streaming passes over the batch: every row's norm (OpenBLAS dsdot:
 * double accumulation), then out = G^T s in one GEMV, s holding each row's
 * clip factor divided by the expected batch size. Noise is drawn in double
 * precision from the ChaCha20 generator and added before the division by the
 * expected batch size. Compiled without -ffast-math: a NaN gradient must stay
 * visible so that it can be zeroed instead of poisoning the step.
 */
#include "privacy/dp.h"

#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#define DP_SCALE_STACK 256 /* rows whose clip factors fit on the stack */

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
	/* OpenBLAS dsdot: float inputs, double accumulation, vectorized */
	if (P <= (size_t)INT_MAX)
		return sqrt(cblas_dsdot((int)P, x, 1, x, 1));
	double s = 0;
	for (size_t j = 0; j < P; j++)
		s += (double)x[j] * x[j];
	return sqrt(s);
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
	float scale_buf[DP_SCALE_STACK], *scale = scale_buf;
	int nc = 0;

	if (!n || !out || (nb > 0 && !g) || nb < 0 || !(C > 0) || !isfinite(C) || !(sigma >= 0) ||
	    !isfinite(sigma) || !(expected_batch > 0) || !isfinite(expected_batch))
		return FL_EINVAL;
	if (nb > DP_SCALE_STACK && !(scale = malloc((size_t)nb * sizeof *scale)))
		return FL_ENOMEM;
	/* pass 1: each row's clip factor, folded with 1/expected_batch */
	float inv = (float)(1.0 / expected_batch);
	for (int i = 0; i < nb; i++) {
		double s = clip_scale(priv_l2_norm(g + (size_t)i * P, P), C);
		nc += s != 1.0;
		scale[i] = (float)s * inv;
	}
	/* pass 2: out = G^T scale, one streaming pass over the rows (BLAS) */
	memset(out, 0, P * sizeof *out);
	if (nb > 0 && P <= (size_t)INT_MAX) {
		cblas_sgemv(CblasRowMajor, CblasTrans, nb, (int)P, 1.0f, g, (int)P, scale, 1, 0.0f,
		            out, 1);
	} else {
		for (int i = 0; i < nb; i++) {
			const float *row = g + (size_t)i * P;
			for (size_t j = 0; j < P; j++)
				out[j] += scale[i] * row[j];
		}
	}
	/* a zeroed (non-finite) row contributes 0 * NaN = NaN in a product:
	 * redo without it when there is one */
	if (nc > 0) {
		int bad = 0;
		for (int i = 0; i < nb; i++)
			bad |= scale[i] == 0.0f;
		if (bad) {
			memset(out, 0, P * sizeof *out);
			for (int i = 0; i < nb; i++) {
				if (scale[i] == 0.0f)
					continue;
				const float *row = g + (size_t)i * P;
				for (size_t j = 0; j < P; j++)
					out[j] += scale[i] * row[j];
			}
		}
	}
	/* noise N(0, sigma^2 C^2) on the sum, i.e. sigma*C/expected_batch here */
	if (sigma > 0)
		priv_noise_add(n, out, P, sigma * C / expected_batch);
	if (nclipped)
		*nclipped = nc;
	if (scale != scale_buf)
		free(scale);
	return 0;
}

int priv_dpsgd_reduce(const float *g, int nb, size_t P, double C, double sigma,
                      double expected_batch, priv_noise *n, float *out)
{
	return priv_dpsgd_reduce_stats(g, nb, P, C, sigma, expected_batch, n, out, NULL);
}
