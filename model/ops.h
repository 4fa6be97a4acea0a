/*
 * model/ops.h — the layers of a Llama-architecture decoder on the CPU:
 * float32, row-major, one _forward / _backward pair per layer (llm.c style).
 * This is the reference the CUDA twins in model/cuda/ mirror name for name.
 *
 * Conventions:
 *   - N is a number of rows (tokens, B*T); C a channel count; shapes are given
 *     as (rows, cols) of row-major arrays.
 *   - Every _forward overwrites its outputs, except model_lora_forward, which
 *     adds into the base layer's output.
 *   - Every _backward ACCUMULATES (+=) into its gradient outputs; callers zero
 *     them first. A gradient output documented "NULL ok" is skipped when NULL
 *     (a frozen tensor gets no gradient and costs no work).
 *   - Matrix products go through OpenBLAS (cblas_sgemm), which threads itself.
 *   - Nothing allocates from the heap: the attention and LoRA backwards work
 *     on row blocks of a 64 KiB stack scratch, which bounds T and r by
 *     MODEL_OPS_MAX_T (callers check; the ops assert).
 *   - Inputs are trusted: token ids and shapes are validated by the caller
 *     (model/llama.c), these functions only assert.
 */
#ifndef FL_MODEL_OPS_H
#define FL_MODEL_OPS_H

#include <stddef.h>

#include "model/config.h"

/* Largest sequence length (attention) and LoRA rank the ops accept. */
#define MODEL_OPS_MAX_T 16384

/* out (N,C) = wte[tok[n]] ; wte is (V,C). */
void model_embed_forward(float *out, const int *tok, const float *wte, int N, int C);
/* dwte[tok[n]] += dout[n]. */
void model_embed_backward(float *dwte, const float *dout, const int *tok, int N, int C);

/* RMSNorm as in LlamaRMSNorm: out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps).
 * x, out (N,C); w (C); rstd (N) saved for the backward. */
void model_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C,
                           float eps);
/* dx (N,C) +=, dw (C) += (NULL ok). */
void model_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                            const float *rstd, int N, int C);

/* out (N,OUT) = x (N,IN) W^T, W (OUT,IN) as nn.Linear stores it; no bias. */
void model_matmul_forward(float *out, const float *x, const float *w, int N, int IN, int OUT);
/* dx (N,IN) += dout W (NULL ok); dw (OUT,IN) += dout^T x (NULL ok). */
void model_matmul_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                           int N, int IN, int OUT);

/* Bias of a linear layer: out (N,OUT) += b (OUT) on every row. */
void model_bias_forward(float *out, const float *b, int N, int OUT);
/* db (OUT) += the column sums of dout (N,OUT). The input gradient of a bias
 * is the identity: nothing to do for dx. */
void model_bias_backward(float *db, const float *dout, int N, int OUT);

/* LoRA on a linear layer: out (N,OUT) += scale * (x A^T) B^T, with A (r,IN),
 * B (OUT,r); xa (N,r) = x A^T is saved for the backward. */
void model_lora_forward(float *out, float *xa, const float *x, const float *A, const float *B,
                        int N, int IN, int OUT, int r, float scale);
/* dx (N,IN) += scale * (dout B) A (NULL ok); dA (r,IN) += scale * (dout B)^T x
 * (NULL ok: A frozen); dB (OUT,r) += scale * dout^T xa (NULL ok). */
void model_lora_backward(float *dx, float *dA, float *dB, const float *dout, const float *x,
                         const float *xa, const float *A, const float *B, int N, int IN, int OUT,
                         int r, float scale);
/* The same gradients per example, for DP-SGD: the N = nex * T rows are nex
 * examples of T consecutive rows each. Example e's gradient of A (r,IN) is
 * added at dA + e * stride, its gradient of B (OUT,r) at dB + e * stride, so
 * rows of a caller's (nex, stride) matrix hold each example's gradients of
 * every LoRA tensor side by side. dx (N,IN) += as in model_lora_backward. Any of
 * dx, dA, dB may be NULL. */
void model_lora_backward_per_example(float *dx, float *dA, float *dB, size_t stride,
                                     const float *dout, const float *x, const float *xa,
                                     const float *A, const float *B, int nex, int T, int IN,
                                     int OUT, int r, float scale);

/* The D/2 rotary inverse frequencies into inv, in float32 as transformers'
 * rope init functions compute them: the default theta^(-2i/D) as
 * 1 / theta^(float(2i)/D), then for MODEL_ROPE_LLAMA3 the band-wise scaling of
 * _compute_llama3_parameters (wavelengths above orig/low_freq_factor divided
 * by factor, below orig/high_freq_factor kept, smoothly blended between).
 * s NULL means plain RoPE. The one source of frequencies for the CPU model
 * and the CUDA rope table, so they cannot drift. s must be valid
 * (model_config_validate); D even, >= 2. */
void model_rope_inv_freq(float *inv, int D, float theta, const model_rope_scaling *s);

/* Rotary position embedding in the Hugging Face LlamaForCausalLM convention
 * (rotate_half): for every head, pairs (i, i + D/2), angle pos * inv_freq[i]
 * (inv_freq: D/2 values from model_rope_inv_freq), positions 0..T-1; angles
 * computed in float32 as transformers does. x (B,T,H,D) is rotated in place.
 * D must be even. */
void model_rope_forward(float *x, int B, int T, int H, int D, const float *inv_freq);
/* dx (B,T,H,D) in place: the gradient w.r.t. the rotated tensor becomes the
 * gradient w.r.t. the tensor before rotation (the transpose rotation). */
void model_rope_backward(float *dx, int B, int T, int H, int D, const float *inv_freq);

/* Causal grouped-query attention, scale 1/sqrt(D). q (B,T,Hq,D), k and v
 * (B,T,Hkv,D); query head h reads kv head h / (Hq/Hkv). out (B,T,Hq*D); att
 * (B,Hq,T,T) holds the softmax probabilities (zero above the diagonal), saved
 * for the backward. Hq must be a multiple of Hkv. */
void model_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                             int B, int T, int Hq, int Hkv, int D);
/* dq (B,T,Hq,D) +=, dk and dv (B,T,Hkv,D) +=. */
void model_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *att, int B, int T,
                              int Hq, int Hkv, int D);

/* The same attention without the (T,T) probabilities, flash-style: keys are
 * visited in tiles with an online softmax, and only the output and each
 * row's logsumexp lse (B,Hq,T) of the scaled scores are stored. Any T; the
 * scratch is a fixed 16 KiB (backward 32 KiB) on the stack. */
void model_flash_attention_forward(float *out, float *lse, const float *q, const float *k,
                                   const float *v, int B, int T, int Hq, int Hkv, int D);
/* dq (B,T,Hq,D) +=, dk and dv (B,T,Hkv,D) +=, recomputing the probabilities
 * tile by tile from q, k and lse; out is the forward's output. */
void model_flash_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                    const float *q, const float *k, const float *v,
                                    const float *out, const float *lse, int B, int T, int Hq,
                                    int Hkv, int D);

/* out (N) = silu(gate) * up, silu(g) = g / (1 + exp(-g)). */
void model_swiglu_forward(float *out, const float *gate, const float *up, int N);
/* dgate (N) +=, dup (N) +=. */
void model_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, int N);

/* Softmax cross-entropy, fused with its gradient. logits_to_dlogits (N,V):
 * in, the logits; out, dloss/dlogits * dscale (softmax - onehot) for rows with
 * a target and zeros for rows whose target is -1 (ignored). losses (N) gets
 * each row's loss (0 for ignored rows). Returns the summed loss over rows with
 * a target (double accumulation, float result). */
float model_crossentropy_forward_backward(float *logits_to_dlogits, float *losses,
                                          const int *targets, int N, int V, float dscale);

/* AdamW (decoupled weight decay, bias correction at step t >= 1) on n
 * parameters: m, v are the first and second moment buffers. */
void model_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                        float b2, float eps, float wd, int t);
/* SGD with optional momentum (mom NULL or momentum 0: plain) and decoupled
 * weight decay: buf = momentum*buf + g; p -= lr * (buf + wd * p). */
void model_sgd_update(float *p, const float *g, float *mom, size_t n, float lr, float momentum,
                      float wd);

#endif
