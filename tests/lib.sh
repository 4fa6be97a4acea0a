# tests/lib.sh — sourced by the shell integration tests (tests/*_test.sh).
# Gives them the same output convention as tests/test.h: one line per case,
# "ok - NAME", "not ok - NAME" or "skip - NAME: REASON".
# $FEDLORA is the binary under test (build/fedlora by default).
FEDLORA=${FEDLORA:-build/fedlora}
FEDLORA=$(cd "$(dirname "$FEDLORA")" && pwd)/$(basename "$FEDLORA")
TMPROOT=$(mktemp -d "${TMPDIR:-/tmp}/fedlora-test.XXXXXX")
t_failed=0
cleanup_tmp() { rm -rf "$TMPROOT"; }
trap cleanup_tmp EXIT
ok() { echo "ok - $1"; }
notok() { echo "not ok - $1"; t_failed=1; }
skip() { echo "skip - $1: $2"; }
# check NAME COMMAND... : runs COMMAND, reports NAME ok if it exits 0.
check() {
	name=$1; shift
	if "$@"; then ok "$name"; else notok "$name"; fi
}
# free_port: prints a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
