"""Image folders as a lazily decoded, uint8 data set, streamed in batches by a ``DataLoader``.

A folder of photos is never decoded whole into floats (CelebA's 202,599 images at 64x64 would
be 10 GB of float32, and minutes of decoding at every start): :class:`ImageFolder` lists the
files and decodes one image per ``__getitem__`` (Pillow: convert, resize the short side, centre
crop) into a ``uint8 [C, S, S]`` tensor, in the ``DataLoader``'s worker processes.
:class:`FolderBatches` turns that into an endless stream of training batches, converted to
float in [-1, 1] one batch at a time, with optional horizontal flips.

Batch ``k`` holds the indices drawn by a generator seeded with ``(seed, k)``, so the stream is
the same with any number of workers and a resumed run continues it exactly (``start=k``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def decode_image(path: Path, image_size: int, channels: int) -> np.ndarray:
    """One image file -> ``uint8 [S, S, C]``: RGB (alpha dropped) or grayscale, short side
    resized to ``image_size`` (bicubic), centre-cropped. Pillow's errors pass through."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        w, h = im.size
        scale = image_size / min(w, h)
        nw, nh = max(image_size, round(w * scale)), max(image_size, round(h * scale))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - image_size) // 2, (nh - image_size) // 2
        im = im.crop((left, top, left + image_size, top + image_size))
        return np.array(im, dtype=np.uint8).reshape(image_size, image_size, channels)  # writable


class ImageFolder(Dataset):
    """Every image file under ``folder`` (recursive, sorted), decoded on access to
    ``uint8 [C, S, S]``.

    A file Pillow cannot decode is skipped with a ``UserWarning`` naming it: its index returns
    the next readable file instead (so a batch keeps its size). No image file at all, or no
    readable one, is a ``ValueError``.

    >>> ds = ImageFolder("photos/", image_size=64, channels=3)   # doctest: +SKIP
    >>> ds[0].dtype, ds[0].shape                                  # doctest: +SKIP
    (torch.uint8, torch.Size([3, 64, 64]))
    """

    def __init__(self, folder: str | Path, image_size: int, channels: int = 3):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.folder}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.image_size, self.channels = image_size, channels
        self.files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"no image files ({sorted(IMAGE_SUFFIXES)}) found in {self.folder}")
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        for step in range(len(self.files)):
            i = (index + step) % len(self.files)
            if i in self._bad:
                continue
            try:
                arr = decode_image(self.files[i], self.image_size, self.channels)
            except (OSError, ValueError, SyntaxError) as err:  # PIL's decode errors
                self._bad.add(i)
                warnings.warn(f"skipping unreadable image {self.files[i]}: {err}", UserWarning,
                              stacklevel=2)
                continue
            return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        raise ValueError(f"no readable images ({sorted(IMAGE_SUFFIXES)}) found in {self.folder}")


def to_unit(batch: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 in [-1, 1] (the generator's tanh range)."""
    return batch.float().div_(127.5).sub_(1.0)


class _SeededBatches(Sampler[list[int]]):
    """Endless batches of indices; batch ``k`` is drawn by a generator seeded with (seed, k)."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0):
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
            yield torch.randint(0, self.n, (self.batch_size,), generator=g).tolist()
            k += 1


class FolderBatches:
    """Endless training batches ``float32 [B, C, S, S]`` in [-1, 1] from an :class:`ImageFolder`,
    decoded by ``workers`` processes (0: in this process), sampled with replacement, each image
    mirrored left-right with probability 1/2 when ``hflip``.

    ``start`` skips the first ``start`` batches (resume): batch ``k`` is the same whatever the
    number of workers or where the run was interrupted.
    """

    def __init__(self, dataset: ImageFolder, batch_size: int, *, seed: int = 0,
                 workers: int = 2, hflip: bool = False, start: int = 0,
                 device: torch.device | str = "cpu"):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.dataset, self.seed, self.hflip = dataset, seed, hflip
        self.device = torch.device(device)
        self.k = start
        sampler = _SeededBatches(len(dataset), batch_size, seed, start)
        # its own generator: starting the loader must not draw from torch's global RNG (the
        # generator's noise), or a resumed run would see different noise
        self._loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                  pin_memory=self.device.type == "cuda",
                                  persistent_workers=workers > 0,
                                  generator=torch.Generator().manual_seed(seed))
        self._it = iter(self._loader)

    def __next__(self) -> torch.Tensor:
        batch = next(self._it)
        if self.hflip:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.k + 7)
            flip = torch.rand(len(batch), generator=g) < 0.5
            batch[flip] = batch[flip].flip(-1)
        self.k += 1
        return to_unit(batch.to(self.device, non_blocking=True))

    def __iter__(self) -> FolderBatches:
        return self
