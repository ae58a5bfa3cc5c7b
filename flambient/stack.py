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
