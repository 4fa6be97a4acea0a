/*
 * privacy/dp.h — DP-SGD primitives: Poisson sampling of examples, per-row
 * (per-example) L2 clipping, and the noisy reduce of a DP-SGD step.
 *
 * A "row" is one example's gradient over ALL trainable tensors laid out flat
 * (P floats), so clipping to C bounds the example's whole contribution; rows
 * of a batch are contiguous: g[i*P .. i*P+P-1] is example i.
 *
 * Randomness comes only from privacy/noise.h (ChaCha20, libsodium-keyed).
 * Nothing here allocates; the caller owns every buffer. Norms are accumulated
 * in double. A row whose norm is NaN or Inf cannot be clipped meaningfully:
 * it is set to zero (and counted as clipped), which keeps the sensitivity
 * bound C intact.
 */
#ifndef FL_PRIVACY_DP_H
#define FL_PRIVACY_DP_H

#include <stddef.h>

#include "privacy/noise.h"

/* Poisson sampling: each of the N examples 0..N-1 is included independently
 * with probability q (one priv_noise_uniform draw per example). The chosen
 * indices, in increasing order, go to idx (room for N), their number to
 * *count. FL_EINVAL when N < 0, q is outside [0,1] or NaN, or a pointer is
 * NULL (idx may be NULL only when N == 0). */
int priv_poisson_sample(priv_noise *n, long N, double q, long *idx, long *count);

/* L2 norm of x[0..P-1], accumulated in double. */
double priv_l2_norm(const float *x, size_t P);

/* Clips each of the nb rows of g (nb x P, row-major) to L2 norm <= C in
 * place: a row with norm > C is scaled by C / norm, others are unchanged;
 * non-finite rows are zeroed. *nclipped (may be NULL) gets the number of rows
 * changed. C must be > 0 (a bug otherwise: asserted). */
void priv_clip_rows(float *g, int nb, size_t P, double C, int *nclipped);

/* One DP-SGD reduce: out[j] = (sum_i clip_C(g_i)[j] + sigma*C*N(0,1)) /
 * expected_batch for j < P. g (nb x P) is not modified; nb may be 0 (an empty
 * Poisson batch still gets noise). expected_batch is q*N as the caller's
 * accountant assumes, NOT the realized nb. FL_EINVAL when C <= 0, sigma < 0,
 * expected_batch <= 0, nb < 0 or any of them is not finite. */
int priv_dpsgd_reduce(const float *g, int nb, size_t P, double C, double sigma,
                      double expected_batch, priv_noise *n, float *out);

/* Same, also reporting how many rows clipping changed (nclipped may be NULL). */
int priv_dpsgd_reduce_stats(const float *g, int nb, size_t P, double C, double sigma,
                            double expected_batch, priv_noise *n, float *out, int *nclipped);

#endif
