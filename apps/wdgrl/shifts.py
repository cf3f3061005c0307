"""A generated family of dataset shifts on Gaussian blobs, for testing and benchmarking DA methods.

Each task is drawn from a seed: ``k`` Gaussian classes (unit spread, centres in a box of half-width
``box``) in ``d`` dimensions form the source; the target is a fresh sample of the same classes
pushed through a shift of one *kind*:

- ``affine2d`` / ``affine10d``: ``x -> A x + b`` with ``A = R · diag(s) · (I + shear)``: a random
  rotation ``R`` (up to 45°), scales ``s`` log-uniform in [1/2, 2], a strictly upper-triangular
  shear with entries in [-1, 1]; ``b`` a random direction of length 2-4 cluster spreads.
- ``rotation2d``: a rotation about the data centre by 50°-90° (either sign).
- ``scaling10d``: per-feature scales log-uniform in [1/3, 3] and a translation (as above).
- ``class_shift2d`` / ``class_shift10d``: each class moves by its own random vector of length
  1-2.5 spreads (a class-conditional shift no single map of the inputs need undo).
- ``label_shift2d``: target class proportions drawn from a Dirichlet(1, ..., 1) (each at least
  5 %), plus a translation of 2-4 spreads.

Every number comes from ``numpy.random.default_rng(seed)`` for the task; nothing is set by hand
per task. Use one set of seeds to choose a method's settings and another to report
(:data:`TUNE_SEEDS`, :data:`REPORT_SEEDS`).

Example::

    >>> from wdist_apps.wdgrl.shifts import make_shift_task
    >>> task = make_shift_task("affine2d", seed=100)
    >>> task.Xs.shape, task.Xt.shape, task.Xt_test.shape
    ((300, 2), (300, 2), (300, 2))
"""

from __future__ import annotations

import numpy as np

from wdist_apps.wdgrl.data import DomainTask

KINDS = ("affine2d", "affine10d", "rotation2d", "scaling10d", "class_shift2d", "class_shift10d",
         "label_shift2d")
TUNE_SEEDS = tuple(range(1000, 1002))  # chose standardize, lr and min_steps
REPORT_SEEDS = tuple(range(100, 103))


def make_shift_task(
    kind: str, seed: int, *, n: int = 300, n_classes: int = 3, box: float = 5.0,
) -> DomainTask:
    """Source ``[n, d]``, target adaptation set ``[n, d]`` and target test set ``[n, d]``.

    kind : one of :data:`KINDS`.  seed : seeds everything about the task.
    n : samples per set.  n_classes : number of blobs.  box : centres uniform in [-box, box]^d.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    d = 10 if kind.endswith("10d") else 2
    centres = rng.uniform(-box, box, (n_classes, d))
    prop_t = np.full(n_classes, 1.0 / n_classes)
    if kind == "label_shift2d":
        prop_t = 0.05 + (1 - 0.05 * n_classes) * rng.dirichlet(np.ones(n_classes))
    Xs, ys = _blobs(centres, np.full(n_classes, 1.0 / n_classes), n, rng)
    Xt, yt = _blobs(centres, prop_t, 2 * n, rng)
    shift = _shift(kind, rng, d, n_classes, Xs.mean(0))
    Xt = shift(Xt, yt)
    f32 = np.float32
    return DomainTask(f"{kind}_s{seed}", Xs.astype(f32), ys, Xt[:n].astype(f32), yt[:n],
                      Xt[n:].astype(f32), yt[n:])


def _blobs(centres, prop, n, rng) -> tuple[np.ndarray, np.ndarray]:
    y = rng.choice(len(centres), size=n, p=prop / prop.sum())
    return centres[y] + rng.standard_normal((n, centres.shape[1])), y.astype(np.int64)


def _translation(rng, d, lo=2.0, hi=4.0) -> np.ndarray:
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v) * rng.uniform(lo, hi)


def _rotation(rng, d, max_angle=None) -> np.ndarray:
    if d == 2:
        t = np.deg2rad(rng.uniform(-max_angle, max_angle))
        return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _shift(kind, rng, d, k, centre):
    if kind.startswith("affine"):
        shear = np.triu(rng.uniform(-1, 1, (d, d)), 1)
        A = _rotation(rng, d, 45.0) @ np.diag(np.exp(rng.uniform(np.log(0.5), np.log(2), d)))
        A = A @ (np.eye(d) + shear)
        b = _translation(rng, d)
        return lambda X, y: X @ A.T + b
    if kind == "rotation2d":
        t = np.deg2rad(rng.uniform(50, 90) * rng.choice([-1, 1]))
        R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        return lambda X, y: (X - centre) @ R.T + centre
    if kind == "scaling10d":
        s = np.exp(rng.uniform(np.log(1 / 3), np.log(3), d))
        b = _translation(rng, d)
        return lambda X, y: X * s + b
    if kind.startswith("class_shift"):
        moves = np.stack([_translation(rng, d, 1.0, 2.5) for _ in range(k)])
        return lambda X, y: X + moves[y]
    b = _translation(rng, d)  # label_shift2d
    return lambda X, y: X + b
