"""WDGRL: Wasserstein Distance Guided Representation Learning for domain adaptation.

Shen, Qu, Zhang, Yu, AAAI 2018. ``WDGRLClassifier(...).fit(Xs, ys, Xt).predict(X)``; the
baselines (source-only, DANN, Deep CORAL) run through the same estimator (``method=...``).
"""

from apps.wdgrl.estimator import WDGRLClassifier

__all__ = ["WDGRLClassifier"]
