/*
 * core/err.h — project error codes.
 *
 * Library functions return int: 0 on success, a negative FL_E* code on
 * failure. fl_strerror() turns a code into a short static string. Codes that
 * describe why a peer's message was refused double as the coordinator's
 * reject reasons (fl_reason_name() gives the stable snake_case key used in
 * metrics.jsonl). Library code never exits; only tools/ does.
 */
#ifndef FL_CORE_ERR_H
#define FL_CORE_ERR_H

#include <stddef.h>

enum {
	FL_OK = 0,
	FL_ENOMEM = -1,     /* allocation failed */
	FL_EINVAL = -2,     /* invalid argument or setting */
	FL_EIO = -3,        /* file or OS error (errno kept by the caller's message) */
	FL_EFORMAT = -4,    /* malformed file or message (does not parse) */
	FL_ESHAPE = -5,     /* wrong tensor names, shapes or dtypes */
	FL_ENONFINITE = -6, /* NaN or Inf where finite values are required */
	FL_ESIG = -7,       /* signature does not verify */
	FL_EKEY = -8,       /* unknown or not allowed key */
	FL_ESTALE = -9,     /* message for another round or run */
	FL_EREPLAY = -10,   /* nonce seen before */
	FL_ETOOBIG = -11,   /* over a size limit */
	FL_ENET = -12,      /* transport error */
	FL_ETIMEOUT = -13,  /* deadline passed */
	FL_ENOTSUP = -14,   /* not supported in this build or configuration */
	FL_ECUDA = -15,     /* CUDA / cuBLAS failure or no usable GPU */
	FL_ECRYPTO = -16,   /* libsodium failure */
	FL_ESTATE = -17,    /* operation not valid in the current state */
	FL_EDONE = -18,     /* nothing more to do (run finished, budget spent) */
	FL_ENOENT = -19,    /* file or item not found */
	FL_EQUORUM = -20,   /* too few clients reported */
	FL_ECLOSED = -21,   /* the round (or its attempt) closed before the message came */
	FL_ERR_MIN_ = -22
};

/* Short description of an error code; never NULL. */
const char *fl_strerror(int code);
/* Stable snake_case name of an error code ("bad_signature", ...); never NULL. */
const char *fl_reason_name(int code);

/* printf-style message into err, the `char *err, size_t errlen` out-parameter
 * of loaders and writers: at most n bytes, NUL-terminated, truncated when
 * longer; does nothing when err is NULL or n is 0. Leaves errno alone. */
void fl_seterr(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
