"""Export a flambient model to ONNX (and TensorRT), checked against torch before it is written.

A model runs as "context once, apply everywhere" (see :mod:`flambient.nets.registry`), so an
export is two ONNX graphs (file layout in :mod:`flambient.onnx_backend`): ``model.onnx`` (apply,
dynamic batch, height and width) and ``model.context.onnx`` (context, dynamic batch). Both are
traced with the TorchScript exporter (``torch.onnx.export(dynamo=False)``, opset 17 by default)
and carry the model card in their ``metadata_props``.

Nothing is written until a parity check passes: fresh random stacks of several sizes (and
random tile positions) go through torch and through onnxruntime, and the largest absolute
difference of the sRGB output (signal values in [0, 1]) must stay within
:data:`FP32_TOLERANCE` (:data:`FP16_TOLERANCE` for ``fp16``).

``fp16``: weights and activations are converted to float16 with onnxruntime's
``float16.convert_float_to_float16`` (inputs and outputs stay float32, numerically sensitive
ops stay float32 by that tool's block list); the parity check then runs the fp16 graph.

``trt``: with the TensorRT Python package installed, serialized engines are built with its
builder (``model.engine``, ``model.context.engine``); otherwise onnxruntime's TensorRT
execution provider builds its engine cache in ``trt_cache/`` beside the ONNX files, which the
``onnx`` backend of ``process`` then reuses. Without a GPU or TensorRT this fails up front with
one line saying what to install (:class:`~flambient.errors.DeviceError`, exit status 2).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .errors import ConfigError, DeviceError, InputError, ModelError, first_line
from .io.atomic import atomic_path
from .log import get_logger
from .nets.registry import FlambientNet, ModelSpec, load_model, resolve_model_path
from .onnx_backend import (CPU, CUDA, ONNX_FORMAT, ONNX_FORMAT_VERSION, OnnxBackend, context_path_for,
                           cuda_gpu_count, default_trt_cache, make_session, probe_providers,
                           tensorrt_install_hint, trt_profile_shapes)
from .stack import STACK_CHANNELS, build_stack

log = get_logger("export")

#: Largest allowed absolute error of the sRGB output (values in [0, 1]) for a float32 export.
FP32_TOLERANCE = 1e-4
#: The same for a float16 export (about 2.5 levels of an 8-bit JPEG).
FP16_TOLERANCE = 1e-2
#: Opset used unless ``--opset`` says otherwise.
DEFAULT_OPSET = 17
#: Opsets the TorchScript exporter of torch 2.x writes.
MIN_OPSET, MAX_OPSET = 13, 20
DEFAULT_MODEL = "default"


# ----------------------------------------------------------------------------- results


@dataclass
class ParityCase:
    """One parity input: batch, tile size (pixels) and the errors of the sRGB output."""

    batch: int
    height: int
    width: int
    max_abs: float
    mean_abs: float


@dataclass
class ParityReport:
    """Parity of an ONNX export against torch.

    Attributes:
        cases: one per random input.
        tolerance: the largest max-abs error allowed.
        context_max_abs: largest absolute error of the context tensor itself.
        provider: onnxruntime provider the check ran on.
    """

    cases: list[ParityCase]
    tolerance: float
    context_max_abs: float
    provider: str

    @property
    def max_abs(self) -> float:
        """Largest absolute error over every case."""
        return max(c.max_abs for c in self.cases)

    @property
    def mean_abs(self) -> float:
        """Mean absolute error over every pixel of every case."""
        n = [c.batch * c.height * c.width for c in self.cases]
        return float(sum(c.mean_abs * k for c, k in zip(self.cases, n)) / sum(n))

    @property
    def ok(self) -> bool:
        """Whether every case is within the tolerance."""
        return self.max_abs <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (stored in the model card)."""
        return {"max_abs": self.max_abs, "mean_abs": self.mean_abs, "tolerance": self.tolerance,
                "context_max_abs": self.context_max_abs, "provider": self.provider,
                "cases": [asdict(c) for c in self.cases]}


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and measured."""

    model: str
    family: str
    onnx_path: Path
    context_path: Path
    fp16: bool
    opset: int
    parity: ParityReport
    trt_files: list[Path] = field(default_factory=list)
    trt_method: str = ""
    seconds: float = 0.0


# ----------------------------------------------------------------------------- inputs


def random_stack(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A plausible random N x 13 x h x w float32 input stack (linear light, see :mod:`flambient.stack`).

    Frames are random linear values (a few above 1, like windows and lamps); each item gets
    random presence flags, and absent frames are zero as the real stack has them.
    """
    def frame(present: bool, shape: tuple[int, ...], scale: float) -> np.ndarray | None:
        return np.moveaxis(rng.random(shape, dtype=np.float32) ** 2 * scale, 0, -1) if present else None

    x = np.zeros((n, STACK_CHANNELS, h, w), dtype=np.float32)
    for i in range(n):
        has_flash, has_window, has_mask = (rng.random(3) < 0.6).tolist()
        ambient = frame(True, (3, h, w), 1.5)
        flash, window = frame(has_flash, (3, h, w), 2.0), frame(has_window, (3, h, w), 0.5)
        mask = rng.random((h, w), dtype=np.float32) if has_mask else None
        x[i] = build_stack(ambient, flash, window, mask).transpose(2, 0, 1)
    return x


def parity_sizes(spec: ModelSpec, small: bool = False) -> list[tuple[int, int, int]]:
    """(batch, height, width) of the parity inputs: odd-shaped tiles, rounded up to ``size_multiple``.

    ``small``: three smaller tiles (still one with batch 2), for quick checks in tests.
    """
    m = max(1, spec.size_multiple)

    def up(v: int) -> int:
        return -(-v // m) * m

    if small:
        return [(1, up(23), up(41)), (2, up(16), up(24)), (1, up(52), up(37))]
    return [(1, up(40), up(72)), (1, up(97), up(61)), (2, up(64), up(48)), (1, up(160), up(136))]


# ----------------------------------------------------------------------------- tracing


class _ContextGraph(nn.Module):
    """``low -> ctx`` of a family, as a module the exporter can trace."""

    def __init__(self, net: FlambientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        return self.net.context(low)


class _ApplyGraph(nn.Module):
    """``(x, ctx, pos) -> sRGB`` of a family, as a module the exporter can trace."""

    def __init__(self, net: FlambientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.net.apply(x, ctx, pos)


def _trace(module: nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str], output_names: list[str],
           dynamic_axes: dict[str, dict[int, str]], opset: int) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True)
    for w in caught:
        if not issubclass(w.category, DeprecationWarning):
            log.debug("exporter: %s", first_line(str(w.message)))
    return buf.getvalue()


def trace_graphs(net: FlambientNet, opset: int = DEFAULT_OPSET) -> tuple[Any, Any]:
    """Trace ``net`` into (context ModelProto, apply ModelProto), float32.

    Raises :class:`ModelError` with the exporter's first line when tracing fails.
    """
    import onnx

    spec = net.spec
    s = spec.context_size
    rng = np.random.default_rng(0)
    m = max(1, spec.size_multiple)
    # A small, non-square example tile: tracing runs the net once (slowly) at this size.
    h, w = m * max(2, -(-16 // m)), m * max(3, -(-24 // m))
    low = torch.from_numpy(random_stack(1, s, s, rng))
    x = torch.from_numpy(random_stack(1, h, w, rng))
    pos = torch.tensor([float(h), 0.0, float(3 * h), float(2 * w)])
    try:
        with torch.no_grad():
            ctx = net.context(low)
        ctx_bytes = _trace(_ContextGraph(net).eval(), (low,), ["low"], ["ctx"],
                           {"low": {0: "batch"}, "ctx": {0: "batch"}}, opset)
        apply_bytes = _trace(_ApplyGraph(net).eval(), (x, ctx, pos), ["x", "ctx", "pos"], ["y"],
                             {"x": {0: "batch", 2: "height", 3: "width"}, "ctx": {0: "batch"},
                              "y": {0: "batch", 2: "height", 3: "width"}}, opset)
    except Exception as exc:
        first = first_line(exc, 200)
        raise ModelError(f"family '{spec.family}' failed to export to ONNX at opset {opset} ({first})",
                         hint="try another --opset, or mark the family exportable=False with an export_note") from None
    return onnx.load_from_string(ctx_bytes), onnx.load_from_string(apply_bytes)


def to_fp16(model: Any) -> Any:
    """Float16 copy of an ONNX ModelProto (inputs and outputs stay float32)."""
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:  # pragma: no cover - onnxruntime always ships it
        raise ModelError("fp16 export needs onnxruntime.transformers.float16",
                         hint="install onnxruntime (or onnxruntime-gpu) 1.17 or newer") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:
        raise ModelError(f"float16 conversion failed ({str(exc)[:160]})", hint="export without --fp16") from None


# ----------------------------------------------------------------------------- parity


def check_parity(net: FlambientNet, context_graph: bytes | Path, apply_graph: bytes | Path, *,
                 tolerance: float, fp16: bool = False, seed: int | None = None,
                 sizes: list[tuple[int, int, int]] | None = None) -> ParityReport:
    """Compare torch and onnxruntime on fresh random stacks; returns the errors (does not raise).

    Each case draws a random tile of the given size at a random position inside a larger
    virtual image, computes the context of a random low-resolution stack with both engines and
    compares the final sRGB output of ``apply``. Runs on the CPU provider, or on CUDA for fp16
    graphs when CUDA is usable (onnxruntime's CPU kernels cover fewer fp16 ops).
    """
    spec = net.spec
    rng = np.random.default_rng(seed)
    providers: list[Any] = [CPU]
    if fp16 and probe_providers().cuda:
        providers = [CUDA, CPU]
    ctx_sess = make_session(context_graph if isinstance(context_graph, bytes) else Path(context_graph), providers)
    app_sess = make_session(apply_graph if isinstance(apply_graph, bytes) else Path(apply_graph), providers)
    app_inputs = {i.name for i in app_sess.get_inputs()}
    ctx_in = ctx_sess.get_inputs()[0].name
    s = spec.context_size
    cases: list[ParityCase] = []
    ctx_err = 0.0
    for n, h, w in sizes or parity_sizes(spec):
        low = random_stack(n, s, s, rng)
        x = random_stack(n, h, w, rng)
        big_h, big_w = h * int(rng.integers(1, 5)), w * int(rng.integers(1, 5))
        pos = np.array([rng.integers(0, big_h - h + 1), rng.integers(0, big_w - w + 1), big_h, big_w],
                       dtype=np.float32)
        with torch.no_grad():
            ctx_t = net.context(torch.from_numpy(low))
            y_t = net.apply(torch.from_numpy(x), ctx_t, torch.from_numpy(pos)).numpy()
        ctx_o = ctx_sess.run(None, {ctx_in: low})[0]
        feeds = {"x": x, "ctx": ctx_o.astype(np.float32), "pos": pos}
        y_o = app_sess.run(None, {k: v for k, v in feeds.items() if k in app_inputs})[0]
        if y_o.shape != y_t.shape:
            raise ModelError(f"ONNX output has shape {y_o.shape}, torch {y_t.shape} for a {h}x{w} tile",
                             hint="the family's apply is not shape-generic when traced; mark it exportable=False")
        ctx_err = max(ctx_err, float(np.abs(ctx_o.astype(np.float64) - ctx_t.numpy()).max()))
        err = np.abs(y_o.astype(np.float64) - y_t)
        cases.append(ParityCase(n, h, w, float(err.max()), float(err.mean())))
    return ParityReport(cases, tolerance, ctx_err, app_sess.get_providers()[0])


# ----------------------------------------------------------------------------- metadata


def model_card(net: FlambientNet, meta: dict[str, Any], model_file: Path) -> dict[str, Any]:
    """The card embedded in the export: family, config, training metadata, model.yaml if present."""
    card: dict[str, Any] = {"family": net.spec.family, "config": dict(net.config), "meta": dict(meta),
                            "source": str(model_file), "flambient_version": __version__,
                            "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    yaml_card = model_file.parent / "model.yaml"
    if yaml_card.is_file():
        import yaml

        try:
            card["card"] = yaml.safe_load(yaml_card.read_text(encoding="utf-8"))
        except Exception as exc:  # a broken card must not block an export; say so in the log
            log.warning("%s: model card not embedded (%s)", yaml_card, first_line(exc, 100))
    return card


def _stamp(model: Any, role: str, spec: ModelSpec, card: dict[str, Any], context_name: str | None) -> None:
    props = {"flambient.format": ONNX_FORMAT, "flambient.format_version": str(ONNX_FORMAT_VERSION),
             "flambient.role": role, "flambient.spec": json.dumps(spec.to_dict()),
             "flambient.card": json.dumps(card, default=str)}
    if context_name:
        props["flambient.context_graph"] = context_name
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name = "flambient"
    model.producer_version = __version__
    model.doc_string = f"flambient {spec.family} ({role}): {spec.description}"


def _write(model: Any, dest: Path) -> None:
    import onnx

    try:
        with atomic_path(dest) as tmp:
            onnx.save(model, str(tmp))
    except OSError as exc:
        raise InputError(f"cannot write the export ({exc.strerror or exc})", dest,
                         "choose another place with --out PATH") from None


# ----------------------------------------------------------------------------- TensorRT


def check_trt_available() -> str:
    """How a TensorRT engine can be built here: ``"tensorrt"`` (Python API) or ``"onnxruntime"``.

    Raises :class:`DeviceError` with one line saying what to install when neither works.
    """
    try:
        import tensorrt  # noqa: F401
    except Exception:
        probe = probe_providers()
        if not probe.tensorrt:
            raise DeviceError(tensorrt_install_hint(probe)) from None
        return "onnxruntime"
    if cuda_gpu_count() == 0:
        raise DeviceError(tensorrt_install_hint(probe_providers()))
    return "tensorrt"


def build_trt_engine(onnx_path: Path, dest: Path, spec: ModelSpec, fp16: bool, tiles: bool) -> Path:
    """Build and serialize a TensorRT engine from ``onnx_path`` with the TensorRT Python API.

    ``tiles``: the graph has the tile input ``x`` (dynamic height and width); its optimisation
    profile then spans the sides of :func:`flambient.onnx_backend.trt_profile_shapes`. Every
    other dynamic dimension is the batch, profiled at 1.
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse the ONNX graph ({errors[:200]})", onnx_path)
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    prof = trt_profile_shapes(spec)

    def side(key: str) -> int:
        return int(prof[key].split("x")[-1])

    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        shape = list(inp.shape)
        if all(d >= 0 for d in shape):
            continue
        shapes = []
        for key in ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"):
            dims = [1 if (j == 0 and d < 0) else d for j, d in enumerate(shape)]
            if tiles and inp.name == "x":
                dims[2] = dims[3] = side(key)
            shapes.append(tuple(dims))
        profile.set_shape(inp.name, *shapes)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise DeviceError("TensorRT failed to build an engine (see the TensorRT log above)")
    with atomic_path(dest) as tmp:
        tmp.write_bytes(bytes(engine))
    return dest


def build_trt(onnx_path: Path, spec: ModelSpec, fp16: bool, method: str) -> list[Path]:
    """Build the TensorRT engines of an export; returns the engine files or the cache folder.

    ``method`` is what :func:`check_trt_available` returned. Failures inside TensorRT become
    :class:`DeviceError` with TensorRT's first line.
    """
    from .errors import FlambientError

    try:
        if method == "tensorrt":
            return [build_trt_engine(onnx_path, onnx_path.with_name(onnx_path.stem + ".engine"), spec, fp16,
                                     tiles=True),
                    build_trt_engine(context_path_for(onnx_path),
                                     onnx_path.with_name(onnx_path.stem + ".context.engine"), spec, fp16,
                                     tiles=False)]
        return [_warm_trt_cache(onnx_path, spec)]  # pragma: no cover - needs a GPU with TensorRT
    except FlambientError:
        raise
    except Exception as exc:
        first = first_line(exc, 200)
        raise DeviceError(f"TensorRT engine build failed ({first})",
                          hint="the ONNX export itself was written and checked") from None


def _warm_trt_cache(onnx_path: Path, spec: ModelSpec) -> Path:  # pragma: no cover - GPU only
    """Build onnxruntime's TensorRT engines into ``trt_cache/`` by running the export once."""
    cache = default_trt_cache(onnx_path)
    backend = OnnxBackend(onnx_path, device="cuda", trt_cache=cache, require_trt=True)
    rng = np.random.default_rng(0)
    s = spec.context_size
    ctx = backend.context(random_stack(1, s, s, rng))
    m = max(1, spec.size_multiple)
    side = m * max(1, -(-64 // m))
    backend.apply(random_stack(1, side, side, rng), ctx, np.array([0, 0, side, side], np.float32))
    if not any(cache.iterdir()):
        log.warning("%s: onnxruntime wrote no TensorRT engine; engines will be built on first use", cache)
    return cache


# ----------------------------------------------------------------------------- the command


def default_onnx_path(model_file: Path, fp16: bool) -> Path:
    """``model.onnx`` (``model.fp16.onnx`` for fp16) beside the model's ``model.pt``."""
    return model_file.parent / ("model.fp16.onnx" if fp16 else "model.onnx")


def export_model(model: str | Path = DEFAULT_MODEL, onnx_path: str | Path | None = None, *, fp16: bool = False,
                 trt: bool = False, opset: int = DEFAULT_OPSET, seed: int | None = None,
                 sizes: list[tuple[int, int, int]] | None = None) -> ExportResult:
    """Export ``model`` (shipped name, folder or ``model.pt``) to ONNX, parity-checked; optionally TensorRT.

    Args:
        model: the flambient model to export.
        onnx_path: where the apply graph goes (default :func:`default_onnx_path`); the context
            graph is written beside it (:func:`flambient.onnx_backend.context_path_for`).
        fp16: convert the graphs to float16 (checked at :data:`FP16_TOLERANCE`).
        trt: also build TensorRT engines (needs an NVIDIA GPU and TensorRT).
        opset: ONNX opset, :data:`MIN_OPSET` to :data:`MAX_OPSET`.
        seed: seed of the parity inputs (``None``: fresh random inputs every run).
        sizes: (batch, height, width) of the parity inputs (default :func:`parity_sizes`).

    Raises:
        ConfigError: bad opset or path; ModelError: unknown model, family not exportable,
        tracing failed or parity above tolerance; DeviceError: ``trt`` without GPU/TensorRT.
    """
    t0 = time.perf_counter()
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ConfigError(f"opset {opset} is not supported", hint=f"use --opset {MIN_OPSET} to {MAX_OPSET}")
    if onnx_path is not None and Path(onnx_path).suffix.lower() != ".onnx":
        raise ConfigError("the ONNX path must end in .onnx", onnx_path)
    trt_method = check_trt_available() if trt else ""
    model_file = resolve_model_path(model)
    net, meta = load_model(model_file)
    net = net.float().eval()
    spec = net.spec
    if not spec.exportable:
        raise ModelError(f"family '{spec.family}' cannot be exported to ONNX: {spec.export_note or 'no reason given'}",
                         model_file, "run it with the torch backend")
    if fp16 and not spec.half_precision:
        raise ModelError(f"family '{spec.family}' is not safe in float16 (its spec says half_precision=False)",
                         model_file, "export without --fp16")
    dest = Path(onnx_path) if onnx_path is not None else default_onnx_path(model_file, fp16)
    ctx_dest = context_path_for(dest)
    log.info("exporting %s (%s) to %s%s", model_file, spec.family, dest, " as fp16" if fp16 else "")
    ctx_model, app_model = trace_graphs(net, opset)
    if fp16:
        ctx_model, app_model = to_fp16(ctx_model), to_fp16(app_model)
    tol = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
    parity = check_parity(net, ctx_model.SerializeToString(), app_model.SerializeToString(),
                          tolerance=tol, fp16=fp16, seed=seed, sizes=sizes)
    if not parity.ok:
        raise ModelError(f"ONNX export of '{spec.family}' does not match torch: max abs error "
                         f"{parity.max_abs:.3g} > tolerance {tol:g} (mean {parity.mean_abs:.3g})",
                         model_file, "nothing was written; try without --fp16 or another --opset")
    card = model_card(net, meta, model_file)
    card.update(fp16=fp16, opset=int(opset), parity=parity.to_dict())
    _stamp(ctx_model, "context", spec, card, None)
    _stamp(app_model, "apply", spec, card, ctx_dest.name)
    _write(ctx_model, ctx_dest)
    _write(app_model, dest)
    trt_files = build_trt(dest, spec, fp16, trt_method) if trt else []
    return ExportResult(str(model), spec.family, dest, ctx_dest, fp16, int(opset), parity, trt_files, trt_method,
                        time.perf_counter() - t0)
