"""The fixed model input stack: one layout for bracket sets and single-image pairs.

Channel layout of a stack (numpy HxWxC or torch NxCxHxW, float32, linear light):

====  ===========================================================================
0-2   ambient RGB (linear, exposure-normalised; the single source of a one-image pair)
3-5   flash RGB (linear, exposure-normalised; zeros when absent)
6-8   window-pull RGB (linear, exposure-normalised; zeros when absent)
9     window mask in [0, 1] (zeros when absent)
10    has_flash flag (constant 0/1 plane)
11    has_window flag
12    has_mask flag
====  ===========================================================================

Exposure normalisation: each frame is scaled to the exposure of the set's reference ambient
frame (``frame * 2**-ev``), so a well-exposed interior sits near 0.18 mid-grey; values above 1
(windows, lamps) are kept.
"""

from __future__ import annotations

import numpy as np

STACK_CHANNELS = 13
AMBIENT = slice(0, 3)
FLASH = slice(3, 6)
WINDOW = slice(6, 9)
MASK = 9
HAS_FLASH, HAS_WINDOW, HAS_MASK = 10, 11, 12


def is_single_image(stack: np.ndarray) -> bool:
    """Whether an HxWx13 stack holds one frame only (no flash, no window-pull frame)."""
    return bool(stack[0, 0, HAS_FLASH] <= 0.5 and stack[0, 0, HAS_WINDOW] <= 0.5)


def build_stack(
    ambient: np.ndarray,
    flash: np.ndarray | None = None,
    window: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Assemble the HxWx13 float32 input stack from linear HxWx3 frames (and an HxW mask).

    All given frames must share the ambient frame's height and width.
    """
    h, w = ambient.shape[:2]
    out = np.zeros((h, w, STACK_CHANNELS), dtype=np.float32)
    out[:, :, AMBIENT] = ambient[:, :, :3]
    for arr, sl, flag in ((flash, FLASH, HAS_FLASH), (window, WINDOW, HAS_WINDOW)):
        if arr is not None:
            if arr.shape[:2] != (h, w):
                raise ValueError(f"frame of shape {arr.shape[:2]} does not match ambient {(h, w)}")
            out[:, :, sl] = arr[:, :, :3]
            out[:, :, flag] = 1.0
    if mask is not None:
        m = mask if mask.ndim == 2 else mask[:, :, 0]
        if m.shape != (h, w):
            raise ValueError(f"mask of shape {m.shape} does not match ambient {(h, w)}")
        out[:, :, MASK] = m
        out[:, :, HAS_MASK] = 1.0
    return out


def assemble_stack(
    ambient: tuple[np.ndarray, float],
    flashes: list[tuple[np.ndarray, float]],
    window: tuple[np.ndarray, float] | None,
    band_bytes: int = 4 << 20,
    *,
    channels_first: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Build the float32 stack from ``(pixels HxWx3, factor)`` pairs in one pass over memory.

    Equivalent to ``build_stack(a * fa, mean(f_i * ff_i), w * fw)`` without the intermediate
    float frames: rows are filled in bands of about ``band_bytes`` so each band of the stack is
    written once while it is in cache (a 24 MP stack is 1.25 GB). Returns H x W x 13, or
    13 x H x W with ``channels_first`` (the model's tile layout); ``out``, when given, is a
    float32 array of that shape to fill (a reused tile buffer: no new pages per tile).
    """
    h, w = ambient[0].shape[:2]
    shape = (STACK_CHANNELS, h, w) if channels_first else (h, w, STACK_CHANNELS)
    if out is None or out.shape != shape or out.dtype != np.float32:
        out = np.empty(shape, dtype=np.float32)
    rows = max(1, band_bytes // (w * STACK_CHANNELS * 4))
    nf = len(flashes)

    def chan(o: np.ndarray, c: slice | int) -> np.ndarray:  # channels of a band of ``out``
        return o[c] if channels_first else o[:, :, c]

    def pix(a: np.ndarray, sl: slice) -> np.ndarray:  # RGB of a band of a frame, in out's layout
        return a[sl, :, :3].transpose(2, 0, 1) if channels_first else a[sl, :, :3]

    for y0 in range(0, h, rows):
        sl = slice(y0, min(h, y0 + rows))
        o = out[:, sl] if channels_first else out[sl]
        np.multiply(pix(ambient[0], sl), np.float32(ambient[1]), out=chan(o, AMBIENT), casting="unsafe")
        if nf:
            fo = chan(o, FLASH)
            np.multiply(pix(flashes[0][0], sl), np.float32(flashes[0][1] / nf), out=fo, casting="unsafe")
            for arr, fac in flashes[1:]:
                fo += pix(arr, sl) * np.float32(fac / nf)
        else:
            chan(o, FLASH)[...] = 0.0
        if window is not None:
            np.multiply(pix(window[0], sl), np.float32(window[1]), out=chan(o, WINDOW), casting="unsafe")
        else:
            chan(o, WINDOW)[...] = 0.0
        chan(o, MASK)[...] = 0.0
        chan(o, HAS_FLASH)[...] = 1.0 if nf else 0.0
        chan(o, HAS_WINDOW)[...] = 1.0 if window is not None else 0.0
        chan(o, HAS_MASK)[...] = 0.0
    return out
