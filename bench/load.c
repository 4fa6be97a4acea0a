/*
 * bench/load.c — load generator: many real client sessions against a real
 * coordinator process on loopback, measuring the coordinator and the clients.
 *
 *   build/bench/load [--clients N] [--per-round K] [--rounds R] [--contexts C]
 *                    [--poll-timeout S] [--port P] [--fedlora PATH] [--dir DIR]
 *                    [--json PATH] [--secure-agg] [--sa-phase-timeout S]
 *                    [--linreg-layers L] [--linreg-dim D] [--seed S]
 *
 * Defaults: 1000 clients, 100 per round, 10 rounds. Each client is
 * client_run() (client/session.c, the code of `fedlora client`) on its own
 * thread of this process, with its own Ed25519 key file and its own nng REQ
 * socket over tcp://127.0.0.1; every message is signed and verified as in a
 * real run. The coordinator is `fedlora coordinator` started as a child
 * process with an allow list of the N public keys, the linreg task at a tiny
 * size (1 layer of width 4, 1 local step) so that training is negligible and
 * the coordinator's request handling is what is measured (--linreg-layers and
 * --linreg-dim make the update bigger). --contexts, --poll-timeout and --seed
 * go to the coordinator as its own options (defaults 64, 2 s and 1, as the
 * coordinator's). --secure-agg runs every round under secure aggregation
 * (`fedlora coordinator --secure-agg`, with --sa-phase-timeout, default 10 s):
 * the clients then answer a Task through the five SecAgg+ phases of
 * client/secagg_client.c instead of one Submit.
 *
 * Measured:
 *   - per-request latency, client side, from send to the verified reply, by
 *     request and reply type (Hello->Welcome, GetTask->Task, GetTask->Wait,
 *     Submit->Ack; a GetTask may be held by the coordinator as a long poll),
 *     p50 / p99 / max;
 *   - round wall time: between the commits of consecutive rounds, as seen
 *     by polling metrics.jsonl every 10 ms (round 1: from the coordinator's
 *     start), and the coordinator's own `seconds` of each round;
 *   - coordinator CPU time per round: utime + stime of /proc/PID/stat
 *     between the same commits;
 *   - coordinator memory: VmHWM and the last VmRSS of /proc/PID/status;
 *   - per client and round (between the client's CLIENT_EV_ROUND events, the
 *     first from the session's start): the session thread's CPU time
 *     (CLOCK_THREAD_CPUTIME_ID: training, signing, verifying, secure
 *     aggregation, protobuf, polling) and the envelope bytes it sent and
 *     received (client_opts.on_request; SP and TCP framing not counted),
 *     reported as median / p90 over the accepted client-rounds of rounds
 *     2..R (round 1 includes key loading and the Hello).
 * Prints a table and writes JSON (default: load.json next to the binary).
 *
 * With --dir, key files already there are reused (their run folder is
 * replaced), so repeated runs skip key generation.
 *
 * Limits of one process: N threads (stack 256 KiB each) and N sockets (one
 * fd each here and one in the coordinator); the soft fd limit is raised to
 * the hard limit, and N is refused when it would not fit.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "client/session.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/wire.h"
#include "privacy/sign.h"

#define MAX_ROUNDS 1000
#define NKIND      9 /* latency kinds, see kind_of */

static const char *kind_names[NKIND] = {"hello->welcome", "get_task->task",    "get_task->wait",
                                        "get_task->done", "submit->ack",       "other reply",
                                        "no reply",       "get_task->sa_down", "sa_up->ack"};

typedef struct lat {
	pthread_mutex_t mu;
	double *v[NKIND];
	size_t n[NKIND], cap[NKIND];
} lat;

typedef struct bench {
	int clients, per_round, rounds, contexts;
	int secure_agg, linreg_layers, linreg_dim;
	long long seed;
	double poll_timeout, sa_phase_timeout;
	char url[64], dir[512];
	lat L;
	atomic_int welcomed, finished, failed;
} bench;

/* one CLIENT_EV_ROUND of one client: the cost since the previous one */
typedef struct cl_round {
	uint64_t round;
	int accepted;
	double cpu_s;
	size_t up, down;
} cl_round;

typedef struct cl_arg {
	bench *b;
	int index;
	char key[640];
	int rc;
	/* touched only by the client's own thread until it is joined */
	double cpu_mark;
	size_t up, down; /* since the last round event */
	cl_round *r;
	int nr, cap;
} cl_arg;

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int kind_of(uint32_t type, uint32_t reply, int rc)
{
	if (reply == 0)
		return 6;
	if (rc != 0)
		return 5;
	if (type == FL_MSG_HELLO && reply == FL_MSG_WELCOME)
		return 0;
	if (type == FL_MSG_GET_TASK && reply == FL_MSG_TASK)
		return 1;
	if (type == FL_MSG_GET_TASK && reply == FL_MSG_WAIT)
		return 2;
	if (type == FL_MSG_GET_TASK && reply == FL_MSG_DONE)
		return 3;
	if (type == FL_MSG_SUBMIT && reply == FL_MSG_ACK)
		return 4;
	if (type == FL_MSG_GET_TASK && reply == FL_MSG_SA_DOWN)
		return 7;
	if (type == FL_MSG_SA_UP && reply == FL_MSG_ACK)
		return 8;
	return 5;
}

static void on_request(uint32_t type, uint32_t reply, double sec, int rc, size_t sent,
                       size_t received, void *arg)
{
	cl_arg *a = arg;
	lat *L = &a->b->L;
	int k = kind_of(type, reply, rc);
	a->up += sent;
	a->down += received;
	pthread_mutex_lock(&L->mu);
	if (L->n[k] == L->cap[k]) {
		size_t nc = L->cap[k] ? 2 * L->cap[k] : 1024;
		double *v = realloc(L->v[k], nc * sizeof *v);
		if (!v) {
			pthread_mutex_unlock(&L->mu);
			return;
		}
		L->v[k] = v;
		L->cap[k] = nc;
	}
	L->v[k][L->n[k]++] = sec;
	pthread_mutex_unlock(&L->mu);
}

static void on_event(const client_event *ev, void *arg)
{
	cl_arg *a = arg;
	if (ev->kind == CLIENT_EV_WELCOME)
		atomic_fetch_add(&a->b->welcomed, 1);
	if (ev->kind == CLIENT_EV_ROUND && a->nr < a->cap) {
		double now = thread_cpu_s();
		a->r[a->nr++] = (cl_round){.round = ev->round,
		                           .accepted = ev->accepted,
		                           .cpu_s = now - a->cpu_mark,
		                           .up = a->up,
		                           .down = a->down};
		a->cpu_mark = now;
		a->up = a->down = 0;
	}
}

static void *client_thread(void *arg)
{
	cl_arg *a = arg;
	client_opts o;
	a->cpu_mark = thread_cpu_s();
	client_opts_default(&o);
	o.url = a->b->url;
	o.key_path = a->key;
	o.task = "linreg";
	o.client_index = a->index;
	o.give_up_s = 60;
	o.on_event = on_event;
	o.on_request = on_request;
	o.arg = a;
	a->rc = client_run(&o, NULL);
	atomic_fetch_add(a->rc ? &a->b->failed : &a->b->finished, 1);
	return NULL;
}

static int cmpd(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

static double pct(const double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* utime + stime of pid in seconds; -1 when unreadable */
static double proc_cpu(pid_t pid)
{
	char path[64], buf[2048];
	unsigned long ut, st;
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* VmHWM and VmRSS of pid in MiB; 0 when unreadable */
static void proc_mem(pid_t pid, double *hwm, double *rss)
{
	char path[64], line[256];
	long kb;
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			*hwm = kb / 1024.0;
		else if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			*rss = kb / 1024.0;
	}
	fclose(f);
}

/* Lines of metrics.jsonl so far; `seconds`, `bytes_up` and `bytes_down` of
 * each into secs, mup, mdown. */
static int metrics_lines(const char *dir, double *secs, double *mup, double *mdown, int max)
{
	char path[600], *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int n = 0;
	snprintf(path, sizeof path, "%s/run/metrics.jsonl", dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	/* a secure round's line names every survivor: lines of any length */
	while (n < max && (len = getline(&line, &cap, f)) > 0) {
		if (line[len - 1] != '\n')
			break; /* partly written */
		const char *p = strstr(line, "\"seconds\":");
		const char *u = strstr(line, "\"bytes_up\":");
		const char *d = strstr(line, "\"bytes_down\":");
		mup[n] = u ? atof(u + 11) : 0;
		mdown[n] = d ? atof(d + 13) : 0;
		secs[n++] = p ? atof(p + 10) : 0;
	}
	free(line);
	fclose(f);
	return n;
}

/* Median and p90 of the accepted client-rounds of round `round` (0: every
 * round from `from` on): CPU ms, bytes up, bytes down; *count gets how many. */
typedef struct cl_stat {
	size_t count;
	double cpu_ms[2], up[2], down[2]; /* p50, p90 */
} cl_stat;

static int round_stats(const cl_arg *args, int n, uint64_t round, uint64_t from, cl_stat *out)
{
	size_t m = 0, cap = 0;
	memset(out, 0, sizeof *out);
	for (int i = 0; i < n; i++)
		cap += (size_t)args[i].nr;
	double *v = malloc((3 * cap + 1) * sizeof *v);
	if (!v)
		return FL_ENOMEM;
	double *c = v, *u = v + cap, *d = v + 2 * cap;
	for (int i = 0; i < n; i++)
		for (int k = 0; k < args[i].nr; k++) {
			const cl_round *r = &args[i].r[k];
			if (!r->accepted || (round ? r->round != round : r->round < from))
				continue;
			c[m] = 1e3 * r->cpu_s;
			u[m] = (double)r->up;
			d[m] = (double)r->down;
			m++;
		}
	qsort(c, m, sizeof *c, cmpd);
	qsort(u, m, sizeof *u, cmpd);
	qsort(d, m, sizeof *d, cmpd);
	out->count = m;
	for (int q = 0; q < 2; q++) {
		double p = q ? 0.9 : 0.5;
		out->cpu_ms[q] = pct(c, m, p);
		out->up[q] = pct(u, m, p);
		out->down[q] = pct(d, m, p);
	}
	free(v);
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static pid_t start_coordinator(const bench *b, const char *fedlora)
{
	char rounds[16], per[16], ctxs[16], poll[32], rundir[600], allow[600], key[600];
	char layers[16], dim[16], seed[32], phase[32];
	snprintf(rounds, sizeof rounds, "%d", b->rounds);
	snprintf(per, sizeof per, "%d", b->per_round);
	snprintf(ctxs, sizeof ctxs, "%d", b->contexts);
	snprintf(poll, sizeof poll, "%g", b->poll_timeout);
	snprintf(layers, sizeof layers, "%d", b->linreg_layers);
	snprintf(dim, sizeof dim, "%d", b->linreg_dim);
	snprintf(seed, sizeof seed, "%lld", b->seed);
	snprintf(phase, sizeof phase, "%g", b->sa_phase_timeout);
	snprintf(rundir, sizeof rundir, "%s/run", b->dir);
	snprintf(allow, sizeof allow, "%s/allow.txt", b->dir);
	snprintf(key, sizeof key, "%s/coordinator.key", b->dir);
	char log[600];
	snprintf(log, sizeof log, "%s/coordinator-stderr.log", b->dir);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	FILE *e = freopen(log, "w", stderr);
	(void)e;
	const char *av[] = {fedlora, "coordinator", "--listen", b->url, "--run-dir", rundir,
	                    "--key", key, "--task", "linreg", "--strategy", "fedit", "--rounds",
	                    rounds, "--clients-per-round", per, "--min-clients", per,
	                    "--round-timeout", "120", "--allow", allow, "--linreg-layers", layers,
	                    "--linreg-dim", dim, "--linreg-samples", "8", "--local-steps", "1",
	                    "--batch-size", "4", "--linger", "10", "--contexts", ctxs,
	                    "--poll-timeout", poll, "--seed", seed,
	                    /* the last three only under --secure-agg */
	                    "--sa-phase-timeout", phase, "--secure-agg", NULL};
	size_t nav = sizeof av / sizeof *av;
	if (!b->secure_agg)
		av[nav - 4] = NULL;
	execv(fedlora, (char *const *)av);
	fprintf(stderr, "bench: cannot run %s: %s\n", fedlora, strerror(errno));
	_exit(127);
}

int main(int argc, char **argv)
{
	bench b = {.clients = 1000,
	           .per_round = 100,
	           .rounds = 10,
	           .contexts = 64,
	           .poll_timeout = 2,
	           .sa_phase_timeout = 10,
	           .linreg_layers = 1,
	           .linreg_dim = 4,
	           .seed = 1};
	const char *fedlora = NULL, *json = NULL, *dir = NULL;
	char fl_default[1024], json_default[1024];
	int port = 20000 + (int)(getpid() % 20000);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--clients") && i + 1 < argc)
			b.clients = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--per-round") && i + 1 < argc)
			b.per_round = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			b.rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--contexts") && i + 1 < argc)
			b.contexts = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--poll-timeout") && i + 1 < argc)
			b.poll_timeout = atof(argv[++i]);
		else if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--fedlora") && i + 1 < argc)
			fedlora = argv[++i];
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else if (!strcmp(argv[i], "--secure-agg"))
			b.secure_agg = 1;
		else if (!strcmp(argv[i], "--sa-phase-timeout") && i + 1 < argc)
			b.sa_phase_timeout = atof(argv[++i]);
		else if (!strcmp(argv[i], "--linreg-layers") && i + 1 < argc)
			b.linreg_layers = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--linreg-dim") && i + 1 < argc)
			b.linreg_dim = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			b.seed = atoll(argv[++i]);
		else {
			fprintf(
			    stderr,
			    "usage: %s [--clients N] [--per-round K] [--rounds R] [--contexts C]\n"
			    "          [--poll-timeout S] [--port P] [--fedlora PATH] [--dir DIR]\n"
			    "          [--json PATH] [--secure-agg] [--sa-phase-timeout S]\n"
			    "          [--linreg-layers L] [--linreg-dim D] [--seed S]\n",
			    argv[0]);
			return 2;
		}
	}
	if (!(b.poll_timeout > 0) || !(b.sa_phase_timeout > 0) || b.clients < 1 ||
	    b.per_round < 1 || b.per_round > b.clients || b.rounds < 1 || b.rounds > MAX_ROUNDS ||
	    port < 1 || port > 65535 || b.linreg_layers < 1 || b.linreg_dim < 1 || b.seed < 0) {
		fprintf(stderr,
		        "bench: need 1 <= per-round <= clients, 1 <= rounds <= %d, positive "
		        "timeouts, layers and dim, seed >= 0\n",
		        MAX_ROUNDS);
		return 2;
	}
	const char *slash = strrchr(argv[0], '/');
	int dl = slash ? (int)(slash - argv[0] + 1) : 0;
	if (!fedlora) {
		snprintf(fl_default, sizeof fl_default, "%.*s../fedlora", dl, argv[0]);
		fedlora = fl_default;
	}
	if (!json) {
		snprintf(json_default, sizeof json_default, "%.*sload.json", dl, argv[0]);
		json = json_default;
	}
	snprintf(b.url, sizeof b.url, "tcp://127.0.0.1:%d", port);
	if (dir)
		snprintf(b.dir, sizeof b.dir, "%s", dir);
	else {
		snprintf(b.dir, sizeof b.dir, "/tmp/fedlora-load-XXXXXX");
		if (!mkdtemp(b.dir)) {
			fprintf(stderr, "bench: cannot create a temporary folder: %s\n",
			        strerror(errno));
			return 1;
		}
	}

	/* fds: one socket per client here (plus nng's own), one per client in
	 * the coordinator */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)b.clients + 256) {
			fprintf(stderr,
			        "bench: %d clients need about %d file descriptors in this process "
			        "and in the coordinator; the limit is %llu (ulimit -n)\n",
			        b.clients, b.clients + 256, (unsigned long long)rl.rlim_cur);
			return 1;
		}
	}
	openblas_set_num_threads(1); /* many sessions train concurrently */
	fl_log_set_level(FL_LOG_ERROR);
	if (priv_sodium_init() != 0)
		return 1;

	/* keys and the allow list */
	double t_keys = fl_now_s();
	char path[700];
	cl_arg *args = calloc(b.clients, sizeof *args);
	pthread_t *th = calloc(b.clients, sizeof *th);
	if (!args || !th)
		return 1;
	snprintf(path, sizeof path, "%s/coordinator", b.dir);
	char ckey[720];
	snprintf(ckey, sizeof ckey, "%s.key", path);
	if (access(ckey, F_OK) != 0 && priv_keygen(path, 1, NULL) != 0) {
		fprintf(stderr, "bench: cannot write %s.key\n", path);
		return 1;
	}
	snprintf(path, sizeof path, "%s/allow.txt", b.dir);
	FILE *af = fopen(path, "w");
	if (!af) {
		fprintf(stderr, "bench: cannot write %s\n", path);
		return 1;
	}
	for (int i = 0; i < b.clients; i++) {
		uint8_t pk[PRIV_PK_BYTES];
		char hex[PRIV_PK_HEX], prefix[600];
		args[i].b = &b;
		args[i].index = i;
		/* a retried round emits another event: room for a few per round */
		args[i].cap = 2 * b.rounds + 8;
		if (!(args[i].r = calloc((size_t)args[i].cap, sizeof *args[i].r)))
			return 1;
		snprintf(prefix, sizeof prefix, "%s/client-%05d", b.dir, i);
		snprintf(args[i].key, sizeof args[i].key, "%s.key", prefix);
		char pub[640];
		snprintf(pub, sizeof pub, "%s.pub", prefix);
		/* a --dir of an earlier run keeps its keys */
		if (access(args[i].key, F_OK) == 0 && priv_pub_load(pk, pub) == 0)
			;
		else if (priv_keygen(prefix, 1, pk) != 0) {
			fprintf(stderr, "bench: cannot write %s\n", args[i].key);
			return 1;
		}
		priv_pk_to_hex(pk, hex);
		fprintf(af, "%s\n", hex);
	}
	if (fclose(af) != 0)
		return 1;
	t_keys = fl_now_s() - t_keys;

	snprintf(path, sizeof path, "%s/run", b.dir);
	if (access(path, F_OK) == 0 && nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
		fprintf(stderr, "bench: cannot remove the old run folder %s\n", path);
		return 1;
	}
	pthread_mutex_init(&b.L.mu, NULL);
	double t0 = fl_now_s();
	pid_t cpid = start_coordinator(&b, fedlora);
	if (cpid < 0) {
		fprintf(stderr, "bench: fork: %s\n", strerror(errno));
		return 1;
	}
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 256 << 10);
	int started = 0;
	const char *stop_reason = NULL;
	for (; started < b.clients; started++) {
		int e = pthread_create(&th[started], &at, client_thread, &args[started]);
		if (e != 0) {
			stop_reason = strerror(e);
			break;
		}
	}
	pthread_attr_destroy(&at);
	if (stop_reason)
		fprintf(stderr, "bench: only %d client threads started: pthread_create: %s\n",
		        started, stop_reason);

	/* watch the coordinator */
	double commit_t[MAX_ROUNDS + 1], commit_cpu[MAX_ROUNDS + 1], secs[MAX_ROUNDS];
	double mup[MAX_ROUNDS], mdown[MAX_ROUNDS];
	double hwm = 0, rss = 0, rss_max = 0, t_all_welcomed = -1;
	int seen = 0, status = 0, exited = 0, reg[MAX_ROUNDS + 1];
	const char *stuck = NULL;
	commit_t[0] = 0;
	commit_cpu[0] = proc_cpu(cpid);
	while (!exited) {
		double h = 0, r = 0;
		proc_mem(cpid, &h, &r);
		if (h > 0) {
			hwm = h;
			rss = r;
			rss_max = r > rss_max ? r : rss_max;
		}
		if (t_all_welcomed < 0 && atomic_load(&b.welcomed) >= started)
			t_all_welcomed = fl_now_s() - t0;
		int n = metrics_lines(b.dir, secs, mup, mdown, b.rounds);
		if (n > seen) {
			double c = proc_cpu(cpid), t = fl_now_s() - t0;
			for (int k = seen + 1; k <= n; k++) {
				commit_t[k] = t;
				commit_cpu[k] = c;
				reg[k] = atomic_load(&b.welcomed);
			}
			seen = n;
		}
		if (waitpid(cpid, &status, WNOHANG) == cpid)
			exited = 1;
		else if ((seen == b.rounds && fl_now_s() - t0 > commit_t[seen] + 60) ||
		         fl_now_s() - t0 > 600 + 30.0 * b.rounds) {
			stuck = seen == b.rounds ? "did not exit within 60 s of its last commit"
			                         : "did not finish its rounds in time";
			fprintf(stderr, "bench: the coordinator %s; killing it\n", stuck);
			kill(cpid, SIGKILL);
			waitpid(cpid, &status, 0);
			exited = 1;
		} else
			usleep(10000);
	}
	double t_run = fl_now_s() - t0;
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);

	int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && seen == b.rounds;
	cl_stat all, per[MAX_ROUNDS + 1];
	uint64_t from = b.rounds > 1 ? 2 : 1;
	if (round_stats(args, started, 0, from, &all) != 0)
		return 1;
	for (int k = 1; k <= seen; k++)
		if (round_stats(args, started, (uint64_t)k, 0, &per[k]) != 0)
			return 1;
	printf("load benchmark: %d clients (%d sessions ran), %d per round, %d rounds, "
	       "coordinator --contexts %d --poll-timeout %g, linreg %d x %d, %s, %s\n",
	       b.clients, started, b.per_round, b.rounds, b.contexts, b.poll_timeout,
	       b.linreg_layers, b.linreg_dim, b.secure_agg ? "secure aggregation" : "plaintext",
	       b.url);
	printf("coordinator: %s; clients: %d finished, %d failed; all welcomed after %.2f s; "
	       "keys written in %.2f s\n",
	       ok ? "exit 0" : "FAILED", atomic_load(&b.finished), atomic_load(&b.failed),
	       t_all_welcomed, t_keys);
	printf("coordinator memory: VmHWM %.1f MiB, VmRSS %.1f MiB at the last sample\n", hwm, rss);
	printf("%-18s %9s %10s %10s %10s\n", "request", "count", "p50 ms", "p99 ms", "max ms");
	for (int k = 0; k < NKIND; k++) {
		qsort(b.L.v[k], b.L.n[k], sizeof(double), cmpd);
		printf("%-18s %9zu %10.2f %10.2f %10.2f\n", kind_names[k], b.L.n[k],
		       1e3 * pct(b.L.v[k], b.L.n[k], 0.5), 1e3 * pct(b.L.v[k], b.L.n[k], 0.99),
		       1e3 * pct(b.L.v[k], b.L.n[k], 1.0));
	}
	if (stuck)
		printf("coordinator %s (killed)\n", stuck);
	printf("%-6s %12s %16s %12s %12s\n", "round", "wall s", "coordinator s", "CPU s",
	       "registered");
	double wall_sum = 0, cpu_sum = 0;
	for (int k = 1; k <= seen; k++) {
		double w = commit_t[k] - commit_t[k - 1], c = commit_cpu[k] - commit_cpu[k - 1];
		printf("%-6d %12.3f %16.3f %12.3f %12d\n", k, w, secs[k - 1], c, reg[k]);
		if (k > 1) {
			wall_sum += w;
			cpu_sum += c;
		}
	}
	if (seen > 1)
		printf("rounds 2..%d: mean wall %.3f s, mean coordinator CPU %.3f s per round\n",
		       seen, wall_sum / (seen - 1), cpu_sum / (seen - 1));
	printf("%-6s %9s %12s %12s %12s %12s %12s %12s\n", "client", "rounds", "CPU ms p50",
	       "CPU ms p90", "up B p50", "up B p90", "down B p50", "down B p90");
	for (int k = 1; k <= seen; k++)
		printf("%-6d %9zu %12.2f %12.2f %12.0f %12.0f %12.0f %12.0f\n", k, per[k].count,
		       per[k].cpu_ms[0], per[k].cpu_ms[1], per[k].up[0], per[k].up[1],
		       per[k].down[0], per[k].down[1]);
	printf("%-6s %9zu %12.2f %12.2f %12.0f %12.0f %12.0f %12.0f\n", from > 1 ? "2.." : "all",
	       all.count, all.cpu_ms[0], all.cpu_ms[1], all.up[0], all.up[1], all.down[0],
	       all.down[1]);
	printf("(client: per session and round, the session thread's CPU and envelope bytes\n"
	       " since its previous round; accepted rounds only)\n");
	printf("(round 1 includes the coordinator's start; registered: Welcomes received by the\n"
	       " sessions when the round was seen committed)\n");

	FILE *f = fopen(json, "w");
	if (!f) {
		fprintf(stderr, "bench: cannot write %s\n", json);
		return 1;
	}
	fprintf(f,
	        "{\"clients\":%d,\"contexts\":%d,\"poll_timeout_s\":%g,\"sessions\":%d,\"per_"
	        "round\":%d,\"rounds\":%d,\"secure_agg\":%s,\"sa_phase_timeout_s\":%g,"
	        "\"linreg_layers\":%d,\"linreg_dim\":%d,\"seed\":%lld,"
	        "\"ok\":%s,"
	        "\"clients_finished\":%d,\"clients_failed\":%d,\"all_welcomed_s\":%.3f,"
	        "\"run_s\":%.3f,\n \"coordinator_vmhwm_mib\":%.2f,\"coordinator_vmrss_mib\":%.2f,"
	        "\"coordinator_vmrss_max_mib\":%.2f,\n \"latency_ms\":{",
	        b.clients, b.contexts, b.poll_timeout, started, b.per_round, b.rounds,
	        b.secure_agg ? "true" : "false", b.sa_phase_timeout, b.linreg_layers, b.linreg_dim,
	        b.seed, ok ? "true" : "false", atomic_load(&b.finished), atomic_load(&b.failed),
	        t_all_welcomed, t_run, hwm, rss, rss_max);
	for (int k = 0; k < NKIND; k++)
		fprintf(f, "%s\"%s\":{\"count\":%zu,\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}",
		        k ? "," : "", kind_names[k], b.L.n[k], 1e3 * pct(b.L.v[k], b.L.n[k], 0.5),
		        1e3 * pct(b.L.v[k], b.L.n[k], 0.99), 1e3 * pct(b.L.v[k], b.L.n[k], 1.0));
	fprintf(f, "},\n \"round\":[");
	for (int k = 1; k <= seen; k++)
		fprintf(f,
		        "%s{\"round\":%d,\"wall_s\":%.4f,\"coordinator_s\":%.4f,\"cpu_s\":%.4f,"
		        "\"registered\":%d,\"metrics_bytes_up\":%.0f,\"metrics_bytes_down\":%.0f,"
		        "\"client_rounds\":%zu,\"client_cpu_ms_p50\":%.3f,\"client_cpu_ms_p90\":%."
		        "3f,\"client_bytes_up_p50\":%.0f,\"client_bytes_down_p50\":%.0f}",
		        k > 1 ? ",\n  " : "", k, commit_t[k] - commit_t[k - 1], secs[k - 1],
		        commit_cpu[k] - commit_cpu[k - 1], reg[k], mup[k - 1], mdown[k - 1],
		        per[k].count, per[k].cpu_ms[0], per[k].cpu_ms[1], per[k].up[0],
		        per[k].down[0]);
	fprintf(f,
	        "],\n \"client\":{\"from_round\":%llu,\"client_rounds\":%zu,"
	        "\"cpu_ms_p50\":%.3f,\"cpu_ms_p90\":%.3f,\"bytes_up_p50\":%.0f,"
	        "\"bytes_up_p90\":%.0f,\"bytes_down_p50\":%.0f,\"bytes_down_p90\":%.0f},\n"
	        " \"coordinator_stuck\":\"%s\"}\n",
	        (unsigned long long)from, all.count, all.cpu_ms[0], all.cpu_ms[1], all.up[0],
	        all.up[1], all.down[0], all.down[1], stuck ? stuck : "");
	fclose(f);
	printf("wrote %s (run folder %s)\n", json, b.dir);
	return ok ? 0 : 1;
}
