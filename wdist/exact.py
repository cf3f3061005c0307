"""Exact optimal transport between point clouds via POT's network simplex."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from wdist._checks import (
    as_tensor,
    check_clouds,
    check_cost_range,
    check_int,
    check_p,
    check_weights,
    point_spread,
    validation_enabled,
)
from wdist._cost import cost_matrix, sq_dist


def _default_iter_cap(n: int, m: int) -> int:
    # POT's default (1e5) is hit at n = 2,000 in 64-D; the simplex needs O(n m) pivots at worst.
    return int(max(100_000, 50 * n * m))


def _unit_cost(c64: np.ndarray) -> tuple[np.ndarray, float]:
    """``(C - min C) / span`` in ``[0, 1]`` and ``span``: the problem POT's network simplex is
    tuned for (costs already in ``[0, 256]`` with a largest entry of at least ``1/256`` are
    passed as they are, with ``span = 1``). Its optimality and feasibility tests use absolute
    tolerances (about 1e-15): costs near 1e-14 stop it on a plan that is not optimal (13x too
    high for 300 points), and negative costs make it report an infeasible problem. With
    marginals of equal mass the optimal plan is the same after a shift and a positive rescaling
    of ``C``."""
    low, high = float(c64.min()), float(c64.max())
    span = high - low
    if not math.isfinite(span):
        raise ValueError(
            f"the ground cost's range overflows float64 (entries from {low:.3g} to {high:.3g}): "
            "rescale the cost (or x and y)"
        )
    if low >= 0 and 2.0**-8 <= high <= 2.0**8:
        return c64, 1.0  # at that scale already (emd's usually are): no n x m copy
    if span == 0:
        return np.zeros_like(c64), 1.0
    unit = c64 - low  # one n x m copy, scaled in place
    unit /= span
    return unit, span


def emd_from_cost(
    cost: Any,
    a: Any = None,
    b: Any = None,
    *,
    return_plan: bool = False,
    num_iter_max: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Exact OT cost :math:`\min_{P \in U(a,b)} \langle P, C \rangle` for a given cost matrix.

    The data come first and the weights after, as in every wdist function (``emd(x, y, a, b)``,
    ``sinkhorn_from_cost(cost, a, b)``); POT's ``ot.emd2(a, b, M)`` order, used before 0.2, still
    works with a ``DeprecationWarning``.

    Args:
        cost: ``[n, m]`` cost matrix (tensor, numpy array or list), any sign: an integer cost is
            cast to the default float dtype, float16/bfloat16 to float32.
        a, b: ``[n]``, ``[m]`` non-negative weights (normalised here; uniform if None).
        return_plan: also return the optimal plan ``[n, m]``.
        num_iter_max: simplex iteration cap (default ``max(1e5, 50 n m)``).

    The plan is solved in float64 by POT's network simplex on ``(C - min C) / (max C - min C)``
    (the same optimal plan: both marginals have mass 1), so the solve does not depend on the
    costs' scale or sign; the value is :math:`\langle P, C \rangle` on the given ``C``. It is
    differentiable w.r.t. ``cost`` (through the fixed optimal plan) and w.r.t. ``a``, ``b``
    (through the centred dual potentials), as in ``ot.emd2``. Raises ``RuntimeError`` if the
    solver stops before optimality; invalid inputs are a ``ValueError``/``TypeError`` naming the
    argument.

    Returns:
        a 0-dim tensor (the cost), or ``(cost, plan [n, m])`` with ``return_plan=True``.

    Example::

        >>> wdist.emd_from_cost(torch.tensor([[-2.0, -3.0], [-3.0, -2.0]]))
        tensor(-3.)
    """
    import ot  # POT is only needed here; keep `import wdist` light

    if np.ndim(b) == 2 and (cost is None or np.ndim(cost) == 1):  # POT's (a, b, M) order
        warnings.warn(
            "emd_from_cost(a, b, cost) is deprecated: pass emd_from_cost(cost, a, b)",
            DeprecationWarning,
            stacklevel=2,
        )
        cost, a, b = b, cost, a

    cost = as_tensor(cost, "cost")
    if cost.dim() != 2 or 0 in cost.shape:
        raise ValueError(f"cost must have shape [n, m] with n, m >= 1, got {list(cost.shape)}")
    n, m = cost.shape
    a = check_weights(a, "a", (n,), like=cost, normalize=False)
    b = check_weights(b, "b", (m,), like=cost, normalize=False)
    if num_iter_max is not None:
        num_iter_max = check_int(num_iter_max, "num_iter_max", 1)
    cap = num_iter_max or _default_iter_cap(n, m)
    a64 = a.detach().to("cpu", torch.float64).numpy()
    b64 = b.detach().to("cpu", torch.float64).numpy()
    a64 = a64 / a64.sum()
    b64 = b64 / b64.sum()
    unit, span = _unit_cost(np.ascontiguousarray(cost.detach().to("cpu", torch.float64).numpy()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        plan, log = ot.emd(a64, b64, unit, numItermax=cap, log=True)
    if log.get("result_code", 1) != 1:
        raise RuntimeError(
            f"exact OT did not reach optimality ({log.get('warning')}; n={n}, m={m}, "
            f"num_iter_max={cap}); pass a larger num_iter_max, or use wdist.sinkhorn for large n"
        )
    plan_t = torch.as_tensor(plan, dtype=cost.dtype, device=cost.device)
    value = (plan_t * cost).sum()
    if a.requires_grad or b.requires_grad:
        # potentials of the unit problem, scaled back (the shift vanishes once centred)
        u = torch.as_tensor(log["u"] * span, dtype=cost.dtype, device=cost.device)
        v = torch.as_tensor(log["v"] * span, dtype=cost.dtype, device=cost.device)
        value = value + ((a - a.detach()) * (u - u.mean())).sum()
        value = value + ((b - b.detach()) * (v - v.mean())).sum()
    return (value, plan_t) if return_plan else value


def _ground_cost(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    """``C_ij = ||x_i - y_j||^p``, exactly 0 where ``x_i == y_j``.

    For p = 2 the matrix-product expansion (fast in high dimension) leaves round-off of about
    ``d eps (|x_i|^2 + |y_j|^2)`` (norms after ``sq_dist``'s centring) where the true value is
    0; the entries within a few times that bound are recomputed from differences. Other ``p``
    go through ``torch.cdist`` on differences, which is exact at zero already."""
    if p != 2:
        return cost_matrix(x, y, p)
    cost = sq_dist(x, y)
    with torch.no_grad():
        centre = torch.cat([x, y]).mean(0)
        xx = (x - centre).pow(2).sum(-1)
        yy = (y - centre).pow(2).sum(-1)
        slack = 4 * (x.shape[-1] + 2) * torch.finfo(x.dtype).eps
        if bool(cost.amin() > slack * (xx.amax() + yy.amax())):
            return cost  # no entry within the bound anywhere (the usual case): one reduction
        bound = (xx[:, None] + yy[None, :]).mul_(slack)
        rows, cols = (cost <= bound).nonzero(as_tuple=True)
        del bound
    if rows.numel() > x.shape[0] + y.shape[0]:  # many near-duplicates: all from differences
        return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    if rows.numel():
        cost = cost.index_put((rows, cols), (x[rows] - y[cols]).pow(2).sum(-1))
    return cost


def emd(
    x: Any,
    y: Any,
    a: Any = None,
    b: Any = None,
    *,
    p: float = 1,
    return_plan: bool = False,
    num_iter_max: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Exact optimal-transport cost :math:`W_p^p` between two weighted point clouds.

    .. math::  W_p^p = \min_{P \ge 0,\ P 1 = a,\ P^\top 1 = b} \sum_{ij} P_{ij} \|x_i - y_j\|^p

    Solved by POT's network simplex (``ot.emd``) with an iteration cap large enough for the
    problem; a solve that stops early is an error, never a too-high number. The points are first
    divided by a power of two near their spread (exact in floating point; the cost is then
    multiplied back by its ``p``-th power), so that the result does not depend on the units:
    coordinates around 1e-7 or 1e7 give the same relative accuracy as around 1. The cost of
    identical points is exactly 0.

    Args:
        x: ``[n, d]`` (or ``[n]`` for 1-D) points.  y: ``[m, d]`` points.
        a, b: optional non-negative weights ``[n]``, ``[m]`` (uniform if None; normalised).
        p: exponent of the Euclidean ground cost, ``p >= 1``.
        return_plan: also return the optimal plan ``[n, m]``.
        num_iter_max: simplex iteration cap (default ``max(1e5, 50 n m)``).

    Returns:
        0-dim cost tensor (gradients w.r.t. ``x``, ``y``, ``a``, ``b``), and the plan if asked;
        in the inputs' dtype (float32 for float16/bfloat16 inputs, which are promoted).

    Example::

        >>> x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[2.0], [3.0]])
        >>> wdist.emd(x, y, p=2)       # each point moves by 2
        tensor(4.)
    """
    p = check_p(p)
    x, y = check_clouds(x, y)
    a = check_weights(a, "a", x.shape[:1], like=x)
    b = check_weights(b, "b", y.shape[:1], like=x)
    spread = point_spread(x, y)
    if validation_enabled():  # name the overflow before the cost matrix holds inf
        check_cost_range(spread, p, x.dtype)
    scale = 2.0 ** math.floor(math.log2(spread)) if 0 < spread < math.inf else 1.0
    out = emd_from_cost(
        _ground_cost(x / scale, y / scale, p), a, b,
        return_plan=return_plan, num_iter_max=num_iter_max,
    )
    value, plan = out if return_plan else (out, None)
    value = value * scale**p
    return (value, plan) if return_plan else value
