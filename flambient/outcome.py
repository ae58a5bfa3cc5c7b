"""Per-item failures of a batch and the one rule that turns a batch's outcome into an exit status.

Every batch command (``ingest``, ``ingest --pairs``, ``process``, ``eval``) goes on past an item
that fails and records it as an :class:`ItemError`: which item, which file, what was wrong,
how to fix it. :func:`batch_exit_code` then decides the exit status the same way for all:

====  ===============================================================================
0     every item done (or skipped as up to date)
1     at least one item failed, or a run-level problem (e.g. the summary not written)
4     nothing failed, but some items were left to another worker's lock (``process``)
====  ===============================================================================

(Exit status 2 is a usage or input error that stops a command before any item:
:class:`flambient.errors.FlambientError`.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from .errors import FlambientError, describe_os_error, first_line

EXIT_OK = 0
EXIT_ITEM_FAILED = 1
#: Every item is done or skipped except some left to another worker's lock.
EXIT_LOCKED = 4


@dataclass(frozen=True)
class ItemError:
    """One failed item: ``item`` (a set, pair or image name, or a file), ``message`` (one line,
    no path), ``path`` (the file or folder at fault), ``hint`` (how to fix it) and the exit
    status it asks for. ``str()`` reads like a :class:`~flambient.errors.FlambientError`."""

    item: str
    message: str
    path: str | None = None
    hint: str | None = None
    exit_code: int = EXIT_ITEM_FAILED

    @classmethod
    def from_exception(cls, item: str, exc: BaseException, path: str | Path | None = None) -> ItemError:
        """The record of ``item`` failing with ``exc`` (the project's errors keep their path and hint).

        ``path``, when given, replaces the exception's path (e.g. relative to a shoot).
        """
        where = str(path) if path is not None else None
        if isinstance(exc, FlambientError):
            if where is None and exc.path is not None:
                where = str(exc.path)
            return cls(item, exc.message, where, exc.hint)
        if isinstance(exc, MemoryError):
            return cls(item, "out of memory", where, "use a smaller --tile, or fewer devices")
        if isinstance(exc, OSError):  # the OS error's own file names stay in the message
            return cls(item, describe_os_error(exc, with_path=where is None), where)
        text = first_line(exc, 300, "")
        return cls(item, f"{type(exc).__name__}: {text}" if text else type(exc).__name__, where)

    def brief(self) -> str:
        """``message (hint)``: the text without the path (for records that carry the path apart)."""
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def __str__(self) -> str:
        return f"{self.path}: {self.brief()}" if self.path else self.brief()

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-safe dict of every field."""
        return asdict(self)


def batch_exit_code(failures: Iterable[ItemError], *, locked: int = 0, problems: int = 0) -> int:
    """The exit status of a batch (see the module docstring): the highest of the failed items'
    codes (1) when any failed or there are run-level ``problems``; else :data:`EXIT_LOCKED` when
    ``locked`` items were left to another worker; else 0."""
    codes = [f.exit_code for f in failures]
    if codes or problems:
        return max([*codes, EXIT_ITEM_FAILED])
    return EXIT_LOCKED if locked else EXIT_OK
