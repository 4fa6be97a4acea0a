/*
 * model/task.h — a training task: what a client trains locally and what shape
 * the run's adapter has. Tasks: "linreg" (model/linreg.c, a frozen multi-layer
 * linear model with synthetic low-rank client shifts; for tests and algorithm
 * studies) and "lm" (model/lm_task.c, LoRA fine-tuning of a Llama-architecture
 * language model on the client's text).
 *
 * The coordinator opens a task with client_index = -1: it only needs the
 * adapter shape (no data is loaded). Clients open it with their index and
 * their data, and call train once per round.
 *
 * Ownership: model_task_open returns a task freed with model_task_close (NULL
 * is a no-op); model_task_adapter_new returns an adapter the caller frees.
 */
#ifndef FL_MODEL_TASK_H
#define FL_MODEL_TASK_H

#include <stdint.h>

#include "lora/adapter.h"

struct priv_noise;

typedef struct model_task_opts {
	const char *task; /* "linreg" | "lm" */
	uint64_t seed;    /* run seed, the same for every client */
	int client_index; /* 0-based; -1 on the coordinator */
	int num_clients;  /* clients in the run (linreg draws every client's shift) */
	int rank;         /* LoRA rank r */
	double alpha;     /* LoRA alpha */
	/* linreg */
	int linreg_layers, linreg_dim, linreg_samples;
	/* lm */
	const char *base_dir;     /* Hugging Face model folder */
	const char *data;         /* comma-separated data paths (files or folders) */
	const char *lora_targets; /* comma-separated module names, default "q_proj,v_proj" */
	int seq_len;              /* training sequence length */
	const char *device;       /* "cpu" | "cuda" | "auto" */
	int grad_checkpoint;      /* --grad-checkpoint: recompute layers in the backward */
} model_task_opts;

/* Defaults: linreg, seed 1, client -1, 4 clients, r 4, alpha 8, 4 layers of
 * 64, 512 samples per client, q_proj,v_proj, seq_len 64, device cpu. */
void model_task_opts_default(model_task_opts *o);

typedef struct model_train_params {
	int local_steps;
	int batch_size;
	double lr;
	double weight_decay;
	int optimizer; /* 0 SGD, 1 AdamW */
	int train_a;   /* 0: A frozen, only B trained (ffa) */
	/* sample-level DP-SGD; off when dp_clip <= 0. Poisson sampling with rate
	 * dp_q (expected batch dp_q * num_samples), per-example clipping to
	 * dp_clip, noise N(0, (dp_noise*dp_clip)^2). */
	double dp_clip, dp_noise, dp_q;
	uint64_t round_seed; /* minibatch order of this round */
	/* optional: called before every local step (0-based) with step_arg; a
	 * nonzero return stops training at once and train returns it (the
	 * client's deadline check, client/session.c). NULL: never stops. */
	int (*before_step)(void *step_arg, int step);
	void *step_arg;
} model_train_params;

typedef struct model_train_result {
	double train_loss;   /* mean training loss over the local steps */
	double eval_before;  /* held-out loss of the adapter as received */
	double eval_after;   /* held-out loss after local training */
	long num_samples;    /* training examples this client holds */
	int steps;           /* local steps taken */
	int dp_steps;        /* DP-SGD steps (for the accountant), 0 without DP */
	double tokens_per_s; /* throughput (examples/s for linreg) */
} model_train_result;

typedef struct model_task model_task;

int model_task_open(model_task **out, const model_task_opts *o);
void model_task_close(model_task *t);
/* A new adapter of the task's shape, initialized as PEFT does (A Kaiming-uniform
 * from `seed`, B = 0). */
int model_task_adapter_new(model_task *t, uint64_t seed, lora_adapter **out);
/* Trains `ad` in place for p->local_steps. noise is required when p->dp_clip > 0. */
int model_task_train(model_task *t, lora_adapter *ad, const model_train_params *p,
                     struct priv_noise *noise, model_train_result *res);
/* Held-out loss (and next-token accuracy for lm; NaN for linreg) of `ad`. */
int model_task_eval(model_task *t, const lora_adapter *ad, double *loss, double *acc);
long model_task_num_samples(const model_task *t);

#endif
