#!/bin/sh
# scripts/hf_walkthrough.sh [WORKDIR] — fine-tune a Hugging Face model folder
# with federated clients, end to end, with real `fedlora coordinator` and
# `fedlora client` processes on loopback (docs/huggingface.md walks through
# the same steps):
#
#   a. the model folder WORKDIR/model: config.json, model.safetensors,
#      tokenizer.json, tokenizer_config.json with a chat template, the files
#      a Hugging Face download has. There is no network here, so it is a
#      stand-in: `fedlora pretrain` of a small Llama on English fortunes with
#      a GPT-2-style byte-level BPE tokenizer (tests/fixtures/tok/gpt2bpe, 3005
#      ids, <|im_start|>/<|im_end|> as SmolLM2 has them) and SmolLM2's ChatML
#      template (tests/chat/smollm2.jinja). Cached: reused while its settings
#      are unchanged. With a real download, skip this and point HFW_MODEL at
#      the folder (it must then fit HFW_SEQ and the data below);
#   b. chat data WORKDIR/data: "which topic is this fortune from?" with the
#      answer computers|science|politics|food, from the Debian fortunes,
#      deterministic (sorted by hash), dealt round-robin to 3 clients and a
#      held-out eval.jsonl that no client sees;
#   c. keys, an allow list, one coordinator and 3 clients over tcp://127.0.0.1
#      (lm task, fedit, LoRA r 8 / alpha 16 on q_proj,v_proj, AdamW), each
#      client pinning the coordinator's key;
#   d. `fedlora export` of the last round's global adapter (PEFT layout);
#   e. `fedlora eval --all` of eval.jsonl with the base alone and with the
#      exported adapter; a table of loss, accuracy, adapter bytes, bytes up
#      and down per round (metrics.jsonl) and wall time.
#
# Exits non-zero when a step fails or the held-out loss did not drop. Kills
# the processes it started on every exit. Settings (environment), defaults in
# brackets: FEDLORA [build/fedlora], HFW_MODEL [WORKDIR/model, built],
# HFW_PRETRAIN_STEPS [120], HFW_PRETRAIN_BATCH [16], HFW_PRETRAIN_EVAL_SEQS
# [128], HFW_PER_TOPIC [120] (samples per topic, all files), HFW_ROUNDS [5],
# HFW_LOCAL_STEPS [10], HFW_BATCH [8], HFW_LR [0.01], HFW_SEQ [128],
# HFW_RANK [8], HFW_TARGETS [q_proj,v_proj], HFW_TIMEOUT [300] (seconds for
# the federated run). Run from the repository root; about 1.5 minutes on two
# cores from an empty WORKDIR, 50 s of it the pretraining (cached after).
set -eu
WORK=${1:-runs/hf-walkthrough}
FEDLORA=${FEDLORA:-build/fedlora}
PRETRAIN_STEPS=${HFW_PRETRAIN_STEPS:-120}
PRETRAIN_BATCH=${HFW_PRETRAIN_BATCH:-16}
PRETRAIN_EVAL=${HFW_PRETRAIN_EVAL_SEQS:-128}
PER_TOPIC=${HFW_PER_TOPIC:-120}
ROUNDS=${HFW_ROUNDS:-5}
LOCAL_STEPS=${HFW_LOCAL_STEPS:-10}
BATCH=${HFW_BATCH:-8}
LR=${HFW_LR:-0.01}
SEQ=${HFW_SEQ:-128}
RANK=${HFW_RANK:-8}
TARGETS=${HFW_TARGETS:-q_proj,v_proj}
TIMEOUT=${HFW_TIMEOUT:-300}
NCLIENTS=3
FORTUNES=/usr/share/games/fortunes

die() { echo "hf_walkthrough: $*" >&2; exit 1; }
[ -x "$FEDLORA" ] || die "$FEDLORA is missing; run make first (or set FEDLORA)"
command -v python3 >/dev/null || die "python3 is needed for the data and the table (make deps)"
[ -f tests/chat/smollm2.jinja ] || die "run from the repository root"
[ -f "$FORTUNES/computers" ] || die "$FORTUNES is missing; run scripts/install-deps.sh (fortunes packages)"
FEDLORA=$(cd "$(dirname "$FEDLORA")" && pwd)/$(basename "$FEDLORA")
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
MODEL=${HFW_MODEL:-$WORK/model}
start=$(date +%s)
stamp() { echo "== [$(($(date +%s) - start)) s] $*"; }

pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
	pids=""
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# a. the model folder (stand-in for a download)
if [ -z "${HFW_MODEL:-}" ]; then
	TOK=$WORK/tokenizer-src
	mkdir -p "$TOK"
	cp tests/fixtures/tok/gpt2bpe/tokenizer.json "$TOK/tokenizer.json"
	python3 - "$TOK" "$WORK/model-config.json" <<'PY'
import json, sys
tok, cfg_out = sys.argv[1], sys.argv[2]
# tokenizer_config.json as SmolLM2-Instruct ships it, in the fields fedlora reads
json.dump({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
           "pad_token": "<|im_end|>", "model_max_length": 256,
           "chat_template": open("tests/chat/smollm2.jinja").read().rstrip("\n")},
          open(f"{tok}/tokenizer_config.json", "w"), indent=1)
# a small LlamaForCausalLM; vocab 3072 covers the tokenizer's 3005 ids
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
           "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 160,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 3072, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "tie_word_embeddings": True,
           "bos_token_id": 3001, "eos_token_id": 3002}, open(cfg_out, "w"), indent=1)
PY
	PT_DATA="$FORTUNES/fortunes,$FORTUNES/wisdom,$FORTUNES/people,$FORTUNES/work,$FORTUNES/humorists"
	PT_ARGS="--steps $PRETRAIN_STEPS --batch-size $PRETRAIN_BATCH --seq-len 128 --lr 3e-3 --seed 1 --eval-seqs $PRETRAIN_EVAL"
	want="$(cat "$WORK/model-config.json" "$TOK/tokenizer_config.json") $PT_ARGS"
	if [ -f "$MODEL/model.safetensors" ] && [ -f "$MODEL/.walkthrough-key" ] &&
		[ "$(cat "$MODEL/.walkthrough-key")" = "$want" ]; then
		stamp "model folder: cached in $MODEL"
	else
		stamp "model folder: pretraining a stand-in ($PRETRAIN_STEPS steps) -> $MODEL"
		rm -rf "$MODEL"
		# shellcheck disable=SC2086 # PT_ARGS is a list of words
		"$FEDLORA" pretrain --model-config "$WORK/model-config.json" --data "$PT_DATA" \
			--out "$MODEL" --tokenizer "$TOK" $PT_ARGS --log-every 1000 >"$WORK/pretrain.log" 2>&1 ||
			{ tail -n 5 "$WORK/pretrain.log" >&2; die "pretrain failed (log: $WORK/pretrain.log)"; }
		printf '%s' "$want" >"$MODEL/.walkthrough-key"
	fi
fi
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
	[ -f "$MODEL/$f" ] || die "$MODEL/$f is missing"
done
"$FEDLORA" tokenize --model "$MODEL" --info >"$WORK/tokenizer-info.json" ||
	die "$MODEL: the tokenizer does not load"
stamp "model folder $MODEL: $(cat "$WORK/tokenizer-info.json")"

# b. chat data: 3 clients and a held-out file
DATA=$WORK/data
rm -rf "$DATA"
mkdir -p "$DATA"
python3 - "$DATA" "$NCLIENTS" "$PER_TOPIC" "$FORTUNES" <<'PY'
import hashlib, json, sys
out, nclients, per_topic, root = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
topics = ["computers", "science", "politics", "food"]
def records(path):  # fortune records of 20-170 characters, whitespace folded
    recs, cur = [], []
    for line in open(path, encoding="utf-8", errors="replace"):
        if line.rstrip("\n") == "%":
            t = " ".join("".join(cur).split())
            cur = []
            if 20 <= len(t) <= 170:
                recs.append(t)
        else:
            cur.append(line)
    return recs
key = lambda s: hashlib.sha256(s.encode()).hexdigest()
rows = []
for tp in topics:
    rows += [(r, tp) for r in sorted(records(f"{root}/{tp}"), key=key)[:per_topic]]
rows.sort(key=lambda x: key(x[0]))
q = "Which topic is this fortune from: computers, science, politics or food?\n\n"
files = [open(f"{out}/client-{k}.jsonl", "w") for k in range(nclients)]
files.append(open(f"{out}/eval.jsonl", "w"))
for i, (r, tp) in enumerate(rows):
    m = {"messages": [{"role": "user", "content": q + r}, {"role": "assistant", "content": tp}]}
    files[i % len(files)].write(json.dumps(m) + "\n")
PY
stamp "data $DATA: $(wc -l "$DATA"/*.jsonl | awk '{printf "%s%s %s", s, $2, $1; s=", "}' | sed "s|$DATA/||g")"

# c. keys, allow list, coordinator and clients over tcp on loopback
KEYS=$WORK/keys
RUN=$WORK/run
rm -rf "$RUN" "$KEYS"
mkdir -p "$KEYS"
"$FEDLORA" keygen --out "$KEYS/coordinator" >/dev/null 2>&1
: >"$KEYS/allow.txt"
k=0
while [ $k -lt $NCLIENTS ]; do
	"$FEDLORA" keygen --out "$KEYS/client-$k" >/dev/null 2>&1
	cat "$KEYS/client-$k.pub" >>"$KEYS/allow.txt"
	k=$((k + 1))
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="tcp://127.0.0.1:$port"
mkdir -p "$RUN"
fed_start=$(date +%s)
stamp "coordinator on $URL, $NCLIENTS clients, $ROUNDS rounds -> $RUN"
"$FEDLORA" coordinator --listen "$URL" --run-dir "$RUN" --key "$KEYS/coordinator.key" \
	--allow "$KEYS/allow.txt" --task lm --base-dir "$MODEL" --strategy fedit \
	--rounds "$ROUNDS" --clients-per-round $NCLIENTS --min-clients $NCLIENTS \
	--round-timeout 120 --rank "$RANK" --alpha $((RANK * 2)) --lora-targets "$TARGETS" \
	--optimizer adamw --lr "$LR" --local-steps "$LOCAL_STEPS" --batch-size "$BATCH" \
	--seq-len "$SEQ" --seed 1 >"$WORK/coordinator.out" 2>&1 &
cpid=$!
pids="$cpid"
k=0
while [ $k -lt $NCLIENTS ]; do
	"$FEDLORA" client --connect "$URL" --key "$KEYS/client-$k.key" \
		--coordinator-key "$KEYS/coordinator.pub" --task lm --client-index $k \
		--base "$MODEL" --data "$DATA/client-$k.jsonl" --no-state >"$WORK/client-$k.out" 2>&1 &
	pids="$pids $!"
	k=$((k + 1))
done
# wait until every process has exited; the first failure (or TIMEOUT
# seconds) ends the walkthrough
deadline=$(($(date +%s) + TIMEOUT))
left=$pids
while [ -n "$left" ]; do
	still=""
	for p in $left; do
		if kill -0 "$p" 2>/dev/null; then
			still="$still $p"
		elif ! wait "$p"; then
			tail -n 5 "$WORK/coordinator.out" "$WORK"/client-*.out >&2
			die "a process of the federated run failed (logs in $WORK)"
		fi
	done
	left=$still
	[ -z "$left" ] || [ "$(date +%s)" -lt "$deadline" ] ||
		die "the federated run took over $TIMEOUT s (logs in $WORK)"
	[ -z "$left" ] || sleep 0.2
done
pids=""
fed_s=$(($(date +%s) - fed_start))
n=$(wc -l <"$RUN/metrics.jsonl")
[ "$n" -eq "$ROUNDS" ] || die "metrics.jsonl has $n rounds, expected $ROUNDS"
stamp "federated run done: $ROUNDS rounds in $fed_s s"

# d. export the global adapter in the PEFT layout
PEFT=$WORK/peft
rm -rf "$PEFT"
"$FEDLORA" export --run-dir "$RUN" --out "$PEFT" --base "$MODEL" >"$WORK/export.out" 2>&1 ||
	{ cat "$WORK/export.out" >&2; die "export failed"; }
stamp "exported $PEFT: $(ls "$PEFT" | tr '\n' ' ')"

# e. held-out eval, base alone and base + adapter
"$FEDLORA" eval --base "$MODEL" --data "$DATA/eval.jsonl" --all --seq-len "$SEQ" --json \
	>"$WORK/eval-before.json" || die "eval of the base failed"
"$FEDLORA" eval --base "$MODEL" --adapter "$PEFT" --data "$DATA/eval.jsonl" --all \
	--seq-len "$SEQ" --json >"$WORK/eval-after.json" || die "eval with the adapter failed"
total_s=$(($(date +%s) - start))
rc=0
python3 - "$WORK" "$fed_s" "$total_s" <<'PY' || rc=$?
import json, os, sys
w, fed_s, total_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
b = json.load(open(f"{w}/eval-before.json"))
a = json.load(open(f"{w}/eval-after.json"))
m = [json.loads(l) for l in open(f"{w}/run/metrics.jsonl")]
cfg = json.load(open(f"{w}/peft/adapter_config.json"))
nbytes = os.path.getsize(f"{w}/peft/adapter_model.safetensors")
up = sum(r["bytes_up"] for r in m) / len(m)
down = sum(r["bytes_down"] for r in m) / len(m)
summary = {"loss_before": b["loss"], "loss_after": a["loss"], "acc_before": b["acc"],
           "acc_after": a["acc"], "eval_samples": a["seqs"], "eval_tokens": a["tokens"],
           "adapter_bytes": nbytes, "r": cfg["r"], "target_modules": cfg["target_modules"],
           "rounds": len(m), "bytes_up_per_round": up, "bytes_down_per_round": down,
           "federated_s": fed_s, "total_s": total_s}
json.dump(summary, open(f"{w}/summary.json", "w"), indent=1)
print()
print("held-out chat samples (eval.jsonl, %d samples, %d assistant tokens scored), "
      "LoRA r %d on %s, %d rounds x 3 clients" % (a["seqs"], a["tokens"], cfg["r"],
      ",".join(sorted(cfg["target_modules"])), len(m)))
print()
print("| | base | base + federated adapter |")
print("|---|---|---|")
print("| held-out loss (nats/token) | %.4f | %.4f |" % (b["loss"], a["loss"]))
print("| next-token accuracy | %.4f | %.4f |" % (b["acc"], a["acc"]))
print()
print("| adapter_model.safetensors | up / down per round (all clients) | federated run | whole script |")
print("|---|---|---|---|")
print("| %d bytes | %.1f / %.1f KB | %d s | %d s |" % (nbytes, up / 1e3, down / 1e3, fed_s, total_s))
sys.exit(0 if a["loss"] < b["loss"] else 3)
PY
[ $rc -eq 0 ] || die "the held-out loss did not drop (see $WORK/summary.json)"
stamp "done; summary in $WORK/summary.json"
