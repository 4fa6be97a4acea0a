/*
 * client/secagg_client.c — see client/secagg_client.h.
 */
#include "client/secagg_client.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/err.h"
#include "core/log.h"
#include "privacy/secagg.h"

#define SA_CALL_MS    60000
#define SA_SEND_TRIES 3

struct sa_client {
	priv_sa_params p;
	priv_sa_client *sc;
	const priv_key *key;
	char run_id[FL_RUN_ID_MAX + 1];
	uint8_t session[16];
	int index, n; /* index -1 until the key list names it */
	double weight, dp_clip;
	int64_t num_samples;
	uint64_t phase_timeout_ms;
	const priv_allow *peers; /* --sa-peers, NULL: identities taken as relayed */
	int nb[PRIV_SA_MAX_DEGREE], k;
	uint8_t (*nid)[32]; /* k: identity keys of the neighbours that sent keys (else 0) */
	uint8_t c_pk[32], s_pk[32];
	uint8_t key_sig[PRIV_SA_SIG_BYTES];
	char why[200]; /* reason of the last refusal (no secrets) */
	/* outgoing buffers */
	uint8_t nonce[FL_NONCE_BYTES];
	uint8_t *boxes;
	int *to_i;
	uint32_t *to;
	ProtobufCBinaryData *box_ref;
	uint32_t *y;
	uint8_t sig[PRIV_SA_SIG_BYTES];
	priv_sa_reveal *rev;
	Fedlora__SaReveal *rv_msg, **rv_ptr;
};

void sa_client_free(sa_client *c)
{
	if (!c)
		return;
	priv_sa_client_free(c->sc);
	free(c->nid);
	free(c->boxes);
	free(c->to_i);
	free(c->to);
	free(c->box_ref);
	free(c->y);
	if (c->rev)
		sodium_memzero(c->rev, (size_t)c->p.degree * sizeof *c->rev);
	free(c->rev);
	free(c->rv_msg);
	free(c->rv_ptr);
	sodium_memzero(c, sizeof *c);
	free(c);
}

int sa_client_index(const sa_client *c)
{
	return priv_sa_client_index(c->sc);
}

int sa_client_n(const sa_client *c)
{
	return c->n;
}

const char *sa_client_why(const sa_client *c)
{
	return c->why;
}

static int sa_cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

static int refuse(sa_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(sa_client *c, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof c->why, fmt, ap);
	va_end(ap);
	return code;
}

int sa_client_new(sa_client **out, const Fedlora__Task *t, const char *run_id, const priv_key *key,
                  char *why, size_t whylen)
{
	const Fedlora__SecAggParams *sp = t ? t->secagg : NULL;
	uint8_t seed[32];
	sa_client *c;
	int rv;

	*out = NULL;
	if (!sp || sp->n < 2 || sp->n > 100000 || sp->graph_seed.len != 32 ||
	    sp->session.len != 16 || !(sp->clip > 0) || !isfinite(sp->clip) || sp->frac_bits > 30 ||
	    !(sp->dp_clip >= 0) || !isfinite(sp->dp_clip) || sp->degree == 0 ||
	    sp->threshold == 0 || sp->min_survivors == 0) {
		snprintf(why, whylen, "secure aggregation params malformed");
		return FL_EFORMAT;
	}
	/* the graph is not the coordinator's to choose */
	priv_sa_graph_seed(run_id, t->round, seed);
	if (sodium_memcmp(seed, sp->graph_seed.data, 32) != 0) {
		snprintf(why, whylen,
		         "graph_seed is not the one derived from the run id and round "
		         "(BLAKE2b graph v1)");
		return FL_EFORMAT;
	}
	if (!(c = calloc(1, sizeof *c)))
		return FL_ENOMEM;
	c->key = key;
	c->n = (int)sp->n;
	c->index = -1;
	snprintf(c->run_id, sizeof c->run_id, "%s", run_id);
	memcpy(c->session, sp->session.data, 16);
	c->dp_clip = sp->dp_clip;
	c->phase_timeout_ms = sp->phase_timeout_ms;
	/* the secagg run id binds the run and the attempt's session (as
	 * coordinator/secagg_round.c derives it) */
	{
		crypto_generichash_state st;
		crypto_generichash_init(&st, (const uint8_t *)"fedlora-secagg-session", 22, 16);
		crypto_generichash_update(&st, (const uint8_t *)run_id, strlen(run_id));
		crypto_generichash_update(&st, c->session, 16);
		crypto_generichash_final(&st, c->p.run_id, 16);
	}
	c->p.n = c->n;
	c->p.degree = (int)sp->degree;
	c->p.threshold = (int)sp->threshold;
	c->p.min_survivors = (int)sp->min_survivors;
	c->p.clip = sp->clip;
	c->p.frac_bits = (int)sp->frac_bits;
	c->p.round = t->round;
	memcpy(c->p.graph_seed, seed, 32);
	if ((rv = priv_sa_check_params(&c->p, why, whylen)) != 0) {
		rv = FL_EFORMAT;
		goto fail;
	}
	rv = FL_ENOMEM;
	c->nid = calloc((size_t)c->p.degree, 32);
	c->boxes = malloc((size_t)c->p.degree * PRIV_SA_BOX_BYTES);
	c->to_i = calloc((size_t)c->p.degree, sizeof *c->to_i);
	c->to = calloc((size_t)c->p.degree, sizeof *c->to);
	c->box_ref = calloc((size_t)c->p.degree, sizeof *c->box_ref);
	c->rev = calloc((size_t)c->p.degree, sizeof *c->rev);
	c->rv_msg = calloc((size_t)c->p.degree, sizeof *c->rv_msg);
	c->rv_ptr = calloc((size_t)c->p.degree, sizeof *c->rv_ptr);
	if (!c->nid || !c->boxes || !c->to_i || !c->to || !c->box_ref || !c->rev || !c->rv_msg ||
	    !c->rv_ptr)
		goto fail;
	if ((rv = priv_sa_client_new(&c->p, -1, &c->sc)) != 0) {
		snprintf(why, whylen, "cannot start: %s", fl_strerror(rv));
		goto fail;
	}
	priv_sa_client_pubkeys(c->sc, c->c_pk, c->s_pk);
	priv_sa_keys_sign(&c->p, c->session, c->c_pk, c->s_pk, key->sk, c->key_sig);
	*out = c;
	return 0;
fail:
	sa_client_free(c);
	return rv;
}

void sa_client_set_peers(sa_client *c, const priv_allow *peers)
{
	c->peers = peers;
}

/* An identity key of the round outside --sa-peers? (refusal text in c->why) */
static int unknown_peer(sa_client *c, int j, const uint8_t id[32])
{
	char hex[65];
	if (!c->peers || priv_allow_contains(c->peers, id))
		return 0;
	sodium_bin2hex(hex, sizeof hex, id, 32);
	hex[16] = 0;
	refuse(c, FL_EKEY, "member %d (%s...) is not in --sa-peers", j, hex);
	return 1;
}

static void up_init(sa_client *c, Fedlora__SaUp *up, uint32_t phase)
{
	fedlora__sa_up__init(up);
	fl_wire_nonce(c->nonce);
	up->run_id = c->run_id;
	up->round = c->p.round;
	up->nonce.data = c->nonce;
	up->nonce.len = FL_NONCE_BYTES;
	up->session.data = c->session;
	up->session.len = sizeof c->session;
	up->phase = phase;
}

/* Is d a relay of phase `phase` of this attempt? */
static int check_down(const sa_client *c, const Fedlora__SaDown *d, uint32_t phase)
{
	if (!d)
		return FL_EFORMAT;
	if (fl_wire_check_run(d->run_id, c->run_id) != 0 || d->round != c->p.round ||
	    d->session.len != sizeof c->session ||
	    memcmp(d->session.data, c->session, sizeof c->session) != 0 || d->phase != phase)
		return FL_ESTALE;
	return 0;
}

double sa_client_weight(const sa_client *c)
{
	return c->weight;
}

int sa_client_keys(sa_client *c, int64_t num_samples, Fedlora__SaUp *up)
{
	if (num_samples <= 0)
		return FL_EINVAL;
	c->num_samples = num_samples;
	up_init(c, up, 1);
	up->num_samples = num_samples;
	up->c_pk.data = c->c_pk;
	up->c_pk.len = 32;
	up->s_pk.data = c->s_pk;
	up->s_pk.len = 32;
	up->key_sig.data = c->key_sig;
	up->key_sig.len = PRIV_SA_SIG_BYTES;
	return 0;
}

int sa_client_on_keylist(sa_client *c, const Fedlora__SaDown *d, Fedlora__SaUp *up)
{
	uint8_t(*cp)[32] = NULL, (*spk)[32] = NULL, (*ids)[32] = NULL;
	int *from = NULL, rv, count = 0;
	size_t k;

	c->why[0] = 0;
	if ((rv = check_down(c, d, 1)) != 0)
		return refuse(c, rv, "key list of another run, round, attempt or phase");
	if (c->index >= 0)
		return refuse(c, FL_ESTATE, "a second key list");
	k = d->n_key_from;
	if (d->n_c_pk != k || d->n_s_pk != k || d->n_key_sigs != k || d->n_key_id != k ||
	    k > (size_t)c->p.degree)
		return refuse(c, FL_EFORMAT,
		              "key list: %zu entries, more than the degree %d or "
		              "counts differ",
		              k, c->p.degree);
	if (d->you >= (uint32_t)c->n)
		return refuse(c, FL_EFORMAT, "key list: index %u of %d members", d->you, c->n);
	/* the weight must stay within the clip: at most 1 */
	{
		double w = c->dp_clip > 0 ? 1 : (double)c->num_samples * d->weight_scale;
		if (!(w > 0) || w > 1 + 1e-9)
			return refuse(c, FL_EFORMAT, "key list: weight %g out of (0, 1]", w);
		c->weight = w > 1 ? 1 : w;
	}
	cp = calloc(k + 1, 32);
	spk = calloc(k + 1, 32);
	ids = calloc(k + 1, 32);
	from = calloc(k + 1, sizeof *from);
	rv = FL_ENOMEM;
	if (!cp || !spk || !ids || !from)
		goto out;
	/* each entry: a neighbour's keys, signed by the identity key relayed
	 * with them for this round and attempt (a substituted key, or one
	 * signed for another round, session or round parameters is refused) */
	for (size_t q = 0; q < k; q++) {
		uint32_t j = d->key_from[q];
		if (!priv_sa_is_neighbour(&c->p, (int)d->you, (int)j) || d->c_pk[q].len != 32 ||
		    d->s_pk[q].len != 32 || d->key_sigs[q].len != PRIV_SA_SIG_BYTES ||
		    d->key_id[q].len != 32) {
			rv = refuse(c, FL_EFORMAT,
			            "key list entry %zu malformed or not a neighbour", q);
			goto out;
		}
		if (unknown_peer(c, (int)j, d->key_id[q].data)) {
			rv = FL_EKEY;
			goto out;
		}
		if (priv_sa_keys_verify(&c->p, c->session, d->c_pk[q].data, d->s_pk[q].data,
		                        d->key_id[q].data, d->key_sigs[q].data) != 0) {
			rv = refuse(c, FL_ESIG,
			            "keys of member %u are not signed by its key for this round "
			            "and attempt",
			            j);
			goto out;
		}
		from[q] = (int)j;
		memcpy(cp[q], d->c_pk[q].data, 32);
		memcpy(spk[q], d->s_pk[q].data, 32);
		memcpy(ids[q], d->key_id[q].data, 32);
	}
	/* positions must follow the ring keys of the identities (this client's
	 * own included): the coordinator cannot place members at will */
	from[k] = (int)d->you;
	memcpy(ids[k], c->key->pk, 32);
	if (priv_sa_ring_check(&c->p, from, (const uint8_t(*)[32])ids, (int)k + 1) != 0) {
		rv = refuse(c, FL_EFORMAT,
		            "key list: the positions disagree with the members' ring keys "
		            "(or repeat)");
		goto out;
	}
	rv = priv_sa_client_set_nb_keys(c->sc, (int)d->you, from, (const uint8_t(*)[32])cp,
	                                (const uint8_t(*)[32])spk, (int)k);
	if (rv == FL_EQUORUM) {
		refuse(c, rv,
		       "key list: %zu neighbours sent signed keys, fewer than the threshold %d "
		       "(this client's secrets could not be rebuilt)",
		       k, c->p.threshold);
		goto out;
	}
	if (rv) {
		refuse(c, rv, "key list: a key of a non-neighbour, a repeated or empty entry");
		goto out;
	}
	c->index = (int)d->you;
	if ((rv = priv_sa_neighbours(&c->p, c->index, c->nb, &c->k)) != 0)
		goto out;
	for (size_t q = 0; q < k; q++) {
		const int *f = bsearch(&from[q], c->nb, (size_t)c->k, sizeof *c->nb, sa_cmp_int);
		memcpy(c->nid[f - c->nb], ids[q], 32);
	}
	if ((rv = priv_sa_client_make_shares(c->sc, c->boxes, c->to_i, &count)) != 0)
		goto out;
	up_init(c, up, 2);
	for (int q = 0; q < count; q++) {
		c->to[q] = (uint32_t)c->to_i[q];
		c->box_ref[q].data = c->boxes + (size_t)q * PRIV_SA_BOX_BYTES;
		c->box_ref[q].len = PRIV_SA_BOX_BYTES;
	}
	up->n_to = up->n_boxes = (size_t)count;
	up->to = c->to;
	up->boxes = c->box_ref;
out:
	free(cp);
	free(spk);
	free(ids);
	free(from);
	return rv;
}

int sa_client_on_boxes(sa_client *c, const Fedlora__SaDown *d)
{
	int rv;
	if ((rv = check_down(c, d, 2)) != 0)
		return rv;
	if (c->index < 0 || d->n_from != d->n_boxes || d->n_from > (size_t)c->p.degree)
		return FL_EFORMAT;
	for (size_t q = 0; q < d->n_from; q++) {
		if (d->from[q] >= (uint32_t)c->n || (int)d->from[q] == c->index ||
		    d->boxes[q].len != PRIV_SA_BOX_BYTES)
			return FL_EFORMAT;
		if ((rv = priv_sa_client_recv_share(c->sc, (int)d->from[q], d->boxes[q].data)) != 0)
			return rv;
	}
	return 0;
}

int sa_client_mask(sa_client *c, const float *x, size_t len, Fedlora__SaUp *up, uint64_t *clipped)
{
	int rv;
	uint64_t k = 0;
	free(c->y);
	if (!(c->y = malloc((len ? len : 1) * sizeof *c->y)))
		return FL_ENOMEM;
	for (size_t i = 0; i < len; i++)
		k += fabs((double)x[i]) > c->p.clip;
	if ((rv = priv_sa_client_mask(c->sc, x, len, c->y)) != 0)
		return rv;
	up_init(c, up, 3);
	up->n_values = len;
	up->values = c->y;
	up->clipped = k;
	if (clipped)
		*clipped = k;
	return 0;
}

int sa_client_on_survivors(sa_client *c, const Fedlora__SaDown *d, Fedlora__SaUp *up)
{
	int rv;
	c->why[0] = 0;
	if ((rv = check_down(c, d, 3)) != 0)
		return refuse(c, rv, "view of another run, round, attempt or phase");
	if (c->index < 0 || d->view.len != PRIV_SA_VIEW_BYTES(c->k))
		return refuse(c, FL_EFORMAT,
		              "view of %zu bytes, expected %zu (%d neighbours' flags, bit-packed)",
		              d->view.len, PRIV_SA_VIEW_BYTES(c->k), c->k);
	/* it would be signed: exactly one encoding of a view is accepted */
	if (priv_sa_view_unpack(d->view.data, d->view.len, c->k, NULL) != 0)
		return refuse(c, FL_EFORMAT,
		              "view not canonical: unused high bits of its last byte are set "
		              "(%d flags)",
		              c->k);
	rv = priv_sa_client_sign_view(c->sc, d->view.data, d->view.len, c->key->sk, c->sig);
	if (rv == FL_EQUORUM)
		return refuse(c, rv,
		              "view names fewer than the threshold %d of its neighbours "
		              "survivors (its self mask could not be rebuilt)",
		              c->p.threshold);
	if (rv == FL_ESTATE)
		return refuse(c, rv, "a second, different view in this attempt");
	if (rv)
		return refuse(c, rv, "view malformed (a survivor that sent no keys)");
	up_init(c, up, 4);
	up->sig.data = c->sig;
	up->sig.len = PRIV_SA_SIG_BYTES;
	return 0;
}

int sa_client_on_unmask(sa_client *c, const Fedlora__SaDown *d, Fedlora__SaUp *up)
{
	priv_sa_signed_view *sv = NULL;
	int *pos = NULL, rv, count = 0, bad = -1, np = 0;
	uint8_t(*ids)[32] = NULL;
	size_t m;

	c->why[0] = 0;
	if ((rv = check_down(c, d, 4)) != 0)
		return refuse(c, rv, "unmask request of another run, round, attempt or phase");
	m = d->n_signer;
	if (c->index < 0 || d->n_sigs != m || d->n_views != m || d->n_signer_id != m ||
	    m > 2 * (size_t)c->p.degree)
		return refuse(c, FL_EFORMAT, "unmask request: %zu signed views or counts differ",
		              m);
	sv = calloc(m + 1, sizeof *sv);
	pos = calloc(m + (size_t)c->k + 1, sizeof *pos);
	ids = calloc(m + (size_t)c->k + 1, 32);
	rv = FL_ENOMEM;
	if (!sv || !pos || !ids)
		goto out;
	/* the identities of the round this client knows: itself, its keyed
	 * neighbours, and the window's signers (relayed here) */
	pos[np] = c->index;
	memcpy(ids[np++], c->key->pk, 32);
	for (int s = 0; s < c->k; s++)
		if (!sodium_is_zero(c->nid[s], 32)) {
			pos[np] = c->nb[s];
			memcpy(ids[np++], c->nid[s], 32);
		}
	for (size_t e = 0; e < m; e++) {
		uint32_t j = d->signer[e];
		const int *f;
		const uint8_t *id = d->signer_id[e].data;
		if (j >= (uint32_t)c->n || d->sigs[e].len != PRIV_SA_SIG_BYTES ||
		    (d->signer_id[e].len != 32 && d->signer_id[e].len != 0)) {
			rv = refuse(c, FL_EFORMAT, "unmask request: signed view %zu malformed", e);
			goto out;
		}
		/* every member has as many neighbours as this client; a view it
		 * signed is canonical, so any other encoding is the relay's */
		if (d->views[e].len != PRIV_SA_VIEW_BYTES(c->k)) {
			rv = refuse(c, FL_EFORMAT,
			            "unmask request: signed view %zu of %zu bytes, expected %zu", e,
			            d->views[e].len, PRIV_SA_VIEW_BYTES(c->k));
			goto out;
		}
		if (priv_sa_view_unpack(d->views[e].data, d->views[e].len, c->k, NULL) != 0) {
			rv = refuse(c, FL_EFORMAT,
			            "unmask request: signed view %zu not canonical (unused high "
			            "bits of its last byte set)",
			            e);
			goto out;
		}
		f = bsearch(&(int){(int)j}, c->nb, (size_t)c->k, sizeof *c->nb, sa_cmp_int);
		if ((int)j == c->index) {
			/* this client's own view: never counted (outside its window) */
			id = c->key->pk;
		} else if (f) {
			/* a neighbour: the identity its keys were signed with (sent
			 * again or left out) */
			id = c->nid[f - c->nb];
			if (sodium_is_zero(id, 32) ||
			    (d->signer_id[e].len &&
			     sodium_memcmp(id, d->signer_id[e].data, 32) != 0)) {
				rv = refuse(c, FL_EKEY,
				            "unmask request: member %u's identity differs from its "
				            "key list entry (or it sent no keys)",
				            j);
				goto out;
			}
		} else {
			if (d->signer_id[e].len != 32) {
				rv = refuse(c, FL_EFORMAT,
				            "unmask request: no identity key for member %u", j);
				goto out;
			}
			if (unknown_peer(c, (int)j, d->signer_id[e].data)) {
				rv = FL_EKEY;
				goto out;
			}
			pos[np] = (int)j;
			memcpy(ids[np++], d->signer_id[e].data, 32);
		}
		sv[e].index = (int)j;
		sv[e].view = d->views[e].data;
		sv[e].view_len = d->views[e].len;
		sv[e].id_pk = id;
		sv[e].sig = d->sigs[e].data;
	}
	if (priv_sa_ring_check(&c->p, pos, (const uint8_t(*)[32])ids, np) != 0) {
		rv = refuse(c, FL_EFORMAT,
		            "unmask request: the positions disagree with the members' ring keys "
		            "(or repeat)");
		goto out;
	}
	rv = priv_sa_client_unmask(c->sc, sv, (int)m, c->rev, &count, &bad);
	if (rv == FL_ESIG) {
		refuse(c, rv,
		       "member %d's status is not confirmed by the signed views of %d of its "
		       "neighbours",
		       bad, priv_sa_consistency_quorum(&c->p));
		goto out;
	}
	if (rv) {
		refuse(c, rv, "unmask request before a view or a second one");
		goto out;
	}
	up_init(c, up, 5);
	for (int q = 0; q < count; q++) {
		fedlora__sa_reveal__init(&c->rv_msg[q]);
		c->rv_msg[q].owner = (uint32_t)c->rev[q].owner;
		c->rv_msg[q].kind = c->rev[q].kind;
		c->rv_msg[q].share.data = c->rev[q].share;
		c->rv_msg[q].share.len = PRIV_SA_SHARE_BYTES;
		c->rv_ptr[q] = &c->rv_msg[q];
	}
	up->n_reveals = (size_t)count;
	up->reveals = c->rv_ptr;
out:
	free(sv);
	free(pos);
	free(ids);
	return rv;
}

int sa_client_vector(const lora_adapter *global, const lora_adapter *trained, int train_a,
                     double weight, double dp_clip, float **out, size_t *len)
{
	size_t off = train_a ? 0 : global->n_a;
	size_t n = train_a ? global->n_a + global->n_b : global->n_b;
	double norm = 0, sc;
	float *x;

	*out = NULL;
	*len = 0;
	if (trained->n_a != global->n_a || trained->n_b != global->n_b || !(weight > 0))
		return FL_EINVAL;
	if (!(x = malloc((n + 1) * sizeof *x)))
		return FL_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		double d = (double)trained->params[off + i] - (double)global->params[off + i];
		norm += d * d;
	}
	norm = sqrt(norm);
	sc = weight;
	if (dp_clip > 0) {
		/* client-level DP: the client clips its own delta, weight 1 */
		sc = norm > dp_clip ? dp_clip / norm * (1.0 - 8 * (double)FLT_EPSILON) : 1.0;
		weight = 1;
	}
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(sc * ((double)trained->params[off + i] -
		                     (double)global->params[off + i]));
	x[n] = (float)weight;
	*out = x;
	*len = n + 1;
	return 0;
}

/* ---------------------------------------------------------------- driver */

static double sa_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void sa_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static void set_out(sa_client_outcome *o, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_out(sa_client_outcome *o, int code, const char *fmt, ...)
{
	va_list ap;
	o->code = code;
	va_start(ap, fmt);
	vsnprintf(o->text, sizeof o->text, fmt, ap);
	va_end(ap);
}

/* Sends up; 0 on its Ack (or a replay reject of our own resend). */
static int send_up(const sa_client_io *io, const Fedlora__SaUp *up, sa_client_outcome *o)
{
	int rv = FL_ENET;
	for (int i = 0; i < SA_SEND_TRIES; i++) {
		fl_wire_msg rep;
		size_t sent = 0;
		rv = io->call(io->arg, &up->base, FL_MSG_SA_UP, SA_CALL_MS, &rep, &sent);
		if (rv == FL_ENET || rv == FL_ETIMEOUT) {
			sa_sleep_ms(200);
			continue;
		}
		if (rv) {
			set_out(o, rv, "reply to phase %u refused", up->phase);
			return rv;
		}
		o->bytes_up += sent;
		if (rep.type == FL_MSG_ACK) {
			const Fedlora__Ack *a = (const Fedlora__Ack *)rep.body;
			rv = a->round == up->round && a->nonce.len == FL_NONCE_BYTES &&
			             !memcmp(a->nonce.data, up->nonce.data, FL_NONCE_BYTES)
			         ? 0
			         : FL_ESTALE;
			if (rv)
				set_out(o, rv, "acknowledgement of another message (phase %u)",
				        up->phase);
		} else if (rep.type == FL_MSG_REJECT) {
			const Fedlora__Reject *rj = (const Fedlora__Reject *)rep.body;
			rv = rj->code < 0 && rj->code > -100 ? rj->code : FL_EFORMAT;
			if (rv == FL_EREPLAY)
				rv = 0; /* our own resend arrived twice */
			else
				set_out(o, rv, "phase %u refused: %s", up->phase,
				        rj->text ? rj->text : "");
		} else {
			rv = FL_EFORMAT;
			set_out(o, rv, "unexpected reply to phase %u", up->phase);
		}
		fl_wire_msg_fini(&rep);
		return rv;
	}
	set_out(o, rv, "no reply to phase %u", up->phase);
	return rv;
}

/* Polls GetTask for SaDown `want` until deadline; 0 with rep holding it. */
static int poll_down(const sa_client_io *io, const sa_client *c, uint32_t want, double deadline,
                     fl_wire_msg *rep, sa_client_outcome *o)
{
	while (sa_now() < deadline) {
		Fedlora__GetTask g = FEDLORA__GET_TASK__INIT;
		int rv;
		g.run_id = (char *)io->run_id;
		g.last_round_seen = c->p.round - 1;
		g.sa_phase = want;
		g.max_wait_ms = (uint32_t)io->poll_timeout_ms;
		rv = io->call(io->arg, &g.base, FL_MSG_GET_TASK, io->poll_timeout_ms, rep, NULL);
		if (rv == FL_ENET || rv == FL_ETIMEOUT) {
			sa_sleep_ms(100);
			continue;
		}
		if (rv) {
			set_out(o, rv, "waiting for phase %u: reply refused", want);
			return rv;
		}
		if (rep->type == FL_MSG_SA_DOWN)
			return 0;
		if (rep->type == FL_MSG_WAIT) {
			fl_wire_msg_fini(rep);
			sa_sleep_ms(50);
			continue;
		}
		if (rep->type == FL_MSG_REJECT) {
			const Fedlora__Reject *rj = (const Fedlora__Reject *)rep->body;
			rv = rj->code < 0 && rj->code > -100 ? rj->code : FL_EFORMAT;
			set_out(o, rv, "waiting for phase %u: %s", want, rj->text ? rj->text : "");
		} else {
			rv = FL_ESTATE;
			set_out(o, rv, "waiting for phase %u: got %s", want,
			        fl_msg_type_name(rep->type));
		}
		fl_wire_msg_fini(rep);
		return rv;
	}
	set_out(o, FL_ETIMEOUT, "phase %u did not come in time", want);
	return FL_ETIMEOUT;
}

/* FEDLORA_SA_DROP_AFTER_MASK test hook (see the header). */
static int drop_after_mask(int index, uint64_t round)
{
	const char *e = getenv("FEDLORA_SA_DROP_AFTER_MASK");
	const char *r = getenv("FEDLORA_SA_DROP_ROUND");
	char *end;
	if (r && *r && strtoull(r, NULL, 10) != round)
		return 0;
	while (e && *e) {
		long v = strtol(e, &end, 10);
		if (end == e)
			return 0;
		if (v == index)
			return 1;
		e = *end == ',' ? end + 1 : end;
	}
	return 0;
}

int sa_client_round(const sa_client_io *io, const Fedlora__Task *t, const lora_adapter *global,
                    const lora_adapter *trained, int train_a, int64_t num_samples,
                    const Fedlora__TrainMetrics *met, sa_client_outcome *out)
{
	sa_client *c = NULL;
	Fedlora__SaUp up;
	fl_wire_msg rep = {0};
	float *x = NULL;
	size_t len = 0;
	char why[200] = "";
	double deadline;
	int rv;

	memset(out, 0, sizeof *out);
	if ((rv = sa_client_new(&c, t, io->run_id, io->key, why, sizeof why)) != 0) {
		set_out(out, rv, "secure round refused: %s", why);
		return 0;
	}
	sa_client_set_peers(c, io->peers);
	deadline =
	    sa_now() + (double)t->deadline_ms / 1000 + 5.0 * (double)c->phase_timeout_ms / 1000 + 5;
	/* 1 keys */
	if (sa_client_keys(c, num_samples, &up) != 0) {
		set_out(out, FL_EINVAL, "no training examples");
		goto done;
	}
	if (send_up(io, &up, out) != 0)
		goto done;
	/* 2 shares */
	if (poll_down(io, c, 1, deadline, &rep, out) != 0)
		goto done;
	rv = sa_client_on_keylist(c, (const Fedlora__SaDown *)rep.body, &up);
	fl_wire_msg_fini(&rep);
	if (rv) {
		set_out(out, rv, "key list refused: %s",
		        sa_client_why(c)[0] ? sa_client_why(c) : fl_strerror(rv));
		goto done;
	}
	if (send_up(io, &up, out) != 0)
		goto done;
	/* 3 masked vector */
	if (poll_down(io, c, 2, deadline, &rep, out) != 0)
		goto done;
	rv = sa_client_on_boxes(c, (const Fedlora__SaDown *)rep.body);
	fl_wire_msg_fini(&rep);
	if (rv) {
		set_out(out, rv, "share boxes refused");
		goto done;
	}
	rv = sa_client_vector(global, trained, train_a, c->weight, c->dp_clip, &x, &len);
	if (rv) {
		set_out(out, rv, "cannot build the update vector");
		goto done;
	}
	if ((rv = sa_client_mask(c, x, len, &up, &out->clipped)) != 0) {
		if (rv == FL_EQUORUM)
			set_out(out, rv,
			        "masking refused: share boxes from fewer than the threshold %d of "
			        "its neighbours arrived",
			        c->p.threshold);
		else
			set_out(out, rv, "masking failed");
		goto done;
	}
	up.num_samples = num_samples;
	up.metrics = (Fedlora__TrainMetrics *)met;
	if (out->clipped)
		fl_log(FL_LOG_WARN, "client",
		       "round %llu: %llu coordinate(s) beyond the secure aggregation clip %.4g "
		       "clipped",
		       (unsigned long long)t->round, (unsigned long long)out->clipped, c->p.clip);
	if (send_up(io, &up, out) != 0)
		goto done;
	if (drop_after_mask(io->client_index, t->round)) {
		fl_log(FL_LOG_WARN, "client",
		       "FEDLORA_SA_DROP_AFTER_MASK: exiting after the masked vector (test hook)");
		_exit(3);
	}
	/* 4 signature over this client's view */
	if (poll_down(io, c, 3, deadline, &rep, out) != 0)
		goto done;
	rv = sa_client_on_survivors(c, (const Fedlora__SaDown *)rep.body, &up);
	fl_wire_msg_fini(&rep);
	if (rv) {
		set_out(out, rv, "view refused: %s",
		        sa_client_why(c)[0] ? sa_client_why(c) : fl_strerror(rv));
		goto done;
	}
	if (send_up(io, &up, out) != 0)
		goto done;
	/* 5 reveals */
	if (poll_down(io, c, 4, deadline, &rep, out) != 0)
		goto done;
	rv = sa_client_on_unmask(c, (const Fedlora__SaDown *)rep.body, &up);
	fl_wire_msg_fini(&rep);
	if (rv) {
		set_out(out, rv, "unmask request refused: %s",
		        sa_client_why(c)[0] ? sa_client_why(c) : fl_strerror(rv));
		goto done;
	}
	if (send_up(io, &up, out) != 0)
		goto done;
	out->accepted = 1;
done:
	free(x);
	sa_client_free(c);
	return 0;
}
