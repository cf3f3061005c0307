"""The external peer: skada's DANN (``skada.deep.DANN``, on skorch) run on *our* split.

Same extractor widths, optimiser (Adam), learning rate, batch size and epochs as our runs; skada
uses its own training loop, domain classifier (Ganin's, 100 units + batch norm) and sampling.
Optional dependency: ``pip install skada skorch`` (the method name ``skada_dann`` in a config).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from wdist_apps.wdgrl.networks import MLPExtractor


class _Net(nn.Module):
    """Extractor + head with the feature layer named ``feat`` (what skada hooks)."""

    def __init__(self, input_shape: tuple[int, ...], hidden: list[int], n_classes: int):
        super().__init__()
        self.feat = MLPExtractor(input_shape, hidden)
        self.head = nn.Linear(self.feat.out_dim, n_classes)

    def forward(self, x: torch.Tensor, sample_weight: Any = None) -> torch.Tensor:
        return self.head(self.feat(x))


def skada_dann(cfg: Any, input_shape: tuple[int, ...], n_classes: int, seed: int,
               device: str | torch.device) -> Any:
    """An unfitted ``skada.deep.DANN`` configured like our DANN runs."""
    try:
        from skada.deep import DANN
    except ImportError as err:
        raise ImportError("method 'skada_dann' needs the peer package: pip install skada "
                          "skorch") from err
    p = cfg.params
    torch.manual_seed(seed)
    return DANN(
        _Net(input_shape, list(p["hidden"]), n_classes), layer_name="feat",
        num_features=p["hidden"][-1], reg=p["dann_weight"], batch_size=p["batch_size"],
        max_epochs=p["epochs"], optimizer=torch.optim.Adam, lr=p["lr"],
        optimizer__weight_decay=p["weight_decay"], train_split=None, verbose=0,
        device=str(device),
    )


def skada_dann_accuracy(cfg: Any, task: Any, seed: int, device: str | torch.device) -> float:
    """Fit skada's DANN on (source labelled, target unlabelled); target-test accuracy."""
    if cfg.params["network"] != "mlp":
        raise ValueError("the skada peer is wired for network='mlp' tasks only")
    from wdist_apps.runtime import resolve_device

    device = resolve_device(device)
    X = np.concatenate([task.Xs, task.Xt]).astype(np.float32)
    y = np.concatenate([task.ys, np.full(len(task.Xt), -1)]).astype(np.int64)
    domain = np.concatenate([np.ones(len(task.Xs)), -2 * np.ones(len(task.Xt))]).astype(np.int64)
    net = skada_dann(cfg, task.Xs.shape[1:], int(task.ys.max()) + 1, seed, device)
    with warnings.catch_warnings():  # skada's domain classifier calls Softmax() without dim
        warnings.simplefilter("ignore", UserWarning)
        net.fit(X, y, sample_domain=domain)
    pred = net.predict(task.Xt_test.astype(np.float32),
                       sample_domain=-2 * np.ones(len(task.Xt_test), np.int64))
    return float((np.asarray(pred) == task.yt_test).mean())
