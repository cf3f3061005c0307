"""The fixed-work Sinkhorn path (``tol=None`` with a given ``diameter``): GeomLoss's value on the
same schedule, no host sync, and a graph that ``torch.compile(fullgraph=True)`` captures."""

import math

import pytest
import torch
import torch.utils._python_dispatch as dispatch

import wdist


def _clouds(n=60, m=50, d=3):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, d, generator=g), torch.rand(m, d, generator=g) + 0.2


@pytest.mark.parametrize("backend", ["dense", "online"])
@pytest.mark.parametrize("debias", [False, True])
def test_fixed_work_matches_geomloss_on_the_same_schedule(backend, debias):
    geomloss = pytest.importorskip("geomloss")
    x, y = _clouds()
    blur, diameter = 0.1, 2.0
    ours = wdist.sinkhorn(x.double(), y.double(), blur=blur, debias=debias, tol=None,
                          diameter=diameter, scaling=0.9, backend=backend)
    # GeomLoss's p = 2 cost is |x - y|^2 / 2: blur and diameter / sqrt(2), twice its value
    loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=blur / math.sqrt(2), debias=debias,
                                scaling=0.9, diameter=diameter / math.sqrt(2),
                                backend="tensorized")
    assert ours.item() == pytest.approx(2 * loss(x.double(), y.double()).item(), rel=1e-6)


@pytest.mark.parametrize("backend", ["dense", "online"])
def test_fixed_work_value_is_the_converged_value(backend):
    x, y = _clouds()
    converged = wdist.sinkhorn(x.double(), y.double(), blur=0.2, debias=False, tol=1e-7,
                               max_iter=10_000)
    # the schedule ends at the final eps without a test: its error falls as scaling -> 1
    fixed = wdist.sinkhorn(x, y, blur=0.2, debias=False, tol=None, diameter=2.0, scaling=0.95,
                           backend=backend)
    assert fixed.item() == pytest.approx(converged.item(), rel=1e-3)


class _CountSyncs(dispatch.TorchDispatchMode):
    """Counts the reads of a tensor's value into Python (``.item()``, ``float()``, ``bool()``,
    ``int()`` all dispatch ``aten::_local_scalar_dense``; ``tolist`` is patched)."""

    def __enter__(self):
        self.count, self._tolist = 0, torch.Tensor.tolist

        def tolist(t):
            self.count += 1
            return self._tolist(t)

        torch.Tensor.tolist = tolist
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("backend", ["dense", "online"])
def test_fixed_work_makes_no_host_sync(backend):
    x, y = _clouds(30, 20)
    x.requires_grad_(True)
    with wdist.set_validation(False), _CountSyncs() as syncs:
        wdist.sinkhorn(x, y, blur=0.2, tol=None, diameter=1.5, backend=backend).backward()
    assert syncs.count == 0
    with _CountSyncs() as syncs:  # the default path: the checks and stopping tests do sync
        wdist.sinkhorn(x, y, blur=0.2, backend=backend)
    assert syncs.count > 0


def test_fixed_work_compiles_to_one_graph():
    x, y = _clouds(30, 20)

    def loss(x, y):
        return wdist.sinkhorn_solve(x, y, blur=0.2, debias=False, tol=None, diameter=1.0,
                                    scaling=0.5).value

    with wdist.set_validation(False):
        compiled = torch.compile(loss, fullgraph=True, backend="eager")
        assert compiled(x, y).item() == pytest.approx(loss(x, y).item(), rel=1e-6)


@pytest.mark.slow
def test_fixed_work_compiles_with_inductor(inductor_cpu):
    x, y = _clouds(30, 20)

    def loss(x, y):
        return wdist.sinkhorn(x, y, blur=0.2, tol=None, diameter=1.0, scaling=0.5)

    with wdist.set_validation(False):
        compiled = torch.compile(loss, fullgraph=True)
        assert compiled(x, y).item() == pytest.approx(loss(x, y).item(), rel=1e-5)
