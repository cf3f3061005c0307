"""Quantile networks: a torso (Nature-DQN convolutions or an MLP) and N quantiles per action."""

from __future__ import annotations

import torch
from torch import nn


def greedy_action(quantiles: torch.Tensor) -> torch.Tensor:
    """``argmax_a Q(s, a)`` with ``Q(s, a) = (1/N) sum_i theta_i(s, a)``: quantiles ``[B, A, N]``
    -> actions ``[B]`` (the mean of the quantiles, not their maximum)."""
    return quantiles.mean(dim=2).argmax(dim=1)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of [B, C, H, W] at each position (flax's on NHWC)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class QuantileNetwork(nn.Module):
    """theta(s) of shape [B, A, N]: N quantile estimates of the return of each of A actions.

    ``torso="nature"``: the Nature-DQN torso (Mnih et al. 2015) on uint8 frame stacks
    [B, 4, 84, 84] (scaled by 1/255 inside), then Linear(3136, 512), ReLU, Linear(512, A*N).
    ``torso="mlp"``: fully connected ReLU layers of sizes ``hidden`` on float vectors [B, d].
    ``layer_norm=True`` (PQN, Gallici et al. 2024): a LayerNorm before every ReLU of the torso;
    after a convolution it normalises the channels at each position (flax's ``nn.LayerNorm`` on
    NHWC, as in purejaxql's CNN).
    """

    def __init__(
        self,
        num_actions: int,
        N: int,
        torso: str = "nature",
        in_shape: tuple[int, ...] = (4, 84, 84),
        hidden: list[int] | None = None,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.num_actions, self.N = num_actions, N

        def norm(width: int, conv: bool = False) -> list[nn.Module]:
            if not layer_norm:
                return []
            return [ChannelLayerNorm(width) if conv else nn.LayerNorm(width)]

        if torso == "nature":
            self.torso = nn.Sequential(
                nn.Conv2d(in_shape[0], 32, 8, stride=4), *norm(32, True), nn.ReLU(),
                nn.Conv2d(32, 64, 4, stride=2), *norm(64, True), nn.ReLU(),
                nn.Conv2d(64, 64, 3, stride=1), *norm(64, True), nn.ReLU(),
                nn.Flatten(),
                nn.Linear(3136, 512), *norm(512), nn.ReLU(),
            )
            width = 512
            self.scale = 1.0 / 255.0
        elif torso == "mlp":
            layers: list[nn.Module] = []
            width = in_shape[0]
            for h in hidden or [128, 128]:
                layers += [nn.Linear(width, h), *norm(h), nn.ReLU()]
                width = h
            self.torso = nn.Sequential(*layers)
            self.scale = 1.0
        else:
            raise ValueError(f"torso must be 'nature' or 'mlp', got {torso!r}")
        self.head = nn.Linear(width, num_actions * N)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() * self.scale
        return self.head(self.torso(x)).view(-1, self.num_actions, self.N)

    @torch.no_grad()
    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        """The greedy actions ``[B]`` for observations ``obs``."""
        return greedy_action(self(obs))
