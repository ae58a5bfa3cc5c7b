"""Presets load, validate, and fail clearly on unknown keys and bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from flambient.config import available_presets, load_preset, parse_preset
from flambient.errors import ConfigError

SHIPPED = ["studio", "natural", "bright", "mls"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_presets_load(name: str) -> None:
    assert name in available_presets()
    p = load_preset(name)
    assert p.name == name and p.description and p.model == "default"
    assert p.output.colour_space == "srgb"
    assert "{set}" in p.output.naming


def test_mls_is_2048_jpeg() -> None:
    p = load_preset("mls")
    assert p.output.format == "jpeg" and p.output.long_edge == 2048 and p.output.extension == ".jpg"


def test_user_preset_by_path_and_defaults(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("description: mine\nmodel: ./models/x\noutput: {format: tiff16, naming: '{preset}-{set}'}\n")
    p = load_preset(f)
    assert p.name == "mine" and p.output.format == "tiff16" and p.edit.strength == 1.0
    assert p.model == str((tmp_path / "models" / "x").resolve())
    assert p.final_name("room", "default") == "mine-room.tif"
    assert load_preset(tmp_path / "mine.yaml").to_dict() == p.to_dict()


@pytest.mark.parametrize("text,key,allowed", [
    ("output: {qualty: 90}\n", "output.qualty", "quality"),
    ("colour: warm\n", "colour", "tiling"),
    ("output: {format: png}\n", "output.format", "jpeg, tiff16"),
    ("output: {quality: 101}\n", "output.quality", "1 to 100"),
    ("edit: {strength: 1.5}\n", "edit.strength", "0 to 1"),
    ("edit: {exposure_bias: lots}\n", "edit.exposure_bias", "-3 to 3"),
    ("edit: {white_balance: 500}\n", "edit.white_balance", "2000 to 12000"),
    ("output: {naming: 'final'}\n", "output.naming", "{set}"),
    ("output: {naming: '{set}-{date}'}\n", "output.naming", "{set}"),
    ("tiling: {tile: 64}\n", "tiling.tile", "128 to 16384"),
    ("output: 3\n", "output", "key: value"),
    ("output: {colour_space: adobe}\n", "output.colour_space", "srgb"),
])
def test_bad_presets_fail_clearly(tmp_path: Path, text: str, key: str, allowed: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_preset(f)
    msg = str(ei.value)
    assert str(f) in msg and key in msg and allowed in msg


def test_bad_yaml_and_unknown_name(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("output: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_preset(f)
    with pytest.raises(ConfigError, match="known presets: .*studio"):
        load_preset("no-such-preset")
    with pytest.raises(ConfigError, match="not found"):
        load_preset(tmp_path / "absent.yaml")


def test_tile_must_exceed_overlap() -> None:
    with pytest.raises(ConfigError, match="tiling.tile 128 is too small for tiling.overlap 64"):
        parse_preset({"tiling": {"tile": 128, "overlap": 64}}, "x")
