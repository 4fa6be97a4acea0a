/*
 * model/optim.c — SGD and AdamW over a flat parameter array, gradient
 * clipping and a cosine schedule (see model/optim.h). The per-element update
 * loops are model_sgd_update / model_adamw_update in model/ops.c.
 */
#include "model/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "model/ops.h"

void model_optim_opts_default(model_optim_opts *o)
{
	memset(o, 0, sizeof *o);
	o->kind = MODEL_OPT_ADAMW;
	o->b1 = 0.9f;
	o->b2 = 0.999f;
	o->eps = 1e-8f;
}

int model_optim_parse(const char *s, model_opt_kind *out)
{
	if (!s)
		return FL_EINVAL;
	if (!strcmp(s, "sgd"))
		*out = MODEL_OPT_SGD;
	else if (!strcmp(s, "adamw"))
		*out = MODEL_OPT_ADAMW;
	else
		return FL_EINVAL;
	return 0;
}

int model_optim_new(model_optim **out, size_t n, const model_optim_opts *o)
{
	*out = NULL;
	if (o->kind != MODEL_OPT_SGD && o->kind != MODEL_OPT_ADAMW)
		return FL_EINVAL;
	if (o->kind == MODEL_OPT_ADAMW &&
	    !(o->b1 >= 0 && o->b1 < 1 && o->b2 >= 0 && o->b2 < 1 && o->eps > 0))
		return FL_EINVAL;
	if (!(o->weight_decay >= 0) || !(o->momentum >= 0 && o->momentum < 1))
		return FL_EINVAL;
	model_optim *p = calloc(1, sizeof *p);
	if (!p)
		return FL_ENOMEM;
	p->o = *o;
	p->n = n;
	size_t nstate = o->kind == MODEL_OPT_ADAMW ? 2 * n : (o->momentum > 0 ? n : 0);
	if (nstate) {
		/* one allocation for both moments */
		p->m = calloc(nstate, sizeof(float));
		if (!p->m) {
			free(p);
			return FL_ENOMEM;
		}
		if (o->kind == MODEL_OPT_ADAMW)
			p->v = p->m + n;
	}
	*out = p;
	return 0;
}

void model_optim_free(model_optim *o)
{
	if (!o)
		return;
	free(o->m);
	free(o);
}

void model_optim_reset(model_optim *o)
{
	size_t nstate = o->o.kind == MODEL_OPT_ADAMW ? 2 * o->n : (o->m ? o->n : 0);
	if (nstate)
		memset(o->m, 0, nstate * sizeof(float));
	o->t = 0;
}

int model_optim_step(model_optim *o, float *p, const float *g, size_t n, float lr)
{
	if (n != o->n)
		return FL_ESHAPE;
	o->t++;
	if (o->o.kind == MODEL_OPT_ADAMW)
		model_adamw_update(p, g, o->m, o->v, n, lr, o->o.b1, o->o.b2, o->o.eps,
		                   o->o.weight_decay, o->t);
	else
		model_sgd_update(p, g, o->m, n, lr, o->o.momentum, o->o.weight_decay);
	return 0;
}

double model_grad_norm(const float *g, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)g[i] * g[i];
	return sqrt(s);
}

double model_grad_clip(float *g, size_t n, double max_norm)
{
	double norm = model_grad_norm(g, n);
	if (max_norm > 0 && norm > max_norm) {
		float k = (float)(max_norm / norm);
		for (size_t i = 0; i < n; i++)
			g[i] *= k;
	}
	return norm;
}

float model_lr_cosine(int step, int total, int warmup, float lr_max, float lr_min)
{
	if (warmup > 0 && step < warmup)
		return lr_max * (float)(step + 1) / (float)warmup;
	if (total <= warmup || step >= total)
		return step >= total && total > warmup ? lr_min : lr_max;
	double f = (double)(step - warmup) / (double)(total - warmup);
	return (float)(lr_min + 0.5 * (lr_max - lr_min) * (1.0 + cos(M_PI * f)));
}
