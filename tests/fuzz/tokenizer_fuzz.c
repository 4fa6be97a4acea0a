/*
 * tests/fuzz/tokenizer_fuzz.c — libFuzzer target for the Hugging Face
 * tokenizer.json loader (tokenizer/bpe.c through fl_tok_load): the fuzz
 * bytes are written as DIR/tokenizer.json in a scratch folder and loaded;
 * when they load, a fixed multilingual string (with special-token text and
 * invalid UTF-8) and the fuzz bytes themselves are encoded with every flag
 * and decoded back, with and without special tokens. Rejections are the
 * expected outcome; any crash, sanitizer report or leak is a bug.
 * Run: make fuzz-build && build-fuzz/fuzz/tokenizer_fuzz tests/fuzz/corpus/tokenizer
 */
#include <sys/stat.h>

#include "tests/fuzz/fuzz_util.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run(const fl_tokenizer *t, const char *s, size_t n)
{
	static const unsigned flags[] = {0, FL_TOK_SPECIAL,
	                                 FL_TOK_SPECIAL | FL_TOK_ADD_BOS | FL_TOK_ADD_EOS};
	char err[256], buf[4096];
	size_t len;
	for (unsigned f = 0; f < sizeof flags / sizeof flags[0]; f++) {
		fl_tok_ids ids = {0};
		if (fl_tok_encode(t, s, n, flags[f], &ids, err, sizeof err) == 0) {
			for (size_t i = 0; i < ids.n; i++)
				if (ids.v[i] < 0 || ids.v[i] >= fl_tok_vocab(t))
					__builtin_trap(); /* an id outside the vocabulary */
			(void)fl_tok_decode(t, ids.v, ids.n, 0, buf, sizeof buf, &len);
			(void)fl_tok_decode(t, ids.v, ids.n, 1, buf, sizeof buf, &len);
		}
		fl_tok_ids_free(&ids);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char text[] =
	    "Hello, world! I'm  here\t\n 123456 Grüße 日本語 😀👩‍💻 e\xcc\x81 "
	    "<s><|im_end|></s> \xff\xc3 <0x41> ▁x";
	char path[512], dir[512];
	const char *d = fz_init();
	fl_tokenizer *t = NULL;
	char err[512];
	if (!d || (size_t)snprintf(dir, sizeof dir, "%s/m", d) >= sizeof dir)
		return 0;
	mkdir(dir, 0700);
	if (fz_write(path, sizeof path, "m/tokenizer.json", data, size, 0600) != 0)
		return 0;
	if (fl_tok_load(dir, &t, err, sizeof err) == 0) {
		run(t, text, sizeof text - 1);
		run(t, (const char *)data, size < 512 ? size : 512);
		(void)fl_tok_token_id(t, "<s>");
		(void)fl_tok_token_text(t, 0);
		(void)fl_tok_bos_text(t);
	}
	fl_tok_free(t);
	return 0;
}
