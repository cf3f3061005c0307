"""The problem record (one OT problem: points or a given cost) and the solver's settings."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wdist._cost import cost_matrix
from wdist.sinkhorn.dense import Gibbs, dense_softmin
from wdist.sinkhorn.loops import Softmin


@dataclass(frozen=True)
class Settings:
    """Solver settings in one place. ``p`` and ``blur`` set the schedule and the final
    :math:`\\varepsilon = \\text{blur}^p`; a given cost matrix is the ``p = 1`` case in ε units
    (``blur = eps``, ``scaling`` = ratio of successive ε)."""

    p: float
    blur: float
    scaling: float
    rho: float | None
    tol: float | None
    max_iter: int
    diameter: float | None = None  # the schedule's start (None: by strategy)
    spread: float | None = None  # bounding-box diagonal of the points (online start)
    limit: bool = False  # eps far above every cost: the eps -> inf limit, no loop

    @property
    def eps(self) -> float:
        return float(self.blur) ** self.p

    def damping(self, eps: float) -> float:
        """The unbalanced soft-min factor :math:`1 / (1 + \\varepsilon / \\rho)` (1 if
        balanced)."""
        return 1.0 if self.rho is None else 1.0 / (1.0 + eps / self.rho)


@dataclass
class Problem:
    """One problem :math:`\\mathrm{OT}_\\varepsilon(a, b)`: between points ``x [B, n, d]``,
    ``y [B, m, d]`` with cost ``|x - y|^p``, or on a given ``cost [B, n, m]``. ``sym``: the
    symmetric problem ``OT(a, a)`` of the debiasing (``b = a``, ``g = f``)."""

    a: torch.Tensor
    b: torch.Tensor
    sym: bool = False
    x: torch.Tensor | None = None
    y: torch.Tensor | None = None
    p: float = 2.0
    cost: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.a.shape) + (self.b.shape[-1],)

    def cost_matrix(self) -> torch.Tensor:
        """``C [B, n, m]`` (computed for points)."""
        return self.cost if self.cost is not None else cost_matrix(self.x, self.y, self.p)

    def gibbs(self, buf: torch.Tensor) -> Gibbs:
        if self.cost is not None:
            return Gibbs(buf, cost=self.cost.detach())
        return Gibbs(buf, points=(self.x.detach(), self.y.detach(), self.p))

    def live_softmins(self) -> tuple[Softmin, Softmin | None]:
        """Stored-cost soft-mins that carry the gradient once (GeomLoss's convention): each
        differentiates through its first point cloud only; on a given cost the ``f`` soft-min
        carries ``dOT/dC = P`` and, for the symmetric problem (whose value counts half),
        half of it."""
        if self.cost is not None:
            if self.sym:
                return dense_softmin(0.5 * (self.cost + self.cost.detach())), None
            return dense_softmin(self.cost), dense_softmin(self.cost.detach().transpose(-1, -2))
        sm_xy = dense_softmin(cost_matrix(self.x, self.y.detach(), self.p))
        sm_yx = None if self.sym else dense_softmin(cost_matrix(self.y, self.x.detach(), self.p))
        return sm_xy, sm_yx


def limit_potentials(pb: Problem) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Potentials of the balanced problem as :math:`\varepsilon \to \infty`, where the plan
    tends to :math:`a \otimes b` and :math:`\mathrm{OT}_\varepsilon \to \langle a \otimes b,
    C \rangle` (the next term, :math:`-\|\tilde C\|^2_{a \otimes b} / 2\varepsilon` with the
    doubly centred cost, is below round-off where this is used):
    :math:`f_i = \sum_j b_j C_{ij} - \frac12 \langle a \otimes b, C \rangle`, ``g`` likewise.
    Built like the soft-mins' extrapolation: ``f`` differentiates through ``x`` (or the cost)
    only, ``g`` through ``y``, and the shifts carry no gradient, so ``<a, f> + <b, g>`` has the
    limit's value and gradient."""
    a, b = pb.a.detach(), pb.b.detach()
    if pb.cost is not None:
        cost = 0.5 * (pb.cost + pb.cost.detach()) if pb.sym else pb.cost
        rows = (cost * b.unsqueeze(-2)).sum(-1)
        cols = None if pb.sym else (pb.cost.detach() * a.unsqueeze(-1)).sum(-2)
    else:
        rows = _weighted_cost_sums(pb.x, pb.y.detach(), b, pb.p)
        cols = None if pb.sym else _weighted_cost_sums(pb.y, pb.x.detach(), a, pb.p)
    f = rows - 0.5 * (a * rows).sum(-1, keepdim=True).detach()
    g = f if cols is None else cols - 0.5 * (b * cols).sum(-1, keepdim=True).detach()
    return f, g


def _weighted_cost_sums(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, p: float):
    """``sum_j w_j |x_i - y_j|^p`` ``[B, n]``: a closed form for ``p = 2``, else row chunks."""
    if p == 2:
        return (w.sum(-1, keepdim=True) * (x**2).sum(-1)
                - 2 * (x @ (w.unsqueeze(-1) * y).sum(-2, keepdim=True).transpose(-1, -2))[..., 0]
                + (w * (y**2).sum(-1)).sum(-1, keepdim=True))
    chunk = max(1, 2**22 // max(1, y.shape[0] * y.shape[1]))
    return torch.cat([
        (cost_matrix(x[..., s : s + chunk, :], y, p) * w.unsqueeze(-2)).sum(-1)
        for s in range(0, x.shape[-2], chunk)
    ], -1)


def point_problems(
    x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, p: float, debias: bool
) -> list[Problem]:
    """``OT(a, b)``, then ``OT(a, a)`` and ``OT(b, b)`` when debiased."""
    problems = [Problem(a, b, x=x, y=y, p=p)]
    if debias:
        problems += [Problem(a, a, True, x=x, y=x, p=p), Problem(b, b, True, x=y, y=y, p=p)]
    return problems


def cost_problems(
    cost: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    cost_xx: torch.Tensor | None,
    cost_yy: torch.Tensor | None,
) -> list[Problem]:
    """``OT(a, b)`` on ``cost``, then the self-problems on ``cost_xx``, ``cost_yy`` if given."""
    problems = [Problem(a, b, cost=cost)]
    if cost_xx is not None:
        problems += [Problem(a, a, True, cost=cost_xx), Problem(b, b, True, cost=cost_yy)]
    return problems
