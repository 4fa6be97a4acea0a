/*
 * core/st_folder.c — a model folder's weights as one name -> tensor table,
 * from DIR/model.safetensors or from DIR/model.safetensors.index.json and its
 * shards. See core/st_folder.h for the checks and the weights hash.
 *
 * Each shard is opened once (fl_st_open maps it); the table holds one entry
 * per tensor pointing into its shard's reader, sorted by name so that
 * duplicates across shards sit next to each other and lookups are binary
 * searches. Nothing is copied: tensor data stays in the maps.
 */
#include "core/st_folder.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"

#define INDEX_MAX   FL_ST_HEADER_MAX /* bytes of index JSON we read */
#define HASH_DOMAIN "fedlora-weights-v1"

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const fl_st_entry *)a)->name, ((const fl_st_entry *)b)->name);
}

static int path_join(char *buf, size_t n, const char *dir, const char *file)
{
	int k = snprintf(buf, n, "%s/%s", dir, file);
	return k < 0 || (size_t)k >= n ? FL_EINVAL : 0;
}

static int file_exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

/* 0 when a weight_map value may name a shard in the folder itself. */
static int shard_name_ok(const char *s)
{
	return s[0] && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..") &&
	       strlen(s) < 256;
}

/* Appends every tensor of files[0..nfiles) to fo->ent and sorts by name. */
static int build_table(fl_st_folder *fo)
{
	size_t n = 0;
	for (int i = 0; i < fo->nfiles; i++)
		n += (size_t)fo->files[i]->n;
	if (n > (size_t)INT32_MAX)
		return FL_ETOOBIG;
	if (n && !(fo->ent = calloc(n, sizeof *fo->ent)))
		return FL_ENOMEM;
	fo->n = 0;
	fo->total_bytes = 0;
	for (int i = 0; i < fo->nfiles; i++)
		for (int k = 0; k < fo->files[i]->n; k++) {
			const fl_st_tensor *t = &fo->files[i]->tensors[k];
			fo->ent[fo->n++] = (fl_st_entry){t->name, t, i, 0};
			fo->total_bytes += t->nbytes;
		}
	if (fo->n > 1)
		qsort(fo->ent, (size_t)fo->n, sizeof *fo->ent, entry_cmp);
	return 0;
}

static fl_st_entry *find_entry(const fl_st_folder *fo, const char *name)
{
	int lo = 0, hi = fo->n - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		int c = strcmp(name, fo->ent[mid].name);
		if (c == 0)
			return &fo->ent[mid];
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
}

static const char *shard_of(const fl_st_folder *fo, int i)
{
	return fo->names[i];
}

/* fo->files and fo->names with room for n files. */
static int alloc_files(fl_st_folder *fo, int n)
{
	if (!(fo->files = calloc((size_t)n, sizeof *fo->files)) ||
	    !(fo->names = calloc((size_t)n, sizeof *fo->names)))
		return FL_ENOMEM;
	return 0;
}

static int open_single(fl_st_folder *fo, const char *path)
{
	int rv;
	char e[FL_ST_ERR_MAX];
	if ((rv = alloc_files(fo, 1)) != 0 || !(fo->names[0] = strdup(FL_ST_SINGLE_FILE)))
		return FL_ENOMEM;
	fo->nfiles = 1; /* files[0] stays NULL until it opens */
	e[0] = 0;
	if ((rv = fl_st_open(&fo->files[0], path, e, sizeof e)) != 0) {
		fl_seterr(fo->err, sizeof fo->err, "%s", e[0] ? e : path);
		return rv;
	}
	return build_table(fo);
}

/* Reads metadata.total_size when present (-1 otherwise). */
static int read_total_size(fl_st_folder *fo, const cJSON *root)
{
	const char *P = fo->path;
	const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "metadata"), *ts;
	fo->total_size_declared = -1;
	if (!md || cJSON_IsNull(md))
		return 0;
	if (!cJSON_IsObject(md)) {
		fl_seterr(fo->err, sizeof fo->err, "%s: metadata: want an object", P);
		return FL_EFORMAT;
	}
	if (!(ts = cJSON_GetObjectItemCaseSensitive(md, "total_size")) || cJSON_IsNull(ts))
		return 0;
	double v = cJSON_IsNumber(ts) ? ts->valuedouble : -1;
	if (!cJSON_IsNumber(ts) || !(v >= 0) || v > 9.0e15 || floor(v) != v) {
		fl_seterr(fo->err, sizeof fo->err,
		          "%s: metadata.total_size: want a non-negative integer", P);
		return FL_EFORMAT;
	}
	fo->total_size_declared = (int64_t)v;
	return 0;
}

static int open_index(fl_st_folder *fo, const char *dir)
{
	const char *P = fo->path;
	char *text = NULL, path[4096], e[FL_ST_ERR_MAX];
	const char **names = NULL; /* distinct shard names, into the JSON */
	cJSON *root = NULL;
	const cJSON *wm, *it;
	size_t len;
	int rv, nn = 0;

	if ((rv = fl_read_file(P, INDEX_MAX, &text, &len)) != 0) {
		fl_seterr(fo->err, sizeof fo->err, "%s: cannot read: %s", P,
		          rv == FL_ETOOBIG ? "over the size limit" : fl_strerror(rv));
		return rv;
	}
	if (!(root = cJSON_ParseWithLength(text, len)) || !cJSON_IsObject(root)) {
		fl_seterr(fo->err, sizeof fo->err, "%s: not a JSON object", P);
		rv = FL_EFORMAT;
		goto done;
	}
	wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	if (!cJSON_IsObject(wm) || !wm->child) {
		fl_seterr(fo->err, sizeof fo->err, "%s: weight_map: want a non-empty object", P);
		rv = FL_EFORMAT;
		goto done;
	}
	if ((rv = read_total_size(fo, root)) != 0)
		goto done;
	if (!(names = calloc(FL_ST_MAX_SHARDS, sizeof *names))) {
		rv = FL_ENOMEM;
		goto done;
	}
	/* the distinct shards, in order of first mention */
	cJSON_ArrayForEach(it, wm)
	{
		if (!cJSON_IsString(it) || !it->valuestring) {
			fl_seterr(fo->err, sizeof fo->err,
			          "%s: weight_map[\"%.128s\"]: want a file name string", P,
			          it->string);
			rv = FL_EFORMAT;
			goto done;
		}
		if (!shard_name_ok(it->valuestring)) {
			fl_seterr(
			    fo->err, sizeof fo->err,
			    "%s: weight_map[\"%.128s\"]: shard name \"%.128s\" is not a plain "
			    "file name in the model folder",
			    P, it->string, it->valuestring);
			rv = FL_EFORMAT;
			goto done;
		}
		int k = 0;
		while (k < nn && strcmp(names[k], it->valuestring))
			k++;
		if (k < nn)
			continue;
		if (nn == FL_ST_MAX_SHARDS) {
			fl_seterr(fo->err, sizeof fo->err, "%s: weight_map: more than %d shards", P,
			          FL_ST_MAX_SHARDS);
			rv = FL_ETOOBIG;
			goto done;
		}
		names[nn++] = it->valuestring;
	}
	if ((rv = alloc_files(fo, nn)) != 0)
		goto done;
	for (int k = 0; k < nn; k++) {
		if (path_join(path, sizeof path, dir, names[k])) {
			fl_seterr(fo->err, sizeof fo->err, "%s: shard path too long", P);
			rv = FL_EINVAL;
			goto done;
		}
		if (!(fo->names[k] = strdup(names[k]))) {
			rv = FL_ENOMEM;
			goto done;
		}
		fo->nfiles = k + 1; /* files[k] stays NULL unless it opens */
		e[0] = 0;
		if ((rv = fl_st_open(&fo->files[k], path, e, sizeof e)) != 0) {
			if (rv == FL_ENOENT)
				fl_seterr(fo->err, sizeof fo->err,
				          "%s: weight_map names shard %.128s, which does not exist",
				          P, names[k]);
			else
				fl_seterr(fo->err, sizeof fo->err, "%s (shard of %s)",
				          e[0] ? e : path, P);
			goto done;
		}
	}
	if ((rv = build_table(fo)) != 0)
		goto done;
	for (int i = 1; i < fo->n; i++)
		if (!strcmp(fo->ent[i - 1].name, fo->ent[i].name)) {
			fl_seterr(fo->err, sizeof fo->err,
			          "%s: tensor %.128s is in two shards, %.128s and %.128s", P,
			          fo->ent[i].name, shard_of(fo, fo->ent[i - 1].shard),
			          shard_of(fo, fo->ent[i].shard));
			rv = FL_EFORMAT;
			goto done;
		}
	/* every weight_map entry must be in the shard it names, once */
	cJSON_ArrayForEach(it, wm)
	{
		fl_st_entry *en = find_entry(fo, it->string);
		if (!en || strcmp(shard_of(fo, en->shard), it->valuestring)) {
			if (!en)
				fl_seterr(
				    fo->err, sizeof fo->err,
				    "%s: weight_map[\"%.128s\"]: shard %.128s has no such tensor",
				    P, it->string, it->valuestring);
			else
				fl_seterr(
				    fo->err, sizeof fo->err,
				    "%s: weight_map[\"%.128s\"]: says shard %.128s but the tensor "
				    "is in %.128s",
				    P, it->string, it->valuestring, shard_of(fo, en->shard));
			rv = FL_EFORMAT;
			goto done;
		}
		if (en->listed_) {
			fl_seterr(fo->err, sizeof fo->err,
			          "%s: weight_map[\"%.128s\"]: listed twice", P, it->string);
			rv = FL_EFORMAT;
			goto done;
		}
		en->listed_ = 1;
	}
	for (int i = 0; i < fo->n; i++)
		if (!fo->ent[i].listed_) {
			fl_seterr(
			    fo->err, sizeof fo->err,
			    "%s: weight_map: shard %.128s has tensor %.128s, which is not listed",
			    P, shard_of(fo, fo->ent[i].shard), fo->ent[i].name);
			rv = FL_EFORMAT;
			goto done;
		}
	if (fo->total_size_declared >= 0 && (uint64_t)fo->total_size_declared != fo->total_bytes) {
		fo->total_size_mismatch = 1;
		fl_log(FL_LOG_WARN, "safetensors",
		       "%s: metadata.total_size is %lld but the shards' tensors hold %llu bytes "
		       "(ignored; every tensor is checked on its own)",
		       P, (long long)fo->total_size_declared, (unsigned long long)fo->total_bytes);
	}
	rv = 0;
done:
	free(names);
	cJSON_Delete(root);
	free(text);
	return rv;
}

int fl_st_folder_open(fl_st_folder **out, const char *dir, char *err, size_t errlen)
{
	fl_st_folder *fo;
	char single[4096];
	int rv;

	*out = NULL;
	if (!(fo = calloc(1, sizeof *fo))) {
		fl_seterr(err, errlen, "%s: out of memory", dir);
		return FL_ENOMEM;
	}
	fo->total_size_declared = -1;
	if (path_join(single, sizeof single, dir, FL_ST_SINGLE_FILE) ||
	    path_join(fo->path, sizeof fo->path, dir, FL_ST_INDEX_FILE)) {
		fl_seterr(fo->err, sizeof fo->err, "%s: path too long", dir);
		rv = FL_EINVAL;
		goto fail;
	}
	if (file_exists(single) || !file_exists(fo->path)) {
		/* transformers' order: the single file first; neither: its ENOENT */
		snprintf(fo->path, sizeof fo->path, "%s", single);
		rv = open_single(fo, single);
	} else {
		fo->sharded = 1;
		rv = open_index(fo, dir);
	}
	if (rv != 0)
		goto fail;
	fo->err[0] = 0;
	*out = fo;
	return 0;
fail:
	fl_seterr(err, errlen, "%s", fo->err[0] ? fo->err : fl_strerror(rv));
	fl_st_folder_close(fo);
	return rv;
}

void fl_st_folder_close(fl_st_folder *fo)
{
	if (!fo)
		return;
	for (int i = 0; i < fo->nfiles; i++) {
		fl_st_close(fo->files[i]);
		free(fo->names[i]);
	}
	free(fo->files);
	free(fo->names);
	free(fo->ent);
	free(fo);
}

const fl_st_tensor *fl_st_folder_find(const fl_st_folder *fo, const char *name, fl_st_file **file)
{
	const fl_st_entry *en = find_entry(fo, name);
	if (file)
		*file = en ? fo->files[en->shard] : NULL;
	return en ? en->t : NULL;
}

int fl_st_folder_load_f32(fl_st_folder *fo, const char *name, int ndim, const int64_t *shape,
                          float *dst)
{
	fl_st_file *f;
	int rv;
	if (!fl_st_folder_find(fo, name, &f)) {
		fl_seterr(fo->err, sizeof fo->err, "%s: tensor %.128s is missing%s", fo->path, name,
		          fo->sharded ? " from weight_map" : "");
		return FL_ENOENT;
	}
	f->err[0] = 0;
	if ((rv = fl_st_load_f32(f, name, ndim, shape, dst)) != 0)
		fl_seterr(fo->err, sizeof fo->err, "%s: tensor %.128s: %s", f->path, name,
		          f->err[0] ? f->err : fl_strerror(rv));
	return rv;
}

static void hash_u64(crypto_generichash_state *st, uint64_t v)
{
	unsigned char b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	crypto_generichash_update(st, b, sizeof b);
}

static void hash_str(crypto_generichash_state *st, const char *s)
{
	size_t n = strlen(s);
	hash_u64(st, n);
	crypto_generichash_update(st, (const unsigned char *)s, n);
}

int fl_st_folder_hash(const fl_st_folder *fo, uint8_t out[FL_ST_HASH_BYTES])
{
	crypto_generichash_state st;
	if (sodium_init() < 0 || crypto_generichash_init(&st, NULL, 0, FL_ST_HASH_BYTES) != 0)
		return FL_ECRYPTO;
	hash_str(&st, HASH_DOMAIN);
	hash_u64(&st, (uint64_t)fo->n);
	for (int i = 0; i < fo->n; i++) {
		const fl_st_tensor *t = fo->ent[i].t;
		hash_str(&st, t->name);
		hash_str(&st, fl_st_dtype_name(t->dtype));
		hash_u64(&st, (uint64_t)t->ndim);
		for (int d = 0; d < t->ndim; d++)
			hash_u64(&st, (uint64_t)t->shape[d]);
		hash_u64(&st, t->nbytes);
		/* in 1 GiB pieces: the update length is an unsigned long long anyway */
		const unsigned char *p = fl_st_raw(fo->files[fo->ent[i].shard], t);
		for (size_t off = 0; off < t->nbytes;) {
			size_t k = t->nbytes - off < ((size_t)1 << 30) ? t->nbytes - off
			                                               : ((size_t)1 << 30);
			crypto_generichash_update(&st, p + off, k);
			off += k;
		}
	}
	return crypto_generichash_final(&st, out, FL_ST_HASH_BYTES) == 0 ? 0 : FL_ECRYPTO;
}
