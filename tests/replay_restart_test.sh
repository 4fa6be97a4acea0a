# tests/replay_restart_test.sh — a Submit captured before a coordinator kill -9
# is still a replay after the restart (nonces persist in RUN/nonces.log).
#
# Two clients, K = 2, quorum 2. Client B sleeps 100 ms in every local step
# (test-only FEDLORA_SLOW_MS: 2 s a round), so round 2 is still open when
# client A's Submit of it is acknowledged. A's sealed Submit is captured
# through the client's FEDLORA_CAPTURE_SUBMIT test hook (the exact signed
# bytes sent). The coordinator is killed with SIGKILL, restarted on the same
# run directory (round 2 is re-run: 1 is the last committed), and the
# captured bytes are sent again by a raw SP REQ peer (python3, plain TCP:
# nng's 8-byte handshake, 8-byte big-endian length, request id + payload).
# The reply must be a signed Reject with code FL_EREPLAY (-10, reason
# "replay"), the coordinator must log it as such, and it must say it restored
# the nonce from nonces.log. Without persistence the restarted coordinator
# acknowledges the old update (an Ack, type 9).
#
# Neither client stops on its own: once A's round-2 Submit is acknowledged
# the coordinator is killed first and the clients second, so no client's
# connection drops while the first coordinator runs and none can be in its
# gone.json. The restarted coordinator therefore selects both for round 2
# and keeps the round open waiting for them. (B used to stop after round 1
# with --max-rounds 1. When its drop was seen before round 2's selection,
# round 2 could not reach its quorum of 2; the coordinator of that time
# opened it anyway for A alone, the one now waits for clients without
# opening an attempt, so A never got round 2's Task. Before that, a drop
# that reached gone.json made the restart select nobody, and the resent
# Submit met "round closed" instead of the nonce check.)
#
# Timing: every wait polls for its condition (a log line) with a generous
# limit; B's 2 s of round 2 leave the kill far more time than the 0.1 s
# polls need, and round 2 stays open for its 120 s round timeout, far longer
# than the test needs after the restart.
. tests/lib.sh

pids=""
stop_all() { stop_pids $pids; }
trap 'stop_all; cleanup_tmp' EXIT

run="$TMPROOT/run"
mkdir -p "$run/keys"
"$FEDLORA" keygen --out "$run/keys/coordinator" >/dev/null 2>&1
for i in 0 1; do "$FEDLORA" keygen --out "$run/keys/client-$i" >/dev/null 2>&1; done
port=$(free_port)
url="tcp://127.0.0.1:$port"
COORD="$FEDLORA coordinator --listen $url --run-dir $run --key $run/keys/coordinator.key
	--task linreg --strategy fedit --rounds 3 --clients-per-round 2 --min-clients 2
	--round-timeout 120 --enroll-any --linger 2"
$COORD >"$TMPROOT/coord1.log" 2>&1 &
cpid=$!
pids="$cpid"
cap="$TMPROOT/submit.bin"
FEDLORA_CAPTURE_SUBMIT="$cap" "$FEDLORA" client --connect "$url" --key "$run/keys/client-0.key" \
	--task linreg --client-index 0 >"$TMPROOT/client-0.log" 2>&1 &
ca=$!
FEDLORA_SLOW_MS=100 "$FEDLORA" client --connect "$url" --key "$run/keys/client-1.key" \
	--task linreg --client-index 1 >"$TMPROOT/client-1.log" 2>&1 &
cb=$!
pids="$pids $ca $cb"

wait_for "client A's round-2 Submit to be acknowledged (client-0.log)" 60 \
	grep -q "round 2/3: .* accepted" "$TMPROOT/client-0.log"
check "client A trained rounds 1 and 2, its round-2 Submit was acknowledged" [ $? -eq 0 ]
check "client B has not submitted round 2 (it trains for 2 s)" \
	sh -c "! grep -q 'round 2/3: ' '$TMPROOT/client-1.log'"
check "the Submit was captured (FEDLORA_CAPTURE_SUBMIT)" [ -s "$cap" ]
check "round 2 is still open (only round 1 committed)" \
	[ "$(wc -l <"$run/metrics.jsonl")" -eq 1 ]

kill -9 $cpid
wait $cpid 2>/dev/null
kill -9 $ca $cb # after the coordinator: see the top
wait $ca $cb 2>/dev/null
check "nonces.log holds the round-2 nonce (one 28-byte record), mode 0600" \
	[ "$(wc -c <"$run/nonces.log")" -eq 28 -a "$(stat -c %a "$run/nonces.log")" = 600 ]

$COORD >"$TMPROOT/coord2.log" 2>&1 &
cpid=$!
pids="$pids $cpid"
wait_for "the restarted coordinator to restore the nonce (coord2.log)" 60 \
	grep -q "round 2: 1 nonce(s) of Submits accepted before the restart restored" \
	"$TMPROOT/coord2.log"
check "restart restored the round-2 nonce from nonces.log" [ $? -eq 0 ]

reply=$(python3 - "$port" "$cap" <<'PY'
import socket, struct, sys
port, path = int(sys.argv[1]), sys.argv[2]
payload = open(path, "rb").read()
s = socket.create_connection(("127.0.0.1", port), timeout=60)
s.sendall(bytes([0, ord("S"), ord("P"), 0, 0, 0x30, 0, 0]))  # REQ0
def recvn(n):
    b = b""
    while len(b) < n:
        k = s.recv(n - len(b))
        if not k:
            raise SystemExit("connection closed")
        b += k
    return b
recvn(8)  # the REP peer's handshake
msg = struct.pack(">I", 0x80000001) + payload
s.sendall(struct.pack(">Q", len(msg)) + msg)
n = struct.unpack(">Q", recvn(8))[0]
rep = recvn(n)[4:]  # drop the request id
def fields(b):
    i, out = 0, {}
    def varint():
        nonlocal i
        v, sh = 0, 0
        while True:
            c = b[i]; i += 1
            v |= (c & 0x7F) << sh; sh += 7
            if c < 0x80:
                return v
    while i < len(b):
        key = varint(); f, w = key >> 3, key & 7
        if w == 0:
            out[f] = varint()
        elif w == 2:
            ln = varint(); out[f] = b[i:i + ln]; i += ln
        else:
            raise SystemExit("unexpected wire type %d" % w)
    return out
env = fields(rep)
typ = env.get(2, 0)
code, text = 0, ""
if typ == 3:  # MSG_REJECT
    rj = fields(env.get(3, b""))
    code = rj.get(1, 0)
    if code >= 1 << 63:
        code -= 1 << 64
    text = rj.get(2, b"").decode("utf-8", "replace")
print("type=%d code=%d text=%s" % (typ, code, text))
PY
)
echo "  reply to the resent Submit: $reply" >&2
case "$reply" in
"type=3 code=-10 "*) ok "resent pre-kill Submit is rejected after the restart with code replay" ;;
*) notok "resent pre-kill Submit is rejected after the restart with code replay" ;;
esac
wait_for "the coordinator to log the replay (coord2.log)" 60 \
	grep -q "rejected (replay)" "$TMPROOT/coord2.log"
check "the coordinator logs the rejection with reason replay" [ $? -eq 0 ]

stop_pids $cpid
exit $t_failed
