# tests/listen_backlog_test.sh — the coordinator's TCP listener has a backlog
# of 4096 (capped by net.core.somaxconn), not nng 1.5's 128, so thousands of
# clients connecting at once are not dropped in the accept queue
# (core/net.c raise_backlog). Reads the backlog with ss (Send-Q of a LISTEN
# socket); skips without ss.
. tests/lib.sh

if ! command -v ss >/dev/null 2>&1; then
	skip "listen backlog" "ss (iproute2) not installed"
	exit 0
fi
run="$TMPROOT/run"
mkdir -p "$run"
"$FEDLORA" keygen --out "$run/coordinator" >/dev/null 2>&1
port=$(free_port)
"$FEDLORA" coordinator --listen "tcp://127.0.0.1:$port" --run-dir "$run" \
	--key "$run/coordinator.key" --task linreg --rounds 1 --clients-per-round 2 \
	--min-clients 2 --enroll-any >"$TMPROOT/coord.log" 2>&1 &
cpid=$!
trap 'stop_pids $cpid; cleanup_tmp' EXIT
i=0
while ! grep -q "bound port $port" "$TMPROOT/coord.log" && [ $i -lt 100 ]; do
	sleep 0.1; i=$((i + 1))
done
want=4096
max=$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo 4096)
[ "$max" -lt "$want" ] && want=$max
got=$(ss -ltnH "sport = :$port" | awk '{print $3}' | head -n 1)
echo "  backlog of port $port: $got (want $want)" >&2
check "coordinator listens with a backlog of $want" [ "$got" = "$want" ]
exit $t_failed
