"""RAW decoding through rawpy (LibRaw): every LibRaw format to linear float32 RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .capture import capture_stderr
from .limits import check_image_size

#: A RAW file holding fewer bytes than this many per sensor pixel is truncated: even lossy
#: compressed RAW needs several bits per pixel; metadata-only stubs hold a few kilobytes.
MIN_BYTES_PER_PIXEL = 1.0 / 16.0


def _open(p: Path):  # type: ignore[no-untyped-def]
    """Open ``p`` with rawpy, turning LibRaw's errors into one-line :class:`InputError`."""
    import rawpy

    size = p.stat().st_size if p.exists() else 0
    try:
        raw = rawpy.imread(str(p))
    except rawpy.LibRawFileUnsupportedError:
        if size < 1_000_000:
            raise InputError(f"unsupported or truncated RAW file ({size} bytes)", p,
                             "re-copy it from the card; is it a camera RAW LibRaw knows?") from None
        raise InputError("unsupported or unreadable RAW file", p, "is it a camera RAW LibRaw knows?") from None
    except (rawpy.LibRawIOError, rawpy.LibRawDataError) as exc:
        raise InputError(f"truncated or corrupt RAW file ({type(exc).__name__})", p,
                         "re-copy it from the card") from None
    except rawpy.LibRawError as exc:
        raise InputError(f"RAW file cannot be opened ({type(exc).__name__})", p) from None
    try:
        _check_decodable(raw, p, size)
    except rawpy.LibRawError as exc:  # raw_type/sizes unpack the data; a stub fails here
        raw.close()
        raise InputError(f"truncated or corrupt RAW file ({type(exc).__name__})", p,
                         "re-copy it from the card") from None
    except BaseException:
        raw.close()
        raise
    return raw


def _check_decodable(raw, p: Path, size: int) -> None:  # type: ignore[no-untyped-def]
    """Reject film-scanner files and truncated stubs before LibRaw decodes garbage."""
    import rawpy

    if raw.raw_type == rawpy.RawType.Stack and raw.raw_pattern is None:
        # Film scanners (Nikon COOLSCAN 'NEF') store 3-channel RGB scans, not a camera sensor.
        model = _tiff_model(p)
        if "scan" in model.lower():
            raise InputError(f"film-scanner file ({model}), not a camera RAW", p,
                             "export the scan as TIFF, or leave it out of the shoot")
    sizes = raw.sizes
    check_image_size(max(int(sizes.width), int(sizes.raw_width)), max(int(sizes.height), int(sizes.raw_height)), p)
    pixels = int(sizes.raw_width) * int(sizes.raw_height)
    if pixels > 0 and size < pixels * MIN_BYTES_PER_PIXEL:
        raise InputError(
            f"truncated RAW file: {size} bytes for a {sizes.raw_width}x{sizes.raw_height} sensor",
            p, "the pixel data is missing; re-copy it from the card")


def _tiff_model(p: Path) -> str:
    """The Make/Model of a TIFF-based file (empty when absent); used to name scanners."""
    from .exif import read_exif

    return read_exif(p).camera or "unknown device"


def decode_raw_u16(path: str | Path, half_size: bool = False) -> np.ndarray:
    """Demosaic a RAW file to linear sRGB-primaries uint16 HxWx3 (65535 = sensor white level).

    The integer form of :func:`read_raw_linear`, for callers that scale the data into a
    larger float array themselves (one pass instead of three on a 24 MP frame). LibRaw's own
    stderr messages go to the log (:mod:`flambient.io.capture`).
    """
    with capture_stderr(str(path)):
        return _decode_raw_u16(Path(path), half_size)


def _decode_raw_u16(p: Path, half_size: bool) -> np.ndarray:
    import rawpy

    try:
        with _open(p) as raw:
            return raw.postprocess(
                gamma=(1.0, 1.0),
                no_auto_bright=True,
                output_bps=16,
                use_camera_wb=True,
                output_color=rawpy.ColorSpace.sRGB,
                adjust_maximum_thr=0.0,
                half_size=half_size,
                user_flip=None,
            )
    except InputError:
        raise
    except (rawpy.LibRawIOError, rawpy.LibRawDataError) as exc:
        raise InputError(f"truncated or corrupt RAW file ({type(exc).__name__})", p) from None
    except rawpy.LibRawError as exc:
        if p.stat().st_size < 1_000_000:
            raise InputError(f"truncated RAW file ({p.stat().st_size} bytes; {type(exc).__name__})", p,
                             "re-copy it from the card") from None
        raise InputError(f"RAW decoding failed ({type(exc).__name__}: {exc})", p) from None
    except MemoryError:
        raise InputError("RAW decoding ran out of memory", p) from None


def read_raw_linear(path: str | Path, half_size: bool = False) -> np.ndarray:
    """Demosaic a RAW file to linear sRGB-primaries float32, HxWx3, 1.0 = sensor white level.

    Camera white balance (as shot) is applied; no auto-brightening, no gamma, and LibRaw's
    maximum rescaling is off (``adjust_maximum_thr=0``), so pixel values stay proportional
    to scene light. ``half_size`` uses LibRaw's fast half-size mode (each side halved).
    Raises :class:`InputError` for truncated, unsupported or film-scanner files.
    """
    rgb = decode_raw_u16(path, half_size=half_size)
    out = rgb.astype(np.float32)
    out *= np.float32(1.0 / 65535.0)  # in place: one pass over a 24 MP frame instead of two
    return out


def shrink(img: np.ndarray, max_side: int) -> np.ndarray:
    """Area-resize HxWxC ``img`` so its long edge is at most ``max_side`` (never enlarges)."""
    import cv2

    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1.0:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def read_raw_thumbnail(path: str | Path, max_side: int = 512) -> tuple[np.ndarray, tuple[int, int]]:
    """Fast linear preview of a RAW file for grouping, labelling and alignment.

    Returns ``(preview, (height, width))``: ``preview`` is float32 HxWx3 *camera* RGB (black
    level subtracted, scaled so 1.0 = white level, as-shot white balance applied, no colour
    matrix), at most ``max_side`` pixels on the long edge, oriented as displayed; the tuple is
    the size :func:`read_raw_linear` returns at full resolution.

    Bayer sensors take the fast path: the mosaic is unpacked (no demosaicing) and each CFA
    colour plane is area-averaged, which costs little more than reading the file. Other
    sensors (X-Trans, Foveon, linear DNG) fall back to LibRaw's half-size decode.
    """
    with capture_stderr(str(path)):
        return _read_raw_thumbnail(Path(path), max_side)


def _read_raw_thumbnail(p: Path, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    import cv2

    with _open(p) as raw:
        sizes = raw.sizes
        full_hw = (int(sizes.height), int(sizes.width))
        if int(sizes.flip) in (5, 6):
            full_hw = (full_hw[1], full_hw[0])
        pattern = raw.raw_pattern
        if pattern is None or np.asarray(pattern).shape != (2, 2) or raw.num_colors != 3:
            return shrink(_postprocess_half(raw, p), max_side), full_hw
        try:
            mosaic = raw.raw_image_visible  # a view into LibRaw's buffer: use it before close
        except Exception as exc:  # rawpy raises LibRaw errors on unpack of bad data
            raise InputError(f"truncated or corrupt RAW file ({type(exc).__name__})", p,
                             "re-copy it from the card") from None
        pattern = np.asarray(pattern)
        black = np.asarray(raw.black_level_per_channel, dtype=np.float32)
        white = float(raw.white_level)
        wb = np.asarray(raw.camera_whitebalance, dtype=np.float32)
        desc = raw.color_desc.decode("ascii", "ignore") if isinstance(raw.color_desc, bytes) else str(raw.color_desc)
        flip = int(sizes.flip)
        h2, w2 = mosaic.shape[0] // 2, mosaic.shape[1] // 2
        scale = min(1.0, max_side / max(h2, w2))
        out_wh = (max(1, round(w2 * scale)), max(1, round(h2 * scale)))
        step = max(1, int(min(h2 / out_wh[1], w2 / out_wh[0]) // 2))
        acc = np.zeros((out_wh[1], out_wh[0], 3), np.float32)
        cnt = np.zeros(3, np.float32)
        if not np.all(wb[:3] > 0):
            wb = np.ones(4, np.float32)
        if wb[3] <= 0:
            wb[3] = wb[1]
        for i in range(2):
            for j in range(2):
                ci = int(pattern[i, j])
                rgb = {"R": 0, "G": 1, "B": 2}.get(desc[ci] if ci < len(desc) else "G", 1)
                # every ``step``-th quad, then an area resize: touches 1/step**2 of the mosaic
                plane = mosaic[i : i + 2 * h2 : 2 * step, j : j + 2 * w2 : 2 * step].astype(np.float32)
                plane = cv2.resize(plane, out_wh, interpolation=cv2.INTER_AREA)
                plane = (plane - black[ci]) / max(white - black[ci], 1.0) * (wb[ci] / wb[1])
                acc[:, :, rgb] += plane
                cnt[rgb] += 1
    prev = acc / np.maximum(cnt, 1)[None, None, :]
    prev = _apply_flip(np.clip(prev, 0.0, None), flip)
    return np.ascontiguousarray(prev, dtype=np.float32), full_hw


def _postprocess_half(raw, p: Path) -> np.ndarray:  # type: ignore[no-untyped-def]
    import rawpy

    try:
        rgb = raw.postprocess(gamma=(1.0, 1.0), no_auto_bright=True, output_bps=16, use_camera_wb=True,
                              output_color=rawpy.ColorSpace.sRGB, adjust_maximum_thr=0.0, half_size=True,
                              user_flip=None)
    except rawpy.LibRawError as exc:
        raise InputError(f"truncated or corrupt RAW file ({type(exc).__name__})", p) from None
    return np.asarray(rgb, dtype=np.float32) / 65535.0


def _apply_flip(img: np.ndarray, flip: int) -> np.ndarray:
    """Apply LibRaw's ``sizes.flip`` code (0, 3 = 180 deg, 5 = 90 CCW, 6 = 90 CW) to ``img``."""
    if flip == 3:
        return img[::-1, ::-1]
    if flip == 5:
        return np.rot90(img, 1)
    if flip == 6:
        return np.rot90(img, -1)
    return img
