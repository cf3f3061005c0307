import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wdist_apps.cli import build_parser, main
from wdist_apps.runtime import (
    ConfigError,
    CSVLogger,
    check_resumable,
    load_checkpoint,
    load_config,
    resolve_device,
    save_checkpoint,
)
from wdist_apps.runtime.logging import read_csv

ROOT = Path(__file__).resolve().parents[1]


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


@dataclasses.dataclass
class Typed:
    lr: float | None = None
    sizes: list[int] = dataclasses.field(default_factory=lambda: [1])
    betas: tuple[float, float] | None = None
    data: str = "x"


def test_config_types_checked_inside_optionals_and_lists(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-4\nsizes: [2, 3]\nbetas: [0, 0.9]\n")  # YAML reads 1e-4 as a string
    cfg = load_config(Typed, path)
    assert cfg == Typed(lr=1e-4, sizes=[2, 3], betas=(0.0, 0.9))
    assert isinstance(cfg.lr, float) and isinstance(cfg.betas[0], float)
    assert load_config(Typed, None, {"lr": None}).lr is None
    for text, match in [
        ("lr: fast\n", "'lr': expected float, got 'fast'"),
        ("sizes: [2, two]\n", r"'sizes\[1\]': expected int"),
        ("betas: [0.5, 0.9, 0.99]\n", "'betas': expected 2 values"),
        ("betas: [a, b]\n", r"'betas\[0\]': expected float"),
        ("data: ~\n", "'data': a value is required"),
        ("data: [8gaussians\n", "not valid YAML"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_config(Typed, path)


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


def test_csv_logger_resume_drops_torn_and_later_rows(tmp_path):
    path = tmp_path / "log.csv"
    with CSVLogger(path) as log:
        for step in (0, 2, 4, 6):
            log.log({"step": step, "time_s": step / 2, "note": ""})
    with path.open("a") as fh:
        fh.write("8,4.0")  # a crash mid-row
    with CSVLogger(path, resume=True, upto=("step", 4)) as log:  # the checkpoint was at step 4
        assert log.last == {"step": "4", "time_s": "2", "note": ""}
        log.log({"step": 6, "time_s": 3.5})
    assert read_csv(path) == {"step": [0.0, 2.0, 4.0, 6.0], "time_s": [0.0, 1.0, 2.0, 3.5]}
    with pytest.raises(ValueError, match="no column 'frames'"):
        CSVLogger(path, resume=True, upto=("frames", 0))
    path.write_text("ste")  # only a torn header: start afresh
    with CSVLogger(path, resume=True) as log:
        log.log({"step": 1})
    assert read_csv(path) == {"step": [1.0]}


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
    out = subprocess.run([sys.executable, "-m", "wdist_apps.cli", "--help"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0 and "COMMAND" in out.stdout
    heavy = ("torch", "sklearn", "yaml", "tqdm", "matplotlib", "gymnasium", "gensim")
    code = ("import sys; from wdist_apps.cli import build_parser; build_parser(); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr  # --help loads none of them


def test_cli_without_the_apps_dependencies_says_what_to_install():
    """A core-only install (here: PyYAML blocked): --help works and lists every command; running
    one says which extra to install instead of printing a traceback."""
    code = ("import sys; sys.modules['yaml'] = None; from wdist_apps.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = [sys.executable, "-c", code]
    out = subprocess.run([*run, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "qrdqn" in out.stdout
    out = subprocess.run([*run, "qrdqn", "train", "--config", "x.yaml"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "pip install 'wdist[apps]' (missing module 'yaml')" in out.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_turns_bad_input_into_one_line_error(capsys):
    assert main(["demo", "--device", "cuda", "--apps"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wdist demo: error:") and "CUDA is not available" in err


def test_demo_core_figures(tmp_path):
    from wdist_apps.demo import disjoint_support_figure

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
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other.pt is not a QR-DQN checkpoint \(no \['config'\]"):
        load_checkpoint(tmp_path / "other.pt", require=("config", "weights"), kind="QR-DQN")


def test_check_resumable_names_the_changed_keys():
    cfg = Typed(lr=0.1, sizes=[1, 2], betas=(0.5, 0.9))
    saved = dataclasses.asdict(cfg)
    check_resumable(cfg, saved | {"betas": [0.5, 0.9]})  # a tuple saved as a list is the same
    with pytest.raises(ValueError, match=r"differs in \['data', 'lr'\]"):
        check_resumable(cfg, saved | {"lr": 0.2, "data": "y"})
    check_resumable(cfg, saved | {"lr": 0.2, "data": "y"}, free=("lr", "data"))


def test_command_line_reads_as_typed(monkeypatch):
    from wdist_apps.runtime.machine import _ROOT, command_line

    monkeypatch.setattr("sys.argv", [str(_ROOT / "apps" / "cli.py"), "wdgrl", "bench"])
    assert command_line() == "wdist wdgrl bench"
    monkeypatch.setattr("sys.argv", ["/venv/bin/wdist", "demo", "--device", "cpu"])
    assert command_line() == "wdist demo --device cpu"
    monkeypatch.setattr("sys.argv", [str(_ROOT / "benchmarks" / "core.py"), "--quick"])
    assert command_line() == "python benchmarks/core.py --quick"


@pytest.mark.parametrize("path", sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml")))
def test_every_shipped_config_loads(path):
    from wdist_apps.qrdqn.config import QRDQNConfig
    from wdist_apps.wdgrl.experiment import WDGRLConfig
    from wdist_apps.wgan.config import WGANConfig

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from wmd import BenchConfig
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    app = Path(path).parent.name
    cls = {"qrdqn": QRDQNConfig, "wdgrl": WDGRLConfig, "wgan": WGANConfig, "wmd": BenchConfig}[app]
    if app == "qrdqn" and Path(path).name.startswith("pqn-"):
        from wdist_apps.qrdqn.pqn import PQNConfig as cls
    assert isinstance(load_config(cls, ROOT / path), cls)
