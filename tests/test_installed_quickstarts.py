"""From a wheel, outside the checkout: every app's quickstart with built-in config names.

The wheel is built from this checkout into a temporary venv that borrows this interpreter's
installed dependencies (a ``.pth`` line naming its site-packages, so torch is not installed
again; the ``.pth`` files there, such as an editable install's, are not run), and each command
runs from an unrelated folder with a tiny budget.
"""

import os
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

QUICKSTARTS = [
    ["wdgrl", "run", "--config", "moons50", "--seeds", "1", "--epochs", "1",
     "--methods", "source_only", "wdgrl", "--set", "hidden=[16]", "--set", "critic_hidden=[8]",
     "--set", "w1_check_samples=50", "--set", "w1_refit_steps=10", "--device", "cpu"],
    ["wgan", "train", "--config", "toy_gp", "--steps", "3", "--set", "width=16",
     "--set", "eval_samples=50", "--out", "runs/wgan", "--device", "cpu"],
    ["wgan", "sample", "--checkpoint", "runs/wgan/checkpoint.pt", "--out", "toy.png"],
    ["qrdqn", "train", "--config", "cartpole", "--total-frames", "400", "--set",
     "learning_starts=200", "--set", "mlp_hidden=[16]", "--device", "cpu"],
    ["qrdqn", "pqn", "--config", "pqn-cartpole", "--total-frames", "64", "--set", "num_envs=4",
     "--set", "num_steps=8", "--set", "num_minibatches=2", "--set", "num_epochs=1",
     "--device", "cpu"],
    ["qrdqn", "eval", "--checkpoint", "runs/qrdqn/checkpoint.pt", "--episodes", "2",
     "--device", "cpu"],
    ["wmd", "distance", "--embeddings", "vectors.txt", "fire in the city", "blaze in town"],
]


def _run(cmd: list, cwd: Path, env: dict) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{cmd}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_wheel_quickstarts_run_from_an_unrelated_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", WDIST_NO_PROGRESS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", tmp_path / "dist", ROOT], tmp_path, env)
    wheel = next((tmp_path / "dist").glob("wdist-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, env)
    own = next(venv.glob("lib/python*/site-packages"))
    (own / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", wheel], tmp_path,
         env)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([venv / "bin" / "python", "-c",
                  "import wdist, wdist_apps; print(wdist.__file__, wdist_apps.__file__)"],
                 work, env)
    assert str(ROOT) not in where and str(venv) in where  # the installed copy, not the checkout
    (work / "vectors.txt").write_text(
        "6 3\nfire 1 0 0\nblaze 0.9 0.1 0\ncity 0 1 0\ntown 0.1 0.9 0\nin 0 0 1\nthe 0 0 1\n")
    wdist = venv / "bin" / "wdist"
    assert "moons50" in _run([wdist, "wdgrl", "run", "--help"], work, env)
    for cmd in QUICKSTARTS:
        _run([wdist, *cmd], work, env)
    assert (work / "runs" / "wdgrl" / "moons50.json").is_file()
    assert (work / "toy.png").is_file() and (work / "runs" / "pqn" / "checkpoint.pt").is_file()
