"""What every trainer needs once: config, checkpoints, logs, progress, device, seeding, the
shared command-line options and run folder, signals, scoped global settings.

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
    "Interrupted": "signals",
    "add_device_arg": "device",
    "add_run_args": "run",
    "check_resumable": "config",
    "config_file": "run",
    "config_overrides": "run",
    "load_checkpoint": "checkpoint",
    "load_config": "config",
    "open_run_dir": "run",
    "resolve_device": "device",
    "rng_state": "seeding",
    "save_checkpoint": "checkpoint",
    "scoped_settings": "scoped",
    "seed_everything": "seeding",
    "set_rng_state": "seeding",
    "snapshot_config": "run",
    "stop_on_signal": "signals",
}
__all__ = [
    "CSVLogger",
    "ConfigError",
    "Interrupted",
    "add_device_arg",
    "add_run_args",
    "check_resumable",
    "config_file",
    "config_overrides",
    "load_checkpoint",
    "load_config",
    "open_run_dir",
    "progress",
    "resolve_device",
    "rng_state",
    "save_checkpoint",
    "scoped_settings",
    "seed_everything",
    "set_rng_state",
    "snapshot_config",
    "stop_on_signal",
]

if TYPE_CHECKING:
    from wdist_apps.runtime.checkpoint import load_checkpoint, save_checkpoint
    from wdist_apps.runtime.config import ConfigError, check_resumable, load_config
    from wdist_apps.runtime.device import add_device_arg, resolve_device
    from wdist_apps.runtime.logging import CSVLogger
    from wdist_apps.runtime.run import (
        add_run_args,
        config_file,
        config_overrides,
        open_run_dir,
        snapshot_config,
    )
    from wdist_apps.runtime.scoped import scoped_settings
    from wdist_apps.runtime.seeding import rng_state, seed_everything, set_rng_state
    from wdist_apps.runtime.signals import Interrupted, stop_on_signal


__getattr__ = lazy_exports(__name__, _WHERE)
