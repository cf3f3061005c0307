"""Progress bars for long work (tqdm; silenced with WDIST_NO_PROGRESS=1, e.g. in tests).

On a terminal the bar redraws in place. When the output is a file or a pipe (a log, CI, ``make
demo | tee``) it prints one plain line every ``WDIST_PROGRESS_INTERVAL`` seconds (default 30)
instead of thousands of redrawn frames.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm


class _Lines:
    """A stream for tqdm that turns each redraw (``\\r`` + bar) into one line of its own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").replace("\x1b[A", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    from tqdm.auto import (
        tqdm,  # here: wdist_apps.runtime imports this module eagerly (see __init__)
    )

    from wdist_apps.runtime.distributed import is_main

    # under torchrun, one bar: rank 0's
    kwargs.setdefault("disable", os.environ.get("WDIST_NO_PROGRESS") == "1" or not is_main())
    stream = kwargs.pop("file", None) or sys.stderr
    if _is_terminal(stream):
        kwargs.setdefault("dynamic_ncols", True)
    else:
        kwargs.setdefault("mininterval", float(os.environ.get("WDIST_PROGRESS_INTERVAL", "30")))
        kwargs.setdefault("ncols", 100)
        stream = _Lines(stream)
    bar = tqdm(iterable, file=stream, **kwargs)
    if isinstance(stream, _Lines):  # a postfix waits for the next line instead of forcing one
        set_postfix = bar.set_postfix
        bar.set_postfix = lambda *args, refresh=True, **kw: set_postfix(*args, refresh=False, **kw)
    return bar
