/*
 * privacy/accountant.h — Renyi-DP accountant for the Poisson-subsampled
 * Gaussian mechanism (Mironov, Talwar, Zhang 2019, "Renyi Differential
 * Privacy of the Sampled Gaussian Mechanism"), the accountant of Opacus and
 * TensorFlow Privacy.
 *
 * A training run is a history of phases (sigma = noise multiplier, q =
 * sampling rate, steps); the RDP of each phase at each order is summed
 * (composition) and converted to (epsilon, delta) with the conversion current
 * Opacus get_privacy_spent uses (Balle et al. 2020):
 *   eps(a) = rdp(a) - (log(delta) + log(a)) / (a - 1) + log((a - 1) / a),
 * minimized over the orders a. Orders: 1.1, 1.2, ..., 10.9, 12, 13, ..., 63
 * (PRIV_RDP_NORDERS of them, Opacus' DEFAULT_ALPHAS).
 *
 * sigma == 0 means no noise: epsilon is +inf. q == 0 costs nothing; q == 1 is
 * the full-batch Gaussian mechanism (rdp = a / (2 sigma^2)). Orders whose
 * RDP cannot be computed (NaN) are skipped, as Opacus' nanargmin does; a
 * negative epsilon (possible only for delta near 1) is reported as 0, and an
 * order whose RDP is below about delta^2 gives epsilon 0 (the KL bound
 * delta <= sqrt(1 - exp(-rdp)), as Google's dp_accounting does) — so q == 0
 * reports 0 where the formula alone would give about 0.1.
 *
 * Pure functions of their arguments: no allocation, no state, thread-safe.
 */
#ifndef FL_PRIVACY_ACCOUNTANT_H
#define FL_PRIVACY_ACCOUNTANT_H

#define PRIV_RDP_NORDERS 151

typedef struct priv_phase {
	double sigma; /* noise multiplier (noise std / clipping norm), >= 0 */
	double q;     /* Poisson sampling rate in [0, 1] */
	long steps;   /* number of steps with these settings, >= 0 */
} priv_phase;

/* The orders, PRIV_RDP_NORDERS of them, in increasing order. */
const double *priv_rdp_orders(void);

/* RDP of ONE step of the subsampled Gaussian mechanism at each order:
 * rdp[k] for orders[k], k < n. FL_EINVAL on q outside [0,1], sigma < 0, an
 * order <= 1 or NaN arguments. */
int priv_rdp_step(double q, double sigma, const double *orders, int n, double *rdp);

/* Composed RDP of a history at the default orders (rdp has room for
 * PRIV_RDP_NORDERS). */
int priv_rdp_history(const priv_phase *ph, int n, double *rdp);

/* (epsilon, delta) from RDP values at the given orders; *order (may be NULL)
 * gets the best order (NaN when epsilon is +inf). FL_EINVAL if delta is not
 * in (0, 1). */
int priv_rdp_to_eps(const double *orders, const double *rdp, int n, double delta, double *eps,
                    double *order);

/* Epsilon at delta of a history of n phases (n == 0: epsilon 0), and the best
 * order (may be NULL). */
int priv_rdp_epsilon(const priv_phase *ph, int n, double delta, double *eps, double *order);

/* Smallest noise multiplier (to a relative 1e-6) with which `steps` steps at
 * rate q stay at or below target_eps at delta. FL_EINVAL on bad arguments
 * (target_eps <= 0 or not finite, ...); FL_EDONE if no sigma up to 1e6 reaches
 * the target. q == 0 or steps == 0 need no noise: *sigma = 0. */
int priv_rdp_sigma_for_eps(double target_eps, double q, long steps, double delta, double *sigma);

#endif
