/*
 * tests/peft_test.c — lora/io (adapter files) and lora/peft + `fedlora export`
 * (PEFT export and import): round trips, rejection of inconsistent adapter files, key
 * names, shapes and config fields of an export.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/safetensors.h"
#include "lora/io.h"
#include "lora/peft.h"
#include "tests/test.h"
#include "tools/cmds.h"

static char tmpdir[256];

static const char *tpath(const char *name)
{
	static char p[2][512];
	static int which;
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof tmpdir, "/tmp/fl-peft-test.XXXXXX");
		if (!mkdtemp(tmpdir))
			abort();
	}
	which ^= 1;
	snprintf(p[which], sizeof p[which], "%s/%s", tmpdir, name);
	return p[which];
}

/* An LM-shaped adapter: 2 layers x (q_proj, v_proj, mlp.down_proj). */
static lora_adapter *mk_lm(int r, float alpha, uint64_t seed)
{
	const char *names[6] = {
	    "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
	    "model.layers.0.mlp.down_proj",    "model.layers.1.self_attn.q_proj",
	    "model.layers.1.self_attn.v_proj", "model.layers.1.mlp.down_proj",
	};
	int in[6] = {32, 32, 64, 32, 32, 64}, out[6] = {32, 16, 32, 32, 16, 32};
	lora_adapter *a = NULL;
	fl_rng g;
	if (lora_adapter_new(&a, 6, names, in, out, r, alpha) != 0)
		abort();
	fl_rng_init(&g, seed, 7);
	for (size_t i = 0; i < a->n_a + a->n_b; i++)
		a->params[i] = (float)fl_rng_normal(&g);
	return a;
}

static void test_adapter_file_roundtrip(void)
{
	lora_adapter *a = mk_lm(4, 8.0f, 1), *b = NULL;
	const char *p = tpath("a.safetensors");
	char err[256];
	CHECK_RC(lora_adapter_save(a, p));
	CHECK_RC(lora_adapter_load_err(&b, p, err, sizeof err));
	if (b) {
		CHECK(lora_adapter_same_shape(a, b));
		CHECK(b->r == 4 && b->alpha == 8.0f);
		CHECK(!memcmp(a->params, b->params, (a->n_a + a->n_b) * sizeof(float)));
		CHECK(!strcmp(b->mats[2].name, "model.layers.0.mlp.down_proj"));
		CHECK(b->mats[2].in == 64 && b->mats[2].out == 32);
	}
	lora_adapter_free(b);
	/* a fractional alpha survives */
	a->alpha = 0.3f;
	CHECK_RC(lora_adapter_save(a, p));
	CHECK_RC(lora_adapter_load(&b, p));
	CHECK(b && b->alpha == 0.3f);
	lora_adapter_free(b);
	lora_adapter_free(a);
}

/* Writes a hand-built adapter file: tensors (name, shape) with zero data. */
static void write_custom(const char *path, const char *format, const char *r, int nt,
                         const char **names, const int64_t (*shapes)[2], float fillv)
{
	static float buf[4096];
	fl_st_writer *w;
	for (int i = 0; i < 4096; i++)
		buf[i] = fillv;
	if (fl_st_writer_new(&w) != 0)
		abort();
	if (format)
		fl_st_writer_meta(w, "format", format);
	if (r)
		fl_st_writer_meta(w, "r", r);
	fl_st_writer_meta(w, "alpha", "16");
	for (int i = 0; i < nt; i++)
		fl_st_writer_add(w, names[i], FL_ST_F32, 2, shapes[i], buf);
	if (fl_st_writer_write(w, path, NULL, 0) != 0)
		abort();
	fl_st_writer_free(w);
}

static void expect_load(const char *label, int code, const char *format, const char *r, int nt,
                        const char **names, const int64_t (*shapes)[2], float fillv)
{
	const char *p = tpath("bad.safetensors");
	lora_adapter *a = NULL;
	char err[256] = "";
	write_custom(p, format, r, nt, names, shapes, fillv);
	int rc = lora_adapter_load_err(&a, p, err, sizeof err);
	if (rc != code || (code != 0) != (a == NULL) || (code && !strstr(err, "bad.safetensors"))) {
		fprintf(stderr, "  case %s: rc %d (%s), want %d; err '%s'\n", label, rc,
		        fl_strerror(rc), code, err);
		test_cur_failed = 1;
	}
	lora_adapter_free(a);
}

static void test_adapter_file_rejects(void)
{
	const char *pair[2] = {"x.lora_A.weight", "x.lora_B.weight"};
	const int64_t ok[2][2] = {{4, 10}, {6, 4}};
	const int64_t badr[2][2] = {{3, 10}, {6, 4}};
	const int64_t badb[2][2] = {{4, 10}, {6, 5}};
	const char *lone[2] = {"x.lora_A.weight", "y.lora_B.weight"};
	const char *stray[2] = {"x.lora_A.weight", "x.weight"};
	const char *four[4] = {"x.lora_A.weight", "x.lora_B.weight", "z.lora_B.weight",
	                       "w.lora_B.weight"};
	const int64_t ok4[4][2] = {{4, 10}, {6, 4}, {6, 4}, {6, 4}};

	expect_load("baseline", 0, "fedlora-adapter", "4", 2, pair, ok, 0.5f);
	expect_load("no format", FL_EFORMAT, NULL, "4", 2, pair, ok, 0.5f);
	expect_load("other format", FL_EFORMAT, "pt", "4", 2, pair, ok, 0.5f);
	expect_load("no r", FL_EFORMAT, "fedlora-adapter", NULL, 2, pair, ok, 0.5f);
	expect_load("bad r", FL_EFORMAT, "fedlora-adapter", "4x", 2, pair, ok, 0.5f);
	expect_load("A rank mismatch", FL_ESHAPE, "fedlora-adapter", "4", 2, pair, badr, 0.5f);
	expect_load("B rank mismatch", FL_ESHAPE, "fedlora-adapter", "4", 2, pair, badb, 0.5f);
	expect_load("unpaired", FL_ESHAPE, "fedlora-adapter", "4", 2, lone, ok, 0.5f);
	expect_load("stray tensor", FL_ESHAPE, "fedlora-adapter", "4", 2, stray, ok, 0.5f);
	expect_load("B without A", FL_ESHAPE, "fedlora-adapter", "4", 4, four, ok4, 0.5f);
	expect_load("NaN", FL_ENONFINITE, "fedlora-adapter", "4", 2, pair, ok, NAN);
	expect_load("empty", FL_ESHAPE, "fedlora-adapter", "4", 0, pair, ok, 0.5f);
	lora_adapter *a = NULL;
	CHECK(lora_adapter_load(&a, tpath("missing.safetensors")) == FL_ENOENT && !a);
}

static const cJSON *jget(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* Checks an exported folder against adapter a and the expected base model. */
static void check_export(const char *dir, const lora_adapter *a, const char *base)
{
	char p[600], name[256], err[256];
	fl_st_file *f = NULL;

	snprintf(p, sizeof p, "%s/%s", dir, LORA_PEFT_WEIGHTS_FILE);
	CHECK_RC(fl_st_open(&f, p, err, sizeof err));
	if (!f)
		return;
	CHECK(f->n == 2 * a->n);
	CHECK(fl_st_meta(f, "format") && !strcmp(fl_st_meta(f, "format"), "pt"));
	for (int i = 0; i < a->n; i++) {
		const lora_mat *m = &a->mats[i];
		float *buf = malloc(((size_t)a->r * m->in + (size_t)m->out * a->r) * sizeof *buf);
		int64_t sa[2] = {a->r, m->in}, sb[2] = {m->out, a->r};
		snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", m->name);
		const fl_st_tensor *t = fl_st_find(f, name);
		CHECK(t && t->dtype == FL_ST_F32);
		CHECK_RC(fl_st_load_f32(f, name, 2, sa, buf));
		CHECK(!memcmp(buf, m->A, (size_t)a->r * m->in * sizeof(float)));
		snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", m->name);
		CHECK_RC(fl_st_load_f32(f, name, 2, sb, buf));
		CHECK(!memcmp(buf, m->B, (size_t)m->out * a->r * sizeof(float)));
		free(buf);
	}
	fl_st_close(f);

	snprintf(p, sizeof p, "%s/%s", dir, LORA_PEFT_CONFIG_FILE);
	FILE *fp = fopen(p, "rb");
	CHECK(fp != NULL);
	if (!fp)
		return;
	char txt[8192];
	size_t n = fread(txt, 1, sizeof txt - 1, fp);
	fclose(fp);
	txt[n] = 0;
	cJSON *c = cJSON_Parse(txt);
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK(cJSON_IsString(jget(c, "peft_type")) &&
	      !strcmp(jget(c, "peft_type")->valuestring, "LORA"));
	CHECK(cJSON_IsString(jget(c, "task_type")) &&
	      !strcmp(jget(c, "task_type")->valuestring, "CAUSAL_LM"));
	CHECK(cJSON_IsNumber(jget(c, "r")) && jget(c, "r")->valueint == a->r);
	CHECK(cJSON_IsNumber(jget(c, "lora_alpha")) &&
	      jget(c, "lora_alpha")->valuedouble == (double)a->alpha);
	const cJSON *tm = jget(c, "target_modules");
	CHECK(cJSON_IsArray(tm) && cJSON_GetArraySize(tm) == 3);
	if (cJSON_GetArraySize(tm) == 3) {
		CHECK(!strcmp(cJSON_GetArrayItem(tm, 0)->valuestring, "q_proj"));
		CHECK(!strcmp(cJSON_GetArrayItem(tm, 1)->valuestring, "v_proj"));
		CHECK(!strcmp(cJSON_GetArrayItem(tm, 2)->valuestring, "down_proj"));
	}
	const cJSON *bm = jget(c, "base_model_name_or_path");
	if (base)
		CHECK(cJSON_IsString(bm) && !strcmp(bm->valuestring, base));
	else
		CHECK(cJSON_IsNull(bm));
	CHECK(cJSON_IsNumber(jget(c, "lora_dropout")) && jget(c, "lora_dropout")->valuedouble == 0);
	CHECK(cJSON_IsString(jget(c, "bias")) && !strcmp(jget(c, "bias")->valuestring, "none"));
	CHECK(cJSON_IsFalse(jget(c, "fan_in_fan_out")));
	CHECK(cJSON_IsTrue(jget(c, "inference_mode")));
	CHECK(cJSON_IsTrue(jget(c, "init_lora_weights")));
	CHECK(cJSON_IsNull(jget(c, "modules_to_save")));
	CHECK(cJSON_IsFalse(jget(c, "use_rslora")));
	CHECK(cJSON_IsNull(jget(c, "layers_to_transform")));
	CHECK(cJSON_IsNull(jget(c, "revision")));
	cJSON_Delete(c);
}

static void test_peft_export(void)
{
	lora_adapter *a = mk_lm(8, 16.0f, 2);
	char err[256];
	CHECK_RC(lora_peft_export(a, tpath("peft/nested"), "/models/tiny", err, sizeof err));
	check_export(tpath("peft/nested"), a, "/models/tiny");
	CHECK_RC(lora_peft_export(a, tpath("peft2"), NULL, err, sizeof err));
	check_export(tpath("peft2"), a, NULL);
	lora_adapter_free(a);
}

static void write_text(const char *path, const char *txt)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	fputs(txt, f);
	fclose(f);
}

/* lora_peft_config_read + lora_peft_weights_read give back what
 * lora_peft_export wrote; a refused feature, a missing and a stray tensor
 * are rejected with their codes. */
static void test_peft_import(void)
{
	lora_adapter *a = mk_lm(4, 6.0f, 6), *b = NULL;
	lora_peft_config pc;
	const char *dir = tpath("peft_in");
	char err[256], p[700];
	CHECK_RC(lora_peft_export(a, dir, NULL, err, sizeof err));
	CHECK_RC(lora_peft_config_read(dir, &pc, err, sizeof err));
	CHECK(pc.r == 4 && pc.alpha == 6.0);
	CHECK(!strcmp(pc.targets, "q_proj,v_proj,down_proj"));
	CHECK_RC(lora_adapter_clone(&b, a));
	memset(b->params, 0, (b->n_a + b->n_b) * sizeof *b->params);
	CHECK_RC(lora_peft_weights_read(dir, b, err, sizeof err));
	CHECK(!memcmp(a->params, b->params, (a->n_a + a->n_b) * sizeof *a->params));

	/* b has one matrix less than the file: its two tensors are strays */
	lora_adapter *c = NULL;
	const char *names[1] = {a->mats[0].name};
	int in[1] = {a->mats[0].in}, out[1] = {a->mats[0].out};
	CHECK_RC(lora_adapter_new(&c, 1, names, in, out, 4, 6.0f));
	CHECK(lora_peft_weights_read(dir, c, err, sizeof err) == FL_ESHAPE);
	CHECK(strstr(err, "unexpected tensor") != NULL);
	lora_adapter_free(c);
	/* one more matrix than the file: missing */
	snprintf(b->mats[5].name, sizeof b->mats[5].name, "model.layers.1.self_attn.k_proj");
	CHECK(lora_peft_weights_read(dir, b, err, sizeof err) == FL_ENOENT);
	CHECK(strstr(err, "is missing") != NULL);

	snprintf(p, sizeof p, "%s/%s", dir, LORA_PEFT_CONFIG_FILE);
	write_text(p, "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":6,"
	              "\"target_modules\":[\"q_proj\"],\"use_dora\":true}");
	CHECK(lora_peft_config_read(dir, &pc, err, sizeof err) == FL_ENOTSUP);
	write_text(p, "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":6,"
	              "\"target_modules\":\".*proj\"}");
	CHECK(lora_peft_config_read(dir, &pc, err, sizeof err) == FL_ENOTSUP);
	write_text(p, "{\"peft_type\":\"LORA\",\"r\":0,\"lora_alpha\":6}");
	CHECK(lora_peft_config_read(dir, &pc, err, sizeof err) == FL_EFORMAT);
	lora_adapter_free(b);
	lora_adapter_free(a);
}

static int run_export(int n, ...)
{
	char *argv[16];
	va_list ap;
	va_start(ap, n);
	argv[0] = "export";
	for (int i = 0; i < n && i < 15; i++)
		argv[i + 1] = va_arg(ap, char *);
	va_end(ap);
	argv[n + 1] = NULL;
	fflush(stdout);
	/* keep the command's own messages out of the test's output */
	fflush(stderr);
	FILE *saved = stdout, *saved_err = stderr;
	stdout = fopen("/dev/null", "w");
	stderr = fopen("/dev/null", "w");
	int rc = cmd_export(n + 1, argv);
	fclose(stdout);
	fclose(stderr);
	stdout = saved;
	stderr = saved_err;
	return rc;
}

static void test_export_command(void)
{
	lora_adapter *a0 = mk_lm(4, 8.0f, 3), *a3 = mk_lm(4, 8.0f, 4), *a5 = mk_lm(4, 8.0f, 5);
	char run[512], g[600], out[600], p[700];

	snprintf(run, sizeof run, "%s", tpath("run"));
	snprintf(g, sizeof g, "%s/global", run);
	mkdir(run, 0755);
	mkdir(g, 0755);
	snprintf(p, sizeof p, "%s/run.json", run);
	write_text(p, "{\"task\":\"lm\",\"base_dir\":\"/data/base-tiny\",\"rank\":4}");
	snprintf(p, sizeof p, "%s/round-000000.safetensors", g);
	CHECK_RC(lora_adapter_save(a0, p));
	snprintf(p, sizeof p, "%s/round-000003.safetensors", g);
	CHECK_RC(lora_adapter_save(a3, p));
	snprintf(p, sizeof p, "%s/not-a-round.safetensors", g);
	CHECK_RC(lora_adapter_save(a5, p));
	snprintf(out, sizeof out, "%s", tpath("exp"));

	/* default: the highest round (no state.json) */
	CHECK(run_export(4, "--run-dir", run, "--out", out) == 0);
	check_export(out, a3, "/data/base-tiny");
	/* explicit round and base */
	CHECK(run_export(8, "--run-dir", run, "--out", out, "--round", "0", "--base", "meta/x") ==
	      0);
	check_export(out, a0, "meta/x");
	/* state.json says round 0 is the last committed one: round 3 is unfinished */
	snprintf(p, sizeof p, "%s/state.json", run);
	write_text(p, "{\"round\":0,\"run_id\":\"ab\"}");
	CHECK(run_export(4, "--run-dir", run, "--out", out) == 0);
	check_export(out, a0, "/data/base-tiny");
	/* failures: missing round, bad args, not a run dir, corrupt file */
	CHECK(run_export(6, "--run-dir", run, "--out", out, "--round", "7") == 1);
	CHECK(run_export(6, "--run-dir", run, "--out", out, "--round", "-1") == 2);
	CHECK(run_export(6, "--run-dir", run, "--out", out, "--round", "x") == 2);
	CHECK(run_export(2, "--out", out) == 2);
	CHECK(run_export(5, "--run-dir", run, "--out", out, "--bogus") == 2);
	CHECK(run_export(3, "--run-dir", run, "--out") == 2);
	CHECK(run_export(4, "--run-dir", tpath("nowhere"), "--out", out) == 1);
	CHECK(run_export(1, "--help") == 0);
	snprintf(p, sizeof p, "%s/round-000000.safetensors", g);
	write_text(p, "garbage that is not a safetensors file");
	CHECK(run_export(4, "--run-dir", run, "--out", out) == 1);
	lora_adapter_free(a0);
	lora_adapter_free(a3);
	lora_adapter_free(a5);
}

static void rmtree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[1024];
	struct stat sb;
	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
			rmtree(p);
		else
			unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

static const test_case cases[] = {
    TEST(test_adapter_file_roundtrip),
    TEST(test_adapter_file_rejects),
    TEST(test_peft_export),
    TEST(test_peft_import),
    TEST(test_export_command),
    {0},
};

int main(int argc, char **argv)
{
	int rc = test_main(argc, argv, cases);
	if (tmpdir[0])
		rmtree(tmpdir);
	return rc;
}
