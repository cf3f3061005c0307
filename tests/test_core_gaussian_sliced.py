import numpy as np
import ot
import pytest
import scipy.linalg
import torch

import wdist


def test_gaussian_w2_closed_form_1d():
    val = wdist.gaussian_w2(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-0.5]),
                            torch.tensor([[0.25]]))
    assert val.item() == pytest.approx((1.5) ** 2 + (2.0 - 0.5) ** 2, rel=1e-6)


def _spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T


def test_gaussian_w2_matches_pot_bures(rng):
    d = 5
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    c1, c2 = _spd(rng, d), _spd(rng, d)
    ref = ot.gaussian.bures_wasserstein_distance(m1, m2, c1, c2) ** 2
    ours = wdist.gaussian_w2(*map(torch.tensor, (m1, c1, m2, c2)))
    assert ours.item() == pytest.approx(float(ref), rel=1e-8)


def test_gaussian_w2_batched_and_gradients_singular(rng):
    d = 4
    c1 = torch.tensor(np.stack([_spd(rng, d, rank=2), _spd(rng, d)]), requires_grad=True)
    c2 = torch.tensor(np.stack([_spd(rng, d), np.eye(d)]), requires_grad=True)
    m = torch.zeros(2, d, dtype=torch.float64)
    val = wdist.gaussian_w2(m, c1, m, c2)
    assert val.shape == (2,)
    g1, g2 = torch.autograd.grad(val.sum(), (c1, c2))
    assert torch.isfinite(g1).all() and torch.isfinite(g2).all()
    # gradient w.r.t. a full-rank C2 matches finite differences (symmetric perturbation)
    pert = torch.tensor(_spd(rng, d)) * 1e-6
    fd = (wdist.gaussian_w2(m[1], c1[1], m[1], c2[1] + pert)
          - wdist.gaussian_w2(m[1], c1[1], m[1], c2[1] - pert)) / 2
    assert fd.item() == pytest.approx((g2[1] * pert).sum().item(), rel=1e-4)


def test_frechet_distance_hand_computed_fid(rng):
    f1, f2 = rng.normal(size=(50, 3)), rng.normal(0.5, 2.0, size=(40, 3))
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    fid = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert wdist.frechet_distance(f1, f2).item() == pytest.approx(fid, rel=1e-8)


def test_sliced_matches_pot_with_same_directions(rng):
    x, y = rng.normal(size=(100, 3)), rng.normal(1.0, 1.0, size=(80, 3))
    ours = wdist.sliced_wasserstein(x, y, p=2, n_projections=64, seed=3)
    theta = wdist.sliced._directions(3, 64, torch.tensor(x), 3).numpy()
    ref = np.mean([ot.wasserstein_1d(x @ t, y @ t, p=2) for t in theta.T])
    assert ours.item() == pytest.approx(ref, rel=1e-6)


def test_max_sliced_bounds(rng):
    x = torch.tensor(rng.normal(size=(200, 2)))
    y = x + torch.tensor([3.0, 0.0], dtype=torch.float64)
    # a pure translation by 3 along e1: max-sliced W2^2 = 9, sliced = 9 E[cos^2] = 4.5
    ms = wdist.sliced_wasserstein(x, y, p=2, max_sliced=True, seed=0).item()
    sw = wdist.sliced_wasserstein(x, y, p=2, n_projections=2000, seed=0).item()
    assert ms == pytest.approx(9.0, rel=1e-3)
    assert sw == pytest.approx(4.5, rel=0.05)
    assert sw <= ms <= wdist.emd(x, y, p=2).item() + 1e-9


# --- sliced with weights; max-sliced under no_grad / inference_mode -------------------------


@pytest.mark.parametrize("p", [1, 2])
def test_sliced_weighted_matches_pot_with_same_projections(rng, p):
    x, y = rng.normal(size=(50, 3)), rng.normal(1.0, 1.5, size=(40, 3))
    a, b = rng.random(50) + 0.1, rng.random(40) + 0.1
    ours = wdist.sliced_wasserstein(x, y, a=a, b=b, p=p, n_projections=32, seed=5)
    theta = wdist.sliced._directions(3, 32, torch.tensor(x), 5).numpy()
    # POT returns SW_p, the p-th root of the mean, and wants normalised weights
    ref = ot.sliced_wasserstein_distance(x, y, a / a.sum(), b / b.sum(), p=p,
                                         projections=theta) ** p
    assert ours.item() == pytest.approx(ref, rel=1e-9)
    # the weights matter: uniform weights give another value
    assert abs(wdist.sliced_wasserstein(x, y, p=p, n_projections=32, seed=5).item() - ref) > 1e-3


def test_max_sliced_weighted_translation_closed_form(rng):
    # y = x + 3 e1 with the same weights on both: max-sliced W2^2 = 9 (at theta = e1)
    x = torch.tensor(rng.normal(size=(60, 2)))
    a = torch.tensor(rng.random(60) + 0.1)
    y = x + torch.tensor([3.0, 0.0], dtype=torch.float64)
    ms = wdist.sliced_wasserstein(x, y, a=a, b=a, p=2, max_sliced=True, seed=0)
    assert ms.item() == pytest.approx(9.0, rel=1e-3)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_max_sliced_under_no_grad_and_inference_mode(rng, context):
    x = torch.tensor(rng.normal(size=(80, 2)))
    y = x + torch.tensor([3.0, 0.0], dtype=torch.float64)
    outside = wdist.sliced_wasserstein(x, y, p=2, max_sliced=True, seed=0)
    with context():
        inside = wdist.sliced_wasserstein(x.clone(), y.clone(), p=2, max_sliced=True, seed=0)
    assert inside.item() == pytest.approx(outside.item(), rel=1e-12)
    assert inside.item() == pytest.approx(9.0, rel=1e-3)  # the translation's closed form


def test_sliced_argument_types(rng):
    x, y = rng.normal(size=(5, 2)), rng.normal(size=(4, 2))
    with pytest.raises(TypeError, match="seed"):
        wdist.sliced_wasserstein(x, y, seed="a")
    with pytest.raises(TypeError, match="seed"):
        wdist.sliced_wasserstein(x, y, seed=1.5)
    with pytest.raises(TypeError, match="n_projections"):
        wdist.sliced_wasserstein(x, y, n_projections=2.0)
    with pytest.raises(ValueError, match="max_iter"):
        wdist.sliced_wasserstein(x, y, max_sliced=True, max_iter=-1)
    # numpy integers are integers
    v = wdist.sliced_wasserstein(x, y, n_projections=np.int64(8), seed=np.int64(2), p=np.int64(2))
    theta = wdist.sliced._directions(2, 8, torch.tensor(x), 2).numpy()
    ref = ot.sliced_wasserstein_distance(x, y, p=2, projections=theta) ** 2
    assert v.item() == pytest.approx(ref, rel=1e-9)


# --- gaussian_w2 rejects covariances that are not PSD ----------------------------------------


@pytest.mark.parametrize("bad", [-np.eye(2), np.array([[1.0, 2.0], [2.0, 1.0]])])
@pytest.mark.parametrize("which", ["cov1", "cov2"])
def test_gaussian_w2_rejects_non_psd(bad, which):
    assert np.linalg.eigvalsh(bad).min() < 0  # the reference: indefinite / negative definite
    covs = {"cov1": np.eye(2), "cov2": np.eye(2), which: bad}
    with pytest.raises(ValueError, match=f"{which} must be positive semi-definite"):
        wdist.gaussian_w2(np.zeros(2), covs["cov1"], np.zeros(2), covs["cov2"])
    batched = np.stack([np.eye(2), bad])  # one bad matrix in a batch
    covs = {"cov1": np.stack([np.eye(2)] * 2), "cov2": np.stack([np.eye(2)] * 2), which: batched}
    with pytest.raises(ValueError, match=which):
        wdist.gaussian_w2(np.zeros((2, 2)), covs["cov1"], np.zeros((2, 2)), covs["cov2"])


def test_gaussian_w2_psd_check_can_be_switched_off():
    wdist.set_validation(False)
    try:
        out = wdist.gaussian_w2(np.zeros(2), -np.eye(2), np.zeros(2), np.eye(2))
        assert torch.isfinite(out)  # unchecked: the caller opted out
    finally:
        wdist.set_validation(True)


def test_gaussian_w2_accepts_singular_float32_sample_covariance():
    # 10 points in 64-D: rank 9, float32 round-off gives slightly negative eigenvalues
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(10, 64, generator=g) * 3 + 5
    f2 = torch.randn(12, 64, generator=g) * 0.5 - 1
    c1, c2 = torch.cov(f1.T), torch.cov(f2.T)
    assert torch.linalg.eigvalsh(c1).min() < 0 or torch.linalg.eigvalsh(c2).min() < 0
    ours = wdist.gaussian_w2(f1.mean(0), c1, f2.mean(0), c2)
    # float64 reference (numpy covariances, scipy's sqrtm), as in the FID test above
    g1, g2 = f1.double().numpy(), f2.double().numpy()
    s1, s2 = np.cov(g1, rowvar=False), np.cov(g2, rowvar=False)
    ref = (((g1.mean(0) - g2.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2)
           - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real))
    assert ours.item() == pytest.approx(float(ref), rel=1e-3)
    # frechet_distance (no PSD check: torch.cov is PSD by construction) agrees
    assert wdist.frechet_distance(f1, f2).item() == pytest.approx(float(ref), rel=1e-3)
