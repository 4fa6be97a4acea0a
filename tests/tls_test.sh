# tests/tls_test.sh — a federated run over tls+tcp:// with mutual
# authentication: certificates from scripts/certs.sh, a coordinator and two
# clients on loopback. Checks: the run completes (exit 0, one metrics line per
# round); a client whose certificate comes from another CA, and a client with
# no certificate, are refused with a clear error on both sides (the client
# exits 1 naming its certificate, the coordinator logs the refused peer); a
# client that does not trust the coordinator's CA refuses the coordinator.
# Timing: every wait polls for its condition with a generous limit; the round
# timeout (120 s) and linger (30 s) are far above what the run needs, and cost
# nothing when it goes well (a round closes when both clients reported, the
# linger ends when both were told Done).
. tests/lib.sh

if ! command -v openssl >/dev/null 2>&1; then
	skip tls_run "openssl not installed (needed to make test certificates)"
	exit 0
fi
d=$TMPROOT
sh scripts/certs.sh -o "$d/pki" -c 2 >/dev/null && sh scripts/certs.sh -o "$d/other" -c 1 >/dev/null ||
	{ notok "tls: certs.sh makes a CA and certificates"; exit 1; }
ok "tls: certs.sh makes a CA and certificates"
mkdir -p "$d/keys"
"$FEDLORA" keygen --out "$d/keys/coordinator" >/dev/null 2>&1 &&
	"$FEDLORA" keygen --out "$d/keys/client-0" >/dev/null 2>&1 &&
	"$FEDLORA" keygen --out "$d/keys/client-1" >/dev/null 2>&1 &&
	"$FEDLORA" keygen --out "$d/keys/intruder" >/dev/null 2>&1 || { notok "tls: keygen"; exit 1; }
cat "$d/keys/client-0.pub" "$d/keys/client-1.pub" "$d/keys/intruder.pub" >"$d/allow.txt"

port=$(free_port)
url="tls+tcp://127.0.0.1:$port"
"$FEDLORA" coordinator --listen "$url" --run-dir "$d/run" --key "$d/keys/coordinator.key" \
	--allow "$d/allow.txt" --task linreg --strategy fedit --rounds 2 --clients-per-round 2 \
	--min-clients 2 --round-timeout 120 --linger 30 \
	--tls-cert "$d/pki/coordinator.pem" --tls-key "$d/pki/coordinator.key" \
	--tls-ca "$d/pki/ca.pem" >"$d/coord.out" 2>&1 &
cpid=$!
pids="$cpid"
cleanup() { stop_pids $pids; cleanup_tmp; }
trap cleanup EXIT

# the bad clients below must meet a listening coordinator
wait_for "the coordinator to listen on port $port (coord.out)" 60 \
	grep -q "bound port $port" "$d/coord.out" ||
	{ notok "tls: coordinator listens"; sed 's/^/  /' "$d/coord.out" >&2; exit 1; }

# bad_client NAME CERTDIR CERTNAME CADIR: a client that must be refused
bad_client() {
	name=$1; shift
	timeout 60 "$FEDLORA" client --connect "$url" --key "$d/keys/intruder.key" --task linreg \
		--client-index 0 --give-up 5 "$@" >"$d/$name.out" 2>&1
	echo $?
}
rc=$(bad_client otherca --tls-cert "$d/other/client-0.pem" --tls-key "$d/other/client-0.key" \
	--tls-ca "$d/pki/ca.pem")
if [ "$rc" = 1 ] && grep -q "does not accept this client's certificate" "$d/otherca.out"; then
	ok "tls: client with a certificate from another CA exits 1 with a clear error"
else
	notok "tls: client with a certificate from another CA exits 1 with a clear error (rc $rc)"
	sed 's/^/  /' "$d/otherca.out" | tail -n 5 >&2
fi
rc=$(bad_client nocert --tls-ca "$d/pki/ca.pem")
if [ "$rc" = 1 ] && grep -q "does not accept this client's certificate" "$d/nocert.out"; then
	ok "tls: client without a certificate exits 1 with a clear error"
else
	notok "tls: client without a certificate exits 1 with a clear error (rc $rc)"
	sed 's/^/  /' "$d/nocert.out" | tail -n 5 >&2
fi
rc=$(bad_client untrusting --tls-cert "$d/pki/client-0.pem" --tls-key "$d/pki/client-0.key" \
	--tls-ca "$d/other/ca.pem")
if [ "$rc" = 1 ] && grep -q "certificate does not chain to --tls-ca" "$d/untrusting.out"; then
	ok "tls: client that does not trust the coordinator's CA refuses it"
else
	notok "tls: client that does not trust the coordinator's CA refuses it (rc $rc)"
	sed 's/^/  /' "$d/untrusting.out" | tail -n 5 >&2
fi
# the coordinator logs a refusal after it closed the connection, so the
# refused client may have exited before the line is written
refused_logged() { [ "$(grep -c "refused TLS peer 127.0.0.1" "$d/coord.out")" -ge 2 ]; }
wait_for "2 'refused TLS peer' lines in coord.out" 60 refused_logged
n=$(grep -c "refused TLS peer 127.0.0.1" "$d/coord.out")
check "tls: coordinator logs each refused peer ($n lines)" [ "$n" -ge 2 ]

for i in 0 1; do
	"$FEDLORA" client --connect "$url" --key "$d/keys/client-$i.key" --task linreg \
		--client-index $i --give-up 60 --quiet \
		--tls-cert "$d/pki/client-$i.pem" --tls-key "$d/pki/client-$i.key" \
		--tls-ca "$d/pki/ca.pem" >"$d/client-$i.out" 2>&1 &
	pids="$pids $!"
done
wait_pid "$cpid" 120 || stop_pids "$cpid"
crc=$wst
if [ "$crc" = 0 ] && [ "$(grep -c '"round"' "$d/run/metrics.jsonl" 2>/dev/null)" = 2 ]; then
	ok "tls: a 2-round run over tls+tcp:// with mutual authentication completes"
else
	notok "tls: a 2-round run over tls+tcp:// with mutual authentication completes (coordinator rc $crc)"
	tail -n 15 "$d/coord.out" "$d/client-0.out" "$d/client-1.out" 2>/dev/null | sed 's/^/  /' >&2
fi
n=$(python3 -c 'import json,sys; L=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; print(min(m["reported"] for m in L))' "$d/run/metrics.jsonl" 2>/dev/null)
check "tls: both clients reported in every round" [ "${n:-0}" -ge 2 ]
exit $t_failed
