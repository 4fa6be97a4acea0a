/*
 * tests/llama_test.c — the whole Llama model (model/llama.c) on tiny
 * configurations with grouped-query attention (Hq 4, Hkv 2), tied and untied
 * embeddings:
 *   - a double-precision reference forward written here agrees with the
 *     model's logits and loss;
 *   - LoRA gradients (A and B, B only, per example) and a sample of full
 *     parameter gradients agree with central differences of that reference;
 *   - a few training steps lower the loss (LoRA with AdamW, full with SGD);
 *   - save/load round trips give identical logits; config.json round trips;
 *   - malformed configs and safetensors files, bad tokens, bad adapters and
 *     calls out of order are refused.
 */
#include "model/llama.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "model/ops.h"
#include "model/optim.h"
#include "tests/test.h"
#include "tests/gradcheck.h"
#include "tests/rope_ref.h"

static model_config tiny_config(int tied)
{
	model_config c;
	memset(&c, 0, sizeof c);
	c.hidden_size = 8;
	c.intermediate_size = 12;
	c.num_layers = 2;
	c.num_heads = 4;
	c.num_kv_heads = 2;
	c.head_dim = 2;
	c.vocab_size = 11;
	c.max_position_embeddings = 64;
	c.tie_word_embeddings = tied;
	c.bos_token_id = 1;
	c.eos_token_id = 2;
	c.rms_norm_eps = 1e-5f;
	c.rope_theta = 10000.0f;
	return c;
}

/* Base parameters with some spread (norm weights around 1), so that every
 * path carries signal at these tiny sizes. */
static void randomize(model_llama *m, uint64_t seed)
{
	fl_rng r;
	fl_rng_init(&r, seed, 7);
	for (size_t i = 0; i < m->nparams; i++)
		m->params[i] = (float)(0.5 * fl_rng_normal(&r));
	for (int l = 0; l < m->cfg.num_layers; l++)
		for (int c = 0; c < m->cfg.hidden_size; c++) {
			m->param[MODEL_P_LN1][l * m->cfg.hidden_size + c] += 1.0f;
			m->param[MODEL_P_LN2][l * m->cfg.hidden_size + c] += 1.0f;
		}
}

static void fill_normal(float *p, size_t n, double sd, uint64_t seed)
{
	fl_rng r;
	fl_rng_init(&r, seed, 9);
	for (size_t i = 0; i < n; i++)
		p[i] = (float)(sd * fl_rng_normal(&r));
}

static void batch(int B, int T, int V, int *tok, int *tg, uint64_t seed)
{
	fl_rng r;
	fl_rng_init(&r, seed, 11);
	for (int i = 0; i < B * T; i++) {
		tok[i] = (int)fl_rng_below(&r, (uint64_t)V);
		tg[i] = (int)fl_rng_below(&r, (uint64_t)V);
	}
	tg[1] = -1; /* an ignored position */
}

/* ---- double-precision reference of the whole model ---- */

typedef struct ref_ctx {
	const model_llama *m;
	double *p;  /* copy of m->params */
	double *lp; /* copy of m->lora->params, or NULL */
	const int *tok, *tg;
	int B, T;
	int only_b;     /* >= 0: loss over example only_b's targets */
	double *logits; /* (N,V) out, or NULL */
} ref_ctx;

static size_t poff(const model_llama *m, int i)
{
	return (size_t)(m->param[i] - m->params);
}

static void ref_rmsnorm(double *y, const double *x, const double *w, int N, int C, double eps)
{
	for (int n = 0; n < N; n++) {
		double ss = 0;
		for (int c = 0; c < C; c++)
			ss += x[n * C + c] * x[n * C + c];
		double r = 1 / sqrt(ss / C + eps);
		for (int c = 0; c < C; c++)
			y[n * C + c] = x[n * C + c] * r * w[c];
	}
}

/* y (N,out) (+)= x W^T + scale (x A^T) B^T */
static void ref_linear(const ref_ctx *c, double *y, const double *x, int l, int mod, int N, int in,
                       int out, int add)
{
	static const int pidx[MODEL_NMODULE] = {MODEL_P_WQ,   MODEL_P_WK,    MODEL_P_WV,
	                                        MODEL_P_WO,   MODEL_P_WGATE, MODEL_P_WUP,
	                                        MODEL_P_WDOWN};
	const model_llama *m = c->m;
	const double *W = c->p + poff(m, pidx[mod]) + (size_t)l * in * out;
	int li = m->lora ? m->lora_idx[l * MODEL_NMODULE + mod] : -1;
	for (int n = 0; n < N; n++) {
		double xa[8] = {0};
		if (li >= 0) {
			const lora_mat *lm = &m->lora->mats[li];
			const double *A = c->lp + (lm->A - m->lora->params);
			for (int k = 0; k < m->lora->r; k++)
				for (int i = 0; i < in; i++)
					xa[k] += x[n * in + i] * A[k * in + i];
		}
		for (int o = 0; o < out; o++) {
			double s = 0;
			for (int i = 0; i < in; i++)
				s += x[n * in + i] * W[o * in + i];
			if (li >= 0) {
				const lora_mat *lm = &m->lora->mats[li];
				const double *Bm = c->lp + (lm->B - m->lora->params);
				double t = 0;
				for (int k = 0; k < m->lora->r; k++)
					t += xa[k] * Bm[o * m->lora->r + k];
				s += (double)m->lora->alpha / m->lora->r * t;
			}
			y[n * out + o] = (add ? y[n * out + o] : 0) + s;
		}
	}
}

/* Rotation of x (B,T,H,D) with the frequencies of cf, from the double formula. */
static void ref_rope(double *x, int B, int T, int H, const model_config *cf)
{
	int D = cf->head_dim, half = D / 2;
	double *inv = malloc(sizeof(double) * half);
	ref_rope_inv_freq(inv, D, cf->rope_theta, &cf->rope_scaling);
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++)
			for (int h = 0; h < H; h++) {
				double *v = x + (((size_t)b * T + t) * H + h) * D;
				for (int i = 0; i < half; i++) {
					double a = t * inv[i];
					double x1 = v[i], x2 = v[i + half];
					v[i] = x1 * cos(a) - x2 * sin(a);
					v[i + half] = x2 * cos(a) + x1 * sin(a);
				}
			}
	free(inv);
}

static double ref_loss(void *p)
{
	ref_ctx *c = p;
	const model_llama *m = c->m;
	const model_config *cf = &m->cfg;
	int B = c->B, T = c->T, N = B * T, C = cf->hidden_size, I = cf->intermediate_size;
	int Hq = cf->num_heads, Hkv = cf->num_kv_heads, D = cf->head_dim, V = cf->vocab_size;
	int QD = Hq * D, KD = Hkv * D;
	double *x = calloc((size_t)N * C, 8), *h = calloc((size_t)N * C, 8);
	double *q = calloc((size_t)N * QD, 8), *k = calloc((size_t)N * KD, 8);
	double *v = calloc((size_t)N * KD, 8), *y = calloc((size_t)N * QD, 8);
	double *g = calloc((size_t)N * I, 8), *u = calloc((size_t)N * I, 8);
	double *lg = calloc((size_t)N * V, 8), *s = calloc((size_t)T, 8);
	for (int n = 0; n < N; n++)
		for (int j = 0; j < C; j++)
			x[n * C + j] = c->p[poff(m, MODEL_P_EMBED) + (size_t)c->tok[n] * C + j];
	for (int l = 0; l < cf->num_layers; l++) {
		ref_rmsnorm(h, x, c->p + poff(m, MODEL_P_LN1) + l * C, N, C, cf->rms_norm_eps);
		ref_linear(c, q, h, l, MODEL_M_Q, N, C, QD, 0);
		ref_linear(c, k, h, l, MODEL_M_K, N, C, KD, 0);
		ref_linear(c, v, h, l, MODEL_M_V, N, C, KD, 0);
		ref_rope(q, B, T, Hq, cf);
		ref_rope(k, B, T, Hkv, cf);
		for (int b = 0; b < B; b++)
			for (int hh = 0; hh < Hq; hh++) {
				int kh = hh / (Hq / Hkv);
				for (int t = 0; t < T; t++) {
					double mx = -1e300, sum = 0;
					const double *qr = q + ((size_t)(b * T + t) * Hq + hh) * D;
					for (int j = 0; j <= t; j++) {
						const double *kr =
						    k + ((size_t)(b * T + j) * Hkv + kh) * D;
						double d = 0;
						for (int e = 0; e < D; e++)
							d += qr[e] * kr[e];
						s[j] = d / sqrt((double)D);
						mx = s[j] > mx ? s[j] : mx;
					}
					for (int j = 0; j <= t; j++)
						sum += (s[j] = exp(s[j] - mx));
					double *yr = y + ((size_t)(b * T + t) * Hq + hh) * D;
					for (int e = 0; e < D; e++) {
						double a = 0;
						for (int j = 0; j <= t; j++)
							a +=
							    s[j] / sum *
							    v[((size_t)(b * T + j) * Hkv + kh) * D +
							      e];
						yr[e] = a;
					}
				}
			}
		ref_linear(c, x, y, l, MODEL_M_O, N, QD, C, 1);
		ref_rmsnorm(h, x, c->p + poff(m, MODEL_P_LN2) + l * C, N, C, cf->rms_norm_eps);
		ref_linear(c, g, h, l, MODEL_M_GATE, N, C, I, 0);
		ref_linear(c, u, h, l, MODEL_M_UP, N, C, I, 0);
		for (int i = 0; i < N * I; i++)
			g[i] = g[i] / (1 + exp(-g[i])) * u[i];
		ref_linear(c, x, g, l, MODEL_M_DOWN, N, I, C, 1);
	}
	ref_rmsnorm(h, x, c->p + poff(m, MODEL_P_NORM), N, C, cf->rms_norm_eps);
	const double *head = c->p + poff(m, MODEL_P_HEAD);
	double L = 0;
	long cnt = 0;
	for (int n = 0; n < N; n++) {
		for (int o = 0; o < V; o++) {
			double a = 0;
			for (int j = 0; j < C; j++)
				a += h[n * C + j] * head[(size_t)o * C + j];
			lg[n * V + o] = a;
		}
		if (c->tg[n] < 0 || (c->only_b >= 0 && n / T != c->only_b))
			continue;
		double mx = -1e300, sum = 0;
		for (int o = 0; o < V; o++)
			mx = lg[n * V + o] > mx ? lg[n * V + o] : mx;
		for (int o = 0; o < V; o++)
			sum += exp(lg[n * V + o] - mx);
		L += mx + log(sum) - lg[n * V + c->tg[n]];
		cnt++;
	}
	if (c->logits)
		memcpy(c->logits, lg, sizeof(double) * N * V);
	free(x), free(h), free(q), free(k), free(v), free(y), free(g), free(u), free(lg), free(s);
	return cnt ? L / cnt : 0;
}

static double ref_loss_of(void *c)
{
	return ref_loss(c);
}

static int gradcheck(const char *what, ref_ctx *c, double *x, const float *g, size_t n, size_t maxn)
{
	return test_gradcheck(what, ref_loss_of, c, x, g, n, maxn, 1e-4, 2e-3);
}

static double *dcopy(const float *f, size_t n)
{
	double *d = malloc(n * sizeof *d);
	for (size_t i = 0; i < n; i++)
		d[i] = f[i];
	return d;
}

/* A tiny model with an adapter on `targets`, A and B random (B nonzero so
 * that A gets a gradient). */
static void tiny_with_lora(int tied, const char *targets, model_llama **m, lora_adapter **ad)
{
	model_config c = tiny_config(tied);
	CHECK_RC(model_llama_new(m, &c, 5));
	randomize(*m, 17 + tied);
	CHECK_RC(model_lora_adapter_new(&c, targets, 2, 4.0f, ad));
	fill_normal((*ad)->params, (*ad)->n_a + (*ad)->n_b, 0.5, 23);
	CHECK_RC(model_llama_attach_lora(*m, *ad));
}

static void lora_gradcheck(int tied)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	tiny_with_lora(tied, "all", &m, &ad);
	int B = 2, T = 5, N = B * T, V = m->cfg.vocab_size;
	int tok[10], tg[10];
	batch(B, T, V, tok, tg, 3);
	CHECK_RC(model_llama_set_mode(m, MODEL_TRAIN_LORA));
	float loss;
	CHECK_RC(model_llama_forward(m, tok, tg, B, T, &loss));
	CHECK_RC(model_llama_backward(m));
	ref_ctx c = {m,
	             dcopy(m->params, m->nparams),
	             dcopy(ad->params, ad->n_a + ad->n_b),
	             tok,
	             tg,
	             B,
	             T,
	             -1,
	             NULL};
	double ref = ref_loss(&c);
	CHECK_NEAR(loss, ref, 1e-5, 1e-4);
	gradcheck("lora A", &c, c.lp, m->lora_grad, ad->n_a, 400);
	gradcheck("lora B", &c, c.lp + ad->n_a, m->lora_grad + ad->n_a, ad->n_b, 400);

	/* B only: the same B gradient, A part untouched */
	CHECK_RC(model_llama_set_mode(m, MODEL_TRAIN_LORA_B));
	for (size_t i = 0; i < ad->n_a; i++)
		m->lora_grad[i] = 7.0f;
	CHECK_RC(model_llama_forward(m, tok, tg, B, T, NULL));
	CHECK_RC(model_llama_backward(m));
	CHECK(m->lora_grad[0] == 7.0f && m->lora_grad[ad->n_a - 1] == 7.0f);
	gradcheck("lora B (B only)", &c, c.lp + ad->n_a, m->lora_grad + ad->n_a, ad->n_b, 400);

	/* per example, both modes: row b = gradient of example b's own mean loss */
	for (int mode = MODEL_TRAIN_LORA; mode <= MODEL_TRAIN_LORA_B; mode++) {
		CHECK_RC(model_llama_set_mode(m, (model_train_mode)mode));
		float *p, *g;
		size_t n;
		CHECK_RC(model_llama_trainable(m, &p, &g, &n));
		float *pe = malloc((size_t)B * n * sizeof(float));
		CHECK_RC(model_llama_forward(m, tok, tg, B, T, NULL));
		CHECK_RC(model_llama_backward_per_example(m, pe));
		double *x = mode == MODEL_TRAIN_LORA ? c.lp : c.lp + ad->n_a;
		for (int b = 0; b < B; b++) {
			c.only_b = b;
			gradcheck("per-example", &c, x, pe + (size_t)b * n, n, 150);
		}
		c.only_b = -1;
		free(pe);
	}
	(void)N;
	free(c.p), free(c.lp);
	model_llama_free(m);
	lora_adapter_free(ad);
}

static void test_lora_grad_untied(void)
{
	lora_gradcheck(0);
}

static void test_lora_grad_tied(void)
{
	lora_gradcheck(1);
}

/* Full-parameter gradients; with `with_lora`, an adapter on every module is
 * attached (applied in the forward, not trained), so the input gradients
 * flow through its LoRA paths too. */
static void full_gradcheck(int tied, int with_lora)
{
	model_config cf = tiny_config(tied);
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	CHECK_RC(model_llama_new(&m, &cf, 9));
	randomize(m, 31);
	if (with_lora) {
		CHECK_RC(model_lora_adapter_new(&cf, "all", 2, 4.0f, &ad));
		fill_normal(ad->params, ad->n_a + ad->n_b, 0.5, 41);
		CHECK_RC(model_llama_attach_lora(m, ad));
	}
	int B = 2, T = 4, V = cf.vocab_size;
	int tok[8], tg[8];
	batch(B, T, V, tok, tg, 4);
	CHECK_RC(model_llama_set_mode(m, MODEL_TRAIN_FULL));
	CHECK_RC(model_llama_forward(m, tok, tg, B, T, NULL));
	CHECK_RC(model_llama_backward(m));
	ref_ctx c = {m,
	             dcopy(m->params, m->nparams),
	             ad ? dcopy(ad->params, ad->n_a + ad->n_b) : NULL,
	             tok,
	             tg,
	             B,
	             T,
	             -1,
	             NULL};
	/* a few entries of every tensor */
	for (int i = 0; i < MODEL_NPARAM; i++) {
		if (m->param_size[i] == 0)
			continue;
		size_t o = poff(m, i);
		char what[32];
		snprintf(what, sizeof what, "param %d", i);
		gradcheck(what, &c, c.p + o, m->grads + o, m->param_size[i], 6);
	}
	if (ad) { /* the adapter got no gradient */
		int zero = 1;
		for (size_t i = 0; i < ad->n_a + ad->n_b; i++)
			zero &= m->lora_grad[i] == 0.0f;
		CHECK(zero);
	}
	free(c.p);
	free(c.lp);
	model_llama_free(m);
	lora_adapter_free(ad);
}

static void test_full_grad_untied(void)
{
	full_gradcheck(0, 0);
}

static void test_full_grad_with_lora(void)
{
	full_gradcheck(0, 1);
}

static void test_full_grad_tied(void)
{
	full_gradcheck(1, 0);
}

/* The model's logits equal the double reference; a later smaller batch reuses
 * the buffers and still agrees (and causality: a prefix gives the same
 * logits). */
static void test_forward_matches_reference(void)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	tiny_with_lora(0, "q_proj,v_proj", &m, &ad);
	int B = 3, T = 6, V = m->cfg.vocab_size;
	int tok[18], tg[18];
	batch(B, T, V, tok, tg, 8);
	double *ref = malloc(sizeof(double) * B * T * V);
	ref_ctx c = {m,
	             dcopy(m->params, m->nparams),
	             dcopy(ad->params, ad->n_a + ad->n_b),
	             tok,
	             tg,
	             B,
	             T,
	             -1,
	             ref};
	ref_loss(&c);
	CHECK_RC(model_llama_forward(m, tok, NULL, B, T, NULL));
	const float *lg = model_llama_logits(m);
	CHECK(lg != NULL);
	int bad = 0;
	for (int i = 0; lg && i < B * T * V; i++)
		bad += !(fabs(lg[i] - ref[i]) <= 1e-5 + 1e-4 * fabs(ref[i]));
	CHECK(bad == 0);
	/* training layout (every layer's activations kept) gives the same logits
	 * as the inference layout (one shared layer slot) */
	float *inf = malloc(sizeof(float) * B * T * V);
	memcpy(inf, lg, sizeof(float) * B * T * V);
	CHECK(m->acts_train == 0);
	CHECK_RC(model_llama_set_mode(m, MODEL_TRAIN_LORA));
	CHECK_RC(model_llama_forward(m, tok, NULL, B, T, NULL));
	lg = model_llama_logits(m);
	CHECK(m->acts_train == 1 && lg && !memcmp(lg, inf, sizeof(float) * B * T * V));
	free(inf);
	/* the first 4 tokens of sequence 0, as a batch of 1 */
	float keep[4 * 11];
	memcpy(keep, lg, sizeof keep);
	CHECK_RC(model_llama_forward(m, tok, NULL, 1, 4, NULL));
	lg = model_llama_logits(m);
	bad = 0;
	for (int t = 0; t < 4; t++)
		for (int o = 0; o < V; o++)
			bad += !(fabs(lg[t * V + o] - keep[t * V + o]) <= 1e-5);
	CHECK(bad == 0);
	/* with targets the logits are consumed */
	CHECK_RC(model_llama_forward(m, tok, tg, B, T, NULL));
	CHECK(model_llama_logits(m) == NULL);
	CHECK(m->ntargets == B * T - 1);
	free(ref), free(c.p), free(c.lp);
	model_llama_free(m);
	lora_adapter_free(ad);
}

static void test_training_lowers_loss(void)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	model_config cf = tiny_config(1);
	cf.hidden_size = 16;
	cf.head_dim = 4;
	CHECK_RC(model_llama_new(&m, &cf, 2));
	randomize(m, 3); /* a base whose layers carry signal, as a pretrained one does */
	CHECK_RC(model_lora_adapter_new(&cf, "q_proj,v_proj,down_proj", 4, 8.0f, &ad));
	lora_adapter_init(ad, 99);
	CHECK_RC(model_llama_attach_lora(m, ad));
	int B = 2, T = 8, tok[16], tg[16];
	for (int i = 0; i < B * T; i++) {
		tok[i] = (i * 3) % cf.vocab_size;
		tg[i] = (i * 3 + 3) % cf.vocab_size; /* next token of the pattern */
	}
	/* LoRA, AdamW */
	float *p, *g;
	size_t n;
	model_optim *opt = NULL;
	model_optim_opts oo;
	model_optim_opts_default(&oo);
	CHECK_RC(model_llama_set_mode(m, MODEL_TRAIN_LORA));
	CHECK_RC(model_llama_trainable(m, &p, &g, &n));
	CHECK(n == ad->n_a + ad->n_b);
	CHECK_RC(model_optim_new(&opt, n, &oo));
	float first = 0, last = 0;
	for (int s = 0; s < 40; s++) {
		model_llama_zero_grad(m);
		CHECK_RC(model_llama_forward(m, tok, tg, B, T, &last));
		if (s == 0)
			first = last;
		CHECK_RC(model_llama_backward(m));
		CHECK_RC(model_optim_step(opt, p, g, n, 0.02f));
	}
	fprintf(stderr, "  lora: loss %.4f -> %.4f\n", first, last);
	CHECK(last < first - 0.5f);
	model_optim_free(opt);

	/* B only: A does not move */
	float a0 = ad->params[0], a1 = ad->params[ad->n_a - 1];
	CHECK_RC(model_llama_set_mode(m, MODEL_TRAIN_LORA_B));
	CHECK_RC(model_llama_trainable(m, &p, &g, &n));
	CHECK(n == ad->n_b && p == ad->params + ad->n_a);
	CHECK_RC(model_optim_new(&opt, n, &oo));
	for (int s = 0; s < 5; s++) {
		model_llama_zero_grad(m);
		CHECK_RC(model_llama_forward(m, tok, tg, B, T, NULL));
		CHECK_RC(model_llama_backward(m));
		CHECK_RC(model_optim_step(opt, p, g, n, 0.02f));
	}
	CHECK(ad->params[0] == a0 && ad->params[ad->n_a - 1] == a1);
	model_optim_free(opt);

	/* full, SGD, adapter detached */
	CHECK_RC(model_llama_attach_lora(m, NULL));
	CHECK(m->mode == MODEL_TRAIN_NONE);
	CHECK_RC(model_llama_set_mode(m, MODEL_TRAIN_FULL));
	CHECK_RC(model_llama_trainable(m, &p, &g, &n));
	CHECK(n == m->nparams);
	oo.kind = MODEL_OPT_SGD;
	CHECK_RC(model_optim_new(&opt, n, &oo));
	for (int s = 0; s < 40; s++) {
		model_llama_zero_grad(m);
		CHECK_RC(model_llama_forward(m, tok, tg, B, T, &last));
		if (s == 0)
			first = last;
		CHECK_RC(model_llama_backward(m));
		CHECK_RC(model_optim_step(opt, p, g, n, 0.5f));
	}
	fprintf(stderr, "  full: loss %.4f -> %.4f\n", first, last);
	CHECK(last < first - 0.5f);
	model_optim_free(opt);
	model_llama_free(m);
	lora_adapter_free(ad);
}

/* Gradients of one step in `mode` (per example when per_example) with
 * checkpointing off or on, into out; *acts gets the activation bytes. */
static void ckpt_grads(model_llama *m, model_train_mode mode, int ckpt, int per_example,
                       const int *tok, const int *tg, int B, int T, float *out, size_t *acts)
{
	float *p, *g;
	size_t n;
	float loss;
	model_llama_set_grad_checkpoint(m, ckpt);
	CHECK_RC(model_llama_set_mode(m, mode));
	CHECK_RC(model_llama_trainable(m, &p, &g, &n));
	CHECK_RC(model_llama_forward(m, tok, tg, B, T, &loss));
	if (per_example) {
		CHECK_RC(model_llama_backward_per_example(m, out));
	} else {
		CHECK_RC(model_llama_backward(m));
		memcpy(out, g, n * sizeof(float));
	}
	*acts = model_llama_acts_bytes(m);
}

/* Gradient checkpointing recomputes the same values with the same ops, so
 * the gradients (full, LoRA, LoRA B, per example) are identical bit for bit,
 * while the activations take less memory. T = 70 spans two attention tiles. */
static void test_grad_checkpoint(void)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	tiny_with_lora(0, "q_proj,v_proj,down_proj", &m, &ad);
	m->cfg.max_position_embeddings = 128;
	int B = 2, T = 70, V = m->cfg.vocab_size;
	int *tok = malloc(sizeof(int) * B * T), *tg = malloc(sizeof(int) * B * T);
	batch(B, T, V, tok, tg, 8);
	const model_train_mode modes[] = {MODEL_TRAIN_FULL, MODEL_TRAIN_LORA, MODEL_TRAIN_LORA_B,
	                                  MODEL_TRAIN_LORA};
	size_t cap = (size_t)B * (ad->n_a + ad->n_b);
	if (cap < m->nparams)
		cap = m->nparams;
	float *g0 = malloc(cap * sizeof(float)), *g1 = malloc(cap * sizeof(float));
	for (int i = 0; i < 4; i++) {
		int pe = i == 3;
		size_t a0, a1, nt;
		float *p, *g;
		ckpt_grads(m, modes[i], 0, pe, tok, tg, B, T, g0, &a0);
		ckpt_grads(m, modes[i], 1, pe, tok, tg, B, T, g1, &a1);
		CHECK_RC(model_llama_trainable(m, &p, &g, &nt));
		if (pe)
			nt *= (size_t)B;
		double norm = 0;
		for (size_t j = 0; j < nt; j++)
			norm += (double)g0[j] * g0[j];
		CHECK(norm > 0);
		CHECK(memcmp(g0, g1, nt * sizeof(float)) == 0);
		CHECK(a1 < a0);
		if (i == 0)
			fprintf(stderr, "  activations: %zu bytes, %zu with checkpointing\n", a0,
			        a1);
	}
	free(g0), free(g1), free(tok), free(tg);
	model_llama_free(m);
	lora_adapter_free(ad);
}

static char tmpdir[256];

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/llama_test.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(tmpdir) != NULL);
}

static void rm_dir(const char *d)
{
	char p[512];
	const char *f[] = {"config.json", "model.safetensors"};
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof p, "%s/%s", d, f[i]);
		unlink(p);
	}
	rmdir(d);
}

static void roundtrip(int tied)
{
	model_llama *m = NULL, *m2 = NULL;
	model_config cf = tiny_config(tied);
	CHECK_RC(model_llama_new(&m, &cf, 77));
	randomize(m, 78);
	make_tmpdir();
	char dir[300];
	snprintf(dir, sizeof dir, "%s/base", tmpdir);
	CHECK_RC(model_llama_save(m, dir));
	CHECK_RC(model_llama_load(&m2, dir));
	if (!m2) {
		model_llama_free(m);
		return;
	}
	CHECK(m2->cfg.tie_word_embeddings == tied && m2->nparams == m->nparams);
	CHECK(!memcmp(m->params, m2->params, m->nparams * sizeof(float)));
	int tok[12], tg[12];
	batch(2, 6, cf.vocab_size, tok, tg, 5);
	CHECK_RC(model_llama_forward(m, tok, NULL, 2, 6, NULL));
	CHECK_RC(model_llama_forward(m2, tok, NULL, 2, 6, NULL));
	CHECK(!memcmp(model_llama_logits(m), model_llama_logits(m2),
	              sizeof(float) * 12 * cf.vocab_size));
	/* tensor names as transformers writes them */
	char path[400], err[256];
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	fl_st_file *f = NULL;
	CHECK_RC(fl_st_open(&f, path, err, sizeof err));
	if (f) {
		CHECK(fl_st_find(f, "model.embed_tokens.weight") != NULL);
		CHECK(fl_st_find(f, "model.layers.1.mlp.down_proj.weight") != NULL);
		CHECK(fl_st_find(f, "model.layers.0.self_attn.k_proj.weight") != NULL);
		CHECK((fl_st_find(f, "lm_head.weight") != NULL) == !tied);
		CHECK(f->n == 2 * 9 + 2 + !tied);
		const char *fmt = fl_st_meta(f, "format");
		CHECK(fmt && !strcmp(fmt, "pt"));
	}
	fl_st_close(f);
	model_llama_free(m);
	model_llama_free(m2);
	rm_dir(dir);
	rmdir(tmpdir);
}

static void test_save_load_untied(void)
{
	roundtrip(0);
}

static void test_save_load_tied(void)
{
	roundtrip(1);
}

/* A checkpoint stored in BF16 (or F16) loads as its float32 values. */
static void half_checkpoint(fl_st_dtype dt)
{
	model_llama *m = NULL, *m2 = NULL;
	model_config cf = tiny_config(0);
	CHECK_RC(model_llama_new(&m, &cf, 12));
	randomize(m, 13);
	make_tmpdir();
	char dir[300], st[400], err[256];
	snprintf(dir, sizeof dir, "%s/base", tmpdir);
	snprintf(st, sizeof st, "%s/model.safetensors", dir);
	CHECK_RC(model_llama_save(m, dir));
	/* rewrite every tensor of the file in the half type */
	fl_st_file *f = NULL;
	fl_st_writer *w = NULL;
	float *vals = malloc(m->nparams * sizeof(float)), *at = vals;
	CHECK_RC(fl_st_open(&f, st, err, sizeof err));
	CHECK_RC(fl_st_writer_new(&w));
	for (int i = 0; f && w && i < f->n; i++) {
		const fl_st_tensor *t = &f->tensors[i];
		CHECK_RC(fl_st_read_f32(f, t, at, t->nelem));
		CHECK_RC(fl_st_writer_add(w, t->name, dt, t->ndim, t->shape, at));
		at += t->nelem;
	}
	CHECK_RC(fl_st_writer_write(w, st, err, sizeof err));
	fl_st_writer_free(w);
	fl_st_close(f);
	free(vals);
	CHECK_RC(model_llama_load(&m2, dir));
	if (m2) {
		int bad = 0;
		for (size_t i = 0; i < m->nparams; i++) {
			float x = m->params[i];
			float want = dt == FL_ST_BF16 ? fl_bf16_to_f32(fl_f32_to_bf16(x))
			                              : fl_f16_to_f32(fl_f32_to_f16(x));
			bad += m2->params[i] != want;
		}
		CHECK(bad == 0);
		/* and it is not the float32 file by accident */
		CHECK(memcmp(m->params, m2->params, m->nparams * sizeof(float)) != 0);
	}
	model_llama_free(m);
	model_llama_free(m2);
	rm_dir(dir);
	rmdir(tmpdir);
}

static void test_load_bf16(void)
{
	half_checkpoint(FL_ST_BF16);
}

static void test_load_f16(void)
{
	half_checkpoint(FL_ST_F16);
}

static void test_config_json(void)
{
	model_config c, d;
	const char *hf = "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
	                 "\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,"
	                 "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":300,"
	                 "\"rms_norm_eps\":1e-05,\"rope_theta\":500000.0,\"rope_scaling\":null,"
	                 "\"attention_bias\":false,\"hidden_act\":\"silu\",\"eos_token_id\":[7,8],"
	                 "\"bos_token_id\":null,\"tie_word_embeddings\":true,"
	                 "\"initializer_range\":0.02,\"use_cache\":true}";
	CHECK_RC(model_config_parse(&c, hf, strlen(hf), "hf.json"));
	CHECK(c.hidden_size == 64 && c.head_dim == 16 && c.num_kv_heads == 2);
	CHECK(c.eos_token_id == 7 && c.bos_token_id == 1 && c.tie_word_embeddings == 1);
	CHECK(c.rope_theta == 500000.0f && c.rms_norm_eps == 1e-5f);
	CHECK(c.max_position_embeddings == 2048);
	make_tmpdir();
	char path[300];
	snprintf(path, sizeof path, "%s/config.json", tmpdir);
	CHECK_RC(model_config_save(&c, path));
	CHECK_RC(model_config_load(&d, path));
	CHECK(!memcmp(&c, &d, sizeof c));
	FILE *f = fopen(path, "r");
	char buf[4096] = {0};
	if (f) {
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		buf[n] = 0;
		fclose(f);
	}
	CHECK(strstr(buf, "\"LlamaForCausalLM\"") && strstr(buf, "\"model_type\":\t\"llama\""));
	CHECK(strstr(buf, "\"torch_dtype\":\t\"float32\"") && strstr(buf, "1e-05"));
	unlink(path);
	rmdir(tmpdir);
}

/* The rope fields of the Llama-3.2-1B config.json (as transformers 4 writes
 * it), the transformers 5 spelling and the old "type" key. */
#define LLAMA32_BASE                                                                               \
	"\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":64,"    \
	"\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"             \
	"\"num_key_value_heads\":2,\"head_dim\":16,\"vocab_size\":300,"                            \
	"\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-05,\"tie_word_embeddings\":true"
#define LLAMA32_SCALING                                                                            \
	"{\"factor\":32.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"                       \
	"\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"}"

static void test_config_rope_llama3(void)
{
	static const char *const forms[] = {
	    "{" LLAMA32_BASE ",\"rope_theta\":500000.0,\"rope_scaling\":" LLAMA32_SCALING "}",
	    "{" LLAMA32_BASE
	    ",\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":500000.0,"
	    "\"factor\":32.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
	    "\"original_max_position_embeddings\":8192}}",
	    "{" LLAMA32_BASE ",\"rope_theta\":500000.0,\"rope_scaling\":{\"type\":\"llama3\","
	    "\"factor\":32,\"high_freq_factor\":4,\"low_freq_factor\":1,"
	    "\"original_max_position_embeddings\":8192}}",
	    /* both objects, agreeing */
	    "{" LLAMA32_BASE ",\"rope_scaling\":" LLAMA32_SCALING ",\"rope_parameters\":{"
	    "\"rope_type\":\"llama3\",\"rope_theta\":500000,\"factor\":32.0,"
	    "\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
	    "\"original_max_position_embeddings\":8192}}",
	};
	model_config c, d;
	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		int rc = model_config_parse(&c, forms[i], strlen(forms[i]), "llama32.json");
		if (rc)
			fprintf(stderr, "  form %zu: %d\n", i, rc);
		CHECK_RC(rc);
		CHECK(c.rope_theta == 500000.0f && c.max_position_embeddings == 131072);
		CHECK(c.rope_scaling.type == MODEL_ROPE_LLAMA3 && c.rope_scaling.factor == 32.0 &&
		      c.rope_scaling.low_freq_factor == 1.0 &&
		      c.rope_scaling.high_freq_factor == 4.0 &&
		      c.rope_scaling.original_max_position_embeddings == 8192);
		if (i == 0)
			d = c;
		CHECK(!memcmp(&c, &d, sizeof c));
	}
	/* "default" in either object, or no rope type at all, is plain RoPE */
	static const char *const plain[] = {
	    "{" LLAMA32_BASE ",\"rope_scaling\":{\"rope_type\":\"default\"}}",
	    "{" LLAMA32_BASE ",\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":5.0}}",
	    "{" LLAMA32_BASE ",\"rope_parameters\":{\"rope_theta\":5.0},\"rope_scaling\":null}",
	};
	for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
		CHECK_RC(model_config_parse(&c, plain[i], strlen(plain[i]), "plain.json"));
		CHECK(c.rope_scaling.type == MODEL_ROPE_DEFAULT);
		CHECK(c.rope_theta == (i ? 5.0f : 10000.0f));
	}
	/* save writes the llama3 object (floats as floats, as transformers
	 * checks them) and load reads back the same config */
	make_tmpdir();
	char path[300];
	snprintf(path, sizeof path, "%s/config.json", tmpdir);
	CHECK_RC(model_config_save(&d, path));
	CHECK_RC(model_config_load(&c, path));
	CHECK(!memcmp(&c, &d, sizeof c));
	FILE *f = fopen(path, "r");
	char buf[4096] = {0};
	if (f) {
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		buf[n] = 0;
		fclose(f);
	}
	CHECK(strstr(buf, "\"rope_type\":\t\"llama3\"") && strstr(buf, "\"factor\":\t32.0,"));
	CHECK(strstr(buf, "\"low_freq_factor\":\t1.0") &&
	      strstr(buf, "\"high_freq_factor\":\t4.0"));
	CHECK(strstr(buf, "\"original_max_position_embeddings\":\t8192"));
	/* a config built in code is validated on save */
	d.rope_scaling.high_freq_factor = 1.0;
	CHECK(model_config_save(&d, path) == FL_EINVAL);
	d.rope_scaling.high_freq_factor = 4.0;
	d.rope_scaling.type = (model_rope_type)7;
	CHECK(model_config_save(&d, path) == FL_EINVAL);
	unlink(path);
	rmdir(tmpdir);
}

/* Parses json and returns its return code; the error log goes to msg. */
static int parse_logged(const char *json, char *msg, size_t cap)
{
	model_config c;
	FILE *tmp = tmpfile();
	int saved = dup(2), rc;
	fflush(stderr);
	if (tmp)
		dup2(fileno(tmp), 2);
	rc = model_config_parse(&c, json, strlen(json), "Llama-3.2-1B/config.json");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	msg[0] = 0;
	if (tmp) {
		rewind(tmp);
		size_t n = fread(msg, 1, cap - 1, tmp);
		msg[n] = 0;
		fclose(tmp);
	}
	return rc;
}

static void test_config_rope_rejects(void)
{
	struct {
		const char *rope; /* the "rope_scaling" / "rope_parameters" part */
		int rc;
		const char *field; /* named in the error */
	} cases[] = {
	    {"\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2.0}", FL_ENOTSUP,
	     "\"rope_scaling.rope_type\" = \"linear\""},
	    {"\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":2.0}", FL_ENOTSUP,
	     "\"rope_scaling.rope_type\" = \"dynamic\""},
	    {"\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4.0}", FL_ENOTSUP,
	     "\"rope_scaling.type\" = \"yarn\""},
	    {"\"rope_parameters\":{\"rope_type\":\"longrope\",\"rope_theta\":10000.0}", FL_ENOTSUP,
	     "\"rope_parameters.rope_type\" = \"longrope\""},
	    {"\"rope_scaling\":\"llama3\"", FL_EFORMAT, "\"rope_scaling\" must be an object"},
	    {"\"rope_scaling\":{\"rope_type\":3}", FL_EFORMAT, "\"rope_scaling.rope_type\""},
	    {"\"rope_scaling\":{\"rope_type\":\"llama3\",\"low_freq_factor\":1.0,"
	     "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}",
	     FL_EFORMAT, "needs the field \"factor\""},
	    {"\"rope_parameters\":{\"rope_type\":\"llama3\",\"factor\":32.0,\"low_freq_factor\":1."
	     "0,"
	     "\"high_freq_factor\":4.0}",
	     FL_EFORMAT, "\"original_max_position_embeddings\""},
	    {"\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":\"32\",\"low_freq_factor\":1.0,"
	     "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}",
	     FL_EFORMAT, "\"rope_scaling.factor\" must be a number"},
	    {"\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":0,\"low_freq_factor\":1.0,"
	     "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}",
	     FL_EINVAL, "\"rope_scaling.factor\" = 0"},
	    {"\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":-8,\"low_freq_factor\":1.0,"
	     "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}",
	     FL_EINVAL, "\"rope_scaling.factor\" = -8"},
	    {"\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":1e999,\"low_freq_factor\":1.0,"
	     "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}",
	     FL_EINVAL, "\"rope_scaling.factor\" = inf"},
	    {"\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":32,\"low_freq_factor\":0,"
	     "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}",
	     FL_EINVAL, "\"rope_scaling.low_freq_factor\" = 0"},
	    {"\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":32,\"low_freq_factor\":4.0,"
	     "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}",
	     FL_EINVAL, "\"rope_scaling.high_freq_factor\" (4) must be greater"},
	    {"\"rope_parameters\":{\"rope_type\":\"llama3\",\"factor\":32,\"low_freq_factor\":4.0,"
	     "\"high_freq_factor\":1.0,\"original_max_position_embeddings\":8192}",
	     FL_EINVAL, "\"rope_parameters.high_freq_factor\" (1) must be greater"},
	    {"\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":32,\"low_freq_factor\":1.0,"
	     "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":0}",
	     FL_EINVAL, "\"rope_scaling.original_max_position_embeddings\""},
	    {"\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":32,\"low_freq_factor\":1.0,"
	     "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192.5}",
	     FL_EINVAL, "\"rope_scaling.original_max_position_embeddings\""},
	    /* the two objects disagree */
	    {"\"rope_scaling\":" LLAMA32_SCALING ",\"rope_parameters\":{\"rope_type\":\"default\"}",
	     FL_EINVAL, "describe different"},
	    {"\"rope_scaling\":" LLAMA32_SCALING ",\"rope_parameters\":{\"rope_type\":\"llama3\","
	     "\"factor\":8.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
	     "\"original_max_position_embeddings\":8192}",
	     FL_EINVAL, "describe different"},
	};
	char buf[1024], msg[1024];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(buf, sizeof buf, "{" LLAMA32_BASE ",%s}", cases[i].rope);
		int rc = parse_logged(buf, msg, sizeof msg);
		int named = strstr(msg, "Llama-3.2-1B/config.json") && strstr(msg, cases[i].field);
		if (rc != cases[i].rc || !named)
			fprintf(stderr, "  case %zu: got %d want %d, log: %s", i, rc, cases[i].rc,
			        msg);
		CHECK(rc == cases[i].rc && named);
	}
}

/* Logits of a model with llama3 scaling: identical to the default model's at
 * position 0 (no rotation) and wherever every frequency is in the high band,
 * different at later positions when frequencies are scaled; and equal to the
 * double reference with the scaled frequencies. */
static void test_rope_llama3_logits(void)
{
	model_config c = tiny_config(0);
	c.hidden_size = 16;
	c.num_heads = 2;
	c.num_kv_heads = 1;
	c.head_dim = 8; /* wavelengths 6.3, 63, 628, 6283 at theta 10000 */
	enum { B = 1, T = 32 };
	int V = c.vocab_size, tok[B * T], tg[B * T];
	batch(B, T, V, tok, tg, 31);
	model_config scaled = c, high = c;
	/* band edges 16 and 64: one high, one medium, two low frequencies */
	scaled.rope_scaling = (model_rope_scaling){MODEL_ROPE_LLAMA3, 8.0, 1.0, 4.0, 64};
	/* band edges 32768 and 65536: every frequency in the high band */
	high.rope_scaling = (model_rope_scaling){MODEL_ROPE_LLAMA3, 8.0, 1.0, 2.0, 65536};
	const model_config *cf[3] = {&c, &scaled, &high};
	model_llama *m[3] = {NULL, NULL, NULL};
	float *lg[3] = {NULL, NULL, NULL};
	size_t n = (size_t)B * T * V;
	for (int i = 0; i < 3; i++) {
		CHECK_RC(model_llama_new(&m[i], cf[i], 9));
		if (!m[i])
			goto out;
		randomize(m[i], 41);
		CHECK_RC(model_llama_forward(m[i], tok, NULL, B, T, NULL));
		lg[i] = malloc(n * sizeof(float));
		memcpy(lg[i], model_llama_logits(m[i]), n * sizeof(float));
	}
	CHECK(!memcmp(lg[2], lg[0], n * sizeof(float)));
	CHECK(!memcmp(lg[1], lg[0], (size_t)V * sizeof(float))); /* position 0 */
	double maxd = 0;
	for (size_t i = (size_t)(T - 8) * V; i < n; i++)
		maxd = fmax(maxd, fabs(lg[1][i] - lg[0][i]));
	fprintf(stderr, "  llama3 vs default, positions %d-%d: max |dlogit| %.3g\n", T - 8, T - 1,
	        maxd);
	CHECK(maxd > 1e-2);
	/* the scaled model against the double reference */
	double *ref = malloc(sizeof(double) * n);
	ref_ctx rc = {m[1], dcopy(m[1]->params, m[1]->nparams), NULL, tok, tg, B, T, -1, ref};
	ref_loss(&rc);
	int bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += !(fabs(lg[1][i] - ref[i]) <= 1e-5 + 1e-4 * fabs(ref[i]));
	CHECK(bad == 0);
	free(ref), free(rc.p);
out:
	for (int i = 0; i < 3; i++) {
		model_llama_free(m[i]);
		free(lg[i]);
	}
}

static void test_config_rejects(void)
{
	model_config c;
	const char *base = "\"hidden_size\":64,\"intermediate_size\":172,\"num_hidden_layers\":2,"
	                   "\"num_attention_heads\":4,\"vocab_size\":300";
	struct {
		const char *extra;
		int rc;
	} cases[] = {
	    {",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}", FL_ENOTSUP},
	    {",\"attention_bias\":true", FL_ENOTSUP},
	    {",\"mlp_bias\":true", FL_ENOTSUP},
	    {",\"hidden_act\":\"gelu\"", FL_ENOTSUP},
	    {",\"model_type\":\"mistral\"", FL_ENOTSUP},
	    {",\"num_key_value_heads\":3", FL_EINVAL},
	    {",\"num_key_value_heads\":2.5", FL_EFORMAT},
	    {",\"rms_norm_eps\":-1", FL_EFORMAT},
	    {",\"tie_word_embeddings\":\"yes\"", FL_EFORMAT},
	    {",\"head_dim\":15", FL_EINVAL},
	};
	char buf[512];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(buf, sizeof buf, "{%s%s}", base, cases[i].extra);
		int rc = model_config_parse(&c, buf, strlen(buf), "bad.json");
		if (rc != cases[i].rc)
			fprintf(stderr, "  case %zu: got %d want %d\n", i, rc, cases[i].rc);
		CHECK(rc == cases[i].rc);
	}
	CHECK(model_config_parse(&c, "{\"hidden_size\":64}", 18, "x") == FL_EFORMAT);
	CHECK(model_config_parse(&c, "[1,2]", 5, "x") == FL_EFORMAT);
	CHECK(model_config_parse(&c, "{\"hidden", 8, "x") == FL_EFORMAT);
	CHECK(model_config_load(&c, "/nonexistent/config.json") == FL_ENOENT);
}

static void write_file(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	if (f) {
		CHECK(fwrite(data, 1, n, f) == n);
		fclose(f);
	}
}

static void test_load_rejects(void)
{
	model_llama *m = NULL, *m2 = NULL;
	model_config cf = tiny_config(0);
	CHECK_RC(model_llama_new(&m, &cf, 1));
	make_tmpdir();
	char dir[300], st[400], cj[400];
	snprintf(dir, sizeof dir, "%s/base", tmpdir);
	snprintf(st, sizeof st, "%s/model.safetensors", dir);
	snprintf(cj, sizeof cj, "%s/config.json", dir);
	CHECK_RC(model_llama_save(m, dir));
	/* truncated weights */
	struct stat sb;
	CHECK(stat(st, &sb) == 0);
	CHECK(truncate(st, sb.st_size - 5) == 0);
	CHECK(model_llama_load(&m2, dir) == FL_EFORMAT && m2 == NULL);
	/* garbage header length */
	write_file(st, "\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10);
	CHECK(model_llama_load(&m2, dir) < 0 && m2 == NULL);
	/* weights of another shape: the config now says 3 layers */
	CHECK_RC(model_llama_save(m, dir));
	model_config c3 = cf;
	c3.num_layers = 3;
	CHECK_RC(model_config_save(&c3, cj));
	CHECK(model_llama_load(&m2, dir) == FL_ENOENT && m2 == NULL);
	/* wider hidden size: shapes differ */
	model_config cw = cf;
	cw.intermediate_size = 13;
	CHECK_RC(model_config_save(&cw, cj));
	CHECK(model_llama_load(&m2, dir) == FL_ESHAPE && m2 == NULL);
	/* an untied file read as tied has an extra lm_head: accepted with a warning,
	 * but an unknown tensor is refused */
	model_config ct = cf;
	ct.tie_word_embeddings = 1;
	CHECK_RC(model_config_save(&ct, cj));
	CHECK_RC(model_llama_load(&m2, dir));
	model_llama_free(m2);
	m2 = NULL;
	ct.tie_word_embeddings = 0;
	ct.num_layers = 1;
	CHECK_RC(model_config_save(&ct, cj));
	CHECK(model_llama_load(&m2, dir) == FL_ESHAPE && m2 == NULL); /* layers.1.* unexpected */
	/* NaN in a weight */
	CHECK_RC(model_config_save(&cf, cj));
	m->param[MODEL_P_NORM][3] = NAN;
	CHECK_RC(model_llama_save(m, dir));
	CHECK(model_llama_load(&m2, dir) == FL_ENONFINITE && m2 == NULL);
	/* missing folder */
	CHECK(model_llama_load(&m2, "/nonexistent-fedlora-dir") == FL_ENOENT);
	/* no model.safetensors: plain not found, but PyTorch weights in its
	 * place are "not supported" (a sharded safetensors checkpoint loads:
	 * test_load_sharded) */
	CHECK(unlink(st) == 0);
	CHECK(model_llama_load(&m2, dir) == FL_ENOENT && m2 == NULL);
	static const char *other[] = {"pytorch_model.bin", "pytorch_model.bin.index.json"};
	for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
		char op[400];
		snprintf(op, sizeof op, "%s/%s", dir, other[i]);
		write_file(op, "{}", 2);
		CHECK(model_llama_load(&m2, dir) == FL_ENOTSUP && m2 == NULL);
		CHECK(unlink(op) == 0);
	}
	model_llama_free(m);
	rm_dir(dir);
	rmdir(tmpdir);
}

/* The same weights as one file and as three shards written with the repo's
 * writer (plus model.safetensors.index.json) load to the same parameters and
 * give the same loss, bit for bit; a sharded folder whose map lacks a
 * required tensor is refused. */
static void write_sharded(const char *src_dir, const char *dir, const char *skip,
                          const model_config *cfg)
{
	char st[400], p[500], err[256];
	fl_st_file *f = NULL;
	fl_st_writer *w[3] = {NULL, NULL, NULL};
	snprintf(st, sizeof st, "%s/model.safetensors", src_dir);
	CHECK_RC(fl_st_open(&f, st, err, sizeof err));
	CHECK(mkdir(dir, 0755) == 0);
	if (!f)
		return;
	float *vals = malloc(f->n ? (size_t)f->n * 4096 * sizeof(float) : 1), *at = vals;
	char *map = malloc(65536), *idx = malloc(65536 + 64);
	size_t off = 0;
	map[0] = 0;
	size_t total = 0;
	int first = 1;
	for (int s = 0; s < 3; s++)
		CHECK_RC(fl_st_writer_new(&w[s]));
	for (int i = 0; i < f->n; i++) {
		const fl_st_tensor *t = &f->tensors[i];
		int s = i % 3;
		if (skip && !strcmp(t->name, skip))
			continue;
		CHECK(t->nelem <= 4096);
		CHECK_RC(fl_st_read_f32(f, t, at, t->nelem));
		CHECK_RC(fl_st_writer_add(w[s], t->name, FL_ST_F32, t->ndim, t->shape, at));
		at += t->nelem;
		total += t->nbytes;
		off += (size_t)snprintf(map + off, 65536 - off,
		                        "%s\"%s\":\"model-%05d-of-00003.safetensors\"",
		                        first ? "" : ",", t->name, s + 1);
		first = 0;
	}
	for (int s = 0; s < 3; s++) {
		snprintf(p, sizeof p, "%s/model-%05d-of-00003.safetensors", dir, s + 1);
		CHECK_RC(fl_st_writer_write(w[s], p, err, sizeof err));
		fl_st_writer_free(w[s]);
	}
	snprintf(idx, 65536 + 64, "{\"metadata\":{\"total_size\":%zu},\"weight_map\":{%s}}", total,
	         map);
	snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
	write_file(p, idx, strlen(idx));
	snprintf(p, sizeof p, "%s/config.json", dir);
	CHECK_RC(model_config_save(cfg, p));
	free(map);
	free(idx);
	free(vals);
	fl_st_close(f);
}

static void rm_sharded(const char *d)
{
	char p[512];
	for (int s = 1; s <= 3; s++) {
		snprintf(p, sizeof p, "%s/model-%05d-of-00003.safetensors", d, s);
		unlink(p);
	}
	snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
	unlink(p);
	rm_dir(d);
}

static void test_load_sharded(void)
{
	model_llama *m = NULL, *a = NULL, *b = NULL, *c = NULL;
	model_config cf = tiny_config(0);
	CHECK_RC(model_llama_new(&m, &cf, 31));
	randomize(m, 32);
	make_tmpdir();
	char one[300], sh[300], bad[300];
	snprintf(one, sizeof one, "%s/one", tmpdir);
	snprintf(sh, sizeof sh, "%s/sharded", tmpdir);
	snprintf(bad, sizeof bad, "%s/nohead", tmpdir);
	CHECK_RC(model_llama_save(m, one));
	write_sharded(one, sh, NULL, &cf);
	write_sharded(one, bad, "lm_head.weight", &cf);
	CHECK_RC(model_llama_load(&a, one));
	CHECK_RC(model_llama_load(&b, sh));
	if (a && b) {
		CHECK(a->nparams == b->nparams &&
		      !memcmp(a->params, b->params, a->nparams * sizeof(float)));
		int tok[12], tg[12];
		float la = -1, lb = -2;
		batch(2, 6, cf.vocab_size, tok, tg, 9);
		CHECK_RC(model_llama_forward(a, tok, tg, 2, 6, &la));
		CHECK_RC(model_llama_forward(b, tok, tg, 2, 6, &lb));
		CHECK(la > 0 && la == lb);
	}
	CHECK(model_llama_load(&c, bad) == FL_ENOENT && c == NULL);
	model_llama_free(a);
	model_llama_free(b);
	model_llama_free(m);
	rm_dir(one);
	rm_sharded(sh);
	rm_sharded(bad);
	rmdir(tmpdir);
}

static void test_bad_use(void)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL, *bad = NULL;
	model_config cf = tiny_config(0);
	CHECK_RC(model_llama_new(&m, &cf, 1));
	int tok[4] = {1, 2, 3, 11}, tg[4] = {1, 2, 3, 4};
	CHECK(model_llama_forward(m, tok, NULL, 1, 4, NULL) == FL_EINVAL);
	tok[3] = -1;
	CHECK(model_llama_forward(m, tok, NULL, 1, 4, NULL) == FL_EINVAL);
	tok[3] = 0;
	tg[0] = -2;
	CHECK(model_llama_forward(m, tok, tg, 1, 4, NULL) == FL_EINVAL);
	CHECK(model_llama_forward(m, tok, NULL, 1, 65, NULL) == FL_EINVAL); /* > max positions */
	CHECK(model_llama_forward(m, tok, NULL, 0, 4, NULL) == FL_EINVAL);
	CHECK(model_llama_backward(m) == FL_ESTATE);
	CHECK(model_llama_set_mode(m, MODEL_TRAIN_LORA) == FL_ESTATE); /* no adapter */
	CHECK(model_lora_adapter_new(&cf, "q_proj,x_proj", 2, 4, &ad) == FL_EINVAL);
	CHECK(model_lora_adapter_new(&cf, "q_proj", 0, 4, &ad) == FL_EINVAL);
	CHECK(model_lora_adapter_new(&cf, "", 2, 4, &ad) == FL_EINVAL);
	/* an adapter of another model's shape */
	model_config other = cf;
	other.hidden_size = 10;
	other.head_dim = 2;
	CHECK_RC(model_lora_adapter_new(&other, "q_proj", 2, 4, &bad));
	CHECK(model_llama_attach_lora(m, bad) == FL_ESHAPE);
	lora_adapter_free(bad);
	const char *names[1] = {"model.layers.7.self_attn.q_proj"};
	int in[1] = {8}, out[1] = {8};
	CHECK_RC(lora_adapter_new(&bad, 1, names, in, out, 2, 4));
	CHECK(model_llama_attach_lora(m, bad) == FL_ESHAPE);
	lora_adapter_free(bad);
	/* forward then backward without targets */
	tg[0] = 1;
	CHECK_RC(model_llama_set_mode(m, MODEL_TRAIN_FULL));
	CHECK_RC(model_llama_forward(m, tok, NULL, 1, 4, NULL));
	CHECK(model_llama_backward(m) == FL_ESTATE);
	CHECK_RC(model_llama_forward(m, tok, tg, 1, 4, NULL));
	CHECK_RC(model_llama_backward(m));
	CHECK(model_llama_backward(m) == FL_ESTATE); /* dlogits consumed */
	float *pe = NULL;
	CHECK(model_llama_backward_per_example(m, pe) == FL_ESTATE); /* not a LoRA mode */
	CHECK_RC(model_lora_adapter_new(&cf, "all", 3, 6, &ad));
	CHECK(ad && ad->n == 2 * 7 && !strcmp(ad->mats[8].name, "model.layers.1.self_attn.k_proj"));
	CHECK(ad && ad->mats[6].in == 12 && ad->mats[6].out == 8);
	lora_adapter_free(ad);
	model_llama_free(m);
}

/* FLOP counts against a hand count for the tiny config (C 8, I 12, L 2,
 * Hq 4, Hkv 2, D 2, V 11), LoRA r 2 on q_proj,v_proj. */
static void test_flops(void)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	model_config cf = tiny_config(0);
	CHECK_RC(model_llama_new(&m, &cf, 1));
	CHECK_RC(model_lora_adapter_new(&cf, "q_proj,v_proj", 2, 4, &ad));
	CHECK_RC(model_llama_attach_lora(m, ad));
	int B = 2, T = 5;
	double N = B * T;
	/* per token: q 8x8, k 8x4, v 8x4, o 8x8, gate/up 8x12, down 12x8 */
	double layer = 2.0 * (64 + 32 + 32 + 64 + 96 + 96 + 96), qkv = 2.0 * (64 + 32 + 32);
	double head = 2.0 * 8 * 11, att = 2.0 * 2.0 * 4 * 2 * (T + 1) / 2.0;
	double lora_q = 2.0 * 2 * (8 + 8), lora_v = 2.0 * 2 * (8 + 4);
	double fwd = N * (2 * (layer + att) + head + 2 * (lora_q + lora_v));
	CHECK_NEAR(model_llama_flops(m, B, T, 0), fwd, 1e-6, 1e-12);
	CHECK_RC(model_llama_set_mode(m, MODEL_TRAIN_LORA));
	/* backward: head dx; layer 1 everything; layer 0 without q/k/v dx; LoRA
	 * dout B + dB + dA everywhere, dx except in layer 0 (q and v) */
	double bwd = head + (layer + 2 * att) + (layer - qkv + 2 * att);
	/* per adapted matrix: dout B 2*r*out, dB 2*r*out, dA 2*r*in, dx 2*r*in */
	double q1 = 4.0 * 8 + 4.0 * 8 + 4.0 * 8 + 4.0 * 8,
	       v1 = 4.0 * 4 + 4.0 * 4 + 4.0 * 8 + 4.0 * 8;
	bwd += q1 + v1 + (q1 - 4.0 * 8) + (v1 - 4.0 * 8); /* layer 0: no dx */
	CHECK_NEAR(model_llama_flops(m, B, T, 1), fwd + N * bwd, 1e-6, 1e-12);
	model_llama_free(m);
	lora_adapter_free(ad);
}

static const test_case cases[] = {TEST(test_forward_matches_reference),
                                  TEST(test_lora_grad_untied),
                                  TEST(test_lora_grad_tied),
                                  TEST(test_full_grad_untied),
                                  TEST(test_full_grad_tied),
                                  TEST(test_full_grad_with_lora),
                                  TEST(test_training_lowers_loss),
                                  TEST(test_grad_checkpoint),
                                  TEST(test_save_load_untied),
                                  TEST(test_save_load_tied),
                                  TEST(test_load_bf16),
                                  TEST(test_load_f16),
                                  TEST(test_config_json),
                                  TEST(test_config_rejects),
                                  TEST(test_config_rope_llama3),
                                  TEST(test_config_rope_rejects),
                                  TEST(test_rope_llama3_logits),
                                  TEST(test_load_rejects),
                                  TEST(test_load_sharded),
                                  TEST(test_bad_use),
                                  TEST(test_flops),
                                  {0}};

int main(int argc, char **argv)
{
	fl_log_set_level(FL_LOG_WARN);
	return test_main(argc, argv, cases);
}
