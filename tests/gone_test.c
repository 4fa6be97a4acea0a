/* tests/gone_test.c — coordinator/gone.h: who is left out of selections. */
#include "coordinator/gone.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coordinator/rundir.h"
#include "test.h"

/* A registry of n clients with keys "k0", "k1", ... and run id "run1". */
static void state_of(coord_state *s, int n, int round)
{
	coord_state_init(s);
	strcpy(s->run_id, "run1");
	s->round = round;
	for (int i = 0; i < n; i++) {
		char key[16];
		snprintf(key, sizeof key, "k%d", i);
		CHECK_RC(coord_state_add_client(s, key, 1, 1, NULL));
	}
}

/* Missed deadline: out of every further attempt of its round even while it
 * polls; selectable in a later round only after a request since the mark; a
 * Hello brings it back at once. */
static void test_missed_deadline(void)
{
	coord_gone g;
	coord_gone_init(&g);
	CHECK_RC(coord_gone_seen(&g, 3, 7, 1));
	CHECK(!coord_gone_exclude(&g, 3, 1));
	CHECK(!coord_gone_missed(&g, 3, 1));
	coord_gone_mark_missed(&g, 3, 1);
	CHECK(g.n_gone == 1);
	CHECK(coord_gone_missed(&g, 3, 1) && !coord_gone_missed(&g, 3, 2));
	CHECK(coord_gone_exclude(&g, 3, 1));
	/* no request since the mark: still out in round 2 */
	CHECK(coord_gone_exclude(&g, 3, 2));
	/* polling during round 1 does not bring it back for round 1 */
	CHECK_RC(coord_gone_seen(&g, 3, 7, 0));
	CHECK(coord_gone_exclude(&g, 3, 1));
	/* but for round 2 it is back, and cleared */
	CHECK(!coord_gone_exclude(&g, 3, 2));
	CHECK(g.n_gone == 0);
	/* a Hello clears at once */
	coord_gone_mark_missed(&g, 3, 2);
	CHECK_RC(coord_gone_seen(&g, 3, 7, 1));
	CHECK(!coord_gone_exclude(&g, 3, 2));
	CHECK(g.n_gone == 0);
	coord_gone_fini(&g);
}

/* Dropped connection: every client on that pipe is gone until it speaks on
 * another pipe (a reconnect) or says Hello; other pipes are untouched. */
static void test_dropped_pipe(void)
{
	coord_gone g;
	coord_gone_init(&g);
	CHECK_RC(coord_gone_seen(&g, 0, 11, 1));
	CHECK_RC(coord_gone_seen(&g, 1, 12, 1));
	CHECK_RC(coord_gone_seen(&g, 200, 12, 0)); /* grows past the first block */
	CHECK(coord_gone_pipe_dropped(&g, 12, 4) == 2);
	CHECK(coord_gone_pipe_dropped(&g, 0, 4) == 0);
	CHECK(g.n_gone == 2);
	CHECK(!coord_gone_exclude(&g, 0, 4));
	CHECK(coord_gone_exclude(&g, 1, 4));
	CHECK(coord_gone_exclude(&g, 200, 9)); /* a later round alone does not help */
	/* a late message still on the dropped pipe id does not count */
	CHECK_RC(coord_gone_seen(&g, 1, 12, 0));
	CHECK(coord_gone_exclude(&g, 1, 5));
	CHECK_RC(coord_gone_seen(&g, 1, 13, 0));
	CHECK(!coord_gone_exclude(&g, 1, 4));
	CHECK(g.n_gone == 1);
	/* untracked indexes are never gone */
	CHECK(!coord_gone_exclude(&g, 5000, 4));
	CHECK(coord_gone_seen(&g, -1, 1, 0) == FL_EINVAL);
	coord_gone_fini(&g);
	coord_gone_fini(NULL);
}

/* A client known only from state.json (never seen in this process) that
 * misses a deadline is tracked and left out. */
static void test_untracked_missed(void)
{
	coord_gone g;
	coord_gone_init(&g);
	coord_gone_mark_missed(&g, 70, 1);
	CHECK(coord_gone_exclude(&g, 70, 1));
	CHECK(g.n_gone == 1);
	coord_gone_fini(&g);
}

/* Re-admission when a round cannot reach its quorum otherwise: only a client
 * that missed this round's deadline and has sent a request since (alive,
 * only slow) is readmittable; readmitting clears it, and a new miss needs a
 * new request before it is readmittable again. */
static void test_readmit_slow(void)
{
	coord_gone g;
	coord_gone_init(&g);
	CHECK(!coord_gone_slow(&g, 2, 1) && !coord_gone_readmit(&g, 2, 1)); /* untracked */
	CHECK_RC(coord_gone_seen(&g, 2, 7, 1));
	CHECK_RC(coord_gone_seen(&g, 3, 8, 1));
	CHECK_RC(coord_gone_seen(&g, 4, 9, 1));
	CHECK(!coord_gone_slow(&g, 2, 1) && !coord_gone_readmit(&g, 2, 1)); /* not gone */
	coord_gone_mark_missed(&g, 2, 1);
	coord_gone_mark_missed(&g, 3, 1);
	CHECK(coord_gone_pipe_dropped(&g, 9, 1) == 1);
	g.dirty = 0;
	/* silent since the mark: not readmittable, nothing changes */
	CHECK(!coord_gone_slow(&g, 2, 1) && !coord_gone_readmit(&g, 2, 1));
	CHECK(g.n_gone == 3 && !g.dirty && coord_gone_exclude(&g, 2, 1));
	/* a poll since the mark: slow, but only for the round it missed */
	CHECK_RC(coord_gone_seen(&g, 2, 7, 0));
	CHECK(coord_gone_slow(&g, 2, 1));
	CHECK(!coord_gone_slow(&g, 2, 2) && !coord_gone_readmit(&g, 2, 2));
	/* a dropped client is not slow, even when it speaks on its old pipe */
	CHECK_RC(coord_gone_seen(&g, 4, 9, 0));
	CHECK(!coord_gone_slow(&g, 4, 1) && !coord_gone_readmit(&g, 4, 1));
	/* readmitted: selectable in round 1 again, persisted as not gone */
	g.dirty = 0;
	CHECK(coord_gone_readmit(&g, 2, 1));
	CHECK(g.n_gone == 2 && g.dirty && !coord_gone_exclude(&g, 2, 1));
	CHECK(!coord_gone_missed(&g, 2, 1) && !coord_gone_slow(&g, 2, 1));
	CHECK(!coord_gone_readmit(&g, 2, 1)); /* once */
	/* misses again: out until it sends another request */
	coord_gone_mark_missed(&g, 2, 1);
	CHECK(!coord_gone_slow(&g, 2, 1) && coord_gone_exclude(&g, 2, 1));
	CHECK_RC(coord_gone_seen(&g, 2, 7, 0));
	CHECK(coord_gone_readmit(&g, 2, 1));
	/* 3 never spoke again; a negative or huge index is never slow */
	CHECK(!coord_gone_slow(&g, 3, 1) && coord_gone_exclude(&g, 3, 1));
	CHECK(!coord_gone_slow(&g, -1, 1) && !coord_gone_readmit(&g, 5000, 1));
	coord_gone_fini(&g);
}

/* gone.json round trip: every gone entry comes back by key (kind, round,
 * back), pipes do not, and the restored set excludes as before. */
static void test_persist_round_trip(void)
{
	coord_state s;
	coord_gone g, h;
	char *text = NULL, dir[] = "/tmp/gone_test.XXXXXX";
	int skipped = -1;

	state_of(&s, 5, 2); /* round 3 is open */
	coord_gone_init(&g);
	coord_gone_init(&h);
	CHECK(!g.dirty);
	CHECK_RC(coord_gone_seen(&g, 1, 21, 1));
	CHECK_RC(coord_gone_seen(&g, 3, 23, 1));
	CHECK(!g.dirty); /* seen without a mark changes nothing persisted */
	coord_gone_mark_missed(&g, 1, 3);
	CHECK(coord_gone_pipe_dropped(&g, 23, 3) == 1);
	coord_gone_mark_missed(&g, 4, 2);
	CHECK_RC(coord_gone_seen(&g, 4, 24, 0)); /* back after the mark */
	CHECK(g.dirty);
	CHECK_RC(coord_gone_to_json(&g, &s, &text));
	CHECK(!g.dirty && text);
	CHECK(mkdtemp(dir) != NULL);
	CHECK_RC(coord_gone_write(dir, text));
	CHECK_RC(coord_gone_load(&h, &s, dir, &skipped, NULL, 0));
	CHECK(skipped == 0 && h.n_gone == 3 && !h.dirty);
	CHECK(coord_gone_missed(&h, 1, 3));
	CHECK(h.e[3].kind == COORD_GONE_DROPPED && h.e[3].round == 3 && h.e[3].pipe == 0);
	CHECK(h.e[4].kind == COORD_GONE_MISSED && h.e[4].round == 2 && h.e[4].back);
	CHECK(!h.e[1].back);
	/* the restored set decides as the saved one: 1 stays out of round 3
	 * even after polling, 4 (back, missed round 2) is selectable in 3,
	 * 3 (dropped) is back with a request on any connection */
	CHECK(coord_gone_exclude(&h, 1, 3));
	CHECK_RC(coord_gone_seen(&h, 1, 5, 0));
	CHECK(coord_gone_exclude(&h, 1, 3));
	CHECK(!coord_gone_exclude(&h, 4, 3));
	CHECK(coord_gone_exclude(&h, 3, 3));
	CHECK_RC(coord_gone_seen(&h, 3, 6, 0));
	CHECK(!coord_gone_exclude(&h, 3, 3));
	CHECK(!coord_gone_exclude(&h, 0, 3) && !coord_gone_exclude(&h, 2, 3));
	/* absent file */
	coord_gone_fini(&h);
	coord_gone_init(&h);
	{
		char path[64];
		snprintf(path, sizeof path, "%s/gone.json", dir);
		CHECK(unlink(path) == 0);
		CHECK(coord_gone_load(&h, &s, dir, NULL, NULL, 0) == FL_ENOENT);
		CHECK(rmdir(dir) == 0);
	}
	free(text);
	coord_gone_fini(&g);
	coord_gone_fini(&h);
	coord_state_fini(&s);
}

/* parse text; returns the code, the reason in why */
static int parse(const coord_state *s, const char *text, int *skipped, char *why, size_t n)
{
	coord_gone g;
	int rv;
	coord_gone_init(&g);
	why[0] = 0;
	rv = coord_gone_parse(&g, s, text, strlen(text), skipped, why, n);
	if (rv)
		CHECK(g.n_gone == 0 && g.e == NULL); /* left empty */
	coord_gone_fini(&g);
	return rv;
}

/* Corrupt, truncated or foreign gone.json is refused with the field named;
 * keys the registry does not know are skipped and counted. */
static void test_persist_rejects(void)
{
	coord_state s;
	char why[200], *text = NULL;
	coord_gone g;
	int skipped = 0;
	const char *pre = "{\"version\":1,\"run_id\":\"run1\",\"clients\":[";
	char buf[512];

	state_of(&s, 3, 4);
	coord_gone_init(&g);
	coord_gone_mark_missed(&g, 0, 5);
	coord_gone_mark_missed(&g, 2, 4);
	CHECK_RC(coord_gone_to_json(&g, &s, &text));
	/* every truncation of a valid file is refused, none crashes */
	for (size_t n = 0; n < strlen(text); n++) {
		coord_gone h;
		coord_gone_init(&h);
		CHECK(coord_gone_parse(&h, &s, text, n, NULL, why, sizeof why) == FL_EFORMAT);
		coord_gone_fini(&h);
	}
	CHECK(parse(&s, text, &skipped, why, sizeof why) == 0 && skipped == 0);
	CHECK(parse(&s, "", NULL, why, sizeof why) == FL_EFORMAT && strstr(why, "truncated"));
	CHECK(parse(&s, "{\"version\":2,\"run_id\":\"run1\",\"clients\":[]}", NULL, why,
	            sizeof why) == FL_EFORMAT &&
	      strstr(why, "version"));
	CHECK(parse(&s, "{\"version\":1,\"run_id\":\"other\",\"clients\":[]}", NULL, why,
	            sizeof why) == FL_EFORMAT &&
	      strstr(why, "run_id"));
	CHECK(parse(&s, "{\"version\":1,\"run_id\":\"run1\",\"clients\":{}}", NULL, why,
	            sizeof why) == FL_EFORMAT &&
	      strstr(why, "clients"));
	snprintf(buf, sizeof buf, "%s7]}", pre);
	CHECK(parse(&s, buf, NULL, why, sizeof why) == FL_EFORMAT && strstr(why, "clients[0]"));
	snprintf(buf, sizeof buf,
	         "%s{\"key\":\"k1\",\"kind\":\"lost\",\"round\":1,\"back\":false}]}", pre);
	CHECK(parse(&s, buf, NULL, why, sizeof why) == FL_EFORMAT &&
	      strstr(why, "clients[0].kind"));
	/* round 6 is past the open round 5; 0, fractions, huge and strings too */
	const char *rounds[] = {"6", "0", "2.5", "1e300", "-1", "\"3\""};
	for (int i = 0; i < 6; i++) {
		snprintf(buf, sizeof buf,
		         "%s{\"key\":\"k1\",\"kind\":\"missed\",\"round\":%s,\"back\":false}]}",
		         pre, rounds[i]);
		CHECK(parse(&s, buf, NULL, why, sizeof why) == FL_EFORMAT &&
		      strstr(why, "clients[0].round"));
	}
	snprintf(buf, sizeof buf,
	         "%s{\"key\":\"k1\",\"kind\":\"dropped\",\"round\":5,\"back\":1}]}", pre);
	CHECK(parse(&s, buf, NULL, why, sizeof why) == FL_EFORMAT &&
	      strstr(why, "clients[0].back"));
	snprintf(buf, sizeof buf,
	         "%s{\"key\":\"\",\"kind\":\"dropped\",\"round\":5,\"back\":true}]}", pre);
	CHECK(parse(&s, buf, NULL, why, sizeof why) == FL_EFORMAT && strstr(why, "clients[0].key"));
	snprintf(buf, sizeof buf,
	         "%s{\"key\":\"k1\",\"kind\":\"dropped\",\"round\":5,\"back\":true},"
	         "{\"key\":\"k1\",\"kind\":\"missed\",\"round\":5,\"back\":true}]}",
	         pre);
	CHECK(parse(&s, buf, NULL, why, sizeof why) == FL_EFORMAT &&
	      strstr(why, "clients[1].key") && strstr(why, "twice"));
	/* a key the registry lacks is skipped, the rest loads */
	snprintf(buf, sizeof buf,
	         "%s{\"key\":\"k9\",\"kind\":\"dropped\",\"round\":5,\"back\":true},"
	         "{\"key\":\"k2\",\"kind\":\"missed\",\"round\":5,\"back\":false}]}",
	         pre);
	{
		coord_gone h;
		coord_gone_init(&h);
		CHECK_RC(coord_gone_parse(&h, &s, buf, strlen(buf), &skipped, why, sizeof why));
		CHECK(skipped == 1 && h.n_gone == 1 && coord_gone_missed(&h, 2, 5));
		coord_gone_fini(&h);
	}
	free(text);
	coord_gone_fini(&g);
	coord_state_fini(&s);
}

static const test_case cases[] = {
    TEST(test_missed_deadline),
    TEST(test_dropped_pipe),
    TEST(test_untracked_missed),
    TEST(test_readmit_slow),
    TEST(test_persist_round_trip),
    TEST(test_persist_rejects),
    {0},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
