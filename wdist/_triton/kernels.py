r"""Triton kernels of the online soft-min (imported only through ``wdist._triton.softmin``).

For ``x [B, n, d]``, ``y [B, m, d]``, ``h [B, m]`` and :math:`C_{ij} = |x_i - y_j|^p`, the forward
kernel computes the streaming log-sum-exp, in base 2 (logits :math:`\log_2 e` times the natural
ones below),

.. math::  L_i = \log \sum_j \exp(s_{ij}), \qquad f_i = -\varepsilon\, (L_i + \text{shift}_i)

one block of rows per program, looping over tiles of ``y`` with a running max (the
FlashAttention / FlashSinkhorn recurrence): the costs live in registers only, never an ``n x m``
buffer. ``MODE`` picks how the logits :math:`s_{ij}` are made:

- ``MODE = 0`` (``p = 2``): :math:`|x_i - y_j|^2 = |x_i|^2 + |y_j|^2 - 2 x_i \cdot y_j` with the
  norms folded into shifted potentials, :math:`s_{ij} = (h_j - |y_j|^2 / \varepsilon) +
  (2 x_i / \varepsilon) \cdot y_j` (one ``tl.dot`` per tile) and :math:`\text{shift}_i =
  -|x_i|^2 / \varepsilon`;
- ``MODE = 1`` (``p = 1``) and ``MODE = 2`` (any other ``p``): the direct difference
  :math:`\sum_k (x_{ik} - y_{jk})^2` over the coordinates (exact at coincident points, as
  ``torch.cdist`` is), then :math:`s_{ij} = h_j - C_{ij} / \varepsilon`, :math:`\text{shift} = 0`.

Backward: with :math:`w_{ij} = G_i\, e^{s_{ij} - L_i}` (``G`` the incoming gradient; the rows
of :math:`e^{s - L}` sum to one) and :math:`k_{ij} = w_{ij}\, \partial C_{ij} / \partial
(|x_i - y_j|^2) \cdot 2`, i.e. ``2 w`` for ``p = 2`` and :math:`p\, w\, |x_i - y_j|^{p-2}`
otherwise, :math:`\partial f / \partial x_i = x_i \sum_j k_{ij} - \sum_j k_{ij} y_j`,
:math:`\partial f / \partial y_j = y_j \sum_i k_{ij} - \sum_i k_{ij} x_i` and
:math:`\partial f / \partial h_j = -\varepsilon \sum_i w_{ij}`. One kernel reduces over ``j``
(rows: ``x``), one over ``i`` (columns: ``y`` and ``h``), so no atomics and a deterministic sum.

Every kernel works in the dtype of its inputs (float32 or float64; the wrapper upcasts half
types) with ``tl.dot`` at ``DOT_PREC`` (``"ieee"``: no TF32 rounding of the points). The
scalars ``(log2(e) / eps, eps, p)`` come in as a 3-element tensor ``S`` of that dtype: a Python
float argument would be specialised to float32.
"""

import triton
import triton.language as tl

# The logits are kept in base 2 (FlashAttention's trick): exp2 is the hardware's exponential, so
# every exp saves a multiplication; 1 / eps arrives premultiplied by log2(e).
LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _sq_dist(A, B, rows, cols, rmask, cmask, d, BR: tl.constexpr, BC: tl.constexpr):
    """``|a_r - b_c|^2`` for a ``[BR, BC]`` tile, by the direct difference over ``d``."""
    acc = tl.zeros([BR, BC], dtype=A.dtype.element_ty)
    for k in range(d):
        ak = tl.load(A + rows * d + k, mask=rmask, other=0.0)
        bk = tl.load(B + cols * d + k, mask=cmask, other=0.0)
        diff = ak[:, None] - bk[None, :]
        acc += diff * diff
    return acc


@triton.jit
def _cost(sq, p, MODE: tl.constexpr):
    """``C = sq^(p / 2)`` (``MODE`` 1: ``p = 1``; 2: any ``p``; 0 at ``sq = 0`` for ``p > 0``)."""
    if MODE == 1:
        return tl.sqrt(sq)
    else:
        return tl.exp2(0.5 * p * tl.log2(sq))


@triton.jit
def _grad_factor(w, sq, p, MODE: tl.constexpr):
    """``p w |x - y|^(p - 2)`` where the distance is positive, else 0 (cdist's convention)."""
    pos = sq > 0
    safe = tl.where(pos, sq, 1.0)
    if MODE == 1:
        k = w / tl.sqrt(safe)
    else:
        k = p * w * tl.exp2(0.5 * (p - 2.0) * tl.log2(safe))
    return tl.where(pos, k, 0.0)


@triton.jit
def softmin_fwd(
    X, Y, H, OUT, LSE, S, n, m, d,
    MODE: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """``OUT[b, i] = -eps (L_i + shift_i)`` and ``LSE[b, i] = L_i`` for one block of rows."""
    bid = tl.program_id(1).to(tl.int64)
    inv_eps, eps, p = tl.load(S), tl.load(S + 1), tl.load(S + 2)  # inv_eps: log2(e) / eps
    X += bid * n * d
    Y += bid * m * d
    H += bid * m
    rows = tl.program_id(0) * BN + tl.arange(0, BN)
    rmask = rows < n
    dims = tl.arange(0, BD)
    if MODE == 0:
        xt = tl.load(X + rows[:, None] * d + dims[None, :],
                     mask=rmask[:, None] & (dims[None, :] < d), other=0.0)
        shift = -tl.sum(xt * xt, 1) * inv_eps
        xt = xt * (2.0 * inv_eps)
    run_max = tl.full([BN], float("-inf"), dtype=X.dtype.element_ty)
    run_sum = tl.zeros([BN], dtype=X.dtype.element_ty)
    for j0 in range(0, m, BM):
        cols = j0 + tl.arange(0, BM)
        cmask = cols < m
        h = tl.load(H + cols, mask=cmask, other=float("-inf"))
        if MODE == 0:
            yt = tl.load(Y + cols[:, None] * d + dims[None, :],
                         mask=cmask[:, None] & (dims[None, :] < d), other=0.0)
            hs = h * LOG2E - tl.sum(yt * yt, 1) * inv_eps
            s = hs[None, :] + tl.dot(xt, tl.trans(yt), input_precision=DOT_PREC)
        else:
            sq = _sq_dist(X, Y, rows, cols, rmask, cmask, d, BN, BM)
            s = h[None, :] * LOG2E - _cost(sq, p, MODE) * inv_eps
        new_max = tl.maximum(run_max, tl.max(s, 1))
        safe = tl.where(new_max == float("-inf"), 0.0, new_max)  # rows with no mass so far
        run_sum = run_sum * tl.exp2(run_max - safe) + tl.sum(tl.exp2(s - safe[:, None]), 1)
        run_max = new_max
    lse = run_max + tl.log2(run_sum)
    if MODE == 0:
        out = -(eps * LN2) * (lse + shift)
    else:
        out = -(eps * LN2) * lse
    tl.store(LSE + bid * n + rows, lse, mask=rmask)
    tl.store(OUT + bid * n + rows, out, mask=rmask)


@triton.jit
def softmin_bwd_rows(
    X, Y, H, LSE, G, GX, S, n, m, d,
    MODE: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """``GX[b, i] = x_i sum_j k_ij - sum_j k_ij y_j`` for one block of rows of ``x``."""
    bid = tl.program_id(1).to(tl.int64)
    inv_eps, p = tl.load(S), tl.load(S + 2)  # inv_eps: log2(e) / eps
    X += bid * n * d
    Y += bid * m * d
    H += bid * m
    rows = tl.program_id(0) * BN + tl.arange(0, BN)
    rmask = rows < n
    dims = tl.arange(0, BD)
    dmask = dims < d
    xt = tl.load(X + rows[:, None] * d + dims[None, :],
                 mask=rmask[:, None] & dmask[None, :], other=0.0)
    xs = xt * (2.0 * inv_eps)
    lse = tl.load(LSE + bid * n + rows, mask=rmask, other=0.0)
    g = tl.load(G + bid * n + rows, mask=rmask, other=0.0)
    k_sum = tl.zeros([BN], dtype=X.dtype.element_ty)
    k_y = tl.zeros([BN, BD], dtype=X.dtype.element_ty)
    for j0 in range(0, m, BM):
        cols = j0 + tl.arange(0, BM)
        cmask = cols < m
        h = tl.load(H + cols, mask=cmask, other=float("-inf"))
        yt = tl.load(Y + cols[:, None] * d + dims[None, :],
                     mask=cmask[:, None] & dmask[None, :], other=0.0)
        valid = rmask[:, None] & cmask[None, :]
        if MODE == 0:
            hs = h * LOG2E - tl.sum(yt * yt, 1) * inv_eps
            s = hs[None, :] + tl.dot(xs, tl.trans(yt), input_precision=DOT_PREC)
            w = tl.where(valid, tl.exp2(s - lse[:, None]) * g[:, None], 0.0)
            k = 2.0 * w
        else:
            sq = _sq_dist(X, Y, rows, cols, rmask, cmask, d, BN, BM)
            s = h[None, :] * LOG2E - _cost(sq, p, MODE) * inv_eps
            w = tl.where(valid, tl.exp2(s - lse[:, None]) * g[:, None], 0.0)
            k = _grad_factor(w, sq, p, MODE)
        k_sum += tl.sum(k, 1)
        k_y = tl.dot(k, yt, acc=k_y, input_precision=DOT_PREC)
    gx = xt * k_sum[:, None] - k_y
    tl.store(GX + bid * n * d + rows[:, None] * d + dims[None, :], gx,
             mask=rmask[:, None] & dmask[None, :])


@triton.jit
def softmin_bwd_cols(
    X, Y, H, LSE, G, GY, GH, S, n, m, d,
    MODE: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """``GY[b, j] = y_j sum_i k_ij - sum_i k_ij x_i`` and ``GH[b, j] = -eps sum_i w_ij`` for one
    block of ``BM`` columns, looping over tiles of ``BN`` rows (tiles laid out ``[BM, BN]``)."""
    bid = tl.program_id(1).to(tl.int64)
    inv_eps, eps, p = tl.load(S), tl.load(S + 1), tl.load(S + 2)  # inv_eps: log2(e) / eps
    X += bid * n * d
    Y += bid * m * d
    cols = tl.program_id(0) * BM + tl.arange(0, BM)
    cmask = cols < m
    dims = tl.arange(0, BD)
    dmask = dims < d
    yt = tl.load(Y + cols[:, None] * d + dims[None, :],
                 mask=cmask[:, None] & dmask[None, :], other=0.0)
    h = tl.load(H + bid * m + cols, mask=cmask, other=float("-inf"))
    if MODE == 0:
        hs = h * LOG2E - tl.sum(yt * yt, 1) * inv_eps
        ys = yt * (2.0 * inv_eps)
    w_sum = tl.zeros([BM], dtype=X.dtype.element_ty)
    k_sum = tl.zeros([BM], dtype=X.dtype.element_ty)
    k_x = tl.zeros([BM, BD], dtype=X.dtype.element_ty)
    for i0 in range(0, n, BN):
        rows = i0 + tl.arange(0, BN)
        rmask = rows < n
        xt = tl.load(X + rows[:, None] * d + dims[None, :],
                     mask=rmask[:, None] & dmask[None, :], other=0.0)
        lse = tl.load(LSE + bid * n + rows, mask=rmask, other=0.0)
        g = tl.load(G + bid * n + rows, mask=rmask, other=0.0)
        valid = cmask[:, None] & rmask[None, :]
        if MODE == 0:
            s = hs[:, None] + tl.dot(ys, tl.trans(xt), input_precision=DOT_PREC)
            w = tl.where(valid, tl.exp2(s - lse[None, :]) * g[None, :], 0.0)
            k = 2.0 * w
        else:
            sq = _sq_dist(Y, X, cols, rows, cmask, rmask, d, BM, BN)
            s = h[:, None] * LOG2E - _cost(sq, p, MODE) * inv_eps
            w = tl.where(valid, tl.exp2(s - lse[None, :]) * g[None, :], 0.0)
            k = _grad_factor(w, sq, p, MODE)
        w_sum += tl.sum(w, 1)
        k_sum += tl.sum(k, 1)
        k_x = tl.dot(k, xt, acc=k_x, input_precision=DOT_PREC)
    gy = yt * k_sum[:, None] - k_x
    tl.store(GY + bid * m * d + cols[:, None] * d + dims[None, :], gy,
             mask=cmask[:, None] & dmask[None, :])
    tl.store(GH + bid * m + cols, -eps * w_sum, mask=cmask)
