r"""Entropic optimal transport: log-domain Sinkhorn with ε-scaling, and the Sinkhorn divergence.

Two strategies, chosen by size, solve the same problem (GeomLoss's symmetric scheme under
ε-scaling, Feydy et al. 2019, then plain Sinkhorn at the final ε until the potentials settle):

- ``dense``: runs every iteration in kernel form with absorbed potentials (Schmitzer 2019): two
  mat-vecs with ``K_ij = exp((f_i + g_j - C_ij) / eps)`` per iteration, no log-sum-exp; a new
  kernel (one ``exp`` over ``n x m``) only per ε level and when the scalings grow, written into one
  reused buffer shared by the debiasing problems; for ``p = 2`` the kernel's exponent is a single
  matrix product and ``C`` is never stored. It falls back to the log domain when the kernel is not
  representable. The schedule starts at ``max C / 30`` (not ``diameter^p``: the kernel of zero
  potentials is representable there, and an easy problem, ``eps >= max C / 30``, is solved at its
  own ε right away), keeps every 4th level of the ``scaling`` schedule and runs 8 iterations on
  each coarse level, then iterates at the final ε to ``tol``.
- ``online``: never stores an ``n x m`` matrix; each soft-min recomputes the costs in row chunks and
  reduces them with a streaming log-sum-exp, and a custom backward does the same. Memory grows as
  O(n + m) (times the chunk size). On CUDA and for ``d <= 8`` the soft-min is two
  ``torch.compile``'d reductions (row max, then row sum of exps) that recompute ``C_ij`` in
  registers, like KeOps, without any chunk.

Gradients follow the envelope theorem: the loop runs without autograd, and one last extrapolation
step at the final ε carries the gradient to ``x``, ``y``, ``a`` and ``b``.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable
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
from wdist._cost import cost_matrix

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

Softmin = Callable[[float, torch.Tensor], torch.Tensor]


def _safe_log(w: torch.Tensor) -> torch.Tensor:
    """``log w`` with ``-inf`` for zero weights (padding masks) and no NaN in the gradient."""
    pos = w > 0
    return torch.where(pos, torch.log(torch.where(pos, w, torch.ones_like(w))), -math.inf)


def epsilon_schedule(p: float, diameter: float, blur: float, scaling: float) -> list[float]:
    """ε-scaling: ``diameter^p``, down by a factor ``scaling^p`` per iteration, to ``blur^p``."""
    if diameter <= blur:
        return [blur**p]
    steps = int(math.floor(math.log(blur / diameter) / math.log(scaling)))
    return [diameter**p] + [(diameter * scaling**k) ** p for k in range(1, steps + 1)] + [blur**p]


# Dense strategy (kernel form). The schedule starts at ``max C / _KERNEL_RANGE``, where the
# kernel ``exp(-C / eps)`` of zero potentials is representable, instead of ``diameter^p`` (the
# levels above it only cost exps), keeps every ``_LEVEL_STRIDE``-th level of the ``scaling``
# schedule counted back from the final ε, and runs ``_LEVEL_ITERS`` Sinkhorn iterations (two
# mat-vecs each) on each coarse level: building a kernel costs about as much as 7 iterations at
# n = 10^4. Convergence and representability are checked every ``_CHECK_EVERY`` iterations (one
# device sync each).
_KERNEL_RANGE = 30.0
_LEVEL_STRIDE = 4
_LEVEL_ITERS = 8
_CHECK_EVERY = 5
_ABSORB = 30.0  # absorb the scalings into the potentials once |log u| or |log v| exceeds this


def _dense_softmin(cost: torch.Tensor) -> Softmin:
    """``f_i = -eps log sum_j exp(h_j - C_ij / eps)`` for a stored ``C [B, n, m]``."""

    def softmin(eps: float, h: torch.Tensor) -> torch.Tensor:
        return -eps * torch.logsumexp(torch.add(h.unsqueeze(-2), cost, alpha=-1 / eps), dim=-1)

    return softmin


class _Gibbs:
    r"""Gibbs kernel :math:`K_{ij} = e^{(f_i + g_j - C_{ij}) / \varepsilon}` of one problem
    (Schmitzer's absorbed potentials), written into one reused ``[B, n, m]`` buffer: a fresh
    ``n x m`` tensor per build costs more in page faults than the ``exp`` itself.

    For ``p = 2`` the exponent is one batched matrix product of augmented points,
    :math:`[2 x_i, f_i - |x_i|^2, 1] \cdot [y_j, 1, g_j - |y_j|^2] / \varepsilon`, on points
    centred by ``sinkhorn`` (fewer cancelled digits), and ``C`` is never stored; for other
    ``p`` it is computed from a stored ``C`` in three in-place passes. Exponents below
    ``floor = log(tiny) + 1`` (about -86 in float32) are raised to it before the ``exp``: entries
    that would be subnormal or zero become ``e^floor`` (1e-38 in float32, so no row sum moves by
    more than ``m * 1e-38``), and ``exp`` stays on its fast path (subnormal results made it 7x
    slower at ``eps = 0.01``, n = 10^4).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, p: float, buf: torch.Tensor) -> None:
        self.p, self.buf = p, buf
        self.floor = math.log(torch.finfo(buf.dtype).tiny) + 1
        self._neg_cost = False  # the buffer holds -C (left there by cost_max)
        self.x, self.y = x, y  # centred by the caller
        if p == 2:
            self.xx, self.yy = (x**2).sum(-1), (y**2).sum(-1)
            self._cost: torch.Tensor | None = None
        else:
            self._cost = cost_matrix(x, y, p)

    def cost(self) -> torch.Tensor:
        """``C [B, n, m]`` (for ``p = 2`` computed on demand: only the log-domain fallback needs
        it)."""
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


def _kernel_sinkhorn(
    gibbs: _Gibbs,
    f0: torch.Tensor | None,
    g0: torch.Tensor | None,
    a: torch.Tensor,
    b: torch.Tensor,
    sym: bool,
    eps: float,
    damping: float,
    tol: float,
    max_iter: int,
    extrapolate: bool,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    r"""Sinkhorn at a fixed ε in kernel form with absorbed potentials (Schmitzer 2019).

    With :math:`K_{ij} = e^{(f^0_i + g^0_j - C_{ij}) / \varepsilon}`, the potentials are
    :math:`f = f^0 + \varepsilon \log u`, :math:`g = g^0 + \varepsilon \log v`, and the soft-min
    update :math:`f \leftarrow \kappa\, \mathrm{softmin}_\varepsilon(\log b + g / \varepsilon)`
    (:math:`\kappa` = ``damping``, 1 when balanced) is one mat-vec:
    :math:`\log u = (\kappa - 1) f^0 / \varepsilon - \kappa \log K (b\, v)`. ``sym`` solves
    :math:`\mathrm{OT}(a, a)` with ``b = a``, ``g = f`` and averaged updates. The scalings are
    absorbed into ``f0, g0`` (a new kernel) when they grow past ``_ABSORB``. Stops once the
    potentials move less than ``tol * eps`` on the points with mass (``tol = 0``: run
    ``max_iter`` iterations); ``extrapolate`` adds a last symmetric step from both old potentials
    (the value's extrapolation, in kernel form). ``f0 [B, n]``, ``g0 [B, m]`` (None: zero).
    Returns ``(f, g)``, or None when the kernel is not representable (costs too large against
    ε: ``exp`` overflows, or a row or column is all at the floor of ``_Gibbs``, which shows as
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
        # the stopping test (a host sync) every _CHECK_EVERY iterations; the potentials' move
        # is only computed for it, so the other iterations are the two mat-vecs and little else
        check = it % _CHECK_EVERY == _CHECK_EVERY - 1 or it == max_iter - 1
        lu_new = update(f0, matvec(kern, b, lv))
        if sym:
            lu_new = 0.5 * (lu + lu_new)
            if check:
                moved = _max_move(lu_new, lu, a)
            lu = lv = lu_new
        else:
            lv_new = update(g0, matvec(kern.transpose(-1, -2), a, lu_new))
            if check:
                moved = torch.maximum(_max_move(lu_new, lu, a), _max_move(lv_new, lv, b))
            lu, lv = lu_new, lv_new
        if check:
            big, moved = torch.stack([lu.abs().max(), lv.abs().max()]).max().item(), moved.item()
            if not math.isfinite(big) or big > -0.9 * gibbs.floor:
                return None
            if moved < tol:
                break
            if it == max_iter - 1 and tol > 0:
                _warn_not_converged(moved, tol, max_iter)
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


def _warn_not_converged(moved: float, tol: float, max_iter: int) -> None:
    warnings.warn(
        f"sinkhorn did not reach tol={tol:g} within max_iter={max_iter} iterations at the final "
        f"blur (the potentials still moved by {moved:.2g} * eps in the last one; the test asks "
        f"for {tol:g} * eps): the plan's marginals and the value are less accurate than tol "
        "says. Raise max_iter, or use a larger blur or tol.",
        RuntimeWarning,
        stacklevel=_caller_level(),
    )


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside wdist: warnings point at the user's call."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def _log_sinkhorn(
    sm_xy: Softmin,
    sm_yx: Softmin | None,
    a: torch.Tensor,
    b: torch.Tensor,
    eps_list: list[float],
    damp: Callable[[float], float],
    tol: float | None,
    max_iter: int,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
    extrapolate: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Log-domain Sinkhorn on one problem :math:`\mathrm{OT}_\varepsilon(a, b)`.

    ``sm_xy(eps, h)`` is the soft-min over ``y`` (gives ``f [B, n]``), ``sm_yx`` the one over
    ``x``; ``sm_yx=None`` solves the symmetric :math:`\mathrm{OT}(a, a)` (``b = a``, ``g = f``).
    ε-scaling over ``eps_list`` with symmetric averaged updates (GeomLoss), then alternating
    updates at the last ε until the potentials move less than ``tol * eps`` (None: none).
    ``start``: potentials ``(f, g)`` to continue from; otherwise one soft-min at ``eps_list[0]``.
    ``extrapolate`` adds a last symmetric step from both old potentials.
    """
    sym = sm_yx is None
    a_log, b_log = _safe_log(a), _safe_log(b)
    if start is None:
        k = damp(eps_list[0])
        f = k * sm_xy(eps_list[0], b_log)
        g = f if sym else k * sm_yx(eps_list[0], a_log)
    else:
        f, g = start
    for eps in eps_list:
        k = damp(eps)
        if sym:
            f = g = 0.5 * (f + k * sm_xy(eps, a_log + f / eps))
        else:
            ft, gt = k * sm_xy(eps, b_log + g / eps), k * sm_yx(eps, a_log + f / eps)
            f, g = 0.5 * (f + ft), 0.5 * (g + gt)
    eps, k = eps_list[-1], damp(eps_list[-1])
    for it in range(max_iter if tol is not None else 0):
        f_old, g_old = f, g
        if sym:
            f = g = 0.5 * (f + k * sm_xy(eps, a_log + f / eps))
            moved = _max_move(f, f_old, a)
        else:
            f = k * sm_xy(eps, b_log + g / eps)
            g = k * sm_yx(eps, a_log + f / eps)
            moved = torch.maximum(_max_move(f, f_old, a), _max_move(g, g_old, b))
        if (it % _CHECK_EVERY == 0 or it == max_iter - 1) and float(moved) < tol * eps:
            break
    else:
        if tol is not None and max_iter > 0:
            _warn_not_converged(float(moved) / eps, tol, max_iter)
    return _extrapolate(sm_xy, sm_yx, a, b, f, g, eps, k) if extrapolate else (f, g)


def _extrapolate(
    sm_xy: Softmin,
    sm_yx: Softmin | None,
    a: torch.Tensor,
    b: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    eps: float,
    k: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One symmetric log-domain step from both old potentials, ``f <- k softmin(log b + g / eps)``
    and ``g <- k softmin(log a + f / eps)`` (``sm_yx=None``: the symmetric problem, ``g = f``)."""
    f_new = k * sm_xy(eps, _safe_log(b) + g / eps)
    return f_new, (f_new if sm_yx is None else k * sm_yx(eps, _safe_log(a) + f / eps))


def _dense_sinkhorn(
    gibbs: _Gibbs,
    a: torch.Tensor,
    b: torch.Tensor,
    sym: bool,
    eps_list: list[float],
    damp: Callable[[float], float],
    tol: float | None,
    max_iter: int,
    extrapolate: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One problem with the dense strategy: kernel form on every ``_LEVEL_STRIDE``-th level of
    ``eps_list`` (counted back from the final ε), ``_LEVEL_ITERS`` iterations on each coarse
    level, then iterations at the final ε to ``tol`` (``max_iter`` at most; ``tol=None``:
    ``_LEVEL_ITERS``). Where a kernel is not representable it continues in the log domain over
    the remaining levels of ``eps_list``. ``extrapolate``: see ``_kernel_sinkhorn``. Returns
    ``(f [B, n], g [B, m])``."""
    levels = eps_list[::-1][::_LEVEL_STRIDE][::-1]
    f = g = None
    for i, eps in enumerate(levels):
        last = i == len(levels) - 1
        polish = last and tol is not None
        out = _kernel_sinkhorn(
            gibbs,
            f,
            g,
            a,
            b,
            sym,
            eps,
            damp(eps),
            tol if polish else 0.0,
            max_iter if polish else _LEVEL_ITERS,
            extrapolate and last,
        )
        if out is None:  # not representable at this scale: the log domain from here on
            cost = gibbs.cost()
            sm_xy = _dense_softmin(cost)
            sm_yx = None if sym else _dense_softmin(cost.transpose(-1, -2))
            rest = [e for e in eps_list if e <= eps]
            start = None if f is None else (f, g)
            return _log_sinkhorn(sm_xy, sm_yx, a, b, rest, damp, tol, max_iter, start, extrapolate)
        f, g = out
    return f, g


# Devices on which the online soft-min runs through ``torch.compile`` (for ``d <= _FUSED_MAX_DIM``):
# inductor turns each of the two broadcast reductions below into one kernel that recomputes
# ``C_ij`` on the fly and never writes a ``[B, n, m]`` block to memory (the eager path is
# memory-bound on GPUs). A single ``logsumexp`` would not do: inductor stores its argument between
# the max and the sum passes. Above ``_FUSED_MAX_DIM`` inductor no longer unrolls the sum over the
# coordinates, and the eager path's matrix product is faster. Tests add "cpu" to check the
# compiled path against the eager one.
_COMPILE_DEVICES = {"cuda"}
_FUSED_MAX_DIM = 8
_fused: dict[str, Any] = {}  # "kernels": the compiled triple, "failed": set after a failure


def _broadcast_cost(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    sq = ((x.unsqueeze(-2) - y.unsqueeze(-3)) ** 2).sum(-1)
    if p == 2:
        return sq
    dist = sq.sqrt()
    return dist if p == 1 else dist.pow(p)


def _row_max_kernel(x, y, h, inv_eps, p: float):
    """``max_j h_j - C_ij / eps``: the first pass of a streaming log-sum-exp."""
    return torch.amax(h.unsqueeze(-2) - _broadcast_cost(x, y, p) * inv_eps, dim=-1)


def _row_sumexp_kernel(x, y, h, shift, inv_eps, p: float):
    """``sum_j exp(h_j - C_ij / eps - shift_i)``: the second pass."""
    arg = h.unsqueeze(-2) - _broadcast_cost(x, y, p) * inv_eps - shift.unsqueeze(-1)
    return torch.exp(arg).sum(-1)


def _lse_grad_kernel(x, y, h, f, grad, inv_eps, p: float):
    """Row block's share of the soft-min's gradients w.r.t. ``x``, ``y`` and ``-h / eps``."""
    c = _broadcast_cost(x, y, p)
    w = torch.exp(h.unsqueeze(-2) + (f.unsqueeze(-1) - c) * inv_eps) * grad.unsqueeze(-1)
    if p == 2:
        k = 2 * w
    else:
        dist = c.pow(1 / p) if p != 1 else c
        k = torch.where(dist > 0, p * w * dist.clamp_min(1e-30).pow(p - 2), 0)
    gx = x * k.sum(-1, keepdim=True) - k @ y
    gy = y * k.sum(-2).unsqueeze(-1) - k.transpose(-1, -2) @ x
    return gx, gy, w.sum(-2)


def _fused_kernels(x: torch.Tensor) -> tuple[Callable, Callable, Callable] | None:
    """The compiled (row max, row sum-exp, backward) kernels for points ``x``, or None to use the
    eager code. They are compiled once per dtype, ``d`` and ``p``: ``1 / eps`` comes in as a 0-dim
    tensor and the point counts are marked dynamic."""
    if (
        x.device.type not in _COMPILE_DEVICES
        or x.shape[-1] > _FUSED_MAX_DIM
        or _fused.get("failed")
    ):
        return None
    if "kernels" not in _fused:
        _fused["kernels"] = tuple(
            torch.compile(k) for k in (_row_max_kernel, _row_sumexp_kernel, _lse_grad_kernel)
        )
    return _fused["kernels"]


def _dynamic_points(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mark the point-count dim (last but one, last for potentials) dynamic and keep ``d``
    static, so one compiled kernel serves every ``n``, ``m`` and chunk (a static ``d`` lets
    inductor unroll the coordinate sum into the reduction over ``j``)."""
    for t in tensors:
        torch._dynamo.maybe_mark_dynamic(t, t.dim() - (2 if t.dim() == 3 else 1))
    return tensors


def _disable_fused(err: Exception) -> None:
    _fused["failed"] = True
    warnings.warn(
        f"torch.compile of the online soft-min failed ({type(err).__name__}: {err}); "
        "using the eager implementation",
        RuntimeWarning,
        stacklevel=_caller_level(),
    )


class _OnlineSoftmin(torch.autograd.Function):
    """Streaming soft-min over row chunks; backward recomputes the chunks (O(n + m) memory)."""

    @staticmethod
    def forward(ctx, x, y, h, eps: float, p: float, chunk: int):
        out = None
        kernels = _fused_kernels(x)
        if kernels is not None:
            inv_eps = torch.tensor(1 / eps, dtype=x.dtype, device=x.device)
            try:  # all rows at once: the compiled reductions need O(n + m) memory
                xs, ys, hs = _dynamic_points(x.detach(), y.detach(), h.detach())
                shift = kernels[0](xs, ys, hs, inv_eps, p)
                shift = torch.where(torch.isfinite(shift), shift, 0)  # rows with no mass
                (shift,) = _dynamic_points(shift)
                out = -eps * (shift + kernels[1](xs, ys, hs, shift, inv_eps, p).log())
            except Exception as err:  # noqa: BLE001 - any compiler failure: use the eager path
                _disable_fused(err)
        if out is None:
            out = torch.empty(x.shape[:-1], dtype=x.dtype, device=x.device)
            for s in range(0, x.shape[-2], chunk):
                c = cost_matrix(x[..., s : s + chunk, :], y, p)
                out[..., s : s + chunk] = -eps * torch.logsumexp(h.unsqueeze(-2) - c / eps, dim=-1)
        ctx.save_for_backward(x, y, h, out)
        ctx.eps, ctx.p, ctx.chunk = eps, p, chunk
        return out

    @staticmethod
    def backward(ctx, grad):
        x, y, h, out = ctx.saved_tensors
        eps, p, chunk = ctx.eps, ctx.p, ctx.chunk
        need_x, need_y, need_h = ctx.needs_input_grad[:3]
        gx = torch.zeros_like(x) if need_x else None
        gy = torch.zeros_like(y) if need_y else None
        gh = torch.zeros_like(h) if need_h else None
        kernels = _fused_kernels(x)
        if kernels is not None:
            inv_eps = torch.tensor(1 / eps, dtype=x.dtype, device=x.device)
            x, y, h = x.detach(), y.detach(), h.detach()
            try:
                gx_f, gy_f, gh_f = torch.zeros_like(x), torch.zeros_like(y), torch.zeros_like(h)
                for s in range(0, x.shape[-2], chunk):
                    sl = slice(s, s + chunk)
                    gx_c, gy_c, gh_c = kernels[2](
                        *_dynamic_points(x[..., sl, :], y, h, out[..., sl], grad[..., sl]),
                        inv_eps,
                        p,
                    )
                    gx_f[..., sl, :] = gx_c
                    gy_f += gy_c
                    gh_f -= eps * gh_c
                return (
                    gx_f if need_x else None,
                    gy_f if need_y else None,
                    gh_f if need_h else None,
                    None,
                    None,
                    None,
                )
            except Exception as err:  # noqa: BLE001 - any compiler failure: use the eager path
                _disable_fused(err)
        for s in range(0, x.shape[-2], chunk):
            xc = x[..., s : s + chunk, :]
            c = cost_matrix(xc, y, p)
            # P_ij = exp(h_j - C_ij/eps + f_i/eps): rows sum to one; dF/dC_ij = G_i P_ij
            w = torch.exp(h.unsqueeze(-2) - c / eps + out[..., s : s + chunk, None] / eps)
            w = w * grad[..., s : s + chunk, None]
            if need_h:
                gh -= eps * w.sum(-2)
            if need_x or need_y:
                if p == 2:
                    k = 2 * w
                else:
                    dist = c.pow(1 / p) if p != 1 else c
                    k = torch.where(dist > 0, p * w * dist.clamp_min(1e-30).pow(p - 2), 0)
                if need_x:
                    gx[..., s : s + chunk, :] = xc * k.sum(-1, keepdim=True) - k @ y
                if need_y:
                    gy += y * k.sum(-2).unsqueeze(-1) - k.transpose(-1, -2) @ xc
        return gx, gy, gh, None, None, None


class _UnbalancedWeight(torch.autograd.Function):
    r"""``(rho + eps/2) t`` forward, ``(rho + eps) * grad`` backward. The unbalanced dual value is
    :math:`(\rho + \varepsilon/2)(\langle a, 1 - e^{-f/\rho}\rangle + \langle b, 1 -
    e^{-g/\rho}\rangle)` at the optimum, but its derivatives (envelope theorem on the dual
    objective, where the plan's mass term is eliminated) carry :math:`\rho + \varepsilon`
    (Séjourné et al. 2019; GeomLoss's ``UnbalancedWeight``)."""

    @staticmethod
    def forward(ctx, t, rho: float, eps: float):
        ctx.scale = rho + eps
        return (rho + eps / 2) * t

    @staticmethod
    def backward(ctx, grad):
        return ctx.scale * grad, None, None


class _MassTerm(torch.autograd.Function):
    r"""The dual value's mass terms that ``_UnbalancedWeight``'s form leaves out:
    :math:`\varepsilon (m_a m_b - (m_a + m_b) / 2)` (zero for unit masses), with the envelope
    theorem's derivatives :math:`\varepsilon (m_b - 1)` in :math:`m_a` and
    :math:`\varepsilon (m_a - 1)` in :math:`m_b` (what completes ``_UnbalancedWeight``'s
    :math:`(\rho + \varepsilon)(1 - e^{-f/\rho})` to the exact gradient). In the debiased
    divergence these terms cancel (Séjourné et al. 2019)."""

    @staticmethod
    def forward(ctx, mass_a, mass_b, eps: float):
        ctx.save_for_backward(mass_a, mass_b)
        ctx.eps = eps
        return eps * (mass_a * mass_b - 0.5 * (mass_a + mass_b))

    @staticmethod
    def backward(ctx, grad):
        mass_a, mass_b = ctx.saved_tensors
        return ctx.eps * grad * (mass_b - 1), ctx.eps * grad * (mass_a - 1), None


def _max_move(new: torch.Tensor, old: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Largest change of a potential over the points that carry mass."""
    return torch.where(w > 0, (new - old).abs(), 0).max()


def _online_softmin(x: torch.Tensor, y: torch.Tensor, p: float, chunk: int) -> Softmin:
    def softmin(eps: float, h: torch.Tensor) -> torch.Tensor:
        return _OnlineSoftmin.apply(x, y, h, eps, p, chunk)

    return softmin


def _chunk_size(batch: int, m: int, device: torch.device) -> int:
    budget = 2**28 if device.type == "cuda" else 2**23  # elements per [B, chunk, m] block
    return max(1, min(65536, budget // max(1, batch * m)))


def sinkhorn(
    x: Any,
    y: Any,
    a: Any = None,
    b: Any = None,
    p: float = 2,
    blur: float = 0.05,
    debias: bool = True,
    scaling: float = 0.9,
    reach: float | None = None,
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
    from ``max C / 30`` (dense strategy, see the module docstring).

    Args:
        x: ``[n, d]`` or ``[B, n, d]`` points.  y: ``[m, d]`` or ``[B, m, d]``.
        a, b: non-negative weights ``[(B,) n]``, ``[(B,) m]`` (uniform, total mass 1, if None);
            normalised to 1 in the balanced case (``reach=None``), kept as given with ``reach``
            (unbalanced OT compares measures of unequal mass). Zeros are allowed (use them to
            mask padded points in a batch).
        p: ground cost exponent (>= 1).  blur: length scale of the entropic blur (> 0).
        debias: return the Sinkhorn divergence :math:`S_\varepsilon` instead of
            :math:`\mathrm{OT}_\varepsilon`.
        scaling: ε-scaling ratio in (0, 1); closer to 1 = more iterations, more accuracy.
        reach: unbalanced OT length scale (None: balanced).
        diameter: upper bound on the point distances: the schedule starts at ``diameter^p``
            (default: ``max C / 30`` for the dense strategy, the bounding box for the online one).
        tol: after the ε schedule, keep iterating at the final ε until the potentials move less
            than ``tol * ε`` on every point with mass: then each point's marginal of the plan is
            off by a relative error of about ``tol`` (max norm; POT's ``stopThr`` bounds the
            2-norm of the absolute error, so ``tol = stopThr * sqrt(n)`` is at least as strict
            for uniform weights). The returned dual value is typically much closer than ``tol``: its
            error is second order in the potentials' error. None stops right after the schedule
            (GeomLoss's behaviour: fast, accurate value, less accurate plan).
        max_iter: cap on those extra iterations; reaching it before ``tol`` gives a
            ``RuntimeWarning``, never a silent stop.
        backend: ``"dense"``, ``"online"`` (O(n + m) memory) or ``"auto"``: dense when what it
            holds fits in ``2^28`` elements (1 GB in float32): without autograd one ``n x m``
            buffer for the largest problem (twice that for ``p != 2``), with autograd the costs
            of every problem.
        return_plan: also return the plan
            :math:`P_{ij} = a_i b_j e^{(f_i + g_j - C_{ij})/\varepsilon}` of
            :math:`\mathrm{OT}_\varepsilon` (dense backend only).
        return_potentials: also return the dual potentials ``f [(B,) n]``, ``g [(B,) m]``.

    Returns:
        cost of shape ``[]`` (or ``[B]``); then ``plan`` if asked, then ``f, g`` if asked.
    """
    p = check_p(p)
    check_positive(blur, "blur")
    check_positive(reach, "reach", allow_none=True)
    if not isinstance(scaling, (int, float)) or not 0 < scaling < 1:
        raise ValueError(f"scaling must be in (0, 1), got {scaling!r}")
    check_positive(tol, "tol", allow_none=True)
    check_positive(diameter, "diameter", allow_none=True)
    max_iter = check_int(max_iter, "max_iter", 1)
    for flag, name in ((debias, "debias"), (return_plan, "return_plan"),
                       (return_potentials, "return_potentials")):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if backend not in ("auto", "dense", "online"):
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

    # Without autograd the last extrapolation is part of the solve (kernel form when dense);
    # with it, it comes after the loop on live costs and carries the envelope-theorem gradient.
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, y, a, b))
    if backend == "auto":
        # What the dense strategy holds at once: with autograd, the live costs of every problem;
        # without, one kernel buffer for the largest problem (plus its stored cost if p != 2).
        sizes = [n * m] + ([n * n, m * m] if debias else [])
        elems = bsz * (sum(sizes) if needs_grad else max(sizes) * (1 if p == 2 else 2))
        limit = 2**28  # 1 GB in float32
        backend = "dense" if elems <= limit else "online"
    if return_plan and backend == "online":
        raise ValueError(
            "return_plan needs backend='dense'; the online backend never stores the "
            "n x m plan (use return_potentials=True instead)"
        )

    # Costs depend on differences only: centre both clouds on their weighted mean (a constant,
    # so no gradient through it), else |x|^2 + |y|^2 - 2 x.y and the gradients' x sum(k) - k y
    # lose every digit for points far from the origin (float32 at 1e3: the value's sign).
    centre = 0.5 * ((a.unsqueeze(-1) * x).sum(-2) + (b.unsqueeze(-1) * y).sum(-2)).detach()
    x, y = x - centre.unsqueeze(-2), y - centre.unsqueeze(-2)
    spread = point_spread(x, y)
    check_cost_range(spread, p, x.dtype)
    rho = None if reach is None else reach**p

    def damp(eps: float) -> float:
        return 1.0 if rho is None else 1.0 / (1.0 + eps / rho)

    # OT(a, b), then OT(a, a) and OT(b, b) when debiased: independent problems, solved in turn.
    problems = [(x, y, a, b, False)]
    if debias:
        problems += [(x, x, a, a, True), (y, y, b, b, True)]
    solved: list[tuple[torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        if backend == "dense":
            buf = x.new_empty(bsz * max(u.shape[-2] * v.shape[-2] for u, v, *_ in problems))
            for u, v, wu, wv, sym in problems:
                shape = (bsz, u.shape[-2], v.shape[-2])
                gibbs = _Gibbs(u.detach(), v.detach(), p, buf[: math.prod(shape)].view(shape))
                # Start where the costs need it: at eps >= max C / _KERNEL_RANGE the kernel of
                # zero potentials is representable, and the levels above it only cost exps.
                top = diameter or (gibbs.cost_max() / _KERNEL_RANGE) ** (1 / p)
                eps_list = epsilon_schedule(p, float(top or blur), float(blur), float(scaling))
                solved.append(
                    _dense_sinkhorn(
                        gibbs, wu, wv, sym, eps_list, damp, tol, max_iter, not needs_grad
                    )
                )
            del buf, gibbs
        else:
            chunk = _chunk_size(bsz, max(n, m), x.device)
            # Each soft-min differentiates through its first argument only (GeomLoss's
            # convention): the extrapolation carries the gradient exactly once per point cloud.
            eps_list = epsilon_schedule(
                p, float(diameter or spread or blur), float(blur), float(scaling)
            )
            softmins = []
            for u, v, wu, wv, sym in problems:
                sm_uv = _online_softmin(u, v.detach(), p, chunk)
                sm_vu = None if sym else _online_softmin(v, u.detach(), p, chunk)
                softmins.append((sm_uv, sm_vu))
                solved.append(
                    _log_sinkhorn(
                        sm_uv,
                        sm_vu,
                        wu,
                        wv,
                        eps_list,
                        damp,
                        tol,
                        max_iter,
                        extrapolate=not needs_grad,
                    )
                )

    eps, k = float(blur) ** p, damp(float(blur) ** p)
    if needs_grad:  # the last extrapolation, with autograd on
        for i, (u, v, wu, wv, sym) in enumerate(problems):
            if backend == "dense":
                sm_uv = _dense_softmin(cost_matrix(u, v.detach(), p))
                sm_vu = None if sym else _dense_softmin(cost_matrix(v, u.detach(), p))
            else:
                sm_uv, sm_vu = softmins[i]
            # the weights' gradient is the envelope theorem's direct term (below), not a path
            # through the soft-mins: those see detached weights
            solved[i] = _extrapolate(sm_uv, sm_vu, wu.detach(), wv.detach(), *solved[i], eps, k)
    (f_ba, g_ab), *sym_solved = solved
    if debias:
        f_aa, g_bb = sym_solved[0][0], sym_solved[1][0]

    def dot(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (w * v).sum(-1)

    if rho is None:
        cost = dot(a, f_ba) + dot(b, g_ab)
        if debias:
            cost = cost - dot(a, f_aa) - dot(b, g_bb)
    else:
        # value (rho + eps/2) * (...), gradient (rho + eps) * (...): GeomLoss's UnbalancedWeight
        def weight(t: torch.Tensor) -> torch.Tensor:
            return _UnbalancedWeight.apply(t, rho, eps)

        if debias:
            cost = weight(
                dot(a, torch.exp(-f_aa / rho) - torch.exp(-f_ba / rho))
                + dot(b, torch.exp(-g_bb / rho) - torch.exp(-g_ab / rho))
            )
        else:
            cost = weight(
                dot(a, 1 - torch.exp(-f_ba / rho)) + dot(b, 1 - torch.exp(-g_ab / rho))
            ) + _MassTerm.apply(a.sum(-1), b.sum(-1), eps)
    if debias:
        # S_eps >= 0; only round-off of a converged solve can dip below it.
        cost = cost.clamp_min(0)

    outputs: list[torch.Tensor] = [cost if batched else cost[0]]
    if return_plan:
        plan = torch.exp((f_ba.unsqueeze(-1) + g_ab.unsqueeze(-2) - cost_matrix(x, y, p)) / eps)
        plan = plan * a.unsqueeze(-1) * b.unsqueeze(-2)
        outputs.append(plan if batched else plan[0])
    if return_potentials:
        outputs += [f_ba, g_ab] if batched else [f_ba[0], g_ab[0]]
    return outputs[0] if len(outputs) == 1 else tuple(outputs)
