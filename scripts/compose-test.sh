#!/bin/sh
# scripts/compose-test.sh — `make test-compose`: builds the images, brings the
# docker-compose stack up with 4 clients, waits until the coordinator has
# committed the configured rounds, checks metrics.jsonl, and tears everything
# down whatever happens.
#
# Where no container engine runs it starts dockerd for the test (and stops it
# after); where no image registry is reachable it creates the debian:bookworm
# and debian:bookworm-slim base images locally with debootstrap (from the
# Debian mirror apt uses) and `docker import`. Where none of that is possible
# (no docker CLI, no compose, no dockerd, not root) it prints
# "skip: REASON" and exits 0. Takes a few minutes (image build), so it is not
# part of `make test`.
#
# Environment: COMPOSE_TEST_ROUNDS (default 3), COMPOSE_TEST_CLIENTS (4),
# COMPOSE_TEST_TLS (0; 1 runs the stack over tls+tcp://), COMPOSE_TEST_TIMEOUT
# (seconds for the run, default 300), DEBIAN_MIRROR (for debootstrap).
set -u
cd "$(dirname "$0")/.." || exit 1
rounds=${COMPOSE_TEST_ROUNDS:-3}
nclients=${COMPOSE_TEST_CLIENTS:-4}
tls=${COMPOSE_TEST_TLS:-0}
limit=${COMPOSE_TEST_TIMEOUT:-300}
# the Debian mirror apt is configured with (deb822 .sources or sources.list)
apt_mirror() {
	sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
		head -n 1 | grep . ||
		awk '$1 == "deb" { print ($2 ~ /^\[/) ? $3 : $2; exit }' /etc/apt/sources.list 2>/dev/null
}
mirror=${DEBIAN_MIRROR:-$(apt_mirror)}
project=fedlora-test-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/compose-test.XXXXXX")
dockerd_pid=""
compose=""

say() { echo "compose-test: $*"; }
skip() { echo "skip: $*"; exit 0; }

cleanup() {
	trap - EXIT INT TERM HUP
	if [ -n "$compose" ]; then
		say "tearing down"
		$compose -p "$project" down -v --remove-orphans >/dev/null 2>&1
	fi
	if [ -n "$dockerd_pid" ]; then
		say "stopping the dockerd started for this test"
		kill "$dockerd_pid" 2>/dev/null
		i=0
		while kill -0 "$dockerd_pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
		kill -9 "$dockerd_pid" 2>/dev/null
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

command -v docker >/dev/null 2>&1 || skip "no docker CLI installed (apt-get install docker.io docker-compose)"
if docker compose version >/dev/null 2>&1; then
	compose_cmd="docker compose"
elif command -v docker-compose >/dev/null 2>&1; then
	compose_cmd="docker-compose"
else
	skip "neither 'docker compose' nor 'docker-compose' is installed"
fi

# 1. a running engine, or one started for the test
if ! docker info >/dev/null 2>&1; then
	command -v dockerd >/dev/null 2>&1 || skip "no Docker engine running and no dockerd to start"
	[ "$(id -u)" = 0 ] || skip "no Docker engine running, and starting dockerd needs root"
	say "starting dockerd for this test"
	dockerd --host "unix:///var/run/docker.sock" >"$work/dockerd.log" 2>&1 &
	dockerd_pid=$!
	i=0
	until docker info >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -gt 150 ] || ! kill -0 "$dockerd_pid" 2>/dev/null; then
			tail -5 "$work/dockerd.log" | sed 's/^/  /'
			dockerd_pid=""
			skip "dockerd did not start (see the lines above)"
		fi
		sleep 0.2
	done
fi

# 2. base images: local, pulled, or bootstrapped
need_base() {
	for img in debian:bookworm debian:bookworm-slim; do
		docker image inspect "$img" >/dev/null 2>&1 && continue
		if timeout 120 docker pull -q "$img" >/dev/null 2>&1; then
			say "pulled $img"
			continue
		fi
		return 1
	done
	return 0
}
if ! need_base; then
	say "no registry reachable: bootstrapping debian bookworm locally"
	[ "$(id -u)" = 0 ] || skip "no registry reachable, and debootstrap needs root"
	if ! command -v debootstrap >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			debootstrap >/dev/null 2>&1 || skip "no registry reachable and debootstrap cannot be installed"
	fi
	root=$work/rootfs
	if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
		tail -5 "$work/debootstrap.log" | sed 's/^/  /'
		skip "no registry reachable and debootstrap of bookworm failed"
	fi
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
	tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' - debian:bookworm >/dev/null ||
		{ say "docker import failed"; exit 1; }
	docker tag debian:bookworm debian:bookworm-slim
	rm -rf "$root"
	say "imported debian:bookworm (and tagged it bookworm-slim)"
fi

# 3. build and run
compose=$compose_cmd
export FEDLORA_ROUNDS=$rounds FEDLORA_CLIENTS_PER_ROUND=$nclients FEDLORA_MIN_CLIENTS=$nclients
export FEDLORA_MAX_CLIENTS=$nclients FEDLORA_TLS=$tls FEDLORA_ROUND_TIMEOUT=60
export FEDLORA_IMAGE=fedlora-test:$$
say "building the image"
if ! $compose -p "$project" build >"$work/build.log" 2>&1; then
	tail -20 "$work/build.log" | sed 's/^/  /'
	say "FAILED: image build"
	exit 1
fi
say "up with $nclients clients, $rounds rounds (TLS: $tls)"
if ! $compose -p "$project" up -d --scale client="$nclients" >"$work/up.log" 2>&1; then
	tail -20 "$work/up.log" | sed 's/^/  /'
	say "FAILED: compose up"
	exit 1
fi
cid=$($compose -p "$project" ps -a -q coordinator | head -1)
[ -n "$cid" ] || { say "FAILED: no coordinator container"; exit 1; }
start=$(date +%s)
rc=""
while [ $(($(date +%s) - start)) -lt "$limit" ]; do
	state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$cid" 2>/dev/null)
	case "$state" in
	exited*) rc=${state#exited }; break ;;
	esac
	sleep 1
done
if [ -z "$rc" ]; then
	say "FAILED: the coordinator did not finish within ${limit}s"
	$compose -p "$project" logs --tail 20 >&2
	exit 1
fi
docker cp "$cid:/data/run/metrics.jsonl" "$work/metrics.jsonl" >/dev/null 2>&1
if ! python3 - "$work/metrics.jsonl" "$rounds" "$nclients" <<'PY'; then
import json, sys
path, rounds, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
keys = "round strategy selected reported rejected train_loss eval_loss agg_bias epsilon delta bytes_up bytes_down seconds".split()
try:
    L = [json.loads(l) for l in open(path) if l.strip()]
except Exception as e:
    print("  no metrics.jsonl: %s" % e); sys.exit(1)
ok = [m["round"] for m in L] == list(range(1, rounds + 1))
ok = ok and all(all(k in m for k in keys) for m in L)
ok = ok and all(m["reported"] == n for m in L)
print("  rounds %s, reported %s, eval_loss %s" % ([m["round"] for m in L],
      [m.get("reported") for m in L], [round(m.get("eval_loss", 0), 4) for m in L]))
sys.exit(0 if ok else 1)
PY
	say "FAILED: metrics.jsonl does not show $rounds rounds with $nclients reports each"
	$compose -p "$project" logs --tail 20 >&2
	exit 1
fi
if [ "$rc" != 0 ]; then
	say "FAILED: coordinator exit status $rc"
	exit 1
fi
# every replica picked its own index (hence its own key and data shard)
idx=$($compose -p "$project" logs --no-color client 2>/dev/null |
	sed -n 's/.*replica index \([0-9]*\).*/\1/p' | sort -n | uniq | tr '\n' ' ')
want=$(seq 0 $((nclients - 1)) | tr '\n' ' ')
if [ "$idx" != "$want" ]; then
	say "FAILED: client replica indices are '$idx', expected '$want'"
	exit 1
fi
say "client replicas took indices $idx"
say "ok: $rounds rounds committed by $nclients client containers in $(($(date +%s) - start))s"
docker image rm "$FEDLORA_IMAGE" >/dev/null 2>&1
exit 0
