r"""``SamplesLoss``: the Wasserstein losses as one ``torch.nn.Module`` (GeomLoss's interface)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from wdist.exact import emd
from wdist.sinkhorn import sinkhorn
from wdist.sliced import sliced_wasserstein

_LOSSES = ("sinkhorn", "sliced", "exact")


class SamplesLoss(torch.nn.Module):
    r"""A loss between weighted point clouds, to drop into a model: ``loss(x, y)`` or
    ``loss(a, x, b, y)`` (GeomLoss's ``SamplesLoss`` call forms).

    - ``"sinkhorn"``: :func:`wdist.sinkhorn` (debiased by default,
      :math:`S_\varepsilon` with :math:`\varepsilon = \text{blur}^p`; unbalanced with ``reach``).
    - ``"sliced"``: :func:`wdist.sliced_wasserstein` (:math:`SW_p^p`, ``n_projections``,
      ``seed``).
    - ``"exact"``: :func:`wdist.emd` (:math:`W_p^p`, network simplex; not differentiable in
      the plan, as ``ot.emd2``).

    Every value is a cost with ground cost :math:`\|x - y\|^p` (wdist's convention). GeomLoss's
    ``p = 2`` cost is :math:`\|x - y\|^2 / 2`: ``SamplesLoss("sinkhorn", p=2, blur=b)`` here is
    twice GeomLoss's ``SamplesLoss("sinkhorn", p=2, blur=b / sqrt(2))`` (and ``reach`` likewise
    divided by ``sqrt(2)``); for ``p = 1`` the two agree as they are.

    Shapes: ``x [n, d]``, ``y [m, d]``, ``a [n]``, ``b [m]`` give ``[]``; batched
    ``x [B, n, d]``, ``y [B, m, d]``, ``a [B, n]``, ``b [B, m]`` give ``[B]`` (one batched solve
    for ``"sinkhorn"``, a loop over the batch for the others).

    Args:
        loss: ``"sinkhorn"``, ``"sliced"`` or ``"exact"``.
        p: ground cost exponent (>= 1).  blur, reach, debias, scaling, diameter, tol, max_iter,
            backend: :func:`wdist.sinkhorn`'s options (``"sinkhorn"`` only).
        n_projections, seed: :func:`wdist.sliced_wasserstein`'s options (``"sliced"`` only).

    Example::

        >>> loss = wdist.SamplesLoss("sinkhorn", p=2, blur=0.05)
        >>> x, y = torch.randn(200, 3, requires_grad=True), torch.randn(300, 3)
        >>> loss(x, y).backward()                          # x.grad: [200, 3]
        >>> a, b = torch.full((200,), 1 / 200), torch.full((300,), 1 / 300)
        >>> value = loss(a, x, b, y)                       # weighted form

    Reference: Feydy et al. (2019), Interpolating between optimal transport and MMD using
    Sinkhorn divergences (GeomLoss).
    """

    def __init__(
        self,
        loss: str = "sinkhorn",
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
        n_projections: int = 128,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, got {loss!r}")
        self.loss, self.p = loss, p
        self.options: dict[str, Any] = (
            dict(blur=blur, reach=reach, debias=debias, scaling=scaling, diameter=diameter,
                 tol=tol, max_iter=max_iter, backend=backend)
            if loss == "sinkhorn"
            else dict(n_projections=n_projections, seed=seed) if loss == "sliced" else {}
        )

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.loss!r}, p={self.p}" + (f", {opts}" if opts else "")

    def forward(self, *args: Any) -> torch.Tensor:
        """``forward(x, y)`` (uniform weights) or ``forward(a, x, b, y)``."""
        if len(args) == 2:
            (x, y), a, b = args, None, None
        elif len(args) == 4:
            a, x, b, y = args
        else:
            raise TypeError(
                f"SamplesLoss takes (x, y) or (a, x, b, y), got {len(args)} arguments"
            )
        if self.loss == "sinkhorn":
            return sinkhorn(x, y, a, b, p=self.p, **self.options)
        solver = sliced_wasserstein if self.loss == "sliced" else emd
        if np.ndim(x) != 3:
            return solver(x, y, a, b, p=self.p, **self.options)
        if np.ndim(y) != 3 or len(y) != len(x):
            raise ValueError(
                "batched x [B, n, d] needs y [B, m, d] with the same B, got "
                f"{tuple(np.shape(x))} and {tuple(np.shape(y))}"
            )
        return torch.stack([
            solver(x[i], y[i], None if a is None else a[i], None if b is None else b[i],
                   p=self.p, **self.options)
            for i in range(len(x))
        ])
