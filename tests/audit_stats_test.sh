#!/bin/sh
# tests/audit_stats_test.sh — the statistics of scripts/experiments/audit.py:
#  - Clopper-Pearson upper bound with no successes equals 1 - alpha^(1/n);
#  - the Gaussian-mechanism epsilon of mu = 1/sigma matches the PRV
#    accountant of one step at q = 1 (`fedlora eps --accountant prv`) within
#    its error;
#  - analyse on synthetic scores: worlds far apart give the ceiling of the
#    run count, identical worlds give a bound of 0, and the implied epsilon of
#    a shift of 1 std is near the accountant's for sigma 1.
. tests/lib.sh

A=scripts/experiments/audit.py
out=$(python3 -c "
import sys; sys.path.insert(0, 'scripts/experiments'); import audit
u = audit.cp_upper(0, 125, 0.025)
print(abs(u - (1 - 0.025 ** (1 / 125))) < 1e-9)")
if [ "$out" = True ]; then ok audit_cp_upper_zero; else notok audit_cp_upper_zero; fi

ok_g=1
for s in 0.5 1 2; do
	p=$("$FEDLORA" eps --accountant prv --sigma $s --q 1 --steps 1 --json)
	python3 -c "
import json, sys; sys.path.insert(0, 'scripts/experiments'); import audit
d = json.loads(sys.argv[1]); g = audit.gauss_eps(1 / $s, 1e-5)
sys.exit(0 if d['eps_lower'] - 1e-6 <= g <= d['eps_upper'] + 1e-6 else 1)" "$p" || {
		echo "  sigma $s: gauss_eps outside the PRV bounds $p" >&2
		ok_g=0
	}
done
if [ $ok_g -eq 1 ]; then ok audit_gauss_eps_matches_prv; else notok audit_gauss_eps_matches_prv; fi

# synthetic scores: deterministic normal quantiles, so no randomness
synth() { # DIR SHIFT
	mkdir -p "$1"
	python3 -c "
import statistics, sys
nd = statistics.NormalDist()
print('sigma,world,run,score')
for w, m in (('in', $2), ('out', 0.0)):
    for i in range(200):
        # interleave so both halves of a world cover the whole distribution
        q = ((i * 37) % 200 + 0.5) / 200
        print('1,%s,%d,%r' % (w, i + 1, m + nd.inv_cdf(q)))" >"$1/scores.csv"
	printf 'sigma,eps_rdp,eps_prv\n1,4.7,4.4\n' >"$1/accountant.csv"
	python3 "$A" analyse "$1" 1e-5 2 1
}
synth "$TMPROOT/far" 50
synth "$TMPROOT/same" 0
synth "$TMPROOT/one" 1
check audit_analyse_bounds python3 -c "
import csv, sys
far = next(csv.DictReader(open('$TMPROOT/far/audit.csv')))
same = next(csv.DictReader(open('$TMPROOT/same/audit.csv')))
one = next(csv.DictReader(open('$TMPROOT/one/audit.csv')))
ok = (abs(float(far['eps_lower_bound']) - float(far['eps_lb_ceiling'])) < 1e-9
      and float(far['eps_lb_ceiling']) > 3
      and float(same['eps_lower_bound']) < 0.3
      and 0 <= float(one['eps_lower_bound']) < float(one['eps_implied'])
      and abs(float(one['mu']) - 1) < 0.05
      and float(one['eps_implied_lo']) < 4.4 < float(one['eps_implied_hi']))
print('  far', far['eps_lower_bound'], 'same', same['eps_lower_bound'], 'one', one['eps_lower_bound'],
      one['eps_implied'], one['eps_implied_lo'], one['eps_implied_hi'], file=sys.stderr)
sys.exit(0 if ok else 1)"
exit $t_failed
