"""Machine and library versions for reports (CPU model, GPU name, versions, command)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

_PACKAGES = ("torch", "numpy", "scipy", "pot", "geomloss", "pykeops")
_ROOT = Path(__file__).resolve().parents[2]


def command_line() -> str:
    """The command as a user would type it: ``wdist ...`` for the CLI (whether started as the
    ``wdist`` script or ``python -m wdist_apps.cli``), else
    ``python <path relative to the repo> ...``."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "wdist" or argv0.parts[-2:] in (("apps", "cli.py"), ("wdist_apps", "cli.py")):
        return shlex.join(["wdist", *sys.argv[1:]])
    try:
        argv0 = argv0.resolve().relative_to(_ROOT)
    except ValueError:
        pass
    return shlex.join(["python", str(argv0), *sys.argv[1:]])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(packages: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    """Installed version of each distribution (``"not installed"`` when missing)."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_info(device: str = "cpu") -> dict[str, object]:
    """CPU model, cores, torch threads, GPU name (``device`` CUDA), versions and command."""
    info: dict[str, object] = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
        "versions": versions(),
        "command": command_line(),
    }
    return info


def markdown_header(info: dict[str, object]) -> str:
    """A few markdown lines describing ``machine_info``'s result."""
    vers = ", ".join(f"{k} {v}" for k, v in info["versions"].items())  # type: ignore[union-attr]
    lines = [
        f"- CPU: {info['cpu']} ({info['cpu_cores']} cores), torch threads: {info['torch_threads']}",
    ]
    if info.get("gpu"):
        lines.append(f"- GPU: {info['gpu']}")
    lines += [f"- versions: {vers}", f"- command: `{info['command']}`"]
    return "\n".join(lines)


def describe(device: torch.device | str = "cpu") -> str:
    """One line for a report: the GPU name on CUDA, else the CPU model and torch's threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} torch threads)"


def write_report(out_dir: str | Path, stem: str, lines: list[str], payload: dict) -> Path:
    """``<out_dir>/<stem>.md`` (the markdown ``lines``) and ``<stem>.json`` (``payload``, with
    the numbers behind the table); returns the markdown path."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=1))
    md = out_dir / f"{stem}.md"
    md.write_text("\n".join(lines) + "\n")
    return md
