"""The quantile-regression loss of distributional RL (QR-DQN)."""

from __future__ import annotations

from typing import Any

import torch

from wdist._checks import as_tensor, check_int, check_nonnegative, validation_enabled


def quantile_midpoints(
    n: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The quantile levels ``tau_hat_i = (2i + 1) / (2N)``, ``i = 0..N-1``, minimising W1;
    ``n = N >= 1``. Returns ``[N]``."""
    n = check_int(n, "n (the number of quantiles N)", 1)
    return (torch.arange(n, device=device, dtype=dtype) + 0.5) / n


def quantile_huber_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    taus: Any = None,
    kappa: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Quantile Huber loss of QR-DQN (Dabney et al. 2018, eq. 10).

    .. math::
        \mathcal{L} = \sum_{i=1}^{N} \frac{1}{M} \sum_{j=1}^{M}
            \rho^\kappa_{\hat\tau_i}(\mathcal{T}\theta_j - \theta_i), \qquad
        \rho^\kappa_\tau(u) = |\tau - \mathbb{1}\{u < 0\}| \, \frac{L_\kappa(u)}{\kappa}

    with :math:`L_\kappa` the Huber loss (``0.5 u^2`` if ``|u| <= kappa`` else
    ``kappa (|u| - 0.5 kappa)``). ``kappa = 0`` gives the pinball loss
    :math:`|\tau - \mathbb{1}\{u<0\}| \, |u|`; dividing by ``kappa`` makes that the limit.

    Args:
        pred: ``[B, N]`` predicted quantiles :math:`\theta_i` (carries the gradient).
        target: ``[B, M]`` target samples :math:`\mathcal{T}\theta_j` (detach it yourself).
        taus: ``[N]`` or ``[B, N]`` quantile levels in ``[0, 1]`` (tensor of ``pred``'s dtype and
            device, or array/list); default midpoints ``(2i+1)/(2N)``.
        kappa: Huber threshold, ``>= 0``.
        reduction: ``"mean"`` over the batch (scalar), ``"sum"``, or ``"none"`` (``[B]``).
    """
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("pred and target must be torch tensors")
    if pred.dim() != 2:
        raise ValueError(f"pred must have shape [B, N], got {tuple(pred.shape)}")
    if target.dim() != 2 or target.shape[0] != pred.shape[0]:
        raise ValueError(
            f"target must have shape [B, M] with B = {pred.shape[0]}, got {tuple(target.shape)}"
        )
    if pred.shape[1] == 0 or target.shape[1] == 0:
        raise ValueError("pred and target need at least one quantile / sample each")
    kappa = check_nonnegative(kappa, "kappa")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if target.dtype != pred.dtype or target.device != pred.device:
        raise TypeError(
            f"target ({target.dtype}, {target.device}) must match pred "
            f"({pred.dtype}, {pred.device})"
        )
    n = pred.shape[1]
    if taus is None:
        taus = quantile_midpoints(n, pred.device, pred.dtype)
    else:
        taus = as_tensor(taus, "taus", like=pred)
        if taus.shape not in ((n,), pred.shape):
            raise ValueError(
                f"taus must have shape [{n}] or {list(pred.shape)}, got {list(taus.shape)}"
            )
        if validation_enabled() and bool(((taus < 0) | (taus > 1)).any()):
            raise ValueError("taus must be quantile levels in [0, 1]")
    if validation_enabled() and not bool(torch.isfinite(pred).all() & torch.isfinite(target).all()):
        raise ValueError("pred or target contains NaN or inf")
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
