"""Tile plans cover the image exactly, are evened out, respect the size multiple and stitch back."""

from __future__ import annotations

import random

import numpy as np
import pytest

from flambient.tiling import Stitcher, axis_spans, axis_weights, pad_to_multiple, plan_tiles, ramp, stitch


@pytest.mark.parametrize("length,tile,overlap,multiple", [
    (100, 64, 8, 16), (1000, 256, 0, 1), (1000, 256, 32, 16), (300, 128, 8, 64), (70, 64, 8, 1),
    (5000, 1024, 16, 8), (33, 16, 4, 1), (64, 64, 0, 16), (65, 64, 0, 16),
])
def test_axis_spans_properties(length: int, tile: int, overlap: int, multiple: int) -> None:
    spans = axis_spans(length, tile, overlap, multiple)
    cover = np.zeros(length, dtype=int)
    for s, n in spans:
        assert 0 <= s and s + n <= length
        cover[s:s + n] += 1
    assert cover.min() >= 1
    sizes = {n for _, n in spans[:-1]}
    assert len(sizes) <= 1  # evened out
    if len(spans) > 1:
        n = sizes.pop()
        assert n % multiple == 0 and n <= tile and spans[-1][1] <= n
        assert all(s % multiple == 0 for s, _ in spans)
        assert all(spans[i][0] + spans[i][1] - spans[i + 1][0] >= overlap for i in range(len(spans) - 1))


def test_axis_spans_random_fuzz() -> None:
    rng = random.Random(1)
    for _ in range(500):
        length = rng.randint(1, 2500)
        m = rng.choice([1, 2, 8, 16, 64])
        o = rng.choice([0, 4, 16, 32])
        t = rng.randint(max(2 * o + 1, m), 900)
        if (t // m) * m <= o + m:
            with pytest.raises(ValueError):
                axis_spans(length + t, t, o, m)
            continue
        spans = axis_spans(length, t, o, m)
        assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] == length
        assert all(s % m == 0 for s, _ in spans)
        w = axis_weights(spans, length, margin=o // 3)
        total = np.zeros(length)
        for (s, n), ww in zip(spans, w):
            assert ww.shape == (n,) and ww.min() >= 0
            total[s:s + n] += ww
        np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_single_tile_and_bad_parameters() -> None:
    assert axis_spans(500, None) == [(0, 500)]
    assert axis_spans(500, 0) == [(0, 500)]
    assert axis_spans(500, 800, 16, 16) == [(0, 500)]
    with pytest.raises(ValueError):
        axis_spans(500, 32, 31)
    with pytest.raises(ValueError):
        axis_spans(0, 32)


def test_ramp_is_complementary() -> None:
    r = ramp(17)
    np.testing.assert_allclose(r + r[::-1], 1.0, atol=1e-12)
    assert np.all(np.diff(r) > 0)


@pytest.mark.parametrize("overlap", [0, 12])
def test_stitch_reconstructs_image(overlap: int) -> None:
    rng = np.random.default_rng(0)
    h, w = (203, 317) if overlap else (200, 320)  # 200 and 320 split evenly: no overlap at all
    img = rng.random((h, w, 3), dtype=np.float32)
    multiple = 8 if overlap else 1
    plan = plan_tiles(h, w, tile=64, overlap=overlap, multiple=multiple)
    assert len(plan) > 4 and plan.overlapping == (overlap > 0)
    assert all(t.y0 % multiple == 0 and t.x0 % multiple == 0 for t in plan)
    out = stitch(plan, (img[t.slices] for t in plan))
    np.testing.assert_allclose(out, img, atol=1e-5)


def test_overlap_blend_is_smooth() -> None:
    """Two tiles giving different constants blend through a monotonic ramp, no step."""
    plan = plan_tiles(32, 200, tile=128, overlap=40)
    assert len(plan) == 2
    st = Stitcher(plan, channels=1)
    for t in plan:
        st.add(t, np.full((t.h, t.w, 1), float(t.col), dtype=np.float32))
    row = st.result()[0, :, 0]
    assert row[0] == 0.0 and row[-1] == 1.0
    assert np.all(np.diff(row) >= -1e-7)
    assert np.max(np.diff(row)) < 0.1  # spread over the overlap, not a step


def test_stitcher_checks_shapes_and_completeness() -> None:
    plan = plan_tiles(50, 50, tile=32)
    st = Stitcher(plan)
    with pytest.raises(ValueError):
        st.add(plan.tiles[0], np.zeros((3, 3, 3), np.float32))
    st.add(plan.tiles[0], np.zeros((plan.tiles[0].h, plan.tiles[0].w, 3), np.float32))
    with pytest.raises(ValueError):
        st.result()


def test_pad_to_multiple() -> None:
    x = np.arange(5 * 7 * 2, dtype=np.float32).reshape(5, 7, 2)
    p, (h, w) = pad_to_multiple(x, 4)
    assert p.shape == (8, 8, 2) and (h, w) == (5, 7)
    np.testing.assert_array_equal(p[:5, :7], x)
    nchw = np.zeros((1, 13, 3, 30), np.float32)
    p2, (h2, w2) = pad_to_multiple(nchw, 16, axes=(2, 3))
    assert p2.shape == (1, 13, 16, 32) and (h2, w2) == (3, 30)


def test_margin_pixels_get_no_weight() -> None:
    """With a margin, pixels next to a tile's inner border come only from its neighbour."""
    plan = plan_tiles(40, 260, tile=160, overlap=40, margin=10)
    assert len(plan) == 2
    a, b = plan.tiles
    _, wxa = plan.weights(a)
    _, wxb = plan.weights(b)
    ov = a.x1 - b.x0
    assert ov >= 40
    assert np.all(wxa[-10:] == 0) and np.all(wxb[:10] == 0)
    assert np.all(wxa[:b.x0 - a.x0 + 10] == 1)


def test_tile_too_small_for_overlap_raises() -> None:
    with pytest.raises(ValueError):
        axis_spans(130, 64, 8, 64)
