"""Logging and terminal output shared by the CLI and the library.

The library logs through :mod:`logging` under the ``flambient`` logger and never prints; the
CLI installs a rich handler whose level follows ``-v`` / ``-q``. Everything here goes to
stderr: stdout carries only data (see :mod:`flambient.commands._out`, whose ``note`` prints
a message for people unless ``-q`` is given).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from rich.console import Console
from rich.logging import RichHandler

LOGGER_NAME = "flambient"

#: The console every command writes to (stderr, so stdout stays clean for data).
console = Console(stderr=True, highlight=False)

#: ``extra=`` for a record whose problem the command reports itself at the end (a batch's
#: failed items): it goes to log files, and to the terminal only when that is interactive.
REPORTED_LATER = {"reported_later": True}


def _not_reported_later(record: logging.LogRecord) -> bool:
    return not getattr(record, "reported_later", False)


@contextlib.contextmanager
def reported_later(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Mark records of logger ``flambient.<name>`` at ``level`` or above as :data:`REPORTED_LATER`."""
    logger = get_logger(name)

    def mark(record: logging.LogRecord) -> bool:
        if record.levelno >= level:
            record.reported_later = True
        return True

    logger.addFilter(mark)
    try:
        yield
    finally:
        logger.removeFilter(mark)


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the project's logger, or a child of it (``flambient.<name>``)."""
    return logging.getLogger(LOGGER_NAME if not name else f"{LOGGER_NAME}.{name}")


#: What the last :func:`setup_logging` call asked for (``-q``, ``-v`` count).
_mode = {"quiet": False, "verbose": 0}


def is_quiet() -> bool:
    """Whether ``-q`` is in effect: a successful command prints nothing (warnings still show)."""
    return bool(_mode["quiet"])


def verbosity() -> int:
    """How many ``-v`` were given (1 or more also shows tracebacks)."""
    return int(_mode["verbose"])


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Route ``flambient`` logs to the terminal: WARNING with ``quiet``, DEBUG with ``verbose``.

    On a terminal the lines are rich (coloured, wrapped to its width); when stderr is not a
    terminal (cron, a pipe, a file) each record is one plain ``LEVEL message`` line, never
    wrapped, and :data:`console` stops wrapping too, so a log reader or ``grep`` sees every
    problem on one line. Records marked :data:`REPORTED_LATER` are left out on both (the
    command prints each of those problems once, at the end). Python warnings of third-party
    libraries (torch, onnx) are captured as ``flambient.thirdparty`` INFO lines: in the log
    file, hidden by ``-q``, never a multi-line dump on stderr.
    """
    _mode.update(quiet=bool(quiet), verbose=int(verbose))
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler: logging.Handler
    console.soft_wrap = not console.is_terminal
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()  # sys.stderr as it is now
        handler.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))
    handler.addFilter(_not_reported_later)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    _capture_warnings()


class _ToProjectLog(logging.Handler):
    """Re-log records of Python's ``py.warnings`` logger as one ``flambient.thirdparty`` INFO line."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().strip().splitlines()
        get_logger("thirdparty").info("%s", text[0] if text else "")


def _capture_warnings() -> None:
    """Send :mod:`warnings` output through the project log instead of raw stderr."""
    logging.captureWarnings(False)  # re-install, also when someone replaced warnings.showwarning since
    logging.captureWarnings(True)
    pyw = logging.getLogger("py.warnings")
    pyw.handlers[:] = [h for h in pyw.handlers if not isinstance(h, _ToProjectLog)] + [_ToProjectLog()]
    pyw.propagate = False
