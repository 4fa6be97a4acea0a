#!/bin/sh
# Checks that what `make` needs to build fedlora is installed: the protoc-c
# compiler, a C compiler and the headers of the libraries the build links.
# Prints ONE line naming what is missing and `make deps`, and exits 1; prints
# nothing and exits 0 when all is there. CC and CPPFLAGS-style include dirs
# come from the environment (the Makefile passes CC).
CC=${CC:-cc}
missing=""
command -v protoc-c >/dev/null 2>&1 || missing="$missing protoc-c (protobuf-c-compiler)"
command -v "$CC" >/dev/null 2>&1 || missing="$missing $CC (build-essential)"
if [ -z "$missing" ] || command -v "$CC" >/dev/null 2>&1; then
	for h in "sodium.h libsodium-dev" "nng/nng.h libnng-dev" \
		"mbedtls/ssl.h libmbedtls-dev" "protobuf-c/protobuf-c.h libprotobuf-c-dev" \
		"cjson/cJSON.h libcjson-dev" "cblas.h libopenblas-dev" "fftw3.h libfftw3-dev" \
		"pcre2.h libpcre2-dev" "utf8proc.h libutf8proc-dev"; do
		set -- $h
		printf '#include <%s>\n' "$1" |
			"$CC" -E -DPCRE2_CODE_UNIT_WIDTH=8 -I/usr/include/x86_64-linux-gnu/openblas-pthread -x c - \
				>/dev/null 2>&1 || missing="$missing $2"
	done
fi
[ -z "$missing" ] && exit 0
echo "fedlora: missing build dependencies:$missing; run \`make deps\` (installs the Debian packages) and then \`make\`" >&2
exit 1
