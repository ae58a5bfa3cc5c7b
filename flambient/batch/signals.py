"""SIGINT / SIGTERM during ``process``: stop cleanly instead of dying mid-write.

:func:`stop_on_signals` installs handlers (main thread only) that set a :class:`StopFlag`. While
the flag's ``raise_now`` is on (the run is still ingesting, in the main thread), the handler
raises :class:`RunInterrupted` right away; later it only sets the flag, and the pipeline stops
claiming sets, abandons computing ones between tiles, lets finals already being encoded finish,
joins every thread, releases every lock and writes the summary. The command then exits
128 + the signal (130 for SIGINT, 143 for SIGTERM). A repeated signal is ignored with a log line:
stopping takes at most one tile per device and one frame decode.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from ..log import get_logger

log = get_logger("process")

HANDLED = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(BaseException):
    """Raised in the main thread by a signal that arrived before the sets were planned."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopFlag:
    """``event`` is set once a stop signal arrived; ``signum`` says which."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.raise_now = False

    def trip(self, signum: int) -> None:
        """Record ``signum`` and set the event (what the handler does; tests may call it)."""
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Route SIGINT and SIGTERM to ``flag`` for the duration; the old handlers come back after.

    Outside the main thread (where Python cannot install handlers) nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if flag.is_set():
            log.warning("%s again: already stopping", signal.Signals(signum).name)
            return
        flag.trip(signum)
        log.warning("%s: stopping after the sets being written; no new set is started", signal.Signals(signum).name)
        if flag.raise_now:
            raise RunInterrupted(signum)

    old = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
