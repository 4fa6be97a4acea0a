/*
 * client/attack.h — hostile-client behaviour for tests and experiments ONLY
 * (`fedlora client --attack`, `fedlora sim --hostile N --attack`). It exists to
 * measure robust aggregation (lora/robust.h) against clients that hold a valid
 * key and sign correctly but send a corrupted update; a deployment never sets
 * it.
 *
 * After honest local training the trained tensors (B under ffa, A and B
 * otherwise) are rewritten from the honest delta d = trained - global:
 * - scale:S  global + S d
 * - flip[:S] global - S d (S = 1 when omitted)
 * - noise:S  global + d + N(0, S^2) per coordinate (deterministic stream of
 *            the round seed and client index; not for privacy)
 * - canary:M global + M e_0, e_0 the first coordinate of the first B (params
 *            index n_a), every other coordinate left at the global: a Dirac
 *            canary for DP audits (scripts/experiments/audit.sh), the same
 *            in every round and run; M finite, != 0
 * The result is then serialized and signed like any update.
 */
#ifndef FL_CLIENT_ATTACK_H
#define FL_CLIENT_ATTACK_H

#include <stdint.h>

#include "lora/adapter.h"

typedef enum {
	CLIENT_ATTACK_NONE = 0,
	CLIENT_ATTACK_SCALE = 1,
	CLIENT_ATTACK_FLIP = 2,
	CLIENT_ATTACK_NOISE = 3,
	CLIENT_ATTACK_CANARY = 4
} client_attack_kind;

typedef struct client_attack {
	client_attack_kind kind;
	double s; /* the factor or noise standard deviation */
} client_attack;

/* "scale:S" | "flip" | "flip:S" | "noise:S" | "canary:M" (S finite, > 0
 * for noise; M finite, != 0);
 * FL_EINVAL otherwise. */
int client_attack_parse(const char *spec, client_attack *out);
/* Rewrites trained's params [off0, n) from the delta to global (same shape;
 * off0 = n_a when A was not trained). seed makes the noise reproducible. */
int client_attack_apply(const client_attack *a, lora_adapter *trained, const lora_adapter *global,
                        int train_a, uint64_t seed);

#endif
