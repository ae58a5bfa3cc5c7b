"""Containment of names and paths that come from files (manifests, dataset indexes, sidecars).

Shoot folders are shared between workstations, so a ``manifest.yaml`` or ``dataset.yaml`` may
have been written (or edited) elsewhere. Every set name and relative path read from such a file
goes through this module before anything is read, locked or written:

- :func:`check_name`: a name used as (part of) a file name must be a plain, visible file name:
  not empty, no ``/`` or ``\\``, no control characters, not ``.``/``..``, no leading dot, at
  most :data:`MAX_NAME_BYTES` bytes of UTF-8.
- :func:`contained`: a relative path must stay inside its base folder: not absolute, and no
  ``..`` step that climbs out of it (checked on the normalised text, before any file is
  touched). Symbolic links a user put inside the folder are still followed, as before.

Violations raise :class:`~flambient.errors.InputError` naming the file the value came from, so
the CLI prints one line and exits with status 2.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path, PurePosixPath

from .errors import InputError

#: Longest name accepted (bytes of UTF-8); file systems allow 255 and finals add a suffix.
MAX_NAME_BYTES = 200


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a safe file name (None when it is)."""
    if not isinstance(name, str) or not name:
        return "empty or not text"
    if name in (".", ".."):
        return "a relative folder name"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if name.startswith("."):
        return "starts with '.' (a hidden file)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains control characters"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes"
    return None


def check_name(name: object, source: str | Path | None, what: str = "name") -> str:
    """Return ``name`` when it is a safe file name, else raise :class:`InputError` naming ``source``."""
    why = name_problem(name)
    if why is not None:
        raise InputError(f"unsafe {what} {str(name)[:80]!r}: {why}", source,
                         "the file was not written by flambient or was edited; delete it and run again")
    return str(name)


def contained(base: str | Path, rel: object, source: str | Path | None, what: str = "path") -> Path:
    """``base / rel`` when the relative path ``rel`` stays inside ``base``; else :class:`InputError`.

    ``rel`` uses ``/`` separators (as flambient writes them). Absolute paths, drive letters,
    NUL bytes and ``..`` steps that leave ``base`` are refused.
    """
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise InputError(f"bad {what} {str(rel)[:80]!r}", source, "expected a relative path")
    text = rel.replace("\\", "/")
    norm = posixpath.normpath(text)
    if (PurePosixPath(text).is_absolute() or (len(text) > 1 and text[1] == ":")
            or norm == ".." or norm.startswith("../")):
        raise InputError(f"{what} {rel[:80]!r} points outside {base}", source,
                         "the file was not written by flambient or was edited; delete it and run again")
    return Path(base) / Path(*norm.split("/")) if norm != "." else Path(base)


def inside(base: str | Path, path: str | Path) -> bool:
    """Whether ``path`` is ``base`` or below it, after resolving both (symlinks followed)."""
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(base))
    except ValueError:
        return False
    return True
