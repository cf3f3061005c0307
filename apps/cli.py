"""The ``wdist`` console script: parses arguments and dispatches; the work lives in the apps.

Each app exposes ``wdist_apps.<app>.cli.register(subparsers)``, which adds its subcommand and sets a
``func`` default; its heavy imports happen inside ``func`` so that ``wdist --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

APPS = {
    "demo": "wdist_apps.demo",
    "wdgrl": "wdist_apps.wdgrl.cli",
    "qrdqn": "wdist_apps.qrdqn.cli",
    "wgan": "wdist_apps.wgan.cli",
    "wmd": "wdist_apps.wmd.cli",
}


def _missing_extras(err: ModuleNotFoundError) -> str | None:
    """The message for a missing third-party module (None for our own: that is a bug)."""
    top = (err.name or "").split(".")[0]
    if not top or top in ("wdist_apps", "wdist"):
        return None
    return (f"needs the applications' dependencies: pip install 'wdist[apps]' "
            f"(missing module {top!r})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wdist",
        description="Wasserstein distances in PyTorch, and four applications built on them.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in APPS.values():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:  # an app not installed in this checkout
            if err.name and module.startswith(err.name):
                continue
            raise
        mod.register(sub)  # cheap: each app imports its dependencies when its command runs
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # --help, or a usage error argparse has already printed
        return exit.code if isinstance(exit.code, int) else 2
    from wdist_apps.runtime.signals import Interrupted

    try:
        return int(args.func(args) or 0)
    except Interrupted as stop:  # a trainer checkpointed on SIGINT / SIGTERM or a time limit
        print(f"wdist {args.command}: {stop}", file=sys.stderr)
        return 0 if stop.signum is None else 128 + stop.signum
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint (if any) is intact", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError,
            NotADirectoryError, FloatingPointError) as err:
        print(f"wdist {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        why = _missing_extras(err)
        if why is None:
            raise
        print(f"wdist {args.command}: error: {why}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
