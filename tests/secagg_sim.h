/*
 * tests/secagg_sim.h — one secure-aggregation round driven in memory through
 * privacy/secagg.h, as the coordinator would relay it, for tests/secagg_test.c
 * and bench/secagg.c. Clients listed in drop_keys send no keys; clients in
 * drop_mask share but vanish before sending their masked vector; clients in
 * drop_unmask send their masked vector but never sign their view nor answer
 * the unmask request.
 * Bytes and CPU seconds of each phase are counted.
 */
#ifndef FL_TESTS_SECAGG_SIM_H
#define FL_TESTS_SECAGG_SIM_H

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "privacy/secagg.h"

typedef struct sa_sim {
	const uint8_t *drop_keys, *drop_mask, *drop_unmask; /* n flags each, may be NULL */
	double client_s;                                    /* CPU seconds of all client work */
	double server_s;             /* CPU seconds of the coordinator's work */
	size_t up_bytes, down_bytes; /* all clients together */
	int nsurv;
	char why[200];
} sa_sim;

static double sa_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int sa_flag(const uint8_t *f, int i)
{
	return f && f[i];
}

/* Runs the round over x (n x len) into sum (len). Returns the server's code. */
static int sa_sim_round(const priv_sa_params *p0, const float *x, size_t len, double *sum,
                        sa_sim *st)
{
	priv_sa_params p = *p0;
	char why[200];
	int rv = priv_sa_check_params(&p, why, sizeof why);
	if (rv != 0)
		return rv;
	int n = p.n, D = p.degree;
	priv_sa_client **c = calloc((size_t)n, sizeof *c);
	priv_sa_server *srv = NULL;
	uint8_t(*cpk)[32] = calloc((size_t)n, 32), (*spk)[32] = calloc((size_t)n, 32);
	uint8_t(*idpk)[32] = calloc((size_t)n, 32), (*idsk)[64] = calloc((size_t)n, 64);
	uint8_t *boxes = malloc((size_t)n * D * PRIV_SA_BOX_BYTES);
	int *to = malloc((size_t)n * D * sizeof *to), *cnt = calloc((size_t)n, sizeof *cnt);
	uint32_t *y = malloc(len * sizeof *y);
	uint8_t(*sigs)[PRIV_SA_SIG_BYTES] = calloc((size_t)n, PRIV_SA_SIG_BYTES);
	size_t vb = PRIV_SA_VIEW_BYTES(D); /* a packed view */
	uint8_t *views = calloc((size_t)n, vb), *signed_ = calloc((size_t)n, 1);
	uint8_t flags[PRIV_SA_MAX_DEGREE];
	priv_sa_signed_view *sv = calloc(2 * (size_t)D + 1, sizeof *sv);
	int nb[PRIV_SA_MAX_DEGREE], w[2 * PRIV_SA_MAX_DEGREE + 1], nbk, nw;
	priv_sa_reveal *rev = malloc((size_t)n * D * sizeof *rev);
	size_t nrev = 0;
	double t;
	rv = FL_ENOMEM;
	if (!c || !cpk || !spk || !idpk || !idsk || !boxes || !to || !cnt || !y || !sigs ||
	    !views || !signed_ || !sv || !rev)
		goto out;
	if ((rv = priv_sa_server_new(&p, len, &srv)) != 0)
		goto out;
	/* advertise keys */
	for (int i = 0; i < n; i++) {
		crypto_sign_keypair(idpk[i], idsk[i]);
		if (sa_flag(st->drop_keys, i))
			continue;
		t = sa_cpu();
		rv = priv_sa_client_new(&p, i, &c[i]);
		if (rv == 0)
			priv_sa_client_pubkeys(c[i], cpk[i], spk[i]);
		st->client_s += sa_cpu() - t;
		if (rv != 0)
			goto out;
		st->up_bytes += 64;
		t = sa_cpu();
		rv = priv_sa_server_set_keys(srv, i, cpk[i], spk[i]);
		st->server_s += sa_cpu() - t;
		if (rv != 0)
			goto out;
	}
	/* share: each client gets its neighbours' keys (2 x 32 bytes each) */
	for (int i = 0; i < n; i++) {
		if (!c[i])
			continue;
		t = sa_cpu();
		rv = priv_sa_client_set_keys(c[i], (const uint8_t(*)[32])cpk,
		                             (const uint8_t(*)[32])spk);
		if (rv == 0)
			rv = priv_sa_client_make_shares(c[i],
			                                boxes + (size_t)i * D * PRIV_SA_BOX_BYTES,
			                                to + (size_t)i * D, &cnt[i]);
		st->client_s += sa_cpu() - t;
		if (rv != 0)
			goto out;
		st->down_bytes += (size_t)D * 64;
		st->up_bytes += (size_t)cnt[i] * (PRIV_SA_BOX_BYTES + 4);
	}
	/* relay the boxes */
	for (int i = 0; i < n; i++)
		for (int q = 0; c[i] && q < cnt[i]; q++) {
			int j = to[(size_t)i * D + q];
			if (!c[j])
				continue;
			priv_sa_server_note_share(srv, i, j);
			t = sa_cpu();
			rv = priv_sa_client_recv_share(
			    c[j], i, boxes + ((size_t)i * D + (size_t)q) * PRIV_SA_BOX_BYTES);
			st->client_s += sa_cpu() - t;
			st->down_bytes += PRIV_SA_BOX_BYTES + 4;
			if (rv != 0)
				goto out;
		}
	/* masked vectors */
	for (int i = 0; i < n; i++) {
		if (!c[i] || sa_flag(st->drop_mask, i))
			continue;
		t = sa_cpu();
		rv = priv_sa_client_mask(c[i], x + (size_t)i * len, len, y);
		st->client_s += sa_cpu() - t;
		if (rv != 0)
			goto out;
		st->up_bytes += len * 4;
		t = sa_cpu();
		rv = priv_sa_server_add(srv, i, y);
		st->server_s += sa_cpu() - t;
		if (rv != 0)
			goto out;
	}
	/* each survivor signs its view (S restricted to its neighbours); the
	 * coordinator hands each signer the signed views of its ring window */
	const uint8_t *surv = priv_sa_server_survivors(srv);
	for (int i = 0; i < n; i++) {
		if (!c[i] || !surv[i] || sa_flag(st->drop_unmask, i))
			continue;
		priv_sa_neighbours(&p, i, nb, &nbk);
		for (int q = 0; q < nbk; q++)
			flags[q] = surv[nb[q]];
		priv_sa_view_pack(flags, nbk, views + (size_t)i * vb);
		t = sa_cpu();
		rv = priv_sa_client_sign_view(c[i], views + (size_t)i * vb, vb, idsk[i], sigs[i]);
		st->client_s += sa_cpu() - t;
		st->down_bytes += vb;
		if (rv == FL_EQUORUM)
			continue; /* too few surviving neighbours: an honest client refuses */
		if (rv != 0)
			goto out;
		signed_[i] = 1;
		st->up_bytes += PRIV_SA_SIG_BYTES;
	}
	for (int i = 0; i < n; i++) {
		int m = 0, ns = 0, bad;
		if (!signed_[i])
			continue;
		priv_sa_window(&p, i, w, &nw);
		for (int q = 0; q < nw; q++) {
			int j = w[q];
			if (!signed_[j])
				continue;
			sv[ns].index = j;
			sv[ns].view = views + (size_t)j * vb;
			sv[ns].view_len = vb;
			sv[ns].id_pk = idpk[j];
			sv[ns].sig = sigs[j];
			ns++;
		}
		t = sa_cpu();
		rv = priv_sa_client_unmask(c[i], sv, ns, rev + nrev, &m, &bad);
		st->client_s += sa_cpu() - t;
		st->down_bytes += (size_t)ns * (PRIV_SA_SIG_BYTES + 32 + 4 + vb);
		if (rv == FL_ESIG)
			continue; /* an honest client refuses; the coordinator must abort */
		if (rv != 0)
			goto out;
		nrev += (size_t)m;
		st->up_bytes += (size_t)m * sizeof *rev;
	}
	t = sa_cpu();
	rv = priv_sa_server_finish(srv, rev, nrev, sum, &st->nsurv, st->why, sizeof st->why);
	st->server_s += sa_cpu() - t;
out:
	for (int i = 0; c && i < n; i++)
		priv_sa_client_free(c[i]);
	priv_sa_server_free(srv);
	free(c);
	free(cpk);
	free(spk);
	free(idpk);
	if (idsk)
		sodium_memzero(idsk, (size_t)n * 64);
	free(idsk);
	free(boxes);
	free(to);
	free(cnt);
	free(y);
	free(sigs);
	free(views);
	free(signed_);
	free(sv);
	free(rev);
	return rv;
}

#endif
