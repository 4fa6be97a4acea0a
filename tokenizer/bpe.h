/*
 * tokenizer/bpe.h — internal: the Hugging Face tokenizer.json BPE kinds
 * behind tokenizer/tokenizer.h (byte-level BPE of GPT-2 / Llama-3 / Qwen,
 * SentencePiece-style BPE with byte fallback of Llama-2 / Mistral). Only
 * tokenizer/tokenizer.c includes this; everything else goes through
 * tokenizer.h.
 *
 * fl_bpe_load parses the bytes of a tokenizer.json (json, n; path names the
 * file in messages) and, when cfg is not NULL, of its tokenizer_config.json
 * (bos/eos/pad token names). Errors: 0 or a negative FL_E* code with a
 * one-line reason naming the file and JSON field in err. *out is freed with
 * fl_bpe_free (NULL is a no-op). A loaded fl_bpe is read-only: encode and
 * decode keep their scratch on the caller's stack or heap, so any number of
 * threads may use one at once.
 */
#ifndef FL_TOKENIZER_BPE_H
#define FL_TOKENIZER_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef struct fl_bpe fl_bpe;

/* Ids are below this bound (HF vocabularies are at most a few 100k). */
#define FL_BPE_MAX_ID (1 << 24)
/* tokenizer.json / tokenizer_config.json larger than this are refused. */
#define FL_BPE_MAX_FILE ((size_t)512 << 20)

int fl_bpe_load(const char *path, const char *json, size_t n, const char *cfg_path, const char *cfg,
                size_t cfg_n, fl_bpe **out, char *err, size_t errlen);
void fl_bpe_free(fl_bpe *b);

fl_tok_kind fl_bpe_kind(const fl_bpe *b);
int fl_bpe_vocab(const fl_bpe *b);
int32_t fl_bpe_bos(const fl_bpe *b);
int32_t fl_bpe_eos(const fl_bpe *b);
int32_t fl_bpe_pad(const fl_bpe *b);
int32_t fl_bpe_token_id(const fl_bpe *b, const char *token);
const char *fl_bpe_token_text(const fl_bpe *b, int32_t id);

int fl_bpe_encode(const fl_bpe *b, const char *text, size_t n, unsigned flags, fl_tok_ids *out,
                  char *err, size_t errlen);
int fl_bpe_decode(const fl_bpe *b, const int32_t *ids, size_t n, int skip_special, char *buf,
                  size_t cap, size_t *len);

#endif
