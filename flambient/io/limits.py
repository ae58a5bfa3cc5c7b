"""Decompression-bomb limits: refuse an image before decoding when it would need too much memory.

A few hundred bytes of PNG or TIFF can declare a 16000 x 16000 image; decoding it to float32
takes gigabytes. Every reader asks :func:`check_image_size` with the size the file's header
declares, before it allocates anything. Two limits, both configurable:

- pixels: at most ``$FLAMBIENT_MAX_PIXELS`` (default :data:`DEFAULT_MAX_PIXELS`, 400 MP; the
  largest camera sensors are about 150 MP, stitched panoramas reach a few hundred);
- memory: the decode's peak (about :data:`DECODE_BYTES_PER_PIXEL` bytes per pixel: the
  decoder's integer image, the float32 frame and the colour conversion's temporaries) must fit
  in the memory available now (``MemAvailable``; physical memory where that is unknown).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

#: Default largest image (pixels) any reader decodes; override with $FLAMBIENT_MAX_PIXELS.
DEFAULT_MAX_PIXELS = 400_000_000
#: Bytes per pixel a decode needs at its peak (measured: a 16000 x 16000 PNG took 16 GB, ~64).
DECODE_BYTES_PER_PIXEL = 48


def max_pixels() -> int:
    """The pixel limit in force (``$FLAMBIENT_MAX_PIXELS`` when set to a positive integer)."""
    text = os.environ.get("FLAMBIENT_MAX_PIXELS", "").strip().replace("_", "")
    try:
        value = int(float(text)) if text else DEFAULT_MAX_PIXELS
    except ValueError:
        return DEFAULT_MAX_PIXELS
    return value if value > 0 else DEFAULT_MAX_PIXELS


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable``, else physical; None where unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_image_size(width: int, height: int, path: str | Path) -> None:
    """Raise :class:`InputError` when a ``width x height`` image is too large to decode safely."""
    w, h = int(width), int(height)
    if w <= 0 or h <= 0:
        raise InputError(f"image header declares an empty size {w}x{h}", path)
    pixels = w * h
    limit = max_pixels()
    if pixels > limit:
        raise InputError(f"image too large: {w}x{h} = {pixels / 1e6:.0f} MP exceeds the limit of "
                         f"{limit / 1e6:.0f} MP", path, "raise FLAMBIENT_MAX_PIXELS if the file is genuine")
    mem = available_memory()
    need = pixels * DECODE_BYTES_PER_PIXEL
    if mem is not None and need > mem:
        raise InputError(f"image too large: {w}x{h} needs about {need / 2**30:.1f} GiB to decode, more than "
                         f"the {mem / 2**30:.1f} GiB available", path, "free memory, or check the file")
