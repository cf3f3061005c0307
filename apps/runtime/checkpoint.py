"""Atomic files and checkpoints: write to a temporary file in the same folder, fsync, rename.

A checkpoint file is a 96-byte header, ``WDISTCKPT1 <sha256 of the payload>`` padded with spaces
and ending in a newline, then the ``torch.save`` payload. :func:`load_checkpoint` verifies the
digest, so a file damaged on disk or in transfer is a clear error rather than silently wrong
weights; a file without the header (an older wdist checkpoint, or one written by ``torch.save``)
is read as before.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

MAGIC = b"WDISTCKPT1 "
HEADER_SIZE = 96


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` through ``write(fh)`` so that it is either the old or the new file: a temp
    file in the same folder, fsync, then ``os.replace`` (atomic). A crash or Ctrl-C mid-write
    leaves the previous file intact and no temp file behind. The file gets the mode an ordinary
    ``open(path, "w")`` would (0666 less the umask), not the temp file's 0600."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; expected a file path to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class _Hashing:
    """A write-only file that hashes what passes through it (torch.save streams into it)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.sha = fh, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Save ``state`` with ``torch.save`` through :func:`atomic_write`, with a SHA-256 header.
    Under torchrun rank 0 alone writes (the other ranks' models are the same)."""
    from wdist_apps.runtime.distributed import is_main

    if not is_main():
        return Path(path)

    def write(fh: BinaryIO) -> None:
        fh.write(b" " * HEADER_SIZE)  # the digest is known after the payload
        hashing = _Hashing(fh)
        torch.save(state, hashing)
        fh.seek(0)
        fh.write(_header(hashing.sha.hexdigest()))
        fh.seek(0, os.SEEK_END)

    return atomic_write(path, write)


def _header(digest: str) -> bytes:
    head = MAGIC + digest.encode()
    return head + b" " * (HEADER_SIZE - 1 - len(head)) + b"\n"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    require: tuple[str, ...] = (), kind: str = "wdist") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (clear error if missing); a
    ``ValueError`` names the file when it is damaged (checksum mismatch), is not a checkpoint,
    or lacks any of the keys in ``require`` (``kind`` names what it should have been, e.g.
    "QR-DQN")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    payload: bytes | memoryview = data
    if data.startswith(MAGIC):
        expected = data[len(MAGIC):HEADER_SIZE].strip().decode(errors="replace")
        payload = memoryview(data)[HEADER_SIZE:]
        actual = hashlib.sha256(payload).hexdigest()
        if actual != expected:
            raise ValueError(f"{path} is damaged: its SHA-256 is {actual[:12]}..., the one stored "
                             f"when it was written is {expected[:12]}... (a partial copy or a disk "
                             "error); use another checkpoint")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        why = f"{type(err).__name__}: {err}"
        raise ValueError(f"{path} is not a {kind} checkpoint ({why})") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a {kind} checkpoint (holds a {type(state).__name__})")
    missing = [k for k in require if k not in state]
    if missing:
        raise ValueError(f"{path} is not a {kind} checkpoint (no {missing} in it)")
    return state
