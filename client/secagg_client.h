/*
 * client/secagg_client.h — a client's side of a round under secure
 * aggregation (proto/fedlora.proto SecAggParams, SaUp, SaDown; the phases are
 * described in coordinator/secagg_round.h) over privacy/secagg.h.
 *
 * The handlers check every SaDown before acting on it: run id, round, the
 * attempt's session id and the phase (FL_ESTALE for a message of another
 * run, round, attempt or phase, so replayed and cross-round relays are
 * refused), sizes and indices (FL_EFORMAT). The unmask request is answered
 * only when more than half of the key-sharing clients signed the same
 * survivor set, it names at least min_survivors and it is the set this
 * client signed (privacy/secagg.h): a coordinator cannot get both the
 * self-mask and the mask key of one client.
 *
 * sa_client_round drives the whole exchange after local training through a
 * call callback (client/session.c's signed request/reply); its GetTasks name
 * the SaDown phase they wait for and are held (long poll) by the coordinator.
 *
 * Test hook: FEDLORA_SA_DROP_AFTER_MASK="I[,J...]" makes the clients with
 * these --client-index values exit (status 3) right after their masked
 * vector was acknowledged, i.e. drop out before unmasking (tests only);
 * with FEDLORA_SA_DROP_ROUND=R only in round R.
 *
 * Ownership: sa_client_free frees (NULL is a no-op) and wipes the secrets.
 * The SaUp filled by a handler points into the sa_client and is valid until
 * the next handler call.
 */
#ifndef FL_CLIENT_SECAGG_CLIENT_H
#define FL_CLIENT_SECAGG_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/wire.h"
#include "fedlora.pb-c.h"
#include "lora/adapter.h"
#include "privacy/sign.h"

typedef struct sa_client sa_client;

/* From the Task: checks the params (FL_EFORMAT with why) and finds this
 * client's index by its key among the members (FL_EKEY when absent). */
int sa_client_new(sa_client **out, const Fedlora__Task *t, const char *run_id, const priv_key *key,
                  char *why, size_t whylen);
void sa_client_free(sa_client *c);
int sa_client_index(const sa_client *c);
int sa_client_n(const sa_client *c);
/* The reason of the last refusal of sa_client_on_keylist ("" if none);
 * never contains secrets. Valid while c lives. */
const char *sa_client_why(const sa_client *c);

/* Phase 1: the public keys, their signature by the client's identity key
 * (privacy/secagg.h priv_sa_keys_sign) and its num_samples (its weight). */
int sa_client_keys(sa_client *c, int64_t num_samples, Fedlora__SaUp *up);
/* The weight from the key list: num_samples * weight_scale (<= 1; 1 under
 * client-level DP). 0 before the key list. */
double sa_client_weight(const sa_client *c);
/* SaDown 1 (key list: the neighbours' keys only) -> phase 2 up: share boxes
 * for the neighbours. Every entry must be a neighbour's keys signed by that
 * member's key in the Task for this round and attempt: FL_ESIG for a
 * substituted or replayed key, FL_EFORMAT for a non-neighbour, a repeated
 * entry or a key-sender count out of range (reason: sa_client_why). On a
 * refusal the client sends nothing more this attempt. */
int sa_client_on_keylist(sa_client *c, const Fedlora__SaDown *d, Fedlora__SaUp *up);
/* SaDown 2 (boxes addressed to this client): opens and keeps them. */
int sa_client_on_boxes(sa_client *c, const Fedlora__SaDown *d);
/* Phase 3 up: the masked vector of x (len values; the weight is the last)
 * plus its metrics; *clipped gets the count of |x| > clip. */
int sa_client_mask(sa_client *c, const float *x, size_t len, Fedlora__SaUp *up, uint64_t *clipped);
/* SaDown 3 (survivor set) -> phase 4 up: this client's signature. */
int sa_client_on_survivors(sa_client *c, const Fedlora__SaDown *d, Fedlora__SaUp *up);
/* SaDown 4 (unmask request) -> phase 5 up: the reveals. FL_ESIG / FL_EQUORUM /
 * FL_ESTATE when an honest client must refuse (see above). */
int sa_client_on_unmask(sa_client *c, const Fedlora__SaDown *d, Fedlora__SaUp *up);

/* The vector a client masks: its delta from the global on the factors it
 * trains (A and B, or B only when train_a is 0), clipped to L2 norm dp_clip
 * when dp_clip > 0 (then weight 1), times weight, with the weight appended.
 * *out (malloc'd) gets *len values. */
int sa_client_vector(const lora_adapter *global, const lora_adapter *trained, int train_a,
                     double weight, double dp_clip, float **out, size_t *len);

typedef struct sa_client_io {
	void *arg;
	/* a signed request and its verified reply (client/session.c's call) */
	int (*call)(void *arg, const ProtobufCMessage *body, uint32_t type, int timeout_ms,
	            fl_wire_msg *rep, size_t *sent);
	const char *run_id;
	const priv_key *key;
	int client_index;
	int poll_timeout_ms;
} sa_client_io;

typedef struct sa_client_outcome {
	int accepted; /* 1: the reveals were acknowledged (the round can finish) */
	int code;     /* FL_E* of a refusal or failure */
	char text[256];
	size_t bytes_up;  /* every SaUp envelope */
	uint64_t clipped; /* coordinates clipped */
} sa_client_outcome;

/* Runs phases 1..5 of Task t for the trained adapter (global: the Task's
 * adapter), with num_samples and metrics for the masked message. Returns 0
 * (outcome in out, also for a round the coordinator aborted) or a transport
 * error. */
int sa_client_round(const sa_client_io *io, const Fedlora__Task *t, const lora_adapter *global,
                    const lora_adapter *trained, int train_a, int64_t num_samples,
                    const Fedlora__TrainMetrics *met, sa_client_outcome *out);

#endif
