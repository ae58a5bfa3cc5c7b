"""Compute devices: discovery (CUDA GPUs, then the CPU) and the ``--devices`` option.

One grammar for every device option (``process --devices``, ``train``/``finetune --devices``
(one device there), the onnx backend): :func:`parse_devices` / :func:`parse_device`; the CLI checks values with
them while parsing its arguments, before any work. ``--devices`` accepts ``auto`` (every CUDA GPU, or the CPU when there is none), ``cpu``,
``cuda`` (every GPU) or ``cuda:0,1`` / ``0,1`` (those GPUs). Only ``auto`` falls back to the
CPU when there is no usable GPU; an explicit ``cuda`` (or ``cuda:N``) on such a machine, or a
GPU index that does not exist, is a :class:`~flambient.errors.DeviceError` (exit 2), so a cron
job set up for a GPU does not go on for hours on the CPU when the GPU is gone.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import DeviceError
from .log import get_logger

log = get_logger("devices")


@dataclass(frozen=True)
class Device:
    """One compute device: ``name`` is what torch takes (``cpu``, ``cuda:0``); ``label`` is for people."""

    name: str
    label: str

    @property
    def is_cuda(self) -> bool:
        """Whether this is a CUDA GPU."""
        return self.name.startswith("cuda")


CPU = Device("cpu", "CPU")


def discover_devices() -> list[Device]:
    """Every CUDA GPU torch can use (with name and memory), then the CPU."""
    gpus: list[Device] = []
    try:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                gpus.append(Device(f"cuda:{i}", f"{p.name} ({p.total_memory / 2**30:.0f} GiB)"))
    except Exception as exc:  # a broken CUDA install must not stop CPU work
        log.debug("CUDA discovery failed: %s", exc)
    return [*gpus, CPU]


def parse_devices(spec: str | None) -> tuple[str, list[int]]:
    """Parse a ``--devices`` value into ``(kind, indices)``; kind is auto, cpu or cuda.

    ``indices`` is empty for "every GPU". Raises :class:`DeviceError` for malformed values.
    """
    s = (spec or "auto").strip().lower().replace(" ", "")
    if s in ("auto", "cpu", "cuda", "gpu"):
        return ("cuda" if s == "gpu" else s), []
    body = s[5:] if s.startswith("cuda:") else s
    parts = [p[5:] if p.startswith("cuda:") else p for p in body.split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise DeviceError(f"bad --devices value '{spec}'", hint="use auto, cpu, cuda or cuda:0,1")
    return "cuda", sorted({int(p) for p in parts})


def parse_device(spec: str | None) -> str:
    """Parse a single-device value (``train --devices``, the onnx backend): auto, cpu, cuda or cuda:N.

    The same grammar as :func:`parse_devices` (``gpu`` = ``cuda``, ``1`` = ``cuda:1``) but one
    device at most; returns the normalised name. Raises :class:`DeviceError` otherwise.
    """
    try:
        kind, idx = parse_devices(spec)
    except DeviceError:
        raise DeviceError(f"unknown device '{spec}'", hint="use auto, cpu, cuda or cuda:N") from None
    if len(idx) > 1:
        raise DeviceError(f"device '{spec}': one device only", hint="use auto, cpu, cuda or cuda:N")
    return f"cuda:{idx[0]}" if idx else kind


def resolve_devices(spec: str | None = "auto") -> list[Device]:
    """The devices a ``--devices`` value selects (never empty); see the module docstring."""
    kind, idx = parse_devices(spec)
    found = discover_devices()
    gpus = [d for d in found if d.is_cuda]
    if kind == "cpu":
        return [CPU]
    if not gpus:
        if kind == "cuda":
            raise DeviceError(f"'{spec}' asks for a GPU, but there is no usable CUDA GPU on this machine",
                              hint="check the NVIDIA driver (nvidia-smi), or use --devices auto or cpu")
        log.info("no CUDA GPU found; running on the CPU")
        return [CPU]
    if not idx:
        return gpus
    missing = [i for i in idx if i >= len(gpus)]
    if missing:
        raise DeviceError(f"GPU cuda:{missing[0]} does not exist",
                          hint=f"this machine has {', '.join(d.name for d in gpus)}")
    return [gpus[i] for i in idx]
