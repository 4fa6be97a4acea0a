/*
 * coordinator/coord.c — see coordinator/coord.h.
 *
 * Threads. The round engine runs on the thread that calls coord_run(). Every
 * request is handled on nng's callback threads by one of cfg.contexts
 * `coord_work` state machines (the pattern of nng's demo/async/server.c):
 *
 *   RECV --(request)--> handle --> SEND --> RECV
 *                          \--> PARK (a GetTask with nothing to hand out:
 *                               nng_sleep_aio for poll_timeout) --> SEND
 *
 * A parked GetTask is woken early (nng_aio_cancel, under the lock, while it is
 * surely parked) when a round opens or the run ends, and answered then. At
 * most half of the contexts park at once; beyond that GetTask gets Wait at
 * once, so Hellos and Submits always find a free context.
 *
 * Rounds. Select (uniform K of the registry; Poisson with q = K/registered
 * under client-level DP), open (a fresh aggregator and one signed Task
 * envelope, copied to every selected client), collect until all selected
 * reported or round_timeout passed, then commit if at least min_clients
 * reported. Otherwise the round is retried: the updates already folded stay
 * (they were trained on the same global) and the selection is topped up from
 * the clients that have not reported; the retry is logged and counted
 * (metrics "attempts", state.json "retries"). The registry only grows;
 * clients that missed an attempt's deadline or whose connection dropped are
 * "gone" (coordinator/gone.h) and left out of top-ups and selections until
 * they are back (metrics "gone_excluded", "gone"). An attempt opens only when
 * its kept reports plus its candidates can reach the quorum: if clients that
 * missed this round's deadline but sent a request since would make up the
 * difference they are selected again, otherwise the round waits for clients
 * (not an attempt). After max_attempts attempts of one round below the quorum
 * the run stops (state.json reason "quorum", a metrics line with "aborted").
 *
 * Known limits: the Task's deadline_ms is the full round timeout even for a
 * client that fetches it late; with
 * compute_bias = 1 (default) the aggregator keeps every client's factors.
 *
 * Locking. `mu` protects the round state and coord_state (registry, counters).
 * Verifying a Submit's signature, unpacking it and converting its tensors run
 * outside the lock; the fold into the aggregator runs under `agg_mu` only.
 * The engine closes a round by setting the phase to CLOSED (later Submits are
 * refused as round_closed) and then waits until no fold is in flight (`folding` == 0) before it
 * finishes the aggregation.
 *
 * Durability. The commit of round R is: global/round-R.safetensors, then the
 * metrics line, then state.json with round = R (coordinator/rundir.h). A
 * restart trims metrics lines of uncommitted rounds and re-runs round R+1.
 * Accepted nonces go to RUN/nonces.log (fdatasync) before the fold and Ack,
 * are reloaded when the round opens and are dropped after its commit, so a
 * replay stays a replay across a kill -9.
 *
 * Secure aggregation (--secure-agg): an attempt's phases run in
 * coordinator/secagg_round.h; the hooks (at the end of this file) hand it the
 * selection, answer SaUp and phase GetTasks, drive it from the engine and
 * commit its unmasked sum.
 *
 * Not here: the wire format (core/wire.h), socket setup and TLS (core/net.h),
 * the arithmetic of aggregation and DP noise (lora/aggregate.h), accounting
 * (privacy/accountant.h).
 */
#include "coordinator/coord.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>
#include <sodium.h>

#include "coordinator/crash.h"
#include "coordinator/gone.h"
#include "coordinator/robust_cfg.h"
#include "coordinator/rundir.h"
#include "coordinator/sample.h"
#include "coordinator/secagg_round.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/net.h"
#include "core/rng.h"
#include "core/st_folder.h"
#include "core/wire.h"
#include "lora/aggregate.h"
#include "lora/io.h"
#include "model/task.h"
#include "privacy/accountant.h"
#include "privacy/acct.h"
#include "privacy/noise.h"
#include "privacy/sign.h"
#include "tokenizer/model_tok.h"

#define TAG               "coord"
#define SOFTWARE_VERSION  "fedlora-0.1.0"
#define NREASONS          32     /* indexes -code of core/err.h codes */
#define COORD_MAX_CLIENTS 100000 /* registry bound: enrollment cannot grow memory without end */
#define REJECT_LOG_EVERY  10.0   /* seconds between log lines of one reason */
#define STATE_SAVE_EVERY  0.2    /* seconds between state.json writes for registrations */
#define GETTASK_WAIT_UNSAID_MS                                                                     \
	30000 /* a GetTask without max_wait_ms: clients that predate it waited 30 s */

_Static_assert(-FL_ERR_MIN_ < NREASONS, "reason table too small for core/err.h codes");
_Static_assert(PRIV_PK_HEX <= COORD_KEY_HEX_MAX, "state.json key field too small");
_Static_assert(FL_NONCE_BYTES == COORD_NONCE_BYTES, "nonces.log record size");

enum { PH_IDLE = 0, PH_OPEN = 1, PH_CLOSED = 2, PH_DONE = 3 };
enum { W_INIT = 0, W_RECV, W_PARK, W_SEND };
/* per selected client */
enum { SEL_NO = 0, SEL_PENDING = 1, SEL_FOLDING = 2, SEL_DONE = 3 };

typedef struct coord_work {
	coord *c;
	nng_aio *aio;
	nng_ctx ctx;
	_Atomic int state; /* W_*; read by the engine under mu, written on nng threads */
	/* the parked GetTask */
	int client; /* registry index */
	uint64_t last_seen;
	uint32_t sa_phase; /* secure aggregation: the SaDown phase it waits for */
} coord_work;

struct coord {
	coord_config cfg;
	coord_dp_mode dp;
	lora_strategy strat;
	priv_key key;
	char pk_hex[PRIV_PK_HEX];
	priv_allow *allow; /* NULL under --enroll-any */
	model_task *task;
	lora_adapter *global; /* after the last committed round */
	priv_noise *noise;    /* client DP: Poisson sampling and noise */
	fl_rng rng;           /* uniform client sampling */
	size_t recv_max;      /* logical limit; the socket allows a bit more */
	char base_name[COORD_STR_MAX];
	char base_hash[2 * 32 + 1]; /* BLAKE2b-256 of the base weights (lm), hex */
	char tok_hash[2 * 32 + 1];  /* fl_tok_hash of the base tokenizer (lm), hex; pinned */

	nng_socket sock;
	_Atomic int sock_open; /* 0 once teardown began: callbacks stop re-arming */
	int sock_made;         /* the socket exists (nng_close it) */
	coord_work *works;
	int nworks;
	FILE *logf;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_mutex_t agg_mu;
	volatile sig_atomic_t stop;

	/* ---- under mu ---- */
	coord_state st;
	int phase;
	int cur_round;      /* st.round + 1 while a round is open */
	int attempt;        /* 1-based attempt of cur_round */
	unsigned char *sel; /* SEL_* per registry index, n_sel entries */
	int n_sel, n_selected, n_reported;
	int folding;
	int n_parked;             /* GetTasks held (long poll) */
	int st_dirty;             /* registry changed since state.json was written */
	double st_saved_at;       /* when wait_until last wrote it (monotonic s) */
	double st_save_s;         /* how long that write took */
	unsigned char *done_told; /* after the run: client was answered Done */
	int n_done, n_told;
	fl_nonce_set *nonces; /* of cur_round (all its attempts) */
	int nonce_fd;         /* RUN/nonces.log: the accepted ones, persisted */
	lora_agg *agg;
	uint8_t *task_buf; /* signed Task envelope of the open round */
	size_t task_len;
	/* metrics of the round being run (reset when a round commits) */
	long rejected[NREASONS];
	uint64_t bytes_up, bytes_down;
	double w_sum, train_sum, eval_after_sum, eval_before_sum;
	double client_eps_round;
	priv_acct acct;         /* --accountant, with its memo (under mu) */
	priv_acct_eps acct_eps; /* client DP: the last committed round's accounting */
	double acct_s_round;    /* seconds in the accountant since the last commit */
	int retries_round;
	coord_gone gone;      /* clients left out of selections (coordinator/gone.h) */
	long gone_excluded;   /* this round: clients left out of selections as gone */
	double gone_saved_at; /* when gone.json was last written (monotonic s) */
	/* reject log rate limit */
	double rej_last_log[NREASONS];
	long rej_suppressed[NREASONS];
	/* secure aggregation (coordinator/secagg_round.h): the open attempt,
	 * why it could not open, aborted attempts of cur_round (JSON array) */
	sa_round *sa;
	char sa_why[256];
	cJSON *sa_aborts;
	uint64_t sa_clipped;
};

/* Secure aggregation (--secure-agg): the hooks into coordinator/secagg_round.h,
 * defined at the end of this file. All run under mu except handle_sa_up. */
static nng_msg *sa_gettask_locked(coord *c, int idx, uint32_t want, int held, int *park);
static nng_msg *handle_sa_up(coord *c, const fl_wire_msg *m, const char *who);
static int sa_open_locked(coord *c, const int *idx, int count);
static int sa_commit_locked(coord *c, lora_adapter *next, lora_agg_stats *s);
static int sa_run_locked(coord *c, char *why, size_t whylen);
static int sa_abort_locked(coord *c, const char *why, char *err, size_t errn);
static int quorum_abort_locked(coord *c, char *err, size_t errn);

/* ---------------------------------------------------------------- helpers */

/* A log line to stderr (fl_log) and to RUN/coordinator.log. */
static void coord_logf(coord *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void coord_logf(coord *c, int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fl_log(level, TAG, "%s", line);
	if (c->logf && level <= fl_log_level()) {
		struct timespec ts;
		struct tm tm;
		static const char *names[] = {"error", "warn", "info", "debug"};
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		fprintf(c->logf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n",
		        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		        tm.tm_sec, ts.tv_nsec / 1000000, names[level & 3], line);
		fflush(c->logf);
	}
}

static int reason_index(int code)
{
	int i = -code;
	return (i > 0 && i < NREASONS) ? i : 0;
}

/* Counts a rejection in the round's metrics and logs it, at most once per
 * reason every REJECT_LOG_EVERY seconds. Call with mu held. */
static void count_reject_locked(coord *c, int code, const char *who, const char *text)
{
	int i = reason_index(code);
	double t = fl_now_s();

	c->rejected[i]++;
	if (c->rej_last_log[i] == 0 || t - c->rej_last_log[i] >= REJECT_LOG_EVERY) {
		if (c->rej_suppressed[i] > 0)
			coord_logf(c, FL_LOG_WARN,
			           "rejected (%s) from %s: %s (%ld more of this reason not logged)",
			           fl_reason_name(code), who, text, c->rej_suppressed[i]);
		else
			coord_logf(c, FL_LOG_WARN, "rejected (%s) from %s: %s",
			           fl_reason_name(code), who, text);
		c->rej_last_log[i] = t;
		c->rej_suppressed[i] = 0;
	} else {
		c->rej_suppressed[i]++;
	}
}

/* Signed envelope of `body` in a new nng_msg; NULL on failure (logged). */
static nng_msg *seal(coord *c, const ProtobufCMessage *body, uint32_t type)
{
	nng_msg *m = NULL;
	int rv = fl_wire_seal_msg(body, type, &c->key, &m);

	if (rv) {
		coord_logf(c, FL_LOG_ERROR, "cannot seal a %s reply: %s", fl_msg_type_name(type),
		           fl_strerror(rv));
		return NULL;
	}
	return m;
}

static nng_msg *make_reject(coord *c, int code, const char *text)
{
	Fedlora__Reject r = FEDLORA__REJECT__INIT;
	r.code = code;
	r.text = (char *)text;
	return seal(c, &r.base, FL_MSG_REJECT);
}

/* Rejects: counts, logs and builds the reply. */
static nng_msg *reject(coord *c, int code, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static nng_msg *reject(coord *c, int code, const char *who, const char *fmt, ...)
{
	char text[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&c->mu);
	count_reject_locked(c, code, who, text);
	pthread_mutex_unlock(&c->mu);
	return make_reject(c, code, text);
}

static nng_msg *make_wait(coord *c, uint32_t ms)
{
	Fedlora__Wait w = FEDLORA__WAIT__INIT;
	w.retry_after_ms = ms;
	w.run_id = c->st.run_id;
	w.round = (uint64_t)c->st.round;
	return seal(c, &w.base, FL_MSG_WAIT);
}

static nng_msg *make_done(coord *c)
{
	Fedlora__Done d = FEDLORA__DONE__INIT;
	d.run_id = c->st.run_id;
	d.final_round = (uint64_t)c->st.round;
	return seal(c, &d.base, FL_MSG_DONE);
}

/* Short printable id of a key for logs: the first 12 hex characters. */
static void short_id(const uint8_t pk[PRIV_PK_BYTES], char out[16])
{
	char hex[PRIV_PK_HEX];
	priv_pk_to_hex(pk, hex);
	snprintf(out, 16, "%.12s", hex);
}

/* Is the key admitted right now (allow list or enrollment)? */
static int key_admitted(coord *c, const uint8_t pk[PRIV_PK_BYTES])
{
	if (!c->allow)
		return 1;
	return priv_allow_contains(c->allow, pk);
}

/* ------------------------------------------------------------- handlers */

static nng_msg *handle_hello(coord *c, const fl_wire_msg *m, const char *who, uint32_t pipe)
{
	const Fedlora__Hello *h = (const Fedlora__Hello *)m->body;
	Fedlora__Welcome w = FEDLORA__WELCOME__INIT;
	Fedlora__ModelSpec spec = FEDLORA__MODEL_SPEC__INIT;
	char hex[PRIV_PK_HEX];
	int rv, idx, is_new;

	if ((rv = fl_wire_check_hello(h, c->st.run_id)) != 0)
		return reject(c, rv, who, "hello: %s",
		              rv == FL_ESTALE ? "run id of another run" : fl_strerror(rv));
	if (!key_admitted(c, m->signer))
		return reject(c, FL_EKEY, who, "hello: key not on the allow list");
	if (h->num_samples < 0 || h->num_samples > (int64_t)1 << 40)
		return reject(c, FL_EFORMAT, who, "hello: num_samples %lld out of range",
		              (long long)h->num_samples);
	if (c->tok_hash[0] && strcmp(h->tokenizer_hash ? h->tokenizer_hash : "", c->tok_hash))
		return reject(c, FL_ESHAPE, who,
		              "tokenizer mismatch: coordinator pins %.8s, client has %.8s",
		              c->tok_hash,
		              h->tokenizer_hash && *h->tokenizer_hash ? h->tokenizer_hash : "none");
	priv_pk_to_hex(m->signer, hex);
	pthread_mutex_lock(&c->mu);
	is_new = coord_state_find_client(&c->st, hex) < 0;
	if (is_new && c->st.n_clients >= COORD_MAX_CLIENTS) {
		pthread_mutex_unlock(&c->mu);
		return reject(c, FL_ETOOBIG, who, "hello: registry full (%d clients)",
		              COORD_MAX_CLIENTS);
	}
	rv = coord_state_add_client(&c->st, hex, (long)h->num_samples, c->st.round + 1, &idx);
	if (!rv)
		coord_gone_seen(&c->gone, idx, pipe, 1);
	if (!rv && is_new) {
		/* persisted by the engine: at most every 200 ms in wait_until
		 * (a burst of registrations costs one write) and before any
		 * selection; a crash before that only costs the client a new
		 * Hello after the restart */
		c->st_dirty = 1;
		coord_logf(c, FL_LOG_INFO,
		           "client %s registered (%lld samples, index %d; %d registered)", who,
		           (long long)h->num_samples, h->client_index, c->st.n_clients);
		pthread_cond_broadcast(&c->cv);
	}
	w.committed_round = (uint64_t)c->st.round;
	pthread_mutex_unlock(&c->mu);
	if (rv)
		return reject(c, rv, who, "hello: cannot register: %s", fl_strerror(rv));
	coord_crash_hit(COORD_CRASH_REGISTRATION);

	spec.task = c->cfg.task;
	spec.base_model = c->base_name;
	spec.base_hash = c->base_hash;
	spec.tokenizer_hash = c->tok_hash;
	spec.rank = (uint32_t)c->cfg.rank;
	spec.alpha = c->cfg.alpha;
	spec.lora_targets = c->cfg.lora_targets;
	spec.strategy = c->cfg.strategy;
	spec.seed = (uint64_t)c->cfg.seed;
	spec.num_clients = (uint32_t)c->cfg.num_clients;
	spec.linreg_layers = (uint32_t)c->cfg.linreg_layers;
	spec.linreg_dim = (uint32_t)c->cfg.linreg_dim;
	spec.linreg_samples = (uint32_t)c->cfg.linreg_samples;
	spec.seq_len = (uint32_t)c->cfg.seq_len;
	w.run_id = c->st.run_id;
	w.coordinator_key.data = c->key.pk;
	w.coordinator_key.len = PRIV_PK_BYTES;
	w.spec = &spec;
	w.total_rounds = (uint64_t)c->cfg.rounds;
	w.software_version = SOFTWARE_VERSION;
	return seal(c, &w.base, FL_MSG_WELCOME);
}

/* Reply to a GetTask of registered client `idx` under mu: a Task, Done, or
 * NULL with *park = 1 when the request should be held (long poll) or a Wait
 * when it was held already (`held`). */
static nng_msg *gettask_reply_locked(coord *c, int idx, uint64_t last_seen, uint32_t sa_phase,
                                     int held, int *park)
{
	nng_msg *m;

	*park = 0;
	if (c->phase == PH_DONE || c->st.done) {
		if (idx < c->n_done && !c->done_told[idx]) {
			c->done_told[idx] = 1;
			c->n_told++;
			pthread_cond_broadcast(&c->cv);
		}
		return make_done(c);
	}
	if (c->cfg.secure_agg && sa_phase > 0)
		return sa_gettask_locked(c, idx, sa_phase, held, park);
	if (c->phase == PH_OPEN && idx < c->n_sel && c->sel[idx] == SEL_PENDING &&
	    last_seen < (uint64_t)c->cur_round && (!c->sa || sa_round_wants_task(c->sa, idx))) {
		if (nng_msg_alloc(&m, 0) != 0)
			return NULL;
		if (nng_msg_append(m, c->task_buf, c->task_len) != 0) {
			nng_msg_free(m);
			return NULL;
		}
		c->bytes_down += c->task_len;
		return m;
	}
	/* Nothing for this client now: hold the request (long poll) while at
	 * most half of the contexts are held, so Hellos and Submits always
	 * find a free context; otherwise, or once held, answer Wait. A client
	 * that says it trained the open round already (for a coordinator that
	 * crashed before committing it) gets a Wait whose round names the last
	 * committed one, so it knows to retrain. */
	if (c->phase == PH_OPEN && idx < c->n_sel && c->sel[idx] == SEL_PENDING)
		return make_wait(c, 10); /* selected, but says it trained: retrain now */
	if (!held && c->n_parked < c->nworks / 2) {
		*park = 1;
		return NULL;
	}
	return make_wait(c, held ? 100 : 500);
}

/* How long a GetTask is held: --poll-timeout, but at most half of what the
 * client said it waits (GetTask.max_wait_ms; GETTASK_WAIT_UNSAID_MS when it
 * did not say), so the Wait reaches the client before its own timeout fires
 * even when replies are slow. Held any longer, a client whose timeout fired
 * first sends GetTask again, is held again, and gives up after two silent
 * polls (1,575 of 5,000 bench/load sessions did with --poll-timeout 30
 * against the clients' 30 s). */
static nng_duration park_ms(const coord *c, const Fedlora__GetTask *g)
{
	double ms = c->cfg.poll_timeout * 1000;
	double cap = (g->max_wait_ms ? g->max_wait_ms : GETTASK_WAIT_UNSAID_MS) / 2.0;
	return (nng_duration)(ms < cap ? ms : cap);
}

static nng_msg *handle_gettask(coord *c, coord_work *w, const fl_wire_msg *m, const char *who,
                               uint32_t pipe, int *park)
{
	const Fedlora__GetTask *g = (const Fedlora__GetTask *)m->body;
	char hex[PRIV_PK_HEX];
	nng_msg *rep;
	int idx, rv;

	*park = 0;
	if ((rv = fl_wire_check_run(g->run_id, c->st.run_id)) != 0)
		return reject(c, rv, who, "get_task: run id of another run");
	if (!key_admitted(c, m->signer))
		return reject(c, FL_EKEY, who, "get_task: key not on the allow list");
	priv_pk_to_hex(m->signer, hex);
	pthread_mutex_lock(&c->mu);
	idx = coord_state_find_client(&c->st, hex);
	if (idx < 0) {
		pthread_mutex_unlock(&c->mu);
		return reject(c, FL_EKEY, who, "get_task: not registered (send Hello first)");
	}
	coord_gone_seen(&c->gone, idx, pipe, 0);
	rep = gettask_reply_locked(c, idx, g->last_round_seen, g->sa_phase, 0, park);
	if (*park) {
		c->n_parked++;
		w->client = idx;
		w->last_seen = g->last_round_seen;
		w->sa_phase = g->sa_phase;
		w->state = W_PARK;
		nng_sleep_aio(park_ms(c, g), w->aio);
	}
	pthread_mutex_unlock(&c->mu);
	return rep;
}

/* Checks of a Submit's metrics; 0 or a reason. */
static int check_metrics(const Fedlora__TrainMetrics *tm)
{
	if (!tm)
		return FL_EFORMAT;
	if (!isfinite(tm->train_loss) || !isfinite(tm->eval_before) || !isfinite(tm->eval_after))
		return FL_ENONFINITE;
	if (isnan(tm->epsilon) || tm->epsilon < 0 || isnan(tm->delta) || tm->delta < 0)
		return FL_EFORMAT;
	return 0;
}

/* Is a Submit (of this run) for a round that is not open? Under mu. 0: it is
 * for the open attempt; FL_ECLOSED: its round was committed, or it is the
 * current round and the attempt it was handed out in has closed (it timed out;
 * a retry may open a new attempt, which hands the Task out again); FL_ESTALE:
 * a round this coordinator never opened (a future one, or one not reopened
 * yet after a restart). */
static int submit_closed_locked(const coord *c, const Fedlora__Submit *s)
{
	if (s->round > 0 && s->round <= (uint64_t)c->st.round)
		return FL_ECLOSED;
	if (c->cur_round > 0 && s->round == (uint64_t)c->cur_round)
		return c->phase == PH_OPEN ? 0 : FL_ECLOSED;
	return FL_ESTALE;
}

static nng_msg *handle_submit(coord *c, const fl_wire_msg *m, const char *who, uint32_t pipe)
{
	const Fedlora__Submit *s = (const Fedlora__Submit *)m->body;
	Fedlora__Ack ack = FEDLORA__ACK__INIT;
	lora_adapter *ad = NULL;
	char hex[PRIV_PK_HEX];
	int idx, rv, round;
	double w;

	if ((rv = fl_wire_check_run(s->run_id, c->st.run_id)) != 0)
		return reject(c, rv, who, "submit: run id of another run");
	if (c->cfg.secure_agg)
		return reject(c, FL_ESTATE, who,
		              "submit: this run uses secure aggregation (masked SaUp only)");
	if (!key_admitted(c, m->signer))
		return reject(c, FL_EKEY, who, "submit: key not on the allow list");
	priv_pk_to_hex(m->signer, hex);

	pthread_mutex_lock(&c->mu);
	idx = coord_state_find_client(&c->st, hex);
	round = c->cur_round;
	if (idx < 0) {
		pthread_mutex_unlock(&c->mu);
		return reject(c, FL_EKEY, who, "submit: not registered (send Hello first)");
	}
	coord_gone_seen(&c->gone, idx, pipe, 0);
	if ((rv = submit_closed_locked(c, s)) != 0) {
		unsigned long long r = (unsigned long long)s->round;
		pthread_mutex_unlock(&c->mu);
		if (rv == FL_ECLOSED)
			return reject(c, rv, who, "submit: round %llu closed (%s)", r,
			              s->round <= (uint64_t)c->st.round ? "committed"
			                                                : "its attempt timed out");
		return reject(c, rv, who, "submit: round %llu is not open (%s)", r,
		              c->phase == PH_OPEN ? "another round" : "no round open");
	}
	rv = fl_wire_check_submit(s, c->st.run_id, (uint64_t)round);
	if (rv) {
		pthread_mutex_unlock(&c->mu);
		return reject(c, rv, who, "submit: %s", fl_strerror(rv));
	}
	if ((rv = fl_nonce_set_add(c->nonces, s->nonce.data, s->nonce.len)) != 0) {
		int already = idx < c->n_sel && c->sel[idx] >= SEL_FOLDING;
		pthread_mutex_unlock(&c->mu);
		return reject(c, rv, who, "submit: %s",
		              rv != FL_EREPLAY ? fl_strerror(rv)
		              : already        ? "replayed nonce (this update was already accepted)"
		                               : "replayed nonce");
	}
	if ((idx >= c->n_sel || c->sel[idx] == SEL_NO) && coord_gone_missed(&c->gone, idx, round)) {
		pthread_mutex_unlock(&c->mu);
		return reject(c, FL_ECLOSED, who,
		              "submit: round %d closed (its attempt timed out; not reselected)",
		              round);
	}
	if (idx >= c->n_sel || c->sel[idx] == SEL_NO) {
		pthread_mutex_unlock(&c->mu);
		return reject(c, FL_ESTATE, who, "submit: not selected for round %d", round);
	}
	if (c->sel[idx] != SEL_PENDING) {
		pthread_mutex_unlock(&c->mu);
		return reject(c, FL_ESTATE, who, "submit: already submitted in round %d", round);
	}
	if (s->num_samples > (int64_t)1 << 40) {
		pthread_mutex_unlock(&c->mu);
		return reject(c, FL_EFORMAT, who, "submit: num_samples out of range");
	}
	if ((rv = check_metrics(s->metrics)) != 0) {
		pthread_mutex_unlock(&c->mu);
		return reject(c, rv, who, "submit: train metrics missing or not finite");
	}
	c->sel[idx] = SEL_FOLDING;
	c->folding++;
	pthread_mutex_unlock(&c->mu);

	/* Outside mu: the global cannot change while folding > 0. The nonce is
	 * on disk before the update is folded and acknowledged, so this Submit
	 * stays a replay after a kill -9 and restart (the round cannot commit,
	 * and so reset the log, while folding > 0). */
	w = c->dp == COORD_DP_CLIENT ? 1.0 : (double)s->num_samples;
	rv = coord_nonce_log_append(c->nonce_fd, round, s->nonce.data);
	if (!rv)
		coord_crash_hit(COORD_CRASH_MID_FOLD);
	if (!rv)
		rv = lora_adapter_clone(&ad, c->global);
	if (!rv)
		rv = fl_wire_tensors_to_adapter(s->tensors, s->n_tensors,
		                                c->strat == LORA_FFA ? FL_WIRE_B : FL_WIRE_AB, ad);
	if (!rv) {
		pthread_mutex_lock(&c->agg_mu);
		rv = lora_agg_add(c->agg, ad, w);
		pthread_mutex_unlock(&c->agg_mu);
	}
	lora_adapter_free(ad);

	pthread_mutex_lock(&c->mu);
	c->folding--;
	if (rv) {
		c->sel[idx] = SEL_PENDING; /* it may still send a good update */
		char text[160];
		snprintf(text, sizeof text, "submit: update refused: %s", fl_strerror(rv));
		count_reject_locked(c, rv, who, text);
	} else {
		const Fedlora__TrainMetrics *tm = s->metrics;
		double ns = (double)s->num_samples;
		c->sel[idx] = SEL_DONE;
		c->n_reported++;
		c->bytes_up += m->wire_len;
		c->w_sum += ns;
		c->train_sum += ns * tm->train_loss;
		c->eval_after_sum += ns * tm->eval_after;
		c->eval_before_sum += ns * tm->eval_before;
		if (tm->epsilon > c->client_eps_round)
			c->client_eps_round = tm->epsilon;
		c->st.clients[idx].last_round = round;
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (rv) {
		char text[160];
		snprintf(text, sizeof text, "submit: %s", fl_strerror(rv));
		return make_reject(c, rv, text);
	}
	ack.run_id = c->st.run_id;
	ack.round = (uint64_t)round;
	ack.nonce = s->nonce;
	coord_logf(c, FL_LOG_DEBUG, "round %d: update from %s folded", round, who);
	return seal(c, &ack.base, FL_MSG_ACK);
}

/* Handles one request; returns the reply, or NULL with *park set. */
static nng_msg *handle_request(coord *c, coord_work *w, nng_msg *req, int *park)
{
	fl_wire_msg m;
	char who[16];
	nng_msg *rep = NULL;
	uint32_t pipe = nng_pipe_id(nng_msg_get_pipe(req)) > 0
	                    ? (uint32_t)nng_pipe_id(nng_msg_get_pipe(req))
	                    : 0;
	int rv;

	*park = 0;
	rv = fl_wire_open_msg(req, c->recv_max, NULL, &m);
	if (rv) {
		return reject(c, rv, "?", "%s (%zu bytes)",
		              rv == FL_ETOOBIG ? "message over the receive limit" : fl_strerror(rv),
		              nng_msg_len(req));
	}
	short_id(m.signer, who);
	switch (m.type) {
	case FL_MSG_HELLO:
		rep = handle_hello(c, &m, who, pipe);
		break;
	case FL_MSG_GET_TASK:
		rep = handle_gettask(c, w, &m, who, pipe, park);
		break;
	case FL_MSG_SUBMIT:
		rep = handle_submit(c, &m, who, pipe);
		break;
	case FL_MSG_SA_UP:
		rep = handle_sa_up(c, &m, who);
		break;
	default:
		rep = reject(c, FL_EFORMAT, who, "unexpected message type %s",
		             fl_msg_type_name(m.type));
		break;
	}
	fl_wire_msg_fini(&m);
	return rep;
}

static void work_send(coord_work *w, nng_msg *rep)
{
	if (!rep) {
		/* could not build a reply (out of memory): let the client retry */
		w->state = W_RECV;
		nng_ctx_recv(w->ctx, w->aio);
		return;
	}
	nng_aio_set_msg(w->aio, rep);
	w->state = W_SEND;
	nng_ctx_send(w->ctx, w->aio);
}

static void work_cb(void *arg)
{
	coord_work *w = arg;
	coord *c = w->c;
	nng_msg *req, *rep;
	int rv, park;

	switch (atomic_load(&w->state)) {
	case W_INIT:
		w->state = W_RECV;
		nng_ctx_recv(w->ctx, w->aio);
		break;
	case W_RECV:
		if ((rv = nng_aio_result(w->aio)) != 0) {
			if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || !c->sock_open)
				return;
			nng_ctx_recv(w->ctx, w->aio);
			break;
		}
		req = nng_aio_get_msg(w->aio);
		nng_aio_set_msg(w->aio, NULL);
		if (!c->sock_open) {
			nng_msg_free(req);
			return;
		}
		rep = handle_request(c, w, req, &park);
		nng_msg_free(req);
		if (park)
			break; /* state W_PARK was set under the lock */
		work_send(w, rep);
		break;
	case W_PARK:
		/* timed out or cancelled by the engine: answer with what there is */
		pthread_mutex_lock(&c->mu);
		if (c->sock_open == 0) {
			pthread_mutex_unlock(&c->mu);
			return;
		}
		c->n_parked--;
		rep = gettask_reply_locked(c, w->client, w->last_seen, w->sa_phase, 1, &park);
		w->state = W_SEND;
		pthread_mutex_unlock(&c->mu);
		work_send(w, rep);
		break;
	case W_SEND:
		if ((rv = nng_aio_result(w->aio)) != 0) {
			nng_msg_free(nng_aio_get_msg(w->aio));
			nng_aio_set_msg(w->aio, NULL);
		}
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || !c->sock_open)
			return;
		w->state = W_RECV;
		nng_ctx_recv(w->ctx, w->aio);
		break;
	}
}

/* nng pipe removal (a connection dropped): the clients that last spoke on
 * it are gone (coordinator/gone.h). On an nng thread. */
static void on_pipe_removed(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	coord *c = arg;
	int id = nng_pipe_id(p), n;
	(void)ev;
	if (id <= 0)
		return;
	pthread_mutex_lock(&c->mu);
	if (c->sock_open && c->phase != PH_DONE) {
		n = coord_gone_pipe_dropped(&c->gone, (uint32_t)id, c->st.round + 1);
		if (n > 0)
			coord_logf(c, FL_LOG_DEBUG, "connection dropped: %d client(s) gone", n);
	}
	pthread_mutex_unlock(&c->mu);
}

/* Wakes every parked GetTask (under mu). */
static void wake_parked_locked(coord *c)
{
	for (int i = 0; i < c->nworks; i++)
		if (c->works[i].state == W_PARK)
			nng_aio_cancel(c->works[i].aio);
}

/* ------------------------------------------------------------- open/close */

static int write_run_json(coord *c)
{
	char path[PATH_MAX];
	char *js = NULL;
	int rv;

	if (snprintf(path, sizeof path, "%s/run.json", c->cfg.run_dir) >= (int)sizeof path)
		return FL_EINVAL;
	if ((rv = coord_config_to_json(&c->cfg, &js)) != 0)
		return rv;
	rv = fl_write_atomic(path, js, strlen(js), 0644);
	free(js);
	return rv;
}

/* Settings of run.json (if any) into *stored; 1 when present, 0 when not. */
static int read_run_json(const char *run_dir, coord_config *stored, char *err, size_t errn)
{
	char path[PATH_MAX];
	int rv;

	if (snprintf(path, sizeof path, "%s/run.json", run_dir) >= (int)sizeof path)
		return FL_EINVAL;
	if (access(path, F_OK) != 0)
		return 0;
	coord_config_default(stored);
	if ((rv = coord_config_apply_file(stored, path, err, errn)) != 0)
		return rv;
	return 1;
}

/* Pins the tokenizer of the base model folder: clients whose Hello carries
 * another fl_tok_hash are refused (tokenizer mismatch). */
static int pin_tokenizer(coord *c, const char *dir, char *err, size_t errn)
{
	fl_tokenizer *t = NULL;
	int rv = fl_tok_load(dir, &t, err, errn);
	if (rv)
		return rv;
	fl_tok_hash_hex(t, c->tok_hash);
	coord_logf(c, FL_LOG_INFO, "tokenizer %s pinned, blake2b-256 %.16s...", fl_tok_kind_name(t),
	           c->tok_hash);
	fl_tok_free(t);
	return 0;
}

/* The base folder's weights hash (fl_st_folder_hash: its tensors in name
 * order, the same for a single file and for shards), hex, so clients can
 * check that they load the same base weights. Empty when the folder has
 * neither model.safetensors nor the index; a bad file or index is an error
 * with its text in err. */
static int hash_base(const char *dir, char out[2 * 32 + 1], char *err, size_t errn)
{
	fl_st_folder *fo = NULL;
	uint8_t h[FL_ST_HASH_BYTES];
	int rv;

	out[0] = 0;
	if ((rv = fl_st_folder_open(&fo, dir, err, errn)) != 0) {
		if (rv == FL_ENOENT) {
			char p[PATH_MAX];
			snprintf(p, sizeof p, "%s/" FL_ST_INDEX_FILE, dir);
			if (access(p, F_OK) != 0)
				return 0; /* no weights: the adapter shape comes from config.json */
		}
		return rv;
	}
	rv = fl_st_folder_hash(fo, h);
	fl_st_folder_close(fo);
	if (rv == 0)
		sodium_bin2hex(out, 2 * 32 + 1, h, sizeof h);
	return rv;
}

/* RUN/gone.json back into c->gone after a restart. A file that does not
 * parse is not fatal: it is reported with its reason and the run goes on
 * with nobody gone, as before gone clients were persisted (leaving them out
 * is an optimization, not a safety property); the next write replaces it. */
static void load_gone(coord *c)
{
	char why[200] = "";
	int skipped = 0, rv;

	rv = coord_gone_load(&c->gone, &c->st, c->cfg.run_dir, &skipped, why, sizeof why);
	if (rv == FL_ENOENT)
		return;
	if (rv) {
		coord_logf(c, FL_LOG_WARN,
		           "ignoring %s/gone.json (%s%s%s); starting with no client known gone",
		           c->cfg.run_dir, fl_strerror(rv), why[0] ? ": " : "", why);
		c->gone.dirty = 1; /* replace it at the next write */
		return;
	}
	coord_logf(c, FL_LOG_INFO, "%d gone client(s) restored from gone.json%s", c->gone.n_gone,
	           skipped ? " (some keys not registered, skipped)" : "");
}

static void run_id_new(char out[COORD_RUN_ID_HEX + 1])
{
	uint8_t b[COORD_RUN_ID_HEX / 2];
	randombytes_buf(b, sizeof b);
	sodium_bin2hex(out, COORD_RUN_ID_HEX + 1, b, sizeof b);
}

int coord_open(coord **out, const coord_config *cfg, char *err, size_t errn)
{
	coord *c;
	model_task_opts to;
	coord_config stored;
	char path[PATH_MAX];
	int rv, have_run, crash_armed = 0;
	size_t adapter_bytes;

	*out = NULL;
	if ((rv = coord_config_validate(cfg, err, errn)) != 0)
		return rv;
	if ((rv = coord_crash_init(&crash_armed, err, errn)) != 0)
		return rv;
	if (priv_sodium_init() != 0) {
		fl_seterr(err, errn, "libsodium failed to initialize");
		return FL_ECRYPTO;
	}
	if (!(c = calloc(1, sizeof *c)))
		return FL_ENOMEM;
	c->cfg = *cfg;
	c->nonce_fd = -1;
	c->dp = coord_config_dp_mode(cfg);
	{
		priv_acct_kind k = PRIV_ACCT_RDP;
		priv_acct_parse(cfg->accountant, &k); /* validated above */
		priv_acct_init(&c->acct, k, cfg->eps_error);
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->agg_mu, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	coord_state_init(&c->st);
	if ((rv = lora_strategy_parse(cfg->strategy, &c->strat)) != 0) {
		fl_seterr(err, errn, "unknown strategy '%s'", cfg->strategy);
		goto fail;
	}

	/* keys */
	rv = priv_key_load(&c->key, cfg->key);
	if (rv) {
		fl_seterr(err, errn, "cannot load key %s: %s%s", cfg->key, fl_strerror(rv),
		          rv == FL_EKEY ? " (the file must not be readable by other users)" : "");
		goto fail;
	}
	priv_pk_to_hex(c->key.pk, c->pk_hex);
	if (cfg->allow[0]) {
		rv = priv_allow_load(&c->allow, cfg->allow);
		if (rv) {
			fl_seterr(err, errn, "cannot load allow list %s: %s", cfg->allow,
			          fl_strerror(rv));
			goto fail;
		}
	}

	/* run directory */
	have_run = read_run_json(cfg->run_dir, &stored, err, errn);
	if (have_run < 0) {
		rv = have_run;
		goto fail;
	}
	if (have_run && (rv = coord_config_check_resume(&stored, cfg, err, errn)) != 0)
		goto fail;
	if (snprintf(path, sizeof path, "%s/global", cfg->run_dir) >= (int)sizeof path) {
		rv = FL_EINVAL;
		fl_seterr(err, errn, "run directory path too long");
		goto fail;
	}
	if ((rv = fl_mkdirs(path)) != 0) {
		fl_seterr(err, errn, "cannot create %s: %s", path, strerror(errno));
		goto fail;
	}
	if (snprintf(path, sizeof path, "%s/coordinator.log", cfg->run_dir) < (int)sizeof path)
		c->logf = fopen(path, "a");
	if (crash_armed)
		coord_logf(c, FL_LOG_WARN, "FEDLORA_CRASH_AT=%s: test-only crash hook armed",
		           getenv("FEDLORA_CRASH_AT"));

	/* task: adapter shape only */
	model_task_opts_default(&to);
	to.task = cfg->task;
	to.seed = (uint64_t)cfg->seed;
	to.client_index = -1;
	if (cfg->num_clients > 0)
		to.num_clients = cfg->num_clients;
	to.rank = cfg->rank;
	to.alpha = cfg->alpha;
	to.linreg_layers = cfg->linreg_layers;
	to.linreg_dim = cfg->linreg_dim;
	to.linreg_samples = cfg->linreg_samples;
	to.base_dir = cfg->base_dir[0] ? cfg->base_dir : NULL;
	to.lora_targets = cfg->lora_targets;
	to.seq_len = cfg->seq_len;
	if ((rv = model_task_open(&c->task, &to)) != 0) {
		fl_seterr(err, errn, "cannot open task %s: %s", cfg->task, fl_strerror(rv));
		goto fail;
	}
	if (!strcmp(cfg->task, "lm")) {
		const char *b = strrchr(cfg->base_dir, '/');
		snprintf(c->base_name, sizeof c->base_name, "%s",
		         b && b[1] ? b + 1 : cfg->base_dir);
		if ((rv = hash_base(cfg->base_dir, c->base_hash, err, errn)) != 0)
			goto fail;
		if (c->base_hash[0])
			coord_logf(c, FL_LOG_INFO, "base model %s, weights blake2b-256 %.16s...",
			           c->base_name, c->base_hash);
		if ((rv = pin_tokenizer(c, cfg->base_dir, err, errn)) != 0)
			goto fail;
	}

	rv = coord_state_load(&c->st, cfg->run_dir);
	if (rv == FL_ENOENT) {
		/* a new run: initial adapter, then state.json (round 0) */
		coord_state_init(&c->st);
		run_id_new(c->st.run_id);
		if ((rv = model_task_adapter_new(c->task, (uint64_t)cfg->seed, &c->global)) != 0) {
			fl_seterr(err, errn, "cannot create the initial adapter: %s",
			          fl_strerror(rv));
			goto fail;
		}
		coord_global_path(cfg->run_dir, 0, path, sizeof path);
		if ((rv = lora_adapter_save(c->global, path)) != 0) {
			fl_seterr(err, errn, "cannot write %s: %s", path, fl_strerror(rv));
			goto fail;
		}
		if ((rv = write_run_json(c)) != 0 || (rv = coord_metrics_trim(cfg->run_dir, 0)) ||
		    (rv = coord_state_save(&c->st, cfg->run_dir)) != 0) {
			fl_seterr(err, errn, "cannot write the run directory %s: %s", cfg->run_dir,
			          fl_strerror(rv));
			goto fail;
		}
		coord_logf(c, FL_LOG_INFO, "new run %s in %s", c->st.run_id, cfg->run_dir);
	} else if (rv) {
		fl_seterr(err, errn, "cannot read %s/state.json: %s", cfg->run_dir,
		          fl_strerror(rv));
		goto fail;
	} else {
		lora_adapter *shape = NULL;
		if (!have_run) {
			rv = FL_EFORMAT;
			fl_seterr(err, errn, "%s has state.json but no run.json", cfg->run_dir);
			goto fail;
		}
		coord_global_path(cfg->run_dir, c->st.round, path, sizeof path);
		if ((rv = lora_adapter_load(&c->global, path)) != 0) {
			fl_seterr(err, errn, "cannot load the committed adapter %s: %s", path,
			          fl_strerror(rv));
			goto fail;
		}
		rv = model_task_adapter_new(c->task, (uint64_t)cfg->seed, &shape);
		if (!rv && !lora_adapter_same_shape(shape, c->global))
			rv = FL_ESHAPE;
		lora_adapter_free(shape);
		if (rv) {
			fl_seterr(err, errn, "%s does not have the task's adapter shape: %s", path,
			          fl_strerror(rv));
			goto fail;
		}
		if ((rv = coord_metrics_trim(cfg->run_dir, c->st.round)) != 0) {
			fl_seterr(err, errn, "cannot trim metrics.jsonl: %s", fl_strerror(rv));
			goto fail;
		}
		load_gone(c);
		/* more rounds asked for than a finished run had: continue it */
		if (c->st.done && !strcmp(c->st.reason, "rounds") && c->st.round < cfg->rounds) {
			c->st.done = 0;
			c->st.reason[0] = 0;
		}
		if ((rv = write_run_json(c)) != 0 ||
		    (rv = coord_state_save(&c->st, cfg->run_dir))) {
			fl_seterr(err, errn, "cannot write the run directory: %s", fl_strerror(rv));
			goto fail;
		}
		coord_logf(
		    c, FL_LOG_INFO,
		    "resuming run %s from %s: last committed round %d, %d registered client(s)%s",
		    c->st.run_id, cfg->run_dir, c->st.round, c->st.n_clients,
		    c->st.done ? " (run is done)" : "");
	}

	adapter_bytes = (c->global->n_a + c->global->n_b) * sizeof(float);
	c->recv_max = cfg->recv_max > 0 ? (size_t)cfg->recv_max
	                                : adapter_bytes + adapter_bytes / 4 + ((size_t)1 << 20);
	if (c->recv_max < adapter_bytes) {
		coord_logf(
		    c, FL_LOG_WARN,
		    "--recv-max %zu is below the adapter's size (%zu bytes): updates will be "
		    "refused",
		    c->recv_max, adapter_bytes);
	}
	if (c->dp == COORD_DP_CLIENT && (rv = priv_noise_new(&c->noise)) != 0) {
		fl_seterr(err, errn, "cannot create the noise generator: %s", fl_strerror(rv));
		goto fail;
	}
	fl_rng_init(&c->rng, (uint64_t)cfg->seed, 0x636f6f7264ULL);
	if ((rv = fl_nonce_set_new(&c->nonces)) != 0)
		goto fail;
	if ((rv = coord_nonce_log_open(cfg->run_dir, &c->nonce_fd)) != 0) {
		fl_seterr(err, errn, "cannot open %s/nonces.log: %s", cfg->run_dir,
		          fl_strerror(rv));
		goto fail;
	}
	*out = c;
	return 0;
fail:
	coord_close(c);
	return rv;
}

void coord_close(coord *c)
{
	if (!c)
		return;
	/* Teardown as nng advises: stop every aio first (callbacks see
	 * sock_open == 0 and re-arm nothing; nng_aio_stop waits for a running
	 * callback), then close the socket, then free the aios. */
	pthread_mutex_lock(&c->mu);
	c->sock_open = 0;
	pthread_mutex_unlock(&c->mu);
	for (int i = 0; i < c->nworks; i++)
		if (c->works[i].aio)
			nng_aio_stop(c->works[i].aio);
	if (c->sock_made)
		fl_net_close(c->sock);
	for (int i = 0; i < c->nworks; i++) {
		if (c->works[i].aio) {
			nng_msg *m = nng_aio_get_msg(c->works[i].aio);
			if (m && c->works[i].state == W_SEND)
				nng_msg_free(m);
			nng_aio_free(c->works[i].aio);
		}
	}
	free(c->works);
	sa_round_free(c->sa);
	cJSON_Delete(c->sa_aborts);
	lora_agg_free(c->agg);
	fl_nonce_set_free(c->nonces);
	if (c->nonce_fd >= 0)
		close(c->nonce_fd);
	free(c->task_buf);
	free(c->done_told);
	free(c->sel);
	lora_adapter_free(c->global);
	model_task_close(c->task);
	priv_noise_free(c->noise);
	priv_acct_fini(&c->acct);
	priv_allow_free(c->allow);
	priv_key_wipe(&c->key);
	coord_state_fini(&c->st);
	coord_gone_fini(&c->gone);
	if (c->logf)
		fclose(c->logf);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->agg_mu);
	free(c);
}

void coord_request_stop(coord *c)
{
	c->stop = 1;
}

/* ------------------------------------------------------------ the engine */

static int start_server(coord *c, char *err, size_t errn)
{
	fl_net_opts o;
	int rv, port = 0;

	fl_net_opts_default(&o);
	/* The socket admits up to twice the logical limit (plus slack), so a
	 * somewhat oversized message is still read and answered with a counted
	 * too_big Reject; beyond that nng drops the connection unread. */
	o.recv_max = c->recv_max * 2 + ((size_t)1 << 20);
	o.recv_timeout_ms = 0;
	o.tls_cert = c->cfg.tls_cert[0] ? c->cfg.tls_cert : NULL;
	o.tls_key = c->cfg.tls_key[0] ? c->cfg.tls_key : NULL;
	o.tls_ca = c->cfg.tls_ca[0] ? c->cfg.tls_ca : NULL;
	if ((rv = fl_net_listen(&c->sock, c->cfg.listen, &o, &port)) != 0) {
		fl_seterr(err, errn, "cannot listen on %s: %s", c->cfg.listen, fl_strerror(rv));
		return rv;
	}
	c->sock_open = 1;
	c->sock_made = 1;
	nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, on_pipe_removed, c);
	if (!(c->works = calloc((size_t)c->cfg.contexts, sizeof *c->works)))
		return FL_ENOMEM;
	c->nworks = c->cfg.contexts;
	for (int i = 0; i < c->nworks; i++) {
		coord_work *w = &c->works[i];
		w->c = c;
		if ((rv = nng_aio_alloc(&w->aio, work_cb, w)) != 0 ||
		    (rv = nng_ctx_open(&w->ctx, c->sock)) != 0) {
			fl_seterr(err, errn, "nng: %s", nng_strerror(rv));
			return FL_ENET;
		}
	}
	for (int i = 0; i < c->nworks; i++)
		work_cb(&c->works[i]); /* W_INIT -> first receive */
	coord_logf(c, FL_LOG_INFO, "listening on %s%s (key %.16s..., receive limit %zu bytes)",
	           c->cfg.listen, "", c->pk_hex, c->recv_max);
	if (port > 0)
		coord_logf(c, FL_LOG_INFO, "bound port %d", port);
	return 0;
}

/* Writes state.json after registrations (group commit: at most once every
 * STATE_SAVE_EVERY seconds, however many Hellos came): the registry is
 * copied under mu and written with mu released, so Hellos, GetTasks and
 * Submits are not held up by the JSON and the fsyncs. Only the engine thread
 * writes state.json (here and in commit_round_locked), so writes never race.
 * Called and returns with mu held; mu is released in between. */
static void save_registry_locked(coord *c)
{
	coord_state snap = c->st;
	double t0 = fl_now_s();
	int rv = FL_ENOMEM;

	snap.key_index = NULL;
	snap.key_cap = 0;
	snap.clients =
	    malloc((size_t)(c->st.n_clients > 0 ? c->st.n_clients : 1) * sizeof *snap.clients);
	snap.phases =
	    malloc((size_t)(c->st.n_phases > 0 ? c->st.n_phases : 1) * sizeof *snap.phases);
	if (snap.clients && snap.phases) {
		/* the arrays are NULL while empty: memcpy must not see NULL even for 0 bytes */
		if (c->st.n_clients > 0)
			memcpy(snap.clients, c->st.clients,
			       (size_t)c->st.n_clients * sizeof *snap.clients);
		if (c->st.n_phases > 0)
			memcpy(snap.phases, c->st.phases,
			       (size_t)c->st.n_phases * sizeof *snap.phases);
		c->st_dirty = 0;
		pthread_mutex_unlock(&c->mu);
		rv = coord_state_save(&snap, c->cfg.run_dir);
		pthread_mutex_lock(&c->mu);
	}
	free(snap.clients);
	free(snap.phases);
	c->st_saved_at = fl_now_s();
	c->st_save_s = c->st_saved_at - t0;
	if (rv) {
		c->st_dirty = 1; /* try again at the next wake */
		coord_logf(c, FL_LOG_WARN, "cannot save state.json after registrations: %s",
		           fl_strerror(rv));
	}
}

/* Writes gone.json when the gone set changed (coordinator/gone.h): built
 * under mu, written with mu released, as save_registry_locked does. Only
 * the engine thread calls it. Called and returns with mu held. */
static void save_gone_locked(coord *c)
{
	char *text = NULL;
	int rv;

	if (!c->gone.dirty)
		return;
	if ((rv = coord_gone_to_json(&c->gone, &c->st, &text)) == 0) {
		pthread_mutex_unlock(&c->mu);
		rv = coord_gone_write(c->cfg.run_dir, text);
		pthread_mutex_lock(&c->mu);
	}
	free(text);
	c->gone_saved_at = fl_now_s();
	if (rv) {
		c->gone.dirty = 1; /* try again at the next wake */
		coord_logf(c, FL_LOG_WARN, "cannot save gone.json: %s", fl_strerror(rv));
	}
}

/* Waits on cv until deadline (monotonic seconds) or a broadcast. */
static void wait_until(coord *c, double deadline)
{
	struct timespec ts;
	double t = deadline;
	double now = fl_now_s();

	/* wake at least every 200 ms to notice stop requests */
	if (t > now + 0.2)
		t = now + 0.2;
	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	/* at most every STATE_SAVE_EVERY s, and never more than a fifth of the
	 * time (a registry of 10,000 clients takes tens of ms to write) */
	if (c->st_dirty && fl_now_s() - c->st_saved_at >= fmax(STATE_SAVE_EVERY, 4 * c->st_save_s))
		save_registry_locked(c);
	/* connections dropped (and clients back) between attempts: with the
	 * same cadence, after the registry that names their keys */
	if (c->gone.dirty && !c->st_dirty && fl_now_s() - c->gone_saved_at >= STATE_SAVE_EVERY)
		save_gone_locked(c);
}

/* Epsilon the run reaches if one more round runs (target check), or after
 * the rounds committed so far (more = 0), with the run's accountant; res
 * (may be NULL) gets the details. NAN without DP. The accountant memoises
 * its last answer, so the commit of a round after its look-ahead with the
 * same history costs nothing more. */
static int run_epsilon_locked(coord *c, int more, double *eps, priv_acct_eps *res)
{
	const coord_config *g = &c->cfg;
	priv_phase *ph = NULL;
	priv_acct_eps r;
	int n = 0, rv = 0;

	*eps = NAN;
	memset(&r, 0, sizeof r);
	if (c->dp == COORD_DP_SAMPLE) {
		/* worst-case client: it joined every round with local_steps steps */
		priv_phase one = {g->dp_noise, g->dp_q,
		                  (long)(c->st.round + more) * g->local_steps};
		if (!more)
			return 0; /* reported from the clients instead */
		if ((rv = priv_acct_epsilon(&c->acct, &one, 1, g->dp_delta, &r)) != 0)
			return rv;
		c->acct_s_round += r.seconds;
		*eps = r.epsilon;
		if (res)
			*res = r;
		return 0;
	}
	if (c->dp != COORD_DP_CLIENT)
		return 0;
	if (!(ph = calloc((size_t)c->st.n_phases + 1, sizeof *ph)))
		return FL_ENOMEM;
	for (int i = 0; i < c->st.n_phases; i++) {
		ph[n].sigma = c->st.phases[i].sigma;
		ph[n].q = c->st.phases[i].q;
		ph[n].steps = c->st.phases[i].steps;
		n++;
	}
	if (more) {
		double q = c->st.n_clients > 0 ? (double)g->clients_per_round / c->st.n_clients : 1;
		q = q > 1 ? 1 : q;
		/* merged as coord_state_add_phase will, so the memo matches the commit */
		if (n > 0 && ph[n - 1].sigma == g->dp_noise && ph[n - 1].q == q) {
			ph[n - 1].steps++;
		} else {
			ph[n].sigma = g->dp_noise;
			ph[n].q = q;
			ph[n].steps = 1;
			n++;
		}
	}
	rv = priv_acct_epsilon(&c->acct, ph, n, g->dp_delta, &r);
	free(ph);
	if (rv == 0) {
		c->acct_s_round += r.seconds;
		*eps = r.epsilon;
		if (res)
			*res = r;
	}
	return rv;
}

static void reset_round_metrics_locked(coord *c)
{
	cJSON_Delete(c->sa_aborts);
	c->sa_aborts = NULL;
	memset(c->rejected, 0, sizeof c->rejected);
	c->bytes_up = c->bytes_down = 0;
	c->retries_round = 0;
	c->acct_s_round = 0;
	c->gone_excluded = 0;
}

static void reset_attempt_locked(coord *c)
{
	c->n_reported = 0;
	c->w_sum = c->train_sum = c->eval_after_sum = c->eval_before_sum = 0;
	c->client_eps_round = 0;
}

/* Whether attempt `attempt` of cur_round keeps the updates already folded:
 * a retry after a failed quorum does (they were trained on the same global;
 * their clients would not train the same round twice). */
static int keeps_reports_locked(const coord *c, int attempt)
{
	return attempt > 1 && c->agg && c->n_reported > 0;
}

enum { PICK_KEPT, PICK_GONE, PICK_CAND };

/* What an attempt of cur_round does with registry index i: counts its kept
 * report (keep), leaves it out as gone, or may select it (readmit: also a
 * client that missed this round's deadline and sent a request since, whose
 * gone entry is then cleared). coord_gone_exclude may clear a client that is
 * back. */
static int pick_locked(coord *c, int i, int keep, int readmit)
{
	if (keep && i < c->n_sel && c->sel[i] == SEL_DONE)
		return PICK_KEPT;
	if (readmit && coord_gone_readmit(&c->gone, i, c->cur_round))
		return PICK_CAND;
	if (coord_gone_exclude(&c->gone, i, c->cur_round))
		return PICK_GONE;
	return PICK_CAND;
}

/* What the next attempt of cur_round could reach, counted over the registry
 * as open_round_locked would select. */
typedef struct coord_reach {
	int kept;       /* reports the attempt keeps */
	int selectable; /* candidates for its selection */
	int gone;       /* left out as gone */
	int slow;       /* of those, missed this round's deadline and sent a request since */
} coord_reach;

static void reach_locked(coord *c, coord_reach *r)
{
	int keep = keeps_reports_locked(c, c->attempt + 1);

	memset(r, 0, sizeof *r);
	for (int i = 0; i < c->st.n_clients; i++) {
		switch (pick_locked(c, i, keep, 0)) {
		case PICK_KEPT:
			r->kept++;
			break;
		case PICK_GONE:
			r->gone++;
			r->slow += coord_gone_slow(&c->gone, i, c->cur_round);
			break;
		default:
			r->selectable++;
		}
	}
}

/* Opens an attempt of round cur_round: selection, aggregator, signed Task.
 * readmit: clients that missed this round's deadline and sent a request
 * since are candidates again (the quorum needs them). */
static int open_round_locked(coord *c, int readmit)
{
	const coord_config *g = &c->cfg;
	lora_agg_opts ao;
	Fedlora__Task t = FEDLORA__TASK__INIT;
	Fedlora__TrainParams tp = FEDLORA__TRAIN_PARAMS__INIT;
	Fedlora__DpParams dp = FEDLORA__DP_PARAMS__INIT;
	fl_wire_tensors ts = {0};
	int *idx = NULL, count = 0, n = c->st.n_clients, rv;

	/* A retry after a failed quorum keeps the updates already folded and
	 * tops the selection up from the clients that have not reported:
	 * uniformly, or by Poisson sampling under client-level DP, where the
	 * accountant then charges the round the inclusion probability of all
	 * its attempts, 1 - (1 - q)^attempts (commit_round_locked). */
	int keep = keeps_reports_locked(c, c->attempt);
	int kept = 0, ncand = 0, excluded = 0;
	unsigned char *nsel = calloc((size_t)n, 1);
	int *cand = calloc((size_t)n, sizeof *cand);

	idx = calloc((size_t)n, sizeof *idx);
	if (!nsel || !cand || !idx) {
		free(nsel);
		free(cand);
		rv = FL_ENOMEM;
		goto fail;
	}
	for (int i = 0; i < n; i++) {
		switch (pick_locked(c, i, keep, readmit)) {
		case PICK_KEPT:
			nsel[i] = SEL_DONE;
			kept++;
			break;
		case PICK_GONE:
			excluded++; /* gone: not picked again until it is back */
			break;
		default:
			cand[ncand++] = i;
		}
	}
	c->gone_excluded += excluded;
	if (excluded)
		coord_logf(c, FL_LOG_INFO, "round %d attempt %d: %d gone client(s) left out",
		           c->cur_round, c->attempt, excluded);
	free(c->sel);
	c->sel = nsel;
	c->n_sel = n;
	rv = 0;
	if (c->dp == COORD_DP_CLIENT) {
		double q = (double)g->clients_per_round / n;
		rv = coord_sample_poisson(c->noise, ncand, q > 1 ? 1 : q, idx, &count);
		for (int i = 0; i < count; i++)
			idx[i] = cand[idx[i]];
	} else if (g->clients_per_round > kept && ncand > 0) {
		int want = g->clients_per_round - kept;
		/* a function of (seed, round, attempt): a restarted coordinator
		 * selects as the first one would have */
		fl_rng_init(&c->rng, (uint64_t)g->seed ^ 0x73656c656374ULL,
		            ((uint64_t)c->cur_round << 16) ^ (uint64_t)c->attempt);
		rv = coord_sample_uniform(&c->rng, ncand, want, idx);
		count = want < ncand ? want : ncand;
		for (int i = 0; i < count; i++)
			idx[i] = cand[idx[i]];
	}
	free(cand);
	if (rv)
		goto fail;
	for (int i = 0; i < count; i++)
		c->sel[idx[i]] = SEL_PENDING;
	c->n_selected = kept + count;
	if (keep)
		goto task; /* same aggregator, same running sums */
	reset_attempt_locked(c);

	lora_agg_free(c->agg);
	c->agg = NULL;
	lora_agg_opts_default(&ao);
	ao.strategy = c->strat;
	ao.compute_bias = g->compute_bias;
	ao.fair_lambda = g->fair_lambda;
	ao.fair_steps = g->fair_steps;
	ao.fair_lr = g->fair_lr;
	ao.fair_ridge = g->fair_ridge;
	if ((rv = coord_robust_opts(g, &ao.robust)) != 0)
		goto fail;
	if (c->dp == COORD_DP_CLIENT) {
		ao.dp_clip = g->dp_clip;
		ao.dp_noise = g->dp_noise;
		ao.dp_expected_clients =
		    g->expected_clients > 0 ? g->expected_clients : g->clients_per_round;
		ao.noise = c->noise;
	}
	if ((rv = lora_agg_new(&c->agg, c->global, &ao)) != 0)
		goto fail;

task:
	if ((rv = fl_wire_tensors_from_adapter(c->global, FL_WIRE_AB, FL_DTYPE_F32, &ts)) != 0)
		goto fail;
	tp.local_steps = (uint32_t)g->local_steps;
	tp.batch_size = (uint32_t)g->batch_size;
	tp.lr = g->lr;
	tp.weight_decay = g->weight_decay;
	tp.optimizer = strcmp(g->optimizer, "adamw") ? 0 : 1;
	tp.train_a = c->strat != LORA_FFA;
	/* minibatch order: a function of (seed, round, attempt) */
	{
		fl_rng r;
		fl_rng_init(&r, (uint64_t)g->seed ^ 0x726f756e64ULL,
		            ((uint64_t)c->cur_round << 16) ^ (uint64_t)c->attempt);
		tp.round_seed = fl_rng_u64(&r);
	}
	dp.mode = (uint32_t)c->dp;
	dp.clip = g->dp_clip;
	dp.noise = g->dp_noise;
	/* sample: the clients' example sampling rate; client: this round's
	 * client sampling rate (for their information) */
	if (c->dp == COORD_DP_SAMPLE)
		dp.q = g->dp_q;
	else if (c->dp == COORD_DP_CLIENT)
		dp.q = (double)g->clients_per_round / n > 1 ? 1 : (double)g->clients_per_round / n;
	dp.delta = g->dp_delta;
	dp.accountant = (uint32_t)c->acct.kind;
	dp.eps_error = c->acct.eps_error;
	t.run_id = c->st.run_id;
	t.round = (uint64_t)c->cur_round;
	t.n_tensors = ts.n;
	t.tensors = ts.t;
	t.train = &tp;
	t.dp = &dp;
	t.deadline_ms = (uint64_t)(g->round_timeout * 1000);
	t.dtype_up = FL_DTYPE_F32;
	if (g->secure_agg) {
		if ((rv = sa_open_locked(c, idx, count)) != 0)
			goto fail;
		t.secagg = c->sa ? sa_round_task_params(c->sa) : NULL;
	}
	free(c->task_buf);
	c->task_buf = NULL;
	rv = fl_wire_seal(&t.base, FL_MSG_TASK, &c->key, &c->task_buf, &c->task_len);
	fl_wire_tensors_fini(&ts);
	if (rv)
		goto fail;
	free(idx);
	return 0;
fail:
	free(idx);
	return rv;
}

/* Client-level DP: the sampling rate this round is charged with. One
 * attempt samples every client with q = K / registered; attempts after a
 * failed quorum sample the clients not yet included again, so a client's
 * inclusion probability over a attempts is 1 - (1 - q)^a. */
static double round_q_locked(const coord *c)
{
	double q = (double)c->cfg.clients_per_round / c->st.n_clients;
	if (q >= 1)
		return 1;
	return 1 - pow(1 - q, c->attempt);
}

/* JSON number or null for NaN/Inf. */
static cJSON *num_or_null(double x)
{
	return isfinite(x) ? cJSON_CreateNumber(x) : cJSON_CreateNull();
}

static int add(cJSON *o, const char *k, cJSON *v)
{
	if (!v)
		return FL_ENOMEM;
	if (!cJSON_AddItemToObject(o, k, v)) {
		cJSON_Delete(v);
		return FL_ENOMEM;
	}
	return 0;
}

/* The metrics line of the round being committed (malloc'd). */
static char *metrics_line_locked(coord *c, const lora_agg_stats *s, double seconds, double eps)
{
	const coord_config *g = &c->cfg;
	cJSON *o = cJSON_CreateObject(), *rej = cJSON_CreateObject();
	double w = c->w_sum > 0 ? c->w_sum : NAN;
	char *line = NULL;
	int rv = 0;

	if (!o || !rej) {
		cJSON_Delete(o);
		cJSON_Delete(rej);
		return NULL;
	}
	for (int i = 1; i < NREASONS; i++)
		if (c->rejected[i] && !rv)
			rv = add(rej, fl_reason_name(-i),
			         cJSON_CreateNumber((double)c->rejected[i]));
	rv |= add(o, "round", cJSON_CreateNumber(c->cur_round));
	rv |= add(o, "strategy", cJSON_CreateString(g->strategy));
	rv |= add(o, "selected", cJSON_CreateNumber(c->n_selected));
	rv |= add(o, "reported", cJSON_CreateNumber(c->n_reported));
	rv |= add(o, "rejected", rej);
	rv |= add(o, "train_loss", num_or_null(c->train_sum / w));
	rv |= add(o, "eval_loss", num_or_null(c->eval_after_sum / w));
	rv |= add(o, "eval_before", num_or_null(c->eval_before_sum / w));
	rv |= add(o, "agg_bias", num_or_null(s->agg_bias));
	rv |= add(o, "epsilon", c->dp == COORD_DP_NONE ? cJSON_CreateNull() : num_or_null(eps));
	rv |= add(o, "delta",
	          c->dp == COORD_DP_NONE ? cJSON_CreateNull() : cJSON_CreateNumber(g->dp_delta));
	rv |= add(o, "bytes_up", cJSON_CreateNumber((double)c->bytes_up));
	rv |= add(o, "bytes_down", cJSON_CreateNumber((double)c->bytes_down));
	rv |= add(o, "seconds", cJSON_CreateNumber(seconds));
	rv |= add(o, "registered", cJSON_CreateNumber(c->st.n_clients));
	rv |= add(o, "attempts", cJSON_CreateNumber(c->retries_round + 1));
	rv |= add(o, "gone_excluded", cJSON_CreateNumber((double)c->gone_excluded));
	rv |= add(o, "gone", cJSON_CreateNumber(c->gone.n_gone));
	rv |= add(o, "weight_sum", cJSON_CreateNumber(c->w_sum));
	rv |= add(o, "update_norm_mean", num_or_null(s->update_norm_mean));
	if (c->strat == LORA_FAIR) {
		rv |= add(o, "fair_cos_before", num_or_null(s->fair_cos_before));
		rv |= add(o, "fair_cos_after", num_or_null(s->fair_cos_after));
	}
	rv |= add(o, "aggregator", cJSON_CreateString(g->aggregator));
	rv |= add(o, "robust", coord_robust_json(&s->robust));
	rv |= add(o, "dp", cJSON_CreateString(g->dp));
	if (c->dp != COORD_DP_NONE) {
		rv |= add(o, "accountant", cJSON_CreateString(priv_acct_name(c->acct.kind)));
		if (c->acct.kind == PRIV_ACCT_PRV) {
			/* epsilon is the PRV upper bound: a guarantee */
			rv |= add(o, "eps_upper", num_or_null(eps));
			rv |= add(o, "eps_error", cJSON_CreateNumber(c->acct.eps_error));
		}
		if (c->dp == COORD_DP_CLIENT) {
			const priv_acct_eps *a = &c->acct_eps;
			if (c->acct.kind == PRIV_ACCT_PRV) {
				rv |= add(o, "eps_lower", num_or_null(a->lower));
				rv |= add(o, "eps_estimate", num_or_null(a->estimate));
				rv |= add(o, "rdp_epsilon", num_or_null(a->rdp_epsilon));
				if (a->fallback)
					rv |= add(o, "accountant_fallback", cJSON_CreateTrue());
			}
		}
		/* the coordinator's own accounting this round (target look-ahead
		 * and commit; a memoised answer costs 0) */
		rv |= add(o, "accountant_s", cJSON_CreateNumber(c->acct_s_round));
	}
	if (c->dp != COORD_DP_NONE) {
		rv |= add(o, "dp_clip", cJSON_CreateNumber(g->dp_clip));
		rv |= add(o, "dp_noise", cJSON_CreateNumber(g->dp_noise));
	}
	if (c->dp == COORD_DP_SAMPLE) {
		rv |= add(o, "dp_q", cJSON_CreateNumber(g->dp_q));
		rv |= add(o, "epsilon_round_max", num_or_null(c->client_eps_round));
	}
	if (c->dp == COORD_DP_CLIENT) {
		rv |= add(o, "dp_q", cJSON_CreateNumber(round_q_locked(c)));
		rv |= add(o, "dp_clipped_frac", num_or_null(s->dp_clipped_frac));
	}
	rv |= add(o, "secure_agg", cJSON_CreateBool(g->secure_agg));
	if (c->sa) {
		rv |= sa_round_metrics_json(c->sa, o);
		rv |= add(o, "sa_clipped", cJSON_CreateNumber((double)c->sa_clipped));
		rv |= add(o, "sa_aborts",
		          c->sa_aborts ? cJSON_Duplicate(c->sa_aborts, 1) : cJSON_CreateArray());
	}
	rv |= add(o, "time", cJSON_CreateNumber((double)time(NULL)));
	if (!rv)
		line = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return line;
}

/* Aggregates and commits cur_round (under mu). */
static int commit_round_locked(coord *c, double t_round_start)
{
	const coord_config *g = &c->cfg;
	lora_adapter *next = NULL;
	lora_agg_stats s;
	char path[PATH_MAX];
	char *line = NULL;
	double eps = NAN, seconds;
	int rv;

	memset(&s, 0, sizeof s);
	if ((rv = lora_adapter_clone(&next, c->global)) != 0)
		return rv;
	/* the round is closed and no fold is in flight: nothing else touches
	 * the aggregator, so the (for fair, longer) finish runs unlocked */
	if (c->sa) {
		rv = sa_commit_locked(c, next, &s);
	} else {
		pthread_mutex_unlock(&c->mu);
		rv = lora_agg_finish(c->agg, next, &s);
		pthread_mutex_lock(&c->mu);
	}
	if (rv) {
		coord_logf(c, FL_LOG_ERROR, "round %d: aggregation failed: %s", c->cur_round,
		           fl_strerror(rv));
		goto out;
	}
	/* the new state, committed only by the rename of state.json below */
	if (c->dp == COORD_DP_CLIENT) {
		if ((rv = coord_state_add_phase(&c->st, g->dp_noise, round_q_locked(c), 1)) != 0)
			goto out;
		if ((rv = run_epsilon_locked(c, 0, &eps, &c->acct_eps)) != 0)
			goto out;
	} else if (c->dp == COORD_DP_SAMPLE) {
		if (c->client_eps_round > c->st.client_eps_max)
			c->st.client_eps_max = c->client_eps_round;
		eps = c->st.client_eps_max;
	}
	seconds = fl_now_s() - t_round_start;
	coord_global_path(g->run_dir, c->cur_round, path, sizeof path);
	if ((rv = lora_adapter_save(next, path)) != 0) {
		coord_logf(c, FL_LOG_ERROR, "round %d: cannot write %s: %s", c->cur_round, path,
		           fl_strerror(rv));
		goto out;
	}
	coord_crash_hit(COORD_CRASH_AFTER_ADAPTER_WRITE);
	if (!(line = metrics_line_locked(c, &s, seconds, eps))) {
		rv = FL_ENOMEM;
		goto out;
	}
	if ((rv = coord_metrics_append(g->run_dir, c->cur_round, line)) != 0) {
		coord_logf(c, FL_LOG_ERROR, "round %d: cannot write metrics.jsonl: %s",
		           c->cur_round, fl_strerror(rv));
		goto out;
	}
	coord_crash_hit(COORD_CRASH_BEFORE_STATE_SAVE);
	c->st.round = c->cur_round;
	if (c->st.round >= g->rounds) {
		c->st.done = 1;
		snprintf(c->st.reason, sizeof c->st.reason, "rounds");
	}
	if ((rv = coord_state_save(&c->st, g->run_dir)) != 0) {
		c->st.round = c->cur_round - 1;
		c->st.done = 0;
		coord_logf(c, FL_LOG_ERROR, "round %d: cannot write state.json: %s", c->cur_round,
		           fl_strerror(rv));
		goto out;
	}
	coord_crash_hit(COORD_CRASH_AFTER_COMMIT);
	/* committed: the round's nonces are no longer needed (a Submit of it is
	 * stale now); a failure leaves records that loading skips */
	if (coord_nonce_log_reset(c->nonce_fd) != 0)
		coord_logf(c, FL_LOG_WARN, "round %d: cannot empty nonces.log: %s", c->cur_round,
		           strerror(errno));
	lora_adapter_copy(c->global, next);
	{
		char eps_s[48] = "";
		if (c->dp != COORD_DP_NONE)
			snprintf(eps_s, sizeof eps_s, " eps %.4g (%s)", eps,
			         priv_acct_name(c->acct.kind));
		coord_logf(
		    c, FL_LOG_INFO,
		    "round %d committed: %d/%d reported, train %.6g eval %.6g (before %.6g), bias "
		    "%.4g,%s %.2f s%s",
		    c->cur_round, c->n_reported, c->n_selected, c->train_sum / c->w_sum,
		    c->eval_after_sum / c->w_sum, c->eval_before_sum / c->w_sum, s.agg_bias, eps_s,
		    seconds, c->retries_round ? " (after quorum retries)" : "");
	}
	reset_round_metrics_locked(c);
out:
	free(line);
	lora_adapter_free(next);
	return rv;
}

/* coord_nonce_log_load callback: back into the round's nonce set. */
static int nonce_restore(void *arg, const unsigned char *nonce)
{
	coord *c = arg;
	int rv = fl_nonce_set_add(c->nonces, nonce, FL_NONCE_BYTES);
	return rv == FL_EREPLAY ? 0 : rv;
}

/* Marks the run done for `reason` and persists it. */
static int finish_run_locked(coord *c, const char *reason)
{
	c->st.done = 1;
	snprintf(c->st.reason, sizeof c->st.reason, "%s", reason);
	return coord_state_save(&c->st, c->cfg.run_dir);
}

int coord_run(coord *c, char *err, size_t errn)
{
	const coord_config *g = &c->cfg;
	double t_round = 0, deadline, t_wait_log = 0, t_quorum = 0, t_reach_log = 0;
	coord_reach reach;
	int rv = 0, readmit;

	if ((rv = start_server(c, err, errn)) != 0)
		return rv;
	pthread_mutex_lock(&c->mu);
	reset_round_metrics_locked(c);
	for (;;) {
		if (c->stop) {
			rv = FL_EDONE;
			break;
		}
		if (c->st.done)
			break;
		if (c->st.round >= g->rounds) {
			if ((rv = finish_run_locked(c, "rounds")) != 0)
				break;
			continue;
		}
		/* the first round of this process waits up to join_wait seconds
		 * (after the quorum registered) for a full selection */
		if (c->st.n_clients >= g->min_clients && c->st.n_clients < g->clients_per_round &&
		    c->cur_round == 0) {
			double t = fl_now_s();
			if (t_quorum == 0)
				t_quorum = t;
			if (t - t_quorum < g->join_wait) {
				wait_until(c, t_quorum + g->join_wait);
				continue;
			}
		}
		if (c->st.n_clients < g->min_clients) {
			double t = fl_now_s();
			if (t - t_wait_log > 10) {
				coord_logf(c, FL_LOG_INFO,
				           "waiting for clients: %d of %d registered",
				           c->st.n_clients, g->min_clients);
				t_wait_log = t;
			}
			wait_until(c, t + 1);
			continue;
		}
		if (g->target_eps > 0 && c->dp != COORD_DP_NONE) {
			double eps;
			if ((rv = run_epsilon_locked(c, 1, &eps, NULL)) != 0) {
				fl_seterr(err, errn, "accountant failed: %s", fl_strerror(rv));
				break;
			}
			if (!(eps <= g->target_eps)) {
				coord_logf(
				    c, FL_LOG_INFO,
				    "stopping before round %d: epsilon would reach %.4g > target "
				    "%.4g",
				    c->st.round + 1, eps, g->target_eps);
				if ((rv = finish_run_locked(c, "target_eps")) != 0)
					fl_seterr(err, errn, "cannot write state.json: %s",
					          fl_strerror(rv));
				break;
			}
		}
		/* open an attempt of the next round */
		if (c->cur_round != c->st.round + 1) {
			c->cur_round = c->st.round + 1;
			c->attempt = 0;
			fl_nonce_set_clear(c->nonces);
			t_round = fl_now_s();
			/* after a restart: the Submits this round accepted before */
			int nn = 0;
			if ((rv = coord_nonce_log_load(c->nonce_fd, c->cur_round, nonce_restore, c,
			                               &nn)) != 0) {
				fl_seterr(err, errn, "cannot read nonces.log: %s", fl_strerror(rv));
				break;
			}
			if (nn)
				coord_logf(
				    c, FL_LOG_INFO,
				    "round %d: %d nonce(s) of Submits accepted before the restart "
				    "restored from nonces.log",
				    c->cur_round, nn);
		}
		/* An attempt that cannot reach the quorum is not opened: it would
		 * select too few (often none), end at once and retry, spinning
		 * through attempts while the clients stay away. Clients that
		 * missed this round's deadline but are alive are selected again
		 * when the quorum needs them; otherwise the round waits (no
		 * attempt, no retry counted) until clients come back. */
		reach_locked(c, &reach);
		readmit = 0;
		if (reach.kept + reach.selectable < g->min_clients) {
			double t = fl_now_s();
			if (reach.kept + reach.selectable + reach.slow < g->min_clients) {
				if (t - t_reach_log > 10) {
					coord_logf(
					    c, FL_LOG_INFO,
					    "round %d: waiting for clients: %d selectable, %d gone "
					    "(left out until back), quorum %d, %d update(s) kept",
					    c->cur_round, reach.selectable, reach.gone,
					    g->min_clients, reach.kept);
					t_reach_log = t;
				}
				wait_until(c, t + 1);
				continue;
			}
			readmit = 1;
			coord_logf(
			    c, FL_LOG_INFO,
			    "round %d: quorum %d needs %d client(s) that missed its deadline; "
			    "selecting them again",
			    c->cur_round, g->min_clients, reach.slow);
		}
		c->attempt++;
		/* the gone set the selection leaves out is on disk first, so a
		 * restart leaves the same clients out (mu is released here, so
		 * before the registry write below) */
		save_gone_locked(c);
		/* every client a selection can pick is in state.json first */
		if (c->st_dirty && (rv = coord_state_save(&c->st, g->run_dir)) != 0) {
			fl_seterr(err, errn, "cannot write state.json: %s", fl_strerror(rv));
			break;
		}
		c->st_dirty = 0;
		if ((rv = open_round_locked(c, readmit)) != 0) {
			fl_seterr(err, errn, "cannot open round %d: %s", c->cur_round,
			          fl_strerror(rv));
			break;
		}
		c->phase = PH_OPEN;
		deadline = fl_now_s() + g->round_timeout;
		coord_logf(c, FL_LOG_DEBUG, "round %d (attempt %d): %d of %d clients selected",
		           c->cur_round, c->attempt, c->n_selected, c->st.n_clients);
		wake_parked_locked(c);
		if (g->secure_agg) {
			char why[300];
			if (c->n_selected < g->min_clients) {
				/* gone clients left out: fewer than the quorum, which the
				 * secure round would cap at its n and so not enforce */
				snprintf(why, sizeof why,
				         "%d selected (gone clients left out), fewer than "
				         "min_survivors %d (the quorum)",
				         c->n_selected, g->min_clients);
				sa_round_free(c->sa);
				c->sa = NULL;
				rv = FL_EQUORUM;
			} else {
				rv = sa_run_locked(c, why, sizeof why);
			}
			c->phase = PH_CLOSED;
			if (rv == FL_EDONE)
				break;
			if (rv == FL_EQUORUM) {
				c->phase = PH_IDLE;
				if ((rv = sa_abort_locked(c, why, err, errn)) != 0)
					break;
				wait_until(c, fl_now_s() + 0.2);
				continue;
			}
			rv = commit_round_locked(c, t_round);
			c->phase = PH_IDLE;
			sa_round_free(c->sa);
			c->sa = NULL;
			if (rv) {
				fl_seterr(err, errn, "cannot commit round %d: %s", c->cur_round,
				          fl_strerror(rv));
				break;
			}
			continue;
		}
		while (!c->stop && c->n_reported < c->n_selected && fl_now_s() < deadline)
			wait_until(c, deadline);
		c->phase = PH_CLOSED;
		while (c->folding > 0)
			wait_until(c, fl_now_s() + 1);
		for (int i = 0; i < c->n_sel; i++) /* missed the deadline: gone */
			if (c->sel[i] == SEL_PENDING)
				coord_gone_mark_missed(&c->gone, i, c->cur_round);
		save_gone_locked(c); /* before the commit or the retry */
		if (c->stop) {
			rv = FL_EDONE;
			break;
		}
		if (c->n_reported < g->min_clients || c->n_reported == 0) {
			c->st.retries++;
			c->retries_round++;
			c->phase = PH_IDLE;
			if (g->max_attempts > 0 && c->attempt >= g->max_attempts) {
				rv = quorum_abort_locked(c, err, errn);
				break;
			}
			coord_logf(c, FL_LOG_WARN,
			           "round %d attempt %d: %d of %d selected reported, quorum is %d; "
			           "retrying with a new selection",
			           c->cur_round, c->attempt, c->n_reported, c->n_selected,
			           g->min_clients);
			/* a short pause so a lost pool does not spin */
			wait_until(c, fl_now_s() + 0.2);
			continue;
		}
		rv = commit_round_locked(c, t_round);
		c->phase = PH_IDLE;
		if (rv) {
			fl_seterr(err, errn, "cannot commit round %d: %s", c->cur_round,
			          fl_strerror(rv));
			break;
		}
	}
	/* answer Done (or, when stopping, nothing) for a while, then go */
	if (rv == 0) {
		double end;
		coord_crash_hit(COORD_CRASH_DONE);
		end = fl_now_s() + g->linger;
		/* linger until every registered client was told Done (or the
		 * linger time passed: some clients may be gone for good) */
		free(c->done_told);
		c->done_told = calloc((size_t)c->st.n_clients + 1, 1);
		c->n_done = c->done_told ? c->st.n_clients : 0;
		c->n_told = 0;
		c->phase = PH_DONE;
		wake_parked_locked(c);
		coord_logf(c, FL_LOG_INFO, "run %s done (%s) after round %d", c->st.run_id,
		           c->st.reason, c->st.round);
		while (!c->stop && fl_now_s() < end && !(c->n_done > 0 && c->n_told >= c->n_done))
			wait_until(c, end);
	}
	pthread_mutex_unlock(&c->mu);
	/* a client counts as told when its Done is built: give the last replies
	 * time to leave before the socket closes */
	if (rv == 0)
		nng_msleep(500);
	return rv;
}

/* ------------------------------------------------ secure aggregation */

/* GetTask of a client waiting for SaDown phase `want` (under mu). */
static nng_msg *sa_gettask_locked(coord *c, int idx, uint32_t want, int held, int *park)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	char why[300], who[32];
	nng_msg *m = NULL;
	int rv = FL_ESTALE;

	snprintf(why, sizeof why, "no secure round open");
	if (c->sa && c->phase == PH_OPEN)
		rv = sa_round_down(c->sa, idx, want, &buf, &len, why, sizeof why);
	if (rv == 1) { /* that phase is not reached yet: hold the poll */
		if (!held && c->n_parked < c->nworks / 2) {
			*park = 1;
			return NULL;
		}
		return make_wait(c, 100);
	}
	if (rv < 0) {
		snprintf(who, sizeof who, "client #%d", idx);
		count_reject_locked(c, rv, who, why);
		return make_reject(c, rv, why);
	}
	if (nng_msg_alloc(&m, 0) != 0 || nng_msg_append(m, buf, len) != 0) {
		nng_msg_free(m);
		m = NULL;
	}
	c->bytes_down += len;
	free(buf);
	return m;
}

/* A client's message of one secure aggregation phase. */
static nng_msg *handle_sa_up(coord *c, const fl_wire_msg *m, const char *who)
{
	const Fedlora__SaUp *u = (const Fedlora__SaUp *)m->body;
	Fedlora__Ack ack = FEDLORA__ACK__INIT;
	char hex[PRIV_PK_HEX], why[300];
	int idx, rv;

	if ((rv = fl_wire_check_run(u->run_id, c->st.run_id)) != 0)
		return reject(c, rv, who, "sa_up: run id of another run");
	if (!key_admitted(c, m->signer))
		return reject(c, FL_EKEY, who, "sa_up: key not on the allow list");
	if (u->nonce.len != FL_NONCE_BYTES)
		return reject(c, FL_EFORMAT, who, "sa_up: nonce must be %d bytes", FL_NONCE_BYTES);
	priv_pk_to_hex(m->signer, hex);
	pthread_mutex_lock(&c->mu);
	idx = coord_state_find_client(&c->st, hex);
	if (idx < 0) {
		rv = FL_EKEY;
		snprintf(why, sizeof why, "sa_up: not registered (send Hello first)");
	} else if (!c->sa || c->phase != PH_OPEN || u->round != (uint64_t)c->cur_round) {
		rv = FL_ESTALE;
		snprintf(why, sizeof why, "sa_up: round %llu has no secure round open",
		         (unsigned long long)u->round);
	} else if ((rv = fl_nonce_set_add(c->nonces, u->nonce.data, u->nonce.len)) != 0) {
		snprintf(why, sizeof why, "sa_up: %s",
		         rv == FL_EREPLAY ? "replayed nonce" : fl_strerror(rv));
	} else {
		char r2[256];
		rv = sa_round_up(c->sa, idx, u, r2, sizeof r2);
		snprintf(why, sizeof why, "sa_up phase %u: %s", u->phase, r2);
	}
	if (rv == 0) {
		sa_round_count_bytes(c->sa, m->wire_len, 0);
		c->bytes_up += m->wire_len;
		pthread_cond_broadcast(&c->cv);
	} else {
		count_reject_locked(c, rv, who, why);
	}
	pthread_mutex_unlock(&c->mu);
	if (rv)
		return make_reject(c, rv, why);
	ack.run_id = c->st.run_id;
	ack.round = u->round;
	ack.nonce = u->nonce;
	return seal(c, &ack.base, FL_MSG_ACK);
}

/* Secure aggregation: the attempt's state for the selected clients idx[0..count)
 * (selection order). A selection it cannot run (fewer than 2 clients, params
 * that overflow) leaves c->sa NULL with the reason in c->sa_why: the engine
 * aborts the attempt. Only FL_ENOMEM fails. */
static int sa_open_locked(coord *c, const int *idx, int count)
{
	const coord_config *g = &c->cfg;
	sa_round_opts o;
	int *reg = calloc((size_t)count + 1, sizeof *reg), rv = 0;
	uint8_t(*pk)[32] = calloc((size_t)count + 1, 32);

	sa_round_free(c->sa);
	c->sa = NULL;
	c->sa_why[0] = 0;
	if (!reg || !pk) {
		rv = FL_ENOMEM;
		goto out;
	}
	for (int i = 0; i < count; i++) {
		const coord_client *cl = &c->st.clients[idx[i]];
		reg[i] = idx[i];
		if (priv_pk_from_hex(cl->key, strlen(cl->key), pk[i]) != 0) {
			snprintf(c->sa_why, sizeof c->sa_why, "registry key %d unreadable", idx[i]);
			goto out;
		}
	}
	memset(&o, 0, sizeof o);
	o.run_id = c->st.run_id;
	o.round = c->cur_round;
	o.attempt = c->attempt;
	o.n = count;
	o.min_clients = g->min_clients;
	o.reg = reg;
	o.id_pk = (const uint8_t(*)[32])pk;
	o.strat = c->strat;
	o.global = c->global;
	o.clip = g->sa_clip;
	o.frac_bits = g->sa_frac_bits;
	o.keys_timeout = g->round_timeout;
	o.phase_timeout = g->sa_phase_timeout;
	if (c->dp == COORD_DP_CLIENT) {
		o.dp_clip = g->dp_clip;
		o.dp_noise = g->dp_noise;
		o.dp_expected =
		    g->expected_clients > 0 ? g->expected_clients : g->clients_per_round;
	}
	o.key = &c->key;
	rv = sa_round_new(&c->sa, &o, fl_now_s(), c->sa_why, sizeof c->sa_why);
	if (rv == FL_EINVAL)
		rv = 0; /* reason in sa_why; the engine aborts the attempt */
out:
	free(reg);
	free(pk);
	return rv;
}

/* Secure aggregation: the unmasked sum into next; the round's metrics from
 * the survivors (under mu; the round is closed, so the attempt is idle). */
static int sa_commit_locked(coord *c, lora_adapter *next, lora_agg_stats *s)
{
	sa_round_result res;
	int rv = sa_round_apply(c->sa, next, c->noise, &res);
	if (rv)
		return rv;
	c->n_reported = res.survivors;
	c->w_sum = res.w_sum;
	c->train_sum = res.train_sum;
	c->eval_after_sum = res.eval_after_sum;
	c->eval_before_sum = res.eval_before_sum;
	c->client_eps_round = res.client_eps_max;
	c->sa_clipped = res.clipped;
	/* the individual updates are hidden: no bias or norm statistics */
	s->agg_bias = s->update_norm_mean = s->dp_clipped_frac = NAN;
	if (res.clipped)
		coord_logf(c, FL_LOG_WARN,
		           "round %d: %llu coordinate(s) beyond the secure aggregation clip were "
		           "clipped (raise --sa-clip)",
		           c->cur_round, (unsigned long long)res.clipped);
	if (res.dropped)
		coord_logf(
		    c, FL_LOG_INFO,
		    "round %d: %d client(s) dropped out after sending keys; their masks were "
		    "removed from the sum",
		    c->cur_round, res.dropped);
	return 0;
}

/* Secure aggregation: drives the open attempt's phases (under mu). 0: the
 * sum is unmasked; FL_EQUORUM: aborted (reason in why); FL_EDONE: stop. */
static int sa_run_locked(coord *c, char *why, size_t whylen)
{
	int st = c->sa ? SA_RUNNING : SA_ABORTED;

	if (!c->sa)
		snprintf(why, whylen, "%s", c->sa_why);
	while (st == SA_RUNNING || st == SA_ADVANCED) {
		if (c->stop)
			return FL_EDONE;
		st = sa_round_tick(c->sa, fl_now_s());
		if (st == SA_ADVANCED)
			wake_parked_locked(c); /* held polls get the new phase's message */
		else if (st == SA_RUNNING)
			wait_until(c, sa_round_deadline(c->sa));
	}
	if (st == SA_FINISHED)
		return 0;
	if (c->sa)
		snprintf(why, whylen, "%s", sa_round_why(c->sa));
	wake_parked_locked(c); /* held polls learn of the abort */
	return FL_EQUORUM;
}

/* The start of the metrics line of a round that stops the run:
 * {"round": R, "aborted": true}; NULL when out of memory. */
static cJSON *abort_line_new_locked(const coord *c)
{
	cJSON *o = cJSON_CreateObject();

	if (o && !(cJSON_AddNumberToObject(o, "round", c->cur_round) &&
	           cJSON_AddTrueToObject(o, "aborted"))) {
		cJSON_Delete(o);
		o = NULL;
	}
	return o;
}

/* Ends the abort line o (abort_line_new_locked, more keys added; NULL when
 * building it failed) with "time", appends it to metrics.jsonl, frees it and
 * marks the run done for `reason` (state.json). Failures are logged: the run
 * stops either way. */
static void abort_run_locked(coord *c, cJSON *o, const char *reason)
{
	char *line = NULL;

	if (o && cJSON_AddNumberToObject(o, "time", (double)time(NULL)))
		line = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!line || coord_metrics_append(c->cfg.run_dir, c->cur_round, line) != 0)
		coord_logf(c, FL_LOG_ERROR, "round %d: cannot write the abort to metrics.jsonl",
		           c->cur_round);
	free(line);
	if (finish_run_locked(c, reason) != 0)
		coord_logf(c, FL_LOG_ERROR, "round %d: cannot write state.json", c->cur_round);
}

/* The attempt that just closed below the quorum was the max_attempts-th of
 * cur_round: the run stops (state.json reason "quorum", a metrics line with
 * "aborted": true). Returns FL_EQUORUM with the reason in err. */
static int quorum_abort_locked(coord *c, char *err, size_t errn)
{
	const coord_config *g = &c->cfg;
	cJSON *o = abort_line_new_locked(c);

	if (o && !(cJSON_AddStringToObject(o, "reason", "quorum") &&
	           cJSON_AddNumberToObject(o, "attempts", c->attempt) &&
	           cJSON_AddNumberToObject(o, "selected", c->n_selected) &&
	           cJSON_AddNumberToObject(o, "reported", c->n_reported) &&
	           cJSON_AddNumberToObject(o, "min_clients", g->min_clients) &&
	           cJSON_AddNumberToObject(o, "registered", c->st.n_clients) &&
	           cJSON_AddNumberToObject(o, "gone_excluded", (double)c->gone_excluded) &&
	           cJSON_AddNumberToObject(o, "gone", c->gone.n_gone))) {
		cJSON_Delete(o);
		o = NULL;
	}
	coord_logf(c, FL_LOG_ERROR,
	           "round %d attempt %d: %d of %d selected reported, quorum is %d; "
	           "--max-attempts %d reached, stopping the run",
	           c->cur_round, c->attempt, c->n_reported, c->n_selected, g->min_clients,
	           g->max_attempts);
	abort_run_locked(c, o, "quorum");
	fl_seterr(err, errn,
	          "round %d: no quorum in %d attempt(s) (--max-attempts %d; last attempt: %d of "
	          "%d selected reported, quorum %d); run stopped",
	          c->cur_round, c->attempt, g->max_attempts, c->n_reported, c->n_selected,
	          g->min_clients);
	return FL_EQUORUM;
}

/* Secure aggregation: an aborted attempt. Nothing was decoded. Logged and
 * kept for the round's metrics line; after sa_max_aborts attempts of one
 * round the run stops (state.json reason "secagg_abort", a metrics line
 * with "aborted": true). 0: retry. */
static int sa_abort_locked(coord *c, const char *why, char *err, size_t errn)
{
	cJSON *a = cJSON_CreateObject();
	int n, last;

	if (!c->sa_aborts)
		c->sa_aborts = cJSON_CreateArray();
	if (a && c->sa_aborts) {
		cJSON_AddNumberToObject(a, "attempt", c->attempt);
		cJSON_AddStringToObject(a, "reason", why);
		cJSON_AddItemToArray(c->sa_aborts, a);
	} else {
		cJSON_Delete(a);
	}
	n = c->sa_aborts ? cJSON_GetArraySize(c->sa_aborts) : c->attempt;
	/* --max-attempts counts every attempt of the round; each one of a
	 * secure round that failed aborted */
	last = n >= c->cfg.sa_max_aborts ||
	       (c->cfg.max_attempts > 0 && c->attempt >= c->cfg.max_attempts);
	c->st.retries++;
	c->retries_round++;
	coord_logf(c, FL_LOG_WARN,
	           "round %d attempt %d: secure aggregation aborted, nothing revealed: %s%s",
	           c->cur_round, c->attempt, why, last ? "" : "; retrying with a new selection");
	sa_round_free(c->sa);
	c->sa = NULL;
	if (!last)
		return 0;
	{
		cJSON *o = abort_line_new_locked(c);
		if (o &&
		    !(cJSON_AddTrueToObject(o, "secure_agg") &&
		      cJSON_AddItemToObject(o, "sa_aborts", cJSON_Duplicate(c->sa_aborts, 1)))) {
			cJSON_Delete(o);
			o = NULL;
		}
		abort_run_locked(c, o, "secagg_abort");
	}
	fl_seterr(err, errn,
	          "secure aggregation: round %d aborted %d time(s) (last: %s); run stopped",
	          c->cur_round, n, why);
	return FL_EQUORUM;
}
