/* model/tokenizer.c — byte-level tokenizer; see model/tokenizer.h. */
#include "model/tokenizer.h"

#include <stdio.h>
#include <sys/stat.h>

#include "core/err.h"

_Static_assert(MODEL_TOK_BOS == MODEL_TOK_BYTES, "BOS follows the byte ids");
_Static_assert(MODEL_TOK_VOCAB == MODEL_TOK_EOS + 1, "EOS is the last id");

void model_tok_encode(const void *text, size_t n, int32_t *out)
{
	const unsigned char *p = text;
	for (size_t i = 0; i < n; i++)
		out[i] = p[i];
}

void model_tok_encode_doc(const void *text, size_t n, int32_t *out)
{
	out[0] = MODEL_TOK_BOS;
	model_tok_encode(text, n, out + 1);
	out[n + 1] = MODEL_TOK_EOS;
}

int model_tok_decode(const int32_t *ids, size_t n, int vocab, char *out, size_t cap, size_t *len)
{
	size_t k = 0;
	if (vocab < MODEL_TOK_VOCAB)
		vocab = MODEL_TOK_VOCAB;
	for (size_t i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= vocab)
			return FL_EINVAL;
		if (ids[i] >= MODEL_TOK_BYTES)
			continue;
		if (k < cap)
			out[k] = (char)(unsigned char)ids[i];
		k++;
	}
	if (len)
		*len = k;
	return 0;
}

const char *model_tok_name(int32_t id, char buf[8])
{
	if (id == MODEL_TOK_BOS)
		snprintf(buf, 8, "<bos>");
	else if (id == MODEL_TOK_EOS)
		snprintf(buf, 8, "<eos>");
	else if (id < 0 || id >= MODEL_TOK_BYTES)
		snprintf(buf, 8, "<unk>");
	else if (id >= 0x20 && id < 0x7f)
		snprintf(buf, 8, "%c", (char)id);
	else
		snprintf(buf, 8, "\\x%02x", (unsigned)id);
	return buf;
}

int model_tok_check_model(const char *base_dir, int vocab_size, char *why, size_t whylen)
{
	char path[4096];
	struct stat sb;
	if (vocab_size < MODEL_TOK_VOCAB) {
		snprintf(
		    why, whylen,
		    "vocab_size %d is below the byte-level tokenizer's %d ids (256 bytes, BOS, "
		    "EOS)",
		    vocab_size, MODEL_TOK_VOCAB);
		return FL_ENOTSUP;
	}
	if (base_dir &&
	    (size_t)snprintf(path, sizeof path, "%s/tokenizer.json", base_dir) < sizeof path &&
	    stat(path, &sb) == 0) {
		snprintf(why, whylen,
		         "%s: the model brings its own tokenizer; fedlora's text data path is "
		         "byte-level only (models from fedlora pretrain)",
		         path);
		return FL_ENOTSUP;
	}
	return 0;
}
