/*
 * coordinator/config.h — the coordinator's settings: defaults, parsing from
 * the command line and from JSON (--config FILE.json, and the run directory's
 * run.json on a restart), validation, and serialization into run.json.
 *
 * Every option has one name. On the command line it is `--NAME` with dashes
 * ("--clients-per-round 4"); in JSON it is the same name with underscores or
 * dashes ({"clients_per_round": 4}). Flags take no value on the command line
 * and a boolean in JSON. Layering: defaults, then run.json of an existing run
 * directory, then --config, then the command line (the last one wins).
 * Settings that define the model of a run (task, strategy, rank, seed, ...)
 * may not change on a restart: coord_config_check_resume() refuses that.
 *
 * Does not open files other than the JSON it is asked to read; does not
 * validate that key/allow/TLS files exist (the server does when it opens them).
 *
 * Ownership: coord_config holds fixed-size strings only; nothing to free.
 */
#ifndef FL_COORDINATOR_CONFIG_H
#define FL_COORDINATOR_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define COORD_STR_MAX  512
#define COORD_NAME_MAX 32

typedef enum { COORD_DP_NONE = 0, COORD_DP_SAMPLE = 1, COORD_DP_CLIENT = 2 } coord_dp_mode;

typedef struct coord_config {
	char listen[COORD_STR_MAX];
	char run_dir[COORD_STR_MAX];
	char key[COORD_STR_MAX];
	char task[COORD_NAME_MAX];     /* linreg | lm */
	char strategy[COORD_NAME_MAX]; /* fedit | ffa | fair */
	int rounds;
	int clients_per_round;
	int min_clients;
	double round_timeout; /* seconds a round waits for Submits */
	int max_attempts;     /* attempts of a round below quorum that stop the run; 0: no limit */
	char allow[COORD_STR_MAX];
	int enroll_any;
	long long seed;
	int rank;
	double alpha;
	/* local training hyperparameters handed out in every Task */
	double lr;
	int local_steps;
	int batch_size;
	char optimizer[COORD_NAME_MAX]; /* sgd | adamw */
	double weight_decay;
	/* task shape */
	char lora_targets[COORD_STR_MAX];
	char base_dir[COORD_STR_MAX];
	int seq_len;
	int linreg_layers, linreg_dim, linreg_samples;
	int num_clients; /* linreg: clients the data is generated for (0: clients decide) */
	/* network */
	long long recv_max; /* bytes; receive limit of the socket */
	char tls_cert[COORD_STR_MAX], tls_key[COORD_STR_MAX], tls_ca[COORD_STR_MAX];
	int contexts;        /* concurrent nng contexts */
	double poll_timeout; /* seconds a GetTask long poll is held */
	double linger;       /* seconds Done is still answered after the run ends */
	double join_wait;    /* seconds to wait for clients_per_round registrations */
	/* differential privacy */
	char dp[COORD_NAME_MAX]; /* none | sample | client */
	double dp_clip, dp_noise, dp_q, dp_delta, target_eps;
	double expected_clients; /* client DP: denominator; 0 = clients_per_round */
	/* rdp | prv (privacy/acct.h), fixed at run start; prv: epsilon error of
	 * its bounds (default 0.01) */
	char accountant[COORD_NAME_MAX];
	double eps_error;
	/* fair */
	int fair_ridge;
	double fair_lambda;
	int fair_steps;
	double fair_lr;
	/* robust aggregation (lora/robust.h) */
	char aggregator[COORD_NAME_MAX]; /* mean | norm-bound | median | trimmed-mean | krum */
	double norm_bound, norm_factor, trim_frac;
	int krum_f, krum_m;
	/* secure aggregation (coordinator/secagg_round.h) */
	int secure_agg;          /* the run's rounds use SecAgg+ (fixed at run start) */
	double sa_phase_timeout; /* seconds each phase after the keys waits */
	double sa_clip;          /* fixed-point clip; 0 = from the adapter scale */
	int sa_frac_bits;        /* fixed-point fraction bits; 0 = largest safe */
	int sa_max_aborts;       /* consecutive aborted attempts of a round that stop the run */
	/* metrics */
	int compute_bias; /* keep client factors to report agg_bias (default 1) */
} coord_config;

void coord_config_default(coord_config *c);

/* Applies the options of a JSON object (text of len bytes). Unknown keys and
 * values of the wrong type are refused with a message in err (FL_EINVAL);
 * FL_EFORMAT when the text is not a JSON object. */
int coord_config_apply_json(coord_config *c, const char *text, size_t len, char *err, size_t errn);
/* Reads a JSON file (at most 1 MiB) and applies it. */
int coord_config_apply_file(coord_config *c, const char *path, char *err, size_t errn);
/* Applies command-line options argv[1..argc). --config and --help are
 * skipped here (the command handles them). FL_EINVAL with a message on an
 * unknown option, a missing value or a value that does not parse. */
int coord_config_apply_argv(coord_config *c, int argc, char **argv, char *err, size_t errn);
/* Checks ranges and combinations; FL_EINVAL with a message. */
int coord_config_validate(const coord_config *c, char *err, size_t errn);
/* FL_EINVAL with a message when a setting that defines the run's model
 * differs between the stored run (`stored`) and the new settings. */
int coord_config_check_resume(const coord_config *stored, const coord_config *c, char *err,
                              size_t errn);
/* Serializes every setting as one JSON object (malloc'd; caller frees). */
int coord_config_to_json(const coord_config *c, char **out);
/* The DP mode of c->dp (assumes a validated config). */
coord_dp_mode coord_config_dp_mode(const coord_config *c);
/* Prints the option list for --help. */
void coord_config_usage(FILE *f);

#endif
