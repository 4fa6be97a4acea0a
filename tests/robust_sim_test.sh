#!/bin/sh
# tests/robust_sim_test.sh — robust aggregation end to end (linreg, 10 clients,
# 2 hostile that flip their update x4 and sign it): the coordinate-wise median
# keeps the held-out loss within 25% of the honest-only run while the plain
# mean stays at least 50% above it; metrics.jsonl names the rule.
. tests/lib.sh
trap cleanup_tmp EXIT

sim() { # DIR RULE [hostile args]
	d=$1 r=$2
	shift 2
	"$FEDLORA" sim --clients 10 --rounds 6 --strategy fedit --task linreg --run-dir "$TMPROOT/$d" \
		--enroll-any --quiet --seed 3 --timeout 60 --round-timeout 10 --local-steps 10 \
		--aggregator "$r" "$@" >"$TMPROOT/$d.log" 2>&1
}
loss() {
	python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])['eval_before'])" \
		"$TMPROOT/$1/metrics.jsonl"
}
sim honest mean && sim mean mean --hostile 2 --attack flip:4 && sim median median --hostile 2 --attack flip:4
check "robust: three sims finish" [ $? -eq 0 ]
h=$(loss honest) m=$(loss mean) r=$(loss median)
echo "# held-out loss: honest $h, mean under attack $m, median under attack $r"
check "robust: median within 25% of honest-only" python3 -c "import sys; sys.exit(not $r <= 1.25 * $h)"
check "robust: plain mean degrades by > 50%" python3 -c "import sys; sys.exit(not $m >= 1.5 * $h)"
check "robust: metrics name the rule" grep -q '"aggregator":"median","robust":{"rule":"median"' \
	"$TMPROOT/median/metrics.jsonl"
check "robust: fair with a robust rule is refused" sh -c \
	"! '$FEDLORA' sim --clients 2 --rounds 1 --strategy fair --task linreg --run-dir '$TMPROOT/f' --enroll-any --quiet --aggregator krum >'$TMPROOT/f.log' 2>&1"
exit $t_failed
