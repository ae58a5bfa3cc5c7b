"""Where ``process`` keeps its bookkeeping: ``OUT/.flambient/``, so the delivery folder holds only finals.

::

    OUT/                          the delivery folder: finals only
    OUT/.flambient/sidecars/      <final>.json, one per final (provenance, fingerprint, hashes)
    OUT/.flambient/summaries/     <UTC time>-<host>-<pid>.json, one per run, newest 100 kept
    OUT/.flambient/summaries/latest.json   a copy of the newest, replaced atomically
    OUT/.flambient/locks/         <set>.lock while a set is being processed
    OUT/.flambient/process.log    the log, rotated at 1 MiB (process.log.1 ... .3)

Older versions kept sidecars (``<final>.json``), ``flambient-summary.json``,
``flambient-process.log`` and ``.flambient-locks/`` beside the finals;
:func:`migrate_legacy_layout` moves them in (each with one rename, so a crash leaves every
file in either its old or its new place, and both places are read).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..log import get_logger

log = get_logger("process")

META_DIR = ".flambient"
#: Names of the old layout, beside the finals.
LEGACY_SUMMARY = "flambient-summary.json"
LEGACY_LOG = "flambient-process.log"
LEGACY_LOCKS = ".flambient-locks"
#: Summaries kept in ``summaries/`` (oldest removed first), besides ``latest.json``.
KEEP_SUMMARIES = 100
LATEST = "latest.json"


@dataclass(frozen=True)
class OutputLayout:
    """The paths of one output folder ``out`` (see the module docstring)."""

    out: Path

    @property
    def meta(self) -> Path:
        """``OUT/.flambient``."""
        return self.out / META_DIR

    @property
    def sidecars(self) -> Path:
        return self.meta / "sidecars"

    @property
    def summaries(self) -> Path:
        return self.meta / "summaries"

    @property
    def locks(self) -> Path:
        return self.meta / "locks"

    @property
    def log(self) -> Path:
        return self.meta / "process.log"

    @property
    def latest_summary(self) -> Path:
        """``summaries/latest.json``: the newest run's summary (a copy, not a link: SMB and FAT
        shares have no symbolic links)."""
        return self.summaries / LATEST

    def summary_for_run(self, when: float, host: str, pid: int) -> Path:
        """``summaries/<YYYYmmddTHHMMSS.ffffffZ>-<host>-<pid>.json``: sorts by time, unique per process."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(when)) + f".{int(when % 1 * 1e6):06d}Z"
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in host)[:40]
        return self.summaries / f"{stamp}-{safe}-{pid}.json"


def layout_of_final(final: str | Path) -> OutputLayout:
    """The layout of the output folder a final lives in (finals are plain names inside OUT)."""
    return OutputLayout(Path(final).parent)


def prune_summaries(layout: OutputLayout, keep: int | None = None) -> None:
    """Remove the oldest run summaries beyond ``keep`` (default :data:`KEEP_SUMMARIES`; never
    ``latest.json``); never raises."""
    keep = KEEP_SUMMARIES if keep is None else keep
    try:
        runs = sorted(p for p in layout.summaries.glob("*.json") if p.name != LATEST and not p.name.startswith("."))
    except OSError:
        return
    for p in runs[:-keep] if keep > 0 else runs:
        p.unlink(missing_ok=True)


def _is_sidecar_file(path: Path) -> bool:
    from .sidecar import is_flambient_sidecar

    try:
        return is_flambient_sidecar(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def migrate_legacy_layout(layout: OutputLayout) -> int:
    """Move an old-layout output folder's bookkeeping under ``OUT/.flambient/``; returns files moved.

    Sidecars flambient wrote (``<final>.json`` holding its version and fingerprint) move to
    ``sidecars/`` unless a sidecar of the new layout already stands there; any other ``.json``
    stays (it is the user's, and keeps claiming the final's name, see
    :func:`flambient.batch.sidecar.final_ownership`). The old summary becomes a run summary, the
    old log ``legacy-process.log``; an empty ``.flambient-locks`` folder is removed (one with
    locks in it is left: a process of the old version may still be working). Never raises for
    one file: a file that cannot be moved is read in its old place next time.
    """
    out = layout.out
    moved = 0
    try:
        names = sorted(e.name for e in os.scandir(out) if e.is_file(follow_symlinks=False))
    except OSError:
        return 0
    for name in names:
        src = out / name
        if name == LEGACY_SUMMARY:
            dest = layout.summaries / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(src.stat().st_mtime))}-legacy.json"
        elif name == LEGACY_LOG:
            dest = layout.meta / "legacy-process.log"
        elif name.endswith(".json") and not name.startswith(".") and _is_sidecar_file(src):
            dest = layout.sidecars / name
        else:
            continue
        moved += _move_into(src, dest)
    try:
        (out / LEGACY_LOCKS).rmdir()  # only when empty
    except OSError:
        pass
    if moved:
        log.info("moved %d bookkeeping file(s) of an older flambient into %s", moved, layout.meta)
    return moved


def _move_into(src: Path, dest: Path) -> int:
    """Rename ``src`` onto ``dest`` unless ``dest`` exists (1 when moved, else 0)."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(dest):
            return 0
        os.rename(src, dest)  # same filesystem: one atomic step
    except OSError as exc:
        log.warning("could not move %s into %s (%s); it is read in its old place", src.name, dest.parent, exc)
        return 0
    return 1
