/*
 * tests/fsutil_test.c — core/fsutil: atomic replacement of a file (content,
 * exact mode, clean failure without a leftover temp file), whole-file reads
 * (size limit, growth), mkdir -p, the monotonic clock and the strict number
 * parsers.
 *
 * Works in a fresh folder under $TMPDIR (default /tmp), removed at the end of
 * each case. Does not test crash durability (that would need a power cut).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "tests/test.h"

static char tmpdir[256];

static const char *mktmp(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/fsutiltest.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmpdir);
}

static void rmtree(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "  could not remove %s\n", dir);
}

/* Number of entries in dir other than . and ..; -1 when it cannot be read. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* Whole content of path into buf (NUL-terminated); its length or -1. */
static long slurp(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "rb");
	size_t got;

	if (!f)
		return -1;
	got = fread(buf, 1, n - 1, f);
	fclose(f);
	buf[got] = 0;
	return (long)got;
}

static void test_write_replaces(void)
{
	const char *d = mktmp();
	char path[512], buf[64];
	struct iovec v[3] = {{"ab", 2}, {"", 0}, {"cde", 3}};

	CHECK(d != NULL);
	if (!d)
		return;
	snprintf(path, sizeof path, "%s/f.json", d);
	CHECK_RC(fl_write_atomic(path, "first content", 13, 0644));
	CHECK(slurp(path, buf, sizeof buf) == 13 && !strcmp(buf, "first content"));
	CHECK_RC(fl_write_atomic(path, "second", 6, 0644));
	CHECK(slurp(path, buf, sizeof buf) == 6 && !strcmp(buf, "second"));
	/* the vectored form concatenates, empty pieces included */
	CHECK_RC(fl_write_atomicv(path, v, 3, 0644));
	CHECK(slurp(path, buf, sizeof buf) == 5 && !strcmp(buf, "abcde"));
	CHECK_RC(fl_write_atomic(path, "", 0, 0644));
	CHECK(slurp(path, buf, sizeof buf) == 0);
	/* only the target is left: no temp file */
	CHECK(count_entries(d) == 1);
	rmtree(d);
}

static void test_write_mode(void)
{
	const char *d = mktmp();
	char path[512];
	struct stat sb;
	mode_t old = umask(022);

	CHECK(d != NULL);
	if (!d)
		return;
	snprintf(path, sizeof path, "%s/secret", d);
	CHECK_RC(fl_write_atomic(path, "k", 1, 0600));
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	snprintf(path, sizeof path, "%s/public", d);
	CHECK_RC(fl_write_atomic(path, "p", 1, 0644));
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0644);
	/* the mode is exact: a narrow umask does not apply, and a rewrite of a
	 * 0644 file with 0600 narrows it */
	umask(077);
	CHECK_RC(fl_write_atomic(path, "p", 1, 0644));
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0644);
	CHECK_RC(fl_write_atomic(path, "p", 1, 0600));
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	umask(old);
	rmtree(d);
}

static void test_write_fails_clean(void)
{
	const char *d = mktmp();
	char path[512], sub[512], longp[PATH_MAX + 16];

	CHECK(d != NULL);
	if (!d)
		return;
	/* a missing folder: FL_EIO, errno says why, nothing is created */
	snprintf(path, sizeof path, "%s/nodir/f", d);
	errno = 0;
	CHECK(fl_write_atomic(path, "x", 1, 0644) == FL_EIO);
	CHECK(errno == ENOENT);
	CHECK(count_entries(d) == 0);
	/* the rename fails (the target is a non-empty folder) after the temp file
	 * was written: the temp file is removed */
	snprintf(sub, sizeof sub, "%s/dir", d);
	snprintf(path, sizeof path, "%s/dir/x", d);
	CHECK(mkdir(sub, 0755) == 0);
	CHECK_RC(fl_write_atomic(path, "x", 1, 0644));
	CHECK(fl_write_atomic(sub, "y", 1, 0644) == FL_EIO);
	CHECK(count_entries(d) == 1 && count_entries(sub) == 1);
	/* too long or empty paths are refused before touching the disk */
	memset(longp, 'a', sizeof longp - 1);
	longp[sizeof longp - 1] = 0;
	CHECK(fl_write_atomic(longp, "x", 1, 0644) == FL_EINVAL);
	CHECK(fl_write_atomic("", "x", 1, 0644) == FL_EINVAL);
	rmtree(d);
}

static void test_read_file(void)
{
	const char *d = mktmp();
	char path[512], *txt = (char *)1;
	size_t len = 99;

	CHECK(d != NULL);
	if (!d)
		return;
	snprintf(path, sizeof path, "%s/f", d);
	CHECK(fl_read_file(path, 100, &txt, &len) == FL_ENOENT);
	CHECK(txt == NULL && len == 0);
	CHECK_RC(fl_write_atomic(path, "", 0, 0644));
	CHECK_RC(fl_read_file(path, 100, &txt, &len));
	CHECK(txt && len == 0 && txt[0] == 0);
	free(txt);
	/* exactly max bytes is fine, one more is not (errno EFBIG) */
	CHECK_RC(fl_write_atomic(path, "12345", 5, 0644));
	CHECK_RC(fl_read_file(path, 5, &txt, NULL));
	CHECK(txt && !strcmp(txt, "12345"));
	free(txt);
	errno = 0;
	CHECK(fl_read_file(path, 4, &txt, &len) == FL_ETOOBIG);
	CHECK(errno == EFBIG && txt == NULL);
	/* larger than the first buffer (8 KiB): the buffer grows */
	{
		static char big[100000];
		for (size_t i = 0; i < sizeof big; i++)
			big[i] = (char)('a' + i % 26);
		CHECK_RC(fl_write_atomic(path, big, sizeof big, 0644));
		CHECK_RC(fl_read_file(path, sizeof big, &txt, &len));
		CHECK(txt && len == sizeof big && !memcmp(txt, big, len) && txt[len] == 0);
		free(txt);
	}
	/* a folder is not a file */
	CHECK(fl_read_file(d, 100, &txt, &len) == FL_EIO);
	rmtree(d);
}

static void test_mkdirs(void)
{
	const char *d = mktmp();
	char path[512];
	struct stat sb;

	CHECK(d != NULL);
	if (!d)
		return;
	snprintf(path, sizeof path, "%s/a/b/c", d);
	CHECK_RC(fl_mkdirs(path));
	CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
	CHECK_RC(fl_mkdirs(path)); /* existing: fine */
	snprintf(path, sizeof path, "%s/a/b/c/", d);
	CHECK_RC(fl_mkdirs(path)); /* trailing slash */
	/* a regular file in the way, in the middle or at the end */
	snprintf(path, sizeof path, "%s/file", d);
	CHECK_RC(fl_write_atomic(path, "x", 1, 0644));
	errno = 0;
	CHECK(fl_mkdirs(path) == FL_EIO);
	CHECK(errno == ENOTDIR);
	snprintf(path, sizeof path, "%s/file/sub/deeper", d);
	errno = 0;
	CHECK(fl_mkdirs(path) == FL_EIO);
	CHECK(errno == ENOTDIR);
	CHECK(fl_mkdirs("") == FL_EINVAL);
	CHECK(fl_mkdirs(NULL) == FL_EINVAL);
	rmtree(d);
}

static void test_now(void)
{
	double t0 = fl_now_s(), t1;
	usleep(2000);
	t1 = fl_now_s();
	CHECK(t0 > 0 && t1 - t0 >= 0.0015 && t1 - t0 < 5);
}

typedef struct parse_case {
	const char *s;
	int ok;
	double want;
} parse_case;

static void test_parse_long(void)
{
	static const parse_case cases[] = {
	    {"0", 1, 0},   {"42", 1, 42},   {"-7", 1, -7},
	    {" 5", 1, 5},  {"100", 1, 100}, {"-100", 1, -100},
	    {"", 0, 0},    {"abc", 0, 0},   {"12abc", 0, 0},
	    {"5 ", 0, 0},  {"1.5", 0, 0},   {"0x10", 0, 0},
	    {"101", 0, 0}, {"-101", 0, 0},  {"99999999999999999999", 0, 0},
	    {"-", 0, 0},
	};
	long v;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rv;
		v = 12345;
		rv = fl_parse_long(cases[i].s, -100, 100, &v);
		if (cases[i].ok != (rv == 0) || (rv == 0 && v != (long)cases[i].want) ||
		    (rv != 0 && (rv != FL_EINVAL || v != 12345))) {
			fprintf(stderr, "  fl_parse_long(\"%s\") = %d (%s), v %ld\n", cases[i].s,
			        rv, fl_strerror(rv), v);
			test_cur_failed = 1;
		}
	}
	CHECK(fl_parse_long(NULL, 0, 1, &v) == FL_EINVAL);
	CHECK(fl_parse_long("9223372036854775807", 0, 0x7fffffffffffffffL, &v) == 0 &&
	      v == 0x7fffffffffffffffL);
}

static void test_parse_double(void)
{
	static const parse_case cases[] = {
	    {"0", 1, 0},     {"3e-3", 1, 3e-3}, {"10", 1, 10},   {"-2.5", 1, -2.5},
	    {" 1", 1, 1},    {"", 0, 0},        {"x", 0, 0},     {"1.5x", 0, 0},
	    {"1 ", 0, 0},    {"10.0001", 0, 0}, {"-10.5", 0, 0}, {"nan", 0, 0},
	    {"NaN", 0, 0},   {"inf", 0, 0},     {"-inf", 0, 0},  {"infinity", 0, 0},
	    {"1e999", 0, 0}, {"1e-400", 0, 0},  {".", 0, 0},
	};
	double v;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rv;
		v = 12345;
		rv = fl_parse_double(cases[i].s, -10, 10, &v);
		if (cases[i].ok != (rv == 0) || (rv == 0 && v != cases[i].want) ||
		    (rv != 0 && (rv != FL_EINVAL || v != 12345))) {
			fprintf(stderr, "  fl_parse_double(\"%s\") = %d (%s), v %g\n", cases[i].s,
			        rv, fl_strerror(rv), v);
			test_cur_failed = 1;
		}
	}
	CHECK(fl_parse_double(NULL, 0, 1, &v) == FL_EINVAL);
	/* infinite bounds still refuse infinite values */
	CHECK(fl_parse_double("inf", -HUGE_VAL, HUGE_VAL, &v) == FL_EINVAL);
	CHECK(fl_parse_double("1e308", -HUGE_VAL, HUGE_VAL, &v) == 0 && v == 1e308);
}

static const test_case cases[] = {
    TEST(test_write_replaces), TEST(test_write_mode),   TEST(test_write_fails_clean),
    TEST(test_read_file),      TEST(test_mkdirs),       TEST(test_now),
    TEST(test_parse_long),     TEST(test_parse_double), {0},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
