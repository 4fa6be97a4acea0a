/*
 * tests/aggregate_test.c — lora/aggregate and lora/fair: strategies, the
 * aggregation-bias metric, every factored quantity against a dense out x in
 * reference in double on small shapes, fair's objective and solver, weights,
 * bad input, and client-level DP (clipping bound, noise scale).
 */
#include <stdint.h>

#include "core/rng.h"
#include "lora/aggregate.h"
#include "lora/fair.h"
#include "privacy/noise.h"
#include "tests/test.h"

#define KMAX 8

/* A small adapter of 3 matrices with different shapes. */
static lora_adapter *mk(int r)
{
	const char *names[3] = {"layers.0", "layers.1", "layers.2"};
	int in[3] = {13, 9, 16}, out[3] = {7, 12, 5};
	lora_adapter *a = NULL;
	if (lora_adapter_new(&a, 3, names, in, out, r, 2.0f * r) != 0)
		abort();
	return a;
}

static void fill(float *x, size_t n, fl_rng *g, double scale)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(scale * fl_rng_normal(g));
}

/* Clients around a common global: A_k = A0 + sa * noise, B_k = B0 + sb * noise. */
static void mk_round(lora_adapter **glob, lora_adapter **cl, int K, int r, uint64_t seed, double sa,
                     double sb)
{
	fl_rng g;
	fl_rng_init(&g, seed, 1);
	*glob = mk(r);
	fill(lora_adapter_a(*glob), (*glob)->n_a, &g, 0.3);
	fill(lora_adapter_b(*glob), (*glob)->n_b, &g, 0.1);
	for (int k = 0; k < K; k++) {
		if (lora_adapter_clone(&cl[k], *glob) != 0)
			abort();
		for (size_t i = 0; i < cl[k]->n_a; i++)
			lora_adapter_a(cl[k])[i] += (float)(sa * fl_rng_normal(&g));
		for (size_t i = 0; i < cl[k]->n_b; i++)
			lora_adapter_b(cl[k])[i] += (float)(sb * fl_rng_normal(&g));
	}
}

static void free_all(lora_adapter *glob, lora_adapter **cl, int K)
{
	lora_adapter_free(glob);
	for (int k = 0; k < K; k++)
		lora_adapter_free(cl[k]);
}

static int run_agg(const lora_agg_opts *o, const lora_adapter *glob, lora_adapter *const *cl,
                   const double *w, int K, lora_adapter **out, lora_agg_stats *st)
{
	lora_agg *g = NULL;
	int rv;
	if ((rv = lora_agg_new(&g, glob, o)) != 0)
		return rv;
	for (int k = 0; k < K; k++)
		if ((rv = lora_agg_add(g, cl[k], w[k])) != 0)
			goto done;
	if ((rv = lora_adapter_clone(out, glob)) != 0)
		goto done;
	rv = lora_agg_finish(g, *out, st);
done:
	lora_agg_free(g);
	return rv;
}

/* ---- dense references (double, explicit out x in) ---- */

/* dW = sum_k p_k B_k A_k for matrix i. */
static double *dense_dw(lora_adapter *const *cl, const double *p, int K, int i)
{
	const lora_mat *m0 = &cl[0]->mats[i];
	int r = cl[0]->r, o = m0->out, n = m0->in;
	double *dw = calloc((size_t)o * n, sizeof *dw);
	for (int k = 0; k < K; k++) {
		const lora_mat *m = &cl[k]->mats[i];
		for (int a = 0; a < o; a++)
			for (int b = 0; b < n; b++) {
				double s = 0;
				for (int j = 0; j < r; j++)
					s += (double)m->B[a * r + j] * m->A[j * n + b];
				dw[a * n + b] += p[k] * s;
			}
	}
	return dw;
}

/* P = Bx Ax (out x in), Bx double (out x r), Ax float (r x in). */
static double *dense_prod(const double *Bx, const float *Ax, int o, int n, int r)
{
	double *P = calloc((size_t)o * n, sizeof *P);
	for (int a = 0; a < o; a++)
		for (int b = 0; b < n; b++)
			for (int j = 0; j < r; j++)
				P[a * n + b] += Bx[a * r + j] * Ax[j * n + b];
	return P;
}

static double dotd(const double *x, const double *y, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += x[i] * y[i];
	return s;
}

/* Dense FAIR objective for B' = B0 + dB. */
static double dense_fair_f(const double *dw, const double *B0, const double *dB, const float *Ax,
                           int o, int n, int r, double lambda)
{
	size_t nb = (size_t)o * r;
	double *Bp = malloc(nb * sizeof *Bp);
	for (size_t j = 0; j < nb; j++)
		Bp[j] = B0[j] + dB[j];
	double *P = dense_prod(Bp, Ax, o, n, r);
	size_t N = (size_t)o * n;
	double f = 1.0 - dotd(dw, P, N) / sqrt(dotd(dw, dw, N) * dotd(P, P, N)) +
	           lambda * dotd(dB, dB, nb);
	free(P);
	free(Bp);
	return f;
}

/* Global bias over the adapter against a new global, densely. */
static double dense_bias(lora_adapter *const *cl, const double *p, int K, const lora_adapter *gl)
{
	double num = 0, den = 0;
	for (int i = 0; i < gl->n; i++) {
		const lora_mat *m = &gl->mats[i];
		int o = m->out, n = m->in, r = gl->r;
		double *dw = dense_dw(cl, p, K, i), *Bg = malloc((size_t)o * r * sizeof *Bg);
		for (int j = 0; j < o * r; j++)
			Bg[j] = m->B[j];
		double *P = dense_prod(Bg, m->A, o, n, r);
		for (int j = 0; j < o * n; j++) {
			num += (dw[j] - P[j]) * (dw[j] - P[j]);
			den += dw[j] * dw[j];
		}
		free(dw);
		free(Bg);
		free(P);
	}
	return sqrt(num / den);
}

/* ---- cases ---- */

static void test_strategy_names(void)
{
	lora_strategy s;
	CHECK(lora_strategy_parse("fedit", &s) == 0 && s == LORA_FEDIT);
	CHECK(lora_strategy_parse("ffa", &s) == 0 && s == LORA_FFA);
	CHECK(lora_strategy_parse("fair", &s) == 0 && s == LORA_FAIR);
	CHECK(lora_strategy_parse("FedAvg", &s) == FL_EINVAL);
	CHECK(!strcmp(lora_strategy_name(LORA_FAIR), "fair"));
	lora_agg_opts o;
	lora_agg_opts_default(&o);
	CHECK(o.strategy == LORA_FEDIT && o.compute_bias == 1 && o.fair_lambda == 0.01 &&
	      o.fair_steps == 300 && o.fair_lr == 0.01 && o.dp_clip <= 0);
}

/* ffa: A frozen on every client -> averaging is exact, bias 0 to rounding;
 * the new A is the old one and B is the weighted average. */
static void test_ffa_bias_zero(void)
{
	enum { K = 5 };
	lora_adapter *glob, *cl[K], *out = NULL;
	double w[K] = {10, 3, 7, 1, 25}, W = 46;
	lora_agg_opts o;
	lora_agg_stats st;

	mk_round(&glob, cl, K, 4, 11, 0.0, 0.2);
	lora_agg_opts_default(&o);
	o.strategy = LORA_FFA;
	CHECK_RC(run_agg(&o, glob, cl, w, K, &out, &st));
	if (!out)
		goto done;
	CHECK(st.clients == K && st.weight_sum == W);
	CHECK(st.agg_bias >= 0 && st.agg_bias < 1e-6);
	CHECK(!memcmp(lora_adapter_a(out), lora_adapter_a(glob), glob->n_a * sizeof(float)));
	double worst = 0;
	for (size_t i = 0; i < glob->n_b; i++) {
		double ref = 0;
		for (int k = 0; k < K; k++)
			ref += w[k] / W * lora_adapter_b(cl[k])[i];
		worst = fmax(worst, fabs(lora_adapter_b(out)[i] - ref));
	}
	CHECK(worst < 1e-6);
	/* clients that (wrongly) moved A: ffa still keeps A; the bias shows it */
	for (int k = 0; k < K; k++)
		for (size_t i = 0; i < cl[k]->n_a; i++)
			lora_adapter_a(cl[k])[i] += 0.05f * (float)((i * 7 + k) % 5) - 0.1f;
	lora_adapter_free(out);
	out = NULL;
	CHECK_RC(run_agg(&o, glob, cl, w, K, &out, &st));
	CHECK(st.agg_bias > 1e-3);
	CHECK(out && !memcmp(lora_adapter_a(out), lora_adapter_a(glob), glob->n_a * sizeof(float)));
done:
	lora_adapter_free(out);
	free_all(glob, cl, K);
}

/* fedit on random clients: bias clearly > 0 and equal to the dense reference;
 * fair (gradient and ridge) reduces it on the same updates. */
static void test_fedit_vs_fair_bias(void)
{
	enum { K = 6 };
	lora_adapter *glob, *cl[K], *o_fedit = NULL, *o_fair = NULL, *o_ridge = NULL;
	double w[K] = {1, 2, 3, 4, 5, 6}, p[K];
	lora_agg_opts o;
	lora_agg_stats s_fedit, s_fair, s_ridge;

	mk_round(&glob, cl, K, 4, 12, 0.3, 0.3);
	for (int k = 0; k < K; k++)
		p[k] = w[k] / 21.0;
	lora_agg_opts_default(&o);
	CHECK_RC(run_agg(&o, glob, cl, w, K, &o_fedit, &s_fedit));
	o.strategy = LORA_FAIR;
	CHECK_RC(run_agg(&o, glob, cl, w, K, &o_fair, &s_fair));
	o.fair_ridge = 1;
	CHECK_RC(run_agg(&o, glob, cl, w, K, &o_ridge, &s_ridge));
	if (!o_fedit || !o_fair || !o_ridge)
		goto done;
	CHECK(s_fedit.agg_bias > 0.05);
	CHECK_NEAR(s_fedit.agg_bias, dense_bias(cl, p, K, o_fedit), 0, 1e-5);
	CHECK_NEAR(s_fair.agg_bias, dense_bias(cl, p, K, o_fair), 0, 1e-5);
	CHECK_NEAR(s_ridge.agg_bias, dense_bias(cl, p, K, o_ridge), 0, 1e-5);
	CHECK(s_fair.agg_bias < s_fedit.agg_bias);
	CHECK(s_ridge.agg_bias < s_fedit.agg_bias);
	CHECK(s_fair.fair_cos_after > s_fair.fair_cos_before);
	/* fair publishes (A_avg, B_avg + dB): A equals fedit's */
	CHECK(!memcmp(lora_adapter_a(o_fair), lora_adapter_a(o_fedit), glob->n_a * sizeof(float)));
	/* the exposed routine agrees with the aggregator */
	double b;
	CHECK_RC(lora_agg_bias((const lora_adapter *const *)cl, p, K, o_fedit, &b));
	CHECK_NEAR(b, s_fedit.agg_bias, 1e-12, 1e-9);
	printf("# bias fedit %.4f fair %.4f ridge %.4f; cos %.4f -> %.4f\n", s_fedit.agg_bias,
	       s_fair.agg_bias, s_ridge.agg_bias, s_fair.fair_cos_before, s_fair.fair_cos_after);
	/* fully independent random clients too */
	free_all(glob, cl, K);
	lora_adapter_free(o_fedit);
	lora_adapter_free(o_fair);
	o_fedit = o_fair = NULL;
	mk_round(&glob, cl, K, 4, 13, 1.0, 1.0);
	lora_agg_opts_default(&o);
	CHECK_RC(run_agg(&o, glob, cl, w, K, &o_fedit, &s_fedit));
	o.strategy = LORA_FAIR;
	CHECK_RC(run_agg(&o, glob, cl, w, K, &o_fair, &s_fair));
	CHECK(s_fedit.agg_bias > 0.3 && s_fair.agg_bias < s_fedit.agg_bias);
done:
	lora_adapter_free(o_fedit);
	lora_adapter_free(o_fair);
	lora_adapter_free(o_ridge);
	free_all(glob, cl, K);
}

/* Every quantity of lora_gram equals its dense out x in counterpart, on the
 * route lora_gram_init picks for K clients (want_dense: the route expected). */
static void factored_vs_dense(int K, int want_dense)
{
	lora_adapter *glob, *cl[16];
	double p[16], psum = 0, lambda = 0.05;
	lora_gram gr;
	fl_rng g;

	for (int k = 0; k < K; k++)
		psum += p[k] = 0.1 * (k + 1);
	for (int k = 0; k < K; k++)
		p[k] /= psum;
	mk_round(&glob, cl, K, 3, 14, 0.5, 0.5);
	fl_rng_init(&g, 99, 2);
	CHECK_RC(lora_gram_init(&gr, K, 3, 12, 16));
	CHECK(gr.dense == want_dense);
	CHECK(want_dense ? gr.GA == NULL && gr.GB == NULL && gr.D : gr.GA && gr.GB && !gr.D);
	for (int i = 0; i < glob->n; i++) {
		const lora_mat *m = &glob->mats[i];
		int o = m->out, n = m->in, r = 3;
		const float *A[16], *B[16];
		for (int k = 0; k < K; k++) {
			A[k] = cl[k]->mats[i].A;
			B[k] = cl[k]->mats[i].B;
		}
		/* reference A_x: a fresh random r x in */
		float *Ax = malloc((size_t)r * n * sizeof *Ax);
		fill(Ax, (size_t)r * n, &g, 0.4);
		CHECK_RC(lora_gram_compute(&gr, K, o, n, A, B, p, Ax));
		double *dw = dense_dw(cl, p, K, i);
		size_t N = (size_t)o * n, nb = (size_t)o * r;
		/* ||dW||^2 */
		CHECK_NEAR(gr.dw2, dotd(dw, dw, N), 0, 1e-5);
		/* M = dW Ax^T */
		for (int a = 0; a < o; a++)
			for (int j = 0; j < r; j++) {
				double ref = 0;
				for (int b = 0; b < n; b++)
					ref += dw[a * n + b] * Ax[j * n + b];
				CHECK_NEAR(gr.M[a * r + j], ref, 1e-12, 1e-5);
			}
		/* <dW, B'Ax>, ||B'Ax||^2, bias, for a random B' */
		double *Bp = malloc(nb * sizeof *Bp), *dB = malloc(nb * sizeof *dB);
		double *B0 = malloc(nb * sizeof *B0), *grad = malloc(nb * sizeof *grad);
		for (size_t j = 0; j < nb; j++) {
			Bp[j] = 0.3 * fl_rng_normal(&g);
			B0[j] = 0.3 * fl_rng_normal(&g);
			dB[j] = 0.05 * fl_rng_normal(&g);
		}
		double *P = dense_prod(Bp, Ax, o, n, r);
		CHECK_NEAR(lora_gram_inner(&gr, Bp), dotd(dw, P, N), 0, 1e-5);
		CHECK_NEAR(lora_gram_sqnorm(&gr, Bp), dotd(P, P, N), 0, 1e-5);
		double res = 0;
		for (size_t j = 0; j < N; j++)
			res += (dw[j] - P[j]) * (dw[j] - P[j]);
		double fres = gr.dw2 - 2 * lora_gram_inner(&gr, Bp) + lora_gram_sqnorm(&gr, Bp);
		CHECK_NEAR(sqrt(fres / gr.dw2), sqrt(res / dotd(dw, dw, N)), 0, 1e-5);
		/* fair objective and gradient (gradient by central differences of
		 * the dense objective) */
		double f =
		    lora_fair_objective(gr.M, gr.G, sqrt(gr.dw2), B0, dB, o, r, lambda, grad);
		CHECK_NEAR(f, dense_fair_f(dw, B0, dB, Ax, o, n, r, lambda), 0, 1e-5);
		double gmax = 0;
		for (size_t j = 0; j < nb; j++)
			gmax = fmax(gmax, fabs(grad[j]));
		for (size_t j = 0; j < nb; j++) {
			const double h = 1e-5;
			double keep = dB[j], fp, fm;
			dB[j] = keep + h;
			fp = dense_fair_f(dw, B0, dB, Ax, o, n, r, lambda);
			dB[j] = keep - h;
			fm = dense_fair_f(dw, B0, dB, Ax, o, n, r, lambda);
			dB[j] = keep;
			CHECK_NEAR(grad[j], (fp - fm) / (2 * h), 1e-5 * gmax, 1e-5);
		}
		free(P);
		free(Bp);
		free(dB);
		free(B0);
		free(grad);
		free(dw);
		free(Ax);
	}
	lora_gram_fini(&gr);
	free_all(glob, cl, K);
}

/* Few clients of wide matrices: the Gram route (K r = 12 < 2 out in / (out +
 * in) = 13.7 for the largest 12 x 16 matrix). */
static void test_factored_equals_dense(void)
{
	factored_vs_dense(4, 0);
}

/* Many clients: the dense route (K r = 48), no (K r)^2 Gram matrices, the
 * same M, G and ||dW||^2. */
static void test_dense_route_equals_dense(void)
{
	factored_vs_dense(16, 1);
}

/* The eigenbasis solver takes exactly the steps of plain gradient descent on
 * the O(out r^2) objective (same halving rule), and decreases it. */
static void test_fair_solver_is_gradient_descent(void)
{
	enum { O = 9, R = 4 };
	double M[O * R], G[R * R], B0[O * R], dB[O * R], ref[O * R], grad[O * R], L[R * R];
	double f0, f1, nw = 3.0, lambda = 0.01, lr = 0.05;
	const int steps = 60;
	fl_rng g;

	fl_rng_init(&g, 5, 3);
	for (int i = 0; i < O * R; i++) {
		M[i] = fl_rng_normal(&g);
		B0[i] = 0.5 * fl_rng_normal(&g);
	}
	for (int i = 0; i < R * R; i++)
		L[i] = fl_rng_normal(&g);
	for (int a = 0; a < R; a++) /* G = L L^T, PSD */
		for (int b = 0; b < R; b++) {
			double s = 0;
			for (int j = 0; j < R; j++)
				s += L[a * R + j] * L[b * R + j];
			G[a * R + b] = s;
		}
	/* ||dW|| must be consistent with M for a meaningful cosine: any nw with
	 * |<M,B'>| <= nw ||B'A|| works for the algebra; pick a large one */
	nw = 4.0 * sqrt(dotd(M, M, O * R)) * 10;
	CHECK_RC(lora_fair_solve(M, G, nw, B0, O, R, lambda, steps, lr, dB, &f0, &f1));
	CHECK(f1 < f0);
	CHECK_NEAR(f0, lora_fair_objective(M, G, nw, B0, (double[O * R]){0}, O, R, lambda, NULL), 0,
	           1e-12);
	CHECK_NEAR(f1, lora_fair_objective(M, G, nw, B0, dB, O, R, lambda, NULL), 1e-12, 1e-9);
	/* plain gradient descent with the same rule */
	double f = lora_fair_objective(M, G, nw, B0, (double[O * R]){0}, O, R, lambda, NULL);
	double lr_c = lr, trial[O * R];
	memset(ref, 0, sizeof ref);
	for (int it = 0; it < steps; it++) {
		int acc = 0;
		lora_fair_objective(M, G, nw, B0, ref, O, R, lambda, grad);
		for (int tries = 0; tries < 60 && !acc; tries++) {
			for (int i = 0; i < O * R; i++)
				trial[i] = ref[i] - lr_c * grad[i];
			double f2 = lora_fair_objective(M, G, nw, B0, trial, O, R, lambda, NULL);
			if (f2 <= f) {
				memcpy(ref, trial, sizeof ref);
				f = f2;
				acc = 1;
			} else {
				lr_c *= 0.5;
			}
		}
		if (!acc)
			break;
	}
	double worst = 0, scale = 0;
	for (int i = 0; i < O * R; i++) {
		worst = fmax(worst, fabs(dB[i] - ref[i]));
		scale = fmax(scale, fabs(ref[i]));
	}
	CHECK(scale > 0 && worst <= 1e-6 * scale);
	/* more steps keep lowering f */
	double f1b;
	CHECK_RC(lora_fair_solve(M, G, nw, B0, O, R, lambda, 4 * steps, lr, dB, &f0, &f1b));
	CHECK(f1b <= f1);
	/* undefined cosine: no correction */
	memset(B0, 0, sizeof B0);
	CHECK_RC(lora_fair_solve(M, G, nw, B0, O, R, lambda, steps, lr, dB, &f0, &f1));
	CHECK(isnan(f0) && dotd(dB, dB, O * R) == 0);
}

/* Ridge closed form against the dense normal equations. */
static void test_fair_ridge_dense(void)
{
	enum { K = 3, R = 3 };
	lora_adapter *glob, *cl[K];
	double p[K] = {0.5, 0.3, 0.2}, lambda = 0.1;
	lora_gram gr;

	mk_round(&glob, cl, K, R, 15, 0.4, 0.4);
	CHECK_RC(lora_gram_init(&gr, K, R, 12, 16));
	for (int i = 0; i < glob->n; i++) {
		const lora_mat *m = &glob->mats[i];
		int o = m->out, n = m->in;
		const float *A[K], *B[K];
		for (int k = 0; k < K; k++) {
			A[k] = cl[k]->mats[i].A;
			B[k] = cl[k]->mats[i].B;
		}
		CHECK_RC(lora_gram_compute(&gr, K, o, n, A, B, p, m->A));
		double *B0 = malloc((size_t)o * R * sizeof *B0), *dB = malloc((size_t)o * R * 8);
		for (int j = 0; j < o * R; j++)
			B0[j] = m->B[j];
		CHECK_RC(lora_fair_ridge(gr.M, gr.G, B0, o, R, lambda, dB));
		/* dense: X = (dW - B0 A) A^T (o x R); H = A A^T + lambda I; dB H = X */
		double *dw = dense_dw(cl, p, K, i), *P = dense_prod(B0, m->A, o, n, R);
		double X[16 * R], H[R * R];
		for (int a = 0; a < o; a++)
			for (int j = 0; j < R; j++) {
				double s = 0;
				for (int b = 0; b < n; b++)
					s += (dw[a * n + b] - P[a * n + b]) * m->A[j * n + b];
				X[a * R + j] = s;
			}
		for (int a = 0; a < R; a++)
			for (int b = 0; b < R; b++) {
				double s = a == b ? lambda : 0;
				for (int c = 0; c < n; c++)
					s += (double)m->A[a * n + c] * m->A[b * n + c];
				H[a * R + b] = s;
			}
		/* check dB H == X (the normal equations) */
		for (int a = 0; a < o; a++)
			for (int j = 0; j < R; j++) {
				double s = 0;
				for (int b = 0; b < R; b++)
					s += dB[a * R + b] * H[b * R + j];
				CHECK_NEAR(s, X[a * R + j], 1e-10, 1e-6);
			}
		free(B0);
		free(dB);
		free(dw);
		free(P);
	}
	lora_gram_fini(&gr);
	free_all(glob, cl, K);
}

/* Weights: the result is the weighted mean; scaling all weights changes nothing. */
static void test_weights(void)
{
	enum { K = 2 };
	lora_adapter *glob, *cl[K], *o1 = NULL, *o2 = NULL;
	double w1[K] = {1, 3}, w2[K] = {10, 30}, weq[K] = {1, 1};
	lora_agg_opts o;
	lora_agg_stats st;

	mk_round(&glob, cl, K, 2, 16, 0.5, 0.5);
	lora_agg_opts_default(&o);
	CHECK_RC(run_agg(&o, glob, cl, w1, K, &o1, &st));
	CHECK_RC(run_agg(&o, glob, cl, w2, K, &o2, &st));
	if (!o1 || !o2)
		goto done;
	double worst = 0, worst2 = 0;
	for (size_t i = 0; i < glob->n_a + glob->n_b; i++) {
		double ref = 0.25 * cl[0]->params[i] + 0.75 * cl[1]->params[i];
		worst = fmax(worst, fabs(o1->params[i] - ref));
		worst2 = fmax(worst2, fabs(o1->params[i] - o2->params[i]));
	}
	CHECK(worst < 1e-6 && worst2 < 1e-6);
	lora_adapter_free(o2);
	o2 = NULL;
	CHECK_RC(run_agg(&o, glob, cl, weq, K, &o2, &st));
	CHECK(o2 && fabs(o2->params[0] - 0.5 * (cl[0]->params[0] + cl[1]->params[0])) < 1e-6);
	CHECK(o2 && fabs(o2->params[0] - o1->params[0]) > 1e-4); /* weights matter */
done:
	lora_adapter_free(o1);
	lora_adapter_free(o2);
	free_all(glob, cl, K);
}

/* NaN/Inf and wrong shapes are refused and leave the sum untouched. */
static void test_bad_input(void)
{
	enum { K = 2 };
	lora_adapter *glob, *cl[K], *bad = NULL, *out = NULL, *other = NULL;
	lora_agg *g = NULL;
	lora_agg_opts o;
	lora_agg_stats st;

	mk_round(&glob, cl, K, 2, 17, 0.5, 0.5);
	lora_agg_opts_default(&o);
	CHECK_RC(lora_agg_new(&g, glob, &o));
	if (!g)
		goto done;
	CHECK(lora_agg_finish(g, glob, &st) == FL_EQUORUM);
	lora_agg_free(g);
	CHECK_RC(lora_agg_new(&g, glob, &o));
	CHECK_RC(lora_adapter_clone(&bad, cl[1]));
	lora_adapter_b(bad)[bad->n_b - 1] = NAN;
	CHECK(lora_agg_add(g, bad, 5) == FL_ENONFINITE);
	lora_adapter_b(bad)[bad->n_b - 1] = 0;
	lora_adapter_a(bad)[0] = INFINITY;
	CHECK(lora_agg_add(g, bad, 5) == FL_ENONFINITE);
	other = mk(3); /* other rank */
	CHECK(lora_agg_add(g, other, 1) == FL_ESHAPE);
	CHECK(lora_agg_add(g, cl[0], 0) == FL_EINVAL);
	CHECK(lora_agg_add(g, cl[0], NAN) == FL_EINVAL);
	CHECK_RC(lora_agg_add(g, cl[0], 2));
	CHECK_RC(lora_adapter_clone(&out, glob));
	CHECK(lora_agg_finish(g, other, &st) == FL_ESHAPE);
	CHECK_RC(lora_agg_finish(g, out, &st));
	CHECK(st.clients == 1);
	/* only the good client went in */
	CHECK(out && !memcmp(out->params, cl[0]->params, (glob->n_a + glob->n_b) * sizeof(float)));
	CHECK(st.agg_bias < 1e-6); /* one client: product of means = mean of products */
	CHECK(lora_agg_add(g, cl[1], 1) == FL_ESTATE);
	/* option checks */
	lora_agg_free(g);
	g = NULL;
	o.strategy = LORA_FAIR;
	o.dp_clip = 1.0;
	CHECK(lora_agg_new(&g, glob, &o) == FL_ENOTSUP && !g);
	o.strategy = LORA_FEDIT; /* DP without a noise generator */
	CHECK(lora_agg_new(&g, glob, &o) == FL_EINVAL && !g);
	lora_agg_opts_default(&o);
	o.strategy = LORA_FAIR;
	o.fair_ridge = 1;
	o.fair_lambda = 0;
	CHECK(lora_agg_new(&g, glob, &o) == FL_EINVAL && !g);
done:
	lora_agg_free(g);
	lora_adapter_free(bad);
	lora_adapter_free(out);
	lora_adapter_free(other);
	free_all(glob, cl, K);
	lora_agg_free(NULL);
}

static double delta_norm(const lora_adapter *a, const lora_adapter *b, size_t from)
{
	double s = 0;
	for (size_t i = from; i < a->n_a + a->n_b; i++) {
		double d = (double)a->params[i] - b->params[i];
		s += d * d;
	}
	return sqrt(s);
}

/* DP: each client's delta is clipped to S (checked one client at a time with
 * no noise), and the noise has standard deviation sigma S / E. */
static void test_dp_clip_and_noise(void)
{
	enum { K = 3 };
	lora_adapter *glob, *cl[K], *out = NULL;
	priv_noise *nz = NULL;
	uint8_t key[32];
	lora_agg_opts o;
	lora_agg_stats st;
	double w1[1] = {7};

	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)(i * 13 + 1);
	CHECK_RC(priv_noise_new_keyed(&nz, key));
	if (!nz)
		return;
	mk_round(&glob, cl, K, 4, 18, 0.5, 0.5);
	/* client 2 moves only a little */
	for (size_t i = 0; i < glob->n_a + glob->n_b; i++)
		cl[2]->params[i] = glob->params[i] + 1e-4f * (float)((int)(i % 7) - 3);
	const double S = 1.0;
	lora_agg_opts_default(&o);
	o.dp_clip = S;
	o.dp_noise = 0.0;
	o.dp_expected_clients = 1.0;
	o.noise = nz;
	for (int k = 0; k < K; k++) {
		double before = delta_norm(cl[k], glob, 0);
		CHECK_RC(run_agg(&o, glob, &cl[k], w1, 1, &out, &st));
		if (!out)
			continue;
		double after = delta_norm(out, glob, 0);
		CHECK(after <= S);
		if (before > S) {
			CHECK_NEAR(after, S, 0, 1e-5);
			CHECK(st.dp_clipped_frac == 1.0);
		} else {
			CHECK_NEAR(after, before, 0, 1e-4);
			CHECK(st.dp_clipped_frac == 0.0);
		}
		CHECK_NEAR(st.update_norm_mean, before, 0, 1e-6);
		lora_adapter_free(out);
		out = NULL;
	}
	/* all three together: sum of clipped deltas divided by E = 3 */
	double w3[K] = {1, 1, 1};
	o.dp_expected_clients = 3.0;
	CHECK_RC(run_agg(&o, glob, cl, w3, K, &out, &st));
	CHECK(fabs(st.dp_clipped_frac - 2.0 / 3.0) < 1e-12);
	if (out)
		CHECK(delta_norm(out, glob, 0) <= 3 * S / 3.0 + 1e-6);
	lora_adapter_free(out);
	out = NULL;
	/* noise scale: clients equal to the global, so the result is pure noise */
	for (int k = 0; k < K; k++)
		CHECK_RC(lora_adapter_copy(cl[k], glob));
	o.dp_noise = 2.0;
	o.dp_clip = 0.5;
	o.dp_expected_clients = 4.0;
	o.strategy = LORA_FFA;
	CHECK_RC(run_agg(&o, glob, cl, w3, K, &out, &st));
	if (out) {
		size_t nb = glob->n_b;
		double m = 0, v = 0;
		for (size_t i = 0; i < nb; i++)
			m += (double)lora_adapter_b(out)[i] - lora_adapter_b(glob)[i];
		m /= nb;
		for (size_t i = 0; i < nb; i++) {
			double d = (double)lora_adapter_b(out)[i] - lora_adapter_b(glob)[i] - m;
			v += d * d;
		}
		double sd = sqrt(v / (nb - 1)), want = 2.0 * 0.5 / 4.0;
		/* nb = 168 draws: the sample sd is within ~4 standard errors */
		CHECK(fabs(sd - want) < 4.0 * want / sqrt(2.0 * nb));
		CHECK(fabs(m) < 4.0 * want / sqrt((double)nb));
		/* ffa: A untouched even under DP */
		CHECK(
		    !memcmp(lora_adapter_a(out), lora_adapter_a(glob), glob->n_a * sizeof(float)));
	}
	lora_adapter_free(out);
	out = NULL;
	/* a larger sample for a tighter check of the scale */
	{
		const char *nm[1] = {"big"};
		int in[1] = {500}, od[1] = {400};
		lora_adapter *bg = NULL, *bo = NULL;
		CHECK_RC(lora_adapter_new(&bg, 1, nm, in, od, 8, 16));
		double w[1] = {1};
		o.strategy = LORA_FEDIT;
		CHECK_RC(run_agg(&o, bg, &bg, w, 1, &bo, &st));
		if (bo) {
			size_t n = bg->n_a + bg->n_b;
			double v = 0;
			for (size_t i = 0; i < n; i++)
				v += (double)bo->params[i] * bo->params[i];
			double sd = sqrt(v / n), want = 0.25;
			CHECK(fabs(sd - want) < 4.0 * want / sqrt(2.0 * n)); /* ~1.2% */
		}
		lora_adapter_free(bo);
		lora_adapter_free(bg);
	}
	priv_noise_free(nz);
	free_all(glob, cl, K);
}

/* An adapter large enough that the scan has several blocks per chunk. */
static void mk_big_round(lora_adapter **glob, lora_adapter **cl, int K, uint64_t seed)
{
	const char *names[4] = {"layers.0", "layers.1", "layers.2", "layers.3"};
	int in[4] = {200, 333, 128, 517}, out[4] = {300, 64, 251, 96};
	fl_rng g;
	fl_rng_init(&g, seed, 1);
	if (lora_adapter_new(glob, 4, names, in, out, 16, 32.0f) != 0)
		abort();
	fill((*glob)->params, (*glob)->n_a + (*glob)->n_b, &g, 0.2);
	for (int k = 0; k < K; k++) {
		if (lora_adapter_clone(&cl[k], *glob) != 0)
			abort();
		for (size_t i = 0; i < cl[k]->n_a + cl[k]->n_b; i++)
			cl[k]->params[i] += (float)(0.05 * fl_rng_normal(&g));
	}
}

/* The threaded scan + fold gives bit-identical globals and norms for any
 * thread count, and a bad update in any chunk folds nothing. */
static void test_threads_bit_identical(void)
{
	enum { K = 5 };
	lora_adapter *glob, *cl[K], *ref = NULL, *out = NULL, *bad = NULL;
	const double w[K] = {3, 1, 7, 2, 5};
	const lora_strategy strat[2] = {LORA_FEDIT, LORA_FFA};
	lora_agg_opts o;
	lora_agg_stats st0, st;

	mk_big_round(&glob, cl, K, 91);
	CHECK((glob->n_a + glob->n_b) / 2048 >= 8);
	for (int si = 0; si < 2; si++) {
		lora_agg_opts_default(&o);
		o.strategy = strat[si];
		o.compute_bias = 0;
		o.threads = 1;
		CHECK_RC(run_agg(&o, glob, cl, w, K, &ref, &st0));
		for (int T = 2; T <= 7; T++) {
			o.threads = T;
			CHECK_RC(run_agg(&o, glob, cl, w, K, &out, &st));
			CHECK(ref && out &&
			      !memcmp(ref->params, out->params,
			              (glob->n_a + glob->n_b) * sizeof(float)));
			CHECK(!memcmp(&st0.update_norm_mean, &st.update_norm_mean, sizeof(double)));
			lora_adapter_free(out);
			out = NULL;
		}
		/* NaN / Inf in the last chunk, the first chunk, and (ffa) the frozen
		 * A: rejected, and the sum is the good clients' alone */
		const size_t n = glob->n_a + glob->n_b;
		const size_t where[3] = {n - 1, glob->n_a, 3};
		for (int wi = 0; wi < 3; wi++) {
			lora_agg *g = NULL;
			o.threads = 4;
			CHECK_RC(lora_agg_new(&g, glob, &o));
			if (!g)
				break;
			for (int k = 0; k < K; k++) {
				CHECK_RC(lora_agg_add(g, cl[k], w[k]));
				if (k == 2) {
					CHECK_RC(lora_adapter_clone(&bad, cl[k]));
					bad->params[where[wi]] = wi == 1 ? INFINITY : NAN;
					CHECK(lora_agg_add(g, bad, 4) == FL_ENONFINITE);
					lora_adapter_free(bad);
					bad = NULL;
				}
			}
			CHECK_RC(lora_adapter_clone(&out, glob));
			CHECK_RC(lora_agg_finish(g, out, &st));
			CHECK(st.clients == K);
			CHECK(ref && out && !memcmp(ref->params, out->params, n * sizeof(float)));
			lora_agg_free(g);
			lora_adapter_free(out);
			out = NULL;
		}
		lora_adapter_free(ref);
		ref = NULL;
	}
	o.threads = -1;
	lora_agg *g = NULL;
	CHECK(lora_agg_new(&g, glob, &o) == FL_EINVAL);
	free_all(glob, cl, K);
}

static const test_case cases[] = {
    TEST(test_strategy_names),
    TEST(test_ffa_bias_zero),
    TEST(test_fedit_vs_fair_bias),
    TEST(test_factored_equals_dense),
    TEST(test_dense_route_equals_dense),
    TEST(test_fair_solver_is_gradient_descent),
    TEST(test_fair_ridge_dense),
    TEST(test_weights),
    TEST(test_bad_input),
    TEST(test_dp_clip_and_noise),
    TEST(test_threads_bit_identical),
    {0},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
