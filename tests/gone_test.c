/* tests/gone_test.c — coordinator/gone.h: who is left out of selections. */
#include "coordinator/gone.h"
#include "test.h"

/* Missed deadline: out of every further attempt of its round even while it
 * polls; selectable in a later round only after a request since the mark; a
 * Hello brings it back at once. */
static void test_missed_deadline(void)
{
	coord_gone g;
	coord_gone_init(&g);
	CHECK_RC(coord_gone_seen(&g, 3, 7, 1));
	CHECK(!coord_gone_exclude(&g, 3, 1));
	coord_gone_mark_missed(&g, 3, 1);
	CHECK(g.n_gone == 1);
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

static const test_case cases[] = {
    TEST(test_missed_deadline),
    TEST(test_dropped_pipe),
    TEST(test_untracked_missed),
    {0},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
