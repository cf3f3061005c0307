"""The quantile-regression loss of distributional RL (QR-DQN)."""

from __future__ import annotations

from typing import Any

import torch

from wdist._checks import as_tensor, check_int, check_nonnegative, validation_enabled


def quantile_midpoints(
    n: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The quantile levels ``tau_hat_i = (2i + 1) / (2N)``, ``i = 0..N-1``, minimising W1;
    ``n = N >= 1``. Returns ``[N]``.

    Example::

        >>> wdist.quantile_midpoints(4)
        tensor([0.1250, 0.3750, 0.6250, 0.8750])
    """
    n = check_int(n, "n (the number of quantiles N)", 1)
    return (torch.arange(n, device=device, dtype=dtype) + 0.5) / n


def quantile_huber_loss(
    pred: Any,
    target: Any,
    *,
    taus: Any = None,
    kappa: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Quantile Huber loss of distributional RL (QR-DQN, Dabney et al. 2018).

    .. math::
        \mathcal{L} = \sum_{i=1}^{N} \frac{1}{M} \sum_{j=1}^{M}
            \rho^\kappa_{\hat\tau_i}(\mathcal{T}\theta_j - \theta_i), \qquad
        \rho^\kappa_\tau(u) = |\tau - \mathbb{1}\{u < 0\}| \, \frac{L_\kappa(u)}{\kappa}

    with :math:`L_\kappa` the Huber loss (``0.5 u^2`` if ``|u| <= kappa`` else
    ``kappa (|u| - 0.5 kappa)``). ``kappa = 0`` gives the pinball loss
    :math:`|\tau - \mathbb{1}\{u<0\}| \, |u|`; dividing by ``kappa`` makes that the limit.
    The division by ``kappa`` is IQN's form (Dabney, Ostrovski, Silver & Munos 2018); QR-DQN's
    eq. 10 and Dopamine's quantile agent use :math:`|\tau - \mathbb{1}\{u<0\}| L_\kappa(u)`
    without it. The two agree at ``kappa = 1`` (both papers' value) and otherwise differ by the
    constant factor ``1/kappa`` (same minimiser).

    Args:
        pred: ``[B, N]`` predicted quantiles :math:`\theta_i` (carries the gradient).
        target: ``[B, M]`` target samples :math:`\mathcal{T}\theta_j` (detach it yourself);
            ``pred``'s dtype and device. Tensors or arrays; float16/bfloat16 are computed in
            float32 (and the loss is float32), as everywhere in ``wdist``.
        taus: ``[N]`` or ``[B, N]`` quantile levels in ``[0, 1]`` (tensor of ``pred``'s dtype and
            device, or array/list); default midpoints ``(2i+1)/(2N)``.
        kappa: Huber threshold, ``>= 0``.
        reduction: ``"mean"`` over the batch (scalar), ``"sum"``, or ``"none"`` (``[B]``).

    Example::

        >>> pred = torch.tensor([[0.0, 1.0]])            # quantiles at taus 0.25, 0.75
        >>> wdist.quantile_huber_loss(pred, torch.tensor([[0.5, 3.0]]))
        tensor(0.9062)
    """
    kappa = check_nonnegative(kappa, "kappa")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    pred = as_tensor(pred, "pred", check_finite=False)
    target = as_tensor(target, "target", like=pred, check_finite=False)
    if pred.dim() != 2:
        raise ValueError(f"pred must have shape [B, N], got {tuple(pred.shape)}")
    if target.dim() != 2 or target.shape[0] != pred.shape[0]:
        raise ValueError(
            f"target must have shape [B, M] with B = {pred.shape[0]}, got {tuple(target.shape)}"
        )
    if pred.shape[0] == 0:
        raise ValueError(f"pred is an empty batch (shape {tuple(pred.shape)}): B must be >= 1")
    if pred.shape[1] == 0 or target.shape[1] == 0:
        raise ValueError("pred and target need at least one quantile / sample each")
    n = pred.shape[1]
    if taus is None:
        taus = quantile_midpoints(n, device=pred.device, dtype=pred.dtype)
    else:
        taus = as_tensor(taus, "taus", like=pred)
        if taus.shape not in ((n,), pred.shape):
            raise ValueError(
                f"taus must have shape [{n}] or {list(pred.shape)}, got {list(taus.shape)}"
            )
        if validation_enabled() and bool(((taus < 0) | (taus > 1)).any()):
            raise ValueError("taus must be quantile levels in [0, 1]")
    if validation_enabled() and not bool(torch.isfinite(pred).all() & torch.isfinite(target).all()):
        raise ValueError("pred or target contains NaN or inf")  # one sync for both
    taus = taus.expand_as(pred).unsqueeze(-1)  # [B, N, 1]
    u = target.unsqueeze(1) - pred.unsqueeze(2)  # [B, N, M]: T theta_j - theta_i
    weight = (taus - (u.detach() < 0).to(u.dtype)).abs()
    if kappa == 0:
        rho = weight * u.abs()
    else:
        au = u.abs()
        huber = torch.where(au <= kappa, 0.5 * u * u, kappa * (au - 0.5 * kappa))
        rho = weight * huber / kappa
    per_sample = rho.mean(2).sum(1)
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.mean()
