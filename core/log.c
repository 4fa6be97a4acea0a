/* core/log.c — see core/log.h. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int fl_log_threshold = -1;

void fl_log_set_level(int level)
{
	fl_log_threshold = level;
}

int fl_log_level(void)
{
	if (fl_log_threshold < 0) {
		const char *e = getenv("FEDLORA_LOG");
		fl_log_threshold = FL_LOG_INFO;
		if (e && !strcmp(e, "error"))
			fl_log_threshold = FL_LOG_ERROR;
		else if (e && !strcmp(e, "warn"))
			fl_log_threshold = FL_LOG_WARN;
		else if (e && !strcmp(e, "debug"))
			fl_log_threshold = FL_LOG_DEBUG;
	}
	return fl_log_threshold;
}

void fl_log(int level, const char *tag, const char *fmt, ...)
{
	static const char *names[] = {"error", "warn", "info", "debug"};
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (level > fl_log_level())
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %-5s %s: ", tm.tm_hour, tm.tm_min,
	             tm.tm_sec, ts.tv_nsec / 1000000, names[level & 3], tag);
	va_start(ap, fmt);
	if (n > 0 && n < (int)sizeof line)
		vsnprintf(line + n, sizeof line - n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}
