#!/bin/sh
# scripts/fuzz.sh — builds and runs the libFuzzer targets tests/fuzz/*_fuzz.c
# (every such file is a target; nothing to register).
#   sh scripts/fuzz.sh build            clang ASan+UBSan+fuzzer library in build-fuzz/,
#                                       one binary per target in build-fuzz/fuzz/
#   sh scripts/fuzz.sh run [NAME...]    runs each target FUZZ_S seconds (default 600)
#                                       over tests/fuzz/corpus/NAME/ (NAME: the
#                                       file name without _fuzz.c) plus a scratch
#                                       corpus build-fuzz/corpus/NAME/ (outside git);
#                                       crash inputs go to build-fuzz/crashes/NAME/;
#                                       prints target, executions, crashes, corpus size
#   sh scripts/fuzz.sh replay NAME...   runs each target once over
#                                       tests/fuzz/regressions/NAME/ (if any)
#   sh scripts/fuzz.sh cov NAME SRC...  line coverage (clang source-based:
#                                       llvm-profdata + llvm-cov) of the
#                                       production files SRC and the harness
#                                       over the seeds and the scratch corpus
#                                       of NAME: a per-function report, and
#                                       the harness's `case` lines with their
#                                       execution counts (which body types
#                                       were reached)
# FUZZ_CC (default clang), FUZZ_JOBS (make -j, default 2). Exit 1 on any crash.
set -e
FUZZ_CC=${FUZZ_CC:-clang}
FUZZ_S=${FUZZ_S:-600}
FUZZ_JOBS=${FUZZ_JOBS:-2}
B=build-fuzz
SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer"
LINK_SAN="-fsanitize=fuzzer,address,undefined"
LDLIBS="-lsodium -lnng -lmbedtls -lmbedx509 -lmbedcrypto -lprotobuf-c -lcjson -lopenblas -lfftw3 -lpcre2-8 -lutf8proc -lm -lpthread"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

targets() {
	for f in tests/fuzz/*_fuzz.c; do basename "$f" .c; done
}

build() {
	mkdir -p $B
	make --no-print-directory -j"$FUZZ_JOBS" CUDA=0 BUILD=$B CC="$FUZZ_CC" OPT=-O1 \
		SAN="$SAN" $B/libfedlora.a >$B/build.log 2>&1 || { cat $B/build.log >&2; exit 1; }
	mkdir -p $B/fuzz
	for t in $(targets); do
		bin=$B/fuzz/$t
		if [ ! -x "$bin" ] || [ tests/fuzz/$t.c -nt "$bin" ] || [ $B/libfedlora.a -nt "$bin" ] ||
			[ tests/fuzz/fuzz_util.h -nt "$bin" ]; then
			"$FUZZ_CC" -O1 -g -std=c11 -D_GNU_SOURCE -pthread -Wall -Wextra \
				-Wno-unused-parameter $LINK_SAN -I. -I$B/gen \
				tests/fuzz/$t.c $B/libfedlora.a $LDLIBS -o "$bin"
		fi
	done
}

# run_one NAME SECONDS: fuzzes, prints one table row, returns 1 on a crash.
run_one() {
	t=$1 s=$2
	seeds=tests/fuzz/corpus/${t%_fuzz}
	mkdir -p $B/corpus/$t $B/crashes/$t $B/logs
	[ -d "$seeds" ] || seeds=""
	log=$B/logs/$t.log
	rc=0
	$B/fuzz/$t -max_total_time="$s" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -close_fd_mask=2 \
		-artifact_prefix=$B/crashes/$t/ $B/corpus/$t $seeds >"$log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	crashes=$(find $B/crashes/$t -type f -newer "$log.start" 2>/dev/null | wc -l)
	[ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes=1
	corpus=$(find $B/corpus/$t -type f | wc -l)
	printf '%-20s %12s %8s %8s\n' "$t" "${execs:-?}" "$crashes" "$corpus"
	[ "$rc" -eq 0 ]
}

cmd=${1:-run}
[ $# -gt 0 ] && shift
case $cmd in
build) build ;;
run)
	build
	list=${*:-$(targets)}
	printf '%-20s %12s %8s %8s\n' target executions crashes corpus
	fail=0
	for t in $list; do
		mkdir -p $B/logs && touch $B/logs/$t.log.start
		run_one "$t" "$FUZZ_S" || fail=1
	done
	[ $fail -eq 0 ] || echo "fuzz: crash inputs under $B/crashes/ (logs: $B/logs/)" >&2
	exit $fail
	;;
replay)
	fail=0
	for t in "$@"; do
		d=tests/fuzz/regressions/${t%_fuzz}
		[ -d "$d" ] && [ -n "$(ls -A "$d")" ] || continue
		$B/fuzz/$t -runs=1 "$d"/* >$B/logs/$t.replay.log 2>&1 || fail=1
	done
	exit $fail
	;;
cov)
	[ $# -ge 2 ] || { echo "usage: sh scripts/fuzz.sh cov NAME SRC..." >&2; exit 2; }
	build
	t=${1%_fuzz}_fuzz n=${1%_fuzz}
	shift
	COV="-fprofile-instr-generate -fcoverage-mapping"
	mkdir -p $B/cov $B/corpus/$t
	# the SRC objects come before the archive, so its copies are not linked
	"$FUZZ_CC" -O0 -g -std=c11 -D_GNU_SOURCE -pthread -Wall -Wextra -Wno-unused-parameter \
		$LINK_SAN $COV -I. -I$B/gen tests/fuzz/$t.c "$@" $B/libfedlora.a $LDLIBS -o $B/cov/$t
	rm -f $B/cov/$t.profraw
	seeds=tests/fuzz/corpus/$n
	[ -d "$seeds" ] || seeds=""
	LLVM_PROFILE_FILE=$B/cov/$t.profraw $B/cov/$t -runs=0 -close_fd_mask=2 \
		$B/corpus/$t $seeds >$B/cov/$t.log 2>&1
	${FUZZ_PROFDATA:-llvm-profdata} merge -sparse $B/cov/$t.profraw -o $B/cov/$t.profdata
	${FUZZ_COV:-llvm-cov} report -show-functions $B/cov/$t -instr-profile=$B/cov/$t.profdata "$@"
	echo "harness tests/fuzz/$t.c, case lines (execution count | line):"
	${FUZZ_COV:-llvm-cov} show $B/cov/$t -instr-profile=$B/cov/$t.profdata tests/fuzz/$t.c |
		grep -E '^ *[0-9]+\| *[0-9.kMG]+\|[[:space:]]*case '
	;;
*) echo "usage: sh scripts/fuzz.sh build | run [NAME...] | replay NAME... | cov NAME SRC..." >&2; exit 2 ;;
esac
