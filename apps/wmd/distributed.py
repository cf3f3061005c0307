"""Exact WMD k-NN over a corpus sharded on a Dask cluster (``dask.distributed``).

The corpus is cut into ``P`` contiguous partitions. Each partition is sent to one worker once,
together with the (normalised) vectors of exactly the words it uses, and stays there for every
later query batch. A query batch is sent to every worker once (``client.scatter(...,
broadcast=True)``) and searched as follows:

1. **prefetch**: every partition computes the WCD and RWMD lower bounds of every query against
   its documents (kept on its worker) and returns its ``k`` smallest RWMDs;
2. **seeds**: the client merges those into the global first ``k`` documents by RWMD and the
   partitions holding them solve their exact WMDs; the largest, ``U_q``, bounds the query's
   k-th neighbour distance over the *whole* corpus from above;
3. **candidates**: every partition returns the documents that neither bound rules out at
   ``U_q`` (``max(WCD, RWMD) <= U_q``, up to ``tol``), with their bounds;
4. **prune**: the client walks each query's merged candidates in increasing RWMD, ``k`` at a
   time: the ones that the *global* current k-th distance does not rule out are solved exactly
   on the workers that hold them, the k-th distance drops, and the walk stops at the first
   candidate whose RWMD exceeds it.

Every pruning decision uses the global k-th distance, so the number of exact solves does not
grow with ``P`` (partitions that each pruned with their own k-th distance would solve at least
``k`` documents apiece, with bars that fall more slowly). Visiting by RWMD rather than WCD, the
order of Kusner et al.'s one-process search, solves fewer documents still: both bounds are
computed for the whole corpus anyway, and RWMD is the tighter one. The top-k lists are merged by
(distance, global document index), which gives exactly the one-process result (brute force's
neighbours, ties broken by index). Round trips per query batch: 3 plus one per step of the walk
(``search_stats_["rounds"]``).

Example::

    from distributed import Client
    client = Client("tcp://scheduler:8786")          # or Client(LocalCluster(n_workers=2))
    dist, idx = wmd.knn(queries, corpus, k=10, client=client)
    sharded = ShardedCorpus(wmd, corpus, client)      # keep the partitions for many batches
    dist, idx = sharded.knn(queries, k=10)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from wdist_apps.wmd import bounds
from wdist_apps.wmd.model import WMD, DocLike, _check, _check_docs, _Table, exact_wmd
from wdist_apps.wmd.nbow import Documents

_STATS = ("exact", "pruned_rwmd", "skipped_wcd")


@dataclass
class _Part:
    """Documents whose ``ids`` index the rows of ``vectors`` ``[U, dim]`` (the normalised vectors
    of their own words, in the search dtype); ``offset`` is the global index of ``docs[0]``.
    Torch views are built once per process (``tensors``) and never pickled."""

    docs: Documents
    vectors: np.ndarray
    offset: int = 0
    device: str = "cpu"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, wmd: WMD, docs: Documents, offset: int = 0) -> _Part:
        table = _Table(wmd.embeddings, [docs], wmd.normalize, torch.device("cpu"), wmd.dtype)
        local = Documents(
            np.searchsorted(table.rows, docs.ids), docs.weights, docs.indptr, docs.n_tokens,
            docs.n_oov, docs.n_stop,
        )
        return cls(local, table.E.numpy(), offset, str(wmd.device))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": {}}

    @property
    def nbytes(self) -> int:
        d = self.docs
        return self.vectors.nbytes + d.ids.nbytes + d.weights.nbytes + d.indptr.nbytes

    def tensors(self) -> dict:
        """``E`` (device), ``E64`` (float64, CPU: the exact solver's), ``local`` (ids, weights,
        indptr on the device) and ``centroids`` (filled on first use)."""
        if not self._cache:
            dev = torch.device(self.device)
            vec = torch.as_tensor(np.require(self.vectors, requirements="W"))  # no read-only view
            E = vec.to(dev)
            self._cache.update(
                E=E,
                E64=vec.to(torch.float64),
                local=(
                    torch.as_tensor(self.docs.ids, device=dev),
                    torch.as_tensor(np.require(self.docs.weights, requirements="W"), device=dev)
                    .to(E.dtype),
                    torch.as_tensor(self.docs.indptr, device=dev),
                ),
                centroids=None,
            )
        return self._cache

    def solve(self, queries: _Part, qi: int, j: int) -> float:
        """Exact WMD of query ``qi`` and local document ``j``."""
        qa, wa = queries.docs.doc(qi)
        ca, wc = self.docs.doc(j)
        x = queries.tensors()["E64"][torch.as_tensor(qa)]
        return exact_wmd(x, wa, self.tensors()["E64"][torch.as_tensor(ca)], wc)


# ---------------------------------------------------------------- tasks (run on the workers)
def _bounds_task(part: _Part, queries: _Part) -> tuple[np.ndarray, np.ndarray]:
    """``(WCD [Q, n], RWMD [Q, n])`` in float64 of the queries against the partition."""
    t, q = part.tensors(), queries.tensors()
    if t["centroids"] is None:
        t["centroids"] = bounds.centroids(t["E"], *t["local"])
    wcd = torch.cdist(
        bounds.centroids(q["E"], *q["local"]), t["centroids"], compute_mode=bounds.EUCLID
    )
    rwmd = bounds.relaxed_wmd(t["E"], *q["local"], *t["local"], query_vectors=q["E"])
    return wcd.cpu().numpy().astype(np.float64), rwmd.cpu().numpy().astype(np.float64)


def _first_task(bnds: tuple[np.ndarray, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The partition's ``k`` smallest RWMDs per query, ``(values [Q, m], local index [Q, m])``,
    in (RWMD, index) order."""
    rwmd = bnds[1]
    order = np.argsort(rwmd, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(rwmd, order, 1), order


def _solve_task(part: _Part, queries: _Part, pairs: np.ndarray) -> np.ndarray:
    """Exact WMD of the ``(query, local document)`` rows of ``pairs [S, 2]``."""
    return np.array([part.solve(queries, int(qi), int(j)) for qi, j in pairs], dtype=np.float64)


def _candidates_task(
    bnds: tuple[np.ndarray, np.ndarray], bar: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per query, the local documents that neither bound rules out at ``bar [Q]``, as
    ``[c, 3]`` rows ``(RWMD, WCD, local index)`` sorted by (RWMD, index); and ``[Q, 2]`` counts
    of the documents ruled out by RWMD and (of the rest) by WCD."""
    wcd, rwmd = bnds
    out, ruled = [], np.empty((wcd.shape[0], 2), dtype=np.int64)
    for qi in range(wcd.shape[0]):
        by_rwmd = rwmd[qi] > bar[qi]
        by_wcd = ~by_rwmd & (wcd[qi] > bar[qi])
        j = np.flatnonzero(~by_rwmd & ~by_wcd)
        j = j[np.argsort(rwmd[qi, j], kind="stable")]
        out.append(np.column_stack([rwmd[qi, j], wcd[qi, j], j]))
        ruled[qi] = by_rwmd.sum(), by_wcd.sum()
    return out, ruled


def _brute_task(part: _Part, queries: _Part, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact WMD to every document of the partition: its top ``k`` per query (padded with
    ``inf`` / ``-1`` when it holds fewer) and the number of solves."""
    n_q, n = len(queries.docs), len(part.docs)
    dist = np.full((n_q, k), np.inf)
    ind = np.full((n_q, k), -1, dtype=np.int64)
    for qi in range(n_q):
        d = np.array([part.solve(queries, qi, j) for j in range(n)])
        top = np.lexsort((np.arange(n), d))[:k]
        dist[qi, : top.size], ind[qi, : top.size] = d[top], part.offset + top
    return dist, ind, n_q * n


# ---------------------------------------------------------------- the client side
def _distributed():
    import distributed  # the apps extra: dask[distributed]

    return distributed


def _merge(dists: list[np.ndarray], inds: list[np.ndarray], k: int):
    """The ``k`` best of the per-partition lists by (distance, global index)."""
    d, i = np.concatenate(dists, axis=1), np.concatenate(inds, axis=1)
    order = np.lexsort((i, d), axis=-1)[:, :k]
    return np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)


class ShardedCorpus:
    """A corpus split into partitions held by the workers of a Dask ``Client``, searched with
    exact prefetch-and-prune WMD k-NN (the steps are in the module docstring).

    Parameters
    ----------
    wmd : WMD
        Its embeddings, normalisation, idf weights, dtype and device (on the workers) are used.
    corpus : documents or Documents
        Documents with no in-vocabulary word are rejected (``ValueError``).
    client : distributed.Client
        Any client: of a ``LocalCluster`` or connected to a real scheduler. The workers need
        ``wdist[apps]`` installed (the tasks are this module's functions).
    partitions : int, optional
        Number of partitions (default: one per worker), placed round-robin on the workers.

    Each partition, with the vectors of the words it uses, is sent once (``bytes_sent``);
    :meth:`knn` sends only the query batch. ``search_stats_`` counts exact WMD solves (the
    seeds included), documents ruled out by RWMD (``pruned_rwmd``) and, of the rest, by WCD
    (``skipped_wcd``), the documents the seeds' bound left to the walk (``candidates``, sent
    to the client), the partitions and the client-worker round trips (``rounds``).
    """

    def __init__(
        self,
        wmd: WMD,
        corpus: Sequence[DocLike] | Documents,
        client: object,
        *,
        partitions: int | None = None,
    ) -> None:
        distributed = _distributed()
        if not isinstance(wmd, WMD):
            raise TypeError(f"wmd must be a WMD, got {type(wmd).__name__}")
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        _check_docs(corpus, "corpus")
        docs = wmd.transform(corpus)
        docs.check_not_empty("corpus")
        workers = list(client.scheduler_info()["workers"])
        if not workers:
            raise ValueError("client: the Dask cluster has no workers")
        n_parts = len(workers) if partitions is None else partitions
        if not isinstance(n_parts, (int, np.integer)) or isinstance(n_parts, bool):
            raise TypeError(f"partitions must be an int, got {type(n_parts).__name__}")
        if not 1 <= n_parts <= len(docs):
            raise ValueError(
                f"partitions must be in [1, {len(docs)}] (the corpus size), got {n_parts}"
            )
        self.wmd, self.client, self.source = wmd, client, corpus
        self.n_docs = len(docs)
        self._settings = _settings(wmd)
        cuts = np.linspace(0, len(docs), n_parts + 1).round().astype(np.int64)
        self.sizes = np.diff(cuts)
        self.parts = []
        self.bytes_sent = 0
        for p in range(n_parts):
            part = _Part.build(wmd, docs.subset(np.arange(cuts[p], cuts[p + 1])), int(cuts[p]))
            self.bytes_sent += part.nbytes
            where = [workers[p % len(workers)]]
            self.parts.append(client.scatter(part, workers=where, hash=False))
        self.search_stats_: dict[str, int] = {}

    def matches(
        self, wmd: WMD, corpus: object, client: object, partitions: int | None
    ) -> bool:
        """Whether this sharding is of ``corpus`` (the same object) by ``wmd`` as it is now."""
        return (
            corpus is self.source
            and client is self.client
            and wmd is self.wmd
            and _settings(wmd) == self._settings
            and partitions in (None, len(self.parts))
        )

    def knn(
        self,
        queries: Sequence[DocLike] | Documents,
        k: int = 10,
        *,
        method: str = "prune",
        tol: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(distances [Q, k], indices [Q, k])`` sorted by (distance, index), exactly as
        :meth:`WMD.knn` in one process (``method`` "prune" or "brute", ``tol`` as there)."""
        _check(method, ("prune", "brute"), "method")
        if _settings(self.wmd) != self._settings:
            raise ValueError(
                "the WMD's settings (idf weights, normalize, dtype, device) changed since the "
                "corpus was sharded: shard it again"
            )
        _check_docs(queries, "queries")
        Q = self.wmd.transform(queries)
        Q.check_not_empty("queries")
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= self.n_docs:
            raise ValueError(f"k must be an int in [1, {self.n_docs}] (the corpus size), got {k!r}")
        if tol is None:
            tol = 1e-4 if self.wmd.dtype == torch.float32 else 1e-7
        block = max(1, (1 << 22) // int(self.sizes.max()))  # bounds held per worker at once
        dist, ind = np.empty((len(Q), k)), np.empty((len(Q), k), dtype=np.int64)
        stats = dict.fromkeys((*_STATS, "candidates"), 0)
        self.rounds = 0  # client <-> workers round trips (gathers)
        for lo in range(0, len(Q), block):
            hi = min(lo + block, len(Q))
            batch = _Part.build(self.wmd, Q.subset(np.arange(lo, hi)))
            qf = self.client.scatter(batch, broadcast=True, hash=False)
            if method == "brute":
                futures = [
                    self.client.submit(_brute_task, p, qf, k, pure=False) for p in self.parts
                ]
                results = self.client.gather(futures)
                top = _merge([r[0] for r in results], [r[1] for r in results], k)
                dist[lo:hi], ind[lo:hi] = top
                stats["exact"] += sum(r[2] for r in results)
                self.rounds += 1
            else:
                dist[lo:hi], ind[lo:hi] = self._prune(qf, hi - lo, k, tol, stats)
        self.search_stats_ = {**stats, "partitions": len(self.parts), "rounds": self.rounds}
        return dist, ind

    def _prune(self, qf, n_q: int, k: int, tol: float, stats: dict[str, int]):
        """The pruned search of one query batch: ``(dist [Q, k], index [Q, k])``."""
        submit, gather = self.client.submit, self.client.gather
        offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        bnds = [submit(_bounds_task, p, qf, pure=False) for p in self.parts]
        # round 1: the first k documents by RWMD over all partitions, solved exactly
        firsts = gather([submit(_first_task, b, k, pure=False) for b in bnds])
        self.rounds += 1
        rw = np.concatenate([f[0] for f in firsts], axis=1)
        gid = np.concatenate([f[1] + offsets[p] for p, f in enumerate(firsts)], axis=1)
        seeds = np.take_along_axis(gid, np.lexsort((gid, rw), axis=-1)[:, :k], 1)
        pairs = np.column_stack([np.repeat(np.arange(n_q), k), seeds.ravel()])
        best = [[] for _ in range(n_q)]
        self._solve(qf, pairs, best, offsets, k)
        # round 2: every document that the k-th seed distance does not rule out
        bar = np.array([b[-1][0] + tol * (1.0 + b[-1][0]) for b in best])
        found = gather([submit(_candidates_task, b, bar, pure=False) for b in bnds])
        self.rounds += 1
        del bnds  # the bounds are no longer needed on the workers
        queue = []
        for qi in range(n_q):
            c = np.concatenate(
                [f[0][qi] + np.array([0.0, 0.0, offsets[p]]) for p, f in enumerate(found)]
            )
            c = c[np.lexsort((c[:, 2], c[:, 0]))]
            queue.append(c[~np.isin(c[:, 2], seeds[qi])])
        stats["candidates"] += k * n_q + sum(len(c) for c in queue)
        ruled = sum(f[1] for f in found)
        stats["pruned_rwmd"] += int(ruled[:, 0].sum())
        stats["skipped_wcd"] += int(ruled[:, 1].sum())
        stats["exact"] += seeds.size
        # then waves: each query's next k candidates in RWMD order that its current k-th
        # distance does not rule out, solved where they live, until none is left
        while True:
            wave = []
            for qi, c in enumerate(queue):
                d_k = best[qi][-1][0]
                alive = np.maximum(c[:, 0], c[:, 1]) <= d_k + tol * (1.0 + d_k)
                stats["pruned_rwmd"] += int((~alive & (c[:, 0] > d_k + tol * (1.0 + d_k))).sum())
                stats["skipped_wcd"] += int((~alive & (c[:, 0] <= d_k + tol * (1.0 + d_k))).sum())
                c = c[alive]
                wave += [(qi, int(j)) for j in c[:k, 2]]
                queue[qi] = c[k:]
            if not wave:
                break
            stats["exact"] += len(wave)
            self._solve(qf, np.array(wave), best, offsets, k)
        return (
            np.array([[d for d, _ in b] for b in best]),
            np.array([[j for _, j in b] for b in best], dtype=np.int64),
        )

    def _solve(self, qf, pairs: np.ndarray, best: list, offsets: np.ndarray, k: int) -> None:
        """Exact WMD of the ``(query, global id)`` rows of ``pairs``, each on the worker that
        holds the document, merged into the per-query top-k lists ``best`` (sorted)."""
        part_of = np.searchsorted(offsets, pairs[:, 1], side="right") - 1
        groups = [np.flatnonzero(part_of == p) for p in range(len(self.parts))]
        futures = [
            self.client.submit(
                _solve_task, self.parts[p], qf,
                np.column_stack([pairs[g, 0], pairs[g, 1] - offsets[p]]), pure=False,
            )
            for p, g in enumerate(groups) if g.size
        ]
        self.rounds += 1
        for g, dist in zip([g for g in groups if g.size], self.client.gather(futures)):
            for (qi, j), d in zip(pairs[g], dist):
                best[qi].append((float(d), int(j)))
        for b in best:
            b.sort()
            del b[k:]


def _settings(wmd: WMD) -> tuple:
    """What a sharding depends on besides the corpus: a changed one means shard again."""
    return (id(wmd.embeddings), id(wmd.idf_), wmd.normalize, wmd.dtype, str(wmd.device),
            wmd.lowercase, wmd.stop_words)


@contextlib.contextmanager
def open_client(scheduler: str) -> Iterator[object]:
    """A ``distributed.Client`` for ``scheduler``: ``"local:N"`` starts a ``LocalCluster`` of
    ``N`` worker processes (one thread each) and closes it on exit; anything else is a
    scheduler address (``tcp://host:8786``) to connect to."""
    distributed = _distributed()
    if not isinstance(scheduler, str) or not scheduler:
        raise ValueError(f"--scheduler must be ADDRESS or local:N, got {scheduler!r}")
    if scheduler.startswith("local:"):
        n = scheduler.removeprefix("local:")
        if not n.isdigit() or int(n) < 1:
            raise ValueError(
                f"--scheduler local:N needs N >= 1 worker processes, got {scheduler!r}"
            )
        with distributed.LocalCluster(
            n_workers=int(n), threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.CRITICAL,  # shutdown races log errors that mean nothing here
        ) as cluster, distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(scheduler)
    except OSError as err:
        raise ValueError(
            f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({err})"
        ) from err
    with client:
        yield client
