"""Tests of ONNX export, its parity check, the onnx backend and the TensorRT refusal (CPU only)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from flambient.cli import main
from flambient.errors import ConfigError, DeviceError, ModelError
from flambient.export import (FP16_TOLERANCE, FP32_TOLERANCE, check_parity, export_model, parity_sizes,
                              random_stack, trace_graphs)
from flambient.nets import registry
from flambient.nets.registry import FlambientNet, ModelSpec, create_model, encode_stack, families, save_model
from flambient.onnx_backend import (CPU, OnnxBackend, ProviderProbe, choose_providers, context_path_for,
                                    onnx_model_path, probe_providers, read_metadata, trt_profile_shapes)

# ----------------------------------------------------------------------------- test families

PROBE_SPEC = ModelSpec(family="_export_probe", description="test: global gains + position ramp",
                       context_size=32, size_multiple=4)
REFUSED_SPEC = ModelSpec(family="_export_refused", description="test: not exportable", context_size=16,
                         exportable=False, export_note="uses a custom CUDA op")
FP32ONLY_SPEC = ModelSpec(family="_export_fp32only", description="test: unsafe in fp16", context_size=16,
                          half_precision=False)
BROKEN_SPEC = ModelSpec(family="_export_broken", description="test: pos read as a Python number",
                        context_size=16)


class _Probe(FlambientNet):
    """Context: pooled conv features -> 6 numbers; apply: conv body, gains from ctx, a pos-dependent ramp."""

    spec = PROBE_SPEC

    def __init__(self, width: int = 8) -> None:
        super().__init__(width=width)
        self.enc = nn.Sequential(nn.Conv2d(13, width, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(width, 6)
        self.body = nn.Sequential(nn.Conv2d(13, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3, 1))

    def context(self, low: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(encode_stack(low)).flatten(1))

    def apply(self, x: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        yy = (torch.arange(h, dtype=x.dtype) + pos[0]) / pos[2]
        xx = (torch.arange(w, dtype=x.dtype) + pos[1]) / pos[3]
        ramp = yy.view(1, 1, -1, 1) * xx.view(1, 1, 1, -1)
        z = self.body(encode_stack(x)) * (1 + ctx[:, :3, None, None]) + ctx[:, 3:, None, None] + 2 * ramp
        return torch.sigmoid(z)


class _Refused(_Probe):
    spec = REFUSED_SPEC


class _Fp32Only(_Probe):
    spec = FP32ONLY_SPEC


class _Broken(_Probe):
    """Reads pos[0] as a Python float: the tracer freezes it, so other tile positions differ."""

    spec = BROKEN_SPEC

    def apply(self, x: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return super().apply(x, ctx, pos) * 0.5 + 0.5 * (float(pos[0]) / float(pos[2]))


@pytest.fixture(scope="module", autouse=True)
def test_families():
    """Register the test families for this module only."""
    pairs = ((PROBE_SPEC, _Probe), (REFUSED_SPEC, _Refused), (BROKEN_SPEC, _Broken), (FP32ONLY_SPEC, _Fp32Only))
    for spec, cls in pairs:
        registry.register(cls)
    yield
    for spec, _ in pairs:
        registry._REGISTRY.pop(spec.family, None)


@pytest.fixture()
def probe_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    save_model(create_model("_export_probe"), tmp_path / "probe", {"trained_on": "nothing"})
    (tmp_path / "probe" / "model.yaml").write_text("name: probe\nmetrics: {psnr: 1.0}\n", encoding="utf-8")
    return tmp_path / "probe"


def _real_families() -> list[str]:
    return [name for name in families() if not name.startswith("_export_")]


# ----------------------------------------------------------------------------- every registered family


@pytest.mark.parametrize("family", _real_families())
def test_every_registered_family_exports_or_says_why(family: str, tmp_path: Path) -> None:
    spec = families()[family]
    torch.manual_seed(0)
    net = create_model(family)
    with torch.no_grad():  # leave the near-identity initialisation so every branch of the graph matters
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_model(net, tmp_path / family)
    if not spec.exportable:
        assert spec.export_note, f"{family} is not exportable but its spec gives no export_note"
        with pytest.raises(ModelError, match="cannot be exported"):
            export_model(tmp_path / family)
        return
    res = export_model(tmp_path / family, seed=0, sizes=parity_sizes(spec, small=True))
    assert res.onnx_path.is_file() and res.context_path.is_file()
    assert res.parity.ok and res.parity.max_abs <= FP32_TOLERANCE
    assert len(res.parity.cases) >= 3


# ----------------------------------------------------------------------------- export and parity


def test_export_writes_both_graphs_with_card_and_parity(probe_model: Path) -> None:
    res = export_model(probe_model, seed=1)
    assert res.onnx_path == probe_model / "model.onnx"
    assert res.context_path == probe_model / "model.context.onnx"
    assert res.parity.ok and res.parity.max_abs <= FP32_TOLERANCE
    sizes = {(c.batch, c.height, c.width) for c in res.parity.cases}
    assert len(sizes) >= 3 and any(b == 2 for b, _, _ in sizes)
    assert all(h % 4 == 0 and w % 4 == 0 for _, h, w in sizes)
    props = read_metadata(res.onnx_path)
    assert props["flambient.role"] == "apply"
    assert props["flambient.context_graph"] == "model.context.onnx"
    assert json.loads(props["flambient.spec"])["family"] == "_export_probe"
    card = json.loads(props["flambient.card"])
    assert card["meta"]["trained_on"] == "nothing"
    assert card["card"]["name"] == "probe"
    assert card["parity"]["max_abs"] == pytest.approx(res.parity.max_abs)
    assert read_metadata(res.context_path)["flambient.role"] == "context"


def test_apply_graph_has_dynamic_tile_size(probe_model: Path) -> None:
    import onnx

    res = export_model(probe_model, seed=2)
    x = next(i for i in onnx.load(str(res.onnx_path)).graph.input if i.name == "x")
    dims = [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim]
    assert dims[1] == 13 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))


def test_fp16_export_is_float16_and_within_its_tolerance(probe_model: Path, tmp_path: Path) -> None:
    import onnx

    res = export_model(probe_model, tmp_path / "half" / "m.onnx", fp16=True, seed=3)
    assert res.context_path == tmp_path / "half" / "m.context.onnx"
    inits = onnx.load(str(res.onnx_path)).graph.initializer
    assert inits and all(t.data_type == onnx.TensorProto.FLOAT16 for t in inits if t.dims)
    assert 0.0 < res.parity.max_abs <= FP16_TOLERANCE  # really fp16: not bit-equal, still close
    backend = OnnxBackend(res.onnx_path)
    assert backend.card["fp16"] is True


def test_parity_check_catches_a_graph_that_froze_the_tile_position(tmp_path: Path) -> None:
    torch.manual_seed(0)
    save_model(create_model("_export_broken"), tmp_path / "broken")
    with pytest.raises(ModelError, match="does not match torch"):
        export_model(tmp_path / "broken", seed=4)
    assert not list((tmp_path / "broken").glob("*.onnx"))  # nothing written on failure


def test_parity_check_reports_errors_of_a_wrong_graph(probe_model: Path) -> None:
    net = create_model("_export_probe").eval()
    other = create_model("_export_probe").eval()  # different random weights
    ctx_m, app_m = trace_graphs(other)
    rep = check_parity(net, ctx_m.SerializeToString(), app_m.SerializeToString(), tolerance=FP32_TOLERANCE, seed=0)
    assert not rep.ok and rep.max_abs > 1e-3 and rep.mean_abs > 0


def test_non_exportable_family_is_refused_with_its_reason(tmp_path: Path) -> None:
    save_model(create_model("_export_refused"), tmp_path / "refused")
    with pytest.raises(ModelError, match="uses a custom CUDA op"):
        export_model(tmp_path / "refused")


def test_fp16_is_refused_for_a_family_unsafe_in_half_precision(tmp_path: Path) -> None:
    save_model(create_model("_export_fp32only"), tmp_path / "f32")
    with pytest.raises(ModelError, match="half_precision=False"):
        export_model(tmp_path / "f32", fp16=True)
    assert export_model(tmp_path / "f32", seed=0).parity.ok  # fp32 is fine


def test_bad_opset_and_path_are_config_errors(probe_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="opset"):
        export_model(probe_model, opset=5)
    with pytest.raises(ConfigError, match=".onnx"):
        export_model(probe_model, tmp_path / "model.pt")


# ----------------------------------------------------------------------------- the onnx backend


def test_onnx_backend_matches_torch_on_tiles(probe_model: Path) -> None:
    res = export_model(probe_model, seed=5)
    backend = OnnxBackend(res.onnx_path, device="cpu")
    assert backend.provider == CPU and backend.spec == PROBE_SPEC
    net, _ = registry.load_model(probe_model)
    rng = np.random.default_rng(6)
    low = random_stack(1, 32, 32, rng)
    ctx = backend.context(low)
    with torch.no_grad():
        ctx_t = net.context(torch.from_numpy(low))
    assert np.abs(ctx - ctx_t.numpy()).max() <= FP32_TOLERANCE
    x = random_stack(1, 24, 36, rng)
    outs = []
    for pos in ([0, 0, 48, 72], [24, 36, 48, 72]):
        y = backend.apply(x, ctx, np.array(pos, np.float32))
        with torch.no_grad():
            y_t = net.apply(torch.from_numpy(x), ctx_t, torch.tensor(pos, dtype=torch.float32)).numpy()
        assert y.shape == (1, 3, 24, 36) and y.dtype == np.float32
        assert np.abs(y - y_t).max() <= FP32_TOLERANCE
        outs.append(y)
    assert np.abs(outs[0] - outs[1]).max() > 1e-3  # the position really reaches the graph


def test_onnx_matches_torch_on_the_real_flash_sets(shared_data: Path, tmp_path: Path) -> None:
    """The shipped default exported and run through the whole ``process`` inference path
    (``infer_image``, tiles) gives the torch backend's finals on every real flash set of
    ../shared/data (through ``ingest`` where they carry EXIF, as ``bench_export.py --real``
    does): random parity inputs rarely reach the clipped pixels where the frame merge, its
    caps and the guards act, these sets do (set03's windows, the frobisher bracket)."""
    from conftest import load_benchmark

    from flambient.inference import infer_image, load_backend

    sets = load_benchmark("bench_real").load_flash_sets(shared_data, 256, tmp_path / "sets")
    assert len(sets) >= 3
    res = export_model("default", tmp_path / "onnx" / "model.onnx", seed=0)
    onnx, torch_backend = OnnxBackend(res.onnx_path, device="cpu"), load_backend("default")
    for fs in sets:
        a = infer_image(torch_backend, fs.stack, tile=128)
        b = infer_image(onnx, fs.stack, tile=128)
        assert a.shape == b.shape == fs.stack.shape[:2] + (3,)
        assert float(np.abs(a - b).max()) <= 1e-4, fs.name


def test_onnx_backend_errors_are_model_errors(probe_model: Path, tmp_path: Path) -> None:
    res = export_model(probe_model, seed=7)
    with pytest.raises(ModelError, match="context graph"):
        OnnxBackend(res.context_path)
    with pytest.raises(ModelError, match="not found"):
        OnnxBackend(tmp_path / "nothing.onnx")
    plain = tmp_path / "plain.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(nn.Conv2d(13, 3, 1), (torch.zeros(1, 13, 4, 4),), str(plain), dynamo=False)
    with pytest.raises(ModelError, match="not a flambient ONNX export"):
        OnnxBackend(plain)
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "model.onnx").write_bytes(res.onnx_path.read_bytes())
    with pytest.raises(ModelError, match="missing"):
        OnnxBackend(lone / "model.onnx")
    with pytest.raises(ModelError, match="must be N x 13"):
        OnnxBackend(res.onnx_path).context(np.zeros((1, 13, 8, 8), np.float32))


def test_onnx_model_path_finds_the_export_beside_a_model(probe_model: Path, monkeypatch) -> None:
    with pytest.raises(ModelError, match="run `flambient export"):
        onnx_model_path(probe_model)
    res = export_model(probe_model, seed=8)
    assert onnx_model_path(probe_model) == res.onnx_path
    assert onnx_model_path(probe_model / "model.pt") == res.onnx_path
    assert onnx_model_path(res.onnx_path) == res.onnx_path
    monkeypatch.setenv("FLAMBIENT_MODELS", str(probe_model.parent))
    assert onnx_model_path("probe") == res.onnx_path


def test_provider_choice_falls_back_to_cpu_and_names_it() -> None:
    assert choose_providers("cpu") == [CPU]
    providers = choose_providers(None)
    assert providers[-1] == CPU
    probe = probe_providers()
    names = [p[0] if isinstance(p, tuple) else p for p in providers]
    assert ("TensorrtExecutionProvider" in names) == probe.tensorrt
    assert ("CUDAExecutionProvider" in names) == probe.cuda
    if not probe.cuda:
        with pytest.raises(DeviceError, match="CUDA"):
            choose_providers("cuda:0")
    with pytest.raises(DeviceError, match="unknown device"):
        choose_providers("tpu")


def test_onnx_backend_matches_torch_backend_through_infer_image(probe_model: Path) -> None:
    inference = pytest.importorskip("flambient.inference")
    export_model(probe_model, seed=9)
    torch_b = inference.load_backend(probe_model, "torch", "cpu")
    onnx_b = inference.load_backend(probe_model, "onnx", "cpu")
    assert isinstance(onnx_b, OnnxBackend) and onnx_b.provider == CPU
    assert isinstance(inference.load_backend(probe_model / "model.onnx", "torch", "cpu"), OnnxBackend)
    stack = random_stack(1, 90, 131, np.random.default_rng(10))[0].transpose(1, 2, 0).copy()
    ref = inference.infer_image(torch_b, stack, tile=48)
    out = inference.infer_image(onnx_b, stack, tile=48)
    assert out.shape == ref.shape == (90, 131, 3)
    assert np.abs(out - ref).max() <= FP32_TOLERANCE


def test_gpu_provider_options_when_tensorrt_and_cuda_load(tmp_path: Path, monkeypatch) -> None:
    import flambient.onnx_backend as ob

    monkeypatch.setattr(ob, "_PROBE", ProviderProbe(2, True, True))
    providers = choose_providers("cuda:1", trt_cache=tmp_path / "cache", fp16=True, spec=PROBE_SPEC,
                                 ctx_dims=[6])
    assert [p[0] if isinstance(p, tuple) else p for p in providers] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]
    trt_opts, cuda_opts = providers[0][1], providers[1][1]
    assert trt_opts["device_id"] == 1 and cuda_opts["device_id"] == 1 and trt_opts["trt_fp16_enable"]
    assert trt_opts["trt_engine_cache_enable"] and Path(trt_opts["trt_engine_cache_path"]).is_dir()
    assert trt_opts["trt_profile_min_shapes"] == "x:1x13x16x16,ctx:1x6"
    assert trt_opts["trt_profile_opt_shapes"] == "x:1x13x1024x1024,ctx:1x6"
    assert trt_opts["trt_profile_max_shapes"] == "x:1x13x4096x4096,ctx:1x6"
    odd = trt_profile_shapes(ModelSpec(family="odd", description="", size_multiple=24))
    assert odd["trt_profile_min_shapes"] == "x:1x13x24x24" and odd["trt_profile_max_shapes"] == "x:1x13x4080x4080"
    assert choose_providers("cpu") == [CPU]


# ----------------------------------------------------------------------------- TensorRT refusal


def test_trt_without_gpu_is_one_clear_line_and_exit_2(probe_model: Path, capsys, monkeypatch) -> None:
    import flambient.onnx_backend as ob

    monkeypatch.setattr(ob, "_PROBE", ProviderProbe(0, False, False, "no NVIDIA GPU or driver found",
                                                    "no NVIDIA GPU or driver found"))
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # as if not installed
    assert main(["export", str(probe_model), "--trt"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "NVIDIA GPU" in err and "--trt" in err
    assert not (probe_model / "model.onnx").exists()  # refused before any work


def test_trt_with_gpu_but_no_tensorrt_says_what_to_install(probe_model: Path, monkeypatch) -> None:
    import flambient.onnx_backend as ob

    monkeypatch.setattr(ob, "_PROBE", ProviderProbe(1, True, False, "", "libnvinfer.so.10: cannot open shared "
                                                                         "object file"))
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    with pytest.raises(DeviceError, match="install TensorRT") as info:
        export_model(probe_model, trt=True)
    assert "libnvinfer" in str(info.value) and "\n" not in str(info.value)


def test_trt_on_this_machine_fails_cleanly_unless_available(probe_model: Path) -> None:
    probe = probe_providers()
    try:
        import tensorrt  # noqa: F401
        have_api = True
    except ImportError:
        have_api = False
    if probe.tensorrt or (have_api and probe.gpus):
        pytest.skip("TensorRT is usable here; the refusal cannot be observed")
    with pytest.raises(DeviceError):
        export_model(probe_model, trt=True)


class _FakeTensorRT:
    """Just enough of the TensorRT 10 Python API to record what the engine builder asks for."""

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    class BuilderFlag:
        FP16 = "FP16"

    class _Input:
        def __init__(self, name: str, shape: list[int]) -> None:
            self.name, self.shape = name, shape

    class _Network:
        def __init__(self) -> None:
            self.inputs: list = []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int):
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network, logger) -> None:
            self.network, self.num_errors = network, 0

        def parse(self, data: bytes) -> bool:
            import onnx

            model = onnx.load_from_string(data)
            for i in model.graph.input:
                dims = [d.dim_value if d.dim_value else -1 for d in i.type.tensor_type.shape.dim]
                self.network.inputs.append(_FakeTensorRT._Input(i.name, dims))
            return True

    class _Profile:
        def __init__(self) -> None:
            self.shapes: dict = {}

        def set_shape(self, name, lo, opt, hi) -> None:
            self.shapes[name] = (lo, opt, hi)

    class _Config:
        def __init__(self) -> None:
            self.flags: list = []
            self.profiles: list = []

        def set_flag(self, flag) -> None:
            self.flags.append(flag)

        def add_optimization_profile(self, p) -> None:
            self.profiles.append(p)

    class Builder:
        built: list = []

        def __init__(self, logger) -> None:
            pass

        def create_network(self, flags: int):
            return _FakeTensorRT._Network()

        def create_builder_config(self):
            return _FakeTensorRT._Config()

        def create_optimization_profile(self):
            return _FakeTensorRT._Profile()

        def build_serialized_network(self, network, config):
            _FakeTensorRT.Builder.built.append((config.flags, config.profiles[0].shapes))
            return b"engine"


def test_trt_engines_through_the_tensorrt_api(probe_model: Path, monkeypatch) -> None:
    import flambient.export as ex

    monkeypatch.setitem(__import__("sys").modules, "tensorrt", _FakeTensorRT)
    monkeypatch.setattr(ex, "cuda_gpu_count", lambda: 1)
    _FakeTensorRT.Builder.built.clear()
    res = export_model(probe_model, probe_model / "m.fp16.onnx", fp16=True, trt=True, seed=11)
    assert res.trt_method == "tensorrt"
    assert res.trt_files == [probe_model / "m.fp16.engine", probe_model / "m.fp16.context.engine"]
    assert all(f.read_bytes() == b"engine" for f in res.trt_files)
    (apply_flags, apply_shapes), (_, ctx_shapes) = _FakeTensorRT.Builder.built
    assert apply_flags == ["FP16"]
    assert apply_shapes["x"] == ((1, 13, 16, 16), (1, 13, 1024, 1024), (1, 13, 4096, 4096))
    assert apply_shapes["ctx"][0] == (1, 6) and "pos" not in apply_shapes
    assert ctx_shapes["low"] == ((1, 13, 32, 32),) * 3


# ----------------------------------------------------------------------------- CLI


def test_cli_export_writes_and_reports(probe_model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "exports" / "probe.onnx"
    assert main(["export", str(probe_model), "--onnx", str(out), "--opset", "18"]) == 0
    err = capsys.readouterr().err
    assert "parity ok" in err and "max abs error" in err
    assert out.is_file() and context_path_for(out).is_file()
    assert json.loads(read_metadata(out)["flambient.card"])["opset"] == 18


def test_cli_export_errors_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["export", str(tmp_path / "no_such_model")]) == 2
    assert main(["export", str(tmp_path), "--opset", "99"]) == 2
    assert "error" in capsys.readouterr().err
