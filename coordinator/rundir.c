/*
 * coordinator/rundir.c — see coordinator/rundir.h. Files are small (state and
 * metrics are kilobytes); they are read and rewritten whole.
 */
#include "coordinator/rundir.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"

#define STATE_MAX   (64u << 20) /* state.json: registry of many clients */
#define METRICS_MAX (256u << 20)

void coord_state_init(coord_state *s)
{
	memset(s, 0, sizeof *s);
}

void coord_state_fini(coord_state *s)
{
	if (!s)
		return;
	free(s->clients);
	free(s->key_index);
	free(s->phases);
	memset(s, 0, sizeof *s);
}

/* FNV-1a of a key string. */
static uint32_t key_hash(const char *key)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

/* Slot of key in the index: where it is, or the empty slot where it would go. */
static int key_slot(const coord_state *s, const char *key)
{
	uint32_t mask = (uint32_t)s->key_cap - 1, i = key_hash(key) & mask;
	while (s->key_index[i] && strcmp(s->clients[s->key_index[i] - 1].key, key))
		i = (i + 1) & mask;
	return (int)i;
}

/* Rebuilds the index with room for at least `want` clients at load <= 1/2. */
static int key_index_grow(coord_state *s, int want)
{
	int cap = s->key_cap ? s->key_cap : 64;
	int *old = s->key_index;
	while (cap < 2 * want)
		cap *= 2;
	if (cap == s->key_cap)
		return 0;
	if (!(s->key_index = calloc((size_t)cap, sizeof *s->key_index))) {
		s->key_index = old;
		return FL_ENOMEM;
	}
	s->key_cap = cap;
	free(old);
	for (int i = 0; i < s->n_clients; i++)
		s->key_index[key_slot(s, s->clients[i].key)] = i + 1;
	return 0;
}

int coord_state_find_client(const coord_state *s, const char *key)
{
	int slot;
	if (!s->key_cap)
		return -1;
	slot = key_slot(s, key);
	return s->key_index[slot] ? s->key_index[slot] - 1 : -1;
}

int coord_state_add_client(coord_state *s, const char *key, long num_samples, int joined_round,
                           int *idx)
{
	int i, rv;

	if (!key[0] || strlen(key) >= COORD_KEY_HEX_MAX)
		return FL_EINVAL;
	if ((i = coord_state_find_client(s, key)) >= 0) {
		s->clients[i].num_samples = num_samples;
		if (idx)
			*idx = i;
		return 0;
	}
	if ((rv = key_index_grow(s, s->n_clients + 1)) != 0)
		return rv;
	if (s->n_clients == s->cap_clients) {
		int nc = s->cap_clients ? s->cap_clients * 2 : 16;
		coord_client *nb = realloc(s->clients, (size_t)nc * sizeof *nb);
		if (!nb)
			return FL_ENOMEM;
		s->clients = nb;
		s->cap_clients = nc;
	}
	i = s->n_clients++;
	memset(&s->clients[i], 0, sizeof s->clients[i]);
	strcpy(s->clients[i].key, key);
	s->key_index[key_slot(s, key)] = i + 1;
	s->clients[i].num_samples = num_samples;
	s->clients[i].joined_round = joined_round;
	if (idx)
		*idx = i;
	return 0;
}

int coord_state_add_phase(coord_state *s, double sigma, double q, long steps)
{
	if (s->n_phases > 0 && s->phases[s->n_phases - 1].sigma == sigma &&
	    s->phases[s->n_phases - 1].q == q) {
		s->phases[s->n_phases - 1].steps += steps;
		return 0;
	}
	if (s->n_phases == s->cap_phases) {
		int nc = s->cap_phases ? s->cap_phases * 2 : 8;
		coord_phase *nb = realloc(s->phases, (size_t)nc * sizeof *nb);
		if (!nb)
			return FL_ENOMEM;
		s->phases = nb;
		s->cap_phases = nc;
	}
	s->phases[s->n_phases].sigma = sigma;
	s->phases[s->n_phases].q = q;
	s->phases[s->n_phases].steps = steps;
	s->n_phases++;
	return 0;
}

static int join_path(char *buf, size_t n, const char *dir, const char *name)
{
	if (snprintf(buf, n, "%s/%s", dir, name) >= (int)n)
		return FL_EINVAL;
	return 0;
}

/* Adds key: x as the shortest of %.15g, %.16g, %.17g that reads back exactly
 * (cJSON's own printing keeps 15 digits where those come back within an
 * epsilon, so a restart would see a sigma or a 16-digit count off by one
 * unit in the last place). Non-finite values are written as null. Returns the
 * item or NULL when out of memory. */
static cJSON *add_num(cJSON *o, const char *key, double x)
{
	char num[40];
	cJSON *v;
	if (!isfinite(x))
		return cJSON_AddNullToObject(o, key);
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(num, sizeof num, "%.*g", prec, x);
		if (strtod(num, NULL) == x)
			break;
	}
	v = cJSON_CreateRaw(num);
	if (!v || !cJSON_AddItemToObject(o, key, v)) {
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

int coord_state_save(const coord_state *s, const char *run_dir)
{
	char path[PATH_MAX];
	cJSON *o = NULL, *arr;
	char *text = NULL;
	int rv = FL_ENOMEM;

	if ((rv = join_path(path, sizeof path, run_dir, "state.json")) != 0)
		return rv;
	rv = FL_ENOMEM;
	if (!(o = cJSON_CreateObject()))
		return FL_ENOMEM;
	if (!add_num(o, "version", 1) || !cJSON_AddStringToObject(o, "run_id", s->run_id) ||
	    !add_num(o, "round", s->round) || !cJSON_AddBoolToObject(o, "done", s->done) ||
	    !cJSON_AddStringToObject(o, "reason", s->reason) ||
	    !add_num(o, "retries", (double)s->retries) ||
	    !add_num(o, "client_eps_max", s->client_eps_max))
		goto out;
	if (!(arr = cJSON_AddArrayToObject(o, "accountant")))
		goto out;
	for (int i = 0; i < s->n_phases; i++) {
		cJSON *p = cJSON_CreateObject();
		if (!p || !cJSON_AddItemToArray(arr, p)) {
			cJSON_Delete(p);
			goto out;
		}
		if (!add_num(p, "sigma", s->phases[i].sigma) || !add_num(p, "q", s->phases[i].q) ||
		    !add_num(p, "steps", (double)s->phases[i].steps))
			goto out;
	}
	if (!(arr = cJSON_AddArrayToObject(o, "clients")))
		goto out;
	for (int i = 0; i < s->n_clients; i++) {
		const coord_client *c = &s->clients[i];
		cJSON *p = cJSON_CreateObject();
		if (!p || !cJSON_AddItemToArray(arr, p)) {
			cJSON_Delete(p);
			goto out;
		}
		if (!cJSON_AddStringToObject(p, "key", c->key) ||
		    !add_num(p, "num_samples", (double)c->num_samples) ||
		    !add_num(p, "joined_round", c->joined_round) ||
		    !add_num(p, "last_round", c->last_round))
			goto out;
	}
	if (!(text = cJSON_Print(o)))
		goto out;
	rv = fl_write_atomic(path, text, strlen(text), 0644);
out:
	free(text);
	cJSON_Delete(o);
	return rv;
}

/* Number member of o into *x; FL_EFORMAT when missing or not a finite number. */
static int get_num(const cJSON *o, const char *k, double *x)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
		return FL_EFORMAT;
	*x = v->valuedouble;
	return 0;
}

/* A whole number in [0, hi) (hi at most 2^62, so the cast to long or int is
 * defined): counts and rounds in state.json. */
static int get_count(const cJSON *o, const char *k, double hi, double *x)
{
	if (get_num(o, k, x) || *x < 0 || *x >= hi || *x != floor(*x))
		return FL_EFORMAT;
	return 0;
}

static int get_str(const cJSON *o, const char *k, char *buf, size_t n)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	if (!cJSON_IsString(v) || strlen(v->valuestring) >= n)
		return FL_EFORMAT;
	strcpy(buf, v->valuestring);
	return 0;
}

int coord_state_load(coord_state *s, const char *run_dir)
{
	char path[PATH_MAX];
	char *text = NULL;
	size_t len;
	cJSON *o = NULL;
	const cJSON *arr, *it, *done;
	double x;
	int rv;

	coord_state_init(s);
	if ((rv = join_path(path, sizeof path, run_dir, "state.json")) != 0)
		return rv;
	if ((rv = fl_read_file(path, STATE_MAX, &text, &len)) != 0)
		return rv;
	rv = FL_EFORMAT;
	if (!(o = cJSON_ParseWithLength(text, len)) || !cJSON_IsObject(o))
		goto fail;
	if (get_str(o, "run_id", s->run_id, sizeof s->run_id) || !s->run_id[0])
		goto fail;
	if (get_num(o, "round", &x) || x < 0 || x > INT_MAX || x != floor(x))
		goto fail;
	s->round = (int)x;
	done = cJSON_GetObjectItemCaseSensitive(o, "done");
	if (!cJSON_IsBool(done))
		goto fail;
	s->done = cJSON_IsTrue(done);
	if (get_str(o, "reason", s->reason, sizeof s->reason))
		goto fail;
	if (get_count(o, "retries", 0x1p62, &x))
		goto fail;
	s->retries = (long)x;
	if (get_num(o, "client_eps_max", &s->client_eps_max))
		goto fail;
	arr = cJSON_GetObjectItemCaseSensitive(o, "accountant");
	if (!cJSON_IsArray(arr))
		goto fail;
	cJSON_ArrayForEach(it, arr)
	{
		double sigma, q, steps;
		if (get_num(it, "sigma", &sigma) || get_num(it, "q", &q) ||
		    get_count(it, "steps", 0x1p62, &steps) || sigma < 0 || q < 0 || q > 1)
			goto fail;
		/* appended without merging: the history is kept as it was saved */
		if (s->n_phases == s->cap_phases) {
			int nc = s->cap_phases ? s->cap_phases * 2 : 8;
			coord_phase *nb = realloc(s->phases, (size_t)nc * sizeof *nb);
			if (!nb) {
				rv = FL_ENOMEM;
				goto fail;
			}
			s->phases = nb;
			s->cap_phases = nc;
		}
		s->phases[s->n_phases++] = (coord_phase){sigma, q, (long)steps};
	}
	arr = cJSON_GetObjectItemCaseSensitive(o, "clients");
	if (!cJSON_IsArray(arr))
		goto fail;
	cJSON_ArrayForEach(it, arr)
	{
		char key[COORD_KEY_HEX_MAX];
		double ns, jr, lr;
		int idx;
		if (get_str(it, "key", key, sizeof key) ||
		    get_count(it, "num_samples", 0x1p62, &ns) ||
		    get_count(it, "joined_round", (double)INT_MAX + 1, &jr) ||
		    get_count(it, "last_round", (double)INT_MAX + 1, &lr))
			goto fail;
		if ((rv = coord_state_add_client(s, key, (long)ns, (int)jr, &idx)) != 0)
			goto fail;
		s->clients[idx].last_round = (int)lr;
		rv = FL_EFORMAT;
	}
	cJSON_Delete(o);
	free(text);
	return 0;
fail:
	cJSON_Delete(o);
	free(text);
	coord_state_fini(s);
	return rv;
}

int coord_global_path(const char *run_dir, int round, char *buf, size_t n)
{
	if (snprintf(buf, n, "%s/global/round-%06d.safetensors", run_dir, round) >= (int)n)
		return FL_EINVAL;
	return 0;
}

/* Round of one metrics line, or -1 when it has none. */
static int line_round(const char *line, size_t len)
{
	cJSON *o = cJSON_ParseWithLength(line, len);
	const cJSON *r;
	int round = -1;

	if (o && (r = cJSON_GetObjectItemCaseSensitive(o, "round")) && cJSON_IsNumber(r))
		round = (int)r->valuedouble;
	cJSON_Delete(o);
	return round;
}

/* Rebuilds metrics.jsonl from the lines whose round is <= keep_max, plus
 * `extra` (may be NULL). Rewrites only when something changes or extra is
 * given. */
static int metrics_rewrite(const char *run_dir, int keep_max, const char *extra)
{
	char path[PATH_MAX];
	char *text = NULL, *out = NULL;
	size_t len = 0, olen = 0, elen = extra ? strlen(extra) : 0;
	int dropped = 0, rv;

	if ((rv = join_path(path, sizeof path, run_dir, "metrics.jsonl")) != 0)
		return rv;
	rv = fl_read_file(path, METRICS_MAX, &text, &len);
	if (rv == FL_ENOENT) {
		text = NULL;
		len = 0;
	} else if (rv) {
		return rv;
	}
	if (!(out = malloc(len + elen + 2))) {
		free(text);
		return FL_ENOMEM;
	}
	for (size_t i = 0; i < len;) {
		size_t j = i;
		while (j < len && text[j] != '\n')
			j++;
		if (j > i) {
			int r = line_round(text + i, j - i);
			/* a torn or foreign line (r < 0) cannot be attributed: drop it */
			if (r >= 0 && r <= keep_max) {
				memcpy(out + olen, text + i, j - i);
				olen += j - i;
				out[olen++] = '\n';
			} else {
				dropped++;
			}
		}
		i = j + 1;
	}
	if (extra) {
		memcpy(out + olen, extra, elen);
		olen += elen;
		out[olen++] = '\n';
	}
	rv = 0;
	if (extra || dropped)
		rv = fl_write_atomic(path, out, olen, 0644);
	if (dropped && !rv)
		fl_log(FL_LOG_INFO, "coord",
		       "metrics.jsonl: dropped %d line(s) of uncommitted rounds", dropped);
	free(out);
	free(text);
	return rv;
}

int coord_metrics_append(const char *run_dir, int round, const char *line)
{
	if (!line || strchr(line, '\n'))
		return FL_EINVAL;
	return metrics_rewrite(run_dir, round - 1, line);
}

int coord_metrics_trim(const char *run_dir, int last_committed)
{
	return metrics_rewrite(run_dir, last_committed, NULL);
}

int coord_metrics_count(const char *run_dir, int *lines, int *last_round)
{
	char path[PATH_MAX];
	char *text = NULL;
	size_t len = 0;
	int rv;

	*lines = 0;
	*last_round = -1;
	if ((rv = join_path(path, sizeof path, run_dir, "metrics.jsonl")) != 0)
		return rv;
	if ((rv = fl_read_file(path, METRICS_MAX, &text, &len)) != 0)
		return rv;
	for (size_t i = 0; i < len;) {
		size_t j = i;
		while (j < len && text[j] != '\n')
			j++;
		if (j > i) {
			(*lines)++;
			*last_round = line_round(text + i, j - i);
		}
		i = j + 1;
	}
	free(text);
	return 0;
}

/* ---------------------------------------------------------------- nonce log */

int coord_nonce_log_open(const char *run_dir, int *fd)
{
	char path[4096];
	int rv;

	*fd = -1;
	if ((rv = join_path(path, sizeof path, run_dir, "nonces.log")) != 0)
		return rv;
	*fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (*fd < 0) {
		fl_log(FL_LOG_ERROR, "rundir", "cannot open %s: %s", path, strerror(errno));
		return FL_EIO;
	}
	return 0;
}

int coord_nonce_log_append(int fd, int round, const unsigned char nonce[COORD_NONCE_BYTES])
{
	unsigned char rec[COORD_NONCE_RECORD];
	uint32_t r = (uint32_t)round;
	ssize_t k;

	for (int i = 0; i < 4; i++)
		rec[i] = (unsigned char)(r >> (8 * i));
	memcpy(rec + 4, nonce, COORD_NONCE_BYTES);
	/* one write of O_APPEND: records of concurrent Submits do not interleave */
	do
		k = write(fd, rec, sizeof rec);
	while (k < 0 && errno == EINTR);
	if (k != (ssize_t)sizeof rec)
		return FL_EIO;
	return fdatasync(fd) == 0 ? 0 : FL_EIO;
}

int coord_nonce_log_load(int fd, int round, int (*fn)(void *arg, const unsigned char *nonce),
                         void *arg, int *n)
{
	unsigned char buf[COORD_NONCE_RECORD * 256];
	off_t off = 0;
	int count = 0, rv = 0;

	for (;;) {
		ssize_t k = pread(fd, buf, sizeof buf, off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			rv = FL_EIO;
			break;
		}
		size_t whole = (size_t)k / COORD_NONCE_RECORD * COORD_NONCE_RECORD;
		for (size_t p = 0; p < whole && !rv; p += COORD_NONCE_RECORD) {
			uint32_t r = 0;
			for (int i = 0; i < 4; i++)
				r |= (uint32_t)buf[p + i] << (8 * i);
			if (r != (uint32_t)round)
				continue;
			if ((rv = fn(arg, buf + p + 4)) == 0)
				count++;
		}
		if (rv || whole < sizeof buf) /* end of file (a torn record is ignored) */
			break;
		off += (off_t)whole;
	}
	if (n)
		*n = count;
	return rv;
}

int coord_nonce_log_reset(int fd)
{
	if (ftruncate(fd, 0) != 0 || fsync(fd) != 0)
		return FL_EIO;
	return 0;
}
