/*
 * tests/dp_test.c — DP-SGD primitives (privacy/dp.h): per-example clipping
 * against gradients computed one example at a time (the linreg task and the
 * LoRA layer op), clipped norms, untouched small rows, non-finite rows, the
 * noisy reduce (exact without noise, the right noise scale with it), and
 * Poisson sampling rates within binomial confidence intervals.
 */
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "lora/adapter.h"
#include "model/linreg.h"
#include "model/ops.h"
#include "model/task.h"
#include "privacy/dp.h"
#include "tests/test.h"

static void fill_normal(float *x, size_t n, double std, uint64_t seed)
{
	fl_rng r;
	fl_rng_init(&r, seed, 0);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(std * fl_rng_normal(&r));
}

/* Rows of very different norms, some above C and some below. */
static void make_rows(float *g, int nb, size_t P, uint64_t seed)
{
	for (int i = 0; i < nb; i++)
		fill_normal(g + (size_t)i * P, P, 0.001 * (1 + (i * 37) % 200), seed + (uint64_t)i);
}

static void test_clip_norms_and_unchanged(void)
{
	enum { NB = 64 };
	const size_t P = 1000;
	const double C = 3.0; /* row norms span 0.03 .. 6.3 */
	float *g = malloc(NB * P * sizeof *g), *orig = malloc(NB * P * sizeof *g);
	if (!g || !orig) {
		CHECK(0);
		goto out;
	}
	make_rows(g, NB, P, 11);
	memcpy(orig, g, NB * P * sizeof *g);
	int nclipped = -1, expect = 0;
	for (int i = 0; i < NB; i++)
		expect += priv_l2_norm(orig + i * P, P) > C;
	CHECK(expect > 5 && expect < NB - 5); /* the data exercises both sides */
	priv_clip_rows(g, NB, P, C, &nclipped);
	CHECK(nclipped == expect);
	for (int i = 0; i < NB; i++) {
		double n0 = priv_l2_norm(orig + i * P, P), n1 = priv_l2_norm(g + i * P, P);
		if (n0 <= C) {
			CHECK(memcmp(g + i * P, orig + i * P, P * sizeof *g) == 0);
		} else {
			CHECK(n1 <= C * (1 + 1e-6));
			CHECK_NEAR(n1, C, 0, 1e-6);
			/* direction kept: g = orig * C / n0 */
			for (size_t j = 0; j < P; j += 97)
				CHECK_NEAR(g[i * P + j], orig[i * P + j] * C / n0, 1e-9, 1e-6);
		}
	}
out:
	free(g);
	free(orig);
}

static void test_clip_nonfinite_rows(void)
{
	float g[3 * 4] = {1, 2, 3, 4, NAN, 0, 0, 0, 1e30f, 1e30f, INFINITY, 0};
	int nc;
	priv_clip_rows(g, 3, 4, 100.0, &nc);
	CHECK(nc == 2);
	CHECK(g[0] == 1 && g[3] == 4);
	for (int j = 4; j < 12; j++)
		CHECK(g[j] == 0);
	/* norm of a large finite row does not overflow: accumulated in double */
	float big[2] = {3e30f, 4e30f};
	priv_clip_rows(big, 1, 2, 5.0, &nc);
	CHECK(nc == 1);
	CHECK_NEAR(big[0], 3.0, 0, 1e-6);
	CHECK_NEAR(big[1], 4.0, 0, 1e-6);
}

/* The linreg task: batched per-example gradients, clipped together, equal the
 * gradient of each example computed alone (model_linreg_loss_grad on one
 * index, a separate code path) and clipped alone. */
static void test_clip_per_example_linreg(void)
{
	model_task_opts o;
	model_task *t = NULL;
	model_linreg *m = NULL;
	lora_adapter *ad = NULL;
	float *g = NULL, *one = NULL;
	enum { NB = 12 };
	long idx[NB];

	model_task_opts_default(&o);
	o.task = "linreg";
	o.client_index = 0;
	o.linreg_layers = 3;
	o.linreg_dim = 16;
	o.linreg_samples = 64;
	CHECK_RC(model_task_open(&t, &o));
	CHECK_RC(model_linreg_open(&m, &o));
	if (!t || !m)
		goto out;
	CHECK_RC(model_task_adapter_new(t, 3, &ad));
	if (!ad)
		goto out;
	/* B != 0 so that A gets gradients too */
	fill_normal(lora_adapter_b(ad), ad->n_b, 0.3, 5);
	for (int train_a = 0; train_a <= 1; train_a++) {
		size_t P = train_a ? ad->n_a + ad->n_b : ad->n_b;
		free(g);
		free(one);
		g = malloc(NB * P * sizeof *g);
		one = malloc((ad->n_a + ad->n_b) * sizeof *one);
		if (!g || !one) {
			CHECK(0);
			goto out;
		}
		for (int i = 0; i < NB; i++)
			idx[i] = 3 * i + 1;
		CHECK_RC(model_linreg_example_grads(m, ad, idx, NB, train_a, g));
		/* pick C at the median norm: half the examples get clipped */
		double norms[NB], C;
		for (int i = 0; i < NB; i++)
			norms[i] = priv_l2_norm(g + i * P, P);
		C = 0;
		for (int i = 0; i < NB; i++) {
			int below = 0;
			for (int j = 0; j < NB; j++)
				below += norms[j] < norms[i];
			if (below == NB / 2)
				C = norms[i];
		}
		CHECK(C > 0);
		int nc;
		priv_clip_rows(g, NB, P, C, &nc);
		CHECK(nc >= NB / 2 - 1 && nc <= NB / 2);
		for (int i = 0; i < NB; i++) {
			double loss;
			CHECK_RC(model_linreg_loss_grad(m, ad, idx + i, 1, train_a, &loss, one));
			/* the full-layout gradient's B part sits after n_a */
			float *row = train_a ? one : one + ad->n_a;
			priv_clip_rows(row, 1, P, C, NULL);
			double maxdiff = 0, scale = 0;
			for (size_t j = 0; j < P; j++) {
				maxdiff = fmax(maxdiff, fabs((double)row[j] - g[i * P + j]));
				scale = fmax(scale, fabs((double)row[j]));
			}
			CHECK(maxdiff <= 1e-5 * scale + 1e-7);
			CHECK(priv_l2_norm(g + i * P, P) <= C * (1 + 1e-6));
		}
	}
out:
	free(g);
	free(one);
	lora_adapter_free(ad);
	model_linreg_close(m);
	model_task_close(t);
}

/* The LoRA layer op: per-example gradients of (A, B) laid side by side in one
 * row per example, clipped together, equal model_lora_backward run on each
 * example's rows alone, then clipped. */
static void test_clip_per_example_lora_op(void)
{
	enum { NEX = 5, T = 7, IN = 12, OUT = 10, R = 4, PA = R * IN, PB = OUT * R, P = PA + PB };
	const float scale = 2.0f;
	float x[NEX * T * IN], dout[NEX * T * OUT], A[R * IN], B[OUT * R], xa[NEX * T * R];
	float out[NEX * T * OUT];
	float g[NEX * P], ga[R * IN], gb[OUT * R], row[P];

	fill_normal(x, sizeof x / sizeof x[0], 1.0, 1);
	fill_normal(dout, sizeof dout / sizeof dout[0], 1.0, 2);
	fill_normal(A, sizeof A / sizeof A[0], 0.3, 3);
	fill_normal(B, sizeof B / sizeof B[0], 0.3, 4);
	memset(out, 0, sizeof out);
	model_lora_forward(out, xa, x, A, B, NEX * T, IN, OUT, R, scale);
	memset(g, 0, sizeof g);
	model_lora_backward_per_example(NULL, g, g + PA, P, dout, x, xa, A, B, NEX, T, IN, OUT, R,
	                                scale);
	double norms[NEX];
	for (int e = 0; e < NEX; e++)
		norms[e] = priv_l2_norm(g + e * P, P);
	double C = 0.5 * (norms[0] + norms[1]); /* between the two: some clipped */
	int nc;
	priv_clip_rows(g, NEX, P, C, &nc);
	CHECK(nc >= 1 && nc <= NEX - 1);
	for (int e = 0; e < NEX; e++) {
		memset(ga, 0, sizeof ga);
		memset(gb, 0, sizeof gb);
		model_lora_backward(NULL, ga, gb, dout + e * T * OUT, x + e * T * IN,
		                    xa + e * T * R, A, B, T, IN, OUT, R, scale);
		memcpy(row, ga, sizeof ga);
		memcpy(row + PA, gb, sizeof gb);
		priv_clip_rows(row, 1, P, C, NULL);
		for (size_t j = 0; j < P; j++)
			CHECK_NEAR(g[e * P + j], row[j], 1e-6, 1e-5);
	}
}

/* Without noise the reduce is exactly sum of clipped rows / expected batch;
 * the input is left untouched. */
static void test_reduce_exact_without_noise(void)
{
	enum { NB = 20 };
	const size_t P = 333;
	float *g = malloc(NB * P * sizeof *g), *c = malloc(NB * P * sizeof *g);
	float *out = malloc(P * sizeof *out);
	priv_noise *n = NULL;
	CHECK_RC(priv_noise_new(&n));
	if (!g || !c || !out || !n) {
		CHECK(0);
		goto out;
	}
	make_rows(g, NB, P, 21);
	memcpy(c, g, NB * P * sizeof *g);
	priv_clip_rows(c, NB, P, 1.5, NULL);
	int nc;
	CHECK_RC(priv_dpsgd_reduce_stats(g, NB, P, 1.5, 0.0, 17.5, n, out, &nc));
	for (size_t j = 0; j < P; j++) {
		double s = 0;
		for (int i = 0; i < NB; i++)
			s += c[i * P + j];
		CHECK_NEAR(out[j], s / 17.5, 1e-6, 1e-5);
	}
	/* g unchanged: clipping it in place would give c, which differs */
	CHECK(memcmp(g, c, NB * P * sizeof *g) != 0);
	CHECK(nc > 0);
out:
	free(g);
	free(c);
	free(out);
	priv_noise_free(n);
}

/* With noise: out - clean has per-coordinate std sigma*C/expected_batch, mean
 * 0 (5 standard errors). An empty batch gets noise only. */
static void test_reduce_noise_scale(void)
{
	const size_t P = 200000;
	const double C = 0.7, sigma = 1.3, eb = 8.0;
	float *g = malloc(4 * P * sizeof *g), *out = malloc(P * sizeof *out);
	float *clean = malloc(P * sizeof *clean);
	priv_noise *n = NULL;
	CHECK_RC(priv_noise_new(&n));
	if (!g || !out || !clean || !n) {
		CHECK(0);
		goto out;
	}
	make_rows(g, 4, P, 31);
	CHECK_RC(priv_dpsgd_reduce(g, 4, P, C, 0.0, eb, n, clean));
	CHECK_RC(priv_dpsgd_reduce(g, 4, P, C, sigma, eb, n, out));
	double s = 0, s2 = 0, want = sigma * C / eb;
	for (size_t j = 0; j < P; j++) {
		double d = (double)out[j] - clean[j];
		s += d;
		s2 += d * d;
	}
	double mean = s / P, sd = sqrt(s2 / P - mean * mean);
	CHECK_NEAR(mean, 0, 5 * want / sqrt((double)P), 0);
	CHECK_NEAR(sd, want, 5 * want / sqrt(2.0 * P), 0);

	CHECK_RC(priv_dpsgd_reduce(NULL, 0, P, C, sigma, eb, n, out));
	s2 = 0;
	for (size_t j = 0; j < P; j++)
		s2 += (double)out[j] * out[j];
	CHECK_NEAR(sqrt(s2 / P), want, 5 * want / sqrt(2.0 * P), 0);
out:
	free(g);
	free(out);
	free(clean);
	priv_noise_free(n);
}

static void test_reduce_bad_args(void)
{
	float g[4] = {1, 2, 3, 4}, out[2];
	priv_noise *n = NULL;
	CHECK_RC(priv_noise_new(&n));
	CHECK(priv_dpsgd_reduce(g, 2, 2, 0.0, 1.0, 1.0, n, out) == FL_EINVAL);
	CHECK(priv_dpsgd_reduce(g, 2, 2, 1.0, -1.0, 1.0, n, out) == FL_EINVAL);
	CHECK(priv_dpsgd_reduce(g, 2, 2, 1.0, 1.0, 0.0, n, out) == FL_EINVAL);
	CHECK(priv_dpsgd_reduce(g, 2, 2, NAN, 1.0, 1.0, n, out) == FL_EINVAL);
	CHECK(priv_dpsgd_reduce(g, 2, 2, 1.0, INFINITY, 1.0, n, out) == FL_EINVAL);
	CHECK(priv_dpsgd_reduce(g, -1, 2, 1.0, 1.0, 1.0, n, out) == FL_EINVAL);
	CHECK(priv_dpsgd_reduce(g, 2, 2, 1.0, 1.0, 1.0, NULL, out) == FL_EINVAL);
	priv_noise_free(n);
}

static void test_poisson_rate(void)
{
	const long N = 200000;
	long *idx = malloc(N * sizeof *idx), cnt;
	priv_noise *n = NULL;
	CHECK_RC(priv_noise_new(&n));
	if (!idx || !n) {
		CHECK(0);
		goto out;
	}
	static const double qs[] = {0.001, 0.03, 0.5, 0.97};
	for (unsigned k = 0; k < sizeof qs / sizeof qs[0]; k++) {
		double q = qs[k];
		CHECK_RC(priv_poisson_sample(n, N, q, idx, &cnt));
		CHECK_NEAR((double)cnt, N * q, 5 * sqrt(N * q * (1 - q)), 0);
		for (long i = 1; i < cnt; i++)
			CHECK(idx[i] > idx[i - 1]);
		CHECK(cnt == 0 || (idx[0] >= 0 && idx[cnt - 1] < N));
		/* inclusion is uniform over the index range: first half gets half */
		long first = 0;
		for (long i = 0; i < cnt; i++)
			first += idx[i] < N / 2;
		CHECK_NEAR((double)first, cnt / 2.0, 5 * sqrt(cnt / 4.0) + 1, 0);
	}
	/* the batch size varies from draw to draw: 200 draws at N 1000, q 0.05
	 * have a sample variance near N q (1-q) = 47.5 */
	double s = 0, s2 = 0;
	for (int d = 0; d < 200; d++) {
		CHECK_RC(priv_poisson_sample(n, 1000, 0.05, idx, &cnt));
		s += cnt;
		s2 += (double)cnt * cnt;
	}
	double var = (s2 - s * s / 200) / 199;
	CHECK(var > 20 && var < 90);
	CHECK_RC(priv_poisson_sample(n, N, 0.0, idx, &cnt));
	CHECK(cnt == 0);
	CHECK_RC(priv_poisson_sample(n, N, 1.0, idx, &cnt));
	CHECK(cnt == N && idx[N - 1] == N - 1);
	CHECK(priv_poisson_sample(n, N, -0.1, idx, &cnt) == FL_EINVAL);
	CHECK(priv_poisson_sample(n, N, 1.1, idx, &cnt) == FL_EINVAL);
	CHECK(priv_poisson_sample(n, N, NAN, idx, &cnt) == FL_EINVAL);
	CHECK(priv_poisson_sample(n, -1, 0.5, idx, &cnt) == FL_EINVAL);
	CHECK_RC(priv_poisson_sample(n, 0, 0.5, NULL, &cnt));
	CHECK(cnt == 0);
out:
	free(idx);
	priv_noise_free(n);
}

static const test_case cases[] = {
    TEST(test_clip_norms_and_unchanged),
    TEST(test_clip_nonfinite_rows),
    TEST(test_clip_per_example_linreg),
    TEST(test_clip_per_example_lora_op),
    TEST(test_reduce_exact_without_noise),
    TEST(test_reduce_noise_scale),
    TEST(test_reduce_bad_args),
    TEST(test_poisson_rate),
    {0},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
