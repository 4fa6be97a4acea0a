#!/bin/sh
# tests/accountant_run_test.sh — `--accountant rdp|prv` in runs.
#  - client-level DP at the coordinator (3 clients, all selected: q = 1, one
#    mechanism step per round at sigma 2): the same 4-round linreg sim with
#    --accountant rdp and --accountant prv. metrics.jsonl names the
#    accountant, the prv run's epsilon is below the rdp run's every round,
#    equals `fedlora eps --accountant prv` of the schedule (the upper bound,
#    eps_upper) and its rdp_epsilon equals the rdp run's epsilon.
#  - sample-level DP-SGD at the clients with --accountant prv: the clients
#    compute their epsilon with the run's accountant (sent in the task), so
#    the metrics' epsilon equals `fedlora eps --accountant prv` of the
#    clients' schedule and the client logs say "(prv)".
#  - the accountant is fixed in run.json: resuming the run with another one
#    is refused; bad values are refused by coordinator, sim and client.
. tests/lib.sh

py() { python3 -c "$@"; }

if ! "$FEDLORA" sim --help >/dev/null 2>&1; then
	skip accountant_run "fedlora sim is not in this build"
	exit 0
fi

SMALL="--enroll-any --timeout 60 --linreg-layers 2 --linreg-dim 16 --linreg-samples 200 --rank 4"
CLIENT_DP="--clients 3 --clients-per-round 3 --min-clients 3 --strategy fedit --task linreg \
--seed 4 --lr 0.02 --local-steps 5 --dp client --dp-clip 0.05 --dp-noise 2 --dp-delta 1e-5 \
--round-timeout 8"

for acc in rdp prv; do
	# shellcheck disable=SC2086
	"$FEDLORA" sim --run-dir "$TMPROOT/c_$acc" --rounds 4 --accountant $acc $SMALL $CLIENT_DP \
		>"$TMPROOT/c_$acc.out" 2>&1 || {
		echo "  sim --accountant $acc failed:" >&2
		tail -n 5 "$TMPROOT/c_$acc.out" >&2
	}
done

check accountant_client_dp_prv_below_rdp py "
import json, subprocess, sys
fail = []
def lines(a):
    try:
        return [json.loads(l) for l in open('$TMPROOT/c_%s/metrics.jsonl' % a) if l.strip()]
    except OSError:
        return []
r, p = lines('rdp'), lines('prv')
if len(r) != 4 or len(p) != 4: fail.append('rounds: rdp %d prv %d, want 4' % (len(r), len(p)))
for a, b in zip(r, p):
    if a.get('accountant') != 'rdp' or b.get('accountant') != 'prv':
        fail.append('round %d: accountant %s / %s' % (a['round'], a.get('accountant'), b.get('accountant')))
        continue
    if not (0 < b['epsilon'] < a['epsilon']):
        fail.append('round %d: prv %s not below rdp %s' % (a['round'], b['epsilon'], a['epsilon']))
    if b.get('eps_upper') != b['epsilon'] or not (b['eps_lower'] <= b['eps_estimate'] <= b['epsilon']):
        fail.append('round %d: bounds %s' % (b['round'], b))
    if abs(b['rdp_epsilon'] - a['epsilon']) > 1e-9 * a['epsilon']:
        fail.append('round %d: rdp_epsilon %s != rdp run %s' % (b['round'], b['rdp_epsilon'], a['epsilon']))
    if b['dp_q'] != 1: fail.append('round %d: dp_q %s, want 1' % (b['round'], b['dp_q']))
    out = subprocess.check_output(['$FEDLORA', 'eps', '--json', '--accountant', 'prv', '--sigma', '2',
                                   '--q', '1', '--steps', str(b['round']), '--delta', '1e-5'])
    ref = json.loads(out)['epsilon']
    if abs(b['epsilon'] - ref) > 1e-9 * ref:
        fail.append('round %d: epsilon %s, fedlora eps --accountant prv %s' % (b['round'], b['epsilon'], ref))
run = json.load(open('$TMPROOT/c_prv/run.json'))
if run.get('accountant') != 'prv': fail.append('run.json accountant %s' % run.get('accountant'))
for f in fail: print('  ' + f, file=sys.stderr)
print('  rdp', [round(l['epsilon'], 4) for l in r], 'prv', [round(l['epsilon'], 4) for l in p],
      'prv s/round', [round(l.get('accountant_s', -1), 3) for l in p], file=sys.stderr)
sys.exit(1 if fail else 0)"

if grep -q "final epsilon .* (accountant prv)" "$TMPROOT/c_prv.out"; then
	ok accountant_sim_summary_names_prv
else
	tail -n 3 "$TMPROOT/c_prv.out" >&2
	notok accountant_sim_summary_names_prv
fi

# resuming with another accountant: refused (run.json fixes it)
# shellcheck disable=SC2086
if "$FEDLORA" sim --run-dir "$TMPROOT/c_prv" --rounds 5 --accountant rdp $SMALL $CLIENT_DP \
	>"$TMPROOT/resume.out" 2>&1; then
	notok accountant_fixed_on_resume
elif grep -q "accountant" "$TMPROOT/c_prv/coordinator-stderr.log" "$TMPROOT/resume.out" 2>/dev/null; then
	ok accountant_fixed_on_resume
else
	tail -n 5 "$TMPROOT/resume.out" >&2
	notok accountant_fixed_on_resume
fi

# sample-level DP at the clients: sigma 1, q 0.05, 10 steps per round, every
# client in every round, so after r rounds each client's schedule is
# (1, 0.05, 10 r)
# shellcheck disable=SC2086
"$FEDLORA" sim --run-dir "$TMPROOT/s_prv" --rounds 3 --accountant prv $SMALL --clients 2 \
	--strategy ffa --task linreg --seed 3 --lr 0.05 --local-steps 10 --dp sample --dp-clip 1 \
	--dp-noise 1 --dp-q 0.05 --dp-delta 1e-5 --round-timeout 20 >"$TMPROOT/s_prv.out" 2>&1
check accountant_sample_dp_clients_use_prv py "
import json, subprocess, sys
fail = []
try:
    ls = [json.loads(l) for l in open('$TMPROOT/s_prv/metrics.jsonl') if l.strip()]
except OSError:
    ls = []
if len(ls) != 3: fail.append('%d rounds, want 3' % len(ls))
for l in ls:
    def eps(a):
        out = subprocess.check_output(['$FEDLORA', 'eps', '--json', '--accountant', a, '--sigma', '1',
                                       '--q', '0.05', '--steps', str(10 * l['round']), '--delta', '1e-5'])
        return json.loads(out)['epsilon']
    p, r = eps('prv'), eps('rdp')
    if l.get('accountant') != 'prv' or abs(l['epsilon'] - p) > 1e-9 * p or not p < r:
        fail.append('round %d: %s %s, fedlora eps prv %s rdp %s' % (l['round'], l.get('accountant'), l['epsilon'], p, r))
for f in fail: print('  ' + f, file=sys.stderr)
sys.exit(1 if fail else 0)"
if grep -q "eps [0-9.]* (prv)" "$TMPROOT/s_prv"/client-*.log; then
	ok accountant_client_log_names_prv
else
	head -n 3 "$TMPROOT/s_prv"/client-0.log >&2
	notok accountant_client_log_names_prv
fi

# bad values
bad=0
SIM1="sim --run-dir $TMPROOT/bad --rounds 1 --clients 1 --strategy fedit --task linreg --enroll-any"
for cmd in "$SIM1 --dp client --dp-clip 1 --dp-noise 1 --accountant moments" \
	"$SIM1 --dp client --dp-clip 1 --dp-noise 1 --accountant prv --eps-error 0" \
	"coordinator --listen tcp://127.0.0.1:1 --run-dir $TMPROOT/bad --key x --enroll-any --accountant x" \
	"client --connect tcp://127.0.0.1:1 --key x --task linreg --client-index 0 --accountant x"; do
	# shellcheck disable=SC2086
	"$FEDLORA" $cmd >"$TMPROOT/o" 2>"$TMPROOT/e"
	rc=$?
	if [ $rc -eq 0 ] || ! grep -q -e "accountant" -e "eps-error" "$TMPROOT/e" "$TMPROOT/o" \
		"$TMPROOT/bad/coordinator-stderr.log" 2>/dev/null; then
		echo "  $cmd: rc $rc" >&2
		cat "$TMPROOT/e" >&2
		bad=1
	fi
done
if [ $bad -eq 0 ]; then ok accountant_bad_values_refused; else notok accountant_bad_values_refused; fi
exit $t_failed
