/* core/err.c — text for the project error codes of core/err.h, and fl_seterr. */
#include "core/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

static const struct {
	int code;
	const char *text;
	const char *name;
} fl_errs[] = {
    {FL_OK, "success", "ok"},
    {FL_ENOMEM, "out of memory", "out_of_memory"},
    {FL_EINVAL, "invalid argument", "invalid_argument"},
    {FL_EIO, "input/output error", "io_error"},
    {FL_EFORMAT, "malformed data", "malformed"},
    {FL_ESHAPE, "wrong tensor names, shapes or dtypes", "bad_shape"},
    {FL_ENONFINITE, "non-finite value (NaN or Inf)", "non_finite"},
    {FL_ESIG, "bad signature", "bad_signature"},
    {FL_EKEY, "unknown key", "unknown_key"},
    {FL_ESTALE, "stale round or wrong run", "stale"},
    {FL_EREPLAY, "replayed nonce", "replay"},
    {FL_ETOOBIG, "message or value too large", "too_big"},
    {FL_ENET, "network error", "network"},
    {FL_ETIMEOUT, "timed out", "timeout"},
    {FL_ENOTSUP, "not supported", "not_supported"},
    {FL_ECUDA, "CUDA error or no usable GPU", "cuda"},
    {FL_ECRYPTO, "cryptographic library failure", "crypto"},
    {FL_ESTATE, "invalid in the current state", "bad_state"},
    {FL_EDONE, "finished", "done"},
    {FL_ENOENT, "not found", "not_found"},
    {FL_EQUORUM, "too few clients reported", "no_quorum"},
    {FL_ECLOSED, "round closed", "round_closed"},
};

const char *fl_strerror(int code)
{
	for (unsigned i = 0; i < sizeof fl_errs / sizeof fl_errs[0]; i++)
		if (fl_errs[i].code == code)
			return fl_errs[i].text;
	return "unknown error";
}

const char *fl_reason_name(int code)
{
	for (unsigned i = 0; i < sizeof fl_errs / sizeof fl_errs[0]; i++)
		if (fl_errs[i].code == code)
			return fl_errs[i].name;
	return "unknown";
}

void fl_seterr(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;
	int e = errno;

	if (!err || n == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
	errno = e;
}
