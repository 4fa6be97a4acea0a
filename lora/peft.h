/*
 * lora/peft.h — export of an adapter in the Hugging Face PEFT format, so that
 * `PeftModel.from_pretrained(base, DIR)` loads it, and import of such a
 * folder (`fedlora eval --adapter DIR`).
 *
 * Writes into DIR (created if missing, parents included):
 *   adapter_model.safetensors  "base_model.model." NAME ".lora_A.weight" (r x in)
 *                              and ".lora_B.weight" (out x r), F32, metadata
 *                              {"format": "pt"}
 *   adapter_config.json        peft_type "LORA", task_type "CAUSAL_LM", r,
 *                              lora_alpha, target_modules (the distinct last
 *                              components of the matrix names, in order of
 *                              appearance), base_model_name_or_path (or null),
 *                              lora_dropout 0, bias "none", fan_in_fan_out
 *                              false, inference_mode true, init_lora_weights
 *                              true, modules_to_save null, use_rslora false,
 *                              layers_to_transform null, revision null.
 * PEFT's scale is lora_alpha / r, the same as fedlora's alpha / r, and its
 * key layout matches LlamaForCausalLM module paths, so matrix names of the
 * form "model.layers.{i}.self_attn.q_proj" map one to one.
 *
 * Both files are written atomically (temp + fsync + rename). Does not write
 * README/model cards or tokenizer files.
 *
 * Import is two steps, because the adapter's shape comes from the base model
 * (model_lora_adapter_new in model/llama.h, which lora/ does not depend on):
 * lora_peft_config_read gives r, lora_alpha and target_modules (a list of
 * module names, or one name); the caller builds the adapter from them; then
 * lora_peft_weights_read fills it: every expected tensor must be present with
 * its exact shape (F32, BF16 or F16), nothing else may be, and every value must
 * be finite. rslora, DoRA, rank/alpha patterns, layer selections and regular
 * expressions in target_modules are refused (FL_ENOTSUP), not ignored. Both
 * files are untrusted input: the config is read up to LORA_PEFT_MAX_CONFIG
 * bytes, the weights through fl_st_open's checks.
 */
#ifndef FL_LORA_PEFT_H
#define FL_LORA_PEFT_H

#include <stddef.h>

#include "lora/adapter.h"

#define LORA_PEFT_PREFIX       "base_model.model."
#define LORA_PEFT_WEIGHTS_FILE "adapter_model.safetensors"
#define LORA_PEFT_CONFIG_FILE  "adapter_config.json"
#define LORA_PEFT_MAX_CONFIG   (1 << 20)
#define LORA_PEFT_TARGETS_MAX  1024

/* What adapter_config.json says about the adapter's shape. */
typedef struct lora_peft_config {
	int r;                               /* 1..4096 */
	double alpha;                        /* lora_alpha, finite, > 0 */
	char targets[LORA_PEFT_TARGETS_MAX]; /* target_modules joined with commas */
} lora_peft_config;

/* Exports a into dir. base_model may be NULL (written as null). On failure
 * returns a negative FL_E* code and, when err is not NULL, a message. */
int lora_peft_export(const lora_adapter *a, const char *dir, const char *base_model, char *err,
                     size_t errlen);

/* The adapter_config.json text for a (malloc'd, caller frees), or NULL when
 * out of memory. */
char *lora_peft_config_json(const lora_adapter *a, const char *base_model);

/* Reads dir/adapter_config.json into *c. 0, or FL_EFORMAT / FL_ENOTSUP /
 * the read error, with a message naming the file in err (err may be NULL). */
int lora_peft_config_read(const char *dir, lora_peft_config *c, char *err, size_t errlen);

/* Fills ad (already shaped: r, names, in/out) from dir/adapter_model.safetensors.
 * 0, or FL_ENOENT (a tensor missing), FL_ESHAPE (wrong shape or an unexpected
 * tensor), FL_ENONFINITE, or fl_st_open's error, with a message in err. On
 * failure ad's values are unspecified (the caller frees it). */
int lora_peft_weights_read(const char *dir, lora_adapter *ad, char *err, size_t errlen);

#endif
