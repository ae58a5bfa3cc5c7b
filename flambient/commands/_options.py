"""Typed command-line choices and parse-time checks shared by the commands.

Every value that can be wrong is refused while the arguments are parsed, before a command
does any work: typed choices (Typer rejects anything else), ranges (``min``/``max``) and
callbacks built on the library's own parsers, so each rule lives in one place
(:func:`flambient.devices.parse_devices` / :func:`~flambient.devices.parse_device`,
:func:`flambient.tiling.tiling_problem`). A refused value exits with status 2 and one line.

The option vocabulary (README, "Option vocabulary") is declared here once: every command
builds its common options with these factories, so the same thing has the same long name,
short flag and value grammar everywhere (``--out/-o``, ``--model/-m``, ``--preset/-p``,
``--devices/-d``, ``--jobs/-j``, ``--json PATH|-``, ``--force``; ``-q``/``-v`` come with
:class:`~flambient.commands._command.FlambientCommand`).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Optional

import typer

from ..devices import parse_device, parse_devices, resolve_devices
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
    """Callback of ``--devices`` (several devices): checks the value with :func:`parse_devices`;
    an explicit ``cuda``/``cuda:N`` must name GPUs this machine has (:func:`resolve_devices`)."""
    try:
        if parse_devices(value)[0] == "cuda":  # explicit GPUs: they must exist, before any work
            resolve_devices(value)
    except DeviceError as exc:
        raise _bad(exc) from None
    return value


def device_option(value: Optional[str]) -> Optional[str]:
    """Callback of the one-device ``--devices``: the normalised value from :func:`parse_device`
    (an explicit GPU must exist, as for :func:`devices_option`)."""
    if value is None:
        return None
    try:
        device = parse_device(value)
        if device.startswith("cuda"):
            resolve_devices(device)
        return device
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


# ----------------------------------------------------------------------------- the vocabulary

#: Help of ``--json`` on every command that has it.
JSON_HELP = "Also write the result as JSON to PATH; '-' prints only the JSON, on stdout."


def out_option(default: Any, help: str) -> Any:
    """``--out/-o``: where a command writes its output (a folder or a file)."""
    return typer.Option(default, "--out", "-o", help=help)


def model_option(default: Any, help: str) -> Any:
    """``--model/-m``: a trained model (shipped name, model folder, model.pt or .onnx)."""
    return typer.Option(default, "--model", "-m", help=help)


def preset_option(default: Any = "studio") -> Any:
    """``--preset/-p``: a preset name (``flambient presets``) or a .yaml path."""
    return typer.Option(default, "--preset", "-p", help="Preset name (see `flambient presets`) or a .yaml path.")


def devices_multi_option(default: str = "auto") -> Any:
    """``--devices/-d`` where several devices work together (``process``, ``demo``)."""
    return typer.Option(default, "--devices", "-d", callback=devices_option,
                        help="auto (every GPU, else the CPU), cpu, cuda (every GPU) or cuda:0,1; "
                             "an explicit cuda without a usable GPU is an error.")


def device_single_option() -> Any:
    """``--devices/-d`` where one device runs (``train``, ``finetune``): auto, cpu, cuda or cuda:N."""
    return typer.Option(None, "--devices", "-d", callback=device_option,
                        help="auto (default: the GPU, else the CPU), cpu, cuda or cuda:N (one device).")


def jobs_option(default: int = 0, help: str = "CPU worker threads (0 = all cores).") -> Any:
    """``--jobs/-j``: CPU workers (decoders, renderers); 0 means all cores."""
    return typer.Option(default, "--jobs", "-j", min=0, help=help)


def json_option(help: str = JSON_HELP) -> Any:
    """``--json PATH|-``: the result as JSON in a file, or on stdout for ``-``."""
    return typer.Option(None, "--json", metavar="PATH|-", help=help)


def force_option(help: str) -> Any:
    """``--force``: redo or replace what flambient itself wrote before."""
    return typer.Option(False, "--force", help=help)
