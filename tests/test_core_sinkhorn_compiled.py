"""The torch.compile'd online soft-min (used on CUDA) agrees with the eager one, checked on CPU."""

import importlib

import pytest
import torch

import wdist

sk = importlib.import_module("wdist.sinkhorn.online")  # the online soft-min's module


@pytest.fixture
def compiled_on_cpu(monkeypatch, inductor_cpu):
    monkeypatch.setattr(sk, "_COMPILE_DEVICES", {"cpu"})
    monkeypatch.setattr(sk, "_fused", {})
    yield
    assert not sk._fused.get("failed"), "torch.compile failed: the test ran the eager path"


def _value_and_grads(x, y, a, p):
    x = x.clone().requires_grad_(True)
    y = y.clone().requires_grad_(True)
    a = a.clone().requires_grad_(True)
    val = wdist.sinkhorn(x, y, a=a, p=p, blur=0.1, backend="online")
    return (val.detach(), *torch.autograd.grad(val.sum(), (x, y, a)))


@pytest.mark.slow
@pytest.mark.parametrize("p", [2, 1])
def test_compiled_online_matches_eager(rng, compiled_on_cpu, p):
    x = torch.tensor(rng.random((2, 70, 3)))
    y = torch.tensor(rng.random((2, 45, 3)) + 0.3)
    a = torch.rand(2, 70, dtype=torch.float64)
    sk._COMPILE_DEVICES.clear()
    eager = _value_and_grads(x, y, a, p)
    sk._COMPILE_DEVICES.add("cpu")
    compiled = _value_and_grads(x, y, a, p)
    assert "kernels" in sk._fused
    for u, v in zip(eager, compiled):
        torch.testing.assert_close(v, u, rtol=1e-9, atol=1e-11)


def test_compiled_online_compiles_once_across_eps_levels(rng, compiled_on_cpu):
    # Two solves with different sizes and blurs run ~100 soft-mins at ~30 distinct epsilons each;
    # the two forward kernels (row max, row sum-exp) must be compiled once, not once per epsilon.
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    problems = [(60, 50, 0.05), (45, 70, 0.2)]
    for n, m, blur in problems:
        x = torch.tensor(rng.random((n, 2)))
        y = torch.tensor(rng.random((m, 2)) + 0.2)
        sk._COMPILE_DEVICES.clear()
        eager = wdist.sinkhorn(x, y, blur=blur, backend="online")
        sk._COMPILE_DEVICES.add("cpu")
        fused = wdist.sinkhorn(x, y, blur=blur, backend="online")
        torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-8)
    assert "kernels" in sk._fused
    assert counters["stats"]["unique_graphs"] == 2


def test_compile_failure_falls_back_to_eager(rng, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler")

    x = torch.tensor(rng.random((50, 2)), requires_grad=True)
    y = torch.tensor(rng.random((40, 2)))
    ref = wdist.sinkhorn(x.detach(), y, backend="online")
    monkeypatch.setattr(sk, "_COMPILE_DEVICES", {"cpu"})
    monkeypatch.setattr(sk, "_fused", {"kernels": (broken, broken, broken)})
    with pytest.warns(RuntimeWarning, match="torch.compile"):
        val = wdist.sinkhorn(x, y, backend="online")
    assert sk._fused["failed"]
    assert val.item() == ref.item()
    (grad,) = torch.autograd.grad(val, x)
    assert torch.isfinite(grad).all()
