#!/bin/sh
# tests/shard_test.sh — sharded Hugging Face checkpoints through the CLI: a
# tiny pretrained base split into 3 shards plus model.safetensors.index.json
# (the layout transformers' save_pretrained writes for large models) gives
# `fedlora eval` the same loss as the single file, and a coordinator started
# on either folder pins the same base-weights hash (and a client on the
# shards trains with a coordinator on the single file); an index naming a missing
# shard, a shard path that leaves the folder, or a tensor missing from its
# shard makes eval fail with a message naming the index and the field, never
# a crash. Needs python3 (to split the file) and the fortunes package.
. tests/lib.sh
F=${FORTUNES:-/usr/share/games/fortunes}
if [ ! -f "$F/fortunes" ]; then
	skip shard_all "fortunes package not installed (make deps)"
	exit 0
fi
T=$TMPROOT
DATA="$F/fortunes"
if ! "$FEDLORA" pretrain --model-config configs/byte-tiny.json --data "$DATA" --out "$T/one" \
	--steps 3 --batch-size 4 --seq-len 32 --eval-seqs 4 --seed 5 >/dev/null 2>"$T/pt.err"; then
	cat "$T/pt.err"
	notok shard_pretrain
	exit 1
fi

# split SRC DST N [SKIP]: DST gets config.json, N shards and the index
# (tensors dealt round-robin, data copied byte for byte; tensor SKIP left out)
split() {
	python3 - "$1" "$2" "$3" "${4:-}" <<'PY'
import json, os, struct, sys, shutil
src, dst, n, skip = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
os.makedirs(dst)
shutil.copy(os.path.join(src, "config.json"), dst)
raw = open(os.path.join(src, "model.safetensors"), "rb").read()
hl = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + hl])
data = raw[8 + hl:]
names = sorted(k for k in hdr if k not in ("__metadata__", skip))
shards = [dict() for _ in range(n)]
for i, k in enumerate(names):
    shards[i % n][k] = hdr[k]
wmap, total = {}, 0
for s, tens in enumerate(shards):
    fn = "model-%05d-of-%05d.safetensors" % (s + 1, n)
    h, body = {"__metadata__": {"format": "pt"}}, b""
    for k, v in tens.items():
        b, e = v["data_offsets"]
        h[k] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [len(body), len(body) + e - b]}
        body += data[b:e]
        wmap[k] = fn
        total += e - b
    hj = json.dumps(h).encode()
    hj += b" " * (-len(hj) % 8)
    open(os.path.join(dst, fn), "wb").write(struct.pack("<Q", len(hj)) + hj + body)
json.dump({"metadata": {"total_size": total}, "weight_map": wmap},
          open(os.path.join(dst, "model.safetensors.index.json"), "w"), indent=2)
PY
}
split "$T/one" "$T/sh" 3

evl() { "$FEDLORA" eval --base "$1" --data "$DATA" --seq-len 32 --max-seqs 16 --json; }
if a=$(evl "$T/one" 2>"$T/e1") && b=$(evl "$T/sh" 2>"$T/e2"); then
	la=$(echo "$a" | python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
	lb=$(echo "$b" | python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
	echo "# eval loss: single file $la, 3 shards $lb"
	if [ "$la" = "$lb" ] && [ -n "$la" ]; then ok shard_eval_same_loss; else notok shard_eval_same_loss; fi
else
	cat "$T/e1" "$T/e2"
	notok shard_eval_same_loss
fi

# the coordinator pins the same weights hash for both layouts
"$FEDLORA" keygen --out "$T/coord" >/dev/null 2>&1
hash_of() {
	port=$(free_port)
	"$FEDLORA" coordinator --task lm --base "$1" --run-dir "$T/run-$2" --key "$T/coord.key" --strategy fedit --clients-per-round 1 --min-clients 1 --round-timeout 30 \
		--listen "tcp://127.0.0.1:$port" --rounds 1 --enroll-any >"$T/c$2.out" 2>&1 &
	cp_=$!
	i=0
	while [ $i -lt 100 ] && ! grep -q "weights blake2b-256" "$T/c$2.out" "$T/run-$2/coordinator.log" 2>/dev/null; do
		sleep 0.1
		i=$((i + 1))
	done
	stop_pids $cp_
	cat "$T/c$2.out" "$T/run-$2/coordinator.log" 2>/dev/null | sed -n 's/.*weights blake2b-256 \([0-9a-f]*\).*/\1/p' | head -1
}
h1=$(hash_of "$T/one" 1)
h2=$(hash_of "$T/sh" 2)
echo "# coordinator weights hash: single $h1, sharded $h2"
if [ -n "$h1" ] && [ "$h1" = "$h2" ]; then ok shard_coordinator_same_hash; else
	cat "$T/c1.out" "$T/c2.out"
	notok shard_coordinator_same_hash
fi

# a client on the sharded copy trains with a coordinator on the single file:
# the weights hash it checks against the Welcome's is the same
"$FEDLORA" keygen --out "$T/cl" >/dev/null 2>&1
port=$(free_port)
"$FEDLORA" coordinator --task lm --base "$T/one" --run-dir "$T/run-fed" --key "$T/coord.key" \
	--strategy fedit --clients-per-round 1 --min-clients 1 --round-timeout 60 --rounds 1 \
	--listen "tcp://127.0.0.1:$port" --enroll-any --local-steps 2 --seq-len 32 \
	--batch-size 2 >"$T/cfed.out" 2>&1 &
cfp=$!
"$FEDLORA" client --connect "tcp://127.0.0.1:$port" --key "$T/cl.key" --task lm \
	--client-index 0 --data "$DATA" --base "$T/sh" --quiet >"$T/clfed.out" 2>&1 &
clp=$!
wait_pid $cfp 90
cst=$wst
wait_pid $clp 30
if [ "$cst" = 0 ] && [ "$wst" = 0 ] && [ -f "$T/run-fed/global/round-000001.safetensors" ]; then
	ok shard_client_on_shards_trains
else
	echo "# coordinator status $cst, client status $wst"
	tail -n 3 "$T/cfed.out" "$T/clfed.out" | sed 's/^/# /'
	notok shard_client_on_shards_trains
fi

# bad indexes: eval refuses with the index file and the field named
bad() { # NAME PYTHON-EDIT-OF-INDEX(d) NEEDLE
	rm -rf "$T/bad"
	cp -r "$T/sh" "$T/bad"
	python3 -c "
import json,sys
p=sys.argv[1]; d=json.load(open(p))
$2
json.dump(d, open(p,'w'))" "$T/bad/model.safetensors.index.json"
	evl "$T/bad" >/dev/null 2>"$T/bad.err"
	st=$?
	if [ $st -ne 0 ] && [ $st -lt 128 ] && grep -q "model.safetensors.index.json" "$T/bad.err" &&
		grep -qF "$3" "$T/bad.err"; then
		ok "$1"
	else
		echo "# exit $st"; cat "$T/bad.err"
		notok "$1"
	fi
}
bad shard_missing_file "d['weight_map']['model.norm.weight']='model-00009-of-00003.safetensors'" \
	"names shard model-00009-of-00003.safetensors, which does not exist"
bad shard_path_escape "d['weight_map']['model.norm.weight']='../one/model.safetensors'" \
	"is not a plain file name"
bad shard_tensor_not_in_shard "d['weight_map']['model.layers.9.mlp.up_proj.weight']='model-00001-of-00003.safetensors'" \
	"has no such tensor"
bad shard_unlisted_tensor "d['weight_map'].pop('model.norm.weight')" \
	"has tensor model.norm.weight, which is not listed"
# a required tensor in neither the map nor a shard
split "$T/one" "$T/nonorm" 2 model.norm.weight
if evl "$T/nonorm" >/dev/null 2>"$T/nn.err"; then st=0; else st=$?; fi
if [ $st -ne 0 ] && [ $st -lt 128 ] &&
	grep -qF "model.safetensors.index.json: tensor model.norm.weight is missing from weight_map" "$T/nn.err"; then
	ok shard_required_missing
else
	echo "# exit $st"; cat "$T/nn.err"
	notok shard_required_missing
fi
exit $t_failed
