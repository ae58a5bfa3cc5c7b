"""Capture what C libraries print on stderr (LibRaw's "data corrupted at 1378") into the log.

LibRaw writes its own messages straight to file descriptor 2, so in cron mode a shoot with a
few damaged RAW files printed each problem twice: LibRaw's raw line and flambient's one-line
error. :func:`capture_stderr` points fd 2 at a temporary file while a decoder runs (nested and
concurrent uses share one redirection: it is undone when the last user leaves), then lines that
name a file being decoded go to the ``flambient.libraw`` logger at INFO, marked
:data:`~flambient.log.REPORTED_LATER` (the log file gets them; the terminal shows flambient's
own one-line error for that file instead) and every other line is written back to the real stderr unchanged.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

from ..log import REPORTED_LATER, get_logger

log = get_logger("libraw")

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_sink: IO[bytes] | None = None
_names: set[str] = set()


@contextlib.contextmanager
def capture_stderr(name: str) -> Iterator[None]:
    """Redirect fd 2 while the block runs; ``name`` (the file decoded) marks its library's lines."""
    global _depth, _saved_fd, _sink
    with _lock:
        active = True
        if _depth == 0:
            try:
                sink = tempfile.TemporaryFile()
                sys.stderr.flush()
                saved = os.dup(2)
                os.dup2(sink.fileno(), 2)
                _saved_fd, _sink = saved, sink
            except (OSError, ValueError, AttributeError):  # no fd 2, no temp space: do not capture
                active = False
        if active:
            _depth += 1
            _names.add(name)
    if not active:
        yield
        return
    try:
        yield
    finally:
        data, names = b"", set()
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_fd is not None and _sink is not None:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError, AttributeError):
                    pass
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _sink.seek(0)
                data = _sink.read()
                _sink.close()
                names = set(_names)
                _names.clear()
                _saved_fd, _sink = None, None
        if data:
            _emit(data, names)


def _emit(data: bytes, names: set[str]) -> None:
    passthrough: list[str] = []
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        if any(line.startswith(n) for n in names) or line.startswith(("data corrupted", "Unexpected end")):
            log.info("LibRaw: %s", line.strip(), extra=REPORTED_LATER)  # the log file only
        else:
            passthrough.append(line)
    if passthrough:
        try:
            os.write(2, ("\n".join(passthrough) + "\n").encode("utf-8", "replace"))
        except OSError:
            pass
