"""Logging and terminal output shared by the CLI and the library.

The library logs through :mod:`logging` under the ``flambient`` logger and never prints; the
CLI installs a rich handler whose level follows ``-v`` / ``-q``. Everything here goes to
stderr: stdout carries only data (see :mod:`flambient.commands._out`, whose ``note`` prints
a message for people unless ``-q`` is given).
"""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

LOGGER_NAME = "flambient"

#: The console every command writes to (stderr, so stdout stays clean for data).
console = Console(stderr=True, highlight=False)


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the project's logger, or a child of it (``flambient.<name>``)."""
    return logging.getLogger(LOGGER_NAME if not name else f"{LOGGER_NAME}.{name}")


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Route ``flambient`` logs to the terminal: WARNING with ``quiet``, DEBUG with ``verbose``."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
