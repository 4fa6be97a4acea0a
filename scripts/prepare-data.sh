#!/bin/sh
# scripts/prepare-data.sh — lays out the demo's text data under DATA (default
# data/), from the Debian fortunes packages, once: a second run finds the
# marker file and does nothing.
#
#   DATA/en/        English fortunes (the regular files of the fortunes root;
#                   the root's links into it/ are Italian and are left out):
#                   the pretraining corpus of the base model
#   DATA/clients/de German      (fortunes-de)
#   DATA/clients/es Spanish     (fortunes-es)
#   DATA/clients/it Italian     (fortunes-it)
#   DATA/clients/rupl Russian and Polish (fortunes-ru, fortunes-pl), files
#                   prefixed ru- / pl-
#
# Only text files are copied (fortune index files *.dat, links to copied
# files and empty files are skipped). Files are copied rather than linked so
# the folder can be mounted into containers as it is.
# Usage: sh scripts/prepare-data.sh [DATA]   (FORTUNES=/path overrides the source)
set -eu
DATA=${1:-data}
SRC=${FORTUNES:-/usr/share/games/fortunes}
MARK="$DATA/.prepared-v1"
[ -f "$MARK" ] && exit 0

for d in "" de es it ru pl; do
	if [ ! -d "$SRC/$d" ]; then
		echo "prepare-data: $SRC/$d is missing; install the fortunes packages" \
			"(make deps installs fortunes fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-pl)" >&2
		exit 1
	fi
done

# copy_texts SRC_DIR DEST_DIR PREFIX: regular, non-empty, non-.dat files of
# SRC_DIR (not following links, not descending), copied as PREFIX+NAME.
copy_texts() {
	mkdir -p "$2"
	n=0
	for f in "$1"/*; do
		[ -f "$f" ] && [ ! -L "$f" ] && [ -s "$f" ] || continue
		case "$f" in *.dat) continue ;; esac
		cp "$f" "$2/$3$(basename "$f")"
		n=$((n + 1))
	done
	if [ "$n" -eq 0 ]; then
		echo "prepare-data: no text files in $1" >&2
		exit 1
	fi
	echo "prepare-data: $1 -> $2: $n files"
}

rm -rf "$DATA/en" "$DATA/clients"
copy_texts "$SRC" "$DATA/en" ""
copy_texts "$SRC/de" "$DATA/clients/de" ""
copy_texts "$SRC/es" "$DATA/clients/es" ""
copy_texts "$SRC/it" "$DATA/clients/it" ""
copy_texts "$SRC/ru" "$DATA/clients/rupl" "ru-"
copy_texts "$SRC/pl" "$DATA/clients/rupl" "pl-"
date -u +%Y-%m-%dT%H:%M:%SZ >"$MARK"
