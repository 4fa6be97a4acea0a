/*
 * model/cuda/cuda.h — C interface of the CUDA trainer (compiled by nvcc from
 * the .cu files of model/cuda/; only present in builds with FL_HAVE_CUDA).
 *
 * Two parts:
 *   1. model_cuda_*: the Llama model on one GPU — bf16 weights and
 *      activations, float32 residual stream and accumulation, float32 master
 *      copies (plus bf16 working copies) of the LoRA tensors, cuBLAS GEMMs,
 *      the LM head + cross-entropy computed in chunks of rows so that the
 *      (B*T, V) logits never exist at once, SGD/AdamW on device, sample-level
 *      DP-SGD (per-example LoRA gradients, clipping and noise on device).
 *      Training: LoRA (A+B, or B with A frozen), or every base parameter
 *      (config.full, for pretraining; f32 masters, bf16 working copies).
 *   2. model_cuda_op_*: host-array twins of model/ops.h for the kernel tests:
 *      same arguments, host float32 in and out; inputs that the GPU model
 *      stores in bf16 are rounded to bf16 on the way in, exactly as the
 *      model would hold them.
 *
 * Errors: 0 or FL_ECUDA (a failed CUDA/cuBLAS call, logged with file:line),
 * FL_ENOMEM (device memory), FL_EINVAL / FL_ESHAPE (bad arguments).
 * Ownership: model_cuda_new returns a model freed by model_cuda_free (NULL is
 * a no-op); host arrays passed in are copied, never kept. Each model has its
 * own stream and cuBLAS handle and allocates only what it needs, so several
 * processes (or models) can share a GPU.
 */
#ifndef FL_MODEL_CUDA_CUDA_H
#define FL_MODEL_CUDA_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 0 when a CUDA device is usable (a context can be created and a kernel
 * runs); FL_ECUDA otherwise, with a one-line reason in why (may be NULL). */
int model_cuda_probe(char *why, size_t whylen);
/* Device name and memory (bytes) of the current device. */
int model_cuda_device_info(char *name, size_t namelen, size_t *total, size_t *free_b);

typedef struct model_cuda_config {
	int vocab, hidden, inter, layers, heads, kv_heads, head_dim;
	int tied; /* lm_head shares the embedding */
	float eps;
	const float *inv_freq;  /* (head_dim/2) rotary inverse frequencies from
	                         * model_rope_inv_freq (model/ops.h); borrowed, read by
	                         * model_cuda_new only */
	int max_batch, max_seq; /* activation sizing (sequences per micro-batch, T) */
	int full;            /* full-parameter training: f32 masters, gradients and moments of every
	                      * base tensor (16 bytes per parameter more); LoRA is then applied, not
	                      * trained */
	int grad_checkpoint; /* keep each layer's input (the f32 residual) only; the
	                      * backward recomputes the layer's forward into one slot */
	/* the families of model/config.h: biases of q/k/v_proj and of o_proj,
	 * per-head RMSNorm of q and k before the rotary embedding (Qwen3) */
	int qkv_bias, o_bias, qk_norm;
} model_cuda_config;

/* Host float32 weights stacked over layers as model/llama.h stores them:
 * embed (V,C), ln1 (L,C), wq (L,Hq*D,C), wk/wv (L,Hkv*D,C), wo (L,C,Hq*D),
 * ln2 (L,C), wgate/wup (L,I,C), wdown (L,C,I), norm (C), head (V,C) or NULL
 * when tied; then bq (L,Hq*D), bk/bv (L,Hkv*D) with qkv_bias, bo (L,C) with
 * o_bias, qnorm/knorm (L,D) with qk_norm (NULL otherwise). The field order
 * is MODEL_P_* order (model/llama.h). */
typedef struct model_cuda_weights {
	const float *embed, *ln1, *wq, *wk, *wv, *wo, *ln2, *wgate, *wup, *wdown, *norm, *head;
	const float *bq, *bk, *bv, *bo, *qnorm, *knorm;
} model_cuda_weights;

/* Module ids, as MODEL_M_* in model/llama.h. */
enum {
	MODEL_CUDA_Q = 0,
	MODEL_CUDA_K,
	MODEL_CUDA_V,
	MODEL_CUDA_O,
	MODEL_CUDA_GATE,
	MODEL_CUDA_UP,
	MODEL_CUDA_DOWN,
	MODEL_CUDA_NMODULE
};

/* One adapted matrix: its layer and module, and the offsets (in floats) of
 * its A (r,in) and B (out,r) inside the adapter's flat params. */
typedef struct model_cuda_lora_mat {
	int layer, module;
	size_t a_off, b_off;
} model_cuda_lora_mat;

typedef struct model_cuda_optim {
	int kind; /* 0 SGD, 1 AdamW (model_opt_kind) */
	float b1, b2, eps, momentum, weight_decay;
} model_cuda_optim;

typedef struct model_cuda model_cuda;

/* A model on the current device. w NULL: random weights (N(0, 0.02^2) from
 * seed, norms 1), for benchmarks. */
int model_cuda_new(model_cuda **out, const model_cuda_config *c, const model_cuda_weights *w,
                   uint64_t seed);
void model_cuda_free(model_cuda *m);
/* "flash" or "gemm": the attention implementation this model uses. */
const char *model_cuda_attention(const model_cuda *m);
/* 1 when this model runs the fused path (merged q/k/v and gate/up GEMMs,
 * fused rotary split with the q/k/v biases, Qwen3's q/k norm on the merged
 * rows, RMSNorm with the residual copy, bf16 training logits), 0 with
 * FEDLORA_FUSE=0 in the environment at model_cuda_new (the unfused kernels,
 * float32 training logits). Every family (Llama, Qwen2, Qwen3, biased Llama)
 * runs either path. */
int model_cuda_fused(const model_cuda *m);
/* Bytes of device memory this model holds. */
size_t model_cuda_mem_bytes(const model_cuda *m);
/* Copies the parameter tensor `which` (0 embed ... 11 head ... 17 knorm, as
 * model_cuda_weights' field order) back to host: the f32 masters in full
 * mode, else the bf16 values widened. */
int model_cuda_get_weight(model_cuda *m, int which, float *host, size_t n);

/* Attaches LoRA: n matrices with rank r and scale alpha/r; params (n_a + n_b
 * floats, all A's then all B's) copied to the device; train_a 0 freezes A.
 * Replaces a previous attachment; zeroes the optimizer state. */
int model_cuda_lora_attach(model_cuda *m, int n, const model_cuda_lora_mat *mats, int r,
                           float scale, size_t n_a, size_t n_b, const float *params, int train_a);
int model_cuda_lora_set(model_cuda *m, const float *params); /* upload n_a + n_b */
int model_cuda_lora_get(model_cuda *m, float *params);       /* download n_a + n_b */
/* Sets the optimizer and zeroes its state; reset only zeroes it. */
int model_cuda_optim_set(model_cuda *m, const model_cuda_optim *o);
int model_cuda_optim_reset(model_cuda *m);

/* Held-out evaluation: ADDS summed loss, scored tokens, correct argmax. */
int model_cuda_eval(model_cuda *m, const int *tok, const int *tgt, int B, int T, double *loss_sum,
                    long *count, long *correct);
/* Logits (B*T, V) float32 to host. */
int model_cuda_logits(model_cuda *m, const int *tok, int B, int T, float *logits);
/* Gradient of the mean loss over all targets w.r.t. the LoRA params into
 * grad (n_a + n_b floats, A part zero when A is frozen); no update. */
int model_cuda_grad(model_cuda *m, const int *tok, const int *tgt, int B, int T, double *loss,
                    float *grad);
/* Full mode: gradient of the mean loss w.r.t. every base tensor into
 * grads[which] (18 pointers in model_cuda_weights' order, NULL skips, as do
 * tensors the model lacks; the head's is in the embedding's when tied); no
 * update. */
int model_cuda_full_grad(model_cuda *m, const int *tok, const int *tgt, int B, int T, double *loss,
                         float *const *grads);
/* Per-example gradients (each of its own mean token loss) of the trainable
 * slice (all params, or the B part when A is frozen) into pe (B rows). */
int model_cuda_grad_per_example(model_cuda *m, const int *tok, const int *tgt, int B, int T,
                                float *pe);
/* Forward + backward + optimizer step; *loss = mean loss (may be NULL). */
int model_cuda_train_step(model_cuda *m, const int *tok, const int *tgt, int B, int T, float lr,
                          double *loss);
/* DP-SGD step: see model_backend_dp_step (model/backend.h). The noise is
 * Philox4x32-10 keyed from seed[0..8) with counter words from seed[8..16). */
int model_cuda_dp_step(model_cuda *m, const int *tok, const int *tgt, int B, int T, double clip,
                       double noise_mult, double expected_batch, const uint8_t seed[32], float lr,
                       double *loss, int *nclipped);
/* Number of floats of the trainable slice. */
size_t model_cuda_trainable(const model_cuda *m);

/* ---- kernel twins of model/ops.h on host arrays (tests) ---------------- */
int model_cuda_op_embed_forward(float *out, const int *tok, const float *wte, int V, int N, int C);
int model_cuda_op_embed_backward(float *dwte, const float *dout, const int *tok, int V, int N,
                                 int C);
int model_cuda_op_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N,
                                  int C, float eps);
int model_cuda_op_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
                                   const float *w, const float *rstd, int N, int C);
/* The fused path's twins: the forward also writes copy (N,C) = x
 * (fl_k_rmsnorm_forward_copy); the backward (dx +=, no dw) through
 * fl_k_rmsnorm_backward_fused. */
int model_cuda_op_rmsnorm_forward_copy(float *out, float *rstd, float *copy, const float *x,
                                       const float *w, int N, int C, float eps);
int model_cuda_op_rmsnorm_backward_fused(float *dx, const float *dout, const float *x,
                                         const float *w, const float *rstd, int N, int C);
int model_cuda_op_matmul_forward(float *out, const float *x, const float *w, int N, int IN,
                                 int OUT);
int model_cuda_op_matmul_backward(float *dx, float *dw, const float *dout, const float *x,
                                  const float *w, int N, int IN, int OUT);
/* Bias twins (model_bias_forward / _backward): out (N,OUT) += b, held as bf16
 * when out_bf16 (q/k/v projections) else f32 (o_proj into the residual);
 * db (OUT) += column sums of dout (bf16). */
int model_cuda_op_bias_forward(float *out, const float *b, int N, int OUT, int out_bf16);
int model_cuda_op_bias_backward(float *db, const float *dout, int N, int OUT);
/* Per-head RMSNorm twins (model_rmsnorm_forward / _backward over rows of D):
 * x, out bf16, rstd f32; the backward runs in place on dout as the model
 * does (dx +=, dw += with dw NULL ok). */
int model_cuda_op_headnorm_forward(float *out, float *rstd, const float *x, const float *w,
                                   int rows, int D, float eps);
int model_cuda_op_headnorm_backward(float *dx, float *dw, const float *dout, const float *x,
                                    const float *w, const float *rstd, int rows, int D);
int model_cuda_op_lora_forward(float *out, float *xa, const float *x, const float *A,
                               const float *B, int N, int IN, int OUT, int r, float scale);
int model_cuda_op_lora_backward(float *dx, float *dA, float *dB, const float *dout, const float *x,
                                const float *xa, const float *A, const float *B, int N, int IN,
                                int OUT, int r, float scale);
/* Per-example twin (model_lora_backward_per_example): pe is (nex, stride);
 * example e's dA goes to pe + e*stride + a_off (skipped when a_off < 0), its
 * dB to pe + e*stride + b_off; those blocks are overwritten. */
int model_cuda_op_lora_backward_per_example(float *pe, size_t stride, long a_off, size_t b_off,
                                            const float *dout, const float *x, const float *xa,
                                            const float *A, const float *B, int nex, int T, int IN,
                                            int OUT, int r, float scale);
int model_cuda_op_rope_forward(float *x, int B, int T, int H, int D, const float *inv_freq);
/* The merged projection's split (fl_k_qkv_rope_forward): qkv (B*T, ld) rows
 * with q heads, k heads, v heads first, bias ((Hq + 2 Hkv) D or NULL) ->
 * q (B,T,Hq,D), k, v (B,T,Hkv,D) as model_rope_forward leaves them. Its
 * backward: dq, dk, dv (B,T,H,D) -> dqkv rows (columns past the heads keep
 * the values passed in). */
int model_cuda_op_qkv_rope_forward(float *q, float *k, float *v, const float *qkv, int ld,
                                   const float *bias, int B, int T, int Hq, int Hkv, int D,
                                   const float *inv_freq);
int model_cuda_op_qkv_rope_backward(float *dqkv, int ld, const float *dq, const float *dk,
                                    const float *dv, int B, int T, int Hq, int Hkv, int D,
                                    const float *inv_freq);
/* Qwen3's q/k norm on the merged rows (fl_k_qkv_headnorm_forward): rows (N,
 * ld) in and out (bias ((Hq + 2 Hkv) D or NULL) added to every head, q and
 * k heads normalized with wq / wk (D)), qpre (N, Hq D), kpre (N, Hkv D) the
 * pre-norm values, rstdq (N Hq), rstdk (N Hkv). Its backward: in place on
 * drows (the q and k heads), dwq, dwk (D) += (both NULL or both set). */
int model_cuda_op_qkv_headnorm_forward(float *rows, int ld, const float *bias, float *qpre,
                                       float *kpre, float *rstdq, float *rstdk, const float *wq,
                                       const float *wk, int N, int Hq, int Hkv, int D, float eps);
int model_cuda_op_qkv_headnorm_backward(float *drows, int ld, float *dwq, float *dwk,
                                        const float *qpre, const float *kpre, const float *wq,
                                        const float *wk, const float *rstdq, const float *rstdk,
                                        int N, int Hq, int Hkv, int D);
int model_cuda_op_rope_backward(float *dx, int B, int T, int H, int D, const float *inv_freq);
int model_cuda_op_attention_forward(float *out, float *att, const float *q, const float *k,
                                    const float *v, int B, int T, int Hq, int Hkv, int D);
int model_cuda_op_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                     const float *q, const float *k, const float *v, int B, int T,
                                     int Hq, int Hkv, int D);
/* The same through the fused flash kernels (FL_ENOTSUP where unsupported);
 * the backward runs its own forward first (it needs O and the log-sum-exp). */
int model_cuda_op_flash_attention_forward(float *out, const float *q, const float *k,
                                          const float *v, int B, int T, int Hq, int Hkv, int D);
int model_cuda_op_flash_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                           const float *q, const float *k, const float *v, int B,
                                           int T, int Hq, int Hkv, int D);
int model_cuda_op_swiglu_forward(float *out, const float *gate, const float *up, int N);
int model_cuda_op_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                                  const float *up, int N);
float model_cuda_op_crossentropy_forward_backward(float *logits_to_dlogits, float *losses,
                                                  const int *targets, int N, int V, float dscale,
                                                  int *rc);
/* The same on bf16 logits, gradient written over them (the training head). */
float model_cuda_op_crossentropy_bf16_forward_backward(float *logits_to_dlogits, float *losses,
                                                       const int *targets, int N, int V,
                                                       float dscale, int *rc);
/* SwiGLU on merged gate|up rows gu (rows, 2I): out (rows, I); backward dgu
 * (rows, 2I) from dout (rows, I). */
int model_cuda_op_swiglu_gu_forward(float *out, const float *gu, int rows, int I);
int model_cuda_op_swiglu_gu_backward(float *dgu, const float *dout, const float *gu, int rows,
                                     int I);
/* LoRA with the output (gradient) rows ldo (ldd) apart, as inside a merged
 * projection: out (N, ldo) f32 +=, dout (N, ldd); dx, dA, dB +=. */
int model_cuda_op_lora_forward_ld(float *out, int ldo, float *xa, const float *x, const float *A,
                                  const float *B, int N, int IN, int OUT, int r, float scale);
int model_cuda_op_lora_backward_ld(float *dx, float *dA, float *dB, const float *dout, int ldd,
                                   const float *x, const float *xa, const float *A, const float *B,
                                   int N, int IN, int OUT, int r, float scale);
int model_cuda_op_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                               float b1, float b2, float eps, float wd, int t);
int model_cuda_op_sgd_update(float *p, const float *g, float *mom, size_t n, float lr,
                             float momentum, float wd);
/* DP reduce twin of priv_dpsgd_reduce without noise (sigma 0): out = sum of
 * clipped rows / expected_batch; and the noise generator alone: out[i] =
 * std * N(0,1) for the given key/counter (statistics tests). */
int model_cuda_op_clip_reduce(float *out, const float *g, int nb, size_t P, double C,
                              double expected_batch);
int model_cuda_op_noise(float *out, size_t n, uint64_t key, uint64_t ctr, double std);

#ifdef __cplusplus
}
#endif

#endif
