# tests/tls_test.sh — a federated run over tls+tcp:// with mutual
# authentication: certificates from scripts/certs.sh, a coordinator and two
# clients on loopback. Checks: the run completes (exit 0, one metrics line per
# round); a client whose certificate comes from another CA, and a client with
# no certificate, are refused with a clear error on both sides (the client
# exits 1 naming its certificate, the coordinator logs how many handshakes it
# refused); a client that does not trust the coordinator's CA refuses the
# coordinator.
# Timing: every wait polls for its condition with a generous limit; the round
# timeout (120 s) and linger (30 s) are far above what the run needs, and cost
# nothing when it goes well (a round closes when both clients reported, the
# linger ends when both were told Done).
. tests/lib.sh

# the bad clients below must meet a listening coordinator
tls_start tls 2 --rounds 2 --clients-per-round 2 --min-clients 2 --round-timeout 120 --linger 30

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
# the coordinator logs refused handshakes (a count, no peer address: a failed
# handshake has none) within a second or two of the first
refused_logged() { grep -q "refused [0-9]* TLS handshake" "$d/coord.out"; }
wait_for "a 'refused N TLS handshake(s)' line in coord.out" 60 refused_logged
n=$(sed -n 's/.*(\([0-9]*\) refused so far).*/\1/p' "$d/coord.out" | tail -n 1)
check "tls: coordinator logs the refused handshakes (${n:-no} so far)" [ "${n:-0}" -ge 1 ]

for i in 0 1; do
	tls_client "$d" "$url" $i --give-up 60 --quiet >"$d/client-$i.out" 2>&1 &
	pids="$pids $!"
done
run_done "tls: a 2-round run over tls+tcp:// with mutual authentication completes" 2 120 \
	"$d/coord.out" "$d/client-0.out" "$d/client-1.out"
n=$(python3 -c 'import json,sys; L=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; print(min(m["reported"] for m in L))' "$d/run/metrics.jsonl" 2>/dev/null)
check "tls: both clients reported in every round" [ "${n:-0}" -ge 2 ]
exit $t_failed
