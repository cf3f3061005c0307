"""Figures: training curves per method, and a 2-D PCA of source vs target features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wdist_apps.runtime.figures import save_figure

COLORS = {"source_only": "tab:gray", "wdgrl": "tab:red", "dann": "tab:blue",
          "coral": "tab:green", "target_only": "black"}
PANELS = (("clf_loss", "source classification loss"), ("w1", "critic's W1 estimate (WDGRL)"),
          ("target_acc", "target test accuracy (monitor only)"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(result: dict[str, Any], path: Path) -> Path:
    """Per-epoch curves, mean over seeds (shaded: min-max), one line per method."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for (key, title), ax in zip(PANELS, axes):
        for method, r in result["methods"].items():
            hist = r.get("history") or []
            if not hist or all(np.isnan([row[key] for row in hist[0]])):
                continue
            n = min(len(h) for h in hist)
            vals = np.array([[row[key] for row in h[:n]] for h in hist])
            x = np.arange(1, n + 1)
            ax.plot(x, vals.mean(0), color=COLORS.get(method), label=method)
            ax.fill_between(x, vals.min(0), vals.max(0), color=COLORS.get(method), alpha=0.15)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{result['task']}: training curves (mean over seeds, band = min..max)")
    return save_figure(fig, path, dpi=110)


def plot_features(task: Any, models: dict[str, Any], path: Path, n: int = 600) -> Path:
    """PCA of source (o) and target (x) features before (source-only) and after WDGRL."""
    from sklearn.decomposition import PCA

    plt = _plt()
    shown = [m for m in ("source_only", "wdgrl") if m in models]
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 4.4), squeeze=False)
    rng = np.random.default_rng(0)
    i = rng.choice(len(task.Xs), min(n, len(task.Xs)), replace=False)
    j = rng.choice(len(task.Xt_test), min(n, len(task.Xt_test)), replace=False)
    classes = np.unique(task.ys)  # colour = class index (labels may be -1/+1 or strings)
    c_src = np.searchsorted(classes, task.ys[i])
    tgt_colour = (dict(c=np.searchsorted(classes, task.yt_test[j]), cmap="tab10", vmin=0, vmax=9)
                  if task.labelled_target else dict(c="grey"))
    for ax, method in zip(axes[0], shown):
        model = models[method]
        hs, ht = model.transform(task.Xs[i], domain="source"), model.transform(task.Xt_test[j])
        z = PCA(2, random_state=0).fit_transform(np.concatenate([hs, ht]))
        zs, zt = z[: len(i)], z[len(i) :]
        ax.scatter(zs[:, 0], zs[:, 1], c=c_src, cmap="tab10", marker="o", s=8,
                   alpha=0.6, vmin=0, vmax=9)
        ax.scatter(zt[:, 0], zt[:, 1], marker="x", s=10, alpha=0.6, **tgt_colour)
        label = "before adaptation (source-only)" if method == "source_only" else "after WDGRL"
        ax.set_title(f"{label}\no = source, x = target, colour = class", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{task.name}: PCA of the learned features")
    return save_figure(fig, path, dpi=110)


def plot_summary(rows: list[dict[str, Any]], methods: list[str], path: Path) -> Path:
    """Grouped bars: target accuracy (mean ± std over seeds) per task and method."""
    plt = _plt()
    tasks = [r["task"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(tasks)), 4))
    w = 0.8 / len(methods)
    for k, m in enumerate(methods):
        means = [r["methods"].get(m, {}).get("mean") or 0 for r in rows]
        stds = [r["methods"].get(m, {}).get("std") or 0 for r in rows]
        ax.bar(np.arange(len(tasks)) + k * w, means, w, yerr=stds, label=m,
               color=COLORS.get(m, "tab:purple"), capsize=2)
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - w / 2, tasks, rotation=20)
    ax.set_ylabel("target test accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, ncol=len(methods))
    return save_figure(fig, path, dpi=110)
