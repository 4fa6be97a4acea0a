/*
 * lora/peft.c — PEFT export and import (see lora/peft.h): the safetensors
 * weights through core/safetensors, the config JSON through cJSON; export
 * writes both atomically, import treats both files as untrusted input.
 */
#include "lora/peft.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
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

int lora_peft_config_read(const char *dir, lora_peft_config *pc, char *err, size_t errlen)
{
	char path[4200];
	char *json = NULL;
	size_t len;
	cJSON *c = NULL, *it;
	int rv;

	memset(pc, 0, sizeof *pc);
	snprintf(path, sizeof path, "%s/%s", dir, LORA_PEFT_CONFIG_FILE);
	if ((rv = fl_read_file(path, LORA_PEFT_MAX_CONFIG, &json, &len)) != 0) {
		fl_seterr(err, errlen, "%s: %s", path, strerror(errno));
		return rv;
	}
	c = cJSON_ParseWithLength(json, len);
	if (!cJSON_IsObject(c)) {
		fl_seterr(err, errlen, "%s: not a JSON object", path);
		rv = FL_EFORMAT;
		goto fail;
	}
	it = cJSON_GetObjectItemCaseSensitive(c, "peft_type");
	if (!cJSON_IsString(it) || strcmp(it->valuestring, "LORA")) {
		fl_seterr(err, errlen, "%s: peft_type is not \"LORA\"", path);
		rv = FL_ENOTSUP;
		goto fail;
	}
	it = cJSON_GetObjectItemCaseSensitive(c, "r");
	if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > 4096 ||
	    it->valuedouble != (int)it->valuedouble) {
		fl_seterr(err, errlen, "%s: bad or missing r", path);
		rv = FL_EFORMAT;
		goto fail;
	}
	pc->r = (int)it->valuedouble;
	it = cJSON_GetObjectItemCaseSensitive(c, "lora_alpha");
	if (!cJSON_IsNumber(it) || !(it->valuedouble > 0) || !isfinite(it->valuedouble)) {
		fl_seterr(err, errlen, "%s: bad or missing lora_alpha", path);
		rv = FL_EFORMAT;
		goto fail;
	}
	pc->alpha = it->valuedouble;
	/* features that change the function computed: refused, not ignored */
	{
		static const char *const flags[] = {"use_rslora", "use_dora"};
		for (unsigned i = 0; i < sizeof flags / sizeof flags[0]; i++) {
			it = cJSON_GetObjectItemCaseSensitive(c, flags[i]);
			if (cJSON_IsTrue(it)) {
				fl_seterr(err, errlen, "%s: %s is not supported", path, flags[i]);
				rv = FL_ENOTSUP;
				goto fail;
			}
		}
		static const char *const pats[] = {"rank_pattern", "alpha_pattern"};
		for (unsigned i = 0; i < sizeof pats / sizeof pats[0]; i++) {
			it = cJSON_GetObjectItemCaseSensitive(c, pats[i]);
			if (it && !cJSON_IsNull(it) &&
			    !(cJSON_IsObject(it) && cJSON_GetArraySize(it) == 0)) {
				fl_seterr(err, errlen, "%s: %s is not supported", path, pats[i]);
				rv = FL_ENOTSUP;
				goto fail;
			}
		}
		it = cJSON_GetObjectItemCaseSensitive(c, "layers_to_transform");
		if (it && !cJSON_IsNull(it)) {
			fl_seterr(err, errlen, "%s: layers_to_transform is not supported", path);
			rv = FL_ENOTSUP;
			goto fail;
		}
	}
	it = cJSON_GetObjectItemCaseSensitive(c, "target_modules");
	if (cJSON_IsArray(it)) {
		cJSON *e;
		cJSON_ArrayForEach(e, it)
		{
			if (!cJSON_IsString(e) ||
			    strlen(pc->targets) + strlen(e->valuestring) + 2 >=
			        sizeof pc->targets) {
				fl_seterr(err, errlen, "%s: bad target_modules", path);
				rv = FL_EFORMAT;
				goto fail;
			}
			if (pc->targets[0])
				strcat(pc->targets, ",");
			strcat(pc->targets, e->valuestring);
		}
	} else if (cJSON_IsString(it) && strlen(it->valuestring) < sizeof pc->targets &&
	           !strpbrk(it->valuestring, ".*()[]|\\^$+?")) {
		/* a single module name; regular expressions are not supported */
		snprintf(pc->targets, sizeof pc->targets, "%s", it->valuestring);
	} else {
		fl_seterr(err, errlen, "%s: target_modules must be a list of module names", path);
		rv = FL_ENOTSUP;
		goto fail;
	}
	rv = 0;
fail:
	cJSON_Delete(c);
	free(json);
	return rv;
}

int lora_peft_weights_read(const char *dir, lora_adapter *ad, char *err, size_t errlen)
{
	char path[4200], name[LORA_NAME_MAX + 64];
	fl_st_file *st = NULL;
	int rv, used = 0;

	snprintf(path, sizeof path, "%s/%s", dir, LORA_PEFT_WEIGHTS_FILE);
	if ((rv = fl_st_open(&st, path, err, errlen)) != 0)
		return rv;
	for (int i = 0; i < ad->n; i++) {
		lora_mat *mt = &ad->mats[i];
		int64_t sa[2] = {ad->r, mt->in}, sb[2] = {mt->out, ad->r};
		snprintf(name, sizeof name, LORA_PEFT_PREFIX "%s.lora_A.weight", mt->name);
		if ((rv = fl_st_load_f32(st, name, 2, sa, mt->A)) != 0) {
			if (rv == FL_ENOENT)
				fl_seterr(err, errlen, "%s: tensor %s is missing", path, name);
			else
				fl_seterr(err, errlen, "%s", st->err);
			goto fail;
		}
		snprintf(name, sizeof name, LORA_PEFT_PREFIX "%s.lora_B.weight", mt->name);
		if ((rv = fl_st_load_f32(st, name, 2, sb, mt->B)) != 0) {
			if (rv == FL_ENOENT)
				fl_seterr(err, errlen, "%s: tensor %s is missing", path, name);
			else
				fl_seterr(err, errlen, "%s", st->err);
			goto fail;
		}
		used += 2;
	}
	if (st->n != used) {
		for (int i = 0; i < st->n; i++) {
			const char *tn = st->tensors[i].name;
			int known = 0;
			for (int k = 0; k < ad->n && !known; k++) {
				size_t pl = strlen(LORA_PEFT_PREFIX), nl = strlen(ad->mats[k].name);
				known = !strncmp(tn, LORA_PEFT_PREFIX, pl) &&
				        !strncmp(tn + pl, ad->mats[k].name, nl) &&
				        (!strcmp(tn + pl + nl, ".lora_A.weight") ||
				         !strcmp(tn + pl + nl, ".lora_B.weight"));
			}
			if (!known) {
				fl_seterr(err, errlen, "%s: unexpected tensor %s", path, tn);
				break;
			}
		}
		rv = FL_ESHAPE;
		goto fail;
	}
	for (size_t i = 0; i < ad->n_a + ad->n_b; i++)
		if (!isfinite(ad->params[i])) {
			fl_seterr(err, errlen, "%s: NaN or Inf in the adapter", path);
			rv = FL_ENONFINITE;
			goto fail;
		}
	rv = 0;
fail:
	fl_st_close(st);
	return rv;
}
