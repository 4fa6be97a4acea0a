#!/bin/sh
# scripts/demo.sh — the main job (`make demo`): federated LoRA fine-tuning of
# a small byte-level language model on four clients that each hold text in
# their own language, under the three aggregation strategies.
#
#   1. data: English fortunes for pretraining; clients German, Spanish,
#      Italian, Russian+Polish (scripts/prepare-data.sh, cached in $DATA);
#   2. base model: `fedlora pretrain` of configs/byte-small.json on the English
#      fortunes (cached in $DATA/base-byte-small: a second run skips it);
#   3. for fedit, ffa and fair: `fedlora sim --task lm` with 4 clients, then
#      `fedlora export` of the final global adapter into RUN/peft (PEFT
#      format, loadable with PeftModel.from_pretrained);
#   4. `fedlora eval` of each client's held-out data with and without each
#      exported adapter; prints, per strategy, every client's held-out loss
#      before and after, agg_bias and bytes per round.
#
# Settings (environment): DATA (data), RUNS (runs/demo), ROUNDS (8),
# LOCAL_STEPS (25), PRETRAIN_STEPS (1200), DEVICE (cpu; cuda|auto for GPU
# clients), STRATEGIES ("fedit ffa fair"), FEDLORA (build/fedlora).
# About 7 minutes on two CPU cores, 4 of them the pretraining (cached).
set -eu
FEDLORA=${FEDLORA:-build/fedlora}
DATA=${DATA:-data}
RUNS=${RUNS:-runs/demo}
ROUNDS=${ROUNDS:-8}
LOCAL_STEPS=${LOCAL_STEPS:-25}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-1200}
DEVICE=${DEVICE:-cpu}
STRATEGIES=${STRATEGIES:-fedit ffa fair}
SEQ=128
CFG=configs/byte-small.json
BASE="$DATA/base-byte-small"
NAMES="de es it rupl"
LANGS="German Spanish Italian Russian+Polish"

[ -x "$FEDLORA" ] || { echo "demo: $FEDLORA is missing; run make first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "demo: python3 is needed to print the tables (make deps)" >&2; exit 1; }
start=$(date +%s)
stamp() { echo "== [$(($(date +%s) - start)) s] $*"; }

stamp "data -> $DATA"
sh scripts/prepare-data.sh "$DATA"

# The pretrained base is reused when it was made from the same config and
# number of steps.
PRETRAIN_ARGS="--steps $PRETRAIN_STEPS --batch-size 16 --seq-len $SEQ --lr 3e-3 --seed 1"
want="$(cat "$CFG") $PRETRAIN_ARGS"
if [ -f "$BASE/model.safetensors" ] && [ -f "$BASE/.demo-key" ] && [ "$(cat "$BASE/.demo-key")" = "$want" ]; then
	stamp "base model: cached in $BASE ($(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("held-out loss %.3f after %d steps" % (d["final_eval_loss"], d["steps"]))' "$BASE/pretrain.json"))"
else
	stamp "pretraining the base model ($CFG, $PRETRAIN_STEPS steps) on English fortunes -> $BASE"
	rm -rf "$BASE"
	# shellcheck disable=SC2086 # PRETRAIN_ARGS is a list of words
	"$FEDLORA" pretrain --model-config "$CFG" --data "$DATA/en" --out "$BASE" $PRETRAIN_ARGS \
		--device "$DEVICE"
	printf '%s' "$want" >"$BASE/.demo-key"
fi

CLIENT_DATA=""
for n in $NAMES; do CLIENT_DATA="$CLIENT_DATA${CLIENT_DATA:+;}$DATA/clients/$n"; done

# Held-out loss of the base model alone, per client (the "before" column).
mkdir -p "$RUNS"
stamp "held-out loss of the base model on each client's data"
for n in $NAMES; do
	"$FEDLORA" eval --base "$BASE" --data "$DATA/clients/$n" --seq-len $SEQ --max-seqs 64 \
		--device "$DEVICE" --json >"$RUNS/base-$n.json"
done

# Four client processes share the machine: one BLAS thread each.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
for s in $STRATEGIES; do
	run="$RUNS/$s"
	case $s in
	ffa) lr=0.02 ;;  # B only, A frozen: takes a larger step
	*) lr=0.005 ;;
	esac
	stamp "strategy $s: fedlora sim --task lm, 4 clients, $ROUNDS rounds -> $run"
	rm -rf "$run"
	"$FEDLORA" sim --task lm --clients 4 --rounds "$ROUNDS" --strategy "$s" --run-dir "$run" \
		--base "$BASE" --data-per-client "$CLIENT_DATA" --device "$DEVICE" \
		--seq-len $SEQ --rank 8 --alpha 16 --lora-targets q_proj,v_proj \
		--optimizer adamw --lr $lr --local-steps "$LOCAL_STEPS" --batch-size 8 \
		--seed 1 --round-timeout 900
	"$FEDLORA" export --run-dir "$run" --out "$run/peft"
	for n in $NAMES; do
		"$FEDLORA" eval --base "$BASE" --adapter "$run/peft" --data "$DATA/clients/$n" \
			--seq-len $SEQ --max-seqs 64 --device "$DEVICE" --json >"$run/eval-$n.json"
	done
done

stamp "results"
python3 - "$RUNS" "$NAMES" "$LANGS" "$STRATEGIES" <<'PY'
import json, sys
runs, names, langs, strategies = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
base = {n: json.load(open("%s/base-%s.json" % (runs, n))) for n in names}
print()
print("held-out loss (nats/token) of each client's data, base model -> base + the strategy's final")
print("global adapter (PEFT export); agg_bias and bytes are per round, averaged over the rounds")
for s in strategies:
    m = [json.loads(l) for l in open("%s/%s/metrics.jsonl" % (runs, s))]
    print()
    print("strategy %-5s  rounds %d  agg_bias mean %.3g (last %.3g)  bytes/round up %.1f KB, down %.1f KB"
          % (s, len(m), sum(r["agg_bias"] for r in m) / len(m), m[-1]["agg_bias"],
             sum(r["bytes_up"] for r in m) / len(m) / 1024, sum(r["bytes_down"] for r in m) / len(m) / 1024))
    print("  %-6s %-15s %8s %8s %8s %8s" % ("client", "language", "before", "after", "change", "acc"))
    for i, (n, lang) in enumerate(zip(names, langs)):
        e = json.load(open("%s/%s/eval-%s.json" % (runs, s, n)))
        b = base[n]
        print("  %-6d %-15s %8.4f %8.4f %+8.4f %8.3f" % (i, lang, b["loss"], e["loss"], e["loss"] - b["loss"], e["acc"]))
    print("  exported PEFT adapter: %s/%s/peft" % (runs, s))
PY
stamp "done"
