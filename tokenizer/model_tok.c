/*
 * tokenizer/model_tok.c — loading a model folder's tokenizer and chat
 * configuration together, with the vocabulary check; see model_tok.h.
 */
#include "tokenizer/model_tok.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/fsutil.h"

/* A folder without tokenizer.json gets the byte-level tokenizer. That is
 * right for fedlora's byte models only; a folder that has the files of
 * another tokenizer, or a vocabulary far beyond the 258 byte ids, was made
 * for a tokenizer fedlora cannot see, and feeding it bytes would train and
 * score garbage without a word. Returns 0, or FL_ENOENT with the reason. */
static int check_bytes_fit(const char *dir, int vocab_size, int byte_ids, char *err, size_t errlen)
{
	static const char *other[] = {"tokenizer.model", "vocab.json", "merges.txt"};
	char path[PATH_MAX];
	struct stat sb;
	for (unsigned i = 0; i < sizeof other / sizeof other[0]; i++) {
		if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, other[i]) >= sizeof path)
			continue;
		if (stat(path, &sb) == 0) {
			fl_seterr(err, errlen,
			          "%s/tokenizer.json is missing: the folder has %s, a tokenizer "
			          "format fedlora does not read; save the model's fast tokenizer "
			          "(tokenizer.json) into the folder",
			          dir, other[i]);
			return FL_ENOENT;
		}
	}
	if (vocab_size > FL_TOK_BYTES_MAX_VOCAB) {
		fl_seterr(err, errlen,
		          "%s/tokenizer.json is missing and vocab_size %d is far above the %d ids "
		          "of the byte-level tokenizer used without one; copy the model's "
		          "tokenizer.json into the folder",
		          dir, vocab_size, byte_ids);
		return FL_ENOENT;
	}
	return 0;
}

int fl_tok_load_model(const char *dir, int vocab_size, fl_tokenizer **tok, fl_chat_config *chat,
                      char *err, size_t errlen)
{
	int rv;
	*tok = NULL;
	if (chat)
		memset(chat, 0, sizeof *chat);
	if ((rv = fl_tok_load(dir, tok, err, errlen)) != 0)
		return rv;
	if (dir && fl_tok_get_kind(*tok) == FL_TOK_BYTES &&
	    (rv = check_bytes_fit(dir, vocab_size, fl_tok_vocab(*tok), err, errlen)) != 0)
		goto fail;
	if (fl_tok_vocab(*tok) > vocab_size) {
		snprintf(err, errlen,
		         "%s: the model's vocab_size %d is smaller than the %d ids of its %s "
		         "tokenizer",
		         dir ? dir : "(bytes)", vocab_size, fl_tok_vocab(*tok),
		         fl_tok_kind_name(*tok));
		rv = FL_ESHAPE;
		goto fail;
	}
	if (chat && dir && (rv = fl_chat_config_load(dir, chat, err, errlen)) != 0)
		goto fail;
	return 0;
fail:
	fl_tok_free(*tok);
	*tok = NULL;
	return rv;
}

void fl_tok_hash_hex(const fl_tokenizer *t, char out[65])
{
	uint8_t h[32];
	fl_tok_hash(t, h);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

int fl_tok_copy_files(const char *src, const char *dst, int *copied, char *err, size_t errlen)
{
	static const char *names[] = {"tokenizer.json", "tokenizer_config.json",
	                              "special_tokens_map.json"};
	char from[PATH_MAX], to[PATH_MAX];
	if (copied)
		*copied = 0;
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
		char *buf = NULL;
		size_t len = 0;
		int rv;
		if ((size_t)snprintf(from, sizeof from, "%s/%s", src, names[i]) >= sizeof from ||
		    (size_t)snprintf(to, sizeof to, "%s/%s", dst, names[i]) >= sizeof to) {
			fl_seterr(err, errlen, "%s: path too long", src);
			return FL_EINVAL;
		}
		if ((rv = fl_read_file(from, (size_t)512 << 20, &buf, &len)) == FL_ENOENT)
			continue;
		if (rv == 0 && fl_write_atomic(to, buf, len, 0644) != 0)
			rv = FL_EIO;
		free(buf);
		if (rv != 0) {
			fl_seterr(err, errlen, "copying %s to %s: %s", from, dst,
			          rv == FL_EIO ? strerror(errno) : fl_strerror(rv));
			return rv;
		}
		if (copied)
			(*copied)++;
	}
	return 0;
}
