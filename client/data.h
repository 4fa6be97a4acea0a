/*
 * client/data.h — training text for the language-model task: loading,
 * tokenizing (byte-level, model/tokenizer.h), packing into fixed-length
 * sequences, and a deterministic held-out split.
 *
 * Inputs: a comma-separated list of paths (a path cannot contain a comma).
 * Each path is a file or a folder; a folder contributes its regular files
 * (symbolic links followed), sorted by name, skipping hidden files and *.dat
 * (fortune index files) and NOT descending into subfolders (a fortunes root
 * holds one subfolder per language). A file reached twice (a link and its
 * target, "x" and "x.u8") is read once. Per file, by content:
 *   - name ending in ".jsonl": one JSON object per line, blank lines ignored:
 *       {"text": "..."}: a document (packed, loss on every token);
 *       {"messages": [{"role": .., "content": ..}, ..]}: a chat sample,
 *         rendered with the model's chat template (tokenizer/chat.h), loss
 *         only on assistant tokens (see chat.h for which those are);
 *       {"prompt": "..", "completion": ".."}: BOS + prompt + completion +
 *         EOS, loss only on the completion and the EOS;
 *     a line that does not parse or has none of these keys is skipped and
 *     counted (bad_lines); a "messages" or "prompt"/"completion" line with a
 *     missing field or a wrong type is an error naming file:line (FL_EFORMAT),
 *     and so is a chat line when the model has no chat template (FL_ENOTSUP);
 *   - a file with a line consisting only of "%": a fortune file, records
 *     between "%" lines are documents;
 *   - any other file: plain text, paragraphs (separated by blank lines) are
 *     documents.
 * Bytes are kept as they are (documents that are not valid UTF-8 are counted,
 * not dropped). A file containing a NUL byte is binary: an error when named
 * directly, skipped and counted inside a folder; empty files likewise.
 *
 * Packing: each document becomes BOS + tokens + EOS (opts.tok; the byte
 * path of model/tokenizer.h when NULL or bytes); documents are
 * concatenated in input order and cut into sequences of T+1 tokens (inputs
 * tokens[0..T), targets tokens[1..T]); a tail shorter than T+1 is dropped.
 *
 * Chat and prompt/completion samples are NOT packed: padding with masking.
 * Each sample is one row of its own, starting at the sample's first token,
 * cut to T+1 tokens (counted in truncated) or padded with the pad id (EOS
 * when the tokenizer has none); the row's mask is 0 on padding and on tokens
 * without loss, so no attention crosses samples (causal attention only looks
 * back, and what lies after a sample is padding nobody learns from). A sample
 * with no loss token left after truncation is dropped (no_loss). Those rows
 * follow the packed text rows in train and eval; their split is by the hash
 * of the JSONL line, falling back to every eval_mod-th row when that leaves
 * eval without one.
 *
 * Held-out split: a document goes to the eval split when a 64-bit hash of its
 * bytes is 0 modulo eval_mod (default 10, about 10% of documents), so train
 * and eval never share a document, the split does not depend on T or on file
 * order, and equal documents always land on the same side. When that leaves
 * either side without a single sequence (very small inputs), the split falls
 * back to holding out every eval_mod-th packed sequence (split = 1 in the
 * stats); sequences never overlap, so train and eval still share no token
 * position.
 *
 * Errors: functions return 0 or a negative FL_E* code and write a one-line
 * reason naming the path into err (when err is not NULL).
 *
 * Ownership: client_data_load returns a client_data freed with
 * client_data_free (NULL is a no-op); train and eval point into one
 * allocation owned by it.
 */
#ifndef FL_CLIENT_DATA_H
#define FL_CLIENT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

#define CLIENT_DATA_EVAL_MOD  10
#define CLIENT_DATA_MAX_BYTES ((size_t)1 << 30) /* default limit on input bytes */
#define CLIENT_DATA_MAX_FILES 100000

typedef struct client_data_opts {
	int seq_len;               /* T >= 1: a sequence holds T+1 tokens */
	int eval_mod;              /* >= 2; held-out share is about 1/eval_mod */
	size_t max_bytes;          /* refuse more input than this (all files together) */
	const fl_tokenizer *tok;   /* NULL: the byte-level tokenizer */
	const char *chat_template; /* NULL: the model has none (chat lines refused) */
	const char *bos_text;      /* token texts for the template (NULL: "") */
	const char *eos_text;
} client_data_opts;

/* Defaults: seq_len 64, eval_mod 10, max_bytes 1 GiB, bytes tokenizer, no
 * chat template. */
void client_data_opts_default(client_data_opts *o);

typedef struct client_data_stats {
	int files;          /* files read */
	int skipped_files;  /* empty or binary files skipped inside folders */
	long docs;          /* documents (train + eval) */
	long eval_docs;     /* documents in the eval split (split 0) */
	long bad_lines;     /* JSONL lines skipped */
	long non_utf8_docs; /* documents that are not valid UTF-8 (kept) */
	size_t bytes;       /* document bytes */
	size_t tokens;      /* tokens packed (before dropping tails) */
	int split;          /* 0: by document hash, 1: every eval_mod-th sequence */
	long samples;       /* chat and prompt/completion samples kept (one row each) */
	long truncated;     /* of those, cut to T+1 tokens */
	long no_loss;       /* samples dropped: no loss token within T+1 tokens */
} client_data_stats;

typedef struct client_data {
	int T;          /* sequence length; rows hold T+1 tokens */
	long n_train;   /* training sequences */
	long n_eval;    /* held-out sequences */
	int32_t *train; /* n_train x (T+1), into the one allocation */
	int32_t *eval;  /* n_eval x (T+1) */
	/* Loss masks, n_train x (T+1) and n_eval x (T+1) like the rows, or both
	 * NULL when every target counts: token j of a row is a loss target
	 * (the target of input position j-1) only where mask[j] is 1. */
	uint8_t *train_mask;
	uint8_t *eval_mask;
	client_data_stats st;
} client_data;

/* Loads, tokenizes, splits and packs `paths`. On failure *out is NULL and err
 * (errlen bytes) says why: FL_ENOENT (a path does not exist), FL_EIO (cannot
 * be read), FL_EFORMAT (binary file named directly, no documents at all, too
 * little data for one sequence), FL_ETOOBIG (over max_bytes or too many
 * files), FL_EINVAL (bad options or empty path list), FL_ENOMEM. */
int client_data_load(client_data **out, const char *paths, const client_data_opts *o, char *err,
                     size_t errlen);
void client_data_free(client_data *d);

/* Row i of the train / eval split (T+1 tokens). */
static inline const int32_t *client_data_train_seq(const client_data *d, long i)
{
	return d->train + (size_t)i * (d->T + 1);
}
static inline const int32_t *client_data_eval_seq(const client_data *d, long i)
{
	return d->eval + (size_t)i * (d->T + 1);
}
/* Mask of row i (T+1 bytes), or NULL when every target of the row counts. */
static inline const uint8_t *client_data_train_mask(const client_data *d, long i)
{
	return d->train_mask ? d->train_mask + (size_t)i * (d->T + 1) : NULL;
}
static inline const uint8_t *client_data_eval_mask(const client_data *d, long i)
{
	return d->eval_mask ? d->eval_mask + (size_t)i * (d->T + 1) : NULL;
}

/* Reads a token file for parity checks: either whitespace-separated decimal
 * integers (text) or raw little-endian int32 (anything else; the size must be
 * a multiple of 4). Every id must lie in [0, vocab). *ids is malloc'd; the
 * caller frees it. FL_EFORMAT on a malformed file, FL_EINVAL on an id out of
 * range, FL_ETOOBIG over max_tokens. */
int client_data_read_tokens(const char *path, int vocab, size_t max_tokens, int32_t **ids,
                            size_t *n, char *err, size_t errlen);

#endif
