"""Scaling out: one process against several, measured here, and a cost model beyond this box.

    python benchmarks/scale.py --part wmd        # WMD k-NN on a Dask LocalCluster (~2 min)
    python benchmarks/scale.py --part sinkhorn   # sharded Sinkhorn on 2 gloo ranks (~4 min)
    python benchmarks/scale.py --part ddp        # a DDP WGAN-GP step on 1 and 2 gloo ranks

Parts (``--part``, repeatable; each writes ``<out>/<part>.{md,json}``):

- ``wmd``: exact 10-NN of Lee news sentences among the other 2,7xx (word2vec trained on gensim's
  bundled text), in one process (``WMD.knn``) and on a Dask ``LocalCluster`` of 1 and 2 worker
  processes (``WMD.knn(client=...)``): wall and CPU seconds per process, resident memory per
  process, exact WMD solves, bytes sent, round trips; the neighbours must be identical. Then
  the unit costs (bounds per query-document pair, one exact solve, a Dask round trip, loopback
  bandwidth) and the exact solves per query at four corpus sizes (a power law fitted to them)
  feed a model of time per query batch, communication against compute and memory per worker,
  for 10^4 to 10^7 documents and 1 to 128 workers.
- ``sinkhorn``: one debiased Sinkhorn divergence (3-D, float32, ``blur=0.1``) between two
  clouds of ``--points`` points each: ``wdist.sinkhorn`` (online) in one process,
  ``wdist.distributed.sinkhorn`` on a gloo group of 1 and of 2 processes (one thread each):
  wall and CPU seconds, peak memory above the start of the solve per process, soft-min passes,
  the value's agreement. Then the unit costs (seconds per cost entry of the soft-min; gloo
  point-to-point latency and bandwidth, ``all_reduce`` latency) feed a model of the time per
  soft-min pass (compute of ``n m / R`` entries against ``R - 1`` ring steps of ``m / R``
  points, overlapped), communication share and memory per rank, for 10^5 to 10^7 points and 1
  to 64 ranks, on this box and on GPUs (the soft-min's speed from the committed H200 row of
  ``results/core/bench_cuda.json``, interconnects at nominal figures).
- ``ddp``: the WGAN trainer's generator iteration (``train_step``: 5 critic updates with the
  gradient penalty, one generator update) on 8 Gaussians with the ``toy_gp`` networks, global
  batches of ``--batch`` samples (256 and 2048), in one plain process and under DDP on 2 gloo
  processes (one thread each, fresh processes): median wall and CPU seconds per iteration on
  each rank, and the bytes all-reduced per iteration (every gradient, float32).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wdist_apps.runtime.machine import (  # noqa: E402
    machine_info,
    markdown_header,
    versions,
    write_report,
)

ROOT = Path(__file__).resolve().parents[1]


def _cpu_seconds() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _lee(n_queries: int, seed: int):
    from wdist_apps.wmd import WMD
    from wdist_apps.wmd.data import lee_sentences, lee_word2vec

    emb = lee_word2vec()
    wmd = WMD(emb)
    docs = wmd.transform(lee_sentences())
    docs = docs.subset(np.flatnonzero(docs.lengths > 0))
    pick = np.random.default_rng(seed).choice(len(docs), n_queries, replace=False)
    rest = np.setdiff1d(np.arange(len(docs)), pick)
    return wmd, docs.subset(pick), docs.subset(rest)


def _timed(fn, repeats: int, best: bool = False):
    """``(result, wall seconds, CPU seconds of this process)`` after one warm-up: medians, or
    with ``best`` the fastest run (a unit cost, least disturbed by other load on the box)."""
    out = fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), _cpu_seconds()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(_cpu_seconds() - c)
    pick = min if best else statistics.median
    return out, pick(walls), pick(cpus)


def _cluster_run(wmd, Q, C, n_workers: int, k: int, repeats: int, reference) -> dict:
    """The sharded search on a LocalCluster of ``n_workers`` processes (one thread each)."""
    import distributed

    from wdist_apps.wmd.distributed import ShardedCorpus

    env = {"PYTHONPATH": str(ROOT)}
    with distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.CRITICAL, env=env,
    ) as cluster, distributed.Client(cluster) as client:
        client.run(torch.set_num_threads, 1)
        client.run(__import__, "wdist_apps.wmd.distributed")  # imports are not sharding time
        rss0 = client.run(_rss_mib)
        t = time.perf_counter()
        sharded = ShardedCorpus(wmd, C, client)
        shard_s = time.perf_counter() - t
        sharded.knn(Q, k)  # warm-up: torch views and centroids built on the workers
        cpu0 = client.run(_cpu_seconds)
        (dist, ind), wall, client_cpu = _timed(lambda: sharded.knn(Q, k), repeats)
        cpu1 = client.run(_cpu_seconds)
        # round trip of an empty task, and the loopback bandwidth of a 64 MiB scatter
        rt = []
        for _ in range(20):
            t = time.perf_counter()
            client.submit(int, 0, pure=False).result()
            rt.append(time.perf_counter() - t)
        blob = np.ones(1 << 23)
        t = time.perf_counter()
        f = client.scatter(blob, hash=False)
        f.result()
        bw = blob.nbytes / (time.perf_counter() - t)
        del f
        rss = client.run(_rss_mib)
        same = bool(np.array_equal(ind, reference[1]) and np.array_equal(dist, reference[0]))
        return {
            "workers": n_workers,
            "wall_s": wall,
            "client_cpu_s": client_cpu,
            "worker_cpu_s": [(cpu1[a] - cpu0[a]) / repeats for a in cpu1],
            "worker_rss_mib_before_shard": list(rss0.values()),
            "worker_rss_mib": list(rss.values()),
            "client_rss_mib": _rss_mib(),
            "shard_s": shard_s,
            "bytes_sent_once": sharded.bytes_sent,
            "stats": dict(sharded.search_stats_),
            "round_trip_s": statistics.median(rt),
            "round_trip_fastest_s": min(rt),
            "loopback_bytes_per_s": bw,
            "same_as_one_process": same,
        }


def _exact_per_query(wmd, Q, C, k: int, sizes: list[int]) -> dict[int, float]:
    """Exact solves per query of the global RWMD-ordered search (it does not depend on the
    number of partitions: measured on one in-process LocalCluster worker thread)."""
    import distributed

    from wdist_apps.wmd.distributed import ShardedCorpus

    out = {}
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
        silence_logs=logging.CRITICAL,
    ) as cluster, distributed.Client(cluster) as client:
        for n in sizes:
            sub = C.subset(np.arange(n))
            sharded = ShardedCorpus(wmd, sub, client)
            sharded.knn(Q, k)
            out[n] = sharded.search_stats_["exact"] / len(Q)
    return out


def _unit_costs(wmd, Q, C, repeats: int) -> dict:
    """Seconds per query-document pair of the two bounds, and per exact WMD solve."""
    _, wall_b, _ = _timed(lambda: (wmd.wcd(Q, C), wmd.rwmd(Q, C)), repeats, best=True)
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, len(C), 300), rng.integers(0, len(C), 300)
    _, wall_e, _ = _timed(lambda: wmd.paired(C.subset(a), C.subset(b)), repeats, best=True)
    nnz = C.lengths.mean()
    return {
        "bounds_s_per_pair": wall_b / (len(Q) * len(C)),
        "exact_s_per_solve": wall_e / 300,
        "words_per_doc": float(nnz),
        "dim": int(wmd.embeddings.dim),
    }


def _model(one: dict, costs: dict, fit: tuple[float, float], q: int, k: int) -> list[dict]:
    """Time per batch of ``q`` queries on ``W`` workers for ``N`` documents:
    ``compute = q (N t_bound + E(N) t_exact) / W`` (the bounds and the solves split evenly),
    ``comm = R t_rt + (W b_query + q c(N) 24 B) / bandwidth`` with ``R`` round trips,
    ``b_query`` the query batch (sent to every worker) and ``c(N)`` candidates per query
    (ids and two bounds back to the client; ``c / E`` as measured here)."""
    a, b = fit
    t_b, t_e = costs["bounds_s_per_pair"], costs["exact_s_per_solve"]
    rt, bw = one["round_trip_fastest_s"], one["loopback_bytes_per_s"]
    rounds = one["stats"]["rounds"]
    cand_per_exact = one["stats"]["candidates"] / one["stats"]["exact"]
    q_bytes = q * costs["words_per_doc"] * (costs["dim"] * 8 + 16)
    doc_bytes = costs["words_per_doc"] * 16 + 8 + costs["dim"] * 8  # nnz + indptr + centroid
    rows = []
    for n in (10**4, 10**5, 10**6, 10**7):
        e = a * n**b
        for w in (1, 2, 8, 32, 128):
            compute = q * (n * t_b + e * t_e) / w
            comm = rounds * rt + (w * q_bytes + q * cand_per_exact * e * 24) / bw
            block = max(1, (1 << 22) // (n // w))
            rows.append({
                "docs": n, "workers": w, "exact_per_query": e,
                "compute_s": compute, "comm_s": comm, "comm_share": comm / (comm + compute),
                "worker_mib": (n / w * doc_bytes + min(block, q) * (n / w) * 16) / 2**20,
            })
    return rows


def run_wmd(args: argparse.Namespace) -> Path:
    torch.set_num_threads(1)
    os.environ.setdefault("WDIST_NO_PROGRESS", "1")
    wmd, Q, C = _lee(args.queries, args.seed)
    k = args.k
    load_before = os.getloadavg()
    rss_before = _rss_mib()
    reference, wall1, cpu1 = _timed(lambda: wmd.knn(Q, C, k=k), args.repeats)
    single = {
        "wall_s": wall1, "cpu_s": cpu1, "rss_mib": _rss_mib(), "rss_mib_before": rss_before,
        "stats": dict(wmd.search_stats_),
    }
    clusters = [_cluster_run(wmd, Q, C, w, k, args.repeats, reference) for w in args.workers]
    costs = _unit_costs(wmd, Q, C, args.repeats)
    sizes = [len(C) // 8, len(C) // 4, len(C) // 2, len(C)]
    per_query = _exact_per_query(wmd, Q, C, k, sizes)
    b, log_a = np.polyfit(np.log(sizes), np.log([per_query[n] for n in sizes]), 1)
    fit = (float(np.exp(log_a)), float(b))
    model = _model(clusters[-1], costs, fit, len(Q), k)
    payload = {
        "machine": machine_info("cpu"), "versions": versions(("dask", "distributed")),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "queries": len(Q), "corpus": len(C), "k": k, "single": single, "clusters": clusters,
        "unit_costs": costs, "exact_per_query": per_query, "exact_fit": fit, "model": model,
    }
    return write_report(args.out, "wmd", [_report(payload)], payload)


def _load(p: dict, when: str) -> str:
    return ", ".join(f"{x:.1f}" for x in p["load_average"][when])


def _report(p: dict) -> str:
    s, cl = p["single"], p["clusters"]
    vers = ", ".join(f"{k} {v}" for k, v in p["versions"].items())
    lines = [
        "# WMD k-NN on Dask: one process against a LocalCluster",
        "",
        markdown_header(p["machine"]),
        f"- also: {vers}; load average (1, 5, 15 min) before {_load(p, 'before')}, after "
        f"{_load(p, 'after')} on this shared box",
        "",
        f"Exact {p['k']}-NN of {p['queries']} Lee sentences among {p['corpus']} (word2vec "
        f"{p['unit_costs']['dim']}-D, float64); medians of timed runs after a warm-up. Worker "
        "CPU is per search; memory is resident set size.",
        "",
        "| run | wall s | CPU s (client; workers) | exact solves | round trips | RSS MiB per "
        "process | same neighbours |",
        "|---|---|---|---|---|---|---|",
        f"| one process (`WMD.knn`) | {s['wall_s']:.2f} | {s['cpu_s']:.2f} | "
        f"{s['stats']['exact']} | - | {s['rss_mib']:.0f} | - |",
    ]
    for c in cl:
        workers = ", ".join(f"{x:.2f}" for x in c["worker_cpu_s"])
        rss = ", ".join(f"{x:.0f}" for x in c["worker_rss_mib"])
        lines.append(
            f"| Dask, {c['workers']} worker process(es) | {c['wall_s']:.2f} | "
            f"{c['client_cpu_s']:.2f}; {workers} | {c['stats']['exact']} | "
            f"{c['stats']['rounds']} | client {c['client_rss_mib']:.0f}; workers {rss} | "
            f"{'yes' if c['same_as_one_process'] else 'NO'} |"
        )
    by_w = {c["workers"]: c for c in cl}
    lines.append("")
    if 1 in by_w and 2 in by_w:
        lines.append(
            f"Speed-up 2 workers over 1: **{by_w[1]['wall_s'] / by_w[2]['wall_s']:.2f}x** wall; "
            f"the busiest worker's CPU {max(by_w[1]['worker_cpu_s']):.2f} s -> "
            f"{max(by_w[2]['worker_cpu_s']):.2f} s."
        )
    c = cl[-1]
    lines += [
        f"Sent once per corpus: {c['bytes_sent_once'] / 2**20:.1f} MiB (partitions + their "
        f"words' vectors; {c['shard_s']:.2f} s). Worker RSS before the corpus arrived: "
        + ", ".join(f"{x:.0f}" for x in c["worker_rss_mib_before_shard"]) + " MiB. "
        f"Round trip of an empty task: {c['round_trip_s'] * 1e3:.1f} ms (median; fastest "
        f"{c['round_trip_fastest_s'] * 1e3:.1f} ms); loopback scatter of 64 MiB: "
        f"{c['loopback_bytes_per_s'] / 2**30:.2f} GiB/s.",
        "",
        "## Cost model",
        "",
    ]
    u, (a, b) = p["unit_costs"], p["exact_fit"]
    pq = ", ".join(f"{n}: {v:.1f}" for n, v in p["exact_per_query"].items())
    lines += [
        f"Measured unit costs (one process, 1 thread, fastest of the runs): bounds (WCD + RWMD) "
        f"{u['bounds_s_per_pair'] * 1e6:.2f} us per query-document pair; one exact WMD "
        f"{u['exact_s_per_solve'] * 1e3:.3f} ms ({u['words_per_doc']:.1f} words per document). "
        f"Exact solves per query by corpus size ({pq}) fit `E(N) = {a:.3g} N^{b:.2f}` (an "
        f"extrapolation beyond {max(p['exact_per_query'])} documents).",
        "",
        f"Per batch of {p['queries']} queries: compute = Q (N t_bound + E(N) t_exact) / W; "
        "communication = rounds x round trip + (W x query batch + candidates) / bandwidth, with "
        f"{c['stats']['rounds']} round trips (measured), the fastest round trip and the "
        "bandwidth measured on the loopback above (a real network adds its latency to each "
        "round trip). Memory per worker: its documents (words, weights, centroid) and the "
        "bounds of one query block (at most 2^22 pairs), plus the vectors of the words its "
        "documents use (at most the vocabulary x dim x 8 bytes).",
        "",
        "| documents | workers | exact solves/query | compute s | communication s | "
        "comm share | MiB per worker |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in p["model"]:
        lines.append(
            f"| {r['docs']:.0e} | {r['workers']} | {r['exact_per_query']:.0f} | "
            f"{r['compute_s']:.3g} | {r['comm_s']:.3g} | {r['comm_share']:.1%} | "
            f"{r['worker_mib']:.0f} |"
        )
    return "\n".join(lines)


SK_DIM, SK_BLUR = 3, 0.1


def _sk_clouds(n: int, rank: int = 0, world: int = 1):
    """``benchmarks/core.py``'s 3-D clouds (uniform in a cube, and shifted by 0.2), and this
    rank's contiguous shard of each."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from core import clouds

    x, y = clouds(n, SK_DIM, "cpu")
    cut = [n * r // world for r in range(world + 1)]
    return x[cut[rank] : cut[rank + 1]].clone(), y[cut[rank] : cut[rank + 1]].clone()


def _count_passes():
    """Counts the ring passes (one per soft-min) of ``wdist.distributed``."""
    import wdist.distributed as wd

    counter = {"passes": 0}
    blocks = wd._Ring.blocks

    def counted(self, *a, **k):
        counter["passes"] += 1
        return blocks(self, *a, **k)

    wd._Ring.blocks = counted
    return counter


def _timed_solve(fn, repeats: int) -> dict:
    """Median wall and CPU seconds of ``fn()`` after a warm-up, and the process's peak resident
    memory above what it held before the warm-up (a fresh process: the solve sets the peak)."""
    import resource

    before = _rss_mib()
    fn()
    walls, cpus, value = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), _cpu_seconds()
        value = float(fn())
        walls.append(time.perf_counter() - w)
        cpus.append(_cpu_seconds() - c)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus),
            "peak_mib_above_start": peak - before, "value": value}


def _comm_costs(group_size: int) -> dict:
    """Point-to-point latency (1 float, ping-pong) and bandwidth (16 MiB) between ranks 0 and
    1, and the latency of a 1-float ``all_reduce``: fastest of 20 (the unit cost least
    disturbed by the other load on the box)."""
    import torch.distributed as dist

    rank = dist.get_rank()

    def ping(t: torch.Tensor) -> float:
        dist.barrier()
        w = time.perf_counter()
        if rank == 0:
            dist.send(t, 1)
            dist.recv(t, 1)
        elif rank == 1:
            dist.recv(t, 0)
            dist.send(t, 0)
        return (time.perf_counter() - w) / 2

    small, big = torch.zeros(1), torch.zeros(1 << 22)
    lat = min(ping(small) for _ in range(20))
    one_way = min(ping(big) for _ in range(5))
    red = []
    for _ in range(20):
        dist.barrier()
        w = time.perf_counter()
        dist.all_reduce(small)
        red.append(time.perf_counter() - w)
    return {"p2p_latency_s": lat, "p2p_bytes_per_s": big.nbytes / max(one_way - lat, 1e-9),
            "allreduce_latency_s": min(red), "ranks": group_size}


def _sinkhorn_rank(rank: int, world: int, port: int, args: dict, out: str) -> None:
    """One fresh process of a run: ``world = 0`` is ``wdist.sinkhorn`` (online) alone, else
    rank ``rank`` of a gloo group of ``world``. Times the solve; a group of one also times a
    second size and counts the passes of a ``debias=False`` solve (the cost model's
    calibration), a group of two measures the communication costs."""
    import torch.distributed as dist

    import wdist
    import wdist.distributed as wd

    torch.set_num_threads(1)
    n, n_c, repeats = args["points"], args["calibrate_points"], args["repeats"]
    if world == 0:
        x, y = _sk_clouds(n)
        wdist.sinkhorn(*_sk_clouds(200), blur=SK_BLUR, backend="online")  # warm-up
        row = _timed_solve(lambda: wdist.sinkhorn(x, y, blur=SK_BLUR, backend="online"),
                           repeats)
        Path(out, "single.json").write_text(json.dumps(row))
        return
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x, y = _sk_clouds(n, rank, world)
        wd.sinkhorn(*_sk_clouds(200, rank, world), blur=SK_BLUR)  # warm-up
        counter = _count_passes()
        row = _timed_solve(lambda: wd.sinkhorn(x, y, blur=SK_BLUR), repeats)
        row["passes"] = counter["passes"] // (repeats + 1)
        row["shard"] = len(x)
        if world == 1:
            xs, ys = _sk_clouds(n_c)
            counter["passes"] = 0
            row["small"] = _timed_solve(lambda: wd.sinkhorn(xs, ys, blur=SK_BLUR), repeats)
            row["small"]["passes"] = counter["passes"] // (repeats + 1)
            counter["passes"] = 0
            wd.sinkhorn(xs, ys, blur=SK_BLUR, debias=False)
            row["passes_debias_false"] = counter["passes"]
        else:
            row.update(_comm_costs(world))
        Path(out, f"rank{rank}_of{world}.json").write_text(json.dumps(row))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fit_pass(t1: tuple[int, float], t2: tuple[int, float]) -> tuple[float, float]:
    """``(seconds per cost entry, fixed seconds per pass)`` from ``(n, seconds per soft-min
    pass)`` at two sizes: ``t = n^2 e + o``."""
    (n1, s1), (n2, s2) = t1, t2
    e = (s2 - s1) / (n2 * n2 - n1 * n1)
    return e, max(0.0, s1 - n1 * n1 * e)


def _gpu_costs(passes_per_solve: float) -> dict | None:
    """The GPU soft-min's cost per entry and per pass, fitted to the committed online solves
    at n = 10^4 and 10^5 (3-D, blur 0.1, ``debias=False``) of ``results/core/bench_cuda.json``,
    with their soft-min passes counted here on the same clouds at a smaller n (the ε-schedule
    depends on the spread of the clouds, not on n)."""
    path = ROOT / "results" / "core" / "bench_cuda.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    rows = {r["n"]: r["time_s"] for r in data["sinkhorn"]
            if r["d"] == SK_DIM and r.get("status") == "ok" and "time_s" in r
            and (r["method"] == "wdist online"
                 or (r["method"] == "wdist" and r.get("backend") == "online"))}
    if 10**4 not in rows or 10**5 not in rows:
        return None
    e, o = _fit_pass(*((n, rows[n] / passes_per_solve) for n in (10**4, 10**5)))
    return {"gpu": data["machine"]["gpu"], "solves_s": {n: rows[n] for n in (10**4, 10**5)},
            "passes": passes_per_solve,
            "entry_s": e, "pass_s": o}


# Nominal interconnects for the GPU rows (not measured here): NCCL point-to-point within a node
# over NVLink 4 (H100 SXM: 450 GB/s per direction) and across nodes over InfiniBand NDR
# (400 Gb/s = 50 GB/s per GPU); latencies of a few microseconds (NVLink) to ~10 (IB).
GPU_LINKS = {"nvlink": (450e9, 5e-6), "infiniband": (50e9, 10e-6)}
GPUS_PER_NODE = 8


def _sk_model(entry_s: float, over_s: float, lat: float, bw: float, ar_lat: float, passes: int,
              checks: int, n: int, ranks: int, fused: bool) -> dict:
    """Time of one debiased solve of ``passes`` soft-min passes between two clouds of ``n``
    points on ``ranks`` ranks: per pass ``R`` blocks of ``(n / R)^2`` entries (``entry_s``
    each, plus ``over_s`` per block: launches, Python, syncs), each after a ring step of
    ``n / R`` points (``d + 1`` float32) that overlaps the previous block:
    ``t_block + (R - 1) max(t_block, t_step)``; plus ``checks`` stopping tests (one
    ``all_reduce`` each, ``log2 R`` latencies)."""
    b = n / ranks
    t_block = b * b * entry_s + over_s
    t_step = lat + b * (SK_DIM + 1) * 4 / bw if ranks > 1 else 0.0
    per_pass = t_block + (ranks - 1) * max(t_block, t_step)
    exposed = (ranks - 1) * max(0.0, t_step - t_block)
    tests = checks * ar_lat * math.ceil(math.log2(ranks)) if ranks > 1 else 0.0
    # memory: shards (points, 3 weights/potentials) + 2 receive buffers + the chunk block
    # (CPU: the eager path's [chunk, n/R] block of at most 2^23 entries; fused GPU path: none)
    block = 0 if fused else min(b * b, 2**23) * 4
    mem = (2 * b * (SK_DIM + 3) * 4 + 2 * b * (SK_DIM + 1) * 4 + block) / 2**20
    return {
        "points": n, "ranks": ranks, "solve_s": passes * per_pass + tests,
        "compute_s": passes * ranks * t_block,
        "comm_exposed_s": passes * exposed + tests,
        "comm_share": (passes * exposed + tests) / (passes * per_pass + tests),
        "bytes_per_pass": (ranks - 1) * b * (SK_DIM + 1) * 4, "rank_mib": mem,
    }


def run_sinkhorn(args: argparse.Namespace) -> Path:
    import tempfile

    import torch.multiprocessing as mp

    n, n_c = args.points, args.calibrate_points
    load_before = os.getloadavg()
    opts = {"points": n, "calibrate_points": n_c, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        # each run in fresh processes (comparable peak memory), one torch thread each
        for world in (0, 1, 2):
            mp.spawn(_sinkhorn_rank, args=(world, _free_port(), opts, tmp),
                     nprocs=max(world, 1), join=True)
        single = json.loads(Path(tmp, "single.json").read_text())
        one = json.loads(Path(tmp, "rank0_of1.json").read_text())
        ranks = [json.loads(Path(tmp, f"rank{r}_of2.json").read_text()) for r in range(2)]
    small, calib_passes = one["small"], one["passes_debias_false"]

    # CPU seconds: the box is shared, so a process's wall time includes waiting for a core
    entry_s, over_s = _fit_pass((n_c, small["cpu_s"] / small["passes"]),
                                (n, one["cpu_s"] / one["passes"]))
    comm = ranks[0]
    # stopping tests: one all_reduce per potential and iteration, about one per soft-min pass
    checks = one["passes"]

    def cpu_model(pts: int, r: int) -> dict:
        return _sk_model(entry_s, over_s, comm["p2p_latency_s"], comm["p2p_bytes_per_s"],
                         comm["allreduce_latency_s"], one["passes"], checks, pts, r, False)

    check = cpu_model(n, 2)
    model = [{"platform": "cpu", **cpu_model(pts, r)}
             for pts in (10**5, 10**6, 10**7) for r in (1, 2, 8, 64)]
    gpu = _gpu_costs(calib_passes)
    if gpu is not None:
        for pts in (10**5, 10**6, 10**7):
            for r in (1, 8, 64):
                bw, lat = GPU_LINKS["nvlink" if r <= GPUS_PER_NODE else "infiniband"]
                row = _sk_model(gpu["entry_s"], gpu["pass_s"], lat, bw, lat, one["passes"],
                                checks, pts, r, True)
                model.append({"platform": "gpu", **row})
    payload = {
        "machine": machine_info("cpu"), "load_average": {"before": load_before,
                                                         "after": os.getloadavg()},
        "points": n, "dim": SK_DIM, "blur": SK_BLUR, "repeats": args.repeats,
        "single": single, "one_rank": one, "one_rank_small": small, "two_ranks": ranks,
        "entry_s": entry_s, "pass_s": over_s, "model_two_ranks": check,
        "calibration": {"points": n_c, "passes_debias_false": calib_passes},
        "gpu": gpu, "gpu_links": GPU_LINKS, "model": model,
    }
    return write_report(args.out, "sinkhorn", [_sk_report(payload)], payload)


def _sk_report(p: dict) -> str:
    s, one, two = p["single"], p["one_rank"], p["two_ranks"]
    n = p["points"]
    wall2 = max(r["wall_s"] for r in two)
    lines = [
        "# Sharded Sinkhorn on torch.distributed: one process against two",
        "",
        markdown_header(p["machine"]),
        f"- load average (1, 5, 15 min) before {_load(p, 'before')}, after {_load(p, 'after')} "
        "on this shared box (2 cores, other jobs running)",
        "",
        f"Debiased Sinkhorn divergence between two 3-D clouds of {n:,} points each (float32, "
        f"blur {p['blur']}, tol 1e-3; `benchmarks/core.py`'s clouds); median of "
        f"{p['repeats']} timed runs after a warm-up, one torch thread per process, each run in "
        "fresh processes. Memory: the process's peak resident set above what it held before "
        "the first solve (Python, torch and gloo hold about 300 MiB more).",
        "",
        "| run | wall s | CPU s per process | peak MiB per process | soft-min passes | value |",
        "|---|---|---|---|---|---|",
        f"| `wdist.sinkhorn` (online), one process | {s['wall_s']:.2f} | {s['cpu_s']:.2f} | "
        f"{s['peak_mib_above_start']:.0f} | {one['passes']} | {s['value']:.6f} |",
        f"| `wdist.distributed.sinkhorn`, 1 gloo rank | {one['wall_s']:.2f} | {one['cpu_s']:.2f} "
        f"| {one['peak_mib_above_start']:.0f} | {one['passes']} | {one['value']:.6f} |",
        f"| `wdist.distributed.sinkhorn`, 2 gloo ranks | {wall2:.2f} | "
        + ", ".join(f"{r['cpu_s']:.2f}" for r in two) + " | "
        + ", ".join(f"{r['peak_mib_above_start']:.0f}" for r in two)
        + f" | {two[0]['passes']} | {two[0]['value']:.6f} |",
        "",
        f"2 ranks over 1 process: **{s['wall_s'] / wall2:.2f}x** in wall time; the busiest "
        f"process's CPU time {s['cpu_s']:.2f} s -> {max(r['cpu_s'] for r in two):.2f} s "
        f"(**{s['cpu_s'] / max(r['cpu_s'] for r in two):.2f}x**): the wall time is what this "
        "shared box gives (its 2 cores run other jobs too, see the load), the CPU time what the "
        "ranks need. Against the same code on one rank: CPU "
        f"{one['cpu_s']:.2f} s -> {max(r['cpu_s'] for r in two):.2f} s "
        f"(**{one['cpu_s'] / max(r['cpu_s'] for r in two):.2f}x**). CPU times on this box vary "
        "by tens of percent between runs of the same solve (other jobs share its caches). "
        "Value difference, 2 ranks against one process: "
        f"{abs(two[0]['value'] - s['value']):.2g} (float32).",
        "",
        "## Cost model",
        "",
    ]
    c, sm = two[0], p["one_rank_small"]
    cpu2 = ", ".join(f"{r['cpu_s']:.2f}" for r in two)
    lines += [
        f"Measured unit costs: a soft-min pass costs n^2 x {p['entry_s'] * 1e9:.1f} ns + "
        f"{p['pass_s'] * 1e3:.2f} ms of CPU here (fitted to the one-rank runs at n = "
        f"{p['calibration']['points']:,}, {sm['cpu_s']:.2f} CPU s for {sm['passes']} passes, "
        f"and n = {n:,}); gloo on the loopback: "
        f"point-to-point latency {c['p2p_latency_s'] * 1e6:.0f} us, bandwidth "
        f"{c['p2p_bytes_per_s'] / 2**30:.2f} GiB/s, 1-float all_reduce "
        f"{c['allreduce_latency_s'] * 1e6:.0f} us (fastest of 20). With these, the model "
        f"below gives {p['model_two_ranks']['solve_s']:.2f} s for the 2-rank run above (its "
        f"ranks used {cpu2} CPU s; wall {wall2:.2f} s).",
    ]
    if p["gpu"]:
        g = p["gpu"]
        solves = ", ".join(f"n = {int(k):,}: {v:.2f} s" for k, v in g["solves_s"].items())
        lines.append(
            f"GPU rows: a soft-min pass costs n^2 x {g['entry_s'] * 1e12:.2f} ps + "
            f"{g['pass_s'] * 1e3:.2f} ms, fitted to the committed {g['gpu']} online solves "
            f"({solves}; `results/core/bench_cuda.json`) with their {g['passes']} soft-min "
            f"passes (counted here on the same clouds at n = {p['calibration']['points']:,}, "
            "`debias=False`). The fixed part (launches, the stopping test's sync, Python) is "
            "charged to every block of the ring, an upper bound: it makes many ranks on a "
            "small problem slow; "
            "the interconnects are nominal, not measured: NVLink 4 within a node of 8 GPUs "
            "(450 GB/s, 5 us), InfiniBand NDR across nodes (50 GB/s per GPU, 10 us)."
        )
    lines += [
        "",
        f"One debiased solve of {one['passes']} soft-min passes (as measured here) between two "
        "clouds of N points on R ranks. A pass computes R blocks of (N/R)^2 entries; before "
        "each block but the first, one ring step receives N/R points (4 float32 each) while "
        "the previous block is computed: pass = t_block + (R - 1) max(t_block, t_step), with "
        "t_block = (N/R)^2 x cost per entry + the fixed cost per pass; only "
        "the part of a step longer than its block is exposed. Plus one all_reduce per stopping "
        "test. Memory per rank: its shards, two receive buffers and the soft-min's block "
        "(CPU: at most 2^23 entries; GPU: the fused path holds none).",
        "",
        "| platform | points | ranks | solve s | compute s | exposed comm s | comm share | "
        "MB received per pass per rank | MiB per rank |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in p["model"]:
        lines.append(
            f"| {r['platform']} | {r['points']:.0e} | {r['ranks']} | {r['solve_s']:.3g} | "
            f"{r['compute_s']:.3g} | {r['comm_exposed_s']:.3g} | {r['comm_share']:.1%} | "
            f"{r['bytes_per_pass'] / 1e6:.3g} | {r['rank_mib']:.3g} |"
        )
    return "\n".join(lines)


def _ddp_rank(rank: int, world: int, port: int, opts: dict, out: str) -> None:
    """One fresh process: ``world = 0`` is a plain run (no torchrun variables), else rank
    ``rank`` of ``world`` gloo processes; times ``opts["steps"]`` WGAN generator iterations."""
    if world:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ["WDIST_NO_PROGRESS"] = "1"
    torch.set_num_threads(1)
    from wdist_apps.runtime import load_config
    from wdist_apps.runtime.run import find_config
    from wdist_apps.wgan.config import WGANConfig
    from wdist_apps.wgan.trainer import Trainer

    cfg = load_config(WGANConfig, find_config("wgan", "toy_gp"),
                      {"batch_size": opts["batch"], "out_dir": str(Path(out, "run"))})
    trainer = Trainer(cfg)
    for _ in range(3):  # warm-up (DDP builds its buckets on the first backward)
        trainer.train_step()
    wall, cpu = [], []
    for _ in range(opts["steps"]):
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train_step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    params = {name: sum(p.numel() for p in m.parameters())
              for name, m in (("generator", trainer.generator), ("critic", trainer.critic.module))}
    row = {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu),
           "n_critic": cfg.resolved_n_critic, "params": params,
           "shard": trainer.batch, "rss_mib": _rss_mib()}
    Path(out, f"ddp_{world}_{rank}.json").write_text(json.dumps(row))


def run_ddp(args: argparse.Namespace) -> Path:
    import tempfile

    import torch.multiprocessing as mp

    load_before = os.getloadavg()
    runs = []
    for batch in args.batch:
        opts = {"batch": batch, "steps": args.steps}
        with tempfile.TemporaryDirectory() as tmp:
            for world in (0, 2):
                mp.spawn(_ddp_rank, args=(world, _free_port(), opts, tmp),
                         nprocs=max(world, 1), join=True)
            one = json.loads(Path(tmp, "ddp_0_0.json").read_text())
            two = [json.loads(Path(tmp, f"ddp_2_{r}.json").read_text()) for r in range(2)]
        runs.append({"batch": batch, "one_process": one, "two_ranks": two})
    per_step = one["n_critic"] * one["params"]["critic"] + one["params"]["generator"]
    payload = {"machine": machine_info("cpu"),
               "load_average": {"before": load_before, "after": os.getloadavg()},
               "steps": args.steps, "runs": runs, "params": one["params"],
               "n_critic": one["n_critic"], "allreduce_bytes_per_step": 4 * per_step}
    return write_report(args.out, "ddp", [_ddp_report(payload)], payload)


def _ddp_report(p: dict) -> str:
    lines = [
        "# A DDP WGAN-GP step: one process against 2 gloo ranks",
        "",
        markdown_header(p["machine"]),
        f"- load average before / after: {p['load_average']['before'][0]:.2f} / "
        f"{p['load_average']['after'][0]:.2f} (a shared box: wall times include waiting for "
        "a core)",
        "",
        f"`WGAN Trainer.train_step` on 8 Gaussians, `toy_gp` networks (generator "
        f"{p['params']['generator']:,} and critic {p['params']['critic']:,} parameters), "
        f"{p['n_critic']} critic updates with the gradient penalty and one generator update "
        f"per step; medians of {p['steps']} steps after 3 warm-up steps, one torch thread per "
        "process. All-reduced per step under DDP: "
        f"{p['allreduce_bytes_per_step'] / 1e6:.2f} MB per rank (every gradient, float32). "
        "Speed-up: one process's wall (CPU) time over the slower rank's.",
        "",
        "| global batch | run | samples per rank | wall s / step | CPU s / step | RSS MiB | "
        "speed-up wall (CPU) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for run in p["runs"]:
        one, two = run["one_process"], run["two_ranks"]
        wall, cpu = max(r["wall_s"] for r in two), max(r["cpu_s"] for r in two)
        lines.append(f"| {run['batch']} | one process | {one['shard']} | {one['wall_s']:.4f} | "
                     f"{one['cpu_s']:.4f} | {one['rss_mib']:.0f} | |")
        for r, row in enumerate(two):
            speed = (f"{one['wall_s'] / wall:.2f}x ({one['cpu_s'] / cpu:.2f}x)" if r == 0
                     else "")
            lines.append(f"| {run['batch']} | 2 gloo ranks, rank {r} | {row['shard']} | "
                         f"{row['wall_s']:.4f} | {row['cpu_s']:.4f} | {row['rss_mib']:.0f} | "
                         f"{speed} |")
    return "\n".join(lines + [""])


PARTS = {"wmd": run_wmd, "sinkhorn": run_sinkhorn, "ddp": run_ddp}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=sorted(PARTS), action="append", required=True)
    parser.add_argument("--out", default="results/scale", help="output folder (%(default)s)")
    parser.add_argument("--queries", type=int, default=20, help="wmd: queries (%(default)s)")
    parser.add_argument("-k", type=int, default=10, help="wmd: neighbours (%(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="wmd: LocalCluster sizes (%(default)s)")
    parser.add_argument("--points", type=int, default=3000,
                        help="sinkhorn: points per cloud (%(default)s)")
    parser.add_argument("--calibrate-points", type=int, default=1000,
                        help="sinkhorn: n at which the GPU row's passes are counted (%(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (%(default)s)")
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 2048],
                        help="ddp: global batches of the WGAN step (%(default)s)")
    parser.add_argument("--steps", type=int, default=20,
                        help="ddp: timed WGAN steps (%(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for part in args.part:
        print(f"{part}: {PARTS[part](args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
