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
 * Graph: the n members sit on a ring in the order of their ring keys
 * BLAKE2b(graph_seed, identity key), and a member's index is its position
 * (the rank of its ring key); each is joined to the degree/2 nearest on
 * either side (a Harary graph, the permutation given by the keys). degree >=
 * n-1 is the complete graph. graph_seed is derived from the run id and the
 * round (priv_sa_graph_seed), so the graph is a function of the member set
 * alone, and a client can check that the positions it is told agree with the
 * ring keys of the identities it is told (priv_sa_ring_check). Every
 * per-client cost is O(degree) = O(log n) with the default degree.
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
 * Unmasking: the coordinator tells each survivor its view, one flag per
 * neighbour (1: masked vector arrived), bit-packed (PRIV_SA_VIEW_BYTES).
 * The client refuses a view with fewer
 * than threshold survivors and signs the one it accepts (Ed25519 over run,
 * round, parameters, its index and the flags; never a second, different
 * view). Before it reveals, it checks the signed views of its ring window
 * (the members within 2 x degree/2 positions): it itself, and each neighbour
 * whose share it would reveal, must have the status it believes in the views
 * of more than half (degree/2 + 1) of that member's neighbours. It then
 * reveals b-shares of neighbours it sees as survivors and s-shares of the
 * others. Honest clients sign one view each, so two opposite majorities
 * about one member cannot exist: the coordinator never gets both secrets of
 * one client, and a client whose shares were revealed as a survivor's cannot
 * lose its mask key, so it can remove a client's masks only by summing. Shares are checked when
 * decrypted (sender, recipient, run, round inside the authenticated box), so replayed, misdirected
 * or cross-round shares are rejected.
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
/* A view of k flags travels bit-packed: the flag of neighbour slot q
 * (ascending neighbour index) is bit q % 8 (LSB first) of byte q / 8,
 * ceil(k/8) bytes, and the unused high bits of the last byte are zero. That
 * packed form is the only encoding accepted and the one signed, so one view
 * has exactly one encoding (and one signature's worth of bytes). */
#define PRIV_SA_VIEW_BYTES(k)  (((size_t)(k) + 7) / 8)
#define PRIV_SA_VIEW_MAX_BYTES PRIV_SA_VIEW_BYTES(PRIV_SA_MAX_DEGREE) /* 32 */

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
	uint8_t graph_seed[32]; /* public: priv_sa_graph_seed(run id, round) */
} priv_sa_params;

/* The default degree: the complete graph up to 16 clients, else
 * 2 * ceil(log2 n) + 4 rounded to even. */
int priv_sa_default_degree(int n);
/* Fills the 0 fields with their defaults and checks everything (overflow
 * bound included). FL_EINVAL with the reason in why. */
int priv_sa_check_params(priv_sa_params *p, char *why, size_t whylen);
/* The neighbours of client i (ascending), count into *k; nb has room for
 * p->degree entries. p must have passed priv_sa_check_params. O(degree). */
int priv_sa_neighbours(const priv_sa_params *p, int i, int *nb, int *k);
int priv_sa_is_neighbour(const priv_sa_params *p, int i, int j);
/* The ring window of i (ascending, i excluded): every member within degree
 * positions, i.e. the neighbours of i's neighbours; room for 2 * degree. */
int priv_sa_window(const priv_sa_params *p, int i, int *w, int *k);
/* Signed views a member's status needs: degree/2 + 1 of its neighbours. */
int priv_sa_consistency_quorum(const priv_sa_params *p);
/* graph_seed = BLAKE2b("fedlora secagg graph v1"; run id string with its
 * NUL, round as 8 little-endian bytes). No attempt-specific or random input,
 * so the coordinator cannot draw seeds until a graph suits it. */
void priv_sa_graph_seed(const char *run_id, uint64_t round, uint8_t seed[32]);
/* A member's ring key: BLAKE2b keyed with graph_seed over its identity key. */
void priv_sa_ring_key(const uint8_t seed[32], const uint8_t id_pk[32], uint8_t key[32]);
/* Checks that count (position, identity key) pairs agree with the ring:
 * positions distinct and below n, ring keys rising with the position.
 * FL_EFORMAT otherwise. */
int priv_sa_ring_check(const priv_sa_params *p, const int *index, const uint8_t (*id_pk)[32],
                       int count);

/* Packs k flags (0 or 1; any nonzero counts as 1) into the
 * PRIV_SA_VIEW_BYTES(k) bytes of view, padding bits zero. k in
 * 0..PRIV_SA_MAX_DEGREE. */
void priv_sa_view_pack(const uint8_t *flags, int k, uint8_t *view);
/* Unpacks a view of len bytes into k flags (0 or 1); flags may be NULL to
 * check only. FL_EFORMAT when len is not PRIV_SA_VIEW_BYTES(k) or an unused
 * high bit of the last byte is set (a non-canonical encoding), flags then
 * untouched. */
int priv_sa_view_unpack(const uint8_t *view, size_t len, int k, uint8_t *flags)
    __attribute__((warn_unused_result));

uint32_t priv_sa_encode(double x, double clip, int frac_bits);
double priv_sa_decode(uint32_t v, int frac_bits);

typedef struct priv_sa_client priv_sa_client;

/* A client's state for one round: fresh c and s key pairs and self-mask
 * seed. index -1: not known yet (set with priv_sa_client_set_nb_keys). */
int priv_sa_client_new(const priv_sa_params *p, int index, priv_sa_client **out);
int priv_sa_client_index(const priv_sa_client *c);
void priv_sa_client_free(priv_sa_client *c);
void priv_sa_client_pubkeys(const priv_sa_client *c, uint8_t c_pk[32], uint8_t s_pk[32]);
/* The public keys of every client (n entries each; a client that sent no
 * keys has an all-zero entry). Needs the index (FL_ESTATE). */
int priv_sa_client_set_keys(priv_sa_client *c, const uint8_t (*c_pk)[32],
                            const uint8_t (*s_pk)[32]);
/* The same from the neighbours' entries only, as SaDown 1 carries them,
 * with this client's index (its position): count entries, from[q] the
 * neighbour of c_pk[q]/s_pk[q] (signatures already checked by the caller).
 * FL_EFORMAT for an index out of range, a non-neighbour, a repeated
 * neighbour or a zero key; FL_EQUORUM for fewer than threshold entries (its
 * secrets could not be rebuilt); FL_ESTATE when keys were set or the index
 * differs from the one given before. */
int priv_sa_client_set_nb_keys(priv_sa_client *c, int index, const int *from,
                               const uint8_t (*c_pk)[32], const uint8_t (*s_pk)[32], int count);
/* Round-key signatures (SaUp 1 key_sig): Ed25519 by the member's identity
 * key over BLAKE2b("fedlora secagg keys v2"; secagg run id, round, session,
 * n, degree, graph_seed, c_pk, s_pk). Neighbours verify them, so a
 * coordinator that relays the keys cannot substitute its own. Verify: 0 or
 * FL_ESIG. */
void priv_sa_keys_sign(const priv_sa_params *p, const uint8_t session[PRIV_SA_SESSION_BYTES],
                       const uint8_t c_pk[32], const uint8_t s_pk[32], const uint8_t id_sk[64],
                       uint8_t sig[PRIV_SA_SIG_BYTES]);
int priv_sa_keys_verify(const priv_sa_params *p, const uint8_t session[PRIV_SA_SESSION_BYTES],
                        const uint8_t c_pk[32], const uint8_t s_pk[32], const uint8_t id_pk[32],
                        const uint8_t sig[PRIV_SA_SIG_BYTES]) __attribute__((warn_unused_result));
/* Shares b and s among the neighbours that have keys: writes up to degree
 * boxes (PRIV_SA_BOX_BYTES each) to boxes and their recipients to to[]. */
int priv_sa_client_make_shares(priv_sa_client *c, uint8_t *boxes, int *to, int *count);
/* Takes a box addressed to this client from neighbour `from`. FL_ESIG when it
 * does not open; FL_ESTALE when it was made for another run, round, sender or
 * recipient; FL_EREPLAY for a second box from the same sender. */
int priv_sa_client_recv_share(priv_sa_client *c, int from, const uint8_t box[PRIV_SA_BOX_BYTES]);
/* y = masked encoding of x (len values). Masks pair with every neighbour
 * whose share arrived; FL_EQUORUM when fewer than threshold did. Only once
 * per round (FL_ESTATE after). */
int priv_sa_client_mask(priv_sa_client *c, const float *x, size_t len, uint32_t *y);
/* Signs this client's view: its k neighbours' flags (k = degree), in
 * ascending neighbour order, 1 = survivor, packed as PRIV_SA_VIEW_BYTES
 * says (len bytes). sig = Ed25519 over BLAKE2b("fedlora secagg view v2";
 * run, round, n, degree, threshold, min_survivors, index, graph_seed, the
 * packed bytes). After masking only (FL_ESTATE); FL_EFORMAT for a wrong
 * length, a set padding bit or a survivor that sent no keys; FL_EQUORUM for
 * fewer than threshold survivors; FL_ESTATE for a second, different view. */
int priv_sa_client_sign_view(priv_sa_client *c, const uint8_t *view, size_t len,
                             const uint8_t id_sk[64], uint8_t sig[PRIV_SA_SIG_BYTES]);
/* Checks a signature over member index's packed view (len bytes) as
 * priv_sa_client_unmask does: 0, FL_EFORMAT for a view that is not the
 * canonical packed form of degree flags (never hashed), or FL_ESIG. The
 * coordinator checks each one on arrival and forwards only those. */
int priv_sa_view_verify(const priv_sa_params *p, int index, const uint8_t *view, size_t len,
                        const uint8_t id_pk[32], const uint8_t sig[PRIV_SA_SIG_BYTES])
    __attribute__((warn_unused_result));

typedef struct priv_sa_reveal {
	int32_t owner; /* whose secret */
	uint8_t kind;  /* 0: self-mask seed b (owner survived), 1: mask key s (owner dropped) */
	uint8_t share[PRIV_SA_SHARE_BYTES];
} priv_sa_reveal;

/* One signed view of the unmask request (borrowed pointers). */
typedef struct priv_sa_signed_view {
	int index;            /* the signer */
	const uint8_t *view;  /* its flags, packed (PRIV_SA_VIEW_BYTES) */
	size_t view_len;      /* bytes */
	const uint8_t *id_pk; /* its identity key (32) */
	const uint8_t *sig;   /* PRIV_SA_SIG_BYTES */
} priv_sa_signed_view;

/* Answers the unmask request from the signed views sv[0..nsv) of this
 * client's ring window (entries outside it, repeated, of the wrong length,
 * not canonically packed or with a signature that does not verify never
 * count). Checks as
 * described above: FL_ESIG, with the member whose status lacks a majority
 * in *bad; FL_ESTATE before signing a view or for a second request.
 * Writes at most degree reveals to out. */
int priv_sa_client_unmask(priv_sa_client *c, const priv_sa_signed_view *sv, int nsv,
                          priv_sa_reveal *out, int *count, int *bad);

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
