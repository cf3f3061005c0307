r"""Sinkhorn between point clouds sharded over the processes of a ``torch.distributed`` group.

Every rank holds a shard of the points of ``x`` (rows) and of ``y`` (columns), with their weights
and their potentials. The soft-min

.. math::
    f_i = -\varepsilon \log \sum_j \exp(h_j - C(x_i, y_j) / \varepsilon)

runs over *all* the ``y`` while each rank only holds its own rows ``x_i``: the shards of ``y``
(points and ``h``, ``d + 1`` numbers per point) are passed round a ring of the ranks, and each
rank folds every block into a streaming log-sum-exp of its rows (the single-process online
soft-min on that block, then ``logaddexp``), ring-attention style. The transfer of the next block
overlaps the work on the current one. Per rank and soft-min that is ``R - 1`` point-to-point
steps, ``(R - 1)/R * m * (d + 1)`` numbers received, ``n * m / R`` cost entries computed, and
memory ``O((n + m) / R + chunk)``: no rank ever holds all the points or an ``n x m`` block.

Why a ring and not SwAV's ``all_reduce`` (max, then sum): the ``all_reduce`` form needs every
rank to hold all the rows ``x`` (it reduces a partial log-sum-exp of every row over the rank's
own columns), so the points are replicated, O(n) memory per rank, and it sends two length-``n``
reductions per soft-min (ring all-reduce: ``4 (R - 1)/R * n`` numbers per rank), about what the
ring sends, but not overlapped with the compute. The ring keeps the memory at one shard.

The solver around the soft-mins is the single-process one (:func:`wdist.sinkhorn`'s online
strategy: the same ε-schedule, stopping rule and warning, extrapolation and dual value), with the
stopping test's maximum and the value's sums reduced over the ranks, so every rank runs the same
iterations and returns the same value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist

from wdist.sinkhorn import _online_softmin

__all__ = ["ring_softmin"]


class _Ring:
    """The ranks of a process group in a ring: shard ``r`` travels ``r -> r + 1 -> ...``."""

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        self.group = group if group is not None else dist.group.WORLD
        self.rank = dist.get_rank(self.group)
        self.size = dist.get_world_size(self.group)
        self.next = (self.rank + 1) % self.size
        self.prev = (self.rank - 1) % self.size

    def blocks(self, shard: torch.Tensor, sizes: Sequence[int]) -> Iterator[torch.Tensor]:
        """Every rank's shard ``[..., sizes[r], k]`` once, starting with this rank's own
        ``shard``: ``R`` blocks, the next one received while the caller works on the current.
        ``sizes[r]``: the number of points (dim -2) of rank ``r``'s shard; empty shards are not
        sent (every rank knows the sizes, so both ends skip them)."""
        cur = shard.contiguous()
        for step in range(self.size):
            ops, nxt = [], cur
            if step < self.size - 1:
                src = (self.rank - step - 1) % self.size  # whose shard arrives next
                if cur.shape[-2] > 0:
                    ops.append(dist.P2POp(dist.isend, cur, group=self.group, group_peer=self.next))
                nxt = cur.new_empty(*cur.shape[:-2], sizes[src], cur.shape[-1])
                if sizes[src] > 0:
                    ops.append(dist.P2POp(dist.irecv, nxt, group=self.group, group_peer=self.prev))
            requests = dist.batch_isend_irecv(ops) if ops else []
            yield cur
            for req in requests:
                req.wait()
            cur = nxt


def _fold(
    x: torch.Tensor, block: torch.Tensor, eps: float, p: float, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """One block ``[B, m_b, d + 1]`` (points, then ``h``): ``(y_b, h_b, no_mass [B, 1])``, where
    ``no_mass`` marks batch entries whose ``h_b`` is ``-inf`` everywhere (all weights zero in
    this block); None for an empty block or no rows."""
    if block.shape[-2] == 0 or x.shape[-2] == 0:
        return None
    y_b, h_b = block[..., :-1], block[..., -1]
    return y_b, h_b, torch.isneginf(h_b).all(-1, keepdim=True)


class _RingSoftmin(torch.autograd.Function):
    """``f [B, n_r]`` of this rank's rows ``x`` over every rank's ``(y, h)`` (see the module
    docstring). Differentiable in ``x`` only: the backward passes the blocks round again and
    adds each block's share, the single-process backward of that block with the gradient
    weighted by ``exp((f - f_block) / eps)`` (``f_block``, the soft-min over the block alone,
    is recomputed: the backward runs once per solve, so memory stays one block)."""

    @staticmethod
    def forward(ctx, x, y, h, eps: float, p: float, chunk: int, ring: _Ring, sizes):
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            raise NotImplementedError(
                "the distributed soft-min is differentiable in x only: pass y and h detached"
            )
        lse = x.new_full(x.shape[:-1], -math.inf)
        for block in ring.blocks(torch.cat([y, h.unsqueeze(-1)], -1), sizes):
            parts = _fold(x, block, eps, p, chunk)
            if parts is not None:
                y_b, h_b, no_mass = parts
                f_b = _online_softmin(x, y_b, p, chunk)(eps, h_b)
                lse = torch.logaddexp(lse, torch.where(no_mass, -math.inf, f_b / -eps))
        f = -eps * lse
        ctx.save_for_backward(x, y, h, f)
        ctx.args = eps, p, chunk, ring, sizes
        return f

    @staticmethod
    def backward(ctx, grad):
        x, y, h, f = ctx.saved_tensors
        eps, p, chunk, ring, sizes = ctx.args
        gx = torch.zeros_like(x)
        for block in ring.blocks(torch.cat([y, h.unsqueeze(-1)], -1), sizes):
            parts = _fold(x, block, eps, p, chunk)
            if parts is None:
                continue
            y_b, h_b, no_mass = parts
            with torch.enable_grad():
                xg = x.detach().requires_grad_()
                f_b = _online_softmin(xg, y_b, p, chunk)(eps, torch.where(no_mass, 0, h_b))
                share = torch.where(no_mass, 0, torch.exp((f - f_b.detach()) / eps))
                gx += torch.autograd.grad(f_b, xg, grad * share)[0]
        return gx, None, None, None, None, None, None, None


def shard_sizes(n: int, group: dist.ProcessGroup | None = None) -> list[int]:
    """Every rank's ``n`` (one ``all_gather`` of one integer)."""
    ring = _Ring(group)
    out = [None] * ring.size
    dist.all_gather_object(out, int(n), group=ring.group)
    return [int(v) for v in out]


def ring_softmin(
    x: torch.Tensor,
    y: torch.Tensor,
    h: torch.Tensor,
    eps: float,
    *,
    p: float = 2,
    chunk: int | None = None,
    group: dist.ProcessGroup | None = None,
    sizes: Sequence[int] | None = None,
) -> torch.Tensor:
    r"""Soft-min of this rank's rows over every rank's columns:
    :math:`f_i = -\varepsilon \log \sum_{j \in \text{all ranks}} e^{h_j - \|x_i - y_j\|^p /
    \varepsilon}`.

    Args:
        x: this rank's rows ``[B, n_r, d]`` (``n_r = 0`` allowed); gradients flow to it.
        y: this rank's columns ``[B, m_r, d]`` (``m_r = 0`` allowed), no gradient.
        h: this rank's ``[B, m_r]`` (``-inf`` for points without mass), no gradient.
        eps: temperature (> 0).  p: cost exponent.
        chunk: rows per block of the streaming log-sum-exp (default: the single-process one).
        group: the process group (default: the world).
        sizes: every rank's ``m_r``, if known (else one ``all_gather`` finds them).

    Returns:
        ``f [B, n_r]``, as ``-eps * torch.logsumexp(h_all - C(x, y_all) / eps, -1)`` on the
        concatenated columns. Every rank of ``group`` must call it (and, if any rank's ``x``
        requires a gradient, run the backward), in the same order.

    Example (on every rank, after ``dist.init_process_group``)::

        f = ring_softmin(x_shard, y_shard, torch.zeros(1, len(y_shard[0])), 0.1)
    """
    from wdist.sinkhorn import _chunk_size

    ring = _Ring(group)
    if sizes is None:
        sizes = shard_sizes(y.shape[-2], ring.group)
    if chunk is None:
        chunk = _chunk_size(x.shape[0], max(sizes), x.device)
    return _RingSoftmin.apply(x, y, h, eps, p, chunk, ring, list(sizes))

