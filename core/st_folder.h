/*
 * core/st_folder.h — the weights of a Hugging Face model folder: one
 * DIR/model.safetensors, or DIR/model.safetensors.index.json plus the shard
 * files it names, behind one lookup by tensor name.
 *
 * The index is {"metadata": {"total_size": N, ...}, "weight_map": {"NAME":
 * "SHARD.safetensors", ...}}. fl_st_folder_open prefers DIR/model.safetensors
 * when both exist (as transformers does). For a sharded folder it reads the
 * index with cJSON, opens every distinct shard once with fl_st_open (mmap and
 * the full header validation of core/safetensors.h), and refuses with
 * FL_EFORMAT and a message naming the file and the field:
 *   - an index that does not parse, has no "weight_map" object, an empty
 *     weight_map, a value that is not a string, or a key listed twice;
 *   - a shard name that is empty, contains '/' or '\\' or "..", or starts
 *     with '.' (a path escape or a hidden file), or more than
 *     FL_ST_MAX_SHARDS distinct shards;
 *   - a shard that does not exist (FL_ENOENT) or fails fl_st_open (its code);
 *   - a tensor listed in weight_map but missing from its shard, a tensor
 *     present in two shards, a tensor in a shard that weight_map puts in
 *     another shard or does not list;
 *   - a metadata.total_size that is not a non-negative integer.
 * A total_size that disagrees with the sum of the tensors' byte sizes is a
 * warning (logged, total_size_mismatch set), not a refusal: writers have
 * counted shared or tied tensors differently, every tensor is checked on its
 * own, and the weights hash below names the weights exactly.
 *
 * The weights hash (fl_st_folder_hash) is BLAKE2b-256 over a domain string
 * and, for every tensor in strcmp order of the names, the name, dtype name,
 * shape and raw little-endian bytes, each length-prefixed. It does not depend
 * on how the tensors are split into files, their order or offsets inside a
 * file, or the safetensors metadata, so a single-file copy and a sharded copy
 * of the same tensors hash the same.
 *
 * Does not: convert dtypes itself (fl_st_read_f32 does), follow shard names
 * into subfolders (refused), or read other layouts (pytorch_model.bin).
 *
 * Ownership: fl_st_folder_open returns a folder the caller closes with
 * fl_st_folder_close (NULL is a no-op); tensor records and files returned by
 * the lookups point into it and die with it.
 */
#ifndef FL_CORE_ST_FOLDER_H
#define FL_CORE_ST_FOLDER_H

#include <stddef.h>
#include <stdint.h>

#include "core/safetensors.h"

#define FL_ST_SINGLE_FILE "model.safetensors"
#define FL_ST_INDEX_FILE  "model.safetensors.index.json"
#define FL_ST_MAX_SHARDS  1024
#define FL_ST_HASH_BYTES  32
#define FL_ST_FOLDER_ERR  512

typedef struct fl_st_entry {
	const char *name;      /* into the shard's reader */
	const fl_st_tensor *t; /* into the shard's reader */
	int shard;             /* index into files */
	int listed_;           /* private: seen in weight_map */
} fl_st_entry;

typedef struct fl_st_folder {
	char path[4096]; /* the file that describes the weights: model.safetensors or the index */
	int sharded;     /* 1 when read through the index */
	int nfiles;
	fl_st_file **files;          /* one per shard (one in all for a single file) */
	char **names;                /* per file: its name inside the folder (owned) */
	int n;                       /* tensors, over all files */
	fl_st_entry *ent;            /* sorted by name (strcmp) */
	uint64_t total_bytes;        /* sum of the tensors' byte sizes */
	int64_t total_size_declared; /* metadata.total_size, -1 when absent */
	int total_size_mismatch;     /* 1 when declared and different from total_bytes */
	char err[FL_ST_FOLDER_ERR];  /* text of the last error of a call on this folder */
} fl_st_folder;

/* Opens the weights of dir (see above). On failure *out is NULL and the
 * return is FL_ENOENT (neither file exists, or a shard is missing),
 * FL_EFORMAT, FL_ENOTSUP, FL_ETOOBIG, FL_EIO or FL_ENOMEM, with a message in
 * err (when not NULL) naming the file and the field. */
int fl_st_folder_open(fl_st_folder **out, const char *dir, char *err, size_t errlen);
void fl_st_folder_close(fl_st_folder *fo);

/* Tensor by exact name, or NULL; *file (may be NULL) gets its shard. O(log n). */
const fl_st_tensor *fl_st_folder_find(const fl_st_folder *fo, const char *name, fl_st_file **file);
/* fl_st_load_f32 of name from its shard: FL_ENOENT when no shard has it,
 * FL_ESHAPE on a shape mismatch, FL_ENOTSUP for a dtype that does not
 * convert; fo->err names the file (the shard, or the index for a tensor the
 * weight map lacks) and the tensor. */
int fl_st_folder_load_f32(fl_st_folder *fo, const char *name, int ndim, const int64_t *shape,
                          float *dst);
/* BLAKE2b-256 of the tensors (see above) into out. 0 or FL_ECRYPTO. */
int fl_st_folder_hash(const fl_st_folder *fo, uint8_t out[FL_ST_HASH_BYTES]);

#endif
