/*
 * tools/cmd_keygen.c — `fedlora keygen --out DIR/NAME [--force]`: writes an
 * Ed25519 key pair, NAME.key (secret seed, mode 0600) and NAME.pub (public
 * key, hex), and prints the public key, which is the identity to put on a
 * coordinator's allow list. Creates DIR (mode 0700) if it does not exist.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "privacy/sign.h"
#include "tools/cmds.h"

static void keygen_usage(FILE *f)
{
	fprintf(f, "usage: fedlora keygen --out DIR/NAME [--force]\n"
	           "\n"
	           "Writes an Ed25519 key pair: DIR/NAME.key (the secret, mode 0600) and\n"
	           "DIR/NAME.pub (the public key, 64 hex characters). The public key is\n"
	           "printed; add it to the coordinator's --allow file to admit this peer.\n"
	           "\n"
	           "  --out PREFIX  path prefix of the two files (required)\n"
	           "  --force       replace existing NAME.key / NAME.pub\n"
	           "  --help        this text\n");
}

/* mkdir of the directory part of prefix if missing (one level). */
static int ensure_parent(const char *prefix)
{
	char dir[4096];
	const char *slash = strrchr(prefix, '/');
	if (!slash || slash == prefix)
		return 0;
	size_t n = (size_t)(slash - prefix);
	if (n >= sizeof dir)
		return -1;
	memcpy(dir, prefix, n);
	dir[n] = 0;
	struct stat st;
	if (stat(dir, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -1;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "fedlora keygen: cannot create %s: %s\n", dir, strerror(errno));
		return -1;
	}
	return 0;
}

int cmd_keygen(int argc, char **argv)
{
	const char *out = NULL;
	int force = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			keygen_usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--force")) {
			force = 1;
		} else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			out = argv[++i];
		} else if (!strncmp(argv[i], "--out=", 6)) {
			out = argv[i] + 6;
		} else {
			fprintf(stderr, "fedlora keygen: unknown or incomplete option '%s'\n",
			        argv[i]);
			keygen_usage(stderr);
			return 2;
		}
	}
	if (!out || !*out) {
		fprintf(stderr, "fedlora keygen: --out DIR/NAME is required\n");
		keygen_usage(stderr);
		return 2;
	}
	if (ensure_parent(out) != 0)
		return 1;
	uint8_t pk[PRIV_PK_BYTES];
	int rv = priv_keygen(out, force, pk);
	if (rv != 0) {
		if (rv == FL_EINVAL)
			fprintf(stderr,
			        "fedlora keygen: %s.key or %s.pub already exists; "
			        "use --force to replace the key pair\n",
			        out, out);
		else
			fprintf(stderr, "fedlora keygen: cannot write %s.key / %s.pub: %s\n", out,
			        out, fl_strerror(rv));
		return 1;
	}
	char hex[PRIV_PK_HEX];
	priv_pk_to_hex(pk, hex);
	printf("%s\n", hex);
	fprintf(stderr, "wrote %s.key (secret, mode 0600) and %s.pub\n", out, out);
	return 0;
}
