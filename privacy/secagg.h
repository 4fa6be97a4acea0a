/*
 * privacy/secagg.h — the cryptographic core of SecAgg+-style secure
 * aggregation (Bell et al., CCS 2020): the coordinator learns the sum of the
 * surviving clients' vectors and nothing about any single one, even when
 * clients drop out after masking.
 *
 * Encoding: a value x is clipped to [-clip, clip] and encoded as the
 * two's-complement integer round(x * 2^frac_bits) modulo 2^32. Sums wrap
 * modulo 2^32, so the sum of n encodings decodes exactly only while
 * n * clip * 2^frac_bits < 2^31; priv_sa_check_params refuses parameters that
 * could overflow. Decoding error per coordinate is at most n * 2^-(frac_bits+1).
 *
 * Graph: client i (0..n-1, the round's selection order) shares secrets with
 * `degree` neighbours: clients are placed on a ring in a random order drawn
 * from the public graph_seed, and each is joined to the degree/2 nearest on
 * either side (a Harary graph with a random permutation). degree >= n-1 is the
 * complete graph. Every per-client cost is O(degree) = O(log n) with the
 * default degree.
 *
 * Per round a client has two X25519 key pairs: c (encrypts the shares it
 * sends through the coordinator with crypto_box) and s (pairwise mask
 * agreement). Its masked vector is
 *   y_i = enc(x_i) + PRG(b_i) + sum_{j in N(i), j > i} PRG(s_ij)
 *                             - sum_{j in N(i), j < i} PRG(s_ij)   (mod 2^32)
 * over the neighbours j that sent it shares, with b_i a fresh self-mask seed
 * and s_ij = BLAKE2b(X25519(s_i, S_j), run, round, min, max). PRG is the
 * ChaCha20 keystream (libsodium). b_i and s_i are Shamir-shared byte-wise
 * over GF(2^8) among the neighbours, threshold t; share x-coordinates are
 * neighbour slots (so degree <= 254).
 *
 * Unmasking: the coordinator names the survivor set S (clients whose masked
 * vectors arrived). Before answering, an honest client checks that more than
 * half of the round's key-sharing clients signed the same S (Ed25519 over
 * run, round and S), that |S| reaches min_survivors, and that it has not
 * answered a different S this round. It then reveals b-shares only of
 * neighbours in S and s-shares only of neighbours not in S: the coordinator
 * never gets both secrets of one client, so it can remove a client's masks
 * only by summing. Shares are checked when decrypted (sender, recipient, run,
 * round inside the authenticated box), so replayed, misdirected or cross-round
 * shares are rejected.
 *
 * Ownership: every object is freed with its _free (NULL is a no-op); secrets
 * are wiped. Errors: 0 or a negative FL_E* code.
 */
#ifndef FL_PRIVACY_SECAGG_H
#define FL_PRIVACY_SECAGG_H

#include <stddef.h>
#include <stdint.h>

#define PRIV_SA_SHARE_BYTES 33 /* x coordinate + 32 bytes */
/* One encrypted share bundle (b-share and s-share) from one client to one
 * neighbour: header, two shares, crypto_box MAC and nonce. */
#define PRIV_SA_BOX_BYTES     (24 + 16 + 32 + 2 * PRIV_SA_SHARE_BYTES)
#define PRIV_SA_SIG_BYTES     64
#define PRIV_SA_SESSION_BYTES 16  /* SecAggParams.session */
#define PRIV_SA_MAX_DEGREE    254 /* share x coordinates are neighbour slots 1..254 */

typedef struct priv_sa_params {
	int n;             /* clients selected for the round, indices 0..n-1 */
	int degree;        /* neighbours per client; 0 = default (see priv_sa_default_degree) */
	int threshold;     /* shares needed to rebuild a secret; 0 = degree/2 + 1 */
	int min_survivors; /* fewer masked vectors than this: abort; 0 = max(threshold, n/2+1)
	                      capped at n */
	double clip;       /* values clipped to [-clip, clip] */
	int frac_bits;     /* fixed-point fraction bits */
	uint64_t round;
	uint8_t run_id[16];
	uint8_t graph_seed[32]; /* public; the coordinator draws it per round */
} priv_sa_params;

/* The default degree: the complete graph up to 16 clients, else
 * 2 * ceil(log2 n) + 4 rounded to even. */
int priv_sa_default_degree(int n);
/* Fills the 0 fields with their defaults and checks everything (overflow
 * bound included). FL_EINVAL with the reason in why. */
int priv_sa_check_params(priv_sa_params *p, char *why, size_t whylen);
/* The neighbours of client i (ascending), count into *k; nb has room for
 * p->degree entries. p must have passed priv_sa_check_params. */
int priv_sa_neighbours(const priv_sa_params *p, int i, int *nb, int *k);

uint32_t priv_sa_encode(double x, double clip, int frac_bits);
double priv_sa_decode(uint32_t v, int frac_bits);

typedef struct priv_sa_client priv_sa_client;

/* A client's state for one round: fresh c and s key pairs and self-mask
 * seed. id_sk/id_pk: the client's Ed25519 identity (signs the survivor set). */
int priv_sa_client_new(const priv_sa_params *p, int index, priv_sa_client **out);
void priv_sa_client_free(priv_sa_client *c);
void priv_sa_client_pubkeys(const priv_sa_client *c, uint8_t c_pk[32], uint8_t s_pk[32]);
/* The public keys of every client (n entries each; a client that sent no
 * keys has an all-zero entry), as relayed by the coordinator. */
int priv_sa_client_set_keys(priv_sa_client *c, const uint8_t (*c_pk)[32],
                            const uint8_t (*s_pk)[32]);
/* The same from the neighbours' entries only, as SaDown 1 carries them:
 * count entries, from[q] the neighbour of c_pk[q]/s_pk[q] (signatures
 * already checked by the caller), n_keyed the number of key senders of the
 * round (this client included; the majority base of priv_sa_client_unmask).
 * FL_EFORMAT for a non-neighbour, a repeated neighbour, a zero key or an
 * n_keyed below count + 1 or above n; FL_ESTATE when keys were set. */
int priv_sa_client_set_nb_keys(priv_sa_client *c, int n_keyed, const int *from,
                               const uint8_t (*c_pk)[32], const uint8_t (*s_pk)[32], int count);
/* Round-key signatures (SaUp 1 key_sig): Ed25519 by the member's identity
 * key over BLAKE2b("fedlora secagg keys v1"; secagg run id, round, session,
 * index, c_pk, s_pk). Neighbours verify them, so a coordinator that relays
 * the keys cannot substitute its own. Verify: 0 or FL_ESIG. */
void priv_sa_keys_sign(const priv_sa_params *p, const uint8_t session[PRIV_SA_SESSION_BYTES],
                       int index, const uint8_t c_pk[32], const uint8_t s_pk[32],
                       const uint8_t id_sk[64], uint8_t sig[PRIV_SA_SIG_BYTES]);
int priv_sa_keys_verify(const priv_sa_params *p, const uint8_t session[PRIV_SA_SESSION_BYTES],
                        int index, const uint8_t c_pk[32], const uint8_t s_pk[32],
                        const uint8_t id_pk[32], const uint8_t sig[PRIV_SA_SIG_BYTES])
    __attribute__((warn_unused_result));
/* Shares b and s among the neighbours that have keys: writes up to degree
 * boxes (PRIV_SA_BOX_BYTES each) to boxes and their recipients to to[]. */
int priv_sa_client_make_shares(priv_sa_client *c, uint8_t *boxes, int *to, int *count);
/* Takes a box addressed to this client from neighbour `from`. FL_ESIG when it
 * does not open; FL_ESTALE when it was made for another run, round, sender or
 * recipient; FL_EREPLAY for a second box from the same sender. */
int priv_sa_client_recv_share(priv_sa_client *c, int from, const uint8_t box[PRIV_SA_BOX_BYTES]);
/* y = masked encoding of x (len values). Masks pair with every neighbour
 * whose share arrived. Only once per round (FL_ESTATE after). */
int priv_sa_client_mask(priv_sa_client *c, const float *x, size_t len, uint32_t *y);
/* Signs the survivor set (n flags) with the identity key: sig = Ed25519 over
 * BLAKE2b(run, round, n, flags). Refuses (FL_ESTATE) to sign a second,
 * different set in the same round. */
int priv_sa_client_sign_survivors(priv_sa_client *c, const uint8_t *survivors,
                                  const uint8_t id_sk[64], uint8_t sig[PRIV_SA_SIG_BYTES]);

/* Checks a survivor-set signature as priv_sa_client_unmask does: 0 when
 * sig is id_pk's Ed25519 signature over (run, round, n, survivors), else
 * FL_ESIG. The coordinator checks each one on arrival, so that it forwards
 * only signatures that count. */
int priv_sa_survivors_verify(const priv_sa_params *p, const uint8_t *survivors,
                             const uint8_t id_pk[32], const uint8_t sig[PRIV_SA_SIG_BYTES])
    __attribute__((warn_unused_result));

typedef struct priv_sa_reveal {
	int32_t owner; /* whose secret */
	uint8_t kind;  /* 0: self-mask seed b (owner survived), 1: mask key s (owner dropped) */
	uint8_t share[PRIV_SA_SHARE_BYTES];
} priv_sa_reveal;

/* Answers the unmask request: survivors (n flags), signatures sigs[k] by
 * clients signer[k] (id_pk: every client's Ed25519 public key). Checks as
 * described above; FL_EQUORUM when |S| < min_survivors, FL_EFORMAT when |S| exceeds
 * the key senders, FL_ESIG when fewer
 * than a majority of the key-sharing clients signed S, FL_ESTATE for a second
 * different request. Signatures are verified in the order given until
 * n_keyed/2 + 1 distinct signers verified (the rest cannot change the
 * answer); invalid, repeated and out-of-range ones never count. Writes at
 * most degree reveals to out. */
int priv_sa_client_unmask(priv_sa_client *c, const uint8_t *survivors, const int *signer,
                          const uint8_t (*sigs)[PRIV_SA_SIG_BYTES], int nsig,
                          const uint8_t (*id_pk)[32], priv_sa_reveal *out, int *count);

typedef struct priv_sa_server priv_sa_server;

/* The coordinator's side: keeps the running sum mod 2^32 of masked vectors
 * (len values) and the relayed s public keys. */
int priv_sa_server_new(const priv_sa_params *p, size_t len, priv_sa_server **out);
void priv_sa_server_free(priv_sa_server *s);
/* Records client i's public keys (it joined key sharing). */
int priv_sa_server_set_keys(priv_sa_server *s, int i, const uint8_t c_pk[32],
                            const uint8_t s_pk[32]);
/* Folds client i's masked vector. Once per client (FL_EREPLAY). */
int priv_sa_server_add(priv_sa_server *s, int i, const uint32_t *y);
/* The survivor flags so far (n bytes, 1 = masked vector folded). */
const uint8_t *priv_sa_server_survivors(const priv_sa_server *s);
/* Which neighbours of each client delivered shares to it: client i masked
 * with j iff shared[i*n+j]; the coordinator knows it because it relayed the
 * boxes. */
int priv_sa_server_note_share(priv_sa_server *s, int from, int to);
/* Rebuilds the masks from the reveals (any order; duplicates and shares
 * of the wrong kind are ignored) and writes the decoded sum of the survivors'
 * vectors to sum. FL_EQUORUM when fewer than min_survivors survived or a
 * secret has fewer than threshold shares; FL_ESIG when a rebuilt s key does
 * not match its public key. *nsurv gets |S|. */
int priv_sa_server_finish(priv_sa_server *s, const priv_sa_reveal *rev, size_t nrev, double *sum,
                          int *nsurv, char *why, size_t whylen);

#endif
