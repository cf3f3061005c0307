r"""Entropic optimal transport: log-domain Sinkhorn with ε-scaling, and the Sinkhorn divergence.

Two strategies, chosen by size, solve the same problem (GeomLoss's symmetric scheme under
ε-scaling, Feydy et al. 2019, then plain Sinkhorn at the final ε until the potentials settle):

- ``dense``: stores the cost matrices ``C_xy [B, n, m]`` (and ``C_xx``, ``C_yy`` when debiased)
  and runs the updates in kernel form with absorbed potentials (Schmitzer 2019), falling back to
  the log domain when the kernel is not representable. One ``exp`` over ``C`` costs about as much
  as 20 mat-vecs, so the schedule is made of fewer, better-solved levels: it starts at
  ``max C / 30`` (not ``diameter^p``: the first soft-min there already gives a representable
  kernel, and an easy problem, ``eps >= max C / 30``, is solved at its own ε right away), keeps
  every 4th level of the ``scaling`` schedule and runs 8 Sinkhorn iterations (mat-vecs) on each.
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
import warnings
from collections.abc import Callable
from typing import Any

import torch

from wdist._checks import (
    as_tensor,
    check_cost_range,
    check_p,
    check_points,
    check_positive,
    check_same_dim,
    check_weights,
    point_spread,
)
from wdist._cost import cost_matrix

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


# Dense ε-scaling (kernel form): start at ``max C / _KERNEL_RANGE`` instead of ``diameter^p`` (the
# first soft-min there already gives a representable kernel; the levels above only cost exps), keep
# every ``_LEVEL_STRIDE``-th level of the schedule, and run ``_LEVEL_ITERS`` Sinkhorn iterations
# (mat-vecs) on each level's kernel: one ``exp`` over ``C`` costs about as much as 20 mat-vecs.
_KERNEL_RANGE = 30.0
_LEVEL_STRIDE = 4
_LEVEL_ITERS = 8


def _dense_softmin(cost: torch.Tensor) -> Softmin:
    """``f_i = -eps log sum_j exp(h_j - C_ij / eps)`` for a stored ``C [B, n, m]``."""

    def softmin(eps: float, h: torch.Tensor) -> torch.Tensor:
        return -eps * torch.logsumexp(torch.add(h.unsqueeze(-2), cost, alpha=-1 / eps), dim=-1)

    return softmin


def _absorbed_kernel(cost: torch.Tensor, f: torch.Tensor, g: torch.Tensor, eps: float):
    """``K_ij = exp((f_i + g_j - C_ij) / eps)``: the Gibbs kernel with the potentials absorbed."""
    return (
        torch.add((g / eps).unsqueeze(-2), cost, alpha=-1 / eps)
        .add_((f / eps).unsqueeze(-1))
        .exp_()
    )


def _kernel_polish(
    cost: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor | None,
    a: torch.Tensor,
    b: torch.Tensor,
    eps: float,
    damping: float,
    tol: float,
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Sinkhorn at a fixed ε in kernel form with absorbed potentials (Schmitzer 2019).

    With ``K_ij = exp((f_i + g_j - C_ij) / eps)`` built once from the log-domain potentials, an
    iteration is two mat-vecs on the scalings ``f = f0 + eps lu``, ``g = g0 + eps lv`` instead of
    two log-sum-exps over ``C``; the scalings are absorbed into ``f0, g0`` (one ``exp``) when they
    grow. ``g=None`` solves the symmetric problem ``OT(a, a)`` with averaged updates.
    Stops when the potentials move less than ``tol * eps``. Returns None when the kernel is not
    representable (costs so large against ε that ``exp`` over- or underflows): the caller then
    stays in the log domain.
    """
    sym = g is None
    f0, g0 = f, (f if sym else g)
    kern = _absorbed_kernel(cost, f0, g0, eps)
    lu, lv = torch.zeros_like(f0), torch.zeros_like(g0)
    for it in range(max_iter):
        s = (kern @ (b * lv.exp()).unsqueeze(-1)).squeeze(-1)
        lu_new = torch.where(a > 0, (damping - 1) * f0 / eps - damping * s.log(), 0)
        if sym:
            lu_new = 0.5 * (lu + lu_new)
            moved, lu, lv = (lu_new - lu).abs().max(), lu_new, lu_new
        else:
            t = (kern.transpose(-1, -2) @ (a * lu_new.exp()).unsqueeze(-1)).squeeze(-1)
            lv_new = torch.where(b > 0, (damping - 1) * g0 / eps - damping * t.log(), 0)
            moved = torch.maximum((lu_new - lu).abs().max(), (lv_new - lv).abs().max())
            lu, lv = lu_new, lv_new
        if it % 5 == 0:
            big, moved = torch.stack([lu.abs().max(), lv.abs().max()]).max().item(), moved.item()
            if not math.isfinite(big):
                return None
            if moved < tol:
                break
            if big > 30:  # absorb the scalings before exp(lu) over- or underflows
                f0, g0 = f0 + eps * lu, (f0 + eps * lu) if sym else g0 + eps * lv
                kern = _absorbed_kernel(cost, f0, g0, eps)
                lu, lv = torch.zeros_like(f0), torch.zeros_like(g0)
    return f0 + eps * lu, None if sym else g0 + eps * lv


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
        stacklevel=3,
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
    max_iter: int | None = None,
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
    :math:`\rho = \text{reach}^p` (unbalanced OT). Solver: symmetric Sinkhorn updates under
    ε-scaling from ``diameter^p`` down to ``blur^p`` by factors ``scaling^p`` (GeomLoss's
    scheme), in the log domain (online strategy) or in kernel form on fewer, better-solved levels
    from ``max C / 30`` (dense strategy, see the module docstring).

    Args:
        x: ``[n, d]`` or ``[B, n, d]`` points.  y: ``[m, d]`` or ``[B, m, d]``.
        a, b: non-negative weights ``[(B,) n]``, ``[(B,) m]`` (uniform if None), normalised to 1;
            zeros are allowed (use them to mask padded points in a batch).
        p: ground cost exponent (>= 1).  blur: length scale of the entropic blur (> 0).
        debias: return the Sinkhorn divergence :math:`S_\varepsilon` instead of
            :math:`\mathrm{OT}_\varepsilon`.
        scaling: ε-scaling ratio in (0, 1); closer to 1 = more iterations, more accuracy.
        reach: unbalanced OT length scale (None: balanced).
        diameter: upper bound on the point distances: the schedule starts at ``diameter^p``
            (default: ``max C / 30`` for the dense strategy, the bounding box for the online one).
        tol: after the ε schedule, keep iterating at the final ε until the potentials move less
            than ``tol * ε`` (a relative marginal error of about ``tol``); None stops right after
            the schedule (GeomLoss's behaviour: fast, accurate value, less accurate plan).
        max_iter: cap on those extra iterations (default 1000 for the dense strategy, where one
            is two mat-vecs, and 100 for the online one, where one is two log-sum-exps).
        backend: ``"dense"``, ``"online"`` (O(n + m) memory) or ``"auto"``.
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
    a = check_weights(a, "a", (bsz, n) if batched else (n,), like=x).reshape(bsz, n)
    b = check_weights(b, "b", (bsz, m) if batched else (m,), like=x).reshape(bsz, m)

    if backend == "auto":
        elems = bsz * (n * m + (n * n + m * m if debias else 0))
        limit = 2**28  # elements of stored cost matrices: 1 GB in float32
        backend = "dense" if elems <= limit else "online"
    if max_iter is None:
        max_iter = 1000 if backend == "dense" else 100
    if return_plan and backend == "online":
        raise ValueError(
            "return_plan needs backend='dense'; the online backend never stores the "
            "n x m plan (use return_potentials=True instead)"
        )

    spread = point_spread(x, y)
    check_cost_range(spread, p, x.dtype)
    rho = None if reach is None else reach**p

    # Each soft-min differentiates through its first argument only (GeomLoss's convention): the
    # final extrapolation then carries the envelope-theorem gradient exactly once per point cloud.
    if backend == "dense":
        with torch.no_grad():
            c_xy = cost_matrix(x, y, p)
            sm_xy, sm_yx = _dense_softmin(c_xy), _dense_softmin(c_xy.transpose(-1, -2))
            if debias:
                c_xx, c_yy = cost_matrix(x, x, p), cost_matrix(y, y, p)
                sm_xx, sm_yy = _dense_softmin(c_xx), _dense_softmin(c_yy)
    else:
        chunk = _chunk_size(bsz, max(n, m), x.device)
        xd, yd = x.detach(), y.detach()
        sm_xy, sm_yx = _online_softmin(x, yd, p, chunk), _online_softmin(y, xd, p, chunk)
        if debias:
            sm_xx, sm_yy = _online_softmin(x, xd, p, chunk), _online_softmin(y, yd, p, chunk)
    if diameter is None and backend == "dense":
        # Start where the stored costs need it: at eps >= max C / _KERNEL_RANGE the first soft-min
        # already gives representable kernels, and the levels above it only cost exps.
        c_max = max(float(c.max()) for c in ((c_xy, c_xx, c_yy) if debias else (c_xy,)))
        diameter = (c_max / _KERNEL_RANGE) ** (1 / p)
    elif diameter is None:
        diameter = spread
    eps_list = epsilon_schedule(p, float(diameter or blur), float(blur), float(scaling))
    if backend == "dense":
        eps_list = eps_list[:-1][::_LEVEL_STRIDE] + eps_list[-1:]

    a_log, b_log = _safe_log(a), _safe_log(b)

    def damp(eps: float) -> float:
        return 1.0 if rho is None else 1.0 / (1.0 + eps / rho)

    def on_all_problems(routine: Callable, *args: Any) -> tuple | None:
        """Run a kernel-form ``routine`` on OT(a, b) and, when debiased, on OT(a, a) and OT(b, b):
        the new ``(f_ba, g_ab, f_aa, g_bb)``, or None as soon as one is not representable."""
        cross = routine(c_xy, f_ba, g_ab, a, b, *args)
        if cross is None:
            return None
        if not debias:
            return (*cross, None, None)
        xx = routine(c_xx, f_aa, None, a, a, *args)
        yy = routine(c_yy, g_bb, None, b, b, *args) if xx is not None else None
        return None if yy is None else (*cross, xx[0], yy[0])

    with torch.no_grad():
        eps = eps_list[0]
        f_ba, g_ab = damp(eps) * sm_xy(eps, b_log), damp(eps) * sm_yx(eps, a_log)
        if debias:
            f_aa, g_bb = damp(eps) * sm_xx(eps, a_log), damp(eps) * sm_yy(eps, b_log)
        use_kernel = backend == "dense"
        for eps in eps_list:  # ε-scaling with symmetric (averaged) updates
            k = damp(eps)
            if use_kernel:  # one exp and a few mat-vecs per level, no log-sum-exp
                step = on_all_problems(_kernel_polish, eps, k, 0.0, _LEVEL_ITERS)
                if step is not None:
                    f_ba, g_ab, f_aa, g_bb = step
                    continue
                use_kernel = False  # not representable at this scale: stay in the log domain
            ft_ba, gt_ab = k * sm_xy(eps, b_log + g_ab / eps), k * sm_yx(eps, a_log + f_ba / eps)
            f_ba, g_ab = 0.5 * (f_ba + ft_ba), 0.5 * (g_ab + gt_ab)
            if debias:
                f_aa = 0.5 * (f_aa + k * sm_xx(eps, a_log + f_aa / eps))
                g_bb = 0.5 * (g_bb + k * sm_yy(eps, b_log + g_bb / eps))
        # Then iterate at the final ε until the potentials settle: mat-vecs when C is stored,
        # log-sum-exps otherwise. The cross and the two symmetric problems are independent.
        polished = None
        if backend == "dense" and tol is not None:
            polished = on_all_problems(_kernel_polish, eps, k, tol, max_iter)
            if polished is not None:
                f_ba, g_ab, f_aa, g_bb = polished
        for it in range(max_iter if tol is not None and polished is None else 0):
            f_old, g_old = f_ba, g_ab
            f_ba = k * sm_xy(eps, b_log + g_ab / eps)
            g_ab = k * sm_yx(eps, a_log + f_ba / eps)
            moved = [_max_move(f_ba, f_old, a), _max_move(g_ab, g_old, b)]
            if debias:
                f_old, g_old = f_aa, g_bb
                f_aa = 0.5 * (f_aa + k * sm_xx(eps, a_log + f_aa / eps))
                g_bb = 0.5 * (g_bb + k * sm_yy(eps, b_log + g_bb / eps))
                moved += [_max_move(f_aa, f_old, a), _max_move(g_bb, g_old, b)]
            if it % 5 == 0 and float(torch.stack(moved).max()) < tol * eps:
                break

    # Last extrapolation with autograd on: the envelope theorem gives the gradients.
    eps, k = eps_list[-1], damp(eps_list[-1])
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, y, a, b))
    if backend == "dense" and needs_grad:
        del sm_xy, sm_yx, c_xy  # free the loop's matrices before building live ones
        c_xy = cost_matrix(x, y.detach(), p)
        sm_xy, sm_yx = _dense_softmin(c_xy), _dense_softmin(cost_matrix(y, x.detach(), p))
        if debias:
            sm_xx = _dense_softmin(cost_matrix(x, x.detach(), p))
            sm_yy = _dense_softmin(cost_matrix(y, y.detach(), p))
    f_ba, g_ab = k * sm_xy(eps, b_log + g_ab / eps), k * sm_yx(eps, a_log + f_ba / eps)
    if debias:
        f_aa, g_bb = k * sm_xx(eps, a_log + f_aa / eps), k * sm_yy(eps, b_log + g_bb / eps)

    def dot(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (w * v).sum(-1)

    if rho is None:
        cost = dot(a, f_ba) + dot(b, g_ab)
        if debias:
            cost = cost - dot(a, f_aa) - dot(b, g_bb)
    else:
        weight = rho + eps / 2
        if debias:
            cost = weight * (
                dot(a, torch.exp(-f_aa / rho) - torch.exp(-f_ba / rho))
                + dot(b, torch.exp(-g_bb / rho) - torch.exp(-g_ab / rho))
            )
        else:
            cost = weight * (
                dot(a, 1 - torch.exp(-f_ba / rho)) + dot(b, 1 - torch.exp(-g_ab / rho))
            )
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
