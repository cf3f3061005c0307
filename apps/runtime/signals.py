"""Stop at the next step boundary on SIGINT / SIGTERM (or at a time limit), so that the trainer
writes a checkpoint first (a cluster's pre-emption sends SIGTERM; Ctrl-C sends SIGINT)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):  # noqa: N818 - the event, like KeyboardInterrupt
    """Raised by a trainer after it checkpointed on a signal (``signum``; the CLI exits with
    128 + signum) or at the time limit (``signum`` None; exit code 0)."""

    def __init__(self, signum: int | None, where: str) -> None:
        self.signum = signum
        why = "at the time limit" if signum is None else f"by {signal.Signals(signum).name}"
        super().__init__(f"stopped {why} {where}; continue with --resume")


class StopFlag:
    """Set by the handler (or due at ``deadline``, a ``time.monotonic()`` value); the training
    loop reads :attr:`requested` once per step."""

    def __init__(self, deadline: float | None = None) -> None:
        self.signum: int | None = None
        self.deadline = deadline

    @property
    def requested(self) -> bool:
        return self.signum is not None or (
            self.deadline is not None and time.monotonic() > self.deadline)

    def check(self, where: str) -> None:
        """Raise :class:`Interrupted` if a stop is due (call it right after a checkpoint)."""
        if self.requested:
            raise Interrupted(self.signum, where)


_ACTIVE: list[StopFlag] = []  # the flags of the enclosing blocks, outermost first


@contextmanager
def stop_on_signal(enabled: bool = True,
                   time_limit_s: float | None = None) -> Iterator[StopFlag]:
    """Within the block, SIGINT and SIGTERM set the yielded flag instead of stopping the process;
    a second signal stops it at once (``KeyboardInterrupt``). The previous handlers are restored on
    exit. ``time_limit_s``: the flag is also due that long after entering.

    Nested in another such block (a command around several trainings), it yields the outer flag:
    the command's signal and time limit reach each training loop. Outside the main thread (where
    Python cannot install handlers), or with ``enabled=False``, the flag is never set."""
    if _ACTIVE and enabled:
        yield _ACTIVE[-1]
        return
    flag = StopFlag(None if time_limit_s is None else time.monotonic() + time_limit_s)
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield StopFlag() if not enabled else flag
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def handler(signum: int, frame: object) -> None:
        if flag.signum is not None:
            raise KeyboardInterrupt
        flag.signum = signum

    for s in SIGNALS:
        signal.signal(s, handler)
    _ACTIVE.append(flag)
    try:
        yield flag
    finally:
        _ACTIVE.pop()
        for s, h in previous.items():
            signal.signal(s, h)
