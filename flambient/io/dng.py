"""The project's DNG writer: an uncompressed 16-bit CFA DNG that LibRaw (rawpy) decodes.

File layout (little-endian TIFF, written by hand so the EXIF sub-IFD is a real one)::

    header (8 B) | IFD0 + its values | EXIF sub-IFD + its values | CFA pixels (one strip)

IFD0 holds the DNG tags (facts in ``shared/design/RESEARCH.md``): photometric CFA (32803),
CFARepeatPatternDim 2x2, CFAPattern, DNGVersion 1.4, BlackLevel, WhiteLevel, ColorMatrix1
(XYZ D65 -> camera) with CalibrationIlluminant1 = 21 (D65), AsShotNeutral, Make/Model,
Orientation. The EXIF fields (see :mod:`flambient.io.exif_write`) go to the sub-IFD pointed
to by tag 34665, where both LibRaw and exifread read them.
"""

from __future__ import annotations

import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .exif_write import (
    ASCII,
    BYTE,
    EXIF_IFD_POINTER,
    LONG,
    RATIONAL,
    SHORT,
    SRATIONAL,
    Entry,
    camera_entries,
    encode_ifd,
    exif_entries,
    ifd_size,
)

#: CFAPattern codes (0 = red, 1 = green, 2 = blue) for the four 2x2 Bayer layouts.
CFA_PATTERNS: dict[str, tuple[int, int, int, int]] = {
    "RGGB": (0, 1, 1, 2),
    "BGGR": (2, 1, 1, 0),
    "GRBG": (1, 0, 2, 1),
    "GBRG": (1, 2, 0, 1),
}

#: Rows per strip: bounded strips keep every reader's buffers small on 60 MP frames.
ROWS_PER_STRIP = 256


# Longer than 80 lines on purpose: a third of it is the flat list of DNG/TIFF tags, one per line,
# and the rest lays the IFDs out around it; they read best in one place beside the DNG specification.
def write_dng(
    path: str | Path,
    cfa: np.ndarray,
    *,
    cfa_pattern: str = "RGGB",
    black_level: int,
    white_level: int,
    color_matrix: np.ndarray,
    as_shot_neutral: np.ndarray | tuple[float, float, float],
    exif: dict[str, Any] | None = None,
    make: str = "Flambient",
    model: str = "Synth",
    orientation: int = 1,
) -> Path:
    """Write an uncompressed DNG atomically; returns ``path``.

    ``cfa`` is the HxW uint16 Bayer mosaic (raw sensor counts, ``black_level`` .. ``white_level``),
    H and W even; ``cfa_pattern`` names its top-left 2x2 layout. ``color_matrix`` is the 3x3
    ColorMatrix1 mapping CIE XYZ (D65) to camera RGB; ``as_shot_neutral`` the camera-RGB
    coordinates of the scene white (3 values, normalised so their max is 1). ``exif`` holds the
    capture fields listed in :mod:`flambient.io.exif_write`.
    """
    cfa = np.asarray(cfa)
    if cfa.ndim != 2 or cfa.dtype != np.uint16:
        raise ValueError(f"cfa must be a 2-D uint16 array, got {cfa.dtype} {cfa.shape}")
    h, w = cfa.shape
    if h % 2 or w % 2 or h < 2 or w < 2:
        raise ValueError(f"cfa height and width must be even, got {w}x{h}")
    if cfa_pattern not in CFA_PATTERNS:
        raise ValueError(f"unknown cfa_pattern {cfa_pattern!r}; one of {sorted(CFA_PATTERNS)}")
    cm = np.asarray(color_matrix, dtype=np.float64).reshape(9)
    neutral = np.asarray(as_shot_neutral, dtype=np.float64).reshape(3)
    exif = dict(exif or {})
    when: datetime | None = exif.get("DateTimeOriginal")

    strips = [(r, min(h, r + ROWS_PER_STRIP)) for r in range(0, h, ROWS_PER_STRIP)]
    ifd0 = [
        Entry(254, LONG, 0),
        Entry(256, LONG, w),
        Entry(257, LONG, h),
        Entry(258, SHORT, 16),
        Entry(259, SHORT, 1),
        Entry(262, SHORT, 32803),
        Entry(273, LONG, [0] * len(strips)),  # StripOffsets, patched below
        Entry(277, SHORT, 1),
        Entry(278, LONG, ROWS_PER_STRIP),
        Entry(279, LONG, [(b - a) * w * 2 for a, b in strips]),
        Entry(284, SHORT, 1),
        Entry(33421, SHORT, [2, 2]),
        Entry(33422, BYTE, bytes(CFA_PATTERNS[cfa_pattern])),
        Entry(EXIF_IFD_POINTER, LONG, 0),  # patched below
        Entry(50706, BYTE, bytes([1, 4, 0, 0])),
        Entry(50707, BYTE, bytes([1, 1, 0, 0])),
        Entry(50708, ASCII, f"{make} {model}"),
        Entry(50714, LONG, int(black_level)),
        Entry(50717, LONG, int(white_level)),
        Entry(50721, SRATIONAL, [float(x) for x in cm]),
        Entry(50728, RATIONAL, [float(x) for x in neutral]),
        Entry(50778, SHORT, 21),
        *camera_entries(make, model, orientation, "flambient synth", when),
    ]
    exif_ifd = exif_entries(exif)
    ifd0_off = 8
    exif_off = ifd0_off + ifd_size(ifd0)
    data_off = exif_off + ifd_size(exif_ifd)
    data_off += (-data_off) % 16
    offsets = [data_off + a * w * 2 for a, _ in strips]
    ifd0 = [
        Entry(273, LONG, offsets) if e.tag == 273 else Entry(EXIF_IFD_POINTER, LONG, exif_off)
        if e.tag == EXIF_IFD_POINTER else e
        for e in ifd0
    ]
    head = b"II" + struct.pack("<HI", 42, ifd0_off)
    meta = head + encode_ifd(ifd0, ifd0_off) + encode_ifd(exif_ifd, exif_off)
    if len(meta) > data_off:  # sizes are computed from the same entries; guard regardless
        raise AssertionError("DNG metadata overran the pixel data offset")
    meta = meta.ljust(data_off, b"\0")
    le = cfa.astype("<u2", copy=False)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(meta)
            for a, b in strips:
                fh.write(np.ascontiguousarray(le[a:b]).tobytes())
    return Path(path)
