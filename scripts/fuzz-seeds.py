#!/usr/bin/env python3
"""scripts/fuzz-seeds.py — writes the hand-made seed corpora under
tests/fuzz/corpus/NAME/ (valid inputs plus edge cases). Rerun after a format
changes; the outputs are committed, so the fuzz goals need no Python."""
import json, os, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def st(header, body=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


# safetensors: valid F32/BF16/F16 tensors with metadata, a scalar, edge cases
put("safetensors", "f32", st({"__metadata__": {"format": "pt"},
                              "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}},
                             struct.pack("<4f", 1, 2, 3, 4)))
put("safetensors", "mixed", st({"w.bf16": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
                                "w.f16": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]},
                                "s": {"dtype": "I64", "shape": [], "data_offsets": [8, 16]}},
                               b"\x80\x3f\x00\x40\x00\x3c\x00\x40" + struct.pack("<q", 7)))
put("safetensors", "empty_header", st({}))
put("safetensors", "zero_elems", st({"z": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]}}))
put("safetensors", "overlap", st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                  "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}, b"\0" * 8))
put("safetensors", "short", struct.pack("<Q", 1 << 40) + b"{}")

# HF config.json (LlamaForCausalLM) and edge cases
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
       "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
       "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 256,
       "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
       "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": [2, 3],
       "torch_dtype": "float32"}
put("config", "llama", json.dumps(cfg, indent=2))
c2 = dict(cfg); c2.pop("head_dim"); c2["tie_word_embeddings"] = False; c2["rope_scaling"] = None
put("config", "no_head_dim", json.dumps(c2))
c3 = dict(cfg); c3["num_key_value_heads"] = 3; c3["hidden_size"] = 2147483647
put("config", "bad_sizes", json.dumps(c3))
put("config", "not_object", "[1,2,3]")

# state.json as coord_state_save writes it
state = {"version": 1, "run_id": "0123456789abcdef0123456789abcdef", "round": 3, "done": False,
         "reason": "", "retries": 1, "client_eps_max": 0.5,
         "accountant": [{"sigma": 1.1, "q": 0.25, "steps": 3}],
         "clients": [{"key": "a" * 64, "num_samples": 100, "joined_round": 1, "last_round": 3},
                     {"key": "b" * 64, "num_samples": 50, "joined_round": 2, "last_round": 2}]}
put("state", "resume", json.dumps(state, indent=1))
s2 = dict(state); s2["done"] = True; s2["reason"] = "rounds"; s2["accountant"] = []; s2["clients"] = []
put("state", "done_empty", json.dumps(s2))
s3 = dict(state); s3["round"] = 1e300; s3["retries"] = -1
put("state", "huge", json.dumps(s3))

# keys: first byte 0 secret key, 1 public key, 2 allow list, 3 raw hex
hexk = "0f" * 32
put("keys", "secret", b"\x00" + (hexk + "\n").encode())
put("keys", "secret_ws", b"\x00" + ("  \n" + hexk + " \r\n").encode())
put("keys", "pub", b"\x01" + (hexk + "\n").encode())
put("keys", "allow", b"\x02" + ("# enrolled clients\n" + "ab" * 32 + "\n\n" + "cd" * 32
                                + "  # laptop\n" + "ab" * 32 + "\n").encode())
put("keys", "allow_bad", b"\x02" + ("ab" * 31 + "zz\n").encode())
put("keys", "hex", b"\x03" + hexk.encode())

# wire: first byte even -> raw envelope, odd -> body of type (b / 2) % 10, signed
for t in range(10):
    put("wire", "type%d_empty" % t, bytes([2 * t + 1]))
put("wire", "raw_empty", b"\x00")
put("wire", "raw_version", b"\x00\x08\x01\x10\x01")

# tokenizer: tokenizer.json files of the three supported layouts (tiny vocabularies):
# byte-level with a Split regex (Llama-3/Qwen), SentencePiece-style with byte fallback
# (Llama-2), Metaspace (Mistral)
_bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
_cs = _bs[:]
for _b in range(256):
    if _b not in _bs:
        _bs.append(_b)
        _cs.append(256 + len(_cs) - 188)
_vocab = {chr(c): i for i, (b, c) in enumerate(sorted(zip(_bs, _cs)))}
for _t in ["Ġt", "he", "Ġthe", "in", "Ġa"]:
    _vocab[_t] = len(_vocab)
_tj = lambda o: json.dumps(o, ensure_ascii=False)
put("tokenizer", "bytelevel.json", _tj({
    "version": "1.0",
    "added_tokens": [{"id": len(_vocab), "content": "<|im_end|>", "special": True, "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": False}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
                                               " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
    "post_processor": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False, "byte_fallback": False,
              "ignore_merges": True, "vocab": _vocab,
              "merges": [["Ġ", "t"], "h e", "Ġt he", "i n", ["Ġ", "a"]]}}))
_spv = {"<unk>": 0, "<s>": 1, "</s>": 2}
for _b in range(256):
    _spv["<0x%02X>" % _b] = 3 + _b
for _t in ["▁", "t", "h", "e", "▁t", "he", "▁the", "x", "▁x"]:
    _spv[_t] = len(_spv)
_sp = {"added_tokens": [{"id": 0, "content": "<unk>", "special": True},
                        {"id": 1, "content": "<s>", "special": True},
                        {"id": 2, "content": "</s>", "special": True}],
       "normalizer": {"type": "Sequence", "normalizers": [
           {"type": "Prepend", "prepend": "▁"},
           {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
       "pre_tokenizer": None,
       "post_processor": {"type": "TemplateProcessing", "single": [
           {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
       "decoder": {"type": "Sequence", "decoders": [
           {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
           {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
       "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                 "vocab": _spv, "merges": ["▁ t", "h e", "▁t he", "▁ x"]}}
put("tokenizer", "sentencepiece.json", _tj(_sp))
put("tokenizer", "metaspace.json", _tj(dict(
    _sp, normalizer=None,
    pre_tokenizer={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True},
    decoder={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True})))
