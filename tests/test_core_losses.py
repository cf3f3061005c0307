import numpy as np
import pytest
import torch

import wdist


def test_quantile_huber_hand_computed():
    # N = 2 quantiles at taus (0.25, 0.75), M = 2 target samples.
    pred = torch.tensor([[0.0, 1.0]])
    target = torch.tensor([[0.5, 3.0]])
    # u_ij = target_j - pred_i: [[0.5, 3.0], [-0.5, 2.0]]
    # Huber (kappa = 1): [[0.125, 2.5], [0.125, 1.5]]
    # weights |tau_i - 1{u<0}|: [[0.25, 0.25], [0.25, 0.75]]
    # rho: [[0.03125, 0.625], [0.03125, 1.125]]; mean over j then sum over i:
    expected = (0.03125 + 0.625) / 2 + (0.03125 + 1.125) / 2
    assert wdist.quantile_huber_loss(pred, target).item() == pytest.approx(expected)


def test_pinball_when_kappa_zero():
    pred = torch.tensor([[0.0, 1.0]])
    target = torch.tensor([[0.5, 3.0]])
    # |u| = [[0.5, 3.0], [0.5, 2.0]], weights as above
    expected = (0.25 * 0.5 + 0.25 * 3.0) / 2 + (0.25 * 0.5 + 0.75 * 2.0) / 2
    assert wdist.quantile_huber_loss(pred, target, kappa=0).item() == pytest.approx(expected)


def test_minimiser_is_the_quantile_function():
    # Minimising the pinball loss over theta recovers the tau-quantiles of the target samples.
    target = torch.randn(1, 4000, dtype=torch.float64) * 2 + 1
    theta = torch.zeros(1, 5, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.05)
    for _ in range(1500):
        opt.zero_grad()
        wdist.quantile_huber_loss(theta, target, kappa=0).backward()
        opt.step()
    taus = wdist.quantile_midpoints(5, dtype=torch.float64)
    ref = torch.quantile(target[0], taus)
    assert torch.allclose(theta[0].detach(), ref, atol=0.05)


def test_reduction_none_and_errors():
    pred, target = torch.randn(3, 4), torch.randn(3, 6)
    per = wdist.quantile_huber_loss(pred, target, reduction="none")
    assert per.shape == (3,)
    assert per.mean().item() == pytest.approx(wdist.quantile_huber_loss(pred, target).item())
    with pytest.raises(ValueError, match="target"):
        wdist.quantile_huber_loss(pred, torch.randn(2, 6))
    with pytest.raises(ValueError, match="taus"):
        wdist.quantile_huber_loss(pred, target, taus=torch.rand(5))
    with pytest.raises(ValueError, match="NaN"):
        wdist.quantile_huber_loss(pred, target.fill_(float("nan")))


def _pinball_reference(pred, target, taus):
    # the pinball loss written out with numpy loops (kappa = 0): sum_i mean_j rho_tau_i(u_ij)
    total = 0.0
    for b in range(pred.shape[0]):
        for i in range(pred.shape[1]):
            u = target[b] - pred[b, i]
            total += np.mean(np.abs(taus[i] - (u < 0)) * np.abs(u))
    return total / pred.shape[0]


def test_taus_as_list_and_numpy():
    pred = torch.tensor([[0.0, 1.0, 2.0]])
    target = torch.tensor([[0.5, 3.0, -1.0, 1.5]])
    taus = [0.1, 0.5, 0.8]
    ref = _pinball_reference(pred.numpy(), target.numpy(), np.array(taus))
    for t in (taus, np.array(taus), torch.tensor(taus)):
        out = wdist.quantile_huber_loss(pred, target, taus=t, kappa=0)
        assert out.dtype == pred.dtype
        assert out.item() == pytest.approx(ref, rel=1e-6)


def test_loss_argument_errors():
    pred, target = torch.randn(2, 3), torch.randn(2, 4)
    with pytest.raises(ValueError, match="kappa"):
        wdist.quantile_huber_loss(pred, target, kappa=float("nan"))
    with pytest.raises(ValueError, match="kappa"):
        wdist.quantile_huber_loss(pred, target, kappa=-1.0)
    with pytest.raises(TypeError, match="kappa"):
        wdist.quantile_huber_loss(pred, target, kappa="1")
    with pytest.raises(ValueError, match=r"taus must be quantile levels in \[0, 1\]"):
        wdist.quantile_huber_loss(pred, target, taus=torch.tensor([-0.1, 0.5, 0.9]))
    with pytest.raises(ValueError, match=r"taus must be quantile levels in \[0, 1\]"):
        wdist.quantile_huber_loss(pred, target, taus=[0.1, 0.5, 1.5])
    with pytest.raises(ValueError, match="taus contains NaN"):
        wdist.quantile_huber_loss(pred, target, taus=[0.1, float("nan"), 0.5])
    # dtype mixes are a TypeError, as everywhere in the core (no silent float64 upcast)
    with pytest.raises(TypeError, match="taus has dtype torch.float64"):
        wdist.quantile_huber_loss(pred, target, taus=torch.tensor([0.1, 0.5, 0.9],
                                                                  dtype=torch.float64))
    with pytest.raises(TypeError, match="taus must hold numbers"):
        wdist.quantile_huber_loss(pred, target, taus=["a", "b", "c"])


def test_quantile_midpoints_checks_n():
    assert torch.allclose(wdist.quantile_midpoints(np.int64(4), dtype=torch.float64),
                          torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64))
    for bad in (-1, 0):
        with pytest.raises(ValueError, match="n .*must be an int >= 1"):
            wdist.quantile_midpoints(bad)
    with pytest.raises(TypeError, match="n .*must be an int"):
        wdist.quantile_midpoints(2.5)
