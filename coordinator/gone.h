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
 *     out).
 *
 * Runtime state only: it is not persisted (a restarted coordinator starts with
 * nobody gone), and it is indexed like coord_state.clients. Not thread-safe:
 * the coordinator calls it under its mutex. Arrays grow on demand; an index
 * beyond them is simply not gone.
 */
#ifndef FL_COORDINATOR_GONE_H
#define FL_COORDINATOR_GONE_H

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
} coord_gone;

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
/* 1 when idx must be left out of a selection for round `round`. A gone client
 * that is selectable again is cleared (0). */
int coord_gone_exclude(coord_gone *g, int idx, int round);

#endif
