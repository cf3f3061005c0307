"""What every trainer needs once: config, checkpoints, logs, progress, device, seeding.

The names are imported on first use (PEP 562), so that ``wdist --help`` does not load torch,
PyYAML or tqdm, and works in a core-only install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wdist_apps.runtime.lazy import lazy_exports

# bound now, since the function shadows its module's name (a light import: tqdm loads on use)
from wdist_apps.runtime.progress import progress

_WHERE = {
    "CSVLogger": "logging",
    "ConfigError": "config",
    "add_device_arg": "device",
    "check_resumable": "config",
    "load_checkpoint": "checkpoint",
    "load_config": "config",
    "resolve_device": "device",
    "save_checkpoint": "checkpoint",
    "seed_everything": "seeding",
}
__all__ = [
    "CSVLogger",
    "ConfigError",
    "add_device_arg",
    "check_resumable",
    "load_checkpoint",
    "load_config",
    "progress",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
]

if TYPE_CHECKING:
    from wdist_apps.runtime.checkpoint import load_checkpoint, save_checkpoint
    from wdist_apps.runtime.config import ConfigError, check_resumable, load_config
    from wdist_apps.runtime.device import add_device_arg, resolve_device
    from wdist_apps.runtime.logging import CSVLogger
    from wdist_apps.runtime.seeding import seed_everything


__getattr__ = lazy_exports(__name__, _WHERE)
