/* coordinator/gone.c — see coordinator/gone.h. */
#include "coordinator/gone.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"

void coord_gone_init(coord_gone *g)
{
	memset(g, 0, sizeof *g);
}

void coord_gone_fini(coord_gone *g)
{
	if (!g)
		return;
	free(g->e);
	memset(g, 0, sizeof *g);
}

static void clear(coord_gone *g, coord_gone_entry *e)
{
	if (e->kind != COORD_GONE_NO)
		g->n_gone--;
	e->kind = COORD_GONE_NO;
	e->back = 0;
	e->round = 0;
}

/* Grows the arrays to cover idx; 0 or FL_ENOMEM / FL_EINVAL. */
static int ensure(coord_gone *g, int idx)
{
	if (idx < 0)
		return FL_EINVAL;
	if (idx >= g->cap) {
		int nc = g->cap ? g->cap : 64;
		while (nc <= idx)
			nc *= 2;
		coord_gone_entry *ne = realloc(g->e, (size_t)nc * sizeof *ne);
		if (!ne)
			return FL_ENOMEM;
		memset(ne + g->cap, 0, (size_t)(nc - g->cap) * sizeof *ne);
		g->e = ne;
		g->cap = nc;
	}
	return 0;
}

int coord_gone_seen(coord_gone *g, int idx, uint32_t pipe, int is_hello)
{
	coord_gone_entry *e;
	int rv;

	if ((rv = ensure(g, idx)) != 0)
		return rv;
	e = &g->e[idx];
	if (e->kind != COORD_GONE_NO) {
		if (is_hello || (e->kind == COORD_GONE_DROPPED && pipe != e->pipe))
			clear(g, e);
		else
			e->back = 1;
	}
	e->pipe = pipe;
	return 0;
}

static void mark(coord_gone *g, coord_gone_entry *e, int kind, int round)
{
	if (e->kind == COORD_GONE_NO)
		g->n_gone++;
	e->kind = (uint8_t)kind;
	e->round = round;
	e->back = 0;
}

void coord_gone_mark_missed(coord_gone *g, int idx, int round)
{
	if (ensure(g, idx) == 0) /* out of memory: left untracked, never gone */
		mark(g, &g->e[idx], COORD_GONE_MISSED, round);
}

int coord_gone_pipe_dropped(coord_gone *g, uint32_t pipe, int round)
{
	int n = 0;
	if (pipe == 0)
		return 0;
	for (int i = 0; i < g->cap; i++) {
		coord_gone_entry *e = &g->e[i];
		if (e->pipe == pipe) {
			/* overrides a missed deadline: a new connection (or a
			 * Hello) brings the client back */
			mark(g, e, COORD_GONE_DROPPED, round);
			n++;
		}
	}
	return n;
}

int coord_gone_exclude(coord_gone *g, int idx, int round)
{
	coord_gone_entry *e;

	if (idx < 0 || idx >= g->cap)
		return 0;
	e = &g->e[idx];
	if (e->kind == COORD_GONE_NO)
		return 0;
	if (e->kind == COORD_GONE_MISSED && e->back && e->round < round) {
		clear(g, e);
		return 0;
	}
	return 1;
}
