# tests/stragglers_test.sh — stragglers with real processes on loopback:
# a slow client honours the Task deadline and skips the round, a client whose
# update is still in flight at the deadline gets Reject round_closed, and the
# retry of the round tops the selection up without picking either again
# (both are "gone", coordinator/gone.h).
#
# Five clients, K = 3, quorum 3, round timeout 2 s, seed 1. Client 0 sleeps
# 400 ms in every local step (test-only FEDLORA_SLOW_MS: 20 steps would take
# 8 s), client 1 trains quickly but holds its sealed Submit 3 s
# (FEDLORA_DELAY_SUBMIT_MS). They register first, so they are registry
# indexes 0 and 1; round 1 opens once three clients are registered, and with
# seed 1 the first selection holds indexes 0 and 1 for a pool of 3, 4 or 5.
# Attempt 1 then closes with 1 of 3 reports, and attempt 2 must take the two
# remaining healthy clients.
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
for i in 0 1 2 3 4; do "$FEDLORA" keygen --out "$run/keys/client-$i" >/dev/null 2>&1; done
port=$(free_port)
url="tcp://127.0.0.1:$port"
t0=$(date +%s)
"$FEDLORA" coordinator --listen "$url" --run-dir "$run" --key "$run/keys/coordinator.key" \
	--task linreg --strategy fedit --rounds 2 --clients-per-round 3 --min-clients 3 \
	--round-timeout 2 --seed 1 --enroll-any --linger 10 >"$TMPROOT/coord.log" 2>&1 &
cpid=$!
pids="$cpid"
client() { # INDEX: starts client INDEX in the background, its pid in $last
	"$FEDLORA" client --connect "$url" --key "$run/keys/client-$1.key" --task linreg \
		--client-index "$1" >"$TMPROOT/client-$1.log" 2>&1 &
	last=$!
	pids="$pids $last"
}
FEDLORA_SLOW_MS=400 client 0
slow=$last
wait_grep "1 registered)" "$TMPROOT/coord.log" 10
FEDLORA_DELAY_SUBMIT_MS=3000 client 1
late=$last
wait_grep "2 registered)" "$TMPROOT/coord.log" 10
cl="$slow $late"
for i in 2 3 4; do client $i; cl="$cl $last"; done

wait_pid $cpid 25
check "coordinator finishes the run (status $wst)" [ "$wst" = 0 ]
[ "$wst" = 0 ] || tail -n 12 "$TMPROOT/coord.log" | sed 's/^/  /' >&2
good=0
for p in $cl; do wait_pid "$p" 15 && [ "$wst" = 0 ] && good=$((good + 1)); done
check "all 5 clients exit on their own ($good of 5)" [ $good -eq 5 ]
t1=$(date +%s)
echo "  run took $((t1 - t0)) s" >&2

check "slow client honours the deadline: skips round 1 before 20 steps" \
	grep -q "deadline passed, skipping round 1 ([0-9]* of 20 steps, 2000 ms)" \
	"$TMPROOT/client-0.log"
check "slow client never submitted round 1" \
	sh -c "! grep -q 'round 1/2: ' '$TMPROOT/client-0.log'"
check "late Submit of round 1 rejected as round_closed (client log)" \
	grep -q "round 1/2: .*rejected: round_closed" "$TMPROOT/client-1.log"
check "round 1 retried once; the top-up left the 2 gone clients out" \
	grep -q "round 1 attempt 2: 2 gone client(s) left out" "$TMPROOT/coord.log"
check "metrics: round 1 committed on attempt 2 with 3 reports, gone_excluded 2; round_closed counted" \
	python3 - "$run/metrics.jsonl" <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for m in L:
    print("  round %d: attempts %d reported %d gone_excluded %d rejected %s" % (
        m["round"], m["attempts"], m["reported"], m["gone_excluded"], m["rejected"]),
        file=sys.stderr)
r1 = L[0]
closed = sum(m["rejected"].get("round_closed", 0) for m in L)
ok = ([m["round"] for m in L] == [1, 2] and r1["attempts"] == 2 and r1["reported"] == 3
      and r1["gone_excluded"] == 2 and closed >= 1)
sys.exit(0 if ok else 1)
PY
check "coordinator logs the rejection with reason round_closed" \
	grep -q "rejected (round_closed) from .*submit: round 1 closed" "$TMPROOT/coord.log"
exit $t_failed
