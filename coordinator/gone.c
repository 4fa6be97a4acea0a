/* coordinator/gone.c — see coordinator/gone.h. */
#include "coordinator/gone.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/rundir.h"
#include "core/err.h"
#include "core/fsutil.h"

#define GONE_MAX (64u << 20) /* gone.json: at most every registered client */

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
	if (e->kind != COORD_GONE_NO) {
		g->n_gone--;
		g->dirty = 1;
	}
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
		else if (!e->back) {
			e->back = 1;
			g->dirty = 1;
		}
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
	g->dirty = 1;
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

int coord_gone_missed(const coord_gone *g, int idx, int round)
{
	return idx >= 0 && idx < g->cap && g->e[idx].kind == COORD_GONE_MISSED &&
	       g->e[idx].round == round;
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

int coord_gone_slow(const coord_gone *g, int idx, int round)
{
	return coord_gone_missed(g, idx, round) && g->e[idx].back;
}

int coord_gone_readmit(coord_gone *g, int idx, int round)
{
	if (!coord_gone_slow(g, idx, round))
		return 0;
	clear(g, &g->e[idx]);
	return 1;
}

/* ------------------------------------------------------------ gone.json */

static const char *kind_name(int kind)
{
	return kind == COORD_GONE_MISSED ? "missed" : "dropped";
}

int coord_gone_to_json(coord_gone *g, const coord_state *s, char **text)
{
	cJSON *o = cJSON_CreateObject(), *arr = NULL;
	int ok = o && cJSON_AddNumberToObject(o, "version", 1) &&
	         cJSON_AddStringToObject(o, "run_id", s->run_id) &&
	         (arr = cJSON_AddArrayToObject(o, "clients"));

	*text = NULL;
	for (int i = 0; ok && i < g->cap && i < s->n_clients; i++) {
		const coord_gone_entry *e = &g->e[i];
		cJSON *p;
		if (e->kind == COORD_GONE_NO)
			continue;
		if (!(p = cJSON_CreateObject()) || !cJSON_AddItemToArray(arr, p)) {
			cJSON_Delete(p);
			ok = 0;
			break;
		}
		ok = cJSON_AddStringToObject(p, "key", s->clients[i].key) &&
		     cJSON_AddStringToObject(p, "kind", kind_name(e->kind)) &&
		     cJSON_AddNumberToObject(p, "round", e->round) &&
		     cJSON_AddBoolToObject(p, "back", e->back);
	}
	if (ok)
		ok = (*text = cJSON_PrintUnformatted(o)) != NULL;
	cJSON_Delete(o);
	if (!ok)
		return FL_ENOMEM;
	g->dirty = 0;
	return 0;
}

int coord_gone_write(const char *run_dir, const char *text)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/gone.json", run_dir) >= (int)sizeof path)
		return FL_EINVAL;
	return fl_write_atomic(path, text, strlen(text), 0644);
}

static int bad(char *why, size_t whyn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t whyn, const char *fmt, ...)
{
	va_list ap;
	if (why && whyn) {
		va_start(ap, fmt);
		vsnprintf(why, whyn, fmt, ap);
		va_end(ap);
	}
	return FL_EFORMAT;
}

/* Parses one clients[i] entry into g; 0, FL_EFORMAT (why set) or FL_ENOMEM. */
static int parse_entry(coord_gone *g, const coord_state *s, const cJSON *it, int i, int *skipped,
                       char *why, size_t whyn)
{
	const cJSON *key = cJSON_GetObjectItemCaseSensitive(it, "key");
	const cJSON *kind = cJSON_GetObjectItemCaseSensitive(it, "kind");
	const cJSON *round = cJSON_GetObjectItemCaseSensitive(it, "round");
	const cJSON *back = cJSON_GetObjectItemCaseSensitive(it, "back");
	int k, idx, rv;
	double r;

	if (!cJSON_IsObject(it))
		return bad(why, whyn, "clients[%d]: not an object", i);
	if (!cJSON_IsString(key) || !key->valuestring[0] ||
	    strlen(key->valuestring) >= COORD_KEY_HEX_MAX)
		return bad(why, whyn, "clients[%d].key: not a key string", i);
	if (!cJSON_IsString(kind))
		return bad(why, whyn, "clients[%d].kind: not a string", i);
	if (!strcmp(kind->valuestring, "missed"))
		k = COORD_GONE_MISSED;
	else if (!strcmp(kind->valuestring, "dropped"))
		k = COORD_GONE_DROPPED;
	else
		return bad(why, whyn, "clients[%d].kind: \"%.32s\" is not missed or dropped", i,
		           kind->valuestring);
	r = cJSON_IsNumber(round) ? round->valuedouble : NAN;
	if (!(r >= 1 && r <= (double)s->round + 1) || r != floor(r))
		return bad(why, whyn, "clients[%d].round: not a whole number in [1, %d]", i,
		           s->round + 1);
	if (!cJSON_IsBool(back))
		return bad(why, whyn, "clients[%d].back: not true or false", i);
	if ((idx = coord_state_find_client(s, key->valuestring)) < 0) {
		if (skipped)
			(*skipped)++;
		return 0;
	}
	if ((rv = ensure(g, idx)) != 0)
		return rv;
	if (g->e[idx].kind != COORD_GONE_NO)
		return bad(why, whyn, "clients[%d].key: listed twice", i);
	mark(g, &g->e[idx], k, (int)r);
	g->e[idx].back = (uint8_t)cJSON_IsTrue(back);
	return 0;
}

int coord_gone_parse(coord_gone *g, const coord_state *s, const char *text, size_t len,
                     int *skipped, char *why, size_t whyn)
{
	cJSON *o = cJSON_ParseWithLength(text, len);
	const cJSON *v, *arr, *it;
	int rv = 0, i = 0;

	if (skipped)
		*skipped = 0;
	if (!cJSON_IsObject(o)) {
		rv = bad(why, whyn, "not a JSON object (truncated or not JSON)");
		goto out;
	}
	v = cJSON_GetObjectItemCaseSensitive(o, "version");
	if (!cJSON_IsNumber(v) || v->valuedouble != 1) {
		rv = bad(why, whyn, "version: not 1");
		goto out;
	}
	v = cJSON_GetObjectItemCaseSensitive(o, "run_id");
	if (!cJSON_IsString(v) || strcmp(v->valuestring, s->run_id) != 0) {
		rv = bad(why, whyn, "run_id: not the run id of state.json (%s)", s->run_id);
		goto out;
	}
	arr = cJSON_GetObjectItemCaseSensitive(o, "clients");
	if (!cJSON_IsArray(arr)) {
		rv = bad(why, whyn, "clients: not an array");
		goto out;
	}
	cJSON_ArrayForEach(it, arr)
	{
		if ((rv = parse_entry(g, s, it, i++, skipped, why, whyn)) != 0)
			break;
	}
out:
	cJSON_Delete(o);
	if (rv) {
		coord_gone_fini(g);
		coord_gone_init(g);
	} else {
		g->dirty = 0; /* as on disk */
	}
	return rv;
}

int coord_gone_load(coord_gone *g, const coord_state *s, const char *run_dir, int *skipped,
                    char *why, size_t whyn)
{
	char path[PATH_MAX], *text = NULL;
	size_t len = 0;
	int rv;

	if (snprintf(path, sizeof path, "%s/gone.json", run_dir) >= (int)sizeof path)
		return FL_EINVAL;
	if ((rv = fl_read_file(path, GONE_MAX, &text, &len)) != 0)
		return rv;
	rv = coord_gone_parse(g, s, text, len, skipped, why, whyn);
	free(text);
	return rv;
}
