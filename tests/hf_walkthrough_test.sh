#!/bin/sh
# tests/hf_walkthrough_test.sh — scripts/hf_walkthrough.sh, shrunk by its
# knobs (a 10-step stand-in model, 60 chat samples, 2 rounds of 3 local
# steps, LoRA r 4 on q,k,v): the script exits 0; the export folder holds
# adapter_model.safetensors and an adapter_config.json with the r and
# target_modules asked for, and every tensor of those modules; eval with the
# adapter has a lower held-out loss than the base; metrics.jsonl has one line
# per round; and a client whose folder has another tokenizer.json is refused
# by the coordinator of that model with a reason naming the tokenizer
# (client output and coordinator log), and one whose folder lacks
# tokenizer.json is told so, and one with other base weights is refused.
# docs/huggingface.md quotes the refusal texts
# checked here.
. tests/lib.sh
W=$TMPROOT/w
if HFW_PRETRAIN_STEPS=10 HFW_PRETRAIN_BATCH=4 HFW_PRETRAIN_EVAL_SEQS=8 HFW_PER_TOPIC=15 HFW_ROUNDS=2 \
	HFW_LOCAL_STEPS=3 HFW_BATCH=4 HFW_LR=0.02 HFW_RANK=4 HFW_TARGETS=q_proj,k_proj,v_proj \
	HFW_TIMEOUT=60 sh scripts/hf_walkthrough.sh "$W" >"$TMPROOT/w.out" 2>&1; then
	ok walkthrough_runs
else
	tail -n 15 "$TMPROOT/w.out"
	notok walkthrough_runs
fi
grep '^|' "$TMPROOT/w.out" | sed 's/^/# /'

# the export: PEFT files, r and target_modules as asked, every tensor there
if python3 - "$W/peft" <<'PY'
import json, struct, sys
d = sys.argv[1]
c = json.load(open(f"{d}/adapter_config.json"))
raw = open(f"{d}/adapter_model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
names = set(json.loads(raw[8:8 + n])) - {"__metadata__"}
want = {f"base_model.model.model.layers.{l}.self_attn.{m}.lora_{x}.weight"
        for l in range(2) for m in ("q_proj", "k_proj", "v_proj") for x in "AB"}
print("# adapter_config r %s, target_modules %s, %d tensors" % (c["r"], c["target_modules"], len(names)))
sys.exit(0 if c["r"] == 4 and sorted(c["target_modules"]) == ["k_proj", "q_proj", "v_proj"]
         and c["peft_type"] == "LORA" and names == want else 1)
PY
then
	ok export_has_peft_files_r_and_targets
else
	ls -la "$W/peft" 2>&1 | sed 's/^/# /'
	notok export_has_peft_files_r_and_targets
fi

# held-out loss with the adapter below the base's, on the same samples
if python3 - "$W" <<'PY'
import json, sys
b = json.load(open(f"{sys.argv[1]}/eval-before.json"))
a = json.load(open(f"{sys.argv[1]}/eval-after.json"))
print("# held-out loss %.4f -> %.4f over %d samples" % (b["loss"], a["loss"], a["seqs"]))
sys.exit(0 if a["loss"] < b["loss"] and a["seqs"] == b["seqs"] >= 10 and a["all"] else 1)
PY
then
	ok eval_after_below_before
else
	notok eval_after_below_before
fi

if [ -f "$W/run/metrics.jsonl" ] && [ "$(wc -l <"$W/run/metrics.jsonl")" = 2 ] &&
	python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; sys.exit(0 if [x["round"] for x in r]==[1,2] and all(x["reported"]==3 and x["bytes_up"]>0 for x in r) else 1)' "$W/run/metrics.jsonl"; then
	ok metrics_has_every_round
else
	head -n 3 "$W/run/metrics.jsonl" 2>/dev/null
	notok metrics_has_every_round
fi

# a client with another tokenizer.json (same vocabulary size) is refused
M=$W/model
O=$TMPROOT/other
mkdir -p "$O" "$TMPROOT/k"
cp "$M/config.json" "$M/model.safetensors" "$M/tokenizer_config.json" "$O/"
cp tests/fixtures/tok/bytebpe/tokenizer.json "$O/"
"$FEDLORA" keygen --out "$TMPROOT/k/coordinator" >/dev/null 2>&1
"$FEDLORA" keygen --out "$TMPROOT/k/client" >/dev/null 2>&1
hash=$("$FEDLORA" tokenize --model "$M" --info | python3 -c 'import json,sys; print(json.load(sys.stdin)["hash"][:8])')
url="tcp://127.0.0.1:$(free_port)"
"$FEDLORA" coordinator --listen "$url" --run-dir "$TMPROOT/mis" --key "$TMPROOT/k/coordinator.key" \
	--task lm --base-dir "$M" --strategy fedit --rounds 1 --clients-per-round 1 --min-clients 1 \
	--round-timeout 30 --enroll-any --rank 4 --alpha 8 >"$TMPROOT/coord.out" 2>&1 &
cpid=$!
"$FEDLORA" client --connect "$url" --key "$TMPROOT/k/client.key" --task lm --client-index 0 \
	--data "$W/data/client-0.jsonl" --base "$O" >"$TMPROOT/client.out" 2>&1 &
clpid=$!
if wait_pid "$clpid" 30 && [ "$wst" != 0 ] &&
	tail -n 1 "$TMPROOT/client.out" |
	grep -q "^fedlora client: tokenizer mismatch: coordinator pins $hash, client has .* ($O/tokenizer.json)$" &&
	grep -q "tokenizer mismatch: coordinator pins $hash" "$TMPROOT/mis/coordinator.log" "$TMPROOT/coord.out"; then
	ok other_tokenizer_refused_naming_it
else
	echo "# client status $wst"
	tail -n 3 "$TMPROOT/client.out" "$TMPROOT/coord.out" | sed 's/^/# /'
	notok other_tokenizer_refused_naming_it
fi
# a client whose folder lacks tokenizer.json (so bytes) is told so
N=$TMPROOT/notok
mkdir -p "$N"
cp "$M/config.json" "$M/model.safetensors" "$M/tokenizer_config.json" "$N/"
"$FEDLORA" client --connect "$url" --key "$TMPROOT/k/client.key" --task lm --client-index 0 \
	--data "$W/data/client-0.jsonl" --base "$N" >"$TMPROOT/client2.out" 2>&1 &
clpid=$!
if wait_pid "$clpid" 30 && [ "$wst" != 0 ] && tail -n 1 "$TMPROOT/client2.out" |
	grep -q "^fedlora client: tokenizer mismatch: .* ($N: no tokenizer.json, so bytes)$"; then
	ok missing_tokenizer_json_named
else
	echo "# client status $wst"
	tail -n 3 "$TMPROOT/client2.out" | sed 's/^/# /'
	notok missing_tokenizer_json_named
fi
# a client whose model.safetensors differs (one byte of a weight) is
# refused before it trains: LoRA updates of other weights do not average
B=$TMPROOT/otherw
mkdir -p "$B"
cp "$M/config.json" "$M/model.safetensors" "$M/tokenizer.json" "$M/tokenizer_config.json" "$B/"
python3 -c 'import sys; f=open(sys.argv[1], "r+b"); f.seek(-1, 2); b=f.read(1); f.seek(-1, 2); f.write(bytes([b[0] ^ 1]))' "$B/model.safetensors"
"$FEDLORA" client --connect "$url" --key "$TMPROOT/k/client.key" --task lm --client-index 0 \
	--data "$W/data/client-0.jsonl" --base "$B" >"$TMPROOT/client3.out" 2>&1 &
clpid=$!
if wait_pid "$clpid" 30 && [ "$wst" != 0 ] && tail -n 1 "$TMPROOT/client3.out" |
	grep -q "^fedlora client: base weights mismatch: the coordinator's model has weights hash [0-9a-f]\{8\}, $B has [0-9a-f]\{8\}$"; then
	ok other_base_weights_refused
else
	echo "# client status $wst"
	tail -n 3 "$TMPROOT/client3.out" | sed 's/^/# /'
	notok other_base_weights_refused
fi
stop_pids "$cpid" "$clpid"
exit $t_failed
