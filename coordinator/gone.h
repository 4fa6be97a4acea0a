/*
 * coordinator/gone.h — which registered clients are gone, so that retry
 * top-ups (and later selections) do not pick them again.
 *
 * A client is gone when
 *   - it was selected in an attempt of round R and had not reported when the
 *     attempt closed (it missed the deadline: COORD_GONE_MISSED), or
 *   - the connection (nng pipe) it last spoke on was dropped
 *     (COORD_GONE_DROPPED).
 * A gone client is left out of selections until it is back:
 *   - a Hello brings any gone client back at once (it restarted);
 *   - a request on another connection than the dropped one brings a
 *     dropped client back at once (it reconnected);
 *   - a client that missed round R's deadline stays out of every further
 *     attempt of round R even if it keeps polling (it is too slow for this
 *     round); from a later round on it is selectable again once it sent any
 *     request after it was marked (a hung client that sends nothing stays
 *     out);
 *   - coord_gone_readmit() brings back, for the current round, a client that
 *     missed its deadline and sent a request since (alive, only slow): the
 *     engine does that when round R cannot reach its quorum otherwise.
 *
 * Indexed like coord_state.clients. Not thread-safe: the coordinator calls it
 * under its mutex. Arrays grow on demand; an index beyond them is simply not
 * gone.
 *
 * Persistence: RUN/gone.json lists the gone clients by key, so a coordinator
 * restarted on the same run directory (kill -9 included) leaves them out as
 * the killed one would have:
 *   {"version": 1, "run_id": "<state.json's>", "clients": [
 *     {"key": "<hex>", "kind": "missed" | "dropped", "round": R, "back": B}]}
 * Pipe ids are not kept (a restarted process has new connections), so after a
 * restart a dropped client is back with its first request, and a client that
 * missed round R is back as described above (B says whether a request came
 * after the mark). The coordinator rewrites the file whenever `dirty` is set,
 * at the close of an attempt that marked clients, before every selection and
 * with the registry's group commits.
 */
#ifndef FL_COORDINATOR_GONE_H
#define FL_COORDINATOR_GONE_H

#include <stddef.h>
#include <stdint.h>

enum { COORD_GONE_NO = 0, COORD_GONE_MISSED = 1, COORD_GONE_DROPPED = 2 };

typedef struct coord_gone_entry {
	uint32_t pipe; /* id of the nng pipe the client last spoke on; 0: none */
	int round;     /* round it went gone in */
	uint8_t kind;  /* COORD_GONE_* */
	uint8_t back;  /* a request came after the mark */
} coord_gone_entry;

typedef struct coord_gone {
	coord_gone_entry *e;
	int cap;
	int n_gone; /* entries with kind != COORD_GONE_NO */
	int dirty;  /* changed since the last coord_gone_to_json (persisted fields) */
} coord_gone;

struct coord_state;

void coord_gone_init(coord_gone *g);
void coord_gone_fini(coord_gone *g);
/* Client idx sent a request on pipe (is_hello: a Hello). Records the pipe and
 * brings the client back as described above. FL_ENOMEM when the arrays cannot
 * grow (the client is then not tracked: never gone). */
int coord_gone_seen(coord_gone *g, int idx, uint32_t pipe, int is_hello);
/* Client idx missed the deadline of an attempt of round `round` (arrays grow;
 * out of memory leaves it untracked). */
void coord_gone_mark_missed(coord_gone *g, int idx, int round);
/* The pipe was dropped during round `round`: every client whose last pipe it
 * was is gone. Returns how many were marked. O(tracked clients). */
int coord_gone_pipe_dropped(coord_gone *g, uint32_t pipe, int round);
/* 1 when idx missed the deadline of an attempt of `round` and is still
 * marked so (a late Submit of it is round_closed, not "not selected"). */
int coord_gone_missed(const coord_gone *g, int idx, int round);
/* 1 when idx must be left out of a selection for round `round`. A gone client
 * that is selectable again is cleared (0). */
int coord_gone_exclude(coord_gone *g, int idx, int round);
/* 1 when idx is left out of round `round` because it missed the deadline of
 * an attempt of that round, and has sent a request since the mark: it is
 * alive, only slow for this round, so coord_gone_readmit() may bring it back
 * when the round cannot reach its quorum without it. 0 otherwise (not gone,
 * dropped, marked in another round, or silent since the mark). */
int coord_gone_slow(const coord_gone *g, int idx, int round);
/* When coord_gone_slow(g, idx, round): clears the entry, so the client is
 * selectable in round `round` again, and returns 1. Missing another deadline
 * marks it again, and it is then readmittable only after another request.
 * 0, changing nothing, otherwise. */
int coord_gone_readmit(coord_gone *g, int idx, int round);

/* gone.json of g into *text (malloc'd, the caller frees): every gone entry
 * under the key of s->clients[idx] and s->run_id; clears g->dirty. Entries
 * beyond s->n_clients are left out. 0 or FL_ENOMEM (dirty kept). */
int coord_gone_to_json(coord_gone *g, const struct coord_state *s, char **text);
/* Writes text as RUN/gone.json (fl_write_atomic: temp file, fsync, rename,
 * fsync of the folder; mode 0644). */
int coord_gone_write(const char *run_dir, const char *text);
/* Parses gone.json text into g (which must be empty, from coord_gone_init),
 * mapping keys to indexes through s. Keys that s does not know are skipped
 * and counted in *skipped (may be NULL). FL_EFORMAT when the text is not such
 * a file: why (may be NULL) names the field, e.g. "clients[2].round: ...".
 * g is left empty on failure. The run id must be s->run_id, and a round at
 * most s->round + 1 (the round being run). */
int coord_gone_parse(coord_gone *g, const struct coord_state *s, const char *text, size_t len,
                     int *skipped, char *why, size_t whyn);
/* Reads RUN/gone.json and coord_gone_parse()s it: FL_ENOENT when absent,
 * FL_ETOOBIG over 64 MiB, FL_EIO when unreadable. */
int coord_gone_load(coord_gone *g, const struct coord_state *s, const char *run_dir, int *skipped,
                    char *why, size_t whyn);

#endif
