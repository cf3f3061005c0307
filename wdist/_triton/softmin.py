r"""The online soft-min as fused Triton kernels, with its backward (``torch.autograd.Function``).

.. math::  f_i = -\varepsilon \log \sum_j \exp\big(h_j - |x_i - y_j|^p / \varepsilon\big)

for ``x [B, n, d]``, ``y [B, m, d]``, ``h [B, m]`` (log-weights plus potential / ε; ``-inf`` for
zero-weight points) -> ``f [B, n]``: the contract of the solver's eager online soft-min. Tiles of
``x`` and ``y`` stay on chip, the costs are recomputed in registers and reduced with a running
max (the FlashAttention recurrence, Dao et al. 2022, as the flash-sinkhorn package uses it), so
memory is O((n + m) d), never ``n x m``; see ``kernels.py`` for the maths of each kernel.

Triton is imported lazily (``import wdist`` never loads it). The kernels run on CUDA devices, and
on the CPU under Triton's interpreter (``TRITON_INTERPRET=1``, numpy), which the tests use.

Example (on a CUDA machine)::

    >>> x, y = torch.randn(1, 5000, 3, device="cuda"), torch.randn(1, 4000, 3, device="cuda")
    >>> h = torch.full((1, 4000), -math.log(4000), device="cuda")  # uniform weights, g = 0
    >>> f = triton_softmin(x, y, h, eps=0.01, p=2)                 # [1, 5000]
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from types import ModuleType

import torch

from wdist._checks import check_p, check_positive

# Widest point dimension the kernels hold in one tile (the backward keeps ``[block, d]``
# accumulators in registers); wider points use the eager path.
TRITON_MAX_DIM = 256
_LOG2E = 1.4426950408889634  # the kernels' logits are in base 2
_DOT_PRECISION = "ieee"  # fp32 products in full precision (TF32 keeps 10 mantissa bits)


def _interpreting() -> bool:
    """Whether Triton's interpreter is on: the mode triton was imported in, else (not imported
    yet) what ``TRITON_INTERPRET`` says."""
    if "triton" in sys.modules:
        import triton.language as tl
        from triton.runtime.interpreter import InterpretedFunction

        return isinstance(tl.sum, InterpretedFunction)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes", "y")


def triton_available(device: torch.device | str) -> bool:
    """Whether :func:`triton_softmin` can run on ``device``: ``triton`` is installed and the
    device is CUDA (with a driver), or the CPU under Triton's interpreter (``TRITON_INTERPRET=1``
    set before triton is first imported; for tests: the same kernels in numpy, slowly)."""
    device = torch.device(device)
    if importlib.util.find_spec("triton") is None:
        return False
    if device.type == "cuda":
        return torch.cuda.is_available()
    return device.type == "cpu" and _interpreting()


def _kernels() -> ModuleType:
    """``wdist._triton.kernels``, imported on first use. Triton fixes compiler or interpreter
    when it is imported (``triton.language``'s own functions are built then) and each kernel
    when its decorator runs: a mismatch (``TRITON_INTERPRET`` changed in between) would fail
    deep inside a launch, so it is an error here."""
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    from wdist._triton import kernels

    if isinstance(kernels.softmin_fwd, InterpretedFunction) != isinstance(
        tl.sum, InterpretedFunction
    ):
        raise RuntimeError(
            "triton was imported with TRITON_INTERPRET set differently from when "
            "wdist._triton.kernels was: set it before triton is first imported"
        )
    return kernels


def _blocks(d: int, dtype: torch.dtype, block_n: int | None, block_m: int | None):
    """Tile sizes ``(BN, BM, BD)``: ``BD`` = ``d`` rounded up to a power of two, at least 16
    (``tl.dot``'s smallest); 64-row tiles while a row of a tile fits 256 bytes, else 32."""
    bd = max(16, 1 << (d - 1).bit_length())
    default = 64 if bd * dtype.itemsize <= 256 else 32
    return block_n or default, block_m or default, bd


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _mode(p: float) -> int:
    return 0 if p == 2 else 1 if p == 1 else 2


class _TritonSoftmin(torch.autograd.Function):
    """Fused streaming soft-min; the backward recomputes the costs tile by tile (two kernels:
    one reduces over ``y`` for ``x``'s gradient, one over ``x`` for ``y``'s and ``h``'s)."""

    @staticmethod
    def forward(ctx, x, y, h, eps: float, p: float, block_n, block_m, num_warps):
        ker = _kernels()
        cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
        xk, yk = x.detach().to(cdt), y.detach().to(cdt)
        if p == 2:  # |x|^2 + |y|^2 - 2 x.y cancels far from the origin: centre (a constant)
            centre = 0.5 * (xk.mean(-2, keepdim=True) + yk.mean(-2, keepdim=True))
            xk, yk = xk - centre, yk - centre
        xk, yk = xk.contiguous(), yk.contiguous()
        hk = h.detach().to(cdt).contiguous()
        bsz, n, d = xk.shape
        m = yk.shape[1]
        bn, bm, bd = _blocks(d, cdt, block_n, block_m)
        scal = torch.tensor([_LOG2E / eps, eps, p], dtype=cdt, device=x.device)
        out = torch.empty((bsz, n), dtype=cdt, device=x.device)
        lse = torch.empty_like(out)
        ker.softmin_fwd[(_cdiv(n, bn), bsz)](
            xk, yk, hk, out, lse, scal, n, m, d,
            MODE=_mode(p), BN=bn, BM=bm, BD=bd, DOT_PREC=_DOT_PRECISION, num_warps=num_warps,
        )
        ctx.save_for_backward(xk, yk, hk, lse, scal)
        ctx.meta = (p, bn, bm, bd, num_warps, x.dtype, y.dtype, h.dtype)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        xk, yk, hk, lse, scal = ctx.saved_tensors
        p, bn, bm, bd, num_warps, x_dtype, y_dtype, h_dtype = ctx.meta
        need_x, need_y, need_h = ctx.needs_input_grad[:3]
        ker = _kernels()
        bsz, n, d = xk.shape
        m = yk.shape[1]
        g = grad.to(xk.dtype).contiguous()
        meta = {"MODE": _mode(p), "BN": bn, "BM": bm, "BD": bd, "DOT_PREC": _DOT_PRECISION,
                "num_warps": num_warps}
        gx = gy = gh = None
        if need_x:
            gx = torch.empty_like(xk)
            ker.softmin_bwd_rows[(_cdiv(n, bn), bsz)](
                xk, yk, hk, lse, g, gx, scal, n, m, d, **meta
            )
            gx = gx.to(x_dtype)
        if need_y or need_h:
            gy, gh = torch.empty_like(yk), torch.empty_like(hk)
            ker.softmin_bwd_cols[(_cdiv(m, bm), bsz)](
                xk, yk, hk, lse, g, gy, gh, scal, n, m, d, **meta
            )
            gy = gy.to(y_dtype) if need_y else None
            gh = gh.to(h_dtype) if need_h else None
        return gx, gy, gh, None, None, None, None, None


def _check_inputs(x, y, h) -> None:
    for t, name in ((x, "x"), (y, "y"), (h, "h")):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.dtype != x.dtype or t.device != x.device:
            raise TypeError(
                f"{name} has dtype {t.dtype} on {t.device}, but x has {x.dtype} on {x.device}"
            )
    if x.dim() != 3 or y.dim() != 3 or h.dim() != 2:
        raise ValueError(
            "expected x [B, n, d], y [B, m, d] and h [B, m], got shapes "
            f"{tuple(x.shape)}, {tuple(y.shape)} and {tuple(h.shape)}"
        )
    (bsz, n, d), m = x.shape, y.shape[1]
    if y.shape[0] != bsz or y.shape[2] != d or tuple(h.shape) != (bsz, m):
        raise ValueError(
            f"y must be [B={bsz}, m, d={d}] and h [B, m], got {tuple(y.shape)} and "
            f"{tuple(h.shape)}"
        )
    if n == 0 or m == 0 or d == 0:
        raise ValueError(f"x and y need at least one point and one coordinate, got n={n}, "
                         f"m={m}, d={d}")
    if d > TRITON_MAX_DIM:
        raise ValueError(f"the Triton soft-min takes d <= {TRITON_MAX_DIM}, got d={d}")


def triton_softmin(
    x: torch.Tensor,
    y: torch.Tensor,
    h: torch.Tensor,
    eps: float,
    p: float,
    *,
    block_n: int | None = None,
    block_m: int | None = None,
    num_warps: int = 4,
) -> torch.Tensor:
    r"""``f_i = -eps * logsumexp_j(h_j - |x_i - y_j|^p / eps)``, differentiable in ``x``, ``y``
    and ``h``; the fused counterpart of the solver's online soft-min.

    Args:
        x: ``[B, n, d]`` points, ``d <= TRITON_MAX_DIM``.  y: ``[B, m, d]``.
        h: ``[B, m]`` log-weights plus potential / eps (``-inf`` masks a point).
        eps: temperature (> 0).  p: cost exponent (>= 1).
        block_n, block_m: tile sizes (powers of two, at least 16; default by ``d`` and dtype).
        num_warps: warps per program (a power of two).

    Returns:
        ``f`` of shape ``[B, n]`` in the dtype of ``x`` (float16 and bfloat16 are computed in
        float32). A row whose ``h`` is all ``-inf`` gives ``+inf``, as ``torch.logsumexp`` does.
    """
    _check_inputs(x, y, h)
    eps = float(check_positive(eps, "eps"))
    p = check_p(p)
    for blk, name in ((block_n, "block_n"), (block_m, "block_m")):
        if blk is not None and (not isinstance(blk, int) or blk < 16 or blk & (blk - 1)):
            raise ValueError(f"{name} must be a power of two >= 16, got {blk!r}")
    if not isinstance(num_warps, int) or num_warps < 1 or num_warps & (num_warps - 1):
        raise ValueError(f"num_warps must be a power of two, got {num_warps!r}")
    if not math.isfinite(1.0 / eps):
        raise ValueError(f"eps is too small for its inverse to be finite, got {eps!r}")
    if not triton_available(x.device):
        raise ValueError(
            f"x is on {x.device}: the Triton soft-min needs an installed triton and a CUDA "
            "device (or TRITON_INTERPRET=1 for the CPU interpreter)"
        )
    return _TritonSoftmin.apply(x, y, h, eps, p, block_n, block_m, num_warps)
