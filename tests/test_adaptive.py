"""Safety properties of the `adaptive` family (the default) that hold whatever its weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flambient.colour import srgb_to_lab, srgb_to_linear
from flambient.nets.adaptive import AdaptiveNet, to_gamut
from flambient.nets.registry import create_model, full_pos
from flambient.stack import build_stack

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _wild(seed: int) -> AdaptiveNet:
    """An adaptive net with every style parameter and CNN head pushed far from its start."""
    torch.manual_seed(seed)
    net = create_model("adaptive")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 2.0)
        net.wb_bias.copy_(torch.tensor([0.6, -0.4, -0.6]))
        net.saturation.fill_(2.0)
    return net.eval()


def _room(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A linear H x W x 3 "room" with a clipped white window (top-left) and a warm lamp (right)."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(0.02, 0.4, (h, w, 3)).astype(np.float32) * np.array([1.0, 0.85, 0.6], np.float32)
    img[8:40, 8:56] = 1.0          # window: every channel clipped
    img[50:70, 100:120] = 1.0      # lamp core
    return img


def _chroma(srgb: np.ndarray) -> np.ndarray:
    lab = srgb_to_lab(srgb.astype(np.float32))
    return np.hypot(lab[..., 1], lab[..., 2])


def _run(net: AdaptiveNet, stack: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(stack).permute(2, 0, 1)[None]
    with torch.no_grad():
        return net(x)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clipped_highlights_stay_neutral_whatever_the_weights(seed: int) -> None:
    out = _run(_wild(seed), build_stack(_room(seed=seed)))
    assert np.all((out >= 0) & (out <= 1))
    window = _chroma(out[10:38, 10:54])
    assert window.max() < 1.0, f"clipped window got chroma {window.max():.2f}"
    assert _chroma(out[52:68, 102:118]).max() < 1.0


def test_window_with_a_view_keeps_its_colour() -> None:
    """Where a window-pull frame shows the view, the guard must not grey it out."""
    amb = _room()
    win = amb * 0.1
    win[8:40, 8:56] = np.array([0.5, 0.9, 1.6], np.float32)  # blue sky, unclipped in the pull
    out = _run(create_model("adaptive").eval(), build_stack(amb, window=win))
    sky = out[12:36, 12:52].reshape(-1, 3).mean(0)
    assert sky[2] > sky[0] + 0.05, f"the view lost its colour: {sky}"


def test_to_gamut_keeps_hue_and_range() -> None:
    rgb = torch.tensor([[1.6, 0.9, 0.2], [-0.1, 0.3, 0.5], [0.4, 0.4, 0.4]]).t().reshape(1, 3, 3, 1)
    y = torch.tensor([0.95, 0.25, 0.4]).reshape(1, 1, 3, 1)
    out = to_gamut(rgb, y)
    assert float(out.min()) >= -1e-6 and float(out.max()) <= 1 + 1e-6
    d_in, d_out = (rgb - y)[0, :, :, 0], (out - y)[0, :, :, 0]
    for i in range(3):  # same direction from grey, shorter or equal
        a, b = d_in[:, i], d_out[:, i]
        if a.norm() > 0:
            assert torch.allclose(b / b.norm().clamp_min(1e-9), a / a.norm(), atol=1e-5) or b.norm() < 1e-6


def test_tone_is_monotone_in_brightness() -> None:
    """A grey ramp stays ordered (no inverted steps, no banding from a falling curve)."""
    net = _wild(3)
    with torch.no_grad():  # without local edits, the per-image global edit alone
        net.local[-1].weight.zero_()
        net.local[-1].bias.zero_()
    ramp = np.repeat(np.linspace(0.0, 3.0, 256, dtype=np.float32)[None, :, None], 8, axis=0)
    out = _run(net, build_stack(np.repeat(ramp, 3, axis=2)))
    y = out.mean(axis=(0, 2))
    assert np.all(np.diff(y) >= -1e-6)


@pytest.mark.parametrize("seed", [3, 5, 6])
def test_local_gain_never_inverts_texture_whatever_the_weights(seed: int) -> None:
    """With the local grid on (wild weights), a fine grey ramp stays ordered in every grid cell
    and keeps at least half of its contrast in log luminance."""
    net = _wild(seed)
    with torch.no_grad():
        net.local[-1].bias.copy_(torch.randn(net.luma_bins) * 4.0)   # steep, wild luminance profiles
    ramp = np.linspace(0.002, 3.0, 240, dtype=np.float32)
    img = np.repeat(np.repeat(ramp[None, :, None], 64, axis=0), 3, axis=2)
    out = srgb_to_linear(_run(net, build_stack(img)))
    y = out.mean(axis=2)
    assert np.all(np.diff(y, axis=1) >= -1e-5), "a brighter source pixel came out darker"


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_single_image_is_never_darkened_beyond_the_floor_whatever_the_weights(seed: int) -> None:
    """Exposure, local gain and curve together keep a single image's mean brightness within
    ``single_ev_floor`` stops, even when the weights push everything down."""
    net = _wild(seed)
    with torch.no_grad():
        net.log2_key.fill_(-8.0)                                   # a key that wants it black
        net.local[-1].bias.fill_(-6.0)                             # a grid that darkens everywhere
    img = srgb_to_linear(np.random.default_rng(seed).uniform(0.3, 0.9, (48, 64, 3)).astype(np.float32))
    out = srgb_to_linear(_run(net, build_stack(img)))
    assert np.log2(out.mean() / img.mean()) >= net.single_ev_floor - 0.05


@pytest.mark.parametrize("seed", [0, 7])
def test_bracket_set_is_never_darkened_beyond_its_floor_whatever_the_weights(seed: int) -> None:
    """A flash + ambient set: on the ambient's unclipped pixels the final keeps at least
    ``2**bracket_ev_floor`` of the ambient's mean brightness."""
    net = _wild(seed)
    with torch.no_grad():
        net.log2_key.fill_(-8.0)
        net.local[-1].bias.fill_(-6.0)
    amb = _room(seed=seed)
    flash = amb * 1.5
    out = srgb_to_linear(_run(net, build_stack(amb, flash)))
    unclipped = amb.max(axis=2) < 0.95
    assert np.log2(out[unclipped].mean() / amb[unclipped].mean()) >= net.bracket_ev_floor - 0.05


def test_a_darker_substitute_frame_is_not_pasted_into_a_bright_ambient() -> None:
    """Near-white ambient pixels take the flash frame only where that frame is brighter (the view
    behind a clipped window); a flash frame darker there (another exposure) leaves the ambient."""
    from flambient.nets.adaptive import merge_frames

    amb = np.full((8, 8, 3), 0.99, np.float32)
    flash = np.full((8, 8, 3), 0.3, np.float32)
    flash[:, 4:] = 3.0
    x = torch.from_numpy(build_stack(amb, flash)).permute(2, 0, 1)[None]
    rad, _, clip, _ = merge_frames(x)
    assert float(clip[0, 0, :, :4].max()) == 0.0
    assert torch.allclose(rad[0, :, :, :4], torch.tensor(0.99))
    assert float(clip[0, 0, :, 4:].min()) > 0.5


def test_flash_light_has_the_flash_frames_colour_not_channel_noise() -> None:
    """Frames with different white balance (camera JPEGs): the flash light added is a multiple
    of the flash frame (its colour), not a per-channel difference that turns blue where the
    warm ambient is bright."""
    from flambient.nets.adaptive import merge_frames

    rng = np.random.default_rng(0)
    texture = rng.uniform(0.3, 0.8, (32, 32, 1)).astype(np.float32)
    amb = texture * np.array([0.9, 0.6, 0.3], np.float32)         # warm, textured
    fl = texture * np.array([0.7, 0.7, 0.7], np.float32) * 1.3    # neutral flash frame, brighter
    x = torch.from_numpy(build_stack(amb, fl)).permute(2, 0, 1)[None]
    _, light, _, _ = merge_frames(x)
    light = light[0].permute(1, 2, 0).numpy()
    lit = light.sum(axis=2) > 1e-4
    assert lit.mean() > 0.5
    ratios = light[lit] / light[lit].sum(axis=1, keepdims=True)
    assert np.allclose(ratios, 1.0 / 3.0, atol=1e-4), "flash light is not neutral like the flash frame"


def test_exposure_of_a_key_exposure_image_is_kept_by_an_untrained_net() -> None:
    """At its starting style the net leaves a well-exposed image's mid-tones where they are."""
    img = np.full((64, 64, 3), 0.18, np.float32) * np.random.default_rng(0).uniform(0.5, 1.5, (64, 64, 1)).astype(np.float32)
    out = _run(create_model("adaptive").eval(), build_stack(img))
    ev = np.log2(srgb_to_linear(out).mean() / img.mean())
    assert abs(ev) < 0.3


def _fivek_sources() -> list[Path]:
    folder = SHARED / "fivek-pairs-deeplpf"
    return sorted(folder.glob("*_input.png")) if folder.is_dir() else []


@pytest.mark.skipif(not _fivek_sources(), reason="../shared/data/fivek-pairs-deeplpf not present")
def test_shipped_default_keeps_exposure_and_neutral_highlights_on_real_photos() -> None:
    """The shipped default on real photographs: well-exposed ones keep their exposure (|dEV| <= 0.3
    on average), and bright neutral source pixels stay neutral."""
    from flambient.io.images import read_srgb
    from flambient.nets.registry import load_model

    net, _ = load_model("default")
    evs = []
    for p in _fivek_sources():
        src = read_srgb(p)[:, :, :3]
        lin = srgb_to_linear(src)
        out = _run(net, build_stack(lin))
        med = float(np.median(src.mean(axis=2)))
        if 0.25 <= med <= 0.75:
            evs.append(np.log2(srgb_to_linear(out).mean() / lin.mean()))
        bright = (src.min(axis=2) > 0.92) & (_chroma(src) < 3.0)
        if bright.sum() > 20:
            assert np.mean(_chroma(out)[bright] > 6.0) < 0.001, p.name
    assert evs and np.mean(np.abs(evs)) <= 0.3, evs


def test_apply_is_tile_exact() -> None:
    net = _wild(4)
    x = torch.from_numpy(build_stack(_room(80, 100))).permute(2, 0, 1)[None]
    with torch.no_grad():
        ctx = net.context_of(x)
        whole = net.apply(x, ctx, full_pos(x))
        top = net.apply(x[:, :, :37], ctx, torch.tensor([0.0, 0.0, 80.0, 100.0]))
        bottom = net.apply(x[:, :, 37:], ctx, torch.tensor([37.0, 0.0, 80.0, 100.0]))
    assert torch.allclose(torch.cat([top, bottom], 2), whole, atol=1e-6)
