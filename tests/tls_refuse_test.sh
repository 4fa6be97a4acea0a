# tests/tls_refuse_test.sh — a TLS coordinator outlives peers that hang up in
# the middle of connecting. nng 1.5.2 (issue #1518) stops a listener for good
# when a connection fails with NNG_ECLOSED during the SP header exchange:
# clients still complete the TLS handshake and the header exchange (nng's
# transport does both on its own) and then wait forever. core/net.c's
# listener monitor notices and re-creates the listener.
# Checks: peers with a valid certificate (tests/tls_probe.py hangup) complete
# the handshake and reset the connection during the SP header exchange, in
# batches of 50 until the coordinator leaves a raw request unanswered (50
# to 150 did it in our runs); then (1) the coordinator answers a raw request
# again within 30 s and (2) a legitimate client registers and a round
# completes. On the code before the monitor both fail.
. tests/lib.sh
# nng never frees the connections a stopped listener holds (#1518): under
# LeakSanitizer (make asan) the coordinator would exit 1 for nng's leak
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

tls_start tls_refuse 1 --rounds 1 --clients-per-round 1 --min-clients 1 --round-timeout 120 \
	--linger 10
probe() {
	python3 tests/tls_probe.py "$1" 127.0.0.1 "$port" "$d/pki/ca.pem" \
		"$d/pki/client-0.pem" "$d/pki/client-0.key" "$2"
}
check "tls_refuse: the coordinator answers a raw request" probe req 2>/dev/null

# batches of 50 hangups until a raw request goes unanswered (a stopped
# listener: the monitor needs more than 6 s to re-create it), 500 at most
stopped=0 tries=0
while [ $stopped = 0 ] && [ $tries -lt 500 ]; do
	probe hangup 50
	tries=$((tries + 50))
	probe req 2>/dev/null || stopped=1
done
if [ $stopped = 1 ]; then
	ok "tls_refuse: $tries peers hanging up during the SP header stopped the listener"
else
	skip "tls_refuse: stopping the listener" "$tries hangups did not (an nng without issue #1518?)"
fi
answers() { probe req 2>/dev/null; }
if wait_for "a reply to a raw request after the hangups" 30 answers; then
	ok "tls_refuse: the coordinator answers again within 30 s"
else
	notok "tls_refuse: the coordinator answers again within 30 s"
fi
n=$(grep -c "stopped accepting connections" "$d/coord.out")
echo "  the listener was re-created $n time(s)" >&2

tls_client "$d" "$url" 0 --give-up 120 --quiet >"$d/client-0.out" 2>&1 &
pids="$pids $!"
run_done "tls_refuse: a legitimate client then registers and the round completes" 1 150 \
	"$d/coord.out" "$d/client-0.out"
exit $t_failed
