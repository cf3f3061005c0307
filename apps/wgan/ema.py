"""Exponential moving average of generator weights (Karras et al. 2018; Yazıcı et al. 2019).

Averaged generator weights give visibly smoother samples and lower Fréchet distances than the
last iterate of an oscillating min-max game; the average is used for sampling and evaluation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``ema = d * ema + (1 - d) * theta`` after every generator step, with warm-up
    ``d_t = min(decay, (1 + t) / (10 + t))`` so early averages are not dominated by the init.
    Buffers (batch-norm statistics) are copied, not averaged."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - d)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]
        self.decay = state["decay"]
