#!/bin/sh
# tests/lm_test.sh — the language-model path end to end, fast (well under a
# minute on two cores): a short `fedlora pretrain` of a tiny byte-level model
# lowers the held-out loss and `fedlora eval` reproduces it from the saved
# files; --grad-checkpoint gives the same weights; a llama3 rope scaling
# round-trips through pretrain and eval; a 3-client, 3-round `fedlora sim --task lm` lowers every client's
# held-out loss; the same seed gives the same run twice; bad inputs are
# refused with a message. Uses the fortunes packages (installed by make deps).
. tests/lib.sh
F=${FORTUNES:-/usr/share/games/fortunes}
if [ ! -f "$F/fortunes" ] || [ ! -d "$F/de" ] || [ ! -d "$F/es" ] || [ ! -d "$F/it" ]; then
	skip lm_all "fortunes packages not installed (make deps)"
	exit 0
fi
T=$TMPROOT
CFG=configs/byte-tiny.json
PRE="$F/fortunes,$F/wisdom,$F/work,$F/science"

# json_get FILE KEY: a top-level number of a JSON object (one per file).
json_get() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
# lt A B: A < B (floats).
lt() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$1" "$2"; }

# 1. pretrain lowers the held-out loss
if "$FEDLORA" pretrain --model-config "$CFG" --data "$PRE" --out "$T/base" --steps 150 \
	--batch-size 8 --seq-len 64 --lr 1e-2 --eval-seqs 64 --seed 3 >"$T/pt.out" 2>"$T/pt.err"; then
	l0=$(json_get "$T/base/pretrain.json" initial_eval_loss)
	l1=$(json_get "$T/base/pretrain.json" final_eval_loss)
	echo "# pretrain: held-out loss $l0 -> $l1"
	if lt "$l1" "$(python3 -c "print($l0 - 1.0)")"; then ok pretrain_lowers_loss; else notok pretrain_lowers_loss; fi
else
	cat "$T/pt.err"
	notok pretrain_lowers_loss
fi

# 1b. activation checkpointing recomputes the same values: a short pretrain
# with --grad-checkpoint writes the same weights, byte for byte
if "$FEDLORA" pretrain --model-config "$CFG" --data "$PRE" --out "$T/ck0" --steps 10 \
	--batch-size 8 --seq-len 64 --lr 1e-2 --eval-seqs 8 --seed 3 >/dev/null 2>"$T/ck0.err" &&
	"$FEDLORA" pretrain --model-config "$CFG" --data "$PRE" --out "$T/ck1" --steps 10 \
		--batch-size 8 --seq-len 64 --lr 1e-2 --eval-seqs 8 --seed 3 --grad-checkpoint \
		>/dev/null 2>"$T/ck1.err" &&
	cmp -s "$T/ck0/model.safetensors" "$T/ck1/model.safetensors"; then
	ok pretrain_grad_checkpoint_same_weights
else
	cat "$T/ck0.err" "$T/ck1.err"
	notok pretrain_grad_checkpoint_same_weights
fi

# 1c. Llama 3.1/3.2 rope scaling (rope_type llama3) survives pretrain's
# config.json, eval of the saved folder reproduces pretrain's final loss
# to 1e-7 (the scaling is read back and used: the same weights without it
# give a loss 1.7e-5 away, measured; a tiny byte model trained 40 steps
# uses positions little), and
# another rope type is refused naming the field. head_dim 8, theta 1e4,
# original context 8: wavelengths 6.3, 63, 628, 6283, all in the low band
# (divided by 8).
python3 - "$CFG" "$T/llama3.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["rope_scaling"] = {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8, "rope_type": "llama3"}
json.dump(c, open(sys.argv[2], "w"))
PY
if "$FEDLORA" pretrain --model-config "$T/llama3.json" --data "$PRE" --out "$T/l3" --steps 40 \
	--batch-size 8 --seq-len 64 --lr 1e-2 --eval-seqs 16 --seed 3 >/dev/null 2>"$T/l3.err" &&
	python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["rope_scaling"]; b=json.load(open(sys.argv[2]))["rope_scaling"]; sys.exit(0 if a == b else 1)' \
		"$T/llama3.json" "$T/l3/config.json"; then
	ok pretrain_keeps_llama3_rope_scaling
else
	cat "$T/l3.err"
	notok pretrain_keeps_llama3_rope_scaling
fi
if [ -f "$T/l3/model.safetensors" ] &&
	"$FEDLORA" eval --base "$T/l3" --data "$PRE" --seq-len 64 --max-seqs 16 --json >"$T/l3ev.json"; then
	la=$(json_get "$T/l3ev.json" loss)
	lp=$(json_get "$T/l3/pretrain.json" final_eval_loss)
	mkdir -p "$T/l3plain" && cp "$T/l3/model.safetensors" "$T/l3plain/"
	python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["rope_scaling"]=None; json.dump(c, open(sys.argv[2], "w"))' \
		"$T/l3/config.json" "$T/l3plain/config.json"
	lb=$("$FEDLORA" eval --base "$T/l3plain" --data "$PRE" --seq-len 64 --max-seqs 16 --json |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
	echo "# llama3 rope: pretrain $lp, eval $la, same weights without the scaling $lb"
	if python3 -c 'import sys; a,p,b=map(float,sys.argv[1:]); sys.exit(0 if abs(a-p) <= 1e-7*abs(p) and abs(a-b) > 3e-6 else 1)' \
		"$la" "$lp" "$lb"; then
		ok eval_uses_llama3_rope_scaling
	else
		notok eval_uses_llama3_rope_scaling
	fi
else
	notok eval_uses_llama3_rope_scaling
fi
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["rope_scaling"]={"rope_type":"yarn","factor":4.0}; json.dump(c, open(sys.argv[1], "w"))' \
	"$T/l3plain/config.json"
if "$FEDLORA" eval --base "$T/l3plain" --data "$PRE" --seq-len 64 --max-seqs 4 >/dev/null 2>"$T/yarn.err"; then
	notok yarn_rope_refused
elif grep -q 'config.json: "rope_scaling.rope_type" = "yarn" is not supported' "$T/yarn.err"; then
	ok yarn_rope_refused
else
	cat "$T/yarn.err"
	notok yarn_rope_refused
fi

# 2. eval of the saved model reproduces pretrain's final held-out loss
if [ -f "$T/base/model.safetensors" ] &&
	"$FEDLORA" eval --base "$T/base" --data "$PRE" --seq-len 64 --max-seqs 64 --json >"$T/ev.json"; then
	le=$(json_get "$T/ev.json" loss)
	if python3 -c 'import sys; a,b=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b) <= 1e-5*abs(b) else 1)' "$le" "$l1"; then
		ok eval_matches_pretrain
	else
		echo "# eval $le vs pretrain $l1"
		notok eval_matches_pretrain
	fi
else
	notok eval_matches_pretrain
fi

# 3. a 3-client, 3-round lm sim lowers every client's held-out loss
CLIENTS="$F/de;$F/es;$F/it"
sim() {
	"$FEDLORA" sim --task lm --clients 3 --rounds 3 --strategy fedit --run-dir "$1" \
		--base "$T/base" --data-per-client "$CLIENTS" --seq-len 64 --rank 4 --alpha 8 \
		--lora-targets q_proj,k_proj,v_proj,o_proj --optimizer adamw --lr 0.005 \
		--local-steps 8 --batch-size 8 --seed 11 --round-timeout 120 --quiet \
		>"$1.out" 2>&1
}
if sim "$T/run1"; then
	good=1
	i=0
	for d in de es it; do
		b=$("$FEDLORA" eval --base "$T/base" --data "$F/$d" --seq-len 64 --max-seqs 96 --json |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
		a=$("$FEDLORA" eval --base "$T/base" --data "$F/$d" --seq-len 64 --max-seqs 96 --json \
			--adapter "$T/run1/global/round-000003.safetensors" |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
		echo "# client $i ($d): held-out loss $b -> $a"
		lt "$a" "$b" || good=0
		i=$((i + 1))
	done
	if [ "$good" = 1 ]; then ok sim_lowers_every_client_loss; else notok sim_lowers_every_client_loss; fi
else
	tail -n 5 "$T/run1.out"; tail -n 5 "$T/run1/client-0.log" 2>/dev/null
	notok sim_lowers_every_client_loss
fi

# 3b. the PEFT export of the final adapter scores exactly like the run's own file
if [ -f "$T/run1/global/round-000003.safetensors" ] &&
	"$FEDLORA" export --run-dir "$T/run1" --out "$T/run1/peft" >/dev/null &&
	"$FEDLORA" eval --base "$T/base" --data "$F/es" --seq-len 64 --max-seqs 32 --json \
		--adapter "$T/run1/peft" >"$T/e1.json" &&
	"$FEDLORA" eval --base "$T/base" --data "$F/es" --seq-len 64 --max-seqs 32 --json \
		--adapter "$T/run1/global/round-000003.safetensors" >"$T/e2.json" &&
	[ "$(json_get "$T/e1.json" loss)" = "$(json_get "$T/e2.json" loss)" ]; then
	ok eval_peft_export_equals_run_adapter
else
	notok eval_peft_export_equals_run_adapter
fi

# 4. the same seed gives the same run: the adapters are equal bit for bit (the
#    coordinator folds updates in arrival order, into a double-precision sum
#    that makes the order invisible in the float result)
if [ -f "$T/run1/global/round-000003.safetensors" ] && sim "$T/run2"; then
	if python3 - "$T/run1" "$T/run2" <<'PY'
import json, struct, sys
from array import array
def tensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        a = array("f"); a.frombytes(b[8 + n + s:8 + n + e]); out[k] = a
    return out
r1, r2 = sys.argv[1], sys.argv[2]
worst = 0.0
for rnd in range(4):
    p = "/global/round-%06d.safetensors" % rnd
    t1, t2 = tensors(r1 + p), tensors(r2 + p)
    assert t1.keys() == t2.keys(), "tensor names differ"
    for k in t1:
        scale = max(1e-3, max(abs(x) for x in t1[k]))
        worst = max(worst, max(abs(x - y) for x, y in zip(t1[k], t2[k])) / scale)
m1 = [json.loads(l) for l in open(r1 + "/metrics.jsonl")]
m2 = [json.loads(l) for l in open(r2 + "/metrics.jsonl")]
assert len(m1) == len(m2) == 3, "metrics lines"
for a, b in zip(m1, m2):
    for key in ("train_loss", "eval_loss", "eval_before"):
        if key in a:
            assert abs(a[key] - b[key]) <= 1e-4 * abs(a[key]), (key, a[key], b[key])
print("# same seed: max relative adapter difference %.2e" % worst)
sys.exit(0 if worst == 0 else 1)
PY
	then ok same_seed_same_run; else notok same_seed_same_run; fi
else
	notok same_seed_same_run
fi

# 4b. sample-level DP-SGD in the lm task (Poisson sampling, per-example
#     clipping, noise): the run completes with an epsilon and finite losses
if [ -f "$T/base/model.safetensors" ] &&
	"$FEDLORA" sim --task lm --clients 2 --rounds 2 --strategy ffa --run-dir "$T/rundp" \
		--base "$T/base" --data-per-client "$F/es;$F/it" --seq-len 64 --rank 4 --alpha 8 \
		--optimizer adamw --lr 0.01 --local-steps 4 --seed 5 --dp sample --dp-clip 1 \
		--dp-noise 1 --dp-q 0.0005 --round-timeout 120 --quiet >"$T/rundp.out" 2>&1 &&
	python3 - "$T/rundp/metrics.jsonl" <<'PY'
import json, math, sys
m = [json.loads(l) for l in open(sys.argv[1])]
assert len(m) == 2
for r in m:
    assert r["epsilon"] is not None and r["epsilon"] > 0, r
    assert math.isfinite(r["eval_loss"]) and math.isfinite(r["train_loss"]), r
assert m[1]["epsilon"] > m[0]["epsilon"]
print("# dp-sgd: epsilon %.3f after 2 rounds" % m[1]["epsilon"])
PY
then ok sim_lm_dp_sgd; else tail -n 3 "$T/rundp.out"; notok sim_lm_dp_sgd; fi

# 5. bad inputs are refused with a message, no crash
bad() { # NAME EXPECTED_RC COMMAND...
	n=$1 want=$2; shift 2
	"$@" >"$T/bad.out" 2>"$T/bad.err"
	rc=$?
	if [ "$rc" -eq "$want" ] && [ -s "$T/bad.err" ]; then ok "$n"; else
		echo "# $n: rc $rc (want $want)"; cat "$T/bad.err"; notok "$n"; fi
}
printf '{"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 64}\n' >"$T/small-vocab.json"
bad pretrain_refuses_small_vocab 1 "$FEDLORA" pretrain --model-config "$T/small-vocab.json" --data "$PRE" --out "$T/x" --steps 1
bad pretrain_refuses_missing_data 1 "$FEDLORA" pretrain --model-config "$CFG" --data "$T/nonexistent" --out "$T/x" --steps 1
bad pretrain_usage 2 "$FEDLORA" pretrain --model-config "$CFG" --steps nope
bad eval_refuses_missing_base 1 "$FEDLORA" eval --base "$T/nonexistent" --data "$PRE"
printf 'junk' >"$T/junk.safetensors"
bad eval_refuses_bad_adapter 1 "$FEDLORA" eval --base "$T/base" --data "$PRE" --adapter "$T/junk.safetensors"
# a model folder with a tokenizer.json is read through it (tests/hf_tok_test.sh);
# a broken one, or one with more ids than the model's vocab_size, is refused
mkdir -p "$T/bpe" && cp "$T/base/config.json" "$T/base/model.safetensors" "$T/bpe/" && printf '{}' >"$T/bpe/tokenizer.json"
bad eval_refuses_bad_tokenizer_json 1 "$FEDLORA" eval --base "$T/bpe" --data "$PRE"
grep -q "bpe/tokenizer.json: model: missing" "$T/bad.err" && ok eval_names_tokenizer_json_field ||
	notok eval_names_tokenizer_json_field
cp tests/fixtures/tok/bytebpe/tokenizer.json "$T/bpe/tokenizer.json"
bad eval_refuses_tokenizer_beyond_vocab 1 "$FEDLORA" eval --base "$T/bpe" --data "$PRE"
grep -q "vocab_size 264 is smaller than the 3005 ids of its bpe-byte tokenizer" "$T/bad.err" &&
	ok eval_names_vocab_shortfall || notok eval_names_vocab_shortfall
printf '1 2 999999\n' >"$T/tok.txt"
bad eval_refuses_bad_tokens 1 "$FEDLORA" eval --base "$T/base" --tokens "$T/tok.txt" --dump-logits "$T/l.f32"
exit $t_failed
