/*
 * tests/st_folder_test.c — core/st_folder: a model folder's weights as one
 * file or as shards behind model.safetensors.index.json. The same tensors
 * split into shards look up and hash the same as one file; every bad index
 * (missing shard, path escape, tensor missing from its shard, tensor in two
 * shards, unlisted tensor, bad JSON and fields) is refused with its code and
 * a message naming the file and field; a wrong total_size only warns.
 */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/st_folder.h"
#include "tests/test.h"

static char tmpdir[256];
static int ndirs;

/* A fresh folder under the test's temp dir. */
static const char *new_dir(void)
{
	static char d[512];
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof tmpdir, "%s/fl-stf-test.XXXXXX",
		         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!mkdtemp(tmpdir))
			abort();
	}
	snprintf(d, sizeof d, "%s/m%d", tmpdir, ndirs++);
	if (mkdir(d, 0755) != 0)
		abort();
	return d;
}

/* The fixture's tensors: a (2,3), b (4), c (3), d scalar; values from the name. */
static const char *const NAMES[] = {"a", "b", "c", "d"};
static const int NDIM[] = {2, 1, 1, 0};
static const int64_t SHAPES[][2] = {{2, 3}, {4, 0}, {3, 0}, {0, 0}};
static float VALS[4][6];

static int name_index(const char *n)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(NAMES[i], n))
			return i;
	return -1;
}

/* Writes dir/file holding the tensors named in the comma-free string `which`
 * ("ac": a and c), stored as dt. */
static void write_shard(const char *dir, const char *file, const char *which, fl_st_dtype dt)
{
	char path[1400], err[256];
	fl_st_writer *w = NULL;
	CHECK_RC(fl_st_writer_new(&w));
	for (const char *p = which; w && *p; p++) {
		char n[2] = {*p, 0};
		int i = name_index(n);
		if (i < 0)
			abort();
		CHECK_RC(fl_st_writer_add(w, NAMES[i], dt, NDIM[i], SHAPES[i], VALS[i]));
	}
	snprintf(path, sizeof path, "%s/%s", dir, file);
	CHECK_RC(fl_st_writer_write(w, path, err, sizeof err));
	fl_st_writer_free(w);
}

static void write_text(const char *dir, const char *file, const char *text)
{
	char path[1400];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
}

/* a, c in s1; b in s2; d in s3. Bytes: 24 + 16 + 12 + 4 = 56. */
#define GOOD_MAP                                                                                   \
	"\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\",\"c\":\"s1.safetensors\","              \
	"\"d\":\"s3.safetensors\""

static const char *sharded_dir(const char *index)
{
	const char *d = new_dir();
	write_shard(d, "s1.safetensors", "ca", FL_ST_F32);
	write_shard(d, "s2.safetensors", "b", FL_ST_F32);
	write_shard(d, "s3.safetensors", "d", FL_ST_F32);
	write_text(d, FL_ST_INDEX_FILE, index);
	return d;
}

static void fill(void)
{
	for (int i = 0; i < 4; i++)
		for (int k = 0; k < 6; k++)
			VALS[i][k] = (float)(i * 10 + k) * 0.25f - 3.0f;
}

static void test_sharded_matches_single(void)
{
	fl_st_folder *one = NULL, *sh = NULL;
	char err[FL_ST_FOLDER_ERR];
	uint8_t h1[FL_ST_HASH_BYTES], h2[FL_ST_HASH_BYTES];
	fill();
	const char *d1 = new_dir();
	write_shard(d1, FL_ST_SINGLE_FILE, "abcd", FL_ST_F32);
	char dd1[512];
	snprintf(dd1, sizeof dd1, "%s", d1);
	const char *d2 =
	    sharded_dir("{\"metadata\":{\"total_size\":56},\"weight_map\":{" GOOD_MAP "}}");
	CHECK_RC(fl_st_folder_open(&one, dd1, err, sizeof err));
	CHECK_RC(fl_st_folder_open(&sh, d2, err, sizeof err));
	if (!one || !sh)
		goto done;
	CHECK(!one->sharded && sh->sharded && sh->nfiles == 3 && one->nfiles == 1);
	CHECK(one->n == 4 && sh->n == 4);
	CHECK(sh->total_bytes == 56 && sh->total_size_declared == 56 && !sh->total_size_mismatch);
	CHECK(strstr(sh->path, FL_ST_INDEX_FILE) != NULL);
	for (int i = 0; i < 4; i++) {
		fl_st_file *f1, *f2;
		const fl_st_tensor *t1 = fl_st_folder_find(one, NAMES[i], &f1);
		const fl_st_tensor *t2 = fl_st_folder_find(sh, NAMES[i], &f2);
		CHECK(t1 && t2);
		if (!t1 || !t2)
			continue;
		CHECK(t1->nbytes == t2->nbytes && t1->ndim == t2->ndim);
		CHECK(!memcmp(fl_st_raw(f1, t1), fl_st_raw(f2, t2), t1->nbytes));
		float v[6];
		CHECK_RC(fl_st_folder_load_f32(sh, NAMES[i], NDIM[i], SHAPES[i], v));
		CHECK(!memcmp(v, VALS[i], t1->nelem * sizeof(float)));
	}
	CHECK(fl_st_folder_find(sh, "zz", NULL) == NULL);
	CHECK_RC(fl_st_folder_hash(one, h1));
	CHECK_RC(fl_st_folder_hash(sh, h2));
	CHECK(!memcmp(h1, h2, sizeof h1));
	/* one changed value, or the same values stored as BF16, hash differently */
	{
		fl_st_folder *x = NULL;
		uint8_t h3[FL_ST_HASH_BYTES];
		VALS[2][1] += 1.0f;
		const char *d3 = new_dir();
		write_shard(d3, FL_ST_SINGLE_FILE, "abcd", FL_ST_F32);
		CHECK_RC(fl_st_folder_open(&x, d3, err, sizeof err));
		CHECK(x && fl_st_folder_hash(x, h3) == 0 && memcmp(h1, h3, sizeof h1) != 0);
		fl_st_folder_close(x);
		x = NULL;
		VALS[2][1] -= 1.0f;
		const char *d4 = new_dir();
		write_shard(d4, FL_ST_SINGLE_FILE, "abcd", FL_ST_BF16);
		CHECK_RC(fl_st_folder_open(&x, d4, err, sizeof err));
		CHECK(x && fl_st_folder_hash(x, h3) == 0 && memcmp(h1, h3, sizeof h1) != 0);
		fl_st_folder_close(x);
	}
done:
	fl_st_folder_close(one);
	fl_st_folder_close(sh);
}

/* A folder with both layouts reads model.safetensors (transformers' order);
 * one with neither is FL_ENOENT. */
static void test_single_file_wins(void)
{
	fl_st_folder *fo = NULL;
	char err[FL_ST_FOLDER_ERR];
	fill();
	const char *d = sharded_dir("not json at all");
	char dd[512];
	snprintf(dd, sizeof dd, "%s", d);
	write_shard(dd, FL_ST_SINGLE_FILE, "ab", FL_ST_F32);
	CHECK_RC(fl_st_folder_open(&fo, dd, err, sizeof err));
	CHECK(fo && !fo->sharded && fo->n == 2);
	fl_st_folder_close(fo);
	fo = NULL;
	err[0] = 0;
	CHECK(fl_st_folder_open(&fo, new_dir(), err, sizeof err) == FL_ENOENT && !fo);
	CHECK(strstr(err, FL_ST_SINGLE_FILE) != NULL);
}

typedef struct bad_case {
	const char *what, *index;
	int rc;
	const char *needle; /* must appear in the error text */
} bad_case;

static void test_bad_index(void)
{
	static const bad_case cases[] = {
	    {"missing shard",
	     "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s9.safetensors\"}}", FL_ENOENT,
	     "names shard s9.safetensors, which does not exist"},
	    {"path escape ..", "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}", FL_EFORMAT,
	     "weight_map[\"a\"]: shard name \"../s1.safetensors\" is not a plain file name"},
	    {"path escape /", "{\"weight_map\":{\"a\":\"/etc/passwd\"}}", FL_EFORMAT,
	     "is not a plain file name"},
	    {"sub folder", "{\"weight_map\":{\"b\":\"x/s2.safetensors\"}}", FL_EFORMAT,
	     "is not a plain file name"},
	    {"dot dot inside", "{\"weight_map\":{\"b\":\"s..2.safetensors\"}}", FL_EFORMAT,
	     "is not a plain file name"},
	    {"empty name", "{\"weight_map\":{\"b\":\"\"}}", FL_EFORMAT, "is not a plain file name"},
	    {"listed, not in its shard", "{\"weight_map\":{" GOOD_MAP ",\"z\":\"s2.safetensors\"}}",
	     FL_EFORMAT, "weight_map[\"z\"]: shard s2.safetensors has no such tensor"},
	    {"in another shard",
	     "{\"weight_map\":{\"a\":\"s2.safetensors\",\"b\":\"s2.safetensors\",\"c\":\"s1."
	     "safetensors\",\"d\":\"s3.safetensors\"}}",
	     FL_EFORMAT, "weight_map[\"a\"]: says shard s2.safetensors but the tensor is in s1"},
	    {"tensor in two shards", "{\"weight_map\":{" GOOD_MAP ",\"a2\":\"dup.safetensors\"}}",
	     FL_EFORMAT, "tensor a is in two shards"},
	    {"not listed",
	     "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\",\"d\":\"s3."
	     "safetensors\"}}",
	     FL_EFORMAT, "shard s1.safetensors has tensor c, which is not listed"},
	    {"listed twice", "{\"weight_map\":{" GOOD_MAP ",\"b\":\"s2.safetensors\"}}", FL_EFORMAT,
	     "weight_map[\"b\"]: listed twice"},
	    {"not json", "{\"weight_map\":", FL_EFORMAT, "not a JSON object"},
	    {"array", "[1,2]", FL_EFORMAT, "not a JSON object"},
	    {"no weight_map", "{\"metadata\":{}}", FL_EFORMAT,
	     "weight_map: want a non-empty object"},
	    {"empty weight_map", "{\"weight_map\":{}}", FL_EFORMAT, "weight_map: want a non-empty"},
	    {"value not a string", "{\"weight_map\":{\"a\":7}}", FL_EFORMAT,
	     "weight_map[\"a\"]: want a file name string"},
	    {"total_size a string",
	     "{\"metadata\":{\"total_size\":\"56\"},\"weight_map\":{" GOOD_MAP "}}", FL_EFORMAT,
	     "metadata.total_size: want a non-negative integer"},
	    {"total_size negative",
	     "{\"metadata\":{\"total_size\":-1},\"weight_map\":{" GOOD_MAP "}}", FL_EFORMAT,
	     "metadata.total_size"},
	    {"total_size fraction",
	     "{\"metadata\":{\"total_size\":5.5},\"weight_map\":{" GOOD_MAP "}}", FL_EFORMAT,
	     "metadata.total_size"},
	    {"metadata not an object", "{\"metadata\":3,\"weight_map\":{" GOOD_MAP "}}", FL_EFORMAT,
	     "metadata: want an object"},
	    {"bad shard file", "{\"weight_map\":{" GOOD_MAP ",\"q\":\"junk.safetensors\"}}",
	     FL_ETOOBIG, "junk.safetensors"},
	};
	fill();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const bad_case *c = &cases[i];
		fl_st_folder *fo = NULL;
		char err[FL_ST_FOLDER_ERR] = "";
		const char *d = sharded_dir(c->index);
		/* extra files some cases point at */
		char dd[512];
		snprintf(dd, sizeof dd, "%s", d);
		{
			fl_st_writer *w = NULL;
			char p[700], e[256];
			float v = 1.0f;
			int64_t sh[1] = {1};
			CHECK_RC(fl_st_writer_new(&w));
			CHECK_RC(fl_st_writer_add(w, "a", FL_ST_F32, 1, sh, &v));
			CHECK_RC(fl_st_writer_add(w, "a2", FL_ST_F32, 1, sh, &v));
			snprintf(p, sizeof p, "%s/dup.safetensors", dd);
			CHECK_RC(fl_st_writer_write(w, p, e, sizeof e));
			fl_st_writer_free(w);
		}
		write_text(dd, "junk.safetensors", "this is not a safetensors file");
		int rc = fl_st_folder_open(&fo, dd, err, sizeof err);
		if (rc != c->rc || fo || !strstr(err, c->needle) || !strstr(err, dd)) {
			fprintf(stderr, "  case \"%s\": rc %d (want %d), error \"%s\"\n", c->what,
			        rc, c->rc, err);
			test_cur_failed = 1;
		}
		fl_st_folder_close(fo);
	}
}

/* A total_size that disagrees with the shards warns and loads. */
static void test_total_size_mismatch(void)
{
	fl_st_folder *fo = NULL;
	char err[FL_ST_FOLDER_ERR];
	fill();
	const char *d =
	    sharded_dir("{\"metadata\":{\"total_size\":1000},\"weight_map\":{" GOOD_MAP "}}");
	CHECK_RC(fl_st_folder_open(&fo, d, err, sizeof err));
	CHECK(fo && fo->total_size_mismatch && fo->total_size_declared == 1000 &&
	      fo->total_bytes == 56);
	fl_st_folder_close(fo);
	fo = NULL;
	d = sharded_dir("{\"weight_map\":{" GOOD_MAP "}}");
	CHECK_RC(fl_st_folder_open(&fo, d, err, sizeof err));
	CHECK(fo && !fo->total_size_mismatch && fo->total_size_declared == -1);
	fl_st_folder_close(fo);
}

/* A tensor the caller needs but the weight map lacks, and a shape mismatch,
 * name the index / the shard and the tensor. */
static void test_load_errors(void)
{
	fl_st_folder *fo = NULL;
	char err[FL_ST_FOLDER_ERR];
	float v[6];
	int64_t wrong[2] = {3, 2};
	fill();
	const char *d = sharded_dir("{\"weight_map\":{" GOOD_MAP "}}");
	CHECK_RC(fl_st_folder_open(&fo, d, err, sizeof err));
	if (!fo)
		return;
	CHECK(fl_st_folder_load_f32(fo, "lm_head.weight", 1, wrong, v) == FL_ENOENT);
	CHECK(strstr(fo->err, FL_ST_INDEX_FILE) &&
	      strstr(fo->err, "tensor lm_head.weight is missing from weight_map"));
	CHECK(fl_st_folder_load_f32(fo, "a", 2, wrong, v) == FL_ESHAPE);
	CHECK(strstr(fo->err, "s1.safetensors: tensor a") != NULL);
	fl_st_folder_close(fo);
}

/* A folder path longer than a reader's 512-byte path buffer still matches
 * shard names (they are kept apart from the readers' truncated paths). */
static void test_long_folder_path(void)
{
	char d[1200], err[FL_ST_FOLDER_ERR];
	fl_st_folder *fo = NULL;
	fill();
	snprintf(d, sizeof d, "%s", new_dir());
	for (int i = 0; i < 8; i++) {
		size_t n = strlen(d);
		snprintf(d + n, sizeof d - n, "/%s",
		         "a-rather-long-folder-name-for-the-path-test-0123456789-"
		         "abcdefghijklmnopqrstuvwxyz");
		CHECK(mkdir(d, 0755) == 0);
	}
	CHECK(strlen(d) > 560);
	write_shard(d, "s1.safetensors", "ca", FL_ST_F32);
	write_shard(d, "s2.safetensors", "b", FL_ST_F32);
	write_shard(d, "s3.safetensors", "d", FL_ST_F32);
	write_text(d, FL_ST_INDEX_FILE, "{\"weight_map\":{" GOOD_MAP "}}");
	CHECK_RC(fl_st_folder_open(&fo, d, err, sizeof err));
	if (!fo)
		fprintf(stderr, "    %s\n", err);
	CHECK(fo && fo->n == 4);
	fl_st_folder_close(fo);
}

static void cleanup(void)
{
	char cmd[400];
	if (!tmpdir[0])
		return;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "  could not remove %s\n", tmpdir);
}

static const test_case cases[] = {TEST(test_sharded_matches_single),
                                  TEST(test_single_file_wins),
                                  TEST(test_bad_index),
                                  TEST(test_total_size_mismatch),
                                  TEST(test_load_errors),
                                  TEST(test_long_folder_path),
                                  {0}};

int main(int argc, char **argv)
{
	int rv = test_main(argc, argv, cases);
	cleanup();
	return rv;
}
