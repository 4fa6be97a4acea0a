/*
 * model/cuda/layers.cu — the GEMM-based layers shared by the GPU model and
 * the op tests: LoRA forward/backward (also per example, for DP-SGD) and
 * causal grouped-query attention through strided-batched GEMMs and the causal
 * softmax kernels.
 *
 * Attention layout: q (B,Hq,T,D), k/v (B,Hkv,T,D). The G = Hq/Hkv query heads
 * that share kv head j are adjacent, so for one (example, kv head) they form a
 * (G*T, D) matrix: S = Q_g K^T is one GEMM of (G*T x D)(D x T), batched over
 * B*Hkv with uniform strides, and the backward's dK = dS^T Q and dV = P^T dO
 * sum over the group inside the GEMM. The full T x T scores are computed (the
 * upper triangle is wasted work) and masked by the softmax; scores are f32,
 * probabilities bf16. Examples are processed bc at a time to bound the
 * scratch. This path costs O(T^2) memory traffic per head; the model uses it
 * only where the fused kernels of flash.cu do not apply (head dims other than
 * 16/32/64/128, a failed start-up check, or FEDLORA_ATTN=gemm).
 */
#include <math.h>

#include "model/cuda/kernels.cuh"

int fl_lora_forward(cublasHandle_t h, const bf16 *x, int IN, void *out, cudaDataType otype, int OUT,
                    bf16 *xa, const bf16 *A16, const bf16 *B16, int N, int r, float scale)
{
	return fl_lora_forward_ld(h, x, IN, out, otype, OUT, OUT, xa, A16, B16, N, r, scale);
}

int fl_lora_forward_ld(cublasHandle_t h, const bf16 *x, int IN, void *out, cudaDataType otype,
                       int OUT, int ldo, bf16 *xa, const bf16 *A16, const bf16 *B16, int N, int r,
                       float scale)
{
	int rv;
	// xa (N,r) = x (N,IN) A^T, A (r,IN)
	GEMM_TRY(GEMM(h, 0, 1, N, r, IN, 1.f, x, IN, A16, IN, 0.f, xa, CUDA_R_16BF, r));
	// out (N,OUT; rows ldo apart) += scale * xa B^T, B (OUT,r)
	GEMM_TRY(GEMM(h, 0, 1, N, OUT, r, scale, xa, r, B16, r, 1.f, out, otype, ldo));
fail:
	return rv;
}

int fl_lora_backward(cublasHandle_t h, void *dx, cudaDataType dxtype, float *dA, float *dB,
                     const bf16 *dout, const bf16 *x, const bf16 *xa, const bf16 *A16,
                     const bf16 *B16, bf16 *dxa, int N, int IN, int OUT, int r, float scale,
                     int nex, int T, size_t stride)
{
	return fl_lora_backward_ld(h, dx, dxtype, dA, dB, dout, OUT, x, xa, A16, B16, dxa, N, IN,
	                           OUT, r, scale, nex, T, stride);
}

int fl_lora_backward_ld(cublasHandle_t h, void *dx, cudaDataType dxtype, float *dA, float *dB,
                        const bf16 *dout, int ldd, const bf16 *x, const bf16 *xa, const bf16 *A16,
                        const bf16 *B16, bf16 *dxa, int N, int IN, int OUT, int r, float scale,
                        int nex, int T, size_t stride)
{
	int rv;
	GEMM_TRY(fl_lora_backward_dxa(h, dA, dB, dout, ldd, x, xa, B16, dA || dx ? dxa : NULL, r, N,
	                              IN, OUT, r, scale, nex, T, stride));
	// dx (N,IN) += dxa (N,r) A (r,IN)
	if (dx)
		GEMM_TRY(GEMM(h, 0, 0, N, IN, r, 1.f, dxa, r, A16, IN, 1.f, dx, dxtype, IN));
	return 0;
fail:
	return rv;
}

int fl_lora_backward_dxa(cublasHandle_t h, float *dA, float *dB, const bf16 *dout, int ldd,
                         const bf16 *x, const bf16 *xa, const bf16 *B16, bf16 *dxa, int lddxa,
                         int N, int IN, int OUT, int r, float scale, int nex, int T, size_t stride)
{
	int rv;
	// dB (OUT,r) = scale * dout^T (OUT,N) xa (N,r); dout's rows are ldd apart
	if (dB) {
		if (nex > 0)
			GEMM_TRY(GEMM_BATCHED(h, 1, 0, OUT, r, T, scale, dout, ldd,
			                      (long long)T * ldd, xa, r, (long long)T * r, 0.f, dB,
			                      CUDA_R_32F, r, (long long)stride, nex));
		else
			GEMM_TRY(GEMM(h, 1, 0, OUT, r, N, scale, dout, ldd, xa, r, 1.f, dB,
			              CUDA_R_32F, r));
	}
	if (!dxa)
		return 0;
	// dxa (N,r; rows lddxa apart) = scale * dout (N,OUT) B (OUT,r)
	GEMM_TRY(GEMM(h, 0, 0, N, r, OUT, scale, dout, ldd, B16, r, 0.f, dxa, CUDA_R_16BF, lddxa));
	// dA (r,IN) = dxa^T (r,N) x (N,IN)
	if (dA) {
		if (nex > 0)
			GEMM_TRY(GEMM_BATCHED(h, 1, 0, r, IN, T, 1.f, dxa, lddxa,
			                      (long long)T * lddxa, x, IN, (long long)T * IN, 0.f,
			                      dA, CUDA_R_32F, IN, (long long)stride, nex));
		else
			GEMM_TRY(GEMM(h, 1, 0, r, IN, N, 1.f, dxa, lddxa, x, IN, 1.f, dA,
			              CUDA_R_32F, IN));
	}
	return 0;
fail:
	return rv;
}

int fl_attention_forward(cublasHandle_t h, cudaStream_t s, bf16 *o, const bf16 *q, const bf16 *k,
                         const bf16 *v, int B, int T, int Hq, int Hkv, int D,
                         const fl_attn_scratch *sc)
{
	int rv = 0;
	int G = Hq / Hkv;
	float scale = 1.0f / sqrtf((float)D);
	long long qs = (long long)G * T * D, ks = (long long)T * D, ss = (long long)G * T * T;
	for (int b0 = 0; b0 < B; b0 += sc->bc) {
		int bc = B - b0 < sc->bc ? B - b0 : sc->bc;
		const bf16 *qb = q + (size_t)b0 * Hq * T * D;
		const bf16 *kb = k + (size_t)b0 * Hkv * T * D, *vb = v + (size_t)b0 * Hkv * T * D;
		// S (G*T, T) = Q_g (G*T, D) K^T, per (example, kv head)
		GEMM_TRY(GEMM_BATCHED(h, 0, 1, G * T, T, D, 1.f, qb, D, qs, kb, D, ks, 0.f, sc->S,
		                      CUDA_R_32F, T, ss, bc * Hkv));
		if ((rv = fl_k_causal_softmax(sc->P, sc->S, (long)bc * Hq * T, T, scale, s)) != 0)
			goto fail;
		// O (G*T, D) = P (G*T, T) V (T, D)
		GEMM_TRY(GEMM_BATCHED(h, 0, 0, G * T, D, T, 1.f, sc->P, T, ss, vb, D, ks, 0.f,
		                      o + (size_t)b0 * Hq * T * D, CUDA_R_16BF, D, qs, bc * Hkv));
	}
fail:
	return rv;
}

int fl_attention_backward(cublasHandle_t h, cudaStream_t s, bf16 *dq, bf16 *dk, bf16 *dv,
                          const bf16 *dO, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T,
                          int Hq, int Hkv, int D, const fl_attn_scratch *sc)
{
	int rv = 0;
	int G = Hq / Hkv;
	float scale = 1.0f / sqrtf((float)D);
	long long qs = (long long)G * T * D, ks = (long long)T * D, ss = (long long)G * T * T;
	for (int b0 = 0; b0 < B; b0 += sc->bc) {
		int bc = B - b0 < sc->bc ? B - b0 : sc->bc;
		int nb = bc * Hkv;
		size_t qo = (size_t)b0 * Hq * T * D, ko = (size_t)b0 * Hkv * T * D;
		// recompute P
		GEMM_TRY(GEMM_BATCHED(h, 0, 1, G * T, T, D, 1.f, q + qo, D, qs, k + ko, D, ks, 0.f,
		                      sc->S, CUDA_R_32F, T, ss, nb));
		if ((rv = fl_k_causal_softmax(sc->P, sc->S, (long)bc * Hq * T, T, scale, s)) != 0)
			goto fail;
		// dP (G*T, T) = dO (G*T, D) V^T, into the score buffer
		GEMM_TRY(GEMM_BATCHED(h, 0, 1, G * T, T, D, 1.f, dO + qo, D, qs, v + ko, D, ks, 0.f,
		                      sc->S, CUDA_R_32F, T, ss, nb));
		// dV (T, D) = P^T (T, G*T) dO (G*T, D): sums over the group's heads
		GEMM_TRY(GEMM_BATCHED(h, 1, 0, T, D, G * T, 1.f, sc->P, T, ss, dO + qo, D, qs, 0.f,
		                      dv + ko, CUDA_R_16BF, D, ks, nb));
		// dS = P * (dP - rowsum(P dP)) * scale, over P
		if ((rv = fl_k_causal_softmax_backward(sc->P, sc->P, sc->S, (long)bc * Hq * T, T,
		                                       scale, s)) != 0)
			goto fail;
		// dQ (G*T, D) = dS (G*T, T) K (T, D)
		GEMM_TRY(GEMM_BATCHED(h, 0, 0, G * T, D, T, 1.f, sc->P, T, ss, k + ko, D, ks, 0.f,
		                      dq + qo, CUDA_R_16BF, D, qs, nb));
		// dK (T, D) = dS^T (T, G*T) Q (G*T, D)
		GEMM_TRY(GEMM_BATCHED(h, 1, 0, T, D, G * T, 1.f, sc->P, T, ss, q + qo, D, qs, 0.f,
		                      dk + ko, CUDA_R_16BF, D, ks, nb));
	}
fail:
	return rv;
}

void fl_rope_table(float2 *host, int T, int D, const float *inv_freq)
{
	int half = D / 2;
	for (int t = 0; t < T; t++)
		for (int i = 0; i < half; i++) {
			float ang = (float)t * inv_freq[i];
			host[(size_t)t * half + i] =
			    make_float2((float)cos((double)ang), (float)sin((double)ang));
		}
}
