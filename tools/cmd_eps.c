/*
 * tools/cmd_eps.c — `fedlora eps`: the privacy accountant on the command line.
 *
 *   fedlora eps --sigma S --q Q --steps T [--delta D] [--json]
 *   fedlora eps --history FILE.json [--delta D] [--json]
 *   fedlora eps --target-eps E --q Q --steps T [--delta D] [--json]
 *   add --accountant prv [--eps-error E] for the PRV accountant (privacy/prv.h)
 *
 * Prints epsilon and the best RDP order of a DP-SGD schedule (one phase, or a
 * history of phases read from a JSON file: a list of {"sigma","q","steps"}, or
 * an object holding such a list under "accountant" or "history", e.g. a run's
 * state.json), or solves for the noise multiplier that meets a target
 * epsilon. The computation is privacy/accountant.h. Bad values are refused
 * with a message (exit 2); the history file is untrusted input (size and
 * phase count bounded, every field checked).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "privacy/accountant.h"
#include "privacy/prv.h"
#include "tools/cmds.h"

#define EPS_HISTORY_MAX_BYTES  (16L << 20)
#define EPS_HISTORY_MAX_PHASES 1000000
#define EPS_DEFAULT_DELTA      1e-5

static void eps_usage(FILE *f)
{
	fprintf(f,
	        "usage: fedlora eps --sigma S --q Q --steps T [--delta D] [--json]\n"
	        "       fedlora eps --history FILE.json [--delta D] [--json]\n"
	        "       fedlora eps --target-eps E --q Q --steps T [--delta D] [--json]\n"
	        "       (any form: [--accountant rdp|prv] [--eps-error E])\n"
	        "\n"
	        "Accountant of the Poisson-subsampled Gaussian mechanism (DP-SGD,\n"
	        "DP-FedAvg): RDP with the orders and (epsilon, delta) conversion of Opacus\n"
	        "(default), or PRV (Gopi et al. 2021: numerical composition of the privacy\n"
	        "loss distribution by FFT), which prints lower <= estimate <= upper bounds\n"
	        "on epsilon; the upper bound is the reported epsilon.\n"
	        "\n"
	        "  --accountant A   rdp (default) or prv\n"
	        "  --eps-error E    prv only: epsilon error of the bounds, > 0 (default 0.01;\n"
	        "                   delta error is delta/1000)\n"
	        "  --sigma S        noise multiplier (noise std / clipping norm), > 0\n"
	        "  --q Q            Poisson sampling rate, in [0, 1]\n"
	        "  --steps T        number of steps (integer >= 0)\n"
	        "  --delta D        target delta, in (0, 1) (default 1e-5)\n"
	        "  --history FILE   JSON list of {\"sigma\",\"q\",\"steps\"} phases, or an object\n"
	        "                   with such a list under \"accountant\" or \"history\"\n"
	        "                   (a run's state.json works)\n"
	        "  --target-eps E   solve for the smallest sigma with epsilon <= E\n"
	        "  --json           print one JSON object instead of text\n"
	        "  --help           this text\n");
}

static int parse_double(const char *opt, const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || errno == ERANGE || isnan(v)) {
		fprintf(stderr, "fedlora eps: %s: '%s' is not a number\n", opt, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_steps(const char *s, long *out)
{
	double v;
	if (parse_double("--steps", s, &v))
		return -1;
	if (!(v >= 0) || v != floor(v) || v > 1e15) {
		fprintf(stderr, "fedlora eps: --steps must be an integer >= 0 (got '%s')\n", s);
		return -1;
	}
	*out = (long)v;
	return 0;
}

/* Reads and checks a history file (tools/cmds.h). */
int eps_history_read(const char *path, priv_phase **ph, int *n)
{
	FILE *f = NULL;
	char *buf = NULL;
	cJSON *root = NULL, *arr, *it;
	long len;
	int k = 0, rv = -1;

	*ph = NULL;
	*n = 0;
	if (!(f = fopen(path, "rb"))) {
		fprintf(stderr, "fedlora eps: %s: %s\n", path, strerror(errno));
		return -1;
	}
	struct stat sb;
	if (fstat(fileno(f), &sb) || !S_ISREG(sb.st_mode)) {
		fprintf(stderr, "fedlora eps: %s: not a regular file\n", path);
		goto out;
	}
	if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		fprintf(stderr, "fedlora eps: %s: cannot read (%s)\n", path, strerror(errno));
		goto out;
	}
	if (len > EPS_HISTORY_MAX_BYTES) {
		fprintf(stderr, "fedlora eps: %s: larger than %ld bytes\n", path,
		        EPS_HISTORY_MAX_BYTES);
		goto out;
	}
	if (!(buf = malloc((size_t)len + 1)) || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		fprintf(stderr, "fedlora eps: %s: cannot read\n", path);
		goto out;
	}
	buf[len] = 0;
	/* the whole file must be one JSON value (no trailing bytes) */
	if (!(root = cJSON_ParseWithLengthOpts(buf, (size_t)len + 1, NULL, 1))) {
		fprintf(stderr, "fedlora eps: %s: not valid JSON\n", path);
		goto out;
	}
	arr = root;
	if (cJSON_IsObject(root)) {
		arr = cJSON_GetObjectItemCaseSensitive(root, "accountant");
		if (!arr)
			arr = cJSON_GetObjectItemCaseSensitive(root, "history");
	}
	if (!cJSON_IsArray(arr)) {
		fprintf(stderr,
		        "fedlora eps: %s: expected a list of phases (or an object with "
		        "\"accountant\" or \"history\")\n",
		        path);
		goto out;
	}
	int cnt = cJSON_GetArraySize(arr);
	if (cnt > EPS_HISTORY_MAX_PHASES) {
		fprintf(stderr, "fedlora eps: %s: more than %d phases\n", path,
		        EPS_HISTORY_MAX_PHASES);
		goto out;
	}
	if (cnt > 0 && !(*ph = malloc((size_t)cnt * sizeof **ph))) {
		fprintf(stderr, "fedlora eps: out of memory\n");
		goto out;
	}
	cJSON_ArrayForEach(it, arr)
	{
		cJSON *s = cJSON_GetObjectItemCaseSensitive(it, "sigma");
		cJSON *q = cJSON_GetObjectItemCaseSensitive(it, "q");
		cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "steps");
		if (!cJSON_IsNumber(s) || !cJSON_IsNumber(q) || !cJSON_IsNumber(t)) {
			fprintf(stderr,
			        "fedlora eps: %s: phase %d: needs numbers \"sigma\", \"q\", "
			        "\"steps\"\n",
			        path, k);
			goto out;
		}
		double sv = s->valuedouble, qv = q->valuedouble, tv = t->valuedouble;
		if (!(sv >= 0) || isinf(sv) || !(qv >= 0 && qv <= 1) || !(tv >= 0) ||
		    tv != floor(tv) || tv > 1e15) {
			fprintf(stderr,
			        "fedlora eps: %s: phase %d: sigma %g, q %g, steps %g out of range "
			        "(sigma >= 0, q in [0,1], integer steps >= 0)\n",
			        path, k, sv, qv, tv);
			goto out;
		}
		(*ph)[k++] = (priv_phase){sv, qv, (long)tv};
	}
	*n = k;
	rv = 0;
out:
	if (rv) {
		free(*ph);
		*ph = NULL;
	}
	cJSON_Delete(root);
	free(buf);
	if (f)
		fclose(f);
	return rv;
}

/* JSON number or null (for +inf / NaN, which JSON cannot write). */
static void json_num(const char *key, double v, int last)
{
	if (isfinite(v))
		printf("\"%s\":%.12g%s", key, v, last ? "" : ",");
	else
		printf("\"%s\":null%s", key, last ? "" : ",");
}

int cmd_eps(int argc, char **argv)
{
	double sigma = NAN, q = NAN, delta = EPS_DEFAULT_DELTA, target = NAN;
	long steps = -1;
	const char *history = NULL;
	int json = 0, rv, status = 1, prv = 0;
	double eps_error = 0.01;
	priv_phase *ph = NULL;
	int nph = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			eps_usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--json")) {
			json = 1;
			continue;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "fedlora eps: unknown option or missing value: %s\n", a);
			eps_usage(stderr);
			return 2;
		}
		const char *v = argv[++i];
		if (!strcmp(a, "--sigma")) {
			if (parse_double(a, v, &sigma))
				return 2;
		} else if (!strcmp(a, "--q")) {
			if (parse_double(a, v, &q))
				return 2;
		} else if (!strcmp(a, "--steps")) {
			if (parse_steps(v, &steps))
				return 2;
		} else if (!strcmp(a, "--delta")) {
			if (parse_double(a, v, &delta))
				return 2;
		} else if (!strcmp(a, "--target-eps")) {
			if (parse_double(a, v, &target))
				return 2;
		} else if (!strcmp(a, "--history")) {
			history = v;
		} else if (!strcmp(a, "--accountant")) {
			if (!strcmp(v, "prv")) {
				prv = 1;
			} else if (!strcmp(v, "rdp")) {
				prv = 0;
			} else {
				fprintf(stderr,
				        "fedlora eps: --accountant must be rdp or prv (got '%s')\n",
				        v);
				return 2;
			}
		} else if (!strcmp(a, "--eps-error")) {
			if (parse_double(a, v, &eps_error))
				return 2;
			if (!(eps_error > 0 && eps_error <= 1)) {
				fprintf(stderr,
				        "fedlora eps: --eps-error must be in (0, 1] (got %g)\n",
				        eps_error);
				return 2;
			}
		} else {
			fprintf(stderr, "fedlora eps: unknown option %s\n", a);
			eps_usage(stderr);
			return 2;
		}
	}

	if (!(delta > 0 && delta < 1)) {
		fprintf(stderr, "fedlora eps: --delta must be in (0, 1) (got %g)\n", delta);
		return 2;
	}
	if (history && (!isnan(sigma) || !isnan(q) || steps >= 0 || !isnan(target))) {
		fprintf(stderr, "fedlora eps: --history replaces --sigma/--q/--steps and cannot "
		                "be combined with --target-eps\n");
		return 2;
	}
	if (!history) {
		if (isnan(q) || steps < 0 || (isnan(sigma) && isnan(target))) {
			fprintf(stderr, "fedlora eps: need --q, --steps and --sigma (or "
			                "--target-eps), or --history FILE\n");
			eps_usage(stderr);
			return 2;
		}
		if (!(q >= 0 && q <= 1)) {
			fprintf(stderr, "fedlora eps: --q must be in [0, 1] (got %g)\n", q);
			return 2;
		}
		if (!isnan(sigma) && !isnan(target)) {
			fprintf(stderr, "fedlora eps: give --sigma or --target-eps, not both\n");
			return 2;
		}
		if (!isnan(sigma) && !(sigma > 0 && isfinite(sigma))) {
			fprintf(stderr, "fedlora eps: --sigma must be > 0 and finite (got %g)\n",
			        sigma);
			return 2;
		}
		if (!isnan(target) && !(target > 0 && isfinite(target))) {
			fprintf(stderr,
			        "fedlora eps: --target-eps must be > 0 and finite (got %g)\n",
			        target);
			return 2;
		}
	}

	if (!isnan(target)) {
		double s, eps, order;
		rv = priv_rdp_sigma_for_eps(target, q, steps, delta, &s);
		if (rv == FL_EDONE) {
			fprintf(stderr,
			        "fedlora eps: no noise multiplier up to 1e6 reaches epsilon %g "
			        "with q %g, %ld steps, delta %g\n",
			        target, q, steps, delta);
			return 1;
		}
		if (rv) {
			fprintf(stderr, "fedlora eps: %s\n", fl_strerror(rv));
			return 1;
		}
		priv_phase one = {s, q, steps};
		priv_prv_eps pe = {0};
		if (prv && s > 0) {
			/* PRV's upper bound is below RDP's epsilon, so RDP's sigma meets the
			 * target; bisect down to a relative 1e-3 on PRV's upper bound (a grid
			 * too large to build counts as not meeting it: conservative). */
			double hi = s, lo = s / 4;
			for (int it = 0; it < 12 && hi - lo > 1e-3 * hi; it++) {
				double mid = 0.5 * (lo + hi);
				priv_phase m = {mid, q, steps};
				rv = priv_prv_epsilon(&m, 1, delta, eps_error, delta / 1000, &pe);
				if (rv && rv != FL_ETOOBIG) {
					fprintf(stderr, "fedlora eps: prv: %s\n", fl_strerror(rv));
					return 1;
				}
				if (!rv && pe.upper <= target)
					hi = mid;
				else
					lo = mid;
			}
			s = one.sigma = hi;
			if ((rv = priv_prv_epsilon(&one, 1, delta, eps_error, delta / 1000, &pe)) !=
			    0) {
				fprintf(stderr, "fedlora eps: prv: %s\n", fl_strerror(rv));
				return 1;
			}
		}
		if (s > 0) {
			if ((rv = priv_rdp_epsilon(&one, 1, delta, &eps, &order)) != 0) {
				fprintf(stderr, "fedlora eps: %s\n", fl_strerror(rv));
				return 1;
			}
		} else {
			eps = 0; /* nothing sampled or no steps: no cost */
			order = NAN;
		}
		if (json) {
			printf("{\"accountant\":\"%s\",", prv ? "prv" : "rdp");
			json_num("sigma", s, 0);
			json_num("target_eps", target, 0);
			json_num("epsilon", prv ? pe.upper : eps, 0);
			json_num("delta", delta, 0);
			if (prv) {
				json_num("eps_lower", pe.lower, 0);
				json_num("eps_estimate", pe.estimate, 0);
				json_num("eps_upper", pe.upper, 0);
				json_num("rdp_epsilon", eps, 0);
			}
			json_num("order", order, 0);
			json_num("q", q, 0);
			printf("\"steps\":%ld}\n", steps);
		} else if (prv) {
			printf("sigma %.6g  (prv epsilon upper %.6g <= %g, estimate %.6g, at delta "
			       "%g, q %g, %ld steps; rdp epsilon %.6g)\n",
			       s, pe.upper, target, pe.estimate, delta, q, steps, eps);
		} else {
			printf("sigma %.6g  (epsilon %.6g <= %g at delta %g, q %g, %ld steps, best "
			       "order %g)\n",
			       s, eps, target, delta, q, steps, order);
		}
		return 0;
	}

	if (history) {
		if (eps_history_read(history, &ph, &nph))
			return 1;
	} else {
		if (!(ph = malloc(sizeof *ph))) {
			fprintf(stderr, "fedlora eps: out of memory\n");
			return 1;
		}
		ph[0] = (priv_phase){sigma, q, steps};
		nph = 1;
	}
	double eps, order;
	if ((rv = priv_rdp_epsilon(ph, nph, delta, &eps, &order)) != 0) {
		fprintf(stderr, "fedlora eps: %s\n", fl_strerror(rv));
		goto out;
	}
	priv_prv_eps pe = {0};
	if (prv && (rv = priv_prv_epsilon(ph, nph, delta, eps_error, delta / 1000, &pe)) != 0) {
		fprintf(stderr, "fedlora eps: prv: %s%s\n", fl_strerror(rv),
		        rv == FL_ETOOBIG ? " (grid too large: raise --eps-error)" : "");
		goto out;
	}
	double total = 0; /* a double: 10^6 phases of 10^15 steps would overflow a long */
	for (int i = 0; i < nph; i++)
		total += (double)ph[i].steps;
	if (json) {
		printf("{\"accountant\":\"%s\",", prv ? "prv" : "rdp");
		json_num("epsilon", prv ? pe.upper : eps, 0);
		json_num("delta", delta, 0);
		if (prv) {
			json_num("eps_lower", pe.lower, 0);
			json_num("eps_estimate", pe.estimate, 0);
			json_num("eps_upper", pe.upper, 0);
			json_num("eps_error", eps_error, 0);
			json_num("delta_error", delta / 1000, 0);
			json_num("mesh", pe.mesh, 0);
			printf("\"grid\":%ld,", pe.grid);
			json_num("rdp_epsilon", eps, 0);
		} else {
			json_num("order", order, 0);
		}
		if (!history) {
			json_num("sigma", sigma, 0);
			json_num("q", q, 0);
		} else {
			printf("\"phases\":%d,", nph);
		}
		printf("\"steps\":%.0f}\n", total);
	} else if (isinf(eps)) {
		printf("epsilon inf  (no noise in some phase: no privacy)\n");
	} else if (prv) {
		printf("epsilon %.6g  (prv: lower %.6g, estimate %.6g, upper %.6g; delta %g, "
		       "rdp %.6g",
		       pe.upper, pe.lower, pe.estimate, pe.upper, delta, eps);
		if (history)
			printf(", %d phases, %.0f steps)\n", nph, total);
		else
			printf(", sigma %g, q %g, %ld steps)\n", sigma, q, steps);
	} else {
		printf("epsilon %.6g  (delta %g, best order %g", eps, delta, order);
		if (history)
			printf(", %d phases, %.0f steps)\n", nph, total);
		else
			printf(", sigma %g, q %g, %ld steps)\n", sigma, q, steps);
	}
	status = 0;
out:
	free(ph);
	return status;
}
