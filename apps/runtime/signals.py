"""Stop at the next step boundary on SIGINT / SIGTERM, so that the trainer writes a checkpoint
first (a cluster's pre-emption sends SIGTERM; Ctrl-C sends SIGINT)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):  # noqa: N818 - the event, like KeyboardInterrupt
    """Raised by a trainer after it checkpointed on a signal; the CLI exits with 128 + signum."""

    def __init__(self, signum: int, where: str) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name} {where}; "
                         "continue with --resume")


class StopFlag:
    """Set by the handler; the training loop reads :attr:`requested` once per step."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def check(self, where: str) -> None:
        """Raise :class:`Interrupted` if a signal came (call it right after a checkpoint)."""
        if self.signum is not None:
            raise Interrupted(self.signum, where)


@contextmanager
def stop_on_signal(enabled: bool = True) -> Iterator[StopFlag]:
    """Within the block, SIGINT and SIGTERM set the yielded flag instead of stopping the process;
    a second signal stops it at once (``KeyboardInterrupt``). The previous handlers are restored on
    exit. Outside the main thread (where Python cannot install handlers) the flag stays unset."""
    flag = StopFlag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def handler(signum: int, frame: object) -> None:
        if flag.signum is not None:
            raise KeyboardInterrupt
        flag.signum = signum

    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
