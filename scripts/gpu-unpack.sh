#!/bin/sh
# scripts/gpu-unpack.sh — the GPU machine's half of scripts/gpu-pack.sh:
# unpacks the carried libraries into /tmp/fedlora-libs and the carried build
# into ./build, and writes /tmp/fedlora-libs/env to source for LD_LIBRARY_PATH.
set -e
cd "$(dirname "$0")/.."
mkdir -p /tmp/fedlora-libs
tar -C /tmp/fedlora-libs -xJf .devlibs/libs.tar.xz
tar -xJf .devlibs/build.tar.xz
d=/tmp/fedlora-libs/usr/lib/x86_64-linux-gnu
echo "export LD_LIBRARY_PATH=$d:$d/openblas-pthread:\${LD_LIBRARY_PATH:-}" >/tmp/fedlora-libs/env
