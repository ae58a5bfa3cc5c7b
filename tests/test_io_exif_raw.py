"""EXIF reading, RAW decoding and previews, content sniffing: real files and generated DNGs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from flambient.colour import XYZ_TO_RGB
from flambient.errors import InputError
from flambient.io.dng import write_dng
from flambient.io.exif import ExifInfo, read_exif
from flambient.io.images import read_linear, read_preview
from flambient.io.raw import read_raw_linear, read_raw_thumbnail
from flambient.io.sniff import sniff_format

from conftest import shared_file

BLACK, WHITE = 512, 16383
SENS = np.array([0.55, 1.0, 0.7])


def _mosaic(rgb: np.ndarray) -> np.ndarray:
    cfa = np.empty(rgb.shape[:2], np.float64)
    cfa[0::2, 0::2] = rgb[0::2, 0::2, 0]
    cfa[0::2, 1::2] = rgb[0::2, 1::2, 1]
    cfa[1::2, 0::2] = rgb[1::2, 0::2, 1]
    cfa[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return np.round(BLACK + np.clip(cfa, 0, 1) * (WHITE - BLACK)).astype(np.uint16)


def write_test_dng(path, scene_linear: np.ndarray, exif: dict, make="Flambient", model="Synth", orientation=1):
    """A DNG whose demosaiced linear sRGB output is ``scene_linear`` (values in [0, 1])."""
    return write_dng(path, _mosaic(scene_linear * SENS), black_level=BLACK, white_level=WHITE,
                     color_matrix=np.diag(SENS) @ XYZ_TO_RGB, as_shot_neutral=SENS / SENS.max(),
                     exif=exif, make=make, model=model, orientation=orientation)


def test_read_exif_real_nikon_jpeg():
    info = read_exif(shared_file("flambient-brackets-small-davepeloso-prophoto", "set01", "mariposa-0001.jpg"))
    assert info.make == "NIKON CORPORATION" and info.model == "NIKON Z 6_2"
    assert info.capture_time == datetime(2025, 10, 29, 12, 31, 41, 700000, tzinfo=timezone(timedelta(hours=-7)))
    assert info.exposure_time == pytest.approx(1 / 6)
    assert info.f_number == pytest.approx(7.1) and info.iso == 400
    assert info.exposure_bias == pytest.approx(1.0) and info.flash_fired is False
    assert info.focal_length == 15 and info.orientation == 1 and "NIKKOR" in info.lens
    assert read_exif(shared_file("flambient-brackets-small-davepeloso-prophoto", "set01",
                                 "mariposa-0002.jpg")).flash_fired is True


def test_read_exif_raw_headers_and_missing(tmp_path):
    nef = read_exif(shared_file("raw-metadata-stubs-exiftool", "Nikon.nef"))
    assert (nef.model, nef.iso, nef.flash_fired, nef.focal_length) == ("NIKON D70", 200, False, 18)
    assert nef.exposure_time == pytest.approx(1 / 20)
    rw2 = read_exif(shared_file("raw-metadata-stubs-exiftool", "Panasonic.rw2"))
    assert rw2.model == "DMC-LX3" and rw2.exposure_time == pytest.approx(1 / 250)
    # no EXIF at all, zero-valued fields, missing and empty files: all-None, never a crash
    assert read_exif(shared_file("faid-flash-ambient-jozech", "it4_flash.png")) == ExifInfo()
    chart = read_exif(shared_file("raw-tinydng", "colorchart.dng"))
    assert chart.exposure_time is None and chart.iso is None and chart.capture_time is None
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert read_exif(tmp_path / "empty.jpg") == ExifInfo()
    assert read_exif(tmp_path / "missing.jpg") == ExifInfo()
    for p in sorted(shared_file("exif-camera-jpegs-exif-samples", "malformed").iterdir()):
        read_exif(p).to_dict()  # must not raise


def test_exif_dict_roundtrip():
    info = read_exif(shared_file("flambient-brackets-small-davepeloso-prophoto", "set02", "mariposa-0010.jpg"))
    assert ExifInfo.from_dict(info.to_dict()) == info
    ev = info.exposure_value()
    assert ev == pytest.approx(np.log2((1 / 100) * 250 / 100 / 64))


def test_generated_dng_pixels_exif_and_preview(tmp_path):
    h, w = 64, 96
    scene = np.zeros((h, w, 3))
    scene[:, : w // 2] = 0.5
    scene[:, w // 2:] = [0.4, 0.2, 0.1]
    when = datetime(2024, 5, 1, 10, 0, 3, 250000)
    p = write_test_dng(tmp_path / "f.dng", scene, {"ExposureTime": 1 / 125, "FNumber": 8.0, "ISO": 200,
                                                  "DateTimeOriginal": when, "Flash": True, "FocalLength": 16.0},
                       make="Flambient", model="Test Cam")
    info = read_exif(p)
    assert info.capture_time == when and info.flash_fired is True and info.iso == 200
    assert info.exposure_time == pytest.approx(1 / 125) and info.camera == "Flambient Test Cam"
    assert sniff_format(p) == "tiff"
    full = read_linear(p)
    assert full.shape == (h, w, 3) and full.dtype == np.float32
    np.testing.assert_allclose(full[8:-8, 8 : w // 2 - 8].mean(axis=(0, 1)), 0.5, atol=0.01)
    half = read_raw_linear(p, half_size=True)
    assert half.shape == (h // 2, w // 2, 3)
    prev, hw = read_raw_thumbnail(p, max_side=24)
    assert hw == (h, w) and max(prev.shape[:2]) == 24
    # camera-RGB preview of a neutral patch: white-balanced, linear, same level as the decode
    np.testing.assert_allclose(prev[4:-4, 2:8].mean(axis=(0, 1)), 0.5, atol=0.03)
    prev2, hw2 = read_preview(p, 24)
    assert hw2 == (h, w) and np.allclose(prev2, prev)


@pytest.mark.parametrize("name", ["CanonRaw.cr2", "CanonRaw.cr3", "CanonRaw.crw", "DNG.dng", "FujiFilm.raf",
                                  "Minolta.mrw", "Nikon.nef", "Panasonic.rw2", "PhaseOne.iiq", "SigmaDP2.x3f"])
def test_truncated_raw_stubs_give_clear_errors(name):
    p = shared_file("raw-metadata-stubs-exiftool", name)
    with pytest.raises(InputError) as err:
        read_raw_linear(p)
    assert "truncated" in str(err.value) and name in str(err.value)
    with pytest.raises(InputError):
        read_preview(p)


def test_a_raw_whose_first_ifd_is_a_preview_is_read_as_raw():
    """The Phase One IIQ stub opens with a 1 x 1 RGB preview IFD: by its extension it is a RAW, and
    the scan's reader says it is truncated (not "unsupported image layout")."""
    from flambient.io.images import image_kind, read_linear

    p = shared_file("raw-metadata-stubs-exiftool", "PhaseOne.iiq")
    assert image_kind(p) == "raw"
    with pytest.raises(InputError, match="truncated"):
        read_linear(p)


def test_film_scanner_nef_is_rejected_clearly():
    p = shared_file("raw-imageio-test-images", "Nikon_uncompressed.nef")
    with pytest.raises(InputError, match="film-scanner"):
        read_raw_linear(p)


def test_real_dng_decodes():
    img = read_linear(shared_file("raw-tinydng", "colorchart.dng"), half_size=True)
    assert img.ndim == 3 and img.shape[2] == 3 and 0.0 < float(img.mean()) < 1.0


def test_sniffing_by_content(tmp_path):
    nef = shared_file("edge-cases-metadata-extractor", "jpeg-named-as-nef_issue247-1.nef")
    assert sniff_format(nef) == "jpeg"
    prev, hw = read_preview(nef, 64)
    assert max(prev.shape[:2]) == 64 and hw == (3008, 2000)
    tif = shared_file("flash-noflash-phone-akdeb", "bottle1_flash.tif")
    assert sniff_format(tif) == "jpeg"
    (tmp_path / "x.jpg").write_bytes(b"this is not an image at all, just text" * 3)
    with pytest.raises(InputError, match="not an image"):
        sniff_format(tmp_path / "x.jpg")


def test_previews_of_every_format_match_full_decode(tmp_path):
    from flambient.colour import linear_to_srgb
    from flambient.io.images import write_exr, write_jpeg, write_png, write_tiff16

    lin = np.random.default_rng(0).uniform(0.05, 0.9, (48, 64, 3)).astype(np.float32)
    lin[:, :32] = 0.2
    write_png(tmp_path / "a.png", linear_to_srgb(lin), bits=16)
    write_tiff16(tmp_path / "a.tif", linear_to_srgb(lin))
    write_exr(tmp_path / "a.exr", lin)
    write_jpeg(tmp_path / "a.jpg", linear_to_srgb(lin), quality=98)
    for name in ("a.png", "a.tif", "a.exr", "a.jpg"):
        prev, hw = read_preview(tmp_path / name, 32)
        assert hw == (48, 64) and prev.shape == (24, 32, 3) and prev.dtype == np.float32, name
        np.testing.assert_allclose(prev[4:-4, 2:14].mean(), 0.2, atol=0.01, err_msg=name)


def test_libraw_fills_exposure_fields_exifread_cannot_read(tmp_path):
    from flambient.io.exif import _fill_from_libraw

    when = datetime(2024, 5, 1, 10, 0, 3)
    p = write_test_dng(tmp_path / "a.dng", np.full((32, 48, 3), 0.3),
                       {"ExposureTime": 1 / 125, "FNumber": 8.0, "ISO": 200, "DateTimeOriginal": when,
                        "FocalLength": 16.0})
    info = ExifInfo()
    _fill_from_libraw(p, info)  # what read_exif does for a RAW container exifread cannot parse
    assert info.exposure_time == pytest.approx(1 / 125) and info.iso == 200 and info.f_number == 8
    assert info.focal_length == 16 and info.capture_time == when and info.flash_fired is None
    chart = ExifInfo()
    _fill_from_libraw(shared_file("raw-tinydng", "colorchart.dng"), chart)  # records zeros: stays empty
    assert chart == ExifInfo()
