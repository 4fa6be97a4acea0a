/*
 * tokenizer/model_tok.h — the tokenizer and chat configuration of a model
 * folder, checked against the model: what the lm task, `fedlora eval`,
 * `pretrain`, `export`, `client` and `sim` load before reading data.
 *
 * fl_tok_load_model(dir, vocab_size, ...) = fl_tok_load(dir) (tokenizer.json,
 * or the byte-level tokenizer) + fl_chat_config_load(dir)
 * (tokenizer_config.json's chat_template, bos/eos token texts) + the check
 * that the model's vocab_size covers every id the tokenizer can produce.
 * A folder without tokenizer.json gets the byte-level tokenizer only when it
 * looks like a byte model: no tokenizer.model, vocab.json or merges.txt (the
 * files of tokenizer formats fedlora does not read) and vocab_size at most
 * FL_TOK_BYTES_MAX_VOCAB; otherwise FL_ENOENT naming the missing
 * tokenizer.json, so a Hugging Face folder saved without its fast tokenizer
 * is refused instead of being fed bytes.
 *
 * Errors: 0 or a negative FL_E* code with a one-line reason naming the folder
 * in err; FL_ESHAPE when vocab_size < fl_tok_vocab. On failure *tok is NULL
 * and chat is empty.
 * Ownership: *tok is freed with fl_tok_free, chat with fl_chat_config_free.
 * chat may be NULL when the caller needs no template.
 */
#ifndef FL_TOKENIZER_MODEL_TOK_H
#define FL_TOKENIZER_MODEL_TOK_H

#include <stddef.h>

#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

/* Largest vocab_size taken as a byte model's (258 ids, padded) when the
 * folder has no tokenizer.json. */
#define FL_TOK_BYTES_MAX_VOCAB 1024

int fl_tok_load_model(const char *dir, int vocab_size, fl_tokenizer **tok, fl_chat_config *chat,
                      char *err, size_t errlen);

/* Copies the tokenizer files that folder src has (tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json; each at most 512 MiB) into
 * folder dst, each replaced atomically (core/fsutil.h). *copied (may be
 * NULL) gets how many. 0, or a negative FL_E* code with the path in err. */
int fl_tok_copy_files(const char *src, const char *dst, int *copied, char *err, size_t errlen);

/* Lowercase hex of fl_tok_hash (64 characters + NUL). */
void fl_tok_hash_hex(const fl_tokenizer *t, char out[65]);

#endif
