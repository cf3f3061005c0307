"""The run harness every trainer shares: options, run folder, checkpoints, signals, settings,
progress; and per trainer, a run killed with SIGTERM that resumes to where an uninterrupted run
ends."""

import argparse
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import wdist
from wdist_apps.cli import main
from wdist_apps.runtime import load_checkpoint, save_checkpoint
from wdist_apps.runtime.progress import progress
from wdist_apps.runtime.run import add_run_args, find_config, open_run_dir, parse_duration
from wdist_apps.runtime.scoped import scoped_settings
from wdist_apps.runtime.seeding import rng_state, set_rng_state
from wdist_apps.runtime.signals import Interrupted, stop_on_signal

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- the pieces
def test_checkpoint_checksum_and_file_mode(tmp_path):
    path = save_checkpoint({"w": torch.arange(1000.0), "step": 3}, tmp_path / "ck.pt")
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600
    assert load_checkpoint(path)["step"] == 3
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the payload
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"ck\.pt is damaged: its SHA-256"):
        load_checkpoint(path)
    torch.save({"step": 1}, tmp_path / "plain.pt")  # a header-less file still loads
    assert load_checkpoint(tmp_path / "plain.pt")["step"] == 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_rng_state_roundtrip():
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), __import__("random").random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_stop_on_signal_sets_a_flag_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signal() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_nested_blocks_share_the_outer_flag_and_its_time_limit():
    with stop_on_signal(time_limit_s=0.0) as outer:
        time.sleep(0.001)
        with stop_on_signal() as inner:  # a trainer inside a command
            assert inner is outer and inner.requested
        with stop_on_signal(enabled=False) as off:  # nothing to checkpoint: never stops
            assert not off.requested
        with pytest.raises(Interrupted, match="stopped at the time limit after step 1"):
            outer.check("after step 1")


def test_scoped_settings_restore_what_was_there():
    threads = torch.get_num_threads()
    with wdist.set_validation(False):  # a caller's own setting survives a run
        with scoped_settings(threads=threads + 1, validation=True,
                             default_dtype=torch.float64):
            assert torch.get_num_threads() == threads + 1
            assert torch.get_default_dtype() == torch.float64
        from wdist._checks import validation_enabled

        assert validation_enabled() is False
    assert torch.get_num_threads() == threads and torch.get_default_dtype() == torch.float32


def test_progress_prints_lines_when_not_a_terminal(monkeypatch):
    monkeypatch.setenv("WDIST_PROGRESS_INTERVAL", "0")
    stream = io.StringIO()
    for _ in progress(range(5), desc="job", file=stream, disable=False):
        pass
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) >= 2
    assert lines[-1].startswith("job: 100%") and "5/5" in lines[-1]


def test_run_options_built_in_configs_and_the_run_folder(tmp_path):
    parser = argparse.ArgumentParser()
    add_run_args(parser, "wdgrl", default_out="runs/x")
    args = parser.parse_args(["--config", "moons50", "--set", "epochs=2", "--time-limit", "90s"])
    assert args.time_limit == 90 and args.overrides == ["epochs=2"] and args.out == "runs/x"
    assert "moons50" in parser.format_help()  # --help lists the built-in configs
    assert find_config("wdgrl", "moons50") == find_config("wdgrl", "moons50.yaml")
    assert find_config("wdgrl", "moons50").read_text().startswith(
        (ROOT / "configs" / "wdgrl" / "moons50.yaml").read_text()[:20])
    assert find_config("wdgrl", "configs/wdgrl/moons50.yaml").resolve() == find_config(
        "wdgrl", "moons50").resolve()
    for missing in ("no/such.yaml", tmp_path / "moons50.yaml"):  # not the built-in of that name
        with pytest.raises(FileNotFoundError, match=r"built-in wdgrl configs in .*moons50"):
            find_config("wdgrl", missing)
    assert parse_duration("2") == 120 and parse_duration("1h") == 3600
    with pytest.raises(SystemExit):
        parser.parse_args(["--resume", "--overwrite"])
    run = open_run_dir(tmp_path / "run", resume=False, overwrite=False)
    (run / "log.csv").write_text("step\n")
    with pytest.raises(FileExistsError, match="pass --resume to continue it, --overwrite"):
        open_run_dir(run, resume=False, overwrite=False)
    assert open_run_dir(run, resume=True, overwrite=False) == run
    with pytest.raises(FileExistsError, match="is an existing file"):
        open_run_dir(run / "log.csv", resume=False, overwrite=False)


# ---------------------------------------------------------------------------- kill and resume
def _kill_when_ready(argv: list[str], ready, timeout: float = 120.0) -> tuple[int, str]:
    """Start ``wdist ARGV`` in a subprocess, send SIGTERM once ``ready()``; (exit code, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WDIST_NO_PROGRESS": "1",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "wdist_apps.cli", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the run ended before it was ready: {proc.communicate()}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def _not_json(name: str) -> None:
    raise AssertionError(f"{name} is not strict JSON")


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_wgan_sigterm_checkpoints_at_a_step_and_resumes_exactly(tmp_path, capsys):
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": "8gaussians", "width": 16, "batch_size": 32, "steps": 100_000, "log_every": 1,
        "sample_every": 10**6, "checkpoint_every": 10**6, "eval_samples": 50, "ema": False}))
    run = tmp_path / "run"
    base = ["wgan", "train", "--config", str(cfg), "--device", "cpu"]
    code, err = _kill_when_ready([*base, "--out", str(run)],
                                 lambda: len(_rows(run / "log.csv")) >= 4)
    assert code == 128 + signal.SIGTERM and "stopped by SIGTERM at step" in err, err
    step = load_checkpoint(run / "checkpoint.pt")["step"]
    assert step == int(_rows(run / "log.csv")[-1]["step"])  # written at a step boundary
    assert main([*base, "--out", str(run), "--steps", str(step + 3)]) == 2  # run folder taken
    assert main([*base, "--out", str(run), "--steps", str(step + 3), "--resume"]) == 0
    assert main([*base, "--out", str(tmp_path / "full"), "--steps", str(step + 3)]) == 0
    resumed = load_checkpoint(run / "checkpoint.pt")
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    assert resumed["step"] == full["step"] == step + 3
    for key in full["generator"]:
        torch.testing.assert_close(resumed["generator"][key], full["generator"][key])
    assert main([*base, "--out", str(run), "--steps", "1", "--resume"]) == 2  # past step 1
    sample = ["wgan", "sample", "--checkpoint", str(run / "checkpoint.pt"), "--n", "8",
              "--out", str(tmp_path / "s.NPZ")]
    assert main(sample) == 0
    assert (tmp_path / "s.NPZ").is_file() and not (tmp_path / "s.NPZ.npz").exists()
    assert f"wrote {tmp_path / 's.NPZ'}" in capsys.readouterr().out
    assert main(sample) == 2  # an existing --out is not replaced silently
    assert "already exists: pass --overwrite" in capsys.readouterr().err
    assert main([*sample, "--overwrite"]) == 0


def test_qrdqn_sigterm_checkpoints_at_a_step_and_resumes_to_the_same_counters(tmp_path):
    run = tmp_path / "run"
    base = ["qrdqn", "train", "--config", "cartpole", "--device", "cpu", "--set",
            "mlp_hidden=[32, 32]", "--set", "learning_starts=200", "--set",
            "log_every_steps=40", "--set", "save_replay=true"]
    code, err = _kill_when_ready([*base, "--out", str(run), "--total-frames", "10000000"],
                                 lambda: any(r["loss"] for r in _rows(run / "log.csv")))
    assert code == 128 + signal.SIGTERM and "stopped by SIGTERM at frame" in err, err
    assert yaml.safe_load((run / "config.yaml").read_text())["learning_starts"] == 200
    steps = load_checkpoint(run / "checkpoint.pt")["counters"]["steps"]
    assert steps % 8 == 0 and steps >= 200  # a whole vector step of the 8 envs
    total = str(steps + 160)
    assert main([*base, "--out", str(run), "--total-frames", total, "--resume"]) == 0
    assert main([*base, "--out", str(tmp_path / "full"), "--total-frames", total]) == 0
    resumed = load_checkpoint(run / "checkpoint.pt")
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    for key in ("steps", "updates"):
        assert resumed["counters"][key] == full["counters"][key]
    adam = {int(s["step"]) for s in resumed["optimizer"]["state"].values()}
    assert adam == {full["counters"]["updates"]}


def test_wdgrl_sigterm_checkpoints_an_epoch_and_resumes_exactly(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({
        "task": "moons", "angle": 30.0, "methods": ["wdgrl"], "seeds": 1,
        "estimator": {"hidden": [16], "critic_hidden": [8], "lr": 1e-2, "epochs": 100_000,
                      "min_steps": 0},
        "w1_check_samples": 50, "w1_refit_steps": 10}))
    run = tmp_path / "run"
    log = run / "runs" / "moons30" / "wdgrl_seed0.csv"
    base = ["wdgrl", "run", "--config", str(cfg), "--device", "cpu"]
    code, err = _kill_when_ready([*base, "--out", str(run)], lambda: len(_rows(log)) >= 2)
    assert code == 128 + signal.SIGTERM and "stopped by SIGTERM after epoch" in err, err
    assert yaml.safe_load((log.parent / "config.yaml").read_text())["estimator"]["hidden"] == [16]
    epoch = load_checkpoint(log.with_suffix(".pt"))["epoch"]
    assert epoch == len(_rows(log))  # the checkpoint and the log agree: an epoch boundary
    epochs = ["--epochs", str(epoch + 2)]
    assert main([*base, "--out", str(run), *epochs, "--resume"]) == 0
    assert main([*base, "--out", str(tmp_path / "full"), *epochs]) == 0
    report = json.loads((run / "moons30.json").read_text(), parse_constant=_not_json)
    resumed = report["tasks"][0]["methods"]["wdgrl"]
    full = json.loads((tmp_path / "full" / "moons30.json").read_text())
    full = full["tasks"][0]["methods"]["wdgrl"]
    assert resumed["acc"] == full["acc"]
    last = _rows(log)[-1]
    ref = _rows(tmp_path / "full" / "runs" / "moons30" / "wdgrl_seed0.csv")[-1]
    assert len(_rows(log)) == epoch + 2
    for key in ("clf_loss", "w1", "source_val_loss"):
        assert float(last[key]) == pytest.approx(float(ref[key]), rel=1e-5)


def test_rng_state_of_an_older_checkpoint_still_restores():
    torch.manual_seed(3)
    legacy = {"torch_rng": torch.get_rng_state(), "cuda_rng": None}
    expected = torch.rand(2)
    torch.manual_seed(4)
    set_rng_state(legacy.get("rng", legacy))
    assert torch.equal(torch.rand(2), expected)


def test_csv_log_is_mirrored_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from wdist_apps.runtime import CSVLogger

    with CSVLogger(tmp_path / "log.csv", tensorboard="step") as log:
        for step in (1, 2, 3):
            log.log({"step": step, "loss": 1.0 / step, "note": "text"})
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert events.Tags()["scalars"] == ["loss"]
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("loss")] == [
        (1, 1.0), (2, 0.5), (3, 0.3333)]


def test_wdgrl_method_whose_extra_fails_to_import_is_skipped_up_front(monkeypatch, capsys):
    import builtins

    from wdist_apps.runtime import load_config
    from wdist_apps.wdgrl.experiment import WDGRLConfig
    from wdist_apps.wdgrl.report import _available

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):  # installed but broken: an ImportError, not "not found"
        if name.split(".")[0] in ("skada", "skorch"):
            raise ImportError(f"cannot import name 'X' from {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    cfg = load_config(WDGRLConfig, None, {"methods": ["source_only", "skada_dann"]})
    assert _available(cfg).methods == ["source_only"]
    assert "skipping skada_dann: it needs the bench extra" in capsys.readouterr().out
