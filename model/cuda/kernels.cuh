/*
 * model/cuda/kernels.cuh — the trainer's own CUDA kernels, as host launchers
 * taking device pointers and a stream. Each one is the GPU twin of a
 * model/ops.h function (named in its comment); the differences are only of
 * storage type (bf16 where the model stores bf16) and of layout where the GPU
 * model fuses a permutation (rotary embedding writes (B,H,T,D)).
 *
 * Every launcher returns 0 or FL_ECUDA (launch failure, logged). They do not
 * synchronize; errors of the kernels' execution surface at the next checked
 * synchronizing call.
 */
#ifndef FL_MODEL_CUDA_KERNELS_CUH
#define FL_MODEL_CUDA_KERNELS_CUH

#include "model/cuda/common.cuh"

/* model_embed_forward: out (N,C) f32 = wte[tok] (wte (V,C) bf16). */
int fl_k_embed_forward(float *out, const int *tok, const bf16 *wte, int N, int C, cudaStream_t s);
/* model_embed_backward: dwte (V,C) f32 += dout rows (atomics). */
int fl_k_embed_backward(float *dwte, const float *dout, const int *tok, int N, int C,
                        cudaStream_t s);

/* model_rmsnorm_forward: x (N,C) f32, w (C) bf16 -> out (N,C) bf16, rstd (N) f32. */
int fl_k_rmsnorm_forward(bf16 *out, float *rstd, const float *x, const bf16 *w, int N, int C,
                         float eps, cudaStream_t s);
/* The same, also writing copy (N,C) f32 = x (the residual stream's next
 * value before the block's output GEMM adds into it; a plain copy, no
 * rounding), in the pass that reads x for the output. */
int fl_k_rmsnorm_forward_copy(bf16 *out, float *rstd, float *copy, const float *x, const bf16 *w,
                              int N, int C, float eps, cudaStream_t s);
/* model_rmsnorm_backward: dx (N,C) f32 +=, dw (C) f32 += (NULL ok), dout (N,C) f32;
 * dx16 (NULL ok) receives the updated dx rounded to bf16 (fused conversion
 * for the GEMM that consumes the residual gradient next). */
int fl_k_rmsnorm_backward(float *dx, bf16 *dx16, float *dw, const float *dout, const float *x,
                          const bf16 *w, const float *rstd, int N, int C, cudaStream_t s);
/* The fused path's RMSNorm kernels: fl_k_rmsnorm_forward_copy (copy NULL
 * ok) and this backward keep each row in registers (one read of x and dout)
 * where C % 4 == 0 and C <= 8192, and run the kernels above otherwise (and
 * whenever dw is wanted). */
int fl_k_rmsnorm_backward_fused(float *dx, bf16 *dx16, float *dw, const float *dout, const float *x,
                                const bf16 *w, const float *rstd, int N, int C, cudaStream_t s);

/* model_bias_forward: y (N,OUT) += b (OUT) bf16; y bf16 (yt CUDA_R_16BF) or
 * f32 (CUDA_R_32F). */
int fl_k_bias_forward(void *y, cudaDataType yt, const bf16 *b, long N, int OUT, cudaStream_t s);
/* model_bias_backward: db (OUT) f32 += column sums of dout (N,OUT) bf16. */
int fl_k_bias_backward(float *db, const bf16 *dout, long N, int OUT, cudaStream_t s);
/* model_rmsnorm_forward over rows of D on bf16 (Qwen3's q/k norm: rows =
 * N*H heads): x (rows,D) bf16, w (D) bf16 -> out (rows,D) bf16, rstd (rows)
 * f32. */
int fl_k_headnorm_forward(bf16 *out, float *rstd, const bf16 *x, const bf16 *w, long rows, int D,
                          float eps, cudaStream_t s);
/* Its backward: dx (rows,D) bf16 = the input gradient (overwritten; may
 * alias dout: each element is read before it is written by one thread), dw
 * (D) f32 += (NULL ok), summed per block first (one atomicAdd per element
 * and block, at most 512 blocks). */
int fl_k_headnorm_backward(bf16 *dx, float *dw, const bf16 *dout, const bf16 *x, const bf16 *w,
                           const float *rstd, long rows, int D, cudaStream_t s);
/* The same norm on the merged q/k/v projection's rows (fusion on): rows
 * (N, ld >= (Hq + 2 Hkv) D) bf16, q heads then k then v as
 * fl_k_qkv_rope_forward reads them. bias (NULL, or (Hq + 2 Hkv) D: the
 * layer's bq|bk|bv) is added to every head first; then each q and k head's
 * values (bias included, bf16) are saved to qpre (N, Hq D) / kpre (N, Hkv D)
 * and normalized in place with wq / wk (D), rstd to rstdq (N Hq) / rstdk
 * (N Hkv). v heads get the bias only; columns past the heads are
 * untouched. The rows then go to fl_k_qkv_rope_forward without a bias. */
int fl_k_qkv_headnorm_forward(bf16 *rows, int ld, const bf16 *bias, bf16 *qpre, bf16 *kpre,
                              float *rstdq, float *rstdk, const bf16 *wq, const bf16 *wk, long N,
                              int Hq, int Hkv, int D, float eps, cudaStream_t s);
/* Its backward, in place on the merged gradient rows drows (N, ld) that
 * fl_k_qkv_rope_backward wrote: each q and k head's gradient (of the normed
 * values) becomes that of its pre-norm values, which is also the bias's;
 * dwq, dwk (D) f32 += (both NULL or both set), summed per block as in
 * fl_k_headnorm_backward. v heads and the columns past the heads are
 * untouched. */
int fl_k_qkv_headnorm_backward(bf16 *drows, int ld, float *dwq, float *dwk, const bf16 *qpre,
                               const bf16 *kpre, const bf16 *wq, const bf16 *wk, const float *rstdq,
                               const float *rstdk, long N, int Hq, int Hkv, int D, cudaStream_t s);

/* model_rope_forward fused with a permutation: in (B,T,H,D) bf16 -> out
 * (B,H,T,D) bf16, rotated when rotate (cs: (T, D/2) pairs cos, sin), copied
 * otherwise (v). */
int fl_k_rope_permute_forward(bf16 *out, const bf16 *in, const float2 *cs, int B, int T, int H,
                              int D, int rotate, cudaStream_t s);
/* model_rope_backward fused with the inverse permutation: din (B,H,T,D) ->
 * dout (B,T,H,D), rotated back (transpose rotation) when rotate. */
int fl_k_rope_permute_backward(bf16 *dout, const bf16 *din, const float2 *cs, int B, int T, int H,
                               int D, int rotate, cudaStream_t s);
/* The merged q/k/v projection's split: qkv (N = B*T rows of ld >= (Hq +
 * 2 Hkv) D; q heads, then k, then v) plus bias (NULL, or (Hq + 2 Hkv) D,
 * added before the rotation as Qwen2's projections do) -> q (B,Hq,T,D) and k
 * (B,Hkv,T,D) rotated (model_rope_forward), v (B,Hkv,T,D) copied. One launch
 * for what fl_k_rope_permute_forward does in three. */
int fl_k_qkv_rope_forward(bf16 *q, bf16 *k, bf16 *v, const bf16 *qkv, int ld, const bf16 *bias,
                          const float2 *cs, int B, int T, int Hq, int Hkv, int D, cudaStream_t s);
/* Its backward: dq (B,Hq,T,D), dk, dv (B,Hkv,T,D) -> dqkv rows (N, ld),
 * q and k rotated back (model_rope_backward), v copied; columns past
 * (Hq + 2 Hkv) D untouched. */
int fl_k_qkv_rope_backward(bf16 *dqkv, int ld, const bf16 *dq, const bf16 *dk, const bf16 *dv,
                           const float2 *cs, int B, int T, int Hq, int Hkv, int D, cudaStream_t s);
/* (B,H,T,D) <-> (B,T,H,D) permutations without rotation. */
int fl_k_bhtd_to_bthd(bf16 *out, const bf16 *in, int B, int T, int H, int D, cudaStream_t s);
int fl_k_bthd_to_bhtd(bf16 *out, const bf16 *in, int B, int T, int H, int D, cudaStream_t s);

/* Causal softmax over rows of S (rows, T) f32, row r at query position
 * r % T: P = softmax(scale * S) over columns <= r % T, 0 above. */
int fl_k_causal_softmax(bf16 *P, const float *S, long rows, int T, float scale, cudaStream_t s);
/* Its backward: dS = P * (dP - sum_j P_j dP_j) * scale, written as bf16 over
 * dS (may alias P: each element is read before it is written by one thread). */
int fl_k_causal_softmax_backward(bf16 *dS, const bf16 *P, const float *dP, long rows, int T,
                                 float scale, cudaStream_t s);

/* model_swiglu_forward / _backward on bf16 (dgate, dup overwritten, not +=). */
int fl_k_swiglu_forward(bf16 *out, const bf16 *gate, const bf16 *up, long N, cudaStream_t s);
int fl_k_swiglu_backward(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate, const bf16 *up,
                         long N, cudaStream_t s);

/* model_swiglu_forward / _backward on the merged gate/up projection: gu
 * (rows, 2I) holds gate in columns [0, I) and up in [I, 2I) of each row;
 * out and dout are (rows, I); dgu (rows, 2I) receives dgate and dup in the
 * same halves (overwritten). */
int fl_k_swiglu_gu_forward(bf16 *out, const bf16 *gu, long rows, int I, cudaStream_t s);
int fl_k_swiglu_gu_backward(bf16 *dgu, const bf16 *dout, const bf16 *gu, long rows, int I,
                            cudaStream_t s);

/* model_crossentropy_forward_backward on a chunk of rows: logits (N,V) f32,
 * targets (N) (-1 ignored). losses (N) f32 and correct (N) int (argmax ==
 * target) always written; dlogits (N,V) bf16 = (softmax - onehot) * scale of
 * the row (row_scale[n] if row_scale, else dscale) when dlogits is non-NULL,
 * zero rows for ignored targets. */
int fl_k_crossentropy(bf16 *dlogits, float *losses, int *correct, const float *logits,
                      const int *targets, const float *row_scale, float dscale, int N, int V,
                      cudaStream_t s);
/* The same on bf16 logits (the training head's GEMM output); dlogits may be
 * the logits buffer itself (the gradient overwrites the logits in place). */
int fl_k_crossentropy_bf16(bf16 *dlogits, float *losses, int *correct, const bf16 *logits,
                           const int *targets, const float *row_scale, float dscale, int N, int V,
                           cudaStream_t s);

/* model_adamw_update / model_sgd_update on f32 arrays (mom NULL: plain SGD).
 * c1, c2 are the bias corrections 1 - b^t computed by the caller in float as
 * the CPU does. */
int fl_k_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
               float eps, float wd, float c1, float c2, cudaStream_t s);
int fl_k_sgd(float *p, const float *g, float *mom, size_t n, float lr, float momentum, float wd,
             cudaStream_t s);

/* Element-wise helpers. */
int fl_k_f32_to_bf16(bf16 *out, const float *in, size_t n, cudaStream_t s);
int fl_k_bf16_to_f32(float *out, const bf16 *in, size_t n, cudaStream_t s);
/* out (n) f32 = a + b; out may alias a. */
int fl_k_add_f32(float *out, const float *a, const float *b, size_t n, cudaStream_t s);
/* Deterministic pseudo-random init (benchmarks without a checkpoint): w[i] =
 * std * N(0,1) from a hash of (seed, i), or `fill` when std == 0. */
int fl_k_init_bf16(bf16 *w, size_t n, uint64_t seed, float std, float fill, cudaStream_t s);

/* DP-SGD: norms2[e] = sum of squares of row e of g (nex rows of P floats). */
int fl_k_row_sumsq(float *norms2, const float *g, int nex, size_t P, cudaStream_t s);
/* out[j] += sum_e g[e*P + j] * min(1, clip / ||g_e||) with norms2 from
 * fl_k_row_sumsq (a zero row contributes nothing). */
int fl_k_clip_accumulate(float *out, const float *g, const float *norms2, int nex, size_t P,
                         float clip, cudaStream_t s);
/* out[j] = (out[j] + std * N(0,1)_j) * inv_div, the normals from Philox4x32-10
 * keyed by key (64 bits) at counter (ctr_hi, j / 4), Box-Muller in double. */
int fl_k_add_noise_scale(float *out, size_t n, uint64_t key, uint64_t ctr_hi, double std,
                         double inv_div, cudaStream_t s);

/* ---- composite steps shared by the model (llama.cu) and the op tests ---- */

/* LoRA forward of one adapted matrix: xa (N,r) bf16 = x (N,IN) A^T, then
 * out (N,OUT) += scale * xa B^T; out of type otype (bf16 or f32). */
int fl_lora_forward(cublasHandle_t h, const bf16 *x, int IN, void *out, cudaDataType otype, int OUT,
                    bf16 *xa, const bf16 *A16, const bf16 *B16, int N, int r, float scale);
/* The same with out's rows ldo elements apart (ldo >= OUT): the matrix's
 * columns inside a merged projection's output (q, k, v of one row; gate,
 * up). */
int fl_lora_forward_ld(cublasHandle_t h, const bf16 *x, int IN, void *out, cudaDataType otype,
                       int OUT, int ldo, bf16 *xa, const bf16 *A16, const bf16 *B16, int N, int r,
                       float scale);
/* LoRA backward of one matrix (model_lora_backward): dB (OUT,r) += scale *
 * dout^T xa and dA (r,IN) += dxa^T x (dA NULL: A frozen), dx (N,IN) += dxa A
 * (dx NULL ok, type dxtype), with dxa (N,r) = scale * dout B (scratch).
 * Per example when nex > 0: the N = nex*T rows are nex examples; example e's
 * gradients are written (not added) at dB + e*stride and dA + e*stride. */
int fl_lora_backward(cublasHandle_t h, void *dx, cudaDataType dxtype, float *dA, float *dB,
                     const bf16 *dout, const bf16 *x, const bf16 *xa, const bf16 *A16,
                     const bf16 *B16, bf16 *dxa, int N, int IN, int OUT, int r, float scale,
                     int nex, int T, size_t stride);
/* The same with dout's rows ldd elements apart (ldd >= OUT: the matrix's
 * columns of a merged projection's output gradient). */
int fl_lora_backward_ld(cublasHandle_t h, void *dx, cudaDataType dxtype, float *dA, float *dB,
                        const bf16 *dout, int ldd, const bf16 *x, const bf16 *xa, const bf16 *A16,
                        const bf16 *B16, bf16 *dxa, int N, int IN, int OUT, int r, float scale,
                        int nex, int T, size_t stride);
/* Its first part, for merged projections: dB and dA as above and dxa (N,r)
 * = scale * dout B written into rows lddxa apart (dxa NULL: dB only), but no
 * dx: the caller adds the input-gradient terms of all the group's matrices
 * in one GEMM, [dxa_1 .. dxa_n] [A_1; ..; A_n], where their A's are
 * adjacent. */
int fl_lora_backward_dxa(cublasHandle_t h, float *dA, float *dB, const bf16 *dout, int ldd,
                         const bf16 *x, const bf16 *xa, const bf16 *B16, bf16 *dxa, int lddxa,
                         int N, int IN, int OUT, int r, float scale, int nex, int T, size_t stride);

/* Scratch of the attention: S (f32) and P (bf16) for bc examples at a time. */
typedef struct fl_attn_scratch {
	float *S; /* (bc, Hq, T, T) */
	bf16 *P;  /* (bc, Hq, T, T) */
	int bc;   /* examples per chunk */
} fl_attn_scratch;

/* Causal GQA attention forward (model_attention_forward): q (B,Hq,T,D), k, v
 * (B,Hkv,T,D) bf16 -> o (B,Hq,T,D) bf16. The probabilities are not kept: the
 * backward recomputes them. */
int fl_attention_forward(cublasHandle_t h, cudaStream_t s, bf16 *o, const bf16 *q, const bf16 *k,
                         const bf16 *v, int B, int T, int Hq, int Hkv, int D,
                         const fl_attn_scratch *sc);
/* Backward: dO (B,Hq,T,D) -> dq (B,Hq,T,D), dk, dv (B,Hkv,T,D), overwritten. */
int fl_attention_backward(cublasHandle_t h, cudaStream_t s, bf16 *dq, bf16 *dk, bf16 *dv,
                          const bf16 *dO, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T,
                          int Hq, int Hkv, int D, const fl_attn_scratch *sc);

/* Rotary table (T, D/2) of (cos, sin) pairs for the D/2 inverse frequencies
 * inv_freq (model_rope_inv_freq, the CPU model's own), angles pos * inv_freq
 * rounded to float32 as model/ops.c and transformers round them. */
void fl_rope_table(float2 *host, int T, int D, const float *inv_freq);

/* Fused flash-style attention (flash.cu). Supported when D is 16, 32, 64 or
 * 128 on sm_80+ (fl_flash_supported). Forward: o (B,T,Hq,D) — the layout of
 * the o_proj input, not q's — and the row log-sum-exp lse (B,Hq,T) f32.
 * Backward: dq (B,Hq,T,D), dk, dv (B,Hkv,T,D) (overwritten) from dO and o in
 * (B,T,Hq,D), delta = rowsum(dO*O) scratch (B,Hq,T) f32. */
int fl_flash_supported(int D);
int fl_flash_forward(bf16 *o_bthd, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B,
                     int T, int Hq, int Hkv, int D, cudaStream_t s);
int fl_flash_backward(bf16 *dq, bf16 *dk, bf16 *dv, float *delta, const bf16 *dO_bthd,
                      const bf16 *o_bthd, const bf16 *q, const bf16 *k, const bf16 *v,
                      const float *lse, int B, int T, int Hq, int Hkv, int D, cudaStream_t s);

#endif
