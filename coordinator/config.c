/*
 * coordinator/config.c — see coordinator/config.h. One table describes every
 * option (name, type, field, help); the command line, JSON and run.json all go
 * through it, so an option added to the table is available everywhere.
 */
#include "coordinator/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "lora/robust.h"

enum { T_STR, T_INT, T_LL, T_DBL, T_FLAG };

typedef struct opt_def {
	const char *name; /* underscore form */
	int type;
	size_t off;
	size_t size; /* strings: buffer size */
	int fixed;   /* may not change on a restart */
	const char *help;
} opt_def;

#define O(name, type, field, fixed, help)                                                          \
	{                                                                                          \
		name, type, offsetof(coord_config, field), sizeof(((coord_config *)0)->field),     \
		    fixed, help                                                                    \
	}

static const opt_def opts[] = {
    O("listen", T_STR, listen, 0, "URL to listen on (tcp://, tls+tcp://, ipc://, inproc://)"),
    O("run_dir", T_STR, run_dir, 0, "run directory (created; resumed when it holds a run)"),
    O("key", T_STR, key, 0, "the coordinator's secret key file (fedlora keygen)"),
    O("task", T_STR, task, 1, "linreg | lm"),
    O("strategy", T_STR, strategy, 1, "fedit | ffa | fair"),
    O("rounds", T_INT, rounds, 0, "rounds to run"),
    O("clients_per_round", T_INT, clients_per_round, 0, "clients selected per round"),
    O("min_clients", T_INT, min_clients, 0,
      "quorum: reports needed to commit a round (and clients registered before round 1)"),
    O("round_timeout", T_DBL, round_timeout, 0, "seconds a round waits for updates"),
    O("max_attempts", T_INT, max_attempts, 0,
      "attempts of one round that end below the quorum before the run stops (0: no limit; "
      "no attempt opens while the quorum is out of reach)"),
    O("allow", T_STR, allow, 0, "file of allowed client public keys, one hex key per line"),
    O("enroll_any", T_FLAG, enroll_any, 0, "admit any client key (simulations)"),
    O("seed", T_LL, seed, 1, "run seed (adapter init, client sampling, task data)"),
    O("rank", T_INT, rank, 1, "LoRA rank r"),
    O("alpha", T_DBL, alpha, 1, "LoRA alpha (scale alpha/r)"),
    O("lr", T_DBL, lr, 0, "client learning rate"),
    O("local_steps", T_INT, local_steps, 0, "client optimizer steps per round"),
    O("batch_size", T_INT, batch_size, 0, "client minibatch size"),
    O("optimizer", T_STR, optimizer, 0, "sgd | adamw"),
    O("weight_decay", T_DBL, weight_decay, 0, "AdamW weight decay"),
    O("lora_targets", T_STR, lora_targets, 1, "lm: comma-separated modules (q_proj,v_proj)"),
    O("base_dir", T_STR, base_dir, 1, "lm: Hugging Face model folder (alias --base)"),
    O("seq_len", T_INT, seq_len, 1, "lm: training sequence length"),
    O("linreg_layers", T_INT, linreg_layers, 1, "linreg: layers"),
    O("linreg_dim", T_INT, linreg_dim, 1, "linreg: width of every layer"),
    O("linreg_samples", T_INT, linreg_samples, 1, "linreg: examples per client"),
    O("num_clients", T_INT, num_clients, 1,
      "linreg: clients the task data is generated for (0: each client's own setting)"),
    O("recv_max", T_LL, recv_max, 0, "largest message accepted, bytes (0 = from adapter size)"),
    O("tls_cert", T_STR, tls_cert, 0, "TLS certificate (PEM) for tls+tcp://"),
    O("tls_key", T_STR, tls_key, 0, "TLS private key (PEM)"),
    O("tls_ca", T_STR, tls_ca, 0, "CA certificate (PEM) that client certificates must chain to"),
    O("contexts", T_INT, contexts, 0, "concurrent request contexts of the server socket"),
    O("poll_timeout", T_DBL, poll_timeout, 0, "seconds a GetTask long poll is held"),
    O("linger", T_DBL, linger, 0, "seconds Done is still answered after the last round"),
    O("join_wait", T_DBL, join_wait, 0,
      "seconds the first round waits for clients-per-round registrations once min-clients "
      "have registered"),
    O("dp", T_STR, dp, 1, "none | sample (DP-SGD at clients) | client (DP-FedAvg here)"),
    O("dp_clip", T_DBL, dp_clip, 1, "clip norm C (sample) or S (client)"),
    O("dp_noise", T_DBL, dp_noise, 1, "noise multiplier sigma"),
    O("dp_q", T_DBL, dp_q, 1, "sample: Poisson sampling rate of examples"),
    O("dp_delta", T_DBL, dp_delta, 0, "delta of the reported (epsilon, delta)"),
    O("target_eps", T_DBL, target_eps, 0, "stop before a round would exceed this epsilon"),
    O("accountant", T_STR, accountant, 1,
      "rdp | prv: accountant of the reported epsilon (prv: PRV upper bound, tighter)"),
    O("eps_error", T_DBL, eps_error, 1, "prv: epsilon error of the PRV bounds, (0, 1]"),
    O("expected_clients", T_DBL, expected_clients, 1,
      "client DP: divisor of the noisy sum (default clients_per_round)"),
    O("fair_ridge", T_FLAG, fair_ridge, 0, "fair: closed-form ridge correction"),
    O("fair_lambda", T_DBL, fair_lambda, 0, "fair: regularizer lambda"),
    O("fair_steps", T_INT, fair_steps, 0, "fair: gradient steps of the correction"),
    O("fair_lr", T_DBL, fair_lr, 0, "fair: step size of the correction"),
    O("aggregator", T_STR, aggregator, 1,
      "mean | norm-bound | median | trimmed-mean | krum (robust rules: fedit/ffa, no client "
      "DP; keep every update of a round)"),
    O("norm_bound", T_DBL, norm_bound, 1, "norm-bound: bound S on update norms (0: auto)"),
    O("norm_factor", T_DBL, norm_factor, 1, "norm-bound auto: S = factor x median update norm"),
    O("trim_frac", T_DBL, trim_frac, 1, "trimmed-mean: fraction cut at each end, [0, 0.5)"),
    O("krum_f", T_INT, krum_f, 1, "krum: assumed hostile clients (-1: largest with K >= 2f+3)"),
    O("krum_m", T_INT, krum_m, 1, "krum: updates averaged (0: K - f)"),
    O("compute_bias", T_INT, compute_bias, 0, "1: report agg_bias (keeps client factors)"),
    O("secure_agg", T_FLAG, secure_agg, 1,
      "secure aggregation (SecAgg+): the coordinator learns only the sum of the updates "
      "(fedit/ffa, aggregator mean)"),
    O("sa_phase_timeout", T_DBL, sa_phase_timeout, 0,
      "secure aggregation: seconds each phase after the keys waits (keys: round-timeout)"),
    O("sa_clip", T_DBL, sa_clip, 0,
      "secure aggregation: fixed-point clip of every weighted coordinate (0: from the "
      "adapter scale)"),
    O("sa_frac_bits", T_INT, sa_frac_bits, 0,
      "secure aggregation: fixed-point fraction bits (0: the largest without overflow)"),
    O("sa_max_aborts", T_INT, sa_max_aborts, 0,
      "secure aggregation: consecutive aborted attempts of one round that stop the run"),
};
#define NOPTS (sizeof opts / sizeof opts[0])
/* Integers up to this magnitude are exact JSON numbers (doubles); larger
 * 64-bit settings (a seed) travel in run.json as decimal strings. */
#define COORD_JSON_EXACT 9000000000000000LL

void coord_config_default(coord_config *c)
{
	memset(c, 0, sizeof *c);
	strcpy(c->task, "linreg");
	strcpy(c->strategy, "fedit");
	c->rounds = 10;
	c->clients_per_round = 4;
	c->min_clients = 2;
	c->round_timeout = 60;
	c->max_attempts = 0; /* an unreachable quorum waits for clients, it does not retry */
	c->seed = 1;
	c->rank = 4;
	c->alpha = 8;
	c->lr = 0.05;
	c->local_steps = 20;
	c->batch_size = 32;
	strcpy(c->optimizer, "sgd");
	c->weight_decay = 0;
	strcpy(c->lora_targets, "q_proj,v_proj");
	c->seq_len = 64;
	c->linreg_layers = 4;
	c->linreg_dim = 64;
	c->linreg_samples = 512;
	c->contexts = 64;
	c->poll_timeout = 2;
	c->linger = 3;
	c->join_wait = 2;
	strcpy(c->dp, "none");
	c->dp_delta = 1e-5;
	strcpy(c->accountant, "rdp");
	c->eps_error = 0.01;
	c->fair_lambda = 0.01;
	c->fair_steps = 300;
	c->fair_lr = 0.01;
	c->compute_bias = 1;
	strcpy(c->aggregator, "mean");
	c->norm_factor = 1.0;
	c->trim_frac = 0.2;
	c->krum_f = -1;
	c->sa_phase_timeout = 10;
	c->sa_max_aborts = 3;
}

/* Option by name; dashes and underscores are the same. */
static const opt_def *opt_find(const char *name)
{
	char norm[64];
	size_t i;

	for (i = 0; name[i] && i < sizeof norm - 1; i++)
		norm[i] = name[i] == '-' ? '_' : name[i];
	if (name[i])
		return NULL;
	norm[i] = 0;
	if (!strcmp(norm, "base"))
		strcpy(norm, "base_dir");
	for (i = 0; i < NOPTS; i++)
		if (!strcmp(opts[i].name, norm))
			return &opts[i];
	return NULL;
}

/* Parses text into the field of d. */
static int opt_set_text(coord_config *c, const opt_def *d, const char *v, char *err, size_t errn)
{
	char *p = (char *)c + d->off;

	switch (d->type) {
	case T_STR:
		if (strlen(v) >= d->size) {
			snprintf(err, errn, "value of %s is too long (at most %zu bytes)", d->name,
			         d->size - 1);
			return FL_EINVAL;
		}
		strcpy(p, v);
		return 0;
	case T_INT: {
		long x;
		if (fl_parse_long(v, -2147483647L, 2147483647L, &x) != 0)
			goto bad;
		*(int *)p = (int)x;
		return 0;
	}
	case T_LL: {
		char *end;
		long long x;
		errno = 0;
		x = strtoll(v, &end, 10);
		if (!*v || *end || errno)
			goto bad;
		*(long long *)p = x;
		return 0;
	}
	case T_DBL: {
		double x;
		if (fl_parse_double(v, -DBL_MAX, DBL_MAX, &x) != 0)
			goto bad;
		*(double *)p = x;
		return 0;
	}
	case T_FLAG:
		if (!strcmp(v, "1") || !strcmp(v, "true"))
			*(int *)p = 1;
		else if (!strcmp(v, "0") || !strcmp(v, "false"))
			*(int *)p = 0;
		else
			goto bad;
		return 0;
	}
bad:
	snprintf(err, errn, "bad value '%s' for %s", v, d->name);
	return FL_EINVAL;
}

int coord_config_apply_json(coord_config *c, const char *text, size_t len, char *err, size_t errn)
{
	cJSON *root = cJSON_ParseWithLength(text, len);
	cJSON *it;
	int rv = 0;

	if (!root || !cJSON_IsObject(root)) {
		snprintf(err, errn, "not a JSON object");
		cJSON_Delete(root);
		return FL_EFORMAT;
	}
	cJSON_ArrayForEach(it, root)
	{
		const opt_def *d = it->string ? opt_find(it->string) : NULL;
		char *p;
		char num[64];

		if (!d) {
			snprintf(err, errn, "unknown setting \"%s\"", it->string ? it->string : "");
			rv = FL_EINVAL;
			goto out;
		}
		p = (char *)c + d->off;
		if (d->type == T_STR) {
			if (!cJSON_IsString(it))
				goto bad;
			if ((rv = opt_set_text(c, d, it->valuestring, err, errn)) != 0)
				goto out;
		} else if (d->type == T_FLAG) {
			if (cJSON_IsBool(it))
				*(int *)p = cJSON_IsTrue(it);
			else if (cJSON_IsNumber(it) &&
			         (it->valuedouble == 0 || it->valuedouble == 1))
				*(int *)p = it->valuedouble != 0;
			else
				goto bad;
		} else if (cJSON_IsNumber(it)) {
			double x = it->valuedouble;
			if (d->type == T_DBL) {
				if (!isfinite(x))
					goto bad;
				*(double *)p = x;
			} else {
				/* integers must be integral and in range */
				if (x != floor(x) || fabs(x) > (double)COORD_JSON_EXACT)
					goto bad;
				snprintf(num, sizeof num, "%.0f", x);
				if ((rv = opt_set_text(c, d, num, err, errn)) != 0)
					goto out;
			}
		} else if (cJSON_IsString(it)) {
			/* numbers given as strings ("1e-5") are accepted */
			if ((rv = opt_set_text(c, d, it->valuestring, err, errn)) != 0)
				goto out;
		} else {
			goto bad;
		}
		continue;
	bad:
		snprintf(err, errn, "wrong type for setting \"%s\"", d->name);
		rv = FL_EINVAL;
		goto out;
	}
out:
	cJSON_Delete(root);
	return rv;
}

int coord_config_apply_file(coord_config *c, const char *path, char *err, size_t errn)
{
	enum { MAX = 1 << 20 };
	char *buf = NULL;
	size_t n;
	int rv;

	if ((rv = fl_read_file(path, MAX, &buf, &n)) != 0) {
		if (rv == FL_ETOOBIG)
			snprintf(err, errn, "%s: larger than %d bytes", path, MAX);
		else if (rv != FL_ENOMEM)
			snprintf(err, errn, "cannot open %s: %s", path, strerror(errno));
		/* a missing file is an I/O error here, as it always was */
		return rv == FL_ENOENT ? FL_EIO : rv;
	}
	rv = coord_config_apply_json(c, buf, n, err, errn);
	if (rv) {
		/* prefix the file name to the message */
		char tmp[512];
		snprintf(tmp, sizeof tmp, "%s: %s", path, err);
		snprintf(err, errn, "%s", tmp);
	}
	free(buf);
	return rv;
}

int coord_config_apply_argv(coord_config *c, int argc, char **argv, char *err, size_t errn)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val;
		const opt_def *d;
		char name[64];
		const char *eq;
		int rv;

		if (strncmp(a, "--", 2) != 0) {
			snprintf(err, errn, "unexpected argument '%s'", a);
			return FL_EINVAL;
		}
		a += 2;
		eq = strchr(a, '=');
		if ((eq ? (size_t)(eq - a) : strlen(a)) >= sizeof name) {
			snprintf(err, errn, "unknown option '%s'", argv[i]);
			return FL_EINVAL;
		}
		snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
		if (!strcmp(name, "help"))
			continue;
		if (!strcmp(name, "config")) {
			if (!eq)
				i++;
			continue;
		}
		if (!(d = opt_find(name))) {
			snprintf(err, errn, "unknown option '--%s'", name);
			return FL_EINVAL;
		}
		if (d->type == T_FLAG && !eq) {
			*(int *)((char *)c + d->off) = 1;
			continue;
		}
		if (eq) {
			val = eq + 1;
		} else {
			if (i + 1 >= argc) {
				snprintf(err, errn, "option '--%s' needs a value", name);
				return FL_EINVAL;
			}
			val = argv[++i];
		}
		if ((rv = opt_set_text(c, d, val, err, errn)) != 0)
			return rv;
	}
	return 0;
}

coord_dp_mode coord_config_dp_mode(const coord_config *c)
{
	if (!strcmp(c->dp, "sample"))
		return COORD_DP_SAMPLE;
	if (!strcmp(c->dp, "client"))
		return COORD_DP_CLIENT;
	return COORD_DP_NONE;
}

#define REQUIRE(cond, ...)                                                                         \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			snprintf(err, errn, __VA_ARGS__);                                          \
			return FL_EINVAL;                                                          \
		}                                                                                  \
	} while (0)

int coord_config_validate(const coord_config *c, char *err, size_t errn)
{
	REQUIRE(c->listen[0], "--listen is required");
	REQUIRE(c->run_dir[0], "--run-dir is required");
	REQUIRE(c->key[0], "--key is required");
	REQUIRE(!strcmp(c->task, "linreg") || !strcmp(c->task, "lm"),
	        "--task must be linreg or lm, not '%s'", c->task);
	REQUIRE(!strcmp(c->strategy, "fedit") || !strcmp(c->strategy, "ffa") ||
	            !strcmp(c->strategy, "fair"),
	        "--strategy must be fedit, ffa or fair, not '%s'", c->strategy);
	REQUIRE(c->rounds >= 1 && c->rounds <= 1000000, "--rounds must be in 1..1000000");
	REQUIRE(c->clients_per_round >= 1 && c->clients_per_round <= 100000,
	        "--clients-per-round must be in 1..100000");
	REQUIRE(c->min_clients >= 1 && c->min_clients <= c->clients_per_round,
	        "--min-clients must be in 1..clients-per-round (%d)", c->clients_per_round);
	REQUIRE(c->round_timeout > 0 && c->round_timeout <= 86400 * 7,
	        "--round-timeout must be in (0, 604800] seconds");
	REQUIRE(c->max_attempts >= 0, "--max-attempts must be >= 0 (0: no limit)");
	REQUIRE(c->allow[0] || c->enroll_any, "one of --allow FILE or --enroll-any is required");
	REQUIRE(!(c->allow[0] && c->enroll_any), "--allow and --enroll-any exclude each other");
	REQUIRE(c->seed >= 0, "--seed must be >= 0");
	REQUIRE(c->rank >= 1 && c->rank <= 4096, "--rank must be in 1..4096");
	REQUIRE(c->alpha > 0, "--alpha must be > 0");
	REQUIRE(c->lr > 0, "--lr must be > 0");
	REQUIRE(c->local_steps >= 1, "--local-steps must be >= 1");
	REQUIRE(c->batch_size >= 1, "--batch-size must be >= 1");
	REQUIRE(!strcmp(c->optimizer, "sgd") || !strcmp(c->optimizer, "adamw"),
	        "--optimizer must be sgd or adamw");
	REQUIRE(c->weight_decay >= 0, "--weight-decay must be >= 0");
	REQUIRE(strcmp(c->task, "lm") || c->base_dir[0], "--task lm needs --base DIR");
	REQUIRE(c->seq_len >= 2, "--seq-len must be >= 2");
	REQUIRE(c->linreg_layers >= 1 && c->linreg_layers <= 1024, "--linreg-layers out of range");
	REQUIRE(c->linreg_dim >= 1 && c->linreg_dim <= 65536, "--linreg-dim out of range");
	REQUIRE(c->linreg_samples >= 4, "--linreg-samples must be >= 4");
	REQUIRE(c->recv_max >= 0, "--recv-max must be >= 0");
	REQUIRE(c->contexts >= 1 && c->contexts <= 65536, "--contexts must be in 1..65536");
	REQUIRE(c->poll_timeout > 0 && c->poll_timeout <= 600,
	        "--poll-timeout must be in (0, 600]");
	REQUIRE(c->linger >= 0 && c->linger <= 3600, "--linger must be in [0, 3600]");
	REQUIRE(c->join_wait >= 0 && c->join_wait <= 86400, "--join-wait must be in [0, 86400]");
	REQUIRE(c->num_clients >= 0, "--num-clients must be >= 0");
	REQUIRE(!!c->tls_cert[0] == !!c->tls_key[0], "--tls-cert and --tls-key go together");
	REQUIRE(strncmp(c->listen, "tls+", 4) || c->tls_cert[0],
	        "a tls+tcp:// listener needs --tls-cert and --tls-key");
	REQUIRE(!strcmp(c->dp, "none") || !strcmp(c->dp, "sample") || !strcmp(c->dp, "client"),
	        "--dp must be none, sample or client");
	REQUIRE(c->dp_delta > 0 && c->dp_delta < 1, "--dp-delta must be in (0, 1)");
	REQUIRE(c->target_eps >= 0, "--target-eps must be >= 0");
	REQUIRE(!strcmp(c->accountant, "rdp") || !strcmp(c->accountant, "prv"),
	        "--accountant must be rdp or prv");
	REQUIRE(c->eps_error > 0 && c->eps_error <= 1, "--eps-error must be in (0, 1]");
	if (coord_config_dp_mode(c) != COORD_DP_NONE) {
		REQUIRE(c->dp_clip > 0, "--dp %s needs --dp-clip > 0", c->dp);
		REQUIRE(c->dp_noise >= 0, "--dp-noise must be >= 0");
	} else {
		REQUIRE(c->target_eps == 0, "--target-eps needs --dp sample or --dp client");
	}
	if (coord_config_dp_mode(c) == COORD_DP_SAMPLE)
		REQUIRE(c->dp_q > 0 && c->dp_q <= 1, "--dp sample needs --dp-q in (0, 1]");
	if (coord_config_dp_mode(c) == COORD_DP_CLIENT) {
		REQUIRE(strcmp(c->strategy, "fair"),
		        "--strategy fair cannot be combined with --dp client: its server-side "
		        "correction reads every client's individual update, which client-level "
		        "DP must not release; use fedit or ffa");
		REQUIRE(c->expected_clients >= 0, "--expected-clients must be >= 0");
	}
	REQUIRE(c->fair_lambda >= 0, "--fair-lambda must be >= 0");
	REQUIRE(c->fair_steps >= 0, "--fair-steps must be >= 0");
	REQUIRE(c->fair_lr > 0, "--fair-lr must be > 0");
	{
		lora_robust_rule r;
		REQUIRE(lora_robust_parse(c->aggregator, &r) == 0,
		        "--aggregator must be mean, norm-bound, median, trimmed-mean or krum, not "
		        "'%s'",
		        c->aggregator);
		REQUIRE(
		    r == LORA_ROBUST_MEAN || strcmp(c->strategy, "fair"),
		    "--aggregator %s cannot be combined with --strategy fair: fair's correction "
		    "reads every client's product B_k A_k, which a robust rule on the factors "
		    "would not screen; use fedit or ffa",
		    c->aggregator);
		REQUIRE(r == LORA_ROBUST_MEAN || coord_config_dp_mode(c) != COORD_DP_CLIENT,
		        "--aggregator %s cannot be combined with --dp client: DP-FedAvg's noise is "
		        "calibrated to a clipped weighted sum",
		        c->aggregator);
	}
	REQUIRE(c->norm_bound >= 0 && isfinite(c->norm_bound), "--norm-bound must be >= 0");
	REQUIRE(c->norm_factor > 0 && isfinite(c->norm_factor), "--norm-factor must be > 0");
	REQUIRE(c->trim_frac >= 0 && c->trim_frac < 0.5, "--trim-frac must be in [0, 0.5)");
	REQUIRE(c->krum_f >= -1, "--krum-f must be >= -1");
	REQUIRE(c->krum_m >= 0, "--krum-m must be >= 0");
	REQUIRE(c->sa_phase_timeout > 0 && c->sa_phase_timeout <= 86400,
	        "--sa-phase-timeout must be in (0, 86400] seconds");
	REQUIRE(c->sa_clip >= 0 && isfinite(c->sa_clip), "--sa-clip must be >= 0");
	REQUIRE(c->sa_frac_bits >= 0 && c->sa_frac_bits <= 30, "--sa-frac-bits must be in 0..30");
	REQUIRE(c->sa_max_aborts >= 1, "--sa-max-aborts must be >= 1");
	if (c->secure_agg) {
		REQUIRE(
		    strcmp(c->strategy, "fair"),
		    "--secure-agg cannot be combined with --strategy fair: its correction needs "
		    "every client's own factors, which secure aggregation hides; use fedit or "
		    "ffa");
		REQUIRE(!strcmp(c->aggregator, "mean"),
		        "--secure-agg cannot be combined with --aggregator %s: a robust rule reads "
		        "individual updates, which secure aggregation hides; use mean",
		        c->aggregator);
		REQUIRE(c->clients_per_round >= 2,
		        "--secure-agg needs --clients-per-round >= 2 (a sum of one update is that "
		        "update)");
		REQUIRE(c->clients_per_round <= 8000,
		        "--secure-agg supports at most 8000 clients per round");
	}
	return 0;
}

int coord_config_check_resume(const coord_config *stored, const coord_config *c, char *err,
                              size_t errn)
{
	for (size_t i = 0; i < NOPTS; i++) {
		const opt_def *d = &opts[i];
		const char *a = (const char *)stored + d->off, *b = (const char *)c + d->off;
		int same;

		if (!d->fixed)
			continue;
		/* lm-only settings do not matter for linreg and the other way round */
		if (!strcmp(c->task, "linreg") &&
		    (!strcmp(d->name, "lora_targets") || !strcmp(d->name, "base_dir") ||
		     !strcmp(d->name, "seq_len")))
			continue;
		if (!strcmp(c->task, "lm") && !strncmp(d->name, "linreg_", 7))
			continue;
		if (d->type == T_STR)
			same = !strcmp(a, b);
		else
			same = !memcmp(a, b, d->size);
		REQUIRE(same,
		        "setting '%s' differs from the run directory's run.json; a run cannot "
		        "change it on a restart (use a new --run-dir)",
		        d->name);
	}
	return 0;
}

int coord_config_to_json(const coord_config *c, char **out)
{
	cJSON *o = cJSON_CreateObject();
	int rv = FL_ENOMEM;

	*out = NULL;
	if (!o)
		return FL_ENOMEM;
	for (size_t i = 0; i < NOPTS; i++) {
		const opt_def *d = &opts[i];
		const char *p = (const char *)c + d->off;
		cJSON *v = NULL;
		char num[40];

		switch (d->type) {
		case T_STR:
			v = cJSON_CreateString(p);
			break;
		case T_INT:
			v = cJSON_CreateNumber(*(const int *)p);
			break;
		case T_LL: {
			/* cJSON prints numbers with 15 significant digits (or 17 when
			 * those do not come back within an epsilon), so both kinds are
			 * written as exact raw text. Beyond 9e15 apply_json refuses a
			 * number: such values (a seed) go as decimal strings, which
			 * apply_json parses exactly. */
			long long x = *(const long long *)p;
			snprintf(num, sizeof num, "%lld", x);
			if (x >= -COORD_JSON_EXACT && x <= COORD_JSON_EXACT)
				v = cJSON_CreateRaw(num);
			else
				v = cJSON_CreateString(num);
			break;
		}
		case T_DBL: {
			/* the shortest of %.15g, %.16g, %.17g that reads back exactly */
			double x = *(const double *)p;
			for (int prec = 15; prec <= 17; prec++) {
				snprintf(num, sizeof num, "%.*g", prec, x);
				if (strtod(num, NULL) == x)
					break;
			}
			v = isfinite(x) ? cJSON_CreateRaw(num) : cJSON_CreateNull();
			break;
		}
		case T_FLAG:
			v = cJSON_CreateBool(*(const int *)p);
			break;
		}
		if (!v || !cJSON_AddItemToObject(o, d->name, v)) {
			cJSON_Delete(v);
			goto out;
		}
	}
	if ((*out = cJSON_Print(o)) != NULL)
		rv = 0;
out:
	cJSON_Delete(o);
	return rv;
}

void coord_config_usage(FILE *f)
{
	coord_config d;

	coord_config_default(&d);
	for (size_t i = 0; i < NOPTS; i++) {
		const char *p = (const char *)&d + opts[i].off;
		char name[64], def[64] = "";
		size_t k;

		for (k = 0; opts[i].name[k] && k < sizeof name - 1; k++)
			name[k] = opts[i].name[k] == '_' ? '-' : opts[i].name[k];
		name[k] = 0;
		switch (opts[i].type) {
		case T_STR:
			if (*p)
				snprintf(def, sizeof def, " [%s]", p);
			break;
		case T_INT:
			snprintf(def, sizeof def, " [%d]", *(const int *)p);
			break;
		case T_LL:
			snprintf(def, sizeof def, " [%lld]", *(const long long *)p);
			break;
		case T_DBL:
			snprintf(def, sizeof def, " [%g]", *(const double *)p);
			break;
		}
		fprintf(f, "  --%-20s %s%s\n", name, opts[i].help, def);
	}
}
