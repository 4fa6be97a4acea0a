/*
 * model/llama.c — the Llama decoder on the CPU (see model/llama.h): parameter
 * layout, Hugging Face loading and saving, LoRA attachment, forward, backward
 * (summed and per-example LoRA gradients) and a FLOP count.
 *
 * Layout follows llm.c: parameters stacked over layers in one allocation,
 * activations in one allocation whose per-layer slices are indexed with the
 * current (B,T), so a smaller batch reuses the buffers of a larger one. The
 * backward reuses one set of per-layer gradient buffers (acts.d*) from the
 * top layer down.
 *
 * Attention is the flash-style pair of model/ops.h: per layer only the
 * output and the rows' logsumexp are kept, never the (T,T) probabilities.
 * With gradient checkpointing (model_llama_set_grad_checkpoint) the forward
 * keeps only each layer's input (the residual stream entering it) and one
 * layer's worth of everything else; the backward recomputes each layer's
 * forward with the same ops on the same inputs, so the gradients are the
 * same bit for bit.
 *
 * Not here: threading beyond what OpenBLAS does inside each product; KV
 * caching for generation.
 */
#include "model/llama.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/st_folder.h"
#include "core/safetensors.h"
#include "model/ops.h"

static const char *const module_names[MODEL_NMODULE] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
static const char *const module_paths[MODEL_NMODULE] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
/* parameter tensor of each module, and of its bias (-1: the module never has one) */
static const int module_param[MODEL_NMODULE] = {
    MODEL_P_WQ, MODEL_P_WK, MODEL_P_WV, MODEL_P_WO, MODEL_P_WGATE, MODEL_P_WUP, MODEL_P_WDOWN};
static const int module_bias[MODEL_NMODULE] = {MODEL_P_BQ, MODEL_P_BK, MODEL_P_BV, MODEL_P_BO,
                                               -1,         -1,         -1};

const char *model_module_name(int module)
{
	return module >= 0 && module < MODEL_NMODULE ? module_names[module] : "?";
}

const char *model_module_path(int module)
{
	return module >= 0 && module < MODEL_NMODULE ? module_paths[module] : "?";
}

/* in and out features of a module's weight (out, in). */
static void module_dims(const model_config *c, int mod, int *in, int *out)
{
	int C = c->hidden_size, I = c->intermediate_size;
	int QD = c->num_heads * c->head_dim, KD = c->num_kv_heads * c->head_dim;
	switch (mod) {
	case MODEL_M_Q:
		*in = C, *out = QD;
		break;
	case MODEL_M_K:
	case MODEL_M_V:
		*in = C, *out = KD;
		break;
	case MODEL_M_O:
		*in = QD, *out = C;
		break;
	case MODEL_M_GATE:
	case MODEL_M_UP:
		*in = C, *out = I;
		break;
	default:
		*in = I, *out = C;
		break;
	}
}

static void param_sizes(const model_config *c, size_t *sz)
{
	size_t C = (size_t)c->hidden_size, L = (size_t)c->num_layers, V = (size_t)c->vocab_size;
	sz[MODEL_P_EMBED] = V * C;
	sz[MODEL_P_LN1] = L * C;
	sz[MODEL_P_LN2] = L * C;
	for (int m = 0; m < MODEL_NMODULE; m++) {
		int in, out;
		module_dims(c, m, &in, &out);
		sz[module_param[m]] = L * (size_t)in * out;
	}
	sz[MODEL_P_NORM] = C;
	sz[MODEL_P_HEAD] = c->tie_word_embeddings ? 0 : V * C;
	for (int m = 0; m < MODEL_NMODULE; m++) {
		int in, out;
		module_dims(c, m, &in, &out);
		if (module_bias[m] >= 0)
			sz[module_bias[m]] =
			    (m == MODEL_M_O ? c->o_bias : c->qkv_bias) ? L * (size_t)out : 0;
	}
	sz[MODEL_P_QNORM] = sz[MODEL_P_KNORM] = c->qk_norm ? L * (size_t)c->head_dim : 0;
}

/* Points t[] into base following sz[]; the tied head aliases the embedding. */
static void point_tensors(float *base, const size_t *sz, float **t, int tied)
{
	size_t off = 0;
	for (int i = 0; i < MODEL_NPARAM; i++) {
		t[i] = base + off;
		off += sz[i];
	}
	if (tied)
		t[MODEL_P_HEAD] = t[MODEL_P_EMBED];
}

/* Weight of module `mod` in layer l (out, in) inside the table t. */
static float *layer_weight(const model_llama *m, float *const *t, int l, int mod)
{
	int in, out;
	module_dims(&m->cfg, mod, &in, &out);
	return t[module_param[mod]] + (size_t)l * in * out;
}

/* Bias (out) of module `mod` in layer l inside the table t, NULL when the
 * model has none there. */
static float *layer_bias(const model_llama *m, float *const *t, int l, int mod)
{
	int in, out, b = module_bias[mod];
	if (b < 0 || m->param_size[b] == 0)
		return NULL;
	module_dims(&m->cfg, mod, &in, &out);
	return t[b] + (size_t)l * out;
}

static int alloc_model(model_llama **out, const model_config *cfg, const char *name)
{
	int rv;
	*out = NULL;
	if ((rv = model_config_validate(cfg, name)) != 0)
		return rv;
	model_llama *m = calloc(1, sizeof *m);
	if (!m)
		return FL_ENOMEM;
	m->cfg = *cfg;
	param_sizes(cfg, m->param_size);
	for (int i = 0; i < MODEL_NPARAM; i++)
		m->nparams += m->param_size[i];
	m->params = malloc(m->nparams * sizeof(float));
	m->lora_idx = malloc((size_t)cfg->num_layers * MODEL_NMODULE * sizeof(int));
	m->rope_inv_freq = malloc((size_t)(cfg->head_dim / 2) * sizeof(float));
	if (!m->params || !m->lora_idx || !m->rope_inv_freq) {
		model_llama_free(m);
		return FL_ENOMEM;
	}
	model_rope_inv_freq(m->rope_inv_freq, cfg->head_dim, cfg->rope_theta, &cfg->rope_scaling);
	for (int i = 0; i < cfg->num_layers * MODEL_NMODULE; i++)
		m->lora_idx[i] = -1;
	point_tensors(m->params, m->param_size, m->param, cfg->tie_word_embeddings);
	m->loss = NAN;
	*out = m;
	return 0;
}

int model_llama_new(model_llama **out, const model_config *cfg, uint64_t seed)
{
	int rv = alloc_model(out, cfg, "model config");
	if (rv)
		return rv;
	model_llama *m = *out;
	fl_rng rng;
	fl_rng_init(&rng, seed, 0x4c4c414d41ULL); /* a stream of its own */
	for (int i = 0; i < MODEL_NPARAM; i++) {
		float *p = m->param[i];
		size_t n = m->param_size[i];
		int norm = i == MODEL_P_LN1 || i == MODEL_P_LN2 || i == MODEL_P_NORM ||
		           i == MODEL_P_QNORM || i == MODEL_P_KNORM;
		int bias = i == MODEL_P_BQ || i == MODEL_P_BK || i == MODEL_P_BV || i == MODEL_P_BO;
		for (size_t j = 0; j < n; j++) /* biases start at 0, as transformers inits them */
			p[j] = norm ? 1.0f : bias ? 0.0f : (float)(0.02 * fl_rng_normal(&rng));
	}
	return 0;
}

void model_llama_free(model_llama *m)
{
	if (!m)
		return;
	free(m->params);
	free(m->grads);
	free(m->acts_mem);
	free(m->tokens);
	free(m->targets);
	free(m->lora_idx);
	free(m->lora_grad);
	free(m->rope_inv_freq);
	free(m);
}

/* ---- Hugging Face files ---- */

/* Tensors of one layer in the file layout: ln1, the seven modules, ln2,
 * then what the family adds (q/k/v biases, o bias, q/k norms). */
enum {
	HF_LN1 = 0,
	HF_MOD0 = 1, /* + MODEL_M_* */
	HF_LN2 = HF_MOD0 + MODEL_NMODULE,
	HF_BIAS0, /* + MODEL_M_Q .. MODEL_M_O */
	HF_QNORM = HF_BIAS0 + 4,
	HF_KNORM,
	HF_NITEM
};

/* The items of a layer this model has, in file order, into it[]; their count. */
static int hf_layer_items(const model_llama *m, int *it)
{
	int n = 0;
	for (int j = 0; j < HF_BIAS0; j++)
		it[n++] = j;
	for (int mod = MODEL_M_Q; mod <= MODEL_M_O; mod++)
		if (m->param_size[module_bias[mod]])
			it[n++] = HF_BIAS0 + mod;
	if (m->cfg.qk_norm) {
		it[n++] = HF_QNORM;
		it[n++] = HF_KNORM;
	}
	return n;
}

/* Name and shape of tensor k of the file layout: k < L * PL are the
 * per-layer tensors (layer k / PL, item hf_layer_items[k % PL]), then embed,
 * norm, head. Returns the parameter slice it maps to. */
static float *hf_tensor(const model_llama *m, float *const *t, int k, char *name, size_t nlen,
                        int64_t *shape, int *ndim)
{
	const model_config *c = &m->cfg;
	int L = c->num_layers, C = c->hidden_size, it[HF_NITEM];
	int PL = hf_layer_items(m, it);
	if (k < L * PL) {
		int l = k / PL, j = it[k % PL];
		*ndim = 1;
		if (j == HF_LN1 || j == HF_LN2) {
			snprintf(name, nlen, "model.layers.%d.%s.weight", l,
			         j == HF_LN1 ? "input_layernorm" : "post_attention_layernorm");
			shape[0] = C;
			return t[j == HF_LN1 ? MODEL_P_LN1 : MODEL_P_LN2] + (size_t)l * C;
		}
		if (j == HF_QNORM || j == HF_KNORM) {
			snprintf(name, nlen, "model.layers.%d.self_attn.%s.weight", l,
			         j == HF_QNORM ? "q_norm" : "k_norm");
			shape[0] = c->head_dim;
			return t[j == HF_QNORM ? MODEL_P_QNORM : MODEL_P_KNORM] +
			       (size_t)l * c->head_dim;
		}
		int in, out, mod = j >= HF_BIAS0 ? j - HF_BIAS0 : j - HF_MOD0;
		module_dims(c, mod, &in, &out);
		shape[0] = out;
		if (j >= HF_BIAS0) {
			snprintf(name, nlen, "model.layers.%d.%s.bias", l, module_paths[mod]);
			return layer_bias(m, t, l, mod);
		}
		snprintf(name, nlen, "model.layers.%d.%s.weight", l, module_paths[mod]);
		*ndim = 2;
		shape[1] = in;
		return layer_weight(m, t, l, mod);
	}
	k -= L * PL;
	*ndim = k == 1 ? 1 : 2;
	shape[0] = k == 1 ? C : c->vocab_size;
	shape[1] = C;
	snprintf(name, nlen, "%s",
	         k == 0   ? "model.embed_tokens.weight"
	         : k == 1 ? "model.norm.weight"
	                  : "lm_head.weight");
	return t[k == 0 ? MODEL_P_EMBED : k == 1 ? MODEL_P_NORM : MODEL_P_HEAD];
}

static int hf_count(const model_llama *m)
{
	int it[HF_NITEM];
	return m->cfg.num_layers * hf_layer_items(m, it) + 2 + (m->cfg.tie_word_embeddings ? 0 : 1);
}

static int join_path(char *buf, size_t n, const char *dir, const char *file)
{
	int k = snprintf(buf, n, "%s/%s", dir, file);
	return k < 0 || (size_t)k >= n ? FL_EINVAL : 0;
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

/* When dir holds its weights in a form other than one model.safetensors (a
 * sharded checkpoint, PyTorch pickles), writes what to do into err and
 * returns 1; 0 when it has none of those either. */
static int other_weights(const char *dir, char *err, size_t errlen)
{
	static const struct {
		const char *file, *what;
	} other[] = {
	    {"pytorch_model.bin",
	     "PyTorch weights, which fedlora does not read; save them as "
	     "model.safetensors (save_pretrained(..., safe_serialization=True))"},
	    {"pytorch_model.bin.index.json",
	     "sharded PyTorch weights, which fedlora does not read; save them as one "
	     "model.safetensors"},
	};
	char path[4096];
	struct stat sb;
	for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
		if (!join_path(path, sizeof path, dir, other[i].file) && stat(path, &sb) == 0) {
			snprintf(err, errlen,
			         "%s/model.safetensors is missing: the folder has %s, %s", dir,
			         other[i].file, other[i].what);
			return 1;
		}
	return 0;
}

int model_llama_load(model_llama **out, const char *dir)
{
	int rv;
	char cpath[4096], err[FL_ST_FOLDER_ERR];
	model_config cfg;
	model_llama *m = NULL;
	fl_st_folder *fo = NULL;
	*out = NULL;
	if (join_path(cpath, sizeof cpath, dir, "config.json"))
		return FL_EINVAL;
	if ((rv = model_config_load(&cfg, cpath)) != 0)
		return rv;
	if ((rv = alloc_model(&m, &cfg, cpath)) != 0)
		return rv;
	err[0] = 0;
	/* DIR/model.safetensors, or the index and its shards */
	if ((rv = fl_st_folder_open(&fo, dir, err, sizeof err)) != 0) {
		char why[1024];
		if (rv == FL_ENOENT && other_weights(dir, why, sizeof why)) {
			rv = FL_ENOTSUP;
			fl_log(FL_LOG_ERROR, "model", "%s", why);
			goto fail;
		}
		fl_log(FL_LOG_ERROR, "model", "%s", err[0] ? err : dir);
		goto fail;
	}
	const char *wpath = fo->path;
	int n = hf_count(m);
	for (int k = 0; k < n; k++) {
		char name[256];
		int64_t shape[2];
		int ndim;
		float *dst = hf_tensor(m, m->param, k, name, sizeof name, shape, &ndim);
		if ((rv = fl_st_folder_load_f32(fo, name, ndim, shape, dst)) != 0) {
			fl_log(FL_LOG_ERROR, "model", "%s", fo->err);
			goto fail;
		}
		size_t cnt = (size_t)shape[0] * (ndim == 2 ? (size_t)shape[1] : 1);
		for (size_t i = 0; i < cnt; i++)
			if (!isfinite(dst[i])) {
				fl_st_file *f;
				fl_st_folder_find(fo, name, &f);
				fl_log(FL_LOG_ERROR, "model", "%s: tensor %s has NaN or Inf values",
				       f->path, name);
				rv = FL_ENONFINITE;
				goto fail;
			}
	}
	/* every tensor of the folder must be one we know */
	for (int i = 0; i < fo->n; i++) {
		const char *tn = fo->ent[i].name;
		if (ends_with(tn, "rotary_emb.inv_freq"))
			continue; /* a buffer older transformers saved; recomputed here */
		if (cfg.tie_word_embeddings && !strcmp(tn, "lm_head.weight")) {
			fl_log(FL_LOG_WARN, "model",
			       "%s: lm_head.weight ignored (tie_word_embeddings is true)", wpath);
			continue;
		}
		int known = 0;
		for (int k = 0; k < n && !known; k++) {
			char name[256];
			int64_t shape[2];
			int ndim;
			hf_tensor(m, m->param, k, name, sizeof name, shape, &ndim);
			known = !strcmp(name, tn);
		}
		if (!known) {
			fl_log(FL_LOG_ERROR, "model", "%s: unexpected tensor %s",
			       fo->files[fo->ent[i].shard]->path, tn);
			rv = FL_ESHAPE;
			goto fail;
		}
	}
	fl_st_folder_close(fo);
	*out = m;
	return 0;
fail:
	fl_st_folder_close(fo);
	model_llama_free(m);
	return rv;
}

int model_llama_save(const model_llama *m, const char *dir)
{
	int rv;
	char cpath[4096], wpath[4096], err[FL_ST_ERR_MAX];
	fl_st_writer *w = NULL;
	if (join_path(cpath, sizeof cpath, dir, "config.json") ||
	    join_path(wpath, sizeof wpath, dir, "model.safetensors"))
		return FL_EINVAL;
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		fl_log(FL_LOG_ERROR, "model", "%s: cannot create: %s", dir, strerror(errno));
		return FL_EIO;
	}
	if ((rv = fl_st_writer_new(&w)) != 0)
		return rv;
	/* the order transformers uses: embedding, layers, norm, head */
	int n = hf_count(m), LP = n - 2 - (m->cfg.tie_word_embeddings ? 0 : 1);
	for (int j = 0; j < n; j++) {
		int k = j == 0 ? LP : j <= LP ? j - 1 : j;
		char name[256];
		int64_t shape[2];
		int ndim;
		const float *src = hf_tensor(m, m->param, k, name, sizeof name, shape, &ndim);
		if ((rv = fl_st_writer_add(w, name, FL_ST_F32, ndim, shape, src)) != 0)
			goto fail;
	}
	if ((rv = fl_st_writer_meta(w, "format", "pt")) != 0)
		goto fail;
	err[0] = 0;
	if ((rv = fl_st_writer_write(w, wpath, err, sizeof err)) != 0) {
		fl_log(FL_LOG_ERROR, "model", "%s", err[0] ? err : wpath);
		goto fail;
	}
	rv = model_config_save(&m->cfg, cpath);
fail:
	fl_st_writer_free(w);
	return rv;
}

/* ---- LoRA ---- */

int model_lora_adapter_new(const model_config *cfg, const char *targets, int r, float alpha,
                           lora_adapter **out)
{
	int want[MODEL_NMODULE] = {0}, rv;
	*out = NULL;
	if (r < 1 || r > MODEL_OPS_MAX_T || !targets || !(alpha > 0) || !isfinite(alpha))
		return FL_EINVAL;
	const char *s = targets;
	while (*s) {
		const char *e = strchr(s, ',');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		int found = 0;
		if (len == 3 && !strncmp(s, "all", 3)) {
			for (int i = 0; i < MODEL_NMODULE; i++)
				want[i] = 1;
			found = 1;
		}
		for (int i = 0; i < MODEL_NMODULE && !found; i++)
			if (strlen(module_names[i]) == len && !strncmp(s, module_names[i], len))
				want[i] = found = 1;
		if (!found && len > 0) {
			fl_log(FL_LOG_ERROR, "model",
			       "unknown LoRA target \"%.*s\" (known: q_proj, k_proj, v_proj, "
			       "o_proj, gate_proj, up_proj, down_proj, all)",
			       (int)len, s);
			return FL_EINVAL;
		}
		s += len;
		if (*s == ',')
			s++;
	}
	int per = 0;
	for (int i = 0; i < MODEL_NMODULE; i++)
		per += want[i];
	if (per == 0) {
		fl_log(FL_LOG_ERROR, "model", "no LoRA targets given");
		return FL_EINVAL;
	}
	int n = per * cfg->num_layers;
	char(*names)[LORA_NAME_MAX] = malloc((size_t)n * LORA_NAME_MAX);
	const char **np = malloc((size_t)n * sizeof *np);
	int *in = malloc((size_t)n * sizeof *in), *od = malloc((size_t)n * sizeof *od);
	if (!names || !np || !in || !od) {
		rv = FL_ENOMEM;
		goto fail;
	}
	int k = 0;
	for (int l = 0; l < cfg->num_layers; l++)
		for (int i = 0; i < MODEL_NMODULE; i++) {
			if (!want[i])
				continue;
			snprintf(names[k], LORA_NAME_MAX, "model.layers.%d.%s", l, module_paths[i]);
			np[k] = names[k];
			module_dims(cfg, i, &in[k], &od[k]);
			k++;
		}
	rv = lora_adapter_new(out, n, np, in, od, r, alpha);
fail:
	free(names);
	free(np);
	free(in);
	free(od);
	return rv;
}

/* Layer and module of an adapter matrix name, or -1. */
static int parse_lora_name(const model_config *c, const char *name, int *layer, int *mod)
{
	const char *pre = "model.layers.";
	size_t pl = strlen(pre);
	if (strncmp(name, pre, pl))
		return -1;
	char *end;
	errno = 0;
	long l = strtol(name + pl, &end, 10);
	if (end == name + pl || errno || l < 0 || l >= c->num_layers || *end != '.')
		return -1;
	for (int i = 0; i < MODEL_NMODULE; i++)
		if (!strcmp(end + 1, module_paths[i])) {
			*layer = (int)l;
			*mod = i;
			return 0;
		}
	return -1;
}

int model_llama_attach_lora(model_llama *m, lora_adapter *ad)
{
	int L = m->cfg.num_layers;
	if (!ad) {
		m->lora = NULL;
		for (int i = 0; i < L * MODEL_NMODULE; i++)
			m->lora_idx[i] = -1;
		if (m->mode == MODEL_TRAIN_LORA || m->mode == MODEL_TRAIN_LORA_B)
			m->mode = MODEL_TRAIN_NONE;
		return 0;
	}
	if (m->lora && lora_adapter_same_shape(m->lora, ad)) {
		m->lora = ad;
		m->lora_scale = lora_adapter_scale(ad);
		return 0;
	}
	if (ad->r < 1 || ad->r > MODEL_OPS_MAX_T || !(ad->alpha > 0)) {
		fl_log(FL_LOG_ERROR, "model", "LoRA adapter: bad rank %d or alpha %g", ad->r,
		       (double)ad->alpha);
		return FL_ESHAPE;
	}
	int *idx = malloc((size_t)L * MODEL_NMODULE * sizeof *idx);
	if (!idx)
		return FL_ENOMEM;
	for (int i = 0; i < L * MODEL_NMODULE; i++)
		idx[i] = -1;
	for (int i = 0; i < ad->n; i++) {
		int l, mod, in, out;
		if (parse_lora_name(&m->cfg, ad->mats[i].name, &l, &mod) != 0) {
			fl_log(FL_LOG_ERROR, "model", "LoRA adapter: matrix %s is not in the model",
			       ad->mats[i].name);
			free(idx);
			return FL_ESHAPE;
		}
		module_dims(&m->cfg, mod, &in, &out);
		if (ad->mats[i].in != in || ad->mats[i].out != out) {
			fl_log(FL_LOG_ERROR, "model",
			       "LoRA adapter: matrix %s is %d x %d, the model's is %d x %d",
			       ad->mats[i].name, ad->mats[i].out, ad->mats[i].in, out, in);
			free(idx);
			return FL_ESHAPE;
		}
		if (idx[l * MODEL_NMODULE + mod] >= 0) {
			fl_log(FL_LOG_ERROR, "model", "LoRA adapter: matrix %s appears twice",
			       ad->mats[i].name);
			free(idx);
			return FL_ESHAPE;
		}
		idx[l * MODEL_NMODULE + mod] = i;
	}
	size_t ng = ad->n_a + ad->n_b;
	float *g = calloc(ng ? ng : 1, sizeof(float));
	if (!g) {
		free(idx);
		return FL_ENOMEM;
	}
	free(m->lora_idx);
	free(m->lora_grad);
	m->lora_idx = idx;
	m->lora_grad = g;
	m->lora_grad_n = ng;
	m->lora = ad;
	m->lora_scale = lora_adapter_scale(ad);
	/* the LoRA activations change size: force a new activation layout */
	free(m->acts_mem);
	m->acts_mem = NULL;
	m->max_B = m->max_T = 0;
	return 0;
}

int model_llama_set_mode(model_llama *m, model_train_mode mode)
{
	switch (mode) {
	case MODEL_TRAIN_NONE:
		break;
	case MODEL_TRAIN_FULL:
		if (!m->grads) {
			m->grads = calloc(m->nparams, sizeof(float));
			if (!m->grads)
				return FL_ENOMEM;
			point_tensors(m->grads, m->param_size, m->grad, m->cfg.tie_word_embeddings);
		}
		break;
	case MODEL_TRAIN_LORA:
	case MODEL_TRAIN_LORA_B:
		if (!m->lora) {
			fl_log(FL_LOG_ERROR, "model", "LoRA training needs an attached adapter");
			return FL_ESTATE;
		}
		break;
	default:
		return FL_EINVAL;
	}
	if (mode != MODEL_TRAIN_FULL && m->grads) {
		free(m->grads);
		m->grads = NULL;
		memset(m->grad, 0, sizeof m->grad);
	}
	m->mode = mode;
	m->have_targets = 0;
	model_llama_zero_grad(m);
	return 0;
}

void model_llama_set_grad_checkpoint(model_llama *m, int on)
{
	m->grad_checkpoint = on != 0;
	m->have_targets = 0; /* the next acts_reserve lays the activations out anew */
}

size_t model_llama_acts_bytes(const model_llama *m)
{
	return m->acts_mem ? m->nacts * sizeof(float) : 0;
}

void model_llama_zero_grad(model_llama *m)
{
	if (m->grads)
		memset(m->grads, 0, m->nparams * sizeof(float));
	if (m->lora_grad)
		memset(m->lora_grad, 0, m->lora_grad_n * sizeof(float));
}

int model_llama_trainable(model_llama *m, float **p, float **g, size_t *n)
{
	switch (m->mode) {
	case MODEL_TRAIN_FULL:
		*p = m->params, *g = m->grads, *n = m->nparams;
		return 0;
	case MODEL_TRAIN_LORA:
		*p = m->lora->params, *g = m->lora_grad, *n = m->lora->n_a + m->lora->n_b;
		return 0;
	case MODEL_TRAIN_LORA_B:
		*p = m->lora->params + m->lora->n_a, *g = m->lora_grad + m->lora->n_a;
		*n = m->lora->n_b;
		return 0;
	default:
		return FL_ESTATE;
	}
}

/* ---- activations ---- */

static int nlora(const model_llama *m)
{
	return m->lora ? m->lora->n : 0;
}

/* Lays the activations for (B,T) out from base (NULL: only counts). */
static size_t acts_layout(const model_llama *m, int B, int T, int train, float *base, model_acts *a)
{
	const model_config *c = &m->cfg;
	/* inference keeps one layer's activations, reused by every layer */
	size_t N = (size_t)B * T, C = (size_t)c->hidden_size;
	/* L slots of the layer inputs (res3 of the layer below) when training,
	 * and of everything else unless it is recomputed (checkpointing) */
	size_t LR = train ? (size_t)c->num_layers : 1, L = train && !m->grad_checkpoint ? LR : 1;
	size_t I = (size_t)c->intermediate_size, V = (size_t)c->vocab_size;
	size_t QD = (size_t)c->num_heads * c->head_dim, KD = (size_t)c->num_kv_heads * c->head_dim;
	size_t R = m->lora ? (size_t)m->lora->r : 0;
	struct {
		float **p;
		size_t n;
	} t[] = {
	    {&a->x0, N * C},
	    {&a->ln1, L * N * C},
	    {&a->ln1_rstd, L * N},
	    {&a->q, L * N * QD},
	    {&a->k, L * N * KD},
	    {&a->qpre, c->qk_norm ? L * N * QD : 0},
	    {&a->kpre, c->qk_norm ? L * N * KD : 0},
	    {&a->q_rstd, c->qk_norm ? L * N * c->num_heads : 0},
	    {&a->k_rstd, c->qk_norm ? L * N * c->num_kv_heads : 0},
	    {&a->v, L * N * KD},
	    {&a->lse, L * B * (size_t)c->num_heads * T},
	    {&a->atty, L * N * QD},
	    {&a->res2, L * N * C},
	    {&a->ln2, L * N * C},
	    {&a->ln2_rstd, L * N},
	    {&a->gate, L * N * I},
	    {&a->up, L * N * I},
	    {&a->swi, L * N * I},
	    {&a->res3, LR * N * C},
	    {&a->lnf, N * C},
	    {&a->lnf_rstd, N},
	    {&a->logits, N * V},
	    {&a->losses, N},
	    {&a->lora_xa, (size_t)nlora(m) * N * R},
	    {&a->dres, train ? N * C : 0},
	    {&a->dln, train ? N * C : 0},
	    {&a->dq, train ? N * QD : 0},
	    {&a->dk, train ? N * KD : 0},
	    {&a->dv, train ? N * KD : 0},
	    {&a->datty, train ? N * QD : 0},
	    {&a->dgate, train ? N * I : 0},
	    {&a->dup, train ? N * I : 0},
	    {&a->dswi, train ? N * I : 0},
	};
	size_t off = 0;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		if (base)
			*t[i].p = t[i].n ? base + off : NULL;
		off += t[i].n;
	}
	return off;
}

/* Makes room for (B,T); the pointers of m->acts are set for (B,T). */
static int acts_reserve(model_llama *m, int B, int T)
{
	int train = m->mode != MODEL_TRAIN_NONE;
	if (!m->acts_mem || B > m->max_B || T > m->max_T || (train && !m->acts_train) ||
	    m->acts_ckpt != m->grad_checkpoint) {
		int nb = B > m->max_B ? B : m->max_B, nt = T > m->max_T ? T : m->max_T;
		model_acts tmp;
		size_t n = acts_layout(m, nb, nt, train, NULL, &tmp);
		float *mem = malloc(n * sizeof(float));
		int *tok = malloc((size_t)nb * nt * sizeof(int));
		int *tg = malloc((size_t)nb * nt * sizeof(int));
		if (!mem || !tok || !tg) {
			free(mem), free(tok), free(tg);
			fl_log(FL_LOG_ERROR, "model", "out of memory for activations of %d x %d",
			       nb, nt);
			return FL_ENOMEM;
		}
		free(m->acts_mem), free(m->tokens), free(m->targets);
		m->acts_mem = mem, m->tokens = tok, m->targets = tg;
		m->nacts = n;
		m->max_B = nb, m->max_T = nt;
		m->acts_train = train;
		m->acts_ckpt = m->grad_checkpoint;
	}
	acts_layout(m, B, T, m->acts_train, m->acts_mem, &m->acts);
	return 0;
}

/* ---- forward ---- */

/* out (N, dims of mod) = x W^T (+ b) (+ LoRA), for layer l: the bias is part
 * of the base layer, as in PEFT's lora.Linear. xa slot of the adapter matrix
 * when adapted. */
static void linear_forward(model_llama *m, int l, int mod, float *out, const float *x, int N)
{
	int in, od;
	module_dims(&m->cfg, mod, &in, &od);
	model_matmul_forward(out, x, layer_weight(m, m->param, l, mod), N, in, od);
	const float *b = layer_bias(m, m->param, l, mod);
	if (b)
		model_bias_forward(out, b, N, od);
	int li = m->lora_idx[l * MODEL_NMODULE + mod];
	if (li >= 0) {
		const lora_mat *lm = &m->lora->mats[li];
		int r = m->lora->r;
		model_lora_forward(out, m->acts.lora_xa + (size_t)li * N * r, x, lm->A, lm->B, N,
		                   in, od, r, m->lora_scale);
	}
}

/* Forward of layer l for the current (B,T): reads resid (N,C), writes the
 * layer's activations into slot sl and the residual leaving it into res3
 * (N,C). The backward calls it again to recompute a checkpointed layer. */
static void layer_forward(model_llama *m, int l, size_t sl, const float *resid, float *res3)
{
	const model_config *c = &m->cfg;
	model_acts *a = &m->acts;
	int B = m->B, T = m->T, N = B * T;
	int C = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
	int Hq = c->num_heads, Hkv = c->num_kv_heads, QD = Hq * D, KD = Hkv * D;
	size_t nC = (size_t)N * C, nI = (size_t)N * I;
	float *ln1 = a->ln1 + sl * nC, *q = a->q + sl * N * QD;
	float *k = a->k + sl * N * KD, *v = a->v + sl * N * KD;
	float *lse = a->lse + sl * B * Hq * T, *atty = a->atty + sl * N * QD;
	float *res2 = a->res2 + sl * nC, *ln2 = a->ln2 + sl * nC;
	float *gate = a->gate + sl * nI, *up = a->up + sl * nI, *swi = a->swi + sl * nI;

	model_rmsnorm_forward(ln1, a->ln1_rstd + sl * N, resid,
	                      m->param[MODEL_P_LN1] + (size_t)l * C, N, C, c->rms_norm_eps);
	if (c->qk_norm) {
		/* Qwen3: q_norm / k_norm over each head's D values (rows of D in the
		 * (N, H*D) layout), after the projections, before the rotation */
		float *qp = a->qpre + sl * N * QD, *kp = a->kpre + sl * N * KD;
		linear_forward(m, l, MODEL_M_Q, qp, ln1, N);
		linear_forward(m, l, MODEL_M_K, kp, ln1, N);
		model_rmsnorm_forward(q, a->q_rstd + sl * N * Hq, qp,
		                      m->param[MODEL_P_QNORM] + (size_t)l * D, N * Hq, D,
		                      c->rms_norm_eps);
		model_rmsnorm_forward(k, a->k_rstd + sl * N * Hkv, kp,
		                      m->param[MODEL_P_KNORM] + (size_t)l * D, N * Hkv, D,
		                      c->rms_norm_eps);
	} else {
		linear_forward(m, l, MODEL_M_Q, q, ln1, N);
		linear_forward(m, l, MODEL_M_K, k, ln1, N);
	}
	linear_forward(m, l, MODEL_M_V, v, ln1, N);
	model_rope_forward(q, B, T, Hq, D, m->rope_inv_freq);
	model_rope_forward(k, B, T, Hkv, D, m->rope_inv_freq);
	model_flash_attention_forward(atty, lse, q, k, v, B, T, Hq, Hkv, D);
	linear_forward(m, l, MODEL_M_O, res2, atty, N);
	for (size_t i = 0; i < nC; i++)
		res2[i] += resid[i];
	model_rmsnorm_forward(ln2, a->ln2_rstd + sl * N, res2,
	                      m->param[MODEL_P_LN2] + (size_t)l * C, N, C, c->rms_norm_eps);
	linear_forward(m, l, MODEL_M_GATE, gate, ln2, N);
	linear_forward(m, l, MODEL_M_UP, up, ln2, N);
	model_swiglu_forward(swi, gate, up, (int)nI);
	linear_forward(m, l, MODEL_M_DOWN, res3, swi, N);
	for (size_t i = 0; i < nC; i++)
		res3[i] += res2[i];
}

int model_llama_forward(model_llama *m, const int *tokens, const int *targets, int B, int T,
                        float *loss)
{
	const model_config *c = &m->cfg;
	int rv;
	if (loss)
		*loss = NAN;
	m->have_targets = 0;
	m->logits_valid = 0;
	if (B < 1 || T < 1 || T > c->max_position_embeddings || T > MODEL_OPS_MAX_T ||
	    (size_t)B * T > (size_t)INT32_MAX / 2) {
		fl_log(FL_LOG_ERROR, "model", "forward: bad batch shape %d x %d (max T %d)", B, T,
		       c->max_position_embeddings < MODEL_OPS_MAX_T ? c->max_position_embeddings
		                                                    : MODEL_OPS_MAX_T);
		return FL_EINVAL;
	}
	if ((rv = model_config_check_seq(c, T, "forward")) != 0)
		return rv;
	int N = B * T, V = c->vocab_size;
	for (int i = 0; i < N; i++) {
		if (tokens[i] < 0 || tokens[i] >= V) {
			fl_log(FL_LOG_ERROR, "model", "forward: token %d out of range [0, %d)",
			       tokens[i], V);
			return FL_EINVAL;
		}
		if (targets && (targets[i] < -1 || targets[i] >= V)) {
			fl_log(FL_LOG_ERROR, "model", "forward: target %d out of range [-1, %d)",
			       targets[i], V);
			return FL_EINVAL;
		}
	}
	if ((rv = acts_reserve(m, B, T)) != 0)
		return rv;
	m->B = B, m->T = T;
	memcpy(m->tokens, tokens, (size_t)N * sizeof(int));
	model_acts *a = &m->acts;
	int C = c->hidden_size;
	size_t nC = (size_t)N * C;

	model_embed_forward(a->x0, tokens, m->param[MODEL_P_EMBED], N, C);
	for (int l = 0; l < c->num_layers; l++) {
		/* the layer's own slot when training, the one shared slot
		 * otherwise (res3 of the layer below is read before res3 of this
		 * layer overwrites it); with checkpointing only res3 has a slot
		 * per layer */
		size_t r3 = m->acts_train ? (size_t)l : 0;
		const float *resid = l == 0 ? a->x0 : a->res3 + (m->acts_train ? r3 - 1 : 0) * nC;
		layer_forward(m, l, m->acts_train && !m->acts_ckpt ? (size_t)l : 0, resid,
		              a->res3 + r3 * nC);
	}
	size_t top = m->acts_train ? (size_t)c->num_layers - 1 : 0;
	model_rmsnorm_forward(a->lnf, a->lnf_rstd, a->res3 + top * nC, m->param[MODEL_P_NORM], N, C,
	                      c->rms_norm_eps);
	model_matmul_forward(a->logits, a->lnf, m->param[MODEL_P_HEAD], N, C, V);
	if (!targets) {
		m->loss = NAN;
		m->ntargets = m->ncorrect = 0;
		m->logits_valid = 1;
		return 0;
	}
	memcpy(m->targets, targets, (size_t)N * sizeof(int));
	long cnt = 0, correct = 0;
	for (int n = 0; n < N; n++) {
		if (targets[n] < 0)
			continue;
		const float *lr = a->logits + (size_t)n * V;
		int best = 0;
		for (int i = 1; i < V; i++)
			if (lr[i] > lr[best])
				best = i;
		correct += best == targets[n];
		cnt++;
	}
	float dscale = cnt ? 1.0f / (float)cnt : 0.0f;
	float sum =
	    model_crossentropy_forward_backward(a->logits, a->losses, targets, N, V, dscale);
	m->ntargets = cnt, m->ncorrect = correct;
	m->loss = cnt ? sum / (float)cnt : 0.0f;
	m->have_targets = 1;
	if (loss)
		*loss = m->loss;
	return 0;
}

const float *model_llama_logits(const model_llama *m)
{
	return m->logits_valid ? m->acts.logits : NULL;
}

/* ---- backward ---- */

/* Where the gradients of LoRA matrix li go: summed (pe NULL) into lora_grad,
 * or per example into rows of pe (stride = trainable size). */
typedef struct lora_sink {
	float *pe;
	size_t stride;
} lora_sink;

/* Backward of linear module mod of layer l: dx (N,in) += (NULL ok), weight
 * gradient in full mode, LoRA gradients when adapted and trained. */
static void linear_backward(model_llama *m, int l, int mod, float *dx, const float *dout,
                            const float *x, const lora_sink *sink)
{
	int N = m->B * m->T, in, od;
	module_dims(&m->cfg, mod, &in, &od);
	const float *w = layer_weight(m, m->param, l, mod);
	float *dw = m->mode == MODEL_TRAIN_FULL ? layer_weight(m, m->grad, l, mod) : NULL;
	model_matmul_backward(dx, dw, dout, x, w, N, in, od);
	float *db = m->mode == MODEL_TRAIN_FULL ? layer_bias(m, m->grad, l, mod) : NULL;
	if (db) /* the bias passes dout to dx unchanged: only its own gradient */
		model_bias_backward(db, dout, N, od);
	int li = m->lora_idx[l * MODEL_NMODULE + mod];
	if (li < 0)
		return;
	const lora_mat *lm = &m->lora->mats[li];
	int r = m->lora->r;
	const float *xa = m->acts.lora_xa + (size_t)li * N * r;
	size_t offA = (size_t)(lm->A - m->lora->params), offB = (size_t)(lm->B - m->lora->params);
	int trainA = m->mode == MODEL_TRAIN_LORA, trainB = trainA || m->mode == MODEL_TRAIN_LORA_B;
	if (!sink->pe) {
		float *dA = trainA ? m->lora_grad + offA : NULL;
		float *dB = trainB ? m->lora_grad + offB : NULL;
		model_lora_backward(dx, dA, dB, dout, x, xa, lm->A, lm->B, N, in, od, r,
		                    m->lora_scale);
		return;
	}
	/* per example: rows laid out like the trainable slice */
	size_t base = m->mode == MODEL_TRAIN_LORA_B ? m->lora->n_a : 0;
	float *dA = trainA ? sink->pe + offA : NULL;
	float *dB = sink->pe + (offB - base);
	model_lora_backward_per_example(dx, dA, dB, sink->stride, dout, x, xa, lm->A, lm->B, m->B,
	                                m->T, in, od, r, m->lora_scale);
}

/* Backward of a q or k norm of layer l (per-head RMSNorm, H heads of D):
 * d (N, H*D) holds the gradient of the normed tensor and receives that of
 * its input x (N, H*D); the norm weight gets its gradient in full mode. The
 * attention-output gradient buffer datty (N, Hq*D, at least H*D) serves as
 * scratch: the attention backward consumed it already. */
static void norm_heads_backward(model_llama *m, int l, float *d, const float *x, const float *rstd,
                                int which, int H)
{
	int N = m->B * m->T, D = m->cfg.head_dim;
	size_t n = (size_t)N * H * D;
	float *dx = m->acts.datty;
	float *dw = m->mode == MODEL_TRAIN_FULL ? m->grad[which] + (size_t)l * D : NULL;
	memset(dx, 0, n * sizeof(float));
	model_rmsnorm_backward(dx, dw, d, x, m->param[which] + (size_t)l * D, rstd, N * H, D);
	memcpy(d, dx, n * sizeof(float));
}

/* Lowest layer holding a trainable tensor; gradients need not flow below it. */
static int lowest_trained_layer(const model_llama *m)
{
	if (m->mode == MODEL_TRAIN_FULL)
		return 0;
	for (int l = 0; l < m->cfg.num_layers; l++)
		for (int j = 0; j < MODEL_NMODULE; j++)
			if (m->lora_idx[l * MODEL_NMODULE + j] >= 0)
				return l;
	return m->cfg.num_layers;
}

static int backward_impl(model_llama *m, const lora_sink *sink)
{
	const model_config *c = &m->cfg;
	if (m->mode == MODEL_TRAIN_NONE || !m->have_targets) {
		fl_log(FL_LOG_ERROR, "model", "backward without a training forward");
		return FL_ESTATE;
	}
	m->have_targets = 0; /* the dlogits are consumed */
	model_acts *a = &m->acts;
	int B = m->B, T = m->T, N = B * T;
	int C = c->hidden_size, I = c->intermediate_size, D = c->head_dim, V = c->vocab_size;
	int Hq = c->num_heads, Hkv = c->num_kv_heads, QD = Hq * D, KD = Hkv * D;
	size_t nC = (size_t)N * C, nI = (size_t)N * I;
	int full = m->mode == MODEL_TRAIN_FULL;
	int lmin = lowest_trained_layer(m);

	/* LM head and final norm */
	memset(a->dln, 0, nC * sizeof(float));
	model_matmul_backward(a->dln, full ? m->grad[MODEL_P_HEAD] : NULL, a->logits, a->lnf,
	                      m->param[MODEL_P_HEAD], N, C, V);
	memset(a->dres, 0, nC * sizeof(float));
	model_rmsnorm_backward(a->dres, full ? m->grad[MODEL_P_NORM] : NULL, a->dln,
	                       a->res3 + (c->num_layers - 1) * nC, m->param[MODEL_P_NORM],
	                       a->lnf_rstd, N, C);

	for (int l = c->num_layers - 1; l >= lmin; l--) {
		const float *resid = l == 0 ? a->x0 : a->res3 + (l - 1) * nC;
		size_t sl = m->acts_ckpt ? 0 : (size_t)l;
		if (m->acts_ckpt) /* recompute the layer into the one slot */
			layer_forward(m, l, 0, resid, a->res3 + l * nC);
		const float *ln1 = a->ln1 + sl * nC, *q = a->q + sl * N * QD;
		const float *k = a->k + sl * N * KD, *v = a->v + sl * N * KD;
		const float *lse = a->lse + sl * B * Hq * T;
		const float *atty = a->atty + sl * N * QD;
		const float *res2 = a->res2 + sl * nC, *ln2 = a->ln2 + sl * nC;
		const float *gate = a->gate + sl * nI, *up = a->up + sl * nI,
		            *swi = a->swi + sl * nI;
		float *dln1w = full ? m->grad[MODEL_P_LN1] + (size_t)l * C : NULL;
		float *dln2w = full ? m->grad[MODEL_P_LN2] + (size_t)l * C : NULL;

		/* res3 = res2 + down(swi): dres is d res3 and, through the residual, d res2 */
		memset(a->dswi, 0, nI * sizeof(float));
		linear_backward(m, l, MODEL_M_DOWN, a->dswi, a->dres, swi, sink);
		memset(a->dgate, 0, nI * sizeof(float));
		memset(a->dup, 0, nI * sizeof(float));
		model_swiglu_backward(a->dgate, a->dup, a->dswi, gate, up, (int)nI);
		memset(a->dln, 0, nC * sizeof(float));
		linear_backward(m, l, MODEL_M_GATE, a->dln, a->dgate, ln2, sink);
		linear_backward(m, l, MODEL_M_UP, a->dln, a->dup, ln2, sink);
		model_rmsnorm_backward(a->dres, dln2w, a->dln, res2,
		                       m->param[MODEL_P_LN2] + (size_t)l * C, a->ln2_rstd + sl * N,
		                       N, C);

		/* res2 = resid + o(atty): dres is now d res2 */
		memset(a->datty, 0, (size_t)N * QD * sizeof(float));
		linear_backward(m, l, MODEL_M_O, a->datty, a->dres, atty, sink);
		memset(a->dq, 0, (size_t)N * QD * sizeof(float));
		memset(a->dk, 0, (size_t)N * KD * sizeof(float));
		memset(a->dv, 0, (size_t)N * KD * sizeof(float));
		model_flash_attention_backward(a->dq, a->dk, a->dv, a->datty, q, k, v, atty, lse, B,
		                               T, Hq, Hkv, D);
		model_rope_backward(a->dq, B, T, Hq, D, m->rope_inv_freq);
		model_rope_backward(a->dk, B, T, Hkv, D, m->rope_inv_freq);
		if (c->qk_norm) {
			/* through the per-head norms: d qpre into datty (free once the
			 * attention backward has run), then back into dq / dk */
			norm_heads_backward(m, l, a->dq, a->qpre + sl * N * QD,
			                    a->q_rstd + sl * N * Hq, MODEL_P_QNORM, Hq);
			norm_heads_backward(m, l, a->dk, a->kpre + sl * N * KD,
			                    a->k_rstd + sl * N * Hkv, MODEL_P_KNORM, Hkv);
		}
		/* below the lowest trained layer nothing needs d ln1 or d resid */
		int need_dx = full || l > lmin;
		float *dln = need_dx ? a->dln : NULL;
		if (need_dx)
			memset(a->dln, 0, nC * sizeof(float));
		linear_backward(m, l, MODEL_M_Q, dln, a->dq, ln1, sink);
		linear_backward(m, l, MODEL_M_K, dln, a->dk, ln1, sink);
		linear_backward(m, l, MODEL_M_V, dln, a->dv, ln1, sink);
		if (need_dx)
			model_rmsnorm_backward(a->dres, dln1w, a->dln, resid,
			                       m->param[MODEL_P_LN1] + (size_t)l * C,
			                       a->ln1_rstd + sl * N, N, C);
	}
	if (full)
		model_embed_backward(m->grad[MODEL_P_EMBED], a->dres, m->tokens, N, C);
	return 0;
}

int model_llama_backward(model_llama *m)
{
	lora_sink s = {NULL, 0};
	return backward_impl(m, &s);
}

int model_llama_backward_per_example(model_llama *m, float *pe)
{
	float *p, *g;
	size_t n;
	if (m->mode != MODEL_TRAIN_LORA && m->mode != MODEL_TRAIN_LORA_B) {
		fl_log(FL_LOG_ERROR, "model", "per-example gradients need a LoRA training mode");
		return FL_ESTATE;
	}
	if (!m->have_targets) {
		fl_log(FL_LOG_ERROR, "model", "backward without a training forward");
		return FL_ESTATE;
	}
	model_llama_trainable(m, &p, &g, &n);
	/* dlogits are d(mean over the batch's targets); example b's own mean wants
	 * them scaled by ntargets / targets of b */
	int T = m->T, V = m->cfg.vocab_size;
	for (int b = 0; b < m->B; b++) {
		long cb = 0;
		for (int t = 0; t < T; t++)
			cb += m->targets[(size_t)b * T + t] >= 0;
		float k = cb ? (float)m->ntargets / (float)cb : 0.0f;
		float *d = m->acts.logits + (size_t)b * T * V;
		for (size_t i = 0; i < (size_t)T * V; i++)
			d[i] *= k;
	}
	memset(pe, 0, (size_t)m->B * n * sizeof(float));
	lora_sink s = {pe, n};
	return backward_impl(m, &s);
}

/* ---- FLOPs ---- */

double model_llama_flops(const model_llama *m, int B, int T, int backward)
{
	const model_config *c = &m->cfg;
	double N = (double)B * T, layer = 0, qkv = 0, fwd_lora = 0, bwd = 0;
	for (int mod = 0; mod < MODEL_NMODULE; mod++) {
		int in, out;
		module_dims(c, mod, &in, &out);
		layer += 2.0 * in * out;
		if (mod <= MODEL_M_V)
			qkv += 2.0 * in * out;
	}
	double head = 2.0 * c->hidden_size * c->vocab_size;
	/* causal attention: QK^T and PV over (t+1) keys for query t, per layer */
	double att = 2.0 * 2.0 * c->num_heads * c->head_dim * ((double)T + 1) / 2.0;
	int r = m->lora ? m->lora->r : 0, full = m->mode == MODEL_TRAIN_FULL;
	int lmin = lowest_trained_layer(m);
	for (int i = 0; i < nlora(m); i++)
		fwd_lora += 2.0 * r * (m->lora->mats[i].in + m->lora->mats[i].out);
	double fwd = N * (c->num_layers * (layer + att) + head) + N * fwd_lora;
	if (!backward)
		return fwd;
	/* what backward_impl computes: the head's input gradient (and weight
	 * gradient in full mode), then layers from the top down to lmin: input
	 * gradients of every linear (not q/k/v at lmin outside full mode), weight
	 * gradients in full mode, attention's four products */
	bwd = head * (full ? 2 : 1);
	for (int l = lmin; l < c->num_layers; l++) {
		bwd += layer - (!full && l == lmin ? qkv : 0) + 2 * att;
		if (full)
			bwd += layer;
		for (int mod = 0; mod < MODEL_NMODULE && m->lora; mod++) {
			int li = m->lora_idx[l * MODEL_NMODULE + mod];
			if (li < 0)
				continue;
			double in = m->lora->mats[li].in, out = m->lora->mats[li].out;
			int need_dx = full || l > lmin || mod > MODEL_M_V;
			bwd += 2.0 * r * out;                                  /* dout B */
			bwd += full ? 0 : 2.0 * r * out;                       /* dB */
			bwd += m->mode == MODEL_TRAIN_LORA ? 2.0 * r * in : 0; /* dA */
			bwd += need_dx ? 2.0 * r * in : 0;                     /* dx */
		}
	}
	return fwd + N * bwd;
}
