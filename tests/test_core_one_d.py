import numpy as np
import ot
import pytest
import scipy.stats
import torch

import wdist


@pytest.mark.parametrize("weighted", [False, True])
def test_matches_scipy_p1(rng, weighted):
    for n, m in [(7, 7), (13, 29), (100, 57)]:
        u, v = rng.normal(size=n), rng.normal(1, 2, size=m)
        uw = rng.random(n) if weighted else None
        vw = rng.random(m) if weighted else None
        ours = wdist.wasserstein_1d(u, v, uw, vw, p=1).item()
        ref = scipy.stats.wasserstein_distance(u, v, uw, vw)
        assert ours == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("p", [1, 2, 3, 1.5])
def test_matches_pot_weighted(rng, p):
    u, v = rng.normal(size=40), rng.exponential(size=25)
    uw, vw = rng.random(40), rng.random(25)
    ours = wdist.wasserstein_1d(torch.tensor(u), torch.tensor(v), torch.tensor(uw),
                                torch.tensor(vw), p=p)
    ref = ot.wasserstein_1d(u, v, uw / uw.sum(), vw / vw.sum(), p=p)
    assert ours.item() == pytest.approx(float(ref), rel=1e-6)


def test_equals_emd_on_1d_data(rng):
    u, v = rng.normal(size=30), rng.normal(0.5, 1.0, size=20)
    uw, vw = rng.random(30), rng.random(20)
    for p in (1, 2):
        one_d = wdist.wasserstein_1d(u, v, uw, vw, p=p).item()
        exact = wdist.emd(torch.tensor(u)[:, None], torch.tensor(v)[:, None], uw, vw, p=p).item()
        assert one_d == pytest.approx(exact, rel=1e-6)


def test_batched_matches_loop(rng):
    u = torch.tensor(rng.normal(size=(4, 3, 50)))
    v = torch.tensor(rng.normal(size=(4, 3, 30)))
    out = wdist.wasserstein_1d(u, v, p=2)
    assert out.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            ref = ot.wasserstein_1d(u[i, j].numpy(), v[i, j].numpy(), p=2)
            assert out[i, j].item() == pytest.approx(float(ref), rel=1e-6)
    # broadcasting leading dims: one v for every u
    out_b = wdist.wasserstein_1d(u, v[0, 0], p=2)
    assert out_b[2, 1].item() == pytest.approx(
        float(ot.wasserstein_1d(u[2, 1].numpy(), v[0, 0].numpy(), p=2)), rel=1e-6
    )


def test_disjoint_diracs_gradient():
    # The textbook case: W1(delta_0, delta_theta) = |theta|, d/dtheta = sign(theta).
    for theta in (-1.5, 0.3, 2.0):
        t = torch.tensor([theta], dtype=torch.float64, requires_grad=True)
        w = wdist.wasserstein_1d(torch.zeros(1, dtype=torch.float64), t)
        (g,) = torch.autograd.grad(w, t)
        assert w.item() == pytest.approx(abs(theta))
        assert g.item() == pytest.approx(np.sign(theta))


def test_gradients_values_and_weights():
    u = torch.randn(12, dtype=torch.float64, requires_grad=True)
    v = torch.randn(9, dtype=torch.float64, requires_grad=True)
    uw = torch.rand(12, dtype=torch.float64, requires_grad=True)
    vw = torch.rand(9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c, d: wdist.wasserstein_1d(a, b, c, d, p=2),
                                    (u, v, uw, vw))


def test_float32_and_device_mix_errors():
    u32 = torch.randn(5)
    assert wdist.wasserstein_1d(u32, torch.randn(6)).dtype == torch.float32
    with pytest.raises(TypeError, match="v_values"):
        wdist.wasserstein_1d(u32, torch.randn(6, dtype=torch.float64))
