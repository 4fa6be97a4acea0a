/*
 * tests/coordinator_test.c — unit tests of the coordinator's internals:
 * configuration parsing and layering, atomic writes, state.json and
 * metrics.jsonl round trips, the restart trim of metrics, client sampling.
 * The live server (network, rounds) is exercised by the shell integration
 * tests against build/fedlora.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <math.h>
#include <nng/nng.h>
#include <pthread.h>

#include "coordinator/config.h"
#include "coordinator/coord.h"
#include "core/fsutil.h"
#include "core/net.h"
#include "core/wire.h"
#include "lora/adapter.h"
#include "privacy/accountant.h"
#include "privacy/sign.h"
#include "coordinator/rundir.h"
#include "coordinator/sample.h"
#include "core/rng.h"
#include "model/llama.h"
#include "model/task_impl.h"
#include "tests/test.h"
#include "tokenizer/model_tok.h"

static char tmpdir[256];

static const char *mktmp(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/coordtest.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir))
		return NULL;
	return tmpdir;
}

static void rmtree(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "  could not remove %s\n", dir);
}

static void base_cfg(coord_config *c)
{
	coord_config_default(c);
	strcpy(c->listen, "inproc://t");
	strcpy(c->run_dir, "/tmp/x");
	strcpy(c->key, "k.key");
	c->enroll_any = 1;
}

static void test_config_argv(void)
{
	coord_config c;
	char err[256] = "";
	char *argv[] = {"coordinator",
	                "--listen",
	                "tcp://127.0.0.1:5555",
	                "--run-dir",
	                "r",
	                "--key",
	                "c.key",
	                "--strategy=ffa",
	                "--rounds",
	                "7",
	                "--clients-per-round",
	                "5",
	                "--min-clients",
	                "3",
	                "--round-timeout",
	                "2.5",
	                "--max-attempts",
	                "6",
	                "--enroll-any",
	                "--base",
	                "/m",
	                "--fair-ridge"};
	int argc = sizeof argv / sizeof argv[0];

	coord_config_default(&c);
	CHECK_RC(coord_config_apply_argv(&c, argc, argv, err, sizeof err));
	CHECK(!strcmp(c.listen, "tcp://127.0.0.1:5555"));
	CHECK(!strcmp(c.strategy, "ffa"));
	CHECK(c.rounds == 7 && c.clients_per_round == 5 && c.min_clients == 3);
	CHECK_NEAR(c.round_timeout, 2.5, 0, 0);
	CHECK(c.max_attempts == 6);
	CHECK(c.enroll_any == 1 && c.fair_ridge == 1);
	CHECK(!strcmp(c.base_dir, "/m"));
	CHECK_RC(coord_config_validate(&c, err, sizeof err));
}

static void test_config_argv_errors(void)
{
	coord_config c;
	char err[256];
	char *unk[] = {"coordinator", "--no-such-thing", "1"};
	char *miss[] = {"coordinator", "--rounds"};
	char *bad[] = {"coordinator", "--rounds", "ten"};
	char *badd[] = {"coordinator", "--lr", "nan"};
	char *pos[] = {"coordinator", "rounds"};

	coord_config_default(&c);
	CHECK(coord_config_apply_argv(&c, 3, unk, err, sizeof err) == FL_EINVAL);
	CHECK(strstr(err, "no-such-thing") != NULL);
	CHECK(coord_config_apply_argv(&c, 2, miss, err, sizeof err) == FL_EINVAL);
	CHECK(coord_config_apply_argv(&c, 3, bad, err, sizeof err) == FL_EINVAL);
	CHECK(coord_config_apply_argv(&c, 3, badd, err, sizeof err) == FL_EINVAL);
	CHECK(coord_config_apply_argv(&c, 2, pos, err, sizeof err) == FL_EINVAL);
	CHECK(c.rounds == 10); /* untouched by the failures */
}

static void test_config_json_layering(void)
{
	coord_config c;
	char err[256] = "";
	const char *js = "{\"rounds\": 12, \"clients-per-round\": 6, \"min_clients\": 2,"
	                 " \"strategy\": \"fair\", \"enroll_any\": true, \"dp_delta\": \"1e-6\"}";
	char *argv[] = {"coordinator", "--config", "ignored.json", "--rounds", "3"};

	coord_config_default(&c);
	CHECK_RC(coord_config_apply_json(&c, js, strlen(js), err, sizeof err));
	CHECK(c.rounds == 12 && c.clients_per_round == 6 && c.min_clients == 2);
	CHECK(!strcmp(c.strategy, "fair") && c.enroll_any);
	CHECK_NEAR(c.dp_delta, 1e-6, 0, 1e-12);
	/* the command line wins over the file; --config itself is skipped */
	CHECK_RC(coord_config_apply_argv(&c, 5, argv, err, sizeof err));
	CHECK(c.rounds == 3);
	CHECK(c.clients_per_round == 6);
}

static void test_config_json_errors(void)
{
	coord_config c;
	char err[256];
	const char *unknown = "{\"roundz\": 3}";
	const char *type = "{\"rounds\": \"many\"}";
	const char *frac = "{\"rounds\": 2.5}";
	const char *arr = "[1,2]";
	const char *garbage = "{\"rounds\": 3";
	const char *flag = "{\"enroll_any\": 7}";

	coord_config_default(&c);
	CHECK(coord_config_apply_json(&c, unknown, strlen(unknown), err, sizeof err) == FL_EINVAL);
	CHECK(strstr(err, "roundz") != NULL);
	CHECK(coord_config_apply_json(&c, type, strlen(type), err, sizeof err) == FL_EINVAL);
	CHECK(coord_config_apply_json(&c, frac, strlen(frac), err, sizeof err) == FL_EINVAL);
	CHECK(coord_config_apply_json(&c, arr, strlen(arr), err, sizeof err) == FL_EFORMAT);
	CHECK(coord_config_apply_json(&c, garbage, strlen(garbage), err, sizeof err) == FL_EFORMAT);
	CHECK(coord_config_apply_json(&c, flag, strlen(flag), err, sizeof err) == FL_EINVAL);
}

static void test_config_validate(void)
{
	coord_config c;
	char err[256];

	base_cfg(&c);
	CHECK_RC(coord_config_validate(&c, err, sizeof err));
	c.min_clients = c.clients_per_round + 1;
	CHECK(coord_config_validate(&c, err, sizeof err) == FL_EINVAL);
	base_cfg(&c);
	c.enroll_any = 0;
	CHECK(coord_config_validate(&c, err, sizeof err) == FL_EINVAL);
	base_cfg(&c);
	strcpy(c.strategy, "fair");
	strcpy(c.dp, "client");
	c.dp_clip = 1;
	c.dp_noise = 1;
	CHECK(coord_config_validate(&c, err, sizeof err) == FL_EINVAL);
	CHECK(strstr(err, "fair") != NULL);
	strcpy(c.strategy, "ffa");
	CHECK_RC(coord_config_validate(&c, err, sizeof err));
	base_cfg(&c);
	strcpy(c.dp, "sample");
	c.dp_clip = 1;
	CHECK(coord_config_validate(&c, err, sizeof err) == FL_EINVAL); /* no q */
	c.dp_q = 0.1;
	CHECK_RC(coord_config_validate(&c, err, sizeof err));
	base_cfg(&c);
	c.target_eps = 3; /* without DP */
	CHECK(coord_config_validate(&c, err, sizeof err) == FL_EINVAL);
	base_cfg(&c);
	strcpy(c.task, "lm");
	CHECK(coord_config_validate(&c, err, sizeof err) == FL_EINVAL); /* no --base */
	base_cfg(&c);
	strcpy(c.listen, "tls+tcp://0.0.0.0:1");
	CHECK(coord_config_validate(&c, err, sizeof err) == FL_EINVAL);
	/* --max-attempts: 0 (the default) is no limit, negative is refused */
	base_cfg(&c);
	CHECK(c.max_attempts == 0);
	c.max_attempts = 5;
	CHECK_RC(coord_config_validate(&c, err, sizeof err));
	c.max_attempts = -1;
	CHECK(coord_config_validate(&c, err, sizeof err) == FL_EINVAL);
	CHECK(strstr(err, "--max-attempts") != NULL);
}

static void test_config_json_roundtrip_and_resume(void)
{
	coord_config a, b;
	char err[256];
	char *js = NULL;

	base_cfg(&a);
	a.rounds = 17;
	a.seed = 123456789012LL;
	strcpy(a.strategy, "ffa");
	a.fair_ridge = 1;
	CHECK_RC(coord_config_to_json(&a, &js));
	coord_config_default(&b);
	CHECK_RC(coord_config_apply_json(&b, js, strlen(js), err, sizeof err));
	CHECK(!memcmp(&a, &b, sizeof a));
	free(js);
	/* a 64-bit seed beyond 2^53 (fuzz: run.json did not re-apply) */
	a.seed = 9223372036854775807LL;
	CHECK_RC(coord_config_to_json(&a, &js));
	coord_config_default(&b);
	CHECK_RC(coord_config_apply_json(&b, js, strlen(js), err, sizeof err));
	CHECK(b.seed == a.seed);
	free(js);
	/* cJSON's own printing keeps 15 digits: 16-digit integers and doubles
	 * that need 17 digits must still come back exactly (fuzz) */
	a.seed = 4674406161451799LL;
	a.alpha = 0.1 + 1.3877787807814457e-17;
	a.lr = 1.0 / 3.0;
	CHECK_RC(coord_config_to_json(&a, &js));
	coord_config_default(&b);
	CHECK_RC(coord_config_apply_json(&b, js, strlen(js), err, sizeof err));
	CHECK(!memcmp(&a, &b, sizeof a));
	free(js);
	a.seed = -9000000000000001LL;
	CHECK_RC(coord_config_to_json(&a, &js));
	coord_config_default(&b);
	CHECK_RC(coord_config_apply_json(&b, js, strlen(js), err, sizeof err));
	CHECK(!memcmp(&a, &b, sizeof a));
	free(js);
	/* more rounds or another attempt limit on a restart are fine, another
	 * rank is not */
	b.rounds = 30;
	b.max_attempts = 4;
	CHECK_RC(coord_config_check_resume(&a, &b, err, sizeof err));
	b.rank = a.rank + 1;
	CHECK(coord_config_check_resume(&a, &b, err, sizeof err) == FL_EINVAL);
	CHECK(strstr(err, "rank") != NULL);
}

static void test_atomic_write(void)
{
	const char *d = mktmp();
	char path[512], *txt = NULL;
	size_t len = 0;
	DIR *dir;
	struct dirent *e;
	int n = 0;

	CHECK(d != NULL);
	if (!d)
		return;
	snprintf(path, sizeof path, "%s/f.json", d);
	CHECK_RC(fl_write_atomic(path, "first", 5, 0644));
	CHECK_RC(fl_write_atomic(path, "second!", 7, 0644));
	CHECK_RC(fl_read_file(path, 1024, &txt, &len));
	CHECK(len == 7 && txt && !strcmp(txt, "second!"));
	free(txt);
	/* no temporary file is left behind */
	dir = opendir(d);
	while (dir && (e = readdir(dir)))
		if (e->d_name[0] != '.')
			n++;
	if (dir)
		closedir(dir);
	CHECK(n == 1);
	CHECK(fl_read_file(path, 3, &txt, &len) == FL_ETOOBIG);
	snprintf(path, sizeof path, "%s/missing", d);
	CHECK(fl_read_file(path, 1024, &txt, &len) == FL_ENOENT);
	/* writing into a missing directory fails cleanly */
	snprintf(path, sizeof path, "%s/nodir/f", d);
	CHECK(fl_write_atomic(path, "x", 1, 0644) == FL_EIO);
	rmtree(d);
}

static void test_state_roundtrip(void)
{
	const char *d = mktmp();
	coord_state s, t;
	int idx = -1;

	CHECK(d != NULL);
	if (!d)
		return;
	coord_state_init(&s);
	strcpy(s.run_id, "0123456789abcdef0123456789abcdef");
	s.round = 5;
	s.retries = 2;
	s.client_eps_max = 1.25;
	strcpy(s.reason, "");
	CHECK_RC(coord_state_add_client(&s, "aa11", 100, 1, &idx));
	CHECK(idx == 0);
	CHECK_RC(coord_state_add_client(&s, "bb22", 50, 3, &idx));
	CHECK_RC(coord_state_add_client(&s, "aa11", 120, 9, &idx)); /* update */
	CHECK(idx == 0 && s.n_clients == 2 && s.clients[0].num_samples == 120 &&
	      s.clients[0].joined_round == 1);
	s.clients[1].last_round = 5;
	CHECK_RC(coord_state_add_phase(&s, 1.0, 0.5, 1));
	CHECK_RC(coord_state_add_phase(&s, 1.0, 0.5, 1)); /* merged */
	CHECK_RC(coord_state_add_phase(&s, 1.0, 0.25, 1));
	CHECK(s.n_phases == 2 && s.phases[0].steps == 2);
	CHECK_RC(coord_state_save(&s, d));
	CHECK_RC(coord_state_load(&t, d));
	CHECK(!strcmp(t.run_id, s.run_id) && t.round == 5 && t.retries == 2 && !t.done);
	CHECK_NEAR(t.client_eps_max, 1.25, 0, 0);
	CHECK(t.n_clients == 2 && !strcmp(t.clients[1].key, "bb22") &&
	      t.clients[1].num_samples == 50 && t.clients[1].joined_round == 3 &&
	      t.clients[1].last_round == 5);
	CHECK(t.n_phases == 2 && t.phases[1].q == 0.25 && t.phases[0].steps == 2);
	coord_state_fini(&t);
	s.done = 1;
	strcpy(s.reason, "target_eps");
	CHECK_RC(coord_state_save(&s, d));
	CHECK_RC(coord_state_load(&t, d));
	CHECK(t.done && !strcmp(t.reason, "target_eps"));
	coord_state_fini(&t);
	/* values that need 16-17 digits come back exactly (fuzz: cJSON printed
	 * 15, so a resumed run's sigma and epsilon drifted by an ulp) */
	s.client_eps_max = 0.1 + 1.3877787807814457e-17;
	s.phases[0].sigma = 1.0 / 3.0;
	s.phases[0].steps = 4674406161451799L;
	CHECK_RC(coord_state_save(&s, d));
	CHECK_RC(coord_state_load(&t, d));
	CHECK(t.client_eps_max == s.client_eps_max && t.phases[0].sigma == s.phases[0].sigma &&
	      t.phases[0].steps == s.phases[0].steps);
	coord_state_fini(&t);
	coord_state_fini(&s);
	rmtree(d);
}

/* The registry's key index: thousands of keys are found at their own
 * index, a re-registration updates in place, unknown keys are not found, and
 * a loaded state.json is indexed too. */
static void test_state_key_index(void)
{
	const char *d = mktmp();
	coord_state s, t;
	char key[80];
	int idx = -1, bad = 0;

	CHECK(d != NULL);
	if (!d)
		return;
	coord_state_init(&s);
	CHECK(coord_state_find_client(&s, "00") == -1);
	snprintf(s.run_id, sizeof s.run_id, "run-x");
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof key, "%064x", (unsigned)i * 2654435761u);
		if (coord_state_add_client(&s, key, i, 1, &idx) != 0 || idx != i)
			bad++;
	}
	CHECK(bad == 0 && s.n_clients == 5000);
	snprintf(key, sizeof key, "%064x", 77u * 2654435761u);
	CHECK_RC(coord_state_add_client(&s, key, 9, 4, &idx));
	CHECK(idx == 77 && s.n_clients == 5000 && s.clients[77].num_samples == 9);
	CHECK(coord_state_find_client(&s, "not-a-key") == -1);
	CHECK_RC(coord_state_save(&s, d));
	CHECK_RC(coord_state_load(&t, d));
	bad = 0;
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof key, "%064x", (unsigned)i * 2654435761u);
		if (coord_state_find_client(&s, key) != i || coord_state_find_client(&t, key) != i)
			bad++;
	}
	CHECK(bad == 0);
	coord_state_fini(&s);
	coord_state_fini(&t);
	rmtree(d);
}

static void test_state_rejects_bad_files(void)
{
	const char *d = mktmp();
	char path[512];
	coord_state t;
	const char *bad[] = {"",
	                     "{",
	                     "[]",
	                     "{\"run_id\":\"x\"}",
	                     "{\"run_id\":\"x\",\"round\":-1,\"done\":false,\"reason\":\"\","
	                     "\"retries\":0,\"client_eps_max\":0,\"accountant\":[],\"clients\":[]}",
	                     "{\"run_id\":\"x\",\"round\":1,\"done\":false,\"reason\":\"\","
	                     "\"retries\":0,\"client_eps_max\":0,\"accountant\":[{\"sigma\":1}],"
	                     "\"clients\":[]}"};

	CHECK(d != NULL);
	if (!d)
		return;
	CHECK(coord_state_load(&t, d) == FL_ENOENT);
	snprintf(path, sizeof path, "%s/state.json", d);
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK_RC(fl_write_atomic(path, bad[i], strlen(bad[i]), 0644));
		CHECK(coord_state_load(&t, d) == FL_EFORMAT);
	}
	rmtree(d);
}

static void test_metrics_append_and_trim(void)
{
	const char *d = mktmp();
	int lines, last;
	char line[128];

	CHECK(d != NULL);
	if (!d)
		return;
	CHECK(coord_metrics_count(d, &lines, &last) == FL_ENOENT);
	for (int r = 1; r <= 4; r++) {
		snprintf(line, sizeof line, "{\"round\":%d,\"strategy\":\"fedit\"}", r);
		CHECK_RC(coord_metrics_append(d, r, line));
	}
	CHECK_RC(coord_metrics_count(d, &lines, &last));
	CHECK(lines == 4 && last == 4);
	/* a crash after writing round 4's line but before committing it: the
	 * restart (last committed = 3) drops it, and re-running round 4 appends
	 * exactly one line for it */
	CHECK_RC(coord_metrics_trim(d, 3));
	CHECK_RC(coord_metrics_count(d, &lines, &last));
	CHECK(lines == 3 && last == 3);
	CHECK_RC(coord_metrics_append(d, 4, "{\"round\":4}"));
	CHECK_RC(coord_metrics_append(d, 4, "{\"round\":4,\"again\":1}"));
	CHECK_RC(coord_metrics_count(d, &lines, &last));
	CHECK(lines == 4 && last == 4);
	CHECK(coord_metrics_append(d, 5, "{\"round\":5}\n{}") == FL_EINVAL);
	rmtree(d);
}

static void test_sample_uniform(void)
{
	fl_rng r;
	int idx[10], hits[20] = {0};
	const int n = 20, k = 10, trials = 4000;

	fl_rng_init(&r, 7, 1);
	for (int t = 0; t < trials; t++) {
		int seen[20] = {0};
		CHECK_RC(coord_sample_uniform(&r, n, k, idx));
		for (int i = 0; i < k; i++) {
			CHECK(idx[i] >= 0 && idx[i] < n);
			if (idx[i] >= 0 && idx[i] < n) {
				CHECK(!seen[idx[i]]); /* distinct */
				seen[idx[i]] = 1;
				hits[idx[i]]++;
			}
			if (i > 0)
				CHECK(idx[i] > idx[i - 1]); /* sorted */
		}
	}
	/* each client is chosen with probability k/n = 0.5: 2000 +- 4 sd (sd ~ 32) */
	for (int i = 0; i < n; i++)
		CHECK(abs(hits[i] - trials / 2) < 130);
	/* k >= n takes everyone */
	CHECK_RC(coord_sample_uniform(&r, 3, 10, idx));
	CHECK(idx[0] == 0 && idx[1] == 1 && idx[2] == 2);
	CHECK(coord_sample_uniform(&r, 0, 1, idx) == FL_EINVAL);
}

static void test_sample_deterministic(void)
{
	fl_rng a, b;
	int x[5], y[5];

	fl_rng_init(&a, 42, 3);
	fl_rng_init(&b, 42, 3);
	CHECK_RC(coord_sample_uniform(&a, 50, 5, x));
	CHECK_RC(coord_sample_uniform(&b, 50, 5, y));
	CHECK(!memcmp(x, y, sizeof x));
}

/* ------------------------------------------------------------------------
 * Live tests: a coordinator on inproc:// in a thread, driven by scripted
 * clients in the test thread (small linreg adapter, short timeouts).
 */

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

static int live_start(live *l, const coord_config *cfg)
{
	char err[256] = "";
	int rv = coord_open(&l->c, cfg, err, sizeof err);
	if (rv) {
		fprintf(stderr, "  coord_open: %s\n", err);
		return rv;
	}
	if (pthread_create(&l->th, NULL, live_main, l) != 0)
		return FL_EIO;
	return 0;
}

/* Waits for coord_run to return (it does once the run is done). */
static int live_join(live *l)
{
	/* a failed check may leave the run waiting for clients: stop it */
	if (test_cur_failed)
		coord_request_stop(l->c);
	pthread_join(l->th, NULL);
	coord_close(l->c);
	l->c = NULL;
	return l->rv;
}

typedef struct tclient {
	priv_key key;
	nng_socket s;
	char run_id[FL_RUN_ID_MAX + 1];
	uint64_t last_round;
} tclient;

static uint8_t coord_pk[PRIV_PK_BYTES];

static int tclient_open(tclient *tc, const char *url)
{
	fl_net_opts o;
	memset(tc, 0, sizeof *tc);
	fl_net_opts_default(&o);
	o.recv_timeout_ms = 5000;
	o.recv_max = 8u << 20;
	if (priv_key_generate(&tc->key) != 0)
		return FL_ECRYPTO;
	return fl_net_dial(&tc->s, url, &o);
}

static void tclient_close(tclient *tc)
{
	nng_close(tc->s);
	priv_key_wipe(&tc->key);
}

/* Sends raw bytes, opens the reply (signed by the coordinator) into *m. */
static int call_raw(tclient *tc, const void *buf, size_t len, fl_wire_msg *m)
{
	nng_msg *rep = NULL;
	int rv = fl_net_call(tc->s, buf, len, &rep);
	if (rv)
		return rv;
	rv = fl_wire_open_msg(rep, 64u << 20, coord_pk, m);
	nng_msg_free(rep);
	return rv;
}

static int call(tclient *tc, const ProtobufCMessage *body, uint32_t type, fl_wire_msg *m)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rv = fl_wire_seal(body, type, &tc->key, &buf, &len);
	if (rv)
		return rv;
	rv = call_raw(tc, buf, len, m);
	free(buf);
	return rv;
}

/* Reject code of a reply, or 1 when it is not a Reject. */
static int reject_code(const fl_wire_msg *m)
{
	const Fedlora__Reject *r = FL_WIRE_BODY(m, Fedlora__Reject, FL_MSG_REJECT);
	return r ? r->code : 1;
}

static int tclient_hello(tclient *tc)
{
	Fedlora__Hello h = FEDLORA__HELLO__INIT;
	fl_wire_msg m;
	int rv;

	h.client_key.data = tc->key.pk;
	h.client_key.len = PRIV_PK_BYTES;
	h.software_version = "test";
	h.num_samples = 100;
	if ((rv = call(tc, &h.base, FL_MSG_HELLO, &m)) != 0)
		return rv;
	if (m.type != FL_MSG_WELCOME) {
		rv = reject_code(&m);
	} else {
		const Fedlora__Welcome *w = (const Fedlora__Welcome *)m.body;
		snprintf(tc->run_id, sizeof tc->run_id, "%s", w->run_id);
		rv = 0;
	}
	fl_wire_msg_fini(&m);
	return rv;
}

/* GetTask until a Task (0, *task filled: an adapter of shape `shape` with the
 * task's values, *round) or Done (FL_EDONE) arrives, at most ~tries polls. */
static int tclient_task(tclient *tc, lora_adapter *ad, uint64_t *round, int tries)
{
	for (int i = 0; i < tries; i++) {
		Fedlora__GetTask g = FEDLORA__GET_TASK__INIT;
		fl_wire_msg m;
		int rv;

		g.run_id = tc->run_id;
		g.last_round_seen = tc->last_round;
		if ((rv = call(tc, &g.base, FL_MSG_GET_TASK, &m)) != 0)
			return rv;
		if (m.type == FL_MSG_TASK) {
			const Fedlora__Task *t = (const Fedlora__Task *)m.body;
			*round = t->round;
			rv = fl_wire_tensors_to_adapter(t->tensors, t->n_tensors, FL_WIRE_AB, ad);
			fl_wire_msg_fini(&m);
			return rv;
		}
		rv = m.type == FL_MSG_DONE ? FL_EDONE : m.type == FL_MSG_WAIT ? 0 : reject_code(&m);
		fl_wire_msg_fini(&m);
		if (rv)
			return rv;
	}
	return FL_ETIMEOUT;
}

/* A sealed Submit of adapter ad for `round` (malloc'd in *buf). */
static int make_submit(tclient *tc, const char *run_id, uint64_t round, const lora_adapter *ad,
                       double loss, uint8_t **buf, size_t *len)
{
	Fedlora__Submit s = FEDLORA__SUBMIT__INIT;
	Fedlora__TrainMetrics tm = FEDLORA__TRAIN_METRICS__INIT;
	fl_wire_tensors ts = {0};
	uint8_t nonce[FL_NONCE_BYTES];
	int rv;

	fl_wire_nonce(nonce);
	if ((rv = fl_wire_tensors_from_adapter(ad, FL_WIRE_AB, FL_DTYPE_F32, &ts)) != 0)
		return rv;
	tm.train_loss = loss;
	tm.eval_before = loss + 1;
	tm.eval_after = loss;
	tm.steps = 1;
	s.run_id = (char *)run_id;
	s.round = round;
	s.nonce.data = nonce;
	s.nonce.len = sizeof nonce;
	s.num_samples = 100;
	s.n_tensors = ts.n;
	s.tensors = ts.t;
	s.metrics = &tm;
	rv = fl_wire_seal(&s.base, FL_MSG_SUBMIT, &tc->key, buf, len);
	fl_wire_tensors_fini(&ts);
	return rv;
}

/* Sends a sealed Submit; 0 on Ack, the Reject code otherwise. */
static int send_submit(tclient *tc, const uint8_t *buf, size_t len)
{
	fl_wire_msg m;
	int rv = call_raw(tc, buf, len, &m);
	if (rv)
		return rv;
	rv = m.type == FL_MSG_ACK ? 0 : reject_code(&m);
	fl_wire_msg_fini(&m);
	return rv;
}

/* One honest round for a client: get the task, nudge B, submit. */
static int tclient_round(tclient *tc, lora_adapter *ad, int tries)
{
	uint64_t round = 0;
	uint8_t *buf = NULL;
	size_t len = 0;
	int rv = tclient_task(tc, ad, &round, tries);

	if (rv)
		return rv;
	for (size_t i = 0; i < ad->n_b; i++)
		lora_adapter_b(ad)[i] += 0.01f * (float)((i % 7) + 1);
	if ((rv = make_submit(tc, tc->run_id, round, ad, 1.0, &buf, &len)) != 0)
		return rv;
	rv = send_submit(tc, buf, len);
	free(buf);
	if (!rv)
		tc->last_round = round;
	return rv;
}

static int live_cfg(coord_config *c, const char *dir, const char *url)
{
	char prefix[400];
	coord_config_default(c);
	snprintf(c->listen, sizeof c->listen, "%s", url);
	snprintf(c->run_dir, sizeof c->run_dir, "%s/run", dir);
	snprintf(prefix, sizeof prefix, "%s/coord", dir);
	snprintf(c->key, sizeof c->key, "%s.key", prefix);
	if (access(c->key, F_OK) != 0 && priv_keygen(prefix, 0, coord_pk) != 0)
		return FL_EIO;
	c->enroll_any = 1;
	c->linreg_layers = 2;
	c->linreg_dim = 8;
	c->rank = 2;
	c->rounds = 1;
	c->clients_per_round = 2;
	c->min_clients = 2;
	c->round_timeout = 5;
	c->poll_timeout = 0.1;
	c->linger = 0.3;
	c->join_wait = 0;
	c->contexts = 4;
	return 0;
}

/* An adapter of the live tests' shape (2 layers of 8, rank 2). */
static lora_adapter *live_adapter(int rank)
{
	const char *names[] = {"layers.0", "layers.1"};
	const int dims[] = {8, 8};
	lora_adapter *a = NULL;
	if (lora_adapter_new(&a, 2, names, dims, dims, rank, 8) != 0)
		return NULL;
	return a;
}

static double metrics_num(const cJSON *o, const char *path1, const char *path2)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, path1);
	if (path2)
		v = cJSON_GetObjectItemCaseSensitive(v, path2);
	return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* The metrics line of round r (parsed; caller deletes), NULL if absent. */
static cJSON *metrics_line(const char *run_dir, int r)
{
	char path[600], *text = NULL, *save = NULL;
	size_t len;
	cJSON *found = NULL;

	snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
	if (fl_read_file(path, 1 << 20, &text, &len) != 0)
		return NULL;
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		cJSON *o = cJSON_Parse(l);
		if (o && metrics_num(o, "round", NULL) == r) {
			cJSON_Delete(found);
			found = o;
		} else {
			cJSON_Delete(o);
		}
	}
	free(text);
	return found;
}

static void test_live_bad_input(void)
{
	const char *d = mktmp();
	coord_config cfg;
	live l = {0};
	tclient a, b, x;
	lora_adapter *ad = live_adapter(2), *wrong = live_adapter(3);
	uint64_t round = 0;
	uint8_t *buf = NULL, *big = NULL;
	size_t len = 0;
	fl_wire_msg m;
	cJSON *line;
	static const char *keys[] = {"round",      "strategy",   "selected", "reported", "rejected",
	                             "train_loss", "eval_loss",  "agg_bias", "epsilon",  "delta",
	                             "bytes_up",   "bytes_down", "seconds"};

	CHECK(d && ad && wrong);
	if (!d || !ad || !wrong)
		return;
	CHECK_RC(live_cfg(&cfg, d, "inproc://coordtest-bad"));
	CHECK_RC(live_start(&l, &cfg));
	CHECK_RC(tclient_open(&a, cfg.listen));
	CHECK_RC(tclient_open(&b, cfg.listen));
	CHECK_RC(tclient_open(&x, cfg.listen));

	/* garbage */
	CHECK_RC(call_raw(&x, "garbage bytes", 13, &m));
	CHECK(reject_code(&m) == FL_EFORMAT);
	fl_wire_msg_fini(&m);
	/* oversized: above the receive limit (1 MiB + adapter), below the
	 * transport's hard limit, so it is read and answered */
	big = calloc(1, 1600000);
	CHECK(big != NULL);
	if (big) {
		CHECK_RC(call_raw(&x, big, 1600000, &m));
		CHECK(reject_code(&m) == FL_ETOOBIG);
		fl_wire_msg_fini(&m);
		free(big);
	}
	CHECK_RC(tclient_hello(&a));
	CHECK_RC(tclient_hello(&b));
	CHECK_RC(tclient_task(&a, ad, &round, 50));
	CHECK(round == 1);

	/* unknown key: x never said Hello */
	CHECK_RC(make_submit(&x, a.run_id, round, ad, 1.0, &buf, &len));
	CHECK(send_submit(&x, buf, len) == FL_EKEY);
	free(buf);
	/* bad signature: the signature is the envelope's last field */
	CHECK_RC(make_submit(&a, a.run_id, round, ad, 1.0, &buf, &len));
	buf[len - 1] ^= 1;
	CHECK(send_submit(&a, buf, len) == FL_ESIG);
	/* a flipped body byte also breaks the signature */
	buf[len - 1] ^= 1;
	buf[len / 2] ^= 0x40;
	CHECK(send_submit(&a, buf, len) != 0);
	free(buf);
	/* wrong run, stale round */
	CHECK_RC(make_submit(&a, "another-run", round, ad, 1.0, &buf, &len));
	CHECK(send_submit(&a, buf, len) == FL_ESTALE);
	free(buf);
	CHECK_RC(make_submit(&a, a.run_id, round + 5, ad, 1.0, &buf, &len));
	CHECK(send_submit(&a, buf, len) == FL_ESTALE);
	free(buf);
	/* wrong shapes */
	CHECK_RC(make_submit(&a, a.run_id, round, wrong, 1.0, &buf, &len));
	CHECK(send_submit(&a, buf, len) == FL_ESHAPE);
	free(buf);
	/* NaN in a tensor */
	lora_adapter_b(ad)[3] = NAN;
	CHECK_RC(make_submit(&a, a.run_id, round, ad, 1.0, &buf, &len));
	CHECK(send_submit(&a, buf, len) == FL_ENONFINITE);
	free(buf);
	lora_adapter_b(ad)[3] = 0.5f;
	/* NaN in the metrics */
	CHECK_RC(make_submit(&a, a.run_id, round, ad, NAN, &buf, &len));
	CHECK(send_submit(&a, buf, len) == FL_ENONFINITE);
	free(buf);
	/* the good update, then its replay */
	CHECK_RC(make_submit(&a, a.run_id, round, ad, 1.0, &buf, &len));
	CHECK_RC(send_submit(&a, buf, len));
	CHECK(send_submit(&a, buf, len) == FL_EREPLAY);
	free(buf);
	/* the second client completes the round */
	CHECK_RC(tclient_round(&b, ad, 50));
	/* the run (one round) is done: GetTask says Done */
	CHECK(tclient_task(&a, ad, &round, 50) == FL_EDONE);
	CHECK_RC(live_join(&l));

	line = metrics_line(cfg.run_dir, 1);
	CHECK(line != NULL);
	if (line) {
		for (unsigned i = 0; i < sizeof keys / sizeof keys[0]; i++)
			CHECK(cJSON_GetObjectItemCaseSensitive(line, keys[i]) != NULL);
		CHECK(metrics_num(line, "reported", NULL) == 2);
		CHECK(metrics_num(line, "rejected", "malformed") >= 1);
		CHECK(metrics_num(line, "rejected", "too_big") == 1);
		CHECK(metrics_num(line, "rejected", "unknown_key") == 1);
		CHECK(metrics_num(line, "rejected", "bad_signature") >= 1);
		CHECK(metrics_num(line, "rejected", "stale") == 2);
		CHECK(metrics_num(line, "rejected", "bad_shape") == 1);
		CHECK(metrics_num(line, "rejected", "non_finite") == 2);
		CHECK(metrics_num(line, "rejected", "replay") == 1);
		CHECK(metrics_num(line, "bytes_up", NULL) > 0);
		CHECK(metrics_num(line, "bytes_down", NULL) > 0);
		CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(line, "epsilon")));
		CHECK_NEAR(metrics_num(line, "train_loss", NULL), 1.0, 1e-12, 0);
		cJSON_Delete(line);
	}
	tclient_close(&a);
	tclient_close(&b);
	tclient_close(&x);
	lora_adapter_free(ad);
	lora_adapter_free(wrong);
	rmtree(d);
}

/* A run stopped after round 1 and restarted with more rounds continues at
 * round 2 with the same run id and registry; nothing is committed twice. */
static void test_live_restart(void)
{
	const char *d = mktmp();
	coord_config cfg;
	coord_state st;
	live l = {0};
	tclient a, b;
	lora_adapter *ad = live_adapter(2);
	char run_id[64] = "";
	int lines = 0, last = 0;

	CHECK(d && ad);
	if (!d || !ad)
		return;
	CHECK_RC(live_cfg(&cfg, d, "inproc://coordtest-restart"));
	CHECK_RC(live_start(&l, &cfg));
	CHECK_RC(tclient_open(&a, cfg.listen));
	CHECK_RC(tclient_open(&b, cfg.listen));
	CHECK_RC(tclient_hello(&a));
	CHECK_RC(tclient_hello(&b));
	CHECK_RC(tclient_round(&a, ad, 50));
	CHECK_RC(tclient_round(&b, ad, 50));
	CHECK_RC(live_join(&l));
	CHECK_RC(coord_state_load(&st, cfg.run_dir));
	CHECK(st.round == 1 && st.done && st.n_clients == 2);
	snprintf(run_id, sizeof run_id, "%s", st.run_id);
	coord_state_fini(&st);
	nng_close(a.s); /* keys kept for the restart */
	nng_close(b.s);

	/* restart with three rounds: the clients reconnect with the same keys
	 * and, being in state.json, get tasks without a new Hello */
	cfg.rounds = 3;
	CHECK_RC(live_start(&l, &cfg));
	{
		priv_key ka = a.key, kb = b.key;
		CHECK_RC(tclient_open(&a, cfg.listen));
		CHECK_RC(tclient_open(&b, cfg.listen));
		a.key = ka;
		b.key = kb;
		snprintf(a.run_id, sizeof a.run_id, "%s", run_id);
		snprintf(b.run_id, sizeof b.run_id, "%s", run_id);
		a.last_round = b.last_round = 1;
	}
	for (int r = 2; r <= 3; r++) {
		CHECK_RC(tclient_round(&a, ad, 50));
		CHECK_RC(tclient_round(&b, ad, 50));
	}
	CHECK_RC(live_join(&l));
	CHECK_RC(coord_state_load(&st, cfg.run_dir));
	CHECK(st.round == 3 && st.done && !strcmp(st.reason, "rounds"));
	CHECK(st.n_clients == 2);
	coord_state_fini(&st);
	CHECK_RC(coord_metrics_count(cfg.run_dir, &lines, &last));
	CHECK(lines == 3 && last == 3);
	/* a changed model setting is refused on the same run directory */
	{
		coord *c = NULL;
		char err[256] = "";
		cfg.rank = 3;
		CHECK(coord_open(&c, &cfg, err, sizeof err) == FL_EINVAL);
		CHECK(strstr(err, "rank") != NULL);
		coord_close(c);
	}
	tclient_close(&a);
	tclient_close(&b);
	lora_adapter_free(ad);
	rmtree(d);
}

/* Client-level DP: epsilon grows every round and the run stops, marked
 * done with reason target_eps, before a round would exceed the target. */
static void test_live_dp_target_eps(void)
{
	const char *d = mktmp();
	coord_config cfg;
	coord_state st;
	live l = {0};
	tclient a, b;
	lora_adapter *ad = live_adapter(2);
	priv_phase ph = {1.5, 1.0, 2};
	double eps2 = 0, prev = 0;
	int rounds = 0, rv = 0;

	CHECK(d && ad);
	if (!d || !ad)
		return;
	CHECK_RC(priv_rdp_epsilon(&ph, 1, 1e-5, &eps2, NULL));
	CHECK_RC(live_cfg(&cfg, d, "inproc://coordtest-dp"));
	cfg.rounds = 10;
	strcpy(cfg.dp, "client");
	cfg.dp_clip = 1;
	cfg.dp_noise = 1.5;
	cfg.target_eps = eps2 * 1.01; /* room for two rounds at q = 2/2 = 1 */
	CHECK_RC(live_start(&l, &cfg));
	CHECK_RC(tclient_open(&a, cfg.listen));
	CHECK_RC(tclient_open(&b, cfg.listen));
	CHECK_RC(tclient_hello(&a));
	CHECK_RC(tclient_hello(&b));
	while (rounds < 5 && (rv = tclient_round(&a, ad, 50)) == 0 &&
	       (rv = tclient_round(&b, ad, 50)) == 0)
		rounds++;
	CHECK(rv == FL_EDONE);
	CHECK(rounds == 2);
	CHECK_RC(live_join(&l));
	CHECK_RC(coord_state_load(&st, cfg.run_dir));
	CHECK(st.done && !strcmp(st.reason, "target_eps") && st.round == 2);
	coord_state_fini(&st);
	for (int r = 1; r <= 2; r++) {
		cJSON *line = metrics_line(cfg.run_dir, r);
		CHECK(line != NULL);
		if (!line)
			continue;
		double e = metrics_num(line, "epsilon", NULL);
		CHECK(e > prev);
		prev = e;
		cJSON_Delete(line);
	}
	CHECK_NEAR(prev, eps2, 0, 1e-9);
	tclient_close(&a);
	tclient_close(&b);
	lora_adapter_free(ad);
	rmtree(d);
}

/* A registered client that never trains: rounds that selected it time out
 * below quorum and are retried, keeping the updates already received and
 * topping the selection up; the run still completes. */
static void test_live_quorum_retry(void)
{
	const char *d = mktmp();
	coord_config cfg;
	coord_state st;
	live l = {0};
	tclient cl[3];
	lora_adapter *ad = live_adapter(2);
	int done[2] = {0, 0}, iter = 0;

	CHECK(d && ad);
	if (!d || !ad)
		return;
	CHECK_RC(live_cfg(&cfg, d, "inproc://coordtest-quorum"));
	cfg.rounds = 3;
	cfg.round_timeout = 0.4;
	CHECK_RC(live_start(&l, &cfg));
	for (int i = 0; i < 3; i++) {
		CHECK_RC(tclient_open(&cl[i], cfg.listen));
		CHECK_RC(tclient_hello(&cl[i]));
	}
	/* cl[2] is dead from now on */
	while (!(done[0] && done[1]) && iter++ < 200) {
		for (int i = 0; i < 2; i++) {
			int rv;
			if (done[i])
				continue;
			rv = tclient_round(&cl[i], ad, 2);
			if (rv == FL_EDONE)
				done[i] = 1;
			else
				CHECK(rv == 0 || rv == FL_ETIMEOUT);
		}
	}
	CHECK(done[0] && done[1]);
	CHECK_RC(live_join(&l));
	CHECK_RC(coord_state_load(&st, cfg.run_dir));
	CHECK(st.round == 3 && st.done);
	coord_state_fini(&st);
	for (int r = 1; r <= 3; r++) {
		cJSON *line = metrics_line(cfg.run_dir, r);
		CHECK(line != NULL);
		if (line) {
			CHECK(metrics_num(line, "reported", NULL) == 2);
			CHECK(metrics_num(line, "attempts", NULL) >= 1);
			cJSON_Delete(line);
		}
	}
	for (int i = 0; i < 3; i++)
		tclient_close(&cl[i]);
	lora_adapter_free(ad);
	rmtree(d);
}

/* A Submit for a committed round is refused as round_closed, one for a round
 * never opened as stale; both are counted in the metrics of the round during
 * which they arrived. */
static void test_live_round_closed(void)
{
	const char *d = mktmp();
	coord_config cfg;
	live l = {0};
	tclient a, b;
	lora_adapter *ad = live_adapter(2);
	uint8_t *buf = NULL;
	size_t len = 0;
	uint64_t round = 0;

	CHECK(d && ad);
	if (!d || !ad)
		return;
	CHECK_RC(live_cfg(&cfg, d, "inproc://coordtest-closed"));
	cfg.rounds = 2;
	CHECK_RC(live_start(&l, &cfg));
	CHECK_RC(tclient_open(&a, cfg.listen));
	CHECK_RC(tclient_open(&b, cfg.listen));
	CHECK_RC(tclient_hello(&a));
	CHECK_RC(tclient_hello(&b));
	CHECK_RC(tclient_round(&a, ad, 50));
	CHECK_RC(tclient_round(&b, ad, 50));
	/* round 1 is committed once round 2 is handed out */
	CHECK_RC(tclient_task(&a, ad, &round, 50));
	CHECK(round == 2);
	CHECK_RC(make_submit(&a, a.run_id, 1, ad, 1.0, &buf, &len));
	CHECK(send_submit(&a, buf, len) == FL_ECLOSED);
	free(buf);
	CHECK_RC(make_submit(&a, a.run_id, 9, ad, 1.0, &buf, &len));
	CHECK(send_submit(&a, buf, len) == FL_ESTALE);
	free(buf);
	CHECK_RC(make_submit(&a, a.run_id, 2, ad, 1.0, &buf, &len));
	CHECK_RC(send_submit(&a, buf, len));
	free(buf);
	CHECK_RC(tclient_round(&b, ad, 50));
	/* after the last commit (GetTask says Done): round 2 is closed too */
	CHECK(tclient_task(&b, ad, &round, 50) == FL_EDONE);
	CHECK_RC(make_submit(&b, b.run_id, 2, ad, 1.0, &buf, &len));
	CHECK(send_submit(&b, buf, len) == FL_ECLOSED);
	free(buf);
	CHECK_RC(live_join(&l));
	{
		cJSON *line = metrics_line(cfg.run_dir, 2);
		CHECK(line != NULL);
		if (line) {
			CHECK(metrics_num(line, "rejected", "round_closed") == 1);
			CHECK(metrics_num(line, "rejected", "stale") == 1);
			cJSON_Delete(line);
		}
	}
	CHECK(!strcmp(fl_reason_name(FL_ECLOSED), "round_closed"));
	tclient_close(&a);
	tclient_close(&b);
	lora_adapter_free(ad);
	rmtree(d);
}

/* A GetTask is held at most half of the wait its client announced
 * (max_wait_ms), however long --poll-timeout is, so the Wait arrives before
 * the client's own timeout; without max_wait_ms, --poll-timeout holds. */
static void test_live_poll_hold(void)
{
	const char *d = mktmp();
	coord_config cfg;
	live l = {0};
	tclient a;

	CHECK(d != NULL);
	if (!d)
		return;
	CHECK_RC(live_cfg(&cfg, d, "inproc://coordtest-hold"));
	cfg.poll_timeout = 30; /* one client of the two: no round opens */
	cfg.contexts = 8;
	CHECK_RC(live_start(&l, &cfg));
	CHECK_RC(tclient_open(&a, cfg.listen));
	CHECK_RC(tclient_hello(&a));
	for (int i = 0; i < 2; i++) {
		Fedlora__GetTask g = FEDLORA__GET_TASK__INIT;
		fl_wire_msg m;
		double t0 = fl_now_s(), dt;
		g.run_id = a.run_id;
		g.max_wait_ms = i == 0 ? 1200 : 3000;
		CHECK_RC(call(&a, &g.base, FL_MSG_GET_TASK, &m));
		dt = fl_now_s() - t0;
		fprintf(stderr, "  max_wait_ms %u: Wait after %.2f s\n", g.max_wait_ms, dt);
		CHECK(m.type == FL_MSG_WAIT);
		CHECK(dt >= 0.9 * g.max_wait_ms / 2000.0 && dt < 0.9 * g.max_wait_ms / 1000.0);
		fl_wire_msg_fini(&m);
	}
	coord_request_stop(l.c);
	CHECK(live_join(&l) == FL_EDONE);
	tclient_close(&a);
	rmtree(d);
}

/* --allow: a key on the list is admitted, any other is refused. */
static void test_live_allow_list(void)
{
	const char *d = mktmp();
	coord_config cfg;
	live l = {0};
	tclient a, b;
	char hex[PRIV_PK_HEX], path[400];
	FILE *f;

	CHECK(d != NULL);
	if (!d)
		return;
	CHECK_RC(live_cfg(&cfg, d, "inproc://coordtest-allow"));
	priv_key ka;
	CHECK_RC(priv_key_generate(&ka));
	snprintf(path, sizeof path, "%s/allow.txt", d);
	priv_pk_to_hex(ka.pk, hex);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fprintf(f, "# the one allowed client\n%s\n", hex);
	fclose(f);
	cfg.enroll_any = 0;
	snprintf(cfg.allow, sizeof cfg.allow, "%s", path);
	cfg.clients_per_round = 1;
	cfg.min_clients = 1;
	CHECK_RC(live_start(&l, &cfg));
	CHECK_RC(tclient_open(&a, cfg.listen));
	a.key = ka;
	priv_key_wipe(&ka);
	CHECK_RC(tclient_open(&b, cfg.listen));
	CHECK(tclient_hello(&b) == FL_EKEY);
	CHECK_RC(tclient_hello(&a));
	{
		lora_adapter *ad = live_adapter(2);
		CHECK(ad != NULL);
		if (ad)
			CHECK_RC(tclient_round(&a, ad, 50));
		lora_adapter_free(ad);
	}
	CHECK_RC(live_join(&l));
	{
		cJSON *line = metrics_line(cfg.run_dir, 1);
		CHECK(line && metrics_num(line, "rejected", "unknown_key") == 1);
		cJSON_Delete(line);
	}
	tclient_close(&a);
	tclient_close(&b);
	rmtree(d);
}

/* Hello carrying tokenizer hash `th`; 0 and the Welcome's pinned hash in
 * pinned, or the Reject code. */
static int tclient_hello_tok(tclient *tc, const char *th, char pinned[65])
{
	Fedlora__Hello h = FEDLORA__HELLO__INIT;
	fl_wire_msg m;
	int rv;

	h.client_key.data = tc->key.pk;
	h.client_key.len = PRIV_PK_BYTES;
	h.software_version = "test";
	h.num_samples = 100;
	h.tokenizer_hash = (char *)th;
	if ((rv = call(tc, &h.base, FL_MSG_HELLO, &m)) != 0)
		return rv;
	if (m.type != FL_MSG_WELCOME) {
		rv = reject_code(&m);
	} else {
		const Fedlora__Welcome *w = (const Fedlora__Welcome *)m.body;
		snprintf(pinned, 65, "%s",
		         w->spec && w->spec->tokenizer_hash ? w->spec->tokenizer_hash : "");
		rv = 0;
	}
	fl_wire_msg_fini(&m);
	return rv;
}

/* An lm coordinator pins its base model's tokenizer: a Hello with another
 * tokenizer hash (or none) is refused, the same hash is welcomed and the
 * Welcome's ModelSpec carries it. */
static void test_live_tokenizer_pin(void)
{
	const char *d = mktmp();
	coord_config cfg;
	model_config mc;
	model_llama *m = NULL;
	fl_tokenizer *tk = NULL;
	live l = {0};
	tclient a;
	char base[400], want[65], pinned[65] = "", err[256];

	CHECK(d != NULL && model_lm_ops.name != NULL); /* links the lm task in */
	if (!d)
		return;
	memset(&mc, 0, sizeof mc);
	mc.hidden_size = 8;
	mc.intermediate_size = 12;
	mc.num_layers = 1;
	mc.num_heads = 2;
	mc.num_kv_heads = 1;
	mc.head_dim = 4;
	mc.vocab_size = 258;
	mc.max_position_embeddings = 32;
	mc.bos_token_id = 256;
	mc.eos_token_id = 257;
	mc.rms_norm_eps = 1e-5f;
	mc.rope_theta = 10000.0f;
	snprintf(base, sizeof base, "%s/base", d);
	CHECK_RC(model_llama_new(&m, &mc, 1));
	CHECK_RC(model_llama_save(m, base));
	model_llama_free(m);
	CHECK_RC(fl_tok_load_model(base, 258, &tk, NULL, err, sizeof err));
	if (!tk)
		return;
	fl_tok_hash_hex(tk, want);
	fl_tok_free(tk);
	CHECK_RC(live_cfg(&cfg, d, "inproc://coordtest-tokpin"));
	strcpy(cfg.task, "lm");
	snprintf(cfg.base_dir, sizeof cfg.base_dir, "%s", base);
	cfg.seq_len = 8;
	cfg.min_clients = 1;
	cfg.clients_per_round = 1;
	CHECK_RC(live_start(&l, &cfg));
	if (!l.c)
		return;
	CHECK_RC(tclient_open(&a, cfg.listen));
	CHECK(tclient_hello_tok(&a,
	                        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	                        pinned) == FL_ESHAPE);
	CHECK(tclient_hello_tok(&a, "", pinned) == FL_ESHAPE);
	CHECK_RC(tclient_hello_tok(&a, want, pinned));
	CHECK(!strcmp(pinned, want));
	coord_request_stop(l.c);
	live_join(&l);
	tclient_close(&a);
	rmtree(d);
}

static const test_case cases[] = {
    TEST(test_config_argv),
    TEST(test_config_argv_errors),
    TEST(test_config_json_layering),
    TEST(test_config_json_errors),
    TEST(test_config_validate),
    TEST(test_config_json_roundtrip_and_resume),
    TEST(test_atomic_write),
    TEST(test_state_roundtrip),
    TEST(test_state_rejects_bad_files),
    TEST(test_state_key_index),
    TEST(test_metrics_append_and_trim),
    TEST(test_sample_uniform),
    TEST(test_sample_deterministic),
    TEST(test_live_bad_input),
    TEST(test_live_restart),
    TEST(test_live_dp_target_eps),
    TEST(test_live_quorum_retry),
    TEST(test_live_round_closed),
    TEST(test_live_poll_hold),
    TEST(test_live_allow_list),
    TEST(test_live_tokenizer_pin),
    {0},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
