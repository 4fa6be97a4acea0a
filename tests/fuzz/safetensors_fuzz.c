/*
 * tests/fuzz/safetensors_fuzz.c — libFuzzer target for the safetensors reader
 * (core/safetensors.c): the fuzz bytes are written to a file, opened with
 * fl_st_open (header length, JSON header, dtypes, shapes, offsets, metadata),
 * and every tensor it accepts is looked up by name, its raw bytes touched and,
 * for float dtypes of modest size, converted with fl_st_read_f32. A crash,
 * sanitizer report or leak is a bug; rejections are expected.
 * Run: make fuzz-build && build-fuzz/fuzz/safetensors_fuzz tests/fuzz/corpus/safetensors
 */
#include "core/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[512], err[256];
	fl_st_file *f = NULL;
	volatile uint8_t sink = 0;
	if (fz_write(path, sizeof path, "t.safetensors", data, size, 0600) != 0)
		return 0;
	if (fl_st_open(&f, path, err, sizeof err) != 0)
		return 0;
	for (int i = 0; i < f->n; i++) {
		const fl_st_tensor *t = &f->tensors[i];
		const uint8_t *raw = fl_st_raw(f, t);
		if (fl_st_find(f, t->name) == NULL)
			abort(); /* an accepted tensor must be found by its own name */
		if (t->nbytes)
			sink ^= raw[0] ^ raw[t->nbytes - 1];
		if ((t->dtype == FL_ST_F32 || t->dtype == FL_ST_BF16 || t->dtype == FL_ST_F16) &&
		    t->nelem <= ((size_t)1 << 20)) {
			float *dst = malloc((t->nelem ? t->nelem : 1) * sizeof *dst);
			if (dst)
				(void)!fl_st_read_f32(f, t, dst, t->nelem);
			free(dst);
		}
	}
	for (int i = 0; i < f->n_meta; i++)
		if (fl_st_meta(f, f->meta_keys[i]) == NULL)
			abort();
	(void)sink;
	fl_st_close(f);
	return 0;
}
