/*
 * model/task.c — dispatch of model/task.h to a task implementation by name
 * ("linreg" -> model/linreg.c, "lm" -> model/lm_task.c) through the
 * model_task_ops tables of model/task_impl.h. Holds no numerics itself.
 */
#include "model/task.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "model/task_impl.h"

/* The lm task may not be linked in (see model/task_impl.h). */
#pragma weak model_lm_ops

struct model_task {
	const model_task_ops *ops;
	void *impl;
};

void model_task_opts_default(model_task_opts *o)
{
	memset(o, 0, sizeof *o);
	o->task = "linreg";
	o->seed = 1;
	o->client_index = -1;
	o->num_clients = 4;
	o->rank = 4;
	o->alpha = 8;
	o->linreg_layers = 4;
	o->linreg_dim = 64;
	o->linreg_samples = 512;
	o->lora_targets = "q_proj,v_proj";
	o->seq_len = 64;
	o->device = "cpu";
}

static const model_task_ops *task_ops_find(const char *name)
{
	if (!name)
		return NULL;
	if (!strcmp(name, model_linreg_ops.name))
		return &model_linreg_ops;
	if (&model_lm_ops && !strcmp(name, "lm"))
		return &model_lm_ops;
	return NULL;
}

int model_task_open(model_task **out, const model_task_opts *o)
{
	const model_task_ops *ops;
	model_task *t;
	int rv;

	*out = NULL;
	if (!o || !o->task)
		return FL_EINVAL;
	ops = task_ops_find(o->task);
	if (!ops)
		return strcmp(o->task, "lm") ? FL_EINVAL : FL_ENOTSUP;
	t = calloc(1, sizeof *t);
	if (!t)
		return FL_ENOMEM;
	t->ops = ops;
	if ((rv = ops->open(&t->impl, o)) != 0) {
		free(t);
		return rv;
	}
	*out = t;
	return 0;
}

void model_task_close(model_task *t)
{
	if (!t)
		return;
	t->ops->close(t->impl);
	free(t);
}

int model_task_adapter_new(model_task *t, uint64_t seed, lora_adapter **out)
{
	*out = NULL;
	return t->ops->adapter_new(t->impl, seed, out);
}

int model_task_train(model_task *t, lora_adapter *ad, const model_train_params *p,
                     struct priv_noise *noise, model_train_result *res)
{
	if (!ad || !p || !res)
		return FL_EINVAL;
	if (p->dp_clip > 0 && !noise)
		return FL_EINVAL;
	return t->ops->train(t->impl, ad, p, noise, res);
}

int model_task_eval(model_task *t, const lora_adapter *ad, double *loss, double *acc)
{
	double l, a;
	return t->ops->eval(t->impl, ad, loss ? loss : &l, acc ? acc : &a);
}

long model_task_num_samples(const model_task *t)
{
	return t->ops->num_samples(t->impl);
}
