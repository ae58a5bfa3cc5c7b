"""CLI basics, colour conversions, atomic writes, sniffing and the image round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flambient import __version__, colour
from flambient.cli import main
from flambient.errors import InputError
from flambient.io.atomic import atomic_path
from flambient.io.images import read_exr, read_linear, read_srgb, write_exr, write_jpeg, write_png, write_tiff16
from flambient.io.sniff import sniff_format
from flambient.stack import STACK_CHANNELS, build_stack


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "models" in out


def test_unknown_command_is_usage_error() -> None:
    assert main(["no-such-command"]) == 2


def test_srgb_round_trip_and_known_values() -> None:
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    assert np.abs(colour.linear_to_srgb(colour.srgb_to_linear(x)) - x).max() < 1e-5
    assert colour.srgb_to_linear(np.float32(0.5)) == pytest.approx(0.21404, abs=1e-4)
    # White and sRGB red in CIELAB (D65): published values.
    assert np.allclose(colour.srgb_to_lab(np.array([1.0, 1.0, 1.0])), [100, 0, 0], atol=1e-3)
    assert np.allclose(colour.srgb_to_lab(np.array([1.0, 0.0, 0.0])), [53.24, 80.09, 67.20], atol=0.02)


def test_colour_numpy_and_torch_agree() -> None:
    x = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    t = torch.from_numpy(x)
    assert np.allclose(colour.linear_to_lab(t, 1).numpy(), colour.linear_to_lab(x, 1), atol=1e-3)
    assert torch.allclose(colour.lab_to_linear(colour.linear_to_lab(t, 1), 1), t, atol=1e-4)


def test_cct_round_trip() -> None:
    for k in (2700.0, 4000.0, 5500.0, 6500.0):
        assert colour.linear_rgb_to_cct(colour.cct_to_linear_rgb(k)) == pytest.approx(k, rel=0.02)
    warm, cool = colour.cct_to_linear_rgb(2700), colour.cct_to_linear_rgb(9000)
    assert warm[0] > warm[2] and cool[2] > cool[0]


def test_atomic_path_leaves_nothing_on_error(tmp_path) -> None:
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("new half")
            raise RuntimeError("crash")
    assert dest.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_image_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(1)
    srgb = rng.random((20, 30, 3)).astype(np.float32)
    write_png(tmp_path / "a.png", srgb, bits=16)
    assert np.abs(read_srgb(tmp_path / "a.png") - srgb).max() < 2e-4
    write_tiff16(tmp_path / "a.tif", srgb)
    assert np.abs(read_srgb(tmp_path / "a.tif") - srgb).max() < 2e-4
    write_jpeg(tmp_path / "a.jpg", srgb, quality=100)
    assert np.abs(read_srgb(tmp_path / "a.jpg") - srgb).mean() < 0.02
    lin = colour.srgb_to_linear(srgb) * 4.0
    write_exr(tmp_path / "a.exr", lin, half=False)
    assert np.array_equal(read_exr(tmp_path / "a.exr"), lin)
    assert sniff_format(tmp_path / "a.exr") == "exr"


def test_sniff_by_content_not_extension(tmp_path) -> None:
    write_jpeg(tmp_path / "x.nef", np.zeros((8, 8, 3), np.float32))
    assert sniff_format(tmp_path / "x.nef") == "jpeg"
    assert read_linear(tmp_path / "x.nef").shape == (8, 8, 3)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        sniff_format(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("hello, not an image" * 4)
    with pytest.raises(InputError, match="not an image"):
        read_linear(tmp_path / "text.jpg")


def test_build_stack_layout() -> None:
    a = np.ones((4, 5, 3), np.float32)
    s = build_stack(a, flash=2 * a)
    assert s.shape == (4, 5, STACK_CHANNELS)
    assert s[..., 10].min() == 1.0 and s[..., 11].max() == 0.0 and s[..., 3:6].min() == 2.0
