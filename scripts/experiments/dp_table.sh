#!/bin/sh
# scripts/experiments/dp_table.sh — held-out loss against the privacy budget:
# for every target epsilon and aggregation strategy, one `fedlora sim` with
# sample-level DP-SGD at the clients, the noise multiplier solved by
# `fedlora eps --target-eps` for the run's sampling rate and step count.
#
#   scripts/experiments/dp_table.sh [OUT_DIR]        (default build/experiments/dp_table)
#
# Writes OUT_DIR/results.csv (strategy, epsilon_target, sigma,
# final_eval_loss, final_epsilon, global_eval_loss: the last round's
# eval_before, i.e. the global adapter of round ROUNDS-1 on the clients'
# held-out data before local training; final_eval_loss is after it), OUT_DIR/results.md (the same as a
# Markdown table) and OUT_DIR/dp_table.png (gnuplot: held-out loss against
# epsilon, one line per strategy; "inf" = no DP). Each run's directory is
# kept under OUT_DIR/runs/.
#
# Settings (environment, defaults in brackets):
#   TASK [linreg; lm when BASE is set]   BASE, DATA_PER_CLIENT (lm: base model
#   folder and "P0;P1;..." client data)  CLIENTS [4]  ROUNDS [10]
#   LOCAL_STEPS [10]  Q [0.3] (Poisson rate of examples)  CLIP [5.0]
#   DELTA [1e-5]  EPSILONS ["inf 8 4 2"]  STRATEGIES ["fedit ffa fair"]
#   LR [0.05]  LR_FFA [0.1] (FFA-LoRA trains B only and wants a larger step)
#   SEED [1]  EXTRA [""] (more options for `fedlora sim`, e.g. "--seq-len 64
#   --rank 4 --optimizer adamw")  FEDLORA [build/fedlora]  RUN_TIMEOUT [300] (seconds per run: a
#   diverging run is cut off and reported)  ROUND_TIMEOUT [30]
# The linreg defaults (q 0.3: expected batch 154 of 512 examples; C 5) are
# where DP-SGD on that task still learns at epsilon 2; smaller batches or a
# clip of 1 leave almost no signal above the noise in 100 steps.
# Every client joins every round (clients per round = CLIENTS), so a client
# takes ROUNDS * LOCAL_STEPS DP-SGD steps and its epsilon after the last
# round is at most the target.
set -eu

FEDLORA=${FEDLORA:-build/fedlora}
OUT=${1:-build/experiments/dp_table}
BASE=${BASE:-}
TASK=${TASK:-$([ -n "$BASE" ] && echo lm || echo linreg)}
CLIENTS=${CLIENTS:-4}
ROUNDS=${ROUNDS:-10}
LOCAL_STEPS=${LOCAL_STEPS:-10}
Q=${Q:-0.3}
CLIP=${CLIP:-5.0}
DELTA=${DELTA:-1e-5}
EPSILONS=${EPSILONS:-inf 8 4 2}
STRATEGIES=${STRATEGIES:-fedit ffa fair}
LR=${LR:-0.05}
LR_FFA=${LR_FFA:-0.1}
SEED=${SEED:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
ROUND_TIMEOUT=${ROUND_TIMEOUT:-30}
HERE=$(cd "$(dirname "$0")" && pwd)

[ -x "$FEDLORA" ] || { echo "dp_table: $FEDLORA not built (run make)" >&2; exit 1; }
if [ "$TASK" = lm ] && [ -z "$BASE" ]; then
	echo "dp_table: TASK=lm needs BASE=DIR (a base model, e.g. from fedlora pretrain)" >&2
	exit 2
fi
mkdir -p "$OUT/runs"
# a private copy: a rebuild of the tree during the sweep cannot change or
# remove the binary under the runs
cp "$FEDLORA" "$OUT/fedlora"
FEDLORA=$(cd "$OUT" && pwd)/fedlora
STEPS=$((ROUNDS * LOCAL_STEPS))
CSV=$OUT/results.csv
echo "strategy,epsilon_target,sigma,final_eval_loss,final_epsilon,global_eval_loss" >"$CSV"

# last metrics line's KEY (null -> empty)
last_metric() {
	python3 -c "
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
v = json.loads(lines[-1]).get(sys.argv[2]) if lines else None
print('' if v is None else repr(float(v)))" "$1" "$2"
}

for eps in $EPSILONS; do
	if [ "$eps" = inf ]; then
		sigma=0
		dp="--dp none"
	else
		sigma=$("$FEDLORA" eps --target-eps "$eps" --q "$Q" --steps "$STEPS" --delta "$DELTA" --json |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["sigma"])')
		dp="--dp sample --dp-clip $CLIP --dp-noise $sigma --dp-q $Q --dp-delta $DELTA"
	fi
	for strat in $STRATEGIES; do
		lr=$LR
		[ "$strat" = ffa ] && lr=$LR_FFA
		run=$OUT/runs/$strat-eps$eps
		rm -rf "$run"
		extra=${EXTRA:-}
		if [ "$TASK" = lm ]; then
			extra="$extra --base $BASE"
			[ -n "${DATA_PER_CLIENT:-}" ] && extra="$extra --data-per-client $DATA_PER_CLIENT"
		fi
		echo "dp_table: $strat, epsilon $eps (sigma $sigma) ..." >&2
		# shellcheck disable=SC2086
		if ! "$FEDLORA" sim --clients "$CLIENTS" --rounds "$ROUNDS" --strategy "$strat" \
			--task "$TASK" --run-dir "$run" --enroll-any --quiet --seed "$SEED" \
			--timeout "$RUN_TIMEOUT" --round-timeout "$ROUND_TIMEOUT" \
			--lr "$lr" --local-steps "$LOCAL_STEPS" $dp $extra >"$run.log" 2>&1; then
			echo "dp_table: run $run failed:" >&2
			tail -n 5 "$run.log" >&2
			exit 1
		fi
		loss=$(last_metric "$run/metrics.jsonl" eval_loss)
		feps=$(last_metric "$run/metrics.jsonl" epsilon)
		gloss=$(last_metric "$run/metrics.jsonl" eval_before)
		[ "$eps" = inf ] && feps=inf
		echo "$strat,$eps,$sigma,$loss,$feps,$gloss" >>"$CSV"
	done
done

python3 - "$CSV" "$OUT/results.md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
with open(sys.argv[2], "w") as f:
    f.write("| strategy | target epsilon | sigma | final held-out loss | final epsilon |\n")
    f.write("|---|---|---|---|---|\n")
    for r in rows:
        fe = r["final_epsilon"]
        fe = fe if fe in ("", "inf") else "%.3f" % float(fe)
        f.write("| %s | %s | %.4g | %.4f | %s |\n" % (r["strategy"], r["epsilon_target"],
                float(r["sigma"]), float(r["final_eval_loss"]), fe))
PY
cat "$OUT/results.md"

if command -v gnuplot >/dev/null 2>&1; then
	# gnuplot data: x = epsilon (inf drawn at 16), one block per strategy
	dat=$OUT/plot.dat
	: >"$dat"
	for strat in $STRATEGIES; do
		echo "# $strat" >>"$dat"
		awk -F, -v s="$strat" 'NR > 1 && $1 == s { x = ($2 == "inf") ? 16 : $2; print x, $4 }' \
			"$CSV" | sort -g >>"$dat"
		printf '\n\n' >>"$dat"
	done
	gnuplot -e "datafile='$dat'; outfile='$OUT/dp_table.png'; strategies='$STRATEGIES'; \
		tasklabel='$TASK, $CLIENTS clients, $ROUNDS rounds x $LOCAL_STEPS steps, q $Q, delta $DELTA'" \
		"$HERE/dp_table.gp"
	echo "wrote $CSV, $OUT/results.md and $OUT/dp_table.png" >&2
else
	echo "wrote $CSV and $OUT/results.md (gnuplot not found: no plot)" >&2
fi
