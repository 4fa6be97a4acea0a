/*
 * model/backend.c — the device-agnostic trainer (model/backend.h): the CPU
 * path wraps model/llama.h and model/optim.h; the CUDA path (only compiled
 * with FL_HAVE_CUDA) wraps model/cuda/cuda.h, LoRA and full-parameter
 * (pretraining) modes alike. Without CUDA in the build,
 * "cuda" is refused with "this build has no CUDA support" and "auto" means
 * the CPU.
 *
 * Micro-batching: batches larger than opts.max_batch are processed in slices.
 * On the CPU a training step accumulates each slice's gradient weighted by
 * its share of the batch's target tokens, so the step follows the gradient of
 * the mean over the whole batch; DP-SGD clips each example's gradient per
 * slice and sums the clipped rows (privacy/dp.h priv_clip_rows), then adds
 * the noise once (priv_noise_add) and divides by the expected batch size, as
 * priv_dpsgd_reduce does.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "model/backend.h"
#include "model/ops.h"
#include "privacy/dp.h"
#include "privacy/noise.h"
#ifdef FL_HAVE_CUDA
#include "model/cuda/cuda.h"
#endif

struct model_backend {
	model_device dev;
	model_backend_opts o;
	model_llama *m;   /* borrowed */
	lora_adapter *ad; /* borrowed */
	/* CPU */
	model_optim *opt;
	float *acc; /* (n) gradient accumulator for micro-batches / DP sums */
	float *pe;  /* (max_batch, n) per-example gradients */
	size_t n;   /* trainable floats */
#ifdef FL_HAVE_CUDA
	model_cuda *cu;
#endif
};

void model_backend_opts_default(model_backend_opts *o)
{
	memset(o, 0, sizeof *o);
	o->device = "cpu";
	o->max_batch = 8;
	o->max_seq = 256;
	o->mode = MODEL_TRAIN_NONE;
	model_optim_opts_default(&o->optim);
}

const char *model_device_name(model_device d)
{
	return d == MODEL_DEVICE_CUDA ? "cuda" : "cpu";
}

static void say(char *why, size_t n, const char *s)
{
	if (why && n) {
		strncpy(why, s, n - 1);
		why[n - 1] = 0;
	}
}

int model_device_resolve(const char *name, model_device *out, char *why, size_t whylen)
{
	if (why && whylen)
		why[0] = 0;
	if (!name || !*name || !strcmp(name, "cpu")) {
		*out = MODEL_DEVICE_CPU;
		return 0;
	}
	if (strcmp(name, "cuda") && strcmp(name, "auto")) {
		say(why, whylen, "unknown device (expected cpu, cuda or auto)");
		return FL_EINVAL;
	}
#ifdef FL_HAVE_CUDA
	{
		char msg[200];
		if (model_cuda_probe(msg, sizeof msg) == 0) {
			*out = MODEL_DEVICE_CUDA;
			if (!strcmp(name, "auto")) {
				char nm[160] = "";
				model_cuda_device_info(nm, sizeof nm, NULL, NULL);
				if (why && whylen)
					snprintf(why, whylen, "auto: using the GPU %s", nm);
			}
			return 0;
		}
		if (!strcmp(name, "auto")) {
			*out = MODEL_DEVICE_CPU;
			if (why && whylen)
				snprintf(why, whylen, "auto: using the CPU (%s)", msg);
			return 0;
		}
		say(why, whylen, msg);
		return FL_ECUDA;
	}
#else
	if (!strcmp(name, "auto")) {
		*out = MODEL_DEVICE_CPU;
		say(why, whylen, "auto: using the CPU (this build has no CUDA support)");
		return 0;
	}
	say(why, whylen, "this build has no CUDA support");
	return FL_ENOTSUP;
#endif
}

static int is_lora(model_train_mode m)
{
	return m == MODEL_TRAIN_LORA || m == MODEL_TRAIN_LORA_B;
}

void model_backend_close(model_backend *b)
{
	if (!b)
		return;
#ifdef FL_HAVE_CUDA
	model_cuda_free(b->cu);
#endif
	model_optim_free(b->opt);
	free(b->acc);
	free(b->pe);
	free(b);
}

model_device model_backend_device(const model_backend *b)
{
	return b->dev;
}

/* (Re)creates the CPU optimizer and scratch for the current trainable slice. */
static int cpu_train_setup(model_backend *b)
{
	float *p, *g;
	size_t n;
	int rv;
	model_optim_free(b->opt);
	free(b->acc);
	free(b->pe);
	b->opt = NULL;
	b->acc = b->pe = NULL;
	b->n = 0;
	if (b->o.mode == MODEL_TRAIN_NONE)
		return 0;
	if ((rv = model_llama_trainable(b->m, &p, &g, &n)) != 0)
		return rv;
	if ((rv = model_optim_new(&b->opt, n, &b->o.optim)) != 0)
		return rv;
	b->n = n;
	if (!(b->acc = calloc(n ? n : 1, sizeof(float))))
		return FL_ENOMEM;
	if (is_lora(b->o.mode) &&
	    !(b->pe = calloc((size_t)b->o.max_batch * (n ? n : 1), sizeof(float))))
		return FL_ENOMEM;
	return 0;
}

#ifdef FL_HAVE_CUDA
/* model_cuda_weights lists the tensors in MODEL_P_* order, one pointer each
 * (model_backend_sync_model indexes both the same way). */
_Static_assert(sizeof(model_cuda_weights) == MODEL_NPARAM * sizeof(const float *),
               "model_cuda_weights has one field per MODEL_P_* tensor");

static int cuda_open(model_backend *b)
{
	model_llama *m = b->m;
	const model_config *c = &m->cfg;
	model_cuda_config cc = {
	    .vocab = c->vocab_size,
	    .hidden = c->hidden_size,
	    .inter = c->intermediate_size,
	    .layers = c->num_layers,
	    .heads = c->num_heads,
	    .kv_heads = c->num_kv_heads,
	    .head_dim = c->head_dim,
	    .tied = c->tie_word_embeddings,
	    .eps = c->rms_norm_eps,
	    .inv_freq = m->rope_inv_freq,
	    .max_batch = b->o.max_batch,
	    .max_seq = b->o.max_seq,
	    .full = b->o.mode == MODEL_TRAIN_FULL,
	    .grad_checkpoint = b->o.grad_checkpoint,
	    .qkv_bias = c->qkv_bias,
	    .o_bias = c->o_bias,
	    .qk_norm = c->qk_norm,
	};
	model_cuda_weights w = {
	    .embed = m->param[MODEL_P_EMBED],
	    .ln1 = m->param[MODEL_P_LN1],
	    .wq = m->param[MODEL_P_WQ],
	    .wk = m->param[MODEL_P_WK],
	    .wv = m->param[MODEL_P_WV],
	    .wo = m->param[MODEL_P_WO],
	    .ln2 = m->param[MODEL_P_LN2],
	    .wgate = m->param[MODEL_P_WGATE],
	    .wup = m->param[MODEL_P_WUP],
	    .wdown = m->param[MODEL_P_WDOWN],
	    .norm = m->param[MODEL_P_NORM],
	    .head = c->tie_word_embeddings ? NULL : m->param[MODEL_P_HEAD],
	    .bq = m->param_size[MODEL_P_BQ] ? m->param[MODEL_P_BQ] : NULL,
	    .bk = m->param_size[MODEL_P_BK] ? m->param[MODEL_P_BK] : NULL,
	    .bv = m->param_size[MODEL_P_BV] ? m->param[MODEL_P_BV] : NULL,
	    .bo = m->param_size[MODEL_P_BO] ? m->param[MODEL_P_BO] : NULL,
	    .qnorm = m->param_size[MODEL_P_QNORM] ? m->param[MODEL_P_QNORM] : NULL,
	    .knorm = m->param_size[MODEL_P_KNORM] ? m->param[MODEL_P_KNORM] : NULL,
	};
	model_cuda_optim oo = {
	    .kind = (int)b->o.optim.kind,
	    .b1 = b->o.optim.b1,
	    .b2 = b->o.optim.b2,
	    .eps = b->o.optim.eps,
	    .momentum = b->o.optim.momentum,
	    .weight_decay = b->o.optim.weight_decay,
	};
	int rv;
	if ((rv = model_cuda_new(&b->cu, &cc, &w, 0)) != 0)
		return rv;
	return model_cuda_optim_set(b->cu, &oo);
}
#endif

int model_backend_open(model_backend **out, model_llama *m, const model_backend_opts *o)
{
	model_backend *b;
	char why[256];
	int rv;
	*out = NULL;
	if (!m || !o || o->max_batch < 1 || o->max_seq < 1 || o->max_seq > MODEL_OPS_MAX_T ||
	    o->max_seq > m->cfg.max_position_embeddings) {
		fl_log(FL_LOG_ERROR, "backend", "bad options (max_batch %d, max_seq %d)",
		       o ? o->max_batch : 0, o ? o->max_seq : 0);
		return FL_EINVAL;
	}
	if ((rv = model_config_check_seq(&m->cfg, o->max_seq, "sequence length")) != 0)
		return rv;
	if (!(b = calloc(1, sizeof *b)))
		return FL_ENOMEM;
	b->o = *o;
	b->m = m;
	if ((rv = model_device_resolve(o->device, &b->dev, why, sizeof why)) != 0) {
		fl_log(FL_LOG_ERROR, "backend", "--device %s: %s", o->device ? o->device : "(null)",
		       why);
		goto fail;
	}
	if (why[0])
		fl_log(FL_LOG_INFO, "backend", "%s", why);
	if (b->dev == MODEL_DEVICE_CPU) {
		model_llama_set_grad_checkpoint(m, o->grad_checkpoint);
		if (o->mode == MODEL_TRAIN_FULL) {
			if ((rv = model_llama_set_mode(m, MODEL_TRAIN_FULL)) != 0 ||
			    (rv = cpu_train_setup(b)) != 0)
				goto fail;
		}
	} else {
#ifdef FL_HAVE_CUDA
		if ((rv = cuda_open(b)) != 0)
			goto fail;
#endif
	}
	*out = b;
	return 0;
fail:
	model_backend_close(b);
	return rv;
}

int model_backend_attach_lora(model_backend *b, lora_adapter *ad)
{
	int rv;
	if (!ad)
		return FL_EINVAL;
	/* the CPU model validates names and shapes and maps matrices to layers */
	if ((rv = model_llama_attach_lora(b->m, ad)) != 0)
		return rv;
	b->ad = ad;
	if (b->dev == MODEL_DEVICE_CPU) {
		if (is_lora(b->o.mode)) {
			if ((rv = model_llama_set_mode(b->m, b->o.mode)) != 0)
				return rv;
			return cpu_train_setup(b);
		}
		return 0;
	}
#ifdef FL_HAVE_CUDA
	{
		int L = b->m->cfg.num_layers, n = 0;
		model_cuda_lora_mat *mats = calloc((size_t)ad->n, sizeof *mats);
		if (!mats)
			return FL_ENOMEM;
		for (int l = 0; l < L; l++)
			for (int k = 0; k < MODEL_NMODULE; k++) {
				int i = b->m->lora_idx[l * MODEL_NMODULE + k];
				if (i < 0)
					continue;
				mats[n].layer = l;
				mats[n].module = k;
				mats[n].a_off = (size_t)(ad->mats[i].A - ad->params);
				mats[n].b_off = (size_t)(ad->mats[i].B - ad->params);
				n++;
			}
		rv = model_cuda_lora_attach(b->cu, n, mats, ad->r, lora_adapter_scale(ad), ad->n_a,
		                            ad->n_b, ad->params, b->o.mode != MODEL_TRAIN_LORA_B);
		free(mats);
		return rv;
	}
#else
	return FL_ENOTSUP;
#endif
}

int model_backend_load_lora(model_backend *b)
{
	if (!b->ad)
		return FL_ESTATE;
	if (b->dev == MODEL_DEVICE_CPU)
		return model_backend_reset_optimizer(b);
#ifdef FL_HAVE_CUDA
	int rv = model_cuda_lora_set(b->cu, b->ad->params);
	return rv ? rv : model_cuda_optim_reset(b->cu);
#else
	return FL_ENOTSUP;
#endif
}

int model_backend_sync_lora(model_backend *b)
{
	if (!b->ad)
		return FL_ESTATE;
	if (b->dev == MODEL_DEVICE_CPU)
		return 0;
#ifdef FL_HAVE_CUDA
	return model_cuda_lora_get(b->cu, b->ad->params);
#else
	return FL_ENOTSUP;
#endif
}

int model_backend_sync_model(model_backend *b)
{
	if (b->dev == MODEL_DEVICE_CPU)
		return 0; /* the CPU model is the one trained */
#ifdef FL_HAVE_CUDA
	if (b->o.mode != MODEL_TRAIN_FULL)
		return 0; /* base weights never change */
	for (int k = 0; k < MODEL_NPARAM; k++) {
		int rv;
		if (b->m->param_size[k] == 0)
			continue; /* lm_head when tied */
		if ((rv = model_cuda_get_weight(b->cu, k, b->m->param[k], b->m->param_size[k])) !=
		    0)
			return rv;
	}
	return 0;
#else
	return FL_ENOTSUP;
#endif
}

int model_backend_reset_optimizer(model_backend *b)
{
	if (b->dev == MODEL_DEVICE_CPU) {
		if (b->opt)
			model_optim_reset(b->opt);
		return 0;
	}
#ifdef FL_HAVE_CUDA
	return model_cuda_optim_reset(b->cu);
#else
	return FL_ENOTSUP;
#endif
}

static int slice(const model_backend *b, int B, int b0)
{
	return B - b0 < b->o.max_batch ? B - b0 : b->o.max_batch;
}

int model_backend_eval(model_backend *b, const int *tok, const int *tgt, int B, int T,
                       double *loss_sum, long *count, long *correct)
{
	int rv;
	if (!tok || !tgt || B < 1 || T < 1 || T > b->o.max_seq)
		return FL_EINVAL;
	if (b->dev == MODEL_DEVICE_CUDA) {
#ifdef FL_HAVE_CUDA
		return model_cuda_eval(b->cu, tok, tgt, B, T, loss_sum, count, correct);
#endif
	}
	for (int b0 = 0; b0 < B; b0 += b->o.max_batch) {
		int Bm = slice(b, B, b0);
		float loss;
		if ((rv = model_llama_forward(b->m, tok + (size_t)b0 * T, tgt + (size_t)b0 * T, Bm,
		                              T, &loss)) != 0)
			return rv;
		if (loss_sum)
			*loss_sum += (double)loss * (double)b->m->ntargets;
		if (count)
			*count += b->m->ntargets;
		if (correct)
			*correct += b->m->ncorrect;
	}
	return 0;
}

int model_backend_logits(model_backend *b, const int *tok, int B, int T, float *logits)
{
	int rv;
	size_t V = (size_t)b->m->cfg.vocab_size;
	if (!tok || !logits || B < 1 || T < 1 || T > b->o.max_seq)
		return FL_EINVAL;
	if (b->dev == MODEL_DEVICE_CUDA) {
#ifdef FL_HAVE_CUDA
		return model_cuda_logits(b->cu, tok, B, T, logits);
#endif
	}
	for (int b0 = 0; b0 < B; b0 += b->o.max_batch) {
		int Bm = slice(b, B, b0);
		if ((rv = model_llama_forward(b->m, tok + (size_t)b0 * T, NULL, Bm, T, NULL)) != 0)
			return rv;
		const float *l = model_llama_logits(b->m);
		if (!l)
			return FL_ESTATE;
		memcpy(logits + (size_t)b0 * T * V, l, (size_t)Bm * T * V * sizeof(float));
	}
	return 0;
}

int model_backend_train_step(model_backend *b, const int *tok, const int *tgt, int B, int T,
                             float lr, double *loss)
{
	int rv;
	long total = 0;
	double lsum = 0;
	float *p, *g;
	size_t n;
	if (b->o.mode == MODEL_TRAIN_NONE || (is_lora(b->o.mode) && !b->ad)) {
		fl_log(FL_LOG_ERROR, "backend", "train step without a training mode or adapter");
		return FL_ESTATE;
	}
	if (!tok || !tgt || B < 1 || T < 1 || T > b->o.max_seq)
		return FL_EINVAL;
	if (b->dev == MODEL_DEVICE_CUDA) {
#ifdef FL_HAVE_CUDA
		return model_cuda_train_step(b->cu, tok, tgt, B, T, lr, loss);
#endif
	}
	if ((rv = model_llama_trainable(b->m, &p, &g, &n)) != 0)
		return rv;
	for (long i = 0; i < (long)B * T; i++)
		total += tgt[i] >= 0;
	int single = B <= b->o.max_batch;
	model_llama_zero_grad(b->m);
	if (!single)
		memset(b->acc, 0, n * sizeof(float));
	for (int b0 = 0; b0 < B; b0 += b->o.max_batch) {
		int Bm = slice(b, B, b0);
		float l;
		if ((rv = model_llama_forward(b->m, tok + (size_t)b0 * T, tgt + (size_t)b0 * T, Bm,
		                              T, &l)) != 0)
			return rv;
		long cnt = b->m->ntargets;
		lsum += (double)l * (double)cnt;
		if (cnt == 0)
			continue;
		if ((rv = model_llama_backward(b->m)) != 0)
			return rv;
		if (!single) {
			float w = (float)cnt / (float)total;
			for (size_t i = 0; i < n; i++)
				b->acc[i] += w * g[i];
			model_llama_zero_grad(b->m);
		}
	}
	if ((rv = model_optim_step(b->opt, p, single ? g : b->acc, n, lr)) != 0)
		return rv;
	if (loss)
		*loss = total ? lsum / (double)total : 0.0;
	return 0;
}

int model_backend_dp_step(model_backend *b, const int *tok, const int *tgt, int B, int T,
                          double clip, double noise_mult, double expected_batch,
                          struct priv_noise *noise, float lr, double *loss, int *nclipped)
{
	int rv, ncl = 0, nscored = 0;
	double lsum = 0;
	float *p, *g;
	size_t n;
	if (!is_lora(b->o.mode) || !b->ad) {
		fl_log(FL_LOG_ERROR, "backend", "DP-SGD needs a LoRA training mode and an adapter");
		return FL_ESTATE;
	}
	if (!noise || !(clip > 0) || !isfinite(clip) || !(noise_mult >= 0) ||
	    !isfinite(noise_mult) || !(expected_batch > 0) || !isfinite(expected_batch) || B < 0 ||
	    (B > 0 && (!tok || !tgt)) || T < 1 || T > b->o.max_seq)
		return FL_EINVAL;
	if (b->dev == MODEL_DEVICE_CUDA) {
#ifdef FL_HAVE_CUDA
		uint8_t seed[32];
		priv_noise_seed_bytes(noise, seed);
		rv = model_cuda_dp_step(b->cu, tok, tgt, B, T, clip, noise_mult, expected_batch,
		                        seed, lr, loss, nclipped);
		memset(seed, 0, sizeof seed);
		return rv;
#endif
	}
	if ((rv = model_llama_trainable(b->m, &p, &g, &n)) != 0)
		return rv;
	memset(b->acc, 0, n * sizeof(float));
	for (int b0 = 0; b0 < B; b0 += b->o.max_batch) {
		int Bm = slice(b, B, b0), nc = 0;
		float l;
		if ((rv = model_llama_forward(b->m, tok + (size_t)b0 * T, tgt + (size_t)b0 * T, Bm,
		                              T, &l)) != 0)
			return rv;
		/* each example's own mean loss, from the per-token losses */
		for (int e = 0; e < Bm; e++) {
			double s = 0;
			long c = 0;
			for (int t = 0; t < T; t++)
				if (tgt[(size_t)(b0 + e) * T + t] >= 0) {
					s += b->m->acts.losses[(size_t)e * T + t];
					c++;
				}
			if (c) {
				lsum += s / (double)c;
				nscored++;
			}
		}
		if (b->m->ntargets == 0)
			continue;
		if ((rv = model_llama_backward_per_example(b->m, b->pe)) != 0)
			return rv;
		priv_clip_rows(b->pe, Bm, n, clip, &nc);
		ncl += nc;
		for (int e = 0; e < Bm; e++) {
			const float *row = b->pe + (size_t)e * n;
			for (size_t i = 0; i < n; i++)
				b->acc[i] += row[i];
		}
	}
	priv_noise_add(noise, b->acc, n, noise_mult * clip);
	float inv = (float)(1.0 / expected_batch);
	for (size_t i = 0; i < n; i++)
		b->acc[i] *= inv;
	if ((rv = model_optim_step(b->opt, p, b->acc, n, lr)) != 0)
		return rv;
	if (loss)
		*loss = nscored ? lsum / nscored : NAN;
	if (nclipped)
		*nclipped = ncl;
	return 0;
}
