/*
 * tokenizer/chat.h — chat templates: the Jinja2 subset that the
 * chat_template of Hugging Face tokenizer_config.json files uses (ChatML /
 * SmolLM2, Llama-3 Instruct, Mistral / Llama-2 [INST], Qwen2.5 without tools),
 * rendered the way transformers' apply_chat_template renders them
 * (trim_blocks and lstrip_blocks on).
 *
 * Supported: text, {{ expr }}, {# comments #}, whitespace control {%- -%}
 * {{- -}}, {% if/elif/else/endif %}, {% for x in expr %} ... {% endfor %}
 * with loop.index0/index/first/last/length/revindex0, {% set name = expr %},
 * {% set ns.attr = expr %}, namespace(a=..), raise_exception(msg),
 * {% generation %} ... {% endgeneration %}; expressions: string and integer
 * literals, true/false/none, + - * % ~, == != < > <= >=, and/or/not,
 * in / not in, is [not] defined/none/string/number/mapping/iterable/
 * boolean, a if c else b, member and index access (m.content, m['role'],
 * messages[0], messages[-1], messages[1:]), list literals, filters trim,
 * length, count, string, lower, upper, first, last, tojson (strings,
 * numbers, booleans, none) and the string methods strip/lstrip/rstrip,
 * startswith, endswith, split, lower, upper. Variables: messages,
 * bos_token, eos_token, add_generation_prompt.
 * Not supported (FL_ENOTSUP, "chat template uses <feature> at offset N, not
 * supported"): macros, call blocks, filters and functions not listed,
 * dict literals, floats, tools, blocks or expressions nested more than 64
 * deep.
 *
 * Assistant tokens: the mask marks every output byte that comes from the
 * "content" string of a message whose "role" is "assistant" (it follows the
 * bytes through concatenation, trim, strip and slicing), plus the
 * end-of-turn marker that the template writes right after it (after at most
 * a few spaces or newlines: eos_token, <|im_end|>, <|eot_id|>, <|end|>,
 * <end_of_turn>), plus anything inside {% generation %} blocks. That is what
 * TRL's assistant_only_loss trains on: the model learns to write the answer
 * and to stop, never to predict the user's text or the template's role
 * headers.
 *
 * Errors: 0 or a negative FL_E* code with a one-line reason in err.
 * Ownership: fl_chat_out buffers and fl_chat_config strings are malloc'd and
 * freed with fl_chat_out_free / fl_chat_config_free (NULL-safe).
 */
#ifndef FL_TOKENIZER_CHAT_H
#define FL_TOKENIZER_CHAT_H

#include <stddef.h>

#include <cjson/cJSON.h>

typedef struct fl_chat_out {
	char *text;          /* NUL-terminated rendering */
	unsigned char *mask; /* n bytes: 1 where the byte is an assistant byte */
	size_t n;
} fl_chat_out;

typedef struct fl_chat_config {
	char *chat_template; /* NULL when tokenizer_config.json has none */
	char *bos_token;     /* "" when absent */
	char *eos_token;     /* "" when absent */
} fl_chat_config;

/* Renders messages (a JSON array of {"role","content"} objects) with tmpl.
 * bos/eos are the token texts (NULL: ""). On failure out is zeroed. */
int fl_chat_render(const char *tmpl, const cJSON *messages, const char *bos, const char *eos,
                   int add_generation_prompt, fl_chat_out *out, char *err, size_t errlen);
void fl_chat_out_free(fl_chat_out *o);

/* Reads dir/tokenizer_config.json: chat_template (a string, or a list of
 * {"name","template"} from which "default" is taken), bos_token and
 * eos_token (strings or {"content": ...} objects). A folder without the file
 * gives an empty config (0); a file that does not parse is FL_EFORMAT. */
int fl_chat_config_load(const char *dir, fl_chat_config *c, char *err, size_t errlen);
void fl_chat_config_free(fl_chat_config *c);

#endif
