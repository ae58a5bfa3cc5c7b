"""``ingest --pairs``: a folder of sources and edited finals -> a training dataset.

Layouts found automatically (they may be mixed in one folder):

(a) one sub-folder per set holding the source frames (RAW/JPEG/...) and one final named
    ``final.*``, ``*_final.*``, ``target.*`` or ``edited.*``; the sources are labelled
    (ambient/flash/window) and normalised like a shoot's bracket set;
(b) one sub-folder per set holding ``ambient.exr``, ``flash.exr`` (optional), an optional
    ``window_mask.png`` (and optional ``window.exr``) and ``final.*``;
(c) single-image pairs: ``src|source|input/`` beside ``tgt|target|edited/`` matched by file
    stem, or flat files ``NAME_src|NAME_input|NAME_source`` with
    ``NAME_tar|NAME_tgt|NAME_target|NAME_edited`` (also ``NAME_final`` and ``NAME_expertC``
    as in MIT-Adobe FiveK exports).

Sources without a target and targets without a source are listed under ``unmatched`` in
``dataset.yaml`` and in the log, never dropped silently. A target whose size differs from
its source by a few pixels (retouching exports do) is resampled onto the source grid and the
item gets a note; larger differences are errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .brackets import BracketSet, GroupingConfig, group_frames, label_set, safe_name
from .dataset import write_index, write_item
from .errors import InputError
from .io.images import IMAGE_EXTENSIONS, read_exr, read_linear, read_srgb
from .log import get_logger
from .outcome import ItemError, batch_exit_code

log = get_logger("pairs")

_FINAL_NAME = re.compile(r"^(final|target|edited)$|_final$", re.IGNORECASE)
_SRC_DIRS = ("src", "source", "input", "inputs", "sources")
_TGT_DIRS = ("tgt", "target", "edited", "targets", "final", "finals")
_SRC_SUFFIX = re.compile(r"^(?P<name>.+?)[_-](src|source|input)$", re.IGNORECASE)
_TGT_SUFFIX = re.compile(r"^(?P<name>.+?)[_-](tar|tgt|target|edited|final|expert[a-e]?)$", re.IGNORECASE)
#: Largest size difference (pixels per side, and fraction of the side) fitted automatically.
MAX_FIT_PX, MAX_FIT_FRAC = 16, 0.02


@dataclass
class PairJob:
    """One dataset item to build: its name, layout and input files."""

    name: str
    layout: str
    target: Path
    sources: list[Path] = field(default_factory=list)
    extra: dict[str, Path] = field(default_factory=dict)


@dataclass
class PairsResult:
    """What :func:`ingest_pairs` wrote: ``dataset`` folder, item entries, unmatched and failures."""

    dataset: Path
    items: list[dict[str, Any]]
    unmatched: list[str]
    #: Pairs that could not be built, one :class:`~flambient.outcome.ItemError` each.
    failures: list[ItemError]

    @property
    def errors(self) -> list[str]:
        """The failures as one line each (as ``dataset.yaml`` lists them)."""
        return [str(f) for f in self.failures]

    @property
    def exit_code(self) -> int:
        """The batch exit rule (:func:`flambient.outcome.batch_exit_code`)."""
        return batch_exit_code(self.failures)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def find_pairs(src: str | Path) -> tuple[list[PairJob], list[str]]:
    """Discover the items of every layout under ``src``; returns ``(jobs, unmatched)``.

    Raises :class:`InputError` when ``src`` is missing or holds nothing recognisable.
    """
    root = Path(src)
    if not root.is_dir():
        raise InputError("pairs folder not found", root, "pass the folder holding sources and finals")
    jobs: list[PairJob] = []
    unmatched: list[str] = []
    subdirs = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    src_dir = next((subdirs[d] for d in _SRC_DIRS if d in subdirs), None)
    tgt_dir = next((subdirs[d] for d in _TGT_DIRS if d in subdirs), None)
    if src_dir is not None and tgt_dir is not None:
        _match_by_stem(_images(src_dir), _images(tgt_dir), jobs, unmatched, root)
    for d in subdirs.values():
        if d in (src_dir, tgt_dir):
            continue
        _folder_job(d, jobs, unmatched, root)
    _flat_pairs(_images(root), jobs, unmatched, root)
    if not jobs and not unmatched:
        raise InputError("no pairs found", root,
                         "expected set folders with final.*, src/ + target/ folders, or NAME_src + NAME_target files")
    return jobs, unmatched


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def _match_by_stem(srcs: list[Path], tgts: list[Path], jobs: list[PairJob], unmatched: list[str], root: Path) -> None:
    by_stem = {p.stem: p for p in tgts}
    used: set[str] = set()
    for s in srcs:
        t = by_stem.get(s.stem)
        if t is None:
            unmatched.append(f"{_rel(s, root)}: source without a target")
            continue
        used.add(s.stem)
        jobs.append(PairJob(name=s.stem, layout="c", target=t, sources=[s]))
    for stem, t in by_stem.items():
        if stem not in used:
            unmatched.append(f"{_rel(t, root)}: target without a source")


def _folder_job(d: Path, jobs: list[PairJob], unmatched: list[str], root: Path) -> None:
    files = _images(d)
    lower = {p.name.lower(): p for p in files}
    finals = [p for p in files if _FINAL_NAME.search(p.stem)]
    if "ambient.exr" in lower:
        if not finals:
            unmatched.append(f"{_rel(d, root)}: ambient.exr without a final")
            return
        extra = {k: lower[f] for k, f in (("flash", "flash.exr"), ("window", "window.exr"),
                                          ("mask", "window_mask.png")) if f in lower}
        jobs.append(PairJob(name=d.name, layout="b", target=finals[0], sources=[lower["ambient.exr"]], extra=extra))
        return
    sources = [p for p in files if p not in finals]
    if finals and sources:
        jobs.append(PairJob(name=d.name, layout="a", target=finals[0], sources=sources))
    elif finals:
        unmatched.append(f"{_rel(finals[0], root)}: target without a source")
    elif sources:
        unmatched.append(f"{_rel(d, root)}: {len(sources)} source(s) without a target "
                         "(name the final final.*, *_final.*, target.* or edited.*)")


def _flat_pairs(files: list[Path], jobs: list[PairJob], unmatched: list[str], root: Path) -> None:
    srcs: dict[str, Path] = {}
    tgts: dict[str, Path] = {}
    for p in files:
        m = _SRC_SUFFIX.match(p.stem)
        if m:
            srcs[m.group("name")] = p
            continue
        m = _TGT_SUFFIX.match(p.stem)
        if m:
            tgts[m.group("name")] = p
        # other loose files are not pairs material; they are simply not part of a layout
    for name, s in sorted(srcs.items()):
        if name in tgts:
            jobs.append(PairJob(name=name, layout="c", target=tgts[name], sources=[s]))
        else:
            unmatched.append(f"{_rel(s, root)}: source without a target")
    for name, t in sorted(tgts.items()):
        if name not in srcs:
            unmatched.append(f"{_rel(t, root)}: target without a source")


# ----------------------------------------------------------------------------- building items


def check_fit(target_hw: tuple[int, int], source_hw: tuple[int, int]) -> str | None:
    """``None`` when a target of size ``target_hw`` (H, W) matches its source's ``source_hw``, a
    note when it is within :data:`MAX_FIT_PX` pixels (and :data:`MAX_FIT_FRAC` of the side) and
    will be resampled onto the source grid; raises :class:`InputError` when it is further off."""
    (th, tw), (h, w) = target_hw, source_hw
    if (th, tw) == (h, w):
        return None
    for a, b in ((th, h), (tw, w)):
        if abs(a - b) > max(MAX_FIT_PX, 0) or abs(a - b) > MAX_FIT_FRAC * b + 2:
            raise InputError(f"target is {tw}x{th} but the source is {w}x{h}", None,
                             "export the final at the source's size")
    return f"target {tw}x{th} resampled to the source's {w}x{h}"


def _onto_grid(target: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resample an sRGB HxWx3 target (linear interpolation) onto an (H, W) grid, clipped to [0, 1]."""
    import cv2

    if target.shape[:2] == tuple(hw):
        return target
    fitted = cv2.resize(target, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(fitted, 0.0, 1.0).astype(np.float32)


def fit_target(target: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, str | None]:
    """Bring an sRGB HxWx3 target onto a source grid of size ``hw``; returns (image, note).

    Differences up to :data:`MAX_FIT_PX` pixels (and :data:`MAX_FIT_FRAC` of the side) are
    resampled onto the source grid and noted; larger ones raise InputError (:func:`check_fit`).
    """
    note = check_fit(target.shape[:2], hw)
    return (target, None) if note is None else (_onto_grid(target, hw), note)


def _shrink_srgb(srgb: np.ndarray, max_side: int) -> np.ndarray:
    """Area-downscale an sRGB HxWx3 image in linear light to a long edge of at most ``max_side``."""
    from .colour import linear_to_srgb, srgb_to_linear
    from .data import resize_stack

    if max(srgb.shape[:2]) <= max_side:
        return srgb
    return np.clip(linear_to_srgb(resize_stack(srgb_to_linear(srgb), max_side)), 0.0, 1.0).astype(np.float32)


def _read_single_pair(job: PairJob, max_side: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Layout (c) decoded straight to a long edge of at most ``max_side`` px (JPEG: the decoder's
    DCT downscaling, then an area shrink in linear light); the target's fit is judged on the full
    sizes. Returns (linear source, sRGB target on the source's grid, notes)."""
    from .colour import linear_to_srgb
    from .io.images import read_preview

    source, source_hw = read_preview(job.sources[0], max_side, raw_thumbnail=False)
    target, target_hw = read_preview(job.target, max_side, raw_thumbnail=False)
    try:
        note = check_fit(target_hw, source_hw)
    except InputError as exc:
        raise InputError(exc.message, job.target, exc.hint) from None
    notes = [note] if note else []
    if max(source_hw) > max_side:
        notes.append(f"downscaled from {source_hw[1]}x{source_hw[0]} to a long edge of {max_side} px")
    target = _onto_grid(np.clip(linear_to_srgb(target), 0.0, 1.0).astype(np.float32), source.shape[:2])
    return source, target, notes


def _load_bracket_folder(job: PairJob) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, list[str]]:
    """Layout (a): label and normalise the folder's frames like a shoot's set."""
    from .ingest import align_set, analyse_file, load_frame

    frames = [analyse_file(p) for p in job.sources]
    groups = group_frames(frames)
    notes: list[str] = []
    if len(groups) > 1:
        notes.append(f"sources form {len(groups)} compositions; all treated as one set")
    bset = BracketSet(name=job.name, frames=sorted(frames, key=lambda f: f.path.name))
    bset.reference = label_set(bset.frames)
    align_set(bset, GroupingConfig())
    ref, flashes, window = bset.stack_frames()
    ambients = bset.ambient_frames()
    if len(ambients) > 1:  # an exposure bracket: merged like process merges it
        from .hdr import merge_exposures

        amb = merge_exposures([(load_frame(f), 1.0) for f in ambients], [f.ev for f in ambients])
    else:
        amb = load_frame(ref)
    flash = None
    if flashes:
        flash = np.mean(np.stack([load_frame(f) for f in flashes]), axis=0, dtype=np.float32)
    win = load_frame(window) if window is not None else None
    roles = ", ".join(f"{f.path.name}={f.role}({f.ev:+.2f} EV)" for f in bset.frames)
    notes.append(f"roles: {roles}")
    return amb, flash, win, notes


def _build(job: PairJob, out: Path, root: Path, max_side: int = 0) -> dict[str, Any]:
    """Build and write one item; with ``max_side`` > 0 every image is at most that long edge."""
    from .data import resize_stack

    notes: list[str] = []
    flash = window = mask = None
    source = ", ".join(_rel(p, root) for p in [*job.sources, *job.extra.values()])
    if job.layout == "c" and max_side > 0:
        ambient, target, notes = _read_single_pair(job, max_side)
        return write_item(out, job.name, ambient, target, source=source, notes=notes)
    if job.layout == "a":
        ambient, flash, window, notes = _load_bracket_folder(job)
    elif job.layout == "b":
        ambient = read_exr(job.sources[0])
        flash = read_exr(job.extra["flash"]) if "flash" in job.extra else None
        window = read_exr(job.extra["window"]) if "window" in job.extra else None
        if "mask" in job.extra:
            mask = _read_mask(job.extra["mask"], ambient.shape[:2])
    else:
        ambient = read_linear(job.sources[0])
    try:
        target, note = fit_target(read_srgb(job.target), ambient.shape[:2])
    except InputError as exc:
        raise InputError(exc.message, job.target, exc.hint) from None
    if note:
        notes.append(note)
    for arr, what in ((flash, "flash"), (window, "window")):
        if arr is not None and arr.shape[:2] != ambient.shape[:2]:
            raise InputError(f"{what} frame size differs from the ambient frame", job.sources[0].parent)
    if 0 < max_side < max(ambient.shape[:2]):
        h, w = ambient.shape[:2]
        notes.append(f"downscaled from {w}x{h} to a long edge of {max_side} px")
        ambient, target = resize_stack(ambient, max_side), _shrink_srgb(target, max_side)
        flash, window = (None if a is None else resize_stack(a, max_side) for a in (flash, window))
        mask = None if mask is None else resize_stack(mask[:, :, None], max_side).reshape(ambient.shape[:2])
        target = _onto_grid(target, ambient.shape[:2])
    return write_item(out, job.name, ambient, target, flash=flash, window=window, mask=mask,
                      source=source, notes=notes)


def _read_mask(p: Path, hw: tuple[int, int]) -> np.ndarray:
    """A window mask PNG as HxW float32 in [0, 1] (values, not sRGB-decoded)."""
    import cv2

    m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise InputError("corrupt or unreadable mask PNG", p)
    if m.ndim == 3:
        m = m[:, :, 0]
    m = m.astype(np.float32) / (65535.0 if m.dtype == np.uint16 else 255.0)
    if m.shape != hw:
        raise InputError(f"mask is {m.shape[1]}x{m.shape[0]}, the ambient frame {hw[1]}x{hw[0]}", p)
    return m


def ingest_pairs(src: str | Path, out: str | Path, n_jobs: int | None = None, force: bool = False,
                 max_side: int = 0) -> PairsResult:
    """Build a dataset in ``out`` from the pairs folder ``src``; returns what was written.

    ``max_side`` > 0 writes every item at a long edge of at most that many pixels (area
    downscaling in linear light, noted in the item; single-image JPEG pairs decode straight to
    about that size): what ``finetune`` builds, since it never trains above its ``max_side``.
    0 keeps the full size.

    Items that fail (unreadable files, sizes far apart) are listed in ``errors`` and logged;
    the others are still written. ``out`` must not be inside ``src``'s layout folders. When
    ``out`` already holds a dataset (``dataset.yaml`` or ``items/``), :class:`InputError` is
    raised before anything is written unless ``force``.
    """
    from .parallel import parallel_map

    root = Path(src).resolve()
    dest = Path(out).resolve()
    if not force and ((dest / "dataset.yaml").exists() or (dest / "items").is_dir()):
        raise InputError("the output folder already holds a dataset", dest,
                         "choose another --out, or pass --force to replace its index and same-named items")
    jobs, unmatched = find_pairs(root)
    names: set[str] = set()
    for j in jobs:
        base = safe_name(j.name)
        name, k = base, 2
        while name.lower() in names:
            name, k = f"{base}-{k}", k + 1
        names.add(name.lower())
        j.name = name

    def one(job: PairJob) -> dict[str, Any] | ItemError:
        try:
            return _build(job, dest, root, max_side)
        except InputError as exc:
            return ItemError.from_exception(job.name, exc)
        except Exception as exc:  # one broken pair must not stop the dataset
            why = ItemError.from_exception(job.name, exc).message
            return ItemError(job.name, f"cannot build ({why})", _rel(job.target, root))

    results = parallel_map(one, jobs, n_jobs)
    items = [r for r in results if isinstance(r, dict)]
    failures = [r for r in results if isinstance(r, ItemError)]
    errors = [str(f) for f in failures]
    for u in unmatched:
        log.warning("unmatched: %s", u)
    for e in errors:
        log.error("%s", e)
    dest.mkdir(parents=True, exist_ok=True)
    write_index(dest, items, unmatched=unmatched + [f"error: {e}" for e in errors])
    log.info("%d pair(s) -> %s (%d unmatched, %d failed)", len(items), dest, len(unmatched), len(errors))
    return PairsResult(dataset=dest, items=items, unmatched=unmatched, failures=failures)
