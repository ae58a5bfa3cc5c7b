"""RAW decoding through rawpy (LibRaw): every LibRaw format to linear float32 RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError


def read_raw_linear(path: str | Path, half_size: bool = False) -> np.ndarray:
    """Demosaic a RAW file to linear sRGB-primaries float32, HxWx3, 1.0 = sensor white level.

    Camera white balance (as shot) is applied; no auto-brightening, no gamma, and LibRaw's
    maximum rescaling is off (``adjust_maximum_thr=0``), so pixel values stay proportional
    to scene light. ``half_size`` uses LibRaw's fast half-size mode (each side halved).
    Raises :class:`InputError` for truncated, unsupported or non-Bayer files.
    """
    import rawpy

    p = Path(path)
    try:
        with rawpy.imread(str(p)) as raw:
            rgb = raw.postprocess(
                gamma=(1.0, 1.0),
                no_auto_bright=True,
                output_bps=16,
                use_camera_wb=True,
                output_color=rawpy.ColorSpace.sRGB,
                adjust_maximum_thr=0.0,
                half_size=half_size,
                user_flip=None,
            )
    except rawpy.LibRawFileUnsupportedError:
        raise InputError("unsupported or unreadable RAW file", p, "is it a camera RAW LibRaw knows?") from None
    except (rawpy.LibRawIOError, rawpy.LibRawDataError) as exc:
        raise InputError(f"truncated or corrupt RAW file ({type(exc).__name__})", p) from None
    except rawpy.LibRawError as exc:
        raise InputError(f"RAW decoding failed ({type(exc).__name__}: {exc})", p) from None
    except MemoryError:
        raise InputError("RAW decoding ran out of memory", p) from None
    return np.asarray(rgb, dtype=np.float32) / 65535.0
