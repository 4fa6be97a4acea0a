# tests/gone_restart_test.sh — the set of gone clients survives a kill -9 of
# the coordinator (RUN/gone.json, coordinator/gone.h), and a corrupt
# gone.json is reported and ignored, never fatal.
#
# Four clients, K = 4 (all), quorum 3, round timeout 2 s. Client 0 sleeps
# 400 ms in every local step (test-only FEDLORA_SLOW_MS; 20 steps take 8 s),
# so it skips round 1 by its deadline and is marked gone (missed round 1)
# when attempt 1 closes. The coordinator kills itself with SIGKILL right
# before the commit point of round 1 (FEDLORA_CRASH_AT=before_state_save:1),
# so the restarted one runs round 1 again. Without the persisted set it would
# select all four again and wait out the 2 s timeout for client 0; with it,
# round 1 selects the three healthy clients (gone_excluded 1). In round 2
# client 0 is selectable again once it sent a request to the restarted
# coordinator (it reconnects with backoff, so it may still be left out of
# round 2; nobody else is).
. tests/lib.sh

pids=""
stop_all() { stop_pids $pids; }
trap 'stop_all; [ -n "$KEEP" ] || cleanup_tmp' EXIT

# wait_grep PATTERN FILE SECONDS
wait_grep() {
	i=0
	while [ $i -lt $(($3 * 20)) ]; do
		grep -q "$1" "$2" 2>/dev/null && return 0
		sleep 0.05; i=$((i + 1))
	done
	return 1
}

run="$TMPROOT/run"
mkdir -p "$run/keys"
"$FEDLORA" keygen --out "$run/keys/coordinator" >/dev/null 2>&1
for i in 0 1 2 3; do "$FEDLORA" keygen --out "$run/keys/client-$i" >/dev/null 2>&1; done
port=$(free_port)
url="tcp://127.0.0.1:$port"
coordinator() { # LOG [CRASH_AT] [LINGER]: starts the coordinator, its pid in $cpid
	FEDLORA_CRASH_AT="${2:-}" "$FEDLORA" coordinator --listen "$url" --run-dir "$run" \
		--key "$run/keys/coordinator.key" --task linreg --strategy fedit --rounds 2 \
		--clients-per-round 4 --min-clients 3 --round-timeout 2 --seed 1 --enroll-any \
		--linger "${3:-10}" >"$1" 2>&1 &
	cpid=$!
	pids="$pids $cpid"
}
client() { # INDEX: starts client INDEX in the background, its pid in $last
	"$FEDLORA" client --connect "$url" --key "$run/keys/client-$1.key" --task linreg \
		--client-index "$1" >"$TMPROOT/client-$1.log" 2>&1 &
	last=$!
	pids="$pids $last"
}

coordinator "$TMPROOT/coord1.log" before_state_save:1
FEDLORA_SLOW_MS=400 client 0
cl=$last
wait_grep "1 registered)" "$TMPROOT/coord1.log" 10
for i in 1 2 3; do client $i; cl="$cl $last"; done

wait_pid $cpid 20
check "coordinator killed itself before the commit of round 1 (status $wst)" [ "$wst" = 137 ]
check "gone.json names client 0 as gone (missed round 1), nobody else" \
	python3 - "$run/gone.json" "$run/keys/client-0.pub" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
key = open(sys.argv[2]).read().strip()
print("  gone.json:", json.dumps(g["clients"]), file=sys.stderr)
c = g["clients"]
sys.exit(0 if g["version"] == 1 and len(c) == 1 and c[0]["key"] == key
         and c[0]["kind"] == "missed" and c[0]["round"] == 1 else 1)
PY
check "round 1 did not commit before the kill" sh -c "! grep -q '\"round\": *1' '$run/state.json'"

coordinator "$TMPROOT/coord2.log"
wait_pid $cpid 30
check "restarted coordinator finishes the run (status $wst)" [ "$wst" = 0 ]
[ "$wst" = 0 ] || tail -n 12 "$TMPROOT/coord2.log" | sed 's/^/  /' >&2
good=0
for p in $cl; do wait_pid "$p" 20 && [ "$wst" = 0 ] && good=$((good + 1)); done
check "all 4 clients exit on their own ($good of 4)" [ $good -eq 4 ]
check "restart restores the gone client from gone.json" \
	grep -q "1 gone client(s) restored from gone.json" "$TMPROOT/coord2.log"
check "re-run of round 1 leaves the gone client out" \
	grep -q "round 1 attempt 1: 1 gone client(s) left out" "$TMPROOT/coord2.log"
check "metrics: round 1 selected 3 (gone_excluded 1) in one attempt; round 2 leaves out at most client 0" \
	python3 - "$run/metrics.jsonl" <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for m in L:
    print("  round %d: attempts %d selected %d reported %d gone_excluded %d" % (
        m["round"], m["attempts"], m["selected"], m["reported"], m["gone_excluded"]),
        file=sys.stderr)
ok = ([m["round"] for m in L] == [1, 2] and L[0]["selected"] == 3
      and L[0]["gone_excluded"] == 1 and L[0]["attempts"] == 1 and L[0]["reported"] == 3
      and L[1]["selected"] + L[1]["gone_excluded"] == 4)
sys.exit(0 if ok else 1)
PY

# a truncated gone.json: reported with its reason, the coordinator goes on
head -c 20 "$run/gone.json" >"$TMPROOT/g" && cp "$TMPROOT/g" "$run/gone.json"
coordinator "$TMPROOT/coord3.log" "" 1
wait_pid $cpid 20
check "truncated gone.json does not stop the coordinator (status $wst)" [ "$wst" = 0 ]
check "truncated gone.json is reported with its reason" \
	grep -q "ignoring .*gone.json (.*truncated or not JSON)); starting with no client known gone" \
	"$TMPROOT/coord3.log"
exit $t_failed
