/*
 * client/secagg_client.h — a client's side of a round under secure
 * aggregation (proto/fedlora.proto SecAggParams, SaUp, SaDown; the phases are
 * described in coordinator/secagg_round.h) over privacy/secagg.h.
 *
 * The handlers check every SaDown before acting on it: run id, round, the
 * attempt's session id and the phase (FL_ESTALE for a message of another
 * run, round, attempt or phase, so replayed and cross-round relays are
 * refused), sizes and indices (FL_EFORMAT). The Task carries no member
 * list: a client checks that graph_seed is the one derived from the run id
 * and round, learns its index and its neighbours' identity keys from its key
 * list, checks that the positions follow the identities' ring keys, and
 * refuses a key list with fewer than threshold signed neighbour keys. Its
 * view (its neighbours' survivor flags) must name at least threshold
 * survivors; the unmask request is answered only when the signed views of
 * its ring window confirm, for itself and every neighbour whose share it
 * reveals, the status it signed by a majority of that member's neighbours
 * (privacy/secagg.h): a coordinator cannot get both the self-mask and the
 * mask key of one client. With sa_client_set_peers every identity key
 * relayed (key list, unmask request) must be in the peer list (FL_EKEY).
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

/* From the Task: checks the params and that graph_seed is
 * priv_sa_graph_seed(run id, round) (FL_EFORMAT with why). */
int sa_client_new(sa_client **out, const Fedlora__Task *t, const char *run_id, const priv_key *key,
                  char *why, size_t whylen);
void sa_client_free(sa_client *c);
/* Identity keys relayed to c must be in peers (borrowed; NULL: no check). */
void sa_client_set_peers(sa_client *c, const priv_allow *peers);
/* This client's index (ring position), -1 before its key list. */
int sa_client_index(const sa_client *c);
int sa_client_n(const sa_client *c);
/* The reason of the last refusal of a handler ("" if none); never
 * contains secrets. Valid while c lives. */
const char *sa_client_why(const sa_client *c);

/* Phase 1: the public keys, their signature by the client's identity key
 * (privacy/secagg.h priv_sa_keys_sign) and its num_samples (its weight). */
int sa_client_keys(sa_client *c, int64_t num_samples, Fedlora__SaUp *up);
/* The weight from the key list: num_samples * weight_scale (<= 1; 1 under
 * client-level DP). 0 before the key list. */
double sa_client_weight(const sa_client *c);
/* SaDown 1 (key list: this client's index, its neighbours' identity and
 * round keys only) -> phase 2 up: share boxes for the neighbours. Every
 * entry must be a neighbour's keys signed by the identity key relayed with
 * them for this round and attempt: FL_ESIG for a substituted or replayed
 * key, FL_EFORMAT for a non-neighbour, a repeated entry or positions that
 * disagree with the ring keys, FL_EQUORUM for fewer than threshold entries,
 * FL_EKEY for an identity outside the peer list (reason: sa_client_why). On
 * a refusal the client sends nothing more this attempt. */
int sa_client_on_keylist(sa_client *c, const Fedlora__SaDown *d, Fedlora__SaUp *up);
/* SaDown 2 (boxes addressed to this client): opens and keeps them. */
int sa_client_on_boxes(sa_client *c, const Fedlora__SaDown *d);
/* Phase 3 up: the masked vector of x (len values; the weight is the last)
 * plus its metrics; *clipped gets the count of |x| > clip. */
int sa_client_mask(sa_client *c, const float *x, size_t len, Fedlora__SaUp *up, uint64_t *clipped);
/* SaDown 3 (this client's view) -> phase 4 up: its signature over it.
 * The view must be its neighbours' flags bit-packed, exactly
 * PRIV_SA_VIEW_BYTES(degree) bytes with the unused high bits of the last
 * byte zero (FL_EFORMAT, with the reason in sa_client_why, otherwise). */
int sa_client_on_survivors(sa_client *c, const Fedlora__SaDown *d, Fedlora__SaUp *up);
/* SaDown 4 (unmask request: the signed views of the ring window) -> phase
 * 5 up: the reveals. FL_ESIG / FL_EKEY / FL_EFORMAT / FL_ESTATE when an
 * honest client must refuse (see above); FL_EFORMAT also for a signed view
 * that is not packed as SaDown 3 requires. */
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
	const priv_allow *peers; /* --sa-peers or NULL */
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
