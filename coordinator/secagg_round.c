/*
 * coordinator/secagg_round.c — see coordinator/secagg_round.h.
 */
#include "coordinator/secagg_round.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/err.h"
#include "core/wire.h"
#include "privacy/noise.h"
#include "privacy/secagg.h"

enum { P_KEYS = 1, P_SHARES = 2, P_MASKED = 3, P_SIGN = 4, P_UNMASK = 5, P_END = 6 };
static const char *phase_names[] = {"", "keys", "shares", "masked", "signature", "reveals", ""};

/* per member: the highest phase (P_*) whose upload arrived */
typedef struct sa_member {
	int reg;
	int done; /* last phase uploaded (0: none) */
	int *to, nbox;
	uint8_t *boxes;
	double num_samples, train_loss, eval_before, eval_after, eps;
	uint64_t clipped;
	uint8_t sig[PRIV_SA_SIG_BYTES];
	uint8_t c_pk[32], s_pk[32];
	uint8_t key_sig[PRIV_SA_SIG_BYTES]; /* over c_pk, s_pk (verified on arrival) */
} sa_member;

struct sa_round {
	priv_sa_params p;
	priv_sa_server *srv;
	const priv_key *key;
	char run_id[FL_RUN_ID_MAX + 1];
	lora_strategy strat;
	const lora_adapter *global;
	size_t off, len; /* the slice of params sent; len + 1 values travel */
	double dp_clip, dp_noise, dp_expected;
	double keys_timeout, phase_timeout;
	int n, phase, result; /* P_*, SA_* */
	double deadline;
	char why[256];
	sa_member *m;
	uint8_t (*id_pk)[32];
	uint8_t session[PRIV_SA_SESSION_BYTES];
	/* Task params (the same for every member; nothing in them grows with n) */
	Fedlora__SecAggParams tp;
	double weight_scale; /* SaDown 1, fixed when the keys phase closes */
	uint8_t *surv;       /* n flags, fixed at P_SIGN */
	priv_sa_reveal *rev;
	size_t nrev, rev_cap;
	double *sum; /* len + 1 decoded */
	int nsurv, nkeys, nshares;
	uint64_t bytes_up, bytes_down;
};

static int member_of(const sa_round *r, int reg)
{
	for (int i = 0; i < r->n; i++)
		if (r->m[i].reg == reg)
			return i;
	return -1;
}

int sa_round_member(const sa_round *r, int reg)
{
	return r ? member_of(r, reg) : -1;
}

/* Max |x| over the slice sent. */
static double slice_maxabs(const lora_adapter *g, size_t off, size_t len)
{
	double m = 0;
	for (size_t i = 0; i < len; i++) {
		double v = fabs((double)g->params[off + i]);
		if (v > m)
			m = v;
	}
	return m;
}

typedef struct ring_ent {
	uint8_t key[32];
	int sel; /* selection position */
} ring_ent;

static int ring_cmp(const void *a, const void *b)
{
	return memcmp(((const ring_ent *)a)->key, ((const ring_ent *)b)->key, 32);
}

/* Orders the selected members by ring key (privacy/secagg.h): m[i] and
 * id_pk[i] of position i. FL_EINVAL when two members share a key. */
static int ring_order(sa_round *r, const sa_round_opts *o, char *why, size_t whylen)
{
	ring_ent *e = malloc((size_t)o->n * sizeof *e);
	if (!e)
		return FL_ENOMEM;
	for (int i = 0; i < o->n; i++) {
		priv_sa_ring_key(r->p.graph_seed, o->id_pk[i], e[i].key);
		e[i].sel = i;
	}
	qsort(e, (size_t)o->n, sizeof *e, ring_cmp);
	for (int i = 0; i < o->n; i++) {
		if (i && memcmp(e[i].key, e[i - 1].key, 32) == 0) {
			snprintf(why, whylen, "secure aggregation: a member key is selected twice");
			free(e);
			return FL_EINVAL;
		}
		r->m[i].reg = o->reg[e[i].sel];
		memcpy(r->id_pk[i], o->id_pk[e[i].sel], 32);
	}
	free(e);
	return 0;
}

int sa_round_new(sa_round **out, const sa_round_opts *o, double now, char *why, size_t whylen)
{
	sa_round *r;
	int rv = FL_ENOMEM;

	*out = NULL;
	if (o->min_clients > o->n) {
		snprintf(why, whylen, "%d client(s) selected, below the quorum --min-clients %d",
		         o->n, o->min_clients);
		return FL_EINVAL;
	}
	if (o->n < 2 || o->strat == LORA_FAIR || !o->global || !o->key) {
		snprintf(why, whylen, "secure aggregation needs >= 2 clients and fedit or ffa");
		return FL_EINVAL;
	}
	if (!(r = calloc(1, sizeof *r)))
		return FL_ENOMEM;
	r->n = o->n;
	r->key = o->key;
	r->strat = o->strat;
	r->global = o->global;
	snprintf(r->run_id, sizeof r->run_id, "%s", o->run_id);
	r->off = o->strat == LORA_FFA ? o->global->n_a : 0;
	r->len = o->strat == LORA_FFA ? o->global->n_b : o->global->n_a + o->global->n_b;
	r->dp_clip = o->dp_clip;
	r->dp_noise = o->dp_noise;
	r->dp_expected = o->dp_expected;
	r->keys_timeout = o->keys_timeout;
	r->phase_timeout = o->phase_timeout;
	r->m = calloc((size_t)o->n, sizeof *r->m);
	r->id_pk = calloc((size_t)o->n, 32);
	r->surv = calloc((size_t)o->n, 1);
	r->sum = calloc(r->len + 1, sizeof *r->sum);
	if (!r->m || !r->id_pk || !r->surv || !r->sum)
		goto fail;
	/* the graph is derived, not drawn: members sit on the ring in the
	 * order of their ring keys, and a member's index is its position */
	priv_sa_graph_seed(o->run_id, (uint64_t)o->round, r->p.graph_seed);
	if ((rv = ring_order(r, o, why, whylen)) != 0)
		goto fail;

	/* parameters: session id bound into the secagg run id (so shares of
	 * another attempt or round do not open), fixed point from the scale */
	randombytes_buf(r->session, sizeof r->session);
	{
		crypto_generichash_state st;
		crypto_generichash_init(&st, (const uint8_t *)"fedlora-secagg-session", 22, 16);
		crypto_generichash_update(&st, (const uint8_t *)r->run_id, strlen(r->run_id));
		crypto_generichash_update(&st, r->session, sizeof r->session);
		crypto_generichash_final(&st, r->p.run_id, 16);
	}
	r->p.n = o->n;
	r->p.round = (uint64_t)o->round;
	if (o->clip > 0) {
		r->p.clip = o->clip;
	} else if (r->dp_clip > 0) {
		/* a clipped delta has every coordinate within dp_clip */
		r->p.clip = r->dp_clip > 1 ? r->dp_clip : 1;
	} else {
		/* weights are at most 1 (num_samples / the largest of the round)
		 * and a round's delta stays well within a few times the adapter's
		 * own scale; values beyond are clipped and counted */
		double a = slice_maxabs(o->global, 0, o->global->n_a + o->global->n_b);
		r->p.clip = 32 * (a > 0.125 ? a : 0.125);
	}
	if (r->p.clip < 1.0001)
		r->p.clip = 1.0001; /* the weight coordinate itself */
	if (o->frac_bits > 0) {
		r->p.frac_bits = o->frac_bits;
	} else {
		/* n * clip * 2^fb < 2^31 with a bit to spare */
		int fb = (int)floor(31 - log2((double)o->n * r->p.clip)) - 1;
		r->p.frac_bits = fb > 24 ? 24 : fb;
		if (r->p.frac_bits < 4) {
			snprintf(
			    why, whylen,
			    "secure aggregation: clip %.4g x %d clients leaves %d fraction bits "
			    "(< 4); lower --sa-clip",
			    r->p.clip, o->n, r->p.frac_bits);
			rv = FL_EINVAL;
			goto fail;
		}
	}
	if ((rv = priv_sa_check_params(&r->p, why, whylen)) != 0)
		goto fail;
	/* the run's quorum: at least min_clients vectors in the sum */
	if (r->p.min_survivors < o->min_clients) {
		r->p.min_survivors = o->min_clients;
		if ((rv = priv_sa_check_params(&r->p, why, whylen)) != 0)
			goto fail;
	}
	if ((rv = priv_sa_server_new(&r->p, r->len + 1, &r->srv)) != 0)
		goto fail;
	fedlora__sec_agg_params__init(&r->tp);
	r->tp.n = (uint32_t)r->p.n;
	r->tp.degree = (uint32_t)r->p.degree;
	r->tp.threshold = (uint32_t)r->p.threshold;
	r->tp.min_survivors = (uint32_t)r->p.min_survivors;
	r->tp.clip = r->p.clip;
	r->tp.frac_bits = (uint32_t)r->p.frac_bits;
	r->tp.graph_seed.data = r->p.graph_seed;
	r->tp.graph_seed.len = 32;
	r->tp.session.data = r->session;
	r->tp.session.len = sizeof r->session;
	r->tp.phase_timeout_ms = (uint64_t)(o->phase_timeout * 1000);
	r->tp.dp_clip = r->dp_clip;
	r->phase = P_KEYS;
	r->deadline = now + o->keys_timeout;
	*out = r;
	return 0;
fail:
	sa_round_free(r);
	return rv;
}

void sa_round_free(sa_round *r)
{
	if (!r)
		return;
	for (int i = 0; r->m && i < r->n; i++) {
		free(r->m[i].to);
		free(r->m[i].boxes);
	}
	free(r->m);
	free(r->id_pk);
	free(r->surv);
	if (r->rev)
		sodium_memzero(r->rev, r->rev_cap * sizeof *r->rev);
	free(r->rev);
	free(r->sum);
	priv_sa_server_free(r->srv);
	sodium_memzero(r, sizeof *r);
	free(r);
}

Fedlora__SecAggParams *sa_round_task_params(sa_round *r)
{
	return &r->tp;
}

int sa_round_wants_task(const sa_round *r, int reg)
{
	int i = r ? member_of(r, reg) : -1;
	return i >= 0 && r->phase == P_KEYS && r->m[i].done == 0 && r->result == SA_RUNNING;
}

const char *sa_round_why(const sa_round *r)
{
	return r->why;
}

double sa_round_deadline(const sa_round *r)
{
	return r->deadline;
}

void sa_round_count_bytes(sa_round *r, size_t up, size_t down)
{
	r->bytes_up += up;
	r->bytes_down += down;
}

/* ---------------------------------------------------------------- down */

static int seal_down(sa_round *r, Fedlora__SaDown *d, uint8_t **buf, size_t *len)
{
	d->run_id = r->run_id;
	d->round = r->p.round;
	d->session.data = r->session;
	d->session.len = sizeof r->session;
	return fl_wire_seal(&d->base, FL_MSG_SA_DOWN, r->key, buf, len);
}

/* weight_i = num_samples_i / the largest of the key senders (<= 1) */
static void fix_weight_scale(sa_round *r)
{
	double wmax = 1;
	for (int i = 0; i < r->n; i++)
		if (r->m[i].done >= P_KEYS && r->m[i].num_samples > wmax)
			wmax = r->m[i].num_samples;
	r->weight_scale = r->dp_clip > 0 ? 1 : 1 / wmax;
}

/* SaDown 1 for client j: its index, and the identity keys, round keys and
 * key signatures of its neighbours that sent keys (O(degree), not O(n)). */
static int build_keys(sa_round *r, int j, uint8_t **buf, size_t *len)
{
	Fedlora__SaDown d = FEDLORA__SA_DOWN__INIT;
	ProtobufCBinaryData c[256], s[256], g[256], id[256];
	uint32_t from[256];
	int nb[256], k = 0, m = 0, rv;
	_Static_assert(PRIV_SA_MAX_DEGREE <= 256, "neighbour buffers");
	if ((rv = priv_sa_neighbours(&r->p, j, nb, &k)) != 0)
		return rv;
	for (int q = 0; q < k; q++) {
		const sa_member *mi = &r->m[nb[q]];
		if (mi->done < P_KEYS)
			continue;
		from[m] = (uint32_t)nb[q];
		c[m] = (ProtobufCBinaryData){32, (uint8_t *)mi->c_pk};
		s[m] = (ProtobufCBinaryData){32, (uint8_t *)mi->s_pk};
		g[m] = (ProtobufCBinaryData){PRIV_SA_SIG_BYTES, (uint8_t *)mi->key_sig};
		id[m] = (ProtobufCBinaryData){32, r->id_pk[nb[q]]};
		m++;
	}
	d.phase = 1;
	d.you = (uint32_t)j;
	d.weight_scale = r->weight_scale;
	d.n_key_from = d.n_c_pk = d.n_s_pk = d.n_key_sigs = d.n_key_id = (size_t)m;
	d.key_from = from;
	d.c_pk = c;
	d.s_pk = s;
	d.key_sigs = g;
	d.key_id = id;
	return seal_down(r, &d, buf, len);
}

static int build_boxes(sa_round *r, int j, uint8_t **buf, size_t *len)
{
	Fedlora__SaDown d = FEDLORA__SA_DOWN__INIT;
	ProtobufCBinaryData *b = calloc((size_t)r->n, sizeof *b);
	uint32_t *from = calloc((size_t)r->n, sizeof *from);
	int rv = FL_ENOMEM, k = 0;
	if (!b || !from)
		goto out;
	for (int i = 0; i < r->n; i++) {
		const sa_member *mi = &r->m[i];
		if (i == j || mi->done < P_SHARES)
			continue;
		for (int q = 0; q < mi->nbox; q++)
			if (mi->to[q] == j) {
				from[k] = (uint32_t)i;
				b[k].data = mi->boxes + (size_t)q * PRIV_SA_BOX_BYTES;
				b[k].len = PRIV_SA_BOX_BYTES;
				k++;
			}
	}
	d.phase = 2;
	d.n_from = d.n_boxes = (size_t)k;
	d.from = from;
	d.boxes = b;
	rv = seal_down(r, &d, buf, len);
out:
	free(b);
	free(from);
	return rv;
}

/* Member j's view: the survivor flags of its neighbours (ascending),
 * bit-packed (PRIV_SA_VIEW_BYTES), its length in bytes into *vlen. */
static void member_view(const sa_round *r, int j, uint8_t view[PRIV_SA_VIEW_MAX_BYTES],
                        size_t *vlen)
{
	int nb[PRIV_SA_MAX_DEGREE], k;
	uint8_t f[PRIV_SA_MAX_DEGREE];
	if (priv_sa_neighbours(&r->p, j, nb, &k) != 0) {
		*vlen = 0;
		return;
	}
	for (int q = 0; q < k; q++)
		f[q] = r->surv[nb[q]];
	priv_sa_view_pack(f, k, view);
	*vlen = PRIV_SA_VIEW_BYTES(k);
}

/* SaDown 3 for client j: its view (O(degree)). */
static int build_view(sa_round *r, int j, uint8_t **buf, size_t *len)
{
	Fedlora__SaDown d = FEDLORA__SA_DOWN__INIT;
	uint8_t view[PRIV_SA_VIEW_MAX_BYTES];
	size_t vlen;
	member_view(r, j, view, &vlen);
	d.phase = 3;
	d.view.data = view;
	d.view.len = vlen;
	return seal_down(r, &d, buf, len);
}

/* SaDown 4 for client j: the signed views of the signers in its ring
 * window, the members within degree positions (O(degree), not O(n)); each
 * verified on arrival. Identity keys only of signers that are not j's
 * neighbours. */
static int build_unmask(sa_round *r, int j, uint8_t **buf, size_t *len)
{
	Fedlora__SaDown d = FEDLORA__SA_DOWN__INIT;
	int w[2 * PRIV_SA_MAX_DEGREE + 1], nw = 0, k = 0, rv;
	uint32_t *signer = NULL;
	ProtobufCBinaryData *sigs = NULL, *views = NULL, *ids = NULL;
	uint8_t *vbuf = NULL;
	if ((rv = priv_sa_window(&r->p, j, w, &nw)) != 0)
		return rv;
	signer = calloc((size_t)nw + 1, sizeof *signer);
	sigs = calloc((size_t)nw + 1, sizeof *sigs);
	views = calloc((size_t)nw + 1, sizeof *views);
	ids = calloc((size_t)nw + 1, sizeof *ids);
	vbuf = malloc(((size_t)nw + 1) * PRIV_SA_VIEW_MAX_BYTES);
	rv = FL_ENOMEM;
	if (!signer || !sigs || !views || !ids || !vbuf)
		goto out;
	for (int q = 0; q < nw; q++) {
		int i = w[q];
		size_t vlen;
		if (r->m[i].done < P_SIGN)
			continue;
		member_view(r, i, vbuf + (size_t)k * PRIV_SA_VIEW_MAX_BYTES, &vlen);
		signer[k] = (uint32_t)i;
		sigs[k] = (ProtobufCBinaryData){PRIV_SA_SIG_BYTES, r->m[i].sig};
		views[k] = (ProtobufCBinaryData){vlen, vbuf + (size_t)k * PRIV_SA_VIEW_MAX_BYTES};
		/* j knows its neighbours' identities from its key list */
		ids[k] = priv_sa_is_neighbour(&r->p, j, i) ? (ProtobufCBinaryData){0, NULL}
		                                           : (ProtobufCBinaryData){32, r->id_pk[i]};
		k++;
	}
	d.phase = 4;
	d.n_signer = d.n_sigs = d.n_views = d.n_signer_id = (size_t)k;
	d.signer = signer;
	d.sigs = sigs;
	d.views = views;
	d.signer_id = ids;
	rv = seal_down(r, &d, buf, len);
out:
	free(signer);
	free(sigs);
	free(views);
	free(ids);
	free(vbuf);
	return rv;
}

/* Would every signer's unmask check pass? The first member whose status
 * (survivor, or dropped after sharing with a signing neighbour) is
 * confirmed by fewer than degree/2 + 1 signed views of its neighbours, or
 * -1. Honest clients refuse to reveal shares of such a member, so the
 * attempt cannot finish. */
static int unconfirmed_member(const sa_round *r, int *signers)
{
	int nb[PRIV_SA_MAX_DEGREE], k, q = priv_sa_consistency_quorum(&r->p);
	for (int i = 0; i < r->n; i++) {
		int need = r->surv[i], cnt = 0;
		if (r->m[i].done < P_SHARES || priv_sa_neighbours(&r->p, i, nb, &k) != 0)
			continue;
		for (int e = 0; e < k; e++) {
			need |= r->m[nb[e]].done >= P_SIGN;
			cnt += r->m[nb[e]].done >= P_SIGN;
		}
		if (need && cnt < q) {
			*signers = cnt;
			return i;
		}
	}
	return -1;
}

int sa_round_down(sa_round *r, int reg, uint32_t want, uint8_t **buf, size_t *len, char *why,
                  size_t whylen)
{
	int i = member_of(r, reg), rv;
	*buf = NULL;
	*len = 0;
	if (i < 0 || want < 1 || want > 4) {
		snprintf(why, whylen, "not a member of this secure round (or phase %u unknown)",
		         want);
		return FL_ESTALE;
	}
	if (r->result == SA_ABORTED) {
		snprintf(why, whylen, "the secure round was aborted: %s", r->why);
		return FL_ESTALE;
	}
	/* SaDown `want` opens with phase want + 1 */
	if (r->phase < (int)want + 1)
		return 1;
	/* the client must have uploaded phase `want` to get its answer */
	if (r->m[i].done < (int)want) {
		snprintf(why, whylen, "dropped from the secure round: no %s in time",
		         phase_names[want]);
		return FL_ESTALE;
	}
	switch (want) {
	case 1:
		rv = build_keys(r, i, buf, len);
		break;
	case 2:
		rv = build_boxes(r, i, buf, len);
		break;
	case 3:
		rv = build_view(r, i, buf, len);
		break;
	default:
		rv = build_unmask(r, i, buf, len);
		break;
	}
	if (rv == 0)
		r->bytes_down += *len;
	return rv;
}

/* ---------------------------------------------------------------- up */

#define UPFAIL(code, ...)                                                                          \
	do {                                                                                       \
		snprintf(why, whylen, __VA_ARGS__);                                                \
		return code;                                                                       \
	} while (0)

int sa_round_up(sa_round *r, int reg, const Fedlora__SaUp *u, char *why, size_t whylen)
{
	int i = member_of(r, reg), rv;
	sa_member *m;

	if (i < 0)
		UPFAIL(FL_ESTATE, "not selected for this secure round");
	m = &r->m[i];
	if (u->session.len != sizeof r->session ||
	    sodium_memcmp(u->session.data, r->session, sizeof r->session) != 0)
		UPFAIL(FL_ESTALE, "session of another attempt");
	if (u->phase < P_KEYS || u->phase > P_UNMASK)
		UPFAIL(FL_EFORMAT, "unknown phase %u", u->phase);
	if (r->result == SA_ABORTED)
		UPFAIL(FL_ESTALE, "the secure round was aborted: %s", r->why);
	if ((int)u->phase != r->phase)
		UPFAIL(FL_ESTALE, "%s phase is %s", phase_names[u->phase],
		       (int)u->phase < r->phase ? "closed" : "not open");
	if (m->done >= (int)u->phase)
		UPFAIL(FL_ESTATE, "%s already received from this client", phase_names[u->phase]);
	if (m->done != (int)u->phase - 1)
		UPFAIL(FL_ESTATE, "missed an earlier phase");
	switch (u->phase) {
	case P_KEYS:
		if (u->c_pk.len != 32 || u->s_pk.len != 32)
			UPFAIL(FL_EFORMAT, "keys must be 32 bytes");
		if (u->key_sig.len != PRIV_SA_SIG_BYTES)
			UPFAIL(FL_EFORMAT, "key signature must be %d bytes", PRIV_SA_SIG_BYTES);
		/* neighbours check it too; refusing here keeps a bad one from
		 * costing every neighbour its round */
		if (priv_sa_keys_verify(&r->p, r->session, u->c_pk.data, u->s_pk.data, r->id_pk[i],
		                        u->key_sig.data) != 0)
			UPFAIL(FL_ESIG, "key signature does not verify against member %d's key", i);
		if (u->num_samples <= 0 || u->num_samples > (int64_t)1 << 40)
			UPFAIL(FL_EFORMAT, "num_samples out of range");
		m->num_samples = (double)u->num_samples;
		if ((rv = priv_sa_server_set_keys(r->srv, i, u->c_pk.data, u->s_pk.data)) != 0)
			UPFAIL(rv, "keys refused: %s", fl_strerror(rv));
		memcpy(m->c_pk, u->c_pk.data, 32);
		memcpy(m->s_pk, u->s_pk.data, 32);
		memcpy(m->key_sig, u->key_sig.data, PRIV_SA_SIG_BYTES);
		r->nkeys++;
		break;
	case P_SHARES: {
		uint8_t *seen = calloc((size_t)r->n, 1);
		if (!seen)
			return FL_ENOMEM;
		rv = 0;
		if (u->n_to != u->n_boxes || u->n_to > (size_t)r->p.degree)
			rv = FL_EFORMAT;
		for (size_t q = 0; !rv && q < u->n_to; q++) {
			uint32_t j = u->to[q];
			if (u->boxes[q].len != PRIV_SA_BOX_BYTES || j >= (uint32_t)r->n ||
			    (int)j == i || seen[j] || r->m[j].done < P_KEYS ||
			    !priv_sa_is_neighbour(&r->p, i, (int)j))
				rv = FL_EFORMAT;
			else
				seen[j] = 1;
		}
		free(seen);
		if (rv)
			UPFAIL(rv, "share boxes: wrong count, size or recipient");
		m->to = malloc((u->n_to + 1) * sizeof *m->to);
		m->boxes = malloc((u->n_to + 1) * PRIV_SA_BOX_BYTES);
		if (!m->to || !m->boxes)
			return FL_ENOMEM;
		for (size_t q = 0; q < u->n_to; q++) {
			m->to[q] = (int)u->to[q];
			memcpy(m->boxes + q * PRIV_SA_BOX_BYTES, u->boxes[q].data,
			       PRIV_SA_BOX_BYTES);
		}
		m->nbox = (int)u->n_to;
		r->nshares++;
		break;
	}
	case P_MASKED: {
		const Fedlora__TrainMetrics *tm = u->metrics;
		if (u->n_values != r->len + 1)
			UPFAIL(FL_ESHAPE, "masked vector has %zu values, expected %zu", u->n_values,
			       r->len + 1);
		if ((double)u->num_samples != m->num_samples)
			UPFAIL(FL_EFORMAT, "num_samples differs from the keys phase");
		if (!tm || !isfinite(tm->train_loss) || !isfinite(tm->eval_before) ||
		    !isfinite(tm->eval_after) || !(tm->epsilon >= 0) || !(tm->delta >= 0))
			UPFAIL(FL_ENONFINITE, "train metrics missing or not finite");
		if (u->clipped > r->len + 1)
			UPFAIL(FL_EFORMAT, "clipped count out of range");
		if ((rv = priv_sa_server_add(r->srv, i, u->values)) != 0)
			UPFAIL(rv, "masked vector refused: %s", fl_strerror(rv));
		m->train_loss = tm->train_loss;
		m->eval_before = tm->eval_before;
		m->eval_after = tm->eval_after;
		m->eps = tm->epsilon;
		m->clipped = u->clipped;
		break;
	}
	case P_SIGN: {
		uint8_t view[PRIV_SA_VIEW_MAX_BYTES];
		size_t vlen;
		if (!r->surv[i])
			UPFAIL(FL_ESTATE, "not a survivor");
		if (u->sig.len != PRIV_SA_SIG_BYTES)
			UPFAIL(FL_EFORMAT, "signature must be %d bytes", PRIV_SA_SIG_BYTES);
		/* only signatures that verify are forwarded (build_unmask); the
		 * signed bytes are the packed view this coordinator sent */
		member_view(r, i, view, &vlen);
		if (priv_sa_view_verify(&r->p, i, view, vlen, r->id_pk[i], u->sig.data) != 0)
			UPFAIL(FL_ESIG, "signature over the view does not verify");
		memcpy(m->sig, u->sig.data, PRIV_SA_SIG_BYTES);
		break;
	}
	case P_UNMASK:
		if (u->n_reveals > (size_t)r->p.degree)
			UPFAIL(FL_EFORMAT, "more reveals than neighbours");
		if (r->nrev + u->n_reveals > r->rev_cap) {
			size_t cap = r->rev_cap ? r->rev_cap * 2 : 64;
			while (cap < r->nrev + u->n_reveals)
				cap *= 2;
			priv_sa_reveal *nr = calloc(cap, sizeof *nr);
			if (!nr)
				return FL_ENOMEM;
			if (r->rev) {
				memcpy(nr, r->rev, r->nrev * sizeof *nr);
				sodium_memzero(r->rev, r->rev_cap * sizeof *nr);
				free(r->rev);
			}
			r->rev = nr;
			r->rev_cap = cap;
		}
		for (size_t q = 0; q < u->n_reveals; q++) {
			const Fedlora__SaReveal *v = u->reveals[q];
			if (!v || v->owner >= (uint32_t)r->n || v->kind > 1 ||
			    v->share.len != PRIV_SA_SHARE_BYTES)
				UPFAIL(FL_EFORMAT, "reveal %zu malformed", q);
			/* b shares only of survivors, s shares only of dropped ones */
			if ((v->kind == 0) != (r->surv[v->owner] != 0))
				UPFAIL(FL_EFORMAT, "reveal %zu of the wrong kind", q);
		}
		for (size_t q = 0; q < u->n_reveals; q++) {
			priv_sa_reveal *d = &r->rev[r->nrev++];
			d->owner = (int32_t)u->reveals[q]->owner;
			d->kind = (uint8_t)u->reveals[q]->kind;
			memcpy(d->share, u->reveals[q]->share.data, PRIV_SA_SHARE_BYTES);
		}
		break;
	}
	m->done = (int)u->phase;
	return 0;
}

/* ---------------------------------------------------------------- engine */

static int count_done(const sa_round *r, int phase)
{
	int k = 0;
	for (int i = 0; i < r->n; i++)
		k += r->m[i].done >= phase;
	return k;
}

static int abort_round(sa_round *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int abort_round(sa_round *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof r->why, fmt, ap);
	va_end(ap);
	r->result = SA_ABORTED;
	return SA_ABORTED;
}

int sa_round_tick(sa_round *r, double now)
{
	int expect, got, rv;

	if (r->result != SA_RUNNING)
		return r->result;
	/* who is expected in the current phase: those who did the previous one
	 * (survivors for signatures, signers for reveals) */
	expect = r->phase == P_KEYS ? r->n : count_done(r, r->phase - 1);
	if (r->phase == P_SIGN)
		expect = r->nsurv;
	got = count_done(r, r->phase);
	if (got < expect && now < r->deadline)
		return SA_RUNNING;
	switch (r->phase) {
	case P_KEYS:
		if (got < r->p.min_survivors)
			return abort_round(
			    r, "keys from %d of %d clients, fewer than min_survivors %d", got, r->n,
			    r->p.min_survivors);
		fix_weight_scale(r);
		break;
	case P_SHARES:
		if (got < r->p.min_survivors)
			return abort_round(r,
			                   "share boxes from %d of %d clients, fewer than "
			                   "min_survivors %d",
			                   got, r->n, r->p.min_survivors);
		/* client j masks with i iff it gets i's box: both sent shares */
		for (int i = 0; i < r->n; i++)
			for (int q = 0; r->m[i].done >= P_SHARES && q < r->m[i].nbox; q++) {
				int j = r->m[i].to[q];
				if (r->m[j].done >= P_SHARES)
					priv_sa_server_note_share(r->srv, i, j);
			}
		break;
	case P_MASKED: {
		const uint8_t *s = priv_sa_server_survivors(r->srv);
		memcpy(r->surv, s, (size_t)r->n);
		r->nsurv = got;
		if (got < r->p.min_survivors)
			return abort_round(r,
			                   "masked vectors from %d of %d clients, fewer than "
			                   "min_survivors %d",
			                   got, r->n, r->p.min_survivors);
		break;
	}
	case P_SIGN: {
		/* clients refuse to unmask unless a majority of each vouched-for
		 * member's neighbours signed views that agree on its status */
		int cnt = 0, bad = unconfirmed_member(r, &cnt);
		if (bad >= 0)
			return abort_round(
			    r,
			    "member %d's status is confirmed by %d signed views of "
			    "its neighbours, below the majority (%d) clients require",
			    bad, cnt, priv_sa_consistency_quorum(&r->p));
		break;
	}
	case P_UNMASK: {
		int nsurv = 0;
		char why[200] = "";
		rv =
		    priv_sa_server_finish(r->srv, r->rev, r->nrev, r->sum, &nsurv, why, sizeof why);
		if (rv)
			return abort_round(r, "unmasking failed (%s, reveals from %d clients): %s",
			                   fl_reason_name(rv), got, why);
		r->nsurv = nsurv;
		r->phase = P_END;
		r->result = SA_FINISHED;
		return SA_FINISHED;
	}
	}
	r->phase++;
	r->deadline = now + r->phase_timeout;
	return SA_ADVANCED;
}

/* ---------------------------------------------------------------- result */

int sa_round_apply(sa_round *r, lora_adapter *next, priv_noise *noise, sa_round_result *res)
{
	double w, div;

	memset(res, 0, sizeof *res);
	if (r->result != SA_FINISHED)
		return FL_ESTATE;
	w = r->sum[r->len];
	if (r->dp_clip > 0) {
		/* DP-FedAvg: N(0, (sigma S)^2) per coordinate on the unmasked sum */
		double sd = r->dp_noise * r->dp_clip, *z = malloc(r->len * sizeof *z);
		if (!z)
			return FL_ENOMEM;
		if (sd > 0) {
			priv_noise_normal(noise, z, r->len);
			for (size_t k = 0; k < r->len; k++)
				r->sum[k] += sd * z[k];
		}
		free(z);
		div = r->dp_expected;
	} else {
		if (!(w > 0))
			return FL_EQUORUM;
		div = w;
	}
	for (size_t k = 0; k < r->len; k++)
		next->params[r->off + k] =
		    (float)((double)r->global->params[r->off + k] + r->sum[k] / div);
	for (int i = 0; i < r->n; i++) {
		const sa_member *m = &r->m[i];
		if (!r->surv[i]) {
			res->dropped += m->done >= P_KEYS;
			continue;
		}
		res->survivors++;
		res->dropped += m->done < P_UNMASK;
		res->w_sum += m->num_samples;
		res->train_sum += m->num_samples * m->train_loss;
		res->eval_after_sum += m->num_samples * m->eval_after;
		res->eval_before_sum += m->num_samples * m->eval_before;
		if (m->eps > res->client_eps_max)
			res->client_eps_max = m->eps;
		res->clipped += m->clipped;
	}
	res->bytes_up = r->bytes_up;
	res->bytes_down = r->bytes_down;
	return 0;
}

static void short_hex(const uint8_t pk[32], char out[13])
{
	char hex[65];
	sodium_bin2hex(hex, sizeof hex, pk, 32);
	memcpy(out, hex, 12);
	out[12] = 0;
}

int sa_round_metrics_json(const sa_round *r, cJSON *o)
{
	cJSON *surv = cJSON_CreateArray(), *drop = cJSON_CreateArray(), *p = cJSON_CreateObject();
	int ok = surv && drop && p;
	/* survivors: masked vector in the sum; dropped: joined (sent keys) but
	 * did not send its reveals, with the last phase it did send */
	for (int i = 0; ok && i < r->n; i++) {
		char id[13];
		short_hex(r->id_pk[i], id);
		if (r->surv[i])
			ok = cJSON_AddItemToArray(surv, cJSON_CreateString(id));
		if (r->m[i].done >= P_KEYS && r->m[i].done < P_UNMASK) {
			cJSON *d = cJSON_CreateObject();
			ok = d && cJSON_AddItemToArray(drop, d) &&
			     cJSON_AddStringToObject(d, "id", id) &&
			     cJSON_AddStringToObject(d, "after", phase_names[r->m[i].done]);
		}
	}
	if (ok) {
		ok = cJSON_AddNumberToObject(p, "n", r->p.n) &&
		     cJSON_AddNumberToObject(p, "degree", r->p.degree) &&
		     cJSON_AddNumberToObject(p, "threshold", r->p.threshold) &&
		     cJSON_AddNumberToObject(p, "min_survivors", r->p.min_survivors) &&
		     cJSON_AddNumberToObject(p, "clip", r->p.clip) &&
		     cJSON_AddNumberToObject(p, "frac_bits", r->p.frac_bits) &&
		     cJSON_AddNumberToObject(p, "keys", r->nkeys) &&
		     cJSON_AddNumberToObject(p, "shares", r->nshares);
	}
	if (!ok || !cJSON_AddItemToObject(o, "sa_survivors", surv)) {
		cJSON_Delete(surv);
		cJSON_Delete(drop);
		cJSON_Delete(p);
		return FL_ENOMEM;
	}
	if (!cJSON_AddItemToObject(o, "sa_dropped", drop)) {
		cJSON_Delete(drop);
		cJSON_Delete(p);
		return FL_ENOMEM;
	}
	if (!cJSON_AddItemToObject(o, "sa_params", p)) {
		cJSON_Delete(p);
		return FL_ENOMEM;
	}
	return 0;
}
