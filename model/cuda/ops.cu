/*
 * model/cuda/ops.cu — host-array twins of model/ops.h for tests/cuda_ops_test.c.
 *
 * Each function uploads its inputs (rounded to bf16 where the GPU model holds
 * bf16, f32 otherwise), runs the same kernel or layer routine the model uses,
 * and copies the outputs back; "+=" outputs of model/ops.h are honoured by
 * uploading the current values and accumulating on the device or on the
 * host. Slow on purpose (allocations per call): for tests only, never on a
 * training path. Functions run on the legacy default stream and synchronize.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda/cuda.h"
#include "model/cuda/kernels.cuh"

#define MAXBUF 24

/* Device buffers of one call, freed together. */
typedef struct bufs {
	void *p[MAXBUF];
	int n;
} bufs;

static void bufs_free(bufs *b)
{
	cudaDeviceSynchronize();
	for (int i = 0; i < b->n; i++)
		cudaFree(b->p[i]);
	b->n = 0;
}

static int dalloc(bufs *b, void **p, size_t bytes)
{
	int rv = 0;
	*p = NULL;
	if (b->n >= MAXBUF)
		return FL_ENOMEM;
	CU_TRY(cudaMalloc(p, bytes ? bytes : 4));
	b->p[b->n++] = *p;
fail:
	return rv;
}

static int up_f32(bufs *b, float **d, const float *h, size_t n)
{
	int rv;
	if ((rv = dalloc(b, (void **)d, n * 4)) != 0)
		return rv;
	if (h)
		CU_TRY(cudaMemcpy(*d, h, n * 4, cudaMemcpyHostToDevice));
	else
		CU_TRY(cudaMemset(*d, 0, n * 4));
fail:
	return rv;
}

static int up_i32(bufs *b, int **d, const int *h, size_t n)
{
	int rv;
	if ((rv = dalloc(b, (void **)d, n * 4)) != 0)
		return rv;
	CU_TRY(cudaMemcpy(*d, h, n * 4, cudaMemcpyHostToDevice));
fail:
	return rv;
}

static int up_bf16(bufs *b, bf16 **d, const float *h, size_t n)
{
	int rv;
	uint16_t *tmp = NULL;
	if ((rv = dalloc(b, (void **)d, n * 2)) != 0)
		return rv;
	if (!h) {
		CU_TRY(cudaMemset(*d, 0, n * 2));
		return 0;
	}
	if (!(tmp = (uint16_t *)malloc(n * 2 + 2)))
		return FL_ENOMEM;
	for (size_t i = 0; i < n; i++)
		tmp[i] = fl_f32_to_bf16_bits(h[i]);
	CU_TRY(cudaMemcpy(*d, tmp, n * 2, cudaMemcpyHostToDevice));
fail:
	free(tmp);
	return rv;
}

static int down_f32(float *h, const float *d, size_t n)
{
	int rv = 0;
	CU_TRY(cudaDeviceSynchronize());
	CU_TRY(cudaMemcpy(h, d, n * 4, cudaMemcpyDeviceToHost));
fail:
	return rv;
}

/* bf16 device -> f32 host; add: accumulate into h instead of overwriting. */
static int down_bf16(float *h, const bf16 *d, size_t n, int add)
{
	int rv = 0;
	uint16_t *tmp = (uint16_t *)malloc(n * 2 + 2);
	if (!tmp)
		return FL_ENOMEM;
	CU_TRY(cudaDeviceSynchronize());
	CU_TRY(cudaMemcpy(tmp, d, n * 2, cudaMemcpyDeviceToHost));
	for (size_t i = 0; i < n; i++)
		h[i] = (add ? h[i] : 0.f) + fl_bf16_bits_to_f32(tmp[i]);
fail:
	free(tmp);
	return rv;
}

static cublasHandle_t op_handle(void)
{
	static cublasHandle_t h;
	if (!h && cublasCreate(&h) != CUBLAS_STATUS_SUCCESS)
		h = NULL;
	return h;
}

#define HANDLE_OR_FAIL(h)                                                                          \
	do {                                                                                       \
		if (!((h) = op_handle())) {                                                        \
			fl_log(FL_LOG_ERROR, "cuda", "cublasCreate failed");                       \
			rv = FL_ECUDA;                                                             \
			goto fail;                                                                 \
		}                                                                                  \
	} while (0)

#define STEP(expr)                                                                                 \
	do {                                                                                       \
		if ((rv = (expr)) != 0)                                                            \
			goto fail;                                                                 \
	} while (0)

extern "C" int model_cuda_op_embed_forward(float *out, const int *tok, const float *wte, int V,
                                           int N, int C)
{
	int rv = 0;
	bufs b = {};
	float *d_out;
	int *d_tok;
	bf16 *d_w;
	STEP(up_f32(&b, &d_out, NULL, (size_t)N * C));
	STEP(up_i32(&b, &d_tok, tok, N));
	STEP(up_bf16(&b, &d_w, wte, (size_t)V * C));
	STEP(fl_k_embed_forward(d_out, d_tok, d_w, N, C, 0));
	STEP(down_f32(out, d_out, (size_t)N * C));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_embed_backward(float *dwte, const float *dout, const int *tok, int V,
                                            int N, int C)
{
	int rv = 0;
	bufs b = {};
	float *d_dw, *d_do;
	int *d_tok;
	STEP(up_f32(&b, &d_dw, dwte, (size_t)V * C));
	STEP(up_f32(&b, &d_do, dout, (size_t)N * C));
	STEP(up_i32(&b, &d_tok, tok, N));
	STEP(fl_k_embed_backward(d_dw, d_do, d_tok, N, C, 0));
	STEP(down_f32(dwte, d_dw, (size_t)V * C));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_rmsnorm_forward(float *out, float *rstd, const float *x,
                                             const float *w, int N, int C, float eps)
{
	int rv = 0;
	bufs b = {};
	float *d_x, *d_r;
	bf16 *d_w, *d_o;
	STEP(up_f32(&b, &d_x, x, (size_t)N * C));
	STEP(up_f32(&b, &d_r, NULL, N));
	STEP(up_bf16(&b, &d_w, w, C));
	STEP(up_bf16(&b, &d_o, NULL, (size_t)N * C));
	STEP(fl_k_rmsnorm_forward(d_o, d_r, d_x, d_w, N, C, eps, 0));
	STEP(down_bf16(out, d_o, (size_t)N * C, 0));
	STEP(down_f32(rstd, d_r, N));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_rmsnorm_forward_copy(float *out, float *rstd, float *copy,
                                                  const float *x, const float *w, int N, int C,
                                                  float eps)
{
	int rv = 0;
	bufs b = {};
	float *d_x, *d_r, *d_c;
	bf16 *d_w, *d_o;
	STEP(up_f32(&b, &d_x, x, (size_t)N * C));
	STEP(up_f32(&b, &d_r, NULL, N));
	STEP(up_f32(&b, &d_c, NULL, (size_t)N * C));
	STEP(up_bf16(&b, &d_w, w, C));
	STEP(up_bf16(&b, &d_o, NULL, (size_t)N * C));
	STEP(fl_k_rmsnorm_forward_copy(d_o, d_r, d_c, d_x, d_w, N, C, eps, 0));
	STEP(down_bf16(out, d_o, (size_t)N * C, 0));
	STEP(down_f32(rstd, d_r, N));
	STEP(down_f32(copy, d_c, (size_t)N * C));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_rmsnorm_backward_fused(float *dx, const float *dout, const float *x,
                                                    const float *w, const float *rstd, int N, int C)
{
	int rv = 0;
	bufs b = {};
	float *d_dx, *d_do, *d_x, *d_r;
	bf16 *d_w, *d_h;
	STEP(up_f32(&b, &d_dx, dx, (size_t)N * C));
	STEP(up_f32(&b, &d_do, dout, (size_t)N * C));
	STEP(up_f32(&b, &d_x, x, (size_t)N * C));
	STEP(up_f32(&b, &d_r, rstd, N));
	STEP(up_bf16(&b, &d_w, w, C));
	STEP(up_bf16(&b, &d_h, NULL, (size_t)N * C));
	STEP(fl_k_rmsnorm_backward_fused(d_dx, d_h, NULL, d_do, d_x, d_w, d_r, N, C, 0));
	STEP(down_f32(dx, d_dx, (size_t)N * C));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_rmsnorm_backward(float *dx, float *dw, const float *dout,
                                              const float *x, const float *w, const float *rstd,
                                              int N, int C)
{
	int rv = 0;
	bufs b = {};
	float *d_dx, *d_dw = NULL, *d_do, *d_x, *d_r;
	bf16 *d_w;
	STEP(up_f32(&b, &d_dx, dx, (size_t)N * C));
	if (dw)
		STEP(up_f32(&b, &d_dw, dw, C));
	STEP(up_f32(&b, &d_do, dout, (size_t)N * C));
	STEP(up_f32(&b, &d_x, x, (size_t)N * C));
	STEP(up_f32(&b, &d_r, rstd, N));
	STEP(up_bf16(&b, &d_w, w, C));
	STEP(fl_k_rmsnorm_backward(d_dx, NULL, d_dw, d_do, d_x, d_w, d_r, N, C, 0));
	STEP(down_f32(dx, d_dx, (size_t)N * C));
	if (dw)
		STEP(down_f32(dw, d_dw, C));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_bias_forward(float *out, const float *b, int N, int OUT, int out_bf16)
{
	int rv = 0;
	bufs bb = {};
	bf16 *d_b, *d_o16;
	float *d_o32;
	size_t n = (size_t)N * OUT;
	STEP(up_bf16(&bb, &d_b, b, OUT));
	if (out_bf16) {
		STEP(up_bf16(&bb, &d_o16, out, n));
		STEP(fl_k_bias_forward(d_o16, CUDA_R_16BF, d_b, N, OUT, 0));
		STEP(down_bf16(out, d_o16, n, 0));
	} else {
		STEP(up_f32(&bb, &d_o32, out, n));
		STEP(fl_k_bias_forward(d_o32, CUDA_R_32F, d_b, N, OUT, 0));
		STEP(down_f32(out, d_o32, n));
	}
fail:
	bufs_free(&bb);
	return rv;
}

extern "C" int model_cuda_op_bias_backward(float *db, const float *dout, int N, int OUT)
{
	int rv = 0;
	bufs b = {};
	float *d_db;
	bf16 *d_do;
	STEP(up_f32(&b, &d_db, db, OUT));
	STEP(up_bf16(&b, &d_do, dout, (size_t)N * OUT));
	STEP(fl_k_bias_backward(d_db, d_do, N, OUT, 0));
	STEP(down_f32(db, d_db, OUT));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_headnorm_forward(float *out, float *rstd, const float *x,
                                              const float *w, int rows, int D, float eps)
{
	int rv = 0;
	bufs b = {};
	float *d_r;
	bf16 *d_x, *d_w, *d_o;
	STEP(up_bf16(&b, &d_x, x, (size_t)rows * D));
	STEP(up_f32(&b, &d_r, NULL, rows));
	STEP(up_bf16(&b, &d_w, w, D));
	STEP(up_bf16(&b, &d_o, NULL, (size_t)rows * D));
	STEP(fl_k_headnorm_forward(d_o, d_r, d_x, d_w, rows, D, eps, 0));
	STEP(down_bf16(out, d_o, (size_t)rows * D, 0));
	STEP(down_f32(rstd, d_r, rows));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_headnorm_backward(float *dx, float *dw, const float *dout,
                                               const float *x, const float *w, const float *rstd,
                                               int rows, int D)
{
	int rv = 0;
	bufs b = {};
	float *d_dw = NULL, *d_r;
	bf16 *d_d, *d_x, *d_w;
	size_t n = (size_t)rows * D;
	if (dw)
		STEP(up_f32(&b, &d_dw, dw, D));
	STEP(up_bf16(&b, &d_d, dout, n));
	STEP(up_bf16(&b, &d_x, x, n));
	STEP(up_bf16(&b, &d_w, w, D));
	STEP(up_f32(&b, &d_r, rstd, rows));
	/* in place, as the model runs it */
	STEP(fl_k_headnorm_backward(d_d, d_dw, d_d, d_x, d_w, d_r, rows, D, 0));
	STEP(down_bf16(dx, d_d, n, 1));
	if (dw)
		STEP(down_f32(dw, d_dw, D));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_matmul_forward(float *out, const float *x, const float *w, int N,
                                            int IN, int OUT)
{
	int rv = 0;
	bufs b = {};
	bf16 *d_x, *d_w, *d_o;
	cublasHandle_t h;
	HANDLE_OR_FAIL(h);
	STEP(up_bf16(&b, &d_x, x, (size_t)N * IN));
	STEP(up_bf16(&b, &d_w, w, (size_t)OUT * IN));
	STEP(up_bf16(&b, &d_o, NULL, (size_t)N * OUT));
	STEP(GEMM(h, 0, 1, N, OUT, IN, 1.f, d_x, IN, d_w, IN, 0.f, d_o, CUDA_R_16BF, OUT));
	STEP(down_bf16(out, d_o, (size_t)N * OUT, 0));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_matmul_backward(float *dx, float *dw, const float *dout,
                                             const float *x, const float *w, int N, int IN, int OUT)
{
	int rv = 0;
	bufs b = {};
	bf16 *d_x, *d_w, *d_do;
	float *d_dx, *d_dw;
	cublasHandle_t h;
	HANDLE_OR_FAIL(h);
	STEP(up_bf16(&b, &d_x, x, (size_t)N * IN));
	STEP(up_bf16(&b, &d_w, w, (size_t)OUT * IN));
	STEP(up_bf16(&b, &d_do, dout, (size_t)N * OUT));
	if (dx) {
		STEP(up_f32(&b, &d_dx, dx, (size_t)N * IN));
		STEP(GEMM(h, 0, 0, N, IN, OUT, 1.f, d_do, OUT, d_w, IN, 1.f, d_dx, CUDA_R_32F, IN));
		STEP(down_f32(dx, d_dx, (size_t)N * IN));
	}
	if (dw) {
		STEP(up_f32(&b, &d_dw, dw, (size_t)OUT * IN));
		STEP(GEMM(h, 1, 0, OUT, IN, N, 1.f, d_do, OUT, d_x, IN, 1.f, d_dw, CUDA_R_32F, IN));
		STEP(down_f32(dw, d_dw, (size_t)OUT * IN));
	}
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_lora_forward(float *out, float *xa, const float *x, const float *A,
                                          const float *B, int N, int IN, int OUT, int r,
                                          float scale)
{
	return model_cuda_op_lora_forward_ld(out, OUT, xa, x, A, B, N, IN, OUT, r, scale);
}

extern "C" int model_cuda_op_lora_backward(float *dx, float *dA, float *dB, const float *dout,
                                           const float *x, const float *xa, const float *A,
                                           const float *B, int N, int IN, int OUT, int r,
                                           float scale)
{
	return model_cuda_op_lora_backward_ld(dx, dA, dB, dout, OUT, x, xa, A, B, N, IN, OUT, r,
	                                      scale);
}

extern "C" int model_cuda_op_lora_backward_per_example(float *pe, size_t stride, long a_off,
                                                       size_t b_off, const float *dout,
                                                       const float *x, const float *xa,
                                                       const float *A, const float *B, int nex,
                                                       int T, int IN, int OUT, int r, float scale)
{
	int rv = 0;
	bufs b = {};
	int N = nex * T;
	bf16 *d_do, *d_x, *d_xa, *d_A, *d_B, *d_dxa;
	float *d_pe;
	cublasHandle_t h;
	HANDLE_OR_FAIL(h);
	STEP(up_bf16(&b, &d_do, dout, (size_t)N * OUT));
	STEP(up_bf16(&b, &d_x, x, (size_t)N * IN));
	STEP(up_bf16(&b, &d_xa, xa, (size_t)N * r));
	STEP(up_bf16(&b, &d_A, A, (size_t)r * IN));
	STEP(up_bf16(&b, &d_B, B, (size_t)OUT * r));
	STEP(up_bf16(&b, &d_dxa, NULL, (size_t)N * r));
	STEP(up_f32(&b, &d_pe, pe, (size_t)nex * stride));
	STEP(fl_lora_backward(h, NULL, CUDA_R_32F, a_off >= 0 ? d_pe + a_off : NULL, d_pe + b_off,
	                      d_do, d_x, d_xa, d_A, d_B, d_dxa, N, IN, OUT, r, scale, nex, T,
	                      stride));
	STEP(down_f32(pe, d_pe, (size_t)nex * stride));
fail:
	bufs_free(&b);
	return rv;
}

static int rope_common(float *x, int B, int T, int H, int D, const float *inv_freq, int backward)
{
	int rv = 0;
	bufs b = {};
	size_t n = (size_t)B * T * H * D, nt = (size_t)T * (D / 2);
	bf16 *d_in, *d_tmp, *d_out;
	float2 *d_cs, *cs = (float2 *)malloc(nt * sizeof *cs);
	if (!cs)
		return FL_ENOMEM;
	fl_rope_table(cs, T, D, inv_freq);
	STEP(dalloc(&b, (void **)&d_cs, nt * sizeof *cs));
	CU_TRY(cudaMemcpy(d_cs, cs, nt * sizeof *cs, cudaMemcpyHostToDevice));
	STEP(up_bf16(&b, &d_in, x, n));
	STEP(up_bf16(&b, &d_tmp, NULL, n));
	STEP(up_bf16(&b, &d_out, NULL, n));
	if (!backward) { // (B,T,H,D) -> rotated (B,H,T,D) -> (B,T,H,D)
		STEP(fl_k_rope_permute_forward(d_tmp, d_in, d_cs, B, T, H, D, 1, 0));
		STEP(fl_k_bhtd_to_bthd(d_out, d_tmp, B, T, H, D, 0));
	} else { // (B,T,H,D) -> (B,H,T,D) -> rotated back (B,T,H,D)
		STEP(fl_k_bthd_to_bhtd(d_tmp, d_in, B, T, H, D, 0));
		STEP(fl_k_rope_permute_backward(d_out, d_tmp, d_cs, B, T, H, D, 1, 0));
	}
	STEP(down_bf16(x, d_out, n, 0));
fail:
	free(cs);
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_rope_forward(float *x, int B, int T, int H, int D,
                                          const float *inv_freq)
{
	return rope_common(x, B, T, H, D, inv_freq, 0);
}

extern "C" int model_cuda_op_rope_backward(float *dx, int B, int T, int H, int D,
                                           const float *inv_freq)
{
	return rope_common(dx, B, T, H, D, inv_freq, 1);
}

static int up_rope_table(bufs *b, float2 **d_cs, int T, int D, const float *inv_freq)
{
	int rv = 0;
	size_t nt = (size_t)T * (D / 2);
	float2 *cs = (float2 *)malloc(nt * sizeof *cs);
	if (!cs)
		return FL_ENOMEM;
	fl_rope_table(cs, T, D, inv_freq);
	STEP(dalloc(b, (void **)d_cs, nt * sizeof *cs));
	CU_TRY(cudaMemcpy(*d_cs, cs, nt * sizeof *cs, cudaMemcpyHostToDevice));
fail:
	free(cs);
	return rv;
}

extern "C" int model_cuda_op_qkv_rope_forward(float *q, float *k, float *v, const float *qkv,
                                              int ld, const float *bias, int B, int T, int Hq,
                                              int Hkv, int D, const float *inv_freq)
{
	int rv = 0;
	bufs b = {};
	size_t N = (size_t)B * T, nq = N * Hq * D, nk = N * Hkv * D;
	bf16 *d_in, *d_bias = NULL, *d_q, *d_k, *d_v, *o_q, *o_k, *o_v;
	float2 *d_cs;
	STEP(up_rope_table(&b, &d_cs, T, D, inv_freq));
	STEP(up_bf16(&b, &d_in, qkv, N * ld));
	if (bias)
		STEP(up_bf16(&b, &d_bias, bias, (size_t)(Hq + 2 * Hkv) * D));
	STEP(up_bf16(&b, &d_q, NULL, nq));
	STEP(up_bf16(&b, &d_k, NULL, nk));
	STEP(up_bf16(&b, &d_v, NULL, nk));
	STEP(up_bf16(&b, &o_q, NULL, nq));
	STEP(up_bf16(&b, &o_k, NULL, nk));
	STEP(up_bf16(&b, &o_v, NULL, nk));
	STEP(fl_k_qkv_rope_forward(d_q, d_k, d_v, d_in, ld, d_bias, d_cs, B, T, Hq, Hkv, D, 0));
	/* back to (B,T,H,D), the CPU's layout */
	STEP(fl_k_bhtd_to_bthd(o_q, d_q, B, T, Hq, D, 0));
	STEP(fl_k_bhtd_to_bthd(o_k, d_k, B, T, Hkv, D, 0));
	STEP(fl_k_bhtd_to_bthd(o_v, d_v, B, T, Hkv, D, 0));
	STEP(down_bf16(q, o_q, nq, 0));
	STEP(down_bf16(k, o_k, nk, 0));
	STEP(down_bf16(v, o_v, nk, 0));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_qkv_rope_backward(float *dqkv, int ld, const float *dq,
                                               const float *dk, const float *dv, int B, int T,
                                               int Hq, int Hkv, int D, const float *inv_freq)
{
	int rv = 0;
	bufs b = {};
	size_t N = (size_t)B * T, nq = N * Hq * D, nk = N * Hkv * D;
	bf16 *d_out, *t_q, *t_k, *t_v, *d_q, *d_k, *d_v;
	float2 *d_cs;
	STEP(up_rope_table(&b, &d_cs, T, D, inv_freq));
	STEP(up_bf16(&b, &d_out, dqkv, N * ld)); /* columns past the heads must survive */
	STEP(up_bf16(&b, &t_q, dq, nq));
	STEP(up_bf16(&b, &t_k, dk, nk));
	STEP(up_bf16(&b, &t_v, dv, nk));
	STEP(up_bf16(&b, &d_q, NULL, nq));
	STEP(up_bf16(&b, &d_k, NULL, nk));
	STEP(up_bf16(&b, &d_v, NULL, nk));
	STEP(fl_k_bthd_to_bhtd(d_q, t_q, B, T, Hq, D, 0));
	STEP(fl_k_bthd_to_bhtd(d_k, t_k, B, T, Hkv, D, 0));
	STEP(fl_k_bthd_to_bhtd(d_v, t_v, B, T, Hkv, D, 0));
	STEP(fl_k_qkv_rope_backward(d_out, ld, d_q, d_k, d_v, d_cs, B, T, Hq, Hkv, D, 0));
	STEP(down_bf16(dqkv, d_out, N * ld, 0));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_qkv_headnorm_forward(float *rows, int ld, const float *bias,
                                                  float *qpre, float *kpre, float *rstdq,
                                                  float *rstdk, const float *wq, const float *wk,
                                                  int N, int Hq, int Hkv, int D, float eps)
{
	int rv = 0;
	bufs b = {};
	size_t nq = (size_t)N * Hq * D, nk = (size_t)N * Hkv * D;
	bf16 *d_rows, *d_bias = NULL, *d_qp, *d_kp, *d_wq, *d_wk;
	float *d_rq, *d_rk;
	STEP(up_bf16(&b, &d_rows, rows, (size_t)N * ld));
	if (bias)
		STEP(up_bf16(&b, &d_bias, bias, (size_t)(Hq + 2 * Hkv) * D));
	STEP(up_bf16(&b, &d_qp, NULL, nq));
	STEP(up_bf16(&b, &d_kp, NULL, nk));
	STEP(up_f32(&b, &d_rq, NULL, (size_t)N * Hq));
	STEP(up_f32(&b, &d_rk, NULL, (size_t)N * Hkv));
	STEP(up_bf16(&b, &d_wq, wq, D));
	STEP(up_bf16(&b, &d_wk, wk, D));
	STEP(fl_k_qkv_headnorm_forward(d_rows, ld, d_bias, d_qp, d_kp, d_rq, d_rk, d_wq, d_wk, N,
	                               Hq, Hkv, D, eps, 0));
	STEP(down_bf16(rows, d_rows, (size_t)N * ld, 0));
	STEP(down_bf16(qpre, d_qp, nq, 0));
	STEP(down_bf16(kpre, d_kp, nk, 0));
	STEP(down_f32(rstdq, d_rq, (size_t)N * Hq));
	STEP(down_f32(rstdk, d_rk, (size_t)N * Hkv));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_qkv_headnorm_backward(float *drows, int ld, float *dwq, float *dwk,
                                                   const float *qpre, const float *kpre,
                                                   const float *wq, const float *wk,
                                                   const float *rstdq, const float *rstdk, int N,
                                                   int Hq, int Hkv, int D)
{
	int rv = 0;
	bufs b = {};
	size_t nq = (size_t)N * Hq * D, nk = (size_t)N * Hkv * D;
	bf16 *d_rows, *d_qp, *d_kp, *d_wq, *d_wk;
	float *d_rq, *d_rk, *d_dwq = NULL, *d_dwk = NULL;
	if ((dwq == NULL) != (dwk == NULL))
		return FL_EINVAL;
	STEP(up_bf16(&b, &d_rows, drows, (size_t)N * ld));
	STEP(up_bf16(&b, &d_qp, qpre, nq));
	STEP(up_bf16(&b, &d_kp, kpre, nk));
	STEP(up_bf16(&b, &d_wq, wq, D));
	STEP(up_bf16(&b, &d_wk, wk, D));
	STEP(up_f32(&b, &d_rq, rstdq, (size_t)N * Hq));
	STEP(up_f32(&b, &d_rk, rstdk, (size_t)N * Hkv));
	if (dwq) {
		STEP(up_f32(&b, &d_dwq, dwq, D));
		STEP(up_f32(&b, &d_dwk, dwk, D));
	}
	STEP(fl_k_qkv_headnorm_backward(d_rows, ld, d_dwq, d_dwk, d_qp, d_kp, d_wq, d_wk, d_rq,
	                                d_rk, N, Hq, Hkv, D, 0));
	STEP(down_bf16(drows, d_rows, (size_t)N * ld, 0));
	if (dwq) {
		STEP(down_f32(dwq, d_dwq, D));
		STEP(down_f32(dwk, d_dwk, D));
	}
fail:
	bufs_free(&b);
	return rv;
}

/* q (B,T,Hq,D), k, v (B,T,Hkv,D) host -> device (B,H,T,D) bf16. */
static int up_qkv(bufs *b, bf16 **dq, bf16 **dk, bf16 **dv, const float *q, const float *k,
                  const float *v, int B, int T, int Hq, int Hkv, int D)
{
	int rv = 0;
	bf16 *t;
	size_t nq = (size_t)B * T * Hq * D, nk = (size_t)B * T * Hkv * D;
	STEP(up_bf16(b, &t, q, nq));
	STEP(up_bf16(b, dq, NULL, nq));
	STEP(fl_k_bthd_to_bhtd(*dq, t, B, T, Hq, D, 0));
	STEP(up_bf16(b, &t, k, nk));
	STEP(up_bf16(b, dk, NULL, nk));
	STEP(fl_k_bthd_to_bhtd(*dk, t, B, T, Hkv, D, 0));
	STEP(up_bf16(b, &t, v, nk));
	STEP(up_bf16(b, dv, NULL, nk));
	STEP(fl_k_bthd_to_bhtd(*dv, t, B, T, Hkv, D, 0));
fail:
	return rv;
}

extern "C" int model_cuda_op_attention_forward(float *out, float *att, const float *q,
                                               const float *k, const float *v, int B, int T, int Hq,
                                               int Hkv, int D)
{
	int rv = 0;
	bufs b = {};
	bf16 *d_q, *d_k, *d_v, *d_o, *d_ot;
	fl_attn_scratch sc;
	size_t nq = (size_t)B * T * Hq * D, ns = (size_t)B * Hq * T * T;
	cublasHandle_t h;
	HANDLE_OR_FAIL(h);
	STEP(up_qkv(&b, &d_q, &d_k, &d_v, q, k, v, B, T, Hq, Hkv, D));
	STEP(up_bf16(&b, &d_o, NULL, nq));
	STEP(up_bf16(&b, &d_ot, NULL, nq));
	sc.bc = B; // one chunk: P ends up holding every probability (B,Hq,T,T)
	STEP(up_f32(&b, &sc.S, NULL, ns));
	STEP(up_bf16(&b, &sc.P, NULL, ns));
	STEP(fl_attention_forward(h, 0, d_o, d_q, d_k, d_v, B, T, Hq, Hkv, D, &sc));
	STEP(fl_k_bhtd_to_bthd(d_ot, d_o, B, T, Hq, D, 0));
	STEP(down_bf16(out, d_ot, nq, 0));
	if (att)
		STEP(down_bf16(att, sc.P, ns, 0));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                                const float *q, const float *k, const float *v,
                                                int B, int T, int Hq, int Hkv, int D)
{
	int rv = 0;
	bufs b = {};
	bf16 *d_q, *d_k, *d_v, *d_do, *d_dot, *g_q, *g_k, *g_v, *o_q, *o_k, *o_v;
	fl_attn_scratch sc;
	size_t nq = (size_t)B * T * Hq * D, nk = (size_t)B * T * Hkv * D;
	size_t ns = (size_t)B * Hq * T * T;
	cublasHandle_t h;
	HANDLE_OR_FAIL(h);
	STEP(up_qkv(&b, &d_q, &d_k, &d_v, q, k, v, B, T, Hq, Hkv, D));
	STEP(up_bf16(&b, &d_dot, dout, nq));
	STEP(up_bf16(&b, &d_do, NULL, nq));
	STEP(fl_k_bthd_to_bhtd(d_do, d_dot, B, T, Hq, D, 0));
	STEP(up_bf16(&b, &g_q, NULL, nq));
	STEP(up_bf16(&b, &g_k, NULL, nk));
	STEP(up_bf16(&b, &g_v, NULL, nk));
	STEP(up_bf16(&b, &o_q, NULL, nq));
	STEP(up_bf16(&b, &o_k, NULL, nk));
	STEP(up_bf16(&b, &o_v, NULL, nk));
	sc.bc = B > 1 ? B / 2 : 1; // two chunks when B > 1: exercises the chunk loop
	STEP(up_f32(&b, &sc.S, NULL, ns));
	STEP(up_bf16(&b, &sc.P, NULL, ns));
	STEP(
	    fl_attention_backward(h, 0, g_q, g_k, g_v, d_do, d_q, d_k, d_v, B, T, Hq, Hkv, D, &sc));
	STEP(fl_k_bhtd_to_bthd(o_q, g_q, B, T, Hq, D, 0));
	STEP(fl_k_bhtd_to_bthd(o_k, g_k, B, T, Hkv, D, 0));
	STEP(fl_k_bhtd_to_bthd(o_v, g_v, B, T, Hkv, D, 0));
	STEP(down_bf16(dq, o_q, nq, 1));
	STEP(down_bf16(dk, o_k, nk, 1));
	STEP(down_bf16(dv, o_v, nk, 1));
fail:
	bufs_free(&b);
	return rv;
}

static int flash_common(float *out, float *dq, float *dk, float *dv, const float *dout,
                        const float *q, const float *k, const float *v, int B, int T, int Hq,
                        int Hkv, int D)
{
	int rv = 0;
	bufs b = {};
	bf16 *d_q, *d_k, *d_v, *d_ot, *d_dot, *g_q, *g_k, *g_v, *o_q, *o_k, *o_v;
	float *lse, *delta;
	size_t nq = (size_t)B * T * Hq * D, nk = (size_t)B * T * Hkv * D;
	if (!fl_flash_supported(D))
		return FL_ENOTSUP;
	STEP(up_qkv(&b, &d_q, &d_k, &d_v, q, k, v, B, T, Hq, Hkv, D));
	STEP(up_bf16(&b, &d_ot, NULL, nq));
	STEP(up_f32(&b, &lse, NULL, (size_t)B * Hq * T));
	STEP(up_f32(&b, &delta, NULL, (size_t)B * Hq * T));
	STEP(fl_flash_forward(d_ot, lse, d_q, d_k, d_v, B, T, Hq, Hkv, D, 0)); /* o (B,T,Hq,D) */
	if (out) {
		STEP(down_bf16(out, d_ot, nq, 0));
		goto fail; /* done */
	}
	STEP(up_bf16(&b, &d_dot, dout, nq));
	STEP(up_bf16(&b, &g_q, NULL, nq));
	STEP(up_bf16(&b, &g_k, NULL, nk));
	STEP(up_bf16(&b, &g_v, NULL, nk));
	STEP(fl_flash_backward(g_q, g_k, g_v, delta, d_dot, d_ot, d_q, d_k, d_v, lse, B, T, Hq, Hkv,
	                       D, 0));
	STEP(up_bf16(&b, &o_q, NULL, nq));
	STEP(up_bf16(&b, &o_k, NULL, nk));
	STEP(up_bf16(&b, &o_v, NULL, nk));
	STEP(fl_k_bhtd_to_bthd(o_q, g_q, B, T, Hq, D, 0));
	STEP(fl_k_bhtd_to_bthd(o_k, g_k, B, T, Hkv, D, 0));
	STEP(fl_k_bhtd_to_bthd(o_v, g_v, B, T, Hkv, D, 0));
	STEP(down_bf16(dq, o_q, nq, 1));
	STEP(down_bf16(dk, o_k, nk, 1));
	STEP(down_bf16(dv, o_v, nk, 1));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_flash_attention_forward(float *out, const float *q, const float *k,
                                                     const float *v, int B, int T, int Hq, int Hkv,
                                                     int D)
{
	return flash_common(out, NULL, NULL, NULL, NULL, q, k, v, B, T, Hq, Hkv, D);
}

extern "C" int model_cuda_op_flash_attention_backward(float *dq, float *dk, float *dv,
                                                      const float *dout, const float *q,
                                                      const float *k, const float *v, int B, int T,
                                                      int Hq, int Hkv, int D)
{
	return flash_common(NULL, dq, dk, dv, dout, q, k, v, B, T, Hq, Hkv, D);
}

extern "C" int model_cuda_op_swiglu_forward(float *out, const float *gate, const float *up, int N)
{
	int rv = 0;
	bufs b = {};
	bf16 *d_g, *d_u, *d_o;
	STEP(up_bf16(&b, &d_g, gate, N));
	STEP(up_bf16(&b, &d_u, up, N));
	STEP(up_bf16(&b, &d_o, NULL, N));
	STEP(fl_k_swiglu_forward(d_o, d_g, d_u, N, 0));
	STEP(down_bf16(out, d_o, N, 0));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_swiglu_backward(float *dgate, float *dup, const float *dout,
                                             const float *gate, const float *up, int N)
{
	int rv = 0;
	bufs b = {};
	bf16 *d_g, *d_u, *d_do, *d_dg, *d_du;
	STEP(up_bf16(&b, &d_g, gate, N));
	STEP(up_bf16(&b, &d_u, up, N));
	STEP(up_bf16(&b, &d_do, dout, N));
	STEP(up_bf16(&b, &d_dg, NULL, N));
	STEP(up_bf16(&b, &d_du, NULL, N));
	STEP(fl_k_swiglu_backward(d_dg, d_du, d_do, d_g, d_u, N, 0));
	STEP(down_bf16(dgate, d_dg, N, 1));
	STEP(down_bf16(dup, d_du, N, 1));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_swiglu_gu_forward(float *out, const float *gu, int rows, int I)
{
	int rv = 0;
	bufs b = {};
	bf16 *d_gu, *d_o;
	STEP(up_bf16(&b, &d_gu, gu, (size_t)rows * 2 * I));
	STEP(up_bf16(&b, &d_o, NULL, (size_t)rows * I));
	STEP(fl_k_swiglu_gu_forward(d_o, d_gu, rows, I, 0));
	STEP(down_bf16(out, d_o, (size_t)rows * I, 0));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_swiglu_gu_backward(float *dgu, const float *dout, const float *gu,
                                                int rows, int I)
{
	int rv = 0;
	bufs b = {};
	bf16 *d_gu, *d_do, *d_dgu;
	STEP(up_bf16(&b, &d_gu, gu, (size_t)rows * 2 * I));
	STEP(up_bf16(&b, &d_do, dout, (size_t)rows * I));
	STEP(up_bf16(&b, &d_dgu, NULL, (size_t)rows * 2 * I));
	STEP(fl_k_swiglu_gu_backward(d_dgu, d_do, d_gu, rows, I, 0));
	STEP(down_bf16(dgu, d_dgu, (size_t)rows * 2 * I, 0));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_lora_forward_ld(float *out, int ldo, float *xa, const float *x,
                                             const float *A, const float *B, int N, int IN, int OUT,
                                             int r, float scale)
{
	int rv = 0;
	bufs b = {};
	bf16 *d_x, *d_A, *d_B, *d_xa;
	float *d_o;
	cublasHandle_t h;
	HANDLE_OR_FAIL(h);
	STEP(up_f32(&b, &d_o, out, (size_t)N * ldo));
	STEP(up_bf16(&b, &d_x, x, (size_t)N * IN));
	STEP(up_bf16(&b, &d_A, A, (size_t)r * IN));
	STEP(up_bf16(&b, &d_B, B, (size_t)OUT * r));
	STEP(up_bf16(&b, &d_xa, NULL, (size_t)N * r));
	STEP(
	    fl_lora_forward_ld(h, d_x, IN, d_o, CUDA_R_32F, OUT, ldo, d_xa, d_A, d_B, N, r, scale));
	STEP(down_f32(out, d_o, (size_t)N * ldo));
	STEP(down_bf16(xa, d_xa, (size_t)N * r, 0));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_lora_backward_ld(float *dx, float *dA, float *dB, const float *dout,
                                              int ldd, const float *x, const float *xa,
                                              const float *A, const float *B, int N, int IN,
                                              int OUT, int r, float scale)
{
	int rv = 0;
	bufs b = {};
	bf16 *d_do, *d_x, *d_xa, *d_A, *d_B, *d_dxa;
	float *d_dx = NULL, *d_dA = NULL, *d_dB = NULL;
	cublasHandle_t h;
	HANDLE_OR_FAIL(h);
	STEP(up_bf16(&b, &d_do, dout, (size_t)N * ldd));
	STEP(up_bf16(&b, &d_x, x, (size_t)N * IN));
	STEP(up_bf16(&b, &d_xa, xa, (size_t)N * r));
	STEP(up_bf16(&b, &d_A, A, (size_t)r * IN));
	STEP(up_bf16(&b, &d_B, B, (size_t)OUT * r));
	STEP(up_bf16(&b, &d_dxa, NULL, (size_t)N * r));
	if (dx)
		STEP(up_f32(&b, &d_dx, dx, (size_t)N * IN));
	if (dA)
		STEP(up_f32(&b, &d_dA, dA, (size_t)r * IN));
	if (dB)
		STEP(up_f32(&b, &d_dB, dB, (size_t)OUT * r));
	STEP(fl_lora_backward_ld(h, d_dx, CUDA_R_32F, d_dA, d_dB, d_do, ldd, d_x, d_xa, d_A, d_B,
	                         d_dxa, N, IN, OUT, r, scale, 0, 0, 0));
	if (dx)
		STEP(down_f32(dx, d_dx, (size_t)N * IN));
	if (dA)
		STEP(down_f32(dA, d_dA, (size_t)r * IN));
	if (dB)
		STEP(down_f32(dB, d_dB, (size_t)OUT * r));
fail:
	bufs_free(&b);
	return rv;
}

/* Both cross-entropy twins: f32 logits with a separate bf16 gradient, or
 * bf16 logits overwritten by their gradient in place (the training head). */
static float crossentropy_common(float *logits_to_dlogits, float *losses, const int *targets, int N,
                                 int V, float dscale, int bf16_logits, int *rc)
{
	int rv = 0;
	bufs b = {};
	float *d_l = NULL, *d_loss, total = 0.f;
	int *d_t, *d_c;
	bf16 *d_dl;
	if (bf16_logits) {
		STEP(up_bf16(&b, &d_dl, logits_to_dlogits, (size_t)N * V));
	} else {
		STEP(up_f32(&b, &d_l, logits_to_dlogits, (size_t)N * V));
		STEP(up_bf16(&b, &d_dl, NULL, (size_t)N * V));
	}
	STEP(up_f32(&b, &d_loss, NULL, N));
	STEP(up_i32(&b, &d_t, targets, N));
	STEP(dalloc(&b, (void **)&d_c, (size_t)N * 4));
	if (bf16_logits)
		STEP(fl_k_crossentropy_bf16(d_dl, d_loss, d_c, d_dl, d_t, NULL, dscale, N, V, 0));
	else
		STEP(fl_k_crossentropy(d_dl, d_loss, d_c, d_l, d_t, NULL, dscale, N, V, 0));
	STEP(down_bf16(logits_to_dlogits, d_dl, (size_t)N * V, 0));
	STEP(down_f32(losses, d_loss, N));
	{
		double t = 0;
		for (int i = 0; i < N; i++)
			if (targets[i] >= 0)
				t += losses[i];
		total = (float)t;
	}
fail:
	bufs_free(&b);
	if (rc)
		*rc = rv;
	return total;
}

extern "C" float model_cuda_op_crossentropy_bf16_forward_backward(float *logits_to_dlogits,
                                                                  float *losses, const int *targets,
                                                                  int N, int V, float dscale,
                                                                  int *rc)
{
	return crossentropy_common(logits_to_dlogits, losses, targets, N, V, dscale, 1, rc);
}

extern "C" float model_cuda_op_crossentropy_forward_backward(float *logits_to_dlogits,
                                                             float *losses, const int *targets,
                                                             int N, int V, float dscale, int *rc)
{
	return crossentropy_common(logits_to_dlogits, losses, targets, N, V, dscale, 0, rc);
}

extern "C" int model_cuda_op_adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                                          float lr, float b1, float b2, float eps, float wd, int t)
{
	int rv = 0;
	bufs b = {};
	float *d_p, *d_g, *d_m, *d_v;
	float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
	STEP(up_f32(&b, &d_p, p, n));
	STEP(up_f32(&b, &d_g, g, n));
	STEP(up_f32(&b, &d_m, m, n));
	STEP(up_f32(&b, &d_v, v, n));
	STEP(fl_k_adamw(d_p, d_g, d_m, d_v, n, lr, b1, b2, eps, wd, c1, c2, 0));
	STEP(down_f32(p, d_p, n));
	STEP(down_f32(m, d_m, n));
	STEP(down_f32(v, d_v, n));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_sgd_update(float *p, const float *g, float *mom, size_t n, float lr,
                                        float momentum, float wd)
{
	int rv = 0;
	bufs b = {};
	float *d_p, *d_g, *d_m = NULL;
	STEP(up_f32(&b, &d_p, p, n));
	STEP(up_f32(&b, &d_g, g, n));
	if (mom)
		STEP(up_f32(&b, &d_m, mom, n));
	STEP(fl_k_sgd(d_p, d_g, d_m, n, lr, mom ? momentum : 0.f, wd, 0));
	STEP(down_f32(p, d_p, n));
	if (mom)
		STEP(down_f32(mom, d_m, n));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_clip_reduce(float *out, const float *g, int nb, size_t P, double C,
                                         double expected_batch)
{
	int rv = 0;
	bufs b = {};
	float *d_g, *d_o, *d_n;
	STEP(up_f32(&b, &d_g, g, (size_t)nb * P));
	STEP(up_f32(&b, &d_o, NULL, P));
	STEP(up_f32(&b, &d_n, NULL, nb > 0 ? nb : 1));
	STEP(fl_k_row_sumsq(d_n, d_g, nb, P, 0));
	STEP(fl_k_clip_accumulate(d_o, d_g, d_n, nb, P, (float)C, 0));
	STEP(fl_k_add_noise_scale(d_o, P, 1, 0, 0.0, 1.0 / expected_batch, 0));
	STEP(down_f32(out, d_o, P));
fail:
	bufs_free(&b);
	return rv;
}

extern "C" int model_cuda_op_noise(float *out, size_t n, uint64_t key, uint64_t ctr, double std)
{
	int rv = 0;
	bufs b = {};
	float *d_o;
	STEP(up_f32(&b, &d_o, NULL, n));
	STEP(fl_k_add_noise_scale(d_o, n, key, ctr, std, 1.0, 0));
	STEP(down_f32(out, d_o, n));
fail:
	bufs_free(&b);
	return rv;
}
