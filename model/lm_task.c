/*
 * model/lm_task.c — the "lm" task: LoRA fine-tuning of a Llama-architecture
 * language model (model/llama.h, run through model/backend.h on the CPU or a
 * GPU) on the client's own text (client/data.h, byte-level tokens).
 *
 * Client (client_index >= 0): open loads the base model from opts->base_dir
 * (config.json + model.safetensors) and the client's data from opts->data,
 * packed into sequences of opts->seq_len + 1 tokens with a held-out split.
 * Coordinator (client_index -1): only config.json is read, to know the
 * adapter's shape; no weights, no data.
 *
 * train: local_steps optimizer steps on the attached adapter (A and B, or B
 * only when train_a == 0), minibatches of batch_size training sequences drawn
 * without replacement from a per-round permutation (seeded by round_seed and
 * the client index). With dp_clip > 0 every step is a DP-SGD step instead:
 * Poisson sampling of training sequences with rate dp_q (privacy/dp.h), each
 * sequence's LoRA gradient clipped to dp_clip, summed, Gaussian noise
 * N(0, (dp_noise*dp_clip)^2) added, divided by the expected batch dp_q*N
 * (model_backend_dp_step). The optimizer state starts from zero every round
 * (every round starts from a new global adapter).
 *
 * eval: mean next-token loss (nats/token) and argmax accuracy over at most
 * LM_EVAL_MAX_SEQS held-out sequences, spread evenly over the held-out split
 * (the same ones every time, so rounds are comparable).
 *
 * Not here: tokenizers of real checkpoints (tokenizer.json BPE): data is
 * byte-level, so the model's vocab_size must be at least MODEL_TOK_VOCAB.
 *
 * Ownership: the task owns the model, the backend, the data and its batch
 * buffers. Adapters passed to train/eval stay the caller's; the model only
 * borrows them during the call.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/data.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/rng.h"
#include "model/backend.h"
#include "model/config.h"
#include "model/llama.h"
#include "model/task_impl.h"
#include "model/tokenizer.h"
#include "privacy/dp.h"
#include "tokenizer/model_tok.h"

#define LM_EVAL_MAX_SEQS 64
#define LM_MICRO_BATCH   8
#define LM_STREAM_BATCH  0x1a000000ull
#define LM_MAX_STEPS     1000000

_Static_assert(sizeof(int) == sizeof(int32_t), "token buffers are shared as int");

typedef struct lm_task {
	int client;
	int T;
	char *targets; /* LoRA targets, owned copy */
	char *device;  /* owned copy */
	int grad_checkpoint;
	int rank;
	float alpha;
	model_config cfg;
	lora_adapter *shape; /* an adapter of the task's shape (values unused) */
	/* client only */
	model_llama *m;
	client_data *d;
	model_backend *be;
	model_train_mode be_mode;
	model_opt_kind be_opt;
	float be_wd;
	int *tok, *tgt; /* batch buffers, cap_rows x T */
	long cap_rows;
	long *perm; /* permutation of training rows */
	long perm_pos;
	long *idx; /* Poisson sample, room for n_train */
} lm_task;

static char *dupstr(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void lm_close(void *impl)
{
	lm_task *t = impl;
	if (!t)
		return;
	model_backend_close(t->be);
	model_llama_free(t->m);
	client_data_free(t->d);
	lora_adapter_free(t->shape);
	free(t->tok);
	free(t->tgt);
	free(t->perm);
	free(t->idx);
	free(t->targets);
	free(t->device);
	free(t);
}

static int lm_open(void **impl, const model_task_opts *o)
{
	lm_task *t;
	char path[4096], err[512];
	fl_tokenizer *tok = NULL;
	fl_chat_config chat = {0};
	int rv;

	*impl = NULL;
	if (!o->base_dir || !*o->base_dir) {
		fl_log(FL_LOG_ERROR, "lm", "task lm needs a base model folder (--base)");
		return FL_EINVAL;
	}
	if (o->rank < 1 || !(o->alpha > 0) || o->seq_len < 1 || o->client_index < -1) {
		fl_log(FL_LOG_ERROR, "lm", "bad settings: rank %d alpha %g seq_len %d", o->rank,
		       o->alpha, o->seq_len);
		return FL_EINVAL;
	}
	t = calloc(1, sizeof *t);
	if (!t)
		return FL_ENOMEM;
	t->client = o->client_index;
	t->T = o->seq_len;
	t->rank = o->rank;
	t->alpha = (float)o->alpha;
	t->targets =
	    dupstr(o->lora_targets && *o->lora_targets ? o->lora_targets : "q_proj,v_proj");
	t->device = dupstr(o->device && *o->device ? o->device : "cpu");
	t->grad_checkpoint = o->grad_checkpoint;
	if (!t->targets || !t->device) {
		rv = FL_ENOMEM;
		goto fail;
	}
	if (t->client < 0) {
		if ((size_t)snprintf(path, sizeof path, "%s/config.json", o->base_dir) >=
		    sizeof path) {
			rv = FL_EINVAL;
			goto fail;
		}
		if ((rv = model_config_load(&t->cfg, path)) != 0)
			goto fail;
		if ((rv = model_config_validate(&t->cfg, path)) != 0)
			goto fail;
		if ((rv = fl_tok_load_model(o->base_dir, t->cfg.vocab_size, &tok, NULL, err,
		                            sizeof err)) != 0) {
			fl_log(FL_LOG_ERROR, "lm", "%s", err);
			goto fail;
		}
	} else {
		client_data_opts dop;
		if ((rv = model_llama_load(&t->m, o->base_dir)) != 0) {
			fl_log(FL_LOG_ERROR, "lm", "cannot load base model from %s: %s",
			       o->base_dir, fl_strerror(rv));
			goto fail;
		}
		t->cfg = t->m->cfg;
		if (!o->data || !*o->data) {
			fl_log(FL_LOG_ERROR, "lm", "client %d: no data (--data)", t->client);
			rv = FL_EINVAL;
			goto fail;
		}
		if ((rv = fl_tok_load_model(o->base_dir, t->cfg.vocab_size, &tok, &chat, err,
		                            sizeof err)) != 0) {
			fl_log(FL_LOG_ERROR, "lm", "%s", err);
			goto fail;
		}
		client_data_opts_default(&dop);
		dop.seq_len = t->T;
		dop.tok = tok;
		dop.chat_template = chat.chat_template;
		dop.bos_text = chat.bos_token;
		dop.eos_text = chat.eos_token;
		if ((rv = client_data_load(&t->d, o->data, &dop, err, sizeof err)) != 0) {
			fl_log(FL_LOG_ERROR, "lm", "client %d: %s", t->client, err);
			goto fail;
		}
		fl_log(FL_LOG_INFO, "lm",
		       "client %d: %d files, %ld documents, %ld train / %ld held-out sequences of "
		       "%d tokens%s",
		       t->client, t->d->st.files, t->d->st.docs, t->d->n_train, t->d->n_eval, t->T,
		       t->d->st.bad_lines ? " (some JSONL lines skipped)" : "");
		if (t->d->st.bad_lines)
			fl_log(FL_LOG_WARN, "lm", "client %d: %ld bad JSONL lines skipped",
			       t->client, t->d->st.bad_lines);
		if (t->d->st.samples)
			fl_log(
			    FL_LOG_INFO, "lm",
			    "client %d: %ld chat/prompt-completion samples (one padded row each, "
			    "loss on assistant/completion tokens), %ld truncated to %d tokens, %ld "
			    "without a loss token dropped",
			    t->client, t->d->st.samples, t->d->st.truncated, t->T + 1,
			    t->d->st.no_loss);
	}
	fl_tok_free(tok);
	tok = NULL;
	fl_chat_config_free(&chat);
	if (t->T > t->cfg.max_position_embeddings) {
		fl_log(FL_LOG_ERROR, "lm",
		       "seq_len %d exceeds the model's max_position_embeddings %d", t->T,
		       t->cfg.max_position_embeddings);
		rv = FL_EINVAL;
		goto fail;
	}
	/* a sliding window shorter than the sequences (not implemented): refused
	 * here, once, rather than at every round's backend */
	if ((rv = model_config_check_seq(&t->cfg, t->T, "seq_len")) != 0)
		goto fail;
	if ((rv = model_lora_adapter_new(&t->cfg, t->targets, t->rank, t->alpha, &t->shape)) != 0) {
		fl_log(FL_LOG_ERROR, "lm", "bad LoRA targets '%s' or rank %d", t->targets, t->rank);
		goto fail;
	}
	*impl = t;
	return 0;
fail:
	fl_tok_free(tok);
	fl_chat_config_free(&chat);
	lm_close(t);
	return rv;
}

static int lm_adapter_new(void *impl, uint64_t seed, lora_adapter **out)
{
	lm_task *t = impl;
	int rv = lora_adapter_clone(out, t->shape);
	if (rv == 0)
		lora_adapter_init(*out, seed);
	return rv;
}

static long lm_num_samples(const void *impl)
{
	const lm_task *t = impl;
	return t->d ? t->d->n_train : 0;
}

/* Makes sure a backend with this mode and optimizer is open (reopening when
 * they changed) and attaches ad to it. */
static int ensure_backend(lm_task *t, model_train_mode mode, model_opt_kind opt, float wd,
                          lora_adapter *ad)
{
	model_backend_opts bo;
	int rv;
	if (t->be && (t->be_mode != mode || t->be_opt != opt || t->be_wd != wd)) {
		model_backend_close(t->be);
		t->be = NULL;
	}
	if (!t->be) {
		/* the model checks the adapter's names and shapes on attach; LoRA
		 * modes need one attached before the mode is set */
		if ((rv = model_llama_attach_lora(t->m, ad)) != 0)
			return rv;
		model_backend_opts_default(&bo);
		bo.device = t->device;
		bo.max_batch = LM_MICRO_BATCH;
		bo.max_seq = t->T;
		bo.mode = mode;
		bo.grad_checkpoint = t->grad_checkpoint;
		bo.optim.kind = opt;
		bo.optim.weight_decay = wd;
		if ((rv = model_backend_open(&t->be, t->m, &bo)) != 0) {
			fl_log(FL_LOG_ERROR, "lm", "cannot open the %s backend: %s", t->device,
			       fl_strerror(rv));
			return rv;
		}
		t->be_mode = mode;
		t->be_opt = opt;
		t->be_wd = wd;
	}
	return model_backend_attach_lora(t->be, ad);
}

static int grow_rows(lm_task *t, long rows)
{
	int *a, *b;
	if (rows <= t->cap_rows)
		return 0;
	a = realloc(t->tok, (size_t)rows * t->T * sizeof(int));
	if (!a)
		return FL_ENOMEM;
	t->tok = a;
	b = realloc(t->tgt, (size_t)rows * t->T * sizeof(int));
	if (!b)
		return FL_ENOMEM;
	t->tgt = b;
	t->cap_rows = rows;
	return 0;
}

/* Copies data row `src` (T+1 tokens) into batch slot `slot` as inputs
 * [0, T) and targets [1, T]; targets whose mask byte is 0 become -1 (no
 * loss, no gradient). mask NULL: every target counts. */
static void put_row(lm_task *t, long slot, const int32_t *src, const uint8_t *mask)
{
	int T = t->T;
	int *tg = t->tgt + (size_t)slot * T;
	memcpy(t->tok + (size_t)slot * T, src, (size_t)T * sizeof(int));
	memcpy(tg, src + 1, (size_t)T * sizeof(int));
	if (mask)
		for (int j = 0; j < T; j++)
			if (!mask[j + 1])
				tg[j] = -1;
}

static int eval_attached(lm_task *t, double *loss, double *acc)
{
	double sum = 0;
	long count = 0, correct = 0, n = t->d->n_eval,
	     use = n < LM_EVAL_MAX_SEQS ? n : LM_EVAL_MAX_SEQS;
	int rv;
	if ((rv = grow_rows(t, LM_MICRO_BATCH)) != 0)
		return rv;
	for (long i = 0; i < use; i += LM_MICRO_BATCH) {
		int B = (int)(use - i < LM_MICRO_BATCH ? use - i : LM_MICRO_BATCH);
		for (int b = 0; b < B; b++) /* evenly spread over the split */
			put_row(t, b, client_data_eval_seq(t->d, (i + b) * n / use),
			        client_data_eval_mask(t->d, (i + b) * n / use));
		if ((rv = model_backend_eval(t->be, t->tok, t->tgt, B, t->T, &sum, &count,
		                             &correct)) != 0)
			return rv;
	}
	*loss = count ? sum / (double)count : NAN;
	*acc = count ? (double)correct / (double)count : NAN;
	return 0;
}

static int lm_eval(void *impl, const lora_adapter *ad, double *loss, double *acc)
{
	lm_task *t = impl;
	int rv;
	*loss = *acc = NAN;
	if (!t->d)
		return FL_ESTATE;
	if (!lora_adapter_same_shape(ad, t->shape))
		return FL_ESHAPE;
	/* eval only reads the adapter; the model's attach takes a non-const
	 * pointer because training modes write through it */
	if ((rv = ensure_backend(t, t->be ? t->be_mode : MODEL_TRAIN_LORA,
	                         t->be ? t->be_opt : MODEL_OPT_ADAMW, t->be ? t->be_wd : 0,
	                         (lora_adapter *)ad)) != 0)
		return rv;
	return eval_attached(t, loss, acc);
}

/* Next minibatch of B distinct training rows (a permutation walked in order,
 * reshuffled when exhausted). */
static int fill_minibatch(lm_task *t, fl_rng *g, int B)
{
	long N = t->d->n_train;
	int rv;
	if ((rv = grow_rows(t, B)) != 0)
		return rv;
	for (int b = 0; b < B; b++) {
		if (t->perm_pos >= N) {
			for (long i = N - 1; i > 0; i--) {
				long j = (long)fl_rng_below(g, (uint64_t)i + 1), x = t->perm[i];
				t->perm[i] = t->perm[j];
				t->perm[j] = x;
			}
			t->perm_pos = 0;
		}
		put_row(t, b, client_data_train_seq(t->d, t->perm[t->perm_pos]),
		        client_data_train_mask(t->d, t->perm[t->perm_pos]));
		t->perm_pos++;
	}
	return 0;
}

static int lm_train(void *impl, lora_adapter *ad, const model_train_params *p, priv_noise *noise,
                    model_train_result *res)
{
	lm_task *t = impl;
	model_train_mode mode = p->train_a ? MODEL_TRAIN_LORA : MODEL_TRAIN_LORA_B;
	model_opt_kind opt = p->optimizer == MODEL_OPT_SGD ? MODEL_OPT_SGD : MODEL_OPT_ADAMW;
	int dp = p->dp_clip > 0, rv;
	long N;
	double acc, loss_sum = 0, t0, secs;
	long tokens = 0;
	int loss_n = 0;
	fl_rng g;

	memset(res, 0, sizeof *res);
	res->train_loss = res->eval_before = res->eval_after = NAN;
	if (!t->d)
		return FL_ESTATE;
	if (!lora_adapter_same_shape(ad, t->shape))
		return FL_ESHAPE;
	if (p->local_steps < 0 || p->local_steps > LM_MAX_STEPS || !(p->lr >= 0) ||
	    (!dp && (p->batch_size < 1 || p->batch_size > 1 << 16)))
		return FL_EINVAL;
	if (dp && (!noise || !(p->dp_q > 0 && p->dp_q <= 1) || !(p->dp_noise >= 0)))
		return FL_EINVAL;
	N = t->d->n_train;
	res->num_samples = N;
	if ((rv = ensure_backend(t, mode, opt, (float)p->weight_decay, ad)) != 0)
		return rv;
	if ((rv = model_backend_reset_optimizer(t->be)) != 0)
		return rv;
	if ((rv = eval_attached(t, &res->eval_before, &acc)) != 0)
		return rv;

	fl_rng_init(&g, p->round_seed, LM_STREAM_BATCH + (uint64_t)t->client);
	if (!t->perm) {
		t->perm = malloc((size_t)N * sizeof *t->perm);
		t->idx = malloc((size_t)N * sizeof *t->idx);
		if (!t->perm || !t->idx)
			return FL_ENOMEM;
	}
	/* a fresh permutation each round, from the round's seed */
	for (long i = 0; i < N; i++)
		t->perm[i] = i;
	t->perm_pos = N;

	t0 = fl_now_s();
	for (int s = 0; s < p->local_steps; s++) {
		double loss = NAN;
		if (p->before_step && (rv = p->before_step(p->step_arg, s)) != 0)
			return rv;
		if (!dp) {
			if ((rv = fill_minibatch(t, &g, p->batch_size)) != 0)
				return rv;
			rv = model_backend_train_step(t->be, t->tok, t->tgt, p->batch_size, t->T,
			                              (float)p->lr, &loss);
			tokens += (long)p->batch_size * t->T;
		} else {
			long cnt = 0;
			int nclipped = 0;
			if ((rv = priv_poisson_sample(noise, N, p->dp_q, t->idx, &cnt)) != 0)
				return rv;
			if ((rv = grow_rows(t, cnt > 0 ? cnt : 1)) != 0)
				return rv;
			for (long i = 0; i < cnt; i++)
				put_row(t, i, client_data_train_seq(t->d, t->idx[i]),
				        client_data_train_mask(t->d, t->idx[i]));
			rv = model_backend_dp_step(t->be, t->tok, t->tgt, (int)cnt, t->T,
			                           p->dp_clip, p->dp_noise, p->dp_q * (double)N,
			                           noise, (float)p->lr, &loss, &nclipped);
			tokens += cnt * t->T;
			res->dp_steps++;
		}
		if (rv != 0) {
			fl_log(FL_LOG_ERROR, "lm", "client %d: training step %d failed: %s",
			       t->client, s, fl_strerror(rv));
			return rv;
		}
		if (isfinite(loss)) {
			loss_sum += loss;
			loss_n++;
		}
		res->steps++;
	}
	secs = fl_now_s() - t0;
	if ((rv = model_backend_sync_lora(t->be)) != 0)
		return rv;
	res->train_loss = loss_n ? loss_sum / loss_n : NAN;
	res->tokens_per_s = secs > 0 ? (double)tokens / secs : 0;
	return eval_attached(t, &res->eval_after, &acc);
}

const model_task_ops model_lm_ops = {
    .name = "lm",
    .open = lm_open,
    .close = lm_close,
    .adapter_new = lm_adapter_new,
    .train = lm_train,
    .eval = lm_eval,
    .num_samples = lm_num_samples,
};
