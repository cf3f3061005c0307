"""Figures people would rather see than read: sample grids, toy samples + critic contours, and
exact-W1 vs critic-estimate curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wdist_apps.runtime.figures import save_figure


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 0..255 (clamped, ``round((x + 1) * 127.5)``), what an image
    file would hold and what FID tools expect."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def save_samples_npz(samples: torch.Tensor, path: str | Path, is_toy: bool = False) -> Path:
    """Raw samples for other tools: images as uint8 ``[N, C, H, W]`` under key ``images``, toy
    points as float32 ``[N, 2]`` under key ``points`` (``np.load(path)["images"]``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_toy:
        arrays = {"points": samples.detach().float().cpu().numpy()}
    else:
        if samples.dim() != 4:
            raise ValueError(f"images must be [N, C, H, W], got {tuple(samples.shape)}")
        arrays = {"images": to_uint8(samples).numpy()}
    with path.open("wb") as fh:  # a file object: numpy appends no ".npz" to a name like x.NPZ
        np.savez(fh, **arrays)
    return path


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Tile images ``[N, C, H, W]`` in [-1, 1] into one PNG (1-pixel gaps)."""
    from PIL import Image

    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 1 or 3, H, W], got {tuple(images.shape)}")
    x = to_uint8(images)
    n, c, h, w = x.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    ncol = int(np.ceil(n / nrow))
    grid = np.full((ncol * (h + 1) + 1, nrow * (w + 1) + 1, c), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = (
            x[i].permute(1, 2, 0).numpy()
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)
    return path


def _critic_grid(critic: torch.nn.Module, lim: float, n: int = 120) -> tuple[np.ndarray, ...]:
    xs = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(xs, xs)
    pts = torch.tensor(np.stack([xx.ravel(), yy.ravel()], 1), dtype=torch.float32)
    device = next(critic.parameters()).device
    was_training = critic.training
    critic.eval()
    with torch.no_grad():
        f = critic(pts.to(device)).cpu().numpy().reshape(n, n)
    critic.train(was_training)
    return xx, yy, f


def draw_toy_panel(ax, real: torch.Tensor, fake: torch.Tensor, critic: torch.nn.Module,
                   title: str, lim: float = 2.5) -> None:
    """Critic value contours, real points (orange) and generated points (green) on one axis."""
    xx, yy, f = _critic_grid(critic, lim)
    ax.contour(xx, yy, f, levels=15, cmap="viridis", linewidths=0.8)
    r, g = real.cpu().numpy(), fake.detach().cpu().numpy()
    ax.scatter(r[:, 0], r[:, 1], s=2, c="tab:orange", alpha=0.5, label="real")
    ax.scatter(g[:, 0], g[:, 1], s=2, c="tab:green", alpha=0.5, label="generated")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def save_toy_figure(real, fake, critic, path: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    draw_toy_panel(ax, real, fake, critic, title)
    ax.legend(loc="lower right", fontsize=7, markerscale=4)
    return save_figure(fig, path, dpi=110)


def draw_w1_panel(ax, log: dict[str, list[float]], floor: float, title: str) -> None:
    """Exact W1 (black, left axis, with the sampling floor) and the critic's estimate (blue,
    right axis: a clipped or spectrally normalised critic estimates W1 only up to a scale)."""
    ax.plot(log["step"], log["w1_exact"], color="black", label="exact W1 (wdist.emd)")
    ax.axhline(floor, color="gray", ls=":", label="sampling floor")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    twin = ax.twinx()
    twin.plot(log["step"], log["w1_critic"], color="tab:blue", label="critic estimate")
    twin.tick_params(axis="y", colors="tab:blue", labelsize=7)
