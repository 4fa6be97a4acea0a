/*
 * client/deadline.h — the client's side of Task.deadline_ms: stop local
 * training when the next step would end past the deadline, and never send a
 * Submit after it.
 *
 * The deadline is counted on the client's monotonic clock from the moment the
 * Task arrived (deadline_ms is a duration, so the clocks of the two machines
 * need not agree). Before every local step the hook estimates the step's cost
 * as the mean of the steps taken so far and stops training (FL_ETIMEOUT) when
 * now + that cost + a reserve for sealing and sending would pass the deadline;
 * the first step is always allowed when the deadline has not passed. The
 * client then skips the round (it sends nothing; see client/session.c for why
 * it does not send a partial update).
 *
 * Test-only hooks, read from the environment at every round (documented in
 * docs/architecture.md; never set them in a deployment):
 *   FEDLORA_SLOW_MS=N          sleep N ms in every local step (a slow device)
 *   FEDLORA_DELAY_SUBMIT_MS=N  sleep N ms after the last deadline check, before
 *                              the Submit goes out (a slow uplink: the update
 *                              is in flight when the deadline passes)
 * Both are clamped to [0, 60000].
 *
 * Does not talk to the network or know about rounds.
 */
#ifndef FL_CLIENT_DEADLINE_H
#define FL_CLIENT_DEADLINE_H

#include <stdint.h>

typedef struct client_deadline {
	double t_end;     /* monotonic seconds by which the Submit must be out; 0: none */
	double reserve_s; /* kept for sealing and sending the Submit */
	double t_start;   /* when local training started */
	int slow_ms;      /* FEDLORA_SLOW_MS (test-only) */
	int stopped;      /* 1 once the hook stopped training */
} client_deadline;

/* A deadline deadline_ms after t_task (monotonic seconds; 0 ms: none), with
 * reserve_s kept for the Submit. Reads FEDLORA_SLOW_MS. */
void client_deadline_init(client_deadline *d, double t_task, uint64_t deadline_ms,
                          double reserve_s);
/* model_train_params.before_step: 0 to take step `step`, FL_ETIMEOUT to stop
 * (sets d->stopped). arg is a client_deadline. */
int client_deadline_step(void *arg, int step);
/* 1 when a Submit sent at `now` would be past the deadline. */
int client_deadline_passed(const client_deadline *d, double now);
/* FEDLORA_DELAY_SUBMIT_MS (test-only), 0 when unset. */
int client_deadline_test_submit_delay_ms(void);

#endif
