/*
 * client/session.h — a client's whole life in a federated run: register with
 * the coordinator (Hello/Welcome), long-poll for tasks, train locally, submit
 * signed updates, until the run is Done.
 *
 * Protocol (proto/fedlora.proto, core/wire.h): the first Welcome pins the
 * coordinator's public key (or --coordinator-key pins it beforehand); every
 * later message must be signed by that key, and a Welcome signed by another
 * key ends the session with FL_EKEY. A Task is verified (signature, run id,
 * round, parameters, tensor names/shapes/values) before training starts.
 * The update sent back is the trained adapter itself: A and B, or B only when
 * the task freezes A (ffa). Every Submit carries a fresh random nonce. A Task
 * with secure aggregation params is answered after training through the
 * phases of client/secagg_client.h instead of a Submit.
 *
 * Resilience: the REQ socket redials on its own, so a coordinator that goes
 * away and comes back is reached again; timeouts and transport errors are
 * retried with exponential backoff (100 ms .. 2 s). A Reject of GetTask
 * (unknown run or key: the coordinator started a new run or lost us) leads to
 * a new Hello; a Welcome with a new run id resets the round counters and the
 * privacy accountant. A round that was acknowledged but not committed (the
 * coordinator retries it for lack of quorum, or re-runs it after a restart;
 * a Wait then names a lower committed round) is trained again when handed
 * out again; the accountant counts every training.
 *
 * Privacy: under sample-level DP (Task.dp.mode 1) the client runs DP-SGD and
 * keeps its own accountant history (privacy/accountant.h) over every round it
 * trained in this run; the resulting epsilon at Task.dp.delta travels in the
 * Submit's metrics. With state_path the history is also written there after
 * every DP round (temp file, fsync, rename) and read back at start, so a
 * restarted client keeps counting its spending in the same run; a state file
 * that does not parse stops the client (FL_EFORMAT) rather than forgetting
 * what was spent. Without state_path a restarted client starts a new history.
 *
 * Does not: load data itself (model/task.h does, given opts), print anything
 * (progress goes to on_event; diagnostics to core/log.h), or exit.
 *
 * Ownership: options are borrowed for the duration of client_run; events
 * passed to on_event are valid during the callback only.
 */
#ifndef FL_CLIENT_SESSION_H
#define FL_CLIENT_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "client/attack.h"
#include "privacy/accountant.h"
#include "privacy/acct.h"
#include "privacy/sign.h"

#define CLIENT_MAX_PHASES      4096      /* accountant history entries (merged when equal) */
#define CLIENT_STATE_MAX_BYTES (1 << 20) /* a longer state file is cut and does not parse */

typedef enum client_event_kind {
	CLIENT_EV_WELCOME = 1, /* registered: run_id, total_rounds, committed_round */
	CLIENT_EV_ROUND = 2,   /* trained and submitted a round (accepted or not) */
	CLIENT_EV_RETRY = 3,   /* a call failed; retrying (code says why) */
	CLIENT_EV_DONE = 4     /* the run is finished (final_round) */
} client_event_kind;

typedef struct client_event {
	client_event_kind kind;
	const char *run_id;
	uint64_t round, total_rounds, committed_round;
	double train_loss, eval_before, eval_after;
	double epsilon, delta; /* cumulative, sample-level DP; 0 without */
	/* "rdp" | "prv": what computed epsilon (static string) */
	const char *accountant;
	double seconds;   /* local training wall time */
	size_t bytes_up;  /* bytes of the Submit envelope */
	int accepted;     /* 1: Ack, 0: Reject (code) */
	int code;         /* FL_E* reason of a Reject or failure */
	const char *text; /* Reject text or failure detail */
} client_event;

typedef struct client_opts {
	const char *url;             /* coordinator URL (tcp://, tls+tcp://, ipc://) */
	const char *key_path;        /* this client's NAME.key */
	const char *coordinator_pub; /* optional: pin this NAME.pub from the start */
	const char *state_path;      /* optional: the DP accountant's history, kept across
	                                restarts of this client (JSON, mode 0600) */
	const char *task;            /* expected task ("linreg" | "lm") */
	const char *accountant;      /* NULL: the run's (Task DpParams); "rdp" | "prv":
	                                this client's own choice for its epsilon */
	int client_index;            /* data shard / synthetic client index, >= 0 */
	int have_seed;               /* 1: data_seed overrides the run's seed for data */
	uint64_t data_seed;
	const char *data, *base_dir, *device; /* lm task */
	int grad_checkpoint;                  /* lm task: activation checkpointing */
	size_t recv_max;                      /* 0: FL_NET_RECV_MAX_DEFAULT */
	const char *tls_cert, *tls_key, *tls_ca;
	int max_rounds;       /* stop (success) after training this many rounds; 0 = no limit */
	int poll_timeout_ms;  /* how long one GetTask may take (long poll), default 30000 */
	double give_up_s;     /* fail with FL_ETIMEOUT after this long without any reply;
	                         0 = keep trying */
	client_attack attack; /* tests/experiments only: corrupt the update (client/attack.h) */
	/* optional (--sa-peers, an allow list file read by priv_allow_load):
	 * the Ed25519 keys this client accepts as members of a secure round;
	 * an identity key relayed in the key list or unmask request that is
	 * not in it makes the client refuse the attempt (borrowed; NULL:
	 * trust the identities the coordinator relays) */
	const priv_allow *sa_peers;
	void (*on_event)(const client_event *ev, void *arg);
	/* optional: called after every request/reply exchange with the request's
	 * and the reply's fl_msg_type (0: no reply), the wall time from send to
	 * the verified reply, the outcome (0 or FL_E*), and the bytes of the
	 * request envelope sent and of the reply received (0: none); nng's SP
	 * framing and TCP/TLS overhead are not counted. From the session's
	 * thread, with arg */
	void (*on_request)(uint32_t type, uint32_t reply, double seconds, int rc, size_t sent,
	                   size_t received, void *arg);
	void *arg;
} client_opts;

void client_opts_default(client_opts *o);

/* The privacy history kept in client_opts.state_path: {"run_id": ID,
 * "delta": D, "epsilon": E, "accountant": "rdp"|"prv", "eps_error": X,
 * "phases": [{"sigma","q","steps"}, ..]}. */
typedef struct client_dp_state {
	char run_id[64 + 1]; /* FL_RUN_ID_MAX + 1 */
	double delta;        /* 0 when absent */
	priv_acct_kind kind; /* "accountant"; rdp when absent */
	double eps_error;    /* "eps_error"; 0 when absent */
	priv_phase *phases;  /* n of them, malloc'd (client_dp_state_fini frees) */
	int n;
} client_dp_state;

/* Reads a state file (untrusted: at most CLIENT_MAX_PHASES phases, a valid run
 * id, sigma >= 0, q in [0, 1], 0 <= steps < 1e15). A missing file is an empty
 * state (0, n == 0, run_id ""); FL_EFORMAT (logged) when it does not parse,
 * FL_EIO / FL_ENOMEM. On failure *st is empty. */
int client_dp_state_read(const char *path, client_dp_state *st);
void client_dp_state_fini(client_dp_state *st);

typedef struct client_stats {
	int rounds_trained;   /* rounds trained and submitted */
	int rounds_accepted;  /* of which acknowledged */
	int rejects;          /* Reject replies of any kind */
	int reconnects;       /* connections lost */
	double epsilon;       /* final cumulative epsilon (sample-level DP) */
	uint64_t final_round; /* from Done */
	/* why client_run stopped with an error, in words, when the session
	 * knows more than fl_strerror of the code says ("tokenizer mismatch:
	 * ..."); "" otherwise */
	char stop_reason[320];
} client_stats;

/* Runs the session until the coordinator says Done (0), max_rounds rounds
 * were trained (0), the run's last round was acknowledged and the coordinator
 * stayed silent for 15 s afterwards (0: its Done was lost as it exited), or a fatal error: FL_EKEY
 * (our key refused, or the coordinator's key changed), FL_EINVAL (bad options, task mismatch),
 * FL_ENOENT/FL_EIO/FL_EFORMAT (key or data files), FL_ETIMEOUT (give_up_s
 * passed without a reply). st may be NULL. */
int client_run(const client_opts *o, client_stats *st);

#endif
