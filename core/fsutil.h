/*
 * core/fsutil.h — small OS helpers that several modules need the same way:
 * atomic file replacement, whole-file reads, mkdir -p, a monotonic clock, and strict parsing of
 * numbers from the command line or configuration text.
 *
 * fl_write_atomic is the one way the project replaces a file: a unique temp
 * file next to the target, every byte written, mode set, fsync, rename over
 * the target, fsync of the folder. A reader sees the old file or the new one,
 * never a torn one, and after a 0 return the new one survives a crash.
 *
 * Does not: lock (two writers of one path race; the last rename wins), stream
 * (the data must be in memory), create the folder (fl_mkdirs does), or parse
 * numbers in any base but 10. Errors are project codes (core/err.h); on FL_EIO
 * errno still says why, for the caller's message.
 *
 * Ownership: only fl_read_file allocates (its *out, freed by the caller);
 * callers own every buffer they pass.
 */
#ifndef FL_CORE_FSUTIL_H
#define FL_CORE_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Replaces path with the iovcnt buffers of iov, concatenated, as a file of
 * exactly `mode` (the umask does not apply). The temp file is PATH.tmp.XXXXXX
 * in the same folder. Returns 0, FL_EINVAL when path is empty or too long, or
 * FL_EIO on any OS failure (missing folder, full disk, failed fsync of the
 * folder after the rename...); on failure the temp file is removed and errno
 * is that of the failing call. */
int fl_write_atomicv(const char *path, const struct iovec *iov, int iovcnt, mode_t mode);
/* fl_write_atomicv of one buffer of len bytes. */
int fl_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Reads the whole file at path, at most max bytes, into a malloc'd buffer
 * with a NUL after the last byte (*out, which the caller frees; NULL on
 * failure); *len (may be NULL) gets the length without the NUL. Returns 0,
 * FL_ENOENT when path does not exist, FL_ETOOBIG over max (errno EFBIG),
 * FL_ENOMEM, or FL_EIO (errno says why). Memory grows with the file, not
 * with max. */
int fl_read_file(const char *path, size_t max, char **out, size_t *len);

/* BLAKE2b-256 of the file at path, streamed, as 64 lowercase hex digits and
 * a NUL in out. Returns 0, FL_ENOENT when path does not exist (out ""), or
 * FL_EIO. */
int fl_file_hash_hex(const char *path, char out[2 * 32 + 1]);

/* mkdir -p of dir: creates each missing component with mode 0755 (less the
 * umask). Returns 0 when dir is a directory afterwards (also when it already
 * was), FL_EINVAL when dir is empty or too long, FL_EIO otherwise (errno set;
 * ENOTDIR when the path runs through or ends at a non-directory). */
int fl_mkdirs(const char *dir);

/* Seconds on CLOCK_MONOTONIC: for durations and deadlines, not dates. */
double fl_now_s(void);

/* Strict decimal parse of the whole of s into *out: no empty string, no
 * trailing characters (leading blanks are accepted, as strtol does), no
 * overflow, and lo <= value <= hi. Returns 0 or FL_EINVAL (s NULL included);
 * *out is left alone on failure. */
int fl_parse_long(const char *s, long lo, long hi, long *out);
/* The same for a double; also rejects NaN and +-Inf, and values strtod
 * reports as out of range (ERANGE: overflow, or underflow to a denormal/0). */
int fl_parse_double(const char *s, double lo, double hi, double *out);

#endif
