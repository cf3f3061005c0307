import pytest
import torch
from torch import nn

import wdist


def _mlp(d_in=2, width=64):
    return nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 1))


@pytest.fixture(scope="module")
def gaussians():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(512, 2, generator=g)
    fake = torch.randn(512, 2, generator=g) * 0.5 + torch.tensor([2.0, 1.0])
    return real, fake, wdist.emd(real, fake, p=1).item()


def _trained(method, real, fake, steps=600, **kw):
    torch.manual_seed(1)
    critic = wdist.WassersteinCritic(
        _mlp(), method, optimizer=lambda ps: torch.optim.Adam(ps, 1e-3, betas=(0.5, 0.9)), **kw
    )
    critic.fit(real, fake, steps=steps, batch_size=256, generator=torch.Generator().manual_seed(2))
    return critic, critic.estimate(real, fake).item()


def test_gp_critic_estimate(gaussians):
    real, fake, exact = gaussians
    _, est_strong = _trained("gp", real, fake, lam=100.0)
    assert est_strong == pytest.approx(exact, rel=0.10)
    # the soft constraint's documented bias at the paper's lam = 10: slope ~ 1 + W1 / (2 lam)
    _, est = _trained("gp", real, fake, lam=10.0)
    assert est / exact == pytest.approx(1 + exact / (2 * 10.0), abs=0.03)  # measured 1.115


def test_one_sided_gp_critic_estimate(gaussians):
    real, fake, exact = gaussians
    _, est = _trained("gp", real, fake, lam=100.0, one_sided=True)
    assert est == pytest.approx(exact, rel=0.10)


def test_sn_critic_estimate_and_sigma(gaussians):
    real, fake, exact = gaussians
    critic, est = _trained("sn", real, fake)
    assert est == pytest.approx(exact, rel=0.10)
    assert est <= exact * 1.01  # a 1-Lipschitz critic cannot exceed W1 on the same samples
    # torch's parametrisation runs one power iteration per training forward (Miyato et al.), so
    # sigma lags the last optimiser step by up to ~1%; a few forwards without a step catch up.
    with torch.no_grad():
        for _ in range(20):
            critic.module(real)
    critic.module.eval()
    for layer in critic.module:
        if isinstance(layer, nn.Linear):
            sigma = torch.linalg.matrix_norm(layer.weight.detach(), ord=2).item()
            assert sigma <= 1 + 1e-3


def test_clip_critic_underestimates(gaussians):
    real, fake, exact = gaussians
    critic, est = _trained("clip", real, fake, steps=200)
    assert 5e-4 < est / exact < 3e-3  # K * W1 with K ~ 1e-3 for this architecture (see critic.py)
    assert all(p.abs().max() <= 0.01 + 1e-12 for p in critic.module.parameters())


def test_gradient_penalty_image_shaped_and_values():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 1))
    real, fake = torch.randn(5, 3, 8, 8), torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        critic[1].weight.fill_(0.0)
        critic[1].weight[0, 0] = 3.0  # linear critic with gradient norm 3 everywhere
    gp = wdist.gradient_penalty(critic, real, fake, lam=10.0)
    assert gp.item() == pytest.approx(10.0 * (3 - 1) ** 2, rel=1e-5)
    gp.backward()  # create_graph: the penalty trains the critic
    assert critic[1].weight.grad is not None and critic[1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        critic[1].weight[0, 0] = 0.5
    assert wdist.gradient_penalty(critic, real, fake, one_sided=True).item() == 0.0
    assert wdist.gradient_penalty(critic, real, fake).item() == pytest.approx(2.5, rel=1e-5)


def test_losses_and_state_roundtrip():
    critic = _mlp()
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    loss = wdist.critic_loss(critic, real, fake, lipschitz="sn")
    assert loss.item() == pytest.approx((critic(fake).mean() - critic(real).mean()).item())
    assert wdist.generator_loss(critic, fake).item() == pytest.approx(-critic(fake).mean().item())
    wc = wdist.WassersteinCritic(critic, "gp")
    out = wc.step(real, fake)
    assert set(out) == {"critic_loss", "w1", "gp", "grad_norm"}
    other = wdist.WassersteinCritic(_mlp(), "gp")
    other.load_state_dict(wc.state_dict())
    assert wc.estimate(real, fake).item() == pytest.approx(other.estimate(real, fake).item())


def test_critic_errors():
    with pytest.raises(ValueError, match="lipschitz"):
        wdist.WassersteinCritic(_mlp(), "weird")
    with pytest.raises(TypeError, match="module"):
        wdist.WassersteinCritic("not a module")
    with pytest.raises(ValueError, match="real and fake"):
        wdist.gradient_penalty(_mlp(), torch.randn(4, 2), torch.randn(4, 3))


def test_certified_w1_is_a_lower_bound_on_pot_emd_and_tight_for_the_optimal_critic():
    import ot

    g = torch.Generator().manual_seed(3)
    # 1-D shift: f(x) = -x is an optimal potential, so the bound equals W1 = shift exactly
    x = torch.randn(200, 1, generator=g, dtype=torch.float64)
    exact = ot.emd2([], [], ot.dist(x.numpy(), (x + 0.7).numpy(), metric="euclidean"))
    neg = nn.Linear(1, 1, bias=False).double()
    nn.init.constant_(neg.weight, -3.0)  # slope 3: the raw estimate is 3 x W1, L = 3 undoes it
    assert wdist.certified_w1(neg, x, x + 0.7).item() == pytest.approx(exact, rel=1e-12)
    assert wdist.certified_w1(neg, x, x - 0.7).item() == 0.0  # wrong sign: trivial bound
    # any critic, raw estimate far off: the certified value never exceeds the exact W1
    for seed in range(3):
        torch.manual_seed(seed)
        a = torch.randn(150, 5, generator=g, dtype=torch.float64)
        b = torch.randn(120, 5, generator=g, dtype=torch.float64) * 2 + 1
        f = _mlp(5, 32).double()
        w1 = ot.emd2([], [], ot.dist(a.numpy(), b.numpy(), metric="euclidean"))
        for crit in (f, lambda z, f=f: -50 * f(z)):
            cert = wdist.certified_w1(crit, a, b).item()
            assert 0.0 <= cert <= w1 * (1 + 1e-12)
    # a duplicated point with f(x) > f(y) forces L = inf: the only certificate is 0
    assert wdist.certified_w1(lambda z: -z.sum(1), x[:5], x[:5] + 1.0).item() > 0
    assert wdist.certified_w1(lambda z: z.sum(1) * 0 + torch.arange(5.0).double(), x[:5],
                              x[:5]).item() == 0.0


def test_certified_w1_of_a_trained_gp_critic_is_close_to_emd(gaussians):
    real, fake, exact = gaussians
    critic, est = _trained("gp", real, fake, lam=10.0)
    cert = wdist.certified_w1(critic.module, real, fake).item()
    assert cert <= exact * (1 + 1e-6) < est  # the raw GP estimate overshoots, the bound cannot
    assert cert > 0.85 * exact


def test_pair_penalty_hand_computed():
    # f(z) = 3 z on 1-D points: f(x_i) - f(y_j) - |x_i - y_j| for x = [0, 1], y = [0.5]:
    # i = 0: -1.5 - 0.5 < 0 -> 0;  i = 1: 1.5 - 0.5 = 1 -> lam * 1^2 / n = 10 * 1 / 2
    steep = nn.Linear(1, 1, bias=False)
    nn.init.constant_(steep.weight, 3.0)
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.5]])
    assert wdist.pair_penalty(steep, x, y, lam=10.0).item() == pytest.approx(5.0, rel=1e-6)
    assert wdist.critic_loss(steep, x, y, lipschitz="pairs", lam=10.0).item() == pytest.approx(
        (1.5 - 1.5) + 5.0, rel=1e-6)  # E f(fake) - E f(real) + penalty
    # a 1-Lipschitz critic is feasible on every pair: no penalty, whatever the points
    unit = nn.Linear(4, 1, bias=True)
    with torch.no_grad():
        unit.weight.copy_(torch.tensor([[0.6, 0.0, -0.8, 0.0]]))
    g = torch.Generator().manual_seed(0)
    assert wdist.pair_penalty(unit, torch.randn(30, 4, generator=g),
                              torch.randn(20, 4, generator=g)).item() == 0.0
    with pytest.raises(ValueError, match="lam"):
        wdist.pair_penalty(unit, x.repeat(1, 4), y.repeat(1, 4), lam=-1.0)


def test_pairs_critic_reaches_pot_emd_on_the_same_samples():
    """The pair constraints are the discrete dual LP's: full-batch training converges to the
    empirical W1 (POT's emd2, independent), and the certified bound never exceeds it."""
    import ot

    g = torch.Generator().manual_seed(4)
    real = torch.randn(120, 10, generator=g)
    fake = torch.randn(120, 10, generator=g) * 1.5 + 0.5
    exact = ot.emd2([], [], ot.dist(real.double().numpy(), fake.double().numpy(),
                                    metric="euclidean"))
    torch.manual_seed(0)
    critic = wdist.WassersteinCritic(_mlp(10, 128), "pairs", lam=20.0,
                                     optimizer=lambda ps: torch.optim.Adam(ps, 1e-3))
    for _ in range(600):
        critic.step(real, fake)
    cert = wdist.certified_w1(critic.module, real, fake).item()
    assert 0.97 * exact < cert <= exact * (1 + 1e-6)
    # a GP critic trained the same way stays smooth between the samples and ends further below
    torch.manual_seed(0)
    gp = wdist.WassersteinCritic(_mlp(10, 128), "gp", lam=20.0,
                                 optimizer=lambda ps: torch.optim.Adam(ps, 1e-3))
    for _ in range(600):
        gp.step(real, fake)
    assert wdist.certified_w1(gp.module, real, fake).item() < 0.9 * exact


# --- what spectral normalisation bounds, and what it does not --------------------------------


def test_sn_conv_operator_norm_exceeds_the_reshaped_matrix_norm():
    """torch's SN divides a conv weight by the norm of its [out, in*k*k] reshape; the conv
    operator itself (its dense matrix on 8x8 inputs, normed by numpy) has a larger norm."""
    import numpy as np
    from torch.nn.utils.parametrizations import spectral_norm

    torch.manual_seed(0)
    conv = spectral_norm(nn.Conv2d(4, 8, 3, 1, 1, bias=False), n_power_iterations=50)
    with torch.no_grad():
        conv(torch.zeros(1, 4, 8, 8))  # one training forward: 50 power iterations
    conv.eval()
    w = conv.weight.detach()
    assert torch.linalg.matrix_norm(w.reshape(8, -1), ord=2).item() == pytest.approx(1, abs=1e-5)
    with torch.no_grad():  # the conv is linear: its matrix's columns are the images of a basis
        dense = conv(torch.eye(4 * 64).reshape(-1, 4, 8, 8)).reshape(4 * 64, -1).T
    operator_norm = np.linalg.norm(dense.double().numpy(), 2)
    assert operator_norm > 1.5  # measured 1.82
    # power iteration through autograd (no dense matrix) finds the same norm from below
    v = torch.randn(1, 4, 8, 8)
    for _ in range(30):
        v.requires_grad_(True)
        out = conv(v)
        (v,) = torch.autograd.grad(out, v, grad_outputs=out)  # v <- A^T A v
        v = (v / v.norm()).detach()
    assert (conv(v).norm() / v.norm()).item() == pytest.approx(operator_norm, rel=1e-2)


@pytest.mark.parametrize("norm", [nn.BatchNorm1d(64), nn.LayerNorm(64), nn.GroupNorm(4, 64),
                                  nn.InstanceNorm1d(64), nn.RMSNorm(64)])
def test_sn_rejects_normalisation_layers(norm):
    def critic():
        return nn.Sequential(nn.Linear(2, 64), nn.Sequential(norm), nn.ReLU(), nn.Linear(64, 1))

    with pytest.raises(ValueError, match=f"'1.0' is a {type(norm).__name__}"):
        wdist.spectral_normalize(critic())
    with pytest.raises(ValueError, match="normalisation layers"):
        wdist.WassersteinCritic(critic(), "sn")
    wdist.WassersteinCritic(critic(), "gp")  # other methods keep them (their own checks apply)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_normalisation_layers_void_the_sn_slope_bound(norm):
    """Why SN rejects them: with every weight at spectral norm 1, the slope between two samples
    (a finite difference, no autograd) still exceeds 1 once the data's spread is small, since
    the layers divide by it; without them the same critic stays 1-Lipschitz."""
    from torch.nn.utils.parametrizations import spectral_norm

    def slope(layer):
        torch.manual_seed(0)
        net = nn.Sequential(spectral_norm(nn.Linear(2, 64, bias=False), n_power_iterations=30),
                            layer, nn.ReLU(), spectral_norm(nn.Linear(64, 1)))
        x = 0.01 * torch.randn(256, 2, dtype=torch.float32)
        with torch.no_grad():
            f = net(x).squeeze(1)
            dist = torch.cdist(x, x).fill_diagonal_(float("inf"))
            return ((f[:, None] - f[None, :]).abs() / dist).max().item()

    assert slope(nn.Identity()) <= 1 + 1e-3
    assert slope(nn.BatchNorm1d(64) if norm == "batch" else nn.LayerNorm(64)) > 2
