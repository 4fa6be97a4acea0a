/*
 * tools/cmd_tokenize.c — `fedlora tokenize`: a model folder's tokenizer on
 * the command line (tokenizer/tokenizer.h), for checks against the Hugging
 * Face reference (tests/reference/tok_parity.sh) and for looking at data.
 *
 *   fedlora tokenize --model DIR [--special] [--bos] [--eos] [FILE]
 *   fedlora tokenize --model DIR --decode [--skip-special] [FILE]
 *   fedlora tokenize --model DIR --info
 *   fedlora tokenize --model DIR --bench [--special] FILE
 *
 * Encoding reads FILE (or stdin) line by line and prints the ids of each line
 * (without its newline) on one line, separated by spaces. Decoding reads
 * lines of ids and prints the decoded bytes of each line plus a newline.
 * --bench encodes every line of FILE once, prints nothing per line and then
 * one JSON line with bytes, lines, ids, seconds and MB/s (one thread, the
 * file read into memory first, so disk time is not counted).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "tokenizer/model_tok.h"
#include "tokenizer/tokenizer.h"
#include "tools/cmds.h"

static void tokenize_usage(FILE *f)
{
	fprintf(
	    f, "usage: fedlora tokenize --model DIR [--special] [--bos] [--eos] [FILE]\n"
	       "       fedlora tokenize --model DIR --decode [--skip-special] [FILE]\n"
	       "       fedlora tokenize --model DIR --info\n"
	       "       fedlora tokenize --model DIR --bench [--special] FILE\n"
	       "\n"
	       "Runs the tokenizer of model folder DIR (tokenizer.json, else fedlora's\n"
	       "byte-level tokenizer) over FILE (default stdin), one line at a time.\n"
	       "\n"
	       "  --model DIR      model folder (tokenizer.json + tokenizer_config.json)\n"
	       "  --special        recognise added/special tokens written in the text\n"
	       "  --bos, --eos     add the BOS / EOS id to each line (when the tokenizer has one)\n"
	       "  --decode         input lines are ids; print the decoded text\n"
	       "  --skip-special   with --decode: leave special tokens out\n"
	       "  --info           print kind, vocabulary size, BOS/EOS/PAD and the hash\n"
	       "  --bench          encode FILE once and print the speed as one JSON line\n"
	       "  --help           this text\n");
}

static int decode_line(const fl_tokenizer *t, char *line, int skip, fl_tok_ids *ids, char **buf,
                       size_t *cap, long lineno)
{
	char *p = line, *end;
	size_t len;
	int rv;
	ids->n = 0;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (!*p)
			break;
		errno = 0;
		long v = strtol(p, &end, 10);
		if (end == p || errno || v < 0 || v > INT32_MAX) {
			fprintf(stderr, "fedlora tokenize: line %ld: not an id list\n", lineno);
			return 2;
		}
		if ((rv = fl_tok_ids_push(ids, (int32_t)v)) != 0)
			return 1;
		p = end;
	}
	if ((rv = fl_tok_decode(t, ids->v, ids->n, skip, *buf, *cap, &len)) != 0) {
		fprintf(stderr, "fedlora tokenize: line %ld: id outside the vocabulary\n", lineno);
		return 2;
	}
	if (len > *cap) {
		char *nb = realloc(*buf, len);
		if (!nb)
			return 1;
		*buf = nb;
		*cap = len;
		fl_tok_decode(t, ids->v, ids->n, skip, *buf, *cap, &len);
	}
	fwrite(*buf, 1, len, stdout);
	putchar('\n');
	return 0;
}

static int bench(const fl_tokenizer *t, const char *file, unsigned flags)
{
	FILE *f = fopen(file, "rb");
	char *data = NULL, err[256];
	size_t n = 0, cap = 0, lines = 0, nid = 0;
	fl_tok_ids ids = {0};
	struct timespec a, z;
	if (!f) {
		fprintf(stderr, "fedlora tokenize: %s: %s\n", file, strerror(errno));
		return 1;
	}
	for (;;) {
		if (n == cap) {
			cap = cap ? 2 * cap : 1 << 20;
			char *d = realloc(data, cap);
			if (!d) {
				free(data);
				fclose(f);
				return 1;
			}
			data = d;
		}
		size_t r = fread(data + n, 1, cap - n, f);
		if (!r)
			break;
		n += r;
	}
	fclose(f);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (size_t i = 0; i < n;) {
		char *nl = memchr(data + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - data) : n;
		ids.n = 0;
		if (fl_tok_encode(t, data + i, e - i, flags, &ids, err, sizeof err) != 0) {
			fprintf(stderr, "fedlora tokenize: %s\n", err);
			free(data);
			fl_tok_ids_free(&ids);
			return 1;
		}
		nid += ids.n;
		lines++;
		i = e + 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &z);
	double s = (double)(z.tv_sec - a.tv_sec) + 1e-9 * (double)(z.tv_nsec - a.tv_nsec);
	printf("{\"bytes\":%zu,\"lines\":%zu,\"ids\":%zu,\"seconds\":%.4f,\"mb_s\":%.3f}\n", n,
	       lines, nid, s, s > 0 ? (double)n / 1e6 / s : 0.0);
	free(data);
	fl_tok_ids_free(&ids);
	return 0;
}

int cmd_tokenize(int argc, char **argv)
{
	const char *dir = NULL, *file = NULL;
	unsigned flags = 0;
	int decode = 0, skip = 0, info = 0, do_bench = 0, rc = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			tokenize_usage(stdout);
			return 0;
		} else if (strcmp(a, "--model") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (strcmp(a, "--special") == 0) {
			flags |= FL_TOK_SPECIAL;
		} else if (strcmp(a, "--bos") == 0) {
			flags |= FL_TOK_ADD_BOS;
		} else if (strcmp(a, "--eos") == 0) {
			flags |= FL_TOK_ADD_EOS;
		} else if (strcmp(a, "--decode") == 0) {
			decode = 1;
		} else if (strcmp(a, "--skip-special") == 0) {
			skip = 1;
		} else if (strcmp(a, "--info") == 0) {
			info = 1;
		} else if (strcmp(a, "--bench") == 0) {
			do_bench = 1;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "fedlora tokenize: unknown option %s (see --help)\n", a);
			return 2;
		} else if (!file) {
			file = a;
		} else {
			fprintf(stderr, "fedlora tokenize: one FILE at most (see --help)\n");
			return 2;
		}
	}
	if (!dir) {
		fprintf(stderr, "fedlora tokenize: --model DIR is required (see --help)\n");
		return 2;
	}
	if (do_bench && !file) {
		fprintf(stderr, "fedlora tokenize: --bench needs a FILE\n");
		return 2;
	}
	fl_tokenizer *t;
	char err[512];
	if (fl_tok_load(dir, &t, err, sizeof err) != 0) {
		fprintf(stderr, "fedlora tokenize: %s\n", err);
		return 1;
	}
	if (info) {
		char hex[65];
		fl_tok_hash_hex(t, hex);
		printf("{\"kind\":\"%s\",\"vocab\":%d,\"bos\":%d,\"eos\":%d,\"pad\":%d,"
		       "\"hash\":\"%s\"}\n",
		       fl_tok_kind_name(t), fl_tok_vocab(t), (int)fl_tok_bos(t), (int)fl_tok_eos(t),
		       (int)fl_tok_pad(t), hex);
		fl_tok_free(t);
		return 0;
	}
	if (do_bench) {
		rc = bench(t, file, flags);
		fl_tok_free(t);
		return rc;
	}
	FILE *in = file ? fopen(file, "rb") : stdin;
	if (!in) {
		fprintf(stderr, "fedlora tokenize: %s: %s\n", file, strerror(errno));
		fl_tok_free(t);
		return 1;
	}
	char *line = NULL, *buf = NULL;
	size_t lcap = 0, bcap = 0;
	ssize_t n;
	long lineno = 0;
	fl_tok_ids ids = {0};
	while ((n = getline(&line, &lcap, in)) >= 0) {
		lineno++;
		if (n > 0 && line[n - 1] == '\n')
			n--;
		if (decode) {
			line[n] = 0;
			if ((rc = decode_line(t, line, skip, &ids, &buf, &bcap, lineno)) != 0)
				break;
			continue;
		}
		ids.n = 0;
		if (fl_tok_encode(t, line, (size_t)n, flags, &ids, err, sizeof err) != 0) {
			fprintf(stderr, "fedlora tokenize: line %ld: %s\n", lineno, err);
			rc = 1;
			break;
		}
		for (size_t k = 0; k < ids.n; k++)
			printf(k ? " %d" : "%d", (int)ids.v[k]);
		putchar('\n');
	}
	free(line);
	free(buf);
	fl_tok_ids_free(&ids);
	if (file)
		fclose(in);
	fl_tok_free(t);
	if (fflush(stdout) != 0)
		rc = 1;
	return rc;
}
