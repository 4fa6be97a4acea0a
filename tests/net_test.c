/*
 * tests/net_test.c — core/net: a signed request/reply through the listen and
 * dial helpers over inproc:// and loopback TCP, an oversized message refused
 * by the receive limit (and the server still serving afterwards), URL checks,
 * and mutual TLS on loopback (certificates from scripts/certs.sh; skipped
 * where openssl is missing): a client with the right CA and certificate is
 * served, a client whose certificate comes from another CA is refused, and a
 * client that does not trust the coordinator's CA refuses it; a TLS listener
 * that peers hanging up stopped (nng 1.5.2) is re-created by its monitor.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/net.h"
#include "core/wire.h"
#include "tests/rawsp.h"
#include "tests/test.h"

static priv_key server_key, client_key;
static char tmpdir[256];

/* A REP server thread: answers each GetTask with a signed Wait carrying
 * last_round_seen + 1 in `round`, until stopped. Counts what it received. */
typedef struct server {
	nng_socket s;
	pthread_t th;
	volatile int received, stop;
} server;

static void *server_main(void *arg)
{
	server *sv = arg;
	while (!sv->stop) {
		nng_msg *m = NULL;
		int rv = nng_recvmsg(sv->s, &m, 0);
		if (rv != 0) {
			if (rv == NNG_ECLOSED)
				break;
			continue; /* timeout: check stop */
		}
		sv->received++;
		fl_wire_msg in;
		nng_msg *out = NULL;
		if (fl_wire_open_msg(m, FL_NET_RECV_MAX_DEFAULT, NULL, &in) == 0 &&
		    in.type == FL_MSG_GET_TASK) {
			Fedlora__Wait w = FEDLORA__WAIT__INIT;
			w.round = ((Fedlora__GetTask *)in.body)->last_round_seen + 1;
			w.retry_after_ms = 10;
			if (fl_wire_seal_msg(&w.base, FL_MSG_WAIT, &server_key, &out) != 0)
				out = NULL;
		} else {
			Fedlora__Reject rj = FEDLORA__REJECT__INIT;
			rj.code = FL_EFORMAT;
			rj.text = "bad message";
			if (fl_wire_seal_msg(&rj.base, FL_MSG_REJECT, &server_key, &out) != 0)
				out = NULL;
		}
		fl_wire_msg_fini(&in);
		nng_msg_free(m);
		if (out && nng_sendmsg(sv->s, out, 0) != 0)
			nng_msg_free(out);
	}
	return NULL;
}

static int server_start(server *sv, const char *url, const fl_net_opts *o, int *port)
{
	memset(sv, 0, sizeof *sv);
	int rv = fl_net_listen(&sv->s, url, o, port);
	if (rv != 0)
		return rv;
	nng_socket_set_ms(sv->s, NNG_OPT_RECVTIMEO, 100);
	if (pthread_create(&sv->th, NULL, server_main, sv) != 0) {
		fl_net_close(sv->s);
		return FL_ENOMEM;
	}
	return 0;
}

static void server_stop(server *sv)
{
	sv->stop = 1;
	pthread_join(sv->th, NULL);
	fl_net_close(sv->s);
}

/* Sends a signed GetTask(last_round_seen = r) and checks the signed reply. */
static int exchange(nng_socket c, uint64_t r)
{
	Fedlora__GetTask g = FEDLORA__GET_TASK__INIT;
	g.run_id = "run-net";
	g.last_round_seen = r;
	nng_msg *req = NULL, *rep = NULL;
	int rv = fl_wire_seal_msg(&g.base, FL_MSG_GET_TASK, &client_key, &req);
	if (rv != 0)
		return rv;
	if ((rv = fl_net_call_msg(c, req, &rep)) != 0)
		return rv;
	fl_wire_msg in;
	rv = fl_wire_open_msg(rep, FL_NET_RECV_MAX_DEFAULT, server_key.pk, &in);
	nng_msg_free(rep);
	if (rv != 0)
		return rv;
	if (in.type != FL_MSG_WAIT || ((Fedlora__Wait *)in.body)->round != r + 1)
		rv = FL_EFORMAT;
	fl_wire_msg_fini(&in);
	return rv;
}

static void client_opts(fl_net_opts *o)
{
	fl_net_opts_default(o);
	o->recv_timeout_ms = 3000;
	o->send_timeout_ms = 3000;
	o->resend_ms = 60000; /* no resends inside a test's timeout */
}

static void test_inproc_exchange(void)
{
	server sv;
	fl_net_opts o;
	client_opts(&o);
	CHECK_RC(server_start(&sv, "inproc://fedlora-net-test", &o, NULL));
	nng_socket c;
	CHECK_RC(fl_net_dial(&c, "inproc://fedlora-net-test", &o));
	for (uint64_t r = 0; r < 5; r++)
		CHECK_RC(exchange(c, r));
	nng_close(c);
	server_stop(&sv);
	CHECK(sv.received == 5);
}

static void test_tcp_exchange_and_port(void)
{
	server sv;
	fl_net_opts o;
	int port = 0;
	client_opts(&o);
	CHECK_RC(server_start(&sv, "tcp://127.0.0.1:0", &o, &port));
	CHECK(port > 0);
	char url[64];
	snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
	nng_socket c;
	o.dial_sync = 1;
	CHECK_RC(fl_net_dial(&c, url, &o));
	CHECK_RC(exchange(c, 41));
	nng_close(c);
	/* a second listener on the same port fails with a clear error */
	nng_socket s2;
	CHECK(fl_net_listen(&s2, url, &o, NULL) == FL_ENET);
	server_stop(&sv);
}

static void test_dial_before_listen_reconnects(void)
{
	/* A client started before the coordinator connects once it is up. */
	fl_net_opts o;
	client_opts(&o);
	o.dial_sync = 1;
	server sv;
	int port = 0;
	CHECK_RC(server_start(&sv, "tcp://127.0.0.1:0", &o, &port));
	server_stop(&sv); /* now nothing listens on port */
	char url[64];
	snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
	nng_socket c;
	CHECK_RC(fl_net_dial(&c, url, &o)); /* refused: falls back to background dialing */
	CHECK_RC(server_start(&sv, url, &o, NULL));
	CHECK_RC(exchange(c, 7));
	nng_close(c);
	server_stop(&sv);
}

static void test_oversized_refused(void)
{
	server sv;
	fl_net_opts so, co;
	int port = 0;
	client_opts(&so);
	so.recv_max = 64 << 10; /* 64 KiB */
	CHECK_RC(server_start(&sv, "tcp://127.0.0.1:0", &so, &port));
	char url[64];
	snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
	client_opts(&co);
	co.recv_timeout_ms = 1000;
	nng_socket c;
	/* 1 MiB of payload from a peer that ignores the limit: the server drops it
	 * (and the connection) unread, never answers, and goes on serving */
	size_t big = 1 << 20, sent = raw_oversized(port, big);
	fprintf(stderr, "  %zu of %zu bytes accepted before the server stopped reading\n", sent,
	        big);
	CHECK(sv.received == 0);
	/* a message under the limit is still served */
	CHECK_RC(fl_net_dial(&c, url, &co));
	CHECK_RC(exchange(c, 1));
	CHECK(sv.received == 1);
	nng_close(c);
	server_stop(&sv);
}

static void test_url_checks(void)
{
	fl_net_opts o;
	fl_net_opts_default(&o);
	CHECK_RC(fl_net_url_check("tcp://127.0.0.1:5555", &o));
	CHECK_RC(fl_net_url_check("ipc:///tmp/x.ipc", &o));
	CHECK_RC(fl_net_url_check("inproc://a", &o));
	CHECK(fl_net_url_check("http://x:1", &o) == FL_EINVAL);
	CHECK(fl_net_url_check("tcp://", &o) == FL_EINVAL);
	CHECK(fl_net_url_check(NULL, &o) == FL_EINVAL);
	CHECK(fl_net_url_check("tls+tcp://127.0.0.1:5555", &o) == FL_EINVAL);
	o.tls_cert = "/nonexistent/cert.pem";
	o.tls_key = "/nonexistent/key.pem";
	o.tls_ca = "/nonexistent/ca.pem";
	CHECK(fl_net_url_check("tls+tcp://127.0.0.1:5555", &o) == FL_EINVAL);
	nng_socket s;
	CHECK(fl_net_listen(&s, "bogus://x", &o, NULL) == FL_EINVAL);
	CHECK(fl_net_err(NNG_ETIMEDOUT) == FL_ETIMEOUT);
	CHECK(fl_net_err(NNG_EPEERAUTH) == FL_EKEY);
	CHECK(fl_net_err(NNG_ECONNREFUSED) == FL_ENET);
}

static int certs_made;

static int make_certs(void)
{
	if (certs_made)
		return certs_made > 0;
	certs_made = -1;
	if (system("command -v openssl >/dev/null 2>&1") != 0 ||
	    access("scripts/certs.sh", R_OK) != 0)
		return 0;
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
	         "sh scripts/certs.sh -o %s/a -c 1 >/dev/null && "
	         "sh scripts/certs.sh -o %s/b -c 1 >/dev/null",
	         tmpdir, tmpdir);
	if (system(cmd) != 0)
		return 0;
	certs_made = 1;
	return 1;
}

static void tls_opts(fl_net_opts *o, const char *pki_cert, const char *name, const char *pki_ca)
{
	static char bufs[6][512];
	static int k;
	client_opts(o);
	char *c = bufs[k++ % 6], *kk = bufs[k++ % 6], *ca = bufs[k++ % 6];
	snprintf(c, 512, "%s/%s/%s.pem", tmpdir, pki_cert, name);
	snprintf(kk, 512, "%s/%s/%s.key", tmpdir, pki_cert, name);
	snprintf(ca, 512, "%s/%s/ca.pem", tmpdir, pki_ca);
	o->tls_cert = c;
	o->tls_key = kk;
	o->tls_ca = ca;
}

/* The coordinator refuses a client whose certificate it does not accept,
 * inside the handshake, so the dial fails with a clear error and no request
 * ever gets through. 1 if refused. */
static int refused_peer(const char *url, fl_net_opts *co, server *sv, int before)
{
	nng_socket c;
	co->recv_timeout_ms = 1000;
	int rv = fl_net_dial(&c, url, co);
	if (rv == FL_EKEY)
		return sv->received == before;
	if (rv == 0) {
		fprintf(stderr, "  dial succeeded; request: %d\n", exchange(c, 5));
		nng_close(c);
	}
	return 0;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void test_tls_mutual(void)
{
	if (!make_certs())
		TEST_SKIP("cannot make test certificates (needs openssl and scripts/certs.sh: "
		          "run from the repository root)");
	fl_net_opts so, co;
	tls_opts(&so, "a", "coordinator", "a");
	server sv;
	int port = 0;
	CHECK_RC(server_start(&sv, "tls+tcp://127.0.0.1:0", &so, &port));
	CHECK(port > 0);
	char url[64];
	snprintf(url, sizeof url, "tls+tcp://127.0.0.1:%d", port);
	nng_socket c;
	/* right CA, right certificate; the dial returns as soon as it connected
	 * (it used to wait 2 s for a drop that never came) */
	tls_opts(&co, "a", "client-0", "a");
	co.dial_sync = 1;
	double t0 = now_s();
	CHECK_RC(fl_net_dial(&c, url, &co));
	double dt = now_s() - t0;
	fprintf(stderr, "  a good TLS dial took %.3f s\n", dt);
	CHECK(dt < 1.5);
	CHECK_RC(exchange(c, 2));
	nng_close(c);
	/* the name in the URL must be in the coordinator's certificate */
	char url2[64];
	snprintf(url2, sizeof url2, "tls+tcp://localhost:%d", port);
	CHECK_RC(fl_net_dial(&c, url2, &co));
	CHECK_RC(exchange(c, 3));
	nng_close(c);
	co.tls_server_name = "not-the-coordinator";
	CHECK(fl_net_dial(&c, url, &co) == FL_EKEY);
	co.tls_server_name = NULL;
	/* client certificate from another CA: the coordinator refuses it */
	int before = sv.received;
	tls_opts(&co, "b", "client-0", "a");
	co.dial_sync = 1;
	CHECK(refused_peer(url, &co, &sv, before));
	/* no client certificate at all: refused too */
	tls_opts(&co, "a", "client-0", "a");
	co.tls_cert = co.tls_key = NULL;
	co.dial_sync = 1;
	CHECK(refused_peer(url, &co, &sv, before));
	/* a client that trusts another CA refuses the coordinator */
	tls_opts(&co, "a", "client-0", "b");
	co.dial_sync = 1;
	CHECK(fl_net_dial(&c, url, &co) == FL_EKEY);
	/* plain TCP to a TLS listener gets nothing */
	char url3[64];
	snprintf(url3, sizeof url3, "tcp://127.0.0.1:%d", port);
	client_opts(&co);
	co.recv_timeout_ms = 500;
	CHECK_RC(fl_net_dial(&c, url3, &co));
	CHECK(exchange(c, 4) != 0);
	nng_close(c);
	CHECK(sv.received == before);
	server_stop(&sv);
}

/* nng 1.5.2 (issue #1518) stops a TLS listener for good when peers hang up
 * during the SP header exchange; the listener's monitor re-creates it, here
 * on the port a tls+tcp://...:0 listener was given. 100 such peers from
 * tests/tls_probe.py, then a good client must be served within 30 s. */
static void test_tls_listener_recovers(void)
{
	/* The connections a stopped listener holds are never freed by nng
	 * (#1518), so under LeakSanitizer the case runs in a child process of
	 * its own with leak detection off; the other cases keep it. */
	if (!getenv("FEDLORA_NET_TEST_CHILD")) {
		char cmd[1200];
		const char *asan = getenv("ASAN_OPTIONS");
		int rc;
		snprintf(cmd, sizeof cmd,
		         "FEDLORA_NET_TEST_CHILD=1 ASAN_OPTIONS='%s%sdetect_leaks=0' "
		         "/proc/%d/exe test_tls_listener_recovers >%s/child.log 2>&1",
		         asan ? asan : "", asan && *asan ? ":" : "", (int)getpid(), tmpdir);
		rc = system(cmd);
		if (rc != 0) { /* the child's lines, indented so no runner counts them */
			snprintf(cmd, sizeof cmd, "sed 's/^/  child: /' %s/child.log >&2", tmpdir);
			if (system(cmd) != 0)
				fprintf(stderr, "  (no child.log)\n");
		}
		CHECK(rc == 0);
		return;
	}
	if (!make_certs())
		TEST_SKIP("cannot make test certificates (needs openssl and scripts/certs.sh)");
	if (system("python3 -c 'import ssl' 2>/dev/null") != 0)
		TEST_SKIP("python3 with ssl not found (runs tests/tls_probe.py)");
	fl_net_opts so, co;
	tls_opts(&so, "a", "coordinator", "a");
	server sv;
	int port = 0;
	CHECK_RC(server_start(&sv, "tls+tcp://127.0.0.1:0", &so, &port));
	char url[64], cmd[1024];
	snprintf(url, sizeof url, "tls+tcp://127.0.0.1:%d", port);
	snprintf(cmd, sizeof cmd,
	         "python3 tests/tls_probe.py hangup 127.0.0.1 %d %s/a/ca.pem %s/a/client-0.pem "
	         "%s/a/client-0.key 100",
	         port, tmpdir, tmpdir, tmpdir);
	CHECK(system(cmd) == 0);
	tls_opts(&co, "a", "client-0", "a");
	co.dial_sync = 1;
	nng_socket c;
	CHECK_RC(fl_net_dial(&c, url, &co));
	int rv = -1;
	for (double t0 = now_s(); rv != 0 && now_s() - t0 < 30;)
		rv = exchange(c, 6);
	CHECK_RC(rv);
	nng_close(c);
	server_stop(&sv);
}

static const test_case cases[] = {
    TEST(test_inproc_exchange),
    TEST(test_tcp_exchange_and_port),
    TEST(test_dial_before_listen_reconnects),
    TEST(test_oversized_refused),
    TEST(test_url_checks),
    TEST(test_tls_mutual),
    TEST(test_tls_listener_recovers),
    {0},
};

int main(int argc, char **argv)
{
	if (priv_key_generate(&server_key) != 0 || priv_key_generate(&client_key) != 0)
		return 1;
	snprintf(tmpdir, sizeof tmpdir, "%s/fedlora-net.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir))
		return 1;
	int rc = test_main(argc, argv, cases);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	priv_key_wipe(&server_key);
	priv_key_wipe(&client_key);
	return rc;
}
