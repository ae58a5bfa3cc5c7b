"""Every colour conversion of the project, in one place.

Conventions:
- "linear" means scene- or display-linear RGB with sRGB/Rec.709 primaries and a D65 white,
  1.0 = diffuse white after exposure normalisation (values above 1 are allowed: highlights).
- "srgb" means the IEC 61966-2-1 encoded signal in [0, 1].
- "lab" means CIELAB with the D65 reference white, L in [0, 100].

Each function accepts either a numpy array or a torch tensor whose last axis (numpy, HxWx3)
or channel axis (torch, Nx3xHxW when ``channel_axis=1``) holds the three channels, and
returns the same kind. Numpy results are float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# sRGB (D65) <-> CIE XYZ, IEC 61966-2-1.
RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=np.float64,
)
XYZ_TO_RGB = np.linalg.inv(RGB_TO_XYZ)
#: D65 reference white in XYZ (Y = 1).
WHITE_D65 = RGB_TO_XYZ.sum(axis=1)
#: Rec.709 luminance weights of linear RGB.
LUMA_WEIGHTS = RGB_TO_XYZ[1].copy()

_LAB_EPS = 216.0 / 24389.0
_LAB_KAPPA = 24389.0 / 27.0


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _where(cond: Any, a: Any, b: Any) -> Any:
    if _is_torch(cond):
        import torch

        return torch.where(cond, a, b)
    return np.where(cond, a, b)


def _as_float(x: Any) -> Any:
    if _is_torch(x):
        return x if x.is_floating_point() else x.float()
    return np.asarray(x, dtype=np.float32)


def srgb_decode_unsigned(a: Any) -> Any:
    """The sRGB decode of non-negative float signal values ``a`` (numpy or torch, any shape), with
    no sign handling: for hot paths whose input is known to be >= 0 (:func:`srgb_to_linear` is
    the general form)."""
    return _where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4)


def srgb_to_linear(srgb: Any) -> Any:
    """Decode sRGB signal values to linear light (any shape; negatives mirror, >1 extends)."""
    x = _as_float(srgb)
    a = x.abs() if _is_torch(x) else np.abs(x)
    lin = srgb_decode_unsigned(a)
    out = _where(x < 0, -lin, lin)
    return out if _is_torch(x) else out.astype(np.float32)


def linear_to_srgb(linear: Any, clip: bool = True) -> Any:
    """Encode linear light as sRGB signal values; ``clip`` limits the result to [0, 1]."""
    x = _as_float(linear)
    if _is_torch(x):
        x = x.clamp(0.0, 1.0) if clip else x
        a = x.abs()
        enc = _where(a <= 0.0031308, a * 12.92, 1.055 * a.clamp_min(1e-12) ** (1 / 2.4) - 0.055)
        return enc * x.sign()
    x = np.clip(x, 0.0, 1.0) if clip else x
    a = np.abs(x)
    enc = np.where(a <= 0.0031308, a * 12.92, 1.055 * np.maximum(a, 1e-12) ** (1 / 2.4) - 0.055)
    return (enc * np.sign(x)).astype(np.float32)


def srgb_encode_into(linear: np.ndarray, out: np.ndarray, hi: float = 1.0) -> np.ndarray:
    """The sRGB curve of ``clip(linear, 0, hi)`` written into ``out`` (float32 numpy, any shape).

    A fast form for hot loops (about 2x torch's ``pow`` form): ``x ** (1/2.4)`` is computed
    as ``c * sqrt(sqrt(c))`` with ``c = cbrt(x)`` (5/12 = 1/3 + 1/12), within 3 float32 ulps
    of the ``pow`` form (1e-6 absolute up to 16). ``out`` may not alias ``linear``; ``hi``
    above 1 extends the curve (the models' input encoding uses 16). Returns ``out``.
    """
    y = np.clip(linear, 0.0, hi, dtype=np.float32)
    small = y <= np.float32(0.0031308)
    c = np.cbrt(y, out=out)
    c *= np.sqrt(np.sqrt(c))
    c *= np.float32(1.055)
    c -= np.float32(0.055)
    np.multiply(y, np.float32(12.92), out=y)
    np.copyto(out, y, where=small)
    return out


def _matmul_channels(x: Any, m: np.ndarray, channel_axis: int) -> Any:
    """Apply a 3x3 matrix ``m`` to the channel axis of ``x``."""
    if _is_torch(x):
        import torch

        mt = torch.as_tensor(m, dtype=x.dtype, device=x.device)
        xm = x.movedim(channel_axis, -1)
        return (xm @ mt.T).movedim(-1, channel_axis)
    xm = np.moveaxis(x, channel_axis, -1)
    return np.moveaxis(xm @ m.T.astype(np.float32), -1, channel_axis).astype(np.float32)


def linear_to_xyz(linear: Any, channel_axis: int = -1) -> Any:
    """Linear sRGB -> CIE XYZ (D65, Y of diffuse white = 1)."""
    return _matmul_channels(_as_float(linear), RGB_TO_XYZ, channel_axis)


def xyz_to_linear(xyz: Any, channel_axis: int = -1) -> Any:
    """CIE XYZ (D65) -> linear sRGB."""
    return _matmul_channels(_as_float(xyz), XYZ_TO_RGB, channel_axis)


def _split(x: Any, channel_axis: int) -> tuple[Any, Any, Any]:
    if _is_torch(x):
        return x.unbind(channel_axis)  # type: ignore[return-value]
    return tuple(np.moveaxis(x, channel_axis, 0))  # type: ignore[return-value]


def _stack(parts: tuple[Any, Any, Any], channel_axis: int) -> Any:
    if _is_torch(parts[0]):
        import torch

        return torch.stack(parts, dim=channel_axis)
    return np.stack(parts, axis=channel_axis).astype(np.float32)


def _lab_f(t: Any) -> Any:
    """The CIELAB companding function of a tristimulus value relative to the white."""
    if _is_torch(t):
        cube = t.clamp_min(1e-12) ** (1.0 / 3.0)
    else:
        cube = np.cbrt(np.maximum(t, 0.0))
    return _where(t > _LAB_EPS, cube, (_LAB_KAPPA * t + 16.0) / 116.0)


def xyz_to_lab(xyz: Any, channel_axis: int = -1) -> Any:
    """CIE XYZ (D65) -> CIELAB (D65)."""
    x, y, z = _split(_as_float(xyz), channel_axis)
    fx, fy, fz = (_lab_f(comp / float(white)) for comp, white in zip((x, y, z), WHITE_D65))
    return _stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), channel_axis)


def lightness(y: Any) -> Any:
    """CIE L* (0-100 for 0-1) of relative luminance ``y`` (linear, the D65 white = 1; any shape):
    the L* of a grey of that luminance, as :func:`linear_to_lab` gives it."""
    return 116.0 * _lab_f(_as_float(y) / float(WHITE_D65[1])) - 16.0


def lab_to_xyz(lab: Any, channel_axis: int = -1) -> Any:
    """CIELAB (D65) -> CIE XYZ (D65)."""
    L, a, b = _split(_as_float(lab), channel_axis)
    fy = (L + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = fy - b / 200.0
    out = []
    for f, white in zip((fx, fy, fz), WHITE_D65):
        t = _where(f**3 > _LAB_EPS, f**3, (116.0 * f - 16.0) / _LAB_KAPPA)
        out.append(t * float(white))
    return _stack(tuple(out), channel_axis)  # type: ignore[arg-type]


def linear_to_lab(linear: Any, channel_axis: int = -1) -> Any:
    """Linear sRGB -> CIELAB (D65)."""
    return xyz_to_lab(linear_to_xyz(linear, channel_axis), channel_axis)


def lab_to_linear(lab: Any, channel_axis: int = -1) -> Any:
    """CIELAB (D65) -> linear sRGB (unclipped)."""
    return xyz_to_linear(lab_to_xyz(lab, channel_axis), channel_axis)


def srgb_to_lab(srgb: Any, channel_axis: int = -1) -> Any:
    """sRGB signal -> CIELAB (D65)."""
    return linear_to_lab(srgb_to_linear(srgb), channel_axis)


def luminance(linear: Any, channel_axis: int = -1) -> Any:
    """Relative luminance Y of linear sRGB (Rec.709 weights); drops the channel axis."""
    r, g, b = _split(_as_float(linear), channel_axis)
    w = LUMA_WEIGHTS
    return r * float(w[0]) + g * float(w[1]) + b * float(w[2])


def cct_to_xy(kelvin: float) -> tuple[float, float]:
    """CIE 1931 chromaticity of a Planckian radiator at ``kelvin`` (1667-25000 K).

    Uses the cubic-spline approximation of Kim et al. (2002, US patent 7024034), which stays
    within about 1e-3 of the true locus.
    """
    t = float(np.clip(kelvin, 1667.0, 25000.0))
    if t <= 4000.0:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222.0:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000.0:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    return x, y


def cct_to_linear_rgb(kelvin: float) -> np.ndarray:
    """Linear sRGB colour of a light at ``kelvin``, normalised to luminance 1. Shape (3,)."""
    x, y = cct_to_xy(kelvin)
    xyz = np.array([x / y, 1.0, (1.0 - x - y) / y])
    rgb = XYZ_TO_RGB @ xyz
    rgb = np.maximum(rgb, 1e-4)
    return (rgb / float(LUMA_WEIGHTS @ rgb)).astype(np.float32)


def xy_to_cct(x: float, y: float) -> float:
    """Correlated colour temperature (K) from CIE 1931 xy, McCamy's (1992) cubic."""
    n = (x - 0.3320) / (0.1858 - y)
    return float(449.0 * n**3 + 3525.0 * n**2 + 6823.3 * n + 5520.33)


def linear_rgb_to_cct(rgb: np.ndarray) -> float:
    """Correlated colour temperature (K) of a linear sRGB colour (shape (3,))."""
    xyz = RGB_TO_XYZ @ np.asarray(rgb, dtype=np.float64)
    s = float(xyz.sum())
    if s <= 0:
        return float("nan")
    return xy_to_cct(xyz[0] / s, xyz[1] / s)
