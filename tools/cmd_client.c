/*
 * tools/cmd_client.c — `fedlora client`: joins a run, trains locally, submits
 * signed updates (client/session.h), one progress line per round on stdout.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/session.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "tools/cmds.h"

static void client_usage(FILE *f)
{
	fprintf(f,
	        "usage: fedlora client --connect URL --key FILE --task linreg|lm --client-index I "
	        "[options]\n\n"
	        "Joins the run of the coordinator at URL, long-polls for tasks, trains the LoRA\n"
	        "adapter on this client's data, and submits signed updates until the run is done.\n"
	        "Reconnects on its own when the coordinator goes away and comes back.\n\n"
	        "  --connect URL          tcp://HOST:PORT, tls+tcp://HOST:PORT or ipc:///PATH\n"
	        "  --key FILE             this client's secret key (NAME.key from fedlora keygen)\n"
	        "  --task linreg|lm       task this client is set up for (must match the run)\n"
	        "  --client-index I       data shard index (linreg: which synthetic client)\n"
	        "  --seed S               data seed (default: the run's seed)\n"
	        "  --coordinator-key PUB  pin the coordinator's public key (default: the first\n"
	        "                         Welcome's key is pinned)\n"
	        "  --data PATHS           lm: comma-separated text/JSONL files or folders\n"
	        "  --base DIR             lm: base model folder (Hugging Face layout)\n"
	        "  --device cpu|cuda|auto lm: where to train (default cpu)\n"
	        "  --grad-checkpoint      lm: keep layer inputs only, recompute in the backward\n"
	        "  --recv-max BYTES       receive limit (suffix k, M, G; default 256M)\n"
	        "  --tls-cert/--tls-key/--tls-ca FILE   PEM files for tls+tcp://\n"
	        "  --state FILE           where the client keeps its DP accountant history across\n"
	        "                         restarts (default: NAME.state.json next to NAME.key)\n"
	        "  --no-state             keep that history in memory only\n"
	        "  --accountant rdp|prv   accountant of this client's own epsilon (sample-level\n"
	        "                         DP; logs, state file, reports); default: the run's\n"
	        "                         (coordinator --accountant, sent with every task)\n"
	        "  --sa-peers FILE        secure aggregation: hex Ed25519 public keys, one a line\n"
	        "                         ('#' comments); a secure round relaying an identity\n"
	        "                         key not in FILE (key list, unmask request) is\n"
	        "                         refused, logged with the member index\n"
	        "                         (default: trust the members the coordinator names)\n"
	        "  --max-rounds N         stop after training N rounds\n"
	        "  --poll-timeout SEC     longest wait for one reply to GetTask (default 30)\n"
	        "  --give-up SEC          exit 1 after SEC without any reply (default: never)\n"
	        "  --attack SPEC          TESTING ONLY: after honest training corrupt the update\n"
	        "                         (delta d from the global): scale:S (S d), flip (-d),\n"
	        "                         flip:S (-S d), noise:S (d + N(0, S^2)), canary:M\n"
	        "                         (M at the first B coordinate, 0 elsewhere: DP\n"
	        "                         audits); still signed\n"
	        "  --quiet                no progress lines (errors still go to stderr)\n"
	        "  --help                 this text\n\n"
	        "Exit status: 0 when the run is done (or N rounds were trained), 1 on failure,\n"
	        "2 on a usage error.\n\n"
	        "A round whose Task deadline would pass before the update is sent is skipped.\n"
	        "TESTING ONLY, in the environment: FEDLORA_SLOW_MS=N sleeps N ms in every local\n"
	        "step; FEDLORA_DELAY_SUBMIT_MS=N holds the sealed update N ms before sending.\n");
}

static int parse_bytes(const char *s, size_t *out)
{
	char *end;
	unsigned long long v, mul = 1;
	errno = 0;
	if (*s == '-')
		return -1;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	if (*end == 'k' || *end == 'K')
		mul = 1ull << 10;
	else if (*end == 'm' || *end == 'M')
		mul = 1ull << 20;
	else if (*end == 'g' || *end == 'G')
		mul = 1ull << 30;
	else if (*end)
		return -1;
	if (*end && end[1])
		return -1;
	if (v == 0 || v > (1ull << 40) / mul)
		return -1;
	*out = (size_t)(v * mul);
	return 0;
}

typedef struct progress {
	int quiet, index;
} progress;

static void on_event(const client_event *ev, void *arg)
{
	const progress *p = arg;
	if (p->quiet)
		return;
	switch (ev->kind) {
	case CLIENT_EV_WELCOME:
		printf("client %d: joined run %s (%" PRIu64 " rounds, %" PRIu64 " committed)\n",
		       p->index, ev->run_id, ev->total_rounds, ev->committed_round);
		break;
	case CLIENT_EV_ROUND:
		if (ev->code && !ev->accepted && ev->bytes_up == 0) {
			printf("client %d: round %" PRIu64 ": %s (%s)\n", p->index, ev->round,
			       ev->text ? ev->text : "failed", fl_strerror(ev->code));
			break;
		}
		printf("client %d: round %" PRIu64 "/%" PRIu64
		       ": train %.5g  held-out %.5g -> %.5g  eps %.3g%s%s%s  up %.1f KB  %.2f s  "
		       "%s%s\n",
		       p->index, ev->round, ev->total_rounds, ev->train_loss, ev->eval_before,
		       ev->eval_after, ev->epsilon, ev->epsilon > 0 ? " (" : "",
		       ev->epsilon > 0 && ev->accountant ? ev->accountant : "",
		       ev->epsilon > 0 ? ")" : "", ev->bytes_up / 1024.0, ev->seconds,
		       ev->accepted ? "accepted" : "rejected: ",
		       ev->accepted ? "" : fl_reason_name(ev->code));
		if (!ev->accepted && ev->text && *ev->text)
			printf("client %d:   reason: %s\n", p->index, ev->text);
		break;
	case CLIENT_EV_DONE:
		printf("client %d: run done after round %" PRIu64 "\n", p->index, ev->round);
		break;
	case CLIENT_EV_RETRY:
		break;
	}
	fflush(stdout);
}

/* cmd_client's body: *sa_peers receives the --sa-peers list, which
 * cmd_client frees whatever this returns */
static int client_main(int argc, char **argv, priv_allow **sa_peers)
{
	client_opts o;
	client_stats st = {.rounds_trained = 0};
	progress pg = {0, -1};
	static char state_buf[4096];
	int rv, no_state = 0;
	long v;

	client_opts_default(&o);
	o.client_index = -1;
	o.task = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		int takes = 1;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			client_usage(stdout);
			return 0;
		} else if (!strcmp(a, "--quiet")) {
			pg.quiet = 1;
			takes = 0;
		} else if (!strcmp(a, "--grad-checkpoint")) {
			o.grad_checkpoint = 1;
			takes = 0;
		} else if (!strcmp(a, "--no-state")) {
			no_state = 1;
			takes = 0;
		} else if (!val) {
			fprintf(stderr, "fedlora client: %s needs a value (or is unknown)\n", a);
			return 2;
		} else if (!strcmp(a, "--connect")) {
			o.url = val;
		} else if (!strcmp(a, "--key")) {
			o.key_path = val;
		} else if (!strcmp(a, "--coordinator-key")) {
			o.coordinator_pub = val;
		} else if (!strcmp(a, "--task")) {
			if (strcmp(val, "linreg") && strcmp(val, "lm")) {
				fprintf(stderr, "fedlora client: --task must be linreg or lm\n");
				return 2;
			}
			o.task = val;
		} else if (!strcmp(a, "--client-index")) {
			if (fl_parse_long(val, 0, 1000000, &v)) {
				fprintf(stderr, "fedlora client: bad --client-index '%s'\n", val);
				return 2;
			}
			o.client_index = (int)v;
		} else if (!strcmp(a, "--seed")) {
			char *end;
			errno = 0;
			o.data_seed = strtoull(val, &end, 10);
			if (errno || end == val || *end || *val == '-') {
				fprintf(stderr, "fedlora client: bad --seed '%s'\n", val);
				return 2;
			}
			o.have_seed = 1;
		} else if (!strcmp(a, "--state")) {
			o.state_path = val;
		} else if (!strcmp(a, "--accountant")) {
			if (strcmp(val, "rdp") && strcmp(val, "prv")) {
				fprintf(stderr,
				        "fedlora client: --accountant must be rdp or prv\n");
				return 2;
			}
			o.accountant = val;
		} else if (!strcmp(a, "--data")) {
			o.data = val;
		} else if (!strcmp(a, "--base")) {
			o.base_dir = val;
		} else if (!strcmp(a, "--device")) {
			if (strcmp(val, "cpu") && strcmp(val, "cuda") && strcmp(val, "auto")) {
				fprintf(stderr,
				        "fedlora client: --device must be cpu, cuda or auto\n");
				return 2;
			}
			o.device = val;
		} else if (!strcmp(a, "--recv-max")) {
			if (parse_bytes(val, &o.recv_max)) {
				fprintf(stderr, "fedlora client: bad --recv-max '%s'\n", val);
				return 2;
			}
		} else if (!strcmp(a, "--tls-cert")) {
			o.tls_cert = val;
		} else if (!strcmp(a, "--tls-key")) {
			o.tls_key = val;
		} else if (!strcmp(a, "--tls-ca")) {
			o.tls_ca = val;
		} else if (!strcmp(a, "--sa-peers")) {
			priv_allow_free(*sa_peers);
			*sa_peers = NULL;
			/* priv_allow_load logs the file and line of a bad entry */
			if ((rv = priv_allow_load(sa_peers, val)) != 0) {
				fprintf(stderr, "fedlora client: --sa-peers %s: %s\n", val,
				        fl_strerror(rv));
				return 2;
			}
			if (priv_allow_count(*sa_peers) == 0) {
				fprintf(stderr, "fedlora client: --sa-peers %s: no keys\n", val);
				return 2;
			}
			o.sa_peers = *sa_peers;
		} else if (!strcmp(a, "--max-rounds")) {
			if (fl_parse_long(val, 1, 100000000, &v)) {
				fprintf(stderr, "fedlora client: bad --max-rounds '%s'\n", val);
				return 2;
			}
			o.max_rounds = (int)v;
		} else if (!strcmp(a, "--poll-timeout")) {
			double d;
			if (fl_parse_double(val, 0.1, 3600, &d)) {
				fprintf(stderr, "fedlora client: bad --poll-timeout '%s'\n", val);
				return 2;
			}
			o.poll_timeout_ms = (int)(d * 1000);
		} else if (!strcmp(a, "--give-up")) {
			if (fl_parse_double(val, 0.1, 1e7, &o.give_up_s)) {
				fprintf(stderr, "fedlora client: bad --give-up '%s'\n", val);
				return 2;
			}
		} else if (!strcmp(a, "--attack")) {
			if (client_attack_parse(val, &o.attack)) {
				fprintf(stderr,
				        "fedlora client: bad --attack '%s' (scale:S, flip, flip:S, "
				        "noise:S or canary:M)\n",
				        val);
				return 2;
			}
			fprintf(stderr,
			        "fedlora client: --attack %s: this client sends corrupted "
			        "updates (testing robust aggregation)\n",
			        val);
		} else {
			fprintf(stderr, "fedlora client: unknown option '%s' (see --help)\n", a);
			return 2;
		}
		i += takes;
	}
	if (!o.url || !o.key_path || !o.task || o.client_index < 0) {
		fprintf(stderr, "fedlora client: --connect, --key, --task and --client-index are "
		                "required (see --help)\n");
		return 2;
	}
	if (!strcmp(o.task, "lm") && (!o.data || !o.base_dir)) {
		fprintf(stderr, "fedlora client: --task lm needs --data and --base\n");
		return 2;
	}
	/* default state file: next to the key, NAME.key -> NAME.state.json */
	if (no_state) {
		o.state_path = NULL;
	} else if (!o.state_path) {
		size_t n = strlen(o.key_path);
		if (n + 16 > sizeof state_buf) {
			fprintf(stderr, "fedlora client: --key path too long\n");
			return 2;
		}
		if (n > 4 && !strcmp(o.key_path + n - 4, ".key"))
			n -= 4;
		snprintf(state_buf, sizeof state_buf, "%.*s.state.json", (int)n, o.key_path);
		o.state_path = state_buf;
	}
	pg.index = o.client_index;
	o.on_event = on_event;
	o.arg = &pg;
	rv = client_run(&o, &st);
	if (rv != 0) {
		fprintf(stderr, "fedlora client: %s\n",
		        st.stop_reason[0] ? st.stop_reason : fl_strerror(rv));
		return 1;
	}
	if (!pg.quiet)
		printf("client %d: %d rounds trained, %d accepted, %d rejects, epsilon %.3g\n",
		       pg.index, st.rounds_trained, st.rounds_accepted, st.rejects, st.epsilon);
	return 0;
}

int cmd_client(int argc, char **argv)
{
	priv_allow *sa_peers = NULL;
	int rv = client_main(argc, argv, &sa_peers);
	priv_allow_free(sa_peers);
	return rv;
}
