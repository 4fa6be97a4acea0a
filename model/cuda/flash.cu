/*
 * model/cuda/flash.cu — fused causal grouped-query attention, flash-style
 * (FlashAttention-2 schedule) on tensor cores through WMMA 16x16x16 bf16
 * fragments with float32 accumulation.
 *
 * Layout as layers.cu: q, o (B,Hq,T,D), k, v (B,Hkv,T,D), bf16. Blocks of 64
 * queries x 64 keys; 4 warps per thread block, each warp owning 16 rows.
 *   forward : per (query block, b, h): loop over key blocks 0..qb, scores into
 *             shared memory, online softmax per row (running max and sum),
 *             O += P V; writes O and the row log-sum-exp (B,Hq,T) for the
 *             backward. Never materializes the T x T scores in device memory.
 *   backward: delta = rowsum(dO * O); dK, dV per (key block, b, kv head),
 *             looping over the group's query heads and the query blocks at or
 *             after the key block; dQ per (query block, b, h) in a second
 *             kernel, so no atomics (scores are recomputed in each).
 * Masking: key j is visible to query t when j <= t; rows and columns past T
 * are padded with zeros and masked.
 * Limits: D a multiple of 16 and shared memory for the block sizes (D <= 64 on
 * every target; larger D where the device allows); fl_flash_supported() says.
 * Correctness is checked against the GEMM path (layers.cu) and the CPU
 * (tests/cuda_ops_test.c), and the model checks it at start-up (llama.cu).
 */
#include <math.h>
#include <mma.h>

#include "model/cuda/kernels.cuh"

using namespace nvcuda;

#define FB       64  /* rows of a query block and of a key block */
#define FTHREADS 128 /* 4 warps x 16 rows */

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> frag_a_row;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> frag_a_col;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> frag_b_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> frag_b_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_acc;

/* Padded leading dimensions (fewer bank conflicts; keep WMMA's alignment). */
static __host__ __device__ inline int ldh(int D)
{
	return D + 8; /* bf16 tiles (64 x D) */
}
#define LDP (FB + 8) /* bf16 64 x 64 */
#define LDS (FB + 4) /* f32 64 x 64 */
static __host__ __device__ inline int ldo(int D)
{
	return D + 4; /* f32 64 x D */
}

static __host__ __device__ inline size_t r128(size_t b)
{
	return (b + 127) & ~(size_t)127;
}

static size_t smem_fwd(int D)
{
	return 3 * r128((size_t)FB * ldh(D) * 2) + r128((size_t)FB * LDS * 4) +
	       r128((size_t)FB * LDP * 2) + r128((size_t)FB * ldo(D) * 4);
}
static size_t smem_bwd_kv(int D)
{
	return 4 * r128((size_t)FB * ldh(D) * 2) + r128((size_t)FB * LDS * 4) +
	       r128((size_t)FB * LDP * 2) + 2 * r128((size_t)FB * ldo(D) * 4) + 2 * r128(FB * 4);
}
static size_t smem_bwd_q(int D)
{
	return 4 * r128((size_t)FB * ldh(D) * 2) + r128((size_t)FB * LDS * 4) +
	       r128((size_t)FB * LDP * 2) + r128((size_t)FB * ldo(D) * 4) + 2 * r128(FB * 4);
}

static __device__ __forceinline__ void *carve(unsigned char *&p, size_t bytes)
{
	void *r = p;
	p += r128(bytes);
	return r;
}

static __device__ __forceinline__ float wsum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}
static __device__ __forceinline__ float wmax(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/* Copies rows [r0, r0+64) of a (T, D) bf16 matrix into a padded tile, zero
 * rows past T; 16-byte vectors (D is a multiple of 16). */
static __device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, int r0, int T, int D)
{
	int vec = D / 8, L = ldh(D);
	for (int i = threadIdx.x; i < FB * vec; i += blockDim.x) {
		int r = i / vec, c = (i % vec) * 8;
		uint4 val = make_uint4(0, 0, 0, 0);
		if (r0 + r < T)
			val = *(const uint4 *)(src + (size_t)(r0 + r) * D + c);
		*(uint4 *)(dst + (size_t)r * L + c) = val;
	}
}

/* S (16 x 64, rows of warp w) = A_w (16 x D) B^T, B a (64 x D) tile: into Ss. */
static __device__ __forceinline__ void warp_qkt(float *Ss, const bf16 *A, const bf16 *Bt, int D,
                                                int w)
{
	int L = ldh(D);
	for (int ct = 0; ct < FB / 16; ct++) {
		frag_acc acc;
		wmma::fill_fragment(acc, 0.0f);
		for (int kk = 0; kk < D / 16; kk++) {
			frag_a_row a;
			frag_b_col b;
			wmma::load_matrix_sync(a, A + (size_t)w * 16 * L + kk * 16, L);
			wmma::load_matrix_sync(b, Bt + (size_t)ct * 16 * L + kk * 16, L);
			wmma::mma_sync(acc, a, b, acc);
		}
		wmma::store_matrix_sync(Ss + (size_t)w * 16 * LDS + ct * 16, acc, LDS,
		                        wmma::mem_row_major);
	}
}

/* ---- forward ------------------------------------------------------------- */

__global__ void __launch_bounds__(FTHREADS)
    k_flash_fwd(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int T, int Hq,
                int Hkv, int D, float scale)
{
	extern __shared__ __align__(128) unsigned char smem[];
	unsigned char *sp = smem;
	int L = ldh(D), LO = ldo(D);
	bf16 *Qs = (bf16 *)carve(sp, (size_t)FB * L * 2);
	bf16 *Ks = (bf16 *)carve(sp, (size_t)FB * L * 2);
	bf16 *Vs = (bf16 *)carve(sp, (size_t)FB * L * 2);
	float *Ss = (float *)carve(sp, (size_t)FB * LDS * 4);
	bf16 *Ps = (bf16 *)carve(sp, (size_t)FB * LDP * 2);
	float *Os = (float *)carve(sp, (size_t)FB * LO * 4);
	int qb = blockIdx.x, bh = blockIdx.y, b = bh / Hq, h = bh % Hq, kvh = h / (Hq / Hkv);
	int w = threadIdx.x / 32, lane = threadIdx.x % 32, q0 = qb * FB;
	const bf16 *qp = q + (size_t)bh * T * D;
	const bf16 *kp = k + ((size_t)b * Hkv + kvh) * T * D;
	const bf16 *vp = v + ((size_t)b * Hkv + kvh) * T * D;

	load_tile(Qs, qp, q0, T, D);
	for (int i = threadIdx.x; i < FB * LO; i += blockDim.x)
		Os[i] = 0.f;
	float mrow[16], lrow[16];
#pragma unroll
	for (int r = 0; r < 16; r++) {
		mrow[r] = -INFINITY;
		lrow[r] = 0.f;
	}
	for (int kb = 0; kb <= qb; kb++) {
		int k0 = kb * FB;
		__syncthreads(); /* everyone is done with the previous K, V */
		load_tile(Ks, kp, k0, T, D);
		load_tile(Vs, vp, k0, T, D);
		__syncthreads();
		warp_qkt(Ss, Qs, Ks, D, w);
		__syncwarp();
#pragma unroll
		for (int r = 0; r < 16; r++) {
			int row = w * 16 + r, t = q0 + row;
			const float *sr = Ss + (size_t)row * LDS;
			int j0 = k0 + lane, j1 = k0 + lane + 32;
			float s0 = (j0 <= t && j0 < T) ? sr[lane] * scale : -INFINITY;
			float s1 = (j1 <= t && j1 < T) ? sr[lane + 32] * scale : -INFINITY;
			float mnew = fmaxf(mrow[r], wmax(fmaxf(s0, s1)));
			float p0 = s0 == -INFINITY ? 0.f : expf(s0 - mnew);
			float p1 = s1 == -INFINITY ? 0.f : expf(s1 - mnew);
			float alpha = mrow[r] == -INFINITY ? 0.f : expf(mrow[r] - mnew);
			lrow[r] = lrow[r] * alpha + wsum(p0 + p1);
			mrow[r] = mnew;
			Ps[(size_t)row * LDP + lane] = __float2bfloat16(p0);
			Ps[(size_t)row * LDP + lane + 32] = __float2bfloat16(p1);
			float *orow = Os + (size_t)row * LO;
			for (int d = lane; d < D; d += 32)
				orow[d] *= alpha;
		}
		__syncwarp();
		for (int dt = 0; dt < D / 16; dt++) {
			frag_acc acc;
			float *op = Os + (size_t)w * 16 * LO + dt * 16;
			wmma::load_matrix_sync(acc, op, LO, wmma::mem_row_major);
			for (int kk = 0; kk < FB / 16; kk++) {
				frag_a_row a;
				frag_b_row bb;
				wmma::load_matrix_sync(a, Ps + (size_t)w * 16 * LDP + kk * 16, LDP);
				wmma::load_matrix_sync(bb, Vs + (size_t)kk * 16 * L + dt * 16, L);
				wmma::mma_sync(acc, a, bb, acc);
			}
			wmma::store_matrix_sync(op, acc, LO, wmma::mem_row_major);
		}
		__syncwarp();
	}
#pragma unroll
	for (int r = 0; r < 16; r++) {
		int row = w * 16 + r, t = q0 + row;
		if (t >= T)
			continue;
		float inv = 1.0f / lrow[r];
		for (int d = lane; d < D; d += 32)
			o[((size_t)bh * T + t) * D + d] =
			    __float2bfloat16(Os[(size_t)row * LO + d] * inv);
		if (lane == 0)
			lse[(size_t)bh * T + t] = mrow[r] + logf(lrow[r]);
	}
}

/* ---- backward -------------------------------------------------------------- */

// delta[b,h,t] = sum_d dO[b,t,h,d] O[b,t,h,d], both (B,T,Hq,D); one warp per row
__global__ void k_flash_delta(float *delta, const bf16 *dout, const bf16 *out, int B, int T, int H,
                              int D)
{
	long row = (long)blockIdx.x * 8 + threadIdx.x / 32;
	int lane = threadIdx.x % 32;
	if (row >= (long)B * T * H)
		return;
	// row indexes (b, t, h) of the (B,T,H,D) layout
	int h = (int)(row % H);
	long bt = row / H;
	int t = (int)(bt % T), b = (int)(bt / T);
	const bf16 *x = dout + row * D, *y = out + row * D;
	float s = 0.f;
	for (int d = lane; d < D; d += 32)
		s += __bfloat162float(x[d]) * __bfloat162float(y[d]);
	s = wsum(s);
	if (lane == 0)
		delta[((size_t)b * H + h) * T + t] = s;
}

/* P (own 16 rows of warp w) = exp(scale*S - lse) masked, into Ps (bf16). */
static __device__ __forceinline__ void warp_probs(bf16 *Ps, const float *Ss, const float *Ls,
                                                  int q0, int k0, int T, float scale, int w,
                                                  int lane)
{
	for (int r = 0; r < 16; r++) {
		int row = w * 16 + r, t = q0 + row;
		for (int c = lane; c < FB; c += 32) {
			int j = k0 + c;
			float p = (t < T && j <= t && j < T)
			              ? expf(Ss[(size_t)row * LDS + c] * scale - Ls[row])
			              : 0.f;
			Ps[(size_t)row * LDP + c] = __float2bfloat16(p);
		}
	}
}

/* dS = P (dP - delta) * scale over the own rows of warp w: P in Ps, dP in Ss;
 * written over Ps. */
static __device__ __forceinline__ void warp_dscores(bf16 *Ps, const float *Ss, const float *Dl,
                                                    float scale, int w, int lane)
{
	for (int r = 0; r < 16; r++) {
		int row = w * 16 + r;
		for (int c = lane; c < FB; c += 32) {
			float p = __bfloat162float(Ps[(size_t)row * LDP + c]);
			Ps[(size_t)row * LDP + c] =
			    __float2bfloat16(p * (Ss[(size_t)row * LDS + c] - Dl[row]) * scale);
		}
	}
}

/* acc tile (16 x D, rows of warp w, f32 in shared, ld LO) += A^T B where A is
 * 64 x 16-column strip (col_major view of a row-major 64 x 64 bf16 tile,
 * columns w*16..) and B a (64 x D) bf16 tile. */
static __device__ __forceinline__ void warp_at_b(float *acc_s, int LO, const bf16 *A,
                                                 const bf16 *Bm, int L, int D, int w)
{
	for (int dt = 0; dt < D / 16; dt++) {
		frag_acc acc;
		float *ap = acc_s + (size_t)w * 16 * LO + dt * 16;
		wmma::load_matrix_sync(acc, ap, LO, wmma::mem_row_major);
		for (int kk = 0; kk < FB / 16; kk++) {
			frag_a_col a;
			frag_b_row b;
			wmma::load_matrix_sync(a, A + (size_t)kk * 16 * LDP + w * 16, LDP);
			wmma::load_matrix_sync(b, Bm + (size_t)kk * 16 * L + dt * 16, L);
			wmma::mma_sync(acc, a, b, acc);
		}
		wmma::store_matrix_sync(ap, acc, LO, wmma::mem_row_major);
	}
}

/* acc tile (rows of warp w) += A_w B, A the warp's 16 rows of a 64 x 64 bf16
 * tile, B a (64 x D) bf16 tile. */
static __device__ __forceinline__ void warp_a_b(float *acc_s, int LO, const bf16 *A, const bf16 *Bm,
                                                int L, int D, int w)
{
	for (int dt = 0; dt < D / 16; dt++) {
		frag_acc acc;
		float *ap = acc_s + (size_t)w * 16 * LO + dt * 16;
		wmma::load_matrix_sync(acc, ap, LO, wmma::mem_row_major);
		for (int kk = 0; kk < FB / 16; kk++) {
			frag_a_row a;
			frag_b_row b;
			wmma::load_matrix_sync(a, A + (size_t)w * 16 * LDP + kk * 16, LDP);
			wmma::load_matrix_sync(b, Bm + (size_t)kk * 16 * L + dt * 16, L);
			wmma::mma_sync(acc, a, b, acc);
		}
		wmma::store_matrix_sync(ap, acc, LO, wmma::mem_row_major);
	}
}

/* dK, dV of one key block of one kv head, summed over its query heads. */
__global__ void __launch_bounds__(FTHREADS)
    k_flash_bwd_kv(bf16 *dk, bf16 *dv, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dO,
                   const float *lse, const float *delta, int T, int Hq, int Hkv, int D, float scale)
{
	extern __shared__ __align__(128) unsigned char smem[];
	unsigned char *sp = smem;
	int L = ldh(D), LO = ldo(D);
	bf16 *Ks = (bf16 *)carve(sp, (size_t)FB * L * 2);
	bf16 *Vs = (bf16 *)carve(sp, (size_t)FB * L * 2);
	bf16 *Qs = (bf16 *)carve(sp, (size_t)FB * L * 2);
	bf16 *dOs = (bf16 *)carve(sp, (size_t)FB * L * 2);
	float *Ss = (float *)carve(sp, (size_t)FB * LDS * 4);
	bf16 *Ps = (bf16 *)carve(sp, (size_t)FB * LDP * 2);
	float *dKs = (float *)carve(sp, (size_t)FB * LO * 4);
	float *dVs = (float *)carve(sp, (size_t)FB * LO * 4);
	float *Ls = (float *)carve(sp, FB * 4);
	float *Dl = (float *)carve(sp, FB * 4);
	int kb = blockIdx.x, bkv = blockIdx.y, b = bkv / Hkv, kvh = bkv % Hkv, G = Hq / Hkv;
	int w = threadIdx.x / 32, lane = threadIdx.x % 32, k0 = kb * FB;
	int nqb = (T + FB - 1) / FB;
	const bf16 *kp = k + (size_t)bkv * T * D, *vp = v + (size_t)bkv * T * D;

	load_tile(Ks, kp, k0, T, D);
	load_tile(Vs, vp, k0, T, D);
	for (int i = threadIdx.x; i < FB * LO; i += blockDim.x)
		dKs[i] = dVs[i] = 0.f;
	for (int g = 0; g < G; g++) {
		int bh = b * Hq + kvh * G + g;
		for (int qb = kb; qb < nqb; qb++) {
			int q0 = qb * FB;
			__syncthreads(); /* previous users of Qs, dOs, Ps are done */
			load_tile(Qs, q + (size_t)bh * T * D, q0, T, D);
			load_tile(dOs, dO + (size_t)bh * T * D, q0, T, D);
			for (int i = threadIdx.x; i < FB; i += blockDim.x) {
				int t = q0 + i;
				Ls[i] = t < T ? lse[(size_t)bh * T + t] : 0.f;
				Dl[i] = t < T ? delta[(size_t)bh * T + t] : 0.f;
			}
			__syncthreads();
			warp_qkt(Ss, Qs, Ks, D, w); /* S: query rows of warp w */
			__syncwarp();
			warp_probs(Ps, Ss, Ls, q0, k0, T, scale, w, lane);
			__syncthreads(); /* dV reads every query row of P */
			warp_at_b(dVs, LO, Ps, dOs, L, D,
			          w);                /* dV rows (keys) of warp w += P^T dO */
			warp_qkt(Ss, dOs, Vs, D, w); /* dP = dO V^T, own query rows */
			__syncthreads();             /* all of P consumed by dV */
			warp_dscores(Ps, Ss, Dl, scale, w, lane);
			__syncthreads();                     /* dK reads every query row of dS */
			warp_at_b(dKs, LO, Ps, Qs, L, D, w); /* dK rows += dS^T Q */
		}
	}
	__syncthreads();
	for (int i = threadIdx.x; i < FB * D; i += blockDim.x) {
		int r = i / D, d = i % D, t = k0 + r;
		if (t < T) {
			dk[((size_t)bkv * T + t) * D + d] =
			    __float2bfloat16(dKs[(size_t)r * LO + d]);
			dv[((size_t)bkv * T + t) * D + d] =
			    __float2bfloat16(dVs[(size_t)r * LO + d]);
		}
	}
}

/* dQ of one query block of one head. */
__global__ void __launch_bounds__(FTHREADS)
    k_flash_bwd_q(bf16 *dq, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dO,
                  const float *lse, const float *delta, int T, int Hq, int Hkv, int D, float scale)
{
	extern __shared__ __align__(128) unsigned char smem[];
	unsigned char *sp = smem;
	int L = ldh(D), LO = ldo(D);
	bf16 *Qs = (bf16 *)carve(sp, (size_t)FB * L * 2);
	bf16 *dOs = (bf16 *)carve(sp, (size_t)FB * L * 2);
	bf16 *Ks = (bf16 *)carve(sp, (size_t)FB * L * 2);
	bf16 *Vs = (bf16 *)carve(sp, (size_t)FB * L * 2);
	float *Ss = (float *)carve(sp, (size_t)FB * LDS * 4);
	bf16 *Ps = (bf16 *)carve(sp, (size_t)FB * LDP * 2);
	float *dQs = (float *)carve(sp, (size_t)FB * LO * 4);
	float *Ls = (float *)carve(sp, FB * 4);
	float *Dl = (float *)carve(sp, FB * 4);
	int qb = blockIdx.x, bh = blockIdx.y, b = bh / Hq, h = bh % Hq, kvh = h / (Hq / Hkv);
	int w = threadIdx.x / 32, lane = threadIdx.x % 32, q0 = qb * FB;
	const bf16 *kp = k + ((size_t)b * Hkv + kvh) * T * D;
	const bf16 *vp = v + ((size_t)b * Hkv + kvh) * T * D;

	load_tile(Qs, q + (size_t)bh * T * D, q0, T, D);
	load_tile(dOs, dO + (size_t)bh * T * D, q0, T, D);
	for (int i = threadIdx.x; i < FB; i += blockDim.x) {
		int t = q0 + i;
		Ls[i] = t < T ? lse[(size_t)bh * T + t] : 0.f;
		Dl[i] = t < T ? delta[(size_t)bh * T + t] : 0.f;
	}
	for (int i = threadIdx.x; i < FB * LO; i += blockDim.x)
		dQs[i] = 0.f;
	for (int kb = 0; kb <= qb; kb++) {
		int k0 = kb * FB;
		__syncthreads();
		load_tile(Ks, kp, k0, T, D);
		load_tile(Vs, vp, k0, T, D);
		__syncthreads();
		warp_qkt(Ss, Qs, Ks, D, w);
		__syncwarp();
		warp_probs(Ps, Ss, Ls, q0, k0, T, scale, w, lane);
		__syncwarp();
		warp_qkt(Ss, dOs, Vs, D, w); /* dP */
		__syncwarp();
		warp_dscores(Ps, Ss, Dl, scale, w, lane);
		__syncwarp();
		warp_a_b(dQs, LO, Ps, Ks, L, D, w); /* dQ rows += dS K */
	}
	__syncthreads();
	for (int i = threadIdx.x; i < FB * D; i += blockDim.x) {
		int r = i / D, d = i % D, t = q0 + r;
		if (t < T)
			dq[((size_t)bh * T + t) * D + d] =
			    __float2bfloat16(dQs[(size_t)r * LO + d]);
	}
}

/* ---- host side ----------------------------------------------------------- */

int fl_flash_supported(int D)
{
	int dev = 0, optin = 0;
	if (D < 16 || D % 16)
		return 0;
	if (cudaGetDevice(&dev) != cudaSuccess ||
	    cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) !=
	        cudaSuccess) {
		cudaGetLastError();
		return 0;
	}
	size_t need = smem_fwd(D);
	if (smem_bwd_kv(D) > need)
		need = smem_bwd_kv(D);
	if (smem_bwd_q(D) > need)
		need = smem_bwd_q(D);
	return need <= (size_t)optin;
}

/* Raises the kernels' dynamic shared memory limit once per D. */
static int flash_setup(int D)
{
	static int done_for = 0;
	int rv = 0;
	if (done_for == D)
		return 0;
	CU_TRY(cudaFuncSetAttribute(k_flash_fwd, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                            (int)smem_fwd(D)));
	CU_TRY(cudaFuncSetAttribute(k_flash_bwd_kv, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                            (int)smem_bwd_kv(D)));
	CU_TRY(cudaFuncSetAttribute(k_flash_bwd_q, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                            (int)smem_bwd_q(D)));
	done_for = D;
fail:
	return rv;
}

int fl_flash_forward(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T,
                     int Hq, int Hkv, int D, cudaStream_t s)
{
	int rv;
	if ((rv = flash_setup(D)) != 0)
		return rv;
	dim3 grid((unsigned)fl_cdiv(T, FB), (unsigned)(B * Hq));
	k_flash_fwd<<<grid, FTHREADS, smem_fwd(D), s>>>(o, lse, q, k, v, T, Hq, Hkv, D,
	                                                1.0f / sqrtf((float)D));
	CU_LAUNCHED();
fail:
	return rv;
}

int fl_flash_backward(bf16 *dq, bf16 *dk, bf16 *dv, float *delta, const bf16 *dO_bhtd,
                      const bf16 *dO_bthd, const bf16 *o_bthd, const bf16 *q, const bf16 *k,
                      const bf16 *v, const float *lse, int B, int T, int Hq, int Hkv, int D,
                      cudaStream_t s)
{
	int rv;
	float scale = 1.0f / sqrtf((float)D);
	if ((rv = flash_setup(D)) != 0)
		return rv;
	k_flash_delta<<<fl_cdiv((long)B * T * Hq, 8), 256, 0, s>>>(delta, dO_bthd, o_bthd, B, T, Hq,
	                                                           D);
	CU_LAUNCHED();
	{
		dim3 gkv((unsigned)fl_cdiv(T, FB), (unsigned)(B * Hkv));
		k_flash_bwd_kv<<<gkv, FTHREADS, smem_bwd_kv(D), s>>>(dk, dv, q, k, v, dO_bhtd, lse,
		                                                     delta, T, Hq, Hkv, D, scale);
		CU_LAUNCHED();
		dim3 gq((unsigned)fl_cdiv(T, FB), (unsigned)(B * Hq));
		k_flash_bwd_q<<<gq, FTHREADS, smem_bwd_q(D), s>>>(dq, q, k, v, dO_bhtd, lse, delta,
		                                                  T, Hq, Hkv, D, scale);
		CU_LAUNCHED();
	}
fail:
	return rv;
}
