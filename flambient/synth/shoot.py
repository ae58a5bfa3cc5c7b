"""Synthetic shoots and training pairs: scene -> light components -> camera frames + truth.

:func:`synth_shoot` writes a folder laid out like a real shoot (``SYN_0001.dng``, ... in capture
order) plus ``truth/``: each set's final in the chosen style (``<set>.jpg``), its window mask
(``<set>_window.png``) and ``sets.yaml`` with the true grouping and roles::

    format: flambient-synth-truth
    version: 1
    seed: 0
    style: studio
    size: [W, H]
    sets:
      - name: SYN_0001              # the name ``ingest`` gives: the first frame's stem
        final: truth/SYN_0001.jpg
        mask: truth/SYN_0001_window.png
        frames:
          - {file: SYN_0001.dng, role: ambient, ev: 0.0, flash_fired: false, exposure_time: 0.2,
             iso: 400, f_number: 7.1, time: '2025-06-14T10:00:00.123000'}

``ev`` is ``log2`` of the frame's exposure over the reference ambient frame's (as in
:mod:`flambient.stack`). DNG frames are rendered with one RGB sample per Bayer quad (the scene
at half the DNG's width and height), in bands of rows on a thread pool, so memory stays
bounded and a 24 MP set renders in seconds. :func:`synth_pairs` writes a training dataset
(:mod:`flambient.dataset`) directly: the exposure-normalised frames ``ingest`` would produce,
the window mask and the styled target.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from ..colour import linear_to_srgb
from ..dataset import write_index, write_item
from ..errors import InputError
from ..io.atomic import atomic_path, atomic_write_text
from ..io.dng import write_dng
from ..io.exif_write import build_exif_bytes
from ..io.images import srgb_icc_profile, to_uint8, write_png
from ..log import get_logger
from . import camera
from .lighting import Calibration, Components, calibrate, render_components
from .scene import Scene, random_scene
from .styles import StyleStats, apply_style, get_style, style_stats

log = get_logger("synth")

TRUTH_FORMAT = "flambient-synth-truth"
BAND_ROWS = 96  # render rows per band (independent of the worker count: results do not change)
PREVIEW_WIDTH = 192
SHOOT_START = datetime(2025, 6, 14, 9, 30, 0)


@dataclass
class SetPlan:
    """Everything needed to render one set (scene, gains, frames, exposure constant, stats)."""

    index: int
    seed: int
    scene: Scene | None
    cal: Calibration
    frames: list[camera.FramePlan]
    c: float
    stats: StyleStats

    @property
    def norm(self) -> float:
        """Scene radiance -> reference-ambient-normalised decoded units (times WB_GAIN)."""
        return self.c * self.frames[0].exposure


def set_seed(seed: int, index: int) -> int:
    """The scene seed of set ``index`` of a shoot with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index), 0x5E7]).generate_state(1)[0])


def parse_size(size: str | None, megapixels: float | None, default: tuple[int, int] = (1536, 1024)) -> tuple[int, int]:
    """``"WxH"`` or a megapixel count (3:2) -> (width, height), both even; InputError when bad."""
    if size and megapixels:
        raise InputError("give either --size or --megapixels, not both")
    if megapixels:
        if not 0.01 <= megapixels <= 100:
            raise InputError(f"--megapixels {megapixels} out of range", hint="use 0.01 to 100")
        w = math.sqrt(megapixels * 1e6 * 1.5)
        return int(w) // 2 * 2, int(w / 1.5) // 2 * 2
    if not size:
        return default
    try:
        w_s, h_s = size.lower().split("x")
        w, h = int(w_s), int(h_s)
    except ValueError:
        raise InputError(f"bad --size {size!r}", hint="write it as WIDTHxHEIGHT, e.g. 1536x1024") from None
    if not (16 <= w <= 12000 and 16 <= h <= 12000):
        raise InputError(f"--size {size} out of range", hint="each side between 16 and 12000 pixels")
    return w // 2 * 2, h // 2 * 2


def _normalised(comps: Components, plan_cal: Calibration, norm: float) -> tuple[np.ndarray, np.ndarray]:
    """(A, F): ambient and mean flash-only light in normalised decoded units."""
    g = np.float32(norm) * camera.WB_GAIN
    amb = comps.ambient(plan_cal.tung_gain) * g
    fl = np.mean(comps.flash, axis=0) * np.float32(plan_cal.flash_gain) * g
    return amb.astype(np.float32, copy=False), fl.astype(np.float32, copy=False)


def plan_set(seed: int, index: int, start: datetime, aspect: float, n_flash: int | None = None,
             allow_window: bool = True) -> SetPlan:
    """Draw set ``index``'s scene, meter it on a preview, plan its frames and style statistics."""
    s = set_seed(seed, index)
    scene = random_scene(s, n_flash=n_flash)
    pw = PREVIEW_WIDTH
    ph = max(8, int(round(pw / aspect)))
    preview = render_components(scene, pw, ph)
    cal = calibrate(scene, preview, 1.0)
    rng = np.random.default_rng(np.random.SeedSequence([s, 0xCA3]))
    has_window = allow_window and bool(preview.mask.any())
    frames, c, f2a = camera.plan_set(rng, start, len(scene.flash_offsets), has_window, scene.fov,
                                     cal.ambient_median, cal.exterior_median)
    cal = calibrate(scene, preview, f2a)
    plan = SetPlan(index, s, scene, cal, frames, c, StyleStats(1, 1, (1, 1, 1), 1))
    amb, fl = _normalised(preview, cal, plan.norm)
    plan.stats = style_stats(amb, fl, preview.mask)
    return plan


def _frame_scene(comps: Components, plan: SetPlan, f: camera.FramePlan) -> np.ndarray:
    rgb = comps.ambient(plan.cal.tung_gain)
    if f.flash >= 0:
        rgb = rgb + np.float32(plan.cal.flash_gain) * comps.flash[f.flash]
    return rgb


def render_set(plan: SetPlan, out: Path, names: list[str], size: tuple[int, int], fmt: str, style: str,
               workers: int = 2, source: Callable[[int, int, int, int], Components] | None = None,
               truth: np.ndarray | None = None) -> None:
    """Render and write one set's frames (``names``, in ``out``) and its truth files.

    ``source(width, height, y0, y1)`` gives the light components of a band (default: render
    ``plan.scene``); ``truth`` (uint8 sRGB at ``size``) replaces the styled final when given.
    """
    w, h = size
    rw, rh = (w // 2, h // 2) if fmt == "dng" else (w, h)
    if source is None:
        def source(width: int, height: int, y0: int, y1: int) -> Components:
            assert plan.scene is not None
            return render_components(plan.scene, width, height, y0, y1)
    nf = len(plan.frames)
    if fmt == "dng":
        frames_buf = [np.empty((h, w), np.uint16) for _ in range(nf)]
    else:
        frames_buf = [np.empty((h, w, 3), np.uint8) for _ in range(nf)]
    final = np.empty((rh, rw, 3), np.uint8)
    mask = np.empty((rh, rw), np.uint8)
    bands = [(y, min(rh, y + BAND_ROWS)) for y in range(0, rh, BAND_ROWS)]

    def band(bi: int) -> None:
        y0, y1 = bands[bi]
        comps = source(rw, rh, y0, y1)
        for k, f in enumerate(plan.frames):
            rng = np.random.default_rng(np.random.SeedSequence([plan.seed, k, bi, 0xF4A]))
            rgb = _frame_scene(comps, plan, f)
            if fmt == "dng":
                frames_buf[k][2 * y0:2 * y1] = camera.mosaic(rgb, plan.c * f.exposure, f.iso, rng)
            else:
                dec = camera.expose(rgb, plan.c * f.exposure, f.iso, rng)
                frames_buf[k][y0:y1] = to_uint8(linear_to_srgb(np.clip(dec, 0, 1)))
        if truth is None:
            amb, fl = _normalised(comps, plan.cal, plan.norm)
            final[y0:y1] = to_uint8(apply_style(style, amb, fl, comps.mask, plan.stats))
        mask[y0:y1] = (comps.mask > 0.5).astype(np.uint8) * 255

    if workers > 1 and len(bands) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(band, range(len(bands))))
    else:
        for bi in range(len(bands)):
            band(bi)

    for k, f in enumerate(plan.frames):
        path = out / names[k]
        if fmt == "dng":
            write_dng(path, frames_buf[k], cfa_pattern="RGGB", black_level=camera.BLACK,
                      white_level=camera.WHITE, color_matrix=camera.COLOR_MATRIX,
                      as_shot_neutral=camera.AS_SHOT_NEUTRAL, exif=f.exif(), make=camera.MAKE,
                      model=camera.MODEL, orientation=1)
        else:
            exif = build_exif_bytes(f.exif(), make=camera.MAKE, model=camera.MODEL, orientation=1)
            _write_jpeg_u8(path, frames_buf[k], quality=92, exif=exif)
        frames_buf[k] = None  # type: ignore[call-overload]  # free as we go
    if truth is not None:
        final = truth
    if (rw, rh) != (w, h):
        import cv2

        if truth is None:
            final = cv2.resize(final, (w, h), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    name = Path(names[0]).stem
    _write_jpeg_u8(out / "truth" / f"{name}.jpg", final, quality=95, exif=None)
    write_png(out / "truth" / f"{name}_window.png", mask.astype(np.float32, copy=False) / 255.0)


def _write_jpeg_u8(path: Path, rgb: np.ndarray, quality: int, exif: bytes | None) -> Path:
    """Write an HxWx3 uint8 sRGB array as JPEG (sRGB ICC, optional EXIF bytes), atomically."""
    from PIL import Image

    kw: dict[str, Any] = {"quality": quality, "subsampling": 0 if quality >= 90 else 2,
                          "icc_profile": srgb_icc_profile()}
    if exif:
        kw["exif"] = exif
    with atomic_path(path) as tmp:
        Image.fromarray(rgb, "RGB").save(tmp, format="JPEG", **kw)
    return path


def _frame_entry(f: camera.FramePlan, name: str, ref: camera.FramePlan) -> dict[str, Any]:
    return {
        "file": name, "role": f.role, "ev": round(math.log2(f.exposure / ref.exposure), 4),
        "flash_fired": f.flash >= 0, "exposure_time": float(f"{f.shutter:.6g}"), "iso": f.iso,
        "f_number": f.f_number, "exposure_bias": round(f.bias, 3), "time": f.time.isoformat(),
    }


def synth_shoot(out: str | Path, sets: int = 3, size: tuple[int, int] = (1536, 1024), seed: int = 0,
                fmt: str = "dng", style: str = "studio", workers: int = 2, prefix: str = "SYN_",
                progress: Any = None) -> dict[str, Any]:
    """Write a synthetic shoot of ``sets`` bracket sets into ``out``; returns the truth document.

    ``size`` is the frame size (width, height) in pixels (even); ``fmt`` ``"dng"`` or ``"jpg"``;
    ``style`` names the house style of the finals (:data:`flambient.synth.styles.STYLES`).
    Same arguments -> byte-identical frames and truth. ``progress(done, total)`` is called after
    each set when given.
    """
    if fmt not in ("dng", "jpg"):
        raise InputError(f"unknown format {fmt!r}", hint="use dng or jpg")
    if sets < 1:
        raise InputError(f"--sets must be at least 1, got {sets}")
    get_style(style)
    out = Path(out)
    w, h = size
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(out.glob(f"{prefix}*.{fmt}"))
    if existing:
        raise InputError(f"{len(existing)} synthetic frames already in the folder", out,
                         "write into an empty folder")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7143]))
    t = SHOOT_START + timedelta(minutes=int(rng.integers(0, 240)))
    counter = 1
    doc_sets: list[dict[str, Any]] = []
    for i in range(sets):
        plan = plan_set(seed, i, t, w / h)
        names = [f"{prefix}{counter + k:04d}.{fmt}" for k in range(len(plan.frames))]
        counter += len(plan.frames)
        render_set(plan, out, names, (w, h), fmt, style, workers)
        name = Path(names[0]).stem
        ref = plan.frames[0]
        doc_sets.append({
            "name": name, "final": f"truth/{name}.jpg", "mask": f"truth/{name}_window.png",
            "frames": [_frame_entry(f, n, ref) for f, n in zip(plan.frames, names)],
        })
        t = plan.frames[-1].time + timedelta(seconds=float(rng.uniform(45, 150)))
        log.debug("set %s: %d frames", name, len(names))
        if progress is not None:
            progress(i + 1, sets)
    doc = {"format": TRUTH_FORMAT, "version": 1, "seed": int(seed), "style": style, "format_frames": fmt,
           "size": [w, h], "sets": doc_sets}
    atomic_write_text(out / "truth" / "sets.yaml", yaml.safe_dump(doc, sort_keys=False))
    return doc


def make_pair(seed: int, index: int, size: tuple[int, int], style: str) -> dict[str, Any]:
    """One training pair as arrays: normalised ``ambient``/``flash``/``window`` (None when the
    room shows no window), ``mask`` HxW (None without windows) and the sRGB ``target``, all at
    ``size`` (w, h)."""
    w, h = size
    s = set_seed(seed, index)
    scene = random_scene(s, n_flash=1)
    comps = render_components(scene, w, h)
    cal = calibrate(scene, comps, 1.0)
    rng = np.random.default_rng(np.random.SeedSequence([s, 0xCA3]))
    frames, c, f2a = camera.plan_set(rng, SHOOT_START, 1, bool(comps.mask.any()), scene.fov,
                                     cal.ambient_median, cal.exterior_median)
    cal = calibrate(scene, comps, f2a)
    out = expose_pair(comps, cal, frames, c, s)
    g = np.float32(c * frames[0].exposure) * camera.WB_GAIN
    amb_n = comps.ambient(cal.tung_gain) * g
    fl_n = comps.flash[0] * np.float32(cal.flash_gain) * g
    stats = style_stats(amb_n, fl_n, comps.mask)
    out["target"] = apply_style(style, amb_n, fl_n, comps.mask, stats)
    return out


def expose_pair(comps: Components, cal: Calibration, frames: list[camera.FramePlan], c: float,
                seed: int) -> dict[str, Any]:
    """The exposure-normalised frames ``ingest`` would produce for one set (noise, clipping).

    Returns ``ambient``, ``flash`` (mean over flash frames), ``window`` (or None) as linear
    HxWx3 float32 and ``mask`` (HxW, None when no window is visible).
    """
    ref = frames[0]
    noise = np.random.default_rng(np.random.SeedSequence([seed, 0x9A1]))
    out: dict[str, Any] = {"ambient": None, "flash": None, "window": None}
    flashes = []
    amb_scene = comps.ambient(cal.tung_gain)
    for f in frames:
        rgb = amb_scene + np.float32(cal.flash_gain) * comps.flash[f.flash] if f.flash >= 0 else amb_scene
        dec = camera.expose(rgb, c * f.exposure, f.iso, noise) * np.float32(ref.exposure / f.exposure)
        if f.role == "flash":
            flashes.append(dec)
        elif out[f.role] is None:
            out[f.role] = dec
    out["flash"] = np.mean(flashes, axis=0).astype(np.float32, copy=False) if flashes else None
    out["mask"] = comps.mask if comps.mask.any() else None
    return out


def synth_pairs(out: str | Path, pairs: int = 64, size: tuple[int, int] = (384, 256), seed: int = 0,
                style: str = "studio", workers: int = 1, progress: Any = None) -> Path:
    """Write a training dataset of ``pairs`` synthetic sets into ``out``; returns its index path.

    Each item holds the exposure-normalised ambient, flash and (when the room has a visible
    window) window-pull frames with sensor noise and clipping, the window mask and the target
    in ``style``; deterministic per ``seed``.
    """
    get_style(style)
    if pairs < 1:
        raise InputError(f"--sets must be at least 1, got {pairs}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> dict[str, Any]:
        p = make_pair(seed, i, size, style)
        name = f"syn{seed:04d}_{i:05d}"
        return write_item(out, name, p["ambient"], p["target"], flash=p["flash"], window=p["window"],
                          mask=p["mask"], source=f"synth seed={seed} index={i} style={style}")

    entries: list[dict[str, Any]] = []
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for k, e in enumerate(pool.map(one, range(pairs))):
                entries.append(e)
                if progress is not None:
                    progress(k + 1, pairs)
    else:
        for i in range(pairs):
            entries.append(one(i))
            if progress is not None:
                progress(i + 1, pairs)
    return write_index(out, entries)
