#!/bin/sh
# bench/secagg_load.sh — secure aggregation's round overhead against
# plaintext at 10, 100 and 500 clients (issue 10), with build/bench/load:
# K real client sessions (client/session.c, one thread each, own keys, signed
# messages over loopback TCP) against a real `fedlora coordinator`, every
# client selected every round (--per-round K, quorum K), fedit on linreg.
# Rows: linreg 1 layer x 4 (the update is tiny, so the protocol's own cost
# shows) at K = 10, 100, 500, plus 4 layers x 256 (8,192 LoRA values per
# update) at K = 500; each plaintext, then --secure-agg.
#
#   sh bench/secagg_load.sh [ROUNDS]      default 4; medians over rounds 2..ROUNDS
#
# Columns (medians over rounds 2..ROUNDS; round 1 includes start-up):
#   wall s      commit to commit of consecutive rounds (metrics.jsonl polled
#               every 10 ms): one round's wall time, local training included
#   coord CPU s the coordinator process's utime+stime between those commits
#   client CPU ms  per client and round: the session thread's CPU time
#               (CLOCK_THREAD_CPUTIME_ID) between its round events
#   up B, down B   per client and round: envelope bytes the session sent and
#               received (requests, replies, long polls; SP/TCP framing not
#               counted)
# The coordinator gets --contexts 2K+64 (so every client's long poll can be
# held) and --sa-phase-timeout 60 (2 shared cores must not turn slow clients
# into dropouts). Needs `make CUDA=0 all bench` (build/ or BUILD=...). The
# table goes to stdout and to bench/results/secagg-load.txt; the JSON of each
# run to bench/results/secagg-load/.
set -eu
cd "$(dirname "$0")/.."
R=${1:-4}
B=${BUILD:-build}
LOAD=$B/bench/load
[ -x "$LOAD" ] && [ -x "$B/fedlora" ] || { echo "secagg_load: build $LOAD and $B/fedlora first (make CUDA=0 BUILD=$B all bench)" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/secagg_load.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
OUT=bench/results/secagg-load
mkdir -p "$OUT"
TXT=bench/results/secagg-load.txt
run() { # K LAYERS DIM MODE
	k=$1 l=$2 d=$3 mode=$4
	extra=""
	[ "$mode" = secure ] && extra=--secure-agg
	mkdir -p "$TMP/k$k"
	json="$OUT/k$k-${l}x$d-$mode.json"
	# shellcheck disable=SC2086
	if ! nice "$LOAD" --clients "$k" --per-round "$k" --rounds "$R" --contexts $((2 * k + 64)) \
		--sa-phase-timeout 60 --linreg-layers "$l" --linreg-dim "$d" --dir "$TMP/k$k" \
		--fedlora "$B/fedlora" --json "$json" $extra >"$TMP/out" 2>&1; then
		echo "secagg_load: K=$k ${l}x$d $mode failed" >&2
		tail -20 "$TMP/out" >&2
		exit 1
	fi
	echo "$json" >>"$TMP/list"
}
for row in "10 1 4" "100 1 4" "500 1 4" "500 4 256"; do
	# shellcheck disable=SC2086
	set -- $row
	run "$1" "$2" "$3" plain
	run "$1" "$2" "$3" secure
done
{
	echo "build/bench/load: K clients, all selected each round, fedit linreg, $R rounds; medians over rounds 2..$R"
	echo "machine: $(nproc) cores, $(uname -m); $(date -u +%Y-%m-%d)"
	python3 - "$TMP/list" <<'PY'
import json, statistics as st, sys
rows = [json.load(open(p.strip())) for p in open(sys.argv[1]) if p.strip()]
print("%5s %7s %7s %9s %11s %14s %11s %12s" % ("K", "update", "mode", "wall s", "coord CPU s",
      "client CPU ms", "up B/client", "down B/client"))
base = {}
for j in rows:
    rs = [r for r in j["round"] if r["round"] >= 2] or j["round"]
    wall = st.median(r["wall_s"] for r in rs)
    cpu = st.median(r["cpu_s"] for r in rs)
    c = j["client"]
    upd = "%dx%d" % (j["linreg_layers"], j["linreg_dim"])
    mode = "secure" if j["secure_agg"] else "plain"
    print("%5d %7s %7s %9.3f %11.3f %14.2f %11.0f %12.0f" % (j["per_round"], upd, mode, wall, cpu,
          c["cpu_ms_p50"], c["bytes_up_p50"], c["bytes_down_p50"]))
    if not j["ok"] or c["client_rounds"] < j["per_round"] * (len(rs)):
        print("      ^ run not complete: ok=%s, %d accepted client-rounds" % (j["ok"], c["client_rounds"]))
PY
} | tee "$TXT"
