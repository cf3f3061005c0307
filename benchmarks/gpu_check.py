"""One GPU check: wdist's core and apps against their peers on one GPU, inside a time budget.

Run: ``python benchmarks/gpu_check.py`` (or ``make gpu-check``) on a CUDA machine; ``--device cpu
--tiny`` runs every row's code path on tiny inputs in seconds (the test suite does), so no GPU
minute is spent on a typo. Writes ``results/gpu/check_<device>[_tiny].md`` and ``.json`` (machine,
versions, command) after every column, so a run cut short keeps what it finished. In order:

0. the fused Triton soft-min on this device: values and gradients against the float64 eager
   soft-min, and one forward + backward pass next to the current online soft-min;
1. Sinkhorn (p = 2, ``OT_eps``, ``debias=False``, float32) at n = 1e3, 1e4, 1e5, d = 3 and 64:
   ours, ours with the Triton soft-min (online), ours on the fixed-work path compiled into a
   CUDA graph (n <= 1e4), flash-sinkhorn (and its multiscale backend in 3-D), GeomLoss
   tensorized and KeOps, POT torch; value error against a float64 reference;
   then one debiased solve at n = m = 1e6 in 3-D (blur 0.05);
2. 1-D and ``emd`` rows (``benchmarks/core.py``'s ``bench_1d`` and ``bench_emd``); WMD batched
   Sinkhorn pairs/s;
3. WGAN critic and generator step times, WDGRL epoch time, QR-DQN learner updates/s with and
   without ``compile_update``.

Every column and every app row runs in its own subprocess with a timeout (a compiler crash or a
changed API costs that cell, recorded in the table), under one global budget (``--budget-s``):
what does not fit is listed as skipped. Conventions: GeomLoss's cost is ``|x - y|^2 / 2``, so it
runs at ``blur / sqrt(2)`` and its value is doubled; flash-sinkhorn's is ``|x - y|^2`` with
``eps = blur^2`` (ours); POT's ``sinkhorn2`` returns the linear cost ``<P, C>``, compared with
that of the converged plan.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLUR = {3: 0.1, 64: 0.5}
POT_STOP = 1e-3  # POT's stopThr is POT_STOP / sqrt(n), ours tol = POT_STOP (benchmarks/core.py)

# Full run: column -> cap in seconds (each its own subprocess). The caps add up to more than the
# default budget (450 s): they bound a column that hangs; the budget cuts the tail of the run.
CORE_COLUMNS = {
    "wdist": 50, "wdist online (triton soft-min)": 40, "reference (float64)": 30,
    "flash-sinkhorn": 35, "flash-sinkhorn (multiscale)": 20, "GeomLoss (online, KeOps)": 80,
    "GeomLoss (tensorized)": 20, "POT torch": 20,
    "wdist fixed work (compiled)": 60,  # one inductor compile per shape, smallest first
}
SIZES = {"full": [1000, 10_000, 100_000], "tiny": [40, 70]}
BIG_N = {"full": 1_000_000, "tiny": 200}
# --tiny on the CPU runs the Triton kernels in the interpreter (numpy, ~20 ms a launch): there
# the Triton rows solve one tile (n = 16) at blur 0.5 (a short epsilon schedule).
INTERPRETED = {"sizes": [16], "dims": [3], "blur": 0.5}
# --tiny on the CPU: the fixed-work column traces one shape (each trace takes seconds here)
FIXED_TINY = {"sizes": [40], "dims": [3]}


# ---------------------------------------------------------------- shared by the workers
def clouds(n: int, d: int, device: str, seed: int = 0):
    """The same clouds in every subprocess (benchmarks/core.py's: uniform in 3-D, Gaussians in
    64-D), float32."""
    import torch

    g = torch.Generator().manual_seed(seed)
    if d == 3:
        x, y = torch.rand(n, d, generator=g), torch.rand(n, d, generator=g) + 0.2
    else:
        x = torch.randn(n, d, generator=g) / math.sqrt(d)
        y = (torch.randn(n, d, generator=g) + 0.5) / math.sqrt(d)
    return x.to(device), y.to(device)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _core():
    """``benchmarks/core.py``, imported on first use (torch loads in the workers only)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import core

    return core


def timed(fn, device: str, repeats: int, guard: float) -> dict:
    """``benchmarks/core.py``'s timer: the median of warm runs (one cold run past ``guard`` s)."""
    return _core().timed(fn, device, repeats, guard)


def emit(row: dict) -> None:
    """A worker's result line (the parent keeps every line printed before a crash/timeout)."""
    print("ROW " + json.dumps(row), flush=True)


# ---------------------------------------------------------------- workers (in subprocesses)
def _patch_triton_softmin() -> None:
    """Route the solver's online soft-min through the Triton kernel (the wiring proposed for
    ``backend="online"`` on CUDA), for the column that measures it before it is wired in: every
    ``wdist.sinkhorn*`` module's ``_online_softmin`` is replaced."""
    import wdist  # noqa: F401 - loads the solver's modules
    from wdist._triton import triton_softmin

    def online_softmin(x, y, p, chunk):
        return lambda eps, h: triton_softmin(x, y, h, eps, p)

    patched = [name for name, mod in list(sys.modules.items())
               if name.startswith("wdist.sinkhorn") and hasattr(mod, "_online_softmin")]
    if not patched:
        raise RuntimeError("no wdist.sinkhorn module has an _online_softmin to route to Triton")
    for name in patched:
        sys.modules[name]._online_softmin = online_softmin


def sinkhorn_method(name: str, x, y, blur: float):
    """``(callable, quantity)`` for one column: the quantity is "dual" (OT_eps) or "linear"."""
    import torch

    import wdist

    n = x.shape[0]
    if name == "wdist":
        return (lambda: wdist.sinkhorn(x, y, p=2, blur=blur, debias=False, tol=POT_STOP)), "dual"
    if name == "wdist online (triton soft-min)":
        _patch_triton_softmin()
        return (lambda: wdist.sinkhorn(x, y, p=2, blur=blur, debias=False, tol=POT_STOP,
                                       backend="online")), "dual"
    if name == "wdist fixed work (compiled)":
        return _fixed_work(x, y, blur), "dual"
    if name == "reference (float64)":
        x64, y64 = x.double(), y.double()
        return (lambda: wdist.sinkhorn(x64, y64, p=2, blur=blur, debias=False, scaling=0.95,
                                       tol=1e-6, max_iter=20_000)), "dual"
    if name.startswith("flash-sinkhorn"):
        from flash_sinkhorn import SamplesLoss as FlashLoss

        backend = {"backend": "multiscale"} if "multiscale" in name else {"scaling": 0.9}
        loss = FlashLoss("sinkhorn", p=2, blur=blur, debias=False, **backend)
        return (lambda: loss(x, y)), "dual"
    if name.startswith("GeomLoss"):
        from geomloss import SamplesLoss

        backend = "online" if "KeOps" in name else "tensorized"
        loss = SamplesLoss("sinkhorn", p=2, blur=blur / math.sqrt(2), debias=False, scaling=0.9,
                           backend=backend)
        return (lambda: 2 * loss(x, y)), "dual"
    if name == "POT torch":
        import ot

        a = torch.full((n,), 1 / n, dtype=x.dtype, device=x.device)
        stop = POT_STOP / math.sqrt(n)
        return (lambda: ot.sinkhorn2(a, a, ot.dist(x, y), blur**2, numItermax=100_000,
                                     stopThr=stop)), "linear"
    raise ValueError(f"unknown column {name!r}")


def _fixed_work(x, y, blur: float):
    """``sinkhorn(tol=None, diameter=...)`` under ``set_validation(False)``: no host sync, so
    ``torch.compile(fullgraph=True, mode="reduce-overhead")`` replays it as one CUDA graph per
    shape. On the CPU only the graph capture (``backend="eager"``): inductor's C++ build takes
    minutes there. ``diameter``: the points' bounding box, a bound a training loop knows."""
    import torch

    import wdist
    from wdist._checks import point_spread

    diameter = point_spread(x, y)
    torch._dynamo.reset()  # a fresh trace per shape and blur: else dynamo makes floats symbolic
    opts = {"mode": "reduce-overhead"} if x.device.type == "cuda" else {"backend": "eager"}
    step = torch.compile(
        lambda x, y: wdist.sinkhorn(x, y, p=2, blur=blur, debias=False, tol=None,
                                    diameter=diameter),
        fullgraph=True, **opts)

    def run():
        with wdist.set_validation(False):
            return step(x, y)

    for _ in range(2):  # compile, then record the CUDA graph: the timer sees replays only
        run()
    return run


def not_run(name: str, n: int, d: int, device: str) -> str | None:
    """Why a column skips a size (None: it runs)."""
    if name == "wdist fixed work (compiled)" and n > 10_000:
        return "the fixed-work path is for launch-bound small n"
    dense_gb = 4 * n * n / 2**30
    if name in ("GeomLoss (tensorized)", "POT torch") and dense_gb > 8:
        return f"does not fit: dense {n:,}^2 costs ({dense_gb:.0f} GB per matrix)"
    if name == "flash-sinkhorn (multiscale)" and d != 3:
        return "3-D only"
    if name == "GeomLoss (online, KeOps)" and device != "cuda":
        return "KeOps on CPU: minutes of compilation, not a check"
    return None


def worker_core(spec: dict) -> None:
    """One Sinkhorn column over every (n, d), smallest n first; a size whose predicted time
    (previous time x (n ratio)^2) exceeds what is left of the column's deadline is skipped."""
    import warnings

    import torch

    name, device, deadline = spec["column"], spec["device"], spec["deadline"]
    prev: dict[int, tuple[int, float]] = {}
    for d in spec["dims"]:  # compile / autotune / KeOps build on a small problem first
        if name == "wdist fixed work (compiled)":  # compiled afresh for every shape anyway
            break
        try:
            small = min(256, spec["sizes"][0])
            sinkhorn_method(name, *clouds(small, d, device), spec.get("blur", BLUR[d]))[0]()
        except Exception:  # noqa: BLE001 - the timed call below records the error
            pass
    for n in spec["sizes"]:  # both dimensions at each size: a cut column keeps the small n
        for d in spec["dims"]:
            row = {"column": name, "n": n, "d": d, "blur": spec.get("blur", BLUR[d])}
            why = not_run(name, n, d, device)
            if not why and d in prev:
                est = prev[d][1] * (n / prev[d][0]) ** 2
                if time.time() + est > deadline:
                    why = f"skipped: predicted {est:.0f} s > the column's time left"
            if why:
                emit({**row, "status": why})
                continue
            x, y = clouds(n, d, device)
            try:
                fn, quantity = sinkhorn_method(name, x, y, row["blur"])
                repeats = 1 if spec["tiny"] else 5 if n <= 1000 else 3
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = timed(fn, device, repeats=repeats, guard=10)
                if quantity == "linear":
                    res["quantity"] = "linear"
                emit({**row, **res, "status": "ok"})
                prev[d] = (n, res["time_s"])
            except Exception as err:  # noqa: BLE001 - record the failure, keep the column going
                emit({**row, "status": f"error: {type(err).__name__}: {err}"[:300]})
                if device == "cuda":
                    torch.cuda.empty_cache()


def worker_linear_reference(spec: dict) -> None:
    """``<P*, C>`` of the converged float64 plan (POT's quantity), where a dense plan fits."""
    import wdist
    from wdist._cost import cost_matrix

    for d in spec["dims"]:
        for n in spec["sizes"]:
            if 8 * n * n > 2**33:
                continue
            x, y = (t.double() for t in clouds(n, d, spec["device"]))
            _, plan = wdist.sinkhorn(x, y, p=2, blur=BLUR[d], debias=False, scaling=0.95,
                                     tol=1e-6, max_iter=20_000, backend="dense", return_plan=True)
            emit({"n": n, "d": d, "linear": float((plan * cost_matrix(x, y, 2)).sum())})


def worker_big(spec: dict) -> None:
    """One debiased solve, n = m = BIG_N in 3-D, blur 0.05 (``wdist.sinkhorn`` defaults)."""
    import torch

    import wdist

    n, device, blur = spec["n"], spec["device"], spec.get("blur", 0.05)
    if spec.get("triton"):
        _patch_triton_softmin()
    x, y = clouds(n, 3, device)
    t0 = time.perf_counter()
    backend = "online" if spec.get("triton") else "auto"  # at 1e6 auto is online too
    value = float(wdist.sinkhorn(x, y, p=2, blur=blur, debias=True, backend=backend))
    _sync(device)
    row = {"n": n, "d": 3, "blur": blur, "time_s": time.perf_counter() - t0, "value": value,
           "triton": bool(spec.get("triton")), "status": "ok"}
    if device == "cuda":
        row["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    emit(row)


def worker_kernel(spec: dict) -> None:
    """The fused soft-min on this device against the float64 eager one (values and gradients),
    then one forward + backward pass of it and of the solver's current online soft-min."""
    import torch

    from wdist._triton import triton_softmin
    from wdist.sinkhorn import online as sk

    device, tiny = spec["device"], spec["tiny"]
    n = 64 if tiny else 3000
    for d, p, dtype in [(3, 2.0, torch.float32), (64, 2.0, torch.float32),
                        (3, 1.0, torch.float32), (3, 1.5, torch.float64)]:
        g = torch.Generator().manual_seed(d)
        x = torch.randn(2, n, d, generator=g, dtype=dtype).to(device)
        y = torch.randn(2, n + 7, d, generator=g, dtype=dtype).to(device)
        h = torch.randn(2, n + 7, generator=g, dtype=dtype).to(device)
        gr = torch.randn(2, n, generator=g, dtype=dtype).to(device)
        eps = 0.1 * d
        errs = []
        for fn in (triton_softmin, _dense_softmin64):
            leaves = [t.clone().requires_grad_(True) for t in (x, y, h)]
            out = fn(*leaves, eps, p)
            errs.append([out.detach().double(),
                         *(t.double() for t in torch.autograd.grad(out, leaves, gr.to(out.dtype)))])
        rel = [float((a - b).abs().max() / b.abs().max()) for a, b in zip(*errs)]
        emit({"kind": "accuracy", "d": d, "p": p, "dtype": str(dtype).replace("torch.", ""),
              "n": n, "rel_err_value": rel[0], "rel_err_grad_x": rel[1],
              "rel_err_grad_y": rel[2], "rel_err_grad_h": rel[3], "status": "ok"})
    for n, d in [(64, 3)] if tiny else [(1000, 3), (1000, 64), (10_000, 3), (10_000, 64),
                                        (100_000, 3)]:  # n = 1000: compiles, not reported
        x, y = clouds(n, d, device)
        x, y = x[None].requires_grad_(True), y[None].requires_grad_(True)
        h = torch.full((1, n), -math.log(n), device=device, requires_grad=True)
        eps = BLUR[d] ** 2
        chunk = sk._chunk_size(1, n, torch.device(device))
        row = {"kind": "speed", "n": n, "d": d}
        passes = {"triton": lambda x=x, y=y, h=h, eps=eps: triton_softmin(x, y, h, eps, 2.0),
                  "current online": lambda x=x, y=y, h=h, eps=eps, c=chunk:
                  sk._OnlineSoftmin.apply(x, y, h, eps, 2.0, c)}
        for label, fn in passes.items():
            def pass_(fn=fn):
                out = fn()
                out.backward(torch.ones_like(out))
                return out.detach().sum()

            row[f"{label}_s"] = timed(pass_, device, repeats=1 if tiny else 3, guard=10)["time_s"]
        if tiny or n > 1000:
            emit({**row, "status": "ok"})
    # tile sizes of the forward kernel (the defaults are 64 x 64 up to d = 64 in float32)
    for n, d in [(64, 3)] if tiny else [(100_000, 3), (100_000, 64)]:
        x, y = clouds(n, d, device)
        h = torch.full((1, n), -math.log(n), device=device)
        for bn, bm, warps in [(64, 64, 4)] if tiny else [(32, 32, 4), (64, 64, 4), (128, 64, 4),
                                                        (128, 64, 8), (64, 128, 4),
                                                        (128, 128, 8)]:
            res = timed(lambda x=x, y=y, h=h, e=BLUR[d] ** 2, bn=bn, bm=bm, w=warps: triton_softmin(
                x[None], y[None], h, e, 2.0, block_n=bn, block_m=bm,
                num_warps=w).sum(), device, repeats=1 if tiny else 5, guard=10)
            emit({"kind": "tiles", "n": n, "d": d, "block_n": bn, "block_m": bm,
                  "num_warps": warps, "forward_s": res["time_s"], "status": "ok"})


def _dense_softmin64(x, y, h, eps, p):
    import torch

    c = torch.cdist(x.double(), y.double(), compute_mode="donot_use_mm_for_euclid_dist") ** p
    return -eps * torch.logsumexp(h.double().unsqueeze(-2) - c / eps, dim=-1)


def worker_small(spec: dict) -> None:
    """1-D and exact-OT rows from ``benchmarks/core.py`` (two of its functions)."""
    core = _core()

    tiny, device = spec["tiny"], spec["device"]
    for row in core.bench_1d(device, 1000 if tiny else 10**6, (20, 50) if tiny else
                             (10_000, 1000), guard=1 if tiny else 10):
        emit({"kind": "1-D", **row, "status": "ok"})
    for row in core.bench_emd(device, [60] if tiny else [500, 1000, 2000], repeats=1 if tiny
                              else 3):
        emit({"kind": "emd", **row, "status": "ok"})


def worker_wmd(spec: dict) -> None:
    """Batched Sinkhorn WMD pairs/s on synthetic 300-D documents (the public ``WMD`` API)."""
    import numpy as np
    import torch

    from wdist_apps.wmd import WMD, Embeddings

    tiny, device = spec["tiny"], torch.device(spec["device"])
    vocab, dim, pairs = (300, 16, 16) if tiny else (20_000, 300, 8192)
    gen = np.random.default_rng(0)
    words = [f"w{i}" for i in range(vocab)]
    emb = Embeddings(words, gen.normal(size=(vocab, dim)).astype(np.float32))
    for length, batch in [(8, 8)] if tiny else [(16, 4096), (64, 1024), (128, 1024)]:
        def docs(k, length=length):
            return [[words[i] for i in gen.choice(vocab, length, replace=False)]
                    for _ in range(k)]

        base = WMD(emb)
        a, b = base.transform(docs(pairs)), base.transform(docs(pairs))
        wmd = WMD(emb, device=device, dtype=torch.float32, blur=0.01, debias=False,
                  batch_size=batch)
        res = timed(lambda w=wmd, a=a, b=b: w.paired(a, b, method="sinkhorn").sum(),
                    device.type, repeats=3, guard=20)
        emit({"kind": "wmd", "words_per_doc": length, "batch": batch, "pairs": pairs,
              "time_s": res["time_s"], "pairs_per_s": pairs / res["time_s"], "status": "ok"})


def worker_wgan(spec: dict) -> None:
    """WGAN step times at 3x32x32, batch 64: ``wdist.WassersteinCritic.step`` per Lipschitz
    method and the generator step (``wdist_apps.wgan`` models and optimisers)."""
    import torch

    import wdist
    from wdist_apps.wgan.config import WGANConfig
    from wdist_apps.wgan.models import build_models
    from wdist_apps.wgan.trainer import make_optimizer

    device, tiny = spec["device"], spec["tiny"]
    batch, iters = (4, 1) if tiny else (64, 30)
    for method in ("clip", "gp", "sn"):
        cfg = WGANConfig(data="mnist", arch="dcgan", lipschitz=method, width=8 if tiny else 64,
                         z_dim=128)
        torch.manual_seed(0)
        gen, critic = build_models("dcgan", (3, 32, 32), 128, cfg.width, cfg.resolved_critic_norm)
        gen = gen.to(device)
        ours = wdist.WassersteinCritic(critic.to(device), lipschitz=method,
                                       optimizer=lambda p, cfg=cfg: make_optimizer(cfg, p))
        g_opt = make_optimizer(cfg, gen.parameters())
        real = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1
        z = torch.randn(batch, 128, device=device)
        with torch.no_grad():
            fake = gen(z)

        def critic_steps(ours=ours, real=real, fake=fake):
            for _ in range(iters):
                ours.step(real, fake)
            return 0.0

        def gen_steps(ours=ours, gen=gen, g_opt=g_opt, z=z):
            for _ in range(iters):
                loss = wdist.generator_loss(ours.module, gen(z))
                g_opt.zero_grad(set_to_none=True)
                loss.backward()
                g_opt.step()
            return 0.0

        t_c = timed(critic_steps, device, repeats=3, guard=20)["time_s"] / iters
        t_g = timed(gen_steps, device, repeats=3, guard=20)["time_s"] / iters
        emit({"kind": "wgan", "method": method, "batch": batch,
              "critic_step_ms": 1e3 * t_c, "generator_step_ms": 1e3 * t_g, "status": "ok"})


def worker_wdgrl(spec: dict) -> None:
    """WDGRL epoch time per 1,000 source samples (``WDGRLConfig.make_estimator(...).fit``)."""
    from wdist_apps.runtime import load_config
    from wdist_apps.wdgrl.experiment import WDGRLConfig, build_task

    task_name = "mnist_digits" if spec["tiny"] else "mnist_mnistm"
    cfg = load_config(WDGRLConfig, ROOT / "configs" / "wdgrl" / f"{task_name}.yaml")
    task = build_task(cfg)
    if spec["tiny"]:
        keep = slice(0, 64)
        task.Xs, task.ys, task.Xt = task.Xs[keep], task.ys[keep], task.Xt[keep]
    cfg.set(epochs=2 if spec["tiny"] else 3)
    n_train = len(task.Xs) - int(round(cfg.params["val_fraction"] * len(task.Xs)))
    est = cfg.make_estimator("wdgrl", 0, spec["device"]).fit(task.Xs, task.ys, task.Xt)
    secs = [row["seconds"] for row in est.history_[1:]]  # the first epoch warms up
    emit({"kind": "wdgrl", "task": task_name, "network": cfg.params["network"], "n_train": n_train,
          "s_per_1k_source": 1000 * statistics.median(secs) / n_train, "status": "ok"})


def worker_qrdqn(spec: dict) -> None:
    """QR-DQN learner updates/s (batch of the Atari config, Nature CNN, N = 200), with and
    without ``compile_update``: ``wdist_apps.qrdqn.agent``'s network and update step on a
    random uint8 batch."""
    import torch

    from wdist_apps.qrdqn.agent import _make_update, build_network
    from wdist_apps.qrdqn.config import QRDQNConfig
    from wdist_apps.qrdqn.replay import Batch
    from wdist_apps.runtime import load_config

    device, tiny = torch.device(spec["device"]), spec["tiny"]
    cfg0 = load_config(QRDQNConfig, ROOT / "configs" / "qrdqn" / "atari-fast.yaml")
    bsz, updates = (8, 3) if tiny else (cfg0.batch_size, 200)
    # the compiled step takes minutes of C++ compilation on a CPU: --tiny there runs eager only
    for compiled in (False,) if tiny and device.type == "cpu" else (False, True):
        cfg = load_config(QRDQNConfig, ROOT / "configs" / "qrdqn" / "atari-fast.yaml",
                          {"compile_update": compiled})
        torch.manual_seed(0)
        net, target = build_network(cfg, 6, (84, 84)), build_network(cfg, 6, (84, 84))
        net, target = net.to(device), target.to(device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        update = _make_update(net, target, opt, cfg, device)
        g = torch.Generator().manual_seed(0)
        obs = torch.randint(0, 256, (bsz, 4, 84, 84), dtype=torch.uint8, generator=g)
        batch = Batch(obs, torch.randint(0, 6, (bsz,), generator=g), torch.rand(bsz, generator=g),
                      torch.full((bsz,), 0.97), obs.roll(1, 0))
        t0 = time.perf_counter()
        for _ in range(3):  # warm-up (and compile)
            update(batch)
        _sync(device.type)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(updates):
            update(batch)
        _sync(device.type)
        emit({"kind": "qrdqn", "compile_update": compiled, "batch": bsz, "updates": updates,
              "updates_per_s": updates / (time.perf_counter() - t0), "warmup_s": warm,
              "status": "ok"})


WORKERS = {"core": worker_core, "linear_reference": worker_linear_reference, "big": worker_big,
           "kernel": worker_kernel, "small": worker_small, "wmd": worker_wmd,
           "wgan": worker_wgan, "wdgrl": worker_wdgrl, "qrdqn": worker_qrdqn}


# ---------------------------------------------------------------- the parent
class Check:
    """Runs the workers in order under one deadline and rewrites the report after each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tiny = args.tiny
        self.scale = 0.05 if args.tiny else 1.0  # column caps in tiny mode
        self.start = time.time()
        self.deadline = self.start + args.budget_s
        self.results: dict[str, list[dict]] = {}
        self.skipped: list[str] = []
        self.stem = args.out / f"check_{args.device}{'_tiny' if args.tiny else ''}"

    def left(self) -> float:
        return self.deadline - time.time()

    def run(self, section: str, worker: str, spec: dict, cap: float, label: str) -> list[dict]:
        """One worker in a subprocess, killed at ``min(cap, budget left)``; its rows (those
        printed before a crash or the timeout too) go to ``section``."""
        timeout = min(cap * self.args.cap_factor, self.left())
        if timeout < (1 if self.tiny else 5):
            self.skipped.append(f"{label}: skipped, the global time budget is spent")
            self.save()
            return []
        spec = {**spec, "device": self.args.device, "tiny": self.tiny,
                "deadline": time.time() + timeout - (0.5 if self.tiny else 5)}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        env.setdefault("WDIST_NO_PROGRESS", "1")  # no progress bars in the captured output
        if self.args.device == "cpu" and worker in ("kernel", "core", "big"):
            env["TRITON_INTERPRET"] = "1"  # the Triton kernels on the CPU: the interpreter
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", worker,
               "--spec", json.dumps(spec)]
        t0 = time.time()
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                                 cwd=ROOT)
            stdout, err, code = out.stdout, out.stderr, out.returncode
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err, code = f"timed out after {timeout:.0f} s", None
        rows = [json.loads(line[4:]) for line in stdout.splitlines() if line.startswith("ROW ")]
        for row in rows:
            row.setdefault("column", label)
        if code != 0:
            tail = err if code is None else (err.strip().splitlines() or [""])[-1]
            why = f"exit {code}: {tail}" if code is not None else tail
            rows.append({"column": label, "status": f"failed ({why})"[:400], "incomplete": True})
        self.results.setdefault(section, []).extend(rows)
        print(f"[{time.time() - self.start:5.0f} s] {label}: {len(rows)} rows in "
              f"{time.time() - t0:.0f} s", flush=True)
        self.save()
        return rows

    def main(self) -> None:
        size = "tiny" if self.tiny else "full"
        sizes, dims = SIZES[size], [3, 64]
        self.run("kernel", "kernel", {}, 30 if self.tiny else 75, "fused soft-min")
        interpreted = self.args.device == "cpu"
        for column, cap in CORE_COLUMNS.items():
            spec = {"column": column, "sizes": sizes, "dims": dims}
            if interpreted and "triton" in column:
                spec.update(INTERPRETED)
            elif interpreted and column == "wdist fixed work (compiled)":
                spec.update(FIXED_TINY)
            self.run("sinkhorn", "core", spec, max(cap * self.scale, 20 if self.tiny else 0),
                     column)
        self.run("linear_reference", "linear_reference", {"sizes": sizes, "dims": dims},
                 20, "POT's reference <P*, C>")
        for triton in (False, True):
            spec = {"n": BIG_N[size], "triton": triton}
            if interpreted and triton:
                spec.update(n=INTERPRETED["sizes"][0], blur=INTERPRETED["blur"])
            self.run("big", "big", spec, 30 if self.tiny else 45,
                     f"debiased n = {spec['n']:,}" + (" (triton soft-min)" if triton else ""))
        self.run("small", "small", {}, 30, "1-D and emd")
        self.run("wmd", "wmd", {}, 30, "WMD pairs/s")
        for app, cap in (("wgan", 25), ("wdgrl", 40), ("qrdqn", 50)):
            self.run(app, app, {}, 40 if self.tiny else cap, app)
        print(f"wrote {self.stem}.md and .json in {time.time() - self.start:.0f} s")

    def save(self) -> None:
        from wdist_apps.runtime.machine import machine_info, versions

        info = machine_info(self.args.device)
        info["versions"] = versions(("torch", "numpy", "scipy", "pot", "geomloss", "pykeops",
                                     "triton", "flash-sinkhorn"))
        payload = {"machine": info, "budget_s": self.args.budget_s, "tiny": self.tiny,
                   "elapsed_s": time.time() - self.start, "skipped": self.skipped,
                   **self.results}
        self.args.out.mkdir(parents=True, exist_ok=True)
        self.stem.with_suffix(".json").write_text(json.dumps(payload, indent=1))
        self.stem.with_suffix(".md").write_text(report(payload))


def _t(row: dict) -> str:
    if row.get("status", "ok") != "ok":
        return row["status"]
    t = row["time_s"]
    return (f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s") + ("" if row.get("warm", True)
                                                              else " (1 cold run)")


def sinkhorn_table(payload: dict) -> list[str]:
    rows = payload.get("sinkhorn", [])
    ref = {(r["n"], r["d"]): r["value"] for r in rows
           if r.get("column") == "reference (float64)" and r.get("status") == "ok"}
    lin = {(r["n"], r["d"]): r["linear"] for r in payload.get("linear_reference", [])
           if "linear" in r}
    ours = {(r["n"], r["d"]): r["time_s"] for r in rows
            if r.get("column") == "wdist" and r.get("status") == "ok"}
    out = ["| n | d | blur | method | time | runs | ours / this | rel. err | peak MB |",
           "|---|---|---|---|---|---|---|---|---|"]
    keyed = sorted((r for r in rows if "n" in r), key=lambda r: (r["d"], r["n"]))
    for r in keyed + [r for r in rows if "n" not in r]:
        if "n" not in r:
            out.append(f"| | | | {r['column']} | {r['status']} | | | | |")
            continue
        key, ok = (r["n"], r["d"]), r.get("status") == "ok"
        target = lin.get(key) if r.get("quantity") == "linear" else ref.get(key)
        err = (f"{abs(r['value'] - target) / abs(target):.1e}" if ok and target
               and r["column"] != "reference (float64)" else "")
        ratio = (f"{ours[key] / r['time_s']:.2f}" if ok and key in ours
                 and r["column"] not in ("wdist", "reference (float64)") else "")
        mem = f"{r['peak_mb']:.0f}" if "peak_mb" in r else ""
        out.append(f"| {r['n']:,} | {r['d']} | {r['blur']} | {r['column']} | {_t(r)} | "
                   f"{r.get('runs', '')} | {ratio} | {err} | {mem} |")
    return out


def report(payload: dict) -> str:
    from wdist_apps.runtime.machine import markdown_header

    device = payload["machine"]["gpu"] or "CPU"
    out = [f"# wdist GPU check ({device}{', tiny' if payload['tiny'] else ''})", "",
           markdown_header(payload["machine"]), "",
           f"Global budget {payload['budget_s']:.0f} s, elapsed {payload['elapsed_s']:.0f} s. "
           "Each column / row ran in its own subprocess; a failure is recorded in its cell.", ""]
    if payload["skipped"]:
        out += ["Skipped (the time budget):", ""] + [f"- {s}" for s in payload["skipped"]] + [""]
    out += ["## 0. Fused Triton soft-min", "",
            "Accuracy: max |ours - float64 eager| / max |eager| for the value and the gradients "
            "(x [2, n, d], y [2, n + 7, d]). Speed: one forward + backward pass, x = y clouds, "
            "B = 1; `current online` is `wdist.sinkhorn`'s online soft-min today.", "",
            "| what | d | p | dtype / n | value | grad x | grad y | grad h / time |",
            "|---|---|---|---|---|---|---|---|"]
    for r in payload.get("kernel", []):
        if r.get("kind") == "accuracy":
            out.append(f"| accuracy | {r['d']} | {r['p']} | {r['dtype']}, n = {r['n']} | "
                       f"{r['rel_err_value']:.1e} | {r['rel_err_grad_x']:.1e} | "
                       f"{r['rel_err_grad_y']:.1e} | {r['rel_err_grad_h']:.1e} |")
        elif r.get("kind") == "tiles":
            out.append(f"| forward, tiles {r['block_n']} x {r['block_m']}, {r['num_warps']} "
                       f"warps | {r['d']} | 2 | n = m = {r['n']:,} | | | | "
                       f"{r['forward_s'] * 1e3:.2f} ms |")
        elif r.get("kind") == "speed":
            out.append(f"| pass | {r['d']} | 2 | n = m = {r['n']:,} | | | | triton "
                       f"{r['triton_s'] * 1e3:.1f} ms, current online "
                       f"{r['current online_s'] * 1e3:.1f} ms |")
        else:
            out.append(f"| {r.get('status')} | | | | | | | |")
    out += ["", "## 1. Sinkhorn, p = 2, OT_eps (`debias=False`), float32", "",
            "`wdist`: `sinkhorn(tol=1e-3)`, backend auto; `wdist online (triton soft-min)`: "
            "`backend=\"online\"` with the fused kernel; `wdist fixed work (compiled)`: "
            "`sinkhorn(tol=None, diameter=...)`, no host sync, `torch.compile(fullgraph=True, "
            "mode=\"reduce-overhead\")` (a CUDA graph; on the CPU the capture only). "
            "ours / this: `wdist` time over this "
            "row's (> 1: the peer is slower). rel. err against the float64 reference "
            "(`OT_eps`; POT: `<P*, C>` of the converged plan).", ""]
    out += sinkhorn_table(payload)
    out += ["", "### One debiased solve, 3-D (`wdist.sinkhorn` defaults)", "",
            "| n = m | blur | soft-min | time | value | peak MB |", "|---|---|---|---|---|---|"]
    for r in payload.get("big", []):
        if r.get("status") == "ok":
            out.append(f"| {r['n']:,} | {r['blur']} | {'triton' if r['triton'] else 'current'} "
                       f"| {r['time_s']:.2f} s | {r['value']:.6g} | {r.get('peak_mb', 0):.0f} |")
        else:
            out.append(f"| | | {r['column']} | {r['status']} | | |")
    out += ["", "## 2. 1-D, emd, WMD", "", "| row | method | time | ratio (peer / ours) |",
            "|---|---|---|---|"]
    for r in payload.get("small", []):
        if r.get("kind") == "1-D":
            ratio = f"{r['ratio']:.1f}" if "ratio" in r else ""
            out.append(f"| {r['case']} | {r['method']} | {_t(r)} | {ratio} |")
        elif r.get("kind") == "emd":
            out.append(f"| emd n = {r['n']:,} | wdist {r['wdist_s'] * 1e3:.1f} ms, POT "
                       f"{r['pot_s'] * 1e3:.1f} ms | overhead {100 * r['overhead']:+.1f}% | |")
        else:
            out.append(f"| 1-D / emd | {r.get('status')} | | |")
    for r in payload.get("wmd", []):
        if r.get("kind") == "wmd":
            out.append(f"| WMD Sinkhorn, {r['words_per_doc']} words/doc, batch {r['batch']} | "
                       f"{r['pairs']:,} pairs | {_t(r)} | {r['pairs_per_s']:,.0f} pairs/s |")
        else:
            out.append(f"| WMD | {r.get('status')} | | |")
    out += ["", "## 3. Apps", "", "| app | setting | result |", "|---|---|---|"]
    for app in ("wgan", "wdgrl", "qrdqn"):
        for r in payload.get(app, []):
            if r.get("status") != "ok":
                out.append(f"| {app} | | {r.get('status')} |")
            elif app == "wgan":
                out.append(f"| WGAN dcgan 3x32x32 | {r['method']}, batch {r['batch']} | critic "
                           f"step {r['critic_step_ms']:.1f} ms, generator step "
                           f"{r['generator_step_ms']:.1f} ms |")
            elif app == "wdgrl":
                out.append(f"| WDGRL | {r['task']} ({r['network']}), {r['n_train']:,} source | "
                           f"{r['s_per_1k_source']:.3f} s per 1,000 source samples |")
            else:
                out.append(f"| QR-DQN learner | compile_update={r['compile_update']}, batch "
                           f"{r['batch']} | {r['updates_per_s']:.1f} updates/s (warm-up "
                           f"{r['warmup_s']:.1f} s) |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true",
                        help="tiny inputs: every row's code path in seconds (CPU-testable)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="global time budget in seconds (default 450; --tiny: 240)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu")
    parser.add_argument("--cap-factor", type=float, default=1.0,
                        help="multiply every column's time cap (a slow or shared machine)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        import torch

        if json.loads(args.spec).get("device") == "cpu":
            torch.set_num_threads(1)
        try:
            WORKERS[args.worker](json.loads(args.spec))
        except Exception:  # the parent records the last line of the traceback
            traceback.print_exc()
            return 1
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda needs a CUDA device (use --device cpu --tiny here)")
    if args.budget_s is None:
        args.budget_s = 240.0 if args.tiny else 450.0
    Check(args).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
