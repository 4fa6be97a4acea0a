# tests/quorum_test.sh — a round whose quorum is out of reach neither spins
# nor hangs on clients that are alive, with real processes on loopback.
# Three coordinators, each with 3 clients, K = 3 and quorum 3, so every
# client is needed:
#  1. stall: client 0 is stopped (SIGSTOP) before round 1 and misses its
#     deadline. The coordinator waits (no attempt) instead of retrying every
#     0.2 s with an empty selection; once client 0 runs again (SIGCONT) and
#     sends a request, it is selected again although it missed this round
#     ("quorum 3 needs 1 client(s) that missed its deadline"), and the run
#     completes with round 1 in 2 attempts. A stall, not FEDLORA_SLOW_MS:
#     a client slow at every step would miss every attempt, as in 2.
#  2. always slow: client 0 sleeps 400 ms a local step (FEDLORA_SLOW_MS;
#     20 steps take 8 s, the round timeout is 1.5 s), so it misses every
#     attempt it is selected again for. --max-attempts 2 stops the run after
#     round 1's second attempt: exit status 1, an error naming the round,
#     the attempts, the reports and the quorum, a metrics.jsonl line
#     {"round": 1, "aborted": true, "reason": "quorum", ...} and state.json
#     done with reason "quorum".
#  3. killed: client 2 (50 ms a step, so it is still training) is killed -9
#     during round 2. That attempt times out below the quorum; then the
#     coordinator waits for clients (its connection dropped: gone) for as
#     long as it takes, opening no attempt, so --max-attempts 2 is not used
#     up by waiting. A new process with client 2's key comes back with a
#     Hello, and round 2 commits on its second attempt.
# The code before this retried with empty selections five times a second
# (1,315 attempts of one round were seen) and never selected a client that
# missed the round's deadline again, so 1 and 3 never finished.
#
# Waiting on conditions uses wait_for with generous limits; the two fixed
# sleeps (1.5 s and 2 s) measure that nothing happens: a spinning
# coordinator would open 7 or 10 attempts in them.
. tests/lib.sh

pids=""
stop_all() { stop_pids $pids; }
trap 'stop_all; [ -n "$KEEP" ] || cleanup_tmp' EXIT

# setup NAME: a run directory with keys for the coordinator and 3 clients
setup() {
	run="$TMPROOT/$1"
	mkdir -p "$run/keys"
	"$FEDLORA" keygen --out "$run/keys/coordinator" >/dev/null 2>&1
	for i in 0 1 2; do "$FEDLORA" keygen --out "$run/keys/client-$i" >/dev/null 2>&1; done
	url="tcp://127.0.0.1:$(free_port)"
	log="$run/coordinator.log"
}
coordinator() { # ARGS...: starts the coordinator of $run (debug log), its pid in $cpid
	FEDLORA_LOG=debug "$FEDLORA" coordinator --listen "$url" --run-dir "$run" \
		--key "$run/keys/coordinator.key" --task linreg --strategy fedit \
		--clients-per-round 3 --min-clients 3 --seed 1 --enroll-any --linger 2 "$@" \
		>"$log" 2>&1 &
	cpid=$!
	pids="$pids $cpid"
}
client() { # INDEX [LOG]: starts client INDEX of $run, its pid in $last
	"$FEDLORA" client --connect "$url" --key "$run/keys/client-$1.key" --task linreg \
		--client-index "$1" >"$run/${2:-client-$1}.log" 2>&1 &
	last=$!
	pids="$pids $last"
}
# exited SECONDS PID...: $good = how many of the PIDs exit with status 0
# within SECONDS in all
exited() {
	end_=$(($(date +%s) + $1))
	shift
	good=0
	for p_ in "$@"; do
		left_=$((end_ - $(date +%s)))
		[ $left_ -ge 1 ] || left_=1
		wait_pid "$p_" $left_ && [ "$wst" = 0 ] && good=$((good + 1))
	done
}
opened() { grep -c "clients selected" "$log"; } # attempts opened so far
# idles NAME ROUND SECONDS N: round ROUND comes to wait for clients (client 0
# or 2 gone, the 2 others' updates kept) after N attempts in all, and opens
# none in the next SECONDS
idles() {
	if wait_for "round $2 to wait for clients" 15 grep -q \
		"round $2: waiting for clients: 0 selectable, 1 gone (left out until back), quorum 3, 2 update(s) kept" \
		"$log"; then
		ok "$1: round $2 waits for clients once a client missed its deadline"
	else
		notok "$1: round $2 waits for clients once a client missed its deadline"
	fi
	n1_=$(opened)
	sleep "$3"
	n2_=$(opened)
	check "$1: no attempt opens while the quorum is out of reach ($n1_, then $n2_ attempts in all)" \
		[ "$n1_ $n2_" = "$4 $4" ]
}
registered() { grep -q "$1 registered)" "$log"; }
# metrics CHECK: python expression over L (the metrics lines) for `check`
metrics() {
	python3 - "$run/metrics.jsonl" "$1" <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for m in L:
    print("  metrics: %s" % {k: m.get(k) for k in ("round", "aborted", "reason", "attempts",
          "selected", "reported", "min_clients", "gone_excluded")}, file=sys.stderr)
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
}

# ---- 1. a stalled client misses round 1, is selected again once alive ----
setup stall
coordinator --rounds 2 --round-timeout 2 --max-attempts 3
client 0
c0=$last
wait_for "client 0 to register" 10 registered 1
kill -STOP $c0
client 1
cl="$c0 $last"
client 2
cl="$cl $last"
idles stall 1 1.5 1
kill -CONT $c0
wait_pid $cpid 20
check "stall: coordinator finishes the run (status $wst)" [ "$wst" = 0 ]
[ "$wst" = 0 ] || tail -n 8 "$log" | sed 's/^/  /' >&2
check "stall: client 0 is selected again once it sent a request" grep -q \
	"round 1: quorum 3 needs 1 client(s) that missed its deadline; selecting them again" "$log"
check "stall: round 1 committed with 3 reports in 2 attempts, round 2 in 1" metrics \
	'[m["round"] for m in L] == [1, 2] and L[0]["attempts"] == 2 and L[0]["reported"] == 3 and L[1]["attempts"] == 1'
exited 15 $cl
check "stall: all 3 clients exit on their own ($good of 3)" [ $good -eq 3 ]
stop_pids $cpid $cl # what a failure above left running

# ---- 2. a client too slow for every attempt: --max-attempts stops the run ----
setup slow
coordinator --rounds 2 --round-timeout 1.5 --max-attempts 2
FEDLORA_SLOW_MS=400 client 0
cl=$last
wait_for "client 0 to register" 10 registered 1
client 1
cl="$cl $last"
client 2
cl="$cl $last"
wait_pid $cpid 20
check "slow: coordinator stops with status 1 after 2 attempts (status $wst)" [ "$wst" = 1 ]
check "slow: the error names the round, attempts, reports and quorum" grep -q \
	"round 1: no quorum in 2 attempt(s) (--max-attempts 2; last attempt: 2 of 3 selected reported, quorum 3); run stopped" \
	"$log"
check "slow: the slow client was selected again for attempt 2" grep -q \
	"round 1: quorum 3 needs 1 client(s) that missed its deadline; selecting them again" "$log"
check "slow: metrics.jsonl ends with the abort of round 1" metrics \
	'len(L) == 1 and L[0]["round"] == 1 and L[0]["aborted"] is True and L[0]["reason"] == "quorum" and L[0]["attempts"] == 2 and L[0]["reported"] == 2 and L[0]["min_clients"] == 3'
check "slow: state.json says done, reason quorum" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
sys.exit(0 if s["done"] and s["reason"] == "quorum" and s["round"] == 0 else 1)' "$run/state.json"
stop_pids $cpid $cl

# ---- 3. a killed client: the round waits, not counted as attempts ----
setup killed
coordinator --rounds 3 --round-timeout 3 --max-attempts 2
client 0
cl=$last
client 1
cl="$cl $last"
FEDLORA_SLOW_MS=50 client 2 # 1 s a round: still training when killed
victim=$last
if wait_for "round 2 to select all 3 clients" 20 grep -q \
	"round 2 (attempt 1): 3 of 3 clients selected" "$log"; then
	kill -9 $victim
	wait $victim 2>/dev/null
fi
idles killed 2 2 2
check "killed: waiting is not counted against --max-attempts 2 (coordinator runs)" \
	kill -0 $cpid
client 2 client-2b # the same key in a new process: a Hello brings it back
cl="$cl $last"
wait_pid $cpid 20
check "killed: coordinator finishes once the client is back (status $wst)" [ "$wst" = 0 ]
[ "$wst" = 0 ] || tail -n 8 "$log" | sed 's/^/  /' >&2
check "killed: round 2 committed on attempt 2 with 3 reports" metrics \
	'[m["round"] for m in L] == [1, 2, 3] and L[1]["attempts"] == 2 and L[1]["reported"] == 3'
exited 15 $cl
check "killed: the 3 live clients exit on their own ($good of 3)" [ $good -eq 3 ]
stop_pids $cpid $cl $victim
exit $t_failed
