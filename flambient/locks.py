"""Per-set locks so several processes (or machines) can share one shoot folder.

A lock is a small JSON file holding the owner's host, pid, a random token and the start time;
its mtime is the heartbeat, refreshed by a background thread while the set is being processed.
It is published atomically: the JSON is written and fsynced under a temporary name, then
hard-linked to the lock's name (``link`` fails when the name exists, like ``O_EXCL``, on local
filesystems and NFS), so a lock file is never empty or half written, even when the disk fills.
A lock that cannot be read anyway (written by an older version, or damaged) is judged by its
mtime alone.

A lock is stale, and taken over, when its owner is on this host and its pid is dead, or when
its heartbeat is older than ``stale_after`` seconds (a crashed machine, a hung process).
Takeover renames the stale file to a unique name (only one contender can win that rename),
checks that it renamed the stale lock it judged (same token), and then competes for a fresh
``O_EXCL`` create like everybody else. The owner checks its token before publishing its
final (:meth:`SetLock.still_held`), so a process whose lock was taken over never overwrites
the new owner's work.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

from .io.atomic import partial_prefix
from .log import get_logger

log = get_logger("locks")

_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.ENOSYS, errno.EMLINK}

#: Seconds without a heartbeat after which a lock is considered abandoned.
DEFAULT_STALE_AFTER = 300.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class SetLock:
    """The lock of one set: ``path`` is ``<out>/.flambient/locks/<set>.lock``.

    Use :meth:`acquire` (non-blocking, returns bool), then :meth:`release`; while held, a
    heartbeat thread touches the file every ``stale_after / 5`` seconds.
    """

    def __init__(self, path: str | Path, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.path = Path(path)
        self.stale_after = float(stale_after)
        self.token = secrets.token_hex(8)
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- owner info
    def owner(self) -> dict[str, Any] | None:
        """The current lock file's content plus its heartbeat ``age`` (None when there is no lock).

        A lock whose content cannot be read or parsed gives ``{"age": ..., "unreadable": True}``
        with the age from its mtime, so it goes stale like any other.
        """
        try:
            st = self.path.stat()
        except OSError:
            return None
        age = time.time() - st.st_mtime
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"age": age, "unreadable": True}
        if not isinstance(doc, dict):
            return {"age": age, "unreadable": True}
        doc["age"] = age
        return doc

    def _is_stale(self, info: dict[str, Any]) -> bool:
        if info.get("age", 0.0) > self.stale_after:
            return True
        if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
            return not _pid_alive(int(info["pid"]))
        return False

    # -------------------------------------------------------------- acquire / release
    def _create(self) -> bool:
        """Publish a complete lock file under :attr:`path` unless one exists (OSError: disk full...)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "started": time.time()}
        tmp = self.path.with_name(f"{partial_prefix(self.path)}{self.token}.partial")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                return self._create_excl(doc)  # a filesystem without hard links (FAT, some SMB)
            return True
        finally:
            try:
                tmp.unlink()
            except OSError:
                pass

    def _create_excl(self, doc: dict[str, Any]) -> bool:
        """Fallback: ``O_CREAT | O_EXCL`` then write; a failed write removes the lock again."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        return True

    def acquire(self) -> bool:
        """Try to take the lock once (taking over a stale one); True when this process holds it."""
        if self.held:
            return True
        for _ in range(3):
            if self._create():
                self.held = True
                self._start_heartbeat()
                return True
            info = self.owner()
            if info is None:
                continue  # released in between: try again
            if not self._is_stale(info):
                return False
            if self._take_over(info):
                continue
            return False
        return False

    def _take_over(self, info: dict[str, Any]) -> bool:
        grave = self.path.with_name(f"{self.path.name}.stale-{self.token}")
        try:
            os.rename(self.path, grave)
        except OSError:
            return True  # somebody else moved it first: compete for the create again
        try:
            moved = json.loads(grave.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            moved = {}
        if isinstance(moved, dict) and moved.get("token") != info.get("token"):
            # We moved a lock that was re-created after we judged the old one stale: put it back.
            try:
                os.link(grave, self.path)
            except OSError:
                pass
            grave.unlink(missing_ok=True)
            return False
        grave.unlink(missing_ok=True)
        log.warning("took over the stale lock %s (was %s pid %s)", self.path.name, info.get("host"), info.get("pid"))
        return True

    def still_held(self) -> bool:
        """Whether the lock file on disk is still this process's (check before publishing)."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(doc, dict) and doc.get("token") == self.token

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.held and self.still_held():
            self.path.unlink(missing_ok=True)
        self.held = False

    # -------------------------------------------------------------- heartbeat
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        period = max(0.5, self.stale_after / 5.0)

        def beat() -> None:
            while not self._stop.wait(period):
                try:
                    os.utime(self.path)
                except OSError:
                    return

        self._thread = threading.Thread(target=beat, name=f"lock-{self.path.stem}", daemon=True)
        self._thread.start()

    def __enter__(self) -> SetLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
