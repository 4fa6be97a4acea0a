/*
 * lora/peft.c — PEFT export (see lora/peft.h): the safetensors weights through
 * core/safetensors, the config JSON through cJSON, both atomically.
 */
#include "lora/peft.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/safetensors.h"

/* Last dot-separated component of a matrix name ("...self_attn.q_proj" -> "q_proj"). */
static const char *last_component(const char *name)
{
	const char *d = strrchr(name, '.');
	return d ? d + 1 : name;
}

char *lora_peft_config_json(const lora_adapter *a, const char *base_model)
{
	cJSON *root = cJSON_CreateObject(), *tm;
	char *txt = NULL;
	int ok = 1;

	if (!root)
		return NULL;
	ok &= cJSON_AddStringToObject(root, "peft_type", "LORA") != NULL;
	ok &= cJSON_AddStringToObject(root, "task_type", "CAUSAL_LM") != NULL;
	ok &= cJSON_AddNumberToObject(root, "r", a->r) != NULL;
	ok &= cJSON_AddNumberToObject(root, "lora_alpha", (double)a->alpha) != NULL;
	tm = cJSON_AddArrayToObject(root, "target_modules");
	ok &= tm != NULL;
	for (int i = 0; ok && i < a->n; i++) {
		const char *c = last_component(a->mats[i].name);
		int seen = 0;
		for (int j = 0; j < i && !seen; j++)
			seen = !strcmp(last_component(a->mats[j].name), c);
		if (!seen)
			ok &= cJSON_AddItemToArray(tm, cJSON_CreateString(c));
	}
	if (base_model)
		ok &= cJSON_AddStringToObject(root, "base_model_name_or_path", base_model) != NULL;
	else
		ok &= cJSON_AddNullToObject(root, "base_model_name_or_path") != NULL;
	ok &= cJSON_AddNumberToObject(root, "lora_dropout", 0) != NULL;
	ok &= cJSON_AddStringToObject(root, "bias", "none") != NULL;
	ok &= cJSON_AddFalseToObject(root, "fan_in_fan_out") != NULL;
	ok &= cJSON_AddTrueToObject(root, "inference_mode") != NULL;
	ok &= cJSON_AddTrueToObject(root, "init_lora_weights") != NULL;
	ok &= cJSON_AddNullToObject(root, "modules_to_save") != NULL;
	ok &= cJSON_AddFalseToObject(root, "use_rslora") != NULL;
	ok &= cJSON_AddNullToObject(root, "layers_to_transform") != NULL;
	ok &= cJSON_AddNullToObject(root, "revision") != NULL;
	if (ok)
		txt = cJSON_Print(root);
	cJSON_Delete(root);
	return txt;
}

int lora_peft_export(const lora_adapter *a, const char *dir, const char *base_model, char *err,
                     size_t errlen)
{
	fl_st_writer *w = NULL;
	char path[4096], name[LORA_NAME_MAX + 64], *cfg = NULL;
	int rv;

	if (fl_mkdirs(dir) != 0) {
		fl_seterr(err, errlen, "%s: cannot create the folder: %s", dir, strerror(errno));
		return FL_EIO;
	}
	if ((rv = fl_st_writer_new(&w)) != 0 || (rv = fl_st_writer_meta(w, "format", "pt")) != 0)
		goto nomem;
	for (int i = 0; i < a->n; i++) {
		const lora_mat *m = &a->mats[i];
		int64_t sa[2] = {a->r, m->in}, sb[2] = {m->out, a->r};
		snprintf(name, sizeof name, LORA_PEFT_PREFIX "%s.lora_A.weight", m->name);
		if ((rv = fl_st_writer_add(w, name, FL_ST_F32, 2, sa, m->A)) != 0)
			goto bad;
		snprintf(name, sizeof name, LORA_PEFT_PREFIX "%s.lora_B.weight", m->name);
		if ((rv = fl_st_writer_add(w, name, FL_ST_F32, 2, sb, m->B)) != 0)
			goto bad;
	}
	snprintf(path, sizeof path, "%s/%s", dir, LORA_PEFT_WEIGHTS_FILE);
	if ((rv = fl_st_writer_write(w, path, err, errlen)) != 0)
		goto done;
	cfg = lora_peft_config_json(a, base_model);
	if (!cfg) {
		rv = FL_ENOMEM;
		goto nomem;
	}
	snprintf(path, sizeof path, "%s/%s", dir, LORA_PEFT_CONFIG_FILE);
	if (fl_write_atomic(path, cfg, strlen(cfg), 0644) != 0) {
		rv = FL_EIO;
		fl_seterr(err, errlen, "%s: write failed: %s", path, strerror(errno));
		goto done;
	}
	rv = 0;
	goto done;
bad:
	fl_seterr(err, errlen, "%s: cannot add tensor '%s': %s", dir, name, fl_strerror(rv));
	goto done;
nomem:
	fl_seterr(err, errlen, "%s: out of memory", dir);
done:
	free(cfg);
	fl_st_writer_free(w);
	return rv;
}
