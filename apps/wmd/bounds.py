"""Kusner et al.'s lower bounds on WMD, for queries against a whole corpus in matrix form.

With ``X`` the (normalised) word vectors, ``d`` and ``d'`` two nBOW documents and
``c(i, j) = ||x_i - x_j||_2``:

- word centroid distance ``WCD(d, d') = ||X^T d - X^T d'||_2`` (eq. 4 of the paper);
- relaxed WMD ``RWMD(d, d') = max(l1, l2)`` with
  ``l1 = sum_i d_i min_{j: d'_j > 0} c(i, j)`` and ``l2 = sum_j d'_j min_{i: d_i > 0} c(i, j)``
  (each drops one of the two marginal constraints; section 4).

Both are lower bounds on WMD (Kusner et al., section 4). RWMD is the tighter one on almost every
pair, but ``WCD <= RWMD`` is not a theorem (``tests/test_wmd_distance.py`` has a counterexample),
so the k-NN search prunes with each bound on its own. Documents come in the ragged layout of
:class:`wdist_apps.wmd.nbow.Documents` as tensors ``ids [nnz]`` (rows of ``E``), ``w [nnz]`` and
``indptr [N + 1]``, all on ``E``'s device.
"""

from __future__ import annotations

import torch

EUCLID = "donot_use_mm_for_euclid_dist"  # exact differences, so 0 stays 0 for equal vectors


def segments(indptr: torch.Tensor) -> torch.Tensor:
    """The document index of every stored word: ``[nnz]``."""
    n = indptr.shape[0] - 1
    return torch.repeat_interleave(torch.arange(n, device=indptr.device), indptr.diff())


def centroids(
    E: torch.Tensor, ids: torch.Tensor, w: torch.Tensor, indptr: torch.Tensor, chunk: int = 1 << 16
) -> torch.Tensor:
    """Weighted word centroids ``X^T d`` of the documents: ``[N, dim]``."""
    seg = segments(indptr)
    out = E.new_zeros((indptr.shape[0] - 1, E.shape[1]))
    for s in range(0, ids.shape[0], chunk):
        out.index_add_(0, seg[s : s + chunk], w[s : s + chunk, None] * E[ids[s : s + chunk]])
    return out


def word_centroid_distance(
    E: torch.Tensor,
    q_ids: torch.Tensor,
    q_w: torch.Tensor,
    q_indptr: torch.Tensor,
    c_ids: torch.Tensor,
    c_w: torch.Tensor,
    c_indptr: torch.Tensor,
) -> torch.Tensor:
    """WCD between every query and every corpus document: ``[Q, N]``."""
    return torch.cdist(
        centroids(E, q_ids, q_w, q_indptr), centroids(E, c_ids, c_w, c_indptr), compute_mode=EUCLID
    )


def relaxed_wmd(
    E: torch.Tensor,
    q_ids: torch.Tensor,
    q_w: torch.Tensor,
    q_indptr: torch.Tensor,
    c_ids: torch.Tensor,
    c_w: torch.Tensor,
    c_indptr: torch.Tensor,
    max_elements: int = 1 << 24,
    query_vectors: torch.Tensor | None = None,
) -> torch.Tensor:
    """RWMD between every query and every corpus document: ``[Q, N]``.

    Per query, the distances from its words to every word the corpus uses (``[Lq, U]``) are
    computed once; the corpus side is then processed in chunks of at most ``max_elements``
    gathered distances, with segment reductions (no padding). ``query_vectors``: a separate
    table that ``q_ids`` index (default ``E``), so a corpus shard's table need not hold the
    queries' words.
    """
    Eq = E if query_vectors is None else query_vectors
    n = c_indptr.shape[0] - 1
    seg = segments(c_indptr)
    out = E.new_empty((q_indptr.shape[0] - 1, n))
    bounds = q_indptr.tolist()
    for qi in range(len(bounds) - 1):
        rows = q_ids[bounds[qi] : bounds[qi + 1]]
        weights = q_w[bounds[qi] : bounds[qi + 1]]
        D = torch.cdist(Eq[rows], E, compute_mode=EUCLID)  # [Lq, U]
        # l1: every corpus word to its nearest query word
        l1 = E.new_zeros(n).index_add_(0, seg, c_w * D.min(0).values[c_ids])
        # l2: every query word to its nearest word of each corpus document
        step = max(1, max_elements // rows.shape[0])
        l2 = E.new_empty(n)
        d0 = 0
        while d0 < n:
            lo = int(c_indptr[d0])
            d1 = int(torch.searchsorted(c_indptr, lo + step, right=True)) - 1
            d1 = min(max(d1, d0 + 1), n)
            hi = int(c_indptr[d1])
            near = D.new_full((rows.shape[0], d1 - d0), float("inf"))
            index = (seg[lo:hi] - d0).expand(rows.shape[0], -1)
            near.scatter_reduce_(1, index, D[:, c_ids[lo:hi]], reduce="amin")
            l2[d0:d1] = weights @ near
            d0 = d1
        out[qi] = torch.maximum(l1, l2)
    return out
