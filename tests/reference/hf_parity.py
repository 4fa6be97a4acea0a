#!/usr/bin/env python3
"""tests/reference/hf_parity.py: fedlora's forward pass against Hugging Face.

Runs on a machine with torch, transformers (4.4x or 5.x) and peft; not part
of `make test`. It needs a built fedlora binary (--fedlora, default
build/fedlora).

For each tiny LlamaForCausalLM configuration (grouped-query attention; tied
and untied embeddings; a non-default rope_theta; Llama 3.1/3.2 rope scaling,
rope_type "llama3", with a short original context so that the test sequence
spans all three frequency bands; attention_bias), and for tiny
Qwen2ForCausalLM (biases on q/k/v_proj), Qwen3ForCausalLM (per-head q/k
RMSNorm, head_dim wider than hidden/heads) and MistralForCausalLM (a
sliding window longer than the test sequence, and none) models, it
  1. builds a random model in float32 (norm weights randomized too, the
     q/k norms included, and every bias random and nonzero: transformers
     initializes biases to zero) and saves it with save_pretrained
     (config.json + model.safetensors);
  2. runs `fedlora eval --base DIR --tokens T --dump-logits L --json` on a
     random token sequence and compares the logits with transformers' (max
     |difference| / max |reference logit| < 1e-4) and the mean next-token
     loss (relative difference < 1e-4);
  3. builds a LoRA adapter with random, nonzero A and B on every linear
     module with peft (get_peft_model + save_pretrained), loads that PEFT
     folder into fedlora (`--adapter DIR`) and compares again;
  4. writes the same matrices as a fedlora adapter file (lora/io.h format)
     and compares fedlora's logits with that file too;
  5. when `fedlora export` is in the build: a short `fedlora sim --task lm`
     run on the saved model (the first case of each model family; --no-sim
     skips it) followed by `fedlora export`, and the exported folder loaded
     with PeftModel.from_pretrained onto that family's model, compared with
     fedlora's own logits for the run's final global adapter.
A family whose classes this transformers lacks (Qwen3 before 4.51) is
reported as SKIP, not as a failure.
With --device cuda every fedlora step also runs on the GPU (bf16 weights and
activations, float32 accumulation), compared with a looser tolerance
(--cuda-tol, default 3e-2; for the large random adapter of step 3,
at least twice the error of PyTorch's own bf16 run of the same model).

Prints a PASS/FAIL table; the exit status is 1 if any check failed.
"""
import argparse
import ast
import copy
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import torch

import transformers

try:
    import peft
    from peft import LoraConfig, PeftModel, get_peft_model
except ImportError:  # reported as a failed check below
    peft = None

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# head_dim 16 at theta 10000: wavelengths 6.3, 20, 63, 199, ... tokens against the
# llama3 band edges 32/4 = 8 and 32/1 = 32: one high, one medium, six low frequencies
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 32}

# model_type -> (config class, model class) names in transformers
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
}

CASES = [
    # name, hidden, inter, layers, heads, kv heads, vocab, tied, rope_theta, rope scaling,
    # family: model_type and the config fields of that family
    ("gqa-tied", 64, 96, 2, 4, 2, 300, True, 10000.0, None, {"model_type": "llama"}),
    ("gqa-untied", 64, 128, 3, 8, 2, 320, False, 10000.0, None, {"model_type": "llama"}),
    ("mha-untied-theta", 48, 80, 2, 4, 4, 258, False, 500000.0, None, {"model_type": "llama"}),
    ("gqa-tied-llama3", 64, 96, 2, 4, 2, 300, True, 10000.0, LLAMA3, {"model_type": "llama"}),
    # Llama's attention_bias: q, k, v and o_proj biased
    ("llama-attn-bias", 64, 96, 2, 4, 2, 300, False, 10000.0, None,
     {"model_type": "llama", "attention_bias": True}),
    # Qwen2 / Qwen2.5 as released: q/k/v biases, tied, the window off
    ("qwen2-tied", 64, 96, 2, 4, 2, 300, True, 1000000.0, None,
     {"model_type": "qwen2", "use_sliding_window": False, "max_window_layers": 2}),
    ("qwen2-untied", 48, 80, 3, 6, 2, 258, False, 10000.0, None,
     {"model_type": "qwen2", "use_sliding_window": False}),
    # Qwen3: q/k norms over head_dim 32 while hidden/heads is 16
    ("qwen3-headdim", 64, 96, 2, 4, 2, 300, True, 1000000.0, None,
     {"model_type": "qwen3", "head_dim": 32, "attention_bias": False, "use_sliding_window": False}),
    ("qwen3-untied", 64, 128, 2, 8, 4, 300, False, 10000.0, None,
     {"model_type": "qwen3", "head_dim": 16, "attention_bias": False}),
    # Mistral: a sliding window longer than the test sequence (--tokens 96), and none
    ("mistral-window", 64, 96, 2, 4, 2, 300, False, 10000.0, None,
     {"model_type": "mistral", "sliding_window": 128}),
    ("mistral-nowindow", 64, 96, 2, 8, 2, 300, False, 1000000.0, None,
     {"model_type": "mistral", "sliding_window": None, "head_dim": 8}),
]


def transformers_major():
    try:
        return int(transformers.__version__.split(".")[0])
    except ValueError:
        return 4


def family_classes(family):
    """(config class, model class) of a model_type, or None when this
    transformers does not have them."""
    cname, mname = FAMILIES[family["model_type"]]
    c, m = getattr(transformers, cname, None), getattr(transformers, mname, None)
    return (c, m) if c is not None and m is not None else None


def make_config(hidden, inter, layers, heads, kv, vocab, tied, theta, rope=None, family=None):
    family = family or {"model_type": "llama"}
    config_cls, _ = family_classes(family)
    kw = dict(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        vocab_size=vocab,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        hidden_act="silu",
        bos_token_id=256,
        eos_token_id=257,
        pad_token_id=None,
        initializer_range=0.1,
    )
    if family["model_type"] == "llama":
        kw.update(attention_bias=False, mlp_bias=False)
    kw.update({k: v for k, v in family.items() if k != "model_type"})
    if transformers_major() >= 5:
        params = dict(rope or {"rope_type": "default"}, rope_theta=theta)
        cfg = config_cls(rope_parameters=params, **kw)
    else:
        cfg = config_cls(rope_theta=theta, rope_scaling=dict(rope) if rope else None, **kw)
    return cfg


def build_model(cfg, seed):
    """A random model of cfg's family in float32: norm weights (the q/k norms
    too) in [0.5, 1.5], biases N(0, 0.3^2) (transformers zeroes them)."""
    torch.manual_seed(seed)
    _, model_cls = family_classes({"model_type": cfg.model_type})
    model = model_cls(cfg).to(torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            elif name.endswith(".bias"):
                p.normal_(0, 0.3)
    return model


def expected_tensors(family, layers):
    """Tensor names the saved model.safetensors must hold for the family's
    extra parameters (so the case tests them)."""
    names = []
    bias_qkv = family["model_type"] == "qwen2" or family.get("attention_bias")
    for i in range(layers):
        pre = "model.layers.%d.self_attn." % i
        if bias_qkv:
            names += [pre + m + ".bias" for m in ("q_proj", "k_proj", "v_proj")]
        if family.get("attention_bias"):
            names.append(pre + "o_proj.bias")
        if family["model_type"] == "qwen3":
            names += [pre + "q_norm.weight", pre + "k_norm.weight"]
    return names


def safetensors_names(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return set(json.loads(f.read(n))) - {"__metadata__"}


def run(cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
    return r


def read_raw_logits(path, n, vocab):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) != 4 * n * vocab:
        raise RuntimeError("%s: %d bytes, expected %d x %d float32" % (path, len(data), n, vocab))
    return torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(n, vocab).clone()


def read_npy(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise RuntimeError("%s: not an .npy file" % path)
    hlen = struct.unpack("<H", data[8:10])[0]
    header = ast.literal_eval(data[10 : 10 + hlen].decode("latin1"))  # a dict literal by the format
    if header["descr"] != "<f4" or header["fortran_order"]:
        raise RuntimeError("%s: unexpected npy header %r" % (path, header))
    shape = header["shape"]
    body = data[10 + hlen :]
    return torch.frombuffer(bytearray(body), dtype=torch.float32).reshape(shape).clone()


def fedlora_logits(fedlora, base, tokens_file, out, vocab, n, device, adapter=None, npy=False):
    path = os.path.join(out, "logits.npy" if npy else "logits.f32")
    cmd = [fedlora, "eval", "--base", base, "--tokens", tokens_file, "--dump-logits", path,
           "--json", "--device", device]
    if adapter:
        cmd += ["--adapter", adapter]
    r = run(cmd)
    info = json.loads(r.stdout.strip().splitlines()[-1])
    logits = read_npy(path) if npy else read_raw_logits(path, n, vocab)
    return logits, float(info["loss"])


def hf_logits(model, ids):
    x = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        out = model(input_ids=x, labels=x)
    return out.logits[0].float(), float(out.loss)


def compare(a, b):
    """max |a - b| / max |b| (b is the reference)."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def write_fedlora_adapter(path, peft_model, r, alpha):
    """The LoRA matrices of a peft model as a fedlora adapter file (lora/io.h):
    NAME.lora_A.weight / NAME.lora_B.weight, F32, metadata format/r/alpha."""
    from safetensors.torch import save_file

    tensors = {}
    for name, mod in peft_model.named_modules():
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {}):
            # "base_model.model.model.layers.0.self_attn.q_proj" -> "model.layers.0.self_attn.q_proj"
            key = name[len("base_model.model."):] if name.startswith("base_model.model.") else name
            tensors[key + ".lora_A.weight"] = mod.lora_A["default"].weight.detach().float().contiguous()
            tensors[key + ".lora_B.weight"] = mod.lora_B["default"].weight.detach().float().contiguous()
    save_file(tensors, path, metadata={"format": "fedlora-adapter", "r": str(r), "alpha": repr(float(alpha))})
    return len(tensors) // 2


class Table:
    def __init__(self):
        self.rows = []

    def add(self, case, check, value, tol, ok, note=""):
        self.rows.append((case, check, value, tol, ok, note))
        print("%-18s %-34s %-11s %-8s %s %s" % (case, check, "%.3e" % value if value is not None else "-",
                                              "%.0e" % tol if tol is not None else "-",
                                              "PASS" if ok else "FAIL", note), flush=True)

    def skip(self, case, check, note):
        print("%-18s %-34s %-11s %-8s SKIP %s" % (case, check, "-", "-", note), flush=True)

    def failed(self):
        return [r for r in self.rows if not r[4]]


def hf_bf16_error(model, ids, ref):
    """max |logits - ref| / max |ref| of the same model run by PyTorch in bf16 on
    the GPU: the rounding error a bf16 implementation cannot avoid here."""
    m = copy.deepcopy(model).to("cuda", torch.bfloat16)
    x = torch.tensor([ids], dtype=torch.long, device="cuda")
    with torch.no_grad():
        out = m(input_ids=x).logits[0].float().cpu()
    del m
    return compare(out, ref)


def check_logits(table, case, label, fl, fl_loss, ref, ref_loss, tol, bf16_err=None):
    """fedlora's logits against the float32 reference. On the GPU (bf16) the
    logits may differ by max(tol, 2 x PyTorch's own bf16 error on the same
    model): large random adapters on every module amplify bf16 rounding."""
    err = compare(fl, ref)
    note, ltol = "", tol
    if bf16_err is not None:
        note = "torch bf16 error %.3e" % bf16_err
        ltol = max(tol, 2 * bf16_err)
    table.add(case, label + " logits", err, ltol, err < ltol, note)
    lerr = abs(fl_loss - ref_loss) / max(abs(ref_loss), 1e-30)
    table.add(case, label + " loss", lerr, tol, lerr < tol, "fedlora %.6f hf %.6f" % (fl_loss, ref_loss))


def sim_and_export(args, table, case, base, work, model, ids, tokens_file, vocab, devices, tols):
    """fedlora sim --task lm on `base` for one round, fedlora export, load the
    export with PeftModel.from_pretrained and compare with fedlora's logits."""
    help_sim = run([args.fedlora, "sim", "--help"], check=False)
    help_exp = run([args.fedlora, "export", "--help"], check=False)
    if help_sim.returncode != 0 or help_exp.returncode != 0:
        table.add(case, "sim + export", None, None, False, "sim/export not in this build")
        return
    text = os.path.join(work, "text.txt")
    with open(text, "w") as f:
        for i in range(400):
            f.write("record %d: the quick brown fox jumps over the lazy dog %d times.\n\n" % (i, i * 7))
    run_dir = os.path.join(work, "run")
    cmd = [args.fedlora, "sim", "--task", "lm", "--base", base, "--data-per-client", text, "--clients", "2",
           "--rounds", "2", "--run-dir", run_dir, "--strategy", "fedit", "--rank", "4", "--alpha", "8",
           "--lora-targets", ",".join(TARGETS), "--seq-len", "32", "--local-steps", "3",
           "--batch-size", "4", "--optimizer", "adamw", "--lr", "0.01", "--seed", "7", "--quiet"]
    r = run(cmd, check=False)
    if r.returncode != 0:
        table.add(case, "sim --task lm", None, None, False, (r.stderr or r.stdout).strip().splitlines()[-1:] or "")
        return
    exp_dir = os.path.join(work, "export")
    r = run([args.fedlora, "export", "--run-dir", run_dir, "--out", exp_dir], check=False)
    if r.returncode != 0:
        table.add(case, "export", None, None, False, (r.stderr or r.stdout).strip().splitlines()[-1:] or "")
        return
    pm = PeftModel.from_pretrained(model, exp_dir).eval()
    ref, ref_loss = hf_logits(pm, ids)
    # the trained B must be nonzero for the check to mean anything
    nonzero = any(float(p.abs().max()) > 0 for n, p in pm.named_parameters() if "lora_B" in n)
    table.add(case, "export: trained B nonzero", None, None, nonzero)
    final = os.path.join(run_dir, "global", "round-000002.safetensors")
    for dev in devices:
        fl, fl_loss = fedlora_logits(args.fedlora, base, tokens_file, work, vocab, len(ids), dev,
                                     adapter=final)
        check_logits(table, case, "run adapter vs export[%s]" % dev, fl, fl_loss, ref, ref_loss, tols[dev])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fedlora", default="build/fedlora")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: also check fedlora's GPU path")
    ap.add_argument("--tol", type=float, default=1e-4, help="CPU tolerance (float32)")
    ap.add_argument("--cuda-tol", type=float, default=3e-2, help="GPU tolerance (bf16)")
    ap.add_argument("--tokens", type=int, default=96, help="length of the test sequence")
    ap.add_argument("--no-sim", action="store_true", help="skip the sim + export check")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    args.fedlora = os.path.abspath(args.fedlora)
    if not os.access(args.fedlora, os.X_OK):
        print("hf_parity: %s is not an executable (build fedlora first: make)" % args.fedlora)
        return 2
    devices = ["cpu"] + (["cuda"] if args.device == "cuda" else [])
    tols = {"cpu": args.tol, "cuda": args.cuda_tol}
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    print("torch %s, transformers %s, peft %s; fedlora %s" % (
        torch.__version__, transformers.__version__, peft.__version__ if peft else "MISSING", args.fedlora))
    print("%-18s %-34s %-11s %-8s %s" % ("case", "check", "error", "tol", "result"))
    table = Table()
    root = tempfile.mkdtemp(prefix="fedlora-parity-")
    simmed = set()  # model families whose sim + export ran
    try:
        for ci, (name, hidden, inter, layers, heads, kv, vocab, tied, theta, rope, fam) in enumerate(CASES):
            if family_classes(fam) is None:
                table.skip(name, "model family", "transformers %s has no %s" % (
                    transformers.__version__, FAMILIES[fam["model_type"]][1]))
                continue
            work = os.path.join(root, name)
            base = os.path.join(work, "base")
            os.makedirs(base)
            cfg = make_config(hidden, inter, layers, heads, kv, vocab, tied, theta, rope, fam)
            model = build_model(cfg, 1234 + ci)
            model.save_pretrained(base)
            with open(os.path.join(base, "config.json")) as f:
                saved = json.load(f)
            want = expected_tensors(fam, layers)
            if want:
                have = safetensors_names(os.path.join(base, "model.safetensors"))
                miss = [t for t in want if t not in have]
                table.add(name, "saved with the family's tensors", None, None, not miss,
                          "missing %s" % miss[:2] if miss else "%d tensors" % len(want))
            if saved.get("model_type") != fam["model_type"]:
                table.add(name, "config.json model_type", None, None, False, repr(saved.get("model_type")))
            g = torch.Generator().manual_seed(99 + ci)
            ids = [256] + torch.randint(0, 258, (args.tokens - 1,), generator=g).tolist()
            tokens_file = os.path.join(work, "tokens.txt")
            with open(tokens_file, "w") as f:
                f.write(" ".join(str(t) for t in ids) + "\n")
            ref, ref_loss = hf_logits(model, ids)
            if want:
                # the family's extra tensors must matter: biases zeroed, or q/k
                # norm weights set to 1, change the logits
                plain = copy.deepcopy(model)
                with torch.no_grad():
                    for pn, p in plain.named_parameters():
                        if pn.endswith(".bias"):
                            p.zero_()
                        elif "q_norm" in pn or "k_norm" in pn:
                            p.fill_(1.0)
                pref0, _ = hf_logits(plain, ids)
                diff = compare(pref0, ref)
                table.add(name, "biases / q,k norms change logits", diff, None, diff > 1e-3)
                del plain
            if rope:
                # the same weights without the scaling: the case must test something
                plain = build_model(make_config(hidden, inter, layers, heads, kv, vocab, tied, theta, None, fam),
                                    1234 + ci)
                pref0, _ = hf_logits(plain, ids)
                diff = compare(pref0, ref)
                table.add(name, "rope scaling changes the logits", diff, None, diff > 1e-3)
                del plain

            # 1-2: base model
            for dev in devices:
                try:
                    fl, fl_loss = fedlora_logits(args.fedlora, base, tokens_file, work, vocab, len(ids), dev)
                    check_logits(table, name, "base[%s]" % dev, fl, fl_loss, ref, ref_loss, tols[dev])
                except Exception as e:  # noqa: BLE001 (reported, not raised)
                    table.add(name, "base[%s]" % dev, None, None, False, str(e).strip().splitlines()[-1])
            # the .npy writer, once
            if ci == 0:
                try:
                    fl, _ = fedlora_logits(args.fedlora, base, tokens_file, work, vocab, len(ids), "cpu", npy=True)
                    err = compare(fl, ref)
                    table.add(name, "base[cpu] logits via .npy", err, args.tol, err < args.tol)
                except Exception as e:  # noqa: BLE001
                    table.add(name, "base[cpu] logits via .npy", None, None, False, str(e).strip().splitlines()[-1])
            if peft is None:
                table.add(name, "peft", None, None, False, "peft is not installed")
                continue

            # 3: a PEFT folder written by peft, random nonzero A and B on every module
            lcfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, lora_dropout=0.0, bias="none",
                              task_type="CAUSAL_LM")
            pm = get_peft_model(build_model(cfg, 1234 + ci), lcfg).eval()
            torch.manual_seed(5 + ci)
            with torch.no_grad():
                for pn, p in pm.named_parameters():
                    if "lora_A" in pn or "lora_B" in pn:
                        p.normal_(0, 0.2)
            peft_dir = os.path.join(work, "peft")
            pm.save_pretrained(peft_dir)
            pref, pref_loss = hf_logits(pm, ids)
            diff = compare(pref, ref)
            table.add(name, "adapter changes the logits", diff, None, diff > 1e-3)
            pbf16 = hf_bf16_error(pm, ids, pref) if "cuda" in devices else None
            for dev in devices:
                try:
                    fl, fl_loss = fedlora_logits(args.fedlora, base, tokens_file, work, vocab, len(ids), dev,
                                                 adapter=peft_dir)
                    check_logits(table, name, "peft-folder[%s]" % dev, fl, fl_loss, pref, pref_loss, tols[dev],
                                 pbf16 if dev == "cuda" else None)
                except Exception as e:  # noqa: BLE001
                    table.add(name, "peft-folder[%s]" % dev, None, None, False, str(e).strip().splitlines()[-1])

            # 4: the same matrices as a fedlora adapter file
            fl_file = os.path.join(work, "adapter.safetensors")
            try:
                nmat = write_fedlora_adapter(fl_file, pm, 4, 8)
                if nmat != layers * len(TARGETS):
                    raise RuntimeError("found %d LoRA modules, expected %d" % (nmat, layers * len(TARGETS)))
                for dev in devices:
                    fl, fl_loss = fedlora_logits(args.fedlora, base, tokens_file, work, vocab, len(ids), dev,
                                                 adapter=fl_file)
                    check_logits(table, name, "fedlora-file[%s]" % dev, fl, fl_loss, pref, pref_loss, tols[dev],
                                 pbf16 if dev == "cuda" else None)
            except Exception as e:  # noqa: BLE001
                table.add(name, "fedlora-file", None, None, False, str(e).strip().splitlines()[-1])

            # 5: sim + export + PeftModel.from_pretrained (the first case of each family: it trains)
            if fam["model_type"] not in simmed and not args.no_sim:
                simmed.add(fam["model_type"])
                try:
                    sim_and_export(args, table, name, base, work, build_model(cfg, 1234 + ci), ids, tokens_file,
                                   vocab, devices, tols)
                except Exception as e:  # noqa: BLE001
                    table.add(name, "sim + export", None, None, False, str(e).strip().splitlines()[-1])
            if "rope_parameters" in saved and "rope_theta" not in saved:
                note = "config.json has rope_theta only inside rope_parameters"
                print("# %s: %s" % (name, note))
            if rope:
                where = "rope_parameters" if (saved.get("rope_parameters") or {}).get("rope_type") == "llama3" \
                    else "rope_scaling"
                print("# %s: config.json has the llama3 scaling in %s" % (name, where))
    finally:
        if args.keep:
            print("work folder kept: %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    bad = table.failed()
    print("%d checks, %d failed: %s" % (len(table.rows), len(bad), "FAIL" if bad else "PASS"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
