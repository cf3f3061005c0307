"""Atomic files and checkpoints: write to a temporary file in the same folder, fsync, rename."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` through ``write(fh)`` so that it is either the old or the new file: a temp
    file in the same folder, fsync, then ``os.replace`` (atomic). A crash or Ctrl-C mid-write
    leaves the previous file intact and no temp file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Save ``state`` with ``torch.save`` through :func:`atomic_write`."""
    return atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    require: tuple[str, ...] = (), kind: str = "wdist") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (clear error if missing); a
    ``ValueError`` names the file when it is not one, or lacks any of the keys in ``require``
    (``kind`` names what it should have been, e.g. "QR-DQN")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        why = f"{type(err).__name__}: {err}"
        raise ValueError(f"{path} is not a {kind} checkpoint ({why})") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a {kind} checkpoint (holds a {type(state).__name__})")
    missing = [k for k in require if k not in state]
    if missing:
        raise ValueError(f"{path} is not a {kind} checkpoint (no {missing} in it)")
    return state
