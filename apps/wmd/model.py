"""``WMD``: Word Mover's Distance (Kusner et al., ICML 2015) on the ``wdist`` core.

``WMD(d, d') = min_{T >= 0, T 1 = d, T^T 1 = d'} sum_ij T_ij ||x_i - x_j||_2`` between the nBOW
weights ``d, d'`` of two documents, i.e. the 1-Wasserstein distance between their word clouds:
``wdist.emd(x, y, a, b, p=1)`` (exact, network simplex) or ``wdist.sinkhorn(..., p=1)`` (entropic,
batched over many pairs at once, padded documents masked by zero weights).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

import wdist
from wdist_apps.runtime import progress, resolve_device
from wdist_apps.wmd import bounds
from wdist_apps.wmd.embeddings import Embeddings
from wdist_apps.wmd.nbow import Documents, encode, fit_idf

DocLike = str | Sequence[str]
_METHODS = ("exact", "sinkhorn")
_KNN_METHODS = ("prune", "brute", "sinkhorn")


class _Table:
    """The (normalised) vectors of just the words the documents use, on one device."""

    def __init__(
        self,
        embeddings: Embeddings,
        docs: Sequence[Documents],
        normalize: bool,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.rows = np.unique(np.concatenate([d.ids for d in docs]))
        vec = np.asarray(embeddings.vectors[self.rows])
        if normalize:  # in the vectors' own dtype, exactly as gensim's get_vector(norm=True)
            norms = np.linalg.norm(vec, axis=1, keepdims=True)
            vec = vec / np.where(norms > 0, norms, 1).astype(vec.dtype)
        self.E = torch.as_tensor(vec, device=device).to(dtype)
        self._cpu64: torch.Tensor | None = None
        # every word-to-word distance is at most twice the largest norm (Sinkhorn's ε schedule)
        self.diameter = 2.0 * float(self.E.norm(dim=1).max()) if len(self.rows) else 1.0

    @property
    def cpu64(self) -> torch.Tensor:
        """``E`` as float64 on the CPU, where POT's exact solver runs (copied once)."""
        if self._cpu64 is None:
            self._cpu64 = self.E.detach().to("cpu", torch.float64)
        return self._cpu64

    def local(self, docs: Documents) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids [nnz], weights [nnz], indptr [N + 1])`` tensors, ``ids`` indexing ``self.E``."""
        dev = self.E.device
        return (
            torch.as_tensor(np.searchsorted(self.rows, docs.ids), device=dev),
            torch.as_tensor(docs.weights, device=dev).to(self.E.dtype),
            torch.as_tensor(docs.indptr, device=dev),
        )

    def padded(
        self, ids: torch.Tensor, w: torch.Tensor, indptr: torch.Tensor, which: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Documents ``which [B]`` as padded ``(vectors [B, L, dim], weights [B, L])``; padding
        has weight 0 (a mask for the batched solver)."""
        start, length = indptr[which], indptr[which + 1] - indptr[which]
        width = int(length.max())
        pos = torch.arange(width, device=ids.device)
        mask = pos[None, :] < length[:, None]
        flat = torch.where(mask, start[:, None] + pos[None, :], 0)
        return self.E[ids[flat]], torch.where(mask, w[flat], 0.0)


class WMD:
    """Word Mover's Distance between documents, with Kusner et al.'s bounds and k-NN search.

    Parameters
    ----------
    embeddings : Embeddings
        The word vectors (see :func:`wdist_apps.wmd.load_embeddings`).
    normalize : bool
        Scale every word vector to unit length first (as gensim's ``wmdistance`` does by
        default, ``norm=True``).
    idf : bool
        Weight word counts by idf (fitted with :meth:`fit`) before normalising the nBOW.
    lowercase, stop_words : bool
        Tokeniser settings for raw-text documents (token lists are used as given).
    device : str or torch.device
        Where bounds and Sinkhorn run ("auto", "cpu", "cuda"); exact WMD runs POT on the CPU.
    dtype : torch.dtype
        Floating dtype of the computations (float64 by default, float32 is faster on GPU).
    blur, debias, batch_size :
        Sinkhorn WMD settings: entropic blur (``eps = blur`` for p = 1), debiased divergence or not,
        and document pairs per batched call.

    Documents with no in-vocabulary word are rejected with a ``ValueError`` (gensim returns inf).
    """

    def __init__(
        self,
        embeddings: Embeddings,
        normalize: bool = True,
        idf: bool = False,
        lowercase: bool = True,
        stop_words: bool = True,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        blur: float = 0.01,
        debias: bool = False,
        batch_size: int = 256,
    ) -> None:
        if not isinstance(embeddings, Embeddings):
            raise TypeError(
                f"embeddings must be an wdist_apps.wmd.Embeddings, got {type(embeddings).__name__} "
                "(use load_embeddings(path) or Embeddings.from_keyedvectors(kv))"
            )
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if not isinstance(blur, (int, float)) or isinstance(blur, bool):
            raise TypeError(f"blur must be a float, got {type(blur).__name__}")
        if not blur > 0:
            raise ValueError(f"blur must be > 0, got {blur}")
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool):
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.embeddings = embeddings
        self.normalize = normalize
        self.idf = idf
        self.lowercase = lowercase
        self.stop_words = stop_words
        self.device = resolve_device(device)
        self.dtype = dtype
        self.blur = blur
        self.debias = debias
        self.batch_size = batch_size
        self.idf_: np.ndarray | None = None
        self.search_stats_: dict[str, int] = {}
        self._shards = None  # the last ShardedCorpus of knn(client=...)

    def __sklearn_clone__(self) -> WMD:
        """An unfitted WMD with the same settings for scikit-learn's ``clone``: it shares the
        (read-only) embedding table instead of deep-copying it, and has no idf weights."""
        return WMD(self.embeddings, normalize=self.normalize, idf=self.idf,
                   lowercase=self.lowercase, stop_words=self.stop_words, device=self.device,
                   dtype=self.dtype, blur=self.blur, debias=self.debias,
                   batch_size=self.batch_size)

    # ---------------------------------------------------------------- documents
    def fit(self, docs: Sequence[DocLike]) -> WMD:
        """Fit the idf weights on ``docs`` (needed, and only used, when ``idf=True``)."""
        if self.idf:
            self.idf_ = fit_idf(docs, self.embeddings, self.lowercase, self.stop_words)
        return self

    def transform(self, docs: Sequence[DocLike] | Documents) -> Documents:
        """nBOW :class:`Documents` of ``docs`` (raw texts are tokenised, token lists used as is)."""
        if isinstance(docs, Documents):
            return docs
        if self.idf and self.idf_ is None:
            raise ValueError("idf=True: call WMD.fit(corpus) first to fit the idf weights")
        return encode(docs, self.embeddings, self.idf_, self.lowercase, self.stop_words)

    def _prepare(self, *named: tuple[str, Sequence[DocLike] | Documents]):
        for name, d in named:
            _check_docs(d, name)
        docs = [self.transform(d) for _, d in named]
        for (name, _), d in zip(named, docs):
            d.check_not_empty(name)
        table = _Table(self.embeddings, docs, self.normalize, self.device, self.dtype)
        return docs, table

    # ---------------------------------------------------------------- exact and Sinkhorn WMD
    def _exact(self, table: _Table, A: Documents, i: int, B: Documents, j: int) -> float:
        """Exact WMD of ``A[i]`` and ``B[j]`` (:func:`exact_wmd` on their float64 vectors)."""
        ia, wa = A.doc(i)
        ib, wb = B.doc(j)
        E = table.cpu64
        x = E[torch.as_tensor(np.searchsorted(table.rows, ia))]
        y = E[torch.as_tensor(np.searchsorted(table.rows, ib))]
        return exact_wmd(x, wa, y, wb)

    def _sinkhorn(
        self,
        table: _Table,
        A: Documents,
        ia: np.ndarray,
        B: Documents,
        ib: np.ndarray,
        desc: str = "sinkhorn WMD",
    ) -> np.ndarray:
        """Sinkhorn WMD of the pairs ``(A[ia[t]], B[ib[t]])``, ``batch_size`` pairs per call."""
        a = table.local(A)
        b = table.local(B)
        out = np.empty(len(ia), dtype=np.float64)
        starts = range(0, len(ia), self.batch_size)
        for s in progress(starts, total=len(starts), desc=desc, unit="batch"):
            pa = torch.as_tensor(ia[s : s + self.batch_size], device=table.E.device)
            pb = torch.as_tensor(ib[s : s + self.batch_size], device=table.E.device)
            x, wx = table.padded(*a, pa)
            y, wy = table.padded(*b, pb)
            cost = wdist.sinkhorn(
                x, y, wx, wy, p=1, blur=self.blur, debias=self.debias, diameter=table.diameter,
                tol=None,  # the value only: the epsilon schedule, no polishing of the plan
            )
            out[s : s + len(pa)] = cost.detach().cpu().numpy()
        return out

    def distance(self, doc1: DocLike, doc2: DocLike, method: str = "exact") -> float:
        """WMD between two documents (``method="exact"`` or ``"sinkhorn"``)."""
        _check(method, _METHODS, "method")
        _check_doc(doc1, "doc1")
        _check_doc(doc2, "doc2")
        (A, B), table = self._prepare(("doc1", [doc1]), ("doc2", [doc2]))
        if method == "sinkhorn":
            return float(self._sinkhorn(table, A, np.zeros(1, int), B, np.zeros(1, int))[0])
        return self._exact(table, A, 0, B, 0)

    def paired(
        self,
        docs1: Sequence[DocLike] | Documents,
        docs2: Sequence[DocLike] | Documents,
        method: str = "exact",
    ) -> np.ndarray:
        """WMD between ``docs1[i]`` and ``docs2[i]`` for every ``i``: ``[N]`` (with
        ``method="sinkhorn"``, ``batch_size`` pairs per batched solver call)."""
        _check(method, _METHODS, "method")
        (A, B), table = self._prepare(("docs1", docs1), ("docs2", docs2))
        if len(A) != len(B):
            raise ValueError(f"docs1 has {len(A)} documents but docs2 has {len(B)}")
        idx = np.arange(len(A))
        if method == "sinkhorn":
            return self._sinkhorn(table, A, idx, B, idx)
        return np.array([self._exact(table, A, i, B, i) for i in idx])

    def flow(self, doc1: DocLike, doc2: DocLike) -> tuple[list[str], list[str], np.ndarray, float]:
        """The optimal transport plan behind the exact WMD: ``(words1, words2, plan, distance)``
        with ``plan [n1, n2]`` the mass moved from ``words1[i]`` to ``words2[j]``."""
        _check_doc(doc1, "doc1")
        _check_doc(doc2, "doc2")
        (A, B), table = self._prepare(("doc1", [doc1]), ("doc2", [doc2]))
        (ia, wa), (ib, wb) = A.doc(0), B.doc(0)
        E = table.cpu64
        cost, plan = wdist.emd(
            E[torch.as_tensor(np.searchsorted(table.rows, ia))],
            E[torch.as_tensor(np.searchsorted(table.rows, ib))],
            torch.as_tensor(wa),
            torch.as_tensor(wb),
            p=1,
            return_plan=True,
        )
        words = self.embeddings.words
        return [words[i] for i in ia], [words[i] for i in ib], plan.numpy(), float(cost)

    def pairwise(
        self,
        docs: Sequence[DocLike] | Documents,
        other: Sequence[DocLike] | Documents | None = None,
        method: str = "exact",
    ) -> np.ndarray:
        """All-pairs WMD ``[N, M]`` between ``docs`` and ``other`` (default: ``docs`` itself,
        computing each unordered pair once and 0 on the diagonal)."""
        _check(method, _METHODS, "method")
        symmetric = other is None
        if symmetric:
            (A,), table = self._prepare(("docs", docs))
            B = A
            ia, ib = np.triu_indices(len(A), k=1)
        else:
            (A, B), table = self._prepare(("docs", docs), ("other", other))
            ia, ib = (
                g.ravel() for g in np.meshgrid(np.arange(len(A)), np.arange(len(B)), indexing="ij")
            )
        if method == "sinkhorn":
            vals = self._sinkhorn(table, A, ia, B, ib)
        else:
            vals = np.array(
                [
                    self._exact(table, A, i, B, j)
                    for i, j in progress(zip(ia, ib), total=len(ia), desc="exact WMD", unit="pair")
                ]
            )
        out = np.zeros((len(A), len(B)))
        out[ia, ib] = vals
        if symmetric:
            out[ib, ia] = vals
        return out

    # ---------------------------------------------------------------- bounds and search
    def wcd(
        self, queries: Sequence[DocLike] | Documents, corpus: Sequence[DocLike] | Documents
    ) -> np.ndarray:
        """Word centroid distance ``[Q, N]`` (a lower bound on WMD)."""
        (Q, C), table = self._prepare(("queries", queries), ("corpus", corpus))
        return (
            bounds.word_centroid_distance(table.E, *table.local(Q), *table.local(C)).cpu().numpy()
        )

    def rwmd(
        self, queries: Sequence[DocLike] | Documents, corpus: Sequence[DocLike] | Documents
    ) -> np.ndarray:
        """Relaxed WMD ``[Q, N]`` (a lower bound on WMD, tighter than WCD)."""
        (Q, C), table = self._prepare(("queries", queries), ("corpus", corpus))
        return bounds.relaxed_wmd(table.E, *table.local(Q), *table.local(C)).cpu().numpy()

    def knn(
        self,
        queries: Sequence[DocLike] | Documents,
        corpus: Sequence[DocLike] | Documents,
        k: int = 10,
        method: str = "prune",
        tol: float | None = None,
        *,
        client: object | None = None,
        partitions: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest corpus documents of every query: ``(distances [Q, k], indices [Q, k])``
        sorted by (distance, index).

        ``method="prune"`` is Kusner et al.'s prefetch-and-prune: visit the corpus in increasing
        WCD order, compute exact WMD for the first ``k``, then skip a document whose RWMD exceeds
        the current k-th distance (and stop once WCD does); it returns exactly the neighbours of
        ``"brute"`` (exact WMD to every document). A bound prunes only when it exceeds the k-th
        distance by more than ``tol * (1 + d_k)``, which absorbs floating-point error (default
        ``1e-7`` when the bounds are computed in float64, ``1e-4`` in float32).
        ``"sinkhorn"`` ranks by batched Sinkhorn WMD (approximate). Counts of exact WMD
        evaluations and pruned documents are left in ``self.search_stats_``.

        ``client`` (a ``distributed.Client``): the corpus is split into ``partitions``
        (default: one per worker) held by the Dask workers, each searched with the same
        prefetch-and-prune and one bound shared by all (:mod:`wdist_apps.wmd.distributed`);
        the result is the same. The partitions of an encoded ``Documents`` corpus are kept for
        the next call with the same corpus object, so a batch of queries sends only itself.
        """
        _check(method, _KNN_METHODS, "method")
        if client is not None:
            return self._knn_sharded(queries, corpus, k, method, tol, client, partitions)
        if partitions is not None:
            raise ValueError("partitions is for a sharded search: pass client= too")
        (Q, C), table = self._prepare(("queries", queries), ("corpus", corpus))
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= len(C):
            raise ValueError(f"k must be an int in [1, {len(C)}] (the corpus size), got {k!r}")
        if method == "sinkhorn":
            ia, ib = (
                g.ravel() for g in np.meshgrid(np.arange(len(Q)), np.arange(len(C)), indexing="ij")
            )
            D = self._sinkhorn(table, Q, ia, C, ib).reshape(len(Q), len(C))
            order = np.lexsort((np.broadcast_to(np.arange(len(C)), D.shape), D), axis=-1)[:, :k]
            return np.take_along_axis(D, order, 1), order
        dist = np.empty((len(Q), k))
        ind = np.empty((len(Q), k), dtype=np.int64)
        stats = {"exact": 0, "pruned_rwmd": 0, "skipped_wcd": 0}
        if tol is None:
            tol = 1e-4 if self.dtype == torch.float32 else 1e-7
        c = table.local(C)
        block = max(1, (1 << 22) // len(C))  # queries whose bounds are held at once
        for qi in progress(range(len(Q)), total=len(Q), desc=f"{k}-NN WMD", unit="query"):
            if method == "brute":
                d = np.array([self._exact(table, Q, qi, C, j) for j in range(len(C))])
                stats["exact"] += len(C)
                top = np.lexsort((np.arange(len(C)), d))[:k]
                dist[qi], ind[qi] = d[top], top
                continue
            if qi % block == 0:
                q = table.local(Q.subset(range(qi, min(qi + block, len(Q)))))
                wcd = bounds.word_centroid_distance(table.E, *q, *c).cpu().numpy()
                rwmd = bounds.relaxed_wmd(table.E, *q, *c).cpu().numpy()
                wcd, rwmd = wcd.astype(np.float64), rwmd.astype(np.float64)
            row = qi % block
            visit = np.argsort(wcd[row], kind="stable")
            best: list[tuple[float, int]] = []
            for seen, j in enumerate(visit):
                if len(best) == k:
                    bar = best[-1][0] + tol * (1.0 + best[-1][0])
                    if wcd[row, j] > bar:
                        stats["skipped_wcd"] += len(C) - seen
                        break
                    if rwmd[row, j] > bar:
                        stats["pruned_rwmd"] += 1
                        continue
                best.append((self._exact(table, Q, qi, C, int(j)), int(j)))
                stats["exact"] += 1
                best.sort()
                del best[k:]
            dist[qi] = [b[0] for b in best]
            ind[qi] = [b[1] for b in best]
        self.search_stats_ = stats
        return dist, ind

    def _knn_sharded(self, queries, corpus, k, method, tol, client, partitions):
        """:meth:`knn` on a Dask cluster, reusing the last sharding when it is of ``corpus``."""
        from wdist_apps.wmd.distributed import ShardedCorpus

        if method not in ("prune", "brute"):
            raise ValueError(f"method must be 'prune' or 'brute' with client=, got {method!r}")
        shards = getattr(self, "_shards", None)
        if shards is None or not shards.matches(self, corpus, client, partitions):
            shards = ShardedCorpus(self, corpus, client, partitions=partitions)
            # only an encoded corpus is kept: a list of texts could change between calls
            self._shards = shards if isinstance(corpus, Documents) else None
        dist, ind = shards.knn(queries, k, method=method, tol=tol)
        self.search_stats_ = dict(shards.search_stats_)
        return dist, ind

    def kneighbors_classifier(
        self, n_neighbors: int = 5, method: str = "prune", client: object | None = None
    ):
        """A scikit-learn style k-NN classifier using this WMD (``fit(docs, y)``/``predict``);
        ``client``: search on a Dask cluster (see :meth:`knn`)."""
        from wdist_apps.wmd.classifier import WMDKNeighborsClassifier

        return WMDKNeighborsClassifier(self, n_neighbors=n_neighbors, method=method, client=client)


def exact_wmd(x: torch.Tensor, a: np.ndarray, y: torch.Tensor, b: np.ndarray) -> float:
    """Exact WMD between the word clouds ``x [n, dim]`` and ``y [m, dim]`` (float64, CPU) with
    nBOW weights ``a [n]`` and ``b [m]``: the Euclidean cost (exact differences) handed to POT's
    network simplex through ``wdist.emd_from_cost``, with the value checks off (the callers build
    valid inputs; the checks cost 60% of a 15 x 18 solve in the search's hot loop)."""
    cost = torch.cdist(x, y, compute_mode=bounds.EUCLID)
    with wdist.set_validation(False):
        return float(wdist.emd_from_cost(cost, torch.as_tensor(a), torch.as_tensor(b)))


def _check(value: str, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_doc(doc: object, name: str) -> None:
    """A document is a raw ``str`` or an iterable of ``str`` tokens (checked when tokenised)."""
    if not isinstance(doc, (str, Iterable)):
        raise TypeError(
            f"{name} must be a str (raw text) or a list of str tokens, got {type(doc).__name__}"
        )


def _check_docs(docs: object, name: str) -> None:
    """A batch of documents is :class:`Documents` or a collection of documents (not one str)."""
    if isinstance(docs, Documents):
        return
    if isinstance(docs, str) or not isinstance(docs, Iterable):
        raise TypeError(
            f"{name} must be a list of documents (each a str or a list of str tokens) or "
            f"Documents, got {type(docs).__name__}"
        )
    if isinstance(docs, Sequence):
        for i, doc in enumerate(docs):
            _check_doc(doc, f"{name}[{i}]")
