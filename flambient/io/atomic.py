"""Atomic file writes: a crash never leaves a half-written output under its final name.

Every temporary file is named ``.<stem>.~<host>~<pid>~<random>.partial<suffix>`` beside its
destination, so a later run can tell whose it is: :func:`clean_partials` removes those of dead
processes on this host (and old ones of any host) left by a ``kill -9`` or a power cut.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

#: Temporary files of other hosts (whose pids cannot be checked) are removed after this long.
FOREIGN_PARTIAL_AGE = 3600.0
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"
_PARTIAL = re.compile(r"^\..*\.~(?P<host>[A-Za-z0-9_-]+)~(?P<pid>\d+)~[^.~/]*\.partial")
_OLD_PARTIAL = re.compile(r"^\..+\.partial")


def partial_prefix(dest: Path) -> str:
    """The start of the temporary names :func:`atomic_path` uses for ``dest`` (this process)."""
    return f".{dest.stem}.~{_HOST}~{os.getpid()}~"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def is_abandoned_partial(path: Path, now: float | None = None) -> bool:
    """Whether ``path`` is a temporary file of an atomic write whose writer is gone.

    Its writer is gone when it ran on this host and its pid is dead, or when the file has not
    changed for :data:`FOREIGN_PARTIAL_AGE` seconds (another host, or an older naming).
    """
    name = path.name
    m = _PARTIAL.match(name)
    if m is None and _OLD_PARTIAL.match(name) is None:
        return False
    if m is not None and m.group("host") == _HOST:
        pid = int(m.group("pid"))
        return pid != os.getpid() and not _pid_alive(pid)
    try:
        age = (now if now is not None else time.time()) - path.lstat().st_mtime
    except OSError:
        return False
    return age > FOREIGN_PARTIAL_AGE


def clean_partials(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Remove abandoned temporary files (see :func:`is_abandoned_partial`) in ``folder``.

    Never raises: a folder that is missing or cannot be listed is left alone. Returns the
    files removed.
    """
    removed: list[Path] = []
    root = Path(folder)
    walker = os.walk(root) if recursive else [(str(root), [], None)]
    for dirpath, _dirs, names in walker:
        if names is None:
            try:
                names = [e.name for e in os.scandir(dirpath) if not e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
        for name in names:
            p = Path(dirpath) / name
            if name.startswith(".") and ".partial" in name and is_abandoned_partial(p):
                try:
                    p.unlink()
                    removed.append(p)
                except OSError:
                    pass
    return removed


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(dest: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it is fsynced and renamed onto ``dest``.

    The temporary name is ``.<stem>.~<host>~<pid>~<random>.partial<suffix>`` (the suffix keeps
    writers that pick a format from the extension working; host and pid let
    :func:`clean_partials` remove it once its writer is dead). On an exception the
    temporary file is removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sfx = suffix if suffix is not None else dest.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=partial_prefix(dest), suffix=f".partial{sfx}", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(dest: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically; returns ``dest``."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_write_text(dest: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``dest`` atomically; returns ``dest``."""
    return atomic_write_bytes(dest, text.encode("utf-8"))
