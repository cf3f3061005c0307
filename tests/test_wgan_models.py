"""Architectures and the three Lipschitz methods on them (through the wdist critic)."""

import pytest
import torch

import wdist
from wdist_apps.runtime import ConfigError, load_config
from wdist_apps.wgan.config import WGANConfig
from wdist_apps.wgan.models import build_models
from wdist_apps.wgan.trainer import Trainer

LAYERS = (torch.nn.Conv2d, torch.nn.Linear)


@pytest.mark.parametrize(
    "arch,shape,norm",
    [("mlp", (2,), "none"), ("mlp", (1, 8, 8), "none"), ("dcgan", (1, 32, 32), "layer"),
     ("dcgan", (3, 64, 64), "batch"), ("resnet", (3, 32, 32), "layer")],
)
def test_shapes(arch, shape, norm):
    g, d = build_models(arch, shape, z_dim=16, width=8 if arch != "mlp" else 32, critic_norm=norm)
    x = g(torch.randn(4, 16))
    assert x.shape == (4, *shape)
    if len(shape) == 3:
        assert x.abs().max() <= 1.0  # tanh output range = the data range
    assert d(x).shape == (4,)


def test_bad_arch_inputs():
    with pytest.raises(ValueError, match=r"image_size must be one of \(28, 32, 64\)"):
        build_models("dcgan", (1, 48, 48), 16, 8, "layer")
    with pytest.raises(ValueError, match="resnet"):
        build_models("resnet", (1, 64, 64), 16, 8, "layer")
    with pytest.raises(ValueError, match="square images"):
        build_models("dcgan", (2,), 16, 8, "layer")


def test_gp_critic_has_no_batch_norm():
    cfg = WGANConfig(data="mnist", arch="dcgan", lipschitz="gp")
    assert cfg.resolved_critic_norm == "layer"
    _, critic = build_models("dcgan", (1, 32, 32), 16, 8, cfg.resolved_critic_norm)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in critic.modules())
    with pytest.raises(ValueError, match="batch.*invalid with lipschitz 'gp'"):
        WGANConfig(data="mnist", arch="dcgan", lipschitz="gp", critic_norm="batch")


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_sn_critic_has_no_norm_layers(arch):
    """Spectral normalisation bounds conv/linear layers only: an SN critic has no batch/layer
    norm (whose rescaling would escape the bound), and asking for one is an error."""
    cfg = WGANConfig(data="mnist", arch=arch, lipschitz="sn")
    _, critic = build_models(arch, (1, 32, 32), 16, 8, cfg.resolved_critic_norm)
    norms = (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm)
    assert not any(isinstance(m, norms) for m in critic.modules())
    _, with_norm = build_models(arch, (1, 32, 32), 16, 8, "layer")
    assert any(isinstance(m, norms) for m in with_norm.modules())  # the check can fail
    for norm in ("batch", "layer"):
        with pytest.raises(ValueError, match=f"'{norm}' is invalid with lipschitz 'sn'"):
            WGANConfig(data="mnist", arch=arch, lipschitz="sn", critic_norm=norm)


def test_dcgan_at_mnist_size():
    g, d = build_models("dcgan", (1, 28, 28), z_dim=16, width=8, critic_norm="layer")
    x = g(torch.randn(3, 16))
    assert x.shape == (3, 1, 28, 28) and d(x).shape == (3,)


def test_settings_without_effect_are_errors():
    """An explicit critic norm on an MLP critic, and --features on toy data, would be ignored."""
    with pytest.raises(ValueError, match="critic_norm 'layer' has no effect with arch 'mlp'"):
        WGANConfig(arch="mlp", critic_norm="layer")
    assert WGANConfig(arch="mlp", critic_norm="none").resolved_critic_norm == "none"
    with pytest.raises(ValueError, match="--features f.pt: toy data '8gaussians'"):
        Trainer(WGANConfig(data="8gaussians", eval_samples=8, width=8), features="f.pt")


def test_gradient_penalty_on_image_critic():
    """GP on [B, C, H, W] inputs: positive, finite, and it trains the critic (create_graph)."""
    torch.manual_seed(0)
    _, critic = build_models("dcgan", (3, 32, 32), 16, 8, "layer")
    real, fake = torch.rand(6, 3, 32, 32) * 2 - 1, torch.rand(6, 3, 32, 32) * 2 - 1
    gp = wdist.gradient_penalty(critic, real, fake, lam=10.0)
    assert gp.dim() == 0 and torch.isfinite(gp) and gp > 0
    gp.backward()
    weights = [m.weight for m in critic.modules() if isinstance(m, LAYERS)]
    for w in weights:  # every weight gets a finite, non-zero gradient through the double backward
        assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_clipping_keeps_every_weight_in_bounds():
    torch.manual_seed(0)
    _, module = build_models("dcgan", (1, 32, 32), 16, 8, "batch")
    critic = wdist.WassersteinCritic(module, lipschitz="clip", clip_value=0.01,
                                     optimizer=lambda p: torch.optim.RMSprop(p, lr=1e-2))
    for _ in range(3):
        critic.step(torch.rand(8, 1, 32, 32), torch.rand(8, 1, 32, 32))
    params = torch.cat([p.detach().flatten() for p in critic.module.parameters()])
    assert params.abs().max() <= 0.01 + 1e-7
    assert (params.abs() > 0.0099).any()  # a large lr pushes weights onto the bound


def _sigma(module: torch.nn.Module) -> float:
    w = module.weight.detach()  # the spectrally normalised weight (parametrisation applied)
    if isinstance(module, torch.nn.ConvTranspose2d):
        w = w.transpose(0, 1)
    return float(torch.linalg.matrix_norm(w.flatten(1), ord=2))


def test_sn_critic_layers_have_unit_spectral_norm():
    torch.manual_seed(0)
    _, module = build_models("resnet", (1, 32, 32), 16, 8, "none")
    critic = wdist.WassersteinCritic(module, lipschitz="sn")
    for _ in range(5):
        critic.step(torch.rand(8, 1, 32, 32), torch.rand(8, 1, 32, 32))
    for _ in range(20):  # power iterations converge while the critic runs in train mode
        critic.module(torch.rand(2, 1, 32, 32))
    layers = [m for m in critic.module.modules() if isinstance(m, LAYERS)]
    assert len(layers) == 12  # stem, 4 blocks x 2 convs, 2 shortcut convs, head
    sigmas = [_sigma(m) for m in layers]
    assert max(sigmas) <= 1 + 1e-3
    assert min(sigmas) > 0.9  # normalised, not merely shrunk


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="lipschitz must be one of"):
        WGANConfig(lipschitz="wc")
    with pytest.raises(ValueError, match="needs arch 'mlp'"):
        WGANConfig(data="8gaussians", arch="dcgan")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("data: digits\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(WGANConfig, cfg_file)
    cfg = WGANConfig(lipschitz="clip")
    assert (cfg.resolved_lr, cfg.resolved_n_critic, cfg.defaults.optimizer) == (5e-5, 5, "rmsprop")
    cfg = WGANConfig(lipschitz="gp")
    assert (cfg.resolved_lr, cfg.resolved_betas, cfg.resolved_n_critic) == (1e-4, (0.0, 0.9), 5)
