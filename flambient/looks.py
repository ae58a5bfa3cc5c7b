"""Simulated studios: seeded, parametric editor "looks" applied to real photographs.

A :class:`Look` turns a real photograph (sRGB HxWx3 float32 in [0, 1]) into an edited
version of it (same shape and encoding), the way a real-estate editor's house style would:
brighter, with the editor's colour and contrast habits. Applying one look to many real
photographs gives a "simulated studio": real content with an exact, consistent truth, so
few-shot learning of a style can be measured on real pixels. A parametric editor is easier
to learn than a human one (it is one global-ish function with eight numbers and no
per-image judgement); results on simulated studios are an upper bound of what the same
method achieves on a real studio's edits.

The steps, in order (all in linear light, D65 / sRGB primaries, through :mod:`flambient.colour`):

1. **exposure target**: the image's median luminance Y is moved toward ``target_median``
   (gain ``(target_median / median(Y)) ** exposure_strength``, bounded to [1/4, 8]):
   professional interior finals are bright and high-key;
2. **white-balance preference**: per-channel gains of a Planckian light at ``kelvin``
   relative to D65 (:func:`flambient.colour.cct_to_linear_rgb`), luminance-preserving;
   below 6504 K warms the image, above cools it; exactly neutral at :data:`NEUTRAL_KELVIN`;
3. **window pull**: where the luminance, blurred with a Gaussian of ``window_sigma`` x the long
   edge, exceeds ``window_threshold``, luminance is pulled down by up to ``window_pull_ev``
   stops under a soft mask (smoothstep over one ``window_softness`` of luminance);
4. **highlight compression**: an extended-Reinhard shoulder on luminance (white point at the
   exposure gain: a clipped source pixel maps to 1), mixed in with weight ``highlights``;
5. **tone curve** on the sRGB-encoded luminance: shadow lift ``x + lift * 4 x (1-x)^3``
   (monotone for lift < 1) then an S-curve ``(1-c) x + c smoothstep(x)`` (monotone); it fixes
   0 and 1 and is the identity above 1;
6. **local contrast**: unsharp mask of log luminance with a Gaussian of ``local_sigma`` x the
   long edge, amount ``local_amount``;
7. **saturation**: ``Y + saturation * (rgb - Y)`` in linear light.

Steps 1 and 3-6 scale the three channels by one luminance ratio, so they keep hue and a
neutral pixel neutral; only step 2 (and channels clipped at 1 on output) changes a neutral
pixel's colour. Every look is deterministic: same seed, same parameters, same pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from . import colour

#: The Planckian temperature whose white-balance gains are exactly 1 (the D65 reference).
NEUTRAL_KELVIN = 6504.0

#: Parameter ranges :func:`make_look` draws from (uniform), with their meaning.
LOOK_RANGES: dict[str, tuple[float, float]] = {
    "target_median": (0.20, 0.34),  # linear median luminance after exposure (sRGB ~0.48-0.62)
    "exposure_strength": (0.7, 1.0),  # 1 = full per-image auto-exposure, less = partial
    "kelvin": (5200.0, 7800.0),  # white-balance preference, K (6504 = neutral)
    "window_threshold": (0.85, 1.1),  # blurred linear luminance where the window pull starts
    "window_pull_ev": (0.0, 1.5),  # stops pulled down inside the window mask
    "highlights": (0.0, 0.7),  # highlight-compression weight
    "shadow_lift": (0.0, 0.25),  # tone-curve shadow lift
    "contrast": (0.0, 0.5),  # tone-curve S-curve weight
    "local_amount": (0.0, 0.35),  # local-contrast (large-radius unsharp) amount
    "saturation": (0.85, 1.3),  # saturation factor
}
_EPS = 1e-6


def _smoothstep(x: np.ndarray) -> np.ndarray:
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of a 2-D float32 array (reflective borders); identity for tiny sigma."""
    if sigma_px < 0.3:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma_px), borderType=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class Look:
    """One editor's house style; see the module docstring for what each parameter does."""

    target_median: float = 0.26
    exposure_strength: float = 1.0
    kelvin: float = NEUTRAL_KELVIN
    window_threshold: float = 1.0
    window_pull_ev: float = 0.0
    window_softness: float = 0.25
    window_sigma: float = 0.01
    highlights: float = 0.0
    shadow_lift: float = 0.0
    contrast: float = 0.0
    local_amount: float = 0.0
    local_sigma: float = 0.03
    saturation: float = 1.0
    seed: int | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        """The parameters as a plain dict (for JSON reports)."""
        return asdict(self)

    def wb_gains(self) -> np.ndarray:
        """Linear RGB gains (3,) of the white-balance preference; exactly 1 at NEUTRAL_KELVIN."""
        if self.kelvin == NEUTRAL_KELVIN:
            return np.ones(3, dtype=np.float32)
        g = colour.cct_to_linear_rgb(self.kelvin) / colour.cct_to_linear_rgb(NEUTRAL_KELVIN)
        return (g / float(colour.LUMA_WEIGHTS @ g)).astype(np.float32)

    def tone_curve(self, x: np.ndarray) -> np.ndarray:
        """The global tone curve on sRGB-encoded luminance (any shape; identity above 1).

        Monotone non-decreasing, fixes 0 and 1.
        """
        x = np.asarray(x, dtype=np.float32)
        t = np.clip(x, 0.0, 1.0)
        y = t + np.float32(self.shadow_lift) * 4.0 * t * (1.0 - t) ** 3
        y = (1.0 - self.contrast) * y + self.contrast * _smoothstep(y)
        return np.where(x > 1.0, x, y).astype(np.float32)

    def apply(self, img: np.ndarray) -> np.ndarray:
        """The edited image: sRGB HxWx3 float32 in [0, 1] -> sRGB HxWx3 float32 in [0, 1]."""
        src = np.asarray(img, dtype=np.float32)[:, :, :3]
        lin = colour.srgb_to_linear(np.clip(src, 0.0, 1.0))
        y0 = colour.luminance(lin)
        long_edge = max(src.shape[:2])
        # 1. exposure target
        med = float(np.median(y0))
        gain = float(np.clip((self.target_median / max(med, 1e-4)) ** self.exposure_strength, 0.25, 8.0))
        lin = lin * np.float32(gain)
        # 2. white-balance preference
        lin = lin * self.wb_gains()
        y = colour.luminance(lin)
        y_new = y.copy()
        # 3. window pull (soft mask on blurred luminance)
        if self.window_pull_ev > 0:
            yb = _blur(y, self.window_sigma * long_edge)
            m = _smoothstep((yb - self.window_threshold) / max(self.window_softness, 1e-3))
            m = _blur(m.astype(np.float32), self.window_sigma * long_edge)
            y_new = y_new * (1.0 - m * (1.0 - 2.0 ** -self.window_pull_ev))
        # 4. highlight compression (extended Reinhard, white at the exposure gain)
        if self.highlights > 0:
            white = max(gain * 1.05, 1.0)
            shoulder = y_new * (1.0 + y_new / white**2) / (1.0 + y_new)
            y_new = (1.0 - self.highlights) * y_new + self.highlights * shoulder
        # 5. tone curve on encoded luminance
        enc = colour.linear_to_srgb(y_new, clip=False)
        y_new = colour.srgb_to_linear(self.tone_curve(enc))
        # 6. local contrast on log luminance
        if self.local_amount > 0:
            ly = np.log(np.maximum(y_new, _EPS)).astype(np.float32)
            detail = ly - _blur(ly, self.local_sigma * long_edge)
            y_new = np.exp(ly + np.float32(self.local_amount) * detail)
        ratio = (y_new / np.maximum(y, _EPS)).astype(np.float32)
        ratio = np.where(y > _EPS, ratio, 1.0).astype(np.float32)
        lin = lin * ratio[..., None]
        # 7. saturation around luminance
        if self.saturation != 1.0:
            yl = colour.luminance(lin)[..., None]
            lin = np.maximum(yl + np.float32(self.saturation) * (lin - yl), 0.0)
        return colour.linear_to_srgb(lin).astype(np.float32)


def make_look(seed: int) -> Look:
    """A look with every parameter of :data:`LOOK_RANGES` drawn uniformly with ``seed``."""
    rng = np.random.default_rng([0x100C5, int(seed)])
    params = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in LOOK_RANGES.items()}
    return Look(seed=int(seed), **params)
