/*
 * privacy/acct.c — run accountant selection and memo (see acct.h). The
 * numerics are privacy/accountant.c (RDP) and privacy/prv.c (PRV); this file
 * only dispatches, falls back and remembers the last answer.
 */
#include "privacy/acct.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "privacy/prv.h"

int priv_acct_parse(const char *name, priv_acct_kind *kind)
{
	if (!name)
		return FL_EINVAL;
	if (!strcmp(name, "rdp"))
		*kind = PRIV_ACCT_RDP;
	else if (!strcmp(name, "prv"))
		*kind = PRIV_ACCT_PRV;
	else
		return FL_EINVAL;
	return 0;
}

const char *priv_acct_name(priv_acct_kind kind)
{
	return kind == PRIV_ACCT_PRV ? "prv" : "rdp";
}

void priv_acct_init(priv_acct *a, priv_acct_kind kind, double eps_error)
{
	memset(a, 0, sizeof *a);
	a->kind = kind;
	a->eps_error =
	    eps_error > 0 && isfinite(eps_error) ? eps_error : PRIV_ACCT_EPS_ERROR_DEFAULT;
}

void priv_acct_fini(priv_acct *a)
{
	if (!a)
		return;
	free(a->memo_ph);
	a->memo_ph = NULL;
	a->memo_n = a->memo_cap = a->memo_valid = 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* 1 when (ph, n, delta) is the memoised query. */
static int memo_match(const priv_acct *a, const priv_phase *ph, int n, double delta)
{
	if (!a->memo_valid || a->memo_n != n || a->memo_delta != delta)
		return 0;
	for (int i = 0; i < n; i++)
		if (a->memo_ph[i].sigma != ph[i].sigma || a->memo_ph[i].q != ph[i].q ||
		    a->memo_ph[i].steps != ph[i].steps)
			return 0;
	return 1;
}

/* Phases with equal (sigma, q) merged wherever they are (composition is
 * commutative, so the PRV is the same; each distinct phase costs the PRV
 * one step pmf and one FFT). *out is malloc'd; *m distinct phases. */
static int merge_phases(const priv_phase *ph, int n, priv_phase **out, int *m)
{
	priv_phase *u = malloc((size_t)(n > 0 ? n : 1) * sizeof *u);
	int k = 0;
	if (!u)
		return FL_ENOMEM;
	for (int i = 0; i < n; i++) {
		int j = 0;
		while (j < k && !(u[j].sigma == ph[i].sigma && u[j].q == ph[i].q))
			j++;
		if (j < k && u[j].steps <= LONG_MAX - ph[i].steps) {
			u[j].steps += ph[i].steps;
		} else {
			u[k++] = ph[i];
		}
	}
	*out = u;
	*m = k;
	return 0;
}

int priv_acct_epsilon(priv_acct *a, const priv_phase *ph, int n, double delta, priv_acct_eps *out)
{
	priv_acct_eps r;
	double t0 = now_s();
	int rv;

	if (n < 0 || (n > 0 && !ph))
		return FL_EINVAL;
	if (memo_match(a, ph, n, delta)) {
		*out = a->memo;
		out->seconds = 0;
		a->memo_hits++;
		return 0;
	}
	memset(&r, 0, sizeof r);
	if ((rv = priv_rdp_epsilon(ph, n, delta, &r.rdp_epsilon, NULL)) != 0)
		return rv;
	r.epsilon = r.lower = r.estimate = r.rdp_epsilon;
	if (a->kind == PRIV_ACCT_PRV) {
		priv_prv_eps pe;
		priv_phase *u = NULL;
		int m = 0;
		if ((rv = merge_phases(ph, n, &u, &m)) != 0)
			return rv;
		rv = priv_prv_epsilon(u, m, delta, a->eps_error, delta / 1000, &pe);
		free(u);
		if (rv == FL_ETOOBIG) {
			r.fallback = 1;
		} else if (rv != 0) {
			return rv;
		} else {
			/* the RDP bound is also an upper bound: never report more */
			r.epsilon = fmin(pe.upper, r.rdp_epsilon);
			r.lower = pe.lower;
			r.estimate = pe.estimate;
		}
	}
	r.seconds = now_s() - t0;
	a->computed++;
	if (n > a->memo_cap) {
		priv_phase *nb = realloc(a->memo_ph, (size_t)n * sizeof *nb);
		if (!nb) {
			a->memo_valid = 0; /* the answer is still good; only the memo is lost */
			*out = r;
			return 0;
		}
		a->memo_ph = nb;
		a->memo_cap = n;
	}
	if (n)
		memcpy(a->memo_ph, ph, (size_t)n * sizeof *ph);
	a->memo_n = n;
	a->memo_delta = delta;
	a->memo = r;
	a->memo_valid = 1;
	*out = r;
	return 0;
}
