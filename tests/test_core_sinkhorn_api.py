"""sinkhorn_from_cost, sinkhorn_solve (SinkhornResult) and SamplesLoss against POT, GeomLoss and
scipy."""

import math

import numpy as np
import ot
import pytest
import scipy.stats
import torch

import wdist


def _problem(seed, n=30, m=25, d=2):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=gen, dtype=torch.float64)
    y = torch.rand(m, d, generator=gen, dtype=torch.float64) + 0.3
    a = torch.rand(n, generator=gen, dtype=torch.float64) + 0.1
    b = torch.rand(m, generator=gen, dtype=torch.float64) + 0.1
    return x, y, a / a.sum(), b / b.sum()


def _kl(p, q):
    return (p * torch.log(p / q)).sum()


def test_from_cost_matches_pot_sinkhorn_plan_and_values():
    x, y, a, b = _problem(0)
    cost = torch.cdist(x, y) ** 2
    eps = 0.05
    plan_pot = torch.as_tensor(ot.sinkhorn(a.numpy(), b.numpy(), cost.numpy(), eps,
                                           stopThr=1e-13, numItermax=10**5))
    linear_pot = float(ot.sinkhorn2(a.numpy(), b.numpy(), cost.numpy(), eps, stopThr=1e-13,
                                    numItermax=10**5))
    res = wdist.sinkhorn_solve_from_cost(cost, a, b, eps=eps, tol=1e-10, max_iter=10**4)
    assert torch.allclose(res.plan(), plan_pot, atol=1e-10)
    assert (res.plan() * cost).sum().item() == pytest.approx(linear_pot, rel=1e-8)
    # value = the primal objective <P, C> + eps KL(P | a x b) (POT's sinkhorn2 gives <P, C>)
    primal = linear_pot + eps * _kl(plan_pot, a[:, None] * b[None]).item()
    assert res.value.item() == pytest.approx(primal, rel=1e-8)
    assert wdist.sinkhorn_from_cost(cost, a, b, eps=eps, tol=1e-10).item() == pytest.approx(
        primal, rel=1e-8)
    assert res.converged is True and res.n_iter > 0 and float(res.marginal_error) < 1e-8


def test_from_cost_gradient_is_the_plan():
    x, y, a, b = _problem(1, 12, 9)
    cost = (torch.cdist(x, y) ** 2).requires_grad_(True)
    wdist.sinkhorn_from_cost(cost, a, b, eps=0.1, tol=1e-12).backward()
    plan_pot = ot.sinkhorn(a.numpy(), b.numpy(), cost.detach().numpy(), 0.1, stopThr=1e-14,
                           numItermax=10**5)
    assert torch.allclose(cost.grad, torch.as_tensor(plan_pot), atol=1e-10)


def test_from_cost_batched_equals_one_by_one():
    gen = torch.Generator().manual_seed(2)
    cost = torch.rand(3, 20, 15, generator=gen, dtype=torch.float64)
    a = torch.rand(3, 20, generator=gen, dtype=torch.float64)
    res = wdist.sinkhorn_solve_from_cost(cost, a, eps=0.05, tol=1e-10)
    assert res.value.shape == (3,) and res.plan().shape == (3, 20, 15) and res.f.shape == (3, 20)
    for i in range(3):
        an = (a[i] / a[i].sum()).numpy()
        ref = ot.sinkhorn(an, np.full(15, 1 / 15), cost[i].numpy(), 0.05, stopThr=1e-13,
                          numItermax=10**5)
        assert torch.allclose(res.plan()[i], torch.as_tensor(ref), atol=1e-10)


def test_from_cost_unbalanced_matches_pot_and_keeps_masses():
    x, y, a, b = _problem(3, 10, 8)
    a, b = 2 * a, 0.5 * b  # unequal masses
    cost = torch.cdist(x, y) ** 2
    eps, rho = 0.1, 0.5
    kw = dict(reg=eps, reg_m=rho, stopThr=1e-14, numItermax=10**5)
    plan_pot = ot.unbalanced.sinkhorn_unbalanced(a.numpy(), b.numpy(), cost.numpy(), **kw)
    linear = ot.unbalanced.sinkhorn_unbalanced2(a.numpy(), b.numpy(), cost.numpy(), **kw)
    total = ot.unbalanced.sinkhorn_unbalanced2(a.numpy(), b.numpy(), cost.numpy(),
                                               returnCost="total", **kw)
    res = wdist.sinkhorn_solve_from_cost(cost, a, b, eps=eps, rho=rho, tol=1e-12)
    assert torch.allclose(res.plan(), torch.as_tensor(plan_pot), atol=1e-10)
    assert (res.plan() * cost).sum().item() == pytest.approx(float(linear), rel=1e-8)
    m_a, m_b, m_p = a.sum().item(), b.sum().item(), float(plan_pot.sum())
    expected = float(total) + eps * (m_a * m_b - m_p) + rho * (m_a + m_b - 2 * m_p)
    assert res.value.item() == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("reach", [None, 0.7])
def test_from_cost_debiased_matches_geomloss(reach):
    geomloss = pytest.importorskip("geomloss")
    x, y, a, b = _problem(4, 25, 20)
    if reach is not None:
        a, b = 3 * a, b  # unequal masses
    blur = 0.2
    c = [torch.cdist(u, v) ** 2 for u, v in ((x, y), (x, x), (y, y))]
    ours = wdist.sinkhorn_from_cost(c[0], a, b, eps=blur**2, rho=None if reach is None
                                    else reach**2, cost_xx=c[1], cost_yy=c[2], tol=1e-9)
    # GeomLoss's p = 2 cost is |x - y|^2 / 2: halve eps and rho, double its value
    loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=blur / math.sqrt(2), debias=True,
                                reach=None if reach is None else reach / math.sqrt(2),
                                scaling=0.99)
    assert ours.item() == pytest.approx(2 * loss(a, x, b, y).item(), rel=1e-3)


def test_from_cost_self_cost_gradient_is_minus_half_the_self_plan():
    x, y, a, b = _problem(5, 8, 7)
    cxx = (torch.cdist(x, x) ** 2).requires_grad_(True)
    wdist.sinkhorn_from_cost(torch.cdist(x, y) ** 2, a, b, eps=0.1, cost_xx=cxx,
                             cost_yy=torch.cdist(y, y) ** 2, tol=1e-12).backward()
    plan_aa = ot.sinkhorn(a.numpy(), a.numpy(), cxx.detach().numpy(), 0.1, stopThr=1e-14,
                          numItermax=10**5)
    assert torch.allclose(cxx.grad, -0.5 * torch.as_tensor(plan_aa), atol=1e-9)


def test_from_cost_bad_input():
    with pytest.raises(ValueError, match="cost must have shape"):
        wdist.sinkhorn_from_cost(torch.ones(3), eps=0.1)
    with pytest.raises(ValueError, match="cost_xx and cost_yy"):
        wdist.sinkhorn_from_cost(torch.ones(3, 2), eps=0.1, cost_xx=torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"cost_yy must have shape \[2, 2\]"):
        wdist.sinkhorn_from_cost(torch.ones(3, 2), eps=0.1, cost_xx=torch.ones(3, 3),
                                 cost_yy=torch.ones(3, 3))
    with pytest.raises(ValueError, match="eps"):
        wdist.sinkhorn_from_cost(torch.ones(3, 2), eps=0)
    with pytest.raises(TypeError):
        wdist.sinkhorn_from_cost(torch.ones(3, 2), None, None, 0.1)  # eps is keyword-only


@pytest.mark.parametrize("backend", ["dense", "online"])
def test_solve_result_potentials_plan_and_marginals(backend):
    x, y, a, b = _problem(6, 40, 30)
    res = wdist.sinkhorn_solve(x, y, a, b, blur=0.2, debias=False, tol=1e-9, max_iter=10**4,
                               backend=backend)
    plan_pot = ot.sinkhorn(a.numpy(), b.numpy(), (torch.cdist(x, y) ** 2).numpy(), 0.04,
                           stopThr=1e-13, numItermax=10**5)
    assert torch.allclose(res.plan(), torch.as_tensor(plan_pot), atol=1e-9)
    assert res.f.shape == (40,) and res.g.shape == (30,) and res.converged is True
    assert float(res.marginal_error) < 1e-7
    assert res.value.item() == pytest.approx(
        wdist.sinkhorn(x, y, a, b, blur=0.2, debias=False, tol=1e-9, max_iter=10**4).item(),
        rel=1e-10)
    # stopped early: a warning, converged False, and a marginal error to show for it
    with pytest.warns(RuntimeWarning, match="did not reach tol"):
        early = wdist.sinkhorn_solve(x, y, a, b, blur=0.02, debias=False, tol=1e-9, max_iter=2,
                                     backend=backend)
    assert early.converged is False
    plan = early.plan()
    direct = (plan.sum(1) - a).abs().sum() + (plan.sum(0) - b).abs().sum()
    assert float(early.marginal_error) == pytest.approx(float(direct), rel=1e-6)
    assert wdist.sinkhorn_solve(x, y, blur=0.2, tol=None, backend=backend).converged is None


def test_samples_loss_sinkhorn_matches_geomloss_batched():
    geomloss = pytest.importorskip("geomloss")
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(2, 30, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(2, 25, 3, generator=gen, dtype=torch.float64) + 0.2
    a = torch.softmax(torch.randn(2, 30, generator=gen, dtype=torch.float64), -1)
    b = torch.softmax(torch.randn(2, 25, generator=gen, dtype=torch.float64), -1)
    for p, factor, scale in ((2, 2.0, math.sqrt(2)), (1, 1.0, 1.0)):
        ours = wdist.SamplesLoss("sinkhorn", p=p, blur=0.1, scaling=0.95, tol=1e-6)
        # GeomLoss has no stopping test: close to converged only as its scaling -> 1
        ref = geomloss.SamplesLoss("sinkhorn", p=p, blur=0.1 / scale, scaling=0.99)
        assert ours(a, x, b, y).shape == (2,)
        assert torch.allclose(ours(a, x, b, y), factor * ref(a, x, b, y), rtol=3e-3)
        assert torch.allclose(ours(x[0], y[0]), factor * ref(x[0], y[0]), rtol=3e-3)


def test_samples_loss_exact_and_sliced():
    x, y, a, b = _problem(8, 20, 15)
    cost = (torch.cdist(x, y) ** 2).numpy()
    exact = wdist.SamplesLoss("exact", p=2)
    assert exact(a, x, b, y).item() == pytest.approx(ot.emd2(a.numpy(), b.numpy(), cost),
                                                     rel=1e-10)
    batched = exact(torch.stack([x, x]), torch.stack([y, y + 1]))
    assert batched.shape == (2,) and batched[1] > batched[0]
    # in 1-D every direction is +-1: the sliced cost is W_1 itself (scipy)
    u, v = x[:, :1], y[:, :1]
    sliced = wdist.SamplesLoss("sliced", p=1, n_projections=4, seed=0)
    ref = scipy.stats.wasserstein_distance(u[:, 0], v[:, 0], a, b)
    assert sliced(a, u, b, v).item() == pytest.approx(ref, rel=1e-10)
    with pytest.raises(TypeError, match=r"\(x, y\) or \(a, x, b, y\)"):
        exact(x, y, a)
    with pytest.raises(ValueError, match="loss must be one of"):
        wdist.SamplesLoss("energy")
