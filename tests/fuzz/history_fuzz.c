/*
 * tests/fuzz/history_fuzz.c — libFuzzer target for the privacy accountant's
 * history files: the first byte picks the reader, the rest is the file.
 *   even: a client's state file (client_dp_state_read, client/session.h:
 *         what `fedlora client --state FILE` reads back at start);
 *   odd:  `fedlora eps --history FILE` (eps_history_read, tools/cmds.h).
 * A history that loads is then composed by the RDP accountant
 * (priv_rdp_epsilon at the file's delta when it lies in (0, 1), else 1e-5),
 * as the client and `fedlora eps` do; epsilon must come out >= 0 or the call
 * must fail with a code, otherwise the harness aborts.
 * Run: make fuzz-build && build-fuzz/fuzz/history_fuzz tests/fuzz/corpus/history
 */
#include <math.h>

#include "client/session.h"
#include "privacy/accountant.h"
#include "tests/fuzz/fuzz_util.h"
#include "tools/cmds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void compose(const priv_phase *ph, int n, double delta)
{
	double eps = -1, order = 0;
	if (!(delta > 0 && delta < 1))
		delta = 1e-5;
	if (priv_rdp_epsilon(ph, n, delta, &eps, &order) == 0 && !(eps >= 0))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[512];
	if (size < 1 || !fz_init())
		return 0;
	if (fz_write(path, sizeof path, "history.json", data + 1, size - 1, 0600) != 0)
		return 0;
	if (!(data[0] & 1)) {
		client_dp_state st;
		if (client_dp_state_read(path, &st) == 0) {
			compose(st.phases, st.n, st.delta);
			client_dp_state_fini(&st);
		}
	} else {
		priv_phase *ph = NULL;
		int n = 0;
		if (eps_history_read(path, &ph, &n) == 0) {
			compose(ph, n, 1e-5);
			free(ph);
		}
	}
	return 0;
}
