/*
 * bench/train_cpu.c — speed of a LoRA training step of the CPU Llama model
 * (model/llama.h) next to OpenBLAS sgemm measured in the same run.
 *
 *   build/bench/train_cpu [--steps N] [--batch B] [--seq T] [--layers L]
 *                         [--full] [--grad-checkpoint] [--out FILE.json]
 *
 * Model: L layers (8), hidden 512, 8 heads (8 kv heads), MLP 1376, vocab
 * 258, random weights; LoRA r 16, alpha 32 on q_proj,v_proj; batch 4 of 256
 * tokens. A step is forward + backward (LoRA gradients only) + AdamW update.
 * With --full the same model is also timed in full-parameter mode
 * (pretraining step). --grad-checkpoint turns on activation checkpointing
 * (model_llama_set_grad_checkpoint). Reported per mode: median and fastest step time over N
 * steps after one warm-up step, tokens/s, and achieved GFLOP/s counted by
 * model_llama_flops (2 per multiply-add of the products, causal attention
 * counted as half the square, elementwise work not counted). The reference
 * is the best of 30 sgemm 1024 x 1024 x 1024 products, measured before and
 * after the training steps (the higher of the two is used). Also reported:
 * the model's activation bytes and the process's peak resident memory
 * (VmHWM of /proc/self/status, whole process: weights, optimizer, BLAS
 * buffers included). Prints a table and writes a JSON object (default
 * build/bench/train_cpu.json). bench/long_seq.sh runs it over sequence
 * lengths with and without checkpointing, one process each.
 *
 * OpenBLAS threads itself; set OPENBLAS_NUM_THREADS to pin the thread count
 * (the figure that matters is the ratio at the same thread count).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "lora/adapter.h"
#include "model/llama.h"
#include "model/optim.h"

#define MAX_STEPS 100
#define MAX_SEQ   8192
/* sgemm repetitions (about 10 ms each on 2 cores): many, so that one of them
 * runs while the CPU is otherwise idle */
#define SGEMM_REPS 30

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Best GFLOP/s of SGEMM_REPS products of n x n matrices. */
static double sgemm_gflops(int n)
{
	size_t nn = (size_t)n * n;
	float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float));
	float *c = malloc(nn * sizeof(float));
	if (!a || !b || !c) {
		free(a), free(b), free(c);
		return 0;
	}
	for (size_t i = 0; i < nn; i++) {
		a[i] = (float)((i * 7) % 13) * 0.01f;
		b[i] = (float)((i * 5) % 11) * 0.01f;
	}
	double best = 0;
	for (int rep = 0; rep < SGEMM_REPS + 1; rep++) {
		double t0 = fl_now_s();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n,
		            0.0f, c, n);
		double g = 2.0 * n * (double)n * n / (fl_now_s() - t0) / 1e9;
		if (rep > 0 && g > best) /* rep 0 warms up the threads */
			best = g;
	}
	free(a), free(b), free(c);
	return best;
}

/* Peak resident set of this process in KiB (VmHWM), or -1. */
static long peak_rss_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "VmHWM:", 6)) {
			kib = atol(line + 6);
			break;
		}
	fclose(f);
	return kib;
}

typedef struct result {
	const char *mode;
	double step_ms, best_ms, fwd_ms, bwd_ms, tokens_per_s, gflops, best_gflops, flops_per_step;
	float loss_first, loss_last;
	size_t acts_bytes;
} result;

static int run_mode(model_llama *m, model_train_mode mode, int B, int T, int steps, result *r)
{
	int rv, N = B * T, V = m->cfg.vocab_size;
	int *tok = malloc((size_t)N * sizeof(int)), *tg = malloc((size_t)N * sizeof(int));
	double *st = calloc(MAX_STEPS + 1, sizeof(double)), *sf = calloc(MAX_STEPS + 1, 8);
	double *sb = calloc(MAX_STEPS + 1, sizeof(double));
	model_optim *opt = NULL;
	model_optim_opts oo;
	float *p, *g;
	size_t n;
	if (!tok || !tg || !st || !sf || !sb) {
		rv = FL_ENOMEM;
		goto fail;
	}
	fl_rng rng;
	fl_rng_init(&rng, 1, 2);
	for (int i = 0; i < N; i++)
		tok[i] = (int)fl_rng_below(&rng, (uint64_t)V);
	for (int i = 0; i < N; i++)
		tg[i] = (i + 1) % T ? tok[i + 1] : -1;
	if ((rv = model_llama_set_mode(m, mode)) != 0 ||
	    (rv = model_llama_trainable(m, &p, &g, &n)) != 0)
		goto fail;
	model_optim_opts_default(&oo);
	if ((rv = model_optim_new(&opt, n, &oo)) != 0)
		goto fail;
	for (int s = 0; s <= steps; s++) { /* step 0 warms up */
		float loss;
		double t0 = fl_now_s();
		model_llama_zero_grad(m);
		if ((rv = model_llama_forward(m, tok, tg, B, T, &loss)) != 0)
			goto fail;
		double t1 = fl_now_s();
		if ((rv = model_llama_backward(m)) != 0)
			goto fail;
		double t2 = fl_now_s();
		if ((rv = model_optim_step(opt, p, g, n, 1e-4f)) != 0)
			goto fail;
		double t3 = fl_now_s();
		st[s] = t3 - t0, sf[s] = t1 - t0, sb[s] = t2 - t1;
		if (s == 0)
			r->loss_first = loss;
		r->loss_last = loss;
	}
	qsort(st + 1, (size_t)steps, sizeof(double), cmp_double);
	qsort(sf + 1, (size_t)steps, sizeof(double), cmp_double);
	qsort(sb + 1, (size_t)steps, sizeof(double), cmp_double);
	double med = st[1 + steps / 2];
	r->step_ms = 1e3 * med;
	r->fwd_ms = 1e3 * sf[1 + steps / 2];
	r->bwd_ms = 1e3 * sb[1 + steps / 2];
	r->tokens_per_s = N / med;
	r->flops_per_step = model_llama_flops(m, B, T, 1);
	r->gflops = r->flops_per_step / med / 1e9;
	r->best_ms = 1e3 * st[1];
	r->best_gflops = r->flops_per_step / st[1] / 1e9;
	r->acts_bytes = model_llama_acts_bytes(m);
fail:
	model_optim_free(opt);
	free(tok), free(tg), free(st), free(sf), free(sb);
	return rv;
}

int main(int argc, char **argv)
{
	int steps = 3, B = 4, T = 256, L = 8, full = 0, ckpt = 0;
	const char *out = "build/bench/train_cpu.json";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--steps") && i + 1 < argc)
			steps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
			B = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seq") && i + 1 < argc)
			T = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--layers") && i + 1 < argc)
			L = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--full"))
			full = 1;
		else if (!strcmp(argv[i], "--grad-checkpoint"))
			ckpt = 1;
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
		else {
			fprintf(stderr,
			        "usage: %s [--steps N (1..%d)] [--batch B] [--seq T (<= %d)] "
			        "[--layers L] [--full] [--grad-checkpoint] [--out FILE.json]\n",
			        argv[0], MAX_STEPS, MAX_SEQ);
			return strcmp(argv[i], "--help") ? 2 : 0;
		}
	}
	if (steps < 1 || steps > MAX_STEPS || B < 1 || B > 64 || T < 2 || T > MAX_SEQ || L < 1 ||
	    L > 64) {
		fprintf(stderr, "train_cpu: a setting is out of range (see --help)\n");
		return 2;
	}
	model_config c = {.hidden_size = 512,
	                  .intermediate_size = 1376,
	                  .num_layers = L,
	                  .num_heads = 8,
	                  .num_kv_heads = 8,
	                  .head_dim = 64,
	                  .vocab_size = 258,
	                  .max_position_embeddings = MAX_SEQ,
	                  .tie_word_embeddings = 0,
	                  .bos_token_id = 256,
	                  .eos_token_id = 257,
	                  .rms_norm_eps = 1e-5f,
	                  .rope_theta = 10000.0f};
	model_llama *m = NULL;
	lora_adapter *ad = NULL;
	int rv;
	result res[2];
	int nres = 0;
	memset(res, 0, sizeof res);
	/* measured before and after the steps; the better figure is the
	 * reference, so CPU contention from other processes lowers the ratio
	 * rather than raising it */
	double sg_before = sgemm_gflops(1024), sg_after = 0, sg = sg_before;
	if ((rv = model_llama_new(&m, &c, 1)) != 0 ||
	    (rv = model_lora_adapter_new(&c, "q_proj,v_proj", 16, 32.0f, &ad)) != 0)
		goto fail;
	lora_adapter_init(ad, 7);
	if ((rv = model_llama_attach_lora(m, ad)) != 0)
		goto fail;
	model_llama_set_grad_checkpoint(m, ckpt);
	res[0].mode = "lora";
	if ((rv = run_mode(m, MODEL_TRAIN_LORA, B, T, steps, &res[0])) != 0)
		goto fail;
	nres = 1;
	if (full) {
		res[1].mode = "full";
		if ((rv = model_llama_attach_lora(m, NULL)) != 0 ||
		    (rv = run_mode(m, MODEL_TRAIN_FULL, B, T, steps, &res[1])) != 0)
			goto fail;
		nres = 2;
	}
	sg_after = sgemm_gflops(1024);
	sg = sg_after > sg_before ? sg_after : sg_before;
	printf("model: %d layers, hidden %d, heads %d, mlp %d, vocab %d; batch %d x %d tokens; "
	       "LoRA r 16 on q_proj,v_proj; checkpointing %s\n",
	       L, c.hidden_size, c.num_heads, c.intermediate_size, c.vocab_size, B, T,
	       ckpt ? "on" : "off");
	long hwm = peak_rss_kib();
	printf("sgemm 1024^3: %.1f GFLOP/s (best of %d; before the steps %.1f, after %.1f)\n", sg,
	       SGEMM_REPS, sg_before, sg_after);
	printf("%-5s %10s %9s %9s %9s %10s %10s %9s %9s %9s\n", "mode", "step ms", "best ms",
	       "fwd ms", "bwd ms", "tokens/s", "GFLOP/s", "vs sgemm", "best vs", "acts MiB");
	for (int i = 0; i < nres; i++)
		printf("%-5s %10.1f %9.1f %9.1f %9.1f %10.0f %10.1f %8.0f%% %8.0f%% %9.1f\n",
		       res[i].mode, res[i].step_ms, res[i].best_ms, res[i].fwd_ms, res[i].bwd_ms,
		       res[i].tokens_per_s, res[i].gflops, 100.0 * res[i].gflops / sg,
		       100.0 * res[i].best_gflops / sg, res[i].acts_bytes / 1048576.0);
	printf("peak RSS (VmHWM): %.1f MiB\n", hwm / 1024.0);
	printf("(median step; \"best\" is the fastest step, less exposed to other processes)\n");
	FILE *f = fopen(out, "w");
	if (!f) {
		fprintf(stderr, "train_cpu: cannot write %s\n", out);
		rv = FL_EIO;
		goto fail;
	}
	const char *thr = getenv("OPENBLAS_NUM_THREADS");
	fprintf(f,
	        "{\"bench\":\"train_cpu\",\"layers\":%d,\"hidden\":%d,\"heads\":%d,\"mlp\":%d,"
	        "\"vocab\":%d,\"batch\":%d,\"seq\":%d,\"lora_r\":16,\"lora_targets\":\"q_proj,v_"
	        "proj\",\"steps\":%d,\"openblas_threads\":\"%s\",\"sgemm_gflops\":%.2f,"
	        "\"sgemm_gflops_before\":%.2f,\"sgemm_gflops_after\":%.2f,\"grad_checkpoint\":%s,"
	        "\"peak_rss_kib\":%ld,\"modes\":[",
	        L, c.hidden_size, c.num_heads, c.intermediate_size, c.vocab_size, B, T, steps,
	        thr ? thr : "default", sg, sg_before, sg_after, ckpt ? "true" : "false", hwm);
	for (int i = 0; i < nres; i++)
		fprintf(f,
		        "%s{\"mode\":\"%s\",\"step_ms\":%.2f,\"forward_ms\":%.2f,\"backward_ms\":%."
		        "2f,\"tokens_per_s\":%.1f,\"gflop_per_step\":%.3f,\"gflops\":%.2f,"
		        "\"fraction_of_sgemm\":%.3f,\"best_step_ms\":%.2f,"
		        "\"best_fraction_of_sgemm\":%.3f,\"loss_first\":%.4f,\"loss_last\":%.4f,"
		        "\"acts_bytes\":%zu}",
		        i ? "," : "", res[i].mode, res[i].step_ms, res[i].fwd_ms, res[i].bwd_ms,
		        res[i].tokens_per_s, res[i].flops_per_step / 1e9, res[i].gflops,
		        res[i].gflops / sg, res[i].best_ms, res[i].best_gflops / sg,
		        res[i].loss_first, res[i].loss_last, res[i].acts_bytes);
	fprintf(f, "]}\n");
	if (fclose(f) != 0) {
		rv = FL_EIO;
		goto fail;
	}
	printf("wrote %s\n", out);
fail:
	if (rv)
		fprintf(stderr, "train_cpu: %s\n", fl_strerror(rv));
	model_llama_free(m);
	lora_adapter_free(ad);
	return rv ? 1 : 0;
}
