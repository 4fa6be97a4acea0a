/*
 * core/safetensors.c — safetensors reader (mmap + strict header validation)
 * and atomic writer. See core/safetensors.h for the contract.
 *
 * Does not: write dtypes other than F32/BF16/F16, convert integer dtypes, or
 * check tensor values for NaN/Inf.
 */
#include "core/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/half.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fedlora's safetensors code assumes a little-endian host"
#endif

_Static_assert(sizeof(float) == 4, "float must be IEEE-754 binary32");

static const struct {
	const char *name;
	size_t size;
} st_dtypes[FL_ST_NDTYPES] = {
    [FL_ST_F32] = {"F32", 4},   [FL_ST_BF16] = {"BF16", 2},       [FL_ST_F16] = {"F16", 2},
    [FL_ST_F64] = {"F64", 8},   [FL_ST_I8] = {"I8", 1},           [FL_ST_I16] = {"I16", 2},
    [FL_ST_I32] = {"I32", 4},   [FL_ST_I64] = {"I64", 8},         [FL_ST_U8] = {"U8", 1},
    [FL_ST_U16] = {"U16", 2},   [FL_ST_U32] = {"U32", 4},         [FL_ST_U64] = {"U64", 8},
    [FL_ST_BOOL] = {"BOOL", 1}, [FL_ST_F8_E4M3] = {"F8_E4M3", 1}, [FL_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *fl_st_dtype_name(fl_st_dtype d)
{
	return (unsigned)d < FL_ST_NDTYPES ? st_dtypes[d].name : NULL;
}

size_t fl_st_dtype_size(fl_st_dtype d)
{
	return (unsigned)d < FL_ST_NDTYPES ? st_dtypes[d].size : 0;
}

/* ---- reader ---- */

static int cmp_name_idx(const void *a, const void *b, void *ctx)
{
	const fl_st_file *f = ctx;
	return strcmp(f->tensors[*(const int *)a].name, f->tensors[*(const int *)b].name);
}

static int cmp_off_idx(const void *a, const void *b, void *ctx)
{
	const fl_st_file *f = ctx;
	size_t x = f->tensors[*(const int *)a].offset, y = f->tensors[*(const int *)b].offset;
	if (x != y)
		return x < y ? -1 : 1;
	/* zero-size tensors share offsets with neighbours; order them first */
	x = f->tensors[*(const int *)a].nbytes;
	y = f->tensors[*(const int *)b].nbytes;
	return x < y ? -1 : x > y;
}

/* A JSON number that is a non-negative integer no larger than 2^53. */
static int json_uint(const cJSON *j, uint64_t *v)
{
	double d;
	if (!cJSON_IsNumber(j))
		return -1;
	d = j->valuedouble;
	if (!(d >= 0.0) || d > 9007199254740992.0 || d != floor(d))
		return -1;
	*v = (uint64_t)d;
	return 0;
}

static int parse_dtype(const char *s, fl_st_dtype *d)
{
	for (int i = 0; i < FL_ST_NDTYPES; i++)
		if (!strcmp(s, st_dtypes[i].name)) {
			*d = (fl_st_dtype)i;
			return 0;
		}
	return -1;
}

void fl_st_close(fl_st_file *f)
{
	if (!f)
		return;
	if (f->map_)
		munmap(f->map_, f->map_len_);
	cJSON_Delete(f->json_);
	free(f->tensors);
	free(f->meta_keys);
	free(f->meta_vals);
	free(f->sorted_);
	free(f);
}

/* Parses and validates the JSON header of f (already mapped). */
static int st_parse_header(fl_st_file *f, const char *hdr, size_t hlen)
{
	cJSON *root, *it;
	int nt = 0, nm = 0, *byoff = NULL, rv = FL_EFORMAT;
	const char *P = f->path;

	const char *end = NULL;
	root = cJSON_ParseWithLengthOpts(hdr, hlen, &end, 0);
	if (!root) {
		fl_seterr(f->err, sizeof f->err, "%s: header is not valid JSON", P);
		return FL_EFORMAT;
	}
	f->json_ = root;
	/* only padding may follow the object */
	for (; end && end < hdr + hlen; end++)
		if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r' && *end != 0) {
			fl_seterr(f->err, sizeof f->err, "%s: bytes after the header's JSON object",
			          P);
			return FL_EFORMAT;
		}
	if (!cJSON_IsObject(root)) {
		fl_seterr(f->err, sizeof f->err, "%s: header is not a JSON object", P);
		return FL_EFORMAT;
	}
	for (it = root->child; it; it = it->next) {
		if (!it->string) {
			fl_seterr(f->err, sizeof f->err, "%s: header entry without a name", P);
			return FL_EFORMAT;
		}
		if (!strcmp(it->string, "__metadata__")) {
			if (!cJSON_IsObject(it)) {
				fl_seterr(f->err, sizeof f->err,
				          "%s: __metadata__ is not an object", P);
				return FL_EFORMAT;
			}
			if (nm) {
				fl_seterr(f->err, sizeof f->err, "%s: __metadata__ appears twice",
				          P);
				return FL_EFORMAT;
			}
			nm = 1;
		} else {
			nt++;
		}
	}
	f->n = nt;
	f->tensors = calloc(nt ? nt : 1, sizeof *f->tensors);
	f->sorted_ = malloc((nt ? nt : 1) * sizeof *f->sorted_);
	byoff = malloc((nt ? nt : 1) * sizeof *byoff);
	if (!f->tensors || !f->sorted_ || !byoff) {
		rv = FL_ENOMEM;
		goto fail;
	}
	nt = 0;
	for (it = root->child; it; it = it->next) {
		cJSON *jd, *js, *jo, *e;
		fl_st_tensor *t;
		uint64_t b, en, v;
		size_t nel = 1, dsz;

		if (!strcmp(it->string, "__metadata__")) {
			int k = 0;
			f->n_meta = cJSON_GetArraySize(it);
			f->meta_keys = calloc(f->n_meta ? f->n_meta : 1, sizeof(char *));
			f->meta_vals = calloc(f->n_meta ? f->n_meta : 1, sizeof(char *));
			if (!f->meta_keys || !f->meta_vals) {
				rv = FL_ENOMEM;
				goto fail;
			}
			for (e = it->child; e; e = e->next, k++) {
				if (!cJSON_IsString(e) || !e->string) {
					fl_seterr(f->err, sizeof f->err,
					          "%s: __metadata__ value of '%s' is not a string",
					          P, e->string ? e->string : "?");
					goto fail;
				}
				for (int j = 0; j < k; j++)
					if (!strcmp(f->meta_keys[j], e->string)) {
						fl_seterr(f->err, sizeof f->err,
						          "%s: __metadata__ key '%s' appears twice",
						          P, e->string);
						goto fail;
					}
				f->meta_keys[k] = e->string;
				f->meta_vals[k] = e->valuestring;
			}
			continue;
		}
		t = &f->tensors[nt];
		t->name = it->string;
		if (!cJSON_IsObject(it)) {
			fl_seterr(f->err, sizeof f->err, "%s: tensor '%s' is not an object", P,
			          t->name);
			goto fail;
		}
		jd = cJSON_GetObjectItemCaseSensitive(it, "dtype");
		js = cJSON_GetObjectItemCaseSensitive(it, "shape");
		jo = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
		if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo)) {
			fl_seterr(f->err, sizeof f->err,
			          "%s: tensor '%s' lacks dtype, shape or data_offsets", P, t->name);
			goto fail;
		}
		if (parse_dtype(jd->valuestring, &t->dtype) != 0) {
			fl_seterr(f->err, sizeof f->err,
			          "%s: tensor '%s' has unknown dtype '%.32s'", P, t->name,
			          jd->valuestring);
			rv = FL_ENOTSUP;
			goto fail;
		}
		t->ndim = cJSON_GetArraySize(js);
		if (t->ndim > FL_ST_MAX_DIMS) {
			fl_seterr(f->err, sizeof f->err, "%s: tensor '%s' has %d dims (max %d)", P,
			          t->name, t->ndim, FL_ST_MAX_DIMS);
			goto fail;
		}
		int d = 0;
		for (e = js->child; e; e = e->next, d++) {
			if (json_uint(e, &v) != 0 || v > (uint64_t)INT64_MAX) {
				fl_seterr(f->err, sizeof f->err,
				          "%s: tensor '%s' shape has a bad dimension", P, t->name);
				goto fail;
			}
			t->shape[d] = (int64_t)v;
			if (v != 0 && nel > SIZE_MAX / v) {
				fl_seterr(f->err, sizeof f->err,
				          "%s: tensor '%s' shape product overflows", P, t->name);
				goto fail;
			}
			nel *= (size_t)v;
		}
		dsz = st_dtypes[t->dtype].size;
		if (nel > SIZE_MAX / dsz) {
			fl_seterr(f->err, sizeof f->err, "%s: tensor '%s' byte size overflows", P,
			          t->name);
			goto fail;
		}
		if (cJSON_GetArraySize(jo) != 2 || json_uint(jo->child, &b) != 0 ||
		    json_uint(jo->child->next, &en) != 0 || en < b) {
			fl_seterr(f->err, sizeof f->err, "%s: tensor '%s' has bad data_offsets", P,
			          t->name);
			goto fail;
		}
		if (en > f->data_len_) {
			fl_seterr(f->err, sizeof f->err,
			          "%s: tensor '%s' data_offsets [%llu, %llu) out of range (data "
			          "region is %zu bytes)",
			          P, t->name, (unsigned long long)b, (unsigned long long)en,
			          f->data_len_);
			goto fail;
		}
		t->nelem = nel;
		t->nbytes = nel * dsz;
		t->offset = (size_t)b;
		if ((uint64_t)t->nbytes != en - b) {
			fl_seterr(f->err, sizeof f->err,
			          "%s: tensor '%s' spans %llu bytes but shape x %s needs %zu", P,
			          t->name, (unsigned long long)(en - b), st_dtypes[t->dtype].name,
			          t->nbytes);
			goto fail;
		}
		f->sorted_[nt] = nt;
		byoff[nt] = nt;
		nt++;
	}
	/* unique names */
	qsort_r(f->sorted_, nt, sizeof(int), cmp_name_idx, f);
	for (int i = 1; i < nt; i++)
		if (!strcmp(f->tensors[f->sorted_[i]].name, f->tensors[f->sorted_[i - 1]].name)) {
			fl_seterr(f->err, sizeof f->err, "%s: tensor name '%s' appears twice", P,
			          f->tensors[f->sorted_[i]].name);
			goto fail;
		}
	/* tensors tile the data region: contiguous, no overlap, no hole */
	qsort_r(byoff, nt, sizeof(int), cmp_off_idx, f);
	size_t pos = 0;
	for (int i = 0; i < nt; i++) {
		const fl_st_tensor *t = &f->tensors[byoff[i]];
		if (t->offset != pos) {
			fl_seterr(f->err, sizeof f->err,
			          "%s: tensor '%s' at offset %zu %s (expected %zu)", P, t->name,
			          t->offset, t->offset < pos ? "overlaps another" : "leaves a hole",
			          pos);
			goto fail;
		}
		pos += t->nbytes;
	}
	if (pos != f->data_len_) {
		fl_seterr(f->err, sizeof f->err,
		          "%s: tensors cover %zu bytes but the data region has %zu", P, pos,
		          f->data_len_);
		goto fail;
	}
	free(byoff);
	return 0;
fail:
	free(byoff);
	return rv;
}

int fl_st_open(fl_st_file **out, const char *path, char *err, size_t errlen)
{
	fl_st_file *f = NULL;
	struct stat sb;
	uint64_t hlen;
	int fd = -1, rv;

	*out = NULL;
	f = calloc(1, sizeof *f);
	if (!f) {
		fl_seterr(err, errlen, "%s: out of memory", path);
		return FL_ENOMEM;
	}
	snprintf(f->path, sizeof f->path, "%s", path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rv = errno == ENOENT ? FL_ENOENT : FL_EIO;
		fl_seterr(f->err, sizeof f->err, "%s: cannot open: %s", path, strerror(errno));
		goto fail;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		rv = FL_EIO;
		fl_seterr(f->err, sizeof f->err, "%s: not a regular file", path);
		goto fail;
	}
	if (sb.st_size < 8) {
		rv = FL_EFORMAT;
		fl_seterr(f->err, sizeof f->err, "%s: file too short (%lld bytes) for a header",
		          path, (long long)sb.st_size);
		goto fail;
	}
	f->map_len_ = (size_t)sb.st_size;
	f->map_ = mmap(NULL, f->map_len_, PROT_READ, MAP_PRIVATE, fd, 0);
	if (f->map_ == MAP_FAILED) {
		f->map_ = NULL;
		rv = FL_EIO;
		fl_seterr(f->err, sizeof f->err, "%s: mmap failed: %s", path, strerror(errno));
		goto fail;
	}
	close(fd);
	fd = -1;
	memcpy(&hlen, f->map_, 8);
	if (hlen > FL_ST_HEADER_MAX) {
		rv = FL_ETOOBIG;
		fl_seterr(f->err, sizeof f->err, "%s: header length %llu over the %u-byte limit",
		          path, (unsigned long long)hlen, FL_ST_HEADER_MAX);
		goto fail;
	}
	if (hlen < 2 || hlen > f->map_len_ - 8) {
		rv = FL_EFORMAT;
		fl_seterr(f->err, sizeof f->err,
		          "%s: header length %llu does not fit the file (%zu bytes); truncated?",
		          path, (unsigned long long)hlen, f->map_len_);
		goto fail;
	}
	f->data_ = (const uint8_t *)f->map_ + 8 + hlen;
	f->data_len_ = f->map_len_ - 8 - (size_t)hlen;
	if (((const char *)f->map_)[8] != '{') {
		rv = FL_EFORMAT;
		fl_seterr(f->err, sizeof f->err, "%s: header does not start with '{'", path);
		goto fail;
	}
	rv = st_parse_header(f, (const char *)f->map_ + 8, (size_t)hlen);
	if (rv != 0)
		goto fail;
	f->err[0] = 0;
	*out = f;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	fl_seterr(err, errlen, "%s", f->err);
	fl_st_close(f);
	return rv;
}

const fl_st_tensor *fl_st_find(const fl_st_file *f, const char *name)
{
	int lo = 0, hi = f->n - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		const fl_st_tensor *t = &f->tensors[f->sorted_[mid]];
		int c = strcmp(name, t->name);
		if (c == 0)
			return t;
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
}

const char *fl_st_meta(const fl_st_file *f, const char *key)
{
	for (int i = 0; i < f->n_meta; i++)
		if (!strcmp(f->meta_keys[i], key))
			return f->meta_vals[i];
	return NULL;
}

const void *fl_st_raw(const fl_st_file *f, const fl_st_tensor *t)
{
	return f->data_ + t->offset;
}

int fl_st_read_f32(fl_st_file *f, const fl_st_tensor *t, float *dst, size_t count)
{
	const uint8_t *p = f->data_ + t->offset;
	if (count != t->nelem) {
		fl_seterr(f->err, sizeof f->err,
		          "%s: tensor '%s' has %zu elements, caller expects %zu", f->path, t->name,
		          t->nelem, count);
		return FL_ESHAPE;
	}
	switch (t->dtype) {
	case FL_ST_F32:
		memcpy(dst, p, count * 4);
		return 0;
	case FL_ST_BF16:
		for (size_t i = 0; i < count; i++) {
			uint16_t h;
			memcpy(&h, p + 2 * i, 2);
			dst[i] = fl_bf16_to_f32(h);
		}
		return 0;
	case FL_ST_F16:
		for (size_t i = 0; i < count; i++) {
			uint16_t h;
			memcpy(&h, p + 2 * i, 2);
			dst[i] = fl_f16_to_f32(h);
		}
		return 0;
	default:
		fl_seterr(f->err, sizeof f->err,
		          "%s: tensor '%s' has dtype %s, not convertible to F32", f->path, t->name,
		          st_dtypes[t->dtype].name);
		return FL_ENOTSUP;
	}
}

int fl_st_load_f32(fl_st_file *f, const char *name, int ndim, const int64_t *shape, float *dst)
{
	const fl_st_tensor *t = fl_st_find(f, name);
	if (!t) {
		fl_seterr(f->err, sizeof f->err, "%s: no tensor '%s'", f->path, name);
		return FL_ENOENT;
	}
	if (t->ndim != ndim)
		goto bad;
	for (int i = 0; i < ndim; i++)
		if (t->shape[i] != shape[i])
			goto bad;
	return fl_st_read_f32(f, t, dst, t->nelem);
bad : {
	char got[128], want[128];
	int g = 0, w = 0;
	got[0] = want[0] = 0;
	for (int i = 0; i < t->ndim && g < (int)sizeof got - 24; i++)
		g += snprintf(got + g, sizeof got - g, "%s%lld", i ? "," : "",
		              (long long)t->shape[i]);
	for (int i = 0; i < ndim && w < (int)sizeof want - 24; i++)
		w += snprintf(want + w, sizeof want - w, "%s%lld", i ? "," : "",
		              (long long)shape[i]);
	fl_seterr(f->err, sizeof f->err, "%s: tensor '%s' has shape [%s], expected [%s]", f->path,
	          name, got, want);
	return FL_ESHAPE;
}
}

/* ---- writer ---- */

typedef struct st_wtensor {
	char *name;
	fl_st_dtype dtype;
	int ndim;
	int64_t shape[FL_ST_MAX_DIMS];
	size_t nelem;
	const float *src;
} st_wtensor;

struct fl_st_writer {
	st_wtensor *t;
	int n, cap;
	char **mkeys, **mvals;
	int nm, mcap;
};

int fl_st_writer_new(fl_st_writer **out)
{
	*out = calloc(1, sizeof **out);
	return *out ? 0 : FL_ENOMEM;
}

void fl_st_writer_free(fl_st_writer *w)
{
	if (!w)
		return;
	for (int i = 0; i < w->n; i++)
		free(w->t[i].name);
	for (int i = 0; i < w->nm; i++) {
		free(w->mkeys[i]);
		free(w->mvals[i]);
	}
	free(w->t);
	free(w->mkeys);
	free(w->mvals);
	free(w);
}

int fl_st_writer_add(fl_st_writer *w, const char *name, fl_st_dtype dtype, int ndim,
                     const int64_t *shape, const float *src)
{
	st_wtensor *t;
	size_t nel = 1;
	if (dtype != FL_ST_F32 && dtype != FL_ST_BF16 && dtype != FL_ST_F16)
		return FL_ENOTSUP;
	if (!name || !*name || !strcmp(name, "__metadata__") || ndim < 0 || ndim > FL_ST_MAX_DIMS)
		return FL_EINVAL;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0)
			return FL_EINVAL;
		if (shape[i] && nel > SIZE_MAX / 8 / (size_t)shape[i])
			return FL_EINVAL;
		nel *= (size_t)shape[i];
	}
	if (nel && !src)
		return FL_EINVAL;
	for (int i = 0; i < w->n; i++)
		if (!strcmp(w->t[i].name, name))
			return FL_EINVAL;
	if (w->n == w->cap) {
		int nc = w->cap ? 2 * w->cap : 16;
		st_wtensor *nt = realloc(w->t, nc * sizeof *nt);
		if (!nt)
			return FL_ENOMEM;
		w->t = nt;
		w->cap = nc;
	}
	t = &w->t[w->n];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	if (!t->name)
		return FL_ENOMEM;
	t->dtype = dtype;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		t->shape[i] = shape[i];
	t->nelem = nel;
	t->src = src;
	w->n++;
	return 0;
}

int fl_st_writer_meta(fl_st_writer *w, const char *key, const char *value)
{
	char *v;
	if (!key || !value)
		return FL_EINVAL;
	v = strdup(value);
	if (!v)
		return FL_ENOMEM;
	for (int i = 0; i < w->nm; i++)
		if (!strcmp(w->mkeys[i], key)) {
			free(w->mvals[i]);
			w->mvals[i] = v;
			return 0;
		}
	if (w->nm == w->mcap) {
		int nc = w->mcap ? 2 * w->mcap : 8;
		char **k = realloc(w->mkeys, nc * sizeof *k);
		if (!k)
			goto nomem;
		w->mkeys = k;
		char **vv = realloc(w->mvals, nc * sizeof *vv);
		if (!vv)
			goto nomem;
		w->mvals = vv;
		w->mcap = nc;
	}
	w->mkeys[w->nm] = strdup(key);
	if (!w->mkeys[w->nm])
		goto nomem;
	w->mvals[w->nm++] = v;
	return 0;
nomem:
	free(v);
	return FL_ENOMEM;
}

/* Growing string buffer for the JSON header. */
typedef struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 256;
		while (nc < b->len + n + 1)
			nc *= 2;
		char *np = realloc(b->p, nc);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (k > 0)
		sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* JSON string literal with escapes. */
static void sb_jstr(sbuf *b, const char *s)
{
	sb_put(b, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			sb_put(b, e, 2);
		} else if (c < 0x20) {
			sb_printf(b, "\\u%04x", c);
		} else {
			sb_put(b, (const char *)&c, 1);
		}
	}
	sb_put(b, "\"", 1);
}

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *q = p;
	while (n) {
		ssize_t k = write(fd, q, n > (1u << 30) ? (1u << 30) : n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		q += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Writes tensor t's data converted to its dtype, in chunks. */
static int write_tensor(int fd, const st_wtensor *t, uint16_t *chunk, size_t chunk_elems)
{
	if (t->dtype == FL_ST_F32)
		return write_all(fd, t->src, t->nelem * 4);
	for (size_t i = 0; i < t->nelem; i += chunk_elems) {
		size_t m = t->nelem - i < chunk_elems ? t->nelem - i : chunk_elems;
		for (size_t j = 0; j < m; j++)
			chunk[j] = t->dtype == FL_ST_BF16 ? fl_f32_to_bf16(t->src[i + j])
			                                  : fl_f32_to_f16(t->src[i + j]);
		if (write_all(fd, chunk, m * 2) != 0)
			return -1;
	}
	return 0;
}

int fl_st_writer_write(fl_st_writer *w, const char *path, char *err, size_t errlen)
{
	sbuf h = {0};
	size_t off = 0;
	uint64_t hlen;
	char *tmp = NULL, *dir = NULL;
	uint16_t *chunk = NULL;
	const size_t CH = 1 << 16;
	int fd = -1, rv = FL_EIO, first = 1;

	sb_put(&h, "{", 1);
	if (w->nm) {
		sb_put(&h, "\"__metadata__\":{", 16);
		for (int i = 0; i < w->nm; i++) {
			if (i)
				sb_put(&h, ",", 1);
			sb_jstr(&h, w->mkeys[i]);
			sb_put(&h, ":", 1);
			sb_jstr(&h, w->mvals[i]);
		}
		sb_put(&h, "}", 1);
		first = 0;
	}
	for (int i = 0; i < w->n; i++) {
		const st_wtensor *t = &w->t[i];
		size_t nb = t->nelem * st_dtypes[t->dtype].size;
		if (!first)
			sb_put(&h, ",", 1);
		first = 0;
		sb_jstr(&h, t->name);
		sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtypes[t->dtype].name);
		for (int d = 0; d < t->ndim; d++)
			sb_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
		sb_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
		off += nb;
	}
	sb_put(&h, "}", 1);
	while (!h.oom && h.len % 8)
		sb_put(&h, " ", 1);
	if (h.oom) {
		rv = FL_ENOMEM;
		fl_seterr(err, errlen, "%s: out of memory building the header", path);
		goto fail;
	}
	if (h.len > FL_ST_HEADER_MAX) {
		rv = FL_ETOOBIG;
		fl_seterr(err, errlen, "%s: header of %zu bytes over the limit", path, h.len);
		goto fail;
	}
	hlen = h.len;
	tmp = malloc(strlen(path) + 16);
	dir = strdup(path);
	chunk = malloc(CH * sizeof *chunk);
	if (!tmp || !dir || !chunk) {
		rv = FL_ENOMEM;
		fl_seterr(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	sprintf(tmp, "%s.tmp.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		fl_seterr(err, errlen, "%s: cannot create a temporary file: %s", path,
		          strerror(errno));
		free(tmp);
		tmp = NULL;
		goto fail;
	}
	if (fchmod(fd, 0644) != 0 || write_all(fd, &hlen, 8) != 0 || write_all(fd, h.p, h.len) != 0)
		goto werr;
	for (int i = 0; i < w->n; i++)
		if (write_tensor(fd, &w->t[i], chunk, CH) != 0)
			goto werr;
	if (fsync(fd) != 0)
		goto werr;
	if (close(fd) != 0) {
		fd = -1;
		goto werr;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto werr;
	free(tmp);
	tmp = NULL;
	/* make the rename durable */
	{
		char *slash = strrchr(dir, '/');
		const char *d = ".";
		if (slash == dir)
			d = "/";
		else if (slash) {
			*slash = 0;
			d = dir;
		}
		int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	free(h.p);
	free(dir);
	free(chunk);
	return 0;
werr:
	fl_seterr(err, errlen, "%s: write failed: %s", path, strerror(errno));
fail:
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	free(h.p);
	free(dir);
	free(chunk);
	return rv;
}
