/*
 * tools/cmd_pretrain.c — `fedlora pretrain`: trains a Llama-architecture base
 * model from scratch on byte-level text (every parameter, AdamW, linear
 * warmup then cosine or constant learning rate) and writes it in the Hugging
 * Face layout: OUT/config.json, OUT/model.safetensors (F32), plus
 * OUT/pretrain.json (what was trained on and how, and the losses).
 *
 * Progress goes to stderr: step, training loss, learning rate, tokens/s and
 * ETA, every --log-every steps and at least every 10 s. The held-out loss
 * (the data's held-out split, client/data.h) is printed at the start and at
 * the end on stdout.
 *
 * --tokenizer DIR trains on the ids of DIR's Hugging Face tokenizer.json
 * instead of bytes (vocab_size must cover them) and copies its tokenizer
 * files into OUT, so OUT is a complete model folder.
 *
 * Not here: gradient clipping (the backend's step has none; warmup keeps
 * the first steps tame), resuming.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/data.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "model/backend.h"
#include "model/config.h"
#include "model/llama.h"
#include "model/optim.h"
#include "tokenizer/model_tok.h"
#include "model/tokenizer.h"
#include "tools/cmds.h"

#define PT_STREAM_BATCH 0x2b000000ull
#define PT_MAX_STEPS    10000000

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: fedlora pretrain --model-config FILE.json --data PATHS --out DIR "
	        "--steps N\n"
	        "                        [options]\n"
	        "\n"
	        "Trains a Llama-architecture model from scratch (on bytes, or on the ids of\n"
	        "a Hugging Face tokenizer with --tokenizer) and writes\n"
	        "DIR/config.json and DIR/model.safetensors (Hugging Face layout) and\n"
	        "DIR/pretrain.json (settings and losses).\n"
	        "\n"
	        "  --model-config FILE  config.json-style model shape (LlamaForCausalLM "
	        "fields;\n"
	        "                       model_type qwen2, qwen3 or mistral for those "
	        "families);\n"
	        "                       vocab_size must be >= %d (256 bytes + BOS + "
	        "EOS)\n"
	        "  --data PATHS         comma-separated text/JSONL/fortune files or "
	        "folders\n"
	        "  --tokenizer DIR      train on the ids of DIR/tokenizer.json (Hugging Face)\n"
	        "                       instead of bytes; vocab_size must cover them; the\n"
	        "                       tokenizer files are copied into --out\n"
	        "  --out DIR            output folder (created)\n"
	        "  --steps N            optimizer steps\n"
	        "  --batch-size B       sequences per step (default 16)\n"
	        "  --seq-len T          tokens per sequence (default 128, at most\n"
	        "                       max_position_embeddings)\n"
	        "  --lr X               peak learning rate (default 3e-3)\n"
	        "  --min-lr X           final learning rate of the cosine (default "
	        "lr/10)\n"
	        "  --warmup N           linear warmup steps (default min(100, "
	        "steps/10))\n"
	        "  --schedule S         cosine | constant (default cosine)\n"
	        "  --weight-decay X     AdamW decoupled weight decay (default 0.01)\n"
	        "  --seed S             initialization and batch order (default 1)\n"
	        "  --device D           cpu | cuda | auto (default cpu)\n"
	        "  --grad-checkpoint    keep layer inputs only, recompute in the backward\n"
	        "  --eval-seqs N        held-out sequences scored at start and end "
	        "(default 128)\n"
	        "  --log-every N        progress line every N steps (default steps/20)\n",
	        MODEL_TOK_VOCAB);
}

static void fmt_dur(double s, char *buf, size_t n)
{
	long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
	if (t >= 3600)
		snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
	else if (t >= 60)
		snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
	else
		snprintf(buf, n, "%lds", t);
}

/* Mean loss and accuracy of up to max_seqs held-out rows, spread evenly. */
static int eval_heldout(model_backend *be, const client_data *d, int *tok, int *tgt, int mb,
                        long max_seqs, double *loss, double *acc, long *used)
{
	long n = d->n_eval, use = n < max_seqs ? n : max_seqs, count = 0, correct = 0;
	double sum = 0;
	int T = d->T, rv;
	for (long i = 0; i < use; i += mb) {
		int B = (int)(use - i < mb ? use - i : mb);
		for (int b = 0; b < B; b++) {
			const int32_t *row = client_data_eval_seq(d, (i + b) * n / use);
			memcpy(tok + (size_t)b * T, row, (size_t)T * sizeof(int));
			memcpy(tgt + (size_t)b * T, row + 1, (size_t)T * sizeof(int));
		}
		if ((rv = model_backend_eval(be, tok, tgt, B, T, &sum, &count, &correct)) != 0)
			return rv;
	}
	*loss = count ? sum / (double)count : NAN;
	*acc = count ? (double)correct / (double)count : NAN;
	*used = use;
	return 0;
}

/* Writes j as indented JSON and a newline to path, atomically; 0 or an FL_E*
 * code. */
static int write_summary(const char *path, cJSON *j)
{
	char *s = cJSON_Print(j);
	int rv;

	if (!s)
		return FL_ENOMEM;
	struct iovec v[2] = {{s, strlen(s)}, {"\n", 1}};
	rv = fl_write_atomicv(path, v, 2, 0644);
	free(s);
	return rv;
}

int cmd_pretrain(int argc, char **argv)
{
	const char *cfg_path = NULL, *data = NULL, *out = NULL, *device = "cpu",
	           *schedule = "cosine";
	long steps = -1, batch = 16, T = 128, warmup = -1, seed = 1, eval_seqs = 128, log_every = 0;
	double lr = 3e-3, min_lr = -1, wd = 0.01;
	int grad_ckpt = 0;
	model_config cfg;
	model_llama *m = NULL;
	model_backend *be = NULL;
	model_backend_opts bo;
	client_data *d = NULL;
	client_data_opts dop;
	int *tok = NULL, *tgt = NULL, mb, rc = 1, rv, T_set = 0;
	long *perm = NULL, perm_pos;
	char err[512], path[4200];
	double t0, last_print, loss0, acc0, loss1 = NAN, acc1 = NAN, train_loss = NAN, ema = NAN;
	long used = 0;
	fl_rng g;
	cJSON *sum = NULL;
	const char *tokdir = NULL;
	fl_tokenizer *tk = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int bad = 0;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--grad-checkpoint")) {
			grad_ckpt = 1;
			continue;
		}
		if (strncmp(a, "--", 2) || !v) {
			fprintf(stderr, "fedlora pretrain: %s '%s'\n",
			        strncmp(a, "--", 2) ? "unexpected argument" : "missing value for",
			        a);
			usage(stderr);
			return 2;
		}
		i++;
		if (!strcmp(a, "--model-config"))
			cfg_path = v;
		else if (!strcmp(a, "--data"))
			data = v;
		else if (!strcmp(a, "--tokenizer"))
			tokdir = v;
		else if (!strcmp(a, "--out"))
			out = v;
		else if (!strcmp(a, "--device"))
			device = v;
		else if (!strcmp(a, "--schedule"))
			schedule = v;
		else if (!strcmp(a, "--steps"))
			bad = fl_parse_long(v, 0, PT_MAX_STEPS, &steps);
		else if (!strcmp(a, "--batch-size"))
			bad = fl_parse_long(v, 1, 4096, &batch);
		else if (!strcmp(a, "--seq-len")) {
			bad = fl_parse_long(v, 1, 1 << 20, &T);
			T_set = 1;
		} else if (!strcmp(a, "--warmup"))
			bad = fl_parse_long(v, 0, PT_MAX_STEPS, &warmup);
		else if (!strcmp(a, "--seed"))
			bad = fl_parse_long(v, 0, 0x7fffffffffffffffL, &seed);
		else if (!strcmp(a, "--eval-seqs"))
			bad = fl_parse_long(v, 1, 1 << 24, &eval_seqs);
		else if (!strcmp(a, "--log-every"))
			bad = fl_parse_long(v, 1, PT_MAX_STEPS, &log_every);
		else if (!strcmp(a, "--lr"))
			bad = fl_parse_double(v, 0, 10, &lr);
		else if (!strcmp(a, "--min-lr"))
			bad = fl_parse_double(v, 0, 10, &min_lr);
		else if (!strcmp(a, "--weight-decay"))
			bad = fl_parse_double(v, 0, 10, &wd);
		else {
			fprintf(stderr, "fedlora pretrain: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		}
		if (bad) {
			fprintf(stderr, "fedlora pretrain: bad value '%s' for %s\n", v, a);
			return 2;
		}
	}
	if (!cfg_path || !data || !out || steps < 0) {
		fprintf(stderr, "fedlora pretrain: --model-config, --data, --out and --steps are "
		                "required\n");
		usage(stderr);
		return 2;
	}
	if (strcmp(schedule, "cosine") && strcmp(schedule, "constant")) {
		fprintf(stderr, "fedlora pretrain: --schedule must be cosine or constant\n");
		return 2;
	}
	if (min_lr < 0)
		min_lr = lr / 10;
	if (warmup < 0)
		warmup = steps / 10 < 100 ? steps / 10 : 100;
	if (log_every == 0)
		log_every = steps / 20 > 0 ? steps / 20 : 1;

	if ((rv = model_config_load(&cfg, cfg_path)) != 0 ||
	    (rv = model_config_validate(&cfg, cfg_path)) != 0) {
		fprintf(stderr, "fedlora pretrain: %s: bad model config: %s\n", cfg_path,
		        fl_strerror(rv));
		return 1;
	}
	if (tokdir) {
		if ((rv = fl_tok_load(tokdir, &tk, err, sizeof err)) != 0) {
			fprintf(stderr, "fedlora pretrain: %s\n", err);
			return 1;
		}
		if (fl_tok_get_kind(tk) == FL_TOK_BYTES) {
			fprintf(stderr, "fedlora pretrain: %s has no tokenizer.json\n", tokdir);
			goto done;
		}
		if (cfg.vocab_size < fl_tok_vocab(tk)) {
			fprintf(stderr,
			        "fedlora pretrain: %s: vocab_size %d is below the %d ids of the "
			        "%s tokenizer of %s\n",
			        cfg_path, cfg.vocab_size, fl_tok_vocab(tk), fl_tok_kind_name(tk),
			        tokdir);
			goto done;
		}
	} else if (cfg.vocab_size < MODEL_TOK_VOCAB) {
		fprintf(stderr,
		        "fedlora pretrain: %s: vocab_size %d is below the byte-level "
		        "tokenizer's %d "
		        "ids\n",
		        cfg_path, cfg.vocab_size, MODEL_TOK_VOCAB);
		return 1;
	}
	if (!T_set && T > cfg.max_position_embeddings)
		T = cfg.max_position_embeddings;
	if (T > cfg.max_position_embeddings) {
		fprintf(stderr,
		        "fedlora pretrain: --seq-len %ld exceeds max_position_embeddings %d\n", T,
		        cfg.max_position_embeddings);
		return 2;
	}
	/* the tokenizer's specials, so transformers sees them too (a tokenizer
	 * without BOS, as Qwen's, takes its EOS there, as Qwen's config does) */
	if (tk) {
		int32_t b = fl_tok_bos(tk), e = fl_tok_eos(tk);
		cfg.bos_token_id = b >= 0 ? b : e >= 0 ? e : 0;
		cfg.eos_token_id = e >= 0 ? e : cfg.bos_token_id;
	} else {
		cfg.bos_token_id = MODEL_TOK_BOS;
		cfg.eos_token_id = MODEL_TOK_EOS;
	}

	client_data_opts_default(&dop);
	dop.seq_len = (int)T;
	dop.tok = tk;
	if ((rv = client_data_load(&d, data, &dop, err, sizeof err)) != 0) {
		fprintf(stderr, "fedlora pretrain: %s\n", err);
		return 1;
	}
	fprintf(stderr,
	        "pretrain: %d files, %ld documents, %zu tokens: %ld train / %ld "
	        "held-out sequences "
	        "of %ld tokens\n",
	        d->st.files, d->st.docs, d->st.tokens, d->n_train, d->n_eval, T);
	if (d->st.bad_lines)
		fprintf(stderr, "pretrain: %ld bad JSONL lines skipped\n", d->st.bad_lines);

	if ((rv = model_llama_new(&m, &cfg, (uint64_t)seed)) != 0) {
		fprintf(stderr, "fedlora pretrain: cannot create the model: %s\n", fl_strerror(rv));
		goto done;
	}
	fprintf(stderr,
	        "pretrain: model %zu parameters (%d layers, hidden %d, heads %d/%d, "
	        "vocab %d)\n",
	        model_config_num_params(&cfg), cfg.num_layers, cfg.hidden_size, cfg.num_heads,
	        cfg.num_kv_heads, cfg.vocab_size);
	model_backend_opts_default(&bo);
	bo.device = device;
	bo.grad_checkpoint = grad_ckpt;
	mb = batch < 8 ? (int)batch : 8;
	bo.max_batch = mb;
	bo.max_seq = (int)T;
	bo.mode = MODEL_TRAIN_FULL;
	bo.optim.kind = MODEL_OPT_ADAMW;
	bo.optim.b2 = 0.95f;
	bo.optim.weight_decay = (float)wd;
	/* a sliding window shorter than the sequences: refused (logged) before
	 * a device is opened, so the last line names the real reason */
	if ((rv = model_config_check_seq(&m->cfg, bo.max_seq, "--seq-len")) != 0) {
		fprintf(
		    stderr,
		    "fedlora pretrain: --seq-len %d is longer than the model's sliding window\n",
		    bo.max_seq);
		goto done;
	}
	if ((rv = model_backend_open(&be, m, &bo)) != 0) {
		fprintf(stderr, "fedlora pretrain: cannot open device '%s': %s\n", device,
		        fl_strerror(rv));
		goto done;
	}
	fprintf(stderr, "pretrain: device %s\n", model_device_name(model_backend_device(be)));
	tok = malloc((size_t)batch * T * sizeof *tok);
	tgt = malloc((size_t)batch * T * sizeof *tgt);
	perm = malloc((size_t)d->n_train * sizeof *perm);
	if (!tok || !tgt || !perm) {
		fprintf(stderr, "fedlora pretrain: out of memory\n");
		goto done;
	}
	if ((rv = eval_heldout(be, d, tok, tgt, mb, eval_seqs, &loss0, &acc0, &used)) != 0)
		goto fail_rv;
	printf("initial held-out loss %.4f nats/token, accuracy %.4f (%ld sequences)\n", loss0,
	       acc0, used);
	fflush(stdout);

	fl_rng_init(&g, (uint64_t)seed, PT_STREAM_BATCH);
	for (long i = 0; i < d->n_train; i++)
		perm[i] = i;
	perm_pos = d->n_train;
	t0 = last_print = fl_now_s();
	for (long s = 0; s < steps; s++) {
		double loss = NAN, now;
		float cur =
		    !strcmp(schedule, "constant")
		        ? (s < warmup ? (float)lr * (float)(s + 1) / (float)warmup : (float)lr)
		        : model_lr_cosine((int)s, (int)steps, (int)warmup, (float)lr,
		                          (float)min_lr);
		for (long b = 0; b < batch; b++) {
			const int32_t *row;
			if (perm_pos >= d->n_train) {
				for (long i = d->n_train - 1; i > 0; i--) {
					long j = (long)fl_rng_below(&g, (uint64_t)i + 1),
					     x = perm[i];
					perm[i] = perm[j];
					perm[j] = x;
				}
				perm_pos = 0;
			}
			row = client_data_train_seq(d, perm[perm_pos++]);
			memcpy(tok + (size_t)b * T, row, (size_t)T * sizeof(int));
			memcpy(tgt + (size_t)b * T, row + 1, (size_t)T * sizeof(int));
		}
		if ((rv = model_backend_train_step(be, tok, tgt, (int)batch, (int)T, cur, &loss)) !=
		    0)
			goto fail_rv;
		if (!isfinite(loss)) {
			fprintf(stderr,
			        "fedlora pretrain: loss is not finite at step %ld (lr %g too "
			        "high?)\n",
			        s + 1, (double)cur);
			goto done;
		}
		train_loss = loss;
		ema = isnan(ema) ? loss : 0.9 * ema + 0.1 * loss;
		now = fl_now_s();
		if ((s + 1) % log_every == 0 || s + 1 == steps || now - last_print >= 10) {
			double el = now - t0, tps = (double)(s + 1) * batch * T / el;
			char eta[32], elb[32];
			fmt_dur(el / (double)(s + 1) * (double)(steps - s - 1), eta, sizeof eta);
			fmt_dur(el, elb, sizeof elb);
			fprintf(stderr,
			        "step %6ld/%ld  loss %.4f (avg %.4f)  lr %.2e  %.0f tok/s  "
			        "elapsed %s  "
			        "eta %s\n",
			        s + 1, steps, loss, ema, (double)cur, tps, elb, eta);
			last_print = now;
		}
	}
	if ((rv = eval_heldout(be, d, tok, tgt, mb, eval_seqs, &loss1, &acc1, &used)) != 0)
		goto fail_rv;
	printf("final held-out loss %.4f nats/token, accuracy %.4f (%ld sequences)\n", loss1, acc1,
	       used);
	if ((rv = model_backend_sync_model(be)) != 0)
		goto fail_rv;
	if (fl_mkdirs(out) != 0) {
		fprintf(stderr, "fedlora pretrain: cannot create %s: %s\n", out, strerror(errno));
		goto done;
	}
	if ((rv = model_llama_save(m, out)) != 0) {
		fprintf(stderr, "fedlora pretrain: cannot save the model to %s: %s\n", out,
		        fl_strerror(rv));
		goto done;
	}
	sum = cJSON_CreateObject();
	if (!sum)
		goto done;
	if (tk) {
		char hex[65];
		int ncopied;
		if ((rv = fl_tok_copy_files(tokdir, out, &ncopied, err, sizeof err)) != 0) {
			fprintf(stderr, "fedlora pretrain: %s\n", err);
			goto done;
		}
		fl_tok_hash_hex(tk, hex);
		cJSON_AddStringToObject(sum, "tokenizer", fl_tok_kind_name(tk));
		cJSON_AddStringToObject(sum, "tokenizer_hash", hex);
	} else {
		cJSON_AddStringToObject(sum, "tokenizer", "bytes");
	}
	cJSON_AddStringToObject(sum, "data", data);
	cJSON_AddNumberToObject(sum, "steps", (double)steps);
	cJSON_AddNumberToObject(sum, "batch_size", (double)batch);
	cJSON_AddNumberToObject(sum, "seq_len", (double)T);
	cJSON_AddNumberToObject(sum, "lr", lr);
	cJSON_AddNumberToObject(sum, "min_lr", min_lr);
	cJSON_AddNumberToObject(sum, "warmup", (double)warmup);
	cJSON_AddStringToObject(sum, "schedule", schedule);
	cJSON_AddNumberToObject(sum, "weight_decay", wd);
	cJSON_AddNumberToObject(sum, "seed", (double)seed);
	cJSON_AddNumberToObject(sum, "params", (double)model_config_num_params(&cfg));
	cJSON_AddNumberToObject(sum, "train_sequences", (double)d->n_train);
	cJSON_AddNumberToObject(sum, "eval_sequences", (double)used);
	cJSON_AddNumberToObject(sum, "initial_eval_loss", loss0);
	cJSON_AddNumberToObject(sum, "final_eval_loss", loss1);
	cJSON_AddNumberToObject(sum, "final_eval_acc", acc1);
	cJSON_AddNumberToObject(sum, "final_train_loss", train_loss);
	cJSON_AddNumberToObject(sum, "seconds", fl_now_s() - t0);
	snprintf(path, sizeof path, "%s/pretrain.json", out);
	if (write_summary(path, sum) != 0) {
		fprintf(stderr, "fedlora pretrain: cannot write %s\n", path);
		goto done;
	}
	fprintf(stderr, "pretrain: wrote %s/config.json, %s/model.safetensors, %s\n", out, out,
	        path);
	rc = 0;
	goto done;
fail_rv:
	fprintf(stderr, "fedlora pretrain: %s\n", fl_strerror(rv));
done:
	cJSON_Delete(sum);
	model_backend_close(be);
	model_llama_free(m);
	client_data_free(d);
	fl_tok_free(tk);
	free(tok);
	free(tgt);
	free(perm);
	return rc;
}
