/*
 * tokenizer/tokenizer.c — the tokenizer front: loading by what a model
 * folder holds, and the byte-level kind (model/tokenizer.h) behind the
 * common interface. The BPE kinds live beside it.
 */
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "model/tokenizer.h"

struct fl_tokenizer {
	fl_tok_kind kind;
	uint8_t hash[32];
};

#define set_err(err, errlen, ...)                                                                  \
	do {                                                                                       \
		if ((err) && (errlen))                                                             \
			snprintf((err), (errlen), __VA_ARGS__);                                    \
	} while (0)

int fl_tok_load(const char *dir, fl_tokenizer **out, char *err, size_t errlen)
{
	char path[4096];
	struct stat sb;
	fl_tokenizer *t;
	*out = NULL;
	if (dir) {
		if ((size_t)snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= sizeof path) {
			set_err(err, errlen, "%s: path too long", dir);
			return FL_EINVAL;
		}
		if (stat(path, &sb) == 0) {
			set_err(err, errlen,
			        "%s: Hugging Face tokenizers are not supported by this build",
			        path);
			return FL_ENOTSUP;
		}
	}
	if (!(t = calloc(1, sizeof *t)))
		return FL_ENOMEM;
	t->kind = FL_TOK_BYTES;
	crypto_generichash(t->hash, sizeof t->hash, (const unsigned char *)"fedlora-bytes-v1", 16,
	                   NULL, 0);
	*out = t;
	return 0;
}

void fl_tok_free(fl_tokenizer *t)
{
	free(t);
}

fl_tok_kind fl_tok_get_kind(const fl_tokenizer *t)
{
	return t->kind;
}

int fl_tok_vocab(const fl_tokenizer *t)
{
	return MODEL_TOK_VOCAB;
}

int32_t fl_tok_bos(const fl_tokenizer *t)
{
	return MODEL_TOK_BOS;
}

int32_t fl_tok_eos(const fl_tokenizer *t)
{
	return MODEL_TOK_EOS;
}

int32_t fl_tok_pad(const fl_tokenizer *t)
{
	return -1;
}

int32_t fl_tok_token_id(const fl_tokenizer *t, const char *token)
{
	return -1;
}

const char *fl_tok_token_text(const fl_tokenizer *t, int32_t id)
{
	return NULL;
}

const char *fl_tok_bos_text(const fl_tokenizer *t)
{
	return "";
}

const char *fl_tok_eos_text(const fl_tokenizer *t)
{
	return "";
}

const char *fl_tok_chat_template(const fl_tokenizer *t)
{
	return NULL;
}

void fl_tok_hash(const fl_tokenizer *t, uint8_t out[32])
{
	memcpy(out, t->hash, 32);
}

const char *fl_tok_kind_name(const fl_tokenizer *t)
{
	switch (t->kind) {
	case FL_TOK_BYTES:
		return "bytes";
	case FL_TOK_BPE_BYTE:
		return "bpe-byte";
	case FL_TOK_BPE_SP:
		return "bpe-sp";
	}
	return "?";
}

int fl_tok_ids_push(fl_tok_ids *b, int32_t id)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 256;
		int32_t *v = realloc(b->v, cap * sizeof *v);
		if (!v)
			return FL_ENOMEM;
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = id;
	return 0;
}

void fl_tok_ids_free(fl_tok_ids *b)
{
	free(b->v);
	b->v = NULL;
	b->n = b->cap = 0;
}

int fl_tok_encode(const fl_tokenizer *t, const char *text, size_t n, unsigned flags,
                  fl_tok_ids *out, char *err, size_t errlen)
{
	int rv;
	if ((flags & FL_TOK_ADD_BOS) && (rv = fl_tok_ids_push(out, MODEL_TOK_BOS)) != 0)
		return rv;
	for (size_t i = 0; i < n; i++)
		if ((rv = fl_tok_ids_push(out, (unsigned char)text[i])) != 0)
			return rv;
	if ((flags & FL_TOK_ADD_EOS) && (rv = fl_tok_ids_push(out, MODEL_TOK_EOS)) != 0)
		return rv;
	return 0;
}

int fl_tok_decode(const fl_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char *buf,
                  size_t cap, size_t *len)
{
	return model_tok_decode(ids, n, MODEL_TOK_VOCAB, buf, cap, len);
}
