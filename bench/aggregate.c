/*
 * bench/aggregate.c — aggregation throughput and LoRA-FAIR correction cost.
 *
 *   build/bench/aggregate [--json PATH] [--clients N] [--fair-clients N]
 *
 * Prints a table and writes the same figures as JSON (default: aggregate.json
 * next to the binary):
 *   1. memory bandwidth of this machine as the yardsticks (best of 3): read
 *      (sum of a 256 MiB float array) on one thread and on all CPUs, and the
 *      fold's traffic pattern s[i] += w * x[i] (f32 x, f64 s) on all CPUs;
 *   2. GB/s of client updates folded into the running sum (lora_agg_add) for
 *      fedit and ffa, compute_bias off, on one thread and on all CPUs:
 *      16 clients x a 32 MiB adapter (64 matrices 4096x4096, r=16, i.e. a
 *      7B model's q/k/v/o-sized set), bytes counted as the whole client
 *      adapter read per second, and as a fraction of the bandwidth: the
 *      bytes the scan reads at the read bandwidth plus the fold's traffic
 *      at the fold-pattern bandwidth, over the measured time;
 *   3. wall time of lora_agg_finish for fair on the same 7B-shaped adapter
 *      with 8 clients, gradient (300 steps) and ridge variants, compute_bias
 *      off and on, and the agg_bias cost alone (fedit with compute_bias).
 * Weights are generated (global random, clients = global + perturbation).
 * Peak memory is about (clients + fair clients x 2 + 4) x 32 MiB.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Memory bandwidth yardsticks over T threads, each on its own contiguous
 * chunk: kind 0 reads a float array (sum), kind 1 is the fold's own traffic
 * without its checks, s[i] += w * x[i] with x float and s double (4 bytes
 * read + 8 read + 8 written per element). GB/s of bytes moved, best of 3. */
typedef struct bw_job {
	const float *x;
	double *s;
	size_t lo, hi;
	int kind;
	double sink;
} bw_job;

static void *bw_thread(void *arg)
{
	bw_job *j = arg;
	if (j->kind == 0) {
		float lane[16] = {0};
		for (size_t i = j->lo; i + 16 <= j->hi; i += 16)
			for (int l = 0; l < 16; l++)
				lane[l] += j->x[i + l];
		for (int l = 0; l < 16; l++)
			j->sink += lane[l];
	} else {
		for (size_t i = j->lo; i < j->hi; i++)
			j->s[i] += 3.0 * j->x[i];
	}
	return NULL;
}

static double bandwidth(int kind, int T)
{
	const size_t n = (size_t)64 << 20; /* 256 MiB of floats (+ 512 MiB of doubles) */
	float *x = malloc(n * sizeof *x);
	double *s = kind ? calloc(n, sizeof *s) : NULL;
	double best = 0, sink = 0;
	pthread_t th[64];
	bw_job jobs[64];
	if (!x || (kind && !s) || T < 1 || T > 64) {
		free(x);
		free(s);
		return NAN;
	}
	perturb(x, NULL, n, 1.0, 1);
	for (int rep = 0; rep < 3; rep++) {
		double t0 = fl_now_s();
		for (int t = 0; t < T; t++) {
			jobs[t] = (bw_job){
			    .x = x, .s = s, .lo = n / T * t, .hi = n / T * (t + 1), .kind = kind};
			if (t > 0 && pthread_create(&th[t], NULL, bw_thread, &jobs[t]) != 0) {
				fprintf(stderr, "bench: cannot start a thread\n");
				exit(1);
			}
		}
		bw_thread(&jobs[0]);
		for (int t = 1; t < T; t++)
			pthread_join(th[t], NULL);
		double t = fl_now_s() - t0;
		for (int j = 0; j < T; j++)
			sink += jobs[j].sink;
		double gbs = (double)n * (kind ? 20 : 4) / t / 1e9;
		best = gbs > best ? gbs : best;
	}
	if (sink == 12345.678 || (s && s[n / 2] == 12345.678))
		printf("(sink)\n");
	free(x);
	free(s);
	return best;
}

/* Best of 3 runs of K adds (a fresh aggregator each run). */
static int fold_bench(lora_strategy s, int threads, lora_adapter *glob, lora_adapter **cl, int K,
                      lora_adapter *out, double *gbs, double *sec)
{
	lora_agg_opts o;
	lora_agg_stats st;
	int rv = 0;
	lora_agg_opts_default(&o);
	o.strategy = s;
	o.compute_bias = 0;
	o.threads = threads;
	*sec = INFINITY;
	for (int rep = 0; rep < 3 && rv == 0; rep++) {
		lora_agg *g = NULL;
		if ((rv = lora_agg_new(&g, glob, &o)) != 0)
			return rv;
		double t0 = fl_now_s();
		for (int k = 0; k < K && rv == 0; k++)
			rv = lora_agg_add(g, cl[k], 1.0 + k);
		double t = fl_now_s() - t0;
		if (rv == 0)
			rv = lora_agg_finish(g, out, &st);
		*sec = t < *sec ? t : *sec;
		lora_agg_free(g);
	}
	*gbs = (double)K * (glob->n_a + glob->n_b) * sizeof(float) / *sec / 1e9;
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

	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	const int T = cpus < 1 ? 1 : cpus > LORA_AGG_MAX_THREADS ? LORA_AGG_MAX_THREADS : (int)cpus;
	double bw = bandwidth(0, 1), bw_t = bandwidth(0, T), rmw_t = bandwidth(1, T);

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

	/* [strategy][0: one thread, 1: T threads] */
	double gbs[2][2], tf[2][2], lb[2], eff[2][2];
	for (int si = 0; si < 2; si++) {
		lora_strategy st = si ? LORA_FFA : LORA_FEDIT;
		const size_t off0 = si ? glob->n_a : 0;
		/* bytes one update moves: the scan reads the update and the global
		 * (from off0), the fold reads the update and reads+writes the sum */
		double scan_b = 4.0 * n + 4.0 * (n - off0), fold_b = 20.0 * (n - off0);
		lb[si] = K * (scan_b / (bw_t * 1e9) + fold_b / (rmw_t * 1e9));
		for (int ti = 0; ti < 2; ti++) {
			if ((rv = fold_bench(st, ti ? T : 1, glob, cl, K, out, &gbs[si][ti],
			                     &tf[si][ti])) != 0) {
				fprintf(stderr, "bench: fold failed: %s\n", fl_strerror(rv));
				return 1;
			}
			eff[si][ti] = lb[si] / tf[si][ti];
		}
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

	printf("aggregate benchmark: adapter %d matrices %dx%d r=%d (%.1f MiB), %d CPUs\n", NMAT,
	       DIM, DIM, RANK, mib, T);
	printf("%-52s %10s\n", "measure", "value");
	printf("%-52s %7.2f GB/s\n", "memory read bandwidth (1 thread, sum of 256 MiB)", bw);
	printf("%-52s %7.2f GB/s\n", "memory read bandwidth (all threads)", bw_t);
	printf("%-52s %7.2f GB/s\n", "fold traffic s[i] += w*x[i] (f32 x, f64 s, all thr.)", rmw_t);
	for (int si = 0; si < 2; si++)
		for (int ti = 0; ti < 2; ti++) {
			char lab[80];
			snprintf(lab, sizeof lab, "fold %-5s (lora_agg_add, bias off, %d thread%s)",
			         si ? "ffa" : "fedit", ti ? T : 1, ti && T > 1 ? "s" : "");
			printf("%-52s %7.2f GB/s  (%.3f s for %d clients; %.0f%% of bandwidth)\n",
			       lab, gbs[si][ti], tf[si][ti], K, 100 * eff[si][ti]);
		}
	printf("(fold GB/s: client adapter bytes per second. %% of bandwidth: the time the\n"
	       " scan's reads would take at the all-thread read bandwidth plus the fold's\n"
	       " traffic at the all-thread fold-traffic bandwidth, over the measured time)\n");
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
	        " \"cpus\":%d,\"mem_read_gbs\":%.4f,\"mem_read_all_threads_gbs\":%.4f,"
	        "\"fold_traffic_all_threads_gbs\":%.4f,\n"
	        " \"fold\":{\"clients\":%d,\"threads\":%d,"
	        "\"fedit_gbs_1thread\":%.4f,\"fedit_s_1thread\":%.5f,\"fedit_gbs\":%.4f,"
	        "\"fedit_s\":%.5f,\"fedit_frac_of_bandwidth\":%.4f,"
	        "\"ffa_gbs_1thread\":%.4f,\"ffa_s_1thread\":%.5f,\"ffa_gbs\":%.4f,"
	        "\"ffa_s\":%.5f,\"ffa_frac_of_bandwidth\":%.4f},\n"
	        " \"fair\":{\"clients\":%d,\"steps\":300,\"gradient_s\":%.5f,\"ridge_s\":%.5f,"
	        "\"cos_before\":%.6f,\"cos_after_gradient\":%.6f,\"cos_after_ridge\":%.6f,"
	        "\"gradient_with_bias_s\":%.5f,\"ridge_with_bias_s\":%.5f,"
	        "\"agg_bias_gradient\":%.6f,\"agg_bias_ridge\":%.6f},\n"
	        " \"fedit_finish_with_bias_s\":%.5f,\"agg_bias_fedit\":%.6f}\n",
	        NMAT, DIM, DIM, RANK, mib, T, bw, bw_t, rmw_t, K, T, gbs[0][0], tf[0][0], gbs[0][1],
	        tf[0][1], eff[0][1], gbs[1][0], tf[1][0], gbs[1][1], tf[1][1], eff[1][1], KF,
	        t_grad, t_ridge, s_grad.fair_cos_before, s_grad.fair_cos_after,
	        s_ridge.fair_cos_after, t_gradb, t_ridgeb, s_gradb.agg_bias, s_ridgeb.agg_bias,
	        t_bias, s_bias.agg_bias);
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
