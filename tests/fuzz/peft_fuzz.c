/*
 * tests/fuzz/peft_fuzz.c — libFuzzer target for the PEFT folder reader
 * (lora/peft.h, what `fedlora eval --adapter DIR` runs): the fuzz bytes are
 * split into DIR/adapter_config.json and DIR/adapter_model.safetensors by a
 * 4-byte little-endian length prefix (the config's length, cut to what is
 * there; the rest is the weights file). lora_peft_config_read, then
 * model_lora_adapter_new for a fixed 2-layer model, then
 * lora_peft_weights_read. An adapter that loads must export
 * (lora_peft_export) and load back with the same rank, alpha and values;
 * otherwise the harness aborts.
 * Run: make fuzz-build && build-fuzz/fuzz/peft_fuzz tests/fuzz/corpus/peft
 */
#include "lora/peft.h"
#include "model/llama.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const model_config fz_cfg = {
    .hidden_size = 16,
    .intermediate_size = 24,
    .num_layers = 2,
    .num_heads = 2,
    .num_kv_heads = 1,
    .head_dim = 8,
    .vocab_size = 32,
    .max_position_embeddings = 16,
    .tie_word_embeddings = 1,
    .bos_token_id = 1,
    .eos_token_id = 2,
    .rms_norm_eps = 1e-5f,
    .rope_theta = 10000.0f,
};

/* config_read + adapter_new + weights_read of dir; 0 and *out, or an error. */
static int load(const char *dir, lora_adapter **out)
{
	char err[512];
	lora_peft_config pc;
	lora_adapter *ad = NULL;
	int rv;

	*out = NULL;
	if ((rv = lora_peft_config_read(dir, &pc, err, sizeof err)) != 0)
		return rv;
	if ((rv = model_lora_adapter_new(&fz_cfg, pc.targets, pc.r, (float)pc.alpha, &ad)) != 0)
		return rv;
	if ((rv = lora_peft_weights_read(dir, ad, err, sizeof err)) != 0) {
		lora_adapter_free(ad);
		return rv;
	}
	*out = ad;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[512], dir[512], dir2[512], err[512];
	lora_adapter *a = NULL, *b = NULL;
	const char *d = fz_init();
	size_t clen;

	if (!d || size < 4)
		return 0;
	clen =
	    (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
	data += 4;
	size -= 4;
	if (clen > size)
		clen = size;
	snprintf(dir, sizeof dir, "%s/peft", d);
	snprintf(dir2, sizeof dir2, "%s/peft2", d);
	mkdir(dir, 0700);
	if (fz_write(path, sizeof path, "peft/" LORA_PEFT_CONFIG_FILE, data, clen, 0600) != 0 ||
	    fz_write(path, sizeof path, "peft/" LORA_PEFT_WEIGHTS_FILE, data + clen, size - clen,
	             0600) != 0)
		return 0;
	if (load(dir, &a) != 0)
		return 0;
	if (lora_peft_export(a, dir2, NULL, err, sizeof err) != 0 || load(dir2, &b) != 0 ||
	    !lora_adapter_same_shape(a, b) || a->r != b->r || a->alpha != b->alpha ||
	    memcmp(a->params, b->params, (a->n_a + a->n_b) * sizeof *a->params) != 0)
		abort();
	lora_adapter_free(b);
	lora_adapter_free(a);
	return 0;
}
