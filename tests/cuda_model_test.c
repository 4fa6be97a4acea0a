/*
 * tests/cuda_model_test.c — the whole GPU model (model/cuda/) against the CPU
 * model (model/llama.h) on a tiny configuration with grouped-query attention
 * (Hq 4, Hkv 2), tied and untied embeddings, and the device-agnostic backend
 * (model/backend.h).
 *
 * CPU cases (run everywhere): --device parsing and refusals; the CPU backend's
 * eval equals the model's forward; a step split into micro-batches equals the
 * same step in one batch; a DP-SGD step with no noise and no effective
 * clipping equals a plain SGD step.
 *
 * GPU cases (skipped without a usable GPU): logits, loss, LoRA gradients (A+B
 * and B only), gradients with checkpointing (equal to those without), per-example
 * gradients, a few AdamW steps tracking the CPU's
 * losses, micro-batching, DP-SGD (noise-free equivalence and the noise's
 * scale), and the backend's cuda path; logits, LoRA and full gradients again
 * for the Qwen2, Qwen3 and biased-Llama families. The CPU model's weights and adapter are
 * rounded to bf16 first, so differences come only from the GPU's bf16
 * activations. Gradients are compared per adapter matrix by relative L2 error
 * ||g_gpu - g_cpu|| / ||g_cpu|| (bf16 activations: 5e-2) and overall cosine;
 * every comparison prints its numbers.
 *
 * The GPU cases run the default fused path (merged q/k/v and gate/up GEMMs,
 * fused kernels, bf16 training logits); gpu_fusion_off runs the logits,
 * LoRA gradient and full-gradient comparisons again with FEDLORA_FUSE=0 and
 * checks that both paths give the same gradients. gpu_families runs every
 * family's checks twice, with FEDLORA_FUSE=1 (q/k/v biases in the fused
 * split, Qwen3's q/k norm on the merged rows) and FEDLORA_FUSE=0, then
 * compares the two paths and reads every stored weight back.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"
#include "model/backend.h"
#include "model/llama.h"
#include "privacy/noise.h"
#include "tests/test.h"
#ifdef FL_HAVE_CUDA
#include "model/cuda/cuda.h"
#endif

#define TB 4  /* sequences */
#define TT 16 /* tokens per sequence */

static float bf16r(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u += 0x7fffu + ((u >> 16) & 1u);
	u &= 0xffff0000u;
	memcpy(&f, &u, 4);
	return f;
}

static model_config tiny_config(int tied)
{
	model_config c;
	memset(&c, 0, sizeof c);
	c.hidden_size = 64;
	c.intermediate_size = 96;
	c.num_layers = 2;
	c.num_heads = 4;
	c.num_kv_heads = 2;
	c.head_dim = 16;
	c.vocab_size = 97;
	c.max_position_embeddings = 64;
	c.tie_word_embeddings = tied;
	c.bos_token_id = 1;
	c.eos_token_id = 2;
	c.rms_norm_eps = 1e-5f;
	c.rope_theta = 10000.0f;
	return c;
}

/* The family make_model builds (model/config.h): Llama by default; the
 * gpu_families case sets Qwen2 (q/k/v biases), Qwen3 (q/k norms, head_dim
 * 32 so that Hq*D is not hidden_size) and Llama with attention_bias. */
static model_arch test_arch;
static int test_llama_bias;

static model_config family_config(int tied)
{
	model_config c = tiny_config(tied);
	c.arch = test_arch;
	c.qkv_bias = test_arch == MODEL_ARCH_QWEN2 || test_llama_bias;
	c.o_bias = test_llama_bias;
	c.qk_norm = test_arch == MODEL_ARCH_QWEN3;
	if (c.qk_norm)
		c.head_dim = 32;
	return c;
}

/* A tiny model with bf16-representable weights of some spread, and an
 * adapter on every module with nonzero (bf16-representable) A and B. */
static int make_model(int tied, model_llama **mo, lora_adapter **ado)
{
	model_config c = family_config(tied);
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	fl_rng r;
	int rv;
	if ((rv = model_llama_new(&m, &c, 5)) != 0)
		return rv;
	fl_rng_init(&r, 77, tied);
	for (size_t i = 0; i < m->nparams; i++)
		m->params[i] = (float)(0.12 * fl_rng_normal(&r));
	for (size_t i = 0; i < m->param_size[MODEL_P_EMBED]; i++)
		m->param[MODEL_P_EMBED][i] *= 8.0f; /* embeddings ~ 1 */
	int k3[5] = {MODEL_P_LN1, MODEL_P_LN2, MODEL_P_NORM, MODEL_P_QNORM, MODEL_P_KNORM};
	for (int j = 0; j < 5; j++)
		for (size_t i = 0; i < m->param_size[k3[j]]; i++)
			m->param[k3[j]][i] += 1.0f;
	for (size_t i = 0; i < m->nparams; i++)
		m->params[i] = bf16r(m->params[i]);
	if ((rv = model_lora_adapter_new(&c, "all", 4, 8.0f, &ad)) != 0) {
		model_llama_free(m);
		return rv;
	}
	lora_adapter_init(ad, 3);
	float *b = lora_adapter_b(ad);
	for (size_t i = 0; i < ad->n_b; i++)
		b[i] = (float)(0.05 * fl_rng_normal(&r));
	for (size_t i = 0; i < ad->n_a + ad->n_b; i++)
		ad->params[i] = bf16r(ad->params[i]);
	*mo = m;
	*ado = ad;
	return 0;
}

static void make_batch(int B, int T, int V, int *tok, int *tg, uint64_t seed)
{
	fl_rng r;
	fl_rng_init(&r, seed, 11);
	for (int i = 0; i < B * T; i++) {
		tok[i] = (int)fl_rng_below(&r, (uint64_t)V);
		tg[i] = (int)fl_rng_below(&r, (uint64_t)V);
	}
	tg[1] = -1; /* an ignored position */
}

static double rel_l2(const float *got, const float *ref, size_t n)
{
	double d = 0, s = 0;
	for (size_t i = 0; i < n; i++) {
		d += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
		s += (double)ref[i] * ref[i];
	}
	return s > 0 ? sqrt(d / s) : sqrt(d);
}

/* ---- CPU cases ---------------------------------------------------------- */

static void test_device_resolve(void)
{
	model_device d = MODEL_DEVICE_CUDA;
	char why[256];
	CHECK_RC(model_device_resolve("cpu", &d, why, sizeof why));
	CHECK(d == MODEL_DEVICE_CPU);
	CHECK_RC(model_device_resolve(NULL, &d, why, sizeof why));
	CHECK(d == MODEL_DEVICE_CPU);
	CHECK(model_device_resolve("gpu0", &d, why, sizeof why) == FL_EINVAL);
	CHECK(why[0] != 0);
	CHECK_RC(model_device_resolve("auto", &d, why, sizeof why));
	fprintf(stderr, "  auto -> %s (%s)\n", model_device_name(d), why);
	int rc = model_device_resolve("cuda", &d, why, sizeof why);
#ifdef FL_HAVE_CUDA
	if (model_cuda_probe(NULL, 0) == 0) {
		CHECK(rc == 0 && d == MODEL_DEVICE_CUDA);
	} else {
		CHECK(rc == FL_ECUDA);
		CHECK(why[0] != 0);
		fprintf(stderr, "  cuda refused: %s\n", why);
	}
#else
	CHECK(rc == FL_ENOTSUP);
	CHECK(strstr(why, "no CUDA support") != NULL);
#endif
}

static void test_backend_cpu_eval(void)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	model_backend *b = NULL;
	model_backend_opts o;
	int tok[TB * TT], tg[TB * TT];
	CHECK_RC(make_model(0, &m, &ad));
	if (!m)
		return;
	make_batch(TB, TT, m->cfg.vocab_size, tok, tg, 1);
	model_backend_opts_default(&o);
	o.max_batch = 3; /* 4 sequences: two slices */
	o.max_seq = TT;
	CHECK_RC(model_backend_open(&b, m, &o));
	CHECK_RC(model_backend_attach_lora(b, ad));
	double ls = 0;
	long cnt = 0, cor = 0;
	CHECK_RC(model_backend_eval(b, tok, tg, TB, TT, &ls, &cnt, &cor));
	float ref;
	CHECK_RC(model_llama_forward(m, tok, tg, TB, TT, &ref));
	CHECK(cnt == TB * TT - 1);
	CHECK(cor == m->ncorrect);
	CHECK_NEAR(ls / cnt, ref, 1e-6, 1e-5);
	CHECK(model_backend_eval(b, tok, tg, TB, TT + 1, &ls, &cnt, &cor) == FL_EINVAL);
	model_backend_close(b);
	lora_adapter_free(ad);
	model_llama_free(m);
}

/* One SGD step through the backend with max_batch mb; returns the adapter
 * after the step (caller frees). */
static lora_adapter *cpu_step(int mb, int dp, const char *device)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	model_backend *b = NULL;
	model_backend_opts o;
	priv_noise *pn = NULL;
	uint8_t key[32] = {9};
	int tok[TB * TT], tg[TB * TT], rc;
	if (make_model(1, &m, &ad) != 0)
		return NULL;
	make_batch(TB, TT, m->cfg.vocab_size, tok, tg, 2);
	tg[1] = 5; /* every example with T targets: mean of example means = batch mean */
	model_backend_opts_default(&o);
	o.device = device;
	o.max_batch = mb;
	o.max_seq = TT;
	o.mode = MODEL_TRAIN_LORA;
	o.optim.kind = MODEL_OPT_SGD;
	double loss = NAN;
	int ncl = -1;
	if ((rc = model_backend_open(&b, m, &o)) != 0 ||
	    (rc = model_backend_attach_lora(b, ad)) != 0)
		goto out;
	if (dp) {
		priv_noise_new_keyed(&pn, key);
		rc = model_backend_dp_step(b, tok, tg, TB, TT, 1e6, 0.0, TB, pn, 0.5f, &loss, &ncl);
		CHECK(ncl == 0);
	} else {
		rc = model_backend_train_step(b, tok, tg, TB, TT, 0.5f, &loss);
	}
	if (rc == 0)
		rc = model_backend_sync_lora(b);
	CHECK(isfinite(loss));
out:
	CHECK_RC(rc);
	priv_noise_free(pn);
	model_backend_close(b);
	model_llama_free(m);
	if (rc) {
		lora_adapter_free(ad);
		return NULL;
	}
	return ad;
}

static void compare_adapters(const char *what, const lora_adapter *a, const lora_adapter *b,
                             double tol)
{
	size_t n = a->n_a + a->n_b;
	double e = rel_l2(a->params, b->params, n);
	fprintf(stderr, "  %s: rel L2 %.3g (tol %g)\n", what, e, tol);
	CHECK(e <= tol);
}

static void test_backend_cpu_microbatch(void)
{
	lora_adapter *one = cpu_step(TB, 0, "cpu"), *two = cpu_step(2, 0, "cpu");
	lora_adapter *init = NULL;
	model_llama *m = NULL;
	CHECK(one && two);
	if (one && two) {
		compare_adapters("cpu step, 1 vs 2 micro-batches", two, one, 1e-5);
		CHECK_RC(make_model(1, &m, &init));
		if (init) /* the step did change the adapter */
			CHECK(rel_l2(one->params, init->params, init->n_a + init->n_b) > 1e-4);
	}
	lora_adapter_free(one);
	lora_adapter_free(two);
	lora_adapter_free(init);
	model_llama_free(m);
}

static void test_backend_cpu_dp_equals_sgd(void)
{
	lora_adapter *sgd = cpu_step(TB, 0, "cpu"), *dp = cpu_step(3, 1, "cpu");
	CHECK(sgd && dp);
	if (sgd && dp)
		compare_adapters("cpu dp (no noise, no clipping) vs sgd", dp, sgd, 1e-5);
	lora_adapter_free(sgd);
	lora_adapter_free(dp);
}

/* ---- GPU cases ------------------------------------------------------------ */

#ifdef FL_HAVE_CUDA
static char gpu_why[200];
static int gpu_ok(void)
{
	static int state = -1;
	if (state < 0)
		state = model_cuda_probe(gpu_why, sizeof gpu_why) == 0;
	return state;
}
static double cosine(const float *a, const float *b, size_t n)
{
	double ab = 0, aa = 0, bb = 0;
	for (size_t i = 0; i < n; i++) {
		ab += (double)a[i] * b[i];
		aa += (double)a[i] * a[i];
		bb += (double)b[i] * b[i];
	}
	return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}

#define NEED_GPU()                                                                                 \
	do {                                                                                       \
		if (!gpu_ok())                                                                     \
			TEST_SKIP("no CUDA device (%s)", gpu_why);                                 \
	} while (0)

/* Gradient checkpointing in the GPU models gpu_from builds. */
static int gpu_ckpt;

static const char *param_names[MODEL_NPARAM] = {"embed", "ln1",   "wq",  "wk",    "wv",    "wo",
                                                "ln2",   "wgate", "wup", "wdown", "norm",  "head",
                                                "bq",    "bk",    "bv",  "bo",    "qnorm", "knorm"};

/* The caller's FEDLORA_FUSE (scripts/gpu-check.sh exports 0 when the fused
 * op tests fail), saved by the cases that set it and put back after them. */
static int fuse_had;
static char fuse_prev[16];

static void fuse_env_save(void)
{
	const char *e = getenv("FEDLORA_FUSE");
	fuse_had = e != NULL;
	snprintf(fuse_prev, sizeof fuse_prev, "%s", e ? e : "");
}

static void fuse_env_restore(void)
{
	if (fuse_had)
		setenv("FEDLORA_FUSE", fuse_prev, 1);
	else
		unsetenv("FEDLORA_FUSE");
}

/* The path FEDLORA_FUSE asks for: fused unless "0" (every family). */
static int fuse_wanted(void)
{
	const char *e = getenv("FEDLORA_FUSE");
	return !(e && !strcmp(e, "0"));
}

/* The GPU configuration and weights of m (full: full-parameter mode). */
static void cuda_setup(const model_llama *m, int max_batch, int full, model_cuda_config *cc,
                       model_cuda_weights *w)
{
	const model_config *c = &m->cfg;
	memset(cc, 0, sizeof *cc);
	cc->vocab = c->vocab_size;
	cc->hidden = c->hidden_size;
	cc->inter = c->intermediate_size;
	cc->layers = c->num_layers;
	cc->heads = c->num_heads;
	cc->kv_heads = c->num_kv_heads;
	cc->head_dim = c->head_dim;
	cc->tied = c->tie_word_embeddings;
	cc->eps = c->rms_norm_eps;
	cc->inv_freq = m->rope_inv_freq;
	cc->max_batch = max_batch;
	cc->max_seq = TT;
	cc->full = full;
	cc->grad_checkpoint = gpu_ckpt;
	cc->qkv_bias = c->qkv_bias;
	cc->o_bias = c->o_bias;
	cc->qk_norm = c->qk_norm;
	/* NULL for the tensors this family lacks (size 0): the tied head, biases, norms */
#define P(k) (m->param_size[k] ? m->param[k] : NULL)
	*w = (model_cuda_weights){
	    P(MODEL_P_EMBED), P(MODEL_P_LN1),   P(MODEL_P_WQ),    P(MODEL_P_WK),  P(MODEL_P_WV),
	    P(MODEL_P_WO),    P(MODEL_P_LN2),   P(MODEL_P_WGATE), P(MODEL_P_WUP), P(MODEL_P_WDOWN),
	    P(MODEL_P_NORM),  P(MODEL_P_HEAD),  P(MODEL_P_BQ),    P(MODEL_P_BK),  P(MODEL_P_BV),
	    P(MODEL_P_BO),    P(MODEL_P_QNORM), P(MODEL_P_KNORM)};
#undef P
}

/* The GPU twin of m with the adapter attached (train_a as given). */
static model_cuda *gpu_from(model_llama *m, lora_adapter *ad, int max_batch, int train_a, int sgd)
{
	const model_config *c = &m->cfg;
	model_cuda_config cc;
	model_cuda_weights w;
	cuda_setup(m, max_batch, 0, &cc, &w);
	model_cuda *g = NULL;
	model_cuda_lora_mat *mats = calloc((size_t)ad->n, sizeof *mats);
	int n = 0, rc;
	if ((rc = model_llama_attach_lora(m, ad)) != 0 ||
	    (rc = model_cuda_new(&g, &cc, &w, 0)) != 0)
		goto fail;
	for (int l = 0; l < c->num_layers; l++)
		for (int k = 0; k < MODEL_NMODULE; k++) {
			int i = m->lora_idx[l * MODEL_NMODULE + k];
			if (i < 0)
				continue;
			mats[n].layer = l;
			mats[n].module = k;
			mats[n].a_off = (size_t)(ad->mats[i].A - ad->params);
			mats[n].b_off = (size_t)(ad->mats[i].B - ad->params);
			n++;
		}
	if ((rc = model_cuda_lora_attach(g, n, mats, ad->r, lora_adapter_scale(ad), ad->n_a,
	                                 ad->n_b, ad->params, train_a)) != 0)
		goto fail;
	model_cuda_optim oo = {sgd ? 0 : 1, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f};
	if ((rc = model_cuda_optim_set(g, &oo)) != 0)
		goto fail;
	fprintf(stderr, "  (gpu model: %s attention, fusion %s)\n", model_cuda_attention(g),
	        model_cuda_fused(g) ? "on" : "off");
	CHECK(model_cuda_fused(g) == fuse_wanted());
	free(mats);
	return g;
fail:
	fprintf(stderr, "  gpu model setup failed: %s\n", fl_strerror(rc));
	free(mats);
	model_cuda_free(g);
	return NULL;
}

static void test_gpu_logits(void)
{
	NEED_GPU();
	for (int tied = 0; tied < 2; tied++) {
		model_llama *m = NULL;
		lora_adapter *ad = NULL;
		int tok[TB * TT], tg[TB * TT];
		CHECK_RC(make_model(tied, &m, &ad));
		model_cuda *g = gpu_from(m, ad, TB, 1, 0);
		CHECK(g != NULL);
		if (!g) {
			lora_adapter_free(ad);
			model_llama_free(m);
			continue;
		}
		int V = m->cfg.vocab_size;
		size_t n = (size_t)TB * TT * V;
		make_batch(TB, TT, V, tok, tg, 3);
		float *lg = malloc(n * sizeof *lg);
		CHECK_RC(model_cuda_logits(g, tok, TB, TT, lg));
		CHECK_RC(model_llama_forward(m, tok, NULL, TB, TT, NULL));
		const float *lc = model_llama_logits(m);
		double maxabs = 0, scale = 0;
		for (size_t i = 0; i < n; i++) {
			maxabs = fmax(maxabs, fabs((double)lg[i] - lc[i]));
			scale = fmax(scale, fabs((double)lc[i]));
		}
		double e = rel_l2(lg, lc, n);
		fprintf(stderr, "  logits (%s): rel L2 %.3g, max abs %.3g, max |logit| %.3g\n",
		        tied ? "tied" : "untied", e, maxabs, scale);
		CHECK(e < 2e-2);
		CHECK(maxabs < 0.05 * scale + 0.05);
		/* loss and accuracy through eval */
		double ls = 0;
		long cnt = 0, cor = 0;
		float ref;
		CHECK_RC(model_cuda_eval(g, tok, tg, TB, TT, &ls, &cnt, &cor));
		CHECK_RC(model_llama_forward(m, tok, tg, TB, TT, &ref));
		fprintf(stderr, "  loss gpu %.6f cpu %.6f; correct gpu %ld cpu %ld of %ld\n",
		        ls / cnt, ref, cor, m->ncorrect, cnt);
		CHECK(cnt == m->ntargets);
		CHECK_NEAR(ls / cnt, ref, 1e-2, 5e-3);
		CHECK(labs(cor - m->ncorrect) <= 2);
		free(lg);
		model_cuda_free(g);
		lora_adapter_free(ad);
		model_llama_free(m);
	}
}

/* LoRA gradients GPU vs CPU; train_a 0: B only. */
static void grads_case(int tied, int train_a)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	int tok[TB * TT], tg[TB * TT];
	CHECK_RC(make_model(tied, &m, &ad));
	model_cuda *g = gpu_from(m, ad, TB, train_a, 0);
	CHECK(g != NULL);
	if (!g)
		goto out;
	size_t P = ad->n_a + ad->n_b;
	float *gg = calloc(P, sizeof *gg);
	double lg = 0;
	float lc;
	make_batch(TB, TT, m->cfg.vocab_size, tok, tg, 4);
	CHECK_RC(model_cuda_grad(g, tok, tg, TB, TT, &lg, gg));
	CHECK_RC(model_llama_set_mode(m, train_a ? MODEL_TRAIN_LORA : MODEL_TRAIN_LORA_B));
	CHECK_RC(model_llama_forward(m, tok, tg, TB, TT, &lc));
	CHECK_RC(model_llama_backward(m));
	const float *gc = m->lora_grad;
	fprintf(stderr, "  %s, %s: loss gpu %.6f cpu %.6f\n", tied ? "tied" : "untied",
	        train_a ? "A+B" : "B only", lg, lc);
	CHECK_NEAR(lg, lc, 1e-2, 5e-3);
	double worst = 0;
	for (int i = 0; i < ad->n; i++) {
		const lora_mat *mt = &ad->mats[i];
		size_t ao = (size_t)(mt->A - ad->params), bo = (size_t)(mt->B - ad->params);
		size_t na = (size_t)ad->r * mt->in, nb = (size_t)mt->out * ad->r;
		double eb = rel_l2(gg + bo, gc + bo, nb);
		double ea = train_a ? rel_l2(gg + ao, gc + ao, na) : 0;
		if (!train_a) /* A frozen: no gradient at all */
			for (size_t j = 0; j < na; j++)
				CHECK(gg[ao + j] == 0.0f);
		fprintf(stderr, "    %-40s dA rel %.3g  dB rel %.3g\n", mt->name, ea, eb);
		worst = fmax(worst, fmax(ea, eb));
	}
	double cs = train_a ? cosine(gg, gc, P) : cosine(gg + ad->n_a, gc + ad->n_a, ad->n_b);
	fprintf(stderr, "  worst matrix rel L2 %.3g (tol 5e-2), cosine %.6f (tol 0.998)\n", worst,
	        cs);
	CHECK(worst < 5e-2);
	CHECK(cs > 0.998);
	free(gg);
out:
	model_cuda_free(g);
	lora_adapter_free(ad);
	model_llama_free(m);
}

/* Runs grads_case(tied, train_a) with FEDLORA_ATTN=gemm, then restores the
 * caller's FEDLORA_ATTN (scripts/gpu-check.sh exports gemm when the flash
 * probe fails, and later cases must keep it). */
static void grads_case_gemm(int tied, int train_a)
{
	const char *env = getenv("FEDLORA_ATTN");
	char prev[16] = "";
	if (env)
		snprintf(prev, sizeof prev, "%s", env);
	setenv("FEDLORA_ATTN", "gemm", 1);
	grads_case(tied, train_a);
	if (env)
		setenv("FEDLORA_ATTN", prev, 1);
	else
		unsetenv("FEDLORA_ATTN");
}

static void test_gpu_grads(void)
{
	NEED_GPU();
	grads_case(0, 1);
	grads_case(1, 1);
	grads_case(1, 0);
	/* the other attention implementation (GEMMs + softmax kernels) */
	grads_case_gemm(0, 1);
}

/* Gradient checkpointing: the same kernels recompute the same activations,
 * so the gradients equal those without it (and, like them, the CPU's), on
 * the first pass and on the passes replayed from the CUDA graph; the model
 * holds less memory. */
static void test_gpu_grad_checkpoint(void)
{
	NEED_GPU();
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	int tok[TB * TT], tg[TB * TT];
	CHECK_RC(make_model(0, &m, &ad));
	model_cuda *g0 = gpu_from(m, ad, TB, 1, 0);
	gpu_ckpt = 1;
	model_cuda *g1 = gpu_from(m, ad, TB, 1, 0);
	gpu_ckpt = 0;
	CHECK(g0 != NULL && g1 != NULL);
	if (!g0 || !g1)
		goto out;
	size_t P = ad->n_a + ad->n_b;
	float *a = calloc(P, sizeof *a), *b = calloc(P, sizeof *b);
	double l0 = 0, l1 = 0;
	float lc;
	make_batch(TB, TT, m->cfg.vocab_size, tok, tg, 4);
	CHECK_RC(model_cuda_grad(g0, tok, tg, TB, TT, &l0, a));
	for (int pass = 0; pass < 3; pass++) { /* pass 1 captures the graph, 2 replays it */
		CHECK_RC(model_cuda_grad(g1, tok, tg, TB, TT, &l1, b));
		double e = rel_l2(b, a, P);
		fprintf(stderr, "  pass %d: loss %.6f vs %.6f, grads rel L2 %.3g (%s)\n", pass, l1,
		        l0, e, memcmp(a, b, P * sizeof *a) ? "not bit-identical" : "bit-identical");
		CHECK(e <= 1e-6);
		CHECK_NEAR(l1, l0, 1e-6, 1e-6);
	}
	CHECK_RC(model_llama_set_mode(m, MODEL_TRAIN_LORA));
	CHECK_RC(model_llama_forward(m, tok, tg, TB, TT, &lc));
	CHECK_RC(model_llama_backward(m));
	double ec = rel_l2(b, m->lora_grad, P), cs = cosine(b, m->lora_grad, P);
	size_t m0 = model_cuda_mem_bytes(g0), m1 = model_cuda_mem_bytes(g1);
	fprintf(stderr, "  vs cpu: rel L2 %.3g, cosine %.6f; device memory %zu -> %zu bytes\n", ec,
	        cs, m0, m1);
	CHECK(ec < 5e-2 && cs > 0.998);
	CHECK(m1 < m0);
	free(a), free(b);
out:
	model_cuda_free(g0);
	model_cuda_free(g1);
	lora_adapter_free(ad);
	model_llama_free(m);
}

static void test_gpu_per_example(void)
{
	NEED_GPU();
	for (int train_a = 1; train_a >= 0; train_a--) {
		model_llama *m = NULL;
		lora_adapter *ad = NULL;
		int tok[TB * TT], tg[TB * TT];
		CHECK_RC(make_model(0, &m, &ad));
		model_cuda *g = gpu_from(m, ad, 3, train_a, 0); /* 4 examples in slices of 3 */
		CHECK(g != NULL);
		if (g) {
			size_t n = model_cuda_trainable(g);
			float *pg = calloc((size_t)TB * n, sizeof *pg);
			float *pc = calloc((size_t)TB * n, sizeof *pc);
			make_batch(TB, TT, m->cfg.vocab_size, tok, tg, 5);
			for (int t = 0; t < TT; t++)
				tg[2 * TT + t] = -1; /* example 2 has no targets: zero row */
			CHECK_RC(model_cuda_grad_per_example(g, tok, tg, TB, TT, pg));
			CHECK_RC(model_llama_set_mode(m, train_a ? MODEL_TRAIN_LORA
			                                         : MODEL_TRAIN_LORA_B));
			CHECK_RC(model_llama_forward(m, tok, tg, TB, TT, NULL));
			CHECK_RC(model_llama_backward_per_example(m, pc));
			for (int e = 0; e < TB; e++) {
				double err = rel_l2(pg + e * n, pc + e * n, n);
				fprintf(stderr, "  per-example %s, example %d: rel L2 %.3g\n",
				        train_a ? "A+B" : "B only", e, err);
				CHECK(err < 5e-2);
			}
			free(pg);
			free(pc);
		}
		model_cuda_free(g);
		lora_adapter_free(ad);
		model_llama_free(m);
	}
}

static void test_gpu_microbatch(void)
{
	NEED_GPU();
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	int tok[TB * TT], tg[TB * TT];
	CHECK_RC(make_model(0, &m, &ad));
	model_cuda *g1 = gpu_from(m, ad, TB, 1, 0), *g2 = gpu_from(m, ad, 1, 1, 0);
	CHECK(g1 && g2);
	if (g1 && g2) {
		size_t P = ad->n_a + ad->n_b;
		float *a = calloc(P, sizeof *a), *b = calloc(P, sizeof *b);
		double l1, l2;
		make_batch(TB, TT, m->cfg.vocab_size, tok, tg, 6);
		CHECK_RC(model_cuda_grad(g1, tok, tg, TB, TT, &l1, a));
		CHECK_RC(model_cuda_grad(g2, tok, tg, TB, TT, &l2, b));
		double e = rel_l2(b, a, P);
		fprintf(stderr,
		        "  micro-batches of 1 vs one batch: loss %.6f vs %.6f, grad rel %.3g\n", l2,
		        l1, e);
		CHECK_NEAR(l2, l1, 1e-5, 1e-5);
		CHECK(e < 1e-2);
		free(a);
		free(b);
	}
	model_cuda_free(g1);
	model_cuda_free(g2);
	lora_adapter_free(ad);
	model_llama_free(m);
}

static void test_gpu_training_tracks_cpu(void)
{
	NEED_GPU();
	model_llama *m = NULL;
	lora_adapter *ad = NULL, *ad_cpu = NULL;
	model_backend *b = NULL;
	model_backend_opts o;
	int tok[TB * TT], tg[TB * TT];
	CHECK_RC(make_model(0, &m, &ad));
	CHECK_RC(lora_adapter_clone(&ad_cpu, ad));
	model_cuda *g = gpu_from(m, ad, TB, 1, 0);
	CHECK(g != NULL);
	if (!g || !ad_cpu)
		goto out;
	model_backend_opts_default(&o);
	o.max_batch = TB;
	o.max_seq = TT;
	o.mode = MODEL_TRAIN_LORA;
	CHECK_RC(model_backend_open(&b, m, &o));
	CHECK_RC(model_backend_attach_lora(b, ad_cpu));
	make_batch(TB, TT, m->cfg.vocab_size, tok, tg, 7);
	double first = 0, lastg = 0;
	for (int s = 0; s < 8; s++) {
		double lgpu = NAN, lcpu = NAN;
		CHECK_RC(model_cuda_train_step(g, tok, tg, TB, TT, 1e-2f, &lgpu));
		CHECK_RC(model_backend_train_step(b, tok, tg, TB, TT, 1e-2f, &lcpu));
		fprintf(stderr, "  step %d: loss gpu %.5f cpu %.5f\n", s, lgpu, lcpu);
		CHECK_NEAR(lgpu, lcpu, 2e-2, 1e-2);
		if (s == 0)
			first = lgpu;
		lastg = lgpu;
	}
	CHECK(lastg < first - 0.05);
	float *pg = calloc(ad->n_a + ad->n_b, sizeof *pg);
	CHECK_RC(model_cuda_lora_get(g, pg));
	double e = rel_l2(pg, ad_cpu->params, ad->n_a + ad->n_b);
	fprintf(stderr, "  adapter after 8 AdamW steps: rel L2 gpu vs cpu %.3g\n", e);
	CHECK(e < 0.1); /* AdamW amplifies sign flips of tiny gradients */
	free(pg);
out:
	model_backend_close(b);
	model_cuda_free(g);
	lora_adapter_free(ad);
	lora_adapter_free(ad_cpu);
	model_llama_free(m);
}

static void test_gpu_dp(void)
{
	NEED_GPU();
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	int tok[TB * TT], tg[TB * TT];
	uint8_t seed[32] = {0};
	CHECK_RC(make_model(0, &m, &ad));
	size_t P = ad->n_a + ad->n_b;
	model_cuda *g1 = gpu_from(m, ad, TB, 1, 1), *g2 = gpu_from(m, ad, 3, 1, 1);
	CHECK(g1 && g2);
	if (!g1 || !g2)
		goto out;
	make_batch(TB, TT, m->cfg.vocab_size, tok, tg, 8);
	tg[1] = 3; /* equal target counts: mean of example means = batch mean */
	/* no noise, no clipping, expected batch = B: the SGD step */
	double l1, l2;
	int ncl = -1;
	CHECK_RC(model_cuda_train_step(g1, tok, tg, TB, TT, 0.5f, &l1));
	CHECK_RC(model_cuda_dp_step(g2, tok, tg, TB, TT, 1e6, 0.0, TB, seed, 0.5f, &l2, &ncl));
	float *a = calloc(P, sizeof *a), *b = calloc(P, sizeof *b), *c = calloc(P, sizeof *c);
	CHECK_RC(model_cuda_lora_get(g1, a));
	CHECK_RC(model_cuda_lora_get(g2, b));
	for (size_t i = 0; i < P; i++) { /* compare the updates, not the params */
		a[i] -= ad->params[i];
		b[i] -= ad->params[i];
	}
	double e = rel_l2(b, a, P);
	fprintf(stderr,
	        "  dp (no noise/clip) vs sgd update: rel %.3g, loss %.5f vs %.5f, clipped %d\n", e,
	        l2, l1, ncl);
	CHECK(e < 1e-2);
	CHECK(ncl == 0);
	CHECK_NEAR(l2, l1, 1e-4, 1e-4);
	/* clipping: a tiny clip norm clips every example and bounds the update */
	CHECK_RC(model_cuda_lora_set(g2, ad->params));
	CHECK_RC(model_cuda_dp_step(g2, tok, tg, TB, TT, 1e-3, 0.0, TB, seed, 1.0f, &l2, &ncl));
	CHECK(ncl == TB);
	CHECK_RC(model_cuda_lora_get(g2, c));
	double un = 0;
	for (size_t i = 0; i < P; i++)
		un += ((double)c[i] - ad->params[i]) * ((double)c[i] - ad->params[i]);
	fprintf(stderr, "  clip 1e-3: update norm %.3g (bound %.3g)\n", sqrt(un), 1e-3);
	CHECK(sqrt(un) <= 1e-3 * 1.001 + 1e-7);
	/* noise only (no examples): the update is lr * N(0, (noise*clip)^2) / expected */
	CHECK_RC(model_cuda_lora_set(g2, ad->params));
	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)(i * 7 + 1);
	CHECK_RC(model_cuda_dp_step(g2, tok, tg, 0, TT, 2.0, 1.5, 4.0, seed, 1.0f, &l2, &ncl));
	CHECK(isnan(l2));
	CHECK_RC(model_cuda_lora_get(g2, c));
	double s = 0, s2 = 0;
	for (size_t i = 0; i < P; i++) {
		double d = (double)c[i] - ad->params[i];
		s += d;
		s2 += d * d;
	}
	double mean = s / P, sd = sqrt(s2 / P - mean * mean), want = 1.5 * 2.0 / 4.0;
	fprintf(stderr, "  noise-only update: mean %.4g sd %.4g (expected sd %.4g, P %zu)\n", mean,
	        sd, want, P);
	CHECK(fabs(sd / want - 1.0) < 0.05);
	CHECK(fabs(mean) < 5 * want / sqrt((double)P));
	free(a);
	free(b);
	free(c);
out:
	model_cuda_free(g1);
	model_cuda_free(g2);
	lora_adapter_free(ad);
	model_llama_free(m);
}

/* Full-parameter mode (pretraining): every base tensor's gradient against
 * the CPU's (tied: the head's lands in the embedding's). */
static void full_grads_case(int tied)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	model_cuda *g = NULL;
	int tok[TB * TT], tg[TB * TT];
	CHECK_RC(make_model(tied, &m, &ad));
	if (!m)
		return;
	const model_config *c = &m->cfg;
	model_cuda_config cc;
	model_cuda_weights w;
	cuda_setup(m, TB, 1, &cc, &w);
	CHECK_RC(model_cuda_new(&g, &cc, &w, 0));
	if (g) {
		float *gg = calloc(m->nparams, sizeof *gg), *ptr[MODEL_NPARAM];
		fprintf(stderr, "  (full-mode gpu model, fusion %s)\n",
		        model_cuda_fused(g) ? "on" : "off");
		CHECK(model_cuda_fused(g) == fuse_wanted());
		size_t off = 0;
		for (int k = 0; k < MODEL_NPARAM; k++) {
			ptr[k] = m->param_size[k] ? gg + off : NULL;
			off += m->param_size[k];
		}
		double lg = 0;
		float lc;
		make_batch(TB, TT, c->vocab_size, tok, tg, 9);
		CHECK_RC(model_cuda_full_grad(g, tok, tg, TB, TT, &lg, ptr));
		CHECK_RC(model_llama_set_mode(m, MODEL_TRAIN_FULL));
		CHECK_RC(model_llama_forward(m, tok, tg, TB, TT, &lc));
		CHECK_RC(model_llama_backward(m));
		fprintf(stderr, "  full (%s): loss gpu %.6f cpu %.6f\n", tied ? "tied" : "untied",
		        lg, lc);
		CHECK_NEAR(lg, lc, 1e-2, 5e-3);
		for (int k = 0; k < MODEL_NPARAM; k++) {
			if (!ptr[k])
				continue;
			/* k_proj's bias gradient is the column sum of dK, which nearly
			 * cancels: a bias on every key shifts each query's scores by a
			 * constant, which the softmax ignores, except for what RoPE's
			 * rotation makes of it. On the CPU model of this test the sum is
			 * 15.5x below the summed row norms (layer 0, measured), so the
			 * bf16 rows' error is amplified about that much over sqrt(N) */
			double tol = k == MODEL_P_BK ? 0.15 : 5e-2;
			double e = rel_l2(ptr[k], m->grad[k], m->param_size[k]);
			fprintf(stderr, "    d%-6s rel L2 %.3g (tol %g)\n", param_names[k], e, tol);
			CHECK(e < tol);
		}
		free(gg);
	}
	model_cuda_free(g);
	lora_adapter_free(ad);
	model_llama_free(m);
}

/* Full-parameter mode: the gradients (full_grads_case, untied and tied),
 * then a few AdamW steps through both backends against the CPU's. */
static void test_gpu_full(void)
{
	NEED_GPU();
	full_grads_case(0);
	full_grads_case(1);
	/* training through the backends: losses track, synced weights agree */
	model_llama *mc = NULL, *mg = NULL;
	lora_adapter *a1 = NULL, *a2 = NULL;
	model_backend *bc = NULL, *bg = NULL;
	model_backend_opts o;
	int tok[TB * TT], tg[TB * TT];
	CHECK_RC(make_model(1, &mc, &a1));
	CHECK_RC(make_model(1, &mg, &a2));
	if (!mc || !mg)
		goto out;
	model_backend_opts_default(&o);
	o.max_batch = TB;
	o.max_seq = TT;
	o.mode = MODEL_TRAIN_FULL;
	CHECK_RC(model_backend_open(&bc, mc, &o));
	o.device = "cuda";
	CHECK_RC(model_backend_open(&bg, mg, &o));
	if (!bc || !bg)
		goto out;
	make_batch(TB, TT, mc->cfg.vocab_size, tok, tg, 10);
	double first = 0, last = 0;
	for (int s = 0; s < 6; s++) {
		double l1 = NAN, l2 = NAN;
		CHECK_RC(model_backend_train_step(bc, tok, tg, TB, TT, 3e-3f, &l1));
		CHECK_RC(model_backend_train_step(bg, tok, tg, TB, TT, 3e-3f, &l2));
		fprintf(stderr, "  full step %d: loss gpu %.5f cpu %.5f\n", s, l2, l1);
		CHECK_NEAR(l2, l1, 2e-2, 1e-2);
		if (s == 0)
			first = l2;
		last = l2;
	}
	CHECK(last < first);
	CHECK_RC(model_backend_sync_model(bg));
	{
		double e = rel_l2(mg->params, mc->params, mc->nparams);
		fprintf(stderr, "  full: synced weights rel L2 gpu vs cpu %.3g\n", e);
		CHECK(e < 2e-2);
	}
out:
	model_backend_close(bc);
	model_backend_close(bg);
	lora_adapter_free(a1);
	lora_adapter_free(a2);
	model_llama_free(mc);
	model_llama_free(mg);
}

/* One model, three gradient passes on one batch: the second captures the
 * step's CUDA graph and the third replays it; both must give the first
 * pass's loss and gradients (the family kernels inside a captured graph). */
static void replay_case(void)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	int tok[TB * TT], tg[TB * TT];
	CHECK_RC(make_model(0, &m, &ad));
	if (!m)
		return;
	model_cuda *g = gpu_from(m, ad, TB, 1, 0);
	CHECK(g != NULL);
	size_t P = ad->n_a + ad->n_b;
	float *a = calloc(P, sizeof *a), *b = calloc(P, sizeof *b);
	if (g && a && b) {
		double l0 = 0, l1 = 0;
		make_batch(TB, TT, m->cfg.vocab_size, tok, tg, 5);
		CHECK_RC(model_cuda_grad(g, tok, tg, TB, TT, &l0, a));
		for (int pass = 1; pass < 3; pass++) {
			CHECK_RC(model_cuda_grad(g, tok, tg, TB, TT, &l1, b));
			double e = rel_l2(b, a, P);
			fprintf(stderr, "  replay pass %d: loss %.6f vs %.6f, grads rel L2 %.3g\n",
			        pass, l1, l0, e);
			CHECK(e <= 1e-6);
			CHECK_NEAR(l1, l0, 1e-6, 1e-6);
		}
	}
	free(a);
	free(b);
	model_cuda_free(g);
	lora_adapter_free(ad);
	model_llama_free(m);
}

/* Every base tensor of g's family reads back exactly as m holds it
 * (bf16-representable weights), whatever the device layout: q|k|v and
 * gate|up rows and the bq|bk|bv vectors interleaved per layer. */
static void weights_read_back(model_cuda *g, const model_llama *m)
{
	for (int k = 0; k < MODEL_NPARAM; k++) {
		size_t n = m->param_size[k], bad = 0;
		if (!n) /* absent in this family, or the tied head */
			continue;
		float *h = calloc(n + 1, sizeof *h);
		CHECK_RC(model_cuda_get_weight(g, k, h, n));
		for (size_t i = 0; i < n; i++)
			bad += h[i] != m->param[k][i];
		if (bad)
			fprintf(stderr, "  weight %s: %zu of %zu values differ\n", param_names[k],
			        bad, n);
		CHECK(bad == 0);
		free(h);
	}
}

/* One model of the current family built with FEDLORA_FUSE=1 and =0: both
 * read every weight back exactly, and their LoRA gradients agree. Leaves
 * FEDLORA_FUSE set; the callers restore it. */
static void fused_vs_unfused(void)
{
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	model_cuda *gon = NULL, *goff = NULL;
	int tok[TB * TT], tg[TB * TT];
	CHECK_RC(make_model(0, &m, &ad));
	if (!m)
		return;
	setenv("FEDLORA_FUSE", "1", 1);
	gon = gpu_from(m, ad, TB, 1, 0);
	setenv("FEDLORA_FUSE", "0", 1);
	goff = gpu_from(m, ad, TB, 1, 0);
	CHECK(gon && goff);
	if (!gon || !goff)
		goto out;
	CHECK(model_cuda_fused(gon) == 1 && model_cuda_fused(goff) == 0);
	weights_read_back(gon, m);
	weights_read_back(goff, m);
	{
		size_t P = ad->n_a + ad->n_b;
		float *a = calloc(P, sizeof *a), *b = calloc(P, sizeof *b);
		double l1 = 0, l2 = 0;
		make_batch(TB, TT, m->cfg.vocab_size, tok, tg, 12);
		CHECK_RC(model_cuda_grad(gon, tok, tg, TB, TT, &l1, a));
		CHECK_RC(model_cuda_grad(goff, tok, tg, TB, TT, &l2, b));
		double e = rel_l2(a, b, P), cs = cosine(a, b, P);
		fprintf(stderr,
		        "  fused vs unfused: loss %.6f vs %.6f, grads rel L2 %.3g, cosine %.6f\n",
		        l1, l2, e, cs);
		/* both round activations to bf16, at different places (the logits) */
		CHECK_NEAR(l1, l2, 5e-3, 2e-3);
		CHECK(e < 3e-2 && cs > 0.999);
		free(a);
		free(b);
	}
out:
	model_cuda_free(gon);
	model_cuda_free(goff);
	lora_adapter_free(ad);
	model_llama_free(m);
}

/* Qwen2, Qwen3 and Llama with attention_bias through the same GPU-vs-CPU
 * checks, on the fused path (FEDLORA_FUSE=1: the biases added in the fused
 * split, Qwen3's q/k norm on the merged rows, the bias gradient over the
 * merged gradient rows) and on the unfused one (FEDLORA_FUSE=0): logits and
 * loss, LoRA gradients (A+B, B only, the GEMM attention, graph capture and
 * replay, gradient checkpointing), per-tensor full gradients (the biases
 * and norm weights included) and full training through the backends; then
 * the two paths against each other and every weight read back. */
static void test_gpu_families(void)
{
	NEED_GPU();
	static const struct {
		model_arch arch;
		int llama_bias;
		const char *name;
	} fam[] = {{MODEL_ARCH_QWEN2, 0, "qwen2"},
	           {MODEL_ARCH_QWEN3, 0, "qwen3"},
	           {MODEL_ARCH_LLAMA, 1, "llama attention_bias"}};
	fuse_env_save();
	for (size_t i = 0; i < sizeof fam / sizeof fam[0]; i++) {
		test_arch = fam[i].arch;
		test_llama_bias = fam[i].llama_bias;
		for (int fuse = 1; fuse >= 0; fuse--) {
			fprintf(stderr, "  --- %s, fusion %s\n", fam[i].name, fuse ? "on" : "off");
			setenv("FEDLORA_FUSE", fuse ? "1" : "0", 1);
			test_gpu_logits();
			grads_case(0, 1);
			grads_case(1, 0);
			grads_case_gemm(1, 1);
			replay_case();
			gpu_ckpt = 1; /* the q/k norm activations recomputed in the backward */
			grads_case(0, 1);
			gpu_ckpt = 0;
			test_gpu_full();
		}
		fprintf(stderr, "  --- %s, fused vs unfused\n", fam[i].name);
		fused_vs_unfused();
	}
	fuse_env_restore();
	test_arch = MODEL_ARCH_LLAMA;
	test_llama_bias = 0;
}

/* FEDLORA_FUSE=0: the unfused kernels (one GEMM per matrix, rotary per
 * tensor, residual copies, f32 training logits) against the CPU, and the two
 * paths' gradients against each other. Also the weights as stored (q|k|v and
 * gate|up rows interleaved per layer) read back exactly as uploaded. */
static void test_gpu_fusion_off(void)
{
	NEED_GPU();
	fuse_env_save();
	fused_vs_unfused();
	/* the unfused path against the CPU, as the default path is tested */
	setenv("FEDLORA_FUSE", "0", 1);
	test_gpu_logits();
	grads_case(0, 1);
	grads_case(1, 0);
	full_grads_case(0);
	full_grads_case(1);
	fuse_env_restore();
}

static void test_gpu_backend(void)
{
	NEED_GPU();
	lora_adapter *cpu = cpu_step(TB, 0, "cpu"), *gpu = cpu_step(3, 0, "cuda");
	lora_adapter *cpu_dp = cpu_step(TB, 1, "cpu"), *gpu_dp = cpu_step(3, 1, "cuda");
	CHECK(cpu && gpu && cpu_dp && gpu_dp);
	if (cpu && gpu)
		compare_adapters("backend sgd step, cuda vs cpu", gpu, cpu, 2e-2);
	if (cpu_dp && gpu_dp)
		compare_adapters("backend dp step (no noise/clip), cuda vs cpu", gpu_dp, cpu_dp,
		                 2e-2);
	lora_adapter_free(cpu);
	lora_adapter_free(gpu);
	lora_adapter_free(cpu_dp);
	lora_adapter_free(gpu_dp);
}

#else
static void test_gpu_skip(void)
{
	TEST_SKIP("no CUDA device (this build has no CUDA support)");
}
#define test_gpu_logits              test_gpu_skip
#define test_gpu_grads               test_gpu_skip
#define test_gpu_per_example         test_gpu_skip
#define test_gpu_microbatch          test_gpu_skip
#define test_gpu_training_tracks_cpu test_gpu_skip
#define test_gpu_dp                  test_gpu_skip
#define test_gpu_backend             test_gpu_skip
#define test_gpu_full                test_gpu_skip
#define test_gpu_families            test_gpu_skip
#define test_gpu_fusion_off          test_gpu_skip
#define test_gpu_grad_checkpoint     test_gpu_skip
#endif

static const test_case cases[] = {
    {"device_resolve", test_device_resolve},
    {"backend_cpu_eval", test_backend_cpu_eval},
    {"backend_cpu_microbatch", test_backend_cpu_microbatch},
    {"backend_cpu_dp_equals_sgd", test_backend_cpu_dp_equals_sgd},
    {"gpu_logits_loss", test_gpu_logits},
    {"gpu_lora_grads", test_gpu_grads},
    {"gpu_grad_checkpoint", test_gpu_grad_checkpoint},
    {"gpu_per_example_grads", test_gpu_per_example},
    {"gpu_microbatch", test_gpu_microbatch},
    {"gpu_training_tracks_cpu", test_gpu_training_tracks_cpu},
    {"gpu_dp_sgd", test_gpu_dp},
    {"gpu_backend", test_gpu_backend},
    {"gpu_full_training", test_gpu_full},
    {"gpu_families", test_gpu_families},
    {"gpu_fusion_off", test_gpu_fusion_off},
    {0},
};

int main(int argc, char **argv)
{
	fl_log_set_level(FL_LOG_WARN);
	return test_main(argc, argv, cases);
}
