"""Measured, not eyeballed: exact W1 on toy data, Fréchet distance + label entropy on images.

Toy data: ``wdist.emd`` between ``n`` generated and ``n`` fresh real points is the exact W1 of
the two empirical measures; it is biased upwards by the sampling noise, so we also report the
*floor*, the exact W1 between two independent real samples of the same size.
"""

from __future__ import annotations

import math

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


def toy_w1_floor(data: str, n: int, seed: int = 0) -> float:
    """Exact W1 between two independent real samples of size ``n``: the metric's noise floor."""
    g = torch.Generator().manual_seed(seed)
    return exact_w1(sample_toy(data, n, g), sample_toy(data, n, g))


def image_metrics(fake: torch.Tensor, real: torch.Tensor, extractor: FeatureExtractor) -> dict:
    """Fréchet distance (``wdist.frechet_distance``) between feature Gaussians, and, when the
    extractor is a classifier, the label entropies: ``H(y|x)`` (low = confident digits),
    ``H(y)`` (high = all classes produced) and the Inception-Score analogue
    ``exp(H(y) - H(y|x)) = exp(E_x KL(p(y|x) || p(y)))`` (10 at best for 10 balanced classes)."""
    out = {"fd": float(wdist.frechet_distance(extractor(fake).double(), extractor(real).double()))}
    probs = extractor.label_probs(fake)
    if probs is not None:
        p = probs.double().clamp_min(1e-12)
        h_cond = float(-(p * p.log()).sum(1).mean())
        marg = p.mean(0)
        h_marg = float(-(marg * marg.log()).sum())
        out.update(label_entropy=h_cond, marginal_entropy=h_marg,
                   score=math.exp(h_marg - h_cond))
    return out
