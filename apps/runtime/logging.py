"""Append-only CSV training logs (one row per logging step; pandas / TensorBoard-importable)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class CSVLogger:
    """Write dict rows to ``path``; the first row fixes the columns.

    ``resume=True`` appends to an existing file (checking its header) instead of overwriting it.
    """

    def __init__(self, path: str | Path, resume: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields: list[str] | None = None
        if resume and self.path.is_file() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as fh:
                self.fields = next(csv.reader(fh))
            self._fh = self.path.open("a", newline="")
        else:
            self._fh = self.path.open("w", newline="")
        self._writer = csv.writer(self._fh)

    def log(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
            self._writer.writerow(self.fields)
        extra = set(row) - set(self.fields)
        if extra:
            raise KeyError(f"log row has columns {sorted(extra)} not in the header {self.fields}")
        self._writer.writerow([_fmt(row.get(k, "")) for k in self.fields])
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CSVLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fmt(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


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
