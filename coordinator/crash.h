/*
 * coordinator/crash.h — the test-only crash hook of the coordinator.
 *
 * FEDLORA_CRASH_AT=<point>:<n> in the environment makes the coordinator kill
 * itself with SIGKILL (no cleanup, no flush: like a power cut as far as the
 * process is concerned) at the n-th time (n >= 1) it reaches <point>. The
 * variable is read once, by coord_crash_init() in coord_open(); unset or
 * empty means no hook. tests/chaos_test.sh uses it to crash the coordinator
 * at every step of the commit protocol. Never set it outside tests.
 *
 * Points (coordinator/coord.c):
 *   registration         a Hello was registered, before its Welcome is sent
 *   mid_fold             a Submit's nonce is on disk, before it is folded and
 *                        acknowledged
 *   after_adapter_write  round R's global/round-R file is written, before its
 *                        metrics line
 *   before_state_save    round R's metrics line is written, before state.json
 *                        (the commit point)
 *   after_commit         state.json names round R, before nonces.log is emptied
 *   done                 the run is marked done in state.json, before Done is
 *                        answered (linger)
 *
 * Not thread-aware beyond an atomic hit counter: any thread may hit a point.
 */
#ifndef FL_COORDINATOR_CRASH_H
#define FL_COORDINATOR_CRASH_H

#include <stddef.h>

typedef enum coord_crash_point {
	COORD_CRASH_REGISTRATION = 0,
	COORD_CRASH_MID_FOLD,
	COORD_CRASH_AFTER_ADAPTER_WRITE,
	COORD_CRASH_BEFORE_STATE_SAVE,
	COORD_CRASH_AFTER_COMMIT,
	COORD_CRASH_DONE,
	COORD_CRASH_NPOINTS
} coord_crash_point;

/* Reads FEDLORA_CRASH_AT. 0 when unset or valid (*armed = 1 when a hook is
 * set, may be NULL); FL_EINVAL with a reason in err for a malformed value (an
 * unknown point, n < 1). */
int coord_crash_init(int *armed, char *err, size_t errn);
/* Counts a hit of p; raise(SIGKILL) at the armed point's n-th hit. */
void coord_crash_hit(coord_crash_point p);
/* Name of a point ("mid_fold", ...); "?" for an unknown one. */
const char *coord_crash_name(coord_crash_point p);

#endif
