#!/bin/sh
# fuzz_test: every libFuzzer target tests/fuzz/*_fuzz.c builds with clang
# (ASan + UBSan + libFuzzer, library reused in build-fuzz/ between runs), runs
# FUZZ_TEST_S seconds (default 2) over its seed corpus without a crash,
# sanitizer report or leak, and replays each saved crash input under
# tests/fuzz/regressions/NAME/ cleanly. Skipped where clang or its fuzzer
# runtime (libclang-rt-dev) is missing. Long runs: make fuzz.
. tests/lib.sh
S=${FUZZ_TEST_S:-2}
cc=${FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
	skip "fuzz targets" "$cc not installed (sh scripts/install-deps.sh)"
	exit 0
fi
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' >"$TMPROOT/p.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$TMPROOT/p.c" -o "$TMPROOT/p" >/dev/null 2>&1; then
	skip "fuzz targets" "$cc cannot link -fsanitize=fuzzer (libclang-rt-dev missing)"
	exit 0
fi
if ! FUZZ_CC="$cc" sh scripts/fuzz.sh build >"$TMPROOT/build.log" 2>&1; then
	sed 's/^/# /' "$TMPROOT/build.log" | tail -20
	notok "fuzz targets build with $cc"
	exit 1
fi
ok "fuzz targets build with $cc"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for src in tests/fuzz/*_fuzz.c; do
	t=$(basename "$src" .c) n=${t%_fuzz}
	mkdir -p "$TMPROOT/corpus/$n" "$TMPROOT/crash/$n"
	seeds=tests/fuzz/corpus/$n
	[ -d "$seeds" ] || seeds=""
	if build-fuzz/fuzz/$t -max_total_time="$S" -timeout=10 -rss_limit_mb=2048 \
		-close_fd_mask=2 -artifact_prefix="$TMPROOT/crash/$n/" \
		"$TMPROOT/corpus/$n" $seeds >"$TMPROOT/$t.log" 2>&1; then
		ok "$t runs ${S} s without a crash"
	else
		grep -A12 'ERROR\|runtime error\|SUMMARY' "$TMPROOT/$t.log" | head -20 | sed 's/^/# /'
		mkdir -p build-fuzz/crashes/$n && cp "$TMPROOT/crash/$n"/* build-fuzz/crashes/$n/ 2>/dev/null
		notok "$t runs ${S} s without a crash (inputs: build-fuzz/crashes/$n)"
	fi
	d=tests/fuzz/regressions/$n
	if [ -d "$d" ] && [ -n "$(ls -A "$d")" ]; then
		if build-fuzz/fuzz/$t -runs=1 -close_fd_mask=2 "$d"/* >"$TMPROOT/$t.replay" 2>&1; then
			ok "$t replays $(ls "$d" | wc -l) regression input(s)"
		else
			grep -A12 'ERROR\|runtime error' "$TMPROOT/$t.replay" | head -20 | sed 's/^/# /'
			notok "$t replays the regression inputs in $d"
		fi
	fi
done
exit $t_failed
