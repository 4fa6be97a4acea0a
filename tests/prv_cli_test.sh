#!/bin/sh
# tests/prv_cli_test.sh — `fedlora eps --accountant prv`: the JSON bounds are
# ordered (lower <= estimate <= upper), the upper bound is below RDP's
# epsilon on a DP-SGD schedule, a split --history equals the single phase,
# the default stays rdp, --target-eps with prv meets the target with less
# noise than RDP needs, and bad --accountant / --eps-error / --target-eps
# values are refused with a message (exit 2).
. tests/lib.sh

py() { python3 -c "$@"; }

out=$("$FEDLORA" eps --accountant prv --sigma 1.1 --q 0.01 --steps 1000 --json 2>&1)
check prv_cli_bounds py "
import json,sys; d=json.loads('''$out''')
ok = d['accountant']=='prv' and d['eps_lower'] <= d['eps_estimate'] <= d['eps_upper'] \
  and d['epsilon']==d['eps_upper'] and d['eps_upper'] < d['rdp_epsilon'] \
  and d['eps_upper']-d['eps_lower'] <= 3*d['eps_error']
sys.exit(0 if ok else 1)"

printf '[{"sigma":1.1,"q":0.01,"steps":400},{"sigma":1.1,"q":0.01,"steps":600}]' >"$TMPROOT/h.json"
hist=$("$FEDLORA" eps --accountant prv --history "$TMPROOT/h.json" --json 2>&1)
check prv_cli_history_split py "
import json,sys; a=json.loads('''$out'''); b=json.loads('''$hist''')
sys.exit(0 if abs(a['eps_upper']-b['eps_upper']) < 1e-6 and b['phases']==2 else 1)"

def=$("$FEDLORA" eps --sigma 1.1 --q 0.01 --steps 1000 --json 2>&1)
check prv_cli_default_rdp py "
import json,sys; d=json.loads('''$def''')
sys.exit(0 if d['accountant']=='rdp' and 'eps_upper' not in d else 1)"

all_refused prv_cli_rejects_bad "--accountant foo --sigma 1 --q 0.1 --steps 10" \
	"--accountant prv --eps-error 0 --sigma 1 --q 0.1 --steps 10" \
	"--accountant prv --eps-error x --sigma 1 --q 0.1 --steps 10" \
	"--accountant prv --target-eps 0 --q 0.1 --steps 10"
tp=$("$FEDLORA" eps --accountant prv --target-eps 2 --q 0.1 --steps 20 --json 2>&1)
tr=$("$FEDLORA" eps --target-eps 2 --q 0.1 --steps 20 --json 2>&1)
check prv_cli_target_eps py "
import json,sys; p=json.loads('''$tp'''); r=json.loads('''$tr''')
sys.exit(0 if p['eps_upper'] <= 2 and p['eps_upper'] > 1.9 and p['sigma'] < r['sigma'] else 1)"
"$FEDLORA" eps --help | grep -q -- "--accountant" && ok prv_cli_help || notok prv_cli_help
exit $t_failed
