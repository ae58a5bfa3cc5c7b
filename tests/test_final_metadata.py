"""Finals carry the source's EXIF and an sRGB ICC profile, as JPEG and as 16-bit TIFF (issue 13)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms

from flambient.config import load_preset, parse_preset
from flambient.io.exif import read_exif
from flambient.nets.registry import create_model, save_model
from flambient.process import ProcessOptions, process_shoot


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from flambient.synth import synth_shoot

    root = tmp_path_factory.mktemp("meta")
    shoot = root / "shoot"
    synth_shoot(shoot, sets=1, size=(160, 96), seed=11, fmt="dng")
    shutil.rmtree(shoot / "truth")
    torch.manual_seed(0)
    save_model(create_model("bilateral", width=8, hidden=8, grid_size=4, luma_bins=4), root / "m")
    finals = {}
    for name, preset in [("jpeg", load_preset("studio")),
                         ("tiff16", parse_preset({"output": {"format": "tiff16"}}, "archive"))]:
        s = process_shoot(shoot, ProcessOptions(preset=preset, model=str(root / "m"), devices="cpu",
                                                out=root / name, decode_jobs=1))
        assert s.exit_code == 0
        finals[name] = Path(s.results[0].final or "")
    finals["shoot"] = shoot
    return finals


def _source_times(shoot: Path) -> set[str]:
    return {read_exif(f).capture_time.strftime("%Y:%m:%d %H:%M:%S")  # type: ignore[union-attr]
            for f in shoot.iterdir() if f.suffix.lower() == ".dng"}


def _is_srgb(icc: bytes | None) -> bool:
    return bool(icc) and "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))


@pytest.mark.parametrize("fmt", ["jpeg", "tiff16"])
def test_final_keeps_camera_lens_time_and_resets_orientation(processed: dict[str, Path], fmt: str) -> None:
    final = processed[fmt]
    with Image.open(final) as im:
        exif = im.getexif()
        tags = {**dict(exif), **dict(exif.get_ifd(0x8769))}
        icc = im.info.get("icc_profile")
        if icc is None and fmt == "tiff16":
            icc = tifffile.TiffFile(final).pages[0].tags[34675].value
    assert _is_srgb(icc)
    assert tags.get(271) == "Flambient" and tags.get(272) == "SynthCam FF-24"  # camera
    assert tags.get(42036) == "Synth 14-24mm f/2.8"  # lens
    assert tags.get(36867) in _source_times(processed["shoot"])  # capture time of a source frame
    assert tags.get(274) == 1  # the pixels are upright: orientation reset
    assert tags.get(34855)  # ISO


def test_tiff_final_is_16_bit(processed: dict[str, Path]) -> None:
    arr = tifffile.imread(processed["tiff16"])
    assert arr.dtype == np.uint16 and arr.shape[2] == 3 and arr.std() > 0
