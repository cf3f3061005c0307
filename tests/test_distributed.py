"""The sharded soft-min and Sinkhorn on 2 gloo processes, float64, against one process.

One spawn (about 20 s here) runs every case; each rank builds the full clouds from a seed,
keeps its shard, and checks its own part of the result against the single-process reference
(``torch.logsumexp`` on the full cost matrix; ``wdist.sinkhorn`` on the concatenated clouds)."""

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


def _worker(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        _softmin_cases(rank)
    finally:
        dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_two_gloo_ranks_equal_one_process():
    mp.spawn(_worker, args=(_free_port(),), nprocs=WORLD, join=True)
