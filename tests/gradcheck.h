/*
 * tests/gradcheck.h — finite-difference gradient checks shared by the model
 * tests (ops_test, llama_test).
 *
 * test_gradcheck compares an analytic float gradient g (n entries) with
 * central differences of a double-precision loss f(ctx) with respect to the
 * double array x, at most `maxn` entries spread over the array, with
 * tolerance atol + rtol * |numeric|. The step is 1e-5 * max(1, |x_i|).
 * Reports the first mismatches on stderr, CHECKs that there are none, and
 * returns their number. Include after tests/test.h.
 */
#ifndef FL_TESTS_GRADCHECK_H
#define FL_TESTS_GRADCHECK_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>

typedef double (*test_loss_fn)(void *ctx);

static inline int test_gradcheck(const char *what, test_loss_fn f, void *ctx, double *x,
                                 const float *g, size_t n, size_t maxn, double atol, double rtol)
{
	int bad = 0;
	size_t step = n > maxn ? n / maxn : 1;
	for (size_t i = 0; i < n; i += step) {
		double keep = x[i];
		double h = 1e-5 * (fabs(keep) > 1 ? fabs(keep) : 1);
		x[i] = keep + h;
		double lp = f(ctx);
		x[i] = keep - h;
		double lm = f(ctx);
		x[i] = keep;
		double num = (lp - lm) / (2 * h);
		if (!(fabs(g[i] - num) <= atol + rtol * fabs(num))) {
			if (bad < 5)
				fprintf(stderr, "  %s[%zu]: analytic %.8g numeric %.8g\n", what, i,
				        (double)g[i], num);
			bad++;
		}
	}
	CHECK(bad == 0);
	return bad;
}

#endif
