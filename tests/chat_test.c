/*
 * tests/chat_test.c — chat templates (tokenizer/chat.h): the real templates
 * in tests/chat/ (*.jinja) rendered on tests/chat/conversations.json must give
 * tests/chat/expected.json (written by Jinja2 as transformers sets it up:
 * tests/reference/chat_parity.py --write), assistant masks, unsupported
 * features and malformed templates refused with a reason, and
 * tokenizer_config.json reading.
 *
 * `chat_test --render TEMPLATE_FILE MESSAGES_JSON BOS EOS ADD_GEN` prints one
 * rendering to stdout (used by tests/reference/chat_parity.py).
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "tests/test.h"
#include "tokenizer/chat.h"

static char *slurp(const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	if (fl_read_file(path, (size_t)16 << 20, &buf, &len) != 0)
		return NULL;
	return buf;
}

/* The masked bytes of a rendering, concatenated (caller frees). */
static char *masked(const fl_chat_out *o)
{
	char *s = calloc(1, o->n + 1);
	size_t k = 0;
	for (size_t i = 0; s && i < o->n; i++)
		if (o->mask[i])
			s[k++] = o->text[i];
	return s;
}

static int render_file(const char *path, const char *msgs, const char *bos, const char *eos,
                       int gen, fl_chat_out *o, char *err, size_t errlen)
{
	char *t = slurp(path);
	cJSON *m = cJSON_Parse(msgs);
	int rv = t && m ? fl_chat_render(t, m, bos, eos, gen, o, err, errlen) : FL_EIO;
	free(t);
	cJSON_Delete(m);
	return rv;
}

static void test_fixtures_match_jinja2(void)
{
	char *conv_s = slurp("tests/chat/conversations.json");
	char *exp_s = slurp("tests/chat/expected.json");
	cJSON *convs = conv_s ? cJSON_Parse(conv_s) : NULL;
	cJSON *exp = exp_s ? cJSON_Parse(exp_s) : NULL;
	glob_t g;
	int n = 0;
	CHECK(convs && exp);
	CHECK(glob("tests/chat/*.jinja", 0, NULL, &g) == 0);
	CHECK(g.gl_pathc >= 5);
	for (size_t k = 0; convs && exp && k < g.gl_pathc; k++) {
		char name[256];
		const char *b = strrchr(g.gl_pathv[k], '/') + 1;
		snprintf(name, sizeof name, "%.*s", (int)(strlen(b) - 6), b);
		char *tmpl = slurp(g.gl_pathv[k]);
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(exp, name), *c;
		CHECK(tmpl && e);
		cJSON_ArrayForEach(c, convs)
		{
			const char *cn = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
			const cJSON *want = cJSON_GetObjectItemCaseSensitive(e, cn);
			fl_chat_out o;
			char err[512];
			int rv = fl_chat_render(
			    tmpl, cJSON_GetObjectItemCaseSensitive(c, "messages"), "<s>", "</s>",
			    cJSON_IsTrue(
			        cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt")),
			    &o, err, sizeof err);
			if (cJSON_IsString(want)) {
				int same = rv == 0 && !strcmp(o.text, want->valuestring);
				if (!same)
					fprintf(stderr,
					        "  %s/%s: rv %d (%s)\n  got  %s\n  want %s\n", name,
					        cn, rv, err, rv ? "" : o.text, want->valuestring);
				CHECK(same);
			} else {
				/* the template raises on this conversation */
				CHECK(rv == FL_EINVAL && strstr(err, "raised"));
			}
			n++;
			fl_chat_out_free(&o);
		}
		free(tmpl);
	}
	CHECK(n >= 20);
	globfree(&g);
	cJSON_Delete(convs);
	cJSON_Delete(exp);
	free(conv_s);
	free(exp_s);
}

static const char *CONV = "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                          "{\"role\":\"user\",\"content\":\"Hi there\"},"
                          "{\"role\":\"assistant\",\"content\":\"  Hello! \"},"
                          "{\"role\":\"user\",\"content\":\"2+2?\"},"
                          "{\"role\":\"assistant\",\"content\":\"4\"}]";

static void check_mask(const char *tmpl, const char *msgs, const char *want)
{
	fl_chat_out o;
	char err[512];
	CHECK_RC(render_file(tmpl, msgs, "<s>", "</s>", 0, &o, err, sizeof err));
	char *got = masked(&o);
	if (!got || strcmp(got, want))
		fprintf(stderr, "  %s: assistant bytes '%s', want '%s'\n", tmpl, got ? got : "",
		        want);
	CHECK(got && !strcmp(got, want));
	free(got);
	fl_chat_out_free(&o);
}

/* Assistant bytes: the assistant content (through trim and concatenation)
 * plus the end-of-turn marker after it; nothing of user text, system text or
 * role headers. */
static void test_assistant_masks(void)
{
	check_mask("tests/chat/smollm2.jinja", CONV, "  Hello! <|im_end|>4<|im_end|>");
	check_mask("tests/chat/qwen2_5.jinja", CONV, "  Hello! <|im_end|>4<|im_end|>");
	check_mask("tests/chat/llama3.jinja", CONV, "Hello!<|eot_id|>4<|eot_id|>");
	check_mask("tests/chat/mistral.jinja",
	           "[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":"
	           "\"A1\"},{\"role\":\"user\",\"content\":\"R\"},{\"role\":\"assistant\","
	           "\"content\":\"A2\"}]",
	           "A1</s>A2</s>");
}

/* Changing user text changes no assistant byte (only shifts it). */
static void test_mask_ignores_user_text(void)
{
	const char *a = "[{\"role\":\"user\",\"content\":\"short\"},"
	                "{\"role\":\"assistant\",\"content\":\"answer\"}]";
	const char *b = "[{\"role\":\"user\",\"content\":\"a much longer question, with assistant "
	                "in it\"},{\"role\":\"assistant\",\"content\":\"answer\"}]";
	check_mask("tests/chat/smollm2.jinja", a, "answer<|im_end|>");
	check_mask("tests/chat/smollm2.jinja", b, "answer<|im_end|>");
}

static void test_generation_block(void)
{
	const char *t =
	    "{% for m in messages %}{{ m.role }}: {% if m.role == 'user' %}{% generation "
	    "%}<{{ m.content }}>{% endgeneration %}{% else %}{{ m.content }}{% endif "
	    "%};{% endfor %}";
	cJSON *m = cJSON_Parse("[{\"role\":\"user\",\"content\":\"u\"},"
	                       "{\"role\":\"bot\",\"content\":\"b\"}]");
	fl_chat_out o;
	char err[256];
	CHECK_RC(fl_chat_render(t, m, NULL, NULL, 0, &o, err, sizeof err));
	CHECK(!strcmp(o.text, "user: <u>;bot: b;"));
	char *s = masked(&o);
	CHECK(s && !strcmp(s, "<u>"));
	free(s);
	fl_chat_out_free(&o);
	cJSON_Delete(m);
}

static void test_unsupported_named(void)
{
	static const struct {
		const char *tmpl, *what;
	} cases[] = {
	    {"{% macro f(x) %}{{ x }}{% endmacro %}", "{% macro %} at offset 0"},
	    {"hi {{ messages | map(attribute='role') }}", "the filter |map at offset 17"},
	    {"{{ 1.5 }}", "a floating-point number at offset 3"},
	    {"{{ {'a': 1} }}", "a dict literal at offset 3"},
	    {"{{ strftime_now('%Y') }}", "the function strftime_now() at offset 3"},
	    {"{% for a, b in x %}{% endfor %}", "tuple unpacking"},
	    {"{{ messages[0].content.title() }}", "the method .title()"},
	};
	cJSON *m = cJSON_Parse(CONV);
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		fl_chat_out o;
		char err[256];
		int rv = fl_chat_render(cases[k].tmpl, m, NULL, NULL, 0, &o, err, sizeof err);
		if (rv != FL_ENOTSUP || !strstr(err, cases[k].what) ||
		    !strstr(err, "not supported"))
			fprintf(stderr, "  '%s': rv %d, '%s'\n", cases[k].tmpl, rv, err);
		CHECK(rv == FL_ENOTSUP && strstr(err, cases[k].what) &&
		      strstr(err, "not supported"));
		CHECK(o.text == NULL);
	}
	cJSON_Delete(m);
}

static void test_malformed_rejected(void)
{
	static const char *bad[] = {
	    "{{ messages",
	    "{% if x %}no end",
	    "{% endif %}",
	    "{{ 'unterminated }}",
	    "{% for m in %}{% endfor %}",
	    "{{ (1 }}",
	    "{% if 1 %}{% endfor %}",
	    "{{ 1 // 0 }}",
	    "{{ messages[ }}",
	    "{% set %}",
	    "{{ | trim }}",
	    "{{ 1 2 }}",
	};
	cJSON *m = cJSON_Parse(CONV);
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		fl_chat_out o;
		char err[256] = "";
		int rv = fl_chat_render(bad[k], m, NULL, NULL, 0, &o, err, sizeof err);
		if (rv == 0 || !err[0])
			fprintf(stderr, "  '%s' accepted (rv %d)\n", bad[k], rv);
		CHECK(rv != 0 && err[0]);
	}
	/* messages must be a list */
	cJSON *obj = cJSON_Parse("{\"role\":\"user\"}");
	fl_chat_out o;
	char err[256];
	CHECK(fl_chat_render("x", obj, NULL, NULL, 0, &o, err, sizeof err) == FL_EINVAL);
	cJSON_Delete(obj);
	cJSON_Delete(m);
}

/* Deep nesting is refused, not a stack overflow (fuzz: 200000 '(' or 'not'
 * crashed the recursive parser, 50000 nested ifs took minutes); moderate
 * nesting still renders. */
static void test_deep_nesting_refused(void)
{
	static const char *const unit[][3] = {
	    {"{{ ", "(", "1"}, {"{{ ", "not ", "1"},       {"{{ ", "- ", "1"},
	    {"{{ ", "[", "1"}, {"", "{% if true %}", "x"},
	};
	cJSON *m = cJSON_Parse(CONV);
	for (size_t k = 0; k < sizeof unit / sizeof unit[0]; k++) {
		for (int n = 8; n <= 100000; n = n == 8 ? 100000 : n + 1) {
			size_t ul = strlen(unit[k][1]), cap = 64 + (size_t)n * 32;
			char *t = malloc(cap), *p = t;
			const char *close = k == 0   ? ")"
			                    : k == 3 ? "]"
			                    : k == 4 ? "{% endif %}"
			                             : "";
			p += sprintf(p, "%s", unit[k][0]);
			for (int i = 0; i < n; i++, p += ul)
				memcpy(p, unit[k][1], ul);
			p += sprintf(p, "%s", unit[k][2]);
			for (int i = 0; i < n; i++)
				p += sprintf(p, "%s", close);
			sprintf(p, "%s", k == 3 ? " | length }}" : k < 4 ? " }}" : "");
			fl_chat_out o;
			char err[256] = "";
			int rv = fl_chat_render(t, m, NULL, NULL, 0, &o, err, sizeof err);
			if (n == 8) {
				CHECK_RC(rv);
				fl_chat_out_free(&o);
			} else {
				CHECK(rv == FL_ENOTSUP && strstr(err, "nesting deeper than 64"));
			}
			free(t);
		}
	}
	cJSON_Delete(m);
}

static void test_config_load(void)
{
	char dir[] = "/tmp/fedlora-chat-XXXXXX", path[300];
	fl_chat_config c;
	char err[512];
	CHECK(mkdtemp(dir) != NULL);
	/* no file: empty config */
	CHECK_RC(fl_chat_config_load(dir, &c, err, sizeof err));
	CHECK(c.chat_template == NULL && !strcmp(c.bos_token, "") && !strcmp(c.eos_token, ""));
	fl_chat_config_free(&c);
	snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs("{\"bos_token\": {\"content\": \"<B>\", \"lstrip\": false}, \"eos_token\": \"<E>\", "
	      "\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, "
	      "{\"name\": \"default\", \"template\": \"{{ bos_token }}D{{ eos_token }}\"}]}",
	      f);
	fclose(f);
	CHECK_RC(fl_chat_config_load(dir, &c, err, sizeof err));
	CHECK(c.chat_template && !strcmp(c.chat_template, "{{ bos_token }}D{{ eos_token }}"));
	CHECK(!strcmp(c.bos_token, "<B>") && !strcmp(c.eos_token, "<E>"));
	fl_chat_config_free(&c);
	fl_chat_config_free(NULL);
	f = fopen(path, "w");
	fputs("{\"chat_template\": 5}", f);
	fclose(f);
	CHECK(fl_chat_config_load(dir, &c, err, sizeof err) == FL_EFORMAT);
	CHECK(strstr(err, "tokenizer_config.json") && strstr(err, "chat_template"));
	f = fopen(path, "w");
	fputs("{not json", f);
	fclose(f);
	CHECK(fl_chat_config_load(dir, &c, err, sizeof err) == FL_EFORMAT);
	CHECK(strstr(err, "tokenizer_config.json") != NULL);
	unlink(path);
	rmdir(dir);
}

static const test_case cases[] = {
    TEST(test_fixtures_match_jinja2),
    TEST(test_assistant_masks),
    TEST(test_mask_ignores_user_text),
    TEST(test_generation_block),
    TEST(test_unsupported_named),
    TEST(test_malformed_rejected),
    TEST(test_deep_nesting_refused),
    TEST(test_config_load),
    {0},
};

int main(int argc, char **argv)
{
	if (argc == 7 && !strcmp(argv[1], "--render")) {
		fl_chat_out o;
		char err[512];
		int rv = render_file(argv[2], argv[3], argv[4], argv[5], atoi(argv[6]), &o, err,
		                     sizeof err);
		if (rv) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		fwrite(o.text, 1, o.n, stdout);
		fl_chat_out_free(&o);
		return 0;
	}
	return test_main(argc, argv, cases);
}
