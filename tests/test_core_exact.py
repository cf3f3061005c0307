import numpy as np
import ot
import pytest
import scipy.spatial
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
    assert wdist.emd(x, y).item() == pytest.approx(
        ot.emd2([], [], ot.dist(x, y, metric="euclidean"), numItermax=10**7), rel=1e-9
    )


def test_default_cap_is_enough_where_pots_is_not():
    """2,000 Gaussian points in 64-D: POT's default cap (1e5) stops the simplex early and returns
    a cost 0.1% too high with only a UserWarning; ours (50 n m) reaches POT's optimum."""
    g = np.random.default_rng(0)
    x, y = g.normal(size=(2000, 64)), g.normal(size=(2000, 64))
    cost = ot.dist(x, y)
    with pytest.warns(UserWarning, match="numItermax reached"):
        capped = ot.emd2([], [], cost)
    optimum = ot.emd2([], [], cost, numItermax=50 * 2000 * 2000)
    assert capped > optimum * (1 + 5e-4)  # the too-high number POT's default gives
    assert wdist.emd(x, y, p=2).item() == pytest.approx(optimum, rel=1e-12)


# --- emd_from_cost validates its inputs ---------------------------------------------------------


def test_emd_from_cost_integer_cost_matches_pot():
    cost = torch.tensor([[0, 3], [2, 0], [5, 1]])
    a, b = torch.full((3,), 1 / 3), torch.full((2,), 1 / 2)
    ref = ot.emd2(np.full(3, 1 / 3), np.full(2, 1 / 2), cost.numpy().astype(np.float64))
    ours = wdist.emd_from_cost(cost, a, b)
    assert ours.dtype == torch.get_default_dtype()
    assert ours.item() == pytest.approx(ref, rel=1e-6)  # 2/3, not 0
    _, plan = wdist.emd_from_cost(cost, a, b, return_plan=True)
    assert plan.is_floating_point() and plan.sum().item() == pytest.approx(1.0)


def test_emd_from_cost_numpy_and_unnormalised_inputs_match_pot(rng):
    cost = rng.random((4, 5))
    a, b = rng.random(4) + 0.1, rng.random(5) + 0.1
    ref = ot.emd2(a / a.sum(), b / b.sum(), cost)
    assert wdist.emd_from_cost(cost, a, b).item() == pytest.approx(ref, rel=1e-12)
    assert wdist.emd_from_cost(cost.tolist(), list(a), list(b)).item() == pytest.approx(
        ref, rel=1e-12)


@pytest.mark.parametrize(
    "a, b, cost, err, match",
    [
        (np.ones(2), np.ones(3), np.ones((3, 2)), ValueError, r"a must have shape \[3\]"),
        (np.ones(3), np.ones(3), np.ones((3, 2)), ValueError, r"b must have shape \[2\]"),
        (np.ones(3), np.ones(2), np.ones(3), ValueError, r"cost must have shape \[n, m\]"),
        (np.ones(0), np.ones(2), np.ones((0, 2)), ValueError, "cost must have shape"),
        (np.zeros(3), np.ones(2), np.ones((3, 2)), ValueError, "a has zero total mass"),
        (np.ones(3), [1.0, np.nan], np.ones((3, 2)), ValueError, "b contains NaN"),
        ([-1.0, 1, 1], np.ones(2), np.ones((3, 2)), ValueError, "a has negative"),
        (np.ones(3), np.ones(2), [[0, 1], [1, np.inf], [0, 0]], ValueError, "cost contains NaN"),
        (np.ones(3), np.ones(2), [["a", "b"]] * 3, TypeError, "cost must hold numbers"),
        (torch.ones(3), torch.ones(2), torch.ones(3, 2, dtype=torch.float64), TypeError,
         "a has dtype"),
    ],
)
def test_emd_from_cost_clear_errors(a, b, cost, err, match):
    with pytest.raises(err, match=match):
        wdist.emd_from_cost(cost, a, b)


def test_emd_from_cost_num_iter_max_checked():
    with pytest.raises(TypeError, match="num_iter_max"):
        wdist.emd_from_cost(np.ones((3, 2)), np.ones(3), np.ones(2), num_iter_max=1.5)


def test_emd_numpy_integer_p_matches_pot(rng):
    x, y = rng.normal(size=(12, 2)), rng.normal(size=(9, 2))
    ref = ot.emd2([], [], ot.dist(x, y))  # squared Euclidean
    for p in (np.int64(2), np.int32(2), np.float32(2), np.float64(2)):
        assert wdist.emd(x, y, p=p).item() == pytest.approx(ref, rel=1e-9)
    with pytest.raises(TypeError, match="p must be"):
        wdist.emd(x, y, p=True)
    with pytest.raises(TypeError, match="p must be"):
        wdist.emd(x, y, p=np.bool_(True))


# --- scale, sign and exact zeros ------------------------------------------------------------------


def _lsa_cost(cost):
    """Exact assignment cost by scipy's Hungarian solver (uniform weights, n = m)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].mean()


def test_emd_from_cost_negative_costs(rng):
    assert wdist.emd_from_cost([[-2.0, -3.0], [-3.0, -2.0]]).item() == -3.0
    cost = torch.tensor(rng.normal(size=(6, 6)) - 5.0, requires_grad=True)
    value, plan = wdist.emd_from_cost(cost, return_plan=True)
    assert value.item() == pytest.approx(_lsa_cost(cost.detach().numpy()), rel=1e-12)
    value.backward()
    assert torch.equal(cost.grad, plan)  # d<P, C>/dC = P at the (fixed) optimal plan
    # weight gradients: POT's on the positive shift (potentials are shift-invariant once centred)
    wa, wb = rng.random(6) + 0.1, rng.random(6) + 0.1
    a = torch.tensor(wa / wa.sum(), requires_grad=True)
    b = torch.tensor(wb / wb.sum(), requires_grad=True)
    wdist.emd_from_cost(cost.detach(), a, b).backward()
    a2, b2 = (t.detach().clone().requires_grad_(True) for t in (a, b))
    ot.emd2(a2, b2, cost.detach() - cost.min().item()).backward()
    assert torch.allclose(a.grad, a2.grad, atol=1e-9) and torch.allclose(b.grad, b2.grad, atol=1e-9)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_emd_is_exactly_zero_on_identical_clouds(rng, p):
    x = rng.random((50, 3))
    assert wdist.emd(x, x, p=p).item() == 0.0
    assert wdist.emd(x, x[rng.permutation(50)], p=p).item() == 0.0
    far = torch.tensor(x + 1e3, dtype=torch.float32, requires_grad=True)
    value = wdist.emd(far, far.detach().clone(), p=p)
    value.backward()
    assert value.item() == 0.0 and torch.equal(far.grad, torch.zeros_like(far))


@pytest.mark.parametrize("p, scale", [(2, 1e-7), (2, 1e-6), (2, 1e6), (1, 1e-14), (1, 1e-12),
                                      (1.5, 1e-9)])
def test_emd_does_not_depend_on_the_units(p, scale):
    """POT's simplex stops on a non-optimal plan at tiny costs (+70% at 1e-7 for p = 2, n = 100);
    after rescaling the points it solves the unit problem."""
    g = np.random.default_rng(0)
    x, y = g.normal(size=(100, 2)), g.normal(size=(100, 2))
    unit = wdist.emd(x, y, p=p).item()
    scaled = wdist.emd(x * scale, y * scale, p=p).item()
    # abs=0: pytest's default absolute tolerance (1e-12) would swallow values near 1e-14
    assert scaled == pytest.approx(unit * scale**p, rel=1e-9, abs=0)
    cost = scipy.spatial.distance.cdist(x * scale, y * scale) ** p
    ref = _lsa_cost(cost)
    assert scaled == pytest.approx(ref, rel=1e-9, abs=0)
    # the same through emd_from_cost on the tiny costs themselves
    assert wdist.emd_from_cost(cost).item() == pytest.approx(ref, rel=1e-9, abs=0)


def test_emd_gradient_at_tiny_scale(rng):
    x = torch.tensor(rng.normal(size=(6, 2)) * 1e-7, requires_grad=True)
    y = torch.tensor(rng.normal(size=(5, 2)) * 1e-7)
    (g_small,) = torch.autograd.grad(wdist.emd(x, y, p=2), x)
    xu = (x.detach() * 1e7).requires_grad_(True)
    (g_unit,) = torch.autograd.grad(wdist.emd(xu, y * 1e7, p=2), xu)
    assert torch.allclose(g_small, g_unit * 1e-7, rtol=1e-9, atol=0)  # d(s^2 W)/d(s x) = s dW/dx


def test_emd_from_cost_old_argument_order_warns_and_agrees():
    cost = np.array([[0.0, 2.0], [1.0, 0.5]])
    a, b = np.array([0.3, 0.7]), np.array([0.6, 0.4])
    new = wdist.emd_from_cost(cost, a, b).item()
    with pytest.warns(DeprecationWarning, match=r"emd_from_cost\(cost, a, b\)"):
        old = wdist.emd_from_cost(a, b, cost).item()
    assert old == new == pytest.approx(ot.emd2(a, b, cost), rel=1e-12)
