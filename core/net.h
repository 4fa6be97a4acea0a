/*
 * core/net.h — nng sockets for fedlora: a REP listener for the coordinator, a
 * REQ dialer for clients, with the receive limit, timeouts and TLS set up the
 * same way everywhere.
 *
 * URLs: tcp://HOST:PORT, tls+tcp://HOST:PORT, ipc:///path, inproc://name.
 *
 * tls+tcp:// needs tls_cert, tls_key and tls_ca (PEM files): both sides
 * present a certificate and require the peer's to chain to tls_ca (TLS 1.2).
 * The dialer requires a verified server (NNG_TLS_AUTH_MODE_REQUIRED) and
 * checks the server certificate's name against tls_server_name, or the URL's
 * host when that is NULL. The listener requires a verified client
 * (NNG_TLS_AUTH_MODE_REQUIRED), so an unverified peer fails inside the
 * handshake and never becomes a pipe. A dialer may omit tls_cert/tls_key (a
 * fedlora coordinator then refuses it, which is how the tests check that
 * refusal).
 *
 * Every TLS listener has a monitor thread, started by fl_net_listen and
 * joined by fl_net_close, against nng 1.5.2's issue #1518 (a peer that hangs
 * up during the handshake or the SP header exchange can stop a listener for
 * good). Once a second it reads the listener's nng statistics and logs how
 * many handshakes were refused (nng reports them nowhere else, and with no
 * peer address). When an error that may have stopped the listener was
 * counted (and at least once a minute) it dials the listener itself and
 * waits for it to count the accept; after two such self-tests in a row
 * without one it closes the listener and opens a new one on the same address
 * (its clients are dropped and re-dial). tcp://, ipc:// and inproc://
 * listeners have no monitor.
 *
 * NNG_OPT_RECVMAXSZ is always set explicitly (recv_max, default
 * FL_NET_RECV_MAX_DEFAULT) on the socket and on each listener/dialer: nng 1.5
 * defaults to unlimited, and a message over the limit makes the receiver drop
 * the connection silently (the sender then sees a timeout, never an error).
 *
 * Ownership: fl_net_listen returns an open socket the caller closes with
 * fl_net_close (which stops a TLS listener's monitor, then calls nng_close,
 * which closes its listeners). fl_net_dial's socket has no monitor: either
 * fl_net_close or nng_close closes it. fl_net_call returns a reply nng_msg
 * the caller frees with nng_msg_free. The coordinator uses contexts and aio
 * on the socket itself (nng_ctx_open, nng_ctx_recv).
 *
 * Does not: sign or check messages (core/wire.h), retry requests at the
 * application level beyond nng's REQ resend.
 */
#ifndef FL_CORE_NET_H
#define FL_CORE_NET_H

#include <stddef.h>

#include <nng/nng.h>

#define FL_NET_RECV_MAX_DEFAULT ((size_t)256 << 20) /* 256 MiB */

typedef struct fl_net_opts {
	size_t recv_max;      /* bytes; 0 means FL_NET_RECV_MAX_DEFAULT */
	int recv_timeout_ms;  /* NNG_OPT_RECVTIMEO; <= 0: none (blocks) */
	int send_timeout_ms;  /* NNG_OPT_SENDTIMEO; <= 0: none */
	int resend_ms;        /* REQ: NNG_OPT_REQ_RESENDTIME; 0: nng default (60 s); < 0: off
	                       * (a request is still resent when its connection drops) */
	int reconnect_min_ms; /* dialer reconnect backoff (NNG_OPT_RECONNMINT) */
	int reconnect_max_ms; /* NNG_OPT_RECONNMAXT */
	/* dialer: nonzero makes the first connection attempt synchronous, so TLS
	 * and authentication errors surface as an error. 0: no synchronous
	 * attempt. */
	int dial_sync;
	const char *tls_cert;        /* PEM certificate (chain) of this side */
	const char *tls_key;         /* PEM private key of tls_cert (unencrypted) */
	const char *tls_ca;          /* PEM CA certificate(s) peers must chain to */
	const char *tls_server_name; /* dialer: expected server name; NULL: URL host */
} fl_net_opts;

/* recv_max 256 MiB, recv timeout 0 (none), send timeout 10 s, resend 0
 * (nng default), reconnect 100 ms .. 2 s, dial_sync 0, no TLS. */
void fl_net_opts_default(fl_net_opts *o);

/* Registers the transports nng 1.5 needs registered (TLS); idempotent and
 * thread-safe. fl_net_listen/fl_net_dial call it. */
int fl_net_init(void);

/* Checks a URL's scheme (tcp, tls+tcp, ipc, inproc) and, for tls+tcp, that
 * the three TLS files are given and readable (as a listener needs them).
 * FL_EINVAL with a logged reason otherwise. */
int fl_net_url_check(const char *url, const fl_net_opts *o);

/* Opens a REP0 socket listening on url. For tcp URLs with port 0 the bound
 * port is written to *port if port is not NULL (else 0 there). FL_EINVAL on
 * bad URLs/settings, FL_EIO on unreadable TLS files, FL_ENET on nng errors
 * (address in use, ...), all with a logged reason. */
int fl_net_listen(nng_socket *out, const char *url, const fl_net_opts *o, int *port);

/* Stops and joins the monitor of a TLS listener on s, if any, then
 * nng_close(s). */
void fl_net_close(nng_socket s);

/* Opens a REQ0 socket dialing url. The dialer keeps reconnecting in the
 * background, so a client outlives a coordinator restart. With dial_sync it
 * first tries to connect synchronously: a TLS or peer-authentication failure
 * then returns FL_EKEY with a logged reason saying which side refused (found
 * by one more dial that does not check the coordinator's certificate and
 * sends nothing), while "connection refused" (coordinator not up yet) falls
 * back to the background dialer and returns 0. A connection that succeeds
 * returns at once. Known limit: that first attempt blocks as long as the OS
 * takes to fail a TCP connect (minutes when the host silently drops packets)
 * and has no TLS handshake timeout of its own. */
int fl_net_dial(nng_socket *out, const char *url, const fl_net_opts *o);

/* One request/reply on a REQ socket: sends len bytes of req (copied) and
 * waits for the reply within the socket's timeouts. *rep is the caller's to
 * nng_msg_free. FL_ETIMEOUT, FL_ENET otherwise. */
int fl_net_call(nng_socket s, const void *req, size_t len, nng_msg **rep);
/* The same with a prepared message; msg is consumed in every case. */
int fl_net_call_msg(nng_socket s, nng_msg *msg, nng_msg **rep);

/* An nng error code -> FL_E* (NNG_ETIMEDOUT -> FL_ETIMEOUT, NNG_EMSGSIZE ->
 * FL_ETOOBIG, NNG_ENOMEM -> FL_ENOMEM, NNG_EPEERAUTH / NNG_ECRYPTO -> FL_EKEY,
 * NNG_EADDRINVAL / NNG_ENOTSUP -> FL_EINVAL, else FL_ENET). */
int fl_net_err(int nng_rv);

#endif
