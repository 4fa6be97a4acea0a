#!/bin/sh
# docker/entrypoint.sh — roles of the fedlora container image:
#   keys         one-shot: coordinator key, FEDLORA_MAX_CLIENTS client keys, the
#                allow list, and (FEDLORA_TLS=1) a CA with coordinator/client
#                certificates, all on the shared keys volume; existing keys are kept
#   coordinator  fedlora coordinator with settings from FEDLORA_* variables
#                (and FEDLORA_CONFIG=/path/run.json if set), run dir on a volume;
#                FEDLORA_SECURE_AGG=1 adds --secure-agg
#   client       fedlora client: picks its replica index (FEDLORA_CLIENT_INDEX,
#                else compose's container number, else a claim on the keys
#                volume), its key and its data shard by that index, and
#                connects to the coordinator by name
#   health       exit 0 if the coordinator listens on FEDLORA_PORT
#   anything else is executed as given (e.g. `fedlora eps --help`)
# Simulation-grade key handling: every client container can read the shared
# keys volume. Real deployments give each client only its own key.
set -eu
role=${1:-help}
[ $# -gt 0 ] && shift
KEYS=${FEDLORA_KEYS_DIR:-/keys}
RUN=${FEDLORA_RUN_DIR:-/data/run}
MAX=${FEDLORA_MAX_CLIENTS:-16}
PORT=${FEDLORA_PORT:-7070}
HOST=${FEDLORA_COORDINATOR_HOST:-coordinator}
TLS=${FEDLORA_TLS:-0}
SHARE=${FEDLORA_SHARE:-/usr/local/share/fedlora}
SECURE_AGG=${FEDLORA_SECURE_AGG:-0}

log() { echo "fedlora-$role: $*" >&2; }

wait_ready() {
	i=0
	while [ ! -f "$KEYS/.ready" ]; do
		i=$((i + 1))
		[ "$i" -gt 120 ] && { log "no keys in $KEYS after 60 s (is the keys service running?)"; exit 1; }
		sleep 0.5
	done
}

tls_args() { # tls_args NAME
	[ "$TLS" = 1 ] || return 0
	echo "--tls-cert $KEYS/pki/$1.pem --tls-key $KEYS/pki/$1.key --tls-ca $KEYS/pki/ca.pem"
}

scheme() { [ "$TLS" = 1 ] && echo "tls+tcp" || echo "tcp"; }

case "$role" in
keys)
	umask 077
	mkdir -p "$KEYS"
	rm -rf "$KEYS/claims" "$KEYS/.ready"
	[ -f "$KEYS/coordinator.key" ] || fedlora keygen --out "$KEYS/coordinator" >/dev/null
	i=0
	while [ "$i" -lt "$MAX" ]; do
		[ -f "$KEYS/client-$i.key" ] || fedlora keygen --out "$KEYS/client-$i" >/dev/null
		i=$((i + 1))
	done
	i=0
	: >"$KEYS/allow.txt.tmp"
	while [ "$i" -lt "$MAX" ]; do
		cat "$KEYS/client-$i.pub" >>"$KEYS/allow.txt.tmp"
		i=$((i + 1))
	done
	mv "$KEYS/allow.txt.tmp" "$KEYS/allow.txt"
	if [ "$TLS" = 1 ]; then
		sh "$SHARE/certs.sh" -o "$KEYS/pki" -n "$HOST,localhost,127.0.0.1" -c "$MAX" >/dev/null
	fi
	touch "$KEYS/.ready"
	log "keys for the coordinator and $MAX clients in $KEYS (TLS: $TLS)"
	;;
coordinator)
	wait_ready
	mkdir -p "$(dirname "$RUN")"
	# shellcheck disable=SC2046,SC2086
	exec fedlora coordinator --listen "$(scheme)://0.0.0.0:$PORT" --run-dir "$RUN" \
		--key "$KEYS/coordinator.key" --allow "$KEYS/allow.txt" \
		${FEDLORA_CONFIG:+--config "$FEDLORA_CONFIG"} \
		--task "${FEDLORA_TASK:-linreg}" --strategy "${FEDLORA_STRATEGY:-ffa}" \
		--aggregator "${FEDLORA_AGGREGATOR:-mean}" $([ "$SECURE_AGG" = 1 ] && echo --secure-agg) \
		--rounds "${FEDLORA_ROUNDS:-5}" --clients-per-round "${FEDLORA_CLIENTS_PER_ROUND:-4}" \
		--min-clients "${FEDLORA_MIN_CLIENTS:-4}" --round-timeout "${FEDLORA_ROUND_TIMEOUT:-60}" \
		$(tls_args coordinator) ${FEDLORA_COORDINATOR_ARGS:-} "$@"
	;;
client)
	wait_ready
	idx=${FEDLORA_CLIENT_INDEX:-}
	# compose names replicas PROJECT-client-N (N from 1); the embedded DNS
	# answers the reverse lookup of our own address with that name
	ip=$(hostname -i 2>/dev/null | awk '{print $1}')
	name=$(getent hosts "$ip" 2>/dev/null | awk '{print $2}' | cut -d. -f1)
	how="FEDLORA_CLIENT_INDEX"
	case "$idx:$name" in
	:*-client-[0-9]*) idx=$((${name##*-client-} - 1)) how="container name $name" ;;
	esac
	if [ -z "$idx" ]; then
		# fallback: claim the first free index on the keys volume (kept on restart)
		me=$(hostname)
		mkdir -p "$KEYS/claims"
		for f in "$KEYS"/claims/*/host; do
			[ -f "$f" ] && [ "$(cat "$f")" = "$me" ] && idx=$(basename "$(dirname "$f")") how="earlier claim"
		done
		i=0
		while [ -z "$idx" ] && [ "$i" -lt "$MAX" ]; do
			if mkdir "$KEYS/claims/$i" 2>/dev/null; then
				echo "$me" >"$KEYS/claims/$i/host"
				idx=$i how="claim on $KEYS/claims"
			fi
			i=$((i + 1))
		done
	fi
	if [ -z "$idx" ] || [ "$idx" -ge "$MAX" ]; then
		log "no client index left: raise FEDLORA_MAX_CLIENTS (now $MAX) and rerun the keys service"
		exit 1
	fi
	data=""
	if [ -n "${FEDLORA_DATA_SHARDS:-}" ]; then
		# ';'-separated shards (e.g. one fortunes language each): shard idx mod count
		n=$(echo "$FEDLORA_DATA_SHARDS" | awk -F';' '{print NF}')
		data=$(echo "$FEDLORA_DATA_SHARDS" | awk -F';' -v k=$((idx % n + 1)) '{print $k}')
	fi
	log "replica index $idx (from $how)${data:+, data $data}"
	# shellcheck disable=SC2046,SC2086
	exec fedlora client --connect "$(scheme)://$HOST:$PORT" --key "$KEYS/client-$idx.key" \
		--task "${FEDLORA_TASK:-linreg}" --client-index "$idx" \
		${data:+--data "$data"} ${FEDLORA_BASE:+--base "$FEDLORA_BASE"} \
		${FEDLORA_DEVICE:+--device "$FEDLORA_DEVICE"} $(tls_args "client-$idx") \
		${FEDLORA_CLIENT_ARGS:-} "$@"
	;;
health)
	hex=$(printf '%04X' "$PORT")
	cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" {f=1} END {exit !f}'
	;;
help|--help)
	sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
	;;
*)
	exec "$role" "$@"
	;;
esac
