"""Model backends and full-resolution tiled inference ("context once, apply everywhere").

A :class:`~flambient.backends.Backend` (the contract, in :mod:`flambient.backends`) runs one
model on numpy float32 NCHW arrays: ``context(low)`` on the whole stack area-resized to
N x 13 x s x s, ``bind_context(ctx)`` once per image, then ``apply(x, handle, pos)`` per
N x 13 x h x w tile at ``pos = [y0, x0, H, W]`` -> N x 3 x h x w sRGB signal values in [0, 1].

:class:`TorchBackend` runs a :class:`~flambient.nets.registry.FlambientNet` on a torch device
(fp16 on CUDA when ``spec.half_precision``); :class:`flambient.onnx_backend.OnnxBackend` runs an
exported model through onnxruntime. :func:`load_backend` picks one from a model name or path.

:func:`infer_image` turns one stack into the final: it computes the context ONCE from an area
downsample of the whole stack (exactly :func:`flambient.nets.registry.downsample`, done band by
band so a 60 MP stack never becomes one tensor), then applies the model tile by tile
(:mod:`flambient.tiling`) with every tile sharing that context, and stitches the tiles with
smooth-ramp overlaps. The stack may be a numpy HxWx13 array or a :class:`StackSource` that
builds tiles on demand (:class:`PartsStack`: from the decoded frames of a bracket set), so
memory is bounded by the frames plus one tile, not by a 13-channel float copy of the image.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .backends import Backend, BackendOOM, files_fingerprint, own_device
from .errors import ConfigError, ModelError
from .log import get_logger
from .nets.registry import FlambientNet, ModelSpec
from .stack import AMBIENT, STACK_CHANNELS, assemble_stack, build_stack
from .tiling import MIN_TILE, Stitcher, Tile, pad_to_multiple, plan_overlap, plan_tiles

log = get_logger("inference")

#: Default tile side (pixels) when neither the preset nor the command line sets one.
DEFAULT_TILE = 1024
BACKENDS = ("torch", "onnx")


class TorchBackend:
    """A :class:`FlambientNet` on one torch device (the ``torch`` :class:`Backend`).

    Args:
        net: the model (moved to ``device``, put in eval mode).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        half: fp16 inference; ``None`` = on CUDA when ``net.spec.half_precision``.
        meta: the model file's metadata (``path`` is where it came from).
    """

    name = "torch"
    device_for = staticmethod(own_device)

    def __init__(self, net: FlambientNet, device: str = "cpu", half: bool | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        import torch

        self.device = torch.device(device)
        self.spec: ModelSpec = net.spec
        cuda = self.device.type == "cuda"
        self.half = bool(cuda and net.spec.half_precision) if half is None else bool(half and cuda)
        self.dtype = torch.float16 if self.half else torch.float32
        self.net = net.to(self.device).eval()
        if self.half:
            self.net = self.net.half()
        self.meta: dict[str, Any] = dict(meta or {})
        self.path: Path | None = Path(self.meta["path"]) if self.meta.get("path") else None
        self.files: tuple[Path, ...] = (self.path,) if self.path is not None else ()

    def fingerprint(self) -> str:
        """sha256 of the weights file, or of the weights in memory for an in-memory model."""
        if self.files:
            return files_fingerprint(self.files)
        import hashlib

        h = hashlib.sha256()
        for k, v in sorted(self.net.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()

    def _to_dev(self, a: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device, self.dtype)

    def context(self, low: np.ndarray) -> np.ndarray:
        """N x 13 x s x s linear -> context (float32 numpy)."""
        import torch

        with torch.inference_mode(), self._oom():
            return self.net.context(self._to_dev(low)).float().cpu().numpy()

    def bind_context(self, ctx: np.ndarray) -> Any:
        """The context as a tensor on this backend's device (moved once per image, not per tile)."""
        with self._oom():
            return self._to_dev(ctx)

    def apply(self, x: np.ndarray, ctx: Any, pos: np.ndarray) -> np.ndarray:
        """N x 13 x h x w linear tile -> N x 3 x h x w sRGB (float32 numpy).

        ``ctx``: the handle from :meth:`bind_context` (a numpy context is moved on every call).
        """
        import torch

        with torch.inference_mode(), self._oom():
            handle = self.bind_context(ctx) if isinstance(ctx, np.ndarray) else ctx
            p = torch.as_tensor(np.asarray(pos, dtype=np.float32).reshape(4), device=self.device)
            y = self.net.apply(self._to_dev(x), handle, p)
            return y.float().cpu().numpy()

    @contextlib.contextmanager
    def _oom(self) -> Iterator[None]:
        """Turn torch's and the host's out-of-memory errors into :class:`BackendOOM` (cache freed)."""
        import torch

        try:
            yield
        except (torch.OutOfMemoryError, MemoryError) as exc:
            _free_device_memory()
            raise BackendOOM(self.describe(), exc) from exc

    def describe(self) -> str:
        """One line for logs: model, family, device and precision."""
        where = self.path.parent.name if self.path is not None else "in-memory model"
        return f"{where} ({self.spec.family}, torch {self.device}{' fp16' if self.half else ''})"


def backend_class(model: str | Path | FlambientNet, backend: str = "torch") -> type:
    """The :class:`Backend` class that opens ``model`` with ``backend`` (an ``.onnx`` path always
    means onnx); raises :class:`ConfigError` for an unknown backend name."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'", hint=f"use one of: {', '.join(BACKENDS)}")
    if not isinstance(model, FlambientNet) and (backend == "onnx" or str(model).lower().endswith(".onnx")):
        from .onnx_backend import OnnxBackend

        return OnnxBackend
    return TorchBackend


def load_backend(model: str | Path | FlambientNet, backend: str = "torch", device: str = "cpu",
                 half: bool | None = None) -> Backend:
    """Open ``model`` (a shipped name, a model folder, a ``model.pt`` or an exported ``.onnx``).

    ``backend`` is ``"torch"`` or ``"onnx"`` (an ``.onnx`` path always uses onnx); ``device``
    is ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Raises :class:`ModelError` for unknown or broken
    models and :class:`ConfigError` for an unknown backend.
    """
    cls = backend_class(model, backend)
    if isinstance(model, FlambientNet):
        if backend != "torch":
            raise ModelError("an in-memory model runs only on the torch backend")
        return TorchBackend(model, device, half)
    if cls is not TorchBackend:
        from .onnx_backend import onnx_model_path

        return cls(onnx_model_path(model), device)
    from .nets.registry import load_model

    net, meta = load_model(model)
    return TorchBackend(net, device, half, meta)


# ----------------------------------------------------------------------------- stack sources


def area_downsample(img: np.ndarray, size: int, scale: float = 1.0) -> np.ndarray:
    """Area-resize an HxWxC array (any numeric dtype) to ``size x size x C`` float32, times ``scale``.

    Uses the bins of ``torch.nn.functional.adaptive_avg_pool2d`` (bin ``i`` spans
    ``floor(i*H/s) .. ceil((i+1)*H/s)``), so it equals :func:`flambient.nets.registry.downsample`
    up to float rounding, but works one band of rows at a time (no full-size float copy).
    """
    h, w = img.shape[:2]
    c = img.shape[2] if img.ndim == 3 else 1
    x = img.reshape(h, w, c)
    y0 = (np.arange(size) * h) // size
    y1 = -((-(np.arange(size) + 1) * h) // size)
    x0 = (np.arange(size) * w) // size
    x1 = -((-(np.arange(size) + 1) * w) // size)
    out = np.empty((size, size, c), dtype=np.float64)
    for i in range(size):
        band = x[y0[i]:y1[i]].sum(axis=0, dtype=np.float64) / (y1[i] - y0[i])  # W x C
        cs = np.concatenate([np.zeros((1, c)), np.cumsum(band, axis=0)], axis=0)
        out[i] = (cs[x1] - cs[x0]) / (x1 - x0)[:, None]
    return (out * scale).astype(np.float32)


@runtime_checkable
class StackSource(Protocol):
    """A model input stack that yields tiles on demand (linear float32, stack layout)."""

    height: int
    width: int

    def tile(self, t: Tile) -> np.ndarray:
        """The ``13 x t.h x t.w`` float32 stack of tile ``t`` (channels first, C-contiguous).

        May be a buffer the source reuses: valid until the next call.
        """
        ...

    def low(self, size: int) -> np.ndarray:
        """The whole stack area-resized to ``1 x 13 x size x size`` (the context input)."""
        ...

    def ambient(self, t: Tile) -> np.ndarray:
        """The tile's linear ambient RGB, ``t.h x t.w x 3`` float32."""
        ...


class ArrayStack:
    """:class:`StackSource` over an HxWx13 float32 array held in memory."""

    def __init__(self, stack: np.ndarray) -> None:
        if stack.ndim != 3 or stack.shape[2] != STACK_CHANNELS:
            raise ValueError(f"stack must be H x W x {STACK_CHANNELS}, got {stack.shape}")
        self.stack = stack
        self.height, self.width = int(stack.shape[0]), int(stack.shape[1])

    def tile(self, t: Tile) -> np.ndarray:
        return np.ascontiguousarray(self.stack[t.slices].transpose(2, 0, 1), dtype=np.float32)

    def low(self, size: int) -> np.ndarray:
        return area_downsample(self.stack, size).transpose(2, 0, 1)[None].copy()

    def ambient(self, t: Tile) -> np.ndarray:
        return np.asarray(self.stack[t.slices][:, :, AMBIENT], dtype=np.float32)


Part = tuple[np.ndarray, float]


class PartsStack:
    """:class:`StackSource` over a set's decoded frames, ``(pixels HxWx3, factor)`` parts.

    The stack of a tile is ``build_stack(a * fa, mean(f_i * ff_i), w * fw)`` restricted to the
    tile (see :func:`flambient.ingest.load_set_parts`); 16-bit RAW frames stay 16-bit, so a
    three-frame 60 MP set holds about 1.1 GB instead of a 3.1 GB float stack. Tiles are built
    channels first into one reused buffer: fresh pages for every 54 MB tile cost about as much
    system time as building it.
    """

    def __init__(self, ambient: Part, flashes: list[Part], window: Part | None) -> None:
        self.parts = (ambient, list(flashes), window)
        self.height, self.width = int(ambient[0].shape[0]), int(ambient[0].shape[1])
        self._buf: np.ndarray | None = None

    def tile(self, t: Tile) -> np.ndarray:
        amb, fls, win = self.parts
        sl = t.slices
        n = STACK_CHANNELS * t.h * t.w
        if self._buf is None or self._buf.size < n:
            self._buf = np.empty(n, dtype=np.float32)
        return assemble_stack((amb[0][sl], amb[1]), [(a[sl], f) for a, f in fls],
                              (win[0][sl], win[1]) if win is not None else None,
                              channels_first=True, out=self._buf[:n].reshape(STACK_CHANNELS, t.h, t.w))

    def low(self, size: int) -> np.ndarray:
        amb, fls, win = self.parts
        flash = np.mean([area_downsample(a[:, :, :3], size, f) for a, f in fls], axis=0) if fls else None
        window = area_downsample(win[0][:, :, :3], size, win[1]) if win is not None else None
        out = build_stack(area_downsample(amb[0][:, :, :3], size, amb[1]), flash, window)
        return out.transpose(2, 0, 1)[None].copy()

    def ambient(self, t: Tile) -> np.ndarray:
        a, f = self.parts[0]
        return a[t.slices][:, :, :3].astype(np.float32) * np.float32(f)


def as_source(stack: np.ndarray | StackSource) -> StackSource:
    """Wrap an HxWx13 array as :class:`ArrayStack`; pass a :class:`StackSource` through."""
    return ArrayStack(stack) if isinstance(stack, np.ndarray) else stack


# ----------------------------------------------------------------------------- inference

#: ``post(tile, srgb_tile h x w x 3, source) -> h x w x 3``: per-pixel edits applied before stitching.
TilePost = Callable[[Tile, np.ndarray, StackSource], np.ndarray]


def infer_image(backend: Backend, stack: np.ndarray | StackSource, tile: int | None = DEFAULT_TILE,
                overlap: int | None = None, *, post: TilePost | None = None,
                timings: dict[str, float] | None = None,
                on_tile: Callable[[int, int], None] | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
    """Run ``backend`` on one whole stack; returns the final as sRGB float32 HxWx3 in [0, 1].

    Args:
        backend: the model runtime.
        stack: HxWx13 float32 linear stack, or a :class:`StackSource`.
        tile: largest tile side in pixels (None/0: one tile); ignored (one tile) for families
            whose spec is not ``tileable``. On :class:`BackendOOM` the failing tile is split
            into tiles of half the side (down to :data:`~flambient.tiling.MIN_TILE`), and so is
            every later one; tiles already finished are kept (:class:`TileRunner`).
        overlap: the model's margin at tile borders (pixels; default ``spec.overlap``): pixels
            this close to a tile's inner border get no weight; neighbouring tiles overlap by
            :func:`plan_overlap` of it.
        post: optional per-tile output transform (see :data:`TilePost`), applied before stitching.
        timings: when given, ``context`` and ``apply`` seconds are added to it.
        on_tile: called as ``on_tile(done, total)`` after each tile of the first plan (progress).
        out: optional float32 ``H x W x 3`` buffer the final is written into (and returned).
    """
    spec = backend.spec
    src = as_source(stack)
    t0 = time.perf_counter()
    handle = backend.bind_context(backend.context(src.low(spec.context_size)))
    t1 = time.perf_counter()
    ov = spec.overlap if overlap is None else int(overlap)
    tile_px = tile if spec.tileable else None
    plan = plan_tiles(src.height, src.width, tile_px, plan_overlap(ov) if tile_px else 0, spec.size_multiple,
                      margin=ov)
    runner = TileRunner(backend, src, handle, ov, post, limit=tile_px or None)
    stitcher = Stitcher(plan, channels=3, out=out)
    for k, t in enumerate(plan):
        stitcher.add(t, runner.run(t))
        if on_tile is not None:
            on_tile(k + 1, len(plan))
    result = stitcher.result()
    t2 = time.perf_counter()
    if timings is not None:
        timings["context"] = timings.get("context", 0.0) + (t1 - t0)
        timings["apply"] = timings.get("apply", 0.0) + (t2 - t1)
    return result


class TileRunner:
    """Runs tiles of one image through a backend, splitting them when the device runs out of memory.

    ``run(t)`` returns the sRGB ``t.h x t.w x 3`` output of tile ``t`` (image coordinates). When
    the backend raises :class:`BackendOOM`, :attr:`limit` (the largest tile side) is halved, down
    to :data:`MIN_TILE`, and the tile is computed as a sub-plan of tiles of that side, stitched
    like any plan (so it agrees with the whole tile as tiled output agrees with untiled); later
    tiles larger than :attr:`limit` are split straight away. ``limit`` None (one tile asked for)
    never splits. :attr:`calls` counts backend ``apply`` calls (tests, logs).
    """

    def __init__(self, backend: Backend, src: StackSource, handle: Any, overlap: int,
                 post: TilePost | None, limit: int | None) -> None:
        self.backend, self.src, self.handle, self.overlap, self.post = backend, src, handle, overlap, post
        self.limit = limit
        self.calls = 0

    def run(self, t: Tile) -> np.ndarray:
        """sRGB ``t.h x t.w x 3`` float32 of tile ``t`` (post applied)."""
        if self.limit is None or max(t.h, t.w) <= self.limit:
            try:
                return self._direct(t)
            except BackendOOM:
                if not self._shrink(t):
                    raise
        return self._split(t)

    def _shrink(self, t: Tile) -> bool:
        """Halve :attr:`limit` below the failed tile's side; False when it cannot get smaller."""
        side = max(t.h, t.w) // 2
        if self.limit is None or side < MIN_TILE or side < plan_overlap(self.overlap) + self.backend.spec.size_multiple:
            return False
        self.limit = min(self.limit, max(MIN_TILE, side))
        log.warning("out of memory on %s; going on with %d px tiles (finished tiles kept)",
                    self.backend.describe(), self.limit)
        return True

    def _split(self, t: Tile) -> np.ndarray:
        sub = plan_tiles(t.h, t.w, self.limit, plan_overlap(self.overlap), self.backend.spec.size_multiple,
                         margin=self.overlap)
        stitcher = Stitcher(sub, channels=3)
        for s in sub:
            stitcher.add(s, self.run(Tile(t.y0 + s.y0, t.x0 + s.x0, s.h, s.w)))
        return stitcher.result()

    def _direct(self, t: Tile) -> np.ndarray:
        spec, h, w = self.backend.spec, self.src.height, self.src.width
        x = self.src.tile(t)[None]  # 1 x 13 x h x w
        x, (th, tw) = pad_to_multiple(x, spec.size_multiple, axes=(2, 3))
        pos = np.array([t.y0, t.x0, h, w], dtype=np.float32)
        self.calls += 1
        y = self.backend.apply(np.ascontiguousarray(x), self.handle, pos)
        if y.ndim != 4 or y.shape[1] != 3:
            raise ModelError(f"model returned shape {y.shape}, expected 1 x 3 x h x w")
        rgb = y[0, :, :th, :tw].transpose(1, 2, 0)
        return self.post(t, rgb, self.src) if self.post is not None else rgb


def _free_device_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort
        pass


# ----------------------------------------------------------------------------- one image, any model


def single_image_stack(srgb: np.ndarray) -> np.ndarray:
    """The HxWx13 stack ``process`` builds for one sRGB image (a one-frame set: ambient only,
    decoded to linear light at 0 EV, no flash, window or mask)."""
    from .colour import srgb_to_linear

    return build_stack(srgb_to_linear(np.clip(np.asarray(srgb, dtype=np.float32)[:, :, :3], 0.0, 1.0)))


def predict_srgb(model: str | Path | FlambientNet | Backend, image: np.ndarray,
                 tile: int | None = DEFAULT_TILE) -> np.ndarray:
    """Run a model on one image the way ``process`` does; returns sRGB HxWx3 float32 in [0, 1].

    ``model``: a shipped name, a model folder / ``model.pt`` / ``.onnx`` path, an in-memory
    :class:`FlambientNet` or an open :class:`Backend` (reuse one backend for many images).
    ``image``: an sRGB HxWx3 image in [0, 1] (treated as a one-frame set, see
    :func:`single_image_stack`) or an HxWx13 linear stack (:mod:`flambient.stack`).
    The preset's edit settings are not applied (the default preset changes nothing).
    """
    backend = model if isinstance(model, Backend) and not isinstance(model, FlambientNet) else None
    if backend is None:
        backend = load_backend(model)  # type: ignore[arg-type]
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] not in (3, STACK_CHANNELS):
        raise ValueError(f"image must be HxWx3 sRGB or HxWx{STACK_CHANNELS} stack, got shape {arr.shape}")
    stack = single_image_stack(arr) if arr.shape[2] == 3 else arr
    return infer_image(backend, stack, tile=tile)
