/*
 * tests/fuzz/fuzz_util.h — shared by the libFuzzer targets whose production
 * API takes paths: a per-process scratch directory (removed at exit) and a
 * helper that writes the fuzz bytes to a file in it. Lowers the log to errors;
 * scripts/fuzz.sh runs with -close_fd_mask=2 so the one-line rejection reasons
 * do not flood the output (libFuzzer keeps sanitizer reports on its own fd).
 */
#ifndef FL_FUZZ_UTIL_H
#define FL_FUZZ_UTIL_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

static char fz_dir[256];

static void fz_cleanup(void)
{
	char cmd[300];
	if (!fz_dir[0])
		return;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
	(void)!system(cmd);
}

/* Creates the scratch directory once and silences the log; returns it or NULL. */
static const char *fz_init(void)
{
	if (!fz_dir[0]) {
		const char *t = getenv("TMPDIR");
		snprintf(fz_dir, sizeof fz_dir, "%s/fedlora-fuzz.XXXXXX", t && *t ? t : "/tmp");
		if (!mkdtemp(fz_dir)) {
			fz_dir[0] = 0;
			return NULL;
		}
		atexit(fz_cleanup);
		fl_log_set_level(FL_LOG_ERROR);
	}
	return fz_dir;
}

/* path = scratch/name (sub may add a subdirectory, created); writes data there
 * with mode `mode`. 0 on success. */
__attribute__((unused)) static int fz_write(char *path, size_t n, const char *name,
                                            const uint8_t *data, size_t size, mode_t mode)
{
	const char *d = fz_init();
	int fd;
	if (!d || (size_t)snprintf(path, n, "%s/%s", d, name) >= n)
		return -1;
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0)
		return -1;
	if (fchmod(fd, mode) != 0 || (size && write(fd, data, size) != (ssize_t)size)) {
		close(fd);
		return -1;
	}
	return close(fd);
}

#endif
