/*
 * tests/secagg_test.c — privacy/secagg.h: fixed-point encoding and its
 * overflow bound, Shamir sharing, the graph, and whole rounds: the unmasked
 * sum equals the plaintext sum within the fixed-point error with 0/10/30%
 * dropouts after masking, below the threshold the round aborts, a
 * coordinator cannot get both secrets of one client, and replayed or
 * misdirected share boxes are rejected.
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
	memset(m, 0, sizeof *m);
	m->p = params(6);
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

static void test_no_single_client_unmask(void)
{
	mini m;
	mini_setup(&m);
	uint8_t all[6] = {1, 1, 1, 1, 1, 1};
	mini_deliver_mask(&m, all);
	/* the coordinator tells clients 0..2 that 5 survived and 3..4 that 5 dropped,
	 * hoping for 5's self-mask seed from the first and its mask key from the
	 * others */
	uint8_t s1[6] = {1, 1, 1, 1, 1, 1}, s2[6] = {1, 1, 1, 1, 1, 0};
	uint8_t sig1[6][64], sig2[6][64];
	int who1[6], who2[6], n1 = 0, n2 = 0;
	for (int i = 0; i < 3; i++) {
		CHECK_RC(priv_sa_client_sign_survivors(m.c[i], s1, m.idsk[i], sig1[n1]));
		who1[n1++] = i;
	}
	for (int i = 3; i < 5; i++) {
		CHECK_RC(priv_sa_client_sign_survivors(m.c[i], s2, m.idsk[i], sig2[n2]));
		who2[n2++] = i;
	}
	/* an honest client signs one set per round */
	CHECK(priv_sa_client_sign_survivors(m.c[0], s2, m.idsk[0], sig2[5]) == FL_ESTATE);
	/* neither set has a majority of the 6 key-sharing clients: both refused */
	priv_sa_reveal rev[5];
	int k;
	CHECK(priv_sa_client_unmask(m.c[0], s1, who1, (const uint8_t(*)[64])sig1, n1,
	                            (const uint8_t(*)[32])m.idpk, rev, &k) == FL_ESIG);
	CHECK(priv_sa_client_unmask(m.c[3], s2, who2, (const uint8_t(*)[64])sig2, n2,
	                            (const uint8_t(*)[32])m.idpk, rev, &k) == FL_ESIG);
	/* forged signatures (a signature for s1 passed off for s2) do not count */
	int who3[5] = {0, 1, 2, 3, 4};
	uint8_t sig3[5][64];
	memcpy(sig3, sig1, 3 * 64);
	memcpy(sig3[3], sig2[0], 64);
	memcpy(sig3[4], sig2[1], 64);
	CHECK(priv_sa_client_unmask(m.c[3], s2, who3, (const uint8_t(*)[64])sig3, 5,
	                            (const uint8_t(*)[32])m.idpk, rev, &k) == FL_ESIG);
	mini_free(&m);

	/* with a consistent majority the client answers once, then refuses another set */
	mini_setup(&m);
	mini_deliver_mask(&m, all);
	for (int i = 0; i < 4; i++) {
		CHECK_RC(priv_sa_client_sign_survivors(m.c[i], s1, m.idsk[i], sig1[i]));
		who1[i] = i;
	}
	CHECK_RC(priv_sa_client_unmask(m.c[1], s1, who1, (const uint8_t(*)[64])sig1, 4,
	                               (const uint8_t(*)[32])m.idpk, rev, &k));
	CHECK(k == 5);
	for (int q = 0; q < k; q++)
		CHECK(rev[q].kind == 0); /* all survived: self-mask shares only */
	/* even with a majority of (forged-by-coordinator impossible) signatures on
	 * another set, a client that answered refuses a second, different one */
	CHECK(priv_sa_client_unmask(m.c[1], s2, who1, (const uint8_t(*)[64])sig1, 4,
	                            (const uint8_t(*)[32])m.idpk, rev, &k) != 0);
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
	uint8_t sig[8][64];
	int who[8], ns = 0;
	for (int i = 1; i < n; i++) {
		CHECK_RC(priv_sa_client_sign_survivors(c[i], surv, idsk[i], sig[ns]));
		who[ns++] = i;
	}
	priv_sa_reveal rev[64];
	int nrev = 0, k;
	for (int i = 1; i < n; i++) {
		CHECK_RC(priv_sa_client_unmask(c[i], surv, who, (const uint8_t(*)[64])sig, ns,
		                               (const uint8_t(*)[32])idpk, rev + nrev, &k));
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

static void test_shamir_any_t(void)
{
	/* through whole rounds: different dropout patterns use different share subsets */
	for (unsigned seed = 20; seed < 24; seed++)
		round_ok(12, 0.25, seed);
}

static const test_case cases[] = {TEST(test_encoding),
                                  TEST(test_params),
                                  TEST(test_graph),
                                  TEST(test_round_no_dropout),
                                  TEST(test_round_dropout_10),
                                  TEST(test_round_dropout_30),
                                  TEST(test_unmask_dropouts_too),
                                  TEST(test_below_threshold_aborts),
                                  TEST(test_share_boxes_checked),
                                  TEST(test_no_single_client_unmask),
                                  TEST(test_bad_share_detected),
                                  TEST(test_shamir_any_t),
                                  {0}};

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		return 1;
	return test_main(argc, argv, cases);
}
