"""The contract between the batch runner and a model runtime: :class:`Backend`.

A backend runs one model on numpy float32 NCHW arrays and owns everything the runner must know
about it, so the runner has no special cases per runtime:

- ``name``: ``"torch"`` or ``"onnx"`` (what the sidecar records);
- ``spec``: the family's :class:`~flambient.nets.registry.ModelSpec` (tiling, size multiple);
- ``files``: the files the model was read from (weights; apply and context graphs for ONNX),
  empty for a model held only in memory;
- ``fingerprint()``: sha256 that changes whenever the model's output may change (the files'
  hashes, or the weights in memory);
- ``device_for(device, devices, requested)`` (a static method of the class, decided before the
  backend is opened): the device string the backend is opened on (the device rule);
- ``context(low)``: the whole-image context of the ``N x 13 x s x s`` low-resolution stack
  (linear light), a numpy array;
- ``bind_context(ctx)``: the context moved where the model runs (a device tensor for torch,
  a contiguous array for onnxruntime), handed to every ``apply`` of that image;
- ``apply(x, handle, pos)``: sRGB ``N x 3 x h x w`` of the linear ``N x 13 x h x w`` tile at
  ``pos = [y0, x0, H, W]`` (pixels);
- ``describe()``: one line for logs.

Out of memory on the device (or the host) is raised as :class:`BackendOOM` by the backend
itself, never recognised by message text elsewhere; :func:`flambient.inference.infer_image`
catches it and retries the tile in smaller pieces, keeping the tiles already finished.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .devices import Device
from .errors import DeviceError
from .nets.registry import ModelSpec


class BackendOOM(DeviceError):
    """The backend ran out of device (or host) memory on one call; smaller tiles may fit."""

    def __init__(self, where: str, cause: BaseException | None = None) -> None:
        detail = f" ({type(cause).__name__})" if cause is not None else ""
        super().__init__(f"out of memory on {where}{detail}", hint="use a smaller --tile, or fewer devices")


@runtime_checkable
class Backend(Protocol):
    """What the runner and :func:`flambient.inference.infer_image` need from a model runtime."""

    name: str
    spec: ModelSpec
    files: tuple[Path, ...]

    @staticmethod
    def device_for(device: Device, devices: Sequence[Device], requested: str) -> str:
        """The device string to open this backend on (``requested``: the ``--devices`` kind)."""
        ...

    def fingerprint(self) -> str:
        """sha256 hex of what decides the model's output (files, or weights in memory)."""
        ...

    def context(self, low: np.ndarray) -> np.ndarray:
        """Whole-image context from the N x 13 x s x s low-resolution stack (linear)."""
        ...

    def bind_context(self, ctx: np.ndarray) -> Any:
        """The context where the model runs; passed to :meth:`apply` for every tile of the image."""
        ...

    def apply(self, x: np.ndarray, ctx: Any, pos: np.ndarray) -> np.ndarray:
        """sRGB N x 3 x h x w of the N x 13 x h x w tile ``x`` at ``pos`` = [y0, x0, H, W]."""
        ...

    def describe(self) -> str:
        """One line for logs."""
        ...


def files_fingerprint(files: Iterable[Path]) -> str:
    """sha256 hex over the sha256 of each file, in order (the model's identity on disk)."""
    from .output import sha256_file

    h = hashlib.sha256()
    for f in files:
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def own_device(device: Device, devices: Sequence[Device], requested: str) -> str:
    """The plain device rule: open the backend on the pool's device as it is."""
    return device.name
