"""What a ``process`` run does with each set, decided without running a model: :func:`plan`.

The inputs are facts gathered beforehand (:class:`SetState` per set: is the final up to date,
who owns the file under its name); the output is one :class:`Decision` per set. The same rule
(:func:`decide`) is applied again once a set's lock is held, because another process may have
finished the set in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .summary import SetResult

#: Decisions that lead to work: the set goes to the pipeline.
TODO = "todo"


@dataclass
class SetState:
    """Where one set stands.

    ``fresh``: its final is up to date (fingerprint matches) and untouched since written;
    ``owner`` of the file under the final's name: ``absent``, ``ours`` or ``user`` (see
    :func:`flambient.batch.sidecar.final_ownership`); ``inputs`` the hashed input files;
    ``fp`` the fingerprint a final made now would have; ``note`` why a user's up-to-date file
    counts as done.
    """

    fresh: bool
    owner: str
    inputs: list[dict[str, Any]] = field(default_factory=list)
    fp: str = ""
    note: str = ""


@dataclass
class PlanEntry:
    """One set as the planner sees it: ``state`` None = nothing under its final's name or sidecar
    (new; inputs are hashed later), ``error`` = its state could not be read."""

    name: str
    final: Path
    state: SetState | None = None
    error: str | None = None


@dataclass
class Decision:
    """``action``: :data:`TODO` or an item status (``skipped``, ``kept``, ``would-process``,
    ``failed``); ``note`` / ``error`` as in :class:`~flambient.batch.summary.SetResult`."""

    name: str
    action: str
    final: Path
    note: str | None = None
    error: str | None = None

    def result(self) -> SetResult:
        """The item's result for a decision that is not :data:`TODO`."""
        final = None if self.action == "failed" else str(self.final)
        return SetResult(self.name, self.action, final=final, note=self.note, error=self.error)


KEPT_NOTE = "user file ({why}); new final not written (--overwrite-user-files replaces it)"


def decide(name: str, final: Path, state: SetState | None, *, force: bool = False, dry_run: bool = False,
           overwrite_user_files: bool = False, skipped_note: str = "up to date") -> Decision:
    """The decision for one set (see :func:`plan`)."""
    if state is None:
        return Decision(name, "would-process" if dry_run else TODO, final, note="new" if dry_run else None)
    if state.fresh and not force:
        return Decision(name, "skipped", final, note=state.note or skipped_note)
    if state.owner == "user" and not overwrite_user_files:
        why = "not written by flambient, or changed since"
        return Decision(name, "kept", final, note=KEPT_NOTE.format(why=why))
    if dry_run:
        return Decision(name, "would-process", final, note="forced" if state.fresh else "changed")
    return Decision(name, TODO, final)


def plan(entries: list[PlanEntry], *, force: bool = False, dry_run: bool = False,
         overwrite_user_files: bool = False) -> list[Decision]:
    """One :class:`Decision` per entry, in order.

    - new set (no final, no sidecar): ``todo`` (``would-process`` "new" in a dry run);
    - final up to date and untouched: ``skipped`` unless ``force``;
    - a user's file (or an edited final) under the final's name: ``kept`` unless
      ``overwrite_user_files`` (even with ``force``: force never destroys a user's file); a
      user's edit of an up-to-date final is ``skipped`` with a note saying so;
    - anything else (inputs, model, preset or tiling changed; forced): ``todo``
      (``would-process`` in a dry run);
    - state unreadable: ``failed`` with the entry's error.
    """
    out: list[Decision] = []
    for e in entries:
        if e.error is not None:
            out.append(Decision(e.name, "failed", e.final, error=e.error))
        else:
            out.append(decide(e.name, e.final, e.state, force=force, dry_run=dry_run,
                              overwrite_user_files=overwrite_user_files))
    return out
