/*
 * tests/secagg_proto_test.c — the secure aggregation protocol in memory:
 * coordinator/secagg_round.c and client/secagg_client.c exchanging the
 * SaUp/SaDown messages (SaDown sealed and opened as on the wire). A whole
 * round gives the weighted mean of the clients' updates; a client that
 * vanishes after masking is recovered; an honest client refuses an unmask
 * request that would give the coordinator both secrets of one client
 * (neighbours told different statuses of one client, or too few signed
 * views); replayed, cross-round, cross-attempt and out-of-phase messages are refused on both
 * sides; too few key senders abort without anything decoded. Round keys
 * are signed by the members: a substituted neighbour key, keys signed for
 * another round or attempt, a non-neighbour's keys are refused by the
 * client, a bad key signature by the coordinator, and SaDown 1 carries only
 * the neighbours' keys (a 24-client round with a sparse graph). Views:
 * neighbours told different statuses of one client fail the consistency
 * check (no mask key leaks), a Task with a graph_seed other than the derived
 * one, positions that disagree with the ring keys and fewer signed neighbour
 * keys than the threshold are refused. Views travel bit-packed: a view of
 * the wrong length or with a padding bit set is refused with the reason, in
 * SaDown 3 and in the unmask request.
 */
#include <math.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/secagg_client.h"
#include "coordinator/secagg_round.h"
#include "core/wire.h"
#include "privacy/secagg.h"
#include "privacy/sign.h"
#include "tests/test.h"

#define N   6
#define RUN "run-proto-test"

typedef struct fixture {
	priv_key ck, k[N];
	lora_adapter *global, *trained[N];
	sa_round *r;
	sa_client *c[N];
	Fedlora__Task t;
	Fedlora__TrainMetrics met;
	int reg[N];
	char why[300];
} fixture;

/* Permutes keys and registry ids so that entry i is the member at ring
 * position i of round r. */
static void ring_sort(const sa_round *r, priv_key *k, int *reg, int n)
{
	priv_key *k2 = malloc((size_t)n * sizeof *k2);
	int *reg2 = malloc((size_t)n * sizeof *reg2);
	for (int x = 0; x < n; x++) {
		int i = sa_round_member(r, reg[x]);
		CHECK(i >= 0 && i < n);
		if (i < 0 || i >= n)
			break;
		k2[i] = k[x];
		reg2[i] = reg[x];
	}
	memcpy(k, k2, (size_t)n * sizeof *k);
	memcpy(reg, reg2, (size_t)n * sizeof *reg);
	sodium_memzero(k2, (size_t)n * sizeof *k2);
	free(k2);
	free(reg2);
}

static void fx_open(fixture *f, int round)
{
	static const char *names[] = {"l0", "l1"};
	static const int in[] = {5, 3}, outd[] = {4, 6};
	uint8_t(*pk)[32] = malloc(N * 32);
	sa_round_opts o;

	memset(f, 0, sizeof *f);
	CHECK_RC(priv_key_generate(&f->ck));
	for (int i = 0; i < N; i++) {
		CHECK_RC(priv_key_generate(&f->k[i]));
		memcpy(pk[i], f->k[i].pk, 32);
		f->reg[i] = 100 + i;
	}
	CHECK_RC(lora_adapter_new(&f->global, 2, names, in, outd, 2, 4.0f));
	lora_adapter_init(f->global, 7);
	for (size_t j = 0; j < f->global->n_b; j++)
		f->global->params[f->global->n_a + j] = 0.01f * (float)(j % 5);
	srand(11);
	for (int i = 0; i < N; i++) {
		CHECK_RC(lora_adapter_clone(&f->trained[i], f->global));
		for (size_t j = 0; j < f->global->n_a + f->global->n_b; j++)
			f->trained[i]->params[j] += (float)(0.2 * rand() / RAND_MAX - 0.1);
	}
	memset(&o, 0, sizeof o);
	o.run_id = RUN;
	o.round = round;
	o.attempt = 1;
	o.n = N;
	o.reg = f->reg;
	o.id_pk = (const uint8_t(*)[32])pk;
	o.strat = LORA_FEDIT;
	o.global = f->global;
	o.keys_timeout = 10;
	o.phase_timeout = 5;
	o.key = &f->ck;
	CHECK_RC(sa_round_new(&f->r, &o, 0.0, f->why, sizeof f->why));
	free(pk);
	/* members are indexed by ring position: keep f's arrays in that order */
	ring_sort(f->r, f->k, f->reg, N);
	fedlora__task__init(&f->t);
	f->t.run_id = RUN;
	f->t.round = (uint64_t)round;
	f->t.secagg = sa_round_task_params(f->r);
	f->t.deadline_ms = 10000;
	fedlora__train_metrics__init(&f->met);
	for (int i = 0; i < N; i++) {
		CHECK_RC(sa_client_new(&f->c[i], &f->t, RUN, &f->k[i], f->why, sizeof f->why));
		CHECK(sa_client_index(f->c[i]) == -1); /* told with the key list */
	}
}

static void fx_close(fixture *f)
{
	sa_round_free(f->r);
	lora_adapter_free(f->global);
	for (int i = 0; i < N; i++) {
		sa_client_free(f->c[i]);
		lora_adapter_free(f->trained[i]);
	}
}

/* The SaDown of phase want for client i, sealed by the round and opened. */
static int down(fixture *f, int i, uint32_t want, fl_wire_msg *m)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rv = sa_round_down(f->r, f->reg[i], want, &buf, &len, f->why, sizeof f->why);
	memset(m, 0, sizeof *m);
	if (rv == 0) {
		rv = fl_wire_open(buf, len, (size_t)1 << 24, f->ck.pk, m);
		if (rv == 0 && m->type != FL_MSG_SA_DOWN)
			rv = FL_EFORMAT;
	}
	free(buf);
	return rv;
}

#define SAD(m) ((const Fedlora__SaDown *)(m).body)

static int64_t samples(int i)
{
	return 10 * (i + 1);
}

/* Keys and shares of every client not in skip_keys; the box relay. */
static void run_keys_shares(fixture *f, const int *skip_keys, double t)
{
	Fedlora__SaUp up;
	fl_wire_msg m;
	for (int i = 0; i < N; i++) {
		if (skip_keys && skip_keys[i])
			continue;
		CHECK_RC(sa_client_keys(f->c[i], samples(i), &up));
		CHECK_RC(sa_round_up(f->r, f->reg[i], &up, f->why, sizeof f->why));
	}
	CHECK(sa_round_tick(f->r, t) == SA_ADVANCED);
	for (int i = 0; i < N; i++) {
		if (skip_keys && skip_keys[i])
			continue;
		CHECK_RC(down(f, i, 1, &m));
		CHECK_RC(sa_client_on_keylist(f->c[i], SAD(m), &up));
		CHECK(sa_client_index(f->c[i]) == i);
		CHECK_RC(sa_round_up(f->r, f->reg[i], &up, f->why, sizeof f->why));
		fl_wire_msg_fini(&m);
	}
	CHECK(sa_round_tick(f->r, t) == SA_ADVANCED);
	for (int i = 0; i < N; i++) {
		if (skip_keys && skip_keys[i])
			continue;
		CHECK_RC(down(f, i, 2, &m));
		CHECK_RC(sa_client_on_boxes(f->c[i], SAD(m)));
		fl_wire_msg_fini(&m);
	}
}

static void mask_one(fixture *f, int i)
{
	Fedlora__SaUp up;
	float *x = NULL;
	size_t len = 0;
	CHECK_RC(
	    sa_client_vector(f->global, f->trained[i], 1, sa_client_weight(f->c[i]), 0, &x, &len));
	CHECK_RC(sa_client_mask(f->c[i], x, len, &up, NULL));
	up.num_samples = samples(i);
	up.metrics = &f->met;
	CHECK_RC(sa_round_up(f->r, f->reg[i], &up, f->why, sizeof f->why));
	free(x);
}

/* Keys and shares of every client, every client masks, and the round moves
 * to the view phase. */
static void all_masked(fixture *f)
{
	run_keys_shares(f, NULL, 1);
	for (int i = 0; i < N; i++)
		mask_one(f, i);
	CHECK(sa_round_tick(f->r, 2) == SA_ADVANCED);
}

/* signatures then reveals of the clients in `who` */
static void sign_reveal(fixture *f, const int *who, double t)
{
	Fedlora__SaUp up;
	fl_wire_msg m;
	for (int i = 0; i < N; i++)
		if (who[i]) {
			CHECK_RC(down(f, i, 3, &m));
			CHECK_RC(sa_client_on_survivors(f->c[i], SAD(m), &up));
			CHECK_RC(sa_round_up(f->r, f->reg[i], &up, f->why, sizeof f->why));
			fl_wire_msg_fini(&m);
		}
	CHECK(sa_round_tick(f->r, t) == SA_ADVANCED);
	for (int i = 0; i < N; i++)
		if (who[i]) {
			CHECK_RC(down(f, i, 4, &m));
			CHECK_RC(sa_client_on_unmask(f->c[i], SAD(m), &up));
			CHECK_RC(sa_round_up(f->r, f->reg[i], &up, f->why, sizeof f->why));
			fl_wire_msg_fini(&m);
		}
}

/* next must be the num_samples-weighted mean of the clients in `in` */
static void check_mean(fixture *f, const int *in)
{
	lora_adapter *next = NULL;
	sa_round_result res;
	double err = 0;
	CHECK_RC(lora_adapter_clone(&next, f->global));
	CHECK_RC(sa_round_apply(f->r, next, NULL, &res));
	for (size_t j = 0; j < f->global->n_a + f->global->n_b; j++) {
		double num = 0, den = 0;
		for (int i = 0; i < N; i++)
			if (in[i]) {
				num += (double)samples(i) * f->trained[i]->params[j];
				den += (double)samples(i);
			}
		double e = fabs(next->params[j] - num / den);
		if (e > err)
			err = e;
	}
	CHECK(err < 1e-5);
	lora_adapter_free(next);
}

static void test_full_round(void)
{
	fixture f;
	int all[N] = {1, 1, 1, 1, 1, 1};
	fx_open(&f, 3);
	all_masked(&f);
	sign_reveal(&f, all, 3);
	CHECK(sa_round_tick(f.r, 4) == SA_FINISHED);
	check_mean(&f, all);
	fx_close(&f);
}

static void test_dropout_after_mask(void)
{
	fixture f;
	int all[N] = {1, 1, 1, 1, 1, 1}, live[N] = {1, 1, 1, 1, 1, 0};
	fx_open(&f, 3);
	all_masked(&f);
	/* client 5 vanishes: its signature phase times out */
	{
		Fedlora__SaUp up;
		fl_wire_msg m;
		for (int i = 0; i < 5; i++) {
			CHECK_RC(down(&f, i, 3, &m));
			CHECK_RC(sa_client_on_survivors(f.c[i], SAD(m), &up));
			CHECK_RC(sa_round_up(f.r, f.reg[i], &up, f.why, sizeof f.why));
			fl_wire_msg_fini(&m);
		}
		CHECK(sa_round_tick(f.r, 3) == SA_RUNNING); /* still waiting for 5 */
		CHECK(sa_round_tick(f.r, 2 + 5 + 0.1) == SA_ADVANCED);
		for (int i = 0; i < 5; i++) {
			CHECK_RC(down(&f, i, 4, &m));
			CHECK_RC(sa_client_on_unmask(f.c[i], SAD(m), &up));
			CHECK_RC(sa_round_up(f.r, f.reg[i], &up, f.why, sizeof f.why));
			fl_wire_msg_fini(&m);
		}
		/* the vanished client is told it is out */
		CHECK(down(&f, 5, 4, &m) == FL_ESTALE);
	}
	(void)live;
	CHECK(sa_round_tick(f.r, 8) == SA_FINISHED);
	check_mean(&f, all); /* its vector arrived: it is in the sum */
	fx_close(&f);
}

/* Signed views as a coordinator could collect them: client i signs the
 * view `view[i]` it was given (not necessarily the round's). */
#define VB PRIV_SA_VIEW_BYTES(N - 1) /* a packed view: N - 1 flags */

typedef struct views {
	uint8_t v[N][VB], sig[N][PRIV_SA_SIG_BYTES];
	int ok[N];
	uint32_t signer[N];
	ProtobufCBinaryData sigs[N], vs[N], ids[N];
} views;

/* Client i's view with flag f[j] for each neighbour j (complete graph),
 * packed (VB bytes). */
static void view_of(int i, const uint8_t *f, uint8_t *v)
{
	uint8_t fl[N];
	for (int j = 0, q = 0; j < N; j++)
		if (j != i)
			fl[q++] = f[j];
	priv_sa_view_pack(fl, N - 1, v);
}

/* Client i signs the SaDown 3 of the round with its view replaced by v. */
static int sign_as(fixture *f, int i, const uint8_t *v, views *w)
{
	Fedlora__SaUp up;
	fl_wire_msg m;
	int rv;
	CHECK_RC(down(f, i, 3, &m));
	{
		Fedlora__SaDown d = *SAD(m);
		d.view.data = (uint8_t *)v;
		d.view.len = VB;
		rv = sa_client_on_survivors(f->c[i], &d, &up);
		if (rv == 0) {
			memcpy(w->v[i], v, VB);
			memcpy(w->sig[i], up.sig.data, PRIV_SA_SIG_BYTES);
			w->ok[i] = 1;
		}
	}
	fl_wire_msg_fini(&m);
	return rv;
}

/* An unmask request (SaDown 4 of f's attempt) carrying the views in w. */
static void unmask_of(fixture *f, views *w, Fedlora__SaDown *d)
{
	size_t k = 0;
	fedlora__sa_down__init(d);
	d->run_id = RUN;
	d->round = f->t.round;
	d->session = f->t.secagg->session;
	d->phase = 4;
	for (int i = 0; i < N; i++)
		if (w->ok[i]) {
			w->signer[k] = (uint32_t)i;
			w->sigs[k] = (ProtobufCBinaryData){PRIV_SA_SIG_BYTES, w->sig[i]};
			w->vs[k] = (ProtobufCBinaryData){VB, w->v[i]};
			w->ids[k] = (ProtobufCBinaryData){32, f->k[i].pk};
			k++;
		}
	d->n_signer = d->n_sigs = d->n_views = d->n_signer_id = k;
	d->signer = w->signer;
	d->sigs = w->sigs;
	d->views = w->vs;
	d->signer_id = w->ids;
}

/* A coordinator that wants both secrets of client 5, which masked: it
 * tells clients 0 and 1 that 5 dropped (to get 5's mask key from them) and
 * 2, 3 and 4 that 5 survived (5's self-mask seed from them). The views of
 * 5's neighbours differ, so the consistency check fails for the minority:
 * 0 and 1 refuse, naming 5, and the coordinator gets 5's self-mask shares
 * only. A client that signed one view refuses to sign another. */
static void test_both_shares_refused(void)
{
	fixture f;
	Fedlora__SaUp up;
	Fedlora__SaDown d;
	views w;
	uint8_t s_drop[N] = {1, 1, 1, 1, 1, 0}, s_all[N] = {1, 1, 1, 1, 1, 1}, v[N - 1];
	memset(&w, 0, sizeof w);
	fx_open(&f, 4);
	all_masked(&f);
	for (int i = 0; i < N; i++) {
		view_of(i, i < 2 ? s_drop : s_all, v);
		CHECK_RC(sign_as(&f, i, v, &w));
	}
	/* a second, different view: refused by a client that signed one */
	view_of(0, s_all, v);
	CHECK(sign_as(&f, 0, v, &w) == FL_ESTATE);
	unmask_of(&f, &w, &d);
	CHECK(sa_client_on_unmask(f.c[0], &d, &up) == FL_ESIG);
	CHECK(strstr(sa_client_why(f.c[0]), "member 5") != NULL);
	CHECK(sa_client_on_unmask(f.c[1], &d, &up) == FL_ESIG);
	for (int i = 2; i < N; i++) {
		CHECK_RC(sa_client_on_unmask(f.c[i], &d, &up));
		for (size_t q = 0; q < up.n_reveals; q++)
			CHECK(up.reveals[q]->kind == 0); /* no mask key of anyone */
	}
	fx_close(&f);

	/* minority signatures on the genuine views: refused */
	fx_open(&f, 4);
	memset(&w, 0, sizeof w);
	all_masked(&f);
	for (int i = 0; i < N; i++) {
		view_of(i, s_all, v);
		CHECK_RC(sign_as(&f, i, v, &w));
	}
	w.ok[2] = w.ok[3] = w.ok[4] = w.ok[5] = 0; /* only 0 and 1 forwarded */
	unmask_of(&f, &w, &d);
	CHECK(sa_client_on_unmask(f.c[1], &d, &up) == FL_ESIG);
	fx_close(&f);
}

/* Views travel bit-packed (N - 1 = 5 flags in one byte, bits 5..7 unused):
 * the coordinator sends that form, and a client refuses, with the reason, a
 * view of another length (the old one byte per flag included) or with a
 * padding bit set, before signing anything; it then signs the genuine view.
 * The coordinator takes the signature over the packed view it sent. In the
 * unmask request a signed view of the wrong length or with a padding bit
 * set is refused too. */
static void test_view_encoding_refused(void)
{
	fixture f;
	Fedlora__SaUp up;
	Fedlora__SaDown d;
	fl_wire_msg m;
	views w;
	uint8_t all[N] = {1, 1, 1, 1, 1, 1}, v[VB], flags[N - 1] = {1, 1, 1, 1, 1};
	memset(&w, 0, sizeof w);
	fx_open(&f, 6);
	all_masked(&f);
	/* what the coordinator sends: one byte, the five flags in bits 0..4 */
	CHECK_RC(down(&f, 0, 3, &m));
	CHECK(SAD(m)->view.len == 1 && SAD(m)->view.data[0] == 0x1f);
	{
		Fedlora__SaDown d3 = *SAD(m);
		uint8_t padded = 0x1f | 0x20, two[2] = {0x1f, 0};
		d3.view.data = &padded;
		d3.view.len = 1;
		CHECK(sa_client_on_survivors(f.c[0], &d3, &up) == FL_EFORMAT);
		CHECK(strstr(sa_client_why(f.c[0]), "not canonical") != NULL);
		padded = 0x1f | 0x80;
		CHECK(sa_client_on_survivors(f.c[0], &d3, &up) == FL_EFORMAT);
		CHECK(strstr(sa_client_why(f.c[0]), "unused high bits") != NULL);
		/* one byte per flag, as before, and a packed byte with a zero
		 * byte after it: wrong length */
		d3.view.data = flags;
		d3.view.len = N - 1;
		CHECK(sa_client_on_survivors(f.c[0], &d3, &up) == FL_EFORMAT);
		CHECK(strstr(sa_client_why(f.c[0]), "view of 5 bytes, expected 1") != NULL);
		d3.view.data = two;
		d3.view.len = 2;
		CHECK(sa_client_on_survivors(f.c[0], &d3, &up) == FL_EFORMAT);
		CHECK(strstr(sa_client_why(f.c[0]), "expected 1") != NULL);
		d3.view.len = 0;
		CHECK(sa_client_on_survivors(f.c[0], &d3, &up) == FL_EFORMAT);
	}
	fl_wire_msg_fini(&m);
	/* nothing was signed: each client signs its genuine view */
	for (int i = 0; i < N; i++) {
		view_of(i, all, v);
		CHECK(v[0] == 0x1f);
		CHECK_RC(sign_as(&f, i, v, &w));
	}
	/* the coordinator verifies over the packed view it sent: client 1's
	 * signature (Ed25519 is deterministic: the same one again) goes in */
	{
		Fedlora__SaUp u;
		CHECK_RC(down(&f, 1, 3, &m));
		CHECK_RC(sa_client_on_survivors(f.c[1], SAD(m), &u)); /* the same view again */
		CHECK(memcmp(u.sig.data, w.sig[1], PRIV_SA_SIG_BYTES) == 0);
		CHECK_RC(sa_round_up(f.r, f.reg[1], &u, f.why, sizeof f.why));
		fl_wire_msg_fini(&m);
	}
	/* the unmask request: a padded or resized signed view is refused */
	unmask_of(&f, &w, &d);
	w.v[3][0] |= 0x40;
	CHECK(sa_client_on_unmask(f.c[0], &d, &up) == FL_EFORMAT);
	CHECK(strstr(sa_client_why(f.c[0]), "not canonical") != NULL);
	w.v[3][0] &= 0x1f;
	w.vs[3].len = N - 1;
	w.vs[3].data = flags;
	CHECK(sa_client_on_unmask(f.c[0], &d, &up) == FL_EFORMAT);
	CHECK(strstr(sa_client_why(f.c[0]), "of 5 bytes, expected 1") != NULL);
	/* the genuine views: answered */
	w.vs[3] = (ProtobufCBinaryData){VB, w.v[3]};
	CHECK_RC(sa_client_on_unmask(f.c[0], &d, &up));
	CHECK(up.n_reveals == N - 1);
	fx_close(&f);
}

/* View signatures: the coordinator refuses one that does not verify (or is
 * over another view); a client never counts a forged, repeated or
 * misattributed one, wherever it sits in the list. */
static void test_forged_signature_refused(void)
{
	fixture f;
	Fedlora__SaUp up;
	Fedlora__SaDown d;
	fl_wire_msg m;
	views w;
	uint8_t bad[PRIV_SA_SIG_BYTES];
	memset(&w, 0, sizeof w);
	fx_open(&f, 5);
	all_masked(&f);
	for (int i = 0; i < N; i++) {
		CHECK_RC(down(&f, i, 3, &m));
		CHECK(SAD(m)->view.len == VB);
		CHECK_RC(sa_client_on_survivors(f.c[i], SAD(m), &up));
		memcpy(w.v[i], SAD(m)->view.data, VB);
		memcpy(w.sig[i], up.sig.data, PRIV_SA_SIG_BYTES);
		w.ok[i] = 1;
		if (i == 2) { /* a client's signature with one bit flipped */
			memcpy(bad, up.sig.data, sizeof bad);
			bad[7] ^= 1;
			up.sig.data = bad;
			CHECK(sa_round_up(f.r, f.reg[i], &up, f.why, sizeof f.why) == FL_ESIG);
			CHECK(strstr(f.why, "does not verify") != NULL);
		} else
			CHECK_RC(sa_round_up(f.r, f.reg[i], &up, f.why, sizeof f.why));
		fl_wire_msg_fini(&m);
	}
	CHECK(sa_round_tick(f.r, 3 + 5 + 0.1) == SA_ADVANCED);
	/* the coordinator forwards the verified ones: client 2's is not there */
	CHECK_RC(down(&f, 0, 4, &m));
	CHECK(SAD(m)->n_signer == N - 2 && SAD(m)->n_views == N - 2);
	for (size_t k = 0; k < SAD(m)->n_signer; k++)
		CHECK(SAD(m)->signer[k] != 2 && SAD(m)->signer[k] != 0);
	fl_wire_msg_fini(&m);
	/* client 1 needs 3 of each member's 5 neighbours. Its own status,
	 * with 2's view forged (a flipped byte) and 3's and 4's left out:
	 * confirmed by 0 and 5 only, refused */
	w.ok[3] = w.ok[4] = 0;
	unmask_of(&f, &w, &d);
	w.sig[2][0] ^= 0x80;
	CHECK(sa_client_on_unmask(f.c[1], &d, &up) == FL_ESIG);
	CHECK(strstr(sa_client_why(f.c[1]), "member 1") != NULL);
	/* 0's genuine view repeated in 2's place: does not count twice */
	w.signer[2] = 0; /* entries: 0, 1, 2 -> 0, 5 */
	w.sigs[2] = w.sigs[0];
	w.vs[2] = w.vs[0];
	w.ids[2] = w.ids[0];
	CHECK(sa_client_on_unmask(f.c[1], &d, &up) == FL_ESIG);
	/* 0's genuine view passed off as 2's: does not count */
	w.signer[2] = 2;
	w.ids[2] = (ProtobufCBinaryData){32, f.k[2].pk};
	CHECK(sa_client_on_unmask(f.c[1], &d, &up) == FL_ESIG);
	/* the forged entry ahead of a genuine majority: answered */
	w.sig[2][0] ^= 0x80;
	w.ok[3] = w.ok[4] = 1;
	w.sig[0][3] ^= 0x10; /* 0's forged: 2, 3, 4, 5 still confirm */
	unmask_of(&f, &w, &d);
	CHECK_RC(sa_client_on_unmask(f.c[1], &d, &up));
	CHECK(up.n_reveals > 0);
	fx_close(&f);
}

/* The graph is derived, not chosen: a Task whose graph_seed is not
 * BLAKE2b(run id, round) is refused before anything is sent. */
static void test_graph_seed_refused(void)
{
	fixture f;
	Fedlora__Task t;
	Fedlora__SecAggParams sp;
	uint8_t seed[32];
	sa_client *c = NULL;
	fx_open(&f, 3);
	t = f.t;
	sp = *f.t.secagg;
	memcpy(seed, sp.graph_seed.data, 32);
	seed[31] ^= 1;
	sp.graph_seed.data = seed;
	t.secagg = &sp;
	CHECK(sa_client_new(&c, &t, RUN, &f.k[0], f.why, sizeof f.why) == FL_EFORMAT);
	CHECK(c == NULL && strstr(f.why, "graph_seed") != NULL);
	/* the seed of another round */
	priv_sa_graph_seed(RUN, 4, seed);
	CHECK(sa_client_new(&c, &t, RUN, &f.k[0], f.why, sizeof f.why) == FL_EFORMAT);
	/* the derived one */
	priv_sa_graph_seed(RUN, 3, seed);
	CHECK_RC(sa_client_new(&c, &t, RUN, &f.k[0], f.why, sizeof f.why));
	sa_client_free(c);
	fx_close(&f);
}

static void test_replay_cross_round(void)
{
	fixture f, g;
	Fedlora__SaUp up;
	fl_wire_msg m;
	fx_open(&f, 5);
	fx_open(&g, 6); /* another round (and attempt) */
	CHECK_RC(sa_client_keys(f.c[0], samples(0), &up));
	CHECK_RC(sa_round_up(f.r, f.reg[0], &up, f.why, sizeof f.why));
	/* the same phase twice */
	CHECK(sa_round_up(f.r, f.reg[0], &up, f.why, sizeof f.why) == FL_ESTATE);
	/* another attempt's session */
	CHECK(sa_round_up(g.r, g.reg[0], &up, g.why, sizeof g.why) == FL_ESTALE);
	/* a phase not open yet */
	up.phase = 3;
	CHECK(sa_round_up(f.r, f.reg[1], &up, f.why, sizeof f.why) == FL_ESTALE);
	/* not a member */
	CHECK(sa_round_up(f.r, 999, &up, f.why, sizeof f.why) == FL_ESTATE);
	for (int i = 1; i < N; i++) {
		CHECK_RC(sa_client_keys(f.c[i], samples(i), &up));
		CHECK_RC(sa_round_up(f.r, f.reg[i], &up, f.why, sizeof f.why));
	}
	CHECK(sa_round_tick(f.r, 1) == SA_ADVANCED);
	/* keys after the keys phase closed */
	CHECK_RC(sa_client_keys(f.c[0], samples(0), &up));
	CHECK(sa_round_up(f.r, f.reg[0], &up, f.why, sizeof f.why) == FL_ESTALE);
	CHECK_RC(down(&f, 0, 1, &m));
	{
		Fedlora__SaDown d = *SAD(m);
		/* the key list of round 5 given to round 6's client */
		CHECK(sa_client_on_keylist(g.c[0], SAD(m), &up) == FL_ESTALE);
		d.round = 6;
		CHECK(sa_client_on_keylist(g.c[0], &d, &up) == FL_ESTALE); /* session differs */
		d = *SAD(m);
		d.phase = 2; /* out of phase */
		CHECK(sa_client_on_keylist(f.c[0], &d, &up) == FL_ESTALE);
		CHECK(sa_client_on_boxes(f.c[0], SAD(m)) == FL_ESTALE);
	}
	fl_wire_msg_fini(&m);
	for (int i = 0; i < N; i++) {
		CHECK_RC(down(&f, i, 1, &m));
		CHECK_RC(sa_client_on_keylist(f.c[i], SAD(m), &up));
		if (i == 0) {
			/* a box addressed to the sender itself */
			uint32_t save = up.to[0];
			up.to[0] = 0;
			CHECK(sa_round_up(f.r, f.reg[0], &up, f.why, sizeof f.why) == FL_EFORMAT);
			up.to[0] = save;
		}
		CHECK_RC(sa_round_up(f.r, f.reg[i], &up, f.why, sizeof f.why));
		fl_wire_msg_fini(&m);
	}
	CHECK(sa_round_tick(f.r, 2) == SA_ADVANCED);
	CHECK_RC(down(&f, 1, 2, &m));
	CHECK_RC(sa_client_on_boxes(f.c[1], SAD(m)));
	/* the same relay again: every box is a replay */
	CHECK(sa_client_on_boxes(f.c[1], SAD(m)) == FL_EREPLAY);
	/* boxes addressed to client 1 given to client 2 */
	CHECK(sa_client_on_boxes(f.c[2], SAD(m)) != 0);
	fl_wire_msg_fini(&m);
	/* a masked vector of the wrong length */
	{
		float x[3] = {0, 0, 1};
		/* no boxes yet: fewer than threshold partners, masking refused */
		CHECK(sa_client_mask(f.c[3], x, 3, &up, NULL) == FL_EQUORUM);
		CHECK_RC(down(&f, 3, 2, &m));
		CHECK_RC(sa_client_on_boxes(f.c[3], SAD(m)));
		fl_wire_msg_fini(&m);
		CHECK_RC(sa_client_mask(f.c[3], x, 3, &up, NULL));
		up.num_samples = samples(3);
		up.metrics = &f.met;
		CHECK(sa_round_up(f.r, f.reg[3], &up, f.why, sizeof f.why) == FL_ESHAPE);
	}
	fx_close(&f);
	fx_close(&g);
}

static void test_too_few_keys_abort(void)
{
	fixture f;
	Fedlora__SaUp up;
	fl_wire_msg m;
	fx_open(&f, 2);
	/* min_survivors is 4 of 6 (n/2+1); 3 send keys */
	for (int i = 0; i < 3; i++) {
		CHECK_RC(sa_client_keys(f.c[i], samples(i), &up));
		CHECK_RC(sa_round_up(f.r, f.reg[i], &up, f.why, sizeof f.why));
	}
	CHECK(sa_round_tick(f.r, 5) == SA_RUNNING);
	CHECK(sa_round_tick(f.r, 10.5) == SA_ABORTED);
	CHECK(strstr(sa_round_why(f.r), "min_survivors") != NULL);
	CHECK(down(&f, 0, 1, &m) == FL_ESTALE);
	{
		lora_adapter *next = NULL;
		sa_round_result res;
		CHECK_RC(lora_adapter_clone(&next, f.global));
		CHECK(sa_round_apply(f.r, next, NULL, &res) == FL_ESTATE);
		lora_adapter_free(next);
	}
	fx_close(&f);
}

static void test_below_quorum_refused(void)
{
	/* a selection smaller than the run's --min-clients cannot open */
	fixture f;
	sa_round_opts o;
	sa_round *r = NULL;
	char why[200] = "";
	uint8_t pk[N][32];
	fx_open(&f, 2);
	for (int i = 0; i < N; i++)
		memcpy(pk[i], f.k[i].pk, 32);
	memset(&o, 0, sizeof o);
	o.run_id = RUN;
	o.round = 2;
	o.n = N;
	o.min_clients = N + 1;
	o.reg = f.reg;
	o.id_pk = (const uint8_t(*)[32])pk;
	o.strat = LORA_FFA;
	o.global = f.global;
	o.keys_timeout = o.phase_timeout = 1;
	o.key = &f.ck;
	CHECK(sa_round_new(&r, &o, 0, why, sizeof why) == FL_EINVAL);
	CHECK(r == NULL && strstr(why, "quorum") != NULL);
	o.min_clients = N; /* then every member must survive */
	CHECK_RC(sa_round_new(&r, &o, 0, why, sizeof why));
	CHECK(r && sa_round_task_params(r)->min_survivors == N);
	sa_round_free(r);
	fx_close(&f);
}

static void test_weight_bounded(void)
{
	/* a coordinator that inflates a client's weight beyond the clip is
	 * refused by the client */
	fixture f;
	Fedlora__SaUp up;
	fl_wire_msg m;
	fx_open(&f, 2);
	for (int i = 0; i < N; i++) {
		CHECK_RC(sa_client_keys(f.c[i], samples(i), &up));
		CHECK_RC(sa_round_up(f.r, f.reg[i], &up, f.why, sizeof f.why));
	}
	CHECK(sa_round_tick(f.r, 1) == SA_ADVANCED);
	CHECK_RC(down(&f, 0, 1, &m));
	{
		Fedlora__SaDown d = *SAD(m);
		CHECK_NEAR(d.weight_scale, 1.0 / samples(N - 1), 1e-12, 0);
		d.weight_scale = 1.0;
		CHECK(sa_client_on_keylist(f.c[0], &d, &up) == FL_EFORMAT);
	}
	CHECK_RC(sa_client_on_keylist(f.c[0], SAD(m), &up));
	CHECK_NEAR(sa_client_weight(f.c[0]), (double)samples(0) / samples(N - 1), 1e-12, 0);
	fl_wire_msg_fini(&m);
	fx_close(&f);
}

/* All clients' keys in; the keys phase closed. */
static void send_all_keys(fixture *f)
{
	Fedlora__SaUp up;
	for (int i = 0; i < N; i++) {
		CHECK_RC(sa_client_keys(f->c[i], samples(i), &up));
		CHECK_RC(sa_round_up(f->r, f->reg[i], &up, f->why, sizeof f->why));
	}
	CHECK(sa_round_tick(f->r, 1) == SA_ADVANCED);
}

/* The index of member j's entry in a key list, -1 if absent. */
static int key_entry(const Fedlora__SaDown *d, uint32_t j)
{
	for (size_t q = 0; q < d->n_key_from; q++)
		if (d->key_from[q] == j)
			return (int)q;
	return -1;
}

static void test_substituted_key_refused(void)
{
	/* a coordinator that replaces a neighbour's keys with its own (man in
	 * the middle) is refused, whether it keeps the member's signature or
	 * signs the new keys with its own identity key */
	fixture f;
	Fedlora__SaUp up;
	fl_wire_msg m;
	uint8_t evil_c[32], evil_sig[PRIV_SA_SIG_BYTES];
	fx_open(&f, 3);
	send_all_keys(&f);
	CHECK_RC(down(&f, 0, 1, &m));
	{
		Fedlora__SaDown d = *SAD(m);
		ProtobufCBinaryData c[N], sg[N];
		int q = key_entry(&d, 2);
		CHECK(q >= 0 && d.n_c_pk <= N);
		memcpy(c, d.c_pk, d.n_c_pk * sizeof *c);
		memcpy(sg, d.key_sigs, d.n_key_sigs * sizeof *sg);
		d.c_pk = c;
		d.key_sigs = sg;
		randombytes_buf(evil_c, 32);
		c[q].data = evil_c;
		CHECK(sa_client_on_keylist(f.c[0], &d, &up) == FL_ESIG);
		CHECK(strstr(sa_client_why(f.c[0]), "member 2") != NULL);
		/* new keys with a signature by the coordinator's own key */
		crypto_sign_detached(evil_sig, NULL, evil_c, 32, f.ck.sk);
		sg[q].data = evil_sig;
		CHECK(sa_client_on_keylist(f.c[0], &d, &up) == FL_ESIG);
		/* one flipped byte of the signature */
		{
			uint8_t flip[PRIV_SA_SIG_BYTES];
			memcpy(flip, SAD(m)->key_sigs[q].data, sizeof flip);
			flip[7] ^= 1;
			c[q] = SAD(m)->c_pk[q];
			sg[q].data = flip;
			CHECK(sa_client_on_keylist(f.c[0], &d, &up) == FL_ESIG);
		}
	}
	/* a coordinator that puts an identity of its own in place of member 2
	 * (a Sybil): a client with a peer list refuses it */
	{
		Fedlora__SaDown d = *SAD(m);
		ProtobufCBinaryData id[N];
		priv_allow *al = NULL;
		int q = key_entry(&d, 2);
		CHECK_RC(priv_allow_new(&al));
		for (int i = 0; i < N; i++)
			CHECK_RC(priv_allow_add(al, f.k[i].pk));
		memcpy(id, d.key_id, d.n_key_id * sizeof *id);
		id[q].data = f.ck.pk;
		d.key_id = id;
		sa_client_set_peers(f.c[0], al);
		CHECK(sa_client_on_keylist(f.c[0], &d, &up) == FL_EKEY);
		CHECK(strstr(sa_client_why(f.c[0]), "not in --sa-peers") != NULL);
		/* the honest relay is still accepted: the refusals set nothing */
		CHECK_RC(sa_client_on_keylist(f.c[0], SAD(m), &up));
		sa_client_set_peers(f.c[0], NULL);
		priv_allow_free(al);
	}
	fl_wire_msg_fini(&m);
	fx_close(&f);
}

/* Member `who`'s keys and key signature made for the same Task with
 * another session (other_session) or another round (else). */
static void keys_elsewhere(fixture *f, int who, int other_session, uint8_t c_pk[32],
                           uint8_t s_pk[32], uint8_t sig[PRIV_SA_SIG_BYTES])
{
	Fedlora__Task t = f->t;
	Fedlora__SecAggParams sp = *f->t.secagg;
	uint8_t ses[16], seed[32];
	sa_client *c = NULL;
	Fedlora__SaUp up;
	memcpy(ses, sp.session.data, 16);
	if (other_session)
		ses[0] ^= 0x55;
	else
		t.round += 1;
	priv_sa_graph_seed(RUN, t.round, seed);
	sp.graph_seed.data = seed;
	sp.session.data = ses;
	t.secagg = &sp;
	CHECK_RC(sa_client_new(&c, &t, RUN, &f->k[who], f->why, sizeof f->why));
	CHECK_RC(sa_client_keys(c, samples(who), &up));
	memcpy(c_pk, up.c_pk.data, 32);
	memcpy(s_pk, up.s_pk.data, 32);
	memcpy(sig, up.key_sig.data, PRIV_SA_SIG_BYTES);
	sa_client_free(c);
}

static void test_key_sig_replay_refused(void)
{
	/* keys that member 4 really signed, but for another attempt (session)
	 * or another round, relayed into this one */
	fixture f;
	Fedlora__SaUp up;
	fl_wire_msg m;
	fx_open(&f, 3);
	send_all_keys(&f);
	CHECK_RC(down(&f, 1, 1, &m));
	for (int other_session = 0; other_session < 2; other_session++) {
		Fedlora__SaDown d = *SAD(m);
		ProtobufCBinaryData c[N], s[N], sg[N];
		uint8_t ck[32], sk[32], sig[PRIV_SA_SIG_BYTES];
		int q = key_entry(&d, 4);
		CHECK(q >= 0);
		memcpy(c, d.c_pk, d.n_c_pk * sizeof *c);
		memcpy(s, d.s_pk, d.n_s_pk * sizeof *s);
		memcpy(sg, d.key_sigs, d.n_key_sigs * sizeof *sg);
		keys_elsewhere(&f, 4, other_session, ck, sk, sig);
		c[q].data = ck;
		s[q].data = sk;
		sg[q].data = sig;
		d.c_pk = c;
		d.s_pk = s;
		d.key_sigs = sg;
		CHECK(sa_client_on_keylist(f.c[1], &d, &up) == FL_ESIG);
		CHECK(strstr(sa_client_why(f.c[1]), "this round and attempt") != NULL);
	}
	/* the coordinator refuses such keys as an upload too */
	{
		fixture g;
		uint8_t ck[32], sk[32], sig[PRIV_SA_SIG_BYTES];
		fx_open(&g, 3);
		keys_elsewhere(&g, 0, 1, ck, sk, sig);
		CHECK_RC(sa_client_keys(g.c[0], samples(0), &up));
		up.c_pk.data = ck;
		up.s_pk.data = sk;
		up.key_sig.data = sig;
		CHECK(sa_round_up(g.r, g.reg[0], &up, g.why, sizeof g.why) == FL_ESIG);
		fx_close(&g);
	}
	CHECK_RC(sa_client_on_keylist(f.c[1], SAD(m), &up));
	fl_wire_msg_fini(&m);
	fx_close(&f);
}

static void test_coord_rejects_bad_key_sig(void)
{
	fixture f;
	Fedlora__SaUp up, other;
	uint8_t flip[PRIV_SA_SIG_BYTES];
	fx_open(&f, 4);
	CHECK_RC(sa_client_keys(f.c[0], samples(0), &up));
	/* a flipped byte */
	memcpy(flip, up.key_sig.data, sizeof flip);
	flip[0] ^= 0x80;
	up.key_sig.data = flip;
	CHECK(sa_round_up(f.r, f.reg[0], &up, f.why, sizeof f.why) == FL_ESIG);
	CHECK(strstr(f.why, "key signature") != NULL);
	/* none at all */
	up.key_sig.len = 0;
	CHECK(sa_round_up(f.r, f.reg[0], &up, f.why, sizeof f.why) == FL_EFORMAT);
	/* member 1's genuine keys and signature sent in member 0's name */
	CHECK_RC(sa_client_keys(f.c[1], samples(1), &other));
	CHECK(sa_round_up(f.r, f.reg[0], &other, f.why, sizeof f.why) == FL_ESIG);
	/* member 0's keys with member 1's signature */
	CHECK_RC(sa_client_keys(f.c[0], samples(0), &up));
	up.key_sig = other.key_sig;
	CHECK(sa_round_up(f.r, f.reg[0], &up, f.why, sizeof f.why) == FL_ESIG);
	/* refused uploads left no trace: the honest one is taken once */
	CHECK_RC(sa_client_keys(f.c[0], samples(0), &up));
	CHECK_RC(sa_round_up(f.r, f.reg[0], &up, f.why, sizeof f.why));
	CHECK(sa_round_up(f.r, f.reg[0], &up, f.why, sizeof f.why) == FL_ESTATE);
	fx_close(&f);
}

/* Opens a round of n members (registry ids reg0 + i) on a 1-matrix adapter:
 * fresh keys, the round, k and reg permuted to ring order, the Task. */
static void big_open(int n, int reg0, priv_key *ck, priv_key *k, int *reg, lora_adapter **g,
                     sa_round **r, Fedlora__Task *t)
{
	static const char *names[] = {"l0"};
	static const int in[] = {3}, outd[] = {2};
	uint8_t(*pk)[32] = calloc((size_t)n, 32);
	sa_round_opts o;
	char why[300];
	CHECK_RC(priv_key_generate(ck));
	for (int i = 0; i < n; i++) {
		CHECK_RC(priv_key_generate(&k[i]));
		memcpy(pk[i], k[i].pk, 32);
		reg[i] = reg0 + i;
	}
	CHECK_RC(lora_adapter_new(g, 1, names, in, outd, 2, 4.0f));
	lora_adapter_init(*g, 3);
	memset(&o, 0, sizeof o);
	o.run_id = RUN;
	o.round = 2;
	o.attempt = 1;
	o.n = n;
	o.reg = reg;
	o.id_pk = (const uint8_t(*)[32])pk;
	o.strat = LORA_FEDIT;
	o.global = *g;
	o.keys_timeout = 10;
	o.phase_timeout = 5;
	o.key = ck;
	CHECK_RC(sa_round_new(r, &o, 0.0, why, sizeof why));
	ring_sort(*r, k, reg, n);
	fedlora__task__init(t);
	t->run_id = RUN;
	t->round = 2;
	t->secagg = sa_round_task_params(*r);
	t->deadline_ms = 10000;
	free(pk);
}

/* A round of NB clients (a sparse graph): SaDown 1 carries the degree's
 * entries, all neighbours, and a non-neighbour's genuine keys are refused. */
#define NB 24
static void test_keylist_neighbours_only(void)
{
	priv_key ck, k[NB];
	int reg[NB];
	lora_adapter *g = NULL;
	sa_round *r = NULL;
	sa_client *c[NB] = {0};
	Fedlora__Task t;
	Fedlora__SaUp up;
	uint8_t kc[NB][32], ks[NB][32], kg[NB][PRIV_SA_SIG_BYTES];
	char why[300];
	int degree, skip = 7; /* member 7 sends no keys */

	big_open(NB, 200, &ck, k, reg, &g, &r, &t);
	degree = (int)t.secagg->degree;
	CHECK(degree == priv_sa_default_degree(NB) && degree < NB - 1);
	for (int i = 0; i < NB; i++) {
		CHECK_RC(sa_client_new(&c[i], &t, RUN, &k[i], why, sizeof why));
		CHECK_RC(sa_client_keys(c[i], samples(i % N), &up));
		memcpy(kc[i], up.c_pk.data, 32);
		memcpy(ks[i], up.s_pk.data, 32);
		memcpy(kg[i], up.key_sig.data, PRIV_SA_SIG_BYTES);
		if (i != skip)
			CHECK_RC(sa_round_up(r, reg[i], &up, why, sizeof why));
	}
	CHECK(sa_round_tick(r, 11) == SA_ADVANCED);
	for (int i = 0; i < NB; i++) {
		uint8_t *buf = NULL;
		size_t len = 0;
		fl_wire_msg m;
		const Fedlora__SaDown *d;
		int has_skip = 0;
		if (i == skip) {
			CHECK(sa_round_down(r, reg[i], 1, &buf, &len, why, sizeof why) ==
			      FL_ESTALE);
			continue;
		}
		CHECK_RC(sa_round_down(r, reg[i], 1, &buf, &len, why, sizeof why));
		CHECK_RC(fl_wire_open(buf, len, (size_t)1 << 24, ck.pk, &m));
		free(buf);
		d = (const Fedlora__SaDown *)m.body;
		CHECK(d->you == (uint32_t)i);
		{
			/* was member 7 a neighbour of i? then one entry fewer */
			priv_sa_params p;
			int nb[PRIV_SA_MAX_DEGREE], kn = 0;
			memset(&p, 0, sizeof p);
			p.n = NB;
			p.degree = degree;
			p.threshold = (int)t.secagg->threshold;
			p.min_survivors = (int)t.secagg->min_survivors;
			p.clip = t.secagg->clip;
			p.frac_bits = (int)t.secagg->frac_bits;
			memcpy(p.graph_seed, t.secagg->graph_seed.data, 32);
			CHECK_RC(priv_sa_check_params(&p, why, sizeof why));
			CHECK_RC(priv_sa_neighbours(&p, i, nb, &kn));
			CHECK(kn == degree);
			for (int q = 0; q < kn; q++)
				has_skip += nb[q] == skip;
			CHECK(d->n_key_from == (size_t)(degree - has_skip));
			CHECK(d->n_c_pk == d->n_key_from && d->n_s_pk == d->n_key_from &&
			      d->n_key_sigs == d->n_key_from && d->n_key_id == d->n_key_from);
			for (size_t q = 0; q < d->n_key_from; q++) {
				int hit = 0;
				for (int z = 0; z < kn; z++)
					hit += nb[z] == (int)d->key_from[q];
				CHECK(hit == 1 && (int)d->key_from[q] != skip);
				CHECK(d->key_id[q].len == 32 &&
				      !memcmp(d->key_id[q].data, k[d->key_from[q]].pk, 32));
			}
			if (i == 0) {
				/* a non-neighbour's genuine signed keys in place of a
				 * neighbour's */
				Fedlora__SaDown e = *d;
				ProtobufCBinaryData cc[PRIV_SA_MAX_DEGREE], ss[PRIV_SA_MAX_DEGREE],
				    gg[PRIV_SA_MAX_DEGREE];
				uint32_t from[PRIV_SA_MAX_DEGREE];
				int far = -1;
				for (int j = 1; j < NB && far < 0; j++) {
					int is_nb = 0;
					for (int z = 0; z < kn; z++)
						is_nb += nb[z] == j;
					if (!is_nb && j != skip)
						far = j;
				}
				CHECK(far > 0);
				memcpy(cc, d->c_pk, d->n_c_pk * sizeof *cc);
				memcpy(ss, d->s_pk, d->n_s_pk * sizeof *ss);
				memcpy(gg, d->key_sigs, d->n_key_sigs * sizeof *gg);
				memcpy(from, d->key_from, d->n_key_from * sizeof *from);
				from[0] = (uint32_t)far;
				cc[0].data = kc[far];
				ss[0].data = ks[far];
				gg[0].data = kg[far];
				e.key_from = from;
				e.c_pk = cc;
				e.s_pk = ss;
				e.key_sigs = gg;
				{
					/* with its identity: the position is not a neighbour's */
					ProtobufCBinaryData ii[PRIV_SA_MAX_DEGREE];
					memcpy(ii, d->key_id, d->n_key_id * sizeof *ii);
					ii[0].data = k[far].pk;
					e.key_id = ii;
					CHECK(sa_client_on_keylist(c[0], &e, &up) == FL_EFORMAT);
					CHECK(strstr(sa_client_why(c[0]), "not a neighbour") !=
					      NULL);
					/* at a neighbour's position: its ring key does not
					 * fit there */
					from[0] = d->key_from[0];
					CHECK(sa_client_on_keylist(c[0], &e, &up) == FL_EFORMAT);
					CHECK(strstr(sa_client_why(c[0]), "ring keys") != NULL);
				}
				/* a wrong index for this client: its neighbours do not
				 * match, or its own ring key does not fit */
				e = *d;
				e.you = (uint32_t)(NB / 2);
				CHECK(sa_client_on_keylist(c[0], &e, &up) == FL_EFORMAT);
				e.you = NB;
				CHECK(sa_client_on_keylist(c[0], &e, &up) == FL_EFORMAT);
				/* fewer signed neighbour keys than the threshold:
				 * this client's secrets could not be rebuilt */
				e = *d;
				e.n_key_from = e.n_c_pk = e.n_s_pk = e.n_key_sigs = e.n_key_id =
				    (size_t)t.secagg->threshold - 1;
				CHECK(sa_client_on_keylist(c[0], &e, &up) == FL_EQUORUM);
				CHECK(strstr(sa_client_why(c[0]), "threshold") != NULL);
			}
		}
		CHECK_RC(sa_client_on_keylist(c[i], d, &up));
		CHECK(up.n_to == (size_t)(degree - has_skip));
		CHECK_RC(sa_round_up(r, reg[i], &up, why, sizeof why));
		fl_wire_msg_fini(&m);
	}
	CHECK(sa_round_tick(r, 12) == SA_ADVANCED);
	for (int i = 0; i < NB; i++)
		sa_client_free(c[i]);
	sa_round_free(r);
	lora_adapter_free(g);
}

/* One whole round of n clients (sparse graph beyond 17) through
 * sa_round/sa_client, every message sealed and opened as on the wire.
 * *down gets the mean bytes a client receives for the secure part of the
 * round: Task.secagg packed plus its four SaDown envelopes. 0 on a
 * committed round whose decoded weight is the sum of all weights. */
static int round_bytes(int n, double *down)
{
	priv_key ck, *k = calloc((size_t)n, sizeof *k);
	int *reg = calloc((size_t)n, sizeof *reg), rv = 0;
	sa_client **c = calloc((size_t)n, sizeof *c);
	lora_adapter *g = NULL, *tr = NULL, *next = NULL;
	sa_round *r = NULL;
	Fedlora__Task t;
	Fedlora__TrainMetrics met = FEDLORA__TRAIN_METRICS__INIT;
	Fedlora__SaUp up;
	sa_round_result res;
	char why[300];
	size_t total = 0;
	double now = 1;

	big_open(n, 1000, &ck, k, reg, &g, &r, &t);
	CHECK_RC(lora_adapter_clone(&tr, g));
	for (size_t j = 0; j < g->n_a + g->n_b; j++)
		tr->params[j] += 0.01f;
	total += (size_t)n * fedlora__sec_agg_params__get_packed_size(t.secagg);
	for (int i = 0; i < n; i++) {
		CHECK_RC(sa_client_new(&c[i], &t, RUN, &k[i], why, sizeof why));
		CHECK_RC(sa_client_keys(c[i], 10, &up));
		CHECK_RC(sa_round_up(r, reg[i], &up, why, sizeof why));
	}
	for (uint32_t want = 1; want <= 4; want++) {
		if (sa_round_tick(r, now++) != SA_ADVANCED) {
			fprintf(stderr, "  phase %u: %s\n", want, sa_round_why(r));
			CHECK(0);
		}
		for (int i = 0; i < n; i++) {
			uint8_t *buf = NULL;
			size_t len = 0;
			fl_wire_msg m;
			const Fedlora__SaDown *d;
			float *x = NULL;
			size_t xl = 0;
			CHECK_RC(sa_round_down(r, reg[i], want, &buf, &len, why, sizeof why));
			total += len;
			CHECK_RC(fl_wire_open(buf, len, (size_t)1 << 24, ck.pk, &m));
			free(buf);
			d = (const Fedlora__SaDown *)m.body;
			switch (want) {
			case 1:
				CHECK_RC(sa_client_on_keylist(c[i], d, &up));
				break;
			case 2:
				CHECK_RC(sa_client_on_boxes(c[i], d));
				CHECK_RC(
				    sa_client_vector(g, tr, 1, sa_client_weight(c[i]), 0, &x, &xl));
				CHECK_RC(sa_client_mask(c[i], x, xl, &up, NULL));
				free(x);
				up.num_samples = 10;
				up.metrics = &met;
				break;
			case 3:
				CHECK_RC(sa_client_on_survivors(c[i], d, &up));
				break;
			default:
				CHECK_RC(sa_client_on_unmask(c[i], d, &up));
				break;
			}
			CHECK_RC(sa_round_up(r, reg[i], &up, why, sizeof why));
			fl_wire_msg_fini(&m);
		}
	}
	rv = sa_round_tick(r, now) == SA_FINISHED ? 0 : FL_ESTATE;
	CHECK_RC(lora_adapter_clone(&next, g));
	CHECK_RC(sa_round_apply(r, next, NULL, &res));
	CHECK(res.survivors == n);
	/* every client sent the same update: the mean is it */
	for (size_t j = 0; j < g->n_a + g->n_b; j++)
		CHECK_NEAR(next->params[j], tr->params[j], 1e-5, 0);
	*down = (double)total / n;
	for (int i = 0; i < n; i++)
		sa_client_free(c[i]);
	free(c);
	sa_round_free(r);
	lora_adapter_free(g);
	lora_adapter_free(tr);
	lora_adapter_free(next);
	sodium_memzero(k, (size_t)n * sizeof *k);
	free(k);
	free(reg);
	return rv;
}

/* Bytes down per client grow with the degree (O(log n)), not with n: at
 * 400 clients well under twice the 100-client figure (n grows 4x). */
static void test_bytes_down_sublinear(void)
{
	double b100 = 0, b400 = 0;
	CHECK_RC(round_bytes(100, &b100));
	CHECK_RC(round_bytes(400, &b400));
	fprintf(stderr,
	        "  secure bytes down per client: 100 clients %.0f, 400 clients %.0f (x%.2f)\n",
	        b100, b400, b400 / b100);
	CHECK(b100 > 0 && b400 < 2 * b100);
}

static const test_case cases[] = {TEST(test_full_round),
                                  TEST(test_dropout_after_mask),
                                  TEST(test_both_shares_refused),
                                  TEST(test_forged_signature_refused),
                                  TEST(test_view_encoding_refused),
                                  TEST(test_replay_cross_round),
                                  TEST(test_too_few_keys_abort),
                                  TEST(test_weight_bounded),
                                  TEST(test_below_quorum_refused),
                                  TEST(test_substituted_key_refused),
                                  TEST(test_key_sig_replay_refused),
                                  TEST(test_coord_rejects_bad_key_sig),
                                  TEST(test_keylist_neighbours_only),
                                  TEST(test_graph_seed_refused),
                                  TEST(test_bytes_down_sublinear),
                                  {0}};

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		return 1;
	return test_main(argc, argv, cases);
}
