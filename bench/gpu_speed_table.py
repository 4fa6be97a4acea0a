#!/usr/bin/env python3
"""bench/gpu_speed_table.py: the tables of scripts/gpu-speed.sh.

  python3 bench/gpu_speed_table.py --merge DIR OUT.json   every DIR/*.json into one
                                                          file, keyed by file name
  python3 bench/gpu_speed_table.py RUNS.json              the speed table, the DP
                                                          table and the issue-12 goals

RUNS.json maps a run name to the JSON that build/bench/train_gpu (bench
"train_gpu") or bench/peft_ref.py (bench "peft_ref") wrote. Speed table: one
row per (shape, modules, seq) and implementation, tokens/s, ratio to PyTorch +
PEFT under torch.compile of the same configuration, memory (fedlora: device
memory its model holds; PEFT: torch.cuda.max_memory_allocated) and MFU. DP
table: fedlora's DP step against its plain step of the same run, and the
PyTorch DP step (Opacus or torch.func) against the plain PEFT step of the
same mode. Missing or failed runs show as n/a or as a "failed:" line.
"""
import json
import os
import sys

SHAPES = ("llama-3.2-1b", "smollm-135m")
GOALS = {"llama-3.2-1b": 1.3, "smollm-135m": 2.0}  # fedlora / PEFT compile, issue 12
MFU_GOAL = 0.60  # llama-3.2-1b
DP_GOAL = 1.15  # fedlora DP step / plain step, llama-3.2-1b


def merge(d, out):
    runs = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".json"):
            continue
        try:
            with open(os.path.join(d, f)) as fh:
                runs[f[:-5]] = json.load(fh)
        except (OSError, ValueError):
            pass  # a run killed while writing: left out
    with open(out, "w") as fh:
        json.dump(runs, fh, indent=1)


def flatten(runs):
    rows = []
    for name, doc in runs.items():
        for r in doc.get("results", []):
            r = dict(r)
            r["run"] = name
            if doc.get("bench") == "train_gpu":
                r["impl"] = "fedlora/" + r.get("attention", "?")
                r["mode"] = "fedlora"
                # one train_gpu row holds the plain step and (--dp) the DP
                # step: it is a plain row here, its DP fields read as such
                r["dp_timed"] = r.pop("dp", False)
            else:
                r["impl"] = "peft " + r.get("mode", "?")
            r.setdefault("modules", doc.get("modules", "qv"))
            rows.append(r)
    return rows


def key(r):
    return (r.get("shape"), r.get("modules", "qv"), r.get("seq"))


def first(rows, pred):
    return next((r for r in rows if r.get("ok") and pred(r)), None)


def plain(rows, k, mode):
    return first(rows, lambda r: key(r) == k and r["mode"] == mode and not r.get("dp"))


def table(runs, out=sys.stdout):
    rows = flatten(runs)
    dev = next((d.get("device") for d in runs.values() if d.get("device")), "?")
    confs = [(s, m, t) for s in SHAPES for m in ("qv", "all") for t in (1024, 4096)]
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"== gpu-speed on {dev}")
    p("fedlora vs PyTorch + PEFT, LoRA r 16 (qv = q_proj,v_proj; all = q,k,v,o,gate,up,down),"
      " bf16, AdamW")
    p(f"{'shape':13s} {'mod':3s} {'seq':>5s} {'batch':>5s} {'impl':14s} {'tokens/s':>9s} "
      f"{'vs compile':>10s} {'mem GiB':>8s} {'MFU':>6s}")
    for k in confs:
        c = plain(rows, k, "compile")
        cand = [r for r in rows if r.get("ok") and key(r) == k and not r.get("dp")]
        cand.sort(key=lambda r: (r["mode"] != "fedlora", r["mode"] != "compile"))
        s, m, t = k
        if not cand:
            p(f"{s:13s} {m:3s} {t:5d} {'':>5s} {'n/a':14s}")
        for r in cand:
            vc = f"{r['tokens_per_s'] / c['tokens_per_s']:.2f}x" if c else "n/a"
            p(f"{s:13s} {m:3s} {t:5d} {r['batch']:5d} {r['impl']:14s} "
              f"{r['tokens_per_s']:9.0f} {vc:>10s} {r['peak_mem_bytes'] / 2**30:8.2f} "
              f"{100 * r['mfu']:5.1f}%")
    p("mem: fedlora = device memory its model holds; PEFT = torch.cuda.max_memory_allocated;"
      " MFU at 989 TFLOP/s")
    p()
    p("== DP-SGD step (per-example clipping to 1.0 of the LoRA gradients, noise sigma 1.0)")
    p(f"{'shape':13s} {'mod':3s} {'seq':>5s} {'batch':>5s} {'impl':22s} {'plain tok/s':>11s} "
      f"{'dp tok/s':>9s} {'dp/plain':>8s} {'dp mem GiB':>10s}")
    for k in confs:
        s, m, t = k
        lines = []
        f = first(rows, lambda r: key(r) == k and r["mode"] == "fedlora")
        if f and f.get("dp_step_ms"):
            lines.append((f["impl"], f["tokens_per_s"], f["dp_tokens_per_s"], f.get("dp_ratio"),
                          f.get("dp_peak_mem_bytes", 0), f["batch"]))
        for r in rows:
            if not (r.get("ok") and r.get("dp") and key(r) == k):
                continue
            pl = plain(rows, k, r["mode"])
            ratio = r.get("dp_ratio") or (r["step_ms"] / pl["step_ms"] if pl else None)
            lines.append((f"{r.get('dp_impl')} {r['mode']}", pl["tokens_per_s"] if pl else None,
                          r["tokens_per_s"], ratio, r["peak_mem_bytes"], r["batch"]))
        for impl, ptps, dtps, ratio, mem, b in lines:
            pt = f"{ptps:11.0f}" if ptps else f"{'n/a':>11s}"
            rt = f"{ratio:7.3f}x" if ratio else f"{'n/a':>8s}"
            p(f"{s:13s} {m:3s} {t:5d} {b:5d} {impl:22s} {pt} {dtps:9.0f} {rt} "
              f"{mem / 2**30:10.2f}")
    for r in rows:
        if not r.get("ok"):
            p(f"failed: {r['run']} {r.get('shape')} {r.get('mode', '')}"
              f"{' dp' if r.get('dp') else ''}: {r.get('error', 'see bench.log')}")
    p()
    p("== issue 12 goals (from the rows above)")
    for s in SHAPES:
        goal = GOALS[s]
        for m in ("qv", "all"):
            for t in (1024, 4096):
                f = first(rows, lambda r: key(r) == (s, m, t) and r["mode"] == "fedlora")
                c = plain(rows, (s, m, t), "compile")
                x = f["tokens_per_s"] / c["tokens_per_s"] if f and c else None
                got = f"{x:.2f}x" if x else "n/a"
                verdict = "n/a" if x is None else ("met" if x >= goal else "not met")
                extra = ""
                if s == "llama-3.2-1b" and f:
                    mv = "met" if f["mfu"] >= MFU_GOAL else "not met"
                    extra = f", MFU {100 * f['mfu']:.1f}% (goal {100 * MFU_GOAL:.0f}%: {mv})"
                p(f"{s} {m} seq {t}: fedlora / PEFT compile {got} "
                  f"(goal {goal}x: {verdict}){extra}")
    for m in ("qv", "all"):
        f = first(rows, lambda r: key(r) == ("llama-3.2-1b", m, 1024) and r["mode"] == "fedlora")
        if f and f.get("dp_ratio"):
            v = "met" if f["dp_ratio"] <= DP_GOAL else "not met"
            p(f"llama-3.2-1b {m} seq 1024: fedlora DP/plain {f['dp_ratio']:.3f}x "
              f"(goal <= {DP_GOAL}x: {v})")
        else:
            p(f"llama-3.2-1b {m} seq 1024: fedlora DP/plain n/a")


def main(argv):
    if len(argv) == 4 and argv[1] == "--merge":
        merge(argv[2], argv[3])
        return 0
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr if len(argv) != 2 else sys.stdout)
        return 0 if len(argv) == 2 else 2
    try:
        with open(argv[1]) as fh:
            runs = json.load(fh)
    except (OSError, ValueError) as e:
        print(f"gpu_speed_table: {argv[1]}: {e}", file=sys.stderr)
        return 1
    table(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
