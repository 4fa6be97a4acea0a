/*
 * core/wire.h — signed envelopes and tensors on the wire (proto/fedlora.proto).
 *
 * Sending: build a body message (e.g. Fedlora__Submit from the generated
 * build/gen/fedlora.pb-c.h), then fl_wire_seal() packs it, signs it with the
 * sender's key (privacy/sign.h) and returns the packed Envelope, either as a
 * malloc'd buffer or as an nng_msg ready for nng_sendmsg / nng_aio_set_msg.
 *
 * Receiving: fl_wire_open() takes the raw bytes of a message, refuses anything
 * over max_len before parsing, unpacks the Envelope with protobuf-c, checks the
 * version and the lengths of signer and signature, verifies the signature
 * against the embedded signer key (and, if given, that the signer is the
 * expected one), and only then unpacks the body as the message of its type.
 * The result is an fl_wire_msg that owns the unpacked body.
 *
 * Adapters: fl_wire_tensors_from_adapter() turns all A and/or all B of an
 * adapter into Tensor messages (F32, BF16 or F16, chunked below 2^30 bytes);
 * fl_wire_tensors_to_adapter() fills an existing adapter of the expected shape
 * from received tensors and rejects unknown, missing or duplicate names and
 * wrong shapes or dtypes (FL_ESHAPE), bad byte counts or chunking (FL_EFORMAT)
 * and NaN/Inf (FL_ENONFINITE). Lengths in a message are never trusted: every
 * count is checked against the adapter before anything is read.
 *
 * Checks the coordinator and client use on unpacked bodies (run id, round,
 * nonce, key fields) return FL_ESTALE / FL_EFORMAT / FL_EKEY, and a nonce set
 * detects replays (FL_EREPLAY).
 *
 * Does not: decide whether a signer is admitted (allow lists: privacy/sign.h),
 * send or receive (core/net.h), or keep any state between calls.
 *
 * Limits: one envelope's body is one protobuf bytes field, so a message is at
 * most 2 GiB (fl_wire_seal refuses larger bodies with FL_ETOOBIG); chunking
 * keeps every field inside the body below 2^30 bytes. Opening copies the body
 * twice (protobuf-c copies bytes fields): peak memory is about three times the
 * message. Raw tensor bytes are little-endian; big-endian hosts are refused at
 * compile time.
 */
#ifndef FL_CORE_WIRE_H
#define FL_CORE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "fedlora.pb-c.h"
#include "lora/adapter.h"
#include "privacy/sign.h"

#define FL_WIRE_VERSION 1
/* Ceiling of one tensor chunk on the wire (receivers accept < 2^30). */
#define FL_WIRE_CHUNK_MAX ((size_t)1 << 30)
/* Chunk size senders use: 256 MiB, a multiple of every element size. */
#define FL_WIRE_CHUNK_BYTES ((size_t)1 << 28)
#define FL_NONCE_BYTES      24 /* random bytes per Submit */
#define FL_RUN_ID_MAX       64 /* longest run id accepted */

#define FL_WIRE_WUR __attribute__((warn_unused_result))

/* Message types (= MsgType of the .proto, checked at compile time in wire.c). */
typedef enum fl_msg_type {
	FL_MSG_HELLO = 1,
	FL_MSG_WELCOME = 2,
	FL_MSG_REJECT = 3,
	FL_MSG_GET_TASK = 4,
	FL_MSG_TASK = 5,
	FL_MSG_WAIT = 6,
	FL_MSG_DONE = 7,
	FL_MSG_SUBMIT = 8,
	FL_MSG_ACK = 9,
	FL_MSG_SA_UP = 10,   /* secure aggregation, client -> coordinator */
	FL_MSG_SA_DOWN = 11, /* secure aggregation, coordinator -> client */
} fl_msg_type;

/* Tensor element types (= DType of the .proto). */
typedef enum fl_dtype { FL_DTYPE_F32 = 1, FL_DTYPE_BF16 = 2, FL_DTYPE_F16 = 3 } fl_dtype;

/* Which factors of an adapter a tensor set carries. */
#define FL_WIRE_A  1
#define FL_WIRE_B  2
#define FL_WIRE_AB (FL_WIRE_A | FL_WIRE_B)

/* "hello", "task", ...; "unknown" for other values. */
const char *fl_msg_type_name(uint32_t type);
/* Bytes per element of a dtype; 0 for an unknown dtype. */
size_t fl_dtype_size(uint32_t dtype);
/* "f32" | "bf16" | "f16" -> dtype (FL_EINVAL otherwise). */
int fl_dtype_parse(const char *s, fl_dtype *out);
/* The protobuf-c descriptor of a type's body message, NULL if unknown. */
const ProtobufCMessageDescriptor *fl_msg_descriptor(uint32_t type);

/* ---- sealing ---- */

/* Packs `body` (a message whose descriptor matches `type`, else FL_EINVAL),
 * signs it with k and returns the packed Envelope in a malloc'd buffer *out
 * of *out_len bytes; the caller frees it with free(). */
int fl_wire_seal(const ProtobufCMessage *body, uint32_t type, const priv_key *k, uint8_t **out,
                 size_t *out_len);
/* The same into a new nng_msg; the caller owns *out until nng_sendmsg /
 * nng_aio_set_msg + a successful send takes it, and frees it with
 * nng_msg_free otherwise. */
int fl_wire_seal_msg(const ProtobufCMessage *body, uint32_t type, const priv_key *k, nng_msg **out);

/* ---- opening ---- */

typedef struct fl_wire_msg {
	uint32_t type;                 /* fl_msg_type */
	uint8_t signer[PRIV_PK_BYTES]; /* verified signer key */
	size_t wire_len;               /* bytes of the whole envelope */
	ProtobufCMessage *body;        /* unpacked body; cast by type */
} fl_wire_msg;

/* Convenience casts; NULL when the type differs. */
#define FL_WIRE_BODY(m, T, TYPE) ((m)->type == (TYPE) ? (T *)(m)->body : (T *)NULL)

/* Opens a received envelope of len bytes at buf (the caller keeps buf).
 * Order of checks: len <= max_len (FL_ETOOBIG), Envelope unpacks (FL_EFORMAT),
 * version == FL_WIRE_VERSION (FL_EFORMAT), signer 32 and signature 64 bytes
 * (FL_EFORMAT), known type (FL_EFORMAT), expect_signer (if not NULL) equals
 * the signer (FL_EKEY), signature verifies (FL_ESIG), body unpacks as the
 * type's message (FL_EFORMAT), key fields of Hello/Welcome equal the signer
 * (FL_EKEY). On success *m owns the body; release it with fl_wire_msg_fini.
 * On failure *m is zeroed and owns nothing. */
int fl_wire_open(const void *buf, size_t len, size_t max_len, const uint8_t *expect_signer,
                 fl_wire_msg *m) FL_WIRE_WUR;
/* The same on an nng_msg's body; the caller keeps (and frees) msg. */
int fl_wire_open_msg(nng_msg *msg, size_t max_len, const uint8_t *expect_signer,
                     fl_wire_msg *m) FL_WIRE_WUR;
/* The same, but a signer not in `allow` is refused with FL_EKEY before the
 * signature is verified and before the body is parsed: a peer whose key is
 * not admitted cannot make the coordinator hash or parse a large message.
 * allow NULL admits every key (--enroll-any). */
int fl_wire_open_allowed(const void *buf, size_t len, size_t max_len, const priv_allow *allow,
                         fl_wire_msg *m) FL_WIRE_WUR;
int fl_wire_open_msg_allowed(nng_msg *msg, size_t max_len, const priv_allow *allow,
                             fl_wire_msg *m) FL_WIRE_WUR;
/* Frees the unpacked body (protobuf_c_message_free_unpacked) and zeroes *m.
 * Safe on a zeroed or already finished m. */
void fl_wire_msg_fini(fl_wire_msg *m);

/* ---- body checks (peer input; all return 0 or an FL_E* reason) ---- */

/* A run id is 1..FL_RUN_ID_MAX printable ASCII characters, no spaces. */
int fl_wire_run_id_valid(const char *run_id);
/* FL_ESTALE unless got equals expected (both non-NULL). */
int fl_wire_check_run(const char *got, const char *expected) FL_WIRE_WUR;
/* A Submit for (run_id, round): run id and round must match (FL_ESTALE), the
 * nonce must be FL_NONCE_BYTES (FL_EFORMAT), num_samples > 0 (FL_EFORMAT). */
int fl_wire_check_submit(const Fedlora__Submit *s, const char *run_id, uint64_t round) FL_WIRE_WUR;
/* A Task received by a client that trained up to last_round_seen: the run id
 * must match (FL_ESTALE) and round > last_round_seen (FL_ESTALE), train and
 * dp parameters present and sane (FL_EFORMAT). */
int fl_wire_check_task(const Fedlora__Task *t, const char *run_id,
                       uint64_t last_round_seen) FL_WIRE_WUR;
/* A Hello: client_key is 32 bytes (open already checked it equals the signer),
 * run_id empty or equal to run_id (FL_ESTALE), num_samples >= 0. */
int fl_wire_check_hello(const Fedlora__Hello *h, const char *run_id) FL_WIRE_WUR;

/* Fresh random nonce (libsodium randombytes). */
void fl_wire_nonce(uint8_t out[FL_NONCE_BYTES]);

/* A set of seen nonces (one round's, or a run's): open addressing over the
 * nonce bytes with a random hash key, grows as needed. Not thread-safe.
 * fl_nonce_set_free(NULL) is a no-op. */
typedef struct fl_nonce_set fl_nonce_set;
int fl_nonce_set_new(fl_nonce_set **out);
void fl_nonce_set_free(fl_nonce_set *s);
/* 0 and remembers the nonce if new; FL_EREPLAY if seen before; FL_EFORMAT if
 * len != FL_NONCE_BYTES; FL_ENOMEM. */
int fl_nonce_set_add(fl_nonce_set *s, const uint8_t *nonce, size_t len) FL_WIRE_WUR;
/* Forgets every nonce (e.g. when a new round starts). */
void fl_nonce_set_clear(fl_nonce_set *s);
size_t fl_nonce_set_count(const fl_nonce_set *s);

/* ---- tensors ---- */

/* Tensor messages built from an adapter, all in memory owned by this struct:
 * point a body's repeated field at them (submit.n_tensors = ts.n;
 * submit.tensors = ts.t) and call fl_wire_tensors_fini after packing. Never
 * pass them to protobuf_c_message_free_unpacked. */
typedef struct fl_wire_tensors {
	Fedlora__Tensor **t;
	size_t n;
	void *mem_; /* private */
} fl_wire_tensors;

/* Tensors NAME.lora_A.weight (r x in) for every matrix if which has FL_WIRE_A,
 * then NAME.lora_B.weight (out x r) if FL_WIRE_B, converted to dtype (F32
 * copies, BF16/F16 round to nearest even). */
int fl_wire_tensors_from_adapter(const lora_adapter *a, int which, fl_dtype dtype,
                                 fl_wire_tensors *out);
void fl_wire_tensors_fini(fl_wire_tensors *ts);

/* Fills the factors `which` of dst (shape fixed by the caller) from n
 * received tensors t. The set must be exactly the expected names, each once.
 * Any dtype is accepted and converted to float32. Errors: FL_ESHAPE (count,
 * names, duplicates, rank/shape, unknown dtype), FL_EFORMAT (byte counts, a
 * chunk of 2^30 bytes or more or not a whole number of elements),
 * FL_ENONFINITE. Everything, values included, is checked before dst is
 * written: on any error dst is unchanged. */
int fl_wire_tensors_to_adapter(Fedlora__Tensor *const *t, size_t n, int which,
                               lora_adapter *dst) FL_WIRE_WUR;

#endif
