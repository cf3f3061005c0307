"""Feature-alignment terms added to the source classification loss, one class per method.

Each aligner sees a batch of source features ``h_s [B, k]`` and target features ``h_t [B, k]``
from the shared extractor and returns the term the extractor minimises:

- ``wdgrl`` (Shen et al. 2018): a domain critic ``f`` estimates
  W1(P_s, P_t) = sup_{Lip f ≤ 1} E f(h_s) − E f(h_t); it is trained ``n_critic`` steps per extractor
  step on detached features (gradient penalty, ``wdist.WassersteinCritic``), then the extractor
  minimises ``λ · (E f(h_s) − E f(h_t))`` (``critic.estimate``).
- ``dann`` (Ganin et al. 2016): a domain classifier behind a gradient-reversal layer; the
  reversal coefficient follows the paper's schedule 2 / (1 + exp(−10 p)) − 1, p = training
  progress in [0, 1].
- ``coral`` (Sun & Saenko 2016): ‖C_s − C_t‖²_F / (4 k²), C the feature covariances (0 for a
  batch of fewer than two samples, whose covariance is undefined).
- ``source_only``: no term (also used, trained on labelled target data, as the upper bound).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wdist_apps.wdgrl.networks import mlp

METHODS = ("source_only", "wdgrl", "dann", "coral")


class Aligner:
    """No alignment (source-only); subclasses override :meth:`loss`, maybe :meth:`before_step`."""

    name = "source_only"

    def parameters(self) -> list[nn.Parameter]:
        """Parameters trained by the extractor's optimiser (DANN's discriminator)."""
        return []

    def before_step(self, h_s: torch.Tensor, h_t: torch.Tensor) -> dict[str, float]:
        """Work done before the extractor step on this batch (WDGRL's critic updates)."""
        return {}

    def loss(self, h_s: torch.Tensor, h_t: torch.Tensor, progress: float) -> torch.Tensor:
        return h_s.new_zeros(())

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class WDGRLAligner(Aligner):
    """WDGRL's domain critic, trained and queried through :class:`wdist.WassersteinCritic`."""

    name = "wdgrl"

    def __init__(
        self, feat_dim: int, critic_hidden: list[int], wd_weight: float, gp_weight: float,
        n_critic: int, critic_lr: float, device: torch.device,
    ) -> None:
        from wdist import WassersteinCritic

        self.wd_weight, self.n_critic = wd_weight, n_critic
        module = mlp(feat_dim, critic_hidden, 1).to(device)
        # The official code trains the critic with plain Adam (TF defaults, betas (0.9, 0.999)).
        self.critic = WassersteinCritic(
            module, lipschitz="gp", lam=gp_weight,
            optimizer=lambda params: torch.optim.Adam(params, lr=critic_lr),
        )

    def before_step(self, h_s: torch.Tensor, h_t: torch.Tensor) -> dict[str, float]:
        logs: dict[str, float] = {}
        for _ in range(self.n_critic):
            logs = self.critic.step(h_s.detach(), h_t.detach())
        return {"w1": logs["w1"], "gp": logs["gp"]}

    def loss(self, h_s: torch.Tensor, h_t: torch.Tensor, progress: float) -> torch.Tensor:
        return self.wd_weight * self.critic.estimate(h_s, h_t)

    def state_dict(self) -> dict[str, Any]:
        return {"critic": self.critic.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.critic.load_state_dict(state["critic"])


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-coeff`` backward (Ganin et al. 2016)."""
    return _GradReverse.apply(x, coeff)


class DANNAligner(Aligner):
    """Domain classifier (source = 1, target = 0) trained through a gradient-reversal layer."""

    name = "dann"

    def __init__(self, feat_dim: int, hidden: list[int], weight: float, device: torch.device):
        self.weight = weight
        self.disc = mlp(feat_dim, hidden, 1).to(device)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.disc.parameters())

    def loss(self, h_s: torch.Tensor, h_t: torch.Tensor, progress: float) -> torch.Tensor:
        coeff = 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0
        logits = self.disc(grad_reverse(torch.cat([h_s, h_t]), coeff)).squeeze(1)
        labels = torch.cat([h_s.new_ones(len(h_s)), h_t.new_zeros(len(h_t))])
        return self.weight * F.binary_cross_entropy_with_logits(logits, labels)

    def state_dict(self) -> dict[str, Any]:
        return {"disc": self.disc.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.disc.load_state_dict(state["disc"])


def coral_loss(h_s: torch.Tensor, h_t: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: ‖Cov(h_s) − Cov(h_t)‖²_F / (4 k²) for features ``[B, k]``.

    The unbiased covariance of one sample is undefined (0/0 = NaN), so the term is 0 when either
    batch has fewer than two samples.
    """
    if len(h_s) < 2 or len(h_t) < 2:
        return h_s.new_zeros(())
    k = h_s.shape[1]
    diff = torch.cov(h_s.T) - torch.cov(h_t.T)
    return (diff * diff).sum() / (4.0 * k * k)


class CORALAligner(Aligner):
    name = "coral"

    def __init__(self, weight: float) -> None:
        self.weight = weight

    def loss(self, h_s: torch.Tensor, h_t: torch.Tensor, progress: float) -> torch.Tensor:
        return self.weight * coral_loss(h_s, h_t)
