/* coordinator/sample.c — see coordinator/sample.h. */
#include "coordinator/sample.h"

#include "core/err.h"
#include "privacy/noise.h"

int coord_sample_uniform(fl_rng *r, int n, int k, int *idx)
{
	int chosen = 0;

	if (n < 1 || k < 1)
		return FL_EINVAL;
	if (k > n)
		k = n;
	/* Algorithm S: take item i with probability (still needed) / (left) */
	for (int i = 0; i < n && chosen < k; i++)
		if (fl_rng_below(r, (uint64_t)(n - i)) < (uint64_t)(k - chosen))
			idx[chosen++] = i;
	return 0;
}

int coord_sample_poisson(struct priv_noise *noise, int n, double q, int *idx, int *count)
{
	int c = 0;

	if (n < 0 || !(q >= 0 && q <= 1) || !noise)
		return FL_EINVAL;
	for (int i = 0; i < n; i++)
		if (priv_noise_uniform(noise) < q)
			idx[c++] = i;
	*count = c;
	return 0;
}
