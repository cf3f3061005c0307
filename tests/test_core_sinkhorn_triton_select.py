"""The online strategy picks the fused Triton soft-min on CUDA when triton is there, and the
torch soft-min otherwise or after a failure; checked on CPU (the interpreter runs the kernels)."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import wdist

online = importlib.import_module("wdist.sinkhorn.online")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def triton_on_cpu(monkeypatch):
    """Select as on a CUDA machine with triton, for CPU tensors."""
    monkeypatch.setattr(online, "_TRITON_DEVICES", {"cpu"})
    monkeypatch.setattr(online, "_triton", {})
    monkeypatch.setattr(online, "triton_available", lambda device: True)


def test_cpu_uses_the_torch_softmin_by_default():
    assert online.softmin_factory(torch.zeros(1, 4, 3)) is online._online_softmin


def test_selection_rules(triton_on_cpu, monkeypatch):
    assert online.softmin_factory(torch.zeros(1, 4, 3)) is online._triton_online_softmin
    wide = torch.zeros(1, 4, online.TRITON_MAX_DIM + 1)
    assert online.softmin_factory(wide) is online._online_softmin
    monkeypatch.setattr(online, "triton_available", lambda device: False)  # not installed
    assert online.softmin_factory(torch.zeros(1, 4, 3)) is online._online_softmin


def test_a_failed_launch_falls_back_once_with_a_warning(triton_on_cpu, monkeypatch, rng):
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("no GPU here")

    monkeypatch.setattr(online, "triton_softmin", broken)
    x, y = torch.tensor(rng.random((20, 2))), torch.tensor(rng.random((15, 2)))
    with pytest.warns(RuntimeWarning, match="Triton soft-min failed"):
        val = wdist.sinkhorn(x, y, blur=0.3, backend="online")
    assert len(calls) == 1 and online._triton["failed"]
    monkeypatch.setattr(online, "_TRITON_DEVICES", set())
    assert val.item() == pytest.approx(wdist.sinkhorn(x, y, blur=0.3, backend="online").item(),
                                       rel=1e-12)


def _run_child(path: str) -> None:
    """In a child with ``TRITON_INTERPRET=1``: one online solve with value and gradient through
    the selected Triton soft-min, then the same through the torch one."""
    online._TRITON_DEVICES.add("cpu")
    used = []
    kernel = online.triton_softmin
    online.triton_softmin = lambda *a, **k: used.append(1) or kernel(*a, **k)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 40, 2, generator=gen, dtype=torch.float64)
    y = torch.rand(1, 30, 2, generator=gen, dtype=torch.float64) + 0.2
    out = {}
    for name in ("triton", "torch"):
        xg = x.clone().requires_grad_(True)
        val = wdist.sinkhorn(xg, y, blur=0.3, scaling=0.5, tol=1e-6, backend="online")
        val.sum().backward()
        out[name] = (val.detach(), xg.grad)
        out[f"{name}_calls"] = len(used)
        online._TRITON_DEVICES.clear()
    torch.save(out, path)


def test_triton_softmin_in_the_solver_matches_torch_under_the_interpreter(tmp_path):
    pytest.importorskip("triton", reason="the triton extra is not installed")
    path = tmp_path / "solve.pt"
    code = f"import test_core_sinkhorn_triton_select as t; t._run_child({str(path)!r})"
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = torch.load(path)
    assert out["triton_calls"] > 0 and out["torch_calls"] == out["triton_calls"]
    assert torch.allclose(out["triton"][0], out["torch"][0], rtol=1e-9)
    assert torch.allclose(out["triton"][1], out["torch"][1], rtol=1e-7, atol=1e-12)
