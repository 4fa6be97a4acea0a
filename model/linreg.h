/*
 * model/linreg.h — the "linreg" task's own interface, below model/task.h:
 * loss and gradients on chosen examples and read access to the frozen
 * weights and the data, for the gradient checks of tests/linreg_test.c.
 * Clients and the coordinator use model/task.h instead.
 *
 * The model: L frozen d x d layers W0_l, each with a LoRA pair (A_l r x d,
 * B_l d x r) named "layers.{l}":
 *     h_0 = x,   h_{l+1} = (W0_l + s B_l A_l) h_l,   yhat = h_L,   s = alpha/r.
 * Loss: mean over examples of 0.5 * ||yhat - y||^2 (sum over the d outputs;
 * the scale at which SGD wants lr ~ 0.05 and AdamW lr ~ 0.01).
 *
 * Data of client k (seed S): x ~ N(0, I_d) and
 *     y = prod_l (W0_l + D_l + E_{k,l}) x + noise,   noise ~ N(0, 0.05^2),
 * with D_l (shared by every client) and E_{k,l} (client k only) of rank 2
 * each, drawn from (S, l) and (S, k, l). The shift of each layer has rank 4,
 * so a rank >= 4 adapter fits one client exactly, while clients disagree on
 * E: averaging their factors (fedit) leaves a visible aggregation bias.
 *
 * Gradient buffers have the adapter's layout (all A, then all B: n_a + n_b
 * floats); with train_a == 0 the A part is left zero and only B is computed.
 *
 * Ownership: model_linreg_open returns a state freed by model_linreg_close
 * (NULL is a no-op); pointers from model_linreg_view point into it.
 */
#ifndef FL_MODEL_LINREG_H
#define FL_MODEL_LINREG_H

#include "model/task.h"

#define MODEL_LINREG_SHIFT_RANK   2    /* rank of D_l and of E_{k,l} */
#define MODEL_LINREG_SHARED_SCALE 1.0  /* spectral scale of D_l */
#define MODEL_LINREG_CLIENT_SCALE 0.7  /* spectral scale of E_{k,l} */
#define MODEL_LINREG_W0_SPREAD    0.25 /* W0_l = I + spread * G / sqrt(d) */
#define MODEL_LINREG_NOISE_STD    0.05 /* label noise */

typedef struct model_linreg model_linreg;

int model_linreg_open(model_linreg **out, const model_task_opts *o);
void model_linreg_close(model_linreg *m);

/* Mean loss over training examples idx[0..n) and its gradient (adapter
 * layout, overwritten). FL_ESHAPE if ad is not of the task's shape,
 * FL_EINVAL on an index out of range, FL_ESTATE without data. */
int model_linreg_loss_grad(model_linreg *m, const lora_adapter *ad, const long *idx, int n,
                           int train_a, double *loss, float *grad);

/* Per-example gradients of the loss of example idx[i] alone, written as rows
 * of g (n x P) with P = n_a + n_b (train_a) or n_b (B only, no A part). */
int model_linreg_example_grads(model_linreg *m, const lora_adapter *ad, const long *idx, int n,
                               int train_a, float *g);

typedef struct model_linreg_view {
	int layers, dim;
	long n_train, n_eval;
	const float *w0;                /* layers x dim x dim, W0_l row-major */
	const float *x_train, *y_train; /* n_train x dim each */
	const float *x_eval, *y_eval;   /* n_eval x dim each */
} model_linreg_view;

/* Read-only view of the weights and data (NULL data pointers without data). */
void model_linreg_view_get(const model_linreg *m, model_linreg_view *v);

#endif
