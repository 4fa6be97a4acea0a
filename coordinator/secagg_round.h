/*
 * coordinator/secagg_round.h — one attempt of a round under secure
 * aggregation (--secure-agg), the coordinator's side of the protocol of
 * proto/fedlora.proto (SecAggParams, SaUp, SaDown) over privacy/secagg.h.
 *
 * Phases (each with a deadline; the keys phase includes local training and
 * gets the round timeout, every later one --sa-phase-timeout):
 *   KEYS     members send their two public keys, signed by their identity
 *            key (SaUp 1; a signature that does not verify is refused)
 *   SHARES   key senders get their index and their neighbours' identity
 *            keys, signed round keys (SaDown 1, O(degree)), send share boxes
 *            (SaUp 2)
 *   MASKED   share senders get the boxes addressed to them (SaDown 2), send
 *            the masked vector (SaUp 3)
 *   SIGN     the survivor set S (masked vectors in) is fixed; each survivor
 *            gets its view, S restricted to its neighbours (SaDown 3,
 *            O(degree)), and signs it (SaUp 4, verified on arrival)
 *   UNMASK   each signer gets the signed views of its ring window (SaDown
 *            4, O(degree)); clients answer with reveals (SaUp 5); then
 *            priv_sa_server_finish
 * Members are ordered by ring key (privacy/secagg.h): a member's index is
 * its ring position, not its selection position (sa_round_member maps).
 * A phase ends when every expected client answered or its deadline passed.
 * Fewer than min_survivors clients in any phase, a member whose status the
 * signed views of fewer than degree/2 + 1 of its neighbours confirm (honest
 * clients would refuse to reveal its shares), or an unmasking that cannot
 * rebuild a secret aborts the attempt: nothing is decoded and the reason is
 * kept.
 *
 * Vector sent by each client: its update delta from the global (A and B for
 * fedit, B only for ffa) times its weight w = num_samples * weight_scale,
 * then w itself as the last coordinate; the decoded sum gives the weighted
 * mean's numerator and denominator. Under client-level DP the client clips
 * its delta to dp_clip with w = 1, and sa_round_apply adds the Gaussian
 * noise to the decoded sum (the coordinator sees the sum before noise).
 *
 * Locking: none inside; the caller serializes every call (coord.c: under mu).
 * Ownership: sa_round_free frees everything; the key is borrowed.
 */
#ifndef FL_COORDINATOR_SECAGG_ROUND_H
#define FL_COORDINATOR_SECAGG_ROUND_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "fedlora.pb-c.h"
#include "lora/aggregate.h"
#include "privacy/sign.h"

struct priv_noise;

typedef struct sa_round sa_round;

typedef struct sa_round_opts {
	const char *run_id;
	int round, attempt;
	int n;                      /* selected clients */
	int min_clients;            /* quorum: min_survivors is at least this; n below it fails */
	const int *reg;             /* their registry indices, selection order */
	const uint8_t (*id_pk)[32]; /* their Ed25519 keys */
	lora_strategy strat;        /* fedit or ffa */
	const lora_adapter *global;
	double clip;                           /* 0: from the adapter scale */
	int frac_bits;                         /* 0: the largest that cannot overflow */
	double keys_timeout, phase_timeout;    /* seconds */
	double dp_clip, dp_noise, dp_expected; /* dp_clip > 0: client-level DP */
	const priv_key *key;                   /* seals the SaDown messages */
} sa_round_opts;

enum { SA_RUNNING = 0, SA_ADVANCED = 1, SA_FINISHED = 2, SA_ABORTED = 3 };

/* Checks the parameters (priv_sa_check_params) and opens the keys phase at
 * time now. FL_EINVAL with the reason in why. */
int sa_round_new(sa_round **out, const sa_round_opts *o, double now, char *why, size_t whylen);
void sa_round_free(sa_round *r);
/* The Task's SecAggParams (valid while r lives). */
Fedlora__SecAggParams *sa_round_task_params(sa_round *r);
/* The round index (ring position) of registry client reg, -1 if not
 * selected. */
int sa_round_member(const sa_round *r, int reg);
/* Is member reg still expected to answer phase `want` (0..5 = SaDown
 * phases)? Used for the Task: 1 while it has not sent keys. */
int sa_round_wants_task(const sa_round *r, int reg);
/* The SaDown of phase want (1..4) for registry client reg: 0 and a malloc'd
 * sealed envelope; 1 when that phase is not reached yet (hold the poll);
 * FL_ESTALE (reason in why) when the client is no longer part of the attempt. */
int sa_round_down(sa_round *r, int reg, uint32_t want, uint8_t **buf, size_t *len, char *why,
                  size_t whylen);
/* Takes an SaUp (signature, key and nonce already checked by the caller):
 * 0, or FL_ESTALE / FL_ESTATE / FL_EFORMAT / FL_ESHAPE ... with why. */
int sa_round_up(sa_round *r, int reg, const Fedlora__SaUp *u, char *why, size_t whylen);
/* Advances phases whose clients all answered or whose deadline passed:
 * SA_RUNNING, SA_ADVANCED (a new phase opened: wake held polls),
 * SA_FINISHED (the sum is decoded) or SA_ABORTED (reason: sa_round_why). */
int sa_round_tick(sa_round *r, double now);
const char *sa_round_why(const sa_round *r);
/* The earliest deadline of the current phase (monotonic seconds). */
double sa_round_deadline(const sa_round *r);

typedef struct sa_round_result {
	int survivors, dropped; /* masked vectors in; key senders without reveals */
	double w_sum, train_sum, eval_after_sum, eval_before_sum; /* survivors', weighted */
	double client_eps_max;
	uint64_t clipped; /* coordinates clipped by the survivors */
	uint64_t bytes_up, bytes_down;
} sa_round_result;

/* After SA_FINISHED: next = global + (decoded sum [+ noise]) / weight (or
 * / dp_expected under DP), on the factors the strategy trains. */
int sa_round_apply(sa_round *r, lora_adapter *next, struct priv_noise *noise, sa_round_result *res);
/* Survivor/dropped lists and parameters for metrics.jsonl (registry
 * short ids via ids[reg], 12 hex characters). */
int sa_round_metrics_json(const sa_round *r, cJSON *o);
/* Counts bytes of the attempt (caller's measurements of envelopes). */
void sa_round_count_bytes(sa_round *r, size_t up, size_t down);

#endif
