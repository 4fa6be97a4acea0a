/*
 * tests/rope_ref.h — the rotary inverse frequencies in double precision,
 * written from the formulas (plain RoPE, theta^(-2i/D), and transformers'
 * _compute_llama3_parameters) apart from model_rope_inv_freq, for the
 * double-precision references of tests/ops_test.c and tests/llama_test.c.
 */
#ifndef FL_TESTS_ROPE_REF_H
#define FL_TESTS_ROPE_REF_H

#include <math.h>

#include "model/config.h"

/* inv (D/2) for theta and the scaling s (NULL or type default: plain). */
static inline void ref_rope_inv_freq(double *inv, int D, double theta, const model_rope_scaling *s)
{
	for (int i = 0; i < D / 2; i++) {
		inv[i] = pow(theta, -2.0 * i / D);
		if (!s || s->type != MODEL_ROPE_LLAMA3)
			continue;
		double orig = s->original_max_position_embeddings, wl = 2 * M_PI / inv[i];
		if (wl > orig / s->low_freq_factor) {
			inv[i] /= s->factor; /* low band */
		} else if (wl >= orig / s->high_freq_factor) {
			/* medium band */
			double sm = (orig / wl - s->low_freq_factor) /
			            (s->high_freq_factor - s->low_freq_factor);
			inv[i] = (1 - sm) * inv[i] / s->factor + sm * inv[i];
		}
	}
}

#endif
