/*
 * model/backend.h — one training/eval interface over the two implementations
 * of the Llama model: the CPU reference (model/llama.h, float32, OpenBLAS) and
 * the CUDA model (model/cuda/cuda.h, bf16 weights and activations, float32
 * accumulation and float32 master copies of the trainable LoRA tensors).
 * `--device cpu|cuda|auto` on `client`, `pretrain` and `eval` goes through
 * model_device_resolve() and model_backend_open().
 *
 * What a backend does: evaluate held-out loss/accuracy, return logits, take
 * optimizer steps on the trainable tensors (LoRA B, LoRA A+B, or every
 * parameter in full mode), and sample-level DP-SGD steps (per-example
 * gradients of the LoRA tensors clipped to a norm, summed, Gaussian noise
 * from privacy/noise.h added, divided by the expected batch size). Batches
 * larger than opts.max_batch are split into micro-batches internally, so the
 * caller may pass a whole Poisson-sampled DP batch of any size.
 *
 * What it deliberately does not do: tokenization, data loading, learning-rate
 * schedules (the caller passes lr per step), saving files (the caller saves the
 * CPU model or the adapter after model_backend_sync_*).
 *
 * Ownership: model_backend_open borrows the CPU model `m` (it must outlive the
 * backend; the CUDA backend copies the weights to the GPU at open and only
 * writes them back on model_backend_sync_model). model_backend_attach_lora
 * borrows the adapter; training updates it in place on the CPU and on the GPU
 * copy, which model_backend_sync_lora writes back into ad->params.
 * model_backend_close(NULL) is a no-op. A backend is not thread-safe; several
 * processes may each open a CUDA backend on the same GPU.
 *
 * Errors: 0 or a negative FL_E* code (core/err.h); on failure a one-line
 * reason is logged with tag "backend" or "cuda".
 */
#ifndef FL_MODEL_BACKEND_H
#define FL_MODEL_BACKEND_H

#include <stddef.h>

#include "lora/adapter.h"
#include "model/llama.h"
#include "model/optim.h"

struct priv_noise;

typedef enum { MODEL_DEVICE_CPU = 0, MODEL_DEVICE_CUDA = 1 } model_device;

/* Resolves a --device value: "cpu", "cuda", or "auto" (the GPU when one is
 * usable, else the CPU); NULL or "" mean "cpu". Returns FL_EINVAL for another
 * name, FL_ENOTSUP for "cuda" in a build without CUDA ("this build has no
 * CUDA support"), FL_ECUDA for "cuda" when no GPU is usable (no device, driver
 * too old, ...). `why` (may be NULL) receives a one-line reason on failure and,
 * for "auto", which device was chosen and why. */
int model_device_resolve(const char *name, model_device *out, char *why, size_t whylen);
const char *model_device_name(model_device d);

typedef struct model_backend_opts {
	const char *device;     /* "cpu" | "cuda" | "auto" */
	int max_batch;          /* sequences per micro-batch (activation memory) */
	int max_seq;            /* longest sequence T */
	model_train_mode mode;  /* model/llama.h: NONE, FULL, LORA (A+B), LORA_B */
	model_optim_opts optim; /* optimizer of the trainable tensors */
	int grad_checkpoint;    /* --grad-checkpoint: keep each layer's input only and
	                         * recompute the layer in the backward */
} model_backend_opts;

/* Defaults: device "cpu", max_batch 8, max_seq 256, mode NONE, optim defaults,
 * no checkpointing. */
void model_backend_opts_default(model_backend_opts *o);

typedef struct model_backend model_backend;

/* Opens a backend over the CPU model m (borrowed). For CUDA, uploads the
 * weights in bf16 and allocates activations for (max_batch, max_seq). */
int model_backend_open(model_backend **out, model_llama *m, const model_backend_opts *o);
void model_backend_close(model_backend *b);
model_device model_backend_device(const model_backend *b);

/* Attaches adapter ad (borrowed) to the model: its matrices must be named and
 * shaped as model/llama.h builds them (FL_ESHAPE otherwise). Copies its values
 * to the device and zeroes the optimizer state. The adapter's values are used
 * by every later eval/train call. */
int model_backend_attach_lora(model_backend *b, lora_adapter *ad);
/* The caller changed ad->params (a new global adapter arrived): re-uploads
 * them and zeroes the optimizer state. */
int model_backend_load_lora(model_backend *b);
/* Writes the trained values back into the attached adapter's params (a copy
 * from the GPU; nothing to do on the CPU). */
int model_backend_sync_lora(model_backend *b);
/* Full mode: writes the trained base parameters back into the CPU model so
 * that it can be saved (nothing to do on the CPU). */
int model_backend_sync_model(model_backend *b);
/* Zeroes the optimizer state and step counter. */
int model_backend_reset_optimizer(model_backend *b);

/* Held-out evaluation of tokens (B,T) against targets (B,T) (-1 = ignored):
 * ADDS the summed loss (nats), the number of scored tokens and the number of
 * correct argmax predictions into *loss_sum, *count, *correct (each may be
 * NULL). */
int model_backend_eval(model_backend *b, const int *tok, const int *tgt, int B, int T,
                       double *loss_sum, long *count, long *correct);
/* Logits (B*T, V) float32 of tokens (B,T) into the caller's buffer. */
int model_backend_logits(model_backend *b, const int *tok, int B, int T, float *logits);
/* One optimizer step at learning rate lr on the loss averaged over every
 * target token of the batch; *loss (may be NULL) gets that mean loss. */
int model_backend_train_step(model_backend *b, const int *tok, const int *tgt, int B, int T,
                             float lr, double *loss);
/* One DP-SGD step (LoRA modes only) on the B examples the caller sampled
 * (Poisson sampling is the caller's; B may be 0): each example's loss is the
 * mean over its target tokens; its gradient of the trainable LoRA tensors is
 * clipped to L2 norm `clip`; the update direction is (sum of clipped
 * gradients + N(0, (noise_mult*clip)^2) per coordinate) / expected_batch,
 * the noise drawn from `noise` (on the GPU: a counter-based generator keyed
 * per step from priv_noise_seed_bytes). *loss gets the mean example loss
 * (NaN when B is 0), *nclipped the number of examples whose norm exceeded
 * clip (both may be NULL). */
int model_backend_dp_step(model_backend *b, const int *tok, const int *tgt, int B, int T,
                          double clip, double noise_mult, double expected_batch,
                          struct priv_noise *noise, float lr, double *loss, int *nclipped);

#endif
