import numpy as np
import ot
import pytest
import torch

import wdist


@pytest.mark.parametrize("p", [1, 2])
def test_emd_matches_pot(rng, p):
    x, y = rng.normal(size=(40, 3)), rng.normal(1.0, 1.0, size=(30, 3))
    a, b = rng.random(40), rng.random(30)
    a, b = a / a.sum(), b / b.sum()
    cost = ot.dist(x, y, metric="euclidean") ** p
    ref = ot.emd2(a, b, cost)
    ours = wdist.emd(torch.tensor(x), torch.tensor(y), torch.tensor(a), torch.tensor(b), p=p)
    assert ours.item() == pytest.approx(ref, rel=1e-9)


def test_emd_plan_marginals(rng):
    x, y = torch.tensor(rng.normal(size=(15, 2))), torch.tensor(rng.normal(size=(10, 2)))
    cost, plan = wdist.emd(x, y, p=2, return_plan=True)
    assert torch.allclose(plan.sum(1), torch.full((15,), 1 / 15, dtype=plan.dtype))
    assert torch.allclose(plan.sum(0), torch.full((10,), 1 / 10, dtype=plan.dtype))
    assert cost.item() == pytest.approx((plan * torch.cdist(x, y) ** 2).sum().item())


def test_emd_gradcheck(rng):
    x = torch.tensor(rng.normal(size=(6, 2)), requires_grad=True)
    y = torch.tensor(rng.normal(size=(5, 2)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, v: wdist.emd(u, v, p=2), (x, y))


def test_emd_weight_gradient_matches_pot(rng):
    x, y = rng.normal(size=(8, 2)), rng.normal(size=(6, 2))
    a = torch.tensor(np.full(8, 1 / 8), requires_grad=True)
    b = torch.tensor(np.full(6, 1 / 6), requires_grad=True)
    wdist.emd(torch.tensor(x), torch.tensor(y), a, b, p=2).backward()
    a2 = torch.tensor(np.full(8, 1 / 8), requires_grad=True)
    b2 = torch.tensor(np.full(6, 1 / 6), requires_grad=True)
    ot.emd2(a2, b2, torch.tensor(ot.dist(x, y))).backward()
    assert torch.allclose(a.grad, a2.grad, atol=1e-9)
    assert torch.allclose(b.grad, b2.grad, atol=1e-9)


def test_iteration_cap_is_an_error_not_a_wrong_number(rng):
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    with pytest.raises(RuntimeError, match="num_iter_max"):
        wdist.emd(x, y, num_iter_max=50)
    # the default cap is large enough where POT's own default silently fails
    assert wdist.emd(x, y).item() == pytest.approx(
        ot.emd2([], [], ot.dist(x, y, metric="euclidean"), numItermax=10**7), rel=1e-9
    )
