/*
 * tools/cmd_coordinator.c — `fedlora coordinator`: parses the settings
 * (defaults < run.json of an existing run directory < --config FILE.json <
 * command line), runs the coordinator (coordinator/coord.h) and maps the
 * outcome to an exit status: 0 when the run is done (last round committed, or
 * a target epsilon reached), 1 on failure or interruption, 2 on usage errors.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "coordinator/config.h"
#include "coordinator/coord.h"
#include "core/err.h"
#include "tools/cmds.h"

static coord *volatile running;

/* The first SIGINT/SIGTERM asks for a clean stop; a second one ends the
 * process at once (the default action), whatever the shutdown waits on. */
static void on_signal(int sig)
{
	signal(sig, SIG_DFL);
	if (running)
		coord_request_stop(running);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: fedlora coordinator --listen URL --run-dir DIR --key FILE\n"
	           "         --task linreg|lm --strategy fedit|ffa|fair --rounds N\n"
	           "         --clients-per-round K --min-clients M --round-timeout SEC\n"
	           "         (--allow FILE | --enroll-any) [--config FILE.json] [options]\n\n"
	           "Runs the coordinator of a federated LoRA run: admits clients, hands out\n"
	           "signed tasks, verifies and aggregates their updates, and commits every\n"
	           "round to the run directory (run.json, state.json, metrics.jsonl,\n"
	           "global/round-NNNNNN.safetensors, coordinator.log). Restarted on the same\n"
	           "run directory it continues from the last committed round; settings that\n"
	           "define the model may not change then. Exits 0 once the last round is\n"
	           "committed or --target-eps stops the run (state.json: done, reason).\n\n"
	           "Every option can also come from --config FILE.json, named without the\n"
	           "leading dashes ({\"rounds\": 10, \"clients_per_round\": 4}); the command\n"
	           "line wins. Options:\n");
	coord_config_usage(f);
	fprintf(f, "  --config FILE.json     settings file (defaults in brackets)\n"
	           "  --help                 this text\n\n"
	           "TESTING ONLY: FEDLORA_CRASH_AT=POINT:N in the environment makes the\n"
	           "coordinator SIGKILL itself at the N-th hit of POINT (registration, mid_fold,\n"
	           "after_adapter_write, before_state_save, after_commit, done).\n");
}

/* The value of --config, if any (last one wins). */
static const char *config_path(int argc, char **argv)
{
	const char *p = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			p = argv[++i];
		else if (!strncmp(argv[i], "--config=", 9))
			p = argv[i] + 9;
	}
	return p;
}

/* The value of --run-dir on the command line or in the config file, so that
 * its run.json can form the bottom layer. */
static int find_run_dir(int argc, char **argv, const coord_config *from_file, char *out, size_t n)
{
	const char *v = from_file->run_dir[0] ? from_file->run_dir : NULL;
	for (int i = 1; i < argc; i++) {
		if ((!strcmp(argv[i], "--run-dir") || !strcmp(argv[i], "--run_dir")) &&
		    i + 1 < argc)
			v = argv[++i];
		else if (!strncmp(argv[i], "--run-dir=", 10))
			v = argv[i] + 10;
	}
	if (!v)
		return 0;
	snprintf(out, n, "%s", v);
	return 1;
}

int cmd_coordinator(int argc, char **argv)
{
	coord_config cfg, probe;
	char err[512] = "", run_dir[COORD_STR_MAX], path[COORD_STR_MAX + 16];
	const char *cpath = config_path(argc, argv);
	coord *c = NULL;
	int rv;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}

	/* where is the run directory? (command line, else the config file) */
	coord_config_default(&probe);
	if (cpath && (rv = coord_config_apply_file(&probe, cpath, err, sizeof err)) != 0) {
		fprintf(stderr, "fedlora coordinator: %s\n", err);
		return 2;
	}
	coord_config_default(&cfg);
	if (find_run_dir(argc, argv, &probe, run_dir, sizeof run_dir)) {
		FILE *f;
		snprintf(path, sizeof path, "%s/run.json", run_dir);
		if ((f = fopen(path, "r")) != NULL) {
			fclose(f);
			if ((rv = coord_config_apply_file(&cfg, path, err, sizeof err)) != 0) {
				fprintf(stderr, "fedlora coordinator: %s\n", err);
				return 1;
			}
		}
	}
	if (cpath && (rv = coord_config_apply_file(&cfg, cpath, err, sizeof err)) != 0) {
		fprintf(stderr, "fedlora coordinator: %s\n", err);
		return 2;
	}
	if ((rv = coord_config_apply_argv(&cfg, argc, argv, err, sizeof err)) != 0 ||
	    (rv = coord_config_validate(&cfg, err, sizeof err)) != 0) {
		fprintf(stderr, "fedlora coordinator: %s\n(see fedlora coordinator --help)\n", err);
		return 2;
	}

	if ((rv = coord_open(&c, &cfg, err, sizeof err)) != 0) {
		fprintf(stderr, "fedlora coordinator: %s\n", err[0] ? err : fl_strerror(rv));
		return rv == FL_EINVAL ? 2 : 1;
	}
	running = c;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	rv = coord_run(c, err, sizeof err);
	running = NULL;
	coord_close(c);
	if (rv == FL_EDONE) {
		fprintf(stderr, "fedlora coordinator: stopped; restart on the same --run-dir to "
		                "continue\n");
		return 1;
	}
	if (rv) {
		fprintf(stderr, "fedlora coordinator: %s\n", err[0] ? err : fl_strerror(rv));
		return 1;
	}
	return 0;
}
