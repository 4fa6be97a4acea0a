#!/bin/sh
# bench/long_seq.sh — long sequences on the CPU: one build/bench/train_cpu
# process per (sequence length, checkpointing) pair, LoRA training of the
# bench's small model (8 layers, hidden 512, 8 heads) at batch 1, printed as
# one table of tokens/s, the model's activation bytes and the process's peak
# resident memory (VmHWM).
#   sh bench/long_seq.sh [SEQS] [STEPS]      defaults: "512 2048 4096", 2
# Needs `make CUDA=0 bench` first. Runs under nice; OPENBLAS_NUM_THREADS is
# passed through as set. Total time on 2 cores: a few minutes.
set -eu
cd "$(dirname "$0")/.."
SEQS=${1:-"512 2048 4096"}
STEPS=${2:-2}
BIN=build/bench/train_cpu
[ -x "$BIN" ] || { echo "long_seq: $BIN missing (make CUDA=0 bench)" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/long_seq.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "CPU, LoRA r 16 (q_proj,v_proj), 8 layers x hidden 512, batch 1, $STEPS steps after a warm-up; OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-default}"
printf '%-6s %-6s %10s %10s %12s %12s\n' seq ckpt tokens/s "step ms" "acts MiB" "peak RSS MiB"
for T in $SEQS; do
	for ck in off on; do
		flag=""
		[ "$ck" = on ] && flag=--grad-checkpoint
		nice "$BIN" --steps "$STEPS" --batch 1 --seq "$T" $flag --out "$TMP/r.json" \
			>"$TMP/log" 2>&1 || { cat "$TMP/log" >&2; exit 1; }
		jq -r --arg ck "$ck" '[.seq, $ck, .modes[0].tokens_per_s, .modes[0].step_ms,
			.modes[0].acts_bytes / 1048576, .peak_rss_kib / 1024] |
			"\(.[0]) \(.[1]) \(.[2]) \(.[3]) \(.[4]) \(.[5])"' "$TMP/r.json" |
			awk '{ printf "%-6s %-6s %10.0f %10.1f %12.1f %12.1f\n", $1, $2, $3, $4, $5, $6 }'
	done
done
