/*
 * tests/fuzz/stindex_fuzz.c — libFuzzer target for sharded checkpoints
 * (core/st_folder.c): the fuzz bytes become DIR/model.safetensors.index.json
 * of a folder that also holds two valid shards, s1.safetensors (tensors a,
 * c) and s2.safetensors (b), and a copy of the bytes as x.safetensors (so an
 * index may point at a malformed shard). fl_st_folder_open parses the index,
 * opens the shards it names and cross-checks them; when it accepts, every
 * tensor is looked up by name, loaded as float32 and the weights hash is
 * computed. A crash, sanitizer report or leak is a bug; rejections are
 * expected.
 * Run: make fuzz-build && build-fuzz/fuzz/stindex_fuzz tests/fuzz/corpus/stindex
 */
#include "core/st_folder.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int shards_ready;

/* The two fixed shards, written once per process. */
static int write_shards(const char *dir)
{
	static const float v[6] = {1, 2, 3, 4, 5, 6};
	const int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3};
	char p[512], err[256];
	fl_st_writer *w = NULL;
	int rv = fl_st_writer_new(&w);
	rv = rv ? rv : fl_st_writer_add(w, "a", FL_ST_F32, 2, s23, v);
	rv = rv ? rv : fl_st_writer_add(w, "c", FL_ST_BF16, 1, s3, v);
	snprintf(p, sizeof p, "%s/s1.safetensors", dir);
	rv = rv ? rv : fl_st_writer_write(w, p, err, sizeof err);
	fl_st_writer_free(w);
	w = NULL;
	rv = rv ? rv : fl_st_writer_new(&w);
	rv = rv ? rv : fl_st_writer_add(w, "b", FL_ST_F16, 1, s4, v);
	snprintf(p, sizeof p, "%s/s2.safetensors", dir);
	rv = rv ? rv : fl_st_writer_write(w, p, err, sizeof err);
	fl_st_writer_free(w);
	return rv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[512], err[FL_ST_FOLDER_ERR];
	fl_st_folder *fo = NULL;
	uint8_t h[FL_ST_HASH_BYTES];
	const char *dir = fz_init();
	if (!dir)
		return 0;
	if (!shards_ready) {
		if (write_shards(dir) != 0)
			abort();
		shards_ready = 1;
	}
	if (fz_write(path, sizeof path, FL_ST_INDEX_FILE, data, size, 0600) != 0 ||
	    fz_write(path, sizeof path, "x.safetensors", data, size, 0600) != 0)
		return 0;
	if (fl_st_folder_open(&fo, dir, err, sizeof err) != 0)
		return 0;
	if (!fo->sharded || fo->n < 1)
		abort(); /* an accepted index has a non-empty weight_map */
	for (int i = 0; i < fo->n; i++) {
		const fl_st_tensor *t = fo->ent[i].t;
		fl_st_file *f = NULL;
		if (fl_st_folder_find(fo, fo->ent[i].name, &f) != t || !f)
			abort(); /* an accepted tensor must be found by its own name */
		if (i && strcmp(fo->ent[i - 1].name, fo->ent[i].name) >= 0)
			abort(); /* sorted, no duplicates */
		if (t->nelem <= ((size_t)1 << 20) &&
		    (t->dtype == FL_ST_F32 || t->dtype == FL_ST_BF16 || t->dtype == FL_ST_F16)) {
			float *dst = malloc((t->nelem ? t->nelem : 1) * sizeof *dst);
			if (dst)
				(void)!fl_st_folder_load_f32(fo, t->name, t->ndim, t->shape, dst);
			free(dst);
		}
	}
	if (fl_st_folder_hash(fo, h) != 0)
		abort();
	fl_st_folder_close(fo);
	return 0;
}
