# tests/keygen_test.sh — `fedlora keygen`: files and modes, the printed public
# key, refusal to overwrite, --force, usage errors, a missing folder created
# with mode 0700.
. tests/lib.sh

d=$TMPROOT/keys
out=$("$FEDLORA" keygen --out "$d/alice" 2>"$TMPROOT/err")
check "keygen: creates a missing folder (0700)" [ "$(stat -c %a "$d" 2>/dev/null)" = 700 ]
check "keygen: NAME.key is mode 0600" [ "$(stat -c %a "$d/alice.key")" = 600 ]
check "keygen: prints the public key that NAME.pub holds" [ "$out" = "$(cat "$d/alice.pub")" ]
check "keygen: public key is 64 hex characters" sh -c "grep -Eqx '[0-9a-f]{64}' '$d/alice.pub'"
before=$(cat "$d/alice.key")
"$FEDLORA" keygen --out "$d/alice" >/dev/null 2>"$TMPROOT/err2"
rc=$?
check "keygen: refuses to overwrite (exit 1)" [ "$rc" = 1 ]
check "keygen: refused overwrite leaves the key unchanged" [ "$before" = "$(cat "$d/alice.key")" ]
check "keygen: says to use --force" grep -q -- "--force" "$TMPROOT/err2"
"$FEDLORA" keygen --out "$d/alice" --force >/dev/null 2>&1
check "keygen: --force replaces the key" [ "$before" != "$(cat "$d/alice.key")" ]
check "keygen: replaced key is still 0600" [ "$(stat -c %a "$d/alice.key")" = 600 ]
"$FEDLORA" keygen >/dev/null 2>&1
check "keygen: no --out is a usage error (exit 2)" [ $? = 2 ]
"$FEDLORA" keygen --bogus >/dev/null 2>&1
check "keygen: unknown option is a usage error (exit 2)" [ $? = 2 ]
"$FEDLORA" keygen --help | grep -q "usage: fedlora keygen"
check "keygen: --help" [ $? = 0 ]
exit $t_failed
