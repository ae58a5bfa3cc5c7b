"""Ingesting a shoot: scan, analyse every file, group into bracket sets, label, align, write the manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..align import estimate_alignment
from ..brackets import BracketSet, Decision, Frame, GroupingConfig, group_frames, label_set, name_sets
from ..errors import InputError
from ..io.atomic import clean_partials
from ..log import get_logger
from ..parallel import parallel_map
from .cache import write_cache
from .manifest import (MANIFEST_VERSION, Manifest, error_entry, excluded_paths, load_manifest, manifest_is_fresh,
                       write_manifest)
from .scan import RAW_EXTS, STATE_DIR, analyse_safe, rel_path, scan_shoot, stamp, stat_or_none

log = get_logger("ingest")

#: ``progress(stage, done, total)``: ``stage`` is ``"reading"`` (one step per file) or
#: ``"caching"`` (one step per cached frame); called from worker threads.
IngestProgress = Callable[[str, int, int], None]


@dataclass
class _Analysis:
    """What reading every scanned file gave: usable frames, per-file errors and warnings, file stamps."""

    frames: list[Frame] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, tuple[int, float]] = field(default_factory=dict)


def _stage(progress: IngestProgress | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


def _analyse_all(root: Path, paths: list[Path], cfg: GroupingConfig, n_jobs: int | None,
                 progress: IngestProgress | None) -> _Analysis:
    """Read every file (in parallel); a file that cannot be used becomes an error entry."""
    results = parallel_map(lambda p: analyse_safe(p, cfg.preview_size), paths, n_jobs, _stage(progress, "reading"))
    out = _Analysis()
    for p, res in zip(paths, results):
        rel = rel_path(p, root)
        st = stat_or_none(p)
        out.files[rel] = (st.st_size, st.st_mtime) if st else (0, 0.0)
        if isinstance(res, InputError):
            out.errors.append(error_entry(rel, res, **stamp(st)))
            continue
        out.frames.append(res)
        if p.suffix.lower() in RAW_EXTS and res.fmt != "raw":
            out.warnings.append({"path": rel, "warning": f"content is {res.fmt.upper()} though the name says "
                                 f"{p.suffix}; read as {res.fmt.upper()}", **stamp(st)})
    return out


def _group(root: Path, a: _Analysis, cfg: GroupingConfig) -> tuple[list[BracketSet], list[dict[str, Any]]]:
    """Group, check cameras, name, label and align: the sets and the per-frame grouping record."""
    decisions: list[Decision] = []
    groups = group_frames(a.frames, cfg, decisions)
    groups = _check_cameras(groups, cfg, root, a.errors, a.warnings)
    kept = {id(f) for g in groups for f in g}
    a.frames = [f for f in a.frames if id(f) in kept]
    sets = [BracketSet(name=n, frames=g) for n, g in zip(name_sets(groups), groups)]
    grouping = _grouping_record(decisions, sets, root, kept)
    _warn_unsure(sets, grouping, root, a.warnings)
    for bset in sets:
        bset.reference = label_set(bset.frames, cfg)
        align_set(bset, cfg)
    return sets, grouping


def ingest_shoot(
    shoot: str | Path,
    *,
    cache: bool = False,
    config: GroupingConfig | None = None,
    n_jobs: int | None = None,
    recursive: bool = False,
    exclude: Iterable[str | Path] = (),
    progress: IngestProgress | None = None,
) -> Manifest:
    """Ingest the shoot folder and write ``SHOOT/.flambient/manifest.yaml``; returns the manifest.

    Every file that cannot be used gets an entry in ``manifest.errors`` (and one log line);
    all other files are still grouped. Raises :class:`InputError` only for a missing folder or
    a folder without images. ``n_jobs`` threads decode in parallel (default: all cores).
    ``recursive`` also reads sub-folders; ``exclude`` names folders to leave out besides
    flambient's own (recorded in the manifest, so later freshness checks scan alike).
    ``progress(stage, done, total)`` is called per file read and per frame cached.
    """
    root = Path(shoot).resolve()
    cfg = config or GroupingConfig()
    unlisted: list[dict[str, Any]] = []
    skip = [Path(p).resolve() for p in exclude]
    skip = [p for p in skip if p != root and p.is_relative_to(root)]
    paths = scan_shoot(root, recursive=recursive, problems=unlisted, exclude=skip)
    clean_partials(root / STATE_DIR, recursive=True)  # temp files of a killed ingest
    a = _analyse_all(root, paths, cfg, n_jobs, progress)
    a.errors[:0] = [{**u, "size": 0, "mtime": 0.0} for u in unlisted]
    sets, grouping = _group(root, a, cfg)
    manifest = Manifest(shoot=root, sets=sets, errors=a.errors, warnings=a.warnings, config=cfg, files=a.files,
                        recursive=recursive, grouping=grouping, exclude=[rel_path(p, root) for p in skip])
    for e in a.errors:
        log.error("%s: %s", e["path"], e["error"])
    for w in a.warnings:
        log.warning("%s: %s", w["path"], w["warning"])
    write_manifest(manifest)
    for f in a.frames:
        f.preview = None  # free memory; previews are not part of the manifest
    # Hand back exactly what a later run reads from disk (EV and alignment as stored), so the
    # first `process` after an ingest gives the same pixels as every rerun.
    manifest = load_manifest(root) or manifest
    if cache:
        write_cache(manifest, n_jobs=n_jobs, progress=_stage(progress, "caching"))
    log.info("%d frame(s) -> %d set(s), %d error(s): %s", len(a.frames), len(sets), len(a.errors), manifest.path)
    return manifest


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
                warnings.append({"path": rel_path(f.path, root), "warning": msg + "; kept in sets of its own", **stamp})
            else:
                errors.append({"path": rel_path(f.path, root), "error": msg + " (one shoot folder holds one camera's "
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
        out.append({"path": rel_path(d.frame.path, root), "set": set_of.get(id(d.frame)),
                    "joined": bool(d.joined), "sure": bool(d.sure), "reason": d.reason, **d.cues})
    return out


def _warn_unsure(sets: list[BracketSet], grouping: list[dict[str, Any]], root: Path,
                 warnings: list[dict[str, Any]]) -> None:
    """A warning per frame that joined its set on weak evidence (see :class:`~flambient.brackets.Decision`)."""
    frames = {rel_path(f.path, root): f for s in sets for f in s.frames}
    for g in grouping:
        if g["joined"] and not g["sure"]:
            f = frames[g["path"]]
            warnings.append({"path": g["path"], "warning": f"joined set '{g['set']}' on weak evidence ({g['reason']}); "
                             "check it with `flambient ingest --explain`, or move the file to its own folder",
                             "size": f.size, "mtime": f.mtime})


def align_set(bset: BracketSet, cfg: GroupingConfig) -> None:
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


def current_manifest(shoot: str | Path, *, recursive: bool = False, exclude: Iterable[str | Path] = (),
                     n_jobs: int | None = None, progress: IngestProgress | None = None) -> Manifest:
    """The shoot's manifest for a run: the stored one while fresh, else a new ingest made alike.

    A new ingest scans the way the stored manifest was made (recursive or not, its excluded
    folders, and its grouping settings when it is of the current format version; a manifest
    written before ``recursive`` was recorded counts as not recursive), and recursively also
    when ``recursive`` is asked. ``exclude`` adds folders to leave out (``process`` passes its
    output folder). Raises :class:`InputError` for a malformed manifest, a missing folder or
    one without images.
    """
    root = Path(shoot).resolve()
    old = load_manifest(root)
    skip = {Path(p).resolve() for p in exclude}
    if old is not None:
        if manifest_is_fresh(old, recursive=recursive, exclude=skip):
            log.info("reusing the manifest of %s", root)
            return old
        log.info("the shoot changed since ingest; ingesting again")
        skip |= set(excluded_paths(old))
    config = old.config if old is not None and old.version == MANIFEST_VERSION else None  # older: defaults
    return ingest_shoot(root, config=config, n_jobs=n_jobs, recursive=recursive or (old is not None and old.recursive),
                        exclude=sorted(skip), progress=progress)
