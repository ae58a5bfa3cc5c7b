"""The CPU fast paths of `process` give the same numbers as the reference code they replace.

- bilateral's "blocks" apply (CPU inference) against its "gather" apply (export/training/GPU);
- the numpy sRGB encoding against the networks' torch ``encode_rgb``;
- channels-first tile assembly into a reused buffer against the H x W x 13 stack;
- the stitcher and ``process`` reusing output buffers across tiles and sets.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flambient.colour import srgb_encode_into
from flambient.config import load_preset
from flambient.inference import PartsStack
from flambient.stack import assemble_stack
from flambient.nets.registry import create_model, encode_rgb, full_pos, save_model
from flambient.process import ProcessOptions, process_shoot
from flambient.stack import STACK_CHANNELS
from flambient.tiling import Stitcher, plan_tiles


def _perturbed_bilateral(seed: int = 0, **config: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = create_model("bilateral", **config).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def _stack(n: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, STACK_CHANNELS, h, w, generator=g) ** 2 * 1.6  # shadows and highlights > 1
    x[:, 9:] = (torch.rand(n, 4, h, w, generator=g) > 0.5).float()
    return x


def _both_paths(net: torch.nn.Module, x: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        blocks = net.apply(x, ctx, pos)
    with torch.enable_grad():  # grad mode selects the gather formulation (training's)
        gather = net.apply(x, ctx, pos).detach()
    return blocks, gather


@pytest.mark.parametrize(("h", "w", "pos"), [
    (96, 160, None),                    # whole image, several grid cells per axis
    (37, 53, (5.0, 7.0, 90.0, 120.0)),  # a tile inside a larger image
    (1, 1, (63.0, 99.0, 64.0, 100.0)),  # one pixel at the far corner
    (40, 300, (0.0, 0.0, 40.0, 300.0)),  # wide: many column cells, rows within one cell
])
def test_bilateral_blocks_apply_equals_gather_apply(h: int, w: int, pos: tuple[float, ...] | None) -> None:
    net = _perturbed_bilateral()
    x = _stack(2, h, w)
    with torch.no_grad():
        ctx = net.context(torch.nn.functional.interpolate(_stack(2, 64, 64, seed=2), size=(256, 256)))
        ctx = ctx + torch.randn_like(ctx) * 0.3  # a grid that really varies between cells and bins
    p = full_pos(x) if pos is None else torch.tensor(pos)
    blocks, gather = _both_paths(net, x, ctx, p)
    assert blocks.shape == gather.shape == (2, 3, h, w)
    assert float((blocks - gather).abs().max()) < 1e-5
    assert float(gather.std()) > 0.01  # not a degenerate (constant) output


def test_bilateral_blocks_apply_with_few_bins_and_small_grid() -> None:
    net = _perturbed_bilateral(seed=3, grid_size=2, luma_bins=2, width=16, hidden=8)
    x = _stack(1, 31, 45)
    with torch.no_grad():
        ctx = net.context(torch.nn.functional.interpolate(x, size=(256, 256)))
    blocks, gather = _both_paths(net, x, ctx, full_pos(x))
    assert float((blocks - gather).abs().max()) < 1e-5


def test_bilateral_tiles_equal_whole_image_on_the_blocks_path() -> None:
    net = _perturbed_bilateral(seed=4)
    x = _stack(1, 70, 110)
    with torch.inference_mode():
        ctx = net.context(torch.nn.functional.interpolate(x, size=(256, 256)))
        whole = net.apply(x, ctx, full_pos(x))
        pos = torch.tensor([0.0, 0.0, 70.0, 110.0])
        left = net.apply(x[:, :, :, :47], ctx, pos)
        right = net.apply(x[:, :, :, 47:], ctx, torch.tensor([0.0, 47.0, 70.0, 110.0]))
    assert float((torch.cat([left, right], dim=3) - whole).abs().max()) < 1e-6


def test_srgb_encode_into_matches_the_network_encoding() -> None:
    x = np.concatenate([np.linspace(-1.0, 20.0, 50001, dtype=np.float32),
                        np.geomspace(1e-9, 0.02, 5001).astype(np.float32),
                        np.float32([0.0031308, np.nextafter(np.float32(0.0031308), np.float32(1)), 16.0])])
    out = np.empty_like(x)
    got = srgb_encode_into(x, out, 16.0)
    assert got is out
    ref = encode_rgb(torch.from_numpy(x)).numpy()
    assert float(np.abs(got - ref).max()) < 1.5e-6
    assert got[x <= 0].max() == 0.0 and abs(float(got[x >= 16].min()) - float(ref[x >= 16].min())) < 1e-5


def test_channels_first_assembly_into_a_reused_buffer() -> None:
    rng = np.random.default_rng(0)
    amb = (rng.integers(0, 65535, (20, 30, 3)).astype(np.uint16), 2.0 / 65535)
    fl = [(rng.integers(0, 65535, (20, 30, 3)).astype(np.uint16), 0.5 / 65535),
          (rng.random((20, 30, 3), dtype=np.float32), 0.7)]
    win = (rng.integers(0, 65535, (20, 30, 3)).astype(np.uint16), 0.25 / 65535)
    hwc = assemble_stack(amb, fl, win, band_bytes=3000)
    buf = np.full((STACK_CHANNELS, 20, 30), np.nan, dtype=np.float32)
    chw = assemble_stack(amb, fl, win, band_bytes=3000, channels_first=True, out=buf)
    assert chw is buf
    np.testing.assert_allclose(chw, hwc.transpose(2, 0, 1), rtol=1e-6, atol=1e-7)
    no_win = assemble_stack(amb, [], None, channels_first=True, out=buf)
    np.testing.assert_array_equal(no_win[3:9], 0.0)
    np.testing.assert_array_equal(no_win[10:], 0.0)


def test_parts_stack_tiles_from_one_buffer_match_the_full_stack() -> None:
    rng = np.random.default_rng(1)
    parts = ((rng.integers(0, 65535, (50, 70, 3)).astype(np.uint16), 1.0 / 65535),
             [(rng.integers(0, 65535, (50, 70, 3)).astype(np.uint16), 3.0 / 65535)], None)
    full = assemble_stack(*parts)
    src = PartsStack(*parts)
    for t in plan_tiles(50, 70, 32):  # tiles of different sizes share the buffer
        np.testing.assert_array_equal(src.tile(t), full[t.slices].transpose(2, 0, 1))


@pytest.mark.parametrize("overlap", [0, 12])
def test_stitcher_reuses_a_dirty_buffer(overlap: int) -> None:
    rng = np.random.default_rng(2)
    img = rng.random((40, 50, 3), dtype=np.float32)
    plan = plan_tiles(40, 50, 24, overlap)
    fresh, reused = Stitcher(plan), Stitcher(plan, out=np.full((40, 50, 3), 7.0, dtype=np.float32))
    for t in plan:
        fresh.add(t, img[t.slices])
        reused.add(t, img[t.slices])
    np.testing.assert_array_equal(reused.result(), fresh.result())
    np.testing.assert_allclose(fresh.result(), img, atol=1e-6)
    with pytest.raises(ValueError):
        Stitcher(plan, out=np.zeros((40, 51, 3), dtype=np.float32))


@pytest.mark.parametrize(("family", "tile"), [("bilateral", 64), ("nafnet", 128)])
def test_process_batch_equals_sets_processed_alone(family: str, tile: int, tmp_path: Path) -> None:
    """Sets 2 and 3 of a batch reuse set 1's output buffer; their finals must not notice."""
    from flambient.synth import synth_shoot

    shoot = tmp_path / "shoot"
    synth_shoot(shoot, sets=3, size=(240, 144), seed=5, fmt="dng")
    shutil.rmtree(shoot / "truth")
    torch.manual_seed(0)
    net = create_model(family)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model = tmp_path / "model"
    save_model(net, model)
    opts = {"preset": load_preset("studio"), "model": str(model), "devices": "cpu", "decode_jobs": 1, "tile": tile}
    batch = process_shoot(shoot, ProcessOptions(out=tmp_path / "batch", **opts))
    assert batch.exit_code == 0 and len(batch.results) == 3
    for i in (1, 2, 3):
        alone = process_shoot(shoot, ProcessOptions(out=tmp_path / f"alone{i}", shard=(i, 3), **opts))
        [res] = [r for r in alone.results if r.status == "done"]
        a = np.asarray(Image.open(res.final))
        b = np.asarray(Image.open(tmp_path / "batch" / Path(res.final).name))
        np.testing.assert_array_equal(a, b)
