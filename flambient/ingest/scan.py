"""Finding a shoot's image files and reading each one's EXIF, format and preview.

A scan takes image files by extension (content decides the reader later) and leaves out
everything flambient wrote itself: hidden files and folders, ``final/``, any folder given in
``exclude`` (the run's output folder), any sub-folder holding flambient's output markers, and
any file that has a flambient sidecar (a final). Output markers, in both layouts of an output
folder:

- old layout (beside the finals): ``.flambient-locks/``, ``flambient-process.log``,
  ``flambient-summary*.json``, ``<final>.json`` sidecars;
- new layout: ``OUT/.flambient/`` holding anything besides a shoot's own state
  (``manifest.yaml``, ``cache/``): sidecars, summaries, the log, locks;
- a synthetic shoot's truth folder (``flambient synth`` and ``flambient demo``: ``truth/``
  with a ``sets.yaml`` whose ``format`` is ``flambient-synth-truth``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..brackets import Frame
from ..errors import InputError, describe_os_error
from ..io.exif import read_exif
from ..io.images import IMAGE_EXTENSIONS, read_preview
from ..io.sniff import sniff_format
from ..log import get_logger
from ..synth.shoot import TRUTH_FORMAT

log = get_logger("ingest")

#: A shoot's (and, in the new layout, an output folder's) state folder.
STATE_DIR = ".flambient"
#: Sub-folders a recursive scan never enters by name (the default output of ``process``).
SKIP_DIRS = frozenset({"final", STATE_DIR})
#: What a shoot's own state folder holds; anything else there marks an output folder.
SHOOT_STATE = frozenset({"manifest.yaml", "cache"})
#: Files and folders that ``process`` writes beside finals (the old output layout).
OUTPUT_MARKERS = frozenset({".flambient-locks", "flambient-process.log"})
SUMMARY_PREFIX = "flambient-summary"
#: The index of a synthetic shoot's truth folder; its first line names :data:`TRUTH_FORMAT`.
SYNTH_TRUTH_INDEX = "sets.yaml"
RAW_EXTS = IMAGE_EXTENSIONS - {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".exr"}


def rel_path(p: Path, shoot: Path) -> str:
    """``p`` relative to ``shoot`` as a POSIX string (``str(p)`` when outside it)."""
    try:
        return p.relative_to(shoot).as_posix()
    except ValueError:
        return str(p)


def stat_or_none(p: Path) -> os.stat_result | None:
    """``p.stat()``, or None for a vanished file, a broken symbolic link or a link loop."""
    try:
        return p.stat()
    except OSError:
        return None


def stamp(st: os.stat_result | None) -> dict[str, Any]:
    """``{size, mtime}`` of a stat result (zeros for None), as the manifest records files."""
    return {"size": int(st.st_size), "mtime": float(st.st_mtime)} if st else {"size": 0, "mtime": 0.0}


# ----------------------------------------------------------------------------- what flambient wrote


def _is_partial(name: str) -> bool:
    return name.startswith(".") and ".partial" in name


def is_output_folder(folder: Path, names: Iterable[str] | None = None) -> bool:
    """Whether ``folder`` holds flambient's output markers (see the module docstring).

    ``names`` are the folder's entries when already listed (saves a listing).
    """
    entries = set(names) if names is not None else set(os.listdir(folder))
    if entries & OUTPUT_MARKERS:
        return True
    if any(n.startswith(SUMMARY_PREFIX) and n.endswith(".json") for n in entries):
        return True
    if SYNTH_TRUTH_INDEX in entries and _is_synth_truth(folder / SYNTH_TRUTH_INDEX):
        return True
    if STATE_DIR in entries:
        try:
            state = {n for n in os.listdir(folder / STATE_DIR) if not _is_partial(n)}
        except OSError:
            return False
        if state - SHOOT_STATE:
            return True
    return False


def _is_synth_truth(index: Path) -> bool:
    """Whether ``index`` (a ``sets.yaml``) is a synthetic shoot's truth index: its first line is
    ``format: flambient-synth-truth`` (the synth writers put ``format`` first). Unreadable: no."""
    try:
        with open(index, encoding="utf-8") as f:
            first = f.readline(200)
    except (OSError, UnicodeDecodeError):
        return False
    return first.strip() == f"format: {TRUTH_FORMAT}"


def _sidecar_names(folder: Path, names: set[str]) -> set[str]:
    """Names ``<final>.json`` of flambient sidecars beside the finals or under ``folder/.flambient/``."""
    found = {n for n in names if n.endswith(".json")}
    state = folder / STATE_DIR
    if STATE_DIR in names and state.is_dir():
        found |= {p.name for p in state.rglob("*.json") if "cache" not in p.relative_to(state).parts}
    return found


def _is_sidecar(path: Path) -> bool:
    """Whether ``path`` is a JSON document with a final's fingerprint (a flambient sidecar)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "fingerprint" in doc


def finals_in(folder: Path, names: set[str]) -> set[str]:
    """The image files among ``names`` that are flambient finals (a sidecar names them)."""
    sidecars = _sidecar_names(folder, names)
    out: set[str] = set()
    for n in names:
        if n + ".json" not in sidecars:
            continue
        for cand in (folder / (n + ".json"), *((folder / STATE_DIR).rglob(n + ".json"))):
            if cand.is_file() and _is_sidecar(cand):
                out.add(n)
                break
    return out


# ----------------------------------------------------------------------------- scanning


def _check_root(root: Path) -> None:
    if not root.exists():
        raise InputError("shoot folder not found", root, "check the path")
    if not root.is_dir():
        raise InputError("not a folder", root, "pass the folder that holds the shoot's frames")
    try:
        os.listdir(root)
    except OSError as exc:
        raise InputError(f"cannot list the shoot folder ({exc.strerror or exc})", root) from None


def _is_image(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def scan_shoot(shoot: str | Path, recursive: bool = False, problems: list[dict[str, Any]] | None = None,
               exclude: Iterable[str | Path] = ()) -> list[Path]:
    """Image files in ``shoot`` by extension, sorted, without anything flambient wrote.

    A recursive scan also enters sub-folders except hidden ones, ``final/``, the folders in
    ``exclude`` and folders holding flambient's output markers; finals (files with a
    flambient sidecar) are left out everywhere. A sub-folder that cannot be listed is
    appended to ``problems`` as ``{path, error}`` (path relative to ``shoot``). Raises
    :class:`InputError` when ``shoot`` is missing, not a folder, cannot be listed, or holds
    no images.
    """
    root = Path(shoot)
    _check_root(root)
    skip = {Path(p).resolve() for p in exclude}

    def unlistable(exc: OSError) -> None:
        where = rel_path(Path(exc.filename), root) if exc.filename else "?"
        log.debug("cannot list %s: %s", where, exc)
        if problems is not None:
            problems.append({"path": where, "error": f"cannot list folder ({exc.strerror or exc})"})

    def enter(dirpath: str, d: str) -> bool:
        if d.startswith(".") or d in SKIP_DIRS:
            return False
        sub = Path(dirpath) / d
        if sub.resolve() in skip:
            return False
        try:
            return not is_output_folder(sub)
        except OSError:
            return True  # os.walk reports it as unlistable

    files: list[Path] = []
    unread: list[tuple[str, int]] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable):
        images = {n for n in filenames if _is_image(n)}
        finals = finals_in(Path(dirpath), set(filenames) | set(dirnames)) if images else set()
        if not recursive:
            unread = _images_in([Path(dirpath) / d for d in sorted(dirnames) if enter(dirpath, d)])
        dirnames[:] = sorted(d for d in dirnames if recursive and enter(dirpath, d))
        files += [Path(dirpath) / n for n in sorted(images - finals)]
        if not recursive:
            break
    if not files:
        hint = ("the images are in sub-folders: ingest each sub-folder, or use --recursive" if unread
                else "expected RAW, JPEG, PNG, TIFF or EXR frames")
        raise InputError("no images in the shoot folder", root, hint)
    if unread:
        _warn_unread(root, unread)
    return files


def _images_in(folders: list[Path]) -> list[tuple[str, int]]:
    """(name, count) of the ``folders`` that directly hold image files (by extension), in order;
    a folder that cannot be listed counts as none."""
    found = []
    for folder in folders:
        try:
            n = sum(1 for e in os.scandir(folder) if e.is_file() and _is_image(e.name))
        except OSError:
            continue
        if n:
            found.append((folder.name, n))
    return found


def _warn_unread(root: Path, unread: list[tuple[str, int]], shown: int = 3) -> None:
    """One warning line for the sub-folders holding images (``unread``: name, count) that a scan
    without ``recursive`` left out beside the frames it read: a shoot sorted into room folders
    beside loose frames would otherwise lose those rooms without a word."""
    names = ", ".join(f"{name}/ ({n})" for name, n in unread[:shown])
    more = f" and {len(unread) - shown} more" if len(unread) > shown else ""
    log.warning("%s: %d image(s) in sub-folders not read: %s%s; add --recursive to read them",
                root, sum(n for _, n in unread), names, more)


# ----------------------------------------------------------------------------- analysis


def analyse_file(path: Path, preview_size: int = 512) -> Frame:
    """EXIF, format, size and a linear preview of one file (raises :class:`InputError`)."""
    st = path.stat()
    fmt = sniff_format(path)
    preview, (h, w) = read_preview(path, preview_size)
    exif = read_exif(path)
    if fmt == "tiff":
        from ..io.images import is_plain_tiff

        fmt = "tiff" if is_plain_tiff(path) else "raw"
    # float16 halves the memory of a 400-frame shoot's previews (~2 MB -> 1 MB each at 512 px)
    return Frame(path=path, exif=exif, fmt=fmt, height=h, width=w, size=st.st_size, mtime=st.st_mtime,
                 preview=np.minimum(preview, 60000.0).astype(np.float16))


def analyse_safe(path: Path, preview_size: int) -> Frame | InputError:
    """:func:`analyse_file`, with every failure returned as an :class:`InputError` naming the file."""
    try:
        return analyse_file(path, preview_size)
    except InputError as exc:
        return exc
    except MemoryError:
        return InputError("out of memory while reading", path)
    except OSError as exc:  # a vanished file, a broken symbolic link, a link loop, no permission
        if path.is_symlink() and not path.exists():
            return InputError("broken symbolic link (or a link loop)", path)
        return InputError(f"cannot read ({describe_os_error(exc, with_path=False)})", path)
    except Exception as exc:  # a reader bug must not stop the batch; report it per file
        return InputError(f"cannot read ({type(exc).__name__}: {exc})", path)
