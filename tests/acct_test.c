/*
 * tests/acct_test.c — the run accountant (privacy/acct.h): names parse and
 * print, rdp equals priv_rdp_epsilon, prv equals the PRV upper bound and is
 * below rdp, equal phases merge, the memo answers a repeated query without computing (and a
 * changed one with), a grid too large falls back to rdp, bad input refused.
 */
#include <math.h>

#include "privacy/accountant.h"
#include "privacy/acct.h"
#include "privacy/prv.h"
#include "tests/test.h"

static void test_acct_names(void)
{
	priv_acct_kind k = PRIV_ACCT_RDP;
	CHECK(priv_acct_parse("prv", &k) == 0 && k == PRIV_ACCT_PRV);
	CHECK(priv_acct_parse("rdp", &k) == 0 && k == PRIV_ACCT_RDP);
	CHECK(priv_acct_parse("moments", &k) == FL_EINVAL);
	CHECK(priv_acct_parse("", &k) == FL_EINVAL);
	CHECK(priv_acct_parse(NULL, &k) == FL_EINVAL);
	CHECK(!strcmp(priv_acct_name(PRIV_ACCT_PRV), "prv"));
	CHECK(!strcmp(priv_acct_name(PRIV_ACCT_RDP), "rdp"));
}

static void test_acct_rdp_and_prv_values(void)
{
	priv_phase ph[2] = {{1.0, 0.05, 100}, {1.5, 0.05, 100}};
	priv_acct a, b;
	priv_acct_eps ra, rb;
	priv_prv_eps pe;
	double eps;

	priv_acct_init(&a, PRIV_ACCT_RDP, 0);
	priv_acct_init(&b, PRIV_ACCT_PRV, 0);
	CHECK(b.eps_error == PRIV_ACCT_EPS_ERROR_DEFAULT);
	CHECK_RC(priv_acct_epsilon(&a, ph, 2, 1e-5, &ra));
	CHECK_RC(priv_rdp_epsilon(ph, 2, 1e-5, &eps, NULL));
	CHECK(ra.epsilon == eps && ra.rdp_epsilon == eps && ra.lower == eps);
	CHECK_RC(priv_acct_epsilon(&b, ph, 2, 1e-5, &rb));
	CHECK_RC(priv_prv_epsilon(ph, 2, 1e-5, 0.01, 1e-8, &pe));
	CHECK(rb.epsilon == pe.upper && rb.lower == pe.lower && rb.estimate == pe.estimate);
	CHECK(rb.rdp_epsilon == eps);
	CHECK(rb.epsilon < eps);
	CHECK(!rb.fallback && rb.seconds > 0);
	priv_acct_fini(&a);
	priv_acct_fini(&b);
	priv_acct_fini(NULL);
}

static void test_acct_memo(void)
{
	priv_phase ph[1] = {{1.0, 0.05, 200}};
	priv_acct a;
	priv_acct_eps r1, r2, r3;

	priv_acct_init(&a, PRIV_ACCT_PRV, 0.02);
	CHECK_RC(priv_acct_epsilon(&a, ph, 1, 1e-5, &r1));
	CHECK_RC(priv_acct_epsilon(&a, ph, 1, 1e-5, &r2));
	CHECK(a.computed == 1 && a.memo_hits == 1);
	CHECK(r2.epsilon == r1.epsilon && r2.seconds == 0);
	ph[0].steps = 201; /* another history: computed again, epsilon rises */
	CHECK_RC(priv_acct_epsilon(&a, ph, 1, 1e-5, &r3));
	CHECK(a.computed == 2 && r3.epsilon > r1.epsilon);
	CHECK_RC(priv_acct_epsilon(&a, ph, 1, 1e-6, &r3)); /* another delta */
	CHECK(a.computed == 3);
	priv_acct_fini(&a);
}

/* equal phases anywhere in the history are merged before the PRV: the
 * answer equals the PRV of the merged history */
static void test_acct_prv_merges_phases(void)
{
	priv_phase mixed[4] = {{2.0, 0.5, 3}, {2.0, 0.75, 1}, {2.0, 0.5, 4}, {2.0, 0.75, 2}};
	priv_phase merged[2] = {{2.0, 0.5, 7}, {2.0, 0.75, 3}};
	priv_acct a;
	priv_acct_eps r;
	priv_prv_eps pe;

	priv_acct_init(&a, PRIV_ACCT_PRV, 0);
	CHECK_RC(priv_acct_epsilon(&a, mixed, 4, 1e-5, &r));
	CHECK_RC(priv_prv_epsilon(merged, 2, 1e-5, 0.01, 1e-8, &pe));
	CHECK(r.epsilon == fmin(pe.upper, r.rdp_epsilon) && r.estimate == pe.estimate);
	CHECK(r.epsilon < r.rdp_epsilon);
	priv_acct_fini(&a);
}

static void test_acct_fallback_and_errors(void)
{
	/* 10^9 steps at eps_error 1e-3: a grid far over PRIV_PRV_MAX_GRID */
	priv_phase big = {5.0, 0.001, 1000000000L}, bad = {1.0, 1.5, 10};
	priv_acct a;
	priv_acct_eps r;
	double eps;

	priv_acct_init(&a, PRIV_ACCT_PRV, 1e-3);
	CHECK_RC(priv_acct_epsilon(&a, &big, 1, 1e-5, &r));
	CHECK_RC(priv_rdp_epsilon(&big, 1, 1e-5, &eps, NULL));
	CHECK(r.fallback && r.epsilon == eps);
	CHECK(priv_acct_epsilon(&a, &bad, 1, 1e-5, &r) == FL_EINVAL);
	CHECK(priv_acct_epsilon(&a, &big, 1, 0, &r) == FL_EINVAL);
	CHECK(priv_acct_epsilon(&a, NULL, 1, 1e-5, &r) == FL_EINVAL);
	CHECK_RC(priv_acct_epsilon(&a, NULL, 0, 1e-5, &r));
	CHECK(r.epsilon == 0);
	priv_acct_fini(&a);
}

static const test_case cases[] = {
    TEST(test_acct_names),
    TEST(test_acct_rdp_and_prv_values),
    TEST(test_acct_memo),
    TEST(test_acct_prv_merges_phases),
    TEST(test_acct_fallback_and_errors),
    {0},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
