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
