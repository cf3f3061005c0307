"""Exact optimal transport between point clouds via POT's network simplex."""

from __future__ import annotations

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
from wdist._cost import cost_matrix

# POT's network simplex multiplies costs internally: keep them far below sqrt(float64 max).
_MAX_COST = 1e100


def _default_iter_cap(n: int, m: int) -> int:
    # POT's default (1e5) is hit at n = 2,000 in 64-D; the simplex needs O(n m) pivots at worst.
    return int(max(100_000, 50 * n * m))


def emd_from_cost(
    a: Any,
    b: Any,
    cost: Any,
    num_iter_max: int | None = None,
    return_plan: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Exact OT cost :math:`\min_{P \in U(a,b)} \langle P, C \rangle` for a given cost matrix.

    ``a [n]``, ``b [m]`` non-negative weights (normalised here; uniform if None), ``cost [n, m]``
    (tensor, numpy array or list; an integer cost is cast to the default float dtype). The plan
    is solved in float64 by POT's network simplex; the returned cost is differentiable w.r.t.
    ``cost`` (through the fixed optimal plan) and w.r.t. ``a``, ``b`` (through the centred dual
    potentials), as in ``ot.emd2``. Raises ``RuntimeError`` if the solver stops before optimality;
    invalid inputs are a ``ValueError``/``TypeError`` naming the argument.

    Returns a 0-dim tensor (the cost), or ``(cost, plan [n, m])`` with ``return_plan=True``.
    """
    import ot  # POT is only needed here; keep `import wdist` light

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
    c64 = np.ascontiguousarray(cost.detach().to("cpu", torch.float64).numpy())
    cmax = c64.max()
    if not np.isfinite(cmax) or cmax > _MAX_COST:
        raise ValueError(
            f"the ground cost overflows (largest entry {cmax:.3g}; the network simplex needs "
            f"costs below {_MAX_COST:g}): rescale x and y"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        plan, log = ot.emd(a64, b64, c64, numItermax=cap, log=True)
    if log.get("result_code", 1) != 1:
        raise RuntimeError(
            f"exact OT did not reach optimality ({log.get('warning')}; n={n}, m={m}, "
            f"num_iter_max={cap}); pass a larger num_iter_max, or use wdist.sinkhorn for large n"
        )
    plan_t = torch.as_tensor(plan, dtype=cost.dtype, device=cost.device)
    value = (plan_t * cost).sum()
    if a.requires_grad or b.requires_grad:
        u = torch.as_tensor(log["u"], dtype=cost.dtype, device=cost.device)
        v = torch.as_tensor(log["v"], dtype=cost.dtype, device=cost.device)
        value = value + ((a - a.detach()) * (u - u.mean())).sum()
        value = value + ((b - b.detach()) * (v - v.mean())).sum()
    return (value, plan_t) if return_plan else value


def emd(
    x: Any,
    y: Any,
    a: Any = None,
    b: Any = None,
    p: float = 1,
    return_plan: bool = False,
    num_iter_max: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Exact optimal-transport cost :math:`W_p^p` between two weighted point clouds.

    .. math::  W_p^p = \min_{P \ge 0,\ P 1 = a,\ P^\top 1 = b} \sum_{ij} P_{ij} \|x_i - y_j\|^p

    Solved by POT's network simplex (``ot.emd``) with an iteration cap large enough for the
    problem; a solve that stops early is an error, never a too-high number.

    Args:
        x: ``[n, d]`` (or ``[n]`` for 1-D) points.  y: ``[m, d]`` points.
        a, b: optional non-negative weights ``[n]``, ``[m]`` (uniform if None; normalised).
        p: exponent of the Euclidean ground cost, ``p >= 1``.
        return_plan: also return the optimal plan ``[n, m]``.
        num_iter_max: simplex iteration cap (default ``max(1e5, 50 n m)``).

    Returns:
        0-dim cost tensor (gradients w.r.t. ``x``, ``y``, ``a``, ``b``), and the plan if asked.
    """
    p = check_p(p)
    x, y = check_clouds(x, y)
    a = check_weights(a, "a", x.shape[:1], like=x)
    b = check_weights(b, "b", y.shape[:1], like=x)
    if validation_enabled():  # name the overflow before the cost matrix holds inf
        limit = min(_MAX_COST, torch.finfo(x.dtype).max / 4)
        check_cost_range(point_spread(x, y), p, x.dtype, limit=limit)
    return emd_from_cost(a, b, cost_matrix(x, y, p), num_iter_max, return_plan)
