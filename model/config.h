/*
 * model/config.h — the shape of a Llama-architecture model, read from and
 * written to a Hugging Face `config.json`: LlamaForCausalLM, and the three
 * families that differ from it only in ways this model computes —
 * Qwen2ForCausalLM ("qwen2": bias on q_proj, k_proj and v_proj),
 * Qwen3ForCausalLM ("qwen3": a per-head RMSNorm of q and k before the rotary
 * embedding, self_attn.q_norm / k_norm of head_dim weights) and
 * MistralForCausalLM ("mistral": Llama plus a sliding window).
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
 * attention_bias (llama, qwen3: bias on q, k, v AND o_proj, as transformers'
 * LlamaAttention and Qwen3Attention build them; qwen2 always has q/k/v bias
 * and no o_proj bias; mistral none). Sliding windows: "sliding_window"
 * (mistral: null or the window), "use_sliding_window" and
 * "max_window_layers" (qwen2, qwen3: layers from max_window_layers up use
 * the window), or an explicit "layer_types" list; the window in effect is
 * model_config.attn_window. The window itself is not implemented:
 * attention is full causal, which equals windowed attention exactly while a
 * sequence is no longer than the window, and longer sequences are refused at
 * train and eval time (model_config_check_seq).
 * Refuses what this implementation does not compute: other rope types
 * (linear, dynamic, yarn, longrope, ...), mlp_bias true, hidden_act other
 * than "silu", a model_type other than "llama", "qwen2", "qwen3" or
 * "mistral" (absent means "llama"). Every
 * refusal is logged (tag "model") with the file name and the field, and
 * returns FL_ENOTSUP (unsupported feature), FL_EFORMAT (not JSON / wrong
 * type / missing) or FL_EINVAL (bad value).
 *
 * Writes a config.json that transformers loads as the same architecture
 * (architectures, model_type, torch_dtype "float32", hidden_act "silu",
 * bos/eos ids, rope_scaling null or the llama3 object, the bias and window
 * fields of the family, ...).
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

/* The Hugging Face model family (config.json "model_type"). */
typedef enum model_arch {
	MODEL_ARCH_LLAMA = 0,   /* LlamaForCausalLM */
	MODEL_ARCH_QWEN2 = 1,   /* Qwen2ForCausalLM */
	MODEL_ARCH_QWEN3 = 2,   /* Qwen3ForCausalLM */
	MODEL_ARCH_MISTRAL = 3, /* MistralForCausalLM */
} model_arch;

typedef struct model_config {
	model_arch arch;
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
	/* what the family computes beyond Llama */
	int qkv_bias; /* q_proj, k_proj, v_proj have a bias (qwen2; attention_bias) */
	int o_bias;   /* o_proj has a bias (attention_bias of llama and qwen3) */
	int qk_norm;  /* RMSNorm over each head of q and k before RoPE (qwen3) */
	/* sliding window fields as config.json gives them (written back by
	 * model_config_save), and the window in effect */
	int sliding_window;     /* 0: null or absent */
	int use_sliding_window; /* qwen2/qwen3 switch */
	int max_window_layers;  /* qwen2/qwen3: layers >= this one use the window */
	int attn_window;        /* > 0: some layer attends only to that many latest tokens */
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
/* 0 when sequences of T tokens compute what transformers computes; else
 * FL_ENOTSUP, logged with `what` (the caller: "forward", "--seq-len"), when T
 * exceeds the sliding window in effect, which is not implemented. */
int model_config_check_seq(const model_config *c, int T, const char *what);
/* "llama", "qwen2", "qwen3", "mistral". */
const char *model_arch_name(model_arch a);
/* Number of parameters of the base model (lm_head counted unless tied;
 * biases and q/k norm weights included). */
size_t model_config_num_params(const model_config *c);

#endif
