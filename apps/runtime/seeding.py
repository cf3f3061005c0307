"""Seed every generator a run touches; save and restore their states (CPU and every CUDA device)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global generators' states: Python's, NumPy's, torch's CPU one and every CUDA
    device's (when CUDA has been initialised), for a checkpoint. Under torchrun, every rank's
    (a collective: all ranks call it; :func:`set_rng_state` gives each rank its own back)."""
    from wdist_apps.runtime.distributed import gather

    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    return gather({"python": random.getstate(), "numpy": np.random.get_state(),
                   "torch": torch.get_rng_state(), "cuda": cuda})


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only where those devices exist here,
    whatever ``map_location`` the checkpoint was read with: the states must be CPU tensors).
    A checkpoint written before this format (``torch_rng``, ``python_rng``, ``cuda_rng`` keys)
    is read too: pass ``checkpoint.get("rng", checkpoint)``. The states of a distributed run
    hold one entry per rank: each rank takes its own (one process: rank 0's)."""
    from wdist_apps.runtime.distributed import own

    state = own(state)
    if "torch" not in state and "torch_rng" in state:
        cuda = state.get("cuda_rng")
        state = {"torch": state["torch_rng"], "python": state.get("python_rng"),
                 "cuda": [cuda] if isinstance(cuda, torch.Tensor) else cuda or []}
    if state.get("python") is not None:
        random.setstate(state["python"])
    if state.get("numpy") is not None:
        np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        for i in range(min(len(cuda), torch.cuda.device_count())):
            torch.cuda.set_rng_state(cuda[i].cpu(), i)
