/*
 * privacy/secagg.c — SecAgg+-style masking, Shamir sharing over GF(2^8),
 * share boxes and unmasking (see secagg.h for the protocol and its bounds).
 */
#include "privacy/secagg.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "privacy/sign.h"

#define SA_HDR_BYTES 32 /* run 16, round 8, from 4, to 4 */
#define SA_PLAIN     (SA_HDR_BYTES + 2 * PRIV_SA_SHARE_BYTES)

/* ---- parameters and graph ---- */

int priv_sa_default_degree(int n)
{
	if (n <= 17)
		return n - 1;
	int lg = 0;
	while ((1 << lg) < n)
		lg++;
	int d = 2 * lg + 4;
	d += d & 1;
	return d < n - 1 ? d : n - 1;
}

int priv_sa_check_params(priv_sa_params *p, char *why, size_t whylen)
{
	if (p->n < 2 || p->n > 1000000) {
		snprintf(why, whylen, "secure aggregation needs 2..1000000 clients (got %d)", p->n);
		return FL_EINVAL;
	}
	if (!p->degree)
		p->degree = priv_sa_default_degree(p->n);
	if (p->degree >= p->n)
		p->degree = p->n - 1;
	if (p->degree < 1 || p->degree > PRIV_SA_MAX_DEGREE ||
	    (p->degree < p->n - 1 && (p->degree & 1))) {
		snprintf(
		    why, whylen,
		    "degree %d: must be 1..254 and even unless the graph is complete (n-1 = %d)",
		    p->degree, p->n - 1);
		return FL_EINVAL;
	}
	if (!p->threshold)
		p->threshold = p->degree / 2 + 1;
	if (p->threshold < 1 || p->threshold > p->degree) {
		snprintf(why, whylen, "threshold %d outside 1..degree (%d)", p->threshold,
		         p->degree);
		return FL_EINVAL;
	}
	if (!p->min_survivors) {
		int m = p->n / 2 + 1;
		p->min_survivors = m > p->threshold ? m : p->threshold;
		if (p->min_survivors > p->n)
			p->min_survivors = p->n;
	}
	if (p->min_survivors < 1 || p->min_survivors > p->n) {
		snprintf(why, whylen, "min_survivors %d outside 1..n", p->min_survivors);
		return FL_EINVAL;
	}
	if (!(p->clip > 0) || !isfinite(p->clip) || p->frac_bits < 0 || p->frac_bits > 30) {
		snprintf(why, whylen, "clip must be > 0 and frac_bits 0..30");
		return FL_EINVAL;
	}
	/* the sum of n values of magnitude clip must stay inside int32 */
	double bound = (double)p->n * (ldexp(p->clip, p->frac_bits) + 0.5);
	if (bound >= 2147483647.0) {
		snprintf(why, whylen,
		         "fixed point would overflow: n %d x clip %g x 2^%d = %.4g >= 2^31; lower "
		         "frac_bits or clip",
		         p->n, p->clip, p->frac_bits, bound);
		return FL_EINVAL;
	}
	return 0;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* Ring distance between positions a and b of n. */
static int ring_dist(int n, int a, int b)
{
	int d = a > b ? a - b : b - a;
	return d < n - d ? d : n - d;
}

int priv_sa_neighbours(const priv_sa_params *p, int i, int *nb, int *k)
{
	int c = 0;
	if (i < 0 || i >= p->n)
		return FL_EINVAL;
	if (p->degree >= p->n - 1) {
		for (int j = 0; j < p->n; j++)
			if (j != i)
				nb[c++] = j;
	} else {
		/* degree < n - 1 and even: the h positions on either side are distinct */
		for (int d = 1; d <= p->degree / 2; d++) {
			nb[c++] = (i + d) % p->n;
			nb[c++] = (i - d + p->n) % p->n;
		}
		qsort(nb, (size_t)c, sizeof *nb, cmp_int);
	}
	*k = c;
	return 0;
}

int priv_sa_is_neighbour(const priv_sa_params *p, int i, int j)
{
	if (i == j || i < 0 || j < 0 || i >= p->n || j >= p->n)
		return 0;
	return p->degree >= p->n - 1 || ring_dist(p->n, i, j) <= p->degree / 2;
}

int priv_sa_window(const priv_sa_params *p, int i, int *w, int *k)
{
	int c = 0;
	if (i < 0 || i >= p->n)
		return FL_EINVAL;
	if (2 * p->degree >= p->n - 1) {
		for (int j = 0; j < p->n; j++)
			if (j != i)
				w[c++] = j;
	} else {
		for (int d = 1; d <= p->degree; d++) {
			w[c++] = (i + d) % p->n;
			w[c++] = (i - d + p->n) % p->n;
		}
		qsort(w, (size_t)c, sizeof *w, cmp_int);
	}
	*k = c;
	return 0;
}

int priv_sa_consistency_quorum(const priv_sa_params *p)
{
	return p->degree / 2 + 1;
}

void priv_sa_graph_seed(const char *run_id, uint64_t round, uint8_t seed[32])
{
	static const char dom[] = "fedlora secagg graph v1";
	uint8_t r[8];
	for (int b = 0; b < 8; b++)
		r[b] = (uint8_t)(round >> (8 * b));
	crypto_generichash_state st;
	crypto_generichash_init(&st, (const uint8_t *)dom, sizeof dom - 1, 32);
	crypto_generichash_update(&st, (const uint8_t *)run_id, strlen(run_id) + 1);
	crypto_generichash_update(&st, r, sizeof r);
	crypto_generichash_final(&st, seed, 32);
}

void priv_sa_ring_key(const uint8_t seed[32], const uint8_t id_pk[32], uint8_t key[32])
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, seed, 32, 32);
	crypto_generichash_update(&st, id_pk, 32);
	crypto_generichash_final(&st, key, 32);
}

int priv_sa_ring_check(const priv_sa_params *p, const int *index, const uint8_t (*id_pk)[32],
                       int count)
{
	/* A position is the rank of the member's ring key, so known
	 * positions sorted ascending must have strictly rising ring keys;
	 * positions are distinct and below n. */
	int *ord = malloc(((size_t)count + 1) * sizeof *ord);
	uint8_t(*rk)[32] = malloc(((size_t)count + 1) * 32);
	int rv = 0;
	if (!ord || !rk) {
		rv = FL_ENOMEM;
		goto out;
	}
	for (int q = 0; q < count; q++) {
		if (index[q] < 0 || index[q] >= p->n) {
			rv = FL_EFORMAT;
			goto out;
		}
		ord[q] = q;
	}
	/* insertion sort by position (count is O(degree)) */
	for (int a = 1; a < count; a++)
		for (int b = a; b > 0 && index[ord[b - 1]] > index[ord[b]]; b--) {
			int t = ord[b];
			ord[b] = ord[b - 1];
			ord[b - 1] = t;
		}
	for (int q = 0; q < count; q++) {
		if (q && index[ord[q]] == index[ord[q - 1]]) {
			rv = FL_EFORMAT;
			goto out;
		}
		priv_sa_ring_key(p->graph_seed, id_pk[ord[q]], rk[q]);
	}
	/* sorted by position, the keys rise everywhere: a ring key order that
	 * disagrees with the positions means the coordinator placed a member
	 * where its key does not put it */
	for (int q = 1; q < count; q++)
		if (memcmp(rk[q - 1], rk[q], 32) >= 0) {
			rv = FL_EFORMAT;
			goto out;
		}
out:
	free(ord);
	free(rk);
	return rv;
}

/* ---- views (bit-packed flags) ---- */

void priv_sa_view_pack(const uint8_t *flags, int k, uint8_t *view)
{
	memset(view, 0, PRIV_SA_VIEW_BYTES(k));
	for (int q = 0; q < k; q++)
		view[q / 8] |= (uint8_t)((flags[q] != 0) << (q % 8));
}

int priv_sa_view_unpack(const uint8_t *view, size_t len, int k, uint8_t *flags)
{
	if (k < 0 || k > PRIV_SA_MAX_DEGREE || len != PRIV_SA_VIEW_BYTES(k))
		return FL_EFORMAT;
	/* the bits above flag k-1 in the last byte: a second encoding of the
	 * same flags would carry a second valid signature, so refuse it */
	if (k % 8 && (view[len - 1] >> (k % 8)) != 0)
		return FL_EFORMAT;
	for (int q = 0; flags && q < k; q++)
		flags[q] = (view[q / 8] >> (q % 8)) & 1;
	return 0;
}

/* Flag q of a packed view (bounds checked by the caller). */
static int view_flag(const uint8_t *view, int q)
{
	return (view[q / 8] >> (q % 8)) & 1;
}

/* ---- fixed point ---- */

uint32_t priv_sa_encode(double x, double clip, int frac_bits)
{
	if (!(x == x))
		x = 0;
	if (x > clip)
		x = clip;
	if (x < -clip)
		x = -clip;
	return (uint32_t)(int32_t)lrint(ldexp(x, frac_bits));
}

double priv_sa_decode(uint32_t v, int frac_bits)
{
	return ldexp((double)(int32_t)v, -frac_bits);
}

/* ---- GF(2^8) Shamir (AES polynomial), constant-time multiply ---- */

static uint8_t gf_mul(uint8_t a, uint8_t b)
{
	uint8_t r = 0;
	for (int i = 0; i < 8; i++) {
		r ^= (uint8_t)(-(b & 1) & a);
		a = (uint8_t)((a << 1) ^ (-(a >> 7) & 0x1b));
		b >>= 1;
	}
	return r;
}

static uint8_t gf_inv(uint8_t a)
{
	/* a^254 */
	uint8_t r = 1, x = a;
	for (int e = 254; e; e >>= 1) {
		if (e & 1)
			r = gf_mul(r, x);
		x = gf_mul(x, x);
	}
	return r;
}

/* Shares a 32-byte secret with threshold t at x = 1..m into shares[m]. */
static void shamir_split(const uint8_t secret[32], int t, int m,
                         uint8_t (*shares)[PRIV_SA_SHARE_BYTES])
{
	uint8_t coef[254][32];
	randombytes_buf(coef, (size_t)(t - 1) * 32);
	for (int s = 0; s < m; s++) {
		uint8_t x = (uint8_t)(s + 1);
		shares[s][0] = x;
		for (int b = 0; b < 32; b++) {
			uint8_t y = 0; /* Horner, highest coefficient first */
			for (int c = t - 2; c >= 0; c--)
				y = gf_mul((uint8_t)(y ^ coef[c][b]), x);
			/* y = sum_c coef[c] x^(c+1); the constant term is the secret */
			shares[s][1 + b] = (uint8_t)(y ^ secret[b]);
		}
	}
	sodium_memzero(coef, sizeof coef);
}

/* Rebuilds the secret from t shares with distinct nonzero x. */
static int shamir_join(uint8_t (*sh)[PRIV_SA_SHARE_BYTES], int t, uint8_t out[32])
{
	memset(out, 0, 32);
	for (int i = 0; i < t; i++) {
		uint8_t num = 1, den = 1;
		if (!sh[i][0])
			return FL_EFORMAT;
		for (int j = 0; j < t; j++) {
			if (j == i)
				continue;
			if (sh[j][0] == sh[i][0])
				return FL_EFORMAT;
			num = gf_mul(num, sh[j][0]);
			den = gf_mul(den, (uint8_t)(sh[j][0] ^ sh[i][0]));
		}
		uint8_t l = gf_mul(num, gf_inv(den));
		for (int b = 0; b < 32; b++)
			out[b] ^= gf_mul(l, sh[i][1 + b]);
	}
	return 0;
}

/* ---- masks ---- */

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* y += sign * PRG(key) over len words */
static void prg_add(uint32_t *y, size_t len, const uint8_t key[32], uint64_t round, int sign)
{
	uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {0};
	uint32_t buf[4096];
	put_u64(nonce, round);
	nonce[8] = 'm';
	uint64_t ic = 0;
	for (size_t off = 0; off < len; off += 4096) {
		size_t m = len - off < 4096 ? len - off : 4096;
		/* the keystream itself: xor over zeros; 64-byte blocks, 256 per 4096 words */
		memset(buf, 0, m * 4);
		crypto_stream_chacha20_ietf_xor_ic((uint8_t *)buf, (const uint8_t *)buf, m * 4,
		                                   nonce, (uint32_t)ic, key);
		ic += (m * 4 + 63) / 64;
		if (sign > 0)
			for (size_t i = 0; i < m; i++)
				y[off + i] += buf[i];
		else
			for (size_t i = 0; i < m; i++)
				y[off + i] -= buf[i];
	}
	sodium_memzero(buf, sizeof buf);
}

static int pair_key(const priv_sa_params *p, const uint8_t sk[32], const uint8_t pk[32], int i,
                    int j, uint8_t key[32])
{
	uint8_t dh[32], info[32];
	if (crypto_scalarmult(dh, sk, pk) != 0)
		return FL_ECRYPTO;
	int lo = i < j ? i : j, hi = i < j ? j : i;
	memcpy(info, p->run_id, 16);
	put_u64(info + 16, p->round);
	put_u32(info + 24, (uint32_t)lo);
	put_u32(info + 28, (uint32_t)hi);
	crypto_generichash_state st;
	crypto_generichash_init(&st, (const uint8_t *)"fedlora-secagg-pair-v1", 22, 32);
	crypto_generichash_update(&st, dh, 32);
	crypto_generichash_update(&st, info, 32);
	crypto_generichash_final(&st, key, 32);
	sodium_memzero(dh, sizeof dh);
	return 0;
}

/* The digest a client signs over its view: domain-separated BLAKE2b of the
 * secagg run id (run and attempt), round, the round's parameters, the
 * signer's index and its packed view (len = PRIV_SA_VIEW_BYTES(degree)
 * bytes, canonical: the callers checked). v2: v1 hashed one byte per flag. */
static void view_digest(const priv_sa_params *p, int index, const uint8_t *view, size_t len,
                        uint8_t d[32])
{
	static const char dom[] = "fedlora secagg view v2";
	uint8_t hdr[16 + 8 + 5 * 4 + 32];
	memcpy(hdr, p->run_id, 16);
	put_u64(hdr + 16, p->round);
	put_u32(hdr + 24, (uint32_t)p->n);
	put_u32(hdr + 28, (uint32_t)p->degree);
	put_u32(hdr + 32, (uint32_t)p->threshold);
	put_u32(hdr + 36, (uint32_t)p->min_survivors);
	put_u32(hdr + 40, (uint32_t)index);
	memcpy(hdr + 44, p->graph_seed, 32);
	crypto_generichash_state st;
	crypto_generichash_init(&st, (const uint8_t *)dom, sizeof dom - 1, 32);
	crypto_generichash_update(&st, hdr, sizeof hdr);
	crypto_generichash_update(&st, view, len);
	crypto_generichash_final(&st, d, 32);
}

int priv_sa_view_verify(const priv_sa_params *p, int index, const uint8_t *view, size_t len,
                        const uint8_t id_pk[32], const uint8_t sig[PRIV_SA_SIG_BYTES])
{
	uint8_t d[32];
	/* every member has degree neighbours (degree <= n - 1) */
	if (priv_sa_view_unpack(view, len, p->degree, NULL) != 0)
		return FL_EFORMAT;
	view_digest(p, index, view, len, d);
	return crypto_sign_verify_detached(sig, d, 32, id_pk) == 0 ? 0 : FL_ESIG;
}

/* The digest a client signs over its round keys: domain-separated BLAKE2b
 * of the secagg run id (which already binds the run and the attempt's
 * session), round, session, n, degree, graph seed and both public keys, so a
 * signature of another round or attempt, or one made for other round
 * parameters, does not verify. (No index: a client learns its position with
 * its key list, after it sent its keys.) */
static void keys_digest(const priv_sa_params *p, const uint8_t session[PRIV_SA_SESSION_BYTES],
                        const uint8_t c_pk[32], const uint8_t s_pk[32], uint8_t d[32])
{
	static const char dom[] = "fedlora secagg keys v2";
	uint8_t hdr[16 + 8 + PRIV_SA_SESSION_BYTES + 8 + 32];
	memcpy(hdr, p->run_id, 16);
	put_u64(hdr + 16, p->round);
	memcpy(hdr + 24, session, PRIV_SA_SESSION_BYTES);
	put_u32(hdr + 24 + PRIV_SA_SESSION_BYTES, (uint32_t)p->n);
	put_u32(hdr + 28 + PRIV_SA_SESSION_BYTES, (uint32_t)p->degree);
	memcpy(hdr + 32 + PRIV_SA_SESSION_BYTES, p->graph_seed, 32);
	crypto_generichash_state st;
	crypto_generichash_init(&st, (const uint8_t *)dom, sizeof dom - 1, 32);
	crypto_generichash_update(&st, hdr, sizeof hdr);
	crypto_generichash_update(&st, c_pk, 32);
	crypto_generichash_update(&st, s_pk, 32);
	crypto_generichash_final(&st, d, 32);
}

void priv_sa_keys_sign(const priv_sa_params *p, const uint8_t session[PRIV_SA_SESSION_BYTES],
                       const uint8_t c_pk[32], const uint8_t s_pk[32], const uint8_t id_sk[64],
                       uint8_t sig[PRIV_SA_SIG_BYTES])
{
	uint8_t d[32];
	keys_digest(p, session, c_pk, s_pk, d);
	crypto_sign_detached(sig, NULL, d, 32, id_sk);
}

int priv_sa_keys_verify(const priv_sa_params *p, const uint8_t session[PRIV_SA_SESSION_BYTES],
                        const uint8_t c_pk[32], const uint8_t s_pk[32], const uint8_t id_pk[32],
                        const uint8_t sig[PRIV_SA_SIG_BYTES])
{
	uint8_t d[32];
	keys_digest(p, session, c_pk, s_pk, d);
	return crypto_sign_verify_detached(sig, d, 32, id_pk) == 0 ? 0 : FL_ESIG;
}

/* ---- client ---- */

struct priv_sa_client {
	priv_sa_params p;
	int index, k;                       /* index -1 until the key list names it */
	int *nb;                            /* k neighbours */
	uint8_t c_sk[32], c_pk[32];         /* share encryption */
	uint8_t s_sk[32], s_pk[32];         /* mask agreement */
	uint8_t b[32];                      /* self-mask seed */
	uint8_t (*nc_pk)[32], (*ns_pk)[32]; /* neighbours' keys (k) */
	uint8_t *got;                       /* k: share from neighbour received */
	uint8_t (*sh_b)[PRIV_SA_SHARE_BYTES], (*sh_s)[PRIV_SA_SHARE_BYTES]; /* k received */
	uint8_t *view; /* k: the signed view, unpacked (1 = survivor) */
	int keys_set, masked, signed_once, answered;
};

static int nb_slot(const priv_sa_client *c, int j)
{
	const int *f = bsearch(&j, c->nb, (size_t)c->k, sizeof *c->nb, cmp_int);
	return f ? (int)(f - c->nb) : -1;
}

/* Fixes the client's index and its neighbour list (once). */
static int client_place(priv_sa_client *c, int index)
{
	if (c->index >= 0)
		return index == c->index ? 0 : FL_ESTATE;
	if (index < 0 || index >= c->p.n)
		return FL_EFORMAT;
	c->index = index;
	return priv_sa_neighbours(&c->p, index, c->nb, &c->k);
}

int priv_sa_client_new(const priv_sa_params *p, int index, priv_sa_client **out)
{
	char why[160];
	priv_sa_client *c;
	int rv = FL_ENOMEM;
	*out = NULL;
	if ((rv = priv_sodium_init()) != 0)
		return rv;
	if (!(c = calloc(1, sizeof *c)))
		return FL_ENOMEM;
	c->p = *p;
	c->index = -1;
	if ((rv = priv_sa_check_params(&c->p, why, sizeof why)) != 0 || index < -1 ||
	    index >= c->p.n) {
		rv = FL_EINVAL;
		goto fail;
	}
	rv = FL_ENOMEM;
	c->nb = malloc((size_t)c->p.degree * sizeof *c->nb);
	c->nc_pk = calloc((size_t)c->p.degree, 32);
	c->ns_pk = calloc((size_t)c->p.degree, 32);
	c->got = calloc((size_t)c->p.degree, 1);
	c->sh_b = calloc((size_t)c->p.degree, PRIV_SA_SHARE_BYTES);
	c->sh_s = calloc((size_t)c->p.degree, PRIV_SA_SHARE_BYTES);
	c->view = calloc((size_t)c->p.degree, 1);
	if (!c->nb || !c->nc_pk || !c->ns_pk || !c->got || !c->sh_b || !c->sh_s || !c->view)
		goto fail;
	if (index >= 0 && (rv = client_place(c, index)) != 0)
		goto fail;
	crypto_box_keypair(c->c_pk, c->c_sk);
	randombytes_buf(c->s_sk, 32);
	crypto_scalarmult_base(c->s_pk, c->s_sk);
	randombytes_buf(c->b, 32);
	*out = c;
	return 0;
fail:
	priv_sa_client_free(c);
	return rv;
}

void priv_sa_client_free(priv_sa_client *c)
{
	if (!c)
		return;
	if (c->sh_b)
		sodium_memzero(c->sh_b, (size_t)c->p.degree * PRIV_SA_SHARE_BYTES);
	if (c->sh_s)
		sodium_memzero(c->sh_s, (size_t)c->p.degree * PRIV_SA_SHARE_BYTES);
	free(c->nb);
	free(c->nc_pk);
	free(c->ns_pk);
	free(c->got);
	free(c->sh_b);
	free(c->sh_s);
	free(c->view);
	sodium_memzero(c, sizeof *c);
	free(c);
}

void priv_sa_client_pubkeys(const priv_sa_client *c, uint8_t c_pk[32], uint8_t s_pk[32])
{
	memcpy(c_pk, c->c_pk, 32);
	memcpy(s_pk, c->s_pk, 32);
}

int priv_sa_client_index(const priv_sa_client *c)
{
	return c->index;
}

static int is_zero32(const uint8_t *k)
{
	return sodium_is_zero(k, 32);
}

int priv_sa_client_set_keys(priv_sa_client *c, const uint8_t (*c_pk)[32], const uint8_t (*s_pk)[32])
{
	if (c->keys_set || c->index < 0)
		return FL_ESTATE;
	for (int s = 0; s < c->k; s++) {
		memcpy(c->nc_pk[s], c_pk[c->nb[s]], 32);
		memcpy(c->ns_pk[s], s_pk[c->nb[s]], 32);
	}
	c->keys_set = 1;
	return 0;
}

int priv_sa_client_set_nb_keys(priv_sa_client *c, int index, const int *from,
                               const uint8_t (*c_pk)[32], const uint8_t (*s_pk)[32], int count)
{
	int rv;
	if (c->keys_set)
		return FL_ESTATE;
	if ((rv = client_place(c, index)) != 0)
		return rv;
	/* every entry a distinct neighbour with both keys */
	if (count < 0 || count > c->k)
		return FL_EFORMAT;
	for (int q = 0; q < count; q++) {
		int s = nb_slot(c, from[q]);
		if (s < 0 || from[q] == c->index || is_zero32(c_pk[q]) || is_zero32(s_pk[q]))
			return FL_EFORMAT;
		for (int q2 = 0; q2 < q; q2++)
			if (from[q2] == from[q])
				return FL_EFORMAT;
	}
	/* fewer than threshold neighbours could hold shares: this client's
	 * secrets could never be rebuilt, so the round cannot include it */
	if (count < c->p.threshold)
		return FL_EQUORUM;
	memset(c->nc_pk, 0, (size_t)c->k * 32);
	memset(c->ns_pk, 0, (size_t)c->k * 32);
	for (int q = 0; q < count; q++) {
		int s = nb_slot(c, from[q]);
		memcpy(c->nc_pk[s], c_pk[q], 32);
		memcpy(c->ns_pk[s], s_pk[q], 32);
	}
	c->keys_set = 1;
	return 0;
}

static void box_header(const priv_sa_params *p, int from, int to, uint8_t h[SA_HDR_BYTES])
{
	memcpy(h, p->run_id, 16);
	put_u64(h + 16, p->round);
	put_u32(h + 24, (uint32_t)from);
	put_u32(h + 28, (uint32_t)to);
}

int priv_sa_client_make_shares(priv_sa_client *c, uint8_t *boxes, int *to, int *count)
{
	uint8_t(*sb)[PRIV_SA_SHARE_BYTES], (*ss)[PRIV_SA_SHARE_BYTES];
	uint8_t plain[SA_PLAIN];
	int m = 0, rv = 0;
	if (!c->keys_set)
		return FL_ESTATE;
	sb = malloc((size_t)c->k * PRIV_SA_SHARE_BYTES);
	ss = malloc((size_t)c->k * PRIV_SA_SHARE_BYTES);
	if (!sb || !ss) {
		rv = FL_ENOMEM;
		goto out;
	}
	/* share x = slot + 1 among all k neighbours (those without keys get none) */
	shamir_split(c->b, c->p.threshold, c->k, sb);
	shamir_split(c->s_sk, c->p.threshold, c->k, ss);
	for (int s = 0; s < c->k; s++) {
		if (is_zero32(c->nc_pk[s]))
			continue;
		uint8_t *bx = boxes + (size_t)m * PRIV_SA_BOX_BYTES;
		box_header(&c->p, c->index, c->nb[s], plain);
		memcpy(plain + SA_HDR_BYTES, sb[s], PRIV_SA_SHARE_BYTES);
		memcpy(plain + SA_HDR_BYTES + PRIV_SA_SHARE_BYTES, ss[s], PRIV_SA_SHARE_BYTES);
		randombytes_buf(bx, crypto_box_NONCEBYTES);
		if (crypto_box_easy(bx + crypto_box_NONCEBYTES, plain, SA_PLAIN, bx, c->nc_pk[s],
		                    c->c_sk) != 0) {
			rv = FL_ECRYPTO;
			goto out;
		}
		to[m++] = c->nb[s];
	}
	*count = m;
out:
	sodium_memzero(plain, sizeof plain);
	if (sb)
		sodium_memzero(sb, (size_t)c->k * PRIV_SA_SHARE_BYTES);
	if (ss)
		sodium_memzero(ss, (size_t)c->k * PRIV_SA_SHARE_BYTES);
	free(sb);
	free(ss);
	return rv;
}

int priv_sa_client_recv_share(priv_sa_client *c, int from, const uint8_t box[PRIV_SA_BOX_BYTES])
{
	uint8_t plain[SA_PLAIN], want[SA_HDR_BYTES];
	int s, rv = 0;
	if (!c->keys_set || c->masked)
		return FL_ESTATE;
	if (from < 0 || from >= c->p.n || (s = nb_slot(c, from)) < 0 || is_zero32(c->nc_pk[s]))
		return FL_EKEY;
	if (crypto_box_open_easy(plain, box + crypto_box_NONCEBYTES,
	                         PRIV_SA_BOX_BYTES - crypto_box_NONCEBYTES, box, c->nc_pk[s],
	                         c->c_sk) != 0)
		return FL_ESIG;
	box_header(&c->p, from, c->index, want);
	if (sodium_memcmp(plain, want, SA_HDR_BYTES) != 0) {
		rv = FL_ESTALE;
		goto out;
	}
	if (c->got[s]) {
		rv = FL_EREPLAY;
		goto out;
	}
	memcpy(c->sh_b[s], plain + SA_HDR_BYTES, PRIV_SA_SHARE_BYTES);
	memcpy(c->sh_s[s], plain + SA_HDR_BYTES + PRIV_SA_SHARE_BYTES, PRIV_SA_SHARE_BYTES);
	c->got[s] = 1;
out:
	sodium_memzero(plain, sizeof plain);
	return rv;
}

int priv_sa_client_mask(priv_sa_client *c, const float *x, size_t len, uint32_t *y)
{
	uint8_t key[32];
	int rv;
	int ngot = 0;
	if (!c->keys_set || c->masked)
		return FL_ESTATE;
	/* masking with fewer than threshold neighbours would let a coordinator
	 * that withheld the boxes isolate this client: threshold revealers of
	 * its self mask and threshold mask partners cannot be disjoint among
	 * degree neighbours when threshold > degree/2 (docs/architecture.md) */
	for (int s = 0; s < c->k; s++)
		ngot += c->got[s];
	if (ngot < c->p.threshold)
		return FL_EQUORUM;
	for (size_t i = 0; i < len; i++)
		y[i] = priv_sa_encode(x[i], c->p.clip, c->p.frac_bits);
	prg_add(y, len, c->b, c->p.round, +1);
	for (int s = 0; s < c->k; s++) {
		if (!c->got[s])
			continue;
		if ((rv = pair_key(&c->p, c->s_sk, c->ns_pk[s], c->index, c->nb[s], key)) != 0)
			return rv;
		prg_add(y, len, key, c->p.round, c->nb[s] > c->index ? +1 : -1);
	}
	sodium_memzero(key, sizeof key);
	c->masked = 1;
	return 0;
}

int priv_sa_client_sign_view(priv_sa_client *c, const uint8_t *view, size_t len,
                             const uint8_t id_sk[64], uint8_t sig[PRIV_SA_SIG_BYTES])
{
	uint8_t d[32], f[PRIV_SA_MAX_DEGREE];
	int ns = 0;
	if (!c->masked)
		return FL_ESTATE;
	if (priv_sa_view_unpack(view, len, c->k, f) != 0)
		return FL_EFORMAT; /* wrong length or a padding bit set */
	for (int s = 0; s < c->k; s++) {
		/* a survivor masked, so it sent keys first */
		if (f[s] && is_zero32(c->nc_pk[s]))
			return FL_EFORMAT;
		ns += f[s];
	}
	if (c->signed_once && memcmp(f, c->view, (size_t)c->k) != 0)
		return FL_ESTATE;
	/* this client's self mask needs threshold b-shares from survivors */
	if (ns < c->p.threshold)
		return FL_EQUORUM;
	view_digest(&c->p, c->index, view, len, d);
	crypto_sign_detached(sig, NULL, d, 32, id_sk);
	memcpy(c->view, f, (size_t)c->k);
	c->signed_once = 1;
	return 0;
}

/* Does signer's packed view (its neighbours' flags, ascending) say `want`
 * of member i? 0 when i is no neighbour of the signer. */
static int view_says(const priv_sa_params *p, int signer, const uint8_t *view, int i, int want)
{
	int nb[PRIV_SA_MAX_DEGREE + 1], k;
	const int *f;
	if (!priv_sa_is_neighbour(p, signer, i) || priv_sa_neighbours(p, signer, nb, &k) != 0)
		return 0;
	f = bsearch(&i, nb, (size_t)k, sizeof *nb, cmp_int);
	return f && view_flag(view, (int)(f - nb)) == want;
}

int priv_sa_client_unmask(priv_sa_client *c, const priv_sa_signed_view *sv, int nsv,
                          priv_sa_reveal *out, int *count, int *bad)
{
	int q = priv_sa_consistency_quorum(&c->p), m = 0, rv = 0;
	uint8_t *ok = NULL;
	int *w = NULL, nw = 0;
	*bad = -1;
	if (!c->signed_once)
		return FL_ESTATE;
	if (c->answered)
		return FL_ESTATE; /* one answer per attempt */
	ok = calloc((size_t)nsv + 1, 1);
	w = malloc(((size_t)2 * c->p.degree + 1) * sizeof *w);
	if (!ok || !w) {
		rv = FL_ENOMEM;
		goto out;
	}
	if ((rv = priv_sa_window(&c->p, c->index, w, &nw)) != 0)
		goto out;
	/* an entry counts once per signer, inside this client's ring window,
	 * with a canonically packed view of the right length (checked by
	 * priv_sa_view_verify) and a signature that verifies */
	for (int e = 0; e < nsv; e++) {
		int j = sv[e].index, dup = 0;
		if (!bsearch(&j, w, (size_t)nw, sizeof *w, cmp_int))
			continue;
		for (int e2 = 0; e2 < e && !dup; e2++)
			dup = ok[e2] && sv[e2].index == j;
		if (dup)
			continue;
		ok[e] = priv_sa_view_verify(&c->p, j, sv[e].view, sv[e].view_len, sv[e].id_pk,
		                            sv[e].sig) == 0;
	}
	/* Every member this client vouches for (itself, and each neighbour
	 * whose share it reveals) must have the same status in the signed
	 * views of more than half of that member's neighbours (this client's
	 * own view counts for its neighbours). Honest clients sign one view
	 * per attempt, so two opposite majorities cannot both exist. */
	for (int s = -1; s < c->k; s++) {
		int i = s < 0 ? c->index : c->nb[s];
		int want = s < 0 ? 1 : c->view[s], cnt = s < 0 ? 0 : 1;
		if (s >= 0 && !c->got[s])
			continue;
		for (int e = 0; e < nsv; e++)
			cnt += ok[e] && view_says(&c->p, sv[e].index, sv[e].view, i, want);
		if (cnt < q) {
			*bad = i;
			rv = FL_ESIG;
			goto out;
		}
	}
	for (int s = 0; s < c->k; s++) {
		if (!c->got[s])
			continue;
		out[m].owner = c->nb[s];
		out[m].kind = c->view[s] ? 0 : 1;
		memcpy(out[m].share, c->view[s] ? c->sh_b[s] : c->sh_s[s], PRIV_SA_SHARE_BYTES);
		m++;
	}
	c->answered = 1;
	*count = m;
out:
	free(ok);
	free(w);
	return rv;
}

/* ---- server ---- */

struct priv_sa_server {
	priv_sa_params p;
	size_t len;
	uint32_t *sum;
	uint8_t *surv, *keyed, *shared; /* n, n, n*n */
	uint8_t (*c_pk)[32], (*s_pk)[32];
};

int priv_sa_server_new(const priv_sa_params *p, size_t len, priv_sa_server **out)
{
	char why[160];
	priv_sa_server *s = calloc(1, sizeof *s);
	int rv = FL_ENOMEM;
	*out = NULL;
	if (!s)
		return FL_ENOMEM;
	s->p = *p;
	s->len = len;
	if ((rv = priv_sa_check_params(&s->p, why, sizeof why)) != 0)
		goto fail;
	rv = FL_ENOMEM;
	size_t n = (size_t)s->p.n;
	s->sum = calloc(len ? len : 1, sizeof *s->sum);
	s->surv = calloc(n, 1);
	s->keyed = calloc(n, 1);
	s->shared = calloc(n * n, 1);
	s->c_pk = calloc(n, 32);
	s->s_pk = calloc(n, 32);
	if (!s->sum || !s->surv || !s->keyed || !s->shared || !s->c_pk || !s->s_pk)
		goto fail;
	*out = s;
	return 0;
fail:
	priv_sa_server_free(s);
	return rv;
}

void priv_sa_server_free(priv_sa_server *s)
{
	if (!s)
		return;
	free(s->sum);
	free(s->surv);
	free(s->keyed);
	free(s->shared);
	free(s->c_pk);
	free(s->s_pk);
	free(s);
}

int priv_sa_server_set_keys(priv_sa_server *s, int i, const uint8_t c_pk[32],
                            const uint8_t s_pk[32])
{
	if (i < 0 || i >= s->p.n)
		return FL_EINVAL;
	if (s->keyed[i])
		return FL_EREPLAY;
	if (is_zero32(c_pk) || is_zero32(s_pk))
		return FL_EFORMAT;
	memcpy(s->c_pk[i], c_pk, 32);
	memcpy(s->s_pk[i], s_pk, 32);
	s->keyed[i] = 1;
	return 0;
}

int priv_sa_server_note_share(priv_sa_server *s, int from, int to)
{
	if (from < 0 || from >= s->p.n || to < 0 || to >= s->p.n || from == to)
		return FL_EINVAL;
	s->shared[(size_t)to * (size_t)s->p.n + (size_t)from] = 1;
	return 0;
}

int priv_sa_server_add(priv_sa_server *s, int i, const uint32_t *y)
{
	if (i < 0 || i >= s->p.n || !s->keyed[i])
		return FL_EINVAL;
	if (s->surv[i])
		return FL_EREPLAY;
	for (size_t k = 0; k < s->len; k++)
		s->sum[k] += y[k];
	s->surv[i] = 1;
	return 0;
}

const uint8_t *priv_sa_server_survivors(const priv_sa_server *s)
{
	return s->surv;
}

/* Gathers the first `threshold` distinct shares of (owner, kind) and joins them. */
static int rebuild(const priv_sa_server *s, const priv_sa_reveal *rev, size_t nrev, int owner,
                   int kind, uint8_t out[32])
{
	uint8_t sh[254][PRIV_SA_SHARE_BYTES];
	uint8_t used[256] = {0};
	int t = 0;
	for (size_t r = 0; r < nrev && t < s->p.threshold; r++) {
		if (rev[r].owner != owner || rev[r].kind != kind)
			continue;
		uint8_t x = rev[r].share[0];
		if (!x || x > s->p.degree || used[x])
			continue;
		used[x] = 1;
		memcpy(sh[t++], rev[r].share, PRIV_SA_SHARE_BYTES);
	}
	int rv = t < s->p.threshold ? FL_EQUORUM : shamir_join(sh, t, out);
	sodium_memzero(sh, sizeof sh);
	return rv;
}

int priv_sa_server_finish(priv_sa_server *s, const priv_sa_reveal *rev, size_t nrev, double *sum,
                          int *nsurv, char *why, size_t whylen)
{
	int n = s->p.n, ns = 0, rv = 0, k;
	int nb[254];
	uint8_t sec[32], pk[32], key[32];
	for (int i = 0; i < n; i++)
		ns += s->surv[i];
	*nsurv = ns;
	if (ns < s->p.min_survivors) {
		snprintf(why, whylen, "%d masked updates, fewer than the %d needed: round aborted",
		         ns, s->p.min_survivors);
		return FL_EQUORUM;
	}
	for (int i = 0; i < n && rv == 0; i++) {
		if (!s->keyed[i])
			continue;
		if ((rv = priv_sa_neighbours(&s->p, i, nb, &k)) != 0)
			break;
		if (s->surv[i]) {
			/* survivor: remove its self mask; pairs with survivors must be symmetric */
			for (int q = 0; q < k; q++) {
				int j = nb[q];
				if (s->surv[j] &&
				    s->shared[(size_t)i * n + j] != s->shared[(size_t)j * n + i]) {
					snprintf(why, whylen,
					         "clients %d and %d masked asymmetrically", i, j);
					return FL_ESTATE;
				}
			}
			if ((rv = rebuild(s, rev, nrev, i, 0, sec)) != 0) {
				snprintf(why, whylen, "too few shares of client %d's self mask", i);
				break;
			}
			prg_add(s->sum, s->len, sec, s->p.round, -1);
		} else {
			/* dropped after sharing: remove the masks its survivor neighbours added */
			int any = 0;
			for (int q = 0; q < k; q++)
				any |= s->surv[nb[q]] && s->shared[(size_t)nb[q] * n + i];
			if (!any)
				continue;
			if ((rv = rebuild(s, rev, nrev, i, 1, sec)) != 0) {
				snprintf(why, whylen,
				         "too few shares of dropped client %d's mask key", i);
				break;
			}
			crypto_scalarmult_base(pk, sec);
			if (sodium_memcmp(pk, s->s_pk[i], 32) != 0) {
				snprintf(why, whylen,
				         "rebuilt mask key of client %d does not match its key", i);
				rv = FL_ESIG;
				break;
			}
			for (int q = 0; q < k && rv == 0; q++) {
				int j = nb[q];
				if (!s->surv[j] || !s->shared[(size_t)j * n + i])
					continue;
				if ((rv = pair_key(&s->p, sec, s->s_pk[j], i, j, key)) != 0)
					break;
				/* j added +PRG when i > j, -PRG when i < j: undo it */
				prg_add(s->sum, s->len, key, s->p.round, i > j ? -1 : +1);
			}
		}
	}
	sodium_memzero(sec, sizeof sec);
	sodium_memzero(key, sizeof key);
	if (rv != 0)
		return rv;
	for (size_t q = 0; q < s->len; q++)
		sum[q] = priv_sa_decode(s->sum[q], s->p.frac_bits);
	return 0;
}
