"""YAML experiment configs loaded into dataclasses; unknown keys are an error, never ignored."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from wdist_apps.runtime.run import builtin_configs, find_config  # noqa: F401 - re-exported

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not match the experiment's dataclass."""


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` (scalars, ``X | None``, ``list[X]``, ``tuple[X, ...]``), or a
    :class:`ConfigError` naming the key. A string that reads as a number is accepted for a float:
    PyYAML reads ``1e-4`` (no dot) as a string."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None:
            if len(options) < len(args):
                return None
        elif len(options) == 1:
            return _coerce(name, value, options[0])
        else:
            return value
    if value is None:
        raise ConfigError(f"config key {name!r}: a value is required, got none")
    if hint is float and not isinstance(value, bool):
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"config key {name!r}: expected {hint.__name__}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {name!r}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ConfigError(f"config key {name!r}: expected {len(args)} values, got {value!r}")
        item = args[0] if args else Any
        return origin(_coerce(f"{name}[{i}]", v, item) if item is not Any else v
                      for i, v in enumerate(value))
    return value


coerce = _coerce  # public name for apps that check nested blocks against other signatures


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting keys it does not declare."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown config key(s) {unknown}; valid keys are {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            kwargs[key] = from_dict(hint, value, f"{source}.{key}")
        else:
            kwargs[key] = _coerce(key, value, hint)
    return cls(**kwargs)


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> T:
    """Read YAML ``path`` (optional) into dataclass ``cls``, then apply ``overrides``.

    Overrides whose value is ``None`` are skipped, so argparse defaults can be passed straight in.
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        source = str(path)
        with path.open() as fh:
            try:
                data = yaml.safe_load(fh) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return from_dict(cls, data, source)


def check_resumable(cfg: Any, saved: dict[str, Any], free: tuple[str, ...] = ()) -> None:
    """Raise a ``ValueError`` naming the keys in which dataclass ``cfg`` differs from the ``saved``
    config of the checkpoint a run resumes from; the keys in ``free`` may change (budgets,
    output paths, logging periods)."""
    mine = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in free}
    diff = sorted(k for k in mine if _plain(mine[k]) != _plain(saved.get(k)))
    if diff:
        raise ValueError(
            f"cannot resume: the checkpoint's config differs in {diff} "
            f"(checkpoint: {[saved.get(k) for k in diff]}, now: {[mine[k] for k in diff]})"
        )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def to_dict(cfg: Any) -> dict[str, Any]:
    """The dataclass as a plain dict (for logging next to results)."""
    return dataclasses.asdict(cfg)
