/*
 * tests/safetensors_test.c — core/safetensors: F32/BF16/F16 round trips,
 * element conversions, strict rejection of malformed files.
 */
#include <dirent.h>
#include <stdint.h>
#include <unistd.h>

#include "core/safetensors.h"
#include "tests/test.h"

static char tmpdir[256];

static const char *tpath(const char *name)
{
	static char p[512];
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof tmpdir, "/tmp/fl-st-test.XXXXXX");
		if (!mkdtemp(tmpdir))
			abort();
	}
	snprintf(p, sizeof p, "%s/%s", tmpdir, name);
	return p;
}

/* Writes 8-byte header length + header + data bytes; hlen_override != 0 lies. */
static void write_raw(const char *path, const char *hdr, const void *data, size_t n,
                      uint64_t hlen_override)
{
	FILE *f = fopen(path, "wb");
	uint64_t hl = hlen_override ? hlen_override : strlen(hdr);
	if (!f)
		abort();
	fwrite(&hl, 8, 1, f);
	fwrite(hdr, 1, strlen(hdr), f);
	if (n)
		fwrite(data, 1, n, f);
	fclose(f);
}

static void test_roundtrip_f32(void)
{
	float a[6] = {1.5f, -2.25f, 3e-30f, 1e30f, 0.0f, -0.0f}, b[24], s = 42.0f;
	float ra[6], rb[24], rs;
	int64_t sa[2] = {2, 3}, sb[3] = {2, 3, 4};
	fl_st_writer *w;
	fl_st_file *f = NULL;
	char err[256];
	const char *p = tpath("f32.safetensors");

	for (int i = 0; i < 24; i++)
		b[i] = (float)i * 0.37f - 3.0f;
	CHECK_RC(fl_st_writer_new(&w));
	CHECK_RC(fl_st_writer_add(w, "layer.a", FL_ST_F32, 2, sa, a));
	CHECK_RC(fl_st_writer_add(w, "layer \"b\"", FL_ST_F32, 3, sb, b));
	CHECK_RC(fl_st_writer_add(w, "scalar", FL_ST_F32, 0, NULL, &s));
	CHECK(fl_st_writer_add(w, "layer.a", FL_ST_F32, 2, sa, a) == FL_EINVAL);
	CHECK(fl_st_writer_add(w, "x", FL_ST_I32, 2, sa, a) == FL_ENOTSUP);
	CHECK_RC(fl_st_writer_meta(w, "format", "pt"));
	CHECK_RC(fl_st_writer_meta(w, "note", "old"));
	CHECK_RC(fl_st_writer_meta(w, "note", "quote\" and \\ and\nnewline"));
	CHECK_RC(fl_st_writer_write(w, p, err, sizeof err));
	fl_st_writer_free(w);

	CHECK_RC(fl_st_open(&f, p, err, sizeof err));
	if (!f)
		return;
	CHECK(f->n == 3);
	CHECK(fl_st_meta(f, "format") && !strcmp(fl_st_meta(f, "format"), "pt"));
	CHECK(fl_st_meta(f, "note") &&
	      !strcmp(fl_st_meta(f, "note"), "quote\" and \\ and\nnewline"));
	CHECK(fl_st_meta(f, "missing") == NULL);
	const fl_st_tensor *t = fl_st_find(f, "layer \"b\"");
	CHECK(t && t->ndim == 3 && t->shape[2] == 4 && t->nelem == 24 && t->dtype == FL_ST_F32);
	CHECK(fl_st_find(f, "nope") == NULL);
	CHECK_RC(fl_st_load_f32(f, "layer.a", 2, sa, ra));
	CHECK(!memcmp(a, ra, sizeof a));
	CHECK_RC(fl_st_load_f32(f, "layer \"b\"", 3, sb, rb));
	CHECK(!memcmp(b, rb, sizeof b));
	CHECK_RC(fl_st_load_f32(f, "scalar", 0, NULL, &rs));
	CHECK(rs == 42.0f);
	/* wrong expected shape or count is refused with a message */
	int64_t wrong[2] = {3, 2};
	CHECK(fl_st_load_f32(f, "layer.a", 2, wrong, ra) == FL_ESHAPE);
	CHECK(strstr(f->err, "layer.a") != NULL);
	CHECK(fl_st_load_f32(f, "absent", 2, sa, ra) == FL_ENOENT);
	CHECK(fl_st_read_f32(f, fl_st_find(f, "layer.a"), ra, 5) == FL_ESHAPE);
	fl_st_close(f);

	/* no temporary file left behind */
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	int tmps = 0;
	while (d && (e = readdir(d)))
		if (strstr(e->d_name, ".tmp."))
			tmps++;
	if (d)
		closedir(d);
	CHECK(tmps == 0);
}

static void test_roundtrip_bf16_f16(void)
{
	enum { N = 1000 };
	float x[N], rb[N], rh[N];
	int64_t sh[1] = {N};
	fl_st_writer *w;
	fl_st_file *f = NULL;
	char err[256];
	const char *p = tpath("half.safetensors");

	for (int i = 0; i < N; i++)
		x[i] = (float)sin(i * 0.731) * powf(2.0f, (float)(i % 20) - 10.0f);
	CHECK_RC(fl_st_writer_new(&w));
	CHECK_RC(fl_st_writer_add(w, "b", FL_ST_BF16, 1, sh, x));
	CHECK_RC(fl_st_writer_add(w, "h", FL_ST_F16, 1, sh, x));
	CHECK_RC(fl_st_writer_write(w, p, err, sizeof err));
	fl_st_writer_free(w);
	CHECK_RC(fl_st_open(&f, p, err, sizeof err));
	if (!f)
		return;
	CHECK(fl_st_find(f, "b")->dtype == FL_ST_BF16 && fl_st_find(f, "b")->nbytes == 2 * N);
	CHECK_RC(fl_st_load_f32(f, "b", 1, sh, rb));
	CHECK_RC(fl_st_load_f32(f, "h", 1, sh, rh));
	double worst_b = 0, worst_h = 0;
	for (int i = 0; i < N; i++) {
		if (x[i] == 0)
			continue;
		double eb = fabs(rb[i] - x[i]) / fabs(x[i]);
		double eh = fabs(rh[i] - x[i]) / fabs(x[i]);
		worst_b = eb > worst_b ? eb : worst_b;
		if (fabs(x[i]) >= 0x1p-14) /* normal f16 range */
			worst_h = eh > worst_h ? eh : worst_h;
	}
	CHECK(worst_b <= 0x1p-8 && worst_b > 0); /* 8 mantissa bits: half-ulp 2^-8 */
	CHECK(worst_h <= 0x1p-11 && worst_h > 0);
	fl_st_close(f);
}

/* An F16 file made by hand, byte for byte, as another tool would write it. */
static void test_f16_handmade(void)
{
	const uint16_t h[8] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00, 0x8000, 0x3555};
	const float want[8] = {1.0f,     -2.0f,    0.5f,  65504.0f,
	                       0x1p-24f, INFINITY, -0.0f, 0.333251953125f};
	const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
	                  "\"w\":{\"dtype\":\"F16\",\"shape\":[2,4],\"data_offsets\":[0,16]}}";
	fl_st_file *f = NULL;
	float got[8];
	char err[256];
	const char *p = tpath("hand16.safetensors");

	write_raw(p, hdr, h, sizeof h, 0);
	CHECK_RC(fl_st_open(&f, p, err, sizeof err));
	if (!f)
		return;
	CHECK_RC(fl_st_read_f32(f, fl_st_find(f, "w"), got, 8));
	for (int i = 0; i < 8; i++)
		CHECK(got[i] == want[i] && signbit(got[i]) == signbit(want[i]));
	fl_st_close(f);
}

static void test_conversions(void)
{
	int bad_h = 0, bad_b = 0;
	/* every f16 / bf16 value survives a round trip through f32 */
	for (uint32_t i = 0; i < 65536; i++) {
		float v = fl_f16_to_f32((uint16_t)i);
		if (isnan(v))
			bad_h += !isnan(fl_f16_to_f32(fl_f32_to_f16(v)));
		else
			bad_h += fl_f32_to_f16(v) != i;
		v = fl_bf16_to_f32((uint16_t)i);
		if (isnan(v))
			bad_b += !isnan(fl_bf16_to_f32(fl_f32_to_bf16(v)));
		else
			bad_b += fl_f32_to_bf16(v) != i;
	}
	CHECK(bad_h == 0);
	CHECK(bad_b == 0);
	/* round to nearest even at the halfway point */
	CHECK(fl_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);     /* tie -> even (down) */
	CHECK(fl_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82); /* tie -> even (up) */
	CHECK(fl_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);     /* tie -> even */
	CHECK(fl_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02); /* tie -> even (up) */
	CHECK(fl_f32_to_f16(65520.0f) == 0x7c00);            /* overflow -> Inf */
	CHECK(fl_f32_to_f16(65519.0f) == 0x7bff);
	CHECK(fl_f32_to_f16(0x1p-25f) == 0x0000); /* tie to even 0 */
	CHECK(fl_f32_to_f16(0x1p-25f * 1.0001f) == 0x0001);
	CHECK(isnan(fl_f16_to_f32(fl_f32_to_f16(NAN))));
	CHECK(isnan(fl_bf16_to_f32(fl_f32_to_bf16(NAN))));
	CHECK(fl_f32_to_bf16(-INFINITY) == 0xff80);
}

/* Each malformed file is refused with the expected code and a message that
 * names the file. */
static void expect_bad(const char *label, const char *hdr, size_t data_bytes, uint64_t hlen,
                       int code)
{
	char data[256] = {0}, err[256] = "";
	fl_st_file *f = NULL;
	const char *p = tpath("bad.safetensors");
	int rc;
	write_raw(p, hdr, data, data_bytes, hlen);
	rc = fl_st_open(&f, p, err, sizeof err);
	if (rc != code || f != NULL || !strstr(err, "bad.safetensors")) {
		fprintf(stderr, "  case %s: rc %d (%s), want %d; err '%s'\n", label, rc,
		        fl_strerror(rc), code, err);
		test_cur_failed = 1;
	}
	fl_st_close(f);
}

static void test_malformed(void)
{
	const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
	char err[256];
	fl_st_file *f = NULL;
	const char *p = tpath("bad.safetensors");

	/* the well-formed baseline opens */
	write_raw(p, ok, "\0\0\0\0\0\0\0\0", 8, 0);
	CHECK_RC(fl_st_open(&f, p, err, sizeof err));
	fl_st_close(f);
	f = NULL;

	expect_bad("truncated data", ok, 4, 0, FL_EFORMAT);
	expect_bad("trailing bytes", ok, 12, 0, FL_EFORMAT);
	expect_bad("header longer than file", ok, 8, 10000, FL_EFORMAT);
	expect_bad("header over limit", ok, 8, (uint64_t)1 << 40, FL_ETOOBIG);
	expect_bad("bad json", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],", 8, 0, FL_EFORMAT);
	expect_bad("not object", "[1,2,3]", 0, 0, FL_EFORMAT);
	expect_bad("trailing garbage",
	           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}xyz", 8, 0,
	           FL_EFORMAT);
	expect_bad("offsets out of range",
	           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,800]}}", 8, 0,
	           FL_EFORMAT);
	expect_bad("size mismatch",
	           "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0,
	           FL_EFORMAT);
	expect_bad("overlap",
	           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
	           12, 0, FL_EFORMAT);
	expect_bad("hole",
	           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
	           12, 0, FL_EFORMAT);
	expect_bad("duplicate name",
	           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
	           8, 0, FL_EFORMAT);
	expect_bad("shape overflow",
	           "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
	           "\"data_offsets\":[0,8]}}",
	           8, 0, FL_EFORMAT);
	expect_bad("negative dim",
	           "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0,
	           FL_EFORMAT);
	expect_bad("fractional offset",
	           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.5]}}", 8, 0,
	           FL_EFORMAT);
	expect_bad("missing dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0,
	           FL_EFORMAT);
	expect_bad("unknown dtype",
	           "{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0,
	           FL_ENOTSUP);
	expect_bad("metadata not string",
	           "{\"__metadata__\":{\"r\":8},"
	           "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
	           8, 0, FL_EFORMAT);
	expect_bad("too many dims",
	           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],"
	           "\"data_offsets\":[0,8]}}",
	           8, 0, FL_EFORMAT);

	/* a file shorter than the length prefix */
	FILE *fp = fopen(p, "wb");
	fwrite("abc", 1, 3, fp);
	fclose(fp);
	CHECK(fl_st_open(&f, p, err, sizeof err) == FL_EFORMAT && !f);
	CHECK(fl_st_open(&f, tpath("does-not-exist"), err, sizeof err) == FL_ENOENT);
	CHECK(strstr(err, "does-not-exist") != NULL);
}

static void test_other_dtypes(void)
{
	const int32_t v[2] = {7, -9};
	const char *hdr = "{\"ids\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
	fl_st_file *f = NULL;
	char err[256];
	float out[2];
	int32_t raw[2];
	const char *p = tpath("i32.safetensors");

	write_raw(p, hdr, v, sizeof v, 0);
	CHECK_RC(fl_st_open(&f, p, err, sizeof err));
	if (!f)
		return;
	const fl_st_tensor *t = fl_st_find(f, "ids");
	CHECK(t && t->dtype == FL_ST_I32);
	CHECK(fl_st_read_f32(f, t, out, 2) == FL_ENOTSUP);
	memcpy(raw, fl_st_raw(f, t), 8);
	CHECK(raw[0] == 7 && raw[1] == -9);
	fl_st_close(f);
}

static void test_write_fails_cleanly(void)
{
	fl_st_writer *w;
	float x = 1;
	int64_t s[1] = {1};
	char err[256] = "";
	CHECK_RC(fl_st_writer_new(&w));
	CHECK_RC(fl_st_writer_add(w, "x", FL_ST_F32, 1, s, &x));
	CHECK(fl_st_writer_write(w, "/nonexistent-dir/x.safetensors", err, sizeof err) == FL_EIO);
	CHECK(strstr(err, "/nonexistent-dir/x.safetensors") != NULL);
	fl_st_writer_free(w);
	fl_st_writer_free(NULL);
	fl_st_close(NULL);
}

/* Mutated and truncated versions of a valid file never crash the reader: each
 * either opens (and every tensor converts) or is refused with a message. */
static void test_mutations_never_crash(void)
{
	float x[12];
	int64_t s2[2] = {3, 4}, s1[1] = {5};
	fl_st_writer *w;
	char err[256];
	const char *good = tpath("good.safetensors"), *bad = tpath("mut.safetensors");
	unsigned char *buf = NULL, *mut = NULL;
	long n = 0;
	uint64_t st = 0x9e3779b97f4a7c15ull;
	int opened = 0, refused = 0;

	for (int i = 0; i < 12; i++)
		x[i] = (float)i;
	CHECK_RC(fl_st_writer_new(&w));
	CHECK_RC(fl_st_writer_add(w, "w", FL_ST_F32, 2, s2, x));
	CHECK_RC(fl_st_writer_add(w, "h", FL_ST_F16, 1, s1, x));
	CHECK_RC(fl_st_writer_meta(w, "k", "v"));
	CHECK_RC(fl_st_writer_write(w, good, err, sizeof err));
	fl_st_writer_free(w);
	FILE *f = fopen(good, "rb");
	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(n);
	mut = malloc(n);
	if (fread(buf, 1, n, f) != (size_t)n)
		test_cur_failed = 1;
	fclose(f);
	for (int it = 0; it < 3000; it++) {
		long len = n;
		memcpy(mut, buf, n);
		st ^= st << 13, st ^= st >> 7, st ^= st << 17;
		if (it < n) {
			len = it; /* every truncation */
		} else {
			int flips = 1 + (int)(st % 3);
			for (int k = 0; k < flips; k++) {
				st ^= st << 13, st ^= st >> 7, st ^= st << 17;
				/* mostly the length prefix and the JSON header */
				long pos = (long)(st % (uint64_t)(n < 160 ? n : 160));
				mut[pos] = (unsigned char)(st >> 32);
			}
		}
		FILE *o = fopen(bad, "wb");
		fwrite(mut, 1, len, o);
		fclose(o);
		fl_st_file *r = NULL;
		err[0] = 0;
		int rc = fl_st_open(&r, bad, err, sizeof err);
		if (rc == 0) {
			opened++;
			for (int t = 0; t < r->n; t++) {
				float *dst = malloc((r->tensors[t].nelem + 1) * sizeof *dst);
				int rr =
				    fl_st_read_f32(r, &r->tensors[t], dst, r->tensors[t].nelem);
				CHECK(rr == 0 || rr == FL_ENOTSUP);
				free(dst);
			}
			fl_st_close(r);
		} else {
			refused++;
			CHECK(r == NULL && strstr(err, "mut.safetensors") != NULL);
		}
	}
	CHECK(refused > 0);
	printf("# %d mutated files opened, %d refused\n", opened, refused);
	free(buf);
	free(mut);
}

static void cleanup(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	char p[600];
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(tmpdir);
}

static const test_case cases[] = {
    TEST(test_roundtrip_f32),
    TEST(test_roundtrip_bf16_f16),
    TEST(test_f16_handmade),
    TEST(test_conversions),
    TEST(test_malformed),
    TEST(test_other_dtypes),
    TEST(test_write_fails_cleanly),
    TEST(test_mutations_never_crash),
    {0},
};

int main(int argc, char **argv)
{
	int rc = test_main(argc, argv, cases);
	if (tmpdir[0])
		cleanup();
	return rc;
}
