/*
 * tests/secagg_test.c — privacy/secagg.h: fixed-point encoding and its
 * overflow bound, Shamir sharing, the graph, and whole rounds: the unmasked
 * sum equals the plaintext sum within the fixed-point error with 0/10/30%
 * dropouts after masking, below the threshold the round aborts, a
 * coordinator cannot get both secrets of one client (neighbours told
 * different statuses fail the view check; a client its neighbours' views
 * call dropped reveals nothing), a client masks only with threshold share
 * boxes in, replayed or misdirected share boxes are rejected, and the
 * derived graph seed and the ring-key order of positions are checked, and
 * views round-trip through their bit-packed form (a wrong length or a set
 * padding bit refused, neither signed nor counted).
 */
#include <math.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "privacy/secagg.h"
#include "tests/secagg_sim.h"
#include "tests/test.h"

static priv_sa_params params(int n)
{
	priv_sa_params p;
	memset(&p, 0, sizeof p);
	p.n = n;
	p.clip = 4.0;
	p.frac_bits = 16;
	p.round = 7;
	memcpy(p.run_id, "run-secagg-test!", 16);
	for (int i = 0; i < 32; i++)
		p.graph_seed[i] = (uint8_t)(i * 37 + 1);
	return p;
}

static float *inputs(int n, size_t len, unsigned seed)
{
	float *x = malloc((size_t)n * len * sizeof *x);
	srand(seed);
	for (size_t i = 0; i < (size_t)n * len; i++)
		x[i] = (float)(2.0 * rand() / RAND_MAX - 1.0);
	return x;
}

static void test_encoding(void)
{
	CHECK(priv_sa_decode(priv_sa_encode(1.5, 4, 16), 16) == 1.5);
	CHECK(priv_sa_decode(priv_sa_encode(-0.25, 4, 16), 16) == -0.25);
	CHECK(priv_sa_decode(priv_sa_encode(100, 4, 16), 16) == 4.0);   /* clipped */
	CHECK(priv_sa_decode(priv_sa_encode(-100, 4, 16), 16) == -4.0); /* clipped */
	CHECK(priv_sa_decode(priv_sa_encode(NAN, 4, 16), 16) == 0.0);
	CHECK(fabs(priv_sa_decode(priv_sa_encode(0.1, 4, 16), 16) - 0.1) <= ldexp(1, -17));
	/* sums wrap modulo 2^32: n values at the clip decode exactly up to the bound */
	uint32_t s = 0;
	for (int i = 0; i < 8191; i++)
		s += priv_sa_encode(4.0, 4, 16);
	CHECK(priv_sa_decode(s, 16) == 4.0 * 8191);
	s += priv_sa_encode(4.0, 4, 16); /* 8192 x 4 x 2^16 = 2^31: wraps negative */
	CHECK(priv_sa_decode(s, 16) < 0);
}

static void test_params(void)
{
	char why[200];
	priv_sa_params p = params(8191);
	CHECK_RC(priv_sa_check_params(&p, why, sizeof why));
	p = params(8192); /* the overflow above: refused */
	CHECK(priv_sa_check_params(&p, why, sizeof why) == FL_EINVAL);
	CHECK(strstr(why, "overflow") != NULL);
	p = params(10);
	CHECK_RC(priv_sa_check_params(&p, why, sizeof why));
	CHECK(p.degree == 9 && p.threshold == 5 && p.min_survivors == 6);
	p = params(500);
	CHECK_RC(priv_sa_check_params(&p, why, sizeof why));
	CHECK(p.degree == 22 && p.threshold == 12);
	p = params(1);
	CHECK(priv_sa_check_params(&p, why, sizeof why) == FL_EINVAL);
	p = params(100);
	p.degree = 7; /* odd and not complete */
	CHECK(priv_sa_check_params(&p, why, sizeof why) == FL_EINVAL);
}

static void test_graph(void)
{
	char why[200];
	priv_sa_params p = params(100);
	CHECK_RC(priv_sa_check_params(&p, why, sizeof why));
	int nb[254], k, nb2[254], k2;
	int *deg = calloc(100, sizeof *deg);
	for (int i = 0; i < 100; i++) {
		CHECK_RC(priv_sa_neighbours(&p, i, nb, &k));
		CHECK(k == p.degree);
		for (int q = 0; q < k; q++) {
			CHECK(nb[q] != i);
			CHECK(q == 0 || nb[q] > nb[q - 1]);
			/* symmetric */
			CHECK_RC(priv_sa_neighbours(&p, nb[q], nb2, &k2));
			int found = 0;
			for (int r = 0; r < k2; r++)
				found |= nb2[r] == i;
			CHECK(found);
			deg[nb[q]]++;
		}
	}
	for (int i = 0; i < 100; i++)
		CHECK(deg[i] == p.degree);
	free(deg);
}

/* The graph seed is derived from the run id and the round alone, and the
 * positions a client is told must follow the members' ring keys. */
static void test_ring(void)
{
	char why[200];
	uint8_t a[32], b[32], id[5][32], rk[5][32];
	int pos[5], ord[5] = {0, 1, 2, 3, 4};
	priv_sa_params p = params(40);
	priv_sa_graph_seed("run-a", 3, a);
	priv_sa_graph_seed("run-a", 3, b);
	CHECK(memcmp(a, b, 32) == 0);
	priv_sa_graph_seed("run-a", 4, b);
	CHECK(memcmp(a, b, 32) != 0);
	priv_sa_graph_seed("run-b", 3, b);
	CHECK(memcmp(a, b, 32) != 0);
	memcpy(p.graph_seed, a, 32);
	CHECK_RC(priv_sa_check_params(&p, why, sizeof why));
	for (int i = 0; i < 5; i++) {
		randombytes_buf(id[i], 32);
		priv_sa_ring_key(p.graph_seed, id[i], rk[i]);
	}
	/* sort the five by ring key; give them rising positions with gaps */
	for (int x = 1; x < 5; x++)
		for (int y = x; y > 0 && memcmp(rk[ord[y - 1]], rk[ord[y]], 32) > 0; y--) {
			int t = ord[y];
			ord[y] = ord[y - 1];
			ord[y - 1] = t;
		}
	uint8_t sid[5][32];
	for (int i = 0; i < 5; i++) {
		memcpy(sid[i], id[ord[i]], 32);
		pos[i] = 3 + 7 * i;
	}
	CHECK_RC(priv_sa_ring_check(&p, pos, (const uint8_t(*)[32])sid, 5));
	/* any order of the entries: still fine */
	{
		int pr[5] = {pos[4], pos[2], pos[0], pos[3], pos[1]};
		uint8_t ir[5][32];
		memcpy(ir[0], sid[4], 32);
		memcpy(ir[1], sid[2], 32);
		memcpy(ir[2], sid[0], 32);
		memcpy(ir[3], sid[3], 32);
		memcpy(ir[4], sid[1], 32);
		CHECK_RC(priv_sa_ring_check(&p, pr, (const uint8_t(*)[32])ir, 5));
	}
	/* two members swapped: refused */
	{
		int t = pos[1];
		pos[1] = pos[3];
		pos[3] = t;
		CHECK(priv_sa_ring_check(&p, pos, (const uint8_t(*)[32])sid, 5) == FL_EFORMAT);
		pos[3] = pos[1];
		pos[1] = t;
	}
	/* a repeated position, one out of range: refused */
	pos[2] = pos[1];
	CHECK(priv_sa_ring_check(&p, pos, (const uint8_t(*)[32])sid, 5) == FL_EFORMAT);
	pos[2] = 40;
	CHECK(priv_sa_ring_check(&p, pos, (const uint8_t(*)[32])sid, 5) == FL_EFORMAT);
	/* the ring window: within degree positions, neighbours of neighbours */
	{
		int w[2 * PRIV_SA_MAX_DEGREE + 1], nw, nb[PRIV_SA_MAX_DEGREE], k,
		    nb2[PRIV_SA_MAX_DEGREE], k2;
		priv_sa_params q = params(100);
		CHECK_RC(priv_sa_check_params(&q, why, sizeof why));
		CHECK_RC(priv_sa_window(&q, 1, w, &nw));
		CHECK(nw == 2 * q.degree);
		CHECK_RC(priv_sa_neighbours(&q, 1, nb, &k));
		for (int e = 0; e < k; e++) {
			CHECK_RC(priv_sa_neighbours(&q, nb[e], nb2, &k2));
			for (int f = 0; f < k2; f++) {
				int found = nb2[f] == 1;
				for (int g = 0; g < nw && !found; g++)
					found = w[g] == nb2[f];
				CHECK(found);
			}
		}
	}
}

static void round_ok_deg(int n, int degree, int threshold, double drop_frac, unsigned seed)
{
	size_t len = 1000;
	priv_sa_params p = params(n);
	p.degree = degree;
	p.threshold = threshold;
	float *x = inputs(n, len, seed);
	double *sum = malloc(len * sizeof *sum);
	uint8_t *drop = calloc((size_t)n, 1);
	int ndrop = (int)(drop_frac * n + 0.5);
	for (int i = 0; i < ndrop; i++)
		drop[(i * 7 + 3) % n] = 1; /* distinct for the n used here */
	sa_sim st;
	memset(&st, 0, sizeof st);
	st.drop_mask = drop;
	int rv = sa_sim_round(&p, x, len, sum, &st);
	CHECK_RC(rv);
	CHECK(st.nsurv == n - ndrop);
	double maxerr = 0, tol = (n - ndrop) * ldexp(1, -17) + 1e-12;
	for (size_t q = 0; q < len; q++) {
		double ref = 0;
		for (int i = 0; i < n; i++)
			if (!drop[i])
				ref += x[(size_t)i * len + q];
		maxerr = fmax(maxerr, fabs(sum[q] - ref));
	}
	CHECK(maxerr <= tol);
	if (rv != 0 || maxerr > tol)
		fprintf(stderr, "  n %d drop %d: %s max error %g (tol %g)\n", n, ndrop, st.why,
		        maxerr, tol);
	free(x);
	free(sum);
	free(drop);
}

static void round_ok(int n, double drop_frac, unsigned seed)
{
	round_ok_deg(n, 0, 0, drop_frac, seed);
}

static void test_round_no_dropout(void)
{
	round_ok(10, 0, 1);
	round_ok(40, 0, 2); /* sparse: degree 16 */
}

static void test_round_dropout_10(void)
{
	round_ok(10, 0.1, 3);
	round_ok(60, 0.1, 4);
}

static void test_round_dropout_30(void)
{
	round_ok(10, 0.3, 5);
	/* each survivor needs `threshold` live neighbours: with 30% gone, the default
	 * t = k/2 + 1 of the sparse default degree is too tight; a deployment that
	 * expects that many dropouts lowers t (here 10 of 24 or of 30) */
	round_ok_deg(60, 24, 10, 0.3, 6);
	round_ok_deg(200, 30, 10, 0.3, 7);
}

static void test_unmask_dropouts_too(void)
{
	/* clients that vanish after masking AND some survivors that never answer */
	size_t len = 64;
	int n = 30;
	priv_sa_params p = params(n);
	float *x = inputs(n, len, 9);
	double sum[64];
	uint8_t dm[30] = {0}, du[30] = {0};
	dm[2] = dm[11] = dm[25] = 1;
	du[4] = du[17] = 1;
	sa_sim st;
	memset(&st, 0, sizeof st);
	st.drop_mask = dm;
	st.drop_unmask = du;
	CHECK_RC(sa_sim_round(&p, x, len, sum, &st));
	double ref = 0;
	for (int i = 0; i < n; i++)
		if (!dm[i])
			ref += x[(size_t)i * len];
	CHECK(fabs(sum[0] - ref) <= n * ldexp(1, -17));
	free(x);
}

static void test_below_threshold_aborts(void)
{
	size_t len = 16;
	int n = 10;
	priv_sa_params p = params(n); /* min_survivors 6 */
	float *x = inputs(n, len, 11);
	double sum[16];
	uint8_t drop[10] = {1, 1, 1, 0, 1, 0, 0, 0, 0, 0}; /* 4 gone: 6 left: ok */
	sa_sim st;
	memset(&st, 0, sizeof st);
	st.drop_mask = drop;
	CHECK_RC(sa_sim_round(&p, x, len, sum, &st));
	drop[5] = 1; /* 5 left: abort, nothing revealed */
	memset(&st, 0, sizeof st);
	st.drop_mask = drop;
	CHECK(sa_sim_round(&p, x, len, sum, &st) == FL_EQUORUM);
	CHECK(strstr(st.why, "aborted") != NULL);
	free(x);
}

/* A hand-driven round of 6 clients (complete graph, t = 3) for the attacks. */
typedef struct mini {
	priv_sa_params p;
	priv_sa_client *c[6];
	uint8_t cpk[6][32], spk[6][32], idpk[6][32], idsk[6][64];
	uint8_t boxes[6][5][PRIV_SA_BOX_BYTES];
	int to[6][5], cnt[6];
} mini;

static void mini_setup(mini *m)
{
	char why[200];
	memset(m, 0, sizeof *m);
	m->p = params(6);
	CHECK_RC(priv_sa_check_params(&m->p, why, sizeof why));
	for (int i = 0; i < 6; i++) {
		crypto_sign_keypair(m->idpk[i], m->idsk[i]);
		CHECK_RC(priv_sa_client_new(&m->p, i, &m->c[i]));
		priv_sa_client_pubkeys(m->c[i], m->cpk[i], m->spk[i]);
	}
	for (int i = 0; i < 6; i++) {
		CHECK_RC(priv_sa_client_set_keys(m->c[i], (const uint8_t(*)[32])m->cpk,
		                                 (const uint8_t(*)[32])m->spk));
		CHECK_RC(priv_sa_client_make_shares(m->c[i], m->boxes[i][0], m->to[i], &m->cnt[i]));
		CHECK(m->cnt[i] == 5);
	}
}

static void mini_free(mini *m)
{
	for (int i = 0; i < 6; i++)
		priv_sa_client_free(m->c[i]);
}

static void test_share_boxes_checked(void)
{
	mini m;
	mini_setup(&m);
	/* box 0 -> to[0][0] (= 1) */
	int r = m.to[0][0];
	CHECK_RC(priv_sa_client_recv_share(m.c[r], 0, m.boxes[0][0]));
	CHECK(priv_sa_client_recv_share(m.c[r], 0, m.boxes[0][0]) == FL_EREPLAY);
	/* misdirected: the box for 1 delivered to 2 */
	CHECK(priv_sa_client_recv_share(m.c[m.to[0][1]], 0, m.boxes[0][0]) == FL_ESIG);
	/* claimed sender wrong */
	CHECK(priv_sa_client_recv_share(m.c[r], 3, m.boxes[0][0]) == FL_ESIG);
	/* tampered */
	uint8_t bad[PRIV_SA_BOX_BYTES];
	memcpy(bad, m.boxes[2][0], sizeof bad);
	bad[40] ^= 1;
	CHECK(priv_sa_client_recv_share(m.c[m.to[2][0]], 2, bad) == FL_ESIG);
	mini_free(&m);

	/* cross-round: the same key pairs (a replayed transcript) but round 8 -> header check */
	mini a;
	mini_setup(&a);
	priv_sa_params p8 = a.p;
	p8.round = 8;
	priv_sa_client *late;
	CHECK_RC(priv_sa_client_new(&p8, 1, &late));
	/* the late client cannot even open round-7 boxes: its keys are new */
	uint8_t cpk[6][32], spk[6][32];
	memcpy(cpk, a.cpk, sizeof cpk);
	memcpy(spk, a.spk, sizeof spk);
	priv_sa_client_pubkeys(late, cpk[1], spk[1]);
	CHECK_RC(
	    priv_sa_client_set_keys(late, (const uint8_t(*)[32])cpk, (const uint8_t(*)[32])spk));
	CHECK(priv_sa_client_recv_share(late, 0, a.boxes[0][0]) != 0);
	priv_sa_client_free(late);
	mini_free(&a);
}

static void mini_deliver_mask(mini *m, const uint8_t *masks)
{
	float x[4] = {0.5f, -0.25f, 1, 0};
	uint32_t y[4];
	for (int i = 0; i < 6; i++)
		for (int q = 0; q < m->cnt[i]; q++)
			CHECK_RC(priv_sa_client_recv_share(m->c[m->to[i][q]], i, m->boxes[i][q]));
	for (int i = 0; i < 6; i++)
		if (masks[i])
			CHECK_RC(priv_sa_client_mask(m->c[i], x, 4, y));
}

/* Client i's view with flag f[j] for each neighbour j (complete graph),
 * packed: 5 flags in one byte (VB). */
#define VB PRIV_SA_VIEW_BYTES(5)
static void mini_view(const mini *m, int i, const uint8_t *f, uint8_t *view)
{
	int nb[PRIV_SA_MAX_DEGREE], k;
	uint8_t fl[PRIV_SA_MAX_DEGREE];
	CHECK_RC(priv_sa_neighbours(&m->p, i, nb, &k));
	for (int q = 0; q < k; q++)
		fl[q] = f[nb[q]];
	priv_sa_view_pack(fl, k, view);
}

static void sv_set(priv_sa_signed_view *sv, int index, const uint8_t *view, size_t len,
                   const uint8_t *id_pk, const uint8_t *sig)
{
	sv->index = index;
	sv->view = view;
	sv->view_len = len;
	sv->id_pk = id_pk;
	sv->sig = sig;
}

static void test_no_single_client_unmask(void)
{
	mini m;
	mini_setup(&m);
	uint8_t all[6] = {1, 1, 1, 1, 1, 1};
	mini_deliver_mask(&m, all);
	/* the coordinator tells clients 0..2 and 5 that 5 survived and 3..4 that
	 * 5 dropped, hoping for 5's self-mask seed from the first and its mask
	 * key from the others */
	uint8_t s1[6] = {1, 1, 1, 1, 1, 1}, s2[6] = {1, 1, 1, 1, 1, 0};
	uint8_t view[6][5], sig[6][64];
	priv_sa_signed_view sv[6];
	priv_sa_reveal rev[5];
	int k, bad;
	for (int i = 0; i < 6; i++) {
		mini_view(&m, i, i == 3 || i == 4 ? s2 : s1, view[i]);
		CHECK_RC(priv_sa_client_sign_view(m.c[i], view[i], VB, m.idsk[i], sig[i]));
		sv_set(&sv[i], i, view[i], VB, m.idpk[i], sig[i]);
	}
	/* an honest client signs one view per round */
	{
		uint8_t other[5], s[64];
		mini_view(&m, 0, s2, other);
		CHECK(priv_sa_client_sign_view(m.c[0], other, VB, m.idsk[0], s) == FL_ESTATE);
	}
	/* 5 survived in the views of 3 of its 5 neighbours (0, 1, 2), a
	 * majority: clients 3 and 4, which saw it dropped, refuse to reveal
	 * its mask key, so the coordinator can only rebuild its self mask */
	CHECK(priv_sa_client_unmask(m.c[3], sv, 6, rev, &k, &bad) == FL_ESIG && bad == 5);
	CHECK(priv_sa_client_unmask(m.c[4], sv, 6, rev, &k, &bad) == FL_ESIG && bad == 5);
	CHECK_RC(priv_sa_client_unmask(m.c[0], sv, 6, rev, &k, &bad));
	CHECK(k == 5);
	for (int q = 0; q < k; q++)
		CHECK(rev[q].kind == 0); /* survivors' self-mask shares only */
	/* a second request to a client that answered: refused */
	CHECK(priv_sa_client_unmask(m.c[0], sv, 6, rev, &k, &bad) == FL_ESTATE);
	/* a signature passed off as another signer's does not count: client
	 * 1's entry carrying client 2's view and signature leaves 5's
	 * survival confirmed by 0 and 2 only */
	{
		priv_sa_signed_view f[6];
		memcpy(f, sv, sizeof f);
		sv_set(&f[1], 1, view[2], VB, m.idpk[1], sig[2]);
		CHECK(priv_sa_client_unmask(m.c[2], f, 6, rev, &k, &bad) == FL_ESIG);
		/* nor does a repeated entry of one signer */
		sv_set(&f[1], 2, view[2], VB, m.idpk[2], sig[2]);
		CHECK(priv_sa_client_unmask(m.c[2], f, 6, rev, &k, &bad) == FL_ESIG);
		/* nor one with a flipped signature byte */
		uint8_t s[64];
		memcpy(s, sig[1], 64);
		s[9] ^= 1;
		sv_set(&f[1], 1, view[1], VB, m.idpk[1], s);
		CHECK(priv_sa_client_unmask(m.c[2], f, 6, rev, &k, &bad) == FL_ESIG);
		/* the genuine views: answered */
		CHECK_RC(priv_sa_client_unmask(m.c[2], sv, 6, rev, &k, &bad));
	}
	mini_free(&m);

	/* A client that its neighbours' views call dropped refuses to reveal
	 * anything: otherwise its self-mask shares (from those who see it
	 * survived) and its mask key (from the rest) could both leak. */
	mini_setup(&m);
	mini_deliver_mask(&m, all);
	for (int i = 0; i < 6; i++) {
		/* 0 sees itself survived; 1..4 are told 0 dropped */
		uint8_t f[6] = {1, 1, 1, 1, 1, 1};
		if (i >= 1 && i <= 4)
			f[0] = 0;
		mini_view(&m, i, f, view[i]);
		CHECK_RC(priv_sa_client_sign_view(m.c[i], view[i], VB, m.idsk[i], sig[i]));
		sv_set(&sv[i], i, view[i], VB, m.idpk[i], sig[i]);
	}
	CHECK(priv_sa_client_unmask(m.c[0], sv, 6, rev, &k, &bad) == FL_ESIG && bad == 0);
	/* 5 saw 0 survived, against the 4 others: it refuses too */
	CHECK(priv_sa_client_unmask(m.c[5], sv, 6, rev, &k, &bad) == FL_ESIG && bad == 0);
	/* a view naming fewer than threshold survivors is not signed */
	mini_free(&m);
	mini_setup(&m);
	mini_deliver_mask(&m, all);
	{
		uint8_t f[6] = {1, 1, 0, 0, 0, 1}, v[5], s[64];
		mini_view(&m, 0, f, v); /* 1 and 5: 2 < t = 3 */
		CHECK(priv_sa_client_sign_view(m.c[0], v, VB, m.idsk[0], s) == FL_EQUORUM);
		/* the old one byte per flag, or any other length: refused */
		CHECK(priv_sa_client_sign_view(m.c[0], v, 5, m.idsk[0], s) == FL_EFORMAT);
		CHECK(priv_sa_client_sign_view(m.c[0], v, 0, m.idsk[0], s) == FL_EFORMAT);
	}
	/* a set padding bit (bits 5..7 of the one byte) is a second encoding
	 * of the same flags: never signed nor counted */
	{
		uint8_t v[5], s[64];
		mini_view(&m, 0, all, v);
		CHECK(v[0] == 0x1f);
		for (int b = 5; b < 8; b++) {
			uint8_t pv = (uint8_t)(v[0] | (1u << b));
			CHECK(priv_sa_client_sign_view(m.c[0], &pv, VB, m.idsk[0], s) ==
			      FL_EFORMAT);
		}
		CHECK_RC(priv_sa_client_sign_view(m.c[0], v, VB, m.idsk[0], s));
		/* a signature made over the padded byte does not count either:
		 * verify refuses the encoding before hashing it */
		uint8_t pv = (uint8_t)(v[0] | 0x80);
		CHECK(priv_sa_view_verify(&m.p, 0, v, VB, m.idpk[0], s) == 0);
		CHECK(priv_sa_view_verify(&m.p, 0, &pv, VB, m.idpk[0], s) == FL_EFORMAT);
		CHECK(priv_sa_view_verify(&m.p, 0, v, 2, m.idpk[0], s) == FL_EFORMAT);
	}
	mini_free(&m);
}

/* A client whose neighbours' boxes were withheld (fewer than threshold
 * arrived) refuses to mask: with one pairwise mask or none its self mask
 * would be all that hides its vector. */
static void test_mask_needs_threshold_boxes(void)
{
	mini m;
	float x[4] = {0.5f, -0.25f, 1, 0};
	uint32_t y[4];
	mini_setup(&m);
	/* client 0 gets the boxes of 1 and 2 only (t = 3) */
	for (int i = 1; i <= 2; i++)
		for (int q = 0; q < m.cnt[i]; q++)
			if (m.to[i][q] == 0)
				CHECK_RC(priv_sa_client_recv_share(m.c[0], i, m.boxes[i][q]));
	CHECK(priv_sa_client_mask(m.c[0], x, 4, y) == FL_EQUORUM);
	for (int q = 0; q < m.cnt[3]; q++)
		if (m.to[3][q] == 0)
			CHECK_RC(priv_sa_client_recv_share(m.c[0], 3, m.boxes[3][q]));
	CHECK_RC(priv_sa_client_mask(m.c[0], x, 4, y));
	mini_free(&m);
}

static void test_bad_share_detected(void)
{
	/* a dropped client's mask key rebuilt from a corrupted share is caught */
	size_t len = 8;
	int n = 8;
	priv_sa_params p = params(n);
	char why[200];
	CHECK_RC(priv_sa_check_params(&p, why, sizeof why));
	priv_sa_client *c[8];
	priv_sa_server *s;
	uint8_t cpk[8][32], spk[8][32], idpk[8][32], idsk[8][64], boxes[8][7][PRIV_SA_BOX_BYTES];
	int to[8][7], cnt[8];
	CHECK_RC(priv_sa_server_new(&p, len, &s));
	for (int i = 0; i < n; i++) {
		crypto_sign_keypair(idpk[i], idsk[i]);
		CHECK_RC(priv_sa_client_new(&p, i, &c[i]));
		priv_sa_client_pubkeys(c[i], cpk[i], spk[i]);
		CHECK_RC(priv_sa_server_set_keys(s, i, cpk[i], spk[i]));
	}
	for (int i = 0; i < n; i++) {
		CHECK_RC(priv_sa_client_set_keys(c[i], (const uint8_t(*)[32])cpk,
		                                 (const uint8_t(*)[32])spk));
		CHECK_RC(priv_sa_client_make_shares(c[i], boxes[i][0], to[i], &cnt[i]));
	}
	for (int i = 0; i < n; i++)
		for (int q = 0; q < cnt[i]; q++) {
			CHECK_RC(priv_sa_client_recv_share(c[to[i][q]], i, boxes[i][q]));
			CHECK_RC(priv_sa_server_note_share(s, i, to[i][q]));
		}
	float x[8] = {0};
	uint32_t y[8];
	for (int i = 1; i < n; i++) { /* client 0 drops after sharing */
		CHECK_RC(priv_sa_client_mask(c[i], x, len, y));
		CHECK_RC(priv_sa_server_add(s, i, y));
	}
	CHECK(priv_sa_server_add(s, 1, y) == FL_EREPLAY);
	const uint8_t *surv = priv_sa_server_survivors(s);
	uint8_t view[8][PRIV_SA_VIEW_BYTES(7)], sig[8][64];
	priv_sa_signed_view sv[8];
	int ns = 0, bad;
	for (int i = 1; i < n; i++) {
		int nb[7], kk;
		uint8_t f[7];
		CHECK_RC(priv_sa_neighbours(&p, i, nb, &kk));
		for (int q = 0; q < kk; q++)
			f[q] = surv[nb[q]];
		priv_sa_view_pack(f, kk, view[i]);
		CHECK_RC(priv_sa_client_sign_view(c[i], view[i], PRIV_SA_VIEW_BYTES(kk), idsk[i],
		                                  sig[i]));
		sv[ns].index = i;
		sv[ns].view = view[i];
		sv[ns].view_len = PRIV_SA_VIEW_BYTES(kk);
		sv[ns].id_pk = idpk[i];
		sv[ns].sig = sig[i];
		ns++;
	}
	priv_sa_reveal rev[64];
	int nrev = 0, k;
	for (int i = 1; i < n; i++) {
		CHECK_RC(priv_sa_client_unmask(c[i], sv, ns, rev + nrev, &k, &bad));
		nrev += k;
	}
	for (int r = 0; r < nrev; r++)
		if (rev[r].owner == 0 && rev[r].kind == 1) {
			rev[r].share[5] ^= 0x40;
			break;
		}
	/* the corrupted share is one of the first threshold used: detected */
	double sum[8];
	int nsurv;
	int rv = priv_sa_server_finish(s, rev, (size_t)nrev, sum, &nsurv, why, sizeof why);
	CHECK(rv == FL_ESIG);
	CHECK(strstr(why, "does not match") != NULL);
	for (int i = 0; i < n; i++)
		priv_sa_client_free(c[i]);
	priv_sa_server_free(s);
}

/* Views travel bit-packed: flag q in bit q % 8 of byte q / 8, ceil(k/8)
 * bytes; every pattern round-trips, and a wrong length or a set padding
 * bit is refused. */
static void test_view_pack(void)
{
	static const int ks[] = {1, 7, 8, 9, 20, PRIV_SA_MAX_DEGREE};
	uint8_t f[PRIV_SA_MAX_DEGREE], g[PRIV_SA_MAX_DEGREE], v[PRIV_SA_VIEW_MAX_BYTES + 1];
	CHECK(PRIV_SA_VIEW_BYTES(1) == 1 && PRIV_SA_VIEW_BYTES(7) == 1 &&
	      PRIV_SA_VIEW_BYTES(8) == 1 && PRIV_SA_VIEW_BYTES(9) == 2 &&
	      PRIV_SA_VIEW_BYTES(20) == 3 && PRIV_SA_VIEW_MAX_BYTES == 32);
	/* the layout: LSB first */
	{
		uint8_t a[9] = {1, 0, 0, 0, 0, 0, 0, 1, 1};
		priv_sa_view_pack(a, 9, v);
		CHECK(v[0] == 0x81 && v[1] == 0x01);
	}
	for (size_t t = 0; t < sizeof ks / sizeof *ks; t++) {
		int k = ks[t];
		size_t len = PRIV_SA_VIEW_BYTES(k);
		for (int pat = 0; pat < 4; pat++) {
			/* all zero, all one, alternating, pseudo-random */
			for (int q = 0; q < k; q++)
				f[q] = pat == 0   ? 0
				       : pat == 1 ? 1
				       : pat == 2 ? (uint8_t)(q & 1)
				                  : (uint8_t)(((unsigned)q * 2654435761u) >> 31);
			memset(v, 0xa5, sizeof v);
			priv_sa_view_pack(f, k, v);
			CHECK(v[len] == 0xa5); /* writes exactly len bytes */
			for (int q = 0; q < k; q++)
				CHECK(((v[q / 8] >> (q % 8)) & 1) == f[q]);
			memset(g, 7, sizeof g);
			CHECK_RC(priv_sa_view_unpack(v, len, k, g));
			CHECK(memcmp(f, g, (size_t)k) == 0);
			CHECK_RC(priv_sa_view_unpack(v, len, k, NULL));
			/* one byte short or long: refused */
			CHECK(priv_sa_view_unpack(v, len - 1, k, g) == FL_EFORMAT);
			CHECK(priv_sa_view_unpack(v, len + 1, k, g) == FL_EFORMAT);
			/* each unused high bit of the last byte: refused, flags untouched */
			for (int b = k % 8; k % 8 && b < 8; b++) {
				uint8_t w[PRIV_SA_VIEW_MAX_BYTES];
				memcpy(w, v, len);
				w[len - 1] |= (uint8_t)(1u << b);
				memset(g, 7, sizeof g);
				CHECK(priv_sa_view_unpack(w, len, k, g) == FL_EFORMAT);
				CHECK(g[0] == 7);
			}
		}
	}
	/* nonzero flags count as 1 */
	{
		uint8_t a[3] = {0, 2, 255};
		priv_sa_view_pack(a, 3, v);
		CHECK(v[0] == 0x06);
	}
	CHECK(priv_sa_view_unpack(v, 0, -1, NULL) == FL_EFORMAT);
	CHECK(priv_sa_view_unpack(v, 33, PRIV_SA_MAX_DEGREE + 1, NULL) == FL_EFORMAT);
}

static void test_shamir_any_t(void)
{
	/* through whole rounds: different dropout patterns use different share subsets */
	for (unsigned seed = 20; seed < 24; seed++)
		round_ok(12, 0.25, seed);
}

static const test_case cases[] = {TEST(test_encoding),
                                  TEST(test_params),
                                  TEST(test_graph),
                                  TEST(test_ring),
                                  TEST(test_round_no_dropout),
                                  TEST(test_round_dropout_10),
                                  TEST(test_round_dropout_30),
                                  TEST(test_unmask_dropouts_too),
                                  TEST(test_below_threshold_aborts),
                                  TEST(test_share_boxes_checked),
                                  TEST(test_no_single_client_unmask),
                                  TEST(test_mask_needs_threshold_boxes),
                                  TEST(test_bad_share_detected),
                                  TEST(test_view_pack),
                                  TEST(test_shamir_any_t),
                                  {0}};

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		return 1;
	return test_main(argc, argv, cases);
}
