/*
 * privacy/sign.h — identities and message signatures: Ed25519 key files,
 * allow lists of public keys, and the hash-then-sign envelope signature.
 *
 * Key files written by priv_keygen / `fedlora keygen --out DIR/NAME`:
 *   NAME.key  the 32-byte Ed25519 seed as 64 lowercase hex characters and a
 *             newline; created with mode 0600 (O_CREAT|O_EXCL, never widened).
 *   NAME.pub  the 32-byte public key as 64 hex characters and a newline.
 * A public key is also the peer's key id everywhere (allow lists, logs,
 * state.json). An allow list file holds one hex public key per line; '#'
 * starts a comment, blank lines and surrounding whitespace are ignored.
 *
 * Envelope signature (the only thing signed in fedlora):
 *   digest = BLAKE2b-512(PRIV_SIGN_DOMAIN || u32le version || u32le type
 *                        || u64le body_len || body)          (streamed)
 *   sig    = crypto_sign_detached(digest, 64 bytes, secret key)
 * The domain string has no terminating NUL in the hash.
 *
 * Secrets: a priv_key holds the secret key; wipe it with priv_key_wipe when
 * done (sodium_memzero). Nothing here logs key material; public keys may be
 * logged as hex. Loading a secret key file refuses one that other users can
 * read or write (FL_EKEY, like ssh), and warns when the group can.
 *
 * Does not: encrypt anything (transport confidentiality is TLS, core/net.h),
 * or decide which keys are admitted (the coordinator does, with priv_allow).
 */
#ifndef FL_PRIVACY_SIGN_H
#define FL_PRIVACY_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define PRIV_PK_BYTES     32                      /* crypto_sign_PUBLICKEYBYTES */
#define PRIV_SK_BYTES     64                      /* crypto_sign_SECRETKEYBYTES (seed || pk) */
#define PRIV_SEED_BYTES   32                      /* crypto_sign_SEEDBYTES */
#define PRIV_SIG_BYTES    64                      /* crypto_sign_BYTES */
#define PRIV_DIGEST_BYTES 64                      /* BLAKE2b-512 */
#define PRIV_PK_HEX       (2 * PRIV_PK_BYTES + 1) /* hex + NUL */
#define PRIV_SIGN_DOMAIN  "fedlora-envelope-v1"

#define PRIV_WUR __attribute__((warn_unused_result))

/* A key pair. sk holds the secret; wipe with priv_key_wipe. */
typedef struct priv_key {
	uint8_t pk[PRIV_PK_BYTES];
	uint8_t sk[PRIV_SK_BYTES];
} priv_key;

/* Initializes libsodium (idempotent, thread-safe). FL_ECRYPTO on failure.
 * Every function below calls it; callers need not. */
int priv_sodium_init(void);

/* Fresh random key pair in memory. */
int priv_key_generate(priv_key *k);
/* Key pair from a 32-byte seed (deterministic; tests and key files). */
int priv_key_from_seed(priv_key *k, const uint8_t seed[PRIV_SEED_BYTES]);
/* sodium_memzero of the whole struct. NULL is a no-op. */
void priv_key_wipe(priv_key *k);

/* Writes prefix.key (mode 0600, created exclusively) and prefix.pub for a fresh
 * key pair. With force = 0 an existing prefix.key or prefix.pub is an error
 * (FL_EINVAL, nothing written); with force = 1 both are replaced (the new secret
 * is written to a fresh 0600 temporary file and renamed over the old one).
 * Files are fsynced. If pk_out is not NULL it receives the public key.
 * FL_EIO on file errors (errno kept). */
int priv_keygen(const char *prefix, int force, uint8_t pk_out[PRIV_PK_BYTES]);

/* Loads a secret key file (64 hex characters of seed, optional surrounding
 * whitespace) into k. FL_ENOENT if missing, FL_EIO on read errors, FL_EFORMAT
 * on bad content, FL_EKEY if the file is accessible to other users. The
 * intermediate buffers are wiped. */
int priv_key_load(priv_key *k, const char *path) PRIV_WUR;
/* Loads a public key file (64 hex characters, optional surrounding
 * whitespace). FL_ENOENT / FL_EIO / FL_EFORMAT as above. */
int priv_pub_load(uint8_t pk[PRIV_PK_BYTES], const char *path) PRIV_WUR;

/* pk -> 64 lowercase hex characters + NUL. */
void priv_pk_to_hex(const uint8_t pk[PRIV_PK_BYTES], char out[PRIV_PK_HEX]);
/* Exactly 64 hex characters (len of them, no whitespace) -> pk; FL_EFORMAT
 * otherwise. */
int priv_pk_from_hex(const char *hex, size_t len, uint8_t pk[PRIV_PK_BYTES]) PRIV_WUR;

/* A set of allowed public keys. Owned by the caller; priv_allow_free(NULL) is
 * a no-op. Lookups are O(log n) (sorted); not thread-safe against add. */
typedef struct priv_allow priv_allow;
int priv_allow_new(priv_allow **out);
/* Reads an allow list file. FL_ENOENT / FL_EIO / FL_EFORMAT (with the line
 * number logged) on errors; duplicates are accepted once. */
int priv_allow_load(priv_allow **out, const char *path) PRIV_WUR;
/* Adds a key (enrollment); adding a present key is a no-op. */
int priv_allow_add(priv_allow *a, const uint8_t pk[PRIV_PK_BYTES]);
/* 1 if pk is in the set, 0 otherwise. */
int priv_allow_contains(const priv_allow *a, const uint8_t pk[PRIV_PK_BYTES]) PRIV_WUR;
size_t priv_allow_count(const priv_allow *a);
/* i-th key in sorted order (i < count), for persisting the registry. */
const uint8_t *priv_allow_key(const priv_allow *a, size_t i);
void priv_allow_free(priv_allow *a);

/* BLAKE2b-512 digest of an envelope as described above. */
int priv_envelope_digest(uint32_t version, uint32_t type, const uint8_t *body, size_t body_len,
                         uint8_t digest[PRIV_DIGEST_BYTES]);
/* Signs an envelope's (version, type, body) with k. FL_ECRYPTO on failure. */
int priv_envelope_sign(const priv_key *k, uint32_t version, uint32_t type, const uint8_t *body,
                       size_t body_len, uint8_t sig[PRIV_SIG_BYTES]);
/* 0 if sig is a valid signature of (version, type, body) by pk, FL_ESIG
 * otherwise (including a malformed public key). */
int priv_envelope_verify(const uint8_t pk[PRIV_PK_BYTES], uint32_t version, uint32_t type,
                         const uint8_t *body, size_t body_len,
                         const uint8_t sig[PRIV_SIG_BYTES]) PRIV_WUR;

#endif
