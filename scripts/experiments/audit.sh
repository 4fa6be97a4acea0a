#!/bin/sh
# scripts/experiments/audit.sh — empirical privacy audit of client-level DP
# (DP-FedAvg at the coordinator) with a Dirac canary client.
#
#   scripts/experiments/audit.sh [OUT_DIR]       (default build/experiments/audit)
#
# For every noise multiplier in SIGMAS, RUNS one-round linreg runs of
# `fedlora sim --dp client` WITH the canary ("in": HONEST honest clients and
# one client started with --attack canary:M, whose update is M at the first
# coordinate of the first lora_B and the global elsewhere; clipped to S it
# moves that coordinate by S / expected-clients) and RUNS WITHOUT it ("out":
# the same honest clients only). Every client is in every round (q = 1) and
# the divisor is fixed (--expected-clients HONEST+1), so the two worlds
# differ only by the canary: the honest clients' updates are the same
# (same seed, same data), the coordinator's Gaussian noise is fresh per run.
# The membership score of a run is that coordinate of the round-1 global.
#
# scripts/experiments/audit.py turns the scores into
#  - an empirical epsilon lower bound: the threshold test "score > t means the
#    canary was in", t chosen on the first half of the runs of each world,
#    FPR and FNR measured on the other half with Clopper-Pearson upper
#    bounds (97.5% each, so >= 95% jointly), eps_lb = max(log((1 - delta -
#    FNR_hi) / FPR_hi), log((1 - delta - FPR_hi) / FNR_hi)) (Jagielski et
#    al. 2020, Nasr et al. 2021);
#  - the epsilon implied by the measured shift: mu = (mean_in - mean_out) /
#    std, the (eps, delta) of a mu-Gaussian mechanism (a point estimate, not
#    a bound: above the accountant would mean less noise than claimed);
# and compares both with the accountant (`fedlora eps`, RDP and PRV, of one
# step at q = 1).
# Writes OUT_DIR/scores.csv (sigma, world, run, score), OUT_DIR/audit.csv
# (one row per sigma), OUT_DIR/audit.md and OUT_DIR/audit.png (gnuplot).
# An interrupted sweep resumes (OUT_DIR/runs/*.score are kept until the end).
#
# Settings (environment, defaults in brackets): SIGMAS ["0.5 1 2"] RUNS [200]
# (per world and sigma) HONEST [2] CLIP [1] CANARY [100] (M, clipped to CLIP)
# DELTA [1e-5] PAR [4] (runs at once; a run is mostly waiting) SEED [7]
# FEDLORA [build/fedlora]. Use `nice`.
set -eu

if [ "${1:-}" = --one ]; then
	# one run: --one OUT SIGMA WORLD I (called through xargs below)
	out=$2 sigma=$3 world=$4 i=$5
	run=$out/runs/s$sigma-$world-$i
	n=$((HONEST + 1))
	# every client in every round (q = 1) in both worlds
	# (min-clients = all: a round never commits without the canary)
	k=$HONEST
	set -- --clients "$HONEST" --clients-per-round "$HONEST" --min-clients "$HONEST"
	[ "$world" = in ] && k=$n && set -- --clients "$n" --clients-per-round "$n" \
		--min-clients "$n" --hostile 1 --attack "canary:$CANARY"
	for try in 1 2 3; do
		rm -rf "$run"
		if "$FEDLORA" sim --run-dir "$run" --rounds 1 "$@" \
			--expected-clients "$n" --join-wait 0.2 \
			--strategy fedit --task linreg --enroll-any --quiet --timeout 60 \
			--linreg-layers 1 --linreg-dim 8 --linreg-samples 64 --rank 2 \
			--local-steps 2 --lr 0.05 --dp client --dp-clip "$CLIP" --dp-noise "$sigma" \
			--dp-delta "$DELTA" --round-timeout 10 --seed "$SEED" >"$run.log" 2>&1 &&
			python3 -c 'import json,sys; l=json.loads(open(sys.argv[1]).readline())
sys.exit(0 if l["reported"] == int(sys.argv[2]) and l["attempts"] == 1 else 1)' \
				"$run/metrics.jsonl" "$k"; then
			score=$(python3 "$HERE/audit.py" score "$run/global/round-000001.safetensors")
			echo "$sigma,$world,$i,$score" >"$run.score"
			rm -rf "$run" "$run.log"
			exit 0
		fi
		echo "audit: $run failed (try $try):" >&2
		tail -n 3 "$run.log" >&2
	done
	exit 1
fi

FEDLORA=${FEDLORA:-build/fedlora}
OUT=${1:-build/experiments/audit}
SIGMAS=${SIGMAS:-0.5 1 2}
RUNS=${RUNS:-200}
HONEST=${HONEST:-2}
CLIP=${CLIP:-1}
CANARY=${CANARY:-100}
DELTA=${DELTA:-1e-5}
PAR=${PAR:-4}
SEED=${SEED:-7}
HERE=$(cd "$(dirname "$0")" && pwd)

[ -x "$FEDLORA" ] || { echo "audit: $FEDLORA not built (run make)" >&2; exit 1; }
mkdir -p "$OUT/runs"
# a private copy: a rebuild during the sweep cannot change the binary
BIN=$(mktemp -d "${TMPDIR:-/tmp}/fedlora-audit.XXXXXX")
trap 'rm -rf "$BIN"' EXIT
cp "$FEDLORA" "$BIN/fedlora"
FEDLORA=$BIN/fedlora
OUT=$(cd "$OUT" && pwd)
export FEDLORA HONEST CLIP CANARY DELTA SEED HERE
t0=$(date +%s)
for sigma in $SIGMAS; do
	echo "audit: sigma $sigma, $RUNS runs with and $RUNS without the canary ..." >&2
	i=1
	while [ "$i" -le "$RUNS" ]; do
		for w in in out; do
			[ -f "$OUT/runs/s$sigma-$w-$i.score" ] || echo "$OUT $sigma $w $i"
		done
		i=$((i + 1))
	done | xargs -P "$PAR" -L 1 sh "$HERE/audit.sh" --one
done
echo "sigma,world,run,score" >"$OUT/scores.csv"
cat "$OUT"/runs/*.score | sort -t, -k1,1g -k2,2 -k3,3n >>"$OUT/scores.csv"
echo "audit: runs took $(($(date +%s) - t0)) s" >&2

echo "sigma,eps_rdp,eps_prv" >"$OUT/accountant.csv"
for sigma in $SIGMAS; do
	r=$("$FEDLORA" eps --sigma "$sigma" --q 1 --steps 1 --delta "$DELTA" --json)
	p=$("$FEDLORA" eps --accountant prv --sigma "$sigma" --q 1 --steps 1 --delta "$DELTA" --json)
	python3 -c 'import json,sys; print("%s,%r,%r" % (sys.argv[1], json.loads(sys.argv[2])["epsilon"], json.loads(sys.argv[3])["epsilon"]))' \
		"$sigma" "$r" "$p" >>"$OUT/accountant.csv"
done
python3 "$HERE/audit.py" analyse "$OUT" "$DELTA" "$HONEST" "$CLIP"
cat "$OUT/audit.md"
# the per-run score files (kept until now so an interrupted sweep resumes)
rm -rf "$OUT/runs"
if command -v gnuplot >/dev/null 2>&1; then
	gnuplot -e "dir='$OUT'" "$HERE/audit.gp"
	echo "audit: wrote $OUT/audit.csv, audit.md, scores.csv and audit.png" >&2
else
	echo "audit: wrote $OUT/audit.csv, audit.md and scores.csv (no gnuplot: no plot)" >&2
fi
