"""``SinkhornResult``: what a solve returns besides the value (in the spirit of POT's
``OTResult``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from wdist.sinkhorn.loops import Softmin, safe_log


@dataclass
class SinkhornResult:
    r"""Result of :func:`wdist.sinkhorn_solve` / :func:`wdist.sinkhorn_solve_from_cost`.

    Attributes:
        value: the loss, ``[]`` or ``[B]``: :math:`\mathrm{OT}_\varepsilon` (``debias=False``) or
            the Sinkhorn divergence :math:`S_\varepsilon` (differentiable).
        f, g: dual potentials ``[(B,) n]``, ``[(B,) m]`` of :math:`\mathrm{OT}_\varepsilon(a, b)`
            (also when ``value`` is the debiased divergence).
        n_iter: Sinkhorn updates run on :math:`\mathrm{OT}_\varepsilon(a, b)`, ε levels included.
        converged: whether every problem met ``tol`` (None when ``tol=None``: no test ran).
        eps, rho: the final :math:`\varepsilon` and the marginal penalty (None: balanced).
        a, b: the weights the problem was solved with (normalised when balanced).

    ``plan()`` builds the ``[(B,) n, m]`` plan :math:`P_{ij} = a_i b_j e^{(f_i + g_j - C_{ij})
    / \varepsilon}` on demand (``n x m`` memory, also after an online solve);
    ``marginal_error`` (computed on first access, two soft-mins, no ``n x m`` buffer for an
    online solve) is ``[]`` or ``[B]``: :math:`\|P 1 - a^*\|_1 + \|P^\top 1 - b^*\|_1` with the
    optimal marginals :math:`a^* = a`, :math:`b^* = b` (balanced) or
    :math:`a^* = a e^{-f/\rho}`, :math:`b^* = b e^{-g/\rho}` (unbalanced).
    """

    value: torch.Tensor
    f: torch.Tensor = field(repr=False)
    g: torch.Tensor = field(repr=False)
    n_iter: int
    converged: bool | None
    eps: float
    rho: float | None
    a: torch.Tensor = field(repr=False)
    b: torch.Tensor = field(repr=False)
    _plan: Callable[[], torch.Tensor] = field(repr=False)
    _softmins: Callable[[], tuple[Softmin, Softmin]] = field(repr=False)

    def plan(self) -> torch.Tensor:
        """The transport plan ``[(B,) n, m]``."""
        return self._plan()

    @functools.cached_property
    def marginal_error(self) -> torch.Tensor:
        with torch.no_grad():
            f, g, a, b, eps = self.f, self.g, self.a, self.b, self.eps
            unbatched = f.dim() == 1
            if unbatched:
                f, g, a, b = f[None], g[None], a[None], b[None]
            sm_xy, sm_yx = self._softmins()
            # P 1 = a e^{(f - softmin(log b + g / eps)) / eps}, and the same for columns
            rows = a * torch.exp((f - sm_xy(eps, safe_log(b) + g / eps)) / eps)
            cols = b * torch.exp((g - sm_yx(eps, safe_log(a) + f / eps)) / eps)
            if self.rho is not None:
                a, b = a * torch.exp(-f / self.rho), b * torch.exp(-g / self.rho)
            err = (rows - a).abs().sum(-1) + (cols - b).abs().sum(-1)
            return err[0] if unbatched else err
