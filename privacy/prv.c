/*
 * privacy/prv.c — PRV accountant of the Poisson-subsampled Gaussian (see
 * prv.h for the method and its error bounds). FFTW3 (double) does the FFTs.
 */
#include <complex.h>
#include <fftw3.h>
#include <math.h>
#include <stdlib.h>

#include "core/err.h"
#include "privacy/prv.h"

static double phi(double x)
{
	return 0.5 * erfc(-x / M_SQRT2);
}

/* CDF F and survival S of one step's privacy loss at t, direction dir (0:
 * mixture against N(0), 1: N(0) against the mixture). q in (0, 1], s > 0. */
static void loss_cdf(int dir, double q, double s, double t, double *F, double *S)
{
	double z, c = 0.5 / s;
	if (dir == 0) {
		if (q < 1 && t <= log1p(-q)) {
			*F = 0, *S = 1;
			return;
		}
		z = q == 1 ? t : log(expm1(t) + q) - log(q);
		*F = (1 - q) * phi(s * z + c) + q * phi(s * z - c);
		*S = (1 - q) * phi(-s * z - c) + q * phi(-s * z + c);
	} else {
		if (q < 1 && t >= -log1p(-q)) {
			*F = 1, *S = 0;
			return;
		}
		z = q == 1 ? -t : log(expm1(-t) + q) - log(q);
		*F = phi(-s * z - c);
		*S = phi(s * z + c);
	}
}

typedef struct prv_grid {
	long n;    /* grid points, power of two */
	long K;    /* one step lives on k h, |k| <= K */
	double h;  /* mesh */
	double *p; /* composed pmf: index j is value (j < n/2 ? j : j-n) h + shift */
	double shift;
	double pinf; /* mass at +inf */
} prv_grid;

/* One step of phase (q, s) in direction dir on the grid: masses in p (length
 * n, wrapped indices), returns the mean-preserving shift and *pinf. */
static double step_pmf(int dir, double q, double s, long n, long K, double h, double *p,
                       double *pinf)
{
	double a = -(K + 0.5) * h, b = (K + 0.5) * h;
	double Fa, Sa, Fb, Sb, F0, S0;
	long double disc = 0, integ = 0, fin = 0;

	for (long j = 0; j < n; j++)
		p[j] = 0;
	loss_cdf(dir, q, s, a, &F0, &S0);
	Fa = F0, Sa = S0;
	/* Simpson of F over [a, b] at step h/2: edges and centres */
	integ += Fa;
	for (long k = -K; k <= K; k++) {
		double c = k * h, Fc, Sc;
		loss_cdf(dir, q, s, c, &Fc, &Sc);
		loss_cdf(dir, q, s, c + 0.5 * h, &Fb, &Sb);
		double m = Fa > 0.5 ? Sa - Sb : Fb - Fa;
		if (k == -K)
			m += Fa; /* everything below a is moved up to a, then to -K h */
		if (m < 0)
			m = 0;
		p[k >= 0 ? k : n + k] = m;
		disc += (long double)c * m;
		fin += m;
		integ += 4.0L * Fc + (k == K ? 1.0L : 2.0L) * Fb;
		Fa = Fb, Sa = Sb;
	}
	integ *= h / 6.0L;
	*pinf = Sa; /* S(b) */
	/* E[max(Y,a); Y <= b] = b F(b) - int_a^b F */
	long double mean = (long double)b * (1 - Sa) - integ;
	return fin > 0 ? (double)((mean - disc) / fin) : 0;
}

static void grid_free(prv_grid *g)
{
	fftw_free(g->p);
	g->p = NULL;
}

/* Composition of the phases in direction dir on the grid (n, K, h). */
static int compose(int dir, const priv_phase *ph, int nph, long n, long K, double h, prv_grid *g)
{
	long nc = n / 2 + 1;
	double *p = fftw_alloc_real((size_t)n);
	fftw_complex *f = fftw_alloc_complex((size_t)nc), *acc = fftw_alloc_complex((size_t)nc);
	fftw_plan fw = NULL, bw = NULL;
	int rv = FL_ENOMEM;
	double logfin = 0; /* log of the finite mass */

	g->p = NULL;
	if (!p || !f || !acc)
		goto out;
	fw = fftw_plan_dft_r2c_1d((int)n, p, f, FFTW_ESTIMATE);
	bw = fftw_plan_dft_c2r_1d((int)n, acc, p, FFTW_ESTIMATE);
	if (!fw || !bw)
		goto out;
	for (long j = 0; j < nc; j++)
		acc[j] = 1;
	g->shift = 0;
	for (int i = 0; i < nph; i++) {
		if (ph[i].steps == 0 || ph[i].q == 0)
			continue;
		double pinf, sh = step_pmf(dir, ph[i].q, ph[i].sigma, n, K, h, p, &pinf);
		double T = (double)ph[i].steps;
		g->shift += T * sh;
		logfin += T * log1p(-pinf);
		fftw_execute(fw);
		for (long j = 0; j < nc; j++)
			acc[j] *= cpow(f[j], T);
	}
	fftw_execute(bw);
	for (long j = 0; j < n; j++)
		p[j] /= (double)n;
	g->p = p;
	p = NULL;
	g->n = n, g->K = K, g->h = h;
	g->pinf = -expm1(logfin);
	rv = 0;
out:
	if (fw)
		fftw_destroy_plan(fw);
	if (bw)
		fftw_destroy_plan(bw);
	fftw_free(p);
	fftw_free(f);
	fftw_free(acc);
	return rv;
}

static double grid_delta(const prv_grid *g, double eps)
{
	long double d = 0;
	long half = g->n / 2, k0 = (long)floor((eps - g->shift) / g->h);
	if (k0 < -half)
		k0 = -half;
	for (long k = k0; k < half; k++) {
		double y = (double)k * g->h + g->shift;
		if (y > eps)
			d += (long double)g->p[k >= 0 ? k : g->n + k] * -expm1(eps - y);
	}
	return (double)d + g->pinf;
}

static double grid_eps(const prv_grid *g, double delta)
{
	if (g->pinf >= delta)
		return INFINITY;
	if (grid_delta(g, 0) <= delta)
		return 0;
	double lo = 0, hi = (double)(g->n / 2) * g->h + fabs(g->shift) + 1;
	for (int it = 0; it < 60 && hi - lo > 1e-10; it++) {
		double mid = 0.5 * (lo + hi);
		if (grid_delta(g, mid) > delta)
			lo = mid;
		else
			hi = mid;
	}
	return hi;
}

/* Checks arguments, finds the grid; *trivial = 1 if no step costs anything,
 * 2 if some step has no noise (epsilon +inf). */
static int plan(const priv_phase *ph, int n, double delta_error, double eps_error, long *ng,
                long *K, double *h, double *L, int *trivial)
{
	double T = 0;
	*trivial = 1;
	if (n < 0 || (n > 0 && !ph) || !(eps_error > 0) || !isfinite(eps_error) ||
	    !(delta_error > 0 && delta_error < 1))
		return FL_EINVAL;
	for (int i = 0; i < n; i++) {
		if (!(ph[i].sigma >= 0) || !isfinite(ph[i].sigma) ||
		    !(ph[i].q >= 0 && ph[i].q <= 1) || ph[i].steps < 0)
			return FL_EINVAL;
	}
	for (int i = 0; i < n; i++) {
		if (ph[i].steps == 0 || ph[i].q == 0)
			continue;
		if (ph[i].sigma == 0) {
			*trivial = 2;
			return 0;
		}
		*trivial = 0;
		T += (double)ph[i].steps;
	}
	if (*trivial)
		return 0;
	double rdp[PRIV_RDP_NORDERS];
	int rv = priv_rdp_history(ph, n, rdp);
	if (rv)
		return rv;
	const double *ord = priv_rdp_orders();
	double lt = log(8 / delta_error), up = INFINITY;
	for (int k = 0; k < PRIV_RDP_NORDERS; k++) {
		double v = rdp[k] + lt / (ord[k] - 1);
		if (v < up)
			up = v;
	}
	*L = fmax(up, lt) + eps_error + 1;
	*h = eps_error / sqrt(T / 2 * log(4 / delta_error));
	if (!isfinite(*L) || *L > 700 || *L / *h > (double)PRIV_PRV_MAX_GRID)
		return FL_ETOOBIG;
	*K = (long)ceil(*L / *h) + 1;
	long g = 2;
	while (g < 2 * *K + 2)
		g *= 2;
	if (g > PRIV_PRV_MAX_GRID)
		return FL_ETOOBIG;
	*ng = g;
	*K = g / 2 - 1;
	return 0;
}

int priv_prv_epsilon(const priv_phase *ph, int n, double delta, double eps_error,
                     double delta_error, priv_prv_eps *out)
{
	long ng = 0, K = 0;
	double h = 0, L = 0;
	int triv, rv;

	if (!out || !(delta > 0 && delta < 1) || !(delta_error < delta))
		return FL_EINVAL;
	if ((rv = plan(ph, n, delta_error, eps_error, &ng, &K, &h, &L, &triv)) != 0)
		return rv;
	*out = (priv_prv_eps){0, 0, 0, 0, 0, 0};
	if (triv) {
		if (triv == 2)
			out->lower = out->estimate = out->upper = INFINITY;
		return 0;
	}
	out->mesh = h, out->domain = (double)(ng / 2) * h, out->grid = ng;
	out->lower = 0;
	for (int dir = 0; dir < 2; dir++) {
		prv_grid g;
		if ((rv = compose(dir, ph, n, ng, K, h, &g)) != 0)
			return rv;
		double up = grid_eps(&g, delta - delta_error) + eps_error;
		double est = grid_eps(&g, delta);
		double lo = fmax(0, grid_eps(&g, delta + delta_error) - eps_error);
		grid_free(&g);
		out->upper = fmax(out->upper, up);
		out->estimate = fmax(out->estimate, est);
		out->lower = fmax(out->lower, lo);
	}
	return 0;
}

int priv_prv_delta(const priv_phase *ph, int n, double eps, double eps_error, double delta_error,
                   double *delta)
{
	long ng = 0, K = 0;
	double h = 0, L = 0;
	int triv, rv;

	if (!delta || isnan(eps))
		return FL_EINVAL;
	if ((rv = plan(ph, n, delta_error, eps_error, &ng, &K, &h, &L, &triv)) != 0)
		return rv;
	if (triv) {
		*delta = triv == 2 ? 1 : 0;
		return 0;
	}
	*delta = 0;
	for (int dir = 0; dir < 2; dir++) {
		prv_grid g;
		if ((rv = compose(dir, ph, n, ng, K, h, &g)) != 0)
			return rv;
		*delta = fmax(*delta, grid_delta(&g, eps));
		grid_free(&g);
	}
	return 0;
}
