/*
 * tests/fuzz/wire_fuzz.c — libFuzzer target for what a coordinator does with
 * bytes from the network: fl_wire_open (size limit, Envelope unpack, version,
 * signature, body unpack), then, for a Submit or Task, the body checks and
 * tensor decoding into an adapter of a fixed shape. Any crash, sanitizer
 * report or leak is a bug; rejections are the expected outcome.
 *
 * The signature gate would stop almost every random input early, so the
 * first byte picks a mode: even -> the rest is a raw envelope (the Envelope
 * parser and the gate); odd -> the rest is a body of type (byte / 2) % 10,
 * which the harness signs with a fixed key into a valid envelope before
 * opening it, so the body parser, the checks and the tensor decoding see
 * fuzzed input behind a good signature. Production code has no fuzzing
 * switch. Build and run (not part of `make test`):
 *
 *   make CUDA=0 BUILD=build-fuzz CC=clang SAN="-fsanitize=fuzzer-no-link,address,undefined" \
 *        build-fuzz/libfedlora.a
 *   clang -fsanitize=fuzzer,address,undefined -I. -Ibuild-fuzz/gen tests/fuzz/wire_fuzz.c \
 *        build-fuzz/libfedlora.a -lsodium -lnng -lmbedtls -lmbedx509 -lmbedcrypto \
 *        -lprotobuf-c -lcjson -lopenblas -lm -lpthread -o build-fuzz/wire_fuzz
 *   build-fuzz/wire_fuzz -max_total_time=60
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
	if (m.type == FL_MSG_SUBMIT) {
		const Fedlora__Submit *s = (const Fedlora__Submit *)m.body;
		if (fl_wire_check_submit(s, "run", 1) == 0)
			(void)!fl_wire_tensors_to_adapter(s->tensors, s->n_tensors, FL_WIRE_AB, a);
		(void)!fl_wire_tensors_to_adapter(s->tensors, s->n_tensors, FL_WIRE_B, a);
	} else if (m.type == FL_MSG_TASK) {
		const Fedlora__Task *t = (const Fedlora__Task *)m.body;
		(void)!fl_wire_check_task(t, "run", 0);
		(void)!fl_wire_tensors_to_adapter(t->tensors, t->n_tensors, FL_WIRE_AB, a);
	} else if (m.type == FL_MSG_HELLO) {
		(void)!fl_wire_check_hello((const Fedlora__Hello *)m.body, "run");
	}
	fl_wire_msg_fini(&m);
	return 0;
}
