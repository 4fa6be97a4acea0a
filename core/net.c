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
 *
 * Every TLS listener has a monitor thread (net_mon) working around nng
 * 1.5.2's issue #1518: a peer that hangs up during the handshake or the SP
 * header exchange can make the listener's accept fail with NNG_ECLOSED, after
 * which that listener never accepts again (fixed upstream after 1.5.2). The
 * monitor also logs refused handshakes, which nng 1.5 reports nowhere else.
 * Does not: watch tcp:// or ipc:// listeners (300 connections reset during
 * the SP header exchange did not stop a tcp:// listener in our tests: it is
 * nng's TLS stream that turns a reset into NNG_ECLOSED).
 */
#include "core/net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/transport/tls/tls.h>
#include <sodium.h>

#include "core/err.h"
#include "core/fsutil.h"
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

/* A TLS config for one side: own cert + key, CA. A server always requires a
 * verified client (NNG_TLS_AUTH_MODE_REQUIRED): an unverified peer fails
 * inside the handshake and never becomes a pipe. A client verifies the
 * server (its chain and its name) when verify is set; without, it checks
 * nothing, which only the listener's self-test and the client's one-off
 * "who refused whom" re-dial use (neither sends anything). */
static int tls_config(nng_tls_config **out, int server, const char *url, const fl_net_opts *o,
                      int verify)
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
	if (!own && verify)
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
	if ((nrv = nng_tls_config_auth_mode(cfg, server || verify ? NNG_TLS_AUTH_MODE_REQUIRED
	                                                          : NNG_TLS_AUTH_MODE_NONE)) != 0)
		goto fail;
	if (!server && verify) {
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

/* Opens, configures and starts a listener on s (the TLS config may be NULL).
 * An nng error code; on error nothing is left open. */
static int listener_open(nng_listener *out, nng_socket s, const char *url, size_t recv_max,
                         nng_tls_config *cfg)
{
	nng_listener l;
	int nrv;
	if ((nrv = nng_listener_create(&l, s, url)) != 0)
		return nrv;
	if ((nrv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, recv_max)) != 0 ||
	    (cfg && (nrv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg)) != 0) ||
	    (nrv = nng_listener_start(l, 0)) != 0) {
		nng_listener_close(l);
		return nrv;
	}
	*out = l;
	return 0;
}

/* Creates a dialer on s with the receive limit, reconnect backoff and TLS
 * config (may be NULL) of o, not started. An nng error code. */
static int dialer_open(nng_dialer *out, nng_socket s, const char *url, const fl_net_opts *o,
                       nng_tls_config *cfg)
{
	nng_dialer d;
	int nrv;
	if ((nrv = nng_dialer_create(&d, s, url)) != 0)
		return nrv;
	if ((nrv = nng_dialer_set_size(d, NNG_OPT_RECVMAXSZ, recv_max_of(o))) != 0 ||
	    (cfg && (nrv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg)) != 0)) {
		nng_dialer_close(d);
		return nrv;
	}
	if (o->reconnect_min_ms > 0)
		nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, o->reconnect_min_ms);
	if (o->reconnect_max_ms > 0)
		nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, o->reconnect_max_ms);
	*out = d;
	return 0;
}

/* ------------------------------------------------ the TLS listener monitor */

/* nng 1.5.2 (issue #1518, fixed upstream after 1.5.2): when a connection
 * fails during the TLS handshake or the SP header exchange with NNG_ECLOSED
 * (a peer that hangs up at the wrong moment, e.g. right after its Finished
 * message, or a client that gives up on our certificate), the listener takes
 * that for its own closing and never accepts again. nng's TLS transport then
 * still completes handshakes and header exchanges on its own and queues the
 * connections, so clients connect and then wait forever. A monitor thread
 * per TLS listener reads the listener's statistics every MON_PERIOD_MS: it
 * logs refused handshakes (nng reports them nowhere else, and a failed
 * handshake has no peer address to report), and whenever an error that may
 * have stopped the listener was counted (or MON_PROBE_EVERY passed) it dials
 * the listener itself and waits for the listener to count an accept. After
 * MON_FAILS such self-tests in a row without one, it closes the listener and
 * opens a new one on the same address. */
#define MON_PERIOD_MS   1000 /* statistics read this often */
#define MON_PROBE_MS    3000 /* a self-test waits this long for its accept */
#define MON_PROBE_EVERY 60.0 /* s: a self-test at least this often */
#define MON_LOG_EVERY   10.0 /* s between two lines about refused handshakes */
#define MON_FAILS       2    /* self-tests in a row without an accept: stuck */
#define MON_URL_MAX     512

/* The listener statistics the monitor reads (nng 1.5 names). An accept that
 * completed, or failed with an error after which nng accepts again, moves one
 * of the first LC_LIVE_N; NNG_ECLOSED, the error that stops the listener, is
 * counted under "other" in 1.5.2 (with ECONNSHUT and the like, which do not),
 * NNG_ECANCELED under "canceled". "auth" counts failed handshakes (no or an
 * untrusted client certificate, or a peer that does not trust ours). */
enum {
	LC_ACCEPT,
	LC_AUTH,
	LC_DISCONNECT,
	LC_TIMEOUT,
	LC_PROTO,
	LC_OOM,
	LC_OTHER,
	LC_CANCELED,
	LC_N
};
#define LC_LIVE_N LC_OTHER
static const char *const lc_name[] = {"accept", "auth", "disconnect", "timeout",
                                      "proto",  "oom",  "other",      "canceled"};
_Static_assert(sizeof lc_name / sizeof lc_name[0] == LC_N, "one name per counter");

typedef struct net_mon {
	struct net_mon *next;
	nng_socket sock;
	nng_listener l;              /* the listener watched, while up */
	int up;                      /* l is open */
	int port;                    /* its bound port */
	size_t recv_max;             /* its NNG_OPT_RECVMAXSZ */
	char url[MON_URL_MAX];       /* listen URL with the bound port */
	char probe_url[MON_URL_MAX]; /* what the self-test dials */
	nng_tls_config *srv_cfg;     /* the listener's config (a reference held) */
	nng_tls_config *probe_cfg;   /* the self-test's: own certificate, no server check */
	uint64_t last[LC_N];         /* counters at the last period */
	uint64_t refused, pending;   /* refused handshakes: in all, not logged yet */
	uint64_t own_refused;        /* self-tests the listener refused, not to be logged */
	double last_log;             /* when refusals were last logged (0: never) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	pthread_t th;
} net_mon;

static net_mon *mons; /* every running monitor, under mons_mu */
static pthread_mutex_t mons_mu = PTHREAD_MUTEX_INITIALIZER;

/* Sleeps ms or until fl_net_close asks the monitor to stop; 1 if it did. */
static int mon_wait(net_mon *m, int ms)
{
	struct timespec t;
	int stop;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->mu);
	while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &t) != ETIMEDOUT)
		;
	stop = m->stop;
	pthread_mutex_unlock(&m->mu);
	return stop;
}

/* Reads the watched listener's counters into c. 0, or -1 when nng has no
 * statistics for it (closed, or nng built without statistics). One snapshot
 * copies every statistic of the process (a few per pipe), which is why the
 * monitor reads them once a period and not more often. */
static int mon_read(net_mon *m, uint64_t c[LC_N])
{
	nng_stat *all = NULL, *ls;
	if (!m->up || nng_stats_get(&all) != 0)
		return -1;
	if (!(ls = nng_stat_find_listener(all, m->l))) {
		nng_stats_free(all);
		return -1;
	}
	for (int i = 0; i < LC_N; i++) {
		nng_stat *st = nng_stat_find(ls, lc_name[i]);
		c[i] = st ? nng_stat_value(st) : 0;
	}
	nng_stats_free(all);
	return 0;
}

static uint64_t lc_live(const uint64_t c[LC_N])
{
	uint64_t n = 0;
	for (int i = 0; i < LC_LIVE_N; i++)
		n += c[i];
	return n;
}

/* Adds the handshakes refused since the last period (less the monitor's own
 * self-tests) and logs them, at most every MON_LOG_EVERY. */
static void mon_log_refused(net_mon *m, const uint64_t c[LC_N])
{
	uint64_t d = c[LC_AUTH] >= m->last[LC_AUTH] ? c[LC_AUTH] - m->last[LC_AUTH] : 0;
	uint64_t own = m->own_refused < d ? m->own_refused : d;
	double t = fl_now_s();
	m->own_refused -= own;
	m->pending += d - own;
	m->refused += d - own;
	if (!m->pending || (m->last_log > 0 && t - m->last_log < MON_LOG_EVERY))
		return;
	fl_log(FL_LOG_WARN, "net",
	       "refused %llu TLS handshake(s) on %s: no client certificate, one not signed by "
	       "--tls-ca, or a peer that does not trust this certificate (%llu refused so far)",
	       (unsigned long long)m->pending, m->url, (unsigned long long)m->refused);
	m->pending = 0;
	m->last_log = t;
}

/* The self-test: dials the listener with the listener's own certificate
 * (checking nothing of the server's: it is us) and waits up to MON_PROBE_MS
 * for the listener's live counters to move past before. Only a counted accept
 * proves the listener still accepts: the handshake and the SP header exchange
 * also complete with a stuck listener (the transport does them). Nothing is
 * sent on the connection; it is closed once counted. 1 if the listener
 * accepts, 0 if no evidence came, -1 if the self-test could not dial (or the
 * monitor is stopping). */
static int mon_probe(net_mon *m, const uint64_t before[LC_N])
{
	nng_socket ps;
	nng_dialer d;
	fl_net_opts o;
	uint64_t c[LC_N];
	int alive = -1;
	fl_net_opts_default(&o);
	if (nng_req0_open(&ps) != 0)
		return -1;
	if (dialer_open(&d, ps, m->probe_url, &o, m->probe_cfg) == 0 &&
	    nng_dialer_start(d, NNG_FLAG_NONBLOCK) == 0) {
		alive = 0;
		for (int t = 0; t < MON_PROBE_MS && alive == 0; t += 100) {
			if (mon_wait(m, 100)) {
				alive = -1;
				break;
			}
			if (mon_read(m, c) != 0 || lc_live(c) <= lc_live(before))
				continue;
			alive = 1;
			/* refused, not accepted: most likely our own certificate
			 * (an extendedKeyUsage without clientAuth) */
			if (c[LC_ACCEPT] == before[LC_ACCEPT] && c[LC_AUTH] > before[LC_AUTH])
				m->own_refused++;
		}
	}
	nng_close(ps);
	return alive;
}

/* Closes the watched listener (if up) and opens a new one on the same
 * address with the same settings. Clients connected through the old listener
 * are dropped with it (nng closes its pipes) and re-dial on their own, as
 * after a coordinator restart. 0, or an nng error code (the monitor tries
 * again next period; NNG_ECLOSED: the socket is gone). */
static int mon_recreate(net_mon *m)
{
	nng_listener nl;
	int nrv;
	if (m->up) {
		nng_listener_close(m->l);
		m->up = 0;
	}
	if ((nrv = listener_open(&nl, m->sock, m->url, m->recv_max, m->srv_cfg)) != 0) {
		if (nrv != NNG_ECLOSED)
			fl_log(
			    FL_LOG_ERROR, "net",
			    "cannot re-create the TLS listener on %s: %s (trying again in %d ms)",
			    m->url, nng_strerror(nrv), MON_PERIOD_MS);
		return nrv;
	}
	raise_backlog(m->port);
	m->l = nl;
	m->up = 1;
	memset(m->last, 0, sizeof m->last); /* a new listener counts from 0 */
	fl_log(FL_LOG_INFO, "net", "listening on %s again", m->url);
	return 0;
}

/* The monitor thread: every MON_PERIOD_MS, log refusals, decide whether a
 * self-test is due, run it, re-create the listener after MON_FAILS failed
 * ones. Ends when fl_net_close stops it or the socket is gone. */
static void *mon_main(void *arg)
{
	net_mon *m = arg;
	uint64_t c[LC_N];
	int fails = 0;
	double last_ok = fl_now_s();
	if (mon_read(m, m->last) != 0) {
		fl_log(FL_LOG_WARN, "net",
		       "no nng statistics for the listener on %s: refused handshakes go "
		       "unreported, and a listener that stops accepting is not re-created",
		       m->url);
		return NULL;
	}
	while (!mon_wait(m, MON_PERIOD_MS)) {
		nng_duration dd;
		if (!m->up) {
			if (mon_recreate(m) == NNG_ECLOSED)
				break;
			continue;
		}
		if (mon_read(m, c) != 0) {
			if (nng_socket_get_ms(m->sock, NNG_OPT_RECVTIMEO, &dd) == NNG_ECLOSED)
				break; /* closed with nng_close, not fl_net_close */
			continue;
		}
		mon_log_refused(m, c);
		int fatal =
		    c[LC_OTHER] != m->last[LC_OTHER] || c[LC_CANCELED] != m->last[LC_CANCELED];
		if (!fatal && lc_live(c) != lc_live(m->last))
			last_ok = fl_now_s(); /* it accepted, and nothing since could stop it */
		memcpy(m->last, c, sizeof c);
		if (!fatal && !fails && fl_now_s() - last_ok < MON_PROBE_EVERY)
			continue;
		int alive = mon_probe(m, c);
		if (alive > 0) {
			fails = 0;
			last_ok = fl_now_s();
		}
		if (alive != 0 || ++fails < MON_FAILS)
			continue;
		fails = 0;
		fl_log(FL_LOG_WARN, "net",
		       "the TLS listener on %s stopped accepting connections (nng 1.5.2, issue "
		       "#1518); re-creating it (its clients are dropped and re-dial)",
		       m->url);
		if (mon_recreate(m) == NNG_ECLOSED)
			break;
	}
	if (mon_read(m, c) == 0) { /* refusals of the last period */
		m->last_log = 0;
		mon_log_refused(m, c);
	}
	return NULL;
}

/* url with its port replaced by port, into buf. */
static int url_set_port(const char *url, int port, char *buf, size_t n)
{
	const char *p = strstr(url, "://"), *colon;
	if (!p)
		return FL_EINVAL;
	p += 3;
	if (*p == '[') {
		if (!(colon = strchr(p, ']')) || *++colon != ':')
			return FL_EINVAL;
	} else if (!(colon = strrchr(p, ':'))) {
		return FL_EINVAL;
	}
	int k = snprintf(buf, n, "%.*s:%d", (int)(colon - url), url, port);
	return k < 0 || (size_t)k >= n ? FL_EINVAL : 0;
}

/* The URL a listener on url (bound to port) dials itself at: a wildcard
 * host becomes the loopback address. */
static int self_url(const char *url, int port, char *buf, size_t n)
{
	const char *sep = strstr(url, "://");
	char host[256] = "";
	if (!sep || (sep[3] != ':' && url_host(url, host, sizeof host) != 0))
		return FL_EINVAL;
	const char *h = host;
	if (!*h || !strcmp(h, "*") || !strcmp(h, "0.0.0.0"))
		h = "127.0.0.1";
	else if (!strcmp(h, "::"))
		h = "::1";
	int v6 = strchr(h, ':') != NULL;
	int k = snprintf(buf, n, "%.*s%s%s%s:%d", (int)(sep + 3 - url), url, v6 ? "[" : "", h,
	                 v6 ? "]" : "", port);
	return k < 0 || (size_t)k >= n ? FL_EINVAL : 0;
}

static void mon_free(net_mon *m)
{
	if (!m)
		return;
	if (m->probe_cfg)
		nng_tls_config_free(m->probe_cfg);
	if (m->srv_cfg)
		nng_tls_config_free(m->srv_cfg);
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

/* Starts the monitor of TLS listener l on socket s (cfg: its config, of which
 * the monitor takes a reference). 0, FL_EINVAL (URL), FL_ENOMEM, or the error
 * of the self-test's TLS config, all logged. */
static int mon_start(nng_socket s, nng_listener l, const char *url, int port, const fl_net_opts *o,
                     nng_tls_config *cfg)
{
	net_mon *m = calloc(1, sizeof *m);
	pthread_condattr_t ca;
	int rv;
	if (!m)
		return FL_ENOMEM;
	m->sock = s;
	m->l = l;
	m->up = 1;
	m->port = port;
	m->recv_max = recv_max_of(o);
	pthread_mutex_init(&m->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cv, &ca);
	pthread_condattr_destroy(&ca);
	if ((rv = url_set_port(url, port, m->url, sizeof m->url)) != 0 ||
	    (rv = self_url(url, port, m->probe_url, sizeof m->probe_url)) != 0) {
		fl_log(FL_LOG_ERROR, "net", "cannot watch the listener on %s: URL too long", url);
		goto fail;
	}
	if ((rv = tls_config(&m->probe_cfg, 0, url, o, 0)) != 0)
		goto fail;
	nng_tls_config_hold(cfg);
	m->srv_cfg = cfg;
	if (pthread_create(&m->th, NULL, mon_main, m) != 0) {
		fl_log(FL_LOG_ERROR, "net", "cannot start the monitor of %s", url);
		rv = FL_ENOMEM;
		goto fail;
	}
	pthread_mutex_lock(&mons_mu);
	m->next = mons;
	mons = m;
	pthread_mutex_unlock(&mons_mu);
	return 0;
fail:
	mon_free(m);
	return rv;
}

void fl_net_close(nng_socket s)
{
	int id = nng_socket_id(s);
	for (;;) {
		net_mon *m = NULL;
		pthread_mutex_lock(&mons_mu);
		for (net_mon **pp = &mons; *pp; pp = &(*pp)->next)
			if (nng_socket_id((*pp)->sock) == id) {
				m = *pp;
				*pp = m->next;
				break;
			}
		pthread_mutex_unlock(&mons_mu);
		if (!m)
			break;
		pthread_mutex_lock(&m->mu);
		m->stop = 1;
		pthread_cond_signal(&m->cv);
		pthread_mutex_unlock(&m->mu);
		pthread_join(m->th, NULL);
		mon_free(m);
	}
	if (id > 0)
		nng_close(s);
}

/* ------------------------------------------------------- listen and dial */

int fl_net_listen(nng_socket *out, const char *url, const fl_net_opts *o, int *port)
{
	nng_socket s = NNG_SOCKET_INITIALIZER;
	nng_listener l;
	nng_tls_config *cfg = NULL;
	fl_net_opts def;
	int rv, nrv = 0, p = 0;
	if (!o) {
		fl_net_opts_default(&def);
		o = &def;
	}
	if (port)
		*port = 0;
	if ((rv = fl_net_init()) != 0 || (rv = url_check(url, o, 1)) != 0)
		return rv;
	if ((nrv = nng_rep0_open(&s)) != 0 || (nrv = sock_opts(s, o)) != 0)
		goto nfail;
	if (is_tls(url) && (rv = tls_config(&cfg, 1, url, o, 1)) != 0)
		goto fail;
	if ((nrv = listener_open(&l, s, url, recv_max_of(o), cfg)) != 0)
		goto nfail;
	if ((!strncmp(url, "tcp", 3) || is_tls(url)) &&
	    nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &p) == 0) {
		if (port)
			*port = p;
		raise_backlog(p);
	}
	if (cfg && (rv = mon_start(s, l, url, p, o, cfg)) != 0)
		goto fail;
	if (cfg)
		nng_tls_config_free(cfg); /* the listener and the monitor hold their own */
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

/* Errors of a first TLS dial that mean one side refused the other's
 * certificate: mbedTLS reports most failed handshakes as NNG_ECRYPTO, and a
 * side that gives up on the handshake closes the connection. */
static int tls_refused(int nrv)
{
	return nrv == NNG_EPEERAUTH || nrv == NNG_ECRYPTO || nrv == NNG_ECLOSED ||
	       nrv == NNG_ECONNSHUT || nrv == NNG_ECONNRESET;
}

/* After a refused first TLS dial (error nrv): dials url once more without
 * checking the coordinator's certificate, only to tell the user which side
 * refused, and closes that connection unused (nothing is sent on it). If it
 * connects, we refused the coordinator; if not, the coordinator refused us
 * (or went away in between). Logs the answer. */
static void tls_who_refused(const char *url, const fl_net_opts *o, int nrv)
{
	nng_tls_config *cfg = NULL;
	nng_socket t;
	nng_dialer d;
	char host[256];
	int trv = -1;
	if (tls_config(&cfg, 0, url, o, 0) == 0 && nng_req0_open(&t) == 0) {
		if (dialer_open(&d, t, url, o, cfg) == 0)
			trv = nng_dialer_start(d, 0);
		nng_close(t);
	}
	if (cfg)
		nng_tls_config_free(cfg);
	if (trv == 0) {
		const char *name = o->tls_server_name;
		if (!name)
			name = url_host(url, host, sizeof host) == 0 ? host : url;
		fl_log(FL_LOG_ERROR, "net",
		       "cannot connect to %s: this client refused the coordinator's certificate "
		       "(%s): the certificate does not chain to --tls-ca, or its names do not "
		       "include %s",
		       url, nng_strerror(nrv), name);
	} else {
		fl_log(FL_LOG_ERROR, "net",
		       "cannot connect to %s: the coordinator does not accept this client's "
		       "certificate (%s): no --tls-cert, or one not signed by the coordinator's CA",
		       url, nng_strerror(nrv));
	}
}

int fl_net_dial(nng_socket *out, const char *url, const fl_net_opts *o)
{
	nng_socket s = NNG_SOCKET_INITIALIZER;
	nng_dialer d;
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
	if (is_tls(url) && (rv = tls_config(&cfg, 0, url, o, 1)) != 0)
		goto fail;
	/* A synchronous first attempt surfaces TLS and authentication errors. */
	if (o->dial_sync) {
		if ((nrv = dialer_open(&d, s, url, o, cfg)) != 0)
			goto nfail;
		if ((nrv = nng_dialer_start(d, 0)) == 0)
			goto started;
		nng_dialer_close(d);
		if (cfg && tls_refused(nrv)) {
			tls_who_refused(url, o, nrv);
			rv = FL_EKEY;
			goto fail;
		}
		if (nrv == NNG_EADDRINVAL || nrv == NNG_EINVAL || nrv == NNG_ENOTSUP)
			goto nfail;
		fl_log(FL_LOG_INFO, "net", "%s not reachable yet (%s); retrying in the background",
		       url, nng_strerror(nrv));
	}
	if ((nrv = dialer_open(&d, s, url, o, cfg)) != 0 ||
	    (nrv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0)
		goto nfail;
started:
	if (cfg)
		nng_tls_config_free(cfg);
	*out = s;
	return 0;
nfail:
	fl_log(FL_LOG_ERROR, "net", "cannot dial %s: %s", url, nng_strerror(nrv));
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
