"""Scaling out: one process against several, measured here, and a cost model beyond this box.

    python benchmarks/scale.py --part wmd        # WMD k-NN on a Dask LocalCluster (~2 min)

Parts (``--part``, repeatable; each writes ``<out>/<part>.{md,json}``):

- ``wmd``: exact 10-NN of Lee news sentences among the other 2,7xx (word2vec trained on gensim's
  bundled text), in one process (``WMD.knn``) and on a Dask ``LocalCluster`` of 1 and 2 worker
  processes (``WMD.knn(client=...)``): wall and CPU seconds per process, resident memory per
  process, exact WMD solves, bytes sent, round trips; the neighbours must be identical. Then
  the unit costs (bounds per query-document pair, one exact solve, a Dask round trip, loopback
  bandwidth) and the exact solves per query at four corpus sizes (a power law fitted to them)
  feed a model of time per query batch, communication against compute and memory per worker,
  for 10^4 to 10^7 documents and 1 to 128 workers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wdist_apps.runtime.machine import machine_info, markdown_header, versions  # noqa: E402

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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "wmd.json").write_text(json.dumps(payload, indent=1))
    md = out / "wmd.md"
    md.write_text(_report(payload) + "\n")
    return md


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


PARTS = {"wmd": run_wmd}  # sharded Sinkhorn and the DDP WGAN step join here


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=sorted(PARTS), action="append", required=True)
    parser.add_argument("--out", default="results/scale", help="output folder (%(default)s)")
    parser.add_argument("--queries", type=int, default=20, help="wmd: queries (%(default)s)")
    parser.add_argument("-k", type=int, default=10, help="wmd: neighbours (%(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="wmd: LocalCluster sizes (%(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (%(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for part in args.part:
        print(f"{part}: {PARTS[part](args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
