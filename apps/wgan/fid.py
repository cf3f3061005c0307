"""FID (Heusel et al. 2017) with Inception-v3 weights the user has on disk (nothing is fetched).

The standard recipe: generated images are quantised to uint8 (what a saved PNG holds), grey is
repeated to RGB, images are resized to 299x299 (bilinear), the 2,048-d pool features of
Inception-v3 are taken, and the Fréchet distance is between the Gaussian of ``n`` generated
samples and that of the **whole** real set (published FIDs use 10,000 or 50,000 samples; with
fewer than 2,049 the covariance is rank-deficient and a warning says so).

Two weight files are understood:

- a TorchScript Inception, e.g. ``inception-2015-12-05.pt`` as used by the StyleGAN2-ADA /
  StyleGAN3 metrics and clean-fid, called as ``model(x, return_features=True)`` on float
  0..255 images ``[N, 3, 299, 299]``; no extra package needed;
- torch-fidelity's ``pt_inception-2015-12-05-*.pth`` state dict, through torchmetrics'
  ``NoTrainInceptionV3`` (``pip install torchmetrics torch-fidelity``), fed uint8 images.

>>> fid = inception_fid(fake, real_batches, "inception-2015-12-05.pt")   # doctest: +SKIP
>>> fid["fid"], fid["n_fake"], fid["n_real"]                              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

import wdist
from wdist_apps.wgan.evaluate import warn_if_rank_deficient

INCEPTION_SIZE = 299


def inception_input(images: torch.Tensor) -> torch.Tensor:
    """Images ``[N, 1 or 3, H, W]`` (float in [-1, 1], or uint8) -> float 0..255
    ``[N, 3, 299, 299]``: quantised to uint8 first (floats), grey repeated to RGB, bilinear
    resize (``align_corners=False``, as pytorch-fid and torch-fidelity)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 1 or 3, H, W], got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                          align_corners=False)
    return x.clamp_(0, 255)


class InceptionFeatures:
    """``images -> [N, 2048]`` Inception-v3 pool features from a local weights file (see the
    module docstring for the two formats); any other file is a ``ValueError`` naming it."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu"):
        self.path, self.device = Path(path), torch.device(device)
        if not self.path.is_file():
            raise FileNotFoundError(f"--inception {self.path}: file not found")
        self.torchscript = True
        try:
            self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as err:  # not TorchScript: torch-fidelity's state dict (torchmetrics)
            self.torchscript = False
            not_script = " ".join(f"{type(err).__name__}: {err}".split())[:200]
            self.model = _torchmetrics_inception(self.path, not_script).to(self.device).eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = inception_input(images).to(self.device)
        if self.torchscript:
            f = self.model(x, return_features=True)
        else:
            f = self.model(x.round().to(torch.uint8))
        return f.reshape(len(x), -1).double().cpu()


def _torchmetrics_inception(path: Path, not_script: str) -> torch.nn.Module:
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as err:
        raise ValueError(
            f"--inception {path} is not TorchScript ({not_script}); a torch-fidelity state dict "
            "needs `pip install torchmetrics torch-fidelity` (accepted: a TorchScript Inception "
            "such as inception-2015-12-05.pt, or torch-fidelity's pt_inception-2015-12-05-*.pth)"
        ) from err
    try:
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                  feature_extractor_weights_path=str(path))
    except Exception as err:
        why = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        raise ValueError(f"--inception {path}: not a TorchScript Inception ({not_script}) nor "
                         f"torch-fidelity Inception-v3 weights ({why})") from None


def feature_stats(batches: Iterable[torch.Tensor],
                  features: InceptionFeatures) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean ``[d]``, unbiased covariance ``[d, d]`` (float64) and count of the features of every
    image in ``batches``, accumulated batch by batch (the real set need not fit in memory)."""
    shift, total, outer, n = None, 0.0, 0.0, 0
    for batch in batches:
        f = features(batch)
        if shift is None:  # accumulate around the first batch's mean: no cancellation
            shift = f.mean(0)
        f = f - shift
        total, outer, n = total + f.sum(0), outer + f.T @ f, n + len(f)
    if n < 2:
        raise ValueError(f"need at least 2 images for a covariance, got {n}")
    mean = total / n
    cov = (outer - n * torch.outer(mean, mean)) / (n - 1)
    return mean + shift, (cov + cov.T) / 2, n


def inception_fid(fake: torch.Tensor, real_batches: Iterable[torch.Tensor],
                  inception: str | Path | InceptionFeatures, batch_size: int = 100,
                  device: torch.device | str = "cpu") -> dict:
    """FID of ``fake`` images ``[N, C, H, W]`` against every image in ``real_batches``.

    Returns ``fid`` (= W2² between the two Gaussians, ``wdist.gaussian_w2``), ``n_fake``,
    ``n_real``, ``feature_dim``; warns when either count is at most the feature dimension.
    """
    model = inception if isinstance(inception, InceptionFeatures) else InceptionFeatures(
        inception, device)
    m_r, c_r, n_r = feature_stats(real_batches, model)
    m_f, c_f, n_f = feature_stats(fake.split(batch_size), model)
    for what, n in (("generated", n_f), ("real", n_r)):
        warn_if_rank_deficient(n, len(m_r), what)
    fid = float(wdist.gaussian_w2(m_f, c_f, m_r, c_r))
    return {"fid": fid, "n_fake": n_f, "n_real": n_r, "feature_dim": len(m_r),
            "inception": str(model.path)}
