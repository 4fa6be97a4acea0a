#!/bin/sh
# scripts/experiments/quality_table.sh — learning quality of fedit, ffa and
# fair against the privacy budget on the fortunes lm task with heterogeneous
# clients (one language per client), over several seeds.
#
#   scripts/experiments/quality_table.sh [OUT_DIR]  (default build/experiments/quality_table)
#
# 1. scripts/prepare-data.sh lays out the fortunes (DATA [build/data]); each
#    client gets the first BYTES bytes of one language: de, es, it, and
#    Russian+Polish (half each), so the clients differ in language, not size.
# 2. A byte-level base model is pretrained on the English fortunes
#    (configs/byte-tiny.json, PRETRAIN_STEPS steps; kept in OUT/base).
# 3. scripts/experiments/dp_table.sh runs once per seed (SEED=s, into
#    OUT/seedS): every strategy x target epsilon, sample-level DP-SGD at the
#    clients, sigma solved for the target.
# 4. OUT/results.csv (every run, with its seed), OUT/summary.csv and
#    OUT/summary.md (mean, sample standard deviation, min and max of the final
#    held-out loss over the seeds, and the base model's held-out loss before
#    any training), OUT/quality.png (mean +- std against epsilon).
#
# Settings (environment, defaults in brackets): SEEDS ["1 2 3"] EPSILONS
# ["inf 8 4 2"] STRATEGIES ["fedit ffa fair"] ROUNDS [8] LOCAL_STEPS [10]
# Q [0.01] CLIP [1] LR [0.01] LR_FFA [0.02] BYTES [300000] PRETRAIN_STEPS
# [300] EXTRA ["--seq-len 64 --rank 4 --alpha 8 --optimizer adamw"]
# RUN_TIMEOUT [600] FEDLORA [build/fedlora]. Use `nice`.
set -eu

FEDLORA=${FEDLORA:-build/fedlora}
OUT=${1:-build/experiments/quality_table}
DATA=${DATA:-build/data}
SEEDS=${SEEDS:-1 2 3}
BYTES=${BYTES:-300000}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-300}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export EPSILONS=${EPSILONS:-inf 8 4 2}
export STRATEGIES=${STRATEGIES:-fedit ffa fair}
export ROUNDS=${ROUNDS:-8} LOCAL_STEPS=${LOCAL_STEPS:-10} Q=${Q:-0.01} CLIP=${CLIP:-1}
export LR=${LR:-0.01} LR_FFA=${LR_FFA:-0.02} RUN_TIMEOUT=${RUN_TIMEOUT:-600}
export EXTRA=${EXTRA:---seq-len 64 --rank 4 --alpha 8 --optimizer adamw}

[ -x "$FEDLORA" ] || { echo "quality_table: $FEDLORA not built (run make)" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
sh "$ROOT/scripts/prepare-data.sh" "$DATA" >&2

# 1. one language per client, BYTES each
QD=$OUT/data
mkdir -p "$QD"
if [ ! -f "$QD/.bytes-$BYTES" ]; then
	rm -rf "$QD"
	for lang in de es it; do
		mkdir -p "$QD/$lang"
		cat "$DATA/clients/$lang"/* | head -c "$BYTES" >"$QD/$lang/$lang.txt"
	done
	mkdir -p "$QD/rupl"
	cat "$DATA/clients/rupl"/ru-* | head -c $((BYTES / 2)) >"$QD/rupl/ru.txt"
	cat "$DATA/clients/rupl"/pl-* | head -c $((BYTES / 2)) >"$QD/rupl/pl.txt"
	: >"$QD/.bytes-$BYTES"
fi
export DATA_PER_CLIENT="$QD/de;$QD/es;$QD/it;$QD/rupl"
export CLIENTS=4 TASK=lm

# 2. base model
export BASE=$OUT/base
if [ ! -f "$BASE/model.safetensors" ]; then
	echo "quality_table: pretraining the base model ($PRETRAIN_STEPS steps) ..." >&2
	"$FEDLORA" pretrain --model-config "$ROOT/configs/byte-tiny.json" --data "$DATA/en" \
		--out "$BASE" --steps "$PRETRAIN_STEPS" --batch-size 16 --seq-len 64 --lr 1e-2 \
		--eval-seqs 64 --seed 1 >"$OUT/pretrain.log" 2>&1
fi

# 3. the sweep, one dp_table.sh per seed (a finished seed is not rerun)
t0=$(date +%s)
for s in $SEEDS; do
	if [ -f "$OUT/seed$s/results.md" ]; then
		echo "quality_table: seed $s done already" >&2
		continue
	fi
	echo "quality_table: seed $s ..." >&2
	SEED=$s FEDLORA=$FEDLORA sh "$HERE/dp_table.sh" "$OUT/seed$s" >&2
	rm -f "$OUT/seed$s/fedlora"
done
echo "quality_table: sweep took $(($(date +%s) - t0)) s" >&2

# 4. tables and plot
python3 - "$OUT" $SEEDS <<'PY'
import csv, json, math, os, sys
out, seeds = sys.argv[1], sys.argv[2:]
rows = []
for s in seeds:
    for r in csv.DictReader(open(os.path.join(out, "seed%s" % s, "results.csv"))):
        r["seed"] = s
        # the held-out loss of the base model before round 1 (same for all)
        m = os.path.join(out, "seed%s" % s, "runs", "%s-eps%s" % (r["strategy"], r["epsilon_target"]),
                         "metrics.jsonl")
        first = json.loads(open(m).readline())
        r["eval_before_round1"] = first.get("eval_before")
        rows.append(r)
keys = ["seed", "strategy", "epsilon_target", "sigma", "final_eval_loss", "global_eval_loss",
        "final_epsilon", "eval_before_round1"]
with open(os.path.join(out, "results.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
METRICS = (("final_eval_loss", "clients' adapters after local training on the last global"),
           ("global_eval_loss", "global adapter of round R-1, before local training"))
groups = {}
for r in rows:
    for mk, _ in METRICS:
        groups.setdefault((mk, r["strategy"], r["epsilon_target"]), []).append(float(r[mk]))
order_e = []
for r in rows:
    if r["epsilon_target"] not in order_e:
        order_e.append(r["epsilon_target"])
strats = []
for r in rows:
    if r["strategy"] not in strats:
        strats.append(r["strategy"])
summ = []
for mk, _ in METRICS:
  for st in strats:
    for e in order_e:
        v = groups.get((mk, st, e), [])
        if not v:
            continue
        m = sum(v) / len(v)
        sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else float("nan")
        summ.append({"metric": mk, "strategy": st, "epsilon_target": e, "seeds": len(v), "mean": m,
                     "std": sd, "min": min(v), "max": max(v)})
with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, ["metric", "strategy", "epsilon_target", "seeds", "mean", "std", "min",
                           "max"])
    w.writeheader()
    w.writerows(summ)
before = sorted({float(r["eval_before_round1"]) for r in rows if r["eval_before_round1"] is not None})
with open(os.path.join(out, "summary.md"), "w") as f:
    f.write("Held-out loss (nats/byte, weighted mean of the clients' held-out splits), mean +- std "
            "over %d seeds [min, max]; base model before training: %s\n" % (
                len(seeds), ", ".join("%.4f" % b for b in before)))
    for mk, label in METRICS:
        f.write("\n%s (%s):\n\n" % (mk, label))
        f.write("| strategy | " + " | ".join("eps %s" % e for e in order_e) + " |\n")
        f.write("|---|" + "---|" * len(order_e) + "\n")
        for st in strats:
            cells = []
            for e in order_e:
                s_ = [x for x in summ if x["metric"] == mk and x["strategy"] == st and
                      x["epsilon_target"] == e]
                cells.append("%.4f +- %.4f [%.4f, %.4f]" % (s_[0]["mean"], s_[0]["std"],
                                                           s_[0]["min"], s_[0]["max"]) if s_ else "-")
            f.write("| %s | %s |\n" % (st, " | ".join(cells)))
with open(os.path.join(out, "quality.dat"), "w") as f:
    for i, st in enumerate(strats):
        f.write("# %s\n" % st)
        for s_ in sorted((x for x in summ if x["strategy"] == st and x["metric"] == "final_eval_loss"),
                         key=lambda x: 16 if x["epsilon_target"] == "inf" else float(x["epsilon_target"])):
            x = 16 if s_["epsilon_target"] == "inf" else float(s_["epsilon_target"])
            f.write("%g %r %r\n" % (x * (1 + 0.03 * (i - 1)), s_["mean"], s_["std"]))
        f.write("\n\n")
PY
cat "$OUT/summary.md"
if command -v gnuplot >/dev/null 2>&1; then
	gnuplot -e "datafile='$OUT/quality.dat'; outfile='$OUT/quality.png'; strategies='$STRATEGIES'; \
		tasklabel='lm, 4 clients (de, es, it, ru+pl), $ROUNDS rounds x $LOCAL_STEPS steps, q $Q, seeds $SEEDS'" \
		"$HERE/quality_table.gp"
	echo "quality_table: wrote results.csv, summary.csv, summary.md and quality.png in $OUT" >&2
fi
