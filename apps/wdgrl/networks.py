"""Feature extractors (MLP, small CNN) and the MLP used for heads, critics and discriminators."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int | None = None) -> nn.Sequential:
    """Linear-ReLU stack ``in_dim -> hidden... [-> out_dim]`` (no activation on ``out_dim``)."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    if out_dim is not None:
        layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class MLPExtractor(nn.Module):
    """Flattens the input and applies ``mlp(d, hidden)``; the paper's Amazon extractor is [500]."""

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int]) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("hidden must list at least one layer width for the MLP extractor")
        in_dim = int(torch.tensor(input_shape).prod())
        self.net = mlp(in_dim, hidden)
        self.out_dim = hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class CNNExtractor(nn.Module):
    """The small digit CNN of Ganin & Lempitsky 2015 (conv5-32, pool, conv5-48, pool, fc).

    Input ``[n, C, H, W]`` (H, W ≥ 16); output ``[n, hidden[-1]]``.
    """

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int]) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(
                f"the CNN extractor needs image inputs [n, C, H, W]; got samples of shape "
                f"{tuple(input_shape)} (use network='mlp' for flat features)"
            )
        c, h, w = input_shape
        if h < 16 or w < 16:
            raise ValueError(
                f"the CNN extractor needs images of at least 16x16 pixels (two 2x pooling "
                f"stages); got H={h}, W={w} (use network='mlp' for smaller inputs)"
            )
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        flat = 48 * (h // 4) * (w // 4)
        self.fc = mlp(flat, hidden or [100])
        self.out_dim = (hidden or [100])[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


def make_extractor(network: str, input_shape: Sequence[int], hidden: Sequence[int]) -> nn.Module:
    """``network`` is ``"mlp"`` or ``"cnn"``; the module exposes ``out_dim``."""
    if network == "mlp":
        return MLPExtractor(input_shape, hidden)
    if network == "cnn":
        return CNNExtractor(input_shape, hidden)
    raise ValueError(f"network must be 'mlp' or 'cnn', got {network!r}")
