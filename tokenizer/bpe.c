/*
 * tokenizer/bpe.c — Hugging Face tokenizer.json BPE tokenizers in C: the
 * byte-level kind (GPT-2, Llama-3, SmolLM, Qwen: ByteLevel pre-tokenizer,
 * optional Split regex, GPT-2 byte-to-unicode map) and the SentencePiece-style
 * kind (Llama-2, Mistral: Prepend/Replace or Metaspace, byte fallback to
 * <0xNN> tokens, unk). See tokenizer/bpe.h.
 *
 * Encoding follows the reference (huggingface/tokenizers) step by step:
 * added tokens are split out first (leftmost-longest, specials only with
 * FL_TOK_SPECIAL; see below), each remaining segment is normalized (NFC through
 * utf8proc, Prepend, Replace), pre-tokenized (Split regex through PCRE2 in
 * UTF + UCP mode with JIT, ByteLevel, Metaspace) and each piece is merged by
 * rank with a binary heap over a linked list of symbols (O(n log n) per
 * piece). There is no word cache: every call keeps its scratch to itself,
 * so one loaded tokenizer serves many threads without locks.
 *
 * Invalid UTF-8: the reference only takes valid strings. Here the byte-level
 * kind passes invalid bytes through the byte map like any other (PCRE2 runs
 * with PCRE2_MATCH_INVALID_UTF, so they never match the split pattern and
 * form pieces of their own); the SentencePiece kind treats each invalid byte
 * as a character missing from the vocabulary, i.e. byte fallback <0xNN> (or
 * unk without byte fallback). NFC applies to the valid runs only. Decoding
 * returns raw bytes: byte-fallback runs that are not valid UTF-8 are returned
 * as they are, not as U+FFFD, so encode + decode gives back the input bytes.
 *
 * Not supported (refused at load with the file and field named): model types
 * other than BPE, BPE dropout, continuing_subword_prefix / end_of_word_suffix,
 * normalizers other than NFC / Prepend / Replace(String) / Sequence,
 * pre-tokenizers other than ByteLevel / Split / Metaspace / Sequence, Split
 * behaviour Contiguous, decoders other than ByteLevel / Replace(String) /
 * ByteFallback / Fuse / Strip / Metaspace / Sequence, post-processors other
 * than TemplateProcessing / ByteLevel / Sequence.
 *
 * Added tokens, as the reference's AddedVocabulary: those marked not
 * normalized are cut out of the raw text first; each remaining piece is
 * normalized and the tokens marked normalized (default: the non-special
 * ones) are cut out of the normalized text, matched as their own content put
 * through the normalizer; what is left is pre-tokenized. A single_word match
 * preceded or followed by a word character (Rust regex's Unicode \w:
 * letters, marks, digits, connector punctuation, join controls) is dropped,
 * and the search resumes after it. One departure: without FL_TOK_SPECIAL the
 * special tokens are not matched at all (the reference always matches them).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/bpe.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/err.h"

/* ---------------------------------------------------------------- tables */

/* String -> id over the token texts (open addressing, ids in the slots). */
typedef struct str_map {
	int32_t *slot;
	size_t mask;
} str_map;

/* (left id, right id) -> (rank, merged id). */
typedef struct merge_map {
	uint64_t *key;
	int32_t *rank, *nid;
	size_t mask;
} merge_map;

enum { N_NFC, N_PREPEND, N_REPLACE };
typedef struct norm {
	int type;
	char *a, *b;
	size_t alen, blen;
} norm;

enum { PT_SPLIT, PT_BYTELEVEL, PT_METASPACE };
enum { SB_ISOLATED, SB_REMOVED, SB_PREV, SB_NEXT };
enum { PS_NEVER, PS_FIRST, PS_ALWAYS };
typedef struct pretok {
	int type;
	pcre2_code *re;
	int behavior, invert;
	int add_prefix_space;
	char repl[8];
	size_t repl_len;
	int prepend, split;
} pretok;

enum { D_BYTELEVEL, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_METASPACE };
typedef struct dec {
	int type;
	char *a, *b;
	size_t alen, blen;
	int start, stop, prepend;
} dec;

typedef struct added {
	int32_t id;
	const char *s; /* the content, into the arena */
	size_t len;
	int special, lstrip, rstrip, single_word, normalized;
	char *pat; /* what is matched: the content, normalized when `normalized` (owned then) */
	size_t plen;
} added;

struct fl_bpe {
	fl_tok_kind kind;
	int nid; /* largest id + 1 */
	char *arena;
	size_t arena_len, arena_cap;
	int64_t *toff; /* per id: offset of its text in arena, -1 when unused */
	uint32_t *tlen;
	uint8_t *tflag; /* per id: 1 added token, 2 special */
	str_map vocab;  /* the model's vocabulary (not the added tokens) */
	merge_map merges;
	added *add;
	size_t nadd;
	/* [normalized][byte] 1: an added token's pattern starts with this byte; 2: a non-special
	 * one */
	uint8_t add_first[2][256];
	size_t nadd_norm; /* added tokens matched on the normalized text */
	norm *norms;
	size_t nnorm;
	pretok *pts;
	size_t npt;
	dec *decs;
	size_t ndec;
	int has_decoder;
	int byte_fallback, fuse_unk, ignore_merges;
	int32_t unk;
	int32_t byte_id[256];  /* byte-level: id of the byte's mapped char; SP: <0xNN> */
	char byte_chr[256][3]; /* GPT-2 byte-to-unicode map, UTF-8, NUL-terminated */
	int16_t chr_byte[512]; /* inverse map by code point, -1 when none */
	int32_t bos, eos, pad;
	int32_t tpl_bos, tpl_eos; /* from the post-processor's template */
};

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h ^ (h >> 29);
}

static size_t pow2_at_least(size_t n)
{
	size_t c = 16;
	while (c < n)
		c <<= 1;
	return c;
}

static const char *tok_text(const fl_bpe *b, int32_t id, size_t *len)
{
	*len = b->tlen[id];
	return b->arena + b->toff[id];
}

static int map_init(str_map *m, size_t n)
{
	size_t c = pow2_at_least(2 * n + 1);
	if (!(m->slot = malloc(c * sizeof *m->slot)))
		return FL_ENOMEM;
	memset(m->slot, 0xff, c * sizeof *m->slot);
	m->mask = c - 1;
	return 0;
}

static int32_t map_get(const fl_bpe *b, const str_map *m, const char *s, size_t n)
{
	if (!m->slot)
		return -1;
	for (size_t i = hash_bytes(s, n) & m->mask;; i = (i + 1) & m->mask) {
		int32_t id = m->slot[i];
		if (id < 0)
			return -1;
		if (b->tlen[id] == n && memcmp(b->arena + b->toff[id], s, n) == 0)
			return id;
	}
}

/* Inserts id (whose text is set); returns the id already holding that text or -1. */
static int32_t map_put(fl_bpe *b, str_map *m, int32_t id)
{
	size_t n;
	const char *s = tok_text(b, id, &n);
	for (size_t i = hash_bytes(s, n) & m->mask;; i = (i + 1) & m->mask) {
		int32_t o = m->slot[i];
		if (o < 0) {
			m->slot[i] = id;
			return -1;
		}
		if (b->tlen[o] == n && memcmp(b->arena + b->toff[o], s, n) == 0)
			return o;
	}
}

static inline size_t merge_slot(uint64_t k, size_t mask)
{
	return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & mask;
}

static inline int merge_get(const merge_map *m, int32_t a, int32_t c, int32_t *rank, int32_t *nid)
{
	uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)c;
	for (size_t i = merge_slot(k, m->mask);; i = (i + 1) & m->mask) {
		if (m->key[i] == UINT64_MAX)
			return 0;
		if (m->key[i] == k) {
			*rank = m->rank[i];
			*nid = m->nid[i];
			return 1;
		}
	}
}

/* A later duplicate replaces the earlier one, as the reference's HashMap
 * collect does. */
static void merge_put(merge_map *m, int32_t a, int32_t c, int32_t rank, int32_t nid)
{
	uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)c;
	size_t i = merge_slot(k, m->mask);
	while (m->key[i] != UINT64_MAX && m->key[i] != k)
		i = (i + 1) & m->mask;
	m->key[i] = k;
	m->rank[i] = rank;
	m->nid[i] = nid;
}

/* ---------------------------------------------------------------- utf-8 */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0;
	if (c < 0xE0)
		return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
	if (c < 0xF0) {
		if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
			return 0;
		if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0))
			return 0;
		return 3;
	}
	if (c < 0xF5) {
		if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 ||
		    (s[3] & 0xC0) != 0x80)
			return 0;
		if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

static int utf8_put(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

static uint32_t utf8_cp(const unsigned char *s, size_t l)
{
	switch (l) {
	case 1:
		return s[0];
	case 2:
		return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
	case 3:
		return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
	default:
		return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
		       (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
	}
}

/* ---------------------------------------------------------------- scratch */

typedef struct buf {
	char *p;
	size_t n, cap;
} buf;

static int buf_reserve(buf *b, size_t extra)
{
	if (b->n + extra <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->n + extra) {
		if (cap > SIZE_MAX / 2)
			return FL_ENOMEM;
		cap *= 2;
	}
	char *p = realloc(b->p, cap);
	if (!p)
		return FL_ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int buf_add(buf *b, const void *s, size_t n)
{
	int rv;
	if ((rv = buf_reserve(b, n)) != 0)
		return rv;
	if (n)
		memcpy(b->p + b->n, s, n);
	b->n += n;
	return 0;
}

typedef struct span {
	size_t off, len;
	int first; /* starts at the very beginning of the input (Metaspace "first") */
} span;

typedef struct spans {
	span *v;
	size_t n, cap;
} spans;

/* Appends a span, also an empty one (decoders keep token positions). */
static int spans_push(spans *s, size_t off, size_t len, int first)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		span *v = realloc(s->v, cap * sizeof *v);
		if (!v)
			return FL_ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = (span){off, len, first};
	return 0;
}

/* Appends a non-empty span (empty pieces are dropped, as the reference does). */
static int spans_add(spans *s, size_t off, size_t len, int first)
{
	return len ? spans_push(s, off, len, first) : 0;
}

typedef struct sym {
	int32_t id, prev, next, gone;
} sym;

typedef struct hent {
	int32_t rank, pos, nid;
} hent;

typedef struct work {
	/* nt: a normalized segment while its normalized added tokens are cut out */
	buf a, b, tmp, nt;
	spans s1, s2;
	sym *sy;
	size_t sycap;
	hent *h;
	size_t hn, hcap;
	pcre2_match_data *md;
	pcre2_match_context *mc; /* with a larger JIT stack, made when one match needs it */
	pcre2_jit_stack *js;
} work;

static void work_free(work *w)
{
	free(w->a.p);
	free(w->b.p);
	free(w->tmp.p);
	free(w->nt.p);
	free(w->s1.v);
	free(w->s2.v);
	free(w->sy);
	free(w->h);
	if (w->md)
		pcre2_match_data_free(w->md);
	if (w->mc)
		pcre2_match_context_free(w->mc);
	if (w->js)
		pcre2_jit_stack_free(w->js);
}

static inline int hent_less(const hent *x, const hent *y)
{
	return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static int heap_push(work *w, int32_t rank, int32_t pos, int32_t nid)
{
	if (w->hn == w->hcap) {
		size_t cap = w->hcap ? 2 * w->hcap : 64;
		hent *h = realloc(w->h, cap * sizeof *h);
		if (!h)
			return FL_ENOMEM;
		w->h = h;
		w->hcap = cap;
	}
	size_t i = w->hn++;
	hent e = {rank, pos, nid};
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!hent_less(&e, &w->h[p]))
			break;
		w->h[i] = w->h[p];
		i = p;
	}
	w->h[i] = e;
	return 0;
}

static hent heap_pop(work *w)
{
	hent top = w->h[0], e = w->h[--w->hn];
	size_t i = 0, n = w->hn;
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l >= n)
			break;
		m = l;
		if (l + 1 < n && hent_less(&w->h[l + 1], &w->h[l]))
			m = l + 1;
		if (!hent_less(&w->h[m], &e))
			break;
		w->h[i] = w->h[m];
		i = m;
	}
	if (n)
		w->h[i] = e;
	return top;
}

/* ---------------------------------------------------------------- model */

static int sym_add(work *w, size_t *n, int32_t id)
{
	if (*n == w->sycap) {
		size_t cap = w->sycap ? 2 * w->sycap : 64;
		sym *s = realloc(w->sy, cap * sizeof *s);
		if (!s)
			return FL_ENOMEM;
		w->sy = s;
		w->sycap = cap;
	}
	w->sy[*n] = (sym){id, (int32_t)*n - 1, (int32_t)*n + 1, 0};
	(*n)++;
	return 0;
}

/* Adds the symbols of one unit (a byte for the byte-level kind, a character
 * for the SentencePiece kind) that is missing from the vocabulary: byte
 * fallback, else unk (fused with a preceding unk under fuse_unk), else
 * nothing, as the reference does. */
static int unit_missing(const fl_bpe *b, work *w, size_t *n, const unsigned char *s, size_t l)
{
	int rv;
	if (b->byte_fallback) {
		size_t i;
		for (i = 0; i < l && b->byte_id[s[i]] >= 0; i++)
			;
		if (i == l) {
			for (i = 0; i < l; i++)
				if ((rv = sym_add(w, n, b->byte_id[s[i]])) != 0)
					return rv;
			return 0;
		}
	}
	if (b->unk < 0)
		return 0;
	if (b->fuse_unk && *n > 0 && w->sy[*n - 1].id == b->unk)
		return 0;
	return sym_add(w, n, b->unk);
}

/* BPE over one pre-tokenized piece: appends its ids to out. */
static int bpe_piece(const fl_bpe *b, work *w, const unsigned char *s, size_t len, fl_tok_ids *out)
{
	size_t n = 0;
	int rv;
	int32_t id;
	if (b->kind == FL_TOK_BPE_BYTE) {
		if (b->ignore_merges) {
			w->tmp.n = 0;
			for (size_t i = 0; i < len; i++)
				if ((rv = buf_add(&w->tmp, b->byte_chr[s[i]],
				                  strlen(b->byte_chr[s[i]]))) != 0)
					return rv;
			if ((id = map_get(b, &b->vocab, w->tmp.p, w->tmp.n)) >= 0)
				return fl_tok_ids_push(out, id);
		}
		for (size_t i = 0; i < len; i++) {
			if (b->byte_id[s[i]] >= 0)
				rv = sym_add(w, &n, b->byte_id[s[i]]);
			else
				rv = unit_missing(b, w, &n, s + i, 1);
			if (rv != 0)
				return rv;
		}
	} else {
		if (b->ignore_merges && (id = map_get(b, &b->vocab, (const char *)s, len)) >= 0)
			return fl_tok_ids_push(out, id);
		for (size_t i = 0; i < len;) {
			size_t l = utf8_len(s + i, len - i);
			if (!l)
				l = 1;
			if ((id = map_get(b, &b->vocab, (const char *)s + i, l)) >= 0)
				rv = sym_add(w, &n, id);
			else
				rv = unit_missing(b, w, &n, s + i, l);
			if (rv != 0)
				return rv;
			i += l;
		}
	}
	if (!n)
		return 0;
	w->sy[n - 1].next = -1;
	w->hn = 0;
	int32_t rank, nid;
	for (size_t i = 0; i + 1 < n; i++)
		if (merge_get(&b->merges, w->sy[i].id, w->sy[i + 1].id, &rank, &nid) &&
		    (rv = heap_push(w, rank, (int32_t)i, nid)) != 0)
			return rv;
	while (w->hn) {
		hent top = heap_pop(w);
		sym *cur = &w->sy[top.pos];
		if (cur->gone || cur->next < 0)
			continue;
		sym *right = &w->sy[cur->next];
		if (!merge_get(&b->merges, cur->id, right->id, &rank, &nid) || nid != top.nid)
			continue;
		cur->id = top.nid;
		right->gone = 1;
		cur->next = right->next;
		if (cur->next >= 0)
			w->sy[cur->next].prev = top.pos;
		if (cur->prev >= 0 &&
		    merge_get(&b->merges, w->sy[cur->prev].id, cur->id, &rank, &nid) &&
		    (rv = heap_push(w, rank, cur->prev, nid)) != 0)
			return rv;
		if (cur->next >= 0 &&
		    merge_get(&b->merges, cur->id, w->sy[cur->next].id, &rank, &nid) &&
		    (rv = heap_push(w, rank, top.pos, nid)) != 0)
			return rv;
	}
	for (int32_t i = 0; i >= 0; i = w->sy[i].next)
		if ((rv = fl_tok_ids_push(out, w->sy[i].id)) != 0)
			return rv;
	return 0;
}

/* ---------------------------------------------------------------- normalizers */

static int nfc_into(buf *o, const char *s, size_t n)
{
	int rv;
	size_t i = 0;
	while (i < n) {
		/* a valid run [i, j) */
		size_t j = i, ascii = 1;
		for (;;) {
			if (j >= n)
				break;
			size_t l = utf8_len((const unsigned char *)s + j, n - j);
			if (!l)
				break;
			if (l > 1)
				ascii = 0;
			j += l;
		}
		if (j > i) {
			if (ascii) {
				if ((rv = buf_add(o, s + i, j - i)) != 0)
					return rv;
			} else {
				utf8proc_uint8_t *r = NULL;
				utf8proc_ssize_t m = utf8proc_map(
				    (const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(j - i), &r,
				    UTF8PROC_STABLE | UTF8PROC_COMPOSE);
				if (m < 0) {
					free(r);
					return m == UTF8PROC_ERROR_NOMEM ? FL_ENOMEM : FL_EINVAL;
				}
				rv = buf_add(o, r, (size_t)m);
				free(r);
				if (rv != 0)
					return rv;
			}
		}
		if (j < n) { /* one invalid byte, kept */
			if ((rv = buf_add(o, s + j, 1)) != 0)
				return rv;
			j++;
		}
		i = j;
	}
	return 0;
}

static int replace_into(buf *o, const char *s, size_t n, const char *a, size_t al, const char *r,
                        size_t rl)
{
	int rv;
	size_t i = 0;
	while (i < n) {
		const char *hit = al ? memmem(s + i, n - i, a, al) : NULL;
		size_t k = hit ? (size_t)(hit - s) : n;
		if ((rv = buf_add(o, s + i, k - i)) != 0)
			return rv;
		if (!hit)
			break;
		if ((rv = buf_add(o, r, rl)) != 0)
			return rv;
		i = k + al;
	}
	return 0;
}

/* Normalizes s into w->a. */
static int normalize(const fl_bpe *b, work *w, const char *s, size_t n)
{
	int rv;
	w->a.n = 0;
	if ((rv = buf_add(&w->a, s, n)) != 0)
		return rv;
	for (size_t k = 0; k < b->nnorm; k++) {
		const norm *m = &b->norms[k];
		w->b.n = 0;
		switch (m->type) {
		case N_NFC:
			rv = nfc_into(&w->b, w->a.p, w->a.n);
			break;
		case N_PREPEND:
			if (w->a.n && (rv = buf_add(&w->b, m->a, m->alen)) != 0)
				return rv;
			rv = buf_add(&w->b, w->a.p, w->a.n);
			break;
		default:
			rv = replace_into(&w->b, w->a.p, w->a.n, m->a, m->alen, m->b, m->blen);
		}
		if (rv != 0)
			return rv;
		buf t = w->a;
		w->a = w->b;
		w->b = t;
	}
	return 0;
}

/* ---------------------------------------------------------------- pre-tokenizers */

static int re_next(const pcre2_code *re, work *w, const char *s, size_t n, size_t from, size_t *ms,
                   size_t *me)
{
	for (;;) {
		int r = pcre2_match(re, (PCRE2_SPTR)s, n, from, 0, w->md, w->mc);
		if (r == PCRE2_ERROR_JIT_STACKLIMIT && !w->js) {
			/* the default 32 KiB machine stack was not enough: 64 MiB at most */
			if (!(w->mc = pcre2_match_context_create(NULL)) ||
			    !(w->js = pcre2_jit_stack_create(1 << 15, 1 << 26, NULL)))
				return FL_ENOMEM;
			pcre2_jit_stack_assign(w->mc, NULL, w->js);
			continue;
		}
		if (r == PCRE2_ERROR_NOMATCH)
			return 0;
		if (r < 0)
			return FL_EINVAL;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
		if (ov[1] > ov[0]) {
			*ms = ov[0];
			*me = ov[1];
			return 1;
		}
		/* empty match: the reference skips it */
		from = ov[0] + 1;
		if (from > n)
			return 0;
	}
}

/* Splits span sp of w->a by re into o with the given behaviour. */
static int split_span(const pretok *p, work *w, const span *sp, spans *o)
{
	const char *s = w->a.p + sp->off;
	size_t n = sp->len, pos = 0, ms, me, pend = 0; /* pend: start of text not yet emitted */
	int rv, r, first = sp->first;
	for (;;) {
		if ((r = re_next(p->re, w, s, n, pos, &ms, &me)) < 0)
			return r;
		if (!r)
			ms = me = n;
		/* gap [pos, ms), match [ms, me); invert swaps their roles */
		size_t g0 = pos, g1 = ms, m0 = ms, m1 = me;
		int gap_is_match = p->invert;
		for (int part = 0; part < 2; part++) {
			size_t a = part ? m0 : g0, e = part ? m1 : g1;
			int is_match = part ? !gap_is_match : gap_is_match;
			if (e <= a)
				continue;
			switch (p->behavior) {
			case SB_ISOLATED:
				rv = spans_add(o, sp->off + a, e - a, first && a == 0);
				break;
			case SB_REMOVED:
				rv = is_match ? 0
				              : spans_add(o, sp->off + a, e - a, first && a == 0);
				break;
			case SB_PREV: /* a match joins the text before it */
				if (is_match) {
					rv = spans_add(o, sp->off + pend, e - pend,
					               first && pend == 0);
					pend = e;
				} else {
					rv = 0; /* wait for the following match */
				}
				break;
			default: /* SB_NEXT: a match starts a new piece */
				if (is_match && a > pend) {
					rv = spans_add(o, sp->off + pend, a - pend,
					               first && pend == 0);
					pend = a;
				} else {
					rv = 0;
				}
			}
			if (rv != 0)
				return rv;
		}
		if (!r)
			break;
		pos = me;
	}
	if ((p->behavior == SB_PREV || p->behavior == SB_NEXT) && n > pend)
		return spans_add(o, sp->off + pend, n - pend, first && pend == 0);
	return 0;
}

/* Runs every pre-tokenizer over w->a, leaving the pieces in w->s1. */
static int pretokenize(const fl_bpe *b, work *w, int first)
{
	int rv;
	w->s1.n = 0;
	if ((rv = spans_add(&w->s1, 0, w->a.n, first)) != 0)
		return rv;
	for (size_t k = 0; k < b->npt; k++) {
		const pretok *p = &b->pts[k];
		w->s2.n = 0;
		if (p->type == PT_SPLIT ||
		    (p->type == PT_BYTELEVEL && !p->add_prefix_space && p->re)) {
			for (size_t i = 0; i < w->s1.n; i++)
				if ((rv = split_span(p, w, &w->s1.v[i], &w->s2)) != 0)
					return rv;
		} else if (p->type == PT_BYTELEVEL && !p->add_prefix_space) {
			continue;
		} else {
			/* rewrites the text: build the new text in w->b with new spans */
			w->b.n = 0;
			spans tmp = {0};
			for (size_t i = 0; i < w->s1.n; i++) {
				const span *sp = &w->s1.v[i];
				const char *s = w->a.p + sp->off;
				size_t off = w->b.n;
				if (p->type == PT_BYTELEVEL) {
					if (s[0] != ' ' && (rv = buf_add(&w->b, " ", 1)) != 0)
						goto tfail;
					if ((rv = buf_add(&w->b, s, sp->len)) != 0)
						goto tfail;
				} else {
					if ((rv = replace_into(&w->b, s, sp->len, " ", 1, p->repl,
					                       p->repl_len)) != 0)
						goto tfail;
					int pre = p->prepend == PS_ALWAYS ||
					          (p->prepend == PS_FIRST && sp->first);
					if (pre &&
					    (w->b.n - off < p->repl_len ||
					     memcmp(w->b.p + off, p->repl, p->repl_len) != 0)) {
						if ((rv = buf_reserve(&w->b, p->repl_len)) != 0)
							goto tfail;
						memmove(w->b.p + off + p->repl_len, w->b.p + off,
						        w->b.n - off);
						memcpy(w->b.p + off, p->repl, p->repl_len);
						w->b.n += p->repl_len;
					}
				}
				if ((rv = spans_add(&tmp, off, w->b.n - off, sp->first)) != 0)
					goto tfail;
			}
			{
				buf t = w->a;
				w->a = w->b;
				w->b = t;
			}
			if (p->type == PT_METASPACE && p->split) {
				for (size_t i = 0; i < tmp.n; i++) {
					const char *s = w->a.p + tmp.v[i].off;
					size_t n = tmp.v[i].len, st = 0;
					for (size_t j = 1; j + p->repl_len <= n; j++)
						if (memcmp(s + j, p->repl, p->repl_len) == 0) {
							if ((rv = spans_add(
							         &w->s2, tmp.v[i].off + st, j - st,
							         tmp.v[i].first && st == 0)) != 0)
								goto tfail;
							st = j;
						}
					if ((rv = spans_add(&w->s2, tmp.v[i].off + st, n - st,
					                    tmp.v[i].first && st == 0)) != 0)
						goto tfail;
				}
				free(tmp.v);
			} else if (p->type == PT_BYTELEVEL && p->re) {
				spans t = w->s1;
				w->s1 = tmp;
				free(t.v);
				for (size_t i = 0; i < w->s1.n; i++)
					if ((rv = split_span(p, w, &w->s1.v[i], &w->s2)) != 0)
						return rv;
			} else {
				free(w->s2.v);
				w->s2 = tmp;
			}
			goto swap;
		tfail:
			free(tmp.v);
			return rv;
		}
	swap : {
		spans t = w->s1;
		w->s1 = w->s2;
		w->s2 = t;
	}
	}
	return 0;
}

/* Unicode White_Space (Rust's char::is_whitespace, which the reference's
 * lstrip/rstrip use). */
static int is_ws_cp(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
	       c == 0x205F || c == 0x3000;
}

/* Byte length of the whitespace character starting at s (n bytes left), or 0. */
static size_t ws_fwd(const char *s, size_t n)
{
	size_t l = utf8_len((const unsigned char *)s, n);
	return l && is_ws_cp(utf8_cp((const unsigned char *)s, l)) ? l : 0;
}

/* Byte length of the whitespace character ending at s + n (n bytes before), or 0. */
static size_t ws_back(const char *s, size_t n)
{
	for (size_t l = 1; l <= 3 && l <= n; l++)
		if (utf8_len((const unsigned char *)s + n - l, l) == l && ws_fwd(s + n - l, l) == l)
			return l;
	return 0;
}

/* Rust regex's Unicode \w, which the reference's single_word test uses:
 * Alphabetic, marks, decimal digits, connector punctuation, join controls.
 * Alphabetic is read as the letter categories plus Nl plus the Other_Alphabetic
 * characters outside the mark categories (circled and squared Latin letters). */
static int is_word_cp(uint32_t c)
{
	switch (utf8proc_category((utf8proc_int32_t)c)) {
	case UTF8PROC_CATEGORY_LU:
	case UTF8PROC_CATEGORY_LL:
	case UTF8PROC_CATEGORY_LT:
	case UTF8PROC_CATEGORY_LM:
	case UTF8PROC_CATEGORY_LO:
	case UTF8PROC_CATEGORY_NL:
	case UTF8PROC_CATEGORY_ND:
	case UTF8PROC_CATEGORY_MN:
	case UTF8PROC_CATEGORY_MC:
	case UTF8PROC_CATEGORY_ME:
	case UTF8PROC_CATEGORY_PC:
		return 1;
	default:
		return c == 0x200C || c == 0x200D || (c >= 0x24B6 && c <= 0x24E9) ||
		       (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
		       (c >= 0x1F170 && c <= 0x1F189);
	}
}

/* single_word: the match s[i, e) of n bytes is neither preceded nor followed
 * by a word character (an invalid byte is not one). */
static int word_bounded(const char *s, size_t n, size_t i, size_t e)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t l = 1; l <= 4 && l <= i; l++)
		if (utf8_len(u + i - l, l) == l) {
			if (is_word_cp(utf8_cp(u + i - l, l)))
				return 0;
			break;
		}
	size_t l = e < n ? utf8_len(u + e, n - e) : 0;
	return !(l && is_word_cp(utf8_cp(u + e, l)));
}

/* Leftmost-longest added token in s[from, n) among those matched on the raw
 * text (norm 0) or on the normalized text (norm 1), specials only when
 * want_special: its id and the span it takes (with lstrip/rstrip
 * whitespace), or -1. A single_word match next to a word character is
 * dropped and the search goes on after it, as the reference's Aho-Corasick
 * iteration does (no match starts inside a dropped one). */
static int32_t find_added(const fl_bpe *b, const char *s, size_t n, size_t from, int want_special,
                          int norm, size_t *ms, size_t *me)
{
	uint8_t need = want_special ? 1 : 2;
	for (size_t i = from; i < n;) {
		if (!(b->add_first[norm][(unsigned char)s[i]] & need)) {
			i++;
			continue;
		}
		const added *best = NULL;
		for (size_t k = 0; k < b->nadd; k++) {
			const added *a = &b->add[k];
			if ((a->special && !want_special) || a->normalized != norm || !a->plen)
				continue;
			if (a->plen <= n - i && (unsigned char)a->pat[0] == (unsigned char)s[i] &&
			    memcmp(a->pat, s + i, a->plen) == 0 && (!best || a->plen > best->plen))
				best = a;
		}
		if (!best) {
			i++;
			continue;
		}
		if (best->single_word && !word_bounded(s, n, i, i + best->plen)) {
			i += best->plen;
			continue;
		}
		size_t st = i, en = i + best->plen;
		size_t l;
		if (best->lstrip)
			while (st > from && (l = ws_back(s + from, st - from)) != 0)
				st -= l;
		if (best->rstrip)
			while (en < n && (l = ws_fwd(s + en, n - en)) != 0)
				en += l;
		*ms = st;
		*me = en;
		return best->id;
	}
	return -1;
}

/* Pre-tokenizes and merges w->a[0, n) into out. */
static int encode_normalized(const fl_bpe *b, work *w, int first, fl_tok_ids *out)
{
	int rv;
	if (!w->a.n)
		return 0;
	if ((rv = pretokenize(b, w, first)) != 0)
		return rv;
	for (size_t i = 0; i < w->s1.n; i++)
		if ((rv = bpe_piece(b, w, (const unsigned char *)w->a.p + w->s1.v[i].off,
		                    w->s1.v[i].len, out)) != 0)
			return rv;
	return 0;
}

/* Encodes one piece of the input that holds no raw-matched added token:
 * normalizes it, cuts out the added tokens marked normalized (matched on the
 * normalized text, as the reference's second pass does), and pre-tokenizes
 * and merges the rest. */
static int encode_segment(const fl_bpe *b, work *w, const char *s, size_t n, int first,
                          int want_special, fl_tok_ids *out)
{
	int rv;
	if (!n)
		return 0;
	if ((rv = normalize(b, w, s, n)) != 0)
		return rv;
	if (!b->nadd_norm)
		return encode_normalized(b, w, first, out);
	buf t = w->nt;
	w->nt = w->a;
	w->a = t;
	size_t pos = 0;
	while (pos < w->nt.n) {
		size_t ms = w->nt.n, me = w->nt.n;
		int32_t id = find_added(b, w->nt.p, w->nt.n, pos, want_special, 1, &ms, &me);
		if (id < 0)
			ms = me = w->nt.n;
		w->a.n = 0;
		if ((rv = buf_add(&w->a, w->nt.p + pos, ms - pos)) != 0 ||
		    (rv = encode_normalized(b, w, first && pos == 0, out)) != 0)
			return rv;
		if (id >= 0 && (rv = fl_tok_ids_push(out, id)) != 0)
			return rv;
		pos = me;
	}
	return 0;
}

int fl_bpe_encode(const fl_bpe *b, const char *text, size_t n, unsigned flags, fl_tok_ids *out,
                  char *err, size_t errlen)
{
	work w = {0};
	int rv = 0;
	if (b->npt && !(w.md = pcre2_match_data_create(4, NULL)))
		return FL_ENOMEM;
	if ((flags & FL_TOK_ADD_BOS) && b->bos >= 0 && (rv = fl_tok_ids_push(out, b->bos)) != 0)
		goto done;
	size_t pos = 0;
	int want_special = (flags & FL_TOK_SPECIAL) != 0;
	while (pos < n) {
		size_t ms = n, me = n;
		int32_t id = b->nadd > b->nadd_norm
		                 ? find_added(b, text, n, pos, want_special, 0, &ms, &me)
		                 : -1;
		if (id < 0)
			ms = me = n;
		if ((rv = encode_segment(b, &w, text + pos, ms - pos, pos == 0, want_special,
		                         out)) != 0)
			goto done;
		if (id >= 0 && (rv = fl_tok_ids_push(out, id)) != 0)
			goto done;
		pos = me;
	}
	if ((flags & FL_TOK_ADD_EOS) && b->eos >= 0)
		rv = fl_tok_ids_push(out, b->eos);
done:
	if (rv != 0)
		fl_seterr(err, errlen, "tokenizer: encoding failed: %s",
		          rv == FL_EINVAL ? "regular expression match error" : fl_strerror(rv));
	work_free(&w);
	return rv;
}

/* ---------------------------------------------------------------- decode */

static int byte_token(const char *s, size_t n, unsigned char *out)
{
	if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
		return 0;
	unsigned v = 0;
	for (int i = 3; i < 5; i++) {
		char c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else
			return 0;
	}
	*out = (unsigned char)v;
	return 1;
}

/* Applies one decoder to the token list (text in w->a, spans in w->s1). */
static int decode_step(const fl_bpe *b, const dec *d, work *w)
{
	int rv;
	w->b.n = 0;
	w->s2.n = 0;
	/* tokens may be empty: keep both buffers allocated so offsets stay valid */
	if ((rv = buf_reserve(&w->a, 1)) != 0 || (rv = buf_reserve(&w->b, 1)) != 0)
		return rv;
	if (d->type == D_FUSE) {
		if ((rv = buf_add(&w->b, w->a.p, w->a.n)) != 0)
			return rv;
		if ((rv = spans_push(&w->s2, 0, w->b.n, 0)) != 0)
			return rv;
		goto swap;
	}
	for (size_t i = 0; i < w->s1.n; i++) {
		const char *s = w->a.p + w->s1.v[i].off;
		size_t n = w->s1.v[i].len, off = w->b.n;
		unsigned char c;
		switch (d->type) {
		case D_REPLACE:
			rv = replace_into(&w->b, s, n, d->a, d->alen, d->b, d->blen);
			break;
		case D_BYTEFALLBACK:
			if (byte_token(s, n, &c)) {
				rv = buf_add(&w->b, &c, 1);
				/* a run of byte tokens becomes one token */
				while (rv == 0 && i + 1 < w->s1.n &&
				       byte_token(w->a.p + w->s1.v[i + 1].off, w->s1.v[i + 1].len,
				                  &c)) {
					rv = buf_add(&w->b, &c, 1);
					i++;
				}
			} else {
				rv = buf_add(&w->b, s, n);
			}
			break;
		case D_STRIP: {
			size_t st = 0, en = n;
			for (int k = 0; k < d->start && en - st >= d->alen &&
			                memcmp(s + st, d->a, d->alen) == 0;
			     k++)
				st += d->alen;
			for (int k = 0; k < d->stop && en - st >= d->alen &&
			                memcmp(s + en - d->alen, d->a, d->alen) == 0;
			     k++)
				en -= d->alen;
			rv = buf_add(&w->b, s + st, en - st);
			break;
		}
		case D_METASPACE:
			/* the reference drops every replacement character of the
			 * first token (not only a leading one) unless prepend_scheme
			 * is "never" */
			rv = replace_into(&w->b, s, n, d->a, d->alen,
			                  i == 0 && d->prepend != PS_NEVER ? "" : " ",
			                  i == 0 && d->prepend != PS_NEVER ? 0 : 1);
			break;
		default: { /* D_BYTELEVEL: all chars through the inverse map, else raw */
			size_t j = 0;
			while (j < n) {
				size_t l = utf8_len((const unsigned char *)s + j, n - j);
				uint32_t cp =
				    l ? utf8_cp((const unsigned char *)s + j, l) : 0x7fffffff;
				if (!l || cp >= 512 || b->chr_byte[cp] < 0)
					break;
				c = (unsigned char)b->chr_byte[cp];
				if ((rv = buf_add(&w->b, &c, 1)) != 0)
					return rv;
				j += l;
			}
			if (j < n) {
				w->b.n = off;
				rv = buf_add(&w->b, s, n);
			} else {
				rv = 0;
			}
		}
		}
		if (rv != 0)
			return rv;
		if ((rv = spans_push(&w->s2, off, w->b.n - off, 0)) != 0)
			return rv;
	}
swap : {
	buf t = w->a;
	w->a = w->b;
	w->b = t;
	spans u = w->s1;
	w->s1 = w->s2;
	w->s2 = u;
}
	return 0;
}

int fl_bpe_decode(const fl_bpe *b, const int32_t *ids, size_t n, int skip_special, char *out,
                  size_t cap, size_t *len)
{
	work w = {0};
	int rv = 0;
	for (size_t i = 0; i < n; i++) {
		int32_t id = ids[i];
		if (id < 0 || id >= b->nid || b->toff[id] < 0) {
			rv = FL_EINVAL;
			goto done;
		}
		if (skip_special && (b->tflag[id] & 2))
			continue;
		size_t l;
		const char *s = tok_text(b, id, &l);
		if (!b->has_decoder && w.s1.n && (rv = buf_add(&w.a, " ", 1)) != 0)
			goto done;
		size_t off = w.a.n;
		if ((rv = buf_add(&w.a, s, l)) != 0)
			goto done;
		if ((rv = spans_push(&w.s1, off, l, 0)) != 0)
			goto done;
	}
	for (size_t k = 0; k < b->ndec; k++)
		if ((rv = decode_step(b, &b->decs[k], &w)) != 0)
			goto done;
	*len = w.a.n;
	if (cap && w.a.n) /* w.a.p is NULL when nothing was decoded */
		memcpy(out, w.a.p, w.a.n < cap ? w.a.n : cap);
done:
	work_free(&w);
	return rv;
}

/* ---------------------------------------------------------------- loading */

typedef struct ld {
	const char *path;
	char *err;
	size_t errlen;
} ld;

#define LERR(L, code, ...)                                                                         \
	do {                                                                                       \
		char m_[512];                                                                      \
		snprintf(m_, sizeof m_, __VA_ARGS__);                                              \
		fl_seterr((L)->err, (L)->errlen, "%s: %s", (L)->path, m_);                         \
		return (code);                                                                     \
	} while (0)

static const char *jtype(const cJSON *o)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
	return cJSON_IsString(t) ? t->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *k, int dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	if (cJSON_IsBool(v))
		return cJSON_IsTrue(v);
	return dflt;
}

/* Reads an integral id in [0, FL_BPE_MAX_ID). */
static int jid(const cJSON *v, int32_t *id)
{
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
	    v->valuedouble >= FL_BPE_MAX_ID || v->valuedouble != floor(v->valuedouble))
		return 0;
	*id = (int32_t)v->valuedouble;
	return 1;
}

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

/* A {"String": "..."} pattern; {"Regex": ...} is refused. */
static int string_pattern(ld *L, const cJSON *o, const char *field, char **out, size_t *len)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(p, "String");
	if (!cJSON_IsString(st)) {
		if (cJSON_GetObjectItemCaseSensitive(p, "Regex"))
			LERR(L, FL_ENOTSUP, "%s.pattern Regex is not supported (String only)",
			     field);
		LERR(L, FL_EFORMAT, "%s.pattern: want {\"String\": ...}", field);
	}
	*len = strlen(st->valuestring);
	if (!(*out = dupn(st->valuestring, *len)))
		return FL_ENOMEM;
	return 0;
}

static int add_norm(fl_bpe *b, ld *L, const cJSON *o, const char *field, int depth)
{
	const char *t = jtype(o);
	int rv;
	char f[128];
	if (!cJSON_IsObject(o) || !t)
		LERR(L, FL_EFORMAT, "%s: want an object with a type", field);
	if (strcmp(t, "Sequence") == 0) {
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "normalizers"), *e;
		int i = 0;
		if (!cJSON_IsArray(a) || depth > 4)
			LERR(L, FL_EFORMAT, "%s.normalizers: want an array", field);
		cJSON_ArrayForEach(e, a)
		{
			snprintf(f, sizeof f, "%s.normalizers[%d]", field, i++);
			if ((rv = add_norm(b, L, e, f, depth + 1)) != 0)
				return rv;
		}
		return 0;
	}
	norm n = {0};
	if (strcmp(t, "NFC") == 0) {
		n.type = N_NFC;
	} else if (strcmp(t, "Prepend") == 0) {
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prepend");
		if (!cJSON_IsString(p))
			LERR(L, FL_EFORMAT, "%s.prepend: want a string", field);
		n.type = N_PREPEND;
		n.alen = strlen(p->valuestring);
		if (!(n.a = dupn(p->valuestring, n.alen)))
			return FL_ENOMEM;
	} else if (strcmp(t, "Replace") == 0) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "content");
		if (!cJSON_IsString(c))
			LERR(L, FL_EFORMAT, "%s.content: want a string", field);
		n.type = N_REPLACE;
		if ((rv = string_pattern(L, o, field, &n.a, &n.alen)) != 0)
			return rv;
		n.blen = strlen(c->valuestring);
		if (!(n.b = dupn(c->valuestring, n.blen))) {
			free(n.a);
			return FL_ENOMEM;
		}
	} else {
		LERR(L, FL_ENOTSUP, "%s.type \"%s\" is not supported", field, t);
	}
	norm *v = realloc(b->norms, (b->nnorm + 1) * sizeof *v);
	if (!v) {
		free(n.a);
		free(n.b);
		return FL_ENOMEM;
	}
	b->norms = v;
	b->norms[b->nnorm++] = n;
	return 0;
}

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int compile(ld *L, const char *field, const char *pat, size_t len, int literal,
                   pcre2_code **out)
{
	int ec;
	PCRE2_SIZE eo;
	uint32_t opt = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opt, &ec, &eo, NULL);
	if (!re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof msg);
		LERR(L, FL_ENOTSUP, "%s: regular expression does not compile at offset %zu: %s",
		     field, (size_t)eo, (char *)msg);
	}
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* interpreter when JIT is unavailable */
	*out = re;
	return 0;
}

static int metaspace_fields(ld *L, const cJSON *o, const char *field, char *repl, size_t *rl,
                            int *prepend)
{
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "replacement");
	const cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "prepend_scheme");
	if (!cJSON_IsString(r) || !*r->valuestring || strlen(r->valuestring) > 4)
		LERR(L, FL_EFORMAT, "%s.replacement: want one character", field);
	*rl = strlen(r->valuestring);
	memcpy(repl, r->valuestring, *rl + 1);
	if (cJSON_IsString(ps)) {
		if (strcmp(ps->valuestring, "always") == 0)
			*prepend = PS_ALWAYS;
		else if (strcmp(ps->valuestring, "first") == 0)
			*prepend = PS_FIRST;
		else if (strcmp(ps->valuestring, "never") == 0)
			*prepend = PS_NEVER;
		else
			LERR(L, FL_ENOTSUP, "%s.prepend_scheme \"%s\" is not supported", field,
			     ps->valuestring);
	} else {
		*prepend = jbool(o, "add_prefix_space", 1) ? PS_ALWAYS : PS_NEVER;
	}
	return 0;
}

static int add_pretok(fl_bpe *b, ld *L, const cJSON *o, const char *field, int depth)
{
	const char *t = jtype(o);
	int rv;
	char f[128];
	if (!cJSON_IsObject(o) || !t)
		LERR(L, FL_EFORMAT, "%s: want an object with a type", field);
	if (strcmp(t, "Sequence") == 0) {
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers"), *e;
		int i = 0;
		if (!cJSON_IsArray(a) || depth > 4)
			LERR(L, FL_EFORMAT, "%s.pretokenizers: want an array", field);
		cJSON_ArrayForEach(e, a)
		{
			snprintf(f, sizeof f, "%s.pretokenizers[%d]", field, i++);
			if ((rv = add_pretok(b, L, e, f, depth + 1)) != 0)
				return rv;
		}
		return 0;
	}
	if (b->npt && b->pts[b->npt - 1].type == PT_BYTELEVEL)
		LERR(L, FL_ENOTSUP, "%s: only ByteLevel may come last among the pre-tokenizers",
		     field);
	pretok p = {0};
	if (strcmp(t, "ByteLevel") == 0) {
		p.type = PT_BYTELEVEL;
		p.add_prefix_space = jbool(o, "add_prefix_space", 1);
		p.behavior = SB_ISOLATED;
		if (jbool(o, "use_regex", 1) &&
		    (rv = compile(L, field, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, 0, &p.re)) != 0)
			return rv;
	} else if (strcmp(t, "Split") == 0) {
		const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
		const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(pat, "String");
		const cJSON *bh = cJSON_GetObjectItemCaseSensitive(o, "behavior");
		p.type = PT_SPLIT;
		if (!cJSON_IsString(bh))
			LERR(L, FL_EFORMAT, "%s.behavior: want a string", field);
		if (strcmp(bh->valuestring, "Isolated") == 0)
			p.behavior = SB_ISOLATED;
		else if (strcmp(bh->valuestring, "Removed") == 0)
			p.behavior = SB_REMOVED;
		else if (strcmp(bh->valuestring, "MergedWithPrevious") == 0)
			p.behavior = SB_PREV;
		else if (strcmp(bh->valuestring, "MergedWithNext") == 0)
			p.behavior = SB_NEXT;
		else
			LERR(L, FL_ENOTSUP, "%s.behavior \"%s\" is not supported", field,
			     bh->valuestring);
		p.invert = jbool(o, "invert", 0);
		snprintf(f, sizeof f, "%s.pattern", field);
		if (cJSON_IsString(re))
			rv = compile(L, f, re->valuestring, strlen(re->valuestring), 0, &p.re);
		else if (cJSON_IsString(st) && *st->valuestring)
			rv = compile(L, f, st->valuestring, strlen(st->valuestring), 1, &p.re);
		else
			LERR(L, FL_EFORMAT, "%s: want {\"Regex\": ...} or {\"String\": ...}", f);
		if (rv != 0)
			return rv;
	} else if (strcmp(t, "Metaspace") == 0) {
		p.type = PT_METASPACE;
		if ((rv = metaspace_fields(L, o, field, p.repl, &p.repl_len, &p.prepend)) != 0)
			return rv;
		p.split = jbool(o, "split", 1);
	} else {
		LERR(L, FL_ENOTSUP, "%s.type \"%s\" is not supported", field, t);
	}
	pretok *v = realloc(b->pts, (b->npt + 1) * sizeof *v);
	if (!v) {
		if (p.re)
			pcre2_code_free(p.re);
		return FL_ENOMEM;
	}
	b->pts = v;
	b->pts[b->npt++] = p;
	return 0;
}

static int add_dec(fl_bpe *b, ld *L, const cJSON *o, const char *field, int depth)
{
	const char *t = jtype(o);
	int rv;
	char f[128];
	if (!cJSON_IsObject(o) || !t)
		LERR(L, FL_EFORMAT, "%s: want an object with a type", field);
	if (strcmp(t, "Sequence") == 0) {
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "decoders"), *e;
		int i = 0;
		if (!cJSON_IsArray(a) || depth > 4)
			LERR(L, FL_EFORMAT, "%s.decoders: want an array", field);
		cJSON_ArrayForEach(e, a)
		{
			snprintf(f, sizeof f, "%s.decoders[%d]", field, i++);
			if ((rv = add_dec(b, L, e, f, depth + 1)) != 0)
				return rv;
		}
		return 0;
	}
	dec d = {0};
	if (strcmp(t, "ByteLevel") == 0) {
		d.type = D_BYTELEVEL;
	} else if (strcmp(t, "ByteFallback") == 0) {
		d.type = D_BYTEFALLBACK;
	} else if (strcmp(t, "Fuse") == 0) {
		d.type = D_FUSE;
	} else if (strcmp(t, "Replace") == 0) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "content");
		if (!cJSON_IsString(c))
			LERR(L, FL_EFORMAT, "%s.content: want a string", field);
		d.type = D_REPLACE;
		if ((rv = string_pattern(L, o, field, &d.a, &d.alen)) != 0)
			return rv;
		d.blen = strlen(c->valuestring);
		if (!(d.b = dupn(c->valuestring, d.blen))) {
			free(d.a);
			return FL_ENOMEM;
		}
	} else if (strcmp(t, "Strip") == 0) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "content");
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "start");
		const cJSON *sp = cJSON_GetObjectItemCaseSensitive(o, "stop");
		int32_t a, z;
		if (!cJSON_IsString(c) || !*c->valuestring || !jid(st, &a) || !jid(sp, &z) ||
		    a > 64 || z > 64)
			LERR(L, FL_EFORMAT, "%s: want content (a character), start and stop (0-64)",
			     field);
		d.type = D_STRIP;
		d.start = a;
		d.stop = z;
		d.alen = strlen(c->valuestring);
		if (!(d.a = dupn(c->valuestring, d.alen)))
			return FL_ENOMEM;
	} else if (strcmp(t, "Metaspace") == 0) {
		char r[8];
		d.type = D_METASPACE;
		if ((rv = metaspace_fields(L, o, field, r, &d.alen, &d.prepend)) != 0)
			return rv;
		if (!(d.a = dupn(r, d.alen)))
			return FL_ENOMEM;
	} else {
		LERR(L, FL_ENOTSUP, "%s.type \"%s\" is not supported", field, t);
	}
	dec *v = realloc(b->decs, (b->ndec + 1) * sizeof *v);
	if (!v) {
		free(d.a);
		free(d.b);
		return FL_ENOMEM;
	}
	b->decs = v;
	b->decs[b->ndec++] = d;
	return 0;
}

static int32_t any_id(const fl_bpe *b, const char *s)
{
	size_t n = strlen(s);
	for (size_t k = 0; k < b->nadd; k++)
		if (b->add[k].len == n && memcmp(b->add[k].s, s, n) == 0)
			return b->add[k].id;
	return map_get(b, &b->vocab, s, n);
}

/* TemplateProcessing: the special token before $A is the BOS, one after it the EOS. */
static int add_post(fl_bpe *b, ld *L, const cJSON *o, const char *field, int depth)
{
	const char *t = jtype(o);
	int rv;
	char f[128];
	if (!cJSON_IsObject(o) || !t)
		LERR(L, FL_EFORMAT, "%s: want an object with a type", field);
	if (strcmp(t, "Sequence") == 0) {
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "processors"), *e;
		int i = 0;
		if (!cJSON_IsArray(a) || depth > 4)
			LERR(L, FL_EFORMAT, "%s.processors: want an array", field);
		cJSON_ArrayForEach(e, a)
		{
			snprintf(f, sizeof f, "%s.processors[%d]", field, i++);
			if ((rv = add_post(b, L, e, f, depth + 1)) != 0)
				return rv;
		}
		return 0;
	}
	if (strcmp(t, "ByteLevel") == 0)
		return 0;
	if (strcmp(t, "TemplateProcessing") != 0)
		LERR(L, FL_ENOTSUP, "%s.type \"%s\" is not supported", field, t);
	const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single"), *e;
	int seen_a = 0;
	if (!cJSON_IsArray(single))
		LERR(L, FL_EFORMAT, "%s.single: want an array", field);
	cJSON_ArrayForEach(e, single)
	{
		const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
		if (cJSON_GetObjectItemCaseSensitive(e, "Sequence")) {
			seen_a = 1;
			continue;
		}
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(sp, "id");
		if (!cJSON_IsString(id))
			LERR(L, FL_EFORMAT, "%s.single: want SpecialToken {id} or Sequence items",
			     field);
		int32_t v = any_id(b, id->valuestring);
		if (v < 0)
			LERR(L, FL_EFORMAT,
			     "%s.single: special token \"%.64s\" is not in the vocabulary", field,
			     id->valuestring);
		if (!seen_a && b->tpl_bos < 0)
			b->tpl_bos = v;
		else if (seen_a && b->tpl_eos < 0)
			b->tpl_eos = v;
	}
	return 0;
}

static int arena_add(fl_bpe *b, const char *s, size_t n, int64_t *off)
{
	if (b->arena_len + n + 1 > b->arena_cap) {
		size_t cap = b->arena_cap ? b->arena_cap : 1 << 16;
		while (cap < b->arena_len + n + 1)
			cap *= 2;
		char *a = realloc(b->arena, cap);
		if (!a)
			return FL_ENOMEM;
		b->arena = a;
		b->arena_cap = cap;
	}
	memcpy(b->arena + b->arena_len, s, n);
	b->arena[b->arena_len + n] = 0;
	*off = (int64_t)b->arena_len;
	b->arena_len += n + 1;
	return 0;
}

static void byte_map(fl_bpe *b)
{
	int n = 0;
	for (int i = 0; i < 512; i++)
		b->chr_byte[i] = -1;
	for (int c = 0; c < 256; c++) {
		int keep = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE);
		uint32_t cp = keep ? (uint32_t)c : (uint32_t)(256 + n++);
		int l = utf8_put(b->byte_chr[c], cp);
		b->byte_chr[c][l] = 0;
		b->chr_byte[cp] = (int16_t)c;
	}
}

static int load_vocab(fl_bpe *b, ld *L, const cJSON *model, const cJSON *addl)
{
	const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *e;
	int32_t maxid = -1, id;
	size_t nv = 0, i = 0;
	int rv;
	if (!cJSON_IsObject(vocab))
		LERR(L, FL_EFORMAT, "model.vocab: want an object of token: id");
	cJSON_ArrayForEach(e, vocab)
	{
		if (!jid(e, &id))
			LERR(L, FL_EFORMAT,
			     "model.vocab[\"%.64s\"]: id is not an integer in [0, %d)",
			     e->string ? e->string : "", FL_BPE_MAX_ID);
		if (!e->string || !*e->string)
			LERR(L, FL_EFORMAT, "model.vocab: empty token (id %d)", (int)id);
		maxid = id > maxid ? id : maxid;
		nv++;
	}
	if (addl && !cJSON_IsArray(addl))
		LERR(L, FL_EFORMAT, "added_tokens: want an array");
	cJSON_ArrayForEach(e, addl)
	{
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
		if (!jid(cJSON_GetObjectItemCaseSensitive(e, "id"), &id))
			LERR(L, FL_EFORMAT, "added_tokens[%zu].id: not an integer in [0, %d)", i,
			     FL_BPE_MAX_ID);
		if (!cJSON_IsString(c) || !*c->valuestring)
			LERR(L, FL_EFORMAT, "added_tokens[%zu].content: want a non-empty string",
			     i);
		maxid = id > maxid ? id : maxid;
		i++;
	}
	if (maxid < 0)
		LERR(L, FL_EFORMAT, "model.vocab: empty");
	/* tables are indexed by id: a few ids spread over a huge range would
	 * make a small file allocate without bound */
	if ((size_t)maxid > 2 * (nv + i) + 1024)
		LERR(L, FL_EFORMAT,
		     "model.vocab: largest id %d for %zu tokens (ids must be nearly contiguous)",
		     (int)maxid, nv + i);
	b->nid = maxid + 1;
	if (!(b->toff = malloc((size_t)b->nid * sizeof *b->toff)) ||
	    !(b->tlen = calloc((size_t)b->nid, sizeof *b->tlen)) ||
	    !(b->tflag = calloc((size_t)b->nid, 1)))
		return FL_ENOMEM;
	for (int k = 0; k < b->nid; k++)
		b->toff[k] = -1;
	if ((rv = map_init(&b->vocab, nv)) != 0)
		return rv;
	cJSON_ArrayForEach(e, vocab)
	{
		jid(e, &id);
		if (b->toff[id] >= 0)
			LERR(L, FL_EFORMAT,
			     "model.vocab: id %d is given to \"%.64s\" and \"%.64s\"", (int)id,
			     b->arena + b->toff[id], e->string);
		size_t n = strlen(e->string);
		if ((rv = arena_add(b, e->string, n, &b->toff[id])) != 0)
			return rv;
		b->tlen[id] = (uint32_t)n;
		if (map_put(b, &b->vocab, id) >= 0)
			LERR(L, FL_EFORMAT, "model.vocab: token \"%.64s\" appears twice",
			     e->string);
	}
	if (i && !(b->add = calloc(i, sizeof *b->add)))
		return FL_ENOMEM;
	i = 0;
	cJSON_ArrayForEach(e, addl)
	{
		const char *c = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
		size_t n = strlen(c);
		jid(cJSON_GetObjectItemCaseSensitive(e, "id"), &id);
		if (b->toff[id] >= 0) {
			if (b->tlen[id] != n || memcmp(b->arena + b->toff[id], c, n) != 0)
				LERR(L, FL_EFORMAT,
				     "added_tokens[%zu]: id %d is \"%.64s\" but \"%.64s\" in the "
				     "vocabulary",
				     i, (int)id, c, b->arena + b->toff[id]);
		} else if ((rv = arena_add(b, c, n, &b->toff[id])) != 0) {
			return rv;
		}
		for (size_t k = 0; k < b->nadd; k++)
			if (b->add[k].len == n &&
			    memcmp(b->arena + b->toff[b->add[k].id], c, n) == 0)
				LERR(L, FL_EFORMAT, "added_tokens[%zu]: \"%.64s\" appears twice", i,
				     c);
		b->tlen[id] = (uint32_t)n;
		added *a = &b->add[b->nadd++];
		a->id = id;
		a->s = b->arena + b->toff[id]; /* fixed up after the arena stops growing */
		a->len = n;
		a->special = jbool(e, "special", 0);
		a->lstrip = jbool(e, "lstrip", 0);
		a->rstrip = jbool(e, "rstrip", 0);
		a->single_word = jbool(e, "single_word", 0);
		/* the reference's default for a token made without the flag */
		a->normalized = jbool(e, "normalized", !a->special);
		b->tflag[id] = (uint8_t)(1 | (a->special ? 2 : 0));
		i++;
	}
	for (size_t k = 0; k < b->nadd; k++) {
		added *a = &b->add[k];
		a->s = b->arena + b->toff[a->id];
	}
	return 0;
}

/* What each added token is matched as: its content, or for tokens marked
 * normalized the content put through the normalizer (the reference builds its
 * second trie from those). Needs the normalizers loaded. */
static int added_patterns(fl_bpe *b)
{
	work w = {0};
	int rv = 0;
	for (size_t k = 0; k < b->nadd; k++) {
		added *a = &b->add[k];
		if (!a->normalized) {
			a->pat = (char *)a->s;
			a->plen = a->len;
		} else {
			if ((rv = normalize(b, &w, a->s, a->len)) != 0)
				break;
			if (!(a->pat = malloc(w.a.n ? w.a.n : 1))) {
				rv = FL_ENOMEM;
				break;
			}
			if (w.a.n)
				memcpy(a->pat, w.a.p, w.a.n);
			a->plen = w.a.n;
			b->nadd_norm++;
		}
		if (a->plen)
			b->add_first[a->normalized][(unsigned char)a->pat[0]] |=
			    (uint8_t)(1 | (a->special ? 0 : 2));
	}
	work_free(&w);
	return rv;
}

static int load_merges(fl_bpe *b, ld *L, const cJSON *model)
{
	const cJSON *ms = cJSON_GetObjectItemCaseSensitive(model, "merges"), *e;
	size_t n = 0, i = 0;
	char tmp[1024];
	if (!ms)
		ms = NULL;
	else if (!cJSON_IsArray(ms))
		LERR(L, FL_EFORMAT, "model.merges: want an array");
	n = ms ? (size_t)cJSON_GetArraySize(ms) : 0;
	size_t c = pow2_at_least(2 * n + 1);
	if (!(b->merges.key = malloc(c * sizeof *b->merges.key)) ||
	    !(b->merges.rank = malloc(c * sizeof *b->merges.rank)) ||
	    !(b->merges.nid = malloc(c * sizeof *b->merges.nid)))
		return FL_ENOMEM;
	memset(b->merges.key, 0xff, c * sizeof *b->merges.key);
	b->merges.mask = c - 1;
	cJSON_ArrayForEach(e, ms)
	{
		const char *l, *r;
		size_t ll, rl;
		if (cJSON_IsString(e)) {
			l = e->valuestring;
			const char *sp = strchr(l, ' ');
			if (!sp || strchr(sp + 1, ' ') || sp == l || !sp[1])
				LERR(L, FL_EFORMAT,
				     "model.merges[%zu]: want \"left right\", got \"%.64s\"", i, l);
			ll = (size_t)(sp - l);
			r = sp + 1;
			rl = strlen(r);
		} else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
		           cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
		           cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
			l = cJSON_GetArrayItem(e, 0)->valuestring;
			r = cJSON_GetArrayItem(e, 1)->valuestring;
			ll = strlen(l);
			rl = strlen(r);
		} else {
			LERR(L, FL_EFORMAT,
			     "model.merges[%zu]: want \"left right\" or [left, right]", i);
		}
		int32_t a = map_get(b, &b->vocab, l, ll), z = map_get(b, &b->vocab, r, rl), m;
		if (a < 0 || z < 0)
			LERR(L, FL_EFORMAT,
			     "model.merges[%zu]: token \"%.*s\" is not in model.vocab", i,
			     (int)(a < 0 ? (ll > 64 ? 64 : ll) : (rl > 64 ? 64 : rl)),
			     a < 0 ? l : r);
		if (ll + rl > sizeof tmp)
			LERR(L, FL_EFORMAT, "model.merges[%zu]: merged token longer than %zu bytes",
			     i, sizeof tmp);
		memcpy(tmp, l, ll);
		memcpy(tmp + ll, r, rl);
		if ((m = map_get(b, &b->vocab, tmp, ll + rl)) < 0)
			LERR(L, FL_EFORMAT,
			     "model.merges[%zu]: merged token \"%.*s\" is not in model.vocab", i,
			     (int)(ll + rl > 64 ? 64 : ll + rl), tmp);
		merge_put(&b->merges, a, z, (int32_t)i, m);
		i++;
	}
	return 0;
}

/* bos_token / eos_token / pad_token of tokenizer_config.json: a string, null
 * or {"content": ...}. 1 with the id when named, 0 when absent, <0 on error. */
static int cfg_token(const fl_bpe *b, ld *L, const cJSON *cfg, const char *k, int32_t *id)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, k);
	if (!v)
		return 0;
	if (cJSON_IsNull(v)) {
		*id = -1;
		return 1;
	}
	if (cJSON_IsObject(v))
		v = cJSON_GetObjectItemCaseSensitive(v, "content");
	if (!cJSON_IsString(v))
		LERR(L, FL_EFORMAT, "%s: want a string, null or {\"content\": ...}", k);
	if ((*id = any_id(b, v->valuestring)) < 0)
		LERR(L, FL_EFORMAT, "%s \"%.64s\" is not in the vocabulary", k, v->valuestring);
	return 1;
}

static int parse_json(ld *L, const char *s, size_t n, cJSON **out)
{
	const char *end = NULL;
	if (n > FL_BPE_MAX_FILE)
		LERR(L, FL_ETOOBIG, "larger than %zu MiB", FL_BPE_MAX_FILE >> 20);
	*out = cJSON_ParseWithLengthOpts(s, n, &end, 0);
	if (!*out) {
		size_t at = end && end >= s && end <= s + n ? (size_t)(end - s) : 0;
		LERR(L, FL_EFORMAT, "not valid JSON (%s near byte %zu)",
		     at >= n ? "ends early" : "syntax error", at);
	}
	if (!cJSON_IsObject(*out)) {
		cJSON_Delete(*out);
		*out = NULL;
		LERR(L, FL_EFORMAT, "want a JSON object");
	}
	return 0;
}

static int load(fl_bpe *b, ld *L, const cJSON *root)
{
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model"), *v;
	int rv;
	const char *t = jtype(model);
	if (!cJSON_IsObject(model))
		LERR(L, FL_EFORMAT, "model: missing");
	if (!t)
		LERR(L, FL_EFORMAT, "model.type: missing");
	if (strcmp(t, "BPE") != 0)
		LERR(L, FL_ENOTSUP, "model.type \"%s\" is not supported (BPE only)", t);
	v = cJSON_GetObjectItemCaseSensitive(model, "dropout");
	if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
		LERR(L, FL_ENOTSUP, "model.dropout is not supported");
	const char *nope[] = {"continuing_subword_prefix", "end_of_word_suffix"};
	for (int i = 0; i < 2; i++) {
		v = cJSON_GetObjectItemCaseSensitive(model, nope[i]);
		if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !*v->valuestring))
			LERR(L, FL_ENOTSUP, "model.%s is not supported", nope[i]);
	}
	if ((rv = load_vocab(b, L, model,
	                     cJSON_GetObjectItemCaseSensitive(root, "added_tokens"))) != 0)
		return rv;
	if ((rv = load_merges(b, L, model)) != 0)
		return rv;
	b->byte_fallback = jbool(model, "byte_fallback", 0);
	b->fuse_unk = jbool(model, "fuse_unk", 0);
	b->ignore_merges = jbool(model, "ignore_merges", 0);
	b->unk = -1;
	v = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
	if (cJSON_IsString(v)) {
		if ((b->unk = map_get(b, &b->vocab, v->valuestring, strlen(v->valuestring))) < 0)
			LERR(L, FL_EFORMAT, "model.unk_token \"%.64s\" is not in model.vocab",
			     v->valuestring);
	} else if (v && !cJSON_IsNull(v)) {
		LERR(L, FL_EFORMAT, "model.unk_token: want a string or null");
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "normalizer")) && !cJSON_IsNull(v) &&
	    (rv = add_norm(b, L, v, "normalizer", 0)) != 0)
		return rv;
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")) && !cJSON_IsNull(v) &&
	    (rv = add_pretok(b, L, v, "pre_tokenizer", 0)) != 0)
		return rv;
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "decoder")) && !cJSON_IsNull(v)) {
		b->has_decoder = 1;
		if ((rv = add_dec(b, L, v, "decoder", 0)) != 0)
			return rv;
	}
	b->tpl_bos = b->tpl_eos = -1;
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "post_processor")) && !cJSON_IsNull(v) &&
	    (rv = add_post(b, L, v, "post_processor", 0)) != 0)
		return rv;
	if ((rv = added_patterns(b)) != 0)
		return rv;
	b->kind =
	    b->npt && b->pts[b->npt - 1].type == PT_BYTELEVEL ? FL_TOK_BPE_BYTE : FL_TOK_BPE_SP;
	byte_map(b);
	for (int c = 0; c < 256; c++) {
		if (b->kind == FL_TOK_BPE_BYTE) {
			b->byte_id[c] =
			    map_get(b, &b->vocab, b->byte_chr[c], strlen(b->byte_chr[c]));
		} else {
			char name[8];
			snprintf(name, sizeof name, "<0x%02X>", c);
			b->byte_id[c] = map_get(b, &b->vocab, name, 6);
		}
	}
	return 0;
}

int fl_bpe_load(const char *path, const char *json, size_t n, const char *cfg_path, const char *cfg,
                size_t cfg_n, fl_bpe **out, char *err, size_t errlen)
{
	ld L = {path, err, errlen};
	cJSON *root = NULL, *croot = NULL;
	fl_bpe *b;
	int rv;
	*out = NULL;
	if (!(b = calloc(1, sizeof *b)))
		return FL_ENOMEM;
	if ((rv = parse_json(&L, json, n, &root)) != 0)
		goto fail;
	if ((rv = load(b, &L, root)) != 0)
		goto fail;
	b->bos = b->tpl_bos;
	b->eos = b->tpl_eos;
	b->pad = -1;
	if (cfg) {
		ld C = {cfg_path, err, errlen};
		int r;
		if ((rv = parse_json(&C, cfg, cfg_n, &croot)) != 0)
			goto fail;
		if ((r = cfg_token(b, &C, croot, "bos_token", &b->bos)) < 0 ||
		    (r = cfg_token(b, &C, croot, "eos_token", &b->eos)) < 0 ||
		    (r = cfg_token(b, &C, croot, "pad_token", &b->pad)) < 0) {
			rv = r;
			goto fail;
		}
	}
	cJSON_Delete(root);
	cJSON_Delete(croot);
	*out = b;
	return 0;
fail:
	if (rv == FL_ENOMEM)
		fl_seterr(err, errlen, "%s: out of memory", path);
	cJSON_Delete(root);
	cJSON_Delete(croot);
	fl_bpe_free(b);
	return rv;
}

void fl_bpe_free(fl_bpe *b)
{
	if (!b)
		return;
	free(b->arena);
	free(b->toff);
	free(b->tlen);
	free(b->tflag);
	free(b->vocab.slot);
	free(b->merges.key);
	free(b->merges.rank);
	free(b->merges.nid);
	for (size_t k = 0; k < b->nadd; k++)
		if (b->add[k].normalized)
			free(b->add[k].pat);
	free(b->add);
	for (size_t i = 0; i < b->nnorm; i++) {
		free(b->norms[i].a);
		free(b->norms[i].b);
	}
	free(b->norms);
	for (size_t i = 0; i < b->npt; i++)
		if (b->pts[i].re)
			pcre2_code_free(b->pts[i].re);
	free(b->pts);
	for (size_t i = 0; i < b->ndec; i++) {
		free(b->decs[i].a);
		free(b->decs[i].b);
	}
	free(b->decs);
	free(b);
}

fl_tok_kind fl_bpe_kind(const fl_bpe *b)
{
	return b->kind;
}

int fl_bpe_vocab(const fl_bpe *b)
{
	return b->nid;
}

int32_t fl_bpe_bos(const fl_bpe *b)
{
	return b->bos;
}

int32_t fl_bpe_eos(const fl_bpe *b)
{
	return b->eos;
}

int32_t fl_bpe_pad(const fl_bpe *b)
{
	return b->pad;
}

int32_t fl_bpe_token_id(const fl_bpe *b, const char *token)
{
	return any_id(b, token);
}

const char *fl_bpe_token_text(const fl_bpe *b, int32_t id)
{
	if (id < 0 || id >= b->nid || b->toff[id] < 0)
		return NULL;
	return b->arena + b->toff[id];
}
