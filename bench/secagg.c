/*
 * bench/secagg.c — the cost of secure aggregation (privacy/secagg.h) against
 * plaintext aggregation of the same updates, in memory (no network), on the
 * CPU.
 *
 *   build/bench/secagg [--len N] [--drop F] [--clients 10,100,500]
 *
 * For each client count n: one round with a fraction F (default 0.1) of the
 * clients vanishing after masking, updates of N float values (default
 * 262144 = a 1 MiB F32 adapter). Prints per client: CPU milliseconds of all
 * its secure-aggregation work (keys, shares, masking, unmask answer) and bytes
 * up / down, against plaintext's upload of the F32 vector; for the
 * coordinator: CPU milliseconds of folding + unmasking against a plaintext
 * fold in double. Checks that the unmasked sum equals the plaintext sum
 * within the fixed-point error, and exits 1 if not.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/secagg_sim.h"

int main(int argc, char **argv)
{
	size_t len = 262144;
	double drop = 0.1;
	const char *list = "10,100,500";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--len") && i + 1 < argc)
			len = (size_t)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--drop") && i + 1 < argc)
			drop = atof(argv[++i]);
		else if (!strcmp(argv[i], "--clients") && i + 1 < argc)
			list = argv[++i];
		else {
			fprintf(stderr,
			        "usage: %s [--len N] [--drop F] [--clients N,N,...]\n"
			        "secure vs plaintext aggregation cost per round (see the source "
			        "header)\n",
			        argv[0]);
			return !strcmp(argv[i], "--help") ? 0 : 2;
		}
	}
	if (sodium_init() < 0 || len == 0 || !(drop >= 0 && drop < 1))
		return 2;
	printf("secure aggregation, %zu values per update (%.2f MiB F32), %.0f%% drop after "
	       "masking\n",
	       len, len * 4.0 / 1048576, drop * 100);
	printf("%7s %6s %5s | %12s %10s %10s | %12s | %11s %11s %7s | %9s\n", "clients", "degree",
	       "t", "client ms", "up KiB", "down KiB", "plain up KiB", "coord ms", "plain ms",
	       "ratio", "max err");
	int bad = 0;
	for (const char *s = list; *s;) {
		int n = atoi(s);
		while (*s && *s != ',')
			s++;
		if (*s == ',')
			s++;
		if (n < 2)
			continue;
		priv_sa_params p;
		char why[200];
		memset(&p, 0, sizeof p);
		p.n = n;
		p.clip = 1.0;
		p.frac_bits = 16;
		p.round = 1;
		randombytes_buf(p.graph_seed, sizeof p.graph_seed);
		randombytes_buf(p.run_id, sizeof p.run_id);
		if (priv_sa_check_params(&p, why, sizeof why) != 0) {
			fprintf(stderr, "n %d: %s\n", n, why);
			return 1;
		}
		/* a dropout rate above the default threshold's tolerance needs a lower t */
		if (drop > 0.2)
			p.threshold = p.degree / 3 + 1;
		float *x = malloc((size_t)n * len * sizeof *x);
		double *sum = malloc(len * sizeof *sum), *ref = calloc(len, sizeof *ref);
		uint8_t *dm = calloc((size_t)n, 1);
		if (!x || !sum || !ref || !dm)
			return 1;
		for (size_t q = 0; q < (size_t)n * len; q++)
			x[q] = (float)(2.0 * (randombytes_uniform(1u << 20) / 1048576.0) - 1.0);
		int nd = (int)(drop * n + 0.5);
		for (int k = 0, i = 0; k < nd; i = (i + 7) % n)
			if (!dm[i]) {
				dm[i] = 1;
				k++;
			}
		/* plaintext: the coordinator folds each survivor's vector into a double sum */
		double t0 = sa_cpu();
		for (int i = 0; i < n; i++)
			if (!dm[i])
				for (size_t q = 0; q < len; q++)
					ref[q] += x[(size_t)i * len + q];
		double plain_s = sa_cpu() - t0;
		sa_sim st;
		memset(&st, 0, sizeof st);
		st.drop_mask = dm;
		int rv = sa_sim_round(&p, x, len, sum, &st);
		double err = 0;
		for (size_t q = 0; rv == 0 && q < len; q++)
			err = fmax(err, fabs(sum[q] - ref[q]));
		if (rv != 0 || err > n * ldexp(1, -(p.frac_bits + 1))) {
			fprintf(stderr, "n %d: round failed (%s) or error %g too large\n", n,
			        st.why, err);
			bad = 1;
		}
		printf(
		    "%7d %6d %5d | %12.2f %10.1f %10.1f | %12.1f | %11.1f %11.1f %7.1f | %9.2e\n",
		    n, p.degree, p.threshold, 1e3 * st.client_s / n, st.up_bytes / 1024.0 / n,
		    st.down_bytes / 1024.0 / n, (n - nd) * len * 4.0 / 1024 / n, 1e3 * st.server_s, 1e3 * plain_s,
		    st.server_s / plain_s, err);
		fflush(stdout);
		free(x);
		free(sum);
		free(ref);
		free(dm);
	}
	return bad;
}
