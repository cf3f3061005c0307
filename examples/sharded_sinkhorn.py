"""Sinkhorn divergence between two point clouds sharded over the ranks of a torchrun job.

    torchrun --nproc-per-node 2 examples/sharded_sinkhorn.py --points 20000

Each rank makes (or, with ``--x`` / ``--y``, memory-maps from ``.npy`` files of shape
``[n, d]``) only its own contiguous slice of each cloud, computes the divergence with
``wdist.distributed.sinkhorn`` and the gradient for its slice of ``x``; rank 0 prints the value,
the time and the gradient's norm. ``--check`` (small clouds only) also solves the whole problem
in one process on every rank and prints the difference. CPU tensors use gloo, CUDA tensors NCCL
(one GPU per rank: ``LOCAL_RANK``).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.distributed as dist

import wdist
import wdist.distributed


def shard(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous slice of ``n`` points (the first ``n % world`` ranks get one
    more)."""
    return slice(n * rank // world, n * (rank + 1) // world)


def load(path: str | None, n: int, d: int, shift: float, seed: int, part: slice) -> np.ndarray:
    if path is not None:
        return np.asarray(np.load(path, mmap_mode="r")[part], dtype=np.float32)
    rng = np.random.default_rng(seed)  # the same cloud on every rank; keep only the slice
    return (rng.random((n, d), dtype=np.float32) + shift)[part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000, help="points per cloud")
    parser.add_argument("--dim", type=int, default=3)
    parser.add_argument("--x", help=".npy file of x [n, d] (default: uniform in a cube)")
    parser.add_argument("--y", help=".npy file of y [m, d] (default: the cube shifted by 0.2)")
    parser.add_argument("--blur", type=float, default=0.05)
    parser.add_argument("--check", action="store_true", help="compare with one process")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda") if cuda else torch.device("cpu")
    n = np.load(args.x, mmap_mode="r").shape[0] if args.x else args.points
    m = np.load(args.y, mmap_mode="r").shape[0] if args.y else args.points
    x = torch.from_numpy(load(args.x, n, args.dim, 0.0, 0, shard(n, rank, world))).to(device)
    y = torch.from_numpy(load(args.y, m, args.dim, 0.2, 1, shard(m, rank, world))).to(device)
    x.requires_grad_()

    start = time.perf_counter()
    value = wdist.distributed.sinkhorn(x, y, blur=args.blur)
    value.backward()  # every rank: the backward passes the shards round again
    seconds = time.perf_counter() - start
    grad_sq = x.grad.pow(2).sum()
    dist.all_reduce(grad_sq)
    if rank == 0:
        print(f"{world} ranks, {n} x {m} points: S_eps = {value.item():.6f} in {seconds:.2f} s; "
              f"|grad x| = {grad_sq.sqrt().item():.4g}")
    if args.check:
        full_x = torch.from_numpy(load(args.x, n, args.dim, 0.0, 0, slice(None))).to(device)
        full_y = torch.from_numpy(load(args.y, m, args.dim, 0.2, 1, slice(None))).to(device)
        one = wdist.sinkhorn(full_x, full_y, blur=args.blur, backend="online")
        if rank == 0:
            print(f"one process: {one.item():.6f} (difference {abs(one - value).item():.2g})")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
