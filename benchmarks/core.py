"""Speed of wdist's core solvers next to POT, GeomLoss and scipy, on the same inputs.

Run: ``nice python benchmarks/core.py [--device cpu|cuda] [--quick]``. Writes
``results/core/bench_<device>.md`` and ``.json``. Every time is the median of warm runs in this one
process (fewer runs at large sizes, one when a run exceeds the guard); torch uses one thread.
Ratios are peer time / our time: > 1 means wdist is faster.

Conventions (one problem for everyone): cost ``|x - y|^2``, ``eps = blur^2``.
- ``wdist.sinkhorn(debias=False)`` returns ``OT_eps`` in dual form.
- GeomLoss's cost is ``|x - y|^2 / 2`` with ``eps = blur^2``: ``SamplesLoss(blur=b / sqrt(2))``
  returns ``OT_eps / 2`` of our problem at blur ``b``, so its value is doubled before comparing.
- POT's ``sinkhorn2(a, b, M, reg=eps)`` returns the linear cost ``<P, M>`` of its plan, compared to
  ``<P*, M>`` of the converged plan; stopping threshold ``1e-3 / sqrt(n)`` on the 2-norm of its
  marginal error (a relative error of about 1e-3 per point, like our ``tol=1e-3``).
- Same accuracy, by a rule, not by tuning: the headline row ``wdist tol=1e-3`` uses
  ``tol = POT's stopThr * sqrt(n)``, i.e. the same relative marginal error per point as POT's test,
  in the max norm instead of POT's 2-norm (at least as strict); every ratio is against that row.
  ``wdist tol=1e-5`` is the high-accuracy row, ``wdist tol=None`` stops after the ε schedule.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # numpy BLAS (POT numpy) single-threaded like torch

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import wdist  # noqa: E402
from wdist_apps.runtime.machine import machine_info, markdown_header  # noqa: E402

BLUR = {3: 0.1, 64: 0.5}  # our blur per dimension (eps = blur^2)
POT_STOP = 1e-3  # POT's stopThr is POT_STOP / sqrt(n); our tol is POT_STOP (same marginal error)
OURS = "wdist tol=1e-3"  # the row every ratio is taken against (tol = POT_STOP)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str, repeats: int, guard: float) -> dict:
    """Median of warm runs of ``fn``; one cold run only when it already exceeds ``guard`` s."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    value = fn()
    _sync(device)
    first = time.perf_counter() - t0
    times = []
    if first <= guard:
        for _ in range(max(1, min(repeats, int(2 * guard / max(first, 1e-9))))):
            t0 = time.perf_counter()
            value = fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
    out = {"time_s": statistics.median(times) if times else first, "runs": len(times) or 1,
           "warm": bool(times), "value": float(value)}
    if device == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


# ---------------------------------------------------------------- Sinkhorn
def clouds(n: int, d: int, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if d == 3:
        x, y = torch.rand(n, d, generator=g), torch.rand(n, d, generator=g) + 0.2
    else:
        x = torch.randn(n, d, generator=g) / math.sqrt(d)
        y = (torch.randn(n, d, generator=g) + 0.5) / math.sqrt(d)
    return x.to(device), y.to(device)


def sinkhorn_methods(x: torch.Tensor, y: torch.Tensor, blur: float, keops: bool) -> dict:
    """name -> (callable returning a comparable float, quantity it returns)."""
    import ot

    n, eps = x.shape[0], blur**2
    stop = POT_STOP / math.sqrt(n)
    xn, yn = x.double().cpu().numpy(), y.double().cpu().numpy()
    an = np.full(n, 1 / n)
    at = torch.full((n,), 1 / n, dtype=x.dtype, device=x.device)
    methods = {
        OURS: (lambda: wdist.sinkhorn(x, y, p=2, blur=blur, debias=False, tol=POT_STOP), "dual"),
        "wdist tol=1e-5": (lambda: wdist.sinkhorn(x, y, p=2, blur=blur, debias=False, tol=1e-5),
                           "dual"),
        "wdist tol=None": (lambda: wdist.sinkhorn(x, y, p=2, blur=blur, debias=False, tol=None),
                           "dual"),
        "POT numpy": (lambda: ot.sinkhorn2(an, an, ot.dist(xn, yn), eps, numItermax=100_000,
                                           stopThr=stop), "linear"),
        "POT torch": (lambda: ot.sinkhorn2(at, at, ot.dist(x, y), eps, numItermax=100_000,
                                           stopThr=stop), "linear"),
    }
    if x.device.type == "cuda" and 2 * n * n <= 2**28:  # auto picks dense here: show online too
        methods["wdist online"] = (
            lambda: wdist.sinkhorn(x, y, p=2, blur=blur, debias=False, backend="online"), "dual")
    if x.device.type == "cuda":
        methods["wdist online, eager"] = (lambda: _eager_online(x, y, blur), "dual")
    try:
        from geomloss import SamplesLoss
    except ImportError:
        return methods
    for backend in ("tensorized", "online") if keops else ("tensorized",):
        loss = SamplesLoss("sinkhorn", p=2, blur=blur / math.sqrt(2), debias=False, scaling=0.9,
                           backend=backend)
        methods[f"GeomLoss ({backend})"] = (lambda loss=loss: 2 * loss(x, y), "dual")
    return methods


def _eager_online(x: torch.Tensor, y: torch.Tensor, blur: float) -> torch.Tensor:
    """The online backend without the torch.compile'd soft-min (what CPUs run)."""
    sk = sys.modules["wdist.sinkhorn.online"]
    saved = set(sk._COMPILE_DEVICES)
    sk._COMPILE_DEVICES.clear()
    try:
        return wdist.sinkhorn(x, y, p=2, blur=blur, debias=False, backend="online")
    finally:
        sk._COMPILE_DEVICES.update(saved)


def reference(x: torch.Tensor, y: torch.Tensor, blur: float) -> dict[str, float]:
    """Converged (tol 1e-6, float64) OT_eps and linear cost <P*, C> of its plan."""
    x64, y64 = x.double(), y.double()
    val, plan = wdist.sinkhorn(x64, y64, p=2, blur=blur, debias=False, scaling=0.95, tol=1e-6,
                               max_iter=20_000, backend="dense", return_plan=True)
    linear = (plan * wdist._cost.cost_matrix(x64, y64, 2)).sum()
    return {"dual": float(val), "linear": float(linear)}


def fits(name: str, n: int, device: str) -> str | None:
    """Why a method is not run at size n (None: it runs)."""
    dense_gb = 8 * n * n / 2**30
    if name.startswith(("POT", "GeomLoss (tensorized)")) and dense_gb > 4:
        return f"does not fit: dense {n}x{n} cost ({dense_gb:.0f} GB)"
    if device == "cuda" and name == "POT numpy" and n > 1000:
        return "CPU solver: see bench_cpu"
    if device == "cpu" and n >= 100_000 and name != OURS:
        return "skipped on CPU: > 10 min"
    if device == "cuda" and n >= 100_000 and name in ("wdist tol=None", "wdist tol=1e-5",
                                                       "wdist online, eager"):
        return "skipped at n >= 1e5 on GPU: the GPU session's time budget"
    if device == "cpu" and n > 1000 and name == "GeomLoss (online)":
        return "skipped on CPU: KeOps CPU took 5 s at n = 2,000 (> 2 min at 1e4)"
    return None


def memory_probe(name: str, n: int, d: int) -> float:
    """Peak resident memory (MB) above the pre-solve RSS of one solve, in a fresh subprocess
    (Linux: VmHWM reset through /proc/self/clear_refs)."""
    code = (
        "import sys,torch;torch.set_num_threads(1);"
        f"sys.argv=['core.py'];sys.path[:0]={[str(ROOT), str(ROOT / 'benchmarks')]!r};"
        "import core;"
        f"x,y=core.clouds({n},{d},'cpu');m=core.sinkhorn_methods(x,y,{BLUR[d]},"
        f"{'True' if 'online' in name else 'False'});"
        "st=lambda:open('/proc/self/status').read().split(chr(10));"
        "rss=lambda k:int([w for w in st() if w.startswith(k)][0].split()[1]);"
        "open('/proc/self/clear_refs','w').write('5');r0=rss('VmRSS');"
        f"m[{name!r}][0]();"
        "print((rss('VmHWM')-r0)/1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_sinkhorn(device: str, sizes: list[int], dims: list[int], keops: bool, guard: float,
                   big_guard: float, previous: list[dict] | None = None) -> list[dict]:
    """Every Sinkhorn method at each size; ``previous`` rows (a 10x smaller n) let a method be
    skipped when its time scaled by (10x)^2 exceeds ``big_guard``."""
    rows = []
    for d in dims:
        for n in sizes:
            x, y = clouds(n, d, device)
            blur = BLUR[d]
            ref = reference(x, y, blur) if n <= 10_000 else None
            ours_time = None
            for name, (fn, quantity) in sinkhorn_methods(x, y, blur, keops).items():
                row = {"n": n, "d": d, "blur": blur, "method": name}
                why = fits(name, n, device)
                before = [r for r in previous or [] if r["method"] == name and r["d"] == d
                          and r["n"] * 10 == n and r.get("status") == "ok"]
                if previous is not None and not why:
                    est = 100 * before[0]["time_s"] if before else math.inf
                    if est > big_guard:
                        why = f"skipped: estimated {est:.0f} s > {big_guard:.0f} s guard"
                elif name.startswith("wdist") and n >= 100_000 and device == "cpu":
                    # one soft-min pass at n = 1e5 costs 1e10 kernel evaluations: estimate first
                    est = _estimate_online(x, y, blur, n)
                    if est > big_guard:
                        why = f"skipped: estimated {est:.0f} s > {big_guard:.0f} s guard"
                if why:
                    rows.append({**row, "status": why})
                    print(f"sinkhorn n={n} d={d} {name}: {why}", flush=True)
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = timed(fn, device, repeats=5 if n <= 1000 else 3, guard=guard)
                if ref is not None:
                    res["rel_err"] = abs(res["value"] - ref[quantity]) / abs(ref[quantity])
                if name == OURS:
                    ours_time = res["time_s"]
                    res["backend"] = "dense" if n * n <= 2**28 else "online"  # sinkhorn's rule
                elif ours_time and not name.startswith("wdist"):
                    res["ratio"] = res["time_s"] / ours_time
                if device == "cpu" and res["time_s"] < 60 and n <= 10_000:
                    res["peak_mb"] = memory_probe(name, n, d)
                rows.append({**row, **res, "status": "ok"})
                print(f"sinkhorn n={n} d={d} {name}: {res}", flush=True)
    return rows


def _estimate_online(x: torch.Tensor, y: torch.Tensor, blur: float, n: int) -> float:
    """Seconds for one full online solve, from a soft-min over 1,000 rows x all columns."""
    sk = sys.modules["wdist.sinkhorn.online"]
    h = torch.zeros(1, n, dtype=x.dtype, device=x.device)
    t0 = time.perf_counter()
    sk._OnlineSoftmin.apply(x[None, :1000], y[None], h, blur**2, 2.0, 1000)
    per_pass = (time.perf_counter() - t0) * n / 1000
    schedule = sys.modules["wdist.sinkhorn"].epsilon_schedule
    n_eps = len(schedule(2, float(wdist._checks.point_spread(x, y)), blur, 0.9))
    return per_pass * 2 * (n_eps + 10)  # two soft-mins per iteration, ~10 extra iterations


# ---------------------------------------------------------------- 1-D
def bench_1d(device: str, n: int, batch: tuple[int, int], guard: float) -> list[dict]:
    import ot
    import scipy.stats

    rng = np.random.default_rng(0)
    rows = []
    u, v = rng.normal(size=n), rng.normal(0.5, 2.0, size=n)
    ut, vt = torch.tensor(u, device=device), torch.tensor(v, device=device)
    cases = {
        "wdist": lambda: wdist.wasserstein_1d(ut, vt, p=1),
        "scipy": lambda: scipy.stats.wasserstein_distance(u, v),
        "POT": lambda: ot.wasserstein_1d(u, v, p=1),
    }
    rows += _compare(f"1-D, n = {n:,}", cases, device, guard)

    k, s = batch
    ub, vb = rng.normal(size=(k, s)), rng.normal(0.5, 2.0, size=(k, s))
    ubt, vbt = torch.tensor(ub, device=device), torch.tensor(vb, device=device)
    subset = max(1, k // 20)

    def scipy_loop():
        vals = [scipy.stats.wasserstein_distance(ub[i], vb[i]) for i in range(subset)]
        return float(np.mean(vals))

    cases = {
        "wdist": lambda: wdist.wasserstein_1d(ubt, vbt, p=1).mean(),
        "POT": lambda: ot.wasserstein_1d(ub.T, vb.T, p=1).mean(),
        f"scipy loop (timed on {subset}, x{k // subset} extrapolated)": scipy_loop,
    }
    batch_rows = _compare(f"1-D batched, {k:,} x {s:,}", cases, device, guard)
    batch_rows[-1]["time_s"] *= k / subset
    batch_rows[-1]["ratio"] *= k / subset
    return rows + batch_rows


def _compare(case: str, cases: dict, device: str, guard: float) -> list[dict]:
    rows = []
    for name, fn in cases.items():
        res = timed(fn, device, repeats=7, guard=guard)
        rows.append({"case": case, "method": name, **res})
    for row in rows[1:]:
        row["ratio"] = row["time_s"] / rows[0]["time_s"]
    for row in rows:
        print(f"{case} {row['method']}: {row['time_s']:.4g} s", flush=True)
    return rows


# ---------------------------------------------------------------- exact
def bench_emd(device: str, sizes: list[int], repeats: int) -> list[dict]:
    """Interleaved runs of ``wdist.emd`` and ``ot.dist`` + ``ot.emd2`` (same iteration cap)."""

    rows = []
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        x, y = torch.rand(n, 3, generator=g, dtype=torch.float64), torch.rand(n, 3, generator=g,
                                                                              dtype=torch.float64)
        x, y = x.to(device), y.to(device)
        xn, yn, a = x.cpu().numpy(), y.cpu().numpy(), np.full(n, 1 / n)
        cap = wdist.exact._default_iter_cap(n, n)
        ours = functools.partial(wdist.emd, x, y, p=2)
        peer = functools.partial(_pot_emd, a, xn, yn, cap)
        ours(), peer()
        t_ours, t_peer = [], []
        for _ in range(repeats):
            for fn, acc in ((ours, t_ours), (peer, t_peer)):
                t0 = time.perf_counter()
                val = float(fn())
                _sync(device)
                acc.append(time.perf_counter() - t0)
        m_ours, m_peer = statistics.median(t_ours), statistics.median(t_peer)
        rows.append({"n": n, "wdist_s": m_ours, "pot_s": m_peer, "runs": repeats,
                     "overhead": m_ours / m_peer - 1, "value": val,
                     "value_diff": abs(float(ours()) - float(peer()))})
        print(f"emd n={n}: ours {m_ours:.4g} s, POT {m_peer:.4g} s", flush=True)
    return rows


def _pot_emd(a: np.ndarray, xn: np.ndarray, yn: np.ndarray, cap: int) -> float:
    import ot

    return ot.emd2(a, a, ot.dist(xn, yn), numItermax=cap)


# ---------------------------------------------------------------- report
def _fmt_t(row: dict) -> str:
    if row.get("status", "ok") != "ok":
        return row["status"]
    t = row["time_s"]
    s = f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"
    return s + ("" if row.get("warm", True) else " (1 cold run)")


def markdown(info: dict, sk_rows: list[dict], d1_rows: list[dict], emd_rows: list[dict],
             device: str, keops: bool, note: str | None = None) -> str:
    out = [f"# wdist core benchmark ({device})", "", markdown_header(info), ""]
    if note:
        out += [f"Note: {note}", ""]
    out += [
        "Times are medians of warm runs (runs column) in one process; ratio = peer time / "
        f"`{OURS}` time (> 1: wdist faster). Same accuracy by a rule, not by tuning per case: "
        f"`{OURS}` stops at the relative marginal error per point that POT's stopping test "
        f"allows (POT: 2-norm of the marginal error < {POT_STOP:g} / sqrt(n); wdist: "
        f"potentials move < tol * eps, i.e. max relative marginal error < tol = {POT_STOP:g}, at "
        "least as strict); `wdist tol=1e-5` is the high-accuracy row. Sinkhorn: float32 torch "
        "inputs, POT numpy in float64; "
        "`debias=False`; rel. err = |value - converged reference| / reference (reference: "
        "wdist dense float64, tol 1e-6: OT_eps for wdist/GeomLoss, <P*, C> for POT). "
        + ("" if keops else "KeOps unavailable: GeomLoss runs its tensorized backend only. ")
        + ("Peak memory: torch.cuda.max_memory_allocated." if device == "cuda" else
           "Peak memory: max RSS increase of one solve in a fresh subprocess."),
        "",
        "## Sinkhorn (p = 2, OT_eps)",
        "",
        "| n | d | blur | method | time | runs | ratio | rel. err | peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sk_rows:
        name = r["method"] + (f" ({r['backend']})" if "backend" in r else "")
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        err = f"{r['rel_err']:.1e}" if "rel_err" in r else ""
        mem = f"{r['peak_mb']:.0f}" if "peak_mb" in r else ""
        out.append(f"| {r['n']:,} | {r['d']} | {r['blur']} | {name} | {_fmt_t(r)} | "
                   f"{r.get('runs', '')} | {ratio} | {err} | {mem} |")
    out += ["", "## 1-D Wasserstein (p = 1, float64)", "",
            "| case | method | time | runs | ratio | value |", "|---|---|---|---|---|---|"]
    for r in d1_rows:
        ratio = f"{r['ratio']:.1f}" if "ratio" in r else ""
        out.append(f"| {r['case']} | {r['method']} | {_fmt_t(r)} | {r['runs']} | {ratio} | "
                   f"{r['value']:.6g} |")
    out += ["", "## Exact OT: `wdist.emd` vs `ot.dist` + `ot.emd2` (d = 3, p = 2, float64)", "",
            "| n | wdist | POT | runs | overhead | abs. value diff |", "|---|---|---|---|---|---|"]
    for r in emd_rows:
        out.append(f"| {r['n']:,} | {r['wdist_s'] * 1e3:.1f} ms | {r['pot_s'] * 1e3:.1f} ms | "
                   f"{r['runs']} | {100 * r['overhead']:+.1f}% | {r['value_diff']:.1e} |")
    return "\n".join(out) + "\n"


def keops_works(device: str, timeout: float = 600) -> bool:
    """Whether GeomLoss's KeOps backend compiles and runs here, probed in a subprocess first.

    KeOps builds its formulas with the local compiler on first use; on one GPU machine that build
    segfaulted, which would kill this whole benchmark. The probe compiles the formulas for both
    dimensions in a child process (they are cached on disk for this one) and reports its failure.
    """
    probe = ("import sys, torch; from geomloss import SamplesLoss; "
             "loss = SamplesLoss('sinkhorn', backend='online'); "
             f"[loss(torch.rand(50, d, device={device!r}), torch.rand(40, d, device={device!r})) "
             f"for d in {sorted(BLUR)}]")
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        why = f"its probe took over {timeout:.0f} s"
    else:
        if out.returncode == 0:
            return True
        tail = (out.stderr.strip().splitlines() or [""])[-1]
        why = f"its probe exited with {out.returncode}: {tail}"
    print(f"KeOps unavailable ({why}); GeomLoss runs tensorized", flush=True)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="one-minute smoke run")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "core")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (all methods)")
    parser.add_argument("--dims", type=int, nargs="+", choices=sorted(BLUR),
                        help="Sinkhorn dimensions (default: 3 with --quick, else 3 and 64)")
    parser.add_argument("--note", help="a line for the results header (e.g. other load)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info(args.device)
    keops = keops_works(args.device)
    if args.device == "cuda":  # compile the fused online soft-min before timing anything
        for d in BLUR:
            x, y = clouds(2000, d, "cuda")
            wdist.sinkhorn(x, y, blur=BLUR[d], debias=False, backend="online")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"bench_{args.device}{'_quick' if args.quick else ''}"
    rows: dict[str, list[dict]] = {"sinkhorn": [], "one_d": [], "emd": []}

    def save() -> None:  # after every section: a long run still leaves its finished tables
        online = sys.modules["wdist.sinkhorn.online"]
        fused = args.device == "cuda" and not online._fused.get("failed")
        payload = {"machine": info, "keops": keops, "fused_online_softmin": fused,
                   "note": args.note, **rows}
        stem.with_suffix(".json").write_text(json.dumps(payload, indent=2))
        stem.with_suffix(".md").write_text(markdown(info, rows["sinkhorn"], rows["one_d"],
                                                    rows["emd"], args.device, keops,
                                                    args.note))

    quick = args.quick
    rows["one_d"] = bench_1d(args.device, 10**5 if quick else 10**6,
                             (1000 if quick else 10_000, 1000), guard=5 if quick else 10)
    save()
    rows["emd"] = bench_emd(args.device, [500] if quick else [500, 1000, 2000],
                            repeats=3 if quick else 5)
    save()
    guard = 20 if args.device == "cpu" else 30
    big_guard = 0 if quick else 120 if args.device == "cpu" else 150
    for n in [1000] if quick else [1000, 10_000, 100_000]:
        for d in args.dims or ([3] if quick else [3, 64]):
            rows["sinkhorn"] += bench_sinkhorn(args.device, [n], [d], keops, guard, big_guard)
            save()
    if args.device == "cuda" and not quick:  # 1e6 x 1e6 in 3-D, for what fits the time guard
        rows["sinkhorn"] += bench_sinkhorn(args.device, [10**6], [3], keops, guard, big_guard,
                                           previous=rows["sinkhorn"])
        save()
    print(f"wrote {stem}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
