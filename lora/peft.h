/*
 * lora/peft.h — export of an adapter in the Hugging Face PEFT format, so that
 * `PeftModel.from_pretrained(base, DIR)` loads it.
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
 */
#ifndef FL_LORA_PEFT_H
#define FL_LORA_PEFT_H

#include <stddef.h>

#include "lora/adapter.h"

#define LORA_PEFT_PREFIX       "base_model.model."
#define LORA_PEFT_WEIGHTS_FILE "adapter_model.safetensors"
#define LORA_PEFT_CONFIG_FILE  "adapter_config.json"

/* Exports a into dir. base_model may be NULL (written as null). On failure
 * returns a negative FL_E* code and, when err is not NULL, a message. */
int lora_peft_export(const lora_adapter *a, const char *dir, const char *base_model, char *err,
                     size_t errlen);

/* The adapter_config.json text for a (malloc'd, caller frees), or NULL when
 * out of memory. */
char *lora_peft_config_json(const lora_adapter *a, const char *base_model);

#endif
