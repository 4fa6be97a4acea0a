/*
 * coordinator/sample.h — choosing the clients of a round.
 *
 * Uniform: exactly min(k, n) distinct clients of n, each subset equally
 * likely (Knuth's selection sampling, Algorithm S), from the deterministic
 * run generator (core/rng.h) so a simulation is reproducible.
 * Poisson: each client independently with probability q, from the
 * cryptographically secure generator (privacy/noise.h), as client-level DP's
 * accountant assumes; the count varies from round to round.
 *
 * Output indices are in increasing order. The caller owns idx (room for n
 * entries for Poisson, min(k, n) for uniform). No allocation.
 */
#ifndef FL_COORDINATOR_SAMPLE_H
#define FL_COORDINATOR_SAMPLE_H

#include "core/rng.h"

struct priv_noise;

/* FL_EINVAL when n < 1 or k < 1. Writes min(k, n) indices. */
int coord_sample_uniform(fl_rng *r, int n, int k, int *idx);
/* FL_EINVAL when n < 0 or q is outside [0, 1]. *count gets the number chosen. */
int coord_sample_poisson(struct priv_noise *noise, int n, double q, int *idx, int *count);

#endif
