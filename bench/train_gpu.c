/*
 * bench/train_gpu.c — tokens/s of a LoRA fine-tuning step of the CUDA model
 * (model/cuda/cuda.h) on two real model shapes with random bf16 weights.
 *
 *   build/bench/train_gpu [--shape smollm|llama1b|all] [--steps N] [--warmup W]
 *                         [--batch B] [--seq T] [--rank R] [--json FILE]
 *                         [--attn auto|flash|gemm|both] [--grad-checkpoint]
 *                         [--modules qv|all] [--dp]
 *
 * Shapes: SmolLM-135M (hidden 576, 30 layers, 9 heads, 3 KV heads, MLP 1536,
 * vocab 49152, tied) and Llama-3.2-1B (hidden 2048, 16 layers, 32 heads, 8
 * KV heads, MLP 8192, vocab 128256, tied, rope theta 500000 without the
 * llama3 frequency scaling). LoRA r 16, alpha 32 on q_proj,v_proj or all (A
 * Kaiming-uniform, B zero as PEFT initializes them), AdamW; batch 8 of 1024
 * tokens by default. A step is forward + backward (LoRA gradients only, no
 * frozen-weight gradients) + AdamW, ending with the loss copied to the host.
 *
 * Reported per shape: median step time over N timed steps after W warm-up
 * steps, tokens/s, device memory held by the model (weights, activations,
 * scratch, LoRA state; cuBLAS's own workspace not included) and the device's
 * used memory seen by cudaMemGetInfo, and model FLOP utilization:
 *   FLOPs/token = 4 * N_mm + 12 * L * T * Hq * D
 * with N_mm the weights of every matrix product (the LM head counted once
 * even when tied; no embedding lookup), 4 = forward (2) + activation
 * gradients (2), and the attention term forward (QK^T, PV: 4 T Hq D per
 * layer) plus its backward (4 products, twice that), full T x T as computed;
 * LoRA products not counted. Peak: 989 TFLOP/s (H200/H100 SXM bf16 dense).
 * Prints a table and writes JSON (default build/bench/train_gpu.json).
 *
 * --attn: auto (default: the fused flash kernels where they pass their
 * start-up self-check), flash, gemm (batched GEMMs + softmax), or both.
 * Environment (read by model/cuda/llama.cu): FEDLORA_PROFILE=1 prints each
 * step's per-phase device times (forward and its attention, LM head +
 * cross-entropy, backward and its attention, optimizer) to stderr and runs
 * without CUDA graphs; FEDLORA_GRAPH=0 turns the step's CUDA graph off;
 * FEDLORA_FUSE=0 runs the unfused kernels (one GEMM per projection, f32
 * training logits) instead of the default fused path.
 * --grad-checkpoint: activation checkpointing (model_cuda_config.grad_checkpoint:
 * layer inputs kept, each layer recomputed in the backward).
 * --modules: qv (default) adapts q_proj,v_proj; all adapts the seven matrices
 * of every layer (q,k,v,o,gate,up,down), A and B trained in both cases.
 * --dp: after the warm-up (W steps of each), the plain step and the DP-SGD
 * step (model_cuda_dp_step: per-example LoRA gradients, each clipped to L2
 * norm 1.0, summed, Gaussian noise of std 1.0 * 1.0 added, divided by the
 * batch, AdamW) alternate, N timed steps each; reported: the DP step's median
 * time, tokens/s, the ratio dp/plain of the medians, the examples clipped in
 * the last DP step and the model's memory once the DP buffers (B per-example
 * gradient rows) exist; the plain row's memory is then taken before them.
 * Without CUDA in the build, or without a GPU, it says so and exits 2.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/rng.h"
#ifdef FL_HAVE_CUDA
#include "model/cuda/cuda.h"
#include "model/ops.h"
#endif

#define PEAK_FLOPS 989e12
#define MAX_STEPS  200

static void usage(FILE *f)
{
	fprintf(f, "usage: train_gpu [--shape smollm|llama1b|all] [--steps N] [--warmup W]\n"
	           "                 [--batch B] [--seq T] [--rank R] [--json FILE]\n"
	           "                 [--attn auto|flash|gemm|both] [--grad-checkpoint]\n"
	           "                 [--modules qv|all] [--dp]\n"
	           "  --modules qv   LoRA on q_proj,v_proj (default); all: q,k,v,o,gate,up,down\n"
	           "  --dp           also time the DP-SGD step (per-example clipping to 1.0,\n"
	           "                 noise multiplier 1.0) alternating with the plain step;\n"
	           "                 prints the ratio dp/plain\n");
}

#ifdef FL_HAVE_CUDA
typedef struct shape {
	const char *name;
	int hidden, layers, heads, kv_heads, inter, vocab;
	float theta;
} shape;

static const shape shapes[] = {
    {"smollm-135m", 576, 30, 9, 3, 1536, 49152, 10000.0f},
    {"llama-3.2-1b", 2048, 16, 32, 8, 8192, 128256, 500000.0f},
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* A JSON number, or null when not finite. */
static const char *jnum(char *buf, size_t n, double x)
{
	if (!isfinite(x))
		return "null";
	snprintf(buf, n, "%.6g", x);
	return buf;
}

typedef struct result {
	const char *name;
	const char *attn;
	double step_ms, tokens_per_s, mfu, flops_per_token, params;
	size_t model_bytes, device_used, lora_params;
	double loss_first, loss_last;
	/* --dp: the DP-SGD step timed next to the plain one */
	double dp_step_ms, dp_tokens_per_s, dp_ratio, dp_loss_last;
	size_t dp_model_bytes, dp_device_used;
	int dp_nclipped;
	int ok;
} result;

/* the modules adapted: q,v (PEFT's default for Llama) or all seven */
static const int mods_qv[] = {MODEL_CUDA_Q, MODEL_CUDA_V};
static const int mods_all[] = {MODEL_CUDA_Q,    MODEL_CUDA_K,  MODEL_CUDA_V,   MODEL_CUDA_O,
                               MODEL_CUDA_GATE, MODEL_CUDA_UP, MODEL_CUDA_DOWN};

static void dims(const shape *s, int module, int *in, int *out)
{
	int D = s->hidden / s->heads, QD = s->heads * D, KD = s->kv_heads * D;
	switch (module) {
	case MODEL_CUDA_Q:
		*in = s->hidden, *out = QD;
		break;
	case MODEL_CUDA_K:
	case MODEL_CUDA_V:
		*in = s->hidden, *out = KD;
		break;
	case MODEL_CUDA_O:
		*in = QD, *out = s->hidden;
		break;
	case MODEL_CUDA_GATE:
	case MODEL_CUDA_UP:
		*in = s->hidden, *out = s->inter;
		break;
	default:
		*in = s->inter, *out = s->hidden;
		break;
	}
}

/* Times `steps` steps after `warmup`: the plain step alone, or with dp the
 * plain and the DP-SGD step alternating (each warmed up first), so that both
 * see the same clocks and memory state. */
static int run_shape(const shape *s, int B, int T, int r, int steps, int warmup, int ckpt,
                     int all_modules, int dp, result *res)
{
	int D = s->hidden / s->heads, QD = s->heads * D, KD = s->kv_heads * D, L = s->layers;
	const int *mods = all_modules ? mods_all : mods_qv;
	int nm = all_modules ? 7 : 2, nmat = nm * L;
	float *inv = malloc((size_t)(D / 2) * sizeof *inv); /* plain RoPE, no llama3 scaling */
	if (inv)
		model_rope_inv_freq(inv, D, s->theta, NULL);
	model_cuda_config c = {.vocab = s->vocab,
	                       .hidden = s->hidden,
	                       .inter = s->inter,
	                       .layers = L,
	                       .heads = s->heads,
	                       .kv_heads = s->kv_heads,
	                       .head_dim = D,
	                       .tied = 1,
	                       .eps = 1e-5f,
	                       .inv_freq = inv,
	                       .max_batch = B,
	                       .max_seq = T,
	                       .grad_checkpoint = ckpt};
	model_cuda *m = NULL;
	model_cuda_lora_mat *mats = calloc((size_t)nmat, sizeof *mats);
	size_t na = 0, nb = 0;
	for (int j = 0; j < nm; j++) {
		int in, out;
		dims(s, mods[j], &in, &out);
		na += (size_t)L * r * in;
		nb += (size_t)L * out * r;
	}
	float *p = calloc(na + nb, sizeof *p);
	int *tok = malloc(sizeof(int) * B * (T + 1)), *in = malloc(sizeof(int) * B * T),
	    *tg = malloc(sizeof(int) * B * T);
	double times[MAX_STEPS], dtimes[MAX_STEPS];
	fl_rng rng;
	int rv = FL_ENOMEM;
	memset(res, 0, sizeof *res);
	res->name = s->name;
	res->attn = "?";
	res->dp_step_ms = res->dp_tokens_per_s = res->dp_ratio = res->dp_loss_last = NAN;
	if (!mats || !p || !tok || !in || !tg || !inv)
		goto out;
	/* adapter layout: every A (per layer, the modules in order), then every B */
	size_t ao = 0, bo = na;
	for (int l = 0; l < L; l++)
		for (int j = 0; j < nm; j++) {
			int di, dout;
			dims(s, mods[j], &di, &dout);
			mats[l * nm + j] = (model_cuda_lora_mat){l, mods[j], ao, bo};
			ao += (size_t)r * di;
			bo += (size_t)dout * r;
		}
	fl_rng_init(&rng, 42, 1);
	/* A Kaiming-uniform (bound 1/sqrt(in)), B zero, as PEFT initializes them */
	for (int l = 0; l < L; l++)
		for (int j = 0; j < nm; j++) {
			int di, dout;
			dims(s, mods[j], &di, &dout);
			const model_cuda_lora_mat *mt = &mats[l * nm + j];
			double bound = 1.0 / sqrt((double)di);
			for (size_t i = 0; i < (size_t)r * di; i++)
				p[mt->a_off + i] = (float)((2 * fl_rng_uniform(&rng) - 1) * bound);
		}
	for (int i = 0; i < B * (T + 1); i++)
		tok[i] = (int)fl_rng_below(&rng, (uint64_t)s->vocab);
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			in[b * T + t] = tok[b * (T + 1) + t];
			tg[b * T + t] = tok[b * (T + 1) + t + 1];
		}
	if ((rv = model_cuda_new(&m, &c, NULL, 1234)) != 0)
		goto out;
	res->attn = model_cuda_attention(m);
	if ((rv = model_cuda_lora_attach(m, nmat, mats, r, 2.0f, na, nb, p, 1)) != 0)
		goto out;
	res->lora_params = na + nb;
	model_cuda_optim o = {1, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f};
	if ((rv = model_cuda_optim_set(m, &o)) != 0)
		goto out;
	uint8_t seed[32];
	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)(i * 37 + 11);
	for (int i = 0; i < warmup + steps; i++) {
		double loss = 0, t0 = fl_now_s();
		if ((rv = model_cuda_train_step(m, in, tg, B, T, 1e-4f, &loss)) != 0)
			goto out;
		double dt = fl_now_s() - t0;
		if (i == 0)
			res->loss_first = loss;
		res->loss_last = loss;
		if (i >= warmup)
			times[i - warmup] = dt;
		if (!dp)
			continue;
		if (i == 0) { /* the plain step's memory, before the DP buffers exist */
			size_t tot = 0, fre = 0;
			model_cuda_device_info(NULL, 0, &tot, &fre);
			res->model_bytes = model_cuda_mem_bytes(m);
			res->device_used = tot - fre;
		}
		/* DP-SGD: clip 1.0, noise multiplier 1.0, expected batch B; a fresh
		 * noise counter per step */
		int ncl = 0;
		seed[8] = (uint8_t)i;
		t0 = fl_now_s();
		if ((rv = model_cuda_dp_step(m, in, tg, B, T, 1.0, 1.0, (double)B, seed, 1e-4f,
		                             &loss, &ncl)) != 0)
			goto out;
		dt = fl_now_s() - t0;
		res->dp_loss_last = loss;
		res->dp_nclipped = ncl;
		if (i >= warmup)
			dtimes[i - warmup] = dt;
	}
	size_t total = 0, fr = 0;
	char dev[160];
	model_cuda_device_info(dev, sizeof dev, &total, &fr);
	qsort(times, (size_t)steps, sizeof times[0], cmp_double);
	double med = times[steps / 2];
	if (dp) {
		qsort(dtimes, (size_t)steps, sizeof dtimes[0], cmp_double);
		res->dp_step_ms = dtimes[steps / 2] * 1e3;
		res->dp_tokens_per_s = (double)B * T / dtimes[steps / 2];
		res->dp_ratio = dtimes[steps / 2] / med;
		res->dp_model_bytes = model_cuda_mem_bytes(m);
		res->dp_device_used = total - fr;
	}
	/* matrix-product weights: q, k, v, o, gate, up, down per layer, plus the LM head */
	double Nmm = (double)L * ((double)s->hidden * (QD + 2 * KD) + (double)QD * s->hidden +
	                          3.0 * s->hidden * s->inter) +
	             (double)s->vocab * s->hidden;
	double fpt = 4.0 * Nmm + 12.0 * L * (double)T * QD;
	res->step_ms = med * 1e3;
	res->tokens_per_s = (double)B * T / med;
	res->flops_per_token = fpt;
	res->mfu = fpt * res->tokens_per_s / PEAK_FLOPS;
	res->params = Nmm;
	if (!dp) { /* with --dp these were taken before the first DP step */
		res->model_bytes = model_cuda_mem_bytes(m);
		res->device_used = total - fr;
	}
	res->ok = 1;
	rv = 0;
out:
	if (rv)
		fprintf(stderr, "train_gpu: %s failed: %s\n", s->name, fl_strerror(rv));
	model_cuda_free(m);
	free(mats), free(p), free(tok), free(in), free(tg), free(inv);
	return rv;
}
#endif

int main(int argc, char **argv)
{
	const char *which = "all", *json = "build/bench/train_gpu.json", *attn = "auto";
	const char *modules = "qv";
	int steps = 10, warmup = 3, B = 8, T = 1024, r = 16, ckpt = 0, dp = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--grad-checkpoint")) {
			ckpt = 1;
			continue;
		}
		if (!strcmp(a, "--dp")) {
			dp = 1;
			continue;
		}
		if (!v) {
			usage(stderr);
			return 2;
		}
		if (!strcmp(a, "--shape"))
			which = v;
		else if (!strcmp(a, "--steps"))
			steps = atoi(v);
		else if (!strcmp(a, "--warmup"))
			warmup = atoi(v);
		else if (!strcmp(a, "--batch"))
			B = atoi(v);
		else if (!strcmp(a, "--seq"))
			T = atoi(v);
		else if (!strcmp(a, "--rank"))
			r = atoi(v);
		else if (!strcmp(a, "--json"))
			json = v;
		else if (!strcmp(a, "--attn"))
			attn = v;
		else if (!strcmp(a, "--modules"))
			modules = v;
		else {
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (steps < 1 || steps > MAX_STEPS || warmup < 0 || B < 1 || T < 2 || r < 1 ||
	    (strcmp(which, "all") && strcmp(which, "smollm") && strcmp(which, "llama1b")) ||
	    (strcmp(attn, "auto") && strcmp(attn, "flash") && strcmp(attn, "gemm") &&
	     strcmp(attn, "both")) ||
	    (strcmp(modules, "qv") && strcmp(modules, "all"))) {
		usage(stderr);
		return 2;
	}
#ifndef FL_HAVE_CUDA
	(void)json, (void)ckpt, (void)dp;
	fprintf(stderr, "train_gpu: this build has no CUDA support\n");
	return 2;
#else
	char why[200], dev[160] = "";
	if (model_cuda_probe(why, sizeof why) != 0) {
		fprintf(stderr, "train_gpu: %s\n", why);
		return 2;
	}
	fl_log_set_level(FL_LOG_WARN);
	model_cuda_device_info(dev, sizeof dev, NULL, NULL);
	result res[4];
	int n = 0, failed = 0;
	/* --attn both: the default (flash where it passes its self-check), then GEMM */
	const char *modes[2] = {attn, NULL};
	int all = !strcmp(modules, "all");
	const char *mod_names = all ? "q,k,v,o,gate,up,down" : "q_proj,v_proj";
	if (!strcmp(attn, "both")) {
		modes[0] = "auto";
		modes[1] = "gemm";
	}
	for (int k = 0; k < 2; k++) {
		if (strcmp(which, "all") && strcmp(which, k ? "llama1b" : "smollm"))
			continue;
		for (int j = 0; j < 2 && modes[j]; j++) {
			if (!strcmp(modes[j], "auto"))
				unsetenv("FEDLORA_ATTN");
			else
				setenv("FEDLORA_ATTN", modes[j], 1);
			failed |= run_shape(&shapes[k], B, T, r, steps, warmup, ckpt, all, dp,
			                    &res[n]) != 0;
			n++;
		}
	}
	printf("fedlora CUDA LoRA step (r %d %s, bf16, batch %d x seq %d, "
	       "checkpointing %s) on %s\n",
	       r, mod_names, B, T, ckpt ? "on" : "off", dev);
	printf("%-14s %17s %12s %12s %12s %8s %10s\n", "shape", "step ms", "tokens/s", "model MiB",
	       "device MiB", "MFU", "loss");
	for (int i = 0; i < n; i++) {
		if (!res[i].ok) {
			printf("%-14s failed\n", res[i].name);
			continue;
		}
		printf("%-14s %6s %10.2f %12.0f %12.0f %12.0f %7.1f%% %5.2f->%.2f\n", res[i].name,
		       res[i].attn, res[i].step_ms, res[i].tokens_per_s,
		       res[i].model_bytes / 1048576.0, res[i].device_used / 1048576.0,
		       100 * res[i].mfu, res[i].loss_first, res[i].loss_last);
		if (dp)
			printf("%-14s %6s %10.2f %12.0f %12.0f %12.0f  dp/plain %.3fx (clipped "
			       "%d/%d)\n",
			       "  dp-sgd", res[i].attn, res[i].dp_step_ms, res[i].dp_tokens_per_s,
			       res[i].dp_model_bytes / 1048576.0, res[i].dp_device_used / 1048576.0,
			       res[i].dp_ratio, res[i].dp_nclipped, B);
	}
	FILE *f = fopen(json, "w");
	if (!f) {
		perror(json);
		return 1;
	}
	fprintf(f,
	        "{\"bench\": \"train_gpu\", \"impl\": \"fedlora\", \"device\": \"%s\", "
	        "\"batch\": %d, \"seq\": %d, \"rank\": %d, \"steps\": %d, \"peak_flops\": %g, "
	        "\"grad_checkpoint\": %s, \"modules\": \"%s\", \"dp\": %s, \"dp_clip\": 1.0, "
	        "\"dp_noise_multiplier\": 1.0, \"results\": [",
	        dev, B, T, r, steps, PEAK_FLOPS, ckpt ? "true" : "false", modules,
	        dp ? "true" : "false");
	char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
	for (int i = 0; i < n; i++)
		fprintf(f,
		        "%s{\"shape\": \"%s\", \"attention\": \"%s\", \"ok\": %s, \"step_ms\": "
		        "%.4f, \"tokens_per_s\": %.1f, "
		        "\"peak_mem_bytes\": %zu, \"device_used_bytes\": %zu, \"mfu\": %.5f, "
		        "\"flops_per_token\": %.6g, \"matmul_params\": %.6g, \"loss_first\": %s, "
		        "\"loss_last\": %s, \"modules\": \"%s\", \"batch\": %d, \"seq\": %d, "
		        "\"lora_params\": %zu, \"dp\": %s, \"dp_step_ms\": %s, "
		        "\"dp_tokens_per_s\": %s, \"dp_ratio\": %s, \"dp_peak_mem_bytes\": %zu, "
		        "\"dp_device_used_bytes\": %zu, \"dp_nclipped\": %d, \"dp_loss_last\": %s}",
		        i ? ", " : "", res[i].name, res[i].attn, res[i].ok ? "true" : "false",
		        res[i].step_ms, res[i].tokens_per_s, res[i].model_bytes, res[i].device_used,
		        res[i].mfu, res[i].flops_per_token, res[i].params,
		        jnum(b1, sizeof b1, res[i].loss_first),
		        jnum(b2, sizeof b2, res[i].loss_last), modules, B, T, res[i].lora_params,
		        dp ? "true" : "false", jnum(b3, sizeof b3, res[i].dp_step_ms),
		        jnum(b4, sizeof b4, res[i].dp_tokens_per_s),
		        jnum(b5, sizeof b5, res[i].dp_ratio), res[i].dp_model_bytes,
		        res[i].dp_device_used, res[i].dp_nclipped,
		        jnum(b6, sizeof b6, res[i].dp_loss_last));
	fprintf(f, "]}\n");
	fclose(f);
	printf("wrote %s\n", json);
	return failed;
#endif
}
