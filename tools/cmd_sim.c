/*
 * tools/cmd_sim.c — `fedlora sim`: a whole federated run as local processes.
 *
 * Generates keys under RUN/keys (kept and reused when the run directory is
 * run again), starts one `fedlora coordinator` (this same binary, through
 * /proc/self/exe) on a free loopback TCP port with an allow list of the
 * generated client keys, and N `fedlora client` processes; prints one
 * progress line per committed round from RUN/metrics.jsonl; waits for the
 * coordinator to finish and the clients to see Done; kills whatever is left
 * in every case (also on SIGINT/SIGTERM, and children die with sim through
 * PR_SET_PDEATHSIG). Exit 0 once every round is committed, 1 otherwise with
 * a message naming the log to read.
 *
 * Logs: RUN/coordinator-stderr.log (the coordinator's console; it writes
 * RUN/coordinator.log itself) and RUN/client-I.log per client.
 *
 * Options it does not know go to the coordinator unchanged (with the value
 * that follows them, if it does not start with "--").
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "privacy/sign.h"
#include "tools/cmds.h"

#define SIM_MAX_CLIENTS    1024
#define SIM_MAX_ARGS       256
#define SIM_PATH_MAX       4096
#define SIM_TICK_MS        100
#define SIM_CLIENT_GRACE_S 15.0 /* wait for clients to see Done after the coordinator */
#define SIM_ORPHAN_GRACE_S 10.0 /* coordinator alone after every client exited */

static volatile sig_atomic_t sim_signal;

static void sim_on_signal(int sig)
{
	sim_signal = sig;
}

static void sim_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: fedlora sim --clients N --rounds R --strategy fedit|ffa|fair "
	    "--task linreg|lm --run-dir DIR [options] [coordinator options]\n\n"
	    "Runs one coordinator and N clients as local processes on a free loopback TCP\n"
	    "port, prints one line per committed round, and exits 0 once every round is\n"
	    "committed. Keys are generated under DIR/keys; logs are DIR/client-I.log and\n"
	    "DIR/coordinator-stderr.log. Running it again on the same DIR resumes the run.\n\n"
	    "  --clients N              client processes (1..%d)\n"
	    "  --rounds R               rounds to run\n"
	    "  --strategy S             fedit | ffa | fair\n"
	    "  --task T                 linreg | lm\n"
	    "  --run-dir DIR            run directory\n"
	    "  --clients-per-round K    clients selected per round (default N)\n"
	    "  --min-clients M          quorum of a round (default K)\n"
	    "  --seed S                 run seed (default 1)\n"
	    "  --enroll-any             admit any key instead of the allow list of DIR/keys\n"
	    "  --data-per-client \"P0;P1;...\"  lm: client I trains on entry I mod count\n"
	    "                           (each entry: comma-separated files or folders)\n"
	    "  --base DIR               lm: base model folder (coordinator and clients)\n"
	    "  --device cpu|cuda|auto   lm: clients' device (default cpu)\n"
	    "  --grad-checkpoint        lm: clients recompute layers in the backward\n"
	    "  --hostile N --attack SPEC  TESTING ONLY: the last N clients corrupt their\n"
	    "                           updates (see `fedlora client --help`, --attack)\n"
	    "  --timeout SEC            give up after SEC seconds (default 3600; 0 = never)\n"
	    "  --quiet                  no progress lines\n"
	    "  --help                   this text\n\n"
	    "Any other option (e.g. --lr 0.1, --local-steps 20, --dp sample, --round-timeout 5,\n"
	    "--accountant rdp|prv, --eps-error E, --secure-agg) is passed to `fedlora\n"
	    "coordinator`; see `fedlora coordinator --help`. The run's accountant reaches the\n"
	    "clients with every task; the final line gives the last epsilon and its accountant.\n",
	    SIM_MAX_CLIENTS);
}

static double sim_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int sim_free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* Key pair DIR/keys/NAME.{key,pub}: reused when present, generated otherwise. */
static int sim_key(const char *keydir, const char *name, uint8_t pk[PRIV_PK_BYTES], char *keypath,
                   size_t n)
{
	char prefix[SIM_PATH_MAX - 16], pub[SIM_PATH_MAX];
	int rv;
	snprintf(prefix, sizeof prefix, "%s/%s", keydir, name);
	snprintf(keypath, n, "%s.key", prefix);
	snprintf(pub, sizeof pub, "%s.pub", prefix);
	if (access(keypath, F_OK) == 0 && access(pub, F_OK) == 0)
		return priv_pub_load(pk, pub);
	rv = priv_keygen(prefix, 1, pk);
	if (rv != 0)
		fprintf(stderr, "fedlora sim: cannot write key %s: %s\n", prefix, fl_strerror(rv));
	return rv;
}

/* fork + exec of this binary with argv, stdout/stderr to logpath. */
static pid_t sim_spawn(char *const *argv, const char *logpath)
{
	pid_t parent = getpid(), pid;
	int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "fedlora sim: cannot open %s: %s\n", logpath, strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		execv("/proc/self/exe", argv);
		fprintf(stderr, "fedlora sim: exec failed: %s\n", strerror(errno));
		_exit(127);
	}
	close(fd);
	if (pid < 0)
		fprintf(stderr, "fedlora sim: fork failed: %s\n", strerror(errno));
	return pid;
}

typedef struct sim_proc {
	pid_t pid;
	int running, status;
	char log[SIM_PATH_MAX];
} sim_proc;

/* Reaps exited children into procs[]. */
static void sim_reap(sim_proc *procs, int n)
{
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);
		if (p <= 0)
			return;
		for (int i = 0; i < n; i++)
			if (procs[i].pid == p && procs[i].running) {
				procs[i].running = 0;
				procs[i].status = st;
			}
	}
}

/* SIGTERM to every running child, SIGKILL after 2 s, reap all. */
static void sim_kill_all(sim_proc *procs, int n)
{
	double t0 = sim_now();
	int left;
	for (int i = 0; i < n; i++)
		if (procs[i].running)
			kill(procs[i].pid, SIGTERM);
	do {
		usleep(20000);
		sim_reap(procs, n);
		left = 0;
		for (int i = 0; i < n; i++)
			left += procs[i].running;
	} while (left && sim_now() - t0 < 2.0);
	for (int i = 0; i < n; i++)
		if (procs[i].running)
			kill(procs[i].pid, SIGKILL);
	while (left) {
		usleep(20000);
		sim_reap(procs, n);
		left = 0;
		for (int i = 0; i < n; i++)
			left += procs[i].running;
	}
}

static void sim_status_text(int st, char *buf, size_t n)
{
	if (WIFEXITED(st))
		snprintf(buf, n, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, n, "signal %d", WTERMSIG(st));
	else
		snprintf(buf, n, "status %d", st);
}

static double jnum(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The last committed round's epsilon, delta and accountant, for the final
 * summary line (NAN / "" without DP). */
static double sim_last_eps = NAN, sim_last_delta = NAN;
static char sim_last_acct[8];

/* Prints metrics lines of rounds > *printed; returns the last round seen. */
static int sim_progress(const char *metrics, int rounds, int *printed, int quiet)
{
	FILE *f = fopen(metrics, "r");
	char *line = NULL;
	size_t cap = 0;
	int last = *printed;
	if (!f)
		return last;
	while (getline(&line, &cap, f) > 0) {
		cJSON *o = cJSON_Parse(line);
		int r;
		if (!o)
			continue;
		r = (int)jnum(o, "round");
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "aborted"))) {
			/* secure aggregation stopped the run in round r: not committed */
			if (!quiet && r > *printed)
				printf("round %d/%d  aborted (secure aggregation; reasons in %s)\n", r,
				       rounds, metrics);
			cJSON_Delete(o);
			continue;
		}
		if (r > *printed) {
			const cJSON *rej = cJSON_GetObjectItemCaseSensitive(o, "rejected"), *it;
			double nrej = 0;
			cJSON_ArrayForEach(it, rej) if (cJSON_IsNumber(it)) nrej += it->valuedouble;
			if (!quiet) {
				double eps = jnum(o, "epsilon");
				char es[32] = "-";
				if (!isnan(eps))
					snprintf(es, sizeof es, "%.4g", eps);
				printf(
				    "round %d/%d  reported %.0f/%.0f  rejected %.0f  train %.5g  "
				    "eval %.5g  agg_bias %.4g  eps %s  up %.1f KB  %.2f s\n",
				    r, rounds, jnum(o, "reported"), jnum(o, "selected"), nrej,
				    jnum(o, "train_loss"), jnum(o, "eval_loss"),
				    jnum(o, "agg_bias"), es, jnum(o, "bytes_up") / 1024.0,
				    jnum(o, "seconds"));
			}
			{
				const cJSON *ac = cJSON_GetObjectItemCaseSensitive(o, "accountant");
				sim_last_eps = jnum(o, "epsilon");
				sim_last_delta = jnum(o, "delta");
				snprintf(sim_last_acct, sizeof sim_last_acct, "%s",
				         cJSON_IsString(ac) ? ac->valuestring : "rdp");
			}
			*printed = r;
			last = r;
		}
		cJSON_Delete(o);
	}
	free(line);
	fclose(f);
	fflush(stdout);
	return last;
}

/* 1 when RUN/state.json says the run is done because --target-eps stopped it
 * (the coordinator exits 0 then, before the last round). */
static int sim_stopped_at_target(const char *run_dir)
{
	char path[4096], *buf = NULL;
	size_t cap = 0;
	int yes = 0;
	FILE *f;
	snprintf(path, sizeof path, "%s/state.json", run_dir);
	if (!(f = fopen(path, "r")))
		return 0;
	if (getdelim(&buf, &cap, '\0', f) > 0) {
		cJSON *o = cJSON_Parse(buf);
		const cJSON *done = cJSON_GetObjectItemCaseSensitive(o, "done");
		const cJSON *why = cJSON_GetObjectItemCaseSensitive(o, "reason");
		yes = cJSON_IsTrue(done) && cJSON_IsString(why) &&
		      !strcmp(why->valuestring, "target_eps");
		cJSON_Delete(o);
	}
	free(buf);
	fclose(f);
	return yes;
}

static int sim_parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	long v;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

int cmd_sim(int argc, char **argv)
{
	int nclients = 0, rounds = 0, per_round = 0, min_clients = 0, quiet = 0, enroll_any = 0;
	const char *strategy = NULL, *task = NULL, *run_dir = NULL, *seed = NULL;
	const char *data_pc = NULL, *base = NULL, *device = "cpu";
	int grad_ckpt = 0;
	const char *attack = NULL; /* --hostile/--attack: tests and experiments only */
	int hostile = 0;
	double timeout = 3600;
	const char *pass[SIM_MAX_ARGS];
	int npass = 0, port, rv = 1, printed = 0, coord_ok = 0;
	char keydir[SIM_PATH_MAX - 64], ckey[SIM_PATH_MAX], allow[SIM_PATH_MAX], url[64];
	char metrics[SIM_PATH_MAX], buf[64], *data_copy = NULL;
	char *data_parts[SIM_MAX_CLIENTS];
	int ndata = 0;
	sim_proc *procs = NULL; /* [0] coordinator, [1..n] clients */
	uint8_t pk[PRIV_PK_BYTES];
	struct sigaction sa;
	double t0, all_clients_gone = 0, coord_done_at = 0;
	FILE *af;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			sim_usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--quiet")) {
			quiet = 1;
			continue;
		}
		if (!strcmp(a, "--enroll-any")) {
			enroll_any = 1;
			continue;
		}
		if (!strcmp(a, "--grad-checkpoint")) {
			grad_ckpt = 1;
			continue;
		}
		if (strncmp(a, "--", 2)) {
			fprintf(stderr, "fedlora sim: unexpected argument '%s' (see --help)\n", a);
			return 2;
		}
#define SIM_NEED_VALUE                                                                             \
	do {                                                                                       \
		if (!v) {                                                                          \
			fprintf(stderr, "fedlora sim: %s needs a value\n", a);                     \
			return 2;                                                                  \
		}                                                                                  \
		i++;                                                                               \
	} while (0)
		if (!strcmp(a, "--clients")) {
			SIM_NEED_VALUE;
			if (sim_parse_int(v, 1, SIM_MAX_CLIENTS, &nclients)) {
				fprintf(stderr, "fedlora sim: --clients must be in 1..%d\n",
				        SIM_MAX_CLIENTS);
				return 2;
			}
		} else if (!strcmp(a, "--rounds")) {
			SIM_NEED_VALUE;
			if (sim_parse_int(v, 1, 1000000, &rounds)) {
				fprintf(stderr, "fedlora sim: --rounds must be in 1..1000000\n");
				return 2;
			}
		} else if (!strcmp(a, "--clients-per-round")) {
			SIM_NEED_VALUE;
			if (sim_parse_int(v, 1, SIM_MAX_CLIENTS, &per_round)) {
				fprintf(stderr, "fedlora sim: bad --clients-per-round '%s'\n", v);
				return 2;
			}
		} else if (!strcmp(a, "--min-clients")) {
			SIM_NEED_VALUE;
			if (sim_parse_int(v, 1, SIM_MAX_CLIENTS, &min_clients)) {
				fprintf(stderr, "fedlora sim: bad --min-clients '%s'\n", v);
				return 2;
			}
		} else if (!strcmp(a, "--strategy")) {
			SIM_NEED_VALUE;
			strategy = v;
		} else if (!strcmp(a, "--task")) {
			SIM_NEED_VALUE;
			task = v;
		} else if (!strcmp(a, "--run-dir")) {
			SIM_NEED_VALUE;
			run_dir = v;
		} else if (!strcmp(a, "--seed")) {
			SIM_NEED_VALUE;
			seed = v;
		} else if (!strcmp(a, "--hostile")) {
			SIM_NEED_VALUE;
			if (sim_parse_int(v, 0, SIM_MAX_CLIENTS, &hostile)) {
				fprintf(stderr, "fedlora sim: bad --hostile '%s'\n", v);
				return 2;
			}
		} else if (!strcmp(a, "--attack")) {
			SIM_NEED_VALUE;
			attack = v;
		} else if (!strcmp(a, "--data-per-client")) {
			SIM_NEED_VALUE;
			data_pc = v;
		} else if (!strcmp(a, "--base") || !strcmp(a, "--base-dir")) {
			SIM_NEED_VALUE;
			base = v;
		} else if (!strcmp(a, "--device")) {
			SIM_NEED_VALUE;
			device = v;
		} else if (!strcmp(a, "--timeout")) {
			char *end;
			SIM_NEED_VALUE;
			timeout = strtod(v, &end);
			if (end == v || *end || !(timeout >= 0)) {
				fprintf(stderr, "fedlora sim: bad --timeout '%s'\n", v);
				return 2;
			}
		} else if (!strcmp(a, "--listen") || !strcmp(a, "--key") || !strcmp(a, "--allow")) {
			fprintf(stderr, "fedlora sim: %s is chosen by sim itself\n", a);
			return 2;
		} else {
			if (npass + 2 >= SIM_MAX_ARGS - 40) {
				fprintf(stderr, "fedlora sim: too many options\n");
				return 2;
			}
			pass[npass++] = a;
			if (v && strncmp(v, "--", 2)) {
				pass[npass++] = v;
				i++;
			}
		}
#undef SIM_NEED_VALUE
	}
	if (!nclients || !rounds || !strategy || !task || !run_dir) {
		fprintf(stderr,
		        "fedlora sim: --clients, --rounds, --strategy, --task and --run-dir "
		        "are required (see --help)\n");
		return 2;
	}
	if (strcmp(task, "linreg") && strcmp(task, "lm")) {
		fprintf(stderr, "fedlora sim: --task must be linreg or lm\n");
		return 2;
	}
	if (!strcmp(task, "lm") && (!data_pc || !base)) {
		fprintf(stderr, "fedlora sim: --task lm needs --data-per-client and --base\n");
		return 2;
	}
	if (!per_round)
		per_round = nclients;
	if (per_round > nclients) {
		fprintf(stderr, "fedlora sim: --clients-per-round (%d) exceeds --clients (%d)\n",
		        per_round, nclients);
		return 2;
	}
	if (!!attack != !!hostile || hostile > nclients) {
		fprintf(stderr, "fedlora sim: --hostile N (1..--clients) and --attack SPEC go "
		                "together\n");
		return 2;
	}
	if (!min_clients)
		min_clients = per_round;
	if (min_clients > per_round) {
		fprintf(stderr,
		        "fedlora sim: --min-clients (%d) exceeds --clients-per-round (%d)\n",
		        min_clients, per_round);
		return 2;
	}
	if (data_pc) {
		char *save = NULL, *tok;
		data_copy = strdup(data_pc);
		if (!data_copy)
			return 1;
		for (tok = strtok_r(data_copy, ";", &save); tok && ndata < SIM_MAX_CLIENTS;
		     tok = strtok_r(NULL, ";", &save))
			if (*tok)
				data_parts[ndata++] = tok;
		if (!ndata) {
			fprintf(stderr, "fedlora sim: --data-per-client has no paths\n");
			free(data_copy);
			return 2;
		}
	}

	/* run directory, keys, allow list */
	if (strlen(run_dir) > SIM_PATH_MAX / 2) {
		fprintf(stderr, "fedlora sim: --run-dir path too long\n");
		goto out;
	}
	snprintf(keydir, sizeof keydir, "%s/keys", run_dir);
	if ((mkdir(run_dir, 0755) && errno != EEXIST) || (mkdir(keydir, 0700) && errno != EEXIST)) {
		fprintf(stderr, "fedlora sim: cannot create %s: %s\n", keydir, strerror(errno));
		goto out;
	}
	if (sim_key(keydir, "coordinator", pk, ckey, sizeof ckey) != 0)
		goto out;
	snprintf(allow, sizeof allow, "%s/allow.txt", keydir);
	af = fopen(allow, "w");
	if (!af) {
		fprintf(stderr, "fedlora sim: cannot write %s: %s\n", allow, strerror(errno));
		goto out;
	}
	fprintf(af, "# client keys of this simulation (written by fedlora sim)\n");
	procs = calloc(nclients + 1, sizeof *procs);
	if (!procs) {
		fclose(af);
		goto out;
	}
	for (int i = 0; i < nclients; i++) {
		char name[32], hex[PRIV_PK_HEX];
		snprintf(name, sizeof name, "client-%d", i);
		if (sim_key(keydir, name, pk, procs[i + 1].log, sizeof procs[i + 1].log) != 0) {
			fclose(af);
			goto out;
		}
		priv_pk_to_hex(pk, hex);
		fprintf(af, "%s\n", hex);
	}
	if (fclose(af) != 0) {
		fprintf(stderr, "fedlora sim: cannot write %s\n", allow);
		goto out;
	}
	port = sim_free_port();
	if (port <= 0) {
		fprintf(stderr, "fedlora sim: no free loopback port\n");
		goto out;
	}
	snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
	snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run_dir);

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = sim_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	/* coordinator */
	{
		static char s_rounds[16], s_k[16], s_m[16];
		const char *a[SIM_MAX_ARGS];
		int n = 0;
		snprintf(s_rounds, sizeof s_rounds, "%d", rounds);
		snprintf(s_k, sizeof s_k, "%d", per_round);
		snprintf(s_m, sizeof s_m, "%d", min_clients);
		a[n++] = "fedlora";
		a[n++] = "coordinator";
		a[n++] = "--listen";
		a[n++] = url;
		a[n++] = "--run-dir";
		a[n++] = run_dir;
		a[n++] = "--key";
		a[n++] = ckey;
		a[n++] = "--task";
		a[n++] = task;
		a[n++] = "--strategy";
		a[n++] = strategy;
		a[n++] = "--rounds";
		a[n++] = s_rounds;
		a[n++] = "--clients-per-round";
		a[n++] = s_k;
		a[n++] = "--min-clients";
		a[n++] = s_m;
		if (enroll_any) {
			a[n++] = "--enroll-any";
		} else {
			a[n++] = "--allow";
			a[n++] = allow;
		}
		if (seed) {
			a[n++] = "--seed";
			a[n++] = seed;
		}
		if (base) {
			a[n++] = "--base-dir";
			a[n++] = base;
		}
		for (int j = 0; j < npass; j++)
			a[n++] = pass[j];
		a[n] = NULL;
		snprintf(procs[0].log, sizeof procs[0].log, "%s/coordinator-stderr.log", run_dir);
		procs[0].pid = sim_spawn((char *const *)a, procs[0].log);
		if (procs[0].pid < 0)
			goto out;
		procs[0].running = 1;
	}
	/* clients: procs[i+1].log held the key path until now */
	for (int i = 0; i < nclients; i++) {
		char key[SIM_PATH_MAX], idx[16];
		const char *a[24];
		int n = 0;
		snprintf(key, sizeof key, "%s", procs[i + 1].log);
		snprintf(procs[i + 1].log, sizeof procs[i + 1].log, "%s/client-%d.log", run_dir, i);
		snprintf(idx, sizeof idx, "%d", i);
		a[n++] = "fedlora";
		a[n++] = "client";
		a[n++] = "--connect";
		a[n++] = url;
		a[n++] = "--key";
		a[n++] = key;
		a[n++] = "--task";
		a[n++] = task;
		a[n++] = "--client-index";
		a[n++] = idx;
		if (attack && i >= nclients - hostile) { /* the last `hostile` clients */
			a[n++] = "--attack";
			a[n++] = attack;
		}
		if (ndata) {
			a[n++] = "--data";
			a[n++] = data_parts[i % ndata];
			a[n++] = "--base";
			a[n++] = base;
			a[n++] = "--device";
			a[n++] = device;
			if (grad_ckpt)
				a[n++] = "--grad-checkpoint";
		}
		a[n] = NULL;
		procs[i + 1].pid = sim_spawn((char *const *)a, procs[i + 1].log);
		if (procs[i + 1].pid < 0)
			goto out;
		procs[i + 1].running = 1;
	}
	if (!quiet) {
		printf("sim: %d clients, %d rounds, strategy %s, task %s, coordinator on %s, run "
		       "dir %s\n",
		       nclients, rounds, strategy, task, url, run_dir);
		fflush(stdout);
	}

	/* watch */
	t0 = sim_now();
	for (;;) {
		int clients_running = 0;
		usleep(SIM_TICK_MS * 1000);
		sim_reap(procs, nclients + 1);
		sim_progress(metrics, rounds, &printed, quiet);
		if (sim_signal) {
			fprintf(stderr,
			        "fedlora sim: interrupted (signal %d); stopping every process\n",
			        (int)sim_signal);
			break;
		}
		for (int i = 1; i <= nclients; i++) {
			if (procs[i].running) {
				clients_running++;
			} else if (procs[i].status != 0 && procs[i].pid > 0) {
				sim_status_text(procs[i].status, buf, sizeof buf);
				fprintf(stderr, "fedlora sim: client %d stopped (%s); see %s\n",
				        i - 1, buf, procs[i].log);
				procs[i].pid = 0; /* reported once */
			}
		}
		if (!procs[0].running) {
			if (!coord_done_at) {
				coord_done_at = sim_now();
				if (!(WIFEXITED(procs[0].status) &&
				      WEXITSTATUS(procs[0].status) == 0)) {
					sim_status_text(procs[0].status, buf, sizeof buf);
					fprintf(
					    stderr,
					    "fedlora sim: the coordinator stopped (%s) after round "
					    "%d of %d; see %s and %s/coordinator.log\n",
					    buf, printed, rounds, procs[0].log, run_dir);
					break;
				}
				coord_ok = 1;
			}
			if (!clients_running || sim_now() - coord_done_at > SIM_CLIENT_GRACE_S)
				break;
			continue;
		}
		if (!clients_running) {
			if (!all_clients_gone)
				all_clients_gone = sim_now();
			else if (sim_now() - all_clients_gone > SIM_ORPHAN_GRACE_S) {
				fprintf(stderr,
				        "fedlora sim: every client exited before the run finished "
				        "(round %d of %d); see %s/client-*.log\n",
				        printed, rounds, run_dir);
				break;
			}
		}
		if (timeout > 0 && sim_now() - t0 > timeout) {
			fprintf(stderr, "fedlora sim: timed out after %.0f s at round %d of %d\n",
			        timeout, printed, rounds);
			break;
		}
	}
	sim_kill_all(procs, nclients + 1);
	sim_progress(metrics, rounds, &printed, quiet);
	if (!quiet && printed > 0 && !isnan(sim_last_eps))
		printf("sim: final epsilon %.6g at delta %g (accountant %s)\n", sim_last_eps,
		       sim_last_delta, sim_last_acct);
	if (coord_ok && printed >= rounds) {
		rv = 0;
		if (!quiet)
			printf("sim: all %d rounds committed in %.1f s; metrics in %s\n", rounds,
			       sim_now() - t0, metrics);
	} else if (coord_ok && sim_stopped_at_target(run_dir)) {
		rv = 0;
		if (!quiet)
			printf("sim: --target-eps stopped the run after round %d of %d in %.1f s; "
			       "metrics in %s\n",
			       printed, rounds, sim_now() - t0, metrics);
	} else if (coord_ok) {
		fprintf(stderr,
		        "fedlora sim: the coordinator finished but metrics.jsonl ends at round %d "
		        "of %d; see %s/coordinator.log\n",
		        printed, rounds, run_dir);
	}
out:
	if (procs && rv != 0)
		sim_kill_all(procs, nclients + 1);
	free(procs);
	free(data_copy);
	return sim_signal ? 130 : rv;
}
