/*
 * tests/fuzz/config_fuzz.c — libFuzzer target for the Hugging Face
 * config.json parser (model/config.c): model_config_parse on the fuzz bytes
 * (an exact-size heap copy, so an over-read is caught), then
 * model_config_validate and, for a valid config, model_config_num_params and
 * the rotary frequencies of its rope scaling (model_rope_inv_freq), which
 * must all be finite and positive: the validated ranges promise that.
 * Run: make fuzz-build && build-fuzz/fuzz/config_fuzz tests/fuzz/corpus/config
 */
#include "model/config.h"

#include <math.h>

#include "model/ops.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	model_config c;
	char *text;
	volatile size_t sink;
	fz_init();
	text = malloc(size ? size : 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	memset(&c, 0, sizeof c);
	if (model_config_parse(&c, text, size, "config.json") == 0 &&
	    model_config_validate(&c, "config.json") == 0) {
		sink = model_config_num_params(&c);
		(void)sink;
		float inv[2048]; /* head_dim up to 4096: larger ones cost time, not coverage */
		if (c.head_dim <= 4096) {
			model_rope_inv_freq(inv, c.head_dim, c.rope_theta, &c.rope_scaling);
			for (int i = 0; i < c.head_dim / 2; i++)
				if (!(inv[i] > 0) || !isfinite(inv[i]))
					abort();
		}
	}
	free(text);
	return 0;
}
