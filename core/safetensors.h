/*
 * core/safetensors.h — reading and writing safetensors files.
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON
 * {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "value", ...}}, then the data region; offsets are
 * relative to the start of the data region.
 *
 * Reader: fl_st_open() maps the file read-only and validates the header
 * strictly before returning: the header length is bounded by the file size and
 * FL_ST_HEADER_MAX; the JSON parses to an object; every tensor has a dtype, a
 * shape of at most FL_ST_MAX_DIMS non-negative integers whose product does not
 * overflow, and data offsets whose span equals product(shape) * dtype size;
 * tensors tile the data region exactly (sorted by offset: contiguous, no
 * overlap, no hole, ending at the end of the file, as the reference
 * implementation requires); names are unique; metadata values are strings.
 * Any violation is FL_EFORMAT with a message naming the file and the problem.
 * Dtypes F32, BF16 and F16 convert to float32; other known dtypes (F64, I8..I64,
 * U8..U64, BOOL, F8_E4M3, F8_E5M2) are listed, their raw bytes are reachable,
 * and converting them is FL_ENOTSUP. An unknown dtype string is FL_ENOTSUP at
 * open. The reader does not check values (NaN/Inf pass through): callers that
 * need finite values check them.
 *
 * Writer: collects tensors (float32 sources, stored as F32, BF16 or F16) and
 * string metadata, then writes the file to a temporary name in the same
 * folder, fsyncs it, renames it over the target and fsyncs the folder. Tensors
 * are laid out in the order they were added; the header is padded with spaces
 * to a multiple of 8 bytes.
 *
 * Ownership: fl_st_open returns a reader the caller closes with fl_st_close
 * (NULL is a no-op); tensor records, names, metadata strings and data pointers
 * point into the reader and die with it. The writer copies names and metadata
 * but NOT tensor data: each source array must stay valid until
 * fl_st_writer_write returns. fl_st_writer_free(NULL) is a no-op.
 *
 * Host byte order must be little-endian (checked at compile time).
 */
#ifndef FL_CORE_SAFETENSORS_H
#define FL_CORE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/half.h" /* fl_f32_to_bf16 and friends, used by the writer */

#define FL_ST_MAX_DIMS   8
#define FL_ST_HEADER_MAX (100u * 1024u * 1024u) /* bytes of JSON header we accept */
#define FL_ST_ERR_MAX    256

typedef enum {
	FL_ST_F32 = 0,
	FL_ST_BF16,
	FL_ST_F16,
	FL_ST_F64,
	FL_ST_I8,
	FL_ST_I16,
	FL_ST_I32,
	FL_ST_I64,
	FL_ST_U8,
	FL_ST_U16,
	FL_ST_U32,
	FL_ST_U64,
	FL_ST_BOOL,
	FL_ST_F8_E4M3,
	FL_ST_F8_E5M2,
	FL_ST_NDTYPES
} fl_st_dtype;

/* "F32" etc.; NULL for an out-of-range value. */
const char *fl_st_dtype_name(fl_st_dtype d);
/* Bytes per element; 0 for an out-of-range value. */
size_t fl_st_dtype_size(fl_st_dtype d);

typedef struct fl_st_tensor {
	const char *name; /* into the reader */
	fl_st_dtype dtype;
	int ndim;
	int64_t shape[FL_ST_MAX_DIMS];
	size_t nelem;  /* product of shape (1 for a scalar, ndim 0) */
	size_t offset; /* from the start of the data region */
	size_t nbytes; /* nelem * dtype size */
} fl_st_tensor;

typedef struct fl_st_file {
	char path[512];
	int n; /* tensors, in header order */
	fl_st_tensor *tensors;
	int n_meta;
	const char **meta_keys, **meta_vals;
	char err[FL_ST_ERR_MAX]; /* text of the last error of a call on this reader */
	/* private */
	void *map_;
	size_t map_len_;
	const uint8_t *data_; /* start of the data region inside the map */
	size_t data_len_;
	void *json_;  /* parsed header (cJSON) */
	int *sorted_; /* tensor indices sorted by name, for lookup */
} fl_st_file;

/* Opens and validates path. On failure *out is NULL, the return is negative
 * (FL_EIO, FL_ENOENT, FL_EFORMAT, FL_ENOTSUP, FL_ETOOBIG, FL_ENOMEM) and, when
 * err is not NULL, err receives a message naming the file and the problem. */
int fl_st_open(fl_st_file **out, const char *path, char *err, size_t errlen);
void fl_st_close(fl_st_file *f);

/* Tensor by exact name, or NULL. O(log n). */
const fl_st_tensor *fl_st_find(const fl_st_file *f, const char *name);
/* Metadata value for key, or NULL when absent. */
const char *fl_st_meta(const fl_st_file *f, const char *key);
/* Raw little-endian bytes of a tensor (t->nbytes of them; may be unaligned). */
const void *fl_st_raw(const fl_st_file *f, const fl_st_tensor *t);
/* Converts tensor t (F32, BF16 or F16) to float32 into dst, which has room for
 * count == t->nelem floats. FL_ESHAPE when count differs (f->err says so),
 * FL_ENOTSUP for other dtypes. */
int fl_st_read_f32(fl_st_file *f, const fl_st_tensor *t, float *dst, size_t count);
/* fl_st_find + shape check + fl_st_read_f32: the tensor must exist
 * (FL_ENOENT), have exactly ndim dims equal to shape[] (FL_ESHAPE). */
int fl_st_load_f32(fl_st_file *f, const char *name, int ndim, const int64_t *shape, float *dst);

typedef struct fl_st_writer fl_st_writer;

int fl_st_writer_new(fl_st_writer **out);
void fl_st_writer_free(fl_st_writer *w);
/* Adds a tensor stored as dtype (FL_ST_F32, FL_ST_BF16 or FL_ST_F16; others
 * FL_ENOTSUP) from nelem = product(shape) float32 values at src (kept by
 * reference until write). FL_EINVAL on a duplicate or empty name, bad ndim or
 * a negative dimension. */
int fl_st_writer_add(fl_st_writer *w, const char *name, fl_st_dtype dtype, int ndim,
                     const int64_t *shape, const float *src);
/* Sets a metadata string (replaces an earlier value of the same key). */
int fl_st_writer_meta(fl_st_writer *w, const char *key, const char *value);
/* Writes atomically (temp + fsync + rename + fsync of the folder). FL_EIO with
 * a message in err (when not NULL) on failure; the target is then untouched. */
int fl_st_writer_write(fl_st_writer *w, const char *path, char *err, size_t errlen);

#endif
