/*
 * tests/fuzz/gone_fuzz.c — libFuzzer target for the gone-client state file
 * (coordinator/gone.c): the fuzz bytes are RUN/gone.json of a fixed run
 * (run id "0123456789abcdef0123456789abcdef", round 3 committed, clients
 * "aa", "bb", "cc") and coord_gone_parse reads them. A file that parses must
 * also write and parse again to the same set (kind, round and the back flag
 * of every client, the count of gone clients); otherwise the harness aborts.
 * Run: make fuzz-build && build-fuzz/fuzz/gone_fuzz tests/fuzz/corpus/gone
 */
#include "coordinator/gone.h"
#include "coordinator/rundir.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *keys[] = {"aa", "bb", "cc"};
	coord_state s;
	coord_gone g, h;
	char *text = NULL;
	int skipped = 0;

	fl_log_set_level(FL_LOG_ERROR);
	coord_state_init(&s);
	strcpy(s.run_id, "0123456789abcdef0123456789abcdef");
	s.round = 3;
	for (int i = 0; i < 3; i++)
		if (coord_state_add_client(&s, keys[i], 1, 1, NULL) != 0)
			abort();
	coord_gone_init(&g);
	coord_gone_init(&h);
	if (coord_gone_parse(&g, &s, (const char *)data, size, &skipped, NULL, 0) != 0) {
		if (g.n_gone != 0 || g.e != NULL)
			abort(); /* a refused file leaves nothing behind */
		goto out;
	}
	if (g.n_gone < 0 || g.n_gone > 3 || g.dirty)
		abort();
	if (coord_gone_to_json(&g, &s, &text) != 0)
		goto out; /* out of memory */
	if (coord_gone_parse(&h, &s, text, strlen(text), &skipped, NULL, 0) != 0 || skipped != 0 ||
	    h.n_gone != g.n_gone)
		abort();
	for (int i = 0; i < 3; i++) {
		int gk = i < g.cap ? g.e[i].kind : 0, hk = i < h.cap ? h.e[i].kind : 0;
		if (gk != hk)
			abort();
		if (gk && (g.e[i].round != h.e[i].round || g.e[i].back != h.e[i].back ||
		           g.e[i].round < 1 || g.e[i].round > s.round + 1))
			abort();
	}
out:
	free(text);
	coord_gone_fini(&g);
	coord_gone_fini(&h);
	coord_state_fini(&s);
	return 0;
}
