/*
 * tools/cmd_eval.c — `fedlora eval`: held-out loss (nats/token) and
 * next-token accuracy of a base model, optionally with a LoRA adapter, on
 * byte-level text; and `--dump-logits` for parity checks against other
 * implementations (tests/reference/hf_parity.py).
 *
 * The held-out split is the one client/data.h defines (document hash), so
 * `fedlora eval --data D --seq-len T` scores the same sequences a client of
 * the `lm` task holds out of D with the same T. At most --max-seqs sequences
 * are scored, spread evenly over the split. With --all every sequence of
 * --data is scored (training rows, then held-out rows): for a file kept
 * apart from every client, where the split would score only about 1 in 10.
 *
 * Adapters: a fedlora adapter file (lora/io.h), or a PEFT folder
 * (adapter_config.json + adapter_model.safetensors with keys
 * "base_model.model.NAME.lora_A.weight" / ".lora_B.weight"). For a PEFT
 * folder the adapter's shape comes from the model and the config's r,
 * lora_alpha and target_modules (a list of module names); every expected
 * tensor must be present with its exact shape and nothing else may be;
 * rslora, DoRA, rank/alpha patterns and layer selections are refused
 * (the reader is lora/peft.h).
 *
 * Logit dumps: --tokens FILE holds token ids (whitespace-separated decimal
 * integers, or raw little-endian int32); --dump-logits OUT writes the logits
 * of that one sequence, (n, vocab_size) float32 row-major: a NumPy .npy file
 * (format 1.0, '<f4') when OUT ends in ".npy", raw little-endian float32
 * otherwise. The mean next-token loss on the same tokens is printed too.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "client/data.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/safetensors.h"
#include "lora/adapter.h"
#include "lora/io.h"
#include "lora/peft.h"
#include "model/backend.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "tokenizer/model_tok.h"
#include "tools/cmds.h"

#define EVAL_MAX_DUMP_TOKS (1 << 20)

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: fedlora eval --base DIR [--adapter PATH] --data PATHS [options]\n"
	        "       fedlora eval --base DIR [--adapter PATH] --tokens FILE --dump-logits OUT\n"
	        "\n"
	        "Prints the held-out loss (nats/token) and next-token accuracy of the model in\n"
	        "DIR (config.json + model.safetensors, or model.safetensors.index.json and its\n"
	        "shards), with the LoRA adapter PATH applied when\n"
	        "given: a PEFT folder (adapter_config.json + adapter_model.safetensors) or a\n"
	        "fedlora adapter file (.safetensors).\n"
	        "\n"
	        "  --data PATHS       comma-separated text/JSONL/fortune files or folders; their\n"
	        "                     held-out split is scored\n"
	        "  --all              score every sequence of --data, not only its held-out\n"
	        "                     split (a test file no client trained on)\n"
	        "  --seq-len T        tokens per sequence (default 128, at most the model's\n"
	        "                     max_position_embeddings)\n"
	        "  --max-seqs N       score at most N sequences (default 256)\n"
	        "  --batch-size B     sequences per forward (default 8)\n"
	        "  --device D         cpu | cuda | auto (default cpu)\n"
	        "  --json             print one JSON object instead of text\n"
	        "  --tokens FILE      token ids: whitespace-separated integers or raw int32 LE\n"
	        "  --dump-logits OUT  write the logits of --tokens, (n, vocab) float32: .npy when\n"
	        "                     OUT ends in .npy, raw little-endian float32 otherwise\n");
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

/* Loads a PEFT folder for model m into a new adapter (lora/peft.h: the shape
 * from the model and the config's r, lora_alpha and target_modules). Returns
 * 0 or an FL_E* code with a message in err. */
static int load_peft(const model_llama *m, const char *dir, lora_adapter **out, char *err,
                     size_t errlen)
{
	lora_peft_config pc;
	lora_adapter *ad = NULL;
	int rv;

	*out = NULL;
	if ((rv = lora_peft_config_read(dir, &pc, err, errlen)) != 0)
		return rv;
	if ((rv = model_lora_adapter_new(&m->cfg, pc.targets, pc.r, (float)pc.alpha, &ad)) != 0) {
		snprintf(err, errlen, "%s/%s: target_modules '%s' do not fit this model", dir,
		         LORA_PEFT_CONFIG_FILE, pc.targets);
		return rv;
	}
	if ((rv = lora_peft_weights_read(dir, ad, err, errlen)) != 0) {
		lora_adapter_free(ad);
		return rv;
	}
	*out = ad;
	return 0;
}

/* Writes the (n, V) float32 logits to path atomically: a .npy file (version
 * 1.0 header, padded to 64 bytes) when path ends in .npy, raw little-endian
 * float32 otherwise. 0 or an FL_E* code with a message in err. */
static int write_logits(const char *path, const float *x, size_t n, size_t V, char *err,
                        size_t errlen)
{
	char hdr[256 + 64]; /* the dict, then up to 63 spaces of padding and '\n' */
	unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
	struct iovec v[3];
	int nv = 0, rv;

	if (ends_with(path, ".npy")) {
		int hl = snprintf(hdr, 256,
		                  "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }",
		                  n, V);
		int total = 10 + hl + 1, pad = (64 - total % 64) % 64;
		unsigned short hlen = (unsigned short)(hl + pad + 1);
		memset(hdr + hl, ' ', (size_t)pad);
		hdr[hl + pad] = '\n';
		pre[8] = (unsigned char)(hlen & 0xff);
		pre[9] = (unsigned char)(hlen >> 8);
		v[nv++] = (struct iovec){pre, sizeof pre};
		v[nv++] = (struct iovec){hdr, (size_t)hlen};
	}
	v[nv++] = (struct iovec){(void *)x, n * V * sizeof(float)};
	if ((rv = fl_write_atomicv(path, v, nv, 0644)) == FL_EINVAL)
		snprintf(err, errlen, "%s: path too long", path);
	else if (rv != 0)
		snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
	return rv;
}

int cmd_eval(int argc, char **argv)
{
	const char *base = NULL, *adapter = NULL, *data = NULL, *device = "cpu", *tokfile = NULL,
	           *dump = NULL;
	long T = 128, max_seqs = 256, batch = 8;
	int json = 0, rc = 1, rv, T_set = 0, all = 0;
	model_llama *m = NULL;
	model_backend *be = NULL;
	model_backend_opts bo;
	lora_adapter *ad = NULL;
	client_data *d = NULL;
	int32_t *ids = NULL;
	int *tok = NULL, *tgt = NULL;
	float *logits = NULL;
	size_t nids = 0;
	char err[8800] = "";
	struct stat sb;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int bad = 0;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--json")) {
			json = 1;
			continue;
		}
		if (!strcmp(a, "--all")) {
			all = 1;
			continue;
		}
		if (strncmp(a, "--", 2) || !v) {
			fprintf(stderr, "fedlora eval: %s '%s'\n",
			        strncmp(a, "--", 2) ? "unexpected argument" : "missing value for",
			        a);
			usage(stderr);
			return 2;
		}
		i++;
		if (!strcmp(a, "--base"))
			base = v;
		else if (!strcmp(a, "--adapter"))
			adapter = v;
		else if (!strcmp(a, "--data"))
			data = v;
		else if (!strcmp(a, "--device"))
			device = v;
		else if (!strcmp(a, "--tokens"))
			tokfile = v;
		else if (!strcmp(a, "--dump-logits"))
			dump = v;
		else if (!strcmp(a, "--seq-len")) {
			bad = fl_parse_long(v, 1, 1 << 20, &T);
			T_set = 1;
		} else if (!strcmp(a, "--max-seqs"))
			bad = fl_parse_long(v, 1, 1L << 30, &max_seqs);
		else if (!strcmp(a, "--batch-size"))
			bad = fl_parse_long(v, 1, 4096, &batch);
		else {
			fprintf(stderr, "fedlora eval: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		}
		if (bad) {
			fprintf(stderr, "fedlora eval: bad value '%s' for %s\n", v, a);
			return 2;
		}
	}
	if (!base || (!data && !tokfile) || (!!dump != !!tokfile)) {
		fprintf(stderr, "fedlora eval: --base and either --data or --tokens with "
		                "--dump-logits are required\n");
		usage(stderr);
		return 2;
	}
	if ((rv = model_llama_load(&m, base)) != 0) {
		fprintf(stderr, "fedlora eval: cannot load the model in %s: %s\n", base,
		        fl_strerror(rv));
		return 1;
	}
	if (!T_set && T > m->cfg.max_position_embeddings)
		T = m->cfg.max_position_embeddings;
	if (T > m->cfg.max_position_embeddings) {
		fprintf(stderr, "fedlora eval: --seq-len %ld exceeds max_position_embeddings %d\n",
		        T, m->cfg.max_position_embeddings);
		rc = 2;
		goto done;
	}
	if (adapter) {
		if (stat(adapter, &sb) != 0) {
			fprintf(stderr, "fedlora eval: %s: %s\n", adapter, strerror(errno));
			goto done;
		}
		if (S_ISDIR(sb.st_mode))
			rv = load_peft(m, adapter, &ad, err, sizeof err);
		else
			rv = lora_adapter_load_err(&ad, adapter, err, sizeof err);
		if (rv != 0) {
			fprintf(stderr, "fedlora eval: adapter %s: %s\n", adapter, err);
			goto done;
		}
		if ((rv = model_llama_attach_lora(m, ad)) != 0) {
			fprintf(stderr,
			        "fedlora eval: adapter %s does not fit the model in %s: %s\n",
			        adapter, base, fl_strerror(rv));
			goto done;
		}
	}
	if (tokfile) {
		if ((rv = client_data_read_tokens(tokfile, m->cfg.vocab_size, EVAL_MAX_DUMP_TOKS,
		                                  &ids, &nids, err, sizeof err)) != 0) {
			fprintf(stderr, "fedlora eval: %s\n", err);
			goto done;
		}
		if (nids > (size_t)m->cfg.max_position_embeddings) {
			fprintf(stderr,
			        "fedlora eval: %s: %zu tokens exceed max_position_embeddings %d\n",
			        tokfile, nids, m->cfg.max_position_embeddings);
			goto done;
		}
	} else {
		client_data_opts dop;
		fl_tokenizer *tk = NULL;
		fl_chat_config chat;
		if (fl_tok_load_model(base, m->cfg.vocab_size, &tk, &chat, err, sizeof err) != 0) {
			fprintf(stderr, "fedlora eval: %s\n", err);
			goto done;
		}
		client_data_opts_default(&dop);
		dop.seq_len = (int)T;
		dop.tok = tk;
		dop.chat_template = chat.chat_template;
		dop.bos_text = chat.bos_token;
		dop.eos_text = chat.eos_token;
		rv = client_data_load(&d, data, &dop, err, sizeof err);
		fl_tok_free(tk);
		fl_chat_config_free(&chat);
		if (rv != 0) {
			fprintf(stderr, "fedlora eval: %s\n", err);
			goto done;
		}
	}
	model_backend_opts_default(&bo);
	bo.device = device;
	bo.max_batch = tokfile ? 1 : (int)batch;
	bo.max_seq = tokfile ? (int)nids : (int)T;
	bo.mode = MODEL_TRAIN_NONE;
	/* a sliding window shorter than the sequences: refused (logged) before
	 * a device is opened, so the last line names the real reason */
	if ((rv = model_config_check_seq(&m->cfg, bo.max_seq, "--seq-len")) != 0) {
		fprintf(stderr,
		        "fedlora eval: --seq-len %d is longer than the model's sliding window\n",
		        bo.max_seq);
		goto done;
	}
	if ((rv = model_backend_open(&be, m, &bo)) != 0) {
		fprintf(stderr, "fedlora eval: cannot open device '%s': %s\n", device,
		        fl_strerror(rv));
		goto done;
	}
	if (ad && (rv = model_backend_attach_lora(be, ad)) != 0) {
		fprintf(stderr, "fedlora eval: cannot attach the adapter: %s\n", fl_strerror(rv));
		goto done;
	}
	if (tokfile) {
		size_t V = (size_t)m->cfg.vocab_size;
		double sum = 0;
		long count = 0, correct = 0;
		tok = malloc(nids * sizeof *tok);
		logits = malloc(nids * V * sizeof *logits);
		if (!tok || !logits) {
			fprintf(stderr, "fedlora eval: out of memory\n");
			goto done;
		}
		for (size_t i = 0; i < nids; i++)
			tok[i] = ids[i];
		if ((rv = model_backend_logits(be, tok, 1, (int)nids, logits)) != 0) {
			fprintf(stderr, "fedlora eval: forward failed: %s\n", fl_strerror(rv));
			goto done;
		}
		if ((rv = write_logits(dump, logits, nids, V, err, sizeof err)) != 0) {
			fprintf(stderr, "fedlora eval: %s\n", err);
			goto done;
		}
		if (nids > 1 && (rv = model_backend_eval(be, tok, tok + 1, 1, (int)nids - 1, &sum,
		                                         &count, &correct)) != 0) {
			fprintf(stderr, "fedlora eval: forward failed: %s\n", fl_strerror(rv));
			goto done;
		}
		if (json)
			printf("{\"tokens\": %zu, \"vocab\": %zu, \"loss\": %.9g, \"acc\": %.9g, "
			       "\"logits\": \"%s\"}\n",
			       nids, V, count ? sum / count : NAN,
			       count ? (double)correct / count : NAN, dump);
		else
			printf("%zu tokens: loss %.6f nats/token, accuracy %.4f; logits (%zu, %zu) "
			       "float32 written to %s\n",
			       nids, count ? sum / count : NAN,
			       count ? (double)correct / count : NAN, nids, V, dump);
	} else {
		/* Rows 0..n-1: the held-out split, or with --all the training rows
		 * followed by the held-out ones. */
		long n = all ? d->n_train + d->n_eval : d->n_eval;
		long use = n < max_seqs ? n : max_seqs, count = 0, correct = 0;
		double sum = 0, loss, acc;
		tok = malloc((size_t)batch * T * sizeof *tok);
		tgt = malloc((size_t)batch * T * sizeof *tgt);
		if (!tok || !tgt) {
			fprintf(stderr, "fedlora eval: out of memory\n");
			goto done;
		}
		for (long i = 0; i < use; i += batch) {
			int B = (int)(use - i < batch ? use - i : batch);
			for (int b = 0; b < B; b++) {
				long r = (i + b) * n / use, e = all ? r - d->n_train : r;
				const int32_t *row = e >= 0 ? client_data_eval_seq(d, e)
				                            : client_data_train_seq(d, r);
				const uint8_t *mk = e >= 0 ? client_data_eval_mask(d, e)
				                           : client_data_train_mask(d, r);
				memcpy(tok + (size_t)b * T, row, (size_t)T * sizeof(int));
				memcpy(tgt + (size_t)b * T, row + 1, (size_t)T * sizeof(int));
				for (long j = 0; mk && j < (long)T; j++)
					if (!mk[j + 1])
						tgt[(size_t)b * T + j] = -1; /* no loss here */
			}
			if ((rv = model_backend_eval(be, tok, tgt, B, (int)T, &sum, &count,
			                             &correct)) != 0) {
				fprintf(stderr, "fedlora eval: forward failed: %s\n",
				        fl_strerror(rv));
				goto done;
			}
		}
		loss = count ? sum / count : NAN;
		acc = count ? (double)correct / count : NAN;
		if (json)
			printf(
			    "{\"loss\": %.9g, \"acc\": %.9g, \"seqs\": %ld, \"seq_len\": %ld, "
			    "\"tokens\": %ld, \"heldout_seqs\": %ld, \"rows\": %ld, \"all\": %s, "
			    "\"adapter\": %s%s%s}\n",
			    loss, acc, use, T, count, d->n_eval, n, all ? "true" : "false",
			    adapter ? "\"" : "", adapter ? adapter : "null", adapter ? "\"" : "");
		else
			printf("%s loss %.4f nats/token (%.4f bits/token), accuracy %.4f over "
			       "%ld of %ld %ssequences x %ld tokens%s%s\n",
			       all ? "all-rows" : "held-out", loss, loss / log(2.0), acc, use, n,
			       all ? "" : "held-out ", T, adapter ? ", adapter " : "",
			       adapter ? adapter : "");
	}
	rc = 0;
done:
	model_backend_close(be);
	model_llama_free(m);
	lora_adapter_free(ad);
	client_data_free(d);
	free(ids);
	free(tok);
	free(tgt);
	free(logits);
	return rc;
}
