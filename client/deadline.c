/* client/deadline.c — see client/deadline.h. */
#include "client/deadline.h"

#include <stdlib.h>
#include <time.h>

#include "core/err.h"
#include "core/fsutil.h"

#define TEST_HOOK_MAX_MS 60000

/* A test hook's value in ms from the environment, 0 when unset or invalid. */
static int env_ms(const char *name)
{
	const char *v = getenv(name);
	long x = 0;
	if (!v || !*v || fl_parse_long(v, 0, TEST_HOOK_MAX_MS, &x) != 0)
		return 0;
	return (int)x;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

void client_deadline_init(client_deadline *d, double t_task, uint64_t deadline_ms, double reserve_s)
{
	d->t_end = deadline_ms > 0 ? t_task + (double)deadline_ms / 1000.0 : 0;
	d->reserve_s = reserve_s > 0 ? reserve_s : 0;
	d->t_start = fl_now_s();
	d->slow_ms = env_ms("FEDLORA_SLOW_MS");
	d->stopped = 0;
}

int client_deadline_step(void *arg, int step)
{
	client_deadline *d = arg;
	double now = fl_now_s();

	if (step == 0)
		d->t_start = now;
	if (d->t_end > 0) {
		double per_step = step > 0 ? (now - d->t_start) / step : 0;
		if (now + per_step + d->reserve_s > d->t_end) {
			d->stopped = 1;
			return FL_ETIMEOUT;
		}
	}
	if (d->slow_ms > 0)
		sleep_ms(d->slow_ms);
	return 0;
}

int client_deadline_passed(const client_deadline *d, double now)
{
	return d->t_end > 0 && now >= d->t_end;
}

int client_deadline_test_submit_delay_ms(void)
{
	return env_ms("FEDLORA_DELAY_SUBMIT_MS");
}
