/*
 * model/config.c — Hugging Face config.json <-> model_config (model/config.h).
 *
 * Parsing is strict about what changes the computed function (rope scaling,
 * biases, q/k norms, sliding windows, activation, model type) and lenient
 * about the many fields that do not (dropout, initializer range, use_cache,
 * transformers_version, ...), which are ignored. Every refusal is logged with
 * the file name and field. The rope scaling is only read and checked here;
 * model_rope_inv_freq (model/ops.c) turns it into frequencies for both
 * backends.
 */
#include "model/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"

/* Upper bounds that keep every tensor size and index within int / size_t. */
#define CFG_DIM_MAX    (1 << 20) /* hidden, intermediate, vocab, head_dim */
#define CFG_LAYERS_MAX 1024
#define CFG_HEADS_MAX  4096
#define CFG_FILE_MAX   (16 << 20) /* bytes of config.json we read */
/* Range of the llama3 rope factors: wide around the published 1..32, and
 * narrow enough that their float32 roundings and quotients stay finite and
 * nonzero (an inv_freq / factor never overflows). */
#define CFG_ROPE_FACTOR_MIN 1e-6
#define CFG_ROPE_FACTOR_MAX 1e6

/* config.json "model_type" of each model_arch, and its class name */
static const char *const arch_names[] = {"llama", "qwen2", "qwen3", "mistral"};
static const char *const arch_classes[] = {"LlamaForCausalLM", "Qwen2ForCausalLM",
                                           "Qwen3ForCausalLM", "MistralForCausalLM"};
_Static_assert(sizeof arch_names / sizeof arch_names[0] == MODEL_ARCH_MISTRAL + 1,
               "one model_type per model_arch");
_Static_assert(sizeof arch_classes / sizeof arch_classes[0] == MODEL_ARCH_MISTRAL + 1,
               "one class per model_arch");

const char *model_arch_name(model_arch a)
{
	return (unsigned)a <= MODEL_ARCH_MISTRAL ? arch_names[a] : "?";
}

/* Reads an optional integer field: absent or null leaves *v; FL_EFORMAT when
 * present but not an integer in [lo, hi]. */
static int get_int(const cJSON *root, const char *key, int *v, int lo, int hi, const char *name)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
	if (!it || cJSON_IsNull(it))
		return 0;
	if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
	    it->valuedouble < lo || it->valuedouble > hi) {
		fl_log(FL_LOG_ERROR, "model", "%s: field \"%s\" must be an integer in [%d, %d]",
		       name, key, lo, hi);
		return FL_EFORMAT;
	}
	*v = (int)it->valuedouble;
	return 0;
}

static int require(const cJSON *root, const char *key, const char *name)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
	if (!it || cJSON_IsNull(it)) {
		fl_log(FL_LOG_ERROR, "model", "%s: required field \"%s\" is missing", name, key);
		return FL_EFORMAT;
	}
	return 0;
}

static int get_pos_double(const cJSON *root, const char *key, double *v, const char *name)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
	if (!it || cJSON_IsNull(it))
		return 0;
	if (!cJSON_IsNumber(it) || !(it->valuedouble > 0) || !isfinite(it->valuedouble)) {
		fl_log(FL_LOG_ERROR, "model", "%s: field \"%s\" must be a positive number", name,
		       key);
		return FL_EFORMAT;
	}
	*v = it->valuedouble;
	return 0;
}

/* Token id fields may be an integer, a list of integers (first taken) or null. */
static int get_token_id(const cJSON *root, const char *key, int *v, const char *name)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
	if (it && cJSON_IsArray(it))
		it = cJSON_GetArrayItem(it, 0);
	if (!it || cJSON_IsNull(it))
		return 0;
	if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
	    it->valuedouble < 0 || it->valuedouble > INT32_MAX) {
		fl_log(FL_LOG_ERROR, "model", "%s: field \"%s\" must be a token id", name, key);
		return FL_EFORMAT;
	}
	*v = (int)it->valuedouble;
	return 0;
}

static int refuse_true(const cJSON *root, const char *key, const char *name)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
	if (it && cJSON_IsTrue(it)) {
		fl_log(FL_LOG_ERROR, "model", "%s: \"%s\": true is not supported", name, key);
		return FL_ENOTSUP;
	}
	if (it && !cJSON_IsBool(it) && !cJSON_IsNull(it)) {
		fl_log(FL_LOG_ERROR, "model", "%s: field \"%s\" must be a boolean", name, key);
		return FL_EFORMAT;
	}
	return 0;
}

/* Reads an optional boolean field: absent or null leaves *v. */
static int get_bool(const cJSON *root, const char *key, int *v, const char *name)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
	if (!it || cJSON_IsNull(it))
		return 0;
	if (!cJSON_IsBool(it)) {
		fl_log(FL_LOG_ERROR, "model", "%s: field \"%s\" must be a boolean", name, key);
		return FL_EFORMAT;
	}
	*v = cJSON_IsTrue(it);
	return 0;
}

/* The sliding-window fields of c->arch (c->num_layers already read) into c,
 * with transformers' defaults: Mistral's "sliding_window" (4096 when absent,
 * null = none) applies to every layer; Qwen2's and Qwen3's applies only with
 * "use_sliding_window" (default false) and only to layers from
 * "max_window_layers" (default 28) up. An explicit "layer_types" list
 * ("full_attention" / "sliding_attention", one per layer, as transformers 5
 * writes it) says which layers use the window instead. Llama has none. */
static int window_parse(const cJSON *root, model_config *c, const char *name)
{
	int rv;
	if (c->arch == MODEL_ARCH_LLAMA)
		return 0;
	c->sliding_window = 4096;
	c->max_window_layers = 28;
	const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
	if (sw && cJSON_IsNull(sw))
		c->sliding_window = 0;
	if ((rv = get_int(root, "sliding_window", &c->sliding_window, 1, INT32_MAX, name)) != 0)
		return rv;
	int window = c->sliding_window, any = 1;
	if (c->arch == MODEL_ARCH_MISTRAL) {
		c->use_sliding_window = c->sliding_window > 0;
	} else {
		if ((rv = get_bool(root, "use_sliding_window", &c->use_sliding_window, name)) !=
		        0 ||
		    (rv = get_int(root, "max_window_layers", &c->max_window_layers, 0, INT32_MAX,
		                  name)) != 0)
			return rv;
		if (!c->use_sliding_window)
			window = 0;
		any = c->max_window_layers < c->num_layers;
	}
	const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
	if (lt && !cJSON_IsNull(lt)) {
		if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->num_layers) {
			fl_log(FL_LOG_ERROR, "model",
			       "%s: field \"layer_types\" must be a list of num_hidden_layers (%d) "
			       "strings",
			       name, c->num_layers);
			return FL_EFORMAT;
		}
		any = 0;
		const cJSON *e;
		cJSON_ArrayForEach(e, lt)
		{
			int sliding =
			    cJSON_IsString(e) && !strcmp(e->valuestring, "sliding_attention");
			if (!sliding &&
			    !(cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention"))) {
				fl_log(FL_LOG_ERROR, "model",
				       "%s: \"layer_types\" entries must be \"full_attention\" or "
				       "\"sliding_attention\"",
				       name);
				return FL_ENOTSUP;
			}
			any |= sliding;
		}
	}
	c->attn_window = any ? window : 0;
	return 0;
}

/* Range checks of a rope scaling; `obj` is the JSON field it came from
 * ("rope_scaling" or "rope_parameters"), used in messages. */
static int rope_check(const model_rope_scaling *s, const char *obj, const char *name)
{
	if (s->type == MODEL_ROPE_DEFAULT)
		return 0;
	if (s->type != MODEL_ROPE_LLAMA3) {
		fl_log(FL_LOG_ERROR, "model", "%s: \"%s\": unknown rope type %d", name, obj,
		       (int)s->type);
		return FL_EINVAL;
	}
	struct {
		const char *key;
		double v;
	} f[] = {
	    {"factor", s->factor},
	    {"low_freq_factor", s->low_freq_factor},
	    {"high_freq_factor", s->high_freq_factor},
	};
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
		if (!(f[i].v >= CFG_ROPE_FACTOR_MIN && f[i].v <= CFG_ROPE_FACTOR_MAX)) {
			fl_log(FL_LOG_ERROR, "model",
			       "%s: \"%s.%s\" = %g must be a positive finite number in [%g, %g]",
			       name, obj, f[i].key, f[i].v, CFG_ROPE_FACTOR_MIN,
			       CFG_ROPE_FACTOR_MAX);
			return FL_EINVAL;
		}
	}
	if (!(s->high_freq_factor > s->low_freq_factor)) {
		fl_log(FL_LOG_ERROR, "model",
		       "%s: \"%s.high_freq_factor\" (%g) must be greater than \"low_freq_factor\" "
		       "(%g)",
		       name, obj, s->high_freq_factor, s->low_freq_factor);
		return FL_EINVAL;
	}
	if (s->original_max_position_embeddings < 1) {
		fl_log(FL_LOG_ERROR, "model",
		       "%s: \"%s.original_max_position_embeddings\" = %d must be at least 1", name,
		       obj, s->original_max_position_embeddings);
		return FL_EINVAL;
	}
	return 0;
}

/* Reads the required number `key` of the rope object o (field `obj`):
 * FL_EFORMAT when missing or not a number; ranges are rope_check's. */
static int rope_num(const cJSON *o, const char *obj, const char *key, double *v, const char *name)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!it || cJSON_IsNull(it)) {
		fl_log(FL_LOG_ERROR, "model",
		       "%s: \"%s\" with rope_type \"llama3\" needs the field \"%s\"", name, obj,
		       key);
		return FL_EFORMAT;
	}
	if (!cJSON_IsNumber(it)) {
		fl_log(FL_LOG_ERROR, "model", "%s: field \"%s.%s\" must be a number", name, obj,
		       key);
		return FL_EFORMAT;
	}
	*v = it->valuedouble;
	return 0;
}

/* Parses a rope object (o: the value of field `obj`, NULL when absent) into
 * *s: absent, null, no rope type or "default" give plain RoPE; "llama3"
 * needs its four fields; other rope types are FL_ENOTSUP. The type may be
 * spelled "rope_type" or (older configs) "type". Other keys (rope_theta,
 * attention_factor, ...) are left to the caller or ignored, as transformers
 * ignores them for llama3. */
static int rope_parse(const cJSON *o, const char *obj, model_rope_scaling *s, const char *name)
{
	int rv;
	memset(s, 0, sizeof *s);
	if (!o || cJSON_IsNull(o))
		return 0;
	if (!cJSON_IsObject(o)) {
		fl_log(FL_LOG_ERROR, "model", "%s: field \"%s\" must be an object or null", name,
		       obj);
		return FL_EFORMAT;
	}
	const char *tkey = "rope_type";
	const cJSON *rt = cJSON_GetObjectItemCaseSensitive(o, tkey);
	if (!rt || cJSON_IsNull(rt))
		rt = cJSON_GetObjectItemCaseSensitive(o, tkey = "type");
	if (!rt || cJSON_IsNull(rt))
		return 0;
	if (!cJSON_IsString(rt)) {
		fl_log(FL_LOG_ERROR, "model", "%s: field \"%s.%s\" must be a string", name, obj,
		       tkey);
		return FL_EFORMAT;
	}
	if (!strcmp(rt->valuestring, "default"))
		return 0;
	if (strcmp(rt->valuestring, "llama3")) {
		fl_log(
		    FL_LOG_ERROR, "model",
		    "%s: \"%s.%s\" = \"%.40s\" is not supported (only \"default\" and \"llama3\")",
		    name, obj, tkey, rt->valuestring);
		return FL_ENOTSUP;
	}
	s->type = MODEL_ROPE_LLAMA3;
	double orig = 0;
	if ((rv = rope_num(o, obj, "factor", &s->factor, name)) != 0 ||
	    (rv = rope_num(o, obj, "low_freq_factor", &s->low_freq_factor, name)) != 0 ||
	    (rv = rope_num(o, obj, "high_freq_factor", &s->high_freq_factor, name)) != 0 ||
	    (rv = rope_num(o, obj, "original_max_position_embeddings", &orig, name)) != 0)
		return rv;
	if (orig != floor(orig) || !(orig >= 1 && orig <= INT32_MAX)) {
		fl_log(FL_LOG_ERROR, "model",
		       "%s: field \"%s.original_max_position_embeddings\" must be an integer in "
		       "[1, %d]",
		       name, obj, INT32_MAX);
		return FL_EINVAL;
	}
	s->original_max_position_embeddings = (int)orig;
	return rope_check(s, obj, name);
}

static int rope_same(const model_rope_scaling *a, const model_rope_scaling *b)
{
	if (a->type != b->type)
		return 0;
	return a->type == MODEL_ROPE_DEFAULT ||
	       (a->factor == b->factor && a->low_freq_factor == b->low_freq_factor &&
	        a->high_freq_factor == b->high_freq_factor &&
	        a->original_max_position_embeddings == b->original_max_position_embeddings);
}

int model_config_validate(const model_config *c, const char *name)
{
	int rv;
	struct {
		const char *key;
		int v, lo, hi;
	} f[] = {
	    {"hidden_size", c->hidden_size, 1, CFG_DIM_MAX},
	    {"intermediate_size", c->intermediate_size, 1, CFG_DIM_MAX},
	    {"num_hidden_layers", c->num_layers, 1, CFG_LAYERS_MAX},
	    {"num_attention_heads", c->num_heads, 1, CFG_HEADS_MAX},
	    {"num_key_value_heads", c->num_kv_heads, 1, CFG_HEADS_MAX},
	    {"head_dim", c->head_dim, 2, CFG_DIM_MAX},
	    {"vocab_size", c->vocab_size, 1, CFG_DIM_MAX * 4},
	    {"max_position_embeddings", c->max_position_embeddings, 1, INT32_MAX},
	};
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
		if (f[i].v < f[i].lo || f[i].v > f[i].hi) {
			fl_log(FL_LOG_ERROR, "model", "%s: \"%s\" = %d is outside [%d, %d]", name,
			       f[i].key, f[i].v, f[i].lo, f[i].hi);
			return FL_EINVAL;
		}
	}
	if (c->num_heads % c->num_kv_heads != 0) {
		fl_log(FL_LOG_ERROR, "model",
		       "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
		       name, c->num_heads, c->num_kv_heads);
		return FL_EINVAL;
	}
	if (c->head_dim % 2 != 0) {
		fl_log(FL_LOG_ERROR, "model",
		       "%s: head_dim (%d) must be even for rotary embeddings", name, c->head_dim);
		return FL_EINVAL;
	}
	if ((double)c->num_heads * c->head_dim > CFG_DIM_MAX) {
		fl_log(FL_LOG_ERROR, "model", "%s: num_attention_heads * head_dim is too large",
		       name);
		return FL_EINVAL;
	}
	if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps)) {
		fl_log(FL_LOG_ERROR, "model", "%s: rms_norm_eps must be positive", name);
		return FL_EINVAL;
	}
	if (!(c->rope_theta > 0) || !isfinite(c->rope_theta)) {
		fl_log(FL_LOG_ERROR, "model", "%s: rope_theta must be positive", name);
		return FL_EINVAL;
	}
	if ((rv = rope_check(&c->rope_scaling, "rope_scaling", name)) != 0)
		return rv;
	if ((unsigned)c->arch > MODEL_ARCH_MISTRAL || c->attn_window < 0 || c->sliding_window < 0 ||
	    c->max_window_layers < 0) {
		fl_log(FL_LOG_ERROR, "model", "%s: bad architecture or sliding window fields",
		       name);
		return FL_EINVAL;
	}
	/* the combinations transformers' classes build (config.h) */
	if ((c->arch == MODEL_ARCH_QWEN2 && (!c->qkv_bias || c->o_bias)) ||
	    (c->arch == MODEL_ARCH_MISTRAL && (c->qkv_bias || c->o_bias)) ||
	    ((c->arch == MODEL_ARCH_LLAMA || c->arch == MODEL_ARCH_QWEN3) &&
	     c->qkv_bias != c->o_bias) ||
	    c->qk_norm != (c->arch == MODEL_ARCH_QWEN3)) {
		fl_log(
		    FL_LOG_ERROR, "model",
		    "%s: biases (q/k/v %d, o %d) or q/k norm (%d) do not match model_type \"%s\"",
		    name, c->qkv_bias, c->o_bias, c->qk_norm, model_arch_name(c->arch));
		return FL_EINVAL;
	}
	/* 2^40 parameters: far above anything a CPU trains, far below size_t limits */
	if ((double)model_config_num_params(c) > 1099511627776.0) {
		fl_log(FL_LOG_ERROR, "model", "%s: the model is too large", name);
		return FL_EINVAL;
	}
	return 0;
}

int model_config_check_seq(const model_config *c, int T, const char *what)
{
	if (c->attn_window > 0 && T > c->attn_window) {
		fl_log(FL_LOG_ERROR, "model",
		       "%s: %d tokens is longer than the model's sliding window of %d tokens "
		       "(%s \"sliding_window\"); fedlora computes full causal attention, which "
		       "equals the windowed attention only up to %d tokens: use sequences of at "
		       "most %d",
		       what, T, c->attn_window, model_arch_name(c->arch), c->attn_window,
		       c->attn_window);
		return FL_ENOTSUP;
	}
	return 0;
}

size_t model_config_num_params(const model_config *c)
{
	size_t C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
	size_t QD = (size_t)c->num_heads * c->head_dim, KD = (size_t)c->num_kv_heads * c->head_dim;
	size_t layer = 2 * C + QD * C + 2 * KD * C + C * QD + 3 * C * I;
	if (c->qkv_bias)
		layer += QD + 2 * KD;
	if (c->o_bias)
		layer += C;
	if (c->qk_norm)
		layer += 2 * (size_t)c->head_dim;
	size_t n = (size_t)c->vocab_size * C + (size_t)c->num_layers * layer + C;
	if (!c->tie_word_embeddings)
		n += (size_t)c->vocab_size * C;
	return n;
}

int model_config_parse(model_config *c, const char *json, size_t len, const char *name)
{
	int rv = 0;
	cJSON *root = cJSON_ParseWithLength(json, len);
	if (!root || !cJSON_IsObject(root)) {
		fl_log(FL_LOG_ERROR, "model", "%s: not a JSON object", name);
		rv = FL_EFORMAT;
		goto fail;
	}
	memset(c, 0, sizeof *c);
	c->num_kv_heads = -1;
	c->head_dim = -1;
	c->max_position_embeddings = 2048;
	c->bos_token_id = 1;
	c->eos_token_id = 2;
	double eps = 1e-6, theta = 10000.0;

	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
	if (mt && !cJSON_IsNull(mt)) {
		int found = 0;
		for (int a = 0;
		     cJSON_IsString(mt) && a < (int)(sizeof arch_names / sizeof arch_names[0]); a++)
			if (!strcmp(mt->valuestring, arch_names[a])) {
				c->arch = (model_arch)a;
				found = 1;
			}
		if (!found) {
			fl_log(FL_LOG_ERROR, "model",
			       "%s: \"model_type\" %s%.40s%s is not supported (only \"llama\", "
			       "\"qwen2\", \"qwen3\" and \"mistral\")",
			       name, cJSON_IsString(mt) ? "\"" : "",
			       cJSON_IsString(mt) ? mt->valuestring : "(not a string)",
			       cJSON_IsString(mt) ? "\"" : "");
			rv = FL_ENOTSUP;
			goto fail;
		}
	}
	const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
	if (act && !cJSON_IsNull(act) &&
	    (!cJSON_IsString(act) || strcmp(act->valuestring, "silu"))) {
		fl_log(FL_LOG_ERROR, "model", "%s: \"hidden_act\" must be \"silu\"", name);
		rv = FL_ENOTSUP;
		goto fail;
	}
	/* transformers 4 writes "rope_scaling" (null or an object) next to
	 * "rope_theta"; transformers >= 5 writes "rope_parameters":
	 * {"rope_type": ..., "rope_theta": X, scaling fields}. */
	const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
	const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
	model_rope_scaling rss, rps;
	if ((rv = rope_parse(rs, "rope_scaling", &rss, name)) != 0 ||
	    (rv = rope_parse(rp, "rope_parameters", &rps, name)) != 0)
		goto fail;
	if (rs && !cJSON_IsNull(rs) && rp && !cJSON_IsNull(rp) && !rope_same(&rss, &rps)) {
		fl_log(FL_LOG_ERROR, "model",
		       "%s: \"rope_scaling\" and \"rope_parameters\" describe different rope "
		       "scalings",
		       name);
		rv = FL_EINVAL;
		goto fail;
	}
	if ((rv = refuse_true(root, "mlp_bias", name)) != 0 ||
	    (rv = get_bool(root, "attention_bias", &c->o_bias, name)) != 0)
		goto fail;
	/* Qwen2Attention always biases q, k and v and never o_proj (it has no
	 * attention_bias field); Llama and Qwen3 bias all four with
	 * attention_bias; MistralAttention has no bias at all */
	switch (c->arch) {
	case MODEL_ARCH_QWEN2:
		c->qkv_bias = 1, c->o_bias = 0;
		break;
	case MODEL_ARCH_MISTRAL:
		if (c->o_bias) {
			fl_log(FL_LOG_ERROR, "model",
			       "%s: \"attention_bias\": true is not supported for model_type "
			       "\"mistral\" (MistralAttention has no bias)",
			       name);
			rv = FL_ENOTSUP;
			goto fail;
		}
		break;
	default:
		c->qkv_bias = c->o_bias;
		break;
	}
	c->qk_norm = c->arch == MODEL_ARCH_QWEN3;
	static const char *const req[] = {"hidden_size", "intermediate_size", "num_hidden_layers",
	                                  "num_attention_heads", "vocab_size"};
	for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
		if ((rv = require(root, req[i], name)) != 0)
			goto fail;
	if ((rv = get_int(root, "hidden_size", &c->hidden_size, 1, CFG_DIM_MAX, name)) ||
	    (rv =
	         get_int(root, "intermediate_size", &c->intermediate_size, 1, CFG_DIM_MAX, name)) ||
	    (rv = get_int(root, "num_hidden_layers", &c->num_layers, 1, CFG_LAYERS_MAX, name)) ||
	    (rv = get_int(root, "num_attention_heads", &c->num_heads, 1, CFG_HEADS_MAX, name)) ||
	    (rv = get_int(root, "num_key_value_heads", &c->num_kv_heads, 1, CFG_HEADS_MAX, name)) ||
	    (rv = get_int(root, "head_dim", &c->head_dim, 2, CFG_DIM_MAX, name)) ||
	    (rv = get_int(root, "vocab_size", &c->vocab_size, 1, CFG_DIM_MAX * 4, name)) ||
	    (rv = get_int(root, "max_position_embeddings", &c->max_position_embeddings, 1,
	                  INT32_MAX, name)) ||
	    (rv = get_pos_double(root, "rms_norm_eps", &eps, name)) ||
	    (rv = get_pos_double(root, "rope_theta", &theta, name)) ||
	    (rv = get_token_id(root, "bos_token_id", &c->bos_token_id, name)) ||
	    (rv = get_token_id(root, "eos_token_id", &c->eos_token_id, name)))
		goto fail;
	/* rope_parameters' rope_theta wins over a top-level one (rope_parse
	 * checked that rp is an object or null) */
	if (rp && !cJSON_IsNull(rp) && (rv = get_pos_double(rp, "rope_theta", &theta, name)) != 0)
		goto fail;
	c->rope_scaling = rss.type != MODEL_ROPE_DEFAULT ? rss : rps;
	const cJSON *tie = cJSON_GetObjectItemCaseSensitive(root, "tie_word_embeddings");
	if (tie && !cJSON_IsBool(tie) && !cJSON_IsNull(tie)) {
		fl_log(FL_LOG_ERROR, "model", "%s: field \"tie_word_embeddings\" must be a boolean",
		       name);
		rv = FL_EFORMAT;
		goto fail;
	}
	c->tie_word_embeddings = tie && cJSON_IsTrue(tie);
	if (c->num_kv_heads < 0)
		c->num_kv_heads = c->num_heads;
	if (c->head_dim < 0) {
		if (c->hidden_size % c->num_heads != 0) {
			fl_log(FL_LOG_ERROR, "model",
			       "%s: hidden_size (%d) is not a multiple of num_attention_heads (%d) "
			       "and no head_dim is given",
			       name, c->hidden_size, c->num_heads);
			rv = FL_EINVAL;
			goto fail;
		}
		c->head_dim = c->hidden_size / c->num_heads;
	}
	c->rms_norm_eps = (float)eps;
	c->rope_theta = (float)theta;
	if ((rv = window_parse(root, c, name)) != 0)
		goto fail;
	rv = model_config_validate(c, name);
fail:
	cJSON_Delete(root);
	return rv;
}

int model_config_load(model_config *c, const char *path)
{
	char *buf = NULL;
	size_t n;
	int rv = fl_read_file(path, CFG_FILE_MAX, &buf, &n);

	if (rv == FL_ENOENT || rv == FL_EIO)
		fl_log(FL_LOG_ERROR, "model", "%s: %s", path, strerror(errno));
	else if (rv == FL_ETOOBIG)
		fl_log(FL_LOG_ERROR, "model", "%s: larger than %d bytes", path, CFG_FILE_MAX);
	if (rv == 0)
		rv = model_config_parse(c, buf, n, path);
	free(buf);
	return rv;
}

/* A float written with the shortest decimal that reads back as the same float
 * (1e-06, not 9.99999997e-07), so configs stay readable. */
static double short_float(float v)
{
	char s[32];
	for (int p = 6; p <= 9; p++) {
		snprintf(s, sizeof s, "%.*g", p, (double)v);
		if ((float)strtod(s, NULL) == v)
			break;
	}
	return strtod(s, NULL);
}

/* v as Python's repr writes a float (the shortest decimal that reads back,
 * with ".0" on integral values), so transformers reads a float where it
 * checks isinstance(..., float). v is finite. */
static void py_float(char *s, size_t n, double v)
{
	for (int p = 15; p <= 17; p++) {
		snprintf(s, n, "%.*g", p, v);
		if (strtod(s, NULL) == v)
			break;
	}
	if (!strpbrk(s, ".e"))
		strncat(s, ".0", n - strlen(s) - 1);
}

/* Adds "rope_scaling": {llama3 fields} to o, in the order transformers writes. */
static int rope_save(cJSON *o, const model_rope_scaling *r)
{
	char f[3][40];
	py_float(f[0], sizeof f[0], r->factor);
	py_float(f[1], sizeof f[1], r->high_freq_factor);
	py_float(f[2], sizeof f[2], r->low_freq_factor);
	cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
	if (!rs || !cJSON_AddRawToObject(rs, "factor", f[0]) ||
	    !cJSON_AddRawToObject(rs, "high_freq_factor", f[1]) ||
	    !cJSON_AddRawToObject(rs, "low_freq_factor", f[2]) ||
	    !cJSON_AddNumberToObject(rs, "original_max_position_embeddings",
	                             r->original_max_position_embeddings) ||
	    !cJSON_AddStringToObject(rs, "rope_type", "llama3"))
		return FL_ENOMEM;
	return 0;
}

int model_config_save(const model_config *c, const char *path)
{
	int rv;
	char *text = NULL;
	if ((rv = model_config_validate(c, path)) != 0)
		return rv;
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return FL_ENOMEM;
	int ok = 1;
	cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
	if (!arch) {
		rv = FL_ENOMEM;
		goto fail;
	}
	ok &= cJSON_AddItemToArray(arch, cJSON_CreateString(arch_classes[c->arch]));
	ok &= cJSON_AddStringToObject(o, "model_type", arch_names[c->arch]) != NULL;
	ok &= cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size) != NULL;
	ok &= cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size) != NULL;
	ok &= cJSON_AddNumberToObject(o, "num_hidden_layers", c->num_layers) != NULL;
	ok &= cJSON_AddNumberToObject(o, "num_attention_heads", c->num_heads) != NULL;
	ok &= cJSON_AddNumberToObject(o, "num_key_value_heads", c->num_kv_heads) != NULL;
	ok &= cJSON_AddNumberToObject(o, "head_dim", c->head_dim) != NULL;
	ok &= cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size) != NULL;
	ok &= cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_position_embeddings) !=
	      NULL;
	ok &= cJSON_AddNumberToObject(o, "rms_norm_eps", short_float(c->rms_norm_eps)) != NULL;
	ok &= cJSON_AddNumberToObject(o, "rope_theta", short_float(c->rope_theta)) != NULL;
	if (c->rope_scaling.type == MODEL_ROPE_DEFAULT)
		ok &= cJSON_AddNullToObject(o, "rope_scaling") != NULL;
	else if ((rv = rope_save(o, &c->rope_scaling)) != 0)
		goto fail;
	ok &= cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings != 0) != NULL;
	ok &= cJSON_AddStringToObject(o, "hidden_act", "silu") != NULL;
	if (c->arch != MODEL_ARCH_QWEN2 && c->arch != MODEL_ARCH_MISTRAL)
		ok &= cJSON_AddBoolToObject(o, "attention_bias", c->o_bias != 0) != NULL;
	ok &= cJSON_AddNumberToObject(o, "attention_dropout", 0.0) != NULL;
	if (c->arch == MODEL_ARCH_LLAMA) {
		ok &= cJSON_AddBoolToObject(o, "mlp_bias", 0) != NULL;
		ok &= cJSON_AddNumberToObject(o, "pretraining_tp", 1) != NULL;
	} else {
		if (c->sliding_window > 0)
			ok &=
			    cJSON_AddNumberToObject(o, "sliding_window", c->sliding_window) != NULL;
		else
			ok &= cJSON_AddNullToObject(o, "sliding_window") != NULL;
	}
	if (c->arch == MODEL_ARCH_QWEN2 || c->arch == MODEL_ARCH_QWEN3) {
		ok &= cJSON_AddBoolToObject(o, "use_sliding_window", c->use_sliding_window != 0) !=
		      NULL;
		ok &= cJSON_AddNumberToObject(o, "max_window_layers", c->max_window_layers) != NULL;
	}
	ok &= cJSON_AddNumberToObject(o, "initializer_range", 0.02) != NULL;
	ok &= cJSON_AddNumberToObject(o, "bos_token_id", c->bos_token_id) != NULL;
	ok &= cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id) != NULL;
	ok &= cJSON_AddStringToObject(o, "torch_dtype", "float32") != NULL;
	ok &= cJSON_AddBoolToObject(o, "use_cache", 1) != NULL;
	if (!ok) {
		rv = FL_ENOMEM;
		goto fail;
	}
	text = cJSON_Print(o);
	if (!text) {
		rv = FL_ENOMEM;
		goto fail;
	}
	/* the JSON text, then a final newline */
	struct iovec v[2] = {{text, strlen(text)}, {"\n", 1}};
	if ((rv = fl_write_atomicv(path, v, 2, 0644)) != 0)
		fl_log(FL_LOG_ERROR, "model", "%s: cannot write: %s", path, strerror(errno));
fail:
	cJSON_free(text);
	cJSON_Delete(o);
	return rv;
}
