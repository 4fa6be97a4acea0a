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
 *     calls out of order are refused;
 *   - the Qwen2 (q/k/v biases), Qwen3 (per-head q/k RMSNorm, explicit
 *     head_dim) and Mistral (sliding window) variants: config parsing, the
 *     same reference and gradient checks, zero biases equal to Llama, the q
 *     norm against a hand computation, missing tensors, sharded loading,
 *     sequences longer than the window refused.
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

/* tiny_config as family `arch`: Qwen2 with q/k/v biases, Qwen3 with q/k
 * norms and head_dim 4 (Hq*D = 16 is not hidden_size 8), Mistral as Llama
 * with a sliding window of 32 tokens (longer than the tests' sequences). */
static model_config tiny_arch_config(int tied, model_arch arch)
{
	model_config c = tiny_config(tied);
	c.arch = arch;
	c.qkv_bias = arch == MODEL_ARCH_QWEN2;
	c.qk_norm = arch == MODEL_ARCH_QWEN3;
	if (arch == MODEL_ARCH_QWEN3)
		c.head_dim = 4;
	if (arch == MODEL_ARCH_MISTRAL) {
		c.sliding_window = c.attn_window = 32;
		c.use_sliding_window = 1;
	}
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
	for (size_t i = 0; i < m->param_size[MODEL_P_QNORM]; i++) {
		m->param[MODEL_P_QNORM][i] += 1.0f;
		m->param[MODEL_P_KNORM][i] += 1.0f;
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

/* y (N,out) (+)= x W^T + b + scale (x A^T) B^T */
static void ref_linear(const ref_ctx *c, double *y, const double *x, int l, int mod, int N, int in,
                       int out, int add)
{
	static const int pidx[MODEL_NMODULE] = {MODEL_P_WQ,   MODEL_P_WK,    MODEL_P_WV,
	                                        MODEL_P_WO,   MODEL_P_WGATE, MODEL_P_WUP,
	                                        MODEL_P_WDOWN};
	static const int bidx[MODEL_NMODULE] = {MODEL_P_BQ, MODEL_P_BK, MODEL_P_BV, MODEL_P_BO,
	                                        -1,         -1,         -1};
	const model_llama *m = c->m;
	const double *W = c->p + poff(m, pidx[mod]) + (size_t)l * in * out;
	const double *bias = bidx[mod] >= 0 && m->param_size[bidx[mod]]
	                         ? c->p + poff(m, bidx[mod]) + (size_t)l * out
	                         : NULL;
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
			if (bias)
				s += bias[o];
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
		if (cf->qk_norm) { /* Qwen3: RMSNorm of every head's D values */
			ref_rmsnorm(q, q, c->p + poff(m, MODEL_P_QNORM) + l * D, N * Hq, D,
			            cf->rms_norm_eps);
			ref_rmsnorm(k, k, c->p + poff(m, MODEL_P_KNORM) + l * D, N * Hkv, D,
			            cf->rms_norm_eps);
		}
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
static void tiny_arch_with_lora(model_config c, const char *targets, model_llama **m,
                                lora_adapter **ad)
{
	CHECK_RC(model_llama_new(m, &c, 5));
	randomize(*m, 17 + c.tie_word_embeddings);
	CHECK_RC(model_lora_adapter_new(&c, targets, 2, 4.0f, ad));
	fill_normal((*ad)->params, (*ad)->n_a + (*ad)->n_b, 0.5, 23);
	CHECK_RC(model_llama_attach_lora(*m, *ad));
}

static void tiny_with_lora(int tied, const char *targets, model_llama **m, lora_adapter **ad)
{
	tiny_arch_with_lora(tiny_config(tied), targets, m, ad);
}

static void lora_gradcheck_cfg(model_config cf)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	tiny_arch_with_lora(cf, "all", &m, &ad);
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
	lora_gradcheck_cfg(tiny_config(0));
}

static void test_lora_grad_tied(void)
{
	lora_gradcheck_cfg(tiny_config(1));
}

/* Full-parameter gradients; with `with_lora`, an adapter on every module is
 * attached (applied in the forward, not trained), so the input gradients
 * flow through its LoRA paths too. */
static void full_gradcheck_cfg(model_config cf, int with_lora)
{
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
	full_gradcheck_cfg(tiny_config(0), 0);
}

static void test_full_grad_with_lora(void)
{
	full_gradcheck_cfg(tiny_config(0), 1);
}

static void test_full_grad_tied(void)
{
	full_gradcheck_cfg(tiny_config(1), 0);
}

/* The families' extra paths under the same checks: LoRA gradients (A of
 * q_proj and k_proj in the lower layer see the q/k norm's input gradient
 * and the biases' identity), and full gradients, which include the biases
 * and the norm weights (tensors MODEL_P_BQ.. MODEL_P_KNORM). */
static void test_arch_grads(void)
{
	static const model_arch archs[] = {MODEL_ARCH_QWEN2, MODEL_ARCH_QWEN3, MODEL_ARCH_MISTRAL};
	for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
		lora_gradcheck_cfg(tiny_arch_config(i == 0, archs[i]));
		full_gradcheck_cfg(tiny_arch_config(0, archs[i]), 1);
	}
	/* Llama's attention_bias: q, k, v and o_proj biased */
	model_config lb = tiny_config(0);
	lb.qkv_bias = lb.o_bias = 1;
	lora_gradcheck_cfg(lb);
	full_gradcheck_cfg(lb, 0);
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
/* Checkpointed gradients equal the plain ones bit for bit, for Llama and for
 * Qwen3 (whose q/k norm activations are recomputed into the one slot too). */
static void grad_checkpoint_cfg(model_config cf)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	tiny_arch_with_lora(cf, "q_proj,k_proj,v_proj,down_proj", &m, &ad);
	if (!m)
		return;
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

static void test_grad_checkpoint(void)
{
	grad_checkpoint_cfg(tiny_config(0));
	grad_checkpoint_cfg(tiny_arch_config(0, MODEL_ARCH_QWEN3));
	grad_checkpoint_cfg(tiny_arch_config(1, MODEL_ARCH_QWEN2));
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

/* Sends stderr (the log) to a temporary file until log_release, which copies
 * what was written into msg (cap bytes, NUL-terminated). */
static FILE *log_capture(int *saved)
{
	FILE *tmp = tmpfile();
	*saved = dup(2);
	fflush(stderr);
	if (tmp)
		dup2(fileno(tmp), 2);
	return tmp;
}

static void log_release(FILE *tmp, int saved, char *msg, size_t cap)
{
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
}

/* Parses json and returns its return code; the error log goes to msg. */
static int parse_logged(const char *json, char *msg, size_t cap)
{
	model_config c;
	int saved;
	FILE *tmp = log_capture(&saved);
	int rc = model_config_parse(&c, json, strlen(json), "Llama-3.2-1B/config.json");
	log_release(tmp, saved, msg, cap);
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
	    {",\"model_type\":\"mistral\",\"attention_bias\":true", FL_ENOTSUP},
	    {",\"mlp_bias\":true", FL_ENOTSUP},
	    {",\"hidden_act\":\"gelu\"", FL_ENOTSUP},
	    {",\"model_type\":\"gemma2\"", FL_ENOTSUP},
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
 * required tensor is refused. write_sharded leaves out the tensor `skip` and
 * writes the tensor `shrink` one row short (each NULL for none). */
static void write_sharded(const char *src_dir, const char *dir, const char *skip,
                          const char *shrink, const model_config *cfg)
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
		int64_t shape[FL_ST_MAX_DIMS];
		memcpy(shape, t->shape, (size_t)t->ndim * sizeof shape[0]);
		size_t ne = t->nelem;
		if (shrink && !strcmp(t->name, shrink)) {
			ne -= ne / (size_t)shape[0];
			shape[0]--;
		}
		CHECK_RC(fl_st_writer_add(w[s], t->name, FL_ST_F32, t->ndim, shape, at));
		at += t->nelem;
		total += ne * sizeof(float);
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

/* In a new tmpdir: m saved as one file (one), as three shards (sh) and as
 * shards without the tensor `skip` (bad); each path 300 bytes. */
static void shard_folders(const model_llama *m, const char *skip, char *one, char *sh, char *bad)
{
	make_tmpdir();
	snprintf(one, 300, "%s/one", tmpdir);
	snprintf(sh, 300, "%s/sharded", tmpdir);
	snprintf(bad, 300, "%s/missing", tmpdir);
	CHECK_RC(model_llama_save(m, one));
	write_sharded(one, sh, NULL, NULL, &m->cfg);
	write_sharded(one, bad, skip, NULL, &m->cfg);
}

static void test_load_sharded(void)
{
	model_llama *m = NULL, *a = NULL, *b = NULL, *c = NULL;
	model_config cf = tiny_config(0);
	CHECK_RC(model_llama_new(&m, &cf, 31));
	randomize(m, 32);
	char one[300], sh[300], bad[300];
	shard_folders(m, "lm_head.weight", one, sh, bad);
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

/* ---- other model families ---- */

/* Loads dir and returns the return code; the error log goes to msg. */
static int load_logged(const char *dir, model_llama **m, char *msg, size_t cap)
{
	int saved;
	FILE *tmp = log_capture(&saved);
	int rc = model_llama_load(m, dir);
	log_release(tmp, saved, msg, cap);
	return rc;
}

/* Logits of every family (LoRA on q_proj and v_proj) against the double
 * reference, which applies the biases and the q/k norms on its own. */
static void test_arch_forward_reference(void)
{
	static const model_arch archs[] = {MODEL_ARCH_QWEN2, MODEL_ARCH_QWEN3, MODEL_ARCH_MISTRAL};
	for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
		model_llama *m = NULL;
		lora_adapter *ad = NULL;
		tiny_arch_with_lora(tiny_arch_config((int)i % 2, archs[i]), "q_proj,v_proj", &m,
		                    &ad);
		if (!m)
			continue;
		int B = 2, T = 6, V = m->cfg.vocab_size;
		int tok[12], tg[12];
		batch(B, T, V, tok, tg, 8 + i);
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
		double rl = ref_loss(&c);
		CHECK_RC(model_llama_forward(m, tok, NULL, B, T, NULL));
		const float *lg = model_llama_logits(m);
		int bad = 0;
		for (int j = 0; lg && j < B * T * V; j++)
			bad += !(fabs(lg[j] - ref[j]) <= 1e-5 + 1e-4 * fabs(ref[j]));
		if (bad)
			fprintf(stderr, "  %s: %d logits off the reference\n",
			        model_arch_name(archs[i]), bad);
		CHECK(lg && bad == 0);
		float loss;
		CHECK_RC(model_llama_forward(m, tok, tg, B, T, &loss));
		CHECK_NEAR(loss, rl, 1e-5, 1e-4);
		free(ref), free(c.p), free(c.lp);
		model_llama_free(m);
		lora_adapter_free(ad);
	}
}

/* Copies every tensor the two models share (the Llama ones) from a to b. */
static void copy_llama_tensors(model_llama *b, const model_llama *a)
{
	for (int i = 0; i < MODEL_P_BQ; i++) {
		CHECK(a->param_size[i] == b->param_size[i]);
		if (a->param_size[i] == b->param_size[i])
			memcpy(b->param[i], a->param[i], a->param_size[i] * sizeof(float));
	}
}

/* A Qwen2 model whose biases are zero computes the Llama model's logits bit
 * for bit; nonzero biases change them. A Qwen3 model with unit q/k norm
 * weights does not equal the Llama model (the norm rescales every head),
 * and its normed q at position 0 (where RoPE is the identity) is the hand
 * computation x * w / sqrt(mean(x^2) + eps) of the q_proj output x. */
static void test_arch_against_llama(void)
{
	int B = 2, T = 5, tok[10], tg[10];
	model_llama *l2 = NULL, *q2 = NULL, *l3 = NULL, *q3 = NULL;
	model_config cl = tiny_config(0), cq2 = tiny_arch_config(0, MODEL_ARCH_QWEN2);
	model_config cq3 = tiny_arch_config(0, MODEL_ARCH_QWEN3), cl3 = tiny_config(0);
	cl3.head_dim = cq3.head_dim;
	batch(B, T, cl.vocab_size, tok, tg, 12);
	size_t n = (size_t)B * T * cl.vocab_size;
	float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
	CHECK_RC(model_llama_new(&l2, &cl, 3));
	CHECK_RC(model_llama_new(&q2, &cq2, 4));
	CHECK_RC(model_llama_new(&l3, &cl3, 5));
	CHECK_RC(model_llama_new(&q3, &cq3, 6));
	if (!l2 || !q2 || !l3 || !q3)
		goto out;
	CHECK(q2->param_size[MODEL_P_BQ] == 2 * 8 && q2->param_size[MODEL_P_BK] == 2 * 4 &&
	      q2->param_size[MODEL_P_BO] == 0 && q2->param_size[MODEL_P_QNORM] == 0);
	CHECK(q2->nparams == model_config_num_params(&cq2));
	CHECK(q3->nparams == model_config_num_params(&cq3));
	CHECK(q3->param_size[MODEL_P_QNORM] == 2 * 4 && q3->param_size[MODEL_P_BQ] == 0);
	randomize(l2, 40);
	copy_llama_tensors(q2, l2);
	for (int i = MODEL_P_BQ; i <= MODEL_P_BV; i++) /* model_llama_new zeroes biases */
		for (size_t j = 0; j < q2->param_size[i]; j++)
			CHECK(q2->param[i][j] == 0.0f);
	CHECK_RC(model_llama_forward(l2, tok, NULL, B, T, NULL));
	memcpy(a, model_llama_logits(l2), n * sizeof(float));
	CHECK_RC(model_llama_forward(q2, tok, NULL, B, T, NULL));
	CHECK(!memcmp(a, model_llama_logits(q2), n * sizeof(float)));
	q2->param[MODEL_P_BK][1] = 0.5f;
	CHECK_RC(model_llama_forward(q2, tok, NULL, B, T, NULL));
	CHECK(memcmp(a, model_llama_logits(q2), n * sizeof(float)) != 0);

	randomize(l3, 41);
	copy_llama_tensors(q3, l3);
	for (size_t j = 0; j < q3->param_size[MODEL_P_QNORM]; j++)
		q3->param[MODEL_P_QNORM][j] = q3->param[MODEL_P_KNORM][j] = 1.0f;
	CHECK_RC(model_llama_forward(l3, tok, NULL, B, T, NULL));
	memcpy(a, model_llama_logits(l3), n * sizeof(float));
	CHECK_RC(model_llama_forward(q3, tok, NULL, B, T, NULL));
	memcpy(b, model_llama_logits(q3), n * sizeof(float));
	double maxd = 0;
	for (size_t i = 0; i < n; i++)
		maxd = fmax(maxd, fabs((double)a[i] - b[i]));
	CHECK(maxd > 1e-2);
	/* the last layer's q norm, by hand, with weights other than 1 */
	static const float w[4] = {0.5f, 2.0f, 1.5f, -1.0f};
	memcpy(q3->param[MODEL_P_QNORM] + 4, w, sizeof w);
	CHECK_RC(model_llama_forward(q3, tok, NULL, 1, 1, NULL));
	const float *x = q3->acts.qpre, *y = q3->acts.q; /* inference: the last layer's */
	int bad = 0;
	for (int h = 0; h < cq3.num_heads; h++) {
		double ss = 0;
		for (int d = 0; d < 4; d++)
			ss += (double)x[h * 4 + d] * x[h * 4 + d];
		double r = 1.0 / sqrt(ss / 4 + 1e-5);
		for (int d = 0; d < 4; d++)
			bad += !(fabs(y[h * 4 + d] - x[h * 4 + d] * r * w[d]) <=
			         1e-6 + 1e-5 * fabs(x[h * 4 + d] * r * w[d]));
	}
	CHECK(bad == 0);
out:
	free(a), free(b);
	model_llama_free(l2), model_llama_free(q2), model_llama_free(l3), model_llama_free(q3);
}

/* config.json of each family as the Hub ships them (sizes shrunk). */
#define ARCH_SIZES                                                                                 \
	"\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"                    \
	"\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":300,"                  \
	"\"hidden_act\":\"silu\",\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0"

static void test_config_arch(void)
{
	struct {
		const char *json;
		model_arch arch;
		int qkv_bias, o_bias, qk_norm, head_dim, window;
	} ok[] = {
	    /* Qwen2.5-0.5B: window fields present, use_sliding_window false */
	    {"{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\"," ARCH_SIZES
	     ",\"max_window_layers\":24,\"sliding_window\":32768,\"use_sliding_window\":false,"
	     "\"tie_word_embeddings\":true}",
	     MODEL_ARCH_QWEN2, 1, 0, 0, 16, 0},
	    /* the window on, but only from layer 24 up of 2 layers */
	    {"{\"model_type\":\"qwen2\"," ARCH_SIZES
	     ",\"max_window_layers\":24,\"sliding_window\":8,\"use_sliding_window\":true}",
	     MODEL_ARCH_QWEN2, 1, 0, 0, 16, 0},
	    {"{\"model_type\":\"qwen2\"," ARCH_SIZES
	     ",\"max_window_layers\":1,\"sliding_window\":8,\"use_sliding_window\":true}",
	     MODEL_ARCH_QWEN2, 1, 0, 0, 16, 8},
	    /* transformers 5's explicit layer_types */
	    {"{\"model_type\":\"qwen2\"," ARCH_SIZES
	     ",\"sliding_window\":8,\"use_sliding_window\":true,"
	     "\"layer_types\":[\"full_attention\",\"full_attention\"]}",
	     MODEL_ARCH_QWEN2, 1, 0, 0, 16, 0},
	    /* Qwen3-0.6B: explicit head_dim wider than hidden/heads */
	    {"{\"architectures\":[\"Qwen3ForCausalLM\"],\"model_type\":\"qwen3\"," ARCH_SIZES
	     ",\"head_dim\":32,\"attention_bias\":false,\"max_window_layers\":28,"
	     "\"sliding_window\":null,\"use_sliding_window\":false,\"tie_word_embeddings\":true}",
	     MODEL_ARCH_QWEN3, 0, 0, 1, 32, 0},
	    {"{\"model_type\":\"qwen3\"," ARCH_SIZES ",\"attention_bias\":true}", MODEL_ARCH_QWEN3,
	     1, 1, 1, 16, 0},
	    /* Mistral-7B-v0.1 (a window) and v0.3 (none) */
	    {"{\"architectures\":[\"MistralForCausalLM\"],\"model_type\":\"mistral\"," ARCH_SIZES
	     ",\"sliding_window\":4096}",
	     MODEL_ARCH_MISTRAL, 0, 0, 0, 16, 4096},
	    {"{\"model_type\":\"mistral\"," ARCH_SIZES ",\"sliding_window\":null,\"head_dim\":8}",
	     MODEL_ARCH_MISTRAL, 0, 0, 0, 8, 0},
	    /* Llama with attention_bias: all four projections */
	    {"{\"model_type\":\"llama\"," ARCH_SIZES ",\"attention_bias\":true}", MODEL_ARCH_LLAMA,
	     1, 1, 0, 16, 0},
	    {"{" ARCH_SIZES "}", MODEL_ARCH_LLAMA, 0, 0, 0, 16, 0},
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		model_config c, d;
		int rc = model_config_parse(&c, ok[i].json, strlen(ok[i].json), "ok.json");
		int same = rc == 0 && c.arch == ok[i].arch && c.qkv_bias == ok[i].qkv_bias &&
		           c.o_bias == ok[i].o_bias && c.qk_norm == ok[i].qk_norm &&
		           c.head_dim == ok[i].head_dim && c.attn_window == ok[i].window;
		if (!same)
			fprintf(stderr,
			        "  accepted case %zu: rc %d arch %d bias %d/%d norm %d D %d "
			        "window %d\n",
			        i, rc, c.arch, c.qkv_bias, c.o_bias, c.qk_norm, c.head_dim,
			        c.attn_window);
		CHECK(same);
		/* what model_config_save writes reads back the same (the
		 * layer_types list is not written: the window fields say it) */
		make_tmpdir();
		char path[300];
		snprintf(path, sizeof path, "%s/config.json", tmpdir);
		CHECK_RC(model_config_save(&c, path));
		CHECK_RC(model_config_load(&d, path));
		CHECK(d.arch == c.arch && d.qkv_bias == c.qkv_bias && d.o_bias == c.o_bias &&
		      d.qk_norm == c.qk_norm && d.head_dim == c.head_dim &&
		      (strstr(ok[i].json, "layer_types") || d.attn_window == c.attn_window));
		unlink(path);
		rmdir(tmpdir);
	}
	struct {
		const char *json;
		int rc;
		const char *msg; /* in the log, after the file name */
	} bad[] = {
	    {"{\"model_type\":\"gemma\"," ARCH_SIZES "}", FL_ENOTSUP,
	     "\"model_type\" \"gemma\" is not supported"},
	    {"{\"model_type\":7," ARCH_SIZES "}", FL_ENOTSUP, "\"model_type\" (not a string)"},
	    {"{\"model_type\":\"mistral\"," ARCH_SIZES ",\"attention_bias\":true}", FL_ENOTSUP,
	     "\"attention_bias\": true is not supported for model_type \"mistral\""},
	    {"{\"model_type\":\"llama\"," ARCH_SIZES ",\"mlp_bias\":true}", FL_ENOTSUP,
	     "\"mlp_bias\": true is not supported"},
	    {"{\"model_type\":\"qwen2\"," ARCH_SIZES ",\"mlp_bias\":true}", FL_ENOTSUP,
	     "\"mlp_bias\": true is not supported"},
	    {"{\"model_type\":\"llama\"," ARCH_SIZES ",\"attention_bias\":1}", FL_EFORMAT,
	     "\"attention_bias\" must be a boolean"},
	    {"{\"model_type\":\"qwen2\"," ARCH_SIZES ",\"use_sliding_window\":\"no\"}", FL_EFORMAT,
	     "\"use_sliding_window\" must be a boolean"},
	    {"{\"model_type\":\"mistral\"," ARCH_SIZES ",\"sliding_window\":0}", FL_EFORMAT,
	     "\"sliding_window\" must be an integer"},
	    {"{\"model_type\":\"qwen3\"," ARCH_SIZES ",\"layer_types\":[\"full_attention\"]}",
	     FL_EFORMAT, "\"layer_types\" must be a list of num_hidden_layers (2)"},
	    {"{\"model_type\":\"qwen3\"," ARCH_SIZES
	     ",\"layer_types\":[\"full_attention\",\"chunked_attention\"]}",
	     FL_ENOTSUP, "\"layer_types\" entries must be"},
	};
	char msg[1024];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc = parse_logged(bad[i].json, msg, sizeof msg);
		int named = strstr(msg, "Llama-3.2-1B/config.json") && strstr(msg, bad[i].msg);
		if (rc != bad[i].rc || !named)
			fprintf(stderr, "  refused case %zu: got %d want %d, log: %s", i, rc,
			        bad[i].rc, msg);
		CHECK(rc == bad[i].rc && named);
	}
	/* model_config_validate refuses flags the family does not build */
	model_config c = tiny_arch_config(0, MODEL_ARCH_QWEN2);
	c.o_bias = 1;
	CHECK(model_config_validate(&c, "x") == FL_EINVAL);
	c = tiny_arch_config(0, MODEL_ARCH_QWEN3);
	c.qk_norm = 0;
	CHECK(model_config_validate(&c, "x") == FL_EINVAL);
}

/* Sliding windows are not implemented: a sequence up to the window computes
 * full causal attention, which is the windowed one; a longer one is refused
 * by the forward. */
static void test_sliding_window(void)
{
	model_config c = tiny_arch_config(0, MODEL_ARCH_MISTRAL);
	c.sliding_window = c.attn_window = 4;
	model_llama *m = NULL;
	CHECK_RC(model_llama_new(&m, &c, 2));
	if (!m)
		return;
	int tok[5] = {1, 2, 3, 4, 5};
	CHECK_RC(model_llama_forward(m, tok, NULL, 1, 4, NULL));
	CHECK(model_llama_forward(m, tok, NULL, 1, 5, NULL) == FL_ENOTSUP);
	CHECK(model_config_check_seq(&c, 4, "x") == 0);
	CHECK(model_config_check_seq(&c, 5, "x") == FL_ENOTSUP);
	c.attn_window = 0; /* the window on no layer */
	CHECK(model_config_check_seq(&c, 5000, "x") == 0);
	model_llama_free(m);
}

/* Qwen2/Qwen3 folders save and load (one file and shards) with their extra
 * tensors; a missing bias or norm weight is refused naming it, and Llama
 * weights under a Qwen config are refused for the first extra tensor. */
static void test_arch_load(void)
{
	static const model_arch archs[] = {MODEL_ARCH_QWEN2, MODEL_ARCH_QWEN3};
	static const char *const miss[] = {"model.layers.1.self_attn.k_proj.bias",
	                                   "model.layers.0.self_attn.q_norm.weight"};
	static const char *const shrunk[] = {"model.layers.0.self_attn.v_proj.bias",
	                                     "model.layers.1.self_attn.k_norm.weight"};
	char msg[2048];
	for (size_t i = 0; i < 2; i++) {
		model_llama *m = NULL, *a = NULL, *b = NULL, *c = NULL;
		model_config cf = tiny_arch_config((int)i, archs[i]);
		CHECK_RC(model_llama_new(&m, &cf, 50));
		if (!m)
			continue;
		randomize(m, 51);
		char one[300], sh[300], bad[300];
		shard_folders(m, miss[i], one, sh, bad);
		CHECK_RC(model_llama_load(&a, one));
		CHECK_RC(model_llama_load(&b, sh));
		CHECK(a && b && a->nparams == m->nparams && b->nparams == m->nparams &&
		      !memcmp(a->params, m->params, m->nparams * sizeof(float)) &&
		      !memcmp(b->params, m->params, m->nparams * sizeof(float)));
		CHECK(a && a->cfg.arch == archs[i] && a->cfg.qkv_bias == cf.qkv_bias &&
		      a->cfg.qk_norm == cf.qk_norm);
		CHECK(load_logged(bad, &c, msg, sizeof msg) == FL_ENOENT && c == NULL);
		CHECK(strstr(msg, miss[i]) != NULL);
		/* a bias or norm weight one element short */
		char sbad[300];
		snprintf(sbad, sizeof sbad, "%s/short", tmpdir);
		write_sharded(one, sbad, NULL, shrunk[i], &cf);
		CHECK(load_logged(sbad, &c, msg, sizeof msg) == FL_ESHAPE && c == NULL);
		CHECK(strstr(msg, shrunk[i]) && strstr(msg, "has shape [3], expected [4]"));
		rm_sharded(sbad);
		/* Llama weights, this family's config */
		model_config cl = cf;
		cl.arch = MODEL_ARCH_LLAMA;
		cl.qkv_bias = cl.qk_norm = 0;
		model_llama *l = NULL;
		CHECK_RC(model_llama_new(&l, &cl, 52));
		char ld[300], cj[400];
		snprintf(ld, sizeof ld, "%s/llama", tmpdir);
		snprintf(cj, sizeof cj, "%s/config.json", ld);
		CHECK_RC(model_llama_save(l, ld));
		CHECK_RC(model_config_save(&cf, cj));
		CHECK(load_logged(ld, &c, msg, sizeof msg) == FL_ENOENT && c == NULL);
		CHECK(strstr(msg, i == 0 ? "model.layers.0.self_attn.q_proj.bias"
		                         : "model.layers.0.self_attn.q_norm.weight") != NULL);
		/* and the family's weights read as Llama: unexpected tensors */
		snprintf(cj, sizeof cj, "%s/config.json", one);
		CHECK_RC(model_config_save(&cl, cj));
		CHECK(load_logged(one, &c, msg, sizeof msg) == FL_ESHAPE && c == NULL);
		CHECK(strstr(msg, "unexpected tensor model.layers.0.self_attn.") != NULL);
		model_llama_free(l);
		model_llama_free(a);
		model_llama_free(b);
		model_llama_free(m);
		rm_dir(one);
		rm_dir(ld);
		rm_sharded(sh);
		rm_sharded(bad);
		rmdir(tmpdir);
	}
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
                                  TEST(test_arch_grads),
                                  TEST(test_arch_forward_reference),
                                  TEST(test_arch_against_llama),
                                  TEST(test_config_arch),
                                  TEST(test_sliding_window),
                                  TEST(test_arch_load),
                                  {0}};

int main(int argc, char **argv)
{
	fl_log_set_level(FL_LOG_WARN);
	return test_main(argc, argv, cases);
}
