/*
 * core/net.c — REP listener / REQ dialer setup on nng 1.5 (core/net.h):
 * receive limit, timeouts, reconnect backoff, and TLS with mutual
 * authentication from PEM files.
 *
 * TLS material is read into memory here (so a certificate and its key may be
 * separate files) and handed to nng_tls_config_own_cert / ca_chain; the key
 * buffer is wiped after use. mbedTLS 2.x matches the expected server name
 * against the certificate's DNS names only (not IP addresses): scripts/certs.sh
 * therefore also lists IP literals as DNS names.
 */
#include "core/net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/transport/tls/tls.h>
#include <sodium.h>

#include "core/err.h"
#include "core/log.h"

#define PEM_MAX ((size_t)1 << 20) /* certificates and keys are small */

void fl_net_opts_default(fl_net_opts *o)
{
	memset(o, 0, sizeof *o);
	o->recv_max = FL_NET_RECV_MAX_DEFAULT;
	o->send_timeout_ms = 10000;
	o->reconnect_min_ms = 100;
	o->reconnect_max_ms = 2000;
}

static pthread_once_t net_once = PTHREAD_ONCE_INIT;
static int net_init_rv;

static void net_init_once(void)
{
	int rv = nng_tls_register();
	if (rv != 0 && rv != NNG_ENOTSUP) {
		fl_log(FL_LOG_ERROR, "net", "TLS transport: %s", nng_strerror(rv));
		net_init_rv = FL_ENET;
	}
}

int fl_net_init(void)
{
	pthread_once(&net_once, net_init_once);
	return net_init_rv;
}

int fl_net_err(int nng_rv)
{
	switch (nng_rv) {
	case 0:
		return 0;
	case NNG_ETIMEDOUT:
		return FL_ETIMEOUT;
	case NNG_EMSGSIZE:
		return FL_ETOOBIG;
	case NNG_ENOMEM:
		return FL_ENOMEM;
	case NNG_EPEERAUTH:
	case NNG_ECRYPTO:
		return FL_EKEY;
	case NNG_EADDRINVAL:
	case NNG_ENOTSUP:
	case NNG_EINVAL:
		return FL_EINVAL;
	default:
		return FL_ENET;
	}
}

static int is_tls(const char *url)
{
	return !strncmp(url, "tls+tcp://", 10) || !strncmp(url, "tls+tcp4://", 11) ||
	       !strncmp(url, "tls+tcp6://", 11);
}

static int readable(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	fclose(f);
	return 1;
}

/* fl_net_url_check for a listener (server = 1) or a dialer. */
static int url_check(const char *url, const fl_net_opts *o, int server)
{
	static const char *const schemes[] = {"tcp://",      "tcp4://",     "tcp6://", "tls+tcp://",
	                                      "tls+tcp4://", "tls+tcp6://", "ipc://",  "inproc://"};
	int ok = 0;
	if (!url) {
		fl_log(FL_LOG_ERROR, "net", "no URL given");
		return FL_EINVAL;
	}
	for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
		if (!strncmp(url, schemes[i], strlen(schemes[i])) && url[strlen(schemes[i])])
			ok = 1;
	if (!ok) {
		fl_log(FL_LOG_ERROR, "net",
		       "unsupported URL '%s' (use tcp://HOST:PORT, tls+tcp://HOST:PORT, "
		       "ipc:///PATH or inproc://NAME)",
		       url);
		return FL_EINVAL;
	}
	if (is_tls(url)) {
		const char *need[3] = {o ? o->tls_cert : NULL, o ? o->tls_key : NULL,
		                       o ? o->tls_ca : NULL};
		const char *flag[3] = {"--tls-cert", "--tls-key", "--tls-ca"};
		int nocert = (!need[0] || !*need[0]) && (!need[1] || !*need[1]);
		for (int i = 0; i < 3; i++) {
			if (i < 2 && nocert && !server)
				continue; /* a dialer may go without (and be refused) */
			if (!need[i] || !*need[i]) {
				fl_log(FL_LOG_ERROR, "net",
				       "%s needs --tls-cert, --tls-key and --tls-ca (%s missing)",
				       url, flag[i]);
				return FL_EINVAL;
			}
			if (!readable(need[i])) {
				fl_log(FL_LOG_ERROR, "net", "cannot read %s %s: %s", flag[i],
				       need[i], strerror(errno));
				return FL_EINVAL;
			}
		}
	} else if (o && (o->tls_cert || o->tls_key || o->tls_ca)) {
		fl_log(FL_LOG_WARN, "net", "TLS files given but %s is not a tls+tcp:// URL", url);
	}
	return 0;
}

int fl_net_url_check(const char *url, const fl_net_opts *o)
{
	return url_check(url, o, 1);
}

/* Reads a whole PEM file into a NUL-terminated malloc'd buffer. */
static int read_pem(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	*out = NULL;
	if (!f) {
		fl_log(FL_LOG_ERROR, "net", "cannot open %s: %s", path, strerror(errno));
		return FL_EIO;
	}
	char *buf = malloc(PEM_MAX + 1);
	if (!buf) {
		fclose(f);
		return FL_ENOMEM;
	}
	size_t n = fread(buf, 1, PEM_MAX + 1, f);
	int err = ferror(f);
	fclose(f);
	if (err || n > PEM_MAX || n == 0) {
		fl_log(FL_LOG_ERROR, "net", "%s: %s", path,
		       err ? "read error" : (n == 0 ? "empty file" : "file too large for PEM"));
		sodium_memzero(buf, PEM_MAX + 1);
		free(buf);
		return FL_EIO;
	}
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}

static void free_pem(char *p, size_t len)
{
	if (p) {
		sodium_memzero(p, len);
		free(p);
	}
}

/* Host part of a tls+tcp://HOST:PORT URL into buf (brackets of IPv6 removed). */
static int url_host(const char *url, char *buf, size_t n)
{
	const char *p = strstr(url, "://");
	if (!p)
		return FL_EINVAL;
	p += 3;
	const char *end;
	if (*p == '[') {
		p++;
		end = strchr(p, ']');
	} else {
		end = strrchr(p, ':');
	}
	if (!end || end == p || (size_t)(end - p) >= n)
		return FL_EINVAL;
	memcpy(buf, p, (size_t)(end - p));
	buf[end - p] = 0;
	return 0;
}

/* A TLS config for one side: own cert + key, CA, peer verification required. */
static int tls_config(nng_tls_config **out, int server, const char *url, const fl_net_opts *o)
{
	nng_tls_config *cfg = NULL;
	char *cert = NULL, *key = NULL, *ca = NULL;
	size_t lc = 0, lk = 0, la = 0;
	int rv, nrv;
	*out = NULL;
	int own = o->tls_cert && *o->tls_cert;
	if ((own && ((rv = read_pem(o->tls_cert, &cert, &lc)) != 0 ||
	             (rv = read_pem(o->tls_key, &key, &lk)) != 0)) ||
	    (rv = read_pem(o->tls_ca, &ca, &la)) != 0)
		goto fail;
	if (!own)
		fl_log(FL_LOG_WARN, "net",
		       "no --tls-cert/--tls-key: coordinators requiring client certificates "
		       "will refuse this connection");
	rv = FL_ENET;
	if ((nrv = nng_tls_config_alloc(&cfg,
	                                server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT)) != 0) {
		fl_log(FL_LOG_ERROR, "net", "TLS config: %s", nng_strerror(nrv));
		goto fail;
	}
	if ((nrv = nng_tls_config_version(cfg, NNG_TLS_1_2, NNG_TLS_1_2)) != 0) {
		fl_log(FL_LOG_ERROR, "net", "TLS 1.2: %s", nng_strerror(nrv));
		goto fail;
	}
	if ((nrv = nng_tls_config_ca_chain(cfg, ca, NULL)) != 0) {
		fl_log(FL_LOG_ERROR, "net", "TLS CA file %s: %s", o->tls_ca, nng_strerror(nrv));
		rv = FL_EINVAL;
		goto fail;
	}
	if (own && (nrv = nng_tls_config_own_cert(cfg, cert, key, NULL)) != 0) {
		fl_log(FL_LOG_ERROR, "net", "TLS certificate %s / key %s: %s", o->tls_cert,
		       o->tls_key, nng_strerror(nrv));
		rv = FL_EINVAL;
		goto fail;
	}
	/* The dialer requires a verified server. The listener asks for a client
	 * certificate but lets mbedTLS finish the handshake (OPTIONAL), then
	 * tls_admit() closes every pipe whose peer did not verify before the
	 * socket sees it: the same enforcement as REQUIRED, and the coordinator
	 * gets to log who was refused (a failed handshake leaves no trace in nng). */
	if ((nrv = nng_tls_config_auth_mode(cfg, server ? NNG_TLS_AUTH_MODE_OPTIONAL
	                                                : NNG_TLS_AUTH_MODE_REQUIRED)) != 0)
		goto fail;
	if (!server) {
		char host[256];
		const char *name = o->tls_server_name;
		if (!name) {
			if (url_host(url, host, sizeof host) != 0) {
				rv = FL_EINVAL;
				goto fail;
			}
			name = host;
		}
		if ((nrv = nng_tls_config_server_name(cfg, name)) != 0)
			goto fail;
	}
	*out = cfg;
	cfg = NULL;
	rv = 0;
fail:
	if (cfg)
		nng_tls_config_free(cfg);
	free_pem(cert, lc);
	free_pem(key, lk);
	free_pem(ca, la);
	return rv;
}

/* "1.2.3.4:5678" for a pipe's remote address, "?" if unknown. */
static void pipe_peer(nng_pipe p, char *buf, size_t n)
{
	nng_sockaddr sa;
	snprintf(buf, n, "?");
	if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0)
		return;
	if (sa.s_family == NNG_AF_INET) {
		const uint8_t *a = (const uint8_t *)&sa.s_in.sa_addr;
		const uint8_t *pt = (const uint8_t *)&sa.s_in.sa_port;
		snprintf(buf, n, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3],
		         (unsigned)(pt[0] << 8 | pt[1]));
	} else if (sa.s_family == NNG_AF_INET6) {
		const uint8_t *pt = (const uint8_t *)&sa.s_in6.sa_port;
		snprintf(buf, n, "[ipv6]:%u", (unsigned)(pt[0] << 8 | pt[1]));
	}
}

static unsigned long tls_refused; /* refusals so far, for rate-limited logging */
static pthread_mutex_t tls_mu = PTHREAD_MUTEX_INITIALIZER;

/* NNG_PIPE_EV_ADD_PRE on a TLS listener's socket: admit only peers whose
 * certificate chains to the CA. Non-TLS pipes (a plain listener someone added
 * to the same socket on purpose) are left alone. */
static void tls_admit(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	bool verified = false;
	int rv = nng_pipe_get_bool(p, NNG_OPT_TLS_VERIFIED, &verified);
	if (rv == NNG_ENOTSUP || (rv == 0 && verified))
		return;
	char peer[64];
	pipe_peer(p, peer, sizeof peer);
	nng_pipe_close(p);
	pthread_mutex_lock(&tls_mu);
	unsigned long k = ++tls_refused;
	pthread_mutex_unlock(&tls_mu);
	if (k <= 20 || k % 100 == 0)
		fl_log(FL_LOG_WARN, "net",
		       "refused TLS peer %s: no client certificate, or one not signed by "
		       "--tls-ca (%lu refused so far)",
		       peer, k);
}

/* Client side: pipes of a socket removed shortly after they were added. */
#define WATCH_SLOTS 64
static struct {
	int sock;
	int removed;
} watch[WATCH_SLOTS];

static void watch_removed(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	int id = nng_socket_id(nng_pipe_socket(p));
	pthread_mutex_lock(&tls_mu);
	if (id > 0 && watch[id % WATCH_SLOTS].sock == id)
		watch[id % WATCH_SLOTS].removed++;
	pthread_mutex_unlock(&tls_mu);
}

/* Starts watching socket s for removed pipes. Called before the first dial
 * starts, so a coordinator that drops the connection at once is never missed.
 * 0 on success. */
static int tls_watch_begin(nng_socket s)
{
	int id = nng_socket_id(s);
	if (id <= 0)
		return -1;
	pthread_mutex_lock(&tls_mu);
	watch[id % WATCH_SLOTS].sock = id;
	watch[id % WATCH_SLOTS].removed = 0;
	pthread_mutex_unlock(&tls_mu);
	return nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, watch_removed, NULL);
}

/* After a successful first TLS connection: did the coordinator drop it right
 * away (it refuses our certificate)? Waits up to ms, stops watching. 1 if
 * dropped. */
static int tls_dropped_soon(nng_socket s, int ms)
{
	int id = nng_socket_id(s), dropped = 0;
	if (id <= 0)
		return 0;
	for (int t = 0;; t += 20) {
		pthread_mutex_lock(&tls_mu);
		dropped = watch[id % WATCH_SLOTS].removed > 0;
		pthread_mutex_unlock(&tls_mu);
		if (dropped || t >= ms)
			break;
		nng_msleep(20);
	}
	nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, NULL, NULL);
	pthread_mutex_lock(&tls_mu);
	watch[id % WATCH_SLOTS].sock = 0;
	pthread_mutex_unlock(&tls_mu);
	return dropped;
}

static size_t recv_max_of(const fl_net_opts *o)
{
	return o->recv_max ? o->recv_max : FL_NET_RECV_MAX_DEFAULT;
}

/* Options common to both socket kinds. */
static int sock_opts(nng_socket s, const fl_net_opts *o)
{
	int rv;
	if ((rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, recv_max_of(o))) != 0)
		return rv;
	if (o->recv_timeout_ms > 0 &&
	    (rv = nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, o->recv_timeout_ms)) != 0)
		return rv;
	if (o->send_timeout_ms > 0 &&
	    (rv = nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, o->send_timeout_ms)) != 0)
		return rv;
	return 0;
}

/* nng 1.5 listens with a backlog of 128. When thousands of clients connect
 * at once (a large simulation starting, or every client reconnecting after a
 * coordinator restart) the accept queue overflows, the kernel drops the
 * handshakes, and those clients wait out TCP's retransmission backoff (1, 2,
 * 4, ... s): the long tail of registrations at 5,000 and 10,000 clients
 * (README, Load). listen() on a socket that already listens only sets its
 * backlog (Linux), so this finds our listening TCP socket on `port` among the
 * process's descriptors and raises it to FL_NET_BACKLOG (the kernel caps it
 * at net.core.somaxconn). Best effort: the descriptors come from
 * /proc/self/fd; returns how many sockets were raised. */
#define FL_NET_BACKLOG 4096
static int raise_backlog(int port)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)) != NULL) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss, al;
		int fd, acc = 0, sport = -1;
		char *end;
		long v = strtol(e->d_name, &end, 10);
		if (*end || end == e->d_name || v < 0 || v > INT_MAX || v == dirfd(d))
			continue;
		fd = (int)v;
		al = sizeof acc;
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) != 0 || !acc ||
		    getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
			continue;
		if (ss.ss_family == AF_INET)
			sport = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			sport = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		if (sport == port && listen(fd, FL_NET_BACKLOG) == 0)
			n++;
	}
	closedir(d);
	if (n)
		fl_log(FL_LOG_DEBUG, "net", "listen backlog of port %d raised to %d", port,
		       FL_NET_BACKLOG);
	return n;
}

int fl_net_listen(nng_socket *out, const char *url, const fl_net_opts *o, int *port)
{
	nng_socket s = NNG_SOCKET_INITIALIZER;
	nng_listener l = NNG_LISTENER_INITIALIZER;
	nng_tls_config *cfg = NULL;
	fl_net_opts def;
	int rv, nrv = 0;
	if (!o) {
		fl_net_opts_default(&def);
		o = &def;
	}
	if (port)
		*port = 0;
	if ((rv = fl_net_init()) != 0 || (rv = url_check(url, o, 1)) != 0)
		return rv;
	if ((nrv = nng_rep0_open(&s)) != 0 || (nrv = sock_opts(s, o)) != 0 ||
	    (nrv = nng_listener_create(&l, s, url)) != 0 ||
	    (nrv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, recv_max_of(o))) != 0)
		goto nfail;
	if (is_tls(url)) {
		if ((rv = tls_config(&cfg, 1, url, o)) != 0)
			goto fail;
		if ((nrv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg)) != 0 ||
		    (nrv = nng_pipe_notify(s, NNG_PIPE_EV_ADD_PRE, tls_admit, NULL)) != 0)
			goto nfail;
	}
	if ((nrv = nng_listener_start(l, 0)) != 0)
		goto nfail;
	if (!strncmp(url, "tcp", 3) || is_tls(url)) {
		int p = 0;
		if (nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &p) == 0) {
			if (port)
				*port = p;
			raise_backlog(p);
		}
	}
	if (cfg)
		nng_tls_config_free(cfg); /* the listener holds its own reference */
	*out = s;
	return 0;
nfail:
	fl_log(FL_LOG_ERROR, "net", "cannot listen on %s: %s", url, nng_strerror(nrv));
	rv = fl_net_err(nrv);
fail:
	if (cfg)
		nng_tls_config_free(cfg);
	if (nng_socket_id(s) > 0)
		nng_close(s);
	return rv;
}

/* Text for a failed first dial over TLS: the likely cause in the user's terms. */
static const char *dial_hint(int nrv, int tls)
{
	if (!tls)
		return "";
	switch (nrv) {
	case NNG_EPEERAUTH:
	case NNG_ECRYPTO:
		return " (TLS handshake failed: the coordinator's certificate does not chain to "
		       "--tls-ca, or its names do not include the host of the URL)";
	case NNG_ECLOSED:
	case NNG_ECONNSHUT:
	case NNG_ECONNRESET:
		return " (the coordinator closed the TLS handshake: check --tls-cert, --tls-key "
		       "and --tls-ca)";
	default:
		return "";
	}
}

int fl_net_dial(nng_socket *out, const char *url, const fl_net_opts *o)
{
	nng_socket s = NNG_SOCKET_INITIALIZER;
	nng_dialer d = NNG_DIALER_INITIALIZER;
	nng_tls_config *cfg = NULL;
	fl_net_opts def;
	int rv, nrv = 0;
	if (!o) {
		fl_net_opts_default(&def);
		o = &def;
	}
	if ((rv = fl_net_init()) != 0 || (rv = url_check(url, o, 0)) != 0)
		return rv;
	if ((nrv = nng_req0_open(&s)) != 0 || (nrv = sock_opts(s, o)) != 0)
		goto nfail;
	if (o->resend_ms != 0 &&
	    (nrv = nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME,
	                             o->resend_ms > 0 ? o->resend_ms : NNG_DURATION_INFINITE)) != 0)
		goto nfail;
	if (is_tls(url) && (rv = tls_config(&cfg, 0, url, o)) != 0)
		goto fail;
	/* A synchronous first attempt surfaces TLS/auth errors to the caller. */
	if (o->dial_sync_ms > 0) {
		nng_dialer d0;
		if ((nrv = nng_dialer_create(&d0, s, url)) != 0 ||
		    (nrv = nng_dialer_set_size(d0, NNG_OPT_RECVMAXSZ, recv_max_of(o))) != 0 ||
		    (cfg && (nrv = nng_dialer_set_ptr(d0, NNG_OPT_TLS_CONFIG, cfg)) != 0))
			goto nfail;
		if (o->reconnect_min_ms > 0)
			nng_dialer_set_ms(d0, NNG_OPT_RECONNMINT, o->reconnect_min_ms);
		if (o->reconnect_max_ms > 0)
			nng_dialer_set_ms(d0, NNG_OPT_RECONNMAXT, o->reconnect_max_ms);
		int watching = cfg && tls_watch_begin(s) == 0;
		nrv = nng_dialer_start(d0, 0);
		if (watching && tls_dropped_soon(s, nrv != 0 ? 0 : o->dial_sync_ms) && nrv == 0) {
			fl_log(FL_LOG_ERROR, "net",
			       "the coordinator at %s closed the connection right after the TLS "
			       "handshake: it does not accept this client's certificate (is "
			       "--tls-cert signed by the coordinator's CA?)",
			       url);
			rv = FL_EKEY;
			goto fail;
		}
		if (nrv == 0) {
			d = d0;
			goto started;
		}
		nng_dialer_close(d0);
		if (nrv == NNG_EPEERAUTH || nrv == NNG_ECRYPTO ||
		    (is_tls(url) &&
		     (nrv == NNG_ECLOSED || nrv == NNG_ECONNSHUT || nrv == NNG_ECONNRESET))) {
			fl_log(FL_LOG_ERROR, "net", "cannot connect to %s: %s%s", url,
			       nng_strerror(nrv), dial_hint(nrv, 1));
			rv = FL_EKEY;
			goto fail;
		}
		if (nrv == NNG_EADDRINVAL || nrv == NNG_EINVAL || nrv == NNG_ENOTSUP)
			goto nfail;
		fl_log(FL_LOG_INFO, "net", "%s not reachable yet (%s); retrying in the background",
		       url, nng_strerror(nrv));
	}
	if ((nrv = nng_dialer_create(&d, s, url)) != 0 ||
	    (nrv = nng_dialer_set_size(d, NNG_OPT_RECVMAXSZ, recv_max_of(o))) != 0 ||
	    (cfg && (nrv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg)) != 0))
		goto nfail;
	if (o->reconnect_min_ms > 0)
		nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, o->reconnect_min_ms);
	if (o->reconnect_max_ms > 0)
		nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, o->reconnect_max_ms);
	if ((nrv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0)
		goto nfail;
started:
	if (cfg)
		nng_tls_config_free(cfg);
	*out = s;
	return 0;
nfail:
	fl_log(FL_LOG_ERROR, "net", "cannot dial %s: %s%s", url, nng_strerror(nrv),
	       dial_hint(nrv, is_tls(url)));
	rv = fl_net_err(nrv);
fail:
	if (cfg)
		nng_tls_config_free(cfg);
	if (nng_socket_id(s) > 0)
		nng_close(s);
	return rv;
}

int fl_net_call_msg(nng_socket s, nng_msg *msg, nng_msg **rep)
{
	int nrv;
	*rep = NULL;
	if (!msg)
		return FL_EINVAL;
	if ((nrv = nng_sendmsg(s, msg, 0)) != 0) {
		nng_msg_free(msg);
		return fl_net_err(nrv);
	}
	if ((nrv = nng_recvmsg(s, rep, 0)) != 0) {
		*rep = NULL;
		return fl_net_err(nrv);
	}
	return 0;
}

int fl_net_call(nng_socket s, const void *req, size_t len, nng_msg **rep)
{
	nng_msg *m = NULL;
	*rep = NULL;
	if (nng_msg_alloc(&m, len) != 0)
		return FL_ENOMEM;
	if (len)
		memcpy(nng_msg_body(m), req, len);
	return fl_net_call_msg(s, m, rep);
}
