r"""The log-domain Sinkhorn loop, written against soft-min callables.

A soft-min ``softmin(eps, h) -> f`` computes
:math:`f_i = -\varepsilon \log \sum_j \exp(h_j - C_{ij} / \varepsilon)` for ``h [B, m]``
(log-weights plus potential / ε) and returns ``f [B, n]``; how the costs are held (a stored
matrix, recomputed in chunks, fused kernels, spread over ranks) is the callable's business, so one
loop serves every strategy (GeomLoss's ``sinkhorn_loop``, Feydy et al. 2019).

"No tolerance" has one meaning in every loop: ``tol=None`` runs exactly ``max_iter`` iterations
(possibly 0) with no stopping test and no warning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from wdist.sinkhorn._warn import warn_not_converged

Softmin = Callable[[float, torch.Tensor], torch.Tensor]

# Convergence is tested every _CHECK_EVERY iterations (one device sync each).
CHECK_EVERY = 5


@dataclass
class Trace:
    """What a loop reports about one problem: Sinkhorn updates run (every ε level counts),
    whether the stopping test passed (None: no test was asked for), the last move / ε."""

    n_iter: int = 0
    converged: bool | None = None
    moved: float = math.nan


def epsilon_schedule(p: float, diameter: float, blur: float, scaling: float) -> list[float]:
    """ε-scaling: ``diameter^p``, down by a factor ``scaling^p`` per iteration, to ``blur^p``."""
    if diameter <= blur:
        return [blur**p]
    steps = int(math.floor(math.log(blur / diameter) / math.log(scaling)))
    return [diameter**p] + [(diameter * scaling**k) ** p for k in range(1, steps + 1)] + [blur**p]


def safe_log(w: torch.Tensor) -> torch.Tensor:
    """``log w`` with ``-inf`` for zero weights (padding masks) and no NaN in the gradient."""
    pos = w > 0
    return torch.where(pos, torch.log(torch.where(pos, w, torch.ones_like(w))), -math.inf)


def max_move(new: torch.Tensor, old: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Largest change of a potential over the points that carry mass."""
    return torch.where(w > 0, (new - old).abs(), 0).max()


def log_sinkhorn(
    softmin_xy: Softmin,
    softmin_yx: Softmin | None,
    a: torch.Tensor,
    b: torch.Tensor,
    eps_list: list[float],
    damping: Callable[[float], float],
    tol: float | None,
    max_iter: int,
    *,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
    extrapolate: bool = False,
    trace: Trace | None = None,
    max_move: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] = max_move,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Log-domain Sinkhorn on one problem :math:`\mathrm{OT}_\varepsilon(a, b)`.

    ``softmin_xy(eps, h)`` is the soft-min over ``y`` (gives ``f [B, n]``), ``softmin_yx`` the
    one over ``x``; ``softmin_yx=None`` solves the symmetric :math:`\mathrm{OT}(a, a)` (``b = a``,
    ``g = f``). ε-scaling over ``eps_list`` with symmetric averaged updates (GeomLoss), then
    alternating updates at the last ε until the potentials move less than ``tol * eps`` on the
    points with mass, ``max_iter`` at most (``tol=None``: exactly ``max_iter``).
    ``damping(eps)`` is the unbalanced factor :math:`1 / (1 + \varepsilon / \rho)` (1 when
    balanced). ``start``: potentials ``(f, g)`` to continue from; otherwise one soft-min at
    ``eps_list[0]``. ``extrapolate`` adds a last symmetric step from both old potentials.
    ``max_move(new, old, w)``: the stopping test's largest move (``wdist.distributed`` takes it
    over every rank, so that all the ranks stop together).
    """
    trace = Trace() if trace is None else trace
    sym = softmin_yx is None
    a_log, b_log = safe_log(a), safe_log(b)
    if start is None:
        k = damping(eps_list[0])
        f = k * softmin_xy(eps_list[0], b_log)
        g = f if sym else k * softmin_yx(eps_list[0], a_log)
    else:
        f, g = start
    for eps in eps_list:
        k = damping(eps)
        if sym:
            f = g = 0.5 * (f + k * softmin_xy(eps, a_log + f / eps))
        else:
            ft, gt = k * softmin_xy(eps, b_log + g / eps), k * softmin_yx(eps, a_log + f / eps)
            f, g = 0.5 * (f + ft), 0.5 * (g + gt)
    trace.n_iter += len(eps_list)
    eps, k = eps_list[-1], damping(eps_list[-1])
    moved = None
    for it in range(max_iter):
        f_old, g_old = f, g
        if sym:
            f = g = 0.5 * (f + k * softmin_xy(eps, a_log + f / eps))
            if tol is not None:
                moved = max_move(f, f_old, a)
        else:
            f = k * softmin_xy(eps, b_log + g / eps)
            g = k * softmin_yx(eps, a_log + f / eps)
            if tol is not None:
                moved = torch.maximum(max_move(f, f_old, a), max_move(g, g_old, b))
        trace.n_iter += 1
        if tol is None:
            continue
        if it % CHECK_EVERY == 0 or it == max_iter - 1:
            trace.moved = float(moved) / eps
            if trace.moved < tol:
                trace.converged = True
                break
    else:
        if tol is not None and max_iter > 0:
            trace.moved = float(moved) / eps
            trace.converged = False
            warn_not_converged(trace.moved, tol, max_iter)
    return extrapolate_step(softmin_xy, softmin_yx, a, b, f, g, eps, k) if extrapolate else (f, g)


def extrapolate_step(
    softmin_xy: Softmin,
    softmin_yx: Softmin | None,
    a: torch.Tensor,
    b: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    eps: float,
    k: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One symmetric log-domain step from both old potentials, ``f <- k softmin(log b + g / eps)``
    and ``g <- k softmin(log a + f / eps)`` (``softmin_yx=None``: symmetric, ``g = f``)."""
    f_new = k * softmin_xy(eps, safe_log(b) + g / eps)
    return f_new, (f_new if softmin_yx is None else k * softmin_yx(eps, safe_log(a) + f / eps))
