"""Data-parallel training under ``torchrun``: one process per device, gradients all-reduced.

Started by ``torchrun`` (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``), every trainer runs data parallel with
:class:`torch.nn.parallel.DistributedDataParallel`; without those variables (or with
``WORLD_SIZE=1``) each helper here is the identity and a run is exactly the one-process run.

What each rank does, and what the harness does for it once:

- the process group starts on the first collective (gloo for CPU tensors, NCCL for CUDA ones)
  and ends at exit; :func:`device_for` maps ``cuda`` to ``cuda:LOCAL_RANK``;
- :func:`wrap` puts a module in DDP (gradients averaged over ranks in ``backward``);
  :func:`shard` is the rank's share of the global batch (``batch_size / WORLD_SIZE``);
- :func:`rank_seed` derives each rank's data and noise seed from the run's seed (rank 0 of
  ``R > 1`` processes too, so that no two ranks draw the same stream); ``rng_state`` /
  ``set_rng_state`` (:mod:`.seeding`) save every rank's generators in the checkpoint through
  :func:`gather` and give each rank its own back on resume through :func:`own`;
- rank 0 alone (:func:`is_main`) writes the CSV log, the config snapshot and the checkpoint
  (:mod:`.logging`, :mod:`.run`, :mod:`.checkpoint` check it) and the trainers' figures and
  metrics; every rank reads the checkpoint on ``--resume`` (a folder all nodes see);
- :func:`any_rank` makes a stop (signal, time limit) a decision all ranks share.

Example (two processes on one machine; see docs/ddp.md for several machines)::

    torchrun --nproc-per-node 2 -m wdist_apps.cli wgan train --config mnist --out runs/ddp
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
_RANKS = "per_rank"  # the key of a record that holds one entry per rank (see gather)


def world_size() -> int:
    """The number of processes of the run (``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank in ``[0, world_size())`` (``RANK``; 0 without torchrun)."""
    return int(os.environ.get("RANK", "0")) if world_size() > 1 else 0


def local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``): the CUDA device it uses."""
    return int(os.environ.get("LOCAL_RANK", "0")) if world_size() > 1 else 0


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """True on rank 0 (and in a one-process run): the process that writes files."""
    return rank() == 0


def init() -> None:
    """Join the process group if the run is distributed and it is not joined yet (every helper
    that communicates calls this); destroyed at exit. Idempotent; a no-op in one process."""
    import torch
    import torch.distributed as dist

    if not is_distributed() or dist.is_initialized():
        return
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"WORLD_SIZE={world_size()} but {name} is not set: start the run "
                             "with torchrun (see docs/ddp.md)")
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, rank=rank(), world_size=world_size())
    atexit.register(teardown)


def teardown() -> None:
    """Leave the process group (at exit; harmless when none was joined)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(device: torch.device) -> torch.device:
    """``cuda`` (no index) -> ``cuda:LOCAL_RANK``, made current, when distributed; else as is."""
    import torch

    if is_distributed() and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    return device


def rank_seed(seed: int) -> int:
    """The seed of this rank's data and noise streams: ``seed`` in one process; with ``R > 1``
    processes a distinct, deterministic 32-bit seed per ``(seed, rank)`` (NumPy's SeedSequence,
    so that nearby seeds and ranks do not give related streams; 32 bits: NumPy's legacy seed
    takes no more)."""
    if not is_distributed():
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, rank()]).generate_state(1)[0])


def seed_rank_streams(seed: int) -> None:
    """Reseed the global generators with :func:`rank_seed` when distributed (call it after the
    models are built, so that every rank starts from the same weights); a no-op in one process,
    whose streams go on as before."""
    if is_distributed():
        from wdist_apps.runtime.seeding import seed_everything

        seed_everything(rank_seed(seed))


def shard(n: int, name: str = "batch_size") -> int:
    """This rank's share of a global batch of ``n`` (``n`` itself in one process); a
    ``ValueError`` naming ``name`` when ``n`` does not split evenly over the ranks (unequal
    shards would weigh the ranks' samples unequally in the averaged gradient)."""
    r = world_size()
    if n % r:
        raise ValueError(f"{name}={n} must be a multiple of the number of processes ({r}): each "
                         f"takes an equal shard of the global batch (e.g. {name}={n - n % r or r})")
    return n // r


def wrap(module: torch.nn.Module, device: torch.device | None = None) -> torch.nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` when distributed (its
    parameters and buffers broadcast from rank 0, its gradients averaged in ``backward``), else
    ``module`` itself.

    Train through the wrapper, and evaluate, sample and save through ``module`` (the wrapper's
    forward communicates, so a forward on rank 0 alone would wait for ever). A loss whose only
    path to the parameters is ``torch.autograd.grad`` (a gradient penalty alone) is *not*
    all-reduced by DDP (pytorch issue 47562): keep a plain forward in the same loss, as
    ``wdist.WassersteinCritic.step`` does."""
    if not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    init()
    ids = [device.index] if device is not None and device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def sync_grads(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Average the gradients of ``optimizer``'s parameters over the ranks before each of its
    steps (a step pre-hook: one flat ``all_reduce`` per step, CleanRL's multi-GPU pattern),
    when distributed; ``optimizer`` unchanged in one process. Unlike DDP it needs no wrapper
    and all-reduces whatever made the gradients (a penalty built with ``torch.autograd.grad``
    alone included); every rank must step with gradients for the same parameters."""
    if is_distributed():
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: average_grads(
            p for group in opt.param_groups for p in group["params"]))
    return optimizer


def average_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Average the ``.grad`` of ``params`` over the ranks in place (one flat ``all_reduce``;
    parameters without a gradient are skipped); a no-op in one process. Call it between
    ``backward`` and gradient clipping, so that every rank clips the same averaged gradient."""
    if not is_distributed():
        return
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    init()
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world_size()
    for g, avg in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        g.copy_(avg)


def split(t: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous part of ``t``'s rows (``t`` itself in one process): a global batch
    of indices split over the ranks (parts differ by at most one row)."""
    return t.tensor_split(world_size())[rank()] if is_distributed() else t


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (``module`` itself when it is not one)."""
    from torch.nn.parallel import DistributedDataParallel

    return module.module if isinstance(module, DistributedDataParallel) else module


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (a stop must be a shared decision, or the
    ranks that go on wait for ever); ``flag`` in one process."""
    if not is_distributed():
        return flag
    import torch
    import torch.distributed as dist

    init()
    t = torch.tensor([int(flag)])  # a CPU tensor: gloo carries it whichever the devices
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather(obj: T) -> T | dict[str, list[T]]:
    """Every rank's ``obj`` as ``{"per_rank": [obj_0, obj_1, ...]}`` on every rank (a
    collective: all ranks call it), for a checkpoint; ``obj`` itself in one process."""
    if not is_distributed():
        return obj
    import torch.distributed as dist

    init()
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return {_RANKS: out}


def own(record: Any) -> Any:
    """This rank's entry of a :func:`gather` record (a record from ``R`` ranks read by one
    process: rank 0's); anything else as is. A ``ValueError`` when ``R`` differs from this
    run's ``WORLD_SIZE > 1``: the streams of ``R`` ranks cannot be dealt to another number."""
    if not (isinstance(record, dict) and _RANKS in record):
        return record
    entries = record[_RANKS]
    if not is_distributed():
        return entries[0]
    if len(entries) != world_size():
        raise ValueError(f"the checkpoint holds the random streams of {len(entries)} processes; "
                         f"resume it with {len(entries)} (torchrun --nproc-per-node "
                         f"{len(entries)}) or with one, not {world_size()}")
    return entries[rank()]


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` on rank 0, then let every rank go on with its result (or raise its error):
    for a check-then-write that must not race with rank 0's first files (the run folder's
    "already holds a run" check). ``fn(*args, **kwargs)`` in one process."""
    if not is_distributed():
        return fn(*args, **kwargs)
    import torch.distributed as dist

    init()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", fn(*args, **kwargs))
        except Exception as err:  # noqa: BLE001 - handed to every rank, raised there
            box[0] = ("error", err)
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if is_distributed():
        import torch.distributed as dist

        init()
        dist.barrier()

