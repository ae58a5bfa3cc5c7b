"""Decoding a set's frames: full-resolution, exposure-normalised, aligned; the EXR frame cache.

``ingest --cache`` writes the frames each set's model stack uses as half-float OpenEXR under
``SHOOT/.flambient/cache/<set>/`` (with ``cache.yaml``: each frame's size, mtime, EV and
alignment); :func:`load_set_parts` reads a fresh cached frame instead of decoding the original.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..align import warp_to_reference
from ..brackets import BracketSet, Frame
from ..errors import InputError
from ..io.atomic import atomic_write_text
from ..io.images import read_exr, read_linear, write_exr
from ..io.raw import decode_raw_u16
from ..log import get_logger
from ..parallel import ItemProgress, parallel_map
from ..stack import assemble_stack
from .manifest import Manifest, error_entry, write_manifest
from .scan import STATE_DIR, rel_path

log = get_logger("ingest")


def cache_dir(shoot: str | Path, set_name: str) -> Path:
    """``SHOOT/.flambient/cache/<set>/``: the set's normalised frames as half-float EXR."""
    return Path(shoot) / STATE_DIR / "cache" / set_name


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


def write_cache(manifest: Manifest, n_jobs: int | None = None, progress: ItemProgress | None = None) -> list[Path]:
    """Write each set's stack frames (normalised, aligned) as half-float EXR; returns the files.

    A set whose frame fails to decode gets an error entry in the manifest (rewritten) and no
    cache; the other sets are still cached. ``progress(done, total)`` is called per frame.
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

    results = parallel_map(one, jobs, n_jobs, progress)
    written: list[Path] = []
    failed = False
    for bset in manifest.sets:
        index: dict[str, Any] = {}
        for (b, f), res in zip(jobs, results):
            if b is not bset:
                continue
            if isinstance(res, InputError):
                failed = True
                entry = error_entry(rel_path(f.path, shoot), res, f.size, f.mtime)
                manifest.errors.append(entry)
                log.error("%s: %s", entry["path"], entry["error"])
                continue
            index[res.name] = {"path": rel_path(f.path, shoot), **_cache_key(f)}
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

    parts = parallel_map(get, needed, n_jobs)
    h, w = parts[0][0].shape[:2]
    for f, (img, _s) in zip(needed[1:], parts[1:]):
        if img.shape[:2] != (h, w):
            raise InputError(f"frame size {img.shape[1]}x{img.shape[0]} differs from the reference "
                             f"{w}x{h} in set '{bset.name}'", f.path)
    na = len(ambients)
    ambient = parts[0]
    if na > 1:  # an exposure bracket: one merged linear ambient frame (flambient.hdr)
        from ..hdr import merge_exposures

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
