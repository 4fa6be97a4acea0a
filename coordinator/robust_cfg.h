/*
 * coordinator/robust_cfg.h — the coordinator's side of robust aggregation:
 * the run's settings turned into lora_robust_opts, and the per-round
 * `robust` object of metrics.jsonl.
 *
 * Ownership: coord_robust_json returns a cJSON object the caller owns (NULL
 * on allocation failure).
 */
#ifndef FL_COORDINATOR_ROBUST_CFG_H
#define FL_COORDINATOR_ROBUST_CFG_H

#include <cjson/cJSON.h>

#include "coordinator/config.h"
#include "lora/robust.h"

/* FL_EINVAL when c->aggregator does not parse (a validated config always does). */
int coord_robust_opts(const coord_config *c, lora_robust_opts *o);
/* {"rule", "clients", "selected", "dropped", "clipped", "trimmed", "fallback",
 *  "krum_f" (krum), "bound" (norm-bound)} */
cJSON *coord_robust_json(const lora_robust_stats *s);

#endif
