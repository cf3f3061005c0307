"""Generators and critics: MLP (2-D toys, tiny images), DCGAN 32/64, WGAN-GP ResNet 32.

Critics end in a single unbounded linear unit (no sigmoid: f is a Kantorovich potential). Their
normalisation is a parameter because it depends on the Lipschitz method: batch norm breaks the
gradient penalty (the per-sample gradient then depends on the batch), so a GP critic uses layer
norm (Gulrajani et al. 2017, sec. 4), implemented as ``GroupNorm(1, C)``, i.e. normalisation over
(C, H, W) per sample. Generators use batch norm, as in DCGAN.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ARCHS = ("mlp", "dcgan", "resnet")
NORMS = ("batch", "layer", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class MLPGenerator(nn.Module):
    """z [B, z_dim] -> [B, *shape]; ReLU MLP as in the WGAN-GP toy code (tanh for images)."""

    def __init__(self, z_dim: int, shape: tuple[int, ...], width: int = 512, depth: int = 3):
        super().__init__()
        self.shape = tuple(shape)
        layers: list[nn.Module] = []
        d = z_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, math.prod(shape)))
        if len(shape) == 3:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


class MLPCritic(nn.Module):
    """x [B, *shape] -> f(x) [B]; ReLU MLP (no normalisation)."""

    def __init__(self, shape: tuple[int, ...], width: int = 512, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = math.prod(shape)
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


DCGAN_SIZES = (28, 32, 64)


def _layout(size: int) -> tuple[int, int]:
    """(start, stages): the conv nets grow a ``start x start`` map by 2 per stage up to ``size``
    (28 = MNIST's own size: 7 -> 14 -> 28; 32 and 64: 4 -> 8 -> ...)."""
    if size == 28:
        return 7, 2
    if size in (32, 64):
        return 4, int(math.log2(size // 4))
    raise ValueError(f"image_size must be one of {DCGAN_SIZES} for arch 'dcgan', got {size}")


class DCGANGenerator(nn.Module):
    """DCGAN (Radford et al. 2016): project z to 4x4 (7x7 for 28), then stride-2 transposed
    convs (4x4 kernels) with batch norm and ReLU up to ``size``, tanh output."""

    def __init__(self, z_dim: int, channels: int, size: int = 32, width: int = 64):
        super().__init__()
        start, n = _layout(size)
        c = width * 2 ** (n - 1)
        self.project = nn.Sequential(
            nn.Linear(z_dim, c * start * start), nn.Unflatten(1, (c, start, start))
        )
        layers: list[nn.Module] = [nn.BatchNorm2d(c), nn.ReLU()]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(z))


class DCGANCritic(nn.Module):
    """Stride-2 4x4 convs with LeakyReLU(0.2) down to 4x4 (7x7 for 28), then a linear unit."""

    def __init__(self, channels: int, size: int = 32, width: int = 64, norm: str = "layer"):
        super().__init__()
        start, n = _layout(size)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(n - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1), _norm(norm, 2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        layers += [nn.Flatten(), nn.Linear(c * start * start, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class ResBlock(nn.Module):
    """Pre-activation residual block (norm, ReLU, conv3x3) x 2 with optional up/down-sampling."""

    def __init__(self, c_in: int, c_out: int, resample: str | None, norm: str):
        super().__init__()
        self.resample = resample
        self.norm1, self.norm2 = _norm(norm, c_in), _norm(norm, c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        needs_proj = c_in != c_out or resample is not None
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if needs_proj else nn.Identity()

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            return nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        if self.resample == "down":
            return nn.functional.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self._resample(torch.relu(self.norm1(x))))
        h = self.conv2(torch.relu(self.norm2(h)))
        return self._resample(self.shortcut(x)) + h


class ResNetGenerator(nn.Module):
    """The WGAN-GP CIFAR-10 generator: z -> 4x4xW, 3 up-sampling ResBlocks, BN-ReLU-conv-tanh."""

    def __init__(self, z_dim: int, channels: int, size: int = 32, width: int = 128):
        super().__init__()
        if size != 32:
            raise ValueError(f"the resnet architecture is defined for image_size 32, got {size}")
        self.project = nn.Sequential(nn.Linear(z_dim, width * 16), nn.Unflatten(1, (width, 4, 4)))
        self.blocks = nn.Sequential(*(ResBlock(width, width, "up", "batch") for _ in range(3)))
        self.out = nn.Sequential(
            nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, channels, 3, 1, 1), nn.Tanh()
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.project(z)))


class ResNetCritic(nn.Module):
    """Adapted from the WGAN-GP CIFAR-10 critic (Gulrajani et al. 2017, ``gan_cifar_resnet.py``):
    conv, ResBlocks (down, down, -, -), ReLU, mean pool, linear.

    Differences from the released code: a stem conv followed by a pre-activation first block,
    instead of its optimised first block (conv, ReLU, conv-mean-pool, with a mean-pool-conv
    shortcut); down-sampling blocks mean-pool before their first conv, where the released blocks
    pool after their second conv; and ``norm`` inside the blocks (layer norm by default, and for
    GP under ``critic_norm: auto``), where the released critic has no normalisation
    (``norm="none"`` removes it).
    """

    def __init__(self, channels: int, size: int = 32, width: int = 128, norm: str = "layer"):
        super().__init__()
        if size != 32:
            raise ValueError(f"the resnet architecture is defined for image_size 32, got {size}")
        self.stem = nn.Conv2d(channels, width, 3, 1, 1)
        self.blocks = nn.Sequential(
            ResBlock(width, width, "down", norm),
            ResBlock(width, width, "down", norm),
            ResBlock(width, width, None, norm),
            ResBlock(width, width, None, norm),
        )
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.blocks(self.stem(x))).mean(dim=(2, 3))
        return self.head(h).squeeze(-1)


def build_models(
    arch: str, shape: tuple[int, ...], z_dim: int, width: int, critic_norm: str
) -> tuple[nn.Module, nn.Module]:
    """(generator, critic) for data of ``shape``: ``(2,)`` for toys, ``(C, H, W)`` for images."""
    if arch == "mlp":
        return MLPGenerator(z_dim, shape, width), MLPCritic(shape, width)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"arch {arch!r} needs square images [C, S, S], got data shape {shape}")
    c, size = shape[0], shape[1]
    if arch == "dcgan":
        return DCGANGenerator(z_dim, c, size, width), DCGANCritic(c, size, width, critic_norm)
    if arch == "resnet":
        return ResNetGenerator(z_dim, c, size, width), ResNetCritic(c, size, width, critic_norm)
    raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
