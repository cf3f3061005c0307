"""The ``--device {auto,cpu,cuda}`` convention shared by every command."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where to compute: auto (CUDA when available, else CPU), cpu or cuda (default: auto)",
    )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map ``auto``/``cpu``/``cuda[:i]`` to a ``torch.device``; a clear error if CUDA is absent.
    Under torchrun, ``cuda`` is each rank's own device, ``cuda:LOCAL_RANK``."""
    import torch  # here, so that parsing --device (and wdist --help) does not load torch

    from wdist_apps.runtime.distributed import device_for

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return device_for(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was asked for but CUDA is not available here")
        return device_for(torch.device(device))
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be one of {DEVICES} (or 'cuda:N'), got {device!r}")
