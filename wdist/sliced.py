"""Sliced and max-sliced Wasserstein distances (1-D closed forms along projections)."""

from __future__ import annotations

from typing import Any

import torch

from wdist._checks import check_clouds, check_p, check_weights
from wdist.one_d import wasserstein_1d


def _directions(d: int, k: int, like: torch.Tensor, seed: int | None) -> torch.Tensor:
    gen = None
    if seed is not None:
        gen = torch.Generator(device=like.device).manual_seed(int(seed))
    theta = torch.randn(d, k, generator=gen, device=like.device, dtype=like.dtype)
    return theta / theta.norm(dim=0, keepdim=True)


def sliced_wasserstein(
    x: Any,
    y: Any,
    a: Any = None,
    b: Any = None,
    p: float = 2,
    n_projections: int = 128,
    max_sliced: bool = False,
    seed: int | None = None,
    max_iter: int = 50,
) -> torch.Tensor:
    r"""Sliced Wasserstein cost :math:`SW_p^p = \mathbb{E}_{\theta \sim U(S^{d-1})}
    W_p^p(\theta_\# \mu, \theta_\# \nu)`, Monte-Carlo over ``n_projections`` directions.

    ``max_sliced=True`` returns :math:`\max_\theta W_p^p(\theta_\#\mu, \theta_\#\nu)` instead
    (Deshpande et al. 2019): the best random direction, refined by ``max_iter`` steps of projected
    gradient ascent on the sphere; the value is differentiable w.r.t. the points at the found θ.

    Args:
        x: ``[n, d]``, y: ``[m, d]`` points; a, b: optional weights ``[n]``, ``[m]``.
        p: ground cost exponent (>= 1).  n_projections: number of random directions (>= 1).
        seed: seed for the directions (None: torch's global RNG).

    Returns:
        0-dim tensor; cost in the units of :math:`W_p^p`.
    """
    p = check_p(p)
    if isinstance(n_projections, bool) or not isinstance(n_projections, int) or n_projections < 1:
        raise ValueError(f"n_projections must be a positive int, got {n_projections!r}")
    x, y = check_clouds(x, y)
    a = None if a is None else check_weights(a, "a", x.shape[:1], like=x)
    b = None if b is None else check_weights(b, "b", y.shape[:1], like=x)
    theta = _directions(x.shape[1], n_projections, x, seed)

    def projected(th: torch.Tensor) -> torch.Tensor:  # [k] costs along the columns of th
        return wasserstein_1d((x @ th).T, (y @ th).T, a, b, p=p)

    if not max_sliced:
        return projected(theta).mean()
    with torch.no_grad():
        best = theta[:, projected(theta).argmax()].clone()
    best.requires_grad_(True)
    opt = torch.optim.Adam([best], lr=0.05)
    xd, yd = x.detach(), y.detach()
    for _ in range(max_iter):
        th = best / best.norm()
        loss = -wasserstein_1d((xd @ th)[None], (yd @ th)[None], a, b, p=p).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    th = (best / best.norm()).detach()[:, None]
    return projected(th)[0]
