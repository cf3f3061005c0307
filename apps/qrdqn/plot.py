"""Learning curves from training logs: episodic return (raw and smoothed) and loss vs frames."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from wdist_apps.runtime.figures import save_figure


def plot_curves(log_csvs: list[str | Path], out_png: str | Path, labels: list[str] | None = None,
                reference: dict[str, float] | None = None, window: int = 20) -> Path:
    """Plot each log's episodic returns against emulator frames into ``out_png``.

    ``reference`` maps a label to a score drawn as a horizontal line (e.g. the paper's value).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not log_csvs:
        raise ValueError("log_csvs must name at least one log.csv")
    labels = labels or [Path(p).parent.name for p in log_csvs]
    fig, (ax_ret, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for path, label in zip(log_csvs, labels):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training log not found: {path}")
        rows = _paired(path, "episodic_return")
        if rows.size:
            frames, returns = rows[:, 0], rows[:, 1]
            ax_ret.plot(frames, returns, ".", alpha=0.25, ms=3)
            k = min(window, len(returns))
            smooth = np.convolve(returns, np.ones(k) / k, mode="valid")
            ax_ret.plot(frames[k - 1:], smooth, label=f"{label} (mean of {k})")
        losses = _paired(path, "loss")
        if losses.size:
            ax_loss.plot(losses[:, 0], losses[:, 1], label=label)
    for name, value in (reference or {}).items():
        ax_ret.axhline(value, ls="--", color="gray", lw=1)
        ax_ret.annotate(name, (0, value), textcoords="offset points", xytext=(2, 3), fontsize=8)
    ax_ret.set(xlabel="emulator frames", ylabel="episodic return (raw score)",
               title="QR-DQN learning curve")
    ax_loss.set(xlabel="emulator frames", ylabel="quantile Huber loss", yscale="log",
                title="training loss")
    if ax_ret.get_legend_handles_labels()[0]:
        ax_ret.legend(fontsize=8)
    if ax_loss.lines:
        ax_loss.legend(fontsize=8)
    return save_figure(fig, out_png)


def _paired(path: Path, column: str) -> np.ndarray:
    """[k, 2] array of (frames, column) for the rows where ``column`` is filled."""
    out = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get(column) not in ("", None):
                out.append((float(row["frames"]), float(row[column])))
    return np.asarray(out, dtype=float).reshape(-1, 2)
