"""What every trainer needs once: config, checkpoints, logs, progress, device, seeding."""

from apps.runtime.checkpoint import load_checkpoint, save_checkpoint
from apps.runtime.config import ConfigError, check_resumable, load_config
from apps.runtime.device import add_device_arg, resolve_device
from apps.runtime.logging import CSVLogger
from apps.runtime.progress import progress
from apps.runtime.seeding import seed_everything

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
