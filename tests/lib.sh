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
# wait_pid PID SECONDS: until PID exits; its status in $wst ("timeout", and
# a line on stderr naming the process, when it still runs after SECONDS)
wait_pid() {
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt $(($2 * 10)) ]; do sleep 0.1; i=$((i + 1)); done
	if kill -0 "$1" 2>/dev/null; then
		echo "  gave up after $2 s waiting for pid $1 to exit: $(ps -o args= -p "$1" | cut -c1-160)" >&2
		wst=timeout
		return 1
	fi
	wait "$1"; wst=$?
	return 0
}
# wait_for WHAT SECONDS COMMAND...: runs COMMAND every 0.1 s until it exits 0
# (returns 0 at once) or SECONDS have passed (returns 1, and says on stderr
# that it gave up waiting for WHAT). For conditions a test waits on: a log
# line, a file, a count of metrics lines. The limit is meant to be generous:
# an idle machine never comes near it, a loaded one gets its time.
wait_for() {
	what_=$1 secs_=$2; shift 2
	end_=$(($(date +%s) + secs_))
	while ! "$@"; do
		if [ "$(date +%s)" -ge "$end_" ]; then
			echo "  gave up after $secs_ s waiting for $what_" >&2
			return 1
		fi
		sleep 0.1
	done
	return 0
}
# has_lines FILE N: FILE exists and has at least N lines (for wait_for)
has_lines() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }
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
