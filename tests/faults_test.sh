# tests/faults_test.sh — faults during a run, with real processes on loopback:
#  1. kill -9 of the coordinator after round 2 is committed, restart on the
#     same run directory: the clients reconnect on their own, the run finishes,
#     and no round is committed twice (metrics.jsonl: rounds 1..R, once each);
#  2. a client killed mid-round does not stop the round: the quorum
#     (--min-clients 2 of 3) commits it at the round timeout and the
#     remaining clients finish the run;
#  3. a client that stops and starts again under sample-level DP keeps its
#     privacy history (its state file): the epsilon it reports keeps growing
#     instead of starting over.
#
# Timing. What must be slow is slowed by sleeping, not by computing: the
# test-only FEDLORA_SLOW_MS sleeps in every local step, so the time a round
# takes barely moves when the machine is loaded, while the training itself
# (the default linreg task) stays a few milliseconds of CPU. In 1 every round
# takes 20 x 20 ms, so the kill after round 2 lands with seconds of rounds
# left. In 2 only the victim sleeps (20 x 50 ms a round): it is killed right
# after the coordinator logged that round 2 selected it, so it is surely
# still training; the two others report in milliseconds, far inside the 6 s
# round timeout that is under test, and the victim's 1 s of round 1 is too.
# Round timeouts that are not under test are 120 s (a round closes as soon
# as everyone selected reported, so this costs nothing), and every wait
# polls for its condition with a generous limit.
. tests/lib.sh

pids=""
stop_all() { for p in $pids; do kill -9 "$p" 2>/dev/null; done; }
trap 'stop_all; cleanup_tmp' EXIT

STEPS="--local-steps 20"
metrics_once() { # FILE ROUNDS: rounds 1..ROUNDS, each once, in order
	python3 - "$1" "$2" <<'PY'
import json, sys
r = [json.loads(l)["round"] for l in open(sys.argv[1]) if l.strip()]
print("  rounds in metrics.jsonl: %s" % r, file=sys.stderr)
sys.exit(0 if r == list(range(1, int(sys.argv[2]) + 1)) else 1)
PY
}

# ---- 1. coordinator kill -9 and restart ----
run="$TMPROOT/crash"
mkdir -p "$run/keys"
"$FEDLORA" keygen --out "$run/keys/coordinator" >/dev/null 2>&1
port=$(free_port)
url="tcp://127.0.0.1:$port"
COORD="$FEDLORA coordinator --listen $url --run-dir $run --key $run/keys/coordinator.key
	--task linreg --strategy fedit --rounds 6 --clients-per-round 3 --min-clients 3
	--round-timeout 120 --enroll-any --linger 30 $STEPS"
$COORD >"$TMPROOT/coord1.log" 2>&1 &
cpid=$!
pids="$cpid"
cl=""
for i in 0 1 2; do
	"$FEDLORA" keygen --out "$run/keys/client-$i" >/dev/null 2>&1
	FEDLORA_SLOW_MS=20 "$FEDLORA" client --connect "$url" --key "$run/keys/client-$i.key" \
		--task linreg --client-index $i >"$run/client-$i.log" 2>&1 &
	cl="$cl $!"
done
pids="$pids $cl"
if wait_for "round 2 of the first coordinator (crash/metrics.jsonl)" 120 \
	has_lines "$run/metrics.jsonl" 2; then
	kill -9 $cpid
	wait $cpid 2>/dev/null
	before=$(wc -l <"$run/metrics.jsonl")
	check "crash: coordinator killed -9 after round 2, before the end ($before of 6 rounds)" \
		[ "$before" -lt 6 ]
else
	notok "crash: round 2 committed within 120 s"
	tail -n 5 "$TMPROOT/coord1.log" | sed 's/^/  /' >&2
	kill -9 $cpid 2>/dev/null
	wait $cpid 2>/dev/null
fi
$COORD >"$TMPROOT/coord2.log" 2>&1 &
cpid=$!
pids="$pids $cpid"
wait_pid $cpid 180
check "crash: restarted coordinator finishes the run (status $wst)" [ "$wst" = 0 ]
[ "$wst" = 0 ] || tail -n 8 "$TMPROOT/coord2.log" | sed 's/^/  /' >&2
check "crash: every round committed exactly once" metrics_once "$run/metrics.jsonl" 6
check "crash: the restart resumed from the last committed round" \
	grep -q "resuming run .* last committed round [2-5]," "$TMPROOT/coord2.log"
check "crash: global adapter of the last round written" \
	[ -f "$run/global/round-000006.safetensors" ]
good=0
for p in $cl; do wait_pid "$p" 60 && [ "$wst" = 0 ] && good=$((good + 1)); done
check "crash: all 3 clients reconnected on their own and saw Done ($good of 3)" [ $good -eq 3 ]
[ $good -eq 3 ] || tail -n 5 "$run"/client-*.log | sed 's/^/  /' >&2

# ---- 2. a client killed mid-round ----
run="$TMPROOT/quorum"
mkdir -p "$run/keys"
"$FEDLORA" keygen --out "$run/keys/coordinator" >/dev/null 2>&1
port=$(free_port)
url="tcp://127.0.0.1:$port"
# FEDLORA_LOG=debug: the coordinator logs each attempt's selection, so the
# victim is killed only once it is surely selected for round 2
FEDLORA_LOG=debug "$FEDLORA" coordinator --listen "$url" --run-dir "$run" \
	--key "$run/keys/coordinator.key" \
	--task linreg --strategy ffa --rounds 4 --clients-per-round 3 --min-clients 2 \
	--round-timeout 6 --enroll-any --linger 5 $STEPS >"$TMPROOT/coord3.log" 2>&1 &
cpid=$!
pids="$pids $cpid"
cl=""
for i in 0 1 2; do
	"$FEDLORA" keygen --out "$run/keys/client-$i" >/dev/null 2>&1
	slow=0
	[ $i = 2 ] && slow=50 # the victim: 1 s a round
	FEDLORA_SLOW_MS=$slow "$FEDLORA" client --connect "$url" --key "$run/keys/client-$i.key" \
		--task linreg --client-index $i >"$run/client-$i.log" 2>&1 &
	last=$!
	cl="$cl $last"
done
pids="$pids $cl"
victim=$last
if wait_for "round 2 of the quorum run to select all 3 clients (coord3.log)" 120 \
	grep -q "round 2 (attempt 1): 3 of 3 clients selected" "$TMPROOT/coord3.log"; then
	# client 2 has its round-2 Task now (or gets it at once) and trains it for 1 s
	kill -9 $victim
	wait $victim 2>/dev/null
	check "quorum: client 2 killed -9 during round 2 (it had not reported it)" \
		sh -c "! grep -q 'round 2/' '$run/client-2.log'"
else
	notok "quorum: round 2 selected all 3 clients within 120 s"
	tail -n 5 "$TMPROOT/coord3.log" | sed 's/^/  /' >&2
fi
wait_pid $cpid 120
check "quorum: the run finishes without the killed client (status $wst)" [ "$wst" = 0 ]
[ "$wst" = 0 ] || tail -n 8 "$TMPROOT/coord3.log" | sed 's/^/  /' >&2
check "quorum: every round committed once" metrics_once "$run/metrics.jsonl" 4
check "quorum: rounds after the kill committed with the 2 remaining clients" python3 - \
	"$run/metrics.jsonl" <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("  reported per round: %s" % [m["reported"] for m in L], file=sys.stderr)
sys.exit(0 if len(L) == 4 and L[-1]["reported"] == 2 and all(m["reported"] >= 2 for m in L) else 1)
PY
good=0
for p in $cl; do
	[ "$p" = "$victim" ] && continue
	wait_pid "$p" 60 && [ "$wst" = 0 ] && good=$((good + 1))
done
check "quorum: the 2 remaining clients saw Done ($good of 2)" [ $good -eq 2 ]

# ---- 3. a client restart keeps the privacy history ----
run="$TMPROOT/dpstate"
mkdir -p "$run/keys"
"$FEDLORA" keygen --out "$run/keys/coordinator" >/dev/null 2>&1
"$FEDLORA" keygen --out "$run/keys/client-0" >/dev/null 2>&1
port=$(free_port)
url="tcp://127.0.0.1:$port"
"$FEDLORA" coordinator --listen "$url" --run-dir "$run" --key "$run/keys/coordinator.key" \
	--task linreg --strategy ffa --rounds 4 --clients-per-round 1 --min-clients 1 \
	--round-timeout 120 --enroll-any --linger 15 --dp sample --dp-clip 1 --dp-noise 1 \
	--dp-q 0.05 >"$TMPROOT/coord4.log" 2>&1 &
cpid=$!
pids="$pids $cpid"
"$FEDLORA" client --connect "$url" --key "$run/keys/client-0.key" --task linreg \
	--client-index 0 --max-rounds 2 >"$run/client-a.log" 2>&1 &
apid=$!
pids="$pids $apid"
wait_pid $apid 120
check "dpstate: client stops after 2 rounds (status $wst)" [ "$wst" = 0 ]
check "dpstate: state file written with mode 0600" \
	sh -c "[ \"\$(stat -c %a '$run/keys/client-0.state.json')\" = 600 ]"
"$FEDLORA" client --connect "$url" --key "$run/keys/client-0.key" --task linreg \
	--client-index 0 >"$run/client-b.log" 2>&1 &
bpid=$!
pids="$pids $bpid"
wait_pid $bpid 120
check "dpstate: restarted client finishes the run (status $wst)" [ "$wst" = 0 ]
wait_pid $cpid 60
check "dpstate: coordinator finished (status $wst)" [ "$wst" = 0 ]
check "dpstate: epsilon keeps growing across the restart" python3 - "$run/metrics.jsonl" <<'PY'
import json, sys
eps = [json.loads(l)["epsilon"] for l in open(sys.argv[1]) if l.strip()]
print("  epsilon per round: %s" % eps, file=sys.stderr)
sys.exit(0 if len(eps) == 4 and all(a < b for a, b in zip(eps, eps[1:])) else 1)
PY
exit $t_failed
