#!/usr/bin/env python3
"""bench/peft_ref.py: the PyTorch reference for bench/train_gpu.

The same LoRA fine-tuning step as build/bench/train_gpu, with transformers'
LlamaForCausalLM + peft LoRA in bf16: r 16, alpha 32, dropout 0 on q_proj and
v_proj, random weights, batch 8 of 1024 tokens, AdamW (fused) on the LoRA
parameters, for two shapes:
  smollm-135m : hidden 576, 30 layers, 9 heads, 3 KV heads, MLP 1536,
                vocab 49152, tied
  llama-3.2-1b: hidden 2048, 16 layers, 32 heads, 8 KV heads, MLP 8192,
                vocab 128256, tied, rope theta 500000 (no llama3 scaling,
                as fedlora computes it)
in two modes: "eager" (the model as transformers builds it, SDPA attention)
and "compile" (torch.compile of the PEFT model, default mode).

A step is forward with labels (loss in float32 as transformers computes it),
backward, optimizer step, zero_grad, and .item() of the loss (a host sync,
as fedlora's step ends with the loss on the host). Reported per shape and
mode: median step time over --steps timed steps after --warmup warm-up steps
(compile: the warm-up includes compilation), tokens/s, peak GPU memory
(torch.cuda.max_memory_allocated) and MFU with the same FLOP count as
train_gpu: 4 * N_mm + 12 * L * T * Hq * D per token, N_mm the weights of
every matrix product (LM head counted once), peak 989 TFLOP/s.

  python3 bench/peft_ref.py [--shape smollm|llama1b|all] [--modes eager,compile]
                            [--steps N] [--warmup W] [--batch B] [--seq T]
                            [--seqs T1,T2,...] [--grad-checkpoint off|on|both]
                            [--json FILE]
--seqs runs every listed sequence length (instead of --seq); --grad-checkpoint
on runs with model.gradient_checkpointing_enable() (non-reentrant), both runs
each configuration without and then with it.
Prints a table and writes JSON. Needs torch, transformers and peft, and a GPU.
"""
import argparse
import json
import statistics
import sys
import time
import traceback

PEAK_FLOPS = 989e12

SHAPES = {
    "smollm": dict(name="smollm-135m", hidden=576, layers=30, heads=9, kv=3, inter=1536,
                   vocab=49152, theta=10000.0),
    "llama1b": dict(name="llama-3.2-1b", hidden=2048, layers=16, heads=32, kv=8, inter=8192,
                    vocab=128256, theta=500000.0),
}


def flops_per_token(s, T):
    D = s["hidden"] // s["heads"]
    QD, KD, C = s["heads"] * D, s["kv"] * D, s["hidden"]
    nmm = s["layers"] * (C * (QD + 2 * KD) + QD * C + 3 * C * s["inter"]) + s["vocab"] * C
    return 4.0 * nmm + 12.0 * s["layers"] * T * QD, nmm


def make_model(s, T, torch, transformers):
    from transformers import LlamaConfig, LlamaForCausalLM
    kw = dict(hidden_size=s["hidden"], intermediate_size=s["inter"],
              num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
              num_key_value_heads=s["kv"], vocab_size=s["vocab"],
              max_position_embeddings=max(T, 2048), rms_norm_eps=1e-5,
              tie_word_embeddings=True, hidden_act="silu", attention_bias=False,
              mlp_bias=False, initializer_range=0.02)
    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        cfg = LlamaConfig(rope_parameters={"rope_type": "default", "rope_theta": s["theta"]}, **kw)
    else:
        cfg = LlamaConfig(rope_theta=s["theta"], **kw)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    return model.to(torch.bfloat16)


def run(shape_key, mode, B, T, steps, warmup, ckpt=False):
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    s = SHAPES[shape_key]
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = make_model(s, T, torch, transformers)
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    attn_impl = getattr(model.config, "_attn_implementation", None)
    lcfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                      target_modules=["q_proj", "v_proj"], bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    fwd = torch.compile(model) if mode == "compile" else model
    g = torch.Generator(device="cuda").manual_seed(1)
    ids = torch.randint(0, s["vocab"], (B, T), device="cuda", generator=g)

    def step():
        out = fwd(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.item()

    t0 = time.time()
    first = None
    for _ in range(warmup):
        loss = step()
        first = loss if first is None else first
    warm_s = time.time() - t0
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    fpt, nmm = flops_per_token(s, T)
    tps = B * T / med
    res = dict(shape=s["name"], mode=mode, ok=True, batch=B, seq=T, grad_checkpoint=ckpt,
               step_ms=med * 1e3, tokens_per_s=tps,
               peak_mem_bytes=int(torch.cuda.max_memory_allocated()),
               mfu=fpt * tps / PEAK_FLOPS, flops_per_token=fpt, matmul_params=nmm,
               warmup_s=warm_s, loss_first=first, loss_last=loss,
               lora_dtype=str(params[0].dtype), attn_implementation=attn_impl)
    del fwd, model, opt, params
    torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="all", choices=["smollm", "llama1b", "all"])
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--seqs", default="")
    ap.add_argument("--grad-checkpoint", default="off", choices=["off", "on", "both"])
    ap.add_argument("--json", default="build/bench/peft_ref.json")
    a = ap.parse_args()
    import torch
    import transformers
    import peft
    if not torch.cuda.is_available():
        print("peft_ref: no CUDA device", file=sys.stderr)
        return 2
    dev = torch.cuda.get_device_name(0)
    shapes = ["smollm", "llama1b"] if a.shape == "all" else [a.shape]
    modes = [m for m in a.modes.split(",") if m]
    seqs = [int(t) for t in a.seqs.split(",") if t] or [a.seq]
    ckpts = {"off": [False], "on": [True], "both": [False, True]}[a.grad_checkpoint]
    results = []

    def save():  # after every configuration: a timeout later keeps what finished
        with open(a.json, "w") as f:
            json.dump(dict(bench="peft_ref", device=dev, torch=torch.__version__,
                           transformers=transformers.__version__, peft=peft.__version__,
                           batch=a.batch, seq=a.seq, peak_flops=PEAK_FLOPS, results=results),
                      f, indent=1)

    configs = [(sk, mode, T, ck) for sk in shapes for T in seqs for ck in ckpts for mode in modes]
    for sk, mode, T, ck in configs:
        try:
            # compile needs more warm-up steps: the first ones compile
            w = max(a.warmup, 3) if mode == "compile" else a.warmup
            r = run(sk, mode, a.batch, T, a.steps, w, ck)
        except Exception as e:  # report and go on with the next configuration
            traceback.print_exc()
            r = dict(shape=SHAPES[sk]["name"], mode=mode, ok=False, batch=a.batch, seq=T,
                     grad_checkpoint=ck, error=repr(e)[:300])
            import torch as _t
            _t.cuda.empty_cache()
        results.append(r)
        save()
        print(json.dumps(r), flush=True)
    print(f"PEFT LoRA step (r 16 q_proj,v_proj, bf16, batch {a.batch} x seq {a.seq}) on {dev}; "
          f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}")
    print(f"{'shape':14s} {'mode':8s} {'seq':>6s} {'ckpt':>5s} {'step ms':>10s} "
          f"{'tokens/s':>12s} {'peak MiB':>10s} {'MFU':>7s}")
    for r in results:
        head = (f"{r['shape']:14s} {r['mode']:8s} {r['seq']:6d} "
                f"{'on' if r['grad_checkpoint'] else 'off':>5s}")
        if not r.get("ok"):
            print(f"{head} failed: {r.get('error', '')}")
            continue
        print(f"{head} {r['step_ms']:10.2f} {r['tokens_per_s']:12.0f} "
              f"{r['peak_mem_bytes'] / 2**20:10.0f} {100 * r['mfu']:6.1f}%")
    save()
    print(f"wrote {a.json}")
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
