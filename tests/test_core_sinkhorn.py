import warnings

import ot
import pytest
import torch

import wdist


def _clouds(rng, n=60, m=50, d=2):
    x = torch.tensor(rng.random((n, d)))
    y = torch.tensor(rng.random((m, d)) + 0.25)
    return x, y


# The value is the subject: at blur 1e-3 the plan needs more than 2e4 iterations to reach tol
# (the warning says so), the value is within 4e-4 of converged after 1,000.
@pytest.mark.filterwarnings("ignore:sinkhorn did not reach tol")
def test_converges_to_emd_as_blur_vanishes(rng):
    x, y = _clouds(rng, 200, 150)
    exact = wdist.emd(x, y, p=2).item()
    errors = [abs(wdist.sinkhorn(x, y, p=2, blur=b).item() - exact) / exact
              for b in (0.1, 0.01, 1e-3)]
    assert errors[-1] < 0.01
    assert errors[0] > errors[-1]


def test_p1_converges_to_emd(rng):
    x, y = _clouds(rng, 80, 70)
    exact = wdist.emd(x, y, p=1).item()
    assert wdist.sinkhorn(x, y, p=1, blur=1e-3).item() == pytest.approx(exact, rel=0.01)


def test_entropic_cost_matches_pot_log_domain(rng):
    # Our non-debiased dual value <a,f> + <b,g> equals POT's OT_eps = <P,C> + eps KL(P | a x b).
    x, y = _clouds(rng, 30, 20)
    eps = 0.05
    a, b = torch.full((30,), 1 / 30, dtype=torch.float64), torch.full((20,), 1 / 20,
                                                                        dtype=torch.float64)
    cost = torch.cdist(x, y) ** 2
    plan = ot.bregman.sinkhorn_log(a, b, cost, eps, numItermax=20000, stopThr=1e-13)
    kl = (plan * torch.log(plan / (a[:, None] * b[None, :]))).sum()
    ref = ((plan * cost).sum() + eps * kl).item()
    ours = wdist.sinkhorn(x, y, p=2, blur=eps**0.5, debias=False, scaling=0.95)
    assert ours.item() == pytest.approx(ref, rel=1e-4)


@pytest.mark.filterwarnings("ignore:sinkhorn did not reach tol")  # blur 0.01: the sign matters
def test_divergence_zero_on_identical_and_nonnegative(rng):
    x, y = _clouds(rng)
    assert wdist.sinkhorn(x, x.clone()).item() == pytest.approx(0.0, abs=1e-12)
    for blur in (0.01, 0.1, 1.0):
        assert wdist.sinkhorn(x, x + 1e-4, blur=blur).item() >= 0
        assert wdist.sinkhorn(x, y, blur=blur).item() > 0


@pytest.mark.parametrize("p", [1, 2, 1.5])
def test_dense_and_online_agree(rng, p):
    x, y = _clouds(rng, 70, 40, 3)
    a = torch.rand(70, dtype=torch.float64, requires_grad=True)
    x.requires_grad_(True)
    outs = []
    for backend in ("dense", "online"):
        val = wdist.sinkhorn(x, y, a=a, p=p, blur=0.05, backend=backend, tol=1e-9, max_iter=5000)
        outs.append((val, *torch.autograd.grad(val, (x, a))))
    for u, v in zip(outs[0], outs[1]):
        assert torch.allclose(u, v, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("backend", ["dense", "online"])
@pytest.mark.parametrize("debias", [True, False])
@pytest.mark.parametrize("reach", [None, 0.4])
def test_gradient_matches_finite_differences(rng, backend, debias, reach):
    # unbalanced: the value carries rho + eps/2, its gradients rho + eps (a plain product with
    # rho + eps/2 is 0.6-0.8x too small in x; a path through the soft-mins makes a's 1.1-1.5x)
    x, y = _clouds(rng, 8, 6)
    x.requires_grad_(True)
    y.requires_grad_(True)
    a = torch.tensor(rng.random(8) + 0.5, requires_grad=True)
    b = torch.tensor(rng.random(6) + 0.5, requires_grad=True)

    def f(u, v, wa, wb):
        return wdist.sinkhorn(u, v, a=wa, b=wb, blur=0.3, debias=debias, reach=reach, tol=1e-10,
                              max_iter=10**4, backend=backend)

    assert torch.autograd.gradcheck(f, (x, y, a, b), atol=1e-6, rtol=1e-4)


def test_batched_masks_equal_unpadded(rng):
    x1, y1 = _clouds(rng, 10, 7)
    x2, y2 = _clouds(rng, 6, 9)
    xb = torch.zeros(2, 10, 2, dtype=torch.float64)
    yb = torch.zeros(2, 9, 2, dtype=torch.float64)
    a = torch.zeros(2, 10, dtype=torch.float64)
    b = torch.zeros(2, 9, dtype=torch.float64)
    xb[0], yb[0, :7], a[0], b[0, :7] = x1, y1, 1, 1
    xb[1, :6], yb[1], a[1, :6], b[1] = x2, y2, 1, 1
    batched = wdist.sinkhorn(xb, yb, a, b, blur=0.1, diameter=2.0)
    single = [wdist.sinkhorn(x1, y1, blur=0.1, diameter=2.0),
              wdist.sinkhorn(x2, y2, blur=0.1, diameter=2.0)]
    assert batched.shape == (2,)
    assert torch.allclose(batched, torch.stack(single), rtol=1e-10)


def test_stable_at_tiny_blur_float32(rng):
    x, y = _clouds(rng, 100, 100)
    val = wdist.sinkhorn(x.float(), y.float(), blur=1e-3, max_iter=20_000)
    exact = wdist.emd(x, y, p=2).item()
    assert torch.isfinite(val) and val.item() == pytest.approx(exact, rel=0.02)


@pytest.mark.parametrize("backend", ["dense", "online"])
def test_warns_when_max_iter_stops_it_before_tol(rng, backend):
    x, y = _clouds(rng, 40, 30)
    with pytest.warns(RuntimeWarning, match="did not reach tol=0.001 within max_iter=3") as rec:
        wdist.sinkhorn(x, y, blur=0.01, max_iter=3, backend=backend)
    assert rec[0].filename == __file__  # it points at the caller's line, not into wdist
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wdist.sinkhorn(x, y, blur=0.01, max_iter=3, tol=None, backend=backend)  # no test asked
        wdist.sinkhorn(x, y, blur=0.3, backend=backend)  # converged


def test_plan_and_potentials(rng):
    x, y = _clouds(rng, 20, 15)
    cost, plan, f, g = wdist.sinkhorn(x, y, blur=0.1, debias=False, return_plan=True,
                                      return_potentials=True, tol=1e-8, max_iter=2000)
    assert plan.shape == (20, 15) and f.shape == (20,) and g.shape == (15,)
    assert torch.allclose(plan.sum(1), torch.full((20,), 1 / 20, dtype=plan.dtype), atol=1e-8)
    assert torch.allclose(plan.sum(0), torch.full((15,), 1 / 15, dtype=plan.dtype), atol=1e-8)
    # the dual value equals the primal one at convergence: <P, C> + eps KL(P | a x b)
    eps = 0.1**2
    kl = (plan * torch.log(plan * 20 * 15)).sum()
    primal = (plan * torch.cdist(x, y) ** 2).sum() + eps * kl
    assert cost.item() == pytest.approx(primal.item(), rel=1e-6)
    with pytest.raises(ValueError, match="return_plan"):
        wdist.sinkhorn(x, y, backend="online", return_plan=True)


def test_unbalanced_tends_to_balanced_for_large_reach(rng):
    x, y = _clouds(rng, 30, 25)
    bal = wdist.sinkhorn(x, y, blur=0.05).item()
    unb = wdist.sinkhorn(x, y, blur=0.05, reach=100.0).item()
    small = wdist.sinkhorn(x, y, blur=0.05, reach=0.05).item()
    assert unb == pytest.approx(bal, rel=1e-2)
    assert small < bal  # relaxing the marginals can only lower the cost


@pytest.mark.parametrize("tol", [1e-2, 1e-3, 1e-5])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tol_bounds_marginals_and_beats_pot_at_same_criterion(rng, tol, dtype):
    # Independent references: POT's log-domain OT_eps (converged) for our value, and POT's
    # sinkhorn2 stopped at the same relative marginal error per point (stopThr = tol / sqrt(m)).
    x, y = _clouds(rng, 300, 250, 3)
    eps, n, m = 0.01, 300, 250
    a, b = torch.full((n,), 1 / n, dtype=torch.float64), torch.full((m,), 1 / m,
                                                                    dtype=torch.float64)
    cost = torch.cdist(x, y) ** 2
    plan = ot.bregman.sinkhorn_log(a, b, cost, eps, numItermax=100_000, stopThr=1e-14)
    linear = (plan * cost).sum().item()
    ref = linear + eps * (plan * torch.log(plan / (a[:, None] * b[None, :]))).sum().item()
    pot = ot.sinkhorn2(a, b, cost, eps, stopThr=tol / m**0.5, numItermax=100_000).item()

    ours, ours_plan = wdist.sinkhorn(x.to(dtype), y.to(dtype), p=2, blur=eps**0.5, debias=False,
                                     tol=tol, return_plan=True)
    rel_ours, rel_pot = abs(ours.item() - ref) / ref, abs(pot - linear) / linear
    assert rel_ours <= max(rel_pot, 1e-6 if dtype == torch.float32 else 0)
    assert rel_ours <= tol  # a looser tol stays within tol of the converged value
    if dtype == torch.float64:  # tol is the relative marginal error per point, up to a factor
        rows, cols = ours_plan.sum(1) * n, ours_plan.sum(0) * m
        assert max((rows - 1).abs().max().item(), (cols - 1).abs().max().item()) <= 2 * tol


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("debias", [True, False])
def test_kernel_form_extrapolation_equals_log_domain(rng, p, debias):
    # Without autograd the dense strategy extrapolates in kernel form; with it, by log-sum-exps.
    x, y = _clouds(rng, 40, 30, 3)
    plain = wdist.sinkhorn(x, y, p=p, blur=0.1, debias=debias, backend="dense", tol=1e-9)
    live = wdist.sinkhorn(x.requires_grad_(True), y, p=p, blur=0.1, debias=debias,
                          backend="dense", tol=1e-9)
    assert live.item() == pytest.approx(plain.item(), rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dense_falls_back_to_log_domain_when_kernel_underflows(rng, dtype):
    # Starting the schedule at the final blur (diameter=blur) on far-apart clouds: exp(-C / eps)
    # is below the smallest normal number everywhere, so the dense strategy must leave the kernel
    # form; it then runs the online strategy's log-domain iterations and agrees with it.
    x, y = _clouds(rng, 40, 30)
    x, y = x.to(dtype), (y + 3).to(dtype)
    kw = dict(blur=0.05, diameter=0.05, debias=False, tol=1e-6, max_iter=5000)
    dense = wdist.sinkhorn(x, y, backend="dense", **kw)
    online = wdist.sinkhorn(x, y, backend="online", **kw)
    exact = wdist.emd(x.double(), y.double(), p=2).item()
    assert torch.isfinite(dense)
    assert dense.item() == pytest.approx(online.item(), rel=1e-5)
    assert dense.item() == pytest.approx(exact, rel=0.01)


@pytest.mark.parametrize("offset", [1e3, 1e4])
def test_float32_far_from_the_origin(rng, offset):
    """|x|^2 + |y|^2 - 2 x.y at 1e3 in float32 cancelled every digit (emd 0.001 for 0.057, a
    negative Sinkhorn value with autograd, an inf plan): the costs now come from centred points.
    Reference: POT's emd2 and our float64 solve on the same float32 points moved to the origin."""
    x = torch.tensor(rng.random((150, 3)), dtype=torch.float32) + offset
    y = torch.tensor(rng.random((120, 3)), dtype=torch.float32) + offset + 0.1
    x64, y64 = x.double() - offset, y.double() - offset  # exact: the same points, moved
    ref_emd = ot.emd2(ot.unif(150), ot.unif(120), ot.dist(x64.numpy(), y64.numpy()))
    assert wdist.emd(x, y, p=2).item() == pytest.approx(ref_emd, rel=1e-4)
    for debias in (False, True):
        ref = wdist.sinkhorn(x64.requires_grad_(), y64, blur=0.05, debias=debias)
        (ref_grad,) = torch.autograd.grad(ref, x64)
        for backend in ("dense", "online"):
            xg = x.clone().requires_grad_()
            val = wdist.sinkhorn(xg, y, blur=0.05, debias=debias, backend=backend)
            (grad,) = torch.autograd.grad(val, xg)
            assert val.item() == pytest.approx(ref.item(), rel=1e-3)
            assert (grad.double() - ref_grad).abs().max() < 1e-3 * ref_grad.abs().max()
    _, plan = wdist.sinkhorn(x, y, blur=0.05, debias=False, return_plan=True)
    assert torch.isfinite(plan).all() and plan.sum().item() == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("blur", [100.0, 1e3, 1e6])
@pytest.mark.parametrize("backend", ["dense", "online"])
def test_float32_blur_far_above_the_spread(blur, backend):
    # As eps -> inf the plan tends to a x b: OT_eps -> <a x b, C> and, for p = 2, the
    # divergence -> |mean x - mean y|^2 (closed forms, in float64 from the float32 data).
    # float32 used to give 5% off at blur 100, 0 at 1e3 and 1e5-size garbage at 1e6.
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(200, 3, generator=gen), torch.rand(150, 3, generator=gen)
    x64, y64 = x.double(), y.double()
    mean_gap = ((x64.mean(0) - y64.mean(0)) ** 2).sum().item()
    coupling = (torch.cdist(x64, y64) ** 2).mean().item()
    div = wdist.sinkhorn(x, y, blur=blur, backend=backend)
    assert div.dtype == torch.float32
    assert div.item() == pytest.approx(mean_gap, rel=1e-3)
    ot_eps = wdist.sinkhorn(x, y, blur=blur, debias=False, backend=backend).item()
    assert ot_eps == pytest.approx(coupling, rel=1e-5)
    xg = x.clone().requires_grad_(True)
    wdist.sinkhorn(xg, y, blur=blur, backend=backend).backward()
    expected = (2 * (x64.mean(0) - y64.mean(0)) / 200).float().expand(200, 3)
    assert torch.allclose(xg.grad, expected, rtol=1e-3, atol=1e-9)


def test_unbalanced_warns_when_blur_dwarfs_every_cost():
    x, y = torch.rand(20, 2), torch.rand(15, 2)
    with pytest.warns(RuntimeWarning, match="lost most of its digits"):
        wdist.sinkhorn(x, y, blur=1e4, reach=1.0)
