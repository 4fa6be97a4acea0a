/*
 * coordinator/rundir.h — the run directory on disk: run.json, state.json and
 * metrics.jsonl, each rewritten whole through fl_write_atomic.
 *
 * Layout (see DESIGN section 3):
 *   RUN/run.json                  settings of the run (coordinator/config.h)
 *   RUN/state.json                last committed round, run id, registered
 *                                 clients, accountant history, done flag
 *   RUN/metrics.jsonl             one JSON object per committed round
 *   RUN/global/round-%06d.safetensors  global adapter after each round
 *   RUN/coordinator.log           one line per round (written by the server)
 *   RUN/nonces.log                nonces of accepted Submits of the round being
 *                                 run (append-only, fsynced; see below)
 *
 * Commit protocol of a round R: (1) write global/round-R, (2) rewrite
 * metrics.jsonl with the line of R appended, (3) rewrite state.json with
 * round = R. Each step is one fl_write_atomic (core/fsutil.h): temp file +
 * fsync + rename + fsync of the directory. Step (3) is the commit: a crash
 * before it leaves round R uncommitted (the restart re-runs it, overwriting
 * the adapter file and dropping the metrics lines of rounds after the
 * committed one with coord_metrics_trim), a crash after it leaves R committed
 * exactly once.
 *
 * Does not know about the network or aggregation.
 *
 * Ownership: coord_state owns its clients, key index and phases arrays
 * (coord_state_fini frees them).
 */
#ifndef FL_COORDINATOR_RUNDIR_H
#define FL_COORDINATOR_RUNDIR_H

#include <stddef.h>

#define COORD_RUN_ID_HEX  32  /* 16 random bytes as hex */
#define COORD_KEY_HEX_MAX 160 /* public key as hex, NUL included */
#define COORD_REASON_MAX  32

typedef struct coord_client {
	char key[COORD_KEY_HEX_MAX]; /* public key, hex */
	long num_samples;            /* as the client said in Hello */
	int joined_round;            /* first round it could be selected for */
	int last_round;              /* last round it reported in (0 = none) */
} coord_client;

typedef struct coord_phase {
	double sigma, q;
	long steps;
} coord_phase;

typedef struct coord_state {
	char run_id[COORD_RUN_ID_HEX + 1];
	int round; /* last committed round; 0 = only the initial adapter */
	int done;
	char reason[COORD_REASON_MAX]; /* "rounds" | "target_eps" when done */
	long retries;                  /* rounds retried for lack of quorum, whole run */
	double client_eps_max;         /* dp sample: largest client epsilon so far */
	coord_client *clients;
	int n_clients, cap_clients;
	int *key_index;      /* open-addressing hash of clients[].key: idx + 1, 0 empty */
	int key_cap;         /* slots, a power of two >= 2 * n_clients (0: none yet) */
	coord_phase *phases; /* accountant history of client-level DP */
	int n_phases, cap_phases;
} coord_state;

void coord_state_init(coord_state *s);
void coord_state_fini(coord_state *s);
/* Index of the client with this key or -1. O(1) expected (hash of the key). */
int coord_state_find_client(const coord_state *s, const char *key);
/* Adds a client (FL_EINVAL if the key is empty or too long); returns its index
 * in *idx. An existing key only updates num_samples. */
int coord_state_add_client(coord_state *s, const char *key, long num_samples, int joined_round,
                           int *idx);
/* Appends one accountant phase, merging with the last one when sigma and q
 * are equal (so history stays short). */
int coord_state_add_phase(coord_state *s, double sigma, double q, long steps);

/* state.json <-> coord_state. Load: FL_ENOENT when absent, FL_EFORMAT when it
 * does not parse or misses a key. */
int coord_state_save(const coord_state *s, const char *run_dir);
int coord_state_load(coord_state *s, const char *run_dir);

/* Path of the global adapter of a round into buf. */
int coord_global_path(const char *run_dir, int round, char *buf, size_t n);

/* Rewrites metrics.jsonl atomically with the line (one JSON object, no
 * newline) of round `round` appended, after dropping any existing line of a
 * round >= `round` (left by a crash between steps 2 and 3). */
int coord_metrics_append(const char *run_dir, int round, const char *line);
/* Drops lines of rounds > last_committed (rewriting only when needed). */
int coord_metrics_trim(const char *run_dir, int last_committed);
/* Number of lines in metrics.jsonl and the round of its last line (for tests
 * and the restart check); FL_ENOENT when absent. */
int coord_metrics_count(const char *run_dir, int *lines, int *last_round);

/* The nonce log: fixed records of COORD_NONCE_RECORD bytes (round as 4 bytes
 * little-endian, then the COORD_NONCE_BYTES nonce), appended with one write
 * and fdatasync'ed before the Submit is folded and acknowledged, so a Submit
 * captured before a kill -9 is still a replay after the restart. Only the
 * records of the round being run matter (a Submit of any other round is
 * stale); the log is emptied after each commit, so it holds at most one
 * round's Submits (plus, after a crash between commit and reset, the previous
 * round's, which loading skips). A torn last record is ignored. */
#define COORD_NONCE_BYTES  24
#define COORD_NONCE_RECORD (4 + COORD_NONCE_BYTES)
/* Opens (creates, mode 0600) RUN/nonces.log for appending; the fd in *fd. */
int coord_nonce_log_open(const char *run_dir, int *fd);
/* Appends one record and fdatasyncs it. Safe from several threads. */
int coord_nonce_log_append(int fd, int round, const unsigned char nonce[COORD_NONCE_BYTES]);
/* Calls fn(arg, nonce) for every record of `round`; stops at fn's first
 * nonzero return and returns it. *n (may be NULL) counts the calls. */
int coord_nonce_log_load(int fd, int round, int (*fn)(void *arg, const unsigned char *nonce),
                         void *arg, int *n);
/* Empties the log (ftruncate + fsync), after a commit. */
int coord_nonce_log_reset(int fd);

#endif
