/*
 * privacy/sign.c — Ed25519 key files, allow lists and the envelope signature
 * of privacy/sign.h, on libsodium.
 *
 * Key files are small text files; every read is bounded (a key file larger
 * than a few hundred bytes is malformed), secret material passes only through
 * stack buffers that are wiped before return. Nothing here logs secrets.
 */
#include "privacy/sign.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"

_Static_assert(PRIV_PK_BYTES == crypto_sign_PUBLICKEYBYTES, "public key size");
_Static_assert(PRIV_SK_BYTES == crypto_sign_SECRETKEYBYTES, "secret key size");
_Static_assert(PRIV_SEED_BYTES == crypto_sign_SEEDBYTES, "seed size");
_Static_assert(PRIV_SIG_BYTES == crypto_sign_BYTES, "signature size");
_Static_assert(PRIV_DIGEST_BYTES <= crypto_generichash_BYTES_MAX, "digest size");

#define KEYFILE_MAX 512 /* bytes; key files are one line of hex */

int priv_sodium_init(void)
{
	return sodium_init() < 0 ? FL_ECRYPTO : 0;
}

int priv_key_generate(priv_key *k)
{
	if (priv_sodium_init() != 0)
		return FL_ECRYPTO;
	if (crypto_sign_keypair(k->pk, k->sk) != 0)
		return FL_ECRYPTO;
	return 0;
}

int priv_key_from_seed(priv_key *k, const uint8_t seed[PRIV_SEED_BYTES])
{
	if (priv_sodium_init() != 0)
		return FL_ECRYPTO;
	if (crypto_sign_seed_keypair(k->pk, k->sk, seed) != 0)
		return FL_ECRYPTO;
	return 0;
}

void priv_key_wipe(priv_key *k)
{
	if (k)
		sodium_memzero(k, sizeof *k);
}

/* Writes all of buf to fd; FL_EIO on error. */
static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return FL_EIO;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Creates path exclusively with `mode` and writes len bytes, fsynced. */
static int write_new_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		fl_log(FL_LOG_ERROR, "keys", "cannot create %s: %s", path, strerror(errno));
		return errno == EEXIST ? FL_EINVAL : FL_EIO;
	}
	/* The umask may have narrowed the mode (never widened); make it exact. */
	if (fchmod(fd, mode) != 0 || write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
		int e = errno;
		close(fd);
		unlink(path);
		fl_log(FL_LOG_ERROR, "keys", "cannot write %s: %s", path, strerror(e));
		return FL_EIO;
	}
	if (close(fd) != 0) {
		unlink(path);
		return FL_EIO;
	}
	return 0;
}

/* fsync of the directory holding path, so renames and creations persist. */
static void sync_dir_of(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (!slash) {
		strcpy(dir, ".");
	} else {
		size_t n = (size_t)(slash - path);
		if (n == 0)
			n = 1;
		if (n >= sizeof dir)
			return;
		memcpy(dir, path, n);
		dir[n] = 0;
	}
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Writes buf to path: exclusively, or (force) replacing it atomically. The
 * temp file of fl_write_atomic is created 0600, so a secret is never readable
 * by others even before its mode is set. */
static int put_file(const char *path, const void *buf, size_t len, mode_t mode, int force)
{
	int rv;

	if (!force)
		return write_new_file(path, buf, len, mode);
	if ((rv = fl_write_atomic(path, buf, len, mode)) != 0)
		fl_log(FL_LOG_ERROR, "keys", "cannot write %s: %s", path, strerror(errno));
	return rv;
}

int priv_keygen(const char *prefix, int force, uint8_t pk_out[PRIV_PK_BYTES])
{
	char keypath[4096], pubpath[4096];
	if (!prefix || !*prefix)
		return FL_EINVAL;
	if ((size_t)snprintf(keypath, sizeof keypath, "%s.key", prefix) >= sizeof keypath ||
	    (size_t)snprintf(pubpath, sizeof pubpath, "%s.pub", prefix) >= sizeof pubpath)
		return FL_EINVAL;
	if (!force) {
		struct stat st;
		if (lstat(keypath, &st) == 0 || lstat(pubpath, &st) == 0) {
			fl_log(FL_LOG_ERROR, "keys",
			       "%s.key or %s.pub exists (use --force to replace)", prefix, prefix);
			return FL_EINVAL;
		}
	}
	priv_key k;
	char line[2 * PRIV_SEED_BYTES + 2];
	char publine[PRIV_PK_HEX + 1];
	int rv = priv_key_generate(&k);
	if (rv != 0)
		goto done;
	/* The seed is the first half of libsodium's secret key. */
	sodium_bin2hex(line, sizeof line, k.sk, PRIV_SEED_BYTES);
	line[2 * PRIV_SEED_BYTES] = '\n';
	priv_pk_to_hex(k.pk, publine);
	publine[PRIV_PK_HEX - 1] = '\n';
	if ((rv = put_file(keypath, line, 2 * PRIV_SEED_BYTES + 1, 0600, force)) != 0)
		goto done;
	if ((rv = put_file(pubpath, publine, PRIV_PK_HEX, 0644, force)) != 0) {
		if (!force)
			unlink(keypath);
		goto done;
	}
	sync_dir_of(keypath);
	if (pk_out)
		memcpy(pk_out, k.pk, PRIV_PK_BYTES);
done:
	sodium_memzero(line, sizeof line);
	priv_key_wipe(&k);
	return rv;
}

/* Reads a small file into buf (NUL-terminated); *st gets its fstat. */
static int read_small(const char *path, char *buf, size_t cap, size_t *len, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		fl_log(FL_LOG_ERROR, "keys", "cannot open %s: %s", path, strerror(e));
		return e == ENOENT ? FL_ENOENT : FL_EIO;
	}
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
		close(fd);
		fl_log(FL_LOG_ERROR, "keys", "%s is not a regular file", path);
		return FL_EIO;
	}
	size_t n = 0;
	for (;;) {
		if (n + 1 >= cap) {
			close(fd);
			fl_log(FL_LOG_ERROR, "keys", "%s is too large for a key file", path);
			return FL_EFORMAT;
		}
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return FL_EIO;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	*len = n;
	return 0;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Trims whitespace around buf[0..len) -> [*b, *b + *n). */
static void trim(const char *buf, size_t len, const char **b, size_t *n)
{
	size_t s = 0, e = len;
	while (s < e && is_space(buf[s]))
		s++;
	while (e > s && is_space(buf[e - 1]))
		e--;
	*b = buf + s;
	*n = e - s;
}

/* Exactly 2*outlen hex characters -> out; FL_EFORMAT otherwise. */
static int hex_exact(const char *hex, size_t len, uint8_t *out, size_t outlen)
{
	size_t got = 0;
	const char *end = NULL;
	if (len != 2 * outlen)
		return FL_EFORMAT;
	if (sodium_hex2bin(out, outlen, hex, len, NULL, &got, &end) != 0 || got != outlen ||
	    end != hex + len)
		return FL_EFORMAT;
	return 0;
}

int priv_key_load(priv_key *k, const char *path)
{
	char buf[KEYFILE_MAX];
	uint8_t seed[PRIV_SEED_BYTES];
	struct stat st;
	size_t len = 0, n;
	const char *b;
	int rv;
	memset(k, 0, sizeof *k);
	if ((rv = priv_sodium_init()) != 0)
		return rv;
	if ((rv = read_small(path, buf, sizeof buf, &len, &st)) != 0)
		goto done;
	if (st.st_mode & 0007) {
		fl_log(FL_LOG_ERROR, "keys",
		       "secret key %s is accessible to other users (mode %04o); run chmod 600 %s",
		       path, (unsigned)(st.st_mode & 07777), path);
		rv = FL_EKEY;
		goto done;
	}
	if (st.st_mode & 0070)
		fl_log(FL_LOG_WARN, "keys", "secret key %s is group-accessible (mode %04o)", path,
		       (unsigned)(st.st_mode & 07777));
	trim(buf, len, &b, &n);
	if (hex_exact(b, n, seed, sizeof seed) != 0) {
		fl_log(FL_LOG_ERROR, "keys", "%s is not a fedlora secret key (64 hex characters)",
		       path);
		rv = FL_EFORMAT;
		goto done;
	}
	rv = priv_key_from_seed(k, seed);
done:
	sodium_memzero(buf, sizeof buf);
	sodium_memzero(seed, sizeof seed);
	if (rv != 0)
		priv_key_wipe(k);
	return rv;
}

int priv_pub_load(uint8_t pk[PRIV_PK_BYTES], const char *path)
{
	char buf[KEYFILE_MAX];
	struct stat st;
	size_t len = 0, n;
	const char *b;
	int rv = read_small(path, buf, sizeof buf, &len, &st);
	if (rv != 0)
		return rv;
	trim(buf, len, &b, &n);
	if (hex_exact(b, n, pk, PRIV_PK_BYTES) != 0) {
		fl_log(FL_LOG_ERROR, "keys", "%s is not a fedlora public key (64 hex characters)",
		       path);
		return FL_EFORMAT;
	}
	return 0;
}

void priv_pk_to_hex(const uint8_t pk[PRIV_PK_BYTES], char out[PRIV_PK_HEX])
{
	sodium_bin2hex(out, PRIV_PK_HEX, pk, PRIV_PK_BYTES);
}

int priv_pk_from_hex(const char *hex, size_t len, uint8_t pk[PRIV_PK_BYTES])
{
	if (!hex)
		return FL_EFORMAT;
	return hex_exact(hex, len, pk, PRIV_PK_BYTES);
}

/* ---- allow lists ---- */

struct priv_allow {
	uint8_t (*keys)[PRIV_PK_BYTES]; /* sorted by memcmp */
	size_t n, cap;
};

int priv_allow_new(priv_allow **out)
{
	*out = calloc(1, sizeof **out);
	return *out ? 0 : FL_ENOMEM;
}

void priv_allow_free(priv_allow *a)
{
	if (!a)
		return;
	free(a->keys);
	free(a);
}

/* Index of the first key >= pk. */
static size_t allow_lower(const priv_allow *a, const uint8_t *pk)
{
	size_t lo = 0, hi = a->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (memcmp(a->keys[mid], pk, PRIV_PK_BYTES) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int priv_allow_add(priv_allow *a, const uint8_t pk[PRIV_PK_BYTES])
{
	size_t i = allow_lower(a, pk);
	if (i < a->n && memcmp(a->keys[i], pk, PRIV_PK_BYTES) == 0)
		return 0;
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 16;
		void *p = realloc(a->keys, cap * PRIV_PK_BYTES);
		if (!p)
			return FL_ENOMEM;
		a->keys = p;
		a->cap = cap;
	}
	memmove(a->keys[i + 1], a->keys[i], (a->n - i) * PRIV_PK_BYTES);
	memcpy(a->keys[i], pk, PRIV_PK_BYTES);
	a->n++;
	return 0;
}

int priv_allow_contains(const priv_allow *a, const uint8_t pk[PRIV_PK_BYTES])
{
	if (!a || a->n == 0)
		return 0;
	size_t i = allow_lower(a, pk);
	return i < a->n && memcmp(a->keys[i], pk, PRIV_PK_BYTES) == 0;
}

size_t priv_allow_count(const priv_allow *a)
{
	return a ? a->n : 0;
}

const uint8_t *priv_allow_key(const priv_allow *a, size_t i)
{
	return i < a->n ? a->keys[i] : NULL;
}

int priv_allow_load(priv_allow **out, const char *path)
{
	priv_allow *a = NULL;
	char line[1024];
	int rv, lineno = 0;
	*out = NULL;
	FILE *f = fopen(path, "re");
	if (!f) {
		int e = errno;
		fl_log(FL_LOG_ERROR, "keys", "cannot open allow list %s: %s", path, strerror(e));
		return e == ENOENT ? FL_ENOENT : FL_EIO;
	}
	if ((rv = priv_allow_new(&a)) != 0)
		goto fail;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		size_t len = strlen(line);
		if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
			fl_log(FL_LOG_ERROR, "keys", "%s:%d: line too long", path, lineno);
			rv = FL_EFORMAT;
			goto fail;
		}
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		const char *b;
		size_t n;
		trim(line, strlen(line), &b, &n);
		if (n == 0)
			continue;
		uint8_t pk[PRIV_PK_BYTES];
		if (priv_pk_from_hex(b, n, pk) != 0) {
			fl_log(FL_LOG_ERROR, "keys", "%s:%d: not a public key (64 hex characters)",
			       path, lineno);
			rv = FL_EFORMAT;
			goto fail;
		}
		if ((rv = priv_allow_add(a, pk)) != 0)
			goto fail;
	}
	if (ferror(f)) {
		rv = FL_EIO;
		goto fail;
	}
	fclose(f);
	*out = a;
	return 0;
fail:
	fclose(f);
	priv_allow_free(a);
	return rv;
}

/* ---- envelope signature ---- */

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int priv_envelope_digest(uint32_t version, uint32_t type, const uint8_t *body, size_t body_len,
                         uint8_t digest[PRIV_DIGEST_BYTES])
{
	crypto_generichash_state st;
	uint8_t hdr[16];
	if (priv_sodium_init() != 0)
		return FL_ECRYPTO;
	if (body_len > 0 && !body)
		return FL_EINVAL;
	put_le(hdr, version, 4);
	put_le(hdr + 4, type, 4);
	put_le(hdr + 8, (uint64_t)body_len, 8);
	if (crypto_generichash_init(&st, NULL, 0, PRIV_DIGEST_BYTES) != 0 ||
	    crypto_generichash_update(&st, (const uint8_t *)PRIV_SIGN_DOMAIN,
	                              sizeof PRIV_SIGN_DOMAIN - 1) != 0 ||
	    crypto_generichash_update(&st, hdr, sizeof hdr) != 0)
		return FL_ECRYPTO;
	/* Stream the body in pieces: libsodium takes unsigned long long lengths,
	 * but keep each update modest so huge bodies never need special care. */
	size_t off = 0;
	while (off < body_len) {
		size_t n = body_len - off;
		if (n > ((size_t)1 << 30))
			n = (size_t)1 << 30;
		if (crypto_generichash_update(&st, body + off, n) != 0)
			return FL_ECRYPTO;
		off += n;
	}
	if (crypto_generichash_final(&st, digest, PRIV_DIGEST_BYTES) != 0)
		return FL_ECRYPTO;
	return 0;
}

int priv_envelope_sign(const priv_key *k, uint32_t version, uint32_t type, const uint8_t *body,
                       size_t body_len, uint8_t sig[PRIV_SIG_BYTES])
{
	uint8_t d[PRIV_DIGEST_BYTES];
	int rv = priv_envelope_digest(version, type, body, body_len, d);
	if (rv != 0)
		return rv;
	if (crypto_sign_detached(sig, NULL, d, sizeof d, k->sk) != 0)
		return FL_ECRYPTO;
	return 0;
}

int priv_envelope_verify(const uint8_t pk[PRIV_PK_BYTES], uint32_t version, uint32_t type,
                         const uint8_t *body, size_t body_len, const uint8_t sig[PRIV_SIG_BYTES])
{
	uint8_t d[PRIV_DIGEST_BYTES];
	if (priv_envelope_digest(version, type, body, body_len, d) != 0)
		return FL_ESIG;
	if (crypto_sign_verify_detached(sig, d, sizeof d, pk) != 0)
		return FL_ESIG;
	return 0;
}
