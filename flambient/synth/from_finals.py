"""Re-light edited finals into the ambient and flash frames that could have produced them.

A studio's archive of finished edits has no brackets. For each final this module estimates,
from the image alone, a reflectance / shading split and a depth cue, then re-lights it:

- **shading** ``S``: the final's luminance blurred at a large scale (``SHADING_SIGMA`` of the
  width, in log space); **reflectance** ``R = final / S`` (linear, clipped to [0, 0.95]);
- **depth** ``d``: far in the middle of the frame (rooms are photographed into a corner or
  towards a far wall), near at the frame edges, and farther where the final is darker:
  ``d = 1.2 + 3.3 * (1 - r)**1.5 * (S / median S) ** -0.25`` with ``r`` the normalised
  distance from the frame centre;
- **windows** ``m``: large bright regions of the final (sRGB luminance above ``WINDOW_LUMA``
  after a morphological opening, each at least ``WINDOW_MIN_AREA`` of the frame, so lamps and
  highlights are left out), feathered. Windows an editor pulled well below that brightness are
  not found and get re-lit like interior surfaces (a known limit of the estimate); white walls,
  ceilings and bed linen above that brightness are taken for windows and blown out in the
  ambient frame (10 % of the pixels of the 15 interior photographs of the shipped default's
  data, median), so the pairs teach that only a blown ambient pixel ends white (README, "On a
  real shoot"). ``window_luma`` of :func:`synth_from_finals` sets the threshold;
- **flash** frame: ``R * (1/d**2) * contact`` with a near-neutral 5500 K flash, where
  ``contact = (final / small-scale blur) ** 0.5`` keeps crevices and contact shadows dark;
- **ambient** frame: ``R * S * tint`` with a warm tungsten tint (2900 K) shifting to cool
  daylight (6500 K) near the windows, and the exterior ``final * 2**WINDOW_STOPS`` in the
  windows, so it blows out at an interior exposure. With ``camera_awb`` the camera's auto white
  balance then takes a share (:data:`AWB_SHARE`) of the frame's mean cast out of the whole
  ambient frame, exterior included, as a JPEG shoot on auto white balance records it; without
  it every ambient frame keeps the raw cast of a fixed 5500 K balance. With ``flat_ambient``
  the interior ambient light is flatter than the final: its luminance is ``median *
  (Y / median) ** c`` (``c`` drawn from :data:`AMBIENT_CONTRAST`, chromaticity kept), the
  contrast measured on real ambient frames; without it the ambient frame is the final's own
  contrast, so at an ambient exposure a third of its pixels clip.

The frames then go through the synthetic camera of :mod:`flambient.synth.camera` (exposure
plan, noise, Bayer mosaic, EXIF) exactly like rendered rooms; the truth final is the input
image itself, so the pairs carry the studio's own style.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..colour import cct_to_linear_rgb, luminance, srgb_to_linear
from ..errors import InputError
from ..io.atomic import atomic_write_text
from ..io.images import IMAGE_EXTENSIONS, read_srgb, to_uint8
from ..log import get_logger
from . import camera
from .lighting import Calibration, Components
from .shoot import SHOOT_START, TRUTH_FORMAT, SetPlan, _frame_entry, expose_pair, render_set
from .styles import StyleStats

log = get_logger("synth.from_finals")

SHADING_SIGMA = 0.06
CONTACT_SIGMA = 0.006
WINDOW_LUMA = 0.75
WINDOW_MIN_AREA = 0.008
WINDOW_STOPS = 4.5
#: Share (uniform range) of the ambient light's colour cast that a camera's auto white balance
#: takes out of the ambient frame with ``camera_awb`` (JPEG shoots on auto white balance: a
#: tungsten room comes out warm, but much less so than under a fixed daylight balance).
AWB_SHARE = (0.5, 1.0)
#: Range of the log-luminance contrast of the interior ambient light relative to the final's
#: with ``flat_ambient``. Measured on the 18 real flash / ambient sets of
#: ``benchmarks/bench_real.py``: their ambient frames span p75 / p90 / p99 of 0.60 / 0.98 / 1.43
#: stops above their median (medians over the sets; 1.2 % of pixels clipped), the 41 training
#: photographs 0.92 / 1.54 / 2.21: a ratio of 0.65 at every percentile (0.51 on the flambient
#: shoot, 0.62 on FAID). A real room's ambient light is flatter than the finished edit, whose
#: contrast comes from the flash and the editor.
AMBIENT_CONTRAST = (0.5, 0.85)
#: With ``metered``: the ambient frame's interior median lands this many stops (uniform range)
#: over the final's median linear luminance, as a camera metering the room would expose it. The
#: default plan meters the re-lit ambient light by itself (+2/3 to +4/3 EV over mid-grey), which
#: puts the photograph about a stop under its ambient frame (median -0.95 EV on the ambient's
#: unclipped pixels), where a bracket floor then holds the final up (README, "The upper tones").
METERED_EV = (0.2, 0.9)
MAX_PIXELS = 60_000_000


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigmaX=max(0.5, sigma), borderType=cv2.BORDER_REFLECT)


def window_mask(final_lin: np.ndarray, luma: float = WINDOW_LUMA) -> np.ndarray:
    """HxW float32 in [0, 1]: large regions of a linear final brighter than sRGB luminance
    ``luma`` (likely windows)."""
    import cv2

    h, w = final_lin.shape[:2]
    lum = luminance(final_lin)
    bright = (lum > srgb_to_linear(np.float32(luma))).astype(np.uint8)
    k = max(3, int(0.01 * w) | 1)
    bright = cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] > WINDOW_MIN_AREA * h * w
    m = keep[lab].astype(np.float32)
    return np.clip(_blur(m, 0.002 * w) * 1.5, 0, 1) * (m > 0)


def decompose(final_srgb: np.ndarray, window_luma: float = WINDOW_LUMA) -> dict[str, np.ndarray]:
    """Reflectance, shading, depth cue, contact factor and window mask (:func:`window_mask` at
    ``window_luma``) of an sRGB final (HxWx3)."""
    lin = srgb_to_linear(np.clip(final_srgb, 0, 1)).astype(np.float32)
    h, w = lin.shape[:2]
    lum = np.maximum(luminance(lin), 1e-4).astype(np.float32)
    shading = np.exp(_blur(np.log(lum), SHADING_SIGMA * w)).astype(np.float32)
    refl = np.clip(lin / shading[:, :, None] * np.float32(0.5), 0, 0.95)
    contact = np.clip(lum / np.maximum(_blur(lum, CONTACT_SIGMA * w), 1e-4), 0.2, 1.0) ** 0.5
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.clip(np.hypot((xx - (w - 1) / 2) / (w / 2), (yy - (h - 1) * 0.47) / (h / 2)) / 1.2, 0, 1)
    rel = shading / float(np.median(shading))
    depth = (1.2 + 3.3 * (1 - r) ** 1.5) * np.clip(rel, 0.1, 10) ** -0.25
    return {"lin": lin, "reflectance": refl, "shading": shading, "depth": depth.astype(np.float32),
            "contact": contact.astype(np.float32), "mask": window_mask(lin, window_luma)}


def flatten_ambient(light: np.ndarray, interior: np.ndarray, c: float) -> np.ndarray:
    """``light`` (HxWx3, linear) with its luminance ``Y`` replaced by ``m * (Y / m) ** c``
    (``m`` the median of ``Y`` over ``interior``, HxW bool), chromaticity kept: ``c`` < 1
    flattens the contrast around the median in log terms (``c`` 0.65 turns 1.5 stops into 1)."""
    y = np.maximum(luminance(light), 1e-6).astype(np.float32)
    m = float(np.median(y[interior])) if interior.any() else float(np.median(y))
    return (light * ((y / np.float32(m)) ** np.float32(c - 1.0))[:, :, None]).astype(np.float32)


def relight(final_srgb: np.ndarray, rng: np.random.Generator, camera_awb: bool = False,
            flat_ambient: bool = False, window_luma: float = WINDOW_LUMA) -> Components:
    """Light components (decoded units, before exposure) that re-light ``final_srgb``.

    ``day`` holds the whole interior ambient light (tungsten + daylight mix), ``ext`` the
    exterior, ``flash`` one bounced-flash component; ``tung``/``emit`` are zero. With
    ``camera_awb`` the ambient frame (``day`` and ``ext``) is white-balanced as a camera's auto
    white balance would (:func:`awb_gains`; one more number drawn from ``rng``, last). With
    ``flat_ambient`` the interior ambient light is flattened first (:func:`flatten_ambient`,
    its contrast drawn from :data:`AMBIENT_CONTRAST` after the flash's colour). Windows are
    the final's regions brighter than ``window_luma`` (:func:`window_mask`).
    """
    d = decompose(final_srgb, window_luma)
    refl, mask = d["reflectance"], d["mask"]
    h, w = mask.shape
    warm = cct_to_linear_rgb(float(rng.uniform(2700, 3200))) * camera.WB_GAIN
    cool = cct_to_linear_rgb(float(rng.uniform(6000, 7500))) * camera.WB_GAIN
    near_win = np.clip(_blur(mask, 0.08 * w) * 3.0, 0, 1)[:, :, None] * np.float32(0.8)
    tint = (warm * (1 - near_win) + cool * near_win).astype(np.float32)
    interior = 1 - mask[:, :, None]
    light = refl * d["shading"][:, :, None]
    ext = d["lin"] * np.float32(2**WINDOW_STOPS) * mask[:, :, None]
    flash_rgb = cct_to_linear_rgb(float(rng.uniform(5300, 5800))) * camera.WB_GAIN
    if flat_ambient:
        light = flatten_ambient(light, mask < 0.5, float(rng.uniform(*AMBIENT_CONTRAST)))
    ambient = light * tint * interior
    flash = refl * (d["contact"] / d["depth"] ** 2)[:, :, None] * flash_rgb * interior
    if camera_awb:
        gains = awb_gains(ambient, float(rng.uniform(*AWB_SHARE)))
        ambient, ext = ambient * gains, ext * gains
    # the camera model works in scene units: undo the white-balance gain it will apply
    inv = (1.0 / camera.WB_GAIN).astype(np.float32)
    zeros = np.zeros_like(ambient)
    return Components(day=(ambient * inv).astype(np.float32), tung=zeros, emit=zeros,
                      ext=(ext * inv).astype(np.float32), flash=[(flash * inv).astype(np.float32)],
                      mask=mask.astype(np.float32))


def awb_gains(ambient: np.ndarray, share: float) -> np.ndarray:
    """Per-channel gains (3,) that take ``share`` of the mean colour cast out of ``ambient``
    (HxWx3, linear decoded units), luminance kept: ``(mean / luminance(mean)) ** -share``,
    divided by their own luminance. ``share`` 0 gives ones; 1 makes the frame's mean grey."""
    mean = ambient.reshape(-1, 3).mean(axis=0).astype(np.float64) + 1e-9
    cast = mean / float(luminance(mean))
    g = cast ** -float(share)
    return (g / float(luminance(g))).astype(np.float32)


def _plan(comps: Components, rng: np.random.Generator, start, index: int, seed: int,  # type: ignore[no-untyped-def]
          metered_from: np.ndarray | None = None):
    """Exposure plan and gains for re-lit components (mirrors :func:`shoot.plan_set`).

    ``metered_from`` (the final, sRGB HxWx3): the ambient frame is exposed so that its interior
    median lies :data:`METERED_EV` stops over the final's median linear luminance (one more
    draw from ``rng``, after the plan's own)."""
    interior = comps.mask < 0.5
    amb_med = float(np.median(luminance(comps.day)[interior])) if interior.any() else 1.0
    ext_px = luminance(comps.ext)[~interior]
    ext_med = float(np.median(ext_px)) if ext_px.size else 0.0
    frames, c, f2a = camera.plan_set(rng, start, 1, ext_med > 0, float(rng.uniform(82, 100)), amb_med, ext_med)
    if metered_from is not None:
        final_med = float(np.median(luminance(srgb_to_linear(np.clip(metered_from, 0.0, 1.0)))))
        target = max(final_med, 1e-6) * 2.0 ** float(rng.uniform(*METERED_EV))
        c *= target / (0.18 * 2.0 ** frames[0].bias)   # plan_set put the interior median at 0.18 * 2**bias
    f_med = float(np.median(luminance(comps.flash[0])[interior])) if interior.any() else 1.0
    cal = Calibration(0.0, f2a * amb_med / max(f_med, 1e-12), amb_med, ext_med)
    return SetPlan(index, seed, None, cal, frames, c, StyleStats(1, 1, (1, 1, 1), 1))


def list_finals(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted); InputError when none."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError("finals folder not found", root, "pass a folder of edited JPEG/PNG/TIFF finals")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and p.suffix.lower() not in (".exr",) and not p.name.startswith("."))
    if not files:
        raise InputError("no image files in the finals folder", root, "expected JPEG, PNG or TIFF finals")
    return files


def _fit(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize to ``size`` (w, h) or keep (capped at MAX_PIXELS); even width and height."""
    import cv2

    h, w = img.shape[:2]
    if size is None:
        s = min(1.0, (MAX_PIXELS / (h * w)) ** 0.5)
        size = (int(w * s), int(h * s))
    tw, th = max(16, size[0] // 2 * 2), max(16, size[1] // 2 * 2)
    if (tw, th) == (w, h):
        return img
    interp = cv2.INTER_AREA if tw < w else cv2.INTER_LINEAR
    return cv2.resize(img, (tw, th), interpolation=interp)


def synth_from_finals(finals: str | Path, out: str | Path, size: tuple[int, int] | None = None, seed: int = 0,
                      fmt: str = "dng", pairs: bool = False, limit: int | None = None,
                      progress: Any = None, camera_awb: bool = False, flat_ambient: bool = False,
                      window_luma: float = WINDOW_LUMA, metered: bool = False) -> dict[str, Any]:
    """Turn every final in ``finals`` into a synthetic set (or, with ``pairs``, a dataset item).

    Shoot mode writes frames, ``truth/<set>.jpg`` (the final itself), ``truth/<set>_window.png``
    and ``truth/sets.yaml`` as :func:`flambient.synth.synth_shoot` does and returns the truth
    document; pairs mode writes a :mod:`flambient.dataset` folder and returns ``{"index": path,
    "sets": entries, "skipped": [...]}``. Unreadable finals are skipped with a warning and
    listed under ``skipped`` (and the dataset's ``unmatched``). ``camera_awb``: every ambient
    frame white-balanced as a camera's auto white balance would; ``flat_ambient``: the ambient
    light flatter than the final, as measured on real ambient frames; ``window_luma``: the
    sRGB luminance above which a large region of a final counts as a window (:func:`relight`);
    ``metered``: each ambient frame exposed from the final's median (:data:`METERED_EV` stops over
    it), as a camera metering the finished room would, instead of from the re-lit light alone.
    """
    from ..dataset import write_index, write_item

    files = list_finals(finals)[: limit or None]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xF12]))
    t = SHOOT_START + timedelta(minutes=int(base_rng.integers(0, 240)))
    counter = 1
    doc_sets: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    skipped: list[str] = []
    for i, p in enumerate(files):
        try:
            final = _fit(read_srgb(p), size)
        except InputError as exc:
            log.warning("%s", exc)
            skipped.append(f"{p.name}: {exc.message}")
            continue
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), i, 0xF13]))
        h, w = final.shape[:2]
        if pairs:
            comps = relight(final, rng, camera_awb, flat_ambient, window_luma)
            plan = _plan(comps, rng, t, i, seed, final if metered else None)
            arr = expose_pair(comps, plan.cal, plan.frames, plan.c, int(seed) * 100003 + i)
            entries.append(write_item(out, f"{p.stem}", arr["ambient"], final, flash=arr["flash"],
                                      window=arr["window"], mask=arr["mask"], source=str(p)))
        else:
            if fmt not in ("dng", "jpg"):
                raise InputError(f"unknown format {fmt!r}", hint="use dng or jpg")
            if fmt == "dng":  # one RGB sample per Bayer quad, as for rendered rooms
                import cv2

                scene_img = cv2.resize(final, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            else:
                scene_img = final
            comps = relight(scene_img, rng, camera_awb, flat_ambient, window_luma)
            plan = _plan(comps, rng, t, i, seed, scene_img if metered else None)
            names = [f"SYN_{counter + k:04d}.{fmt}" for k in range(len(plan.frames))]
            counter += len(plan.frames)

            def source(width: int, height: int, y0: int, y1: int, c: Components = comps) -> Components:
                return Components(c.day[y0:y1], c.tung[y0:y1], c.emit[y0:y1], c.ext[y0:y1],
                                  [f[y0:y1] for f in c.flash], c.mask[y0:y1])

            render_set(plan, out, names, (w, h), fmt, "studio", workers=1, source=source,
                       truth=to_uint8(final))
            name = Path(names[0]).stem
            doc_sets.append({"name": name, "final": f"truth/{name}.jpg", "mask": f"truth/{name}_window.png",
                             "source": p.name,
                             "frames": [_frame_entry(f, n, plan.frames[0]) for f, n in zip(plan.frames, names)]})
            t = plan.frames[-1].time + timedelta(seconds=float(base_rng.uniform(45, 150)))
        if progress is not None:
            progress(i + 1, len(files))
    if pairs:
        return {"index": write_index(out, entries, unmatched=skipped), "sets": entries, "skipped": skipped}
    doc = {"format": TRUTH_FORMAT, "version": 1, "seed": int(seed), "style": "from-finals",
           "source": str(Path(finals)), "format_frames": fmt, "sets": doc_sets, "skipped": skipped}
    atomic_write_text(out / "truth" / "sets.yaml", yaml.safe_dump(doc, sort_keys=False))
    return doc
