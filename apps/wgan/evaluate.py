"""Measured, not eyeballed: exact W1 on toy data, Fréchet distance + label entropy on images.

Toy data: ``wdist.emd`` between ``n`` generated and ``n`` fresh real points is the exact W1 of
the two empirical measures; it is biased upwards by the sampling noise, so we also report the
*floor*, the exact W1 between two independent real samples of the same size.
"""

from __future__ import annotations

import math
import warnings

import torch

import wdist
from wdist_apps.wgan.data import sample_toy
from wdist_apps.wgan.features import FeatureExtractor


@torch.no_grad()
def generate(generator: torch.nn.Module, n: int, z_dim: int, device: torch.device,
             generator_rng: torch.Generator | None = None, batch_size: int = 500) -> torch.Tensor:
    """``n`` samples (CPU tensor) from ``generator`` in eval mode, noise z ~ N(0, I)."""
    was_training = generator.training
    generator.eval()
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = torch.randn(m, z_dim, generator=generator_rng).to(device)
        out.append(generator(z).cpu())
    generator.train(was_training)
    return torch.cat(out)


def exact_w1(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact W1 between two uniform point clouds (network simplex through ``wdist.emd``)."""
    return float(wdist.emd(x.double().flatten(1), y.double().flatten(1), p=1))


def toy_w1_floor(data: str, n: int, seed: int = 0, draws: int = 1) -> list[float]:
    """Exact W1 between two independent real samples of size ``n``, for ``draws`` independent
    pairs: the metric's noise floor (a perfect generator's score) and its spread."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    g = torch.Generator().manual_seed(seed)
    return [exact_w1(sample_toy(data, n, g), sample_toy(data, n, g)) for _ in range(draws)]


CONFIDENT = 0.9  # a sample counts as "classified confidently" when max_y p(y|x) >= this


def label_coverage(probs: torch.Tensor, confident: float = CONFIDENT) -> dict:
    """Mode coverage from a classifier's class probabilities ``probs [N, K]`` (rows sum to 1).

    Returns ``class_counts`` (histogram of argmax labels, length K), ``confident_frac`` (share of
    samples with max_y p(y|x) >= ``confident``), ``label_entropy`` H(y|x) = E_x[-sum_y p log p]
    (low: each sample looks like one class), ``marginal_entropy`` H(y) of the mean prediction
    (log K = all classes equally often), ``classes_covered`` (classes that hold at least a
    quarter of their fair share N / (4K) of the argmax labels) and ``score``
    exp(H(y) - H(y|x)) = exp(E_x KL(p(y|x) || p(y))), the Inception-Score analogue (<= K).

    >>> label_coverage(torch.eye(10)[torch.arange(20) % 10])["classes_covered"]
    10
    """
    if probs.dim() != 2 or probs.shape[0] < 1:
        raise ValueError(f"probs must be [N, K] with N >= 1, got {tuple(probs.shape)}")
    n, k = probs.shape
    p = probs.double().clamp_min(1e-12)
    h_cond = float(-(p * p.log()).sum(1).mean())
    marg = p.mean(0)
    h_marg = float(-(marg * marg.log()).sum())
    counts = torch.bincount(probs.argmax(1), minlength=k)
    return {
        "class_counts": counts.tolist(),
        "confident_frac": float((probs.max(1).values >= confident).double().mean()),
        "label_entropy": h_cond,
        "marginal_entropy": h_marg,
        "classes_covered": int((counts * 4 * k >= n).sum()),
        "score": math.exp(h_marg - h_cond),
    }


def warn_if_rank_deficient(n: int, dim: int, what: str) -> None:
    """Warn when ``n`` samples cannot give a full-rank ``dim x dim`` covariance (rank <= n - 1):
    a Fréchet distance then carries a large sample-size bias (e.g. 1,000 samples of 2,048-d
    Inception features) and is not comparable with published numbers."""
    if n <= dim:
        warnings.warn(
            f"Fréchet distance with {n} {what} samples of {dim}-d features: the covariance has "
            f"rank <= {n - 1} < {dim} (rank-deficient), so the value is dominated by sample-size "
            f"bias; use more than {dim} samples (FID papers use 10,000 or 50,000)",
            UserWarning, stacklevel=3,
        )


def image_metrics(fake: torch.Tensor, real: torch.Tensor, extractor: FeatureExtractor,
                  real_floor: torch.Tensor | None = None) -> dict:
    """Fréchet distance ``fd`` (``wdist.frechet_distance``) between Gaussians fitted to the
    extractor's features of ``fake`` and ``real``, with ``n_fake`` / ``n_real`` and the feature
    dimension ``fd_dim``; ``fd_floor`` (when ``real_floor`` is given: real images disjoint from
    ``real``, as many as ``fake``) is the same distance between two real samples, the value a
    perfect generator gets at this sample size. A classifier extractor adds
    :func:`label_coverage` of the fake samples."""
    f_real = extractor(real).double()
    for what, n in (("generated", len(fake)), ("real", len(real))):
        warn_if_rank_deficient(n, f_real.shape[1], what)
    out = {"fd": float(wdist.frechet_distance(extractor(fake).double(), f_real)),
           "n_fake": len(fake), "n_real": len(real), "fd_dim": f_real.shape[1]}
    if real_floor is not None:
        out["fd_floor"] = float(wdist.frechet_distance(extractor(real_floor).double(), f_real))
    probs = extractor.label_probs(fake)
    if probs is not None:
        out.update(label_coverage(probs))
    return out
