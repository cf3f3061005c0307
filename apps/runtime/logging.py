"""Append-only CSV training logs (one row per logging step), mirrored to TensorBoard event files
when the ``tensorboard`` package is installed."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from wdist_apps.runtime.checkpoint import atomic_write


class CSVLogger:
    """Write dict rows to ``path``; the first row fixes the columns.

    ``resume=True`` appends to an existing file instead of overwriting it (a row with a column
    its header lacks is a ``KeyError``).
    Resuming first drops a torn last row (a crash mid-write) and, with ``upto=(column, value)``,
    the rows whose ``column`` exceeds ``value``: those logged after the checkpoint a run resumes
    from, which it is about to log again. ``last`` is the last row kept (``{}`` when none).

    ``tensorboard``: the column that holds the step (e.g. ``"step"``, ``"frames"``); when given
    and the ``tensorboard`` package is installed, every numeric cell is also written as a scalar
    to event files under ``<folder of path>/tensorboard`` (``tensorboard --logdir`` reads them).

    Under torchrun only rank 0 writes; on the other ranks the logger is silent.
    """

    def __init__(self, path: str | Path, resume: bool = False,
                 upto: tuple[str, float] | None = None, tensorboard: str | None = None) -> None:
        from wdist_apps.runtime.distributed import is_main

        self.path = Path(path)
        self.fields: list[str] | None = None
        self.last: dict[str, str] = {}
        self._fh = self._tb = None
        if not is_main():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fields, rows = _kept_rows(self.path, upto) if resume and self.path.is_file() else ([], [])
        if fields:
            self.fields = fields
            if rows:
                self.last = dict(zip(self.fields, rows[-1], strict=False))
            text = io.StringIO(newline="")
            csv.writer(text).writerows([self.fields, *rows])
            atomic_write(self.path, lambda fh: fh.write(text.getvalue().encode()))
            self._fh = self.path.open("a", newline="")
        else:
            self._fh = self.path.open("w", newline="")
        self._writer = csv.writer(self._fh)
        self._step_key = tensorboard
        self._tb = _summary_writer(self.path.parent / "tensorboard") if tensorboard else None

    def log(self, row: dict[str, Any]) -> None:
        if self._fh is None:  # a rank other than 0
            return
        if self.fields is None:
            self.fields = list(row)
            self._writer.writerow(self.fields)
        extra = set(row) - set(self.fields)
        if extra:
            raise KeyError(f"log row has columns {sorted(extra)} not in the header {self.fields}")
        self._writer.writerow([_fmt(row.get(k, "")) for k in self.fields])
        self._fh.flush()
        if self._tb is not None and _number(row.get(self._step_key)) is not None:
            step = int(_number(row[self._step_key]))
            for key, value in row.items():
                if key != self._step_key and _number(value) is not None:
                    self._tb.add_scalar(key, _number(value), step)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> CSVLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _summary_writer(folder: Path) -> Any:
    """TensorBoard's writer, or None when the optional ``tensorboard`` package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(folder))


def _number(v: Any) -> float | None:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _fmt(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _kept_rows(path: Path, upto: tuple[str, float] | None) -> tuple[list[str], list[list[str]]]:
    text = path.read_text()
    if not text.endswith("\n"):  # a torn last row: drop it
        text = text[: text.rfind("\n") + 1]
    fields, *rows = list(csv.reader(io.StringIO(text, newline=""))) or [[]]
    if not fields:
        return [], []
    if upto is not None:
        column, value = upto
        if column not in fields:
            raise ValueError(f"{path}: no column {column!r} to resume at (header: {fields})")
        at = fields.index(column)
        rows = [r for r in rows if r[at] == "" or float(r[at]) <= value]
    return fields, rows


def read_csv(path: str | Path) -> dict[str, list[float]]:
    """Read a log written by :class:`CSVLogger` into columns of floats (blank cells skipped)."""
    cols: dict[str, list[float]] = {}
    with Path(path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                if v not in ("", None):
                    try:
                        cols.setdefault(k, []).append(float(v))
                    except ValueError:
                        continue
    return cols
