# tests/secagg_load_test.sh — build/bench/load with and without --secure-agg
# (8 real client sessions, all selected, 2 rounds, linreg 1x4): both runs
# commit every round and exit 0; the JSON carries the secure flag and nonzero
# per-client CPU and bytes up/down per round, and the secure round costs the
# client more bytes than the plain Submit; the secure run's metrics.jsonl
# says secure_agg with all 8 clients survivors in every round; the adapter
# after round 2 equals the plaintext run's (same seed, same keys) within the
# fixed-point error; --poll-timeout and --seed reach the coordinator
# (run.json). Skips without bench/load next to $FEDLORA (make bench).
. tests/lib.sh
LOAD=$(dirname "$FEDLORA")/bench/load
if ! [ -x "$LOAD" ]; then
	skip secagg_load "no $LOAD (make bench)"
	exit 0
fi
D=$TMPROOT/k8
mkdir -p "$D"
# load MODE ARGS...: one run into $D, JSON in $TMPROOT/MODE.json, the run
# folder copied to $TMPROOT/MODE-run (the next run replaces $D/run)
load() {
	mode_=$1; shift
	nice "$LOAD" --clients 8 --per-round 8 --rounds 2 --poll-timeout 1.5 --seed 7 \
		--sa-phase-timeout 10 --port "$(free_port)" --fedlora "$FEDLORA" --dir "$D" \
		--json "$TMPROOT/$mode_.json" "$@" >"$TMPROOT/$mode_.out" 2>&1
	rc_=$?
	cp -r "$D/run" "$TMPROOT/$mode_-run" 2>/dev/null
	[ $rc_ -eq 0 ] || { tail -n 20 "$TMPROOT/$mode_.out" "$D/coordinator-stderr.log" | sed 's/^/  /' >&2; }
	return $rc_
}
check "load plaintext run exits 0" load plain
check "load --secure-agg run exits 0" load secure --secure-agg

# fields PLAIN.json SECURE.json: the JSON of both runs
fields() {
	python3 - "$1" "$2" <<'PY'
import json, sys
p, s = (json.load(open(a)) for a in sys.argv[1:3])
bad = []
def need(cond, what):
    if not cond:
        bad.append(what)
for name, j, sec in (("plain", p, False), ("secure", s, True)):
    need(j["ok"] is True, name + " ok")
    need(j["secure_agg"] is sec, name + " secure_agg")
    need(j["poll_timeout_s"] == 1.5 and j["seed"] == 7, name + " options")
    need(len(j["round"]) == 2 and [r["round"] for r in j["round"]] == [1, 2], name + " rounds")
    need(j["clients_finished"] == 8 and j["clients_failed"] == 0, name + " sessions")
    for r in j["round"]:
        # wall_s is sampled by polling metrics.jsonl every 10 ms: two quick
        # plaintext rounds can land in one poll, so only the sum must be > 0
        need(r["wall_s"] >= 0 and r["coordinator_s"] > 0, name + " round times")
        need(r["client_rounds"] == 8, name + " client rounds of round %d" % r["round"])
        need(r["client_cpu_ms_p50"] > 0 and r["client_bytes_up_p50"] > 0
             and r["client_bytes_down_p50"] > 0, name + " client costs of round %d" % r["round"])
        need(r["metrics_bytes_up"] > 0 and r["metrics_bytes_down"] > 0, name + " metrics bytes")
    need(sum(r["cpu_s"] for r in j["round"]) > 0, name + " coordinator CPU")
    need(sum(r["wall_s"] for r in j["round"]) > 0, name + " wall time")
    c = j["client"]
    need(c["from_round"] == 2 and c["client_rounds"] == 8, name + " client summary count")
    need(0 < c["cpu_ms_p50"] <= c["cpu_ms_p90"] and 0 < c["bytes_up_p50"] <= c["bytes_up_p90"]
         and 0 < c["bytes_down_p50"] <= c["bytes_down_p90"], name + " client summary")
# five SaUps and four SaDowns (with keys, shares, signatures) outweigh one Submit
need(s["client"]["bytes_up_p50"] > p["client"]["bytes_up_p50"], "secure sends more")
need(s["latency_ms"]["sa_up->ack"]["count"] >= 8 * 2 * 5, "SaUps counted")
need(p["latency_ms"]["submit->ack"]["count"] == 8 * 2, "Submits counted")
if bad:
    print("  wrong: " + ", ".join(bad), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}
check "load JSON: rounds, per-client CPU and bytes, options" fields "$TMPROOT/plain.json" "$TMPROOT/secure.json"

# metrics RUN SECURE: every line secure_agg (or not) and, secure, 8 survivors
metrics() {
	python3 - "$1/metrics.jsonl" "$2" <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sec = sys.argv[2] == "1"
ok = [m["round"] for m in L] == [1, 2]
for m in L:
    ok &= m["selected"] == 8 and m["reported"] == 8
    if sec:
        ok &= m.get("secure_agg") is True and len(m["sa_survivors"]) == 8 and \
              m["sa_dropped"] == [] and m["sa_params"]["n"] == 8 and m["sa_aborts"] == []
    else:
        ok &= not m.get("secure_agg")
sys.exit(0 if ok else 1)
PY
}
check "secure metrics: secure_agg, 8 survivors each round" metrics "$TMPROOT/secure-run" 1
check "plain metrics: not secure, 8 reported" metrics "$TMPROOT/plain-run" 0
run_opts() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["poll_timeout"] == 1.5 and d["seed"] == 7 else 1)' "$1/run.json"
}
check "--poll-timeout and --seed reach the coordinator" run_opts "$TMPROOT/secure-run"

# same adapter: the secure sum decodes to the plaintext weighted mean. 8
# clients, frac_bits >= 20: error ~1e-6 per round; a client missing or
# counted twice moves the adapter by ~1e-2 (and it did move from round 0)
same_sum() {
	d_=$(maxdiff "$TMPROOT/plain-run/global/round-000002.safetensors" \
		"$TMPROOT/secure-run/global/round-000002.safetensors") || return 1
	m_=$(maxdiff "$TMPROOT/plain-run/global/round-000000.safetensors" \
		"$TMPROOT/plain-run/global/round-000002.safetensors") || return 1
	echo "  max |plain - secure| $d_, moved $m_ from round 0" >&2
	python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 1e-5 and float(sys.argv[2]) > 1e-4 else 1)' "$d_" "$m_"
}
check "secure round 2 adapter equals plaintext within 1e-5" same_sum
exit $t_failed
