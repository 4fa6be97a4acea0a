#!/bin/sh
# tests/families_test.sh — the Qwen2, Qwen3 and Mistral model families end to
# end on the CPU backend (the fedlora command, a tiny byte-level model of
# each): `pretrain --model-config` of a config.json with that model_type
# trains and writes the family's extra tensors (q/k/v biases, q/k norm
# weights) and config fields; `eval` of the saved folder reproduces
# pretrain's final loss; a 2-client, 2-round lm sim with LoRA on q/k/v/o
# lowers the held-out loss; the PEFT export scores exactly like the run's
# adapter and its adapter_config.json names the targets; Mistral's sliding
# window refuses a longer --seq-len with a message (eval, sim). Well under a minute on
# two cores. Uses the fortunes packages (installed by make deps).
. tests/lib.sh
F=${FORTUNES:-/usr/share/games/fortunes}
if [ ! -f "$F/fortunes" ] || [ ! -d "$F/de" ] || [ ! -d "$F/es" ]; then
	skip families_all "fortunes packages not installed (make deps)"
	exit 0
fi
T=$TMPROOT
PRE="$F/fortunes,$F/wisdom,$F/work"

# json_get FILE KEY: a top-level value of a JSON object.
json_get() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# family FAMILY: configs/byte-tiny.json turned into that model_type, with
# the fields its Hub configs carry (Qwen3: head_dim 16, wider than
# hidden/heads = 8; Mistral: a sliding window of 32 tokens)
family() {
	python3 - configs/byte-tiny.json "$T/$1.json" "$1" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
fam = sys.argv[3]
c["model_type"] = fam
c["architectures"] = [{"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                       "mistral": "MistralForCausalLM"}[fam]]
if fam in ("qwen2", "qwen3"):
    c.update(use_sliding_window=False, sliding_window=4096, max_window_layers=28)
if fam == "qwen3":
    c.update(head_dim=16, attention_bias=False)
if fam == "mistral":
    c["sliding_window"] = 32
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
}

# tensors DIR NAME...: every NAME is a tensor of DIR/model.safetensors
tensors() {
	python3 - "$@" <<'PY'
import json, struct, sys
b = open(sys.argv[1] + "/model.safetensors", "rb").read(1 << 20)
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
missing = [n for n in sys.argv[2:] if n not in h]
print("# missing: %s" % missing if missing else "# tensors present")
sys.exit(1 if missing else 0)
PY
}

for fam in qwen2 qwen3 mistral; do
	family "$fam"
	SEQ=64
	[ "$fam" = mistral ] && SEQ=32
	B="$T/$fam-base"
	# 1. pretrain writes the family's folder
	if "$FEDLORA" pretrain --model-config "$T/$fam.json" --data "$PRE" --out "$B" --steps 40 \
		--batch-size 8 --seq-len "$SEQ" --lr 1e-2 --eval-seqs 16 --seed 3 \
		>"$T/$fam-pt.out" 2>"$T/$fam-pt.err" &&
		[ "$(json_get "$B/config.json" model_type)" = "$fam" ]; then
		ok "${fam}_pretrain"
	else
		cat "$T/$fam-pt.err"
		notok "${fam}_pretrain"
		continue
	fi
	case $fam in
	qwen2) want="model.layers.1.self_attn.q_proj.bias model.layers.1.self_attn.k_proj.bias model.layers.0.self_attn.v_proj.bias" ;;
	qwen3) want="model.layers.1.self_attn.q_norm.weight model.layers.0.self_attn.k_norm.weight" ;;
	mistral) want="model.layers.1.self_attn.q_proj.weight" ;;
	esac
	# shellcheck disable=SC2086
	if tensors "$B" $want; then ok "${fam}_extra_tensors_saved"; else notok "${fam}_extra_tensors_saved"; fi
	# 2. eval reproduces pretrain's final held-out loss
	l1=$(json_get "$B/pretrain.json" final_eval_loss)
	if "$FEDLORA" eval --base "$B" --data "$PRE" --seq-len "$SEQ" --max-seqs 16 --json >"$T/$fam-ev.json" &&
		python3 -c 'import sys; a,b=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b) <= 1e-5*abs(b) else 1)' \
			"$(json_get "$T/$fam-ev.json" loss)" "$l1"; then
		ok "${fam}_eval_matches_pretrain"
	else
		echo "# eval $(json_get "$T/$fam-ev.json" loss 2>/dev/null) vs pretrain $l1"
		notok "${fam}_eval_matches_pretrain"
	fi
	# 3. federated LoRA on the family lowers a client's held-out loss
	R="$T/$fam-run"
	if "$FEDLORA" sim --task lm --clients 2 --rounds 2 --strategy fedit --run-dir "$R" \
		--base "$B" --data-per-client "$F/de;$F/es" --seq-len "$SEQ" --rank 4 --alpha 8 \
		--lora-targets q_proj,k_proj,v_proj,o_proj --optimizer adamw --lr 0.01 \
		--local-steps 6 --batch-size 8 --seed 11 --round-timeout 120 --quiet \
		>"$R.out" 2>&1; then
		b=$("$FEDLORA" eval --base "$B" --data "$F/de" --seq-len "$SEQ" --max-seqs 48 --json |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
		a=$("$FEDLORA" eval --base "$B" --data "$F/de" --seq-len "$SEQ" --max-seqs 48 --json \
			--adapter "$R/global/round-000002.safetensors" |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
		echo "# $fam client 0 (de): held-out loss $b -> $a"
		if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$a" "$b"; then
			ok "${fam}_sim_lowers_loss"
		else
			notok "${fam}_sim_lowers_loss"
		fi
	else
		tail -n 5 "$R.out"
		notok "${fam}_sim_lowers_loss"
	fi
	# 4. the PEFT export scores like the run's own adapter
	if "$FEDLORA" export --run-dir "$R" --out "$R/peft" >/dev/null 2>&1 &&
		"$FEDLORA" eval --base "$B" --data "$F/es" --seq-len "$SEQ" --max-seqs 16 --json \
			--adapter "$R/peft" >"$T/$fam-e1.json" &&
		"$FEDLORA" eval --base "$B" --data "$F/es" --seq-len "$SEQ" --max-seqs 16 --json \
			--adapter "$R/global/round-000002.safetensors" >"$T/$fam-e2.json" &&
		[ "$(json_get "$T/$fam-e1.json" loss)" = "$(json_get "$T/$fam-e2.json" loss)" ] &&
		python3 - "$R/peft/adapter_config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
assert c["peft_type"] == "LORA" and c["task_type"] == "CAUSAL_LM", c
assert sorted(c["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"], c
assert c["bias"] == "none", c
PY
	then
		ok "${fam}_export"
	else
		notok "${fam}_export"
	fi
done

# 5. Mistral's window of 32 tokens: a longer sequence is refused, naming it
if [ -f "$T/mistral-base/model.safetensors" ]; then
	"$FEDLORA" eval --base "$T/mistral-base" --data "$PRE" --seq-len 64 --max-seqs 4 \
		>/dev/null 2>"$T/win.err"
	rc=$?
	if [ "$rc" -ne 0 ] && grep -q "64 tokens is longer than the model's sliding window of 32 tokens" "$T/win.err" &&
		tail -n 1 "$T/win.err" | grep -q "fedlora eval: --seq-len 64 is longer than the model's sliding window"; then
		ok mistral_window_refuses_longer_seq
	else
		echo "# rc $rc"
		cat "$T/win.err"
		notok mistral_window_refuses_longer_seq
	fi
	# a sim at that length stops at the start, the coordinator naming the window
	if "$FEDLORA" sim --task lm --clients 2 --rounds 1 --strategy fedit --run-dir "$T/winrun" \
		--base "$T/mistral-base" --data-per-client "$F/de;$F/es" --seq-len 64 --quiet \
		>"$T/winrun.out" 2>&1; then
		notok mistral_window_refuses_sim
	elif cat "$T/winrun"/coordinator*.log 2>/dev/null |
		grep -q "seq_len: 64 tokens is longer than the model's sliding window of 32 tokens"; then
		ok mistral_window_refuses_sim
	else
		cat "$T/winrun.out"
		notok mistral_window_refuses_sim
	fi
fi
exit $t_failed
