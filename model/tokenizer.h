/*
 * model/tokenizer.h — the byte-level tokenizer of models that fedlora
 * pretrains itself.
 *
 * Token ids 0..255 are the bytes of the text, MODEL_TOK_BOS (256) starts a
 * document and MODEL_TOK_EOS (257) ends it: MODEL_TOK_VOCAB = 258 ids in all.
 * A model's config may round vocab_size up (320, 512, ...); the extra ids never
 * occur in data. Encoding never fails and is its own inverse on bytes: any
 * byte string (UTF-8 or not) round-trips exactly.
 *
 * Deliberately not here: byte-level BPE (tokenizer.json) of real checkpoints.
 *
 * Ownership: callers own every buffer; nothing here allocates.
 */
#ifndef FL_MODEL_TOKENIZER_H
#define FL_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define MODEL_TOK_BYTES 256
#define MODEL_TOK_BOS   256
#define MODEL_TOK_EOS   257
#define MODEL_TOK_VOCAB 258

/* Number of tokens model_tok_encode_doc writes for n bytes (BOS + n + EOS). */
static inline size_t model_tok_doc_len(size_t n)
{
	return n + 2;
}

/* Writes the n bytes of text as token ids 0..255 into out (room for n). */
void model_tok_encode(const void *text, size_t n, int32_t *out);
/* Writes BOS, the n bytes, EOS into out (room for model_tok_doc_len(n)). */
void model_tok_encode_doc(const void *text, size_t n, int32_t *out);
/* Decodes ids into bytes: byte ids as themselves, BOS/EOS dropped. Writes at
 * most cap bytes to out and the number of bytes the full decoding needs to
 * *len (so a short buffer can be detected). FL_EINVAL if an id is negative or
 * not below vocab (a model's vocab_size; ids in [MODEL_TOK_VOCAB, vocab) are
 * dropped like specials). */
int model_tok_decode(const int32_t *ids, size_t n, int vocab, char *out, size_t cap, size_t *len);
/* Whether a model can be fed this tokenizer's ids: its vocab_size must be at
 * least MODEL_TOK_VOCAB, and its folder base_dir (may be NULL) must not hold
 * a tokenizer.json (a checkpoint with its own tokenizer, whose ids mean
 * something else). Returns 0, or FL_ENOTSUP with the reason in why. */
int model_tok_check_model(const char *base_dir, int vocab_size, char *why, size_t whylen);
/* Short printable name of an id for diagnostics: "<bos>", "<eos>", "<unk>"
 * for other non-byte ids; a byte id as the character, or "\xNN" when not
 * printable ASCII. buf must hold 8 bytes. Returns buf. */
const char *model_tok_name(int32_t id, char buf[8]);

#endif
