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

# stindex: model.safetensors.index.json next to stindex_fuzz.c's shards
# s1.safetensors (a F32 [2,3], c BF16 [3]) and s2.safetensors (b F16 [4]);
# x.safetensors is a copy of the index bytes
good = {"a": "s1.safetensors", "b": "s2.safetensors", "c": "s1.safetensors"}
put("stindex", "good", json.dumps({"metadata": {"total_size": 38}, "weight_map": good}))
put("stindex", "no_metadata", json.dumps({"weight_map": good}))
put("stindex", "total_size_off", json.dumps({"metadata": {"total_size": 1e12}, "weight_map": good}))
put("stindex", "missing_shard", json.dumps({"weight_map": dict(good, b="s3.safetensors")}))
put("stindex", "escape", json.dumps({"weight_map": dict(good, b="../s2.safetensors")}))
put("stindex", "wrong_shard", json.dumps({"weight_map": dict(good, a="s2.safetensors")}))
put("stindex", "unlisted", json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}))
put("stindex", "not_in_shard", json.dumps({"weight_map": dict(good, z="s2.safetensors")}))
put("stindex", "fuzzed_shard", json.dumps({"weight_map": dict(good, q="x.safetensors")}))
put("stindex", "duplicate_key", '{"weight_map": {"a": "s1.safetensors", "a": "s1.safetensors"}}')

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
# Llama 3.1/3.2 rope scaling, as transformers 4 and 5 write it
llama3 = {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
          "original_max_position_embeddings": 8192, "rope_type": "llama3"}
c4 = dict(cfg); c4["rope_theta"] = 500000.0; c4["rope_scaling"] = llama3
put("config", "rope_llama3", json.dumps(c4, indent=2))
c5 = dict(cfg); c5.pop("rope_theta"); c5["rope_parameters"] = dict(llama3, rope_theta=500000.0)
put("config", "rope_parameters_llama3", json.dumps(c5))
# the other families: Qwen2 (q/k/v biases, window fields off), Qwen3 (q/k
# norms, explicit head_dim, transformers 5's layer_types), Mistral (a window)
q2 = dict(cfg, architectures=["Qwen2ForCausalLM"], model_type="qwen2", use_sliding_window=False,
          sliding_window=32768, max_window_layers=24)
put("config", "qwen2", json.dumps(q2, indent=2))
q3 = dict(cfg, architectures=["Qwen3ForCausalLM"], model_type="qwen3", head_dim=32,
          attention_bias=False, use_sliding_window=True, sliding_window=64, max_window_layers=1,
          layer_types=["full_attention", "sliding_attention"])
put("config", "qwen3", json.dumps(q3, indent=2))
mi = dict(cfg, architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=4096)
put("config", "mistral", json.dumps(mi, indent=2))

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

# gone.json as coord_gone_to_json writes it (run of tests/fuzz/gone_fuzz.c:
# run id below, round 3 committed, clients "aa", "bb", "cc")
gone = {"version": 1, "run_id": "0123456789abcdef0123456789abcdef", "clients": [
    {"key": "aa", "kind": "missed", "round": 4, "back": False},
    {"key": "cc", "kind": "dropped", "round": 2, "back": True}]}
put("gone", "two", json.dumps(gone, separators=(",", ":")))
g2 = dict(gone); g2["clients"] = [{"key": "zz", "kind": "missed", "round": 1, "back": True}]
put("gone", "unknown_key", json.dumps(g2))
g3 = dict(gone); g3["clients"] = [{"key": "bb", "kind": "missed", "round": 5, "back": False},
                                  {"key": "bb", "kind": "dropped", "round": 1e300, "back": 0}]
put("gone", "bad_round", json.dumps(g3))
put("gone", "truncated", json.dumps(gone)[:40])

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

# peft: 4-byte LE length of adapter_config.json, the config, then
# adapter_model.safetensors; shapes for peft_fuzz.c's model (hidden 16,
# intermediate 24, 2 layers, 2 heads of 8, 1 KV head)
DIMS = {"q_proj": ("self_attn", 16, 16), "k_proj": ("self_attn", 16, 8),
        "v_proj": ("self_attn", 16, 8), "o_proj": ("self_attn", 16, 16),
        "gate_proj": ("mlp", 16, 24), "up_proj": ("mlp", 16, 24), "down_proj": ("mlp", 24, 16)}


def peft_cfg(r, alpha, targets, **extra):
    c = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
         "target_modules": targets, "base_model_name_or_path": None, "lora_dropout": 0,
         "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
         "init_lora_weights": True, "modules_to_save": None, "use_rslora": False,
         "layers_to_transform": None, "revision": None}
    c.update(extra)
    return json.dumps(c, indent=2)


def peft_st(r, mods, dtype="F32", drop=0, extra=False):
    hdr, body = {"__metadata__": {"format": "pt"}}, b""
    for l in range(2):
        for m in mods:
            blk, i, o = DIMS[m]
            for w, shape in (("lora_A", [r, i]), ("lora_B", [o, r])):
                n = shape[0] * shape[1]
                if dtype == "F32":
                    raw = struct.pack("<%df" % n, *[0.01 * (k % 7) for k in range(n)])
                else:  # BF16: the high halves of the F32 values
                    raw = b"".join(struct.pack("<f", 0.01 * (k % 7))[2:] for k in range(n))
                hdr["base_model.model.model.layers.%d.%s.%s.%s.weight" % (l, blk, m, w)] = {
                    "dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(raw)]}
                body += raw
    keys = [k for k in hdr if k != "__metadata__"]
    for k in keys[:drop]:
        del hdr[k]
    if extra:
        hdr["base_model.model.lm_head.weight"] = {"dtype": "F32", "shape": [1],
                                                   "data_offsets": [len(body), len(body) + 4]}
        body += b"\0" * 4
    return st(hdr, body)


def peft(name, cfg, weights):
    c = cfg.encode()
    put("peft", name, struct.pack("<I", len(c)) + c + weights)


peft("qv_f32", peft_cfg(2, 4, ["q_proj", "v_proj"]), peft_st(2, ["q_proj", "v_proj"]))
peft("down_bf16", peft_cfg(1, 2.5, "down_proj"), peft_st(1, ["down_proj"], "BF16"))
peft("all", peft_cfg(1, 1, "all"), peft_st(1, list(DIMS)))
peft("missing", peft_cfg(2, 4, ["q_proj", "v_proj"]), peft_st(2, ["q_proj", "v_proj"], drop=1))
peft("extra", peft_cfg(2, 4, ["q_proj"]), peft_st(2, ["q_proj"], extra=True))
peft("rslora", peft_cfg(2, 4, ["q_proj"], use_rslora=True), peft_st(2, ["q_proj"]))
peft("pattern", peft_cfg(2, 4, ["q_proj"], rank_pattern={"q_proj": 4}), peft_st(2, ["q_proj"]))
peft("regex", peft_cfg(2, 4, ".*q_proj"), b"")
peft("bad_r", peft_cfg(2.5, 4, ["q_proj"]), b"")

# runcfg: coordinator --config JSON / run.json (coordinator/config.c names)
put("runcfg", "lm", json.dumps({"task": "lm", "strategy": "ffa", "rounds": 5, "clients_per_round": 4,
                                "min_clients": 2, "rank": 8, "alpha": 16, "lr": 1e-3,
                                "optimizer": "adamw", "lora_targets": "q_proj,v_proj",
                                "base_dir": "/models/tiny", "seq_len": 128,
                                "listen": "tcp://0.0.0.0:7700", "enroll_any": True}, indent=1))
put("runcfg", "dp_client", json.dumps({"task": "linreg", "strategy": "fedit", "dp": "client",
                                       "dp_clip": 1.0, "dp_noise": 1.1, "dp_delta": 1e-5,
                                       "target_eps": 8, "expected_clients": 10,
                                       "aggregator": "mean", "seed": 42}))
put("runcfg", "robust", json.dumps({"aggregator": "krum", "krum_f": -1, "krum_m": 0,
                                    "trim_frac": 0.1, "norm_bound": 0, "norm_factor": 2,
                                    "fair_ridge": 1, "fair_lambda": 0.01, "compute_bias": 0}))
put("runcfg", "strings", json.dumps({"dp-q": "1e-2", "round-timeout": "30", "recv_max": "1048576",
                                     "seed": "-12", "linger": 0.5, "enroll-any": 0}))
put("runcfg", "big_seed", json.dumps({"seed": "9223372036854775807", "recv_max": 4e15}))
put("runcfg", "unknown", json.dumps({"ranks": 4}))
put("runcfg", "wrong_type", json.dumps({"rounds": 1.5, "task": 3}))
put("runcfg", "empty", "{}")

# history: first byte even -> client state file (as state_save writes it),
# odd -> `fedlora eps --history` file
cst = {"phases": [{"sigma": 1.1, "q": 0.01, "steps": 120}, {"sigma": 0.8, "q": 0.02, "steps": 40}],
       "run_id": "0123456789abcdef0123456789abcdef", "delta": 1e-5, "epsilon": 2.5}
put("history", "client_state", b"\x00" + json.dumps(cst, indent="\t").encode())
put("history", "client_no_noise", b"\x00" + json.dumps(dict(cst, phases=[{"sigma": 0, "q": 1, "steps": 1}],
                                                            delta=0.5)).encode())
put("history", "client_empty", b"\x00" + json.dumps(dict(cst, phases=[], delta=None)).encode())
put("history", "client_bad_run", b"\x00" + json.dumps(dict(cst, run_id="has space")).encode())
put("history", "eps_list", b"\x01" + json.dumps([{"sigma": 1.0, "q": 0.1, "steps": 1000},
                                                 {"sigma": 4.0, "q": 1, "steps": 3}]).encode())
put("history", "eps_state", b"\x01" + json.dumps({"round": 3, "accountant": [
    {"sigma": 1.1, "q": 0.25, "steps": 3}]}).encode())
put("history", "eps_history_key", b"\x01" + json.dumps({"history": [
    {"sigma": 1e-3, "q": 1e-9, "steps": 1e15}, {"sigma": 1e300, "q": 0.5, "steps": 0}]}).encode())
put("history", "eps_trailing", b"\x01[] []")

# data: first byte b: mode b % 4 (0 jsonl, 1 text, 2 chat template,
# 3 tokenizer_config.json), T = 4 + (b / 4) % 32
jl = "\n".join(json.dumps(x) for x in [
    {"text": "a document of plain text"},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "4"}]},
    {"prompt": "Q: capital of France?\nA:", "completion": " Paris"},
    {"other": 1}]) + "\n\nnot json\n"
put("data", "jsonl", bytes([0 + 4 * 12]) + jl.encode())
put("data", "jsonl_T4", bytes([0]) + jl.encode())
put("data", "jsonl_bad_messages", bytes([4]) + b'{"messages": [{"role": "user"}]}\n')
put("data", "text", bytes([1 + 4 * 8]) + ("first paragraph\nstill first\n\nsecond paragraph "
                                          "with \xc3\xa9 bytes\n\n\n" + "x" * 200).encode())
put("data", "fortune", bytes([1 + 4 * 3]) + b"one fortune\n%\ntwo\nlines\n%\n%\nlast\n")
chat_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "chat")
for f in sorted(os.listdir(chat_dir)):
    if f.endswith(".jinja"):
        with open(os.path.join(chat_dir, f), "rb") as fh:
            put("data", "tmpl_" + f[:-6], b"\x02" + fh.read())
put("data", "tmpl_edge", b"\x02{%- set ns = namespace(n=0) -%}{% for m in messages[1:] %}"
    b"{% set ns.n = ns.n + 1 %}{{ m.content|trim|upper ~ loop.index0 }}{% endfor %}"
    b"{{ messages[-1]['content'][1:3] if messages else raise_exception('none') }}{{ ns.n }}")
put("data", "tokcfg_string", b"\x03" + json.dumps({
    "bos_token": "<s>", "eos_token": {"content": "</s>"},
    "chat_template": "{% for m in messages %}{{ bos_token + m.role + ': ' + m.content + eos_token }}"
                     "{% endfor %}"}).encode())
put("data", "tokcfg_list", b"\x03" + json.dumps({"chat_template": [
    {"name": "tool_use", "template": "{{ tools }}"},
    {"name": "default", "template": "{{ messages|length }}"}]}).encode())


# wire: valid bodies of every type for wire_fuzz.c's run ("run") and adapter
# (layers.0: in 8, out 4; layers.1: in 4, out 8; r 2), protobuf by hand
def varint(v):
    out = b""
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def fv(num, v):  # varint field
    return varint(num << 3) + varint(v)


def fb(num, data):  # length-delimited field
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def fd(num, x):  # double field
    return varint(num << 3 | 1) + struct.pack("<d", x)


def tensor(name, shape, dtype=1, chunks=1):
    n = shape[0] * shape[1]
    if dtype == 1:
        raw = struct.pack("<%df" % n, *[0.01 * (k % 5) for k in range(n)])
    else:  # BF16 / F16 zeros and ones
        raw = b"".join(b"\x80\x3f" if dtype == 2 else b"\x00\x3c" for _ in range(n))
    step = -(-len(raw) // chunks)
    step += (-step) % (4 if dtype == 1 else 2)
    t = fb(1, name) + fb(2, b"".join(varint(s) for s in shape)) + fv(3, dtype)
    for i in range(0, len(raw), step):
        t += fb(4, raw[i:i + step])
    return t


def tensors(num, which="AB", dtype=1, chunks=1):
    out = b""
    for name, i, o in (("layers.0", 8, 4), ("layers.1", 4, 8)):
        if "A" in which:
            out += fb(num, tensor(name + ".lora_A.weight", [2, i], dtype, chunks))
        out += fb(num, tensor(name + ".lora_B.weight", [o, 2], dtype, chunks))
    return out


# Ed25519 public key of wire_fuzz.c's signing seed (32 bytes of 7), which a
# Hello's client_key and a Welcome's coordinator_key must equal
FZ_PK = bytes.fromhex("ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c")


def wire(name, t, body):
    put("wire", name, bytes([2 * t + 1]) + body)


spec = fb(1, "lm") + fb(2, "tiny") + fv(4, 2) + fd(5, 4.0) + fb(6, "q_proj,v_proj") + \
    fb(7, "ffa") + fv(8, 7) + fv(13, 64) + fb(14, "ab" * 32)
wire("hello", 1, fb(1, "run") + fb(2, FZ_PK) + fb(3, "fedlora-0.1.0") +
     fb(4, fb(1, "cpu") + fv(2, 1 << 30)) + fv(5, 100) + fv(6, 3) + fb(7, "cd" * 32))
wire("welcome", 2, fb(1, "run") + fb(2, FZ_PK) + fb(3, spec) + fv(4, 10) + fv(5, 2) +
     fb(6, "fedlora-0.1.0"))
wire("reject", 3, fv(1, -5) + fb(2, "tokenizer mismatch"))
wire("get_task", 4, fb(1, "run") + fv(2, 3))
train = fb(4, fv(1, 2) + fv(2, 4) + fd(3, 0.01) + fd(4, 0.0) + fv(5, 1) + fv(6, 1) + fv(7, 99))
dp = fb(5, fv(1, 1) + fd(2, 1.0) + fd(3, 1.1) + fd(4, 0.1) + fd(5, 1e-5))
wire("task", 5, fb(1, "run") + fv(2, 4) + tensors(3) + train + dp + fv(6, 60000) + fv(7, 2))
wire("task_bf16_chunks", 5, fb(1, "run") + fv(2, 4) + tensors(3, dtype=2, chunks=3) + train +
     fb(5, fv(1, 0)))
wire("wait", 6, fv(1, 500) + fb(2, "run") + fv(3, 2))
wire("done", 7, fb(1, "run") + fv(2, 10))
metrics = fb(6, fd(1, 2.5) + fd(2, 2.6) + fd(3, 2.4) + fv(4, 2) + fv(5, 2) + fd(6, 0.5) +
             fd(7, 1e-5) + fd(8, 1000) + fd(9, 1.5))
wire("submit", 8, fb(1, "run") + fv(2, 1) + fb(3, b"\x01" * 24) + fv(4, 50) + tensors(5) + metrics)
wire("submit_b_f16", 8, fb(1, "run") + fv(2, 1) + fb(3, b"\x02" * 24) + fv(4, 50) +
     tensors(5, "B", dtype=3, chunks=2))
wire("ack", 9, fb(1, "run") + fv(2, 1) + fb(3, b"\x01" * 24))

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
# added tokens with single_word and normalized; "q" normalizes to nothing
put("tokenizer", "added_flags.json", _tj(dict(
    _sp, normalizer={"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"String": "q"}, "content": ""},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
    added_tokens=_sp["added_tokens"] + [
        {"id": len(_spv), "content": "q", "special": False, "normalized": True},
        {"id": len(_spv) + 1, "content": "<m>", "special": False, "single_word": True, "normalized": False},
        {"id": len(_spv) + 2, "content": "t h", "special": False, "single_word": True, "normalized": True,
         "lstrip": True, "rstrip": True}])))

# secagg: a selector byte (client and handler, tests/fuzz/secagg_fuzz.c), then an
# SaDown of the neighbour-restricted messages: the key list with the client's index
# and its neighbours' identity keys, a view (its 3 neighbours' flags bit-packed, LSB
# first: 0x03 = survivor, survivor, dropped; 0x0b the same with a padding bit set,
# refused), an unmask request with the window's signed views and signer identities
_k = bytes(range(32))
_sig = bytes(range(64))
put("secagg", "down_keylist_ids", b"\x00" + fv(4, 1) + fv(16, 2) + fd(12, 0.01) +
    b"".join(fb(5, _k) + fb(6, _k[::-1]) + fb(14, _sig) + fb(17, bytes([i]) * 32)
             for i in range(3)) + fb(13, varint(0) + varint(1) + varint(3)))
put("secagg", "down_view", b"\x08" + fv(4, 3) + fb(18, b"\x03"))
put("secagg", "down_view_padded", b"\x08" + fv(4, 3) + fb(18, b"\x0b"))
put("secagg", "down_unmask_views", b"\x0c" + fv(4, 4) + fb(10, varint(0) + varint(1) + varint(3)) +
    b"".join(fb(11, _sig) + fb(19, b"\x07") + fb(20, bytes([i]) * 32) for i in range(3)))
