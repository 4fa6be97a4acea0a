/*
 * core/wire.c — sealing and opening signed envelopes, body checks, the nonce
 * set, and adapter <-> Tensor conversion (core/wire.h).
 *
 * Everything that comes from a peer is checked before it is used: sizes
 * against limits before parsing, the signature before the body is parsed,
 * tensor names, shapes, dtypes, chunk sizes and finiteness before a single
 * value is written into the destination adapter.
 *
 * Known limit: the body travels as one protobuf bytes field of the Envelope,
 * so one message is at most FL_WIRE_BODY_MAX (2^31 - 1) bytes; tensor chunking
 * keeps every field inside the body below 2^30. Opening copies the body twice
 * (protobuf-c copies bytes fields), so peak memory is about three times the
 * message size.
 */
#include "core/wire.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/err.h"
#include "core/half.h"
#include "core/log.h"

#define FL_WIRE_BODY_MAX ((size_t)0x7fffffff - 1024)

_Static_assert((int)FL_MSG_HELLO == (int)FEDLORA__MSG_TYPE__MSG_HELLO, "MsgType");
_Static_assert((int)FL_MSG_WELCOME == (int)FEDLORA__MSG_TYPE__MSG_WELCOME, "MsgType");
_Static_assert((int)FL_MSG_REJECT == (int)FEDLORA__MSG_TYPE__MSG_REJECT, "MsgType");
_Static_assert((int)FL_MSG_GET_TASK == (int)FEDLORA__MSG_TYPE__MSG_GET_TASK, "MsgType");
_Static_assert((int)FL_MSG_TASK == (int)FEDLORA__MSG_TYPE__MSG_TASK, "MsgType");
_Static_assert((int)FL_MSG_WAIT == (int)FEDLORA__MSG_TYPE__MSG_WAIT, "MsgType");
_Static_assert((int)FL_MSG_DONE == (int)FEDLORA__MSG_TYPE__MSG_DONE, "MsgType");
_Static_assert((int)FL_MSG_SUBMIT == (int)FEDLORA__MSG_TYPE__MSG_SUBMIT, "MsgType");
_Static_assert((int)FL_MSG_ACK == (int)FEDLORA__MSG_TYPE__MSG_ACK, "MsgType");
_Static_assert((int)FL_MSG_SA_UP == (int)FEDLORA__MSG_TYPE__MSG_SA_UP, "MsgType");
_Static_assert((int)FL_MSG_SA_DOWN == (int)FEDLORA__MSG_TYPE__MSG_SA_DOWN, "MsgType");
_Static_assert((int)FL_DTYPE_F32 == (int)FEDLORA__DTYPE__DTYPE_F32, "DType");
_Static_assert((int)FL_DTYPE_BF16 == (int)FEDLORA__DTYPE__DTYPE_BF16, "DType");
_Static_assert((int)FL_DTYPE_F16 == (int)FEDLORA__DTYPE__DTYPE_F16, "DType");
_Static_assert(FL_WIRE_CHUNK_BYTES < FL_WIRE_CHUNK_MAX, "chunk size");
_Static_assert(FL_WIRE_CHUNK_BYTES % 4 == 0, "chunks hold whole elements");
_Static_assert(FL_NONCE_BYTES >= 16, "nonce length");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "raw tensor bytes are little-endian");

static const struct {
	uint32_t type;
	const char *name;
	const ProtobufCMessageDescriptor *desc;
} msg_types[] = {
    {FL_MSG_HELLO, "hello", &fedlora__hello__descriptor},
    {FL_MSG_WELCOME, "welcome", &fedlora__welcome__descriptor},
    {FL_MSG_REJECT, "reject", &fedlora__reject__descriptor},
    {FL_MSG_GET_TASK, "get_task", &fedlora__get_task__descriptor},
    {FL_MSG_TASK, "task", &fedlora__task__descriptor},
    {FL_MSG_WAIT, "wait", &fedlora__wait__descriptor},
    {FL_MSG_DONE, "done", &fedlora__done__descriptor},
    {FL_MSG_SUBMIT, "submit", &fedlora__submit__descriptor},
    {FL_MSG_ACK, "ack", &fedlora__ack__descriptor},
    {FL_MSG_SA_UP, "sa_up", &fedlora__sa_up__descriptor},
    {FL_MSG_SA_DOWN, "sa_down", &fedlora__sa_down__descriptor},
};
#define N_MSG_TYPES (sizeof msg_types / sizeof msg_types[0])

const char *fl_msg_type_name(uint32_t type)
{
	for (size_t i = 0; i < N_MSG_TYPES; i++)
		if (msg_types[i].type == type)
			return msg_types[i].name;
	return "unknown";
}

const ProtobufCMessageDescriptor *fl_msg_descriptor(uint32_t type)
{
	for (size_t i = 0; i < N_MSG_TYPES; i++)
		if (msg_types[i].type == type)
			return msg_types[i].desc;
	return NULL;
}

size_t fl_dtype_size(uint32_t dtype)
{
	switch (dtype) {
	case FL_DTYPE_F32:
		return 4;
	case FL_DTYPE_BF16:
	case FL_DTYPE_F16:
		return 2;
	default:
		return 0;
	}
}

int fl_dtype_parse(const char *s, fl_dtype *out)
{
	if (!s)
		return FL_EINVAL;
	if (!strcmp(s, "f32") || !strcmp(s, "F32"))
		*out = FL_DTYPE_F32;
	else if (!strcmp(s, "bf16") || !strcmp(s, "BF16"))
		*out = FL_DTYPE_BF16;
	else if (!strcmp(s, "f16") || !strcmp(s, "F16"))
		*out = FL_DTYPE_F16;
	else
		return FL_EINVAL;
	return 0;
}

/* ---- sealing ---- */

/* Packs and signs body; fills env (pointing into *bodybuf and sig, k->pk). */
static int seal_prepare(const ProtobufCMessage *body, uint32_t type, const priv_key *k,
                        Fedlora__Envelope *env, uint8_t **bodybuf, uint8_t sig[PRIV_SIG_BYTES])
{
	const ProtobufCMessageDescriptor *d = fl_msg_descriptor(type);
	*bodybuf = NULL;
	if (!body || !k || !d || body->descriptor != d)
		return FL_EINVAL;
	size_t blen = protobuf_c_message_get_packed_size(body);
	if (blen > FL_WIRE_BODY_MAX)
		return FL_ETOOBIG;
	uint8_t *b = malloc(blen ? blen : 1);
	if (!b)
		return FL_ENOMEM;
	if (protobuf_c_message_pack(body, b) != blen) {
		free(b);
		return FL_EINVAL;
	}
	int rv = priv_envelope_sign(k, FL_WIRE_VERSION, type, b, blen, sig);
	if (rv != 0) {
		free(b);
		return rv;
	}
	env->version = FL_WIRE_VERSION;
	env->type = type;
	env->body.data = b;
	env->body.len = blen;
	env->signer.data = (uint8_t *)k->pk;
	env->signer.len = PRIV_PK_BYTES;
	env->signature.data = sig;
	env->signature.len = PRIV_SIG_BYTES;
	*bodybuf = b;
	return 0;
}

int fl_wire_seal(const ProtobufCMessage *body, uint32_t type, const priv_key *k, uint8_t **out,
                 size_t *out_len)
{
	Fedlora__Envelope env = FEDLORA__ENVELOPE__INIT;
	uint8_t sig[PRIV_SIG_BYTES], *b = NULL;
	*out = NULL;
	*out_len = 0;
	int rv = seal_prepare(body, type, k, &env, &b, sig);
	if (rv != 0)
		return rv;
	size_t len = fedlora__envelope__get_packed_size(&env);
	uint8_t *buf = malloc(len);
	if (!buf) {
		free(b);
		return FL_ENOMEM;
	}
	fedlora__envelope__pack(&env, buf);
	free(b);
	*out = buf;
	*out_len = len;
	return 0;
}

int fl_wire_seal_msg(const ProtobufCMessage *body, uint32_t type, const priv_key *k, nng_msg **out)
{
	Fedlora__Envelope env = FEDLORA__ENVELOPE__INIT;
	uint8_t sig[PRIV_SIG_BYTES], *b = NULL;
	nng_msg *m = NULL;
	*out = NULL;
	int rv = seal_prepare(body, type, k, &env, &b, sig);
	if (rv != 0)
		return rv;
	size_t len = fedlora__envelope__get_packed_size(&env);
	if (nng_msg_alloc(&m, len) != 0) {
		free(b);
		return FL_ENOMEM;
	}
	fedlora__envelope__pack(&env, nng_msg_body(m));
	free(b);
	*out = m;
	return 0;
}

/* ---- opening ---- */

/* fl_wire_open with an optional allow list checked before the signature. */
static int wire_open(const void *buf, size_t len, size_t max_len, const uint8_t *expect_signer,
                     const priv_allow *allow, fl_wire_msg *m)
{
	Fedlora__Envelope *env = NULL;
	int rv;
	memset(m, 0, sizeof *m);
	if (len > max_len)
		return FL_ETOOBIG;
	if (len > 0 && !buf)
		return FL_EINVAL;
	env = fedlora__envelope__unpack(NULL, len, buf);
	if (!env)
		return FL_EFORMAT;
	if (env->version != FL_WIRE_VERSION || env->signer.len != PRIV_PK_BYTES ||
	    env->signature.len != PRIV_SIG_BYTES) {
		rv = FL_EFORMAT;
		goto fail;
	}
	const ProtobufCMessageDescriptor *d = fl_msg_descriptor(env->type);
	if (!d) {
		rv = FL_EFORMAT;
		goto fail;
	}
	if (expect_signer && sodium_memcmp(expect_signer, env->signer.data, PRIV_PK_BYTES) != 0) {
		rv = FL_EKEY;
		goto fail;
	}
	if (allow && !priv_allow_contains(allow, env->signer.data)) {
		rv = FL_EKEY;
		goto fail;
	}
	if ((rv = priv_envelope_verify(env->signer.data, env->version, env->type, env->body.data,
	                               env->body.len, env->signature.data)) != 0)
		goto fail;
	m->body = protobuf_c_message_unpack(d, NULL, env->body.len, env->body.data);
	if (!m->body) {
		rv = FL_EFORMAT;
		goto fail;
	}
	m->type = env->type;
	m->wire_len = len;
	memcpy(m->signer, env->signer.data, PRIV_PK_BYTES);
	/* Key fields inside the body must name the signer itself. */
	if (m->type == FL_MSG_HELLO) {
		const Fedlora__Hello *h = (const Fedlora__Hello *)m->body;
		if (h->client_key.len != PRIV_PK_BYTES ||
		    memcmp(h->client_key.data, m->signer, PRIV_PK_BYTES) != 0) {
			rv = FL_EKEY;
			goto fail;
		}
	} else if (m->type == FL_MSG_WELCOME) {
		const Fedlora__Welcome *w = (const Fedlora__Welcome *)m->body;
		if (w->coordinator_key.len != PRIV_PK_BYTES ||
		    memcmp(w->coordinator_key.data, m->signer, PRIV_PK_BYTES) != 0) {
			rv = FL_EKEY;
			goto fail;
		}
	}
	fedlora__envelope__free_unpacked(env, NULL);
	return 0;
fail:
	if (env)
		fedlora__envelope__free_unpacked(env, NULL);
	fl_wire_msg_fini(m);
	return rv;
}

int fl_wire_open(const void *buf, size_t len, size_t max_len, const uint8_t *expect_signer,
                 fl_wire_msg *m)
{
	return wire_open(buf, len, max_len, expect_signer, NULL, m);
}

int fl_wire_open_msg(nng_msg *msg, size_t max_len, const uint8_t *expect_signer, fl_wire_msg *m)
{
	if (!msg) {
		memset(m, 0, sizeof *m);
		return FL_EINVAL;
	}
	return wire_open(nng_msg_body(msg), nng_msg_len(msg), max_len, expect_signer, NULL, m);
}

int fl_wire_open_allowed(const void *buf, size_t len, size_t max_len, const priv_allow *allow,
                         fl_wire_msg *m)
{
	return wire_open(buf, len, max_len, NULL, allow, m);
}

int fl_wire_open_msg_allowed(nng_msg *msg, size_t max_len, const priv_allow *allow, fl_wire_msg *m)
{
	if (!msg) {
		memset(m, 0, sizeof *m);
		return FL_EINVAL;
	}
	return wire_open(nng_msg_body(msg), nng_msg_len(msg), max_len, NULL, allow, m);
}

void fl_wire_msg_fini(fl_wire_msg *m)
{
	if (!m)
		return;
	if (m->body)
		protobuf_c_message_free_unpacked(m->body, NULL);
	memset(m, 0, sizeof *m);
}

/* ---- body checks ---- */

int fl_wire_run_id_valid(const char *run_id)
{
	if (!run_id)
		return FL_EFORMAT;
	size_t n = strnlen(run_id, FL_RUN_ID_MAX + 1);
	if (n == 0 || n > FL_RUN_ID_MAX)
		return FL_EFORMAT;
	for (size_t i = 0; i < n; i++)
		if (run_id[i] <= 0x20 || run_id[i] >= 0x7f)
			return FL_EFORMAT;
	return 0;
}

int fl_wire_check_run(const char *got, const char *expected)
{
	if (!got || !expected || strcmp(got, expected) != 0)
		return FL_ESTALE;
	return 0;
}

int fl_wire_check_submit(const Fedlora__Submit *s, const char *run_id, uint64_t round)
{
	if (!s)
		return FL_EFORMAT;
	if (fl_wire_check_run(s->run_id, run_id) != 0 || s->round != round)
		return FL_ESTALE;
	if (s->nonce.len != FL_NONCE_BYTES || s->num_samples <= 0)
		return FL_EFORMAT;
	return 0;
}

int fl_wire_check_task(const Fedlora__Task *t, const char *run_id, uint64_t last_round_seen)
{
	if (!t)
		return FL_EFORMAT;
	if (fl_wire_check_run(t->run_id, run_id) != 0 || t->round <= last_round_seen)
		return FL_ESTALE;
	if (!t->train || !t->dp || t->n_tensors == 0)
		return FL_EFORMAT;
	const Fedlora__TrainParams *p = t->train;
	if (p->local_steps == 0 || p->batch_size == 0 || !isfinite(p->lr) || p->lr <= 0 ||
	    !isfinite(p->weight_decay) || p->weight_decay < 0 || p->optimizer > 1)
		return FL_EFORMAT;
	const Fedlora__DpParams *dp = t->dp;
	if (dp->mode > 2)
		return FL_EFORMAT;
	if (dp->mode != 0 && (!isfinite(dp->clip) || dp->clip <= 0 || !isfinite(dp->noise) ||
	                      dp->noise < 0 || !isfinite(dp->q) || dp->q <= 0 || dp->q > 1))
		return FL_EFORMAT;
	if (t->dtype_up != 0 && fl_dtype_size(t->dtype_up) == 0)
		return FL_EFORMAT;
	return 0;
}

int fl_wire_check_hello(const Fedlora__Hello *h, const char *run_id)
{
	if (!h)
		return FL_EFORMAT;
	if (h->client_key.len != PRIV_PK_BYTES)
		return FL_EFORMAT;
	if (h->run_id && h->run_id[0] && fl_wire_check_run(h->run_id, run_id) != 0)
		return FL_ESTALE;
	if (h->num_samples < 0)
		return FL_EFORMAT;
	return 0;
}

void fl_wire_nonce(uint8_t out[FL_NONCE_BYTES])
{
	/* randombytes_buf initializes its source itself if sodium_init failed */
	if (sodium_init() < 0)
		fl_log(FL_LOG_WARN, "wire", "sodium_init failed");
	randombytes_buf(out, FL_NONCE_BYTES);
}

/* ---- nonce set ---- */

typedef struct nonce_slot {
	uint8_t used;
	uint8_t v[FL_NONCE_BYTES];
} nonce_slot;

struct fl_nonce_set {
	nonce_slot *slots;
	size_t cap, n; /* cap is a power of two */
	uint8_t key[crypto_shorthash_KEYBYTES];
};

int fl_nonce_set_new(fl_nonce_set **out)
{
	fl_nonce_set *s = calloc(1, sizeof *s);
	*out = NULL;
	if (!s)
		return FL_ENOMEM;
	if (sodium_init() < 0) {
		free(s);
		return FL_ECRYPTO;
	}
	s->cap = 64;
	s->slots = calloc(s->cap, sizeof *s->slots);
	if (!s->slots) {
		free(s);
		return FL_ENOMEM;
	}
	crypto_shorthash_keygen(s->key);
	*out = s;
	return 0;
}

void fl_nonce_set_free(fl_nonce_set *s)
{
	if (!s)
		return;
	free(s->slots);
	free(s);
}

static size_t nonce_hash(const fl_nonce_set *s, const uint8_t *v)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t x = 0;
	crypto_shorthash(h, v, FL_NONCE_BYTES, s->key);
	for (int i = 0; i < 8; i++)
		x |= (uint64_t)h[i] << (8 * i);
	return (size_t)x;
}

/* Slot holding v, or the empty slot where it would go. */
static nonce_slot *nonce_find(nonce_slot *slots, size_t cap, size_t hash, const uint8_t *v)
{
	size_t i = hash & (cap - 1);
	for (;;) {
		if (!slots[i].used || memcmp(slots[i].v, v, FL_NONCE_BYTES) == 0)
			return &slots[i];
		i = (i + 1) & (cap - 1);
	}
}

static int nonce_grow(fl_nonce_set *s)
{
	size_t cap = s->cap * 2;
	nonce_slot *slots = calloc(cap, sizeof *slots);
	if (!slots)
		return FL_ENOMEM;
	for (size_t i = 0; i < s->cap; i++)
		if (s->slots[i].used)
			*nonce_find(slots, cap, nonce_hash(s, s->slots[i].v), s->slots[i].v) =
			    s->slots[i];
	free(s->slots);
	s->slots = slots;
	s->cap = cap;
	return 0;
}

int fl_nonce_set_add(fl_nonce_set *s, const uint8_t *nonce, size_t len)
{
	if (len != FL_NONCE_BYTES || !nonce)
		return FL_EFORMAT;
	nonce_slot *e = nonce_find(s->slots, s->cap, nonce_hash(s, nonce), nonce);
	if (e->used)
		return FL_EREPLAY;
	if (2 * (s->n + 1) > s->cap) {
		int rv = nonce_grow(s);
		if (rv != 0)
			return rv;
		e = nonce_find(s->slots, s->cap, nonce_hash(s, nonce), nonce);
	}
	e->used = 1;
	memcpy(e->v, nonce, FL_NONCE_BYTES);
	s->n++;
	return 0;
}

void fl_nonce_set_clear(fl_nonce_set *s)
{
	memset(s->slots, 0, s->cap * sizeof *s->slots);
	s->n = 0;
}

size_t fl_nonce_set_count(const fl_nonce_set *s)
{
	return s->n;
}

/* ---- tensors ---- */

/* Metadata of one tensor group: structs, names, shapes, chunk descriptors. */
typedef struct tensors_mem {
	uint8_t *data; /* all tensor bytes, one allocation */
	               /* followed in the same allocation as this struct by the tables */
} tensors_mem;

#define TNAME_MAX (LORA_NAME_MAX + 16)

int fl_wire_tensors_from_adapter(const lora_adapter *a, int which, fl_dtype dtype,
                                 fl_wire_tensors *out)
{
	memset(out, 0, sizeof *out);
	size_t es = fl_dtype_size(dtype);
	if (!a || es == 0 || (which & ~FL_WIRE_AB) || !(which & FL_WIRE_AB))
		return FL_EINVAL;
	int nf = ((which & FL_WIRE_A) ? 1 : 0) + ((which & FL_WIRE_B) ? 1 : 0);
	size_t nt = (size_t)a->n * (size_t)nf;
	/* Count chunks and bytes. */
	size_t nchunks = 0, nbytes = 0;
	for (int f = 0; f < 2; f++) {
		if (!(which & (f == 0 ? FL_WIRE_A : FL_WIRE_B)))
			continue;
		for (int i = 0; i < a->n; i++) {
			const lora_mat *mt = &a->mats[i];
			size_t elems = (size_t)a->r * (size_t)(f == 0 ? mt->in : mt->out);
			size_t bytes = elems * es;
			nchunks += (bytes + FL_WIRE_CHUNK_BYTES - 1) / FL_WIRE_CHUNK_BYTES;
			nbytes += bytes;
		}
	}
	size_t meta = sizeof(tensors_mem) + nt * sizeof(Fedlora__Tensor *) +
	              nt * sizeof(Fedlora__Tensor) + nt * TNAME_MAX + nt * 2 * sizeof(uint64_t) +
	              nchunks * sizeof(ProtobufCBinaryData);
	tensors_mem *mem = calloc(1, meta);
	if (!mem)
		return FL_ENOMEM;
	mem->data = malloc(nbytes ? nbytes : 1);
	if (!mem->data) {
		free(mem);
		return FL_ENOMEM;
	}
	/* Carve the tables; pointer-sized and 8-byte items first keep alignment. */
	uint8_t *p = (uint8_t *)(mem + 1);
	Fedlora__Tensor **tp = (Fedlora__Tensor **)p;
	p += nt * sizeof(Fedlora__Tensor *);
	Fedlora__Tensor *ts = (Fedlora__Tensor *)p;
	p += nt * sizeof(Fedlora__Tensor);
	uint64_t *shapes = (uint64_t *)p;
	p += nt * 2 * sizeof(uint64_t);
	ProtobufCBinaryData *chunks = (ProtobufCBinaryData *)p;
	p += nchunks * sizeof(ProtobufCBinaryData);
	char *names = (char *)p;

	size_t ti = 0, ci = 0, off = 0;
	for (int f = 0; f < 2; f++) {
		int flag = f == 0 ? FL_WIRE_A : FL_WIRE_B;
		if (!(which & flag))
			continue;
		for (int i = 0; i < a->n; i++, ti++) {
			const lora_mat *mt = &a->mats[i];
			Fedlora__Tensor *t = &ts[ti];
			fedlora__tensor__init(t);
			char *nm = names + ti * TNAME_MAX;
			int rv = lora_adapter_tensor_name(a, i, f == 0 ? 'A' : 'B', nm, TNAME_MAX);
			if (rv != 0) {
				free(mem->data);
				free(mem);
				return rv;
			}
			t->name = nm;
			t->shape = shapes + 2 * ti;
			t->n_shape = 2;
			t->shape[0] = (uint64_t)(f == 0 ? a->r : mt->out);
			t->shape[1] = (uint64_t)(f == 0 ? mt->in : a->r);
			t->dtype = (uint32_t)dtype;
			const float *src = f == 0 ? mt->A : mt->B;
			size_t elems = (size_t)t->shape[0] * (size_t)t->shape[1];
			uint8_t *dst = mem->data + off;
			if (dtype == FL_DTYPE_F32) {
				/* little-endian host (x86-64, aarch64): bytes as they are */
				memcpy(dst, src, elems * 4);
			} else {
				for (size_t e = 0; e < elems; e++) {
					uint16_t h = dtype == FL_DTYPE_BF16 ? fl_f32_to_bf16(src[e])
					                                    : fl_f32_to_f16(src[e]);
					dst[2 * e] = (uint8_t)h;
					dst[2 * e + 1] = (uint8_t)(h >> 8);
				}
			}
			size_t bytes = elems * es;
			t->chunks = chunks + ci;
			for (size_t c = 0; c < bytes; c += FL_WIRE_CHUNK_BYTES) {
				size_t len = bytes - c;
				if (len > FL_WIRE_CHUNK_BYTES)
					len = FL_WIRE_CHUNK_BYTES;
				chunks[ci].data = dst + c;
				chunks[ci].len = len;
				ci++;
				t->n_chunks++;
			}
			off += bytes;
			tp[ti] = t;
		}
	}
	out->t = tp;
	out->n = nt;
	out->mem_ = mem;
	return 0;
}

void fl_wire_tensors_fini(fl_wire_tensors *ts)
{
	if (!ts)
		return;
	tensors_mem *mem = ts->mem_;
	if (mem) {
		free(mem->data);
		free(mem);
	}
	memset(ts, 0, sizeof *ts);
}

/* 1 if every element of the raw little-endian data is finite. */
static int raw_finite(const uint8_t *d, size_t bytes, uint32_t dtype)
{
	if (dtype == FL_DTYPE_F32) {
		for (size_t i = 0; i + 4 <= bytes; i += 4) {
			uint32_t u = (uint32_t)d[i] | (uint32_t)d[i + 1] << 8 |
			             (uint32_t)d[i + 2] << 16 | (uint32_t)d[i + 3] << 24;
			if ((u & 0x7f800000u) == 0x7f800000u)
				return 0;
		}
	} else {
		uint16_t expmask = dtype == FL_DTYPE_BF16 ? 0x7f80u : 0x7c00u;
		for (size_t i = 0; i + 2 <= bytes; i += 2) {
			uint16_t u = (uint16_t)(d[i] | d[i + 1] << 8);
			if ((u & expmask) == expmask)
				return 0;
		}
	}
	return 1;
}

static void raw_decode(const uint8_t *d, size_t bytes, uint32_t dtype, float *out)
{
	if (dtype == FL_DTYPE_F32) {
		memcpy(out, d, bytes); /* little-endian host */
		return;
	}
	size_t n = bytes / 2;
	for (size_t i = 0; i < n; i++) {
		uint16_t u = (uint16_t)(d[2 * i] | d[2 * i + 1] << 8);
		out[i] = dtype == FL_DTYPE_BF16 ? fl_bf16_to_f32(u) : fl_f16_to_f32(u);
	}
}

/* Splits "NAME.lora_X.weight" -> matrix index and factor (0 = A, 1 = B). */
static int match_name(const lora_adapter *a, const char *name, int *mat, int *fac)
{
	static const char sa[] = ".lora_A.weight", sb[] = ".lora_B.weight";
	if (!name)
		return FL_ESHAPE;
	size_t n = strnlen(name, TNAME_MAX + 1);
	size_t sl = sizeof sa - 1;
	if (n > TNAME_MAX || n <= sl)
		return FL_ESHAPE;
	const char *suf = name + n - sl;
	if (!memcmp(suf, sa, sl))
		*fac = 0;
	else if (!memcmp(suf, sb, sl))
		*fac = 1;
	else
		return FL_ESHAPE;
	size_t base = n - sl;
	for (int i = 0; i < a->n; i++) {
		const char *mn = a->mats[i].name;
		if (strnlen(mn, LORA_NAME_MAX) == base && !memcmp(mn, name, base)) {
			*mat = i;
			return 0;
		}
	}
	return FL_ESHAPE;
}

int fl_wire_tensors_to_adapter(Fedlora__Tensor *const *t, size_t n, int which, lora_adapter *dst)
{
	if (!dst || (which & ~FL_WIRE_AB) || !(which & FL_WIRE_AB) || (n > 0 && !t))
		return FL_EINVAL;
	int nf = ((which & FL_WIRE_A) ? 1 : 0) + ((which & FL_WIRE_B) ? 1 : 0);
	size_t expect = (size_t)dst->n * (size_t)nf;
	if (n != expect)
		return FL_ESHAPE;
	if (n == 0)
		return 0;
	/* slot[f * n_mats + i] = index of the tensor for factor f of matrix i, +1 */
	size_t *slot = calloc(2 * (size_t)dst->n, sizeof *slot);
	if (!slot)
		return FL_ENOMEM;
	int rv = 0;
	for (size_t k = 0; k < n; k++) {
		const Fedlora__Tensor *tk = t[k];
		int mi, f;
		if (!tk || (rv = match_name(dst, tk->name, &mi, &f)) != 0) {
			rv = FL_ESHAPE;
			goto done;
		}
		if (!(which & (f == 0 ? FL_WIRE_A : FL_WIRE_B))) {
			rv = FL_ESHAPE; /* a factor that was not expected */
			goto done;
		}
		size_t *s = &slot[(size_t)f * dst->n + mi];
		if (*s) {
			rv = FL_ESHAPE; /* duplicate */
			goto done;
		}
		*s = k + 1;
		const lora_mat *mt = &dst->mats[mi];
		uint64_t r0 = f == 0 ? (uint64_t)dst->r : (uint64_t)mt->out;
		uint64_t r1 = f == 0 ? (uint64_t)mt->in : (uint64_t)dst->r;
		if (tk->n_shape != 2 || !tk->shape || tk->shape[0] != r0 || tk->shape[1] != r1) {
			rv = FL_ESHAPE;
			goto done;
		}
		size_t es = fl_dtype_size(tk->dtype);
		if (es == 0) {
			rv = FL_ESHAPE;
			goto done;
		}
		/* Expected bytes from the adapter's own dims, never from the message. */
		size_t want = (size_t)r0 * (size_t)r1 * es, got = 0;
		if (tk->n_chunks > 0 && !tk->chunks) {
			rv = FL_EFORMAT;
			goto done;
		}
		for (size_t c = 0; c < tk->n_chunks; c++) {
			size_t cl = tk->chunks[c].len;
			if (cl >= FL_WIRE_CHUNK_MAX || cl % es != 0 || cl > want - got ||
			    (cl > 0 && !tk->chunks[c].data)) {
				rv = FL_EFORMAT;
				goto done;
			}
			got += cl;
		}
		if (got != want) {
			rv = FL_EFORMAT;
			goto done;
		}
		for (size_t c = 0; c < tk->n_chunks; c++)
			if (!raw_finite(tk->chunks[c].data, tk->chunks[c].len, tk->dtype)) {
				rv = FL_ENONFINITE;
				goto done;
			}
	}
	/* Every expected slot is filled: n == expected and no duplicates. */
	for (int f = 0; f < 2; f++) {
		if (!(which & (f == 0 ? FL_WIRE_A : FL_WIRE_B)))
			continue;
		for (int i = 0; i < dst->n; i++) {
			const Fedlora__Tensor *tk = t[slot[(size_t)f * dst->n + i] - 1];
			float *out = f == 0 ? dst->mats[i].A : dst->mats[i].B;
			size_t es = fl_dtype_size(tk->dtype);
			for (size_t c = 0; c < tk->n_chunks; c++) {
				raw_decode(tk->chunks[c].data, tk->chunks[c].len, tk->dtype, out);
				out += tk->chunks[c].len / es;
			}
		}
	}
done:
	free(slot);
	return rv;
}
