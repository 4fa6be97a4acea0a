/*
 * tests/fuzz/wire_fuzz.c — libFuzzer target for what either side does with
 * bytes from the network: fl_wire_open (size limit, Envelope unpack,
 * version, signature, body unpack), then the checks production code applies
 * to that body type — fl_wire_check_hello (coordinator), _check_run on a
 * GetTask and an Ack, _check_task and _check_submit with the tensor
 * decoding into an adapter of a fixed shape (A and B, and B only as ffa
 * does), the run id of a Welcome, Wait and Done, the code of a Reject as the
 * client reads them. Any crash, sanitizer report or leak is a bug;
 * rejections are the expected outcome.
 *
 * The signature gate would stop almost every random input early, so the
 * first byte picks a mode: even -> the rest is a raw envelope (the Envelope
 * parser and the gate); odd -> the rest is a body of type (byte / 2) % 10,
 * which the harness signs with a fixed key into a valid envelope before
 * opening it, so the body parser, the checks and the tensor decoding see
 * fuzzed input behind a good signature. Production code has no fuzzing
 * switch. Seeds (tests/fuzz/corpus/wire/, scripts/fuzz-seeds.py) hold a valid
 * body of every type, run id "run", tensors of this adapter.
 *
 * Build and run: make fuzz-build; make fuzz FUZZ_S=600 (all targets) or
 * build-fuzz/fuzz/wire_fuzz tests/fuzz/corpus/wire. Line coverage of
 * core/wire.c over the seeds and the scratch corpus:
 * sh scripts/fuzz.sh cov wire core/wire.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/wire.h"

static lora_adapter *fuzz_adapter(void)
{
	static lora_adapter *a;
	if (!a) {
		const char *names[] = {"layers.0", "layers.1"};
		int in[] = {8, 4}, out[] = {4, 8};
		if (lora_adapter_new(&a, 2, names, in, out, 2, 4.0f) != 0)
			return NULL;
	}
	return a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A valid envelope around body bytes of `type`, signed with a fixed key. */
static uint8_t *sign_body(uint32_t type, const uint8_t *body, size_t blen, size_t *len)
{
	static priv_key k;
	static int have;
	uint8_t sig[PRIV_SIG_BYTES], seed[PRIV_SEED_BYTES];
	if (!have) {
		memset(seed, 7, sizeof seed);
		if (priv_key_from_seed(&k, seed) != 0)
			return NULL;
		have = 1;
	}
	if (priv_envelope_sign(&k, FL_WIRE_VERSION, type, body, blen, sig) != 0)
		return NULL;
	Fedlora__Envelope env = FEDLORA__ENVELOPE__INIT;
	env.version = FL_WIRE_VERSION;
	env.type = type;
	env.body.data = (uint8_t *)body;
	env.body.len = blen;
	env.signer.data = k.pk;
	env.signer.len = PRIV_PK_BYTES;
	env.signature.data = sig;
	env.signature.len = PRIV_SIG_BYTES;
	*len = fedlora__envelope__get_packed_size(&env);
	uint8_t *buf = malloc(*len);
	if (buf)
		fedlora__envelope__pack(&env, buf);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fl_wire_msg m;
	static volatile size_t sink;
	lora_adapter *a = fuzz_adapter();
	uint8_t *env = NULL;
	size_t elen = 0;
	int rv;
	if (!a || size < 1)
		return 0;
	if (data[0] & 1) {
		env = sign_body((uint32_t)(data[0] / 2) % 10, data + 1, size - 1, &elen);
		if (!env)
			return 0;
		rv = fl_wire_open(env, elen, (size_t)1 << 20, NULL, &m);
		free(env);
	} else {
		rv = fl_wire_open(data + 1, size - 1, (size_t)1 << 20, NULL, &m);
	}
	if (rv != 0)
		return 0;
	switch (m.type) {
	case FL_MSG_HELLO:
		(void)!fl_wire_check_hello((const Fedlora__Hello *)m.body, "run");
		break;
	case FL_MSG_WELCOME: {
		const Fedlora__Welcome *w = (const Fedlora__Welcome *)m.body;
		if (fl_wire_run_id_valid(w->run_id) == 0 && w->spec && w->spec->task)
			sink += strcmp(w->spec->task, "lm") + (w->spec->tokenizer_hash != NULL);
		break;
	}
	case FL_MSG_REJECT: {
		const Fedlora__Reject *rj = (const Fedlora__Reject *)m.body;
		int code = rj->code < 0 && rj->code > -100 ? rj->code : FL_EFORMAT;
		sink += strlen(fl_reason_name(code)) + (rj->text ? strlen(rj->text) : 0);
		break;
	}
	case FL_MSG_GET_TASK:
		(void)!fl_wire_check_run(((const Fedlora__GetTask *)m.body)->run_id, "run");
		break;
	case FL_MSG_TASK: {
		const Fedlora__Task *t = (const Fedlora__Task *)m.body;
		(void)!fl_wire_check_task(t, "run", 0);
		(void)!fl_wire_tensors_to_adapter(t->tensors, t->n_tensors, FL_WIRE_AB, a);
		break;
	}
	case FL_MSG_WAIT: {
		const Fedlora__Wait *w = (const Fedlora__Wait *)m.body;
		if (w->run_id && *w->run_id)
			sink += fl_wire_check_run(w->run_id, "run") != 0;
		break;
	}
	case FL_MSG_DONE: {
		const Fedlora__Done *d = (const Fedlora__Done *)m.body;
		if (d->run_id && *d->run_id)
			sink += fl_wire_check_run(d->run_id, "run") != 0;
		break;
	}
	case FL_MSG_SUBMIT: {
		const Fedlora__Submit *s = (const Fedlora__Submit *)m.body;
		if (fl_wire_check_submit(s, "run", 1) == 0)
			(void)!fl_wire_tensors_to_adapter(s->tensors, s->n_tensors, FL_WIRE_AB, a);
		(void)!fl_wire_tensors_to_adapter(s->tensors, s->n_tensors, FL_WIRE_B, a);
		break;
	}
	case FL_MSG_ACK:
		(void)!fl_wire_check_run(((const Fedlora__Ack *)m.body)->run_id, "run");
		break;
	default:
		abort(); /* fl_wire_open let an unknown type through */
	}
	fl_wire_msg_fini(&m);
	(void)sink;
	return 0;
}
