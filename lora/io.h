/*
 * lora/io.h — LoRA adapter files: the run directory's global adapters and
 * anything else that stores an adapter on disk.
 *
 * Format: safetensors (core/safetensors.h) with, for every matrix NAME of the
 * adapter in order, NAME.lora_A.weight (r x in) and NAME.lora_B.weight
 * (out x r), F32, and __metadata__ {"format": "fedlora-adapter", "r": "R",
 * "alpha": "ALPHA"}. Written atomically (temp + fsync + rename).
 *
 * Loading reconstructs names, dims, r and alpha from the tensors and the
 * metadata; matrices come in the order their A tensors appear in the header
 * (the order lora_adapter_save wrote). It rejects: a missing or different
 * "format", missing or bad r / alpha (FL_EFORMAT); a tensor that is not part
 * of an (A, B) pair, an A without its B or the reverse, shapes that disagree
 * with r or with each other, non-2-D tensors (FL_ESHAPE); NaN/Inf values
 * (FL_ENONFINITE); and everything core/safetensors rejects. BF16/F16 adapter
 * files are read too (converted to float32).
 *
 * The _err variants put a message naming the file and the problem into err;
 * the plain ones log it (tag "lora") at error level.
 *
 * Ownership: lora_adapter_load returns a new adapter the caller frees with
 * lora_adapter_free; *out is NULL on failure.
 */
#ifndef FL_LORA_IO_H
#define FL_LORA_IO_H

#include <stddef.h>

#include "lora/adapter.h"

#define LORA_FILE_FORMAT "fedlora-adapter"

int lora_adapter_save(const lora_adapter *a, const char *path);
int lora_adapter_load(lora_adapter **out, const char *path);
int lora_adapter_save_err(const lora_adapter *a, const char *path, char *err, size_t errlen);
int lora_adapter_load_err(lora_adapter **out, const char *path, char *err, size_t errlen);

#endif
