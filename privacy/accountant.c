/*
 * privacy/accountant.c — RDP accountant of the Poisson-subsampled Gaussian
 * mechanism (see privacy/accountant.h).
 *
 * log A_alpha, with A_alpha = E_{z~mu0}[(mu(z)/mu0(z))^alpha] for
 * mu0 = N(0, sigma^2) and mu = (1-q) mu0 + q N(1, sigma^2), is computed as in
 * Mironov, Talwar, Zhang 2019, section 3.3 (the same series as TensorFlow
 * Privacy and Opacus):
 *  - integer alpha: the binomial expansion
 *      A = sum_{i=0..alpha} C(alpha,i) q^i (1-q)^(alpha-i) exp((i^2 - i)/(2 sigma^2)),
 *    summed in log space;
 *  - fractional alpha: the two series over the halves (-inf, z0] and
 *    [z0, inf), z0 = sigma^2 log(1/q - 1) + 1/2, whose terms carry
 *    erfc factors; generalized binomial coefficients change sign, so the sums
 *    use log-add / log-sub, and stop once a term falls below exp(-30).
 * rdp(alpha) = log A_alpha / (alpha - 1). For integer orders the sum is taken
 * of A - 1 (positive terms only), so tiny q and large sigma keep full relative
 * precision; a fractional order whose log A is below 1e-9 (where its series
 * is pure rounding) takes the next integer order's RDP, an upper bound. Everything is in log space,
 * so small q, large sigma and large step counts neither underflow nor overflow.
 *
 * Does not implement other mechanisms (Laplace, sampling without
 * replacement) or the PLD accountant.
 */
#include "privacy/accountant.h"

#include <math.h>
#include <pthread.h>
#include <stddef.h>

#include "core/err.h"

#define ACC_FRAC_MAX_TERMS 100000 /* safety bound of the fractional series */
#define ACC_SIGMA_MAX      1e6
#define ACC_SIGMA_MIN      1e-4

static double acc_orders[PRIV_RDP_NORDERS];
static pthread_once_t acc_orders_once = PTHREAD_ONCE_INIT;

/* 1.1 .. 10.9 by 0.1 (computed as 1 + x/10 so that 2.0, 3.0, ... are exact
 * integers, as in Opacus), then 12 .. 63. */
static void acc_orders_init(void)
{
	int k = 0;
	for (int x = 1; x < 100; x++)
		acc_orders[k++] = 1.0 + x / 10.0;
	for (int a = 12; a < 64; a++)
		acc_orders[k++] = a;
}

const double *priv_rdp_orders(void)
{
	pthread_once(&acc_orders_once, acc_orders_init);
	return acc_orders;
}

_Static_assert(PRIV_RDP_NORDERS == 99 + 52, "order grid size");

static double log_add(double x, double y)
{
	double a = fmin(x, y), b = fmax(x, y);
	if (a == -INFINITY)
		return b;
	return log1p(exp(a - b)) + b;
}

/* log(exp(x) - exp(y)); NaN when the result would be negative. */
static double log_sub(double x, double y)
{
	if (x < y)
		return NAN;
	if (y == -INFINITY)
		return x;
	if (x == y)
		return -INFINITY;
	double d = x - y;
	if (d > 700) /* expm1 would overflow; exp(y) is negligible */
		return x;
	return log(expm1(d)) + y;
}

/* log(erfc(x)), accurate where erfc underflows (asymptotic series). */
static double log_erfc(double x)
{
	if (x < 25.0)
		return log(erfc(x));
	double x2 = x * x, ix2 = 1.0 / x2;
	/* erfc(x) = exp(-x^2)/(x sqrt(pi)) * (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6) + 105/(16x^8)) */
	double series = 1.0 + ix2 * (-0.5 + ix2 * (0.75 + ix2 * (-1.875 + ix2 * 6.5625)));
	return -x2 - log(x) - 0.5 * log(M_PI) + log(series);
}

/* log(exp(x) - 1) for x > 0, without overflow for large x. */
static double log_expm1(double x)
{
	return x > 30 ? x + log1p(-exp(-x)) : log(expm1(x));
}

/* Integer alpha. Since sum_i C(alpha,i) q^i (1-q)^(alpha-i) = 1 and the terms
 * i = 0, 1 have exponent 0, A - 1 = sum_{i>=2} C(alpha,i) q^i (1-q)^(alpha-i)
 * expm1((i^2 - i)/(2 sigma^2)): all terms positive, so log A = log1p(A - 1)
 * keeps full relative precision even when A - 1 is 1e-20 (tiny q, large
 * sigma), where summing A directly would lose it all to rounding. */
static double log_a_int(double q, double sigma, int alpha)
{
	double ls = -INFINITY, lq = log(q), l1q = log1p(-q), s2 = 2 * sigma * sigma;
	double lga = lgamma(alpha + 1.0);

	for (int i = 2; i <= alpha; i++) {
		double lc = lga - lgamma(i + 1.0) - lgamma(alpha - i + 1.0);
		double s = lc + i * lq + (alpha - i) * l1q + log_expm1(((double)i * i - i) / s2);
		ls = log_add(ls, s);
	}
	return log_add(0.0, ls); /* log(1 + (A - 1)) */
}

static double log_a_frac(double q, double sigma, double alpha)
{
	double la0 = -INFINITY, la1 = -INFINITY;
	double lq = log(q), l1q = log1p(-q), s2 = 2 * sigma * sigma;
	double z0 = sigma * sigma * log(1.0 / q - 1.0) + 0.5;
	double rs = 1.0 / (M_SQRT2 * sigma);
	double lcoef = 0.0; /* log |C(alpha, i)| */
	int sign = 1;       /* sign of C(alpha, i) */

	for (int i = 0; i < ACC_FRAC_MAX_TERMS; i++) {
		if (i > 0) {
			/* C(alpha, i) = C(alpha, i-1) * (alpha - i + 1) / i */
			double f = alpha - i + 1;
			if (f < 0)
				sign = -sign;
			lcoef += log(fabs(f)) - log((double)i);
		}
		double j = alpha - i;
		double lt0 = lcoef + i * lq + j * l1q;
		double lt1 = lcoef + j * lq + i * l1q;
		double le0 = log(0.5) + log_erfc((i - z0) * rs);
		double le1 = log(0.5) + log_erfc((z0 - j) * rs);
		double ls0 = lt0 + ((double)i * i - i) / s2 + le0;
		double ls1 = lt1 + (j * j - j) / s2 + le1;
		if (sign > 0) {
			la0 = log_add(la0, ls0);
			la1 = log_add(la1, ls1);
		} else {
			la0 = log_sub(la0, ls0);
			la1 = log_sub(la1, ls1);
		}
		if (isnan(la0) || isnan(la1))
			return NAN;
		if (fmax(ls0, ls1) < -30)
			return log_add(la0, la1);
	}
	return NAN; /* did not converge: the order is skipped */
}

/* Below this, log A of the fractional series is dominated by rounding (its
 * terms are O(1) and cancel to ~1e-16 absolute). */
#define ACC_FRAC_LOGA_MIN 1e-9

/* RDP of one step at order alpha (> 1). */
static double rdp_one(double q, double sigma, double alpha)
{
	if (q == 0)
		return 0;
	if (sigma == 0)
		return INFINITY;
	if (q == 1.0)
		return alpha / (2 * sigma * sigma);
	if (isinf(alpha))
		return INFINITY;
	if (alpha == floor(alpha) && alpha < 1e6)
		return log_a_int(q, sigma, (int)alpha) / (alpha - 1);
	double la = log_a_frac(q, sigma, alpha);
	if (!(la >= ACC_FRAC_LOGA_MIN) && alpha < 1e6) {
		/* Too small to resolve (or NaN): RDP is nondecreasing in the
		 * order, so the next integer order's RDP (computed without
		 * cancellation) is a valid, slightly conservative bound. */
		double a1 = ceil(alpha);
		return log_a_int(q, sigma, (int)a1) / (a1 - 1);
	}
	return la / (alpha - 1);
}

int priv_rdp_step(double q, double sigma, const double *orders, int n, double *rdp)
{
	if (!(q >= 0 && q <= 1) || !(sigma >= 0) || isinf(sigma) || n < 0 ||
	    (n > 0 && (!orders || !rdp)))
		return FL_EINVAL;
	for (int k = 0; k < n; k++)
		if (!(orders[k] > 1))
			return FL_EINVAL;
	for (int k = 0; k < n; k++)
		rdp[k] = rdp_one(q, sigma, orders[k]);
	return 0;
}

int priv_rdp_history(const priv_phase *ph, int n, double *rdp)
{
	const double *orders = priv_rdp_orders();
	double one[PRIV_RDP_NORDERS];
	int rv;

	if (n < 0 || !rdp || (n > 0 && !ph))
		return FL_EINVAL;
	for (int k = 0; k < PRIV_RDP_NORDERS; k++)
		rdp[k] = 0;
	for (int p = 0; p < n; p++) {
		if (ph[p].steps < 0)
			return FL_EINVAL;
		if ((rv = priv_rdp_step(ph[p].q, ph[p].sigma, orders, PRIV_RDP_NORDERS, one)) != 0)
			return rv;
		if (ph[p].steps == 0)
			continue; /* 0 * inf would be NaN */
		for (int k = 0; k < PRIV_RDP_NORDERS; k++)
			rdp[k] += (double)ph[p].steps * one[k];
	}
	return 0;
}

int priv_rdp_to_eps(const double *orders, const double *rdp, int n, double delta, double *eps,
                    double *order)
{
	double best = NAN, best_order = NAN;

	if (!orders || !rdp || !eps || n <= 0 || !(delta > 0 && delta < 1))
		return FL_EINVAL;
	for (int k = 0; k < n; k++) {
		double a = orders[k];
		if (!(a > 1))
			return FL_EINVAL;
		double e;
		if (rdp[k] >= 0 && delta * delta + expm1(-rdp[k]) > 0)
			/* RDP this small bounds the KL divergence: delta <=
			 * sqrt(1 - exp(-KL)) holds with epsilon 0 (the check
			 * dp_accounting makes; it only fires for rdp < ~delta^2,
			 * where Opacus' formula alone would report ~0.1) */
			e = 0;
		else /* Balle et al. 2020, Theorem 21 (Opacus get_privacy_spent) */
			e = rdp[k] - (log(delta) + log(a)) / (a - 1) + log((a - 1) / a);
		if (isnan(e))
			continue;
		if (isnan(best) || e < best) {
			best = e;
			best_order = a;
		}
	}
	if (isnan(best) || best == INFINITY) {
		*eps = INFINITY;
		best_order = NAN;
	} else {
		*eps = best < 0 ? 0 : best;
	}
	if (order)
		*order = best_order;
	return 0;
}

int priv_rdp_epsilon(const priv_phase *ph, int n, double delta, double *eps, double *order)
{
	double rdp[PRIV_RDP_NORDERS];
	int rv;

	if (!eps)
		return FL_EINVAL;
	if ((rv = priv_rdp_history(ph, n, rdp)) != 0)
		return rv;
	return priv_rdp_to_eps(priv_rdp_orders(), rdp, PRIV_RDP_NORDERS, delta, eps, order);
}

static int eps_at(double sigma, double q, long steps, double delta, double *eps)
{
	priv_phase ph = {sigma, q, steps};
	return priv_rdp_epsilon(&ph, 1, delta, eps, NULL);
}

int priv_rdp_sigma_for_eps(double target_eps, double q, long steps, double delta, double *sigma)
{
	double lo, hi, e;
	int rv;

	if (!sigma || !(target_eps > 0) || isinf(target_eps) || !(q >= 0 && q <= 1) || steps < 0 ||
	    !(delta > 0 && delta < 1))
		return FL_EINVAL;
	if (q == 0 || steps == 0) {
		*sigma = 0;
		return 0;
	}
	/* bracket: eps(hi) <= target < eps(lo); eps falls as sigma grows */
	hi = 1.0;
	for (;;) {
		if ((rv = eps_at(hi, q, steps, delta, &e)) != 0)
			return rv;
		if (e <= target_eps)
			break;
		if (hi >= ACC_SIGMA_MAX)
			return FL_EDONE;
		hi *= 2;
	}
	lo = hi / 2;
	for (;;) {
		if ((rv = eps_at(lo, q, steps, delta, &e)) != 0)
			return rv;
		if (e > target_eps)
			break;
		hi = lo;
		if (lo <= ACC_SIGMA_MIN) {
			*sigma = hi;
			return 0;
		}
		lo /= 2;
	}
	while (hi - lo > 1e-7 * hi) {
		double mid = sqrt(lo * hi);
		if ((rv = eps_at(mid, q, steps, delta, &e)) != 0)
			return rv;
		if (e <= target_eps)
			hi = mid;
		else
			lo = mid;
	}
	*sigma = hi;
	return 0;
}
