#!/bin/sh
# Runs every CPU test: the C test binaries in $TEST_BIN_DIR and the shell
# integration tests tests/*_test.sh, and ends with the summary line
# "N passed, M failed, K skipped". A binary or script that exits non-zero
# without reporting a failed case counts as one failure (a crash, say).
# TESTS="name ..." limits the run to those test programs. Each program is
# stopped after TEST_TIMEOUT seconds (default 600), which counts as a failure.
TEST_BIN_DIR=${TEST_BIN_DIR:-build/tests}
TEST_TIMEOUT=${TEST_TIMEOUT:-600}
export FEDLORA=${FEDLORA:-build/fedlora}
log=$(mktemp)
pass=0 fail=0 skipn=0
run_one() {
	name=$1; shift
	start=$(date +%s)
	timeout -k 10 "$TEST_TIMEOUT" "$@" >"$log" 2>&1
	rc=$?
	[ "$rc" -eq 124 ] && echo "not ok - $name: killed after $TEST_TIMEOUT s (hung?)" >>"$log"
	cat "$log"
	p=$(grep -c '^ok - ' "$log"); f=$(grep -c '^not ok - ' "$log"); s=$(grep -c '^skip - ' "$log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - $name exited with status $rc"
		f=$((f + 1))
	fi
	pass=$((pass + p)); fail=$((fail + f)); skipn=$((skipn + s))
	echo "# $name: $p passed, $f failed, $s skipped ($(( $(date +%s) - start )) s)"
}
selected() { [ -z "$TESTS" ] && return 0; for sel_ in $TESTS; do [ "$sel_" = "$1" ] && return 0; done; return 1; }
for t in "$TEST_BIN_DIR"/*_test; do
	[ -x "$t" ] || continue
	n=$(basename "$t"); selected "$n" || continue
	run_one "$n" "$t"
done
for t in tests/*_test.sh; do
	[ -f "$t" ] || continue
	n=$(basename "$t" .sh); selected "$n" || continue
	run_one "$n" sh "$t"
done
rm -f "$log"
echo "$pass passed, $fail failed, $skipn skipped"
[ "$fail" -eq 0 ]
