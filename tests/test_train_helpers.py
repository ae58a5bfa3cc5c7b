"""Tiny generated datasets for the training tests (no tests of its own)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flambient.colour import linear_to_srgb
from flambient.dataset import write_index, write_item


def style_final(ambient: np.ndarray, flash: np.ndarray, w_flash: float, warm: float) -> np.ndarray:
    """A simple deterministic "editor": mix flash and ambient, tint, encode as sRGB."""
    lin = w_flash * flash + (1.0 - w_flash) * ambient
    tint = np.array([1.0 + warm, 1.0, 1.0 - warm], dtype=np.float32)
    return linear_to_srgb(np.clip(lin * tint * 2.0, 0, 1))


def make_dataset(root: Path, n: int = 6, h: int = 48, w: int = 64, seed: int = 0,
                 w_flash: float = 0.7, warm: float = 0.0) -> Path:
    """Write a tiny flambient dataset of ``n`` smooth random rooms with a known final."""
    rng = np.random.default_rng(seed)
    entries = []
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        base = rng.uniform(0.05, 0.4, size=3).astype(np.float32)
        grad = (0.5 + 0.5 * np.sin(xx / w * rng.uniform(2, 6) + yy / h * rng.uniform(1, 4)))[:, :, None]
        ambient = (base * np.array([1.3, 1.0, 0.6], np.float32) * grad).astype(np.float32)
        flash = (base * (1.5 - grad)).astype(np.float32)
        target = style_final(ambient, flash, w_flash, warm)
        entries.append(write_item(root, f"room{i:02d}", ambient, target, flash=flash))
    write_index(root, entries)
    return root
