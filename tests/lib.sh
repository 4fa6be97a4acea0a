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
# stop_pids PID...: SIGTERM, then SIGKILL to whatever still runs after 3 s,
# then reaps them, so a test's cleanup never waits on a stuck process.
stop_pids() {
	for p_ in "$@"; do kill "$p_" 2>/dev/null; done
	for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
		alive_=""
		for p_ in "$@"; do kill -0 "$p_" 2>/dev/null && alive_=1; done
		[ -z "$alive_" ] && break
		sleep 0.2
	done
	for p_ in "$@"; do kill -9 "$p_" 2>/dev/null; done
	wait 2>/dev/null
}
# wait_pid PID SECONDS: until PID exits; its status in $wst
wait_pid() {
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt $(($2 * 10)) ]; do sleep 0.1; i=$((i + 1)); done
	if kill -0 "$1" 2>/dev/null; then wst=timeout; return 1; fi
	wait "$1"; wst=$?
	return 0
}
# all_refused NAME ARGS...: every ARGS string (split on blanks) given to
# `fedlora eps` must exit 2 with a message on stderr and nothing on stdout;
# one ok/not ok line NAME for the lot.
all_refused() {
	name_=$1; shift
	bad_ok=1
	for args in "$@"; do
		# shellcheck disable=SC2086
		"$FEDLORA" eps $args >"$TMPROOT/o" 2>"$TMPROOT/e"
		rc=$?
		if [ "$rc" -ne 2 ] || ! [ -s "$TMPROOT/e" ] || [ -s "$TMPROOT/o" ]; then
			echo "  eps $args: rc $rc (want 2 with a message)" >&2
			bad_ok=0
		fi
	done
	if [ $bad_ok -eq 1 ]; then ok "$name_"; else notok "$name_"; fi
}
# maxdiff A.safetensors B.safetensors: largest |a - b| over every tensor.
maxdiff() {
	python3 - "$1" "$2" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); d = b[8 + n:]
    return {k: struct.unpack("<%df" % ((v["data_offsets"][1] - v["data_offsets"][0]) // 4),
                             d[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in h.items() if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert sorted(a) == sorted(b), "tensor names differ"
print("%.3g" % max(max(abs(x - y) for x, y in zip(a[k], b[k])) for k in a))
PY
}
