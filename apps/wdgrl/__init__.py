"""WDGRL: Wasserstein Distance Guided Representation Learning for domain adaptation.

Shen, Qu, Zhang, Yu, AAAI 2018. ``WDGRLClassifier(...).fit(Xs, ys, Xt).predict(X)``; the
baselines (source-only, DANN, Deep CORAL) run through the same estimator (``method=...``).
"""

from __future__ import annotations

from wdist_apps.runtime.lazy import lazy_exports

# names import on first use (PEP 562): `wdist --help` does not load torch or scikit-learn
_WHERE = {
    "WDGRLClassifier": "estimator",
}
__all__ = [
    "WDGRLClassifier",
]


__getattr__ = lazy_exports(__name__, _WHERE)
