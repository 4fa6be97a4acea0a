/*
 * lora/aggregate.c — streaming aggregation of client adapters (fedit, ffa,
 * fair), client-level DP, and the aggregation-bias metric. See
 * lora/aggregate.h for the contract and lora/fair.h for the factored algebra.
 *
 * Layout: the running sum is one double array shaped like the adapter's
 * params (all A, then all B), so folding a client is two flat passes over its
 * params: a read-only scan (finite check and the L2 norm of its delta from
 * the global, in double) and the fold itself. Nothing is folded before the
 * scan passed, so a bad update leaves the sum untouched. Both passes are
 * split into chunks over a few threads for large adapters (see "Parallel
 * fold" below); the result does not depend on the thread count. The sum is kept in
 * double: each w * c is exact there (w an integer sample count), so the order
 * in which updates arrive changes the sum only at double rounding and the
 * float result practically never; two runs with the same seed then produce
 * the same global adapter whatever the arrival order.
 *
 * Per-matrix work at finish (fair's correction, agg_bias) reads the kept
 * client copies through r x r Gram products in double; it never builds an
 * out x in matrix.
 *
 * Does not: weight clients by anything but the caller's w (and weight 1
 * under DP, as DP-FedAvg's sensitivity analysis assumes), or secure-aggregate.
 */
#include "lora/aggregate.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "lora/fair.h"
#include "privacy/noise.h"

enum { SCAN_BLK = 2048, SCAN_LANES = 8 }; /* see "Parallel fold" */

struct fold_pool;
static struct fold_pool *pool_new(int T);
static void pool_free(struct fold_pool *p);

struct lora_agg {
	lora_agg_opts o;
	lora_adapter *global; /* copy of the round's global */
	double *sum;          /* like params: weighted sum (or clipped delta sum under DP) */
	size_t off0;          /* first param that is aggregated: 0, or n_a under ffa */
	lora_adapter **keep;  /* client copies, when bias or fair needs them */
	double *wkeep;        /* their weights */
	int nkeep, capkeep;
	int clients, nclipped;
	double wsum, norm_sum;
	double *blk;  /* per-block partial norms of the update being scanned */
	int nthreads; /* fold threads for this adapter size */
	struct fold_pool *pool; /* nthreads - 1 workers, NULL when 1 (or none started) */
	int finished;
};

int lora_strategy_parse(const char *s, lora_strategy *out)
{
	if (!s)
		return FL_EINVAL;
	if (!strcmp(s, "fedit"))
		*out = LORA_FEDIT;
	else if (!strcmp(s, "ffa"))
		*out = LORA_FFA;
	else if (!strcmp(s, "fair"))
		*out = LORA_FAIR;
	else
		return FL_EINVAL;
	return 0;
}

const char *lora_strategy_name(lora_strategy s)
{
	switch (s) {
	case LORA_FEDIT:
		return "fedit";
	case LORA_FFA:
		return "ffa";
	case LORA_FAIR:
		return "fair";
	}
	return "unknown";
}

void lora_agg_opts_default(lora_agg_opts *o)
{
	memset(o, 0, sizeof *o);
	o->strategy = LORA_FEDIT;
	o->compute_bias = 1;
	o->fair_lambda = 0.01;
	o->fair_steps = 300;
	o->fair_lr = 0.01;
	o->fair_ridge = 0;
	o->dp_clip = 0;
	o->dp_noise = 0;
	o->dp_expected_clients = 0;
	o->noise = NULL;
	lora_robust_opts_default(&o->robust);
	o->threads = 0;
}

/* Threads for folding n params: opts.threads when set (capped), else one per
 * online CPU (capped) for adapters of at least LORA_AGG_PAR_MIN params, where
 * the work per update outweighs starting threads. */
static int fold_threads(const lora_agg_opts *o, size_t n)
{
	long cpus;
	int t;
	if (o->threads > 0)
		t = o->threads;
	else if (n < LORA_AGG_PAR_MIN)
		t = 1;
	else {
		cpus = sysconf(_SC_NPROCESSORS_ONLN);
		t = cpus > 0 ? (int)cpus : 1;
	}
	return t < LORA_AGG_MAX_THREADS ? t : LORA_AGG_MAX_THREADS;
}

static int dp_on(const lora_agg *g)
{
	return g->o.dp_clip > 0;
}

static int keeps_clients(const lora_agg_opts *o)
{
	return o->compute_bias || o->strategy == LORA_FAIR || o->robust.rule != LORA_ROBUST_MEAN;
}

int lora_agg_new(lora_agg **out, const lora_adapter *global, const lora_agg_opts *opts)
{
	lora_agg *g;
	int rv;
	const lora_agg_opts *o = opts;

	*out = NULL;
	if (!global || !opts)
		return FL_EINVAL;
	if (o->strategy != LORA_FEDIT && o->strategy != LORA_FFA && o->strategy != LORA_FAIR)
		return FL_EINVAL;
	if (o->strategy == LORA_FAIR &&
	    (o->fair_steps < 0 || !(o->fair_lr > 0) || !(o->fair_lambda >= 0) ||
	     !isfinite(o->fair_lambda) || (o->fair_ridge && !(o->fair_lambda > 0))))
		return FL_EINVAL;
	if (o->threads < 0)
		return FL_EINVAL;
	if (lora_robust_opts_check(&o->robust) != 0)
		return FL_EINVAL;
	if (o->robust.rule != LORA_ROBUST_MEAN && (o->strategy == LORA_FAIR || o->dp_clip > 0))
		return FL_ENOTSUP; /* see lora/robust.h */
	if (o->dp_clip > 0) {
		if (o->strategy == LORA_FAIR)
			return FL_ENOTSUP; /* its correction reads individual updates */
		if (!o->noise || !isfinite(o->dp_clip) || !(o->dp_noise >= 0) ||
		    !isfinite(o->dp_noise) || !(o->dp_expected_clients > 0) ||
		    !isfinite(o->dp_expected_clients))
			return FL_EINVAL;
	} else if (isnan(o->dp_clip)) {
		return FL_EINVAL;
	}
	g = calloc(1, sizeof *g);
	if (!g)
		return FL_ENOMEM;
	g->o = *o;
	if ((rv = lora_adapter_clone(&g->global, global)) != 0)
		goto fail;
	g->sum = malloc((global->n_a + global->n_b) * sizeof(double));
	if (!g->sum) {
		rv = FL_ENOMEM;
		goto fail;
	}
	/* Touch every page with a write now, at round start, instead of
	 * page-faulting inside the first client's fold. memset alone is not
	 * enough: the compiler may turn malloc + memset into calloc, whose fresh
	 * pages the fold's first read maps to the shared zero page and its write
	 * then copies, each copy a TLB shootdown across the fold's threads. The
	 * volatile stores cannot be elided. */
	memset(g->sum, 0, (global->n_a + global->n_b) * sizeof(double));
	for (size_t i = 0; i < global->n_a + global->n_b; i += 512)
		((volatile double *)g->sum)[i] = 0.0;
	g->off0 = o->strategy == LORA_FFA ? global->n_a : 0;
	g->nthreads = fold_threads(o, global->n_a + global->n_b);
	g->pool = g->nthreads > 1 ? pool_new(g->nthreads) : NULL;
	g->blk = malloc(((global->n_a + global->n_b - g->off0) / SCAN_BLK + 1) * sizeof(double));
	if (!g->blk) {
		rv = FL_ENOMEM;
		goto fail;
	}
	*out = g;
	return 0;
fail:
	lora_agg_free(g);
	return rv;
}

void lora_agg_free(lora_agg *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->nkeep; i++)
		lora_adapter_free(g->keep[i]);
	free(g->keep);
	free(g->wkeep);
	free(g->sum);
	free(g->blk);
	pool_free(g->pool);
	lora_adapter_free(g->global);
	free(g);
}

/* Parallel fold. An update is handled in two phases, each split into
 * contiguous chunks over g->nthreads threads (the caller's thread takes chunk
 * 0): (1) a read-only scan, the finite check over [0, n) and the squared L2
 * norm of (c - gl) over [off0, n) as one partial sum per block of SCAN_BLK
 * values, written to g->blk; (2) only when every chunk passed, the fold of
 * [off0, n) into the double sum. The block sums are added in block order by
 * the caller, and each sum element sees the same single operation, so the
 * result is bit-identical for any thread count. */
typedef struct fold_job {
	const float *c, *gl;
	double *s, *blk;
	size_t off0, lo, hi; /* this chunk: [lo, hi) of the params */
	double w, sc;        /* fold: s += w * c, or s += sc * (c - gl) under DP */
	int dp, phase;       /* phase 0: scan, 1: fold */
	int bad;             /* scan result: 1 when a value is NaN/Inf */
} fold_job;

/* One scan block [i, i1) of whole 8-value groups: the exponent-bit finite
 * test and the squared delta, lane l summing the values at i + l (mod 8), in
 * double, no contraction (-std=c11), so every build computes the same bits.
 * Written with GCC vector types so that it vectorizes, and cloned for AVX2
 * (picked at load time, the default clone elsewhere). Returns nonzero when a
 * value is NaN/Inf. */
typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));
typedef int32_t v4i __attribute__((vector_size(16)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define SCAN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SCAN_CLONES
#endif

SCAN_CLONES
static int scan_groups(const float *c, const float *gl, size_t i, size_t i1, double lane[8])
{
	const v4i expo = {0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000};
	v4i bad = {0, 0, 0, 0};
	v4d a0, a1;
	memcpy(&a0, lane, sizeof a0);
	memcpy(&a1, lane + 4, sizeof a1);
	for (; i + 8 <= i1; i += 8) {
		v4f c0, c1, g0, g1;
		v4i u0, u1;
		memcpy(&c0, c + i, 16);
		memcpy(&c1, c + i + 4, 16);
		memcpy(&g0, gl + i, 16);
		memcpy(&g1, gl + i + 4, 16);
		memcpy(&u0, &c0, 16);
		memcpy(&u1, &c1, 16);
		bad |= ((u0 & expo) == expo) | ((u1 & expo) == expo);
		v4d d0 = __builtin_convertvector(c0, v4d) - __builtin_convertvector(g0, v4d);
		v4d d1 = __builtin_convertvector(c1, v4d) - __builtin_convertvector(g1, v4d);
		a0 += d0 * d0;
		a1 += d1 * d1;
	}
	memcpy(lane, &a0, sizeof a0);
	memcpy(lane + 4, &a1, sizeof a1);
	return (bad[0] | bad[1] | bad[2] | bad[3]) != 0;
}

/* 1 when a value in x[lo, hi) is NaN/Inf (all exponent bits set). */
SCAN_CLONES
static uint32_t nonfinite_bits(const float *x, size_t lo, size_t hi)
{
	const v4i expo = {0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000};
	v4i bv = {0, 0, 0, 0};
	uint32_t bad = 0;
	size_t i = lo;
	for (; i + 16 <= hi; i += 16) {
		v4i u[4];
		memcpy(u, x + i, sizeof u);
		bv |= ((u[0] & expo) == expo) | ((u[1] & expo) == expo) | ((u[2] & expo) == expo) |
		      ((u[3] & expo) == expo);
	}
	for (; i < hi; i++) {
		uint32_t w;
		memcpy(&w, &x[i], 4);
		bad |= (uint32_t)((w & 0x7f800000u) == 0x7f800000u);
	}
	return bad | ((bv[0] | bv[1] | bv[2] | bv[3]) != 0);
}

/* The finite test is on the exponent bits so that it vectorizes. Chunk
 * boundaries inside [off0, n) fall on block boundaries (chunk_bound). */
static void scan_chunk(fold_job *j)
{
	const float *c = j->c, *gl = j->gl;
	const size_t n = j->hi;
	uint32_t bad = 0;
	size_t i0 = j->lo;

	if (i0 < j->off0) {
		size_t e = j->off0 < n ? j->off0 : n;
		bad |= nonfinite_bits(c, i0, e);
		i0 = e;
	}
	for (; i0 < n; i0 += SCAN_BLK) {
		size_t i1 = i0 + SCAN_BLK < n ? i0 + SCAN_BLK : n;
		double lane[SCAN_LANES] = {0}, bs = 0;
		size_t i = i0 + (i1 - i0) / SCAN_LANES * SCAN_LANES;
		bad |= (uint32_t)scan_groups(c, gl, i0, i, lane);
		bad |= nonfinite_bits(c, i, i1);
		for (; i < i1; i++) {
			double d = (double)c[i] - (double)gl[i];
			lane[0] += d * d;
		}
		for (int l = 0; l < SCAN_LANES; l++)
			bs += lane[l];
		j->blk[(i0 - j->off0) / SCAN_BLK] = bs;
	}
	j->bad = bad != 0;
}

/* s[i] += w * c[i], or under DP s[i] += sc * (c[i] - gl[i]), over [lo, hi):
 * one double operation per element whatever the vector width, so any clone
 * gives the same bits. Vector types because -O2 leaves the plain loop
 * scalar. */
SCAN_CLONES
static void fold_range(double *s, const float *c, const float *gl, size_t lo, size_t hi, double w,
                       int dp)
{
	size_t i = lo;
	const v4d wv = {w, w, w, w};
	if (dp) {
		for (; i + 4 <= hi; i += 4) {
			v4f c4, g4;
			v4d s4;
			memcpy(&c4, c + i, 16);
			memcpy(&g4, gl + i, 16);
			memcpy(&s4, s + i, 32);
			s4 += wv * (__builtin_convertvector(c4, v4d) - __builtin_convertvector(g4, v4d));
			memcpy(s + i, &s4, 32);
		}
		for (; i < hi; i++)
			s[i] += w * ((double)c[i] - gl[i]);
	} else {
		for (; i + 4 <= hi; i += 4) {
			v4f c4;
			v4d s4;
			memcpy(&c4, c + i, 16);
			memcpy(&s4, s + i, 32);
			s4 += wv * __builtin_convertvector(c4, v4d);
			memcpy(s + i, &s4, 32);
		}
		for (; i < hi; i++)
			s[i] += w * c[i];
	}
}

static void fold_chunk(fold_job *j)
{
	const size_t lo = j->lo > j->off0 ? j->lo : j->off0;
	if (lo < j->hi)
		fold_range(j->s, j->c, j->gl, lo, j->hi, j->dp ? j->sc : j->w, j->dp);
}

static void *fold_thread(void *arg)
{
	fold_job *j = arg;
	if (j->phase == 0)
		scan_chunk(j);
	else
		fold_chunk(j);
	return NULL;
}

/* Boundary t of T chunks over [0, n): inside [off0, n) rounded up to a scan
 * block boundary. */
static size_t chunk_bound(size_t n, size_t off0, int t, int T)
{
	size_t b = (size_t)((double)n * t / T);
	if (t >= T)
		return n;
	if (b > off0) {
		b = off0 + (b - off0 + SCAN_BLK - 1) / SCAN_BLK * SCAN_BLK;
		if (b > n)
			b = n;
	}
	return b;
}

/* Workers that live as long as the aggregator: starting threads for every
 * phase of every client cost more than the phase itself on a busy machine
 * (thread start and exit, TLB shootdowns). Worker t runs jobs[t] of each
 * phase; the caller's thread runs jobs[0]. */
typedef struct fold_pool {
	pthread_t th[LORA_AGG_MAX_THREADS];
	int n; /* workers started: jobs[1..n] */
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	unsigned long gen; /* bumped once per phase */
	int pending, quit;
	fold_job *jobs;
	struct pool_arg {
		struct fold_pool *p;
		int t;
	} arg[LORA_AGG_MAX_THREADS];
} fold_pool;

static void *pool_worker(void *arg)
{
	struct pool_arg *a = arg;
	fold_pool *p = a->p;
	unsigned long seen = 0;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->quit && p->gen == seen)
			pthread_cond_wait(&p->go, &p->mu);
		if (p->quit)
			break;
		seen = p->gen;
		fold_job *j = &p->jobs[a->t];
		pthread_mutex_unlock(&p->mu);
		fold_thread(j);
		pthread_mutex_lock(&p->mu);
		if (--p->pending == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void pool_free(fold_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->quit = 1;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	for (int t = 1; t <= p->n; t++)
		pthread_join(p->th[t], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->done);
	free(p);
}

/* Up to T - 1 workers; NULL when none could be started (the caller's thread
 * then runs every chunk, with the same result). */
static fold_pool *pool_new(int T)
{
	fold_pool *p = calloc(1, sizeof *p);
	if (!p || T < 2)
		return free(p), NULL;
	if (pthread_mutex_init(&p->mu, NULL) != 0)
		return free(p), NULL;
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	for (int t = 1; t < T; t++) {
		p->arg[t] = (struct pool_arg){p, t};
		if (pthread_create(&p->th[t], NULL, pool_worker, &p->arg[t]) != 0)
			break;
		p->n = t;
	}
	if (p->n == 0) {
		pool_free(p);
		return NULL;
	}
	return p;
}

/* Runs phase `phase` of jobs[0..T): jobs[1..n] on the pool's workers,
 * jobs[0] and any chunk without a worker here. Same result either way. */
static void run_phase(fold_pool *p, fold_job *jobs, int T, int phase)
{
	int nw = p ? (p->n < T - 1 ? p->n : T - 1) : 0;
	for (int t = 0; t < T; t++)
		jobs[t].phase = phase;
	if (nw > 0) {
		pthread_mutex_lock(&p->mu);
		p->jobs = jobs;
		p->pending = nw;
		p->gen++;
		pthread_cond_broadcast(&p->go);
		pthread_mutex_unlock(&p->mu);
	}
	fold_thread(&jobs[0]);
	for (int t = nw + 1; t < T; t++)
		fold_thread(&jobs[t]);
	if (nw > 0) {
		pthread_mutex_lock(&p->mu);
		while (p->pending > 0)
			pthread_cond_wait(&p->done, &p->mu);
		pthread_mutex_unlock(&p->mu);
	}
}

int lora_agg_add(lora_agg *g, const lora_adapter *client, double w)
{
	const size_t n = g->global->n_a + g->global->n_b, off0 = g->off0;
	const size_t nblk = (n - off0 + SCAN_BLK - 1) / SCAN_BLK;
	fold_job jobs[LORA_AGG_MAX_THREADS];
	const int T = g->nthreads;
	double norm2 = 0, norm, sc = 1.0;
	int rv, bad = 0;

	if (g->finished)
		return FL_ESTATE;
	if (!lora_adapter_same_shape(g->global, client))
		return FL_ESHAPE;
	if (!(w > 0) || !isfinite(w))
		return FL_EINVAL;
	for (int t = 0; t < T; t++) {
		jobs[t] = (fold_job){.c = client->params,
		                     .gl = g->global->params,
		                     .s = g->sum,
		                     .blk = g->blk,
		                     .off0 = off0,
		                     .lo = chunk_bound(n, off0, t, T),
		                     .hi = chunk_bound(n, off0, t + 1, T),
		                     .w = w,
		                     .dp = dp_on(g)};
	}
	run_phase(g->pool, jobs, T, 0);
	for (int t = 0; t < T; t++)
		bad |= jobs[t].bad;
	if (bad)
		return FL_ENONFINITE;
	for (size_t b = 0; b < nblk; b++)
		norm2 += g->blk[b];
	norm = sqrt(norm2);
	if (keeps_clients(&g->o)) {
		if (g->nkeep == g->capkeep) {
			int nc = g->capkeep ? 2 * g->capkeep : 8;
			lora_adapter **k = realloc(g->keep, nc * sizeof *k);
			if (!k)
				return FL_ENOMEM;
			g->keep = k;
			double *wk = realloc(g->wkeep, nc * sizeof *wk);
			if (!wk)
				return FL_ENOMEM;
			g->wkeep = wk;
			g->capkeep = nc;
		}
		if ((rv = lora_adapter_clone(&g->keep[g->nkeep], client)) != 0)
			return rv;
		g->wkeep[g->nkeep++] = w;
	}
	if (dp_on(g) && norm > g->o.dp_clip) {
		/* DP-FedAvg: clip the delta to dp_clip, weight 1. The scale is shrunk
		 * by a few float ulps so the folded float delta's norm stays <= clip. */
		sc = g->o.dp_clip / norm * (1.0 - 8 * (double)FLT_EPSILON);
		g->nclipped++;
	}
	for (int t = 0; t < T; t++)
		jobs[t].sc = sc;
	run_phase(g->pool, jobs, T, 1);
	g->clients++;
	g->wsum += w;
	g->norm_sum += norm;
	return 0;
}

/* Per-matrix pass over the kept clients against the new global `glob`: when
 * fair_out is not NULL (it is glob, writable) applies fair's correction to its
 * B first; accumulates the cosine sums and the bias residual. */
typedef struct pass_acc {
	double dw2, res2;      /* sum over matrices of ||dW||^2, ||dW - B_g A_g||^2 */
	double s0, q0, s1, q1; /* <dW, B A>, ||B A||^2 before / after fair */
} pass_acc;

static int agg_pass(const lora_adapter *const *cl, const double *p, int K, const lora_adapter *glob,
                    lora_adapter *fair_out, const lora_agg_opts *o, pass_acc *acc)
{
	lora_gram gr;
	const float **A = NULL, **B = NULL;
	double *B0 = NULL, *dB = NULL;
	int maxo = 0, maxi = 0, rv, r = glob->r;

	memset(acc, 0, sizeof *acc);
	for (int i = 0; i < glob->n; i++) {
		maxo = glob->mats[i].out > maxo ? glob->mats[i].out : maxo;
		maxi = glob->mats[i].in > maxi ? glob->mats[i].in : maxi;
	}
	if ((rv = lora_gram_init(&gr, K, r, maxo, maxi)) != 0)
		return rv;
	A = malloc(K * sizeof *A);
	B = malloc(K * sizeof *B);
	B0 = malloc((size_t)maxo * r * sizeof *B0);
	dB = malloc((size_t)maxo * r * sizeof *dB);
	if (!A || !B || !B0 || !dB) {
		rv = FL_ENOMEM;
		goto done;
	}
	for (int i = 0; i < glob->n; i++) {
		const lora_mat *gm = &glob->mats[i];
		const size_t nb = (size_t)gm->out * r;
		for (int k = 0; k < K; k++) {
			A[k] = cl[k]->mats[i].A;
			B[k] = cl[k]->mats[i].B;
		}
		if ((rv = lora_gram_compute(&gr, K, gm->out, gm->in, A, B, p, gm->A)) != 0)
			goto done;
		for (size_t j = 0; j < nb; j++)
			B0[j] = gm->B[j];
		double s = lora_gram_inner(&gr, B0), q = lora_gram_sqnorm(&gr, B0);
		acc->dw2 += gr.dw2;
		acc->s0 += s;
		acc->q0 += q;
		if (fair_out) {
			double f0, f1;
			if (o->fair_ridge)
				rv =
				    lora_fair_ridge(gr.M, gr.G, B0, gm->out, r, o->fair_lambda, dB);
			else
				rv = lora_fair_solve(gr.M, gr.G, sqrt(gr.dw2), B0, gm->out, r,
				                     o->fair_lambda, o->fair_steps, o->fair_lr, dB,
				                     &f0, &f1);
			if (rv != 0)
				goto done;
			float *Bo = fair_out->mats[i].B;
			for (size_t j = 0; j < nb; j++) {
				Bo[j] = (float)(B0[j] + dB[j]);
				B0[j] = Bo[j]; /* the published (float) values */
			}
			s = lora_gram_inner(&gr, B0);
			q = lora_gram_sqnorm(&gr, B0);
		}
		acc->s1 += s;
		acc->q1 += q;
		acc->res2 += gr.dw2 - 2.0 * s + q;
	}
	rv = 0;
done:
	lora_gram_fini(&gr);
	free(A);
	free(B);
	free(B0);
	free(dB);
	return rv;
}

static double bias_of(const pass_acc *a)
{
	if (a->dw2 > 0)
		return sqrt(fmax(a->res2, 0.0) / a->dw2);
	return fmax(a->res2, 0.0) == 0.0 ? 0.0 : NAN;
}

int lora_agg_bias(const lora_adapter *const *clients, const double *p, int k,
                  const lora_adapter *global, double *bias)
{
	pass_acc acc;
	lora_agg_opts o;
	int rv;

	*bias = NAN;
	if (k <= 0 || !clients || !p || !global)
		return FL_EINVAL;
	for (int i = 0; i < k; i++)
		if (!lora_adapter_same_shape(clients[i], global))
			return FL_ESHAPE;
	lora_agg_opts_default(&o);
	if ((rv = agg_pass(clients, p, k, global, NULL, &o, &acc)) != 0)
		return rv;
	*bias = bias_of(&acc);
	return 0;
}

int lora_agg_finish(lora_agg *g, lora_adapter *out, lora_agg_stats *st)
{
	const lora_adapter *gl = g->global;
	const size_t n = gl->n_a + gl->n_b, off0 = g->off0;
	double *p = NULL;
	pass_acc acc;
	int rv;

	memset(st, 0, sizeof *st);
	st->agg_bias = st->fair_cos_before = st->fair_cos_after = NAN;
	if (g->finished)
		return FL_ESTATE;
	if (!lora_adapter_same_shape(out, gl))
		return FL_ESHAPE;
	if (g->clients == 0)
		return FL_EQUORUM;
	/* the new global, before any fair correction */
	memcpy(out->params, gl->params, off0 * sizeof(float)); /* ffa: A frozen */
	if (dp_on(g)) {
		const double E = g->o.dp_expected_clients;
		const double sd = g->o.dp_noise * g->o.dp_clip;
		double z[1024];
		for (size_t i = off0; i < n; i += sizeof z / sizeof z[0]) {
			size_t m = n - i < sizeof z / sizeof z[0] ? n - i : sizeof z / sizeof z[0];
			priv_noise_normal(g->o.noise, z, m);
			for (size_t j = 0; j < m; j++)
				out->params[i + j] =
				    gl->params[i + j] + (float)((g->sum[i + j] + sd * z[j]) / E);
		}
	} else if (g->o.robust.rule != LORA_ROBUST_MEAN) {
		const float **x = malloc(g->nkeep * sizeof *x);
		if (!x)
			return FL_ENOMEM;
		for (int k = 0; k < g->nkeep; k++)
			x[k] = g->keep[k]->params + off0;
		rv = lora_robust_combine(x, g->wkeep, g->nkeep, gl->params + off0, n - off0,
		                         &g->o.robust, out->params + off0, &st->robust);
		free(x);
		if (rv != 0)
			return rv;
	} else {
		const double inv = 1.0 / g->wsum;
		for (size_t i = off0; i < n; i++)
			out->params[i] = (float)(g->sum[i] * inv);
	}
	out->alpha = gl->alpha;
	g->finished = 1;

	if (keeps_clients(&g->o)) {
		p = malloc(g->nkeep * sizeof *p);
		if (!p)
			return FL_ENOMEM;
		for (int k = 0; k < g->nkeep; k++)
			p[k] = dp_on(g) ? 1.0 / g->nkeep : g->wkeep[k] / g->wsum;
		rv = agg_pass((const lora_adapter *const *)g->keep, p, g->nkeep, out,
		              g->o.strategy == LORA_FAIR ? out : NULL, &g->o, &acc);
		free(p);
		if (rv != 0)
			return rv;
		if (g->o.compute_bias)
			st->agg_bias = bias_of(&acc);
		if (g->o.strategy == LORA_FAIR && acc.dw2 > 0) {
			if (acc.q0 > 0)
				st->fair_cos_before = acc.s0 / sqrt(acc.dw2 * acc.q0);
			if (acc.q1 > 0)
				st->fair_cos_after = acc.s1 / sqrt(acc.dw2 * acc.q1);
		}
	}
	if (g->o.robust.rule == LORA_ROBUST_MEAN) {
		st->robust.rule = LORA_ROBUST_MEAN;
		st->robust.clients = st->robust.selected = g->clients;
		st->robust.krum_f = -1;
		st->robust.bound = NAN;
	}
	st->clients = g->clients;
	st->weight_sum = g->wsum;
	st->dp_clipped_frac = dp_on(g) ? (double)g->nclipped / g->clients : 0.0;
	st->update_norm_mean = g->norm_sum / g->clients;
	return 0;
}
