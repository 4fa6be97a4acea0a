/* coordinator/crash.c — see coordinator/crash.h (test-only). */
#include "coordinator/crash.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fsutil.h"

static const char *const names[COORD_CRASH_NPOINTS] = {
    "registration", "mid_fold", "after_adapter_write", "before_state_save", "after_commit", "done",
};

static int armed_point = -1;
static long armed_n;
static atomic_long hits;

const char *coord_crash_name(coord_crash_point p)
{
	return (unsigned)p < COORD_CRASH_NPOINTS ? names[p] : "?";
}

int coord_crash_init(int *armed, char *err, size_t errn)
{
	const char *v = getenv("FEDLORA_CRASH_AT");
	const char *colon;
	long n = 0;

	if (armed)
		*armed = 0;
	armed_point = -1;
	atomic_store(&hits, 0);
	if (!v || !*v)
		return 0;
	colon = strrchr(v, ':');
	if (!colon || fl_parse_long(colon + 1, 1, 1000000000L, &n) != 0) {
		fl_seterr(err, errn, "FEDLORA_CRASH_AT='%s': want <point>:<n> with n >= 1", v);
		return FL_EINVAL;
	}
	for (int i = 0; i < COORD_CRASH_NPOINTS; i++)
		if (strlen(names[i]) == (size_t)(colon - v) && !strncmp(v, names[i], colon - v))
			armed_point = i;
	if (armed_point < 0) {
		fl_seterr(err, errn,
		          "FEDLORA_CRASH_AT='%s': unknown point (registration, mid_fold, "
		          "after_adapter_write, before_state_save, after_commit, done)",
		          v);
		return FL_EINVAL;
	}
	armed_n = n;
	if (armed)
		*armed = 1;
	return 0;
}

void coord_crash_hit(coord_crash_point p)
{
	if (armed_point < 0 || (int)p != armed_point)
		return;
	if (atomic_fetch_add(&hits, 1) + 1 == armed_n)
		raise(SIGKILL);
}
