"""Unbalanced Sinkhorn keeps the masses of ``a`` and ``b``: checked against POT's KL-penalised
solver (plan and values) and GeomLoss's unbalanced Sinkhorn divergence."""

import math

import ot
import pytest
import torch

import wdist

# POT's docstring case for ot.unbalanced.sinkhorn_unbalanced: reg = 1, reg_m = 1.
X = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
A = torch.tensor([0.5, 0.1], dtype=torch.float64)
B = torch.tensor([0.5, 0.5], dtype=torch.float64)


def _pot_plan(a, b, cost, eps, rho):
    return torch.as_tensor(ot.unbalanced.sinkhorn_unbalanced(
        a.numpy(), b.numpy(), cost.numpy(), reg=eps, reg_m=rho, stopThr=1e-14, numItermax=10**5))


@pytest.mark.parametrize("backend", ["dense", "online"])
def test_plan_and_value_match_pot_on_its_docstring_case(backend):
    cost = torch.cdist(X, X) ** 2
    plan_pot = _pot_plan(A, B, cost, 1.0, 1.0)
    assert plan_pot.sum().item() == pytest.approx(0.6215, abs=1e-4)
    res = wdist.sinkhorn(X, X, A, B, p=2, blur=1, reach=1, debias=False, tol=1e-12,
                         return_potentials=True, backend=backend)
    value, f, g = res
    plan = A[:, None] * B[None] * torch.exp(f[:, None] + g[None] - cost)
    assert torch.allclose(plan, plan_pot, atol=1e-10)
    assert (plan * cost).sum().item() == pytest.approx(0.19600, abs=1e-5)
    # POT's sinkhorn_unbalanced2: "linear" is <P, M>; "total" adds the KL terms without their
    # mass parts, so wdist's value (generalised KL) = total + eps (m_a m_b - m_P)
    # + rho (m_a + m_b - 2 m_P).
    kw = dict(reg=1.0, reg_m=1.0, stopThr=1e-14, numItermax=10**5)
    linear = ot.unbalanced.sinkhorn_unbalanced2(A.numpy(), B.numpy(), cost.numpy(), **kw)
    total = ot.unbalanced.sinkhorn_unbalanced2(A.numpy(), B.numpy(), cost.numpy(),
                                               returnCost="total", **kw)
    assert (plan * cost).sum().item() == pytest.approx(float(linear), abs=1e-10)
    m_a, m_b, m_p = A.sum().item(), B.sum().item(), plan_pot.sum().item()
    expected = float(total) + (m_a * m_b - m_p) + (m_a + m_b - 2 * m_p)
    assert value.item() == pytest.approx(expected, abs=1e-10)
    assert value.item() == pytest.approx(0.335564, abs=1e-6)


def test_masses_are_kept_not_normalised(rng):
    # a pre-normalised a is another problem (the defect: 0.8736 mass instead of 0.6215)
    x = torch.tensor(rng.random((5, 2)))
    y = torch.tensor(rng.random((4, 2)))
    a, b = torch.tensor(rng.random(5)) * 3, torch.tensor(rng.random(4))
    cost = torch.cdist(x, y) ** 2
    _, plan = wdist.sinkhorn(x, y, a, b, blur=0.5, reach=0.7, debias=False, tol=1e-12,
                             return_plan=True)
    assert torch.allclose(plan, _pot_plan(a, b, cost, 0.25, 0.49), atol=1e-9)


@pytest.mark.parametrize("blur, reach", [(0.1, 0.5), (0.3, 1.0)])
def test_debiased_divergence_matches_geomloss_with_unequal_masses(blur, reach):
    geomloss = pytest.importorskip("geomloss")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(30, 2, generator=gen, dtype=torch.float64)
    y = torch.rand(40, 2, generator=gen, dtype=torch.float64) + 0.2
    a = torch.rand(30, generator=gen, dtype=torch.float64)  # mass about 16
    b = 2 * torch.rand(40, generator=gen, dtype=torch.float64)  # mass about 41
    # GeomLoss's p = 2 cost is |x - y|^2 / 2: halve blur^2 and reach^2, double the value
    loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=blur / math.sqrt(2),
                                reach=reach / math.sqrt(2), debias=True, scaling=0.99)
    ref = 2 * loss(a, x, b, y).item()
    ours = wdist.sinkhorn(x, y, a, b, blur=blur, reach=reach, scaling=0.99).item()
    assert ours == pytest.approx(ref, rel=1e-3)
