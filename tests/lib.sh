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
# TLS fixtures (tests/tls_test.sh, tests/tls_refuse_test.sh).
# tls_fixtures DIR N: a CA with a coordinator and N client certificates in
# DIR/pki (scripts/certs.sh), another CA with one client in DIR/other,
# signing keys of the coordinator, client-0 .. client-(N-1) and an intruder in
# DIR/keys, and every client's and the intruder's public key in
# DIR/allow.txt. Non-zero on failure.
tls_fixtures() {
	sh scripts/certs.sh -o "$1/pki" -c "$2" >/dev/null &&
		sh scripts/certs.sh -o "$1/other" -c 1 >/dev/null && mkdir -p "$1/keys" || return 1
	: >"$1/allow.txt"
	i_=0
	for n_ in coordinator intruder; do
		"$FEDLORA" keygen --out "$1/keys/$n_" >/dev/null 2>&1 || return 1
	done
	cat "$1/keys/intruder.pub" >>"$1/allow.txt"
	while [ $i_ -lt "$2" ]; do
		"$FEDLORA" keygen --out "$1/keys/client-$i_" >/dev/null 2>&1 || return 1
		cat "$1/keys/client-$i_.pub" >>"$1/allow.txt"
		i_=$((i_ + 1))
	done
}
# tls_coordinator DIR URL ARGS...: starts a linreg/fedit coordinator on URL
# with DIR's fixtures, mutual TLS and ARGS, output in DIR/coord.out, its pid in
# $cpid; returns once it listens (non-zero, after a line on stderr, if it did
# not within 60 s).
tls_coordinator() {
	d_=$1 url_=$2; shift 2
	"$FEDLORA" coordinator --listen "$url_" --run-dir "$d_/run" \
		--key "$d_/keys/coordinator.key" --allow "$d_/allow.txt" --task linreg --strategy fedit \
		--tls-cert "$d_/pki/coordinator.pem" --tls-key "$d_/pki/coordinator.key" \
		--tls-ca "$d_/pki/ca.pem" "$@" >"$d_/coord.out" 2>&1 &
	cpid=$!
	wait_for "the coordinator to listen on $url_ ($d_/coord.out)" 60 \
		grep -q "bound port ${url_##*:}" "$d_/coord.out"
}
# tls_client DIR URL I ARGS...: runs `fedlora client` number I on URL with
# certificate and signing key client-I of DIR's fixtures and ARGS.
tls_client() {
	d_=$1 url_=$2 i_=$3; shift 3
	"$FEDLORA" client --connect "$url_" --key "$d_/keys/client-$i_.key" --task linreg \
		--client-index "$i_" --tls-cert "$d_/pki/client-$i_.pem" \
		--tls-key "$d_/pki/client-$i_.key" --tls-ca "$d_/pki/ca.pem" "$@"
}
# tls_start NAME N ARGS...: the common start of the TLS tests. Skips the test
# (exit 0) where openssl is missing, makes the fixtures of N clients in
# $TMPROOT and starts a coordinator on a free loopback port with ARGS (exit 1
# after a "not ok" line when either fails). Sets d, port, url, cpid and pids
# (the coordinator), and an EXIT trap that stops $pids.
tls_start() {
	name_=$1 n_=$2; shift 2
	if ! command -v openssl >/dev/null 2>&1; then
		skip "$name_" "openssl not installed (needed to make test certificates)"
		exit 0
	fi
	d=$TMPROOT
	tls_fixtures "$d" "$n_" || { notok "$name_: test certificates and keys"; exit 1; }
	port=$(free_port)
	url="tls+tcp://127.0.0.1:$port"
	pids=""
	trap 'stop_pids $pids; cleanup_tmp' EXIT
	if ! tls_coordinator "$d" "$url" "$@"; then
		notok "$name_: coordinator listens"
		sed 's/^/  /' "$d/coord.out" >&2
		stop_pids "$cpid"
		exit 1
	fi
	pids=$cpid
}
# run_done NAME ROUNDS SECS LOGS...: waits up to SECS for the coordinator
# $cpid to exit; "ok - NAME" if it exited 0 with ROUNDS lines in
# $d/run/metrics.jsonl, else "not ok" and the tails of LOGS.
run_done() {
	name_=$1 rounds_=$2; shift 2
	wait_pid "$cpid" "$1" || stop_pids "$cpid"
	shift
	if [ "$wst" = 0 ] && [ "$(grep -c '"round"' "$d/run/metrics.jsonl" 2>/dev/null)" = "$rounds_" ]; then
		ok "$name_"
	else
		notok "$name_ (coordinator rc $wst)"
		tail -n 15 "$@" 2>/dev/null | sed 's/^/  /' >&2
	fi
}
