"""The WDGRL part of ``wdist demo``: moons rotated by 50°, source-only vs WDGRL (≈15 s on CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wdist_apps.runtime.figures import save_figure
from wdist_apps.wdgrl.data import make_moons_task
from wdist_apps.wdgrl.estimator import WDGRLClassifier

DEMO_PARAMS = dict(hidden=(500,), epochs=10, min_steps=0, standardize=None, random_state=0)


def run(out_dir: Path, device: torch.device) -> list[Path]:
    """Train source-only and WDGRL on 50°-rotated moons; plot both decision boundaries.

    Runs single-threaded (restored afterwards): these small networks are fastest that way.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(Path(out_dir), device)
    finally:
        torch.set_num_threads(threads)


def _run(out_dir: Path, device: torch.device) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    task = make_moons_task(50.0)
    models = {m: WDGRLClassifier(method=m, device=device, **DEMO_PARAMS).fit(task.Xs, task.ys,
                                                                             task.Xt)
              for m in ("source_only", "wdgrl")}
    lo = np.minimum(task.Xs.min(0), task.Xt.min(0)) - 0.4
    hi = np.maximum(task.Xs.max(0), task.Xt.max(0)) + 0.4
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = np.c_[gx.ravel(), gy.ravel()].astype(np.float32)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, (method, model) in zip(axes, models.items()):
        acc = model.score(task.Xt_test, task.yt_test)
        ax.contourf(gx, gy, model.predict_proba(grid)[:, 1].reshape(gx.shape), levels=20,
                    cmap="RdBu", alpha=0.35)
        ax.scatter(*task.Xs.T, c=task.ys, cmap="RdBu", s=6, marker="o", label="source")
        ax.scatter(*task.Xt_test.T, c=task.yt_test, cmap="PiYG", s=6, marker="x",
                   label="target (test)")
        ax.set_title(f"{method}: target accuracy {acc:.1%}")
        ax.legend(loc="lower left", fontsize=8)
        print(f"wdgrl demo: {method:>11} target accuracy on 50°-rotated moons: {acc:.1%}")
    fig.suptitle("Two moons, target rotated by 50°: decision boundaries")
    return [save_figure(fig, out_dir / "wdgrl_moons50.png", dpi=110)]
