"""The run's log file, ``OUT/.flambient/process.log``, rotated by size.

One line per event with host and pid (several workstations may share one output folder).
The file is rotated at :data:`LOG_MAX_BYTES` keeping :data:`LOG_BACKUPS` older files
(``process.log.1`` newest), so a cron job never grows it without bound. Rotation is not
coordinated between processes: two processes rotating at the same moment may lose a few lines.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
from pathlib import Path

from ..errors import describe_os_error
from ..log import get_logger

log = get_logger("process")

LOG_MAX_BYTES = 1 << 20
LOG_BACKUPS = 3


class QuietFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler that, when the disk fills or the file vanishes, stops logging to it
    once (with one line on the terminal) instead of printing a traceback per record."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        if getattr(self, "_broken", False):
            return
        self._broken = True
        exc = sys.exc_info()[1]
        why = describe_os_error(exc) if isinstance(exc, OSError) else type(exc).__name__
        log.warning("cannot write the log file (%s); logging to it stopped", why)  # not back here: _broken


class LogFile:
    """Appends the run's log lines to ``path`` (host and pid on every line) until :meth:`close`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = QuietFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
        fmt = f"%(asctime)s {socket.gethostname()}[{os.getpid()}] %(levelname)s %(name)s: %(message)s"
        self.handler.setFormatter(logging.Formatter(fmt))
        self.handler.setLevel(logging.INFO)
        self.logger = get_logger()
        if self.logger.level == logging.NOTSET or self.logger.level > logging.INFO:
            self._old_level: int | None = self.logger.level
            self.logger.setLevel(logging.INFO)
            for h in self.logger.handlers:  # keep the terminal as quiet as it was
                if h.level == logging.NOTSET:
                    h.setLevel(self._old_level or logging.WARNING)
        else:
            self._old_level = None
        self.logger.addHandler(self.handler)

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()
        if self._old_level is not None:
            self.logger.setLevel(self._old_level)
