"""The output transform of a preset, the final's metadata, and writing finals and sidecars.

Per pixel, applied to every tile before stitching (:func:`edit_post`), in this order:

1. strength ``s``: ``final = base + s * (edit - base)`` in sRGB, where ``base`` is the neutral
   rendering of the set (its reference ambient frame, linear -> sRGB, no edit);
2. exposure bias: linear light times ``2**ev``;
3. white-balance target: linear light times the RGB of a ``K`` kelvin light relative to D65
   (luminance-normalised), so values below 6500 K warm the final and above cool it.

Then on the whole image (:func:`finish`): resize so the long edge is at most ``long_edge``
(area filter), and unsharp-mask sharpening (amount, Gaussian sigma in output pixels), done in
bands of rows so a 60 MP final needs no second full-size copy.

The sidecar of a final (its reader, writer and the ownership rule) is in
:mod:`flambient.batch.sidecar`.

Metadata: the reference frame's EXIF, IPTC and XMP (:mod:`flambient.io.metadata`: orientation,
size, flash, density and history made true of the final; GPS dropped on request) and an
embedded sRGB ICC profile; ``process`` records model, preset, input files with sha256,
timings and the fingerprint it compares to skip unchanged sets in the final's sidecar.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .brackets import BracketSet
from .colour import cct_to_linear_rgb, linear_to_srgb, srgb_to_linear
from .config import EditSettings, OutputSettings, Preset
from .inference import StackSource, TilePost
from .io.metadata import FinalMetadata
from .tiling import Tile

#: Colour temperature of the D65 white (K), the "no change" white-balance target.
D65_KELVIN = 6504.0


def wb_gains(kelvin: float | None) -> np.ndarray:
    """Linear RGB gains (3,) moving the D65 white to a ``kelvin`` light, luminance kept."""
    if kelvin is None:
        return np.ones(3, dtype=np.float32)
    return (cct_to_linear_rgb(float(kelvin)) / cct_to_linear_rgb(D65_KELVIN)).astype(np.float32)


def edit_post(edit: EditSettings) -> TilePost | None:
    """The per-tile part of the output transform (None when the preset changes nothing)."""
    gain = wb_gains(edit.white_balance) * np.float32(2.0 ** edit.exposure_bias)
    linear_gain = not np.allclose(gain, 1.0)
    if edit.strength >= 1.0 and not linear_gain:
        return None

    def post(t: Tile, srgb: np.ndarray, src: StackSource) -> np.ndarray:
        out = srgb
        if edit.strength < 1.0:
            base = linear_to_srgb(src.ambient(t))
            out = base + np.float32(edit.strength) * (out - base)
        if linear_gain:
            out = linear_to_srgb(srgb_to_linear(out) * gain)
        return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)

    return post


def resize_long_edge(srgb: np.ndarray, long_edge: int | None) -> np.ndarray:
    """Area-downscale HxWx3 so that max(H, W) <= ``long_edge`` (never upscales)."""
    h, w = srgb.shape[:2]
    if not long_edge or max(h, w) <= long_edge:
        return srgb
    import cv2

    s = long_edge / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(srgb, size, interpolation=cv2.INTER_AREA)


def sharpen_inplace(srgb: np.ndarray, amount: float, sigma: float, band: int = 128) -> np.ndarray:
    """Unsharp mask ``x + amount * (x - gauss(x, sigma))``, clipped to [0, 1], in place.

    Works on bands of rows with a margin of ``4 sigma`` so the result equals a whole-image
    blur while only one band is copied at a time. The band buffers are allocated once and
    reused (small enough to stay on the heap: fresh pages per band cost more than the blur).
    Returns ``srgb``.
    """
    if amount <= 0:
        return srgb
    import cv2

    h, w = srgb.shape[:2]
    m = int(math.ceil(4 * sigma)) + 1
    a = np.float32(amount)
    chunk_buf = np.empty((band + 2 * m,) + srgb.shape[1:], dtype=np.float32)
    blur_buf = np.empty_like(chunk_buf)
    saved = np.empty((m,) + srgb.shape[1:], dtype=np.float32)  # original rows just above the band
    n_saved = 0
    for y in range(0, h, band):
        lo, hi = max(0, y - m), min(h, y + band + m)
        chunk, blur = chunk_buf[: hi - lo], blur_buf[: hi - lo]
        chunk[...] = srgb[lo:hi]
        if n_saved:
            chunk[: y - lo] = saved[m - (y - lo):]
        cv2.GaussianBlur(chunk, (0, 0), sigmaX=sigma, sigmaY=sigma, dst=blur, borderType=cv2.BORDER_REFLECT_101)
        ye = min(h, y + band)
        keep = chunk[max(y, ye - m) - lo: ye - lo]
        saved[m - len(keep):] = keep
        n_saved = len(keep)
        core, dst = chunk[y - lo: ye - lo], srgb[y:ye]
        np.subtract(core, blur[y - lo: ye - lo], out=blur[y - lo: ye - lo])
        blur[y - lo: ye - lo] *= a
        np.add(core, blur[y - lo: ye - lo], out=dst)
        np.clip(dst, 0.0, 1.0, out=dst)
    return srgb


def finish(srgb: np.ndarray, out: OutputSettings) -> np.ndarray:
    """Whole-image finishing: long-edge resize, then output sharpening (may work in place)."""
    img = resize_long_edge(srgb, out.long_edge)
    return sharpen_inplace(img, out.sharpen, out.sharpen_radius)


def final_metadata(bset: BracketSet, preset: Preset, model: str) -> FinalMetadata:
    """What a set's final carries: its reference frame's metadata, the set's flash, GPS per preset.

    The processing event names the model and preset (:mod:`flambient.io.metadata`).
    """
    from . import __version__

    ref = bset.reference_frame
    flash = next((f.path for f in bset.frames if f.role == "flash" or f.exif.flash_fired), None)
    return FinalMetadata(source=ref.path, fallback=ref.exif, flash_source=flash,
                         strip_gps=preset.metadata.strip_gps, software=f"flambient {__version__}",
                         history=f"model {model}, preset {preset.name}")


def write_final(path: str | Path, srgb: np.ndarray, out: OutputSettings, meta: FinalMetadata | None,
                before_publish: Callable[[str, Path], None] | None = None) -> Path:
    """Write the finished sRGB HxWx3 image atomically as JPEG or 8/16-bit TIFF, all with the sRGB ICC.

    ``meta`` (from :func:`final_metadata`; None = no metadata) gives the final its source's
    EXIF, IPTC and XMP and its density (dpi), see :mod:`flambient.io.metadata`.
    ``before_publish(sha256, tmp)`` is called with the hash of the complete file while it is
    still under its temporary name ``tmp`` (``process`` writes the sidecar there), then the file is renamed
    onto ``path``. An exception from it leaves ``path`` as it was.
    """
    from .io.atomic import atomic_path
    from .io.images import encode_jpeg, save_tiff
    from .io.metadata import prepare

    jpeg = out.format == "jpeg"
    prepared = prepare(meta, (int(srgb.shape[1]), int(srgb.shape[0])), jpeg) if meta is not None else None
    dpi = prepared.dpi if prepared is not None else None
    with atomic_path(path) as tmp:
        if jpeg:
            tmp.write_bytes(encode_jpeg(srgb, quality=out.quality, dpi=dpi))
        else:
            save_tiff(tmp, srgb, icc=True, bits=8 if out.format == "tiff8" else 16, dpi=dpi)
        if prepared is not None:
            prepared.apply(tmp)
        if before_publish is not None:
            before_publish(sha256_file(tmp), tmp)
    return Path(path)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
