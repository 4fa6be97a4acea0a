/*
 * coordinator/coord.h — the coordinator: an nng REP server with several
 * contexts (aio state machines, no thread per client) in front of a round
 * engine that runs on the caller's thread.
 *
 * coord_open() prepares everything that can fail before the network is up:
 * it validates the settings, creates or resumes the run directory (run.json,
 * state.json, global/round-000000.safetensors for a new run; the last
 * committed round's adapter on a restart), loads the coordinator's key and
 * the allow list, and opens the task only to learn the adapter's shape.
 * coord_run() listens and runs rounds until the last round is committed or a
 * target epsilon stops the run (both return 0, state.json then says done and
 * why), or until coord_request_stop() (returns FL_EDONE without committing the
 * round in progress; a restart continues from the last committed round).
 *
 * Peer input is never trusted: every message is size-limited, signature- and
 * key-checked, checked against the run id, the round and the nonces seen, and
 * its tensors against the adapter's names, shapes and finiteness; a failure is
 * answered with a signed Reject{code, text}, counted in the round's metrics
 * under fl_reason_name(code) and logged at most once per reason every 10 s.
 *
 * Ownership: coord_open returns a coordinator the caller frees with
 * coord_close (NULL is a no-op). The config is copied.
 */
#ifndef FL_COORDINATOR_COORD_H
#define FL_COORDINATOR_COORD_H

#include <stddef.h>

#include "coordinator/config.h"

typedef struct coord coord;

/* Errors carry a message in err: FL_EINVAL (settings, or a run directory of
 * another configuration), FL_EIO / FL_EFORMAT (files), FL_EKEY (key files). */
int coord_open(coord **out, const coord_config *cfg, char *err, size_t errn);
/* Serves and runs rounds; see above. Blocks. */
int coord_run(coord *c, char *err, size_t errn);
/* Asks coord_run to return soon. Async-signal-safe (sets a flag). */
void coord_request_stop(coord *c);
void coord_close(coord *c);

#endif
