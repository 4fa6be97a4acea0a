#!/bin/sh
# bench/long_seq_gpu.sh — long sequences on the GPU, Llama-3.2-1B shape
# (random bf16 weights, LoRA r 16 on q_proj,v_proj, batch 1): fedlora
# (build/bench/train_gpu, one process per configuration) and PyTorch + PEFT
# eager (bench/peft_ref.py, one process) at each sequence length, without and
# with activation checkpointing, printed as one table of tokens/s and memory
# (fedlora: device memory its model holds; PEFT: torch.cuda.max_memory_allocated).
#   sh bench/long_seq_gpu.sh [SEQS] [STEPS]     defaults: "512 2048 4096", 3
# JSON of every run stays in a temporary folder (printed). scripts/gpu-check.sh
# runs it once; it needs a GPU, torch, transformers and peft.
set -u
cd "$(dirname "$0")/.."
SEQS=${1:-"512 2048 4096"}
STEPS=${2:-3}
PY=${PYTHON:-python3}
D=$(mktemp -d "${TMPDIR:-/tmp}/long_seq_gpu.XXXXXX")
echo "long_seq_gpu: JSON in $D"
rc=0
for T in $SEQS; do
	for ck in off on; do
		flag=""
		[ "$ck" = on ] && flag=--grad-checkpoint
		build/bench/train_gpu --shape llama1b --batch 1 --seq "$T" --steps "$STEPS" \
			--warmup 1 $flag --json "$D/fedlora_${T}_$ck.json" || rc=1
	done
done
$PY bench/peft_ref.py --shape llama1b --modes eager --batch 1 \
	--seqs "$(echo $SEQS | tr ' ' ',')" --grad-checkpoint both --steps "$STEPS" --warmup 1 \
	--json "$D/peft.json" || rc=1
$PY - "$D" "$SEQS" <<'PYEOF'
import json, os, sys
d, seqs = sys.argv[1], [int(t) for t in sys.argv[2].split()]
def load(p):
    try:
        return json.load(open(os.path.join(d, p)))
    except (OSError, ValueError):
        return None
peft = load("peft.json") or {}
print("== long sequences, GPU: llama-3.2-1b shape, LoRA r 16 q_proj,v_proj, bf16, batch 1")
print(f"{'seq':>6s} {'ckpt':>5s} {'fedlora tok/s':>14s} {'fedlora MiB':>12s} "
      f"{'peft tok/s':>11s} {'peft MiB':>9s} {'tok/s ratio':>11s}")
for T in seqs:
    for ck in ("off", "on"):
        f = load(f"fedlora_{T}_{ck}.json")
        fr = next((r for r in (f or {}).get("results", []) if r.get("ok")), None)
        pr = next((r for r in peft.get("results", []) if r.get("ok") and r.get("seq") == T
                   and r.get("grad_checkpoint") == (ck == "on")), None)
        ft = f"{fr['tokens_per_s']:14.0f} {fr['peak_mem_bytes'] / 2**20:12.0f}" if fr else \
            f"{'failed':>14s} {'':>12s}"
        pt = f"{pr['tokens_per_s']:11.0f} {pr['peak_mem_bytes'] / 2**20:9.0f}" if pr else \
            f"{'failed':>11s} {'':>9s}"
        ratio = f"{fr['tokens_per_s'] / pr['tokens_per_s']:10.2f}x" if fr and pr else ""
        print(f"{T:6d} {ck:>5s} {ft} {pt} {ratio:>11s}")
print("== end long sequences")
PYEOF
exit $rc
