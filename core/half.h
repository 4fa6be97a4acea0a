/*
 * core/half.h — bfloat16 and IEEE half (binary16) <-> float32 conversion.
 *
 * float -> bf16 / f16 round to nearest, ties to even; NaN stays NaN (quiet),
 * +-Inf stays +-Inf, values beyond the target's range become +-Inf, f16
 * subnormals are produced and read exactly. bf16 / f16 -> float is exact.
 * Header-only (static inline) so the safetensors code and the wire code share
 * one definition. Scalar code: compilers vectorize the loops well enough for
 * what the wire and file paths need.
 */
#ifndef FL_CORE_HALF_H
#define FL_CORE_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t fl_f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static inline float fl_bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static inline uint16_t fl_f32_to_bf16(float f)
{
	uint32_t u = fl_f32_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign, force quiet bit */
		return (uint16_t)((u >> 16) | 0x0040u);
	u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even (overflows to Inf) */
	return (uint16_t)(u >> 16);
}

static inline float fl_bf16_to_f32(uint16_t h)
{
	return fl_bits_f32((uint32_t)h << 16);
}

static inline uint16_t fl_f32_to_f16(float f)
{
	uint32_t u = fl_f32_bits(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
	uint32_t a = u & 0x7fffffffu;
	if (a > 0x7f800000u) /* NaN */
		return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
	if (a >= 0x477ff000u) /* >= 65520 rounds to Inf (and Inf itself) */
		return (uint16_t)(sign | 0x7c00u);
	if (a < 0x38800000u) {       /* below 2^-14: f16 subnormal or zero */
		if (a < 0x33000000u) /* below 2^-25: rounds to zero */
			return sign;
		uint32_t e = a >> 23; /* biased f32 exponent, 102..112 */
		uint32_t m = (a & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126 - e; /* 14..24 */
		uint32_t q = m >> shift;
		uint32_t rem = m & ((1u << shift) - 1);
		uint32_t half = 1u << (shift - 1);
		if (rem > half || (rem == half && (q & 1u)))
			q++;
		return (uint16_t)(sign | q);
	}
	/* normal: rebias exponent 127 -> 15 and round the mantissa to 10 bits */
	uint32_t v = a - 0x38000000u;
	v += 0xfffu + ((v >> 13) & 1u);
	return (uint16_t)(sign | (v >> 13));
}

static inline float fl_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t e = (h >> 10) & 0x1fu;
	uint32_t m = h & 0x3ffu;
	if (e == 0) {
		if (m == 0)
			return fl_bits_f32(sign);
		/* subnormal: m * 2^-24, exact in float */
		float f = (float)m * (1.0f / 16777216.0f);
		return sign ? -f : f;
	}
	if (e == 31)
		return fl_bits_f32(sign | 0x7f800000u | (m << 13));
	return fl_bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

#endif
