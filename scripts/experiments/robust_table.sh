#!/bin/sh
# scripts/experiments/robust_table.sh — robust aggregation against hostile
# clients: for every attack (the last HOSTILE of CLIENTS clients corrupt their
# update after honest training and sign it, `fedlora sim --hostile --attack`)
# and every --aggregator rule, one linreg `fedlora sim`, plus an honest-only
# baseline with the plain mean.
#
#   scripts/experiments/robust_table.sh [OUT_DIR]   (default build/experiments/robust_table)
#
# Loss: the last metrics line's eval_before, i.e. the held-out loss of the
# global adapter committed by round ROUNDS-1, averaged (by samples) over every
# client's held-out split (hostile clients evaluate honestly). A run that does
# not finish within RUN_TIMEOUT (its training blew up into NaN, so no client
# can report) is written as "diverged" with an empty loss.
#
# Writes OUT_DIR/results.csv (attack, aggregator, final_eval_loss, status,
# dropped, clipped), OUT_DIR/results.md and OUT_DIR/robust_table.png
# (gnuplot, log-scale bars per attack and rule; diverged runs are left out).
#
# Settings (environment, defaults in brackets): CLIENTS [10] HOSTILE [2]
# ROUNDS [8] LOCAL_STEPS [10] LR [0.05] SEED [1] STRATEGY [fedit]
# ATTACKS ["scale:10 flip:4 noise:1"] RULES ["mean norm-bound median
# trimmed-mean krum"] EXTRA [""] (more `fedlora sim` options, e.g.
# "--krum-f 2") RUN_TIMEOUT [90] FEDLORA [build/fedlora]
set -eu

FEDLORA=${FEDLORA:-build/fedlora}
OUT=${1:-build/experiments/robust_table}
CLIENTS=${CLIENTS:-10}
HOSTILE=${HOSTILE:-2}
ROUNDS=${ROUNDS:-8}
LOCAL_STEPS=${LOCAL_STEPS:-10}
LR=${LR:-0.05}
SEED=${SEED:-1}
STRATEGY=${STRATEGY:-fedit}
ATTACKS=${ATTACKS:-scale:10 flip:4 noise:1}
RULES=${RULES:-mean norm-bound median trimmed-mean krum}
RUN_TIMEOUT=${RUN_TIMEOUT:-90}

[ -x "$FEDLORA" ] || { echo "robust_table: $FEDLORA not built (run make)" >&2; exit 1; }
mkdir -p "$OUT/runs"
cp "$FEDLORA" "$OUT/fedlora" # a rebuild during the sweep cannot change the binary
FEDLORA=$(cd "$OUT" && pwd)/fedlora
CSV=$OUT/results.csv
echo "attack,aggregator,final_eval_loss,status,dropped,clipped" >"$CSV"

# one run: $1 attack ("none" = honest only), $2 rule
one() {
	run=$OUT/runs/$(echo "$1-$2" | tr ':' '_')
	rm -rf "$run"
	hostile=""
	[ "$1" = none ] || hostile="--hostile $HOSTILE --attack $1"
	echo "robust_table: attack $1, aggregator $2 ..." >&2
	status=ok
	# shellcheck disable=SC2086
	"$FEDLORA" sim --clients "$CLIENTS" --rounds "$ROUNDS" --strategy "$STRATEGY" \
		--task linreg --run-dir "$run" --enroll-any --quiet --seed "$SEED" \
		--timeout "$RUN_TIMEOUT" --round-timeout 10 --lr "$LR" \
		--local-steps "$LOCAL_STEPS" --aggregator "$2" $hostile ${EXTRA:-} \
		>"$run.log" 2>&1 || status=diverged
	python3 - "$run/metrics.jsonl" "$1" "$2" "$status" "$ROUNDS" >>"$CSV" <<'PY'
import json, sys
path, attack, rule, status, rounds = sys.argv[1:6]
try:
    lines = [json.loads(l) for l in open(path) if l.strip()]
except OSError:
    lines = []
if status != "ok" or len(lines) < int(rounds) or lines[-1].get("eval_before") is None:
    print("%s,%s,,diverged,," % (attack, rule))
else:
    last = lines[-1]
    rb = [l.get("robust", {}) for l in lines]
    drop = sum(r.get("dropped", 0) for r in rb) / len(rb)
    clip = sum(r.get("clipped", 0) for r in rb) / len(rb)
    print("%s,%s,%.6g,ok,%.2f,%.2f" % (attack, rule, last["eval_before"], drop, clip))
PY
}

one none mean
for a in $ATTACKS; do
	for r in $RULES; do
		one "$a" "$r"
	done
done

python3 - "$CSV" "$OUT/results.md" "$OUT/plot.dat" "$RULES" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
rules = sys.argv[4].split()
base = float(rows[0]["final_eval_loss"])
with open(sys.argv[2], "w") as f:
    f.write("honest only (mean): held-out loss %.4f\n\n" % base)
    f.write("| attack | " + " | ".join(rules) + " |\n|---|" + "---|" * len(rules) + "\n")
    attacks = []
    for r in rows[1:]:
        if r["attack"] not in attacks:
            attacks.append(r["attack"])
    with open(sys.argv[3], "w") as d:
        d.write("attack " + " ".join(rules) + "\n")
        for a in attacks:
            cells, vals = [], []
            for rule in rules:
                m = [r for r in rows if r["attack"] == a and r["aggregator"] == rule]
                v = m[0]["final_eval_loss"] if m else ""
                cells.append("%.4f (x%.2f)" % (float(v), float(v) / base) if v else "diverged")
                vals.append(v if v else "?")
            f.write("| %s | %s |\n" % (a, " | ".join(cells)))
            d.write("%s %s\n" % (a, " ".join(vals)))
PY
cat "$OUT/results.md"

if command -v gnuplot >/dev/null 2>&1; then
	base=$(awk -F, 'NR == 2 { print $3 }' "$CSV")
	n=$(echo "$RULES" | wc -w)
	gnuplot <<GP
set terminal pngcairo size 900,500
set output '$OUT/robust_table.png'
set title "linreg $STRATEGY, $CLIENTS clients ($HOSTILE hostile), $ROUNDS rounds: held-out loss"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set datafile missing '?'
set logscale y
set ylabel 'held-out loss (log)'
set key outside right
plot for [i=2:$((n + 1))] '$OUT/plot.dat' using i:xtic(1) title columnheader(i), \
     $base with lines lw 2 dt 2 title 'honest only'
GP
	echo "wrote $CSV, $OUT/results.md and $OUT/robust_table.png" >&2
fi
