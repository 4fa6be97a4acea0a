/*
 * tests/fuzz/data_fuzz.c — libFuzzer target for the client's training data
 * loader (client/data.c) and chat templates (tokenizer/chat.c). The first
 * byte b picks the mode (b % 4) and, for the loader, the sequence length
 * (T = 4 + (b / 4) % 32); the rest is:
 *   0: a .jsonl file ({"text"}, {"messages"}, {"prompt","completion"} lines),
 *      loaded with a ChatML template (SmolLM2's) and bos/eos texts;
 *   1: a plain text / fortune file, loaded;
 *   2: a chat template, rendered (fl_chat_render) over fixed conversations,
 *      with and without the generation prompt;
 *   3: a tokenizer_config.json (fl_chat_config_load), whose template, when
 *      there is one, is rendered like mode 2.
 * Every row and mask of a loaded data set is read (so a short allocation is
 * caught) and every token must lie in [0, 256 + specials); a rendering's
 * mask must cover its text. Otherwise the harness aborts.
 * Run: make fuzz-build && build-fuzz/fuzz/data_fuzz tests/fuzz/corpus/data
 */
#include "client/data.h"
#include "tests/fuzz/fuzz_util.h"
#include "tokenizer/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char chatml[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}";

static const char *const convs[] = {
    "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\"},"
    "{\"role\":\"assistant\",\"content\":\"  Hello! \"},{\"role\":\"user\",\"content\":\"2+2?\"},"
    "{\"role\":\"assistant\",\"content\":\"4\"}]",
    "[{\"role\":\"user\",\"content\":\"Gr\\u00fc\\u00df dich\"}]",
    "[]",
};

static void render(const char *tmpl)
{
	static cJSON *msgs[sizeof convs / sizeof convs[0]];
	char err[256];
	for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
		if (!msgs[i] && !(msgs[i] = cJSON_Parse(convs[i])))
			abort();
		for (int gen = 0; gen < 2; gen++) {
			fl_chat_out o;
			if (fl_chat_render(tmpl, msgs[i], "<s>", "</s>", gen, &o, err,
			                   sizeof err) != 0)
				continue;
			if (!o.text || (o.n && !o.mask) || o.text[o.n] != 0)
				abort();
			for (size_t k = 0; k < o.n; k++)
				if (o.mask[k] > 1)
					abort();
			fl_chat_out_free(&o);
		}
	}
}

static void load(const char *path, int T, int chat)
{
	client_data_opts o;
	client_data *d = NULL;
	char err[512];
	client_data_opts_default(&o);
	o.seq_len = T;
	o.max_bytes = 1 << 20;
	if (chat) {
		o.chat_template = chatml;
		o.bos_text = "<s>";
		o.eos_text = "</s>";
	}
	if (client_data_load(&d, path, &o, err, sizeof err) != 0)
		return;
	for (int split = 0; split < 2; split++) {
		long n = split ? d->n_eval : d->n_train;
		for (long i = 0; i < n; i++) {
			const int32_t *r =
			    split ? client_data_eval_seq(d, i) : client_data_train_seq(d, i);
			const uint8_t *m =
			    split ? client_data_eval_mask(d, i) : client_data_train_mask(d, i);
			for (int j = 0; j <= d->T; j++)
				if (r[j] < 0 || r[j] >= 256 + 16 || (m && m[j] > 1))
					abort();
		}
	}
	client_data_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[512], err[256];
	const char *d = fz_init();
	if (!d || size < 1)
		return 0;
	int mode = data[0] % 4, T = 4 + (data[0] / 4) % 32;
	data++;
	size--;
	if (mode == 0 || mode == 1) {
		if (fz_write(path, sizeof path, mode == 0 ? "d.jsonl" : "d.txt", data, size,
		             0600) == 0)
			load(path, T, mode == 0);
	} else if (mode == 2) {
		char *t = malloc(size + 1);
		if (!t)
			return 0;
		memcpy(t, data, size);
		t[size] = 0;
		render(t);
		free(t);
	} else {
		fl_chat_config c;
		if (fz_write(path, sizeof path, "tokenizer_config.json", data, size, 0600) != 0 ||
		    fl_chat_config_load(d, &c, err, sizeof err) != 0)
			return 0;
		if (c.chat_template)
			render(c.chat_template);
		fl_chat_config_free(&c);
	}
	return 0;
}
