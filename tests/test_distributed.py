"""The sharded soft-min and Sinkhorn on 2 gloo processes, float64, against one process.

One spawn runs every case (about 35 s on this shared 2-core box); each rank builds the full
clouds from a seed, keeps its shard, and checks its own part of the result against the
single-process reference (``torch.logsumexp`` on the full cost matrix; ``wdist.sinkhorn`` on the
concatenated clouds)."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
TOL = 1e-10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(t: torch.Tensor, bounds: list[int], rank: int, dim: int) -> torch.Tensor:
    return t.narrow(dim, bounds[rank], bounds[rank + 1] - bounds[rank])


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    err = (got - want).abs().max().item() if got.numel() else 0.0
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert err <= TOL * max(1.0, want.abs().max().item() if want.numel() else 0), (
        f"{what}: max error {err:.3g}"
    )


def _softmin_cases(rank: int) -> None:
    from wdist._cost import cost_matrix
    from wdist.distributed import ring_softmin

    gen = torch.Generator().manual_seed(1)
    n, m, d, eps = 11, 9, 3, 0.3
    x = torch.randn(2, n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(2, m, d, generator=gen, dtype=torch.float64) + 0.5
    h = torch.randn(2, m, generator=gen, dtype=torch.float64)
    h[0, 2] = h[1, 8] = -math.inf  # zero weights
    h[1, :4] = -math.inf  # batch entry 1: no mass at all on rank 0's columns
    for p, bx, by in ((2, [0, 7, 11], [0, 4, 9]), (1, [0, 0, 11], [0, 9, 9])):
        xs = _rows(x, bx, rank, 1).clone().requires_grad_()
        f = ring_softmin(xs, _rows(y, by, rank, 1), _rows(h, by, rank, 1), eps, p=p, chunk=3)
        xr = x.clone().requires_grad_()
        want = -eps * torch.logsumexp(h.unsqueeze(1) - cost_matrix(xr, y, p) / eps, -1)
        _close(f, _rows(want, bx, rank, 1).detach(), f"softmin p={p}")
        weights = torch.linspace(0.5, 1.5, 2 * n, dtype=torch.float64).reshape(2, n)
        (f * _rows(weights, bx, rank, 1)).sum().backward()
        (gx,) = torch.autograd.grad((want * weights).sum(), xr)
        _close(xs.grad, _rows(gx, bx, rank, 1), f"softmin gradient p={p}")


SINKHORN_CASES = [
    # (name, batch, n bounds, m bounds, weighted, options): uneven shards, an empty one on each
    # side somewhere, zero weights on both sides
    ("debiased, weighted", None, [0, 9, 13], [0, 0, 10], True, dict(blur=0.1)),
    ("unbalanced debiased", None, [0, 12, 12], [0, 3, 10], False, dict(blur=0.1, reach=0.5)),
    ("unbalanced OT, weighted", None, [0, 5, 13], [0, 6, 10], True,
     dict(blur=0.2, reach=1.0, debias=False)),
    ("OT p=1, batched", 2, [0, 4, 13], [0, 10, 10], True, dict(blur=0.2, p=1, debias=False)),
]


def _sinkhorn_cases(rank: int) -> None:
    import wdist
    from wdist.distributed import sinkhorn

    for name, bsz, bx, by, weighted, opts in SINKHORN_CASES:
        gen = torch.Generator().manual_seed(2)
        lead = () if bsz is None else (bsz,)
        x = torch.randn(*lead, bx[-1], 2, generator=gen, dtype=torch.float64)
        y = torch.randn(*lead, by[-1], 2, generator=gen, dtype=torch.float64) * 0.7 + 0.4
        a = b = None
        if weighted:
            a = torch.rand(*lead, bx[-1], generator=gen, dtype=torch.float64)
            b = torch.rand(*lead, by[-1], generator=gen, dtype=torch.float64)
            a[..., 3] = 0.0
            b[..., -1] = 0.0
        full = [t if t is None else t.clone().requires_grad_() for t in (x, y, a, b)]
        cost, f, g = wdist.sinkhorn(*full, backend="online", return_potentials=True, **opts)
        grads = torch.autograd.grad(cost.sum(), [t for t in full if t is not None])
        dim = len(lead)
        mine = [
            None if t is None else _rows(t, bnd, rank, dim).clone().requires_grad_()
            for t, bnd in zip((x, y, a, b), (bx, by, bx, by))
        ]
        c2, f2, g2 = sinkhorn(*mine, return_potentials=True, **opts)
        _close(c2, cost.detach(), f"{name}: value")
        _close(f2, _rows(f.detach(), bx, rank, dim), f"{name}: f")
        _close(g2, _rows(g.detach(), by, rank, dim), f"{name}: g")
        got = torch.autograd.grad(c2.sum(), [t for t in mine if t is not None])
        for gm, gf, bnd, what in zip(got, grads, (bx, by, bx, by), "xyab"):
            _close(gm, _rows(gf, bnd, rank, dim), f"{name}: gradient in {what}")

    # no autograd: the extrapolation inside the solve; and the stopping rule's warning
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(10, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(7, 2, generator=gen, dtype=torch.float64)
    want = wdist.sinkhorn(x, y, backend="online", blur=0.1)
    got = sinkhorn(x[5 * rank : 5 * rank + 5], y[4 * rank : 4 + 3 * rank], blur=0.1)
    _close(got, want, "no autograd")
    with pytest.warns(RuntimeWarning, match="did not reach tol"):
        sinkhorn(x[5 * rank : 5 * rank + 5], y, blur=0.01, max_iter=1)

    # a bad shard on one rank is an error on every rank (not a hang)
    with pytest.raises(ValueError, match="rank 1: a has negative entries"):
        sinkhorn(x[:3], y, a=torch.full((3,), -1.0 if rank else 1.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="same options"):
        sinkhorn(x, y, blur=0.1 + rank)
    with pytest.raises(ValueError, match="same grad"):  # the backward is collective too
        sinkhorn(x[:3].clone().requires_grad_(rank == 0), y)


def _worker(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        _softmin_cases(rank)
        _sinkhorn_cases(rank)
    finally:
        dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_two_gloo_ranks_equal_one_process():
    mp.spawn(_worker, args=(_free_port(),), nprocs=WORLD, join=True)


def test_options_default_as_in_single_process():
    import inspect

    import wdist
    from wdist.distributed import sinkhorn

    ours = inspect.signature(sinkhorn).parameters
    for name, param in inspect.signature(wdist.sinkhorn).parameters.items():
        if name in ours:
            assert ours[name].default == param.default, name
