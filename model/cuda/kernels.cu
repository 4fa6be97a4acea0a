/*
 * model/cuda/kernels.cu — the trainer's own kernels (see kernels.cuh for each
 * one's contract and its CPU twin in model/ops.h).
 *
 * Kept simple on purpose: one warp per row for row-wise ops (RMSNorm, the
 * causal softmax), one block per row for the cross-entropy over the
 * vocabulary (one online pass for max, sum and argmax, one for the
 * gradient), grid-stride loops for element-wise work; 4-wide (f32) or 2-wide
 * (bf16) vectors where the sizes allow, a scalar path otherwise. Reductions
 * accumulate in float32 (double where a norm feeds DP clipping). The fused
 * flash attention is in flash.cu; the GEMM attention's causal softmax
 * kernels are here. The fused path of the model (FEDLORA_FUSE) adds
 * RMSNorm with the residual copy, the merged q/k/v split with bias and
 * rotary, Qwen3's q/k norm on the merged rows, SwiGLU over merged gate|up
 * rows and the cross-entropy on bf16 logits in place; the unfused kernels
 * stay for FEDLORA_FUSE=0.
 */
#include <math.h>

#include "model/cuda/kernels.cuh"

#define WARP           32
#define ROWS_PER_BLOCK 8 /* warps (rows) per 256-thread block */

static __device__ __forceinline__ float warp_sum(float v)
{
	for (int o = WARP / 2; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

static __device__ __forceinline__ double warp_sum_d(double v)
{
	for (int o = WARP / 2; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

static __device__ __forceinline__ float warp_max(float v)
{
	for (int o = WARP / 2; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

static int grid_for(size_t n, int threads)
{
	size_t b = (n + threads - 1) / threads;
	return (int)(b > 65535u * 16u ? 65535u * 16u : (b ? b : 1));
}

/* ---- embedding ---------------------------------------------------------- */

__global__ void k_embed_forward(float *out, const int *tok, const bf16 *wte, int N, int C)
{
	int n = blockIdx.x;
	const bf16 *row = wte + (size_t)tok[n] * C;
	for (int c = threadIdx.x; c < C; c += blockDim.x)
		out[(size_t)n * C + c] = __bfloat162float(row[c]);
}

int fl_k_embed_forward(float *out, const int *tok, const bf16 *wte, int N, int C, cudaStream_t s)
{
	int rv = 0;
	k_embed_forward<<<N, 256, 0, s>>>(out, tok, wte, N, C);
	CU_LAUNCHED();
fail:
	return rv;
}

__global__ void k_embed_backward(float *dwte, const float *dout, const int *tok, int N, int C)
{
	int n = blockIdx.x;
	float *row = dwte + (size_t)tok[n] * C;
	for (int c = threadIdx.x; c < C; c += blockDim.x)
		atomicAdd(row + c, dout[(size_t)n * C + c]);
}

int fl_k_embed_backward(float *dwte, const float *dout, const int *tok, int N, int C,
                        cudaStream_t s)
{
	int rv = 0;
	k_embed_backward<<<N, 256, 0, s>>>(dwte, dout, tok, N, C);
	CU_LAUNCHED();
fail:
	return rv;
}

/* ---- RMSNorm ------------------------------------------------------------ */

static __device__ __forceinline__ float to_f(float v)
{
	return v;
}
static __device__ __forceinline__ float to_f(bf16 v)
{
	return __bfloat162float(v);
}

/* One row of RMSNorm by one warp (lane = this thread's lane), any C, input f32
 * (the residual stream) or bf16 (a q/k head): o = x * r * w, *rstd = r. */
template <typename T>
static __device__ __forceinline__ void rmsnorm_row(bf16 *o, float *rstd, const T *xr, const bf16 *w,
                                                   int C, float eps, int lane)
{
	float ss = 0.f;
	for (int c = lane; c < C; c += WARP)
		ss += to_f(xr[c]) * to_f(xr[c]);
	ss = warp_sum(ss);
	float r = 1.0f / sqrtf(ss / (float)C + eps);
	for (int c = lane; c < C; c += WARP)
		o[c] = __float2bfloat16(to_f(xr[c]) * r * __bfloat162float(w[c]));
	if (lane == 0)
		*rstd = r;
}

// x (N,C) f32, w (C) bf16 -> out (N,C) bf16, rstd (N); one warp per row,
// 4-wide vectors when C is a multiple of 4 (a row is read twice: once for
// the sum of squares, once for the output, the second time from L1/L2).
// copy (NULL ok) receives x unchanged in the second pass: the residual
// stream's next value starts as x, and the GEMM that follows adds into it,
// so the separate device-to-device copy of x is not needed.
__global__ void k_rmsnorm_forward(bf16 *out, float *rstd, float *copy, const float *x,
                                  const bf16 *w, int N, int C, float eps)
{
	int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
	int lane = threadIdx.x % WARP;
	if (row >= N)
		return;
	const float *xr = x + (size_t)row * C;
	bf16 *o = out + (size_t)row * C;
	float ss = 0.f;
	if (C % 4 == 0) {
		const float4 *x4 = (const float4 *)xr;
		for (int c = lane; c < C / 4; c += WARP) {
			float4 a = x4[c];
			ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
		}
		ss = warp_sum(ss);
		float r = 1.0f / sqrtf(ss / (float)C + eps);
		const __nv_bfloat162 *w2 = (const __nv_bfloat162 *)w;
		__nv_bfloat162 *o2 = (__nv_bfloat162 *)o;
		float4 *c4 = copy ? (float4 *)(copy + (size_t)row * C) : NULL;
		for (int c = lane; c < C / 4; c += WARP) {
			float4 a = x4[c];
			float2 w01 = __bfloat1622float2(w2[2 * c]),
			       w23 = __bfloat1622float2(w2[2 * c + 1]);
			o2[2 * c] = __floats2bfloat162_rn(a.x * r * w01.x, a.y * r * w01.y);
			o2[2 * c + 1] = __floats2bfloat162_rn(a.z * r * w23.x, a.w * r * w23.y);
			if (c4)
				c4[c] = a;
		}
		if (lane == 0)
			rstd[row] = r;
		return;
	}
	for (int c = lane; c < C; c += WARP)
		ss += xr[c] * xr[c];
	ss = warp_sum(ss);
	float r = 1.0f / sqrtf(ss / (float)C + eps);
	for (int c = lane; c < C; c += WARP) {
		o[c] = __float2bfloat16(xr[c] * r * __bfloat162float(w[c]));
		if (copy)
			copy[(size_t)row * C + c] = xr[c];
	}
	if (lane == 0)
		rstd[row] = r;
}

/* Row-resident variants: a block of RN_THREADS per row, each thread holding
 * NV float4 of the row in registers between the reduction and the output,
 * so x (and dout) are read from memory once. The warp-per-row kernels above
 * read them a second time, which misses L2 once the rows in flight exceed
 * it (a 2048-wide f32 row is 8 KiB, thousands of rows run at once). Used
 * where C % 4 == 0 and C/4 <= RN_THREADS * 16 (and without dw). */
#define RN_THREADS 128

static __device__ __forceinline__ float block_sum_rn(float v, float *sh)
{
	v = warp_sum(v);
	if (threadIdx.x % WARP == 0)
		sh[threadIdx.x / WARP] = v;
	__syncthreads();
	float t = 0.f;
	for (int i = 0; i < RN_THREADS / WARP; i++)
		t += sh[i];
	return t;
}

template <int NV>
__global__ void __launch_bounds__(RN_THREADS)
    k_rmsnorm_forward_rows(bf16 *out, float *rstd, float *copy, const float *x, const bf16 *w,
                           int C, float eps)
{
	__shared__ float sh[RN_THREADS / WARP];
	int row = blockIdx.x, C4 = C / 4;
	const float4 *x4 = (const float4 *)(x + (size_t)row * C);
	float4 a[NV];
	float ss = 0.f;
#pragma unroll
	for (int e = 0; e < NV; e++) {
		int c = threadIdx.x + e * RN_THREADS;
		a[e] = c < C4 ? x4[c] : make_float4(0.f, 0.f, 0.f, 0.f);
		ss += a[e].x * a[e].x + a[e].y * a[e].y + a[e].z * a[e].z + a[e].w * a[e].w;
	}
	ss = block_sum_rn(ss, sh);
	float r = 1.0f / sqrtf(ss / (float)C + eps);
	const __nv_bfloat162 *w2 = (const __nv_bfloat162 *)w;
	__nv_bfloat162 *o2 = (__nv_bfloat162 *)(out + (size_t)row * C);
	float4 *c4 = copy ? (float4 *)(copy + (size_t)row * C) : NULL;
#pragma unroll
	for (int e = 0; e < NV; e++) {
		int c = threadIdx.x + e * RN_THREADS;
		if (c >= C4)
			break;
		float2 w01 = __bfloat1622float2(w2[2 * c]), w23 = __bfloat1622float2(w2[2 * c + 1]);
		o2[2 * c] = __floats2bfloat162_rn(a[e].x * r * w01.x, a[e].y * r * w01.y);
		o2[2 * c + 1] = __floats2bfloat162_rn(a[e].z * r * w23.x, a[e].w * r * w23.y);
		if (c4)
			c4[c] = a[e];
	}
	if (threadIdx.x == 0)
		rstd[row] = r;
}

// the backward of k_rmsnorm_backward's formula, rows resident (no dw)
template <int NV>
__global__ void __launch_bounds__(RN_THREADS)
    k_rmsnorm_backward_rows(float *dx, bf16 *dx16, const float *dout, const float *x, const bf16 *w,
                            const float *rstd, int C)
{
	__shared__ float sh[RN_THREADS / WARP];
	int row = blockIdx.x, C4 = C / 4;
	const float4 *x4 = (const float4 *)(x + (size_t)row * C);
	const float4 *d4 = (const float4 *)(dout + (size_t)row * C);
	const __nv_bfloat162 *w2 = (const __nv_bfloat162 *)w;
	float4 a[NV], d[NV];
	float r = rstd[row], dot = 0.f;
#pragma unroll
	for (int e = 0; e < NV; e++) {
		int c = threadIdx.x + e * RN_THREADS;
		a[e] = d[e] = make_float4(0.f, 0.f, 0.f, 0.f);
		if (c < C4) {
			a[e] = x4[c];
			d[e] = d4[c];
			float2 w01 = __bfloat1622float2(w2[2 * c]),
			       w23 = __bfloat1622float2(w2[2 * c + 1]);
			/* dout * w, kept for the second step */
			d[e].x *= w01.x, d[e].y *= w01.y, d[e].z *= w23.x, d[e].w *= w23.y;
			dot +=
			    d[e].x * a[e].x + d[e].y * a[e].y + d[e].z * a[e].z + d[e].w * a[e].w;
		}
	}
	dot = block_sum_rn(dot, sh);
	float k = r * r * dot / (float)C;
	float4 *o4 = (float4 *)(dx + (size_t)row * C);
	__nv_bfloat162 *h2 = dx16 ? (__nv_bfloat162 *)(dx16 + (size_t)row * C) : NULL;
#pragma unroll
	for (int e = 0; e < NV; e++) {
		int c = threadIdx.x + e * RN_THREADS;
		if (c >= C4)
			break;
		float4 g = o4[c];
		g.x += r * (d[e].x - a[e].x * k);
		g.y += r * (d[e].y - a[e].y * k);
		g.z += r * (d[e].z - a[e].z * k);
		g.w += r * (d[e].w - a[e].w * k);
		o4[c] = g;
		if (h2) {
			h2[2 * c] = __floats2bfloat162_rn(g.x, g.y);
			h2[2 * c + 1] = __floats2bfloat162_rn(g.z, g.w);
		}
	}
}

/* NV for a row of C floats (the smallest power of two with NV * RN_THREADS
 * float4 covering it), or 0 where the row-resident kernels do not apply. */
static int rows_nv(int C)
{
	if (C % 4)
		return 0;
	for (int nv = 1; nv <= 16; nv *= 2)
		if (nv * RN_THREADS >= C / 4)
			return nv;
	return 0;
}

/* log2 of rows_nv's result: the index into the launchers' kernel tables. */
static int nv_index(int nv)
{
	int i = 0;
	while ((1 << i) < nv)
		i++;
	return i;
}

int fl_k_rmsnorm_forward(bf16 *out, float *rstd, const float *x, const bf16 *w, int N, int C,
                         float eps, cudaStream_t s)
{
	int rv = 0;
	k_rmsnorm_forward<<<fl_cdiv(N, ROWS_PER_BLOCK), ROWS_PER_BLOCK * WARP, 0, s>>>(
	    out, rstd, NULL, x, w, N, C, eps);
	CU_LAUNCHED();
fail:
	return rv;
}

int fl_k_rmsnorm_forward_copy(bf16 *out, float *rstd, float *copy, const float *x, const bf16 *w,
                              int N, int C, float eps, cudaStream_t s)
{
	int rv = 0;
	if (N <= 0)
		return 0;
	if (rows_nv(C)) {
		static void (*const k[5])(bf16 *, float *, float *, const float *, const bf16 *,
		                          int, float) = {
		    k_rmsnorm_forward_rows<1>, k_rmsnorm_forward_rows<2>, k_rmsnorm_forward_rows<4>,
		    k_rmsnorm_forward_rows<8>, k_rmsnorm_forward_rows<16>};
		k[nv_index(rows_nv(C))]<<<N, RN_THREADS, 0, s>>>(out, rstd, copy, x, w, C, eps);
	} else {
		k_rmsnorm_forward<<<fl_cdiv(N, ROWS_PER_BLOCK), ROWS_PER_BLOCK * WARP, 0, s>>>(
		    out, rstd, copy, x, w, N, C, eps);
	}
	CU_LAUNCHED();
fail:
	return rv;
}

// y = w * x * r, r = (mean x^2 + eps)^-1/2:
// dx_j += r * (dout_j w_j - x_j r^2 (sum_i dout_i w_i x_i) / C); dw_j += dout_j x_j r;
// dx16 (NULL ok) = the updated dx rounded to bf16 (the next GEMM's input)
__global__ void k_rmsnorm_backward(float *dx, bf16 *dx16, float *dw, const float *dout,
                                   const float *x, const bf16 *w, const float *rstd, int N, int C)
{
	int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
	int lane = threadIdx.x % WARP;
	if (row >= N)
		return;
	const float *xr = x + (size_t)row * C, *dr = dout + (size_t)row * C;
	float *dxr = dx + (size_t)row * C;
	float r = rstd[row];
	float dot = 0.f;
	if (C % 4 == 0 && !dw) {
		const float4 *x4 = (const float4 *)xr, *d4 = (const float4 *)dr;
		const __nv_bfloat162 *w2 = (const __nv_bfloat162 *)w;
		for (int c = lane; c < C / 4; c += WARP) {
			float4 a = x4[c], d = d4[c];
			float2 w01 = __bfloat1622float2(w2[2 * c]),
			       w23 = __bfloat1622float2(w2[2 * c + 1]);
			dot += d.x * w01.x * a.x + d.y * w01.y * a.y + d.z * w23.x * a.z +
			       d.w * w23.y * a.w;
		}
		dot = warp_sum(dot);
		float k = r * r * dot / (float)C;
		float4 *o4 = (float4 *)dxr;
		for (int c = lane; c < C / 4; c += WARP) {
			float4 a = x4[c], d = d4[c], g = o4[c];
			float2 w01 = __bfloat1622float2(w2[2 * c]),
			       w23 = __bfloat1622float2(w2[2 * c + 1]);
			g.x += r * (d.x * w01.x - a.x * k);
			g.y += r * (d.y * w01.y - a.y * k);
			g.z += r * (d.z * w23.x - a.z * k);
			g.w += r * (d.w * w23.y - a.w * k);
			o4[c] = g;
			if (dx16) {
				__nv_bfloat162 *h2 = (__nv_bfloat162 *)(dx16 + (size_t)row * C);
				h2[2 * c] = __floats2bfloat162_rn(g.x, g.y);
				h2[2 * c + 1] = __floats2bfloat162_rn(g.z, g.w);
			}
		}
		return;
	}
	for (int c = lane; c < C; c += WARP)
		dot += dr[c] * __bfloat162float(w[c]) * xr[c];
	dot = warp_sum(dot);
	float k = r * r * dot / (float)C;
	for (int c = lane; c < C; c += WARP) {
		float wc = __bfloat162float(w[c]);
		float g = dxr[c] + r * (dr[c] * wc - xr[c] * k);
		dxr[c] = g;
		if (dx16)
			dx16[(size_t)row * C + c] = __float2bfloat16(g);
		if (dw)
			atomicAdd(dw + c, dr[c] * xr[c] * r);
	}
}

int fl_k_rmsnorm_backward(float *dx, bf16 *dx16, float *dw, const float *dout, const float *x,
                          const bf16 *w, const float *rstd, int N, int C, cudaStream_t s)
{
	int rv = 0;
	k_rmsnorm_backward<<<fl_cdiv(N, ROWS_PER_BLOCK), ROWS_PER_BLOCK * WARP, 0, s>>>(
	    dx, dx16, dw, dout, x, w, rstd, N, C);
	CU_LAUNCHED();
fail:
	return rv;
}

/* ---- biases and the per-head q/k norm ------------------------------------ */

static __device__ __forceinline__ void st_f(float *p, float v)
{
	*p = v;
}
static __device__ __forceinline__ void st_f(bf16 *p, float v)
{
	*p = __float2bfloat16(v);
}

// y[n, o] += b[o], grid-stride over the N*OUT elements
template <typename T> __global__ void k_bias_fwd(T *y, const bf16 *b, long N, int OUT)
{
	size_t total = (size_t)N * OUT;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
	     i += (size_t)gridDim.x * blockDim.x)
		st_f(y + i, to_f(y[i]) + __bfloat162float(b[i % OUT]));
}

int fl_k_bias_forward(void *y, cudaDataType yt, const bf16 *b, long N, int OUT, cudaStream_t s)
{
	int rv = 0;
	size_t n = (size_t)N * OUT;
	if (yt == CUDA_R_32F)
		k_bias_fwd<float><<<grid_for(n, 256), 256, 0, s>>>((float *)y, b, N, OUT);
	else
		k_bias_fwd<bf16><<<grid_for(n, 256), 256, 0, s>>>((bf16 *)y, b, N, OUT);
	CU_LAUNCHED();
fail:
	return rv;
}

#define BIAS_ROWS 256 /* rows of dout each thread sums before its atomicAdd */

// thread (column o, row chunk blockIdx.y): db[o] += sum of dout[n, o] over the
// chunk; consecutive threads read consecutive columns (coalesced)
__global__ void k_bias_bwd(float *db, const bf16 *dout, long N, int OUT)
{
	int o = blockIdx.x * blockDim.x + threadIdx.x;
	if (o >= OUT)
		return;
	float acc = 0.f;
	for (long n = (long)blockIdx.y * BIAS_ROWS; n < N; n += (long)gridDim.y * BIAS_ROWS)
		for (long k = n; k < n + BIAS_ROWS && k < N; k++)
			acc += __bfloat162float(dout[(size_t)k * OUT + o]);
	atomicAdd(db + o, acc);
}

int fl_k_bias_backward(float *db, const bf16 *dout, long N, int OUT, cudaStream_t s)
{
	int rv = 0;
	int chunks = fl_cdiv(N, BIAS_ROWS);
	dim3 grid(fl_cdiv(OUT, 256), chunks < 64 ? chunks : 64);
	k_bias_bwd<<<grid, 256, 0, s>>>(db, dout, N, OUT);
	CU_LAUNCHED();
fail:
	return rv;
}

// one warp per row of D (a head): out = x * r * w, r = (mean x^2 + eps)^-1/2
__global__ void k_headnorm_fwd(bf16 *out, float *rstd, const bf16 *x, const bf16 *w, long rows,
                               int D, float eps)
{
	long row = (long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
	int lane = threadIdx.x % WARP;
	if (row >= rows)
		return;
	rmsnorm_row(out + (size_t)row * D, rstd + row, x + (size_t)row * D, w, D, eps, lane);
}

int fl_k_headnorm_forward(bf16 *out, float *rstd, const bf16 *x, const bf16 *w, long rows, int D,
                          float eps, cudaStream_t s)
{
	int rv = 0;
	k_headnorm_fwd<<<fl_cdiv(rows, ROWS_PER_BLOCK), ROWS_PER_BLOCK * WARP, 0, s>>>(
	    out, rstd, x, w, rows, D, eps);
	CU_LAUNCHED();
fail:
	return rv;
}

/* The weight gradient of the head norms is reduced per block: each warp
 * adds its rows' dout_j x_j r into its own slice of shared memory (lane c
 * owns columns c, c+32, ...: no two threads touch one address), then the
 * block sums its warps' slices and adds them to dw with one atomicAdd per
 * element. HN_BLOCKS caps the grid when dw is wanted (each warp then loops
 * over rows), so dw receives at most HN_BLOCKS atomics per element instead
 * of one per row. Heads longer than HN_SMEM_D_MAX (no real model has them)
 * fall back to one atomicAdd per element and row. */
#define HN_BLOCKS     512
#define HN_SMEM_D_MAX 768 /* 2 weights x ROWS_PER_BLOCK warps x D floats <= 48 KiB */

// Backward of the per-head RMSNorm over N tokens of Hq + Hkv heads each:
// head hh of token n has its gradient at dout + n*ld + hh*D (heads q first,
// then k, the layout of the merged q/k/v rows; the plain case is ld = D,
// Hq = 1, Hkv = 0), its input at xq + (n*Hq + hh)*D (q) or xk + (n*Hkv +
// hh - Hq)*D (k), its rstd at rq / rk with the same index.
// dx_j = r * (dout_j w_j - x_j r^2 (sum_i dout_i w_i x_i) / D);
// dw_j += dout_j x_j r (dwq and dwk both NULL or both set when Hkv > 0).
// Lane c reads dout[c] and x[c] in both loops and writes dx[c] only in the
// second, after the warp-wide sum, so dx may alias dout. No thread returns
// early: every one reaches the __syncthreads before the block's sums.
__global__ void k_headnorm_bwd(bf16 *dx, const bf16 *dout, int ld, const bf16 *xq, const bf16 *xk,
                               const bf16 *wq, const bf16 *wk, const float *rq, const float *rk,
                               float *dwq, float *dwk, long N, int Hq, int Hkv, int D, int reduce)
{
	extern __shared__ float sdw[]; /* (ROWS_PER_BLOCK, 2, D) when reduce */
	int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, Hh = Hq + Hkv;
	long total = N * Hh;
	float *mq = reduce ? sdw + (size_t)warp * 2 * D : NULL, *mk = mq ? mq + D : NULL;
	if (reduce)
		for (int c = lane; c < D; c += WARP)
			mq[c] = mk[c] = 0.f;
	for (long i = (long)blockIdx.x * ROWS_PER_BLOCK + warp; i < total;
	     i += (long)gridDim.x * ROWS_PER_BLOCK) {
		long n = i / Hh;
		int hh = (int)(i - n * Hh), isq = hh < Hq;
		size_t hr = isq ? (size_t)n * Hq + hh : (size_t)n * Hkv + (hh - Hq);
		const bf16 *xr = (isq ? xq : xk) + hr * D, *w = isq ? wq : wk;
		const bf16 *dr = dout + (size_t)n * ld + (size_t)hh * D;
		bf16 *dxr = dx + (size_t)n * ld + (size_t)hh * D;
		float *dw = isq ? dwq : dwk, *mine = isq ? mq : mk;
		float r = (isq ? rq : rk)[hr], dot = 0.f;
		for (int c = lane; c < D; c += WARP)
			dot += __bfloat162float(dr[c]) * __bfloat162float(w[c]) *
			       __bfloat162float(xr[c]);
		dot = warp_sum(dot);
		float k = r * r * dot / (float)D;
		for (int c = lane; c < D; c += WARP) {
			float d = __bfloat162float(dr[c]), xc = __bfloat162float(xr[c]);
			dxr[c] = __float2bfloat16(r * (d * __bfloat162float(w[c]) - xc * k));
			if (reduce)
				mine[c] += d * xc * r;
			else if (dw)
				atomicAdd(dw + c, d * xc * r);
		}
	}
	if (!reduce) /* uniform over the block */
		return;
	__syncthreads();
	for (int c = threadIdx.x; c < D; c += blockDim.x) {
		float sq = 0.f, sk = 0.f;
		for (int wi = 0; wi < ROWS_PER_BLOCK; wi++) {
			sq += sdw[(size_t)wi * 2 * D + c];
			sk += sdw[(size_t)wi * 2 * D + D + c];
		}
		atomicAdd(dwq + c, sq);
		if (Hkv > 0)
			atomicAdd(dwk + c, sk);
	}
}

/* Launches k_headnorm_bwd over N tokens of Hq (+ Hkv) heads. */
static int headnorm_bwd_launch(bf16 *dx, const bf16 *dout, int ld, const bf16 *xq, const bf16 *xk,
                               const bf16 *wq, const bf16 *wk, const float *rq, const float *rk,
                               float *dwq, float *dwk, long N, int Hq, int Hkv, int D,
                               cudaStream_t s)
{
	int rv = 0;
	long total = N * (Hq + Hkv), blocks = (total + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
	int reduce = dwq && D <= HN_SMEM_D_MAX;
	size_t smem = reduce ? (size_t)ROWS_PER_BLOCK * 2 * D * sizeof(float) : 0;
	if (total <= 0)
		return 0;
	if (blocks > (reduce ? HN_BLOCKS : 65535L * 16))
		blocks = reduce ? HN_BLOCKS : 65535L * 16;
	k_headnorm_bwd<<<(int)blocks, ROWS_PER_BLOCK * WARP, smem, s>>>(
	    dx, dout, ld, xq, xk, wq, wk, rq, rk, dwq, dwk, N, Hq, Hkv, D, reduce);
	CU_LAUNCHED();
fail:
	return rv;
}

int fl_k_headnorm_backward(bf16 *dx, float *dw, const bf16 *dout, const bf16 *x, const bf16 *w,
                           const float *rstd, long rows, int D, cudaStream_t s)
{
	/* rows of D one after another: rows tokens of one head */
	return headnorm_bwd_launch(dx, dout, D, x, NULL, w, NULL, rstd, NULL, dw, NULL, rows, 1, 0,
	                           D, s);
}

// Qwen3's q/k norm on the merged q/k/v rows (fusion on): one warp per head
// of a token, heads hh < Hh of row n at rows + n*ld + hh*D (q, then k, then
// v when Hh = Hq + 2 Hkv, i.e. with a bias). The bias (NULL ok) is added
// first, as it belongs to the projection; a q or k head then saves its
// pre-norm values (rounded to bf16, the values the backward reads) to
// qpre / kpre (N, H*D), its rstd to rq / rk (N*H), and is normalized in
// place; a v head only gets its bias. Each lane reads back only the pre
// values it wrote itself (rmsnorm_row's column mapping is the same), so no
// synchronization is needed.
__global__ void k_qkv_headnorm_fwd(bf16 *rows, int ld, const bf16 *bias, bf16 *qpre, bf16 *kpre,
                                   float *rq, float *rk, const bf16 *wq, const bf16 *wk, long N,
                                   int Hq, int Hkv, int Hh, int D, float eps)
{
	long i = (long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
	int lane = threadIdx.x % WARP;
	for (; i < N * Hh; i += (long)gridDim.x * ROWS_PER_BLOCK) {
		long n = i / Hh;
		int hh = (int)(i - n * Hh);
		bf16 *xr = rows + (size_t)n * ld + (size_t)hh * D;
		const bf16 *br = bias ? bias + (size_t)hh * D : NULL;
		if (hh >= Hq + Hkv) { /* a v head (only with a bias) */
			for (int c = lane; c < D; c += WARP)
				xr[c] = __float2bfloat16(__bfloat162float(xr[c]) +
				                         __bfloat162float(br[c]));
			continue;
		}
		int isq = hh < Hq;
		size_t hr = isq ? (size_t)n * Hq + hh : (size_t)n * Hkv + (hh - Hq);
		bf16 *pre = (isq ? qpre : kpre) + hr * D;
		for (int c = lane; c < D; c += WARP)
			pre[c] =
			    br ? __float2bfloat16(__bfloat162float(xr[c]) + __bfloat162float(br[c]))
			       : xr[c];
		rmsnorm_row(xr, (isq ? rq : rk) + hr, (const bf16 *)pre, isq ? wq : wk, D, eps,
		            lane);
	}
}

int fl_k_qkv_headnorm_forward(bf16 *rows, int ld, const bf16 *bias, bf16 *qpre, bf16 *kpre,
                              float *rstdq, float *rstdk, const bf16 *wq, const bf16 *wk, long N,
                              int Hq, int Hkv, int D, float eps, cudaStream_t s)
{
	int rv = 0;
	int Hh = Hq + Hkv + (bias ? Hkv : 0);
	long blocks = (N * Hh + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
	if (N <= 0)
		return 0;
	if (blocks > 65535L * 16)
		blocks = 65535L * 16;
	k_qkv_headnorm_fwd<<<(int)blocks, ROWS_PER_BLOCK * WARP, 0, s>>>(
	    rows, ld, bias, qpre, kpre, rstdq, rstdk, wq, wk, N, Hq, Hkv, Hh, D, eps);
	CU_LAUNCHED();
fail:
	return rv;
}

int fl_k_qkv_headnorm_backward(bf16 *drows, int ld, float *dwq, float *dwk, const bf16 *qpre,
                               const bf16 *kpre, const bf16 *wq, const bf16 *wk, const float *rstdq,
                               const float *rstdk, long N, int Hq, int Hkv, int D, cudaStream_t s)
{
	/* in place: the q and k heads of each row, v heads untouched */
	return headnorm_bwd_launch(drows, drows, ld, qpre, kpre, wq, wk, rstdq, rstdk, dwq, dwk, N,
	                           Hq, Hkv, D, s);
}

int fl_k_rmsnorm_backward_fused(float *dx, bf16 *dx16, float *dw, const float *dout, const float *x,
                                const bf16 *w, const float *rstd, int N, int C, cudaStream_t s)
{
	int rv = 0;
	if (dw || !rows_nv(C))
		return fl_k_rmsnorm_backward(dx, dx16, dw, dout, x, w, rstd, N, C, s);
	if (N <= 0)
		return 0;
	{
		static void (*const k[5])(float *, bf16 *, const float *, const float *,
		                          const bf16 *, const float *, int) = {
		    k_rmsnorm_backward_rows<1>, k_rmsnorm_backward_rows<2>,
		    k_rmsnorm_backward_rows<4>, k_rmsnorm_backward_rows<8>,
		    k_rmsnorm_backward_rows<16>};
		k[nv_index(rows_nv(C))]<<<N, RN_THREADS, 0, s>>>(dx, dx16, dout, x, w, rstd, C);
	}
	CU_LAUNCHED();
fail:
	return rv;
}

/* ---- rotary embedding + layout ------------------------------------------ */

// one thread per rotation pair (b,h,t,j), j < D/2; in (B,T,H,D) -> out (B,H,T,D)
__global__ void k_rope_fwd(bf16 *out, const bf16 *in, const float2 *cs, int B, int T, int H, int D,
                           int rotate)
{
	int half = D / 2;
	size_t total = (size_t)B * H * T * half;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
	     i += (size_t)gridDim.x * blockDim.x) {
		int j = (int)(i % half);
		size_t r = i / half;
		int t = (int)(r % T);
		r /= T;
		int h = (int)(r % H);
		int b = (int)(r / H);
		const bf16 *src = in + (((size_t)b * T + t) * H + h) * D;
		bf16 *dst = out + (((size_t)b * H + h) * T + t) * D;
		float x1 = __bfloat162float(src[j]), x2 = __bfloat162float(src[j + half]);
		if (rotate) {
			float2 a = cs[(size_t)t * half + j];
			dst[j] = __float2bfloat16(x1 * a.x - x2 * a.y);
			dst[j + half] = __float2bfloat16(x2 * a.x + x1 * a.y);
		} else {
			dst[j] = src[j];
			dst[j + half] = src[j + half];
		}
	}
}

int fl_k_rope_permute_forward(bf16 *out, const bf16 *in, const float2 *cs, int B, int T, int H,
                              int D, int rotate, cudaStream_t s)
{
	int rv = 0;
	size_t n = (size_t)B * H * T * (D / 2);
	k_rope_fwd<<<grid_for(n, 256), 256, 0, s>>>(out, in, cs, B, T, H, D, rotate);
	CU_LAUNCHED();
fail:
	return rv;
}

// din (B,H,T,D) -> dout (B,T,H,D), transpose rotation
__global__ void k_rope_bwd(bf16 *dout, const bf16 *din, const float2 *cs, int B, int T, int H,
                           int D, int rotate)
{
	int half = D / 2;
	size_t total = (size_t)B * H * T * half;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
	     i += (size_t)gridDim.x * blockDim.x) {
		int j = (int)(i % half);
		size_t r = i / half;
		int t = (int)(r % T);
		r /= T;
		int h = (int)(r % H);
		int b = (int)(r / H);
		const bf16 *src = din + (((size_t)b * H + h) * T + t) * D;
		bf16 *dst = dout + (((size_t)b * T + t) * H + h) * D;
		float y1 = __bfloat162float(src[j]), y2 = __bfloat162float(src[j + half]);
		if (rotate) {
			float2 a = cs[(size_t)t * half + j];
			dst[j] = __float2bfloat16(y1 * a.x + y2 * a.y);
			dst[j + half] = __float2bfloat16(y2 * a.x - y1 * a.y);
		} else {
			dst[j] = src[j];
			dst[j + half] = src[j + half];
		}
	}
}

int fl_k_rope_permute_backward(bf16 *dout, const bf16 *din, const float2 *cs, int B, int T, int H,
                               int D, int rotate, cudaStream_t s)
{
	int rv = 0;
	size_t n = (size_t)B * H * T * (D / 2);
	k_rope_bwd<<<grid_for(n, 256), 256, 0, s>>>(dout, din, cs, B, T, H, D, rotate);
	CU_LAUNCHED();
fail:
	return rv;
}

// to_bthd = 1: in (B,H,T,D) -> out (B,T,H,D); 0: the reverse
__global__ void k_permute(bf16 *out, const bf16 *in, int B, int T, int H, int D, int to_bthd)
{
	size_t total = (size_t)B * H * T * D;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
	     i += (size_t)gridDim.x * blockDim.x) {
		// i indexes the output
		int d = (int)(i % D);
		size_t r = i / D;
		if (to_bthd) { // out (b,t,h,d)
			int h = (int)(r % H);
			r /= H;
			int t = (int)(r % T);
			int b = (int)(r / T);
			out[i] = in[(((size_t)b * H + h) * T + t) * D + d];
		} else { // out (b,h,t,d)
			int t = (int)(r % T);
			r /= T;
			int h = (int)(r % H);
			int b = (int)(r / H);
			out[i] = in[(((size_t)b * T + t) * H + h) * D + d];
		}
	}
}

int fl_k_bhtd_to_bthd(bf16 *out, const bf16 *in, int B, int T, int H, int D, cudaStream_t s)
{
	int rv = 0;
	k_permute<<<grid_for((size_t)B * H * T * D, 256), 256, 0, s>>>(out, in, B, T, H, D, 1);
	CU_LAUNCHED();
fail:
	return rv;
}

int fl_k_bthd_to_bhtd(bf16 *out, const bf16 *in, int B, int T, int H, int D, cudaStream_t s)
{
	int rv = 0;
	k_permute<<<grid_for((size_t)B * H * T * D, 256), 256, 0, s>>>(out, in, B, T, H, D, 0);
	CU_LAUNCHED();
fail:
	return rv;
}

/* ---- merged q/k/v projection: split + bias + rotary + layout ------------ */

// One thread per pair of rotation pairs: (j, j+half) and (j+1, j+1+half) of
// one head of one token, 2-wide bf16 loads and stores (VEC 2; the launchers
// fall back to one pair per thread, VEC 1, for odd half-dimensions or rows).
// Heads are numbered over the merged row: 0..Hq-1 are q, Hq..Hq+Hkv-1 k, the
// rest v; head hh's values sit at columns hh*D .. hh*D+D-1 of the row.
// Forward (BWD 0): rows (+ bias) -> q, k rotated, v copied (head-major).
// Backward (BWD 1): the transpose: q, k rotated back (the angle's sine
// negated), v copied, head-major -> rows.
/* One (token, head, pair) slot of k_qkv_rope: token n = b*T + t, head hh of
 * the merged row, pair j (VEC consecutive pairs). */
template <int VEC, int BWD>
static __device__ __forceinline__ void
qkv_rope_slot(bf16 *rows, int ld, bf16 *q, bf16 *k, bf16 *v, const bf16 *bias, const float2 *cs,
              int t, int b, int n, int hh, int j, int T, int Hq, int Hkv, int D)
{
	int half = D / 2;
	{
		bf16 *row = rows + (size_t)n * ld + (size_t)hh * D, *head;
		int rot = 1;
		if (hh < Hq) {
			head = q + (((size_t)b * Hq + hh) * T + t) * D;
		} else if (hh < Hq + Hkv) {
			head = k + (((size_t)b * Hkv + (hh - Hq)) * T + t) * D;
		} else {
			head = v + (((size_t)b * Hkv + (hh - Hq - Hkv)) * T + t) * D;
			rot = 0;
		}
		const bf16 *src = BWD ? head : row;
		bf16 *dst = BWD ? row : head;
		float x1[VEC], x2[VEC];
		if (VEC == 2) {
			float2 a = __bfloat1622float2(*(const __nv_bfloat162 *)(src + j));
			float2 c = __bfloat1622float2(*(const __nv_bfloat162 *)(src + j + half));
			x1[0] = a.x, x1[1] = a.y, x2[0] = c.x, x2[1] = c.y;
		} else {
			x1[0] = __bfloat162float(src[j]), x2[0] = __bfloat162float(src[j + half]);
		}
		if (!BWD && bias) {
			const bf16 *bb = bias + (size_t)hh * D;
			for (int e = 0; e < VEC; e++) {
				x1[e] += __bfloat162float(bb[j + e]);
				x2[e] += __bfloat162float(bb[j + e + half]);
			}
		}
		float y1[VEC], y2[VEC];
		for (int e = 0; e < VEC; e++) {
			if (rot) {
				float2 a = cs[(size_t)t * half + j + e];
				float sn = BWD ? -a.y : a.y;
				y1[e] = x1[e] * a.x - x2[e] * sn;
				y2[e] = x2[e] * a.x + x1[e] * sn;
			} else {
				y1[e] = x1[e];
				y2[e] = x2[e];
			}
		}
		if (VEC == 2) {
			*(__nv_bfloat162 *)(dst + j) = __floats2bfloat162_rn(y1[0], y1[1]);
			*(__nv_bfloat162 *)(dst + j + half) = __floats2bfloat162_rn(y2[0], y2[1]);
		} else {
			dst[j] = __float2bfloat16(y1[0]);
			dst[j + half] = __float2bfloat16(y2[0]);
		}
	}
}

// A block per token (grid-stride over tokens), its threads over the token's
// (head, pair) slots: the index arithmetic is 32-bit and per slot only one
// division, as these memory-bound kernels cannot afford 64-bit divisions
// per element.
template <int VEC, int BWD>
__global__ void k_qkv_rope(bf16 *rows, int ld, bf16 *q, bf16 *k, bf16 *v, const bf16 *bias,
                           const float2 *cs, int B, int T, int Hq, int Hkv, int D)
{
	int half = D / 2, hp = half / VEC, Ht = Hq + 2 * Hkv, slots = Ht * hp;
	for (int n = blockIdx.x; n < B * T; n += gridDim.x) /* token b*T + t */
		for (int sl = threadIdx.x; sl < slots; sl += blockDim.x)
			qkv_rope_slot<VEC, BWD>(rows, ld, q, k, v, bias, cs, n % T, n / T, n,
			                        sl / hp, (sl % hp) * VEC, T, Hq, Hkv, D);
}

static int al4(const void *p)
{
	return ((uintptr_t)p & 3) == 0;
}

/* Launches k_qkv_rope in direction bwd, 2-wide where the sizes and the
 * pointers' alignment allow (even half-dimension and row length, 4-byte
 * aligned bases). */
static int qkv_rope_launch(int bwd, bf16 *rows, int ld, bf16 *q, bf16 *k, bf16 *v, const bf16 *bias,
                           const float2 *cs, int B, int T, int Hq, int Hkv, int D, cudaStream_t s)
{
	int rv = 0;
	int vec2 = (D / 2) % 2 == 0 && ld % 2 == 0 && al4(rows) && al4(q) && al4(k) && al4(v) &&
	           (!bias || al4(bias));
	int n = B * T, g = n < (1 << 20) ? n : 1 << 20; /* a block per token */
	if (n <= 0)
		return 0;
	if (vec2 && bwd)
		k_qkv_rope<2, 1><<<g, 256, 0, s>>>(rows, ld, q, k, v, NULL, cs, B, T, Hq, Hkv, D);
	else if (vec2)
		k_qkv_rope<2, 0><<<g, 256, 0, s>>>(rows, ld, q, k, v, bias, cs, B, T, Hq, Hkv, D);
	else if (bwd)
		k_qkv_rope<1, 1><<<g, 256, 0, s>>>(rows, ld, q, k, v, NULL, cs, B, T, Hq, Hkv, D);
	else
		k_qkv_rope<1, 0><<<g, 256, 0, s>>>(rows, ld, q, k, v, bias, cs, B, T, Hq, Hkv, D);
	CU_LAUNCHED();
fail:
	return rv;
}

int fl_k_qkv_rope_forward(bf16 *q, bf16 *k, bf16 *v, const bf16 *qkv, int ld, const bf16 *bias,
                          const float2 *cs, int B, int T, int Hq, int Hkv, int D, cudaStream_t s)
{
	/* the rows are only read in this direction */
	return qkv_rope_launch(0, (bf16 *)qkv, ld, q, k, v, bias, cs, B, T, Hq, Hkv, D, s);
}

int fl_k_qkv_rope_backward(bf16 *dqkv, int ld, const bf16 *dq, const bf16 *dk, const bf16 *dv,
                           const float2 *cs, int B, int T, int Hq, int Hkv, int D, cudaStream_t s)
{
	/* the head-major gradients are only read in this direction */
	return qkv_rope_launch(1, dqkv, ld, (bf16 *)dq, (bf16 *)dk, (bf16 *)dv, NULL, cs, B, T, Hq,
	                       Hkv, D, s);
}

/* ---- causal softmax ------------------------------------------------------- */

// one warp per row of S (rows, T); query position t = row % T sees columns 0..t
__global__ void k_causal_softmax(bf16 *P, const float *S, long rows, int T, float scale)
{
	long row = (long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
	int lane = threadIdx.x % WARP;
	if (row >= rows)
		return;
	int t = (int)(row % T);
	const float *sr = S + (size_t)row * T;
	bf16 *pr = P + (size_t)row * T;
	// online max / sum per lane, then combined across the warp
	float m = -INFINITY, l = 0.f;
	for (int j = lane; j <= t; j += WARP) {
		float v = sr[j] * scale;
		if (v > m) {
			l = l * expf(m - v) + 1.f;
			m = v;
		} else {
			l += expf(v - m);
		}
	}
	float gm = warp_max(m);
	l = (m == -INFINITY) ? 0.f : l * expf(m - gm);
	l = warp_sum(l);
	float inv = 1.0f / l;
	for (int j = lane; j < T; j += WARP)
		pr[j] = __float2bfloat16(j <= t ? expf(sr[j] * scale - gm) * inv : 0.f);
}

int fl_k_causal_softmax(bf16 *P, const float *S, long rows, int T, float scale, cudaStream_t s)
{
	int rv = 0;
	k_causal_softmax<<<fl_cdiv(rows, ROWS_PER_BLOCK), ROWS_PER_BLOCK * WARP, 0, s>>>(P, S, rows,
	                                                                                 T, scale);
	CU_LAUNCHED();
fail:
	return rv;
}

__global__ void k_causal_softmax_bwd(bf16 *dS, const bf16 *P, const float *dP, long rows, int T,
                                     float scale)
{
	long row = (long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
	int lane = threadIdx.x % WARP;
	if (row >= rows)
		return;
	int t = (int)(row % T);
	const bf16 *pr = P + (size_t)row * T;
	const float *dpr = dP + (size_t)row * T;
	float dot = 0.f;
	for (int j = lane; j <= t; j += WARP)
		dot += __bfloat162float(pr[j]) * dpr[j];
	dot = warp_sum(dot);
	bf16 *dsr = dS + (size_t)row * T;
	for (int j = lane; j < T; j += WARP) {
		float p = __bfloat162float(pr[j]);
		dsr[j] = __float2bfloat16(j <= t ? p * (dpr[j] - dot) * scale : 0.f);
	}
}

int fl_k_causal_softmax_backward(bf16 *dS, const bf16 *P, const float *dP, long rows, int T,
                                 float scale, cudaStream_t s)
{
	int rv = 0;
	k_causal_softmax_bwd<<<fl_cdiv(rows, ROWS_PER_BLOCK), ROWS_PER_BLOCK * WARP, 0, s>>>(
	    dS, P, dP, rows, T, scale);
	CU_LAUNCHED();
fail:
	return rv;
}

/* ---- SwiGLU ------------------------------------------------------------- */

// pairs of elements (bf16x2 loads and stores) when N is even; scalar otherwise
__global__ void k_swiglu_fwd(bf16 *out, const bf16 *gate, const bf16 *up, long N)
{
	if (N % 2 == 0) {
		const __nv_bfloat162 *g2 = (const __nv_bfloat162 *)gate;
		const __nv_bfloat162 *u2 = (const __nv_bfloat162 *)up;
		__nv_bfloat162 *o2 = (__nv_bfloat162 *)out;
		for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < N / 2;
		     i += (long)gridDim.x * blockDim.x) {
			float2 g = __bfloat1622float2(g2[i]), u = __bfloat1622float2(u2[i]);
			o2[i] = __floats2bfloat162_rn(g.x / (1.0f + expf(-g.x)) * u.x,
			                              g.y / (1.0f + expf(-g.y)) * u.y);
		}
		return;
	}
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < N;
	     i += (long)gridDim.x * blockDim.x) {
		float g = __bfloat162float(gate[i]);
		out[i] = __float2bfloat16(g / (1.0f + expf(-g)) * __bfloat162float(up[i]));
	}
}

int fl_k_swiglu_forward(bf16 *out, const bf16 *gate, const bf16 *up, long N, cudaStream_t s)
{
	int rv = 0;
	k_swiglu_fwd<<<grid_for(N % 2 ? N : N / 2, 256), 256, 0, s>>>(out, gate, up, N);
	CU_LAUNCHED();
fail:
	return rv;
}

static __device__ __forceinline__ void swiglu_grad(float d, float g, float u, float *dg, float *du)
{
	float sg = 1.0f / (1.0f + expf(-g));
	*dg = d * u * sg * (1.0f + g * (1.0f - sg));
	*du = d * g * sg;
}

__global__ void k_swiglu_bwd(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate,
                             const bf16 *up, long N)
{
	if (N % 2 == 0) {
		const __nv_bfloat162 *g2 = (const __nv_bfloat162 *)gate;
		const __nv_bfloat162 *u2 = (const __nv_bfloat162 *)up;
		const __nv_bfloat162 *d2 = (const __nv_bfloat162 *)dout;
		for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < N / 2;
		     i += (long)gridDim.x * blockDim.x) {
			float2 g = __bfloat1622float2(g2[i]), u = __bfloat1622float2(u2[i]);
			float2 d = __bfloat1622float2(d2[i]);
			float ga, gb, ua, ub;
			swiglu_grad(d.x, g.x, u.x, &ga, &ua);
			swiglu_grad(d.y, g.y, u.y, &gb, &ub);
			((__nv_bfloat162 *)dgate)[i] = __floats2bfloat162_rn(ga, gb);
			((__nv_bfloat162 *)dup)[i] = __floats2bfloat162_rn(ua, ub);
		}
		return;
	}
	for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < N;
	     i += (long)gridDim.x * blockDim.x) {
		float dg, du;
		swiglu_grad(__bfloat162float(dout[i]), __bfloat162float(gate[i]),
		            __bfloat162float(up[i]), &dg, &du);
		dgate[i] = __float2bfloat16(dg);
		dup[i] = __float2bfloat16(du);
	}
}

int fl_k_swiglu_backward(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate, const bf16 *up,
                         long N, cudaStream_t s)
{
	int rv = 0;
	k_swiglu_bwd<<<grid_for(N % 2 ? N : N / 2, 256), 256, 0, s>>>(dgate, dup, dout, gate, up,
	                                                              N);
	CU_LAUNCHED();
fail:
	return rv;
}

/* ---- SwiGLU on the merged gate/up projection ------------------------------ */

/* VEC consecutive bf16 values to/from float: one 16-byte access for 8 (and
 * two bf16x2 stores for 4), a bf16x2 for 2, a scalar for 1 (the caller
 * guarantees the alignment). */
template <int VEC> static __device__ __forceinline__ void ld_bf16(float *f, const bf16 *p)
{
	if (VEC == 8) {
		uint4 raw = *(const uint4 *)p;
		const __nv_bfloat162 *h = (const __nv_bfloat162 *)&raw;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			float2 v = __bfloat1622float2(h[i]);
			f[2 * i] = v.x, f[2 * i + 1] = v.y;
		}
	} else if (VEC == 2) {
		float2 v = __bfloat1622float2(*(const __nv_bfloat162 *)p);
		f[0] = v.x, f[1] = v.y;
	} else {
		f[0] = __bfloat162float(*p);
	}
}

template <int VEC> static __device__ __forceinline__ void st_bf16(bf16 *p, const float *f)
{
	if (VEC == 8) {
		uint4 raw;
		__nv_bfloat162 *h = (__nv_bfloat162 *)&raw;
#pragma unroll
		for (int i = 0; i < 4; i++)
			h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
		*(uint4 *)p = raw;
	} else if (VEC == 4) {
		((__nv_bfloat162 *)p)[0] = __floats2bfloat162_rn(f[0], f[1]);
		((__nv_bfloat162 *)p)[1] = __floats2bfloat162_rn(f[2], f[3]);
	} else if (VEC == 2) {
		*(__nv_bfloat162 *)p = __floats2bfloat162_rn(f[0], f[1]);
	} else {
		*p = __float2bfloat16(f[0]);
	}
}

// gu (rows, 2I): gate in columns [0, I), up in [I, 2I) of each row (the
// output of the one GEMM with the concatenated weights). Forward (BWD 0):
// out (rows, I) = silu(gate) * up. Backward (BWD 1): from dout (rows, I),
// out is dgu (rows, 2I): dgate in the gate half, dup in the up half
// (overwritten), the input of the merged backward GEMM. Each thread takes
// VEC consecutive columns (8: 16-byte accesses, when I % 8 == 0; 2; 1).
// Grid: x over a row's column groups, y (grid-stride) over rows, so no
// index division per element.
template <int BWD, int VEC>
__global__ void k_swiglu_gu(bf16 *out, const bf16 *dout, const bf16 *gu, long rows, int I)
{
	int c = (blockIdx.x * blockDim.x + threadIdx.x) * VEC;
	if (c >= I)
		return;
	for (long n = blockIdx.y; n < rows; n += gridDim.y) {
		const bf16 *g = gu + (size_t)n * 2 * I + c, *u = g + I;
		float gf[VEC], uf[VEC], a[VEC], b[VEC];
		ld_bf16<VEC>(gf, g);
		ld_bf16<VEC>(uf, u);
		if (!BWD) {
#pragma unroll
			for (int e = 0; e < VEC; e++)
				a[e] = gf[e] / (1.0f + expf(-gf[e])) * uf[e];
			st_bf16<VEC>(out + (size_t)n * I + c, a);
			continue;
		}
		float df[VEC];
		ld_bf16<VEC>(df, dout + (size_t)n * I + c);
#pragma unroll
		for (int e = 0; e < VEC; e++)
			swiglu_grad(df[e], gf[e], uf[e], &a[e], &b[e]);
		bf16 *dg = out + (size_t)n * 2 * I + c;
		st_bf16<VEC>(dg, a);
		st_bf16<VEC>(dg + I, b);
	}
}

static int al16(const void *p)
{
	return ((uintptr_t)p & 15) == 0;
}

/* Launches k_swiglu_gu with the widest access the sizes and pointers allow,
 * on a (column groups, rows) grid; rows beyond 65535 (the y limit) are
 * visited by the grid-stride loop. */
static int swiglu_gu_launch(int bwd, bf16 *out, const bf16 *dout, const bf16 *gu, long rows, int I,
                            cudaStream_t s)
{
	int rv = 0;
	int vec = I % 8 == 0 && al16(out) && al16(gu) && (!dout || al16(dout)) ? 8
	          : I % 2 == 0                                                 ? 2
	                                                                       : 1;
	dim3 grid((unsigned)fl_cdiv(I / vec, 256),
	          (unsigned)(rows < 65535 ? (rows > 0 ? rows : 1) : 65535));
	if (rows <= 0)
		return 0;
	if (bwd && vec == 8)
		k_swiglu_gu<1, 8><<<grid, 256, 0, s>>>(out, dout, gu, rows, I);
	else if (bwd && vec == 2)
		k_swiglu_gu<1, 2><<<grid, 256, 0, s>>>(out, dout, gu, rows, I);
	else if (bwd)
		k_swiglu_gu<1, 1><<<grid, 256, 0, s>>>(out, dout, gu, rows, I);
	else if (vec == 8)
		k_swiglu_gu<0, 8><<<grid, 256, 0, s>>>(out, dout, gu, rows, I);
	else if (vec == 2)
		k_swiglu_gu<0, 2><<<grid, 256, 0, s>>>(out, dout, gu, rows, I);
	else
		k_swiglu_gu<0, 1><<<grid, 256, 0, s>>>(out, dout, gu, rows, I);
	CU_LAUNCHED();
fail:
	return rv;
}

int fl_k_swiglu_gu_forward(bf16 *out, const bf16 *gu, long rows, int I, cudaStream_t s)
{
	return swiglu_gu_launch(0, out, NULL, gu, rows, I, s);
}

int fl_k_swiglu_gu_backward(bf16 *dgu, const bf16 *dout, const bf16 *gu, long rows, int I,
                            cudaStream_t s)
{
	return swiglu_gu_launch(1, dgu, dout, gu, rows, I, s);
}

/* ---- cross-entropy ------------------------------------------------------ */

#define CE_THREADS 512

/* Online (max, sum of exp, argmax) state of a part of a row: sum is relative
 * to max; arg is the lowest index of the maximum. */
typedef struct ce_acc {
	float m, s;
	int a;
} ce_acc;

static __device__ __forceinline__ void ce_push(ce_acc *c, float v, int i)
{
	if (v > c->m) {
		c->s = c->s * expf(c->m - v) + 1.f; /* expf(-inf) = 0 on the first value */
		c->m = v;
		c->a = i;
	} else {
		c->s += expf(v - c->m);
	}
}

static __device__ __forceinline__ ce_acc ce_merge(ce_acc x, ce_acc y)
{
	ce_acc r;
	r.m = fmaxf(x.m, y.m);
	if (r.m == -INFINITY) {
		r.s = x.s + y.s;
	} else {
		r.s = (x.m == -INFINITY ? 0.f : x.s * expf(x.m - r.m)) +
		      (y.m == -INFINITY ? 0.f : y.s * expf(y.m - r.m));
	}
	r.a = (y.m > x.m || (y.m == x.m && y.a < x.a)) ? y.a : x.a;
	return r;
}

static __device__ __forceinline__ float ce_load1(const float *l, int i)
{
	return l[i];
}
static __device__ __forceinline__ float ce_load1(const bf16 *l, int i)
{
	return __bfloat162float(l[i]);
}
/* The 16-byte group i of a row: 4 f32 or 8 bf16 logits, as floats. */
static __device__ __forceinline__ void ce_loadw(float *f, const float *l, int i)
{
	float4 x = ((const float4 *)l)[i];
	f[0] = x.x, f[1] = x.y, f[2] = x.z, f[3] = x.w;
}
static __device__ __forceinline__ void ce_loadw(float *f, const bf16 *l, int i)
{
	ld_bf16<8>(f, l + 8 * i);
}

// one block per row: one pass for max, sum of exponentials and argmax
// (online), a second one for the gradient; 4-wide loads when V % 4 == 0.
// TL is the logits' type (f32, or bf16 as the training head writes them);
// dlogits may alias bf16 logits: every element is read by the thread that
// then overwrites it, after the row's reduction is complete.
template <typename TL>
__global__ void k_crossentropy(bf16 *dlogits, float *losses, int *correct, const TL *logits,
                               const int *targets, const float *row_scale, float dscale, int V)
{
	__shared__ ce_acc s_acc[CE_THREADS / WARP];
	__shared__ ce_acc s_all;
	int n = blockIdx.x, tid = threadIdx.x, lane = tid % WARP, wid = tid / WARP;
	const TL *l = logits + (size_t)n * V;
	int tg = targets[n];
	if (tg < 0) {
		if (dlogits)
			for (int i = tid; i < V; i += blockDim.x)
				dlogits[(size_t)n * V + i] = __float2bfloat16(0.f);
		if (tid == 0) {
			losses[n] = 0.f;
			correct[n] = 0;
		}
		return;
	}
	ce_acc c = {-INFINITY, 0.f, V};
	/* 16-byte groups of W logits when V allows (and so the row bases) */
	constexpr int W = 16 / sizeof(TL);
	int vec = V % W == 0;
	if (vec) {
		for (int i = tid; i < V / W; i += blockDim.x) {
			float x[W];
			ce_loadw(x, l, i);
#pragma unroll
			for (int e = 0; e < W; e++)
				ce_push(&c, x[e], W * i + e);
		}
	} else {
		for (int i = tid; i < V; i += blockDim.x)
			ce_push(&c, ce_load1(l, i), i);
	}
	for (int o = WARP / 2; o > 0; o >>= 1) {
		ce_acc y;
		y.m = __shfl_xor_sync(0xffffffffu, c.m, o);
		y.s = __shfl_xor_sync(0xffffffffu, c.s, o);
		y.a = __shfl_xor_sync(0xffffffffu, c.a, o);
		c = ce_merge(c, y);
	}
	if (lane == 0)
		s_acc[wid] = c;
	__syncthreads();
	if (tid == 0) {
		ce_acc t = s_acc[0];
		for (int w = 1; w < (int)blockDim.x / WARP; w++)
			t = ce_merge(t, s_acc[w]);
		s_all = t;
		losses[n] = logf(t.s) + t.m - ce_load1(l, tg);
		correct[n] = t.a == tg;
	}
	__syncthreads();
	if (dlogits) {
		float sc = row_scale ? row_scale[n] : dscale;
		float m = s_all.m, inv = 1.0f / s_all.s;
		bf16 *d = dlogits + (size_t)n * V;
		if (vec) {
			for (int i = tid; i < V / W; i += blockDim.x) {
				float x[W];
				ce_loadw(x, l, i);
				int j = W * i;
#pragma unroll
				for (int e = 0; e < W; e++)
					x[e] =
					    (expf(x[e] - m) * inv - (j + e == tg ? 1.f : 0.f)) * sc;
				st_bf16<W>(d + j, x);
			}
		} else {
			for (int i = tid; i < V; i += blockDim.x) {
				float p = expf(ce_load1(l, i) - m) * inv;
				d[i] = __float2bfloat16((p - (i == tg ? 1.f : 0.f)) * sc);
			}
		}
	}
}

template <typename TL>
static int ce_launch(bf16 *dlogits, float *losses, int *correct, const TL *logits,
                     const int *targets, const float *row_scale, float dscale, int N, int V,
                     cudaStream_t s)
{
	int rv = 0;
	k_crossentropy<TL><<<N, CE_THREADS, 0, s>>>(dlogits, losses, correct, logits, targets,
	                                            row_scale, dscale, V);
	CU_LAUNCHED();
fail:
	return rv;
}

int fl_k_crossentropy(bf16 *dlogits, float *losses, int *correct, const float *logits,
                      const int *targets, const float *row_scale, float dscale, int N, int V,
                      cudaStream_t s)
{
	return ce_launch(dlogits, losses, correct, logits, targets, row_scale, dscale, N, V, s);
}

int fl_k_crossentropy_bf16(bf16 *dlogits, float *losses, int *correct, const bf16 *logits,
                           const int *targets, const float *row_scale, float dscale, int N, int V,
                           cudaStream_t s)
{
	return ce_launch(dlogits, losses, correct, logits, targets, row_scale, dscale, N, V, s);
}

/* ---- optimizers ----------------------------------------------------------- */

__global__ void k_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                        float b2, float eps, float wd, float c1, float c2)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float gi = g[i];
		float mi = b1 * m[i] + (1.0f - b1) * gi;
		float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
		m[i] = mi;
		v[i] = vi;
		float mh = mi / c1, vh = vi / c2;
		p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
	}
}

int fl_k_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
               float eps, float wd, float c1, float c2, cudaStream_t s)
{
	int rv = 0;
	k_adamw<<<grid_for(n, 256), 256, 0, s>>>(p, g, m, v, n, lr, b1, b2, eps, wd, c1, c2);
	CU_LAUNCHED();
fail:
	return rv;
}

__global__ void k_sgd(float *p, const float *g, float *mom, size_t n, float lr, float momentum,
                      float wd)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float d = g[i];
		if (mom) {
			mom[i] = momentum * mom[i] + g[i];
			d = mom[i];
		}
		p[i] -= lr * (d + wd * p[i]);
	}
}

int fl_k_sgd(float *p, const float *g, float *mom, size_t n, float lr, float momentum, float wd,
             cudaStream_t s)
{
	int rv = 0;
	k_sgd<<<grid_for(n, 256), 256, 0, s>>>(p, g, momentum != 0.0f ? mom : NULL, n, lr, momentum,
	                                       wd);
	CU_LAUNCHED();
fail:
	return rv;
}

/* ---- element-wise ----------------------------------------------------------- */

__global__ void k_f32_to_bf16(bf16 *out, const float *in, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		out[i] = __float2bfloat16(in[i]);
}

int fl_k_f32_to_bf16(bf16 *out, const float *in, size_t n, cudaStream_t s)
{
	int rv = 0;
	k_f32_to_bf16<<<grid_for(n, 256), 256, 0, s>>>(out, in, n);
	CU_LAUNCHED();
fail:
	return rv;
}

__global__ void k_bf16_to_f32(float *out, const bf16 *in, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		out[i] = __bfloat162float(in[i]);
}

int fl_k_bf16_to_f32(float *out, const bf16 *in, size_t n, cudaStream_t s)
{
	int rv = 0;
	k_bf16_to_f32<<<grid_for(n, 256), 256, 0, s>>>(out, in, n);
	CU_LAUNCHED();
fail:
	return rv;
}

__global__ void k_add_f32(float *out, const float *a, const float *b, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		out[i] = a[i] + b[i];
}

int fl_k_add_f32(float *out, const float *a, const float *b, size_t n, cudaStream_t s)
{
	int rv = 0;
	k_add_f32<<<grid_for(n, 256), 256, 0, s>>>(out, a, b, n);
	CU_LAUNCHED();
fail:
	return rv;
}

static __device__ __forceinline__ uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

__global__ void k_init_bf16(bf16 *w, size_t n, uint64_t seed, float std, float fill)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		if (std == 0.f) {
			w[i] = __float2bfloat16(fill);
			continue;
		}
		uint64_t a = splitmix64(seed ^ (2 * i)), b = splitmix64(seed ^ (2 * i + 1));
		float u1 = ((a >> 40) + 0.5f) * (1.0f / 16777216.0f);
		float u2 = (b >> 40) * (1.0f / 16777216.0f);
		float z = sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
		w[i] = __float2bfloat16(std * z);
	}
}

int fl_k_init_bf16(bf16 *w, size_t n, uint64_t seed, float std, float fill, cudaStream_t s)
{
	int rv = 0;
	k_init_bf16<<<grid_for(n, 256), 256, 0, s>>>(w, n, seed, std, fill);
	CU_LAUNCHED();
fail:
	return rv;
}

/* ---- DP-SGD --------------------------------------------------------------- */

#define NORM_THREADS 256

__global__ void k_row_sumsq(float *norms2, const float *g, size_t P)
{
	__shared__ double part[NORM_THREADS / WARP];
	const float *row = g + (size_t)blockIdx.x * P;
	double s = 0;
	for (size_t j = threadIdx.x; j < P; j += blockDim.x)
		s += (double)row[j] * row[j];
	s = warp_sum_d(s);
	if (threadIdx.x % WARP == 0)
		part[threadIdx.x / WARP] = s;
	__syncthreads();
	if (threadIdx.x == 0) {
		double t = 0;
		for (int w = 0; w < NORM_THREADS / WARP; w++)
			t += part[w];
		norms2[blockIdx.x] = (float)t;
	}
}

int fl_k_row_sumsq(float *norms2, const float *g, int nex, size_t P, cudaStream_t s)
{
	int rv = 0;
	if (nex <= 0)
		return 0;
	k_row_sumsq<<<nex, NORM_THREADS, 0, s>>>(norms2, g, P);
	CU_LAUNCHED();
fail:
	return rv;
}

// clip factor as privacy/dp.c: 1 if norm <= C, C/norm above, 0 for a non-finite norm
static __device__ __forceinline__ float clip_factor(float n2, float clip)
{
	float nrm = sqrtf(n2);
	if (!isfinite(nrm))
		return 0.f;
	return nrm > clip ? clip / nrm : 1.f;
}

__global__ void k_clip_accumulate(float *out, const float *g, const float *norms2, int nex,
                                  size_t P, float clip)
{
	for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < P;
	     j += (size_t)gridDim.x * blockDim.x) {
		float acc = out[j];
		for (int e = 0; e < nex; e++) {
			float f = clip_factor(norms2[e], clip);
			if (f != 0.f)
				acc += g[(size_t)e * P + j] * f;
		}
		out[j] = acc;
	}
}

int fl_k_clip_accumulate(float *out, const float *g, const float *norms2, int nex, size_t P,
                         float clip, cudaStream_t s)
{
	int rv = 0;
	if (nex <= 0)
		return 0;
	k_clip_accumulate<<<grid_for(P, 256), 256, 0, s>>>(out, g, norms2, nex, P, clip);
	CU_LAUNCHED();
fail:
	return rv;
}

// Philox4x32-10 (Salmon et al., SC'11)
static __device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint2 k)
{
	const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
	for (int r = 0; r < 10; r++) {
		uint32_t hi0 = __umulhi(M0, c.x), lo0 = M0 * c.x;
		uint32_t hi1 = __umulhi(M1, c.z), lo1 = M1 * c.z;
		c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
		k.x += W0;
		k.y += W1;
	}
	return c;
}

// pair p of outputs (2p, 2p+1) from counter (p lo, p hi, ctr_hi lo, ctr_hi hi)
__global__ void k_add_noise_scale(float *out, size_t n, uint64_t key, uint64_t ctr_hi, double std,
                                  double inv_div)
{
	size_t npair = (n + 1) / 2;
	uint2 k = make_uint2((uint32_t)key, (uint32_t)(key >> 32));
	for (size_t p = blockIdx.x * (size_t)blockDim.x + threadIdx.x; p < npair;
	     p += (size_t)gridDim.x * blockDim.x) {
		uint4 c = make_uint4((uint32_t)p, (uint32_t)((uint64_t)p >> 32), (uint32_t)ctr_hi,
		                     (uint32_t)(ctr_hi >> 32));
		uint4 x = philox4x32_10(c, k);
		uint64_t a = (((uint64_t)x.x << 32) | x.y) >> 11;
		uint64_t b = (((uint64_t)x.z << 32) | x.w) >> 11;
		double u1 = ((double)a + 0.5) * 0x1p-53; // (0,1): log is finite
		double u2 = (double)b * 0x1p-53;
		double rad = sqrt(-2.0 * log(u1));
		double s, c2;
		sincospi(2.0 * u2, &s, &c2);
		size_t i = 2 * p;
		out[i] = (float)(((double)out[i] + std * rad * c2) * inv_div);
		if (i + 1 < n)
			out[i + 1] = (float)(((double)out[i + 1] + std * rad * s) * inv_div);
	}
}

int fl_k_add_noise_scale(float *out, size_t n, uint64_t key, uint64_t ctr_hi, double std,
                         double inv_div, cudaStream_t s)
{
	int rv = 0;
	k_add_noise_scale<<<grid_for((n + 1) / 2, 256), 256, 0, s>>>(out, n, key, ctr_hi, std,
	                                                             inv_div);
	CU_LAUNCHED();
fail:
	return rv;
}

/* ---- GEMM --------------------------------------------------------------- */

int fl_gemm_rm(cublasHandle_t h, int ta, int tb, int M, int N, int K, float alpha, const bf16 *A,
               int lda, long long sa, const bf16 *B, int ldb, long long sb, float beta, void *C,
               cudaDataType ctype, int ldc, long long sc, int batch, const char *file, int line)
{
	// row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T
	cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
	cublasOperation_t opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
	cublasStatus_t st;
	if (batch <= 1)
		st = cublasGemmEx(h, opB, opA, N, M, K, &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF,
		                  lda, &beta, C, ctype, ldc, CUBLAS_COMPUTE_32F,
		                  CUBLAS_GEMM_DEFAULT);
	else
		st = cublasGemmStridedBatchedEx(h, opB, opA, N, M, K, &alpha, B, CUDA_R_16BF, ldb,
		                                sb, A, CUDA_R_16BF, lda, sa, &beta, C, ctype, ldc,
		                                sc, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
	if (st != CUBLAS_STATUS_SUCCESS) {
		fl_log(FL_LOG_ERROR, "cuda",
		       "%s:%d: GEMM (ta %d tb %d M %d N %d K %d lda %d ldb %d ldc %d batch %d): "
		       "cuBLAS %s",
		       file, line, ta, tb, M, N, K, lda, ldb, ldc, batch,
		       cublasGetStatusString(st));
		return FL_ECUDA;
	}
	return 0;
}
