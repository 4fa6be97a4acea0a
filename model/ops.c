/*
 * model/ops.c — CPU float32 layers of the Llama decoder (see model/ops.h).
 *
 * Matrix products (linear layers, LoRA, attention's QK^T, PV and their
 * gradients) go through cblas_sgemm; the rest are plain loops the compiler
 * vectorizes. Attention works on blocks of query rows so that a block only
 * touches the keys it can see (causal), which halves its work and needs only
 * a fixed-size stack scratch; the LoRA backward likewise works on row blocks
 * of a fixed-size scratch. Nothing here allocates from the heap.
 *
 * Deliberately not here: threading of the elementwise loops (OpenBLAS
 * threads the products, which are most of the work), mixed precision.
 */
#include "model/ops.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <string.h>

/* Floats of stack scratch used by the attention and LoRA backwards (64 KiB). */
#define OPS_SCRATCH MODEL_OPS_MAX_T
/* Query rows per attention block in the forward. */
#define OPS_ATT_BLOCK 64

void model_embed_forward(float *out, const int *tok, const float *wte, int N, int C)
{
	for (int n = 0; n < N; n++)
		memcpy(out + (size_t)n * C, wte + (size_t)tok[n] * C, (size_t)C * sizeof(float));
}

void model_embed_backward(float *dwte, const float *dout, const int *tok, int N, int C)
{
	for (int n = 0; n < N; n++) {
		float *d = dwte + (size_t)tok[n] * C;
		const float *g = dout + (size_t)n * C;
		for (int c = 0; c < C; c++)
			d[c] += g[c];
	}
}

void model_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C,
                           float eps)
{
	for (int n = 0; n < N; n++) {
		const float *xr = x + (size_t)n * C;
		float *o = out + (size_t)n * C;
		double ss = 0;
		for (int c = 0; c < C; c++)
			ss += (double)xr[c] * xr[c];
		float r = (float)(1.0 / sqrt(ss / C + eps));
		rstd[n] = r;
		for (int c = 0; c < C; c++)
			o[c] = xr[c] * r * w[c];
	}
}

/* y = w * x * r with r = (mean(x^2) + eps)^-1/2:
 * dx = r * (w*dy) - x * r^3 / C * sum(w*dy*x), dw = sum_n dy * x * r. */
void model_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                            const float *rstd, int N, int C)
{
	for (int n = 0; n < N; n++) {
		const float *xr = x + (size_t)n * C;
		const float *dy = dout + (size_t)n * C;
		float *d = dx + (size_t)n * C;
		float r = rstd[n];
		double dot = 0;
		for (int c = 0; c < C; c++)
			dot += (double)w[c] * dy[c] * xr[c];
		float k = (float)(dot * r * r * r / C);
		for (int c = 0; c < C; c++)
			d[c] += r * w[c] * dy[c] - xr[c] * k;
		if (dw)
			for (int c = 0; c < C; c++)
				dw[c] += dy[c] * xr[c] * r;
	}
}

void model_matmul_forward(float *out, const float *x, const float *w, int N, int IN, int OUT)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OUT, IN, 1.0f, x, IN, w, IN, 0.0f,
	            out, OUT);
}

void model_matmul_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                           int N, int IN, int OUT)
{
	if (dx)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IN, OUT, 1.0f, dout, OUT,
		            w, IN, 1.0f, dx, IN);
	if (dw)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, N, 1.0f, dout, OUT, x,
		            IN, 1.0f, dw, IN);
}

void model_bias_forward(float *out, const float *b, int N, int OUT)
{
	for (int n = 0; n < N; n++) {
		float *o = out + (size_t)n * OUT;
		for (int j = 0; j < OUT; j++)
			o[j] += b[j];
	}
}

void model_bias_backward(float *db, const float *dout, int N, int OUT)
{
	for (int n = 0; n < N; n++) {
		const float *d = dout + (size_t)n * OUT;
		for (int j = 0; j < OUT; j++)
			db[j] += d[j];
	}
}

void model_lora_forward(float *out, float *xa, const float *x, const float *A, const float *B,
                        int N, int IN, int OUT, int r, float scale)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, IN, 1.0f, x, IN, A, IN, 0.0f, xa,
	            r);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OUT, r, scale, xa, r, B, r, 1.0f,
	            out, OUT);
}

/* Rows [n0, n0 + nr) of the LoRA backward: t = dout B (nr,r) in scratch, then
 * dA += scale t^T x, dx += scale t A. */
static void lora_backward_rows(float *dx, float *dA, const float *dout, const float *x,
                               const float *A, const float *B, int n0, int nr, int IN, int OUT,
                               int r, float scale, float *t)
{
	const float *dor = dout + (size_t)n0 * OUT;
	const float *xr = x + (size_t)n0 * IN;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, r, OUT, 1.0f, dor, OUT, B, r,
	            0.0f, t, r);
	if (dA)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, IN, nr, scale, t, r, xr, IN,
		            1.0f, dA, IN);
	if (dx)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, IN, r, scale, t, r, A,
		            IN, 1.0f, dx + (size_t)n0 * IN, IN);
}

void model_lora_backward(float *dx, float *dA, float *dB, const float *dout, const float *x,
                         const float *xa, const float *A, const float *B, int N, int IN, int OUT,
                         int r, float scale)
{
	float t[OPS_SCRATCH];
	assert(r >= 1 && r <= OPS_SCRATCH);
	if (dB)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, r, N, scale, dout, OUT,
		            xa, r, 1.0f, dB, r);
	if (!dA && !dx)
		return;
	int rows = OPS_SCRATCH / r;
	for (int n0 = 0; n0 < N; n0 += rows) {
		int nr = N - n0 < rows ? N - n0 : rows;
		lora_backward_rows(dx, dA, dout, x, A, B, n0, nr, IN, OUT, r, scale, t);
	}
}

void model_lora_backward_per_example(float *dx, float *dA, float *dB, size_t stride,
                                     const float *dout, const float *x, const float *xa,
                                     const float *A, const float *B, int nex, int T, int IN,
                                     int OUT, int r, float scale)
{
	float t[OPS_SCRATCH];
	assert(r >= 1 && r <= OPS_SCRATCH);
	int rows = OPS_SCRATCH / r;
	for (int e = 0; e < nex; e++) {
		size_t e0 = (size_t)e * T;
		if (dB)
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, r, T, scale,
			            dout + e0 * OUT, OUT, xa + e0 * r, r, 1.0f, dB + e * stride, r);
		if (!dA && !dx)
			continue;
		for (int n0 = 0; n0 < T; n0 += rows) {
			int nr = T - n0 < rows ? T - n0 : rows;
			lora_backward_rows(dx, dA ? dA + e * stride : NULL, dout, x, A, B,
			                   (int)e0 + n0, nr, IN, OUT, r, scale, t);
		}
	}
}

void model_rope_inv_freq(float *inv, int D, float theta, const model_rope_scaling *s)
{
	int half = D / 2;
	assert(D % 2 == 0 && D >= 2);
	for (int i = 0; i < half; i++)
		inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)D);
	if (!s || s->type == MODEL_ROPE_DEFAULT)
		return;
	assert(s->type == MODEL_ROPE_LLAMA3);
	/* Every step rounds where torch rounds: the Python scalars (doubles,
	 * their quotients and differences taken in double) are cast to float32
	 * when they meet the float32 tensors, and `scalar / tensor` is
	 * tensor.reciprocal() * scalar. Comparisons are made in float32 too. */
	float factor = (float)s->factor, low = (float)s->low_freq_factor;
	float orig = (float)s->original_max_position_embeddings;
	float low_wavelen = (float)(s->original_max_position_embeddings / s->low_freq_factor);
	float high_wavelen = (float)(s->original_max_position_embeddings / s->high_freq_factor);
	float band = (float)(s->high_freq_factor - s->low_freq_factor);
	float two_pi = (float)(2.0 * M_PI);
	for (int i = 0; i < half; i++) {
		float wavelen = (1.0f / inv[i]) * two_pi;
		if (wavelen > low_wavelen) {
			inv[i] = inv[i] / factor; /* low band: interpolated */
		} else if (!(wavelen < high_wavelen)) {
			/* medium band: smooth in [0, 1] from 0 at low_wavelen to 1 at
			 * high_wavelen */
			float smooth = ((1.0f / wavelen) * orig - low) / band;
			inv[i] = (1.0f - smooth) * inv[i] / factor + smooth * inv[i];
		} /* high band: unchanged */
	}
}

/* Rotation of every (i, i + D/2) pair of x (B,T,H,D) by angle pos * inv_freq[i]
 * (sign +1, forward) or by its negative (sign -1, the transpose, backward).
 * The angles are computed in float32 the way transformers computes them
 * (angle = float(pos) * inv_freq[i], with the float32 inv_freq of
 * model_rope_inv_freq), so that long positions round the same way as the
 * reference. */
static void rope_apply(float *x, int B, int T, int H, int D, const float *inv_freq, int sign)
{
	int half = D / 2;
	assert(D % 2 == 0);
	for (int t = 0; t < T; t++) {
		for (int i = 0; i < half; i++) {
			float ang = (float)t * inv_freq[i];
			float c = cosf(ang), s = sinf(ang) * (float)sign;
			for (int b = 0; b < B; b++) {
				float *row = x + ((size_t)b * T + t) * (size_t)H * D;
				for (int h = 0; h < H; h++) {
					float *v = row + (size_t)h * D;
					float x1 = v[i], x2 = v[i + half];
					v[i] = x1 * c - x2 * s;
					v[i + half] = x2 * c + x1 * s;
				}
			}
		}
	}
}

void model_rope_forward(float *x, int B, int T, int H, int D, const float *inv_freq)
{
	rope_apply(x, B, T, H, D, inv_freq, 1);
}

void model_rope_backward(float *dx, int B, int T, int H, int D, const float *inv_freq)
{
	rope_apply(dx, B, T, H, D, inv_freq, -1);
}

void model_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                             int B, int T, int Hq, int Hkv, int D)
{
	assert(Hkv >= 1 && Hq % Hkv == 0);
	int group = Hq / Hkv;
	int ldq = Hq * D, ldk = Hkv * D;
	float scale = (float)(1.0 / sqrt((double)D));
	for (int b = 0; b < B; b++) {
		for (int h = 0; h < Hq; h++) {
			int hk = h / group;
			const float *qb = q + (size_t)b * T * ldq + (size_t)h * D;
			const float *kb = k + (size_t)b * T * ldk + (size_t)hk * D;
			const float *vb = v + (size_t)b * T * ldk + (size_t)hk * D;
			float *ob = out + (size_t)b * T * ldq + (size_t)h * D;
			float *ab = att + ((size_t)b * Hq + h) * (size_t)T * T;
			for (int t0 = 0; t0 < T; t0 += OPS_ATT_BLOCK) {
				int t1 = t0 + OPS_ATT_BLOCK < T ? t0 + OPS_ATT_BLOCK : T;
				int nr = t1 - t0;
				float *arow = ab + (size_t)t0 * T;
				/* scores of rows [t0,t1) against the keys [0,t1) they may see */
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, t1, D,
				            scale, qb + (size_t)t0 * ldq, ldq, kb, ldk, 0.0f, arow,
				            T);
				for (int t = t0; t < t1; t++) {
					float *a = ab + (size_t)t * T;
					float mx = a[0];
					for (int s = 1; s <= t; s++)
						mx = a[s] > mx ? a[s] : mx;
					double sum = 0;
					for (int s = 0; s <= t; s++) {
						a[s] = expf(a[s] - mx);
						sum += a[s];
					}
					float inv = (float)(1.0 / sum);
					for (int s = 0; s <= t; s++)
						a[s] *= inv;
					for (int s = t + 1; s < T; s++)
						a[s] = 0.0f;
				}
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, D, t1,
				            1.0f, arow, T, vb, ldk, 0.0f, ob + (size_t)t0 * ldq,
				            ldq);
			}
		}
	}
}

/* Per (b, h) and block of query rows [t0,t1) (keys [0,t1)):
 *   dP = dO V^T, dV += P^T dO, dS = P * (dP - rowsum(P * dP)),
 *   dQ += scale dS K, dK += scale dS^T Q. */
void model_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *att, int B, int T,
                              int Hq, int Hkv, int D)
{
	float scr[OPS_SCRATCH];
	assert(Hkv >= 1 && Hq % Hkv == 0 && T <= OPS_SCRATCH);
	int group = Hq / Hkv;
	int ldq = Hq * D, ldk = Hkv * D;
	float scale = (float)(1.0 / sqrt((double)D));
	int blk = OPS_SCRATCH / T;
	if (blk > OPS_ATT_BLOCK)
		blk = OPS_ATT_BLOCK;
	for (int b = 0; b < B; b++) {
		for (int h = 0; h < Hq; h++) {
			int hk = h / group;
			size_t qoff = (size_t)b * T * ldq + (size_t)h * D;
			size_t koff = (size_t)b * T * ldk + (size_t)hk * D;
			const float *ab = att + ((size_t)b * Hq + h) * (size_t)T * T;
			for (int t0 = 0; t0 < T; t0 += blk) {
				int t1 = t0 + blk < T ? t0 + blk : T;
				int nr = t1 - t0;
				const float *P = ab + (size_t)t0 * T;
				const float *dO = dout + qoff + (size_t)t0 * ldq;
				/* dP (nr, t1), ld t1 */
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, t1, D,
				            1.0f, dO, ldq, v + koff, ldk, 0.0f, scr, t1);
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t1, D, nr,
				            1.0f, P, T, dO, ldq, 1.0f, dv + koff, ldk);
				for (int i = 0; i < nr; i++) {
					const float *p = P + (size_t)i * T;
					float *d = scr + (size_t)i * t1;
					int t = t0 + i;
					double dot = 0;
					for (int s = 0; s <= t; s++)
						dot += (double)p[s] * d[s];
					float fd = (float)dot;
					for (int s = 0; s <= t; s++)
						d[s] = p[s] * (d[s] - fd);
					for (int s = t + 1; s < t1; s++)
						d[s] = 0.0f;
				}
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, D, t1,
				            scale, scr, t1, k + koff, ldk, 1.0f,
				            dq + qoff + (size_t)t0 * ldq, ldq);
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t1, D, nr,
				            scale, scr, t1, q + qoff + (size_t)t0 * ldq, ldq, 1.0f,
				            dk + koff, ldk);
			}
		}
	}
}

/* ---- attention without the (T,T) probabilities ---- */

/* Query rows per block and keys per tile of the flash attention. */
#define OPS_FLASH_BR 64
#define OPS_FLASH_BC 64

/* S (nr, nc) ld OPS_FLASH_BC = scale * Q[t0..] K[s0..]^T, with -INF where key
 * s0+j lies after query t0+i (causal mask). */
static void flash_scores(float *S, const float *qb, const float *kb, int ldq, int ldk, int t0,
                         int nr, int s0, int nc, int D, float scale)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nc, D, scale,
	            qb + (size_t)t0 * ldq, ldq, kb + (size_t)s0 * ldk, ldk, 0.0f, S, OPS_FLASH_BC);
	if (s0 + nc - 1 <= t0)
		return; /* the tile lies wholly below the diagonal */
	for (int i = 0; i < nr; i++)
		for (int j = 0; j < nc; j++)
			if (s0 + j > t0 + i)
				S[i * OPS_FLASH_BC + j] = -INFINITY;
}

/* Per (b, h), query block [t0,t1), key tiles [s0,s0+nc) up to the diagonal,
 * with the online softmax: m_i = running row max, l_i = running sum of
 * exp(s - m_i), O_i rescaled by exp(m_old - m_new) before P V is added.
 * O is accumulated in out itself; lse_i = m_i + log l_i. */
void model_flash_attention_forward(float *out, float *lse, const float *q, const float *k,
                                   const float *v, int B, int T, int Hq, int Hkv, int D)
{
	float S[OPS_FLASH_BR * OPS_FLASH_BC], mx[OPS_FLASH_BR], l[OPS_FLASH_BR];
	assert(Hkv >= 1 && Hq % Hkv == 0);
	int group = Hq / Hkv;
	int ldq = Hq * D, ldk = Hkv * D;
	float scale = (float)(1.0 / sqrt((double)D));
	for (int b = 0; b < B; b++) {
		for (int h = 0; h < Hq; h++) {
			int hk = h / group;
			const float *qb = q + (size_t)b * T * ldq + (size_t)h * D;
			const float *kb = k + (size_t)b * T * ldk + (size_t)hk * D;
			const float *vb = v + (size_t)b * T * ldk + (size_t)hk * D;
			float *ob = out + (size_t)b * T * ldq + (size_t)h * D;
			float *lb = lse + ((size_t)b * Hq + h) * (size_t)T;
			for (int t0 = 0; t0 < T; t0 += OPS_FLASH_BR) {
				int nr = T - t0 < OPS_FLASH_BR ? T - t0 : OPS_FLASH_BR;
				for (int i = 0; i < nr; i++) {
					mx[i] = -INFINITY;
					l[i] = 0.0f;
					memset(ob + (size_t)(t0 + i) * ldq, 0,
					       (size_t)D * sizeof(float));
				}
				for (int s0 = 0; s0 < t0 + nr; s0 += OPS_FLASH_BC) {
					int nc = t0 + nr - s0 < OPS_FLASH_BC ? t0 + nr - s0
					                                     : OPS_FLASH_BC;
					flash_scores(S, qb, kb, ldq, ldk, t0, nr, s0, nc, D, scale);
					for (int i = 0; i < nr; i++) {
						float *s = S + i * OPS_FLASH_BC, m1 = mx[i];
						for (int j = 0; j < nc; j++)
							m1 = s[j] > m1 ? s[j] : m1;
						/* every row sees key s0 <= t0 + i in its
						 * first tile, so m1 is finite */
						float corr = expf(mx[i] - m1), sum = 0.0f;
						for (int j = 0; j < nc; j++) {
							s[j] = expf(s[j] - m1);
							sum += s[j];
						}
						l[i] = l[i] * corr + sum;
						mx[i] = m1;
						if (corr != 1.0f) {
							float *o = ob + (size_t)(t0 + i) * ldq;
							for (int d = 0; d < D; d++)
								o[d] *= corr;
						}
					}
					cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr,
					            D, nc, 1.0f, S, OPS_FLASH_BC,
					            vb + (size_t)s0 * ldk, ldk, 1.0f,
					            ob + (size_t)t0 * ldq, ldq);
				}
				for (int i = 0; i < nr; i++) {
					float *o = ob + (size_t)(t0 + i) * ldq, inv = 1.0f / l[i];
					for (int d = 0; d < D; d++)
						o[d] *= inv;
					lb[t0 + i] = mx[i] + logf(l[i]);
				}
			}
		}
	}
}

/* FlashAttention-2 backward: per (b, h) and query block i, Di = rowsum(dO_i *
 * O_i); per key tile j up to the diagonal, P = exp(S - lse_i) recomputed,
 * dV_j += P^T dO_i, dP = dO_i V_j^T, dS = P * (dP - Di),
 * dQ_i += scale dS K_j, dK_j += scale dS^T Q_i. */
void model_flash_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                    const float *q, const float *k, const float *v,
                                    const float *out, const float *lse, int B, int T, int Hq,
                                    int Hkv, int D)
{
	float P[OPS_FLASH_BR * OPS_FLASH_BC], dP[OPS_FLASH_BR * OPS_FLASH_BC], Di[OPS_FLASH_BR];
	assert(Hkv >= 1 && Hq % Hkv == 0);
	int group = Hq / Hkv;
	int ldq = Hq * D, ldk = Hkv * D;
	float scale = (float)(1.0 / sqrt((double)D));
	for (int b = 0; b < B; b++) {
		for (int h = 0; h < Hq; h++) {
			int hk = h / group;
			size_t qoff = (size_t)b * T * ldq + (size_t)h * D;
			size_t koff = (size_t)b * T * ldk + (size_t)hk * D;
			const float *lb = lse + ((size_t)b * Hq + h) * (size_t)T;
			for (int t0 = 0; t0 < T; t0 += OPS_FLASH_BR) {
				int nr = T - t0 < OPS_FLASH_BR ? T - t0 : OPS_FLASH_BR;
				const float *dO = dout + qoff + (size_t)t0 * ldq;
				for (int i = 0; i < nr; i++) {
					const float *o = out + qoff + (size_t)(t0 + i) * ldq;
					const float *g = dO + (size_t)i * ldq;
					double dot = 0;
					for (int d = 0; d < D; d++)
						dot += (double)o[d] * g[d];
					Di[i] = (float)dot;
				}
				for (int s0 = 0; s0 < t0 + nr; s0 += OPS_FLASH_BC) {
					int nc = t0 + nr - s0 < OPS_FLASH_BC ? t0 + nr - s0
					                                     : OPS_FLASH_BC;
					flash_scores(P, q + qoff, k + koff, ldq, ldk, t0, nr, s0,
					             nc, D, scale);
					for (int i = 0; i < nr; i++) {
						float *p = P + i * OPS_FLASH_BC, li = lb[t0 + i];
						for (int j = 0; j < nc; j++)
							p[j] = expf(p[j] - li); /* exp(-inf) = 0 */
					}
					cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nc, D,
					            nr, 1.0f, P, OPS_FLASH_BC, dO, ldq, 1.0f,
					            dv + koff + (size_t)s0 * ldk, ldk);
					cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nc,
					            D, 1.0f, dO, ldq, v + koff + (size_t)s0 * ldk,
					            ldk, 0.0f, dP, OPS_FLASH_BC);
					for (int i = 0; i < nr; i++) {
						float *d = dP + i * OPS_FLASH_BC;
						const float *p = P + i * OPS_FLASH_BC;
						for (int j = 0; j < nc; j++)
							d[j] = p[j] * (d[j] - Di[i]);
					}
					cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr,
					            D, nc, scale, dP, OPS_FLASH_BC,
					            k + koff + (size_t)s0 * ldk, ldk, 1.0f,
					            dq + qoff + (size_t)t0 * ldq, ldq);
					cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nc, D,
					            nr, scale, dP, OPS_FLASH_BC,
					            q + qoff + (size_t)t0 * ldq, ldq, 1.0f,
					            dk + koff + (size_t)s0 * ldk, ldk);
				}
			}
		}
	}
}

void model_swiglu_forward(float *out, const float *gate, const float *up, int N)
{
	for (int i = 0; i < N; i++) {
		float g = gate[i];
		out[i] = g / (1.0f + expf(-g)) * up[i];
	}
}

void model_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, int N)
{
	for (int i = 0; i < N; i++) {
		float g = gate[i];
		float sg = 1.0f / (1.0f + expf(-g));
		float silu = g * sg;
		dgate[i] += dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
		dup[i] += dout[i] * silu;
	}
}

float model_crossentropy_forward_backward(float *logits_to_dlogits, float *losses,
                                          const int *targets, int N, int V, float dscale)
{
	double total = 0;
	for (int n = 0; n < N; n++) {
		float *l = logits_to_dlogits + (size_t)n * V;
		int tg = targets[n];
		if (tg < 0) {
			losses[n] = 0.0f;
			memset(l, 0, (size_t)V * sizeof(float));
			continue;
		}
		assert(tg < V);
		float mx = l[0];
		for (int i = 1; i < V; i++)
			mx = l[i] > mx ? l[i] : mx;
		double sum = 0;
		for (int i = 0; i < V; i++)
			sum += exp((double)(l[i] - mx));
		double lse = mx + log(sum);
		double loss = lse - l[tg];
		losses[n] = (float)loss;
		total += loss;
		for (int i = 0; i < V; i++)
			l[i] = (float)exp((double)l[i] - lse) * dscale;
		l[tg] -= dscale;
	}
	return (float)total;
}

void model_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                        float b2, float eps, float wd, int t)
{
	float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
	for (size_t i = 0; i < n; i++) {
		float gi = g[i];
		float mi = b1 * m[i] + (1.0f - b1) * gi;
		float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
		m[i] = mi;
		v[i] = vi;
		float mh = mi / c1, vh = vi / c2;
		p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
	}
}

void model_sgd_update(float *p, const float *g, float *mom, size_t n, float lr, float momentum,
                      float wd)
{
	if (mom && momentum != 0.0f) {
		for (size_t i = 0; i < n; i++) {
			mom[i] = momentum * mom[i] + g[i];
			p[i] -= lr * (mom[i] + wd * p[i]);
		}
	} else {
		for (size_t i = 0; i < n; i++)
			p[i] -= lr * (g[i] + wd * p[i]);
	}
}
