#!/usr/bin/env python3
"""tests/reference/make_flag_fixtures.py — the added-token flag fixtures of
tests/fixtures/tok/, derived from the committed bytebpe/ and spbpe/ (no
download needed):

    python3 tests/reference/make_flag_fixtures.py tests/fixtures/tok
    NODE_PATH=/tmp/tokref/node_modules node tests/reference/tok_expected.js tests/fixtures/tok

  flagbpe/  bytebpe (NFC normalizer, byte-level) plus added tokens with
            single_word and normalized: <mask> (single_word), café
            (normalized: matches the NFD spelling too), ony (single_word and
            normalized), <sw> (special, single_word, lstrip, rstrip), think>
            (normalized; loses to the raw <think> where both could match)
  flagsp/   spbpe (Prepend + Replace normalizer) plus "a b" (normalized: its
            pattern is the normalized "\u2581a\u2581b") and <m> (single_word)
  flagmeta/ metabpe (no normalizer, Metaspace prepend_scheme "first") with the
            same two tokens: the pieces after a normalized match are not the
            first, so Metaspace does not prepend to them

The expected ids come from the Hugging Face `tokenizers` library through
tok_expected.js, like the other fixtures'.
"""
import json
import os
import sys


def tok(content, id_, single_word=False, lstrip=False, rstrip=False, normalized=False,
        special=False):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": normalized, "special": special}


def derive(root, src, dst, extra):
    with open(os.path.join(root, src, "tokenizer.json"), encoding="utf-8") as f:
        t = json.load(f)
    nid = 1 + max(max(t["model"]["vocab"].values()), max(a["id"] for a in t["added_tokens"]))
    t["added_tokens"] += [tok(c, nid + i, **kw) for i, (c, kw) in enumerate(extra)]
    os.makedirs(os.path.join(root, dst), exist_ok=True)
    with open(os.path.join(root, dst, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(t, f, ensure_ascii=False, indent=1)
    cfg = os.path.join(root, src, "tokenizer_config.json")
    if os.path.exists(cfg):
        with open(cfg, encoding="utf-8") as f, \
                open(os.path.join(root, dst, "tokenizer_config.json"), "w", encoding="utf-8") as g:
            g.write(f.read())


def main():
    root = sys.argv[1]
    derive(root, "bytebpe", "flagbpe", [
        ("<mask>", dict(single_word=True)),
        ("caf\u00e9", dict(normalized=True)),
        ("ony", dict(single_word=True, normalized=True)),
        ("<sw>", dict(single_word=True, lstrip=True, rstrip=True, special=True)),
        ("think>", dict(normalized=True)),
    ])
    for src, dst in (("spbpe", "flagsp"), ("metabpe", "flagmeta")):
        derive(root, src, dst, [
            ("a b", dict(normalized=True)),
            ("<m>", dict(single_word=True)),
        ])


main()
