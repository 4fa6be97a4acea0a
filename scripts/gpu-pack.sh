#!/bin/sh
# scripts/gpu-pack.sh — packs what a GPU machine without the Debian -dev
# packages needs to run scripts/gpu-check.sh: the runtime .so files of
# libsodium, nng, mbedTLS, protobuf-c, cJSON, OpenBLAS, FFTW3, PCRE2 and utf8proc (from Debian's
# packages, downloaded with apt-get) and the binaries built here, into
# .devlibs/libs.tar.xz and .devlibs/build.tar.xz (.devlibs is git-ignored
# through .git/info/exclude). On the GPU machine:
#   sh scripts/gpu-unpack.sh && . /tmp/fedlora-libs/env && sh scripts/gpu-check.sh
set -e
cd "$(dirname "$0")/.."
grep -qx '/.devlibs/' .git/info/exclude 2>/dev/null || echo /.devlibs/ >>.git/info/exclude
mkdir -p .devlibs
if [ ! -f .devlibs/libs.tar.xz ]; then
	tmp=$(mktemp -d)
	(cd "$tmp" && apt-get download libsodium23 libnng1 libprotobuf-c1 libcjson1 \
		libmbedtls14 libmbedx509-1 libmbedcrypto7 libopenblas0-pthread libgfortran5 \
		libfftw3-double3 libpcre2-8-0 libutf8proc2 >/dev/null)
	for f in "$tmp"/*.deb; do dpkg -x "$f" "$tmp/root"; done
	rm -f "$tmp"/root/usr/lib/x86_64-linux-gnu/openblas-pthread/lib*blas.so.3 \
		"$tmp"/root/usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack.so.3
	tar -C "$tmp/root" -cJf .devlibs/libs.tar.xz usr/lib
	rm -rf "$tmp"
fi
make -j2 all tests-build bench >/dev/null
tar --exclude='*.d' --exclude='build/obj' -cJf .devlibs/build.tar.xz build
ls -la .devlibs
