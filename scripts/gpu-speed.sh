#!/bin/sh
# scripts/gpu-speed.sh — the issue-12 speed matrix in one GPU call (H200 here):
# fedlora (build/bench/train_gpu) against PyTorch + PEFT (bench/peft_ref.py,
# torch.compile) on the SmolLM-135M and Llama-3.2-1B shapes, LoRA r 16 on
# q,v or on all seven modules, seq 1024 (batch 8) and 4096 (batch 2: the same
# 8192 tokens a step, which fit the card for both implementations), plus the
# DP-SGD rows: fedlora's DP step against its plain step (alternating in one
# process), and the PyTorch DP step (Opacus when importable, else torch.func
# vmap(grad) per-example gradients of the LoRA parameters) against its plain
# step. Ends with ONE speed table and ONE DP table.
#
#   sh scripts/gpu-speed.sh                      (after a build with CUDA)
#   GPU_SPEED_BUDGET=540  seconds for the whole script (default 540)
#   GPU_SPEED_STEPS=5 GPU_SPEED_WARMUP=2   timed / warm-up steps per row
#                         (peft_ref.py warms compile up for at least 3)
#   GPU_SPEED_EAGER=1     also PEFT eager rows (when time is left)
#   GPU_SPEED_BUILD=DIR   where the binaries are (default build)
#
# Rows run most important first (fedlora: llama1b q,v and all at 1024 with DP
# and a FEDLORA_PROFILE=1 run of each for the per-phase times, smollm, seq
# 4096; then PyTorch: llama1b compile, the eager DP step, smollm, seq 4096, the
# compiled DP step), each under
# `timeout` within what is left of the budget; a row that does not fit is
# skipped and shown as n/a. Every run's JSON is merged into gpu-speed.json
# after each step, so a timeout keeps what finished. Output in $OUT when set
# (3 files: bench.log with every step's output, gpu-speed.json, summary.txt), else in a
# temporary folder that is printed. Exit status 0 when every row ran.
set -u
cd "$(dirname "$0")/.." || exit 1
LOG=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-speed.XXXXXX")}
mkdir -p "$LOG"
J=$(mktemp -d "${TMPDIR:-/tmp}/gpu-speed-json.XXXXXX") # per-run JSON (not in $OUT: 8 files max)
P=$(mktemp -d "${TMPDIR:-/tmp}/gpu-speed-prof.XXXXXX") # profile runs' JSON (not tabled)
BUDGET=${GPU_SPEED_BUDGET:-540}
STEPS=${GPU_SPEED_STEPS:-5}
WARM=${GPU_SPEED_WARMUP:-2}
BD=${GPU_SPEED_BUILD:-build}
TG=$BD/bench/train_gpu
PY=${PYTHON:-python3}
START=$(date +%s)
status=0
export PYTHONUNBUFFERED=1

left() { echo $((BUDGET - ($(date +%s) - START))); }
# step NAME LIMIT CMD...: CMD under timeout min(LIMIT, budget left), log to bench.log
step() {
	name=$1 lim=$2
	shift 2
	l=$(left)
	[ "$l" -lt "$lim" ] && lim=$l
	if [ "$lim" -le 10 ]; then
		echo "== $name: skipped (time budget spent)" | tee -a "$LOG/bench.log"
		status=1
		return 124
	fi
	echo "== $name (limit ${lim}s): $*" | tee -a "$LOG/bench.log"
	t0=$(date +%s)
	timeout -k 5 "$lim" "$@" >>"$LOG/bench.log" 2>&1
	rc=$?
	echo "== $name: exit $rc after $(($(date +%s) - t0))s" | tee -a "$LOG/bench.log"
	[ $rc -eq 0 ] || status=1
	merge
	return $rc
}
# every run's JSON into one file, named by run
merge() { $PY bench/gpu_speed_table.py --merge "$J" "$LOG/gpu-speed.json"; }

echo "gpu-speed: output in $LOG, budget ${BUDGET}s, $STEPS steps after $WARM warm-up"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null |
	sed 's/^/gpu: /' | tee -a "$LOG/bench.log"
if [ ! -x "$TG" ]; then
	step build 240 make -j"$(nproc)" BUILD="$BD" bench
fi

fed() { # fed SHAPE MODULES SEQ BATCH
	step "fedlora_$1_$2_$3" 60 "$TG" --shape "$1" --modules "$2" --seq "$3" --batch "$4" \
		--steps "$STEPS" --warmup "$WARM" --dp --json "$J/fedlora_$1_$2_$3.json"
}
peft() { # peft NAME MODES SHAPE MODULES SEQ BATCH LIMIT [EXTRA...]
	n=$1 mo=$2 sh=$3 md=$4 sq=$5 b=$6 lim=$7
	shift 7
	step "peft_$n" "$lim" $PY bench/peft_ref.py --shape "$sh" --modules "$md" --modes "$mo" \
		--seq "$sq" --batch "$b" --steps "$STEPS" --warmup "$WARM" --json "$J/peft_$n.json" "$@"
}

# 1. fedlora, every configuration (cheap: seconds each), plain + DP
fed llama1b qv 1024 8
fed llama1b all 1024 8
# per-phase device times of the plain step (FEDLORA_PROFILE=1: no CUDA graph,
# so a little slower than the rows above; not in the tables, printed after them)
prof() { # prof SHAPE MODULES SEQ BATCH
	step "profile_$1_$2_$3" 45 env FEDLORA_PROFILE=1 "$TG" --shape "$1" --modules "$2" \
		--seq "$3" --batch "$4" --steps 2 --warmup 1 --json "$P/profile_$1_$2_$3.json"
}
prof llama1b qv 1024 8
prof llama1b all 1024 8
fed smollm qv 1024 8
fed smollm all 1024 8
fed llama1b qv 4096 2
fed llama1b all 4096 2
fed smollm qv 4096 2
fed smollm all 4096 2
# 2. PyTorch + PEFT, most important first
peft llama1b_qv_1024 compile llama1b qv 1024 8 150
peft llama1b_all_1024 compile llama1b all 1024 8 150
peft dp_llama1b_qv_1024_eager eager llama1b qv 1024 8 120 --dp
peft smollm_qv_1024 compile smollm qv 1024 8 120
peft smollm_all_1024 compile smollm all 1024 8 120
peft llama1b_qv_4096 compile llama1b qv 4096 2 150
peft llama1b_all_4096 compile llama1b all 4096 2 150
peft dp_llama1b_qv_1024_compile compile llama1b qv 1024 8 150 --dp --dp-only
peft dp_llama1b_all_1024_eager eager llama1b all 1024 8 120 --dp
peft smollm_qv_4096 compile smollm qv 4096 2 120
peft smollm_all_4096 compile smollm all 4096 2 120
if [ "${GPU_SPEED_EAGER:-0}" = 1 ]; then
	for sh in llama1b smollm; do
		for md in qv all; do
			peft "eager_${sh}_${md}_1024" eager "$sh" "$md" 1024 8 90
		done
	done
fi

# 3. the tables
$PY bench/gpu_speed_table.py "$LOG/gpu-speed.json" | tee "$LOG/summary.txt"
{
	echo
	echo "== fedlora per-phase device times (FEDLORA_PROFILE=1, last step of each profile run)"
	awk '/^== profile_.*limit/ { name = $2 } /^fedlora profile:/ { last[name] = $0 }
		END { for (n in last) print n ": " last[n] }' "$LOG/bench.log" | sort
} | tee -a "$LOG/summary.txt"
echo "gpu-speed: finished in $(($(date +%s) - START))s, status $status (output in $LOG)"
rm -rf "$J" "$P"
exit $status
