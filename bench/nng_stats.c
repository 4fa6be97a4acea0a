/*
 * bench/nng_stats.c — what one nng statistics snapshot costs with many
 * connections: the TLS listener monitor (core/net.c) takes one every second
 * (nng 1.5.2 has no per-listener statistics call, so nng_stats_get copies
 * every statistic of the process, a few per pipe).
 *
 *   build/bench/nng_stats [N ...]     (default: 100 1000 2000)
 *
 * For each N: one REP socket listening on a loopback TCP port and N REQ
 * sockets dialed to it, in this process (so 2N pipes), then the mean time
 * of 20 nng_stats_get + nng_stats_free. Needs about 2N+10 descriptors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#define REPS 20

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* One measurement with n connections: 0, or 1 with a message on stderr. */
static int measure(int n)
{
	nng_socket rep, *req = calloc((size_t)n, sizeof *req);
	nng_listener l;
	nng_sockaddr sa;
	char url[64];
	int rv = 1, opened = 0;
	double t0;

	if (!req || nng_rep0_open(&rep) != 0) {
		fprintf(stderr, "nng_stats: cannot open sockets\n");
		free(req);
		return 1;
	}
	if (nng_listen(rep, "tcp://127.0.0.1:0", &l, 0) != 0 ||
	    nng_listener_get_addr(l, NNG_OPT_LOCADDR, &sa) != 0) {
		fprintf(stderr, "nng_stats: cannot listen on loopback\n");
		goto out;
	}
	snprintf(url, sizeof url, "tcp://127.0.0.1:%u",
	         (unsigned)((const unsigned char *)&sa.s_in.sa_port)[0] << 8 |
	             ((const unsigned char *)&sa.s_in.sa_port)[1]);
	for (; opened < n; opened++) {
		int e;
		if ((e = nng_req0_open(&req[opened])) != 0 ||
		    (e = nng_dial(req[opened], url, NULL, 0)) != 0) {
			if (e == 0 || nng_socket_id(req[opened]) > 0)
				nng_close(req[opened]);
			fprintf(stderr, "nng_stats: connection %d of %d: %s (raise ulimit -n?)\n",
			        opened + 1, n, nng_strerror(e));
			goto out;
		}
	}
	nng_msleep(1000); /* let the listener side's pipes come up */
	t0 = now_s();
	for (int i = 0; i < REPS; i++) {
		nng_stat *s;
		if (nng_stats_get(&s) != 0) {
			fprintf(stderr, "nng_stats: nng_stats_get failed\n");
			goto out;
		}
		nng_stats_free(s);
	}
	printf("%6d connections (%d pipes): nng_stats_get + free %8.2f ms\n", n, 2 * n,
	       (now_s() - t0) / REPS * 1e3);
	fflush(stdout);
	rv = 0;
out:
	for (int i = 0; i < opened; i++)
		nng_close(req[i]);
	nng_close(rep);
	free(req);
	return rv;
}

int main(int argc, char **argv)
{
	static const int def[] = {100, 1000, 2000};
	int rv = 0;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: nng_stats [N ...]\n"
		       "  times one nng statistics snapshot (nng_stats_get) with N loopback\n"
		       "  connections in this process (default: 100 1000 2000)\n");
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		char *end;
		long n = strtol(argv[i], &end, 10);
		if (*end || n < 1 || n > 100000) {
			fprintf(stderr, "nng_stats: N must be 1..100000, not '%s'\n", argv[i]);
			return 2;
		}
	}
	if (argc > 1)
		for (int i = 1; i < argc && !rv; i++)
			rv = measure(atoi(argv[i]));
	else
		for (size_t i = 0; i < sizeof def / sizeof def[0] && !rv; i++)
			rv = measure(def[i]);
	return rv;
}
