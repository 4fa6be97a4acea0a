/*
 * lora/robust.h — robust aggregation rules for plaintext rounds: norm
 * bounding, coordinate-wise median, coordinate-wise trimmed mean and
 * multi-Krum. They replace the weighted mean of lora/aggregate.c when a run
 * selects one (--aggregator); `mean` is the plain weighted mean.
 *
 * What they act on: the flat slice of adapter parameters that the strategy
 * aggregates — under ffa the B factors only (A is frozen and shared, so B is
 * exactly the update space: B A_shared is linear in B), under fedit A and B
 * concatenated, coordinate by coordinate (the factors are what FedIT averages;
 * a rule on the product B A would need out x in matrices, and a median of
 * factors is not the median of products — the same limitation as FedIT's own
 * aggregation bias). fair is not combined with these rules: its correction
 * reads every client's product (lora/aggregate.h refuses the combination).
 *
 * Rules (K clients, values x_k of the slice, global g, weights w_k):
 * - norm-bound: each delta d_k = x_k - g is scaled to L2 norm <= S, then the
 *   weighted mean of the bounded deltas is added to g. S is opts.norm_bound
 *   when > 0, else norm_factor x the median of the clients' delta norms.
 * - median: per coordinate, the median of the K values (mean of the two
 *   middle ones when K is even). Unweighted.
 * - trimmed-mean: per coordinate, the floor(trim_frac x K) largest and as
 *   many smallest values are dropped, the rest averaged. Unweighted.
 * - krum: multi-Krum (Blanchard et al., NeurIPS 2017). With f assumed
 *   hostile clients, the score of k is the sum of its K - f - 2 smallest
 *   squared distances to other clients; the m lowest scores (ties: lower
 *   index) are averaged with their weights. f < 0: the largest f with
 *   K >= 2f + 3; m <= 0: K - f. When K < 2f + 3 Krum is undefined and the
 *   round falls back to the median (stats.fallback = 1).
 * A client with any non-finite value is dropped by every rule before it runs
 * (lora_agg_add already refuses such updates; the rules do not rely on it).
 *
 * Memory: the caller keeps every client's slice (O(K x adapter)); Krum adds a
 * K x K distance table, median/trimmed-mean a K-value buffer.
 */
#ifndef FL_LORA_ROBUST_H
#define FL_LORA_ROBUST_H

#include <stddef.h>

typedef enum {
	LORA_ROBUST_MEAN = 0,
	LORA_ROBUST_NORM_BOUND = 1,
	LORA_ROBUST_MEDIAN = 2,
	LORA_ROBUST_TRIMMED = 3,
	LORA_ROBUST_KRUM = 4
} lora_robust_rule;

/* "mean" | "norm-bound" | "median" | "trimmed-mean" | "krum"; FL_EINVAL else. */
int lora_robust_parse(const char *s, lora_robust_rule *out);
const char *lora_robust_name(lora_robust_rule r);

typedef struct lora_robust_opts {
	lora_robust_rule rule;
	double norm_bound;  /* norm-bound: S when > 0; 0 = automatic */
	double norm_factor; /* automatic S = norm_factor x median delta norm (default 1) */
	double trim_frac;   /* trimmed-mean: fraction cut at each end, [0, 0.5) (default 0.2) */
	int krum_f;         /* krum: assumed hostile clients; < 0 = automatic (default -1) */
	int krum_m;         /* krum: clients averaged; <= 0 = K - f (default 0) */
} lora_robust_opts;

void lora_robust_opts_default(lora_robust_opts *o);
/* FL_EINVAL when a parameter is out of range. */
int lora_robust_opts_check(const lora_robust_opts *o);

typedef struct lora_robust_stats {
	lora_robust_rule rule; /* the rule that ran (median after a Krum fallback) */
	int clients;           /* inputs */
	int selected;          /* clients that entered the result */
	int dropped;           /* clients left out (Krum, non-finite) */
	int clipped;           /* norm-bound: clients whose delta was scaled down */
	int trimmed;           /* median/trimmed-mean: values cut per coordinate */
	int fallback;          /* 1: Krum fell back to the median */
	int krum_f;            /* krum: the f used */
	double bound;          /* norm-bound: the S used */
} lora_robust_stats;

/* Combines K client slices x[k] (n floats each) with weights w[k] > 0 against
 * the global slice g (n floats) into out (n floats; may not alias inputs).
 * FL_EQUORUM when no finite client is left, FL_EINVAL on bad arguments,
 * FL_ENOMEM. */
int lora_robust_combine(const float *const *x, const double *w, int K, const float *g, size_t n,
                        const lora_robust_opts *o, float *out, lora_robust_stats *st);

#endif
