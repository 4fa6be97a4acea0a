/*
 * lora/aggregate.h — aggregation of client LoRA updates into the next global
 * adapter: FedIT (FedAvg of A and B), FFA-LoRA (A frozen, average B) and
 * LoRA-FAIR (average, then a server-side correction dB of B).
 *
 * Use: lora_agg_new() with the round's global adapter, lora_agg_add() once per
 * verified client adapter (the client's trained A and B, not a difference) as
 * it arrives, lora_agg_finish() to get the new global and the round's stats.
 *
 * Memory: the weighted sums of A and B are folded in, in double precision
 * (order-independent in the float result), as updates arrive
 * (O(adapter)). The aggregation-bias metric and `fair` need the individual
 * client factors, so when opts.compute_bias is set or the strategy is fair the
 * aggregator also keeps a copy of each client's adapter (O(clients x adapter));
 * with compute_bias = 0 fedit/ffa stay O(adapter).
 *
 * Never materializes an out x in matrix: dW = sum_k p_k B_k A_k is only ever
 * touched through r x r Gram products and out x r projections.
 *
 * Client-level DP (DP-FedAvg) when opts.dp_clip > 0: the update of client k is
 * its delta from the global (B only under ffa; A and B together otherwise),
 * clipped to L2 norm dp_clip, summed with weight 1, Gaussian noise of standard
 * deviation dp_noise * dp_clip added per coordinate, divided by
 * dp_expected_clients, and added to the global. fair is refused with
 * FL_ENOTSUP under client-level DP (its correction reads individual updates).
 *
 * Definitions used by the implementation (lora/aggregate.c, lora/fair.h):
 * - agg_bias is adapter-wide: sqrt(sum_i ||dW_i - B_i A_i||^2 / sum_i ||dW_i||^2)
 *   over the adapted matrices i, with the clients' normalized weights (uniform
 *   under DP, whose sum uses weight 1). Computed in double from Gram products.
 * - fair: the correction is solved per matrix; fair_cos_before/after are the
 *   adapter-wide cosines sum_i <dW_i, B_i A_i> / (||dW|| ||B A||). The
 *   gradient variant halves the step (and retries) whenever a step would raise
 *   the objective, so the objective never increases; where the cosine is
 *   undefined (dW = 0 or B_avg A_avg = 0) that matrix gets no correction.
 * - The new global's alpha is the old global's.
 * - lora_agg_finish works once; later adds or finishes are FL_ESTATE. A bad
 *   weight (w <= 0, NaN, Inf) is FL_EINVAL.
 *
 * Ownership: the aggregator copies what it keeps; callers keep their adapters.
 * lora_agg_free(NULL) is a no-op.
 */
#ifndef FL_LORA_AGGREGATE_H
#define FL_LORA_AGGREGATE_H

#include "lora/adapter.h"
#include "lora/robust.h"

struct priv_noise;

typedef enum { LORA_FEDIT = 0, LORA_FFA = 1, LORA_FAIR = 2 } lora_strategy;

/* "fedit" | "ffa" | "fair" -> strategy; FL_EINVAL for anything else. */
int lora_strategy_parse(const char *s, lora_strategy *out);
const char *lora_strategy_name(lora_strategy s);

typedef struct lora_agg_opts {
	lora_strategy strategy;
	int compute_bias; /* report agg_bias (keeps client factors) */
	/* fair */
	double fair_lambda; /* regularizer, default 0.01 */
	int fair_steps;     /* gradient steps, default 300 */
	double fair_lr;     /* step size, default 0.01 */
	int fair_ridge;     /* 1: closed-form ridge correction instead of gradient steps */
	/* client-level DP; off when dp_clip <= 0 */
	double dp_clip, dp_noise, dp_expected_clients;
	struct priv_noise *noise; /* required when dp_clip > 0 */
	/* robust rule replacing the weighted mean (lora/robust.h); any rule but
	 * mean keeps every client's copy and is refused (FL_ENOTSUP) with fair
	 * or client-level DP */
	lora_robust_opts robust;
	/* threads that scan and fold each update: 0 = one per online CPU for
	 * adapters of at least LORA_AGG_PAR_MIN params (1 below); at most
	 * LORA_AGG_MAX_THREADS. The result is bit-identical for any count. */
	int threads;
} lora_agg_opts;

#define LORA_AGG_MAX_THREADS 16
#define LORA_AGG_PAR_MIN     ((size_t)1 << 18)

/* Defaults: fedit, compute_bias 1, lambda 0.01, 300 steps, lr 0.01, DP off,
 * threads 0 (automatic), robust rule mean. */
void lora_agg_opts_default(lora_agg_opts *o);

typedef struct lora_agg_stats {
	int clients;       /* updates folded in */
	double weight_sum; /* sum of weights */
	double agg_bias;   /* ||dW - B_g A_g||_F / ||dW||_F, NaN when not computed */
	double fair_cos_before, fair_cos_after; /* cos(dW, B A_avg) before/after correction */
	double dp_clipped_frac;                 /* fraction of updates that clipping shrank */
	double update_norm_mean;                /* mean L2 norm of client deltas before clipping */
	lora_robust_stats robust;               /* what the robust rule did (rule mean: all kept) */
} lora_agg_stats;

typedef struct lora_agg lora_agg;

int lora_agg_new(lora_agg **out, const lora_adapter *global, const lora_agg_opts *opts);
void lora_agg_free(lora_agg *g);
/* Folds one client's adapter in with weight w > 0 (usually its num_samples).
 * FL_ESHAPE if the shape differs from the global, FL_ENONFINITE on NaN/Inf
 * (nothing is folded then). */
int lora_agg_add(lora_agg *g, const lora_adapter *client, double w);
/* Writes the new global into out (same shape as the global) and the stats.
 * FL_EQUORUM if nothing was added. */
int lora_agg_finish(lora_agg *g, lora_adapter *out, lora_agg_stats *stats);

/* agg_bias of a set of client adapters against a global, computed from Gram
 * products only (the same routine the aggregator uses; exposed for tests and
 * benchmarks). p are the normalized weights. */
int lora_agg_bias(const lora_adapter *const *clients, const double *p, int k,
                  const lora_adapter *global, double *bias);

#endif
