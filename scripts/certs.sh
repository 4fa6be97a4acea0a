#!/bin/sh
# scripts/certs.sh — a small PKI for fedlora's tls+tcp:// transport (tests,
# docker-compose, first deployments): one CA, one coordinator certificate and
# N client certificates, made with openssl. EC P-256 keys, SHA-256, mode 0600
# key files. Not a replacement for your organisation's PKI: the CA key sits
# next to the certificates it signed.
#
# usage: scripts/certs.sh [-o DIR] [-n NAMES] [-c CLIENTS] [-d DAYS] [-f]
#   -o DIR      output folder (default certs/)
#   -n NAMES    comma-separated names the coordinator is reached by
#               (default coordinator,localhost,127.0.0.1); IP literals are
#               written both as IP and as DNS entries, because mbedTLS 2.x only
#               compares the expected server name with DNS entries
#   -c CLIENTS  number of client certificates client-0 .. client-(N-1) (default 4)
#   -d DAYS     validity (default 825)
#   -f          overwrite existing files (otherwise an existing CA is reused and
#               existing certificates are kept)
# Output: DIR/ca.pem, DIR/ca.key, DIR/coordinator.pem, DIR/coordinator.key,
#         DIR/client-I.pem, DIR/client-I.key.
set -eu
dir=certs names="coordinator,localhost,127.0.0.1" clients=4 days=825 force=0
while [ $# -gt 0 ]; do
	case "$1" in
	-o) dir=$2; shift 2 ;;
	-n) names=$2; shift 2 ;;
	-c) clients=$2; shift 2 ;;
	-d) days=$2; shift 2 ;;
	-f) force=1; shift ;;
	-h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "certs.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
command -v openssl >/dev/null 2>&1 || { echo "certs.sh: openssl not found (apt-get install openssl)" >&2; exit 1; }
case "$clients" in ''|*[!0-9]*) echo "certs.sh: -c needs a number" >&2; exit 2 ;; esac
umask 077
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

if [ "$force" = 1 ] || [ ! -f "$dir/ca.pem" ] || [ ! -f "$dir/ca.key" ]; then
	newkey "$dir/ca.key"
	openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$days" \
		-subj "/CN=fedlora test CA $(date +%s)-$$" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-out "$dir/ca.pem" 2>/dev/null
	chmod 644 "$dir/ca.pem"
fi

# sign NAME CN SAN EKU
sign() {
	name=$1 cn=$2 san=$3 eku=$4
	if [ "$force" = 0 ] && [ -f "$dir/$name.pem" ] && [ -f "$dir/$name.key" ]; then return 0; fi
	newkey "$dir/$name.key"
	openssl req -new -key "$dir/$name.key" -subj "/CN=$cn" -out "$tmp/$name.csr" 2>/dev/null
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$eku"
		[ -n "$san" ] && echo "subjectAltName=$san"
	} >"$tmp/$name.ext"
	openssl x509 -req -in "$tmp/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
		-CAcreateserial -CAserial "$tmp/ca.srl" -days "$days" -sha256 \
		-extfile "$tmp/$name.ext" -out "$dir/$name.pem" 2>/dev/null
	chmod 644 "$dir/$name.pem"
}

san=""
first=""
for n in $(echo "$names" | tr ',' ' '); do
	[ -z "$first" ] && first=$n
	case "$n" in
	*[!0-9.:]*) san="$san${san:+,}DNS:$n" ;;
	*) san="$san${san:+,}IP:$n,DNS:$n" ;;
	esac
done
sign coordinator "${first:-coordinator}" "$san" "serverAuth,clientAuth"
i=0
while [ "$i" -lt "$clients" ]; do
	sign "client-$i" "client-$i" "DNS:client-$i" "clientAuth"
	i=$((i + 1))
done
echo "certs.sh: CA and certificates in $dir (coordinator names: $names; $clients clients)"
