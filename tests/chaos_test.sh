# tests/chaos_test.sh — 20 SIGKILLs of the coordinator across one run, a
# restart after each, against an uninterrupted run with the same seed.
#
# Kills alternate between the test-only crash hook (FEDLORA_CRASH_AT=POINT:N,
# coordinator/crash.h: the coordinator SIGKILLs itself at every step of the
# commit protocol, at registration, in the middle of a fold and once the run
# is done) and kill -9 from outside after a random 0.1-0.6 s (short enough that the
# random lives leave rounds for the hooked ones after them). Then:
#   - every round is committed exactly once: metrics.jsonl holds rounds 1..R
#     once each, in order, and state.json names round R, done;
#   - the global adapter of every round is cmp-equal to the uninterrupted
#     run's: K = all 3 clients and quorum 3 with a long round timeout, so no
#     round is retried (a retry changes the round seed) and every committed
#     round aggregates the same three updates, trained from the same global
#     with the same seed; the fold sums in double in arrival order, which is
#     exact here (see docs/architecture.md for where bit-identity stops:
#     client-level DP noise, retries, inexact sums of very different
#     magnitudes);
#   - no client hangs: all three exit 0 within 30 s of the last restart.
# Clients sleep 40 ms per local step (test-only FEDLORA_SLOW_MS) in both runs,
# so a round takes ~0.2-0.3 s and the kills land inside the run (with 20 ms,
# ~0.13 s rounds, lives on a busy machine ran through the 40 rounds before
# the 20th kill, on main too).
. tests/lib.sh

pids=""
stop_all() { stop_pids $pids; }
trap 'stop_all; [ -n "$KEEP" ] || cleanup_tmp' EXIT

ROUNDS=40
TASK="--task linreg --strategy fedit --rounds $ROUNDS --clients-per-round 3 --min-clients 3
	--round-timeout 60 --seed 7 --linreg-layers 2 --linreg-dim 16 --linreg-samples 128
	--local-steps 5 --batch-size 16 --lr 0.05 --enroll-any --linger 10 --join-wait 0"
export FEDLORA_SLOW_MS=40

# setup DIR: keys for the coordinator and 3 clients
setup() {
	mkdir -p "$1/keys"
	"$FEDLORA" keygen --out "$1/keys/coordinator" >/dev/null 2>&1
	for i in 0 1 2; do "$FEDLORA" keygen --out "$1/keys/client-$i" >/dev/null 2>&1; done
}
# clients DIR URL: starts the 3 clients, their pids in $cl
clients() {
	cl=""
	for i in 0 1 2; do
		"$FEDLORA" client --connect "$2" --key "$1/keys/client-$i.key" --task linreg \
			--client-index $i --quiet >>"$1/client-$i.log" 2>&1 &
		cl="$cl $!"
	done
	pids="$pids $cl"
}
# coord DIR URL LOG [CRASH]: starts a coordinator life, its pid in $cpid
coord() {
	FEDLORA_CRASH_AT="${4:-}" "$FEDLORA" coordinator --listen "$2" --run-dir "$1/run" \
		--key "$1/keys/coordinator.key" $TASK >"$3" 2>&1 &
	cpid=$!
	pids="$pids $cpid"
}
committed() { # DIR: last committed round from state.json
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["round"])' "$1/run/state.json" 2>/dev/null || echo 0
}

# ---- the uninterrupted reference ----
ref="$TMPROOT/ref"
setup "$ref"
url="tcp://127.0.0.1:$(free_port)"
t0=$(date +%s)
coord "$ref" "$url" "$ref/coord.log"
clients "$ref" "$url"
wait_pid $cpid 60
check "reference run finishes (status $wst)" [ "$wst" = 0 ]
for p in $cl; do wait_pid "$p" 20; done
t1=$(date +%s)
echo "  reference: $ROUNDS rounds in $((t1 - t0)) s" >&2

# ---- the chaos run ----
run="$TMPROOT/chaos"
setup "$run"
url="tcp://127.0.0.1:$(free_port)"
# the 20 lives: 10 crash-hook points (R: a random-time kill -9 instead)
PLAN="registration:2 R mid_fold:2 R after_adapter_write:1 R before_state_save:1 R
	after_commit:1 R mid_fold:1 R after_adapter_write:2 R before_state_save:2 R
	after_commit:2 R R done:1"
kills=0 hooked=0 random_kills=0 early="" must_resume=""
for spec in $PLAN; do
	life=$((kills + 1))
	log="$run/coord-$life.log"
	# a hooked life that starts on a saved state must say it resumes; a
	# random kill may land before the coordinator has logged anything
	[ "$spec" != R -a -f "$run/run/state.json" ] && must_resume="$must_resume $life"
	[ "$(committed "$run")" -ge $ROUNDS ] && early="$early $life"
	# the random delay is drawn before the start, so the interpreter's start
	# on a loaded machine does not lengthen the life
	d=$(python3 -c 'import random; print("%.2f" % random.uniform(0.1, 0.6))')
	if [ "$spec" = R ]; then
		coord "$run" "$url" "$log"
	else
		coord "$run" "$url" "$log" "$spec"
	fi
	[ $life -eq 1 ] && clients "$run" "$url"
	if [ "$spec" != R ]; then
		wait_pid $cpid 20
		if [ "$wst" = 137 ]; then
			hooked=$((hooked + 1))
		else
			echo "  life $life: hook $spec not reached (status $wst)" >&2
			kill -9 $cpid 2>/dev/null; wait $cpid 2>/dev/null
			early="$early $life"
		fi
	else
		sleep "$d"
		if ! kill -0 $cpid 2>/dev/null; then
			echo "  life $life: coordinator exited before the kill" >&2
			early="$early $life"
		fi
		kill -9 $cpid 2>/dev/null
		wait $cpid 2>/dev/null
		random_kills=$((random_kills + 1))
	fi
	kills=$((kills + 1))
	echo "  kill $kills (${spec}): committed round $(committed "$run")" >&2
done
coord "$run" "$url" "$run/coord-final.log"
wait_pid $cpid 60
check "chaos: 20 SIGKILLs ($hooked by the crash hook, $random_kills random), then the run finishes (status $wst)" \
	[ "$wst" = 0 -a $hooked -eq 10 -a $random_kills -eq 10 -a -z "$early" ]
[ -z "$early" ] || echo "  lives that missed their kill: $early" >&2
good=0
for p in $cl; do wait_pid "$p" 30 && [ "$wst" = 0 ] && good=$((good + 1)); done
check "chaos: all 3 clients exit 0 on their own after the last restart ($good of 3)" [ $good -eq 3 ]
[ $good -eq 3 ] || tail -n 5 "$run"/client-*.log | sed 's/^/  /' >&2
t2=$(date +%s)
echo "  chaos run: $((t2 - t1)) s" >&2

check "chaos: metrics.jsonl holds rounds 1..$ROUNDS once each; state.json done at $ROUNDS" \
	python3 - "$run/run" "$ROUNDS" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
r = [json.loads(l)["round"] for l in open(d + "/metrics.jsonl") if l.strip()]
st = json.load(open(d + "/state.json"))
bad = [x for x in r if r.count(x) != 1]
print("  %d metrics lines, duplicates %s, state round %d done %s" % (len(r), sorted(set(bad)), st["round"], st["done"]), file=sys.stderr)
print("  attempts per round: %s" % [json.loads(l).get("attempts") for l in open(d + "/metrics.jsonl") if l.strip()][:n], file=sys.stderr)
sys.exit(0 if r == list(range(1, n + 1)) and st["round"] == n and st["done"] else 1)
PY
missed=""
for life in $must_resume final; do
	grep -q 'resuming run' "$run/coord-$life.log" || missed="$missed $life"
done
check "chaos: every hooked restart on a saved state and the last one resumed the run ($(echo $must_resume | wc -w) + 1 lives, missed:${missed:- none})" \
	[ -z "$missed" -a "$(echo $must_resume | wc -w)" -ge 7 ]
same=0
for r in $(seq 1 $ROUNDS); do
	f=$(printf "global/round-%06d.safetensors" "$r")
	cmp -s "$ref/run/$f" "$run/run/$f" && same=$((same + 1))
done
check "chaos: the adapter of every round is cmp-equal to the uninterrupted run's ($same of $ROUNDS)" \
	[ $same -eq $ROUNDS ]
exit $t_failed
