"""Shoot folder -> bracket sets: the manifest, the frame cache and the model input stacks.

``ingest_shoot(SHOOT)`` reads every image file directly in ``SHOOT`` (content decides the
format), reads EXIF, makes a small linear preview of each frame in parallel, groups frames
into bracket sets, labels roles and exposures, registers handheld frames, and writes
``SHOOT/.flambient/manifest.yaml``. Nothing else in ``SHOOT`` is touched. With ``cache`` it
also writes the frames each set's model stack uses, exposure-normalised and aligned, as
half-float OpenEXR under ``SHOOT/.flambient/cache/<set>/``.

Manifest (YAML)::

    format: flambient-manifest
    version: 2
    config: {...GroupingConfig...}
    sets:
      - name: mariposa-0001          # from the first frame's stem; filesystem-safe, unique
        reference: 0                 # index of the reference ambient frame
        handheld: false
        frames:
          - {path: mariposa-0001.jpg, role: ambient, ev: 0.0, ev_source: exif, role_source: exif,
             format: jpeg, width: 1280, height: 852, size: 302337, mtime: 1700000000.0,
             capture_time: '2025-10-29T12:31:41.070000-07:00', exposure_time: 0.1667,
             f_number: 7.1, iso: 400, exposure_bias: 1.0, flash_fired: false, make: ...,
             model: ..., lens: ..., focal_length: 15.0, orientation: 1, align: null}
    errors:   [{path: bad.nef, error: "truncated RAW file: ...", size: ..., mtime: ...}]
    grouping: [{path: mariposa-0002.jpg, set: mariposa-0001, joined: true, sure: true,
                reason: similar pictures, pause_s: 49.4, similarity: 0.711}]   # one per frame
    warnings: [{path: x.nef, warning: "content is JPEG ..."}]
    recursive: false                 # how SHOOT was scanned
    files: {mariposa-0001.jpg: [302337, 1700000000.0], ...}   # every scanned file: size, mtime

``path`` is relative to SHOOT; ``ev`` is the frame's exposure relative to the reference
(normalise with ``frame * 2**-ev``); ``align`` is the registration onto the reference frame
(matrix in full-resolution pixels, shift, rotation, residual, whether it is applied).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .align import estimate_alignment, warp_to_reference
from .brackets import Alignment, BracketSet, Decision, Frame, GroupingConfig, group_frames, label_set, name_sets
from .errors import InputError, describe_os_error
from .io.atomic import atomic_write_text, clean_partials
from .io.exif import ExifInfo, read_exif
from .io.images import IMAGE_EXTENSIONS, read_exr, read_linear, read_preview, write_exr
from .io.raw import decode_raw_u16
from .io.sniff import sniff_format
from .log import get_logger
from .safepath import check_name, contained
from .stack import AMBIENT, FLASH, HAS_FLASH, HAS_MASK, HAS_WINDOW, MASK, STACK_CHANNELS, WINDOW

log = get_logger("ingest")

MANIFEST_FORMAT = "flambient-manifest"
#: 2: grouping by feature evidence (issue 12) and the ``grouping`` record; older manifests are re-made.
MANIFEST_VERSION = 2
STATE_DIR = ".flambient"
#: Sub-folders a recursive scan never enters (outputs of ``process`` and hidden folders).
SKIP_DIRS = frozenset({"final", STATE_DIR})
_RAW_EXTS = IMAGE_EXTENSIONS - {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".exr"}


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
    #: Per grouped frame: ``{path, set, joined, sure, reason, pause_s?, similarity?, inliers?, drift?}``.
    grouping: list[dict[str, Any]] = field(default_factory=list)
    #: Manifest format version it was written with (older ones are never reused).
    version: int = MANIFEST_VERSION

    @property
    def path(self) -> Path:
        """Where the manifest lives: ``SHOOT/.flambient/manifest.yaml``."""
        return manifest_path(self.shoot)

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
            "sets": [_set_to_dict(s, self.shoot) for s in self.sets],
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "grouping": list(self.grouping),
        }


def manifest_path(shoot: str | Path) -> Path:
    """``SHOOT/.flambient/manifest.yaml``."""
    return Path(shoot) / STATE_DIR / "manifest.yaml"


def cache_dir(shoot: str | Path, set_name: str) -> Path:
    """``SHOOT/.flambient/cache/<set>/``: the set's normalised frames as half-float EXR."""
    return Path(shoot) / STATE_DIR / "cache" / set_name


# ----------------------------------------------------------------------------- scanning


def scan_shoot(shoot: str | Path, recursive: bool = False,
               problems: list[dict[str, Any]] | None = None) -> list[Path]:
    """Image files in ``shoot`` by extension (content decides the reader later), sorted.

    Hidden files are skipped; a recursive scan skips hidden folders and ``final/``. A
    sub-folder that cannot be listed is appended to ``problems`` as ``{path, error}`` (path
    relative to ``shoot``). Raises :class:`InputError` when ``shoot`` is missing, not a folder,
    cannot be listed, or holds no images.
    """
    root = Path(shoot)
    if not root.exists():
        raise InputError("shoot folder not found", root, "check the path")
    if not root.is_dir():
        raise InputError("not a folder", root, "pass the folder that holds the shoot's frames")
    try:
        os.listdir(root)
    except OSError as exc:
        raise InputError(f"cannot list the shoot folder ({exc.strerror or exc})", root) from None

    def unlistable(exc: OSError) -> None:
        where = _rel(Path(exc.filename), root) if exc.filename else "?"
        log.debug("cannot list %s: %s", where, exc)
        if problems is not None:
            problems.append({"path": where, "error": f"cannot list folder ({exc.strerror or exc})"})

    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                files.append(Path(dirpath) / name)
        if not recursive:
            break
    if not files:
        hint = "expected RAW, JPEG, PNG, TIFF or EXR frames"
        if not recursive and any(
            p.suffix.lower() in IMAGE_EXTENSIONS for p in root.glob("*/*") if not p.parent.name.startswith(".")
        ):
            hint = "the images are in sub-folders: ingest each sub-folder, or use --recursive"
        raise InputError("no images in the shoot folder", root, hint)
    return files


def _rel(p: Path, shoot: Path) -> str:
    try:
        return p.relative_to(shoot).as_posix()
    except ValueError:
        return str(p)


# ----------------------------------------------------------------------------- analysis


def analyse_file(path: Path, preview_size: int = 512) -> Frame:
    """EXIF, format, size and a linear preview of one file (raises :class:`InputError`)."""
    st = path.stat()
    fmt = sniff_format(path)
    preview, (h, w) = read_preview(path, preview_size)
    exif = read_exif(path)
    if fmt == "tiff":
        from .io.images import is_plain_tiff

        fmt = "tiff" if is_plain_tiff(path) else "raw"
    # float16 halves the memory of a 400-frame shoot's previews (~2 MB -> 1 MB each at 512 px)
    return Frame(path=path, exif=exif, fmt=fmt, height=h, width=w, size=st.st_size, mtime=st.st_mtime,
                 preview=np.minimum(preview, 60000.0).astype(np.float16))


def _analyse_safe(path: Path, preview_size: int) -> Frame | InputError:
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


def _parallel(func: Any, items: list[Any], n_jobs: int | None) -> list[Any]:
    """Run ``func`` over ``items`` on a thread pool (rawpy, Pillow and OpenCV release the GIL)."""
    if not items:
        return []
    from joblib import Parallel, delayed

    jobs = n_jobs if n_jobs else min(len(items), os.cpu_count() or 1)
    if jobs == 1 or len(items) == 1:
        return [func(x) for x in items]
    return list(Parallel(n_jobs=jobs, prefer="threads")(delayed(func)(x) for x in items))


# ----------------------------------------------------------------------------- ingest


def ingest_shoot(
    shoot: str | Path,
    *,
    cache: bool = False,
    config: GroupingConfig | None = None,
    n_jobs: int | None = None,
    recursive: bool = False,
) -> Manifest:
    """Ingest the shoot folder and write ``SHOOT/.flambient/manifest.yaml``; returns the manifest.

    Every file that cannot be used gets an entry in ``manifest.errors`` (and one log line);
    all other files are still grouped. Raises :class:`InputError` only for a missing folder or
    a folder without images. ``n_jobs`` threads decode in parallel (default: all cores).
    """
    root = Path(shoot).resolve()
    cfg = config or GroupingConfig()
    unlisted: list[dict[str, Any]] = []
    paths = scan_shoot(root, recursive=recursive, problems=unlisted)
    clean_partials(root / STATE_DIR, recursive=True)  # temp files of a killed ingest
    results = _parallel(lambda p: _analyse_safe(p, cfg.preview_size), paths, n_jobs)
    frames: list[Frame] = []
    errors: list[dict[str, Any]] = [{**u, "size": 0, "mtime": 0.0} for u in unlisted]
    warnings: list[dict[str, Any]] = []
    files: dict[str, tuple[int, float]] = {}
    for p, res in zip(paths, results):
        rel = _rel(p, root)
        st = _stat(p)
        files[rel] = (st.st_size, st.st_mtime) if st else (0, 0.0)
        if isinstance(res, InputError):
            errors.append({"path": rel, "error": _short(res), **_stamp(st)})
            continue
        frames.append(res)
        if p.suffix.lower() in _RAW_EXTS and res.fmt != "raw":
            warnings.append({"path": rel, "warning": f"content is {res.fmt.upper()} though the name says "
                             f"{p.suffix}; read as {res.fmt.upper()}", **_stamp(st)})
    decisions: list[Decision] = []
    groups = group_frames(frames, cfg, decisions)
    groups = _check_cameras(groups, cfg, root, errors, warnings)
    kept = {id(f) for g in groups for f in g}
    frames = [f for f in frames if id(f) in kept]
    sets = [BracketSet(name=n, frames=g) for n, g in zip(name_sets(groups), groups)]
    grouping = _grouping_record(decisions, sets, root, kept)
    _warn_unsure(sets, grouping, root, warnings)
    for bset in sets:
        bset.reference = label_set(bset.frames, cfg)
        _align_set(bset, cfg)
    manifest = Manifest(shoot=root, sets=sets, errors=errors, warnings=warnings, config=cfg, files=files,
                        recursive=recursive, grouping=grouping)
    for e in errors:
        log.error("%s: %s", e["path"], e["error"])
    for w in warnings:
        log.warning("%s: %s", w["path"], w["warning"])
    write_manifest(manifest)
    for f in frames:
        f.preview = None  # free memory; previews are not part of the manifest
    # Hand back exactly what a later run reads from disk (EV and alignment as stored), so the
    # first `process` after an ingest gives the same pixels as every rerun.
    manifest = load_manifest(root) or manifest
    if cache:
        write_cache(manifest, n_jobs=n_jobs)
    log.info("%d frame(s) -> %d set(s), %d error(s): %s", len(frames), len(sets), len(errors), manifest.path)
    return manifest


def _short(exc: InputError) -> str:
    """The error text without the path (the manifest entry carries the path)."""
    hint = f" ({exc.hint})" if exc.hint else ""
    return f"{exc.message}{hint}"


def _stat(p: Path) -> os.stat_result | None:
    """``p.stat()``, or None for a vanished file, a broken symbolic link or a link loop."""
    try:
        return p.stat()
    except OSError:
        return None


def _stamp(st: os.stat_result | None) -> dict[str, Any]:
    return {"size": int(st.st_size), "mtime": float(st.st_mtime)} if st else {"size": 0, "mtime": 0.0}


def _check_cameras(groups: list[list[Frame]], cfg: GroupingConfig, root: Path,
                   errors: list[dict[str, Any]], warnings: list[dict[str, Any]]) -> list[list[Frame]]:
    """Sets of another camera than the shoot's main one, where that protects a bracket.

    Grouping keeps each camera's frames apart already. When the main camera (most frames)
    shot brackets (a set of two or more frames), frames of other cameras are most likely strays
    (a phone snapshot): they are reported as errors and left out, or with ``mixed_cameras:
    split`` kept in sets of their own with a warning. A folder of single images (no bracket
    of the main camera) from several cameras is fine: every image is its own set.
    """
    counts: dict[str, int] = {}
    for g in groups:
        for f in g:
            if f.exif.camera:
                counts[f.exif.camera] = counts.get(f.exif.camera, 0) + 1
    if len(counts) < 2:
        return groups
    main = max(counts, key=lambda c: counts[c])
    if not any(len(g) > 1 and g[0].exif.camera == main for g in groups):
        return groups  # single images: nothing to protect
    kept: list[list[Frame]] = []
    for g in groups:
        cam = g[0].exif.camera
        if cam is None or cam == main:
            kept.append(g)
            continue
        for f in g:
            msg = f"taken with {cam}, the rest of the shoot (brackets) with {main}"
            stamp = {"size": f.size, "mtime": f.mtime}
            if cfg.mixed_cameras == "split":
                warnings.append({"path": _rel(f.path, root), "warning": msg + "; kept in sets of its own", **stamp})
            else:
                errors.append({"path": _rel(f.path, root), "error": msg + " (one shoot folder holds one camera's "
                               "brackets: move it to its own folder, or pass --allow-mixed-cameras)", **stamp})
        if cfg.mixed_cameras == "split":
            kept.append(g)
    return kept


def _grouping_record(decisions: list[Decision], sets: list[BracketSet], root: Path,
                     kept: set[int]) -> list[dict[str, Any]]:
    """One YAML-safe entry per grouped frame: its set and why it joined or started it."""
    set_of = {id(f): s.name for s in sets for f in s.frames}
    out: list[dict[str, Any]] = []
    for d in decisions:
        if id(d.frame) not in kept:
            continue
        out.append({"path": _rel(d.frame.path, root), "set": set_of.get(id(d.frame)),
                    "joined": bool(d.joined), "sure": bool(d.sure), "reason": d.reason, **d.cues})
    return out


def _warn_unsure(sets: list[BracketSet], grouping: list[dict[str, Any]], root: Path,
                 warnings: list[dict[str, Any]]) -> None:
    """A warning per frame that joined its set on weak evidence (see :class:`~flambient.brackets.Decision`)."""
    frames = {_rel(f.path, root): f for s in sets for f in s.frames}
    for g in grouping:
        if g["joined"] and not g["sure"]:
            f = frames[g["path"]]
            warnings.append({"path": g["path"], "warning": f"joined set '{g['set']}' on weak evidence ({g['reason']}); "
                             "check it with `flambient ingest --explain`, or move the file to its own folder",
                             "size": f.size, "mtime": f.mtime})


def _align_set(bset: BracketSet, cfg: GroupingConfig) -> None:
    """Register every frame of ``bset`` onto the reference (on previews); marks handheld sets."""
    ref = bset.reference_frame
    bset.handheld = False
    for f in bset.frames:
        f.align = None
        if f is ref or f.preview is None or ref.preview is None or f.preview.shape != ref.preview.shape:
            continue
        try:
            f.align = estimate_alignment(ref.preview, f.preview, (ref.height, ref.width),
                                         size=cfg.preview_size, tripod_px=cfg.tripod_px)
        except Exception as exc:  # registration is best effort; an unaligned frame is still usable
            log.debug("alignment of %s failed: %s", f.path, exc)
            continue
    bset.handheld = any(f.align is not None and f.align.applied for f in bset.frames)
    if not bset.handheld:
        for f in bset.frames:
            if f.align is not None:
                f.align.applied = False


# ----------------------------------------------------------------------------- manifest I/O


def _frame_to_dict(f: Frame, shoot: Path) -> dict[str, Any]:
    d: dict[str, Any] = {
        "path": _rel(f.path, shoot),
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
                        version=int(doc.get("version", 1)))
    except (yaml.YAMLError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"malformed manifest ({str(exc).splitlines()[0][:120]})", mp,
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


def manifest_is_fresh(manifest: Manifest, config: GroupingConfig | None = None) -> bool:
    """True when the shoot's image files (names, sizes, mtimes) are exactly those ingested.

    The folder is scanned the way it was at ingest (recursive or not). With ``config``, the
    manifest must also have been made with the same grouping settings; a manifest of an older
    format version is never fresh.
    """
    if manifest.version != MANIFEST_VERSION:
        return False  # grouped by an older version: ingest again
    if config is not None and config.to_dict() != manifest.config.to_dict():
        return False
    try:
        paths = scan_shoot(manifest.shoot, recursive=manifest.recursive)
    except InputError:
        return False
    now: dict[str, tuple[int, float]] = {}
    for p in paths:
        st = _stat(p)  # a broken link or loop was recorded as (0, 0.0) at ingest, like here
        now[_rel(p, manifest.shoot)] = (st.st_size, st.st_mtime) if st else (0, 0.0)
    return now == manifest.files


def fresh_manifest(shoot: str | Path, config: GroupingConfig | None = None) -> Manifest | None:
    """The shoot's manifest when it exists and is fresh, else None (for ``process`` reuse)."""
    m = load_manifest(shoot)
    if m is not None and manifest_is_fresh(m, config):
        return m
    return None


def set_input_files(bset: BracketSet) -> list[Path]:
    """Absolute paths of every file of the set, in capture order (for input hashing)."""
    return [f.path for f in bset.frames]


# ----------------------------------------------------------------------------- frames and stacks


def load_frame(frame: Frame) -> np.ndarray:
    """Decode one frame at full resolution, exposure-normalised (``* 2**-ev``) and aligned.

    Returns linear float32 HxWx3. Raises :class:`InputError` naming the file when it cannot
    be decoded or no longer matches the size recorded at ingest.
    """
    img = read_linear(frame.path)
    if frame.height and frame.width and img.shape[:2] != (frame.height, frame.width):
        raise InputError(f"decoded size {img.shape[1]}x{img.shape[0]} differs from the manifest's "
                         f"{frame.width}x{frame.height}", frame.path, "the file changed: run `flambient ingest` again")
    if frame.ev:
        img *= np.float32(2.0 ** -frame.ev)
    return warp_to_reference(img, frame.align)


def _cache_file(shoot: Path, bset: BracketSet, frame: Frame) -> Path:
    return cache_dir(shoot, bset.name) / f"{frame.role}-{frame.stem}.exr"


def _cache_key(frame: Frame) -> dict[str, Any]:
    return {"size": int(frame.size), "mtime": float(frame.mtime), "ev": round(float(frame.ev), 4),
            "align": frame.align.to_dict() if frame.align is not None and frame.align.applied else None}


def _cache_index(shoot: Path, bset: BracketSet) -> dict[str, Any]:
    p = cache_dir(shoot, bset.name) / "cache.yaml"
    if not p.is_file():
        return {}
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _stack_frames(bset: BracketSet) -> list[Frame]:
    """Every frame the set's stack reads: ambient exposures (reference first), flashes, window."""
    _ref, flashes, window = bset.stack_frames()
    return [*bset.ambient_frames(), *flashes, *([window] if window is not None else [])]


def write_cache(manifest: Manifest, n_jobs: int | None = None) -> list[Path]:
    """Write each set's stack frames (normalised, aligned) as half-float EXR; returns the files.

    A set whose frame fails to decode gets an error entry in the manifest (rewritten) and no
    cache; the other sets are still cached.
    """
    shoot = manifest.shoot
    jobs = [(bset, f) for bset in manifest.sets for f in _stack_frames(bset)]

    def one(job: tuple[BracketSet, Frame]) -> Path | InputError:
        bset, f = job
        try:
            img = load_frame(f)
        except InputError as exc:
            return exc
        return write_exr(_cache_file(shoot, bset, f), img, half=True)

    results = _parallel(one, jobs, n_jobs)
    written: list[Path] = []
    failed = False
    for bset in manifest.sets:
        index: dict[str, Any] = {}
        for (b, f), res in zip(jobs, results):
            if b is not bset:
                continue
            if isinstance(res, InputError):
                failed = True
                rel = _rel(f.path, shoot)
                manifest.errors.append({"path": rel, "error": _short(res), "size": f.size, "mtime": f.mtime})
                log.error("%s: %s", rel, _short(res))
                continue
            index[res.name] = {"path": _rel(f.path, shoot), **_cache_key(f)}
            written.append(res)
        if index:
            atomic_write_text(cache_dir(shoot, bset.name) / "cache.yaml", yaml.safe_dump(index, sort_keys=True))
    if failed:
        write_manifest(manifest)
    return written


def load_set_stack(shoot: str | Path, bset: BracketSet, use_cache: bool = True, n_jobs: int | None = None) -> np.ndarray:
    """The model input stack of one set: float32 HxWx13 (layout of :mod:`flambient.stack`).

    Channels hold the ambient (the reference frame; for an exposure bracket the merge of its
    non-flash exposures, :func:`flambient.hdr.merge_exposures`), the mean of the flash frames
    and the darkest window-pull frame, each linear, exposure-normalised to the reference
    (``* 2**-ev``) and aligned when the set is handheld: the same array ``build_stack(ambient,
    mean(flash), window)`` gives. A one-frame set gives an ambient-only stack; a bracket
    without flash frames an ambient (+ window) stack with ``has_flash`` 0. Each needed frame is decoded
    once, in parallel; RAW frames stay 16-bit until they are scaled straight into the stack
    (one pass over memory instead of three). With ``use_cache``, fresh EXR frames written by
    ``ingest --cache`` are read instead of decoding. Raises :class:`InputError` naming the
    file when a frame is unreadable.
    """
    return assemble_stack(*load_set_parts(shoot, bset, use_cache=use_cache, n_jobs=n_jobs))


def load_set_parts(shoot: str | Path, bset: BracketSet, use_cache: bool = True, n_jobs: int | None = None,
                   ) -> tuple[tuple[np.ndarray, float], list[tuple[np.ndarray, float]], tuple[np.ndarray, float] | None]:
    """The decoded frames of one set before stacking: ``(ambient, flashes, window)`` parts.

    Each part is ``(pixels HxWx3, factor)`` as :func:`assemble_stack` takes them (RAW frames
    stay uint16); ``assemble_stack(*parts)`` is :func:`load_set_stack`. ``process`` keeps the
    parts and assembles the stack tile by tile, so memory stays bounded by the frames.
    """
    root = Path(shoot).resolve()
    _ref, flashes, window = bset.stack_frames()
    ambients = bset.ambient_frames()
    needed = _stack_frames(bset)
    index = _cache_index(root, bset) if use_cache else {}

    def get(f: Frame) -> tuple[np.ndarray, float]:
        cf = _cache_file(root, bset, f)
        entry = index.get(cf.name)
        if entry is not None and cf.is_file() and _entry_fresh(entry, f):
            try:
                img = read_exr(cf)
                if img.shape[:2] == (f.height, f.width):
                    return img, 1.0
            except InputError:
                pass  # a broken cache file is ignored; decode the original instead
        return _decode_for_stack(f)

    parts = _parallel(get, needed, n_jobs)
    h, w = parts[0][0].shape[:2]
    for f, (img, _s) in zip(needed[1:], parts[1:]):
        if img.shape[:2] != (h, w):
            raise InputError(f"frame size {img.shape[1]}x{img.shape[0]} differs from the reference "
                             f"{w}x{h} in set '{bset.name}'", f.path)
    na = len(ambients)
    ambient = parts[0]
    if na > 1:  # an exposure bracket: one merged linear ambient frame (flambient.hdr)
        from .hdr import merge_exposures

        ambient = (merge_exposures(parts[:na], [f.ev for f in ambients]), 1.0)
    return ambient, parts[na : na + len(flashes)], (parts[-1] if window is not None else None)


def _decode_for_stack(f: Frame) -> tuple[np.ndarray, float]:
    """``(pixels, factor)``: ``pixels * factor`` is the frame normalised and aligned.

    RAW frames stay uint16 (factor ``2**-ev / 65535``), handheld ones resampled onto the
    reference grid in uint16 too (bilinear, rounding error at most half a 16-bit level); others
    are float32 from :func:`load_frame` (factor 1).
    """
    if f.fmt == "raw":
        u16 = decode_raw_u16(f.path)
        if f.height and f.width and u16.shape[:2] != (f.height, f.width):
            raise InputError(f"decoded size {u16.shape[1]}x{u16.shape[0]} differs from the manifest's "
                             f"{f.width}x{f.height}", f.path, "the file changed: run `flambient ingest` again")
        return warp_to_reference(u16, f.align), float(2.0 ** -f.ev) / 65535.0
    return load_frame(f), 1.0


def assemble_stack(
    ambient: tuple[np.ndarray, float],
    flashes: list[tuple[np.ndarray, float]],
    window: tuple[np.ndarray, float] | None,
    band_bytes: int = 4 << 20,
    *,
    channels_first: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Build the float32 stack from ``(pixels HxWx3, factor)`` pairs in one pass over memory.

    Equivalent to ``build_stack(a * fa, mean(f_i * ff_i), w * fw)`` without the intermediate
    float frames: rows are filled in bands of about ``band_bytes`` so each band of the stack is
    written once while it is in cache (a 24 MP stack is 1.25 GB). Returns H x W x 13, or
    13 x H x W with ``channels_first`` (the model's tile layout); ``out``, when given, is a
    float32 array of that shape to fill (a reused tile buffer: no new pages per tile).
    """
    h, w = ambient[0].shape[:2]
    shape = (STACK_CHANNELS, h, w) if channels_first else (h, w, STACK_CHANNELS)
    if out is None or out.shape != shape or out.dtype != np.float32:
        out = np.empty(shape, dtype=np.float32)
    rows = max(1, band_bytes // (w * STACK_CHANNELS * 4))
    nf = len(flashes)

    def chan(o: np.ndarray, c: slice | int) -> np.ndarray:  # channels of a band of ``out``
        return o[c] if channels_first else o[:, :, c]

    def pix(a: np.ndarray, sl: slice) -> np.ndarray:  # RGB of a band of a frame, in out's layout
        return a[sl, :, :3].transpose(2, 0, 1) if channels_first else a[sl, :, :3]

    for y0 in range(0, h, rows):
        sl = slice(y0, min(h, y0 + rows))
        o = out[:, sl] if channels_first else out[sl]
        np.multiply(pix(ambient[0], sl), np.float32(ambient[1]), out=chan(o, AMBIENT), casting="unsafe")
        if nf:
            fo = chan(o, FLASH)
            np.multiply(pix(flashes[0][0], sl), np.float32(flashes[0][1] / nf), out=fo, casting="unsafe")
            for arr, fac in flashes[1:]:
                fo += pix(arr, sl) * np.float32(fac / nf)
        else:
            chan(o, FLASH)[...] = 0.0
        if window is not None:
            np.multiply(pix(window[0], sl), np.float32(window[1]), out=chan(o, WINDOW), casting="unsafe")
        else:
            chan(o, WINDOW)[...] = 0.0
        chan(o, MASK)[...] = 0.0
        chan(o, HAS_FLASH)[...] = 1.0 if nf else 0.0
        chan(o, HAS_WINDOW)[...] = 1.0 if window is not None else 0.0
        chan(o, HAS_MASK)[...] = 0.0
    return out


def _entry_fresh(entry: dict[str, Any], f: Frame) -> bool:
    key = _cache_key(f)
    try:
        st = f.path.stat()
        if st.st_size != key["size"] or abs(st.st_mtime - key["mtime"]) > 1e-6:
            return False  # the source changed since ingest
        return (int(entry["size"]) == key["size"] and abs(float(entry["mtime"]) - key["mtime"]) < 1e-6
                and abs(float(entry["ev"]) - key["ev"]) < 1e-6 and entry.get("align") == key["align"])
    except (KeyError, TypeError, ValueError, OSError):
        return False
