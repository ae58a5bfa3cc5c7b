"""Out-of-box safety figures of a final against its source (no reference edit needed).

What a studio notices first on a real photograph, measured (all images sRGB HxWx3 float32 in
[0, 1], same size; linear light and CIELAB through :mod:`flambient.colour`):

- :func:`exposure_change_ev`: log2 of the mean linear luminance, final / source (> 0: brighter);
- :func:`is_well_exposed`: the source's median encoded luminance lies in
  :data:`WELL_EXPOSED` (such an image must not be darkened or brightened much);
- :func:`neutral_shift_share`: share of ALL pixels that are bright and neutral in the source
  (every channel > :data:`BRIGHT`, CIELAB chroma C* < :data:`NEUTRAL_CHROMA`: white walls,
  clipped windows and lamps) and have a visible colour in the final (C* > :data:`SHIFT_CHROMA`);
  for a bracket set, pixels where another frame records a colour (:func:`recorded_colour_mask`:
  the view of a clipped window) are not neutral in the source;
- :func:`colour_kept`: a flash set's final's median saturation over the flash frame's (the flash
  is a neutral light: its frame records the materials' colours; an editor neutralises the
  ambient light's cast, not the materials);
- :func:`clip_crush`: shares of clipped (any channel >= 0.99) and crushed (all <= 0.01) pixels;
- :func:`blown_share`: share of pixels the final shows white where the source recorded them;
- windows (:func:`window_mask`, :func:`window_detail`, :func:`halo`): the blown region of the
  ambient frame, how much of the view's detail the final shows there relative to the best
  input frame, and how much brighter than in the source a ring just outside it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from . import colour, metrics

#: Median encoded luminance range of a "well-exposed" source.
WELL_EXPOSED = (0.25, 0.75)
#: A source pixel is "bright" when every sRGB channel exceeds this.
BRIGHT = 0.9
#: ... and "neutral" when its CIELAB chroma is below this.
NEUTRAL_CHROMA = 5.0
#: A bright neutral pixel "changed colour" when the final's chroma exceeds this.
SHIFT_CHROMA = 8.0
#: Linear luminance at which :func:`recorded_colour_mask` judges a frame's colour.
RECORDED_LEVEL = 0.8
#: Linear luminance below which a frame records no colour at a pixel (its noise floor).
RECORDED_MIN_LUMA = 0.002
#: Encoded ambient luminance from which a pixel belongs to a window / blown region.
WINDOW_LUMA = 0.95
#: CIELAB L* from which a final's pixel reads white, and below which a source's pixel is
#: recorded, for :func:`blown_share`.
BLOWN_L, RECORDED_L = 97.0, 95.0
#: Smallest window region (share of pixels) worth measuring.
WINDOW_MIN_SHARE = 0.002


def encoded_luma(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded relative luminance (HxW in [0, 1]) of an sRGB image."""
    lin = colour.srgb_to_linear(np.clip(np.asarray(srgb, dtype=np.float32), 0.0, 1.0))
    return colour.linear_to_srgb(colour.luminance(lin))


def median_luma(srgb: np.ndarray) -> float:
    """Median of :func:`encoded_luma`."""
    return float(np.median(encoded_luma(srgb)))


def is_well_exposed(srgb: np.ndarray) -> bool:
    """Whether the median encoded luminance lies in :data:`WELL_EXPOSED`."""
    lo, hi = WELL_EXPOSED
    return lo <= median_luma(srgb) <= hi


def exposure_change_ev(final: np.ndarray, source: np.ndarray) -> float:
    """Stops of exposure change, final over source (mean linear luminance ratio, log2)."""
    return metrics.exposure_ev(final, source)


def chroma(srgb: np.ndarray) -> np.ndarray:
    """CIELAB chroma C* (HxW) of an sRGB image."""
    lab = colour.srgb_to_lab(np.clip(np.asarray(srgb, dtype=np.float32), 0.0, 1.0))
    return np.hypot(lab[..., 1], lab[..., 2])


#: Linear max-channel range of the pixels :func:`saturation` measures (recorded, not clipped).
SATURATION_RANGE = (0.01, 0.95)


def saturation(srgb: np.ndarray) -> float:
    """Median saturation ``(max - min) / max`` of the linear RGB of an sRGB image (HxWx3), over
    the pixels whose brightest channel lies in :data:`SATURATION_RANGE`. Unlike CIELAB chroma it
    does not change with exposure, so two renderings of different brightness compare."""
    lin = colour.srgb_to_linear(np.clip(np.asarray(srgb, dtype=np.float32), 0.0, 1.0))
    hi, lo = lin.max(axis=-1), lin.min(axis=-1)
    ok = (hi > SATURATION_RANGE[0]) & (hi < SATURATION_RANGE[1])
    if not ok.any():
        return float("nan")
    return float(np.median(((hi - lo) / np.maximum(hi, 1e-6))[ok]))


def colour_kept(final: np.ndarray, flash_srgb: np.ndarray) -> float:
    """:func:`saturation` of a flash set's final over that of its flash frame (sRGB, any exposure):
    1 = the materials keep the colour the flash records, below 1 = the final took colour out."""
    ref = saturation(flash_srgb)
    return saturation(final) / ref if ref > 0 else float("nan")


def bright_neutral_mask(source: np.ndarray) -> np.ndarray:
    """HxW bool: every channel > :data:`BRIGHT` and C* < :data:`NEUTRAL_CHROMA`."""
    s = np.asarray(source, dtype=np.float32)
    return (s > BRIGHT).all(axis=-1) & (chroma(s) < NEUTRAL_CHROMA)


def recorded_colour_mask(frames: Sequence[np.ndarray]) -> np.ndarray:
    """HxW bool: pixels where some frame of a bracket set records a colour.

    ``frames`` are linear HxWx3 frames (any exposure). Each pixel of each frame is brought to
    one bright level (luminance :data:`RECORDED_LEVEL`, linear; the chromaticity kept) and
    counts as a recorded colour when its CIELAB chroma exceeds :data:`NEUTRAL_CHROMA`. Pixels
    darker than :data:`RECORDED_MIN_LUMA` in a frame record nothing there (noise).
    A clipped ambient window whose view the window-pull or flash frame shows in colour is such
    a pixel: colour in the final there is the view, not a tint.
    """
    if not frames:
        raise ValueError("recorded_colour_mask needs at least one frame")
    out = np.zeros(frames[0].shape[:2], dtype=bool)
    for f in frames:
        lin = np.clip(np.asarray(f, dtype=np.float32), 0.0, None)
        y = colour.luminance(lin)
        scaled = np.clip(lin * (RECORDED_LEVEL / np.maximum(y, 1e-12))[..., None], 0.0, 1.0)
        out |= (y > RECORDED_MIN_LUMA) & (chroma(colour.linear_to_srgb(scaled)) > NEUTRAL_CHROMA)
    return out


def neutral_shift_share(final: np.ndarray, source: np.ndarray,
                        other_frames: Sequence[np.ndarray] = ()) -> tuple[float, float]:
    """``(shifted, bright_neutral)``: shares of all pixels that are bright-neutral in the source
    and coloured (C* > :data:`SHIFT_CHROMA`) in the final, and that are bright-neutral at all.

    ``other_frames`` (linear HxWx3, for a bracket set: its frames other than ``source``'s):
    pixels where one of them records a colour (:func:`recorded_colour_mask`) do not count as
    neutral in the source, since the set shows what is there.
    """
    m = bright_neutral_mask(source)
    if len(other_frames):
        m &= ~recorded_colour_mask(other_frames)
    if not m.any():
        return 0.0, 0.0
    shifted = m & (chroma(final) > SHIFT_CHROMA)
    return float(shifted.mean()), float(m.mean())


def blown_share(final: np.ndarray, source: np.ndarray) -> float:
    """Share of all pixels the final shows white (L* >= :data:`BLOWN_L`) where the source
    recorded them (L* < :data:`RECORDED_L`): highlights the edit blew out (a bad frame merge's
    white speckles and blotches, a tone curve that burns a view)."""
    return float(((metrics.lightness(final) >= BLOWN_L) & (metrics.lightness(source) < RECORDED_L)).mean())


def clip_crush(srgb: np.ndarray) -> tuple[float, float]:
    """Shares of clipped (any channel >= 0.99) and crushed (all channels <= 0.01) pixels."""
    hi, lo = metrics.clipping_shares(srgb)
    return float(hi.mean()), float(lo.mean())


def _disk(radius: int) -> np.ndarray:
    r = max(1, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def window_mask(ambient_srgb: np.ndarray) -> np.ndarray | None:
    """HxW bool mask of the blown (window / lamp) region of an ambient frame, or None when it
    covers less than :data:`WINDOW_MIN_SHARE` of the image.

    Pixels whose encoded luminance is >= :data:`WINDOW_LUMA`, opened with a disk of 0.3 % of
    the long edge (specks removed).
    """
    y = encoded_luma(ambient_srgb) >= WINDOW_LUMA
    r = max(1, round(0.003 * max(y.shape)))
    m = cv2.morphologyEx(y.astype(np.uint8), cv2.MORPH_OPEN, _disk(r)) > 0
    return m if m.mean() >= WINDOW_MIN_SHARE else None


def _gradients(srgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """L* gradient magnitudes (1-D) of an sRGB image at the pixels of ``mask`` away from its edge
    (the window frame's own edge is not view detail)."""
    lum = colour.srgb_to_lab(np.clip(np.asarray(srgb, dtype=np.float32), 0.0, 1.0))[..., 0]
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    inner = cv2.erode(mask.astype(np.uint8), _disk(2)) > 0
    return np.hypot(gx, gy)[inner if inner.sum() >= 16 else mask]


def best_exposed(linear: np.ndarray, mask: np.ndarray, level: float = 0.9) -> np.ndarray:
    """A linear frame scaled so that the 95th percentile of its luminance inside ``mask`` sits
    at ``level``, encoded to sRGB: the frame at its best exposure for the window's view."""
    y = colour.luminance(np.asarray(linear, dtype=np.float32))
    p = float(np.percentile(y[mask], 95)) if mask.any() else 0.0
    scale = level / p if p > 1e-6 else 1.0
    return colour.linear_to_srgb(np.asarray(linear, dtype=np.float32) * np.float32(scale))


def window_detail(final: np.ndarray, frames_linear: Sequence[np.ndarray], mask: np.ndarray) -> float:
    """View detail the final keeps in ``mask``, in [0, 1]: of the L* gradient of the input frame
    that shows the most there (each frame at its best exposure for the window,
    :func:`best_exposed`), the share the final reproduces at the same pixels (per pixel the
    smaller of the two magnitudes, summed, over the frame's sum). 1: the final shows the view as
    well as the best frame; about 0: a flat white or grey window. Edges the final has where the
    frame has none (speckles of a bad merge, noise) add nothing."""
    grads = [_gradients(best_exposed(f, mask), mask) for f in frames_linear]
    best = max(grads, key=lambda g: float(g.sum()))
    total = float(best.sum())
    if best.size == 0 or total <= 1e-6 * best.size:
        return float("nan")
    return float(np.minimum(_gradients(final, mask), best).sum()) / total


def halo(final: np.ndarray, source: np.ndarray, mask: np.ndarray, width: float = 0.015) -> float:
    """Brightness overshoot around the window in L*: (mean L* of a ring just outside ``mask``
    minus mean L* of the next ring out) in the final, minus the same in the source. The rings
    are ``width`` x the long edge wide. > 0: the final glows around the window more than the
    source does (a halo); NaN when a ring is empty."""
    r = max(2, round(width * max(mask.shape)))
    m = mask.astype(np.uint8)
    d1 = cv2.dilate(m, _disk(r)) > 0
    d2 = cv2.dilate(m, _disk(2 * r)) > 0
    ring, outer = d1 & ~mask, d2 & ~d1
    if not ring.any() or not outer.any():
        return float("nan")

    def step(img: np.ndarray) -> float:
        lum = metrics.lightness(np.clip(img, 0.0, 1.0))
        return float(lum[ring].mean() - lum[outer].mean())

    return step(final) - step(source)
