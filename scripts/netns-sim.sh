#!/bin/sh
# scripts/netns-sim.sh — a federated run across separate network stacks: the
# coordinator and every client each get their own network namespace, joined
# by veth links to a bridge that lives in a namespace of its own, with delay
# and loss on every link (tc netem). Nothing is attached to the host's
# network: traffic stays inside the namespaces this script creates. It runs
# the same topology over tcp:// and over tls+tcp:// (mutual authentication,
# certificates from scripts/certs.sh), checks that every round is committed,
# and removes every namespace and process it made, whatever happens.
#
# usage: scripts/netns-sim.sh [options]
#   --clients N        client namespaces (default 3)
#   --rounds R         rounds per run (default 3)
#   --delay D          netem delay on every link end (default 50ms)
#   --loss L           netem loss on every link end (default 1%)
#   --transport T      tcp | tls | both (default both)
#   --strategy S       fedit | ffa | fair (default ffa)
#   --aggregator R     mean | norm-bound | median | trimmed-mean | krum (default mean)
#   --secure-agg       secure aggregation (the coordinator's --secure-agg)
#   --fedlora PATH     binary (default build/fedlora)
#   --timeout SEC      limit per run (default 100)
#   --keep DIR         keep logs and run directories in DIR
# Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), iproute2 and tc; prints
# "skip: REASON" and exits 0 where namespaces cannot be made. Where the kernel
# lacks sch_netem, loss is emulated with nftables (if installed) and the
# delay with a TCP relay in the hub namespace that clients connect through
# (python3); the script says so. Exit 0 when
# every run committed all its rounds, 1 otherwise.
set -u
clients=3 rounds=3 delay=50ms loss=1% transport=both strategy=ffa aggregator=mean timeout=100 keep=""
secure="" secure_txt=""
fedlora=${FEDLORA:-build/fedlora}
while [ $# -gt 0 ]; do
	case "$1" in
	--clients) clients=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--delay) delay=$2; shift 2 ;;
	--loss) loss=$2; shift 2 ;;
	--transport) transport=$2; shift 2 ;;
	--strategy) strategy=$2; shift 2 ;;
	--aggregator) aggregator=$2; shift 2 ;;
	--secure-agg) secure=--secure-agg secure_txt=" (secure aggregation)"; shift ;;
	--fedlora) fedlora=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--keep) keep=$2; shift 2 ;;
	-h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "netns-sim: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
case "$transport" in tcp|tls|both) ;; *) echo "netns-sim: --transport tcp|tls|both" >&2; exit 2 ;; esac
case "$clients" in ''|*[!0-9]*) echo "netns-sim: --clients needs a number" >&2; exit 2 ;; esac
[ "$clients" -ge 1 ] && [ "$clients" -le 50 ] || { echo "netns-sim: 1..50 clients" >&2; exit 2; }
fedlora=$(cd "$(dirname "$fedlora")" && pwd)/$(basename "$fedlora")
[ -x "$fedlora" ] || { echo "netns-sim: $fedlora not built (run make)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)

skip() { echo "skip: $1"; exit 0; }
[ "$(id -u)" = 0 ] || skip "network namespaces need root"
command -v ip >/dev/null 2>&1 || skip "iproute2 (ip) not installed"
command -v tc >/dev/null 2>&1 || skip "tc (iproute2) not installed"

tag=fl$$
hub=$tag-hub
net=10.$((200 + $$ % 50)).$(($$ / 50 % 250)).
coord_ip=${net}1
work=$(mktemp -d "${TMPDIR:-/tmp}/netns-sim.XXXXXX")
pids=""
namespaces=""

cleanup() {
	trap - EXIT INT TERM HUP
	for p in $pids; do kill "$p" 2>/dev/null; done
	sleep 0.2
	for p in $pids; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	# deleting a namespace deletes the veth ends inside it, and with them the peers
	for n in $namespaces; do ip netns del "$n" 2>/dev/null; done
	if [ -n "$keep" ]; then
		mkdir -p "$keep" && cp -r "$work"/. "$keep"/ && echo "netns-sim: logs kept in $keep"
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

mkns() {
	ip netns add "$1" 2>"$work/ns.err" || return 1
	namespaces="$namespaces $1"
	ip -n "$1" link set lo up
}

mkns "$hub" || skip "cannot create network namespaces ($(cat "$work/ns.err"))"
ip -n "$hub" link add br0 type bridge && ip -n "$hub" link set br0 up ||
	{ echo "netns-sim: cannot create a bridge in $hub" >&2; exit 1; }

netem_ok=1 nft_loss=0
# loss as a rate per 10000 packets, for the nftables fallback ("1%" -> 100)
loss_per10k=$(echo "$loss" | awk '{ sub("%", ""); printf "%d", $1 * 100 + 0.5 }')
# node NAME IP: a namespace with eth0 (IP/24) linked to the hub's bridge
node() {
	name=$1 addr=$2 idx=$3
	mkns "$name" || { echo "netns-sim: cannot create namespace $name" >&2; return 1; }
	ip link add "$tag-n$idx" netns "$name" type veth peer name "h$idx" netns "$hub" || return 1
	ip -n "$name" link set "$tag-n$idx" name eth0
	ip -n "$name" addr add "$addr/24" dev eth0
	ip -n "$name" link set eth0 up
	ip -n "$hub" link set "h$idx" master br0
	ip -n "$hub" link set "h$idx" up
	# impair both directions: the node's egress and the hub's egress toward it
	if [ "$netem_ok" = 1 ] &&
		ip netns exec "$name" tc qdisc add dev eth0 root netem delay "$delay" loss "$loss" 2>/dev/null &&
		ip netns exec "$hub" tc qdisc add dev "h$idx" root netem delay "$delay" loss "$loss" 2>/dev/null; then
		return 0
	fi
	netem_ok=0
	# no netem in this kernel: random loss with nftables, both directions
	if [ "$loss_per10k" -gt 0 ] && command -v nft >/dev/null 2>&1 &&
		ip netns exec "$name" nft add table inet flsim 2>/dev/null &&
		ip netns exec "$name" nft add chain inet flsim out '{ type filter hook output priority 0; }' &&
		ip netns exec "$name" nft add chain inet flsim in '{ type filter hook input priority 0; }' &&
		ip netns exec "$name" nft add rule inet flsim out oifname eth0 numgen random mod 10000 '<' "$loss_per10k" drop &&
		ip netns exec "$name" nft add rule inet flsim in iifname eth0 numgen random mod 10000 '<' "$loss_per10k" drop; then
		nft_loss=1
	fi
	return 0
}

node "$tag-co" "$coord_ip" 0 || exit 1
i=0
while [ "$i" -lt "$clients" ]; do
	node "$tag-c$i" "$net$((i + 10))" $((i + 1)) || exit 1
	i=$((i + 1))
done
if [ "$netem_ok" = 1 ]; then
	echo "netns-sim: $clients client namespaces + coordinator on bridge $hub/br0, netem $delay delay, $loss loss each way"
elif [ "$nft_loss" = 1 ] || [ "$loss_per10k" = 0 ]; then
	echo "netns-sim: $clients client namespaces + coordinator on bridge $hub/br0; this kernel has no tc netem:"
	[ "$nft_loss" = 1 ] && echo "netns-sim:   $loss random loss each way emulated with nftables"
else
	echo "netns-sim: WARNING: neither tc netem nor nftables is available; links run without loss"
fi
# reachability across the bridge (where ping exists; loss may eat one probe)
if command -v ping >/dev/null 2>&1; then
	ip netns exec "$tag-c0" ping -c 3 -W 3 "$coord_ip" >/dev/null 2>&1 ||
		echo "netns-sim: note: no ping reply from $coord_ip to client 0"
fi

# keys and certificates
mkdir -p "$work/keys"
"$fedlora" keygen --out "$work/keys/coordinator" >/dev/null 2>&1 || { echo "netns-sim: keygen failed" >&2; exit 1; }
: >"$work/allow.txt"
i=0
while [ "$i" -lt "$clients" ]; do
	"$fedlora" keygen --out "$work/keys/client-$i" >/dev/null 2>&1 || exit 1
	cat "$work/keys/client-$i.pub" >>"$work/allow.txt"
	i=$((i + 1))
done
# Without netem, a TCP relay in the hub namespace delays every byte stream by
# the delay in each direction: clients reach the coordinator through it.
relay_ip=""
if [ "$netem_ok" = 0 ] && command -v python3 >/dev/null 2>&1; then
	delay_ms=$(echo "$delay" | awk '/ms$/ { sub("ms", ""); print $1 + 0; next } /s$/ { sub("s", ""); print ($1 + 0) * 1000; next } { print $1 + 0 }')
	if [ "${delay_ms:-0}" -gt 0 ] && ip -n "$hub" addr add "${net}254/24" dev br0 2>/dev/null; then
		relay_ip=${net}254
		echo "netns-sim:   $delay delay each way emulated by a TCP relay at $relay_ip (hub namespace)"
	fi
fi
if [ "$transport" != tcp ]; then
	command -v openssl >/dev/null 2>&1 || skip "openssl not installed (needed for the TLS run)"
	sh "$here/certs.sh" -o "$work/pki" -n "coordinator,$coord_ip${relay_ip:+,$relay_ip}" -c "$clients" >/dev/null ||
		{ echo "netns-sim: certs.sh failed" >&2; exit 1; }
fi

cat >"$work/relay.py" <<'PY'
# TCP relay: LISTEN_IP PORT TARGET_IP PORT DELAY_MS. Every chunk read in either
# direction is written DELAY_MS later, in order (a stand-in for netem delay).
import asyncio, sys, time
lip, lport, tip, tport, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]) / 1000
async def pump(reader, writer):
    q = asyncio.Queue()
    async def rd():
        while True:
            data = await reader.read(65536)
            await q.put((time.monotonic() + delay, data))
            if not data:
                return
    async def wr():
        while True:
            due, data = await q.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    try:
        await asyncio.gather(rd(), wr())
    except Exception:
        pass
async def handle(cr, cw):
    for _ in range(100):  # the coordinator may not listen yet
        try:
            ur, uw = await asyncio.open_connection(tip, tport)
            break
        except OSError:
            await asyncio.sleep(0.1)
    else:
        cw.close(); return
    await asyncio.gather(pump(cr, uw), pump(ur, cw))
    cw.close(); uw.close()
async def main():
    srv = await asyncio.start_server(handle, lip, lport)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
PY

failed=0
# run_one tcp|tls
run_one() {
	mode=$1
	run=$work/run-$mode
	port=$((20000 + $$ % 20000))
	[ "$mode" = tls ] && port=$((port + 1))
	tlsc="" url="tcp://$coord_ip:$port" client_url="tcp://${relay_ip:-$coord_ip}:$port"
	if [ "$mode" = tls ]; then
		url="tls+tcp://$coord_ip:$port" client_url="tls+tcp://${relay_ip:-$coord_ip}:$port"
		tlsc="--tls-cert $work/pki/coordinator.pem --tls-key $work/pki/coordinator.key --tls-ca $work/pki/ca.pem"
	fi
	start=$(date +%s)
	# shellcheck disable=SC2086
	ip netns exec "$tag-co" "$fedlora" coordinator --listen "$url" --run-dir "$run" \
		--key "$work/keys/coordinator.key" --allow "$work/allow.txt" --task linreg \
		--strategy "$strategy" --aggregator "$aggregator" --rounds "$rounds" --clients-per-round "$clients" \
		--min-clients "$clients" --round-timeout 30 --linger 5 $secure $tlsc \
		>"$work/coordinator-$mode.log" 2>&1 &
	cpid=$!
	pids="$pids $cpid"
	if [ -n "$relay_ip" ]; then
		ip netns exec "$hub" python3 "$work/relay.py" "$relay_ip" "$port" "$coord_ip" "$port" \
			"$delay_ms" >"$work/relay-$mode.log" 2>&1 &
		pids="$pids $!"
	fi
	i=0
	while [ "$i" -lt "$clients" ]; do
		tlsk=""
		[ "$mode" = tls ] && tlsk="--tls-cert $work/pki/client-$i.pem --tls-key $work/pki/client-$i.key --tls-ca $work/pki/ca.pem"
		# shellcheck disable=SC2086
		ip netns exec "$tag-c$i" "$fedlora" client --connect "$client_url" \
			--key "$work/keys/client-$i.key" --task linreg --client-index "$i" \
			--give-up "$timeout" --quiet $tlsk >"$work/client-$i-$mode.log" 2>&1 &
		pids="$pids $!"
		i=$((i + 1))
	done
	waited=0
	while kill -0 "$cpid" 2>/dev/null && [ "$waited" -lt $((timeout * 5)) ]; do
		sleep 0.2
		waited=$((waited + 1))
	done
	if kill -0 "$cpid" 2>/dev/null; then
		kill "$cpid" 2>/dev/null
		crc=124
	else
		wait "$cpid"
		crc=$?
	fi
	n=$(grep -c '"round"' "$run/metrics.jsonl" 2>/dev/null)
	secs=$(($(date +%s) - start))
	if [ "$crc" = 0 ] && [ "${n:-0}" = "$rounds" ]; then
		echo "netns-sim: $mode run: $rounds/$rounds rounds committed with $clients clients across namespaces in ${secs}s$secure_txt"
	else
		echo "netns-sim: $mode run FAILED: coordinator exit $crc, ${n:-0}/$rounds rounds committed (${secs}s)$secure_txt"
		tail -n 8 "$work/coordinator-$mode.log" "$work"/client-*-"$mode".log 2>/dev/null | sed 's/^/  /'
		failed=1
	fi
	# clients end on Done; give them a moment, then stop any stragglers
	sleep 1
	for p in $pids; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	pids=""
}

case "$transport" in
tcp) run_one tcp ;;
tls) run_one tls ;;
both) run_one tcp; run_one tls ;;
esac
exit $failed
