r"""The dense strategy: Sinkhorn in kernel form with absorbed potentials (Schmitzer 2019).

Every iteration is two mat-vecs with :math:`K_{ij} = e^{(f_i + g_j - C_{ij}) / \varepsilon}`, no
log-sum-exp; a new kernel (one ``exp`` over ``n x m``) is built only per ε level and when the
scalings grow, into one reused buffer shared by the debiasing problems; for ``p = 2`` the
kernel's exponent is a single matrix product and ``C`` is never stored. Where the kernel is not
representable the strategy continues in the log domain (:func:`~wdist.sinkhorn.loops.log_sinkhorn`
on a stored cost). The schedule starts at ``max C / 30`` (not ``diameter^p``: the kernel of zero
potentials is representable there, and an easy problem, ``eps >= max C / 30``, is solved at its
own ε right away), keeps every 4th level of the ``scaling`` schedule and runs 8 iterations on
each coarse level, then iterates at the final ε to ``tol``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from wdist._cost import cost_matrix
from wdist.sinkhorn._warn import warn_not_converged
from wdist.sinkhorn.loops import CHECK_EVERY, Softmin, Trace, log_sinkhorn, max_move

# The schedule starts at ``max C / KERNEL_RANGE``, where the kernel ``exp(-C / eps)`` of zero
# potentials is representable, instead of ``diameter^p`` (the levels above it only cost exps),
# keeps every ``_LEVEL_STRIDE``-th level of the ``scaling`` schedule counted back from the final
# ε, and runs ``LEVEL_ITERS`` Sinkhorn iterations (two mat-vecs each) on each coarse level:
# building a kernel costs about as much as 7 iterations at n = 10^4.
KERNEL_RANGE = 30.0
_LEVEL_STRIDE = 4
LEVEL_ITERS = 8
_ABSORB = 30.0  # absorb the scalings into the potentials once |log u| or |log v| exceeds this


def dense_softmin(cost: torch.Tensor) -> Softmin:
    """``f_i = -eps log sum_j exp(h_j - C_ij / eps)`` for a stored ``C [B, n, m]``."""

    def softmin(eps: float, h: torch.Tensor) -> torch.Tensor:
        return -eps * torch.logsumexp(torch.add(h.unsqueeze(-2), cost, alpha=-1 / eps), dim=-1)

    return softmin


class Gibbs:
    r"""Gibbs kernel :math:`K_{ij} = e^{(f_i + g_j - C_{ij}) / \varepsilon}` of one problem
    (Schmitzer's absorbed potentials), written into one reused ``[B, n, m]`` buffer: a fresh
    ``n x m`` tensor per build costs more in page faults than the ``exp`` itself.

    From points with ``p = 2`` the exponent is one batched matrix product of augmented points,
    :math:`[2 x_i, f_i - |x_i|^2, 1] \cdot [y_j, 1, g_j - |y_j|^2] / \varepsilon`, on points
    centred by the caller (fewer cancelled digits), and ``C`` is never stored; otherwise it is
    computed from a stored ``C`` (given, or ``|x - y|^p``) in three in-place passes. Exponents
    below ``floor = log(tiny) + 1`` (about -86 in float32) are raised to it before the ``exp``:
    entries that would be subnormal or zero become ``e^floor`` (1e-38 in float32, so no row sum
    moves by more than ``m * 1e-38``), and ``exp`` stays on its fast path (subnormal results
    made it 7x slower at ``eps = 0.01``, n = 10^4).
    """

    def __init__(
        self,
        buf: torch.Tensor,
        *,
        points: tuple[torch.Tensor, torch.Tensor, float] | None = None,
        cost: torch.Tensor | None = None,
    ) -> None:
        self.buf = buf
        self.floor = math.log(torch.finfo(buf.dtype).tiny) + 1
        self._neg_cost = False  # the buffer holds -C (left there by cost_max)
        self._cost = cost
        if points is not None:
            self.x, self.y, self.p = points
            if self.p == 2:
                self.xx, self.yy = (self.x**2).sum(-1), (self.y**2).sum(-1)
            else:
                self._cost = cost_matrix(self.x, self.y, self.p)

    def cost(self) -> torch.Tensor:
        """``C [B, n, m]`` (for points with ``p = 2`` computed on demand: only the log-domain
        fallback needs it)."""
        return self._cost if self._cost is not None else cost_matrix(self.x, self.y, self.p)

    def cost_max(self) -> float:
        """``max_ij C_ij``; for ``p = 2`` it leaves ``-C`` in the buffer for the first kernel."""
        if self._cost is not None:
            return float(self._cost.max())
        self._exponent(torch.zeros_like(self.xx), torch.zeros_like(self.yy), 1.0)
        self._neg_cost = True
        return -float(self.buf.amin())

    def _exponent(self, f: torch.Tensor, g: torch.Tensor, eps: float) -> None:
        ones_x, ones_y = (
            torch.ones_like(self.xx).unsqueeze(-1),
            torch.ones_like(self.yy).unsqueeze(-1),
        )
        lhs = torch.cat([2 * self.x / eps, ((f - self.xx) / eps).unsqueeze(-1), ones_x], -1)
        rhs = torch.cat([self.y, ones_y, ((g - self.yy) / eps).unsqueeze(-1)], -1)
        torch.bmm(lhs, rhs.transpose(-1, -2), out=self.buf)

    def kernel(self, f: torch.Tensor | None, g: torch.Tensor | None, eps: float) -> torch.Tensor:
        """``K [B, n, m]`` for potentials ``f [B, n]``, ``g [B, m]`` (None: zero potentials)."""
        if f is None and self._neg_cost:
            self.buf.mul_(1 / eps)
        elif self._cost is None:
            self._exponent(
                torch.zeros_like(self.xx) if f is None else f,
                torch.zeros_like(self.yy) if g is None else g,
                eps,
            )
        elif f is None:
            torch.mul(self._cost, -1 / eps, out=self.buf)
        else:
            torch.add((g / eps).unsqueeze(-2), self._cost, alpha=-1 / eps, out=self.buf)
            self.buf.add_((f / eps).unsqueeze(-1))
        self._neg_cost = False
        return self.buf.clamp_min_(self.floor).exp_()


def kernel_sinkhorn(
    gibbs: Gibbs,
    f0: torch.Tensor | None,
    g0: torch.Tensor | None,
    a: torch.Tensor,
    b: torch.Tensor,
    sym: bool,
    eps: float,
    damping: float,
    tol: float | None,
    max_iter: int,
    extrapolate: bool,
    trace: Trace,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    r"""Sinkhorn at a fixed ε in kernel form with absorbed potentials (Schmitzer 2019).

    With :math:`K_{ij} = e^{(f^0_i + g^0_j - C_{ij}) / \varepsilon}`, the potentials are
    :math:`f = f^0 + \varepsilon \log u`, :math:`g = g^0 + \varepsilon \log v`, and the soft-min
    update :math:`f \leftarrow \kappa\, \mathrm{softmin}_\varepsilon(\log b + g / \varepsilon)`
    (:math:`\kappa` = ``damping``, 1 when balanced) is one mat-vec:
    :math:`\log u = (\kappa - 1) f^0 / \varepsilon - \kappa \log K (b\, v)`. ``sym`` solves
    :math:`\mathrm{OT}(a, a)` with ``b = a``, ``g = f`` and averaged updates. The scalings are
    absorbed into ``f0, g0`` (a new kernel) when they grow past ``_ABSORB``. Stops once the
    potentials move less than ``tol * eps`` on the points with mass (``tol=None``: runs
    ``max_iter`` iterations); ``extrapolate`` adds a last symmetric step from both old potentials
    (the value's extrapolation, in kernel form). ``f0 [B, n]``, ``g0 [B, m]`` (None: zero).
    Returns ``(f, g)``, or None when the kernel is not representable (costs too large against
    ε: ``exp`` overflows, or a row or column is all at the floor of ``Gibbs``, which shows as
    a scaling past ``0.9 |floor|``); the caller then goes to the log domain.
    """
    kern = gibbs.kernel(f0, f0 if sym else g0, eps)
    lu = torch.zeros_like(a)
    lv = lu if sym else torch.zeros_like(b)
    f0 = torch.zeros_like(a) if f0 is None else f0
    g0 = f0 if sym else (torch.zeros_like(b) if g0 is None else g0)

    def matvec(k: torch.Tensor, w: torch.Tensor, lw: torch.Tensor) -> torch.Tensor:
        return (k @ (w * lw.exp()).unsqueeze(-1)).squeeze(-1)

    def update(h0: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if damping == 1:  # balanced: the f0 term vanishes
            return -s.log()
        return (damping - 1) * h0 / eps - damping * s.log()

    for it in range(max_iter):
        # the stopping test (a host sync) every CHECK_EVERY iterations; the potentials' move
        # is only computed for it, so the other iterations are the two mat-vecs and little else
        check = it % CHECK_EVERY == CHECK_EVERY - 1 or it == max_iter - 1
        lu_new = update(f0, matvec(kern, b, lv))
        if sym:
            lu_new = 0.5 * (lu + lu_new)
            if check:
                moved = max_move(lu_new, lu, a)
            lu = lv = lu_new
        else:
            lv_new = update(g0, matvec(kern.transpose(-1, -2), a, lu_new))
            if check:
                moved = torch.maximum(max_move(lu_new, lu, a), max_move(lv_new, lv, b))
            lu, lv = lu_new, lv_new
        trace.n_iter += 1
        if check:
            big, moved = torch.stack([lu.abs().max(), lv.abs().max()]).max().item(), moved.item()
            if not math.isfinite(big) or big > -0.9 * gibbs.floor:
                return None
            if tol is not None:
                trace.moved = moved
                if moved < tol:
                    trace.converged = True
                    break
                if it == max_iter - 1:
                    trace.converged = False
                    warn_not_converged(moved, tol, max_iter)
            if big > _ABSORB and it < max_iter - 1:  # before exp(lu) over- or underflows
                f0 = f0 + eps * lu
                g0 = f0 if sym else g0 + eps * lv
                kern = gibbs.kernel(f0, g0, eps)
                lu = torch.zeros_like(lu)
                lv = lu if sym else torch.zeros_like(lv)
    if extrapolate:
        lu_new = update(f0, matvec(kern, b, lv))
        lv = lu_new if sym else update(g0, matvec(kern.transpose(-1, -2), a, lu))
        lu = lu_new
        if not bool(torch.isfinite(lu).all() & torch.isfinite(lv).all()):
            return None
    f = f0 + eps * lu
    return f, (f if sym else g0 + eps * lv)


def dense_sinkhorn(
    gibbs: Gibbs,
    a: torch.Tensor,
    b: torch.Tensor,
    sym: bool,
    eps_list: list[float],
    damping: Callable[[float], float],
    tol: float | None,
    max_iter: int,
    extrapolate: bool,
    trace: Trace,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One problem with the dense strategy: kernel form on every ``_LEVEL_STRIDE``-th level of
    ``eps_list`` (counted back from the final ε), ``LEVEL_ITERS`` iterations on each coarse
    level, then iterations at the final ε to ``tol`` (``max_iter`` at most; ``tol=None``:
    ``LEVEL_ITERS``). Where a kernel is not representable it continues in the log domain over
    the remaining levels of ``eps_list``. ``extrapolate``: see :func:`kernel_sinkhorn`. Returns
    ``(f [B, n], g [B, m])``."""
    levels = eps_list[::-1][::_LEVEL_STRIDE][::-1]
    f = g = None
    for i, eps in enumerate(levels):
        last = i == len(levels) - 1
        polish = last and tol is not None
        out = kernel_sinkhorn(
            gibbs, f, g, a, b, sym, eps, damping(eps),
            tol if polish else None,
            max_iter if polish else LEVEL_ITERS,
            extrapolate and last,
            trace,
        )
        if out is None:  # not representable at this scale: the log domain from here on
            cost = gibbs.cost()
            sm_xy = dense_softmin(cost)
            sm_yx = None if sym else dense_softmin(cost.transpose(-1, -2))
            rest = [e for e in eps_list if e <= eps]
            return log_sinkhorn(
                sm_xy, sm_yx, a, b, rest, damping, tol, max_iter if tol is not None else 0,
                start=None if f is None else (f, g), extrapolate=extrapolate, trace=trace,
            )
        f, g = out
    return f, g
