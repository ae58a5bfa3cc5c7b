"""Run an exported flambient model through onnxruntime (the ``onnx`` backend of ``process``).

An export (see :mod:`flambient.export`) is two ONNX graphs that share one model card:

- ``model.onnx``: the *apply* graph, inputs ``x`` (N x 13 x h x w linear stack tile),
  ``ctx`` (N x ... the whole-image context) and ``pos`` (float32 (4,): ``[y0, x0, H, W]`` in
  pixels), output ``y`` (N x 3 x h x w sRGB signal values in [0, 1]); dynamic N, h and w.
- ``model.context.onnx``: the *context* graph, input ``low`` (N x 13 x s x s, the whole stack
  area-resized to ``spec.context_size``), output ``ctx``.

Both carry ``metadata_props``: ``flambient.format``, ``flambient.role`` (``apply`` or
``context``), ``flambient.spec`` (the family's :class:`~flambient.nets.registry.ModelSpec` as
JSON), ``flambient.card`` (JSON: family, config, training metadata, parity results) and, on the
apply graph, ``flambient.context_graph`` (the context file's name, beside it).

Execution providers are tried in the order TensorRT, CUDA, CPU. The GPU providers are only
requested after a quiet probe shows that their libraries load (onnxruntime otherwise prints
pages of load errors before falling back), and :attr:`OnnxBackend.provider` reports the one
the session actually runs on.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backends import BackendOOM, files_fingerprint
from .devices import Device, parse_device
from .errors import DeviceError, ModelError, first_line
from .log import get_logger
from .nets.registry import ModelSpec

log = get_logger("onnx")

#: Value of the ``flambient.format`` metadata key of every exported graph.
ONNX_FORMAT = "flambient-onnx"
ONNX_FORMAT_VERSION = 1

TRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

#: Largest tile side the TensorRT optimisation profile admits (pixels).
TRT_MAX_SIDE = 4096
#: Tile side TensorRT tunes its kernels for (pixels); the ``process`` default tile size.
TRT_OPT_SIDE = 1024


def context_path_for(apply_path: str | Path) -> Path:
    """The context graph written beside an apply graph: ``model.onnx`` -> ``model.context.onnx``."""
    p = Path(apply_path)
    return p.with_name(p.stem + ".context.onnx")


def default_trt_cache(apply_path: str | Path) -> Path:
    """TensorRT engine cache folder of an export: ``trt_cache/`` beside the ONNX files."""
    return Path(apply_path).parent / "trt_cache"


def default_threads() -> int:
    """Intra-op threads for onnxruntime: the CPUs this process may use (at most 16)."""
    try:
        n = len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(16, n))


# ----------------------------------------------------------------------------- provider probes


def _ort_capi_dir() -> Path:
    import onnxruntime as ort

    return Path(ort.__file__).resolve().parent / "capi"


def _try_load(lib: str | Path) -> str | None:
    """dlopen ``lib``; ``None`` when it loads, else the loader's one-line reason."""
    try:
        ctypes.CDLL(str(lib))
    except OSError as exc:
        return first_line(exc, empty="cannot be loaded")
    return None


def cuda_gpu_count() -> int:
    """Number of NVIDIA GPUs the driver reports (0 without a driver or a GPU); no CUDA toolkit needed."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:
                return 0
            count = ctypes.c_int(0)
            if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
            return int(count.value)
        except AttributeError:  # pragma: no cover - a library of that name that is not the driver
            return 0
    return 0


def _preload_tensorrt_wheel() -> None:
    """Load TensorRT from its pip wheel (``tensorrt_libs``) so onnxruntime's provider finds it.

    The wheel's libraries are not on the loader path; loading them globally by their full path
    first lets the provider library's ``libnvinfer.so.10`` dependency resolve (Linux only).
    """
    if sys.platform == "win32":
        return
    try:
        import tensorrt_libs  # type: ignore[import-not-found]
    except Exception:
        return
    folder = Path(tensorrt_libs.__file__).resolve().parent
    for pattern in ("libnvinfer.so.*", "libnvinfer_plugin.so.*", "libnvonnxparser.so.*"):
        for lib in sorted(folder.glob(pattern)):
            with contextlib.suppress(OSError):
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


@dataclass(frozen=True)
class ProviderProbe:
    """What this machine can run onnxruntime on.

    Attributes:
        gpus: NVIDIA GPUs the driver reports.
        cuda: whether onnxruntime's CUDA provider library loads (CUDA runtime, cuBLAS, cuDNN).
        tensorrt: whether onnxruntime's TensorRT provider library loads (also needs TensorRT).
        cuda_reason / tensorrt_reason: why not, in the loader's words ("" when available).
    """

    gpus: int
    cuda: bool
    tensorrt: bool
    cuda_reason: str = ""
    tensorrt_reason: str = ""


_PROBE: ProviderProbe | None = None


def probe_providers(refresh: bool = False) -> ProviderProbe:
    """Find out quietly which onnxruntime execution providers work here (cached per process)."""
    global _PROBE
    if _PROBE is not None and not refresh:
        return _PROBE
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    gpus = cuda_gpu_count()
    if gpus == 0:
        reason = "no NVIDIA GPU or driver found"
        _PROBE = ProviderProbe(0, False, False, reason, reason)
        return _PROBE
    if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* pip wheels, when installed
        with contextlib.suppress(Exception), open(os.devnull, "w") as devnull, \
                contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
            ort.preload_dlls()
    _preload_tensorrt_wheel()
    capi = _ort_capi_dir()
    ext = ".dll" if sys.platform == "win32" else ".so"
    prefix = "" if sys.platform == "win32" else "lib"

    def check(provider: str, libname: str) -> str:
        if provider not in available:
            return f"this onnxruntime build has no {provider}"
        return _try_load(capi / f"{prefix}onnxruntime_providers_{libname}{ext}") or ""

    cuda_reason = check(CUDA, "cuda")
    trt_reason = check(TRT, "tensorrt")
    _PROBE = ProviderProbe(gpus, not cuda_reason, not trt_reason, cuda_reason, trt_reason)
    return _PROBE


def tensorrt_install_hint(probe: ProviderProbe) -> str:
    """One line saying what to install so that TensorRT can run here."""
    if probe.gpus == 0:
        return ("TensorRT needs an NVIDIA GPU with its driver, and none was found "
                "(run `flambient export --trt` on the GPU workstation, or export without --trt)")
    return (f"TensorRT is not usable here ({probe.tensorrt_reason}): install TensorRT 10 and the CUDA "
            "libraries onnxruntime-gpu was built for (e.g. `pip install tensorrt`) and put their lib "
            "folders on LD_LIBRARY_PATH (PATH on Windows)")


def _device_id(device: str | None) -> int:
    dev = parse_device(device)
    return int(dev.split(":", 1)[1]) if ":" in dev else 0


def choose_providers(device: str | None = None, *, trt_cache: str | Path | None = None, fp16: bool = False,
                     spec: ModelSpec | None = None, ctx_dims: list[int] | None = None,
                     require_trt: bool = False) -> list[Any]:
    """Provider list for an onnxruntime session, best first: TensorRT, CUDA, CPU.

    Args:
        device: ``None``/``"auto"`` (best available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        trt_cache: folder for TensorRT engines (built once, reused by later sessions).
        fp16: let TensorRT build fp16 engines.
        spec, ctx_dims: the model's spec and context shape (without batch), for the TensorRT
            optimisation profile (:func:`trt_profile_shapes`).
        require_trt: raise :class:`DeviceError` (with what to install) when TensorRT is unusable.
    """
    dev = parse_device(device)  # the one device grammar (DeviceError for anything else)
    probe = probe_providers()
    if require_trt and (dev == "cpu" or not probe.tensorrt):
        raise DeviceError(tensorrt_install_hint(probe))
    if dev == "cpu":
        return [CPU]
    if dev.startswith("cuda") and not probe.cuda:
        raise DeviceError(f"CUDA is not usable by onnxruntime here ({probe.cuda_reason})",
                          hint="install the NVIDIA driver and the CUDA/cuDNN libraries onnxruntime-gpu needs, "
                               "or run on the CPU (--devices cpu)")
    providers: list[Any] = []
    dev_id = _device_id(device)
    if probe.tensorrt:
        opts: dict[str, Any] = {"device_id": dev_id, "trt_fp16_enable": bool(fp16)}
        if trt_cache is not None:
            trt_cache = _writable_cache(Path(trt_cache))
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache),
                        trt_timing_cache_enable=True, trt_timing_cache_path=str(trt_cache))
        if spec is not None:
            opts.update(trt_profile_shapes(spec, ctx_dims))
        providers.append((TRT, opts))
    if probe.cuda:
        providers.append((CUDA, {"device_id": dev_id}))
    providers.append(CPU)
    return providers


def _writable_cache(folder: Path) -> Path:
    """``folder``, created; or a per-user temporary one when the model's folder is read-only."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    import hashlib
    import tempfile

    alt = Path(tempfile.gettempdir()) / "flambient-trt-cache" / hashlib.sha1(str(folder).encode()).hexdigest()[:12]
    alt.mkdir(parents=True, exist_ok=True)
    log.warning("%s is not writable; TensorRT engines go to %s", folder, alt)
    return alt


def trt_profile_shapes(spec: ModelSpec, ctx_dims: list[int] | None = None) -> dict[str, str]:
    """TensorRT optimisation profile of the apply graph (batch 1).

    The tile input ``x`` spans sides from 16 (rounded up to ``size_multiple``) to
    :data:`TRT_MAX_SIDE`, tuned for :data:`TRT_OPT_SIDE`; ``ctx_dims`` (the context's
    non-batch dimensions) adds ``ctx``, since onnxruntime wants every dynamic input profiled.
    """
    m = max(1, spec.size_multiple)
    lo = m * max(1, -(-16 // m))
    opt = TRT_OPT_SIDE - TRT_OPT_SIDE % m
    hi = TRT_MAX_SIDE - TRT_MAX_SIDE % m
    c = spec.in_channels
    ctx = (",ctx:" + "x".join(str(d) for d in [1, *ctx_dims])) if ctx_dims else ""
    return {"trt_profile_min_shapes": f"x:1x{c}x{lo}x{lo}{ctx}",
            "trt_profile_opt_shapes": f"x:1x{c}x{opt}x{opt}{ctx}",
            "trt_profile_max_shapes": f"x:1x{c}x{hi}x{hi}{ctx}"}


def make_session(path: str | Path | bytes, providers: list[Any], threads: int | None = None) -> Any:
    """An onnxruntime InferenceSession on ``path`` (or serialized model bytes) with sensible threading."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or default_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # No busy-waiting between ops: process decodes and encodes on other threads meanwhile, and
    # spinning threads steal their CPU (and everyone's, on a shared machine).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(path if isinstance(path, bytes) else str(path), sess_options=so,
                                    providers=providers)
    except Exception as exc:
        first = first_line(exc, 200)
        where = None if isinstance(path, bytes) else path
        raise ModelError(f"onnxruntime cannot load this model ({first})", where,
                         "re-export it with `flambient export`") from None


def onnx_model_path(model: str | Path) -> Path:
    """The exported ``model.onnx`` of ``model``: an ``.onnx`` file, a model folder or a shipped name.

    For a folder or a name the export is ``model.onnx`` beside the model's ``model.pt``.
    Raises :class:`ModelError` saying how to export when there is none.
    """
    from .nets.registry import resolve_model_path

    p = Path(model)
    if p.suffix.lower() == ".onnx":
        if not p.is_file():
            raise ModelError("ONNX file not found", p, "export it first with `flambient export MODEL --out PATH`")
        return p
    found = p / "model.onnx" if p.is_dir() else resolve_model_path(model)
    if found.suffix.lower() != ".onnx":
        found = found.parent / "model.onnx"
    if not found.is_file():
        raise ModelError("model has no ONNX export", found.parent, f"run `flambient export {model}` first")
    return found


# ----------------------------------------------------------------------------- metadata


def _load_proto(path: str | Path) -> Any:
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelError("ONNX file not found", p, "export it first with `flambient export MODEL`")
    try:
        return onnx.load(str(p), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"not a readable ONNX file ({str(exc)[:120]})", p) from None


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file, without creating a session."""
    return {prop.key: prop.value for prop in _load_proto(path).metadata_props}


def input_dims(path: str | Path) -> dict[str, list[int | str]]:
    """Dimensions of each graph input of an ONNX file (ints, or names for dynamic axes)."""
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in _load_proto(path).graph.input}


def spec_from_metadata(props: dict[str, str], path: str | Path) -> ModelSpec:
    """Rebuild the :class:`ModelSpec` stored by the exporter; :class:`ModelError` when absent."""
    if props.get("flambient.format") != ONNX_FORMAT:
        raise ModelError("not a flambient ONNX export (metadata flambient.format missing)", path,
                         "export the model with `flambient export`")
    if int(props.get("flambient.format_version", "0")) > ONNX_FORMAT_VERSION:
        raise ModelError("ONNX export is from a newer flambient", path, "upgrade flambient")
    try:
        raw = json.loads(props["flambient.spec"])
        known = {f for f in ModelSpec.__dataclass_fields__}
        return ModelSpec(**{k: v for k, v in raw.items() if k in known})
    except Exception as exc:
        raise ModelError(f"ONNX export has a broken model spec ({str(exc)[:100]})", path,
                         "re-export it with `flambient export`") from None


# ----------------------------------------------------------------------------- backend


class OnnxBackend:
    """The ``Backend`` protocol of :mod:`flambient.inference` on onnxruntime sessions.

    Arrays in and out are numpy float32 NCHW; colour spaces as in the registry's interface
    (linear stack in, sRGB signal values in [0, 1] out).

    Attributes:
        spec: the family's spec, read from the export's metadata.
        card: the model card stored at export (family, config, training meta, parity).
        provider: the execution provider the apply graph actually runs on.
        path: the apply graph's path.
    """

    name = "onnx"

    @staticmethod
    def device_for(device: Device, devices: Sequence[Device], requested: str) -> str:
        """The device rule of onnxruntime: GPUs are discovered through torch, and a CPU-only torch
        beside onnxruntime-gpu sees none; with ``--devices auto`` and no GPU in the pool,
        onnxruntime picks its own provider (TensorRT, CUDA, CPU) instead of being pinned to the CPU."""
        if requested == "auto" and not any(d.is_cuda for d in devices):
            return "auto"
        return device.name

    def __init__(self, path: str | Path, device: str | None = None, *, threads: int | None = None,
                 trt_cache: str | Path | None = None, require_trt: bool = False) -> None:
        """Open ``path`` (an apply graph ``*.onnx``) and the context graph beside it.

        Args:
            path: the exported ``model.onnx``.
            device: ``None``/``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
            threads: onnxruntime intra-op threads (default: :func:`default_threads`).
            trt_cache: TensorRT engine cache (default: ``trt_cache/`` beside the model).
            require_trt: fail with :class:`DeviceError` unless TensorRT runs it.
        """
        self.path = Path(path)
        props = read_metadata(self.path)
        self.spec: ModelSpec = spec_from_metadata(props, self.path)
        if props.get("flambient.role") != "apply":
            raise ModelError("this is a flambient context graph, not the model", self.path,
                             "pass the model.onnx beside it")
        self.card: dict[str, Any] = json.loads(props.get("flambient.card", "{}"))
        ctx_name = props.get("flambient.context_graph", context_path_for(self.path).name)
        self.context_path = self.path.parent / ctx_name
        if not self.context_path.is_file():
            raise ModelError(f"context graph {ctx_name} is missing beside the model", self.path,
                             "keep the .context.onnx file next to the .onnx file, or re-export")
        self.files: tuple[Path, ...] = (self.path, self.context_path)
        fp16 = bool(self.card.get("fp16", False))
        cache = Path(trt_cache) if trt_cache is not None else default_trt_cache(self.path)
        ctx_in = input_dims(self.path).get("ctx", [])
        ctx_dims = [d for d in ctx_in[1:] if isinstance(d, int)] if len(ctx_in) > 1 else None
        providers = choose_providers(device, trt_cache=cache, fp16=fp16, spec=self.spec, ctx_dims=ctx_dims,
                                     require_trt=require_trt)
        self._apply = make_session(self.path, providers, threads)
        # The context graph is tiny and runs once per image: no TensorRT profile is needed.
        ctx_providers = [p for p in providers if (p[0] if isinstance(p, tuple) else p) != TRT]
        self._context = make_session(self.context_path, ctx_providers, threads)
        self.provider: str = self._apply.get_providers()[0]
        if require_trt and self.provider != TRT:
            raise DeviceError(tensorrt_install_hint(probe_providers()))
        self._apply_inputs = {i.name for i in self._apply.get_inputs()}
        self._context_inputs = [i.name for i in self._context.get_inputs()]
        log.debug("onnx backend %s on %s", self.path, self.provider)

    def context(self, low: np.ndarray) -> np.ndarray:
        """Context of the N x 13 x s x s low-resolution stack (s = ``spec.context_size``)."""
        low = np.ascontiguousarray(low, dtype=np.float32)
        s = self.spec.context_size
        if low.ndim != 4 or low.shape[1] != self.spec.in_channels or low.shape[2:] != (s, s):
            raise ModelError(f"context input must be N x {self.spec.in_channels} x {s} x {s}, got {low.shape}",
                             self.context_path)
        with self._oom():
            return self._context.run(None, {self._context_inputs[0]: low})[0]

    def fingerprint(self) -> str:
        """sha256 over the apply and context graphs' hashes."""
        return files_fingerprint(self.files)

    def bind_context(self, ctx: np.ndarray) -> np.ndarray:
        """The context as the contiguous float32 array onnxruntime is fed with (once per image)."""
        return np.ascontiguousarray(ctx, dtype=np.float32)

    def apply(self, x: np.ndarray, ctx: np.ndarray, pos: np.ndarray | Any) -> np.ndarray:
        """sRGB N x 3 x h x w of the N x 13 x h x w tile ``x`` at ``pos`` = [y0, x0, H, W]."""
        feeds: dict[str, np.ndarray] = {
            "x": np.ascontiguousarray(x, dtype=np.float32),
            "ctx": self.bind_context(ctx),
            "pos": np.asarray(pos, dtype=np.float32).reshape(4),
        }
        # The tracer drops inputs a family never reads (e.g. pos for per-pixel families).
        with self._oom():
            return self._apply.run(None, {k: v for k, v in feeds.items() if k in self._apply_inputs})[0]

    @contextlib.contextmanager
    def _oom(self) -> Iterator[None]:
        """Raise :class:`BackendOOM` for onnxruntime's allocation failures (it has no typed error for
        them: its RuntimeException says "Failed to allocate memory" or "out of memory")."""
        try:
            yield
        except MemoryError as exc:
            raise BackendOOM(self.describe(), exc) from exc
        except Exception as exc:
            text = str(exc).lower()
            if "failed to allocate memory" in text or "out of memory" in text:
                raise BackendOOM(self.describe(), exc) from exc
            raise

    def describe(self) -> str:
        """One line for logs: model, family and provider."""
        return f"{self.path.name} ({self.spec.family}, onnxruntime {self.provider})"
