"""Image metrics: mode coverage, the Fréchet distance's floor and rank warning, the Inception
FID path (preprocessing, streaming statistics), cross-checked against torchmetrics."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import entropy
from torchmetrics.image.fid import FrechetInceptionDistance

from wdist_apps.wgan.data import load_digits
from wdist_apps.wgan.evaluate import label_coverage
from wdist_apps.wgan.features import FeatureExtractor
from wdist_apps.wgan.fid import InceptionFeatures, inception_fid, inception_input


def test_label_coverage_on_a_known_histogram():
    counts = [30, 30, 20, 10, 5, 3, 2, 0, 0, 0]
    labels = torch.repeat_interleave(torch.arange(10), torch.tensor(counts))
    probs = torch.eye(10, dtype=torch.float64)[labels]
    probs[:4] = torch.tensor([0.5, 0.5] + [0.0] * 8)  # 4 unsure samples of class 0 (argmax 0)
    cov = label_coverage(probs)
    assert cov["class_counts"] == counts
    assert cov["confident_frac"] == pytest.approx(0.96)
    assert cov["label_entropy"] == pytest.approx(4 / 100 * np.log(2), abs=1e-9)
    marginal = probs.mean(0).numpy()
    assert cov["marginal_entropy"] == pytest.approx(entropy(marginal), abs=1e-9)
    assert cov["classes_covered"] == 6  # >= 100 / 40 = 2.5 samples: not the class with 2
    clamped = probs.clamp_min(1e-12).numpy()  # the log of an exact 0 is not defined
    kl = np.mean([entropy(p, clamped.mean(0)) for p in clamped])
    assert cov["score"] == pytest.approx(np.exp(kl), rel=1e-6)
    with pytest.raises(ValueError, match="probs must be"):
        label_coverage(torch.ones(10))


class _DigitFeatures(torch.nn.Module):
    num_features = 64  # read by torchmetrics for a custom feature extractor

    def __init__(self):
        super().__init__()
        self.extractor = FeatureExtractor()

    def forward(self, x):
        return self.extractor(x)


def test_frechet_distance_matches_torchmetrics_and_has_a_floor(one_thread):
    """Our digit-feature FD = torchmetrics' FrechetInceptionDistance on the same features; the
    real-vs-real floor at the same N is far below that of upside-down digits."""
    from wdist_apps.wgan.evaluate import image_metrics

    x = load_digits(32)  # scikit-learn's 8x8 digits upsampled: quick to load
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    real, other = x[perm[:300]], x[perm[300:600]]
    fake = x[perm[600:900]].flip(-2)  # upside-down digits
    ours = image_metrics(fake, real, FeatureExtractor(), real_floor=other)
    tm = FrechetInceptionDistance(feature=_DigitFeatures())
    tm.update(real, real=True)
    tm.update(fake, real=False)
    assert ours["fd"] == pytest.approx(float(tm.compute()), rel=1e-5)
    assert (ours["n_fake"], ours["n_real"], ours["fd_dim"]) == (300, 300, 64)
    assert 0 < ours["fd_floor"] * 3 < ours["fd"]


class _FakeInception(torch.nn.Module):
    """Stands in for a TorchScript Inception: same call, 3x2x2 = 12 pooled features."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert x.shape[1] == 3 and x.shape[2] == 299 and x.shape[3] == 299
        assert bool(x.min() >= 0) and bool(x.max() <= 255)
        return F.adaptive_avg_pool2d(x, 2).flatten(1) / 255


def test_inception_preprocessing():
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    inp = inception_input(x)
    assert inp.shape == (2, 3, 299, 299) and inp.dtype == torch.float32
    assert torch.equal(inp[:, 0], inp[:, 2])  # grey repeated to RGB
    u8 = ((x + 1) * 127.5).round().to(torch.uint8)
    assert torch.equal(inception_input(u8), inp)  # floats are quantised to uint8 first
    on_grid = u8.float() / 127.5 - 1
    nudged = on_grid + 0.4 / 127.5 * (torch.rand_like(x) - 0.5) * 2  # < half a grey level
    assert torch.equal(inception_input(nudged), inp)
    with pytest.raises(ValueError, match=r"images must be \[N, 1 or 3, H, W\]"):
        inception_input(torch.zeros(2, 2, 8, 8))


def test_inception_fid_streams_the_real_set_and_warns_below_feature_dim(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(_FakeInception()).save(str(path))
    g = torch.Generator().manual_seed(0)
    real = torch.rand(30, 3, 8, 8, generator=g) * 2 - 1
    fake = (torch.rand(25, 3, 8, 8, generator=g) * 1.5 - 1).clamp(-1, 1)
    model = InceptionFeatures(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = inception_fid(fake, real.split(8), model)  # 25 and 30 samples > 12 features
    assert (out["n_fake"], out["n_real"], out["feature_dim"]) == (25, 30, 12)
    tm = FrechetInceptionDistance(feature=_Scripted(path))
    tm.update(inception_input(real), real=True)
    tm.update(inception_input(fake), real=False)
    assert out["fid"] == pytest.approx(float(tm.compute()), rel=1e-5)
    assert inception_fid(real, real.split(7), model)["fid"] == pytest.approx(0, abs=1e-8)
    with pytest.warns(UserWarning, match=r"10 generated samples of 12-d .*rank-deficient"):
        inception_fid(fake[:10], real.split(50), model)
    (tmp_path / "notes.txt").write_text("no weights")
    with pytest.raises(ValueError, match=r"--inception .*notes.txt: not a TorchScript Inception"):
        InceptionFeatures(tmp_path / "notes.txt")


class _Scripted(torch.nn.Module):
    num_features = 12

    def __init__(self, path):
        super().__init__()
        self.model = torch.jit.load(str(path))

    def forward(self, x):
        return self.model(x, return_features=True)
