#!/bin/sh
# deps_test: plain `make` on a machine without the build dependencies stops
# with one line naming `make deps` (here: a PATH without protoc-c and an
# empty build folder), and the dependency check passes where they are there.
. tests/lib.sh
bin="$TMPROOT/bin"
mkdir -p "$bin"
for c in sh cc gcc cat printf make mkdir; do
	p=$(command -v "$c") && ln -s "$p" "$bin/$c"
done
out=$(PATH="$bin" make --no-print-directory BUILD="$TMPROOT/build" CUDA=0 2>&1)
rc=$?
check "make without protoc-c fails" [ "$rc" -ne 0 ]
check "one line of output" [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]
if printf '%s' "$out" | grep -q 'missing build dependencies: protoc-c.*make deps'; then
	ok "the line names protoc-c and make deps"
else
	notok "the line names protoc-c and make deps (got: $out)"
fi
check "no compiler ran" [ ! -d "$TMPROOT/build/obj" ]
if command -v protoc-c >/dev/null 2>&1; then
	check "check-deps passes with the deps installed" sh scripts/check-deps.sh
else
	skip "check-deps passes with the deps installed" "protoc-c not installed here"
fi
exit $t_failed
