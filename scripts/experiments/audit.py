#!/usr/bin/env python3
"""scripts/experiments/audit.py -- helpers of audit.sh (standard library only).

  audit.py score FILE.safetensors   prints the canary coordinate: element 0 of
                                    the first lora_B (layers.0.lora_B.weight)
  audit.py analyse DIR DELTA HONEST CLIP
                                    reads DIR/scores.csv and DIR/accountant.csv,
                                    writes DIR/audit.csv, DIR/audit.md and the
                                    gnuplot data DIR/hist.dat, DIR/eps.dat

Empirical lower bound (Jagielski et al. 2020; Nasr et al. 2021): for the test
"score > t: canary in", any (eps, delta)-DP mechanism has
FPR + e^eps FNR >= 1 - delta and FNR + e^eps FPR >= 1 - delta, so
eps >= log((1 - delta - FNR) / FPR) and log((1 - delta - FPR) / FNR). FPR and
FNR are replaced by Clopper-Pearson upper bounds (one-sided 97.5% each), and
the threshold t is chosen on the first half of each world's runs and
evaluated on the second half, so the bound holds with >= 95% confidence.
"""
import csv
import json
import math
import os
import struct
import sys


def read_tensor(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        t = h[name]
        if t["dtype"] != "F32":
            raise SystemExit("audit.py: %s is %s, want F32" % (name, t["dtype"]))
        a, b = t["data_offsets"]
        f.seek(8 + n + a)
        return struct.unpack("<%df" % ((b - a) // 4), f.read(b - a))


def log_binom_pmf(k, n, p):
    if p <= 0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1:
        return 0.0 if k == n else -math.inf
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def binom_cdf(k, n, p):
    return min(1.0, sum(math.exp(log_binom_pmf(j, n, p)) for j in range(k + 1)))


def cp_upper(k, n, alpha):
    """One-sided Clopper-Pearson upper bound: the p with P(X <= k) = alpha."""
    if k >= n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if binom_cdf(k, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def eps_bound(fp, nout, fn, nin, delta, alpha=0.025):
    fpr, fnr = cp_upper(fp, nout, alpha), cp_upper(fn, nin, alpha)
    best = 0.0
    for a, b in ((1 - delta - fnr, fpr), (1 - delta - fpr, fnr)):
        if a > 0 and b > 0:
            best = max(best, math.log(a / b))
    return best, fpr, fnr


def counts(ins, outs, t):
    return sum(1 for s in outs if s > t), sum(1 for s in ins if s <= t)


def phi(x):
    return 0.5 * math.erfc(-x / math.sqrt(2))


def gauss_eps(mu, delta):
    """epsilon at delta of the Gaussian mechanism with sensitivity/std mu."""
    if not mu > 0:
        return 0.0

    def d(e):
        b = phi(-e / mu - mu / 2)  # e^e b in log space: e can pass 709
        return phi(-e / mu + mu / 2) - (math.exp(e + math.log(b)) if b > 0 else 0.0)

    if d(0) <= delta:
        return 0.0
    lo, hi = 0.0, 1.0
    while d(hi) > delta:
        hi *= 2
        if hi > 1e6:
            return math.inf
    for _ in range(100):
        mid = (lo + hi) / 2
        if d(mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def analyse(d, delta, honest, clip):
    rows = list(csv.DictReader(open(os.path.join(d, "scores.csv"))))
    acc = {r["sigma"]: r for r in csv.DictReader(open(os.path.join(d, "accountant.csv")))}
    sigmas = sorted({r["sigma"] for r in rows}, key=float)
    out_rows = []
    hist = open(os.path.join(d, "hist.dat"), "w")
    for si, sg in enumerate(sigmas):
        ins = [float(r["score"]) for r in rows if r["sigma"] == sg and r["world"] == "in"]
        outs = [float(r["score"]) for r in rows if r["sigma"] == sg and r["world"] == "out"]
        hi_, ho = len(ins) // 2, len(outs) // 2
        cal_in, cal_out, ev_in, ev_out = ins[:hi_], outs[:ho], ins[hi_:], outs[ho:]
        # threshold: best bound on the calibration half
        best_t, best_e = None, -1.0
        for t in sorted(set(cal_in + cal_out)):
            fp, fn = counts(cal_in, cal_out, t)
            e, _, _ = eps_bound(fp, len(cal_out), fn, len(cal_in), delta)
            if e > best_e:
                best_e, best_t = e, t
        fp, fn = counts(ev_in, ev_out, best_t)
        lb, fpr_hi, fnr_hi = eps_bound(fp, len(ev_out), fn, len(ev_in), delta)
        # the best any threshold could do with this many evaluation runs
        ceiling, _, _ = eps_bound(0, len(ev_out), 0, len(ev_in), delta)
        m_in, m_out = sum(ins) / len(ins), sum(outs) / len(outs)
        v = (sum((s - m_in) ** 2 for s in ins) + sum((s - m_out) ** 2 for s in outs)) / (
            len(ins) + len(outs) - 2)
        sd = math.sqrt(v)
        mu = (m_in - m_out) / sd
        # 95% interval of mu from the standard error of the shift
        se = sd * math.sqrt(1 / len(ins) + 1 / len(outs))
        mu_lo, mu_hi = (m_in - m_out - 1.96 * se) / sd, (m_in - m_out + 1.96 * se) / sd
        expect_shift = clip / (honest + 1)
        expect_sd = float(sg) * clip / (honest + 1)
        out_rows.append({
            "sigma": sg, "runs_in": len(ins), "runs_out": len(outs),
            "eps_rdp": float(acc[sg]["eps_rdp"]), "eps_prv": float(acc[sg]["eps_prv"]),
            "eps_lower_bound": lb, "eps_lb_ceiling": ceiling, "threshold": best_t,
            "fp": fp, "fn": fn, "fpr_hi": fpr_hi, "fnr_hi": fnr_hi,
            "shift": m_in - m_out, "shift_expected": expect_shift, "std": sd,
            "std_expected": expect_sd, "mu": mu, "mu_expected": 1 / float(sg),
            "eps_implied": gauss_eps(mu, delta), "eps_implied_lo": gauss_eps(mu_lo, delta),
            "eps_implied_hi": gauss_eps(mu_hi, delta),
        })
        # histograms, 30 bins over both worlds
        lo, hi = min(ins + outs), max(ins + outs)
        w = (hi - lo) / 30 or 1
        hist.write("# sigma %s\n" % sg)
        for b in range(30):
            c = lo + (b + 0.5) * w
            n_in = sum(1 for s in ins if lo + b * w <= s < lo + (b + 1) * w or (b == 29 and s == hi))
            n_out = sum(1 for s in outs if lo + b * w <= s < lo + (b + 1) * w or (b == 29 and s == hi))
            hist.write("%g %d %d\n" % (c, n_in, n_out))
        hist.write("\n\n")
    hist.close()
    keys = list(out_rows[0].keys())
    with open(os.path.join(d, "audit.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, keys)
        wr.writeheader()
        wr.writerows(out_rows)
    with open(os.path.join(d, "eps.dat"), "w") as f:
        for r in out_rows:
            f.write("%s %r %r %r %r %r %r %r\n" % (
                r["sigma"], r["eps_rdp"], r["eps_prv"], r["eps_lower_bound"], r["eps_implied"],
                r["eps_lb_ceiling"], r["eps_implied_lo"], r["eps_implied_hi"]))
    with open(os.path.join(d, "audit.md"), "w") as f:
        f.write("| sigma | runs in/out | accountant eps RDP | PRV | empirical eps lower bound "
                "(95%) | best possible with these runs | measured shift / expected | "
                "std / expected | eps implied by measured mu [95% interval] |\n")
        f.write("|---|---|---|---|---|---|---|---|---|\n")
        for r in out_rows:
            f.write("| %s | %d/%d | %.3f | %.3f | %.3f (FP %d, FN %d of %d/%d) | %.3f | "
                    "%.4f / %.4f | %.4f / %.4f | %.3f [%.3f, %.3f] |\n" % (
                        r["sigma"], r["runs_in"], r["runs_out"], r["eps_rdp"], r["eps_prv"],
                        r["eps_lower_bound"], r["fp"], r["fn"], r["runs_out"] - r["runs_out"] // 2,
                        r["runs_in"] - r["runs_in"] // 2, r["eps_lb_ceiling"], r["shift"],
                        r["shift_expected"], r["std"], r["std_expected"], r["eps_implied"],
                        r["eps_implied_lo"], r["eps_implied_hi"]))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "score":
        print(repr(read_tensor(sys.argv[2], "layers.0.lora_B.weight")[0]))
    elif len(sys.argv) == 6 and sys.argv[1] == "analyse":
        analyse(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
