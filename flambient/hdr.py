"""Merge the ambient exposures of a bracket into one linear ambient frame.

A tripod exposure bracket (say 1/30 s to 15 s, 9 EV) holds more than the one reference
exposure the model stack's ambient channel takes: the darker frames keep the highlights the
reference clips, the brighter ones the shadows it buries in noise. :func:`merge_exposures`
averages the exposure-normalised frames (``pixels * factor``, all at the reference exposure)
with per-pixel weights that favour well-exposed pixels of each frame as shot: a hat over the
frame's own linear value (its brightest channel), zero where it is clipped or nearly black,
times the light the frame gathered (``2**ev``: a longer exposure has less noise and finer
quantisation relative to the signal).
Where every frame is clipped the darkest one is used, where every frame is black the
brightest. The window pull (the darkest non-flash frame) keeps its own channel; a set with a
single non-flash frame is unchanged.
"""

from __future__ import annotations

import numpy as np

#: Linear value (as shot, brightest channel) from which a pixel counts as clipped.
CLIP = 0.95
#: Width of the ramps at both ends of the hat (linear units at the top, relative at the bottom).
TOP_RAMP = 0.15
BOTTOM = 0.004


def exposure_weight(shot: np.ndarray) -> np.ndarray:
    """Hat weight in [0, 1] of a pixel's brightest channel as shot (linear HxW, 1.0 = white)."""
    top = np.clip((CLIP - shot) / TOP_RAMP, 0.0, 1.0)
    bottom = np.clip(shot / (4 * BOTTOM) - 0.25, 0.0, 1.0)  # 0 below BOTTOM, 1 from 5 * BOTTOM
    return np.minimum(top, bottom)


def merge_exposures(parts: list[tuple[np.ndarray, float]], evs: list[float],
                    band_rows: int = 256) -> np.ndarray:
    """Weighted merge of exposure-normalised frames into float32 HxWx3 (linear, reference exposure).

    ``parts`` are ``(pixels HxWx3, factor)`` pairs whose product is the frame normalised to
    the reference exposure (uint16 RAW pixels or float32, as :func:`flambient.ingest.load_set_parts`
    decodes them); ``evs`` each frame's exposure relative to the reference (the frame as shot
    is ``pixels * factor * 2**ev``). Works in bands of ``band_rows`` rows to bound memory.
    """
    if not parts:
        raise ValueError("no frames to merge")
    h, w = parts[0][0].shape[:2]
    out = np.empty((h, w, 3), dtype=np.float32)
    darkest = int(np.argmin(evs))
    brightest = int(np.argmax(evs))
    for y0 in range(0, h, band_rows):
        sl = slice(y0, min(h, y0 + band_rows))
        num = np.zeros((sl.stop - sl.start, w, 3), dtype=np.float32)
        den = np.zeros((sl.stop - sl.start, w), dtype=np.float32)
        norm: list[np.ndarray] = []
        shot_max: list[np.ndarray] = []
        for (pix, fac), ev in zip(parts, evs):
            x = pix[sl, :, :3].astype(np.float32) * np.float32(fac)
            m = x.max(axis=2) * np.float32(2.0 ** ev)
            wgt = exposure_weight(m) * np.float32(2.0 ** ev)
            num += x * wgt[:, :, None]
            den += wgt
            norm.append(x)
            shot_max.append(m)
        band = num / np.maximum(den, 1e-12)[:, :, None]
        empty = den < 1e-6
        if empty.any():
            clipped = shot_max[darkest] >= CLIP
            band[empty & clipped] = norm[darkest][empty & clipped]
            band[empty & ~clipped] = norm[brightest][empty & ~clipped]
        out[sl] = band
    return out
