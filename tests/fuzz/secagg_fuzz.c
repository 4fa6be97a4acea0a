/*
 * tests/fuzz/secagg_fuzz.c — libFuzzer target for the secure aggregation
 * message handlers: the first byte picks a handler, the rest is unpacked as
 * an SaDown (client/secagg_client.h: key list, boxes, view, unmask
 * request) or an SaUp (coordinator/secagg_round.h: every phase, then ticks
 * and every relay). Run id, round, session and phase are patched to the
 * fixture's so the fuzz bytes reach the checks past them; for phases 2..4
 * the client first takes the round's honest key list (its index), so the
 * checks that need it are reached. A fresh round of 4 clients per input.
 * Run: make fuzz-build && build-fuzz/fuzz/secagg_fuzz
 */
#include <sodium.h>

#include "client/secagg_client.h"
#include "coordinator/secagg_round.h"
#include "lora/adapter.h"
#include "tests/fuzz/fuzz_util.h"

#define FZ_N 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static priv_key ck, k[FZ_N];
static lora_adapter *g;
static int ready;

static int setup(void)
{
	static const char *names[] = {"a", "b"};
	static const int in[] = {3, 2}, out[] = {2, 3};
	fz_init();
	if (sodium_init() < 0 || priv_key_generate(&ck) != 0)
		return -1;
	for (int i = 0; i < FZ_N; i++)
		if (priv_key_generate(&k[i]) != 0)
			return -1;
	if (lora_adapter_new(&g, 2, names, in, out, 1, 2.0f) != 0)
		return -1;
	lora_adapter_init(g, 3);
	ready = 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int reg[FZ_N] = {10, 11, 12, 13};
	uint8_t pk[FZ_N][32];
	sa_round_opts o;
	sa_round *r = NULL;
	sa_client *c = NULL;
	Fedlora__Task t = FEDLORA__TASK__INIT;
	Fedlora__SaUp up;
	char why[300];
	unsigned sel;

	if (!ready && setup() != 0)
		return 0;
	if (size < 1)
		return 0;
	sel = data[0];
	for (int i = 0; i < FZ_N; i++)
		memcpy(pk[i], k[i].pk, 32);
	memset(&o, 0, sizeof o);
	o.run_id = "fz";
	o.round = 1;
	o.n = FZ_N;
	o.reg = reg;
	o.id_pk = (const uint8_t(*)[32])pk;
	o.strat = (sel & 0x80) ? LORA_FFA : LORA_FEDIT;
	o.global = g;
	o.keys_timeout = o.phase_timeout = 1;
	o.key = &ck;
	if (sa_round_new(&r, &o, 0, why, sizeof why) != 0)
		return 0;
	t.run_id = "fz";
	t.round = 1;
	t.secagg = sa_round_task_params(r);
	if (sa_client_new(&c, &t, "fz", &k[sel % FZ_N], why, sizeof why) != 0)
		goto out;
	if ((sel & 0x40) == 0) {
		/* an SaDown to the client */
		Fedlora__SaDown *d = fedlora__sa_down__unpack(NULL, size - 1, data + 1);
		char *run;
		ProtobufCBinaryData ses;
		if (!d)
			goto out;
		run = d->run_id;
		ses = d->session;
		d->run_id = "fz";
		d->round = 1;
		d->session = t.secagg->session;
		d->phase = 1 + (sel >> 2) % 4;
		if (d->phase > 1) {
			/* every member's keys, then this client's honest key list */
			int me = sa_round_member(r, reg[sel % FZ_N]);
			for (int i = 0; i < FZ_N; i++) {
				sa_client *ci = NULL;
				if (i == (int)(sel % FZ_N)) {
					if (sa_client_keys(c, 5 + i, &up) == 0)
						(void)sa_round_up(r, reg[i], &up, why, sizeof why);
				} else if (sa_client_new(&ci, &t, "fz", &k[i], why, sizeof why) ==
				               0 &&
				           sa_client_keys(ci, 5 + i, &up) == 0)
					(void)sa_round_up(r, reg[i], &up, why, sizeof why);
				sa_client_free(ci);
			}
			(void)sa_round_tick(r, 2);
			if (me >= 0) {
				uint8_t *buf = NULL;
				size_t len = 0;
				fl_wire_msg m = {0};
				if (sa_round_down(r, reg[sel % FZ_N], 1, &buf, &len, why,
				                  sizeof why) == 0 &&
				    fl_wire_open(buf, len, (size_t)1 << 20, ck.pk, &m) == 0 &&
				    m.type == FL_MSG_SA_DOWN)
					(void)sa_client_on_keylist(
					    c, (const Fedlora__SaDown *)m.body, &up);
				fl_wire_msg_fini(&m);
				free(buf);
			}
		}
		switch (d->phase) {
		case 1:
			if (sa_client_on_keylist(c, d, &up) == 0)
				(void)sa_round_up(r, reg[sel % FZ_N], &up, why, sizeof why);
			break;
		case 2:
			(void)sa_client_on_boxes(c, d);
			break;
		case 3:
			(void)sa_client_on_survivors(c, d, &up);
			break;
		default:
			(void)sa_client_on_unmask(c, d, &up);
			break;
		}
		d->run_id = run;
		d->session = ses;
		fedlora__sa_down__free_unpacked(d, NULL);
	} else {
		/* SaUps to the coordinator: the honest keys of the others, then
		 * the fuzzed one in whatever phase it names */
		Fedlora__SaUp *u = fedlora__sa_up__unpack(NULL, size - 1, data + 1);
		char *run;
		ProtobufCBinaryData ses;
		if (!u)
			goto out;
		for (int i = 0; i < FZ_N; i++) {
			sa_client *ci = NULL;
			if ((int)(sel % FZ_N) == i)
				continue;
			if (sa_client_new(&ci, &t, "fz", &k[i], why, sizeof why) == 0 &&
			    sa_client_keys(ci, 5 + i, &up) == 0)
				(void)sa_round_up(r, reg[i], &up, why, sizeof why);
			sa_client_free(ci);
		}
		run = u->run_id;
		ses = u->session;
		u->run_id = "fz";
		u->round = 1;
		u->session = t.secagg->session;
		(void)sa_round_up(r, reg[sel % FZ_N], u, why, sizeof why);
		for (double now = 2; now < 12; now += 2) {
			(void)sa_round_tick(r, now);
			(void)sa_round_up(r, reg[sel % FZ_N], u, why, sizeof why);
			for (int i = 0; i < FZ_N; i++)
				for (uint32_t want = 0; want <= 5; want++) {
					uint8_t *buf = NULL;
					size_t len = 0;
					(void)sa_round_down(r, reg[i], want, &buf, &len, why,
					                    sizeof why);
					free(buf);
				}
		}
		u->run_id = run;
		u->session = ses;
		fedlora__sa_up__free_unpacked(u, NULL);
	}
out:
	sa_client_free(c);
	sa_round_free(r);
	return 0;
}
