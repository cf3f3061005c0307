"""Learning curves from training logs: episodic return (raw and smoothed) and loss vs frames."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from wdist_apps.runtime.figures import save_figure


def plot_curves(log_csvs: list[str | Path], out_png: str | Path, labels: list[str] | None = None,
                reference: dict[str, float] | None = None, window: int = 20,
                reference_curves: str | Path | None = None, loss_column: str = "loss",
                title: str = "QR-DQN learning curve", max_frames: float | None = None) -> Path:
    """Plot each log's episodic returns against emulator frames into ``out_png``.

    ``reference`` maps a label to a score drawn as a horizontal line (e.g. the paper's value).
    ``reference_curves``: a CSV of published per-iteration returns (columns ``agent``,
    ``frames_start``, ``frames_end``, ``train_return_mean``, ``train_return_min``,
    ``train_return_max``; e.g. ``results/qrdqn/dopamine/pong_qrdqn.csv``), drawn per agent as
    the mean over runs at each iteration's middle frame with the min-max band.
    ``loss_column``: the log's loss column (``td_loss`` for PQN logs). ``max_frames`` cuts the
    x axis (default with ``reference_curves``: the logs' last frame, as those span 200M).
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
        losses = _paired(path, loss_column)
        if losses.size:
            ax_loss.plot(losses[:, 0], losses[:, 1], label=label)
    if reference_curves is not None:
        for agent, curve in _reference_curves(Path(reference_curves)).items():
            (line,) = ax_ret.plot(curve[:, 0], curve[:, 1], lw=1.5,
                                  label=f"Dopamine {agent} (mean, min-max of runs)")
            ax_ret.fill_between(curve[:, 0], curve[:, 2], curve[:, 3], alpha=0.15,
                                color=line.get_color(), lw=0)
    last = max((float(_paired(Path(p), "frames")[:, 0].max(initial=0)) for p in log_csvs),
               default=0.0)
    if max_frames is None and reference_curves is not None and last > 0:
        max_frames = 1.02 * last
    if max_frames is not None:
        ax_ret.set_xlim(0, max_frames)
        ax_loss.set_xlim(0, max_frames)
    for name, value in (reference or {}).items():
        ax_ret.axhline(value, ls="--", color="gray", lw=1)
        ax_ret.annotate(name, (0, value), textcoords="offset points", xytext=(2, 3), fontsize=8)
    ax_ret.set(xlabel="emulator frames", ylabel="episodic return (raw score)", title=title)
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


def _reference_curves(path: Path) -> dict[str, np.ndarray]:
    """agent -> [k, 4] array of (middle frame, mean, min, max) from a reference-curve CSV."""
    if not path.is_file():
        raise FileNotFoundError(f"reference curves not found: {path}")
    curves: dict[str, list[tuple[float, ...]]] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"agent", "frames_start", "frames_end", "train_return_mean", "train_return_min",
                "train_return_max"}
        if not need <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: reference curves need the columns {sorted(need)}, "
                             f"got {reader.fieldnames}")
        for row in reader:
            mid = 0.5 * (float(row["frames_start"]) + float(row["frames_end"]))
            curves.setdefault(row["agent"], []).append(
                (mid, float(row["train_return_mean"]), float(row["train_return_min"]),
                 float(row["train_return_max"])))
    return {agent: np.asarray(sorted(rows)) for agent, rows in curves.items()}
