#!/bin/sh
# bench/secagg_sim.sh — secure aggregation at the protocol level: the same
# `fedlora sim` linreg run (fedit, CLIENTS clients, ROUNDS rounds) in
# plaintext and with --secure-agg, printed as the median round wall time of
# metrics.jsonl ("seconds": round open to commit, local training included)
# and the median bytes up/down per round (all clients together).
#   sh bench/secagg_sim.sh [CLIENTS] [ROUNDS] [LINREG_DIM]   defaults: 10 5 64
# Needs build/fedlora (make CUDA=0). Runs under nice; a few seconds at the
# defaults on 2 cores.
set -eu
cd "$(dirname "$0")/.."
N=${1:-10}
R=${2:-5}
DIM=${3:-64}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/secagg_sim.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "fedlora sim --task linreg --strategy fedit --clients $N --rounds $R --linreg-dim $DIM (4 layers, r 4)"
printf '%-10s %14s %16s %16s\n' mode "round s (med)" "up B/round" "down B/round"
for mode in plaintext secure; do
	extra=""
	[ $mode = secure ] && extra=--secure-agg
	nice build/fedlora sim --clients "$N" --rounds "$R" --strategy fedit --task linreg \
		--linreg-dim "$DIM" --run-dir "$TMP/$mode" --round-timeout 120 --timeout 600 \
		--linger 1 --quiet $extra >"$TMP/$mode.out" 2>&1 ||
		{ echo "secagg_sim: $mode run failed" >&2; tail -5 "$TMP/$mode.out" >&2; exit 1; }
	python3 - "$TMP/$mode/metrics.jsonl" $mode <<'PY'
import json, statistics as st, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda k: st.median(m[k] for m in L)
print("%-10s %14.4f %16.0f %16.0f" % (sys.argv[2], med("seconds"), med("bytes_up"), med("bytes_down")))
PY
done
