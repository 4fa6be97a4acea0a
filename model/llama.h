/*
 * model/llama.h — a Llama-architecture decoder (LlamaForCausalLM) on the CPU:
 * token embedding, L blocks of [RMSNorm, grouped-query attention with rotary
 * positions, RMSNorm, SwiGLU MLP] with residuals, final RMSNorm, LM head
 * (optionally tied to the embedding). Float32 reference implementation; the
 * CUDA model (model/cuda/) mirrors it. The same struct computes Qwen2
 * (biases on q/k/v_proj), Qwen3 (RMSNorm of each q and k head before the
 * rotary embedding) and Mistral models (model/config.h): the biases and
 * norm weights are base parameters like the others, added by the forward
 * and trained only in full mode; the input gradient flows through them.
 *
 * One struct owns the model, llm.c style: all parameters in one allocation
 * with a pointer table (tensors stacked over layers), gradients in one
 * allocation laid out the same way (full mode only), activations in one
 * allocation sized for the largest (B,T) seen so far (one layer's worth in
 * inference mode, every layer's in the training modes). Optimizer state lives
 * in model/optim.h objects held by the caller.
 *
 * LoRA: a lora_adapter (lora/adapter.h) is attached, not owned: the model
 * reads A and B from adapter->params during forward and writes their
 * gradients into m->lora_grad, an array laid out exactly like adapter->params
 * (all A's, then all B's), so clipping, noise and updates are flat loops.
 * Matrix names are "model.layers.{i}.self_attn.{q,k,v,o}_proj" and
 * "model.layers.{i}.mlp.{gate,up,down}_proj".
 *
 * Training modes: MODEL_TRAIN_NONE (inference), MODEL_TRAIN_FULL (every base
 * parameter; pretraining; an attached adapter is applied but not trained),
 * MODEL_TRAIN_LORA (A and B), MODEL_TRAIN_LORA_B (B only, A frozen: ffa).
 * In LoRA modes no gradient of a frozen base weight is computed or stored.
 *
 * Not here: tokenization, data loading, the task interface (model/lm_task.c),
 * GPU execution. Errors are logged with the tag "model" (naming the file and
 * the problem for load errors) and returned as FL_E* codes.
 */
#ifndef FL_MODEL_LLAMA_H
#define FL_MODEL_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "lora/adapter.h"
#include "model/config.h"

/* Parameter tensors, stacked over layers where per layer (shapes with L first). */
enum {
	MODEL_P_EMBED = 0, /* (V,C)       model.embed_tokens.weight */
	MODEL_P_LN1,       /* (L,C)       model.layers.{i}.input_layernorm.weight */
	MODEL_P_WQ,        /* (L,Hq*D,C)  self_attn.q_proj.weight */
	MODEL_P_WK,        /* (L,Hkv*D,C) self_attn.k_proj.weight */
	MODEL_P_WV,        /* (L,Hkv*D,C) self_attn.v_proj.weight */
	MODEL_P_WO,        /* (L,C,Hq*D)  self_attn.o_proj.weight */
	MODEL_P_LN2,       /* (L,C)       post_attention_layernorm.weight */
	MODEL_P_WGATE,     /* (L,I,C)     mlp.gate_proj.weight */
	MODEL_P_WUP,       /* (L,I,C)     mlp.up_proj.weight */
	MODEL_P_WDOWN,     /* (L,C,I)     mlp.down_proj.weight */
	MODEL_P_NORM,      /* (C)         model.norm.weight */
	MODEL_P_HEAD,      /* (V,C)       lm_head.weight; size 0 and aliases EMBED when tied */
	/* what other families add; size 0 where the config has none */
	MODEL_P_BQ,    /* (L,Hq*D)    self_attn.q_proj.bias (qkv_bias) */
	MODEL_P_BK,    /* (L,Hkv*D)   self_attn.k_proj.bias (qkv_bias) */
	MODEL_P_BV,    /* (L,Hkv*D)   self_attn.v_proj.bias (qkv_bias) */
	MODEL_P_BO,    /* (L,C)       self_attn.o_proj.bias (o_bias) */
	MODEL_P_QNORM, /* (L,D)       self_attn.q_norm.weight (qk_norm) */
	MODEL_P_KNORM, /* (L,D)       self_attn.k_norm.weight (qk_norm) */
	MODEL_NPARAM
};

/* Linear modules of a block that LoRA can target, in adapter order. */
enum {
	MODEL_M_Q = 0,
	MODEL_M_K,
	MODEL_M_V,
	MODEL_M_O,
	MODEL_M_GATE,
	MODEL_M_UP,
	MODEL_M_DOWN,
	MODEL_NMODULE
};

typedef enum {
	MODEL_TRAIN_NONE = 0,
	MODEL_TRAIN_FULL = 1,
	MODEL_TRAIN_LORA = 2,
	MODEL_TRAIN_LORA_B = 3
} model_train_mode;

/* Activations for a batch of B sequences of T tokens (N = B*T), per layer
 * stacked as (L, ...), saved by forward for backward. In MODEL_TRAIN_NONE
 * (inference) only one layer slot exists (L = 1 below) and every layer reuses
 * it, so evaluating a large checkpoint needs one layer's activations. With
 * gradient checkpointing only res3 (the layer inputs) has L slots; the other
 * per-layer tensors have one, refilled by the backward's recomputation. */
typedef struct model_acts {
	float *x0;       /* (N,C) embeddings = residual entering layer 0 */
	float *ln1;      /* (L,N,C) */
	float *ln1_rstd; /* (L,N) */
	float *q;        /* (L,N,Hq*D) after rope (and the q norm) */
	float *k;        /* (L,N,Hkv*D) after rope (and the k norm) */
	float *qpre;     /* (L,N,Hq*D) q_proj output before the q norm (qk_norm only) */
	float *kpre;     /* (L,N,Hkv*D) k_proj output before the k norm (qk_norm only) */
	float *q_rstd;   /* (L,N*Hq) per-head rstd of the q norm (qk_norm only) */
	float *k_rstd;   /* (L,N*Hkv) per-head rstd of the k norm (qk_norm only) */
	float *v;        /* (L,N,Hkv*D) */
	float *lse;      /* (L,B,Hq,T) logsumexp of each row's attention scores */
	float *atty;     /* (L,N,Hq*D) attention output, input of o_proj */
	float *res2;     /* (L,N,C) residual after attention */
	float *ln2;      /* (L,N,C) */
	float *ln2_rstd; /* (L,N) */
	float *gate;     /* (L,N,I) */
	float *up;       /* (L,N,I) */
	float *swi;      /* (L,N,I) silu(gate)*up, input of down_proj */
	float *res3;     /* (L,N,C) residual leaving the layer */
	float *lnf;      /* (N,C) */
	float *lnf_rstd; /* (N) */
	float *logits;   /* (N,V); after a forward with targets: dloss/dlogits */
	float *losses;   /* (N) per-token loss, 0 where the target is -1 */
	float *lora_xa;  /* (nlora, N, r): x A^T of every adapted matrix, adapter order */
	/* backward scratch, reused layer after layer */
	float *dres;                 /* (N,C) gradient of the residual stream */
	float *dln;                  /* (N,C) */
	float *dq, *dk, *dv, *datty; /* (N,Hq*D), (N,Hkv*D), (N,Hkv*D), (N,Hq*D) */
	float *dgate, *dup, *dswi;   /* (N,I) */
} model_acts;

typedef struct model_llama {
	model_config cfg;
	float *rope_inv_freq; /* (D/2) model_rope_inv_freq of cfg, set at creation */
	/* parameters: one allocation, pointer table into it */
	float *params;
	size_t nparams;
	float *param[MODEL_NPARAM];
	size_t param_size[MODEL_NPARAM];
	/* gradients of the parameters (full mode), same layout; NULL otherwise */
	float *grads;
	float *grad[MODEL_NPARAM];
	/* activations for up to max_B x max_T */
	float *acts_mem;
	size_t nacts;
	model_acts acts;
	int max_B, max_T;
	int acts_train;      /* the activations include the backward scratch */
	int acts_ckpt;       /* they are laid out for gradient checkpointing */
	int grad_checkpoint; /* keep layer inputs only; recompute in the backward */
	/* the last forward */
	int B, T;
	int have_targets; /* the last forward had targets: logits hold dlogits */
	int logits_valid; /* the last forward had no targets: logits readable */
	long ntargets;    /* targets != -1 in the last forward */
	long ncorrect;    /* argmax(logits) == target in the last forward */
	float loss;       /* mean loss of the last forward (NaN without targets) */
	int *tokens;      /* (max_B*max_T) copy of the last inputs */
	int *targets;     /* (max_B*max_T) copy of the last targets */
	/* training */
	model_train_mode mode;
	/* LoRA (borrowed adapter) */
	lora_adapter *lora;
	int *lora_idx;    /* (L, MODEL_NMODULE): adapter matrix index or -1 */
	float *lora_grad; /* n_a + n_b, laid out like lora->params */
	size_t lora_grad_n;
	float lora_scale; /* alpha / r */
} model_llama;

/* Short module name ("q_proj") and path inside a block ("self_attn.q_proj"). */
const char *model_module_name(int module);
const char *model_module_path(int module);

/* A model with fresh parameters for pretraining: linear weights and the
 * embedding N(0, 0.02^2) from `seed` (core/rng.h), norm weights 1. */
int model_llama_new(model_llama **out, const model_config *cfg, uint64_t seed);
/* Loads DIR/config.json and the weights: DIR/model.safetensors, or
 * DIR/model.safetensors.index.json and its shards (core/st_folder.h) (F32,
 * BF16 or F16; names as
 * transformers writes LlamaForCausalLM; lm_head.weight required unless tied,
 * ignored with a warning if present while tied). Missing, extra or
 * mis-shaped tensors and bad files are refused with a logged reason naming
 * the file. */
int model_llama_load(model_llama **out, const char *dir);
/* Writes DIR/config.json and DIR/model.safetensors (F32), creating DIR. */
int model_llama_save(const model_llama *m, const char *dir);
void model_llama_free(model_llama *m);

/* Sets the training mode and allocates what it needs (grads in full mode,
 * lora_grad in LoRA modes). LoRA modes require an attached adapter. Gradients
 * are zeroed. */
int model_llama_set_mode(model_llama *m, model_train_mode mode);

/* Attaches `ad` (borrowed: the caller keeps it alive and frees it after
 * detaching or freeing the model); NULL detaches. Checks every matrix name
 * and shape against the model (FL_ESHAPE with a logged reason) and that r >=
 * 1. An adapter of the same shape as the attached one is swapped in without
 * reallocation. After a detach, LoRA modes fall back to MODEL_TRAIN_NONE. */
int model_llama_attach_lora(model_llama *m, lora_adapter *ad);

/* A new zeroed adapter for this configuration: for every layer, the modules
 * named in the comma-separated `targets` ("q_proj,v_proj"; "all" = all seven),
 * layer-major, modules in MODEL_M_* order. FL_EINVAL on an unknown name or
 * r < 1. The caller initializes it (lora_adapter_init) and frees it. */
int model_lora_adapter_new(const model_config *cfg, const char *targets, int r, float alpha,
                           lora_adapter **out);

/* Forward of B sequences of T tokens: tokens (B,T) row-major in [0,V).
 * targets (B,T) with -1 = ignore, or NULL. With targets, *loss (may be NULL)
 * gets the mean loss over targets != -1 (0 if none), and the logits buffer is
 * overwritten by dloss/dlogits ready for model_llama_backward; without
 * targets, the logits stay readable with model_llama_logits and *loss is NaN.
 * Grows the activations when B or T exceed what was allocated. FL_EINVAL on a
 * token or target out of range, T > max_position_embeddings, or B,T < 1. */
int model_llama_forward(model_llama *m, const int *tokens, const int *targets, int B, int T,
                        float *loss);
/* Logits (B,T,V) of the last forward without targets; NULL otherwise. */
const float *model_llama_logits(const model_llama *m);

/* Backward of the last forward (which had targets), for the gradient of its
 * mean loss: accumulates into m->grads (full mode) or m->lora_grad (LoRA
 * modes; in LORA_B mode the A part is left untouched). FL_ESTATE without a
 * forward with targets or in MODEL_TRAIN_NONE. Clobbers the dlogits, so call
 * it once per forward. */
int model_llama_backward(model_llama *m);
/* Per-example LoRA gradients for DP-SGD (LoRA modes only): example b is
 * sequence b of the last forward, and its gradient is that of ITS OWN mean
 * token loss (sequences without targets get a zero row). Row b of pe (B rows
 * of model_llama_trainable's n floats, overwritten) is laid out like the
 * trainable slice: adapter->params in LORA mode, the B part only in LORA_B
 * mode. m->lora_grad is not touched. */
int model_llama_backward_per_example(model_llama *m, float *pe);
/* Gradient checkpointing on (1) or off (0, the default): in the training
 * modes the forward keeps only each layer's input and the backward recomputes
 * the layer's activations (one more forward's work, the same gradients bit
 * for bit), so activation memory is (L+1) x the residual stream plus one
 * layer's worth instead of L layers' worth. Takes effect at the next forward
 * (which lays the activations out anew); a pending backward is dropped. */
void model_llama_set_grad_checkpoint(model_llama *m, int on);
/* Bytes of the activation allocation now held (0 before the first forward). */
size_t model_llama_acts_bytes(const model_llama *m);
/* Zeroes m->grads or m->lora_grad. */
void model_llama_zero_grad(model_llama *m);
/* The flat trainable slice and its gradient: full: params/grads; LORA:
 * lora->params/lora_grad; LORA_B: their B parts. FL_ESTATE in NONE mode. */
int model_llama_trainable(model_llama *m, float **p, float **g, size_t *n);

/* Floating-point operations of one forward (+ backward when `backward`) on
 * B x T tokens in the current mode, counting 2 per multiply-add of the
 * matrix products (linear layers, LoRA, attention, LM head). */
double model_llama_flops(const model_llama *m, int B, int T, int backward);

#endif
