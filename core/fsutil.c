/*
 * core/fsutil.c — see core/fsutil.h. Plain POSIX and stdio; paths are built
 * in PATH_MAX buffers on the stack.
 */
#include "core/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"

#include <sodium.h>

#define TMP_SUFFIX ".tmp.XXXXXX" /* mkostemp fills the X's */

/* Writes all n bytes of p to fd, retrying short writes and EINTR. */
static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return FL_EIO;
		if (w == 0) {
			errno = EIO; /* no progress and no error: do not spin */
			return FL_EIO;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* fsync of the folder holding path, so that a rename in it persists. */
static int fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, rv = 0;

	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else if (slash == path)
		snprintf(dir, sizeof dir, "/");
	else
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return FL_EIO;
	if (fsync(fd) != 0)
		rv = FL_EIO;
	close(fd);
	return rv;
}

int fl_write_atomicv(const char *path, const struct iovec *iov, int iovcnt, mode_t mode)
{
	char tmp[PATH_MAX];
	int fd, e;

	if (!path || !*path) {
		errno = EINVAL;
		return FL_EINVAL;
	}
	if ((size_t)snprintf(tmp, sizeof tmp, "%s" TMP_SUFFIX, path) >= sizeof tmp) {
		errno = ENAMETOOLONG;
		return FL_EINVAL;
	}
	/* a unique name: two threads or processes writing one path do not share
	 * a temp file; created 0600, widened or narrowed by fchmod below */
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0)
		return FL_EIO;
	for (int i = 0; i < iovcnt; i++)
		if (write_all(fd, iov[i].iov_base, iov[i].iov_len) != 0)
			goto fail;
	if (fchmod(fd, mode) != 0 || fsync(fd) != 0)
		goto fail;
	e = close(fd);
	fd = -1;
	if (e != 0 || rename(tmp, path) != 0)
		goto fail;
	/* the new content is in place; the folder's fsync makes it durable */
	return fsync_dir_of(path);
fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = e;
	return FL_EIO;
}

int fl_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	struct iovec v = {(void *)data, len};

	return fl_write_atomicv(path, &v, 1, mode);
}

int fl_read_file(const char *path, size_t max, char **out, size_t *len)
{
	FILE *f;
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int rv = 0, e;

	*out = NULL;
	if (len)
		*len = 0;
	if (!(f = fopen(path, "rbe")))
		return errno == ENOENT ? FL_ENOENT : FL_EIO;
	for (;;) {
		size_t got;
		if (n + 4096 + 1 > cap) {
			size_t nc = cap ? cap * 2 : 8192;
			char *nb;
			if (nc > max + 4097)
				nc = max + 4097;
			if (nc <= cap) {
				rv = FL_ETOOBIG;
				goto out;
			}
			if (!(nb = realloc(buf, nc))) {
				rv = FL_ENOMEM;
				goto out;
			}
			buf = nb;
			cap = nc;
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (n > max) {
			rv = FL_ETOOBIG;
			goto out;
		}
		if (got == 0) {
			if (ferror(f))
				rv = FL_EIO;
			break;
		}
	}
	buf[n] = 0;
out:
	e = errno;
	fclose(f);
	if (rv) {
		free(buf);
		/* errno for the caller's strerror(): EFBIG, ENOMEM or the read's */
		errno = rv == FL_ETOOBIG ? EFBIG : rv == FL_ENOMEM ? ENOMEM : e;
		return rv;
	}
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

int fl_mkdirs(const char *dir)
{
	char buf[PATH_MAX];
	size_t n = dir ? strlen(dir) : 0;
	struct stat sb;

	if (n == 0 || n >= sizeof buf) {
		errno = n ? ENAMETOOLONG : EINVAL;
		return FL_EINVAL;
	}
	memcpy(buf, dir, n + 1);
	/* i starts at 1 so that an absolute path does not try mkdir("") */
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] == '/' || buf[i] == 0) {
			char c = buf[i];
			buf[i] = 0;
			if (mkdir(buf, 0755) != 0 && errno != EEXIST)
				return FL_EIO;
			buf[i] = c;
		}
	}
	/* EEXIST above also covers a regular file of that name */
	if (stat(dir, &sb) != 0)
		return FL_EIO;
	if (!S_ISDIR(sb.st_mode)) {
		errno = ENOTDIR;
		return FL_EIO;
	}
	return 0;
}

double fl_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int fl_parse_long(const char *s, long lo, long hi, long *out)
{
	char *e;
	long v;

	if (!s)
		return FL_EINVAL;
	errno = 0;
	v = strtol(s, &e, 10);
	if (errno || e == s || *e || v < lo || v > hi)
		return FL_EINVAL;
	*out = v;
	return 0;
}

int fl_parse_double(const char *s, double lo, double hi, double *out)
{
	char *e;
	double v;

	if (!s)
		return FL_EINVAL;
	errno = 0;
	v = strtod(s, &e);
	/* !(v >= lo && v <= hi) also rejects NaN */
	if (errno || e == s || *e || !isfinite(v) || !(v >= lo && v <= hi))
		return FL_EINVAL;
	*out = v;
	return 0;
}

int fl_file_hash_hex(const char *path, char out[2 * 32 + 1])
{
	crypto_generichash_state st;
	unsigned char buf[1 << 16], h[32];
	FILE *f;
	size_t n;

	out[0] = 0;
	if (!(f = fopen(path, "rb")))
		return errno == ENOENT ? FL_ENOENT : FL_EIO;
	crypto_generichash_init(&st, NULL, 0, sizeof h);
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		crypto_generichash_update(&st, buf, n);
	if (ferror(f)) {
		fclose(f);
		return FL_EIO;
	}
	fclose(f);
	crypto_generichash_final(&st, h, sizeof h);
	sodium_bin2hex(out, 2 * 32 + 1, h, sizeof h);
	return 0;
}
