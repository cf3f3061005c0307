r"""Entropic optimal transport: log-domain Sinkhorn with ε-scaling, and the Sinkhorn divergence.

Two strategies compute the same iterations (GeomLoss's symmetric scheme, Feydy et al. 2019):

- ``dense``: stores the cost matrices ``C_xy [B, n, m]`` (and ``C_xx``, ``C_yy`` when debiased);
  fastest while they fit in memory.
- ``online``: never stores an ``n x m`` matrix; each soft-min recomputes the costs in row chunks and
  reduces them with a streaming log-sum-exp, and a custom backward does the same. Memory grows as
  O(n + m) (times the chunk size).

Gradients follow the envelope theorem: the loop runs without autograd, and one last extrapolation
step at the final ε carries the gradient to ``x``, ``y``, ``a`` and ``b``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from wdist._checks import (
    as_tensor,
    check_p,
    check_points,
    check_positive,
    check_same_dim,
    check_weights,
)
from wdist._cost import cost_matrix

Softmin = Callable[[float, torch.Tensor], torch.Tensor]


def _safe_log(w: torch.Tensor) -> torch.Tensor:
    """``log w`` with ``-inf`` for zero weights (padding masks) and no NaN in the gradient."""
    pos = w > 0
    return torch.where(pos, torch.log(torch.where(pos, w, torch.ones_like(w))), -math.inf)


def epsilon_schedule(p: float, diameter: float, blur: float, scaling: float) -> list[float]:
    """ε-scaling: ``diameter^p``, down by a factor ``scaling^p`` per iteration, to ``blur^p``."""
    if diameter <= blur:
        return [blur**p]
    steps = int(math.floor(math.log(blur / diameter) / math.log(scaling)))
    return [diameter**p] + [(diameter * scaling**k) ** p for k in range(1, steps + 1)] + [blur**p]


def _dense_softmin(cost: torch.Tensor) -> Softmin:
    """``f_i = -eps log sum_j exp(h_j - C_ij / eps)`` for a stored ``C [B, n, m]``."""

    def softmin(eps: float, h: torch.Tensor) -> torch.Tensor:
        return -eps * torch.logsumexp(h.unsqueeze(-2) - cost / eps, dim=-1)

    return softmin


class _OnlineSoftmin(torch.autograd.Function):
    """Streaming soft-min over row chunks; backward recomputes the chunks (O(n + m) memory)."""

    @staticmethod
    def forward(ctx, x, y, h, eps: float, p: float, chunk: int):
        out = torch.empty(x.shape[:-1], dtype=x.dtype, device=x.device)
        for s in range(0, x.shape[-2], chunk):
            c = cost_matrix(x[..., s : s + chunk, :], y, p)
            out[..., s : s + chunk] = -eps * torch.logsumexp(h.unsqueeze(-2) - c / eps, dim=-1)
        ctx.save_for_backward(x, y, h, out)
        ctx.eps, ctx.p, ctx.chunk = eps, p, chunk
        return out

    @staticmethod
    def backward(ctx, grad):
        x, y, h, out = ctx.saved_tensors
        eps, p, chunk = ctx.eps, ctx.p, ctx.chunk
        need_x, need_y, need_h = ctx.needs_input_grad[:3]
        gx = torch.zeros_like(x) if need_x else None
        gy = torch.zeros_like(y) if need_y else None
        gh = torch.zeros_like(h) if need_h else None
        for s in range(0, x.shape[-2], chunk):
            xc = x[..., s : s + chunk, :]
            c = cost_matrix(xc, y, p)
            # P_ij = exp(h_j - C_ij/eps + f_i/eps): rows sum to one; dF/dC_ij = G_i P_ij
            w = torch.exp(h.unsqueeze(-2) - c / eps + out[..., s : s + chunk, None] / eps)
            w = w * grad[..., s : s + chunk, None]
            if need_h:
                gh -= eps * w.sum(-2)
            if need_x or need_y:
                if p == 2:
                    k = 2 * w
                else:
                    dist = c.pow(1 / p) if p != 1 else c
                    k = torch.where(dist > 0, p * w * dist.clamp_min(1e-30).pow(p - 2), 0)
                if need_x:
                    gx[..., s : s + chunk, :] = xc * k.sum(-1, keepdim=True) - k @ y
                if need_y:
                    gy += y * k.sum(-2).unsqueeze(-1) - k.transpose(-1, -2) @ xc
        return gx, gy, gh, None, None, None


def _max_move(new: torch.Tensor, old: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Largest change of a potential over the points that carry mass."""
    return torch.where(w > 0, (new - old).abs(), 0).max()


def _online_softmin(x: torch.Tensor, y: torch.Tensor, p: float, chunk: int) -> Softmin:
    def softmin(eps: float, h: torch.Tensor) -> torch.Tensor:
        return _OnlineSoftmin.apply(x, y, h, eps, p, chunk)

    return softmin


def _chunk_size(batch: int, m: int, device: torch.device) -> int:
    budget = 2**28 if device.type == "cuda" else 2**23  # elements per [B, chunk, m] block
    return max(1, min(65536, budget // max(1, batch * m)))


def sinkhorn(
    x: Any,
    y: Any,
    a: Any = None,
    b: Any = None,
    p: float = 2,
    blur: float = 0.05,
    debias: bool = True,
    scaling: float = 0.9,
    reach: float | None = None,
    diameter: float | None = None,
    tol: float | None = 1e-3,
    max_iter: int = 100,
    backend: str = "auto",
    return_plan: bool = False,
    return_potentials: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    r"""Entropic OT cost, or the debiased Sinkhorn divergence, between weighted point clouds.

    With ground cost :math:`C_{ij} = \|x_i - y_j\|^p` and :math:`\varepsilon = \text{blur}^p`,

    .. math::
        \mathrm{OT}_\varepsilon(a, b) = \min_{P \in U(a, b)} \langle P, C \rangle
            + \varepsilon\, \mathrm{KL}(P \,\|\, a \otimes b), \qquad
        S_\varepsilon = \mathrm{OT}_\varepsilon(a, b)
            - \tfrac12 \mathrm{OT}_\varepsilon(a, a) - \tfrac12 \mathrm{OT}_\varepsilon(b, b).

    Both tend to :math:`W_p^p` as blur -> 0. ``debias=True`` returns :math:`S_\varepsilon`
    (0 for identical inputs, never negative), else :math:`\mathrm{OT}_\varepsilon` in its dual
    form :math:`\langle a, f \rangle + \langle b, g \rangle`. With ``reach`` set, the marginal
    constraints are relaxed to :math:`\rho\,\mathrm{KL}` penalties,
    :math:`\rho = \text{reach}^p` (unbalanced OT). Solver: log-domain, symmetric Sinkhorn
    updates under ε-scaling from ``diameter^p`` down to ``blur^p`` by factors ``scaling^p``
    (GeomLoss's scheme).

    Args:
        x: ``[n, d]`` or ``[B, n, d]`` points.  y: ``[m, d]`` or ``[B, m, d]``.
        a, b: non-negative weights ``[(B,) n]``, ``[(B,) m]`` (uniform if None), normalised to 1;
            zeros are allowed (use them to mask padded points in a batch).
        p: ground cost exponent (>= 1).  blur: length scale of the entropic blur (> 0).
        debias: return the Sinkhorn divergence :math:`S_\varepsilon` instead of
            :math:`\mathrm{OT}_\varepsilon`.
        scaling: ε-scaling ratio in (0, 1); closer to 1 = more iterations, more accuracy.
        reach: unbalanced OT length scale (None: balanced).
        diameter: upper bound on the point distances (default: from the bounding box).
        tol: after the ε schedule, keep iterating at the final ε until the potentials move less
            than ``tol * ε`` (a relative marginal error of about ``tol``); None stops right after
            the schedule (GeomLoss's behaviour: fast, accurate value, less accurate plan).
        max_iter: cap on those extra iterations.
        backend: ``"dense"``, ``"online"`` (O(n + m) memory) or ``"auto"``.
        return_plan: also return the plan
            :math:`P_{ij} = a_i b_j e^{(f_i + g_j - C_{ij})/\varepsilon}` of
            :math:`\mathrm{OT}_\varepsilon` (dense backend only).
        return_potentials: also return the dual potentials ``f [(B,) n]``, ``g [(B,) m]``.

    Returns:
        cost of shape ``[]`` (or ``[B]``); then ``plan`` if asked, then ``f, g`` if asked.
    """
    p = check_p(p)
    check_positive(blur, "blur")
    check_positive(reach, "reach", allow_none=True)
    if not isinstance(scaling, (int, float)) or not 0 < scaling < 1:
        raise ValueError(f"scaling must be in (0, 1), got {scaling!r}")
    if backend not in ("auto", "dense", "online"):
        raise ValueError(f"backend must be 'auto', 'dense' or 'online', got {backend!r}")
    x = as_tensor(x, "x")
    y = as_tensor(y, "y", like=x)
    batched = x.dim() == 3
    x = check_points(x, "x", batched=True)
    y = check_points(y, "y", batched=True)
    if (y.dim() == 3) != batched:
        raise ValueError(
            f"x and y must both be batched [B, n, d] or not, got {x.dim()}-D and {y.dim()}-D"
        )
    check_same_dim(x, y)
    if not batched:
        x, y = x[None], y[None]
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}"
        )
    bsz, n, m = x.shape[0], x.shape[1], y.shape[1]
    a = check_weights(a, "a", (bsz, n) if batched else (n,), like=x).reshape(bsz, n)
    b = check_weights(b, "b", (bsz, m) if batched else (m,), like=x).reshape(bsz, m)

    if backend == "auto":
        elems = bsz * (n * m + (n * n + m * m if debias else 0))
        limit = 2**28 if x.device.type == "cuda" else 2**26
        backend = "dense" if elems <= limit else "online"
    if return_plan and backend == "online":
        raise ValueError(
            "return_plan needs backend='dense'; the online backend never stores the "
            "n x m plan (use return_potentials=True instead)"
        )

    if diameter is None:
        with torch.no_grad():
            pts = torch.cat([x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])])
            diameter = float((pts.amax(0) - pts.amin(0)).norm()) or blur
    eps_list = epsilon_schedule(p, float(diameter), float(blur), float(scaling))
    rho = None if reach is None else reach**p

    # Each soft-min differentiates through its first argument only (GeomLoss's convention): the
    # final extrapolation then carries the envelope-theorem gradient exactly once per point cloud.
    if backend == "dense":
        with torch.no_grad():
            c_xy = cost_matrix(x, y, p)
            sm_xy, sm_yx = _dense_softmin(c_xy), _dense_softmin(c_xy.transpose(-1, -2))
            if debias:
                sm_xx = _dense_softmin(cost_matrix(x, x, p))
                sm_yy = _dense_softmin(cost_matrix(y, y, p))
    else:
        chunk = _chunk_size(bsz, max(n, m), x.device)
        xd, yd = x.detach(), y.detach()
        sm_xy, sm_yx = _online_softmin(x, yd, p, chunk), _online_softmin(y, xd, p, chunk)
        if debias:
            sm_xx, sm_yy = _online_softmin(x, xd, p, chunk), _online_softmin(y, yd, p, chunk)

    a_log, b_log = _safe_log(a), _safe_log(b)

    def damp(eps: float) -> float:
        return 1.0 if rho is None else 1.0 / (1.0 + eps / rho)

    with torch.no_grad():
        eps = eps_list[0]
        f_ba, g_ab = damp(eps) * sm_xy(eps, b_log), damp(eps) * sm_yx(eps, a_log)
        if debias:
            f_aa, g_bb = damp(eps) * sm_xx(eps, a_log), damp(eps) * sm_yy(eps, b_log)
        for eps in eps_list:  # ε-scaling with symmetric (averaged) updates
            k = damp(eps)
            ft_ba, gt_ab = k * sm_xy(eps, b_log + g_ab / eps), k * sm_yx(eps, a_log + f_ba / eps)
            f_ba, g_ab = 0.5 * (f_ba + ft_ba), 0.5 * (g_ab + gt_ab)
            if debias:
                f_aa = 0.5 * (f_aa + k * sm_xx(eps, a_log + f_aa / eps))
                g_bb = 0.5 * (g_bb + k * sm_yy(eps, b_log + g_bb / eps))
        # Then alternating updates at the final ε until the potentials settle.
        for it in range(max_iter if tol is not None else 0):
            f_old, g_old = f_ba, g_ab
            f_ba = k * sm_xy(eps, b_log + g_ab / eps)
            g_ab = k * sm_yx(eps, a_log + f_ba / eps)
            moved = [_max_move(f_ba, f_old, a), _max_move(g_ab, g_old, b)]
            if debias:
                f_old, g_old = f_aa, g_bb
                f_aa = 0.5 * (f_aa + k * sm_xx(eps, a_log + f_aa / eps))
                g_bb = 0.5 * (g_bb + k * sm_yy(eps, b_log + g_bb / eps))
                moved += [_max_move(f_aa, f_old, a), _max_move(g_bb, g_old, b)]
            if it % 5 == 0 and float(torch.stack(moved).max()) < tol * eps:
                break

    # Last extrapolation with autograd on: the envelope theorem gives the gradients.
    eps, k = eps_list[-1], damp(eps_list[-1])
    if backend == "dense":
        del sm_xy, sm_yx  # free the loop's matrices before building live ones
        c_xy = cost_matrix(x, y.detach(), p)
        sm_xy, sm_yx = _dense_softmin(c_xy), _dense_softmin(cost_matrix(y, x.detach(), p))
        if debias:
            sm_xx = _dense_softmin(cost_matrix(x, x.detach(), p))
            sm_yy = _dense_softmin(cost_matrix(y, y.detach(), p))
    f_ba, g_ab = k * sm_xy(eps, b_log + g_ab / eps), k * sm_yx(eps, a_log + f_ba / eps)
    if debias:
        f_aa, g_bb = k * sm_xx(eps, a_log + f_aa / eps), k * sm_yy(eps, b_log + g_bb / eps)

    def dot(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (w * v).sum(-1)

    if rho is None:
        cost = dot(a, f_ba) + dot(b, g_ab)
        if debias:
            cost = cost - dot(a, f_aa) - dot(b, g_bb)
    else:
        weight = rho + eps / 2
        if debias:
            cost = weight * (
                dot(a, torch.exp(-f_aa / rho) - torch.exp(-f_ba / rho))
                + dot(b, torch.exp(-g_bb / rho) - torch.exp(-g_ab / rho))
            )
        else:
            cost = weight * (
                dot(a, 1 - torch.exp(-f_ba / rho)) + dot(b, 1 - torch.exp(-g_ab / rho))
            )
    if debias:
        # S_eps >= 0; only round-off of a converged solve can dip below it.
        cost = cost.clamp_min(0)

    outputs: list[torch.Tensor] = [cost if batched else cost[0]]
    if return_plan:
        plan = torch.exp((f_ba.unsqueeze(-1) + g_ab.unsqueeze(-2) - cost_matrix(x, y, p)) / eps)
        plan = plan * a.unsqueeze(-1) * b.unsqueeze(-2)
        outputs.append(plan if batched else plan[0])
    if return_potentials:
        outputs += [f_ba, g_ab] if batched else [f_ba[0], g_ab[0]]
    return outputs[0] if len(outputs) == 1 else tuple(outputs)
