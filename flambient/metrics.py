"""Image-quality metrics between a prediction and a reference edit.

Unless a docstring says otherwise, every metric takes two sRGB-encoded float arrays of shape
HxWx3 with values in [0, 1] (``pred`` first, ``truth`` second, same shape) and returns a Python
float. Colour conversions go through :mod:`flambient.colour` (CIELAB with a D65 white).

References:
- SSIM: Wang, Bovik, Sheikh & Simoncelli (2004), "Image quality assessment: from error
  visibility to structural similarity", IEEE TIP 13(4): 11x11 Gaussian window, sigma 1.5,
  K1 = 0.01, K2 = 0.03, dynamic range L = 1.
- MS-SSIM: Wang, Simoncelli & Bovik (2003), "Multi-scale structural similarity for image
  quality assessment": five scales with exponents (0.0448, 0.2856, 0.3001, 0.2363, 0.1333).
- CIEDE2000: Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula:
  implementation notes, supplementary test data, and mathematical observations", CR&A 30(1).
- FLIP: Andersson et al. (2020), "FLIP: A Difference Evaluator for Alternating Images"
  (NVIDIA's ``flip-evaluator`` package, LDR mode, 67 pixels per degree).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from flambient import colour

#: Cap of :func:`psnr` for identical images, in dB (keeps the value finite for JSON).
PSNR_MAX_DB = 100.0

#: The metric keys computed by :func:`all_metrics`, in report order, and whether lower is better.
METRIC_KEYS: tuple[str, ...] = (
    "psnr",
    "ssim",
    "ms_ssim",
    "delta_e2000",
    "delta_e2000_p95",
    "delta_rgb",
    "wb_error",
    "tone_curve",
    "exposure_ev",
    "clipped",
    "flip",
)
HIGHER_IS_BETTER = frozenset({"psnr", "ssim", "ms_ssim"})

_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_SSIM_WIN, _SSIM_SIGMA = 11, 1.5
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _pair(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred shape {p.shape} differs from truth shape {t.shape}")
    return p, t


# ---------------------------------------------------------------------------------- PSNR / SSIM


def psnr(pred: Any, truth: Any, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels (capped at ``PSNR_MAX_DB``)."""
    p, t = _pair(pred, truth)
    mse = float(np.mean((p - t) ** 2))
    if mse <= data_range**2 * 10 ** (-PSNR_MAX_DB / 10):
        return PSNR_MAX_DB
    return 10.0 * math.log10(data_range**2 / mse)


def _blur(x: np.ndarray) -> np.ndarray:
    """Gaussian-weighted local mean (11x11, sigma 1.5) of a 2-D float64 array."""
    return cv2.GaussianBlur(x, (_SSIM_WIN, _SSIM_WIN), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)


def _ssim_maps(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """SSIM and contrast-structure maps of two 2-D arrays, borders (window radius) cropped."""
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    mx, my = _blur(x), _blur(y)
    vx = _blur(x * x) - mx * mx
    vy = _blur(y * y) - my * my
    cxy = _blur(x * y) - mx * my
    cs = (2 * cxy + c2) / (vx + vy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    r = _SSIM_WIN // 2
    crop = (slice(r, -r), slice(r, -r)) if min(x.shape) > 2 * r else (slice(None), slice(None))
    return (lum * cs)[crop], cs[crop]


def _channels(a: np.ndarray) -> list[np.ndarray]:
    return [a] if a.ndim == 2 else [np.ascontiguousarray(a[:, :, c]) for c in range(a.shape[2])]


def ssim(pred: Any, truth: Any, data_range: float = 1.0) -> float:
    """Mean SSIM (Wang et al. 2004), averaged over the RGB channels; 1 means identical.

    Gaussian window 11x11 / sigma 1.5, K1 = 0.01, K2 = 0.03; the window radius is cropped from
    the borders before averaging. Accepts HxW or HxWxC arrays.
    """
    p, t = _pair(pred, truth)
    vals = [float(_ssim_maps(a, b, data_range)[0].mean()) for a, b in zip(_channels(p), _channels(t))]
    return float(np.mean(vals))


def _half(x: np.ndarray) -> np.ndarray:
    """2x2 box downsample of a 2-D array (odd edges dropped)."""
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    x = x[:h, :w]
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def ms_ssim(pred: Any, truth: Any, data_range: float = 1.0) -> float:
    """Multi-scale SSIM (Wang et al. 2003), averaged over the RGB channels.

    Five dyadic scales when the image is large enough (shorter side >= 176 px); smaller images
    use as many scales as keep the coarsest side >= 11 px, with the weights renormalised.
    Negative contrast-structure terms are clamped to 0 so the product stays defined.
    """
    p, t = _pair(pred, truth)
    side = min(p.shape[:2])
    n = 1
    while n < len(MS_SSIM_WEIGHTS) and side // (2**n) >= _SSIM_WIN:
        n += 1
    w = np.asarray(MS_SSIM_WEIGHTS[:n], dtype=np.float64)
    w = w / w.sum()
    vals = []
    for a, b in zip(_channels(p), _channels(t)):
        score = 1.0
        for s in range(n):
            full, cs = _ssim_maps(a, b, data_range)
            term = full.mean() if s == n - 1 else cs.mean()
            score *= max(float(term), 0.0) ** w[s]
            a, b = _half(a), _half(b)
        vals.append(score)
    return float(np.mean(vals))


# ---------------------------------------------------------------------------------- CIEDE2000


def delta_e2000(lab1: Any, lab2: Any) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1) between CIELAB arrays of shape ...x3.

    Follows Sharma, Wu & Dalal (2005) exactly, including the hue-angle conventions for
    achromatic colours. Returns a float64 array of shape ``lab1.shape[:-1]``.
    """
    a1 = np.asarray(lab1, dtype=np.float64)
    a2 = np.asarray(lab2, dtype=np.float64)
    L1, A1, B1 = a1[..., 0], a1[..., 1], a1[..., 2]
    L2, A2, B2 = a2[..., 0], a2[..., 1], a2[..., 2]
    c_bar = 0.5 * (np.hypot(A1, B1) + np.hypot(A2, B2))
    c7 = c_bar**7
    g = 0.5 * (1.0 - np.sqrt(c7 / (c7 + 25.0**7)))
    ap1, ap2 = (1.0 + g) * A1, (1.0 + g) * A2
    cp1, cp2 = np.hypot(ap1, B1), np.hypot(ap2, B2)
    hp1 = np.degrees(np.arctan2(B1, ap1)) % 360.0
    hp2 = np.degrees(np.arctan2(B2, ap2)) % 360.0
    hp1 = np.where((ap1 == 0) & (B1 == 0), 0.0, hp1)
    hp2 = np.where((ap2 == 0) & (B2 == 0), 0.0, hp2)
    chroma_zero = (cp1 * cp2) == 0

    d_l = L2 - L1
    d_c = cp2 - cp1
    dh = hp2 - hp1
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(chroma_zero, 0.0, dh)
    d_h = 2.0 * np.sqrt(cp1 * cp2) * np.sin(np.radians(dh) / 2.0)

    l_bar = 0.5 * (L1 + L2)
    cp_bar = 0.5 * (cp1 + cp2)
    h_sum = hp1 + hp2
    h_bar = np.where(
        np.abs(hp1 - hp2) <= 180.0,
        0.5 * h_sum,
        np.where(h_sum < 360.0, 0.5 * (h_sum + 360.0), 0.5 * (h_sum - 360.0)),
    )
    h_bar = np.where(chroma_zero, h_sum, h_bar)

    t = (
        1.0
        - 0.17 * np.cos(np.radians(h_bar - 30.0))
        + 0.24 * np.cos(np.radians(2.0 * h_bar))
        + 0.32 * np.cos(np.radians(3.0 * h_bar + 6.0))
        - 0.20 * np.cos(np.radians(4.0 * h_bar - 63.0))
    )
    d_theta = 30.0 * np.exp(-(((h_bar - 275.0) / 25.0) ** 2))
    cb7 = cp_bar**7
    r_c = 2.0 * np.sqrt(cb7 / (cb7 + 25.0**7))
    l50 = (l_bar - 50.0) ** 2
    s_l = 1.0 + 0.015 * l50 / np.sqrt(20.0 + l50)
    s_c = 1.0 + 0.045 * cp_bar
    s_h = 1.0 + 0.015 * cp_bar * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c
    tl, tc, th = d_l / s_l, d_c / s_c, d_h / s_h
    return np.sqrt(np.maximum(tl * tl + tc * tc + th * th + r_t * tc * th, 0.0))


def delta_e_map(pred: Any, truth: Any) -> np.ndarray:
    """Per-pixel CIEDE2000 between two sRGB HxWx3 images (HxW float64)."""
    p, t = _pair(pred, truth)
    return delta_e2000(colour.srgb_to_lab(p.astype(np.float32)), colour.srgb_to_lab(t.astype(np.float32)))


def delta_e_stats(pred: Any, truth: Any) -> tuple[float, float]:
    """Mean and 95th percentile of the per-pixel CIEDE2000 between two sRGB images."""
    de = delta_e_map(pred, truth)
    return float(de.mean()), float(np.percentile(de, 95))


def window_delta_e(pred: Any, truth: Any, mask: Any, threshold: float = 0.5) -> float:
    """Mean CIEDE2000 inside a window mask (HxW in [0, 1], pixels above ``threshold``).

    Returns NaN when the mask selects no pixel.
    """
    m = np.asarray(mask, dtype=np.float64)
    if m.ndim == 3:
        m = m[:, :, 0]
    sel = m > threshold
    if not sel.any():
        return float("nan")
    return float(delta_e_map(pred, truth)[sel].mean())


# ---------------------------------------------------------------------------------- colour / tone


def delta_rgb(pred: Any, truth: Any) -> float:
    """Mean absolute difference of the sRGB signal values (same [0, 1] units)."""
    p, t = _pair(pred, truth)
    return float(np.mean(np.abs(p - t)))


def neutral_mask(truth: Any, max_chroma: float = 6.0, l_range: tuple[float, float] = (15.0, 95.0)) -> np.ndarray:
    """Boolean HxW mask of the truth's near-neutral pixels: CIELAB chroma below ``max_chroma``
    and lightness L* inside ``l_range`` (excludes black, clipped white and coloured pixels)."""
    lab = colour.srgb_to_lab(np.asarray(truth, dtype=np.float32))
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    return (chroma < max_chroma) & (lab[..., 0] > l_range[0]) & (lab[..., 0] < l_range[1])


def wb_error(pred: Any, truth: Any, min_share: float = 0.005) -> float:
    """White-balance error in degrees: the angle between the mean linear RGB of the prediction
    and of the truth over the truth's near-neutral pixels (the "recovery angular error" of
    colour-constancy work; intensity-independent). NaN when fewer than ``min_share`` of the
    pixels are near-neutral."""
    p, t = _pair(pred, truth)
    sel = neutral_mask(t)
    if sel.mean() < min_share:
        return float("nan")
    mp = colour.srgb_to_linear(p.astype(np.float32))[sel].mean(axis=0).astype(np.float64)
    mt = colour.srgb_to_linear(t.astype(np.float32))[sel].mean(axis=0).astype(np.float64)
    denom = float(np.linalg.norm(mp) * np.linalg.norm(mt))
    if denom <= 0:
        return float("nan")
    cos = float(np.clip(np.dot(mp, mt) / denom, -1.0, 1.0))
    return math.degrees(math.acos(cos))


def lightness(srgb: Any) -> np.ndarray:
    """CIELAB L* (0-100) of an sRGB HxWx3 image (HxW float32)."""
    return colour.srgb_to_lab(np.asarray(srgb, dtype=np.float32))[..., 0]


def _tone_fit_l(lp: np.ndarray, lt: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lp = lp.ravel().astype(np.float64)
    lt = lt.ravel().astype(np.float64)
    edges = np.linspace(0.0, 100.0, bins + 1)
    idx = np.clip(np.digitize(lp, edges) - 1, 0, bins - 1)
    counts = np.bincount(idx, minlength=bins)
    share = counts / max(lp.size, 1)
    n = np.maximum(counts, 1)
    x = np.where(counts > 0, np.bincount(idx, weights=lp, minlength=bins) / n, np.nan)
    y = np.where(counts > 0, np.bincount(idx, weights=lt, minlength=bins) / n, np.nan)
    return x, y, share


def tone_curve_fit(pred: Any, truth: Any, bins: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tone curve mapping prediction lightness to truth lightness.

    Pixels are binned by the prediction's L* into ``bins`` equal bins over 0-100; returns, per
    bin, (mean prediction L*, mean truth L*, pixel share): a piecewise-constant least-squares
    fit of truth lightness as a function of prediction lightness. Empty bins give NaN L*.
    """
    return _tone_fit_l(lightness(pred), lightness(truth), bins)


def _tone_curve_l(lp: np.ndarray, lt: np.ndarray, bins: int) -> float:
    cdf_dist = float(np.mean(np.abs(np.sort(lp.ravel()) - np.sort(lt.ravel()))))
    x, y, share = _tone_fit_l(lp, lt, bins)
    ok = share > 0
    fit_err = float(np.sum(share[ok] * np.abs(y[ok] - x[ok])))
    return 0.5 * (cdf_dist + fit_err)


def tone_curve(pred: Any, truth: Any, bins: int = 32) -> float:
    """Tone-curve distance in L* units: the mean of

    - the distance between the two lightness CDFs (1-D Wasserstein distance = mean absolute
      difference of the sorted L* values), and
    - the fitted tone-curve error: the pixel-weighted mean absolute deviation of the fitted
      curve (:func:`tone_curve_fit`) from the identity.

    Both are 0 for identical images; a uniform lightness offset of d L* gives about d.
    """
    return _tone_curve_l(lightness(pred), lightness(truth), bins)


def exposure_ev(pred: Any, truth: Any, eps: float = 1e-4) -> float:
    """Exposure error in EV (stops): log2 of the ratio of mean linear luminances, pred / truth.

    Positive means the prediction is brighter than the truth.
    """
    p, t = _pair(pred, truth)
    yp = float(colour.luminance(colour.srgb_to_linear(p.astype(np.float32))).mean())
    yt = float(colour.luminance(colour.srgb_to_linear(t.astype(np.float32))).mean())
    return math.log2((yp + eps) / (yt + eps))


def clipping_shares(srgb: Any, high: float = 0.99, low: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Boolean HxW masks of clipped highlights (any channel >= ``high``) and crushed shadows
    (all channels <= ``low``) of an sRGB image."""
    a = np.asarray(srgb, dtype=np.float64)
    return (a >= high).any(axis=-1), (a <= low).all(axis=-1)


def clipped(pred: Any, truth: Any, high: float = 0.99, low: float = 0.01) -> float:
    """Share of pixels (0-1) that the prediction clips or crushes where the truth does not.

    A pixel counts when any channel of the prediction is >= ``high`` (clipped highlight) or all
    channels are <= ``low`` (crushed shadow), and the truth's pixel is neither: clipping the
    edit also has (a blown window the editor kept blown) is not counted against the prediction.
    """
    p, t = _pair(pred, truth)
    ph, pl = clipping_shares(p, high, low)
    th, tl = clipping_shares(t, high, low)
    return float(np.mean((ph | pl) & ~(th | tl)))


# ---------------------------------------------------------------------------------- FLIP


def flip_map(pred: Any, truth: Any) -> np.ndarray:
    """Per-pixel LDR-FLIP error (HxW in [0, 1], 0 = indistinguishable) of sRGB images."""
    import flip_evaluator

    p, t = _pair(pred, truth)
    ref = np.ascontiguousarray(np.clip(t, 0.0, 1.0).astype(np.float32))
    test = np.ascontiguousarray(np.clip(p, 0.0, 1.0).astype(np.float32))
    err, _mean, _params = flip_evaluator.evaluate(ref, test, "LDR", inputsRGB=True, applyMagma=False)
    err = np.asarray(err, dtype=np.float64)
    return err[..., 0] if err.ndim == 3 else err


def flip(pred: Any, truth: Any) -> float:
    """Mean LDR-FLIP error (0 = indistinguishable, 1 = maximal) at 67 pixels per degree."""
    return float(flip_map(pred, truth).mean())


# ---------------------------------------------------------------------------------- all at once


def all_metrics(pred: Any, truth: Any, window_mask: Any | None = None,
                de_map: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of :data:`METRIC_KEYS` for one image pair (sRGB HxWx3 in [0, 1]).

    Adds ``window_delta_e`` when ``window_mask`` (HxW in [0, 1]) is given and selects pixels.
    ``de_map`` may pass the pair's per-pixel CIEDE2000 (:func:`delta_e_map`) when the caller
    already has it. NaN marks a metric that is undefined for this image (e.g. ``wb_error``
    without near-neutral pixels).
    """
    p, t = _pair(pred, truth)
    p = np.clip(p, 0.0, 1.0)
    t = np.clip(t, 0.0, 1.0)
    lab_p = colour.srgb_to_lab(p.astype(np.float32))
    lab_t = colour.srgb_to_lab(t.astype(np.float32))
    de = delta_e2000(lab_p, lab_t) if de_map is None else np.asarray(de_map, dtype=np.float64)
    out = {
        "psnr": psnr(p, t),
        "ssim": ssim(p, t),
        "ms_ssim": ms_ssim(p, t),
        "delta_e2000": float(de.mean()),
        "delta_e2000_p95": float(np.percentile(de, 95)),
        "delta_rgb": delta_rgb(p, t),
        "wb_error": wb_error(p, t),
        "tone_curve": _tone_curve_l(lab_p[..., 0], lab_t[..., 0], 32),
        "exposure_ev": exposure_ev(p, t),
        "clipped": clipped(p, t),
        "flip": flip(p, t),
    }
    if window_mask is not None:
        m = np.asarray(window_mask, dtype=np.float64)
        m = m[:, :, 0] if m.ndim == 3 else m
        if m.shape == de.shape and (m > 0.5).any():
            out["window_delta_e"] = float(de[m > 0.5].mean())
    return out
