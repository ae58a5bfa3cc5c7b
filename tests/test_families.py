"""One test set over every registered model family (timm-style): a new family is tested automatically.

Per family: the contract (spec declared once on the class, every hook with the one signature),
forward shape/range on odd sizes, backward, one optimiser step, tiled versus whole agreement
within the spec's ``tile_tolerance`` (the one net-level tiling test; the runner's is in
``test_inference_tiling.py``), save/load round trip and ONNX export parity (for exportable families).
Images are tiny generated stacks, so the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch

from flambient.colour import linear_to_srgb
from flambient.errors import ConfigError, ModelError
from flambient.nets.layers import coordinate_noise
from flambient.nets.registry import (
    FlambientNet,
    create_model,
    downsample,
    families,
    full_pos,
    load_model,
    save_model,
)
from flambient.stack import HAS_FLASH, STACK_CHANNELS

from conftest import make_stack, perturbed

FAMILIES = sorted(families())


def _round_up(v: int, m: int) -> int:
    return int(math.ceil(v / m) * m)


def target_of(x: torch.Tensor) -> torch.Tensor:
    """A fixed sRGB target: mean of ambient and (where present) flash, through the sRGB curve."""
    lin = torch.where(x[:, HAS_FLASH : HAS_FLASH + 1] > 0.5, 0.5 * (x[:, 0:3] + x[:, 3:6]), x[:, 0:3])
    return linear_to_srgb(lin.clamp(0, 1)).float().clamp(0, 1)


def loss_of(net: FlambientNet, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The family's own training loss when it has one, else L1 on forward."""
    special = net.training_loss(x, target, ctx=net.context_of(x), pos=full_pos(x))
    return special if special is not None else (net(x) - target).abs().mean()


def odd_size(spec_multiple: int) -> tuple[int, int]:
    return _round_up(37, spec_multiple), _round_up(45, spec_multiple)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster, and immune to busy shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_registry_has_the_four_families() -> None:
    assert {"bilateral", "lut", "nafnet", "diffusion"} <= set(FAMILIES)


def test_spec_is_consistent(family: str) -> None:
    net = create_model(family)
    spec = net.spec
    assert spec.family == family and spec.in_channels == STACK_CHANNELS
    assert spec.size_multiple >= 1 and spec.overlap % spec.size_multiple == 0
    if spec.tile_exact:
        assert spec.overlap == 0
    if not spec.exportable:
        assert spec.export_note
    assert family == "diffusion" or net.training_loss(make_stack(1, 8, 8), torch.zeros(1, 3, 8, 8)) is None
    ctx_params = {id(p) for p in net.context_parameters()}
    assert ctx_params and ctx_params <= {id(p) for p in net.parameters()}


def test_contract_spec_declared_once_and_hooks_have_one_signature(family: str) -> None:
    """timm-style contract: what the runner, trainer and exporter rely on, for every family."""
    import dataclasses
    import inspect

    from flambient.nets import registry

    cls = type(create_model(family))
    spec = families()[family]
    assert cls.spec is spec and isinstance(spec, registry.ModelSpec)  # the class attribute IS the registry's spec
    assert {f.name for f in dataclasses.fields(spec)} >= {"tile_tolerance", "tile_exact", "overlap", "size_multiple"}
    assert 0.0 < spec.tile_tolerance <= (1.0 / 255.0 if spec.tile_exact else 1e-2)
    assert spec.context_size >= 16 and spec.style_lr > 0 and spec.description
    for hook in ("training_loss", "regulariser", "style_parameters", "context_parameters",
                 "context_features", "context_from"):
        base = inspect.signature(getattr(FlambientNet, hook))
        own = inspect.signature(getattr(cls, hook))
        assert [(p.name, p.kind) for p in own.parameters.values()] == \
            [(p.name, p.kind) for p in base.parameters.values()], f"{family}.{hook}{own} != {base}"
    net = perturbed(family).train()
    m = spec.size_multiple
    x = make_stack(2, _round_up(16, m), _round_up(24, m))
    ctx = net.context_of(x)
    loss = net.training_loss(x, target_of(x), ctx=ctx, pos=full_pos(x))
    assert loss is None or (loss.ndim == 0 and torch.isfinite(loss))
    for reg in (net.regulariser(None), net.regulariser(ctx)):
        assert reg is None or (reg.ndim == 0 and torch.isfinite(reg))
    style = {id(p) for p in net.style_parameters()}
    assert style and style <= {id(p) for p in net.parameters()}
    feats = net.context_features(downsample(x, spec.context_size))
    with torch.no_grad():
        low = downsample(x, spec.context_size)
        assert torch.allclose(net.context_from(low, feats), net.context(low), atol=1e-6)


def test_forward_shape_and_range(family: str) -> None:
    net = perturbed(family)
    h, w = odd_size(net.spec.size_multiple)
    with torch.no_grad():
        y = net(make_stack(2, h, w))
    assert y.shape == (2, 3, h, w) and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert y.std() > 1e-3  # not a constant image


def test_backward_reaches_context_and_apply(family: str) -> None:
    net = perturbed(family).train()
    h, w = odd_size(net.spec.size_multiple)
    x = make_stack(2, h, w)
    loss_of(net, x, target_of(x)).backward()
    grads = {id(p): p.grad for p in net.parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    nonzero = {k for k, g in grads.items() if g is not None and g.abs().sum() > 0}
    ctx_ids = {id(p) for p in net.context_parameters()}
    assert nonzero & ctx_ids, "no gradient reaches the context branch"
    apply_ids = set(grads) - ctx_ids
    if apply_ids:
        assert nonzero & apply_ids, "no gradient reaches the apply branch"
    assert len(nonzero) >= 0.9 * len(grads), f"only {len(nonzero)}/{len(grads)} parameters get gradients"


def test_one_optimiser_step_reduces_loss(family: str) -> None:
    net = perturbed(family, scale=0.01).train()
    h, w = odd_size(net.spec.size_multiple)
    x = make_stack(2, h, w, seed=3)
    t = target_of(x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def fixed_loss() -> torch.Tensor:
        torch.manual_seed(123)  # same noise/gamma draw for stochastic losses
        return loss_of(net, x, t)

    before = fixed_loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = fixed_loss()
    assert after.item() < before.item()


def tiled_apply(net: FlambientNet, x: torch.Tensor) -> torch.Tensor:
    """2x2 tiles with the family's overlap: context once on the whole image, apply per tile, crop and paste."""
    spec = net.spec
    n, _, big_h, big_w = x.shape
    ctx = net.context_of(x)
    m, ov = spec.size_multiple, spec.overlap
    cy, cx = _round_up(big_h // 2, m), _round_up(big_w // 2, m)
    out = torch.zeros(n, 3, big_h, big_w)
    for y0, y1 in ((0, cy), (cy, big_h)):
        for x0, x1 in ((0, cx), (cx, big_w)):
            ty0, ty1 = max(0, y0 - ov), min(big_h, y1 + ov)
            tx0, tx1 = max(0, x0 - ov), min(big_w, x1 + ov)
            pos = torch.tensor([float(ty0), float(tx0), float(big_h), float(big_w)])
            tile = net.apply(x[:, :, ty0:ty1, tx0:tx1], ctx, pos)
            out[:, :, y0:y1, x0:x1] = tile[:, :, y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0]
    return out


def test_tiled_matches_whole(family: str) -> None:
    net = perturbed(family)
    spec = net.spec
    m = spec.size_multiple
    h, w = _round_up(2 * spec.overlap + 41, m) + m, _round_up(2 * spec.overlap + 47, m)
    x = make_stack(1, h, w, seed=5)
    with torch.no_grad():
        whole = net(x)
        tiled = tiled_apply(net, x)
    diff = (whole - tiled).abs().max().item()
    bound = spec.tile_tolerance
    assert diff < bound, f"{family}: tiled differs from whole by {diff:.2e} (bound {bound:.2e})"


def test_save_load_round_trip(family: str, tmp_path) -> None:
    net = perturbed(family)
    h, w = odd_size(net.spec.size_multiple)
    x = make_stack(1, h, w)
    save_model(net, tmp_path / "m", extra={"note": "test"})
    loaded, meta = load_model(tmp_path / "m")
    assert type(loaded) is type(net) and loaded.config == net.config and meta["note"] == "test"
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))


def test_load_rejects_wrong_weights(family: str, tmp_path) -> None:
    net = create_model(family)
    save_model(net, tmp_path / "m")
    payload = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.ndim >= 2)
    payload["state_dict"][key] = torch.zeros(3, 1)
    torch.save(payload, tmp_path / "m" / "model.pt")
    with pytest.raises(ModelError):
        load_model(tmp_path / "m")


class _Context(torch.nn.Module):
    def __init__(self, net: FlambientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        return self.net.context(low)


class _Apply(torch.nn.Module):
    def __init__(self, net: FlambientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.net.apply(x, ctx, pos)


def _export(module: torch.nn.Module, args: tuple, names: list[str], dyn: dict) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=17, input_names=names,
                          output_names=["out"], dynamic_axes=dyn)
    return buf.getvalue()


@pytest.mark.slow
def test_onnx_export_matches_torch(family: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    net = perturbed(family)
    spec = net.spec
    if not spec.exportable:
        pytest.skip(f"{family} is not exportable: {spec.export_note}")
    m = spec.size_multiple
    x = make_stack(1, _round_up(21, m), _round_up(27, m))
    low = downsample(x, spec.context_size)
    with torch.no_grad():
        ctx = net.context(low)
    pos = torch.tensor([8.0, 16.0, 120.0, 100.0])
    ctx_onnx = _export(_Context(net), (low,), ["low"], {"low": {0: "n"}})
    app_onnx = _export(_Apply(net), (x, ctx, pos), ["x", "ctx", "pos"], {"x": {0: "n", 2: "h", 3: "w"}, "ctx": {0: "n"}})
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s_ctx = ort.InferenceSession(ctx_onnx, so, providers=["CPUExecutionProvider"])
    s_app = ort.InferenceSession(app_onnx, so, providers=["CPUExecutionProvider"])
    # Another batch size and tile size than the traced ones: the axes must really be dynamic.
    x2 = make_stack(2, _round_up(33, m), _round_up(19, m), seed=9)
    low2 = downsample(x2, spec.context_size)
    pos2 = torch.tensor([m * 2.0, m * 3.0, 200.0, 150.0])
    with torch.no_grad():
        ctx2 = net.context(low2)
        y2 = net.apply(x2, ctx2, pos2)
    ctx2_ort = s_ctx.run(None, {"low": low2.numpy()})[0]
    np.testing.assert_allclose(ctx2_ort, ctx2.numpy(), atol=1e-4, rtol=0)
    feeds = {"x": x2.numpy(), "ctx": ctx2.numpy(), "pos": pos2.numpy()}
    wanted = {i.name for i in s_app.get_inputs()}  # the tracer drops inputs a family never reads
    y2_ort = s_app.run(None, {k: v for k, v in feeds.items() if k in wanted})[0]
    np.testing.assert_allclose(y2_ort, y2.numpy(), atol=1e-4, rtol=0)


def test_bilateral_starts_as_encoded_ambient() -> None:
    """Identity initialisation: an untrained bilateral net outputs the sRGB-encoded ambient frame."""
    from flambient.nets.registry import encode_rgb

    net = create_model("bilateral").eval()
    x = make_stack(1, 23, 31)
    with torch.no_grad():
        y = net(x)
    expect = encode_rgb(x[:, 0:3]).clamp(0, 1)
    assert (y - expect).abs().max() < 0.02


def test_coordinate_noise_depends_on_absolute_position() -> None:
    x = torch.zeros(1, 13, 40, 50)
    full = coordinate_noise(x, full_pos(x), channels=3, seed=7)
    tile = coordinate_noise(x[:, :, 10:30, 20:50], torch.tensor([10.0, 20.0, 40.0, 50.0]), channels=3, seed=7)
    assert torch.equal(full[:, :, 10:30, 20:50], tile)
    other = coordinate_noise(x, full_pos(x), channels=3, seed=8)
    assert not torch.allclose(full, other)
    assert abs(full.mean().item()) < 0.1 and abs(full.std().item() - 1.0) < 0.1
    # neighbouring pixels and channels are uncorrelated
    assert abs(torch.corrcoef(torch.stack([full[0, 0, :, :-1].flatten(), full[0, 0, :, 1:].flatten()]))[0, 1]) < 0.1
    assert abs(torch.corrcoef(torch.stack([full[0, 0].flatten(), full[0, 1].flatten()]))[0, 1]) < 0.1


def test_lut_regulariser_penalises_rough_and_falling_luts() -> None:
    net = create_model("lut")
    base = net.regulariser()
    assert base.ndim == 0 and torch.isfinite(base)
    with torch.no_grad():
        net.luts[0] = net.luts[0].flip(2)  # red output now falls as red input rises
    falling = net.regulariser()
    with torch.no_grad():
        net.luts[0] = net.luts[0].flip(2) + torch.randn_like(net.luts[0]) * 0.2
    rough = net.regulariser()
    assert falling > base and rough > base
    ctx = net.context(torch.rand(2, 13, 256, 256))
    reg = net.regulariser(ctx)
    reg.backward()
    assert net.luts.grad is not None and net.luts.grad.abs().sum() > 0


def test_diffusion_sampler_is_deterministic_and_bounded() -> None:
    net = perturbed("diffusion")
    x = make_stack(1, 24, 28)
    pos = full_pos(x)
    with torch.no_grad():
        ctx = net.context_of(x)
        a, b = net.apply(x, ctx, pos), net.apply(x, ctx, pos)
    assert torch.equal(a, b)  # noise is a hash of coordinates, not a random draw
    eight = create_model("diffusion", steps=8)
    eight.load_state_dict(net.state_dict())
    with torch.no_grad():
        c = eight.eval().apply(x, ctx, pos)
    assert c.shape == a.shape and torch.isfinite(c).all() and not torch.equal(a, c)
    with pytest.raises(ConfigError, match="steps"):  # the project's config error, not a bare ValueError
        create_model("diffusion", steps=9)


def test_half_precision_claim(family: str) -> None:
    """Families that declare half_precision give fp16 results close to fp32 (checked on CPU)."""
    import copy

    net = perturbed(family)
    if not net.spec.half_precision:
        pytest.skip(f"{family} declares no fp16 support")
    m = net.spec.size_multiple
    x = make_stack(1, _round_up(40, m), _round_up(48, m), seed=2)
    with torch.no_grad():
        ref = net(x)
        half = copy.deepcopy(net).half()
        y = half.apply(x.half(), half.context_of(x.half()), full_pos(x)).float()
    assert torch.isfinite(y).all()
    assert (y - ref).abs().max() < 2.0 / 255.0


@pytest.mark.parametrize("name", ["bilateral", "lut"])
def test_chunked_inference_equals_one_pass(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-pixel families' row-chunked inference path (threaded for bilateral) changes nothing."""
    import importlib

    module = importlib.import_module(f"flambient.nets.{name}")
    net = perturbed(name)
    x = make_stack(2, 61, 47, seed=4)
    ctx = net.context_of(x).detach()
    pos = torch.tensor([3.0, 5.0, 90.0, 80.0])
    with torch.enable_grad():
        one_pass = net.apply(x, ctx, pos).detach()  # grad mode: one chunk for this size
    monkeypatch.setattr(module, "CHUNK_PIXELS", 500)  # -> many row chunks
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            chunked = net.apply(x, ctx, pos)
    finally:
        torch.set_num_threads(1)
    assert torch.allclose(one_pass, chunked, atol=1e-6, rtol=0)
