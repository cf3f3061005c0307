"""Kusner et al.'s lower bounds on WMD, for queries against a whole corpus in matrix form.

With ``X`` the (normalised) word vectors, ``d`` and ``d'`` two nBOW documents and
``c(i, j) = ||x_i - x_j||_2``:

- word centroid distance ``WCD(d, d') = ||X^T d - X^T d'||_2`` (eq. 4 of the paper);
- relaxed WMD ``RWMD(d, d') = max(l1, l2)`` with
  ``l1 = sum_i d_i min_{j: d'_j > 0} c(i, j)`` and ``l2 = sum_j d'_j min_{i: d_i > 0} c(i, j)``
  (each drops one of the two marginal constraints; section 4).

Both satisfy ``WCD <= RWMD <= WMD`` (Kusner et al., section 4). All tensors live on one device.
Inputs are padded: ``ids [N, L]`` rows of ``E`` (any valid row on padding), ``w [N, L]`` weights
(0 on padding), ``lengths [N]``.
"""

from __future__ import annotations

import torch

_EUCLID = "donot_use_mm_for_euclid_dist"  # exact differences, so 0 stays 0 for equal vectors


def centroids(
    E: torch.Tensor, ids: torch.Tensor, w: torch.Tensor, chunk: int = 4096
) -> torch.Tensor:
    """Weighted word centroids ``X^T d`` of documents ``(ids, w)``: ``[N, dim]``."""
    out = [
        torch.einsum("nl,nld->nd", w[s : s + chunk], E[ids[s : s + chunk]])
        for s in range(0, ids.shape[0], chunk)
    ]
    return torch.cat(out) if out else E.new_zeros((0, E.shape[1]))


def word_centroid_distance(
    E: torch.Tensor,
    q_ids: torch.Tensor,
    q_w: torch.Tensor,
    c_ids: torch.Tensor,
    c_w: torch.Tensor,
) -> torch.Tensor:
    """WCD between every query and every corpus document: ``[Q, N]``."""
    return torch.cdist(centroids(E, q_ids, q_w), centroids(E, c_ids, c_w), compute_mode=_EUCLID)


def relaxed_wmd(
    E: torch.Tensor,
    q_ids: torch.Tensor,
    q_w: torch.Tensor,
    q_len: torch.Tensor,
    c_ids: torch.Tensor,
    c_w: torch.Tensor,
    c_len: torch.Tensor,
    max_elements: int = 1 << 24,
) -> torch.Tensor:
    """RWMD between every query and every corpus document: ``[Q, N]``.

    Per query, the word-to-vocabulary distances ``[Lq, U]`` are computed once; the corpus side is
    processed in chunks of at most ``max_elements`` gathered distances.
    """
    n, width = c_ids.shape
    pad = torch.arange(width, device=c_ids.device)[None, :] >= c_len[:, None]  # [N, L]
    out = E.new_empty((q_ids.shape[0], n))
    for qi in range(q_ids.shape[0]):
        lq = int(q_len[qi])
        D = torch.cdist(E[q_ids[qi, :lq]], E, compute_mode=_EUCLID)  # [Lq, U]
        l1 = (c_w * D.min(0).values[c_ids]).sum(1)  # every corpus word to its nearest query word
        step = max(1, max_elements // max(1, lq * width))
        l2 = torch.cat(
            [
                q_w[qi, :lq]
                @ D[:, c_ids[s : s + step]].masked_fill(pad[s : s + step], float("inf")).amin(-1)
                for s in range(0, n, step)
            ]
        )
        out[qi] = torch.maximum(l1, l2)
    return out
