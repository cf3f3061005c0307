"""WDGRL: Wasserstein Distance Guided Representation Learning for domain adaptation.

Shen, Qu, Zhang, Yu, AAAI 2018. ``WDGRLClassifier(...).fit(Xs, ys, Xt).predict(X)``; the
baselines (source-only, DANN, Deep CORAL) run through the same estimator (``method=...``).
"""

from __future__ import annotations

import importlib
from typing import Any

# names import on first use (PEP 562): `wdist --help` does not load torch or scikit-learn
_WHERE = {
    "WDGRLClassifier": "estimator",
}
__all__ = [
    "WDGRLClassifier",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'apps.wdgrl' has no attribute {name!r}")
    return getattr(importlib.import_module(f"apps.wdgrl.{_WHERE[name]}"), name)
