"""The DNG writer and EXIF builder: rawpy decodes the pixels exactly, rawpy and exifread see the EXIF."""

from __future__ import annotations

import io
from datetime import datetime

import exifread
import numpy as np
import pytest
import rawpy

from flambient.colour import XYZ_TO_RGB
from flambient.io.dng import write_dng
from flambient.io.exif import read_exif
from flambient.io.exif_write import build_exif_bytes
from flambient.io.images import write_jpeg

BLACK, WHITE = 512, 16383
WHEN = datetime(2024, 5, 1, 10, 0, 3, 250000)
EXIF = {"ExposureTime": 1 / 125, "FNumber": 8.0, "ISO": 400, "DateTimeOriginal": WHEN, "Flash": True,
        "FocalLength": 16.0, "ExposureBiasValue": -1.0}


def _mosaic(rgb_camera: np.ndarray) -> np.ndarray:
    """RGGB mosaic (uint16 counts) of an HxWx3 camera-RGB image in [0, 1] of white."""
    h, w = rgb_camera.shape[:2]
    cfa = np.empty((h, w), np.float64)
    cfa[0::2, 0::2] = rgb_camera[0::2, 0::2, 0]
    cfa[0::2, 1::2] = rgb_camera[0::2, 1::2, 1]
    cfa[1::2, 0::2] = rgb_camera[1::2, 0::2, 1]
    cfa[1::2, 1::2] = rgb_camera[1::2, 1::2, 2]
    return np.round(BLACK + cfa * (WHITE - BLACK)).astype(np.uint16)


def test_dng_pixels_and_metadata_roundtrip(tmp_path):
    # camera RGB = linear sRGB scaled per channel like a real sensor (green most sensitive)
    sens = np.array([0.55, 1.0, 0.7])
    cm = np.diag(sens) @ XYZ_TO_RGB
    h, w = 48, 64
    scene = np.zeros((h, w, 3))
    scene[:, : w // 2] = [0.6, 0.6, 0.6]          # neutral grey
    scene[:, w // 2:] = [0.5, 0.25, 0.1]          # orange (linear sRGB)
    p = write_dng(tmp_path / "a.dng", _mosaic(scene * sens), black_level=BLACK, white_level=WHITE,
                  color_matrix=cm, as_shot_neutral=sens / sens.max(), exif=EXIF, make="Flambient",
                  model="Synth One", orientation=1)
    with rawpy.imread(str(p)) as raw:
        assert raw.raw_image.shape == (h, w)
        assert raw.black_level_per_channel == [BLACK] * 4
        assert raw.white_level == WHITE
        assert raw.raw_pattern.tolist() == [[0, 1], [3, 2]]
        rgb = raw.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True,
                              adjust_maximum_thr=0, output_color=rawpy.ColorSpace.sRGB)
        other = raw.other
    rgb = np.asarray(rgb, np.float64) / 65535.0
    inner = (slice(4, -4), slice(4, w // 2 - 4))
    np.testing.assert_allclose(rgb[inner].mean(axis=(0, 1)), [0.6] * 3, atol=0.01)
    inner2 = (slice(4, -4), slice(w // 2 + 4, -4))
    np.testing.assert_allclose(rgb[inner2].mean(axis=(0, 1)), [0.5, 0.25, 0.1], atol=0.02)
    # LibRaw reads the EXIF sub-IFD
    assert other.iso_speed == 400
    assert other.shutter_speed == pytest.approx(1 / 125, rel=1e-3)
    assert other.aperture == pytest.approx(8.0)
    assert other.focal_length == pytest.approx(16.0)
    assert other.timestamp.replace(tzinfo=None) == WHEN.replace(microsecond=0)
    # exifread (through flambient.io.exif) sees all fields, sub-seconds included
    info = read_exif(p)
    assert info.capture_time == WHEN
    assert info.exposure_time == pytest.approx(1 / 125)
    assert info.iso == 400 and info.f_number == 8.0 and info.flash_fired is True
    assert info.exposure_bias == pytest.approx(-1.0) and info.focal_length == 16.0
    assert info.make == "Flambient" and info.model == "Synth One" and info.orientation == 1
    with open(p, "rb") as fh:
        tags = exifread.process_file(fh, details=False)
    assert "EXIF ExifVersion" in tags and str(tags["Image PhotometricInterpretation"]) == "32803"


def test_dng_multi_strip_and_flash_not_fired(tmp_path):
    rng = np.random.default_rng(0)
    h, w = 600, 40  # more rows than one strip holds
    cfa = rng.integers(BLACK, WHITE, size=(h, w)).astype(np.uint16)
    p = write_dng(tmp_path / "b.dng", cfa, black_level=BLACK, white_level=WHITE, color_matrix=XYZ_TO_RGB,
                  as_shot_neutral=(1, 1, 1), exif={**EXIF, "Flash": False, "ExposureTime": 0.2})
    with rawpy.imread(str(p)) as raw:
        np.testing.assert_array_equal(raw.raw_image, cfa)
    info = read_exif(p)
    assert info.flash_fired is False and info.exposure_time == pytest.approx(0.2)


def test_dng_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        write_dng(tmp_path / "c.dng", np.zeros((5, 4), np.uint16), black_level=0, white_level=1,
                  color_matrix=np.eye(3), as_shot_neutral=(1, 1, 1))
    with pytest.raises(ValueError):
        write_dng(tmp_path / "c.dng", np.zeros((4, 4), np.float32), black_level=0, white_level=1,
                  color_matrix=np.eye(3), as_shot_neutral=(1, 1, 1))
    assert not (tmp_path / "c.dng").exists()


def test_jpeg_exif_bytes_read_back(tmp_path):
    exif = build_exif_bytes({**EXIF, "Flash": False}, make="Flambient", model="Synth", orientation=1)
    assert exif.startswith(b"Exif\0\0")
    p = write_jpeg(tmp_path / "x.jpg", np.full((16, 24, 3), 0.5, np.float32), exif=exif)
    info = read_exif(p)
    assert info.capture_time == WHEN and info.iso == 400 and info.flash_fired is False
    assert info.exposure_time == pytest.approx(1 / 125) and info.make == "Flambient"
    from PIL import Image

    with Image.open(io.BytesIO(p.read_bytes())) as im:
        sub = im.getexif().get_ifd(0x8769)
    assert sub[34855] == 400  # Pillow also finds the EXIF sub-IFD
