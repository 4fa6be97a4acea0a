#!/bin/sh
# tests/hf_tok_test.sh — a model folder with a Hugging Face tokenizer.json
# end to end (tests/fixtures/tok/bytebpe, a byte-level BPE of 3005 ids): a
# tiny Llama of vocab_size 3072 from `fedlora pretrain --tokenizer`, trained
# on the tokenizer's ids, with its files copied in; `fedlora tokenize` encodes, decodes and reports the hash;
# `fedlora eval` scores text and chat samples (Qwen2.5 template, assistant
# tokens only) through the tokenizer; a 2-client, 2-round lm
# sim on the folder runs to the end with the coordinator pinning the
# tokenizer's hash; `fedlora export` copies the tokenizer files next to the
# adapter; a client whose base has another tokenizer is refused by the
# coordinator and stops, its last line naming the tokenizer. `fedlora eval
# --all` scores every sample of a file.
. tests/lib.sh
T=$TMPROOT
FIX=tests/fixtures/tok
mkdir -p "$T/data"
python3 - "$T/data" <<'PY'
import random, sys
r = random.Random(5)
w = "the federated model learns from private data on many clients while the server only sees adapters".split()
for k in range(2):
    with open(f"{sys.argv[1]}/c{k}.txt", "w") as f:
        for _ in range(300):
            f.write(" ".join(r.choice(w) for _ in range(r.randint(5, 15))) + ".\n\n")
PY
sed 's/"vocab_size": 264/"vocab_size": 3072/' configs/byte-tiny.json >"$T/cfg.json"

# 1. a BPE model folder: `fedlora pretrain --tokenizer` trains on the
#    tokenizer's ids (vocab_size 3072 >= 3005) and copies its files in
if "$FEDLORA" pretrain --model-config "$T/cfg.json" --data "$T/data/c0.txt" --out "$T/bpe" \
	--tokenizer "$FIX/bytebpe" --steps 40 --batch-size 4 --seq-len 32 --lr 1e-2 --seed 1 \
	>"$T/pt.out" 2>&1 &&
	cmp -s "$T/bpe/tokenizer.json" "$FIX/bytebpe/tokenizer.json" &&
	python3 - "$T/bpe" <<'PY'
import json, sys
d = sys.argv[1]
p = json.load(open(f"{d}/pretrain.json"))
c = json.load(open(f"{d}/config.json"))
print("# pretrain on bpe ids: held-out loss %.3f -> %.3f" % (p["initial_eval_loss"], p["final_eval_loss"]))
sys.exit(0 if p["tokenizer"] == "bpe-byte" and p["final_eval_loss"] < p["initial_eval_loss"] - 1
         and c["eos_token_id"] == 3002 and c["vocab_size"] == 3072 else 1)
PY
then
	ok pretrain_with_bpe_tokenizer
else
	tail -n 5 "$T/pt.out"
	notok pretrain_with_bpe_tokenizer
fi
mkdir -p "$T/bpe2"
cp "$T/bpe/config.json" "$T/bpe/model.safetensors" "$T/bpe2/"
cp "$FIX/spbpe/tokenizer.json" "$FIX/spbpe/tokenizer_config.json" "$T/bpe2/"
if ! "$FEDLORA" pretrain --model-config configs/byte-tiny.json --data "$T/data/c0.txt" \
	--out "$T/x" --tokenizer "$FIX/bytebpe" --steps 1 >/dev/null 2>"$T/ptv.err" &&
	grep -q "vocab_size 264 is below the 3005 ids of the bpe-byte tokenizer" "$T/ptv.err"; then
	ok pretrain_refuses_vocab_below_tokenizer
else
	cat "$T/ptv.err"; notok pretrain_refuses_vocab_below_tokenizer
fi

# 2. fedlora tokenize: ids, decode back, info with the hash
info=$("$FEDLORA" tokenize --model "$T/bpe" --info)
hash=$(echo "$info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
printf 'Hello world\n<|im_start|>hi<|im_end|>\n' >"$T/in.txt"
"$FEDLORA" tokenize --model "$T/bpe" --special "$T/in.txt" >"$T/ids.txt"
"$FEDLORA" tokenize --model "$T/bpe" --decode "$T/ids.txt" >"$T/back.txt"
if [ "$(head -n 1 "$T/ids.txt")" = "39 301 385 1879" ] && cmp -s "$T/in.txt" "$T/back.txt" &&
	[ "$(sed -n 2p "$T/ids.txt" | cut -d' ' -f1)" = 3001 ] &&
	echo "$info" | grep -q '"kind":"bpe-byte","vocab":3005'; then
	ok tokenize_encodes_decodes_bpe
else
	echo "# $info"; cat "$T/ids.txt" "$T/back.txt"
	notok tokenize_encodes_decodes_bpe
fi
if "$FEDLORA" tokenize --help | grep -q -- '--decode'; then ok tokenize_help; else notok tokenize_help; fi

# 3. eval reads text through the tokenizer: it reproduces pretrain's final
#    held-out loss on the same data (default --eval-seqs 64)
if "$FEDLORA" eval --base "$T/bpe" --data "$T/data/c0.txt" --seq-len 32 --max-seqs 64 --json \
	>"$T/ev.json" 2>"$T/ev.err" &&
	python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["loss"]; b=json.load(open(sys.argv[2]))["final_eval_loss"]; print("# eval %.6f, pretrain %.6f" % (a, b)); sys.exit(0 if abs(a-b) <= 1e-5*abs(b) else 1)' "$T/ev.json" "$T/bpe/pretrain.json"; then
	ok eval_matches_pretrain_on_bpe_model
else
	cat "$T/ev.err"; notok eval_matches_pretrain_on_bpe_model
fi

# 3b. chat data through the BPE tokenizer and a chat template (Qwen2.5's):
#     loss only on the assistant tokens (about 8 a sample here, of about 30)
mkdir -p "$T/chat"
cp "$T/bpe/config.json" "$T/bpe/model.safetensors" "$T/bpe/tokenizer.json" "$T/chat/"
python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
c = json.load(open("tests/fixtures/tok/bytebpe/tokenizer_config.json"))
c["chat_template"] = open("tests/chat/qwen2_5.jinja").read()
json.dump(c, open(f"{t}/chat/tokenizer_config.json", "w"))
with open(f"{t}/chat.jsonl", "w") as f:
    for i in range(40):
        f.write(json.dumps({"messages": [{"role": "user", "content": "hello the model %d" % i},
                                         {"role": "assistant", "content": "private data stays %d" % i}]}) + "\n")
PY
if "$FEDLORA" eval --base "$T/chat" --data "$T/chat.jsonl" --seq-len 64 --json >"$T/ch.json" 2>"$T/ch.err" &&
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); k=r["tokens"]/r["seqs"]; print("# chat: %d seqs, %.1f loss tokens each" % (r["seqs"], k)); sys.exit(0 if r["seqs"] > 0 and 4 <= k <= 12 else 1)' "$T/ch.json"; then
	ok eval_chat_masks_on_bpe_model
else
	cat "$T/ch.err" "$T/ch.json"; notok eval_chat_masks_on_bpe_model
fi

# 3c. eval --all scores every sample of the file (a test file no client
#     trained on), not only the held-out split
if "$FEDLORA" eval --base "$T/chat" --data "$T/chat.jsonl" --seq-len 64 --all --json \
	>"$T/cha.json" 2>"$T/cha.err" &&
	python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); h=json.load(open(sys.argv[2])); print("# --all: %d of %d rows, held-out split %d" % (a["seqs"], a["rows"], h["seqs"])); sys.exit(0 if a["all"] and a["seqs"] == a["rows"] == 40 and h["seqs"] < 40 and a["heldout_seqs"] == h["seqs"] else 1)' "$T/cha.json" "$T/ch.json"; then
	ok eval_all_scores_every_sample
else
	cat "$T/cha.err" "$T/cha.json"; notok eval_all_scores_every_sample
fi

# 4. a 2-client lm sim on the BPE folder; the coordinator pins the hash
if "$FEDLORA" sim --task lm --clients 2 --rounds 2 --strategy ffa --run-dir "$T/run" \
	--base "$T/bpe" --data-per-client "$T/data/c0.txt;$T/data/c1.txt" --seq-len 32 --rank 2 \
	--alpha 4 --lora-targets q_proj,v_proj --lr 0.005 --local-steps 2 --batch-size 4 \
	--seed 3 --round-timeout 120 --quiet >"$T/sim.out" 2>&1 &&
	[ "$(wc -l <"$T/run/metrics.jsonl")" = 2 ]; then
	ok sim_lm_on_bpe_model
else
	tail -n 5 "$T/sim.out"; tail -n 5 "$T/run/client-0.log" 2>/dev/null
	notok sim_lm_on_bpe_model
fi
h16=$(echo "$hash" | cut -c1-16)
if grep -q "tokenizer bpe-byte pinned, blake2b-256 $h16" "$T/run/coordinator-stderr.log" 2>/dev/null ||
	grep -rq "tokenizer bpe-byte pinned, blake2b-256 $h16" "$T/run" 2>/dev/null; then
	ok coordinator_pins_bpe_tokenizer_hash
else
	grep -r "tokenizer" "$T/run"/*.log | head -n 3
	notok coordinator_pins_bpe_tokenizer_hash
fi

# 5. export copies the tokenizer files next to the PEFT adapter
if "$FEDLORA" export --run-dir "$T/run" --out "$T/peft" >"$T/ex.out" 2>&1 &&
	cmp -s "$T/peft/tokenizer.json" "$T/bpe/tokenizer.json" &&
	cmp -s "$T/peft/tokenizer_config.json" "$T/bpe/tokenizer_config.json" &&
	[ -f "$T/peft/adapter_model.safetensors" ] && [ ! -f "$T/peft/special_tokens_map.json" ]; then
	ok export_copies_tokenizer_files
else
	cat "$T/ex.out"; ls "$T/peft"
	notok export_copies_tokenizer_files
fi

# 6. a client whose base folder has another tokenizer is refused and stops
run="$T/mis"
mkdir -p "$run/keys"
"$FEDLORA" keygen --out "$run/keys/coordinator" >/dev/null 2>&1
"$FEDLORA" keygen --out "$run/keys/client-0" >/dev/null 2>&1
url="tcp://127.0.0.1:$(free_port)"
"$FEDLORA" coordinator --listen "$url" --run-dir "$run" --key "$run/keys/coordinator.key" \
	--task lm --base-dir "$T/bpe" --strategy ffa --rounds 1 --clients-per-round 1 \
	--min-clients 1 --round-timeout 30 --enroll-any --rank 2 --alpha 4 \
	--lora-targets q_proj,v_proj >"$run/coord.log" 2>&1 &
cpid=$!
"$FEDLORA" client --connect "$url" --key "$run/keys/client-0.key" --task lm --client-index 0 \
	--data "$T/data/c0.txt" --base "$T/bpe2" >"$run/client.log" 2>&1 &
clpid=$!
if wait_pid "$clpid" 60 && [ "$wst" != 0 ] &&
	grep -q "tokenizer mismatch: coordinator pins $(echo "$hash" | cut -c1-8), client has" "$run/client.log" &&
	tail -n 1 "$run/client.log" | grep -q "^fedlora client: tokenizer mismatch: .*/tokenizer.json)$"; then
	ok coordinator_refuses_other_tokenizer
else
	echo "# client status $wst"; tail -n 3 "$run/client.log"; tail -n 3 "$run/coord.log"
	notok coordinator_refuses_other_tokenizer
fi
stop_pids "$cpid" "$clpid"
exit $t_failed
