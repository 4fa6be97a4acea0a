# tests/netns_test.sh — scripts/netns-sim.sh as a test: coordinator and 3
# clients in separate network namespaces joined by veth links with delay and
# loss (tc netem; or nftables loss and a delaying TCP relay where the kernel
# has no netem), one run over tcp:// and one over tls+tcp://, then one over
# tcp:// with --secure-agg; every round must be committed and every namespace
# removed afterwards. Skips where namespaces cannot be made (not root, no
# iproute2). Takes about 30 s.
. tests/lib.sh

out=$TMPROOT/netns.out
before=$(ip netns list 2>/dev/null | grep -c '^fl[0-9]*-')
sh scripts/netns-sim.sh --fedlora "$FEDLORA" --clients 3 --rounds 3 --transport both \
	--timeout 90 >"$out" 2>&1
rc=$?
if grep -q '^skip: ' "$out"; then
	skip netns_sim "$(sed -n 's/^skip: //p' "$out" | head -1)"
	exit 0
fi
sed 's/^/# /' "$out"
if [ "$rc" = 0 ] && grep -q '^netns-sim: tcp run: 3/3 rounds committed' "$out"; then
	ok "netns: tcp run across namespaces commits every round"
else
	notok "netns: tcp run across namespaces commits every round (exit $rc)"
fi
if grep -q '^netns-sim: tls run: 3/3 rounds committed' "$out"; then
	ok "netns: tls run across namespaces commits every round"
elif grep -q 'openssl not installed' "$out"; then
	skip "netns: tls run" "openssl not installed"
else
	notok "netns: tls run across namespaces commits every round"
fi
# one secure-aggregation run over tcp:// (2 rounds, a few seconds)
sh scripts/netns-sim.sh --fedlora "$FEDLORA" --clients 3 --rounds 2 --transport tcp \
	--secure-agg --timeout 60 >"$out.sa" 2>&1
rc=$?
sed 's/^/# /' "$out.sa"
if [ "$rc" = 0 ] &&
	grep -q '^netns-sim: tcp run: 2/2 rounds committed.*(secure aggregation)' "$out.sa"; then
	ok "netns: secure-aggregation run across namespaces commits every round"
else
	notok "netns: secure-aggregation run across namespaces commits every round (exit $rc)"
fi
after=$(ip netns list 2>/dev/null | grep -c '^fl[0-9]*-')
check "netns: every namespace removed afterwards" [ "$after" -le "$before" ]
exit $t_failed
