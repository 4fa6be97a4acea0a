/*
 * client/data.c — text loading, packing and the held-out split; see
 * client/data.h for the formats and the split rule.
 *
 * Implementation: every file is read whole (bounded by max_bytes), cut into
 * documents, and each document's tokens are appended to the train or the
 * eval token stream; at the end both streams are cut into rows of T+1 tokens
 * and copied into one allocation. Not streaming: inputs are expected to fit
 * in memory several times over (a fortunes language is a few MB).
 */
#include "client/data.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "model/tokenizer.h"
#include "tokenizer/chat.h"

void client_data_opts_default(client_data_opts *o)
{
	memset(o, 0, sizeof *o);
	o->seq_len = 64;
	o->eval_mod = CLIENT_DATA_EVAL_MOD;
	o->max_bytes = CLIENT_DATA_MAX_BYTES;
}

/* A growable int32 stream. */
typedef struct tokbuf {
	int32_t *v;
	size_t n, cap;
} tokbuf;

static int tokbuf_reserve(tokbuf *b, size_t extra)
{
	size_t need = b->n + extra, cap = b->cap ? b->cap : 4096;
	int32_t *nv;
	if (need < b->n)
		return FL_ENOMEM;
	if (need <= b->cap)
		return 0;
	while (cap < need) {
		if (cap > SIZE_MAX / 2 / sizeof(int32_t))
			return FL_ENOMEM;
		cap *= 2;
	}
	nv = realloc(b->v, cap * sizeof(int32_t));
	if (!nv)
		return FL_ENOMEM;
	b->v = nv;
	b->cap = cap;
	return 0;
}

/* Supervised rows (T+1 tokens each) and their loss masks. */
typedef struct rowbuf {
	tokbuf t;
	uint8_t *m; /* t.cap bytes */
} rowbuf;

/* State shared by every file of one load. */
typedef struct loader {
	tokbuf train, eval;   /* eval unused (all in train) until the split is known */
	rowbuf strain, seval; /* chat and prompt/completion rows */
	const client_data_opts *o;
	const fl_tokenizer *tok;  /* NULL: model/tokenizer.h byte path for text */
	const fl_tokenizer *stok; /* tokenizer of chat and prompt/completion samples */
	client_data_stats st;
	int eval_mod;
	size_t max_bytes;
	/* files already read, by identity, so links are read once */
	struct fid {
		dev_t dev;
		ino_t ino;
	} * seen;
	int nseen, capseen;
	char *err;
	size_t errlen;
} loader;

/* FNV-1a over the bytes, finished with a splitmix64 step so that the low
 * bits used by the modulus are well mixed. */
static uint64_t doc_hash(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	h += 0x9e3779b97f4a7c15ull;
	h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
	h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
	return h ^ (h >> 31);
}

static int utf8_valid(const unsigned char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = p[i];
		int k;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (n - i <= (size_t)k)
			return 0;
		for (int j = 1; j <= k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i + j] & 0x3f);
		}
		if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return 0;
		i += k + 1;
	}
	return 1;
}

/* Appends one document (n bytes) to the split its hash selects. Empty
 * documents are dropped. */
static int add_doc(loader *L, const char *text, size_t n)
{
	tokbuf *b;
	int rv;
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		n--;
	if (n == 0)
		return 0;
	if (doc_hash((const unsigned char *)text, n) % (uint64_t)L->eval_mod == 0) {
		b = &L->eval;
		L->st.eval_docs++;
	} else {
		b = &L->train;
	}
	if (L->tok) {
		fl_tok_ids ids = {.v = b->v, .n = b->n, .cap = b->cap};
		char e[256];
		rv = fl_tok_encode(L->tok, text, n, FL_TOK_ADD_BOS | FL_TOK_ADD_EOS, &ids, e,
		                   sizeof e);
		b->v = ids.v;
		b->n = ids.n;
		b->cap = ids.cap;
		if (rv) {
			fl_seterr(L->err, L->errlen, "tokenizer: %s", e);
			return rv;
		}
	} else {
		if ((rv = tokbuf_reserve(b, model_tok_doc_len(n))) != 0)
			return rv;
		model_tok_encode_doc(text, n, b->v + b->n);
		b->n += model_tok_doc_len(n);
	}
	L->st.docs++;
	L->st.bytes += n;
	if (!utf8_valid((const unsigned char *)text, n))
		L->st.non_utf8_docs++;
	return 0;
}

/* Length of the line starting at p (without its '\n'), and of a trailing '\r'
 * stripped in *content. */
static size_t line_len(const char *p, const char *end, size_t *content)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
	size_t c = len;
	if (c > 0 && p[c - 1] == '\r')
		c--;
	*content = c;
	return len;
}

static int is_fortune(const char *buf, size_t n)
{
	const char *p = buf, *end = buf + n;
	while (p < end) {
		size_t c, len = line_len(p, end, &c);
		if (c == 1 && p[0] == '%')
			return 1;
		p += len + 1;
	}
	return 0;
}

/* Fortune records (between lines "%") or, with fortune = 0, paragraphs
 * (between blank lines). */
static int split_records(loader *L, const char *buf, size_t n, int fortune)
{
	const char *p = buf, *end = buf + n, *start = buf;
	int rv;
	while (p < end) {
		size_t c, len = line_len(p, end, &c);
		int sep;
		if (fortune) {
			sep = c == 1 && p[0] == '%';
		} else {
			sep = 1;
			for (size_t i = 0; i < c; i++)
				if (p[i] != ' ' && p[i] != '\t') {
					sep = 0;
					break;
				}
		}
		if (sep) {
			if ((rv = add_doc(L, start, (size_t)(p - start))) != 0)
				return rv;
			start = p + len + 1 < end ? p + len + 1 : end;
		}
		p += len + 1;
	}
	if (start < end)
		return add_doc(L, start, (size_t)(end - start));
	return 0;
}

/* Appends ids/mask (n tokens) as one padded row to the split the hash of
 * the line (key, klen bytes) selects. */
static int add_sample(loader *L, const int32_t *ids, const uint8_t *mask, size_t n, const char *key,
                      size_t klen)
{
	size_t row = (size_t)L->o->seq_len + 1, k = n < row ? n : row;
	int loss = 0, rv;
	for (size_t i = 1; i < k; i++)
		loss |= mask[i];
	if (!loss) {
		L->st.no_loss++;
		return 0;
	}
	rowbuf *b = doc_hash((const unsigned char *)key, klen) % (uint64_t)L->eval_mod == 0
	                ? &L->seval
	                : &L->strain;
	size_t cap0 = b->t.cap;
	if ((rv = tokbuf_reserve(&b->t, row)) != 0)
		return rv;
	if (b->t.cap != cap0 || !b->m) {
		uint8_t *nm = realloc(b->m, b->t.cap);
		if (!nm)
			return FL_ENOMEM;
		b->m = nm;
	}
	int32_t pad = fl_tok_pad(L->stok) >= 0 ? fl_tok_pad(L->stok) : fl_tok_eos(L->stok);
	for (size_t i = 0; i < row; i++) {
		b->t.v[b->t.n + i] = i < k ? ids[i] : (pad >= 0 ? pad : 0);
		b->m[b->t.n + i] = i < k ? mask[i] : 0;
	}
	b->t.n += row;
	L->st.samples++;
	L->st.truncated += n > row;
	return 0;
}

/* Tokenizes text with a per-byte mask into ids with a per-token mask: each
 * run of bytes with one mask value is encoded on its own (special tokens
 * recognised), so a token never straddles an assistant boundary. */
static int encode_masked(loader *L, const char *text, const uint8_t *bm, size_t n, fl_tok_ids *ids,
                         uint8_t **tm, size_t *tcap, char *e, size_t elen)
{
	int rv;
	for (size_t a = 0; a < n;) {
		size_t b = a, n0 = ids->n;
		while (b < n && bm[b] == bm[a])
			b++;
		if ((rv = fl_tok_encode(L->stok, text + a, b - a, FL_TOK_SPECIAL, ids, e, elen)) !=
		    0)
			return rv;
		if (ids->n > *tcap) {
			size_t nc = ids->cap;
			uint8_t *nm = realloc(*tm, nc);
			if (!nm)
				return FL_ENOMEM;
			*tm = nm;
			*tcap = nc;
		}
		memset(*tm + n0, bm[a], ids->n - n0);
		a = b;
	}
	return 0;
}

static const char *json_str(const cJSON *o, const char *key)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* One "messages" or "prompt"/"completion" line (j); errors name path:line. */
static int add_supervised(loader *L, const cJSON *j, const char *path, long line, const char *p,
                          size_t c)
{
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages"), *m;
	fl_tok_ids ids = {0};
	uint8_t *tm = NULL;
	size_t tcap = 0;
	fl_chat_out out = {0};
	char e[512];
	int rv = 0, k = 0;
	if (msgs) {
		if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
			fl_seterr(L->err, L->errlen, "%s:%ld: \"messages\" is not a non-empty list",
			          path, line);
			return FL_EFORMAT;
		}
		cJSON_ArrayForEach(m, msgs)
		{
			if (!cJSON_IsObject(m) || !json_str(m, "role") || !json_str(m, "content")) {
				fl_seterr(L->err, L->errlen,
				          "%s:%ld: messages[%d] is not an object with string "
				          "\"role\" and "
				          "\"content\" fields",
				          path, line, k);
				return FL_EFORMAT;
			}
			k++;
		}
		if (!L->o->chat_template) {
			fl_seterr(
			    L->err, L->errlen,
			    "%s:%ld: chat data (\"messages\") needs the model's chat template, and "
			    "the model has none (no chat_template in tokenizer_config.json)",
			    path, line);
			return FL_ENOTSUP;
		}
		if ((rv = fl_chat_render(L->o->chat_template, msgs, L->o->bos_text, L->o->eos_text,
		                         0, &out, e, sizeof e)) != 0) {
			fl_seterr(L->err, L->errlen, "%s:%ld: %s", path, line, e);
			return rv;
		}
		rv = encode_masked(L, out.text, out.mask, out.n, &ids, &tm, &tcap, e, sizeof e);
	} else {
		const char *pr = json_str(j, "prompt"), *co = json_str(j, "completion");
		if (!pr || !co) {
			fl_seterr(L->err, L->errlen,
			          "%s:%ld: a prompt/completion line needs string \"prompt\" and "
			          "\"completion\" fields (%s is %s)",
			          path, line, pr ? "completion" : "prompt",
			          cJSON_GetObjectItemCaseSensitive(j, pr ? "completion" : "prompt")
			              ? "not a string"
			              : "missing");
			return FL_EFORMAT;
		}
		size_t lp = strlen(pr), lc = strlen(co), nb = lp + lc;
		uint8_t *bm = malloc(nb ? nb : 1);
		char *txt = malloc(nb ? nb : 1);
		int32_t bos = fl_tok_bos(L->stok), eos = fl_tok_eos(L->stok);
		if (!bm || !txt) {
			free(bm);
			free(txt);
			return FL_ENOMEM;
		}
		memcpy(txt, pr, lp);
		memcpy(txt + lp, co, lc);
		memset(bm, 0, lp);
		memset(bm + lp, 1, lc);
		/* BOS (no loss), prompt (no loss), completion, EOS (loss) */
		if (bos >= 0 && (rv = fl_tok_ids_push(&ids, bos)) == 0 &&
		    !(tm = calloc(1, ids.cap)))
			rv = FL_ENOMEM;
		tcap = tm ? ids.cap : 0;
		if (!rv)
			rv = encode_masked(L, txt, bm, nb, &ids, &tm, &tcap, e, sizeof e);
		if (!rv && eos >= 0 && (rv = fl_tok_ids_push(&ids, eos)) == 0) {
			uint8_t *nm = ids.n > tcap ? realloc(tm, ids.cap) : tm;
			if (!nm) {
				rv = FL_ENOMEM;
			} else {
				tm = nm;
				tcap = ids.cap > tcap ? ids.cap : tcap;
				tm[ids.n - 1] = 1;
			}
		}
		free(bm);
		free(txt);
	}
	if (rv && rv != FL_ENOMEM)
		fl_seterr(L->err, L->errlen, "%s:%ld: tokenizer: %s", path, line, e);
	if (!rv)
		rv = add_sample(L, ids.v, tm, ids.n, p, c);
	fl_chat_out_free(&out);
	fl_tok_ids_free(&ids);
	free(tm);
	return rv;
}

static int split_jsonl(loader *L, const char *path, const char *buf, size_t n)
{
	long line = 0;
	const char *p = buf, *end = buf + n;
	int rv;
	while (p < end) {
		size_t c, len = line_len(p, end, &c);
		int blank = 1;
		line++;
		for (size_t i = 0; i < c; i++)
			if (p[i] != ' ' && p[i] != '\t') {
				blank = 0;
				break;
			}
		if (!blank) {
			cJSON *j = cJSON_ParseWithLength(p, c);
			cJSON *t = j ? cJSON_GetObjectItemCaseSensitive(j, "text") : NULL;
			if (cJSON_IsObject(j) &&
			    (cJSON_GetObjectItemCaseSensitive(j, "messages") ||
			     cJSON_GetObjectItemCaseSensitive(j, "prompt") ||
			     cJSON_GetObjectItemCaseSensitive(j, "completion"))) {
				rv = add_supervised(L, j, path, line, p, c);
				cJSON_Delete(j);
				if (rv)
					return rv;
			} else if (cJSON_IsString(t) && t->valuestring) {
				rv = add_doc(L, t->valuestring, strlen(t->valuestring));
				cJSON_Delete(j);
				if (rv)
					return rv;
			} else {
				L->st.bad_lines++;
				cJSON_Delete(j);
			}
		}
		p += len + 1;
	}
	return 0;
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

/* Reads one regular file. in_folder: empty/binary files are skipped (counted)
 * rather than errors. */
static int load_file(loader *L, const char *path, const struct stat *sb, int in_folder)
{
	FILE *f = NULL;
	char *buf = NULL;
	size_t n = (size_t)sb->st_size, got;
	int rv = 0;

	for (int i = 0; i < L->nseen; i++)
		if (L->seen[i].dev == sb->st_dev && L->seen[i].ino == sb->st_ino)
			return 0;
	if (L->nseen == L->capseen) {
		int cap = L->capseen ? 2 * L->capseen : 64;
		void *ns;
		if (cap > CLIENT_DATA_MAX_FILES) {
			fl_seterr(L->err, L->errlen, "%s: more than %d input files", path,
			          CLIENT_DATA_MAX_FILES);
			return FL_ETOOBIG;
		}
		ns = realloc(L->seen, (size_t)cap * sizeof *L->seen);
		if (!ns)
			return FL_ENOMEM;
		L->seen = ns;
		L->capseen = cap;
	}
	L->seen[L->nseen].dev = sb->st_dev;
	L->seen[L->nseen].ino = sb->st_ino;
	L->nseen++;

	if (n > L->max_bytes || L->st.bytes + n > L->max_bytes) {
		fl_seterr(L->err, L->errlen, "%s: input over the limit of %zu bytes", path,
		          L->max_bytes);
		return FL_ETOOBIG;
	}
	if (n == 0) {
		if (in_folder) {
			L->st.skipped_files++;
			return 0;
		}
		fl_seterr(L->err, L->errlen, "%s: file is empty", path);
		return FL_EFORMAT;
	}
	f = fopen(path, "rb");
	if (!f) {
		fl_seterr(L->err, L->errlen, "%s: cannot open: %s", path, strerror(errno));
		return errno == ENOENT ? FL_ENOENT : FL_EIO;
	}
	buf = malloc(n);
	if (!buf) {
		rv = FL_ENOMEM;
		goto done;
	}
	got = fread(buf, 1, n, f);
	if (ferror(f) || got == 0) {
		fl_seterr(L->err, L->errlen, "%s: read error: %s", path,
		          ferror(f) ? strerror(errno) : "no data");
		rv = FL_EIO;
		goto done;
	}
	n = got; /* the file may have shrunk since stat */
	if (memchr(buf, 0, n)) {
		if (in_folder) {
			L->st.skipped_files++;
			goto done;
		}
		fl_seterr(L->err, L->errlen, "%s: binary file (contains NUL bytes), not text",
		          path);
		rv = FL_EFORMAT;
		goto done;
	}
	L->st.files++;
	if (ends_with(path, ".jsonl"))
		rv = split_jsonl(L, path, buf, n);
	else
		rv = split_records(L, buf, n, is_fortune(buf, n));
done:
	free(buf);
	fclose(f);
	return rv;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_folder(loader *L, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL, *path = NULL;
	int n = 0, cap = 0, rv = 0;

	if (!d) {
		fl_seterr(L->err, L->errlen, "%s: cannot open folder: %s", dir, strerror(errno));
		return FL_EIO;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || ends_with(e->d_name, ".dat"))
			continue;
		if (n == cap) {
			int nc = cap ? 2 * cap : 64;
			void *nn;
			if (nc > 2 * CLIENT_DATA_MAX_FILES) {
				fl_seterr(L->err, L->errlen, "%s: too many entries", dir);
				rv = FL_ETOOBIG;
				goto done;
			}
			nn = realloc(names, (size_t)nc * sizeof *names);
			if (!nn) {
				rv = FL_ENOMEM;
				goto done;
			}
			names = nn;
			cap = nc;
		}
		if (!(names[n] = strdup(e->d_name))) {
			rv = FL_ENOMEM;
			goto done;
		}
		n++;
	}
	if (n > 1)
		qsort(names, (size_t)n, sizeof *names, cmp_str);
	path = malloc(strlen(dir) + 2 + 256 + 1);
	if (!path) {
		rv = FL_ENOMEM;
		goto done;
	}
	for (int i = 0; i < n && rv == 0; i++) {
		struct stat sb;
		sprintf(path, "%s/%s", dir, names[i]);
		if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
			continue; /* subfolders, dangling links, devices */
		rv = load_file(L, path, &sb, 1);
	}
done:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(path);
	closedir(d);
	return rv;
}

static int load_path(loader *L, const char *path)
{
	struct stat sb;
	if (stat(path, &sb) != 0) {
		fl_seterr(L->err, L->errlen, "%s: %s", path, strerror(errno));
		return errno == ENOENT ? FL_ENOENT : FL_EIO;
	}
	if (S_ISDIR(sb.st_mode))
		return load_folder(L, path);
	if (!S_ISREG(sb.st_mode)) {
		fl_seterr(L->err, L->errlen, "%s: not a regular file or folder", path);
		return FL_EIO;
	}
	return load_file(L, path, &sb, 0);
}

int client_data_load(client_data **out, const char *paths, const client_data_opts *o, char *err,
                     size_t errlen)
{
	loader L;
	client_data *d = NULL;
	char *list = NULL, *save = NULL, *tok;
	size_t row, ntr, nev, nsup_tr, nsup_ev, sup_held = 0, all;
	fl_tokenizer *own = NULL;
	int rv = 0, T;

	*out = NULL;
	memset(&L, 0, sizeof L);
	L.err = err;
	L.errlen = errlen;
	fl_seterr(err, errlen, "ok");
	if (!paths || !o || o->seq_len < 1 || o->seq_len > (1 << 20) || o->eval_mod < 2 ||
	    o->max_bytes == 0) {
		fl_seterr(err, errlen, "invalid data options (seq_len %d, eval_mod %d)",
		          o ? o->seq_len : 0, o ? o->eval_mod : 0);
		return FL_EINVAL;
	}
	T = o->seq_len;
	row = (size_t)T + 1;
	L.eval_mod = o->eval_mod;
	L.max_bytes = o->max_bytes;
	L.o = o;
	L.tok = o->tok && fl_tok_get_kind(o->tok) != FL_TOK_BYTES ? o->tok : NULL;
	if (!(L.stok = o->tok) && (rv = fl_tok_load(NULL, &own, err, errlen)) != 0)
		return rv;
	if (!L.stok)
		L.stok = own;
	if (!(list = strdup(paths)))
		return FL_ENOMEM;
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!*tok)
			continue;
		if ((rv = load_path(&L, tok)) != 0)
			goto fail;
	}
	if (L.st.files == 0 && L.st.skipped_files == 0) {
		/* an empty list, or only empty folders */
		fl_seterr(err, errlen, "'%s': no input files", paths);
		rv = paths[strspn(paths, ",")] ? FL_EFORMAT : FL_EINVAL;
		goto fail;
	}
	nsup_tr = L.strain.t.n / row;
	nsup_ev = L.seval.t.n / row;
	if (L.st.docs == 0 && nsup_tr + nsup_ev == 0) {
		fl_seterr(err, errlen,
		          "'%s': no documents (%d files read, %d empty or binary skipped, %ld bad "
		          "JSONL lines, %ld samples without a loss token)",
		          paths, L.st.files, L.st.skipped_files, L.st.bad_lines, L.st.no_loss);
		rv = FL_EFORMAT;
		goto fail;
	}
	L.st.tokens = L.train.n + L.eval.n;
	ntr = L.train.n / row;
	nev = L.eval.n / row;
	if (L.st.docs > 0 && (ntr == 0 || nev == 0)) {
		/* Too small for a document split: one stream, every eval_mod-th row
		 * held out (the last row of each group of eval_mod). */
		size_t tot;
		if ((rv = tokbuf_reserve(&L.train, L.eval.n)) != 0)
			goto fail;
		if (L.eval.n)
			memcpy(L.train.v + L.train.n, L.eval.v, L.eval.n * sizeof(int32_t));
		L.train.n += L.eval.n;
		tot = L.train.n / row;
		if (tot < 2 && nsup_tr + nsup_ev == 0) {
			fl_seterr(err, errlen,
			          "'%s': too little data: %zu tokens, need at least %zu for one "
			          "training and one held-out sequence of length %d",
			          paths, L.train.n, 2 * row, T);
			rv = FL_EFORMAT;
			goto fail;
		}
		L.st.split = 1;
		L.st.eval_docs = 0;
		nev = tot < 2 ? 0 : tot / (size_t)o->eval_mod;
		if (nev == 0 && tot >= 2)
			nev = 1;
		ntr = tot - nev;
	}
	if (nsup_ev == 0 && nsup_tr > 0) {
		/* no sample hashed to eval: hold out every eval_mod-th row */
		sup_held = nsup_tr / (size_t)o->eval_mod;
		if (sup_held == 0 && nsup_tr >= 2)
			sup_held = 1;
	}
	if (ntr + nsup_tr - sup_held == 0 || nev + nsup_ev + sup_held == 0) {
		fl_seterr(err, errlen,
		          "'%s': too little data for one training and one held-out sequence "
		          "(%zu text sequences, %zu samples)",
		          paths, ntr + nev, nsup_tr + nsup_ev);
		rv = FL_EFORMAT;
		goto fail;
	}
	d = calloc(1, sizeof *d);
	if (!d) {
		rv = FL_ENOMEM;
		goto fail;
	}
	d->T = T;
	all = ntr + nev + nsup_tr + nsup_ev;
	d->train = malloc(all * row * sizeof(int32_t));
	if (!d->train) {
		rv = FL_ENOMEM;
		goto fail;
	}
	d->eval = d->train + (ntr + nsup_tr - sup_held) * row;
	d->n_train = (long)(ntr + nsup_tr - sup_held);
	d->n_eval = (long)(nev + nsup_ev + sup_held);
	if (nsup_tr + nsup_ev) {
		if (!(d->train_mask = malloc(all * row))) {
			rv = FL_ENOMEM;
			goto fail;
		}
		d->eval_mask = d->train_mask + (size_t)d->n_train * row;
		memset(d->train_mask, 1, ntr * row);
		memset(d->eval_mask, 1, nev * row);
	}
	if (L.st.split == 0) {
		if (ntr)
			memcpy(d->train, L.train.v, ntr * row * sizeof(int32_t));
		if (nev)
			memcpy(d->eval, L.eval.v, nev * row * sizeof(int32_t));
	} else {
		size_t tot = ntr + nev, it = 0, ie = 0;
		for (size_t i = 0; i < tot; i++) {
			/* row i is held out when it closes a group of eval_mod rows, or
			 * when it is the last row and no row was held out yet */
			int held = ((i + 1) % (size_t)o->eval_mod == 0 && ie < nev) ||
			           (i + 1 == tot && ie < nev);
			int32_t *dst = held ? d->eval + ie++ * row : d->train + it++ * row;
			memcpy(dst, L.train.v + i * row, row * sizeof(int32_t));
		}
	}
	for (size_t i = 0, it = ntr, ie = nev, h = 0; i < nsup_tr; i++) {
		int held = h < sup_held && ((i + 1) % (size_t)o->eval_mod == 0 || i + 1 == nsup_tr);
		size_t r = held ? ie++ : it++;
		h += held;
		memcpy((held ? d->eval : d->train) + r * row, L.strain.t.v + i * row,
		       row * sizeof(int32_t));
		memcpy((held ? d->eval_mask : d->train_mask) + r * row, L.strain.m + i * row, row);
	}
	if (nsup_ev) {
		memcpy(d->eval + (nev + sup_held) * row, L.seval.t.v,
		       nsup_ev * row * sizeof(int32_t));
		memcpy(d->eval_mask + (nev + sup_held) * row, L.seval.m, nsup_ev * row);
	}
	d->st = L.st;
	*out = d;
	free(L.train.v);
	free(L.eval.v);
	free(L.strain.t.v);
	free(L.strain.m);
	free(L.seval.t.v);
	free(L.seval.m);
	fl_tok_free(own);
	free(L.seen);
	free(list);
	return 0;
fail:
	client_data_free(d);
	free(L.train.v);
	free(L.eval.v);
	free(L.strain.t.v);
	free(L.strain.m);
	free(L.seval.t.v);
	free(L.seval.m);
	fl_tok_free(own);
	free(L.seen);
	free(list);
	return rv;
}

void client_data_free(client_data *d)
{
	if (!d)
		return;
	free(d->train);
	free(d->train_mask);
	free(d);
}

int client_data_read_tokens(const char *path, int vocab, size_t max_tokens, int32_t **ids,
                            size_t *n, char *err, size_t errlen)
{
	FILE *f;
	unsigned char *buf = NULL;
	int32_t *v = NULL;
	long sz;
	size_t len, k = 0;
	int text = 1, rv = 0;

	*ids = NULL;
	*n = 0;
	f = fopen(path, "rb");
	if (!f) {
		fl_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return errno == ENOENT ? FL_ENOENT : FL_EIO;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fl_seterr(err, errlen, "%s: cannot determine size", path);
		fclose(f);
		return FL_EIO;
	}
	len = (size_t)sz;
	if (len == 0) {
		fl_seterr(err, errlen, "%s: empty token file", path);
		fclose(f);
		return FL_EFORMAT;
	}
	if (len > max_tokens * 12 + 64) {
		fl_seterr(err, errlen, "%s: token file too large (limit %zu tokens)", path,
		          max_tokens);
		fclose(f);
		return FL_ETOOBIG;
	}
	buf = malloc(len + 1);
	if (!buf || fread(buf, 1, len, f) != len) {
		rv = buf ? FL_EIO : FL_ENOMEM;
		fl_seterr(err, errlen, "%s: read error", path);
		goto done;
	}
	fclose(f);
	f = NULL;
	buf[len] = 0;
	for (size_t i = 0; i < len; i++)
		if (!(buf[i] == '-' || (buf[i] >= '0' && buf[i] <= '9') || buf[i] == ' ' ||
		      buf[i] == '\n' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == ',')) {
			text = 0;
			break;
		}
	if (text) {
		const char *p = (const char *)buf;
		v = malloc((len / 2 + 1) * sizeof *v);
		if (!v) {
			rv = FL_ENOMEM;
			goto done;
		}
		for (;;) {
			char *e;
			long x;
			p += strspn(p, " \n\t\r,");
			if (!*p)
				break;
			errno = 0;
			x = strtol(p, &e, 10);
			if (e == p || errno) {
				fl_seterr(err, errlen, "%s: malformed integer at byte %zu", path,
				          (size_t)(p - (const char *)buf));
				rv = FL_EFORMAT;
				goto done;
			}
			if (x < 0 || x >= vocab) {
				fl_seterr(err, errlen, "%s: token %ld out of range [0, %d)", path,
				          x, vocab);
				rv = FL_EINVAL;
				goto done;
			}
			if (k >= max_tokens) {
				fl_seterr(err, errlen, "%s: more than %zu tokens", path,
				          max_tokens);
				rv = FL_ETOOBIG;
				goto done;
			}
			v[k++] = (int32_t)x;
			p = e;
		}
	} else {
		if (len % 4) {
			fl_seterr(err, errlen,
			          "%s: raw int32 token file size %zu is not a multiple of 4", path,
			          len);
			rv = FL_EFORMAT;
			goto done;
		}
		if (len / 4 > max_tokens) {
			fl_seterr(err, errlen, "%s: more than %zu tokens", path, max_tokens);
			rv = FL_ETOOBIG;
			goto done;
		}
		v = malloc(len);
		if (!v) {
			rv = FL_ENOMEM;
			goto done;
		}
		for (k = 0; k < len / 4; k++) {
			uint32_t u = (uint32_t)buf[4 * k] | (uint32_t)buf[4 * k + 1] << 8 |
			             (uint32_t)buf[4 * k + 2] << 16 |
			             (uint32_t)buf[4 * k + 3] << 24;
			int32_t x = (int32_t)u;
			if (x < 0 || x >= vocab) {
				fl_seterr(err, errlen, "%s: token %d at %zu out of range [0, %d)",
				          path, (int)x, k, vocab);
				rv = FL_EINVAL;
				goto done;
			}
			v[k] = x;
		}
	}
	if (k == 0) {
		fl_seterr(err, errlen, "%s: no tokens", path);
		rv = FL_EFORMAT;
		goto done;
	}
	*ids = v;
	*n = k;
	v = NULL;
done:
	free(v);
	free(buf);
	if (f)
		fclose(f);
	return rv;
}
