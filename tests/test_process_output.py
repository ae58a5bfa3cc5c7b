"""The preset's output transform: strength, exposure, white balance, resize, banded sharpening."""

from __future__ import annotations

import numpy as np

from flambient.colour import linear_to_srgb
from flambient.config import EditSettings, OutputSettings
from flambient.inference import ArrayStack
from flambient.output import edit_post, finish, resize_long_edge, sharpen_inplace, wb_gains
from flambient.stack import build_stack
from flambient.tiling import plan_tiles


def _src() -> ArrayStack:
    rng = np.random.default_rng(0)
    return ArrayStack(build_stack(rng.random((20, 30, 3), dtype=np.float32) * 0.5))


def test_identity_preset_has_no_post() -> None:
    assert edit_post(EditSettings()) is None


def test_strength_blends_towards_neutral_ambient() -> None:
    src = _src()
    t = plan_tiles(20, 30, None).tiles[0]
    edit = np.full((20, 30, 3), 0.9, np.float32)
    base = linear_to_srgb(src.ambient(t))
    zero = edit_post(EditSettings(strength=0.0))(t, edit, src)  # type: ignore[misc]
    half = edit_post(EditSettings(strength=0.5))(t, edit, src)  # type: ignore[misc]
    np.testing.assert_allclose(zero, base, atol=1e-6)
    np.testing.assert_allclose(half, 0.5 * (base + edit), atol=1e-6)


def test_exposure_and_white_balance() -> None:
    src = _src()
    t = plan_tiles(20, 30, None).tiles[0]
    grey = np.full((20, 30, 3), 0.4, np.float32)
    up = edit_post(EditSettings(exposure_bias=1.0))(t, grey, src)  # type: ignore[misc]
    assert np.all(up > grey)
    warm = edit_post(EditSettings(white_balance=3500))(t, grey, src)[0, 0]  # type: ignore[misc]
    cool = edit_post(EditSettings(white_balance=9000))(t, grey, src)[0, 0]  # type: ignore[misc]
    assert warm[0] > warm[2] and cool[2] > cool[0]
    np.testing.assert_allclose(wb_gains(None), 1.0)
    np.testing.assert_allclose(wb_gains(6504), 1.0, atol=2e-3)


def test_resize_and_banded_sharpen_match_whole_image() -> None:
    rng = np.random.default_rng(1)
    img = rng.random((300, 200, 3), dtype=np.float32)
    small = resize_long_edge(img, 150)
    assert small.shape == (150, 100, 3)
    assert resize_long_edge(img, 1000) is img
    a = sharpen_inplace(img.copy(), 0.8, 1.5, band=7)
    b = sharpen_inplace(img.copy(), 0.8, 1.5, band=10_000)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert float(np.abs(a - img).max()) > 0.05
    out = finish(img.copy(), OutputSettings(long_edge=100, sharpen=0.3))
    assert out.shape == (100, 67, 3) and out.min() >= 0 and out.max() <= 1
