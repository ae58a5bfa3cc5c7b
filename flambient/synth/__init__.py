"""Synthetic flambient shoots and training pairs with exact ground truth (``flambient synth``).

Modules: :mod:`.scene` (procedural rooms, ray casting), :mod:`.lighting` (materials and the
separate light components), :mod:`.camera` (exposure plans, noise, Bayer mosaic, EXIF),
:mod:`.styles` (house styles of the finals), :mod:`.shoot` (shoots and pairs),
:mod:`.from_finals` (frames re-lit from edited finals).
"""

from __future__ import annotations

from .shoot import synth_pairs, synth_shoot
from .styles import STYLES, apply_style, get_style

__all__ = ["STYLES", "apply_style", "get_style", "synth_pairs", "synth_shoot"]
