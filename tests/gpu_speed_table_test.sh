#!/bin/sh
# tests/gpu_speed_table_test.sh — scripts/gpu-speed.sh's CPU-side parts:
# its syntax (and that of the Python it runs), and bench/gpu_speed_table.py's
# merge and tables on made-up train_gpu / peft_ref JSON (ratios, DP ratios
# from the same run and from another run, goals, failed and missing rows).
# No GPU needed: the numbers below are test inputs, not measurements.
. tests/lib.sh
PY=${PYTHON:-python3}
check gpu_speed_sh_syntax sh -n scripts/gpu-speed.sh
check gpu_speed_py_syntax $PY -m py_compile bench/peft_ref.py bench/gpu_speed_table.py

J=$TMPROOT/j
mkdir -p "$J"
# fedlora: llama1b qv 1024 at 120000 tok/s (MFU 0.5), DP step 1.10x the plain one;
# smollm qv 1024 at 180000 tok/s
cat >"$J/fedlora_llama1b_qv_1024.json" <<'EOF'
{"bench": "train_gpu", "impl": "fedlora", "device": "TestGPU (sm_90)", "batch": 8, "seq": 1024,
 "modules": "qv", "dp": true, "results": [{"shape": "llama-3.2-1b", "attention": "flash",
 "ok": true, "step_ms": 68.27, "tokens_per_s": 120000, "peak_mem_bytes": 16106127360,
 "mfu": 0.5, "modules": "qv", "batch": 8, "seq": 1024, "dp": true, "dp_step_ms": 75.1,
 "dp_tokens_per_s": 109090.9, "dp_ratio": 1.1, "dp_peak_mem_bytes": 17179869184}]}
EOF
cat >"$J/fedlora_smollm_qv_1024.json" <<'EOF'
{"bench": "train_gpu", "device": "TestGPU (sm_90)", "results": [{"shape": "smollm-135m",
 "attention": "flash", "ok": true, "step_ms": 45.5, "tokens_per_s": 180000,
 "peak_mem_bytes": 6442450944, "mfu": 0.2, "modules": "qv", "batch": 8, "seq": 1024,
 "dp": true, "dp_step_ms": 91.0, "dp_tokens_per_s": 90000, "dp_ratio": 2.0,
 "dp_peak_mem_bytes": 6442450944}]}
EOF
# PEFT compile: llama1b qv 1024 at 80000 tok/s (step 100 ms), smollm at 100000
cat >"$J/peft_llama1b_qv_1024.json" <<'EOF'
{"bench": "peft_ref", "device": "TestGPU", "results": [{"shape": "llama-3.2-1b",
 "mode": "compile", "ok": true, "batch": 8, "seq": 1024, "grad_checkpoint": false,
 "modules": "qv", "dp": false, "step_ms": 100.0, "tokens_per_s": 80000,
 "peak_mem_bytes": 18253611008, "mfu": 0.33}]}
EOF
cat >"$J/peft_smollm_qv_1024.json" <<'EOF'
{"bench": "peft_ref", "results": [{"shape": "smollm-135m", "mode": "compile", "ok": true,
 "batch": 8, "seq": 1024, "grad_checkpoint": false, "modules": "qv", "dp": false,
 "step_ms": 81.9, "tokens_per_s": 100000, "peak_mem_bytes": 7000000000, "mfu": 0.1}]}
EOF
# PyTorch DP: eager plain + torch.func eager (ratio in the row), and a compiled
# DP step alone (250 ms: its ratio comes from the compile run above, 2.5x)
cat >"$J/peft_dp_llama1b_qv_1024_eager.json" <<'EOF'
{"bench": "peft_ref", "results": [{"shape": "llama-3.2-1b", "mode": "eager", "ok": true,
 "batch": 8, "seq": 1024, "grad_checkpoint": false, "modules": "qv", "dp": false,
 "step_ms": 140.0, "tokens_per_s": 58514, "peak_mem_bytes": 29000000000, "mfu": 0.3},
 {"shape": "llama-3.2-1b", "mode": "eager", "ok": true, "batch": 8, "seq": 1024,
 "grad_checkpoint": false, "modules": "qv", "dp": true, "dp_impl": "func", "step_ms": 420.0,
 "tokens_per_s": 19505, "peak_mem_bytes": 40000000000, "mfu": 0.1, "dp_ratio": 3.0}]}
EOF
cat >"$J/peft_dp_llama1b_qv_1024_compile.json" <<'EOF'
{"bench": "peft_ref", "results": [{"shape": "llama-3.2-1b", "mode": "compile", "ok": true,
 "batch": 8, "seq": 1024, "grad_checkpoint": false, "modules": "qv", "dp": true,
 "dp_impl": "func", "step_ms": 250.0, "tokens_per_s": 32768, "peak_mem_bytes": 30000000000,
 "mfu": 0.1}]}
EOF
# a failed configuration and a run killed while writing its JSON
cat >"$J/peft_llama1b_all_1024.json" <<'EOF'
{"bench": "peft_ref", "results": [{"shape": "llama-3.2-1b", "mode": "compile", "ok": false,
 "batch": 8, "seq": 1024, "grad_checkpoint": false, "modules": "all", "dp": false,
 "error": "oom"}]}
EOF
printf '{"bench": "train_gpu", "results": [' >"$J/fedlora_llama1b_all_1024.json"

M=$TMPROOT/runs.json
$PY bench/gpu_speed_table.py --merge "$J" "$M"
check gpu_speed_merge_keeps_whole_runs $PY -c '
import json, sys
r = json.load(open(sys.argv[1]))
sys.exit(0 if len(r) == 7 and "fedlora_llama1b_all_1024" not in r and
         r["peft_llama1b_qv_1024"]["results"][0]["tokens_per_s"] == 80000 else 1)' "$M"

T=$TMPROOT/table.txt
$PY bench/gpu_speed_table.py "$M" >"$T" 2>&1
rc=$?
check gpu_speed_table_exit0 [ "$rc" -eq 0 ]
has() { grep -q -- "$1" "$T" || { echo "  missing: $1" >&2; return 1; }; }
# speed table: fedlora 120000 / compile 80000 = 1.50x, memory 15 GiB
check gpu_speed_table_ratio_vs_compile has \
	'llama-3.2-1b  qv   1024     8 fedlora/flash     120000      1.50x    15.00  50.0%'
check gpu_speed_table_compile_row has \
	'llama-3.2-1b  qv   1024     8 peft compile       80000      1.00x'
check gpu_speed_table_missing_na has 'smollm-135m   all  4096       n/a'
# DP table: fedlora's ratio from its own run; func eager from its row; func
# compile from the plain compile run (250 / 100 ms)
check gpu_speed_dp_fedlora has \
	'llama-3.2-1b  qv   1024     8 fedlora/flash               120000    109091   1.100x      16.00'
check gpu_speed_dp_func_eager has 'func eager                   58514     19505   3.000x'
check gpu_speed_dp_func_compile_other_run has 'func compile                 80000     32768   2.500x'
check gpu_speed_failed_row has 'failed: peft_llama1b_all_1024 llama-3.2-1b compile: oom'
# goals
check gpu_speed_goal_llama has \
	'llama-3.2-1b qv seq 1024: fedlora / PEFT compile 1.50x (goal 1.3x: met), MFU 50.0% (goal 60%: not met)'
check gpu_speed_goal_smollm has 'smollm-135m qv seq 1024: fedlora / PEFT compile 1.80x (goal 2.0x: not met)'
check gpu_speed_goal_dp has 'llama-3.2-1b qv seq 1024: fedlora DP/plain 1.100x (goal <= 1.15x: met)'
check gpu_speed_goal_dp_na has 'llama-3.2-1b all seq 1024: fedlora DP/plain n/a'
if [ "$t_failed" -ne 0 ]; then
	echo "--- table:" >&2
	cat "$T" >&2
fi

# train_gpu's new flags (when the benchmarks are built): --help names them,
# a bad --modules is refused with status 2 before any GPU is touched
TG=${TEST_BENCH_DIR:-build/bench}/train_gpu
if [ -x "$TG" ]; then
	check train_gpu_help_flags sh -c "'$TG' --help | grep -q -- '--modules qv|all' &&
		'$TG' --help | grep -q -- '--dp'"
	"$TG" --modules xyz >/dev/null 2>&1
	check train_gpu_bad_modules_refused [ $? -eq 2 ]
else
	skip train_gpu_flags "$TG not built (make bench)"
fi
exit $t_failed
