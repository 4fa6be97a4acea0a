/*
 * client/session.c — the client's session with the coordinator (see
 * client/session.h): Hello/Welcome with key pinning, GetTask long polls,
 * local training through model/task.h, signed Submits, reconnects, and the
 * client's own DP accountant.
 *
 * One REQ socket, one request at a time. nng's REQ redials in the background
 * and resends a pending request on a new connection, so a coordinator restart
 * looks like a slow reply; a pipe-removal callback counts dropped connections
 * (reported in the stats).
 *
 * Rounds: GetTask carries the last round this client was acknowledged for;
 * the coordinator hands out the open round only to a selected client below
 * it. A Wait whose committed round is below our acknowledged round means that
 * round is being retried (no quorum) or re-run after a restart: the client
 * lowers its counter to the committed round and trains the round again if it
 * is selected; the coordinator never hands the same attempt out twice.
 *
 * Test hook: with FEDLORA_CAPTURE_SUBMIT=PATH in the environment, every sealed
 * Submit (the signed envelope, exactly the bytes sent) is also written to PATH
 * (mode 0600, replaced each round), so tests can replay it
 * (tests/replay_restart_test.sh). It carries no secret: the envelope is what
 * any eavesdropper on a plain tcp:// link sees.
 */
#include "client/session.h"
#include "client/deadline.h"
#include "client/secagg_client.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <sodium.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/net.h"
#include "core/st_folder.h"
#include "core/wire.h"
#include "lora/adapter.h"
#include "model/task.h"
#include "privacy/accountant.h"
#include "privacy/acct.h"
#include "privacy/noise.h"
#include "privacy/sign.h"
#include "tokenizer/model_tok.h"

#define CLIENT_VERSION        "fedlora-0.1.0"
#define CLIENT_HELLO_MS       15000 /* Hello reply timeout */
#define CLIENT_SUBMIT_MS      60000 /* Submit reply timeout (verification, aggregation) */
#define CLIENT_SUBMIT_TRIES   5     /* sends of one sealed Submit before giving up on it */
#define CLIENT_BACKOFF_MIN_MS 100
#define CLIENT_BACKOFF_MAX_MS 2000
#define CLIENT_WAIT_MAX_MS    2000 /* cap on a Wait's retry_after */
#define CLIENT_FINAL_GRACE_S  15.0 /* silence after the last round's Ack that means done */
#define CLIENT_STR_MAX        512

/* Outcomes of one step of the loop besides FL_E* codes. */
enum { STEP_OK = 0, STEP_DONE = 1, STEP_ENOUGH = 2 };

typedef struct session {
	const client_opts *o;
	priv_key key;
	int have_pin;
	uint8_t coord_pk[PRIV_PK_BYTES];
	nng_socket sock;
	int sock_open;
	size_t recv_max;
	atomic_uint disconnects; /* pipes removed (connection lost) */

	char run_id[FL_RUN_ID_MAX + 1];
	int registered;
	uint64_t total_rounds, acked_round, failed_round;

	/* the task and the spec it was opened with */
	model_task *task;
	model_task_opts topts;
	char spec_task[32], spec_targets[CLIENT_STR_MAX];
	char tok_hash[2 * 32 + 1]; /* lm: hex fl_tok_hash of the base tokenizer, for Hello */
	int tok_bytes; /* lm: that tokenizer is the byte-level one (no tokenizer.json) */
	char base_hash[2 * 32 + 1]; /* lm: fl_st_folder_hash of base_dir, hex, once */
	lora_adapter *ad;           /* receives the global, trained in place */
	priv_noise *noise;

	priv_phase phases[CLIENT_MAX_PHASES];
	int n_phases;
	double epsilon, delta;
	priv_acct acct; /* the accountant of epsilon (the run's, or --accountant) */
	/* history read from state_path, restored when its run is joined */
	char saved_run[FL_RUN_ID_MAX + 1];
	priv_phase *saved;
	int n_saved;
	double saved_delta;
	priv_acct_kind saved_kind;
	double saved_eps_error;

	client_stats st;
	double last_submit_s; /* how long the last Submit took to be answered */
	/* a round skipped for its deadline: that attempt (round, round_seed) is
	 * not trained again when handed out once more before skip_until */
	uint64_t skip_round, skip_seed;
	double skip_until;
	double last_reply; /* monotonic seconds */
	int backoff_ms;
} session;

void client_opts_default(client_opts *o)
{
	memset(o, 0, sizeof *o);
	o->task = "linreg";
	o->device = "cpu";
	o->poll_timeout_ms = 30000;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static void backoff(session *s)
{
	sleep_ms(s->backoff_ms);
	s->backoff_ms *= 2;
	if (s->backoff_ms > CLIENT_BACKOFF_MAX_MS)
		s->backoff_ms = CLIENT_BACKOFF_MAX_MS;
}

static void emit(session *s, client_event *ev)
{
	ev->run_id = s->run_id;
	if (s->o->on_event)
		s->o->on_event(ev, s->o->arg);
}

/* Logs a fatal reason at error level and keeps it as the session's
 * stop_reason (client_stats), which `fedlora client` prints last. */
static void stop_because(session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void stop_because(session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->st.stop_reason, sizeof s->st.stop_reason, fmt, ap);
	va_end(ap);
	fl_log(FL_LOG_ERROR, "client", "%s", s->st.stop_reason);
}

static void emit_retry(session *s, int code, const char *text)
{
	client_event ev = {.kind = CLIENT_EV_RETRY, .code = code, .text = text};
	emit(s, &ev);
}

static void on_pipe_removed(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	session *s = arg;
	(void)p;
	(void)ev;
	atomic_fetch_add(&s->disconnects, 1);
}

/* A call's reply timeout, shortened so that give_up_s is honoured. */
static int clamp_timeout(const session *s, int ms)
{
	double left;
	if (s->o->give_up_s <= 0)
		return ms;
	left = s->o->give_up_s - (mono_s() - s->last_reply);
	if (left < 0.05)
		left = 0.05;
	return left * 1000 < ms ? (int)(left * 1000) : ms;
}

static void report_request(session *s, uint32_t type, uint32_t reply, double sec, int rc,
                           size_t sent, size_t received)
{
	if (s->o->on_request)
		s->o->on_request(type, reply, sec, rc, sent, received, s->o->arg);
}

/* Seals body, sends it, waits up to timeout_ms, opens and verifies the reply
 * (against the pinned coordinator key once there is one). *sent gets the
 * envelope's size. */
static int call(session *s, const ProtobufCMessage *body, uint32_t type, int timeout_ms,
                fl_wire_msg *rep, size_t *sent)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	nng_msg *r = NULL;
	int rv;

	memset(rep, 0, sizeof *rep);
	if ((rv = fl_wire_seal(body, type, &s->key, &buf, &len)) != 0)
		return rv;
	if (sent)
		*sent = len;
	nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, clamp_timeout(s, timeout_ms));
	/* a REQ send waits for a connection: bounded the same way */
	nng_socket_set_ms(s->sock, NNG_OPT_SENDTIMEO, clamp_timeout(s, timeout_ms));
	double t0 = mono_s();
	rv = fl_net_call(s->sock, buf, len, &r);
	free(buf);
	if (rv != 0) {
		report_request(s, type, 0, mono_s() - t0, rv, len, 0);
		return rv;
	}
	s->last_reply = mono_s();
	size_t received = nng_msg_len(r);
	rv = fl_wire_open_msg(r, s->recv_max, s->have_pin ? s->coord_pk : NULL, rep);
	nng_msg_free(r);
	report_request(s, type, rep->type, mono_s() - t0, rv, len, received);
	if (rv != 0)
		fl_log(FL_LOG_WARN, "client", "reply from the coordinator refused: %s",
		       fl_strerror(rv));
	return rv;
}

_Static_assert(sizeof(((client_dp_state *)0)->run_id) == FL_RUN_ID_MAX + 1,
               "client_dp_state.run_id holds a run id");

int client_dp_state_read(const char *path, client_dp_state *st)
{
	cJSON *o = NULL, *ph, *it;
	char *text = NULL;
	long n;
	int rv = FL_EFORMAT;
	FILE *f = fopen(path, "r");

	memset(st, 0, sizeof *st);
	if (!f)
		return errno == ENOENT ? 0 : FL_EIO;
	text = malloc(CLIENT_STATE_MAX_BYTES);
	n = text ? (long)fread(text, 1, CLIENT_STATE_MAX_BYTES - 1, f) : -1;
	fclose(f);
	if (n < 0) {
		free(text);
		return FL_ENOMEM;
	}
	text[n] = 0;
	o = cJSON_Parse(text);
	free(text);
	if (!o)
		goto done;
	it = cJSON_GetObjectItemCaseSensitive(o, "run_id");
	ph = cJSON_GetObjectItemCaseSensitive(o, "phases");
	if (!cJSON_IsString(it) || fl_wire_run_id_valid(it->valuestring) != 0 ||
	    !cJSON_IsArray(ph) || cJSON_GetArraySize(ph) > CLIENT_MAX_PHASES)
		goto done;
	snprintf(st->run_id, sizeof st->run_id, "%s", it->valuestring);
	it = cJSON_GetObjectItemCaseSensitive(o, "delta");
	st->delta = cJSON_IsNumber(it) ? it->valuedouble : 0;
	/* absent in files of older clients: rdp */
	it = cJSON_GetObjectItemCaseSensitive(o, "accountant");
	st->kind = PRIV_ACCT_RDP;
	if (it && (!cJSON_IsString(it) || priv_acct_parse(it->valuestring, &st->kind) != 0))
		goto done;
	it = cJSON_GetObjectItemCaseSensitive(o, "eps_error");
	st->eps_error = cJSON_IsNumber(it) ? it->valuedouble : 0;
	st->phases = calloc(cJSON_GetArraySize(ph) + 1, sizeof *st->phases);
	if (!st->phases) {
		rv = FL_ENOMEM;
		goto done;
	}
	cJSON_ArrayForEach(it, ph)
	{
		cJSON *sg = cJSON_GetObjectItemCaseSensitive(it, "sigma");
		cJSON *q = cJSON_GetObjectItemCaseSensitive(it, "q");
		cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "steps");
		if (!cJSON_IsNumber(sg) || !cJSON_IsNumber(q) || !cJSON_IsNumber(t) ||
		    !(sg->valuedouble >= 0) || !(q->valuedouble >= 0 && q->valuedouble <= 1) ||
		    !(t->valuedouble >= 0 && t->valuedouble < 1e15))
			goto done;
		st->phases[st->n++] =
		    (priv_phase){sg->valuedouble, q->valuedouble, (long)t->valuedouble};
	}
	rv = 0;
done:
	cJSON_Delete(o);
	if (rv) {
		client_dp_state_fini(st);
		if (rv == FL_EFORMAT)
			fl_log(FL_LOG_ERROR, "client",
			       "state file %s is malformed; remove it to start a new privacy "
			       "history",
			       path);
	}
	return rv;
}

void client_dp_state_fini(client_dp_state *st)
{
	free(st->phases);
	memset(st, 0, sizeof *st);
}

/* Reads the accountant history of state_path (absent: nothing to restore). */
static int state_load(session *s, const char *path)
{
	client_dp_state st;
	int rv = client_dp_state_read(path, &st);
	if (rv)
		return rv;
	snprintf(s->saved_run, sizeof s->saved_run, "%s", st.run_id);
	s->saved_delta = st.delta;
	s->saved_kind = st.kind;
	s->saved_eps_error = st.eps_error;
	s->saved = st.phases;
	s->n_saved = st.n;
	return 0;
}

/* Writes the accountant history to state_path atomically, mode 0600. */
static int state_save(session *s)
{
	const char *path = s->o->state_path;
	cJSON *o = NULL, *ph;
	char *text = NULL;
	int rv = FL_ENOMEM;

	if (!path)
		return 0;
	o = cJSON_CreateObject();
	ph = cJSON_AddArrayToObject(o, "phases");
	if (!o || !ph || !cJSON_AddStringToObject(o, "run_id", s->run_id) ||
	    !cJSON_AddNumberToObject(o, "delta", s->delta) ||
	    !cJSON_AddStringToObject(o, "accountant", priv_acct_name(s->acct.kind)) ||
	    !cJSON_AddNumberToObject(o, "eps_error", s->acct.eps_error) ||
	    !cJSON_AddNumberToObject(o, "epsilon", isfinite(s->epsilon) ? s->epsilon : -1))
		goto done;
	for (int i = 0; i < s->n_phases; i++) {
		cJSON *p = cJSON_CreateObject();
		if (!p)
			goto done;
		cJSON_AddItemToArray(ph, p);
		if (!cJSON_AddNumberToObject(p, "sigma", s->phases[i].sigma) ||
		    !cJSON_AddNumberToObject(p, "q", s->phases[i].q) ||
		    !cJSON_AddNumberToObject(p, "steps", (double)s->phases[i].steps))
			goto done;
	}
	text = cJSON_Print(o);
	if (!text)
		goto done;
	rv = fl_write_atomic(path, text, strlen(text), 0600);
done:
	if (rv)
		fl_log(FL_LOG_WARN, "client", "cannot write state file %s: %s", path,
		       fl_strerror(rv));
	free(text);
	cJSON_Delete(o);
	return rv;
}

/* Resets everything that belongs to one run; restores the saved privacy
 * history when it belongs to this run. */
static void new_run(session *s, const char *run_id)
{
	snprintf(s->run_id, sizeof s->run_id, "%s", run_id);
	s->acked_round = s->failed_round = 0;
	s->n_phases = 0;
	s->epsilon = 0;
	if (s->n_saved && run_id[0] && !strcmp(run_id, s->saved_run)) {
		memcpy(s->phases, s->saved, s->n_saved * sizeof *s->phases);
		s->n_phases = s->n_saved;
		s->delta = s->saved_delta;
		priv_acct_kind k = s->saved_kind;
		if (s->o->accountant)
			priv_acct_parse(s->o->accountant, &k); /* checked in client_run */
		priv_acct_fini(&s->acct);
		priv_acct_init(&s->acct, k, s->saved_eps_error);
		if (s->delta > 0 && s->delta < 1) {
			priv_acct_eps r;
			s->epsilon =
			    priv_acct_epsilon(&s->acct, s->phases, s->n_phases, s->delta, &r) == 0
			        ? r.epsilon
			        : INFINITY;
		}
		fl_log(FL_LOG_INFO, "client",
		       "restored the privacy history of run %s: %d phase(s), epsilon %.4g (%s)",
		       run_id, s->n_phases, s->epsilon, priv_acct_name(s->acct.kind));
	}
}

/* Opens (or keeps) the task for the run's model spec. */
/* lm: the base weights must be the coordinator's (Welcome's base_hash,
 * fl_st_folder_hash of its base folder: the tensors in name order, the same
 * for one model.safetensors and for shards): LoRA updates trained on other
 * weights would be averaged as if they fitted. The folder is hashed once per
 * session. A coordinator that sent no hash is not checked. Returns 0 or
 * FL_ESHAPE / the loader's error with a stop reason. */
static int check_base(session *s, const Fedlora__ModelSpec *sp)
{
	char err[FL_ST_FOLDER_ERR] = "";
	fl_st_folder *fo = NULL;
	uint8_t h[FL_ST_HASH_BYTES];
	int rv;

	if (!sp->base_hash || !*sp->base_hash || !s->o->base_dir || !sp->task ||
	    strcmp(sp->task, "lm"))
		return 0;
	if (!s->base_hash[0]) {
		if ((rv = fl_st_folder_open(&fo, s->o->base_dir, err, sizeof err)) == 0) {
			rv = fl_st_folder_hash(fo, h);
			fl_st_folder_close(fo);
		}
		if (rv != 0) {
			stop_because(s, "cannot read the base weights in %s: %s", s->o->base_dir,
			             err[0] ? err : fl_strerror(rv));
			return rv;
		}
		sodium_bin2hex(s->base_hash, sizeof s->base_hash, h, sizeof h);
	}
	if (strcmp(s->base_hash, sp->base_hash)) {
		stop_because(s,
		             "base weights mismatch: the coordinator's %s has weights hash %.8s, "
		             "%s has %.8s",
		             sp->base_model ? sp->base_model : "base", sp->base_hash,
		             s->o->base_dir, s->base_hash);
		return FL_ESHAPE;
	}
	return 0;
}

static int open_task(session *s, const Fedlora__ModelSpec *sp)
{
	const client_opts *o = s->o;
	model_task_opts t;
	int rv;

	model_task_opts_default(&t);
	snprintf(s->spec_task, sizeof s->spec_task, "%s", sp->task ? sp->task : "");
	snprintf(s->spec_targets, sizeof s->spec_targets, "%s",
	         sp->lora_targets && *sp->lora_targets ? sp->lora_targets : t.lora_targets);
	t.task = s->spec_task;
	t.seed = o->have_seed ? o->data_seed : sp->seed;
	t.client_index = o->client_index;
	t.num_clients = (int)sp->num_clients;
	t.rank = (int)sp->rank;
	t.alpha = sp->alpha;
	if (sp->linreg_layers)
		t.linreg_layers = (int)sp->linreg_layers;
	if (sp->linreg_dim)
		t.linreg_dim = (int)sp->linreg_dim;
	if (sp->linreg_samples)
		t.linreg_samples = (int)sp->linreg_samples;
	if (sp->seq_len)
		t.seq_len = (int)sp->seq_len;
	t.base_dir = o->base_dir;
	t.data = o->data;
	t.lora_targets = s->spec_targets;
	t.device = o->device ? o->device : "cpu";
	t.grad_checkpoint = o->grad_checkpoint;
	if (sp->rank < 1 || sp->rank > 4096 || !(sp->alpha > 0) || !isfinite(sp->alpha))
		return FL_EFORMAT;

	if (s->task && t.seed == s->topts.seed && t.rank == s->topts.rank &&
	    t.alpha == s->topts.alpha && t.num_clients == s->topts.num_clients &&
	    t.linreg_layers == s->topts.linreg_layers && t.linreg_dim == s->topts.linreg_dim &&
	    t.linreg_samples == s->topts.linreg_samples && t.seq_len == s->topts.seq_len)
		return 0; /* same model as before (a reconnect) */
	lora_adapter_free(s->ad);
	model_task_close(s->task);
	s->ad = NULL;
	s->task = NULL;
	if ((rv = model_task_open(&s->task, &t)) != 0) {
		fl_log(FL_LOG_ERROR, "client", "cannot open task '%s' (client %d): %s", t.task,
		       t.client_index, fl_strerror(rv));
		return rv;
	}
	if ((rv = model_task_adapter_new(s->task, 0, &s->ad)) != 0)
		return rv;
	s->topts = t;
	fl_log(FL_LOG_INFO, "client", "task %s ready: %ld training examples, rank %d", t.task,
	       model_task_num_samples(s->task), t.rank);
	return 0;
}

/* Hello -> Welcome. Returns 0 when registered, a fatal code (FL_EKEY,
 * FL_EINVAL, task errors) or a transient one (retried by the caller). */
static int do_hello(session *s, int *fatal)
{
	Fedlora__Hello h = FEDLORA__HELLO__INIT;
	Fedlora__Capabilities caps = FEDLORA__CAPABILITIES__INIT;
	fl_wire_msg rep;
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	int rv;

	*fatal = 0;
	h.run_id = s->run_id;
	h.client_key.data = s->key.pk;
	h.client_key.len = PRIV_PK_BYTES;
	h.software_version = CLIENT_VERSION;
	caps.device = (char *)(s->o->device ? s->o->device : "cpu");
	caps.memory_bytes = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
	h.caps = &caps;
	h.num_samples = s->task ? model_task_num_samples(s->task) : 0;
	h.client_index = s->o->client_index;
	if (!s->tok_hash[0] && s->o->base_dir && !strcmp(s->o->task, "lm")) {
		fl_tokenizer *tk = NULL;
		char e[256];
		if (fl_tok_load(s->o->base_dir, &tk, e, sizeof e) == 0) {
			fl_tok_hash_hex(tk, s->tok_hash);
			s->tok_bytes = fl_tok_get_kind(tk) == FL_TOK_BYTES;
		}
		fl_tok_free(tk);
	}
	h.tokenizer_hash = s->tok_hash;

	rv = call(s, &h.base, FL_MSG_HELLO, CLIENT_HELLO_MS, &rep, NULL);
	if (rv == FL_EKEY && s->have_pin) {
		stop_because(s,
		             "the coordinator answered with a different key than the pinned one");
		*fatal = 1;
		return FL_EKEY;
	}
	if (rv != 0)
		return rv;
	if (rep.type == FL_MSG_REJECT) {
		Fedlora__Reject *rj = (Fedlora__Reject *)rep.body;
		rv = rj->code < 0 && rj->code > -100 ? rj->code : FL_EFORMAT;
		fl_log(FL_LOG_WARN, "client", "Hello refused: %s (%s)", fl_reason_name(rv),
		       rj->text ? rj->text : "");
		s->st.rejects++;
		if (rv == FL_EKEY) {
			stop_because(
			    s, "the coordinator does not admit this client's key (allow list?)");
			*fatal = 1;
		} else if (rv == FL_ESTALE) {
			new_run(s, ""); /* our run is gone: join the current one */
		} else if (rv == FL_ESHAPE && rj->text && strstr(rj->text, "tokenizer mismatch")) {
			stop_because(s, "%s (%s%s)", rj->text, s->o->base_dir ? s->o->base_dir : "",
			             s->tok_bytes ? ": no tokenizer.json, so bytes"
			                          : "/tokenizer.json");
			*fatal = 1;
		}
		goto done;
	}
	if (rep.type != FL_MSG_WELCOME) {
		rv = FL_EFORMAT;
		goto done;
	}
	{
		Fedlora__Welcome *w = (Fedlora__Welcome *)rep.body;
		if (fl_wire_run_id_valid(w->run_id) != 0 || !w->spec) {
			rv = FL_EFORMAT;
			goto done;
		}
		if (!w->spec->task || strcmp(w->spec->task, s->o->task)) {
			stop_because(s, "the run's task is '%s', this client has '%s'",
			             w->spec->task ? w->spec->task : "", s->o->task);
			*fatal = 1;
			rv = FL_EINVAL;
			goto done;
		}
		if (!s->have_pin) {
			char hex[PRIV_PK_HEX];
			memcpy(s->coord_pk, rep.signer, PRIV_PK_BYTES);
			s->have_pin = 1;
			priv_pk_to_hex(s->coord_pk, hex);
			fl_log(FL_LOG_INFO, "client", "pinned coordinator key %.16s...", hex);
		}
		if (strcmp(w->run_id, s->run_id)) {
			if (s->run_id[0])
				fl_log(FL_LOG_INFO, "client", "new run %s (was %s)", w->run_id,
				       s->run_id);
			new_run(s, w->run_id);
		}
		if ((rv = check_base(s, w->spec)) != 0 || (rv = open_task(s, w->spec)) != 0) {
			*fatal = 1;
			goto done;
		}
		s->total_rounds = w->total_rounds;
		s->registered = 1;
		{
			client_event ev = {.kind = CLIENT_EV_WELCOME,
			                   .total_rounds = w->total_rounds,
			                   .committed_round = w->committed_round};
			emit(s, &ev);
		}
	}
done:
	fl_wire_msg_fini(&rep);
	return rv;
}

/* Adds a DP-SGD phase to the history and recomputes epsilon. */
static void account(session *s, double sigma, double q, long steps, double delta)
{
	priv_phase *last = s->n_phases ? &s->phases[s->n_phases - 1] : NULL;
	priv_acct_eps r = {0};
	double eps = INFINITY;
	if (steps <= 0)
		return;
	if (last && last->sigma == sigma && last->q == q)
		last->steps += steps;
	else if (s->n_phases < CLIENT_MAX_PHASES)
		s->phases[s->n_phases++] = (priv_phase){sigma, q, steps};
	else
		s->phases[s->n_phases - 1].steps += steps; /* bounded; conservative enough */
	s->delta = delta;
	if (priv_acct_epsilon(&s->acct, s->phases, s->n_phases, delta, &r) == 0)
		eps = r.epsilon;
	if (r.fallback)
		fl_log(FL_LOG_WARN, "client", "prv grid too large; epsilon is the rdp bound");
	s->epsilon = eps;
	state_save(s);
}

/* Sends one sealed Submit, resending the same bytes (same nonce) on
 * transport errors. */
static int send_submit(session *s, const uint8_t *buf, size_t len, fl_wire_msg *rep)
{
	int rv = FL_ENET;
	for (int i = 0; i < CLIENT_SUBMIT_TRIES; i++) {
		nng_msg *r = NULL;
		memset(rep, 0, sizeof *rep);
		nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, clamp_timeout(s, CLIENT_SUBMIT_MS));
		nng_socket_set_ms(s->sock, NNG_OPT_SENDTIMEO, clamp_timeout(s, CLIENT_SUBMIT_MS));
		double t0 = mono_s();
		rv = fl_net_call(s->sock, buf, len, &r);
		if (rv == 0) {
			s->last_reply = mono_s();
			size_t received = nng_msg_len(r);
			rv = fl_wire_open_msg(r, s->recv_max, s->coord_pk, rep);
			nng_msg_free(r);
			report_request(s, FL_MSG_SUBMIT, rep->type, mono_s() - t0, rv, len,
			               received);
			return rv;
		}
		report_request(s, FL_MSG_SUBMIT, 0, mono_s() - t0, rv, len, 0);
		fl_log(FL_LOG_WARN, "client", "submit: %s; resending", fl_strerror(rv));
		emit_retry(s, rv, "submit");
		backoff(s);
	}
	return rv;
}

/* FEDLORA_CAPTURE_SUBMIT test hook (see the top of this file). */
static void capture_submit(const uint8_t *buf, size_t len)
{
	const char *path = getenv("FEDLORA_CAPTURE_SUBMIT");
	int rv;
	if (!path || !*path)
		return;
	if ((rv = fl_write_atomic(path, buf, len, 0600)) != 0)
		fl_log(FL_LOG_WARN, "client", "FEDLORA_CAPTURE_SUBMIT: cannot write %s: %s", path,
		       fl_strerror(rv));
}

/* The accountant of this client's epsilon: --accountant, else the run's
 * (DpParams.accountant, 0 rdp / 1 prv; a coordinator without the field
 * sends 0). Switching resets only the memo: the history is the same.
 * FL_EFORMAT on an unknown accountant or a bad eps_error. */
static int choose_accountant(session *s, const Fedlora__DpParams *dp)
{
	priv_acct_kind k;
	double e = dp->eps_error;
	if (s->o->accountant) {
		if (priv_acct_parse(s->o->accountant, &k) != 0)
			return FL_EINVAL;
	} else if (dp->accountant == 0 || dp->accountant == 1) {
		k = dp->accountant ? PRIV_ACCT_PRV : PRIV_ACCT_RDP;
	} else {
		return FL_EFORMAT;
	}
	if (!(e >= 0 && e <= 1)) /* NaN too; 0: the default */
		return FL_EFORMAT;
	if (e == 0)
		e = PRIV_ACCT_EPS_ERROR_DEFAULT;
	if (k != s->acct.kind || e != s->acct.eps_error) {
		priv_acct_fini(&s->acct);
		priv_acct_init(&s->acct, k, e);
	}
	return 0;
}

/* A round whose deadline would pass before our Submit is out: nothing is
 * sent. A partial update (fewer local steps) is not sent either: FedAvg
 * weights updates by num_samples assuming equal local work, so a truncated
 * one would be silently under-weighted in effect; the round's quorum and
 * top-up selection already cope with a missing client. Returns 0. */
static int skip_round(session *s, const Fedlora__Task *t, const client_deadline *dl,
                      client_event *ev, int steps)
{
	fl_log(FL_LOG_WARN, "client",
	       "deadline passed, skipping round %llu (%d of %u steps, %llu ms)",
	       (unsigned long long)t->round, steps, t->train->local_steps,
	       (unsigned long long)t->deadline_ms);
	s->skip_round = t->round;
	s->skip_seed = t->train->round_seed;
	s->skip_until = dl->t_end;
	ev->accepted = 0;
	ev->code = FL_ETIMEOUT;
	ev->text = "deadline passed, round skipped";
	emit(s, ev);
	return 0;
}

/* Secure aggregation (Task.secagg): defined at the end of this file. */
static int secure_round(session *s, const Fedlora__Task *t, const lora_adapter *global,
                        const model_train_params *p, const model_train_result *res,
                        client_event *ev);

/* Trains the task's round and submits the result. */
static int do_task(session *s, const Fedlora__Task *t)
{
	const client_opts *o = s->o;
	Fedlora__Submit sub = FEDLORA__SUBMIT__INIT;
	Fedlora__TrainMetrics met = FEDLORA__TRAIN_METRICS__INIT;
	model_train_params p;
	model_train_result res;
	lora_adapter *honest_global = NULL; /* --attack only */
	fl_wire_tensors ts = {0};
	fl_wire_msg rep = {0};
	uint8_t nonce[FL_NONCE_BYTES], *buf = NULL;
	size_t len = 0;
	int rv, dp_mode, which, delay_ms;
	double t0, t_task = s->last_reply;
	client_deadline dl;
	client_event ev = {.kind = CLIENT_EV_ROUND, .round = t->round};

	if ((rv = fl_wire_check_task(t, s->run_id, s->acked_round)) != 0) {
		if (rv == FL_ESTALE && t->run_id && strcmp(t->run_id, s->run_id)) {
			s->registered = 0; /* another run: say Hello again */
			return 0;
		}
		if (rv == FL_ESTALE) { /* a round we already did: nothing to do */
			sleep_ms(CLIENT_BACKOFF_MIN_MS);
			return 0;
		}
		fl_log(FL_LOG_WARN, "client", "task of round %llu refused: %s",
		       (unsigned long long)t->round, fl_strerror(rv));
		return rv;
	}
	if (t->round == s->failed_round) {
		sleep_ms(CLIENT_BACKOFF_MIN_MS); /* training this round failed already */
		return 0;
	}
	if (t->round == s->skip_round && t->train && t->train->round_seed == s->skip_seed) {
		/* the attempt we skipped for its deadline: wait for it to close */
		double left = s->skip_until - mono_s();
		sleep_ms(left > 2.0 ? 2000 : left > 0.01 ? (int)(left * 1000) : 10);
		return 0;
	}
	dp_mode = (int)t->dp->mode;
	if (dp_mode < 0 || dp_mode > 2 || t->train->optimizer > 1) {
		fl_log(FL_LOG_WARN, "client", "task of round %llu: unknown dp mode or optimizer",
		       (unsigned long long)t->round);
		return FL_EFORMAT;
	}
	if (dp_mode == 1 && (rv = choose_accountant(s, t->dp)) != 0) {
		fl_log(FL_LOG_WARN, "client", "task of round %llu: unknown accountant",
		       (unsigned long long)t->round);
		return rv;
	}
	if ((rv = fl_wire_tensors_to_adapter(t->tensors, t->n_tensors, FL_WIRE_AB, s->ad)) != 0) {
		fl_log(FL_LOG_WARN, "client", "global adapter of round %llu refused: %s",
		       (unsigned long long)t->round, fl_strerror(rv));
		return rv;
	}
	memset(&p, 0, sizeof p);
	p.local_steps = (int)t->train->local_steps;
	p.batch_size = (int)t->train->batch_size;
	p.lr = t->train->lr;
	p.weight_decay = t->train->weight_decay;
	p.optimizer = (int)t->train->optimizer;
	p.train_a = t->train->train_a;
	p.round_seed = t->train->round_seed;
	if (dp_mode == 1) {
		p.dp_clip = t->dp->clip;
		p.dp_noise = t->dp->noise;
		p.dp_q = t->dp->q;
		if (!(p.dp_clip > 0) || !(t->dp->delta > 0 && t->dp->delta < 1)) {
			fl_log(FL_LOG_WARN, "client", "task of round %llu: bad DP parameters",
			       (unsigned long long)t->round);
			return FL_EFORMAT;
		}
	}
	if ((o->attack.kind != CLIENT_ATTACK_NONE || t->secagg) &&
	    (rv = lora_adapter_clone(&honest_global, s->ad)) != 0)
		return rv;
	/* Task.deadline_ms, counted from the Task's arrival; the reserve covers
	 * sealing and sending (the last Submit's round trip) */
	client_deadline_init(&dl, t_task, t->deadline_ms, 0.1 + s->last_submit_s);
	p.before_step = client_deadline_step;
	p.step_arg = &dl;
	t0 = mono_s();
	rv = model_task_train(s->task, s->ad, &p, dp_mode == 1 ? s->noise : NULL, &res);
	if (rv == 0 && honest_global && o->attack.kind != CLIENT_ATTACK_NONE)
		rv = client_attack_apply(&o->attack, s->ad, honest_global, p.train_a,
		                         p.round_seed ^ ((uint64_t)o->client_index << 32));
	if (rv == 0 && t->secagg) {
		ev.seconds = mono_s() - t0;
		if (dp_mode == 1)
			account(s, p.dp_noise, p.dp_q, res.dp_steps, t->dp->delta);
		rv = secure_round(s, t, honest_global, &p, &res, &ev);
		lora_adapter_free(honest_global);
		return rv;
	}
	lora_adapter_free(honest_global);
	ev.seconds = mono_s() - t0;
	if (dp_mode == 1) /* the steps taken count, even when nothing is sent */
		account(s, p.dp_noise, p.dp_q, res.dp_steps, t->dp->delta);
	if ((rv == FL_ETIMEOUT && dl.stopped) || (rv == 0 && client_deadline_passed(&dl, mono_s())))
		return skip_round(s, t, &dl, &ev, res.steps);
	if (rv != 0) {
		fl_log(FL_LOG_ERROR, "client", "training round %llu failed: %s",
		       (unsigned long long)t->round, fl_strerror(rv));
		s->failed_round = t->round;
		ev.accepted = 0;
		ev.code = rv;
		ev.text = "local training failed";
		emit(s, &ev);
		return 0;
	}

	which = p.train_a ? FL_WIRE_AB : FL_WIRE_B;
	rv = fl_wire_tensors_from_adapter(s->ad, which,
	                                  t->dtype_up >= FL_DTYPE_F32 && t->dtype_up <= FL_DTYPE_F16
	                                      ? (fl_dtype)t->dtype_up
	                                      : FL_DTYPE_F32,
	                                  &ts);
	if (rv != 0)
		goto done;
	fl_wire_nonce(nonce);
	sub.run_id = s->run_id;
	sub.round = t->round;
	sub.nonce.data = nonce;
	sub.nonce.len = FL_NONCE_BYTES;
	sub.num_samples = res.num_samples;
	sub.n_tensors = ts.n;
	sub.tensors = ts.t;
	met.train_loss = res.train_loss;
	met.eval_before = res.eval_before;
	met.eval_after = res.eval_after;
	met.steps = (uint32_t)res.steps;
	met.dp_steps = (uint32_t)res.dp_steps;
	met.epsilon = dp_mode == 1 ? s->epsilon : 0;
	met.delta = dp_mode == 1 ? s->delta : 0;
	met.tokens_per_s = res.tokens_per_s;
	met.seconds = ev.seconds;
	sub.metrics = &met;
	if ((rv = fl_wire_seal(&sub.base, FL_MSG_SUBMIT, &s->key, &buf, &len)) != 0)
		goto done;
	fl_wire_tensors_fini(&ts);
	if (client_deadline_passed(&dl, mono_s())) {
		rv = skip_round(s, t, &dl, &ev, res.steps);
		goto done;
	}
	capture_submit(buf, len);
	if ((delay_ms = client_deadline_test_submit_delay_ms()) > 0)
		sleep_ms(delay_ms); /* FEDLORA_DELAY_SUBMIT_MS: test-only slow uplink */

	ev.train_loss = res.train_loss;
	ev.eval_before = res.eval_before;
	ev.eval_after = res.eval_after;
	ev.epsilon = met.epsilon;
	ev.delta = met.delta;
	ev.accountant = priv_acct_name(s->acct.kind);
	ev.bytes_up = len;
	ev.total_rounds = s->total_rounds;
	s->st.rounds_trained++;

	t0 = mono_s();
	rv = send_submit(s, buf, len, &rep);
	s->last_submit_s = mono_s() - t0;
	if (rv != 0) {
		ev.code = rv;
		ev.text = "no reply to the submission";
	} else if (rep.type == FL_MSG_ACK) {
		Fedlora__Ack *a = (Fedlora__Ack *)rep.body;
		if (a->round != t->round || a->nonce.len != FL_NONCE_BYTES ||
		    memcmp(a->nonce.data, nonce, FL_NONCE_BYTES) ||
		    fl_wire_check_run(a->run_id, s->run_id) != 0) {
			ev.code = FL_ESTALE;
			ev.text = "acknowledgement for another submission";
		} else {
			ev.accepted = 1;
		}
	} else if (rep.type == FL_MSG_REJECT) {
		Fedlora__Reject *rj = (Fedlora__Reject *)rep.body;
		ev.code = rj->code < 0 && rj->code > -100 ? rj->code : FL_EFORMAT;
		ev.text = rj->text ? rj->text : "";
		s->st.rejects++;
		/* our own resend of an update that already arrived */
		if (ev.code == FL_EREPLAY)
			ev.accepted = 1;
		if (ev.code == FL_ECLOSED)
			fl_log(FL_LOG_WARN, "client", "round %llu closed before our update arrived",
			       (unsigned long long)t->round);
	} else {
		ev.code = FL_EFORMAT;
		ev.text = "unexpected reply to a submission";
	}
	if (ev.accepted) {
		s->acked_round = t->round;
		s->st.rounds_accepted++;
	}
	emit(s, &ev);
	rv = 0;
	if (o->max_rounds > 0 && s->st.rounds_trained >= o->max_rounds)
		rv = STEP_ENOUGH;
done:
	fl_wire_msg_fini(&rep);
	fl_wire_tensors_fini(&ts);
	free(buf);
	return rv;
}

/* One GetTask exchange and whatever it leads to. */
static int do_get_task(session *s)
{
	Fedlora__GetTask g = FEDLORA__GET_TASK__INIT;
	fl_wire_msg rep;
	int rv;

	g.run_id = s->run_id;
	g.last_round_seen = s->acked_round;
	g.max_wait_ms = (uint32_t)clamp_timeout(s, s->o->poll_timeout_ms);
	rv = call(s, &g.base, FL_MSG_GET_TASK, (int)g.max_wait_ms, &rep, NULL);
	if (rv != 0)
		return rv;
	switch (rep.type) {
	case FL_MSG_TASK:
		s->backoff_ms = CLIENT_BACKOFF_MIN_MS;
		rv = do_task(s, (Fedlora__Task *)rep.body);
		break;
	case FL_MSG_WAIT: {
		Fedlora__Wait *w = (Fedlora__Wait *)rep.body;
		int ms = (int)(w->retry_after_ms < CLIENT_WAIT_MAX_MS ? w->retry_after_ms
		                                                      : CLIENT_WAIT_MAX_MS);
		s->backoff_ms = CLIENT_BACKOFF_MIN_MS;
		if (w->run_id && *w->run_id && strcmp(w->run_id, s->run_id)) {
			s->registered = 0;
			break;
		}
		/* The last committed round is below the round we were acknowledged
		 * for: that round is still open, or being retried (no quorum), or
		 * re-run after a coordinator restart. Asking with the committed
		 * round gets us its task again only in the last two cases (the
		 * coordinator hands out one attempt once per client). */
		if (w->round < s->acked_round) {
			fl_log(FL_LOG_DEBUG, "client",
			       "round %llu not committed yet (last committed %llu); asking as of "
			       "the committed round",
			       (unsigned long long)s->acked_round, (unsigned long long)w->round);
			s->acked_round = w->round;
			s->failed_round = 0;
		}
		sleep_ms(ms > 10 ? ms : 10);
		break;
	}
	case FL_MSG_DONE: {
		Fedlora__Done *d = (Fedlora__Done *)rep.body;
		if (d->run_id && *d->run_id && strcmp(d->run_id, s->run_id)) {
			s->registered = 0;
			break;
		}
		s->st.final_round = d->final_round;
		{
			client_event ev = {.kind = CLIENT_EV_DONE, .round = d->final_round};
			emit(s, &ev);
		}
		rv = STEP_DONE;
		break;
	}
	case FL_MSG_REJECT: {
		Fedlora__Reject *rj = (Fedlora__Reject *)rep.body;
		int code = rj->code < 0 && rj->code > -100 ? rj->code : FL_EFORMAT;
		s->st.rejects++;
		fl_log(FL_LOG_INFO, "client", "GetTask refused: %s (%s)", fl_reason_name(code),
		       rj->text ? rj->text : "");
		if (code == FL_EKEY || code == FL_ESTALE)
			s->registered = 0; /* unknown to this coordinator (run): register again */
		else
			rv = code;
		break;
	}
	default:
		rv = FL_EFORMAT;
	}
	fl_wire_msg_fini(&rep);
	return rv;
}

int client_run(const client_opts *o, client_stats *st)
{
	session *s;
	fl_net_opts no;
	int rv, fatal = 0;

	if (!o || !o->url || !o->key_path || !o->task || o->client_index < 0 ||
	    o->poll_timeout_ms <= 0)
		return FL_EINVAL;
	s = calloc(1, sizeof *s);
	if (!s)
		return FL_ENOMEM;
	s->o = o;
	s->backoff_ms = CLIENT_BACKOFF_MIN_MS;
	priv_acct_init(&s->acct, PRIV_ACCT_RDP, 0);
	if (o->accountant && priv_acct_parse(o->accountant, &s->acct.kind) != 0) {
		free(s);
		return FL_EINVAL;
	}
	s->recv_max = o->recv_max ? o->recv_max : FL_NET_RECV_MAX_DEFAULT;
	atomic_init(&s->disconnects, 0);
	if ((rv = priv_key_load(&s->key, o->key_path)) != 0) {
		stop_because(s, "cannot load key %s: %s", o->key_path, fl_strerror(rv));
		goto out;
	}
	if (o->coordinator_pub) {
		if ((rv = priv_pub_load(s->coord_pk, o->coordinator_pub)) != 0) {
			stop_because(s, "cannot load coordinator key %s: %s (a .pub file)",
			             o->coordinator_pub, fl_strerror(rv));
			goto out;
		}
		s->have_pin = 1;
	}
	if (o->state_path && (rv = state_load(s, o->state_path)) != 0)
		goto out;
	if ((rv = priv_noise_new(&s->noise)) != 0)
		goto out;
	fl_net_opts_default(&no);
	no.recv_max = s->recv_max;
	no.tls_cert = o->tls_cert;
	no.tls_key = o->tls_key;
	no.tls_ca = o->tls_ca;
	no.dial_sync = 1; /* surfaces TLS/auth errors; a coordinator not up yet is fine */
	/* No REQ resend timer: every call has its own timeout and retry, and
	 * nng still resends a pending request at once when its connection drops
	 * (a coordinator restart). The timer would add nothing but cost: nng
	 * 1.5 keeps all timers of a process in one sorted list under one mutex,
	 * and a process with thousands of sessions (bench/load) then spends
	 * most of its time inserting into it (README, Load). */
	no.resend_ms = -1;
	if ((rv = fl_net_dial(&s->sock, o->url, &no)) != 0) {
		fl_log(FL_LOG_ERROR, "client", "cannot dial %s: %s", o->url, fl_strerror(rv));
		goto out;
	}
	s->sock_open = 1;
	nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, on_pipe_removed, s);
	s->last_reply = mono_s();

	for (;;) {
		/* The last round was acknowledged and the coordinator is gone: its
		 * Done was lost on the way (it exits once it has answered every
		 * client), so the run is over for us. */
		if (s->total_rounds > 0 && s->acked_round >= s->total_rounds &&
		    mono_s() - s->last_reply > CLIENT_FINAL_GRACE_S) {
			fl_log(FL_LOG_INFO, "client",
			       "last round %llu acknowledged and no reply for %.0f s: run finished",
			       (unsigned long long)s->acked_round, CLIENT_FINAL_GRACE_S);
			s->st.final_round = s->acked_round;
			{
				client_event ev = {.kind = CLIENT_EV_DONE, .round = s->acked_round};
				emit(s, &ev);
			}
			rv = 0;
			break;
		}
		if (o->give_up_s > 0 && mono_s() - s->last_reply > o->give_up_s) {
			fl_log(FL_LOG_ERROR, "client", "no reply from %s for %.0f s; giving up",
			       o->url, o->give_up_s);
			rv = FL_ETIMEOUT;
			break;
		}
		if (!s->registered) {
			rv = do_hello(s, &fatal);
			if (fatal)
				break;
			if (rv != 0) {
				emit_retry(s, rv, "hello");
				backoff(s);
				continue;
			}
			s->backoff_ms = CLIENT_BACKOFF_MIN_MS;
		}
		rv = do_get_task(s);
		if (rv == STEP_DONE || rv == STEP_ENOUGH) {
			rv = 0;
			break;
		}
		if (rv != 0) {
			if (rv != FL_ETIMEOUT)
				fl_log(FL_LOG_INFO, "client", "get task: %s; retrying",
				       fl_strerror(rv));
			emit_retry(s, rv, "get task");
			backoff(s);
		}
	}
out:
	s->st.epsilon = s->epsilon;
	s->st.reconnects = (int)atomic_load(&s->disconnects);
	if (st)
		*st = s->st;
	if (s->sock_open)
		nng_close(s->sock);
	priv_key_wipe(&s->key);
	priv_noise_free(s->noise);
	priv_acct_fini(&s->acct);
	lora_adapter_free(s->ad);
	model_task_close(s->task);
	free(s->saved);
	free(s);
	return rv;
}

/* ------------------------------------------------ secure aggregation */

/* sa_client_io.call: the session's signed request/reply. */
static int sa_call(void *arg, const ProtobufCMessage *body, uint32_t type, int timeout_ms,
                   fl_wire_msg *rep, size_t *sent)
{
	return call((session *)arg, body, type, timeout_ms, rep, sent);
}

/* Secure aggregation (Task.secagg): the phases of client/secagg_client.h
 * instead of a Submit; global is the Task's adapter, s->ad the trained one. */
static int secure_round(session *s, const Fedlora__Task *t, const lora_adapter *global,
                        const model_train_params *p, const model_train_result *res,
                        client_event *ev)
{
	Fedlora__TrainMetrics met = FEDLORA__TRAIN_METRICS__INIT;
	sa_client_outcome out;
	sa_client_io io = {.arg = s,
	                   .call = sa_call,
	                   .run_id = s->run_id,
	                   .key = &s->key,
	                   .peers = s->o->sa_peers,
	                   .client_index = s->o->client_index,
	                   .poll_timeout_ms = s->o->poll_timeout_ms};

	met.train_loss = res->train_loss;
	met.eval_before = res->eval_before;
	met.eval_after = res->eval_after;
	met.steps = (uint32_t)res->steps;
	met.dp_steps = (uint32_t)res->dp_steps;
	met.epsilon = t->dp->mode == 1 ? s->epsilon : 0;
	met.delta = t->dp->mode == 1 ? s->delta : 0;
	met.tokens_per_s = res->tokens_per_s;
	met.seconds = ev->seconds;
	sa_client_round(&io, t, global, s->ad, p->train_a, res->num_samples, &met, &out);
	s->st.rounds_trained++;
	ev->train_loss = res->train_loss;
	ev->eval_before = res->eval_before;
	ev->eval_after = res->eval_after;
	ev->epsilon = met.epsilon;
	ev->delta = met.delta;
	ev->bytes_up = out.bytes_up;
	ev->total_rounds = s->total_rounds;
	ev->accepted = out.accepted;
	ev->code = out.code;
	ev->text = out.text;
	if (out.accepted) {
		s->acked_round = t->round;
		s->st.rounds_accepted++;
	} else {
		s->st.rejects++;
		fl_log(FL_LOG_WARN, "client", "secure round %llu: %s (%s)",
		       (unsigned long long)t->round, out.text, fl_reason_name(out.code));
	}
	emit(s, ev);
	if (s->o->max_rounds > 0 && s->st.rounds_trained >= s->o->max_rounds)
		return STEP_ENOUGH;
	return 0;
}
