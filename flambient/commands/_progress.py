"""Drawing a library's progress callbacks: ``progress(stage, done, total)`` from worker threads.

Follows the output conventions of :mod:`flambient.commands._out`: on a terminal a rich bar per
stage (stderr); off a terminal (cron, a pipe) one plain, unwrapped line per tenth of a long
stage (``ingest: reading 40/400``), nothing for short ones; nothing at all under ``-q``.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

#: Off a terminal, stages with fewer steps than this print no progress lines.
PLAIN_MIN_STEPS = 20


class StageProgress:
    """A context manager whose instance is the ``progress(stage, done, total)`` callback."""

    def __init__(self, what: str, quiet: bool) -> None:
        from ..log import console

        self.what = what
        self.quiet = quiet
        self.rich = console.is_terminal and not quiet
        self._lock = threading.Lock()
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> StageProgress:
        if self.rich:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            from ..log import console

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True)
            self._bar.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.quiet:
            return
        with self._lock:
            if self._bar is not None:
                if stage not in self._tasks:
                    self._tasks[stage] = self._bar.add_task(f"{self.what}: {stage}", total=total)
                self._bar.update(self._tasks[stage], completed=done, total=total)
            elif total >= PLAIN_MIN_STEPS and plain_step(done, total):
                from ..log import console

                console.print(f"{self.what}: {stage} {done}/{total}", soft_wrap=True, markup=False,
                              highlight=False)


def plain_step(done: int, total: int, parts: int = 10) -> bool:
    """Whether ``done`` of ``total`` is where a plain progress line is due (each ``1/parts``, and the end)."""
    if done >= total:
        return True
    return done * parts // total != (done - 1) * parts // total
