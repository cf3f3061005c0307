r"""The Kantorovich–Rubinstein dual critic for W1 and its Lipschitz constraints.

.. math::  W_1(P, Q) = \sup_{\|f\|_L \le 1} \mathbb{E}_{x \sim P} f(x) - \mathbb{E}_{y \sim Q} f(y)

A neural critic ``f`` approximates the supremum; the constraint is enforced by weight clipping
(Arjovsky et al. 2017), a gradient penalty (Gulrajani et al. 2017; one-sided: Petzka et al. 2018),
spectral normalisation (Miyato et al. 2018), or a penalty on the sample pairs themselves
(``"pairs"``: the constraints of the discrete dual LP, f(x_i) - f(y_j) <= ||x_i - y_j||).

What each estimates (measured in ``tests/test_core_critic.py``): a penalty is a soft constraint,
so a GP critic settles at a slope of about ``1 + W1 / (2 lam)`` and over-estimates W1 by that
factor (+11% at W1 = 2.3, lam = 10); spectral normalisation makes every Linear layer's weight
have spectral norm 1, so an MLP critic with 1-Lipschitz activations has slope <= 1 and lands within
a few % below W1. That bound does not carry over to conv critics: torch's spectral norm normalises
the weight reshaped to ``[out, in * k * k]``, whose norm is not the convolution's (the operator's
norm is larger: 1.8 for a 3x3 conv on 8x8 inputs whose reshaped weight has norm 1, see the test),
and each residual sum ``x + f(x)`` can add 1 more; such a critic's slope is bounded by a product
of those factors, not by 1. Normalisation layers (batch, layer, group, instance) divide by
statistics of the data and void any bound (:func:`spectral_normalize` rejects them). A clipped
critic estimates ``K * W1`` for an unknown, architecture-dependent
``K`` (about 1e-3 for a 64-64 MLP at c = 0.01): useful as a training signal, not as a distance.
The pair penalty constrains ``f`` only where the empirical W1 looks, so a critic trained with it
converges to the W1 *of the samples* (``wdist.emd``, finite-sample bias included), where GP and
SN critics stay smooth between the samples and estimate something closer to the populations' W1.
:class:`WassersteinCritic` owns the critic loop
that WGAN and WDGRL both use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from wdist._checks import validation_enabled

LIPSCHITZ = ("gp", "clip", "sn", "pairs")
_NORMALIZED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)
# layers that divide by batch or sample statistics: the slope then scales with 1 / their spread
_DATA_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def _check_pair(real: torch.Tensor, fake: torch.Tensor) -> None:
    if not isinstance(real, torch.Tensor) or not isinstance(fake, torch.Tensor):
        raise TypeError("real and fake must be torch tensors")
    if real.shape[1:] != fake.shape[1:] or real.dim() < 2:
        raise ValueError(
            f"real and fake must be batches [B, ...] of the same sample shape, got "
            f"{list(real.shape)} and {list(fake.shape)}"
        )
    if real.shape[0] == 0 or fake.shape[0] == 0:
        raise ValueError("real and fake must each hold at least one sample")
    if validation_enabled():  # a sync: off under wdist.set_validation(False)
        for name, t in (("real", real), ("fake", fake)):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contains NaN or inf")


def _penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, one_sided: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (one- or two-sided) squared excess gradient norm at random interpolates, and the mean
    gradient norm there."""
    bsz = min(real.shape[0], fake.shape[0])
    real, fake = real[:bsz], fake[:bsz]
    alpha = torch.rand((bsz,) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
    interp = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(interp)
    (grad,) = torch.autograd.grad(out.sum(), interp, create_graph=True)
    norm = grad.flatten(1).norm(dim=1)
    excess = (norm - 1).clamp_min(0) if one_sided else norm - 1
    return (excess**2).mean(), norm.detach().mean()


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    lam: float = 10.0,
    one_sided: bool = False,
) -> torch.Tensor:
    r"""WGAN-GP penalty :math:`\lambda\, \mathbb{E}_{\hat x}[(\|\nabla f(\hat x)\|_2 - 1)^2]`.

    :math:`\hat x = \alpha x_{real} + (1 - \alpha) x_{fake}` with one :math:`\alpha \sim U[0, 1]`
    per sample; inputs ``[B, ...]`` of any sample shape (the norm is over all non-batch dims).
    ``one_sided=True`` penalises only norms above 1: :math:`\lambda\,\mathbb{E}[\max(0, \|\nabla
    f\| - 1)^2]`. Built with ``create_graph=True`` so that it trains the critic.
    Returns a 0-dim tensor.

    Example::

        >>> critic = torch.nn.Linear(2, 1)
        >>> gp = wdist.gradient_penalty(critic, torch.randn(8, 2), torch.randn(8, 2), lam=10.0)
    """
    _check_pair(real, fake)
    return lam * _penalty(critic, real, fake, one_sided)[0]


def _pair_terms(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair penalty and the estimate E f(real) - E f(fake), from one forward pass."""
    phi = critic(real).reshape(real.shape[0])
    psi = critic(fake).reshape(fake.shape[0])
    dist = torch.cdist(real.detach().flatten(1), fake.detach().flatten(1))
    viol = (phi[:, None] - psi[None, :] - dist).clamp_min(0)
    return lam * (viol**2).sum() / real.shape[0], phi.mean() - psi.mean()


def pair_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, *, lam: float = 10.0
) -> torch.Tensor:
    r"""Quadratic penalty on the dual constraints of the discrete Kantorovich–Rubinstein LP:

    .. math::  \frac{\lambda}{n} \sum_{i=1}^{n} \sum_{j=1}^{m}
               \max\big(0,\ f(x_i) - f(y_j) - \|x_i - y_j\|_2\big)^2

    for ``real [n, ...]``, ``fake [m, ...]`` (flattened to vectors; the ``n × m`` distances are
    held in memory, so use it on batches, not on whole datasets of 10⁵ points). Zero exactly when
    ``f`` restricted to the samples is dual-feasible, so the maximiser of
    :math:`\mathbb{E} f(\text{real}) - \mathbb{E} f(\text{fake}) - \text{penalty}` tends to the
    empirical W1 (``wdist.emd`` of the two uniform samples) as ``lam`` grows. One-sided and
    directional, as the LP's constraints are.
    """
    _check_pair(real, fake)
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    return _pair_terms(critic, real, fake, lam)[0]


@torch.no_grad()
def clip_weights_(module: nn.Module, *, c: float = 0.01) -> nn.Module:
    """Clamp every parameter of ``module`` to ``[-c, c]`` in place (the original WGAN)."""
    if c <= 0:
        raise ValueError(f"c must be > 0, got {c}")
    for param in module.parameters():
        param.clamp_(-c, c)
    return module


def spectral_normalize(module: nn.Module, *, n_power_iterations: int = 1) -> nn.Module:
    """Wrap every Linear / Conv / ConvTranspose in ``module`` (itself included) with torch's
    spectral-norm parametrisation ``W / sigma(W)`` (Miyato et al. 2018; in place; modules already
    wrapped are kept).

    ``sigma`` is the largest singular value of the weight reshaped to a matrix
    ``[out, in * prod(kernel)]``, estimated by ``n_power_iterations`` of power iteration per
    training forward. For a Linear layer that is the layer's Lipschitz constant; for a
    convolution it is not, and the convolution's own norm can be larger (1.8 measured for a 3x3
    conv on 8x8 inputs), so a normalised conv critic is Lipschitz with a constant above 1 that
    the method does not control. A module containing BatchNorm / LayerNorm / GroupNorm /
    InstanceNorm / RMSNorm layers is a ``ValueError``: they divide by statistics of the data, so
    the critic's slope grows as the data's spread shrinks, whatever the weights' norms.

    Example::

        >>> critic = wdist.spectral_normalize(torch.nn.Sequential(
        ...     torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)))
    """
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import spectral_norm

    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    for name, sub in module.named_modules():
        if isinstance(sub, _DATA_NORMS):
            raise ValueError(
                f"spectral normalisation cannot bound the slope of a critic with normalisation "
                f"layers: module {name or '(root)'!r} is a {type(sub).__name__}, which divides by "
                "statistics of the data; remove it (SN critics have none), or use "
                "lipschitz='gp' with LayerNorm/GroupNorm"
            )

    for sub in list(module.modules()):
        if isinstance(sub, _NORMALIZED) and not parametrize.is_parametrized(sub, "weight"):
            spectral_norm(sub, n_power_iterations=n_power_iterations)
    return module


def _mean_output(critic: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return critic(x).reshape(x.shape[0], -1).mean()


def critic_loss(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    lipschitz: str = "gp",
    lam: float = 10.0,
    one_sided: bool = False,
) -> torch.Tensor:
    r"""The critic's loss :math:`\mathbb{E} f(\text{fake}) - \mathbb{E} f(\text{real})`
    (+ :func:`gradient_penalty` when ``lipschitz="gp"``, + :func:`pair_penalty` when
    ``lipschitz="pairs"``): minimising it maximises the W1 estimate.

    ``real [B, ...]``, ``fake [B', ...]`` of the same sample shape; ``critic`` maps ``[B, ...]``
    to ``[B]`` or ``[B, 1]``. Returns a 0-dim tensor."""
    _check_pair(real, fake)
    if lipschitz not in LIPSCHITZ:
        raise ValueError(f"lipschitz must be one of {LIPSCHITZ}, got {lipschitz!r}")
    if lipschitz == "pairs":
        penalty, w1 = _pair_terms(critic, real, fake, lam)
        return penalty - w1
    loss = _mean_output(critic, fake) - _mean_output(critic, real)
    if lipschitz == "gp":
        loss = loss + gradient_penalty(critic, real, fake, lam=lam, one_sided=one_sided)
    return loss


def generator_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    r"""The generator's loss :math:`-\mathbb{E} f(\text{fake})`.

    ``fake [B, ...]``; ``critic`` maps ``[B, ...]`` to ``[B]`` or ``[B, 1]``. Returns a 0-dim
    tensor."""
    if not isinstance(fake, torch.Tensor) or fake.dim() < 2 or fake.shape[0] == 0:
        raise ValueError("fake must be a non-empty batch tensor [B, ...]")
    if validation_enabled() and not bool(torch.isfinite(fake).all()):  # a sync, as in critic_loss
        raise ValueError("fake contains NaN or inf")
    return -_mean_output(critic, fake)


_DEFAULT_OPTIM: dict[str, Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]] = {
    # Arjovsky et al. 2017, Algorithm 1: RMSProp, alpha = 5e-5.
    "clip": lambda ps: torch.optim.RMSprop(ps, lr=5e-5),
    # Gulrajani et al. 2017, Algorithm 1: Adam, alpha = 1e-4, beta1 = 0, beta2 = 0.9.
    "gp": lambda ps: torch.optim.Adam(ps, lr=1e-4, betas=(0.0, 0.9)),
    # Miyato et al. 2018, Table 1, setting C: Adam 2e-4, beta1 = 0.5, beta2 = 0.999, n_dis = 1.
    "sn": lambda ps: torch.optim.Adam(ps, lr=2e-4, betas=(0.5, 0.999)),
    # No paper default: the GP setting, the closest soft-constraint method.
    "pairs": lambda ps: torch.optim.Adam(ps, lr=1e-4, betas=(0.0, 0.9)),
}


@torch.no_grad()
def certified_w1(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, *, chunk: int = 4096
) -> torch.Tensor:
    r"""A certified lower bound on the empirical W1 from any critic ``f``:

    .. math::  \frac{\tfrac1n \sum_i f(x_i) - \tfrac1m \sum_j f(y_j)}{L}, \qquad
               L = \max_{i,j} \frac{f(x_i) - f(y_j)}{\|x_i - y_j\|_2}

    (0 when the numerator or ``L`` is not positive). ``f / L`` gives dual-feasible potentials
    (:math:`\varphi_i - \psi_j \le \|x_i - y_j\|`), so by LP duality the value is
    :math:`\le W_1` of the two uniform empirical measures, whatever the critic's training
    achieved: a GP critic's raw estimate can exceed W1 (its slope is only softly constrained),
    this cannot. ``real [n, ...]``, ``fake [m, ...]`` (flattened to vectors); the ``n × m``
    distances are formed ``chunk`` rows at a time. Returns a 0-dim tensor.
    """
    _check_pair(real, fake)
    phi = critic(real).reshape(real.shape[0]).to(torch.float64)
    psi = critic(fake).reshape(fake.shape[0]).to(torch.float64)
    x, y = real.flatten(1).to(torch.float64), fake.flatten(1).to(torch.float64)
    slope = torch.zeros((), dtype=torch.float64, device=x.device)
    for s in range(0, x.shape[0], chunk):
        gap = phi[s : s + chunk, None] - psi[None, :]
        dist = torch.cdist(x[s : s + chunk], y, compute_mode="donot_use_mm_for_euclid_dist")
        ratio = torch.where(gap > 0, gap / dist, torch.zeros_like(gap))  # gap > 0, dist 0 -> inf
        slope = torch.maximum(slope, ratio.max())
    est = phi.mean() - psi.mean()
    if est <= 0 or slope <= 0:
        return torch.zeros((), dtype=torch.float64, device=x.device)
    bound = est / slope
    if not torch.isfinite(bound):
        raise ValueError("certified_w1: the critic's outputs or the distances overflow float64 "
                         "(rescale the data)")
    return bound


class WassersteinCritic:
    r"""A critic network, its Lipschitz method and its optimiser: the one W1 critic loop.

    It estimates the Kantorovich–Rubinstein dual

    .. math::  W_1(P, Q) = \sup_{\|f\|_L \le 1}
               \mathbb{E}_{x \sim P} f(x) - \mathbb{E}_{y \sim Q} f(y)

    with ``f`` the critic network (P: real, Q: fake) and the sup replaced by training ``f``
    under the chosen Lipschitz constraint (see the module docstring for what each estimates).

    Args:
        module: the critic network ``f: [B, ...] -> [B] or [B, 1]``.
        lipschitz: ``"gp"`` (gradient penalty), ``"clip"`` (weight clipping), ``"sn"``
            (spectral normalisation, applied to ``module`` here; see :func:`spectral_normalize`
            for what it bounds) or ``"pairs"``
            (:func:`pair_penalty` on the batch's real–fake pairs).
        lam: penalty weight (``"gp"`` and ``"pairs"``).  clip_value: clipping bound ``c``.
        one_sided: one-sided gradient penalty.
        optimizer: a ``torch.optim.Optimizer`` over ``module``'s parameters, a callable
            ``params -> Optimizer``, or None for the method's paper default (``_DEFAULT_OPTIM``).

    Use ``step(real, fake)`` ``n_critic`` times per generator / extractor step, then put
    ``estimate(real, fake)`` (or :func:`generator_loss`) into that model's loss.
    """

    def __init__(
        self,
        module: nn.Module,
        lipschitz: str = "gp",
        *,
        lam: float = 10.0,
        clip_value: float = 0.01,
        one_sided: bool = False,
        optimizer: torch.optim.Optimizer | Callable[..., torch.optim.Optimizer] | None = None,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if lipschitz not in LIPSCHITZ:
            raise ValueError(f"lipschitz must be one of {LIPSCHITZ}, got {lipschitz!r}")
        if lam < 0 or clip_value <= 0:
            raise ValueError(f"need lam >= 0 and clip_value > 0, got {lam}, {clip_value}")
        self.module = spectral_normalize(module) if lipschitz == "sn" else module
        self.lipschitz, self.lam, self.clip_value, self.one_sided = (
            lipschitz,
            lam,
            clip_value,
            one_sided,
        )
        if optimizer is None:
            optimizer = _DEFAULT_OPTIM[lipschitz]
        if not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = optimizer(self.module.parameters())
        self.optimizer = optimizer
        if lipschitz == "clip":
            clip_weights_(self.module, c=clip_value)

    def step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        """One critic update on a batch; inputs are detached. Returns the logged quantities:
        ``critic_loss``, ``w1`` (the estimate before the update), ``gp`` (the penalty term, GP or
        pairs; 0 otherwise) and ``grad_norm`` (mean gradient norm at the interpolates; NaN unless
        GP)."""
        _check_pair(real, fake)
        real, fake = real.detach(), fake.detach()
        self.module.train()
        gp = grad_norm = torch.full((), float("nan"))
        if self.lipschitz == "pairs":
            gp, w1 = _pair_terms(self.module, real, fake, self.lam)
            loss = gp - w1
        else:
            w1 = _mean_output(self.module, real) - _mean_output(self.module, fake)
            loss = -w1
        if self.lipschitz == "gp":
            penalty, grad_norm = _penalty(self.module, real, fake, self.one_sided)
            gp = self.lam * penalty
            loss = loss + gp
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.lipschitz == "clip":
            clip_weights_(self.module, c=self.clip_value)
        return {
            "critic_loss": float(loss.detach()),
            "w1": float(w1.detach()),
            "gp": float(gp.detach()) if self.lipschitz in ("gp", "pairs") else 0.0,
            "grad_norm": float(grad_norm),
        }

    def estimate(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        r"""The W1 estimate :math:`\mathbb{E} f(\text{real}) - \mathbb{E} f(\text{fake})`,
        differentiable w.r.t. ``real`` and ``fake`` (use it in the generator / extractor loss)."""
        _check_pair(real, fake)
        return _mean_output(self.module, real) - _mean_output(self.module, fake)

    def fit(
        self,
        real: torch.Tensor,
        fake: torch.Tensor,
        *,
        steps: int,
        batch_size: int = 256,
        generator: torch.Generator | None = None,
    ) -> list[dict[str, float]]:
        """Train the critic on two fixed sample sets for ``steps`` minibatch updates.

        ``real [n, ...]``, ``fake [m, ...]`` of the same sample shape; each step draws
        ``batch_size`` rows of each with replacement. Returns ``steps`` dicts, as :meth:`step`.
        """
        hist = []
        for _ in range(steps):
            i = torch.randint(len(real), (batch_size,), generator=generator).to(real.device)
            j = torch.randint(len(fake), (batch_size,), generator=generator).to(fake.device)
            hist.append(self.step(real[i], fake[j]))
        return hist

    def state_dict(self) -> dict[str, Any]:
        """The critic's and the optimiser's state: ``{"module": ..., "optimizer": ...}``."""
        return {"module": self.module.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the critic and the optimiser from a :meth:`state_dict` output."""
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
