/*
 * model/task_impl.h — private: how a task implementation plugs into the
 * dispatch of model/task.c. Not for callers of model/task.h.
 *
 * A task implementation (model/linreg.c, model/lm_task.c) defines one
 * `const model_task_ops` table with a non-NULL entry for every operation and
 * names it below. model/task.c picks the table by opts->task and forwards
 * every model_task_* call to it with the implementation's own state (`impl`).
 * The lm table is declared weak in task.c, so the build links without
 * model/lm_task.c and "lm" then answers FL_ENOTSUP.
 *
 * Contracts each operation keeps (model/task.h states them for callers):
 *   open:        *impl gets a new state on success, stays NULL on failure;
 *                client_index -1 loads no data (shape only).
 *   close:       frees impl; NULL is a no-op.
 *   adapter_new: a new adapter of the task's shape, PEFT init from seed.
 *   train:       FL_ESHAPE if ad is not of the task's shape; FL_ESTATE with
 *                no data (client_index -1); FL_EINVAL when p->dp_clip > 0
 *                and noise is NULL.
 *   eval:        held-out loss; acc NaN where the task has no accuracy.
 */
#ifndef FL_MODEL_TASK_IMPL_H
#define FL_MODEL_TASK_IMPL_H

#include "model/task.h"

typedef struct model_task_ops {
	const char *name; /* the opts->task string that selects this table */
	int (*open)(void **impl, const model_task_opts *o);
	void (*close)(void *impl);
	int (*adapter_new)(void *impl, uint64_t seed, lora_adapter **out);
	int (*train)(void *impl, lora_adapter *ad, const model_train_params *p,
	             struct priv_noise *noise, model_train_result *res);
	int (*eval)(void *impl, const lora_adapter *ad, double *loss, double *acc);
	long (*num_samples)(const void *impl);
} model_task_ops;

/* model/linreg.c */
extern const model_task_ops model_linreg_ops;
/* model/lm_task.c (weak in task.c until it exists) */
extern const model_task_ops model_lm_ops;

#endif
