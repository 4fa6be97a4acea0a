/*
 * bench/wire.c — cost of putting an adapter update on the wire and taking it
 * off again, per stage, on the CPU.
 *
 *   build/bench/wire [--json PATH] [--reps N]
 *
 * For a 7B-shaped q/v adapter (64 matrices of 4096x4096, r = 16: 32 MiB of
 * F32) and a small one (4 matrices of 1024x1024, r = 8), in F32 and BF16:
 *   to_tensors  fl_wire_tensors_from_adapter (copy / round to bf16)
 *   seal        pack the Submit body, BLAKE2b-512 + Ed25519, pack the Envelope
 *   open        size check, Envelope unpack, verify, body unpack
 *   to_adapter  fl_wire_tensors_to_adapter (names, shapes, finiteness, decode)
 * Prints a table of milliseconds and GB/s (of F32 adapter bytes) per stage,
 * best of N repetitions, and writes the same figures as JSON (default
 * wire.json next to the binary). Does not include the network: see
 * tests/net_test.c for the transport.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "core/wire.h"

typedef struct shape {
	const char *name;
	int nmat, dim, rank;
} shape;

typedef struct result {
	const char *shape, *dtype;
	double mib, wire_mib;
	double t[4]; /* seconds per stage, best of reps */
} result;

static const char *stage_names[4] = {"to_tensors", "seal", "open", "to_adapter"};

static lora_adapter *make(const shape *s)
{
	char(*names)[32] = calloc((size_t)s->nmat, 32);
	const char **np = calloc((size_t)s->nmat, sizeof *np);
	int *d = calloc((size_t)s->nmat, sizeof *d);
	lora_adapter *a = NULL;
	if (!names || !np || !d)
		goto out;
	for (int i = 0; i < s->nmat; i++) {
		snprintf(names[i], 32, "layers.%d", i);
		np[i] = names[i];
		d[i] = s->dim;
	}
	if (lora_adapter_new(&a, s->nmat, np, d, d, s->rank, 2.0f * s->rank) != 0)
		goto out;
	fl_rng r;
	fl_rng_init(&r, 1, 1);
	for (size_t i = 0; i < a->n_a + a->n_b; i++)
		a->params[i] = (float)(fl_rng_uniform(&r) - 0.5);
out:
	free(names);
	free(np);
	free(d);
	return a;
}

static int run(const shape *s, fl_dtype dt, int reps, const priv_key *k, result *res)
{
	lora_adapter *a = make(s), *b = make(s);
	int rv = a && b ? 0 : FL_ENOMEM;
	memset(res, 0, sizeof *res);
	res->shape = s->name;
	res->dtype = dt == FL_DTYPE_F32 ? "f32" : "bf16";
	for (int st = 0; st < 4; st++)
		res->t[st] = 1e30;
	uint8_t nonce[FL_NONCE_BYTES];
	fl_wire_nonce(nonce);
	for (int rep = 0; rep < reps && rv == 0; rep++) {
		fl_wire_tensors ts;
		uint8_t *buf = NULL;
		size_t len = 0;
		fl_wire_msg m;
		double t0 = fl_now_s();
		if ((rv = fl_wire_tensors_from_adapter(a, FL_WIRE_AB, dt, &ts)) != 0)
			break;
		double t1 = fl_now_s();
		Fedlora__Submit sub = FEDLORA__SUBMIT__INIT;
		sub.run_id = "bench";
		sub.round = 1;
		sub.nonce.data = nonce;
		sub.nonce.len = FL_NONCE_BYTES;
		sub.num_samples = 1;
		sub.n_tensors = ts.n;
		sub.tensors = ts.t;
		rv = fl_wire_seal(&sub.base, FL_MSG_SUBMIT, k, &buf, &len);
		double t2 = fl_now_s();
		fl_wire_tensors_fini(&ts);
		if (rv != 0)
			break;
		rv = fl_wire_open(buf, len, len, k->pk, &m);
		double t3 = fl_now_s();
		if (rv == 0) {
			const Fedlora__Submit *sp = (const Fedlora__Submit *)m.body;
			rv = fl_wire_tensors_to_adapter(sp->tensors, sp->n_tensors, FL_WIRE_AB, b);
		}
		double t4 = fl_now_s();
		fl_wire_msg_fini(&m);
		free(buf);
		double t[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
		for (int st = 0; st < 4; st++)
			if (t[st] < res->t[st])
				res->t[st] = t[st];
		res->wire_mib = (double)len / (1 << 20);
	}
	if (a)
		res->mib = (double)(a->n_a + a->n_b) * 4 / (1 << 20);
	lora_adapter_free(a);
	lora_adapter_free(b);
	return rv;
}

int main(int argc, char **argv)
{
	const char *json = NULL;
	int reps = 3;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--json PATH] [--reps N]\n", argv[0]);
			return 2;
		}
	}
	if (reps < 1)
		reps = 1;
	char defjson[4096];
	if (!json) {
		const char *slash = strrchr(argv[0], '/');
		int n = slash ? (int)(slash - argv[0]) : 1;
		snprintf(defjson, sizeof defjson, "%.*s/wire.json", n, slash ? argv[0] : ".");
		json = defjson;
	}
	priv_key k;
	if (priv_key_generate(&k) != 0)
		return 1;
	static const shape shapes[2] = {{"7b_qv_r16", 64, 4096, 16}, {"small_r8", 4, 1024, 8}};
	result res[4];
	int nres = 0;
	printf("%-10s %-5s %9s %9s", "adapter", "dtype", "MiB(f32)", "MiB(wire)");
	for (int st = 0; st < 4; st++)
		printf(" %17s", stage_names[st]);
	printf("\n%37s", "");
	for (int st = 0; st < 4; st++)
		printf(" %8s %8s", "ms", "GB/s");
	printf("\n");
	for (int si = 0; si < 2; si++)
		for (int d = 0; d < 2; d++) {
			result *r = &res[nres];
			int rv =
			    run(&shapes[si], d == 0 ? FL_DTYPE_F32 : FL_DTYPE_BF16, reps, &k, r);
			if (rv != 0) {
				fprintf(stderr, "bench wire: %s: %s\n", shapes[si].name,
				        fl_strerror(rv));
				priv_key_wipe(&k);
				return 1;
			}
			printf("%-10s %-5s %9.1f %9.1f", r->shape, r->dtype, r->mib, r->wire_mib);
			for (int st = 0; st < 4; st++)
				printf(" %8.2f %8.2f", r->t[st] * 1e3,
				       r->mib * (1 << 20) / r->t[st] / 1e9);
			printf("\n");
			nres++;
		}
	priv_key_wipe(&k);
	FILE *f = fopen(json, "w");
	if (!f) {
		fprintf(stderr, "bench wire: cannot write %s\n", json);
		return 1;
	}
	fprintf(f, "{\"bench\": \"wire\", \"reps\": %d, \"results\": [", reps);
	for (int i = 0; i < nres; i++) {
		fprintf(f,
		        "%s\n  {\"adapter\": \"%s\", \"dtype\": \"%s\", \"mib_f32\": %.3f, "
		        "\"mib_wire\": %.3f",
		        i ? "," : "", res[i].shape, res[i].dtype, res[i].mib, res[i].wire_mib);
		for (int st = 0; st < 4; st++)
			fprintf(f, ", \"%s_ms\": %.4f", stage_names[st], res[i].t[st] * 1e3);
		fprintf(f, "}");
	}
	fprintf(f, "\n]}\n");
	fclose(f);
	printf("wrote %s\n", json);
	return 0;
}
