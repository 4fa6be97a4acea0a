/*
 * model/optim.h — optimizers over one flat float array of trainable
 * parameters (a model's parameters in full mode, or a slice of a LoRA
 * adapter's params): SGD (optional momentum) and AdamW, with their state in
 * one allocation, plus gradient-norm clipping and a cosine learning-rate
 * schedule.
 *
 * The optimizer does not own the parameters or gradients; it owns its state
 * (moments), freed by model_optim_free (NULL is a no-op). The update kernels
 * themselves are model_sgd_update / model_adamw_update in model/ops.h.
 */
#ifndef FL_MODEL_OPTIM_H
#define FL_MODEL_OPTIM_H

#include <stddef.h>

/* Values match model_train_params.optimizer (model/task.h). */
typedef enum { MODEL_OPT_SGD = 0, MODEL_OPT_ADAMW = 1 } model_opt_kind;

typedef struct model_optim_opts {
	model_opt_kind kind;
	float b1, b2, eps;  /* AdamW */
	float momentum;     /* SGD; 0 = plain SGD, no state */
	float weight_decay; /* decoupled, both kinds */
} model_optim_opts;

/* Defaults: AdamW, b1 0.9, b2 0.999, eps 1e-8, momentum 0, weight decay 0. */
void model_optim_opts_default(model_optim_opts *o);
/* "sgd" | "adamw" -> kind; FL_EINVAL otherwise. */
int model_optim_parse(const char *s, model_opt_kind *out);

typedef struct model_optim {
	model_optim_opts o;
	size_t n; /* parameters it updates */
	int t;    /* steps taken */
	float *m; /* AdamW first moment / SGD momentum buffer; NULL when unused */
	float *v; /* AdamW second moment; points into the same allocation as m */
} model_optim;

/* An optimizer for n parameters, state zeroed. */
int model_optim_new(model_optim **out, size_t n, const model_optim_opts *o);
void model_optim_free(model_optim *o);
/* Zeroes the state and the step counter (a new round from a new global). */
void model_optim_reset(model_optim *o);
/* One update of p (n) with gradient g (n) at learning rate lr. FL_ESHAPE if n
 * differs from the optimizer's n. */
int model_optim_step(model_optim *o, float *p, const float *g, size_t n, float lr);

/* L2 norm of g (double accumulation). */
double model_grad_norm(const float *g, size_t n);
/* Scales g so its L2 norm is at most max_norm (no-op when max_norm <= 0);
 * returns the norm before clipping. */
double model_grad_clip(float *g, size_t n, double max_norm);
/* Linear warmup over `warmup` steps, then cosine decay from lr_max to lr_min
 * at step `total`; step counts from 0. */
float model_lr_cosine(int step, int total, int warmup, float lr_max, float lr_min);

#endif
