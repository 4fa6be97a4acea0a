/*
 * model/config.h — the shape of a Llama-architecture model, read from and
 * written to a Hugging Face `config.json` (LlamaForCausalLM).
 *
 * Reads: hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads (required), num_key_value_heads (default: heads),
 * head_dim (default hidden/heads), vocab_size (required), rms_norm_eps
 * (1e-6), rope_theta (10000), tie_word_embeddings (false),
 * max_position_embeddings (2048), bos_token_id (1), eos_token_id (2), and
 * the rotary scaling from "rope_scaling" (transformers 4) or
 * "rope_parameters" (transformers 5), rope type spelled "rope_type" or the
 * old "type": null or "default" (plain RoPE) and "llama3" (Llama 3.1/3.2:
 * factor, low_freq_factor, high_freq_factor, original_max_position_embeddings,
 * all required). When both objects are given they must agree.
 * Refuses what this implementation does not compute: other rope types
 * (linear, dynamic, yarn, longrope, ...), attention_bias or mlp_bias true,
 * hidden_act other than "silu", a model_type other than "llama". Every
 * refusal is logged (tag "model") with the file name and the field, and
 * returns FL_ENOTSUP (unsupported feature), FL_EFORMAT (not JSON / wrong
 * type / missing) or FL_EINVAL (bad value).
 *
 * Writes a config.json that transformers loads as LlamaForCausalLM
 * (architectures, model_type "llama", torch_dtype "float32", hidden_act
 * "silu", bos/eos ids, rope_scaling null or the llama3 object, ...).
 */
#ifndef FL_MODEL_CONFIG_H
#define FL_MODEL_CONFIG_H

#include <stddef.h>

/* How the rotary inverse frequencies are derived from rope_theta
 * (model_rope_inv_freq in model/ops.h computes them). */
typedef enum model_rope_type {
	MODEL_ROPE_DEFAULT = 0, /* inv_freq[i] = theta^(-2i/D) */
	MODEL_ROPE_LLAMA3 = 1,  /* Llama 3.1 band-wise scaling of the default frequencies */
} model_rope_type;

/* Zero (type MODEL_ROPE_DEFAULT, other fields unused) is plain RoPE. The
 * factors are kept as the JSON doubles, as transformers keeps the Python
 * floats; the computation rounds them to float32 where torch does. */
typedef struct model_rope_scaling {
	model_rope_type type;
	double factor;           /* > 0: low-frequency wavelengths are stretched by it */
	double low_freq_factor;  /* > 0: wavelengths above orig/low_freq_factor are scaled */
	double high_freq_factor; /* > low_freq_factor: below orig/high_freq_factor kept */
	int original_max_position_embeddings; /* >= 1: the pre-extension context (orig) */
} model_rope_scaling;

typedef struct model_config {
	int hidden_size;       /* C */
	int intermediate_size; /* I, the MLP width */
	int num_layers;        /* L (num_hidden_layers) */
	int num_heads;         /* Hq */
	int num_kv_heads;      /* Hkv, divides Hq */
	int head_dim;          /* D */
	int vocab_size;        /* V */
	int max_position_embeddings;
	int tie_word_embeddings; /* lm_head shares model.embed_tokens.weight */
	int bos_token_id, eos_token_id;
	float rms_norm_eps;
	float rope_theta;
	model_rope_scaling rope_scaling; /* zero: none */
} model_config;

/* Parses the JSON text `json`; `name` is only used in error messages (the
 * file name). */
int model_config_parse(model_config *c, const char *json, size_t len, const char *name);
/* Reads and parses the file at `path`. */
int model_config_load(model_config *c, const char *path);
/* Checks ranges and consistency (positive sizes, Hkv divides Hq, even D,
 * sizes below the limits that keep every tensor addressable, the rope scaling
 * fields); logs the field.
 * `name` is used in messages. */
int model_config_validate(const model_config *c, const char *name);
/* Writes config.json at `path` (temp file, fsync, rename). */
int model_config_save(const model_config *c, const char *path);
/* Number of parameters of the base model (lm_head counted unless tied). */
size_t model_config_num_params(const model_config *c);

#endif
