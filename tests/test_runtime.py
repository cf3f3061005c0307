import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from apps.cli import build_parser, main
from apps.runtime import (
    ConfigError,
    CSVLogger,
    load_checkpoint,
    load_config,
    resolve_device,
    save_checkpoint,
)
from apps.runtime.logging import read_csv


@dataclasses.dataclass
class Cfg:
    lr: float = 1e-3
    steps: int = 10
    name: str = "x"
    sizes: list = dataclasses.field(default_factory=lambda: [1, 2])


def test_config_roundtrip_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1\nsteps: 5\nsizes: [3, 4]\n")
    cfg = load_config(Cfg, path, {"name": "y", "steps": None})
    assert cfg == Cfg(lr=1.0, steps=5, name="y", sizes=[3, 4])
    assert isinstance(cfg.lr, float)


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.1\nstepz: 5\n")
    with pytest.raises(ConfigError, match="stepz"):
        load_config(Cfg, path)
    path.write_text("steps: many\n")
    with pytest.raises(ConfigError, match="'steps': expected int"):
        load_config(Cfg, path)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(Cfg, tmp_path / "nope.yaml")


def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2}, path)
    assert load_checkpoint(path)["step"] == 1  # the old checkpoint survived the interrupted write
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # and no temp file was left behind
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_csv_logger_resume(tmp_path):
    path = tmp_path / "log.csv"
    with CSVLogger(path) as log:
        log.log({"step": 1, "loss": torch.tensor(0.5)})
    with CSVLogger(path, resume=True) as log:
        log.log({"step": 2, "loss": 0.25})
        with pytest.raises(KeyError, match="extra"):
            log.log({"step": 3, "extra": 1})
    assert read_csv(path) == {"step": [1.0, 2.0], "loss": [0.5, 0.25]}


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")


def test_cli_help_lists_commands_and_is_fast():
    text = build_parser().format_help()
    assert "demo" in text
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-m", "apps.cli", "--help"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0 and "COMMAND" in out.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_turns_bad_input_into_one_line_error(capsys):
    assert main(["demo", "--device", "cuda", "--apps"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wdist demo: error:") and "CUDA is not available" in err


def test_demo_core_figures(tmp_path):
    from apps.demo import disjoint_support_figure

    path = disjoint_support_figure(tmp_path / "d.png")
    assert path.stat().st_size > 10_000 and path.read_bytes()[:4] == b"\x89PNG"


def test_load_checkpoint_rejects_other_files(tmp_path):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pt is not a wdist checkpoint"):
        load_checkpoint(bogus)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list"):
        load_checkpoint(tmp_path / "list.pt")


def test_command_line_reads_as_typed(monkeypatch):
    from apps.runtime.machine import _ROOT, command_line

    monkeypatch.setattr("sys.argv", [str(_ROOT / "apps" / "cli.py"), "wdgrl", "bench"])
    assert command_line() == "wdist wdgrl bench"
    monkeypatch.setattr("sys.argv", ["/venv/bin/wdist", "demo", "--device", "cpu"])
    assert command_line() == "wdist demo --device cpu"
    monkeypatch.setattr("sys.argv", [str(_ROOT / "benchmarks" / "core.py"), "--quick"])
    assert command_line() == "python benchmarks/core.py --quick"
