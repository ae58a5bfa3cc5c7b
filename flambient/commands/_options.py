"""Typed command-line choices and parse-time checks shared by the commands.

Every value that can be wrong is refused while the arguments are parsed, before a command
does any work: typed choices (Typer rejects anything else), ranges (``min``/``max``) and
callbacks built on the library's own parsers, so each rule lives in one place
(:func:`flambient.devices.parse_devices` / :func:`~flambient.devices.parse_device`,
:func:`flambient.tiling.tiling_problem`). A refused value exits with status 2 and one line.
"""

from __future__ import annotations

from enum import Enum
from typing import Optional

import typer

from ..devices import parse_device, parse_devices
from ..errors import DeviceError


class BackendChoice(str, Enum):
    """``process --backend``: the model runtime."""

    torch = "torch"
    onnx = "onnx"


class FrameFormat(str, Enum):
    """``synth --format``: the frame file format."""

    dng = "dng"
    jpg = "jpg"


class Style(str, Enum):
    """``synth --style``: the house style of the synthetic finals."""

    studio = "studio"
    natural = "natural"


def _bad(exc: DeviceError) -> typer.BadParameter:
    return typer.BadParameter(exc.message + (f" ({exc.hint})" if exc.hint else ""))


def devices_option(value: str) -> str:
    """Callback of ``--devices`` (several devices): checks the value with :func:`parse_devices`."""
    try:
        parse_devices(value)
    except DeviceError as exc:
        raise _bad(exc) from None
    return value


def device_option(value: Optional[str]) -> Optional[str]:
    """Callback of ``--device`` (one device): the normalised value from :func:`parse_device`."""
    if value is None:
        return None
    try:
        return parse_device(value)
    except DeviceError as exc:
        raise _bad(exc) from None


def tile_option(value: Optional[int]) -> Optional[int]:
    """Callback of ``--tile`` alone (range); the tile/overlap pair is checked by the command."""
    from ..tiling import tiling_problem

    problem = tiling_problem(value, None)
    if problem is not None:
        raise typer.BadParameter(f"{problem[0]} ({problem[1]})")
    return value


def overlap_option(value: Optional[int]) -> Optional[int]:
    """Callback of ``--overlap`` alone (range)."""
    from ..tiling import tiling_problem

    problem = tiling_problem(None, value)
    if problem is not None:
        raise typer.BadParameter(f"{problem[0]} ({problem[1]})")
    return value
