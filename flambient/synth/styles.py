"""House styles: the finals of synthetic sets as documented, deterministic functions of the light.

A style maps the light components of a set, in decoded linear sRGB normalised to the reference
ambient exposure (what ``ingest`` puts in the stack), to an sRGB final:

- ``A``: the ambient scene (daylight + tungsten + fixtures + exterior), *before* clipping;
- ``F``: the flash-only light (the flash frame minus its ambient part), mean over flash pops;
- ``m``: the window mask (1 = window glass).

With set statistics ``S`` (:class:`StyleStats`: interior medians of ``A`` and ``F``, the
grey-world colour of the ambient interior, the median exterior luminance), a style computes::

    a        = A / S.ambient_median * wb_gain ** wb        # ambient, cast neutralised by wb
    f        = F / S.flash_median                          # flash, already neutral
    interior = key * (w_flash * f + (1 - w_flash) * a) * tint
    exterior = ext_key * A / S.exterior_median * tint      # windows "pulled" for the outside
    linear   = interior * (1 - m) + exterior * m
    final    = S-curve(sRGB(filmic(linear)))

``wb_gain`` is the per-channel gain making the ambient grey-world colour neutral (luminance
preserved); ``tint`` the gain from the 5500 K flash white to ``white_k``; ``filmic(x) =
x (1 + x / white**2) / (1 + x)``; the S-curve ``y + contrast * y (1 - y)(2y - 1)`` in sRGB.

``studio``: mostly flash (70 %), ambient cast neutralised (90 %), neutral white, windows held
down, crisp contrast. ``natural``: mostly ambient (65 %), keeps most of the warm cast (30 %
neutralised), white at 4300 K (warmer), brighter windows, softer contrast.
Everything depends only on the components and statistics, so the inputs of a set determine
its final up to sensor noise and clipping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..colour import cct_to_linear_rgb, linear_to_srgb, luminance
from ..errors import ConfigError


@dataclass(frozen=True)
class Style:
    """Parameters of one house style (see the module docstring for the formula)."""

    name: str
    w_flash: float
    wb: float
    white_k: float
    key: float
    ext_key: float
    white: float
    contrast: float
    description: str


STYLES: dict[str, Style] = {
    "studio": Style("studio", w_flash=0.7, wb=0.9, white_k=5500.0, key=0.20, ext_key=0.30, white=5.0,
                    contrast=0.25, description="flash-led, neutral white, windows pulled, crisp"),
    "natural": Style("natural", w_flash=0.35, wb=0.3, white_k=4300.0, key=0.21, ext_key=0.45, white=3.0,
                     contrast=0.08, description="ambient-led, warm, brighter windows, soft"),
}


def get_style(name: str) -> Style:
    """The style called ``name``; raises ConfigError listing the known ones."""
    if name not in STYLES:
        raise ConfigError(f"unknown style {name!r}", hint=f"use one of: {', '.join(STYLES)}")
    return STYLES[name]


@dataclass
class StyleStats:
    """Set-level statistics a style needs (computed once per set, e.g. from a preview)."""

    ambient_median: float
    flash_median: float
    ambient_grey: tuple[float, float, float]
    exterior_median: float


def style_stats(ambient: np.ndarray, flash: np.ndarray, mask: np.ndarray) -> StyleStats:
    """Statistics of HxWx3 ``ambient``/``flash`` (normalised linear) with HxW window ``mask``."""
    interior = mask < 0.5
    la = luminance(ambient)[interior]
    lf = luminance(flash)[interior]
    a_in = ambient[interior]
    lum_ok = la < np.percentile(la, 98) if la.size else la
    grey = a_in[lum_ok].mean(axis=0) if la.size else np.ones(3)
    ext = luminance(ambient)[~interior]
    return StyleStats(
        ambient_median=float(max(np.median(la), 1e-9)) if la.size else 1.0,
        flash_median=float(max(np.median(lf), 1e-9)) if lf.size else 1.0,
        ambient_grey=tuple(float(x) for x in np.maximum(grey, 1e-9)),
        exterior_median=float(max(np.median(ext), 1e-9)) if ext.size else 1.0,
    )


def _gains(style: Style, stats: StyleStats) -> tuple[np.ndarray, np.ndarray]:
    grey = np.asarray(stats.ambient_grey, np.float64)
    wb_gain = float(luminance(grey)) / grey
    tint = cct_to_linear_rgb(style.white_k) / cct_to_linear_rgb(5500.0)
    tint = tint / float(luminance(tint))
    return (wb_gain ** style.wb).astype(np.float32, copy=False), tint.astype(np.float32, copy=False)


def apply_style(style: Style | str, ambient: np.ndarray, flash: np.ndarray, mask: np.ndarray,
                stats: StyleStats) -> np.ndarray:
    """The final (sRGB HxWx3 in [0, 1]) of ``style`` from normalised linear components.

    Works on any band of rows as long as ``stats`` come from the whole set.
    """
    st = get_style(style) if isinstance(style, str) else style
    wb_gain, tint = _gains(st, stats)
    a = ambient * (wb_gain / np.float32(stats.ambient_median))
    f = flash * np.float32(1.0 / stats.flash_median)
    interior = np.float32(st.key) * (np.float32(st.w_flash) * f + np.float32(1 - st.w_flash) * a)
    ext = ambient * np.float32(st.ext_key / stats.exterior_median)
    m = mask[:, :, None].astype(np.float32, copy=False)
    lin = (interior * (1 - m) + ext * m) * tint
    x = np.maximum(lin, 0)
    x = x * (1 + x / np.float32(st.white**2)) / (1 + x)
    y = linear_to_srgb(np.clip(x, 0, 1))
    y = y + np.float32(st.contrast) * y * (1 - y) * (2 * y - 1)
    return np.clip(y, 0, 1).astype(np.float32, copy=False)
