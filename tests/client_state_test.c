/*
 * tests/client_state_test.c — client_dp_state_read (client/session.h), the
 * client's privacy history file: a missing file is an empty history, a file
 * as the client writes it reads back phase by phase, and malformed files
 * (bad run id, phase out of range, too many phases, not JSON) are FL_EFORMAT
 * with an empty state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/session.h"
#include "core/err.h"
#include "tests/test.h"

static char path[256];

static void put(const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
}

static void test_missing_is_empty(void)
{
	client_dp_state st;
	unlink(path);
	CHECK_RC(client_dp_state_read(path, &st));
	CHECK(st.n == 0 && st.phases == NULL && st.run_id[0] == 0);
}

static void test_reads_phases(void)
{
	client_dp_state st;
	put("{\"phases\":[{\"sigma\":1.1,\"q\":0.01,\"steps\":120},"
	    "{\"sigma\":0.8,\"q\":1,\"steps\":40}],\"run_id\":\"run-1\",\"delta\":1e-05,"
	    "\"epsilon\":2.5}");
	CHECK_RC(client_dp_state_read(path, &st));
	CHECK(!strcmp(st.run_id, "run-1") && st.delta == 1e-5 && st.n == 2);
	CHECK(st.phases[0].sigma == 1.1 && st.phases[0].q == 0.01 && st.phases[0].steps == 120);
	CHECK(st.phases[1].sigma == 0.8 && st.phases[1].q == 1 && st.phases[1].steps == 40);
	client_dp_state_fini(&st);
	CHECK(st.phases == NULL && st.n == 0);
}

static void test_rejects_malformed(void)
{
	static const char *const bad[] = {
	    "{\"phases\":[],\"run_id\":\"has space\"}",
	    "{\"phases\":[{\"sigma\":-1,\"q\":0.1,\"steps\":1}],\"run_id\":\"r\"}",
	    "{\"phases\":[{\"sigma\":1,\"q\":1.5,\"steps\":1}],\"run_id\":\"r\"}",
	    "{\"phases\":[{\"sigma\":1,\"q\":0.5,\"steps\":1e15}],\"run_id\":\"r\"}",
	    "{\"phases\":[{\"sigma\":1,\"q\":0.5}],\"run_id\":\"r\"}",
	    "{\"phases\":{},\"run_id\":\"r\"}",
	    "[1, 2",
	};
	client_dp_state st;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		put(bad[i]);
		CHECK(client_dp_state_read(path, &st) == FL_EFORMAT);
		CHECK(st.n == 0 && st.phases == NULL);
	}
	/* one phase more than the client keeps */
	size_t cap = 64 + (size_t)(CLIENT_MAX_PHASES + 1) * 40;
	char *big = malloc(cap), *p = big;
	if (!big)
		abort();
	p += sprintf(p, "{\"run_id\":\"r\",\"phases\":[");
	for (int i = 0; i <= CLIENT_MAX_PHASES; i++)
		p += sprintf(p, "%s{\"sigma\":1,\"q\":0.5,\"steps\":1}", i ? "," : "");
	strcpy(p, "]}");
	put(big);
	free(big);
	CHECK(client_dp_state_read(path, &st) == FL_EFORMAT);
}

static const test_case cases[] = {
    TEST(test_missing_is_empty),
    TEST(test_reads_phases),
    TEST(test_rejects_malformed),
    {0},
};

int main(int argc, char **argv)
{
	char dir[] = "/tmp/fl-client-state.XXXXXX";
	int rc;
	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof path, "%s/state.json", dir);
	rc = test_main(argc, argv, cases);
	unlink(path);
	rmdir(dir);
	return rc;
}
