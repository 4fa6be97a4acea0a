#!/bin/sh
# tests/reference/gpu_fed_parity.sh — a short federated `lm` run with GPU
# clients against the same run with CPU clients (issue 4). Runs on a machine
# with a GPU (scripts/gpu-check.sh calls it); not part of `make test`.
#
# A tiny byte-level base is pretrained on the CPU from text in this
# repository (the GPU machine has no fortunes packages), then the same
# 3-client, 3-round fedit sim runs twice with the same seed: clients on
# --device cpu, then on --device cuda (three client processes sharing one
# GPU). The final round's train and held-out losses must agree within
# TOL (relative, default 0.02: the GPU runs bf16 weights and activations).
# Prints one line per check and "gpu_fed_parity: PASS|FAIL"; exit 0 on PASS.
set -u
F=${FEDLORA:-build/fedlora}
DEV2=${DEV2:-cuda}
TOL=${TOL:-0.02}
W=$(mktemp -d "${TMPDIR:-/tmp}/gpu-fed.XXXXXX")
trap 'rm -rf "$W"' EXIT
"$F" pretrain --model-config configs/byte-tiny.json --data docs,core,lora --out "$W/base" \
	--steps 150 --seq-len 64 --batch-size 8 --lr 0.01 --device cpu --log-every 50 || {
	echo "gpu_fed_parity: FAIL (pretrain)"
	exit 1
}
for dev in cpu "$DEV2"; do
	"$F" sim --task lm --clients 3 --rounds 3 --strategy fedit --run-dir "$W/run-$dev" \
		--base "$W/base" --data-per-client "privacy;model;coordinator" --device "$dev" \
		--seq-len 64 --rank 4 --alpha 8 --optimizer adamw --lr 0.005 --local-steps 8 \
		--batch-size 8 --seed 5 --round-timeout 120 --timeout 300 --quiet || {
		echo "gpu_fed_parity: FAIL (sim on $dev; logs:)"
		tail -5 "$W/run-$dev"/client-*.log
		exit 1
	}
done
python3 - "$W/run-cpu/metrics.jsonl" "$W/run-$DEV2/metrics.jsonl" "$TOL" "$DEV2" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
tol, dev = float(sys.argv[3]), sys.argv[4]
ok = len(a) == len(b) == 3
for key in ("train_loss", "eval_before", "eval_loss"):
    x, y = a[-1][key], b[-1][key]
    rel = abs(x - y) / abs(x)
    good = rel < tol
    ok = ok and good
    print(f"{key:12s} cpu {x:.5f}  {dev} {y:.5f}  rel {rel:.2e}  {'ok' if good else 'FAIL'}")
print(f"first-round eval_before cpu {a[0]['eval_before']:.5f} -> last eval_loss {a[-1]['eval_loss']:.5f}")
print("gpu_fed_parity:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
