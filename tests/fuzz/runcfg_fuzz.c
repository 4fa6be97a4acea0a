/*
 * tests/fuzz/runcfg_fuzz.c — libFuzzer target for the coordinator's settings
 * JSON (coordinator/config.c: `--config FILE.json` and RUN/run.json on a
 * restart): coord_config_apply_json over the defaults on the fuzz bytes (an
 * exact-size heap copy, so an over-read is caught), then
 * coord_config_validate. Settings that apply must serialize
 * (coord_config_to_json, what the coordinator writes to run.json) and
 * re-apply over fresh defaults to the same JSON, with
 * coord_config_check_resume accepting the pair — a coordinator restarted on
 * its own run.json must get its settings back; otherwise the harness aborts.
 * Run: make fuzz-build && build-fuzz/fuzz/runcfg_fuzz tests/fuzz/corpus/runcfg
 */
#include "coordinator/config.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	coord_config c, c2;
	char err[512], *text, *js = NULL, *js2 = NULL;

	fz_init();
	text = malloc(size ? size : 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	coord_config_default(&c);
	if (coord_config_apply_json(&c, text, size, err, sizeof err) != 0) {
		free(text);
		return 0;
	}
	free(text);
	(void)coord_config_validate(&c, err, sizeof err);
	if (coord_config_to_json(&c, &js) != 0)
		abort();
	coord_config_default(&c2);
	if (coord_config_apply_json(&c2, js, strlen(js), err, sizeof err) != 0) {
		fprintf(stderr, "run.json does not re-apply: %s\n%s\n", err, js);
		abort();
	}
	if (coord_config_to_json(&c2, &js2) != 0 || strcmp(js, js2) != 0 ||
	    coord_config_check_resume(&c, &c2, err, sizeof err) != 0) {
		fprintf(stderr, "run.json round trip differs: %s\n%s\n---\n%s\n", err, js,
		        js2 ? js2 : "");
		abort();
	}
	free(js2);
	free(js);
	return 0;
}
