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
from typing import Any

import torch
import torch.distributed as dist

from wdist._checks import as_tensor, check_cost_range, check_p, check_positive
from wdist.sinkhorn.api import _check_common
from wdist.sinkhorn.loops import Softmin, epsilon_schedule, extrapolate_step, log_sinkhorn
from wdist.sinkhorn.online import _online_softmin, chunk_size
from wdist.sinkhorn.problem import Settings, point_problems
from wdist.sinkhorn.value import dual_value

__all__ = ["ring_softmin", "sinkhorn"]


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
    ring = _Ring(group)
    if sizes is None:
        sizes = shard_sizes(y.shape[-2], ring.group)
    if chunk is None:
        chunk = chunk_size(x.shape[0], max(sizes), x.device)
    return _RingSoftmin.apply(x, y, h, eps, p, chunk, ring, list(sizes))


class _SumOverRanks(torch.autograd.Function):
    """``all_reduce`` sum with the gradient of a sum over ranks. ``per_rank=False``: a value
    that every rank holds and differentiates alike (the cost), so each rank's backward gives
    its own share's gradient: the identity (``torch.distributed.nn``'s ``all_reduce`` would sum
    the ranks' equal gradients, R times too much). ``per_rank=True``: a total that each rank
    uses in its own way (the mass that normalises its weights): the ranks' gradients add up."""

    @staticmethod
    def forward(ctx, t, group, per_rank: bool):
        ctx.group, ctx.per_rank = group, per_rank
        out = t.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        if ctx.per_rank:
            grad = grad.clone()
            dist.all_reduce(grad, group=ctx.group)
        return grad, None, None


def _all_max(t: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX, group=group)
    return out


def _all_sum(t: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    out = t.detach().clone()
    dist.all_reduce(out, group=group)
    return out


def _points(v: Any, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """A shard ``[n_r, d]`` or ``[B, n_r, d]`` (``[n_r]``: ``d = 1``); ``n_r = 0`` is allowed."""
    v = as_tensor(v, name, like=like)
    if v.dim() == 1:
        v = v[:, None]
    if v.dim() not in (2, 3) or v.shape[-1] == 0 or (v.dim() == 3 and v.shape[0] == 0):
        raise ValueError(f"{name} must have shape [n, d] or [B, n, d], got {tuple(v.shape)}")
    return v


def _shard_weights(w: Any, name: str, pts: torch.Tensor) -> torch.Tensor | None:
    """This rank's weights ``[(B,) n_r]``, non-negative (not yet normalised), or None."""
    if w is None:
        return None
    w = as_tensor(w, name, like=pts)
    if tuple(w.shape) != tuple(pts.shape[:-1]):
        raise ValueError(f"{name} must have shape {list(pts.shape[:-1])}, got {list(w.shape)}")
    if bool((w < 0).any()):
        raise ValueError(f"{name} has negative entries: weights must be >= 0")
    return w


def _agree(local: dict, group: dist.ProcessGroup) -> list[dict]:
    """Every rank's ``local`` facts (one ``all_gather_object``). A rank's input error is raised
    on every rank (else the others would wait for it forever), as are options, shapes, dtypes
    or ``requires_grad`` flags that differ between ranks."""
    facts: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(facts, local, group=group)
    for rank, fact in enumerate(facts):
        if fact.get("error"):
            kind, msg = fact["error"]
            raise (TypeError if kind == "TypeError" else ValueError)(f"rank {rank}: {msg}")
    for key in ("options", "layout", "grad"):
        values = [fact[key] for fact in facts]
        if any(v != values[0] for v in values):
            raise ValueError(
                f"every rank must pass the same {key} (the solve is collective), got "
                + ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            )
    return facts


def sinkhorn(
    x: Any,
    y: Any,
    a: Any = None,
    b: Any = None,
    *,
    group: dist.ProcessGroup | None = None,
    p: float = 2,
    blur: float = 0.05,
    debias: bool = True,
    scaling: float = 0.9,
    reach: float | None = None,
    diameter: float | None = None,
    tol: float | None = 1e-3,
    max_iter: int = 1000,
    return_potentials: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    r""":func:`wdist.sinkhorn` on point clouds sharded over the ranks of a process group.

    Every rank passes its shard of the points of ``x`` and ``y`` (uneven shards, empty on some
    ranks, are fine) and their weights, and gets the value of :func:`wdist.sinkhorn` (online
    strategy) on the concatenated clouds, ``x = cat(x_0, ..., x_{R-1})`` in rank order: the
    entropic OT cost :math:`\mathrm{OT}_\varepsilon` or the Sinkhorn divergence
    :math:`S_\varepsilon = \mathrm{OT}_\varepsilon(a, b) - \tfrac12 \mathrm{OT}_\varepsilon(a, a)
    - \tfrac12 \mathrm{OT}_\varepsilon(b, b)`, balanced or unbalanced (``reach``). The soft-mins
    pass the shards round a ring of the ranks (module docstring): per rank and iteration
    ``O(n m / R)`` work, ``O((n + m)(d + 1))`` numbers received, ``O((n + m) / R + chunk)``
    memory. Works on any backend with point-to-point ops: NCCL for CUDA tensors (call
    ``torch.cuda.set_device(local_rank)`` first), gloo for CPU tensors.

    Args:
        x: this rank's points ``[n_r, d]`` or ``[B, n_r, d]`` (``n_r = 0`` allowed).
        y: this rank's points ``[m_r, d]`` or ``[B, m_r, d]``.
        a, b: this rank's non-negative weights ``[(B,) n_r]``, ``[(B,) m_r]``; None (on every
            rank): uniform over all the points. As in :func:`wdist.sinkhorn`, balanced OT
            normalises them by their total over all the ranks, unbalanced OT keeps their mass.
        group: the process group (default: the world).
        p, blur, debias, scaling, reach, diameter, tol, max_iter: as in :func:`wdist.sinkhorn`;
            they must be the same on every rank.
        return_potentials: also return this rank's potentials ``f [(B,) n_r]``, ``g [(B,)
            m_r]``.

    Returns:
        the cost ``[]`` (or ``[B]``), the same on every rank; then ``f, g`` if asked.
        Gradients flow to this rank's ``x``, ``y``, ``a`` and ``b``: they are the single-process
        gradients of the value restricted to this shard. The backward is collective too: if
        one rank's input requires a gradient, the same one must on every rank, and every rank
        calls ``backward`` on the value.

    Example (``torchrun --nproc-per-node 2 script.py``)::

        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        torch.manual_seed(0)                        # the same clouds on every rank, here
        x = torch.randn(10_000, 3)[rank::world]     # this rank's shard
        y = torch.randn(12_000, 3)[rank::world] + 1
        loss = wdist.distributed.sinkhorn(x, y, blur=0.05)
    """
    ring = _Ring(group)
    group = ring.group
    local: dict[str, Any] = {}
    try:
        p = check_p(p)
        check_positive(blur, "blur")
        check_positive(reach, "reach", allow_none=True)
        check_positive(diameter, "diameter", allow_none=True)
        max_iter = _check_common(scaling, tol, max_iter, debias)
        if not isinstance(return_potentials, bool):
            raise TypeError(f"return_potentials must be True or False, got {return_potentials!r}")
        x = _points(x, "x")
        y = _points(y, "y", like=x)
        if y.dim() != x.dim() or (x.dim() == 3 and x.shape[0] != y.shape[0]):
            raise ValueError(
                "x and y must both be [n, d] or both [B, n, d] with the same B, got shapes "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        a, b = _shard_weights(a, "a", x), _shard_weights(b, "b", y)
    except (TypeError, ValueError) as err:
        local["error"] = (type(err).__name__, str(err))
    else:
        batched = x.dim() == 3
        local["options"] = (p, blur, debias, scaling, reach, diameter, tol, max_iter)
        local["layout"] = (
            batched, x.shape[0] if batched else 1, x.shape[-1], y.shape[-1], str(x.dtype),
            x.device.type, a is None, b is None,
        )
        grad_on = torch.is_grad_enabled()
        local["grad"] = tuple(grad_on and t is not None and t.requires_grad for t in (x, y, a, b))
        local["sizes"] = (x.shape[-2], y.shape[-2])
    facts = _agree(local, group)
    batched, bsz, d, d_y = facts[0]["layout"][:4]
    if d != d_y:
        raise ValueError(f"x and y must have the same number of features, got {d} and {d_y}")
    sizes_x = [fact["sizes"][0] for fact in facts]
    sizes_y = [fact["sizes"][1] for fact in facts]
    if not sum(sizes_x) or not sum(sizes_y):
        raise ValueError("x and y need at least one point (on some rank); got none")
    if not batched:
        x, y = x[None], y[None]
        a, b = (w if w is None else w[None] for w in (a, b))
    needs_grad = any(local["grad"])
    # as wdist.sinkhorn: balanced OT normalises the weights, unbalanced keeps their masses
    (a, wa), (b, wb) = (
        _weights(w, pts, total, name, reach is None, group)
        for w, pts, total, name in ((a, x, sum(sizes_x), "a"), (b, y, sum(sizes_y), "b"))
    )

    # the single-process preparation, with the sums and extremes taken over the ranks
    sums = _all_sum(
        torch.stack([(wa.unsqueeze(-1) * x).sum(-2), (wb.unsqueeze(-1) * y).sum(-2)]), group
    )
    centre = 0.5 * (sums[0] + sums[1])
    x, y = x - centre.unsqueeze(-2), y - centre.unsqueeze(-2)
    spread = _spread(x, y, group)
    check_cost_range(spread, p, x.dtype)
    settings = Settings(
        p=p, blur=blur, scaling=scaling, rho=None if reach is None else reach**p, tol=tol,
        max_iter=max_iter, diameter=diameter, spread=spread,
    )
    solved = _solve(point_problems(x, y, a, b, p, debias), sizes_x, sizes_y, settings,
                    needs_grad, ring)

    def dot(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return _SumOverRanks.apply((w * v).sum(-1), group, False)

    cost = dual_value(a, b, solved, settings.eps, settings.rho, dot=dot)
    outputs = [cost if batched else cost[0]]
    if return_potentials:
        f, g = solved[0]
        outputs += [f, g] if batched else [f[0], g[0]]
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _solve(
    problems: list,
    sizes_x: list[int],
    sizes_y: list[int],
    settings: Settings,
    needs_grad: bool,
    ring: _Ring,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The online strategy of ``wdist.sinkhorn`` (its ε-schedule, loop, stopping rule and last
    extrapolation) on ring soft-mins, with the stopping test's move taken over the ranks.
    ``problems``: ``point_problems``' ``OT(a, b)``, then ``OT(a, a)``, ``OT(b, b)``."""
    p, blur = settings.p, float(settings.blur)
    sizes = [(sizes_x, sizes_y), (sizes_x, sizes_x), (sizes_y, sizes_y)]
    chunk = chunk_size(problems[0].a.shape[0], max(sizes_x + sizes_y), problems[0].x.device)

    def softmin(u: torch.Tensor, v: torch.Tensor, v_sizes: list[int]) -> Softmin:
        # differentiable in its rows only (GeomLoss's convention, as in wdist.sinkhorn)
        def sm(eps: float, h: torch.Tensor) -> torch.Tensor:
            return _RingSoftmin.apply(u, v.detach(), h, eps, p, chunk, ring, v_sizes)

        return sm

    def max_move(new: torch.Tensor, old: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        move = torch.where(w > 0, (new - old).abs(), 0)
        return _all_max(move.max() if move.numel() else move.new_zeros(()), ring.group)

    eps_list = epsilon_schedule(
        p, float(settings.diameter or settings.spread or blur), blur, float(settings.scaling)
    )
    max_iter = settings.max_iter if settings.tol is not None else 0
    solved, softmins = [], []
    with torch.no_grad():
        for pb, (su, sv) in zip(problems, sizes):
            sm_xy = softmin(pb.x, pb.y, sv)
            sm_yx = None if pb.sym else softmin(pb.y, pb.x, su)
            softmins.append((sm_xy, sm_yx))
            solved.append(log_sinkhorn(
                sm_xy, sm_yx, pb.a, pb.b, eps_list, settings.damping, settings.tol, max_iter,
                extrapolate=not needs_grad, max_move=max_move,
            ))
    if needs_grad:  # the last extrapolation, with autograd on
        eps = settings.eps
        for i, pb in enumerate(problems):
            solved[i] = extrapolate_step(
                *softmins[i], pb.a.detach(), pb.b.detach(), *solved[i], eps,
                settings.damping(eps),
            )
    return solved


def _weights(
    w: torch.Tensor | None, pts: torch.Tensor, total: int, name: str, normalize: bool,
    group: dist.ProcessGroup,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weights, weights normalised to 1)`` over all the ranks; ``normalize``: the first is
    the second. None: uniform ``1 / total``. The total mass is an ``all_reduce`` that carries
    the normalisation's gradient to every rank."""
    if w is None:
        w = pts.new_full(pts.shape[:-1], 1.0 / total)
        return w, w
    mass = _SumOverRanks.apply(w.sum(-1, keepdim=True), group, True)
    if bool((mass <= 0).any()):
        raise ValueError(f"{name} has zero total mass: weights must sum to a positive number")
    unit = w / mass
    return (unit if normalize else w), unit


def _spread(x: torch.Tensor, y: torch.Tensor, group: dist.ProcessGroup) -> float:
    """``point_spread`` of all the ranks' points: the diagonal of their bounding box."""
    pts = torch.cat([x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])])
    if len(pts):
        lo, hi = torch.aminmax(pts.detach(), dim=0)
    else:
        lo = hi = pts.new_full(pts.shape[-1:], math.nan)
    box = _all_max(torch.stack([-lo, hi]).nan_to_num(-math.inf), group)
    return float((box[1].double() + box[0].double()).norm())
