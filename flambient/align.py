"""Global registration of handheld bracket frames onto the set's reference frame.

Frames of a bracket differ in exposure and lighting (flash vs ambient), so intensities cannot
be matched directly. We register the gradient magnitude of log-luminance, which keeps edges
and drops exposure: a phase-correlation estimate of the translation initialises OpenCV's ECC
maximisation (Evangelidis & Psarakis 2008) of a Euclidean motion (shift + rotation), which is
robust to remaining contrast differences. Estimation runs on small linear previews; the
result is scaled to full resolution and applied with one ``cv2.warpAffine``.
"""

from __future__ import annotations

import math

import numpy as np

from .brackets import Alignment, log_gradient, luminance_thumb
from .log import get_logger

log = get_logger("align")


def _gradient_image(preview: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    y = luminance_thumb(preview, size)
    mag, valid = log_gradient(y)
    return mag.astype(np.float32), valid


def masked_ncc(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    """Normalised cross-correlation of two HxW images over the weights ``w`` (0 when too few)."""
    n = float(w.sum())
    if n < 16:
        return 0.0
    am, bm = float((a * w).sum()) / n, float((b * w).sum()) / n
    ac, bc = (a - am) * w, (b - bm) * w
    den = math.sqrt(float((ac * ac).sum()) * float((bc * bc).sum())) + 1e-12
    return float((ac * bc).sum()) / den


def estimate_alignment(
    reference: np.ndarray,
    frame: np.ndarray,
    full_hw: tuple[int, int],
    size: int = 512,
    tripod_px: float = 1.0,
) -> Alignment:
    """Estimate the map from ``reference`` to ``frame`` (linear HxWx3 previews of one composition).

    ``full_hw`` is the full-resolution (H, W) both frames decode to; the returned matrix is in
    full-resolution pixels. When the estimated motion is under ``tripod_px`` full-resolution
    pixels at the image corners, ``applied`` is False (tripod: leave the frame untouched).
    """
    import cv2

    ga, va = _gradient_image(reference, size)
    gb, vb = _gradient_image(frame, size)
    if ga.shape != gb.shape:
        raise ValueError(f"previews differ in size: {ga.shape} vs {gb.shape}")
    h, w = ga.shape
    win = cv2.createHanningWindow((w, h), cv2.CV_32F)
    (dx, dy), _resp = cv2.phaseCorrelate(ga.astype(np.float64), gb.astype(np.float64), win.astype(np.float64))
    warp = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float32)
    mask = (va * vb > 0).astype(np.uint8)
    try:
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
        _cc, warp = cv2.findTransformECC(ga, gb, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 5)
    except cv2.error:
        log.debug("ECC did not converge; keeping the phase-correlation shift")
    # Residual: 1 - NCC of the gradient images after warping the frame onto the reference.
    warped = cv2.warpAffine(gb, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    wv = cv2.warpAffine(vb, warp, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    residual = 1.0 - masked_ncc(ga, warped, va * wv)
    full = to_full_resolution(warp, (h, w), full_hw)
    shift = _max_corner_motion(full, full_hw)
    rot = math.degrees(math.atan2(float(full[1, 0]), float(full[0, 0])))
    return Alignment(matrix=full.tolist(), shift_px=float(math.hypot(full[0, 2], full[1, 2])),
                     rotation_deg=rot, residual=float(residual), applied=bool(shift >= tripod_px))


def to_full_resolution(warp: np.ndarray, small_hw: tuple[int, int], full_hw: tuple[int, int]) -> np.ndarray:
    """Rescale a 2x3 affine map estimated at ``small_hw`` to ``full_hw`` (pixel centres kept)."""
    sy, sx = small_hw[0] / full_hw[0], small_hw[1] / full_hw[1]
    # full -> small: u = s * x + (s - 1) / 2 (pixel-centre convention), per axis.
    s_mat = np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1]], dtype=np.float64)
    w3 = np.vstack([np.asarray(warp, dtype=np.float64), [0, 0, 1]])
    full = np.linalg.inv(s_mat) @ w3 @ s_mat
    return full[:2]


def _max_corner_motion(m: np.ndarray, hw: tuple[int, int]) -> float:
    h, w = hw
    pts = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=np.float64)
    moved = pts @ np.asarray(m, dtype=np.float64).T
    return float(np.max(np.hypot(moved[:, 0] - pts[:, 0], moved[:, 1] - pts[:, 1])))


def warp_to_reference(img: np.ndarray, align: Alignment | None) -> np.ndarray:
    """Resample a full-resolution HxWxC frame onto its reference grid (no-op when not applied)."""
    import cv2

    if align is None or not align.applied:
        return img
    h, w = img.shape[:2]
    m = np.asarray(align.matrix, dtype=np.float32)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)
