/*
 * tokenizer/tokenizer.c — the tokenizer front: loading by what a model
 * folder holds, and the byte-level kind (model/tokenizer.h) behind the
 * common interface. The Hugging Face BPE kinds live in tokenizer/bpe.c.
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
#include "tokenizer/bpe.h"

struct fl_tokenizer {
	fl_tok_kind kind;
	uint8_t hash[32];
	fl_bpe *bpe; /* the Hugging Face kinds; NULL for bytes */
};

#define set_err(err, errlen, ...)                                                                  \
	do {                                                                                       \
		if ((err) && (errlen))                                                             \
			snprintf((err), (errlen), __VA_ARGS__);                                    \
	} while (0)

/* Reads a whole file of at most FL_BPE_MAX_FILE bytes into *out (malloc'd). */
static int read_file(const char *path, char **out, size_t *n, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	size_t cap = 0, len = 0;
	*out = NULL;
	if (!f) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return errno == ENOENT ? FL_ENOENT : FL_EIO;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= FL_BPE_MAX_FILE) {
				set_err(err, errlen, "%s: larger than %zu MiB", path,
				        FL_BPE_MAX_FILE >> 20);
				free(p);
				fclose(f);
				return FL_ETOOBIG;
			}
			cap = cap ? 2 * cap : 1 << 16;
			char *q = realloc(p, cap);
			if (!q) {
				free(p);
				fclose(f);
				return FL_ENOMEM;
			}
			p = q;
		}
		size_t r = fread(p + len, 1, cap - len, f);
		len += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		set_err(err, errlen, "%s: read error", path);
		free(p);
		fclose(f);
		return FL_EIO;
	}
	fclose(f);
	*out = p;
	*n = len;
	return 0;
}

/* The Hugging Face kinds: dir/tokenizer.json (+ tokenizer_config.json). */
static int load_hf(const char *dir, const char *path, fl_tokenizer *t, char *err, size_t errlen)
{
	char cpath[4096];
	char *js = NULL, *cf = NULL;
	size_t jn = 0, cn = 0;
	int rv;
	crypto_generichash_state st;
	if ((size_t)snprintf(cpath, sizeof cpath, "%s/tokenizer_config.json", dir) >=
	    sizeof cpath) {
		set_err(err, errlen, "%s: path too long", dir);
		return FL_EINVAL;
	}
	if ((rv = read_file(path, &js, &jn, err, errlen)) != 0)
		return rv;
	if ((rv = read_file(cpath, &cf, &cn, err, errlen)) != 0 && rv != FL_ENOENT)
		goto done;
	if ((rv = fl_bpe_load(path, js, jn, cpath, cf, cn, &t->bpe, err, errlen)) != 0)
		goto done;
	t->kind = fl_bpe_kind(t->bpe);
	crypto_generichash_init(&st, NULL, 0, sizeof t->hash);
	crypto_generichash_update(&st, (const unsigned char *)js, jn);
	if (cf)
		crypto_generichash_update(&st, (const unsigned char *)cf, cn);
	crypto_generichash_final(&st, t->hash, sizeof t->hash);
done:
	free(js);
	free(cf);
	return rv;
}

int fl_tok_load(const char *dir, fl_tokenizer **out, char *err, size_t errlen)
{
	char path[4096];
	struct stat sb;
	fl_tokenizer *t;
	int rv;
	*out = NULL;
	if (!(t = calloc(1, sizeof *t)))
		return FL_ENOMEM;
	if (dir) {
		if ((size_t)snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= sizeof path) {
			set_err(err, errlen, "%s: path too long", dir);
			free(t);
			return FL_EINVAL;
		}
		if (stat(path, &sb) == 0) {
			if ((rv = load_hf(dir, path, t, err, errlen)) != 0) {
				fl_tok_free(t);
				return rv;
			}
			*out = t;
			return 0;
		}
	}
	t->kind = FL_TOK_BYTES;
	crypto_generichash(t->hash, sizeof t->hash, (const unsigned char *)"fedlora-bytes-v1", 16,
	                   NULL, 0);
	*out = t;
	return 0;
}

void fl_tok_free(fl_tokenizer *t)
{
	if (!t)
		return;
	fl_bpe_free(t->bpe);
	free(t);
}

fl_tok_kind fl_tok_get_kind(const fl_tokenizer *t)
{
	return t->kind;
}

int fl_tok_vocab(const fl_tokenizer *t)
{
	return t->bpe ? fl_bpe_vocab(t->bpe) : MODEL_TOK_VOCAB;
}

int32_t fl_tok_bos(const fl_tokenizer *t)
{
	return t->bpe ? fl_bpe_bos(t->bpe) : MODEL_TOK_BOS;
}

int32_t fl_tok_eos(const fl_tokenizer *t)
{
	return t->bpe ? fl_bpe_eos(t->bpe) : MODEL_TOK_EOS;
}

int32_t fl_tok_pad(const fl_tokenizer *t)
{
	return t->bpe ? fl_bpe_pad(t->bpe) : -1;
}

int32_t fl_tok_token_id(const fl_tokenizer *t, const char *token)
{
	return t->bpe ? fl_bpe_token_id(t->bpe, token) : -1;
}

const char *fl_tok_token_text(const fl_tokenizer *t, int32_t id)
{
	return t->bpe ? fl_bpe_token_text(t->bpe, id) : NULL;
}

const char *fl_tok_bos_text(const fl_tokenizer *t)
{
	const char *s = t->bpe ? fl_bpe_token_text(t->bpe, fl_bpe_bos(t->bpe)) : NULL;
	return s ? s : "";
}

const char *fl_tok_eos_text(const fl_tokenizer *t)
{
	const char *s = t->bpe ? fl_bpe_token_text(t->bpe, fl_bpe_eos(t->bpe)) : NULL;
	return s ? s : "";
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
	if (t->bpe)
		return fl_bpe_encode(t->bpe, text, n, flags, out, err, errlen);
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
	if (t->bpe)
		return fl_bpe_decode(t->bpe, ids, n, skip_special, buf, cap, len);
	return model_tok_decode(ids, n, MODEL_TOK_VOCAB, buf, cap, len);
}
