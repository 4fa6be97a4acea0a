/*
 * tests/robust_test.c — robust aggregation rules (lora/robust.h) on hand-made
 * inputs with known answers, and their hook into the aggregator.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "lora/aggregate.h"
#include "lora/robust.h"
#include "test.h"

enum { N = 3 };

/* Runs rule o on K rows of N values (g = 0, weights 1 unless w given). */
static int run(const lora_robust_opts *o, float rows[][N], int K, const double *w, float *out,
               lora_robust_stats *st)
{
	const float *x[16];
	double w1[16];
	float g[N] = {0};
	for (int k = 0; k < K; k++) {
		x[k] = rows[k];
		w1[k] = w ? w[k] : 1.0;
	}
	return lora_robust_combine(x, w1, K, g, N, o, out, st);
}

static void test_names(void)
{
	lora_robust_rule r;
	const char *names[] = {"mean", "norm-bound", "median", "trimmed-mean", "krum"};
	for (int i = 0; i < 5; i++) {
		CHECK_RC(lora_robust_parse(names[i], &r));
		CHECK(!strcmp(lora_robust_name(r), names[i]));
	}
	CHECK(lora_robust_parse("Median", &r) == FL_EINVAL);
	CHECK(lora_robust_parse(NULL, &r) == FL_EINVAL);
}

static void test_median_odd_even_ties(void)
{
	lora_robust_opts o;
	lora_robust_stats st;
	float out[N];
	float odd[5][N] = {{1, 5, 2}, {100, 4, 2}, {3, -50, 2}, {2, 6, 2}, {-7, 5, 9}};
	float even[4][N] = {{1, 10, 0}, {4, 20, 0}, {2, -1000, 1}, {3, 1000, 1}};

	lora_robust_opts_default(&o);
	o.rule = LORA_ROBUST_MEDIAN;
	CHECK_RC(run(&o, odd, 5, NULL, out, &st));
	CHECK(out[0] == 2 && out[1] == 5 && out[2] == 2); /* ties: 5,5 and 2,2,2,2 */
	CHECK(st.selected == 5 && st.trimmed == 4 && st.dropped == 0);
	CHECK_RC(run(&o, even, 4, NULL, out, &st));
	CHECK(out[0] == 2.5f && out[1] == 15.0f && out[2] == 0.5f);
	CHECK(st.trimmed == 2);
	/* one client: its own values; two: their mean */
	CHECK_RC(run(&o, odd, 1, NULL, out, &st));
	CHECK(out[0] == 1 && out[1] == 5);
	CHECK_RC(run(&o, odd, 2, NULL, out, &st));
	CHECK(out[0] == 50.5f && out[1] == 4.5f);
}

static void test_trimmed_mean(void)
{
	lora_robust_opts o;
	lora_robust_stats st;
	float out[N];
	float r[5][N] = {{1, 0, 0}, {2, 0, 0}, {3, 0, 0}, {4, 0, 0}, {1000, 0, -1000}};

	lora_robust_opts_default(&o);
	o.rule = LORA_ROBUST_TRIMMED;
	o.trim_frac = 0.2; /* floor(0.2 * 5) = 1 at each end */
	CHECK_RC(run(&o, r, 5, NULL, out, &st));
	CHECK_NEAR(out[0], 3.0, 1e-6, 0); /* mean of 2,3,4 */
	CHECK(out[2] == 0);
	CHECK(st.trimmed == 2 && st.selected == 5);
	o.trim_frac = 0.1; /* floor(0.5) = 0: the plain mean */
	CHECK_RC(run(&o, r, 5, NULL, out, &st));
	CHECK_NEAR(out[0], 202.0, 1e-6, 0);
	CHECK(st.trimmed == 0);
	o.trim_frac = 0.2; /* K = 4: t = 0 */
	CHECK_RC(run(&o, r, 4, NULL, out, &st));
	CHECK_NEAR(out[0], 2.5, 1e-6, 0);
	o.trim_frac = 0.5;
	CHECK(run(&o, r, 5, NULL, out, &st) == FL_EINVAL);
}

static void test_norm_bound(void)
{
	lora_robust_opts o;
	lora_robust_stats st;
	float out[N];
	/* delta norms 1, 2, 3 (3-4-0 triangles scaled) and 50 */
	float r[4][N] = {{1, 0, 0}, {0, 2, 0}, {0, 0, 3}, {30, 40, 0}};

	lora_robust_opts_default(&o);
	o.rule = LORA_ROBUST_NORM_BOUND;
	o.norm_bound = 2.0;
	CHECK_RC(run(&o, r, 4, NULL, out, &st));
	/* bounded: (1,0,0), (0,2,0), (0,0,2), (1.2,1.6,0); mean of four */
	CHECK_NEAR(out[0], (1 + 1.2) / 4, 1e-6, 0);
	CHECK_NEAR(out[1], (2 + 1.6) / 4, 1e-6, 0);
	CHECK_NEAR(out[2], 2.0 / 4, 1e-6, 0);
	CHECK(st.clipped == 2 && st.bound == 2.0);
	/* automatic: median of 1, 2, 3, 50 = 2.5, factor 2 -> S = 5 */
	o.norm_bound = 0;
	o.norm_factor = 2.0;
	CHECK_RC(run(&o, r, 4, NULL, out, &st));
	CHECK_NEAR(st.bound, 5.0, 1e-12, 0);
	CHECK(st.clipped == 1);
	CHECK_NEAR(out[0], (1 + 3.0) / 4, 1e-6, 0);
	/* weights enter the mean */
	double w[2] = {3, 1};
	o.norm_bound = 10;
	CHECK_RC(run(&o, r, 2, w, out, &st));
	CHECK_NEAR(out[0], 0.75, 1e-6, 0);
	CHECK_NEAR(out[1], 0.5, 1e-6, 0);
}

static void test_krum(void)
{
	lora_robust_opts o;
	lora_robust_stats st;
	float out[N];
	/* five honest clients near (1,1,1), two far away */
	float r[7][N] = {{1, 1, 1},    {1.1f, 1, 1}, {1, 0.9f, 1}, {1, 1, 1.1f},
	                 {0.9f, 1, 1}, {-40, 0, 0},  {0, 60, 0}};

	lora_robust_opts_default(&o);
	o.rule = LORA_ROBUST_KRUM;
	o.krum_f = 2;
	o.krum_m = 5;
	CHECK_RC(run(&o, r, 7, NULL, out, &st));
	CHECK(st.rule == LORA_ROBUST_KRUM && st.selected == 5 && st.dropped == 2 && !st.fallback);
	CHECK_NEAR(out[0], 1.0, 1e-6, 0);
	CHECK_NEAR(out[1], 0.98, 1e-6, 0);
	CHECK_NEAR(out[2], 1.02, 1e-6, 0);
	/* Krum proper (m = 1): the client with the smallest score, (1,1,1) */
	o.krum_m = 1;
	CHECK_RC(run(&o, r, 7, NULL, out, &st));
	CHECK(out[0] == 1 && out[1] == 1 && out[2] == 1);
	/* automatic f for K = 7: 2; m = K - f = 5 */
	o.krum_f = -1;
	o.krum_m = 0;
	CHECK_RC(run(&o, r, 7, NULL, out, &st));
	CHECK(st.krum_f == 2 && st.selected == 5);
	/* K too small for f: falls back to the median, and says so */
	o.krum_f = 2;
	CHECK_RC(run(&o, r, 6, NULL, out, &st));
	CHECK(st.fallback == 1 && st.rule == LORA_ROBUST_MEDIAN);
	CHECK_NEAR(out[0], 1.0, 1e-6, 0); /* median of 1,1.1,1,1,0.9,-40 */
	o.krum_f = -1;
	CHECK_RC(run(&o, r, 2, NULL, out, &st)); /* K = 2 < 3 */
	CHECK(st.fallback == 1);
	/* identical clients: every score ties, lower indices win */
	float same[5][N] = {{2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}};
	o.krum_f = 1;
	o.krum_m = 2;
	CHECK_RC(run(&o, same, 5, NULL, out, &st));
	CHECK(out[0] == 2 && st.selected == 2);
}

static void test_nan_never_selected(void)
{
	lora_robust_opts o;
	lora_robust_stats st;
	float out[N];
	float r[5][N] = {{1, 1, 1}, {NAN, 1, 1}, {1, 1, 1}, {1, INFINITY, 1}, {1, 1, 1}};
	const lora_robust_rule all[] = {LORA_ROBUST_MEAN, LORA_ROBUST_NORM_BOUND,
	                                LORA_ROBUST_MEDIAN, LORA_ROBUST_TRIMMED, LORA_ROBUST_KRUM};

	for (int i = 0; i < 5; i++) {
		lora_robust_opts_default(&o);
		o.rule = all[i];
		CHECK_RC(run(&o, r, 5, NULL, out, &st));
		CHECK(out[0] == 1 && out[1] == 1 && out[2] == 1);
		CHECK(st.dropped >= 2);
	}
	float bad[1][N] = {{NAN, 0, 0}};
	CHECK(run(&o, bad, 1, NULL, out, &st) == FL_EQUORUM);
}

/* The aggregator hook: median over kept clients, refused with fair or DP. */
static void test_aggregator_hook(void)
{
	const char *names[1] = {"layers.0"};
	int in[1] = {2}, outd[1] = {2};
	lora_adapter *g = NULL, *c[3] = {0}, *o = NULL;
	lora_agg *ag = NULL;
	lora_agg_opts ao;
	lora_agg_stats st;

	CHECK_RC(lora_adapter_new(&g, 1, names, in, outd, 1, 1.0f));
	CHECK_RC(lora_adapter_new(&o, 1, names, in, outd, 1, 1.0f));
	for (int k = 0; k < 3; k++) {
		CHECK_RC(lora_adapter_new(&c[k], 1, names, in, outd, 1, 1.0f));
		for (size_t i = 0; i < c[k]->n_a + c[k]->n_b; i++)
			c[k]->params[i] = (float)(k == 2 ? 1000 : k + 1);
	}
	lora_agg_opts_default(&ao);
	ao.strategy = LORA_FFA;
	ao.robust.rule = LORA_ROBUST_MEDIAN;
	CHECK_RC(lora_agg_new(&ag, g, &ao));
	for (int k = 0; k < 3; k++)
		CHECK_RC(lora_agg_add(ag, c[k], 10.0));
	CHECK_RC(lora_agg_finish(ag, o, &st));
	CHECK(o->params[0] == 0);      /* ffa: A stays the global's */
	CHECK(o->params[o->n_a] == 2); /* median of 1, 2, 1000 over B */
	CHECK(st.robust.rule == LORA_ROBUST_MEDIAN && st.robust.clients == 3);
	lora_agg_free(ag);
	ag = NULL;
	ao.strategy = LORA_FAIR;
	CHECK(lora_agg_new(&ag, g, &ao) == FL_ENOTSUP);
	ao.strategy = LORA_FEDIT;
	ao.robust.trim_frac = 0.7;
	CHECK(lora_agg_new(&ag, g, &ao) == FL_EINVAL);
	/* mean reports every client kept */
	lora_agg_opts_default(&ao);
	CHECK_RC(lora_agg_new(&ag, g, &ao));
	CHECK_RC(lora_agg_add(ag, c[0], 1.0));
	CHECK_RC(lora_agg_finish(ag, o, &st));
	CHECK(st.robust.rule == LORA_ROBUST_MEAN && st.robust.selected == 1);
	lora_agg_free(ag);
	for (int k = 0; k < 3; k++)
		lora_adapter_free(c[k]);
	lora_adapter_free(g);
	lora_adapter_free(o);
}

static const test_case cases[] = {
    TEST(test_names),
    TEST(test_median_odd_even_ties),
    TEST(test_trimmed_mean),
    TEST(test_norm_bound),
    TEST(test_krum),
    TEST(test_nan_never_selected),
    TEST(test_aggregator_hook),
    {0},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
