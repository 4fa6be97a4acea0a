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
                            [--modules qv|all] [--dp [--dp-only]]
                            [--dp-impl auto|opacus|func|hooks]
                            [--json FILE]
--seqs runs every listed sequence length (instead of --seq); --grad-checkpoint
on runs with model.gradient_checkpointing_enable() (non-reentrant), both runs
each configuration without and then with it. --modules all puts LoRA on the
seven matrices of every layer (q,k,v,o,gate,up,down_proj) instead of q,v.

--dp: each configuration runs the plain step and then a DP-SGD step of the
same model (each in its own fresh model), and the DP row gets the ratio of
its median step time to the plain one's (--dp-only: the DP step alone). The
DP step: per-example gradients of the LoRA parameters only (each example's
own mean token loss), each clipped to L2 norm C = 1.0 over all LoRA
parameters together, summed, Gaussian noise of std sigma * C (sigma 1.0)
added, divided by the batch size, AdamW step. Per-example gradients come
from Opacus' GradSampleModule when opacus is importable and --dp-impl is
auto or opacus, else from torch.func: functional_call of the PEFT model with
the LoRA parameters as inputs, vmap(grad_and_value(per-example loss)) over
the examples, the frozen base in bf16 as in the plain step; "compile" mode
compiles that function. With --dp-impl auto, a configuration whose Opacus or
torch.func DP step fails (not out of memory) is recorded and run again (eager
mode only) with "hooks": per-example gradients of the LoRA Linear weights from forward hooks
(inputs) and tensor hooks (output gradients), einsum over the tokens, as
Opacus computes them. The row's "dp_impl" says which ran. A configuration
that fails (out of memory included, recorded as error "oom") is reported and
the next one runs.
Prints a table and writes JSON (after every configuration, so a timeout
keeps what finished). Needs torch, transformers and peft, and a GPU.
"""
import argparse
import gc
import json
import statistics
import sys
import time
import traceback

PEAK_FLOPS = 989e12
DP_CLIP = 1.0
DP_SIGMA = 1.0
MODULES = {"qv": ["q_proj", "v_proj"],
           "all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}

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


def dp_apply(torch, params, per_sample, B, opt):
    """per_sample[i]: (B, *params[i].shape) per-example gradients. Clips each
    example's gradient (over all LoRA parameters) to DP_CLIP, sums, adds
    N(0, (DP_SIGMA * DP_CLIP)^2) noise, divides by B, steps the optimizer.
    Returns the number of examples clipped (a device tensor)."""
    sq = None
    for g in per_sample:
        t = g.float().reshape(B, -1).pow(2).sum(1)
        sq = t if sq is None else sq + t
    norms = sq.sqrt()
    factor = (DP_CLIP / (norms + 1e-6)).clamp(max=1.0)
    for p, g in zip(params, per_sample):
        s = torch.einsum("b,b...->...", factor, g.float())
        s.add_(torch.randn_like(s), alpha=DP_SIGMA * DP_CLIP).div_(B)
        p.grad = s.to(p.dtype)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return (norms > DP_CLIP).sum()


def run(shape_key, mode, B, T, steps, warmup, ckpt=False, modules="qv", dp=None):
    """dp None: the plain step; "opacus" or "func": the DP-SGD step."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    s = SHAPES[shape_key]
    try:
        import torch._dynamo
        torch._dynamo.reset()  # every configuration compiles afresh (no cache limit hits)
    except Exception:
        pass
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = make_model(s, T, torch, transformers)
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    attn_impl = getattr(model.config, "_attn_implementation", None)
    lcfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                      target_modules=MODULES[modules], bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg)
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    g = torch.Generator(device="cuda").manual_seed(1)
    ids = torch.randint(0, s["vocab"], (B, T), device="cuda", generator=g)
    nclipped = [None]

    if dp is None:
        fwd = torch.compile(model) if mode == "compile" else model

        def step():
            out = fwd(input_ids=ids, labels=ids)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return out.loss.item()
    elif dp == "hooks":
        if mode == "compile":
            raise ValueError("--dp-impl hooks runs eager only")
        # hand-written per-example gradients of the LoRA Linear weights (as
        # Opacus computes them): each lora_A / lora_B module's input (B,T,in)
        # saved in the forward, its output gradient (B,T,out) from a tensor
        # hook, gradient per example = sum over t of out_grad x input^T
        saved = {}

        def fwd_hook(mod, inp, out):
            x = inp[0].detach()

            def on_grad(g, mod=mod, x=x):
                # HF's loss is the mean over all B*(T-1) targets: times B
                # gives each example's gradient of its own mean loss
                saved[id(mod.weight)] = torch.einsum("bto,bti->boi", g.float(),
                                                     x.float()) * B
            out.register_hook(on_grad)

        handles = []
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and mod.weight.requires_grad:
                handles.append(mod.register_forward_hook(fwd_hook))
        if len(handles) != len(params):
            raise RuntimeError(f"hooks: {len(handles)} LoRA Linear modules for "
                               f"{len(params)} trainable tensors")
        fwd = model

        def step():
            saved.clear()
            out = model(input_ids=ids, labels=ids, use_cache=False)
            out.loss.backward()
            for p in params:
                p.grad = None
            nclipped[0] = dp_apply(torch, params, [saved[id(p)] for p in params], B, opt)
            return out.loss.item()
    elif dp == "opacus":
        from opacus import GradSampleModule
        gsm = GradSampleModule(model, batch_first=True, loss_reduction="mean", strict=False)
        fwd = torch.compile(gsm) if mode == "compile" else gsm

        def step():
            # HF's loss is the mean over all B*(T-1) targets; with
            # loss_reduction "mean" Opacus scales grad_sample by B, which
            # makes each row the gradient of that example's own mean loss
            out = fwd(input_ids=ids, labels=ids, use_cache=False)
            out.loss.backward()
            ps = [p.grad_sample for p in params]
            for p in params:
                p.grad_sample = None
            nclipped[0] = dp_apply(torch, params, ps, B, opt)
            return out.loss.item()
    else:
        from torch.func import functional_call, grad_and_value, vmap
        names = [n for n, _ in named]

        def ex_loss(lora, x):  # one example: its own mean token loss
            out = functional_call(model, lora, (), dict(input_ids=x.unsqueeze(0),
                                                        labels=x.unsqueeze(0), use_cache=False))
            return out.loss

        per_ex = vmap(grad_and_value(ex_loss), in_dims=(None, 0))
        if mode == "compile":
            per_ex = torch.compile(per_ex)
        fwd = per_ex

        def step():
            lora = {n: p.detach() for n, p in named}
            grads, losses = per_ex(lora, ids)
            nclipped[0] = dp_apply(torch, params, [grads[n] for n in names], B, opt)
            return losses.float().mean().item()

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
               modules=modules, dp=dp is not None, dp_impl=dp,
               step_ms=med * 1e3, tokens_per_s=tps,
               peak_mem_bytes=int(torch.cuda.max_memory_allocated()),
               mfu=fpt * tps / PEAK_FLOPS, flops_per_token=fpt, matmul_params=nmm,
               lora_params=sum(p.numel() for p in params),
               warmup_s=warm_s, loss_first=first, loss_last=loss,
               lora_dtype=str(params[0].dtype), attn_implementation=attn_impl)
    if dp is not None:
        res.update(dp_clip=DP_CLIP, dp_noise_multiplier=DP_SIGMA,
                   dp_nclipped=int(nclipped[0]) if nclipped[0] is not None else None)
    del fwd, model, opt, params, named
    gc.collect()
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
    ap.add_argument("--modules", default="qv", choices=["qv", "all"])
    ap.add_argument("--dp", action="store_true",
                    help="also run the DP-SGD step (clip 1.0, sigma 1.0) of each configuration")
    ap.add_argument("--dp-only", action="store_true",
                    help="with --dp: the DP step alone (its ratio then comes from another run)")
    ap.add_argument("--dp-impl", default="auto", choices=["auto", "opacus", "func", "hooks"],
                    help="per-example gradients: Opacus if importable (auto), else torch.func; "
                         "hooks: hand-written Linear hooks (auto falls back to them)")
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
                           batch=a.batch, seq=a.seq, modules=a.modules, dp_impl=dp_impl,
                           peak_flops=PEAK_FLOPS, results=results),
                      f, indent=1)

    dp_impl = None
    if a.dp:
        dp_impl = a.dp_impl
        if dp_impl == "auto":
            try:
                import opacus  # noqa: F401
                dp_impl = "opacus"
            except ImportError:
                dp_impl = "func"
        print(f"peft_ref: DP-SGD per-example gradients through "
              f"{'Opacus' if dp_impl == 'opacus' else 'torch.func vmap(grad)'}", flush=True)
    dps = ([dp_impl] if a.dp_only else [None, dp_impl]) if a.dp else [None]
    configs = [(sk, mode, T, ck, d) for sk in shapes for T in seqs for ck in ckpts
               for mode in modes for d in dps]
    for sk, mode, T, ck, d in configs:
        try:
            # compile needs more warm-up steps: the first ones compile
            w = max(a.warmup, 3) if mode == "compile" else a.warmup
            r = run(sk, mode, a.batch, T, a.steps, w, ck, a.modules, d)
        except Exception as e:  # report and go on with the next configuration
            traceback.print_exc()
            oom = isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e)
            r = dict(shape=SHAPES[sk]["name"], mode=mode, ok=False, batch=a.batch, seq=T,
                     grad_checkpoint=ck, modules=a.modules, dp=d is not None, dp_impl=d,
                     error="oom" if oom else repr(e)[:300])
        gc.collect()
        torch.cuda.empty_cache()
        if d in ("func", "opacus") and not r.get("ok") and r["error"] != "oom" and \
                a.dp_impl == "auto" and mode == "eager":
            # vmap (or Opacus) could not go through this model: keep the failure
            # and measure the hand-written per-example hooks instead
            results.append(r)
            save()
            print(json.dumps(r), flush=True)
            print(f"peft_ref: DP through {d} failed; trying per-example hooks", flush=True)
            d = "hooks"
            try:
                w = max(a.warmup, 3) if mode == "compile" else a.warmup
                r = run(sk, mode, a.batch, T, a.steps, w, ck, a.modules, d)
            except Exception as e:
                traceback.print_exc()
                oom = isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e)
                r = dict(shape=SHAPES[sk]["name"], mode=mode, ok=False, batch=a.batch, seq=T,
                         grad_checkpoint=ck, modules=a.modules, dp=True, dp_impl=d,
                         error="oom" if oom else repr(e)[:300])
            gc.collect()
            torch.cuda.empty_cache()
        if d is not None and r.get("ok"):  # the ratio to the plain step just before
            p = next((x for x in reversed(results) if x.get("ok") and not x.get("dp") and
                      x["shape"] == r["shape"] and x["mode"] == mode and x["seq"] == T and
                      x["grad_checkpoint"] == ck), None)
            r["dp_ratio"] = r["step_ms"] / p["step_ms"] if p else None
        results.append(r)
        save()
        print(json.dumps(r), flush=True)
    print(f"PEFT LoRA step (r 16 {','.join(MODULES[a.modules])}, bf16, batch {a.batch}) "
          f"on {dev}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}")
    print(f"{'shape':14s} {'mode':8s} {'step':12s} {'seq':>6s} {'ckpt':>5s} {'step ms':>10s} "
          f"{'tokens/s':>12s} {'peak MiB':>10s} {'MFU':>7s} {'dp/plain':>9s}")
    for r in results:
        kind = f"dp-{r['dp_impl']}" if r.get("dp") else "plain"
        head = (f"{r['shape']:14s} {r['mode']:8s} {kind:12s} {r['seq']:6d} "
                f"{'on' if r['grad_checkpoint'] else 'off':>5s}")
        if not r.get("ok"):
            print(f"{head} failed: {r.get('error', '')}")
            continue
        ratio = f"{r['dp_ratio']:.3f}x" if r.get("dp_ratio") else ""
        print(f"{head} {r['step_ms']:10.2f} {r['tokens_per_s']:12.0f} "
              f"{r['peak_mem_bytes'] / 2**20:10.0f} {100 * r['mfu']:6.1f}% {ratio:>9s}")
    save()
    print(f"wrote {a.json}")
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
