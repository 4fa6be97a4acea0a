/*
 * tests/secagg_coord_test.c — a live coordinator with --secure-agg (inproc,
 * in a thread) driven by three hand-made clients through every phase of two
 * rounds, with the messages sealed and opened as on the wire: the committed
 * adapter is the mean of the clients' updates; a resent SaUp is a replay; a
 * SaUp of another run or round, or of round 1's attempt sent in round 2, is
 * stale; a plain Submit is refused in a secure run; a GetTask for a phase of
 * a round that is not open is refused (stale).
 */
#include <math.h>
#include <nng/nng.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/secagg_client.h"
#include "coordinator/config.h"
#include "coordinator/coord.h"
#include "core/net.h"
#include "core/wire.h"
#include "lora/adapter.h"
#include "lora/io.h"
#include "privacy/sign.h"
#include "tests/test.h"

#define NC 3

static uint8_t coord_pk[PRIV_PK_BYTES];

typedef struct live {
	coord *c;
	pthread_t th;
	int rv;
	char err[256];
} live;

static void *live_main(void *arg)
{
	live *l = arg;
	l->rv = coord_run(l->c, l->err, sizeof l->err);
	return NULL;
}

typedef struct tcl {
	priv_key key;
	nng_socket s;
	char run_id[FL_RUN_ID_MAX + 1];
	sa_client *sa;
	lora_adapter *global, *trained;
	Fedlora__TrainMetrics met;
} tcl;

static int raw(tcl *t, const uint8_t *buf, size_t len, fl_wire_msg *m)
{
	nng_msg *rep = NULL;
	int rv = fl_net_call(t->s, buf, len, &rep);
	if (rv)
		return rv;
	rv = fl_wire_open_msg(rep, 64u << 20, coord_pk, m);
	nng_msg_free(rep);
	return rv;
}

/* Seals body; optionally keeps the sealed bytes in *keep. */
static int call(tcl *t, const ProtobufCMessage *body, uint32_t type, fl_wire_msg *m, uint8_t **keep,
                size_t *keep_len)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rv = fl_wire_seal(body, type, &t->key, &buf, &len);
	if (rv)
		return rv;
	rv = raw(t, buf, len, m);
	if (keep) {
		*keep = buf;
		*keep_len = len;
	} else {
		free(buf);
	}
	return rv;
}

/* Reply code: 0 for Ack, the Reject's code, FL_EFORMAT otherwise. */
static int reply_code(fl_wire_msg *m)
{
	int rv = m->type == FL_MSG_ACK      ? 0
	         : m->type == FL_MSG_REJECT ? ((Fedlora__Reject *)m->body)->code
	                                    : FL_EFORMAT;
	fl_wire_msg_fini(m);
	return rv;
}

static int up(tcl *t, const Fedlora__SaUp *u, uint8_t **keep, size_t *keep_len)
{
	fl_wire_msg m;
	int rv = call(t, &u->base, FL_MSG_SA_UP, &m, keep, keep_len);
	return rv ? rv : reply_code(&m);
}

/* GetTask naming phase want until a non-Wait reply (into m). */
static int get(tcl *t, uint32_t want, uint64_t last, fl_wire_msg *m)
{
	for (int i = 0; i < 200; i++) {
		Fedlora__GetTask g = FEDLORA__GET_TASK__INIT;
		int rv;
		g.run_id = t->run_id;
		g.last_round_seen = last;
		g.sa_phase = want;
		if ((rv = call(t, &g.base, FL_MSG_GET_TASK, m, NULL, NULL)) != 0)
			return rv;
		if (m->type != FL_MSG_WAIT)
			return 0;
		fl_wire_msg_fini(m);
	}
	return FL_ETIMEOUT;
}

static void hello(tcl *t)
{
	Fedlora__Hello h = FEDLORA__HELLO__INIT;
	fl_wire_msg m;
	h.client_key.data = t->key.pk;
	h.client_key.len = PRIV_PK_BYTES;
	h.software_version = "test";
	h.num_samples = 100;
	CHECK_RC(call(t, &h.base, FL_MSG_HELLO, &m, NULL, NULL));
	CHECK(m.type == FL_MSG_WELCOME);
	if (m.type == FL_MSG_WELCOME)
		snprintf(t->run_id, sizeof t->run_id, "%s", ((Fedlora__Welcome *)m.body)->run_id);
	fl_wire_msg_fini(&m);
}

/* Task of round r for client i: sa_client, global, trained = global + delta */
static void task(tcl *t, int i, uint64_t r)
{
	fl_wire_msg m;
	char why[200];
	CHECK_RC(get(t, 0, r - 1, &m));
	CHECK(m.type == FL_MSG_TASK);
	if (m.type != FL_MSG_TASK) {
		fl_wire_msg_fini(&m);
		return;
	}
	const Fedlora__Task *tk = (const Fedlora__Task *)m.body;
	CHECK(tk->round == r && tk->secagg != NULL);
	CHECK_RC(fl_wire_tensors_to_adapter(tk->tensors, tk->n_tensors, FL_WIRE_AB, t->global));
	CHECK_RC(lora_adapter_copy(t->trained, t->global));
	for (size_t j = 0; j < t->global->n_a + t->global->n_b; j++)
		t->trained->params[j] += 0.01f * (float)(i + 1) * ((float)(j % 7) - 3.0f);
	sa_client_free(t->sa);
	t->sa = NULL;
	CHECK_RC(sa_client_new(&t->sa, tk, t->run_id, &t->key, why, sizeof why));
	fl_wire_msg_fini(&m);
}

static const Fedlora__SaDown *sad(fl_wire_msg *m)
{
	return m->type == FL_MSG_SA_DOWN ? (const Fedlora__SaDown *)m->body : NULL;
}

/* Phases 2..5 of every client (keys already sent). */
static void rest_of_round(tcl *c, uint64_t r)
{
	Fedlora__SaUp u;
	fl_wire_msg m;
	for (int i = 0; i < NC; i++) {
		CHECK_RC(get(&c[i], 1, r - 1, &m));
		CHECK(sad(&m) && sa_client_on_keylist(c[i].sa, sad(&m), &u) == 0);
		CHECK_RC(up(&c[i], &u, NULL, NULL));
		fl_wire_msg_fini(&m);
	}
	for (int i = 0; i < NC; i++) {
		float *x = NULL;
		size_t len = 0;
		CHECK_RC(get(&c[i], 2, r - 1, &m));
		CHECK(sad(&m) && sa_client_on_boxes(c[i].sa, sad(&m)) == 0);
		fl_wire_msg_fini(&m);
		CHECK_RC(sa_client_vector(c[i].global, c[i].trained, 1, sa_client_weight(c[i].sa),
		                          0, &x, &len));
		CHECK_RC(sa_client_mask(c[i].sa, x, len, &u, NULL));
		free(x);
		u.num_samples = 100;
		u.metrics = &c[i].met;
		CHECK_RC(up(&c[i], &u, NULL, NULL));
	}
	for (int i = 0; i < NC; i++) {
		CHECK_RC(get(&c[i], 3, r - 1, &m));
		CHECK(sad(&m) && sa_client_on_survivors(c[i].sa, sad(&m), &u) == 0);
		CHECK_RC(up(&c[i], &u, NULL, NULL));
		fl_wire_msg_fini(&m);
	}
	for (int i = 0; i < NC; i++) {
		CHECK_RC(get(&c[i], 4, r - 1, &m));
		CHECK(sad(&m) && sa_client_on_unmask(c[i].sa, sad(&m), &u) == 0);
		CHECK_RC(up(&c[i], &u, NULL, NULL));
		fl_wire_msg_fini(&m);
	}
}

/* RUN/global/round-R equals the mean of the clients' trained adapters */
static void check_committed(const char *run_dir, int r, tcl *c)
{
	char path[600];
	lora_adapter *g = NULL;
	double err = 0;
	for (int k = 0; k < 100; k++) {
		snprintf(path, sizeof path, "%s/global/round-%06d.safetensors", run_dir, r);
		if (access(path, F_OK) == 0)
			break;
		usleep(20000);
	}
	usleep(50000); /* the rename is atomic; give the commit its state.json */
	CHECK_RC(lora_adapter_load(&g, path));
	if (!g)
		return;
	for (size_t j = 0; j < g->n_a + g->n_b; j++) {
		double mean = 0;
		for (int i = 0; i < NC; i++)
			mean += c[i].trained->params[j] / (double)NC;
		if (fabs(g->params[j] - mean) > err)
			err = fabs(g->params[j] - mean);
	}
	CHECK(err < 1e-6);
	lora_adapter_free(g);
}

static void test_live_secure_rounds(void)
{
	char dir[256], prefix[300], err[256] = "";
	const char *names[] = {"layers.0", "layers.1"};
	const int dims[] = {8, 8};
	coord_config cfg;
	live l;
	tcl c[NC];
	uint8_t *keys1 = NULL;
	size_t keys1_len = 0;
	Fedlora__SaUp u;
	fl_wire_msg m;

	snprintf(dir, sizeof dir, "%s/satest.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(dir) != NULL);
	coord_config_default(&cfg);
	snprintf(cfg.listen, sizeof cfg.listen, "inproc://secagg-coord-test");
	snprintf(cfg.run_dir, sizeof cfg.run_dir, "%s/run", dir);
	snprintf(prefix, sizeof prefix, "%s/coord", dir);
	snprintf(cfg.key, sizeof cfg.key, "%s.key", prefix);
	CHECK_RC(priv_keygen(prefix, 0, coord_pk));
	cfg.enroll_any = 1;
	cfg.linreg_layers = 2;
	cfg.linreg_dim = 8;
	cfg.rank = 2;
	cfg.rounds = 2;
	cfg.clients_per_round = NC;
	cfg.min_clients = NC;
	cfg.round_timeout = 20;
	cfg.sa_phase_timeout = 20;
	cfg.poll_timeout = 0.05;
	cfg.linger = 0.3;
	cfg.join_wait = 0;
	cfg.contexts = 8;
	cfg.secure_agg = 1;
	memset(&l, 0, sizeof l);
	CHECK_RC(coord_open(&l.c, &cfg, err, sizeof err));
	if (!l.c) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK(pthread_create(&l.th, NULL, live_main, &l) == 0);
	for (int i = 0; i < NC; i++) {
		fl_net_opts o;
		memset(&c[i], 0, sizeof c[i]);
		fl_net_opts_default(&o);
		o.recv_timeout_ms = 5000;
		o.recv_max = 8u << 20;
		CHECK_RC(priv_key_generate(&c[i].key));
		CHECK_RC(fl_net_dial(&c[i].s, cfg.listen, &o));
		CHECK_RC(lora_adapter_new(&c[i].global, 2, names, dims, dims, 2, 8));
		CHECK_RC(lora_adapter_new(&c[i].trained, 2, names, dims, dims, 2, 8));
		fedlora__train_metrics__init(&c[i].met);
		hello(&c[i]);
	}

	/* round 1 */
	for (int i = 0; i < NC; i++)
		task(&c[i], i, 1);
	CHECK_RC(sa_client_keys(c[0].sa, 100, &u));
	CHECK_RC(up(&c[0], &u, &keys1, &keys1_len));
	CHECK(raw(&c[0], keys1, keys1_len, &m) == 0 && reply_code(&m) == FL_EREPLAY);
	CHECK_RC(sa_client_keys(c[1].sa, 100, &u));
	u.round = 2; /* another round */
	CHECK(up(&c[1], &u, NULL, NULL) == FL_ESTALE);
	CHECK_RC(sa_client_keys(c[1].sa, 100, &u));
	u.run_id = "another-run";
	CHECK(up(&c[1], &u, NULL, NULL) == FL_ESTALE);
	/* a plain Submit in a secure run */
	{
		Fedlora__Submit s = FEDLORA__SUBMIT__INIT;
		uint8_t nonce[FL_NONCE_BYTES];
		fl_wire_nonce(nonce);
		s.run_id = c[1].run_id;
		s.round = 1;
		s.nonce.data = nonce;
		s.nonce.len = sizeof nonce;
		s.num_samples = 100;
		CHECK_RC(call(&c[1], &s.base, FL_MSG_SUBMIT, &m, NULL, NULL));
		CHECK(reply_code(&m) == FL_ESTATE);
	}
	for (int i = 1; i < NC; i++) {
		CHECK_RC(sa_client_keys(c[i].sa, 100, &u));
		CHECK_RC(up(&c[i], &u, NULL, NULL));
	}
	rest_of_round(c, 1);
	check_committed(cfg.run_dir, 1, c);

	/* round 2: round 1's keys message, and one with round 1's session */
	for (int i = 0; i < NC; i++)
		task(&c[i], i, 2);
	CHECK(raw(&c[0], keys1, keys1_len, &m) == 0 && reply_code(&m) == FL_ESTALE);
	{
		Fedlora__SaUp v;
		fl_wire_msg mm;
		CHECK_RC(sa_client_keys(c[0].sa, 100, &v));
		v.session.data = (uint8_t *)"0123456789abcdef"; /* not this attempt's */
		CHECK_RC(call(&c[0], &v.base, FL_MSG_SA_UP, &mm, NULL, NULL));
		CHECK(reply_code(&mm) == FL_ESTALE);
	}
	for (int i = 0; i < NC; i++) {
		CHECK_RC(sa_client_keys(c[i].sa, 100, &u));
		CHECK_RC(up(&c[i], &u, NULL, NULL));
	}
	rest_of_round(c, 2);
	check_committed(cfg.run_dir, 2, c);
	/* the run is over: a phase GetTask is refused as stale, or told Done */
	CHECK_RC(get(&c[1], 1, 1, &m));
	CHECK(m.type == FL_MSG_DONE || reply_code(&m) == FL_ESTALE);
	if (m.type == FL_MSG_DONE)
		fl_wire_msg_fini(&m);
	free(keys1);

	if (test_cur_failed)
		coord_request_stop(l.c);
	pthread_join(l.th, NULL);
	CHECK(l.rv == 0);
	coord_close(l.c);
	for (int i = 0; i < NC; i++) {
		nng_close(c[i].s);
		sa_client_free(c[i].sa);
		lora_adapter_free(c[i].global);
		lora_adapter_free(c[i].trained);
		priv_key_wipe(&c[i].key);
	}
	{
		char cmd[400];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "  cannot remove %s\n", dir);
	}
}

static const test_case cases[] = {TEST(test_live_secure_rounds), {0}};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
