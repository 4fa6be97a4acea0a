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
 * Ownership: coord_state owns its clients and phases arrays (coord_state_fini
 * frees them).
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
	coord_phase *phases; /* accountant history of client-level DP */
	int n_phases, cap_phases;
} coord_state;

void coord_state_init(coord_state *s);
void coord_state_fini(coord_state *s);
/* Index of the client with this key or -1. */
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

#endif
