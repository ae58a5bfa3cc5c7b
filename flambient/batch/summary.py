"""The outcome of a ``process`` run: :class:`SetResult` per item, :class:`BatchSummary`, and its writer.

Every run that is not a dry run writes its summary twice, atomically: as
``OUT/.flambient/summaries/<UTC time>-<host>-<pid>.json`` (one per run, the newest
:data:`~flambient.batch.layout.KEEP_SUMMARIES` kept, so an all-skipped rerun never hides the run
that did the work) and as ``summaries/latest.json``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..io.atomic import atomic_write_text
from ..outcome import EXIT_LOCKED, ItemError, batch_exit_code
from .layout import OutputLayout, prune_summaries

#: Item statuses: ``done``, ``skipped`` (up to date), ``failed``, ``kept`` (a user's file holds
#: the final's name), ``locked`` (another worker holds the set), ``would-process`` (dry run),
#: ``interrupted`` (the run was stopped by SIGINT/SIGTERM before the set was finished).
STATUSES = ("done", "skipped", "failed", "kept", "locked", "would-process", "interrupted")


@dataclass
class SetResult:
    """The outcome of one item (``status``: one of :data:`STATUSES`)."""

    name: str
    status: str
    final: str | None = None
    error: str | None = None
    note: str | None = None
    device: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def item_error(self) -> ItemError:
        """This result as the shared per-item failure record (:class:`flambient.outcome.ItemError`)."""
        return ItemError(self.name, self.error or self.note or self.status)


@dataclass
class BatchSummary:
    """All results of a run, in set order, plus where the finals went."""

    shoot: Path
    out: Path
    results: list[SetResult]
    model: str
    preset: str
    seconds: float
    #: Every input file: its set, role, status and final, or why it has none (:mod:`flambient.accounting`).
    inputs: list[dict[str, Any]] = field(default_factory=list)
    #: Run-level problems that are not one item's (e.g. the summary could not be written).
    problems: list[str] = field(default_factory=list)
    #: The signal that stopped the run (SIGINT 2, SIGTERM 15), or None.
    signal: int | None = None

    @property
    def exit_code(self) -> int:
        """128 + the signal when the run was stopped by one (130 SIGINT, 143 SIGTERM); else 1 when
        any item failed (or a run-level problem), else 4 (:data:`EXIT_LOCKED`) when sets were left
        to another worker's lock, else 0."""
        if self.signal is not None:
            return 128 + int(self.signal)
        return batch_exit_code([r.item_error() for r in self.results if r.status == "failed"],
                               locked=sum(r.status == "locked" for r in self.results), problems=len(self.problems))

    def counts(self) -> dict[str, int]:
        """Number of items per status."""
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


def summary_doc(summary: BatchSummary) -> dict[str, Any]:
    """The summary document (the files in ``summaries/``, ``process --json``)."""
    return {
        "flambient_version": __version__,
        "shoot": str(summary.shoot),
        "out": str(summary.out),
        "model": summary.model,
        "preset": summary.preset,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(summary.seconds, 3),
        "interrupted": signal.Signals(summary.signal).name if summary.signal is not None else None,
        "counts": summary.counts(),
        "exit_code": summary.exit_code,
        "sets": [asdict(r) for r in summary.results],
        "inputs": summary.inputs,
        "problems": summary.problems,
    }


def write_summary(summary: BatchSummary, when: float | None = None) -> Path:
    """Write the run's summary (this run's file, then ``latest.json``), atomically; returns this
    run's file. Old run summaries beyond the kept number are removed."""
    layout = OutputLayout(summary.out)
    text = json.dumps(summary_doc(summary), indent=2) + "\n"
    mine = atomic_write_text(layout.summary_for_run(time.time() if when is None else when,
                                                    socket.gethostname(), os.getpid()), text)
    atomic_write_text(layout.latest_summary, text)
    prune_summaries(layout)
    return mine


def read_latest_summary(out: str | Path) -> dict[str, Any] | None:
    """The newest run's summary document of an output folder (None when there is none)."""
    try:
        doc = json.loads(OutputLayout(Path(out)).latest_summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
