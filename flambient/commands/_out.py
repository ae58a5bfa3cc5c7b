"""Where command results go: data on stdout, everything else on stderr.

The conventions every command follows (see the README's "Output" section):

- listings and results (``models``, ``presets``, ``ingest``, ``process``, ``eval``) are data
  on **stdout**: a rich table when stdout is a terminal, tab-separated lines (a header line,
  then one line per row) when it is a pipe or a file, so ``flambient models | grep`` works;
- ``--json PATH`` writes the result as JSON to PATH, ``--json -`` to stdout instead of the
  table (for scripts: ``flambient models --json - | jq``);
- logs, progress bars, warnings and errors go to **stderr** (:data:`flambient.log.console`);
- with ``-q`` a successful command prints nothing (an explicit ``--json -`` still prints its
  JSON: that is the output asked for).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..log import is_quiet

#: The ``--json`` value that means stdout.
STDOUT = "-"


def quiet() -> bool:
    """Whether ``-q`` is in effect (given before or after the command name)."""
    return is_quiet()


def show_progress() -> bool:
    """Whether to draw progress bars: only on a terminal, and not under ``-q``.

    Off a terminal (cron, a pipe) a bar would leave a blank or a wrapped line in the log.
    """
    from ..log import console

    return console.is_terminal and not quiet()


def data_console() -> Console:
    """A console on the current ``sys.stdout`` (looked up per call, so redirection is honoured)."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def _cell(value: Any) -> str:
    text = value.plain if hasattr(value, "plain") else str(value)
    return text.replace("\t", " ").replace("\n", " ")


def print_table(table: Table) -> None:
    """Print ``table`` to stdout: rich on a terminal, else a TSV header line plus one line per row.

    Nothing is printed under ``-q``.
    """
    if quiet():
        return
    con = data_console()
    if con.is_terminal:
        con.print(table)
        return
    cols = list(table.columns)
    lines = ["\t".join(_cell(c.header) for c in cols)]
    cells = [list(c.cells) for c in cols]
    for i in range(table.row_count):
        lines.append("\t".join(_cell(col[i]) if i < len(col) else "" for col in cells))
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """A message for people (what was written, where) on stderr; nothing under ``-q``."""
    if not quiet():
        from ..log import console

        console.print(text, soft_wrap=True)


def print_line(text: str) -> None:
    """Print one plain result line to stdout (nothing under ``-q``)."""
    if not quiet():
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def json_to_stdout(target: str | None) -> bool:
    """Whether a ``--json`` value asks for JSON on stdout (``-``)."""
    return target == STDOUT


def write_json(doc: Any, target: str | None) -> Path | None:
    """Write ``doc`` as JSON to ``target``: ``-`` = stdout, a path = that file (atomically).

    Returns the file written (None for stdout or when ``target`` is None). NaN and infinities
    are written as null.
    """
    if target is None:
        return None
    text = json.dumps(_finite(doc), indent=2, allow_nan=False, default=str) + "\n"
    if target == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    from ..io.atomic import atomic_write_text

    return atomic_write_text(Path(target), text)


def _finite(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def emit(doc: Any, table: Table | None, json_target: str | None) -> Path | None:
    """The standard result output: JSON to ``json_target`` and, unless that is stdout, the table.

    Returns the JSON file written, if any.
    """
    written = write_json(doc, json_target)
    if table is not None and not json_to_stdout(json_target):
        print_table(table)
    return written
