"""Tiled inference equals whole-image inference (within each family's documented bound)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flambient.inference import ArrayStack, PartsStack, area_downsample, infer_image, load_backend, plan_overlap
from flambient.nets.registry import downsample, families
from flambient.stack import build_stack

from conftest import make_stack, perturbed


def _stack(h: int = 150, w: int = 230, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.2 + 0.15 * np.sin(xx / 17.0)[..., None] * np.cos(yy / 23.0)[..., None]
    amb = np.clip(base + 0.05 * rng.random((h, w, 3), dtype=np.float32), 0, None) * np.float32([1.1, 1.0, 0.8])
    flash = np.clip(base * 1.5 + 0.05 * rng.random((h, w, 3), dtype=np.float32), 0, None)
    window = amb * np.float32(0.25)
    return build_stack(amb, flash, window)


def test_area_downsample_matches_registry() -> None:
    st = _stack(101, 157)
    ours = area_downsample(st, 64)
    ref = downsample(torch.from_numpy(st).permute(2, 0, 1)[None], 64)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def _runner_case(family: str, case: str) -> tuple[torch.nn.Module, np.ndarray, int]:
    """(net, H x W x 13 stack, tile) of one case: "bracket" (flash + window, sizes from the
    family's overlap) or "masked" (a window mask and a blown window, 150 x 163, tile 128)."""
    if case == "masked":
        net = perturbed(family)
        return net, make_stack(1, 150, 163, seed=11)[0].permute(1, 2, 0).numpy().copy(), 128
    net = perturbed(family, scale=0.02)
    spec = net.spec
    tile = 128 if spec.tile_exact else plan_overlap(spec.overlap) + 48
    h, w = (150, 230) if spec.tile_exact else (tile + 24, tile + 40)
    return net, _stack(h, w), tile


@pytest.mark.parametrize("case", ["bracket", "masked"])
@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) if f == "diffusion" else f
                                    for f in sorted(families())])
def test_tiled_equals_untiled(family: str, case: str) -> None:
    """The runner's tiling (plan, padding, smooth-ramp stitching) agrees with one tile within the
    spec's ``tile_tolerance`` (the one runner-level tiling test, for every family)."""
    net, st, tile = _runner_case(family, case)
    bound = net.spec.tile_tolerance
    backend = load_backend(net)
    h, w = st.shape[:2]
    whole = infer_image(backend, st, tile=None)
    tiled = infer_image(backend, st, tile=tile)  # 2 x 2 tiles on every family
    assert whole.shape == tiled.shape == (h, w, 3) and whole.dtype == np.float32
    assert float(whole.std()) > 1e-3  # the net produces a real image
    err = float(np.abs(whole - tiled).max())
    assert err <= bound, f"{family}: tiled vs whole differ by {err:.2e} > {bound:.2e}"


def test_parts_stack_equals_array_stack() -> None:
    rng = np.random.default_rng(3)
    amb16 = (rng.random((90, 120, 3)) * 30000).astype(np.uint16)
    fl = rng.random((90, 120, 3), dtype=np.float32)
    win16 = (rng.random((90, 120, 3)) * 20000).astype(np.uint16)
    fa, fw = 0.5 / 65535.0, 2.0 / 65535.0
    parts = PartsStack((amb16, fa), [(fl, 1.0), (fl * 0.5, 2.0)], (win16, fw))
    full = build_stack(amb16.astype(np.float32) * fa, (fl + fl * 0.5 * 2.0) / 2, win16.astype(np.float32) * fw)
    arr = ArrayStack(full)
    np.testing.assert_allclose(parts.low(32), arr.low(32), atol=1e-5)
    backend = load_backend(perturbed("bilateral", scale=0.02))
    a = infer_image(backend, parts, tile=64)
    b = infer_image(backend, full, tile=None)
    assert float(np.abs(a - b).max()) <= 1.0 / 255.0


def test_timings_and_post_hook() -> None:
    backend = load_backend(perturbed("bilateral", scale=0.02))
    timings: dict[str, float] = {}
    calls = []

    def post(t, rgb, src):  # type: ignore[no-untyped-def]
        calls.append(t)
        return 1.0 - rgb

    st = _stack(80, 300)
    plain = infer_image(backend, st, tile=128)
    inv = infer_image(backend, st, tile=128, post=post, timings=timings)
    assert len(calls) >= 3 and set(timings) == {"context", "apply"}
    np.testing.assert_allclose(inv, 1.0 - plain, atol=1e-6)
