#!/bin/sh
# Installs the Debian packages fedlora needs to build, test and run its demo.
# Only missing packages are installed; apt-get runs as root, or through sudo.
# It never touches anything but Debian packages. clang + libclang-rt-14-dev
# are only for tests/fuzz_test.sh and make fuzz (libFuzzer); the build and
# runtime never need them, so check-deps and the Dockerfile leave them out.
set -e
PKGS="build-essential pkg-config libsodium-dev libnng-dev libmbedtls-dev \
libprotobuf-c-dev protobuf-c-compiler libopenblas-dev libcjson-dev libfftw3-dev \
libpcre2-dev libutf8proc-dev \
fortunes fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-pl \
gnuplot-nox iproute2 nftables openssl procps python3 clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: done"
