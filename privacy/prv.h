/*
 * privacy/prv.h — PRV accountant (Gopi, Lee, Wutschitz 2021, "Numerical
 * Composition of Differential Privacy") for the Poisson-subsampled Gaussian
 * mechanism, the alternative to the RDP accountant (privacy/accountant.h).
 *
 * The privacy loss random variable Y = log(P(X)/Q(X)), X ~ P, of one step is
 * known through its CDF for both directions of add/remove adjacency
 * (P = (1-q) N(0,s^2) + q N(1,s^2) against Q = N(0,s^2), and Q against P).
 * Each step's Y is truncated to a domain [-L, L] (mass above L is moved to
 * +inf, which only raises delta; mass below -L is moved up to -L), rounded to
 * a uniform grid of mesh h with the mean preserved (a constant shift), and
 * the T-fold / multi-phase composition is the product of the FFTs (FFTW3) of
 * the phases' grids raised to T_i. delta(eps) = P(+inf) + E[(1 - e^(eps-Y))+].
 *
 * Error bounds (Gopi et al., Thm 5.5-style): with total steps T, the mesh is
 * h = eps_error / sqrt(T/2 log(4/delta_error)) (Hoeffding: the summed
 * rounding error exceeds eps_error with probability <= delta_error/2), and L
 * is chosen from the RDP tail bound P(Y_T > t) <= exp((a-1)(D_a - t)) and
 * P(Y_T < -t) <= e^-t so that the circular-convolution wrap-around moves at
 * most delta_error/4 of mass. Then
 *   eps_upper = eps~(delta - delta_error) + eps_error  >= true epsilon,
 *   eps_lower = eps~(delta + delta_error) - eps_error  <= true epsilon,
 * eps_estimate = eps~(delta); each the max over the two directions.
 */
#ifndef FL_PRIVACY_PRV_H
#define FL_PRIVACY_PRV_H

#include "privacy/accountant.h"

#define PRIV_PRV_MAX_GRID (1L << 24) /* grid points, FL_ETOOBIG beyond */

typedef struct priv_prv_eps {
	double lower, estimate, upper; /* epsilon bounds; +inf when no noise */
	double mesh;                   /* grid mesh h */
	double domain;                 /* L: grid covers [-L, L) */
	long grid;                     /* grid points (a power of two) */
} priv_prv_eps;

/* Epsilon at delta of a history of n phases (n == 0 or no cost: all 0).
 * eps_error > 0 and delta_error in (0, delta) set the accuracy (e.g. 0.01 and
 * delta/1000). FL_EINVAL on bad arguments (sigma < 0, q outside [0,1],
 * steps < 0, delta outside (0,1), NaN), FL_ETOOBIG if the grid would exceed
 * PRIV_PRV_MAX_GRID, FL_ENOMEM. */
int priv_prv_epsilon(const priv_phase *ph, int n, double delta, double eps_error,
                     double delta_error, priv_prv_eps *out);

/* delta(eps) estimate (no error terms) of the same discretised PRV, max over
 * the two directions; the grid is chosen as in priv_prv_epsilon for the
 * given delta_error. */
int priv_prv_delta(const priv_phase *ph, int n, double eps, double eps_error, double delta_error,
                   double *delta);

#endif
