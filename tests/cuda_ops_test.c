/*
 * tests/cuda_ops_test.c — every CUDA kernel of the trainer against its CPU
 * twin in model/ops.h (forward and backward), on small random shapes; the
 * biases and the per-head q/k norm of the Qwen families included.
 *
 * Inputs are rounded to bf16 before the CPU reference sees them, so the
 * comparison measures only what the GPU path adds: bf16 storage of outputs and
 * intermediates (one rounding is 2^-8 relative, hence rtol 1e-2 for bf16
 * outputs and 2-3e-2 where two roundings compound), f32 accumulation order,
 * and f32 versus double in reductions. Each comparison prints, per tensor, the
 * element count, max abs error, max relative error and the worst element, so
 * one run on the GPU machine tells what is wrong. Criterion per element:
 * |gpu - cpu| <= atol + rtol * |cpu|.
 *
 * The fused kernels of the GPU model's default path (FEDLORA_FUSE, on unless
 * set to 0) have cases of their own, each against the composition of
 * model/ops.h functions it replaces: RMSNorm writing the residual copy, the
 * merged q/k/v split with bias and rotary, Qwen3's q/k norm on the merged
 * rows (with the bias), SwiGLU on merged gate|up rows,
 * LoRA into a merged projection's columns, and the cross-entropy on bf16
 * logits overwritten by their gradient.
 *
 * Without a usable GPU (or in a build without CUDA) every case reports
 * "skip - NAME: no CUDA device" (not a pass).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "model/ops.h"
#include "privacy/dp.h"
#include "privacy/noise.h"
#include "tests/test.h"
#ifdef FL_HAVE_CUDA
#include "model/cuda/cuda.h"
#endif

static char gpu_why[200];

static int gpu_ok(void)
{
#ifdef FL_HAVE_CUDA
	static int state = -1;
	if (state < 0)
		state = model_cuda_probe(gpu_why, sizeof gpu_why) == 0;
	return state;
#else
	snprintf(gpu_why, sizeof gpu_why, "this build has no CUDA support");
	return 0;
#endif
}

#define NEED_GPU()                                                                                 \
	do {                                                                                       \
		if (!gpu_ok())                                                                     \
			TEST_SKIP("no CUDA device (%s)", gpu_why);                                 \
	} while (0)

#ifdef FL_HAVE_CUDA

static float bf16r(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u += 0x7fffu + ((u >> 16) & 1u);
	u &= 0xffff0000u;
	memcpy(&f, &u, 4);
	return f;
}

/* n values std * N(0,1), rounded to bf16 (what the GPU will hold). */
static float *randn(fl_rng *r, size_t n, double std)
{
	float *x = malloc(n * sizeof *x + 4);
	for (size_t i = 0; i < n; i++)
		x[i] = bf16r((float)(std * fl_rng_normal(r)));
	return x;
}

static float *zeros(size_t n)
{
	return calloc(n + 1, sizeof(float));
}

static float *dup(const float *x, size_t n)
{
	float *y = malloc(n * sizeof *y + 4);
	memcpy(y, x, n * sizeof *y);
	return y;
}

/* Prints the error statistics of got vs ref; returns 1 when every element is
 * within atol + rtol * |ref|. */
static int near(const char *what, const float *got, const float *ref, size_t n, double atol,
                double rtol)
{
	double maxabs = 0, maxrel = 0;
	size_t worst = 0, bad = 0;
	double worst_excess = -1;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - ref[i]);
		double rel = d / (fabs(ref[i]) > 1e-12 ? fabs(ref[i]) : 1e-12);
		double lim = atol + rtol * fabs(ref[i]);
		if (!(d <= lim))
			bad++;
		if (d > maxabs)
			maxabs = d;
		if (fabs(ref[i]) > atol && rel > maxrel)
			maxrel = rel;
		double ex = isnan(d) ? 1e300 : d - lim;
		if (ex > worst_excess) {
			worst_excess = ex;
			worst = i;
		}
	}
	fprintf(
	    stderr,
	    "  %-28s n=%-7zu max_abs=%.3g max_rel(|ref|>atol)=%.3g worst[%zu] gpu=%.6g cpu=%.6g "
	    "(atol %g rtol %g) %s (%zu bad)\n",
	    what, n, maxabs, maxrel, worst, n ? got[worst] : 0.0, n ? ref[worst] : 0.0, atol, rtol,
	    bad ? "FAIL" : "ok", bad);
	return bad == 0;
}

static void test_embed(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 1, 1);
	int V = 50, N = 37, C = 24;
	float *w = randn(&r, (size_t)V * C, 1.0), *dout = randn(&r, (size_t)N * C, 1.0);
	int tok[37];
	for (int i = 0; i < N; i++)
		tok[i] = (int)fl_rng_below(&r, (uint64_t)V);
	tok[3] = tok[5]; /* a repeated token: the backward must add both rows */
	float *o1 = zeros((size_t)N * C), *o2 = zeros((size_t)N * C);
	model_embed_forward(o1, tok, w, N, C);
	CHECK_RC(model_cuda_op_embed_forward(o2, tok, w, V, N, C));
	CHECK(near("embed.out", o2, o1, (size_t)N * C, 0, 0));
	float *d1 = randn(&r, (size_t)V * C, 0.1), *d2 = dup(d1, (size_t)V * C);
	model_embed_backward(d1, dout, tok, N, C);
	CHECK_RC(model_cuda_op_embed_backward(d2, dout, tok, V, N, C));
	CHECK(near("embed.dwte", d2, d1, (size_t)V * C, 1e-6, 1e-6));
	free(w), free(dout), free(o1), free(o2), free(d1), free(d2);
}

static void test_rmsnorm(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 2, 1);
	int N = 33, C = 96;
	float eps = 1e-5f;
	float *x = randn(&r, (size_t)N * C, 2.0), *w = randn(&r, C, 1.0);
	float *dout = randn(&r, (size_t)N * C, 1.0);
	float *o1 = zeros((size_t)N * C), *o2 = zeros((size_t)N * C), *r1 = zeros(N),
	      *r2 = zeros(N);
	model_rmsnorm_forward(o1, r1, x, w, N, C, eps);
	CHECK_RC(model_cuda_op_rmsnorm_forward(o2, r2, x, w, N, C, eps));
	CHECK(near("rmsnorm.out (bf16)", o2, o1, (size_t)N * C, 1e-2, 1e-2));
	CHECK(near("rmsnorm.rstd", r2, r1, N, 0, 1e-5));
	float *dx1 = randn(&r, (size_t)N * C, 0.1), *dx2 = dup(dx1, (size_t)N * C);
	float *dw1 = zeros(C), *dw2 = zeros(C);
	model_rmsnorm_backward(dx1, dw1, dout, x, w, r1, N, C);
	CHECK_RC(model_cuda_op_rmsnorm_backward(dx2, dw2, dout, x, w, r1, N, C));
	CHECK(near("rmsnorm.dx", dx2, dx1, (size_t)N * C, 1e-4, 1e-3));
	CHECK(near("rmsnorm.dw", dw2, dw1, C, 1e-4, 1e-3));
	free(x), free(w), free(dout), free(o1), free(o2), free(r1), free(r2), free(dx1), free(dx2),
	    free(dw1), free(dw2);
}

/* The linear biases of Qwen2 (q/k/v, bf16 outputs) and Llama's
 * attention_bias o_proj (f32 residual); the backward over more rows than
 * one chunk of the column sums. */
static void test_bias(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 20, 1);
	int N = 600, OUT = 40;
	size_t n = (size_t)N * OUT;
	float *b = randn(&r, OUT, 1.0), *y = randn(&r, n, 1.0), *dout = randn(&r, n, 1.0);
	float *y1 = dup(y, n), *y2 = dup(y, n), *y3 = dup(y, n);
	model_bias_forward(y1, b, N, OUT);
	CHECK_RC(model_cuda_op_bias_forward(y2, b, N, OUT, 1));
	CHECK(near("bias.out (bf16)", y2, y1, n, 1e-2, 1e-2));
	CHECK_RC(model_cuda_op_bias_forward(y3, b, N, OUT, 0));
	CHECK(near("bias.out (f32)", y3, y1, n, 1e-6, 1e-6));
	float *db1 = randn(&r, OUT, 0.1), *db2 = dup(db1, OUT);
	model_bias_backward(db1, dout, N, OUT);
	CHECK_RC(model_cuda_op_bias_backward(db2, dout, N, OUT));
	CHECK(near("bias.db", db2, db1, OUT, 1e-4, 1e-4));
	free(b), free(y), free(dout), free(y1), free(y2), free(y3), free(db1), free(db2);
}

/* Qwen3's q/k norm: RMSNorm over rows of head_dim on bf16 tensors, against
 * model_rmsnorm_* over the same rows; the backward runs in place. The
 * weight gradient is summed per block (8 warps, one row each at a time)
 * over a grid of at most 512 blocks: with 12325 rows every warp loops over
 * 3 rows and 37 of them over a 4th, and dw starts nonzero (+=), so a slip in
 * the block reduction (a lost warp or pass, a row counted twice, a missing
 * barrier) shows in dw. */
static void test_headnorm(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 21, 1);
	static const int dims[] = {16, 64, 128};
	for (int i = 0; i < 3; i++) {
		int rows = 3 * 512 * 8 + 37, D = dims[i];
		size_t n = (size_t)rows * D;
		float eps = 1e-6f;
		float *x = randn(&r, n, 3.0), *w = randn(&r, D, 1.0), *dout = randn(&r, n, 1.0);
		float *o1 = zeros(n), *o2 = zeros(n), *r1 = zeros(rows), *r2 = zeros(rows);
		model_rmsnorm_forward(o1, r1, x, w, rows, D, eps);
		CHECK_RC(model_cuda_op_headnorm_forward(o2, r2, x, w, rows, D, eps));
		CHECK(near("headnorm.out (bf16)", o2, o1, n, 1e-2, 1e-2));
		CHECK(near("headnorm.rstd", r2, r1, rows, 0, 1e-5));
		float *dx1 = randn(&r, n, 0.1), *dx2 = dup(dx1, n);
		float *dw1 = randn(&r, D, 1.0), *dw2 = dup(dw1, D);
		char what[64];
		model_rmsnorm_backward(dx1, dw1, dout, x, w, r1, rows, D);
		CHECK_RC(model_cuda_op_headnorm_backward(dx2, dw2, dout, x, w, r1, rows, D));
		snprintf(what, sizeof what, "headnorm.dx D%d (bf16)", D);
		CHECK(near(what, dx2, dx1, n, 2e-2, 2e-2));
		/* f32 sums of 12325 terms of about 1 each (the CPU's running sum
		 * alone drifts by ~1e-3); one row lost or counted twice moves an
		 * element by about 1 */
		snprintf(what, sizeof what, "headnorm.dw D%d (%d rows)", D, rows);
		CHECK(near(what, dw2, dw1, D, 5e-3, 1e-4));
		free(x), free(w), free(dout), free(o1), free(o2), free(r1), free(r2), free(dx1),
		    free(dx2), free(dw1), free(dw2);
	}
}

static void test_matmul(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 3, 1);
	int N = 70, IN = 96, OUT = 40;
	float *x = randn(&r, (size_t)N * IN, 1.0), *w = randn(&r, (size_t)OUT * IN, 0.1);
	float *dout = randn(&r, (size_t)N * OUT, 1.0);
	float *o1 = zeros((size_t)N * OUT), *o2 = zeros((size_t)N * OUT);
	model_matmul_forward(o1, x, w, N, IN, OUT);
	CHECK_RC(model_cuda_op_matmul_forward(o2, x, w, N, IN, OUT));
	CHECK(near("matmul.out (bf16)", o2, o1, (size_t)N * OUT, 1e-2, 1e-2));
	float *dx1 = randn(&r, (size_t)N * IN, 0.1), *dx2 = dup(dx1, (size_t)N * IN);
	float *dw1 = zeros((size_t)OUT * IN), *dw2 = zeros((size_t)OUT * IN);
	model_matmul_backward(dx1, dw1, dout, x, w, N, IN, OUT);
	CHECK_RC(model_cuda_op_matmul_backward(dx2, dw2, dout, x, w, N, IN, OUT));
	CHECK(near("matmul.dx", dx2, dx1, (size_t)N * IN, 1e-4, 1e-3));
	CHECK(near("matmul.dw", dw2, dw1, (size_t)OUT * IN, 1e-3, 1e-3));
	free(x), free(w), free(dout), free(o1), free(o2), free(dx1), free(dx2), free(dw1),
	    free(dw2);
}

static void test_lora(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 4, 1);
	int nex = 3, T = 10, N = nex * T, IN = 64, OUT = 48, rk = 8;
	float scale = 2.0f;
	float *x = randn(&r, (size_t)N * IN, 1.0), *A = randn(&r, (size_t)rk * IN, 0.1);
	float *B = randn(&r, (size_t)OUT * rk, 0.1), *dout = randn(&r, (size_t)N * OUT, 1.0);
	float *o1 = randn(&r, (size_t)N * OUT, 1.0), *o2 = dup(o1, (size_t)N * OUT);
	float *xa1 = zeros((size_t)N * rk), *xa2 = zeros((size_t)N * rk);
	model_lora_forward(o1, xa1, x, A, B, N, IN, OUT, rk, scale);
	CHECK_RC(model_cuda_op_lora_forward(o2, xa2, x, A, B, N, IN, OUT, rk, scale));
	CHECK(near("lora.xa (bf16)", xa2, xa1, (size_t)N * rk, 1e-2, 1e-2));
	CHECK(near("lora.out", o2, o1, (size_t)N * OUT, 1e-2, 1e-2));
	/* the backward takes the GPU's (bf16) xa on both sides */
	float *dx1 = randn(&r, (size_t)N * IN, 0.1), *dx2 = dup(dx1, (size_t)N * IN);
	float *dA1 = zeros((size_t)rk * IN), *dA2 = zeros((size_t)rk * IN);
	float *dB1 = zeros((size_t)OUT * rk), *dB2 = zeros((size_t)OUT * rk);
	model_lora_backward(dx1, dA1, dB1, dout, x, xa2, A, B, N, IN, OUT, rk, scale);
	CHECK_RC(
	    model_cuda_op_lora_backward(dx2, dA2, dB2, dout, x, xa2, A, B, N, IN, OUT, rk, scale));
	CHECK(near("lora.dB", dB2, dB1, (size_t)OUT * rk, 1e-3, 1e-3));
	/* dxa = scale * dout B is rounded to bf16 (|dxa| ~ 2 * 0.1 * sqrt(48) ~ 1.4, so
	 * ~2.7e-3 per element) and dA sums N = 30 such terms times x ~ 1: the rounding
	 * noise of one dA entry is ~ sqrt(30) * 2.7e-3 ~ 1.5e-2 rms, and the largest of
	 * 512 entries reaches ~3.5 rms. Hence atol 6e-2 (a wrong index or transpose
	 * gives errors of order |dA| ~ 8). */
	CHECK(near("lora.dA (dxa bf16)", dA2, dA1, (size_t)rk * IN, 6e-2, 2e-2));
	CHECK(near("lora.dx (dxa bf16)", dx2, dx1, (size_t)N * IN, 1e-2, 2e-2));
	/* per example: rows of (A grads | B grads) */
	size_t na = (size_t)rk * IN, nb = (size_t)OUT * rk, stride = na + nb;
	float *pe1 = zeros(nex * stride), *pe2 = zeros(nex * stride);
	model_lora_backward_per_example(NULL, pe1, pe1 + na, stride, dout, x, xa2, A, B, nex, T, IN,
	                                OUT, rk, scale);
	CHECK_RC(model_cuda_op_lora_backward_per_example(pe2, stride, 0, na, dout, x, xa2, A, B,
	                                                 nex, T, IN, OUT, rk, scale));
	CHECK(near("lora.per_example", pe2, pe1, nex * stride, 2e-2, 2e-2));
	/* B only (A frozen): the A blocks stay untouched */
	float *pe3 = zeros(nex * nb), *pe4 = zeros(nex * nb);
	model_lora_backward_per_example(NULL, NULL, pe3, nb, dout, x, xa2, A, B, nex, T, IN, OUT,
	                                rk, scale);
	CHECK_RC(model_cuda_op_lora_backward_per_example(pe4, nb, -1, 0, dout, x, xa2, A, B, nex, T,
	                                                 IN, OUT, rk, scale));
	CHECK(near("lora.per_example B only", pe4, pe3, nex * nb, 1e-3, 1e-3));
	free(x), free(A), free(B), free(dout), free(o1), free(o2), free(xa1), free(xa2), free(dx1),
	    free(dx2), free(dA1), free(dA2), free(dB1), free(dB2), free(pe1), free(pe2), free(pe3),
	    free(pe4);
}

static void test_rope(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 5, 1);
	int B = 2, T = 40, H = 3, D = 16;
	size_t n = (size_t)B * T * H * D;
	/* llama3 scaling with a short original context, so that the 8
	 * frequencies fall in all three bands (wavelengths 6.3 to 5e3 against 4
	 * and 16) and the table is the scaled one */
	model_rope_scaling sc = {MODEL_ROPE_LLAMA3, 8.0, 1.0, 4.0, 16};
	float inv[8];
	model_rope_inv_freq(inv, D, 10000.0f, &sc);
	float *x1 = randn(&r, n, 1.0), *x2 = dup(x1, n);
	model_rope_forward(x1, B, T, H, D, inv);
	CHECK_RC(model_cuda_op_rope_forward(x2, B, T, H, D, inv));
	CHECK(near("rope.fwd (bf16)", x2, x1, n, 1e-2, 1e-2));
	float *g1 = randn(&r, n, 1.0), *g2 = dup(g1, n);
	model_rope_backward(g1, B, T, H, D, inv);
	CHECK_RC(model_cuda_op_rope_backward(g2, B, T, H, D, inv));
	CHECK(near("rope.bwd (bf16)", g2, g1, n, 1e-2, 1e-2));
	free(x1), free(x2), free(g1), free(g2);
}

static void test_attention(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 6, 1);
	int B = 3, T = 24, Hq = 4, Hkv = 2, D = 16;
	size_t nq = (size_t)B * T * Hq * D, nk = (size_t)B * T * Hkv * D;
	size_t na = (size_t)B * Hq * T * T;
	float *q = randn(&r, nq, 1.0), *k = randn(&r, nk, 1.0), *v = randn(&r, nk, 1.0);
	float *dout = randn(&r, nq, 1.0);
	float *o1 = zeros(nq), *o2 = zeros(nq), *a1 = zeros(na), *a2 = zeros(na);
	model_attention_forward(o1, a1, q, k, v, B, T, Hq, Hkv, D);
	CHECK_RC(model_cuda_op_attention_forward(o2, a2, q, k, v, B, T, Hq, Hkv, D));
	CHECK(near("attention.probs (bf16)", a2, a1, na, 2e-3, 1e-2));
	CHECK(near("attention.out (bf16)", o2, o1, nq, 2e-2, 2e-2));
	float *dq1 = zeros(nq), *dq2 = zeros(nq), *dk1 = zeros(nk), *dk2 = zeros(nk);
	float *dv1 = zeros(nk), *dv2 = zeros(nk);
	model_attention_backward(dq1, dk1, dv1, dout, q, k, v, a1, B, T, Hq, Hkv, D);
	CHECK_RC(model_cuda_op_attention_backward(dq2, dk2, dv2, dout, q, k, v, B, T, Hq, Hkv, D));
	CHECK(near("attention.dv", dv2, dv1, nk, 3e-2, 3e-2));
	CHECK(near("attention.dq", dq2, dq1, nq, 3e-2, 3e-2));
	CHECK(near("attention.dk", dk2, dk1, nk, 3e-2, 3e-2));
	free(q), free(k), free(v), free(dout), free(o1), free(o2), free(a1), free(a2), free(dq1),
	    free(dq2), free(dk1), free(dk2), free(dv1), free(dv2);
}

/* The fused kernels against the CPU, on a T that is not a multiple of the
 * 64-row blocks and with GQA; then at the shape of the benchmarks' heads. */
static void flash_case(int B, int T, int Hq, int Hkv, int D, uint64_t seed)
{
	fl_rng r;
	fl_rng_init(&r, seed, 1);
	size_t nq = (size_t)B * T * Hq * D, nk = (size_t)B * T * Hkv * D;
	size_t na = (size_t)B * Hq * T * T;
	float *q = randn(&r, nq, 1.0), *k = randn(&r, nk, 1.0), *v = randn(&r, nk, 1.0);
	float *dout = randn(&r, nq, 1.0);
	float *o1 = zeros(nq), *o2 = zeros(nq), *a1 = zeros(na);
	float *dq1 = zeros(nq), *dq2 = zeros(nq), *dk1 = zeros(nk), *dk2 = zeros(nk);
	float *dv1 = zeros(nk), *dv2 = zeros(nk);
	char what[64];
	model_attention_forward(o1, a1, q, k, v, B, T, Hq, Hkv, D);
	model_attention_backward(dq1, dk1, dv1, dout, q, k, v, a1, B, T, Hq, Hkv, D);
	int rc = model_cuda_op_flash_attention_forward(o2, q, k, v, B, T, Hq, Hkv, D);
	if (rc == FL_ENOTSUP) {
		fprintf(stderr, "  flash attention not supported for D %d on this device\n", D);
		goto out;
	}
	CHECK_RC(rc);
	CHECK_RC(
	    model_cuda_op_flash_attention_backward(dq2, dk2, dv2, dout, q, k, v, B, T, Hq, Hkv, D));
	snprintf(what, sizeof what, "flash.out T%d D%d", T, D);
	CHECK(near(what, o2, o1, nq, 2e-2, 2e-2));
	snprintf(what, sizeof what, "flash.dq T%d D%d", T, D);
	CHECK(near(what, dq2, dq1, nq, 3e-2, 3e-2));
	snprintf(what, sizeof what, "flash.dk T%d D%d", T, D);
	CHECK(near(what, dk2, dk1, nk, 3e-2, 3e-2));
	snprintf(what, sizeof what, "flash.dv T%d D%d", T, D);
	CHECK(near(what, dv2, dv1, nk, 3e-2, 3e-2));
out:
	free(q), free(k), free(v), free(dout), free(o1), free(o2), free(a1), free(dq1), free(dq2),
	    free(dk1), free(dk2), free(dv1), free(dv2);
}

static void test_flash_attention(void)
{
	NEED_GPU();
	flash_case(3, 24, 4, 2, 16, 61);  /* one partial block */
	flash_case(2, 150, 4, 2, 16, 62); /* three blocks, the last partial */
	flash_case(1, 200, 6, 2, 64, 63); /* D 64, groups of 3 (like SmolLM's 9/3) */
}

static void test_swiglu(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 7, 1);
	int N = 1000;
	float *g = randn(&r, N, 2.0), *u = randn(&r, N, 1.0), *d = randn(&r, N, 1.0);
	float *o1 = zeros(N), *o2 = zeros(N);
	model_swiglu_forward(o1, g, u, N);
	CHECK_RC(model_cuda_op_swiglu_forward(o2, g, u, N));
	CHECK(near("swiglu.out (bf16)", o2, o1, N, 1e-3, 1e-2));
	float *dg1 = zeros(N), *dg2 = zeros(N), *du1 = zeros(N), *du2 = zeros(N);
	model_swiglu_backward(dg1, du1, d, g, u, N);
	CHECK_RC(model_cuda_op_swiglu_backward(dg2, du2, d, g, u, N));
	CHECK(near("swiglu.dgate (bf16)", dg2, dg1, N, 1e-3, 1e-2));
	CHECK(near("swiglu.dup (bf16)", du2, du1, N, 1e-3, 1e-2));
	free(g), free(u), free(d), free(o1), free(o2), free(dg1), free(dg2), free(du1), free(du2);
}

/* One cross-entropy comparison: V 3001 takes the scalar path, 3000 the
 * 16-byte groups; bf16_logits runs the training head's kernel, the logits
 * (bf16 values, so the CPU sees exactly what the GPU reads) overwritten by
 * their gradient. */
static void ce_case(int V, int bf16_logits, uint64_t seed)
{
	fl_rng r;
	fl_rng_init(&r, seed, 1);
	int N = 20, rc = 0;
	float dscale = 1.0f / 17;
	float *l1 = randn(&r, (size_t)N * V, 3.0), *l2 = dup(l1, (size_t)N * V);
	float *s1 = zeros(N), *s2 = zeros(N);
	int tg[20];
	char what[64];
	const char *kind = bf16_logits ? "crossentropy_bf16" : "crossentropy";
	for (int i = 0; i < N; i++)
		tg[i] = (int)fl_rng_below(&r, (uint64_t)V);
	tg[2] = tg[11] = tg[19] = -1; /* ignored rows */
	float t1 = model_crossentropy_forward_backward(l1, s1, tg, N, V, dscale);
	float t2 =
	    bf16_logits
	        ? model_cuda_op_crossentropy_bf16_forward_backward(l2, s2, tg, N, V, dscale, &rc)
	        : model_cuda_op_crossentropy_forward_backward(l2, s2, tg, N, V, dscale, &rc);
	CHECK_RC(rc);
	CHECK_NEAR(t2, t1, 1e-4, 1e-5);
	snprintf(what, sizeof what, "%s.losses V%d", kind, V);
	CHECK(near(what, s2, s1, N, 1e-4, 1e-5));
	snprintf(what, sizeof what, "%s.dlogits (bf16) V%d", kind, V);
	CHECK(near(what, l2, l1, (size_t)N * V, 1e-7, 1e-2));
	free(l1), free(l2), free(s1), free(s2);
}

static void test_crossentropy(void)
{
	NEED_GPU();
	ce_case(3001, 0, 8);
	ce_case(3000, 0, 81);
}

static void test_optimizers(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 9, 1);
	size_t n = 5000;
	float *p1 = randn(&r, n, 1.0), *g = randn(&r, n, 1.0), *m1 = randn(&r, n, 0.1);
	float *v1 = zeros(n);
	for (size_t i = 0; i < n; i++)
		v1[i] = (float)fabs(fl_rng_normal(&r)) * 0.01f;
	float *p2 = dup(p1, n), *m2 = dup(m1, n), *v2 = dup(v1, n);
	model_adamw_update(p1, g, m1, v1, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 3);
	CHECK_RC(
	    model_cuda_op_adamw_update(p2, g, m2, v2, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 3));
	CHECK(near("adamw.p", p2, p1, n, 1e-6, 1e-5));
	CHECK(near("adamw.m", m2, m1, n, 1e-7, 1e-5));
	CHECK(near("adamw.v", v2, v1, n, 1e-9, 1e-5));
	float *q1 = randn(&r, n, 1.0), *q2 = dup(q1, n), *b1 = randn(&r, n, 0.1), *b2 = dup(b1, n);
	model_sgd_update(q1, g, b1, n, 0.05f, 0.9f, 0.01f);
	CHECK_RC(model_cuda_op_sgd_update(q2, g, b2, n, 0.05f, 0.9f, 0.01f));
	CHECK(near("sgd+momentum.p", q2, q1, n, 1e-6, 1e-5));
	CHECK(near("sgd+momentum.buf", b2, b1, n, 1e-6, 1e-5));
	model_sgd_update(q1, g, NULL, n, 0.05f, 0, 0);
	CHECK_RC(model_cuda_op_sgd_update(q2, g, NULL, n, 0.05f, 0, 0));
	CHECK(near("sgd.p", q2, q1, n, 1e-6, 1e-5));
	free(p1), free(g), free(m1), free(v1), free(p2), free(m2), free(v2), free(q1), free(q2),
	    free(b1), free(b2);
}

static void test_dp_clip_reduce(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 10, 1);
	int nb = 7;
	size_t P = 3000;
	float *g = randn(&r, nb * P, 0.05);
	for (size_t j = 0; j < P; j++)
		g[2 * P + j] *= 100.0f;          /* one row far above the clip norm */
	memset(g + 4 * P, 0, P * sizeof(float)); /* one zero row */
	float *o1 = zeros(P), *o2 = zeros(P);
	priv_noise *pn = NULL;
	uint8_t key[32] = {1};
	CHECK_RC(priv_noise_new_keyed(&pn, key));
	CHECK_RC(priv_dpsgd_reduce(g, nb, P, 2.0, 0.0, 5.0, pn, o1));
	CHECK_RC(model_cuda_op_clip_reduce(o2, g, nb, P, 2.0, 5.0));
	CHECK(near("dp.clip_reduce (sigma 0)", o2, o1, P, 1e-6, 1e-4));
	priv_noise_free(pn);
	free(g), free(o1), free(o2);
}

static void test_dp_noise(void)
{
	NEED_GPU();
	size_t n = (size_t)1 << 20;
	double std = 1.5;
	float *a = zeros(n), *b = zeros(n), *c = zeros(n);
	CHECK_RC(model_cuda_op_noise(a, n, 0x1234567890abcdefull, 7, std));
	CHECK_RC(model_cuda_op_noise(b, n, 0x1234567890abcdefull, 7, std));
	CHECK_RC(model_cuda_op_noise(c, n, 0x1234567890abcdefull, 8, std));
	double s = 0, s2 = 0, s4 = 0, cov = 0;
	size_t same = 0, tail = 0;
	for (size_t i = 0; i < n; i++) {
		double x = a[i] / std;
		s += x;
		s2 += x * x;
		s4 += x * x * x * x;
		cov += x * (c[i] / std);
		same += a[i] == b[i];
		tail += fabs(x) > 3.0;
	}
	double mean = s / n, var = s2 / n - mean * mean, kurt = s4 / n;
	fprintf(stderr,
	        "  noise: mean %.5f var %.5f kurtosis %.4f cov(other ctr) %.5f tail>3 %.5f\n", mean,
	        var, kurt, cov / n, (double)tail / n);
	CHECK(same == n); /* same key and counter: same stream */
	CHECK(fabs(mean) < 5.0 / sqrt((double)n));
	CHECK(fabs(var - 1.0) < 0.01);
	CHECK(fabs(kurt - 3.0) < 0.05);
	CHECK(fabs(cov / n) < 5.0 / sqrt((double)n)); /* another counter: independent */
	CHECK(fabs((double)tail / n - 0.0027) < 0.0006);
	free(a), free(b), free(c);
}

/* ---- fused kernels (FEDLORA_FUSE) ---------------------------------------- */

/* RMSNorm that also writes the residual copy: the norm as model_rmsnorm_forward,
 * the copy bit-exact (a wrong row or stride shows as an exact mismatch); and
 * the backward without dw (the LoRA path). C 96, 576 and 2048 take the
 * row-resident kernels with 1, 2 and 4 float4 per thread; C 90 the
 * warp-per-row ones. */
static void test_fused_rmsnorm(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 21, 1);
	static const int Cs[4] = {96, 576, 2048, 90};
	for (int pass = 0; pass < 4; pass++) {
		int N = 33, C = Cs[pass];
		size_t n = (size_t)N * C;
		float eps = 1e-5f;
		float *x = randn(&r, n, 2.0), *w = randn(&r, C, 1.0), *dout = randn(&r, n, 1.0);
		float *o1 = zeros(n), *o2 = zeros(n), *r1 = zeros(N), *r2 = zeros(N),
		      *cp = zeros(n);
		char what[64];
		model_rmsnorm_forward(o1, r1, x, w, N, C, eps);
		CHECK_RC(model_cuda_op_rmsnorm_forward_copy(o2, r2, cp, x, w, N, C, eps));
		snprintf(what, sizeof what, "rmsnorm_copy.out C%d (bf16)", C);
		CHECK(near(what, o2, o1, n, 1e-2, 1e-2));
		snprintf(what, sizeof what, "rmsnorm_copy.rstd C%d", C);
		CHECK(near(what, r2, r1, N, 0, 1e-5));
		snprintf(what, sizeof what, "rmsnorm_copy.copy C%d", C);
		CHECK(near(what, cp, x, n, 0, 0));
		float *dx1 = randn(&r, n, 0.1), *dx2 = dup(dx1, n);
		model_rmsnorm_backward(dx1, NULL, dout, x, w, r1, N, C);
		CHECK_RC(model_cuda_op_rmsnorm_backward_fused(dx2, dout, x, w, r1, N, C));
		snprintf(what, sizeof what, "rmsnorm.dx (no dw) C%d", C);
		CHECK(near(what, dx2, dx1, n, 1e-4, 1e-3));
		free(x), free(w), free(dout), free(o1), free(o2), free(r1), free(r2), free(cp),
		    free(dx1), free(dx2);
	}
}

/* CPU twin of fl_k_qkv_rope_forward: split the (N, ld) rows into q, k, v
 * (B,T,H,D), add the bias, rotate q and k with model_rope_forward. */
static void cpu_qkv_rope_forward(float *q, float *k, float *v, const float *qkv, int ld,
                                 const float *bias, int B, int T, int Hq, int Hkv, int D,
                                 const float *inv)
{
	int QD = Hq * D, KD = Hkv * D;
	for (int n = 0; n < B * T; n++)
		for (int c = 0; c < QD + 2 * KD; c++) {
			float x = qkv[(size_t)n * ld + c] + (bias ? bias[c] : 0.f);
			if (c < QD)
				q[(size_t)n * QD + c] = x;
			else if (c < QD + KD)
				k[(size_t)n * KD + c - QD] = x;
			else
				v[(size_t)n * KD + c - QD - KD] = x;
		}
	model_rope_forward(q, B, T, Hq, D, inv);
	model_rope_forward(k, B, T, Hkv, D, inv);
}

static void qkv_rope_case(int B, int T, int Hq, int Hkv, int D, int pad, int with_bias,
                          uint64_t seed)
{
	fl_rng r;
	fl_rng_init(&r, seed, 1);
	int QD = Hq * D, KD = Hkv * D, W = QD + 2 * KD, ld = W + pad, N = B * T;
	float inv[64];
	model_rope_scaling sc = {MODEL_ROPE_LLAMA3, 8.0, 1.0, 4.0, 16};
	model_rope_inv_freq(inv, D, 10000.0f, &sc);
	float *qkv = randn(&r, (size_t)N * ld, 1.0), *bias = with_bias ? randn(&r, W, 0.5) : NULL;
	float *q1 = zeros((size_t)N * QD), *k1 = zeros((size_t)N * KD), *v1 = zeros((size_t)N * KD);
	float *q2 = zeros((size_t)N * QD), *k2 = zeros((size_t)N * KD), *v2 = zeros((size_t)N * KD);
	char what[80];
	cpu_qkv_rope_forward(q1, k1, v1, qkv, ld, bias, B, T, Hq, Hkv, D, inv);
	CHECK_RC(model_cuda_op_qkv_rope_forward(q2, k2, v2, qkv, ld, bias, B, T, Hq, Hkv, D, inv));
	snprintf(what, sizeof what, "qkv_rope.q D%d pad%d bias%d", D, pad, with_bias);
	CHECK(near(what, q2, q1, (size_t)N * QD, 1e-2, 1e-2));
	snprintf(what, sizeof what, "qkv_rope.k D%d pad%d bias%d", D, pad, with_bias);
	CHECK(near(what, k2, k1, (size_t)N * KD, 1e-2, 1e-2));
	snprintf(what, sizeof what, "qkv_rope.v D%d pad%d bias%d", D, pad, with_bias);
	CHECK(near(what, v2, v1, (size_t)N * KD, 1e-2, 1e-2));
	/* backward: model_rope_backward of dq and dk, packed into the rows; the
	 * padding columns keep what they held */
	float *dq = randn(&r, (size_t)N * QD, 1.0), *dk = randn(&r, (size_t)N * KD, 1.0);
	float *dv = randn(&r, (size_t)N * KD, 1.0);
	float *g1 = randn(&r, (size_t)N * ld, 1.0), *g2 = dup(g1, (size_t)N * ld);
	float *rq = dup(dq, (size_t)N * QD), *rk = dup(dk, (size_t)N * KD);
	model_rope_backward(rq, B, T, Hq, D, inv);
	model_rope_backward(rk, B, T, Hkv, D, inv);
	for (int n = 0; n < N; n++)
		for (int c = 0; c < W; c++)
			g1[(size_t)n * ld + c] = c < QD        ? rq[(size_t)n * QD + c]
			                         : c < QD + KD ? rk[(size_t)n * KD + c - QD]
			                                       : dv[(size_t)n * KD + c - QD - KD];
	CHECK_RC(model_cuda_op_qkv_rope_backward(g2, ld, dq, dk, dv, B, T, Hq, Hkv, D, inv));
	snprintf(what, sizeof what, "qkv_rope.bwd D%d pad%d", D, pad);
	CHECK(near(what, g2, g1, (size_t)N * ld, 1e-2, 1e-2));
	free(qkv), free(bias), free(q1), free(k1), free(v1), free(q2), free(k2), free(v2);
	free(dq), free(dk), free(dv), free(g1), free(g2), free(rq), free(rk);
}

static void test_fused_qkv_rope(void)
{
	NEED_GPU();
	qkv_rope_case(2, 40, 4, 2, 16, 0, 0, 22); /* 2-wide path, the model's rows */
	qkv_rope_case(2, 40, 4, 2, 16, 6, 1, 23); /* rows with spare columns, a bias */
	qkv_rope_case(1, 19, 3, 1, 6, 3, 1, 24);  /* odd half dimension and row: scalar path */
}

/* CPU twin of fl_k_qkv_headnorm_forward: the bias added to every head of
 * the (N, ld) rows, the q and k heads' values saved (rounded to bf16, as the
 * kernel saves them) and normalized with model_rmsnorm_forward over rows of
 * D, written back into the rows; v heads keep value + bias. */
static void cpu_qkv_headnorm_forward(float *rows, int ld, const float *bias, float *qpre,
                                     float *kpre, float *rq, float *rk, const float *wq,
                                     const float *wk, int N, int Hq, int Hkv, int D, float eps)
{
	int QD = Hq * D, KD = Hkv * D;
	float *qn = zeros((size_t)N * QD), *kn = zeros((size_t)N * KD);
	for (int n = 0; n < N; n++)
		for (int c = 0; c < QD + 2 * KD; c++) {
			float x = rows[(size_t)n * ld + c] + (bias ? bias[c] : 0.f);
			if (c < QD)
				qpre[(size_t)n * QD + c] = bf16r(x);
			else if (c < QD + KD)
				kpre[(size_t)n * KD + c - QD] = bf16r(x);
			else
				rows[(size_t)n * ld + c] = x;
		}
	model_rmsnorm_forward(qn, rq, qpre, wq, N * Hq, D, eps);
	model_rmsnorm_forward(kn, rk, kpre, wk, N * Hkv, D, eps);
	for (int n = 0; n < N; n++) {
		memcpy(rows + (size_t)n * ld, qn + (size_t)n * QD, QD * sizeof(float));
		memcpy(rows + (size_t)n * ld + QD, kn + (size_t)n * KD, KD * sizeof(float));
	}
	free(qn), free(kn);
}

/* Its backward: model_rmsnorm_backward of the q and k heads' gradients
 * (taken out of the rows), written back over them; v heads and padding
 * untouched. */
static void cpu_qkv_headnorm_backward(float *drows, int ld, float *dwq, float *dwk,
                                      const float *qpre, const float *kpre, const float *wq,
                                      const float *wk, const float *rq, const float *rk, int N,
                                      int Hq, int Hkv, int D)
{
	int QD = Hq * D, KD = Hkv * D;
	float *dq = zeros((size_t)N * QD), *dk = zeros((size_t)N * KD);
	float *gq = zeros((size_t)N * QD), *gk = zeros((size_t)N * KD);
	for (int n = 0; n < N; n++) {
		memcpy(dq + (size_t)n * QD, drows + (size_t)n * ld, QD * sizeof(float));
		memcpy(dk + (size_t)n * KD, drows + (size_t)n * ld + QD, KD * sizeof(float));
	}
	model_rmsnorm_backward(gq, dwq, dq, qpre, wq, rq, N * Hq, D);
	model_rmsnorm_backward(gk, dwk, dk, kpre, wk, rk, N * Hkv, D);
	for (int n = 0; n < N; n++) {
		memcpy(drows + (size_t)n * ld, gq + (size_t)n * QD, QD * sizeof(float));
		memcpy(drows + (size_t)n * ld + QD, gk + (size_t)n * KD, KD * sizeof(float));
	}
	free(dq), free(dk), free(gq), free(gk);
}

static void qkv_headnorm_case(int N, int Hq, int Hkv, int D, int pad, int with_bias, uint64_t seed)
{
	fl_rng r;
	fl_rng_init(&r, seed, 1);
	int QD = Hq * D, KD = Hkv * D, W = QD + 2 * KD, ld = W + pad;
	size_t nr = (size_t)N * ld, nq = (size_t)N * QD, nk = (size_t)N * KD;
	float eps = 1e-6f;
	float *rows = randn(&r, nr, 2.0), *bias = with_bias ? randn(&r, W, 0.5) : NULL;
	float *wq = randn(&r, D, 1.0), *wk = randn(&r, D, 1.0);
	float *r1 = dup(rows, nr), *r2 = dup(rows, nr);
	float *qp1 = zeros(nq), *qp2 = zeros(nq), *kp1 = zeros(nk), *kp2 = zeros(nk);
	float *sq1 = zeros((size_t)N * Hq), *sq2 = zeros((size_t)N * Hq);
	float *sk1 = zeros((size_t)N * Hkv), *sk2 = zeros((size_t)N * Hkv);
	char what[96];
	cpu_qkv_headnorm_forward(r1, ld, bias, qp1, kp1, sq1, sk1, wq, wk, N, Hq, Hkv, D, eps);
	CHECK_RC(model_cuda_op_qkv_headnorm_forward(r2, ld, bias, qp2, kp2, sq2, sk2, wq, wk, N, Hq,
	                                            Hkv, D, eps));
	/* the padding columns exact, the rest rounded once to bf16 */
	snprintf(what, sizeof what, "qkv_headnorm.rows D%d pad%d bias%d", D, pad, with_bias);
	CHECK(near(what, r2, r1, nr, 1e-2, 1e-2));
	/* one f32 addition of bf16 values, rounded to bf16 on both sides */
	snprintf(what, sizeof what, "qkv_headnorm.qpre D%d", D);
	CHECK(near(what, qp2, qp1, nq, 0, 1e-6));
	snprintf(what, sizeof what, "qkv_headnorm.kpre D%d", D);
	CHECK(near(what, kp2, kp1, nk, 0, 1e-6));
	snprintf(what, sizeof what, "qkv_headnorm.rstdq D%d", D);
	CHECK(near(what, sq2, sq1, (size_t)N * Hq, 0, 1e-5));
	snprintf(what, sizeof what, "qkv_headnorm.rstdk D%d", D);
	CHECK(near(what, sk2, sk1, (size_t)N * Hkv, 0, 1e-5));
	/* backward from random gradient rows (v heads and padding must keep
	 * their values), with the CPU's saved values; dw starts nonzero */
	float *g1 = randn(&r, nr, 1.0), *g2 = dup(g1, nr);
	float *dq1 = randn(&r, D, 1.0), *dq2 = dup(dq1, D), *dk1 = randn(&r, D, 1.0),
	      *dk2 = dup(dk1, D);
	cpu_qkv_headnorm_backward(g1, ld, dq1, dk1, qp1, kp1, wq, wk, sq1, sk1, N, Hq, Hkv, D);
	CHECK_RC(model_cuda_op_qkv_headnorm_backward(g2, ld, dq2, dk2, qp1, kp1, wq, wk, sq1, sk1,
	                                             N, Hq, Hkv, D));
	snprintf(what, sizeof what, "qkv_headnorm.bwd rows D%d pad%d (bf16)", D, pad);
	CHECK(near(what, g2, g1, nr, 2e-2, 2e-2));
	snprintf(what, sizeof what, "qkv_headnorm.dwq D%d (%d rows)", D, N * Hq);
	CHECK(near(what, dq2, dq1, D, 5e-3, 1e-4));
	snprintf(what, sizeof what, "qkv_headnorm.dwk D%d (%d rows)", D, N * Hkv);
	CHECK(near(what, dk2, dk1, D, 5e-3, 1e-4));
	/* without weight gradients (LoRA training): the rows alone */
	float *g3 = dup(g2, nr), *g4 = dup(g2, nr);
	cpu_qkv_headnorm_backward(g3, ld, NULL, NULL, qp1, kp1, wq, wk, sq1, sk1, N, Hq, Hkv, D);
	CHECK_RC(model_cuda_op_qkv_headnorm_backward(g4, ld, NULL, NULL, qp1, kp1, wq, wk, sq1, sk1,
	                                             N, Hq, Hkv, D));
	snprintf(what, sizeof what, "qkv_headnorm.bwd (no dw) D%d (bf16)", D);
	CHECK(near(what, g4, g3, nr, 2e-2, 2e-2));
	free(rows), free(bias), free(wq), free(wk), free(r1), free(r2), free(qp1), free(qp2),
	    free(kp1), free(kp2), free(sq1), free(sq2), free(sk1), free(sk2), free(g1), free(g2),
	    free(dq1), free(dq2), free(dk1), free(dk2), free(g3), free(g4);
}

/* Qwen3's q/k norm on the merged q/k/v rows (fusion on), bias first (Qwen3
 * with attention_bias), against model_rmsnorm_* over the heads. 1100 tokens
 * of 6 normed heads make the weight-gradient warps loop (512 blocks of 8);
 * D 800 takes the per-row atomics instead of the shared-memory sums. */
static void test_fused_qkv_headnorm(void)
{
	NEED_GPU();
	qkv_headnorm_case(64, 4, 2, 32, 0, 0, 30);   /* the model's rows, Qwen3 */
	qkv_headnorm_case(1100, 4, 2, 64, 6, 1, 31); /* spare columns, a bias, many rows */
	qkv_headnorm_case(37, 3, 1, 16, 3, 1, 32);   /* odd head counts and row length */
	qkv_headnorm_case(10, 2, 1, 800, 0, 0, 33);  /* long heads: no shared memory */
}

/* SwiGLU on merged rows against model_swiglu_forward/_backward on the split
 * halves (the CPU backward adds, so it starts from zero). */
static void test_fused_swiglu(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 25, 1);
	static const int Is[3] = {64, 50, 33}; /* 16-byte, bf16x2 and scalar accesses */
	for (int pass = 0; pass < 3; pass++) {
		int rows = 37, I = Is[pass];
		size_t n = (size_t)rows * I;
		float *gu = randn(&r, 2 * n, 2.0), *d = randn(&r, n, 1.0);
		float *g = zeros(n), *u = zeros(n), *o1 = zeros(n), *o2 = zeros(n);
		float *dg = zeros(n), *du = zeros(n), *d1 = zeros(2 * n), *d2 = zeros(2 * n);
		char what[64];
		for (int i = 0; i < rows; i++)
			for (int c = 0; c < I; c++) {
				g[(size_t)i * I + c] = gu[(size_t)i * 2 * I + c];
				u[(size_t)i * I + c] = gu[(size_t)i * 2 * I + I + c];
			}
		model_swiglu_forward(o1, g, u, (int)n);
		CHECK_RC(model_cuda_op_swiglu_gu_forward(o2, gu, rows, I));
		snprintf(what, sizeof what, "swiglu_gu.out I%d (bf16)", I);
		CHECK(near(what, o2, o1, n, 1e-3, 1e-2));
		model_swiglu_backward(dg, du, d, g, u, (int)n);
		for (int i = 0; i < rows; i++)
			for (int c = 0; c < I; c++) {
				d1[(size_t)i * 2 * I + c] = dg[(size_t)i * I + c];
				d1[(size_t)i * 2 * I + I + c] = du[(size_t)i * I + c];
			}
		CHECK_RC(model_cuda_op_swiglu_gu_backward(d2, d, gu, rows, I));
		snprintf(what, sizeof what, "swiglu_gu.dgu I%d (bf16)", I);
		CHECK(near(what, d2, d1, 2 * n, 1e-3, 1e-2));
		free(gu), free(d), free(g), free(u), free(o1), free(o2), free(dg), free(du),
		    free(d1), free(d2);
	}
}

/* LoRA into the columns of a merged projection: rows ldo (ldd) apart, the
 * other columns untouched; against model_lora_forward/_backward on packed
 * copies. */
static void test_fused_lora_ld(void)
{
	NEED_GPU();
	fl_rng r;
	fl_rng_init(&r, 26, 1);
	int N = 30, IN = 64, OUT = 48, ld = 80, rk = 8;
	float scale = 2.0f;
	float *x = randn(&r, (size_t)N * IN, 1.0), *A = randn(&r, (size_t)rk * IN, 0.1);
	float *B = randn(&r, (size_t)OUT * rk, 0.1);
	float *wide = randn(&r, (size_t)N * ld, 1.0), *ref = dup(wide, (size_t)N * ld);
	float *pack = zeros((size_t)N * OUT), *xa1 = zeros((size_t)N * rk),
	      *xa2 = zeros((size_t)N * rk);
	for (int n = 0; n < N; n++)
		memcpy(pack + (size_t)n * OUT, wide + (size_t)n * ld, OUT * sizeof(float));
	model_lora_forward(pack, xa1, x, A, B, N, IN, OUT, rk, scale);
	for (int n = 0; n < N; n++)
		memcpy(ref + (size_t)n * ld, pack + (size_t)n * OUT, OUT * sizeof(float));
	CHECK_RC(model_cuda_op_lora_forward_ld(wide, ld, xa2, x, A, B, N, IN, OUT, rk, scale));
	CHECK(near("lora_ld.out (spare columns exact)", wide, ref, (size_t)N * ld, 1e-2, 1e-2));
	CHECK(near("lora_ld.xa (bf16)", xa2, xa1, (size_t)N * rk, 1e-2, 1e-2));
	/* backward from a gradient whose rows are ld apart (the spare columns
	 * hold values that must not leak into the result) */
	float *dwide = randn(&r, (size_t)N * ld, 1.0), *dpack = zeros((size_t)N * OUT);
	for (int n = 0; n < N; n++)
		memcpy(dpack + (size_t)n * OUT, dwide + (size_t)n * ld, OUT * sizeof(float));
	float *dx1 = randn(&r, (size_t)N * IN, 0.1), *dx2 = dup(dx1, (size_t)N * IN);
	float *dA1 = zeros((size_t)rk * IN), *dA2 = zeros((size_t)rk * IN);
	float *dB1 = zeros((size_t)OUT * rk), *dB2 = zeros((size_t)OUT * rk);
	model_lora_backward(dx1, dA1, dB1, dpack, x, xa2, A, B, N, IN, OUT, rk, scale);
	CHECK_RC(model_cuda_op_lora_backward_ld(dx2, dA2, dB2, dwide, ld, x, xa2, A, B, N, IN, OUT,
	                                        rk, scale));
	CHECK(near("lora_ld.dB", dB2, dB1, (size_t)OUT * rk, 1e-3, 1e-3));
	/* dxa rounded to bf16: the tolerance of test_lora's dA and dx */
	CHECK(near("lora_ld.dA (dxa bf16)", dA2, dA1, (size_t)rk * IN, 6e-2, 2e-2));
	CHECK(near("lora_ld.dx (dxa bf16)", dx2, dx1, (size_t)N * IN, 1e-2, 2e-2));
	free(x), free(A), free(B), free(wide), free(ref), free(pack), free(xa1), free(xa2),
	    free(dwide), free(dpack), free(dx1), free(dx2), free(dA1), free(dA2), free(dB1),
	    free(dB2);
}

/* Cross-entropy on bf16 logits, the gradient written over them in place;
 * the tolerances are those of the f32 case. */
static void test_fused_crossentropy(void)
{
	NEED_GPU();
	ce_case(3001, 1, 27);
	ce_case(3000, 1, 28);
}

#else /* no CUDA in this build: every case is a skip */

static void test_embed(void)
{
	NEED_GPU();
}
#define test_rmsnorm            test_embed
#define test_bias               test_embed
#define test_headnorm           test_embed
#define test_matmul             test_embed
#define test_lora               test_embed
#define test_rope               test_embed
#define test_attention          test_embed
#define test_swiglu             test_embed
#define test_flash_attention    test_embed
#define test_crossentropy       test_embed
#define test_optimizers         test_embed
#define test_dp_clip_reduce     test_embed
#define test_dp_noise           test_embed
#define test_fused_rmsnorm      test_embed
#define test_fused_qkv_rope     test_embed
#define test_fused_qkv_headnorm test_embed
#define test_fused_swiglu       test_embed
#define test_fused_lora_ld      test_embed
#define test_fused_crossentropy test_embed

#endif

static const test_case cases[] = {
    {"cuda_embed", test_embed},
    {"cuda_rmsnorm", test_rmsnorm},
    {"cuda_bias", test_bias},
    {"cuda_headnorm", test_headnorm},
    {"cuda_matmul", test_matmul},
    {"cuda_lora", test_lora},
    {"cuda_rope", test_rope},
    {"cuda_attention", test_attention},
    {"cuda_flash_attention", test_flash_attention},
    {"cuda_swiglu", test_swiglu},
    {"cuda_crossentropy", test_crossentropy},
    {"cuda_optimizers", test_optimizers},
    {"cuda_dp_clip_reduce", test_dp_clip_reduce},
    {"cuda_dp_noise", test_dp_noise},
    {"cuda_fused_rmsnorm", test_fused_rmsnorm},
    {"cuda_fused_qkv_rope", test_fused_qkv_rope},
    {"cuda_fused_qkv_headnorm", test_fused_qkv_headnorm},
    {"cuda_fused_swiglu", test_fused_swiglu},
    {"cuda_fused_lora_ld", test_fused_lora_ld},
    {"cuda_fused_crossentropy", test_fused_crossentropy},
    {0},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
