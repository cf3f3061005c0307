"""Ground costs ``C_ij = ||x_i - y_j||^p`` shared by the exact and entropic solvers."""

from __future__ import annotations

import torch


def sq_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||x_i - y_j||^2`` for ``x [..., n, d]``, ``y [..., m, d]`` -> ``[..., n, m]`` (>= 0).

    ``|x|^2 + |y|^2 - 2 x.y`` with one ``n × m`` allocation (the product), updated in place: a
    fresh ``n × m`` temporary costs page faults comparable to the arithmetic. The points are
    first centred on their joint mean (no gradient through it: the distances do not depend on
    it), since the expansion cancels catastrophically far from the origin."""
    centre = torch.cat([x, y], -2).mean(-2, keepdim=True).detach()
    x, y = x - centre, y - centre
    xx = (x * x).sum(-1, keepdim=True)
    yy = (y * y).sum(-1).unsqueeze(-2)
    return (x @ y.transpose(-1, -2)).mul_(-2).add_(xx).add_(yy).clamp_min_(0)


def cost_matrix(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    """``C_ij = ||x_i - y_j||^p``; exact squared distances for p = 2, ``torch.cdist`` otherwise."""
    if p == 2:
        return sq_dist(x, y)
    # cdist's own backward returns 0 (not NaN) at zero distance
    d = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    return d if p == 1 else d.pow(p)
