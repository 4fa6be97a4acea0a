/*
 * privacy/acct.h — the accountant a run uses: RDP (privacy/accountant.h) or
 * PRV (privacy/prv.h), chosen by name, with a one-entry memo so that asking
 * twice for the epsilon of the same history (the coordinator's --target-eps
 * look-ahead, then the commit of that round) costs one computation.
 *
 * For prv the reported epsilon is the PRV upper bound (eps_upper, a
 * guarantee: >= the true epsilon of the discretised mechanism), computed
 * with delta_error = delta / 1000 as `fedlora eps --accountant prv` does;
 * lower and estimate come with it. For rdp lower = estimate = epsilon.
 * A PRV grid over PRIV_PRV_MAX_GRID (FL_ETOOBIG: a very long history at a
 * small eps_error) falls back to the RDP epsilon, which is also a valid
 * upper bound; `fallback` says so.
 *
 * Not thread-safe: one priv_acct per thread (the coordinator calls it under
 * its mutex, a client from its session thread).
 */
#ifndef FL_PRIVACY_ACCT_H
#define FL_PRIVACY_ACCT_H

#include "privacy/accountant.h"

#define PRIV_ACCT_EPS_ERROR_DEFAULT 0.01 /* prv: epsilon error of the bounds */

typedef enum priv_acct_kind { PRIV_ACCT_RDP = 0, PRIV_ACCT_PRV = 1 } priv_acct_kind;

typedef struct priv_acct_eps {
	double epsilon;     /* reported: rdp epsilon, or the prv upper bound */
	double lower;       /* prv lower bound (rdp: = epsilon) */
	double estimate;    /* prv estimate (rdp: = epsilon) */
	double rdp_epsilon; /* the RDP epsilon of the same history */
	int fallback;       /* 1: prv grid too large, epsilon is the RDP one */
	double seconds;     /* wall time of the computation (0 when memoised) */
} priv_acct_eps;

typedef struct priv_acct {
	priv_acct_kind kind;
	double eps_error; /* prv only, > 0 */
	/* memo of the last query (owned; freed by priv_acct_fini) */
	priv_phase *memo_ph;
	int memo_n, memo_cap, memo_valid;
	double memo_delta;
	priv_acct_eps memo;
	long computed, memo_hits; /* counters, for logs and tests */
} priv_acct;

/* "rdp" or "prv" into *kind; FL_EINVAL otherwise (also for NULL). */
int priv_acct_parse(const char *name, priv_acct_kind *kind);
/* "rdp" or "prv". */
const char *priv_acct_name(priv_acct_kind kind);

/* eps_error <= 0 means PRIV_ACCT_EPS_ERROR_DEFAULT. No allocation. */
void priv_acct_init(priv_acct *a, priv_acct_kind kind, double eps_error);
/* Frees the memo; a may be NULL. */
void priv_acct_fini(priv_acct *a);

/* Epsilon at delta of the history ph[0..n) (n == 0: 0). FL_EINVAL on bad
 * phases or delta (as priv_rdp_epsilon / priv_prv_epsilon), FL_ENOMEM. */
int priv_acct_epsilon(priv_acct *a, const priv_phase *ph, int n, double delta, priv_acct_eps *out);

#endif
