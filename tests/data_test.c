/*
 * tests/data_test.c — byte-level tokenizer and the LM data loader
 * (model/tokenizer.h, client/data.h): formats, packing, the held-out split,
 * error reporting on bad inputs, token files for parity checks.
 * Inputs are written to a temporary folder; one case reads the installed
 * fortunes packages when present.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/data.h"
#include "core/fsutil.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "tests/test.h"

static char tmpdir[256];

static void mktmp(void)
{
	if (tmpdir[0])
		return;
	snprintf(tmpdir, sizeof tmpdir, "%s/fedlora-data-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		exit(1);
	}
}

/* Writes n bytes to tmpdir/name and returns the full path (static buffer
 * rotation: valid for a few calls). */
static const char *put(const char *name, const void *data, size_t n)
{
	static char paths[8][512];
	static int k;
	char *p = paths[k++ % 8];
	FILE *f;
	mktmp();
	snprintf(p, 512, "%s/%s", tmpdir, name);
	f = fopen(p, "wb");
	if (!f) {
		perror(p);
		exit(1);
	}
	fwrite(data, 1, n, f);
	fclose(f);
	return p;
}

static const char *puts_(const char *name, const char *s)
{
	return put(name, s, strlen(s));
}

static void test_tok_roundtrip(void)
{
	unsigned char bytes[256];
	int32_t ids[258];
	char back[256];
	size_t len = 0;
	for (int i = 0; i < 256; i++)
		bytes[i] = (unsigned char)(255 - i);
	model_tok_encode_doc(bytes, 256, ids);
	CHECK(ids[0] == MODEL_TOK_BOS);
	CHECK(ids[257] == MODEL_TOK_EOS);
	CHECK(ids[1] == 255 && ids[256] == 0);
	CHECK_RC(model_tok_decode(ids, 258, 320, back, sizeof back, &len));
	CHECK(len == 256);
	CHECK(memcmp(back, bytes, 256) == 0);
	/* a short buffer still reports the full length */
	CHECK_RC(model_tok_decode(ids, 258, 258, back, 10, &len));
	CHECK(len == 256);
	/* ids out of the model's vocabulary are refused */
	ids[5] = 320;
	CHECK(model_tok_decode(ids, 258, 320, back, sizeof back, &len) == FL_EINVAL);
	ids[5] = -1;
	CHECK(model_tok_decode(ids, 258, 320, back, sizeof back, &len) == FL_EINVAL);
	/* ids in [258, vocab) are dropped like specials */
	ids[5] = 300;
	CHECK_RC(model_tok_decode(ids, 258, 320, back, sizeof back, &len));
	CHECK(len == 255);
	char nb[8];
	CHECK(!strcmp(model_tok_name(MODEL_TOK_BOS, nb), "<bos>"));
	CHECK(!strcmp(model_tok_name('a', nb), "a"));
	CHECK(!strcmp(model_tok_name(0xc3, nb), "\\xc3"));
}

static void test_tok_check_model(void)
{
	char why[256], dir[512];
	CHECK(model_tok_check_model(NULL, 100, why, sizeof why) == FL_ENOTSUP);
	CHECK(strstr(why, "vocab_size 100") != NULL);
	CHECK_RC(model_tok_check_model(NULL, MODEL_TOK_VOCAB, why, sizeof why));
	mktmp();
	snprintf(dir, sizeof dir, "%s/bpe-model", tmpdir);
	mkdir(dir, 0700);
	CHECK_RC(model_tok_check_model(dir, 32000, why, sizeof why));
	puts_("bpe-model/tokenizer.json", "{}");
	CHECK(model_tok_check_model(dir, 32000, why, sizeof why) == FL_ENOTSUP);
	CHECK(strstr(why, "tokenizer.json") != NULL);
}

static client_data *load(const char *paths, int T, int *rc, char *err, size_t errlen)
{
	client_data_opts o;
	client_data *d = NULL;
	client_data_opts_default(&o);
	o.seq_len = T;
	*rc = client_data_load(&d, paths, &o, err, errlen);
	return d;
}

/* Decodes all rows of a split, concatenated, into a NUL-terminated string. */
static char *decode_rows(const int32_t *rows, long n, int T)
{
	size_t cap = (size_t)n * (T + 1) + 1, len = 0;
	char *s = malloc(cap);
	if (!s)
		exit(1);
	if (model_tok_decode(rows, (size_t)n * (T + 1), MODEL_TOK_VOCAB, s, cap, &len) != 0)
		len = 0;
	s[len] = 0;
	return s;
}

static void test_fortune_packing(void)
{
	char err[256];
	int rc;
	const char *p = puts_("f1", "first record\nline two\n%\nsecond\n%\n%\nthird one\n");
	client_data *d = load(p, 4, &rc, err, sizeof err);
	CHECK_RC(rc);
	if (!d)
		return;
	CHECK(d->st.docs == 3); /* the empty record between two "%" lines is dropped */
	CHECK(d->st.files == 1);
	CHECK(d->st.bytes ==
	      strlen("first record\nline two") + strlen("second") + strlen("third one"));
	CHECK(d->st.tokens == d->st.bytes + 2 * 3);
	/* rows of T+1 tokens, every token a byte or a special */
	CHECK(d->n_train >= 1 && d->n_eval >= 1);
	CHECK((size_t)(d->n_train + d->n_eval) * 5 <= d->st.tokens);
	for (long i = 0; i < d->n_train; i++)
		for (int j = 0; j < 5; j++)
			CHECK(client_data_train_seq(d, i)[j] >= 0 &&
			      client_data_train_seq(d, i)[j] < MODEL_TOK_VOCAB);
	client_data_free(d);
}

static void test_fortune_records_exact(void)
{
	/* Records come out as BOS text EOS, CR of CRLF files stripped: with T = 1
	 * the 12 tokens fill exactly 6 rows between the two splits. */
	char err[256];
	int rc, bos = 0, eos = 0, cr = 0, letters = 0;
	const char *p = puts_("f2", "ab\n%\ncd\r\n%\r\nef\n");
	client_data *d = load(p, 1, &rc, err, sizeof err);
	CHECK_RC(rc);
	if (!d)
		return;
	CHECK(d->st.docs == 3);
	CHECK(d->st.tokens == 12);
	CHECK(d->n_train + d->n_eval == 6);
	for (long i = 0; i < 2 * (d->n_train + d->n_eval); i++) {
		int32_t t = d->train[i]; /* eval rows follow train rows in one allocation */
		bos += t == MODEL_TOK_BOS;
		eos += t == MODEL_TOK_EOS;
		cr += t == '\r';
		letters += t >= 'a' && t <= 'f';
	}
	CHECK(bos == 3 && eos == 3 && cr == 0 && letters == 6);
	client_data_free(d);
}

static void test_jsonl_bad_lines(void)
{
	char err[256];
	int rc;
	const char *p = puts_("d.jsonl", "{\"text\": \"hello world\"}\n"
	                                 "not json at all\n"
	                                 "\n"
	                                 "{\"text\": 42}\n"
	                                 "{\"other\": \"x\"}\n"
	                                 "[1,2,3]\n"
	                                 "{\"text\": \"caf\\u00e9 \\u043f\\u0440\\u0438\"}\n"
	                                 "{\"text\": \"truncated\n"
	                                 "{\"text\": \"third document here\", \"id\": 3}");
	client_data *d = load(p, 8, &rc, err, sizeof err);
	CHECK_RC(rc);
	if (!d)
		return;
	CHECK(d->st.docs == 3);
	CHECK(d->st.bad_lines == 5);
	CHECK(d->st.non_utf8_docs == 0);
	CHECK(d->st.bytes ==
	      strlen("hello world") + strlen("café при") + strlen("third document here"));
	client_data_free(d);
}

static void test_plain_paragraphs_and_non_utf8(void)
{
	char err[256];
	int rc;
	const char *p =
	    puts_("plain.txt", "para one\nstill one\n\n  \n\npara two\n\xff\xfe bad bytes\n");
	client_data *d = load(p, 2, &rc, err, sizeof err);
	CHECK_RC(rc);
	if (!d)
		return;
	CHECK(d->st.docs == 2);
	CHECK(d->st.non_utf8_docs == 1);
	client_data_free(d);
}

static void test_folder_sorted_dedup(void)
{
	char err[256], dir[512], sub[512], link1[512], tgt[512];
	int rc;
	client_data *d;
	mktmp();
	snprintf(dir, sizeof dir, "%s/folder", tmpdir);
	mkdir(dir, 0700);
	puts_("folder/b", "bravo\n%\nbravo two\n");
	puts_("folder/a", "alpha\n");
	puts_("folder/a.dat", "\x01\x02\x00\x00 index");
	puts_("folder/empty.u8", "");
	put("folder/bin", "x\0y", 3);
	puts_("folder/.hidden", "hidden text\n");
	snprintf(sub, sizeof sub, "%s/folder/sub", tmpdir);
	mkdir(sub, 0700);
	puts_("folder/sub/c", "charlie from a subfolder\n");
	snprintf(link1, sizeof link1, "%s/folder/a.u8", tmpdir);
	snprintf(tgt, sizeof tgt, "a");
	CHECK(symlink(tgt, link1) == 0);
	d = load(dir, 1, &rc, err, sizeof err);
	CHECK_RC(rc);
	if (!d)
		return;
	CHECK(d->st.files == 2);         /* a (a.u8 is the same file), b */
	CHECK(d->st.skipped_files == 2); /* empty.u8, bin */
	CHECK(d->st.docs == 3);
	CHECK(d->st.bytes == strlen("alpha") + strlen("bravo") + strlen("bravo two"));
	client_data_free(d);
	/* a file named twice in a list is read once, too */
	{
		char list[1200];
		snprintf(list, sizeof list, "%s,%s/folder/a,%s/folder/a.u8", dir, tmpdir, tmpdir);
		d = load(list, 1, &rc, err, sizeof err);
		CHECK_RC(rc);
		if (d)
			CHECK(d->st.docs == 3);
		client_data_free(d);
	}
}

/* Many tagged documents: the split keeps every document on one side. */
static void test_split_disjoint_deterministic(void)
{
	char err[256], tag[32], *tr, *ev;
	size_t cap = 600 * 80, len = 0;
	char *buf = malloc(cap);
	int rc, both = 0, in_eval = 0, seen = 0;
	client_data *d, *d2, *d3;

	for (int i = 0; i < 600; i++)
		len += (size_t)snprintf(buf + len, cap - len,
		                        "<doc-%04d> some words of document %d go here\n%%\n", i, i);
	const char *p = put("many", buf, len);
	free(buf);
	d = load(p, 31, &rc, err, sizeof err);
	CHECK_RC(rc);
	d2 = load(p, 31, &rc, err, sizeof err);
	CHECK_RC(rc);
	d3 = load(p, 17, &rc, err, sizeof err);
	CHECK_RC(rc);
	if (!d || !d2 || !d3)
		goto done;
	CHECK(d->st.split == 0);
	CHECK(d->st.docs == 600);
	/* about 10% held out */
	CHECK(d->st.eval_docs >= 30 && d->st.eval_docs <= 100);
	/* deterministic and independent of T */
	CHECK(d->n_train == d2->n_train && d->n_eval == d2->n_eval);
	CHECK(memcmp(d->train, d2->train, (size_t)(d->n_train + d->n_eval) * 32 * 4) == 0);
	CHECK(d3->st.eval_docs == d->st.eval_docs);
	tr = decode_rows(d->train, d->n_train, 31);
	ev = decode_rows(d->eval, d->n_eval, 31);
	for (int i = 0; i < 600; i++) {
		int a, b;
		snprintf(tag, sizeof tag, "<doc-%04d>", i);
		a = strstr(tr, tag) != NULL;
		b = strstr(ev, tag) != NULL;
		both += a && b;
		in_eval += b;
		seen += a || b;
	}
	CHECK(both == 0);
	CHECK(in_eval > 0);
	CHECK(seen >= 590); /* only documents cut by a dropped tail may be missing */
	free(tr);
	free(ev);
done:
	client_data_free(d);
	client_data_free(d2);
	client_data_free(d3);
}

static void test_split_fallback_small(void)
{
	char err[256];
	int rc;
	/* one document: the hash puts it on one side; the fallback holds out
	 * sequences instead */
	const char *p =
	    puts_("single.txt", "a single paragraph of text that is long enough for a few "
	                        "rows of sixteen tokens each, more or less.\n");
	client_data *d = load(p, 15, &rc, err, sizeof err);
	CHECK_RC(rc);
	if (!d)
		return;
	CHECK(d->st.split == 1);
	CHECK(d->n_eval >= 1 && d->n_train >= 1);
	CHECK((size_t)(d->n_train + d->n_eval) == d->st.tokens / 16);
	/* train and eval rows are different slices of the stream */
	for (long i = 0; i < d->n_train; i++)
		for (long j = 0; j < d->n_eval; j++)
			CHECK(client_data_train_seq(d, i) + 16 <= client_data_eval_seq(d, j) ||
			      client_data_eval_seq(d, j) + 16 <= client_data_train_seq(d, i));
	client_data_free(d);
}

static void test_errors(void)
{
	char err[256], dir[512];
	int rc;
	client_data *d;
	client_data_opts o;

	d = load("/nonexistent/fedlora/data.txt", 8, &rc, err, sizeof err);
	CHECK(rc == FL_ENOENT && !d);
	CHECK(strstr(err, "/nonexistent/fedlora/data.txt") != NULL);

	d = load(puts_("empty.txt", ""), 8, &rc, err, sizeof err);
	CHECK(rc == FL_EFORMAT && !d);
	CHECK(strstr(err, "empty") != NULL);

	d = load(put("blob", "ab\0cd", 5), 8, &rc, err, sizeof err);
	CHECK(rc == FL_EFORMAT && !d);
	CHECK(strstr(err, "binary") != NULL);

	d = load(",,", 8, &rc, err, sizeof err);
	CHECK(rc == FL_EINVAL && !d);

	d = load(puts_("tiny.txt", "hi\n"), 8, &rc, err, sizeof err);
	CHECK(rc == FL_EFORMAT && !d);
	CHECK(strstr(err, "too little data") != NULL);

	d = load(puts_("bad.jsonl", "nope\n{\"x\":1}\n"), 8, &rc, err, sizeof err);
	CHECK(rc == FL_EFORMAT && !d);
	CHECK(strstr(err, "no documents") != NULL);

	mktmp();
	snprintf(dir, sizeof dir, "%s/emptydir", tmpdir);
	mkdir(dir, 0700);
	d = load(dir, 8, &rc, err, sizeof err);
	CHECK(rc == FL_EFORMAT && !d);

	client_data_opts_default(&o);
	o.max_bytes = 10;
	rc = client_data_load(&d, puts_("big.txt", "0123456789abcdef\n"), &o, err, sizeof err);
	CHECK(rc == FL_ETOOBIG && !d);

	o.max_bytes = CLIENT_DATA_MAX_BYTES;
	o.seq_len = 0;
	rc = client_data_load(&d, puts_("ok.txt", "0123456789abcdef\n"), &o, err, sizeof err);
	CHECK(rc == FL_EINVAL && !d);

	if (geteuid() != 0) {
		const char *p = puts_("noread.txt", "secret\n");
		chmod(p, 0);
		d = load(p, 8, &rc, err, sizeof err);
		CHECK(rc == FL_EIO && !d);
		CHECK(strstr(err, "noread.txt") != NULL);
	}
	client_data_free(NULL);
}

static void test_read_tokens(void)
{
	char err[256];
	int32_t *ids = NULL;
	size_t n = 0;
	const int32_t raw[5] = {256, 72, 105, 257, 300};

	CHECK_RC(client_data_read_tokens(puts_("t.txt", " 256 72\n105\t257 "), 320, 1000, &ids, &n,
	                                 err, sizeof err));
	CHECK(n == 4 && ids && ids[0] == 256 && ids[3] == 257);
	free(ids);
	CHECK_RC(client_data_read_tokens(put("t.bin", raw, sizeof raw), 320, 1000, &ids, &n, err,
	                                 sizeof err));
	CHECK(n == 5 && ids && ids[4] == 300);
	free(ids);
	CHECK(client_data_read_tokens(put("t.bin", raw, sizeof raw), 258, 1000, &ids, &n, err,
	                              sizeof err) == FL_EINVAL);
	CHECK(!ids);
	CHECK(client_data_read_tokens(put("t3.bin", raw, 7), 320, 1000, &ids, &n, err,
	                              sizeof err) == FL_EFORMAT);
	CHECK(client_data_read_tokens(puts_("t4.txt", "1 2 -"), 320, 1000, &ids, &n, err,
	                              sizeof err) == FL_EFORMAT);
	CHECK(client_data_read_tokens(puts_("t5.txt", "1 2 3 4"), 320, 3, &ids, &n, err,
	                              sizeof err) == FL_ETOOBIG);
	CHECK(client_data_read_tokens(puts_("t6.txt", ""), 320, 3, &ids, &n, err, sizeof err) ==
	      FL_EFORMAT);
	CHECK(client_data_read_tokens("/nonexistent/tok", 320, 3, &ids, &n, err, sizeof err) ==
	      FL_ENOENT);
}

static void test_fortunes_package(void)
{
	const char *dir = "/usr/share/games/fortunes/de";
	char err[256];
	int rc;
	struct stat sb;
	client_data *d;
	if (stat(dir, &sb) != 0)
		TEST_SKIP("%s not installed", dir);
	d = load(dir, 128, &rc, err, sizeof err);
	CHECK_RC(rc);
	if (!d)
		return;
	CHECK(d->st.split == 0);
	CHECK(d->st.docs > 1000);
	CHECK(d->n_eval * 20 > d->n_train && d->n_eval * 5 < d->n_train);
	client_data_free(d);
}

static void cleanup(void)
{
	char cmd[600];
	if (!tmpdir[0])
		return;
	snprintf(cmd, sizeof cmd, "chmod -R u+rwX '%s'; rm -rf '%s'", tmpdir, tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* ---- chat and prompt/completion samples ---- */

static client_data *load_sup(const char *paths, int T, const char *tmpl, int *rc, char *err,
                             size_t errlen)
{
	client_data_opts o;
	client_data *d = NULL;
	client_data_opts_default(&o);
	o.seq_len = T;
	o.chat_template = tmpl;
	o.bos_text = "<s>";
	o.eos_text = "</s>";
	*rc = client_data_load(&d, paths, &o, err, errlen);
	return d;
}

/* Row r of all rows (train then eval) and its mask. */
static const int32_t *row_at(const client_data *d, long r, const uint8_t **m)
{
	if (r < d->n_train) {
		*m = client_data_train_mask(d, r);
		return client_data_train_seq(d, r);
	}
	*m = client_data_eval_mask(d, r - d->n_train);
	return client_data_eval_seq(d, r - d->n_train);
}

/* The bytes of the tokens of a row whose mask is `want` (specials as '#'). */
static void pick(const int32_t *row, const uint8_t *m, int T, int want, char *out, size_t cap)
{
	size_t k = 0;
	for (int j = 0; j <= T && k + 1 < cap; j++)
		if (m[j] == want)
			out[k++] = row[j] < 256 ? (char)row[j] : '#';
	out[k] = 0;
}

static void test_prompt_completion_rows(void)
{
	char buf[4096], err[512], got[256], want[256];
	size_t k = 0;
	int rc;
	mktmp();
	for (int i = 0; i < 12; i++)
		k += (size_t)snprintf(buf + k, sizeof buf - k,
		                      "{\"prompt\": \"Q%d: \", \"completion\": \"A%d\"}\n", i, i);
	client_data *d = load_sup(puts_("pc.jsonl", buf), 16, NULL, &rc, err, sizeof err);
	CHECK_RC(rc);
	if (!d)
		return;
	CHECK(d->n_train + d->n_eval == 12 && d->n_eval >= 1 && d->st.samples == 12);
	CHECK(d->train_mask && d->eval_mask && d->st.truncated == 0);
	int seen = 0;
	for (long r = 0; r < d->n_train + d->n_eval; r++) {
		const uint8_t *m;
		const int32_t *row = row_at(d, r, &m);
		int i = 0;
		for (int j = 2; row[j] >= '0' && row[j] <= '9'; j++)
			i = 10 * i + (row[j] - '0');
		/* every row starts at its sample: BOS, then the prompt */
		CHECK(row[0] == MODEL_TOK_BOS && row[1] == 'Q' && m[0] == 0);
		pick(row, m, 16, 1, got, sizeof got);
		snprintf(want, sizeof want, "A%d#", i);
		if (strcmp(got, want))
			fprintf(stderr, "  got [%s] want [%s]\n", got, want);
		CHECK(!strcmp(got, want)); /* completion + EOS */
		pick(row, m, 16, 0, got, sizeof got);
		snprintf(want, sizeof want, "#Q%d: ", i);
		CHECK(!strncmp(got, want, strlen(want))); /* BOS + prompt, then padding */
		/* padding: EOS ids without loss up to the end of the row */
		size_t used = strlen(want) + (i < 10 ? 3 : 4);
		for (int j = (int)used; j <= 16; j++)
			CHECK(row[j] == MODEL_TOK_EOS && m[j] == 0);
		seen |= 1 << i;
	}
	CHECK(seen == (1 << 12) - 1);
	client_data_free(d);
}

static char *smollm2_template(void)
{
	char *t = NULL;
	size_t n;
	CHECK_RC(fl_read_file("tests/chat/smollm2.jinja", 1 << 20, &t, &n));
	return t;
}

static void test_chat_assistant_only(void)
{
	char buf[8192], err[512], got[512], want[512];
	size_t k = 0;
	int rc;
	char *tmpl = smollm2_template();
	mktmp();
	for (int i = 0; i < 10; i++)
		k += (size_t)snprintf(buf + k, sizeof buf - k,
		                      "{\"messages\": [{\"role\": \"user\", \"content\": \"u%d\"}, "
		                      "{\"role\": \"assistant\", \"content\": \"a%d\"}]}\n",
		                      i, i);
	/* a plain text line in the same file is still packed */
	k += (size_t)snprintf(buf + k, sizeof buf - k, "{\"text\": \"%0200d\"}\n", 7);
	client_data *d = load_sup(puts_("chat.jsonl", buf), 200, tmpl, &rc, err, sizeof err);
	CHECK_RC(rc);
	if (!d) {
		free(tmpl);
		return;
	}
	CHECK(d->st.samples == 10 && d->st.docs == 1);
	int rows_chat = 0;
	for (long r = 0; r < d->n_train + d->n_eval; r++) {
		const uint8_t *m;
		const int32_t *row = row_at(d, r, &m);
		if (row[0] == MODEL_TOK_BOS) {
			for (int j = 0; j <= 200; j++)
				CHECK(m[j] == 1); /* text rows: every target counts */
			continue;
		}
		rows_chat++;
		/* the template's own text first: a row starts at its sample */
		CHECK(!memcmp((const char[]){(char)row[0], (char)row[1], (char)row[2]}, "<|i", 3));
		pick(row, m, 200, 1, got, sizeof got);
		int i = got[1] - '0';
		snprintf(want, sizeof want, "a%d<|im_end|>", i);
		if (strcmp(got, want))
			fprintf(stderr, "  got [%s] want [%s]\n", got, want);
		CHECK(!strcmp(got, want));
		pick(row, m, 200, 0, got, sizeof got);
		snprintf(want, sizeof want, "user\nu%d<|im_end|>", i);
		CHECK(strstr(got, want) != NULL);
		CHECK(strstr(got, "SmolLM") != NULL); /* default system prompt, no loss */
	}
	CHECK(rows_chat == 10);
	client_data_free(d);
	free(tmpl);
}

static void test_chat_truncation(void)
{
	char buf[4096], err[512];
	int rc;
	const char *tmpl = "{% for m in messages %}{{ m.role[0] }}:{{ m.content }};{% endfor %}";
	mktmp();
	snprintf(buf, sizeof buf,
	         "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": "
	         "\"assistant\", \"content\": \"a long answer that does not fit\"}]}\n"
	         "{\"messages\": [{\"role\": \"user\", \"content\": \"a question too long for "
	         "one row\"}, {\"role\": \"assistant\", \"content\": \"x\"}]}\n"
	         "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": "
	         "\"assistant\", \"content\": \"y\"}]}\n");
	client_data *d = load_sup(puts_("trunc.jsonl", buf), 12, tmpl, &rc, err, sizeof err);
	CHECK_RC(rc);
	if (!d)
		return;
	CHECK(d->st.samples == 2 && d->st.truncated == 1 && d->st.no_loss == 1);
	CHECK(d->n_train == 1 && d->n_eval == 1);
	client_data_free(d);
}

static void test_supervised_bad_lines(void)
{
	static const struct {
		const char *line, *what;
		int rc;
	} cases[] = {
	    {"{\"messages\": [{\"role\": \"user\"}]}", "messages[0]", FL_EFORMAT},
	    {"{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "content", FL_EFORMAT},
	    {"{\"messages\": \"hi\"}", "\"messages\" is not", FL_EFORMAT},
	    {"{\"messages\": []}", "non-empty", FL_EFORMAT},
	    {"{\"messages\": [7]}", "messages[0]", FL_EFORMAT},
	    {"{\"prompt\": \"x\"}", "completion is missing", FL_EFORMAT},
	    {"{\"prompt\": 1, \"completion\": \"y\"}", "prompt is not a string", FL_EFORMAT},
	    {"{\"completion\": \"y\"}", "prompt is missing", FL_EFORMAT},
	};
	char buf[1024], err[512], want[64];
	int rc;
	char *tmpl = smollm2_template();
	mktmp();
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		snprintf(buf, sizeof buf, "{\"text\": \"fine\"}\n\n%s\n{\"text\": \"more\"}\n",
		         cases[k].line);
		client_data *d = load_sup(puts_("bad.jsonl", buf), 8, tmpl, &rc, err, sizeof err);
		snprintf(want, sizeof want, "bad.jsonl:3:");
		if (rc != cases[k].rc || !strstr(err, want) || !strstr(err, cases[k].what))
			fprintf(stderr, "  line '%s': rc %d, '%s'\n", cases[k].line, rc, err);
		CHECK(d == NULL && rc == cases[k].rc && strstr(err, want) &&
		      strstr(err, cases[k].what));
	}
	/* chat data for a model without a chat template */
	snprintf(buf, sizeof buf,
	         "{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}, {\"role\": "
	         "\"assistant\", \"content\": \"a\"}]}\n");
	client_data *d = load_sup(puts_("notmpl.jsonl", buf), 8, NULL, &rc, err, sizeof err);
	CHECK(d == NULL && rc == FL_ENOTSUP && strstr(err, "notmpl.jsonl:1:") &&
	      strstr(err, "chat template"));
	/* a template that raises names the line too */
	d = load_sup(puts_("raise.jsonl", buf), 8, "{{ raise_exception('no') }}", &rc, err,
	             sizeof err);
	CHECK(d == NULL && rc == FL_EINVAL && strstr(err, "raise.jsonl:1:") && strstr(err, "no"));
	free(tmpl);
}

/* Masked targets (-1, as the lm task writes them where the mask is 0)
 * contribute no loss and no gradient: a batch whose non-assistant targets
 * are changed gives the same loss and gradients once they are masked, and
 * a different one when they are not. */
static void test_masked_targets_no_effect(void)
{
	model_config c;
	model_llama *m = NULL;
	memset(&c, 0, sizeof c);
	c.hidden_size = 8;
	c.intermediate_size = 12;
	c.num_layers = 1;
	c.num_heads = 2;
	c.num_kv_heads = 1;
	c.head_dim = 4;
	c.vocab_size = MODEL_TOK_VOCAB;
	c.max_position_embeddings = 16;
	c.rms_norm_eps = 1e-5f;
	c.rope_theta = 10000.0f;
	CHECK_RC(model_llama_new(&m, &c, 3));
	if (!m)
		return;
	CHECK_RC(model_llama_set_mode(m, MODEL_TRAIN_FULL));
	enum { T = 8 };
	int tok[T] = {256, 'u', 's', 'e', 'r', 'a', 'n', 's'};
	int mask[T] = {0, 0, 0, 0, 1, 1, 1, 1};
	int t1[T] = {'u', 's', 'e', 'r', 'a', 'n', 's', 257};
	int t2[T] = {'x', 'y', 'z', 'w', 'a', 'n', 's', 257};
	float loss[3];
	float *g[3] = {0};
	size_t n = 0;
	for (int v = 0; v < 3; v++) {
		int tg[T];
		float *p, *gr;
		for (int j = 0; j < T; j++)
			tg[j] = v < 2 && !mask[j] ? -1 : (v == 1 ? t2[j] : t1[j]);
		if (v == 2)
			memcpy(tg, t2, sizeof tg); /* unmasked, different user targets */
		model_llama_zero_grad(m);
		CHECK_RC(model_llama_forward(m, tok, tg, 1, T, &loss[v]));
		CHECK_RC(model_llama_backward(m));
		CHECK_RC(model_llama_trainable(m, &p, &gr, &n));
		g[v] = malloc(n * sizeof(float));
		if (g[v])
			memcpy(g[v], gr, n * sizeof(float));
	}
	CHECK(loss[0] == loss[1]);
	CHECK(g[0] && g[1] && !memcmp(g[0], g[1], n * sizeof(float)));
	CHECK(loss[2] != loss[0]);
	CHECK(g[0] && g[2] && memcmp(g[0], g[2], n * sizeof(float)) != 0);
	for (int v = 0; v < 3; v++)
		free(g[v]);
	model_llama_free(m);
}

static const test_case cases[] = {
    TEST(test_tok_roundtrip),
    TEST(test_tok_check_model),
    TEST(test_fortune_packing),
    TEST(test_fortune_records_exact),
    TEST(test_jsonl_bad_lines),
    TEST(test_plain_paragraphs_and_non_utf8),
    TEST(test_folder_sorted_dedup),
    TEST(test_split_disjoint_deterministic),
    TEST(test_split_fallback_small),
    TEST(test_errors),
    TEST(test_read_tokens),
    TEST(test_fortunes_package),
    TEST(test_prompt_completion_rows),
    TEST(test_chat_assistant_only),
    TEST(test_chat_truncation),
    TEST(test_supervised_bad_lines),
    TEST(test_masked_targets_no_effect),
    {0},
};

int main(int argc, char **argv)
{
	int rv = test_main(argc, argv, cases);
	cleanup();
	return rv;
}
