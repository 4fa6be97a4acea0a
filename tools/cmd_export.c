/*
 * tools/cmd_export.c — `fedlora export`: a run's global adapter in the PEFT
 * format (lora/peft.h).
 *
 *   fedlora export --run-dir DIR [--round N] --out DIR [--base NAME]
 *
 * Reads RUN/global/round-%06d.safetensors (lora/io.h). Default round: the
 * last committed round of RUN/state.json when that file says so, else the
 * highest round file in RUN/global (a file beyond the committed round is an
 * unfinished round and is not exported by default). base_model_name_or_path
 * is --base, else run.json's "base_dir", else null. The base's tokenizer
 * files (tokenizer.json, tokenizer_config.json, special_tokens_map.json) are
 * copied next to the adapter when the base folder (--base when it is a
 * folder, else run.json's "base_dir") has them, so OUT loads with
 * AutoTokenizer too. run.json and state.json are untrusted input:
 * size-bounded, every field checked.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/fsutil.h"
#include "lora/io.h"
#include "lora/peft.h"
#include "tokenizer/model_tok.h"
#include "tools/cmds.h"

#define EXPORT_JSON_MAX (16L << 20)
static void export_usage(FILE *f)
{
	fprintf(f,
	        "usage: fedlora export --run-dir DIR [--round N] --out DIR [--base NAME]\n"
	        "\n"
	        "Writes a run's global adapter in the Hugging Face PEFT format:\n"
	        "OUT/adapter_model.safetensors and OUT/adapter_config.json, loadable with\n"
	        "PeftModel.from_pretrained(base_model, OUT). The base folder's\n"
	        "tokenizer.json, tokenizer_config.json and special_tokens_map.json, when it\n"
	        "has them, are copied into OUT.\n"
	        "\n"
	        "  --run-dir DIR   the coordinator's run directory\n"
	        "  --round N       round to export (default: the last committed round)\n"
	        "  --out DIR       output folder (created if missing)\n"
	        "  --base NAME     base_model_name_or_path (default: run.json's base_dir); when\n"
	        "                  NAME is a folder, the tokenizer files are copied from it\n"
	        "  --help          this text\n");
}

static cJSON *read_json(const char *path)
{
	char *txt;
	cJSON *j;
	if (fl_read_file(path, EXPORT_JSON_MAX, &txt, NULL) != 0)
		return NULL; /* errno says why */
	j = cJSON_Parse(txt);
	free(txt);
	if (j && !cJSON_IsObject(j)) {
		cJSON_Delete(j);
		j = NULL;
	}
	return j;
}

/* "round-%06d.safetensors" -> round, or -1. */
static long round_of(const char *name)
{
	const char *p = name + 6, *dot;
	long v = 0;
	if (strncmp(name, "round-", 6))
		return -1;
	dot = strchr(p, '.');
	if (!dot || strcmp(dot, ".safetensors") || dot - p < 6 || dot - p > 9)
		return -1;
	for (; p < dot; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v;
}

static long highest_round(const char *gdir)
{
	DIR *d = opendir(gdir);
	struct dirent *e;
	long best = -1;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (round_of(e->d_name) > best)
			best = round_of(e->d_name);
	closedir(d);
	return best;
}

int cmd_export(int argc, char **argv)
{
	const char *run = NULL, *out = NULL, *base = NULL, *round_s = NULL, *tokdir = NULL;
	char path[4096], err[512];
	long round = -1;
	cJSON *runj = NULL, *st = NULL;
	lora_adapter *a = NULL;
	int rc = 1, rv;

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], **dst = NULL;
		if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
			export_usage(stdout);
			return 0;
		}
		if (!strcmp(o, "--run-dir"))
			dst = &run;
		else if (!strcmp(o, "--out"))
			dst = &out;
		else if (!strcmp(o, "--base"))
			dst = &base;
		else if (!strcmp(o, "--round"))
			dst = &round_s;
		if (!dst) {
			fprintf(stderr, "fedlora export: unknown option '%s'\n", o);
			export_usage(stderr);
			return 2;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "fedlora export: %s needs a value\n", o);
			return 2;
		}
		*dst = argv[++i];
	}
	if (!run || !out) {
		fprintf(stderr, "fedlora export: --run-dir and --out are required\n");
		export_usage(stderr);
		return 2;
	}
	if (round_s) {
		if (fl_parse_long(round_s, 0, 999999999, &round) != 0) {
			fprintf(stderr, "fedlora export: --round: '%s' is not a round number\n",
			        round_s);
			return 2;
		}
	}
	snprintf(path, sizeof path, "%s/run.json", run);
	errno = 0;
	runj = read_json(path);
	if (!runj) {
		fprintf(stderr,
		        "fedlora export: %s: cannot read a JSON object (%s); is %s a run "
		        "directory?\n",
		        path, errno ? strerror(errno) : "parse error", run);
		goto done;
	}
	{
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(runj, "base_dir");
		struct stat sb;
		if (cJSON_IsString(b) && b->valuestring[0]) {
			if (!base)
				base = b->valuestring;
			if (stat(b->valuestring, &sb) == 0 && S_ISDIR(sb.st_mode))
				tokdir = b->valuestring;
		}
		if (base && stat(base, &sb) == 0 && S_ISDIR(sb.st_mode))
			tokdir = base;
	}
	if (round < 0) {
		snprintf(path, sizeof path, "%s/state.json", run);
		st = read_json(path);
		const cJSON *r = st ? cJSON_GetObjectItemCaseSensitive(st, "round") : NULL;
		if (cJSON_IsNumber(r) && r->valuedouble >= 0 && r->valuedouble <= 999999999 &&
		    r->valuedouble == (double)(long)r->valuedouble) {
			round = (long)r->valuedouble;
		} else {
			snprintf(path, sizeof path, "%s/global", run);
			round = highest_round(path);
			if (round < 0) {
				fprintf(stderr,
				        "fedlora export: no global/round-*.safetensors in %s\n",
				        run);
				goto done;
			}
		}
	}
	snprintf(path, sizeof path, "%s/global/round-%06ld.safetensors", run, round);
	if ((rv = lora_adapter_load_err(&a, path, err, sizeof err)) != 0) {
		fprintf(stderr, "fedlora export: round %ld: %s\n", round, err);
		goto done;
	}
	if ((rv = lora_peft_export(a, out, base, err, sizeof err)) != 0) {
		fprintf(stderr, "fedlora export: %s\n", err);
		goto done;
	}
	printf("exported round %ld of %s (%d matrices, r=%d, alpha=%g) to %s/%s and %s\n", round,
	       run, a->n, a->r, (double)a->alpha, out, LORA_PEFT_WEIGHTS_FILE,
	       LORA_PEFT_CONFIG_FILE);
	if (tokdir) {
		int ncopied;
		if ((rv = fl_tok_copy_files(tokdir, out, &ncopied, err, sizeof err)) != 0) {
			fprintf(stderr, "fedlora export: %s\n", err);
			goto done;
		}
		if (ncopied)
			printf("copied %d tokenizer file%s from %s\n", ncopied,
			       ncopied > 1 ? "s" : "", tokdir);
	}
	rc = 0;
done:
	lora_adapter_free(a);
	cJSON_Delete(runj);
	cJSON_Delete(st);
	return rc;
}
