/*
 * bench/dp_step.c — cost of a DP-SGD step next to a non-private step, in the
 * same run, on the CPU.
 *
 *   build/bench/dp_step [--steps N] [--out FILE.json]
 *
 * Two workloads:
 *  - lm (when model/llama.c is part of the build): LoRA fine-tuning step of a
 *    small Llama (4 layers, hidden 256, 4 heads, MLP 688, vocab 259, seq 128,
 *    batch 16, r 8 on q_proj,v_proj). Non-private: forward + batched LoRA
 *    backward + SGD update. DP: forward + per-example LoRA gradients + clip +
 *    sum + Gaussian noise (privacy/dp.h) + update, with the batch at its
 *    expected size so both steps see the same number of tokens.
 *  - linreg (always): model_task_train of the linreg task (8 layers of 256,
 *    r 8, batch 64), DP-SGD with Poisson rate q = 64 / samples against the
 *    plain minibatch step; the per-step time includes the train call's two
 *    held-out evaluations spread over the steps.
 * Steps of the two kinds alternate (after a warm-up), and the median time of
 * each kind is reported with the ratio dp / plain. Prints a table and writes
 * a JSON object (default build/bench/dp_step.json).
 *
 * OpenBLAS threads itself; set OPENBLAS_NUM_THREADS to pin the thread count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "lora/adapter.h"
#include "model/task.h"
#include "privacy/dp.h"
#include "privacy/noise.h"

#if defined(__has_include)
#if __has_include("model/llama.c")
#define BENCH_HAVE_LLAMA 1
#include "model/llama.h"
#endif
#endif

#define BENCH_MAX_STEPS 1000

typedef struct bench_row {
	const char *workload;
	double plain_ms, dp_ms, ratio;
	char detail[160];
} bench_row;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* linreg through the task interface: each "step" sample is one
 * model_task_train call of `inner` local steps, divided by inner. */
static int bench_linreg(int steps, priv_noise *noise, bench_row *row)
{
	model_task_opts o;
	model_task *t = NULL;
	lora_adapter *ad = NULL;
	model_train_params p;
	model_train_result res;
	double tp[BENCH_MAX_STEPS], td[BENCH_MAX_STEPS];
	const int inner = 20, batch = 64;
	int rv;

	model_task_opts_default(&o);
	o.task = "linreg";
	o.client_index = 0;
	o.rank = 8;
	o.alpha = 16;
	o.linreg_layers = 8;
	o.linreg_dim = 256;
	o.linreg_samples = 4096;
	if ((rv = model_task_open(&t, &o)) != 0)
		goto out;
	if ((rv = model_task_adapter_new(t, 7, &ad)) != 0)
		goto out;
	memset(&p, 0, sizeof p);
	p.local_steps = inner;
	p.batch_size = batch;
	p.lr = 0.01;
	p.optimizer = 0;
	p.train_a = 1;
	for (int s = -1; s < steps; s++) { /* s == -1: warm-up */
		double t0;
		p.round_seed = (uint64_t)(s + 2);
		p.dp_clip = 0;
		t0 = fl_now_s();
		if ((rv = model_task_train(t, ad, &p, NULL, &res)) != 0)
			goto out;
		if (s >= 0)
			tp[s] = (fl_now_s() - t0) / inner;
		p.dp_clip = 1.0;
		p.dp_noise = 1.0;
		p.dp_q = (double)batch / o.linreg_samples;
		t0 = fl_now_s();
		if ((rv = model_task_train(t, ad, &p, noise, &res)) != 0)
			goto out;
		if (s >= 0)
			td[s] = (fl_now_s() - t0) / inner;
	}
	row->workload = "linreg";
	row->plain_ms = 1e3 * median(tp, steps);
	row->dp_ms = 1e3 * median(td, steps);
	row->ratio = row->dp_ms / row->plain_ms;
	snprintf(row->detail, sizeof row->detail,
	         "8 layers x 256, r 8, batch 64 (DP: Poisson q %.4f), A and B trained",
	         (double)batch / o.linreg_samples);
out:
	lora_adapter_free(ad);
	model_task_close(t);
	return rv;
}

#ifdef BENCH_HAVE_LLAMA
static void sgd(float *p, const float *g, size_t n, float lr)
{
	for (size_t j = 0; j < n; j++)
		p[j] -= lr * g[j];
}

static int bench_lm(int steps, priv_noise *noise, bench_row *row)
{
	enum { B = 16, T = 128, R = 8 };
	model_config c = {0};
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	int *tok = NULL, *tgt = NULL;
	float *pe = NULL, *dpg = NULL, *p, *g;
	size_t n;
	double tp[BENCH_MAX_STEPS], td[BENCH_MAX_STEPS];
	fl_rng r;
	float loss;
	int rv;

	c.hidden_size = 256;
	c.intermediate_size = 688;
	c.num_layers = 4;
	c.num_heads = 4;
	c.num_kv_heads = 4;
	c.head_dim = 64;
	c.vocab_size = 259;
	c.max_position_embeddings = 512;
	c.tie_word_embeddings = 1;
	c.bos_token_id = 256;
	c.eos_token_id = 257;
	c.rms_norm_eps = 1e-5f;
	c.rope_theta = 10000.0f;
	if ((rv = model_llama_new(&m, &c, 1)) != 0)
		goto out;
	if ((rv = model_lora_adapter_new(&c, "q_proj,v_proj", R, 16.0f, &ad)) != 0)
		goto out;
	lora_adapter_init(ad, 2);
	/* B != 0 so that A's gradients are not trivially zero */
	fl_rng_init(&r, 3, 0);
	for (size_t j = 0; j < ad->n_b; j++)
		lora_adapter_b(ad)[j] = (float)(0.01 * fl_rng_normal(&r));
	if ((rv = model_llama_attach_lora(m, ad)) != 0 ||
	    (rv = model_llama_set_mode(m, MODEL_TRAIN_LORA)) != 0 ||
	    (rv = model_llama_trainable(m, &p, &g, &n)) != 0)
		goto out;
	tok = malloc(B * T * sizeof *tok);
	tgt = malloc(B * T * sizeof *tgt);
	pe = malloc((size_t)B * n * sizeof *pe);
	dpg = malloc(n * sizeof *dpg);
	if (!tok || !tgt || !pe || !dpg) {
		rv = FL_ENOMEM;
		goto out;
	}
	for (int i = 0; i < B * T; i++)
		tok[i] = (int)fl_rng_below(&r, 256);
	for (int i = 0; i < B * T; i++)
		tgt[i] = (i + 1) % T ? tok[i + 1] : -1;
	for (int s = -1; s < steps; s++) {
		double t0 = fl_now_s();
		model_llama_zero_grad(m);
		if ((rv = model_llama_forward(m, tok, tgt, B, T, &loss)) != 0 ||
		    (rv = model_llama_backward(m)) != 0)
			goto out;
		sgd(p, g, n, 1e-4f);
		if (s >= 0)
			tp[s] = fl_now_s() - t0;
		t0 = fl_now_s();
		if ((rv = model_llama_forward(m, tok, tgt, B, T, &loss)) != 0 ||
		    (rv = model_llama_backward_per_example(m, pe)) != 0 ||
		    (rv = priv_dpsgd_reduce(pe, B, n, 1.0, 1.0, (double)B, noise, dpg)) != 0)
			goto out;
		sgd(p, dpg, n, 1e-4f);
		if (s >= 0)
			td[s] = fl_now_s() - t0;
	}
	row->workload = "lm";
	row->plain_ms = 1e3 * median(tp, steps);
	row->dp_ms = 1e3 * median(td, steps);
	row->ratio = row->dp_ms / row->plain_ms;
	snprintf(row->detail, sizeof row->detail,
	         "Llama 4x256 (MLP 688, V 259), seq %d, batch %d, r %d q_proj,v_proj, %zu "
	         "trainable",
	         T, B, R, n);
out:
	free(tok);
	free(tgt);
	free(pe);
	free(dpg);
	model_llama_free(m);
	lora_adapter_free(ad);
	return rv;
}
#endif

int main(int argc, char **argv)
{
	int steps = 5, nrows = 0, rv;
	const char *out = "build/bench/dp_step.json";
	bench_row rows[2];
	priv_noise *noise = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
			steps = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			out = argv[++i];
		} else {
			fprintf(stderr, "usage: %s [--steps N (1..%d)] [--out FILE.json]\n",
			        argv[0], BENCH_MAX_STEPS);
			return !!strcmp(argv[i], "--help") * 2;
		}
	}
	if (steps < 1 || steps > BENCH_MAX_STEPS) {
		fprintf(stderr, "dp_step: --steps must be in 1..%d\n", BENCH_MAX_STEPS);
		return 2;
	}
	if ((rv = priv_noise_new(&noise)) != 0) {
		fprintf(stderr, "dp_step: noise: %s\n", fl_strerror(rv));
		return 1;
	}
#ifdef BENCH_HAVE_LLAMA
	if ((rv = bench_lm(steps, noise, &rows[nrows])) != 0) {
		fprintf(stderr, "dp_step: lm: %s\n", fl_strerror(rv));
		priv_noise_free(noise);
		return 1;
	}
	nrows++;
#else
	fprintf(stderr, "dp_step: model/llama.c not in this build: lm workload skipped\n");
#endif
	if ((rv = bench_linreg(steps, noise, &rows[nrows])) != 0) {
		fprintf(stderr, "dp_step: linreg: %s\n", fl_strerror(rv));
		priv_noise_free(noise);
		return 1;
	}
	nrows++;
	priv_noise_free(noise);

	printf("%-8s %12s %12s %8s  %s\n", "workload", "plain ms", "dp ms", "dp/plain", "setting");
	for (int i = 0; i < nrows; i++)
		printf("%-8s %12.3f %12.3f %8.3f  %s\n", rows[i].workload, rows[i].plain_ms,
		       rows[i].dp_ms, rows[i].ratio, rows[i].detail);
	FILE *f = fopen(out, "w");
	if (!f) {
		fprintf(stderr, "dp_step: cannot write %s\n", out);
		return 1;
	}
	fprintf(f, "{\"bench\":\"dp_step\",\"steps\":%d,\"results\":[", steps);
	for (int i = 0; i < nrows; i++)
		fprintf(f,
		        "%s{\"workload\":\"%s\",\"plain_ms\":%.4f,\"dp_ms\":%.4f,\"ratio\":%.4f,"
		        "\"setting\":\"%s\"}",
		        i ? "," : "", rows[i].workload, rows[i].plain_ms, rows[i].dp_ms,
		        rows[i].ratio, rows[i].detail);
	fprintf(f, "]}\n");
	fclose(f);
	printf("wrote %s\n", out);
	return 0;
}
