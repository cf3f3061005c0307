"""Sliced and max-sliced Wasserstein distances (1-D closed forms along projections)."""

from __future__ import annotations

from typing import Any

import torch

from wdist._checks import (
    check_clouds,
    check_cost_range,
    check_int,
    check_p,
    check_seed,
    check_weights,
    point_spread,
    validation_enabled,
)
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
    *,
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
        max_iter: number of projected gradient-ascent steps (Adam) refining the best random
            direction when ``max_sliced=True`` (>= 0; 0 keeps the best random direction);
            ignored otherwise.

    Returns:
        0-dim tensor; cost in the units of :math:`W_p^p` (float32 for float16/bfloat16 inputs).

    Example::

        >>> x = torch.randn(500, 3)      # a shift by 3: W2^2 = 9, SW2^2 = 9 E[cos^2] = 3
        >>> sw = wdist.sliced_wasserstein(x, x + torch.tensor([3.0, 0, 0]), p=2, seed=0)
        >>> ms = wdist.sliced_wasserstein(x, x + torch.tensor([3.0, 0, 0]), p=2, max_sliced=True)
        >>> round(ms.item(), 2)
        9.0
    """
    p = check_p(p)
    n_projections = check_int(n_projections, "n_projections", 1)
    max_iter = check_int(max_iter, "max_iter", 0)
    seed = check_seed(seed)
    x, y = check_clouds(x, y)
    a = None if a is None else check_weights(a, "a", x.shape[:1], like=x)
    b = None if b is None else check_weights(b, "b", y.shape[:1], like=x)
    if validation_enabled():  # projected distances are at most the points' spread
        check_cost_range(point_spread(x, y), p, x.dtype)
    theta = _directions(x.shape[1], n_projections, x, seed)

    def projected(th: torch.Tensor, xs=x, ys=y, wa=a, wb=b) -> torch.Tensor:
        # [k] costs along the k columns of th: 1-D problems [k, n] vs [k, m], weights expanded
        k = th.shape[1]
        wa = None if wa is None else wa.expand(k, -1)
        wb = None if wb is None else wb.expand(k, -1)
        return wasserstein_1d((xs @ th).T, (ys @ th).T, wa, wb, p=p)

    if not max_sliced:
        return projected(theta).mean()
    # The ascent needs autograd even under the caller's no_grad()/inference_mode(): re-enable it
    # and work on plain (non-inference) detached copies of the inputs.
    with torch.inference_mode(False), torch.enable_grad():

        def plain(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            t = t.detach()
            return t.clone() if t.is_inference() else t

        xd, yd, ad, bd, th0 = map(plain, (x, y, a, b, theta))
        with torch.no_grad():
            best = th0[:, projected(th0, xd, yd, ad, bd).argmax()].clone()
        best.requires_grad_(True)
        opt = torch.optim.Adam([best], lr=0.05)
        for _ in range(max_iter):
            loss = -projected((best / best.norm())[:, None], xd, yd, ad, bd).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        th = (best / best.norm()).detach()[:, None]
    return projected(th)[0]
