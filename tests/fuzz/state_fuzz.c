/*
 * tests/fuzz/state_fuzz.c — libFuzzer target for the run-directory state
 * loader (coordinator/rundir.c): the fuzz bytes become RUN/state.json and
 * coord_state_load reads them. A state that loads must also save and load
 * again to the same state: round, counts, the accountant phases, the clients
 * and client_eps_max, value for value (a coordinator that resumes from it
 * writes it back, and its epsilon must not drift); otherwise the harness
 * aborts.
 * Run: make fuzz-build && build-fuzz/fuzz/state_fuzz tests/fuzz/corpus/state
 */
#include "coordinator/rundir.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[512], dir[512], dir2[512];
	coord_state s, s2;
	const char *d = fz_init();
	if (!d)
		return 0;
	snprintf(dir, sizeof dir, "%s/run", d);
	snprintf(dir2, sizeof dir2, "%s/run2", d);
	mkdir(dir, 0700);
	mkdir(dir2, 0700);
	if (fz_write(path, sizeof path, "run/state.json", data, size, 0600) != 0)
		return 0;
	if (coord_state_load(&s, dir) != 0)
		return 0;
	if (coord_state_save(&s, dir2) != 0)
		abort();
	if (coord_state_load(&s2, dir2) != 0)
		abort();
	if (s2.round != s.round || s2.n_clients != s.n_clients || s2.n_phases != s.n_phases ||
	    s2.done != s.done || strcmp(s2.run_id, s.run_id) != 0 || s2.retries != s.retries ||
	    memcmp(&s2.client_eps_max, &s.client_eps_max, sizeof s.client_eps_max) != 0)
		abort();
	for (int i = 0; i < s.n_phases; i++)
		if (memcmp(&s2.phases[i].sigma, &s.phases[i].sigma, sizeof(double)) != 0 ||
		    memcmp(&s2.phases[i].q, &s.phases[i].q, sizeof(double)) != 0 ||
		    s2.phases[i].steps != s.phases[i].steps)
			abort();
	for (int i = 0; i < s.n_clients; i++)
		if (strcmp(s2.clients[i].key, s.clients[i].key) != 0 ||
		    s2.clients[i].num_samples != s.clients[i].num_samples ||
		    s2.clients[i].joined_round != s.clients[i].joined_round ||
		    s2.clients[i].last_round != s.clients[i].last_round)
			abort();
	coord_state_fini(&s2);
	coord_state_fini(&s);
	return 0;
}
