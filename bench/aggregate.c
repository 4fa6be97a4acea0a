/*
 * bench/aggregate.c — aggregation throughput and LoRA-FAIR correction cost.
 *
 *   build/bench/aggregate [--json PATH] [--clients N] [--fair-clients N]
 *
 * Prints a table and writes the same figures as JSON (default: aggregate.json
 * next to the binary):
 *   1. plain memory-read bandwidth of this machine, one thread (sum of a
 *      256 MiB float array, best of 3), as the yardstick;
 *   2. GB/s of client updates folded into the running sum (lora_agg_add) for
 *      fedit and ffa, compute_bias off: 16 clients x a 32 MiB adapter
 *      (64 matrices 4096x4096, r=16, i.e. a 7B model's q/k/v/o-sized set),
 *      bytes counted as the whole client adapter read per second;
 *   3. wall time of lora_agg_finish for fair on the same 7B-shaped adapter
 *      with 8 clients, gradient (300 steps) and ridge variants, compute_bias
 *      off and on, and the agg_bias cost alone (fedit with compute_bias).
 * Weights are generated (global random, clients = global + perturbation).
 * Peak memory is about (clients + fair clients x 2 + 4) x 32 MiB.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "lora/aggregate.h"

#define NMAT 64
#define DIM  4096
#define RANK 16

static lora_adapter *mk_7b(void)
{
	static char namebuf[NMAT][64];
	const char *names[NMAT];
	int in[NMAT], out[NMAT];
	static const char *mods[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
	lora_adapter *a = NULL;
	for (int i = 0; i < NMAT; i++) {
		snprintf(namebuf[i], sizeof namebuf[i], "model.layers.%d.self_attn.%s", i / 4,
		         mods[i % 4]);
		names[i] = namebuf[i];
		in[i] = out[i] = DIM;
	}
	if (lora_adapter_new(&a, NMAT, names, in, out, RANK, 32.0f) != 0) {
		fprintf(stderr, "bench: out of memory\n");
		exit(1);
	}
	return a;
}

/* x = base + scale * U(-1, 1), cheap enough for hundreds of millions of values */
static void perturb(float *x, const float *base, size_t n, double scale, uint64_t seed)
{
	fl_rng g;
	fl_rng_init(&g, seed, 9);
	for (size_t i = 0; i < n; i += 4) {
		uint64_t u = fl_rng_u64(&g);
		for (size_t j = 0; j < 4 && i + j < n; j++) {
			double v = ((double)((u >> (16 * j)) & 0xffff) / 32768.0) - 1.0;
			x[i + j] = (base ? base[i + j] : 0.0f) + (float)(scale * v);
		}
	}
}

static double read_bandwidth(void)
{
	const size_t n = (size_t)64 << 20; /* 256 MiB of floats */
	float *x = malloc(n * sizeof *x);
	double best = 0, sink = 0;
	if (!x)
		return NAN;
	perturb(x, NULL, n, 1.0, 1);
	for (int rep = 0; rep < 3; rep++) {
		float lane[16] = {0};
		double t0 = fl_now_s();
		for (size_t i = 0; i < n; i += 16)
			for (int j = 0; j < 16; j++)
				lane[j] += x[i + j];
		double t = fl_now_s() - t0;
		for (int j = 0; j < 16; j++)
			sink += lane[j];
		double gbs = n * sizeof(float) / t / 1e9;
		best = gbs > best ? gbs : best;
	}
	if (sink == 12345.678)
		printf("(sink)\n");
	free(x);
	return best;
}

static int fold_bench(lora_strategy s, lora_adapter *glob, lora_adapter **cl, int K,
                      lora_adapter *out, double *gbs, double *sec)
{
	lora_agg_opts o;
	lora_agg *g = NULL;
	lora_agg_stats st;
	int rv;
	lora_agg_opts_default(&o);
	o.strategy = s;
	o.compute_bias = 0;
	if ((rv = lora_agg_new(&g, glob, &o)) != 0)
		return rv;
	double t0 = fl_now_s();
	for (int k = 0; k < K; k++)
		if ((rv = lora_agg_add(g, cl[k], 1.0 + k)) != 0)
			goto done;
	double t = fl_now_s() - t0;
	rv = lora_agg_finish(g, out, &st);
	*sec = t;
	*gbs = (double)K * (glob->n_a + glob->n_b) * sizeof(float) / t / 1e9;
done:
	lora_agg_free(g);
	return rv;
}

/* Time of lora_agg_finish (the adds are not timed). */
static int finish_bench(const lora_agg_opts *o, lora_adapter *glob, lora_adapter **cl, int K,
                        lora_adapter *out, double *sec, lora_agg_stats *st)
{
	lora_agg *g = NULL;
	int rv;
	if ((rv = lora_agg_new(&g, glob, o)) != 0)
		return rv;
	for (int k = 0; k < K; k++)
		if ((rv = lora_agg_add(g, cl[k], 1.0 + k)) != 0)
			goto done;
	double t0 = fl_now_s();
	rv = lora_agg_finish(g, out, st);
	*sec = fl_now_s() - t0;
done:
	lora_agg_free(g);
	return rv;
}

int main(int argc, char **argv)
{
	int K = 16, KF = 8, rv;
	char json_default[1024];
	const char *json = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else if (!strcmp(argv[i], "--clients") && i + 1 < argc)
			K = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--fair-clients") && i + 1 < argc)
			KF = atoi(argv[++i]);
		else {
			fprintf(stderr,
			        "usage: %s [--json PATH] [--clients N] [--fair-clients N]\n",
			        argv[0]);
			return 2;
		}
	}
	if (K < 1 || K > 64 || KF < 1 || KF > K) {
		fprintf(stderr, "bench: need 1 <= fair-clients <= clients <= 64\n");
		return 2;
	}
	if (!json) {
		const char *slash = strrchr(argv[0], '/');
		snprintf(json_default, sizeof json_default, "%.*saggregate.json",
		         slash ? (int)(slash - argv[0] + 1) : 0, argv[0]);
		json = json_default;
	}

	double bw = read_bandwidth();

	lora_adapter *glob = mk_7b(), *out = mk_7b(), **cl = calloc(K, sizeof *cl);
	size_t n = glob->n_a + glob->n_b;
	double mib = n * sizeof(float) / 1048576.0;
	perturb(glob->params, NULL, glob->n_a, 1.0 / sqrt(DIM), 2); /* A ~ Kaiming-uniform */
	perturb(lora_adapter_b(glob), NULL, glob->n_b, 0.01, 3);
	for (int k = 0; k < K; k++) {
		if (lora_adapter_clone(&cl[k], glob) != 0) {
			fprintf(stderr, "bench: out of memory\n");
			return 1;
		}
		perturb(cl[k]->params, glob->params, glob->n_a, 0.1 / sqrt(DIM), 100 + k);
		perturb(lora_adapter_b(cl[k]), lora_adapter_b(glob), glob->n_b, 0.005, 200 + k);
	}

	double gbs_fedit, gbs_ffa, t_fedit, t_ffa;
	if ((rv = fold_bench(LORA_FEDIT, glob, cl, K, out, &gbs_fedit, &t_fedit)) != 0 ||
	    (rv = fold_bench(LORA_FFA, glob, cl, K, out, &gbs_ffa, &t_ffa)) != 0) {
		fprintf(stderr, "bench: fold failed: %s\n", fl_strerror(rv));
		return 1;
	}

	lora_agg_opts o;
	lora_agg_stats s_grad, s_ridge, s_gradb, s_ridgeb, s_bias;
	double t_grad, t_ridge, t_gradb, t_ridgeb, t_bias;
	lora_agg_opts_default(&o);
	o.strategy = LORA_FAIR;
	o.compute_bias = 0;
	if ((rv = finish_bench(&o, glob, cl, KF, out, &t_grad, &s_grad)) != 0)
		goto fail;
	o.fair_ridge = 1;
	if ((rv = finish_bench(&o, glob, cl, KF, out, &t_ridge, &s_ridge)) != 0)
		goto fail;
	o.compute_bias = 1;
	if ((rv = finish_bench(&o, glob, cl, KF, out, &t_ridgeb, &s_ridgeb)) != 0)
		goto fail;
	o.fair_ridge = 0;
	if ((rv = finish_bench(&o, glob, cl, KF, out, &t_gradb, &s_gradb)) != 0)
		goto fail;
	o.strategy = LORA_FEDIT;
	if ((rv = finish_bench(&o, glob, cl, KF, out, &t_bias, &s_bias)) != 0)
		goto fail;

	printf("aggregate benchmark: adapter %d matrices %dx%d r=%d (%.1f MiB), one thread folds\n",
	       NMAT, DIM, DIM, RANK, mib);
	printf("%-52s %10s\n", "measure", "value");
	printf("%-52s %7.2f GB/s\n", "memory read bandwidth (1 thread, sum of 256 MiB)", bw);
	printf("%-52s %7.2f GB/s  (%.3f s for %d clients)\n", "fold fedit (lora_agg_add, bias off)",
	       gbs_fedit, t_fedit, K);
	printf("%-52s %7.2f GB/s  (%.3f s for %d clients)\n", "fold ffa   (lora_agg_add, bias off)",
	       gbs_ffa, t_ffa, K);
	printf("%-52s %7.3f s   (cos %.6f -> %.6f)\n", "fair gradient correction (300 steps)",
	       t_grad, s_grad.fair_cos_before, s_grad.fair_cos_after);
	printf("%-52s %7.3f s   (cos %.6f -> %.6f)\n", "fair ridge correction", t_ridge,
	       s_ridge.fair_cos_before, s_ridge.fair_cos_after);
	printf("%-52s %7.3f s   (agg_bias %.5f)\n", "fedit finish with agg_bias", t_bias,
	       s_bias.agg_bias);
	printf("%-52s %7.3f s   (agg_bias %.5f)\n", "fair gradient + agg_bias", t_gradb,
	       s_gradb.agg_bias);
	printf("%-52s %7.3f s   (agg_bias %.5f)\n", "fair ridge + agg_bias", t_ridgeb,
	       s_ridgeb.agg_bias);
	printf("(fair rows: %d clients; finish only, adds not timed)\n", KF);

	FILE *f = fopen(json, "w");
	if (!f) {
		fprintf(stderr, "bench: cannot write %s\n", json);
		return 1;
	}
	fprintf(f,
	        "{\"adapter\":{\"matrices\":%d,\"in\":%d,\"out\":%d,\"r\":%d,\"mib\":%.3f},\n"
	        " \"mem_read_gbs\":%.4f,\n"
	        " \"fold\":{\"clients\":%d,\"fedit_gbs\":%.4f,\"fedit_s\":%.5f,\"ffa_gbs\":%.4f,"
	        "\"ffa_s\":%.5f},\n"
	        " \"fair\":{\"clients\":%d,\"steps\":300,\"gradient_s\":%.5f,\"ridge_s\":%.5f,"
	        "\"cos_before\":%.6f,\"cos_after_gradient\":%.6f,\"cos_after_ridge\":%.6f,"
	        "\"gradient_with_bias_s\":%.5f,\"ridge_with_bias_s\":%.5f,"
	        "\"agg_bias_gradient\":%.6f,\"agg_bias_ridge\":%.6f},\n"
	        " \"fedit_finish_with_bias_s\":%.5f,\"agg_bias_fedit\":%.6f}\n",
	        NMAT, DIM, DIM, RANK, mib, bw, K, gbs_fedit, t_fedit, gbs_ffa, t_ffa, KF, t_grad,
	        t_ridge, s_grad.fair_cos_before, s_grad.fair_cos_after, s_ridge.fair_cos_after,
	        t_gradb, t_ridgeb, s_gradb.agg_bias, s_ridgeb.agg_bias, t_bias, s_bias.agg_bias);
	fclose(f);
	printf("wrote %s\n", json);
	for (int k = 0; k < K; k++)
		lora_adapter_free(cl[k]);
	free(cl);
	lora_adapter_free(glob);
	lora_adapter_free(out);
	return 0;
fail:
	fprintf(stderr, "bench: fair failed: %s\n", fl_strerror(rv));
	return 1;
}
