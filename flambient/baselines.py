"""Classical ways to blend a bracket set, used as baselines by ``flambient eval``.

Every function takes linear-light float32 frames of shape HxWx3 (sRGB/Rec.709 primaries, D65,
exposure-normalised as in :mod:`flambient.stack`) and returns an sRGB-encoded float32 HxWx3
image in [0, 1].

- :func:`ambient_only`: the ambient frame as shot, no blend.
- :func:`luminosity_blend`: the manual "flambient" recipe of real-estate editors: the flash
  frame on a layer in *Luminosity* blend mode over the ambient frame, so detail and light come
  from the flash and colour (hue and saturation) from the ambient. The blend follows the
  non-separable Luminosity mode of the W3C Compositing and Blending spec (Level 1, section
  10.2: SetLum / ClipColor with Lum = 0.3 R + 0.59 G + 0.11 B on the encoded signal), which is
  how image editors implement it.
- :func:`mertens_fusion`: exposure fusion of Mertens, Kautz & Van Reeth (2007) through
  OpenCV's ``createMergeMertens``.
- :func:`fit_global_poly`: the "ten-line" few-shot baseline of single-image edits (sRGB in,
  sRGB out; see the section at the end of this module).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from flambient import colour
from flambient import stack as stk

#: Luma weights of the W3C / image-editor Luminosity blend mode (on the encoded signal).
BLEND_LUM = np.array([0.3, 0.59, 0.11], dtype=np.float32)


def _check(img: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(img, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] < 3:
        raise ValueError(f"{name} must be HxWx3, got shape {a.shape}")
    return a[:, :, :3]


def ambient_only(ambient_lin: np.ndarray) -> np.ndarray:
    """The ambient frame as is: linear HxWx3 -> sRGB HxWx3 in [0, 1] (highlights clipped)."""
    return colour.linear_to_srgb(_check(ambient_lin, "ambient"))


def _lum(srgb: np.ndarray) -> np.ndarray:
    return srgb @ BLEND_LUM


def _clip_color(c: np.ndarray) -> np.ndarray:
    """W3C ClipColor: pull out-of-gamut colours toward their own luma, keeping the luma."""
    lum = _lum(c)[..., None]
    lo = c.min(axis=-1, keepdims=True)
    hi = c.max(axis=-1, keepdims=True)
    out = c.copy()
    neg = lo < 0
    out = np.where(neg, lum + (out - lum) * lum / np.maximum(lum - lo, 1e-12), out)
    over = hi > 1
    out = np.where(over, lum + (out - lum) * (1 - lum) / np.maximum(hi - lum, 1e-12), out)
    return np.clip(out, 0.0, 1.0)


def luminosity_blend(ambient_lin: np.ndarray, flash_lin: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """Flash luminosity over ambient colour: sRGB HxWx3 in [0, 1].

    Both frames are encoded to sRGB (clipped), then the result takes the flash layer's luma and
    the ambient's hue and saturation (W3C SetLum + ClipColor); ``opacity`` (0-1) mixes the
    blended layer over the plain ambient as a layer opacity would.
    """
    amb = colour.linear_to_srgb(_check(ambient_lin, "ambient"))
    fl = colour.linear_to_srgb(_check(flash_lin, "flash"))
    if amb.shape != fl.shape:
        raise ValueError(f"flash shape {fl.shape} differs from ambient shape {amb.shape}")
    d = (_lum(fl) - _lum(amb))[..., None]
    blended = _clip_color(amb + d)
    out = (1.0 - opacity) * amb + opacity * blended
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def mertens_fusion(frames_lin: Sequence[np.ndarray]) -> np.ndarray:
    """Mertens exposure fusion of linear HxWx3 frames (as shot: each frame's own exposure).

    The frames are encoded to sRGB (clipped to [0, 1], as a camera JPEG would be) and fused by
    ``cv2.createMergeMertens`` with its default contrast / saturation / exposedness weights.
    A single frame is returned encoded as is. Returns sRGB HxWx3 float32 in [0, 1].
    """
    frames = [_check(f, f"frame {i}") for i, f in enumerate(frames_lin)]
    if not frames:
        raise ValueError("mertens_fusion needs at least one frame")
    shape = frames[0].shape
    for i, f in enumerate(frames):
        if f.shape != shape:
            raise ValueError(f"frame {i} shape {f.shape} differs from frame 0 shape {shape}")
    srgb = [np.ascontiguousarray(colour.linear_to_srgb(f)) for f in frames]
    if len(srgb) == 1:
        return srgb[0]
    # OpenCV scales every input by 1/255 before weighting, whatever its depth: feed 0-255.
    fused = cv2.createMergeMertens().process([s * 255.0 for s in srgb])
    return np.clip(np.asarray(fused, dtype=np.float32), 0.0, 1.0)


def _median_lum(img: np.ndarray) -> float:
    return float(np.median(colour.luminance(img)))


def stack_frames(stack: np.ndarray, window_peak: float = 0.995) -> dict[str, np.ndarray]:
    """The linear frames of an HxWx13 model input stack (see :mod:`flambient.stack`), brought
    to the exposures an editor would blend them at.

    Returns ``{"ambient": ..., "flash": ..., "window": ...}`` with the frames that are present.
    Frames in a stack are exposure-normalised to the ambient's exposure, which makes a flash
    frame shot at a short shutter many times too bright. The ambient is kept as is; the flash
    frame is scaled so its median luminance equals the ambient's (an editor matches the flash
    layer's exposure before blending); the window-pull frame is scaled so its ``window_peak``
    luminance quantile sits at 1 (approximately the frame as shot), as exposure fusion expects.
    """
    amb = np.ascontiguousarray(stack[:, :, stk.AMBIENT])
    out = {"ambient": amb}
    if stack[0, 0, stk.HAS_FLASH] > 0.5:
        fl = np.ascontiguousarray(stack[:, :, stk.FLASH])
        m_fl, m_amb = _median_lum(fl), _median_lum(amb)
        out["flash"] = (fl * (m_amb / m_fl) if m_fl > 1e-6 and m_amb > 1e-6 else fl).astype(np.float32)
    if stack[0, 0, stk.HAS_WINDOW] > 0.5:
        win = np.ascontiguousarray(stack[:, :, stk.WINDOW])
        peak = float(np.quantile(colour.luminance(win), window_peak))
        out["window"] = (win / max(peak, 1.0)).astype(np.float32)
    return out


BASELINES: tuple[str, ...] = ("ambient", "luminosity", "mertens")


def run_baselines(stack: np.ndarray) -> dict[str, np.ndarray]:
    """All baselines for one HxWx13 stack: name -> sRGB HxWx3 in [0, 1].

    Without a flash frame the luminosity blend has nothing to blend and equals the ambient.
    """
    fr = stack_frames(stack)
    amb = fr["ambient"]
    return {
        "ambient": ambient_only(amb),
        "luminosity": luminosity_blend(amb, fr["flash"]) if "flash" in fr else ambient_only(amb),
        "mertens": mertens_fusion(list(fr.values())),
    }


# ----------------------------------------------------------------------------- ten-line baseline
#
# The few-shot reference of issue 11: what a few lines of numpy learn from N (source, edit)
# pairs of one studio. Per image: auto-exposure of linear luminance to the training targets'
# median luminance, then grey-world white balance; then ONE global cubic polynomial in R, G, B
# (all 20 monomials of degree <= 3, per output channel) on the sRGB-encoded normalised source,
# fitted by least squares over pixels of all training pairs. A learned method that does not
# clearly beat it on few pairs has not learned more than a global colour transform.

#: Pixels sampled per training pair for the least-squares fit.
POLY_SAMPLES = 20000
#: Ridge weight of the least-squares fit (relative to the mean feature energy).
POLY_RIDGE = 1e-6


def poly_features(rgb: np.ndarray) -> np.ndarray:
    """The 20 monomials of degree <= 3 in R, G, B: ...x3 -> ...x20 float64 (1, R, G, B, R^2, ...)."""
    x = np.asarray(rgb, dtype=np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    ch = (r, g, b)
    feats = [np.ones_like(r), r, g, b]
    for i in range(3):
        for j in range(i, 3):
            feats.append(ch[i] * ch[j])
    for i in range(3):
        for j in range(i, 3):
            for k in range(j, 3):
                feats.append(ch[i] * ch[j] * ch[k])
    return np.stack(feats, axis=-1)


def normalise_image(srgb: np.ndarray, target_median: float) -> np.ndarray:
    """Auto-exposure + grey-world: sRGB HxWx3 -> sRGB HxWx3 in [0, 1].

    In linear light, scales the image so its median luminance is ``target_median`` (gain
    bounded to [1/16, 16]), then scales each channel so the three channel means are equal
    (grey world, luminance of the mean kept), then encodes (clipped).
    """
    lin = colour.srgb_to_linear(np.clip(_check(srgb, "image"), 0.0, 1.0))
    med = float(np.median(colour.luminance(lin)))
    lin = lin * np.float32(np.clip(target_median / max(med, 1e-5), 1.0 / 16, 16.0))
    means = lin.reshape(-1, 3).mean(axis=0).astype(np.float64)
    grey = float(colour.LUMA_WEIGHTS @ means)
    gains = np.where(means > 1e-6, grey / np.maximum(means, 1e-6), 1.0)
    return colour.linear_to_srgb(lin * gains.astype(np.float32))


@dataclass
class GlobalPoly:
    """A fitted ten-line baseline: ``apply(srgb) -> srgb`` (HxWx3 float32 in [0, 1]).

    ``coef`` is 20x3 (monomials x output channel); ``target_median`` the training targets'
    median linear luminance (None: no per-image normalisation, the polynomial alone).
    """

    coef: np.ndarray
    target_median: float | None

    def apply(self, srgb: np.ndarray) -> np.ndarray:
        """The baseline's edit of one sRGB HxWx3 image."""
        x = _check(srgb, "image")
        if self.target_median is not None:
            x = normalise_image(x, self.target_median)
        out = poly_features(x) @ self.coef
        return np.clip(out, 0.0, 1.0).astype(np.float32)


def fit_global_poly(pairs: Sequence[tuple[np.ndarray, np.ndarray]], normalise: bool = True,
                    samples: int = POLY_SAMPLES, seed: int = 0) -> GlobalPoly:
    """Fit the ten-line baseline on ``(source sRGB, edit sRGB)`` pairs of equal HxW.

    ``normalise`` applies :func:`normalise_image` with the targets' median luminance (the median
    of the per-target medians) before the polynomial; without it the polynomial maps the
    sources as they are. Up to ``samples`` pixels per pair (seeded) enter the least squares.
    """
    if not pairs:
        raise ValueError("fit_global_poly needs at least one pair")
    med = None
    if normalise:
        med = float(np.median([np.median(colour.luminance(colour.srgb_to_linear(np.clip(_check(t, "edit"), 0, 1))))
                               for _s, t in pairs]))
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for s, t in pairs:
        s, t = _check(s, "source"), _check(t, "edit")
        if s.shape != t.shape:
            raise ValueError(f"source shape {s.shape} differs from edit shape {t.shape}")
        x = normalise_image(s, med) if med is not None else s
        xf, yf = x.reshape(-1, 3), t.reshape(-1, 3)
        idx = rng.choice(len(xf), size=min(samples, len(xf)), replace=False)
        xs.append(xf[idx])
        ys.append(yf[idx])
    feats = poly_features(np.concatenate(xs))
    y = np.concatenate(ys).astype(np.float64)
    ata = feats.T @ feats
    ata += np.eye(ata.shape[0]) * POLY_RIDGE * float(np.trace(ata)) / ata.shape[0]
    coef = np.linalg.solve(ata, feats.T @ y)
    return GlobalPoly(coef=coef, target_median=med)
