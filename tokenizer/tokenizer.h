/*
 * tokenizer/tokenizer.h — the text tokenizer a model was trained with:
 * fedlora's own byte-level tokenizer (model/tokenizer.h) for models that
 * `fedlora pretrain` makes, or a Hugging Face tokenizer.json (byte-level BPE
 * of GPT-2 / Llama-3 / SmolLM / Qwen, SentencePiece-style BPE with byte
 * fallback of Llama-2 / Mistral) shipped with a checkpoint.
 *
 * fl_tok_load(dir) picks by what the model folder holds: dir/tokenizer.json
 * when present (plus dir/tokenizer_config.json for the chat template and the
 * BOS/EOS/PAD names), the byte-level tokenizer otherwise (dir NULL: bytes).
 *
 * Ids are int32_t. Encoding appends to a growable fl_tok_ids buffer.
 *
 * Errors: 0 or a negative FL_E* code (core/err.h), with a one-line reason
 * naming the file (and field or position) written to err when err is not NULL.
 *
 * Ownership: fl_tok_load returns a tokenizer freed with fl_tok_free (NULL is
 * a no-op); fl_tok_ids buffers are freed with fl_tok_ids_free. Strings the
 * tokenizer returns (chat template, token text) live as long as it does.
 * A loaded tokenizer is read-only: any number of threads may encode with it.
 */
#ifndef FL_TOKENIZER_TOKENIZER_H
#define FL_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct fl_tokenizer fl_tokenizer;

typedef enum fl_tok_kind {
	FL_TOK_BYTES = 0,    /* model/tokenizer.h: 256 bytes + BOS + EOS */
	FL_TOK_BPE_BYTE = 1, /* HF byte-level BPE (ByteLevel pre-tokenizer/decoder) */
	FL_TOK_BPE_SP = 2,   /* HF SentencePiece-style BPE (Metaspace/Replace, byte fallback) */
} fl_tok_kind;

typedef struct fl_tok_ids {
	int32_t *v;
	size_t n, cap;
} fl_tok_ids;

/* Encoding flags. */
#define FL_TOK_SPECIAL                                                                             \
	1u                /* recognise added/special tokens written in the text                    \
	                    (e.g. "<|eot_id|>"); otherwise they are plain text */
#define FL_TOK_ADD_BOS 2u /* prepend BOS when the tokenizer has one */
#define FL_TOK_ADD_EOS 4u /* append EOS when the tokenizer has one */

/* Loads the tokenizer of the model folder dir (see above); dir NULL gives
 * the byte-level tokenizer. */
int fl_tok_load(const char *dir, fl_tokenizer **out, char *err, size_t errlen);
void fl_tok_free(fl_tokenizer *t);

fl_tok_kind fl_tok_get_kind(const fl_tokenizer *t);
/* Number of ids the tokenizer can produce (largest id + 1); a model's
 * vocab_size must be at least this. */
int fl_tok_vocab(const fl_tokenizer *t);
/* Special ids, or -1 when the tokenizer has none. */
int32_t fl_tok_bos(const fl_tokenizer *t);
int32_t fl_tok_eos(const fl_tokenizer *t);
int32_t fl_tok_pad(const fl_tokenizer *t);
/* Id of a token given by its text in the vocabulary or the added tokens
 * (e.g. "<|im_end|>"), or -1. */
int32_t fl_tok_token_id(const fl_tokenizer *t, const char *token);
/* The text of a vocabulary entry as stored (e.g. "Ġthe", "▁the"), or NULL. */
const char *fl_tok_token_text(const fl_tokenizer *t, int32_t id);
/* BOS/EOS token text for chat templates ("<|begin_of_text|>"), or "" . */
const char *fl_tok_bos_text(const fl_tokenizer *t);
const char *fl_tok_eos_text(const fl_tokenizer *t);
/* The chat template string of tokenizer_config.json, or NULL when it has none. */
const char *fl_tok_chat_template(const fl_tokenizer *t);
/* BLAKE2b-256 over the bytes of tokenizer.json (and tokenizer_config.json
 * when present), or over the string "fedlora-bytes-v1" for the byte-level
 * tokenizer: pinned in the coordinator's ModelSpec. */
void fl_tok_hash(const fl_tokenizer *t, uint8_t out[32]);
/* Short name for logs and metrics: "bytes", "bpe-byte", "bpe-sp". */
const char *fl_tok_kind_name(const fl_tokenizer *t);

/* Appends the ids of n bytes of text (any bytes; invalid UTF-8 handled as the
 * reference implementation does) to out. */
int fl_tok_encode(const fl_tokenizer *t, const char *text, size_t n, unsigned flags,
                  fl_tok_ids *out, char *err, size_t errlen);
/* Decodes ids to bytes (specials skipped when skip_special), writing at most
 * cap bytes to buf and the full length to *len. FL_EINVAL on an id outside
 * the vocabulary. */
int fl_tok_decode(const fl_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char *buf,
                  size_t cap, size_t *len);

int fl_tok_ids_push(fl_tok_ids *b, int32_t id);
void fl_tok_ids_free(fl_tok_ids *b);

#endif
