/*
 * model/cuda/llama.cu — the Llama model on one GPU (see model/cuda/cuda.h):
 * forward, LoRA backward, optimizer and DP-SGD steps. Mirrors model/llama.c
 * layer for layer; the CPU model is the reference it is tested against.
 *
 * Precision: weights, per-layer activations and activation gradients are
 * bf16; the residual stream and its gradient are f32 (GEMMs accumulate into
 * them directly with beta = 1); LoRA tensors have f32 masters, gradients and
 * optimizer state, and bf16 working copies refreshed after each update;
 * scores and logits are f32.
 *
 * Memory: parameters in one allocation (pointer table w[]), LoRA state in one
 * (params, grads, moments), activations in one (sized for max_batch x
 * max_seq), scratch in one. Attention probabilities are recomputed in the
 * backward instead of being stored; the LM head + cross-entropy run over
 * chunks of rows, so at most (rows_chunk, V) logits exist at once.
 *
 * Full-parameter mode (config.full, for pretraining) adds f32 masters,
 * gradients and AdamW/SGD moments of every base tensor in one allocation laid
 * out like the bf16 weights, weight-gradient GEMMs in every linear layer, the
 * norms' weight gradients and the embedding's; an attached adapter is then
 * applied but not trained. Every CUDA/cuBLAS call is checked (logged
 * file:line, FL_ECUDA).
 *
 * Speed: attention is the fused flash kernels (flash.cu) by default, the
 * GEMM path where they do not apply; LoRA gradient passes (forward, head,
 * backward) are replayed from a CUDA graph once a micro-batch shape repeats
 * (FEDLORA_GRAPH=0 turns that off); frozen weights never get weight
 * gradients and the backward stops at the lowest adapted layer.
 * FEDLORA_PROFILE=1 prints each training step's per-phase device times
 * (forward, its attention, LM head + cross-entropy, backward, its attention,
 * optimizer) to stderr, without graphs. Fusion (on unless FEDLORA_FUSE=0 at
 * model_cuda_new): merged q/k/v and gate/up GEMMs over weights stored as
 * adjacent rows per layer, one kernel for the q/k/v split + rotary + layout,
 * SwiGLU on merged rows, RMSNorm writing the residual copy, bf16 logits
 * with the cross-entropy in place when training LoRA (see layer_fwd, head);
 * the families' q/k/v biases and q/k norms run on the merged rows too.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda/cuda.h"
#include "model/cuda/kernels.cuh"

/* Parameter tensors, in model_cuda_weights' (and MODEL_P_*) order; the
 * biases and q/k norms have size 0 where the family has none. */
enum {
	W_EMBED = 0,
	W_LN1,
	W_Q,
	W_K,
	W_V,
	W_O,
	W_LN2,
	W_GATE,
	W_UP,
	W_DOWN,
	W_NORM,
	W_HEAD,
	W_BQ,
	W_BK,
	W_BV,
	W_BO,
	W_QN,
	W_KN,
	W_N
};

#define ATTN_SCRATCH_BYTES (1024L * 1024 * 1024) /* cap of S (f32) per chunk */
#define LOGITS_CHUNK_BYTES (512L * 1024 * 1024)  /* cap of the f32 logits per chunk */
#define CUBLAS_WS_BYTES    (32L * 1024 * 1024)   /* cuBLAS workspace (Hopper's recommended size) */

struct model_cuda {
	model_cuda_config c;
	int C, I, L, Hq, Hkv, D, V, QD, KD;
	long Nmax;
	cudaStream_t s;
	cublasHandle_t h;
	size_t mem;      /* bytes allocated */
	size_t lora_mem; /* of which the LoRA state (released on re-attach) */
	/* parameters (bf16) */
	bf16 *wmem;
	bf16 *w[W_N];
	size_t wsz[W_N];  /* elements of each tensor (all its layers) */
	size_t wper[W_N]; /* elements of one layer's slice */
	size_t wstr[W_N]; /* elements from one layer's slice to the next */
	int wnl[W_N];     /* slices: L for the per-layer tensors, else 1 */
	size_t wtot;      /* elements of wmem (tensor groups padded to 128) */
	int fuse;         /* merged projections and fused kernels (FEDLORA_FUSE) */
	int QKV;          /* QD + 2 KD: a row of the merged q/k/v projection */
	/* full-parameter training: f32 masters, gradients, moments, laid out as wmem */
	float *fmem, *fw[W_N], *fg[W_N], *fm, *fv;
	float2 *rope; /* (max_seq, D/2) */
	/* LoRA */
	int nlora, r, train_a;
	float scale;
	size_t n_a, n_b;
	model_cuda_lora_mat *mats;
	int *lidx;   /* (L, 7) matrix index or -1 */
	float *lmem; /* params | grads | m | v, each n_a + n_b */
	float *lp, *lg, *lm, *lv;
	bf16 *l16;     /* bf16 copy of params */
	bf16 *xa;      /* (nlora, Nmax, r) */
	bf16 *dxa;     /* (Nmax, 3r): one merged group's dxa side by side */
	float *pe;     /* (max_batch, ntrain) per-example gradients (DP) */
	float *dp_sum; /* (ntrain) */
	float *norms2; /* (max_batch) */
	model_cuda_optim opt;
	int t;
	/* activations */
	void *amem;
	float *res, *resmid, *rstd1, *rstd2, *rstdf;
	bf16 *h1, *h2, *q, *k, *v, *atto, *gate, *swi, *hf;
	bf16 *qpre, *kpre;    /* (L, N, QD) / (L, N, KD) projections before the q/k norm */
	float *rstdq, *rstdk; /* (L, N*Hq) / (L, N*Hkv) per-head rstd of the q/k norm */
	/* scratch */
	void *smem;
	bf16 *raw, *operm, *dlogits, *d16, *dq, *dk, *dv, *dqr, *dkr, *dvr, *datto, *dgate, *dup,
	    *dswi;
	float *logits, *losses, *row_scale, *dres, *dln;
	int *correct, *tok, *tgt;
	fl_attn_scratch att;
	int flash;    /* attention through flash.cu (else GEMMs + softmax) */
	float *lse;   /* (L, Nmax*Hq) row log-sum-exp of the flash forward */
	float *delta; /* (Nmax*Hq) flash backward scratch */
	long rows_chunk;
	/* host mirrors */
	float *h_losses;
	int *h_correct;
	/* CUDA graph of a LoRA gradient pass (forward + head + backward) for one
	 * micro-batch shape; FEDLORA_GRAPH=0 disables it */
	void *ws; /* cuBLAS workspace (set explicitly: nothing is allocated in a capture) */
	cudaGraphExec_t gexec;
	int g_off, g_Bm, g_T, g_seen;
	float g_dscale;
	/* FEDLORA_PROFILE=1: CUDA events around the phases of a step */
	int prof, prof_n, prof_cap, prof_steps;
	cudaEvent_t *prof_ev; /* pairs (begin, end) */
	int *prof_ph;         /* phase of each pair */
	double prof_ms[12];
};

/* ---- device / info ------------------------------------------------------ */

__global__ void k_probe(int *x)
{
	*x = 42;
}

extern "C" int model_cuda_probe(char *why, size_t whylen)
{
	int n = 0, rv = 0, got = 0;
	int *d = NULL;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess || n == 0) {
		if (why)
			snprintf(why, whylen, "no usable CUDA device (%s)",
			         e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0");
		return FL_ECUDA;
	}
	if ((e = cudaMalloc(&d, sizeof(int))) != cudaSuccess)
		goto bad;
	k_probe<<<1, 1>>>(d);
	if ((e = cudaGetLastError()) != cudaSuccess)
		goto bad;
	if ((e = cudaMemcpy(&got, d, sizeof(int), cudaMemcpyDeviceToHost)) != cudaSuccess)
		goto bad;
	cudaFree(d);
	if (got != 42) {
		if (why)
			snprintf(why, whylen, "CUDA device present but a test kernel did not run");
		return FL_ECUDA;
	}
	return rv;
bad:
	if (d)
		cudaFree(d);
	cudaGetLastError();
	if (why)
		snprintf(why, whylen, "CUDA device not usable: %s (built for sm_80/87/89/90)",
		         cudaGetErrorString(e));
	return FL_ECUDA;
}

extern "C" int model_cuda_device_info(char *name, size_t namelen, size_t *total, size_t *free_b)
{
	int rv = 0, dev = 0;
	cudaDeviceProp p;
	size_t fr = 0, tot = 0;
	CU_TRY(cudaGetDevice(&dev));
	CU_TRY(cudaGetDeviceProperties(&p, dev));
	CU_TRY(cudaMemGetInfo(&fr, &tot));
	if (name)
		snprintf(name, namelen, "%s (sm_%d%d)", p.name, p.major, p.minor);
	if (total)
		*total = tot;
	if (free_b)
		*free_b = fr;
fail:
	return rv;
}

/* ---- allocation ----------------------------------------------------------- */

static int dev_alloc(model_cuda *m, void **p, size_t bytes)
{
	int rv = 0;
	*p = NULL;
	if (bytes == 0)
		return 0;
	cudaError_t e = cudaMalloc(p, bytes);
	if (e != cudaSuccess) {
		cudaGetLastError();
		fl_log(FL_LOG_ERROR, "cuda", "cudaMalloc of %.1f MiB failed: %s", bytes / 1048576.0,
		       cudaGetErrorString(e));
		*p = NULL;
		return e == cudaErrorMemoryAllocation ? FL_ENOMEM : FL_ECUDA;
	}
	m->mem += bytes;
	return rv;
}

/* Carves aligned sub-buffers out of one allocation: first pass counts. */
typedef struct carver {
	char *base;
	size_t off;
} carver;

static void *carve(carver *cv, size_t bytes)
{
	size_t o = (cv->off + 255) & ~(size_t)255;
	cv->off = o + bytes;
	return cv->base ? cv->base + o : NULL;
}

/* With gradient checkpointing only the residual stream entering each layer
 * (res) keeps a slot per layer; the rest has one slot, which the backward
 * refills layer by layer (layer_fwd). */
static void layout_acts(model_cuda *m, carver *cv)
{
	size_t N = m->Nmax, LR = m->L, C = m->C, I = m->I;
	size_t L = m->c.grad_checkpoint ? 1 : LR;
	m->res = (float *)carve(cv, (LR + 1) * N * C * 4);
	m->resmid = (float *)carve(cv, L * N * C * 4);
	m->rstd1 = (float *)carve(cv, L * N * 4);
	m->rstd2 = (float *)carve(cv, L * N * 4);
	m->rstdf = (float *)carve(cv, N * 4);
	m->h1 = (bf16 *)carve(cv, L * N * C * 2);
	m->h2 = (bf16 *)carve(cv, L * N * C * 2);
	m->q = (bf16 *)carve(cv, L * N * m->QD * 2);
	m->k = (bf16 *)carve(cv, L * N * m->KD * 2);
	m->v = (bf16 *)carve(cv, L * N * m->KD * 2);
	m->atto = (bf16 *)carve(cv, L * N * m->QD * 2);
	/* each slot: (N, 2I) rows of gate|up with fusion on, else gate (N, I)
	 * then up (N, I); the same bytes either way */
	m->gate = (bf16 *)carve(cv, L * N * 2 * I * 2);
	m->swi = (bf16 *)carve(cv, L * N * I * 2);
	m->hf = (bf16 *)carve(cv, N * C * 2);
	size_t qn = m->c.qk_norm ? L * N : 0; /* q/k norm activations only for Qwen3 */
	m->qpre = (bf16 *)carve(cv, qn * m->QD * 2);
	m->kpre = (bf16 *)carve(cv, qn * m->KD * 2);
	m->rstdq = (float *)carve(cv, qn * m->Hq * 4);
	m->rstdk = (float *)carve(cv, qn * m->Hkv * 4);
	m->lse = m->flash ? (float *)carve(cv, L * N * m->Hq * 4) : NULL;
}

static void layout_scratch(model_cuda *m, carver *cv)
{
	size_t N = m->Nmax, C = m->C, I = m->I, V = m->V, T = m->c.max_seq;
	size_t wide = C > I ? C : I;
	if ((size_t)m->QD > wide)
		wide = m->QD;
	size_t sc = m->flash ? 0 : (size_t)m->att.bc * m->Hq * T * T;
	m->raw = (bf16 *)carve(cv, N * (m->QD + 2 * m->KD) * 2);
	m->operm = (bf16 *)carve(cv, N * m->QD * 2);
	m->att.S = (float *)carve(cv, sc * 4);
	m->att.P = (bf16 *)carve(cv, sc * 2);
	m->delta = m->flash ? (float *)carve(cv, N * m->Hq * 4) : NULL;
	m->logits = (float *)carve(cv, m->rows_chunk * V * 4);
	m->dlogits = (bf16 *)carve(cv, m->rows_chunk * V * 2);
	m->losses = (float *)carve(cv, N * 4);
	m->row_scale = (float *)carve(cv, N * 4);
	m->correct = (int *)carve(cv, N * 4);
	m->tok = (int *)carve(cv, N * 4);
	m->tgt = (int *)carve(cv, N * 4);
	m->dres = (float *)carve(cv, N * C * 4);
	m->dln = (float *)carve(cv, N * C * 4);
	m->d16 = (bf16 *)carve(cv, N * wide * 2);
	m->dq = (bf16 *)carve(cv, N * m->QD * 2);
	m->dk = (bf16 *)carve(cv, N * m->KD * 2);
	m->dv = (bf16 *)carve(cv, N * m->KD * 2);
	/* (N, QKV) rows of the merged projection's gradient with fusion on;
	 * dq (N, QD), dk, dv (N, KD) one after the other without it */
	m->dqr = (bf16 *)carve(cv, N * m->QKV * 2);
	m->dkr = m->dqr ? m->dqr + N * m->QD : NULL;
	m->dvr = m->dkr ? m->dkr + N * m->KD : NULL;
	m->datto = (bf16 *)carve(cv, N * m->QD * 2);
	/* (N, 2I) rows of dgate|dup with fusion on, else dgate then dup */
	m->dgate = (bf16 *)carve(cv, N * 2 * I * 2);
	m->dup = m->dgate ? m->dgate + N * I : NULL;
	m->dswi = (bf16 *)carve(cv, N * I * 2);
}

static int upload_bf16(model_cuda *m, bf16 *dst, const float *src, size_t n)
{
	int rv = 0;
	const size_t chunk = 1u << 22;
	uint16_t *tmp = (uint16_t *)malloc((n < chunk ? n : chunk) * 2);
	if (!tmp)
		return FL_ENOMEM;
	for (size_t o = 0; o < n; o += chunk) {
		size_t k = n - o < chunk ? n - o : chunk;
		for (size_t i = 0; i < k; i++)
			tmp[i] = fl_f32_to_bf16_bits(src[o + i]);
		CU_TRY(cudaMemcpy(dst + o, tmp, k * 2, cudaMemcpyHostToDevice));
	}
fail:
	free(tmp);
	return rv;
}

/* Relative L2 distance of two bf16 device arrays (host copies). */
static double dev_rel_l2(const bf16 *a, const bf16 *b, size_t n)
{
	uint16_t *ha = (uint16_t *)malloc(n * 2), *hb = (uint16_t *)malloc(n * 2);
	double d = 0, s = 0;
	if (!ha || !hb || cudaMemcpy(ha, a, n * 2, cudaMemcpyDeviceToHost) != cudaSuccess ||
	    cudaMemcpy(hb, b, n * 2, cudaMemcpyDeviceToHost) != cudaSuccess) {
		free(ha);
		free(hb);
		return INFINITY;
	}
	for (size_t i = 0; i < n; i++) {
		double x = fl_bf16_bits_to_f32(ha[i]), y = fl_bf16_bits_to_f32(hb[i]);
		d += (x - y) * (x - y);
		s += y * y;
	}
	free(ha);
	free(hb);
	return s > 0 ? sqrt(d / s) : (d > 0 ? INFINITY : 0.0);
}

/* Start-up check of the flash kernels against the GEMM path on a random
 * problem with this model's heads (T not a multiple of the block size):
 * relative L2 error of O, dQ, dK, dV under 2e-2. Returns 1 when it passes. */
static int flash_selfcheck(model_cuda *m)
{
	const int B = 2, T = 150, Hq = m->Hq, Hkv = m->Hkv, D = m->D;
	size_t nq = (size_t)B * Hq * T * D, nk = (size_t)B * Hkv * T * D, ns = (size_t)B * Hq * T;
	size_t total = 0, off[16];
	size_t sz[16] = {
	    nq * 2, nk * 2, nk * 2, nq * 2, nq * 2, nq * 2, nq * 2,     nq * 2,
	    nq * 2, nk * 2, nk * 2, nq * 2, nk * 2, nk * 2, ns * 4 * 2, ns * (size_t)T * 6};
	unsigned char *mem = NULL;
	int ok = 0, rv = 0;
	double e[4] = {0, 0, 0, 0};
	for (int i = 0; i < 16; i++) {
		off[i] = total;
		total += (sz[i] + 255) & ~(size_t)255;
	}
	if (cudaMalloc(&mem, total) != cudaSuccess) {
		cudaGetLastError();
		return 0;
	}
	{
		bf16 *q = (bf16 *)(mem + off[0]), *k = (bf16 *)(mem + off[1]);
		bf16 *v = (bf16 *)(mem + off[2]), *dO = (bf16 *)(mem + off[3]);
		bf16 *o1 = (bf16 *)(mem + off[4]), *o2 = (bf16 *)(mem + off[5]);
		bf16 *dO_bthd = (bf16 *)(mem + off[6]), *o1_bthd = (bf16 *)(mem + off[7]);
		bf16 *dq1 = (bf16 *)(mem + off[8]), *dk1 = (bf16 *)(mem + off[9]);
		bf16 *dv1 = (bf16 *)(mem + off[10]), *dq2 = (bf16 *)(mem + off[11]);
		bf16 *dk2 = (bf16 *)(mem + off[12]), *dv2 = (bf16 *)(mem + off[13]);
		float *lse = (float *)(mem + off[14]), *delta = lse + ns;
		fl_attn_scratch sc;
		sc.bc = B;
		sc.S = (float *)(mem + off[15]);
		sc.P = (bf16 *)(sc.S + ns * T);
		cudaStream_t s = m->s;
		if ((rv = fl_k_init_bf16(q, nq, 11, 1.0f, 0, s)) ||
		    (rv = fl_k_init_bf16(k, nk, 12, 1.0f, 0, s)) ||
		    (rv = fl_k_init_bf16(v, nk, 13, 1.0f, 0, s)) ||
		    (rv = fl_k_init_bf16(dO, nq, 14, 1.0f, 0, s)) ||
		    (rv = fl_attention_forward(m->h, s, o1, q, k, v, B, T, Hq, Hkv, D, &sc)) ||
		    (rv = fl_attention_backward(m->h, s, dq1, dk1, dv1, dO, q, k, v, B, T, Hq, Hkv,
		                                D, &sc)) ||
		    (rv = fl_flash_forward(o2, lse, q, k, v, B, T, Hq, Hkv, D, s)) ||
		    (rv = fl_k_bhtd_to_bthd(dO_bthd, dO, B, T, Hq, D, s)) ||
		    (rv = fl_k_bhtd_to_bthd(o1_bthd, o1, B, T, Hq, D, s)) ||
		    (rv = fl_flash_backward(dq2, dk2, dv2, delta, dO_bthd, o2, q, k, v, lse, B, T,
		                            Hq, Hkv, D, s)))
			goto out;
		if (cudaStreamSynchronize(s) != cudaSuccess) {
			fl_log(FL_LOG_WARN, "cuda", "flash attention self-check (rc %d): %s", rv,
			       cudaGetErrorString(cudaGetLastError()));
			goto out;
		}
		e[0] = dev_rel_l2(o2, o1_bthd, nq); /* the flash O is (B,T,Hq,D) */
		e[1] = dev_rel_l2(dq2, dq1, nq);
		e[2] = dev_rel_l2(dk2, dk1, nk);
		e[3] = dev_rel_l2(dv2, dv1, nk);
		ok = e[0] < 2e-2 && e[1] < 2e-2 && e[2] < 2e-2 && e[3] < 2e-2;
	}
out:
	cudaFree(mem);
	cudaGetLastError();
	fl_log(ok ? FL_LOG_DEBUG : FL_LOG_WARN, "cuda",
	       "flash attention self-check (Hq %d Hkv %d D %d) vs GEMM path: rel L2 O %.3g dQ %.3g "
	       "dK %.3g dV %.3g: %s",
	       Hq, Hkv, D, e[0], e[1], e[2], e[3], ok ? "ok" : "FAILED, using the GEMM path");
	return ok;
}

/* FEDLORA_ATTN=gemm|flash forces an implementation; by default flash is used
 * where supported and its start-up self-check passes (cached per process and
 * head shape). */
static int choose_attention(model_cuda *m)
{
	static int cached_key = -1, cached_ok = 0;
	const char *env = getenv("FEDLORA_ATTN");
	int key = (m->Hq * 64 + m->Hkv) * 1024 + m->D;
	m->flash = 0;
	if (env && !strcmp(env, "gemm"))
		return 0;
	if (!fl_flash_supported(m->D)) {
		fl_log(FL_LOG_INFO, "cuda", "flash attention not supported for head dim %d", m->D);
		return 0;
	}
	if (env && !strcmp(env, "flash")) {
		m->flash = 1;
		return 0;
	}
	if (cached_key != key) {
		/* the check needs the GEMM scratch for its small problem only */
		cached_ok = flash_selfcheck(m);
		cached_key = key;
	}
	m->flash = cached_ok;
	return 0;
}

extern "C" const char *model_cuda_attention(const model_cuda *m)
{
	return m->flash ? "flash" : "gemm";
}

extern "C" int model_cuda_fused(const model_cuda *m)
{
	return m->fuse;
}

/* ---- FEDLORA_PROFILE ------------------------------------------------------
 * With FEDLORA_PROFILE=1 in the environment, each training step records CUDA
 * events around its phases and prints their device times to stderr (one
 * line per step). The events sit on the model's stream, so they add no
 * synchronization of their own; the numbers are device time between the
 * marks (host launch gaps included). Off by default: no events are made. */
enum {
	PH_FWD = 0,
	PH_ATT_F,
	PH_HEAD,
	PH_BWD,
	PH_ATT_B,
	PH_OPT,
	/* finer intervals inside the ones above (the second report line): the
	 * frozen-weight GEMMs of the linear layers' forward (recomputation under
	 * gradient checkpointing included) and input-gradient backward, the LoRA
	 * side paths of both, the LM head's GEMMs and its cross-entropy */
	PH_GEMM_F,
	PH_LORA_F,
	PH_GEMM_B,
	PH_LORA_B,
	PH_HGEMM,
	PH_CE,
	PH_N
};

/* Opens an interval of phase ph (slot i: events 2i, 2i+1; intervals may
 * nest); returns its slot for prof_end, or -1 when profiling is off/full. */
static int prof_begin(model_cuda *m, int ph)
{
	int i = m->prof_n;
	if (!m->prof || 2 * (i + 1) > m->prof_cap)
		return -1;
	m->prof_ph[i] = ph;
	m->prof_n++;
	cudaEventRecord(m->prof_ev[2 * i], m->s);
	return i;
}

static void prof_end(model_cuda *m, int i)
{
	if (i >= 0)
		cudaEventRecord(m->prof_ev[2 * i + 1], m->s);
}

/* After a synchronization: adds the recorded intervals' times to prof_ms. */
static void prof_collect(model_cuda *m)
{
	for (int i = 0; i < m->prof_n; i++) {
		float ms = 0.f;
		if (cudaEventElapsedTime(&ms, m->prof_ev[2 * i], m->prof_ev[2 * i + 1]) ==
		    cudaSuccess)
			m->prof_ms[m->prof_ph[i]] += ms;
	}
	cudaGetLastError();
	m->prof_n = 0;
}

static void prof_report(model_cuda *m)
{
	double *t = m->prof_ms;
	if (!m->prof)
		return;
	prof_collect(m);
	fprintf(stderr,
	        "fedlora profile: step %d (%s attention, fusion %s): forward %.2f ms (attention "
	        "%.2f), head+CE %.2f, backward %.2f (attention %.2f), optimizer %.2f, sum %.2f\n",
	        ++m->prof_steps, m->flash ? "flash" : "gemm", m->fuse ? "on" : "off", t[PH_FWD],
	        t[PH_ATT_F], t[PH_HEAD], t[PH_BWD], t[PH_ATT_B], t[PH_OPT],
	        t[PH_FWD] + t[PH_HEAD] + t[PH_BWD] + t[PH_OPT]);
	fprintf(stderr,
	        "fedlora profile: step %d detail: linear GEMMs forward %.2f ms, input-gradient "
	        "%.2f; LoRA forward %.2f, backward %.2f; head GEMMs %.2f, cross-entropy %.2f; "
	        "the rest (norms, RoPE, SwiGLU, copies, launch gaps) %.2f\n",
	        m->prof_steps, t[PH_GEMM_F], t[PH_GEMM_B], t[PH_LORA_F], t[PH_LORA_B], t[PH_HGEMM],
	        t[PH_CE],
	        t[PH_FWD] + t[PH_BWD] - t[PH_ATT_F] - t[PH_ATT_B] - t[PH_GEMM_F] - t[PH_GEMM_B] -
	            t[PH_LORA_F] - t[PH_LORA_B]);
	memset(m->prof_ms, 0, sizeof m->prof_ms);
}

static int prof_init(model_cuda *m)
{
	const char *e = getenv("FEDLORA_PROFILE");
	int rv = 0;
	if (!e || !*e || !strcmp(e, "0"))
		return 0;
	m->prof_cap = 2 * (48 * m->L + 256); /* every interval of one micro-batch */
	m->prof_ev = (cudaEvent_t *)calloc((size_t)m->prof_cap, sizeof *m->prof_ev);
	m->prof_ph = (int *)calloc((size_t)m->prof_cap / 2, sizeof *m->prof_ph);
	if (!m->prof_ev || !m->prof_ph)
		return FL_ENOMEM;
	for (int i = 0; i < m->prof_cap; i++)
		CU_TRY(cudaEventCreate(&m->prof_ev[i]));
	m->prof = 1;
fail:
	return rv;
}

extern "C" void model_cuda_free(model_cuda *m)
{
	if (!m)
		return;
	if (m->s)
		cudaStreamSynchronize(m->s);
	cudaFree(m->wmem);
	cudaFree(m->fmem);
	cudaFree(m->rope);
	cudaFree(m->lmem);
	cudaFree(m->l16);
	cudaFree(m->xa);
	cudaFree(m->dxa);
	cudaFree(m->pe);
	cudaFree(m->dp_sum);
	cudaFree(m->norms2);
	cudaFree(m->amem);
	cudaFree(m->smem);
	if (m->gexec)
		cudaGraphExecDestroy(m->gexec);
	cudaFree(m->ws);
	if (m->h)
		cublasDestroy(m->h);
	if (m->s)
		cudaStreamDestroy(m->s);
	free(m->mats);
	free(m->lidx);
	free(m->h_losses);
	free(m->h_correct);
	if (m->prof_ev)
		for (int i = 0; i < m->prof_cap; i++)
			if (m->prof_ev[i])
				cudaEventDestroy(m->prof_ev[i]);
	free(m->prof_ev);
	free(m->prof_ph);
	free(m);
}

extern "C" size_t model_cuda_mem_bytes(const model_cuda *m)
{
	return m ? m->mem : 0;
}

extern "C" int model_cuda_new(model_cuda **out, const model_cuda_config *c,
                              const model_cuda_weights *w, uint64_t seed)
{
	int rv = 0;
	model_cuda *m = NULL;
	carver cv;
	size_t tot = 0;
	float2 *rt = NULL;
	*out = NULL;
	if (c->hidden < 1 || c->layers < 1 || c->heads < 1 || c->kv_heads < 1 ||
	    c->heads % c->kv_heads || c->head_dim < 2 || c->head_dim % 2 || c->vocab < 1 ||
	    c->inter < 1 || c->max_batch < 1 || c->max_seq < 1 || !c->inv_freq) {
		fl_log(FL_LOG_ERROR, "cuda", "invalid model configuration");
		return FL_EINVAL;
	}
	if (!(m = (model_cuda *)calloc(1, sizeof *m)))
		return FL_ENOMEM;
	m->c = *c;
	m->C = c->hidden;
	m->I = c->inter;
	m->L = c->layers;
	m->Hq = c->heads;
	m->Hkv = c->kv_heads;
	m->D = c->head_dim;
	m->V = c->vocab;
	m->QD = m->Hq * m->D;
	m->KD = m->Hkv * m->D;
	m->Nmax = (long)c->max_batch * c->max_seq;
	m->opt.kind = 1;
	m->opt.b1 = 0.9f;
	m->opt.b2 = 0.999f;
	m->opt.eps = 1e-8f;
	/* a blocking stream: it orders with the legacy default stream that
	 * cudaMemcpy uses */
	CU_TRY(cudaStreamCreate(&m->s));
	CUBLAS_TRY(cublasCreate(&m->h));
	CUBLAS_TRY(cublasSetStream(m->h, m->s));
	if ((rv = dev_alloc(m, &m->ws, CUBLAS_WS_BYTES)) != 0)
		goto fail;
	CUBLAS_TRY(cublasSetWorkspace(m->h, m->ws, CUBLAS_WS_BYTES));
	{
		const char *g = getenv("FEDLORA_GRAPH");
		m->g_off = g && !strcmp(g, "0");
	}

	m->QKV = m->QD + 2 * m->KD;
	{
		const char *f = getenv("FEDLORA_FUSE");
		m->fuse = !(f && !strcmp(f, "0"));
	}

	/* parameters: stacked over layers as the CPU model stores them, except
	 * that one layer's q, k and v rows are adjacent ((QD + 2 KD, C) per
	 * layer) and so are its gate and up rows ((2I, C)): with fusion on one
	 * GEMM computes each group, and each matrix is still a contiguous (OUT,
	 * C) slice for the unfused path. The q/k/v biases are laid out the same
	 * way: one layer's bq, bk and bv are one (QD + 2 KD) vector, the bias of
	 * the merged projection's row (fl_k_qkv_rope_forward and
	 * fl_k_qkv_headnorm_forward take it whole; its gradient is one column
	 * sum over the merged gradient rows), and each is still a contiguous
	 * slice for the unfused path. */
	{
		size_t C = m->C, I = m->I, L = m->L, V = m->V, QD = m->QD, KD = m->KD;
		size_t D = m->D, bq = c->qkv_bias ? QD : 0, bk = c->qkv_bias ? KD : 0;
		size_t bo = c->o_bias ? C : 0, qn = c->qk_norm ? D : 0;
		size_t per[W_N] = {V * C, C,     QD * C, KD * C, KD * C, C * QD,
		                   C,     I * C, I * C,  C * I,  C,      c->tied ? 0 : V * C,
		                   bq,    bk,    bk,     bo,     qn,     qn};
		for (int i = 0; i < W_N; i++) {
			int layered = i != W_EMBED && i != W_NORM && i != W_HEAD;
			m->wnl[i] = layered ? (int)L : 1;
			m->wper[i] = per[i];
			m->wstr[i] = per[i];
			m->wsz[i] = per[i] * m->wnl[i];
		}
		m->wstr[W_Q] = m->wstr[W_K] = m->wstr[W_V] = (size_t)m->QKV * C;
		m->wstr[W_GATE] = m->wstr[W_UP] = 2 * I * C;
		if (c->qkv_bias)
			m->wstr[W_BQ] = m->wstr[W_BK] = m->wstr[W_BV] = (size_t)m->QKV;
	}
	{
		/* offsets: K, V and UP live inside the block of Q and GATE, BK
		 * and BV inside that of BQ */
		size_t off[W_N];
		for (int i = 0; i < W_N; i++) {
			if (i == W_K || i == W_V || i == W_UP || i == W_BK || i == W_BV)
				continue;
			off[i] = tot;
			tot += (m->wstr[i] * m->wnl[i] * (m->wsz[i] > 0) + 127) & ~(size_t)127;
		}
		off[W_K] = off[W_Q] + m->wper[W_Q];
		off[W_V] = off[W_K] + m->wper[W_K];
		off[W_UP] = off[W_GATE] + m->wper[W_GATE];
		off[W_BK] = off[W_BQ] + m->wper[W_BQ];
		off[W_BV] = off[W_BK] + m->wper[W_BK];
		if ((rv = dev_alloc(m, (void **)&m->wmem, tot * 2)) != 0)
			goto fail;
		m->wtot = tot;
		CU_TRY(cudaMemset(m->wmem, 0, tot * 2)); /* padding stays defined */
		if (c->full) {
			if ((rv = dev_alloc(m, (void **)&m->fmem, 4 * tot * sizeof(float))) != 0)
				goto fail;
			m->fm = m->fmem + 2 * tot;
			m->fv = m->fmem + 3 * tot;
			CU_TRY(cudaMemset(m->fmem, 0, 4 * tot * sizeof(float)));
		}
		for (int i = 0; i < W_N; i++) {
			m->w[i] = m->wmem + off[i];
			if (m->fmem) {
				m->fw[i] = m->fmem + off[i];
				m->fg[i] = m->fmem + m->wtot + off[i];
			}
		}
	}
	if (c->tied) {
		m->w[W_HEAD] = m->w[W_EMBED];
		m->fw[W_HEAD] = m->fw[W_EMBED];
		m->fg[W_HEAD] = m->fg[W_EMBED];
	}
	if (w) {
		const float *src[W_N] = {w->embed, w->ln1,   w->wq,  w->wk,    w->wv,    w->wo,
		                         w->ln2,   w->wgate, w->wup, w->wdown, w->norm,  w->head,
		                         w->bq,    w->bk,    w->bv,  w->bo,    w->qnorm, w->knorm};
		for (int i = 0; i < W_N; i++) {
			if (m->wsz[i] == 0)
				continue;
			if (!src[i]) {
				fl_log(FL_LOG_ERROR, "cuda", "weight tensor %d missing", i);
				rv = FL_EINVAL;
				goto fail;
			}
			for (int l = 0; l < m->wnl[i]; l++) {
				const float *sl = src[i] + (size_t)l * m->wper[i];
				if ((rv = upload_bf16(m, m->w[i] + (size_t)l * m->wstr[i], sl,
				                      m->wper[i])) != 0)
					goto fail;
				if (m->fmem)
					CU_TRY(cudaMemcpy(m->fw[i] + (size_t)l * m->wstr[i], sl,
					                  m->wper[i] * sizeof(float),
					                  cudaMemcpyHostToDevice));
			}
		}
	} else {
		for (int i = 0; i < W_N; i++) {
			int norm =
			    i == W_LN1 || i == W_LN2 || i == W_NORM || i == W_QN || i == W_KN;
			int bias = i >= W_BQ && i <= W_BO; /* zero, as model_llama_new */
			uint64_t sd = seed * 0x9E3779B97F4A7C15ull + i;
			if (!m->wsz[i])
				continue;
			if (m->wstr[i] == m->wper[i]) { /* contiguous: one call */
				if ((rv = fl_k_init_bf16(m->w[i], m->wsz[i], sd,
				                         norm || bias ? 0.f : 0.02f,
				                         bias ? 0.f : 1.f, m->s)) != 0)
					goto fail;
				continue;
			}
			/* per layer: the merged rows (q/k/v, gate/up) and biases */
			for (int l = 0; l < m->wnl[i]; l++)
				if ((rv = fl_k_init_bf16(m->w[i] + (size_t)l * m->wstr[i],
				                         m->wper[i], sd * 1000003u + (uint64_t)l,
				                         norm || bias ? 0.f : 0.02f,
				                         bias ? 0.f : 1.f, m->s)) != 0)
					goto fail;
		}
		if (m->fmem && (rv = fl_k_bf16_to_f32(m->fmem, m->wmem, m->wtot, m->s)) != 0)
			goto fail;
	}

	/* rotary table */
	{
		size_t n = (size_t)c->max_seq * (m->D / 2);
		if (!(rt = (float2 *)malloc(n * sizeof *rt))) {
			rv = FL_ENOMEM;
			goto fail;
		}
		fl_rope_table(rt, c->max_seq, m->D, c->inv_freq);
		m->c.inv_freq = NULL; /* borrowed for this table only */
		if ((rv = dev_alloc(m, (void **)&m->rope, n * sizeof *rt)) != 0)
			goto fail;
		CU_TRY(cudaMemcpy(m->rope, rt, n * sizeof *rt, cudaMemcpyHostToDevice));
	}

	/* attention implementation, then activations and scratch */
	if ((rv = choose_attention(m)) != 0)
		goto fail;
	{
		size_t per = (size_t)m->Hq * c->max_seq * c->max_seq * 4;
		long bc = ATTN_SCRATCH_BYTES / (long)(per ? per : 1);
		m->att.bc = (int)(bc < 1 ? 1 : bc > c->max_batch ? c->max_batch : bc);
		long rc = LOGITS_CHUNK_BYTES / ((long)m->V * 4);
		if (rc >= 256)
			rc -= rc % 128; /* whole GEMM tiles */
		m->rows_chunk = rc < 1 ? 1 : rc > m->Nmax ? m->Nmax : rc;
	}
	cv.base = NULL;
	cv.off = 0;
	layout_acts(m, &cv);
	if ((rv = dev_alloc(m, &m->amem, cv.off)) != 0)
		goto fail;
	cv.base = (char *)m->amem;
	cv.off = 0;
	layout_acts(m, &cv);
	cv.base = NULL;
	cv.off = 0;
	layout_scratch(m, &cv);
	if ((rv = dev_alloc(m, &m->smem, cv.off)) != 0)
		goto fail;
	cv.base = (char *)m->smem;
	cv.off = 0;
	layout_scratch(m, &cv);
	m->h_losses = (float *)malloc(m->Nmax * sizeof(float));
	m->h_correct = (int *)malloc(m->Nmax * sizeof(int));
	if (!m->h_losses || !m->h_correct) {
		rv = FL_ENOMEM;
		goto fail;
	}
	if ((rv = prof_init(m)) != 0)
		goto fail;
	CU_TRY(cudaStreamSynchronize(m->s));
	free(rt);
	*out = m;
	return 0;
fail:
	free(rt);
	model_cuda_free(m);
	return rv;
}

/* Copies the f32 tensor `which` laid out like wmem (masters or gradients)
 * at dev to host as the CPU model stores it (its slices packed). */
static int copy_out_f32(model_cuda *m, float *host, const float *dev, int which)
{
	int rv = 0;
	CU_TRY(cudaStreamSynchronize(m->s));
	for (int l = 0; l < m->wnl[which]; l++)
		CU_TRY(cudaMemcpy(host + (size_t)l * m->wper[which],
		                  dev + (size_t)l * m->wstr[which], m->wper[which] * sizeof(float),
		                  cudaMemcpyDeviceToHost));
fail:
	return rv;
}

extern "C" int model_cuda_get_weight(model_cuda *m, int which, float *host, size_t n)
{
	int rv = 0;
	uint16_t *tmp = NULL;
	if (which < 0 || which >= W_N)
		return FL_EINVAL;
	if (which == W_HEAD && m->c.tied)
		which = W_EMBED;
	if (n != m->wsz[which])
		return FL_EINVAL;
	if (m->fmem) /* the exact f32 masters */
		return copy_out_f32(m, host, m->fw[which], which);
	if (!(tmp = (uint16_t *)malloc(n * 2)))
		return FL_ENOMEM;
	for (int l = 0; l < m->wnl[which]; l++)
		CU_TRY(cudaMemcpy(tmp + (size_t)l * m->wper[which],
		                  m->w[which] + (size_t)l * m->wstr[which], m->wper[which] * 2,
		                  cudaMemcpyDeviceToHost));
	for (size_t i = 0; i < n; i++)
		host[i] = fl_bf16_bits_to_f32(tmp[i]);
fail:
	free(tmp);
	return rv;
}

/* ---- LoRA state ------------------------------------------------------------ */

static size_t ntrain(const model_cuda *m)
{
	return m->train_a ? m->n_a + m->n_b : m->n_b;
}

extern "C" size_t model_cuda_trainable(const model_cuda *m)
{
	return m->nlora ? ntrain(m) : 0;
}

static void mat_dims(const model_cuda *m, int module, int *in, int *out)
{
	switch (module) {
	case MODEL_CUDA_Q:
		*in = m->C;
		*out = m->QD;
		break;
	case MODEL_CUDA_K:
	case MODEL_CUDA_V:
		*in = m->C;
		*out = m->KD;
		break;
	case MODEL_CUDA_O:
		*in = m->QD;
		*out = m->C;
		break;
	case MODEL_CUDA_GATE:
	case MODEL_CUDA_UP:
		*in = m->C;
		*out = m->I;
		break;
	default:
		*in = m->I;
		*out = m->C;
		break;
	}
}

extern "C" int model_cuda_lora_attach(model_cuda *m, int n, const model_cuda_lora_mat *mats, int r,
                                      float scale, size_t n_a, size_t n_b, const float *params,
                                      int train_a)
{
	int rv = 0;
	size_t P = n_a + n_b;
	if (n < 1 || r < 1 || !mats || !params)
		return FL_EINVAL;
	/* check every matrix against the model and the flat layout */
	int *lidx = (int *)malloc(sizeof(int) * m->L * MODEL_CUDA_NMODULE);
	if (!lidx)
		return FL_ENOMEM;
	for (int i = 0; i < m->L * MODEL_CUDA_NMODULE; i++)
		lidx[i] = -1;
	for (int i = 0; i < n; i++) {
		int in, out;
		const model_cuda_lora_mat *x = &mats[i];
		if (x->layer < 0 || x->layer >= m->L || x->module < 0 ||
		    x->module >= MODEL_CUDA_NMODULE ||
		    lidx[x->layer * MODEL_CUDA_NMODULE + x->module] >= 0) {
			free(lidx);
			fl_log(FL_LOG_ERROR, "cuda", "LoRA matrix %d: bad layer/module", i);
			return FL_ESHAPE;
		}
		mat_dims(m, x->module, &in, &out);
		if (x->a_off + (size_t)r * in > n_a || x->b_off < n_a ||
		    x->b_off + (size_t)out * r > P) {
			free(lidx);
			fl_log(FL_LOG_ERROR, "cuda", "LoRA matrix %d: offsets outside the adapter",
			       i);
			return FL_ESHAPE;
		}
		lidx[x->layer * MODEL_CUDA_NMODULE + x->module] = i;
	}
	/* release a previous attachment (and the graph that holds its pointers) */
	cudaStreamSynchronize(m->s);
	if (m->gexec)
		cudaGraphExecDestroy(m->gexec);
	m->gexec = NULL;
	m->g_seen = 0;
	m->mem -= m->lora_mem;
	m->lora_mem = 0;
	size_t mem0 = m->mem;
	cudaFree(m->lmem);
	cudaFree(m->l16);
	cudaFree(m->xa);
	cudaFree(m->dxa);
	cudaFree(m->pe);
	cudaFree(m->dp_sum);
	cudaFree(m->norms2);
	m->lmem = NULL;
	m->l16 = NULL;
	m->xa = m->dxa = NULL;
	m->pe = m->dp_sum = m->norms2 = NULL;
	free(m->mats);
	free(m->lidx);
	m->lidx = lidx;
	m->nlora = 0;
	if (!(m->mats = (model_cuda_lora_mat *)malloc(n * sizeof *mats))) {
		rv = FL_ENOMEM;
		goto fail;
	}
	memcpy(m->mats, mats, n * sizeof *mats);
	m->r = r;
	m->scale = scale;
	m->n_a = n_a;
	m->n_b = n_b;
	m->train_a = train_a;
	if ((rv = dev_alloc(m, (void **)&m->lmem, 4 * P * sizeof(float))) != 0)
		goto fail;
	m->lp = m->lmem;
	m->lg = m->lp + P;
	m->lm = m->lg + P;
	m->lv = m->lm + P;
	if ((rv = dev_alloc(m, (void **)&m->l16, P * 2)) != 0 ||
	    (rv = dev_alloc(m, (void **)&m->xa, (size_t)n * m->Nmax * r * 2)) != 0 ||
	    (rv = dev_alloc(m, (void **)&m->dxa, (size_t)m->Nmax * 3 * r * 2)) != 0)
		goto fail;
	m->nlora = n;
	m->lora_mem = m->mem - mem0;
	CU_TRY(cudaMemsetAsync(m->lg, 0, 3 * P * sizeof(float), m->s));
	m->t = 0;
	rv = model_cuda_lora_set(m, params);
	return rv;
fail:
	m->lora_mem = m->mem - mem0;
	m->nlora = 0;
	return rv;
}

extern "C" int model_cuda_lora_set(model_cuda *m, const float *params)
{
	int rv = 0;
	size_t P = m->n_a + m->n_b;
	if (!m->nlora)
		return FL_ESTATE;
	CU_TRY(cudaMemcpyAsync(m->lp, params, P * sizeof(float), cudaMemcpyHostToDevice, m->s));
	if ((rv = fl_k_f32_to_bf16(m->l16, m->lp, P, m->s)) != 0)
		goto fail;
	CU_TRY(cudaStreamSynchronize(m->s));
fail:
	return rv;
}

extern "C" int model_cuda_lora_get(model_cuda *m, float *params)
{
	int rv = 0;
	if (!m->nlora)
		return FL_ESTATE;
	CU_TRY(cudaMemcpyAsync(params, m->lp, (m->n_a + m->n_b) * sizeof(float),
	                       cudaMemcpyDeviceToHost, m->s));
	CU_TRY(cudaStreamSynchronize(m->s));
fail:
	return rv;
}

extern "C" int model_cuda_optim_set(model_cuda *m, const model_cuda_optim *o)
{
	m->opt = *o;
	return model_cuda_optim_reset(m);
}

extern "C" int model_cuda_optim_reset(model_cuda *m)
{
	int rv = 0;
	m->t = 0;
	if (m->nlora)
		CU_TRY(cudaMemsetAsync(m->lm, 0, 2 * (m->n_a + m->n_b) * sizeof(float), m->s));
	if (m->fmem)
		CU_TRY(cudaMemsetAsync(m->fm, 0, 2 * m->wtot * sizeof(float), m->s));
fail:
	return rv;
}

/* ---- forward / backward ------------------------------------------------- */

static bf16 *A16(const model_cuda *m, int i)
{
	return m->l16 + m->mats[i].a_off;
}
static bf16 *B16(const model_cuda *m, int i)
{
	return m->l16 + m->mats[i].b_off;
}
static int lora_of(const model_cuda *m, int l, int module)
{
	return m->nlora ? m->lidx[l * MODEL_CUDA_NMODULE + module] : -1;
}

static int module_weight(int module)
{
	static const int map[MODEL_CUDA_NMODULE] = {W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN};
	return map[module];
}

/* Bias tensor of a module (W_BQ..W_BO), or -1 when the model has none there. */
static int module_bias(const model_cuda *m, int module)
{
	static const int map[MODEL_CUDA_NMODULE] = {W_BQ, W_BK, W_BV, W_BO, -1, -1, -1};
	int b = map[module];
	return b >= 0 && m->wsz[b] ? b : -1;
}

/* Layer l's slice of the per-layer tensor i (bf16, and its f32 gradient). */
static bf16 *wl(const model_cuda *m, int i, int l)
{
	return m->w[i] + (size_t)l * m->wstr[i];
}
static float *gl(const model_cuda *m, int i, int l)
{
	return m->fg[i] + (size_t)l * m->wstr[i];
}

/* LoRA side path of module `module` in layer l (if adapted) added into out
 * (N, OUT) whose rows are ldo apart. */
static int lora_fwd(model_cuda *m, int l, int module, const bf16 *x, void *out, cudaDataType ot,
                    int ldo, int N)
{
	int rv = 0, in, o, pi, i = lora_of(m, l, module);
	if (i < 0)
		return 0;
	mat_dims(m, module, &in, &o);
	pi = prof_begin(m, PH_LORA_F);
	rv = fl_lora_forward_ld(m->h, x, in, out, ot, o, ldo, m->xa + (size_t)i * m->Nmax * m->r,
	                        A16(m, i), B16(m, i), N, m->r, m->scale);
	prof_end(m, pi);
	return rv;
}

/* LoRA backward of module `module` in layer l (if adapted): gradients into
 * m->lg, or per example into pe rows (Bm examples of T); dx (N,IN) += the
 * side path's input gradient (NULL: not needed). dout's rows are ldd apart.
 * In full mode the adapter is applied, not trained: only dx. With dxa_to,
 * dx is left to the caller: dxa = scale * dout B goes to dxa_to (rows
 * lddxa apart), for group_bwd's one input-gradient GEMM. */
static int lora_bwd(model_cuda *m, int l, int module, const bf16 *x, const bf16 *dout, int ldd,
                    void *dx, cudaDataType dt, int N, int Bm, int T, float *pe, bf16 *dxa_to,
                    int lddxa)
{
	int rv = 0, in, o, pi, i = lora_of(m, l, module);
	float *dA = NULL, *dB = NULL;
	size_t stride = 0;
	int nex = 0;
	if (i < 0 || (m->fmem && !dx && !dxa_to))
		return 0;
	mat_dims(m, module, &in, &o);
	const model_cuda_lora_mat *mt = &m->mats[i];
	if (m->fmem) {
		/* dA, dB stay NULL */
	} else if (pe) {
		stride = ntrain(m);
		nex = Bm;
		dA = m->train_a ? pe + mt->a_off : NULL;
		dB = pe + (m->train_a ? mt->b_off : mt->b_off - m->n_a);
	} else {
		dA = m->train_a ? m->lg + mt->a_off : NULL;
		dB = m->lg + mt->b_off;
	}
	pi = prof_begin(m, PH_LORA_B);
	if (dxa_to)
		rv = fl_lora_backward_dxa(m->h, dA, dB, dout, ldd, x,
		                          m->xa + (size_t)i * m->Nmax * m->r, B16(m, i), dxa_to,
		                          lddxa, N, in, o, m->r, m->scale, nex, T, stride);
	else
		rv = fl_lora_backward_ld(m->h, dx, dt, dA, dB, dout, ldd, x,
		                         m->xa + (size_t)i * m->Nmax * m->r, A16(m, i), B16(m, i),
		                         m->dxa, N, in, o, m->r, m->scale, nex, T, stride);
	prof_end(m, pi);
	return rv;
}

/* A merged projection (fusion on): the nm modules mods[] of layer l read
 * the same input x (N,IN) and their weights are adjacent rows of one block
 * (q|k|v, gate|up), so one GEMM computes out (N, width) = x W^T with every
 * module's columns side by side (width = the sum of their OUTs), then each
 * adapted module's LoRA path adds into its columns. */
static int group_fwd(model_cuda *m, int l, const int *mods, int nm, const bf16 *x, bf16 *out,
                     int width, int N)
{
	int rv = 0, in, o, col = 0;
	int pi = prof_begin(m, PH_GEMM_F);
	mat_dims(m, mods[0], &in, &o);
	GEMM_TRY(GEMM(m->h, 0, 1, N, width, in, 1.f, x, in, wl(m, module_weight(mods[0]), l), in,
	              0.f, out, CUDA_R_16BF, width));
	prof_end(m, pi);
	for (int k = 0; k < nm; k++) {
		mat_dims(m, mods[k], &in, &o);
		if ((rv = lora_fwd(m, l, mods[k], x, out + col, CUDA_R_16BF, width, N)) != 0)
			goto fail;
		col += o;
	}
fail:
	return rv;
}

/* Its backward from dout (N, width): dx (N,IN) f32 = dout W in one GEMM
 * (dx NULL: not needed), the block's weight gradient in full mode, then
 * each module's LoRA gradients and input-gradient terms (added into dx).
 * Two or more adapted modules whose A's lie one after another in the
 * adapter (as model_lora_adapter_new lays them out) add their terms in one
 * GEMM, dx += [dxa_1 .. dxa_n] (N, n r) [A_1; ..; A_n] (n r, IN): one pass
 * over the f32 dx instead of n. */
static int group_bwd(model_cuda *m, int l, const int *mods, int nm, const bf16 *x, const bf16 *dout,
                     int width, float *dx, int N, int Bm, int T, float *pe)
{
	int rv = 0, in, o, col = 0, wi = module_weight(mods[0]);
	int na = 0, first = -1, adjacent = 1, merged, pi;
	size_t next = 0;
	for (int k = 0; k < nm; k++) {
		int i = lora_of(m, l, mods[k]);
		if (i < 0)
			continue;
		mat_dims(m, mods[k], &in, &o);
		if (na && m->mats[i].a_off != next)
			adjacent = 0;
		if (!na)
			first = i;
		next = m->mats[i].a_off + (size_t)m->r * in;
		na++;
	}
	merged = dx && adjacent && na > 1;
	pi = prof_begin(m, PH_GEMM_B);
	mat_dims(m, mods[0], &in, &o);
	if (dx)
		GEMM_TRY(GEMM(m->h, 0, 0, N, in, width, 1.f, dout, width, wl(m, wi, l), in, 0.f, dx,
		              CUDA_R_32F, in));
	prof_end(m, pi);
	if (m->fmem) { /* dW (width, IN) += dout^T x over the whole block */
		GEMM_TRY(GEMM(m->h, 1, 0, width, in, N, 1.f, dout, width, x, in, 1.f, gl(m, wi, l),
		              CUDA_R_32F, in));
		/* q/k/v biases: one (width) vector per layer, db += dout's column sums */
		int b = module_bias(m, mods[0]);
		if (b >= 0 && (rv = fl_k_bias_backward(gl(m, b, l), dout, N, width, m->s)) != 0)
			goto fail;
	}
	for (int k = 0, j = 0; k < nm; k++) {
		bf16 *dxa = NULL;
		if (merged && lora_of(m, l, mods[k]) >= 0)
			dxa = m->dxa + (size_t)m->r * j++;
		mat_dims(m, mods[k], &in, &o);
		if ((rv = lora_bwd(m, l, mods[k], x, dout + col, width, dx, CUDA_R_32F, N, Bm, T,
		                   pe, dxa, na * m->r)) != 0)
			goto fail;
		col += o;
	}
	if (merged) {
		pi = prof_begin(m, PH_LORA_B);
		GEMM_TRY(GEMM(m->h, 0, 0, N, in, na * m->r, 1.f, m->dxa, na * m->r, A16(m, first),
		              in, 1.f, dx, CUDA_R_32F, in));
		prof_end(m, pi);
	}
fail:
	return rv;
}

static const int MODS_QKV[3] = {MODEL_CUDA_Q, MODEL_CUDA_K, MODEL_CUDA_V};
static const int MODS_GU[2] = {MODEL_CUDA_GATE, MODEL_CUDA_UP};

/* Linear layer out (N,OUT) = x W^T (+ beta out), plus LoRA if adapted. */
static int linear_fwd(model_cuda *m, int l, int module, const bf16 *x, const bf16 *W, void *out,
                      cudaDataType ot, float beta, int N)
{
	int rv, in, o;
	int pi = prof_begin(m, PH_GEMM_F);
	mat_dims(m, module, &in, &o);
	GEMM_TRY(GEMM(m->h, 0, 1, N, o, in, 1.f, x, in, W, in, beta, out, ot, o));
	{ /* the bias belongs to the base layer (PEFT: W x + b + LoRA) */
		int b = module_bias(m, module);
		if (b >= 0 && (rv = fl_k_bias_forward(out, ot, wl(m, b, l), N, o, m->s)) != 0)
			goto fail;
	}
	prof_end(m, pi);
	rv = lora_fwd(m, l, module, x, out, ot, o, N);
fail:
	return rv;
}

/* Backward of a linear layer: dx (N,IN) (+)= dout W (beta), then LoRA grads.
 * pe != NULL: per-example LoRA gradients into pe rows (Bm examples of T). */
static int linear_bwd(model_cuda *m, int l, int module, const bf16 *x, const bf16 *W,
                      const bf16 *dout, void *dx, cudaDataType dt, float beta, int N, int Bm, int T,
                      float *pe)
{
	int rv = 0, in, o;
	int pi = prof_begin(m, PH_GEMM_B);
	mat_dims(m, module, &in, &o);
	if (dx) /* NULL: nothing below needs the input gradient */
		GEMM_TRY(GEMM(m->h, 0, 0, N, in, o, 1.f, dout, o, W, in, beta, dx, dt, in));
	prof_end(m, pi);
	if (m->fmem) { /* full mode: dW (OUT,IN) += dout^T x; an adapter is applied, not trained */
		GEMM_TRY(GEMM(m->h, 1, 0, o, in, N, 1.f, dout, o, x, in, 1.f,
		              gl(m, module_weight(module), l), CUDA_R_32F, in));
		int b = module_bias(m, module); /* the bias passes dout to dx unchanged */
		if (b >= 0 && (rv = fl_k_bias_backward(gl(m, b, l), dout, N, o, m->s)) != 0)
			goto fail;
	}
	rv = lora_bwd(m, l, module, x, dout, o, dx, dt, N, Bm, T, pe, NULL, 0);
fail:
	return rv;
}

/* The final norm's forward in the unfused path (fl_k_rmsnorm_forward_copy's
 * signature, copy unused). */
static int rmsnorm_forward_nocopy(bf16 *out, float *rstd, float *copy, const float *x,
                                  const bf16 *w, int N, int C, float eps, cudaStream_t s)
{
	(void)copy;
	return fl_k_rmsnorm_forward(out, rstd, x, w, N, C, eps, s);
}

/* RMSNorm backward through the fused path's kernels or the unfused ones. */
static int rmsnorm_bwd(model_cuda *m, float *dx, bf16 *dx16, float *dw, const float *dout,
                       const float *x, const bf16 *w, const float *rstd, int N, int C,
                       cudaStream_t s)
{
	return (m->fuse ? fl_k_rmsnorm_backward_fused : fl_k_rmsnorm_backward)(dx, dx16, dw, dout,
	                                                                       x, w, rstd, N, C, s);
}

/* Backward through layer l's q and k norms (Qwen3), in place: dqr / dkr
 * hold the gradients of the normed q and k (B,T,H,D) and receive those of
 * the projections; the norm weights get theirs in full mode. */
static int qk_norm_backward(model_cuda *m, int l, size_t sl, int N)
{
	int rv;
	size_t Nmax = m->Nmax;
	if ((rv = fl_k_headnorm_backward(
	         m->dqr, m->fmem ? gl(m, W_QN, l) : NULL, m->dqr, m->qpre + sl * Nmax * m->QD,
	         wl(m, W_QN, l), m->rstdq + sl * Nmax * m->Hq, (long)N * m->Hq, m->D, m->s)) != 0)
		return rv;
	return fl_k_headnorm_backward(m->dkr, m->fmem ? gl(m, W_KN, l) : NULL, m->dkr,
	                              m->kpre + sl * Nmax * m->KD, wl(m, W_KN, l),
	                              m->rstdk + sl * Nmax * m->Hkv, (long)N * m->Hkv, m->D, m->s);
}

/* The same with fusion on: in place on the merged gradient rows m->dqr (N,
 * QKV) that fl_k_qkv_rope_backward wrote. */
static int qk_norm_backward_rows(model_cuda *m, int l, size_t sl, int N)
{
	size_t Nmax = m->Nmax;
	return fl_k_qkv_headnorm_backward(
	    m->dqr, m->QKV, m->fmem ? gl(m, W_QN, l) : NULL, m->fmem ? gl(m, W_KN, l) : NULL,
	    m->qpre + sl * Nmax * m->QD, m->kpre + sl * Nmax * m->KD, wl(m, W_QN, l),
	    wl(m, W_KN, l), m->rstdq + sl * Nmax * m->Hq, m->rstdk + sl * Nmax * m->Hkv, N, m->Hq,
	    m->Hkv, m->D, m->s);
}

/* Forward of layer l for Bm sequences of T tokens: reads the residual
 * m->res[l], writes res[l+1] and the layer's activations into slot sl (l, or
 * 0 under gradient checkpointing, where backward_body calls it again to
 * recompute the layer with the same kernels on the same input).
 *
 * With fusion on (m->fuse) each RMSNorm also writes the copy of the residual
 * that the block's output GEMM then adds into (no device-to-device copy), q/k/v
 * and gate/up are one GEMM each (group_fwd), the q/k/v split, bias, rotation
 * and head-major layout are one kernel (Qwen3's q/k norm, with the bias,
 * one kernel before it on the merged rows), and SwiGLU reads the merged
 * gate|up rows.
 * Without it (FEDLORA_FUSE=0) every matrix has its own GEMM, rotary runs
 * per tensor and the residual is copied before each block. The same values
 * either way up to the GEMMs' summation order. */
static int layer_fwd(model_cuda *m, int l, size_t sl, int Bm, int T)
{
	int rv = 0;
	int pa = -1; /* FEDLORA_PROFILE interval */
	int N = Bm * T, C = m->C, I = m->I;
	size_t NC = (size_t)N * C, NI = (size_t)N * I, Nmax = m->Nmax;
	cudaStream_t s = m->s;
	bf16 *qraw = m->raw, *kraw = m->raw + (size_t)N * m->QD, *vraw = kraw + (size_t)N * m->KD;
	float *x = m->res + l * Nmax * C, *xm = m->resmid + sl * Nmax * C;
	float *xo = m->res + (l + 1) * Nmax * C;
	bf16 *h1 = m->h1 + sl * Nmax * C, *h2 = m->h2 + sl * Nmax * C;
	bf16 *q = m->q + sl * Nmax * m->QD, *k = m->k + sl * Nmax * m->KD;
	bf16 *v = m->v + sl * Nmax * m->KD, *ao = m->atto + sl * Nmax * m->QD;
	/* gate|up rows (N, 2I) with fusion, else gate (N,I) then up (N,I) */
	bf16 *g = m->gate + sl * Nmax * 2 * I, *u = g + Nmax * I;
	bf16 *sw = m->swi + sl * Nmax * I;
	/* Qwen3: the projections go to qpre / kpre, their per-head norms to qraw
	 * / kraw (unfused); with fusion the norm runs in place on the merged rows
	 * and saves the projections to qpre / kpre itself */
	int qn = m->c.qk_norm;
	/* the layer's bq|bk|bv (one merged-row vector), or NULL */
	const bf16 *bqkv = m->c.qkv_bias ? wl(m, W_BQ, l) : NULL;
	bf16 *qp = qn ? m->qpre + sl * Nmax * m->QD : qraw,
	     *kp = qn ? m->kpre + sl * Nmax * m->KD : kraw;
	// attention block: xm = x + o_proj(attention(rope(q(h1)), rope(k(h1)), v(h1)))
	if (m->fuse) {
		if ((rv = fl_k_rmsnorm_forward_copy(h1, m->rstd1 + sl * Nmax, xm, x,
		                                    wl(m, W_LN1, l), N, C, m->c.eps, s)) != 0 ||
		    (rv = group_fwd(m, l, MODS_QKV, 3, h1, m->raw, m->QKV, N)) != 0 ||
		    (qn && (rv = fl_k_qkv_headnorm_forward(
		                m->raw, m->QKV, bqkv, qp, kp, m->rstdq + sl * Nmax * m->Hq,
		                m->rstdk + sl * Nmax * m->Hkv, wl(m, W_QN, l), wl(m, W_KN, l), N,
		                m->Hq, m->Hkv, m->D, m->c.eps, s)) != 0) ||
		    (rv = fl_k_qkv_rope_forward(q, k, v, m->raw, m->QKV, qn ? NULL : bqkv, m->rope,
		                                Bm, T, m->Hq, m->Hkv, m->D, s)) != 0)
			goto fail;
	} else if ((rv = fl_k_rmsnorm_forward(h1, m->rstd1 + sl * Nmax, x, wl(m, W_LN1, l), N, C,
	                                      m->c.eps, s)) != 0 ||
	           (rv = linear_fwd(m, l, MODEL_CUDA_Q, h1, wl(m, W_Q, l), qp, CUDA_R_16BF, 0.f,
	                            N)) != 0 ||
	           (rv = linear_fwd(m, l, MODEL_CUDA_K, h1, wl(m, W_K, l), kp, CUDA_R_16BF, 0.f,
	                            N)) != 0 ||
	           (qn && (rv = fl_k_headnorm_forward(qraw, m->rstdq + sl * Nmax * m->Hq, qp,
	                                              wl(m, W_QN, l), (long)N * m->Hq, m->D,
	                                              m->c.eps, s)) != 0) ||
	           (qn && (rv = fl_k_headnorm_forward(kraw, m->rstdk + sl * Nmax * m->Hkv, kp,
	                                              wl(m, W_KN, l), (long)N * m->Hkv, m->D,
	                                              m->c.eps, s)) != 0) ||
	           (rv = linear_fwd(m, l, MODEL_CUDA_V, h1, wl(m, W_V, l), vraw, CUDA_R_16BF, 0.f,
	                            N)) != 0 ||
	           (rv = fl_k_rope_permute_forward(q, qraw, m->rope, Bm, T, m->Hq, m->D, 1, s)) !=
	               0 ||
	           (rv = fl_k_rope_permute_forward(k, kraw, m->rope, Bm, T, m->Hkv, m->D, 1, s)) !=
	               0 ||
	           (rv = fl_k_rope_permute_forward(v, vraw, m->rope, Bm, T, m->Hkv, m->D, 0, s)) !=
	               0) {
		goto fail;
	}
	pa = prof_begin(m, PH_ATT_F);
	if ((rv = m->flash ? fl_flash_forward(ao, m->lse + sl * Nmax * m->Hq, q, k, v, Bm, T, m->Hq,
	                                      m->Hkv, m->D, s)
	                   : fl_attention_forward(m->h, s, m->operm, q, k, v, Bm, T, m->Hq, m->Hkv,
	                                          m->D, &m->att)) != 0 ||
	    (!m->flash && (rv = fl_k_bhtd_to_bthd(ao, m->operm, Bm, T, m->Hq, m->D, s)) != 0))
		goto fail;
	prof_end(m, pa);
	if (!m->fuse)
		CU_TRY(cudaMemcpyAsync(xm, x, NC * 4, cudaMemcpyDeviceToDevice, s));
	if ((rv = linear_fwd(m, l, MODEL_CUDA_O, ao, wl(m, W_O, l), xm, CUDA_R_32F, 1.f, N)) != 0)
		goto fail;
	// MLP block: xo = xm + down(swiglu(gate(h2), up(h2)))
	if (m->fuse) {
		if ((rv = fl_k_rmsnorm_forward_copy(h2, m->rstd2 + sl * Nmax, xo, xm,
		                                    wl(m, W_LN2, l), N, C, m->c.eps, s)) != 0 ||
		    (rv = group_fwd(m, l, MODS_GU, 2, h2, g, 2 * I, N)) != 0 ||
		    (rv = fl_k_swiglu_gu_forward(sw, g, N, I, s)) != 0)
			goto fail;
	} else {
		if ((rv = fl_k_rmsnorm_forward(h2, m->rstd2 + sl * Nmax, xm, wl(m, W_LN2, l), N, C,
		                               m->c.eps, s)) != 0 ||
		    (rv = linear_fwd(m, l, MODEL_CUDA_GATE, h2, wl(m, W_GATE, l), g, CUDA_R_16BF,
		                     0.f, N)) != 0 ||
		    (rv = linear_fwd(m, l, MODEL_CUDA_UP, h2, wl(m, W_UP, l), u, CUDA_R_16BF, 0.f,
		                     N)) != 0 ||
		    (rv = fl_k_swiglu_forward(sw, g, u, (long)NI, s)) != 0)
			goto fail;
		CU_TRY(cudaMemcpyAsync(xo, xm, NC * 4, cudaMemcpyDeviceToDevice, s));
	}
	if ((rv = linear_fwd(m, l, MODEL_CUDA_DOWN, sw, wl(m, W_DOWN, l), xo, CUDA_R_32F, 1.f,
	                     N)) != 0)
		goto fail;
fail:
	return rv;
}

/* Forward of Bm sequences of T tokens already in m->tok. Leaves the final
 * normalized hidden states in m->hf. */
static int forward_body(model_cuda *m, int Bm, int T)
{
	int rv = 0;
	int N = Bm * T, C = m->C;
	size_t Nmax = m->Nmax;
	if ((rv = fl_k_embed_forward(m->res, m->tok, m->w[W_EMBED], N, C, m->s)) != 0)
		goto fail;
	for (int l = 0; l < m->L; l++)
		if ((rv = layer_fwd(m, l, m->c.grad_checkpoint ? 0 : (size_t)l, Bm, T)) != 0)
			goto fail;
	rv = (m->fuse ? fl_k_rmsnorm_forward_copy : rmsnorm_forward_nocopy)(
	    m->hf, m->rstdf, NULL, m->res + (size_t)m->L * Nmax * C, m->w[W_NORM], N, C, m->c.eps,
	    m->s);
fail:
	return rv;
}

/* LM head + cross-entropy over chunks of rows. With targets (m->tgt), losses
 * and correct flags go to m->losses / m->correct; with `grad`, dL/dhf (f32)
 * goes to m->dln, each row scaled by row_scale (per-row) or dscale. With
 * logits_host, the f32 logits are copied out. LoRA training with fusion on
 * writes the logits in bf16 into the f32 logits' buffer (twice the rows a
 * chunk) and the cross-entropy overwrites them with their gradient (half
 * the bytes written and read twice; transformers' bf16 models compute bf16
 * logits too); evaluation, logits and full-parameter training stay f32. */
static int head(model_cuda *m, int N, int targets, int grad, const float *row_scale, float dscale,
                float *logits_host)
{
	int rv = 0;
	int C = m->C, V = m->V;
	/* bf16 logits, gradient in place: LoRA training only. Pretraining (full
	 * mode) trains the head and keeps f32 logits: its test curve already
	 * sits near the tolerance (gpu_full_training, tied: 1.18% off the CPU
	 * at step 3 with f32 logits, 1.22% with bf16; 1% + 0.02 allowed) */
	int lb = grad && targets && m->fuse && !m->fmem;
	/* the bf16 logits take the f32 buffer's bytes: twice its rows a chunk */
	long chunk = lb ? 2 * m->rows_chunk : m->rows_chunk;
	bf16 *dl = lb ? (bf16 *)m->logits : m->dlogits; /* where the gradient goes */
	for (long r0 = 0; r0 < N; r0 += chunk) {
		int rows = (int)(N - r0 < chunk ? N - r0 : chunk);
		int pi = prof_begin(m, PH_HGEMM);
		GEMM_TRY(GEMM(m->h, 0, 1, rows, V, C, 1.f, m->hf + r0 * C, C, m->w[W_HEAD], C, 0.f,
		              lb ? (void *)dl : (void *)m->logits, lb ? CUDA_R_16BF : CUDA_R_32F,
		              V));
		prof_end(m, pi);
		if (logits_host)
			CU_TRY(cudaMemcpyAsync(logits_host + r0 * V, m->logits,
			                       (size_t)rows * V * 4, cudaMemcpyDeviceToHost, m->s));
		if (!targets)
			continue;
		pi = prof_begin(m, PH_CE);
		if (lb)
			rv = fl_k_crossentropy_bf16(dl, m->losses + r0, m->correct + r0, dl,
			                            m->tgt + r0, row_scale ? row_scale + r0 : NULL,
			                            dscale, rows, V, m->s);
		else
			rv = fl_k_crossentropy(
			    grad ? m->dlogits : NULL, m->losses + r0, m->correct + r0, m->logits,
			    m->tgt + r0, row_scale ? row_scale + r0 : NULL, dscale, rows, V, m->s);
		if (rv != 0)
			goto fail;
		prof_end(m, pi);
		pi = prof_begin(m, PH_HGEMM);
		if (grad)
			GEMM_TRY(GEMM(m->h, 0, 0, rows, C, V, 1.f, dl, V, m->w[W_HEAD], C, 0.f,
			              m->dln + r0 * C, CUDA_R_32F, C));
		prof_end(m, pi);
		if (grad && m->fmem) /* dW_head (V,C) += dlogits^T hf (the embedding when tied) */
			GEMM_TRY(GEMM(m->h, 1, 0, V, C, rows, 1.f, m->dlogits, V, m->hf + r0 * C, C,
			              1.f, m->fg[W_HEAD], CUDA_R_32F, C));
	}
fail:
	return rv;
}

static int layer_adapted(const model_cuda *m, int l)
{
	for (int k = 0; k < MODEL_CUDA_NMODULE; k++)
		if (lora_of(m, l, k) >= 0)
			return 1;
	return 0;
}

/* Backward from m->dln (dL/dhf) down to layer 0, LoRA gradients into m->lg
 * (accumulated) or per example into pe (overwritten per matrix). */
static int backward_body(model_cuda *m, int Bm, int T, float *pe)
{
	int lowest;
	int rv = 0;
	int pa = -1; /* FEDLORA_PROFILE interval */
	int N = Bm * T, C = m->C, I = m->I;
	size_t NC = (size_t)N * C, Nmax = m->Nmax;
	cudaStream_t s = m->s;
	CU_TRY(cudaMemsetAsync(m->dres, 0, NC * 4, s));
	if ((rv = rmsnorm_bwd(m, m->dres, m->d16, m->fmem ? m->fg[W_NORM] : NULL, m->dln,
	                      m->res + (size_t)m->L * Nmax * C, m->w[W_NORM], m->rstdf, N, C, s)) !=
	    0)
		goto fail;
	/* layers below the lowest adapted one need no gradient at all, and that
	 * layer needs none for its q/k/v inputs (no trained tensor lies below) */
	lowest = 0;
	while (!m->fmem && lowest < m->L - 1 && !layer_adapted(m, lowest))
		lowest++;
	if (m->fmem)
		lowest = -1; /* full mode: every layer, then the embedding */
	for (int l = m->L - 1; l >= 0 && l >= lowest; l--) {
		float *dln_qkv = l == lowest ? NULL : m->dln;
		/* checkpointed: recompute the layer into the one slot (it reads
		 * res[l], rewrites res[l+1] with the same values, and touches none
		 * of the gradient buffers dres / d16 / dln live here) */
		size_t sl = m->c.grad_checkpoint ? 0 : (size_t)l;
		if (m->c.grad_checkpoint && (rv = layer_fwd(m, l, 0, Bm, T)) != 0)
			goto fail;
		float *x = m->res + l * Nmax * C, *xm = m->resmid + sl * Nmax * C;
		bf16 *h1 = m->h1 + sl * Nmax * C, *h2 = m->h2 + sl * Nmax * C;
		bf16 *q = m->q + sl * Nmax * m->QD, *k = m->k + sl * Nmax * m->KD;
		bf16 *v = m->v + sl * Nmax * m->KD, *ao = m->atto + sl * Nmax * m->QD;
		bf16 *g = m->gate + sl * Nmax * 2 * I, *u = g + Nmax * I; /* as layer_fwd */
		bf16 *sw = m->swi + sl * Nmax * I;
		// MLP: res_out = xm + down(swiglu(gate(h2), up(h2))); d16 = bf16(dres), written by
		// the RMSNorm backward above
		if ((rv = linear_bwd(m, l, MODEL_CUDA_DOWN, sw, wl(m, W_DOWN, l), m->d16, m->dswi,
		                     CUDA_R_16BF, 0.f, N, Bm, T, pe)) != 0)
			goto fail;
		if (m->fuse) { /* dgate|dup rows (N, 2I), then one GEMM for both */
			if ((rv = fl_k_swiglu_gu_backward(m->dgate, m->dswi, g, N, I, s)) != 0 ||
			    (rv = group_bwd(m, l, MODS_GU, 2, h2, m->dgate, 2 * I, m->dln, N, Bm, T,
			                    pe)) != 0)
				goto fail;
		} else if ((rv = fl_k_swiglu_backward(m->dgate, m->dup, m->dswi, g, u, (long)N * I,
		                                      s)) != 0 ||
		           (rv = linear_bwd(m, l, MODEL_CUDA_GATE, h2, wl(m, W_GATE, l), m->dgate,
		                            m->dln, CUDA_R_32F, 0.f, N, Bm, T, pe)) != 0 ||
		           (rv = linear_bwd(m, l, MODEL_CUDA_UP, h2, wl(m, W_UP, l), m->dup, m->dln,
		                            CUDA_R_32F, 1.f, N, Bm, T, pe)) != 0) {
			goto fail;
		}
		if ((rv = rmsnorm_bwd(m, m->dres, m->d16, m->fmem ? gl(m, W_LN2, l) : NULL, m->dln,
		                      xm, wl(m, W_LN2, l), m->rstd2 + sl * Nmax, N, C, s)) != 0)
			goto fail;
		// attention: xm = x + o_proj(attention(rope(q(h1)), rope(k(h1)), v(h1)))
		if ((rv = linear_bwd(m, l, MODEL_CUDA_O, ao, wl(m, W_O, l), m->d16, m->datto,
		                     CUDA_R_16BF, 0.f, N, Bm, T, pe)) != 0)
			goto fail;
		pa = prof_begin(m, PH_ATT_B);
		if (m->flash) /* dO straight from the o_proj gradient's (B,T,Hq,D) layout */
			rv = fl_flash_backward(m->dq, m->dk, m->dv, m->delta, m->datto, ao, q, k, v,
			                       m->lse + sl * Nmax * m->Hq, Bm, T, m->Hq, m->Hkv,
			                       m->D, s);
		else if ((rv = fl_k_bthd_to_bhtd(m->operm, m->datto, Bm, T, m->Hq, m->D, s)) == 0)
			rv = fl_attention_backward(m->h, s, m->dq, m->dk, m->dv, m->operm, q, k, v,
			                           Bm, T, m->Hq, m->Hkv, m->D, &m->att);
		prof_end(m, pa);
		if (rv != 0)
			goto fail;
		if (m->fuse) {
			/* dq|dk|dv rows (N, QKV) rotated back, through the q/k norms
			 * in place (Qwen3), then one GEMM */
			if ((rv = fl_k_qkv_rope_backward(m->dqr, m->QKV, m->dq, m->dk, m->dv,
			                                 m->rope, Bm, T, m->Hq, m->Hkv, m->D, s)) !=
			        0 ||
			    (m->c.qk_norm && (rv = qk_norm_backward_rows(m, l, sl, N)) != 0) ||
			    (rv = group_bwd(m, l, MODS_QKV, 3, h1, m->dqr, m->QKV, dln_qkv, N, Bm,
			                    T, pe)) != 0)
				goto fail;
		} else if ((rv = fl_k_rope_permute_backward(m->dqr, m->dq, m->rope, Bm, T, m->Hq,
		                                            m->D, 1, s)) != 0 ||
		           (rv = fl_k_rope_permute_backward(m->dkr, m->dk, m->rope, Bm, T, m->Hkv,
		                                            m->D, 1, s)) != 0 ||
		           (rv = fl_k_rope_permute_backward(m->dvr, m->dv, m->rope, Bm, T, m->Hkv,
		                                            m->D, 0, s)) != 0 ||
		           (m->c.qk_norm && (rv = qk_norm_backward(m, l, sl, N)) != 0) ||
		           (rv = linear_bwd(m, l, MODEL_CUDA_Q, h1, wl(m, W_Q, l), m->dqr, dln_qkv,
		                            CUDA_R_32F, 0.f, N, Bm, T, pe)) != 0 ||
		           (rv = linear_bwd(m, l, MODEL_CUDA_K, h1, wl(m, W_K, l), m->dkr, dln_qkv,
		                            CUDA_R_32F, 1.f, N, Bm, T, pe)) != 0 ||
		           (rv = linear_bwd(m, l, MODEL_CUDA_V, h1, wl(m, W_V, l), m->dvr, dln_qkv,
		                            CUDA_R_32F, 1.f, N, Bm, T, pe)) != 0) {
			goto fail;
		}
		if (l > lowest &&
		    (rv = rmsnorm_bwd(m, m->dres, m->d16, m->fmem ? gl(m, W_LN1, l) : NULL, m->dln,
		                      x, wl(m, W_LN1, l), m->rstd1 + sl * Nmax, N, C, s)) != 0)
			goto fail;
	}
	if (m->fmem) /* the residual stream entering layer 0 is the embedding */
		rv = fl_k_embed_backward(m->fg[W_EMBED], m->dres, m->tok, N, C, s);
fail:
	return rv;
}

static int check_batch(const model_cuda *m, const int *tok, const int *tgt, int B, int T)
{
	if (B < 0 || T < 1 || T > m->c.max_seq || (B > 0 && !tok)) {
		fl_log(FL_LOG_ERROR, "cuda", "batch %d x %d outside the model's limits (T <= %d)",
		       B, T, m->c.max_seq);
		return FL_EINVAL;
	}
	for (long i = 0; i < (long)B * T; i++)
		if (tok[i] < 0 || tok[i] >= m->V || (tgt && (tgt[i] < -1 || tgt[i] >= m->V))) {
			fl_log(FL_LOG_ERROR, "cuda", "token or target out of range at %ld", i);
			return FL_EINVAL;
		}
	return 0;
}

/* Uploads micro-batch [b0, b0+Bm) of tokens (and targets). */
static int upload_batch(model_cuda *m, const int *tok, const int *tgt, int b0, int Bm, int T)
{
	int rv = 0;
	size_t n = (size_t)Bm * T;
	CU_TRY(cudaMemcpyAsync(m->tok, tok + (size_t)b0 * T, n * 4, cudaMemcpyHostToDevice, m->s));
	if (tgt)
		CU_TRY(cudaMemcpyAsync(m->tgt, tgt + (size_t)b0 * T, n * 4, cudaMemcpyHostToDevice,
		                       m->s));
fail:
	return rv;
}

/* Copies the micro-batch's per-row losses and correct flags to the host. */
static int fetch_losses(model_cuda *m, int N)
{
	int rv = 0;
	CU_TRY(
	    cudaMemcpyAsync(m->h_losses, m->losses, (size_t)N * 4, cudaMemcpyDeviceToHost, m->s));
	CU_TRY(
	    cudaMemcpyAsync(m->h_correct, m->correct, (size_t)N * 4, cudaMemcpyDeviceToHost, m->s));
	CU_TRY(cudaStreamSynchronize(m->s));
fail:
	return rv;
}

extern "C" int model_cuda_eval(model_cuda *m, const int *tok, const int *tgt, int B, int T,
                               double *loss_sum, long *count, long *correct)
{
	int rv;
	double ls = 0;
	long cnt = 0, cor = 0;
	if ((rv = check_batch(m, tok, tgt, B, T)) != 0 || !tgt)
		return rv ? rv : FL_EINVAL;
	for (int b0 = 0; b0 < B; b0 += m->c.max_batch) {
		int Bm = B - b0 < m->c.max_batch ? B - b0 : m->c.max_batch, N = Bm * T;
		if ((rv = upload_batch(m, tok, tgt, b0, Bm, T)) != 0 ||
		    (rv = forward_body(m, Bm, T)) != 0 ||
		    (rv = head(m, N, 1, 0, NULL, 0.f, NULL)) != 0 || (rv = fetch_losses(m, N)) != 0)
			return rv;
		for (int i = 0; i < N; i++)
			if (tgt[(size_t)b0 * T + i] >= 0) {
				ls += m->h_losses[i];
				cnt++;
				cor += m->h_correct[i];
			}
	}
	if (loss_sum)
		*loss_sum += ls;
	if (count)
		*count += cnt;
	if (correct)
		*correct += cor;
	return 0;
}

extern "C" int model_cuda_logits(model_cuda *m, const int *tok, int B, int T, float *logits)
{
	int rv;
	if ((rv = check_batch(m, tok, NULL, B, T)) != 0)
		return rv;
	for (int b0 = 0; b0 < B; b0 += m->c.max_batch) {
		int Bm = B - b0 < m->c.max_batch ? B - b0 : m->c.max_batch;
		if ((rv = upload_batch(m, tok, NULL, b0, Bm, T)) != 0 ||
		    (rv = forward_body(m, Bm, T)) != 0 ||
		    (rv = head(m, Bm * T, 0, 0, NULL, 0.f, logits + (size_t)b0 * T * m->V)) != 0)
			return rv;
	}
	if (cudaStreamSynchronize(m->s) != cudaSuccess) {
		fl_log(FL_LOG_ERROR, "cuda", "logits: %s", cudaGetErrorString(cudaGetLastError()));
		return FL_ECUDA;
	}
	return 0;
}

/* Forward, LM head + cross-entropy and backward of one micro-batch already
 * uploaded, LoRA gradients added into m->lg. */
static int grad_pass(model_cuda *m, int Bm, int T, float dscale)
{
	int rv;
	if ((rv = forward_body(m, Bm, T)) != 0 ||
	    (rv = head(m, Bm * T, 1, 1, NULL, dscale, NULL)) != 0)
		return rv;
	return backward_body(m, Bm, T, NULL);
}

/* The same through a CUDA graph: about 50 launches per layer become one.
 * The graph is captured the second time in a row a shape (Bm, T, dscale)
 * is seen (the first run is eager, so cuBLAS has chosen its kernels), and
 * replayed while the shape stays; every pointer it holds is fixed for the
 * model's life except the LoRA buffers, whose re-attachment drops it. A
 * failed capture logs a warning and turns graphs off for this model. */
static int grad_pass_graph(model_cuda *m, int Bm, int T, float dscale)
{
	int rv = 0;
	cudaGraph_t g = NULL;
	cudaError_t e;
	if (m->gexec && m->g_Bm == Bm && m->g_T == T && m->g_dscale == dscale) {
		CU_TRY(cudaGraphLaunch(m->gexec, m->s));
		return 0;
	}
	if (!(m->g_seen && m->g_Bm == Bm && m->g_T == T && m->g_dscale == dscale)) {
		if (m->gexec)
			cudaGraphExecDestroy(m->gexec);
		m->gexec = NULL;
		m->g_seen = 1;
		m->g_Bm = Bm;
		m->g_T = T;
		m->g_dscale = dscale;
		return grad_pass(m, Bm, T, dscale);
	}
	CU_TRY(cudaStreamBeginCapture(m->s, cudaStreamCaptureModeThreadLocal));
	rv = grad_pass(m, Bm, T, dscale);
	e = cudaStreamEndCapture(m->s, &g);
	if (rv == 0 && e == cudaSuccess && g)
		e = cudaGraphInstantiate(&m->gexec, g, 0);
	if (g)
		cudaGraphDestroy(g);
	if (rv != 0 || e != cudaSuccess) {
		fl_log(FL_LOG_WARN, "cuda",
		       "CUDA graph capture failed (%s), running without graphs",
		       rv != 0 ? fl_strerror(rv) : cudaGetErrorString(e));
		cudaGetLastError();
		m->gexec = NULL;
		m->g_off = 1;
		return grad_pass(m, Bm, T, dscale);
	}
	CU_TRY(cudaGraphLaunch(m->gexec, m->s));
fail:
	return rv;
}

/* Gradient of the mean loss over all targets into m->lg (zeroed first);
 * *loss = that mean. */
static int grad_into_lg(model_cuda *m, const int *tok, const int *tgt, int B, int T, double *loss)
{
	int rv = 0;
	int pi = -1; /* FEDLORA_PROFILE interval */
	long cnt = 0;
	double ls = 0;
	if (!m->nlora && !m->fmem) {
		fl_log(FL_LOG_ERROR, "cuda", "training needs an attached LoRA adapter");
		return FL_ESTATE;
	}
	if ((rv = check_batch(m, tok, tgt, B, T)) != 0 || !tgt)
		return rv ? rv : FL_EINVAL;
	for (long i = 0; i < (long)B * T; i++)
		cnt += tgt[i] >= 0;
	m->prof_n = 0; /* marks left by an evaluation are not this step's */
	if (m->fmem)
		CU_TRY(cudaMemsetAsync(m->fmem + m->wtot, 0, m->wtot * sizeof(float), m->s));
	else
		CU_TRY(cudaMemsetAsync(m->lg, 0, (m->n_a + m->n_b) * sizeof(float), m->s));
	for (int b0 = 0; b0 < B && cnt > 0; b0 += m->c.max_batch) {
		int Bm = B - b0 < m->c.max_batch ? B - b0 : m->c.max_batch, N = Bm * T;
		if ((rv = upload_batch(m, tok, tgt, b0, Bm, T)) != 0)
			goto fail;
		if (!m->fmem && !m->prof && !m->g_off) {
			if ((rv = grad_pass_graph(m, Bm, T, 1.0f / (float)cnt)) != 0 ||
			    (rv = fetch_losses(m, N)) != 0)
				goto fail;
			for (int i = 0; i < N; i++)
				if (tgt[(size_t)b0 * T + i] >= 0)
					ls += m->h_losses[i];
			continue;
		}
		pi = prof_begin(m, PH_FWD);
		if ((rv = forward_body(m, Bm, T)) != 0)
			goto fail;
		prof_end(m, pi);
		pi = prof_begin(m, PH_HEAD);
		if ((rv = head(m, N, 1, 1, NULL, 1.0f / (float)cnt, NULL)) != 0)
			goto fail;
		prof_end(m, pi);
		pi = prof_begin(m, PH_BWD);
		if ((rv = backward_body(m, Bm, T, NULL)) != 0)
			goto fail;
		prof_end(m, pi);
		if ((rv = fetch_losses(m, N)) != 0)
			goto fail;
		prof_collect(m);
		for (int i = 0; i < N; i++)
			if (tgt[(size_t)b0 * T + i] >= 0)
				ls += m->h_losses[i];
	}
	if (loss)
		*loss = cnt ? ls / cnt : 0.0;
fail:
	return rv;
}

extern "C" int model_cuda_full_grad(model_cuda *m, const int *tok, const int *tgt, int B, int T,
                                    double *loss, float *const *grads)
{
	int rv = 0;
	if (!m->fmem)
		return FL_ESTATE;
	if ((rv = grad_into_lg(m, tok, tgt, B, T, loss)) != 0)
		return rv;
	CU_TRY(cudaStreamSynchronize(m->s));
	for (int i = 0; i < W_N; i++)
		if (grads[i] && m->wsz[i] && (rv = copy_out_f32(m, grads[i], m->fg[i], i)) != 0)
			goto fail;
fail:
	return rv;
}

extern "C" int model_cuda_grad(model_cuda *m, const int *tok, const int *tgt, int B, int T,
                               double *loss, float *grad)
{
	int rv;
	if (m->fmem || !m->nlora)
		return FL_ESTATE;
	if ((rv = grad_into_lg(m, tok, tgt, B, T, loss)) != 0)
		return rv;
	if (cudaMemcpy(grad, m->lg, (m->n_a + m->n_b) * sizeof(float), cudaMemcpyDeviceToHost) !=
	    cudaSuccess) {
		fl_log(FL_LOG_ERROR, "cuda", "grad copy: %s",
		       cudaGetErrorString(cudaGetLastError()));
		return FL_ECUDA;
	}
	return 0;
}

/* One update of the trainable slice with gradient g (device, ntrain floats). */
static int optim_update(model_cuda *m, const float *g, float lr)
{
	int rv;
	size_t off = m->train_a ? 0 : m->n_a, n = ntrain(m);
	m->t++;
	if (m->fmem) { /* full mode: every base parameter (padding stays 0) */
		float *p = m->fmem, *gg = m->fmem + m->wtot;
		if (m->opt.kind == 1) {
			float c1 = 1.0f - powf(m->opt.b1, (float)m->t),
			      c2 = 1.0f - powf(m->opt.b2, (float)m->t);
			rv = fl_k_adamw(p, gg, m->fm, m->fv, m->wtot, lr, m->opt.b1, m->opt.b2,
			                m->opt.eps, m->opt.weight_decay, c1, c2, m->s);
		} else {
			rv = fl_k_sgd(p, gg, m->fm, m->wtot, lr, m->opt.momentum,
			              m->opt.weight_decay, m->s);
		}
		return rv ? rv : fl_k_f32_to_bf16(m->wmem, p, m->wtot, m->s);
	}
	if (m->opt.kind == 1) {
		float c1 = 1.0f - powf(m->opt.b1, (float)m->t),
		      c2 = 1.0f - powf(m->opt.b2, (float)m->t);
		rv = fl_k_adamw(m->lp + off, g, m->lm + off, m->lv + off, n, lr, m->opt.b1,
		                m->opt.b2, m->opt.eps, m->opt.weight_decay, c1, c2, m->s);
	} else {
		rv = fl_k_sgd(m->lp + off, g, m->lm + off, n, lr, m->opt.momentum,
		              m->opt.weight_decay, m->s);
	}
	if (rv == 0)
		rv = fl_k_f32_to_bf16(m->l16 + off, m->lp + off, n, m->s);
	return rv;
}

extern "C" int model_cuda_train_step(model_cuda *m, const int *tok, const int *tgt, int B, int T,
                                     float lr, double *loss)
{
	int rv;
	if ((rv = grad_into_lg(m, tok, tgt, B, T, loss)) != 0)
		return rv;
	int pi = prof_begin(m, PH_OPT);
	if ((rv = optim_update(m, m->fmem ? NULL : m->lg + (m->train_a ? 0 : m->n_a), lr)) != 0)
		return rv;
	prof_end(m, pi);
	if (m->prof) {
		if (cudaStreamSynchronize(m->s) != cudaSuccess) {
			fl_log(FL_LOG_ERROR, "cuda", "train step: %s",
			       cudaGetErrorString(cudaGetLastError()));
			return FL_ECUDA;
		}
		prof_report(m);
	}
	return 0;
}

/* Per-example gradients of micro-batch b0..b0+Bm into m->pe (rows of
 * ntrain), each of its own mean token loss; per-example mean losses added to
 * *ex_loss_sum, examples with targets counted in *nex_scored. */
static int per_example_batch(model_cuda *m, const int *tok, const int *tgt, int b0, int Bm, int T,
                             double *ex_loss_sum, int *nex_scored)
{
	int rv = 0, N = Bm * T;
	float *rs = m->h_losses; /* host row scales, reuses the loss mirror before the run */
	for (int e = 0; e < Bm; e++) {
		int cnt = 0;
		for (int t = 0; t < T; t++)
			cnt += tgt[(size_t)(b0 + e) * T + t] >= 0;
		for (int t = 0; t < T; t++)
			rs[(size_t)e * T + t] = cnt ? 1.0f / (float)cnt : 0.f;
	}
	CU_TRY(cudaMemcpyAsync(m->row_scale, rs, (size_t)N * 4, cudaMemcpyHostToDevice, m->s));
	CU_TRY(cudaStreamSynchronize(m->s)); /* rs is overwritten by fetch_losses below */
	CU_TRY(cudaMemsetAsync(m->pe, 0, (size_t)Bm * ntrain(m) * sizeof(float), m->s));
	if ((rv = upload_batch(m, tok, tgt, b0, Bm, T)) != 0 ||
	    (rv = forward_body(m, Bm, T)) != 0 ||
	    (rv = head(m, N, 1, 1, m->row_scale, 0.f, NULL)) != 0 ||
	    (rv = backward_body(m, Bm, T, m->pe)) != 0 || (rv = fetch_losses(m, N)) != 0)
		goto fail;
	for (int e = 0; e < Bm; e++) {
		double s = 0;
		int cnt = 0;
		for (int t = 0; t < T; t++)
			if (tgt[(size_t)(b0 + e) * T + t] >= 0) {
				s += m->h_losses[(size_t)e * T + t];
				cnt++;
			}
		if (cnt) {
			*ex_loss_sum += s / cnt;
			(*nex_scored)++;
		}
	}
fail:
	return rv;
}

static int ensure_dp(model_cuda *m)
{
	int rv = 0;
	if (m->pe && m->dp_sum && m->norms2)
		return 0;
	cudaFree(m->pe);
	cudaFree(m->dp_sum);
	m->pe = m->dp_sum = NULL; /* a partial earlier attempt (its bytes stay counted) */
	size_t before = m->mem;
	rv = dev_alloc(m, (void **)&m->pe, (size_t)m->c.max_batch * ntrain(m) * 4);
	if (rv == 0)
		rv = dev_alloc(m, (void **)&m->dp_sum, ntrain(m) * 4);
	if (rv == 0)
		rv = dev_alloc(m, (void **)&m->norms2, (size_t)m->c.max_batch * 4);
	m->lora_mem += m->mem - before;
	return rv;
}

extern "C" int model_cuda_grad_per_example(model_cuda *m, const int *tok, const int *tgt, int B,
                                           int T, float *pe)
{
	int rv;
	double ls = 0;
	int ns = 0;
	if (!m->nlora || m->fmem)
		return FL_ESTATE;
	if ((rv = check_batch(m, tok, tgt, B, T)) != 0 || !tgt)
		return rv ? rv : FL_EINVAL;
	if ((rv = ensure_dp(m)) != 0)
		return rv;
	for (int b0 = 0; b0 < B; b0 += m->c.max_batch) {
		int Bm = B - b0 < m->c.max_batch ? B - b0 : m->c.max_batch;
		if ((rv = per_example_batch(m, tok, tgt, b0, Bm, T, &ls, &ns)) != 0)
			return rv;
		if (cudaMemcpy(pe + (size_t)b0 * ntrain(m), m->pe, (size_t)Bm * ntrain(m) * 4,
		               cudaMemcpyDeviceToHost) != cudaSuccess) {
			fl_log(FL_LOG_ERROR, "cuda", "per-example copy: %s",
			       cudaGetErrorString(cudaGetLastError()));
			return FL_ECUDA;
		}
	}
	return 0;
}

extern "C" int model_cuda_dp_step(model_cuda *m, const int *tok, const int *tgt, int B, int T,
                                  double clip, double noise_mult, double expected_batch,
                                  const uint8_t seed[32], float lr, double *loss, int *nclipped)
{
	int rv = 0, ncl = 0, ns = 0;
	double ls = 0;
	uint64_t key, ctr;
	float *n2 = NULL;
	size_t P;
	if (!m->nlora || m->fmem)
		return FL_ESTATE;
	if (!(clip > 0) || !isfinite(clip) || !(noise_mult >= 0) || !isfinite(noise_mult) ||
	    !(expected_batch > 0) || !isfinite(expected_batch) || !seed)
		return FL_EINVAL;
	if ((rv = check_batch(m, tok, tgt, B, T)) != 0 || (B > 0 && !tgt))
		return rv ? rv : FL_EINVAL;
	if ((rv = ensure_dp(m)) != 0)
		return rv;
	P = ntrain(m);
	if (!(n2 = (float *)malloc((size_t)m->c.max_batch * sizeof *n2)))
		return FL_ENOMEM;
	CU_TRY(cudaMemsetAsync(m->dp_sum, 0, P * 4, m->s));
	for (int b0 = 0; b0 < B; b0 += m->c.max_batch) {
		int Bm = B - b0 < m->c.max_batch ? B - b0 : m->c.max_batch;
		if ((rv = per_example_batch(m, tok, tgt, b0, Bm, T, &ls, &ns)) != 0 ||
		    (rv = fl_k_row_sumsq(m->norms2, m->pe, Bm, P, m->s)) != 0 ||
		    (rv = fl_k_clip_accumulate(m->dp_sum, m->pe, m->norms2, Bm, P, (float)clip,
		                               m->s)) != 0)
			goto fail;
		CU_TRY(
		    cudaMemcpyAsync(n2, m->norms2, (size_t)Bm * 4, cudaMemcpyDeviceToHost, m->s));
		CU_TRY(cudaStreamSynchronize(m->s));
		for (int e = 0; e < Bm; e++)
			ncl += !(sqrt((double)n2[e]) <= clip);
	}
	memcpy(&key, seed, 8);
	memcpy(&ctr, seed + 8, 8);
	if ((rv = fl_k_add_noise_scale(m->dp_sum, P, key, ctr, noise_mult * clip,
	                               1.0 / expected_batch, m->s)) != 0 ||
	    (rv = optim_update(m, m->dp_sum, lr)) != 0)
		goto fail;
	CU_TRY(cudaStreamSynchronize(m->s));
	if (loss)
		*loss = ns ? ls / ns : NAN;
	if (nclipped)
		*nclipped = ncl;
fail:
	free(n2);
	return rv;
}
