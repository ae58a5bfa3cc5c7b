"""The manifest of an ingested shoot: ``SHOOT/.flambient/manifest.yaml``, its reader, writer and freshness.

See :mod:`flambient.ingest` for the document's layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..brackets import Alignment, BracketSet, Frame, GroupingConfig
from ..errors import InputError, first_line
from ..io.atomic import atomic_write_text
from ..io.exif import ExifInfo
from ..outcome import ItemError, batch_exit_code
from ..safepath import check_name, contained
from .scan import STATE_DIR, rel_path, scan_shoot, stat_or_none

MANIFEST_FORMAT = "flambient-manifest"
#: 2: grouping by feature evidence (issue 12) and the ``grouping`` record; older manifests are re-made.
MANIFEST_VERSION = 2


@dataclass
class Manifest:
    """The result of ingesting a shoot: bracket sets plus per-file errors and warnings.

    ``errors``/``warnings`` are dicts ``{path, error|warning, size, mtime}`` with ``path``
    relative to ``shoot``. ``files`` maps every scanned relative path to ``(size, mtime)``.
    """

    shoot: Path
    sets: list[BracketSet]
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    config: GroupingConfig = field(default_factory=GroupingConfig)
    files: dict[str, tuple[int, float]] = field(default_factory=dict)
    recursive: bool = False
    #: Folders (relative to ``shoot``) the scan left out besides flambient's own: ``process --out``.
    exclude: list[str] = field(default_factory=list)
    #: Per grouped frame: ``{path, set, joined, sure, reason, pause_s?, similarity?, inliers?, drift?}``.
    grouping: list[dict[str, Any]] = field(default_factory=list)
    #: Manifest format version it was written with (older ones are never reused).
    version: int = MANIFEST_VERSION

    @property
    def path(self) -> Path:
        """Where the manifest lives: ``SHOOT/.flambient/manifest.yaml``."""
        return manifest_path(self.shoot)

    @property
    def failures(self) -> list[ItemError]:
        """``errors`` as the shared per-item failure records (the item is the file)."""
        return [ItemError(str(e.get("path")), str(e.get("error")), str(e.get("path"))) for e in self.errors]

    @property
    def exit_code(self) -> int:
        """The batch exit rule over the files that could not be used (:func:`~flambient.outcome.batch_exit_code`)."""
        return batch_exit_code(self.failures)

    def set_by_name(self, name: str) -> BracketSet:
        """The set called ``name`` (KeyError when absent)."""
        for s in self.sets:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """YAML-safe document (see the module docstring for the layout)."""
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "config": self.config.to_dict(),
            "recursive": bool(self.recursive),
            "exclude": list(self.exclude),
            "sets": [_set_to_dict(s, self.shoot) for s in self.sets],
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "grouping": list(self.grouping),
        }


def error_entry(rel: str, exc: BaseException, size: int, mtime: float) -> dict[str, Any]:
    """A manifest ``errors`` entry: ``{path, error, size, mtime}`` (the error text without the path)."""
    return {"path": rel, "error": ItemError.from_exception(rel, exc, rel).brief(), "size": int(size),
            "mtime": float(mtime)}


def manifest_path(shoot: str | Path) -> Path:
    """``SHOOT/.flambient/manifest.yaml``."""
    return Path(shoot) / STATE_DIR / "manifest.yaml"


# ----------------------------------------------------------------------------- manifest I/O


def _frame_to_dict(f: Frame, shoot: Path) -> dict[str, Any]:
    d: dict[str, Any] = {
        "path": rel_path(f.path, shoot),
        "role": f.role,
        "ev": round(float(f.ev), 4),
        "ev_source": f.ev_source,
        "role_source": f.role_source,
        "format": f.fmt,
        "width": int(f.width),
        "height": int(f.height),
        "size": int(f.size),
        "mtime": float(f.mtime),
    }
    d.update(f.exif.to_dict())
    d["align"] = f.align.to_dict() if f.align is not None else None
    return d


def _set_to_dict(s: BracketSet, shoot: Path) -> dict[str, Any]:
    return {"name": s.name, "reference": int(s.reference), "handheld": bool(s.handheld),
            "frames": [_frame_to_dict(f, shoot) for f in s.frames]}


def write_manifest(manifest: Manifest) -> Path:
    """Write ``SHOOT/.flambient/manifest.yaml`` atomically; returns its path."""
    doc = manifest.to_dict()
    doc["files"] = {k: [v[0], v[1]] for k, v in sorted(manifest.files.items())}
    return atomic_write_text(manifest.path, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def load_manifest(shoot: str | Path) -> Manifest | None:
    """Read ``SHOOT/.flambient/manifest.yaml``; None when there is none.

    Raises :class:`InputError` when it exists but is malformed (delete it and re-ingest).
    """
    root = Path(shoot).resolve()
    mp = manifest_path(root)
    if not mp.is_file():
        return None
    try:
        doc = yaml.safe_load(mp.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise ValueError("not a flambient manifest")
        sets = []
        for sd in doc.get("sets") or []:
            name = check_name(sd["name"], mp, "set name")  # names become final and lock file names
            frames = [_frame_from_dict(fd, root, mp) for fd in sd["frames"]]
            sets.append(BracketSet(name=name, frames=frames, reference=int(sd.get("reference", 0)),
                                   handheld=bool(sd.get("handheld", False))))
        files = {str(k): (int(v[0]), float(v[1])) for k, v in (doc.get("files") or {}).items()}
        return Manifest(shoot=root, sets=sets, errors=list(doc.get("errors") or []),
                        warnings=list(doc.get("warnings") or []),
                        config=GroupingConfig.from_dict(doc.get("config")), files=files,
                        recursive=bool(doc.get("recursive", False)), grouping=list(doc.get("grouping") or []),
                        exclude=[str(x) for x in doc.get("exclude") or []],
                        version=int(doc.get("version", 1)))
    except (yaml.YAMLError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"malformed manifest ({first_line(exc, 120)})", mp,
                         "delete it and run `flambient ingest` again") from None


def _frame_from_dict(fd: dict[str, Any], root: Path, source: Path | None = None) -> Frame:
    return Frame(
        path=contained(root, fd["path"], source, "frame path"),
        exif=ExifInfo.from_dict(fd),
        fmt=str(fd.get("format", "")),
        height=int(fd.get("height", 0)),
        width=int(fd.get("width", 0)),
        size=int(fd.get("size", 0)),
        mtime=float(fd.get("mtime", 0.0)),
        role=str(fd.get("role", "ambient")),
        ev=float(fd.get("ev", 0.0)),
        ev_source=str(fd.get("ev_source", "")),
        role_source=str(fd.get("role_source", "")),
        align=Alignment.from_dict(fd.get("align")),
    )


def manifest_is_fresh(manifest: Manifest, config: GroupingConfig | None = None,
                      recursive: bool = False, exclude: Iterable[Path] = ()) -> bool:
    """True when the shoot's image files (names, sizes, mtimes) are exactly those ingested.

    The folder is scanned the way it was at ingest (recursive or not, the same folders left
    out, and those in ``exclude``). With ``config``, the manifest must also have been made
    with the same grouping settings; with ``recursive``, by a recursive scan. A manifest of an
    older format version is never fresh.
    """
    if manifest.version != MANIFEST_VERSION:
        return False  # grouped by an older version: ingest again
    if config is not None and config.to_dict() != manifest.config.to_dict():
        return False
    if recursive and not manifest.recursive:
        return False
    try:
        paths = scan_shoot(manifest.shoot, recursive=manifest.recursive,
                           exclude=[*excluded_paths(manifest), *exclude])
    except InputError:
        return False
    now: dict[str, tuple[int, float]] = {}
    for p in paths:
        st = stat_or_none(p)  # a broken link or loop was recorded as (0, 0.0) at ingest, like here
        now[rel_path(p, manifest.shoot)] = (st.st_size, st.st_mtime) if st else (0, 0.0)
    return now == manifest.files


def excluded_paths(manifest: Manifest) -> list[Path]:
    """The manifest's ``exclude`` folders as absolute paths (inside the shoot only)."""
    return [contained(manifest.shoot, x, manifest.path, "excluded folder") for x in manifest.exclude]


def fresh_manifest(shoot: str | Path, config: GroupingConfig | None = None,
                   recursive: bool = False) -> Manifest | None:
    """The shoot's manifest when it exists and is fresh, else None (for ``process`` reuse)."""
    m = load_manifest(shoot)
    if m is not None and manifest_is_fresh(m, config, recursive):
        return m
    return None


def set_input_files(bset: BracketSet) -> list[Path]:
    """Absolute paths of every file of the set, in capture order (for input hashing)."""
    return [f.path for f in bset.frames]
