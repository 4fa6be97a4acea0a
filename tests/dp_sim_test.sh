#!/bin/sh
# tests/dp_sim_test.sh — differential privacy end to end.
#  - `fedlora eps`: published values (Opacus' own test: sigma 1.5, q 0.04,
#    2250 steps, delta 1e-5 -> epsilon 7.32911117143), --json, --history
#    (a split history equals the single phase), --target-eps round trip, and
#    clear refusals of bad values.
#  - `fedlora sim` on linreg with sample-level DP-SGD at the clients and with
#    client-level DP at the coordinator, and on lm (a tiny pretrained byte
#    model) with sample-level DP: epsilon is in every metrics.jsonl
#    line, rises every round, equals what `fedlora eps` computes for the
#    schedule, and the run stops cleanly (state.json done, reason target_eps)
#    before a round would exceed --target-eps.
. tests/lib.sh

py() { python3 -c "$@"; }

# --- fedlora eps ---------------------------------------------------------
out=$("$FEDLORA" eps --sigma 1.5 --q 0.04 --steps 2250 --delta 1e-5 --json 2>&1)
check eps_opacus_value py "
import json,sys; d=json.loads('''$out''')
sys.exit(0 if abs(d['epsilon']-7.32911117143) < 1e-6 and d['order']==3.9 else 1)"

printf '[{"sigma":1.5,"q":0.04,"steps":1000},{"sigma":1.5,"q":0.04,"steps":1250}]' >"$TMPROOT/h.json"
out=$("$FEDLORA" eps --history "$TMPROOT/h.json" --json 2>&1)
check eps_history_split py "
import json,sys; d=json.loads('''$out''')
sys.exit(0 if abs(d['epsilon']-7.32911117143) < 1e-6 and d['phases']==2 else 1)"

out=$("$FEDLORA" eps --target-eps 3 --q 0.01 --steps 5000 --json 2>&1)
sig=$(py "import json; print(json.loads('''$out''')['sigma'])" 2>/dev/null)
back=$("$FEDLORA" eps --sigma "$sig" --q 0.01 --steps 5000 --json 2>/dev/null)
check eps_target_roundtrip py "
import json,sys; d=json.loads('''$back''')
sys.exit(0 if 2.99 < d['epsilon'] <= 3.0 + 1e-9 else 1)"

all_refused eps_rejects_bad_values "--sigma 1 --q 1.5 --steps 10" "--sigma 0 --q 0.1 --steps 10" \
	"--sigma -1 --q 0.1 --steps 10" "--sigma 1 --q 0.1 --steps -5" "--sigma 1 --q 0.1 --steps 2.5" \
	"--sigma 1 --q 0.1 --steps 10 --delta 0" "--sigma x --q 0.1 --steps 10" \
	"--target-eps 0 --q 0.1 --steps 10" "--q 0.1 --steps 10" "--sigma 1 --q 0.1 --steps 10 --bogus 1"

printf '{"accountant":[{"sigma":1,"q":7,"steps":3}]}' >"$TMPROOT/bad.json"
printf '[1,2' >"$TMPROOT/trunc.json"
if ! "$FEDLORA" eps --history "$TMPROOT/bad.json" 2>/dev/null &&
	! "$FEDLORA" eps --history "$TMPROOT/trunc.json" 2>/dev/null &&
	! "$FEDLORA" eps --history "$TMPROOT/missing.json" 2>/dev/null; then
	ok eps_rejects_bad_history
else
	notok eps_rejects_bad_history
fi

# --- DP simulations ------------------------------------------------------
if ! "$FEDLORA" sim --help >/dev/null 2>&1; then
	skip dp_sim_sample "fedlora sim is not in this build"
	skip dp_sim_client "fedlora sim is not in this build"
	exit $t_failed
fi

# check_run NAME DIR TARGET ROUNDS MODE
# MODE "sample S Q STEPS": every client ran STEPS DP-SGD steps per round at
# noise S and rate Q, so after r rounds the history is one phase (S, Q, r*STEPS).
# MODE "client S": one step per round at noise S and the round's client
# sampling rate, read from the metrics' dp_q and checked to equal
# 1 - (1 - q)^attempts with q = min(1, clients_per_round / registered).
# Each round's epsilon must equal `fedlora eps --history` of that schedule.
check_run() {
	name=$1 dir=$2 target=$3 rounds=$4 mode=$5
	py "
import json, subprocess, sys
fail = []
mode = '$mode'.split()
lines = [json.loads(l) for l in open('$dir/metrics.jsonl') if l.strip()]
st = json.load(open('$dir/state.json'))
run = json.load(open('$dir/run.json'))
eps = [l.get('epsilon') for l in lines]
def sched(r, q_next=None):
    if mode[0] == 'sample':
        return [{'sigma': float(mode[1]), 'q': float(mode[2]), 'steps': r * int(mode[3])}]
    qs = [l['dp_q'] for l in lines[:r]] + ([q_next] if q_next is not None else [])
    return [{'sigma': float(mode[1]), 'q': q, 'steps': 1} for q in qs]
def eps_of(h):
    open('$TMPROOT/sched.json', 'w').write(json.dumps(h))
    out = subprocess.check_output(['$FEDLORA', 'eps', '--json', '--delta', '1e-5',
                                   '--history', '$TMPROOT/sched.json'])
    return json.loads(out)['epsilon']
if not lines: fail.append('no metrics')
if any(e is None for e in eps): fail.append('epsilon missing: %s' % eps)
elif lines:
    if any(b <= a for a, b in zip(eps, eps[1:])): fail.append('epsilon not rising: %s' % eps)
    if eps[-1] > $target: fail.append('final epsilon %g > target' % eps[-1])
    if mode[0] == 'client':
        k = run.get('clients_per_round')
        for l in lines:
            # a round that needed retries (Poisson sampling picked fewer than
            # the quorum) is charged as one step at 1 - (1 - q)^attempts
            q0 = min(1.0, k / l['registered'])
            want = 1.0 - (1.0 - q0) ** l.get('attempts', 1)
            if abs(l['dp_q'] - want) > 1e-12: fail.append('round %d: dp_q %g, want %g' % (l['round'], l['dp_q'], want))
    for i, e in enumerate(eps):
        ref = eps_of(sched(i + 1))
        if abs(e - ref) > 1e-6 * max(1, ref): fail.append('round %d: epsilon %g, fedlora eps %g' % (lines[i]['round'], e, ref))
    if len(lines) >= $rounds: fail.append('ran all %d rounds: target never hit' % len(lines))
    # the next round would have crossed the target (client mode: with every
    # registered client in the pool, as the coordinator assumes)
    nq = None
    if mode[0] == 'client':
        nq = min(1.0, run.get('clients_per_round') / len(st.get('clients', [])))
    nxt = eps_of(sched(len(lines) + 1, nq))
    if not nxt > $target: fail.append('stopped although round %d stays at %g' % (len(lines) + 1, nxt))
if not st.get('done') or st.get('reason') != 'target_eps':
    fail.append('state.json done=%s reason=%s' % (st.get('done'), st.get('reason')))
for f in fail: print('  $name: ' + f, file=sys.stderr)
print('  $name: epsilon per round', ['%.4g' % e for e in eps if e is not None], file=sys.stderr)
sys.exit(1 if fail else 0)"
}

# run_sim NAME DIR TARGET ROUNDS SCHEDULE SIM-ARGS...: runs the simulation,
# then checks the run (check_run) and, as its own case NAME_exit, that the
# simulation exited 0: a run stopped by --target-eps is a clean finish.
run_sim() {
	name=$1 dir=$2 target=$3 rounds=$4 sched=$5
	shift 5
	"$FEDLORA" sim --run-dir "$dir" --rounds "$rounds" --target-eps "$target" "$@" \
		>"$TMPROOT/$name.out" 2>&1
	rc=$?
	if [ -f "$dir/state.json" ] && [ -f "$dir/metrics.jsonl" ]; then
		check "$name" check_run "$name" "$dir" "$target" "$rounds" "$sched"
	else
		echo "  $name: no run directory written (sim exit $rc):" >&2
		tail -n 5 "$TMPROOT/$name.out" >&2
		notok "$name"
	fi
	if [ $rc -eq 0 ]; then
		ok "${name}_exit"
	else
		echo "  $name: fedlora sim exited $rc after a target_eps stop:" >&2
		tail -n 2 "$TMPROOT/$name.out" >&2
		notok "${name}_exit"
	fi
}

SMALL="--enroll-any --quiet --timeout 60 --linreg-layers 2 --linreg-dim 16 --linreg-samples 200 --rank 4"

# Sample-level DP-SGD at the clients: sigma 1, q 0.05, 10 local steps per
# round; every client joins every round, so after r rounds each has taken
# 10 r steps: epsilon 2.97 after 4 rounds, 3.18 after 5 -> stops at 4 of 8.
# shellcheck disable=SC2086
run_sim dp_sim_sample "$TMPROOT/sample" 3 8 "sample 1 0.05 10" \
	--clients 3 --strategy ffa --task linreg $SMALL --seed 3 --lr 0.05 --local-steps 10 \
	--dp sample --dp-clip 1 --dp-noise 1 --dp-q 0.05 --dp-delta 1e-5 --round-timeout 20

# Client-level DP at the coordinator: 2 clients per round by Poisson sampling
# of the registered pool (q = 2/3 once all 3 registered; 1 while fewer are),
# sigma 2, one mechanism step per round: with q = 2/3 throughout, epsilon
# 3.52 after 4 rounds, 3.94 after 5. The noise std on the
# global is sigma * S / 2 = 0.05 per coordinate.
# shellcheck disable=SC2086
run_sim dp_sim_client "$TMPROOT/client" 3.6 8 "client 2" \
	--clients 3 --clients-per-round 2 --min-clients 1 --strategy fedit --task linreg $SMALL \
	--seed 4 --lr 0.02 --local-steps 5 --dp client --dp-clip 0.05 --dp-noise 2 \
	--dp-delta 1e-5 --round-timeout 8

# Sample-level DP on the lm task: a tiny byte-level base pretrained for a
# few steps, two clients (German and Spanish fortunes), sigma 0.8, q 0.01,
# 4 steps per round: epsilon 1.804 after 3 rounds, 1.839 after 4 -> stops
# at 3 of 6 with target 1.82.
F=${FORTUNES:-/usr/share/games/fortunes}
if ! "$FEDLORA" pretrain --help >/dev/null 2>&1; then
	skip dp_sim_lm "fedlora pretrain is not in this build"
elif [ ! -f "$F/fortunes" ] || [ ! -d "$F/de" ] || [ ! -d "$F/es" ]; then
	skip dp_sim_lm "fortunes packages not installed (make deps)"
elif ! "$FEDLORA" pretrain --model-config configs/byte-tiny.json --data "$F/fortunes" \
	--out "$TMPROOT/base" --steps 60 --batch-size 8 --seq-len 32 --lr 1e-2 --eval-seqs 16 \
	--seed 3 >"$TMPROOT/pretrain.out" 2>&1; then
	tail -n 3 "$TMPROOT/pretrain.out" >&2
	notok dp_sim_lm
else
	run_sim dp_sim_lm "$TMPROOT/lm" 1.82 6 "sample 0.8 0.01 4" \
		--clients 2 --strategy ffa --task lm --enroll-any --quiet --timeout 60 \
		--base "$TMPROOT/base" --data-per-client "$F/de;$F/es" --seq-len 32 --rank 2 \
		--alpha 4 --lr 0.01 --optimizer adamw --local-steps 4 --seed 5 \
		--dp sample --dp-clip 1 --dp-noise 0.8 --dp-q 0.01 --dp-delta 1e-5 --round-timeout 60
fi

# the run's own accountant history (state.json) gives the same epsilon
if [ -f "$TMPROOT/client/state.json" ]; then
	out=$("$FEDLORA" eps --history "$TMPROOT/client/state.json" --json 2>&1)
	check eps_history_of_run py "
import json,sys
d=json.loads('''$out''')
last=[json.loads(l) for l in open('$TMPROOT/client/metrics.jsonl') if l.strip()][-1]
sys.exit(0 if abs(d['epsilon']-last['epsilon']) < 1e-9 else 1)"
fi
exit $t_failed
