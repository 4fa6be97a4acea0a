/*
 * tests/sign_test.c — privacy/sign: key files (modes, overwrite refusal, bad
 * content), hex, allow lists, and the envelope signature (valid, one flipped
 * byte anywhere, the digest layout).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "privacy/sign.h"
#include "tests/test.h"

static char tmpdir[256];

static const char *tpath(const char *name)
{
	static char buf[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
	return buf[k];
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		exit(1);
	close(fd);
	chmod(path, mode);
}

static void read_text(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	size_t got = f ? fread(buf, 1, n - 1, f) : 0;
	buf[got] = 0;
	if (f)
		fclose(f);
}

static void test_keygen_files_and_modes(void)
{
	uint8_t pk[PRIV_PK_BYTES], pk2[PRIV_PK_BYTES];
	struct stat st;
	CHECK_RC(priv_keygen(tpath("alice"), 0, pk));
	CHECK(stat(tpath("alice.key"), &st) == 0);
	CHECK((st.st_mode & 0777) == 0600);
	CHECK(stat(tpath("alice.pub"), &st) == 0);
	char text[256], hex[PRIV_PK_HEX];
	read_text(tpath("alice.key"), text, sizeof text);
	CHECK(strlen(text) == 65 && text[64] == '\n');
	read_text(tpath("alice.pub"), text, sizeof text);
	priv_pk_to_hex(pk, hex);
	CHECK(strlen(text) == 65 && !strncmp(text, hex, 64) && text[64] == '\n');
	priv_key k;
	CHECK_RC(priv_key_load(&k, tpath("alice.key")));
	CHECK(memcmp(k.pk, pk, PRIV_PK_BYTES) == 0);
	CHECK_RC(priv_pub_load(pk2, tpath("alice.pub")));
	CHECK(memcmp(pk2, pk, PRIV_PK_BYTES) == 0);
	priv_key_wipe(&k);
	uint8_t zero[sizeof k];
	memset(zero, 0, sizeof zero);
	CHECK(memcmp(&k, zero, sizeof k) == 0);
}

static void test_keygen_refuses_overwrite(void)
{
	uint8_t pk[PRIV_PK_BYTES], pk2[PRIV_PK_BYTES], pk3[PRIV_PK_BYTES];
	char before[256], after[256];
	CHECK_RC(priv_keygen(tpath("bob"), 0, pk));
	read_text(tpath("bob.key"), before, sizeof before);
	CHECK(priv_keygen(tpath("bob"), 0, pk2) == FL_EINVAL);
	read_text(tpath("bob.key"), after, sizeof after);
	CHECK(strcmp(before, after) == 0);
	/* only the .pub present is also refused */
	unlink(tpath("bob.key"));
	CHECK(priv_keygen(tpath("bob"), 0, pk2) == FL_EINVAL);
	CHECK(access(tpath("bob.key"), F_OK) != 0);
	/* --force replaces both, secret still 0600 */
	CHECK_RC(priv_keygen(tpath("bob"), 1, pk3));
	CHECK(memcmp(pk, pk3, PRIV_PK_BYTES) != 0);
	struct stat st;
	CHECK(stat(tpath("bob.key"), &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK_RC(priv_pub_load(pk2, tpath("bob.pub")));
	CHECK(memcmp(pk2, pk3, PRIV_PK_BYTES) == 0);
}

static void test_key_load_rejects(void)
{
	priv_key k;
	uint8_t pk[PRIV_PK_BYTES];
	CHECK(priv_key_load(&k, tpath("missing.key")) == FL_ENOENT);
	CHECK_RC(priv_keygen(tpath("carol"), 0, pk));
	chmod(tpath("carol.key"), 0644);
	CHECK(priv_key_load(&k, tpath("carol.key")) == FL_EKEY);
	chmod(tpath("carol.key"), 0640); /* group: warned, accepted */
	CHECK_RC(priv_key_load(&k, tpath("carol.key")));
	const char *bad[] = {
	    "",
	    "abcd\n",
	    "zz00000000000000000000000000000000000000000000000000000000000000\n",
	    /* 63 and 65 hex characters */
	    "000000000000000000000000000000000000000000000000000000000000000\n",
	    "00000000000000000000000000000000000000000000000000000000000000000\n",
	    "0000000000000000000000000000000000 000000000000000000000000000000\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		write_text(tpath("bad.key"), bad[i], 0600);
		CHECK(priv_key_load(&k, tpath("bad.key")) == FL_EFORMAT);
		write_text(tpath("bad.pub"), bad[i], 0644);
		CHECK(priv_pub_load(pk, tpath("bad.pub")) == FL_EFORMAT);
	}
	/* an oversized file */
	char big[2000];
	memset(big, '0', sizeof big - 1);
	big[sizeof big - 1] = 0;
	write_text(tpath("big.key"), big, 0600);
	CHECK(priv_key_load(&k, tpath("big.key")) == FL_EFORMAT);
	/* surrounding whitespace is fine; a known seed gives a known public key */
	write_text(tpath("seed.key"),
	           "  0101010101010101010101010101010101010101010101010101010101010101 \n", 0600);
	CHECK_RC(priv_key_load(&k, tpath("seed.key")));
	uint8_t seed[32];
	memset(seed, 1, sizeof seed);
	priv_key k2;
	CHECK_RC(priv_key_from_seed(&k2, seed));
	CHECK(memcmp(k.pk, k2.pk, PRIV_PK_BYTES) == 0);
	priv_key_wipe(&k);
	priv_key_wipe(&k2);
}

static void test_hex(void)
{
	uint8_t pk[PRIV_PK_BYTES], back[PRIV_PK_BYTES];
	char hex[PRIV_PK_HEX];
	for (int i = 0; i < PRIV_PK_BYTES; i++)
		pk[i] = (uint8_t)(i * 37 + 11);
	priv_pk_to_hex(pk, hex);
	CHECK(strlen(hex) == 64);
	CHECK_RC(priv_pk_from_hex(hex, 64, back));
	CHECK(memcmp(pk, back, sizeof pk) == 0);
	CHECK(priv_pk_from_hex(hex, 63, back) == FL_EFORMAT);
	hex[10] = 'g';
	CHECK(priv_pk_from_hex(hex, 64, back) == FL_EFORMAT);
	CHECK(priv_pk_from_hex(NULL, 0, back) == FL_EFORMAT);
}

static void test_allow_list(void)
{
	priv_key a, b, c;
	CHECK_RC(priv_key_generate(&a));
	CHECK_RC(priv_key_generate(&b));
	CHECK_RC(priv_key_generate(&c));
	char ha[PRIV_PK_HEX], hb[PRIV_PK_HEX], text[1024];
	priv_pk_to_hex(a.pk, ha);
	priv_pk_to_hex(b.pk, hb);
	snprintf(text, sizeof text,
	         "# clients of the test run\n\n  %s   # alice\n%s\r\n\t\n%s\n# end\n", ha, hb, ha);
	write_text(tpath("allow.txt"), text, 0644);
	priv_allow *al = NULL;
	CHECK_RC(priv_allow_load(&al, tpath("allow.txt")));
	if (!al)
		return;
	CHECK(priv_allow_count(al) == 2);
	CHECK(priv_allow_contains(al, a.pk) == 1);
	CHECK(priv_allow_contains(al, b.pk) == 1);
	CHECK(priv_allow_contains(al, c.pk) == 0);
	CHECK_RC(priv_allow_add(al, c.pk));
	CHECK(priv_allow_contains(al, c.pk) == 1);
	CHECK(priv_allow_count(al) == 3);
	CHECK(memcmp(priv_allow_key(al, 0), priv_allow_key(al, 1), PRIV_PK_BYTES) < 0);
	priv_allow_free(al);
	priv_allow_free(NULL);
	/* a bad line fails the whole file */
	snprintf(text, sizeof text, "%s\nnot-a-key\n", ha);
	write_text(tpath("allow-bad.txt"), text, 0644);
	al = NULL;
	CHECK(priv_allow_load(&al, tpath("allow-bad.txt")) == FL_EFORMAT);
	CHECK(al == NULL);
	CHECK(priv_allow_load(&al, tpath("no-such-allow.txt")) == FL_ENOENT);
	/* many keys: sorted insert and lookups stay correct */
	CHECK_RC(priv_allow_new(&al));
	uint8_t keys[300][PRIV_PK_BYTES];
	for (int i = 0; i < 300; i++) {
		randombytes_buf(keys[i], PRIV_PK_BYTES);
		CHECK_RC(priv_allow_add(al, keys[i]));
	}
	int all = 1;
	for (int i = 0; i < 300; i++)
		all &= priv_allow_contains(al, keys[i]);
	CHECK(all);
	CHECK(priv_allow_count(al) == 300);
	priv_allow_free(al);
	priv_key_wipe(&a);
	priv_key_wipe(&b);
	priv_key_wipe(&c);
}

static void test_sign_verify_and_flips(void)
{
	priv_key k, other;
	CHECK_RC(priv_key_generate(&k));
	CHECK_RC(priv_key_generate(&other));
	uint8_t body[300], sig[PRIV_SIG_BYTES];
	for (size_t i = 0; i < sizeof body; i++)
		body[i] = (uint8_t)(i * 7);
	CHECK_RC(priv_envelope_sign(&k, 1, 8, body, sizeof body, sig));
	CHECK_RC(priv_envelope_verify(k.pk, 1, 8, body, sizeof body, sig));
	/* every single flipped byte of body, signature and key is rejected */
	int all = 1;
	for (size_t i = 0; i < sizeof body; i++) {
		body[i] ^= 0x01;
		all &= priv_envelope_verify(k.pk, 1, 8, body, sizeof body, sig) == FL_ESIG;
		body[i] ^= 0x01;
	}
	CHECK(all);
	all = 1;
	for (size_t i = 0; i < PRIV_SIG_BYTES; i++) {
		sig[i] ^= 0x80;
		all &= priv_envelope_verify(k.pk, 1, 8, body, sizeof body, sig) == FL_ESIG;
		sig[i] ^= 0x80;
	}
	CHECK(all);
	all = 1;
	uint8_t pk[PRIV_PK_BYTES];
	for (size_t i = 0; i < PRIV_PK_BYTES; i++) {
		memcpy(pk, k.pk, sizeof pk);
		pk[i] ^= 0x04;
		all &= priv_envelope_verify(pk, 1, 8, body, sizeof body, sig) == FL_ESIG;
	}
	CHECK(all);
	/* another key, type, version, or a truncated body */
	CHECK(priv_envelope_verify(other.pk, 1, 8, body, sizeof body, sig) == FL_ESIG);
	CHECK(priv_envelope_verify(k.pk, 1, 5, body, sizeof body, sig) == FL_ESIG);
	CHECK(priv_envelope_verify(k.pk, 2, 8, body, sizeof body, sig) == FL_ESIG);
	CHECK(priv_envelope_verify(k.pk, 1, 8, body, sizeof body - 1, sig) == FL_ESIG);
	CHECK_RC(priv_envelope_verify(k.pk, 1, 8, body, sizeof body, sig));
	/* an empty body signs and verifies */
	CHECK_RC(priv_envelope_sign(&k, 1, 9, NULL, 0, sig));
	CHECK_RC(priv_envelope_verify(k.pk, 1, 9, NULL, 0, sig));
	priv_key_wipe(&k);
	priv_key_wipe(&other);
}

/* The digest is BLAKE2b-512 of domain || u32le version || u32le type || u64le
 * len || body, computed here in one shot for comparison. */
static void test_digest_layout(void)
{
	uint8_t body[1000], d1[64], d2[64];
	for (size_t i = 0; i < sizeof body; i++)
		body[i] = (uint8_t)(i ^ 0x5a);
	uint8_t buf[19 + 16 + sizeof body];
	memcpy(buf, "fedlora-envelope-v1", 19);
	uint8_t hdr[16] = {0x01, 0, 0, 0, 0x08, 0, 0, 0, 0xe8, 0x03, 0, 0, 0, 0, 0, 0};
	memcpy(buf + 19, hdr, 16);
	memcpy(buf + 35, body, sizeof body);
	crypto_generichash(d1, 64, buf, sizeof buf, NULL, 0);
	CHECK_RC(priv_envelope_digest(1, 8, body, sizeof body, d2));
	CHECK(memcmp(d1, d2, 64) == 0);
	/* and the signature is Ed25519 over those 64 bytes */
	priv_key k;
	uint8_t sig[64];
	CHECK_RC(priv_key_generate(&k));
	CHECK_RC(priv_envelope_sign(&k, 1, 8, body, sizeof body, sig));
	CHECK(crypto_sign_verify_detached(sig, d1, 64, k.pk) == 0);
	priv_key_wipe(&k);
}

static const test_case cases[] = {
    TEST(test_keygen_files_and_modes),
    TEST(test_keygen_refuses_overwrite),
    TEST(test_key_load_rejects),
    TEST(test_hex),
    TEST(test_allow_list),
    TEST(test_sign_verify_and_flips),
    TEST(test_digest_layout),
    {0},
};

int main(int argc, char **argv)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/fedlora-sign.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	int rc = test_main(argc, argv, cases);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	return rc;
}
