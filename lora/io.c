/*
 * lora/io.c — adapter files on top of core/safetensors. See lora/io.h.
 *
 * Does not: convert PEFT exports back (lora/peft.h writes those), or keep the
 * file mapped: the adapter owns its values after loading.
 */
#include "lora/io.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/safetensors.h"

#define SUF_A ".lora_A.weight"
#define SUF_B ".lora_B.weight"

int lora_adapter_save_err(const lora_adapter *a, const char *path, char *err, size_t errlen)
{
	fl_st_writer *w = NULL;
	char name[LORA_NAME_MAX + 32], buf[64];
	int rv;

	if ((rv = fl_st_writer_new(&w)) != 0) {
		fl_seterr(err, errlen, "%s: out of memory", path);
		return rv;
	}
	snprintf(buf, sizeof buf, "%d", a->r);
	if ((rv = fl_st_writer_meta(w, "format", LORA_FILE_FORMAT)) != 0 ||
	    (rv = fl_st_writer_meta(w, "r", buf)) != 0)
		goto fail;
	snprintf(buf, sizeof buf, "%.9g", (double)a->alpha);
	if ((rv = fl_st_writer_meta(w, "alpha", buf)) != 0)
		goto fail;
	for (int i = 0; i < a->n; i++) {
		const lora_mat *m = &a->mats[i];
		int64_t sa[2] = {a->r, m->in}, sb[2] = {m->out, a->r};
		if ((rv = lora_adapter_tensor_name(a, i, 'A', name, sizeof name)) != 0 ||
		    (rv = fl_st_writer_add(w, name, FL_ST_F32, 2, sa, m->A)) != 0 ||
		    (rv = lora_adapter_tensor_name(a, i, 'B', name, sizeof name)) != 0 ||
		    (rv = fl_st_writer_add(w, name, FL_ST_F32, 2, sb, m->B)) != 0)
			goto fail;
	}
	rv = fl_st_writer_write(w, path, err, errlen);
	fl_st_writer_free(w);
	return rv;
fail:
	fl_seterr(err, errlen, "%s: cannot build adapter file: %s", path, fl_strerror(rv));
	fl_st_writer_free(w);
	return rv;
}

int lora_adapter_save(const lora_adapter *a, const char *path)
{
	char err[FL_ST_ERR_MAX];
	int rv = lora_adapter_save_err(a, path, err, sizeof err);
	if (rv != 0)
		fl_log(FL_LOG_ERROR, "lora", "%s", err);
	return rv;
}

static int has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);
	return n > m && !strcmp(s + n - m, suf);
}

int lora_adapter_load_err(lora_adapter **out, const char *path, char *err, size_t errlen)
{
	fl_st_file *f = NULL;
	lora_adapter *a = NULL;
	const fl_st_tensor **ta = NULL, **tb = NULL;
	char **names = NULL;
	int *in = NULL, *od = NULL, np = 0, rv;
	long r;
	double alpha;
	const char *s;
	char bname[LORA_NAME_MAX + 32];

	*out = NULL;
	if ((rv = fl_st_open(&f, path, err, errlen)) != 0)
		return rv;
	rv = FL_EFORMAT;
	s = fl_st_meta(f, "format");
	if (!s || strcmp(s, LORA_FILE_FORMAT)) {
		fl_seterr(err, errlen, "%s: __metadata__ format is %s%s%s, not \"%s\"", path,
		          s ? "\"" : "", s ? s : "missing", s ? "\"" : "", LORA_FILE_FORMAT);
		goto fail;
	}
	if (fl_parse_long(fl_st_meta(f, "r"), 1, 4096, &r) != 0) {
		fl_seterr(err, errlen, "%s: __metadata__ r is missing or not an integer in 1..4096",
		          path);
		goto fail;
	}
	s = fl_st_meta(f, "alpha");
	{
		char *end;
		alpha = s ? strtod(s, &end) : NAN;
		if (!s || !*s || *end || !isfinite(alpha) || fabs(alpha) > 1e30) {
			fl_seterr(err, errlen, "%s: __metadata__ alpha is missing or not a number",
			          path);
			goto fail;
		}
	}
	rv = FL_ESHAPE;
	if (f->n == 0 || f->n % 2) {
		fl_seterr(err, errlen, "%s: %d tensors; an adapter has (A, B) pairs", path, f->n);
		goto fail;
	}
	ta = calloc(f->n / 2, sizeof *ta);
	tb = calloc(f->n / 2, sizeof *tb);
	names = calloc(f->n / 2, sizeof *names);
	in = calloc(f->n / 2, sizeof *in);
	od = calloc(f->n / 2, sizeof *od);
	if (!ta || !tb || !names || !in || !od) {
		rv = FL_ENOMEM;
		fl_seterr(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	for (int i = 0; i < f->n; i++) {
		const fl_st_tensor *t = &f->tensors[i], *b;
		size_t base;
		if (has_suffix(t->name, SUF_B)) {
			/* checked from its A; a B without A is caught below by the count */
			continue;
		}
		if (!has_suffix(t->name, SUF_A)) {
			fl_seterr(err, errlen, "%s: tensor '%s' is neither NAME%s nor NAME%s", path,
			          t->name, SUF_A, SUF_B);
			goto fail;
		}
		base = strlen(t->name) - strlen(SUF_A);
		if (base >= LORA_NAME_MAX || np >= f->n / 2) {
			fl_seterr(err, errlen,
			          "%s: tensor '%s': name too long or too many A tensors", path,
			          t->name);
			goto fail;
		}
		snprintf(bname, sizeof bname, "%.*s%s", (int)base, t->name, SUF_B);
		b = fl_st_find(f, bname);
		if (!b) {
			fl_seterr(err, errlen, "%s: '%s' has no matching '%s'", path, t->name,
			          bname);
			goto fail;
		}
		if (t->ndim != 2 || b->ndim != 2 || t->shape[0] != r || b->shape[1] != r ||
		    t->shape[1] < 1 || t->shape[1] > INT_MAX || b->shape[0] < 1 ||
		    b->shape[0] > INT_MAX) {
			fl_seterr(
			    err, errlen,
			    "%s: matrix '%.*s': A must be (r=%ld x in) and B (out x r=%ld), got "
			    "A %d-D [%lld,%lld], B %d-D [%lld,%lld]",
			    path, (int)base, t->name, r, r, t->ndim, (long long)t->shape[0],
			    (long long)(t->ndim > 1 ? t->shape[1] : 0), b->ndim,
			    (long long)b->shape[0], (long long)(b->ndim > 1 ? b->shape[1] : 0));
			goto fail;
		}
		names[np] = strndup(t->name, base);
		if (!names[np]) {
			rv = FL_ENOMEM;
			goto fail;
		}
		ta[np] = t;
		tb[np] = b;
		in[np] = (int)t->shape[1];
		od[np] = (int)b->shape[0];
		np++;
	}
	if (np * 2 != f->n) {
		fl_seterr(err, errlen, "%s: %d tensors but %d (A, B) pairs: a B without its A",
		          path, f->n, np);
		goto fail;
	}
	if ((rv = lora_adapter_new(&a, np, (const char *const *)names, in, od, (int)r,
	                           (float)alpha)) != 0) {
		fl_seterr(err, errlen, "%s: cannot allocate the adapter: %s", path,
		          fl_strerror(rv));
		goto fail;
	}
	for (int i = 0; i < np; i++) {
		if ((rv = fl_st_read_f32(f, ta[i], a->mats[i].A, ta[i]->nelem)) != 0 ||
		    (rv = fl_st_read_f32(f, tb[i], a->mats[i].B, tb[i]->nelem)) != 0) {
			fl_seterr(err, errlen, "%s", f->err);
			goto fail;
		}
	}
	for (size_t i = 0; i < a->n_a + a->n_b; i++)
		if (!isfinite(a->params[i])) {
			rv = FL_ENONFINITE;
			fl_seterr(err, errlen, "%s: non-finite value in the adapter", path);
			goto fail;
		}
	rv = 0;
	*out = a;
	a = NULL;
fail:
	if (names)
		for (int i = 0; i < np; i++)
			free(names[i]);
	free(names);
	free(ta);
	free(tb);
	free(in);
	free(od);
	lora_adapter_free(a);
	fl_st_close(f);
	return rv;
}

int lora_adapter_load(lora_adapter **out, const char *path)
{
	char err[FL_ST_ERR_MAX];
	int rv = lora_adapter_load_err(out, path, err, sizeof err);
	if (rv != 0)
		fl_log(FL_LOG_ERROR, "lora", "%s", err);
	return rv;
}
