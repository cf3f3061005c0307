"""Wasserstein-2 between Gaussians (the Bures metric), and the Fréchet distance behind FID."""

from __future__ import annotations

from typing import Any

import torch

from wdist._checks import as_tensor, check_points, check_psd, validation_enabled


def _psd_sqrt(mat: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Symmetric PSD square root (or pseudo-inverse square root) by eigendecomposition."""
    evals, evecs = torch.linalg.eigh(mat)
    tol = evals.amax(-1, keepdim=True).clamp_min(0) * mat.shape[-1] * torch.finfo(mat.dtype).eps
    evals = evals.clamp_min(0)
    if inverse:
        root = torch.where(evals > tol, evals.clamp_min(tol.min()).rsqrt(), torch.zeros_like(evals))
    else:
        root = evals.sqrt()
    return (evecs * root.unsqueeze(-2)) @ evecs.transpose(-1, -2)


def _transport_map(c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
    """``T = A (A C2 A)^{+1/2} A`` with ``A = C1^{1/2}``: twice the gradient of
    ``tr((A C2 A)^{1/2})`` w.r.t. ``C2`` (the Monge map from ``N(0, C1)`` to ``N(0, C2)``)."""
    a = _psd_sqrt(c1)
    return a @ _psd_sqrt(a @ c2 @ a, inverse=True) @ a


class _BuresCross(torch.autograd.Function):
    """``tr((C1^{1/2} C2 C1^{1/2})^{1/2})`` with the closed-form gradient (stable when singular)."""

    @staticmethod
    def forward(ctx, c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
        a = _psd_sqrt(c1)
        evals = torch.linalg.eigvalsh(a @ c2 @ a)
        ctx.save_for_backward(c1, c2)
        return evals.clamp_min(0).sqrt().sum(-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        c1, c2 = ctx.saved_tensors
        g = grad[..., None, None]
        g1 = g * 0.5 * _transport_map(c2, c1) if ctx.needs_input_grad[0] else None
        g2 = g * 0.5 * _transport_map(c1, c2) if ctx.needs_input_grad[1] else None
        return g1, g2


def gaussian_w2(mean1: Any, cov1: Any, mean2: Any, cov2: Any) -> torch.Tensor:
    r"""Squared 2-Wasserstein distance between Gaussians (the Bures-Wasserstein formula).

    .. math::
        W_2^2 = \|m_1 - m_2\|^2 + \operatorname{tr} C_1 + \operatorname{tr} C_2
                - 2 \operatorname{tr}\big( (C_1^{1/2} C_2 C_1^{1/2})^{1/2} \big)

    Args:
        mean1, mean2: ``[..., d]`` means (batched over leading dims).
        cov1, cov2: ``[..., d, d]`` symmetric positive semi-definite covariances (singular is
            fine: the gradient uses pseudo-inverse square roots); a negative eigenvalue beyond
            round-off (``< -100 d eps max|eig|``) is a ``ValueError``.

    Returns:
        ``[...]`` tensor of :math:`W_2^2`, differentiable w.r.t. all four inputs (float32 for
        float16/bfloat16 inputs).

    Example::

        >>> wdist.gaussian_w2(torch.zeros(1), torch.eye(1) * 4, torch.ones(1), torch.eye(1))
        tensor(2.)
    """
    return _gaussian_w2(mean1, cov1, mean2, cov2, check_definite=True)


def _gaussian_w2(
    mean1: Any, cov1: Any, mean2: Any, cov2: Any, check_definite: bool
) -> torch.Tensor:
    """:func:`gaussian_w2`; ``check_definite=False`` skips the PSD check (covariances that are
    PSD by construction)."""
    m1 = as_tensor(mean1, "mean1")
    c1 = as_tensor(cov1, "cov1", like=m1)
    m2 = as_tensor(mean2, "mean2", like=m1)
    c2 = as_tensor(cov2, "cov2", like=m1)
    if m1.dim() == 0 or m1.shape != m2.shape:
        raise ValueError(
            f"mean1 and mean2 must have the same shape [..., d], got {list(m1.shape)} and "
            f"{list(m2.shape)}"
        )
    if m1.numel() == 0:
        raise ValueError(
            f"mean1 is empty (shape {list(m1.shape)}): need d >= 1 and no empty batch dim"
        )
    d = m1.shape[-1]
    for name, c in (("cov1", c1), ("cov2", c2)):
        if c.shape != (*m1.shape, d):
            raise ValueError(f"{name} must have shape {[*m1.shape, d]}, got {list(c.shape)}")
        cd = c.detach()
        if not torch.allclose(cd, cd.mT, rtol=1e-5, atol=1e-6 * float(cd.abs().max())):
            raise ValueError(f"{name} must be symmetric")
    c1 = 0.5 * (c1 + c1.transpose(-1, -2))
    c2 = 0.5 * (c2 + c2.transpose(-1, -2))
    if check_definite:
        check_psd(c1, "cov1")
        check_psd(c2, "cov2")
    trace = torch.diagonal(c1, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(c2, dim1=-2, dim2=-1).sum(
        -1
    )
    try:
        cross = _BuresCross.apply(c1, c2)
    except torch.linalg.LinAlgError as err:
        raise ValueError(
            "cov1/cov2: the eigendecomposition failed; the covariances are too ill-conditioned "
            f"or too large for {c1.dtype} (rescale the inputs)"
        ) from err
    out = ((m1 - m2) ** 2).sum(-1) + (trace - 2 * cross).clamp_min(0)
    if validation_enabled() and not bool(torch.isfinite(out).all()):
        raise ValueError(f"gaussian_w2 overflows {out.dtype}: the means or covariances are too "
                         "large (rescale the inputs)")
    return out


def frechet_distance(feats1: Any, feats2: Any) -> torch.Tensor:
    r"""Fréchet distance :math:`W_2^2(\mathcal N(\mu_1, \Sigma_1), \mathcal N(\mu_2, \Sigma_2))`
    between Gaussians fitted (mean, unbiased covariance) to ``feats1 [n, d]`` and ``feats2 [m, d]``.

    With Inception-v3 pool features this is FID (Heusel et al. 2017); any feature extractor works.
    Returns a 0-dim tensor.

    Example::

        >>> f1, f2 = torch.randn(1000, 8), torch.randn(1000, 8) + 1   # W2^2 of the fits ~ 8
        >>> fid = wdist.frechet_distance(f1, f2)
    """
    f1 = check_points(as_tensor(feats1, "feats1"), "feats1")
    f2 = check_points(as_tensor(feats2, "feats2", like=f1), "feats2")
    if f1.shape[-1] != f2.shape[-1]:
        raise ValueError(
            f"feats1 and feats2 must have the same dim, got {f1.shape[-1]}, {f2.shape[-1]}"
        )
    for name, f in (("feats1", f1), ("feats2", f2)):
        if f.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 samples to fit a covariance")
    stats = []
    for name, f in (("feats1", f1), ("feats2", f2)):
        mean, cov = f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])
        if not bool(torch.isfinite(cov).all()):
            raise ValueError(f"{name}: its covariance overflows {f.dtype}; rescale the features")
        stats += [mean, cov]
    # torch.cov is PSD by construction: skip the extra eigendecomposition of the PSD check
    return _gaussian_w2(*stats, check_definite=False)
