/*
 * tests/prv_test.c — the PRV accountant (privacy/prv.h): exact Gaussian
 * mechanism (q = 1, T-fold composition is a Gaussian with mu = sqrt(T)/sigma),
 * a direct numerical integration of the subsampled Gaussian's hockey-stick
 * divergence for T = 1, T-fold compositions against an independent PLD
 * bracket (exact discrete convolution), never above RDP, monotone in T, phases compose, bad
 * parameters rejected.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "privacy/accountant.h"
#include "privacy/prv.h"
#include "tests/test.h"

static double phi(double x)
{
	return 0.5 * erfc(-x / M_SQRT2);
}

/* Exact delta(eps) of the Gaussian mechanism with mu = sensitivity / std. */
static double gauss_delta(double mu, double eps)
{
	return phi(-eps / mu + mu / 2) - exp(eps) * phi(-eps / mu - mu / 2);
}

/* Direct numerical delta(eps) of one subsampled Gaussian step: max over
 * the two directions of int max(0, P - e^eps Q) dx, P = (1-q)N(0,s)+qN(1,s),
 * Q = N(0,s); Simpson in long double on [-40 s, 1 + 40 s]. */
static double sub_delta(double q, double s, double eps)
{
	long m = 40000;
	long double a = -40.0L * s, b = 1 + 40.0L * s, dx = (b - a) / m, d0 = 0, d1 = 0;
	long double ee = expl(eps);
	for (long i = 0; i <= m; i++) {
		long double x = a + i * dx;
		long double qd = expl(-x * x / (2.0L * s * s));
		long double p1 = expl(-(x - 1) * (x - 1) / (2.0L * s * s));
		long double pd = (1 - q) * qd + q * p1;
		long double w = (i == 0 || i == m) ? 1 : (i % 2 ? 4 : 2);
		long double f0 = pd - ee * qd, f1 = qd - ee * pd;
		if (f0 > 0)
			d0 += w * f0;
		if (f1 > 0)
			d1 += w * f1;
	}
	long double norm = dx / 3 / (sqrtl(2 * 3.14159265358979323846L) * s);
	return (double)(fmaxl(d0, d1) * norm);
}

/* eps at delta of a decreasing delta(eps) function by bisection. */
static double invert(double (*f)(double, double, double), double a1, double a2, double delta)
{
	double lo = 0, hi = 1000;
	for (int i = 0; i < 60; i++) {
		double mid = 0.5 * (lo + hi);
		if (f(a1, a2, mid) > delta)
			lo = mid;
		else
			hi = mid;
	}
	return hi;
}

static double gauss3(double mu, double unused, double eps)
{
	(void)unused;
	return gauss_delta(mu, eps);
}

static void test_gaussian_exact(void)
{
	const double sig[] = {0.7, 1.0, 2.0};
	const long T[] = {1, 10, 100};
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++) {
			/* sigma scaled by sqrt(T): mu = 1/sig[i] whatever T */
			priv_phase ph = {sig[i] * sqrt((double)T[j]), 1.0, T[j]};
			double mu = sqrt((double)T[j]) / ph.sigma, delta = 1e-5;
			double exact = invert(gauss3, mu, 0, delta);
			priv_prv_eps r;
			CHECK_RC(priv_prv_epsilon(&ph, 1, delta, 0.01, 1e-8, &r));
			CHECK(r.lower <= exact && exact <= r.upper);
			CHECK_NEAR(r.estimate, exact, 0.01, 0);
			CHECK(r.upper - r.lower < 0.05);
			/* delta(eps) itself, at a few eps */
			for (double e = 0.5; e <= 4; e *= 4) {
				double d;
				CHECK_RC(priv_prv_delta(&ph, 1, e, 0.01, 1e-8, &d));
				CHECK_NEAR(d, gauss_delta(mu, e), 1e-7, 2e-3);
			}
		}
}

static double sub3(double q, double s, double eps)
{
	return sub_delta(q, s, eps);
}

static void test_subsampled_direct(void)
{
	const double q[] = {0.01, 0.2, 0.5};
	const double s[] = {0.8, 1.5};
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 2; j++) {
			priv_phase ph = {s[j], q[i], 1};
			for (double e = 0.25; e <= 2; e *= 2) {
				double d, ref = sub_delta(q[i], s[j], e);
				CHECK_RC(priv_prv_delta(&ph, 1, e, 0.01, 1e-9, &d));
				CHECK_NEAR(d, ref, 1e-8, 1e-3);
			}
			double delta = 1e-5, exact = invert(sub3, q[i], s[j], delta);
			priv_prv_eps r;
			CHECK_RC(priv_prv_epsilon(&ph, 1, delta, 0.01, 1e-8, &r));
			CHECK(r.lower <= exact && exact <= r.upper);
		}
}

static void test_below_rdp(void)
{
	const double sig[] = {0.8, 1.1, 2.0};
	const double q[] = {0.01, 0.1};
	const long T[] = {10, 300};
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 2; j++)
			for (int k = 0; k < 2; k++) {
				priv_phase ph = {sig[i], q[j], T[k]};
				double rdp;
				priv_prv_eps r;
				CHECK_RC(priv_rdp_epsilon(&ph, 1, 1e-5, &rdp, NULL));
				CHECK_RC(priv_prv_epsilon(&ph, 1, 1e-5, 0.03, 1e-8, &r));
				CHECK(r.lower <= r.estimate && r.estimate <= r.upper);
				if (!(r.upper <= rdp))
					printf("# sigma %g q %g T %ld: prv %g > rdp %g\n", sig[i],
					       q[j], T[k], r.upper, rdp);
				CHECK(r.upper <= rdp);
			}
}

static void test_monotone_in_T(void)
{
	double prev = 0;
	for (long T = 1; T <= 256; T *= 4) {
		priv_phase ph = {1.0, 0.05, T};
		priv_prv_eps r;
		CHECK_RC(priv_prv_epsilon(&ph, 1, 1e-5, 0.01, 1e-8, &r));
		CHECK(r.estimate > prev);
		prev = r.estimate;
	}
}

static void test_phases_compose(void)
{
	priv_phase whole = {1.0, 0.1, 60},
	           split[3] = {{1.0, 0.1, 20}, {1.0, 0.1, 0}, {1.0, 0.1, 40}};
	priv_prv_eps a, b;
	CHECK_RC(priv_prv_epsilon(&whole, 1, 1e-5, 0.01, 1e-8, &a));
	CHECK_RC(priv_prv_epsilon(split, 3, 1e-5, 0.01, 1e-8, &b));
	CHECK_NEAR(a.estimate, b.estimate, 1e-6, 0);
	CHECK_NEAR(a.upper, b.upper, 1e-6, 0);
	/* heterogeneous: order-free and between its parts' costs */
	priv_phase h1[2] = {{0.9, 0.05, 50}, {2.0, 0.2, 30}}, h2[2] = {h1[1], h1[0]};
	priv_prv_eps c, d, e1, e2;
	CHECK_RC(priv_prv_epsilon(h1, 2, 1e-5, 0.01, 1e-8, &c));
	CHECK_RC(priv_prv_epsilon(h2, 2, 1e-5, 0.01, 1e-8, &d));
	CHECK_RC(priv_prv_epsilon(&h1[0], 1, 1e-5, 0.01, 1e-8, &e1));
	CHECK_RC(priv_prv_epsilon(&h1[1], 1, 1e-5, 0.01, 1e-8, &e2));
	CHECK_NEAR(c.estimate, d.estimate, 1e-6, 0);
	CHECK(c.estimate > fmax(e1.estimate, e2.estimate));
	/* a q = 1 chain composes exactly: Gaussians with mu^2 summing */
	priv_phase g[2] = {{1.0, 1.0, 3}, {2.0, 1.0, 8}};
	double mu = sqrt(3.0 + 8.0 / 4.0), dd;
	CHECK_RC(priv_prv_delta(g, 2, 1.0, 0.01, 1e-8, &dd));
	CHECK_NEAR(dd, gauss_delta(mu, 1.0), 0, 2e-3);
}

/* ---- an independent bracket for T-fold subsampled compositions -----------
 * A privacy-loss distribution (PLD) built from the same two directions but
 * discretised differently from prv.c: the loss axis is cut into bins of width
 * h and each bin's mass is moved to its upper edge (pessimistic) or its lower
 * edge (optimistic), mass beyond the last bin to +inf (pessimistic) or dropped
 * (optimistic); the T-fold composition is an exact discrete convolution (by
 * squaring, no FFT). Moving loss mass up can only raise delta(eps) = P(+inf) +
 * E[(1 - e^(eps-L))+] and moving it down only lower it, and convolution keeps
 * that order, so the true epsilon lies in [eps(optimistic), eps(pessimistic)]. */

/* F(l) = P(L <= l) of one step in direction dir (0: X ~ P, 1: X ~ Q) */
static double pld_cdf(int dir, double q, double s, double l)
{
	if (dir == 0) {
		if (l <= log1p(-q))
			return 0;
		double x = s * s * log((exp(l) - (1 - q)) / q) + 0.5;
		return (1 - q) * phi(x / s) + q * phi((x - 1) / s);
	}
	if (l >= -log1p(-q))
		return 1;
	double x = s * s * log((exp(-l) - (1 - q)) / q) + 0.5;
	return 1 - phi(x / s);
}

typedef struct {
	long k0, n; /* bin k0 + i holds p[i], loss (k0 + i) h */
	double *p, inf;
} pld;

static void pld_conv(pld *out, const pld *a, const pld *b)
{
	out->k0 = a->k0 + b->k0;
	out->n = a->n + b->n - 1;
	out->p = calloc((size_t)out->n, sizeof *out->p);
	for (long i = 0; i < a->n; i++)
		if (a->p[i] != 0)
			for (long j = 0; j < b->n; j++)
				out->p[i + j] += a->p[i] * b->p[j];
	out->inf = 1 - (1 - a->inf) * (1 - b->inf);
}

/* One step's PLD (pess: round up), then its T-fold composition. */
static pld pld_make(int dir, double q, double s, double h, int pess, long T)
{
	/* the loss range that holds all but ~1e-19 of the mass: x within 9 s */
	double g = (2 * (1 + 9 * s) - 1) / (2 * s * s);
	double lmax = log((1 - q) + q * exp(g)), lmin = -lmax;
	pld one = {(long)floor(lmin / h) - 1, 0, NULL, 0};
	long k1 = (long)ceil(lmax / h) + 1;
	one.n = k1 - one.k0 + 1;
	one.p = calloc((size_t)one.n, sizeof *one.p);
	for (long i = 0; i < one.n; i++) {
		double l = (double)(one.k0 + i) * h;
		double m =
		    pld_cdf(dir, q, s, l + (pess ? 0 : h)) - pld_cdf(dir, q, s, l - (pess ? h : 0));
		one.p[i] = m > 0 ? m : 0;
	}
	double above = 1 - pld_cdf(dir, q, s, (double)k1 * h + (pess ? 0 : h));
	one.inf = pess ? above : 0;
	if (pess) /* what lies below the first bin is moved up into it */
		one.p[0] += pld_cdf(dir, q, s, (double)(one.k0 - 1) * h);
	pld acc = {0, 1, calloc(1, sizeof(double)), 0}, sq = one, t;
	acc.p[0] = 1;
	for (long e = T; e > 0; e >>= 1) {
		if (e & 1) {
			pld_conv(&t, &acc, &sq);
			free(acc.p);
			acc = t;
		}
		if (e > 1) {
			pld_conv(&t, &sq, &sq);
			free(sq.p);
			sq = t;
		}
	}
	free(sq.p);
	return acc;
}

static double pld_delta(const pld *d, double h, double eps)
{
	double sum = d->inf;
	for (long i = 0; i < d->n; i++) {
		double l = (double)(d->k0 + i) * h;
		if (l > eps)
			sum += d->p[i] * -expm1(eps - l);
	}
	return sum;
}

/* eps at delta, max over the two directions, of the pessimistic or
 * optimistic PLD */
static double pld_eps(double q, double s, long T, double h, int pess, double delta)
{
	pld d[2] = {pld_make(0, q, s, h, pess, T), pld_make(1, q, s, h, pess, T)};
	double lo = 0, hi = 50;
	for (int it = 0; it < 60; it++) {
		double mid = 0.5 * (lo + hi);
		if (fmax(pld_delta(&d[0], h, mid), pld_delta(&d[1], h, mid)) > delta)
			lo = mid;
		else
			hi = mid;
	}
	free(d[0].p);
	free(d[1].p);
	return hi;
}

static void test_composed_against_pld(void)
{
	const struct {
		double s, q, h;
		long T;
	} c[] = {{2.0, 0.05, 1e-3, 20}, {1.0, 0.02, 2e-3, 16}, {1.5, 0.2, 2e-3, 10}};
	for (unsigned i = 0; i < sizeof c / sizeof *c; i++) {
		double lo = pld_eps(c[i].q, c[i].s, c[i].T, c[i].h, 0, 1e-5);
		double up = pld_eps(c[i].q, c[i].s, c[i].T, c[i].h, 1, 1e-5);
		priv_phase ph = {c[i].s, c[i].q, c[i].T};
		priv_prv_eps r;
		CHECK_RC(priv_prv_epsilon(&ph, 1, 1e-5, 0.01, 1e-9, &r));
		printf("# sigma %g q %g T %ld: PLD bracket [%.4f, %.4f], PRV [%.4f %.4f %.4f]\n",
		       c[i].s, c[i].q, c[i].T, lo, up, r.lower, r.estimate, r.upper);
		CHECK(lo <= up && up - lo < 0.06); /* the bracket is tight enough to test */
		/* both brackets hold the true epsilon, so they overlap; the estimate
		 * lies in the PLD bracket up to the PRV's stated eps_error */
		CHECK(r.lower <= up && lo <= r.upper);
		CHECK(r.estimate >= lo - 0.01 && r.estimate <= up + 0.01);
	}
}

static void test_edge_and_bad(void)
{
	priv_phase ok = {1.0, 0.1, 10}, r0 = {1.0, 0.0, 10}, nonoise = {0.0, 0.1, 10};
	priv_prv_eps r;
	CHECK_RC(priv_prv_epsilon(&r0, 1, 1e-5, 0.01, 1e-8, &r));
	CHECK(r.upper == 0 && r.estimate == 0);
	CHECK_RC(priv_prv_epsilon(&nonoise, 1, 1e-5, 0.01, 1e-8, &r));
	CHECK(isinf(r.upper) && isinf(r.lower));
	CHECK_RC(priv_prv_epsilon(NULL, 0, 1e-5, 0.01, 1e-8, &r));
	CHECK(r.upper == 0);
	priv_phase bad[] = {{-1, 0.1, 10}, {1, 1.5, 10}, {1, -0.1, 10},     {NAN, 0.1, 10},
	                    {1, NAN, 10},  {1, 0.1, -1}, {INFINITY, 0.1, 1}};
	for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++)
		CHECK(priv_prv_epsilon(&bad[i], 1, 1e-5, 0.01, 1e-8, &r) == FL_EINVAL);
	CHECK(priv_prv_epsilon(&ok, 1, 0, 0.01, 1e-8, &r) == FL_EINVAL);
	CHECK(priv_prv_epsilon(&ok, 1, 1, 0.01, 1e-8, &r) == FL_EINVAL);
	CHECK(priv_prv_epsilon(&ok, 1, 1e-5, 0, 1e-8, &r) == FL_EINVAL);
	CHECK(priv_prv_epsilon(&ok, 1, 1e-5, NAN, 1e-8, &r) == FL_EINVAL);
	CHECK(priv_prv_epsilon(&ok, 1, 1e-5, 0.01, 1e-5, &r) ==
	      FL_EINVAL); /* delta_error >= delta */
	CHECK(priv_prv_epsilon(&ok, 1, 1e-5, 0.01, -1, &r) == FL_EINVAL);
	CHECK(priv_prv_epsilon(&ok, -1, 1e-5, 0.01, 1e-8, &r) == FL_EINVAL);
	CHECK(priv_prv_epsilon(&ok, 1, 1e-5, 0.01, 1e-8, NULL) == FL_EINVAL);
	/* a grid beyond the cap is refused, not allocated */
	priv_phase huge = {0.5, 0.5, 100000000};
	CHECK(priv_prv_epsilon(&huge, 1, 1e-5, 1e-4, 1e-8, &r) == FL_ETOOBIG);
}

static const test_case cases[] = {TEST(test_gaussian_exact), TEST(test_subsampled_direct),
                                  TEST(test_below_rdp),      TEST(test_monotone_in_T),
                                  TEST(test_phases_compose), TEST(test_composed_against_pld),
                                  TEST(test_edge_and_bad),   {0}};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
