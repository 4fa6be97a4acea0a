/*
 * tests/ops_test.c — checks of model/ops.c: every forward against a
 * double-precision reference written here, and every backward against central
 * finite differences of that double reference (loss = sum(w * out) with random
 * w), on tiny shapes. Also: backwards accumulate, per-example LoRA gradients,
 * attention across several query blocks, optimizer updates.
 */
#include "model/ops.h"

#include <assert.h>
#include <stdint.h>

#include "core/rng.h"
#include "tests/test.h"
#include "tests/gradcheck.h"
#include "tests/rope_ref.h"

static fl_rng rng;

static float *frand(size_t n, double sd)
{
	float *p = malloc(n * sizeof *p);
	for (size_t i = 0; i < n; i++)
		p[i] = (float)(sd * fl_rng_normal(&rng));
	return p;
}

static double *todouble(const float *f, size_t n)
{
	double *d = malloc(n * sizeof *d);
	for (size_t i = 0; i < n; i++)
		d[i] = f[i];
	return d;
}

static float *fzeros(size_t n)
{
	return calloc(n, sizeof(float));
}

/* A double-precision reference loss over the context's double arrays. */
typedef test_loss_fn loss_fn;

static int gradcheck(const char *what, loss_fn f, void *ctx, double *x, const float *g, size_t n,
                     size_t maxn)
{
	return test_gradcheck(what, f, ctx, x, g, n, maxn, 2e-4, 2e-3);
}

static void check_close(const char *what, const float *a, const double *ref, size_t n, double atol,
                        double rtol)
{
	int bad = 0;
	for (size_t i = 0; i < n; i++) {
		if (!(fabs(a[i] - ref[i]) <= atol + rtol * fabs(ref[i]))) {
			if (bad < 5)
				fprintf(stderr, "  %s[%zu]: %.8g vs reference %.8g\n", what, i,
				        (double)a[i], ref[i]);
			bad++;
		}
	}
	CHECK(bad == 0);
}

/* check_close against a float32 result of another implementation. */
static void check_close_f(const char *what, const float *a, const float *ref, size_t n, double atol,
                          double rtol)
{
	double *r = todouble(ref, n);
	check_close(what, a, r, n, atol, rtol);
	free(r);
}

/* ---- matmul ---- */

typedef struct {
	int N, IN, OUT;
	double *x, *w, *wout;
} mm_ctx;

static double mm_loss(void *p)
{
	mm_ctx *c = p;
	double L = 0;
	for (int n = 0; n < c->N; n++)
		for (int o = 0; o < c->OUT; o++) {
			double s = 0;
			for (int i = 0; i < c->IN; i++)
				s += c->x[n * c->IN + i] * c->w[o * c->IN + i];
			L += c->wout[n * c->OUT + o] * s;
		}
	return L;
}

static void test_matmul(void)
{
	int N = 5, IN = 7, OUT = 3;
	float *x = frand(N * IN, 1), *w = frand(OUT * IN, 1), *dout = frand(N * OUT, 1);
	float *out = fzeros(N * OUT), *dx = fzeros(N * IN), *dw = fzeros(OUT * IN);
	mm_ctx c = {
	    N, IN, OUT, todouble(x, N * IN), todouble(w, OUT * IN), todouble(dout, N * OUT)};
	model_matmul_forward(out, x, w, N, IN, OUT);
	double *ref = malloc(sizeof(double) * N * OUT);
	for (int n = 0; n < N; n++)
		for (int o = 0; o < OUT; o++) {
			double s = 0;
			for (int i = 0; i < IN; i++)
				s += c.x[n * IN + i] * c.w[o * IN + i];
			ref[n * OUT + o] = s;
		}
	check_close("matmul out", out, ref, N * OUT, 1e-5, 1e-5);
	/* backward accumulates: start dx at 1 and subtract it after */
	for (int i = 0; i < N * IN; i++)
		dx[i] = 1.0f;
	model_matmul_backward(dx, dw, dout, x, w, N, IN, OUT);
	for (int i = 0; i < N * IN; i++)
		dx[i] -= 1.0f;
	gradcheck("matmul dx", mm_loss, &c, c.x, dx, N * IN, 1000);
	gradcheck("matmul dw", mm_loss, &c, c.w, dw, OUT * IN, 1000);
	/* NULL dw is skipped */
	memset(dx, 0, sizeof(float) * N * IN);
	model_matmul_backward(dx, NULL, dout, x, w, N, IN, OUT);
	gradcheck("matmul dx (dw NULL)", mm_loss, &c, c.x, dx, N * IN, 1000);
	free(x), free(w), free(dout), free(out), free(dx), free(dw), free(ref);
	free(c.x), free(c.w), free(c.wout);
}

/* ---- embedding ---- */

typedef struct {
	int N, C;
	const int *tok;
	double *wte, *wout;
} emb_ctx;

static double emb_loss(void *p)
{
	emb_ctx *c = p;
	double L = 0;
	for (int n = 0; n < c->N; n++)
		for (int j = 0; j < c->C; j++)
			L += c->wout[n * c->C + j] * c->wte[c->tok[n] * c->C + j];
	return L;
}

/* ---- bias ---- */

typedef struct {
	int N, OUT;
	double *y, *b, *wout; /* y (N,OUT) the projection before the bias */
} bias_ctx;

/* sum wout * (y + b) */
static double bias_loss(void *p)
{
	bias_ctx *c = p;
	double L = 0;
	for (int n = 0; n < c->N; n++)
		for (int o = 0; o < c->OUT; o++)
			L += c->wout[n * c->OUT + o] * (c->y[n * c->OUT + o] + c->b[o]);
	return L;
}

/* The forward adds b to every row; the backward accumulates the column sums
 * of dout into db (finite differences), and the gradient w.r.t. the
 * projection is dout itself (the identity: nothing for the bias to add). */
static void test_bias(void)
{
	int N = 6, OUT = 5;
	float *y = frand(N * OUT, 1), *b = frand(OUT, 1), *dout = frand(N * OUT, 1);
	float *out = malloc(sizeof(float) * N * OUT), *db = fzeros(OUT);
	bias_ctx c = {N, OUT, todouble(y, N * OUT), todouble(b, OUT), todouble(dout, N * OUT)};
	memcpy(out, y, sizeof(float) * N * OUT);
	model_bias_forward(out, b, N, OUT);
	double *ref = malloc(sizeof(double) * N * OUT);
	for (int n = 0; n < N; n++)
		for (int o = 0; o < OUT; o++)
			ref[n * OUT + o] = c.y[n * OUT + o] + c.b[o];
	check_close("bias out", out, ref, N * OUT, 0, 1e-7);
	for (int o = 0; o < OUT; o++)
		db[o] = 2.0f; /* accumulates */
	model_bias_backward(db, dout, N, OUT);
	for (int o = 0; o < OUT; o++)
		db[o] -= 2.0f;
	gradcheck("bias db", bias_loss, &c, c.b, db, OUT, 100);
	gradcheck("bias dy = dout", bias_loss, &c, c.y, dout, N * OUT, 100);
	free(y), free(b), free(dout), free(out), free(db), free(ref);
	free(c.y), free(c.b), free(c.wout);
}

static void test_embed(void)
{
	int V = 6, C = 4, N = 7;
	int tok[7] = {0, 3, 3, 5, 1, 0, 3};
	float *wte = frand(V * C, 1), *dout = frand(N * C, 1);
	float *out = fzeros(N * C), *dwte = fzeros(V * C);
	model_embed_forward(out, tok, wte, N, C);
	int same = 1;
	for (int n = 0; n < N; n++)
		for (int j = 0; j < C; j++)
			same &= out[n * C + j] == wte[tok[n] * C + j];
	CHECK(same);
	model_embed_backward(dwte, dout, tok, N, C);
	emb_ctx c = {N, C, tok, todouble(wte, V * C), todouble(dout, N * C)};
	gradcheck("embed dwte", emb_loss, &c, c.wte, dwte, V * C, 1000);
	free(wte), free(dout), free(out), free(dwte), free(c.wte), free(c.wout);
}

/* ---- rmsnorm ---- */

typedef struct {
	int N, C;
	double eps;
	double *x, *w, *wout;
} rms_ctx;

static void rms_ref(const rms_ctx *c, double *y)
{
	for (int n = 0; n < c->N; n++) {
		double ss = 0;
		for (int j = 0; j < c->C; j++)
			ss += c->x[n * c->C + j] * c->x[n * c->C + j];
		double r = 1 / sqrt(ss / c->C + c->eps);
		for (int j = 0; j < c->C; j++)
			y[n * c->C + j] = c->x[n * c->C + j] * r * c->w[j];
	}
}

static double rms_loss(void *p)
{
	rms_ctx *c = p;
	double *y = malloc(sizeof(double) * c->N * c->C), L = 0;
	rms_ref(c, y);
	for (int i = 0; i < c->N * c->C; i++)
		L += c->wout[i] * y[i];
	free(y);
	return L;
}

static void test_rmsnorm(void)
{
	int N = 4, C = 9;
	float eps = 1e-5f;
	float *x = frand(N * C, 1.5), *w = frand(C, 1), *dout = frand(N * C, 1);
	float *out = fzeros(N * C), *rstd = fzeros(N), *dx = fzeros(N * C), *dw = fzeros(C);
	rms_ctx c = {N, C, eps, todouble(x, N * C), todouble(w, C), todouble(dout, N * C)};
	double *ref = malloc(sizeof(double) * N * C);
	rms_ref(&c, ref);
	model_rmsnorm_forward(out, rstd, x, w, N, C, eps);
	check_close("rmsnorm out", out, ref, N * C, 1e-6, 1e-5);
	model_rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C);
	gradcheck("rmsnorm dx", rms_loss, &c, c.x, dx, N * C, 1000);
	gradcheck("rmsnorm dw", rms_loss, &c, c.w, dw, C, 1000);
	free(x), free(w), free(dout), free(out), free(rstd), free(dx), free(dw), free(ref);
	free(c.x), free(c.w), free(c.wout);
}

/* ---- LoRA ---- */

typedef struct {
	int N, IN, OUT, r;
	double scale;
	int row0, rows; /* loss over rows [row0, row0 + rows) */
	double *x, *A, *B, *wout;
} lora_ctx;

static double lora_loss(void *p)
{
	lora_ctx *c = p;
	double L = 0;
	for (int n = c->row0; n < c->row0 + c->rows; n++) {
		double xa[16];
		for (int k = 0; k < c->r; k++) {
			xa[k] = 0;
			for (int i = 0; i < c->IN; i++)
				xa[k] += c->x[n * c->IN + i] * c->A[k * c->IN + i];
		}
		for (int o = 0; o < c->OUT; o++) {
			double s = 0;
			for (int k = 0; k < c->r; k++)
				s += xa[k] * c->B[o * c->r + k];
			L += c->wout[n * c->OUT + o] * c->scale * s;
		}
	}
	return L;
}

static void test_lora(void)
{
	int N = 6, IN = 5, OUT = 4, r = 3;
	float scale = 2.5f;
	float *x = frand(N * IN, 1), *A = frand(r * IN, 1), *B = frand(OUT * r, 1);
	float *dout = frand(N * OUT, 1), *base = frand(N * OUT, 1);
	float *out = fzeros(N * OUT), *xa = fzeros(N * r);
	float *dx = fzeros(N * IN), *dA = fzeros(r * IN), *dB = fzeros(OUT * r);
	lora_ctx c = {N,
	              IN,
	              OUT,
	              r,
	              scale,
	              0,
	              N,
	              todouble(x, N * IN),
	              todouble(A, r * IN),
	              todouble(B, OUT * r),
	              todouble(dout, N * OUT)};
	memcpy(out, base, sizeof(float) * N * OUT);
	model_lora_forward(out, xa, x, A, B, N, IN, OUT, r, scale);
	/* forward adds to the base output: out - base == d loss / d wout */
	double *ref = malloc(sizeof(double) * N * OUT);
	for (int n = 0; n < N; n++)
		for (int o = 0; o < OUT; o++) {
			double s = 0;
			for (int k = 0; k < r; k++) {
				double xak = 0;
				for (int i = 0; i < IN; i++)
					xak += c.x[n * IN + i] * c.A[k * IN + i];
				s += xak * c.B[o * r + k];
			}
			ref[n * OUT + o] = base[n * OUT + o] + scale * s;
		}
	check_close("lora out", out, ref, N * OUT, 1e-5, 1e-5);
	model_lora_backward(dx, dA, dB, dout, x, xa, A, B, N, IN, OUT, r, scale);
	gradcheck("lora dx", lora_loss, &c, c.x, dx, N * IN, 1000);
	gradcheck("lora dA", lora_loss, &c, c.A, dA, r * IN, 1000);
	gradcheck("lora dB", lora_loss, &c, c.B, dB, OUT * r, 1000);

	/* per example: 3 examples of 2 rows; rows of length stride hold A then B */
	int nex = 3, T = 2;
	size_t na = (size_t)r * IN, stride = na + (size_t)OUT * r + 1; /* +1: a gap */
	float *pe = fzeros(nex * stride), *dx2 = fzeros(N * IN);
	model_lora_backward_per_example(dx2, pe, pe + na, stride, dout, x, xa, A, B, nex, T, IN,
	                                OUT, r, scale);
	double *dxd = todouble(dx, N * IN);
	check_close("per-example dx", dx2, dxd, N * IN, 1e-6, 1e-5);
	free(dxd);
	for (int e = 0; e < nex; e++) {
		c.row0 = e * T, c.rows = T;
		gradcheck("per-example dA", lora_loss, &c, c.A, pe + e * stride, na, 1000);
		gradcheck("per-example dB", lora_loss, &c, c.B, pe + e * stride + na,
		          (size_t)OUT * r, 1000);
		CHECK(pe[e * stride + stride - 1] == 0.0f); /* the gap is untouched */
	}
	free(x), free(A), free(B), free(dout), free(base), free(out), free(xa), free(dx), free(dA);
	free(dB), free(ref), free(pe), free(dx2), free(c.x), free(c.A), free(c.B), free(c.wout);
}

/* ---- rope ---- */

typedef struct {
	int B, T, H, D;
	const double *inv; /* (D/2) inverse frequencies, double */
	double *x, *wout;
} rope_ctx;

/* Hugging Face formula: out = x * cos + rotate_half(x) * sin. */
static void rope_ref(const rope_ctx *c, double *y)
{
	int half = c->D / 2;
	for (int b = 0; b < c->B; b++)
		for (int t = 0; t < c->T; t++)
			for (int h = 0; h < c->H; h++) {
				size_t o = (((size_t)b * c->T + t) * c->H + h) * c->D;
				for (int j = 0; j < c->D; j++) {
					int i = j % half;
					double ang = t * c->inv[i];
					double rot =
					    j < half ? -c->x[o + j + half] : c->x[o + j - half];
					y[o + j] = c->x[o + j] * cos(ang) + rot * sin(ang);
				}
			}
}

static double rope_loss(void *p)
{
	rope_ctx *c = p;
	size_t n = (size_t)c->B * c->T * c->H * c->D;
	double *y = malloc(sizeof(double) * n), L = 0;
	rope_ref(c, y);
	for (size_t i = 0; i < n; i++)
		L += c->wout[i] * y[i];
	free(y);
	return L;
}

/* Forward against the double formula and backward by finite differences,
 * for the frequencies of s (NULL: plain) at theta, D <= 16. */
static void rope_case(const char *name, int D, float theta, const model_rope_scaling *s)
{
	int B = 2, T = 7, H = 3;
	size_t n = (size_t)B * T * H * D;
	float *x = frand(n, 1), *dout = frand(n, 1), inv[8];
	double dinv[8];
	assert(D <= 16);
	model_rope_inv_freq(inv, D, theta, s);
	ref_rope_inv_freq(dinv, D, theta, s);
	rope_ctx c = {B, T, H, D, dinv, todouble(x, n), todouble(dout, n)};
	double *ref = malloc(sizeof(double) * n);
	rope_ref(&c, ref);
	model_rope_forward(x, B, T, H, D, inv);
	check_close(name, x, ref, n, 1e-6, 1e-5);
	model_rope_backward(dout, B, T, H, D, inv); /* in place: now d loss / d x */
	gradcheck(name, rope_loss, &c, c.x, dout, n, 1000);
	free(x), free(dout), free(ref), free(c.x), free(c.wout);
}

static void test_rope(void)
{
	rope_case("rope default", 6, 100.0f, NULL);
	/* wavelengths 6.3, 20, 63, 199, ..., 2e4 against the band edges 16 and
	 * 64: one high, two medium, five low frequencies */
	model_rope_scaling s = {MODEL_ROPE_LLAMA3, 4.0, 1.0, 4.0, 64};
	rope_case("rope llama3", 16, 10000.0f, &s);
}

/* inv_freq for the Llama-3.2-1B settings (rope_theta 500000, head_dim 64,
 * factor 32, low_freq_factor 1, high_freq_factor 4, original 8192) against
 * values computed in double from the formula by this script (python3):
 *
 *   import math
 *   theta, D, factor, low, high, orig = 500000.0, 64, 32.0, 1.0, 4.0, 8192
 *   for i in range(D // 2):
 *       inv = theta ** (-2.0 * i / D); wl = 2 * math.pi / inv
 *       if wl > orig / low: v = inv / factor
 *       elif wl < orig / high: v = inv
 *       else:
 *           s = (orig / wl - low) / (high - low)
 *           v = (1 - s) * inv / factor + s * inv
 *       print(f"{v:.9e},")
 *
 * Indices 0-14 are in the high band (kept), 15-17 in the medium band
 * (blended), 18-31 in the low band (divided by 32); no wavelength is within
 * 4% of a band edge, so float32 rounding cannot move one across. float32
 * rounds each of the few steps to 2^-24: 2e-6 relative leaves room for ~16
 * ulps. */
static void test_rope_inv_freq_llama32(void)
{
	static const double want[32] = {
	    1.000000000e+00, 6.636012377e-01, 4.403666027e-01, 2.922278226e-01, 1.939227447e-01,
	    1.286873734e-01, 8.539710029e-02, 5.666962145e-02, 3.760603093e-02, 2.495540867e-02,
	    1.656044008e-02, 1.098952853e-02, 7.292664737e-03, 4.839421346e-03, 3.211445995e-03,
	    1.290547928e-03, 4.295567966e-04, 9.708287803e-05, 1.946163818e-05, 1.291476719e-05,
	    8.570255490e-06, 5.687232150e-06, 3.774054294e-06, 2.504467101e-06, 1.661967468e-06,
	    1.102883669e-06, 7.318749675e-07, 4.856731343e-07, 3.222932930e-07, 2.138742282e-07,
	    1.419272025e-07, 9.418306725e-08,
	};
	model_rope_scaling s = {MODEL_ROPE_LLAMA3, 32.0, 1.0, 4.0, 8192};
	float inv[32], plain[32];
	model_rope_inv_freq(inv, 64, 500000.0f, &s);
	model_rope_inv_freq(plain, 64, 500000.0f, NULL);
	for (int i = 0; i < 32; i++) {
		double err = fabs(inv[i] - want[i]) / want[i];
		if (err > 2e-6)
			fprintf(stderr, "  inv_freq[%d] = %.9e, want %.9e\n", i, inv[i], want[i]);
		CHECK(err <= 2e-6);
		/* the high band is the default frequency, bit for bit */
		if (i <= 14)
			CHECK(inv[i] == plain[i]);
		else
			CHECK(inv[i] < plain[i]);
	}
	/* a zero scaling struct is plain RoPE, bit for bit */
	model_rope_scaling none = {0};
	model_rope_inv_freq(inv, 64, 500000.0f, &none);
	CHECK(!memcmp(inv, plain, sizeof inv));
}

/* ---- attention ---- */

typedef struct {
	int B, T, Hq, Hkv, D;
	double *q, *k, *v, *wout;
} att_ctx;

static void att_ref(const att_ctx *c, double *out)
{
	int g = c->Hq / c->Hkv, T = c->T, D = c->D;
	double *s = malloc(sizeof(double) * T);
	for (int b = 0; b < c->B; b++)
		for (int h = 0; h < c->Hq; h++)
			for (int t = 0; t < T; t++) {
				const double *qr = c->q + (((size_t)b * T + t) * c->Hq + h) * D;
				double mx = -1e300, sum = 0;
				for (int u = 0; u <= t; u++) {
					const double *kr =
					    c->k + (((size_t)b * T + u) * c->Hkv + h / g) * D;
					double d = 0;
					for (int j = 0; j < D; j++)
						d += qr[j] * kr[j];
					s[u] = d / sqrt((double)D);
					mx = s[u] > mx ? s[u] : mx;
				}
				for (int u = 0; u <= t; u++)
					sum += (s[u] = exp(s[u] - mx));
				double *o = out + (((size_t)b * T + t) * c->Hq + h) * D;
				for (int j = 0; j < D; j++) {
					double a = 0;
					for (int u = 0; u <= t; u++)
						a += s[u] / sum *
						     c->v[(((size_t)b * T + u) * c->Hkv + h / g) *
						              D +
						          j];
					o[j] = a;
				}
			}
	free(s);
}

static double att_loss(void *p)
{
	att_ctx *c = p;
	size_t n = (size_t)c->B * c->T * c->Hq * c->D;
	double *y = malloc(sizeof(double) * n), L = 0;
	att_ref(c, y);
	for (size_t i = 0; i < n; i++)
		L += c->wout[i] * y[i];
	free(y);
	return L;
}

static void attention_case(int B, int T, int Hq, int Hkv, int D, size_t maxn)
{
	size_t nq = (size_t)B * T * Hq * D, nk = (size_t)B * T * Hkv * D;
	float *q = frand(nq, 1), *k = frand(nk, 1), *v = frand(nk, 1), *dout = frand(nq, 1);
	float *out = fzeros(nq), *att = fzeros((size_t)B * Hq * T * T);
	float *dq = fzeros(nq), *dk = fzeros(nk), *dv = fzeros(nk);
	att_ctx c = {B,
	             T,
	             Hq,
	             Hkv,
	             D,
	             todouble(q, nq),
	             todouble(k, nk),
	             todouble(v, nk),
	             todouble(dout, nq)};
	double *ref = malloc(sizeof(double) * nq);
	att_ref(&c, ref);
	model_attention_forward(out, att, q, k, v, B, T, Hq, Hkv, D);
	check_close("attention out", out, ref, nq, 1e-5, 1e-4);
	/* probabilities: rows sum to 1, zero above the diagonal */
	int okp = 1;
	for (int bh = 0; bh < B * Hq; bh++)
		for (int t = 0; t < T; t++) {
			const float *a = att + ((size_t)bh * T + t) * T;
			double s = 0;
			for (int u = 0; u < T; u++) {
				s += a[u];
				if (u > t && a[u] != 0.0f)
					okp = 0;
			}
			if (fabs(s - 1) > 1e-5)
				okp = 0;
		}
	CHECK(okp);
	model_attention_backward(dq, dk, dv, dout, q, k, v, att, B, T, Hq, Hkv, D);
	gradcheck("attention dq", att_loss, &c, c.q, dq, nq, maxn);
	gradcheck("attention dk", att_loss, &c, c.k, dk, nk, maxn);
	gradcheck("attention dv", att_loss, &c, c.v, dv, nk, maxn);

	/* the flash attention: same output and gradients without the (T,T)
	 * probabilities */
	float *fout = fzeros(nq), *lse = fzeros((size_t)B * Hq * T);
	float *fdq = fzeros(nq), *fdk = fzeros(nk), *fdv = fzeros(nk);
	model_flash_attention_forward(fout, lse, q, k, v, B, T, Hq, Hkv, D);
	check_close("flash attention out", fout, ref, nq, 1e-5, 1e-4);
	check_close_f("flash out vs attention out", fout, out, nq, 1e-6, 1e-5);
	model_flash_attention_backward(fdq, fdk, fdv, dout, q, k, v, fout, lse, B, T, Hq, Hkv, D);
	check_close_f("flash dq vs attention dq", fdq, dq, nq, 1e-6, 1e-5);
	check_close_f("flash dk vs attention dk", fdk, dk, nk, 1e-6, 1e-5);
	check_close_f("flash dv vs attention dv", fdv, dv, nk, 1e-6, 1e-5);
	gradcheck("flash attention dq", att_loss, &c, c.q, fdq, nq, maxn);
	gradcheck("flash attention dk", att_loss, &c, c.k, fdk, nk, maxn);
	gradcheck("flash attention dv", att_loss, &c, c.v, fdv, nk, maxn);
	free(fout), free(lse), free(fdq), free(fdk), free(fdv);
	free(q), free(k), free(v), free(dout), free(out), free(att), free(dq), free(dk), free(dv);
	free(ref), free(c.q), free(c.k), free(c.v), free(c.wout);
}

static void test_attention_gqa(void)
{
	attention_case(2, 5, 4, 2, 4, 1000);
}

static void test_attention_mha(void)
{
	attention_case(1, 6, 2, 2, 3, 1000);
}

/* T = 150 spans three query blocks of the forward and several of the backward. */
static void test_attention_blocks(void)
{
	attention_case(1, 150, 2, 1, 4, 150);
}

/* ---- swiglu ---- */

typedef struct {
	int N;
	double *g, *u, *wout;
} swi_ctx;

static double swi_loss(void *p)
{
	swi_ctx *c = p;
	double L = 0;
	for (int i = 0; i < c->N; i++)
		L += c->wout[i] * c->g[i] / (1 + exp(-c->g[i])) * c->u[i];
	return L;
}

static void test_swiglu(void)
{
	int N = 33;
	float *g = frand(N, 2), *u = frand(N, 1), *dout = frand(N, 1);
	float *out = fzeros(N), *dg = fzeros(N), *du = fzeros(N);
	swi_ctx c = {N, todouble(g, N), todouble(u, N), todouble(dout, N)};
	model_swiglu_forward(out, g, u, N);
	double *ref = malloc(sizeof(double) * N);
	for (int i = 0; i < N; i++)
		ref[i] = c.g[i] / (1 + exp(-c.g[i])) * c.u[i];
	check_close("swiglu out", out, ref, N, 1e-6, 1e-5);
	model_swiglu_backward(dg, du, dout, g, u, N);
	gradcheck("swiglu dgate", swi_loss, &c, c.g, dg, N, 1000);
	gradcheck("swiglu dup", swi_loss, &c, c.u, du, N, 1000);
	free(g), free(u), free(dout), free(out), free(dg), free(du), free(ref);
	free(c.g), free(c.u), free(c.wout);
}

/* ---- cross-entropy ---- */

typedef struct {
	int N, V;
	const int *tg;
	double *l;
} ce_ctx;

static double ce_loss(void *p)
{
	ce_ctx *c = p;
	double L = 0;
	for (int n = 0; n < c->N; n++) {
		if (c->tg[n] < 0)
			continue;
		double mx = -1e300, s = 0;
		for (int i = 0; i < c->V; i++)
			mx = c->l[n * c->V + i] > mx ? c->l[n * c->V + i] : mx;
		for (int i = 0; i < c->V; i++)
			s += exp(c->l[n * c->V + i] - mx);
		L += mx + log(s) - c->l[n * c->V + c->tg[n]];
	}
	return L;
}

static void test_crossentropy(void)
{
	int N = 5, V = 11;
	int tg[5] = {3, -1, 0, 10, 7};
	float *l = frand(N * V, 3), *losses = fzeros(N);
	ce_ctx c = {N, V, tg, todouble(l, N * V)};
	double ref = ce_loss(&c);
	float dscale = 0.25f;
	float sum = model_crossentropy_forward_backward(l, losses, tg, N, V, dscale);
	CHECK_NEAR(sum, ref, 1e-5, 1e-5);
	CHECK(losses[1] == 0.0f);
	for (int i = 0; i < N * V; i++)
		l[i] /= dscale;
	gradcheck("crossentropy dlogits", ce_loss, &c, c.l, l, N * V, 1000);
	int zero = 1;
	for (int i = 0; i < V; i++)
		zero &= l[V + i] == 0.0f;
	CHECK(zero);
	/* huge logits stay finite */
	float big[3] = {1000.0f, -1000.0f, 999.0f};
	int t0 = 0;
	float lo;
	float s2 = model_crossentropy_forward_backward(big, &lo, &t0, 1, 3, 1.0f);
	CHECK(isfinite(s2) && s2 > 0.3f && s2 < 0.32f); /* log(1 + e^-1) = 0.3133 */
	free(l), free(losses), free(c.l);
}

/* ---- optimizers ---- */

static void test_adamw(void)
{
	size_t n = 7;
	float *p = frand(n, 1), *m = fzeros(n), *v = fzeros(n);
	double *pd = todouble(p, n), md[7] = {0}, vd[7] = {0};
	float lr = 0.01f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
	for (int t = 1; t <= 3; t++) {
		float *g = frand(n, 1);
		model_adamw_update(p, g, m, v, n, lr, b1, b2, eps, wd, t);
		for (size_t i = 0; i < n; i++) {
			/* PyTorch AdamW: p *= 1 - lr*wd; then the Adam step */
			pd[i] *= 1 - (double)lr * wd;
			md[i] = b1 * md[i] + (1 - (double)b1) * g[i];
			vd[i] = b2 * vd[i] + (1 - (double)b2) * g[i] * g[i];
			double mh = md[i] / (1 - pow(b1, t)), vh = vd[i] / (1 - pow(b2, t));
			pd[i] -= lr * mh / (sqrt(vh) + eps);
		}
		free(g);
	}
	check_close("adamw p", p, pd, n, 1e-6, 1e-5);
	free(p), free(m), free(v), free(pd);
}

static void test_sgd(void)
{
	float p[3] = {1, -2, 3}, g[3] = {0.5f, 0.5f, -1}, mom[3] = {0};
	model_sgd_update(p, g, NULL, 3, 0.1f, 0, 0);
	CHECK_NEAR(p[0], 0.95, 1e-7, 0);
	CHECK_NEAR(p[2], 3.1, 1e-6, 0);
	/* momentum 0.5, wd 0.1: buf = g; p -= lr (buf + wd p); then buf = 0.5 g + g */
	float q[1] = {2}, gq[1] = {1};
	model_sgd_update(q, gq, mom, 1, 0.1f, 0.5f, 0.1f);
	CHECK_NEAR(q[0], 2 - 0.1 * (1 + 0.2), 1e-6, 0);
	model_sgd_update(q, gq, mom, 1, 0.1f, 0.5f, 0.1f);
	CHECK_NEAR(q[0], 1.88 - 0.1 * (1.5 + 0.188), 1e-6, 0);
}

static const test_case cases[] = {TEST(test_matmul),
                                  TEST(test_bias),
                                  TEST(test_embed),
                                  TEST(test_rmsnorm),
                                  TEST(test_lora),
                                  TEST(test_rope),
                                  TEST(test_rope_inv_freq_llama32),
                                  TEST(test_attention_gqa),
                                  TEST(test_attention_mha),
                                  TEST(test_attention_blocks),
                                  TEST(test_swiglu),
                                  TEST(test_crossentropy),
                                  TEST(test_adamw),
                                  TEST(test_sgd),
                                  {0}};

int main(int argc, char **argv)
{
	fl_rng_init(&rng, 1234, 0);
	return test_main(argc, argv, cases);
}
