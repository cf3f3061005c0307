"""Classical optimal-transport domain adaptation (POT's ``ot.da``) + one downstream classifier.

The labelled source is transported onto the unlabelled target with a transport map fitted on
``(Xs, Xt)`` (Courty et al. 2017), a classifier is trained on the transported source, and it is
scored on held-out target data. Methods (POT defaults throughout):

- ``ot_emd``: ``ot.da.EMDTransport``, exact OT, barycentric mapping of the source.
- ``ot_sinkhorn``: ``ot.da.SinkhornTransport``, entropic OT (``reg_e = 1``, log-domain).
- ``ot_linear``: ``ot.da.LinearTransport``, the closed-form Gaussian (Monge–Knott) affine map
  between the two domains' means and covariances.

``source_only`` is the same classifier on the untransported source: the reference a method's
gain is measured from. Example::

    >>> from wdist_apps.wdgrl.shifts import make_shift_task
    >>> t = make_shift_task("affine2d", seed=100)
    >>> acc = otda_accuracy("ot_linear", t.Xs, t.ys, t.Xt, t.Xt_test, t.yt_test)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

OT_METHODS = ("ot_emd", "ot_sinkhorn", "ot_linear")
BENCH_ROWS = ("knn_source_only", *OT_METHODS)  # in `wdist wdgrl bench`: k-NN downstream


def logistic_regression() -> Any:
    """The downstream classifier of the generated-shift suite (linear classes)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000)


def k_neighbors() -> Any:
    """The downstream classifier on the feature tasks (moons are not linearly separable)."""
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=5)


def otda_accuracy(
    method: str, Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray, Xt_test: np.ndarray,
    yt_test: np.ndarray, *, classifier: Callable[[], Any] = logistic_regression,
) -> float:
    """Target-test accuracy of ``method`` (``"source_only"`` or one of :data:`OT_METHODS`).

    Inputs are flattened to ``[n, d]``; ``classifier()`` builds a fresh scikit-learn classifier.
    NaN (with a ``RuntimeWarning``) when POT fails or returns non-finite samples.
    """
    import ot

    Xs, Xt, Xt_test = (np.asarray(a, np.float64).reshape(len(a), -1) for a in (Xs, Xt, Xt_test))
    if method == "source_only":
        Z = Xs
    else:
        mapping = {"ot_emd": ot.da.EMDTransport, "ot_sinkhorn": ot.da.SinkhornTransport,
                   "ot_linear": ot.da.LinearTransport}
        if method not in mapping:
            raise ValueError(f"method must be 'source_only' or one of {OT_METHODS}, "
                             f"got {method!r}")
        try:
            Z = mapping[method]().fit(Xs=Xs, Xt=Xt).transform(Xs=Xs)
        except (ValueError, np.linalg.LinAlgError) as err:
            # e.g. LinearTransport's covariance square root on rank-deficient 2352-D images
            warnings.warn(f"{method}: POT failed ({type(err).__name__}: {err}); accuracy NaN",
                          RuntimeWarning, stacklevel=2)
            return float("nan")
        if not np.isfinite(Z).all():
            warnings.warn(f"{method}: POT returned non-finite transported samples; accuracy NaN",
                          RuntimeWarning, stacklevel=2)
            return float("nan")
    return float(classifier().fit(Z, ys).score(Xt_test, yt_test))
