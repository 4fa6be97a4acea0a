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

#include "coordinator/config.h"
#include "coordinator/rundir.h"
#include "coordinator/sample.h"
#include "core/rng.h"
#include "tests/test.h"

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
	/* more rounds on a restart are fine, another rank is not */
	b.rounds = 30;
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
	CHECK_RC(coord_write_atomic(path, "first", 5));
	CHECK_RC(coord_write_atomic(path, "second!", 7));
	CHECK_RC(coord_read_file(path, 1024, &txt, &len));
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
	CHECK(coord_read_file(path, 3, &txt, &len) == FL_ETOOBIG);
	snprintf(path, sizeof path, "%s/missing", d);
	CHECK(coord_read_file(path, 1024, &txt, &len) == FL_ENOENT);
	/* writing into a missing directory fails cleanly */
	snprintf(path, sizeof path, "%s/nodir/f", d);
	CHECK(coord_write_atomic(path, "x", 1) == FL_EIO);
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
	coord_state_fini(&s);
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
		CHECK_RC(coord_write_atomic(path, bad[i], strlen(bad[i])));
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
    TEST(test_metrics_append_and_trim),
    TEST(test_sample_uniform),
    TEST(test_sample_deterministic),
    {0},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
