/*
 * tests/fuzz/keys_fuzz.c — libFuzzer target for the key and allow-list files
 * (privacy/sign.c). The first byte picks the parser for the rest: 0 -> a
 * secret key file (written mode 0600) through priv_key_load, 1 -> a public
 * key file through priv_pub_load, 2 -> an allow list through priv_allow_load
 * (then every key it holds must be found by priv_allow_contains), 3 -> the
 * bytes straight to priv_pk_from_hex. Rejections are expected; a crash,
 * sanitizer report, leak or inconsistent allow list is a bug.
 * Run: make fuzz-build && build-fuzz/fuzz/keys_fuzz tests/fuzz/corpus/keys
 */
#include "privacy/sign.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[512];
	uint8_t pk[PRIV_PK_BYTES];
	if (size < 1 || !fz_init())
		return 0;
	switch (data[0] % 4) {
	case 0: {
		priv_key k;
		if (fz_write(path, sizeof path, "k.key", data + 1, size - 1, 0600) != 0)
			return 0;
		if (priv_key_load(&k, path) == 0)
			priv_key_wipe(&k);
		break;
	}
	case 1:
		if (fz_write(path, sizeof path, "k.pub", data + 1, size - 1, 0644) != 0)
			return 0;
		(void)!priv_pub_load(pk, path);
		break;
	case 2: {
		priv_allow *a = NULL;
		if (fz_write(path, sizeof path, "allow", data + 1, size - 1, 0644) != 0)
			return 0;
		if (priv_allow_load(&a, path) != 0)
			return 0;
		for (size_t i = 0; i < priv_allow_count(a); i++)
			if (!priv_allow_contains(a, priv_allow_key(a, i)))
				abort();
		priv_allow_free(a);
		break;
	}
	default: {
		char *hex = malloc(size - 1 ? size - 1 : 1);
		if (!hex)
			return 0;
		memcpy(hex, data + 1, size - 1);
		(void)!priv_pk_from_hex(hex, size - 1, pk);
		free(hex);
		break;
	}
	}
	return 0;
}
