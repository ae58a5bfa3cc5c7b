"""Reference tests of flambient.metrics and flambient.baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from flambient import baselines, colour, metrics

# Sharma, Wu & Dalal (2005), Table 1: the 34 CIEDE2000 test pairs
# (L1, a1, b1, L2, a2, b2, dE00), published to four decimals.
SHARMA_PAIRS = [
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


def test_ciede2000_sharma_pairs() -> None:
    data = np.array(SHARMA_PAIRS)
    assert data.shape == (34, 7)
    got = metrics.delta_e2000(data[:, 0:3], data[:, 3:6])
    np.testing.assert_allclose(got, data[:, 6], atol=5e-5)
    # symmetric, zero on identical colours
    np.testing.assert_allclose(metrics.delta_e2000(data[:, 3:6], data[:, 0:3]), data[:, 6], atol=5e-5)
    assert np.all(metrics.delta_e2000(data[:, 0:3], data[:, 0:3]) == 0)


def test_ciede2000_broadcasts_over_images() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (8, 9, 3)).astype(np.float32)
    de = metrics.delta_e_map(a, a * 0.9)
    assert de.shape == (8, 9)
    assert np.all(de > 0)
    assert metrics.delta_e_map(a, a).max() == 0


def test_psnr_by_hand() -> None:
    a = np.zeros((4, 4, 3))
    b = a.copy()
    b[0, 0, 0] = 0.5  # MSE = 0.25 / 48
    assert metrics.psnr(b, a) == pytest.approx(10 * math.log10(48 / 0.25), abs=1e-9)
    c = np.full((4, 4, 3), 0.1)  # MSE = 0.01 -> 20 dB
    assert metrics.psnr(c, a) == pytest.approx(20.0, abs=1e-9)
    assert metrics.psnr(a, a) == metrics.PSNR_MAX_DB


def _ref_ssim_channel(x: np.ndarray, y: np.ndarray) -> float:
    """Straightforward SSIM of Wang et al. (2004): Gaussian sigma 1.5 truncated to 11x11
    (radius 5), K1 = 0.01, K2 = 0.03, L = 1, borders (radius 5) excluded from the mean."""

    def g(z: np.ndarray) -> np.ndarray:
        return gaussian_filter(z, 1.5, truncate=3.5, mode="reflect")

    c1, c2 = 0.01**2, 0.03**2
    mx, my = g(x), g(y)
    sxx = g(x * x) - mx**2
    syy = g(y * y) - my**2
    sxy = g(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s[5:-5, 5:-5].mean())


@pytest.mark.parametrize("seed", [1, 2])
def test_ssim_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.uniform(0, 1, (48, 40, 3)), (2, 2, 0))
    noisy = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
    ref = np.mean([_ref_ssim_channel(noisy[..., c], base[..., c]) for c in range(3)])
    got = metrics.ssim(noisy, base)
    assert got == pytest.approx(ref, abs=1e-6)
    assert 0.0 < got < 0.99
    assert metrics.ssim(base, base) == pytest.approx(1.0, abs=1e-9)


def test_ms_ssim_orders_distortions() -> None:
    rng = np.random.default_rng(3)
    base = gaussian_filter(rng.uniform(0, 1, (96, 96, 3)), (2, 2, 0))
    small = np.clip(base + rng.normal(0, 0.02, base.shape), 0, 1)
    large = np.clip(base + rng.normal(0, 0.1, base.shape), 0, 1)
    assert metrics.ms_ssim(base, base) == pytest.approx(1.0, abs=1e-9)
    assert 1.0 > metrics.ms_ssim(small, base) > metrics.ms_ssim(large, base) > 0.0


def test_colour_and_tone_metrics() -> None:
    rng = np.random.default_rng(4)
    truth = np.clip(gaussian_filter(rng.uniform(0.2, 0.8, (40, 40, 3)), (3, 3, 0)), 0, 1)
    # make half of the image grey so white balance is defined
    truth[:, :20] = truth[:, :20].mean(axis=-1, keepdims=True)
    assert metrics.delta_rgb(truth + 0.1, truth) == pytest.approx(0.1, abs=1e-9)
    # exposure: one stop brighter in linear light
    lin = colour.srgb_to_linear(truth.astype(np.float32))
    brighter = colour.linear_to_srgb(lin * 2.0, clip=False)
    assert metrics.exposure_ev(brighter, truth) == pytest.approx(1.0, abs=0.01)
    # white balance: a warm cast on the grey half gives a positive angle, none gives ~0
    warm = colour.linear_to_srgb(lin * np.array([1.2, 1.0, 0.8], dtype=np.float32))
    assert metrics.wb_error(truth, truth) == pytest.approx(0.0, abs=1e-3)
    assert metrics.wb_error(warm, truth) > 5.0
    # tone curve: identical -> 0; brighter -> larger
    assert metrics.tone_curve(truth, truth) == pytest.approx(0.0, abs=1e-6)
    assert metrics.tone_curve(brighter, truth) > 5.0
    # clipping counted only where the truth is not clipped
    clip = truth.copy()
    clip[:4] = 1.0
    assert metrics.clipped(clip, truth) == pytest.approx(4 / 40, abs=1e-9)
    assert metrics.clipped(truth, truth) == 0.0
    # FLIP: 0 for identical images, positive otherwise
    assert metrics.flip(truth, truth) == pytest.approx(0.0, abs=1e-6)
    assert metrics.flip(warm, truth) > 0.01


def test_all_metrics_keys_and_window() -> None:
    rng = np.random.default_rng(5)
    truth = rng.uniform(0, 1, (32, 32, 3))
    pred = np.clip(truth + 0.05, 0, 1)
    mask = np.zeros((32, 32))
    mask[:8, :8] = 1
    m = metrics.all_metrics(pred, truth, window_mask=mask)
    assert set(metrics.METRIC_KEYS) <= set(m)
    assert m["window_delta_e"] > 0
    assert m["delta_e2000_p95"] >= m["delta_e2000"] > 0


def test_baselines() -> None:
    rng = np.random.default_rng(6)
    amb = rng.uniform(0.0, 0.3, (24, 24, 3)).astype(np.float32)
    flash = rng.uniform(0.0, 1.0, (24, 24, 3)).astype(np.float32)
    a = baselines.ambient_only(amb)
    np.testing.assert_allclose(a, colour.linear_to_srgb(amb), atol=1e-7)
    lb = baselines.luminosity_blend(amb, flash)
    assert lb.shape == amb.shape and lb.min() >= 0 and lb.max() <= 1
    # luminosity taken from the flash wherever no clipping was needed
    fl_srgb = colour.linear_to_srgb(flash)
    lum = lb @ baselines.BLEND_LUM
    inside = (lb > 1e-4).all(-1) & (lb < 1 - 1e-4).all(-1)
    np.testing.assert_allclose(lum[inside], (fl_srgb @ baselines.BLEND_LUM)[inside], atol=1e-5)
    # ... and the ambient's colour: chroma differences (c - lum) keep the ambient's direction
    amb_srgb = colour.linear_to_srgb(amb)
    d_amb = amb_srgb - (amb_srgb @ baselines.BLEND_LUM)[..., None]
    d_out = lb - lum[..., None]
    cos = (d_amb * d_out).sum(-1) / (np.linalg.norm(d_amb, axis=-1) * np.linalg.norm(d_out, axis=-1) + 1e-12)
    assert np.median(cos[inside]) > 0.999
    # opacity 0 leaves the ambient
    np.testing.assert_allclose(baselines.luminosity_blend(amb, flash, opacity=0.0), a, atol=1e-6)
    # Mertens: a dark and a bright exposure fuse to something in between
    fused = baselines.mertens_fusion([amb, amb * 4])
    assert fused.shape == amb.shape and fused.dtype == np.float32
    assert a.mean() < fused.mean() < colour.linear_to_srgb(amb * 4).mean()
    with pytest.raises(ValueError):
        baselines.mertens_fusion([])
