/*
 * tokenizer/chat.c — a small interpreter for the Jinja2 subset of chat
 * templates (see chat.h for what is supported and what counts as an
 * assistant byte).
 *
 * The template is cut into segments (text, {{ }}, {% %}) once, applying
 * whitespace control, trim_blocks and lstrip_blocks as transformers'
 * apply_chat_template does; statements are then executed straight from the
 * segment list (a for loop re-runs its body segments), and expressions are
 * parsed and evaluated in one recursive-descent pass, with an `ev` flag that
 * parses the branch not taken without evaluating it (short-circuit and/or,
 * a if c else b). Every value lives in one arena freed at the end. Strings
 * carry a per-byte assistant mask through concatenation and slicing.
 *
 * Not done: macros, call/filter blocks, floats, dict literals, loop.cycle,
 * for-loop filters and else, tuple unpacking; lengths count bytes, not code
 * points (equal for ASCII). Blocks and expressions nest at most
 * CHAT_MAX_DEPTH deep (the interpreter recurses; deeper is FL_ENOTSUP).
 */
#include "tokenizer/chat.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fsutil.h"

#define CHAT_MAX_CONFIG ((size_t)64 << 20)
#define CHAT_NS_MAX     32
#define CHAT_MAX_DEPTH  64 /* nesting of blocks and expressions (the recursion) */

enum { SEG_TEXT, SEG_EXPR, SEG_STMT };
typedef struct seg {
	int kind;
	size_t a, b;   /* text, or the inside of the tag */
	size_t ka, kb; /* statement keyword */
	size_t off;    /* offset of the tag in the template */
} seg;

enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_STR, V_JARR, V_JOBJ, V_LIST, V_NS };
struct ns;
typedef struct val {
	int t;
	long long i;            /* V_BOOL, V_INT; V_JARR: first index */
	const char *s;          /* V_STR */
	const unsigned char *m; /* V_STR: assistant mask or NULL */
	size_t n;               /* V_STR bytes, V_JARR / V_LIST items */
	const cJSON *j;         /* V_JARR, V_JOBJ */
	struct val *items;      /* V_LIST */
	struct ns *ns;          /* V_NS */
} val;

typedef struct ns {
	int n;
	const char *names[CHAT_NS_MAX];
	val vals[CHAT_NS_MAX];
} ns;

typedef struct var {
	const char *name;
	val v;
} var;

typedef struct ctx {
	const char *t;
	seg *segs;
	int nsegs, capsegs;
	void **arena;
	size_t narena, caparena;
	var *vars;
	int nvars, capvars, scope;
	char *o;
	unsigned char *om;
	size_t on, ocap;
	int gen;
	int depth; /* current nesting of exec_range and expr calls */
	const char *eos;
	int rc;
	char *err;
	size_t errlen;
} ctx;

typedef struct P {
	ctx *c;
	size_t pos, end; /* lexer position and end of the tag inside */
	int tk;          /* current token */
	size_t ta, tb;   /* its text */
} P;

enum { T_EOF, T_NAME, T_STR, T_INT, T_OP };

static void fail(ctx *c, int rc, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(ctx *c, int rc, size_t off, const char *fmt, ...)
{
	va_list ap;
	if (c->rc)
		return;
	c->rc = rc;
	if (c->err && c->errlen) {
		int k = snprintf(c->err, c->errlen, "chat template: ");
		if (k > 0 && (size_t)k < c->errlen) {
			va_start(ap, fmt);
			vsnprintf(c->err + k, c->errlen - k, fmt, ap);
			va_end(ap);
		}
		size_t l = strlen(c->err);
		if (l < c->errlen)
			snprintf(c->err + l, c->errlen - l, " (offset %zu)", off);
	}
}

static void notsup(ctx *c, size_t off, const char *what)
{
	if (c->rc)
		return;
	c->rc = FL_ENOTSUP;
	if (c->err && c->errlen)
		snprintf(c->err, c->errlen, "chat template uses %s at offset %zu, not supported",
		         what, off);
}

/* One level deeper into blocks or expressions; 0 (and FL_ENOTSUP) past
 * CHAT_MAX_DEPTH, so that a hostile template cannot overflow the stack. */
static int enter(ctx *c, size_t off)
{
	if (c->depth >= CHAT_MAX_DEPTH) {
		notsup(c, off, "nesting deeper than 64 levels");
		return 0;
	}
	c->depth++;
	return 1;
}

static void leave(ctx *c)
{
	c->depth--;
}

static void *amalloc(ctx *c, size_t n)
{
	void *p;
	if (c->narena == c->caparena) {
		size_t nc = c->caparena ? 2 * c->caparena : 256;
		void **na = realloc(c->arena, nc * sizeof *na);
		if (!na) {
			fail(c, FL_ENOMEM, 0, "out of memory");
			return NULL;
		}
		c->arena = na;
		c->caparena = nc;
	}
	if (!(p = calloc(1, n ? n : 1))) {
		fail(c, FL_ENOMEM, 0, "out of memory");
		return NULL;
	}
	c->arena[c->narena++] = p;
	return p;
}

/* ---- segments ---- */

static int is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static int add_seg(ctx *c, int kind, size_t a, size_t b, size_t off)
{
	if (c->nsegs == c->capsegs) {
		int nc = c->capsegs ? 2 * c->capsegs : 64;
		seg *ns_ = realloc(c->segs, nc * sizeof *ns_);
		if (!ns_)
			return FL_ENOMEM;
		c->segs = ns_;
		c->capsegs = nc;
	}
	seg *s = &c->segs[c->nsegs++];
	memset(s, 0, sizeof *s);
	s->kind = kind;
	s->a = a;
	s->b = b;
	s->off = off;
	if (kind == SEG_STMT) {
		size_t k = a;
		while (k < b && is_ws(c->t[k]))
			k++;
		s->ka = k;
		while (k < b && (c->t[k] == '_' || (c->t[k] >= 'a' && c->t[k] <= 'z')))
			k++;
		s->kb = k;
	}
	return 0;
}

/* Finds the closer of a tag starting its inside at p, skipping string
 * literals; returns the offset of the closer or (size_t)-1. */
static size_t find_close(const char *t, size_t p, char c1)
{
	char q = 0;
	for (; t[p]; p++) {
		if (q) {
			if (t[p] == '\\' && t[p + 1])
				p++;
			else if (t[p] == q)
				q = 0;
		} else if (c1 != '#' && (t[p] == '\'' || t[p] == '"')) {
			q = t[p];
		} else if (t[p] == c1 && t[p + 1] == '}') {
			return p;
		}
	}
	return (size_t)-1;
}

static int segment(ctx *c)
{
	const char *t = c->t;
	size_t n = strlen(t), pos = 0;
	int strip_next = 0, trim_nl = 0;
	while (pos <= n) {
		size_t ts = pos, tag = pos;
		while (tag < n && !(t[tag] == '{' &&
		                    (t[tag + 1] == '{' || t[tag + 1] == '%' || t[tag + 1] == '#')))
			tag++;
		size_t te = tag;
		if (strip_next)
			while (ts < te && is_ws(t[ts]))
				ts++;
		else if (trim_nl) {
			if (ts < te && t[ts] == '\n')
				ts++;
			else if (ts + 1 < te && t[ts] == '\r' && t[ts + 1] == '\n')
				ts += 2;
		}
		strip_next = trim_nl = 0;
		if (tag >= n) {
			if (te > ts && add_seg(c, SEG_TEXT, ts, te, ts))
				return FL_ENOMEM;
			break;
		}
		char kind = t[tag + 1];
		char c1 = kind == '{' ? '}' : kind;
		size_t in = tag + 2;
		if (t[in] == '-') {
			while (te > ts && is_ws(t[te - 1]))
				te--;
			in++;
		} else if (t[in] == '+') {
			in++;
		} else if (kind != '{') {
			/* lstrip_blocks: spaces and tabs from the line start to a block tag */
			size_t k = te;
			while (k > ts && (t[k - 1] == ' ' || t[k - 1] == '\t'))
				k--;
			if (k == 0 || t[k - 1] == '\n')
				te = k;
		}
		if (te > ts && add_seg(c, SEG_TEXT, ts, te, ts))
			return FL_ENOMEM;
		size_t cl = find_close(t, in, c1);
		if (cl == (size_t)-1) {
			fail(c, FL_EFORMAT, tag, "unclosed tag");
			return c->rc;
		}
		size_t ie = cl;
		if (ie > in && t[ie - 1] == '-') {
			strip_next = 1;
			ie--;
		} else if (kind != '{') {
			trim_nl = 1;
		}
		if (kind != '#' && add_seg(c, kind == '{' ? SEG_EXPR : SEG_STMT, in, ie, tag))
			return FL_ENOMEM;
		pos = cl + 2;
	}
	return 0;
}

/* ---- output ---- */

static void out_put(ctx *c, const char *s, const unsigned char *m, size_t n)
{
	if (c->rc)
		return;
	if (c->on + n + 1 > c->ocap) {
		size_t nc = c->ocap ? c->ocap : 1024;
		while (nc < c->on + n + 1)
			nc *= 2;
		char *no = realloc(c->o, nc);
		if (!no) {
			fail(c, FL_ENOMEM, 0, "out of memory");
			return;
		}
		c->o = no;
		unsigned char *nm = realloc(c->om, nc);
		if (!nm) {
			fail(c, FL_ENOMEM, 0, "out of memory");
			return;
		}
		c->om = nm;
		c->ocap = nc;
	}
	memcpy(c->o + c->on, s, n);
	for (size_t k = 0; k < n; k++)
		c->om[c->on + k] = c->gen ? 1 : (m ? m[k] : 0);
	c->on += n;
	c->o[c->on] = 0;
}

/* ---- values ---- */

static val mkstr(const char *s, const unsigned char *m, size_t n)
{
	val v = {.t = V_STR, .s = s, .m = m, .n = n};
	return v;
}

static val mkint(int t, long long i)
{
	val v = {.t = t, .i = i};
	return v;
}

static val from_json(ctx *c, const cJSON *x, int asst)
{
	val v = {0};
	if (!x)
		return v;
	if (cJSON_IsString(x)) {
		size_t n = strlen(x->valuestring);
		unsigned char *m = NULL;
		if (asst && n && (m = amalloc(c, n)))
			memset(m, 1, n);
		return mkstr(x->valuestring, m, n);
	}
	if (cJSON_IsBool(x))
		return mkint(V_BOOL, cJSON_IsTrue(x));
	if (cJSON_IsNull(x)) {
		v.t = V_NONE;
		return v;
	}
	if (cJSON_IsNumber(x))
		return mkint(V_INT, (long long)x->valuedouble);
	if (cJSON_IsArray(x)) {
		v.t = V_JARR;
		v.j = x;
		v.n = (size_t)cJSON_GetArraySize(x);
		return v;
	}
	v.t = V_JOBJ;
	v.j = x;
	return v;
}

static int truthy(val v)
{
	switch (v.t) {
	case V_BOOL:
	case V_INT:
		return v.i != 0;
	case V_STR:
	case V_JARR:
	case V_LIST:
		return v.n > 0;
	case V_JOBJ:
		return v.j->child != NULL;
	case V_NS:
		return 1;
	default:
		return 0;
	}
}

static val item_at(ctx *c, val a, size_t k)
{
	if (a.t == V_LIST)
		return a.items[k];
	return from_json(c, cJSON_GetArrayItem(a.j, (int)(a.i + (long long)k)), 0);
}

static val get_member(ctx *c, val o, const char *name, size_t nl)
{
	val u = {0};
	if (o.t == V_JOBJ) {
		for (const cJSON *x = o.j->child; x; x = x->next) {
			if (x->string && strlen(x->string) == nl && !memcmp(x->string, name, nl)) {
				int asst = 0;
				if (nl == 7 && !memcmp(name, "content", 7)) {
					const cJSON *r =
					    cJSON_GetObjectItemCaseSensitive(o.j, "role");
					asst = cJSON_IsString(r) &&
					       !strcmp(r->valuestring, "assistant");
				}
				return from_json(c, x, asst);
			}
		}
	} else if (o.t == V_NS) {
		for (int k = 0; k < o.ns->n; k++)
			if (strlen(o.ns->names[k]) == nl && !memcmp(o.ns->names[k], name, nl))
				return o.ns->vals[k];
	}
	return u;
}

static val to_str(ctx *c, val v, size_t off)
{
	char buf[32];
	const char *s = NULL;
	switch (v.t) {
	case V_STR:
		return v;
	case V_UNDEF:
		return mkstr("", NULL, 0);
	case V_NONE:
		return mkstr("None", NULL, 4);
	case V_BOOL:
		return v.i ? mkstr("True", NULL, 4) : mkstr("False", NULL, 5);
	case V_INT: {
		int k = snprintf(buf, sizeof buf, "%lld", v.i);
		char *p = amalloc(c, (size_t)k + 1);
		if (!p)
			return mkstr("", NULL, 0);
		memcpy(p, buf, (size_t)k + 1);
		return mkstr(p, NULL, (size_t)k);
	}
	default:
		s = "a list or mapping printed as text";
	}
	notsup(c, off, s);
	return mkstr("", NULL, 0);
}

static val concat(ctx *c, val a, val b)
{
	char *s = amalloc(c, a.n + b.n + 1);
	unsigned char *m = NULL;
	if (!s)
		return mkstr("", NULL, 0);
	memcpy(s, a.s, a.n);
	memcpy(s + a.n, b.s, b.n);
	if ((a.m || b.m) && (m = amalloc(c, a.n + b.n))) {
		if (a.m)
			memcpy(m, a.m, a.n);
		if (b.m)
			memcpy(m + a.n, b.m, b.n);
	}
	return mkstr(s, m, a.n + b.n);
}

static val substr(val s, size_t a, size_t b)
{
	return mkstr(s.s + a, s.m ? s.m + a : NULL, b - a);
}

static int equal(val a, val b)
{
	if (a.t == V_STR && b.t == V_STR)
		return a.n == b.n && !memcmp(a.s, b.s, a.n);
	if ((a.t == V_INT || a.t == V_BOOL) && (b.t == V_INT || b.t == V_BOOL))
		return a.i == b.i;
	if (a.t == V_NONE || a.t == V_UNDEF)
		return a.t == b.t;
	if (a.t == V_JOBJ || a.t == V_JARR)
		return a.t == b.t && a.j == b.j && a.i == b.i && a.n == b.n;
	return 0;
}

/* ---- lexer ---- */

static int is_id(char ch, int first)
{
	return ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (!first && ch >= '0' && ch <= '9');
}

static void next(P *p)
{
	const char *t = p->c->t;
	while (p->pos < p->end && is_ws(t[p->pos]))
		p->pos++;
	p->ta = p->pos;
	if (p->pos >= p->end) {
		p->tk = T_EOF;
		p->tb = p->pos;
		return;
	}
	char ch = t[p->pos];
	if (is_id(ch, 1)) {
		while (p->pos < p->end && is_id(t[p->pos], 0))
			p->pos++;
		p->tk = T_NAME;
	} else if (ch >= '0' && ch <= '9') {
		while (p->pos < p->end && t[p->pos] >= '0' && t[p->pos] <= '9')
			p->pos++;
		if (p->pos < p->end && t[p->pos] == '.' && p->pos + 1 < p->end &&
		    t[p->pos + 1] >= '0' && t[p->pos + 1] <= '9')
			notsup(p->c, p->ta, "a floating-point number");
		p->tk = T_INT;
	} else if (ch == '\'' || ch == '"') {
		p->pos++;
		while (p->pos < p->end && t[p->pos] != ch) {
			if (t[p->pos] == '\\')
				p->pos++;
			p->pos++;
		}
		if (p->pos >= p->end)
			fail(p->c, FL_EFORMAT, p->ta, "unterminated string");
		p->pos++;
		p->tk = T_STR;
	} else {
		static const char *two[] = {"==", "!=", "<=", ">=", "//", "**"};
		p->tk = T_OP;
		p->pos++;
		for (size_t k = 0; k < sizeof two / sizeof two[0]; k++)
			if (p->pos < p->end && ch == two[k][0] && t[p->pos] == two[k][1]) {
				p->pos++;
				break;
			}
	}
	p->tb = p->pos;
}

static int is_op(P *p, const char *op)
{
	size_t l = strlen(op);
	return p->tk == T_OP && p->tb - p->ta == l && !memcmp(p->c->t + p->ta, op, l);
}

static int is_kw(P *p, const char *kw)
{
	size_t l = strlen(kw);
	return p->tk == T_NAME && p->tb - p->ta == l && !memcmp(p->c->t + p->ta, kw, l);
}

static void expect(P *p, const char *op)
{
	if (!is_op(p, op) && !p->c->rc)
		fail(p->c, FL_EFORMAT, p->ta, "expected '%s'", op);
	next(p);
}

static val str_lit(P *p)
{
	const char *t = p->c->t;
	size_t a = p->ta + 1, b = p->tb - 1, k = 0;
	char *s = amalloc(p->c, b - a + 1);
	if (!s)
		return mkstr("", NULL, 0);
	for (size_t i = a; i < b; i++) {
		char ch = t[i];
		if (ch == '\\' && i + 1 < b) {
			ch = t[++i];
			ch = ch == 'n' ? '\n' : ch == 't' ? '\t' : ch == 'r' ? '\r' : ch;
		}
		s[k++] = ch;
	}
	return mkstr(s, NULL, k);
}

/* ---- expressions ---- */

static val expr(P *p, int ev);

static val lookup(ctx *c, const char *name, size_t nl)
{
	val u = {0};
	for (int k = c->nvars - 1; k >= 0; k--)
		if (strlen(c->vars[k].name) == nl && !memcmp(c->vars[k].name, name, nl))
			return c->vars[k].v;
	return u;
}

/* Parses "(args)" after a callee; positional values into pos, keyword
 * arguments (name=value) into kw. Returns the number of positional values. */
static int call_args(P *p, int ev, val *pos, int maxpos, ns *kw)
{
	int np = 0;
	expect(p, "(");
	while (!p->c->rc && !is_op(p, ")") && p->tk != T_EOF) {
		if (p->tk == T_NAME && p->c->t[p->pos] == '=' && p->c->t[p->pos + 1] != '=') {
			size_t na = p->ta, nb = p->tb;
			next(p);
			next(p);
			val v = expr(p, ev);
			if (kw && kw->n < CHAT_NS_MAX) {
				char *nm = amalloc(p->c, nb - na + 1);
				if (nm)
					memcpy(nm, p->c->t + na, nb - na);
				kw->names[kw->n] = nm ? nm : "";
				kw->vals[kw->n++] = v;
			}
		} else {
			val v = expr(p, ev);
			if (np < maxpos)
				pos[np] = v;
			np++;
		}
		if (!is_op(p, ","))
			break;
		next(p);
	}
	expect(p, ")");
	return np;
}

static val primary(P *p, int ev)
{
	ctx *c = p->c;
	val v = {0};
	size_t off = p->ta;
	if (p->tk == T_STR) {
		v = ev ? str_lit(p) : v;
		next(p);
		/* adjacent literals concatenate */
		while (p->tk == T_STR) {
			if (ev)
				v = concat(c, v, str_lit(p));
			next(p);
		}
		return v;
	}
	if (p->tk == T_INT) {
		v = mkint(V_INT, strtoll(c->t + p->ta, NULL, 10));
		next(p);
		return v;
	}
	if (is_op(p, "(")) {
		next(p);
		v = expr(p, ev);
		expect(p, ")");
		return v;
	}
	if (is_op(p, "[")) {
		val items[64];
		int n = 0;
		next(p);
		while (!c->rc && !is_op(p, "]") && p->tk != T_EOF) {
			val x = expr(p, ev);
			if (n == 64) {
				notsup(c, off, "a list literal of more than 64 items");
				return v;
			}
			items[n++] = x;
			if (!is_op(p, ","))
				break;
			next(p);
		}
		expect(p, "]");
		v.t = V_LIST;
		v.n = (size_t)n;
		if ((v.items = amalloc(c, sizeof(val) * (n ? n : 1))))
			memcpy(v.items, items, sizeof(val) * n);
		return v;
	}
	if (p->tk != T_NAME) {
		if (is_op(p, "{"))
			notsup(c, off, "a dict literal");
		else
			fail(c, FL_EFORMAT, off, "unexpected '%.*s'", (int)(p->tb - p->ta),
			     c->t + p->ta);
		return v;
	}
	const char *nm = c->t + p->ta;
	size_t nl = p->tb - p->ta;
	next(p);
	if ((nl == 4 && (!memcmp(nm, "true", 4) || !memcmp(nm, "True", 4))))
		return mkint(V_BOOL, 1);
	if ((nl == 5 && (!memcmp(nm, "false", 5) || !memcmp(nm, "False", 5))))
		return mkint(V_BOOL, 0);
	if (nl == 4 && (!memcmp(nm, "none", 4) || !memcmp(nm, "None", 4))) {
		v.t = V_NONE;
		return v;
	}
	if (is_op(p, "(")) {
		if (nl == 9 && !memcmp(nm, "namespace", 9)) {
			ns *n = amalloc(c, sizeof *n);
			if (!n)
				return v;
			call_args(p, ev, NULL, 0, n);
			v.t = V_NS;
			v.ns = n;
			return v;
		}
		if (nl == 15 && !memcmp(nm, "raise_exception", 15)) {
			val a[1] = {{0}};
			int np = call_args(p, ev, a, 1, NULL);
			if (ev && !c->rc) {
				val s = np ? to_str(c, a[0], off) : mkstr("", NULL, 0);
				fail(c, FL_EINVAL, off, "the template raised an error: %.*s",
				     (int)s.n, s.s);
			}
			return v;
		}
		char what[96];
		snprintf(what, sizeof what, "the function %.*s()", (int)(nl > 40 ? 40 : nl), nm);
		notsup(c, off, what);
		return v;
	}
	return ev ? lookup(c, nm, nl) : v;
}

static val strip_chars(val s, const char *set, size_t nset, int left, int right)
{
	size_t a = 0, b = s.n;
	while (left && a < b &&
	       (set ? memchr(set, s.s[a], nset) != NULL
	            : is_ws(s.s[a]) || s.s[a] == '\f' || s.s[a] == '\v'))
		a++;
	while (right && b > a &&
	       (set ? memchr(set, s.s[b - 1], nset) != NULL
	            : is_ws(s.s[b - 1]) || s.s[b - 1] == '\f' || s.s[b - 1] == '\v'))
		b--;
	return substr(s, a, b);
}

static val method(P *p, int ev, val o, const char *nm, size_t nl, size_t off)
{
	ctx *c = p->c;
	val a[2] = {{0}, {0}}, u = {0};
	int np = call_args(p, ev, a, 2, NULL);
	if (!ev || c->rc)
		return u;
#define IS(s) (nl == strlen(s) && !memcmp(nm, s, nl))
	if (o.t == V_STR) {
		int l = IS("strip") || IS("lstrip"), r = IS("strip") || IS("rstrip");
		if (l || r) {
			if (np && a[0].t == V_STR)
				return strip_chars(o, a[0].s, a[0].n, l, r);
			return strip_chars(o, NULL, 0, l, r);
		}
		if ((IS("startswith") || IS("endswith")) && np == 1 && a[0].t == V_STR) {
			size_t k = a[0].n;
			if (k > o.n)
				return mkint(V_BOOL, 0);
			const char *at = IS("startswith") ? o.s : o.s + o.n - k;
			return mkint(V_BOOL, !memcmp(at, a[0].s, k));
		}
		if (IS("lower") || IS("upper")) {
			char *s = amalloc(c, o.n + 1);
			if (!s)
				return u;
			for (size_t k = 0; k < o.n; k++) {
				char ch = o.s[k];
				if (IS("lower") && ch >= 'A' && ch <= 'Z')
					ch += 32;
				else if (IS("upper") && ch >= 'a' && ch <= 'z')
					ch -= 32;
				s[k] = ch;
			}
			return mkstr(s, o.m, o.n);
		}
		if (IS("split") && np == 1 && a[0].t == V_STR && a[0].n > 0) {
			size_t cnt = 1, k = 0;
			for (k = 0; k + a[0].n <= o.n; k++)
				if (!memcmp(o.s + k, a[0].s, a[0].n)) {
					cnt++;
					k += a[0].n - 1;
				}
			val v = {.t = V_LIST, .n = cnt};
			if (!(v.items = amalloc(c, sizeof(val) * cnt)))
				return u;
			size_t st = 0, idx = 0;
			for (k = 0; k + a[0].n <= o.n; k++)
				if (!memcmp(o.s + k, a[0].s, a[0].n)) {
					v.items[idx++] = substr(o, st, k);
					k += a[0].n - 1;
					st = k + 1;
				}
			v.items[idx] = substr(o, st, o.n);
			return v;
		}
	}
#undef IS
	char what[96];
	snprintf(what, sizeof what, "the method .%.*s()", (int)(nl > 40 ? 40 : nl), nm);
	notsup(c, off, what);
	return u;
}

static val tojson(ctx *c, val v, size_t off)
{
	cJSON *j = NULL;
	if (v.t == V_STR) {
		char *tmp = amalloc(c, v.n + 1);
		if (!tmp)
			return mkstr("", NULL, 0);
		memcpy(tmp, v.s, v.n);
		j = cJSON_CreateString(tmp);
	} else if (v.t == V_INT) {
		j = cJSON_CreateNumber((double)v.i);
	} else if (v.t == V_BOOL) {
		j = cJSON_CreateBool((int)v.i);
	} else if (v.t == V_NONE) {
		j = cJSON_CreateNull();
	} else {
		notsup(c, off, "tojson of a list or mapping");
		return mkstr("", NULL, 0);
	}
	char *s = j ? cJSON_PrintUnformatted(j) : NULL;
	cJSON_Delete(j);
	if (!s) {
		fail(c, FL_ENOMEM, off, "out of memory");
		return mkstr("", NULL, 0);
	}
	size_t n = strlen(s);
	char *r = amalloc(c, n + 1);
	if (r)
		memcpy(r, s, n);
	free(s);
	return mkstr(r ? r : "", NULL, r ? n : 0);
}

static val filter(P *p, int ev, val v)
{
	ctx *c = p->c;
	size_t off = p->ta;
	if (p->tk != T_NAME) {
		fail(c, FL_EFORMAT, off, "expected a filter name");
		return v;
	}
	const char *nm = c->t + p->ta;
	size_t nl = p->tb - p->ta;
	next(p);
	if (is_op(p, "("))
		call_args(p, ev, NULL, 0, NULL);
	if (!ev)
		return v;
#define IS(s) (nl == strlen(s) && !memcmp(nm, s, nl))
	if (IS("trim") && v.t == V_STR)
		return strip_chars(v, NULL, 0, 1, 1);
	if (IS("length") || IS("count")) {
		if (v.t == V_STR || v.t == V_JARR || v.t == V_LIST)
			return mkint(V_INT, (long long)v.n);
		if (v.t == V_JOBJ)
			return mkint(V_INT, cJSON_GetArraySize(v.j));
	}
	if (IS("string"))
		return to_str(c, v, off);
	if ((IS("lower") || IS("upper")) && v.t == V_STR) {
		char *s = amalloc(c, v.n + 1);
		if (!s)
			return v;
		for (size_t k = 0; k < v.n; k++) {
			char ch = v.s[k];
			s[k] = IS("lower") && ch >= 'A' && ch <= 'Z'   ? ch + 32
			       : IS("upper") && ch >= 'a' && ch <= 'z' ? ch - 32
			                                               : ch;
		}
		return mkstr(s, v.m, v.n);
	}
	if ((IS("first") || IS("last")) && (v.t == V_JARR || v.t == V_LIST)) {
		val u = {0};
		if (!v.n)
			return u;
		return item_at(c, v, IS("first") ? 0 : v.n - 1);
	}
	if (IS("tojson"))
		return tojson(c, v, off);
#undef IS
	char what[96];
	snprintf(what, sizeof what, "the filter |%.*s", (int)(nl > 40 ? 40 : nl), nm);
	notsup(c, off, what);
	return v;
}

static val test(P *p, int ev, val v)
{
	ctx *c = p->c;
	size_t off = p->ta;
	int neg = 0, r = 0;
	if (is_kw(p, "not")) {
		neg = 1;
		next(p);
	}
	const char *nm = c->t + p->ta;
	size_t nl = p->tb - p->ta;
	if (p->tk != T_NAME) {
		fail(c, FL_EFORMAT, off, "expected a test name after 'is'");
		return v;
	}
	next(p);
#define IS(s) (nl == strlen(s) && !memcmp(nm, s, nl))
	if (IS("defined"))
		r = v.t != V_UNDEF;
	else if (IS("undefined"))
		r = v.t == V_UNDEF;
	else if (IS("none"))
		r = v.t == V_NONE;
	else if (IS("string"))
		r = v.t == V_STR;
	else if (IS("number") || IS("integer"))
		r = v.t == V_INT;
	else if (IS("boolean"))
		r = v.t == V_BOOL;
	else if (IS("mapping"))
		r = v.t == V_JOBJ || v.t == V_NS;
	else if (IS("iterable") || IS("sequence"))
		r = v.t == V_JARR || v.t == V_LIST || v.t == V_STR ||
		    (IS("iterable") && v.t == V_JOBJ);
	else if (IS("true") || IS("false"))
		r = v.t == V_BOOL && v.i == IS("true");
	else {
		char what[96];
		snprintf(what, sizeof what, "the test 'is %.*s'", (int)(nl > 40 ? 40 : nl), nm);
		notsup(c, off, what);
	}
#undef IS
	(void)ev;
	return mkint(V_BOOL, neg ? !r : r);
}

static long long norm_index(long long k, size_t n)
{
	return k < 0 ? k + (long long)n : k;
}

static val index_or_slice(P *p, int ev, val o, size_t off)
{
	ctx *c = p->c;
	val u = {0}, a = {0}, b = {0};
	int slice = 0, ha = 0, hb = 0;
	next(p); /* [ */
	if (!is_op(p, ":")) {
		a = expr(p, ev);
		ha = 1;
	}
	if (is_op(p, ":")) {
		slice = 1;
		next(p);
		if (!is_op(p, "]")) {
			b = expr(p, ev);
			hb = 1;
		}
	}
	expect(p, "]");
	if (!ev || c->rc)
		return u;
	if (slice) {
		if ((ha && a.t != V_INT) || (hb && b.t != V_INT) ||
		    !(o.t == V_JARR || o.t == V_LIST || o.t == V_STR)) {
			notsup(c, off, "this slice");
			return u;
		}
		long long n = (long long)o.n, lo = ha ? norm_index(a.i, o.n) : 0,
		          hi = hb ? norm_index(b.i, o.n) : n;
		lo = lo < 0 ? 0 : lo > n ? n : lo;
		hi = hi < lo ? lo : hi > n ? n : hi;
		if (o.t == V_STR)
			return substr(o, (size_t)lo, (size_t)hi);
		if (o.t == V_LIST) {
			o.items += lo;
		} else {
			o.i += lo;
		}
		o.n = (size_t)(hi - lo);
		return o;
	}
	if (a.t == V_STR)
		return get_member(c, o, a.s, a.n);
	if (a.t == V_INT && (o.t == V_JARR || o.t == V_LIST || o.t == V_STR)) {
		long long k = norm_index(a.i, o.n);
		if (k < 0 || k >= (long long)o.n)
			return u;
		if (o.t == V_STR)
			return substr(o, (size_t)k, (size_t)k + 1);
		return item_at(c, o, (size_t)k);
	}
	return u;
}

static val postfix(P *p, int ev)
{
	ctx *c = p->c;
	val v = primary(p, ev);
	while (!c->rc) {
		size_t off = p->ta;
		if (is_op(p, ".")) {
			next(p);
			if (p->tk != T_NAME) {
				fail(c, FL_EFORMAT, off, "expected a name after '.'");
				break;
			}
			const char *nm = c->t + p->ta;
			size_t nl = p->tb - p->ta;
			next(p);
			if (is_op(p, "("))
				v = method(p, ev, v, nm, nl, off);
			else if (ev)
				v = get_member(c, v, nm, nl);
		} else if (is_op(p, "[")) {
			v = index_or_slice(p, ev, v, off);
		} else if (is_op(p, "|")) {
			next(p);
			v = filter(p, ev, v);
		} else if (is_kw(p, "is")) {
			next(p);
			v = test(p, ev, v);
		} else {
			break;
		}
	}
	return v;
}

static val unary(P *p, int ev)
{
	if (is_op(p, "-")) {
		size_t off = p->ta;
		if (!enter(p->c, off))
			return mkint(V_INT, 0);
		next(p);
		val v = unary(p, ev);
		leave(p->c);
		if (ev && v.t != V_INT && !p->c->rc)
			notsup(p->c, off, "unary minus on a non-number");
		return mkint(V_INT, -v.i);
	}
	return postfix(p, ev);
}

static val mul(P *p, int ev)
{
	val a = unary(p, ev);
	while (!p->c->rc && (is_op(p, "*") || is_op(p, "%") || is_op(p, "//") || is_op(p, "/"))) {
		size_t off = p->ta;
		char op = p->c->t[p->ta];
		int fl = is_op(p, "//");
		if (op == '/' && !fl) {
			notsup(p->c, off, "'/' (floating-point division)");
			return a;
		}
		next(p);
		val b = unary(p, ev);
		if (!ev)
			continue;
		if (a.t != V_INT || b.t != V_INT) {
			notsup(p->c, off, "arithmetic on non-numbers");
			return a;
		}
		if (op != '*' && b.i == 0) {
			fail(p->c, FL_EINVAL, off, "division by zero");
			return a;
		}
		if (op == '*')
			a.i *= b.i;
		else if (fl)
			a.i = a.i / b.i - ((a.i % b.i != 0) && ((a.i < 0) != (b.i < 0)));
		else
			a.i = ((a.i % b.i) + b.i) % b.i;
	}
	return a;
}

static val tilde(P *p, int ev)
{
	val a = mul(p, ev);
	while (!p->c->rc && is_op(p, "~")) {
		size_t off = p->ta;
		next(p);
		val b = mul(p, ev);
		if (ev)
			a = concat(p->c, to_str(p->c, a, off), to_str(p->c, b, off));
	}
	return a;
}

static val add(P *p, int ev)
{
	val a = tilde(p, ev);
	while (!p->c->rc && (is_op(p, "+") || is_op(p, "-"))) {
		size_t off = p->ta;
		int plus = is_op(p, "+");
		next(p);
		val b = tilde(p, ev);
		if (!ev)
			continue;
		if (plus && a.t == V_STR && b.t == V_STR)
			a = concat(p->c, a, b);
		else if (a.t == V_INT && b.t == V_INT)
			a.i = plus ? a.i + b.i : a.i - b.i;
		else
			notsup(p->c, off, plus ? "'+' on these operands" : "'-' on these operands");
	}
	return a;
}

static int contains(ctx *c, val hay, val x, size_t off)
{
	if (hay.t == V_STR && x.t == V_STR) {
		if (!x.n)
			return 1;
		for (size_t k = 0; k + x.n <= hay.n; k++)
			if (!memcmp(hay.s + k, x.s, x.n))
				return 1;
		return 0;
	}
	if (hay.t == V_JARR || hay.t == V_LIST) {
		for (size_t k = 0; k < hay.n; k++)
			if (equal(item_at(c, hay, k), x))
				return 1;
		return 0;
	}
	if ((hay.t == V_JOBJ || hay.t == V_NS) && x.t == V_STR)
		return get_member(c, hay, x.s, x.n).t != V_UNDEF;
	if (hay.t == V_UNDEF || hay.t == V_NONE) {
		fail(c, FL_EINVAL, off, "'in' on an undefined value");
		return 0;
	}
	notsup(c, off, "'in' on these operands");
	return 0;
}

static val compare(P *p, int ev)
{
	val a = add(p, ev);
	while (!p->c->rc) {
		size_t off = p->ta;
		int op;
		if (is_op(p, "=="))
			op = 0;
		else if (is_op(p, "!="))
			op = 1;
		else if (is_op(p, "<"))
			op = 2;
		else if (is_op(p, ">"))
			op = 3;
		else if (is_op(p, "<="))
			op = 4;
		else if (is_op(p, ">="))
			op = 5;
		else if (is_kw(p, "in"))
			op = 6;
		else if (is_kw(p, "not")) {
			P q = *p;
			next(&q);
			if (!is_kw(&q, "in"))
				break;
			*p = q;
			op = 7;
		} else
			break;
		next(p);
		val b = add(p, ev);
		if (!ev)
			continue;
		int r = 0;
		if (op <= 1) {
			r = equal(a, b) ^ op;
		} else if (op <= 5) {
			int cmp;
			if (a.t == V_INT && b.t == V_INT) {
				cmp = a.i < b.i ? -1 : a.i > b.i;
			} else if (a.t == V_STR && b.t == V_STR) {
				size_t m = a.n < b.n ? a.n : b.n;
				cmp = memcmp(a.s, b.s, m);
				if (!cmp)
					cmp = a.n < b.n ? -1 : a.n > b.n;
			} else {
				notsup(p->c, off, "ordering comparison of these operands");
				return a;
			}
			r = op == 2 ? cmp < 0 : op == 3 ? cmp > 0 : op == 4 ? cmp <= 0 : cmp >= 0;
		} else {
			r = contains(p->c, b, a, off) ^ (op == 7);
		}
		a = mkint(V_BOOL, r);
	}
	return a;
}

static val not_(P *p, int ev)
{
	if (is_kw(p, "not")) {
		val v = {0};
		if (!enter(p->c, p->ta))
			return v;
		next(p);
		v = not_(p, ev);
		leave(p->c);
		return mkint(V_BOOL, !truthy(v));
	}
	return compare(p, ev);
}

static val and_(P *p, int ev)
{
	val a = not_(p, ev);
	while (!p->c->rc && is_kw(p, "and")) {
		next(p);
		int t = ev && truthy(a);
		val b = not_(p, t);
		if (ev)
			a = t ? b : a;
	}
	return a;
}

static val or_(P *p, int ev)
{
	val a = and_(p, ev);
	while (!p->c->rc && is_kw(p, "or")) {
		next(p);
		int t = ev && !truthy(a);
		val b = and_(p, t);
		if (ev)
			a = t ? b : a;
	}
	return a;
}

static val expr_(P *p, int ev);
static val expr(P *p, int ev)
{
	val v = {0};
	if (!enter(p->c, p->ta))
		return v;
	v = expr_(p, ev);
	leave(p->c);
	return v;
}

static val expr_(P *p, int ev)
{
	val a = or_(p, ev);
	if (!p->c->rc && is_kw(p, "if")) {
		next(p);
		val cnd = or_(p, ev);
		int t = ev && truthy(cnd);
		val b = {0};
		if (ev)
			a = t ? a : b;
		if (is_kw(p, "else")) {
			next(p);
			b = expr(p, ev && !t);
			if (ev && !t)
				a = b;
		}
	}
	return a;
}

static void pinit(P *p, ctx *c, size_t a, size_t b)
{
	p->c = c;
	p->pos = a;
	p->end = b;
	next(p);
}

static void at_end(P *p)
{
	if (p->tk != T_EOF && !p->c->rc)
		fail(p->c, FL_EFORMAT, p->ta, "unexpected '%.*s'", (int)(p->tb - p->ta),
		     p->c->t + p->ta);
}

/* ---- statements ---- */

static int kw_is(ctx *c, int i, const char *kw)
{
	seg *s = &c->segs[i];
	size_t l = strlen(kw);
	return s->kind == SEG_STMT && s->kb - s->ka == l && !memcmp(c->t + s->ka, kw, l);
}

static int opens(ctx *c, int i)
{
	return kw_is(c, i, "if") || kw_is(c, i, "for") || kw_is(c, i, "generation") ||
	       kw_is(c, i, "macro") || kw_is(c, i, "call") || kw_is(c, i, "filter") ||
	       kw_is(c, i, "raw") || kw_is(c, i, "block");
}

static int closes(ctx *c, int i)
{
	return kw_is(c, i, "endif") || kw_is(c, i, "endfor") || kw_is(c, i, "endgeneration") ||
	       kw_is(c, i, "endmacro") || kw_is(c, i, "endcall") || kw_is(c, i, "endfilter") ||
	       kw_is(c, i, "endraw") || kw_is(c, i, "endblock");
}

/* Refuses (FL_ENOTSUP) block nesting deeper than CHAT_MAX_DEPTH before
 * anything runs: every block scans its body for its end, so deep nesting
 * would cost depth x template, and the execution recurses per block. */
static int check_nesting(ctx *c)
{
	int d = 0;
	for (int i = 0; i < c->nsegs; i++) {
		if (c->segs[i].kind != SEG_STMT)
			continue;
		if (opens(c, i)) {
			if (++d > CHAT_MAX_DEPTH - 2) {
				notsup(c, c->segs[i].off, "nesting deeper than 64 levels");
				return -1;
			}
		} else if (closes(c, i) && d > 0) {
			d--;
		}
	}
	return 0;
}

/* The index of the statement closing the block opened at i, filling mids
 * (elif/else at depth 0) when given; -1 (and an error) when unclosed. */
static int match_end(ctx *c, int i, int end, int *mids, int *nmid, int maxmid)
{
	int depth = 0;
	if (nmid)
		*nmid = 0;
	for (int j = i + 1; j < end; j++) {
		if (c->segs[j].kind != SEG_STMT)
			continue;
		if (opens(c, j)) {
			depth++;
		} else if (closes(c, j)) {
			if (depth == 0)
				return j;
			depth--;
		} else if (depth == 0 && (kw_is(c, j, "elif") || kw_is(c, j, "else")) && mids) {
			if (*nmid < maxmid)
				mids[(*nmid)++] = j;
			else
				notsup(c, c->segs[j].off, "more than 64 elif branches");
		}
	}
	fail(c, FL_EFORMAT, c->segs[i].off, "block '%.*s' is not closed",
	     (int)(c->segs[i].kb - c->segs[i].ka), c->t + c->segs[i].ka);
	return -1;
}

static int push_var(ctx *c, const char *name, val v)
{
	if (c->nvars == c->capvars) {
		int nc = c->capvars ? 2 * c->capvars : 32;
		var *nv = realloc(c->vars, nc * sizeof *nv);
		if (!nv) {
			fail(c, FL_ENOMEM, 0, "out of memory");
			return -1;
		}
		c->vars = nv;
		c->capvars = nc;
	}
	c->vars[c->nvars].name = name;
	c->vars[c->nvars++].v = v;
	return 0;
}

static char *dupname(ctx *c, size_t a, size_t b)
{
	char *s = amalloc(c, b - a + 1);
	if (s)
		memcpy(s, c->t + a, b - a);
	return s;
}

static void exec_range(ctx *c, int i, int end);

static void st_if(ctx *c, int *ip, int end)
{
	int mids[64], nmid, i = *ip;
	int e = match_end(c, i, end, mids, &nmid, 64);
	if (e < 0 || c->rc)
		return;
	if (!kw_is(c, e, "endif")) {
		fail(c, FL_EFORMAT, c->segs[e].off, "'if' closed by another block's end");
		return;
	}
	int from = i, done = 0;
	for (int k = 0; k <= nmid && !c->rc; k++) {
		int to = k < nmid ? mids[k] : e;
		seg *s = &c->segs[from];
		int take;
		if (kw_is(c, from, "else")) {
			take = 1;
		} else {
			P p;
			pinit(&p, c, s->kb, s->b);
			val v = expr(&p, !done);
			at_end(&p);
			take = !done && truthy(v);
		}
		if (take && !done) {
			exec_range(c, from + 1, to);
			done = 1;
		}
		from = to;
	}
	*ip = e;
}

static void st_for(ctx *c, int *ip, int end)
{
	int i = *ip;
	seg *s = &c->segs[i];
	int e = match_end(c, i, end, NULL, NULL, 0);
	if (e < 0)
		return;
	P p;
	pinit(&p, c, s->kb, s->b);
	if (p.tk != T_NAME) {
		fail(c, FL_EFORMAT, s->off, "expected a loop variable");
		return;
	}
	size_t na = p.ta, nb = p.tb;
	next(&p);
	if (is_op(&p, ",")) {
		notsup(c, s->off, "tuple unpacking in 'for'");
		return;
	}
	if (!is_kw(&p, "in")) {
		fail(c, FL_EFORMAT, p.ta, "expected 'in'");
		return;
	}
	next(&p);
	val seq = or_(&p, 1);
	if (is_kw(&p, "if")) {
		notsup(c, p.ta, "a filtered for loop ('for ... if')");
		return;
	}
	if (is_kw(&p, "recursive")) {
		notsup(c, p.ta, "a recursive for loop");
		return;
	}
	at_end(&p);
	for (int j = i + 1; j < e; j++)
		if (kw_is(c, j, "else") && !c->rc) {
			int d = 0;
			for (int k = i + 1; k < j; k++)
				d += opens(c, k) - closes(c, k);
			if (d == 0)
				notsup(c, c->segs[j].off, "'else' in a for loop");
		}
	if (c->rc)
		return;
	if (seq.t == V_UNDEF || seq.t == V_NONE)
		seq.n = 0;
	else if (seq.t != V_JARR && seq.t != V_LIST) {
		notsup(c, s->off, "a for loop over something that is not a list");
		return;
	}
	char *name = dupname(c, na, nb);
	if (!name)
		return;
	int save_n = c->nvars, save_scope = c->scope;
	for (size_t k = 0; k < seq.n && !c->rc; k++) {
		ns *lp = amalloc(c, sizeof *lp);
		if (!lp)
			return;
		static const char *ln[] = {"index0", "index",     "first",   "last",
		                           "length", "revindex0", "revindex"};
		long long lv[] = {
		    (long long)k,          (long long)k + 1, k == 0,
		    k + 1 == seq.n,        (long long)seq.n, (long long)(seq.n - 1 - k),
		    (long long)(seq.n - k)};
		for (int q = 0; q < 7; q++) {
			lp->names[q] = ln[q];
			lp->vals[q] = mkint(q == 2 || q == 3 ? V_BOOL : V_INT, lv[q]);
		}
		lp->n = 7;
		c->nvars = save_n;
		c->scope = save_n;
		val lpv = {.t = V_NS, .ns = lp};
		if (push_var(c, name, item_at(c, seq, k)) || push_var(c, "loop", lpv))
			return;
		exec_range(c, i + 1, e);
	}
	c->nvars = save_n;
	c->scope = save_scope;
	*ip = e;
}

static void st_set(ctx *c, int i)
{
	seg *s = &c->segs[i];
	P p;
	pinit(&p, c, s->kb, s->b);
	if (p.tk != T_NAME) {
		fail(c, FL_EFORMAT, s->off, "expected a name after 'set'");
		return;
	}
	size_t na = p.ta, nb = p.tb, aa = 0, ab = 0;
	next(&p);
	if (is_op(&p, ".")) {
		next(&p);
		aa = p.ta;
		ab = p.tb;
		next(&p);
	}
	if (is_op(&p, ",")) {
		notsup(c, s->off, "tuple assignment in 'set'");
		return;
	}
	if (!is_op(&p, "=")) {
		notsup(c, s->off, "a block 'set' (without '=')");
		return;
	}
	next(&p);
	val v = expr(&p, 1);
	at_end(&p);
	if (c->rc)
		return;
	if (aa) {
		val o = lookup(c, c->t + na, nb - na);
		if (o.t != V_NS) {
			fail(c, FL_EINVAL, s->off, "'%.*s' is not a namespace", (int)(nb - na),
			     c->t + na);
			return;
		}
		for (int k = 0; k < o.ns->n; k++)
			if (strlen(o.ns->names[k]) == ab - aa &&
			    !memcmp(o.ns->names[k], c->t + aa, ab - aa)) {
				o.ns->vals[k] = v;
				return;
			}
		if (o.ns->n == CHAT_NS_MAX) {
			notsup(c, s->off, "a namespace of more than 32 attributes");
			return;
		}
		char *nm = dupname(c, aa, ab);
		if (!nm)
			return;
		o.ns->names[o.ns->n] = nm;
		o.ns->vals[o.ns->n++] = v;
		return;
	}
	for (int k = c->nvars - 1; k >= c->scope; k--)
		if (strlen(c->vars[k].name) == nb - na &&
		    !memcmp(c->vars[k].name, c->t + na, nb - na)) {
			c->vars[k].v = v;
			return;
		}
	char *nm = dupname(c, na, nb);
	if (nm)
		push_var(c, nm, v);
}

static void exec_range_(ctx *c, int i, int end);
static void exec_range(ctx *c, int i, int end)
{
	if (!enter(c, i < c->nsegs ? c->segs[i].off : 0))
		return;
	exec_range_(c, i, end);
	leave(c);
}

static void exec_range_(ctx *c, int i, int end)
{
	for (; i < end && !c->rc; i++) {
		seg *s = &c->segs[i];
		if (s->kind == SEG_TEXT) {
			out_put(c, c->t + s->a, NULL, s->b - s->a);
		} else if (s->kind == SEG_EXPR) {
			P p;
			pinit(&p, c, s->a, s->b);
			val v = expr(&p, 1);
			at_end(&p);
			v = to_str(c, v, s->off);
			out_put(c, v.s, v.m, v.n);
		} else if (kw_is(c, i, "if")) {
			st_if(c, &i, end);
		} else if (kw_is(c, i, "for")) {
			st_for(c, &i, end);
		} else if (kw_is(c, i, "set")) {
			st_set(c, i);
		} else if (kw_is(c, i, "generation")) {
			int e = match_end(c, i, end, NULL, NULL, 0);
			if (e < 0)
				return;
			c->gen++;
			exec_range(c, i + 1, e);
			c->gen--;
			i = e;
		} else if (closes(c, i) || kw_is(c, i, "elif") || kw_is(c, i, "else")) {
			fail(c, FL_EFORMAT, s->off, "'%.*s' without its opening block",
			     (int)(s->kb - s->ka), c->t + s->ka);
		} else {
			char what[96];
			snprintf(what, sizeof what, "{%% %.*s %%}",
			         (int)(s->kb - s->ka > 40 ? 40 : s->kb - s->ka), c->t + s->ka);
			notsup(c, s->off, what);
		}
	}
}

/* Extends each assistant run over the end-of-turn marker right after it. */
static void mark_end_of_turn(ctx *c)
{
	const char *marks[] = {c->eos, "<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"};
	for (size_t k = 0; k < c->on; k++) {
		if (!c->om[k] || (k + 1 < c->on && c->om[k + 1]))
			continue;
		size_t e = k + 1, w = e;
		while (w < c->on && w - e < 4 && (c->o[w] == ' ' || c->o[w] == '\n'))
			w++;
		for (size_t q = 0; q < sizeof marks / sizeof marks[0]; q++) {
			size_t l = marks[q] ? strlen(marks[q]) : 0;
			if (l && w + l <= c->on && !memcmp(c->o + w, marks[q], l)) {
				memset(c->om + e, 1, w + l - e);
				k = w + l - 1;
				break;
			}
		}
	}
}

int fl_chat_render(const char *tmpl, const cJSON *messages, const char *bos, const char *eos,
                   int add_generation_prompt, fl_chat_out *out, char *err, size_t errlen)
{
	ctx c;
	memset(&c, 0, sizeof c);
	memset(out, 0, sizeof *out);
	c.t = tmpl;
	c.err = err;
	c.errlen = errlen;
	c.eos = eos ? eos : "";
	if (err && errlen)
		err[0] = 0;
	if (!cJSON_IsArray(messages)) {
		if (err && errlen)
			snprintf(err, errlen, "chat template: messages is not a list");
		return FL_EINVAL;
	}
	if (segment(&c) == 0 && check_nesting(&c) == 0) {
		val m = from_json(&c, messages, 0);
		val b = mkstr(bos ? bos : "", NULL, bos ? strlen(bos) : 0);
		val e = mkstr(c.eos, NULL, strlen(c.eos));
		push_var(&c, "messages", m);
		push_var(&c, "bos_token", b);
		push_var(&c, "eos_token", e);
		push_var(&c, "add_generation_prompt", mkint(V_BOOL, add_generation_prompt != 0));
		c.scope = c.nvars;
		exec_range(&c, 0, c.nsegs);
		if (!c.rc && !c.o)
			out_put(&c, "", NULL, 0);
	} else if (!c.rc) {
		c.rc = FL_ENOMEM;
	}
	if (!c.rc) {
		mark_end_of_turn(&c);
		out->text = c.o;
		out->mask = c.om;
		out->n = c.on;
	} else {
		free(c.o);
		free(c.om);
	}
	for (size_t k = 0; k < c.narena; k++)
		free(c.arena[k]);
	free(c.arena);
	free(c.segs);
	free(c.vars);
	return c.rc;
}

void fl_chat_out_free(fl_chat_out *o)
{
	if (!o)
		return;
	free(o->text);
	free(o->mask);
	memset(o, 0, sizeof *o);
}

static char *token_text(const cJSON *x)
{
	if (cJSON_IsObject(x))
		x = cJSON_GetObjectItemCaseSensitive(x, "content");
	return strdup(cJSON_IsString(x) ? x->valuestring : "");
}

int fl_chat_config_load(const char *dir, fl_chat_config *cf, char *err, size_t errlen)
{
	char path[4096], *buf = NULL;
	size_t len = 0;
	cJSON *root = NULL;
	int rv;
	memset(cf, 0, sizeof *cf);
	if ((size_t)snprintf(path, sizeof path, "%s/tokenizer_config.json", dir) >= sizeof path) {
		snprintf(err, errlen, "%s: path too long", dir);
		return FL_EINVAL;
	}
	rv = fl_read_file(path, CHAT_MAX_CONFIG, &buf, &len);
	if (rv == FL_ENOENT) {
		cf->bos_token = strdup("");
		cf->eos_token = strdup("");
		return cf->bos_token && cf->eos_token ? 0 : FL_ENOMEM;
	}
	if (rv != 0) {
		snprintf(err, errlen, "%s: cannot read (%s)", path, fl_strerror(rv));
		return rv;
	}
	if (!(root = cJSON_ParseWithLength(buf, len)) || !cJSON_IsObject(root)) {
		snprintf(err, errlen, "%s: not a JSON object", path);
		rv = FL_EFORMAT;
		goto fail;
	}
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
	if (cJSON_IsArray(t)) {
		const cJSON *x, *pick = NULL;
		cJSON_ArrayForEach(x, t)
		{
			const cJSON *n = cJSON_GetObjectItemCaseSensitive(x, "name");
			if (cJSON_IsString(n) && !strcmp(n->valuestring, "default"))
				pick = cJSON_GetObjectItemCaseSensitive(x, "template");
		}
		t = pick;
	}
	if (t && !cJSON_IsNull(t) && !cJSON_IsString(t)) {
		snprintf(err, errlen, "%s: field chat_template is not a string", path);
		rv = FL_EFORMAT;
		goto fail;
	}
	rv = FL_ENOMEM;
	if (cJSON_IsString(t) && !(cf->chat_template = strdup(t->valuestring)))
		goto fail;
	cf->bos_token = token_text(cJSON_GetObjectItemCaseSensitive(root, "bos_token"));
	cf->eos_token = token_text(cJSON_GetObjectItemCaseSensitive(root, "eos_token"));
	if (!cf->bos_token || !cf->eos_token)
		goto fail;
	cJSON_Delete(root);
	free(buf);
	return 0;
fail:
	cJSON_Delete(root);
	free(buf);
	fl_chat_config_free(cf);
	return rv;
}

void fl_chat_config_free(fl_chat_config *c)
{
	if (!c)
		return;
	free(c->chat_template);
	free(c->bos_token);
	free(c->eos_token);
	memset(c, 0, sizeof *c);
}
