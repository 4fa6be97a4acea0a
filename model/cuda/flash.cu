/*
 * model/cuda/flash.cu — fused causal grouped-query attention, flash-style
 * (FlashAttention-2 schedule) on tensor cores: mma.sync m16n8k16 bf16 with
 * float32 accumulation, the score, probability and accumulator tiles kept in
 * registers (the C fragment of S = Q K^T is reused as the A fragment of P V,
 * so P never goes through shared memory).
 *
 * Layout: q (B,Hq,T,D), k, v (B,Hkv,T,D) as layers.cu, but O and dO in the
 * (B,T,Hq,D) layout of the o_proj input (the kernels stride over heads, so
 * no permutation pass is needed around them); dq, dk, dv like q, k, v; all
 * bf16. Blocks of 64
 * queries (or keys) x 64 keys (or queries); 4 warps per thread block, each
 * warp owning 16 rows; shared memory holds only the streamed 64 x D tiles.
 *   forward : per (query block, b, h), heaviest blocks first: loop over key
 *             blocks 0..qb, online softmax per row in the exp2 domain; writes
 *             O and the row log-sum-exp (B,Hq,T) (natural log) for the
 *             backward. Never materializes the T x T scores in memory.
 *   backward: delta = rowsum(dO * O); dK, dV per (key block, b, kv head),
 *             each warp computing S^T = K Q^T for its 16 keys so that P^T and
 *             dS^T are A fragments of dV += P^T dO and dK += dS^T Q, looping
 *             over the group's query heads and the query blocks at or after
 *             the key block; dQ per (query block, b, h) in a second kernel
 *             (scores recomputed), so no atomics and a deterministic result.
 * Masking: key j is visible to query t when j <= t; rows and columns past T
 * are padded with zeros and masked.
 * Limits: D in {16, 32, 64, 128} (fl_flash_supported says); sm_80 or newer
 * (mma.sync bf16). D 128 spills registers in the backward (correct, slower).
 * Correctness is checked against the GEMM path (layers.cu) and the CPU
 * (tests/cuda_ops_test.c), and the model checks it at start-up (llama.cu).
 */
#include <math.h>

#include "model/cuda/kernels.cuh"

#define FB       64  /* rows of a query block and of a key block */
#define FTHREADS 128 /* 4 warps x 16 rows */
/* pipeline stages of the streamed tiles: double-buffered (the next tiles
 * load while the current ones are used) where two fit in 48 KiB of static
 * shared memory, single otherwise */
#define FSTAGES(D) ((D) <= 64 ? 2 : 1)
#define LOG2E      1.4426950408889634f
#define LN2        0.6931471805599453f

/* ---- fragments -------------------------------------------------------------
 * m16n8k16 (row.col) with g = lane / 4, c = lane % 4:
 *   A (16 x 16): a0 (g, 2c..2c+1), a1 (g+8, 2c..), a2 (g, 2c+8..), a3 (g+8, 2c+8..)
 *   B (16 x 8) : b0 (k 2c..2c+1, n g), b1 (k 2c+8..2c+9, n g)
 *   C (16 x 8) : c0, c1 (g, 2c..2c+1), c2, c3 (g+8, 2c..2c+1)
 * Two adjacent C tiles (columns 0-7, 8-15) packed to bf16 are an A fragment.
 * B fragments come from shared memory through ldmatrix (.trans where the
 * tile is stored k-major). Shared tiles are row-major with a row length of
 * D + 8 elements (16-byte aligned rows), which makes every access pattern
 * below free of bank conflicts. */

static __device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0,
                                                uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
	             "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
	             : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ uint32_t pack2(float lo, float hi)
{
	__nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
	return *(uint32_t *)&v;
}

/* A fragment of rows r0.., columns k0.. of a row-major tile. */
static __device__ __forceinline__ void ld_a(uint32_t *a, const bf16 *s, int ld, int r0, int k0,
                                            int lane)
{
	const bf16 *p = s + (r0 + (lane >> 2)) * ld + k0 + 2 * (lane & 3);
	a[0] = *(const uint32_t *)p;
	a[1] = *(const uint32_t *)(p + 8 * ld);
	a[2] = *(const uint32_t *)(p + 8);
	a[3] = *(const uint32_t *)(p + 8 * ld + 8);
}

/* Two B fragments (n-tiles n0 and n0 + 8; b[0..1], b[2..3]) with B(k, n) =
 * M[n][k] (as ld_bt) through one ldmatrix.x4: lanes 8i..8i+7 address the
 * rows of 8 x 8 matrix i = (n half i / 2, k half i % 2). */
static __device__ __forceinline__ void ldsm_bt2(uint32_t *b, const bf16 *s, int ld, int n0, int k0,
                                                int lane)
{
	int mi = lane >> 3, r = lane & 7;
	const bf16 *p = s + (n0 + r + (mi >> 1) * 8) * ld + k0 + (mi & 1) * 8;
	uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
	             : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
	             : "r"(a));
}

/* Two B fragments (n-tiles n0 and n0 + 8) with B(k, n) = M[k][n] (as ld_b)
 * through one transposing ldmatrix.x4: matrix i = (k half i % 2, n half
 * i / 2). */
static __device__ __forceinline__ void ldsm_b2(uint32_t *b, const bf16 *s, int ld, int k0, int n0,
                                               int lane)
{
	int mi = lane >> 3, r = lane & 7;
	const bf16 *p = s + (k0 + r + (mi & 1) * 8) * ld + n0 + (mi >> 1) * 8;
	uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
	             : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
	             : "r"(a));
}

/* Copies rows [r0, r0+64) of a (T, D) bf16 matrix whose rows are `stride`
 * elements apart (D for (B,H,T,D), H*D for (B,T,H,D)) into a padded tile,
 * zero rows past T; 16-byte vectors (D is a multiple of 16). */
template <int D>
static __device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, int r0, int T,
                                                 size_t stride = D)
{
	constexpr int VEC = D / 8, LD = D + 8;
	for (int i = threadIdx.x; i < FB * VEC; i += FTHREADS) {
		int r = i / VEC, c = (i % VEC) * 8;
		uint4 val = make_uint4(0, 0, 0, 0);
		if (r0 + r < T)
			val = *(const uint4 *)(src + (size_t)(r0 + r) * stride + c);
		*(uint4 *)(dst + r * LD + c) = val;
	}
}

/* The same through cp.async (16 bytes each, zero-filled past T): the copy
 * runs while the block computes; cp_commit closes a group, cp_wait<n> waits
 * until at most n groups are pending (then a barrier publishes the tile). */
template <int D>
static __device__ __forceinline__ void load_tile_async(bf16 *dst, const bf16 *src, int r0, int T,
                                                       size_t stride = D)
{
	constexpr int VEC = D / 8, LD = D + 8;
	for (int i = threadIdx.x; i < FB * VEC; i += FTHREADS) {
		int r = i / VEC, c = (i % VEC) * 8, ok = r0 + r < T;
		const bf16 *g = ok ? src + (size_t)(r0 + r) * stride + c : src;
		uint32_t a = (uint32_t)__cvta_generic_to_shared(dst + r * LD + c);
		asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(a), "l"(g),
		             "r"(ok ? 16 : 0)
		             : "memory");
	}
}

static __device__ __forceinline__ void cp_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N> static __device__ __forceinline__ void cp_wait(void)
{
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* acc (16 x 64 of this warp, 8 C tiles) = A (16 x D, KT A fragments) M^T,
 * M a 64 x D tile: the scores of the warp's rows against the tile's rows. */
template <int D>
static __device__ __forceinline__ void warp_abt(float (*acc)[4], const uint32_t (*a)[4],
                                                const bf16 *M, int lane)
{
#pragma unroll
	for (int j = 0; j < FB / 8; j += 2) {
		acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
		acc[j + 1][0] = acc[j + 1][1] = acc[j + 1][2] = acc[j + 1][3] = 0.f;
#pragma unroll
		for (int kk = 0; kk < D / 16; kk++) {
			uint32_t b[4];
			ldsm_bt2(b, M, D + 8, j * 8, kk * 16, lane);
			mma16816(acc[j], a[kk], b[0], b[1]);
			mma16816(acc[j + 1], a[kk], b[2], b[3]);
		}
	}
}

/* acc (16 x D, D/8 C tiles) += P (16 x 64, C tiles in p) M, M a 64 x D tile. */
template <int D>
static __device__ __forceinline__ void warp_pm(float (*acc)[4], const float (*p)[4], const bf16 *M,
                                               int lane)
{
#pragma unroll
	for (int kk = 0; kk < FB / 16; kk++) {
		uint32_t a[4];
		a[0] = pack2(p[2 * kk][0], p[2 * kk][1]);
		a[1] = pack2(p[2 * kk][2], p[2 * kk][3]);
		a[2] = pack2(p[2 * kk + 1][0], p[2 * kk + 1][1]);
		a[3] = pack2(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
		for (int dn = 0; dn < D / 8; dn += 2) {
			uint32_t b[4];
			ldsm_b2(b, M, D + 8, kk * 16, dn * 8, lane);
			mma16816(acc[dn], a, b[0], b[1]);
			mma16816(acc[dn + 1], a, b[2], b[3]);
		}
	}
}

/* Writes the warp's 16 x D accumulator rows r0 + g, r0 + g + 8 (those < T)
 * of a (T, D) bf16 matrix with rows `stride` apart, times mul0 / mul1. */
template <int D>
static __device__ __forceinline__ void store_rows(bf16 *dst, size_t stride, const float (*acc)[4],
                                                  int r0, int T, float mul0, float mul1, int lane)
{
	int ra = r0 + (lane >> 2), rb = ra + 8, c = 2 * (lane & 3);
#pragma unroll
	for (int dn = 0; dn < D / 8; dn++) {
		if (ra < T)
			*(__nv_bfloat162 *)(dst + (size_t)ra * stride + dn * 8 + c) =
			    __floats2bfloat162_rn(acc[dn][0] * mul0, acc[dn][1] * mul0);
		if (rb < T)
			*(__nv_bfloat162 *)(dst + (size_t)rb * stride + dn * 8 + c) =
			    __floats2bfloat162_rn(acc[dn][2] * mul1, acc[dn][3] * mul1);
	}
}

/* ---- forward ------------------------------------------------------------- */

template <int D>
__global__ void __launch_bounds__(FTHREADS)
    k_flash_fwd(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int T, int Hq,
                int Hkv, float sl2)
{
	constexpr int LD = D + 8, ST = FSTAGES(D);
	__shared__ __align__(16) bf16 Ks[ST][FB * LD];
	__shared__ __align__(16) bf16 Vs[ST][FB * LD];
	int qb = gridDim.x - 1 - blockIdx.x; /* the longest rows first */
	int bh = blockIdx.y, b = bh / Hq, h = bh % Hq, kvh = h / (Hq / Hkv);
	int w = threadIdx.x >> 5, lane = threadIdx.x & 31, c2 = 2 * (lane & 3);
	int q0 = qb * FB, ra = q0 + w * 16 + (lane >> 2), rb = ra + 8;
	const bf16 *kp = k + ((size_t)b * Hkv + kvh) * T * D;
	const bf16 *vp = v + ((size_t)b * Hkv + kvh) * T * D;
	uint32_t qa[D / 16][4];
	float oacc[D / 8][4];
	float ma = -INFINITY, mb = -INFINITY, la = 0.f, lb = 0.f;

	load_tile<D>(Ks[0], q + (size_t)bh * T * D, q0, T); /* Q staged through Ks */
	__syncthreads();
#pragma unroll
	for (int kk = 0; kk < D / 16; kk++)
		ld_a(qa[kk], Ks[0], LD, w * 16, kk * 16, lane);
#pragma unroll
	for (int dn = 0; dn < D / 8; dn++)
		oacc[dn][0] = oacc[dn][1] = oacc[dn][2] = oacc[dn][3] = 0.f;
	__syncthreads(); /* Q is in registers: Ks[0] is free */
	if (ST == 2) {
		load_tile_async<D>(Ks[0], kp, 0, T);
		load_tile_async<D>(Vs[0], vp, 0, T);
		cp_commit();
	}
	for (int kb = 0; kb <= qb; kb++) {
		int k0 = kb * FB, cur = ST == 2 ? kb & 1 : 0;
		float s[FB / 8][4];
		if (ST == 1) {
			load_tile_async<D>(Ks[0], kp, k0, T);
			load_tile_async<D>(Vs[0], vp, k0, T);
			cp_commit();
			cp_wait<0>();
		} else if (kb < qb) { /* prefetch the next tiles into the other stage */
			load_tile_async<D>(Ks[cur ^ 1], kp, k0 + FB, T);
			load_tile_async<D>(Vs[cur ^ 1], vp, k0 + FB, T);
			cp_commit();
			cp_wait<1>();
		} else {
			cp_wait<0>();
		}
		__syncthreads();
		warp_abt<D>(s, qa, Ks[cur], lane);
		/* scale into the exp2 domain, mask, row maxima (a row lives in a quad) */
		float xa = -INFINITY, xb = -INFINITY;
		int edge = kb == qb || k0 + FB > T;
#pragma unroll
		for (int j = 0; j < FB / 8; j++)
#pragma unroll
			for (int e = 0; e < 2; e++) {
				int col = k0 + j * 8 + c2 + e;
				float va = s[j][e] * sl2, vb = s[j][2 + e] * sl2;
				if (edge) {
					va = col <= ra && col < T ? va : -INFINITY;
					vb = col <= rb && col < T ? vb : -INFINITY;
				}
				s[j][e] = va;
				s[j][2 + e] = vb;
				xa = fmaxf(xa, va);
				xb = fmaxf(xb, vb);
			}
		xa = fmaxf(xa, __shfl_xor_sync(0xffffffffu, xa, 1));
		xa = fmaxf(xa, __shfl_xor_sync(0xffffffffu, xa, 2));
		xb = fmaxf(xb, __shfl_xor_sync(0xffffffffu, xb, 1));
		xb = fmaxf(xb, __shfl_xor_sync(0xffffffffu, xb, 2));
		float na = fmaxf(ma, xa), nb = fmaxf(mb, xb);
		/* a row with nothing visible yet keeps max -inf: use 0 as its base */
		float ba = na == -INFINITY ? 0.f : na, bb = nb == -INFINITY ? 0.f : nb;
		float aa = exp2f(ma - ba), ab = exp2f(mb - bb);
		ma = na;
		mb = nb;
		float sa = 0.f, sb = 0.f;
#pragma unroll
		for (int j = 0; j < FB / 8; j++) {
			s[j][0] = exp2f(s[j][0] - ba);
			s[j][1] = exp2f(s[j][1] - ba);
			s[j][2] = exp2f(s[j][2] - bb);
			s[j][3] = exp2f(s[j][3] - bb);
			sa += s[j][0] + s[j][1];
			sb += s[j][2] + s[j][3];
		}
		la = la * aa + sa; /* per-thread partial sums, reduced over the quad at the end */
		lb = lb * ab + sb;
#pragma unroll
		for (int dn = 0; dn < D / 8; dn++) {
			oacc[dn][0] *= aa;
			oacc[dn][1] *= aa;
			oacc[dn][2] *= ab;
			oacc[dn][3] *= ab;
		}
		warp_pm<D>(oacc, s, Vs[cur], lane);
		__syncthreads(); /* everyone is done with stage cur */
	}
	la += __shfl_xor_sync(0xffffffffu, la, 1);
	la += __shfl_xor_sync(0xffffffffu, la, 2);
	lb += __shfl_xor_sync(0xffffffffu, lb, 1);
	lb += __shfl_xor_sync(0xffffffffu, lb, 2);
	store_rows<D>(o + ((size_t)b * T * Hq + h) * D, (size_t)Hq * D, oacc, q0 + w * 16, T,
	              1.0f / la, 1.0f / lb, lane);
	if ((lane & 3) == 0) {
		if (ra < T)
			lse[(size_t)bh * T + ra] = (ma + log2f(la)) * LN2;
		if (rb < T)
			lse[(size_t)bh * T + rb] = (mb + log2f(lb)) * LN2;
	}
}

/* ---- backward -------------------------------------------------------------- */

// delta (B,Hq,T) = rowsum(dO * O) over the (B,T,H,D) rows: D/8 lanes per row,
// each with 16-byte loads of 8 elements, summed by shuffles within the lane
// group (D/8 is 2, 4, 8 or 16: groups never straddle a warp); 32-bit index
// arithmetic once per row
__global__ void k_flash_delta(float *delta, const bf16 *dout, const bf16 *out, int B, int T, int H,
                              int D)
{
	int g = D / 8, rows = B * T * H;
	int i = blockIdx.x * blockDim.x + threadIdx.x, row = i / g, part = i % g;
	float s = 0.f;
	if (row < rows) {
		uint4 xa = *(const uint4 *)(dout + (size_t)row * D + part * 8);
		uint4 ya = *(const uint4 *)(out + (size_t)row * D + part * 8);
		const __nv_bfloat162 *x = (const __nv_bfloat162 *)&xa,
		                     *y = (const __nv_bfloat162 *)&ya;
		for (int e = 0; e < 4; e++) {
			float2 a = __bfloat1622float2(x[e]), c = __bfloat1622float2(y[e]);
			s += a.x * c.x + a.y * c.y;
		}
	}
	for (int o = g / 2; o > 0; o >>= 1)
		s += __shfl_xor_sync(0xffffffffu, s, o);
	if (row < rows && part == 0) {
		int h = row % H, bt = row / H, t = bt % T, b = bt / T;
		delta[((size_t)b * H + h) * T + t] = s;
	}
}

/* dK, dV of one key block of one kv head, summed over its query heads: each
 * warp owns 16 keys and computes S^T = K Q^T and dP^T = V dO^T for them. */
template <int D>
__global__ void __launch_bounds__(FTHREADS)
    k_flash_bwd_kv(bf16 *dk, bf16 *dv, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dO,
                   const float *lse, const float *delta, int T, int Hq, int Hkv, float scale,
                   float sl2)
{
	constexpr int LD = D + 8, ST = FSTAGES(D);
	__shared__ __align__(16) bf16 Qs[ST][FB * LD];
	__shared__ __align__(16) bf16 dOs[ST][FB * LD];
	__shared__ float Ls[ST][FB], Dl[ST][FB];
	int kb = blockIdx.x, bkv = blockIdx.y, b = bkv / Hkv, kvh = bkv % Hkv, G = Hq / Hkv;
	int w = threadIdx.x >> 5, lane = threadIdx.x & 31, c2 = 2 * (lane & 3);
	int k0 = kb * FB, ja = k0 + w * 16 + (lane >> 2), jb = ja + 8;
	int nqb = (T + FB - 1) / FB;
	uint32_t ka[D / 16][4], va[D / 16][4];
	float dka[D / 8][4], dva[D / 8][4];

	int nq = nqb - kb, nit = G * nq; /* (query head, query block) items */
	/* starts the copies of item it's Q, dO, lse and delta into stage buf */
	auto issue = [&](int it, int buf) {
		int g = it / nq, q0 = (kb + it % nq) * FB, bh = b * Hq + kvh * G + g;
		load_tile_async<D>(Qs[buf], q + (size_t)bh * T * D, q0, T);
		load_tile_async<D>(dOs[buf], dO + ((size_t)b * T * Hq + kvh * G + g) * D, q0, T,
		                   (size_t)Hq * D);
		cp_commit();
		for (int i = threadIdx.x; i < FB; i += FTHREADS) {
			int t = q0 + i;
			Ls[buf][i] = t < T ? lse[(size_t)bh * T + t] * LOG2E : 0.f;
			Dl[buf][i] = t < T ? delta[(size_t)bh * T + t] : 0.f;
		}
	};

	load_tile<D>(Qs[0], k + (size_t)bkv * T * D, k0, T); /* K, V staged through Qs, dOs */
	load_tile<D>(dOs[0], v + (size_t)bkv * T * D, k0, T);
	__syncthreads();
#pragma unroll
	for (int kk = 0; kk < D / 16; kk++) {
		ld_a(ka[kk], Qs[0], LD, w * 16, kk * 16, lane);
		ld_a(va[kk], dOs[0], LD, w * 16, kk * 16, lane);
	}
	__syncthreads(); /* K, V are in registers: the stages are free */
	if (ST == 2)
		issue(0, 0);
#pragma unroll
	for (int dn = 0; dn < D / 8; dn++)
		for (int e = 0; e < 4; e++)
			dka[dn][e] = dva[dn][e] = 0.f;
	for (int it = 0; it < nit; it++) {
		int cur = ST == 2 ? it & 1 : 0, q0 = (kb + it % nq) * FB;
		float p[FB / 8][4], dp[FB / 8][4];
		if (ST == 1) {
			issue(it, 0);
			cp_wait<0>();
		} else if (it + 1 < nit) { /* prefetch the next item into the other stage */
			issue(it + 1, cur ^ 1);
			cp_wait<1>();
		} else {
			cp_wait<0>();
		}
		__syncthreads();
		warp_abt<D>(p, ka, Qs[cur], lane); /* S^T: own keys x the block's queries */
#pragma unroll
		for (int j = 0; j < FB / 8; j++)
#pragma unroll
			for (int e = 0; e < 2; e++) {
				int cl = j * 8 + c2 + e, col = q0 + cl;
				float l = Ls[cur][cl];
				p[j][e] = col < T && ja <= col ? exp2f(p[j][e] * sl2 - l) : 0.f;
				p[j][2 + e] =
				    col < T && jb <= col ? exp2f(p[j][2 + e] * sl2 - l) : 0.f;
			}
		warp_pm<D>(dva, p, dOs[cur], lane);  /* dV += P^T dO */
		warp_abt<D>(dp, va, dOs[cur], lane); /* dP^T = V dO^T */
#pragma unroll
		for (int j = 0; j < FB / 8; j++)
#pragma unroll
			for (int e = 0; e < 2; e++) {
				float dl = Dl[cur][j * 8 + c2 + e];
				p[j][e] = p[j][e] * (dp[j][e] - dl) * scale;
				p[j][2 + e] = p[j][2 + e] * (dp[j][2 + e] - dl) * scale;
			}
		warp_pm<D>(dka, p, Qs[cur], lane); /* dK += dS^T Q */
		__syncthreads();                   /* everyone is done with stage cur */
	}
	store_rows<D>(dk + (size_t)bkv * T * D, D, dka, k0 + w * 16, T, 1.f, 1.f, lane);
	store_rows<D>(dv + (size_t)bkv * T * D, D, dva, k0 + w * 16, T, 1.f, 1.f, lane);
}

/* dQ of one query block of one head: dQ = dS K, dS = P (dP - delta) scale. */
template <int D>
__global__ void __launch_bounds__(FTHREADS)
    k_flash_bwd_q(bf16 *dq, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dO,
                  const float *lse, const float *delta, int T, int Hq, int Hkv, float scale,
                  float sl2)
{
	constexpr int LD = D + 8, ST = FSTAGES(D);
	__shared__ __align__(16) bf16 Ks[ST][FB * LD];
	__shared__ __align__(16) bf16 Vs[ST][FB * LD];
	int qb = gridDim.x - 1 - blockIdx.x; /* the longest rows first */
	int bh = blockIdx.y, b = bh / Hq, h = bh % Hq, kvh = h / (Hq / Hkv);
	int w = threadIdx.x >> 5, lane = threadIdx.x & 31, c2 = 2 * (lane & 3);
	int q0 = qb * FB, ra = q0 + w * 16 + (lane >> 2), rb = ra + 8;
	const bf16 *kp = k + ((size_t)b * Hkv + kvh) * T * D;
	const bf16 *vp = v + ((size_t)b * Hkv + kvh) * T * D;
	uint32_t qa[D / 16][4], oa[D / 16][4];
	float dqa[D / 8][4];
	float lsa = ra < T ? lse[(size_t)bh * T + ra] * LOG2E : 0.f;
	float lsb = rb < T ? lse[(size_t)bh * T + rb] * LOG2E : 0.f;
	float dla = ra < T ? delta[(size_t)bh * T + ra] : 0.f;
	float dlb = rb < T ? delta[(size_t)bh * T + rb] : 0.f;

	load_tile<D>(Ks[0], q + (size_t)bh * T * D, q0, T); /* Q, dO staged through Ks, Vs */
	load_tile<D>(Vs[0], dO + ((size_t)b * T * Hq + h) * D, q0, T, (size_t)Hq * D);
	__syncthreads();
#pragma unroll
	for (int kk = 0; kk < D / 16; kk++) {
		ld_a(qa[kk], Ks[0], LD, w * 16, kk * 16, lane);
		ld_a(oa[kk], Vs[0], LD, w * 16, kk * 16, lane);
	}
#pragma unroll
	for (int dn = 0; dn < D / 8; dn++)
		dqa[dn][0] = dqa[dn][1] = dqa[dn][2] = dqa[dn][3] = 0.f;
	__syncthreads(); /* Q, dO are in registers: the stages are free */
	if (ST == 2) {
		load_tile_async<D>(Ks[0], kp, 0, T);
		load_tile_async<D>(Vs[0], vp, 0, T);
		cp_commit();
	}
	for (int kb = 0; kb <= qb; kb++) {
		int k0 = kb * FB, cur = ST == 2 ? kb & 1 : 0;
		float p[FB / 8][4], dp[FB / 8][4];
		if (ST == 1) {
			load_tile_async<D>(Ks[0], kp, k0, T);
			load_tile_async<D>(Vs[0], vp, k0, T);
			cp_commit();
			cp_wait<0>();
		} else if (kb < qb) { /* prefetch the next tiles into the other stage */
			load_tile_async<D>(Ks[cur ^ 1], kp, k0 + FB, T);
			load_tile_async<D>(Vs[cur ^ 1], vp, k0 + FB, T);
			cp_commit();
			cp_wait<1>();
		} else {
			cp_wait<0>();
		}
		__syncthreads();
		warp_abt<D>(p, qa, Ks[cur], lane);  /* S */
		warp_abt<D>(dp, oa, Vs[cur], lane); /* dP = dO V^T */
#pragma unroll
		for (int j = 0; j < FB / 8; j++)
#pragma unroll
			for (int e = 0; e < 2; e++) {
				int col = k0 + j * 8 + c2 + e;
				float pa = col <= ra && col < T ? exp2f(p[j][e] * sl2 - lsa) : 0.f;
				float pb =
				    col <= rb && col < T ? exp2f(p[j][2 + e] * sl2 - lsb) : 0.f;
				p[j][e] = pa * (dp[j][e] - dla) * scale;
				p[j][2 + e] = pb * (dp[j][2 + e] - dlb) * scale;
			}
		warp_pm<D>(dqa, p, Ks[cur], lane); /* dQ += dS K */
		__syncthreads();                   /* everyone is done with stage cur */
	}
	store_rows<D>(dq + (size_t)bh * T * D, D, dqa, q0 + w * 16, T, 1.f, 1.f, lane);
}

/* ---- host side ----------------------------------------------------------- */

int fl_flash_supported(int D)
{
	int dev = 0, major = 0;
	if (D != 16 && D != 32 && D != 64 && D != 128)
		return 0;
	if (cudaGetDevice(&dev) != cudaSuccess ||
	    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
		cudaGetLastError();
		return 0;
	}
	return major >= 8;
}

template <int D>
static int flash_forward_d(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B,
                           int T, int Hq, int Hkv, cudaStream_t s)
{
	int rv = 0;
	dim3 grid((unsigned)fl_cdiv(T, FB), (unsigned)(B * Hq));
	k_flash_fwd<D>
	    <<<grid, FTHREADS, 0, s>>>(o, lse, q, k, v, T, Hq, Hkv, LOG2E / sqrtf((float)D));
	CU_LAUNCHED();
fail:
	return rv;
}

template <int D>
static int flash_backward_d(bf16 *dq, bf16 *dk, bf16 *dv, const float *delta, const bf16 *dO,
                            const bf16 *q, const bf16 *k, const bf16 *v, const float *lse, int B,
                            int T, int Hq, int Hkv, cudaStream_t s)
{
	int rv = 0;
	float scale = 1.0f / sqrtf((float)D);
	dim3 gkv((unsigned)fl_cdiv(T, FB), (unsigned)(B * Hkv));
	k_flash_bwd_kv<D><<<gkv, FTHREADS, 0, s>>>(dk, dv, q, k, v, dO, lse, delta, T, Hq, Hkv,
	                                           scale, scale * LOG2E);
	CU_LAUNCHED();
	{
		dim3 gq((unsigned)fl_cdiv(T, FB), (unsigned)(B * Hq));
		k_flash_bwd_q<D><<<gq, FTHREADS, 0, s>>>(dq, q, k, v, dO, lse, delta, T, Hq, Hkv,
		                                         scale, scale * LOG2E);
		CU_LAUNCHED();
	}
fail:
	return rv;
}

int fl_flash_forward(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T,
                     int Hq, int Hkv, int D, cudaStream_t s)
{
	switch (D) {
	case 16:
		return flash_forward_d<16>(o, lse, q, k, v, B, T, Hq, Hkv, s);
	case 32:
		return flash_forward_d<32>(o, lse, q, k, v, B, T, Hq, Hkv, s);
	case 64:
		return flash_forward_d<64>(o, lse, q, k, v, B, T, Hq, Hkv, s);
	case 128:
		return flash_forward_d<128>(o, lse, q, k, v, B, T, Hq, Hkv, s);
	}
	return FL_ENOTSUP;
}

int fl_flash_backward(bf16 *dq, bf16 *dk, bf16 *dv, float *delta, const bf16 *dO_bthd,
                      const bf16 *o_bthd, const bf16 *q, const bf16 *k, const bf16 *v,
                      const float *lse, int B, int T, int Hq, int Hkv, int D, cudaStream_t s)
{
	int rv = 0;
	if (D != 16 && D != 32 && D != 64 &&
	    D != 128) /* no device query: may run in a graph capture */
		return FL_ENOTSUP;
	k_flash_delta<<<fl_cdiv((long)B * T * Hq * (D / 8), 256), 256, 0, s>>>(delta, dO_bthd,
	                                                                       o_bthd, B, T, Hq, D);
	CU_LAUNCHED();
	switch (D) {
	case 16:
		return flash_backward_d<16>(dq, dk, dv, delta, dO_bthd, q, k, v, lse, B, T, Hq, Hkv,
		                            s);
	case 32:
		return flash_backward_d<32>(dq, dk, dv, delta, dO_bthd, q, k, v, lse, B, T, Hq, Hkv,
		                            s);
	case 64:
		return flash_backward_d<64>(dq, dk, dv, delta, dO_bthd, q, k, v, lse, B, T, Hq, Hkv,
		                            s);
	default:
		return flash_backward_d<128>(dq, dk, dv, delta, dO_bthd, q, k, v, lse, B, T, Hq,
		                             Hkv, s);
	}
fail:
	return rv;
}
