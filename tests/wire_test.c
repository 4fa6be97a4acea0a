/*
 * tests/wire_test.c — core/wire: sealed envelopes open and verify; flipped
 * bytes, truncations, garbage, wrong versions/types/keys are rejected without
 * crashing; body checks catch another run, another round and replays;
 * adapters round trip as F32/BF16/F16 tensors and malformed tensors are
 * rejected; the half-precision converters round to nearest even.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/half.h"
#include "core/rng.h"
#include "core/wire.h"
#include "tests/test.h"

#define MAXLEN ((size_t)64 << 20)

static lora_adapter *make_adapter(uint64_t seed)
{
	const char *names[] = {"layers.0", "layers.1", "layers.2"};
	int in[] = {16, 24, 8}, out[] = {12, 16, 20};
	lora_adapter *a = NULL;
	if (lora_adapter_new(&a, 3, names, in, out, 4, 8.0f) != 0)
		return NULL;
	fl_rng r;
	fl_rng_init(&r, seed, 7);
	for (size_t i = 0; i < a->n_a + a->n_b; i++)
		a->params[i] = (float)fl_rng_normal(&r);
	return a;
}

/* A signed Submit of adapter a (A and B, F32) for run "run-1", round 3. */
static int make_submit(const priv_key *k, const lora_adapter *a, uint8_t **buf, size_t *len,
                       uint8_t nonce[FL_NONCE_BYTES])
{
	fl_wire_tensors ts;
	int rv = fl_wire_tensors_from_adapter(a, FL_WIRE_AB, FL_DTYPE_F32, &ts);
	if (rv != 0)
		return rv;
	Fedlora__Submit s = FEDLORA__SUBMIT__INIT;
	Fedlora__TrainMetrics tm = FEDLORA__TRAIN_METRICS__INIT;
	tm.train_loss = 0.25;
	tm.steps = 10;
	fl_wire_nonce(nonce);
	s.run_id = "run-1";
	s.round = 3;
	s.nonce.data = nonce;
	s.nonce.len = FL_NONCE_BYTES;
	s.num_samples = 512;
	s.n_tensors = ts.n;
	s.tensors = ts.t;
	s.metrics = &tm;
	rv = fl_wire_seal(&s.base, FL_MSG_SUBMIT, k, buf, len);
	fl_wire_tensors_fini(&ts);
	return rv;
}

static void test_seal_open_roundtrip(void)
{
	priv_key k;
	CHECK_RC(priv_key_generate(&k));
	lora_adapter *a = make_adapter(1), *b = make_adapter(2);
	uint8_t *buf = NULL, nonce[FL_NONCE_BYTES];
	size_t len = 0;
	CHECK_RC(make_submit(&k, a, &buf, &len, nonce));
	fl_wire_msg m;
	CHECK_RC(fl_wire_open(buf, len, MAXLEN, NULL, &m));
	CHECK(m.type == FL_MSG_SUBMIT);
	CHECK(memcmp(m.signer, k.pk, PRIV_PK_BYTES) == 0);
	CHECK(m.wire_len == len);
	Fedlora__Submit *s = FL_WIRE_BODY(&m, Fedlora__Submit, FL_MSG_SUBMIT);
	CHECK(s != NULL);
	CHECK(FL_WIRE_BODY(&m, Fedlora__Task, FL_MSG_TASK) == NULL);
	if (s) {
		CHECK(!strcmp(s->run_id, "run-1") && s->round == 3 && s->num_samples == 512);
		CHECK(s->nonce.len == FL_NONCE_BYTES && !memcmp(s->nonce.data, nonce, 16));
		CHECK(s->metrics && s->metrics->train_loss == 0.25 && s->metrics->steps == 10);
		CHECK_RC(fl_wire_check_submit(s, "run-1", 3));
		/* the same signed message replayed into another round or run */
		CHECK(fl_wire_check_submit(s, "run-1", 4) == FL_ESTALE);
		CHECK(fl_wire_check_submit(s, "run-2", 3) == FL_ESTALE);
		CHECK_RC(fl_wire_tensors_to_adapter(s->tensors, s->n_tensors, FL_WIRE_AB, b));
		CHECK(memcmp(a->params, b->params, (a->n_a + a->n_b) * sizeof(float)) == 0);
	}
	/* expected signer */
	fl_wire_msg_fini(&m);
	CHECK_RC(fl_wire_open(buf, len, MAXLEN, k.pk, &m));
	fl_wire_msg_fini(&m);
	priv_key other;
	CHECK_RC(priv_key_generate(&other));
	CHECK(fl_wire_open(buf, len, MAXLEN, other.pk, &m) == FL_EKEY);
	CHECK(m.body == NULL); /* allow list checked before the signature */
	priv_allow *al = NULL;
	CHECK_RC(priv_allow_new(&al));
	CHECK(fl_wire_open_allowed(buf, len, MAXLEN, al, &m) == FL_EKEY);
	CHECK_RC(priv_allow_add(al, other.pk));
	CHECK(fl_wire_open_allowed(buf, len, MAXLEN, al, &m) == FL_EKEY);
	CHECK_RC(priv_allow_add(al, k.pk));
	CHECK_RC(fl_wire_open_allowed(buf, len, MAXLEN, al, &m));
	CHECK(m.type == FL_MSG_SUBMIT);
	fl_wire_msg_fini(&m);
	CHECK_RC(fl_wire_open_allowed(buf, len, MAXLEN, NULL, &m)); /* NULL: any key */
	fl_wire_msg_fini(&m);
	buf[len - 2] ^= 1; /* allowed key, bad signature */
	CHECK(fl_wire_open_allowed(buf, len, MAXLEN, al, &m) == FL_ESIG);
	buf[len - 2] ^= 1;
	priv_allow_free(al);
	/* size limit checked before parsing */
	CHECK(fl_wire_open(buf, len, len - 1, NULL, &m) == FL_ETOOBIG);
	/* nng_msg variant */
	nng_msg *nm = NULL;
	Fedlora__Ack ack = FEDLORA__ACK__INIT;
	ack.run_id = "run-1";
	ack.round = 3;
	CHECK_RC(fl_wire_seal_msg(&ack.base, FL_MSG_ACK, &k, &nm));
	CHECK_RC(fl_wire_open_msg(nm, MAXLEN, k.pk, &m));
	CHECK(m.type == FL_MSG_ACK && ((Fedlora__Ack *)m.body)->round == 3);
	fl_wire_msg_fini(&m);
	fl_wire_msg_fini(&m); /* twice is safe */
	nng_msg_free(nm);
	/* a body of the wrong descriptor for the type is refused at sealing */
	free(buf);
	CHECK(fl_wire_seal(&ack.base, FL_MSG_SUBMIT, &k, &buf, &len) == FL_EINVAL);
	free(buf);
	lora_adapter_free(a);
	lora_adapter_free(b);
	priv_key_wipe(&k);
	priv_key_wipe(&other);
}

/* Finds needle in hay; offset or -1. */
static long find(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
	for (size_t i = 0; i + m <= n; i++)
		if (!memcmp(hay + i, needle, m))
			return (long)i;
	return -1;
}

static void test_flipped_bytes_rejected(void)
{
	priv_key k;
	CHECK_RC(priv_key_generate(&k));
	Fedlora__GetTask g = FEDLORA__GET_TASK__INIT;
	g.run_id = "run-xyz";
	g.last_round_seen = 12345;
	uint8_t *buf = NULL;
	size_t len = 0;
	CHECK_RC(fl_wire_seal(&g.base, FL_MSG_GET_TASK, &k, &buf, &len));
	fl_wire_msg m;
	CHECK_RC(fl_wire_open(buf, len, MAXLEN, NULL, &m));
	fl_wire_msg_fini(&m);
	/* Flip every bit of every byte: nothing may open. */
	int all = 1;
	for (size_t i = 0; i < len; i++)
		for (int bit = 0; bit < 8; bit++) {
			buf[i] ^= (uint8_t)(1u << bit);
			int rv = fl_wire_open(buf, len, MAXLEN, NULL, &m);
			if (rv == 0) {
				all = 0;
				fl_wire_msg_fini(&m);
			}
			buf[i] ^= (uint8_t)(1u << bit);
		}
	CHECK(all);
	/* Flips inside the body, the signature and the signer key are bad
	 * signatures specifically. */
	long ps = find(buf, len, k.pk, PRIV_PK_BYTES);
	long pb = find(buf, len, (const uint8_t *)"run-xyz", 7);
	CHECK(ps > 0 && pb > 0);
	if (ps > 0 && pb > 0) {
		buf[pb] ^= 1; /* 'r' -> 's' */
		CHECK(fl_wire_open(buf, len, MAXLEN, NULL, &m) == FL_ESIG);
		buf[pb] ^= 1;
		buf[ps + 5] ^= 0x10;
		CHECK(fl_wire_open(buf, len, MAXLEN, NULL, &m) == FL_ESIG);
		buf[ps + 5] ^= 0x10;
		buf[len - 3] ^= 0x40; /* signature is the last field */
		CHECK(fl_wire_open(buf, len, MAXLEN, NULL, &m) == FL_ESIG);
		buf[len - 3] ^= 0x40;
	}
	CHECK_RC(fl_wire_open(buf, len, MAXLEN, NULL, &m));
	fl_wire_msg_fini(&m);
	free(buf);
	priv_key_wipe(&k);
}

static void test_truncated_and_garbage(void)
{
	priv_key k;
	CHECK_RC(priv_key_generate(&k));
	lora_adapter *a = make_adapter(3);
	uint8_t *buf = NULL, nonce[FL_NONCE_BYTES];
	size_t len = 0;
	CHECK_RC(make_submit(&k, a, &buf, &len, nonce));
	fl_wire_msg m;
	int all = 1;
	for (size_t n = 0; n < len; n++) {
		int rv = fl_wire_open(buf, n, MAXLEN, NULL, &m);
		if (rv == 0) {
			all = 0;
			fl_wire_msg_fini(&m);
		}
	}
	CHECK(all);
	CHECK(fl_wire_open(NULL, 0, MAXLEN, NULL, &m) != 0);
	/* random garbage of many lengths */
	fl_rng r;
	fl_rng_init(&r, 99, 1);
	uint8_t g[4096];
	all = 1;
	for (int t = 0; t < 2000; t++) {
		size_t n = (size_t)fl_rng_below(&r, sizeof g);
		for (size_t i = 0; i < n; i++)
			g[i] = (uint8_t)fl_rng_u64(&r);
		if (fl_wire_open(g, n, MAXLEN, NULL, &m) == 0) {
			all = 0;
			fl_wire_msg_fini(&m);
		}
	}
	CHECK(all);
	/* structurally valid protobuf prefixes of an envelope with random tails */
	all = 1;
	for (int t = 0; t < 500; t++) {
		size_t cut = (size_t)fl_rng_below(&r, len);
		memcpy(g, buf, cut < sizeof g ? cut : sizeof g);
		size_t n = cut < sizeof g ? cut : sizeof g;
		size_t tail = (size_t)fl_rng_below(&r, 64);
		for (size_t i = 0; i < tail && n < sizeof g; i++)
			g[n++] = (uint8_t)fl_rng_u64(&r);
		if (fl_wire_open(g, n, MAXLEN, NULL, &m) == 0) {
			all = 0;
			fl_wire_msg_fini(&m);
		}
	}
	CHECK(all);
	free(buf);
	lora_adapter_free(a);
	priv_key_wipe(&k);
}

/* Packs a hand-built envelope (any version/type/body) signed by k. */
static uint8_t *raw_envelope(const priv_key *k, uint32_t version, uint32_t type,
                             const uint8_t *body, size_t blen, size_t *len)
{
	uint8_t sig[PRIV_SIG_BYTES];
	if (priv_envelope_sign(k, version, type, body, blen, sig) != 0)
		return NULL;
	Fedlora__Envelope env = FEDLORA__ENVELOPE__INIT;
	env.version = version;
	env.type = type;
	env.body.data = (uint8_t *)body;
	env.body.len = blen;
	env.signer.data = (uint8_t *)k->pk;
	env.signer.len = PRIV_PK_BYTES;
	env.signature.data = sig;
	env.signature.len = PRIV_SIG_BYTES;
	*len = fedlora__envelope__get_packed_size(&env);
	uint8_t *buf = malloc(*len);
	if (buf)
		fedlora__envelope__pack(&env, buf);
	return buf;
}

/* Random mutations of a valid Submit (bit flips, byte overwrites, inserted
 * and deleted runs, truncation, a varint length bumped): never a crash, never
 * a changed message accepted (run under `make asan` for memory errors). A
 * mutation that leaves the signed body intact may still open (e.g. an unknown
 * field appended to the envelope); its body must then equal the original. */
static void test_mutations_never_crash(void)
{
	priv_key k;
	CHECK_RC(priv_key_generate(&k));
	lora_adapter *a = make_adapter(11), *b = make_adapter(12);
	uint8_t *buf = NULL, nonce[FL_NONCE_BYTES];
	size_t len = 0;
	CHECK_RC(make_submit(&k, a, &buf, &len, nonce));
	uint8_t *m = malloc(len + 64);
	fl_rng r;
	fl_rng_init(&r, 2024, 5);
	int bad = 0, opened = 0;
	for (int it = 0; it < 4000 && m; it++) {
		size_t n = len;
		memcpy(m, buf, len);
		int nmut = 1 + (int)fl_rng_below(&r, 3);
		for (int j = 0; j < nmut && n > 0; j++) {
			size_t pos = (size_t)fl_rng_below(&r, n);
			switch (fl_rng_below(&r, 5)) {
			case 0:
				m[pos] ^= (uint8_t)(1u << fl_rng_below(&r, 8));
				break;
			case 1:
				m[pos] = (uint8_t)fl_rng_u64(&r);
				break;
			case 2: { /* insert up to 8 random bytes */
				size_t ins = 1 + (size_t)fl_rng_below(&r, 8);
				if (n + ins > len + 64)
					break;
				memmove(m + pos + ins, m + pos, n - pos);
				for (size_t q = 0; q < ins; q++)
					m[pos + q] = (uint8_t)fl_rng_u64(&r);
				n += ins;
				break;
			}
			case 3: { /* delete a run */
				size_t del = 1 + (size_t)fl_rng_below(&r, 8);
				if (pos + del > n)
					del = n - pos;
				memmove(m + pos, m + pos + del, n - pos - del);
				n -= del;
				break;
			}
			default:
				n = pos; /* truncate */
				break;
			}
		}
		fl_wire_msg w;
		if (fl_wire_open(m, n, MAXLEN, NULL, &w) == 0) {
			opened++;
			Fedlora__Submit *s = FL_WIRE_BODY(&w, Fedlora__Submit, FL_MSG_SUBMIT);
			if (!s || fl_wire_check_submit(s, "run-1", 3) != 0 ||
			    memcmp(s->nonce.data, nonce, FL_NONCE_BYTES) != 0 ||
			    fl_wire_tensors_to_adapter(s->tensors, s->n_tensors, FL_WIRE_AB, b) !=
			        0 ||
			    memcmp(a->params, b->params, (a->n_a + a->n_b) * sizeof(float)) != 0)
				bad++;
			fl_wire_msg_fini(&w);
		}
	}
	CHECK(bad == 0);
	CHECK(opened < 400); /* almost every mutation is refused */
	free(m);
	free(buf);
	lora_adapter_free(a);
	lora_adapter_free(b);
	priv_key_wipe(&k);
}

static void test_bad_versions_types_bodies(void)
{
	priv_key k, other;
	CHECK_RC(priv_key_generate(&k));
	CHECK_RC(priv_key_generate(&other));
	Fedlora__Wait w = FEDLORA__WAIT__INIT;
	w.retry_after_ms = 500;
	uint8_t body[64];
	size_t blen = fedlora__wait__pack(&w, body), len;
	fl_wire_msg m;
	uint8_t *e = raw_envelope(&k, FL_WIRE_VERSION, FL_MSG_WAIT, body, blen, &len);
	CHECK_RC(fl_wire_open(e, len, MAXLEN, NULL, &m));
	CHECK(m.type == FL_MSG_WAIT && ((Fedlora__Wait *)m.body)->retry_after_ms == 500);
	fl_wire_msg_fini(&m);
	free(e);
	e = raw_envelope(&k, 2, FL_MSG_WAIT, body, blen, &len);
	CHECK(fl_wire_open(e, len, MAXLEN, NULL, &m) == FL_EFORMAT);
	free(e);
	e = raw_envelope(&k, FL_WIRE_VERSION, 42, body, blen, &len);
	CHECK(fl_wire_open(e, len, MAXLEN, NULL, &m) == FL_EFORMAT);
	free(e);
	e = raw_envelope(&k, FL_WIRE_VERSION, 0, body, blen, &len);
	CHECK(fl_wire_open(e, len, MAXLEN, NULL, &m) == FL_EFORMAT);
	free(e);
	/* correctly signed garbage body: does not unpack */
	uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	e = raw_envelope(&k, FL_WIRE_VERSION, FL_MSG_SUBMIT, junk, sizeof junk, &len);
	CHECK(fl_wire_open(e, len, MAXLEN, NULL, &m) == FL_EFORMAT);
	free(e);
	/* a length-delimited field claiming far more bytes than exist */
	uint8_t huge[] = {0x2a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02};
	e = raw_envelope(&k, FL_WIRE_VERSION, FL_MSG_SUBMIT, huge, sizeof huge, &len);
	CHECK(fl_wire_open(e, len, MAXLEN, NULL, &m) == FL_EFORMAT);
	free(e);
	/* a Hello whose client_key is not the signer's */
	Fedlora__Hello h = FEDLORA__HELLO__INIT;
	h.client_key.data = other.pk;
	h.client_key.len = PRIV_PK_BYTES;
	h.num_samples = 10;
	uint8_t *buf = NULL;
	CHECK_RC(fl_wire_seal(&h.base, FL_MSG_HELLO, &k, &buf, &len));
	CHECK(fl_wire_open(buf, len, MAXLEN, NULL, &m) == FL_EKEY);
	free(buf);
	h.client_key.data = k.pk;
	CHECK_RC(fl_wire_seal(&h.base, FL_MSG_HELLO, &k, &buf, &len));
	CHECK_RC(fl_wire_open(buf, len, MAXLEN, NULL, &m));
	if (m.body) {
		CHECK_RC(fl_wire_check_hello((Fedlora__Hello *)m.body, "run-1"));
		((Fedlora__Hello *)m.body)->num_samples = -1;
		CHECK(fl_wire_check_hello((Fedlora__Hello *)m.body, "run-1") == FL_EFORMAT);
	}
	fl_wire_msg_fini(&m);
	free(buf);
	/* a Hello naming another run */
	h.run_id = "old-run";
	CHECK_RC(fl_wire_seal(&h.base, FL_MSG_HELLO, &k, &buf, &len));
	CHECK_RC(fl_wire_open(buf, len, MAXLEN, NULL, &m));
	if (m.body)
		CHECK(fl_wire_check_hello((Fedlora__Hello *)m.body, "run-1") == FL_ESTALE);
	fl_wire_msg_fini(&m);
	free(buf);
	/* a Welcome whose coordinator key is someone else's */
	Fedlora__Welcome wl = FEDLORA__WELCOME__INIT;
	wl.run_id = "run-1";
	wl.coordinator_key.data = other.pk;
	wl.coordinator_key.len = PRIV_PK_BYTES;
	CHECK_RC(fl_wire_seal(&wl.base, FL_MSG_WELCOME, &k, &buf, &len));
	CHECK(fl_wire_open(buf, len, MAXLEN, NULL, &m) == FL_EKEY);
	free(buf);
	priv_key_wipe(&k);
	priv_key_wipe(&other);
}

static void test_body_checks(void)
{
	CHECK_RC(fl_wire_run_id_valid("run-20261128-abc"));
	CHECK(fl_wire_run_id_valid("") == FL_EFORMAT);
	CHECK(fl_wire_run_id_valid("has space") == FL_EFORMAT);
	CHECK(fl_wire_run_id_valid("tab\t") == FL_EFORMAT);
	char longid[100];
	memset(longid, 'a', sizeof longid - 1);
	longid[sizeof longid - 1] = 0;
	CHECK(fl_wire_run_id_valid(longid) == FL_EFORMAT);
	CHECK(fl_wire_check_run(NULL, "a") == FL_ESTALE);

	Fedlora__Task t = FEDLORA__TASK__INIT;
	Fedlora__TrainParams tp = FEDLORA__TRAIN_PARAMS__INIT;
	Fedlora__DpParams dp = FEDLORA__DP_PARAMS__INIT;
	Fedlora__Tensor tt = FEDLORA__TENSOR__INIT, *tv[1] = {&tt};
	t.run_id = "run-1";
	t.round = 5;
	t.train = &tp;
	t.dp = &dp;
	t.n_tensors = 1;
	t.tensors = tv;
	tp.local_steps = 10;
	tp.batch_size = 32;
	tp.lr = 0.01;
	CHECK_RC(fl_wire_check_task(&t, "run-1", 4));
	CHECK(fl_wire_check_task(&t, "run-1", 5) == FL_ESTALE); /* already trained */
	CHECK(fl_wire_check_task(&t, "run-2", 0) == FL_ESTALE);
	tp.lr = NAN;
	CHECK(fl_wire_check_task(&t, "run-1", 0) == FL_EFORMAT);
	tp.lr = 0.01;
	dp.mode = 1;
	dp.clip = 1.0;
	dp.noise = 1.1;
	dp.q = 0.01;
	CHECK_RC(fl_wire_check_task(&t, "run-1", 0));
	dp.q = 1.5;
	CHECK(fl_wire_check_task(&t, "run-1", 0) == FL_EFORMAT);
	dp.q = 0.01;
	dp.mode = 7;
	CHECK(fl_wire_check_task(&t, "run-1", 0) == FL_EFORMAT);
	dp.mode = 0;
	t.train = NULL;
	CHECK(fl_wire_check_task(&t, "run-1", 0) == FL_EFORMAT);

	Fedlora__Submit s = FEDLORA__SUBMIT__INIT;
	uint8_t nonce[FL_NONCE_BYTES] = {1};
	s.run_id = "run-1";
	s.round = 2;
	s.nonce.data = nonce;
	s.nonce.len = 8;
	s.num_samples = 3;
	CHECK(fl_wire_check_submit(&s, "run-1", 2) == FL_EFORMAT);
	s.nonce.len = FL_NONCE_BYTES;
	CHECK_RC(fl_wire_check_submit(&s, "run-1", 2));
	s.num_samples = 0;
	CHECK(fl_wire_check_submit(&s, "run-1", 2) == FL_EFORMAT);
}

static void test_nonce_set(void)
{
	fl_nonce_set *s = NULL;
	CHECK_RC(fl_nonce_set_new(&s));
	if (!s)
		return;
	static uint8_t n[1000][FL_NONCE_BYTES];
	int all = 1;
	for (int i = 0; i < 1000; i++) {
		fl_wire_nonce(n[i]);
		all &= fl_nonce_set_add(s, n[i], FL_NONCE_BYTES) == 0;
	}
	CHECK(all);
	CHECK(fl_nonce_set_count(s) == 1000);
	all = 1;
	for (int i = 0; i < 1000; i++)
		all &= fl_nonce_set_add(s, n[i], FL_NONCE_BYTES) == FL_EREPLAY;
	CHECK(all);
	CHECK(fl_nonce_set_add(s, n[0], 16) == FL_EFORMAT);
	uint8_t near[FL_NONCE_BYTES];
	memcpy(near, n[5], FL_NONCE_BYTES);
	near[FL_NONCE_BYTES - 1] ^= 1;
	CHECK_RC(fl_nonce_set_add(s, near, FL_NONCE_BYTES));
	fl_nonce_set_clear(s);
	CHECK(fl_nonce_set_count(s) == 0);
	CHECK_RC(fl_nonce_set_add(s, n[0], FL_NONCE_BYTES));
	fl_nonce_set_free(s);
	fl_nonce_set_free(NULL);
}

static void test_tensors_roundtrip_dtypes(void)
{
	lora_adapter *a = make_adapter(4), *b = make_adapter(5);
	fl_wire_tensors ts;
	/* F32: exact */
	CHECK_RC(fl_wire_tensors_from_adapter(a, FL_WIRE_AB, FL_DTYPE_F32, &ts));
	CHECK(ts.n == 6);
	CHECK(!strcmp(ts.t[0]->name, "layers.0.lora_A.weight"));
	CHECK(!strcmp(ts.t[5]->name, "layers.2.lora_B.weight"));
	CHECK(ts.t[0]->shape[0] == 4 && ts.t[0]->shape[1] == 16);
	CHECK(ts.t[5]->shape[0] == 20 && ts.t[5]->shape[1] == 4);
	CHECK_RC(fl_wire_tensors_to_adapter(ts.t, ts.n, FL_WIRE_AB, b));
	CHECK(memcmp(a->params, b->params, (a->n_a + a->n_b) * sizeof(float)) == 0);
	fl_wire_tensors_fini(&ts);
	/* BF16 / F16: each value equals the converter's rounding */
	fl_dtype dts[2] = {FL_DTYPE_BF16, FL_DTYPE_F16};
	for (int d = 0; d < 2; d++) {
		CHECK_RC(fl_wire_tensors_from_adapter(a, FL_WIRE_AB, dts[d], &ts));
		CHECK(ts.t[0]->chunks[0].len == 4 * 16 * 2);
		CHECK_RC(fl_wire_tensors_to_adapter(ts.t, ts.n, FL_WIRE_AB, b));
		int all = 1;
		double maxrel = 0;
		for (size_t i = 0; i < a->n_a + a->n_b; i++) {
			float x = a->params[i];
			float want = d == 0 ? fl_bf16_to_f32(fl_f32_to_bf16(x))
			                    : fl_f16_to_f32(fl_f32_to_f16(x));
			all &= b->params[i] == want;
			double rel = fabs((double)b->params[i] - x) / fabs((double)x);
			if (rel > maxrel)
				maxrel = rel;
		}
		CHECK(all);
		CHECK(maxrel <= (d == 0 ? 1.0 / 256 : 1.0 / 2048) + 1e-12);
		fl_wire_tensors_fini(&ts);
	}
	/* B only (ffa uploads): A of dst untouched */
	lora_adapter *c = make_adapter(6);
	CHECK_RC(fl_wire_tensors_from_adapter(a, FL_WIRE_B, FL_DTYPE_F32, &ts));
	CHECK(ts.n == 3);
	CHECK_RC(fl_wire_tensors_to_adapter(ts.t, ts.n, FL_WIRE_B, c));
	CHECK(memcmp(lora_adapter_b(c), lora_adapter_b(a), a->n_b * sizeof(float)) == 0);
	lora_adapter *c0 = make_adapter(6);
	CHECK(memcmp(lora_adapter_a(c), lora_adapter_a(c0), a->n_a * sizeof(float)) == 0);
	/* B tensors where A and B are expected, or A+B where only B is: refused */
	CHECK(fl_wire_tensors_to_adapter(ts.t, ts.n, FL_WIRE_AB, c) == FL_ESHAPE);
	fl_wire_tensors_fini(&ts);
	CHECK_RC(fl_wire_tensors_from_adapter(a, FL_WIRE_AB, FL_DTYPE_F32, &ts));
	CHECK(fl_wire_tensors_to_adapter(ts.t, ts.n, FL_WIRE_B, c) == FL_ESHAPE);
	fl_wire_tensors_fini(&ts);
	CHECK(fl_wire_tensors_from_adapter(a, 0, FL_DTYPE_F32, &ts) == FL_EINVAL);
	CHECK(fl_wire_tensors_from_adapter(a, FL_WIRE_AB, (fl_dtype)9, &ts) == FL_EINVAL);
	lora_adapter_free(a);
	lora_adapter_free(b);
	lora_adapter_free(c);
	lora_adapter_free(c0);
}

/* Each malformed variant is rejected with the expected code and leaves dst
 * unchanged. */
static void test_tensors_malformed(void)
{
	lora_adapter *a = make_adapter(7), *dst = make_adapter(8), *ref = make_adapter(8);
	fl_wire_tensors ts;
	size_t np = (a->n_a + a->n_b) * sizeof(float);
	CHECK_RC(fl_wire_tensors_from_adapter(a, FL_WIRE_AB, FL_DTYPE_F32, &ts));
	Fedlora__Tensor **t = ts.t;
	Fedlora__Tensor *save;
	char *savename;
	uint64_t s0;
	/* missing one */
	CHECK(fl_wire_tensors_to_adapter(t, ts.n - 1, FL_WIRE_AB, dst) == FL_ESHAPE);
	/* duplicate (one replaced by a copy of another) */
	save = t[2];
	t[2] = t[1];
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_ESHAPE);
	t[2] = save;
	/* unknown names */
	const char *badnames[] = {
	    "layers.9.lora_A.weight",  "layers.0.lora_C.weight", "layers.0", "",
	    "layers.0.lora_A.weightx", "xlayers.0.lora_A.weight"};
	savename = t[0]->name;
	for (size_t i = 0; i < sizeof badnames / sizeof badnames[0]; i++) {
		t[0]->name = (char *)badnames[i];
		CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_ESHAPE);
	}
	t[0]->name = savename;
	/* wrong shapes, including huge claimed ones */
	s0 = t[1]->shape[0];
	t[1]->shape[0] = s0 + 1;
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_ESHAPE);
	t[1]->shape[0] = (uint64_t)1 << 62;
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_ESHAPE);
	t[1]->shape[0] = s0;
	t[1]->n_shape = 1;
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_ESHAPE);
	t[1]->n_shape = 2;
	/* A and B swapped in shape */
	uint64_t tmp = t[4]->shape[0];
	t[4]->shape[0] = t[4]->shape[1];
	t[4]->shape[1] = tmp;
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_ESHAPE);
	t[4]->shape[1] = t[4]->shape[0];
	t[4]->shape[0] = tmp;
	/* unknown dtype; a dtype whose size disagrees with the bytes */
	t[3]->dtype = 0;
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_ESHAPE);
	t[3]->dtype = 77;
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_ESHAPE);
	t[3]->dtype = FL_DTYPE_BF16; /* bytes are F32-sized: twice too many */
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_EFORMAT);
	t[3]->dtype = FL_DTYPE_F32;
	/* byte counts: short, long, ragged, missing chunks */
	size_t l0 = t[0]->chunks[0].len;
	t[0]->chunks[0].len = l0 - 4;
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_EFORMAT);
	t[0]->chunks[0].len = l0 - 2;
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_EFORMAT);
	t[0]->chunks[0].len = l0 + 4;
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_EFORMAT);
	t[0]->chunks[0].len = (size_t)1 << 30; /* claimed huge chunk */
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_EFORMAT);
	t[0]->chunks[0].len = l0;
	t[0]->n_chunks = 0;
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_EFORMAT);
	t[0]->n_chunks = 1;
	/* NaN and Inf, F32 */
	float *p0 = (float *)t[2]->chunks[0].data;
	float v0 = p0[3];
	p0[3] = NAN;
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_ENONFINITE);
	p0[3] = -INFINITY;
	CHECK(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst) == FL_ENONFINITE);
	p0[3] = v0;
	CHECK(memcmp(dst->params, ref->params, np) == 0); /* nothing written so far */
	/* split into several chunks is fine */
	ProtobufCBinaryData three[3], *orig = t[1]->chunks;
	size_t L = orig[0].len;
	three[0].data = orig[0].data;
	three[0].len = 8;
	three[1].data = orig[0].data + 8;
	three[1].len = 0;
	three[2].data = orig[0].data + 8;
	three[2].len = L - 8;
	t[1]->chunks = three;
	t[1]->n_chunks = 3;
	CHECK_RC(fl_wire_tensors_to_adapter(t, ts.n, FL_WIRE_AB, dst));
	CHECK(memcmp(dst->params, a->params, np) == 0);
	t[1]->chunks = orig;
	t[1]->n_chunks = 1;
	fl_wire_tensors_fini(&ts);
	/* NaN / Inf in BF16 and F16 encodings */
	lora_adapter_copy(dst, ref);
	fl_dtype dts[2] = {FL_DTYPE_BF16, FL_DTYPE_F16};
	for (int d = 0; d < 2; d++) {
		CHECK_RC(fl_wire_tensors_from_adapter(a, FL_WIRE_AB, dts[d], &ts));
		uint8_t *q = ts.t[5]->chunks[0].data;
		q[1] = d == 0 ? 0x7f : 0x7c; /* Inf exponent, element 0 */
		q[0] = d == 0 ? 0x80 : 0x00;
		CHECK(fl_wire_tensors_to_adapter(ts.t, ts.n, FL_WIRE_AB, dst) == FL_ENONFINITE);
		q[0] |= 1; /* NaN */
		CHECK(fl_wire_tensors_to_adapter(ts.t, ts.n, FL_WIRE_AB, dst) == FL_ENONFINITE);
		fl_wire_tensors_fini(&ts);
	}
	CHECK(memcmp(dst->params, ref->params, np) == 0);
	lora_adapter_free(a);
	lora_adapter_free(dst);
	lora_adapter_free(ref);
}

static void test_half_rounding(void)
{
	/* bf16: ties to even */
	CHECK(fl_f32_to_bf16(1.0f) == 0x3f80);
	CHECK(fl_f32_to_bf16(fl_bits_f32(0x3f808000u)) == 0x3f80); /* tie, even down */
	CHECK(fl_f32_to_bf16(fl_bits_f32(0x3f818000u)) == 0x3f82); /* tie, even up */
	CHECK(fl_f32_to_bf16(fl_bits_f32(0x3f808001u)) == 0x3f81);
	CHECK(fl_f32_to_bf16(INFINITY) == 0x7f80);
	CHECK(fl_f32_to_bf16(fl_bits_f32(0x7f7fffffu)) == 0x7f80); /* FLT_MAX -> Inf */
	CHECK(isnan(fl_bf16_to_f32(fl_f32_to_bf16(NAN))));
	CHECK(isnan(fl_bf16_to_f32(fl_f32_to_bf16(fl_bits_f32(0x7f800001u))))); /* sNaN kept NaN */
	CHECK(fl_bf16_to_f32(0xc040) == -3.0f);
	/* f16 */
	CHECK(fl_f32_to_f16(1.0f) == 0x3c00);
	CHECK(fl_f32_to_f16(-2.0f) == 0xc000);
	CHECK(fl_f32_to_f16(65504.0f) == 0x7bff);
	CHECK(fl_f32_to_f16(65519.0f) == 0x7bff);
	CHECK(fl_f32_to_f16(65520.0f) == 0x7c00);
	CHECK(fl_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00); /* tie -> even */
	CHECK(fl_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02); /* tie -> even up */
	CHECK(fl_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001);  /* smallest subnormal */
	CHECK(fl_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000);  /* tie -> even zero */
	CHECK(fl_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001);
	CHECK(fl_f32_to_f16(ldexpf(1.0f, -14)) == 0x0400); /* smallest normal */
	CHECK(fl_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
	CHECK(fl_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
	CHECK(fl_f16_to_f32(0x7c00) == INFINITY);
	CHECK(isnan(fl_f16_to_f32(fl_f32_to_f16(NAN))));
	CHECK(fl_f32_to_f16(-0.0f) == 0x8000);
	/* exhaustive: every f16 value converts to float and back unchanged */
	int all = 1;
	for (uint32_t h = 0; h < 0x10000; h++) {
		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
			continue; /* NaNs: payload may be quieted */
		all &= fl_f32_to_f16(fl_f16_to_f32((uint16_t)h)) == h;
	}
	CHECK(all);
	all = 1;
	for (uint32_t h = 0; h < 0x10000; h++) {
		if ((h & 0x7f80) == 0x7f80 && (h & 0x7f))
			continue;
		all &= fl_f32_to_bf16(fl_bf16_to_f32((uint16_t)h)) == h;
	}
	CHECK(all);
	/* f16 rounding against a double-precision reference on random floats */
	fl_rng r;
	fl_rng_init(&r, 3, 3);
	all = 1;
	for (int i = 0; i < 100000; i++) {
		float x = (float)(fl_rng_normal(&r) * ldexp(1.0, (int)fl_rng_below(&r, 40) - 26));
		float y = fl_f16_to_f32(fl_f32_to_f16(x));
		/* y must be a nearest f16: no f16 neighbour is strictly closer */
		uint16_t h = fl_f32_to_f16(x);
		float up = fl_f16_to_f32((uint16_t)(h + 1)), dn = fl_f16_to_f32((uint16_t)(h - 1));
		double e = fabs((double)y - x);
		if ((h & 0x7fff) != 0x7bff && (h & 0x7fff) != 0 && fabs((double)up - x) < e)
			all = 0;
		if ((h & 0x7fff) != 0 && fabs((double)dn - x) < e)
			all = 0;
	}
	CHECK(all);
}

static const test_case cases[] = {
    TEST(test_seal_open_roundtrip),
    TEST(test_flipped_bytes_rejected),
    TEST(test_truncated_and_garbage),
    TEST(test_mutations_never_crash),
    TEST(test_bad_versions_types_bodies),
    TEST(test_body_checks),
    TEST(test_nonce_set),
    TEST(test_tensors_roundtrip_dtypes),
    TEST(test_tensors_malformed),
    TEST(test_half_rounding),
    {0},
};

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		return 1;
	return test_main(argc, argv, cases);
}
