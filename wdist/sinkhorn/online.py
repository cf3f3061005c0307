r"""The online soft-min: never stores an ``n x m`` matrix.

:math:`f_i = -\varepsilon \log \sum_j \exp(h_j - \|x_i - y_j\|^p / \varepsilon)` recomputes the
costs in row chunks and reduces them with a streaming log-sum-exp; a custom backward does the same,
so memory grows as O(n + m) (times the chunk size). On CUDA with ``triton`` installed the
soft-min is the fused Triton kernel (:mod:`wdist._triton`, ``d <= TRITON_MAX_DIM``); otherwise,
on CUDA and for ``d <= 8``, the passes are ``torch.compile``'d reductions that recompute
``C_ij`` in registers, like KeOps, without any chunk. Any compiler or launch failure falls back,
once and with a warning, to the next path; the eager chunks are the CPU's path.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from wdist._cost import cost_matrix
from wdist._triton import TRITON_MAX_DIM, triton_available, triton_softmin
from wdist.sinkhorn._warn import caller_level
from wdist.sinkhorn.loops import Softmin

# Devices on which the online soft-min runs through ``torch.compile`` (for ``d <= _FUSED_MAX_DIM``):
# inductor turns each of the two broadcast reductions below into one kernel that recomputes
# ``C_ij`` on the fly and never writes a ``[B, n, m]`` block to memory (the eager path is
# memory-bound on GPUs). A single ``logsumexp`` would not do: inductor stores its argument between
# the max and the sum passes. Above ``_FUSED_MAX_DIM`` inductor no longer unrolls the sum over the
# coordinates, and the eager path's matrix product is faster. Tests add "cpu" to check the
# compiled path against the eager one.
_COMPILE_DEVICES = {"cuda"}
_FUSED_MAX_DIM = 8
_fused: dict[str, Any] = {}  # "kernels": the compiled passes, "failed": set after a failure


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


def _lse_grad_block(c, x, y, h, f, grad, inv_eps, p: float, need_x=True, need_y=True):
    """A row block's share of the soft-min's gradients w.r.t. ``x``, ``y`` and ``-h / eps``,
    from its cost block ``c``: with :math:`P_{ij} = e^{h_j + (f_i - C_{ij}) / \\varepsilon}`
    (rows sum to one), :math:`\\partial F / \\partial C_{ij} = G_i P_{ij}`."""
    w = torch.exp(h.unsqueeze(-2) + (f.unsqueeze(-1) - c) * inv_eps) * grad.unsqueeze(-1)
    if not (need_x or need_y):
        return None, None, w.sum(-2)
    if p == 2:
        k = 2 * w
    else:
        dist = c.pow(1 / p) if p != 1 else c
        k = torch.where(dist > 0, p * w * dist.clamp_min(1e-30).pow(p - 2), 0)
    gx = x * k.sum(-1, keepdim=True) - k @ y if need_x else None
    gy = y * k.sum(-2).unsqueeze(-1) - k.transpose(-1, -2) @ x if need_y else None
    return gx, gy, w.sum(-2)


def _lse_grad_kernel(x, y, h, f, grad, inv_eps, p: float):
    """The fused backward block: the costs recomputed by broadcasting (compiled)."""
    return _lse_grad_block(_broadcast_cost(x, y, p), x, y, h, f, grad, inv_eps, p)


class _Passes(NamedTuple):
    """The soft-min's forward (all rows) and backward (one row block) passes."""

    forward: Callable[..., torch.Tensor]  # (x, y, h, eps, p, chunk) -> f [B, n]
    grad_block: Callable[..., tuple]  # (x_c, y, h, f_c, grad_c, inv_eps, p, need_x, need_y)


def _eager_forward(x, y, h, eps: float, p: float, chunk: int) -> torch.Tensor:
    out = torch.empty(x.shape[:-1], dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[-2], chunk):
        c = cost_matrix(x[..., s : s + chunk, :], y, p)
        out[..., s : s + chunk] = -eps * torch.logsumexp(h.unsqueeze(-2) - c / eps, dim=-1)
    return out


def _eager_grad_block(xc, y, h, fc, gc, inv_eps, p: float, need_x: bool, need_y: bool):
    return _lse_grad_block(cost_matrix(xc, y, p), xc, y, h, fc, gc, inv_eps, p, need_x, need_y)


_EAGER = _Passes(_eager_forward, _eager_grad_block)


def _fused_passes(x: torch.Tensor) -> _Passes | None:
    """The compiled passes for points ``x``, or None to use the eager ones. They are compiled
    once per dtype, ``d`` and ``p``: ``1 / eps`` comes in as a 0-dim tensor and the point
    counts are marked dynamic."""
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
    row_max, row_sumexp, grad_kernel = _fused["kernels"]

    def forward(x, y, h, eps: float, p: float, chunk: int) -> torch.Tensor:
        # all rows at once: the compiled reductions need O(n + m) memory
        inv_eps = torch.tensor(1 / eps, dtype=x.dtype, device=x.device)
        xs, ys, hs = _dynamic_points(x, y, h)
        shift = row_max(xs, ys, hs, inv_eps, p)
        shift = torch.where(torch.isfinite(shift), shift, 0)  # rows with no mass
        (shift,) = _dynamic_points(shift)
        return -eps * (shift + row_sumexp(xs, ys, hs, shift, inv_eps, p).log())

    def grad_block(xc, y, h, fc, gc, inv_eps, p: float, need_x: bool, need_y: bool):
        return grad_kernel(*_dynamic_points(xc, y, h, fc, gc), inv_eps, p)

    return _Passes(forward, grad_block)


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
        stacklevel=caller_level(),
    )


def _with_fallback(x: torch.Tensor, run: Callable[[_Passes], Any]) -> Any:
    """``run(passes)`` with the compiled passes where they apply, else (or after a compiler
    failure, which disables them for the session) with the eager ones."""
    passes = _fused_passes(x)
    if passes is not None:
        try:
            return run(passes)
        except Exception as err:  # noqa: BLE001 - any compiler failure: use the eager path
            _disable_fused(err)
    return run(_EAGER)


class _OnlineSoftmin(torch.autograd.Function):
    """Streaming soft-min over row chunks; backward recomputes the chunks (O(n + m) memory)."""

    @staticmethod
    def forward(ctx, x, y, h, eps: float, p: float, chunk: int):
        xd, yd, hd = x.detach(), y.detach(), h.detach()
        out = _with_fallback(x, lambda passes: passes.forward(xd, yd, hd, eps, p, chunk))
        ctx.save_for_backward(x, y, h, out)
        ctx.eps, ctx.p, ctx.chunk = eps, p, chunk
        return out

    @staticmethod
    def backward(ctx, grad):
        x, y, h, out = ctx.saved_tensors
        eps, p, chunk = ctx.eps, ctx.p, ctx.chunk
        need_x, need_y, need_h = ctx.needs_input_grad[:3]
        x, y, h = x.detach(), y.detach(), h.detach()
        inv_eps = torch.tensor(1 / eps, dtype=x.dtype, device=x.device)

        def run(passes: _Passes):
            gx, gy, gh = torch.zeros_like(x), torch.zeros_like(y), torch.zeros_like(h)
            for s in range(0, x.shape[-2], chunk):
                sl = slice(s, s + chunk)
                gx_c, gy_c, gh_c = passes.grad_block(
                    x[..., sl, :], y, h, out[..., sl], grad[..., sl], inv_eps, p, need_x, need_y
                )
                if need_x:
                    gx[..., sl, :] = gx_c
                if need_y:
                    gy += gy_c
                gh -= eps * gh_c
            return gx, gy, gh

        gx, gy, gh = _with_fallback(x, run)
        return (gx if need_x else None, gy if need_y else None, gh if need_h else None,
                None, None, None)


def _online_softmin(x: torch.Tensor, y: torch.Tensor, p: float, chunk: int) -> Softmin:
    """The online soft-min over ``y`` for points ``x`` (differentiable in ``x``, ``y``, ``h``)."""

    def softmin(eps: float, h: torch.Tensor) -> torch.Tensor:
        return _OnlineSoftmin.apply(x, y, h, eps, p, chunk)

    return softmin


def chunk_size(batch: int, m: int, device: torch.device) -> int:
    """Rows per chunk: a ``[B, chunk, m]`` block of at most 2^28 (CUDA) or 2^23 elements."""
    budget = 2**28 if device.type == "cuda" else 2**23
    return max(1, min(65536, budget // max(1, batch * m)))


_chunk_size = chunk_size  # the name benchmarks used

# Devices on which the online strategy runs the fused Triton soft-min when triton is installed
# (and ``d <= TRITON_MAX_DIM``); elsewhere, and after a failed launch, the soft-min above. Tests
# add "cpu" to run it under Triton's interpreter (``TRITON_INTERPRET=1``).
_TRITON_DEVICES = {"cuda"}
_triton: dict[str, Any] = {}  # "failed": set after a launch failure


def softmin_factory(x: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor, float, int], Softmin]:
    """The online soft-min factory for points ``x``: Triton's where it runs, else the
    chunked / compiled one (looked up at call time: tools may route it elsewhere)."""
    if (
        x.device.type in _TRITON_DEVICES
        and x.shape[-1] <= TRITON_MAX_DIM
        and not _triton.get("failed")
        and triton_available(x.device)
    ):
        return _triton_online_softmin
    return _online_softmin


def _triton_online_softmin(x: torch.Tensor, y: torch.Tensor, p: float, chunk: int) -> Softmin:
    """The fused Triton soft-min, with the chunked / compiled one as its fallback."""

    def softmin(eps: float, h: torch.Tensor) -> torch.Tensor:
        if not _triton.get("failed"):
            try:
                return triton_softmin(x, y, h, eps, p)
            except Exception as err:  # noqa: BLE001 - any compile or launch failure
                _triton["failed"] = True
                warnings.warn(
                    f"the Triton soft-min failed ({type(err).__name__}: {err}); using the "
                    "torch implementation",
                    RuntimeWarning,
                    stacklevel=caller_level(),
                )
        return _OnlineSoftmin.apply(x, y, h, eps, p, chunk)

    return softmin
