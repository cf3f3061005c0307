r"""Public entry points: ``sinkhorn`` (the loss), ``sinkhorn_solve`` (a result object), and
their twins on a given cost matrix."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import torch

from wdist._checks import (
    as_tensor,
    check_cost_range,
    check_int,
    check_p,
    check_points,
    check_positive,
    check_same_dim,
    check_weights,
    point_spread,
)
from wdist.sinkhorn._warn import caller_level
from wdist.sinkhorn.problem import Problem, Settings, cost_problems, point_problems
from wdist.sinkhorn.result import SinkhornResult
from wdist.sinkhorn.solve import SoftminFactory, choose_backend, solve
from wdist.sinkhorn.value import dual_value, plan_from_potentials

_BACKENDS = ("auto", "dense", "online")

# Where ε dwarfs every cost, each soft-min is ε times a log-sum-exp of numbers that differ by
# about C / ε: its round-off, ε times the dtype's unit round-off, swamps the potentials (float32,
# unit cube: 5% off at blur 100, 0 at blur 1000). float32 problems with ε >= _PROMOTE_RATIO max C
# are therefore solved in float64 (round-off ε 1e-16), and from ε >= _LIMIT_RATIO max C on a
# balanced value is its ε -> ∞ limit (the plan a ⊗ b; the next term, -|C̃|² / 2ε, is below
# 1e-6 max C there); an unbalanced one warns.
_PROMOTE_RATIO = 1.0
_LIMIT_RATIO = 1e6


def _precision(eps: float, max_cost: float, dtype: torch.dtype, rho: float | None):
    """``(limit, compute dtype)`` for a problem with costs up to ``max_cost``."""
    ratio = eps / max_cost if max_cost > 0 else math.inf
    limit = ratio >= _LIMIT_RATIO
    if limit and rho is not None:
        warnings.warn(
            f"eps = {eps:.3g} is {ratio:.2g} times the largest cost: the unbalanced Sinkhorn "
            "value has lost most of its digits to round-off; use a blur (eps) closer to the "
            "data's spread",
            RuntimeWarning,
            stacklevel=caller_level(),
        )
        limit = False
    promote = not limit and ratio >= _PROMOTE_RATIO and dtype == torch.float32
    return limit, torch.float64 if promote else dtype


def _cast(problems: list[Problem], dtype: torch.dtype, balanced: bool) -> list[Problem]:
    """The problems in ``dtype``; balanced weights normalised again in it (a float32 mass off
    by 1e-8 shifts each potential by ``eps * 1e-8``)."""
    if problems[0].a.dtype == dtype:
        return problems

    def to(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(dtype)

    def weights(w: torch.Tensor) -> torch.Tensor:
        w = w.to(dtype)
        return w / w.sum(-1, keepdim=True) if balanced else w

    return [
        dataclasses.replace(pb, a=weights(pb.a), b=weights(pb.b), x=to(pb.x), y=to(pb.y),
                            cost=to(pb.cost))
        for pb in problems
    ]


def _check_common(scaling: Any, tol: Any, max_iter: Any, debias: Any = False) -> int:
    if not isinstance(scaling, (int, float)) or isinstance(scaling, bool) or not 0 < scaling < 1:
        raise ValueError(f"scaling must be in (0, 1), got {scaling!r}")
    check_positive(tol, "tol", allow_none=True)
    if not isinstance(debias, bool):
        raise TypeError(f"debias must be True or False, got {debias!r}")
    return check_int(max_iter, "max_iter", 1)


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in tensors
    )


def _points_problems(
    x: Any, y: Any, a: Any, b: Any, *, p, blur, debias, scaling, reach, diameter, tol,
    max_iter, backend,
) -> tuple[list[Problem], Settings, str, bool, bool, torch.dtype]:
    """Checked inputs -> ``(problems, settings, backend, batched, needs_grad, dtype)``
    (``dtype``: the inputs', which the results come back in)."""
    p = check_p(p)
    check_positive(blur, "blur")
    check_positive(reach, "reach", allow_none=True)
    check_positive(diameter, "diameter", allow_none=True)
    max_iter = _check_common(scaling, tol, max_iter, debias)
    if backend not in _BACKENDS:
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
    # balanced OT compares distributions: normalise; unbalanced OT exists for unequal masses
    keep = reach is not None
    a = check_weights(a, "a", (bsz, n) if batched else (n,), like=x, normalize=not keep)
    b = check_weights(b, "b", (bsz, m) if batched else (m,), like=x, normalize=not keep)
    a, b = a.reshape(bsz, n), b.reshape(bsz, m)
    needs_grad = _needs_grad(x, y, a, b)
    # Costs depend on differences only: centre both clouds on their weighted mean (a constant,
    # so no gradient through it), else |x|^2 + |y|^2 - 2 x.y and the gradients' x sum(k) - k y
    # lose every digit for points far from the origin (float32 at 1e3: the value's sign).
    wa, wb = (a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)) if keep else (a, b)
    centre = 0.5 * ((wa.unsqueeze(-1) * x).sum(-2) + (wb.unsqueeze(-1) * y).sum(-2)).detach()
    x, y = x - centre.unsqueeze(-2), y - centre.unsqueeze(-2)
    spread = point_spread(x, y)
    check_cost_range(spread, p, x.dtype)
    rho = None if reach is None else reach**p
    limit, dtype = _precision(float(blur) ** p, spread**p, x.dtype, rho)
    settings = Settings(
        p=p, blur=blur, scaling=scaling, rho=rho, tol=tol, max_iter=max_iter,
        diameter=diameter, spread=spread, limit=limit,
    )
    problems = _cast(point_problems(x, y, a, b, p, debias), dtype, rho is None)
    backend = choose_backend(backend, problems, needs_grad, p)
    return problems, settings, backend, batched, needs_grad, x.dtype


def _result(
    problems: list[Problem], settings: Settings, backend: str, batched: bool, needs_grad: bool,
    out_dtype: torch.dtype | None = None, softmin: SoftminFactory | None = None,
) -> SinkhornResult:
    sol = solve(problems, settings, backend, needs_grad, softmin)
    first = problems[0]
    eps = settings.eps
    value = dual_value(first.a, first.b, sol.potentials, eps, settings.rho)
    f, g = sol.potentials[0]

    def plan() -> torch.Tensor:
        out = plan_from_potentials(f, g, first.cost_matrix(), first.a, first.b, eps)
        return (out if batched else out[0]).to(dtype)

    tests = [t.converged for t in sol.traces]
    # back to the inputs' dtype after a float64 solve (gradients flow through the casts)
    dtype = out_dtype or value.dtype

    def unbatch(t: torch.Tensor) -> torch.Tensor:
        return (t if batched else t[0]).to(dtype)

    return SinkhornResult(
        value=unbatch(value), f=unbatch(f), g=unbatch(g), n_iter=sol.traces[0].n_iter,
        converged=None if settings.tol is None else all(tests), eps=eps, rho=settings.rho,
        a=unbatch(first.a), b=unbatch(first.b), _plan=plan, _softmins=sol.softmins,
    )


def sinkhorn_solve(
    x: Any,
    y: Any,
    a: Any = None,
    b: Any = None,
    *,
    p: float = 2,
    blur: float = 0.05,
    reach: float | None = None,
    debias: bool = True,
    scaling: float = 0.9,
    diameter: float | None = None,
    tol: float | None = 1e-3,
    max_iter: int = 1000,
    backend: str = "auto",
) -> SinkhornResult:
    r"""Solve entropic OT between weighted point clouds; returns a :class:`SinkhornResult`.

    Same problem, arguments and solver as :func:`wdist.sinkhorn` (see there for the maths), but
    returns the value with the dual potentials ``f, g`` of :math:`\mathrm{OT}_\varepsilon(a, b)`,
    a lazy ``plan()``, the marginal error, the iteration count and a converged flag.

    Example::

        >>> x, y = torch.rand(100, 2), torch.rand(80, 2)
        >>> res = wdist.sinkhorn_solve(x, y, blur=0.1, debias=False, tol=1e-6)
        >>> res.value, res.f.shape, res.plan().shape, res.converged
        (tensor(...), torch.Size([100]), torch.Size([100, 80]), True)
        >>> float(res.marginal_error) < 1e-5
        True
    """
    return _result(*_points_problems(
        x, y, a, b, p=p, blur=blur, debias=debias, scaling=scaling, reach=reach,
        diameter=diameter, tol=tol, max_iter=max_iter, backend=backend,
    ))


def sinkhorn(
    x: Any,
    y: Any,
    a: Any = None,
    b: Any = None,
    *,
    p: float = 2,
    blur: float = 0.05,
    reach: float | None = None,
    debias: bool = True,
    scaling: float = 0.9,
    diameter: float | None = None,
    tol: float | None = 1e-3,
    max_iter: int = 1000,
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
    :math:`\rho = \text{reach}^p` (unbalanced OT, with generalised KL
    :math:`\mathrm{KL}(p\,\|\,q) = \sum p \log(p/q) - p + q`):

    .. math::
        \mathrm{OT}^\rho_\varepsilon(a, b) = \min_{P \geq 0} \langle P, C \rangle
            + \varepsilon \mathrm{KL}(P \,\|\, a \otimes b)
            + \rho \mathrm{KL}(P 1 \,\|\, a) + \rho \mathrm{KL}(P^\top 1 \,\|\, b),

    POT's ``ot.unbalanced.sinkhorn_unbalanced(a, b, C, reg=eps, reg_m=rho)`` problem (same plan;
    POT's ``sinkhorn_unbalanced2`` returns ``<P, C>`` or, with ``returnCost="total"``, the
    objective with KL terms that lack their mass parts, i.e. ours minus
    :math:`\varepsilon (m_a m_b - m_P) + \rho (m_a + m_b - 2 m_P)`). Debiased, it returns
    Séjourné et al.'s (2019) divergence
    :math:`S = \mathrm{OT}(a, b) - \tfrac12 \mathrm{OT}(a, a) - \tfrac12 \mathrm{OT}(b, b)
    + \tfrac\varepsilon2 (m_a - m_b)^2`, GeomLoss's unbalanced ``"sinkhorn"`` loss (whose
    ``p = 2`` cost is ``|x - y|^2 / 2``). Solver: symmetric Sinkhorn updates under
    ε-scaling from ``diameter^p`` down to ``blur^p`` by factors ``scaling^p`` (GeomLoss's
    scheme), in the log domain (online strategy) or in kernel form on fewer, better-solved levels
    from ``max C / 30`` (dense strategy, see :mod:`wdist.sinkhorn`).

    Args:
        x: ``[n, d]`` or ``[B, n, d]`` points.  y: ``[m, d]`` or ``[B, m, d]``.
        a, b: non-negative weights ``[(B,) n]``, ``[(B,) m]`` (uniform, total mass 1, if None);
            normalised to 1 in the balanced case (``reach=None``), kept as given with ``reach``
            (unbalanced OT compares measures of unequal mass). Zeros are allowed (use them to
            mask padded points in a batch).
        p: ground cost exponent (>= 1).  blur: length scale of the entropic blur (> 0). Far
            above the points' spread the soft-mins lose digits to round-off: float32 problems
            with ``blur^p >= max C`` are solved in float64, and from ``blur^p >= 1e6 max C`` a
            balanced value is its ε -> ∞ limit (plan ``a ⊗ b``; an unbalanced one warns).
        reach: unbalanced OT length scale (None: balanced).
        debias: return the Sinkhorn divergence :math:`S_\varepsilon` instead of
            :math:`\mathrm{OT}_\varepsilon`.
        scaling: ε-scaling ratio in (0, 1); closer to 1 = more iterations, more accuracy.
        diameter: upper bound on the point distances: the schedule starts at ``diameter^p``
            (default: ``max C / 30`` for the dense strategy, the bounding box for the online one).
        tol: after the ε schedule, keep iterating at the final ε until the potentials move less
            than ``tol * ε`` on every point with mass: then each point's marginal of the plan is
            off by a relative error of about ``tol`` (max norm; POT's ``stopThr`` bounds the
            2-norm of the absolute error, so ``tol = stopThr * sqrt(n)`` is at least as strict
            for uniform weights). The returned dual value is typically much closer than
            ``tol``: its error is second order in the potentials' error. None stops right after
            the schedule (GeomLoss's behaviour: fast, accurate value, less accurate plan).
        max_iter: cap on those extra iterations; reaching it before ``tol`` gives a
            ``RuntimeWarning``, never a silent stop.
        backend: ``"dense"``, ``"online"`` (O(n + m) memory) or ``"auto"``: dense when what it
            holds fits in ``2^28`` elements (1 GB in float32): without autograd one ``n x m``
            buffer for the largest problem (twice that for ``p != 2``), with autograd the costs
            of every problem.
        return_plan, return_potentials: kept for compatibility; use :func:`sinkhorn_solve`,
            whose result holds the plan (``plan()``) and the potentials (``f``, ``g``).

    Returns:
        cost of shape ``[]`` (or ``[B]``); then ``plan`` if asked (dense backend only), then
        ``f, g`` if asked.

    Example::

        >>> x, y = torch.randn(500, 3, requires_grad=True), torch.randn(400, 3) + 1
        >>> loss = wdist.sinkhorn(x, y, p=2, blur=0.05)   # debiased, differentiable
        >>> loss.backward()                                # x.grad: [500, 3]
    """
    for flag, name in ((return_plan, "return_plan"), (return_potentials, "return_potentials")):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    problems, settings, backend, batched, needs_grad, dtype = _points_problems(
        x, y, a, b, p=p, blur=blur, debias=debias, scaling=scaling, reach=reach,
        diameter=diameter, tol=tol, max_iter=max_iter, backend=backend,
    )
    if return_plan and backend == "online":
        raise ValueError(
            "return_plan needs backend='dense'; the online backend never stores the "
            "n x m plan (use return_potentials=True, or sinkhorn_solve(...).plan())"
        )
    res = _result(problems, settings, backend, batched, needs_grad, dtype)
    if not (return_plan or return_potentials):
        return res.value
    outputs = [res.value] + ([res.plan()] if return_plan else [])
    return tuple(outputs + ([res.f, res.g] if return_potentials else []))


def _cost_problems(
    cost: Any, a: Any, b: Any, *, eps, rho, cost_xx, cost_yy, scaling, tol, max_iter,
) -> tuple[list[Problem], Settings, str, bool, bool, torch.dtype]:
    check_positive(eps, "eps")
    check_positive(rho, "rho", allow_none=True)
    max_iter = _check_common(scaling, tol, max_iter)
    cost = as_tensor(cost, "cost")
    if cost.dim() not in (2, 3) or 0 in cost.shape:
        raise ValueError(
            f"cost must have shape [n, m] or [B, n, m] with B, n, m >= 1, got {list(cost.shape)}"
        )
    batched = cost.dim() == 3
    c = cost if batched else cost[None]
    bsz, n, m = c.shape
    if (cost_xx is None) != (cost_yy is None):
        raise ValueError("give both cost_xx and cost_yy (the debiased divergence) or neither")
    selfs = []
    for s, name, k in ((cost_xx, "cost_xx", n), (cost_yy, "cost_yy", m)):
        if s is None:
            continue
        s = as_tensor(s, name, like=cost)
        if tuple(s.shape) != ((bsz, k, k) if batched else (k, k)):
            want = [bsz, k, k] if batched else [k, k]
            raise ValueError(f"{name} must have shape {want}, got {list(s.shape)}")
        selfs.append(s if batched else s[None])
    keep = rho is not None
    a = check_weights(a, "a", (bsz, n) if batched else (n,), like=cost, normalize=not keep)
    b = check_weights(b, "b", (bsz, m) if batched else (m,), like=cost, normalize=not keep)
    a, b = a.reshape(bsz, n), b.reshape(bsz, m)
    span = float(c.detach().abs().max())
    check_cost_range(span, 1.0, c.dtype)
    limit, dtype = _precision(float(eps), span, c.dtype, rho)
    settings = Settings(p=1.0, blur=float(eps), scaling=scaling, rho=rho, tol=tol,
                        max_iter=max_iter, limit=limit)
    problems = _cast(cost_problems(c, a, b, *(selfs or [None, None])), dtype, rho is None)
    needs_grad = _needs_grad(c, a, b, *selfs)
    return problems, settings, "dense", batched, needs_grad, c.dtype


def sinkhorn_solve_from_cost(
    cost: Any,
    a: Any = None,
    b: Any = None,
    *,
    eps: float,
    rho: float | None = None,
    cost_xx: Any = None,
    cost_yy: Any = None,
    scaling: float = 0.81,
    tol: float | None = 1e-3,
    max_iter: int = 1000,
) -> SinkhornResult:
    r"""Entropic OT on a given cost matrix; returns a :class:`SinkhornResult`.

    Same problem and arguments as :func:`sinkhorn_from_cost` (see there), with the potentials,
    a lazy ``plan()``, the marginal error, the iteration count and a converged flag.

    Example::

        >>> cost = torch.rand(2, 50, 40)                  # a batch of two problems
        >>> res = wdist.sinkhorn_solve_from_cost(cost, eps=0.05, tol=1e-6)
        >>> res.value.shape, res.plan().shape
        (torch.Size([2]), torch.Size([2, 50, 40]))
    """
    return _result(*_cost_problems(
        cost, a, b, eps=eps, rho=rho, cost_xx=cost_xx, cost_yy=cost_yy, scaling=scaling,
        tol=tol, max_iter=max_iter,
    ))


def sinkhorn_from_cost(
    cost: Any,
    a: Any = None,
    b: Any = None,
    *,
    eps: float,
    rho: float | None = None,
    cost_xx: Any = None,
    cost_yy: Any = None,
    scaling: float = 0.81,
    tol: float | None = 1e-3,
    max_iter: int = 1000,
) -> torch.Tensor:
    r"""Entropic OT on a given cost matrix (POT's ``ot.sinkhorn2(a, b, M, reg)`` problem).

    .. math::
        \mathrm{OT}_\varepsilon(a, b) = \min_{P \in U(a, b)} \langle P, C \rangle
            + \varepsilon\, \mathrm{KL}(P \,\|\, a \otimes b)

    returned in dual form :math:`\langle a, f \rangle + \langle b, g \rangle` (POT's
    ``sinkhorn2`` returns the linear part :math:`\langle P, C \rangle` of the same plan
    instead; POT's ``reg`` is our ``eps``). With ``rho`` the marginal constraints become
    :math:`\rho\,\mathrm{KL}` penalties (unbalanced OT, POT's ``reg_m``; the masses of ``a`` and
    ``b`` are kept), with the value convention of :func:`wdist.sinkhorn`. Given both self-costs
    ``cost_xx`` (``C(x, x)``) and ``cost_yy`` (``C(y, y)``), the debiased divergence
    :math:`S_\varepsilon = \mathrm{OT}(a, b) - \frac12 \mathrm{OT}(a, a) - \frac12
    \mathrm{OT}(b, b)` (unbalanced: :math:`+ \frac\varepsilon2 (m_a - m_b)^2`).

    ``eps`` is the entropic temperature in the units of the cost (a cost matrix has no length
    scale: ``eps = blur^p`` for :func:`wdist.sinkhorn`'s ``|x - y|^p``), and ``rho`` likewise
    (``rho = reach^p``). The solver, stopping rule (``tol``, ``max_iter``) and warnings are
    :func:`wdist.sinkhorn`'s dense strategy; ε-scaling runs from ``(max C) / 30`` down to
    ``eps`` by factors ``scaling`` (0.81 = ``0.9^2``, the default of ``sinkhorn`` at ``p = 2``).
    Differentiable w.r.t. the costs (:math:`\partial \mathrm{OT} / \partial C = P`) and the
    weights.

    Args:
        cost: ``[n, m]`` or ``[B, n, m]`` cost matrix (any sign).
        a, b: non-negative weights ``[(B,) n]``, ``[(B,) m]`` (uniform if None; normalised
            when balanced).
        eps: entropic regularisation (> 0), in cost units.  rho: marginal penalty (None:
            balanced).
        cost_xx, cost_yy: ``[(B,) n, n]`` and ``[(B,) m, m]`` self-costs: debiased if given.
        scaling: ratio of successive ε levels, in (0, 1).
        tol, max_iter: as in :func:`wdist.sinkhorn`.

    Returns:
        ``[]`` or ``[B]`` values.

    Example::

        >>> a, b = torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5])
        >>> cost = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> wdist.sinkhorn_from_cost(cost, a, b, eps=0.01)  # ~ 0 + eps KL(P | a b) = eps log 2
        tensor(0.0069)

    References: Cuturi (2013), Sinkhorn distances; Chizat et al. (2018), scaling algorithms
    for unbalanced OT; Feydy et al. (2019), interpolating between OT and MMD.
    """
    return sinkhorn_solve_from_cost(
        cost, a, b, eps=eps, rho=rho, cost_xx=cost_xx, cost_yy=cost_yy, scaling=scaling,
        tol=tol, max_iter=max_iter,
    ).value
