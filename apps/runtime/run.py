"""What every trainer's command line shares: the options, the built-in configs, the run folder.

Every training command (``wdist wgan train``, ``wdist qrdqn train|pqn``, ``wdist wdgrl run``)
takes the same options, added by :func:`add_run_args`::

    --config NAME|FILE   a built-in config by name (``--config moons50``) or a YAML file
    --set KEY=VALUE      override any config key, VALUE read as YAML (repeatable)
    --out DIR            the run folder
    --resume             continue the run in DIR from its checkpoint
    --overwrite          start afresh in a DIR that holds a previous run
    --device             auto | cpu | cuda
    --time-limit T       stop (with a checkpoint) after T: 90s, 30m, 2h; a bare number is minutes

A run folder that is not empty is refused unless ``--resume`` or ``--overwrite`` is given, so a
forgotten flag never replaces a finished run. This module imports no heavy library (``wdist
--help`` lists the built-in configs without loading PyYAML or torch).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from wdist_apps.runtime.device import add_device_arg

_HERE = Path(__file__).resolve()


def builtin_configs(app: str) -> Path:
    """The folder of ``app``'s shipped configs: ``configs/<app>`` in a repository checkout, the
    copy the wheel carries as ``wdist_apps/configs/<app>`` in an installed one."""
    for root in (_HERE.parents[2] / "configs",  # the repository
                 _HERE.parents[1] / "configs"):  # the installed wheel
        if (root / app).is_dir():
            return root / app
    raise FileNotFoundError(f"the built-in configs of {app!r} are missing from this install")


def builtin_names(app: str) -> list[str]:
    """The names ``--config`` accepts for ``app`` (the shipped YAML files' stems)."""
    try:
        return sorted(p.stem for p in builtin_configs(app).glob("*.yaml"))
    except FileNotFoundError:
        return []


def find_config(app: str, name: str | Path) -> Path:
    """``name`` as a file if it is one, else the built-in config of that name (``moons50``,
    ``moons50.yaml`` or ``configs/wdgrl/moons50.yaml``, the path in a checkout); a
    ``FileNotFoundError`` lists the built-in names and where they are."""
    path = Path(name)
    if path.is_file():
        return path
    names = builtin_names(app)
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    # a bare name, or the repository's own path (configs/<app>/<name>.yaml) from another folder
    shipped = path.parent in (Path("."), Path("configs") / app)
    if stem in names and shipped:
        return builtin_configs(app) / f"{stem}.yaml"
    where = f" in {builtin_configs(app)}" if names else ""
    raise FileNotFoundError(f"config file not found: {name}; the built-in {app} configs"
                            f"{where} are: {', '.join(names) or 'none'} (pass a name, e.g. "
                            f"--config {names[0] if names else 'NAME'})")


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h`` or a bare number of minutes -> seconds (an argparse ``type``)."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    text = text.strip().lower()
    scale = units.get(text[-1:], None)
    try:
        value = float(text[:-1] if scale else text) * (scale or 60.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90s, 30m or 2h (a bare number is minutes), got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the time limit must be > 0, got {text!r}")
    return value


def add_resume_args(parser: argparse.ArgumentParser, *, resume: str, overwrite: str) -> None:
    """``--resume`` / ``--overwrite`` (mutually exclusive), with each command's own help."""
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help=resume)
    again.add_argument("--overwrite", action="store_true", help=overwrite)


def add_run_args(parser: argparse.ArgumentParser, app: str, *, default_out: str | None,
                 config_default: str | None = "the built-in defaults",
                 time_limit: bool = True) -> None:
    """Add the options every training command shares (see the module docstring);
    ``config_default=None``: ``--config`` is required (checked by the command, so that its
    error message can name the built-in configs)."""
    names = builtin_names(app)
    default = "required" if config_default is None else f"default: {config_default}"
    parser.add_argument(
        "--config", metavar="NAME|FILE",
        help=f"a built-in config ({', '.join(names)}) or a YAML file ({default})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override any config key, VALUE read as YAML (repeatable)")
    parser.add_argument("--out", default=default_out, metavar="DIR",
                        help="run folder" + (f" (default: {default_out})" if default_out else ""))
    add_resume_args(parser, resume="continue the run in --out from its checkpoint",
                    overwrite="start afresh in an --out that holds a previous run")
    add_device_arg(parser)
    if time_limit:
        parser.add_argument("--time-limit", type=parse_duration, metavar="T",
                            help="stop after T (90s, 30m, 2h; a bare number is minutes), "
                            "with a checkpoint to --resume from")
        parser.add_argument("--time-limit-min", dest="time_limit", type=parse_duration,
                            help=argparse.SUPPRESS)  # the earlier spelling, in minutes
    parser.set_defaults(app=app)


def config_overrides(args: argparse.Namespace, **flags: Any) -> dict[str, Any]:
    """``--set`` pairs, then the app's own flags that were given (those win)."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return overrides


def config_file(args: argparse.Namespace) -> Path | None:
    """The YAML file ``--config`` names (a built-in name or a path), or None."""
    return None if args.config is None else find_config(args.app, args.config)


def open_run_dir(out: str | Path, *, resume: bool, overwrite: bool,
                 owned: tuple[str, ...] = ()) -> Path:
    """Create the run folder ``out``, refusing one that already holds files unless ``resume`` or
    ``overwrite``; ``owned``: when given, only these names (globs) count as a previous run's
    (a folder shared by several runs, e.g. one per task). Under torchrun rank 0 checks and
    creates it, and every rank gets its answer (so that no rank sees rank 0's first files)."""
    from wdist_apps.runtime.distributed import on_main

    return on_main(_open_run_dir, Path(out), resume, overwrite, owned)


def _open_run_dir(out: Path, resume: bool, overwrite: bool, owned: tuple[str, ...]) -> Path:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is an existing file; a run writes a folder there")
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if out.is_dir() and not (resume or overwrite):
        found = ([p for pattern in owned for p in out.glob(pattern)] if owned
                 else list(out.iterdir()))
        if found:
            raise FileExistsError(
                f"{out} already holds a run ({', '.join(sorted(p.name for p in found)[:4])}"
                f"{', ...' if len(found) > 4 else ''}): pass --resume to continue it, "
                "--overwrite to replace it, or another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def snapshot_config(run_dir: str | Path, cfg: Any, name: str = "config.yaml") -> Path:
    """Write the dataclass ``cfg`` as ``run_dir/config.yaml`` (atomically), beside the run
    (under torchrun: on rank 0)."""
    import dataclasses

    from wdist_apps.runtime.distributed import is_main

    if not is_main():
        return Path(run_dir) / name

    import yaml

    from wdist_apps.runtime.checkpoint import atomic_write

    text = yaml.safe_dump(_plain(dataclasses.asdict(cfg)), sort_keys=False)
    return atomic_write(Path(run_dir) / name, lambda fh: fh.write(text.encode()))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
