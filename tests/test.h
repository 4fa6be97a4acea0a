/*
 * tests/test.h — the tiny test harness every tests/<module>_test.c uses.
 *
 * A test binary is a table of named cases. Each case is a void function that
 * uses CHECK / CHECK_RC / CHECK_NEAR; a failed check prints the expression,
 * file:line and (for CHECK_RC) fl_strerror() of the code, and marks the case
 * failed but lets it continue. TEST_SKIP(reason) ends a case as skipped.
 *
 * Output, one line per case, parsed by scripts/run-tests.sh:
 *   ok - NAME
 *   not ok - NAME
 *   skip - NAME: REASON
 * The binary exits 1 if any case failed, 0 otherwise.
 *
 * Usage:
 *   static void test_foo(void) { CHECK(1 + 1 == 2); }
 *   static const test_case cases[] = { TEST(test_foo), {0} };
 *   int main(int argc, char **argv) { return test_main(argc, argv, cases); }
 * `prog NAME` runs only the cases whose name contains NAME.
 */
#ifndef FL_TEST_H
#define FL_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

typedef struct test_case {
	const char *name;
	void (*fn)(void);
} test_case;

#define TEST(fn)                                                                                   \
	{                                                                                          \
#fn, fn                                                                            \
	}

static int test_cur_failed;
static int test_cur_skipped;
static char test_skip_reason[256];

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
			test_cur_failed = 1;                                                       \
		}                                                                                  \
	} while (0)

#define CHECK_RC(expr)                                                                             \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_ != 0) {                                                                    \
			fprintf(stderr, "  %s:%d: %s returned %d (%s)\n", __FILE__, __LINE__,      \
			        #expr, rc_, fl_strerror(rc_));                                     \
			test_cur_failed = 1;                                                       \
		}                                                                                  \
	} while (0)

/* |a - b| <= atol + rtol * |b|, b being the reference. */
#define CHECK_NEAR(a, b, atol, rtol)                                                               \
	do {                                                                                       \
		double a_ = (double)(a), b_ = (double)(b);                                         \
		if (!(fabs(a_ - b_) <= (atol) + (rtol)*fabs(b_))) {                                \
			fprintf(                                                                   \
			    stderr, "  %s:%d: %s = %.9g, expected %s = %.9g (atol %g rtol %g)\n",  \
			    __FILE__, __LINE__, #a, a_, #b, b_, (double)(atol), (double)(rtol));   \
			test_cur_failed = 1;                                                       \
		}                                                                                  \
	} while (0)

#define TEST_SKIP(...)                                                                             \
	do {                                                                                       \
		snprintf(test_skip_reason, sizeof test_skip_reason, __VA_ARGS__);                  \
		test_cur_skipped = 1;                                                              \
		return;                                                                            \
	} while (0)

static inline int test_main(int argc, char **argv, const test_case *cases)
{
	int failed = 0;
	for (const test_case *c = cases; c->name; c++) {
		if (argc > 1 && !strstr(c->name, argv[1]))
			continue;
		test_cur_failed = test_cur_skipped = 0;
		test_skip_reason[0] = 0;
		fflush(stdout);
		c->fn();
		if (test_cur_failed) {
			printf("not ok - %s\n", c->name);
			failed = 1;
		} else if (test_cur_skipped) {
			printf("skip - %s: %s\n", c->name, test_skip_reason);
		} else {
			printf("ok - %s\n", c->name);
		}
		fflush(stdout);
	}
	return failed;
}

#endif
