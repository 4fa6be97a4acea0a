# tests/sim_test.sh — end to end: `fedlora sim` with 3 clients x 5 rounds on
# linreg for each strategy (and once with sample-level DP). Checks: exit 0, one
# metrics.jsonl line per round with every key of DESIGN section 3, held-out
# loss falls, ffa's aggregation bias is 0 to float rounding while fedit's is
# not, fair's round-1 bias is below fedit's (same start, same client updates),
# every client saw Done, and DP runs report a growing finite epsilon.
. tests/lib.sh

# check_metrics FILE ROUNDS: keys, one line per round in order, loss falls.
check_metrics() {
	python3 - "$1" "$2" <<'PY'
import json, sys
path, rounds = sys.argv[1], int(sys.argv[2])
keys = "round strategy selected reported rejected train_loss eval_loss agg_bias epsilon delta bytes_up bytes_down seconds".split()
lines = [json.loads(l) for l in open(path) if l.strip()]
ok = True
def fail(msg):
    global ok
    print("  " + msg, file=sys.stderr); ok = False
if [m["round"] for m in lines] != list(range(1, rounds + 1)):
    fail("rounds are %s" % [m.get("round") for m in lines])
for m in lines:
    missing = [k for k in keys if k not in m]
    if missing:
        fail("round %s misses %s" % (m.get("round"), missing))
    if not isinstance(m.get("rejected"), dict):
        fail("rejected is not an object")
    if m.get("reported", 0) < 1 or m.get("bytes_up", 0) <= 0:
        fail("round %s: reported %s bytes_up %s" % (m["round"], m.get("reported"), m.get("bytes_up")))
if lines and not lines[-1]["eval_loss"] < lines[0]["eval_loss"]:
    fail("held-out loss did not fall: %s -> %s" % (lines[0]["eval_loss"], lines[-1]["eval_loss"]))
sys.exit(0 if ok else 1)
PY
}

# field FILE ROUND KEY: prints metrics[ROUND-1][KEY]
field() {
	python3 -c 'import json,sys; L=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; print(L[int(sys.argv[2])-1][sys.argv[3]])' "$@"
}

for s in fedit ffa fair; do
	run="$TMPROOT/$s"
	if "$FEDLORA" sim --clients 3 --rounds 5 --strategy $s --task linreg --run-dir "$run" \
		--round-timeout 20 --timeout 50 --linger 10 >"$TMPROOT/$s.out" 2>&1; then
		ok "sim_$s: exits 0"
	else
		notok "sim_$s: exits 0"
		sed 's/^/  /' "$TMPROOT/$s.out" | tail -n 20 >&2
		tail -n 5 "$run/coordinator-stderr.log" "$run"/client-*.log 2>/dev/null | sed 's/^/  /' >&2
		continue
	fi
	check "sim_$s: metrics has every key, one line per round, held-out loss falls" \
		check_metrics "$run/metrics.jsonl" 5
	n=$(grep -c '^round [0-9]*/5 ' "$TMPROOT/$s.out")
	check "sim_$s: one progress line per round" [ "$n" -eq 5 ]
	n=$(grep -l 'run done after round 5' "$run"/client-*.log | wc -l)
	check "sim_$s: every client saw Done" [ "$n" -eq 3 ]
done

if [ -f "$TMPROOT/ffa/metrics.jsonl" ] && [ -f "$TMPROOT/fedit/metrics.jsonl" ]; then
	check "ffa: agg_bias 0 to float rounding, fedit: agg_bias > 0" python3 - \
		"$TMPROOT/ffa/metrics.jsonl" "$TMPROOT/fedit/metrics.jsonl" <<'PY'
import json, sys
ffa = [json.loads(l)["agg_bias"] for l in open(sys.argv[1]) if l.strip()]
fedit = [json.loads(l)["agg_bias"] for l in open(sys.argv[2]) if l.strip()]
print("  agg_bias ffa %s fedit %s" % (max(ffa), min(fedit)), file=sys.stderr)
sys.exit(0 if max(ffa) < 1e-5 and min(fedit) > 1e-3 else 1)
PY
fi
if [ -f "$TMPROOT/fair/metrics.jsonl" ] && [ -f "$TMPROOT/fedit/metrics.jsonl" ]; then
	fb=$(field "$TMPROOT/fair/metrics.jsonl" 1 agg_bias)
	eb=$(field "$TMPROOT/fedit/metrics.jsonl" 1 agg_bias)
	check "fair: round-1 agg_bias ($fb) below fedit's ($eb)" \
		python3 -c "import sys; sys.exit(0 if $fb < $eb else 1)"
fi

# sample-level DP-SGD at the clients: epsilon reported, finite, growing
run="$TMPROOT/dp"
if "$FEDLORA" sim --clients 3 --rounds 3 --strategy ffa --task linreg --run-dir "$run" \
	--dp sample --dp-clip 1 --dp-noise 1.0 --dp-q 0.05 --lr 0.2 \
	--round-timeout 20 --timeout 50 --linger 10 >"$TMPROOT/dp.out" 2>&1; then
	check "sim_dp: epsilon reported, finite, growing" python3 - "$run/metrics.jsonl" <<'PY'
import json, math, sys
eps = [json.loads(l)["epsilon"] for l in open(sys.argv[1]) if l.strip()]
print("  epsilon per round %s" % eps, file=sys.stderr)
sys.exit(0 if len(eps) == 3 and all(isinstance(e, (int, float)) and math.isfinite(e) and e > 0 for e in eps)
         and eps[0] < eps[1] < eps[2] else 1)
PY
else
	notok "sim_dp: exits 0"
	tail -n 20 "$TMPROOT/dp.out" | sed 's/^/  /' >&2
fi

# usage errors are reported, not crashed on
"$FEDLORA" sim --clients 3 --rounds 5 --task linreg >/dev/null 2>&1
check "sim: missing options is a usage error (2)" [ $? -eq 2 ]
"$FEDLORA" sim --clients 0 --rounds 5 --strategy fedit --task linreg --run-dir "$TMPROOT/x" \
	>/dev/null 2>&1
check "sim: --clients 0 is a usage error (2)" [ $? -eq 2 ]
# the client command: usage errors, a missing key, an unreachable coordinator
"$FEDLORA" client --help >/dev/null 2>&1
check "client: --help exits 0" [ $? -eq 0 ]
"$FEDLORA" client --connect tcp://127.0.0.1:1 --task linreg >/dev/null 2>&1
check "client: missing options is a usage error (2)" [ $? -eq 2 ]
"$FEDLORA" client --connect tcp://127.0.0.1:1 --key "$TMPROOT/none.key" --task linreg \
	--client-index 0 >"$TMPROOT/c.out" 2>&1
check "client: a missing key file fails (1) with a message" \
	sh -c "[ $? -eq 1 ] && grep -q 'cannot load key' '$TMPROOT/c.out'"
"$FEDLORA" keygen --out "$TMPROOT/k/c" >/dev/null 2>&1
port=$(free_port)
start=$(date +%s)
"$FEDLORA" client --connect "tcp://127.0.0.1:$port" --key "$TMPROOT/k/c.key" --task linreg \
	--client-index 0 --give-up 1 >"$TMPROOT/c.out" 2>&1
rc=$?
check "client: nobody listening, --give-up 1 fails (1) within 5 s" \
	[ $rc -eq 1 ] && [ $(($(date +%s) - start)) -le 5 ]
exit $t_failed
