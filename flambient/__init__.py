"""flambient: learned flash/ambient blending for real-estate bracket sets."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
